//! Row shapes shared by both backends and their conversion into domain types.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use uuid::Uuid;

use super::{ApiKeyRecord, StoreError, StoreResult};
use crate::domain::auth::Role;
use crate::domain::event::{
    Actor, ActorKind, Event, EventKind, EventPayload, NewEvent, Visibility,
};
use crate::domain::ticket::{Contact, Priority, Status, Ticket, TicketType};

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
}

fn parse_text<T>(what: &str, text: &str, parse: fn(&str) -> Option<T>) -> StoreResult<T> {
    parse(text).ok_or_else(|| StoreError::Corrupt(format!("unknown {what} {text:?}")))
}

impl TryFrom<TicketRow> for Ticket {
    type Error = StoreError;

    fn try_from(row: TicketRow) -> StoreResult<Ticket> {
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
            version: row.version,
            time_spent_seconds: row.time_spent_seconds,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct EventRow {
    seq: i64,
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
}

impl TryFrom<EventRow> for Event {
    type Error = StoreError;

    fn try_from(row: EventRow) -> StoreResult<Event> {
        Ok(Event {
            cursor: row.seq,
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
            },
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct ApiKeyRow {
    id: Uuid,
    name: String,
    role: String,
    agent_id: Option<Uuid>,
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
