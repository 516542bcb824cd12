//! What runs workflows: the processor, which follows the event log for event-triggered
//! workflows, and the timer task, which fires time-triggered ones at their due second.
//!
//! The processor reads the log below the horizon of transactions in flight (so it never
//! passes an event that could still appear) from the furthest-behind workflow's position.
//! Each workflow keeps its own position: a run moves it past its event in the run's
//! transaction (positions only move forward, so a second runner of the event writes
//! nothing), and events no workflow acted on move every position in one write at most
//! once a second. One replica at a time holds the processor's lease; a replica that takes
//! it over starts from the stored positions, so a crash delays runs and never loses or
//! repeats them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::watch;
use uuid::Uuid;

use super::WorkflowCache;
use super::runner::{Ran, WorkflowRunner};
use crate::clock::Clock;
use crate::domain::event::Event;
use crate::domain::filter::TicketFilter;
use crate::domain::filter::snapshot_passes;
use crate::domain::ticket::{Ticket, TicketKey};
use crate::domain::workflow::{Workflow, fires_on};
use crate::events::Bus;
use crate::service::sla_timer::{DeadlineHints, run_until_due};
use crate::service::{ServiceError, ServiceResult};
use crate::store::{Store, StoreError, StoreResult};

/// The processor's lease name.
const LEASE: &str = "workflows";
/// Events read per batch.
const BATCH: i64 = 500;
/// How long the processor lets wake-ups gather before it reads: under load one read then
/// takes many commits' events, for at most this much more latency.
const GATHER: Duration = Duration::from_millis(20);
/// Timers fired per look.
const TIMER_BATCH: i64 = 100;

pub struct WorkflowProcessor {
    store: Arc<dyn Store>,
    workflows: WorkflowCache,
    runner: WorkflowRunner,
    bus: Bus,
    clock: Clock,
    /// Fallback poll, and how often the lease is renewed.
    poll: Duration,
    /// How long a lease outlives its holder's last renewal.
    lease: TimeDelta,
}

/// How often positions that moved without a run are written back. Between writes the
/// stored ones lag: a replica taking over looks at those events again, and finds every
/// run already done (runs move their own positions as they commit).
const ADVANCE_EVERY: Duration = Duration::from_secs(1);

/// The processor's view of each workflow's position, valid while it holds the lease.
struct Positions {
    /// Until when this replica holds the lease; `None` when it does not.
    lease_until: Option<DateTime<Utc>>,
    seen: HashMap<Uuid, i64>,
    /// When positions were last written back.
    advanced: std::time::Instant,
    /// A position every workflow has passed that is not written back yet.
    unsaved: Option<i64>,
}

impl Default for Positions {
    fn default() -> Self {
        Positions {
            lease_until: None,
            seen: HashMap::new(),
            advanced: std::time::Instant::now(),
            unsaved: None,
        }
    }
}

impl WorkflowProcessor {
    pub fn new(
        store: Arc<dyn Store>,
        workflows: WorkflowCache,
        runner: WorkflowRunner,
        bus: Bus,
        clock: Clock,
        poll: Duration,
    ) -> Self {
        let lease = TimeDelta::from_std(poll * 10).unwrap_or(TimeDelta::seconds(10));
        Self {
            store,
            workflows,
            runner,
            bus,
            clock,
            poll,
            lease: lease.max(TimeDelta::seconds(5)),
        }
    }

    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let owner = Uuid::now_v7();
        let mut woken = self.bus.subscribe();
        let mut positions = Positions::default();
        loop {
            let more = match self.pass(owner, &mut positions).await {
                Ok(more) => more,
                Err(err) => {
                    tracing::warn!(error = %err, "workflow processor failed; retrying");
                    positions.lease_until = None;
                    false
                }
            };
            if more {
                continue;
            }
            tokio::select! {
                _ = woken.changed() => {
                    // Let the commits of a busy moment gather into one read.
                    tokio::time::sleep(GATHER).await;
                }
                _ = tokio::time::sleep(self.poll) => {}
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
        }
    }

    /// Takes one batch of the log through every event workflow; `true` when more may
    /// follow at once.
    async fn pass(&self, owner: Uuid, positions: &mut Positions) -> ServiceResult<bool> {
        let all = self.workflows.all().await?;
        if all.is_empty() {
            return Ok(false);
        }
        let now = self.clock.now();
        // The lease is renewed at half its term, not on every pass.
        if positions
            .lease_until
            .is_none_or(|until| now + self.lease / 2 >= until)
        {
            if !self
                .store
                .claim_processor(LEASE, owner, now, now + self.lease)
                .await?
            {
                positions.lease_until = None;
                return Ok(false);
            }
            if positions.lease_until.is_none() {
                // Another replica may have moved the positions while this one did not
                // hold the lease: start from what is stored.
                positions.seen = self
                    .store
                    .workflows()
                    .await?
                    .into_iter()
                    .map(|w| (w.id, w.seen_through))
                    .collect();
            }
            positions.lease_until = Some(now + self.lease);
        }
        // Every workflow's position moves, so one that is disabled, or switched from a
        // timer to an event, takes up from about now rather than from long ago.
        for w in all.iter() {
            positions.seen.entry(w.id).or_insert(w.seen_through);
        }
        positions
            .seen
            .retain(|id, _| all.iter().any(|w| w.id == *id));
        let on_events: Vec<&Workflow> = all.iter().filter(|w| w.timer().is_none()).collect();
        let Some(from) = positions.seen.values().copied().min() else {
            return Ok(false);
        };
        let events = if on_events.iter().any(|w| w.enabled) {
            self.store.events_after(from, BATCH).await?
        } else {
            // Nothing to run on events: positions follow the end of the log without
            // reading it, once a second.
            if positions.advanced.elapsed() >= ADVANCE_EVERY {
                let end = self.store.log_end().await?;
                let ids: Vec<Uuid> = positions.seen.keys().copied().collect();
                self.store.advance_workflows(&ids, end).await?;
                for seen in positions.seen.values_mut() {
                    *seen = (*seen).max(end);
                }
                positions.advanced = std::time::Instant::now();
            }
            return Ok(false);
        };
        let Some(last) = events.last().map(|e| e.cursor) else {
            // Idle: write back what moved since the last write.
            if let Some(last) = positions.unsaved.take() {
                let ids: Vec<Uuid> = positions.seen.keys().copied().collect();
                self.store.advance_workflows(&ids, last).await?;
                positions.advanced = std::time::Instant::now();
            }
            return Ok(false);
        };
        // Which workflows each event fires, in their order.
        let fired: Vec<(&Event, Vec<&Workflow>)> = events
            .iter()
            .map(|event| {
                let runs = on_events
                    .iter()
                    .copied()
                    .filter(|w| w.enabled && fires_on(w, &event.event))
                    .filter(|w| positions.seen.get(&w.id).is_some_and(|s| *s < event.cursor))
                    .collect();
                (event, runs)
            })
            .filter(|(_, runs): &(_, Vec<_>)| !runs.is_empty())
            .collect();
        // A condition on what the event carries is read off the event (the ticket right
        // after the change); the others need the ticket, read for the whole batch at once.
        // The runner reads the ticket again, and checks again, before it writes.
        let filters: HashMap<Uuid, Option<TicketFilter>> =
            on_events.iter().map(|w| (w.id, w.filter())).collect();
        let fired: Vec<(&Event, Vec<&Workflow>, bool)> = fired
            .into_iter()
            .filter_map(|(event, runs)| {
                let mut needs_ticket = false;
                let mut any = false;
                for w in &runs {
                    let filter = filters.get(&w.id).and_then(Option::as_ref);
                    match filter.map(|f| snapshot_passes(f, &event.event)) {
                        None => any = true,
                        Some(Some(passes)) => any |= passes,
                        Some(None) => needs_ticket = true,
                    }
                }
                (any || needs_ticket).then_some((event, runs, needs_ticket && !any))
            })
            .collect();
        let mut ids: Vec<Uuid> = fired
            .iter()
            .filter(|(_, _, needs_ticket)| *needs_ticket)
            .map(|(e, _, _)| e.event.ticket_id)
            .collect();
        ids.sort();
        ids.dedup();
        let mut tickets: HashMap<Uuid, Ticket> = if ids.is_empty() {
            HashMap::new()
        } else {
            self.store
                .tickets_by_id(&ids)
                .await?
                .into_iter()
                .map(|t| (t.id, t))
                .collect()
        };
        let now = self.clock.now();
        for (event, runs, needs_ticket) in fired {
            let ticket_id = event.event.ticket_id;
            if needs_ticket {
                let ticket = match tickets.get(&ticket_id) {
                    Some(t) => Some(t.clone()),
                    None => self.store.ticket(TicketKey::Id(ticket_id)).await?,
                };
                // The first workflow whose condition the ticket passes may change it for
                // the next; if none passes, none runs.
                let any = ticket.as_ref().is_some_and(|t| {
                    runs.iter()
                        .any(|w| WorkflowRunner::condition_fails(w, t, now).is_none())
                });
                if !any {
                    continue;
                }
            }
            let started = std::time::Instant::now();
            let ran = self.runner.answer(&runs, event).await?;
            metrics::histogram!("ticketd_workflow_run_seconds")
                .record(started.elapsed().as_secs_f64());
            match ran {
                Ran::Yes => {
                    tickets.remove(&ticket_id);
                    for w in &runs {
                        positions.seen.insert(w.id, event.cursor);
                    }
                }
                Ran::NotMatched => {}
                Ran::Elsewhere => {
                    // Another holder moved these workflows: re-read the positions.
                    positions.lease_until = None;
                    return Ok(true);
                }
            }
        }
        for seen in positions.seen.values_mut() {
            *seen = (*seen).max(last);
        }
        let full = events.len() as i64 == BATCH;
        positions.unsaved = Some(last);
        if positions.advanced.elapsed() >= ADVANCE_EVERY {
            let ids: Vec<Uuid> = positions.seen.keys().copied().collect();
            self.store.advance_workflows(&ids, last).await?;
            positions.advanced = std::time::Instant::now();
            positions.unsaved = None;
        }
        metrics::gauge!("ticketd_workflow_processor_position").set(last as f64);
        Ok(full)
    }
}

/// Fires the timers of time-triggered workflows at their due second: it sleeps until the
/// earliest, and writes in this process that arm an earlier one wake it. Each timer fires
/// once across replicas (deleted in the transaction of its actions); timers that came due
/// while nothing ran fire at start-up.
pub struct WorkflowTimerTask {
    store: Arc<dyn Store>,
    workflows: WorkflowCache,
    runner: WorkflowRunner,
    hints: DeadlineHints,
    clock: Clock,
    poll: Duration,
}

impl WorkflowTimerTask {
    pub fn new(
        store: Arc<dyn Store>,
        workflows: WorkflowCache,
        runner: WorkflowRunner,
        hints: DeadlineHints,
        clock: Clock,
        poll: Duration,
    ) -> Self {
        Self {
            store,
            workflows,
            runner,
            hints,
            clock,
            poll,
        }
    }

    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        run_until_due(
            &self.hints,
            self.poll,
            &self.clock,
            shutdown,
            "workflow timer",
            || self.tick(),
        )
        .await;
    }

    async fn tick(&self) -> StoreResult<Option<DateTime<Utc>>> {
        loop {
            let now = self.clock.now();
            let due = self.store.due_workflow_timers(now, TIMER_BATCH).await?;
            let workflows = self.workflows.all().await?;
            for timer in &due {
                let lag = (now - timer.due_at).num_milliseconds().max(0) as f64 / 1000.0;
                metrics::histogram!("ticketd_workflow_timer_lag_seconds").record(lag);
                let workflow = workflows.iter().find(|w| w.id == timer.workflow_id);
                let result = match workflow {
                    Some(w) if w.enabled => self.runner.fire(w, timer.clone()).await,
                    // Disabled since it was armed (a deleted one takes its timers along).
                    _ => self.runner.discard(timer.clone()).await,
                };
                if let Err(err) = result {
                    return Err(match err {
                        ServiceError::Unavailable(e)
                        | ServiceError::TimedOut(e)
                        | ServiceError::Internal(e) => e,
                        other => StoreError::Corrupt(other.to_string()),
                    });
                }
            }
            if (due.len() as i64) < TIMER_BATCH {
                break;
            }
        }
        self.store.next_workflow_timer().await
    }
}
