//! SLA policies and clocks: which targets apply to a ticket, and how its clocks run,
//! pause, stop and re-target as the ticket changes. Pure rules over a calendar.

use std::collections::HashMap;

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::calendar::BusinessCalendar;
use super::ticket::{Channel, Priority, TicketType, text_enum};

text_enum!(
    /// What a clock measures.
    Metric {
        FirstResponse = "FIRST_RESPONSE",
        NextResponse = "NEXT_RESPONSE",
        Resolution = "RESOLUTION",
    }
);

text_enum!(
    ClockState {
        Running = "RUNNING",
        Paused = "PAUSED",
        Met = "MET",
        Breached = "BREACHED",
    }
);

/// Targets in business seconds; `None` means the metric is not tracked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Targets {
    pub first_response: Option<i64>,
    pub next_response: Option<i64>,
    pub resolution: Option<i64>,
}

impl Targets {
    pub fn of(&self, metric: Metric) -> Option<i64> {
        match metric {
            Metric::FirstResponse => self.first_response,
            Metric::NextResponse => self.next_response,
            Metric::Resolution => self.resolution,
        }
    }

    /// The product defaults: first response LOW 48 h, MEDIUM 24 h, HIGH 4 h, URGENT 1 h;
    /// resolution LOW 7 days, MEDIUM 3 days, HIGH 24 h, URGENT 4 h; no next-response target.
    pub fn default_for(priority: Priority) -> Targets {
        let hours = |h: i64| Some(h * 3600);
        let (first, resolution) = match priority {
            Priority::Low => (hours(48), hours(168)),
            Priority::Medium => (hours(24), hours(72)),
            Priority::High => (hours(4), hours(24)),
            Priority::Urgent => (hours(1), hours(4)),
        };
        Targets {
            first_response: first,
            next_response: None,
            resolution,
        }
    }
}

/// When a clock warns before it breaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Warning {
    /// At this percentage of the target (1 to 99).
    Percent { percent: i64 },
    /// This many business seconds before the target.
    Lead { seconds: i64 },
}

impl Default for Warning {
    fn default() -> Self {
        Warning::Percent { percent: 80 }
    }
}

impl Warning {
    /// Business seconds into the clock at which it warns.
    pub fn threshold(self, target: i64) -> i64 {
        match self {
            Warning::Percent { percent } => target * percent.clamp(1, 99) / 100,
            Warning::Lead { seconds } => (target - seconds).max(0),
        }
    }
}

/// What a policy applies to. Every condition that is set must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyConditions {
    #[serde(default)]
    pub priorities: Vec<Priority>,
    #[serde(default)]
    pub queue_ids: Vec<Uuid>,
    #[serde(default)]
    pub types: Vec<TicketType>,
    #[serde(default)]
    pub channels: Vec<Channel>,
    #[serde(default)]
    pub contact_vip: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlaPolicy {
    pub id: Uuid,
    pub name: String,
    /// Policies are tried in ascending position; the first match wins.
    pub position: i32,
    pub conditions: PolicyConditions,
    pub targets: Targets,
    /// `None`: round the clock.
    pub calendar_id: Option<Uuid>,
    pub warning: Warning,
    /// Goes up by one with every saved change.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The ticket attributes policies look at.
#[derive(Debug, Clone, Copy)]
pub struct SlaFacts {
    pub priority: Priority,
    pub queue_id: Option<Uuid>,
    pub ticket_type: TicketType,
    pub channel: Option<Channel>,
    pub contact_vip: bool,
}

impl PolicyConditions {
    pub fn matches(&self, f: &SlaFacts) -> bool {
        (self.priorities.is_empty() || self.priorities.contains(&f.priority))
            && (self.queue_ids.is_empty()
                || f.queue_id.is_some_and(|q| self.queue_ids.contains(&q)))
            && (self.types.is_empty() || self.types.contains(&f.ticket_type))
            && (self.channels.is_empty() || f.channel.is_some_and(|c| self.channels.contains(&c)))
            && self.contact_vip.is_none_or(|vip| vip == f.contact_vip)
    }
}

/// The targets that apply to a ticket now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub policy_id: Option<Uuid>,
    pub targets: Targets,
    pub calendar_id: Option<Uuid>,
    pub warning: Warning,
}

/// The first matching policy in position order, else the product defaults (24/7).
pub fn plan_for(policies: &[SlaPolicy], facts: &SlaFacts) -> Plan {
    let mut ordered: Vec<&SlaPolicy> = policies.iter().collect();
    ordered.sort_by_key(|p| (p.position, p.created_at, p.id));
    match ordered.into_iter().find(|p| p.conditions.matches(facts)) {
        Some(p) => Plan {
            policy_id: Some(p.id),
            targets: p.targets,
            calendar_id: p.calendar_id,
            warning: p.warning,
        },
        None => Plan {
            policy_id: None,
            targets: Targets::default_for(facts.priority),
            calendar_id: None,
            warning: Warning::default(),
        },
    }
}

/// One clock of one ticket. Business time used is `used_seconds` plus, while running, the
/// business time since `running_since`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clock {
    pub ticket_id: Uuid,
    pub metric: Metric,
    pub policy_id: Option<Uuid>,
    pub calendar_id: Option<Uuid>,
    pub warning: Warning,
    pub target_seconds: i64,
    pub used_seconds: i64,
    pub running_since: Option<DateTime<Utc>>,
    /// Stopped for good (met or breached) or for now (the ticket is resolved).
    pub stopped: bool,
    /// The target was missed: the clock stopped late, or its due time passed.
    pub breached: bool,
    pub due_at: Option<DateTime<Utc>>,
    pub warn_at: Option<DateTime<Utc>>,
    /// The warning event was sent (once per clock).
    pub warned: bool,
    /// The breach event was sent (once per clock).
    pub breach_fired: bool,
    pub started_at: DateTime<Utc>,
    pub stopped_at: Option<DateTime<Utc>>,
}

impl Clock {
    pub fn start(
        ticket_id: Uuid,
        metric: Metric,
        target: i64,
        plan: &Plan,
        cal: &BusinessCalendar,
        at: DateTime<Utc>,
    ) -> Clock {
        let mut clock = Clock {
            ticket_id,
            metric,
            policy_id: plan.policy_id,
            calendar_id: plan.calendar_id,
            warning: plan.warning,
            target_seconds: target,
            used_seconds: 0,
            running_since: Some(at),
            stopped: false,
            breached: false,
            due_at: None,
            warn_at: None,
            warned: false,
            breach_fired: false,
            started_at: at,
            stopped_at: None,
        };
        clock.arm(cal);
        clock
    }

    pub fn used(&self, cal: &BusinessCalendar, now: DateTime<Utc>) -> i64 {
        self.used_seconds
            + self
                .running_since
                .map_or(0, |since| cal.between(since, now))
    }

    pub fn remaining(&self, cal: &BusinessCalendar, now: DateTime<Utc>) -> i64 {
        (self.target_seconds - self.used(cal, now)).max(0)
    }

    pub fn state(&self, now: DateTime<Utc>) -> ClockState {
        let overdue = self.running_since.is_some() && self.due_at.is_some_and(|due| due <= now);
        if self.breached || overdue {
            ClockState::Breached
        } else if self.stopped {
            ClockState::Met
        } else if self.running_since.is_some() {
            ClockState::Running
        } else {
            ClockState::Paused
        }
    }

    /// The next moment this clock has an alert to announce (its warning, then its breach),
    /// if it is running and has one left.
    pub fn next_alert(&self) -> Option<DateTime<Utc>> {
        if self.running_since.is_none() || self.stopped {
            return None;
        }
        let warning = self.warn_at.filter(|_| !self.warned);
        let breach = self.due_at.filter(|_| !self.breach_fired);
        warning.into_iter().chain(breach).min()
    }

    /// Sets the due and warning times of a running clock from its remaining time.
    fn arm(&mut self, cal: &BusinessCalendar) {
        let Some(since) = self.running_since else {
            self.due_at = None;
            self.warn_at = None;
            return;
        };
        self.due_at = cal.add(since, self.target_seconds - self.used_seconds);
        let threshold = self.warning.threshold(self.target_seconds);
        self.warn_at = if self.warned {
            None
        } else {
            cal.add(since, (threshold - self.used_seconds).max(0))
        };
    }

    /// Banks the time used so far; the clock keeps its place.
    fn bank(&mut self, cal: &BusinessCalendar, at: DateTime<Utc>) {
        if let Some(since) = self.running_since.take() {
            self.used_seconds += cal.between(since, at);
            if self.used_seconds > self.target_seconds {
                self.breached = true;
            }
        }
    }

    /// WAITING and the like: the remaining time is kept, not frozen into a breach.
    pub fn pause(&mut self, cal: &BusinessCalendar, at: DateTime<Utc>) {
        self.bank(cal, at);
        self.arm(cal);
    }

    pub fn resume(&mut self, cal: &BusinessCalendar, at: DateTime<Utc>) {
        if self.stopped || self.running_since.is_some() {
            return;
        }
        self.running_since = Some(at);
        self.arm(cal);
    }

    /// Met if within target, else breached.
    pub fn stop(&mut self, cal: &BusinessCalendar, at: DateTime<Utc>) {
        if self.stopped {
            return;
        }
        self.bank(cal, at);
        self.stopped = true;
        self.stopped_at = Some(at);
        self.arm(cal);
    }

    /// A stopped resolution clock runs again with the time already used.
    pub fn reopen(&mut self, cal: &BusinessCalendar, at: DateTime<Utc>) {
        if self.stopped {
            self.stopped = false;
            self.stopped_at = None;
        }
        self.resume(cal, at);
    }

    /// A new policy or calendar: time used is kept, the new target applies.
    pub fn retarget(
        &mut self,
        target: i64,
        plan: &Plan,
        old: &BusinessCalendar,
        new: &BusinessCalendar,
        at: DateTime<Utc>,
    ) {
        if self.stopped {
            return;
        }
        let running = self.running_since.is_some();
        self.bank(old, at);
        self.target_seconds = target;
        self.policy_id = plan.policy_id;
        self.calendar_id = plan.calendar_id;
        self.warning = plan.warning;
        if running {
            self.running_since = Some(at);
        }
        self.breached = self.breached || self.used_seconds > self.target_seconds;
        self.arm(new);
    }
}

/// Something that happened to a ticket, as far as its clocks care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Created,
    /// A public reply by an agent.
    AgentReplied,
    CustomerMessaged,
    /// The ticket entered WAITING.
    Waiting,
    /// The ticket is active again (OPEN or IN_PROGRESS) after WAITING, RESOLVED or CLOSED.
    Active,
    /// RESOLVED or CLOSED.
    Resolved,
    /// Merged away: clocks stop where they are.
    Merged,
}

/// Clocks count whole seconds: every moment they see is cut to its second, so business
/// time used, remaining and due times add up exactly.
fn second(at: DateTime<Utc>) -> DateTime<Utc> {
    at.trunc_subsecs(0)
}

/// Applies a signal to a ticket's clocks under `plan`. `calendar` resolves calendar ids.
pub fn react<'c>(
    clocks: &mut Vec<Clock>,
    ticket_id: Uuid,
    signal: Signal,
    plan: &Plan,
    calendar: &dyn Fn(Option<Uuid>) -> &'c BusinessCalendar,
    at: DateTime<Utc>,
) {
    let at = second(at);
    let cal = calendar(plan.calendar_id);
    let find = |clocks: &Vec<Clock>, metric: Metric| clocks.iter().position(|c| c.metric == metric);
    match signal {
        Signal::Created => {
            for metric in [Metric::FirstResponse, Metric::Resolution] {
                if let (Some(target), None) = (plan.targets.of(metric), find(clocks, metric)) {
                    clocks.push(Clock::start(ticket_id, metric, target, plan, cal, at));
                }
            }
        }
        Signal::AgentReplied => {
            for clock in clocks.iter_mut() {
                if matches!(clock.metric, Metric::FirstResponse | Metric::NextResponse) {
                    clock.stop(calendar(clock.calendar_id), at);
                }
            }
        }
        Signal::CustomerMessaged => {
            let Some(target) = plan.targets.next_response else {
                return;
            };
            match find(clocks, Metric::NextResponse) {
                // An unanswered message already runs the clock; later ones do not reset it.
                Some(i) if !clocks[i].stopped => {}
                Some(i) => {
                    clocks[i] = Clock::start(ticket_id, Metric::NextResponse, target, plan, cal, at)
                }
                None => clocks.push(Clock::start(
                    ticket_id,
                    Metric::NextResponse,
                    target,
                    plan,
                    cal,
                    at,
                )),
            }
        }
        Signal::Waiting | Signal::Merged => {
            for clock in clocks.iter_mut() {
                clock.pause(calendar(clock.calendar_id), at);
            }
        }
        Signal::Resolved => {
            for clock in clocks.iter_mut() {
                if clock.metric == Metric::Resolution {
                    clock.stop(calendar(clock.calendar_id), at);
                } else {
                    clock.pause(calendar(clock.calendar_id), at);
                }
            }
        }
        Signal::Active => {
            for clock in clocks.iter_mut() {
                let cal = calendar(clock.calendar_id);
                if clock.metric == Metric::Resolution {
                    clock.reopen(cal, at);
                } else {
                    clock.resume(cal, at);
                }
            }
        }
    }
}

/// Moves running and paused clocks to the current plan when it changed.
pub fn follow_plan<'c>(
    clocks: &mut [Clock],
    plan: &Plan,
    calendar: &dyn Fn(Option<Uuid>) -> &'c BusinessCalendar,
    at: DateTime<Utc>,
) {
    for clock in clocks.iter_mut() {
        let Some(target) = plan.targets.of(clock.metric) else {
            continue;
        };
        let changed = clock.target_seconds != target
            || clock.policy_id != plan.policy_id
            || clock.calendar_id != plan.calendar_id
            || clock.warning != plan.warning;
        if changed && !clock.stopped {
            let old = calendar(clock.calendar_id);
            clock.retarget(target, plan, old, calendar(plan.calendar_id), at);
        }
    }
}

/// Calendars by id, with the round-the-clock calendar for `None`.
pub struct CalendarSet {
    always: BusinessCalendar,
    by_id: HashMap<Uuid, BusinessCalendar>,
}

impl CalendarSet {
    pub fn new(calendars: Vec<BusinessCalendar>) -> Self {
        CalendarSet {
            always: BusinessCalendar::always(Uuid::nil(), "24/7"),
            by_id: calendars.into_iter().map(|c| (c.id, c)).collect(),
        }
    }

    /// A deleted or unknown calendar counts as round the clock.
    pub fn get(&self, id: Option<Uuid>) -> &BusinessCalendar {
        id.and_then(|id| self.by_id.get(&id))
            .unwrap_or(&self.always)
    }
}

/// A clock as callers see it at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClockView {
    pub metric: Metric,
    pub target_seconds: i64,
    pub due_at: Option<DateTime<Utc>>,
    pub state: ClockState,
    pub used_seconds: i64,
    pub remaining_seconds: i64,
    pub policy_id: Option<Uuid>,
}

impl CalendarSet {
    pub fn view(&self, clock: &Clock, at: DateTime<Utc>) -> ClockView {
        let cal = self.get(clock.calendar_id);
        ClockView {
            metric: clock.metric,
            target_seconds: clock.target_seconds,
            due_at: clock.due_at,
            state: clock.state(at),
            used_seconds: clock.used(cal, at),
            remaining_seconds: clock.remaining(cal, at),
            policy_id: clock.policy_id,
        }
    }
}

/// What a clock announces when its moment comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alert {
    Warning,
    Breach,
}

impl Alert {
    /// The feed entry announcing the alert for `metric` of `ticket` at `at`: internal, by
    /// the SLA system actor, with the clock's target and due time.
    pub fn event(
        self,
        ticket: &crate::domain::ticket::Ticket,
        metric: &str,
        target_seconds: i64,
        due_at: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    ) -> crate::domain::event::NewEvent {
        use crate::domain::event::{Actor, EventKind, EventPayload, NewEvent, Visibility};
        let kind = match self {
            Alert::Warning => EventKind::SlaWarning,
            Alert::Breach => EventKind::SlaBreached,
        };
        let payload = EventPayload::Sla {
            metric: metric.to_owned(),
            target_seconds,
            due_at,
        };
        NewEvent::about(
            ticket,
            kind,
            Actor::system("sla"),
            Visibility::Internal,
            payload,
            at,
        )
    }
}

#[cfg(test)]
mod tests;
