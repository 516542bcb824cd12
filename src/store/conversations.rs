//! Conversations (a bot's or gateway's thread, linked to a ticket), the messages of their
//! transcripts, and customer messages already received.

use async_trait::async_trait;
use uuid::Uuid;

use super::database::{Statement, Tx, json};
use super::dialect::Dialect;
use super::rows::ConversationRow;
use super::{ConversationWrite, InboundClaim, SqlStore, StoreError, StoreResult, TranscriptWrite};
use crate::domain::conversation::Conversation;
use crate::domain::ticket::Channel;

macro_rules! select_conversations {
    () => {
        "SELECT id, source, external_id, channel, ticket_id, summary, intent, metadata \
         FROM conversations"
    };
}

const CONVERSATION_BY_KEY: &str = concat!(
    select_conversations!(),
    " WHERE source = $1 AND external_id = $2"
);

const CONVERSATION_OF_TICKET: &str = concat!(
    select_conversations!(),
    " WHERE ticket_id = $1 ORDER BY updated_at DESC LIMIT 1"
);

const INBOUND_BY_ID: &str = "SELECT ticket_id, event_id FROM inbound_messages \
    WHERE channel = $1 AND external_message_id = $2";

const INSERT_CONVERSATION: &str = "INSERT INTO conversations \
    (id, source, external_id, channel, ticket_id, summary, intent, metadata, created_at, \
    updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)";

/// The unique key of a conversation, `UNIQUE (source, external_id)`, as PostgreSQL names it.
const CONVERSATION_KEY: &str = "conversations_source_external_id_key";

const UPDATE_CONVERSATION: &str = "UPDATE conversations SET channel = $2, \
    ticket_id = $3, summary = $4, intent = $5, metadata = $6, updated_at = $7 WHERE id = $1";

const INSERT_INBOUND: &str = "INSERT INTO inbound_messages \
    (channel, external_message_id, ticket_id, event_id, created_at) VALUES ($1, $2, $3, $4, $5) \
    ON CONFLICT (channel, external_message_id) DO NOTHING";

/// Conversations and what they received.
#[async_trait]
pub trait ConversationStore: Send + Sync {
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
}

#[async_trait]
impl ConversationStore for SqlStore {
    async fn conversation(
        &self,
        source: &str,
        external_id: &str,
    ) -> StoreResult<Option<Conversation>> {
        let row: Option<ConversationRow> = Statement::new(CONVERSATION_BY_KEY)
            .bind(source)
            .bind(external_id)
            .fetch_optional(&self.pools)
            .await?;
        row.map(Conversation::try_from).transpose()
    }

    async fn conversation_of_ticket(&self, ticket_id: Uuid) -> StoreResult<Option<Conversation>> {
        let row: Option<ConversationRow> = Statement::new(CONVERSATION_OF_TICKET)
            .bind(ticket_id)
            .fetch_optional(&self.pools)
            .await?;
        row.map(Conversation::try_from).transpose()
    }

    async fn inbound_message(
        &self,
        channel: Channel,
        external_message_id: &str,
    ) -> StoreResult<Option<(Uuid, Uuid)>> {
        Ok(Statement::new(INBOUND_BY_ID)
            .bind(channel.as_str())
            .bind(external_message_id)
            .fetch_optional(&self.pools)
            .await?)
    }
}

/// Inserts the keys of transcript messages in chunks; returns those that were new. The
/// messages of `created`, a conversation this transaction inserted, hold no keys yet: only
/// a key repeated within the transcript is not new (its first message wins), so their
/// keys need no answer and are [deferred](Tx::defer).
pub(super) async fn claim_transcript_keys(
    tx: &mut Tx,
    transcript: &[TranscriptWrite],
    created: Option<Uuid>,
) -> StoreResult<std::collections::HashSet<(Uuid, String)>> {
    let mut fresh = std::collections::HashSet::new();
    let needs_answer = match created {
        Some(id) => transcript.iter().any(|m| m.conversation_id != id),
        None => true,
    };
    let claimed: Vec<&TranscriptWrite> = if needs_answer {
        transcript.iter().collect()
    } else {
        transcript
            .iter()
            .filter(|m| fresh.insert((m.conversation_id, m.key.clone())))
            .collect()
    };
    // Three parameters a row; both databases accept far more than 3 * 500.
    for chunk in claimed.chunks(500) {
        let mut insert = Statement::new(
            "INSERT INTO conversation_messages (conversation_id, message_key, event_id) VALUES ",
        );
        for (i, message) in chunk.iter().enumerate() {
            insert.push(if i == 0 { "(" } else { ", (" });
            insert.push_bind(message.conversation_id).push(", ");
            insert.push_bind(message.key.as_str()).push(", ");
            insert.push_bind(message.event.id).push(")");
        }
        if needs_answer {
            insert.push(
                " ON CONFLICT (conversation_id, message_key) DO NOTHING \
                 RETURNING conversation_id, message_key",
            );
            let keys: Vec<(Uuid, String)> = insert.fetch_all(&mut *tx).await?;
            fresh.extend(keys);
        } else {
            tx.defer(insert).await?;
        }
    }
    Ok(fresh)
}

/// Inserts or updates the conversation of a changeset. On PostgreSQL a new conversation is
/// held for the events' statement ([`Tx::defer`]): a conversation another transaction
/// created first then fails that statement on its key, which [`conversation_key_taken`]
/// recognizes. An update goes with the writes held so far (a new ticket's, say) as CTEs:
/// it reads nothing but conversations, and the foreign key to the ticket is checked once
/// the whole statement has run.
pub(super) async fn write_conversation(tx: &mut Tx, write: &ConversationWrite) -> StoreResult<()> {
    match write {
        ConversationWrite::Insert(c, at) => {
            let mut insert = Statement::new(INSERT_CONVERSATION)
                .bind(c.id)
                .bind(&c.source)
                .bind(&c.external_id)
                .bind(c.channel.as_str())
                .bind(c.ticket_id)
                .bind(&c.summary)
                .bind(&c.intent)
                .bind(json(&c.metadata)?)
                .bind(at);
            match tx.dialect() {
                Dialect::Postgres => tx.defer(insert).await?,
                Dialect::Sqlite => {
                    insert.push(" ON CONFLICT (source, external_id) DO NOTHING");
                    if tx.execute(insert).await? == 0 {
                        return Err(StoreError::ConversationExists(c.external_id.clone()));
                    }
                }
            }
        }
        ConversationWrite::Update(c, at) => {
            let update = Statement::new(UPDATE_CONVERSATION)
                .bind(c.id)
                .bind(c.channel.as_str())
                .bind(c.ticket_id)
                .bind(&c.summary)
                .bind(&c.intent)
                .bind(json(&c.metadata)?)
                .bind(at);
            tx.execute_after(update).await?;
        }
    }
    Ok(())
}

/// Records a gateway's message id; [`StoreError::DuplicateInbound`] if it was seen.
pub(super) async fn claim_inbound(tx: &mut Tx, claim: &InboundClaim) -> StoreResult<()> {
    let claimed = Statement::new(INSERT_INBOUND)
        .bind(claim.channel.as_str())
        .bind(&claim.external_message_id)
        .bind(claim.ticket_id)
        .bind(claim.event_id)
        .bind(claim.at)
        .execute(tx)
        .await?;
    if claimed == 0 {
        return Err(StoreError::DuplicateInbound(
            claim.external_message_id.clone(),
        ));
    }
    Ok(())
}

/// Whether `err` is PostgreSQL's refusal of a conversation whose key is taken: another
/// transaction inserted that conversation first.
pub(super) fn conversation_key_taken(err: &StoreError) -> bool {
    matches!(
        err,
        StoreError::Database(sqlx::Error::Database(db))
            if db.kind() == sqlx::error::ErrorKind::UniqueViolation
                && db.constraint() == Some(CONVERSATION_KEY)
    )
}
