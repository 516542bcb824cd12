//! Renders a [`TicketQuery`] as one parameterised SELECT. Values only ever travel as bind
//! parameters; the SQL text is assembled from fixed fragments.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::database::Value;
use super::dialect::Dialect;
use super::search::SearchQuery;
use super::tickets::SELECT_TICKETS;
use super::{SortField, SortValue, TicketQuery};
use crate::domain::filter::{AssigneeRef, Expr, Op, TicketPredicate};
use crate::domain::search::{MAX_RESULTS, SearchText};

/// A bind parameter of a rendered query.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Param {
    Text(String),
    Int(i64),
    Uuid(Uuid),
    Time(DateTime<Utc>),
}

impl From<Param> for Value<'static> {
    fn from(param: Param) -> Self {
        match param {
            Param::Text(s) => s.into(),
            Param::Int(i) => i.into(),
            Param::Uuid(u) => u.into(),
            Param::Time(t) => t.into(),
        }
    }
}

/// SQL and its parameters, built from a filter; shared with the report queries.
pub(super) struct Builder {
    pub sql: String,
    pub params: Vec<Param>,
    /// The moment "overdue" and relative times are judged at.
    pub now: DateTime<Utc>,
    pub dialect: Dialect,
}

/// A running clock of the ticket `t`.
const RUNNING_CLOCK: &str = "SELECT 1 FROM sla_clocks c WHERE c.ticket_id = t.id \
    AND c.running_since IS NOT NULL AND NOT c.stopped";

impl Builder {
    pub fn new(sql: String, now: DateTime<Utc>, dialect: Dialect) -> Self {
        Builder {
            sql,
            params: Vec::new(),
            now,
            dialect,
        }
    }

    /// Adds a parameter and returns its placeholder (`$1`, `$2`, …); both backends accept it.
    pub fn param(&mut self, p: Param) -> String {
        self.params.push(p);
        format!("${}", self.params.len())
    }

    fn expr(&mut self, expr: &Expr<TicketPredicate>) {
        match expr {
            Expr::Cond(p) => self.predicate(p),
            Expr::And(items) => self.join(items, " AND "),
            Expr::Or(items) => self.join(items, " OR "),
            Expr::Not(inner) => {
                self.sql.push_str("NOT (");
                self.expr(inner);
                self.sql.push(')');
            }
        }
    }

    fn join(&mut self, items: &[Expr<TicketPredicate>], sep: &str) {
        self.sql.push('(');
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                self.sql.push_str(sep);
            }
            self.expr(item);
        }
        self.sql.push(')');
    }

    fn compare(&mut self, column: &str, op: Op, p: Param) {
        let placeholder = self.param(p);
        self.sql
            .push_str(&format!("{column} {} {placeholder}", op.as_sql()));
    }

    /// `= x` / `<> x` on a nullable column, where `None` means "is empty" and "not x"
    /// includes the empty rows (an unassigned ticket is not assigned to x).
    fn nullable_id(&mut self, column: &str, op: Op, id: Option<Uuid>) {
        let negate = op == Op::Ne;
        match id {
            None if negate => self.sql.push_str(&format!("{column} IS NOT NULL")),
            None => self.sql.push_str(&format!("{column} IS NULL")),
            Some(id) => {
                let placeholder = self.param(Param::Uuid(id));
                if negate {
                    self.sql
                        .push_str(&format!("({column} IS NULL OR {column} <> {placeholder})"));
                } else {
                    self.sql.push_str(&format!("{column} = {placeholder}"));
                }
            }
        }
    }

    fn predicate(&mut self, predicate: &TicketPredicate) {
        match predicate {
            TicketPredicate::Status(op, s) => {
                self.compare("t.status", *op, Param::Text(s.as_str().into()))
            }
            TicketPredicate::Priority(op, p) => {
                self.compare("t.priority_rank", *op, Param::Int(p.rank()))
            }
            TicketPredicate::Type(op, ty) => {
                self.compare("t.ticket_type", *op, Param::Text(ty.as_str().into()))
            }
            TicketPredicate::Assignee(op, who) => match who {
                AssigneeRef::Agent(id) => self.nullable_id("t.assignee_id", *op, Some(*id)),
                AssigneeRef::Nobody => self.nullable_id("t.assignee_id", *op, None),
                // The service resolves "me" before querying; an unresolved one matches nothing.
                AssigneeRef::Me => self.sql.push_str("1 = 0"),
            },
            TicketPredicate::Queue(op, queue) => self.nullable_id("t.queue_id", *op, *queue),
            TicketPredicate::Contact(op, id) => self.compare("t.contact_id", *op, Param::Uuid(*id)),
            TicketPredicate::Tag(op, tag) => {
                let placeholder = self.param(Param::Text(tag.clone()));
                let not = if *op == Op::Ne { "NOT " } else { "" };
                self.sql.push_str(&format!(
                    "{not}EXISTS (SELECT 1 FROM ticket_tags tt WHERE tt.ticket_id = t.id AND tt.tag = {placeholder})"
                ));
            }
            TicketPredicate::Number(op, n) => self.compare("t.number", *op, Param::Int(*n)),
            TicketPredicate::CreatedAt(op, at) => {
                self.compare("t.created_at", *op, Param::Time(at.at(self.now)))
            }
            TicketPredicate::UpdatedAt(op, at) => {
                self.compare("t.updated_at", *op, Param::Time(at.at(self.now)))
            }
            TicketPredicate::CustomField(op, key, value) => {
                let key = self.param(Param::Text(key.clone()));
                let field = self.dialect.json_text("t.custom_fields", &key);
                let value = self.param(Param::Text(value.clone()));
                let sql = if *op == Op::Ne {
                    format!("({field} IS NULL OR {field} <> {value})")
                } else {
                    format!("{field} = {value}")
                };
                self.sql.push_str(&sql);
            }
            TicketPredicate::ContactField(op, which, value) => {
                let value = self.param(Param::Text(value.to_lowercase()));
                let not = if *op == Op::Ne { "NOT " } else { "" };
                self.sql
                    .push_str(&format!("{not}(LOWER({}) = {value})", which.column()));
            }
            TicketPredicate::Source(op, source) => match source {
                Some(source) => {
                    let placeholder = self.param(Param::Text(source.clone()));
                    let sql = if *op == Op::Ne {
                        format!(
                            "(t.conversation_source IS NULL OR t.conversation_source <> {placeholder})"
                        )
                    } else {
                        format!("t.conversation_source = {placeholder}")
                    };
                    self.sql.push_str(&sql);
                }
                None if *op == Op::Ne => self.sql.push_str("t.conversation_source IS NOT NULL"),
                None => self.sql.push_str("t.conversation_source IS NULL"),
            },
            TicketPredicate::HasReply(replied) => {
                // A person's public reply: automatic ones (workflows, auto-responses) do
                // not count, as for SLA clocks.
                let not = if *replied { "" } else { "NOT " };
                self.sql.push_str(&format!(
                    "{not}EXISTS (SELECT 1 FROM ticket_events e WHERE e.ticket_id = t.id \
                     AND e.event_type = 'reply_added' AND e.actor_kind NOT IN ('workflow', 'system'))"
                ));
            }
            TicketPredicate::Satisfaction(op, score) => {
                self.compare("COALESCE(t.satisfaction_score, 0)", *op, Param::Int(*score))
            }
            TicketPredicate::ContactVip(vip) => {
                self.sql.push_str(if *vip { "c.vip" } else { "NOT c.vip" });
            }
            TicketPredicate::Channel(op, channel) => match channel {
                Some(c) => {
                    let placeholder = self.param(Param::Text(c.as_str().into()));
                    // "Not on chat" includes tickets with no conversation.
                    let sql = if *op == Op::Ne {
                        format!("(t.channel IS NULL OR t.channel <> {placeholder})")
                    } else {
                        format!("t.channel = {placeholder}")
                    };
                    self.sql.push_str(&sql);
                }
                None if *op == Op::Ne => self.sql.push_str("t.channel IS NOT NULL"),
                None => self.sql.push_str("t.channel IS NULL"),
            },
            TicketPredicate::SlaBreached(breached) => {
                let now = self.param(Param::Time(self.now));
                let not = if *breached { "" } else { "NOT " };
                self.sql.push_str(&format!(
                    "{not}EXISTS (SELECT 1 FROM sla_clocks c WHERE c.ticket_id = t.id AND (c.breached \
                     OR (c.running_since IS NOT NULL AND NOT c.stopped AND c.due_at <= {now})))"
                ));
            }
            TicketPredicate::SlaDueAt(op, at) => {
                let at = self.param(Param::Time(at.at(self.now)));
                self.sql.push_str(&format!(
                    "EXISTS ({RUNNING_CLOCK} AND c.due_at {} {at})",
                    op.as_sql()
                ));
            }
        }
    }
}

fn sort_column(field: SortField) -> &'static str {
    match field {
        SortField::CreatedAt => "t.created_at",
        SortField::UpdatedAt => "t.updated_at",
        SortField::Priority => "t.priority_rank",
        SortField::Number => "t.number",
    }
}

/// Builds the SELECT for one page. Rows are ordered by the sort column, then by number,
/// which is unique, so the keyset `(value, number)` identifies a position exactly.
pub(super) fn render(query: &TicketQuery, dialect: Dialect) -> (String, Vec<Param>) {
    let mut b = Builder {
        sql: format!("{SELECT_TICKETS} WHERE 1 = 1"),
        params: Vec::new(),
        now: query.now,
        dialect,
    };
    conditions(&mut b, query);
    let column = sort_column(query.sort);
    let (cmp, direction) = if query.descending {
        ("<", "DESC")
    } else {
        (">", "ASC")
    };
    if let Some(after) = &query.after {
        if query.sort == SortField::Number {
            let n = b.param(Param::Int(after.number));
            b.sql.push_str(&format!(" AND t.number {cmp} {n}"));
        } else {
            let value = match after.value {
                SortValue::Time(t) => Param::Time(t),
                SortValue::Int(i) => Param::Int(i),
            };
            let v = b.param(value);
            let n = b.param(Param::Int(after.number));
            b.sql
                .push_str(&format!(" AND ({column}, t.number) {cmp} ({v}, {n})"));
        }
    }
    if query.sort == SortField::Number {
        b.sql.push_str(&format!(" ORDER BY t.number {direction}"));
    } else {
        b.sql.push_str(&format!(
            " ORDER BY {column} {direction}, t.number {direction}"
        ));
    }
    let limit = b.param(Param::Int(query.limit));
    b.sql.push_str(&format!(" LIMIT {limit}"));
    (b.sql, b.params)
}

/// Builds a count of the tickets a query's filter and scope select (its order, position
/// and limit aside).
pub(super) fn render_count(query: &TicketQuery, dialect: Dialect) -> (String, Vec<Param>) {
    let mut b = Builder {
        sql: format!(
            "SELECT COUNT(*) FROM tickets t{} WHERE 1 = 1",
            contact_join(query)
        ),
        params: Vec::new(),
        now: query.now,
        dialect,
    };
    conditions(&mut b, query);
    (b.sql, b.params)
}

/// The tsquery of a search on PostgreSQL: each term a phrase query under the configured
/// text-search configuration, all ANDed, exclusions negated. `param` binds a term's text
/// and returns its placeholder.
pub(super) fn pg_tsquery(
    text: &SearchText,
    config: &str,
    param: &mut dyn FnMut(String) -> String,
) -> String {
    let parts: Vec<String> = text
        .terms
        .iter()
        .map(|term| {
            let not = if term.excluded { "!!" } else { "" };
            format!(
                "{not}phraseto_tsquery({config}::regconfig, {})",
                param(term.text.clone())
            )
        })
        .collect();
    format!("({})", parts.join(" && "))
}

/// Builds a search: the most recent [`MAX_RESULTS`] matches within the query's filter and
/// scope, ranked, one page of them. PostgreSQL rows are `(ticket id, score)`; SQLite rows
/// add the three snippets of [`SNIPPET_FIELDS`](super::search::SNIPPET_FIELDS).
pub(super) fn render_search(
    search: &SearchQuery,
    dialect: Dialect,
    config: &str,
) -> (String, Vec<Param>) {
    let mut b = Builder {
        sql: String::new(),
        params: Vec::new(),
        now: search.scope.now,
        dialect,
    };
    let contact = contact_join(&search.scope);
    match dialect {
        Dialect::Postgres => {
            let config = b.param(Param::Text(config.to_owned()));
            let tsquery = pg_tsquery(&search.text, &config, &mut |t| b.param(Param::Text(t)));
            // Bots match, and are ranked on, public text only: the subject (A) and the
            // rest of it (B). The index finds the documents holding the wanted words;
            // the whole query (exclusions too) is then checked on the public part alone,
            // so an excluded word in a note cannot hide a ticket from a bot.
            let (matches, weights) = if search.internal {
                (format!("s.doc @@ {tsquery}"), "")
            } else {
                let wanted = SearchText {
                    terms: search
                        .text
                        .terms
                        .iter()
                        .filter(|t| !t.excluded)
                        .cloned()
                        .collect(),
                };
                let wanted = pg_tsquery(&wanted, &config, &mut |t| b.param(Param::Text(t)));
                (
                    format!("s.doc @@ {wanted} AND ts_filter(s.doc, '{{a,b}}') @@ {tsquery}"),
                    "'{0, 0, 0.4, 1}', ",
                )
            };
            b.sql = format!(
                "WITH hits AS (SELECT s.ticket_id, s.number, s.doc \
                 FROM ticket_search s JOIN tickets t ON t.id = s.ticket_id{contact} \
                 WHERE {matches}"
            );
            conditions(&mut b, &search.scope);
            b.sql.push_str(&format!(
                " ORDER BY s.number DESC LIMIT {MAX_RESULTS}) \
                 SELECT ticket_id, ts_rank({weights}doc, {tsquery})::float8 AS score FROM hits \
                 ORDER BY score DESC, number DESC"
            ));
        }
        Dialect::Sqlite => {
            let mut fts = search.text.to_fts5();
            if !search.internal {
                fts = format!("{{subject public_text}} : {fts}");
            }
            let fts = b.param(Param::Text(fts));
            let snippet = |column: usize| {
                format!("snippet(ticket_search, {column}, char(2), char(3), ' … ', 16)")
            };
            // Bots are ranked on public text only.
            let (internal, note_weight) = if search.internal {
                (snippet(2), "1.0")
            } else {
                ("''".to_owned(), "0.0")
            };
            b.sql = format!(
                "WITH hits AS (SELECT t.id AS ticket_id, t.number AS number, \
                 bm25(ticket_search, 10.0, 4.0, {note_weight}) AS rank, {} AS s0, {} AS s1, \
                 {internal} AS s2 \
                 FROM ticket_search JOIN tickets t ON t.number = ticket_search.rowid{contact} \
                 WHERE ticket_search MATCH {fts}",
                snippet(0),
                snippet(1)
            );
            conditions(&mut b, &search.scope);
            // bm25 is lower for better matches.
            b.sql.push_str(&format!(
                " ORDER BY ticket_search.rowid DESC LIMIT {MAX_RESULTS}) \
                 SELECT ticket_id, -rank, s0, s1, s2 FROM hits ORDER BY rank, number DESC"
            ));
        }
    }
    let limit = b.param(Param::Int(search.limit));
    let offset = b.param(Param::Int(search.offset));
    b.sql.push_str(&format!(" LIMIT {limit} OFFSET {offset}"));
    (b.sql, b.params)
}

/// The join of `contacts c` when the query's filter reads it.
pub(super) fn contact_join(query: &TicketQuery) -> &'static str {
    match &query.filter {
        Some(f) if reads_contact(f) => " JOIN contacts c ON c.id = t.contact_id",
        _ => "",
    }
}

/// Whether `filter` reads the contact's fields (and so needs `contacts c` joined).
pub(super) fn reads_contact(filter: &Expr<TicketPredicate>) -> bool {
    match filter {
        Expr::Cond(p) => matches!(
            p,
            TicketPredicate::ContactField(..) | TicketPredicate::ContactVip(_)
        ),
        Expr::And(items) | Expr::Or(items) => items.iter().any(reads_contact),
        Expr::Not(inner) => reads_contact(inner),
    }
}

/// The filter and the source scope, as `AND …` clauses.
pub(super) fn conditions(b: &mut Builder, query: &TicketQuery) {
    if let Some(filter) = &query.filter {
        b.sql.push_str(" AND ");
        b.expr(filter);
    }
    if !query.sources.is_empty() {
        let sources: Vec<String> = query
            .sources
            .iter()
            .map(|s| b.param(Param::Text(s.clone())))
            .collect();
        b.sql.push_str(&format!(
            " AND EXISTS (SELECT 1 FROM conversations cv WHERE cv.ticket_id = t.id \
             AND cv.source IN ({}))",
            sources.join(", ")
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::filter::TicketFilter;
    use crate::store::Keyset;

    fn query(filter: &str) -> TicketQuery {
        TicketQuery {
            filter: TicketFilter::parse_text(filter).unwrap(),
            sort: SortField::CreatedAt,
            descending: true,
            after: None,
            limit: 10,
            now: Utc::now(),
            sources: Vec::new(),
        }
    }

    #[test]
    fn user_values_become_parameters_never_sql() {
        let (sql, params) = render(
            &query(r#"tag = "x' OR 1=1 --" AND status = OPEN"#),
            Dialect::Postgres,
        );
        assert!(!sql.contains("1=1"), "{sql}");
        assert_eq!(
            params,
            vec![
                Param::Text("x' or 1=1 --".into()),
                Param::Text("OPEN".into()),
                Param::Int(10)
            ]
        );
    }

    #[test]
    fn not_assigned_to_someone_includes_unassigned_tickets() {
        let id = Uuid::nil();
        let (sql, _) = render(
            &query(&format!(r#"assignee_id != "{id}""#)),
            Dialect::Postgres,
        );
        assert!(
            sql.contains("(t.assignee_id IS NULL OR t.assignee_id <> $1)"),
            "{sql}"
        );
    }

    #[test]
    fn a_source_scope_is_a_parameterised_conversation_check() {
        let mut q = query("");
        q.sources = vec!["helpbot".into(), "x') OR (1=1".into()];
        let (sql, params) = render(&q, Dialect::Postgres);
        assert!(sql.contains("cv.source IN ($1, $2)"), "{sql}");
        assert_eq!(
            params[..2],
            [
                Param::Text("helpbot".into()),
                Param::Text("x') OR (1=1".into())
            ]
        );
    }

    #[test]
    fn keyset_continues_after_the_last_row() {
        let mut q = query("");
        q.after = Some(Keyset {
            value: SortValue::Int(3),
            number: 42,
        });
        q.sort = SortField::Priority;
        let (sql, params) = render(&q, Dialect::Postgres);
        assert!(
            sql.contains("(t.priority_rank, t.number) < ($1, $2)"),
            "{sql}"
        );
        assert!(sql.ends_with("ORDER BY t.priority_rank DESC, t.number DESC LIMIT $3"));
        assert_eq!(params, vec![Param::Int(3), Param::Int(42), Param::Int(10)]);
    }
}
