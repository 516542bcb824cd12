//! Administration of SLA calendars and policies: created, updated under an etag with a
//! mask, deleted, each with an audit entry. Changing a calendar moves the due times of the
//! clocks that count on it.

use std::collections::BTreeSet;

use chrono::{NaiveDate, SubsecRound};
use uuid::Uuid;

use super::SlaService;
use crate::domain::audit::AuditEntry;
use crate::domain::calendar::BusinessCalendar;
use crate::domain::event::Actor;
use crate::domain::sla::{Plan, SlaPolicy};
use crate::domain::validation::Violations;
use crate::service::sla_timer::next_alert;
use crate::service::versioned::{Mask, copy_masked, update_versioned};
use crate::service::{ServiceError, ServiceResult};

/// The paths `UpdateCalendar` accepts in its `update_mask`.
pub const CALENDAR_PATHS: &[&str] = &["name", "time_zone", "weekly", "holidays", "yearly_holidays"];

/// The paths `UpdateSlaPolicy` accepts in its `update_mask`.
pub const POLICY_PATHS: &[&str] = &[
    "name",
    "position",
    "conditions",
    "first_response",
    "next_response",
    "resolution",
    "calendar_id",
    "warning",
    "warning_percent",
    "warning_lead",
];

/// A calendar's fields as a caller sends them: text, checked as a whole by
/// [`CalendarPatch::build`] once merged with what is kept.
#[derive(Debug, Clone, Default)]
pub struct CalendarPatch {
    pub name: String,
    pub time_zone: String,
    /// Weekday name and its `HH:MM` intervals.
    pub weekly: Vec<(String, Vec<(String, String)>)>,
    pub holidays: BTreeSet<NaiveDate>,
    pub yearly_holidays: BTreeSet<(u32, u32)>,
}

impl CalendarPatch {
    /// A saved calendar's fields, as a patch that changes nothing.
    fn of(cal: &BusinessCalendar) -> Self {
        CalendarPatch {
            name: cal.name.clone(),
            time_zone: cal.time_zone.name().to_owned(),
            weekly: cal.weekly_text(),
            holidays: cal.holidays.clone(),
            yearly_holidays: cal.yearly_holidays.clone(),
        }
    }

    fn build(&self, id: Uuid) -> ServiceResult<BusinessCalendar> {
        let mut v = Violations::new();
        v.line("calendar.name", &self.name, true, 200);
        v.finish()?;
        BusinessCalendar::parse(
            id,
            self.name.trim(),
            &self.time_zone,
            &self.weekly,
            self.holidays.clone(),
            self.yearly_holidays.clone(),
        )
        .map_err(|e| ServiceError::invalid("calendar", e.to_string()))
    }
}

impl SlaService {
    pub async fn calendars(&self) -> ServiceResult<Vec<BusinessCalendar>> {
        Ok(self.store.calendars().await?)
    }

    /// Creates a calendar from the caller's text.
    pub async fn create_calendar(
        &self,
        actor: &Actor,
        patch: CalendarPatch,
    ) -> ServiceResult<BusinessCalendar> {
        let cal = patch.build(Uuid::now_v7())?;
        self.save_calendar(actor, cal, None).await
    }

    /// Changes the fields `mask` names (all of them when it is empty), under the caller's
    /// etag if it sent one. The calendar is checked as a whole after the change.
    pub async fn update_calendar(
        &self,
        actor: &Actor,
        id: Uuid,
        patch: CalendarPatch,
        mask: Vec<String>,
        etag: Option<String>,
    ) -> ServiceResult<BusinessCalendar> {
        let mask = Mask::new(mask, CALENDAR_PATHS)?;
        let (mask, patch) = (&mask, &patch);
        update_versioned(
            &format!("calendar {id}"),
            etag.as_deref(),
            || self.calendar_from_store(id),
            |current| async move {
                let mut next = CalendarPatch::of(&current);
                copy_masked!(
                    mask,
                    next,
                    patch,
                    [name, time_zone, weekly, holidays, yearly_holidays]
                );
                let next = next.build(id)?;
                self.save_calendar(actor, next, Some(&current)).await
            },
        )
        .await
    }

    async fn calendar_from_store(&self, id: Uuid) -> ServiceResult<BusinessCalendar> {
        self.store
            .calendars()
            .await?
            .into_iter()
            .find(|c| c.id == id)
            .ok_or_else(|| ServiceError::NotFound(format!("calendar {id}")))
    }

    /// Saves a new calendar (`old` None) or a changed one if `old` is still the stored
    /// version (else [`ServiceError::Contended`]). Changing one keeps the business time its
    /// clocks used and moves their due times to the new hours.
    async fn save_calendar(
        &self,
        actor: &Actor,
        cal: BusinessCalendar,
        old: Option<&BusinessCalendar>,
    ) -> ServiceResult<BusinessCalendar> {
        let at = self.clock.now();
        let audit = AuditEntry::saved(actor.clone(), old, &cal, at);
        if audit.changes_nothing()
            && let Some(old) = old
        {
            return Ok(old.clone());
        }
        let expected = old.map(|o| o.version);
        let saved = self.store.save_calendar(&cal, expected, at, &audit).await?;
        self.calendars.invalidate();
        if !saved {
            return Err(ServiceError::Contended(format!(
                "calendar {} changed concurrently",
                cal.id
            )));
        }
        let cal = BusinessCalendar {
            version: expected.map_or(1, |v| v + 1),
            ..cal
        };
        if let Some(old) = old {
            let mut clocks = self.store.open_clocks_on_calendar(cal.id).await?;
            for clock in &mut clocks {
                let plan = Plan {
                    policy_id: clock.policy_id,
                    targets: Default::default(),
                    calendar_id: clock.calendar_id,
                    warning: clock.warning,
                };
                let target = clock.target_seconds;
                clock.retarget(target, &plan, old, &cal, at.trunc_subsecs(0));
            }
            self.store.save_clocks(&clocks).await?;
            self.hints.wrote(next_alert(&clocks));
        }
        Ok(cal)
    }

    pub async fn delete_calendar(&self, actor: &Actor, id: Uuid) -> ServiceResult<()> {
        let calendar = self
            .store
            .calendars()
            .await?
            .into_iter()
            .find(|c| c.id == id)
            .ok_or_else(|| ServiceError::NotFound(format!("calendar {id}")))?;
        let audit = AuditEntry::deleted(actor.clone(), &calendar, self.clock.now());
        if self.store.delete_calendar(id, &audit).await? {
            Ok(())
        } else {
            Err(ServiceError::FailedPrecondition(format!(
                "calendar {id} is used by an SLA policy"
            )))
        }
        .inspect(|_| self.calendars.invalidate())
    }

    pub async fn policies(&self) -> ServiceResult<Vec<SlaPolicy>> {
        Ok(self.store.policies().await?)
    }

    /// Creates an SLA policy: a new id, version 1, stamped now.
    pub async fn create_policy(
        &self,
        actor: &Actor,
        policy: SlaPolicy,
    ) -> ServiceResult<SlaPolicy> {
        let at = self.clock.now();
        let policy = SlaPolicy {
            id: Uuid::now_v7(),
            version: 1,
            created_at: at,
            updated_at: at,
            ..policy
        };
        self.save_policy(actor, policy, None).await
    }

    /// Changes the fields `mask` names (all of them when it is empty), under the caller's
    /// etag if it sent one.
    pub async fn update_policy(
        &self,
        actor: &Actor,
        id: Uuid,
        patch: SlaPolicy,
        mask: Vec<String>,
        etag: Option<String>,
    ) -> ServiceResult<SlaPolicy> {
        let mask = Mask::new(mask, POLICY_PATHS)?;
        let (mask, patch) = (&mask, &patch);
        update_versioned(
            &format!("SLA policy {id}"),
            etag.as_deref(),
            || self.policy_from_store(id),
            |current| async move {
                let mut next = current.clone();
                copy_masked!(mask, next, patch, [name, position, conditions, calendar_id]);
                copy_masked!(
                    mask,
                    next.targets,
                    patch.targets,
                    [first_response, next_response, resolution]
                );
                if ["warning", "warning_percent", "warning_lead"]
                    .iter()
                    .any(|path| mask.names(path))
                {
                    next.warning = patch.warning;
                }
                next.updated_at = self.clock.now();
                self.save_policy(actor, next, Some(&current)).await
            },
        )
        .await
    }

    async fn policy_from_store(&self, id: Uuid) -> ServiceResult<SlaPolicy> {
        self.store
            .policies()
            .await?
            .into_iter()
            .find(|p| p.id == id)
            .ok_or_else(|| ServiceError::NotFound(format!("SLA policy {id}")))
    }

    /// Checks and saves a new policy (`current` None) or a changed one if `current` is
    /// still the stored version (else [`ServiceError::Contended`]).
    async fn save_policy(
        &self,
        actor: &Actor,
        policy: SlaPolicy,
        current: Option<&SlaPolicy>,
    ) -> ServiceResult<SlaPolicy> {
        let mut v = Violations::new();
        v.line("policy.name", &policy.name, true, 200);
        for (field, target) in [
            (
                "policy.targets.first_response",
                policy.targets.first_response,
            ),
            ("policy.targets.next_response", policy.targets.next_response),
            ("policy.targets.resolution", policy.targets.resolution),
        ] {
            if target.is_some_and(|t| t <= 0 || t > 366 * 24 * 3600) {
                v.add(field, "must be between 1 second and a year");
            }
        }
        if policy.targets == Default::default() {
            v.add("policy.targets", "must set at least one target");
        }
        match policy.warning {
            crate::domain::sla::Warning::Percent { percent } if !(1..=99).contains(&percent) => {
                v.add("policy.warning", "percent must be between 1 and 99")
            }
            crate::domain::sla::Warning::Lead { seconds } if seconds < 0 => {
                v.add("policy.warning", "lead time must not be negative")
            }
            _ => {}
        }
        v.finish()?;
        if let Some(calendar) = policy.calendar_id
            && !self
                .store
                .calendars()
                .await?
                .iter()
                .any(|c| c.id == calendar)
        {
            return Err(ServiceError::NotFound(format!("calendar {calendar}")));
        }
        let audit = AuditEntry::saved(actor.clone(), current, &policy, policy.updated_at);
        if audit.changes_nothing()
            && let Some(current) = current
        {
            return Ok(current.clone());
        }
        let expected = current.map(|c| c.version);
        let saved = self.store.save_policy(&policy, expected, &audit).await?;
        self.policies.invalidate();
        if !saved {
            return Err(ServiceError::Contended(format!(
                "SLA policy {} changed concurrently",
                policy.id
            )));
        }
        Ok(SlaPolicy {
            version: expected.map_or(1, |v| v + 1),
            ..policy
        })
    }

    pub async fn delete_policy(&self, actor: &Actor, id: Uuid) -> ServiceResult<()> {
        self.policies.invalidate();
        let policy = self
            .store
            .policies()
            .await?
            .into_iter()
            .find(|p| p.id == id)
            .ok_or_else(|| ServiceError::NotFound(format!("SLA policy {id}")))?;
        let audit = AuditEntry::deleted(actor.clone(), &policy, self.clock.now());
        if self.store.delete_policy(id, &audit).await? {
            Ok(())
        } else {
            Err(ServiceError::NotFound(format!("SLA policy {id}")))
        }
    }
}
