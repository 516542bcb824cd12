//! SQL shared by both backends, and [`impl_store!`], which implements [`super::Store`]
//! once for each of them.
//!
//! Both drivers accept `$N` placeholders and the statements below use only syntax both
//! understand (`ON CONFLICT`, `RETURNING`, row-value comparisons, recursive CTEs). The
//! per-backend pieces are passed to the macro: how ticket numbers and log positions are
//! drawn, the visibility horizon of stream reads, row locking, and the migrations.

/// The columns of a ticket row joined with its contact; see `rows::TicketRow`.
macro_rules! select_tickets {
    () => {
        "SELECT t.id, t.number, t.subject, t.description, t.status, t.priority, \
         t.ticket_type, t.tags, t.custom_fields, t.assignee_id, t.queue_id, t.merged_into_id, \
         t.channel, t.follow_up_of_id, t.tier, t.required_skills, t.vip_handlers_only, \
         t.version, t.time_spent_seconds, t.created_at, \
         t.updated_at, t.contact_id, c.external_id AS contact_external_id, \
         c.name AS contact_name, c.email AS contact_email, c.phone AS contact_phone, \
         c.vip AS contact_vip \
         FROM tickets t JOIN contacts c ON c.id = t.contact_id"
    };
}

/// The columns of an event with the delivery state of its outbound message, if any;
/// see `rows::EventRow`.
macro_rules! select_events {
    () => {
        "SELECT e.position, e.id, e.ticket_id, e.ticket_number, e.event_type, e.actor_kind, \
         e.actor_id, e.actor_name, e.visibility, e.payload, e.created_at, e.ticket_status, \
         e.priority, e.ticket_type, e.assignee_id, e.queue_id, e.contact_id, e.channel, \
         e.tags, om.id AS delivery_message_id, om.status AS delivery_status, \
         om.provider_message_id AS delivery_provider_id, om.error AS delivery_error \
         FROM ticket_events e LEFT JOIN outbound_messages om ON om.event_id = e.id"
    };
}

/// An outbound message with its ticket's number; see `rows::OutboundRow`.
macro_rules! select_outbound {
    () => {
        "SELECT m.id, m.ticket_id, t.number AS ticket_number, m.event_id, m.conversation_id, \
         m.channel, m.recipient, m.subject, m.body, m.attachments, m.created_at \
         FROM outbound_messages m JOIN tickets t ON t.id = m.ticket_id"
    };
}

macro_rules! select_conversations {
    () => {
        "SELECT id, source, external_id, channel, ticket_id, summary, intent, metadata \
         FROM conversations"
    };
}

pub(super) const SELECT_TICKETS: &str = select_tickets!();
pub(super) const TICKET_BY_ID: &str = concat!(select_tickets!(), " WHERE t.id = $1");
pub(super) const TICKET_BY_NUMBER: &str = concat!(select_tickets!(), " WHERE t.number = $1");
pub(super) const SELECT_EVENTS: &str = select_events!();
pub(super) const EVENT_BY_ID: &str = concat!(select_events!(), " WHERE e.id = $1");
pub(super) const OUTBOUND_BY_ID: &str = concat!(select_outbound!(), " WHERE m.id = $1");
pub(super) const CONVERSATION_BY_KEY: &str = concat!(
    select_conversations!(),
    " WHERE source = $1 AND external_id = $2"
);
pub(super) const CONVERSATION_OF_TICKET: &str = concat!(
    select_conversations!(),
    " WHERE ticket_id = $1 ORDER BY updated_at DESC LIMIT 1"
);

/// A ticket's events and those of every ticket merged into it, at any depth.
pub(super) const ACTIVITY: &str = concat!(
    "WITH RECURSIVE family (id) AS ( \
       SELECT id FROM tickets WHERE id = $1 \
       UNION SELECT t.id FROM tickets t JOIN family f ON t.merged_into_id = f.id) ",
    select_events!(),
    " WHERE e.ticket_id IN (SELECT id FROM family) AND e.position > $2 \
      AND ($3 OR e.visibility = 'public') ORDER BY e.position LIMIT $4"
);

/// Empty strings and a NULL `vip` keep what is stored: a caller that knows only the
/// external id must not erase the name and email another caller supplied. With `$8`
/// (fill only) stored values win over new ones and `vip` is set only on insert.
pub(super) const UPSERT_CONTACT: &str = "INSERT INTO contacts \
    (id, external_id, name, email, phone, vip, created_at, updated_at) \
    VALUES ($1, $2, $3, $4, $5, COALESCE($6, FALSE), $7, $7) \
    ON CONFLICT (external_id) DO UPDATE SET \
    name = CASE WHEN excluded.name = '' OR ($8 AND contacts.name <> '') \
      THEN contacts.name ELSE excluded.name END, \
    email = CASE WHEN excluded.email = '' OR ($8 AND contacts.email <> '') \
      THEN contacts.email ELSE excluded.email END, \
    phone = CASE WHEN excluded.phone = '' OR ($8 AND contacts.phone <> '') \
      THEN contacts.phone ELSE excluded.phone END, \
    vip = CASE WHEN $6 IS NULL OR $8 THEN contacts.vip ELSE excluded.vip END, \
    updated_at = excluded.updated_at \
    RETURNING id, external_id, name, email, phone, vip";

/// Claims a request id, or takes over a claim that has expired (older than `$6`).
pub(super) const CLAIM_REQUEST_ID: &str = "INSERT INTO idempotency_keys \
    (scope, request_id, fingerprint, resource_id, created_at) VALUES ($1, $2, $3, $4, $5) \
    ON CONFLICT (scope, request_id) DO UPDATE SET fingerprint = excluded.fingerprint, \
    resource_id = excluded.resource_id, created_at = excluded.created_at \
    WHERE idempotency_keys.created_at < $6";

pub(super) const LIVE_REQUEST_ID: &str = "SELECT fingerprint, resource_id \
    FROM idempotency_keys WHERE scope = $1 AND request_id = $2 AND created_at >= $3";

pub(super) const PURGE_REQUEST_IDS: &str = "DELETE FROM idempotency_keys WHERE created_at < $1";

pub(super) const INSERT_TAG: &str = "INSERT INTO ticket_tags (ticket_id, tag) VALUES ($1, $2)";

pub(super) const DELETE_TAGS: &str = "DELETE FROM ticket_tags WHERE ticket_id = $1";

pub(super) const UPDATE_TICKET: &str = "UPDATE tickets SET subject = $2, description = $3, \
    status = $4, priority = $5, priority_rank = $6, ticket_type = $7, tags = $8, \
    custom_fields = $9, contact_id = $10, assignee_id = $11, queue_id = $12, \
    merged_into_id = $13, time_spent_seconds = $14, updated_at = $15, channel = $17, \
    follow_up_of_id = $18, tier = $19, required_skills = $20, vip_handlers_only = $21, \
    version = version + 1 \
    WHERE id = $1 AND version = $16";

pub(super) const INSERT_TIME_ENTRY: &str = "INSERT INTO time_entries \
    (id, ticket_id, agent_id, seconds, note, created_at) VALUES ($1, $2, $3, $4, $5, $6)";

pub(super) const INSERT_ATTACHMENT: &str = "INSERT INTO attachments \
    (id, ticket_id, event_id, name, content_type, size_bytes, content, created_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

pub(super) const ATTACHMENT_CONTENT: &str = "SELECT content FROM attachments WHERE id = $1";

pub(super) const INSERT_CONVERSATION: &str = "INSERT INTO conversations \
    (id, source, external_id, channel, ticket_id, summary, intent, metadata, created_at, \
    updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) \
    ON CONFLICT (source, external_id) DO NOTHING";

pub(super) const UPDATE_CONVERSATION: &str = "UPDATE conversations SET channel = $2, \
    ticket_id = $3, summary = $4, intent = $5, metadata = $6, updated_at = $7 WHERE id = $1";

pub(super) const INSERT_INBOUND: &str = "INSERT INTO inbound_messages \
    (channel, external_message_id, ticket_id, event_id, created_at) VALUES ($1, $2, $3, $4, $5) \
    ON CONFLICT (channel, external_message_id) DO NOTHING";

pub(super) const INBOUND_BY_ID: &str = "SELECT ticket_id, event_id FROM inbound_messages \
    WHERE channel = $1 AND external_message_id = $2";

pub(super) const INSERT_OUTBOUND: &str = "INSERT INTO outbound_messages \
    (id, ticket_id, event_id, conversation_id, channel, recipient, subject, body, attachments, \
    status, created_at, updated_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'QUEUED', $10, $10)";

/// A new message is queued for every consumer group that has subscribed to its channel.
pub(super) const QUEUE_FOR_GROUPS: &str = "INSERT INTO deliveries \
    (message_id, consumer_group, channel, status, attempts, created_at, updated_at) \
    SELECT $1, consumer_group, channel, 'QUEUED', 0, $2, $2 FROM channel_consumers \
    WHERE channel = $3";

pub(super) const TOUCH_CONSUMER: &str = "UPDATE channel_consumers SET last_seen_at = $3 \
    WHERE channel = $1 AND consumer_group = $2";

pub(super) const COUNT_CONSUMERS: &str =
    "SELECT COUNT(*) FROM channel_consumers WHERE channel = $1";

pub(super) const INSERT_CONSUMER: &str = "INSERT INTO channel_consumers \
    (channel, consumer_group, created_at, last_seen_at) VALUES ($1, $2, $3, $3) \
    ON CONFLICT (channel, consumer_group) DO UPDATE SET last_seen_at = excluded.last_seen_at";

/// Something queued for the group (or queued for the channel and not yet for the group),
/// and the earliest lease it holds.
pub(super) const DELIVERY_DUE: &str = "SELECT \
    EXISTS (SELECT 1 FROM deliveries WHERE channel = $1 AND consumer_group = $2 \
      AND status = 'QUEUED') \
    OR EXISTS (SELECT 1 FROM outbound_messages m WHERE m.channel = $1 AND m.status = 'QUEUED' \
      AND NOT EXISTS (SELECT 1 FROM deliveries d \
        WHERE d.message_id = m.id AND d.consumer_group = $2)), \
    (SELECT lease_expires_at FROM deliveries WHERE channel = $1 AND consumer_group = $2 \
      AND status = 'LEASED' ORDER BY lease_expires_at LIMIT 1)";

pub(super) const IDLE_CONSUMERS: &str =
    "SELECT channel, consumer_group FROM channel_consumers WHERE last_seen_at < $1 LIMIT 1000";

pub(super) const DROP_PENDING_DELIVERIES: &str = "DELETE FROM deliveries \
    WHERE channel = $1 AND consumer_group = $2 AND status IN ('QUEUED', 'LEASED')";

pub(super) const DROP_CONSUMER: &str = "DELETE FROM channel_consumers \
    WHERE channel = $1 AND consumer_group = $2 AND last_seen_at < $3";

/// Messages older than the idle window that no remaining group has pending: nobody will
/// deliver them, and a group subscribing later must not send them weeks late.
pub(super) const ABANDON_STALE_MESSAGES: &str = "UPDATE outbound_messages SET status = 'FAILED', \
    error = 'no consumer group delivered it before its groups expired', updated_at = $3 \
    WHERE channel = $1 AND status = 'QUEUED' AND created_at < $2 AND NOT EXISTS ( \
      SELECT 1 FROM deliveries d WHERE d.message_id = outbound_messages.id \
        AND d.status IN ('QUEUED', 'LEASED'))";

/// Queues for a group every message of the channel that no group has finished yet and
/// that the group lacks: covers a group's first subscription, and a message committed
/// while the group was registering.
pub(super) const BACKFILL_GROUP: &str = "INSERT INTO deliveries \
    (message_id, consumer_group, channel, status, attempts, created_at, updated_at) \
    SELECT m.id, $2, m.channel, 'QUEUED', 0, m.created_at, $3 FROM outbound_messages m \
    WHERE m.channel = $1 AND m.status = 'QUEUED' AND NOT EXISTS ( \
      SELECT 1 FROM deliveries d WHERE d.message_id = m.id AND d.consumer_group = $2) \
    ON CONFLICT (message_id, consumer_group) DO NOTHING";

/// The message goes back to the queue; `lease_id` stays until another lease replaces it,
/// so the subscriber that had it may still acknowledge a delivery it made before its
/// stream dropped.
pub(super) const RELEASE_LEASE: &str = "UPDATE deliveries SET status = 'QUEUED', \
    lease_expires_at = NULL, updated_at = $2 \
    WHERE lease_id = $1 AND status = 'LEASED'";

/// Only the subscriber holding the lease, or the last one to hold it while nobody else
/// took it since, may finish a delivery.
pub(super) const ACK_DELIVERY: &str = "UPDATE deliveries SET status = $3, lease_id = NULL, \
    lease_expires_at = NULL, updated_at = $4 \
    WHERE message_id = $1 AND consumer_group = $2 AND status IN ('QUEUED', 'LEASED') \
      AND lease_id = $5 \
    RETURNING attempts";

pub(super) const DELIVERY_STATE: &str = "SELECT status, attempts FROM deliveries \
    WHERE message_id = $1 AND consumer_group = $2";

/// A message counts as delivered once any group delivered it.
pub(super) const SUM_UP_MESSAGE: &str = "UPDATE outbound_messages SET status = $2, \
    provider_message_id = $3, error = $4, updated_at = $5 \
    WHERE id = $1 AND status <> 'DELIVERED'";

const API_KEY_COLUMNS: &str =
    "id, name, role, agent_id, channels, sources, prefix, secret_hash, created_at, revoked_at";

/// A secret already stored is left alone, so replicas that start together with the same
/// bootstrap key do not trip over each other.
pub(super) const INSERT_API_KEY: &str = "INSERT INTO api_keys \
    (id, name, role, agent_id, prefix, secret_hash, created_at, revoked_at, channels, sources) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (secret_hash) DO NOTHING";

pub(super) fn api_key_by_id() -> String {
    format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE id = $1")
}

pub(super) fn api_key_by_hash() -> String {
    format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE secret_hash = $1")
}

pub(super) fn api_keys_first_page() -> String {
    format!("SELECT {API_KEY_COLUMNS} FROM api_keys ORDER BY created_at DESC, id DESC LIMIT $1")
}

pub(super) fn api_keys_next_page() -> String {
    format!(
        "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE (created_at, id) < ($2, $3) \
         ORDER BY created_at DESC, id DESC LIMIT $1"
    )
}

pub(super) fn revoke_api_key() -> String {
    format!(
        "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1 \
         RETURNING {API_KEY_COLUMNS}"
    )
}

pub(super) const SELECT_AUDIT: &str = "SELECT id, actor_kind, actor_id, actor_name, action, \
    resource, resource_id, changes, created_at FROM audit_log";

pub(super) const HAS_ACTIVE_ADMIN_KEY: &str =
    "SELECT COUNT(*) FROM api_keys WHERE role = 'admin' AND revoked_at IS NULL";

/// Most events one transaction may append: the ordinal of an event within its
/// transaction occupies the low 20 bits of its PostgreSQL log position.
pub(super) const MAX_EVENTS_PER_TRANSACTION: usize = 1 << 20;

/// Implements `Store` for a struct with `reader` and `writer` pools of database `$db`.
///
/// - `next_number`: SQL expression drawing the next ticket number;
/// - `event_position`: SQL expression for a new event's log position, where `{ordinal}`
///   stands for the parameter holding the event's index within its transaction (events of
///   one transaction may be inserted by one statement);
/// - `horizon`: a condition appended to stream reads (may be empty);
/// - `skip_locked`: the row-locking clause of lease claims (may be empty);
/// - `lock_agent`: a statement locking an agent's row (`$1`) until the transaction ends;
/// - `lock_api_keys`: a statement that makes concurrent bootstraps take turns until the
///   transaction ends;
/// - `lock_channel`: a statement that makes consumer-group registrations on one channel
///   (`$1`) take turns until the transaction ends;
/// - `migration_session`: a statement preparing the connection migrations run on.
macro_rules! impl_store {
    (
        $store:ty,
        $db:ty,
        next_number = $next_number:expr,
        event_position = $event_position:expr,
        horizon = $horizon:expr,
        skip_locked = $skip_locked:expr,
        lock_agent = $lock_agent:expr,
        lock_api_keys = $lock_api_keys:expr,
        lock_channel = $lock_channel:expr,
        migration_session = $migration_session:expr,
        migrator = $migrator:expr $(,)?
    ) => {
        $crate::store::routing_sql::impl_routing_store!($store, $db);
        $crate::store::sla_sql::impl_sla_store!($store, $db);

        #[async_trait::async_trait]
        impl $crate::store::Store for $store {
            #[tracing::instrument(skip_all)]
            async fn migrate(&self) -> $crate::store::StoreResult<()> {
                let mut conn = self.writer.acquire().await?;
                // The session setting must not go back to the pool with the connection.
                conn.close_on_drop();
                sqlx::query($migration_session).execute(&mut *conn).await?;
                // `run` on a pooled connection trips async-trait lifetimes; this is what
                // it calls.
                $migrator.run_direct(None, &mut *conn, false).await?;
                Ok(())
            }

            fn pool_stats(&self) -> (u32, u32) {
                let size = self.reader.size() + self.writer.size();
                let idle = (self.reader.num_idle() + self.writer.num_idle()) as u32;
                (size, idle)
            }

            async fn ping(&self) -> $crate::store::StoreResult<()> {
                sqlx::query("SELECT 1").execute(&self.reader).await?;
                Ok(())
            }

            #[tracing::instrument(skip_all, fields(ticket_id = %draft.id))]
            async fn create_ticket(
                &self,
                draft: $crate::store::TicketDraft,
                changes: $crate::store::Changeset,
                claim: Option<$crate::store::IdempotencyClaim>,
            ) -> $crate::store::StoreResult<$crate::store::CreateOutcome> {
                use $crate::store::sql::*;
                let mut tx = self.writer.begin().await?;
                if let Some(claim) = &claim
                    && let Some(resource) = claim_request_id(&mut tx, claim).await?
                {
                    tx.rollback().await?;
                    return Ok($crate::store::CreateOutcome::Replayed(resource));
                }
                let contact =
                    upsert_contact(&mut tx, &draft.contact, draft.created_at).await?;
                let contact_id = contact.id;
                let insert = format!(
                    "INSERT INTO tickets (id, number, subject, description, status, priority, \
                     priority_rank, ticket_type, tags, custom_fields, contact_id, assignee_id, \
                     queue_id, channel, follow_up_of_id, tier, required_skills, \
                     vip_handlers_only, version, time_spent_seconds, created_at, updated_at) \
                     VALUES ($1, {}, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, \
                     $16, $17, $18, 1, 0, $15, $15) RETURNING number",
                    $next_number
                );
                let (number,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(insert))
                    .bind(draft.id)
                    .bind(&draft.subject)
                    .bind(&draft.description)
                    .bind(draft.status.as_str())
                    .bind(draft.priority.as_str())
                    .bind(draft.priority.rank())
                    .bind(draft.ticket_type.as_str())
                    .bind(sqlx::types::Json(&draft.tags))
                    .bind(sqlx::types::Json(&draft.custom_fields))
                    .bind(contact_id)
                    .bind(draft.assignee_id)
                    .bind(draft.queue_id)
                    .bind(draft.channel.map(|c| c.as_str()))
                    .bind(draft.follow_up_of_id)
                    .bind(draft.created_at)
                    .bind(draft.tier)
                    .bind(sqlx::types::Json(&draft.required_skills))
                    .bind(draft.vip_handlers_only)
                    .fetch_one(&mut *tx)
                    .await?;
                for tag in &draft.tags {
                    sqlx::query(INSERT_TAG)
                        .bind(draft.id)
                        .bind(tag)
                        .execute(&mut *tx)
                        .await?;
                }
                let new_ticket = NewTicket {
                    id: draft.id,
                    number,
                    contact_id,
                };
                let mut clocks: Vec<$crate::domain::sla::Clock> = changes
                    .clocks
                    .iter()
                    .filter(|c| c.ticket_id == draft.id)
                    .cloned()
                    .collect();
                clocks.sort_by_key(|c| c.metric.as_str());
                let committed = apply(&mut tx, changes, Some(new_ticket)).await?;
                tx.commit().await?;
                // Everything the ticket holds was just written from the draft; only the
                // number and the stored contact came back from the database.
                let ticket = draft.into_ticket(number, contact, clocks);
                self.bus.publish_queued(committed.queued.iter().copied());
                Ok($crate::store::CreateOutcome::Created {
                    ticket: Box::new(ticket),
                    committed,
                })
            }

            async fn ticket(
                &self,
                key: $crate::store::TicketKey,
            ) -> $crate::store::StoreResult<Option<$crate::domain::ticket::Ticket>> {
                use $crate::store::sql::*;
                let row: Option<$crate::store::rows::TicketRow> = match key {
                    $crate::store::TicketKey::Id(id) => {
                        sqlx::query_as(TICKET_BY_ID)
                            .bind(id)
                            .fetch_optional(&self.reader)
                            .await?
                    }
                    $crate::store::TicketKey::Number(n) => {
                        sqlx::query_as(TICKET_BY_NUMBER)
                            .bind(n)
                            .fetch_optional(&self.reader)
                            .await?
                    }
                };
                let Some(row) = row else { return Ok(None) };
                let mut tickets = [$crate::domain::ticket::Ticket::try_from(row)?];
                attach_clocks(&self.reader, &mut tickets).await?;
                let [ticket] = tickets;
                Ok(Some(ticket))
            }

            #[tracing::instrument(skip_all)]
            async fn list_tickets(
                &self,
                query: &$crate::store::TicketQuery,
            ) -> $crate::store::StoreResult<Vec<$crate::domain::ticket::Ticket>> {
                use $crate::store::ticket_query::{Param, render};
                let (sql, params) = render(query);
                let mut q = sqlx::query_as::<_, $crate::store::rows::TicketRow>(
                    sqlx::AssertSqlSafe(sql),
                );
                for param in params {
                    q = match param {
                        Param::Text(s) => q.bind(s),
                        Param::Int(i) => q.bind(i),
                        Param::Uuid(u) => q.bind(u),
                        Param::Time(t) => q.bind(t),
                    };
                }
                let mut tickets: Vec<$crate::domain::ticket::Ticket> =
                    $crate::store::rows::convert_all(q.fetch_all(&self.reader).await?)?;
                attach_clocks(&self.reader, &mut tickets).await?;
                Ok(tickets)
            }

            #[tracing::instrument(skip_all, fields(updates = changes.updates.len(), events = changes.events.len()))]
            async fn commit(
                &self,
                changes: $crate::store::Changeset,
            ) -> $crate::store::StoreResult<$crate::store::Committed> {
                let mut tx = self.writer.begin().await?;
                let committed = apply(&mut tx, changes, None).await?;
                tx.commit().await?;
                self.bus.publish_queued(committed.queued.iter().copied());
                Ok(committed)
            }

            async fn activity(
                &self,
                ticket_id: uuid::Uuid,
                after_cursor: i64,
                include_internal: bool,
                limit: i64,
            ) -> $crate::store::StoreResult<Vec<$crate::domain::event::Event>> {
                let rows: Vec<$crate::store::rows::EventRow> =
                    sqlx::query_as($crate::store::sql::ACTIVITY)
                        .bind(ticket_id)
                        .bind(after_cursor)
                        .bind(include_internal)
                        .bind(limit)
                        .fetch_all(&self.reader)
                        .await?;
                $crate::store::rows::convert_all(rows)
            }

            async fn events_after(
                &self,
                after: i64,
                ticket_id: Option<uuid::Uuid>,
                limit: i64,
            ) -> $crate::store::StoreResult<Vec<$crate::domain::event::Event>> {
                let only_ticket = if ticket_id.is_some() { " AND e.ticket_id = $3" } else { "" };
                let sql = format!(
                    "{} WHERE e.position > $1{only_ticket}{} ORDER BY e.position LIMIT $2",
                    $crate::store::sql::SELECT_EVENTS,
                    $horizon
                );
                let mut query = sqlx::query_as::<_, $crate::store::rows::EventRow>(
                    sqlx::AssertSqlSafe(sql),
                )
                .bind(after)
                .bind(limit);
                if let Some(id) = ticket_id {
                    query = query.bind(id);
                }
                $crate::store::rows::convert_all(query.fetch_all(&self.reader).await?)
            }

            async fn events_held_back(&self, after: i64) -> $crate::store::StoreResult<bool> {
                if $horizon.is_empty() {
                    return Ok(false);
                }
                let sql = format!(
                    "SELECT EXISTS (SELECT 1 FROM ticket_events e WHERE e.position > $1 \
                     AND NOT (TRUE{}))",
                    $horizon
                );
                let (held,): (bool,) = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(after)
                    .fetch_one(&self.reader)
                    .await?;
                Ok(held)
            }

            async fn event(
                &self,
                id: uuid::Uuid,
            ) -> $crate::store::StoreResult<Option<$crate::domain::event::Event>> {
                let row: Option<$crate::store::rows::EventRow> =
                    sqlx::query_as($crate::store::sql::EVENT_BY_ID)
                        .bind(id)
                        .fetch_optional(&self.reader)
                        .await?;
                row.map($crate::domain::event::Event::try_from).transpose()
            }

            async fn conversation(
                &self,
                source: &str,
                external_id: &str,
            ) -> $crate::store::StoreResult<Option<$crate::domain::conversation::Conversation>>
            {
                let row: Option<$crate::store::rows::ConversationRow> =
                    sqlx::query_as($crate::store::sql::CONVERSATION_BY_KEY)
                        .bind(source)
                        .bind(external_id)
                        .fetch_optional(&self.reader)
                        .await?;
                row.map($crate::domain::conversation::Conversation::try_from)
                    .transpose()
            }

            async fn conversation_of_ticket(
                &self,
                ticket_id: uuid::Uuid,
            ) -> $crate::store::StoreResult<Option<$crate::domain::conversation::Conversation>>
            {
                let row: Option<$crate::store::rows::ConversationRow> =
                    sqlx::query_as($crate::store::sql::CONVERSATION_OF_TICKET)
                        .bind(ticket_id)
                        .fetch_optional(&self.reader)
                        .await?;
                row.map($crate::domain::conversation::Conversation::try_from)
                    .transpose()
            }

            async fn inbound_message(
                &self,
                channel: $crate::domain::ticket::Channel,
                external_message_id: &str,
            ) -> $crate::store::StoreResult<Option<(uuid::Uuid, uuid::Uuid)>> {
                Ok(sqlx::query_as($crate::store::sql::INBOUND_BY_ID)
                    .bind(channel.as_str())
                    .bind(external_message_id)
                    .fetch_optional(&self.reader)
                    .await?)
            }

            async fn outbound_message(
                &self,
                id: uuid::Uuid,
            ) -> $crate::store::StoreResult<Option<$crate::domain::delivery::OutboundMessage>>
            {
                let row: Option<$crate::store::rows::OutboundRow> =
                    sqlx::query_as($crate::store::sql::OUTBOUND_BY_ID)
                        .bind(id)
                        .fetch_optional(&self.reader)
                        .await?;
                row.map($crate::domain::delivery::OutboundMessage::try_from)
                    .transpose()
            }

            #[tracing::instrument(skip_all, fields(channel = %channel, group))]
            async fn lease_messages(
                &self,
                channel: $crate::domain::ticket::Channel,
                group: &str,
                lease_id: uuid::Uuid,
                now: chrono::DateTime<chrono::Utc>,
                until: chrono::DateTime<chrono::Utc>,
                limit: i64,
            ) -> $crate::store::StoreResult<Vec<$crate::domain::delivery::LeasedMessage>> {
                use $crate::store::sql::*;
                let mut tx = self.writer.begin().await?;
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
                    $skip_locked
                );
                let claimed: Vec<(uuid::Uuid, i32)> = sqlx::query_as(sqlx::AssertSqlSafe(claim))
                    .bind(channel.as_str())
                    .bind(group)
                    .bind(lease_id)
                    .bind(now)
                    .bind(until)
                    .bind(limit)
                    .fetch_all(&mut *tx)
                    .await?;
                let mut leased = Vec::with_capacity(claimed.len());
                for (message_id, attempt) in claimed {
                    let row: $crate::store::rows::OutboundRow = sqlx::query_as(OUTBOUND_BY_ID)
                        .bind(message_id)
                        .fetch_one(&mut *tx)
                        .await?;
                    let message = $crate::domain::delivery::OutboundMessage::try_from(row)?;
                    let mut contents = Vec::with_capacity(message.attachments.len());
                    for attachment in &message.attachments {
                        let (content,): (Vec<u8>,) = sqlx::query_as(ATTACHMENT_CONTENT)
                            .bind(attachment.id)
                            .fetch_one(&mut *tx)
                            .await?;
                        contents.push(content);
                    }
                    leased.push($crate::domain::delivery::LeasedMessage {
                        message,
                        consumer_group: group.to_owned(),
                        attempt: i64::from(attempt),
                        lease_id,
                        lease_expires_at: until,
                        contents,
                    });
                }
                tx.commit().await?;
                leased.sort_by_key(|l| (l.message.created_at, l.message.id));
                Ok(leased)
            }

            async fn register_consumer(
                &self,
                channel: $crate::domain::ticket::Channel,
                group: &str,
                now: chrono::DateTime<chrono::Utc>,
                max_groups: i64,
            ) -> $crate::store::StoreResult<bool> {
                use $crate::store::sql::*;
                let mut tx = self.writer.begin().await?;
                let seen = for_group(&mut tx, TOUCH_CONSUMER, channel, group, now).await?;
                if seen == 0 {
                    // Registrations on one channel take turns, so two cannot both take
                    // the last place.
                    sqlx::query($lock_channel)
                        .bind(channel.as_str())
                        .execute(&mut *tx)
                        .await?;
                    let (groups,): (i64,) = sqlx::query_as(COUNT_CONSUMERS)
                        .bind(channel.as_str())
                        .fetch_one(&mut *tx)
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

            async fn delivery_due(
                &self,
                channel: $crate::domain::ticket::Channel,
                group: &str,
            ) -> $crate::store::StoreResult<$crate::store::DeliveryDue> {
                let (ready, next_expiry): (bool, Option<chrono::DateTime<chrono::Utc>>) =
                    sqlx::query_as($crate::store::sql::DELIVERY_DUE)
                        .bind(channel.as_str())
                        .bind(group)
                        .fetch_one(&self.reader)
                        .await?;
                Ok($crate::store::DeliveryDue { ready, next_expiry })
            }

            async fn expire_consumer_groups(
                &self,
                before: chrono::DateTime<chrono::Utc>,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<u64> {
                use $crate::store::sql::*;
                let idle: Vec<(String, String)> = sqlx::query_as(IDLE_CONSUMERS)
                    .bind(before)
                    .fetch_all(&self.reader)
                    .await?;
                let mut expired = 0;
                for (channel, group) in idle {
                    // Each group in a transaction of its own; one that came back since it
                    // was read keeps its row, and so its deliveries.
                    let mut tx = self.writer.begin().await?;
                    let dropped = sqlx::query(DROP_CONSUMER)
                        .bind(&channel)
                        .bind(&group)
                        .bind(before)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    if dropped > 0 {
                        sqlx::query(DROP_PENDING_DELIVERIES)
                            .bind(&channel)
                            .bind(&group)
                            .execute(&mut *tx)
                            .await?;
                        sqlx::query(ABANDON_STALE_MESSAGES)
                            .bind(&channel)
                            .bind(before)
                            .bind(now)
                            .execute(&mut *tx)
                            .await?;
                    }
                    tx.commit().await?;
                    expired += dropped;
                }
                Ok(expired)
            }

            async fn release_lease(
                &self,
                lease_id: uuid::Uuid,
                channel: $crate::domain::ticket::Channel,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<u64> {
                let released = sqlx::query($crate::store::sql::RELEASE_LEASE)
                    .bind(lease_id)
                    .bind(now)
                    .execute(&self.writer)
                    .await?
                    .rows_affected();
                if released > 0 {
                    // Other subscribers of the group may take these messages now.
                    self.bus.publish_queued([channel]);
                }
                Ok(released)
            }

            #[tracing::instrument(skip_all, fields(message_id = %ack.message_id, group = %ack.consumer_group))]
            async fn ack_delivery(
                &self,
                ack: &$crate::domain::delivery::Acknowledgement,
                mut receipt: $crate::domain::event::NewEvent,
            ) -> $crate::store::StoreResult<Option<$crate::store::AckOutcome>> {
                use $crate::domain::delivery::DeliveryStatus;
                use $crate::store::sql::*;
                let $crate::domain::delivery::Acknowledgement {
                    message_id,
                    consumer_group: group,
                    lease_id,
                    outcome,
                    provider_message_id,
                    error,
                } = ack;
                let mut tx = self.writer.begin().await?;
                let at = receipt.created_at;
                let acked: Option<(i32,)> = sqlx::query_as(ACK_DELIVERY)
                    .bind(*message_id)
                    .bind(group)
                    .bind(outcome.status().as_str())
                    .bind(at)
                    .bind(*lease_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                let Some((attempts,)) = acked else {
                    let state: Option<(String, i32)> = sqlx::query_as(DELIVERY_STATE)
                        .bind(*message_id)
                        .bind(group)
                        .fetch_optional(&mut *tx)
                        .await?;
                    tx.rollback().await?;
                    return state
                        .map(|(status, _)| {
                            let status = DeliveryStatus::parse(&status).ok_or_else(|| {
                                $crate::store::StoreError::Corrupt(format!(
                                    "unknown delivery status {status:?}"
                                ))
                            })?;
                            Ok($crate::store::AckOutcome {
                                status,
                                receipt: None,
                            })
                        })
                        .transpose();
                };
                sqlx::query(SUM_UP_MESSAGE)
                    .bind(*message_id)
                    .bind(outcome.status().as_str())
                    .bind(provider_message_id)
                    .bind(error)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                if let $crate::domain::event::EventPayload::DeliveryReceipt {
                    attempts: recorded,
                    ..
                } = &mut receipt.payload
                {
                    *recorded = i64::from(attempts);
                }
                let receipt = insert_event(&mut tx, receipt, 0).await?;
                tx.commit().await?;
                self.bus.publish_local();
                Ok(Some($crate::store::AckOutcome {
                    status: outcome.status(),
                    receipt: Some(receipt),
                }))
            }

            async fn insert_api_key(
                &self,
                key: &$crate::store::ApiKeyRecord,
                audit: &$crate::domain::audit::AuditEntry,
            ) -> $crate::store::StoreResult<bool> {
                let mut tx = self.writer.begin().await?;
                let inserted = insert_key(&mut tx, key).await?;
                commit_audited!(tx, inserted, audit)
            }

            async fn insert_first_admin_key(
                &self,
                key: &$crate::store::ApiKeyRecord,
                audit: &$crate::domain::audit::AuditEntry,
            ) -> $crate::store::StoreResult<bool> {
                let mut tx = self.writer.begin().await?;
                // Held to the end of the transaction: concurrent bootstraps take turns.
                sqlx::query($lock_api_keys).execute(&mut *tx).await?;
                let (admins,): (i64,) =
                    sqlx::query_as($crate::store::sql::HAS_ACTIVE_ADMIN_KEY)
                        .fetch_one(&mut *tx)
                        .await?;
                if admins > 0 {
                    tx.rollback().await?;
                    return Ok(false);
                }
                let inserted = insert_key(&mut tx, key).await?;
                commit_audited!(tx, inserted, audit)
            }

            async fn api_key_by_hash(
                &self,
                secret_hash: &[u8],
            ) -> $crate::store::StoreResult<Option<$crate::store::ApiKeyRecord>> {
                let row: Option<$crate::store::rows::ApiKeyRow> =
                    sqlx::query_as(sqlx::AssertSqlSafe($crate::store::sql::api_key_by_hash()))
                        .bind(secret_hash)
                        .fetch_optional(&self.reader)
                        .await?;
                row.map($crate::store::ApiKeyRecord::try_from).transpose()
            }

            async fn claimed_request(
                &self,
                claim: &$crate::store::IdempotencyClaim,
            ) -> $crate::store::StoreResult<Option<uuid::Uuid>> {
                let row: Option<(String, uuid::Uuid)> =
                    sqlx::query_as($crate::store::sql::LIVE_REQUEST_ID)
                        .bind(&claim.scope)
                        .bind(&claim.request_id)
                        .bind(claim.expired_before)
                        .fetch_optional(&self.reader)
                        .await?;
                claim.replay_of(row)
            }

            async fn purge_request_ids(
                &self,
                before: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<u64> {
                Ok(sqlx::query($crate::store::sql::PURGE_REQUEST_IDS)
                    .bind(before)
                    .execute(&self.writer)
                    .await?
                    .rows_affected())
            }

            async fn api_key_by_id(
                &self,
                id: uuid::Uuid,
            ) -> $crate::store::StoreResult<Option<$crate::store::ApiKeyRecord>> {
                let row: Option<$crate::store::rows::ApiKeyRow> =
                    sqlx::query_as(sqlx::AssertSqlSafe($crate::store::sql::api_key_by_id()))
                        .bind(id)
                        .fetch_optional(&self.reader)
                        .await?;
                row.map($crate::store::ApiKeyRecord::try_from).transpose()
            }

            async fn list_api_keys(
                &self,
                before: Option<(chrono::DateTime<chrono::Utc>, uuid::Uuid)>,
                limit: i64,
            ) -> $crate::store::StoreResult<Vec<$crate::store::ApiKeyRecord>> {
                use $crate::store::sql::*;
                let rows: Vec<$crate::store::rows::ApiKeyRow> = match before {
                    None => {
                        sqlx::query_as(sqlx::AssertSqlSafe(api_keys_first_page()))
                            .bind(limit)
                            .fetch_all(&self.reader)
                            .await?
                    }
                    Some((created_at, id)) => {
                        sqlx::query_as(sqlx::AssertSqlSafe(api_keys_next_page()))
                            .bind(limit)
                            .bind(created_at)
                            .bind(id)
                            .fetch_all(&self.reader)
                            .await?
                    }
                };
                $crate::store::rows::convert_all(rows)
            }

            async fn revoke_api_key(
                &self,
                id: uuid::Uuid,
                at: chrono::DateTime<chrono::Utc>,
                audit: &$crate::domain::audit::AuditEntry,
            ) -> $crate::store::StoreResult<Option<$crate::store::ApiKeyRecord>> {
                let mut tx = self.writer.begin().await?;
                let row: Option<$crate::store::rows::ApiKeyRow> =
                    sqlx::query_as(sqlx::AssertSqlSafe($crate::store::sql::revoke_api_key()))
                        .bind(id)
                        .bind(at)
                        .fetch_optional(&mut *tx)
                        .await?;
                let record = row.map($crate::store::ApiKeyRecord::try_from).transpose()?;
                // Revoking a revoked key changes nothing, and records nothing.
                let revoked_now = record.as_ref().is_some_and(|k| k.revoked_at == Some(at));
                let _: bool = commit_audited!(tx, revoked_now, audit)?;
                Ok(record)
            }

            async fn audit_entries(
                &self,
                filter: &$crate::domain::audit::AuditFilter,
                before: Option<uuid::Uuid>,
                limit: i64,
            ) -> $crate::store::StoreResult<Vec<$crate::domain::audit::AuditEntry>> {
                let mut q = sqlx::QueryBuilder::<$db>::new($crate::store::sql::SELECT_AUDIT);
                q.push(" WHERE 1 = 1");
                if let Some(resource) = filter.resource {
                    q.push(" AND resource = ").push_bind(resource.as_str());
                }
                if let Some(id) = filter.resource_id {
                    q.push(" AND resource_id = ").push_bind(id);
                }
                if let Some(action) = filter.action {
                    q.push(" AND action = ").push_bind(action.as_str());
                }
                if let Some(id) = filter.actor_id {
                    q.push(" AND actor_id = ").push_bind(id);
                }
                if let Some(since) = filter.since {
                    q.push(" AND created_at >= ").push_bind(since);
                }
                if let Some(until) = filter.until {
                    q.push(" AND created_at < ").push_bind(until);
                }
                if let Some(before) = before {
                    q.push(" AND id < ").push_bind(before);
                }
                q.push(" ORDER BY id DESC LIMIT ").push_bind(limit);
                let rows: Vec<$crate::store::rows::AuditRow> =
                    q.build_query_as().fetch_all(&self.reader).await?;
                $crate::store::rows::convert_all(rows)
            }

            async fn has_active_admin_key(&self) -> $crate::store::StoreResult<bool> {
                let (count,): (i64,) =
                    sqlx::query_as($crate::store::sql::HAS_ACTIVE_ADMIN_KEY)
                        .fetch_one(&self.reader)
                        .await?;
                Ok(count > 0)
            }
        }

        /// Runs a consumer-group statement bound to (`$1` channel, `$2` group, `$3` now);
        /// returns the rows it touched.
        async fn for_group(
            tx: &mut sqlx::Transaction<'static, $db>,
            sql: &'static str,
            channel: $crate::domain::ticket::Channel,
            group: &str,
            now: chrono::DateTime<chrono::Utc>,
        ) -> $crate::store::StoreResult<u64> {
            Ok(sqlx::query(sql)
                .bind(channel.as_str())
                .bind(group)
                .bind(now)
                .execute(&mut **tx)
                .await?
                .rows_affected())
        }

        /// Inserts `key` in `tx`; `false` if its secret is stored already.
        async fn insert_key(
            tx: &mut sqlx::Transaction<'static, $db>,
            key: &$crate::store::ApiKeyRecord,
        ) -> $crate::store::StoreResult<bool> {
            let inserted = sqlx::query($crate::store::sql::INSERT_API_KEY)
                .bind(key.id)
                .bind(&key.name)
                .bind(key.role.as_str())
                .bind(key.agent_id)
                .bind(&key.prefix)
                .bind(&key.secret_hash)
                .bind(key.created_at)
                .bind(key.revoked_at)
                .bind(sqlx::types::Json(
                    key.channels.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
                ))
                .bind(sqlx::types::Json(&key.sources))
                .execute(&mut **tx)
                .await?
                .rows_affected();
            Ok(inserted == 1)
        }

        /// The ticket `create_ticket` inserted in the current transaction.
        struct NewTicket {
            id: uuid::Uuid,
            number: i64,
            contact_id: uuid::Uuid,
        }

        /// Writes a changeset inside `tx`. Events about `new_ticket` get its number and
        /// contact. Returns what was written; the caller commits.
        /// Claims `claim`'s request id in `tx`. `Some(resource)` when a live claim holds
        /// it already, for the same body; an error for a different body.
        async fn claim_request_id(
            tx: &mut sqlx::Transaction<'static, $db>,
            claim: &$crate::store::IdempotencyClaim,
        ) -> $crate::store::StoreResult<Option<uuid::Uuid>> {
            use $crate::store::sql::*;
            let claimed = sqlx::query(CLAIM_REQUEST_ID)
                .bind(&claim.scope)
                .bind(&claim.request_id)
                .bind(&claim.fingerprint)
                .bind(claim.resource_id)
                .bind(claim.at)
                .bind(claim.expired_before)
                .execute(&mut **tx)
                .await?
                .rows_affected();
            if claimed > 0 {
                return Ok(None);
            }
            // Not claimed, so a live claim holds the id (an expired one would have been
            // taken over by the statement above).
            let held: Option<(String, uuid::Uuid)> = sqlx::query_as(LIVE_REQUEST_ID)
                .bind(&claim.scope)
                .bind(&claim.request_id)
                .bind(claim.expired_before)
                .fetch_optional(&mut **tx)
                .await?;
            claim.replay_of(held)?.map(Some).ok_or_else(|| {
                $crate::store::StoreError::Corrupt(format!(
                    "request id {:?} is neither claimable nor held",
                    claim.request_id
                ))
            })
        }

        async fn apply(
            tx: &mut sqlx::Transaction<'static, $db>,
            changes: $crate::store::Changeset,
            new_ticket: Option<NewTicket>,
        ) -> $crate::store::StoreResult<$crate::store::Committed> {
            use $crate::store::sql::*;
            let $crate::store::Changeset {
                guard,
                clocks,
                updates,
                events,
                time_entries,
                attachments,
                conversation,
                transcript,
                inbound,
                outbound,
                claim,
            } = changes;
            if let Some(claim) = &claim
                && let Some(resource) = claim_request_id(tx, claim).await?
            {
                return Ok($crate::store::Committed {
                    replayed: Some(resource),
                    ..Default::default()
                });
            }
            if events.len() + transcript.len() >= MAX_EVENTS_PER_TRANSACTION {
                return Err($crate::store::StoreError::Corrupt(
                    "too many events for one transaction".into(),
                ));
            }
            if let Some(guard) = &guard {
                guard_assignment(tx, guard, $lock_agent).await?;
            }
            if let Some(claim) = &inbound {
                let claimed = sqlx::query(INSERT_INBOUND)
                    .bind(claim.channel.as_str())
                    .bind(&claim.external_message_id)
                    .bind(claim.ticket_id)
                    .bind(claim.event_id)
                    .bind(claim.at)
                    .execute(&mut **tx)
                    .await?
                    .rows_affected();
                if claimed == 0 {
                    return Err($crate::store::StoreError::DuplicateInbound(
                        claim.external_message_id.clone(),
                    ));
                }
            }
            for update in &updates {
                let t = &update.ticket;
                let contact_id = match &update.contact {
                    Some(contact) => upsert_contact(tx, contact, t.updated_at).await?.id,
                    None => t.contact.id,
                };
                let updated = sqlx::query(UPDATE_TICKET)
                    .bind(t.id)
                    .bind(&t.subject)
                    .bind(&t.description)
                    .bind(t.status.as_str())
                    .bind(t.priority.as_str())
                    .bind(t.priority.rank())
                    .bind(t.ticket_type.as_str())
                    .bind(sqlx::types::Json(&t.tags))
                    .bind(sqlx::types::Json(&t.custom_fields))
                    .bind(contact_id)
                    .bind(t.assignee_id)
                    .bind(t.queue_id)
                    .bind(t.merged_into_id)
                    .bind(t.time_spent_seconds)
                    .bind(t.updated_at)
                    .bind(update.expected_version)
                    .bind(t.channel.map(|c| c.as_str()))
                    .bind(t.follow_up_of_id)
                    .bind(t.tier)
                    .bind(sqlx::types::Json(&t.required_skills))
                    .bind(t.vip_handlers_only)
                    .execute(&mut **tx)
                    .await?
                    .rows_affected();
                if updated == 0 {
                    return Err($crate::store::StoreError::Conflict(t.id));
                }
                if update.tags_changed {
                    sqlx::query(DELETE_TAGS).bind(t.id).execute(&mut **tx).await?;
                    for tag in &t.tags {
                        sqlx::query(INSERT_TAG)
                            .bind(t.id)
                            .bind(tag)
                            .execute(&mut **tx)
                            .await?;
                    }
                }
            }
            match &conversation {
                Some($crate::store::ConversationWrite::Insert(c, at)) => {
                    let inserted = sqlx::query(INSERT_CONVERSATION)
                        .bind(c.id)
                        .bind(&c.source)
                        .bind(&c.external_id)
                        .bind(c.channel.as_str())
                        .bind(c.ticket_id)
                        .bind(&c.summary)
                        .bind(&c.intent)
                        .bind(sqlx::types::Json(&c.metadata))
                        .bind(at)
                        .execute(&mut **tx)
                        .await?
                        .rows_affected();
                    if inserted == 0 {
                        return Err($crate::store::StoreError::ConversationExists(
                            c.external_id.clone(),
                        ));
                    }
                }
                Some($crate::store::ConversationWrite::Update(c, at)) => {
                    sqlx::query(UPDATE_CONVERSATION)
                        .bind(c.id)
                        .bind(c.channel.as_str())
                        .bind(c.ticket_id)
                        .bind(&c.summary)
                        .bind(&c.intent)
                        .bind(sqlx::types::Json(&c.metadata))
                        .bind(at)
                        .execute(&mut **tx)
                        .await?;
                }
                None => {}
            }
            for entry in &time_entries {
                sqlx::query(INSERT_TIME_ENTRY)
                    .bind(entry.id)
                    .bind(entry.ticket_id)
                    .bind(entry.agent_id)
                    .bind(entry.seconds)
                    .bind(&entry.note)
                    .bind(entry.created_at)
                    .execute(&mut **tx)
                    .await?;
            }
            let fill = |mut event: $crate::domain::event::NewEvent| {
                if let Some(t) = &new_ticket {
                    if event.ticket_id == t.id {
                        event.ticket_number = t.number;
                        event.ticket.contact_id = t.contact_id;
                    }
                }
                event
            };
            let mut pending: Vec<$crate::domain::event::NewEvent> =
                Vec::with_capacity(events.len() + transcript.len());
            pending.extend(events.into_iter().map(fill));
            let mut files = attachments;
            let mut transcript_added = 0;
            // One statement claims every message key; only the messages it could claim
            // (the ones the conversation did not hold yet) become events.
            let mut fresh = claim_transcript_keys(tx, &transcript).await?;
            for message in transcript {
                if fresh.remove(&message.key) {
                    pending.push(fill(message.event));
                    transcript_added += 1;
                    files.extend(message.attachments);
                }
            }
            // Attachments reference their event, so they follow the events.
            let stored = insert_events(tx, pending, 0).await?;
            for file in &files {
                sqlx::query(INSERT_ATTACHMENT)
                    .bind(file.id)
                    .bind(file.ticket_id)
                    .bind(file.event_id)
                    .bind(&file.name)
                    .bind(&file.content_type)
                    .bind(file.content.len() as i64)
                    .bind(&file.content)
                    .bind(file.created_at)
                    .execute(&mut **tx)
                    .await?;
            }
            for message in &outbound {
                sqlx::query(INSERT_OUTBOUND)
                    .bind(message.id)
                    .bind(message.ticket_id)
                    .bind(message.event_id)
                    .bind(&message.conversation_id)
                    .bind(message.channel.as_str())
                    .bind(&message.recipient)
                    .bind(&message.subject)
                    .bind(&message.body)
                    .bind(sqlx::types::Json(&message.attachments))
                    .bind(message.created_at)
                    .execute(&mut **tx)
                    .await?;
                sqlx::query(QUEUE_FOR_GROUPS)
                    .bind(message.id)
                    .bind(message.created_at)
                    .bind(message.channel.as_str())
                    .execute(&mut **tx)
                    .await?;
            }
            upsert_clocks(tx, &clocks).await?;
            let mut tickets = Vec::with_capacity(updates.len());
            for update in &updates {
                tickets.push(ticket_in(tx, update.ticket.id).await?);
            }
            Ok($crate::store::Committed {
                tickets,
                events: stored,
                transcript_added,
                replayed: None,
                queued: outbound.iter().map(|m| m.channel).collect(),
            })
        }

        /// Inserts the keys of transcript messages in chunks; returns those that were new.
        async fn claim_transcript_keys(
            tx: &mut sqlx::Transaction<'static, $db>,
            transcript: &[$crate::store::TranscriptWrite],
        ) -> $crate::store::StoreResult<std::collections::HashSet<String>> {
            let mut fresh = std::collections::HashSet::new();
            // Three parameters a row; both databases accept far more than 3 * 500.
            for chunk in transcript.chunks(500) {
                let rows: Vec<String> = (0..chunk.len())
                    .map(|i| format!("(${}, ${}, ${})", 3 * i + 1, 3 * i + 2, 3 * i + 3))
                    .collect();
                let sql = format!(
                    "INSERT INTO conversation_messages (conversation_id, message_key, event_id) \
                     VALUES {} ON CONFLICT (conversation_id, message_key) DO NOTHING \
                     RETURNING message_key",
                    rows.join(", ")
                );
                let mut query = sqlx::query_as::<_, (String,)>(sqlx::AssertSqlSafe(sql));
                for message in chunk {
                    query = query
                        .bind(message.conversation_id)
                        .bind(&message.key)
                        .bind(message.event.id);
                }
                fresh.extend(query.fetch_all(&mut **tx).await?.into_iter().map(|(k,)| k));
            }
            Ok(fresh)
        }

        /// Inserts or refreshes a contact by external id; returns it as stored.
        async fn upsert_contact(
            tx: &mut sqlx::Transaction<'static, $db>,
            contact: &$crate::domain::ticket::ContactInput,
            at: chrono::DateTime<chrono::Utc>,
        ) -> $crate::store::StoreResult<$crate::domain::ticket::Contact> {
            let (id, external_id, name, email, phone, vip): (
                uuid::Uuid,
                String,
                String,
                String,
                String,
                bool,
            ) = sqlx::query_as($crate::store::sql::UPSERT_CONTACT)
                .bind(uuid::Uuid::now_v7())
                .bind(&contact.external_id)
                .bind(&contact.name)
                .bind(&contact.email)
                .bind(&contact.phone)
                .bind(contact.vip)
                .bind(at)
                .bind(contact.fill_only)
                .fetch_one(&mut **tx)
                .await?;
            Ok($crate::domain::ticket::Contact {
                id,
                external_id,
                name,
                email,
                phone,
                vip,
            })
        }

        /// Appends one event; `ordinal` is its index among the transaction's events.
        async fn insert_event(
            tx: &mut sqlx::Transaction<'static, $db>,
            event: $crate::domain::event::NewEvent,
            ordinal: i64,
        ) -> $crate::store::StoreResult<$crate::domain::event::Event> {
            let mut stored = insert_events(tx, vec![event], ordinal).await?;
            stored.pop().ok_or_else(|| {
                $crate::store::StoreError::Corrupt("an inserted event came back empty".into())
            })
        }

        /// Appends events in as few statements as the parameter limits allow; the first
        /// takes `first_ordinal` as its index among the transaction's events, the rest
        /// follow in order.
        async fn insert_events(
            tx: &mut sqlx::Transaction<'static, $db>,
            events: Vec<$crate::domain::event::NewEvent>,
            first_ordinal: i64,
        ) -> $crate::store::StoreResult<Vec<$crate::domain::event::Event>> {
            const PARAMS: usize = 19;
            let mut stored = Vec::with_capacity(events.len());
            let mut ordinal = first_ordinal;
            for chunk in events.chunks(500) {
                let rows: Vec<String> = (0..chunk.len())
                    .map(|row| {
                        let p = |n: usize| format!("${}", row * PARAMS + n);
                        let columns: Vec<String> = (1..PARAMS).map(p).collect();
                        let position = $event_position.replace("{ordinal}", &p(PARAMS));
                        format!("({position}, {})", columns.join(", "))
                    })
                    .collect();
                let sql = format!(
                    "INSERT INTO ticket_events (position, id, ticket_id, ticket_number, \
                     event_type, actor_kind, actor_id, actor_name, visibility, payload, \
                     created_at, ticket_status, priority, ticket_type, assignee_id, queue_id, \
                     contact_id, channel, tags) VALUES {} RETURNING id, position",
                    rows.join(", ")
                );
                let mut query = sqlx::query_as::<_, (uuid::Uuid, i64)>(sqlx::AssertSqlSafe(sql));
                for event in chunk {
                    let snapshot = &event.ticket;
                    query = query
                        .bind(event.id)
                        .bind(event.ticket_id)
                        .bind(event.ticket_number)
                        .bind(event.kind.as_str())
                        .bind(event.actor.kind.as_str())
                        .bind(event.actor.id)
                        .bind(&event.actor.name)
                        .bind(event.visibility.as_str())
                        .bind(sqlx::types::Json(&event.payload))
                        .bind(event.created_at)
                        .bind(snapshot.status.as_str())
                        .bind(snapshot.priority.as_str())
                        .bind(snapshot.ticket_type.as_str())
                        .bind(snapshot.assignee_id)
                        .bind(snapshot.queue_id)
                        .bind(snapshot.contact_id)
                        .bind(snapshot.channel.map(|c| c.as_str()))
                        .bind(sqlx::types::Json(&snapshot.tags))
                        .bind(ordinal);
                    ordinal += 1;
                }
                let positions: std::collections::HashMap<uuid::Uuid, i64> =
                    query.fetch_all(&mut **tx).await?.into_iter().collect();
                for event in chunk {
                    let cursor = *positions.get(&event.id).ok_or_else(|| {
                        $crate::store::StoreError::Corrupt(format!(
                            "event {} was not stored",
                            event.id
                        ))
                    })?;
                    stored.push($crate::domain::event::Event {
                        cursor,
                        event: event.clone(),
                        delivery: None,
                    });
                }
            }
            Ok(stored)
        }

        async fn ticket_in(
            tx: &mut sqlx::Transaction<'static, $db>,
            id: uuid::Uuid,
        ) -> $crate::store::StoreResult<$crate::domain::ticket::Ticket> {
            let row: $crate::store::rows::TicketRow =
                sqlx::query_as($crate::store::sql::TICKET_BY_ID)
                    .bind(id)
                    .fetch_one(&mut **tx)
                    .await?;
            let mut tickets = [$crate::domain::ticket::Ticket::try_from(row)?];
            attach_clocks(&mut **tx, &mut tickets).await?;
            let [ticket] = tickets;
            Ok(ticket)
        }
    };
}
pub(super) use impl_store;
