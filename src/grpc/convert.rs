//! Conversions between protobuf messages and domain / service types.
//!
//! Wire-level checks live here (enum numbers, UUID syntax, durations); business rules
//! (lengths, limits, transitions) are the service's.

use chrono::{DateTime, Utc};
use prost_types::{Duration as PbDuration, Timestamp};
use uuid::Uuid;

use super::pb;
use crate::domain::audit::AuditEntry;
use crate::domain::auth::Role;
use crate::domain::conversation::{AttachmentInput, MessageRole, TranscriptMessage};
use crate::domain::delivery::{DeliveryOutcome, DeliveryStatus, LeasedMessage};
use crate::domain::event::{
    Actor, ActorKind, AttachmentMeta, DeliveryView, Event, EventKind, EventPayload, FieldChange,
    Visibility,
};
use crate::domain::sla::{ClockState, Metric};
use crate::domain::ticket::{Channel, ContactInput, Priority, Status, Ticket, TicketType};
use crate::domain::validation::{Violations, parse_optional_uuid};
use crate::service::sla::{ClockView, SlaReadings};
use crate::store::ApiKeyRecord;

pub(crate) fn timestamp(at: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: at.timestamp(),
        nanos: at.timestamp_subsec_nanos() as i32,
    }
}

pub(crate) fn duration_from_seconds(seconds: i64) -> PbDuration {
    PbDuration { seconds, nanos: 0 }
}

pub(crate) fn optional_id(id: Option<Uuid>) -> String {
    id.map(|id| id.to_string()).unwrap_or_default()
}

/// Declares the two-way mapping between a domain enum and its protobuf enum.
macro_rules! enum_mapping {
    ($to_pb:ident, $from_pb:ident, $domain:ty, $pb:ty, $name:literal, { $($d:ident <=> $p:ident),+ $(,)? }) => {
        pub(crate) fn $to_pb(value: $domain) -> i32 {
            match value { $(<$domain>::$d => <$pb>::$p as i32),+ }
        }

        /// `None` for the unspecified value; a violation for a number the enum lacks.
        pub(crate) fn $from_pb(value: i32, field: &str, v: &mut Violations) -> Option<$domain> {
            match <$pb>::try_from(value) {
                $(Ok(<$pb>::$p) => Some(<$domain>::$d),)+
                Ok(_) => None,
                Err(_) => {
                    v.add(field, format!("{value} is not a valid {}", $name));
                    None
                }
            }
        }
    };
}

enum_mapping!(status_to_pb, status_from_pb, Status, pb::TicketStatus, "TicketStatus", {
    Open <=> Open, InProgress <=> InProgress, Waiting <=> Waiting, Resolved <=> Resolved,
    Closed <=> Closed, Merged <=> Merged,
});
enum_mapping!(priority_to_pb, priority_from_pb, Priority, pb::Priority, "Priority", {
    Low <=> Low, Medium <=> Medium, High <=> High, Urgent <=> Urgent,
});
enum_mapping!(type_to_pb, type_from_pb, TicketType, pb::TicketType, "TicketType", {
    Bug <=> Bug, FeatureRequest <=> FeatureRequest, Question <=> Question,
    Complaint <=> Complaint, Other <=> Other,
});
enum_mapping!(channel_to_pb, channel_from_pb, Channel, pb::Channel, "Channel", {
    Email <=> Email, Sms <=> Sms, Chat <=> Chat,
});
enum_mapping!(role_to_pb, role_from_pb, Role, pb::Role, "Role", {
    Admin <=> Admin, Agent <=> Agent, Bot <=> Bot, Gateway <=> Gateway,
});
enum_mapping!(role_of_message_to_pb, role_of_message_from_pb, MessageRole, pb::MessageRole, "MessageRole", {
    Customer <=> Customer, Bot <=> Bot, Agent <=> Agent,
});
/// `None` for the unspecified value; a violation for a number the enum lacks.
pub(crate) fn outcome_from_pb(
    value: i32,
    field: &str,
    v: &mut Violations,
) -> Option<DeliveryOutcome> {
    match pb::DeliveryOutcome::try_from(value) {
        Ok(pb::DeliveryOutcome::Delivered) => Some(DeliveryOutcome::Delivered),
        Ok(pb::DeliveryOutcome::Failed) => Some(DeliveryOutcome::Failed),
        Ok(pb::DeliveryOutcome::Unspecified) => None,
        Err(_) => {
            v.add(field, format!("{value} is not a valid DeliveryOutcome"));
            None
        }
    }
}

pub(crate) fn delivery_status_from_domain(status: DeliveryStatus) -> i32 {
    delivery_status_to_pb(status.as_str())
}

pub(crate) fn attachment_from_pb(a: pb::Attachment) -> AttachmentInput {
    AttachmentInput {
        name: a.name,
        content_type: a.content_type,
        content: a.content,
    }
}

/// A transcript message; `sent_at` is required.
pub(crate) fn transcript_from_pb(
    field: &str,
    m: pb::TranscriptMessage,
    v: &mut Violations,
) -> Option<TranscriptMessage> {
    let role = role_of_message_from_pb(m.role, &format!("{field}.role"), v);
    if role.is_none() && m.role == 0 {
        v.add(format!("{field}.role"), "is required");
    }
    let sent_at = match m.sent_at {
        Some(ts) => match DateTime::from_timestamp(ts.seconds, ts.nanos.max(0) as u32) {
            Some(at) => Some(at),
            None => {
                v.add(format!("{field}.sent_at"), "is not a valid time");
                None
            }
        },
        None => {
            v.add(format!("{field}.sent_at"), "is required");
            None
        }
    };
    Some(TranscriptMessage {
        id: m.id,
        role: role?,
        author: m.author,
        text: m.text,
        sent_at: sent_at?,
        attachments: m.attachments.into_iter().map(attachment_from_pb).collect(),
    })
}

pub(crate) fn leased_to_pb(leased: LeasedMessage) -> pb::OutboundMessage {
    let m = leased.message;
    let attachments = m
        .attachments
        .into_iter()
        .zip(leased.contents)
        .map(|(meta, content)| pb::Attachment {
            id: meta.id.to_string(),
            name: meta.name,
            content_type: meta.content_type,
            content,
            size_bytes: meta.size_bytes,
        })
        .collect();
    pb::OutboundMessage {
        message_id: m.id.to_string(),
        ticket_id: m.ticket_id.to_string(),
        ticket_number: m.ticket_number,
        conversation_id: m.conversation_id,
        channel: channel_to_pb(m.channel),
        recipient: m.recipient,
        subject: m.subject,
        body: m.body,
        attachments,
        attempt: leased.attempt,
        lease_expires_at: Some(timestamp(leased.lease_expires_at)),
        consumer_group: leased.consumer_group,
        lease_id: leased.lease_id.to_string(),
    }
}

fn metric_to_pb(metric: Metric) -> i32 {
    let value = match metric {
        Metric::FirstResponse => pb::SlaMetric::FirstResponse,
        Metric::NextResponse => pb::SlaMetric::NextResponse,
        Metric::Resolution => pb::SlaMetric::Resolution,
    };
    value as i32
}

fn clock_to_pb(view: ClockView) -> pb::SlaClock {
    let state = match view.state {
        ClockState::Running => pb::SlaClockState::Running,
        ClockState::Paused => pb::SlaClockState::Paused,
        ClockState::Met => pb::SlaClockState::Met,
        ClockState::Breached => pb::SlaClockState::Breached,
    };
    pb::SlaClock {
        metric: metric_to_pb(view.metric),
        target: Some(duration_from_seconds(view.target_seconds)),
        due_at: view.due_at.map(timestamp),
        state: state as i32,
        used: Some(duration_from_seconds(view.used_seconds)),
        remaining: Some(duration_from_seconds(view.remaining_seconds)),
        policy_id: optional_id(view.policy_id),
    }
}

/// A ticket with its SLA clocks as of now, measured on their calendars.
pub(crate) fn ticket_to_pb(readings: &SlaReadings, mut t: Ticket) -> pb::Ticket {
    let clocks = std::mem::take(&mut t.sla_clocks)
        .iter()
        .map(|c| clock_to_pb(readings.view(c)))
        .collect();
    let mut ticket = ticket_fields_to_pb(t);
    ticket.sla_clocks = clocks;
    ticket
}

fn ticket_fields_to_pb(t: Ticket) -> pb::Ticket {
    pb::Ticket {
        id: t.id.to_string(),
        number: t.number,
        etag: t.etag(),
        subject: t.subject,
        description: t.description,
        status: status_to_pb(t.status),
        priority: priority_to_pb(t.priority),
        r#type: type_to_pb(t.ticket_type),
        tags: t.tags,
        custom_fields: t.custom_fields.into_iter().collect(),
        contact: Some(pb::Contact {
            id: t.contact.id.to_string(),
            external_id: t.contact.external_id,
            name: t.contact.name,
            email: t.contact.email,
            phone: t.contact.phone,
            vip: Some(t.contact.vip),
        }),
        assignee_id: optional_id(t.assignee_id),
        queue_id: optional_id(t.queue_id),
        merged_into_id: optional_id(t.merged_into_id),
        created_at: Some(timestamp(t.created_at)),
        updated_at: Some(timestamp(t.updated_at)),
        time_spent: Some(duration_from_seconds(t.time_spent_seconds)),
        channel: t.channel.map_or(0, channel_to_pb),
        follow_up_of_id: optional_id(t.follow_up_of_id),
        tier: t.tier,
        required_skills: t.required_skills,
        sla_clocks: Vec::new(),
    }
}

pub(crate) fn contact_from_pb(contact: pb::Contact) -> ContactInput {
    ContactInput {
        external_id: contact.external_id.trim().to_owned(),
        name: contact.name.trim().to_owned(),
        email: contact.email.trim().to_owned(),
        phone: contact.phone.trim().to_owned(),
        vip: contact.vip,
        fill_only: false,
    }
}

pub(crate) fn api_key_to_pb(key: ApiKeyRecord) -> pb::ApiKey {
    pb::ApiKey {
        id: key.id.to_string(),
        name: key.name,
        role: role_to_pb(key.role),
        agent_id: optional_id(key.agent_id),
        channels: key.channels.into_iter().map(channel_to_pb).collect(),
        sources: key.sources,
        prefix: key.prefix,
        created_at: Some(timestamp(key.created_at)),
        revoked_at: key.revoked_at.map(timestamp),
    }
}

fn event_type_to_pb(kind: EventKind) -> pb::EventType {
    match kind {
        EventKind::TicketCreated => pb::EventType::TicketCreated,
        EventKind::TicketUpdated => pb::EventType::TicketUpdated,
        EventKind::StatusChanged => pb::EventType::StatusChanged,
        EventKind::Assigned => pb::EventType::Assigned,
        EventKind::ReplyAdded => pb::EventType::ReplyAdded,
        EventKind::NoteAdded => pb::EventType::NoteAdded,
        EventKind::TimeLogged => pb::EventType::TimeLogged,
        EventKind::TicketsMerged => pb::EventType::TicketsMerged,
        EventKind::ConversationEscalated => pb::EventType::ConversationEscalated,
        EventKind::TranscriptMessage => pb::EventType::TranscriptMessage,
        EventKind::CustomerMessage => pb::EventType::CustomerMessage,
        EventKind::DeliveryReceipt => pb::EventType::DeliveryReceipt,
        EventKind::TierEscalated => pb::EventType::TierEscalated,
        EventKind::SlaWarning => pb::EventType::SlaWarning,
        EventKind::SlaBreached => pb::EventType::SlaBreached,
    }
}

fn actor_kind_to_pb(kind: ActorKind) -> pb::ActorKind {
    match kind {
        ActorKind::Agent => pb::ActorKind::Agent,
        ActorKind::ApiKey => pb::ActorKind::ApiKey,
        ActorKind::System => pb::ActorKind::System,
        ActorKind::Customer => pb::ActorKind::Customer,
        ActorKind::Bot => pb::ActorKind::Bot,
    }
}

/// Text-valued enums stored in payloads; an unknown value shows as unspecified.
fn stored<T>(text: &str, parse: fn(&str) -> Option<T>, to_pb: fn(T) -> i32) -> i32 {
    parse(text).map(to_pb).unwrap_or(0)
}

fn attachments_to_pb(attachments: Vec<AttachmentMeta>) -> Vec<pb::Attachment> {
    attachments
        .into_iter()
        .map(|a| pb::Attachment {
            id: a.id.to_string(),
            name: a.name,
            content_type: a.content_type,
            content: Vec::new(),
            size_bytes: a.size_bytes,
        })
        .collect()
}

fn delivery_status_to_pb(text: &str) -> i32 {
    stored(text, DeliveryStatus::parse, |s| {
        let status = match s {
            DeliveryStatus::Queued => pb::DeliveryStatus::Queued,
            DeliveryStatus::Leased => pb::DeliveryStatus::Leased,
            DeliveryStatus::Delivered => pb::DeliveryStatus::Delivered,
            DeliveryStatus::Failed => pb::DeliveryStatus::Failed,
        };
        status as i32
    })
}

fn detail_to_pb(
    payload: EventPayload,
    delivery: Option<DeliveryView>,
) -> pb::activity_entry::Detail {
    use pb::activity_entry::Detail;
    match payload {
        EventPayload::Created {
            subject,
            priority,
            status,
            follow_up_of,
        } => Detail::Created(pb::TicketCreated {
            subject,
            priority: stored(&priority, Priority::parse, priority_to_pb),
            status: stored(&status, Status::parse, status_to_pb),
            follow_up_of_id: optional_id(follow_up_of),
        }),
        EventPayload::FieldsChanged { changes } => Detail::FieldsChanged(pb::FieldsChanged {
            changes: changes.into_iter().map(field_change_to_pb).collect(),
        }),
        EventPayload::Reply {
            body,
            channel,
            attachments,
            message_id,
        } => {
            let delivery = delivery.unwrap_or(DeliveryView {
                message_id: message_id.unwrap_or_default(),
                status: String::new(),
                provider_message_id: String::new(),
                error: String::new(),
            });
            Detail::Reply(pb::Reply {
                body,
                channel: stored(&channel, Channel::parse, channel_to_pb),
                attachments: attachments_to_pb(attachments),
                message_id: optional_id(message_id),
                delivery_status: delivery_status_to_pb(&delivery.status),
                provider_message_id: delivery.provider_message_id,
                delivery_error: delivery.error,
            })
        }
        EventPayload::Note { body } => Detail::Note(pb::Note { body }),
        EventPayload::TimeLogged {
            agent_id,
            seconds,
            note,
            total_seconds,
        } => Detail::TimeLogged(pb::TimeLogged {
            agent_id: optional_id(agent_id),
            duration: Some(duration_from_seconds(seconds)),
            note,
            total: Some(duration_from_seconds(total_seconds)),
        }),
        EventPayload::Merged {
            target_id,
            target_number,
            source_ids,
            source_numbers,
        } => Detail::Merged(pb::TicketsMerged {
            target_ticket_id: target_id.to_string(),
            target_ticket_number: target_number,
            source_ticket_ids: source_ids.iter().map(Uuid::to_string).collect(),
            source_ticket_numbers: source_numbers,
        }),
        EventPayload::Escalated {
            source,
            conversation_id,
            channel,
            reason,
            intent,
            summary,
            metadata,
            messages,
        } => Detail::Escalated(pb::ConversationEscalated {
            source,
            conversation_id,
            channel: stored(&channel, Channel::parse, channel_to_pb),
            reason,
            intent,
            summary,
            metadata: metadata.into_iter().collect(),
            messages,
        }),
        EventPayload::Transcript {
            role,
            author,
            text,
            sent_at,
            attachments,
        } => Detail::TranscriptMessage(pb::TranscriptMessage {
            id: String::new(),
            role: stored(&role, MessageRole::parse, role_of_message_to_pb),
            author,
            text,
            sent_at: Some(timestamp(sent_at)),
            attachments: attachments_to_pb(attachments),
        }),
        EventPayload::CustomerMessage {
            channel,
            sender,
            text,
            external_message_id,
            attachments,
        } => Detail::CustomerMessage(pb::CustomerMessage {
            channel: stored(&channel, Channel::parse, channel_to_pb),
            sender,
            text,
            external_message_id,
            attachments: attachments_to_pb(attachments),
        }),
        EventPayload::Routed {
            queue_id,
            strategy,
            assignee_id,
            reason,
            considered,
            rule,
        } => Detail::Routed(pb::Routed {
            queue_id: optional_id(queue_id),
            strategy,
            assignee_id: optional_id(assignee_id),
            reason,
            candidates: considered
                .into_iter()
                .map(|c| pb::RoutingCandidate {
                    agent_id: c.agent_id.to_string(),
                    name: c.name,
                    load: c.load,
                    capacity: c.capacity,
                    excluded_because: c.excluded_because,
                })
                .collect(),
            rule: rule.unwrap_or_default(),
        }),
        EventPayload::Sla {
            metric,
            target_seconds,
            due_at,
        } => Detail::SlaAlert(pb::SlaAlert {
            metric: stored(&metric, Metric::parse, metric_to_pb),
            target: Some(duration_from_seconds(target_seconds)),
            due_at: due_at.map(timestamp),
        }),
        EventPayload::TierEscalated {
            from_tier,
            to_tier,
            queue_id,
            reason,
        } => Detail::TierEscalated(pb::TierEscalated {
            from_tier,
            to_tier,
            queue_id: queue_id.to_string(),
            reason,
        }),
        EventPayload::DeliveryReceipt {
            message_id,
            consumer_group,
            outcome,
            provider_message_id,
            error,
            attempts,
        } => Detail::DeliveryReceipt(pb::DeliveryReceipt {
            message_id: message_id.to_string(),
            consumer_group,
            status: delivery_status_to_pb(&outcome),
            provider_message_id,
            error,
            attempts,
        }),
    }
}

pub(crate) fn event_to_pb(e: Event) -> pb::ActivityEntry {
    let event = e.event;
    pb::ActivityEntry {
        id: event.id.to_string(),
        cursor: e.cursor,
        ticket_id: event.ticket_id.to_string(),
        ticket_number: event.ticket_number,
        r#type: event_type_to_pb(event.kind) as i32,
        actor: Some(actor_to_pb(event.actor)),
        visibility: match event.visibility {
            Visibility::Public => pb::Visibility::Public,
            Visibility::Internal => pb::Visibility::Internal,
        } as i32,
        created_at: Some(timestamp(event.created_at)),
        detail: Some(detail_to_pb(event.payload, e.delivery)),
    }
}

/// A repeated enum field; unspecified values are rejected along with unknown ones.
pub(crate) fn enum_list<T>(
    values: &[i32],
    field: &str,
    v: &mut Violations,
    parse: fn(i32, &str, &mut Violations) -> Option<T>,
) -> Vec<T> {
    values
        .iter()
        .enumerate()
        .filter_map(|(i, value)| {
            let field = format!("{field}[{i}]");
            let parsed = parse(*value, &field, v);
            if parsed.is_none() && *value == 0 {
                v.add(field, "must not be unspecified");
            }
            parsed
        })
        .collect()
}

pub(crate) fn audit_entry_to_pb(entry: AuditEntry) -> pb::AuditEntry {
    pb::AuditEntry {
        id: entry.id.to_string(),
        actor: Some(actor_to_pb(entry.actor)),
        action: entry.action.as_str().to_owned(),
        resource: entry.resource.as_str().to_owned(),
        resource_id: entry.resource_id.to_string(),
        changes: entry.changes.into_iter().map(field_change_to_pb).collect(),
        created_at: Some(timestamp(entry.created_at)),
    }
}

fn actor_to_pb(actor: Actor) -> pb::Actor {
    pb::Actor {
        kind: actor_kind_to_pb(actor.kind) as i32,
        id: optional_id(actor.id),
        name: actor.name,
    }
}

fn field_change_to_pb(change: FieldChange) -> pb::FieldChange {
    pb::FieldChange {
        field: change.field,
        old_value: change.old,
        new_value: change.new,
    }
}

/// A required UUID field.
pub(crate) fn uuid(field: &str, value: &str, v: &mut Violations) -> Option<Uuid> {
    if value.is_empty() {
        v.add(field, "is required");
        None
    } else {
        crate::domain::validation::parse_uuid(v, field, value)
    }
}

/// A request whose only required field is a UUID: the UUID, or INVALID_ARGUMENT naming
/// the field.
pub(crate) fn required_uuid(field: &str, value: &str) -> Result<Uuid, tonic::Status> {
    let mut v = Violations::new();
    let id = uuid(field, value, &mut v);
    v.finish().map_err(crate::service::ServiceError::Invalid)?;
    id.ok_or_else(|| tonic::Status::invalid_argument(format!("{field} is required")))
}

/// An optional UUID field: empty means none.
pub(crate) fn optional_uuid(field: &str, value: &str, v: &mut Violations) -> Option<Uuid> {
    parse_optional_uuid(v, field, value)
}

#[cfg(test)]
mod fuzz {
    //! Random and truncated protobuf bytes and hostile strings through decoding, conversion,
    //! validation and filter parsing: errors are fine, panics are not.

    use proptest::prelude::*;
    use prost::Message;

    use super::*;
    use crate::domain::conversation::ConversationInput;
    use crate::domain::filter::TicketFilter;
    use crate::domain::ticket::{normalize_tags, validate_custom_fields};
    use crate::domain::watch::parse_watch_filter;

    fn hostile() -> impl Strategy<Value = String> {
        prop_oneof![
            ".{0,300}",
            Just("'; DROP TABLE tickets; --".to_owned()),
            Just("\u{0}\u{202e}\u{fffd}".repeat(50)),
            Just("(".repeat(5000)),
            Just("status = OPEN AND ".repeat(200)),
            Just("x".repeat(70_000)),
        ]
    }

    fn check_ticket_request(r: pb::CreateTicketRequest) {
        let mut v = Violations::new();
        let _ = priority_from_pb(r.priority, "priority", &mut v);
        let _ = type_from_pb(r.r#type, "type", &mut v);
        let _ = optional_uuid("assignee_id", &r.assignee_id, &mut v);
        if let Some(contact) = r.contact.map(contact_from_pb) {
            contact.validate("contact", &mut v);
        }
        let _ = normalize_tags("tags", &r.tags, &mut v);
        validate_custom_fields(
            "custom_fields",
            &r.custom_fields.into_iter().collect(),
            &mut v,
        );
        v.line("subject", &r.subject, true, 250);
    }

    fn check_escalation(r: pb::EscalateConversationRequest) {
        let mut v = Violations::new();
        let c = r.conversation.unwrap_or_default();
        let transcript = c
            .transcript
            .into_iter()
            .enumerate()
            .filter_map(|(i, m)| transcript_from_pb(&format!("t[{i}]"), m, &mut v))
            .collect();
        let input = ConversationInput {
            source: c.source,
            external_id: c.conversation_id,
            channel: channel_from_pb(c.channel, "channel", &mut v),
            transcript,
            summary: c.summary,
            intent: c.intent,
            metadata: c.metadata.into_iter().collect(),
        };
        input.validate("conversation", &mut v);
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            if let Ok(r) = pb::CreateTicketRequest::decode(bytes.as_slice()) {
                check_ticket_request(r);
            }
            if let Ok(r) = pb::EscalateConversationRequest::decode(bytes.as_slice()) {
                check_escalation(r);
            }
            let _ = pb::UpdateTicketRequest::decode(bytes.as_slice());
            let _ = pb::ListTicketsRequest::decode(bytes.as_slice());
        }

        #[test]
        fn truncated_messages_never_panic(subject in hostile(), cut in 0usize..400) {
            let request = pb::CreateTicketRequest {
                subject: subject.clone(),
                contact: Some(pb::Contact { external_id: subject.clone(), email: subject.clone(), ..Default::default() }),
                tags: vec![subject.clone()],
                ..Default::default()
            };
            let bytes = request.encode_to_vec();
            let end = cut.min(bytes.len());
            if let Ok(r) = pb::CreateTicketRequest::decode(&bytes[..end]) {
                check_ticket_request(r);
            }
            check_ticket_request(request);
        }

        #[test]
        fn hostile_filters_never_panic(text in hostile()) {
            let _ = TicketFilter::parse_text(&text);
            let _ = parse_watch_filter(&text);
        }
    }
}
