//! The SLA timer: announces warnings and breaches when they fall due. It sleeps until the
//! next deadline and never sweeps on a schedule; writes in this process that set an earlier
//! deadline wake it through [`DeadlineHints`], so a busy server does not re-read the
//! deadlines on every commit.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, watch};

use crate::domain::sla::Clock;
use crate::store::{Store, StoreResult};

/// The earliest alert among freshly written clocks.
pub(crate) fn next_alert(clocks: &[Clock]) -> Option<DateTime<Utc>> {
    clocks.iter().filter_map(Clock::next_alert).min()
}

/// Deadlines written by this process, as far as the timer needs to hear of them: only one
/// earlier than the timer's next planned look wakes it; later ones it finds then anyway.
#[derive(Clone, Default)]
pub struct DeadlineHints {
    state: Arc<Mutex<HintState>>,
    wake: Arc<Notify>,
}

#[derive(Default)]
struct HintState {
    /// When the timer looks next; `None` while it is reading the deadlines.
    planned: Option<DateTime<Utc>>,
    /// The earliest deadline written while it was reading (its read may have missed it).
    during_read: Option<DateTime<Utc>>,
}

impl DeadlineHints {
    /// Called after a commit that wrote clocks whose earliest alert is `deadline`.
    pub fn wrote(&self, deadline: Option<DateTime<Utc>>) {
        let Some(deadline) = deadline else { return };
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        match state.planned {
            None => {
                state.during_read = Some(state.during_read.map_or(deadline, |d| d.min(deadline)))
            }
            Some(planned) if deadline < planned => {
                state.planned = Some(deadline);
                self.wake.notify_one();
            }
            Some(_) => {}
        }
    }

    /// The timer starts reading the deadlines.
    fn reading(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.planned = None;
            state.during_read = None;
        }
    }

    /// The timer read `next` and plans its next look: returns when that is.
    fn plan(&self, next: DateTime<Utc>) -> DateTime<Utc> {
        let Ok(mut state) = self.state.lock() else {
            return next;
        };
        let at = state.during_read.take().map_or(next, |d| d.min(next));
        state.planned = Some(at);
        at
    }
}

/// Runs `tick` (which fires what is due and returns the next due time) again at that
/// time, at the latest after `poll`, or at once when `hints` hear of an earlier one;
/// until `shutdown`.
pub(crate) async fn run_until_due<F, Fut>(
    hints: &DeadlineHints,
    poll: Duration,
    clock: &crate::clock::Clock,
    mut shutdown: watch::Receiver<bool>,
    name: &'static str,
    mut tick: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = StoreResult<Option<DateTime<Utc>>>>,
{
    loop {
        hints.reading();
        let latest = clock.now() + poll;
        let next = match tick().await {
            Ok(Some(next)) => next.min(latest),
            Ok(None) => latest,
            Err(err) => {
                tracing::warn!(error = %err, timer = name, "timer failed; retrying");
                latest
            }
        };
        let wake_at = hints.plan(next);
        tokio::select! {
            _ = clock.sleep_until(wake_at) => {}
            _ = tokio::time::sleep(poll) => {}
            _ = hints.wake.notified() => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

/// Announces warnings and breaches when they fall due. Each alert fires exactly once across
/// replicas (a conditional update claims it); deadlines that passed while no replica ran
/// fire at start-up; deadlines another replica set are found within `poll`, if that replica
/// did not fire them first.
pub struct SlaTimer {
    store: Arc<dyn Store>,
    hints: DeadlineHints,
    /// The longest sleep without looking, in real time (deadlines another replica set
    /// are found this way even while a test holds the clock still).
    poll: Duration,
    clock: crate::clock::Clock,
}

impl SlaTimer {
    pub fn new(
        store: Arc<dyn Store>,
        hints: DeadlineHints,
        poll: Duration,
        clock: crate::clock::Clock,
    ) -> Self {
        Self {
            store,
            hints,
            poll,
            clock,
        }
    }

    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        run_until_due(
            &self.hints,
            self.poll,
            &self.clock,
            shutdown,
            "sla timer",
            || self.tick(),
        )
        .await;
    }

    /// Fires what is due and returns the next deadline.
    async fn tick(&self) -> StoreResult<Option<DateTime<Utc>>> {
        loop {
            let fired = self.store.fire_sla_alerts(self.clock.now(), 100).await?;
            for event in &fired {
                tracing::info!(ticket_id = %event.event.ticket_id, kind = %event.event.kind, "sla alert");
                metrics::counter!("ticketd_sla_alerts_total", "kind" => event.event.kind.as_str())
                    .increment(1);
            }
            if fired.len() < 100 {
                break;
            }
        }
        self.store.next_sla_deadline().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(second: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, second).unwrap()
    }

    #[test]
    fn only_a_deadline_before_the_planned_look_wakes_the_timer() {
        let hints = DeadlineHints::default();
        hints.reading();
        assert_eq!(hints.plan(at(30)), at(30));
        hints.wrote(Some(at(40)));
        assert!(hints.state.lock().unwrap().planned == Some(at(30)));
        hints.wrote(Some(at(10)));
        assert!(hints.state.lock().unwrap().planned == Some(at(10)));
    }

    #[test]
    fn a_deadline_written_during_a_read_is_kept_for_the_plan() {
        let hints = DeadlineHints::default();
        hints.reading();
        hints.wrote(Some(at(20)));
        hints.wrote(Some(at(25)));
        assert_eq!(hints.plan(at(30)), at(20));
        hints.reading();
        assert_eq!(hints.plan(at(30)), at(30), "a plan uses a hint once");
    }
}
