//! Tickets, their contacts and their SLA clocks.

use super::*;
use crate::grpc::pb;

pub(crate) fn metric_to_pb(metric: Metric) -> i32 {
    let value = match metric {
        Metric::FirstResponse => pb::SlaMetric::FirstResponse,
        Metric::NextResponse => pb::SlaMetric::NextResponse,
        Metric::Resolution => pb::SlaMetric::Resolution,
    };
    value as i32
}

pub(crate) fn clock_to_pb(view: ClockView) -> pb::SlaClock {
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
/// Keeps `id` and the fields `paths` names (AIP-157 read masks); every field when `paths`
/// is empty. The paths were checked against `domain::view::TICKET_COLUMNS`.
pub(crate) fn mask_ticket(t: pb::Ticket, paths: &[String]) -> pb::Ticket {
    if paths.is_empty() {
        return t;
    }
    let mut out = pb::Ticket {
        id: t.id,
        ..Default::default()
    };
    macro_rules! keep {
        ($($field:ident = $path:literal),* $(,)?) => {
            $(if paths.iter().any(|p| p == $path) {
                out.$field = t.$field;
            })*
        };
    }
    keep!(
        number = "number",
        subject = "subject",
        description = "description",
        status = "status",
        priority = "priority",
        r#type = "type",
        tags = "tags",
        custom_fields = "custom_fields",
        contact = "contact",
        assignee_id = "assignee_id",
        queue_id = "queue_id",
        etag = "etag",
        merged_into_id = "merged_into_id",
        created_at = "created_at",
        updated_at = "updated_at",
        time_spent = "time_spent",
        channel = "channel",
        follow_up_of_id = "follow_up_of_id",
        tier = "tier",
        required_skills = "required_skills",
        sla_clocks = "sla_clocks",
        satisfaction = "satisfaction",
    );
    out
}

pub(crate) fn ticket_to_pb(readings: &SlaReadings, mut t: Ticket) -> pb::Ticket {
    let clocks = std::mem::take(&mut t.sla_clocks)
        .iter()
        .map(|c| clock_to_pb(readings.view(c)))
        .collect();
    let mut ticket = ticket_fields_to_pb(t);
    ticket.sla_clocks = clocks;
    ticket
}

pub(crate) fn ticket_fields_to_pb(t: Ticket) -> pb::Ticket {
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
            ..Default::default()
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
        satisfaction: t.satisfaction.map(|r| pb::Satisfaction {
            score: r.score,
            comment: r.comment,
            rated_at: Some(timestamp(r.rated_at)),
        }),
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
