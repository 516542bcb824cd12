//! The one source of the current time: the system clock in production, a clock that
//! only moves when told to in tests.
//!
//! Everything that stamps a record, computes a deadline or waits for one asks the
//! [`Clock`] handed in at start-up. Sleeps that only pace work (poll intervals, back-off,
//! stall detection) stay on tokio's timer: they decide how soon to look, never what is
//! due.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use tokio::sync::watch;

#[derive(Clone, Debug)]
pub struct Clock {
    source: Arc<Source>,
}

#[derive(Debug)]
enum Source {
    System,
    /// The current reading; every move is sent to the sleepers.
    Manual(watch::Sender<DateTime<Utc>>),
}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

impl Clock {
    pub fn system() -> Self {
        Self {
            source: Arc::new(Source::System),
        }
    }

    /// A clock that reads `start` until [`Clock::advance`] or [`Clock::set`] moves it.
    pub fn manual(start: DateTime<Utc>) -> Self {
        let (sender, _) = watch::channel(start.trunc_subsecs(6));
        Self {
            source: Arc::new(Source::Manual(sender)),
        }
    }

    /// The current time at the precision both databases store (microseconds), so that
    /// a value read back equals the value written.
    pub fn now(&self) -> DateTime<Utc> {
        match &*self.source {
            Source::System => Utc::now().trunc_subsecs(6),
            Source::Manual(reading) => *reading.borrow(),
        }
    }

    /// Whether this clock moves only when told to.
    pub fn is_manual(&self) -> bool {
        matches!(&*self.source, Source::Manual(_))
    }

    /// Moves a manual clock forward, waking whatever waits for an instant it passes.
    /// The system clock cannot be moved: this does nothing to it.
    pub fn advance(&self, by: TimeDelta) {
        if let Source::Manual(reading) = &*self.source {
            reading.send_modify(|at| *at = (*at + by).trunc_subsecs(6));
        }
    }

    /// Sets a manual clock to `to` (forward or back); see [`Clock::advance`].
    pub fn set(&self, to: DateTime<Utc>) {
        if let Source::Manual(reading) = &*self.source {
            reading.send_replace(to.trunc_subsecs(6));
        }
    }

    /// Returns once this clock reads `at` or later.
    pub async fn sleep_until(&self, at: DateTime<Utc>) {
        match &*self.source {
            Source::System => {
                let wait = (at - Utc::now()).to_std().unwrap_or_default();
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
            }
            Source::Manual(reading) => {
                let mut moves = reading.subscribe();
                // The sender lives as long as this clock does, so waiting cannot fail.
                let _ = moves.wait_for(|now| *now >= at).await;
            }
        }
    }

    /// Returns once `wait` has passed on this clock, counted from this call (not from
    /// the first poll).
    pub fn sleep(&self, wait: Duration) -> impl Future<Output = ()> + Send + '_ {
        let by = TimeDelta::from_std(wait).unwrap_or(TimeDelta::MAX);
        let at = self
            .now()
            .checked_add_signed(by)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        self.sleep_until(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn start() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
    }

    #[tokio::test]
    async fn a_manual_clock_moves_only_when_told() {
        let clock = Clock::manual(start());
        assert_eq!(clock.now(), start());
        clock.advance(TimeDelta::minutes(5));
        assert_eq!(clock.now(), start() + TimeDelta::minutes(5));
        clock.set(start());
        assert_eq!(clock.now(), start());
    }

    #[tokio::test]
    async fn a_sleeper_wakes_when_the_clock_passes_its_instant_and_not_before() {
        let clock = Clock::manual(start());
        let sleeper = tokio::spawn({
            let clock = clock.clone();
            async move { clock.sleep_until(start() + TimeDelta::hours(1)).await }
        });
        clock.advance(TimeDelta::minutes(59));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        clock.advance(TimeDelta::minutes(1));
        tokio::time::timeout(Duration::from_secs(5), sleeper)
            .await
            .expect("woken")
            .unwrap();
    }

    #[tokio::test]
    async fn a_sleep_counts_from_when_it_starts() {
        let clock = Clock::manual(start());
        let sleep = clock.sleep(Duration::from_secs(60));
        tokio::pin!(sleep);
        clock.advance(TimeDelta::seconds(59));
        let early = tokio::time::timeout(Duration::from_millis(50), &mut sleep).await;
        assert!(early.is_err(), "a second short");
        clock.advance(TimeDelta::seconds(1));
        tokio::time::timeout(Duration::from_secs(5), sleep)
            .await
            .expect("woken");
    }

    #[test]
    fn readings_are_whole_microseconds() {
        let clock = Clock::manual(start() + TimeDelta::nanoseconds(1_234_567));
        assert_eq!(clock.now().timestamp_subsec_nanos(), 1_234_000);
        assert_eq!(Clock::system().now().timestamp_subsec_nanos() % 1000, 0);
    }
}
