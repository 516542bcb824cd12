//! Reports: what each metric counts, the buckets of a period in a time zone, the
//! statistics of durations, and business time over many tickets at once. The README's
//! "Reports" section states the definitions for users.

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

use super::calendar::BusinessCalendar;

/// The most buckets one report may have (a year and a half of days).
pub const MAX_BUCKETS: usize = 550;
/// The most rows one report may return.
pub const MAX_ROWS: usize = 20_000;
/// The longest period one report may cover.
pub const MAX_PERIOD_DAYS: i64 = 3 * 366;
/// The most facts one report may read into memory: tickets measured for a duration, or
/// sums per slot and group.
pub const MAX_FACT_ROWS: usize = 1_000_000;
/// Business time is counted at most this far back from a report's end: a ticket older
/// than that counts from then.
const BUSINESS_LOOKBACK_DAYS: i64 = 3 * 366;
/// A rating of this or more is "satisfied".
pub const SATISFIED_SCORE: i64 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Tickets created in the bucket.
    TicketsCreated,
    /// Tickets whose latest resolution falls in the bucket and that are still resolved
    /// or closed.
    TicketsResolved,
    /// Tickets open at the end of the bucket: created by then and not resolved by then.
    Backlog,
    /// Creation to a person's first public reply, bucketed by the reply.
    FirstResponseTime,
    /// Creation to the latest resolution, bucketed by the resolution.
    ResolutionTime,
    /// Share of SLA clocks met among those settled in the bucket, per SLA metric.
    SlaCompliance,
    /// Ratings given in the bucket.
    Csat,
    /// Time entries logged in the bucket.
    TimeLogged,
}

impl Metric {
    /// Durations: the rows carry mean, median and p90.
    pub fn is_duration(self) -> bool {
        matches!(self, Metric::FirstResponseTime | Metric::ResolutionTime)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interval {
    None,
    Day,
    Week,
    Month,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dimension {
    Queue,
    Priority,
    Channel,
    Type,
    /// The ticket's assignee; for time logged, the agent who logged the time.
    Assignee,
    /// One row per tag: a ticket counts once under each of its tags ("" for none).
    Tag,
}

/// The buckets of a period: consecutive `[bounds[i], bounds[i + 1])`. Inner bounds are
/// local midnights (of days, Mondays or firsts of months) in the report's time zone; the
/// first starts at the period's start and the last ends at its end.
#[derive(Debug, Clone, PartialEq)]
pub struct Buckets {
    bounds: Vec<i64>,
}

impl Buckets {
    pub fn new(
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        interval: Interval,
        zone: Tz,
    ) -> Result<Self, String> {
        if end <= start {
            return Err("must be after start_time".into());
        }
        if end - start > Duration::days(MAX_PERIOD_DAYS) {
            return Err(format!(
                "must be at most {MAX_PERIOD_DAYS} days after start_time"
            ));
        }
        let mut bounds = vec![start.timestamp()];
        if interval != Interval::None {
            let mut date = start.with_timezone(&zone).date_naive();
            loop {
                date = next_bucket_date(date, interval)
                    .ok_or_else(|| "is beyond the calendar".to_string())?;
                let at = local_midnight(zone, date);
                if at >= end {
                    break;
                }
                if at > start {
                    bounds.push(at.timestamp());
                }
                if bounds.len() > MAX_BUCKETS {
                    return Err(format!(
                        "makes more than {MAX_BUCKETS} buckets: choose a longer interval or a shorter period"
                    ));
                }
            }
        }
        bounds.push(end.timestamp());
        Ok(Buckets { bounds })
    }

    pub fn len(&self) -> usize {
        self.bounds.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn start(&self, i: usize) -> i64 {
        self.bounds[i]
    }

    pub fn end(&self, i: usize) -> i64 {
        self.bounds[i + 1]
    }

    /// The longest of a day, an hour, a quarter hour, a minute and a second that divides
    /// every inner bound: facts summed per such slot (counted from the epoch) fall in
    /// one bucket each, as the first and last buckets take whatever part of their
    /// outer slot the period holds.
    pub fn slot_seconds(&self) -> i64 {
        let inner = &self.bounds[1..self.bounds.len() - 1];
        [86_400, 3_600, 900, 60]
            .into_iter()
            .find(|slot| inner.iter().all(|b| b % slot == 0))
            .unwrap_or(1)
    }

    /// The bucket holding the instant `at` (seconds since the epoch), if any.
    pub fn index_of(&self, at: i64) -> Option<usize> {
        let (first, last) = (self.bounds[0], self.bounds[self.bounds.len() - 1]);
        if at < first || at >= last {
            return None;
        }
        Some(self.bounds.partition_point(|b| *b <= at) - 1)
    }
}

/// The local date the bucket after the one holding `date` starts on.
fn next_bucket_date(date: NaiveDate, interval: Interval) -> Option<NaiveDate> {
    match interval {
        Interval::None => None,
        Interval::Day => date.succ_opt(),
        Interval::Week => date.checked_add_signed(Duration::days(
            7 - i64::from(date.weekday().num_days_from_monday()),
        )),
        Interval::Month => {
            let (y, m) = if date.month() == 12 {
                (date.year() + 1, 1)
            } else {
                (date.year(), date.month() + 1)
            };
            NaiveDate::from_ymd_opt(y, m, 1)
        }
    }
}

/// The first instant of local `date` in `zone` (where midnight is skipped by a clock
/// change, the first instant after it).
fn local_midnight(zone: Tz, date: NaiveDate) -> DateTime<Utc> {
    let midnight = date.and_hms_opt(0, 0, 0).unwrap_or_default();
    (0..=4)
        .find_map(|h| {
            zone.from_local_datetime(&(midnight + Duration::minutes(30 * h)))
                .earliest()
        })
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| Utc.from_utc_datetime(&midnight))
}

/// Mean, median and 90th percentile of durations in seconds (nearest rank: the
/// smallest value with at least half, or 90 %, of the values at or below it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    pub mean: f64,
    pub median: f64,
    pub p90: f64,
}

pub fn stats(values: &mut [i64]) -> Stats {
    if values.is_empty() {
        return Stats {
            mean: 0.0,
            median: 0.0,
            p90: 0.0,
        };
    }
    values.sort_unstable();
    let n = values.len();
    let rank = |p: usize| values[(n * p).div_ceil(100).clamp(1, n) - 1] as f64;
    Stats {
        mean: values.iter().map(|v| *v as f64).sum::<f64>() / n as f64,
        median: rank(50),
        p90: rank(90),
    }
}

/// Business seconds of one calendar over a stretch of time, answered for many pairs of
/// instants by two binary searches each instead of a walk over days.
#[derive(Debug, Clone)]
pub struct BusinessTimeline {
    /// Business spans `[starts[i], ends[i])` in seconds, in order.
    starts: Vec<i64>,
    ends: Vec<i64>,
    /// Business seconds before span `i`.
    before: Vec<i64>,
    lo: i64,
}

impl BusinessTimeline {
    /// Covers `[lo, hi)`, at most [`BUSINESS_LOOKBACK_DAYS`] back from `hi`.
    pub fn new(calendar: &BusinessCalendar, lo: DateTime<Utc>, hi: DateTime<Utc>) -> Self {
        let lo = lo.max(hi - Duration::days(BUSINESS_LOOKBACK_DAYS));
        let spans = calendar.spans_within(lo, hi);
        let mut timeline = BusinessTimeline {
            starts: Vec::with_capacity(spans.len()),
            ends: Vec::with_capacity(spans.len()),
            before: Vec::with_capacity(spans.len()),
            lo: lo.timestamp(),
        };
        let mut total = 0;
        for (from, to) in spans {
            timeline.starts.push(from.timestamp());
            timeline.ends.push(to.timestamp());
            timeline.before.push(total);
            total += to.timestamp() - from.timestamp();
        }
        timeline
    }

    /// Business seconds from the timeline's start to `at`.
    fn cumulative(&self, at: i64) -> i64 {
        let i = self.starts.partition_point(|s| *s <= at);
        if i == 0 {
            return 0;
        }
        self.before[i - 1] + at.min(self.ends[i - 1]) - self.starts[i - 1]
    }

    /// Business seconds in `[from, to)` (seconds since the epoch).
    pub fn between(&self, from: i64, to: i64) -> i64 {
        if to <= from {
            return 0;
        }
        self.cumulative(to) - self.cumulative(from.max(self.lo))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveTime;
    use uuid::Uuid;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    fn starts(b: &Buckets) -> Vec<String> {
        (0..b.len())
            .map(|i| {
                DateTime::from_timestamp(b.start(i), 0)
                    .unwrap()
                    .to_rfc3339()
            })
            .collect()
    }

    #[test]
    fn days_follow_local_midnights_across_a_clock_change() {
        let zone: Tz = "Europe/Berlin".parse().unwrap();
        // Summer time ends on 2026-10-25: that day has 25 hours.
        let b = Buckets::new(
            utc("2026-10-24T12:00:00Z"),
            utc("2026-10-26T23:00:00Z"),
            Interval::Day,
            zone,
        )
        .unwrap();
        assert_eq!(
            starts(&b),
            vec![
                "2026-10-24T12:00:00+00:00",
                "2026-10-24T22:00:00+00:00",
                "2026-10-25T23:00:00+00:00",
            ]
        );
        assert_eq!(b.index_of(utc("2026-10-25T22:59:59Z").timestamp()), Some(1));
        assert_eq!(b.index_of(utc("2026-10-25T23:00:00Z").timestamp()), Some(2));
        assert_eq!(b.index_of(utc("2026-10-26T23:00:00Z").timestamp()), None);
        assert_eq!(b.index_of(utc("2026-10-24T11:59:59Z").timestamp()), None);
        // Berlin's midnights fall on whole UTC hours.
        assert_eq!(b.slot_seconds(), 3_600);
        let kolkata = Buckets::new(
            utc("2026-10-24T12:00:00Z"),
            utc("2026-10-26T23:00:00Z"),
            Interval::Day,
            "Asia/Kolkata".parse().unwrap(),
        )
        .unwrap();
        assert_eq!(kolkata.slot_seconds(), 900, "UTC+5:30");
        let utc_days = Buckets::new(
            utc("2026-10-24T12:34:56Z"),
            utc("2026-10-26T23:00:00Z"),
            Interval::Day,
            Tz::UTC,
        )
        .unwrap();
        assert_eq!(utc_days.slot_seconds(), 86_400);
    }

    #[test]
    fn weeks_start_on_monday_and_months_on_the_first() {
        let b = Buckets::new(
            utc("2026-11-04T00:00:00Z"), // a Wednesday
            utc("2026-11-20T00:00:00Z"),
            Interval::Week,
            Tz::UTC,
        )
        .unwrap();
        assert_eq!(
            starts(&b),
            vec![
                "2026-11-04T00:00:00+00:00",
                "2026-11-09T00:00:00+00:00",
                "2026-11-16T00:00:00+00:00",
            ]
        );
        let b = Buckets::new(
            utc("2026-11-15T00:00:00Z"),
            utc("2027-02-01T00:00:00Z"),
            Interval::Month,
            Tz::UTC,
        )
        .unwrap();
        assert_eq!(b.len(), 3);
        assert_eq!(starts(&b)[2], "2027-01-01T00:00:00+00:00");
        let none = Buckets::new(
            utc("2026-01-01T00:00:00Z"),
            utc("2027-01-01T00:00:00Z"),
            Interval::None,
            Tz::UTC,
        )
        .unwrap();
        assert_eq!(none.len(), 1);
    }

    #[test]
    fn periods_are_checked() {
        let t = utc("2026-01-01T00:00:00Z");
        assert!(Buckets::new(t, t, Interval::Day, Tz::UTC).is_err());
        assert!(Buckets::new(t, t + Duration::days(3 * 365), Interval::Day, Tz::UTC).is_err());
        assert!(Buckets::new(t, t + Duration::days(3 * 365), Interval::Week, Tz::UTC).is_ok());
        assert!(Buckets::new(t, t + Duration::days(4 * 365), Interval::Month, Tz::UTC).is_err());
    }

    #[test]
    fn statistics_use_the_nearest_rank() {
        let mut values: Vec<i64> = (1..=10).rev().collect();
        let s = stats(&mut values);
        assert_eq!((s.mean, s.median, s.p90), (5.5, 5.0, 9.0));
        let s = stats(&mut [7]);
        assert_eq!((s.mean, s.median, s.p90), (7.0, 7.0, 7.0));
        assert_eq!(stats(&mut []).median, 0.0);
    }

    fn nine_to_five() -> BusinessCalendar {
        let mut cal = BusinessCalendar::always(Uuid::nil(), "office");
        cal.time_zone = "Europe/London".parse().unwrap();
        let day = vec![(9 * 60, 17 * 60)];
        cal.weekly = [
            day.clone(),
            day.clone(),
            day.clone(),
            day.clone(),
            day,
            vec![],
            vec![],
        ];
        cal
    }

    #[test]
    fn the_timeline_agrees_with_the_calendar() {
        let cal = nine_to_five();
        let lo = utc("2026-03-20T00:00:00Z");
        let hi = utc("2026-04-10T00:00:00Z");
        let timeline = BusinessTimeline::new(&cal, lo, hi);
        // Across a weekend and the spring clock change, at odd minutes.
        let mut at = lo;
        let step = Duration::minutes(6 * 60 + 7);
        while at < hi {
            let mut to = at;
            while to < hi {
                assert_eq!(
                    timeline.between(at.timestamp(), to.timestamp()),
                    cal.between(at, to),
                    "{at} .. {to}"
                );
                to += Duration::minutes(23 * 60 + 11);
            }
            at += step;
        }
        let monday = NaiveDate::from_ymd_opt(2026, 3, 23)
            .unwrap()
            .and_time(NaiveTime::from_hms_opt(8, 0, 0).unwrap())
            .and_utc();
        // 08:00 UTC is 08:00 in London before the change: one hour before opening.
        assert_eq!(
            timeline.between(
                monday.timestamp(),
                (monday + Duration::hours(2)).timestamp()
            ),
            3600
        );
    }
}
