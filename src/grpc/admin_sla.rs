//! The SLA part of `AdminService`: calendars and policies. The trait methods in
//! `admin_service.rs` delegate here.

use std::collections::BTreeSet;

use chrono::NaiveDate;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::auth::{ADMIN, authorize};
use super::convert::{
    self, channel_to_pb, duration_from_seconds, optional_id, positive_seconds, priority_to_pb,
    type_to_pb,
};
use super::pb;
use crate::domain::calendar::BusinessCalendar;
use crate::domain::sla::{PolicyConditions, SlaPolicy, Targets, Warning};
use crate::domain::validation::{Violations, parse_uuid};
use crate::service::sla::CalendarPatch;
use crate::service::{ServiceError, Services};

type Reply<T> = Result<Response<T>, Status>;

fn calendar_to_pb(cal: BusinessCalendar) -> pb::Calendar {
    let weekly = cal.weekly_text();
    pb::Calendar {
        id: cal.id.to_string(),
        name: cal.name,
        time_zone: cal.time_zone.name().to_owned(),
        weekly: weekly
            .into_iter()
            .map(|(day, intervals)| pb::DayHours {
                day,
                intervals: intervals
                    .into_iter()
                    .map(|(start, end)| pb::TimeInterval { start, end })
                    .collect(),
            })
            .collect(),
        holidays: cal.holidays.iter().map(|d| d.to_string()).collect(),
        yearly_holidays: cal
            .yearly_holidays
            .iter()
            .map(|(m, d)| format!("{m:02}-{d:02}"))
            .collect(),
        etag: cal.version.to_string(),
    }
}

/// The fields of a calendar as a client sent them; the service checks them as a whole.
fn calendar_patch(c: pb::Calendar) -> Result<CalendarPatch, Status> {
    let mut v = Violations::new();
    let holidays: BTreeSet<NaiveDate> = c
        .holidays
        .iter()
        .enumerate()
        .filter_map(|(i, d)| match d.parse() {
            Ok(date) => Some(date),
            Err(_) => {
                v.add(
                    format!("calendar.holidays[{i}]"),
                    "must be a date like 2026-12-25",
                );
                None
            }
        })
        .collect();
    let yearly: BTreeSet<(u32, u32)> = c
        .yearly_holidays
        .iter()
        .enumerate()
        .filter_map(|(i, md)| {
            let parsed = md
                .split_once('-')
                .and_then(|(m, d)| Some((m.parse::<u32>().ok()?, d.parse::<u32>().ok()?)))
                .filter(|(m, d)| NaiveDate::from_ymd_opt(2024, *m, *d).is_some());
            if parsed.is_none() {
                v.add(
                    format!("calendar.yearly_holidays[{i}]"),
                    "must be a date like 12-25",
                );
            }
            parsed
        })
        .collect();
    v.finish().map_err(ServiceError::Invalid)?;
    let weekly: Vec<(String, Vec<(String, String)>)> = c
        .weekly
        .into_iter()
        .map(|d| {
            (
                d.day,
                d.intervals.into_iter().map(|i| (i.start, i.end)).collect(),
            )
        })
        .collect();
    Ok(CalendarPatch {
        name: c.name,
        time_zone: c.time_zone,
        weekly,
        holidays,
        yearly_holidays: yearly,
    })
}

fn policy_to_pb(p: SlaPolicy) -> pb::SlaPolicy {
    let c = p.conditions;
    let warning = match p.warning {
        Warning::Percent { percent } => pb::sla_policy::Warning::WarningPercent(percent as i32),
        Warning::Lead { seconds } => {
            pb::sla_policy::Warning::WarningLead(duration_from_seconds(seconds))
        }
    };
    pb::SlaPolicy {
        id: p.id.to_string(),
        name: p.name,
        position: p.position,
        conditions: Some(pb::SlaConditions {
            priorities: c.priorities.into_iter().map(priority_to_pb).collect(),
            queue_ids: c.queue_ids.iter().map(Uuid::to_string).collect(),
            types: c.types.into_iter().map(type_to_pb).collect(),
            channels: c.channels.into_iter().map(channel_to_pb).collect(),
            contact_vip: c.contact_vip,
        }),
        first_response: p.targets.first_response.map(duration_from_seconds),
        next_response: p.targets.next_response.map(duration_from_seconds),
        resolution: p.targets.resolution.map(duration_from_seconds),
        calendar_id: optional_id(p.calendar_id),
        warning: Some(warning),
        etag: p.version.to_string(),
    }
}

fn policy_from_pb(p: pb::SlaPolicy, id: Uuid) -> Result<SlaPolicy, Status> {
    let mut v = Violations::new();
    let c = p.conditions.unwrap_or_default();
    let conditions = PolicyConditions {
        priorities: convert::enum_list(
            &c.priorities,
            "policy.conditions.priorities",
            &mut v,
            convert::priority_from_pb,
        ),
        queue_ids: c
            .queue_ids
            .iter()
            .enumerate()
            .filter_map(|(i, q)| {
                parse_uuid(&mut v, &format!("policy.conditions.queue_ids[{i}]"), q)
            })
            .collect(),
        types: convert::enum_list(
            &c.types,
            "policy.conditions.types",
            &mut v,
            convert::type_from_pb,
        ),
        channels: convert::enum_list(
            &c.channels,
            "policy.conditions.channels",
            &mut v,
            convert::channel_from_pb,
        ),
        contact_vip: c.contact_vip,
    };
    let targets = Targets {
        first_response: positive_seconds("policy.first_response", p.first_response, &mut v),
        next_response: positive_seconds("policy.next_response", p.next_response, &mut v),
        resolution: positive_seconds("policy.resolution", p.resolution, &mut v),
    };
    let warning = match p.warning {
        Some(pb::sla_policy::Warning::WarningPercent(percent)) => Warning::Percent {
            percent: i64::from(percent),
        },
        Some(pb::sla_policy::Warning::WarningLead(lead)) => Warning::Lead {
            seconds: positive_seconds("policy.warning_lead", Some(lead), &mut v).unwrap_or(0),
        },
        None => Warning::default(),
    };
    let calendar_id = if p.calendar_id.is_empty() {
        None
    } else {
        parse_uuid(&mut v, "policy.calendar_id", &p.calendar_id)
    };
    v.finish().map_err(ServiceError::Invalid)?;
    // Stamped by the service as it saves.
    let at = chrono::DateTime::UNIX_EPOCH;
    Ok(SlaPolicy {
        id,
        name: p.name.trim().to_owned(),
        position: p.position,
        conditions,
        targets,
        calendar_id,
        warning,
        version: 0,
        created_at: at,
        updated_at: at,
    })
}

pub(super) async fn create_calendar(
    s: &Services,
    r: Request<pb::CreateCalendarRequest>,
) -> Reply<pb::CreateCalendarResponse> {
    let principal = authorize(&r, "CreateCalendar", ADMIN).await?;
    let patch = calendar_patch(r.into_inner().calendar.unwrap_or_default())?;
    let cal = s.sla.create_calendar(&principal.actor(), patch).await?;
    Ok(Response::new(pb::CreateCalendarResponse {
        calendar: Some(calendar_to_pb(cal)),
    }))
}

pub(super) async fn update_calendar(
    s: &Services,
    r: Request<pb::UpdateCalendarRequest>,
) -> Reply<pb::UpdateCalendarResponse> {
    let principal = authorize(&r, "UpdateCalendar", ADMIN).await?;
    let r = r.into_inner();
    let c = r.calendar.unwrap_or_default();
    let id = convert::required_uuid("calendar.id", &c.id)?;
    let patch = calendar_patch(c)?;
    let (mask, etag) = (convert::mask_paths(r.update_mask), convert::etag(r.etag));
    let cal = s
        .sla
        .update_calendar(&principal.actor(), id, patch, mask, etag)
        .await?;
    Ok(Response::new(pb::UpdateCalendarResponse {
        calendar: Some(calendar_to_pb(cal)),
    }))
}

pub(super) async fn list_calendars(
    s: &Services,
    r: Request<pb::ListCalendarsRequest>,
) -> Reply<pb::ListCalendarsResponse> {
    authorize(&r, "ListCalendars", ADMIN).await?;
    let calendars = s.sla.calendars().await?;
    Ok(Response::new(pb::ListCalendarsResponse {
        calendars: calendars.into_iter().map(calendar_to_pb).collect(),
    }))
}

pub(super) async fn delete_calendar(
    s: &Services,
    r: Request<pb::DeleteCalendarRequest>,
) -> Reply<pb::DeleteCalendarResponse> {
    let principal = authorize(&r, "DeleteCalendar", ADMIN).await?;
    let id = convert::required_uuid("id", &r.into_inner().id)?;
    s.sla.delete_calendar(&principal.actor(), id).await?;
    Ok(Response::new(pb::DeleteCalendarResponse {}))
}

pub(super) async fn create_policy(
    s: &Services,
    r: Request<pb::CreateSlaPolicyRequest>,
) -> Reply<pb::CreateSlaPolicyResponse> {
    let principal = authorize(&r, "CreateSlaPolicy", ADMIN).await?;
    let policy = policy_from_pb(r.into_inner().policy.unwrap_or_default(), Uuid::nil())?;
    let policy = s.sla.create_policy(&principal.actor(), policy).await?;
    Ok(Response::new(pb::CreateSlaPolicyResponse {
        policy: Some(policy_to_pb(policy)),
    }))
}

pub(super) async fn update_policy(
    s: &Services,
    r: Request<pb::UpdateSlaPolicyRequest>,
) -> Reply<pb::UpdateSlaPolicyResponse> {
    let principal = authorize(&r, "UpdateSlaPolicy", ADMIN).await?;
    let r = r.into_inner();
    let p = r.policy.unwrap_or_default();
    let id = convert::required_uuid("policy.id", &p.id)?;
    let patch = policy_from_pb(p, id)?;
    let (mask, etag) = (convert::mask_paths(r.update_mask), convert::etag(r.etag));
    let policy = s
        .sla
        .update_policy(&principal.actor(), id, patch, mask, etag)
        .await?;
    Ok(Response::new(pb::UpdateSlaPolicyResponse {
        policy: Some(policy_to_pb(policy)),
    }))
}

pub(super) async fn list_policies(
    s: &Services,
    r: Request<pb::ListSlaPoliciesRequest>,
) -> Reply<pb::ListSlaPoliciesResponse> {
    authorize(&r, "ListSlaPolicies", ADMIN).await?;
    let policies = s.sla.policies().await?;
    Ok(Response::new(pb::ListSlaPoliciesResponse {
        policies: policies.into_iter().map(policy_to_pb).collect(),
    }))
}

pub(super) async fn delete_policy(
    s: &Services,
    r: Request<pb::DeleteSlaPolicyRequest>,
) -> Reply<pb::DeleteSlaPolicyResponse> {
    let principal = authorize(&r, "DeleteSlaPolicy", ADMIN).await?;
    let id = convert::required_uuid("id", &r.into_inner().id)?;
    s.sla.delete_policy(&principal.actor(), id).await?;
    Ok(Response::new(pb::DeleteSlaPolicyResponse {}))
}
