//! Business-hours calendars and exact business-time arithmetic.
//!
//! An instant is business time when its wall-clock time in the calendar's zone lies in
//! one of that local weekday's intervals and its local date is not a holiday. Business
//! time is real elapsed time spent in business time: on a fall-back night an interval that
//! contains the repeated hour counts it twice; on a spring-forward night the skipped hour
//! does not exist.
//!
//! The arithmetic works on spans of UTC instants. A local interval `[s, e)` of a day maps,
//! within each stretch of constant UTC offset `o`, to the instants `[s - o, e - o)` clipped
//! to that stretch; offset changes are found by bisection, so no minute-by-minute walk is
//! needed.

use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use uuid::Uuid;

/// Minutes after local midnight, 0 to 1440 (24:00).
pub type Minute = u32;

/// Days looked ahead before a calendar counts as having no business time left.
const HORIZON_DAYS: i64 = 3 * 366;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusinessCalendar {
    pub id: Uuid,
    pub name: String,
    pub time_zone: Tz,
    /// Intervals `[start, end)` per weekday, Monday first.
    pub weekly: [Vec<(Minute, Minute)>; 7],
    /// Holidays on these local dates.
    pub holidays: BTreeSet<NaiveDate>,
    /// Holidays every year on these (month, day).
    pub yearly_holidays: BTreeSet<(u32, u32)>,
    /// Goes up by one with every saved change; 0 before the first save.
    pub version: i64,
}

/// Why a calendar definition is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    #[error("{0} is not an IANA time zone")]
    TimeZone(String),
    #[error("{0:?} is not a time of day like 09:00 or 24:00")]
    Time(String),
    #[error("{day}: interval {start}-{end} must end after it starts")]
    Interval {
        day: String,
        start: String,
        end: String,
    },
    #[error("{day}: intervals overlap")]
    Overlap { day: String },
    #[error("the calendar has no business hours at all")]
    Empty,
}

pub const WEEKDAYS: [&str; 7] = ["MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"];

/// Parses `HH:MM`, allowing `24:00` for the end of the day.
pub fn parse_minute(text: &str) -> Result<Minute, CalendarError> {
    let bad = || CalendarError::Time(text.to_owned());
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if m >= 60 || h > 24 || (h == 24 && m != 0) || h_text_len(text) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

fn h_text_len(text: &str) -> bool {
    text.len() != 5
}

pub fn format_minute(minute: Minute) -> String {
    format!("{:02}:{:02}", minute / 60, minute % 60)
}

impl BusinessCalendar {
    /// Round the clock, every day, in UTC.
    pub fn always(id: Uuid, name: &str) -> Self {
        BusinessCalendar {
            id,
            name: name.to_owned(),
            time_zone: Tz::UTC,
            weekly: std::array::from_fn(|_| vec![(0, 1440)]),
            holidays: BTreeSet::new(),
            yearly_holidays: BTreeSet::new(),
            version: 0,
        }
    }

    /// Builds a calendar from text, checking every part.
    pub fn parse(
        id: Uuid,
        name: &str,
        time_zone: &str,
        weekly: &[(String, Vec<(String, String)>)],
        holidays: BTreeSet<NaiveDate>,
        yearly_holidays: BTreeSet<(u32, u32)>,
    ) -> Result<Self, CalendarError> {
        let tz: Tz = time_zone
            .parse()
            .map_err(|_| CalendarError::TimeZone(time_zone.to_owned()))?;
        let mut days: [Vec<(Minute, Minute)>; 7] = Default::default();
        for (day, intervals) in weekly {
            let index = WEEKDAYS
                .iter()
                .position(|d| d.eq_ignore_ascii_case(day))
                .ok_or_else(|| CalendarError::Time(day.clone()))?;
            for (start, end) in intervals {
                let (s, e) = (parse_minute(start)?, parse_minute(end)?);
                if e <= s {
                    return Err(CalendarError::Interval {
                        day: day.clone(),
                        start: start.clone(),
                        end: end.clone(),
                    });
                }
                days[index].push((s, e));
            }
            days[index].sort();
            if days[index].windows(2).any(|w| w[1].0 < w[0].1) {
                return Err(CalendarError::Overlap { day: day.clone() });
            }
        }
        if days.iter().all(Vec::is_empty) {
            return Err(CalendarError::Empty);
        }
        Ok(BusinessCalendar {
            id,
            name: name.to_owned(),
            time_zone: tz,
            weekly: days,
            holidays,
            yearly_holidays,
            version: 0,
        })
    }

    /// The opening hours as text, the way [`BusinessCalendar::parse`] takes them: each
    /// weekday that opens, Monday first, with its `HH:MM` intervals.
    pub fn weekly_text(&self) -> Vec<(String, Vec<(String, String)>)> {
        WEEKDAYS
            .iter()
            .zip(self.weekly.iter())
            .filter(|(_, intervals)| !intervals.is_empty())
            .map(|(day, intervals)| {
                let text = intervals
                    .iter()
                    .map(|(s, e)| (format_minute(*s), format_minute(*e)))
                    .collect();
                (day.to_string(), text)
            })
            .collect()
    }

    fn is_holiday(&self, date: NaiveDate) -> bool {
        self.holidays.contains(&date) || self.yearly_holidays.contains(&(date.month(), date.day()))
    }

    fn offset_seconds(&self, at: DateTime<Utc>) -> i64 {
        i64::from(
            self.time_zone
                .offset_from_utc_datetime(&at.naive_utc())
                .fix()
                .local_minus_utc(),
        )
    }

    /// Stretches `[from, to)` of constant UTC offset covering `[lo, hi)`, both whole
    /// seconds. Every zone changes offset on a whole second, so the search runs on whole
    /// seconds too: a boundary found between two seconds would make business time
    /// fractional (a due time some milliseconds before the hour it belongs to).
    fn segments(
        &self,
        lo: DateTime<Utc>,
        hi: DateTime<Utc>,
    ) -> Vec<(DateTime<Utc>, DateTime<Utc>, i64)> {
        let offset_at = |second: i64| {
            DateTime::from_timestamp(second, 0).map_or(0, |at| self.offset_seconds(at))
        };
        let (lo, hi) = (lo.timestamp(), hi.timestamp());
        let mut out = Vec::new();
        let mut start = lo;
        while start < hi {
            let offset = offset_at(start);
            let next = if offset_at(hi - 1) == offset {
                // The window is shorter than the gap between two transitions.
                hi
            } else {
                // The first second with another offset: `same` keeps the old offset,
                // `other` does not.
                let (mut same, mut other) = (start, hi - 1);
                while other - same > 1 {
                    let mid = same + (other - same) / 2;
                    if offset_at(mid) == offset {
                        same = mid;
                    } else {
                        other = mid;
                    }
                }
                other
            };
            if let (Some(from), Some(to)) = (
                DateTime::from_timestamp(start, 0),
                DateTime::from_timestamp(next, 0),
            ) {
                out.push((from, to, offset));
            }
            start = next;
        }
        out
    }

    /// The business spans of one local date, in order.
    fn spans_of_day(&self, date: NaiveDate) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        let intervals = &self.weekly[date.weekday().num_days_from_monday() as usize];
        if intervals.is_empty() || self.is_holiday(date) {
            return Vec::new();
        }
        let midnight = date.and_hms_opt(0, 0, 0).unwrap_or(NaiveDateTime::MIN);
        let as_utc = |local: NaiveDateTime| Utc.from_utc_datetime(&local);
        // Offsets stay within ±14 h, so this window holds every instant of the local day.
        let lo = as_utc(midnight) - Duration::hours(15);
        let hi = as_utc(midnight) + Duration::hours(24 + 15);
        let segments = self.segments(lo, hi);
        let mut spans = Vec::new();
        for (s, e) in intervals {
            let local_start = as_utc(midnight + Duration::minutes(i64::from(*s)));
            let local_end = as_utc(midnight + Duration::minutes(i64::from(*e)));
            for (from, to, offset) in &segments {
                let start = (local_start - Duration::seconds(*offset)).max(*from);
                let end = (local_end - Duration::seconds(*offset)).min(*to);
                if start < end {
                    spans.push((start, end));
                }
            }
        }
        spans.sort();
        spans
    }

    /// Business spans from `start` on, clipped to begin no earlier than `start`.
    fn spans_from(
        &self,
        start: DateTime<Utc>,
    ) -> impl Iterator<Item = (DateTime<Utc>, DateTime<Utc>)> + '_ {
        let first = start.with_timezone(&self.time_zone).date_naive() - Duration::days(1);
        (0..HORIZON_DAYS)
            .filter_map(move |n| first.checked_add_signed(Duration::days(n)))
            .flat_map(move |date| self.spans_of_day(date))
            .filter(move |(_, end)| *end > start)
            .map(move |(from, to)| (from.max(start), to))
    }

    /// The earliest instant at or after `start` by which `seconds` of business time have
    /// passed; `start` itself for zero. A clock that runs out exactly at closing time is
    /// due at closing time. `None` if the calendar has no business time left within years.
    pub fn add(&self, start: DateTime<Utc>, seconds: i64) -> Option<DateTime<Utc>> {
        if seconds <= 0 {
            return Some(start);
        }
        let mut left = Duration::seconds(seconds);
        for (from, to) in self.spans_from(start) {
            let length = to - from;
            if length >= left {
                return Some(from + left);
            }
            left -= length;
        }
        None
    }

    /// Every business span overlapping `[lo, hi)`, clipped to it, in order.
    pub fn spans_within(
        &self,
        lo: DateTime<Utc>,
        hi: DateTime<Utc>,
    ) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        if hi <= lo {
            return Vec::new();
        }
        let days = (hi - lo).num_days() + 2;
        let first = lo.with_timezone(&self.time_zone).date_naive() - Duration::days(1);
        (0..=days)
            .filter_map(|n| first.checked_add_signed(Duration::days(n)))
            .flat_map(|date| self.spans_of_day(date))
            .filter(|(from, to)| *to > lo && *from < hi)
            .map(|(from, to)| (from.max(lo), to.min(hi)))
            .collect()
    }

    /// Business seconds in `[start, end)`.
    pub fn between(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> i64 {
        if end <= start {
            return 0;
        }
        let mut total = Duration::zero();
        for (from, to) in self.spans_from(start) {
            if from >= end {
                break;
            }
            total += to.min(end) - from;
        }
        total.num_seconds()
    }

    /// Whether `at` is business time.
    pub fn is_open(&self, at: DateTime<Utc>) -> bool {
        self.between(at, at + Duration::seconds(1)) == 1
    }
}

#[cfg(test)]
mod tests;
