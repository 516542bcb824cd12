//! Full-text search: each ticket's search document, written in the transaction of the
//! change that adds text, and the search itself. The backends differ here more than
//! anywhere else: PostgreSQL keeps a weighted `tsvector` under a GIN index, SQLite an
//! FTS5 table; see the migrations `0018_search.sql`.

use std::collections::HashMap;

use async_trait::async_trait;
use uuid::Uuid;

use super::database::{Statement, Tx};
use super::dialect::Dialect;
use super::{SqlStore, StoreResult, TicketQuery};
use crate::domain::event::NewEvent;
use crate::domain::search::{IndexedText, MAX_INDEXED_BYTES, SearchText};
use crate::domain::validation::clip;

/// One search: the text, the tickets it may find (`scope`'s filter, source scope and
/// moment; its order, position and limit aside) and the page.
#[derive(Debug, Clone)]
pub struct SearchQuery {
    pub text: SearchText,
    pub scope: TicketQuery,
    /// Internal notes count (agents and admins), or only public text (bots, gateways).
    pub internal: bool,
    pub offset: i64,
    pub limit: i64,
}

/// A match: the ticket, its relevance (higher is better) and snippets as
/// `(field, text with highlight markers)`.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    pub ticket_id: Uuid,
    pub score: f64,
    pub snippets: Vec<(&'static str, String)>,
}

/// The fields snippets are drawn from, in the order of the search table's text.
pub const SNIPPET_FIELDS: [&str; 3] = ["subject", "text", "internal"];

#[async_trait]
pub trait SearchStore {
    /// A page of matches, most relevant first, among the most recent
    /// [`MAX_RESULTS`](crate::domain::search::MAX_RESULTS) matching tickets.
    async fn search_tickets(&self, query: &SearchQuery) -> StoreResult<Vec<SearchHit>>;

    /// Makes `config` (a PostgreSQL text-search configuration, e.g. `english`) the one
    /// documents are built and queries are read with, rebuilding the documents if it
    /// changed. An unknown configuration is an error. SQLite's tokenizer is fixed.
    async fn configure_search(&self, config: &str) -> StoreResult<()>;
}

/// Searchable text of one ticket added by one transaction.
#[derive(Debug, Default)]
struct Addition {
    number: i64,
    text: IndexedText,
}

/// Adds the text of `events` (and `description` for the ticket created with them) to
/// their tickets' search documents.
pub(super) async fn index_events(
    tx: &mut Tx,
    events: &[NewEvent],
    created: Option<(Uuid, &str)>,
) -> StoreResult<()> {
    let mut order: Vec<Uuid> = Vec::new();
    let mut additions: HashMap<Uuid, Addition> = HashMap::new();
    for event in events {
        let Some(mut text) = IndexedText::of(event) else {
            continue;
        };
        if let Some((id, description)) = created
            && id == event.ticket_id
            && !text.subject.is_empty()
            && !additions.contains_key(&id)
        {
            text.public = description.to_owned();
        }
        let entry = additions.entry(event.ticket_id).or_insert_with(|| {
            order.push(event.ticket_id);
            Addition {
                number: event.ticket_number,
                ..Addition::default()
            }
        });
        entry.text.extend(text);
    }
    for id in order {
        if let Some(addition) = additions.remove(&id) {
            append(tx, id, addition).await?;
        }
    }
    Ok(())
}

/// PostgreSQL: one upsert. Text is appended while the document holds less than the bound
/// (`$6`); a new subject always rebuilds the document, so the old subject's words leave it.
const PG_APPEND: &str = "\
INSERT INTO ticket_search AS s (ticket_id, number, public_text, internal_text, doc) \
SELECT $1, $2, $4, $5, setweight(to_tsvector(c.name::regconfig, $3), 'A') \
    || setweight(to_tsvector(c.name::regconfig, $4), 'B') \
    || setweight(to_tsvector(c.name::regconfig, $5), 'D') \
FROM search_config c \
ON CONFLICT (ticket_id) DO UPDATE SET \
    public_text = CASE WHEN octet_length(s.public_text) + octet_length(s.internal_text) < $6 \
        THEN concat_ws(E'\\n', NULLIF(s.public_text, ''), NULLIF($4, '')) ELSE s.public_text END, \
    internal_text = CASE WHEN octet_length(s.public_text) + octet_length(s.internal_text) < $6 \
        THEN concat_ws(E'\\n', NULLIF(s.internal_text, ''), NULLIF($5, '')) ELSE s.internal_text END, \
    doc = CASE \
        WHEN $3 <> '' THEN setweight(to_tsvector((SELECT name::regconfig FROM search_config), $3), 'A') \
            || setweight(to_tsvector((SELECT name::regconfig FROM search_config), \
                CASE WHEN octet_length(s.public_text) + octet_length(s.internal_text) < $6 \
                THEN concat_ws(E'\\n', NULLIF(s.public_text, ''), NULLIF($4, '')) \
                ELSE s.public_text END), 'B') \
            || setweight(to_tsvector((SELECT name::regconfig FROM search_config), \
                CASE WHEN octet_length(s.public_text) + octet_length(s.internal_text) < $6 \
                THEN concat_ws(E'\\n', NULLIF(s.internal_text, ''), NULLIF($5, '')) \
                ELSE s.internal_text END), 'D') \
        WHEN octet_length(s.public_text) + octet_length(s.internal_text) < $6 \
            THEN s.doc || excluded.doc \
        ELSE s.doc END";

async fn append(tx: &mut Tx, ticket_id: Uuid, addition: Addition) -> StoreResult<()> {
    let max = MAX_INDEXED_BYTES as usize;
    let IndexedText {
        subject,
        public,
        internal,
    } = addition.text;
    let public = clip(&public, max).to_owned();
    let internal = clip(&internal, max.saturating_sub(public.len())).to_owned();
    match tx.dialect() {
        Dialect::Postgres => {
            let append = Statement::new(PG_APPEND)
                .bind(ticket_id)
                .bind(addition.number)
                .bind(subject)
                .bind(public)
                .bind(internal)
                .bind(MAX_INDEXED_BYTES);
            tx.defer(append).await?;
        }
        Dialect::Sqlite => {
            let held: Option<(i64,)> = Statement::new(
                "SELECT length(CAST(public_text AS BLOB)) + length(CAST(internal_text AS BLOB)) \
                 FROM ticket_search WHERE rowid = $1",
            )
            .bind(addition.number)
            .fetch_optional(&mut *tx)
            .await?;
            let statement = match held {
                None => Statement::new(
                    "INSERT INTO ticket_search (rowid, subject, public_text, internal_text) \
                     VALUES ($1, $2, $3, $4)",
                ),
                Some(_) => Statement::new(
                    "UPDATE ticket_search SET \
                     subject = CASE WHEN $2 = '' THEN subject ELSE $2 END, \
                     public_text = CASE WHEN $3 = '' THEN public_text \
                         WHEN public_text = '' THEN $3 ELSE public_text || char(10) || $3 END, \
                     internal_text = CASE WHEN $4 = '' THEN internal_text \
                         WHEN internal_text = '' THEN $4 ELSE internal_text || char(10) || $4 END \
                     WHERE rowid = $1",
                ),
            };
            // Past the bound only a new subject is taken.
            let (public, internal) = match held {
                Some((bytes,)) if bytes >= MAX_INDEXED_BYTES => (String::new(), String::new()),
                _ => (public, internal),
            };
            statement
                .bind(addition.number)
                .bind(subject)
                .bind(public)
                .bind(internal)
                .execute(&mut *tx)
                .await?;
        }
    }
    Ok(())
}

/// Options of PostgreSQL's `ts_headline`: up to two fragments of about 12–24 words.
const PG_HEADLINE: &str = "'StartSel=\"\u{2}\", StopSel=\"\u{3}\", MaxFragments=2, \
    MaxWords=24, MinWords=12, FragmentDelimiter=\" … \"'";

#[async_trait]
impl SearchStore for SqlStore {
    #[tracing::instrument(skip_all)]
    async fn search_tickets(&self, query: &SearchQuery) -> StoreResult<Vec<SearchHit>> {
        let dialect = self.pools.dialect();
        let config = self.search_config_name();
        let (sql, params) = super::ticket_query::render_search(query, dialect, &config);
        let statement = params
            .into_iter()
            .fold(Statement::owned(sql), Statement::bind);
        match dialect {
            Dialect::Postgres => {
                let rows: Vec<(Uuid, f64)> = statement.fetch_all(self.pools.routed()).await?;
                if rows.is_empty() {
                    return Ok(Vec::new());
                }
                let snippets = self.pg_snippets(query, &rows).await?;
                Ok(rows
                    .into_iter()
                    .map(|(ticket_id, score)| SearchHit {
                        ticket_id,
                        score,
                        snippets: snippets.get(&ticket_id).cloned().unwrap_or_default(),
                    })
                    .collect())
            }
            Dialect::Sqlite => {
                let rows: Vec<(Uuid, f64, String, String, String)> =
                    statement.fetch_all(self.pools.routed()).await?;
                Ok(rows
                    .into_iter()
                    .map(|(ticket_id, score, s0, s1, s2)| SearchHit {
                        ticket_id,
                        score,
                        snippets: SNIPPET_FIELDS.into_iter().zip([s0, s1, s2]).collect(),
                    })
                    .collect())
            }
        }
    }

    async fn configure_search(&self, config: &str) -> StoreResult<()> {
        if self.pools.dialect() == Dialect::Sqlite {
            return Ok(());
        }
        let mut tx = self.pools.begin().await?;
        // Fails for a configuration PostgreSQL does not know; the row lock makes replicas
        // that start together take turns.
        let (current,): (String,) = Statement::new(
            "SELECT name FROM search_config, (SELECT $1::regconfig) known FOR UPDATE OF search_config",
        )
        .bind(config)
        .fetch_one(&mut tx)
        .await?;
        if current != config {
            tracing::info!(from = %current, to = %config, "rebuilding search documents");
            // However many tickets there are: no statement timeout for this one.
            Statement::new("SET LOCAL statement_timeout = 0")
                .execute(&mut tx)
                .await?;
            Statement::new("UPDATE search_config SET name = $1")
                .bind(config)
                .execute(&mut tx)
                .await?;
            Statement::new(
                "UPDATE ticket_search s SET doc = \
                 setweight(to_tsvector($1::regconfig, t.subject), 'A') \
                 || setweight(to_tsvector($1::regconfig, s.public_text), 'B') \
                 || setweight(to_tsvector($1::regconfig, s.internal_text), 'D') \
                 FROM tickets t WHERE t.id = s.ticket_id",
            )
            .bind(config)
            .execute(&mut tx)
            .await?;
        }
        tx.commit().await?;
        if let Ok(mut name) = self.search_config.write() {
            *name = config.to_owned();
        }
        Ok(())
    }
}

impl SqlStore {
    fn search_config_name(&self) -> String {
        self.search_config
            .read()
            .map(|name| name.clone())
            .unwrap_or_else(|_| "english".into())
    }

    /// Highlighted snippets of a page of PostgreSQL matches.
    async fn pg_snippets(
        &self,
        query: &SearchQuery,
        rows: &[(Uuid, f64)],
    ) -> StoreResult<HashMap<Uuid, Vec<(&'static str, String)>>> {
        let mut statement = Statement::owned(String::new());
        let config = statement.add_param(self.search_config_name());
        let tsquery = super::ticket_query::pg_tsquery(&query.text, &config, &mut |text| {
            statement.add_param(text)
        });
        let internal = if query.internal {
            format!("ts_headline(x.cfg, s.internal_text, {tsquery}, {PG_HEADLINE})")
        } else {
            "''".to_owned()
        };
        statement.push(&format!(
            "SELECT s.ticket_id, ts_headline(x.cfg, t.subject, {tsquery}, {PG_HEADLINE}), \
             ts_headline(x.cfg, s.public_text, {tsquery}, {PG_HEADLINE}), {internal} \
             FROM ticket_search s JOIN tickets t ON t.id = s.ticket_id, \
             (SELECT {config}::regconfig AS cfg) x WHERE s.ticket_id IN "
        ));
        statement.push_list(rows.iter().map(|(id, _)| *id));
        let found: Vec<(Uuid, String, String, String)> =
            statement.fetch_all(self.pools.routed()).await?;
        Ok(found
            .into_iter()
            .map(|(id, s0, s1, s2)| (id, SNIPPET_FIELDS.into_iter().zip([s0, s1, s2]).collect()))
            .collect())
    }
}
