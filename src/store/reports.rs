//! What reports read: per-ticket milestones (`tickets.created_at`, `resolved_at`,
//! `first_response_at`, `satisfaction_rated_at`), settled SLA clocks and time entries,
//! each a range scan on its own index (migrations `0019_report_milestones.sql` and
//! `0020_view_and_report_indexes.sql`), summed per slot of time in the database or read
//! one row per fact for durations.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::database::Statement;
use super::ticket_query::{Builder, Param, conditions, contact_join};
use super::{SqlStore, StoreResult, TicketQuery};
use crate::domain::report::{Dimension, MAX_FACT_ROWS, SATISFIED_SCORE};

/// Which facts a report reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FactKind {
    /// Tickets by creation.
    Created,
    /// Resolved or closed tickets by their latest resolution.
    Resolved,
    /// Tickets that are done (resolved, closed or merged) by when they became so.
    Done,
    /// Tickets by a person's first public reply; `start` is the creation.
    FirstResponse,
    /// Resolved or closed tickets by resolution; `start` is the creation.
    Resolution,
    /// Settled SLA clocks (met when stopped in time, missed when breached); `series` is
    /// the SLA metric, `total` the clocks met.
    Sla,
    /// Ratings by when they were given; `total` sums the scores, `extra` counts the
    /// satisfied ones.
    Csat,
    /// Time entries; `total` sums their seconds.
    TimeLogged,
}

/// How facts come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grain {
    /// Summed per slot of this many seconds, counted from the epoch; `at` is the slot's
    /// start.
    Slot(i64),
    /// Summed over the whole range; `at` is 0.
    Whole,
    /// One row per fact.
    Each,
}

#[derive(Debug, Clone)]
pub struct FactQuery {
    pub kind: FactKind,
    /// From this moment (inclusive), or from the beginning.
    pub from: Option<DateTime<Utc>>,
    /// To this moment (exclusive).
    pub to: DateTime<Utc>,
    pub dimension: Option<Dimension>,
    /// The tickets counted: `scope`'s filter, source scope and moment.
    pub scope: TicketQuery,
    pub grain: Grain,
}

/// A sum of facts (or one fact), at `at` seconds since the epoch, in a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fact {
    pub at: i64,
    /// For [`Grain::Each`]: when the measured duration started.
    pub start: i64,
    /// The group: an id (queue, agent) or a text (priority, channel, type, tag); neither
    /// when the ticket has none.
    pub group_id: Option<Uuid>,
    pub group_text: Option<String>,
    pub series: String,
    pub count: i64,
    pub total: i64,
    pub extra: i64,
}

#[async_trait]
pub trait ReportStore {
    async fn report_facts(&self, query: &FactQuery) -> StoreResult<Vec<Fact>>;
}

/// The parts of a fact query that depend on its kind.
struct Source {
    from: &'static str,
    at: &'static str,
    value: String,
    extra: String,
    series: &'static str,
    only: &'static str,
}

fn source(kind: FactKind) -> Source {
    let tickets = |at, only| Source {
        from: "tickets t",
        at,
        value: "1".into(),
        extra: "0".into(),
        series: "''",
        only,
    };
    const DONE: &str = " AND t.status IN ('RESOLVED', 'CLOSED')";
    match kind {
        FactKind::Created => tickets("t.created_at", ""),
        FactKind::Resolved | FactKind::Resolution => tickets("t.resolved_at", DONE),
        FactKind::Done => tickets("t.resolved_at", ""),
        FactKind::FirstResponse => tickets("t.first_response_at", ""),
        FactKind::Csat => Source {
            value: "t.satisfaction_score".into(),
            extra: format!("CASE WHEN t.satisfaction_score >= {SATISFIED_SCORE} THEN 1 ELSE 0 END"),
            ..tickets("t.satisfaction_rated_at", "")
        },
        FactKind::Sla => Source {
            from: "sla_clocks k JOIN tickets t ON t.id = k.ticket_id",
            // A clock settles when it stops; one still running past its target, when it
            // fell due.
            at: "CASE WHEN k.stopped THEN k.stopped_at ELSE k.due_at END",
            value: "CASE WHEN k.breached THEN 0 ELSE 1 END".into(),
            extra: "0".into(),
            series: "k.metric",
            only: "",
        },
        FactKind::TimeLogged => Source {
            from: "time_entries e JOIN tickets t ON t.id = e.ticket_id",
            value: "e.seconds".into(),
            ..tickets("e.created_at", "")
        },
    }
}

/// The group columns `(id, text)` of a dimension, and any join it needs.
fn group(query: &FactQuery, null_uuid: &'static str) -> (&'static str, &'static str, &'static str) {
    match query.dimension {
        None => (null_uuid, "NULL", ""),
        Some(Dimension::Queue) => ("t.queue_id", "NULL", ""),
        Some(Dimension::Assignee) if query.kind == FactKind::TimeLogged => {
            ("e.agent_id", "NULL", "")
        }
        Some(Dimension::Assignee) => ("t.assignee_id", "NULL", ""),
        Some(Dimension::Priority) => (null_uuid, "t.priority", ""),
        Some(Dimension::Channel) => (null_uuid, "t.channel", ""),
        Some(Dimension::Type) => (null_uuid, "t.ticket_type", ""),
        Some(Dimension::Tag) => (
            null_uuid,
            "tg.tag",
            " LEFT JOIN ticket_tags tg ON tg.ticket_id = t.id",
        ),
    }
}

/// Builds a fact query. Rows: `(at, start, group id, group text, series, count, total,
/// extra)`.
pub(super) fn render_facts(query: &FactQuery, b: &mut Builder) {
    let d = b.dialect;
    let src = source(query.kind);
    let (gid, gtext, group_join) = group(query, d.null_uuid());
    let at = d.epoch_seconds(src.at);
    // Literals are cast: PostgreSQL types a bare number as a 4-byte integer.
    const ZERO: &str = "CAST(0 AS bigint)";
    let (select_at, start, grouped) = match query.grain {
        Grain::Slot(seconds) => (
            format!("({at} / {seconds}) * {seconds}"),
            ZERO.to_owned(),
            true,
        ),
        Grain::Whole => (ZERO.to_owned(), ZERO.to_owned(), true),
        Grain::Each => (at, d.epoch_seconds("t.created_at"), false),
    };
    let (count, total, extra) = if grouped {
        (
            "COUNT(*)".to_owned(),
            format!("CAST(SUM({}) AS bigint)", src.value),
            format!("CAST(SUM({}) AS bigint)", src.extra),
        )
    } else {
        (
            "CAST(1 AS bigint)".to_owned(),
            format!("CAST({} AS bigint)", src.value),
            format!("CAST({} AS bigint)", src.extra),
        )
    };
    let contact = contact_join(&query.scope);
    b.sql = format!(
        "SELECT {select_at}, {start}, {gid}, {gtext}, {series}, {count}, {total}, {extra} \
         FROM {from}{contact}{group_join} WHERE 1 = 1{only}",
        series = src.series,
        from = src.from,
        only = src.only,
    );
    // The range, on the indexed column itself.
    let to = b.param(Param::Time(query.to));
    let from = query.from.map(|f| b.param(Param::Time(f)));
    let range = |column: &str| match &from {
        Some(from) => format!("{column} >= {from} AND {column} < {to}"),
        None => format!("{column} < {to}"),
    };
    if query.kind == FactKind::Sla {
        b.sql.push_str(&format!(
            " AND ((k.stopped AND {}) OR (NOT k.stopped AND k.breached AND {}))",
            range("k.stopped_at"),
            range("k.due_at")
        ));
    } else {
        b.sql.push_str(&format!(" AND {}", range(src.at)));
    }
    conditions(b, &query.scope);
    if grouped {
        b.sql.push_str(" GROUP BY 1, 3, 4, 5");
    }
    // One more than may be read tells the caller there were too many.
    b.sql
        .push_str(&format!(" LIMIT {}", MAX_FACT_ROWS as i64 + 1));
}

#[async_trait]
impl ReportStore for SqlStore {
    #[tracing::instrument(skip_all, fields(kind = ?query.kind))]
    async fn report_facts(&self, query: &FactQuery) -> StoreResult<Vec<Fact>> {
        let mut b = Builder::new(String::new(), query.scope.now, self.pools.dialect());
        render_facts(query, &mut b);
        type Row = (
            i64,
            i64,
            Option<Uuid>,
            Option<String>,
            String,
            i64,
            Option<i64>,
            Option<i64>,
        );
        let rows: Vec<Row> = b
            .params
            .into_iter()
            .fold(Statement::owned(b.sql), Statement::bind)
            .fetch_all(self.pools.routed())
            .await?;
        Ok(rows
            .into_iter()
            .map(
                |(at, start, group_id, group_text, series, count, total, extra)| Fact {
                    at,
                    start,
                    group_id,
                    group_text,
                    series,
                    count,
                    total: total.unwrap_or(0),
                    extra: extra.unwrap_or(0),
                },
            )
            .collect())
    }
}
