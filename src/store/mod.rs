//! Persistence: the [`Store`] trait and its PostgreSQL and SQLite implementations.
//!
//! Every SQL statement of ticketd lives below this module. Writes that change a ticket
//! append their events in the same transaction (the transactional outbox), and every
//! ticket update is conditional on the version the caller read, so lost updates surface as
//! [`StoreError::Conflict`] instead of silently overwriting.

mod audit;
mod auto_responses;
mod changeset;
mod contacts;
mod conversations;
mod database;
mod delivery;
mod dialect;
mod error;
mod events;
mod hooks;
mod idempotency;
mod keys;
mod pg_notify;
mod pg_pool;
mod placeholders;
mod postgres;
mod replicas;
mod reports;
mod routing;
mod rows;
mod search;
mod sla;
mod sqlite;
mod templates;
mod ticket_query;
mod tickets;
mod transaction;
mod value;
mod views;
mod webhooks;
mod workflows;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::conversation::Conversation;
use crate::domain::delivery::{DeliveryStatus, OutboundMessage};
use crate::domain::event::{Event, NewEvent};
use crate::domain::filter::TicketFilter;
use crate::domain::sla::Clock;
use crate::domain::ticket::{
    Channel, Contact, ContactInput, ConversationRef, Priority, Status, Ticket, TicketType,
};
use crate::events::Bus;
use database::{Pools, Statement};

pub use audit::AuditStore;
pub use auto_responses::AutoResponseStore;
pub use contacts::ContactStore;
pub use conversations::ConversationStore;
pub use delivery::{DeliveryStore, LeaseBatch};
pub(crate) use error::unique_violation;
pub use error::{StoreError, StoreResult};
pub use events::EventLog;
pub use hooks::HookStore;
pub use idempotency::RequestIdStore;
pub use keys::KeyStore;
pub use replicas::{Standbys, session};
pub use reports::{Fact, FactKind, FactQuery, Grain, ReportStore};
pub use routing::RoutingStore;
pub use search::{SNIPPET_FIELDS, SearchHit, SearchQuery, SearchStore};
pub use sla::SlaStore;
pub use templates::TemplateStore;
pub use tickets::TicketStore;
pub use views::ViewStore;
pub use webhooks::{StateWrite, WebhookColumns, WebhookProgress, WebhookStore};
pub use workflows::{TimerWrite, WorkflowStep, WorkflowStore, WorkflowTimer};

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
    pub conversation: Option<ConversationRef>,
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
            conversation: self.conversation,
            tier: self.tier,
            required_skills: self.required_skills,
            vip_handlers_only: self.vip_handlers_only,
            sla_clocks,
            satisfaction: None,
            resolved_at: None,
            first_response_at: None,
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

/// An attachment with its bytes and what decides who may read it.
#[derive(Debug, Clone)]
pub struct StoredAttachment {
    pub id: Uuid,
    pub ticket_id: Uuid,
    pub event_id: Uuid,
    pub name: String,
    pub content_type: String,
    pub size_bytes: i64,
    /// Hex SHA-256 of the content; empty for attachments stored inline before blobs.
    pub sha256: String,
    /// Whether the entry carrying it is public.
    pub public: bool,
    pub content: Vec<u8>,
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
    /// Workflows answering an event: their progress moves in this transaction, or nothing
    /// is written ([`StoreError::Superseded`]).
    pub steps: Vec<WorkflowStep>,
    /// A timer firing: deleted in this transaction, or nothing is written.
    pub fired: Option<WorkflowTimer>,
    /// Workflow timers the change arms or cancels.
    pub timers: Vec<TimerWrite>,
    /// Auto-responses the change calls for, rendered in its transaction (a new ticket's
    /// number is known only there).
    pub auto_replies: Vec<crate::domain::auto_response::PendingReply>,
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

pub use crate::domain::ticket::TicketKey;

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

/// Everything ticketd keeps, by aggregate: each trait names one, in its own module.
#[async_trait]
pub trait Store:
    TicketStore
    + ContactStore
    + EventLog
    + ConversationStore
    + DeliveryStore
    + RoutingStore
    + SlaStore
    + KeyStore
    + AuditStore
    + TemplateStore
    + WorkflowStore
    + AutoResponseStore
    + ViewStore
    + SearchStore
    + ReportStore
    + HookStore
    + WebhookStore
    + RequestIdStore
    + crate::events::Log
    + Send
    + Sync
    + 'static
{
    /// Applies pending migrations (on PostgreSQL under sqlx's advisory lock, so replicas
    /// that start together apply each exactly once).
    async fn migrate(&self) -> StoreResult<()>;

    /// Cheap round trip used by readiness checks.
    async fn ping(&self) -> StoreResult<()>;

    /// Open connections and how many of them are idle, over all pools.
    fn pool_stats(&self) -> (u32, u32);

    /// The standbys reads may go to, when any are configured.
    fn standbys(&self) -> Option<Arc<Standbys>>;
}

/// The store over either backend: one implementation of every aggregate, with the
/// backend's connections in [`Pools`] and its SQL differences in `dialect::Dialect`.
pub struct SqlStore {
    pools: Pools,
    bus: Bus,
    /// Background tasks that live as long as the store (PostgreSQL's LISTEN/NOTIFY).
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The text-search configuration searches are read with (see
    /// [`SearchStore::configure_search`]); bound as a value so the planner can judge a
    /// word's frequency from the column's statistics.
    search_config: std::sync::RwLock<String>,
}

impl Drop for SqlStore {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

#[async_trait]
impl Store for SqlStore {
    #[tracing::instrument(skip_all)]
    async fn migrate(&self) -> StoreResult<()> {
        // `run` on a pooled connection trips async-trait lifetimes; `run_direct` is what
        // it calls. The session setting must not go back to the pool with the connection.
        match &self.pools {
            Pools::Postgres { pool, .. } => {
                let mut lease = pool.get().await?;
                lease.close_on_drop();
                let conn = lease.busy();
                // Migrations may take long on big tables: no statement timeout for them.
                sqlx::query("SET statement_timeout = 0")
                    .execute(&mut *conn)
                    .await?;
                sqlx::migrate!("./migrations/postgres")
                    .run_direct(None, &mut *conn, false)
                    .await?;
            }
            Pools::Sqlite { writer, .. } => {
                let mut conn = writer.acquire().await?;
                sqlx::migrate!("./migrations/sqlite")
                    .run_direct(None, &mut *conn, false)
                    .await?;
            }
        }
        Ok(())
    }

    async fn ping(&self) -> StoreResult<()> {
        let _: (i32,) = self.pools.fetch_one(Statement::new("SELECT 1")).await?;
        Ok(())
    }

    fn pool_stats(&self) -> (u32, u32) {
        self.pools.stats()
    }

    fn standbys(&self) -> Option<Arc<Standbys>> {
        match &self.pools {
            Pools::Postgres { standbys, .. } => standbys.clone(),
            Pools::Sqlite { .. } => None,
        }
    }
}

/// Opens the store a URL names: `postgres://` or `postgresql://` for PostgreSQL,
/// `sqlite:` for SQLite (the file is created if missing).
/// Commits that append events or change deliveries are announced on `bus`.
pub async fn open(url: &str, pool: &PoolSettings, bus: Bus) -> StoreResult<Arc<dyn Store>> {
    open_with_standbys(url, &[], pool, bus).await
}

/// [`open`], with reads a caller asks for going to the PostgreSQL streaming standbys
/// `read_urls` name when they can serve them (see `replicas`).
pub async fn open_with_standbys(
    url: &str,
    read_urls: &[String],
    pool: &PoolSettings,
    bus: Bus,
) -> StoreResult<Arc<dyn Store>> {
    if read_urls.len() > replicas::MAX_STANDBYS {
        return Err(StoreError::TooManyStandbys(read_urls.len()));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(
            postgres::connect(url, read_urls, pool, bus).await?,
        ))
    } else if !read_urls.is_empty() {
        Err(StoreError::StandbysNeedPostgres)
    } else if url.starts_with("sqlite:") {
        Ok(Arc::new(sqlite::connect(url, pool, bus).await?))
    } else {
        Err(StoreError::UnsupportedUrl(url.to_owned()))
    }
}
