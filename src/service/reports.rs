//! Reports: read the facts of a metric, put them in buckets and groups, and compute its
//! figures. Definitions are in `domain::report` and the README.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use tracing::instrument;
use uuid::Uuid;

use super::tickets::TicketService;
use super::{ServiceError, ServiceResult};
use crate::clock::Clock;
use crate::domain::auth::Principal;
use crate::domain::filter::TicketFilter;
use crate::domain::report::{
    Buckets, BusinessTimeline, Dimension, Interval, MAX_FACT_ROWS, MAX_ROWS, Metric, stats,
};
use crate::store::{Fact, FactKind, FactQuery, Grain, SortField, Store, StoreError, TicketQuery};

/// What to report.
#[derive(Debug, Clone)]
pub struct ReportInput {
    pub metric: Metric,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// IANA name; empty is UTC.
    pub time_zone: String,
    pub interval: Interval,
    pub group_by: Option<Dimension>,
    pub filter: String,
    /// Business time on this calendar for durations.
    pub calendar_id: Option<Uuid>,
}

/// One row of a report; see `ReportRow` in the proto for each field's meaning.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportRow {
    pub bucket_start: DateTime<Utc>,
    pub group: String,
    pub group_label: String,
    pub series: String,
    pub count: i64,
    pub value: f64,
    pub mean: f64,
    pub median: f64,
    pub p90: f64,
}

/// Sums of one bucket, group and series.
#[derive(Debug, Default)]
struct Sums {
    count: i64,
    total: i64,
    extra: i64,
    durations: Vec<i64>,
}

type Key = (usize, String, String);

#[derive(Clone)]
pub struct ReportService {
    store: Arc<dyn Store>,
    tickets: TicketService,
    clock: Clock,
}

impl ReportService {
    pub fn new(store: Arc<dyn Store>, tickets: TicketService, clock: Clock) -> Self {
        Self {
            store,
            tickets,
            clock,
        }
    }

    /// The rows of a report, by bucket, group and series.
    #[instrument(skip_all, fields(metric = ?input.metric))]
    pub async fn run(
        &self,
        principal: &Principal,
        input: &ReportInput,
    ) -> ServiceResult<(Vec<ReportRow>, Tz)> {
        let zone: Tz = if input.time_zone.is_empty() {
            Tz::UTC
        } else {
            input.time_zone.parse().map_err(|_| {
                ServiceError::invalid(
                    "time_zone",
                    "is not an IANA time zone such as Europe/Berlin",
                )
            })?
        };
        let buckets = Buckets::new(input.start, input.end, input.interval, zone)
            .map_err(|e| ServiceError::invalid("end_time", e))?;
        let calendar = match input.calendar_id {
            None => None,
            Some(_) if !input.metric.is_duration() => {
                return Err(ServiceError::invalid(
                    "calendar_id",
                    "applies only to FIRST_RESPONSE_TIME and RESOLUTION_TIME",
                ));
            }
            Some(id) => Some(
                self.store
                    .calendars()
                    .await?
                    .into_iter()
                    .find(|c| c.id == id)
                    .ok_or_else(|| ServiceError::NotFound(format!("calendar {id}")))?,
            ),
        };
        let (filter, _) = self
            .tickets
            .selected(principal, &input.filter, None, "")
            .await?;
        let reader = FactReader {
            store: self.store.as_ref(),
            input,
            filter,
            sources: principal.sources.clone(),
            now: self.clock.now(),
        };
        let mut sums: BTreeMap<Key, Sums> = BTreeMap::new();
        match input.metric {
            Metric::Backlog => backlog(&reader, &buckets, &mut sums).await?,
            Metric::FirstResponseTime | Metric::ResolutionTime => {
                let kind = if input.metric == Metric::FirstResponseTime {
                    FactKind::FirstResponse
                } else {
                    FactKind::Resolution
                };
                let facts = reader.read(kind, Some(input.start), Grain::Each).await?;
                let timeline = calendar.map(|cal| {
                    let earliest = facts.iter().map(|f| f.start).min().unwrap_or(0);
                    let lo = DateTime::from_timestamp(earliest, 0).unwrap_or(input.start);
                    BusinessTimeline::new(&cal, lo, input.end)
                });
                for fact in &facts {
                    let Some(bucket) = buckets.index_of(fact.at) else {
                        continue;
                    };
                    let seconds = match &timeline {
                        Some(t) => t.between(fact.start, fact.at),
                        None => (fact.at - fact.start).max(0),
                    };
                    let entry = sums.entry(key_of(bucket, fact)).or_default();
                    entry.count += 1;
                    entry.durations.push(seconds);
                }
            }
            metric => {
                let kind = match metric {
                    Metric::TicketsCreated => FactKind::Created,
                    Metric::TicketsResolved => FactKind::Resolved,
                    Metric::SlaCompliance => FactKind::Sla,
                    Metric::Csat => FactKind::Csat,
                    _ => FactKind::TimeLogged,
                };
                for fact in reader
                    .read(kind, Some(input.start), Grain::Slot(buckets.slot_seconds()))
                    .await?
                {
                    if let Some(bucket) = buckets.index_of(fact.at.max(buckets.start(0))) {
                        let entry = sums.entry(key_of(bucket, &fact)).or_default();
                        entry.count += fact.count;
                        entry.total += fact.total;
                        entry.extra += fact.extra;
                    }
                }
            }
        }
        // Counts are zero where nothing happened; ratios and durations have no figure.
        let counts = matches!(
            input.metric,
            Metric::TicketsCreated | Metric::TicketsResolved | Metric::Backlog | Metric::TimeLogged
        );
        if input.group_by.is_none() && counts {
            for bucket in 0..buckets.len() {
                sums.entry((bucket, String::new(), String::new()))
                    .or_default();
            }
        }
        if sums.len() > MAX_ROWS {
            return Err(ServiceError::ResourceExhausted(format!(
                "the report has more than {MAX_ROWS} rows: choose a longer interval, a shorter period or a narrower filter"
            )));
        }
        let labels = self.labels(input.group_by).await?;
        let rows = sums
            .into_iter()
            .map(|((bucket, group, series), mut s)| {
                let mut row = ReportRow {
                    bucket_start: DateTime::from_timestamp(buckets.start(bucket), 0)
                        .unwrap_or(input.start),
                    group_label: labels.get(&group).cloned().unwrap_or_default(),
                    group,
                    series,
                    count: s.count,
                    value: s.count as f64,
                    mean: 0.0,
                    median: 0.0,
                    p90: 0.0,
                };
                let share = |part: i64| {
                    if s.count == 0 {
                        0.0
                    } else {
                        100.0 * part as f64 / s.count as f64
                    }
                };
                match input.metric {
                    Metric::FirstResponseTime | Metric::ResolutionTime => {
                        let st = stats(&mut s.durations);
                        (row.value, row.mean, row.median, row.p90) =
                            (st.mean, st.mean, st.median, st.p90);
                    }
                    Metric::SlaCompliance => row.value = share(s.total),
                    Metric::Csat => {
                        row.value = share(s.extra);
                        row.mean = if s.count == 0 {
                            0.0
                        } else {
                            s.total as f64 / s.count as f64
                        };
                    }
                    Metric::TimeLogged => row.value = s.total as f64,
                    _ => {}
                }
                row
            })
            .collect();
        Ok((rows, zone))
    }

    /// Readable names of queue and agent groups.
    async fn labels(&self, dimension: Option<Dimension>) -> ServiceResult<HashMap<String, String>> {
        Ok(match dimension {
            Some(Dimension::Queue) => self
                .store
                .queues()
                .await?
                .into_iter()
                .map(|q| (q.id.to_string(), q.name))
                .collect(),
            Some(Dimension::Assignee) => self
                .store
                .agents()
                .await?
                .into_iter()
                .map(|a| (a.id.to_string(), a.name))
                .collect(),
            _ => HashMap::new(),
        })
    }
}

/// The bucket, group and series a fact belongs to.
fn key_of(bucket: usize, fact: &Fact) -> Key {
    let group = match (&fact.group_id, &fact.group_text) {
        (Some(id), _) => id.to_string(),
        (None, Some(text)) => text.clone(),
        (None, None) => String::new(),
    };
    (bucket, group, fact.series.clone())
}

/// Reads facts of one report's tickets.
struct FactReader<'a> {
    store: &'a dyn Store,
    input: &'a ReportInput,
    filter: Option<TicketFilter>,
    sources: Vec<String>,
    now: DateTime<Utc>,
}

impl FactReader<'_> {
    async fn read(
        &self,
        kind: FactKind,
        from: Option<DateTime<Utc>>,
        grain: Grain,
    ) -> ServiceResult<Vec<Fact>> {
        let to = if from.is_some() {
            self.input.end
        } else {
            self.input.start
        };
        let query = FactQuery {
            kind,
            from,
            to,
            dimension: self.input.group_by,
            scope: TicketQuery {
                filter: self.filter.clone(),
                sort: SortField::Number,
                descending: false,
                after: None,
                limit: 0,
                now: self.now,
                sources: self.sources.clone(),
            },
            grain,
        };
        let facts = self.store.report_facts(&query).await?;
        if facts.len() > MAX_FACT_ROWS {
            return Err(ServiceError::ResourceExhausted(format!(
                "the report reads more than {MAX_FACT_ROWS} facts: choose a shorter period, a longer interval or a narrower filter"
            )));
        }
        Ok(facts)
    }
}

/// Backlog at each bucket's end: tickets created by then minus those done by then, per
/// group, from the totals before the period and the changes within it.
async fn backlog(
    reader: &FactReader<'_>,
    buckets: &Buckets,
    sums: &mut BTreeMap<Key, Sums>,
) -> ServiceResult<()> {
    // Net change per (group, bucket); the totals before the period go in bucket 0.
    let mut net: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let start = Some(reader.input.start);
    for (kind, from, grain, sign) in [
        (FactKind::Created, None, Grain::Whole, 1),
        (FactKind::Done, None, Grain::Whole, -1),
        (
            FactKind::Created,
            start,
            Grain::Slot(buckets.slot_seconds()),
            1,
        ),
        (
            FactKind::Done,
            start,
            Grain::Slot(buckets.slot_seconds()),
            -1,
        ),
    ] {
        for fact in reader.read(kind, from, grain).await? {
            let bucket = match grain {
                Grain::Whole => Some(0),
                // A slot that began before the period holds only facts within it.
                _ => buckets.index_of(fact.at.max(buckets.start(0))),
            };
            if let Some(bucket) = bucket {
                let (_, group, _) = key_of(bucket, &fact);
                net.entry(group).or_insert_with(|| vec![0; buckets.len()])[bucket] +=
                    sign * fact.count;
            }
        }
    }
    for (group, changes) in net {
        let mut open = 0;
        for (bucket, change) in changes.into_iter().enumerate() {
            open += change;
            if open != 0 {
                sums.entry((bucket, group.clone(), String::new()))
                    .or_default()
                    .count = open;
            }
        }
    }
    Ok(())
}

/// The rows as CSV: a header, then one line per row, times in the report's zone.
pub fn to_csv(rows: &[ReportRow], zone: Tz) -> ServiceResult<Vec<u8>> {
    let mut out = csv::Writer::from_writer(Vec::new());
    let fail = |e: csv::Error| ServiceError::Internal(StoreError::Corrupt(format!("CSV: {e}")));
    out.write_record([
        "bucket_start",
        "group",
        "group_label",
        "series",
        "count",
        "value",
        "mean",
        "median",
        "p90",
    ])
    .map_err(fail)?;
    for r in rows {
        out.write_record([
            r.bucket_start.with_timezone(&zone).to_rfc3339(),
            r.group.clone(),
            r.group_label.clone(),
            r.series.clone(),
            r.count.to_string(),
            r.value.to_string(),
            r.mean.to_string(),
            r.median.to_string(),
            r.p90.to_string(),
        ])
        .map_err(fail)?;
    }
    out.into_inner()
        .map_err(|e| ServiceError::Internal(StoreError::Corrupt(format!("CSV: {e}"))))
}
