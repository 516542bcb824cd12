//! Outbound webhooks and their delivery log. An admin's change raises a webhook's
//! version (its etag); the delivering replica's progress — its position in the log, the
//! head event's failed attempts, the state they lead to — is written beside the
//! attempts that made it, without touching the version, and only while the version is
//! the one it delivers for.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::types::Json;
use uuid::Uuid;

use super::audit::{delete_audited, save_audited};
use super::database::{Column, Statement, Value, col};
use super::{SqlStore, StoreError, StoreResult};
use crate::domain::audit::AuditEntry;
use crate::domain::event::EventKind;
use crate::domain::webhook::{Webhook, WebhookDelivery, WebhookState};

/// Attempts kept per webhook; older ones are trimmed as new ones are written.
pub const KEPT_DELIVERIES: i64 = 10_000;

const SELECT_WEBHOOKS: &str = "SELECT id, url, description, event_types, filter, state, \
    secret, previous_secret, previous_secret_until, delivered_through, attempts, \
    next_attempt_at, failing_since, last_error, version, created_at, updated_at FROM webhooks";

const SELECT_DELIVERIES: &str = "SELECT id, webhook_id, event_cursor, event_id, event_type, \
    attempt, status_code, latency_micros, error, attempted_at, next_attempt_at, delivered_at, \
    manual FROM webhook_deliveries";

/// Moves a webhook's position forward (never back), while it is at the version the
/// events were sent for: after an admin's change (a new URL, filter or secret) its new
/// worker sends them again.
const ADVANCE: &str = "UPDATE webhooks SET delivered_through = $2 \
    WHERE id = $1 AND version = $3 AND delivered_through < $2";

/// Whether the writer still holds the delivery lease; on PostgreSQL the row stays locked
/// to the commit, so the lease cannot pass to another replica in between.
const HOLDS_LEASE: &str = "SELECT owner FROM processor_leases \
    WHERE name = $1 AND owner = $2 AND expires_at > $3";

/// The delivering replica's view of the head event, written only while the webhook is at
/// the version it delivers for (an admin's change in between wins).
const SET_PROGRESS: &str = "UPDATE webhooks SET state = $3, attempts = $4, \
    next_attempt_at = $5, failing_since = $6, last_error = $7 WHERE id = $1 AND version = $2";

/// Keeps the newest [`KEPT_DELIVERIES`] attempts of a webhook (`$2` is one less: the
/// offset of the oldest kept).
const TRIM: &str = "DELETE FROM webhook_deliveries WHERE webhook_id = $1 AND id < \
    (SELECT id FROM webhook_deliveries WHERE webhook_id = $1 ORDER BY id DESC LIMIT 1 OFFSET $2)";

#[derive(sqlx::FromRow)]
struct WebhookRow {
    id: Uuid,
    url: String,
    description: String,
    event_types: Json<Vec<EventKind>>,
    filter: String,
    state: String,
    secret: String,
    previous_secret: Option<String>,
    previous_secret_until: Option<DateTime<Utc>>,
    delivered_through: i64,
    attempts: i32,
    next_attempt_at: Option<DateTime<Utc>>,
    failing_since: Option<DateTime<Utc>>,
    last_error: String,
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<WebhookRow> for Webhook {
    type Error = StoreError;

    fn try_from(row: WebhookRow) -> StoreResult<Webhook> {
        Ok(Webhook {
            id: row.id,
            url: row.url,
            description: row.description,
            event_types: row.event_types.0,
            filter: row.filter,
            state: WebhookState::parse(&row.state)
                .ok_or_else(|| StoreError::Corrupt(format!("webhook state {:?}", row.state)))?,
            secret: row.secret,
            previous_secret: row.previous_secret.zip(row.previous_secret_until),
            delivered_through: row.delivered_through,
            attempts: row.attempts,
            next_attempt_at: row.next_attempt_at,
            failing_since: row.failing_since,
            last_error: row.last_error,
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct DeliveryRow {
    id: Uuid,
    webhook_id: Uuid,
    event_cursor: i64,
    event_id: Uuid,
    event_type: String,
    attempt: i32,
    status_code: i32,
    latency_micros: i64,
    error: String,
    attempted_at: DateTime<Utc>,
    next_attempt_at: Option<DateTime<Utc>>,
    delivered_at: Option<DateTime<Utc>>,
    manual: bool,
}

impl TryFrom<DeliveryRow> for WebhookDelivery {
    type Error = StoreError;

    fn try_from(row: DeliveryRow) -> StoreResult<WebhookDelivery> {
        Ok(WebhookDelivery {
            id: row.id,
            webhook_id: row.webhook_id,
            event_cursor: row.event_cursor,
            event_id: row.event_id,
            event_type: EventKind::parse(&row.event_type)
                .ok_or_else(|| StoreError::Corrupt(format!("event type {:?}", row.event_type)))?,
            attempt: row.attempt,
            status_code: row.status_code,
            latency: std::time::Duration::from_micros(row.latency_micros.max(0) as u64),
            error: row.error,
            attempted_at: row.attempted_at,
            next_attempt_at: row.next_attempt_at,
            delivered_at: row.delivered_at,
            manual: row.manual,
        })
    }
}

/// What a delivering replica writes after a stretch of attempts.
#[derive(Debug, Clone)]
pub struct WebhookProgress {
    /// The lease the writer delivers under, its owner, and the time now: nothing is
    /// written unless the writer still holds it.
    pub lease: (&'static str, Uuid, DateTime<Utc>),
    pub webhook_id: Uuid,
    /// The version the replica delivers for.
    pub version: i64,
    pub deliveries: Vec<WebhookDelivery>,
    pub delivered_through: i64,
    pub state: WebhookState,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub failing_since: Option<DateTime<Utc>>,
    pub last_error: String,
    /// Trim the webhook's delivery log to [`KEPT_DELIVERIES`] as well.
    pub trim: bool,
}

/// Which columns an admin's update writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebhookColumns {
    /// `url`, `description`, `event_types`, `filter`.
    pub settings: bool,
    pub state: StateWrite,
    /// The secrets.
    pub secrets: bool,
}

/// What an admin's update does to the delivery state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateWrite {
    Keep,
    /// `state` and `next_attempt_at` (a pause keeps the failure record).
    Pause,
    /// Every delivery column but the position: a fresh start at the head event.
    Reset,
}

#[async_trait]
pub trait WebhookStore: Send + Sync {
    async fn insert_webhook(&self, webhook: &Webhook, audit: &AuditEntry) -> StoreResult<()>;
    /// Writes `columns` of `webhook` (and its version and update time) if the stored one
    /// is still at `expected_version`; `false` otherwise.
    async fn update_webhook(
        &self,
        webhook: &Webhook,
        columns: WebhookColumns,
        expected_version: i64,
        audit: &AuditEntry,
    ) -> StoreResult<bool>;
    async fn webhook(&self, id: Uuid) -> StoreResult<Option<Webhook>>;
    /// Every webhook, oldest first (there are at most a hundred).
    async fn webhooks(&self) -> StoreResult<Vec<Webhook>>;
    /// Deletes a webhook and its delivery log; `false` if there was none.
    async fn delete_webhook(&self, id: Uuid, audit: &AuditEntry) -> StoreResult<bool>;
    /// Records attempts and the position and state they lead to, in one transaction.
    /// `false` when the writer no longer holds the lease (nothing is written), or the
    /// webhook changed version or is gone (the attempts are kept, the position and state
    /// are not).
    async fn record_webhook_progress(&self, progress: &WebhookProgress) -> StoreResult<bool>;
    /// Records attempts made outside a worker (redeliveries by hand).
    async fn insert_webhook_deliveries(&self, deliveries: &[WebhookDelivery]) -> StoreResult<()>;
    /// A webhook's attempts, newest first, older than `before` if given.
    async fn webhook_deliveries(
        &self,
        webhook_id: Uuid,
        before: Option<Uuid>,
        failed_only: bool,
        limit: i64,
    ) -> StoreResult<Vec<WebhookDelivery>>;
    /// The most attempts recorded at one event for a webhook (0 if none).
    async fn webhook_attempts_at(&self, webhook_id: Uuid, cursor: i64) -> StoreResult<i32>;
}

fn settings_columns(w: &Webhook) -> StoreResult<Vec<(&'static str, Column<'_>)>> {
    Ok(vec![
        col("url", w.url.as_str()),
        col("description", w.description.as_str()),
        col("event_types", super::database::json(&w.event_types)?),
        col("filter", w.filter.as_str()),
    ])
}

fn pause_columns(w: &Webhook) -> Vec<(&'static str, Column<'_>)> {
    vec![
        col("state", w.state.as_str()),
        col("next_attempt_at", w.next_attempt_at),
    ]
}

fn state_columns(w: &Webhook) -> Vec<(&'static str, Column<'_>)> {
    vec![
        col("state", w.state.as_str()),
        col("attempts", w.attempts),
        col("next_attempt_at", w.next_attempt_at),
        col("failing_since", w.failing_since),
        col("last_error", w.last_error.as_str()),
    ]
}

fn secret_columns(w: &Webhook) -> Vec<(&'static str, Column<'_>)> {
    vec![
        col("secret", w.secret.as_str()),
        col(
            "previous_secret",
            w.previous_secret.as_ref().map(|(s, _)| s.as_str()),
        ),
        col(
            "previous_secret_until",
            w.previous_secret.as_ref().map(|(_, until)| *until),
        ),
    ]
}

/// One multi-row insert of `deliveries` (not empty).
fn insert_deliveries(deliveries: &[WebhookDelivery]) -> Statement<'_> {
    let mut insert = Statement::new(
        "INSERT INTO webhook_deliveries (id, webhook_id, event_cursor, event_id, event_type, \
         attempt, status_code, latency_micros, error, attempted_at, next_attempt_at, \
         delivered_at, manual) VALUES ",
    );
    for (i, d) in deliveries.iter().enumerate() {
        if i > 0 {
            insert.push(", ");
        }
        let latency = i64::try_from(d.latency.as_micros()).unwrap_or(i64::MAX);
        let values: [Value<'_>; 13] = [
            d.id.into(),
            d.webhook_id.into(),
            d.event_cursor.into(),
            d.event_id.into(),
            d.event_type.as_str().into(),
            d.attempt.into(),
            d.status_code.into(),
            latency.into(),
            d.error.as_str().into(),
            d.attempted_at.into(),
            d.next_attempt_at.into(),
            d.delivered_at.into(),
            d.manual.into(),
        ];
        insert.push_list(values);
    }
    insert
}

#[async_trait]
impl WebhookStore for SqlStore {
    async fn insert_webhook(&self, w: &Webhook, audit: &AuditEntry) -> StoreResult<()> {
        let mut columns = vec![col("id", w.id)];
        columns.extend(settings_columns(w)?);
        columns.extend(state_columns(w));
        columns.extend(secret_columns(w));
        columns.extend([
            col("delivered_through", w.delivered_through),
            col("version", w.version),
            col("created_at", w.created_at),
            col("updated_at", w.updated_at),
        ]);
        let statement = Statement::insert("webhooks", columns, "");
        save_audited(&self.pools, statement, "a webhook with this id", audit).await?;
        Ok(())
    }

    async fn update_webhook(
        &self,
        w: &Webhook,
        which: WebhookColumns,
        expected_version: i64,
        audit: &AuditEntry,
    ) -> StoreResult<bool> {
        let mut columns = vec![col("version", w.version), col("updated_at", w.updated_at)];
        if which.settings {
            columns.extend(settings_columns(w)?);
        }
        match which.state {
            StateWrite::Keep => {}
            StateWrite::Pause => columns.extend(pause_columns(w)),
            StateWrite::Reset => columns.extend(state_columns(w)),
        }
        if which.secrets {
            columns.extend(secret_columns(w));
        }
        let mut statement = Statement::update("webhooks", columns);
        statement.push(" WHERE id = ");
        statement.push_bind(w.id);
        statement.push(" AND version = ");
        statement.push_bind(expected_version);
        save_audited(&self.pools, statement, "a webhook with this id", audit).await
    }

    async fn webhook(&self, id: Uuid) -> StoreResult<Option<Webhook>> {
        let row: Option<WebhookRow> = Statement::owned(format!("{SELECT_WEBHOOKS} WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pools)
            .await?;
        row.map(Webhook::try_from).transpose()
    }

    async fn webhooks(&self) -> StoreResult<Vec<Webhook>> {
        let rows: Vec<WebhookRow> = Statement::owned(format!(
            "{SELECT_WEBHOOKS} ORDER BY created_at, id LIMIT 1000"
        ))
        .fetch_all(&self.pools)
        .await?;
        rows.into_iter().map(Webhook::try_from).collect()
    }

    async fn delete_webhook(&self, id: Uuid, audit: &AuditEntry) -> StoreResult<bool> {
        delete_audited(&self.pools, "DELETE FROM webhooks WHERE id = $1", id, audit).await
    }

    async fn record_webhook_progress(&self, p: &WebhookProgress) -> StoreResult<bool> {
        let mut tx = self.pools.begin().await?;
        let (lease, owner, now) = p.lease;
        let held: Option<(Uuid,)> = Statement::owned(format!(
            "{HOLDS_LEASE}{}",
            self.pools.dialect().lock_row_shared()
        ))
        .bind(lease)
        .bind(owner)
        .bind(now)
        .fetch_optional(&mut tx)
        .await?;
        if held.is_none() {
            tx.rollback().await?;
            return Ok(false);
        }
        if !p.deliveries.is_empty() {
            // A webhook deleted meanwhile takes its log along: nothing to record.
            if let Err(err) = insert_deliveries(&p.deliveries).execute(&mut tx).await {
                tx.rollback().await?;
                return match self.webhook(p.webhook_id).await? {
                    None => Ok(false),
                    Some(_) => Err(err),
                };
            }
        }
        Statement::new(ADVANCE)
            .bind(p.webhook_id)
            .bind(p.delivered_through)
            .bind(p.version)
            .execute(&mut tx)
            .await?;
        let current = Statement::new(SET_PROGRESS)
            .bind(p.webhook_id)
            .bind(p.version)
            .bind(p.state.as_str())
            .bind(p.attempts)
            .bind(p.next_attempt_at)
            .bind(p.failing_since)
            .bind(p.last_error.as_str())
            .execute(&mut tx)
            .await?
            == 1;
        if p.trim {
            Statement::new(TRIM)
                .bind(p.webhook_id)
                .bind(KEPT_DELIVERIES - 1)
                .execute(&mut tx)
                .await?;
        }
        tx.commit().await?;
        Ok(current)
    }

    async fn insert_webhook_deliveries(&self, deliveries: &[WebhookDelivery]) -> StoreResult<()> {
        if !deliveries.is_empty() {
            insert_deliveries(deliveries).execute(&self.pools).await?;
        }
        Ok(())
    }

    async fn webhook_deliveries(
        &self,
        webhook_id: Uuid,
        before: Option<Uuid>,
        failed_only: bool,
        limit: i64,
    ) -> StoreResult<Vec<WebhookDelivery>> {
        let mut statement = Statement::owned(format!("{SELECT_DELIVERIES} WHERE webhook_id = "));
        statement.push_bind(webhook_id);
        if let Some(before) = before {
            statement.push(" AND id < ");
            statement.push_bind(before);
        }
        if failed_only {
            statement.push(" AND delivered_at IS NULL");
        }
        statement.push(" ORDER BY id DESC LIMIT ");
        statement.push_bind(limit);
        let rows: Vec<DeliveryRow> = statement.fetch_all(&self.pools).await?;
        rows.into_iter().map(WebhookDelivery::try_from).collect()
    }

    async fn webhook_attempts_at(&self, webhook_id: Uuid, cursor: i64) -> StoreResult<i32> {
        let (most,): (Option<i32>,) = Statement::new(
            "SELECT MAX(attempt) FROM webhook_deliveries WHERE webhook_id = $1 \
             AND event_cursor = $2",
        )
        .bind(webhook_id)
        .bind(cursor)
        .fetch_one(&self.pools)
        .await?;
        Ok(most.unwrap_or(0))
    }
}
