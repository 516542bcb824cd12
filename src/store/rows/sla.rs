//! Rows of SLA configuration and state: calendars, policies, and each ticket's clocks.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::types::Json;
use uuid::Uuid;

use super::parse_text;
use crate::domain::calendar::BusinessCalendar;
use crate::domain::sla::{Clock, Metric, PolicyConditions, SlaPolicy, Targets, Warning};
use crate::store::{StoreError, StoreResult};

#[derive(sqlx::FromRow)]
pub(in crate::store) struct CalendarRow {
    pub(in crate::store) id: Uuid,
    pub(in crate::store) name: String,
    pub(in crate::store) time_zone: String,
    pub(in crate::store) weekly: Json<BTreeMap<String, Vec<(String, String)>>>,
    pub(in crate::store) holidays: Json<Vec<NaiveDate>>,
    /// `MM-DD`.
    pub(in crate::store) yearly_holidays: Json<Vec<String>>,
    pub(in crate::store) version: i64,
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
pub(in crate::store) struct PolicyRow {
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
pub(in crate::store) struct ClockRow {
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
