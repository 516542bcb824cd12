//! Tickets: creating one with its contact, reading them, listing them by filter, and
//! committing a changeset (see [`super::changeset`]).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::changeset::{NewTicket, apply_and_commit};
use super::database::{Column, Statement, Tx, col, json};
use super::dialect::Dialect;
use super::idempotency::claim_request_id;
use super::rows::{self, TicketRow};
use super::sla::attach_clocks;
use super::{
    Changeset, Committed, CreateOutcome, IdempotencyClaim, NewAttachment, SqlStore, StoreError,
    StoreResult, StoredAttachment, TicketDraft, TicketKey, TicketQuery, TicketUpdate, TimeEntry,
};
use crate::domain::sla::Clock;
use crate::domain::ticket::{Channel, Contact, ContactInput, ConversationRef, Ticket};

/// The columns of a ticket row joined with its contact; see `rows::TicketRow`.
macro_rules! select_tickets {
    () => {
        "SELECT t.id, t.number, t.subject, t.description, t.status, t.priority, \
         t.ticket_type, t.tags, t.custom_fields, t.assignee_id, t.queue_id, t.merged_into_id, \
         t.channel, t.follow_up_of_id, t.conversation_source, t.conversation_external_id, \
         t.conversation_channel, \
         t.tier, t.required_skills, t.vip_handlers_only, \
         t.version, t.time_spent_seconds, t.created_at, \
         t.updated_at, t.contact_id, c.external_id AS contact_external_id, \
         c.name AS contact_name, c.email AS contact_email, c.phone AS contact_phone, \
         c.vip AS contact_vip, t.satisfaction_score, t.satisfaction_comment, \
         t.satisfaction_rated_at, t.resolved_at, t.first_response_at \
         FROM tickets t JOIN contacts c ON c.id = t.contact_id"
    };
}

pub(super) const SELECT_TICKETS: &str = select_tickets!();

const TICKET_BY_ID: &str = concat!(select_tickets!(), " WHERE t.id = $1");

const TICKET_BY_NUMBER: &str = concat!(select_tickets!(), " WHERE t.number = $1");

/// The value an upsert leaves in a contact column. Empty strings and a NULL `vip` keep
/// what is stored: a caller that knows only the external id must not erase the name and
/// email another caller supplied. With `$8` (fill only) stored values win over new ones
/// and `vip` is set only on insert.
macro_rules! upserted {
    (vip) => {
        "(CASE WHEN $6 IS NULL OR $8 THEN contacts.vip ELSE excluded.vip END)"
    };
    ($column:ident) => {
        concat!(
            "(CASE WHEN excluded.",
            stringify!($column),
            " = '' OR ($8 AND contacts.",
            stringify!($column),
            " <> '') THEN contacts.",
            stringify!($column),
            " ELSE excluded.",
            stringify!($column),
            " END)"
        )
    };
}

/// Inserts a contact or refreshes it by external id; its version goes up only when a
/// value changed (a ticket for a known contact leaves the contact's etag alone).
const UPSERT_CONTACT: &str = concat!(
    "INSERT INTO contacts (id, external_id, name, email, phone, vip, created_at, updated_at) \
     VALUES ($1, $2, $3, $4, $5, COALESCE($6, FALSE), $7, $7) \
     ON CONFLICT (external_id) DO UPDATE SET name = ",
    upserted!(name),
    ", email = ",
    upserted!(email),
    ", phone = ",
    upserted!(phone),
    ", vip = ",
    upserted!(vip),
    ", updated_at = excluded.updated_at, \
     version = contacts.version + CASE WHEN ",
    upserted!(name),
    " <> contacts.name OR ",
    upserted!(email),
    " <> contacts.email OR ",
    upserted!(phone),
    " <> contacts.phone OR ",
    upserted!(vip),
    " <> contacts.vip THEN 1 ELSE 0 END \
     RETURNING id, external_id, name, email, phone, vip"
);

/// Followed by one `(ticket, tag)` row per tag; see [`insert_tags`].
const INSERT_TAGS: &str = "INSERT INTO ticket_tags (ticket_id, tag) VALUES ";

const DELETE_TAGS: &str = "DELETE FROM ticket_tags WHERE ticket_id = $1";

const INSERT_TIME_ENTRY: &str = "INSERT INTO time_entries \
    (id, ticket_id, agent_id, seconds, note, created_at) VALUES ($1, $2, $3, $4, $5, $6)";

const ATTACHMENT_BY_ID: &str = "SELECT a.id, a.ticket_id, a.event_id, a.name, \
    a.content_type, a.size_bytes, COALESCE(a.sha256, ''), e.visibility, \
    COALESCE(b.content, a.content) FROM attachments a \
    JOIN ticket_events e ON e.id = a.event_id \
    LEFT JOIN attachment_blobs b ON b.sha256 = a.sha256 WHERE a.id = $1";

const LEASED_CHANNEL: &str = "SELECT m.channel FROM outbound_messages m WHERE m.event_id = $1 \
    AND EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = m.id AND d.attempts > 0)";

/// The bytes go to `attachment_blobs` (once per content); the record names them.
const INSERT_ATTACHMENT: &str = "INSERT INTO attachments \
    (id, ticket_id, event_id, name, content_type, size_bytes, content, sha256, created_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

const INSERT_BLOB: &str = "INSERT INTO attachment_blobs (sha256, size_bytes, content, created_at) \
    VALUES ($1, $2, $3, $4) ON CONFLICT (sha256) DO NOTHING";

/// Tickets and changesets.
#[async_trait]
pub trait TicketStore: Send + Sync {
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
    /// The tickets with these ids, in no particular order (missing ones left out).
    async fn tickets_by_id(&self, ids: &[Uuid]) -> StoreResult<Vec<Ticket>>;

    /// An attachment with its bytes.
    async fn attachment(&self, id: Uuid) -> StoreResult<Option<StoredAttachment>>;

    /// The channel of the outbound message that carries event `event_id`, if it was
    /// leased to a gateway at least once.
    async fn leased_channel(&self, event_id: Uuid) -> StoreResult<Option<Channel>>;

    async fn list_tickets(&self, query: &TicketQuery) -> StoreResult<Vec<Ticket>>;

    /// How many tickets the query's filter and scope select.
    async fn count_tickets(&self, query: &TicketQuery) -> StoreResult<i64>;

    /// Applies a changeset in one transaction, or nothing of it.
    async fn commit(&self, changes: Changeset) -> StoreResult<Committed>;
}

#[async_trait]
impl TicketStore for SqlStore {
    #[tracing::instrument(skip_all, fields(ticket_id = %draft.id))]
    async fn create_ticket(
        &self,
        draft: TicketDraft,
        changes: Changeset,
        claim: Option<IdempotencyClaim>,
    ) -> StoreResult<CreateOutcome> {
        let mut tx = self.pools.begin().await?;
        if let Some(claim) = &claim
            && let Some(resource) = claim_request_id(&mut tx, claim).await?
        {
            tx.rollback().await?;
            return Ok(CreateOutcome::Replayed(resource));
        }
        // On PostgreSQL the contact's upsert also draws the ticket's number, so that the
        // ticket's insert needs nothing back and can be held for the events' statement.
        let (contact, drawn) =
            upsert_contact(&mut tx, &draft.contact, draft.created_at, true).await?;
        let contact_id = contact.id;
        let number_column = match drawn {
            Some(number) => Column::Value(number.into()),
            None => Column::Sql(tx.dialect().next_ticket_number().to_owned()),
        };
        let insert = Statement::insert(
            "tickets",
            vec![
                col("id", draft.id),
                ("number", number_column),
                col("subject", &draft.subject),
                col("description", &draft.description),
                col("status", draft.status.as_str()),
                col("priority", draft.priority.as_str()),
                col("priority_rank", draft.priority.rank()),
                col("ticket_type", draft.ticket_type.as_str()),
                ("tags", Column::Value(json(&draft.tags)?)),
                ("custom_fields", Column::Value(json(&draft.custom_fields)?)),
                col("contact_id", contact_id),
                col("assignee_id", draft.assignee_id),
                col("queue_id", draft.queue_id),
                col("channel", draft.channel.map(|c| c.as_str())),
                col("follow_up_of_id", draft.follow_up_of_id),
                col("tier", draft.tier),
                (
                    "required_skills",
                    Column::Value(json(&draft.required_skills)?),
                ),
                col("vip_handlers_only", draft.vip_handlers_only),
                ("version", Column::Sql("1".into())),
                ("time_spent_seconds", Column::Sql("0".into())),
                col("created_at", draft.created_at),
                col("updated_at", draft.created_at),
            ]
            .into_iter()
            .chain(conversation_columns(draft.conversation.as_ref()))
            .collect(),
            if drawn.is_some() {
                ""
            } else {
                " RETURNING number"
            },
        );
        let number = match drawn {
            Some(number) => {
                tx.defer(insert).await?;
                number
            }
            None => insert.fetch_one::<(i64,)>(&mut tx).await?.0,
        };
        insert_tags(&mut tx, draft.id, &draft.tags).await?;
        let new_ticket = NewTicket {
            id: draft.id,
            number,
            contact: contact.clone(),
            description: draft.description.clone(),
        };
        let mut clocks: Vec<Clock> = changes
            .clocks
            .iter()
            .filter(|c| c.ticket_id == draft.id)
            .cloned()
            .collect();
        clocks.sort_by_key(|c| c.metric.as_str());
        let committed = apply_and_commit(tx, changes, Some(new_ticket)).await?;
        // Everything the ticket holds was just written from the draft; only the
        // number and the stored contact came back from the database.
        let ticket = draft.into_ticket(number, contact, clocks);
        self.bus.publish_queued(committed.queued.iter().copied());
        Ok(CreateOutcome::Created {
            ticket: Box::new(ticket),
            committed,
        })
    }

    async fn attachment(&self, id: Uuid) -> StoreResult<Option<StoredAttachment>> {
        type Row = (
            Uuid,
            Uuid,
            Uuid,
            String,
            String,
            i64,
            String,
            String,
            Vec<u8>,
        );
        let row: Option<Row> = Statement::new(ATTACHMENT_BY_ID)
            .bind(id)
            .fetch_optional(&self.pools)
            .await?;
        Ok(row.map(
            |(
                id,
                ticket_id,
                event_id,
                name,
                content_type,
                size_bytes,
                sha256,
                visibility,
                content,
            )| {
                StoredAttachment {
                    id,
                    ticket_id,
                    event_id,
                    name,
                    content_type,
                    size_bytes,
                    sha256,
                    public: visibility == "public",
                    content,
                }
            },
        ))
    }

    async fn leased_channel(&self, event_id: Uuid) -> StoreResult<Option<Channel>> {
        let row: Option<(String,)> = Statement::new(LEASED_CHANNEL)
            .bind(event_id)
            .fetch_optional(&self.pools)
            .await?;
        Ok(row.and_then(|(channel,)| Channel::parse(&channel)))
    }

    async fn tickets_by_id(&self, ids: &[Uuid]) -> StoreResult<Vec<Ticket>> {
        let mut query = Statement::new(concat!(select_tickets!(), " WHERE t.id IN "));
        query.push_list(ids.iter().copied());
        let rows: Vec<TicketRow> = query.fetch_all(&self.pools).await?;
        let mut tickets = rows
            .into_iter()
            .map(Ticket::try_from)
            .collect::<StoreResult<Vec<_>>>()?;
        attach_clocks(&self.pools, &mut tickets).await?;
        Ok(tickets)
    }

    async fn ticket(&self, key: TicketKey) -> StoreResult<Option<Ticket>> {
        let row: Option<TicketRow> = match key {
            TicketKey::Id(id) => {
                Statement::new(TICKET_BY_ID)
                    .bind(id)
                    .fetch_optional(&self.pools)
                    .await?
            }
            TicketKey::Number(n) => {
                Statement::new(TICKET_BY_NUMBER)
                    .bind(n)
                    .fetch_optional(&self.pools)
                    .await?
            }
        };
        let Some(row) = row else { return Ok(None) };
        let mut tickets = [Ticket::try_from(row)?];
        attach_clocks(&self.pools, &mut tickets).await?;
        let [ticket] = tickets;
        Ok(Some(ticket))
    }

    #[tracing::instrument(skip_all)]
    async fn count_tickets(&self, query: &TicketQuery) -> StoreResult<i64> {
        let (sql, params) = super::ticket_query::render_count(query, self.pools.dialect());
        let (count,): (i64,) = params
            .into_iter()
            .fold(Statement::owned(sql), Statement::bind)
            .fetch_one(self.pools.routed())
            .await?;
        Ok(count)
    }

    async fn list_tickets(&self, query: &TicketQuery) -> StoreResult<Vec<Ticket>> {
        let (sql, params) = super::ticket_query::render(query, self.pools.dialect());
        let q = params
            .into_iter()
            .fold(Statement::owned(sql), Statement::bind);
        let rows: Vec<TicketRow> = q.fetch_all(self.pools.routed()).await?;
        let mut tickets: Vec<Ticket> = rows::convert_all(rows)?;
        attach_clocks(self.pools.routed(), &mut tickets).await?;
        Ok(tickets)
    }

    #[tracing::instrument(skip_all, fields(updates = changes.updates.len(), events = changes.events.len()))]
    async fn commit(&self, changes: Changeset) -> StoreResult<Committed> {
        let tx = self.pools.begin().await?;
        let committed = apply_and_commit(tx, changes, None).await?;
        self.bus.publish_queued(committed.queued.iter().copied());
        Ok(committed)
    }
}

/// The columns that link a ticket to the conversation it answers (all NULL for none).
fn conversation_columns(conversation: Option<&ConversationRef>) -> [(&'static str, Column<'_>); 3] {
    [
        col(
            "conversation_source",
            conversation.map(|c| c.source.as_str()),
        ),
        col(
            "conversation_external_id",
            conversation.map(|c| c.external_id.as_str()),
        ),
        col(
            "conversation_channel",
            conversation.map(|c| c.channel.as_str()),
        ),
    ]
}

/// Inserts or refreshes a contact by external id; returns it as stored.
/// Upserts a ticket's contact by external id. With `draw_number`, on PostgreSQL, the
/// same statement also draws the next ticket number, returned beside the contact.
async fn upsert_contact(
    tx: &mut Tx,
    contact: &ContactInput,
    at: DateTime<Utc>,
    draw_number: bool,
) -> StoreResult<(Contact, Option<i64>)> {
    let dialect = tx.dialect();
    let statement = if draw_number && dialect == Dialect::Postgres {
        let next = dialect.next_ticket_number();
        Statement::owned(format!("{UPSERT_CONTACT}, {next}"))
    } else {
        Statement::owned(format!("{UPSERT_CONTACT}, CAST(NULL AS BIGINT)"))
    };
    let (id, external_id, name, email, phone, vip, number): ContactRow = statement
        .bind(Uuid::now_v7())
        .bind(&contact.external_id)
        .bind(&contact.name)
        .bind(&contact.email)
        .bind(&contact.phone)
        .bind(contact.vip)
        .bind(at)
        .bind(contact.fill_only)
        .fetch_one(&mut *tx)
        .await?;
    let contact = Contact {
        id,
        external_id,
        name,
        email,
        phone,
        vip,
    };
    super::contacts::remember_addresses(tx, &contact, at).await?;
    Ok((contact, number))
}

/// A contact as its upsert returns it, with the ticket number it may have drawn.
type ContactRow = (Uuid, String, String, String, String, bool, Option<i64>);

pub(super) async fn ticket_in(tx: &mut Tx, id: Uuid) -> StoreResult<Ticket> {
    let row: TicketRow = Statement::new(TICKET_BY_ID)
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
    let mut tickets = [Ticket::try_from(row)?];
    attach_clocks(&mut *tx, &mut tickets).await?;
    let [ticket] = tickets;
    Ok(ticket)
}

/// Writes an updated ticket, if it is still at the version its writer read; otherwise
/// [`StoreError::Conflict`]. Each column is named beside its value.
pub(super) async fn update_ticket(tx: &mut Tx, update: &TicketUpdate) -> StoreResult<()> {
    let t = &update.ticket;
    let contact_id = match &update.contact {
        Some(contact) => upsert_contact(tx, contact, t.updated_at, false).await?.0.id,
        None => t.contact.id,
    };
    let mut statement = Statement::update(
        "tickets",
        vec![
            col("subject", &t.subject),
            col("description", &t.description),
            col("status", t.status.as_str()),
            col("priority", t.priority.as_str()),
            col("priority_rank", t.priority.rank()),
            col("ticket_type", t.ticket_type.as_str()),
            ("tags", Column::Value(json(&t.tags)?)),
            ("custom_fields", Column::Value(json(&t.custom_fields)?)),
            col("contact_id", contact_id),
            col("assignee_id", t.assignee_id),
            col("queue_id", t.queue_id),
            col("merged_into_id", t.merged_into_id),
            col("time_spent_seconds", t.time_spent_seconds),
            col("updated_at", t.updated_at),
            col("channel", t.channel.map(|c| c.as_str())),
            col("follow_up_of_id", t.follow_up_of_id),
            col("tier", t.tier),
            ("required_skills", Column::Value(json(&t.required_skills)?)),
            col("vip_handlers_only", t.vip_handlers_only),
            col(
                "satisfaction_score",
                t.satisfaction.as_ref().map(|r| r.score),
            ),
            col(
                "satisfaction_comment",
                t.satisfaction.as_ref().map(|r| r.comment.as_str()),
            ),
            col(
                "satisfaction_rated_at",
                t.satisfaction.as_ref().map(|r| r.rated_at),
            ),
            col("resolved_at", t.resolved_at),
            col("first_response_at", t.first_response_at),
            ("version", Column::Sql("version + 1".into())),
        ]
        .into_iter()
        .chain(conversation_columns(t.conversation.as_ref()))
        .collect(),
    );
    statement.push(" WHERE id = ").push_bind(t.id);
    statement
        .push(" AND version = ")
        .push_bind(update.expected_version);
    if statement.execute(&mut *tx).await? == 0 {
        return Err(StoreError::Conflict(t.id));
    }
    if update.tags_changed {
        Statement::new(DELETE_TAGS)
            .bind(t.id)
            .execute(&mut *tx)
            .await?;
        insert_tags(tx, t.id, &t.tags).await?;
    }
    Ok(())
}

/// A ticket's tags, in one statement.
async fn insert_tags(tx: &mut Tx, ticket_id: Uuid, tags: &[String]) -> StoreResult<()> {
    if tags.is_empty() {
        return Ok(());
    }
    let mut insert = Statement::new(INSERT_TAGS);
    for (i, tag) in tags.iter().enumerate() {
        insert.push(if i == 0 { "(" } else { ", (" });
        insert.push_bind(ticket_id);
        insert.push(", ");
        insert.push_bind(tag.as_str());
        insert.push(")");
    }
    tx.defer(insert).await
}

pub(super) async fn insert_time_entry(tx: &mut Tx, entry: &TimeEntry) -> StoreResult<()> {
    Statement::new(INSERT_TIME_ENTRY)
        .bind(entry.id)
        .bind(entry.ticket_id)
        .bind(entry.agent_id)
        .bind(entry.seconds)
        .bind(&entry.note)
        .bind(entry.created_at)
        .execute(tx)
        .await?;
    Ok(())
}

pub(super) async fn insert_attachment(tx: &mut Tx, file: &NewAttachment) -> StoreResult<()> {
    let sha256 = {
        use sha2::Digest;
        crate::domain::hex(&sha2::Sha256::digest(&file.content))
    };
    Statement::new(INSERT_BLOB)
        .bind(sha256.as_str())
        .bind(file.content.len() as i64)
        .bind(&file.content)
        .bind(file.created_at)
        .execute(&mut *tx)
        .await?;
    Statement::new(INSERT_ATTACHMENT)
        .bind(file.id)
        .bind(file.ticket_id)
        .bind(file.event_id)
        .bind(&file.name)
        .bind(&file.content_type)
        .bind(file.content.len() as i64)
        .bind(&[][..])
        .bind(sha256.as_str())
        .bind(file.created_at)
        .execute(tx)
        .await?;
    Ok(())
}
