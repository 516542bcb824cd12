//! Arming the timers of time-triggered workflows. Every change goes through the
//! [`Writer`](crate::service::Writer), which asks here what its events do to the timers on
//! their tickets: the timers are armed, re-armed or cancelled in the transaction of the
//! change itself, so a committed change never lacks its timer and a rolled-back one
//! never leaves one behind.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::WorkflowCache;
use crate::domain::workflow::{TimerMove, due_at, timer_move};
use crate::service::sla::SlaService;
use crate::service::sla_timer::DeadlineHints;
use crate::store::{Changeset, StoreResult, TimerWrite, WorkflowTimer};

#[derive(Clone)]
pub struct TimerPlanner {
    workflows: WorkflowCache,
    sla: SlaService,
    /// What the workflow timer task of this process listens to.
    pub hints: DeadlineHints,
}

impl TimerPlanner {
    pub fn new(workflows: WorkflowCache, sla: SlaService) -> Self {
        Self {
            workflows,
            sla,
            hints: DeadlineHints::default(),
        }
    }

    /// Adds to `changes` the timer writes its events call for; returns the earliest due
    /// time armed, for the timer task's hints.
    pub async fn prepare(&self, changes: &mut Changeset) -> StoreResult<Option<DateTime<Utc>>> {
        if changes.events.is_empty() {
            return Ok(None);
        }
        let workflows = self.workflows.all().await?;
        let timed: Vec<_> = workflows
            .iter()
            .filter(|w| w.enabled)
            .filter_map(|w| w.timer().map(|t| (w.id, t)))
            .collect();
        if timed.is_empty() {
            return Ok(None);
        }
        let calendars = self.sla.calendar_set().await?;
        // The last move of a timer in the changeset is the one that holds.
        let mut writes: BTreeMap<(Uuid, Uuid), TimerWrite> = BTreeMap::new();
        for event in &changes.events {
            for (workflow_id, (kind, after, calendar_id, status)) in &timed {
                let key = (*workflow_id, event.ticket_id);
                let write = match timer_move(*kind, *status, event) {
                    None => continue,
                    Some(TimerMove::Cancel) => TimerWrite::Cancel {
                        workflow_id: *workflow_id,
                        ticket_id: event.ticket_id,
                    },
                    Some(TimerMove::Arm(from)) => {
                        let calendar = calendar_id.map(|id| calendars.get(Some(id)));
                        match due_at(from, *after, calendar) {
                            Some(due) => TimerWrite::Arm(WorkflowTimer {
                                workflow_id: *workflow_id,
                                ticket_id: event.ticket_id,
                                due_at: due,
                                started_at: from,
                            }),
                            // A calendar that never opens: the timer never falls due.
                            None => TimerWrite::Cancel {
                                workflow_id: *workflow_id,
                                ticket_id: event.ticket_id,
                            },
                        }
                    }
                };
                writes.insert(key, write);
            }
        }
        let earliest = writes
            .values()
            .filter_map(|w| match w {
                TimerWrite::Arm(t) => Some(t.due_at),
                TimerWrite::Cancel { .. } => None,
            })
            .min();
        changes.timers.extend(writes.into_values());
        Ok(earliest)
    }
}
