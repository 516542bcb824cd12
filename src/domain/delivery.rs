//! Outbound messages for channel gateways and the states of their delivery.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::email::EmailThreading;
use super::event::AttachmentMeta;
use super::ticket::{Channel, text_enum};

text_enum!(
    /// Where one delivery of a message to one consumer group stands.
    DeliveryStatus {
        Queued = "QUEUED",
        Leased = "LEASED",
        Delivered = "DELIVERED",
        Failed = "FAILED",
    }
);

text_enum!(
    /// What a gateway reports when it is done with a message.
    DeliveryOutcome {
        Delivered = "DELIVERED",
        Failed = "FAILED",
    }
);

impl DeliveryOutcome {
    pub fn status(self) -> DeliveryStatus {
        match self {
            DeliveryOutcome::Delivered => DeliveryStatus::Delivered,
            DeliveryOutcome::Failed => DeliveryStatus::Failed,
        }
    }
}

/// A gateway's report on one delivery, as checked: who held it and how it went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acknowledgement {
    pub message_id: Uuid,
    pub consumer_group: String,
    /// The lease the message was delivered under.
    pub lease_id: Uuid,
    pub outcome: DeliveryOutcome,
    pub provider_message_id: String,
    pub error: String,
}

text_enum!(
    /// What an outbound message is, for gateways that treat them differently: an agent's
    /// public reply, an automatic response sent on the team's behalf (acknowledgement,
    /// after-hours), or a notice about the ticket rather than an answer.
    OutboundKind {
        Reply = "REPLY",
        AutoResponse = "AUTO_RESPONSE",
        Notification = "NOTIFICATION",
    }
);

/// The consumer group of subscribers that name none.
pub const DEFAULT_CONSUMER_GROUP: &str = "default";

/// A message to deliver to the customer through a channel gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundMessage {
    pub id: Uuid,
    pub ticket_id: Uuid,
    pub ticket_number: i64,
    /// The reply event this message carries.
    pub event_id: Uuid,
    /// The external id of the linked conversation, or empty.
    pub conversation_id: String,
    pub channel: Channel,
    /// Email address, phone number, or chat conversation / contact id.
    pub recipient: String,
    pub subject: String,
    pub body: String,
    pub attachments: Vec<AttachmentMeta>,
    pub kind: OutboundKind,
    /// The bot or platform of the linked conversation, or empty.
    pub source: String,
    pub created_at: DateTime<Utc>,
}

/// A message handed to one subscriber until `lease_expires_at`.
#[derive(Debug, Clone)]
pub struct LeasedMessage {
    pub message: OutboundMessage,
    pub consumer_group: String,
    pub attempt: i64,
    /// The holder's token: an acknowledgement must name it.
    pub lease_id: Uuid,
    pub lease_expires_at: DateTime<Utc>,
    /// The attachments' bytes, in the order of `message.attachments`.
    pub contents: Vec<Vec<u8>>,
    /// For email: the headers that thread it with the ticket's other messages.
    pub email: Option<EmailThreading>,
}
