//! What bots and gateways hear about the tickets of their conversations: the few facts a
//! customer may be told, read off the event log. Internal notes, routing reasons and
//! field-by-field changes never leave; an agent appears by display name only.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::event::{ActorKind, Event, EventKind, EventPayload, NewEvent, Visibility};
use super::ticket::{ConversationRef, Status};

/// The kinds of `ConversationUpdate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateKind {
    TicketOpened,
    AgentAssigned,
    StatusChanged,
    AgentReplied,
    WaitingForCustomer,
    Resolved,
    Closed,
    /// The ticket was merged into another; updates continue on that one.
    Merged,
    /// A closed ticket's customer wrote again and a new ticket follows it up.
    FollowUpOpened,
    TierEscalated,
}

/// One fact about a conversation's ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationUpdate {
    /// The event's position in the log: resume after it.
    pub cursor: i64,
    pub conversation: ConversationRef,
    pub ticket_id: Uuid,
    pub ticket_number: i64,
    pub kind: UpdateKind,
    /// The ticket's status after the event.
    pub status: Status,
    /// The agent assigned or replying, whose display name the update carries.
    pub agent_id: Option<Uuid>,
    /// For agent replies: the reply's text.
    pub body: String,
    /// For merges: the ticket that lives on (id and number).
    pub merged_into: Option<(Uuid, i64)>,
    pub occurred_at: DateTime<Utc>,
}

/// The kind of update an event makes for its conversation, if any: most events (notes,
/// tag changes, transcript lines, SLA alerts) make none.
pub fn update_kind(event: &NewEvent) -> Option<UpdateKind> {
    let status = event.ticket.status;
    match (event.kind, &event.payload) {
        (EventKind::TicketCreated, EventPayload::Created { follow_up_of, .. }) => {
            Some(if follow_up_of.is_some() {
                UpdateKind::FollowUpOpened
            } else {
                UpdateKind::TicketOpened
            })
        }
        (EventKind::Assigned, _) if event.ticket.assignee_id.is_some() => {
            Some(UpdateKind::AgentAssigned)
        }
        (EventKind::StatusChanged, _) => match status {
            Status::Waiting => Some(UpdateKind::WaitingForCustomer),
            Status::Resolved => Some(UpdateKind::Resolved),
            Status::Closed => Some(UpdateKind::Closed),
            // The merge event says it, with the ticket that lives on.
            Status::Merged => None,
            Status::Open | Status::InProgress => Some(UpdateKind::StatusChanged),
        },
        // A reply sent on another channel (by email to a chat customer, say) is that
        // channel's to deliver: the conversation does not relay it too.
        (EventKind::ReplyAdded, EventPayload::Reply { channel, .. })
            if event.visibility == Visibility::Public
                && event
                    .ticket
                    .conversation
                    .as_ref()
                    .is_some_and(|c| c.channel.as_str() == channel) =>
        {
            Some(UpdateKind::AgentReplied)
        }
        // Only the tickets merged away hear of it; the one that lives on goes on as before.
        (EventKind::TicketsMerged, EventPayload::Merged { .. }) if status == Status::Merged => {
            Some(UpdateKind::Merged)
        }
        (EventKind::TierEscalated, _) => Some(UpdateKind::TierEscalated),
        _ => None,
    }
}

/// The update an event makes for the conversation its ticket answers, if any.
pub fn conversation_update(event: &Event) -> Option<ConversationUpdate> {
    let e = &event.event;
    let conversation = e.ticket.conversation.clone()?;
    let kind = update_kind(e)?;
    let mut update = ConversationUpdate {
        cursor: event.cursor,
        conversation,
        ticket_id: e.ticket_id,
        ticket_number: e.ticket_number,
        kind,
        status: e.ticket.status,
        agent_id: None,
        body: String::new(),
        merged_into: None,
        occurred_at: e.created_at,
    };
    match (&e.payload, kind) {
        (_, UpdateKind::AgentAssigned) => update.agent_id = e.ticket.assignee_id,
        (EventPayload::Reply { body, .. }, UpdateKind::AgentReplied) => {
            update.body = body.clone();
            update.agent_id = (e.actor.kind == ActorKind::Agent)
                .then_some(e.actor.id)
                .flatten();
        }
        (
            EventPayload::Merged {
                target_id,
                target_number,
                ..
            },
            UpdateKind::Merged,
        ) => update.merged_into = Some((*target_id, *target_number)),
        _ => {}
    }
    Some(update)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::{Actor, FieldChange, TicketSnapshot};
    use crate::domain::ticket::{Channel, Priority, TicketType};

    fn event(kind: EventKind, status: Status, payload: EventPayload) -> Event {
        Event {
            cursor: 7,
            event: NewEvent {
                id: Uuid::nil(),
                ticket_id: Uuid::from_u128(1),
                ticket_number: 42,
                kind,
                actor: Actor {
                    kind: ActorKind::Agent,
                    id: Some(Uuid::from_u128(9)),
                    name: "key of Ana".into(),
                },
                visibility: if kind == EventKind::ReplyAdded {
                    Visibility::Public
                } else {
                    Visibility::Internal
                },
                payload,
                created_at: DateTime::UNIX_EPOCH,
                ticket: TicketSnapshot {
                    status,
                    priority: Priority::Medium,
                    ticket_type: TicketType::Question,
                    assignee_id: Some(Uuid::from_u128(9)),
                    queue_id: None,
                    contact_id: Uuid::nil(),
                    channel: Some(Channel::Chat),
                    tags: Vec::new(),
                    conversation: Some(ConversationRef {
                        source: "bot".into(),
                        external_id: "c-1".into(),
                        channel: Channel::Chat,
                    }),
                },
                depth: 0,
            },
            delivery: None,
        }
    }

    fn status_change() -> EventPayload {
        EventPayload::FieldsChanged {
            changes: vec![FieldChange {
                field: "status".into(),
                old: "OPEN".into(),
                new: "x".into(),
            }],
        }
    }

    #[test]
    fn status_changes_name_the_customer_facing_ones() {
        let kind = |status| {
            conversation_update(&event(EventKind::StatusChanged, status, status_change()))
                .map(|u| u.kind)
        };
        assert_eq!(kind(Status::Waiting), Some(UpdateKind::WaitingForCustomer));
        assert_eq!(kind(Status::Resolved), Some(UpdateKind::Resolved));
        assert_eq!(kind(Status::Closed), Some(UpdateKind::Closed));
        assert_eq!(kind(Status::InProgress), Some(UpdateKind::StatusChanged));
        assert_eq!(kind(Status::Merged), None);
    }

    #[test]
    fn replies_carry_their_text_and_notes_say_nothing() {
        let reply = EventPayload::Reply {
            body: "Try turning it off and on".into(),
            channel: "CHAT".into(),
            attachments: Vec::new(),
            message_id: None,
        };
        let update = conversation_update(&event(EventKind::ReplyAdded, Status::Open, reply))
            .expect("a reply is an update");
        assert_eq!(update.kind, UpdateKind::AgentReplied);
        assert_eq!(update.body, "Try turning it off and on");
        assert_eq!(update.agent_id, Some(Uuid::from_u128(9)));
        assert_eq!(update.cursor, 7);
        let by_mail = EventPayload::Reply {
            body: "Sent by email instead".into(),
            channel: "EMAIL".into(),
            attachments: Vec::new(),
            message_id: None,
        };
        assert_eq!(
            conversation_update(&event(EventKind::ReplyAdded, Status::Open, by_mail)),
            None,
            "a reply on another channel is not the chat's to relay"
        );
        let note = EventPayload::Note {
            body: "customer is angry".into(),
        };
        assert_eq!(
            conversation_update(&event(EventKind::NoteAdded, Status::Open, note)),
            None
        );
    }

    #[test]
    fn only_the_ticket_merged_away_hears_of_a_merge() {
        let merged = EventPayload::Merged {
            target_id: Uuid::from_u128(5),
            target_number: 50,
            source_ids: vec![Uuid::from_u128(1)],
            source_numbers: vec![42],
        };
        let update = conversation_update(&event(
            EventKind::TicketsMerged,
            Status::Merged,
            merged.clone(),
        ))
        .unwrap();
        assert_eq!(update.merged_into, Some((Uuid::from_u128(5), 50)));
        assert_eq!(
            conversation_update(&event(EventKind::TicketsMerged, Status::Open, merged)),
            None
        );
    }

    #[test]
    fn a_ticket_without_a_conversation_makes_no_updates() {
        let mut e = event(EventKind::StatusChanged, Status::Resolved, status_change());
        e.event.ticket.conversation = None;
        assert_eq!(conversation_update(&e), None);
    }

    #[test]
    fn a_follow_up_is_told_apart_from_a_new_ticket() {
        let created = |follow_up_of| EventPayload::Created {
            subject: "s".into(),
            priority: "MEDIUM".into(),
            status: "OPEN".into(),
            follow_up_of,
        };
        let kind = |payload| {
            conversation_update(&event(EventKind::TicketCreated, Status::Open, payload))
                .map(|u| u.kind)
        };
        assert_eq!(kind(created(None)), Some(UpdateKind::TicketOpened));
        assert_eq!(
            kind(created(Some(Uuid::from_u128(3)))),
            Some(UpdateKind::FollowUpOpened)
        );
    }
}
