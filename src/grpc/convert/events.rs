//! Feed entries (events with their details) and audit entries.

use uuid::Uuid;

use super::*;
use crate::grpc::pb;

pub(crate) fn actor_kind_to_pb(kind: ActorKind) -> pb::ActorKind {
    match kind {
        ActorKind::Agent => pb::ActorKind::Agent,
        ActorKind::ApiKey => pb::ActorKind::ApiKey,
        ActorKind::System => pb::ActorKind::System,
        ActorKind::Customer => pb::ActorKind::Customer,
        ActorKind::Bot => pb::ActorKind::Bot,
        ActorKind::Workflow => pb::ActorKind::Workflow,
    }
}

pub(crate) fn attachments_to_pb(attachments: Vec<AttachmentMeta>) -> Vec<pb::Attachment> {
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

pub(crate) fn delivery_status_to_pb(text: &str) -> i32 {
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

pub(crate) fn detail_to_pb(
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
        EventPayload::SatisfactionRated { score, comment } => {
            Detail::SatisfactionRated(pb::SatisfactionRated { score, comment })
        }
        EventPayload::WorkflowApplied {
            workflow_id,
            workflow_name,
            trigger,
            actions,
            stopped,
        } => Detail::WorkflowApplied(pb::WorkflowApplied {
            workflow_id: workflow_id.to_string(),
            workflow_name,
            trigger,
            actions,
            stopped,
        }),
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
            email,
        } => {
            let email = email.unwrap_or_else(|| crate::domain::event::EmailFacts {
                subject: String::new(),
                threaded_by: String::new(),
                full_text: String::new(),
            });
            Detail::CustomerMessage(pb::CustomerMessage {
                channel: stored(&channel, Channel::parse, channel_to_pb),
                sender,
                text,
                external_message_id,
                attachments: attachments_to_pb(attachments),
                email_subject: email.subject,
                threaded_by: threaded_by_to_pb(&email.threaded_by),
                full_text: email.full_text,
            })
        }
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
        EventPayload::Notification {
            reason,
            recipients,
            text,
        } => Detail::Notification(pb::Notification {
            reason,
            recipient_ids: recipients.iter().map(Uuid::to_string).collect(),
            text,
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
        r#type: event_type_to_pb(event.kind),
        actor: Some(actor_to_pb(event.actor)),
        visibility: match event.visibility {
            Visibility::Public => pb::Visibility::Public,
            Visibility::Internal => pb::Visibility::Internal,
        } as i32,
        created_at: Some(timestamp(event.created_at)),
        detail: Some(detail_to_pb(event.payload, e.delivery)),
    }
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

pub(crate) fn actor_to_pb(actor: Actor) -> pb::Actor {
    pb::Actor {
        kind: actor_kind_to_pb(actor.kind) as i32,
        id: optional_id(actor.id),
        name: actor.name,
    }
}

pub(crate) fn field_change_to_pb(change: FieldChange) -> pb::FieldChange {
    pb::FieldChange {
        field: change.field,
        old_value: change.old,
        new_value: change.new,
    }
}

/// The stored name of an email threading rule as its protobuf enum; unspecified for
/// messages that did not come by email.
pub(crate) fn threaded_by_to_pb(rule: &str) -> i32 {
    use crate::domain::inbound_email::ThreadedBy;
    let rule = match ThreadedBy::parse(rule) {
        Some(ThreadedBy::MessageId) => pb::ThreadedBy::MessageId,
        Some(ThreadedBy::ReplyToken) => pb::ThreadedBy::ReplyToken,
        Some(ThreadedBy::SubjectNumber) => pb::ThreadedBy::SubjectNumber,
        Some(ThreadedBy::NewTicket) => pb::ThreadedBy::NewTicket,
        None => pb::ThreadedBy::Unspecified,
    };
    rule as i32
}
