//! Auto-responses and the record of those sent; a sent one is recorded in the transaction
//! of the change that called for it ([`record_sent`]).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::audit::{delete_audited, save_audited};
use super::database::{Statement, Tx};
use super::{SqlStore, StoreError, StoreResult};
use crate::domain::audit::AuditEntry;
use crate::domain::auto_response::{AutoResponse, AutoResponseKind, AutoResponseSent};
use crate::domain::ticket::Channel;

const SELECT_AUTO_RESPONSES: &str = "SELECT id, kind, channel, template_id, calendar_id, \
    enabled, for_agent_tickets, version, created_at, updated_at FROM auto_responses";

const INSERT_AUTO_RESPONSE: &str = "INSERT INTO auto_responses (id, kind, channel, \
    template_id, calendar_id, enabled, for_agent_tickets, version, created_at, updated_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8, $8)";

const UPDATE_AUTO_RESPONSE: &str = "UPDATE auto_responses SET kind = $2, channel = $3, \
    template_id = $4, calendar_id = $5, enabled = $6, for_agent_tickets = $7, \
    updated_at = $8, version = version + 1 WHERE id = $1 AND version = $9";

const DELETE_AUTO_RESPONSE: &str = "DELETE FROM auto_responses WHERE id = $1";

const RECORD_SENT: &str =
    "INSERT INTO auto_responses_sent (ticket_id, contact, kind, sent_at) VALUES ($1, $2, $3, $4)";

const LAST_SENT: &str = "SELECT MAX(sent_at) FROM auto_responses_sent \
    WHERE ticket_id = $1 AND kind = $2";

const SENT_TO_CONTACT: &str =
    "SELECT COUNT(*) FROM auto_responses_sent WHERE contact = $1 AND sent_at > $2";

#[derive(sqlx::FromRow)]
struct AutoResponseRow {
    id: Uuid,
    kind: String,
    channel: String,
    template_id: Uuid,
    calendar_id: Option<Uuid>,
    enabled: bool,
    for_agent_tickets: bool,
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<AutoResponseRow> for AutoResponse {
    type Error = StoreError;

    fn try_from(row: AutoResponseRow) -> StoreResult<Self> {
        Ok(AutoResponse {
            id: row.id,
            kind: AutoResponseKind::parse(&row.kind)
                .ok_or_else(|| StoreError::Corrupt(format!("auto-response kind {:?}", row.kind)))?,
            channel: Channel::parse(&row.channel)
                .ok_or_else(|| StoreError::Corrupt(format!("channel {:?}", row.channel)))?,
            template_id: row.template_id,
            calendar_id: row.calendar_id,
            enabled: row.enabled,
            for_agent_tickets: row.for_agent_tickets,
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

#[async_trait]
pub trait AutoResponseStore: Send + Sync {
    /// Inserts (`expected_version` None) or updates it if still at that version; `false`
    /// otherwise. A second one of a kind and channel is [`StoreError::AlreadyExists`].
    async fn save_auto_response(
        &self,
        response: &AutoResponse,
        expected_version: Option<i64>,
        audit: &AuditEntry,
    ) -> StoreResult<bool>;
    /// Every auto-response, by kind and channel.
    async fn auto_responses(&self) -> StoreResult<Vec<AutoResponse>>;
    async fn delete_auto_response(&self, id: Uuid, audit: &AuditEntry) -> StoreResult<bool>;
    /// When an auto-response of `kind` last went to the ticket.
    async fn last_auto_response(
        &self,
        ticket_id: Uuid,
        kind: AutoResponseKind,
    ) -> StoreResult<Option<DateTime<Utc>>>;
    /// How many auto-responses went to the contact after `since`.
    async fn auto_responses_to(&self, contact: &str, since: DateTime<Utc>) -> StoreResult<i64>;
}

#[async_trait]
impl AutoResponseStore for SqlStore {
    async fn save_auto_response(
        &self,
        r: &AutoResponse,
        expected_version: Option<i64>,
        audit: &AuditEntry,
    ) -> StoreResult<bool> {
        let query = Statement::new(match expected_version {
            None => INSERT_AUTO_RESPONSE,
            Some(_) => UPDATE_AUTO_RESPONSE,
        })
        .bind(r.id)
        .bind(r.kind.as_str())
        .bind(r.channel.as_str())
        .bind(r.template_id)
        .bind(r.calendar_id)
        .bind(r.enabled)
        .bind(r.for_agent_tickets)
        .bind(r.updated_at);
        let query = match expected_version {
            None => query,
            Some(version) => query.bind(version),
        };
        save_audited(
            &self.pools,
            query,
            "an auto-response of this kind for this channel",
            audit,
        )
        .await
    }

    async fn auto_responses(&self) -> StoreResult<Vec<AutoResponse>> {
        let rows: Vec<AutoResponseRow> =
            Statement::owned(format!("{SELECT_AUTO_RESPONSES} ORDER BY kind, channel"))
                .fetch_all(&self.pools)
                .await?;
        rows.into_iter().map(AutoResponse::try_from).collect()
    }

    async fn delete_auto_response(&self, id: Uuid, audit: &AuditEntry) -> StoreResult<bool> {
        delete_audited(&self.pools, DELETE_AUTO_RESPONSE, id, audit).await
    }

    async fn last_auto_response(
        &self,
        ticket_id: Uuid,
        kind: AutoResponseKind,
    ) -> StoreResult<Option<DateTime<Utc>>> {
        let (last,): (Option<DateTime<Utc>>,) = Statement::new(LAST_SENT)
            .bind(ticket_id)
            .bind(kind.as_str())
            .fetch_one(&self.pools)
            .await?;
        Ok(last)
    }

    async fn auto_responses_to(&self, contact: &str, since: DateTime<Utc>) -> StoreResult<i64> {
        let (count,): (i64,) = Statement::new(SENT_TO_CONTACT)
            .bind(contact)
            .bind(since)
            .fetch_one(&self.pools)
            .await?;
        Ok(count)
    }
}

/// Records an auto-response sent, in the transaction that queues it.
pub(super) async fn record_sent(tx: &mut Tx, sent: &AutoResponseSent) -> StoreResult<()> {
    tx.defer(
        Statement::new(RECORD_SENT)
            .bind(sent.ticket_id)
            .bind(sent.contact.as_str())
            .bind(sent.kind.as_str())
            .bind(sent.at),
    )
    .await
}
