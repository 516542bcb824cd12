//! Row shapes shared by both backends and their conversion into domain types.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::types::Json;
use uuid::Uuid;

use super::{ApiKeyRecord, StoreError, StoreResult};
use crate::domain::audit::{AuditAction, AuditEntry, AuditResource};
use crate::domain::auth::Role;
use crate::domain::calendar::BusinessCalendar;
use crate::domain::conversation::Conversation;
use crate::domain::delivery::{OutboundKind, OutboundMessage};
use crate::domain::event::{
    Actor, ActorKind, AttachmentMeta, DeliveryView, Event, EventKind, EventPayload, FieldChange,
    NewEvent, TicketSnapshot, Visibility,
};
use crate::domain::routing::{
    Agent, Availability, Candidate, Queue, RoutingRule, RuleActions, RuleConditions, Strategy,
};
use crate::domain::sla::{Clock, Metric, PolicyConditions, SlaPolicy, Targets, Warning};
use crate::domain::ticket::{
    Channel, Contact, ConversationRef, Priority, Status, Ticket, TicketType,
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
pub(super) struct QueueRow {
    id: Uuid,
    name: String,
    tier: i32,
    strategy: String,
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<QueueRow> for Queue {
    type Error = StoreError;

    fn try_from(row: QueueRow) -> StoreResult<Queue> {
        Ok(Queue {
            id: row.id,
            name: row.name,
            tier: row.tier,
            strategy: parse_text("strategy", &row.strategy, Strategy::parse)?,
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct AgentRow {
    id: Uuid,
    name: String,
    email: String,
    skills: Json<Vec<String>>,
    tier: i32,
    capacity: i32,
    availability: String,
    vip_handler: bool,
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<AgentRow> for Agent {
    type Error = StoreError;

    /// Queue memberships are read separately.
    fn try_from(row: AgentRow) -> StoreResult<Agent> {
        Ok(Agent {
            id: row.id,
            name: row.name,
            email: row.email,
            skills: row.skills.0,
            tier: row.tier,
            capacity: row.capacity,
            availability: parse_text("availability", &row.availability, Availability::parse)?,
            queue_ids: Vec::new(),
            vip_handler: row.vip_handler,
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct RuleRow {
    id: Uuid,
    name: String,
    position: i32,
    enabled: bool,
    conditions: Json<RuleConditions>,
    actions: Json<RuleActions>,
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<RuleRow> for RoutingRule {
    type Error = StoreError;

    fn try_from(row: RuleRow) -> StoreResult<RoutingRule> {
        Ok(RoutingRule {
            id: row.id,
            name: row.name,
            position: row.position,
            enabled: row.enabled,
            conditions: row.conditions.0,
            actions: row.actions.0,
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct CandidateRow {
    id: Uuid,
    name: String,
    availability: String,
    capacity: i32,
    skills: Json<Vec<String>>,
    tier: i32,
    vip_handler: bool,
    last_assigned_at: Option<DateTime<Utc>>,
    load: i64,
}

impl TryFrom<CandidateRow> for Candidate {
    type Error = StoreError;

    fn try_from(row: CandidateRow) -> StoreResult<Candidate> {
        Ok(Candidate {
            agent_id: row.id,
            name: row.name,
            availability: parse_text("availability", &row.availability, Availability::parse)?,
            capacity: row.capacity,
            load: row.load,
            skills: row.skills.0,
            tier: row.tier,
            vip_handler: row.vip_handler,
            last_assigned_at: row.last_assigned_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct CalendarRow {
    pub(super) id: Uuid,
    pub(super) name: String,
    pub(super) time_zone: String,
    pub(super) weekly: Json<BTreeMap<String, Vec<(String, String)>>>,
    pub(super) holidays: Json<Vec<NaiveDate>>,
    /// `MM-DD`.
    pub(super) yearly_holidays: Json<Vec<String>>,
    pub(super) version: i64,
}

impl From<&BusinessCalendar> for CalendarRow {
    fn from(cal: &BusinessCalendar) -> Self {
        let weekly = cal.weekly_text().into_iter().collect();
        CalendarRow {
            id: cal.id,
            name: cal.name.clone(),
            time_zone: cal.time_zone.name().to_owned(),
            weekly: Json(weekly),
            holidays: Json(cal.holidays.iter().copied().collect()),
            yearly_holidays: Json(
                cal.yearly_holidays
                    .iter()
                    .map(|(m, d)| format!("{m:02}-{d:02}"))
                    .collect(),
            ),
            version: cal.version,
        }
    }
}

impl TryFrom<CalendarRow> for BusinessCalendar {
    type Error = StoreError;

    fn try_from(row: CalendarRow) -> StoreResult<BusinessCalendar> {
        let weekly: Vec<(String, Vec<(String, String)>)> = row.weekly.0.into_iter().collect();
        let yearly = row
            .yearly_holidays
            .0
            .iter()
            .map(|md| {
                md.split_once('-')
                    .and_then(|(m, d)| Some((m.parse().ok()?, d.parse().ok()?)))
                    .ok_or_else(|| StoreError::Corrupt(format!("yearly holiday {md:?}")))
            })
            .collect::<StoreResult<_>>()?;
        BusinessCalendar::parse(
            row.id,
            &row.name,
            &row.time_zone,
            &weekly,
            row.holidays.0.into_iter().collect(),
            yearly,
        )
        .map(|cal| BusinessCalendar {
            version: row.version,
            ..cal
        })
        .map_err(|e| StoreError::Corrupt(format!("calendar {}: {e}", row.id)))
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct PolicyRow {
    id: Uuid,
    name: String,
    position: i32,
    conditions: Json<PolicyConditions>,
    targets: Json<Targets>,
    calendar_id: Option<Uuid>,
    warning: Json<Warning>,
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<PolicyRow> for SlaPolicy {
    type Error = StoreError;

    fn try_from(row: PolicyRow) -> StoreResult<SlaPolicy> {
        Ok(SlaPolicy {
            id: row.id,
            name: row.name,
            position: row.position,
            conditions: row.conditions.0,
            targets: row.targets.0,
            calendar_id: row.calendar_id,
            warning: row.warning.0,
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct ClockRow {
    ticket_id: Uuid,
    metric: String,
    policy_id: Option<Uuid>,
    calendar_id: Option<Uuid>,
    warning: Json<Warning>,
    target_seconds: i64,
    used_seconds: i64,
    running_since: Option<DateTime<Utc>>,
    stopped: bool,
    breached: bool,
    due_at: Option<DateTime<Utc>>,
    warn_at: Option<DateTime<Utc>>,
    warned: bool,
    breach_fired: bool,
    started_at: DateTime<Utc>,
    stopped_at: Option<DateTime<Utc>>,
}

impl TryFrom<ClockRow> for Clock {
    type Error = StoreError;

    fn try_from(row: ClockRow) -> StoreResult<Clock> {
        Ok(Clock {
            ticket_id: row.ticket_id,
            metric: parse_text("metric", &row.metric, Metric::parse)?,
            policy_id: row.policy_id,
            calendar_id: row.calendar_id,
            warning: row.warning.0,
            target_seconds: row.target_seconds,
            used_seconds: row.used_seconds,
            running_since: row.running_since,
            stopped: row.stopped,
            breached: row.breached,
            due_at: row.due_at,
            warn_at: row.warn_at,
            warned: row.warned,
            breach_fired: row.breach_fired,
            started_at: row.started_at,
            stopped_at: row.stopped_at,
        })
    }
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
