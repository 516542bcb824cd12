//! SQL of SLA calendars, policies and clocks, and [`impl_sla_store!`], which implements
//! [`super::SlaStore`] for both backends.

pub(super) const CLOCK_COLUMNS: &str = "ticket_id, metric, policy_id, calendar_id, warning, \
    target_seconds, used_seconds, running_since, stopped, breached, due_at, warn_at, warned, \
    breach_fired, started_at, stopped_at";

/// Warning and breach flags only ever turn on for one clock run, so a write racing with the
/// timer cannot make an event fire twice. A new run (a new `started_at`) starts afresh.
/// Writes clocks by (ticket, metric); `{}` takes one `($1, ..., $16)` row per clock. A clock
/// that restarts (a new `started_at`) forgets its old warning and breach; one that keeps
/// running never un-fires them.
pub(super) const UPSERT_CLOCKS: &str = "INSERT INTO sla_clocks (ticket_id, metric, policy_id, \
    calendar_id, warning, target_seconds, used_seconds, running_since, stopped, breached, due_at, \
    warn_at, warned, breach_fired, started_at, stopped_at) \
    VALUES {} \
    ON CONFLICT (ticket_id, metric) DO UPDATE SET policy_id = excluded.policy_id, \
    calendar_id = excluded.calendar_id, warning = excluded.warning, \
    target_seconds = excluded.target_seconds, used_seconds = excluded.used_seconds, \
    running_since = excluded.running_since, stopped = excluded.stopped, \
    due_at = excluded.due_at, warn_at = excluded.warn_at, started_at = excluded.started_at, \
    stopped_at = excluded.stopped_at, \
    breached = CASE WHEN excluded.started_at = sla_clocks.started_at \
      THEN sla_clocks.breached OR excluded.breached ELSE excluded.breached END, \
    warned = CASE WHEN excluded.started_at = sla_clocks.started_at \
      THEN sla_clocks.warned OR excluded.warned ELSE excluded.warned END, \
    breach_fired = CASE WHEN excluded.started_at = sla_clocks.started_at \
      THEN sla_clocks.breach_fired OR excluded.breach_fired ELSE excluded.breach_fired END";

/// Parameters per row of [`UPSERT_CLOCKS`].
pub(super) const CLOCK_PARAMS: usize = 16;

/// Clocks whose warning or breach moment has come and not been announced.
pub(super) const DUE_ALERTS: &str = "SELECT ticket_id, metric, 'warning' FROM sla_clocks \
    WHERE running_since IS NOT NULL AND NOT stopped AND NOT warned AND warn_at <= $1 \
    UNION ALL SELECT ticket_id, metric, 'breach' FROM sla_clocks \
    WHERE running_since IS NOT NULL AND NOT stopped AND NOT breach_fired AND due_at <= $1 \
    LIMIT $2";

pub(super) const CLAIM_WARNING: &str = "UPDATE sla_clocks SET warned = TRUE \
    WHERE ticket_id = $1 AND metric = $2 AND running_since IS NOT NULL AND NOT stopped \
    AND NOT warned AND warn_at <= $3 RETURNING target_seconds, due_at";

pub(super) const CLAIM_BREACH: &str = "UPDATE sla_clocks SET breach_fired = TRUE, breached = TRUE, \
    warned = TRUE WHERE ticket_id = $1 AND metric = $2 AND running_since IS NOT NULL \
    AND NOT stopped AND NOT breach_fired AND due_at <= $3 RETURNING target_seconds, due_at";

pub(super) const NEXT_DEADLINE: &str = "SELECT MIN(at) FROM ( \
    SELECT MIN(warn_at) AS at FROM sla_clocks \
      WHERE running_since IS NOT NULL AND NOT stopped AND NOT warned \
    UNION ALL SELECT MIN(due_at) AS at FROM sla_clocks \
      WHERE running_since IS NOT NULL AND NOT stopped AND NOT breach_fired) AS deadlines";

pub(super) const SELECT_CALENDARS: &str = "SELECT id, name, time_zone, weekly, holidays, \
    yearly_holidays FROM calendars ORDER BY created_at, id";

pub(super) const INSERT_CALENDAR: &str = "INSERT INTO calendars (id, name, time_zone, weekly, \
    holidays, yearly_holidays, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)";

pub(super) const UPDATE_CALENDAR: &str = "UPDATE calendars SET name = $2, time_zone = $3, \
    weekly = $4, holidays = $5, yearly_holidays = $6, updated_at = $7 WHERE id = $1";

pub(super) const DELETE_CALENDAR: &str = "DELETE FROM calendars WHERE id = $1 \
    AND NOT EXISTS (SELECT 1 FROM sla_policies WHERE calendar_id = $1)";

pub(super) const SELECT_POLICIES: &str = "SELECT id, name, position, conditions, targets, \
    calendar_id, warning, created_at, updated_at FROM sla_policies \
    ORDER BY position, created_at, id";

pub(super) const INSERT_POLICY: &str = "INSERT INTO sla_policies (id, name, position, conditions, \
    targets, calendar_id, warning, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)";

pub(super) const UPDATE_POLICY: &str = "UPDATE sla_policies SET name = $2, position = $3, \
    conditions = $4, targets = $5, calendar_id = $6, warning = $7, updated_at = $8 WHERE id = $1";

pub(super) const DELETE_POLICY: &str = "DELETE FROM sla_policies WHERE id = $1";

macro_rules! impl_sla_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::SlaStore for $store {
            async fn save_calendar(
                &self,
                cal: &$crate::domain::calendar::BusinessCalendar,
                insert: bool,
                at: chrono::DateTime<chrono::Utc>,
                audit: &$crate::domain::audit::AuditEntry,
            ) -> $crate::store::StoreResult<bool> {
                use $crate::store::sla_sql::*;
                let mut tx = self.writer.begin().await?;
                let row = $crate::store::rows::CalendarRow::from(cal);
                let query = if insert {
                    sqlx::query(INSERT_CALENDAR)
                } else {
                    sqlx::query(UPDATE_CALENDAR)
                };
                let done = query
                    .bind(cal.id)
                    .bind(&cal.name)
                    .bind(&row.time_zone)
                    .bind(&row.weekly)
                    .bind(&row.holidays)
                    .bind(&row.yearly_holidays)
                    .bind(at)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| $crate::store::unique_violation(e, "a calendar with this name"))?;
                commit_audited!(tx, done.rows_affected() == 1, audit)
            }

            async fn calendars(
                &self,
            ) -> $crate::store::StoreResult<Vec<$crate::domain::calendar::BusinessCalendar>> {
                let rows: Vec<$crate::store::rows::CalendarRow> =
                    sqlx::query_as($crate::store::sla_sql::SELECT_CALENDARS)
                        .fetch_all(&self.reader)
                        .await?;
                $crate::store::rows::convert_all(rows)
            }

            async fn delete_calendar(
                &self,
                id: uuid::Uuid,
                audit: &$crate::domain::audit::AuditEntry,
            ) -> $crate::store::StoreResult<bool> {
                let mut tx = self.writer.begin().await?;
                let deleted = sqlx::query($crate::store::sla_sql::DELETE_CALENDAR)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                commit_audited!(tx, deleted == 1, audit)
            }

            async fn save_policy(
                &self,
                policy: &$crate::domain::sla::SlaPolicy,
                insert: bool,
                audit: &$crate::domain::audit::AuditEntry,
            ) -> $crate::store::StoreResult<bool> {
                use $crate::store::sla_sql::*;
                let query = if insert {
                    sqlx::query(INSERT_POLICY)
                } else {
                    sqlx::query(UPDATE_POLICY)
                };
                let query = query
                    .bind(policy.id)
                    .bind(&policy.name)
                    .bind(policy.position)
                    .bind(sqlx::types::Json(&policy.conditions))
                    .bind(sqlx::types::Json(&policy.targets))
                    .bind(policy.calendar_id)
                    .bind(sqlx::types::Json(&policy.warning));
                let query = if insert {
                    query.bind(policy.created_at)
                } else {
                    query.bind(policy.updated_at)
                };
                let mut tx = self.writer.begin().await?;
                let saved = query.execute(&mut *tx).await?.rows_affected();
                commit_audited!(tx, saved == 1, audit)
            }

            async fn policies(
                &self,
            ) -> $crate::store::StoreResult<Vec<$crate::domain::sla::SlaPolicy>> {
                let rows: Vec<$crate::store::rows::PolicyRow> =
                    sqlx::query_as($crate::store::sla_sql::SELECT_POLICIES)
                        .fetch_all(&self.reader)
                        .await?;
                $crate::store::rows::convert_all(rows)
            }

            async fn delete_policy(
                &self,
                id: uuid::Uuid,
                audit: &$crate::domain::audit::AuditEntry,
            ) -> $crate::store::StoreResult<bool> {
                let mut tx = self.writer.begin().await?;
                let deleted = sqlx::query($crate::store::sla_sql::DELETE_POLICY)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                commit_audited!(tx, deleted == 1, audit)
            }

            async fn clocks(
                &self,
                ticket_ids: &[uuid::Uuid],
            ) -> $crate::store::StoreResult<Vec<$crate::domain::sla::Clock>> {
                clocks_of(&self.reader, ticket_ids).await
            }

            async fn open_clocks_on_calendar(
                &self,
                calendar_id: uuid::Uuid,
            ) -> $crate::store::StoreResult<Vec<$crate::domain::sla::Clock>> {
                let sql = format!(
                    "SELECT {} FROM sla_clocks WHERE calendar_id = $1 AND NOT stopped",
                    $crate::store::sla_sql::CLOCK_COLUMNS
                );
                let rows: Vec<$crate::store::rows::ClockRow> =
                    sqlx::query_as(sqlx::AssertSqlSafe(sql))
                        .bind(calendar_id)
                        .fetch_all(&self.reader)
                        .await?;
                $crate::store::rows::convert_all(rows)
            }

            async fn save_clocks(
                &self,
                clocks: &[$crate::domain::sla::Clock],
            ) -> $crate::store::StoreResult<()> {
                let mut tx = self.writer.begin().await?;
                upsert_clocks(&mut tx, clocks).await?;
                tx.commit().await?;
                self.bus.publish_local();
                Ok(())
            }

            async fn next_sla_deadline(
                &self,
            ) -> $crate::store::StoreResult<Option<chrono::DateTime<chrono::Utc>>> {
                let (at,): (Option<chrono::DateTime<chrono::Utc>>,) =
                    sqlx::query_as($crate::store::sla_sql::NEXT_DEADLINE)
                        .fetch_one(&self.reader)
                        .await?;
                Ok(at)
            }

            #[tracing::instrument(skip_all)]
            async fn fire_sla_alerts(
                &self,
                now: chrono::DateTime<chrono::Utc>,
                limit: i64,
            ) -> $crate::store::StoreResult<Vec<$crate::domain::event::Event>> {
                use $crate::domain::event::{Actor, EventKind, EventPayload, NewEvent, Visibility};
                use $crate::store::sla_sql::*;
                let due: Vec<(uuid::Uuid, String, String)> = sqlx::query_as(DUE_ALERTS)
                    .bind(now)
                    .bind(limit)
                    .fetch_all(&self.reader)
                    .await?;
                let mut fired = Vec::new();
                for (ticket_id, metric, kind) in due {
                    let mut tx = self.writer.begin().await?;
                    let claim = if kind == "breach" {
                        CLAIM_BREACH
                    } else {
                        CLAIM_WARNING
                    };
                    // Exactly once across replicas: only one transaction flips the flag.
                    let claimed: Option<(i64, Option<chrono::DateTime<chrono::Utc>>)> =
                        sqlx::query_as(claim)
                            .bind(ticket_id)
                            .bind(&metric)
                            .bind(now)
                            .fetch_optional(&mut *tx)
                            .await?;
                    let Some((target_seconds, due_at)) = claimed else {
                        tx.rollback().await?;
                        continue;
                    };
                    let ticket = ticket_in(&mut tx, ticket_id).await?;
                    let payload = EventPayload::Sla {
                        metric: metric.clone(),
                        target_seconds,
                        due_at,
                    };
                    let event_kind = if kind == "breach" {
                        EventKind::SlaBreached
                    } else {
                        EventKind::SlaWarning
                    };
                    let system = Actor::system("sla");
                    let event = NewEvent::about(
                        &ticket,
                        event_kind,
                        system,
                        Visibility::Internal,
                        payload,
                        now,
                    );
                    fired.push(insert_event(&mut tx, event, 0).await?);
                    tx.commit().await?;
                }
                if !fired.is_empty() {
                    self.bus.publish_local();
                }
                Ok(fired)
            }
        }

        /// The clocks of some tickets, through any executor (pool or transaction).
        async fn clocks_of<'e, E>(
            executor: E,
            ticket_ids: &[uuid::Uuid],
        ) -> $crate::store::StoreResult<Vec<$crate::domain::sla::Clock>>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            if ticket_ids.is_empty() {
                return Ok(Vec::new());
            }
            let placeholders: Vec<String> =
                (1..=ticket_ids.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT {} FROM sla_clocks WHERE ticket_id IN ({}) ORDER BY ticket_id, metric",
                $crate::store::sla_sql::CLOCK_COLUMNS,
                placeholders.join(", ")
            );
            let mut query =
                sqlx::query_as::<_, $crate::store::rows::ClockRow>(sqlx::AssertSqlSafe(sql));
            for id in ticket_ids {
                query = query.bind(*id);
            }
            $crate::store::rows::convert_all(query.fetch_all(executor).await?)
        }

        /// Fills in each ticket's SLA clocks.
        async fn attach_clocks<'e, E>(
            executor: E,
            tickets: &mut [$crate::domain::ticket::Ticket],
        ) -> $crate::store::StoreResult<()>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            let ids: Vec<uuid::Uuid> = tickets.iter().map(|t| t.id).collect();
            let mut clocks = clocks_of(executor, &ids).await?;
            for ticket in tickets.iter_mut() {
                let (mine, rest): (Vec<_>, Vec<_>) =
                    clocks.into_iter().partition(|c| c.ticket_id == ticket.id);
                ticket.sla_clocks = mine;
                clocks = rest;
            }
            Ok(())
        }

        /// Writes clocks in one statement. One statement cannot touch a row twice, so a
        /// list that names a (ticket, metric) more than once is written row by row, in order.
        async fn upsert_clocks(
            tx: &mut sqlx::Transaction<'static, $db>,
            clocks: &[$crate::domain::sla::Clock],
        ) -> $crate::store::StoreResult<()> {
            use $crate::store::sla_sql::{CLOCK_PARAMS, UPSERT_CLOCKS};
            let mut keys: Vec<_> = clocks.iter().map(|c| (c.ticket_id, c.metric)).collect();
            keys.sort();
            keys.dedup();
            let batches: Vec<&[$crate::domain::sla::Clock]> = if keys.len() == clocks.len() {
                clocks.chunks(500).collect()
            } else {
                clocks.chunks(1).collect()
            };
            for batch in batches {
                let rows: Vec<String> = (0..batch.len())
                    .map(|i| {
                        let params: Vec<String> = (1..=CLOCK_PARAMS)
                            .map(|p| format!("${}", i * CLOCK_PARAMS + p))
                            .collect();
                        format!("({})", params.join(", "))
                    })
                    .collect();
                let sql = UPSERT_CLOCKS.replace("{}", &rows.join(", "));
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                for clock in batch {
                    query = query
                        .bind(clock.ticket_id)
                        .bind(clock.metric.as_str())
                        .bind(clock.policy_id)
                        .bind(clock.calendar_id)
                        .bind(sqlx::types::Json(&clock.warning))
                        .bind(clock.target_seconds)
                        .bind(clock.used_seconds)
                        .bind(clock.running_since)
                        .bind(clock.stopped)
                        .bind(clock.breached)
                        .bind(clock.due_at)
                        .bind(clock.warn_at)
                        .bind(clock.warned)
                        .bind(clock.breach_fired)
                        .bind(clock.started_at)
                        .bind(clock.stopped_at);
                }
                query.execute(&mut **tx).await?;
            }
            Ok(())
        }
    };
}
pub(crate) use impl_sla_store;
