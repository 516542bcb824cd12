//! Writing a [`Changeset`]: everything one action changes, in one transaction. The order
//! follows the foreign keys: the request id claim first (a replay writes nothing), then
//! tickets, the conversation, time entries, events, and what refers to events
//! (attachments, outbound messages), and the SLA clocks and workflow timers last. A
//! workflow's step or a firing timer is checked right after the request id: a runner that
//! lost the race writes nothing.

use uuid::Uuid;

use super::auto_responses::record_sent;
use super::conversations::{
    claim_inbound, claim_transcript_keys, conversation_key_taken, write_conversation,
};
use super::database::Tx;
use super::delivery::queue_outbound;
use super::events::{MAX_EVENTS_PER_TRANSACTION, insert_events};
use super::idempotency::claim_request_id;
use super::routing::guard_assignment;
use super::search::index_events;
use super::sla::upsert_clocks;
use super::tickets::{insert_attachment, insert_time_entry, ticket_in, update_ticket};
use super::workflows::{fire_timer, step_workflows, write_timers};
use super::{Changeset, Committed, ConversationWrite, StoreError, StoreResult};
use crate::domain::event::NewEvent;
use crate::domain::ticket::Contact;

/// The ticket `create_ticket` inserted in the current transaction.
pub(super) struct NewTicket {
    pub id: Uuid,
    pub number: i64,
    pub contact: Contact,
    pub description: String,
}

/// Writes a changeset inside `tx` and commits it. Events about `new_ticket` get its number
/// and contact. Returns what was written.
pub(super) async fn apply_and_commit(
    mut tx: Tx,
    changes: Changeset,
    new_ticket: Option<NewTicket>,
) -> StoreResult<Committed> {
    // A new conversation's insert may go with any later statement, up to the commit
    // (see `write_conversation`): whichever is refused for its key says it was taken.
    let inserted = match &changes.conversation {
        Some(ConversationWrite::Insert(c, _)) => Some(c.external_id.clone()),
        _ => None,
    };
    let written = async move {
        let committed = apply(&mut tx, changes, new_ticket).await?;
        tx.commit().await?;
        Ok(committed)
    };
    written.await.map_err(|err| match inserted {
        Some(external_id) if conversation_key_taken(&err) => {
            StoreError::ConversationExists(external_id)
        }
        _ => err,
    })
}

/// Writes a changeset inside `tx`; see [`apply_and_commit`].
async fn apply(
    tx: &mut Tx,
    changes: Changeset,
    new_ticket: Option<NewTicket>,
) -> StoreResult<Committed> {
    let Changeset {
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
        steps,
        fired,
        timers,
        auto_replies,
    } = changes;
    if let Some(claim) = &claim
        && let Some(resource) = claim_request_id(tx, claim).await?
    {
        return Ok(Committed {
            replayed: Some(resource),
            ..Default::default()
        });
    }
    step_workflows(tx, &steps).await?;
    if let Some(timer) = &fired {
        fire_timer(tx, timer).await?;
    }
    if events.len() + transcript.len() + auto_replies.len() >= MAX_EVENTS_PER_TRANSACTION {
        return Err(StoreError::Corrupt(
            "too many events for one transaction".into(),
        ));
    }
    if let Some(guard) = &guard {
        guard_assignment(tx, guard).await?;
    }
    if let Some(claim) = &inbound {
        claim_inbound(tx, claim).await?;
    }
    for update in &updates {
        update_ticket(tx, update).await?;
    }
    if let Some(write) = &conversation {
        write_conversation(tx, write).await?;
    }
    for entry in &time_entries {
        insert_time_entry(tx, entry).await?;
    }
    let fill = |mut event: NewEvent| {
        if let Some(t) = &new_ticket
            && event.ticket_id == t.id
        {
            event.ticket_number = t.number;
            event.ticket.contact_id = t.contact.id;
        }
        event
    };
    let mut pending: Vec<NewEvent> = Vec::with_capacity(events.len() + transcript.len());
    pending.extend(events.into_iter().map(fill));
    let mut files = attachments;
    let mut transcript_added = 0;
    // Only the messages whose keys are claimed (the ones the conversation did not hold
    // yet) become events.
    let new_conversation = match &conversation {
        Some(ConversationWrite::Insert(c, _)) => Some(c.id),
        _ => None,
    };
    let mut fresh = claim_transcript_keys(tx, &transcript, new_conversation).await?;
    for message in transcript {
        if fresh.remove(&(message.conversation_id, message.key)) {
            pending.push(fill(message.event));
            transcript_added += 1;
            files.extend(message.attachments);
        }
    }
    let mut outbound = outbound;
    for reply in auto_replies {
        let (number, contact) = match &new_ticket {
            Some(t) if t.id == reply.message.ticket_id => (t.number, t.contact.clone()),
            _ => (reply.event.ticket_number, reply.contact.clone()),
        };
        if let Some((event, message, sent)) = reply.finish(number, &contact) {
            pending.push(fill(event));
            outbound.push(message);
            record_sent(tx, &sent).await?;
        }
    }
    let created = new_ticket.as_ref().map(|t| (t.id, t.description.as_str()));
    index_events(tx, &pending, created).await?;
    // Clocks and search documents go ahead of the events, with them (see `Tx::defer`).
    upsert_clocks(tx, &clocks).await?;
    // Attachments and outbound messages reference their event, so they follow it.
    let stored = insert_events(tx, pending, 0).await?;
    for file in &files {
        insert_attachment(tx, file).await?;
    }
    for message in &outbound {
        queue_outbound(tx, message).await?;
    }
    write_timers(tx, &timers).await?;
    let mut tickets = Vec::with_capacity(updates.len());
    for update in &updates {
        tickets.push(ticket_in(tx, update.ticket.id).await?);
    }
    Ok(Committed {
        tickets,
        events: stored,
        transcript_added,
        replayed: None,
        queued: outbound.iter().map(|m| m.channel).collect(),
    })
}
