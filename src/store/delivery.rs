//! The delivery queue: outbound messages, one delivery row per consumer group, leases
//! claimed and released, acknowledgements.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::database::{Statement, Tx, json};
use super::events::insert_event;
use super::rows::OutboundRow;
use super::{AckOutcome, DeliveryDue, SqlStore, StoreError, StoreResult};
use crate::domain::delivery::{Acknowledgement, DeliveryStatus, LeasedMessage, OutboundMessage};
use crate::domain::event::{EventPayload, NewEvent};
use crate::domain::ticket::Channel;

/// An outbound message with its ticket's number; see `rows::OutboundRow`.
macro_rules! select_outbound {
    () => {
        "SELECT m.id, m.ticket_id, t.number AS ticket_number, m.event_id, m.conversation_id, \
         m.channel, m.recipient, m.subject, m.body, m.attachments, m.kind, m.source, \
         m.created_at \
         FROM outbound_messages m JOIN tickets t ON t.id = m.ticket_id"
    };
}

const OUTBOUND_BY_ID: &str = concat!(select_outbound!(), " WHERE m.id = $1");

/// An attachment's bytes, or none past `$2` bytes (the gateway fetches those itself).
const ATTACHMENT_CONTENT: &str = "SELECT CASE WHEN a.size_bytes <= $2 \
    THEN COALESCE(b.content, a.content) END \
    FROM attachments a LEFT JOIN attachment_blobs b ON b.sha256 = a.sha256 WHERE a.id = $1";

const TOUCH_CONSUMER: &str = "UPDATE channel_consumers SET last_seen_at = $3 \
    WHERE channel = $1 AND consumer_group = $2";

const COUNT_CONSUMERS: &str = "SELECT COUNT(*) FROM channel_consumers WHERE channel = $1";

const INSERT_CONSUMER: &str = "INSERT INTO channel_consumers \
    (channel, consumer_group, created_at, last_seen_at) VALUES ($1, $2, $3, $3) \
    ON CONFLICT (channel, consumer_group) DO UPDATE SET last_seen_at = excluded.last_seen_at";

/// Something queued for the group (or queued for the channel and not yet for the group),
/// and the earliest lease it holds.
const DELIVERY_DUE: &str = "SELECT \
    EXISTS (SELECT 1 FROM deliveries WHERE channel = $1 AND consumer_group = $2 \
      AND status = 'QUEUED') \
    OR EXISTS (SELECT 1 FROM outbound_messages m WHERE m.channel = $1 AND m.status = 'QUEUED' \
      AND NOT EXISTS (SELECT 1 FROM deliveries d \
        WHERE d.message_id = m.id AND d.consumer_group = $2)), \
    (SELECT lease_expires_at FROM deliveries WHERE channel = $1 AND consumer_group = $2 \
      AND status = 'LEASED' ORDER BY lease_expires_at LIMIT 1)";

const IDLE_CONSUMERS: &str =
    "SELECT channel, consumer_group FROM channel_consumers WHERE last_seen_at < $1 LIMIT 1000";

const DROP_PENDING_DELIVERIES: &str = "DELETE FROM deliveries \
    WHERE channel = $1 AND consumer_group = $2 AND status IN ('QUEUED', 'LEASED')";

const DROP_CONSUMER: &str = "DELETE FROM channel_consumers \
    WHERE channel = $1 AND consumer_group = $2 AND last_seen_at < $3";

/// Messages older than the idle window that no remaining group has pending: nobody will
/// deliver them, and a group subscribing later must not send them weeks late.
const ABANDON_STALE_MESSAGES: &str = "UPDATE outbound_messages SET status = 'FAILED', \
    error = 'no consumer group delivered it before its groups expired', updated_at = $3 \
    WHERE channel = $1 AND status = 'QUEUED' AND created_at < $2 AND NOT EXISTS ( \
      SELECT 1 FROM deliveries d WHERE d.message_id = outbound_messages.id \
        AND d.status IN ('QUEUED', 'LEASED'))";

/// Queues for a group every message of the channel that no group has finished yet and
/// that the group lacks: covers a group's first subscription, and a message committed
/// while the group was registering.
const BACKFILL_GROUP: &str = "INSERT INTO deliveries \
    (message_id, consumer_group, channel, status, attempts, created_at, updated_at) \
    SELECT m.id, $2, m.channel, 'QUEUED', 0, m.created_at, $3 FROM outbound_messages m \
    WHERE m.channel = $1 AND m.status = 'QUEUED' AND NOT EXISTS ( \
      SELECT 1 FROM deliveries d WHERE d.message_id = m.id AND d.consumer_group = $2) \
    ON CONFLICT (message_id, consumer_group) DO NOTHING";

/// The message goes back to the queue; `lease_id` stays until another lease replaces it,
/// so the subscriber that had it may still acknowledge a delivery it made before its
/// stream dropped.
const RELEASE_LEASE: &str = "UPDATE deliveries SET status = 'QUEUED', \
    lease_expires_at = NULL, updated_at = $2 \
    WHERE lease_id = $1 AND status = 'LEASED'";

/// Only the subscriber holding the lease, or the last one to hold it while nobody else
/// took it since, may finish a delivery.
const ACK_DELIVERY: &str = "UPDATE deliveries SET status = $3, lease_id = NULL, \
    lease_expires_at = NULL, updated_at = $4 \
    WHERE message_id = $1 AND consumer_group = $2 AND status IN ('QUEUED', 'LEASED') \
      AND lease_id = $5 \
    RETURNING attempts";

const DELIVERY_STATE: &str = "SELECT status, attempts FROM deliveries \
    WHERE message_id = $1 AND consumer_group = $2";

/// A message counts as delivered once any group delivered it.
const SUM_UP_MESSAGE: &str = "UPDATE outbound_messages SET status = $2, \
    provider_message_id = $3, error = $4, updated_at = $5 \
    WHERE id = $1 AND status <> 'DELIVERED'";

/// A repeated bounce (the same report ingested twice) changes nothing.
const MARK_BOUNCED: &str = "UPDATE outbound_messages SET status = 'FAILED', error = $2, \
    updated_at = $3 WHERE id = $1 AND NOT (status = 'FAILED' AND error = $2)";

const INSERT_OUTBOUND: &str = "INSERT INTO outbound_messages \
    (id, ticket_id, event_id, conversation_id, channel, recipient, subject, body, attachments, \
    kind, source, status, created_at, updated_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'QUEUED', $12, $12)";

/// A new message is queued for every consumer group that has subscribed to its channel.
const QUEUE_FOR_GROUPS: &str = "INSERT INTO deliveries \
    (message_id, consumer_group, channel, status, attempts, created_at, updated_at) \
    SELECT $1, consumer_group, channel, 'QUEUED', 0, $2, $2 FROM channel_consumers \
    WHERE channel = $3";

/// How much one lease takes: at most `limit` messages, with the bytes of attachments up
/// to `inline_bytes` each (larger ones go by id and size).
#[derive(Debug, Clone, Copy)]
pub struct LeaseBatch {
    pub limit: i64,
    pub inline_bytes: i64,
}

/// Outbound messages and their delivery to consumer groups.
#[async_trait]
pub trait DeliveryStore: Send + Sync {
    async fn outbound_message(&self, id: Uuid) -> StoreResult<Option<OutboundMessage>>;

    /// Registers `group` as a consumer of `channel` (it gets every message queued from
    /// now on, and the pending ones it lacks), or marks it seen if it is registered.
    /// `false` when the channel already has `max_groups` other groups.
    async fn register_consumer(
        &self,
        channel: Channel,
        group: &str,
        now: DateTime<Utc>,
        max_groups: i64,
    ) -> StoreResult<bool>;

    /// Whether `group` has anything to claim on `channel` now, and when the earliest
    /// lease it holds runs out. Reads only.
    async fn delivery_due(&self, channel: Channel, group: &str) -> StoreResult<DeliveryDue>;

    /// Forgets consumer groups no subscriber has shown up for since `before`, with
    /// their pending deliveries; finished deliveries stay as history. Messages from before
    /// `before` that no remaining group has pending are marked FAILED at `now`.
    async fn expire_consumer_groups(
        &self,
        before: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<u64>;

    /// Leases up to `limit` messages of `channel` to one subscriber of `group` until
    /// `until`: queued ones, and leased ones whose lease has expired, oldest first.
    async fn lease_messages(
        &self,
        channel: Channel,
        group: &str,
        lease_id: Uuid,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        batch: LeaseBatch,
    ) -> StoreResult<Vec<LeasedMessage>>;

    /// Hands back every message of `channel` still leased under `lease_id` (its stream
    /// ended).
    async fn release_lease(
        &self,
        lease_id: Uuid,
        channel: Channel,
        now: DateTime<Utc>,
    ) -> StoreResult<u64>;

    /// Marks a message FAILED because its email bounced (whatever its gateways reported:
    /// the mail server accepted it, and the recipient's did not), with `receipt` in the
    /// feed. `false` if it was already marked bounced with this error.
    async fn record_bounce(
        &self,
        message_id: Uuid,
        error: &str,
        receipt: NewEvent,
    ) -> StoreResult<bool>;

    /// Finishes a delivery held under `ack.lease_id`. Appends `receipt` only if the
    /// delivery was still leased to it; `None` if the group never received the message.
    async fn ack_delivery(
        &self,
        ack: &Acknowledgement,
        receipt: NewEvent,
    ) -> StoreResult<Option<AckOutcome>>;
}

#[async_trait]
impl DeliveryStore for SqlStore {
    async fn outbound_message(&self, id: Uuid) -> StoreResult<Option<OutboundMessage>> {
        let row: Option<OutboundRow> = Statement::new(OUTBOUND_BY_ID)
            .bind(id)
            .fetch_optional(&self.pools)
            .await?;
        row.map(OutboundMessage::try_from).transpose()
    }

    async fn register_consumer(
        &self,
        channel: Channel,
        group: &str,
        now: DateTime<Utc>,
        max_groups: i64,
    ) -> StoreResult<bool> {
        let mut tx = self.pools.begin().await?;
        let seen = for_group(&mut tx, TOUCH_CONSUMER, channel, group, now).await?;
        if seen == 0 {
            // Registrations on one channel take turns, so two cannot both take
            // the last place.
            Statement::new(tx.dialect().lock_channel())
                .bind(channel.as_str())
                .execute(&mut tx)
                .await?;
            let (groups,): (i64,) = Statement::new(COUNT_CONSUMERS)
                .bind(channel.as_str())
                .fetch_one(&mut tx)
                .await?;
            if groups >= max_groups {
                tx.rollback().await?;
                return Ok(false);
            }
            for_group(&mut tx, INSERT_CONSUMER, channel, group, now).await?;
            for_group(&mut tx, BACKFILL_GROUP, channel, group, now).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn delivery_due(&self, channel: Channel, group: &str) -> StoreResult<DeliveryDue> {
        let (ready, next_expiry): (bool, Option<DateTime<Utc>>) = Statement::new(DELIVERY_DUE)
            .bind(channel.as_str())
            .bind(group)
            .fetch_one(&self.pools)
            .await?;
        Ok(DeliveryDue { ready, next_expiry })
    }

    async fn expire_consumer_groups(
        &self,
        before: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<u64> {
        let idle: Vec<(String, String)> = Statement::new(IDLE_CONSUMERS)
            .bind(before)
            .fetch_all(&self.pools)
            .await?;
        let mut expired = 0;
        for (channel, group) in idle {
            // Each group in a transaction of its own; one that came back since it
            // was read keeps its row, and so its deliveries.
            let mut tx = self.pools.begin().await?;
            let dropped = Statement::new(DROP_CONSUMER)
                .bind(&channel)
                .bind(&group)
                .bind(before)
                .execute(&mut tx)
                .await?;
            if dropped > 0 {
                Statement::new(DROP_PENDING_DELIVERIES)
                    .bind(&channel)
                    .bind(&group)
                    .execute(&mut tx)
                    .await?;
                Statement::new(ABANDON_STALE_MESSAGES)
                    .bind(&channel)
                    .bind(before)
                    .bind(now)
                    .execute(&mut tx)
                    .await?;
            }
            tx.commit().await?;
            expired += dropped;
        }
        Ok(expired)
    }

    #[tracing::instrument(skip_all, fields(channel = %channel, group))]
    async fn lease_messages(
        &self,
        channel: Channel,
        group: &str,
        lease_id: Uuid,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        batch: LeaseBatch,
    ) -> StoreResult<Vec<LeasedMessage>> {
        let LeaseBatch {
            limit,
            inline_bytes,
        } = batch;
        let mut tx = self.pools.begin().await?;
        // (The group's row is not touched here: that would serialise the group's
        // subscribers on it. Open streams mark it seen on their own schedule.)
        for_group(&mut tx, BACKFILL_GROUP, channel, group, now).await?;
        let claim = format!(
            "UPDATE deliveries SET status = 'LEASED', lease_id = $3, \
             lease_expires_at = $5, attempts = attempts + 1, updated_at = $4 \
             WHERE consumer_group = $2 AND message_id IN ( \
               SELECT message_id FROM deliveries \
               WHERE channel = $1 AND consumer_group = $2 AND (status = 'QUEUED' \
                 OR (status = 'LEASED' AND lease_expires_at <= $4)) \
               ORDER BY created_at, message_id LIMIT $6{}) \
             RETURNING message_id, attempts",
            tx.dialect().skip_locked()
        );
        let claimed: Vec<(Uuid, i32)> = Statement::owned(claim)
            .bind(channel.as_str())
            .bind(group)
            .bind(lease_id)
            .bind(now)
            .bind(until)
            .bind(limit)
            .fetch_all(&mut tx)
            .await?;
        let mut leased = Vec::with_capacity(claimed.len());
        for (message_id, attempt) in claimed {
            let row: OutboundRow = Statement::new(OUTBOUND_BY_ID)
                .bind(message_id)
                .fetch_one(&mut tx)
                .await?;
            let message = OutboundMessage::try_from(row)?;
            let mut contents = Vec::with_capacity(message.attachments.len());
            for attachment in &message.attachments {
                let (content,): (Option<Vec<u8>>,) = Statement::new(ATTACHMENT_CONTENT)
                    .bind(attachment.id)
                    .bind(inline_bytes)
                    .fetch_one(&mut tx)
                    .await?;
                contents.push(content.unwrap_or_default());
            }
            leased.push(LeasedMessage {
                message,
                consumer_group: group.to_owned(),
                attempt: i64::from(attempt),
                lease_id,
                lease_expires_at: until,
                contents,
                email: None,
            });
        }
        tx.commit().await?;
        leased.sort_by_key(|l| (l.message.created_at, l.message.id));
        Ok(leased)
    }

    async fn release_lease(
        &self,
        lease_id: Uuid,
        channel: Channel,
        now: DateTime<Utc>,
    ) -> StoreResult<u64> {
        let released = Statement::new(RELEASE_LEASE)
            .bind(lease_id)
            .bind(now)
            .execute(&self.pools)
            .await?;
        if released > 0 {
            // Other subscribers of the group may take these messages now.
            self.bus.publish_queued([channel]);
        }
        Ok(released)
    }

    async fn record_bounce(
        &self,
        message_id: Uuid,
        error: &str,
        receipt: NewEvent,
    ) -> StoreResult<bool> {
        let mut tx = self.pools.begin().await?;
        let marked = Statement::new(MARK_BOUNCED)
            .bind(message_id)
            .bind(error)
            .bind(receipt.created_at)
            .execute(&mut tx)
            .await?;
        if marked == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        insert_event(&mut tx, receipt, 0).await?;
        tx.commit().await?;
        self.bus.publish_local();
        Ok(true)
    }

    #[tracing::instrument(skip_all, fields(message_id = %ack.message_id, group = %ack.consumer_group))]
    async fn ack_delivery(
        &self,
        ack: &Acknowledgement,
        mut receipt: NewEvent,
    ) -> StoreResult<Option<AckOutcome>> {
        use DeliveryStatus;
        let Acknowledgement {
            message_id,
            consumer_group: group,
            lease_id,
            outcome,
            provider_message_id,
            error,
        } = ack;
        let mut tx = self.pools.begin().await?;
        let at = receipt.created_at;
        let acked: Option<(i32,)> = Statement::new(ACK_DELIVERY)
            .bind(*message_id)
            .bind(group)
            .bind(outcome.status().as_str())
            .bind(at)
            .bind(*lease_id)
            .fetch_optional(&mut tx)
            .await?;
        let Some((attempts,)) = acked else {
            let state: Option<(String, i32)> = Statement::new(DELIVERY_STATE)
                .bind(*message_id)
                .bind(group)
                .fetch_optional(&mut tx)
                .await?;
            tx.rollback().await?;
            return state
                .map(|(status, _)| {
                    let status = DeliveryStatus::parse(&status).ok_or_else(|| {
                        StoreError::Corrupt(format!("unknown delivery status {status:?}"))
                    })?;
                    Ok(AckOutcome {
                        status,
                        receipt: None,
                    })
                })
                .transpose();
        };
        Statement::new(SUM_UP_MESSAGE)
            .bind(*message_id)
            .bind(outcome.status().as_str())
            .bind(provider_message_id)
            .bind(error)
            .bind(at)
            .execute(&mut tx)
            .await?;
        if let EventPayload::DeliveryReceipt {
            attempts: recorded, ..
        } = &mut receipt.payload
        {
            *recorded = i64::from(attempts);
        }
        let receipt = insert_event(&mut tx, receipt, 0).await?;
        tx.commit().await?;
        self.bus.publish_local();
        Ok(Some(AckOutcome {
            status: outcome.status(),
            receipt: Some(receipt),
        }))
    }
}

/// Runs a consumer-group statement bound to (`$1` channel, `$2` group, `$3` now);
/// returns the rows it touched.
async fn for_group(
    tx: &mut Tx,
    sql: &'static str,
    channel: Channel,
    group: &str,
    now: DateTime<Utc>,
) -> StoreResult<u64> {
    Statement::new(sql)
        .bind(channel.as_str())
        .bind(group)
        .bind(now)
        .execute(&mut *tx)
        .await
}

/// Queues an outbound message for every consumer group of its channel.
pub(super) async fn queue_outbound(tx: &mut Tx, message: &OutboundMessage) -> StoreResult<()> {
    Statement::new(INSERT_OUTBOUND)
        .bind(message.id)
        .bind(message.ticket_id)
        .bind(message.event_id)
        .bind(&message.conversation_id)
        .bind(message.channel.as_str())
        .bind(&message.recipient)
        .bind(&message.subject)
        .bind(&message.body)
        .bind(json(&message.attachments)?)
        .bind(message.kind.as_str())
        .bind(&message.source)
        .bind(message.created_at)
        .execute(&mut *tx)
        .await?;
    Statement::new(QUEUE_FOR_GROUPS)
        .bind(message.id)
        .bind(message.created_at)
        .bind(message.channel.as_str())
        .execute(tx)
        .await?;
    Ok(())
}
