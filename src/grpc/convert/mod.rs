//! Conversions between protobuf messages and domain / service types.
//!
//! Wire-level checks live here (enum numbers, UUID syntax, durations); business rules
//! (lengths, limits, transitions) are the service's. Shared helpers and enum mappings live
//! here; the conversions of each resource in a module of their own.

mod automation;
mod bridge;
mod events;
mod keys;
mod routing;
mod tickets;

pub(crate) use automation::*;
pub(crate) use bridge::*;
pub(crate) use events::*;
pub(crate) use keys::*;
pub(crate) use routing::*;
pub(crate) use tickets::*;

use chrono::{DateTime, Utc};
use prost_types::{Duration as PbDuration, Timestamp};
use uuid::Uuid;

use super::pb;
use crate::domain::audit::AuditEntry;
use crate::domain::auth::ApiKey as ApiKeyRecord;
use crate::domain::auth::Role;
use crate::domain::auto_response::AutoResponseKind;
use crate::domain::conversation::{AttachmentInput, MessageRole, TranscriptMessage};
use crate::domain::delivery::{DeliveryOutcome, DeliveryStatus, LeasedMessage, OutboundKind};
use crate::domain::event::{
    Actor, ActorKind, AttachmentMeta, DeliveryView, Event, EventKind, EventPayload, FieldChange,
    Visibility,
};
use crate::domain::hook::HookAction;
use crate::domain::sla::ClockView;
use crate::domain::sla::{ClockState, Metric};
use crate::domain::ticket::{Channel, ContactInput, Priority, Status, Ticket, TicketType};
use crate::domain::validation::{Violations, parse_optional_uuid};
use crate::domain::webhook::WebhookState;
use crate::domain::workflow::{TimerKind, WorkflowEvent};
use crate::service::sla::SlaReadings;
use crate::service::watch::ConversationUpdateView;

pub(crate) fn timestamp(at: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: at.timestamp(),
        nanos: at.timestamp_subsec_nanos() as i32,
    }
}

/// A time a caller sent, within what a `Timestamp` may hold (years 1 to 9999, nanos in
/// `0..1e9`), so that every answer that repeats it can encode it (REST's RFC 3339 too).
pub(crate) fn time_from_pb(
    field: &str,
    at: Timestamp,
    v: &mut Violations,
) -> Option<DateTime<Utc>> {
    let time = u32::try_from(at.nanos)
        .ok()
        .filter(|nanos| *nanos < 1_000_000_000)
        .and_then(|nanos| DateTime::from_timestamp(at.seconds, nanos))
        .filter(|time| (1..=9999).contains(&chrono::Datelike::year(time)));
    if time.is_none() {
        v.add(
            field,
            "is not a valid time (years 1 to 9999, nanos 0 to 999,999,999)",
        );
    }
    time
}

pub(crate) fn duration_from_seconds(seconds: i64) -> PbDuration {
    PbDuration { seconds, nanos: 0 }
}

/// A duration field in whole seconds, above zero; `None` when unset.
pub(crate) fn positive_seconds(
    field: &str,
    d: Option<PbDuration>,
    v: &mut Violations,
) -> Option<i64> {
    let d = d?;
    if d.nanos != 0 || d.seconds <= 0 {
        v.add(field, "must be a positive whole number of seconds");
        return None;
    }
    Some(d.seconds)
}

/// The paths of a request's `update_mask`; none when it is unset.
pub(crate) fn mask_paths(mask: Option<prost_types::FieldMask>) -> Vec<String> {
    mask.map(|m| m.paths).unwrap_or_default()
}

/// A request's `etag`; `None` when empty (the update applies whatever the version).
pub(crate) fn etag(etag: String) -> Option<String> {
    (!etag.is_empty()).then_some(etag)
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

enum_mapping!(workflow_event_to_pb, workflow_event_from_pb, WorkflowEvent, pb::WorkflowEvent, "WorkflowEvent", {
    TicketCreated <=> TicketCreated, StatusChanged <=> StatusChanged,
    PriorityChanged <=> PriorityChanged, Assigned <=> Assigned, TagsChanged <=> TagsChanged,
    CustomerMessage <=> CustomerMessage, AgentReply <=> AgentReply, NoteAdded <=> NoteAdded,
    SlaWarning <=> SlaWarning, SlaBreached <=> SlaBreached,
    ConversationEscalated <=> ConversationEscalated,
});
enum_mapping!(timer_kind_to_pb, timer_kind_from_pb, TimerKind, pb::WorkflowTimerKind, "WorkflowTimerKind", {
    NoAgentReply <=> NoAgentReply, InStatus <=> InStatus, SinceCreated <=> SinceCreated,
});

enum_mapping!(auto_response_kind_to_pb, auto_response_kind_from_pb, AutoResponseKind, pb::AutoResponseKind, "AutoResponseKind", {
    Acknowledgement <=> Acknowledgement, AfterHours <=> AfterHours,
    ResolutionConfirmation <=> ResolutionConfirmation,
});

enum_mapping!(event_type_to_pb, event_type_from_pb, EventKind, pb::EventType, "EventType", {
    TicketCreated <=> TicketCreated, TicketUpdated <=> TicketUpdated,
    StatusChanged <=> StatusChanged, Assigned <=> Assigned, ReplyAdded <=> ReplyAdded,
    NoteAdded <=> NoteAdded, TimeLogged <=> TimeLogged, TicketsMerged <=> TicketsMerged,
    ConversationEscalated <=> ConversationEscalated, TranscriptMessage <=> TranscriptMessage,
    CustomerMessage <=> CustomerMessage, DeliveryReceipt <=> DeliveryReceipt,
    TierEscalated <=> TierEscalated, SlaWarning <=> SlaWarning, SlaBreached <=> SlaBreached,
    Notification <=> Notification, WorkflowApplied <=> WorkflowApplied,
    SatisfactionRated <=> SatisfactionRated,
});

enum_mapping!(hook_action_to_pb, hook_action_from_pb, HookAction, pb::InboundHookAction, "InboundHookAction", {
    CreateTicket <=> CreateTicket, PostCustomerMessage <=> PostCustomerMessage,
});

enum_mapping!(webhook_state_to_pb, webhook_state_from_pb, WebhookState, pb::WebhookState, "WebhookState", {
    Healthy <=> Healthy, Failing <=> Failing, Disabled <=> Disabled,
});

/// Text-valued enums stored in payloads; an unknown value shows as unspecified.
pub(crate) fn stored<T>(text: &str, parse: fn(&str) -> Option<T>, to_pb: fn(T) -> i32) -> i32 {
    parse(text).map(to_pb).unwrap_or(0)
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
    id.ok_or_else(|| crate::service::ServiceError::invalid(field, "is required").into())
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
