//! Running a workflow on a ticket. Its actions are planned together on the ticket as it
//! is, then written in one transaction with what makes the run happen once — the
//! workflow's step past the event it answers, or the firing of its timer — so a crash
//! before the commit runs them later and a second runner writes nothing. Every entry the
//! run adds names the workflow as its actor, and a `workflow_applied` entry says what each
//! action did.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;

use super::WorkflowTrial;
use super::plan::{Planned, fields_differ};
use crate::clock::Clock;
use crate::domain::event::{Actor, Event, EventKind, EventPayload, NewEvent, Visibility};
use crate::domain::filter::ticket_passes;
use crate::domain::ticket::{Ticket, TicketKey};
use crate::domain::workflow::{MAX_DEPTH, Workflow};
use crate::service::routing::RoutingService;
use crate::service::satisfaction::SurveyTokens;
use crate::service::sla::Writer;
use crate::service::{ServiceError, ServiceResult, retry_contended};
use crate::store::{Changeset, Store, StoreError, TicketUpdate, WorkflowStep, WorkflowTimer};

/// Limits on what workflows may do to one ticket.
#[derive(Debug, Clone, Copy)]
pub struct RunnerSettings {
    /// Most workflow runs on one ticket in an hour; more are stopped and recorded.
    pub max_runs_per_ticket_hour: i64,
}

#[derive(Clone)]
pub struct WorkflowRunner {
    pub(super) store: Arc<dyn Store>,
    writer: Writer,
    pub(super) routing: RoutingService,
    pub(super) survey: SurveyTokens,
    pub(super) clock: Clock,
    settings: RunnerSettings,
}

/// What makes a run happen once.
#[derive(Debug, Clone)]
enum Once {
    Step(WorkflowStep),
    Fired(WorkflowTimer),
}

/// Whether a run happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ran {
    /// Its actions (or the record that it was stopped) are committed.
    Yes,
    /// The ticket did not pass the condition, or is gone: nothing was written.
    NotMatched,
    /// Another runner did it first.
    Elsewhere,
}

impl WorkflowRunner {
    pub fn new(
        store: Arc<dyn Store>,
        writer: Writer,
        routing: RoutingService,
        survey: SurveyTokens,
        clock: Clock,
        settings: RunnerSettings,
    ) -> Self {
        Self {
            store,
            writer,
            routing,
            survey,
            clock,
            settings,
        }
    }

    /// Why the ticket does not pass the workflow's condition now, if it does not.
    pub fn condition_fails(
        workflow: &Workflow,
        ticket: &Ticket,
        now: DateTime<Utc>,
    ) -> Option<String> {
        let filter = workflow.filter()?;
        (!ticket_passes(&filter, ticket, now))
            .then(|| format!("ticket #{} does not pass the condition", ticket.number))
    }

    /// What the workflow would do to the ticket now; writes nothing.
    pub async fn trial(
        &self,
        workflow: &Workflow,
        ticket: &Ticket,
    ) -> ServiceResult<WorkflowTrial> {
        let now = self.clock.now();
        if let Some(reason) = Self::condition_fails(workflow, ticket, now) {
            return Ok(WorkflowTrial {
                matched: false,
                reason,
                actions: Vec::new(),
            });
        }
        let planned = self.plan(workflow, ticket, now).await?;
        Ok(WorkflowTrial {
            matched: true,
            reason: String::new(),
            actions: planned.described,
        })
    }

    /// Runs the workflows an event fires (in their order), each moving past the event, all
    /// in one transaction.
    pub async fn answer(&self, runs: &[&Workflow], event: &Event) -> ServiceResult<Ran> {
        let runs: Vec<(&Workflow, Once)> = runs
            .iter()
            .map(|w| {
                let step = WorkflowStep {
                    workflow_id: w.id,
                    to: event.cursor,
                };
                (*w, Once::Step(step))
            })
            .collect();
        let trigger = format!("{} at cursor {}", event.event.kind, event.cursor);
        self.run(&runs, event.event.ticket_id, event.event.depth, &trigger)
            .await
    }

    /// Runs a workflow whose timer fell due, deleting the timer in the same transaction.
    /// A ticket that no longer passes the condition only loses the timer.
    pub async fn fire(&self, workflow: &Workflow, timer: WorkflowTimer) -> ServiceResult<Ran> {
        let trigger = format!(
            "timer started {}",
            timer
                .started_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        let ticket_id = timer.ticket_id;
        let runs = [(workflow, Once::Fired(timer.clone()))];
        let ran = self.run(&runs, ticket_id, 0, &trigger).await?;
        if ran == Ran::NotMatched {
            return self.discard(timer).await;
        }
        Ok(ran)
    }

    /// Deletes a timer that fires for nothing (its workflow disabled, its ticket no
    /// longer passing the condition).
    pub async fn discard(&self, timer: WorkflowTimer) -> ServiceResult<Ran> {
        let changes = Changeset {
            fired: Some(timer),
            ..Changeset::default()
        };
        match self.writer.commit(changes).await {
            Ok(_) => Ok(Ran::NotMatched),
            Err(StoreError::Superseded(_)) => Ok(Ran::Elsewhere),
            Err(e) => Err(e.into()),
        }
    }

    /// Runs `runs` on one ticket in order, each on the ticket as the ones before left it,
    /// and commits them together.
    async fn run(
        &self,
        runs: &[(&Workflow, Once)],
        ticket_id: Uuid,
        depth: u8,
        trigger: &str,
    ) -> ServiceResult<Ran> {
        retry_contended(
            ServiceError::Contended(format!("ticket {ticket_id} kept changing under a workflow")),
            || async move {
                let Some(ticket) = self.store.ticket(TicketKey::Id(ticket_id)).await? else {
                    return Ok(Ran::NotMatched);
                };
                let now = self.clock.now();
                let mut next = ticket.clone();
                let mut events = Vec::new();
                let mut outbound = Vec::new();
                let mut changes = Changeset::default();
                let mut recent: Option<i64> = None;
                let mut ran = 0;
                // Workflows that looked and did not match move past the event too.
                let mut passed_over = Vec::new();
                for (workflow, once) in runs {
                    if Self::condition_fails(workflow, &next, now).is_some() {
                        if let Once::Step(step) = once {
                            passed_over.push(*step);
                        }
                        continue;
                    }
                    ran += 1;
                    let stopped = if depth >= MAX_DEPTH {
                        format!("stopped: {MAX_DEPTH} workflow runs in a row led here")
                    } else {
                        let before = match recent {
                            Some(n) => n,
                            None => {
                                self.store
                                    .workflow_runs_since(ticket.id, now - TimeDelta::hours(1))
                                    .await?
                            }
                        };
                        recent = Some(before);
                        let cap = self.settings.max_runs_per_ticket_hour;
                        if before + ran > cap {
                            format!(
                                "stopped: ticket #{} had {cap} workflow runs in the last hour",
                                ticket.number
                            )
                        } else {
                            String::new()
                        }
                    };
                    let planned = if stopped.is_empty() {
                        self.plan(workflow, &next, now).await?
                    } else {
                        metrics::counter!("ticketd_workflow_runs_stopped_total").increment(1);
                        Planned {
                            next: next.clone(),
                            events: Vec::new(),
                            outbound: Vec::new(),
                            described: Vec::new(),
                        }
                    };
                    next = planned.next;
                    events.extend(planned.events);
                    outbound.extend(planned.outbound);
                    events.push(NewEvent::about(
                        &next,
                        EventKind::WorkflowApplied,
                        Actor::workflow(workflow.id, &workflow.name),
                        Visibility::Internal,
                        EventPayload::WorkflowApplied {
                            workflow_id: workflow.id,
                            workflow_name: workflow.name.clone(),
                            trigger: trigger.to_owned(),
                            actions: planned.described,
                            stopped,
                        },
                        now,
                    ));
                    match once {
                        Once::Step(step) => changes.steps.push(*step),
                        Once::Fired(timer) => changes.fired = Some(timer.clone()),
                    }
                }
                if ran == 0 {
                    return Ok(Ran::NotMatched);
                }
                changes.steps.extend(passed_over);
                for event in &mut events {
                    event.depth = depth.saturating_add(1);
                }
                if fields_differ(&ticket, &next) {
                    changes.updates.push(TicketUpdate {
                        tags_changed: next.tags != ticket.tags,
                        ticket: next,
                        expected_version: ticket.version,
                        contact: None,
                    });
                }
                changes.events = events;
                changes.outbound = outbound;
                match self.writer.commit(changes).await {
                    Ok(mut committed) => {
                        metrics::counter!("ticketd_workflow_runs_total").increment(1);
                        if let Some(after) = committed.tickets.pop() {
                            self.routing.after_change(&ticket, after).await;
                        }
                        Ok(Ran::Yes)
                    }
                    Err(StoreError::Superseded(_)) => Ok(Ran::Elsewhere),
                    Err(StoreError::Conflict(id)) => {
                        Err(ServiceError::Contended(format!("ticket {id} changed")))
                    }
                    Err(other) => Err(other.into()),
                }
            },
        )
        .await
    }
}
