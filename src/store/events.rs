//! The event log: every change's events, appended in the transaction of the change; read
//! as a ticket's activity feed and, in log order, by streams.

use std::collections::HashMap;

use async_trait::async_trait;
use uuid::Uuid;

use super::database::{Statement, Tx, Value, json};
use super::rows::{self, EventRow};
use super::{SqlStore, StoreError, StoreResult, session};
use crate::domain::consistency::Lsn;
use crate::domain::event::{Event, EventKind, NewEvent};
use crate::events::{Log, LogError};

/// The columns of an event with the delivery state of its outbound message, if any;
/// see `rows::EventRow`.
macro_rules! select_events {
    () => {
        "SELECT e.position, e.id, e.ticket_id, e.ticket_number, e.event_type, e.actor_kind, \
         e.actor_id, e.actor_name, e.visibility, e.payload, e.created_at, e.ticket_status, \
         e.priority, e.ticket_type, e.assignee_id, e.queue_id, e.contact_id, e.channel, \
         e.tags, e.conversation_source, e.conversation_id, e.conversation_channel, e.depth, \
         om.id AS delivery_message_id, om.status AS delivery_status, \
         om.provider_message_id AS delivery_provider_id, om.error AS delivery_error \
         FROM ticket_events e LEFT JOIN outbound_messages om ON om.event_id = e.id"
    };
}

const SELECT_EVENTS: &str = select_events!();

const EVENT_BY_ID: &str = concat!(select_events!(), " WHERE e.id = $1");

const EVENT_AT: &str = concat!(select_events!(), " WHERE e.position = $1");

const LAST_EVENT_OF: &str = concat!(
    select_events!(),
    " WHERE e.ticket_id = $1 AND e.event_type = $2 ORDER BY e.position DESC LIMIT 1"
);

/// A ticket's events and those of every ticket merged into it, at any depth.
const ACTIVITY: &str = concat!(
    "WITH RECURSIVE family (id) AS ( \
       SELECT id FROM tickets WHERE id = $1 \
       UNION SELECT t.id FROM tickets t JOIN family f ON t.merged_into_id = f.id) ",
    select_events!(),
    " WHERE e.ticket_id IN (SELECT id FROM family) AND e.position > $2 \
      AND ($3 OR e.visibility = 'public') ORDER BY e.position LIMIT $4"
);

/// Most events one transaction may append: the ordinal of an event within its
/// transaction occupies the low 20 bits of its PostgreSQL log position.
pub(super) const MAX_EVENTS_PER_TRANSACTION: usize = 1 << 20;

/// The append-only log of ticket events.
#[async_trait]
pub trait EventLog: Send + Sync {
    /// Events of a ticket and of every ticket merged into it (transitively), oldest first.
    async fn activity(
        &self,
        ticket_id: Uuid,
        after_cursor: i64,
        include_internal: bool,
        limit: i64,
    ) -> StoreResult<Vec<Event>>;

    /// Events after `after` in log order, for streams. On PostgreSQL only events below the
    /// horizon of running transactions are returned, so a reader never skips a position
    /// that a transaction still in flight will fill.
    async fn events_after(&self, after: i64, limit: i64) -> StoreResult<Vec<Event>>;

    /// Events after `after` up to `until` in log order, for a stream catching up to the
    /// tailer: every transaction that wrote up to `until` had ended when the tailer read
    /// that far, so no horizon applies. With `replayed`, a primary WAL position past every
    /// commit visible after that read, the read may go to a standby that has replayed that
    /// far (so has every one of those transactions); without, it goes to the primary.
    async fn events_until(
        &self,
        after: i64,
        until: i64,
        ticket_id: Option<Uuid>,
        limit: i64,
        replayed: Option<Lsn>,
    ) -> StoreResult<Vec<Event>>;

    /// Whether committed events after `after` exist that `events_after` does not return
    /// yet (held back behind a transaction still in flight). Always false on SQLite.
    async fn events_held_back(&self, after: i64) -> StoreResult<bool>;

    async fn event(&self, id: Uuid) -> StoreResult<Option<Event>>;

    /// The committed event at `cursor`, whether or not streams may read past it yet (a
    /// point lookup needs no read horizon).
    async fn event_at(&self, cursor: i64) -> StoreResult<Option<Event>>;

    /// The newest event of `kind` on a ticket.
    async fn last_event_of(&self, ticket_id: Uuid, kind: EventKind) -> StoreResult<Option<Event>>;

    /// The position of the last event stream reads can see now (0 for an empty log).
    async fn log_end(&self) -> StoreResult<i64>;
}

#[async_trait]
impl EventLog for SqlStore {
    async fn activity(
        &self,
        ticket_id: Uuid,
        after_cursor: i64,
        include_internal: bool,
        limit: i64,
    ) -> StoreResult<Vec<Event>> {
        let rows: Vec<EventRow> = Statement::new(ACTIVITY)
            .bind(ticket_id)
            .bind(after_cursor)
            .bind(include_internal)
            .bind(limit)
            .fetch_all(self.pools.routed())
            .await?;
        rows::convert_all(rows)
    }

    async fn events_after(&self, after: i64, limit: i64) -> StoreResult<Vec<Event>> {
        let horizon = self.pools.dialect().read_horizon();
        let sql =
            format!("{SELECT_EVENTS} WHERE e.position > $1{horizon} ORDER BY e.position LIMIT $2");
        let query = Statement::owned(sql).bind(after).bind(limit);
        let rows: Vec<EventRow> = query.fetch_all(&self.pools).await?;
        rows::convert_all(rows)
    }

    async fn events_until(
        &self,
        after: i64,
        until: i64,
        ticket_id: Option<Uuid>,
        limit: i64,
        replayed: Option<Lsn>,
    ) -> StoreResult<Vec<Event>> {
        let only_ticket = if ticket_id.is_some() {
            " AND e.ticket_id = $4"
        } else {
            ""
        };
        let sql = format!(
            "{SELECT_EVENTS} WHERE e.position > $1 AND e.position <= $2{only_ticket} \
             ORDER BY e.position LIMIT $3"
        );
        let mut query = Statement::owned(sql).bind(after).bind(until).bind(limit);
        if let Some(id) = ticket_id {
            query = query.bind(id);
        }
        let rows: Vec<EventRow> = match replayed {
            Some(lsn) => {
                session(Some(lsn), query.fetch_all(self.pools.routed()))
                    .await
                    .0?
            }
            None => query.fetch_all(&self.pools).await?,
        };
        rows::convert_all(rows)
    }

    async fn log_end(&self) -> StoreResult<i64> {
        let horizon = self.pools.dialect().read_horizon();
        let sql =
            format!("SELECT COALESCE(MAX(e.position), 0) FROM ticket_events e WHERE TRUE{horizon}");
        let (end,): (i64,) = Statement::owned(sql).fetch_one(&self.pools).await?;
        Ok(end)
    }

    async fn events_held_back(&self, after: i64) -> StoreResult<bool> {
        let horizon = self.pools.dialect().read_horizon();
        if horizon.is_empty() {
            return Ok(false);
        }
        let sql = format!(
            "SELECT EXISTS (SELECT 1 FROM ticket_events e WHERE e.position > $1 \
             AND NOT (TRUE{horizon}))"
        );
        let (held,): (bool,) = Statement::owned(sql)
            .bind(after)
            .fetch_one(&self.pools)
            .await?;
        Ok(held)
    }

    async fn event(&self, id: Uuid) -> StoreResult<Option<Event>> {
        let row: Option<EventRow> = Statement::new(EVENT_BY_ID)
            .bind(id)
            .fetch_optional(&self.pools)
            .await?;
        row.map(Event::try_from).transpose()
    }

    async fn event_at(&self, cursor: i64) -> StoreResult<Option<Event>> {
        let row: Option<EventRow> = Statement::new(EVENT_AT)
            .bind(cursor)
            .fetch_optional(&self.pools)
            .await?;
        row.map(Event::try_from).transpose()
    }

    async fn last_event_of(&self, ticket_id: Uuid, kind: EventKind) -> StoreResult<Option<Event>> {
        let row: Option<EventRow> = Statement::new(LAST_EVENT_OF)
            .bind(ticket_id)
            .bind(kind.as_str())
            .fetch_optional(&self.pools)
            .await?;
        row.map(Event::try_from).transpose()
    }
}

/// Appends one event; `ordinal` is its index among the transaction's events.
pub(super) async fn insert_event(tx: &mut Tx, event: NewEvent, ordinal: i64) -> StoreResult<Event> {
    let mut stored = insert_events(tx, vec![event], ordinal).await?;
    stored
        .pop()
        .ok_or_else(|| StoreError::Corrupt("an inserted event came back empty".into()))
}

/// Appends events, up to 500 in one statement; the first takes `first_ordinal` as its
/// index among the transaction's events, the rest follow in order.
pub(super) async fn insert_events(
    tx: &mut Tx,
    events: Vec<NewEvent>,
    first_ordinal: i64,
) -> StoreResult<Vec<Event>> {
    let dialect = tx.dialect();
    let mut stored = Vec::with_capacity(events.len());
    let mut ordinal = first_ordinal;
    for chunk in events.chunks(500) {
        let mut names = String::from("position");
        let mut insert = Statement::owned(String::new());
        for (row, event) in chunk.iter().enumerate() {
            let columns = event_columns(event)?;
            if row == 0 {
                for (name, _) in &columns {
                    names.push_str(", ");
                    names.push_str(name);
                }
            } else {
                insert.push(", ");
            }
            let index = insert.add_param(ordinal);
            insert.push("(").push(&dialect.event_position(&index));
            for (_, value) in columns {
                insert.push(", ").push_bind(value);
            }
            insert.push(")");
            ordinal += 1;
        }
        insert.prepend(&format!("INSERT INTO ticket_events ({names}) VALUES "));
        insert.push(" RETURNING id, position");
        // The first statement a change sends after its held-back writes: they go with it.
        let positions: HashMap<Uuid, i64> = tx.fetch_all_after(insert).await?.into_iter().collect();
        for event in chunk {
            let cursor = *positions
                .get(&event.id)
                .ok_or_else(|| StoreError::Corrupt(format!("event {} was not stored", event.id)))?;
            stored.push(Event {
                cursor,
                event: event.clone(),
                delivery: None,
            });
        }
    }
    Ok(stored)
}

/// An event's columns (besides its position) with their values.
fn event_columns(event: &NewEvent) -> StoreResult<Vec<(&'static str, Value<'_>)>> {
    let snapshot = &event.ticket;
    let conversation = snapshot.conversation.as_ref();
    Ok(vec![
        ("id", event.id.into()),
        ("ticket_id", event.ticket_id.into()),
        ("ticket_number", event.ticket_number.into()),
        ("event_type", event.kind.as_str().into()),
        ("actor_kind", event.actor.kind.as_str().into()),
        ("actor_id", event.actor.id.into()),
        ("actor_name", event.actor.name.as_str().into()),
        ("visibility", event.visibility.as_str().into()),
        ("payload", json(&event.payload)?),
        ("created_at", event.created_at.into()),
        ("ticket_status", snapshot.status.as_str().into()),
        ("priority", snapshot.priority.as_str().into()),
        ("ticket_type", snapshot.ticket_type.as_str().into()),
        ("assignee_id", snapshot.assignee_id.into()),
        ("queue_id", snapshot.queue_id.into()),
        ("contact_id", snapshot.contact_id.into()),
        ("channel", snapshot.channel.map(|c| c.as_str()).into()),
        ("tags", json(&snapshot.tags)?),
        (
            "conversation_source",
            conversation.map(|c| c.source.as_str()).into(),
        ),
        (
            "conversation_id",
            conversation.map(|c| c.external_id.as_str()).into(),
        ),
        (
            "conversation_channel",
            conversation.map(|c| c.channel.as_str()).into(),
        ),
        ("depth", i32::from(event.depth).into()),
    ])
}

/// The tailer reads the log through the store.
#[async_trait]
impl Log for SqlStore {
    async fn read_after(&self, after: i64, limit: i64) -> Result<Vec<Event>, LogError> {
        self.events_after(after, limit)
            .await
            .map_err(|e| LogError(Box::new(e)))
    }

    async fn held_back(&self, after: i64) -> Result<bool, LogError> {
        self.events_held_back(after)
            .await
            .map_err(|e| LogError(Box::new(e)))
    }

    async fn end(&self) -> Result<i64, LogError> {
        self.log_end().await.map_err(|e| LogError(Box::new(e)))
    }
}
