//! Events: the append-only record of every change, which is both a ticket's activity
//! feed and the log that streams read.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::ticket::{Channel, Priority, Status, text_enum};

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
    }
);

/// Who caused an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub kind: ActorKind,
    pub id: Option<Uuid>,
    pub name: String,
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

/// What an event says, stored as JSON beside its kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventPayload {
    Created {
        subject: String,
        priority: String,
        status: String,
    },
    FieldsChanged {
        changes: Vec<FieldChange>,
    },
    Reply {
        body: String,
        channel: String,
        attachments: Vec<AttachmentMeta>,
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
}

impl EventPayload {
    pub fn created(subject: &str, priority: Priority, status: Status) -> Self {
        EventPayload::Created {
            subject: subject.to_owned(),
            priority: priority.as_str().to_owned(),
            status: status.as_str().to_owned(),
        }
    }

    pub fn reply(body: &str, channel: Channel, attachments: Vec<AttachmentMeta>) -> Self {
        EventPayload::Reply {
            body: body.to_owned(),
            channel: channel.as_str().to_owned(),
            attachments,
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
}

/// An event as stored, with its position in the log.
#[derive(Debug, Clone)]
pub struct Event {
    pub cursor: i64,
    pub event: NewEvent,
}
