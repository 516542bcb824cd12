//! The conversation bridge: transcripts, attachments and outbound deliveries.

use super::*;
use crate::grpc::pb;

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
        Some(ts) => time_from_pb(&format!("{field}.sent_at"), ts, v),
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

pub(crate) fn leased_to_pb(leased: LeasedMessage) -> pb::SubscribeChannelResponse {
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
    let kind = match m.kind {
        OutboundKind::Reply => pb::OutboundKind::Reply,
        OutboundKind::AutoResponse => pb::OutboundKind::AutoResponse,
        OutboundKind::Notification => pb::OutboundKind::Notification,
    };
    let email = leased.email.map(|e| pb::EmailHeaders {
        message_id: e.message_id,
        in_reply_to: e.in_reply_to,
        references: e.references,
        reply_to: e.reply_to,
    });
    let message = pb::OutboundMessage {
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
        kind: kind as i32,
        source: m.source,
        email,
    };
    pb::SubscribeChannelResponse {
        message: Some(message),
    }
}

pub(crate) fn conversation_update_to_pb(view: ConversationUpdateView) -> pb::ConversationUpdate {
    use crate::domain::conversation_update::UpdateKind;
    use pb::ConversationUpdateKind as Kind;
    let u = view.update;
    let kind = match u.kind {
        UpdateKind::TicketOpened => Kind::TicketOpened,
        UpdateKind::AgentAssigned => Kind::AgentAssigned,
        UpdateKind::StatusChanged => Kind::StatusChanged,
        UpdateKind::AgentReplied => Kind::AgentReplied,
        UpdateKind::WaitingForCustomer => Kind::WaitingForCustomer,
        UpdateKind::Resolved => Kind::Resolved,
        UpdateKind::Closed => Kind::Closed,
        UpdateKind::Merged => Kind::Merged,
        UpdateKind::FollowUpOpened => Kind::FollowUpOpened,
        UpdateKind::TierEscalated => Kind::TierEscalated,
    };
    let (merged_into_ticket_id, merged_into_ticket_number) = u
        .merged_into
        .map(|(id, number)| (id.to_string(), number))
        .unwrap_or_default();
    pb::ConversationUpdate {
        cursor: u.cursor,
        source: u.conversation.source,
        conversation_id: u.conversation.external_id,
        channel: channel_to_pb(u.conversation.channel),
        ticket_id: u.ticket_id.to_string(),
        ticket_number: u.ticket_number,
        kind: kind as i32,
        status: status_to_pb(u.status),
        agent_name: view.agent_name,
        body: u.body,
        occurred_at: Some(timestamp(u.occurred_at)),
        merged_into_ticket_id,
        merged_into_ticket_number,
    }
}
