//! SQL of SLA calendars, policies and clocks, and [`impl_sla_store!`], which implements
//! [`super::SlaStore`] for both backends.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::audit::{commit_audited, delete_audited, save_audited};
use super::database::{On, Statement, Tx, Value, json};
use super::events::insert_event;
use super::rows::{self, CalendarRow, ClockRow, PolicyRow};
use super::tickets::ticket_in;
use super::{SqlStore, StoreResult};
use crate::domain::audit::AuditEntry;
use crate::domain::calendar::BusinessCalendar;
use crate::domain::event::Event;
use crate::domain::sla::{Alert, Clock, SlaPolicy};
use crate::domain::ticket::Ticket;

const CLOCK_COLUMNS: &str = "ticket_id, metric, policy_id, calendar_id, warning, \
    target_seconds, used_seconds, running_since, stopped, breached, due_at, warn_at, warned, \
    breach_fired, started_at, stopped_at";

/// Warning and breach flags only ever turn on for one clock run, so a write racing with the
/// timer cannot make an event fire twice. A new run (a new `started_at`) starts afresh.
/// Writes clocks by (ticket, metric): one row of 16 values per clock follows, then
/// [`UPSERT_CLOCKS_CONFLICT`]. A clock that restarts (a new `started_at`) forgets its old
/// warning and breach; one that keeps running never un-fires them.
const UPSERT_CLOCKS: &str = "INSERT INTO sla_clocks (ticket_id, metric, policy_id, \
    calendar_id, warning, target_seconds, used_seconds, running_since, stopped, breached, due_at, \
    warn_at, warned, breach_fired, started_at, stopped_at) VALUES ";

/// Follows the rows of [`UPSERT_CLOCKS`].
const UPSERT_CLOCKS_CONFLICT: &str = " \
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

/// Clocks whose warning or breach moment has come and not been announced.
const DUE_ALERTS: &str = "SELECT ticket_id, metric, 'warning' FROM sla_clocks \
    WHERE running_since IS NOT NULL AND NOT stopped AND NOT warned AND warn_at <= $1 \
    UNION ALL SELECT ticket_id, metric, 'breach' FROM sla_clocks \
    WHERE running_since IS NOT NULL AND NOT stopped AND NOT breach_fired AND due_at <= $1 \
    LIMIT $2";

const CLAIM_WARNING: &str = "UPDATE sla_clocks SET warned = TRUE \
    WHERE ticket_id = $1 AND metric = $2 AND running_since IS NOT NULL AND NOT stopped \
    AND NOT warned AND warn_at <= $3 RETURNING target_seconds, due_at";

const CLAIM_BREACH: &str = "UPDATE sla_clocks SET breach_fired = TRUE, breached = TRUE, \
    warned = TRUE WHERE ticket_id = $1 AND metric = $2 AND running_since IS NOT NULL \
    AND NOT stopped AND NOT breach_fired AND due_at <= $3 RETURNING target_seconds, due_at";

const NEXT_DEADLINE: &str = "SELECT MIN(at) FROM ( \
    SELECT MIN(warn_at) AS at FROM sla_clocks \
      WHERE running_since IS NOT NULL AND NOT stopped AND NOT warned \
    UNION ALL SELECT MIN(due_at) AS at FROM sla_clocks \
      WHERE running_since IS NOT NULL AND NOT stopped AND NOT breach_fired) AS deadlines";

const SELECT_CALENDARS: &str = "SELECT id, name, time_zone, weekly, holidays, \
    yearly_holidays, version FROM calendars ORDER BY created_at, id";

const INSERT_CALENDAR: &str = "INSERT INTO calendars (id, name, time_zone, weekly, \
    holidays, yearly_holidays, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)";

const UPDATE_CALENDAR: &str = "UPDATE calendars SET name = $2, time_zone = $3, \
    weekly = $4, holidays = $5, yearly_holidays = $6, updated_at = $7, version = version + 1 \
    WHERE id = $1 AND version = $8";

const DELETE_CALENDAR: &str = "DELETE FROM calendars WHERE id = $1 \
    AND NOT EXISTS (SELECT 1 FROM sla_policies WHERE calendar_id = $1)";

const SELECT_POLICIES: &str = "SELECT id, name, position, conditions, targets, \
    calendar_id, warning, version, created_at, updated_at FROM sla_policies \
    ORDER BY position, created_at, id";

const INSERT_POLICY: &str = "INSERT INTO sla_policies (id, name, position, conditions, \
    targets, calendar_id, warning, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)";

const UPDATE_POLICY: &str = "UPDATE sla_policies SET name = $2, position = $3, \
    conditions = $4, targets = $5, calendar_id = $6, warning = $7, updated_at = $8, \
    version = version + 1 WHERE id = $1 AND version = $9";

const DELETE_POLICY: &str = "DELETE FROM sla_policies WHERE id = $1";

/// SLA calendars, policies, clocks and their timers.
#[async_trait]
pub trait SlaStore: Send + Sync {
    async fn save_calendar(
        &self,
        cal: &BusinessCalendar,
        expected_version: Option<i64>,
        at: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> StoreResult<bool>;
    async fn calendars(&self) -> StoreResult<Vec<BusinessCalendar>>;
    /// False if the calendar does not exist or a policy uses it.
    async fn delete_calendar(&self, id: Uuid, audit: &AuditEntry) -> StoreResult<bool>;
    async fn save_policy(
        &self,
        policy: &SlaPolicy,
        expected_version: Option<i64>,
        audit: &AuditEntry,
    ) -> StoreResult<bool>;
    async fn policies(&self) -> StoreResult<Vec<SlaPolicy>>;
    async fn delete_policy(&self, id: Uuid, audit: &AuditEntry) -> StoreResult<bool>;
    async fn clocks(&self, ticket_ids: &[Uuid]) -> StoreResult<Vec<Clock>>;
    /// Clocks not yet stopped that count on a calendar.
    async fn open_clocks_on_calendar(&self, calendar_id: Uuid) -> StoreResult<Vec<Clock>>;
    /// Writes clocks outside any ticket change (after a calendar changed).
    async fn save_clocks(&self, clocks: &[Clock]) -> StoreResult<()>;
    /// The next moment a warning or breach is due, if any clock is running.
    async fn next_sla_deadline(&self) -> StoreResult<Option<DateTime<Utc>>>;
    /// Sends every warning and breach whose moment has come, each exactly once across
    /// replicas, and returns the events appended.
    async fn fire_sla_alerts(&self, now: DateTime<Utc>, limit: i64) -> StoreResult<Vec<Event>>;
}

#[async_trait]
impl SlaStore for SqlStore {
    async fn save_calendar(
        &self,
        cal: &BusinessCalendar,
        expected_version: Option<i64>,
        at: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> StoreResult<bool> {
        let row = CalendarRow::from(cal);
        let query = Statement::new(match expected_version {
            None => INSERT_CALENDAR,
            Some(_) => UPDATE_CALENDAR,
        })
        .bind(cal.id)
        .bind(&cal.name)
        .bind(&row.time_zone)
        .bind(json(&row.weekly.0)?)
        .bind(json(&row.holidays.0)?)
        .bind(json(&row.yearly_holidays.0)?)
        .bind(at);
        let query = match expected_version {
            None => query,
            Some(version) => query.bind(version),
        };
        save_audited(&self.pools, query, "a calendar with this name", audit).await
    }

    async fn calendars(&self) -> StoreResult<Vec<BusinessCalendar>> {
        let rows: Vec<CalendarRow> = Statement::new(SELECT_CALENDARS)
            .fetch_all(&self.pools)
            .await?;
        rows::convert_all(rows)
    }

    async fn delete_calendar(&self, id: Uuid, audit: &AuditEntry) -> StoreResult<bool> {
        delete_audited(&self.pools, DELETE_CALENDAR, id, audit).await
    }

    async fn save_policy(
        &self,
        policy: &SlaPolicy,
        expected_version: Option<i64>,
        audit: &AuditEntry,
    ) -> StoreResult<bool> {
        let query = Statement::new(match expected_version {
            None => INSERT_POLICY,
            Some(_) => UPDATE_POLICY,
        })
        .bind(policy.id)
        .bind(&policy.name)
        .bind(policy.position)
        .bind(json(&policy.conditions)?)
        .bind(json(&policy.targets)?)
        .bind(policy.calendar_id)
        .bind(json(&policy.warning)?);
        let query = match expected_version {
            None => query.bind(policy.created_at),
            Some(version) => query.bind(policy.updated_at).bind(version),
        };
        let mut tx = self.pools.begin().await?;
        let saved = query.execute(&mut tx).await?;
        commit_audited(tx, saved == 1, audit).await
    }

    async fn policies(&self) -> StoreResult<Vec<SlaPolicy>> {
        let rows: Vec<PolicyRow> = Statement::new(SELECT_POLICIES)
            .fetch_all(&self.pools)
            .await?;
        rows::convert_all(rows)
    }

    async fn delete_policy(&self, id: Uuid, audit: &AuditEntry) -> StoreResult<bool> {
        delete_audited(&self.pools, DELETE_POLICY, id, audit).await
    }

    async fn clocks(&self, ticket_ids: &[Uuid]) -> StoreResult<Vec<Clock>> {
        clocks_of(&self.pools, ticket_ids).await
    }

    async fn open_clocks_on_calendar(&self, calendar_id: Uuid) -> StoreResult<Vec<Clock>> {
        let sql = format!(
            "SELECT {} FROM sla_clocks WHERE calendar_id = $1 AND NOT stopped",
            CLOCK_COLUMNS
        );
        let rows: Vec<ClockRow> = Statement::owned(sql)
            .bind(calendar_id)
            .fetch_all(&self.pools)
            .await?;
        rows::convert_all(rows)
    }

    async fn save_clocks(&self, clocks: &[Clock]) -> StoreResult<()> {
        let mut tx = self.pools.begin().await?;
        upsert_clocks(&mut tx, clocks).await?;
        tx.commit().await?;
        self.bus.publish_local();
        Ok(())
    }

    async fn next_sla_deadline(&self) -> StoreResult<Option<DateTime<Utc>>> {
        let (at,): (Option<DateTime<Utc>>,) =
            Statement::new(NEXT_DEADLINE).fetch_one(&self.pools).await?;
        Ok(at)
    }

    #[tracing::instrument(skip_all)]
    async fn fire_sla_alerts(&self, now: DateTime<Utc>, limit: i64) -> StoreResult<Vec<Event>> {
        let due: Vec<(Uuid, String, String)> = Statement::new(DUE_ALERTS)
            .bind(now)
            .bind(limit)
            .fetch_all(&self.pools)
            .await?;
        let mut fired = Vec::new();
        for (ticket_id, metric, kind) in due {
            let mut tx = self.pools.begin().await?;
            let claim = if kind == "breach" {
                CLAIM_BREACH
            } else {
                CLAIM_WARNING
            };
            // Exactly once across replicas: only one transaction flips the flag.
            let claimed: Option<(i64, Option<DateTime<Utc>>)> = Statement::new(claim)
                .bind(ticket_id)
                .bind(&metric)
                .bind(now)
                .fetch_optional(&mut tx)
                .await?;
            let Some((target_seconds, due_at)) = claimed else {
                tx.rollback().await?;
                continue;
            };
            let ticket = ticket_in(&mut tx, ticket_id).await?;
            let alert = if kind == "breach" {
                Alert::Breach
            } else {
                Alert::Warning
            };
            let event = alert.event(&ticket, &metric, target_seconds, due_at, now);
            fired.push(insert_event(&mut tx, event, 0).await?);
            tx.commit().await?;
        }
        if !fired.is_empty() {
            self.bus.publish_local();
        }
        Ok(fired)
    }
}

/// The clocks of some tickets, read from the pools or inside a transaction.
async fn clocks_of(on: impl Into<On<'_>>, ticket_ids: &[Uuid]) -> StoreResult<Vec<Clock>> {
    if ticket_ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut query = Statement::owned(format!(
        "SELECT {CLOCK_COLUMNS} FROM sla_clocks WHERE ticket_id IN "
    ));
    query.push_list(ticket_ids.iter().copied());
    query.push(" ORDER BY ticket_id, metric");
    let rows: Vec<ClockRow> = query.fetch_all(on).await?;
    rows::convert_all(rows)
}

/// Fills in each ticket's SLA clocks.
pub(super) async fn attach_clocks(
    on: impl Into<On<'_>>,
    tickets: &mut [Ticket],
) -> StoreResult<()> {
    let ids: Vec<Uuid> = tickets.iter().map(|t| t.id).collect();
    let mut clocks = clocks_of(on, &ids).await?;
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
pub(super) async fn upsert_clocks(tx: &mut Tx, clocks: &[Clock]) -> StoreResult<()> {
    let mut keys: Vec<_> = clocks.iter().map(|c| (c.ticket_id, c.metric)).collect();
    keys.sort();
    keys.dedup();
    let batches: Vec<&[Clock]> = if keys.len() == clocks.len() {
        clocks.chunks(500).collect()
    } else {
        clocks.chunks(1).collect()
    };
    for batch in batches {
        let mut upsert = Statement::new(UPSERT_CLOCKS);
        for (i, clock) in batch.iter().enumerate() {
            upsert.push(if i == 0 { "(" } else { ", (" });
            let values: [Value<'_>; 16] = [
                clock.ticket_id.into(),
                clock.metric.as_str().into(),
                clock.policy_id.into(),
                clock.calendar_id.into(),
                json(&clock.warning)?,
                clock.target_seconds.into(),
                clock.used_seconds.into(),
                clock.running_since.into(),
                clock.stopped.into(),
                clock.breached.into(),
                clock.due_at.into(),
                clock.warn_at.into(),
                clock.warned.into(),
                clock.breach_fired.into(),
                clock.started_at.into(),
                clock.stopped_at.into(),
            ];
            for (n, value) in values.into_iter().enumerate() {
                if n > 0 {
                    upsert.push(", ");
                }
                upsert.push_bind(value);
            }
            upsert.push(")");
        }
        upsert.push(UPSERT_CLOCKS_CONFLICT);
        if keys.len() == clocks.len() {
            // Each clock row once: nothing else in the transaction touches it.
            tx.defer(upsert).await?;
        } else {
            upsert.execute(&mut *tx).await?;
        }
    }
    Ok(())
}
