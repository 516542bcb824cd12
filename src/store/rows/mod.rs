//! Row shapes shared by both backends and their conversion into domain types: tickets,
//! events, conversations, outbound messages, keys and audit entries here; routing and SLA
//! configuration in the submodules.

mod routing;
mod sla;

pub(super) use routing::{AgentRow, CandidateRow, QueueRow, RuleRow};
pub(super) use sla::{CalendarRow, ClockRow, PolicyRow};

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use uuid::Uuid;

use super::{ApiKeyRecord, StoreError, StoreResult};
use crate::domain::audit::{AuditAction, AuditEntry, AuditResource};
use crate::domain::auth::Role;
use crate::domain::conversation::Conversation;
use crate::domain::delivery::{OutboundKind, OutboundMessage};
use crate::domain::event::{
    Actor, ActorKind, AttachmentMeta, DeliveryView, Event, EventKind, EventPayload, FieldChange,
    NewEvent, TicketSnapshot, Visibility,
};
use crate::domain::ticket::{
    Channel, Contact, ConversationRef, Priority, Satisfaction, Status, Ticket, TicketType,
};

#[derive(sqlx::FromRow)]
pub(super) struct TicketRow {
    id: Uuid,
    number: i64,
    subject: String,
    description: String,
    status: String,
    priority: String,
    ticket_type: String,
    tags: Json<Vec<String>>,
    custom_fields: Json<BTreeMap<String, String>>,
    assignee_id: Option<Uuid>,
    queue_id: Option<Uuid>,
    merged_into_id: Option<Uuid>,
    channel: Option<String>,
    follow_up_of_id: Option<Uuid>,
    conversation_source: Option<String>,
    conversation_external_id: Option<String>,
    conversation_channel: Option<String>,
    tier: i32,
    required_skills: Json<Vec<String>>,
    vip_handlers_only: bool,
    version: i64,
    time_spent_seconds: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    contact_id: Uuid,
    contact_external_id: String,
    contact_name: String,
    contact_email: String,
    contact_phone: String,
    contact_vip: bool,
    satisfaction_score: Option<i32>,
    satisfaction_comment: Option<String>,
    satisfaction_rated_at: Option<DateTime<Utc>>,
    resolved_at: Option<DateTime<Utc>>,
    first_response_at: Option<DateTime<Utc>>,
}

fn parse_text<T>(what: &str, text: &str, parse: fn(&str) -> Option<T>) -> StoreResult<T> {
    parse(text).ok_or_else(|| StoreError::Corrupt(format!("unknown {what} {text:?}")))
}

fn optional_channel(text: Option<&str>) -> StoreResult<Option<Channel>> {
    text.map(|t| parse_text("channel", t, Channel::parse))
        .transpose()
}

/// A conversation link from its columns: all of them set, or none.
fn conversation_ref(
    source: Option<String>,
    external_id: Option<String>,
    channel: Option<Channel>,
) -> Option<ConversationRef> {
    match (source, external_id, channel) {
        (Some(source), Some(external_id), Some(channel)) => Some(ConversationRef {
            source,
            external_id,
            channel,
        }),
        _ => None,
    }
}

impl TryFrom<TicketRow> for Ticket {
    type Error = StoreError;

    fn try_from(row: TicketRow) -> StoreResult<Ticket> {
        let channel = optional_channel(row.channel.as_deref())?;
        Ok(Ticket {
            id: row.id,
            number: row.number,
            subject: row.subject,
            description: row.description,
            status: parse_text("status", &row.status, Status::parse)?,
            priority: parse_text("priority", &row.priority, Priority::parse)?,
            ticket_type: parse_text("ticket type", &row.ticket_type, TicketType::parse)?,
            tags: row.tags.0,
            custom_fields: row.custom_fields.0,
            contact: Contact {
                id: row.contact_id,
                external_id: row.contact_external_id,
                name: row.contact_name,
                email: row.contact_email,
                phone: row.contact_phone,
                vip: row.contact_vip,
            },
            assignee_id: row.assignee_id,
            queue_id: row.queue_id,
            merged_into_id: row.merged_into_id,
            channel,
            follow_up_of_id: row.follow_up_of_id,
            conversation: conversation_ref(
                row.conversation_source,
                row.conversation_external_id,
                optional_channel(row.conversation_channel.as_deref())?,
            ),
            tier: row.tier,
            required_skills: row.required_skills.0,
            vip_handlers_only: row.vip_handlers_only,
            sla_clocks: Vec::new(),
            satisfaction: match (row.satisfaction_score, row.satisfaction_rated_at) {
                (Some(score), Some(rated_at)) => Some(Satisfaction {
                    score,
                    comment: row.satisfaction_comment.unwrap_or_default(),
                    rated_at,
                }),
                _ => None,
            },
            resolved_at: row.resolved_at,
            first_response_at: row.first_response_at,
            version: row.version,
            time_spent_seconds: row.time_spent_seconds,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct EventRow {
    position: i64,
    id: Uuid,
    ticket_id: Uuid,
    ticket_number: i64,
    event_type: String,
    actor_kind: String,
    actor_id: Option<Uuid>,
    actor_name: String,
    visibility: String,
    payload: Json<EventPayload>,
    created_at: DateTime<Utc>,
    ticket_status: String,
    priority: String,
    ticket_type: String,
    assignee_id: Option<Uuid>,
    queue_id: Option<Uuid>,
    contact_id: Uuid,
    channel: Option<String>,
    tags: Json<Vec<String>>,
    conversation_source: Option<String>,
    conversation_id: Option<String>,
    conversation_channel: Option<String>,
    depth: i32,
    delivery_message_id: Option<Uuid>,
    delivery_status: Option<String>,
    delivery_provider_id: Option<String>,
    delivery_error: Option<String>,
}

impl TryFrom<EventRow> for Event {
    type Error = StoreError;

    fn try_from(row: EventRow) -> StoreResult<Event> {
        let delivery = match (row.delivery_message_id, row.delivery_status) {
            (Some(message_id), Some(status)) => Some(DeliveryView {
                message_id,
                status,
                provider_message_id: row.delivery_provider_id.unwrap_or_default(),
                error: row.delivery_error.unwrap_or_default(),
            }),
            _ => None,
        };
        Ok(Event {
            cursor: row.position,
            event: NewEvent {
                id: row.id,
                ticket_id: row.ticket_id,
                ticket_number: row.ticket_number,
                kind: parse_text("event type", &row.event_type, EventKind::parse)?,
                actor: Actor {
                    kind: parse_text("actor kind", &row.actor_kind, ActorKind::parse)?,
                    id: row.actor_id,
                    name: row.actor_name,
                },
                visibility: parse_text("visibility", &row.visibility, Visibility::parse)?,
                payload: row.payload.0,
                created_at: row.created_at,
                ticket: TicketSnapshot {
                    status: parse_text("status", &row.ticket_status, Status::parse)?,
                    priority: parse_text("priority", &row.priority, Priority::parse)?,
                    ticket_type: parse_text("ticket type", &row.ticket_type, TicketType::parse)?,
                    assignee_id: row.assignee_id,
                    queue_id: row.queue_id,
                    contact_id: row.contact_id,
                    channel: optional_channel(row.channel.as_deref())?,
                    tags: row.tags.0,
                    conversation: conversation_ref(
                        row.conversation_source,
                        row.conversation_id,
                        optional_channel(row.conversation_channel.as_deref())?,
                    ),
                },
                depth: u8::try_from(row.depth).unwrap_or(u8::MAX),
            },
            delivery,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct ConversationRow {
    id: Uuid,
    source: String,
    external_id: String,
    channel: String,
    ticket_id: Uuid,
    summary: String,
    intent: String,
    metadata: Json<BTreeMap<String, String>>,
}

impl TryFrom<ConversationRow> for Conversation {
    type Error = StoreError;

    fn try_from(row: ConversationRow) -> StoreResult<Conversation> {
        Ok(Conversation {
            id: row.id,
            source: row.source,
            external_id: row.external_id,
            channel: parse_text("channel", &row.channel, Channel::parse)?,
            ticket_id: row.ticket_id,
            summary: row.summary,
            intent: row.intent,
            metadata: row.metadata.0,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct OutboundRow {
    id: Uuid,
    ticket_id: Uuid,
    ticket_number: i64,
    event_id: Uuid,
    conversation_id: String,
    channel: String,
    recipient: String,
    subject: String,
    body: String,
    attachments: Json<Vec<AttachmentMeta>>,
    kind: String,
    source: String,
    created_at: DateTime<Utc>,
}

impl TryFrom<OutboundRow> for OutboundMessage {
    type Error = StoreError;

    fn try_from(row: OutboundRow) -> StoreResult<OutboundMessage> {
        Ok(OutboundMessage {
            id: row.id,
            ticket_id: row.ticket_id,
            ticket_number: row.ticket_number,
            event_id: row.event_id,
            conversation_id: row.conversation_id,
            channel: parse_text("channel", &row.channel, Channel::parse)?,
            recipient: row.recipient,
            subject: row.subject,
            body: row.body,
            attachments: row.attachments.0,
            kind: parse_text("outbound kind", &row.kind, OutboundKind::parse)?,
            source: row.source,
            created_at: row.created_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct ApiKeyRow {
    id: Uuid,
    name: String,
    role: String,
    agent_id: Option<Uuid>,
    channels: Json<Vec<String>>,
    sources: Json<Vec<String>>,
    prefix: String,
    secret_hash: Vec<u8>,
    created_at: DateTime<Utc>,
    revoked_at: Option<DateTime<Utc>>,
}

impl TryFrom<ApiKeyRow> for ApiKeyRecord {
    type Error = StoreError;

    fn try_from(row: ApiKeyRow) -> StoreResult<ApiKeyRecord> {
        Ok(ApiKeyRecord {
            id: row.id,
            name: row.name,
            role: parse_text("role", &row.role, Role::parse)?,
            agent_id: row.agent_id,
            channels: row
                .channels
                .0
                .iter()
                .map(|c| parse_text("channel", c, Channel::parse))
                .collect::<StoreResult<_>>()?,
            sources: row.sources.0,
            prefix: row.prefix,
            secret_hash: row.secret_hash,
            created_at: row.created_at,
            revoked_at: row.revoked_at,
        })
    }
}

/// Converts a batch of rows, failing on the first that does not fit the domain.
pub(super) fn convert_all<R, T>(rows: Vec<R>) -> StoreResult<Vec<T>>
where
    T: TryFrom<R, Error = StoreError>,
{
    rows.into_iter().map(T::try_from).collect()
}

#[derive(sqlx::FromRow)]
pub(super) struct AuditRow {
    id: Uuid,
    actor_kind: String,
    actor_id: Option<Uuid>,
    actor_name: String,
    action: String,
    resource: String,
    resource_id: Uuid,
    changes: Json<Vec<FieldChange>>,
    created_at: DateTime<Utc>,
}

impl TryFrom<AuditRow> for AuditEntry {
    type Error = StoreError;

    fn try_from(row: AuditRow) -> StoreResult<AuditEntry> {
        Ok(AuditEntry {
            id: row.id,
            actor: Actor {
                kind: parse_text("actor kind", &row.actor_kind, ActorKind::parse)?,
                id: row.actor_id,
                name: row.actor_name,
            },
            action: parse_text("audit action", &row.action, AuditAction::parse)?,
            resource: parse_text("audit resource", &row.resource, AuditResource::parse)?,
            resource_id: row.resource_id,
            changes: row.changes.0,
            created_at: row.created_at,
        })
    }
}
