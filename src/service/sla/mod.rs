//! SLA use cases: keeping every ticket's clocks in step with its changes (in the same
//! transaction), and showing them; calendars and policies are administered in `admin.rs`,
//! and the timer that announces warnings and breaches is `sla_timer.rs`.

mod admin;

pub use admin::{CALENDAR_PATHS, CalendarPatch, POLICY_PATHS};

use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::ServiceResult;
use super::automation::{AutoResponder, TimerPlanner};
use super::cache::{CONFIG_TTL, Cached};
use super::sla_timer::{DeadlineHints, next_alert};
use crate::domain::event::{EventKind, EventPayload, NewEvent};
use crate::domain::sla::{
    CalendarSet, Clock, ClockView, Plan, Signal, SlaFacts, SlaPolicy, follow_plan, plan_for, react,
};
use crate::domain::ticket::{Status, Ticket};
use crate::domain::workflow::is_human_reply;
use crate::store::{
    Changeset, Committed, CreateOutcome, IdempotencyClaim, Store, StoreResult, TicketDraft,
};

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
        // Automatic messages (workflows, auto-responses) are no agent's answer.
        (EventKind::ReplyAdded, _) if is_human_reply(event) => Some(Signal::AgentReplied),
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
    pub async fn calendar_set(&self) -> StoreResult<Arc<CalendarSet>> {
        self.cached_calendars().await
    }

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
}

/// Moves each changed ticket's report milestones with the change: resolution by its
/// status, first response by a person's public reply among the change's events (automatic
/// replies of workflows and auto-responses are no response, as for SLA clocks).
fn settle_milestones(changes: &mut Changeset) {
    for update in &mut changes.updates {
        let ticket = &mut update.ticket;
        let replied_at = changes
            .events
            .iter()
            .filter(|e| e.ticket_id == ticket.id && is_human_reply(e))
            .map(|e| e.created_at)
            .min();
        ticket.settle_milestones(replied_at);
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

/// Every write that changes tickets goes through here, so their SLA clocks, workflow
/// timers and auto-responses move in the same transaction as the change.
#[derive(Clone)]
pub struct Writer {
    store: Arc<dyn Store>,
    sla: SlaService,
    timers: TimerPlanner,
    responder: AutoResponder,
}

impl Writer {
    pub fn new(
        store: Arc<dyn Store>,
        sla: SlaService,
        timers: TimerPlanner,
        responder: AutoResponder,
    ) -> Self {
        Self {
            store,
            sla,
            timers,
            responder,
        }
    }

    pub async fn commit(&self, mut changes: Changeset) -> StoreResult<Committed> {
        let started = std::time::Instant::now();
        settle_milestones(&mut changes);
        self.sla.prepare(&mut changes, None).await?;
        let timer_due = self.timers.prepare(&mut changes).await?;
        self.responder.prepare(&mut changes, None).await?;
        let deadline = next_alert(&changes.clocks);
        let result = self.store.commit(changes).await;
        metrics::histogram!("ticketd_db_transaction_seconds", "op" => "commit")
            .record(started.elapsed().as_secs_f64());
        if result.is_ok() {
            self.sla.hints.wrote(deadline);
            self.timers.hints.wrote(timer_due);
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
        let timer_due = self.timers.prepare(&mut changes).await?;
        self.responder.prepare(&mut changes, Some(&draft)).await?;
        let deadline = next_alert(&changes.clocks);
        let result = self.store.create_ticket(draft, changes, claim).await;
        metrics::histogram!("ticketd_db_transaction_seconds", "op" => "create_ticket")
            .record(started.elapsed().as_secs_f64());
        if matches!(result, Ok(CreateOutcome::Created { .. })) {
            self.sla.hints.wrote(deadline);
            self.timers.hints.wrote(timer_due);
        }
        result
    }
}
