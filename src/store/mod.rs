//! Persistence: the [`Store`] trait and its PostgreSQL and SQLite implementations.
//!
//! Every SQL statement of ticketd lives below this module. Writes that change a ticket
//! append their events in the same transaction (the transactional outbox), and every
//! ticket update is conditional on the version the caller read, so lost updates surface as
//! [`StoreError::Conflict`] instead of silently overwriting.

/// Appends an audit entry inside the transaction of the change it records.
macro_rules! insert_audit {
    ($conn:expr, $entry:expr) => {{
        let entry: &$crate::domain::audit::AuditEntry = $entry;
        sqlx::query($crate::store::INSERT_AUDIT)
            .bind(entry.id)
            .bind(entry.actor.kind.as_str())
            .bind(entry.actor.id)
            .bind(&entry.actor.name)
            .bind(entry.action.as_str())
            .bind(entry.resource.as_str())
            .bind(entry.resource_id)
            .bind(sqlx::types::Json(&entry.changes))
            .bind(entry.created_at)
            .execute($conn)
            .await
    }};
}

/// Ends an administrative write's transaction: with its audit entry when the write
/// `done`, rolled back when it changed nothing. Evaluates to `Ok(done)`.
macro_rules! commit_audited {
    ($tx:ident, $done:expr, $audit:expr) => {{
        let done: bool = $done;
        if done {
            insert_audit!(&mut *$tx, $audit)?;
            $tx.commit().await?;
        } else {
            $tx.rollback().await?;
        }
        Ok::<bool, $crate::store::StoreError>(done)
    }};
}

mod pg_notify;
mod postgres;
mod routing_sql;
mod rows;
mod sla_sql;
mod sql;
mod sqlite;
mod ticket_query;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::audit::{AuditEntry, AuditFilter};
use crate::domain::calendar::BusinessCalendar;
use crate::domain::conversation::Conversation;
use crate::domain::delivery::{Acknowledgement, DeliveryStatus, LeasedMessage, OutboundMessage};
use crate::domain::event::{Event, NewEvent};
use crate::domain::filter::TicketFilter;
use crate::domain::routing::{Agent, Candidate, Queue, RoutingRule};
use crate::domain::sla::{Clock, SlaPolicy};
use crate::domain::ticket::{Channel, Contact, ContactInput, Priority, Status, Ticket, TicketType};
use crate::events::Bus;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The ticket changed since it was read (its version moved on).
    #[error("ticket {0} was changed concurrently")]
    Conflict(Uuid),
    /// Another transaction created this conversation first; re-read and retry.
    #[error("conversation {0} already exists")]
    ConversationExists(String),
    /// A customer message with this gateway id was stored before.
    #[error("message {0} was already received")]
    DuplicateInbound(String),
    /// An automatic assignment found the agent full or no longer ONLINE.
    #[error("agent {0} cannot take another ticket")]
    AgentUnavailable(Uuid),
    /// A unique key is taken.
    #[error("{0} already exists")]
    AlreadyExists(&'static str),
    /// An idempotency key was reused with a different request.
    #[error("request id {0:?} was already used with a different request")]
    IdempotencyMismatch(String),
    /// The database cannot be reached right now; retrying later may succeed.
    #[error("database unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// A statement ran past the statement timeout and was cancelled.
    #[error("a statement ran past its timeout")]
    TimedOut(#[source] sqlx::Error),
    #[error("database error")]
    Database(#[source] sqlx::Error),
    #[error("migration failed")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// A stored value does not fit the domain (a bug or a hand-edited row).
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    /// The first connection at start-up failed: names the server, with the driver's
    /// reason as the source.
    #[error("cannot connect to PostgreSQL at {target}")]
    Connect {
        target: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("unsupported database url {0:?}: use postgres://… or sqlite://…")]
    UnsupportedUrl(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match err {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_) => StoreError::Unavailable(err),
            sqlx::Error::Database(ref db) if is_unavailable_code(db.code().as_deref()) => {
                StoreError::Unavailable(err)
            }
            // PostgreSQL's query_canceled (the statement timeout fired), SQLite's
            // SQLITE_INTERRUPT (the read time limit did).
            sqlx::Error::Database(ref db)
                if matches!(db.code().as_deref(), Some("57014" | "9")) =>
            {
                StoreError::TimedOut(err)
            }
            other => StoreError::Database(other),
        }
    }
}

/// PostgreSQL error classes that mean "try again later": 08 connection exceptions,
/// 53 insufficient resources, 57P01..57P03 shutdown / cannot connect now.
fn is_unavailable_code(code: Option<&str>) -> bool {
    match code {
        Some(code) => code.starts_with("08") || code.starts_with("53") || code.starts_with("57P"),
        None => false,
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Maps a unique-key violation to [`StoreError::AlreadyExists`].
pub(crate) fn unique_violation(err: sqlx::Error, what: &'static str) -> StoreError {
    match &err {
        sqlx::Error::Database(db) if db.kind() == sqlx::error::ErrorKind::UniqueViolation => {
            StoreError::AlreadyExists(what)
        }
        _ => StoreError::from(err),
    }
}

/// A ticket to insert. The store assigns its number.
#[derive(Debug, Clone)]
pub struct TicketDraft {
    pub id: Uuid,
    pub subject: String,
    pub description: String,
    pub status: Status,
    pub priority: Priority,
    pub ticket_type: TicketType,
    pub tags: Vec<String>,
    pub custom_fields: BTreeMap<String, String>,
    pub contact: ContactInput,
    pub assignee_id: Option<Uuid>,
    pub queue_id: Option<Uuid>,
    pub channel: Option<Channel>,
    pub follow_up_of_id: Option<Uuid>,
    pub tier: i32,
    pub required_skills: Vec<String>,
    pub vip_handlers_only: bool,
    pub created_at: DateTime<Utc>,
}

impl TicketDraft {
    /// The ticket this draft becomes once stored as version 1 with `number`.
    pub fn into_ticket(self, number: i64, contact: Contact, sla_clocks: Vec<Clock>) -> Ticket {
        Ticket {
            id: self.id,
            number,
            subject: self.subject,
            description: self.description,
            status: self.status,
            priority: self.priority,
            ticket_type: self.ticket_type,
            tags: self.tags,
            custom_fields: self.custom_fields,
            contact,
            assignee_id: self.assignee_id,
            queue_id: self.queue_id,
            merged_into_id: None,
            channel: self.channel,
            follow_up_of_id: self.follow_up_of_id,
            tier: self.tier,
            required_skills: self.required_skills,
            vip_handlers_only: self.vip_handlers_only,
            sla_clocks,
            version: 1,
            time_spent_seconds: 0,
            created_at: self.created_at,
            updated_at: self.created_at,
        }
    }
}

/// Claims a caller's request id for one operation; see [`Store::create_ticket`] and
/// [`Changeset::claim`].
#[derive(Debug, Clone)]
pub struct IdempotencyClaim {
    /// The operation and the calling key: a request id means something only to the key
    /// that sent it.
    pub scope: String,
    pub request_id: String,
    /// A digest of the request body: a retry must carry the same one.
    pub fingerprint: String,
    /// What the first request made (a ticket, an event): a retry gets it back.
    pub resource_id: Uuid,
    pub at: DateTime<Utc>,
    /// A claim made before this has expired and is taken over as if it were absent.
    pub expired_before: DateTime<Utc>,
}

impl IdempotencyClaim {
    /// What a retry gets from the claim `held` on its request id (fingerprint and
    /// resource): the first request's resource for the same body, a mismatch error for
    /// another body, `None` when nothing holds the id.
    pub(crate) fn replay_of(&self, held: Option<(String, Uuid)>) -> StoreResult<Option<Uuid>> {
        match held {
            Some((fingerprint, _)) if fingerprint != self.fingerprint => {
                Err(StoreError::IdempotencyMismatch(self.request_id.clone()))
            }
            Some((_, resource)) => Ok(Some(resource)),
            None => Ok(None),
        }
    }
}

#[derive(Debug)]
pub enum CreateOutcome {
    Created {
        ticket: Box<Ticket>,
        committed: Committed,
    },
    /// The request id was claimed before, with the same body, by the request that made
    /// this resource (whatever the claim named: a ticket, or a message's event).
    Replayed(Uuid),
}

/// A new state for one ticket, applied only if the ticket is still at `expected_version`.
#[derive(Debug, Clone)]
pub struct TicketUpdate {
    pub ticket: Ticket,
    pub expected_version: i64,
    /// Set when the contact changes: upserted by external id and linked.
    pub contact: Option<ContactInput>,
    pub tags_changed: bool,
}

impl TicketUpdate {
    /// `ticket` written over `expected_version`, keeping its contact link and tags rows.
    pub fn fields_only(ticket: Ticket, expected_version: i64) -> Self {
        TicketUpdate {
            ticket,
            expected_version,
            contact: None,
            tags_changed: false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct TimeEntry {
    pub id: Uuid,
    pub ticket_id: Uuid,
    pub agent_id: Option<Uuid>,
    pub seconds: i64,
    pub note: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct NewAttachment {
    pub id: Uuid,
    pub ticket_id: Uuid,
    pub event_id: Uuid,
    pub name: String,
    pub content_type: String,
    pub content: Vec<u8>,
    pub created_at: DateTime<Utc>,
}

/// How a changeset touches a conversation.
#[derive(Debug, Clone)]
pub enum ConversationWrite {
    /// A new conversation; fails with [`StoreError::ConversationExists`] if another
    /// transaction created it first.
    Insert(Conversation, DateTime<Utc>),
    /// New ticket link and context for a stored conversation, at a time.
    Update(Conversation, DateTime<Utc>),
}

/// A transcript message: its event is appended only if the conversation does not hold a
/// message with the same key yet.
#[derive(Debug, Clone)]
pub struct TranscriptWrite {
    pub conversation_id: Uuid,
    pub key: String,
    pub event: NewEvent,
    pub attachments: Vec<NewAttachment>,
}

/// Records a gateway's message id; a second use fails with
/// [`StoreError::DuplicateInbound`].
#[derive(Debug, Clone)]
pub struct InboundClaim {
    pub channel: Channel,
    pub external_message_id: String,
    pub ticket_id: Uuid,
    pub event_id: Uuid,
    pub at: DateTime<Utc>,
}

/// Makes an automatic assignment conditional: the agent must be ONLINE and below capacity
/// counting every other active ticket, checked under a lock on the agent. The agent's
/// round-robin turn in `queue_id` is recorded.
#[derive(Debug, Clone)]
pub struct AssignmentGuard {
    pub agent_id: Uuid,
    pub ticket_id: Uuid,
    pub queue_id: Uuid,
    pub at: DateTime<Utc>,
}

/// Everything one action writes, committed atomically.
#[derive(Debug, Clone, Default)]
pub struct Changeset {
    pub guard: Option<AssignmentGuard>,
    /// SLA clocks to write as they are (by ticket and metric).
    pub clocks: Vec<Clock>,
    pub updates: Vec<TicketUpdate>,
    pub events: Vec<NewEvent>,
    pub time_entries: Vec<TimeEntry>,
    pub attachments: Vec<NewAttachment>,
    pub conversation: Option<ConversationWrite>,
    pub transcript: Vec<TranscriptWrite>,
    pub inbound: Option<InboundClaim>,
    pub outbound: Vec<OutboundMessage>,
    /// With a claim, a request id seen before applies nothing and reports the first
    /// request's resource in [`Committed::replayed`] (or fails with
    /// [`StoreError::IdempotencyMismatch`] for a different body).
    pub claim: Option<IdempotencyClaim>,
}

#[derive(Debug, Default)]
pub struct Committed {
    /// The updated tickets as stored, in the order of `Changeset::updates`.
    pub tickets: Vec<Ticket>,
    /// Every event appended, in log order (transcript events after the others).
    pub events: Vec<Event>,
    /// How many transcript messages were new.
    pub transcript_added: usize,
    /// The changeset's request id was claimed before, by the request that made this
    /// resource; nothing was written.
    pub replayed: Option<Uuid>,
    /// The channels outbound messages were queued for: whose delivery streams to wake.
    pub queued: Vec<Channel>,
}

/// What a delivery stream has to wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryDue {
    /// Something is queued for the group now.
    pub ready: bool,
    /// The earliest lease the group holds on the channel runs out then.
    pub next_expiry: Option<DateTime<Utc>>,
}

/// The result of acknowledging a delivery.
#[derive(Debug, Clone)]
pub struct AckOutcome {
    /// The delivery's status after the call.
    pub status: DeliveryStatus,
    /// The receipt event, when this call changed the status.
    pub receipt: Option<Event>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketKey {
    Id(Uuid),
    Number(i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortField {
    CreatedAt,
    UpdatedAt,
    Priority,
    Number,
}

/// The sort value of the last row of a page, from which the next page continues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortValue {
    Time(DateTime<Utc>),
    Int(i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keyset {
    pub value: SortValue,
    pub number: i64,
}

/// A page of `ListTickets`. `filter` must not contain `assignee_id = "me"` any more:
/// the service resolves it to the caller's agent first.
#[derive(Debug, Clone)]
pub struct TicketQuery {
    pub filter: Option<TicketFilter>,
    pub sort: SortField,
    pub descending: bool,
    pub after: Option<Keyset>,
    pub limit: i64,
    /// The moment SLA conditions are judged at.
    pub now: DateTime<Utc>,
    /// Only tickets linked to a conversation of one of these sources; empty means any
    /// ticket. (A bot key's scope.)
    pub sources: Vec<String>,
}

pub(crate) const INSERT_AUDIT: &str = "INSERT INTO audit_log \
    (id, actor_kind, actor_id, actor_name, action, resource, resource_id, changes, created_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

/// API keys as stored: the domain's [`ApiKey`](crate::domain::auth::ApiKey).
pub use crate::domain::auth::ApiKey as ApiKeyRecord;

/// Pool sizes and timeouts.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    /// PostgreSQL cancels any statement running longer, SQLite any read (zero: never).
    /// Migrations are exempt.
    pub statement_timeout: Duration,
}

/// Agents, queues and routing rules.
#[async_trait]
pub trait RoutingStore: Send + Sync {
    /// Inserts (`expected_version` None) or updates a queue; false on a stale version.
    async fn save_queue(
        &self,
        queue: &Queue,
        expected_version: Option<i64>,
        audit: &AuditEntry,
    ) -> StoreResult<bool>;
    async fn queues(&self) -> StoreResult<Vec<Queue>>;
    /// False if the queue does not exist or tickets still name it.
    async fn delete_queue(&self, id: Uuid, audit: &AuditEntry) -> StoreResult<bool>;
    /// Inserts or updates an agent with its queue memberships.
    async fn save_agent(
        &self,
        agent: &Agent,
        expected_version: Option<i64>,
        audit: &AuditEntry,
    ) -> StoreResult<bool>;
    async fn agents(&self) -> StoreResult<Vec<Agent>>;
    async fn agent(&self, id: Uuid) -> StoreResult<Option<Agent>>;
    /// False if the agent does not exist or still holds active tickets.
    async fn delete_agent(&self, id: Uuid, audit: &AuditEntry) -> StoreResult<bool>;
    async fn save_rule(
        &self,
        rule: &RoutingRule,
        insert: bool,
        audit: &AuditEntry,
    ) -> StoreResult<bool>;
    async fn rules(&self) -> StoreResult<Vec<RoutingRule>>;
    async fn delete_rule(&self, id: Uuid, audit: &AuditEntry) -> StoreResult<bool>;
    /// A queue's members with their current load.
    async fn candidates(&self, queue_id: Uuid) -> StoreResult<Vec<Candidate>>;
    /// Unassigned active tickets of a queue, most urgent first, then oldest.
    async fn waiting_tickets(&self, queue_id: Uuid, limit: i64) -> StoreResult<Vec<Uuid>>;
    /// The stored VIP flag of a contact, if the contact is known.
    async fn contact_vip(&self, external_id: &str) -> StoreResult<Option<bool>>;
}

/// SLA calendars, policies, clocks and their timers.
#[async_trait]
pub trait SlaStore: Send + Sync {
    async fn save_calendar(
        &self,
        cal: &BusinessCalendar,
        insert: bool,
        at: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> StoreResult<bool>;
    async fn calendars(&self) -> StoreResult<Vec<BusinessCalendar>>;
    /// False if the calendar does not exist or a policy uses it.
    async fn delete_calendar(&self, id: Uuid, audit: &AuditEntry) -> StoreResult<bool>;
    async fn save_policy(
        &self,
        policy: &SlaPolicy,
        insert: bool,
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
pub trait Store: RoutingStore + SlaStore + Send + Sync + 'static {
    async fn migrate(&self) -> StoreResult<()>;

    /// Cheap round trip used by readiness checks.
    async fn ping(&self) -> StoreResult<()>;

    /// Open connections and how many of them are idle, over all pools.
    fn pool_stats(&self) -> (u32, u32);

    /// Inserts a ticket, upserting its contact, and applies `changes` in the same
    /// transaction (events about the new ticket get its assigned number). With a claim, a request id
    /// seen before returns the first ticket if the fingerprint matches and
    /// [`StoreError::IdempotencyMismatch`] if not.
    async fn create_ticket(
        &self,
        draft: TicketDraft,
        changes: Changeset,
        claim: Option<IdempotencyClaim>,
    ) -> StoreResult<CreateOutcome>;

    async fn ticket(&self, key: TicketKey) -> StoreResult<Option<Ticket>>;

    async fn list_tickets(&self, query: &TicketQuery) -> StoreResult<Vec<Ticket>>;

    /// Applies a changeset in one transaction, or nothing of it.
    async fn commit(&self, changes: Changeset) -> StoreResult<Committed>;

    /// Events of a ticket and of every ticket merged into it (transitively), oldest first.
    async fn activity(
        &self,
        ticket_id: Uuid,
        after_cursor: i64,
        include_internal: bool,
        limit: i64,
    ) -> StoreResult<Vec<Event>>;

    /// Inserts a key; `false` if a key with the same secret already exists.
    /// Events after `after` in log order, for streams. On PostgreSQL only events below the
    /// horizon of running transactions are returned, so a reader never skips a position
    /// that a transaction still in flight will fill.
    async fn events_after(
        &self,
        after: i64,
        ticket_id: Option<Uuid>,
        limit: i64,
    ) -> StoreResult<Vec<Event>>;

    /// Whether committed events after `after` exist that `events_after` does not return
    /// yet (held back behind a transaction still in flight). Always false on SQLite.
    async fn events_held_back(&self, after: i64) -> StoreResult<bool>;

    async fn event(&self, id: Uuid) -> StoreResult<Option<Event>>;

    async fn conversation(
        &self,
        source: &str,
        external_id: &str,
    ) -> StoreResult<Option<Conversation>>;

    /// The conversation most recently linked to a ticket.
    async fn conversation_of_ticket(&self, ticket_id: Uuid) -> StoreResult<Option<Conversation>>;

    /// The ticket and event a gateway's message id was stored with.
    async fn inbound_message(
        &self,
        channel: Channel,
        external_message_id: &str,
    ) -> StoreResult<Option<(Uuid, Uuid)>>;

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
        limit: i64,
    ) -> StoreResult<Vec<LeasedMessage>>;

    /// Hands back every message of `channel` still leased under `lease_id` (its stream
    /// ended).
    async fn release_lease(
        &self,
        lease_id: Uuid,
        channel: Channel,
        now: DateTime<Utc>,
    ) -> StoreResult<u64>;

    /// Finishes a delivery held under `ack.lease_id`. Appends `receipt` only if the
    /// delivery was still leased to it; `None` if the group never received the message.
    async fn ack_delivery(
        &self,
        ack: &Acknowledgement,
        receipt: NewEvent,
    ) -> StoreResult<Option<AckOutcome>>;

    /// Stores a key; `false` if its secret is stored already.
    async fn insert_api_key(&self, key: &ApiKeyRecord, audit: &AuditEntry) -> StoreResult<bool>;

    /// Stores `key` if no active admin key exists, atomically across replicas; `false`
    /// if one does.
    async fn insert_first_admin_key(
        &self,
        key: &ApiKeyRecord,
        audit: &AuditEntry,
    ) -> StoreResult<bool>;

    /// Audit entries matching `filter`, newest first, older than `before` if given.
    async fn audit_entries(
        &self,
        filter: &AuditFilter,
        before: Option<Uuid>,
        limit: i64,
    ) -> StoreResult<Vec<AuditEntry>>;

    async fn api_key_by_hash(&self, secret_hash: &[u8]) -> StoreResult<Option<ApiKeyRecord>>;

    async fn api_key_by_id(&self, id: Uuid) -> StoreResult<Option<ApiKeyRecord>>;

    /// What a live claim on the request id made, if one exists: `Some(resource)` for
    /// the same body, [`StoreError::IdempotencyMismatch`] for another.
    async fn claimed_request(&self, claim: &IdempotencyClaim) -> StoreResult<Option<Uuid>>;

    /// Forgets request ids claimed before `before`; returns how many.
    async fn purge_request_ids(&self, before: DateTime<Utc>) -> StoreResult<u64>;

    /// Newest first; `before` continues after the last key of the previous page.
    async fn list_api_keys(
        &self,
        before: Option<(DateTime<Utc>, Uuid)>,
        limit: i64,
    ) -> StoreResult<Vec<ApiKeyRecord>>;

    /// Marks a key revoked (idempotent); `None` if there is no such key.
    async fn revoke_api_key(
        &self,
        id: Uuid,
        at: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> StoreResult<Option<ApiKeyRecord>>;

    async fn has_active_admin_key(&self) -> StoreResult<bool>;
}

/// Opens the store a URL names: `postgres://` or `postgresql://` for PostgreSQL,
/// `sqlite:` for SQLite (the file is created if missing).
/// Commits that append events or change deliveries are announced on `bus`.
pub async fn open(url: &str, pool: &PoolSettings, bus: Bus) -> StoreResult<Arc<dyn Store>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PgStore::connect(url, pool, bus).await?))
    } else if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(url, pool, bus).await?))
    } else {
        Err(StoreError::UnsupportedUrl(url.to_owned()))
    }
}
