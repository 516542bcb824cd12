//! SLA use cases: calendars and policies; keeping every ticket's clocks in step with its
//! changes (in the same transaction); and the timer that announces warnings and breaches.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, SubsecRound, Utc};
use uuid::Uuid;

use super::cache::{CONFIG_TTL, Cached};
use super::sla_timer::{DeadlineHints, next_alert};
use super::versioned::{Mask, copy_masked, update_versioned};
use super::{ServiceError, ServiceResult};
use crate::domain::audit::AuditEntry;
use crate::domain::calendar::BusinessCalendar;
use crate::domain::event::{Actor, EventKind, EventPayload, NewEvent};
use crate::domain::sla::{
    CalendarSet, Clock, ClockView, Plan, Signal, SlaFacts, SlaPolicy, follow_plan, plan_for, react,
};
use crate::domain::ticket::{Status, Ticket};
use crate::domain::validation::Violations;
use crate::store::{
    Changeset, Committed, CreateOutcome, IdempotencyClaim, Store, StoreResult, TicketDraft,
};

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

/// What SLA clocks are measured with when a ticket is shown: the calendars, and the
/// moment of showing.
pub struct SlaReadings {
    calendars: Arc<CalendarSet>,
    at: DateTime<Utc>,
}

impl SlaReadings {
    pub fn view(&self, clock: &Clock) -> ClockView {
        self.calendars.view(clock, self.at)
    }
}

#[derive(Clone)]
pub struct SlaService {
    store: Arc<dyn Store>,
    clock: crate::clock::Clock,
    policies: Arc<Cached<Vec<SlaPolicy>>>,
    calendars: Arc<Cached<CalendarSet>>,
    hints: DeadlineHints,
}

/// What the clocks of a ticket make of one of its events.
fn signal(event: &NewEvent) -> Option<Signal> {
    match (&event.kind, &event.payload) {
        (EventKind::TicketCreated, _) => Some(Signal::Created),
        (EventKind::ReplyAdded, _) => Some(Signal::AgentReplied),
        (EventKind::CustomerMessage, _) => Some(Signal::CustomerMessaged),
        (EventKind::TicketsMerged, _) if event.ticket.status == Status::Merged => {
            Some(Signal::Merged)
        }
        (EventKind::StatusChanged, EventPayload::FieldsChanged { changes }) => {
            let change = changes.iter().find(|c| c.field == "status")?;
            let (from, to) = (Status::parse(&change.old)?, Status::parse(&change.new)?);
            match to {
                Status::Waiting => Some(Signal::Waiting),
                Status::Resolved | Status::Closed => Some(Signal::Resolved),
                Status::Open | Status::InProgress
                    if matches!(from, Status::Waiting | Status::Resolved | Status::Closed) =>
                {
                    Some(Signal::Active)
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// Events that start, stop or pause clocks, or that can change which policy applies
/// (priority, type, queue, channel, contact).
fn may_move_clocks(event: &NewEvent) -> bool {
    signal(event).is_some()
        || matches!(
            event.kind,
            EventKind::TicketUpdated | EventKind::Assigned | EventKind::TierEscalated
        )
}

impl SlaService {
    pub fn new(store: Arc<dyn Store>, clock: crate::clock::Clock) -> Self {
        Self {
            store,
            clock,
            policies: Arc::new(Cached::new(CONFIG_TTL)),
            calendars: Arc::new(Cached::new(CONFIG_TTL)),
            hints: DeadlineHints::default(),
        }
    }

    /// What the [`super::SlaTimer`] of this process listens to.
    pub fn deadline_hints(&self) -> DeadlineHints {
        self.hints.clone()
    }

    async fn cached_policies(&self) -> StoreResult<Arc<Vec<SlaPolicy>>> {
        self.policies.get(|| self.store.policies()).await
    }

    /// The calendars, built once per cache period rather than once per use: every write
    /// and every ticket rendered looks clocks up in them.
    async fn cached_calendars(&self) -> StoreResult<Arc<CalendarSet>> {
        self.calendars
            .get(|| async { Ok(CalendarSet::new(self.store.calendars().await?)) })
            .await
    }

    /// The calendars with the time to read SLA clocks at: now.
    pub async fn readings(&self) -> ServiceResult<SlaReadings> {
        Ok(SlaReadings {
            calendars: self.cached_calendars().await?,
            at: self.clock.now(),
        })
    }

    /// Whether any policy looks at the contact's VIP flag.
    pub async fn needs_vip(&self) -> StoreResult<bool> {
        Ok(self
            .cached_policies()
            .await?
            .iter()
            .any(|p| p.conditions.contact_vip.is_some()))
    }

    /// Adds to `changes` the clock writes its events call for: clocks start with a new
    /// ticket, stop at replies and resolutions, pause while WAITING, and follow the policy
    /// that matches the ticket after the change.
    pub async fn prepare(
        &self,
        changes: &mut Changeset,
        draft: Option<&TicketDraft>,
    ) -> StoreResult<()> {
        // Only tickets with an event that can move a clock: notes, time entries and the like
        // leave clocks alone, and cost no reads here.
        let mut tickets: Vec<Uuid> = changes
            .events
            .iter()
            .filter(|e| may_move_clocks(e))
            .map(|e| e.ticket_id)
            .collect();
        tickets.sort();
        tickets.dedup();
        if tickets.is_empty() {
            return Ok(());
        }
        let policies = self.cached_policies().await?;
        let calendars = self.cached_calendars().await?;
        let lookup = |id: Option<Uuid>| calendars.get(id);
        // A ticket being created has no clocks yet.
        let only_new = draft.is_some_and(|d| tickets.iter().all(|t| *t == d.id));
        let mut existing = if only_new {
            Vec::new()
        } else {
            self.store.clocks(&tickets).await?
        };
        // The stored VIP flag counts when the caller does not say; read only if a policy asks.
        let draft_vip = match draft {
            Some(d) => match d.contact.vip {
                Some(vip) => vip,
                None if policies.iter().any(|p| p.conditions.contact_vip.is_some()) => self
                    .store
                    .contact_vip(&d.contact.external_id)
                    .await?
                    .unwrap_or(false),
                None => false,
            },
            None => false,
        };
        for ticket_id in tickets {
            let facts =
                if let Some(update) = changes.updates.iter().find(|u| u.ticket.id == ticket_id) {
                    facts_of(&update.ticket)
                } else if let Some(d) = draft.filter(|d| d.id == ticket_id) {
                    SlaFacts {
                        priority: d.priority,
                        queue_id: d.queue_id,
                        ticket_type: d.ticket_type,
                        channel: d.channel,
                        contact_vip: draft_vip,
                    }
                } else {
                    continue;
                };
            let plan: Plan = plan_for(&policies, &facts);
            let (mut clocks, rest): (Vec<Clock>, Vec<Clock>) =
                existing.into_iter().partition(|c| c.ticket_id == ticket_id);
            existing = rest;
            let before = clocks.clone();
            for event in changes.events.iter().filter(|e| e.ticket_id == ticket_id) {
                if let Some(signal) = signal(event) {
                    react(
                        &mut clocks,
                        ticket_id,
                        signal,
                        &plan,
                        &lookup,
                        event.created_at,
                    );
                }
            }
            let at = changes
                .events
                .iter()
                .filter(|e| e.ticket_id == ticket_id)
                .map(|e| e.created_at)
                .max()
                .unwrap_or_else(|| self.clock.now());
            follow_plan(&mut clocks, &plan, &lookup, at);
            changes
                .clocks
                .extend(clocks.into_iter().filter(|c| !before.contains(c)));
        }
        Ok(())
    }

    // ---- calendars and policies ----------------------------------------------------------

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

pub(crate) fn facts_of(ticket: &Ticket) -> SlaFacts {
    SlaFacts {
        priority: ticket.priority,
        queue_id: ticket.queue_id,
        ticket_type: ticket.ticket_type,
        channel: ticket.channel,
        contact_vip: ticket.contact.vip,
    }
}

/// Every write that changes tickets goes through here, so their SLA clocks move in the
/// same transaction as the change.
#[derive(Clone)]
pub struct Writer {
    store: Arc<dyn Store>,
    sla: SlaService,
}

impl Writer {
    pub fn new(store: Arc<dyn Store>, sla: SlaService) -> Self {
        Self { store, sla }
    }

    pub async fn commit(&self, mut changes: Changeset) -> StoreResult<Committed> {
        let started = std::time::Instant::now();
        self.sla.prepare(&mut changes, None).await?;
        let deadline = next_alert(&changes.clocks);
        let result = self.store.commit(changes).await;
        metrics::histogram!("ticketd_db_transaction_seconds", "op" => "commit")
            .record(started.elapsed().as_secs_f64());
        if result.is_ok() {
            self.sla.hints.wrote(deadline);
        }
        result
    }

    pub async fn create_ticket(
        &self,
        draft: TicketDraft,
        mut changes: Changeset,
        claim: Option<IdempotencyClaim>,
    ) -> StoreResult<CreateOutcome> {
        let started = std::time::Instant::now();
        self.sla.prepare(&mut changes, Some(&draft)).await?;
        let deadline = next_alert(&changes.clocks);
        let result = self.store.create_ticket(draft, changes, claim).await;
        metrics::histogram!("ticketd_db_transaction_seconds", "op" => "create_ticket")
            .record(started.elapsed().as_secs_f64());
        if matches!(result, Ok(CreateOutcome::Created { .. })) {
            self.sla.hints.wrote(deadline);
        }
        result
    }
}
