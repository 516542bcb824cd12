//! Events: the append-only record of every change, which is both a ticket's activity
//! feed and the log that streams read.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use std::collections::BTreeMap;

use super::routing::Considered;
use super::ticket::{Channel, ConversationRef, Priority, Status, Ticket, TicketType, text_enum};

text_enum!(
    /// The kind of an event, as stored and as named in watch filters.
    EventKind {
        TicketCreated = "ticket_created",
        TicketUpdated = "ticket_updated",
        StatusChanged = "status_changed",
        Assigned = "assigned",
        ReplyAdded = "reply_added",
        NoteAdded = "note_added",
        TimeLogged = "time_logged",
        TicketsMerged = "tickets_merged",
        ConversationEscalated = "conversation_escalated",
        TranscriptMessage = "transcript_message",
        CustomerMessage = "customer_message",
        DeliveryReceipt = "delivery_receipt",
        TierEscalated = "tier_escalated",
        SlaWarning = "sla_warning",
        SlaBreached = "sla_breached",
        Notification = "notification",
        WorkflowApplied = "workflow_applied",
        SatisfactionRated = "satisfaction_rated",
    }
);

text_enum!(
    /// Who may see an event: customers see only public ones.
    Visibility {
        Public = "public",
        Internal = "internal",
    }
);

text_enum!(
    ActorKind {
        Agent = "agent",
        ApiKey = "api_key",
        System = "system",
        Customer = "customer",
        Bot = "bot",
        Workflow = "workflow",
    }
);

/// Who caused an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub kind: ActorKind,
    pub id: Option<Uuid>,
    pub name: String,
}

impl Actor {
    /// ticketd itself, in the part named: `routing`, `sla`, `bootstrap`.
    pub fn system(name: &str) -> Actor {
        Actor {
            kind: ActorKind::System,
            id: None,
            name: name.to_owned(),
        }
    }

    /// A workflow, by id and name.
    pub fn workflow(id: Uuid, name: &str) -> Actor {
        Actor {
            kind: ActorKind::Workflow,
            id: Some(id),
            name: name.to_owned(),
        }
    }
}

/// A field change rendered as text for the feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChange {
    pub field: String,
    pub old: String,
    pub new: String,
}

/// Attachment metadata as recorded on a reply; the bytes live in their own table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentMeta {
    pub id: Uuid,
    pub name: String,
    pub content_type: String,
    pub size_bytes: i64,
}

/// What an ingested email adds to its customer message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailFacts {
    pub subject: String,
    /// How it found its ticket: `message_id`, `reply_token`, `subject_number` or
    /// `new_ticket`.
    pub threaded_by: String,
    /// The whole text, quoted history included, when the message's text is only what
    /// stood above it; empty otherwise.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub full_text: String,
}

/// What an event says, stored as JSON beside its kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventPayload {
    Created {
        subject: String,
        priority: String,
        status: String,
        /// The closed ticket this one follows up on.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        follow_up_of: Option<Uuid>,
    },
    FieldsChanged {
        changes: Vec<FieldChange>,
    },
    Reply {
        body: String,
        channel: String,
        attachments: Vec<AttachmentMeta>,
        /// The outbound message that carries the reply to the customer.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message_id: Option<Uuid>,
    },
    Note {
        body: String,
    },
    TimeLogged {
        agent_id: Option<Uuid>,
        seconds: i64,
        note: String,
        total_seconds: i64,
    },
    Merged {
        target_id: Uuid,
        target_number: i64,
        source_ids: Vec<Uuid>,
        source_numbers: Vec<i64>,
    },
    /// A bot handed a conversation over (or handed it over again).
    Escalated {
        source: String,
        conversation_id: String,
        channel: String,
        reason: String,
        intent: String,
        summary: String,
        metadata: BTreeMap<String, String>,
        /// Transcript messages the bot sent with this escalation; ones the ticket already
        /// holds are not repeated in the feed.
        messages: i64,
    },
    /// One message of an escalated conversation, with its original role and time.
    Transcript {
        role: String,
        author: String,
        text: String,
        sent_at: DateTime<Utc>,
        attachments: Vec<AttachmentMeta>,
    },
    /// A customer wrote in through a gateway.
    CustomerMessage {
        channel: String,
        sender: String,
        text: String,
        external_message_id: String,
        attachments: Vec<AttachmentMeta>,
        /// For email taken in by `IngestEmail`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        email: Option<EmailFacts>,
    },
    /// A routing decision: the rule that matched, the queue, and who got the ticket and why.
    Routed {
        queue_id: Option<Uuid>,
        strategy: String,
        assignee_id: Option<Uuid>,
        reason: String,
        considered: Vec<Considered>,
        rule: Option<String>,
    },
    /// An SLA clock reached its warning threshold, or its due time (by the event's kind).
    Sla {
        metric: String,
        target_seconds: i64,
        due_at: Option<DateTime<Utc>>,
    },
    /// The ticket moved up a support tier.
    TierEscalated {
        from_tier: i32,
        to_tier: i32,
        queue_id: Uuid,
        reason: String,
    },
    /// Something for particular agents to know: the ticket was assigned to them, or a
    /// note mentioned them.
    Notification {
        /// `assigned` or `mentioned`.
        reason: String,
        recipients: Vec<Uuid>,
        text: String,
    },
    /// A workflow ran (or was stopped before it could loop).
    WorkflowApplied {
        workflow_id: Uuid,
        workflow_name: String,
        /// What fired it: the event type and cursor, or the timer.
        trigger: String,
        /// What each action did, in order.
        actions: Vec<String>,
        /// Why the workflow did not run its actions, when it did not.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        stopped: String,
    },
    /// The customer rated the ticket (again, within the window, replacing the rating).
    SatisfactionRated {
        score: i32,
        comment: String,
    },
    /// A gateway reported the outcome of delivering an outbound message.
    DeliveryReceipt {
        message_id: Uuid,
        consumer_group: String,
        outcome: String,
        provider_message_id: String,
        error: String,
        attempts: i64,
    },
}

impl EventPayload {
    pub fn created(
        subject: &str,
        priority: Priority,
        status: Status,
        follow_up_of: Option<Uuid>,
    ) -> Self {
        EventPayload::Created {
            subject: subject.to_owned(),
            priority: priority.as_str().to_owned(),
            status: status.as_str().to_owned(),
            follow_up_of,
        }
    }

    /// The channel an event travelled on, when it is about a message.
    pub fn channel(&self) -> Option<Channel> {
        match self {
            EventPayload::Reply { channel, .. }
            | EventPayload::CustomerMessage { channel, .. }
            | EventPayload::Escalated { channel, .. } => Channel::parse(channel),
            _ => None,
        }
    }
}

/// The ticket as of an event, kept with the event so that streams can filter on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketSnapshot {
    pub status: Status,
    pub priority: Priority,
    pub ticket_type: TicketType,
    pub assignee_id: Option<Uuid>,
    pub queue_id: Option<Uuid>,
    pub contact_id: Uuid,
    /// The event's own channel for messages, else the ticket's.
    pub channel: Option<Channel>,
    pub tags: Vec<String>,
    /// The conversation the ticket answers, for updates to its bot or gateway.
    pub conversation: Option<ConversationRef>,
}

impl TicketSnapshot {
    pub fn of(ticket: &Ticket) -> Self {
        TicketSnapshot {
            status: ticket.status,
            priority: ticket.priority,
            ticket_type: ticket.ticket_type,
            assignee_id: ticket.assignee_id,
            queue_id: ticket.queue_id,
            contact_id: ticket.contact.id,
            channel: ticket.channel,
            tags: ticket.tags.clone(),
            conversation: ticket.conversation.clone(),
        }
    }
}

/// An event about to be appended.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub id: Uuid,
    pub ticket_id: Uuid,
    pub ticket_number: i64,
    pub kind: EventKind,
    pub actor: Actor,
    pub visibility: Visibility,
    pub payload: EventPayload,
    pub created_at: DateTime<Utc>,
    pub ticket: TicketSnapshot,
    /// How many workflow runs led to this event: 0 for a change made by a caller, one
    /// more than its trigger's for a workflow's change (see `workflow::MAX_DEPTH`).
    pub depth: u8,
}

impl NewEvent {
    /// An event about `ticket` (in its state after the change) happening now.
    pub fn about(
        ticket: &Ticket,
        kind: EventKind,
        actor: Actor,
        visibility: Visibility,
        payload: EventPayload,
        at: DateTime<Utc>,
    ) -> Self {
        let mut snapshot = TicketSnapshot::of(ticket);
        if let Some(channel) = payload.channel() {
            snapshot.channel = Some(channel);
        }
        NewEvent {
            id: Uuid::now_v7(),
            ticket_id: ticket.id,
            ticket_number: ticket.number,
            kind,
            actor,
            visibility,
            payload,
            created_at: at,
            ticket: snapshot,
            depth: 0,
        }
    }
}

/// Where a reply's outbound message stands, shown with the reply in the feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryView {
    pub message_id: Uuid,
    pub status: String,
    pub provider_message_id: String,
    pub error: String,
}

/// An event as stored, with its position in the log.
#[derive(Debug, Clone)]
pub struct Event {
    pub cursor: i64,
    pub event: NewEvent,
    /// For replies: the delivery state of their outbound message, where known.
    pub delivery: Option<DeliveryView>,
}
