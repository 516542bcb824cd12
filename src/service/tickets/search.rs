//! Full-text search over tickets, within a filter, ranked, with snippets.

use std::collections::HashMap;

use super::*;
use crate::domain::search::{MAX_RESULTS, SearchText, parse_marked};
use crate::store::SearchQuery;

/// Results per page when the caller names none, and at most.
const DEFAULT_SEARCH_PAGE: i64 = 20;
const MAX_SEARCH_PAGE: i64 = 100;

/// A snippet of a match: the field it comes from, its text and the highlighted
/// `[start, end)` character spans.
#[derive(Debug, Clone, PartialEq)]
pub struct Snippet {
    pub field: &'static str,
    pub text: String,
    pub highlights: Vec<(i32, i32)>,
}

#[derive(Debug, Clone)]
pub struct SearchResult {
    pub ticket: Ticket,
    pub snippets: Vec<Snippet>,
    pub score: f64,
}

#[derive(Serialize, Deserialize)]
struct SearchPageToken {
    /// Digest of the query and filter the token belongs to.
    q: String,
    /// Results already returned.
    o: i64,
}

impl TicketService {
    /// A page of tickets matching `query` among those `filter` selects.
    #[instrument(skip_all, fields(query = %query))]
    pub async fn search(
        &self,
        principal: &Principal,
        query: &str,
        filter: &str,
        page_size: i32,
        page_token: &str,
    ) -> ServiceResult<(Vec<SearchResult>, String)> {
        let text = SearchText::parse(query).map_err(|e| ServiceError::invalid("query", e))?;
        let limit = match i64::from(page_size) {
            0 => DEFAULT_SEARCH_PAGE,
            n if (1..=MAX_SEARCH_PAGE).contains(&n) => n,
            _ => {
                return Err(ServiceError::invalid(
                    "page_size",
                    format!("must be between 0 and {MAX_SEARCH_PAGE}"),
                ));
            }
        };
        let digest = paging::query_digest(&[query, filter]);
        let offset = if page_token.is_empty() {
            0
        } else {
            let token: SearchPageToken = paging::decode(page_token)?;
            if token.q != digest || !(0..MAX_RESULTS).contains(&token.o) {
                return Err(ServiceError::invalid(
                    "page_token",
                    "belongs to a different query or filter",
                ));
            }
            token.o
        };
        let (filter, _) = self.selected(principal, filter, None, "").await?;
        // One extra row tells whether another page follows.
        let search = SearchQuery {
            text,
            scope: TicketQuery {
                filter,
                sort: SortField::Number,
                descending: true,
                after: None,
                limit: 0,
                now: self.clock.now(),
                sources: principal.sources.clone(),
            },
            internal: principal.sees_internal(),
            offset,
            limit: (limit + 1).min(MAX_RESULTS - offset),
        };
        let mut hits = self.store.search_tickets(&search).await?;
        let more = hits.len() as i64 > limit;
        hits.truncate(limit as usize);
        let ids: Vec<Uuid> = hits.iter().map(|h| h.ticket_id).collect();
        let mut tickets: HashMap<Uuid, Ticket> = self
            .store
            .tickets_by_id(&ids)
            .await?
            .into_iter()
            .map(|t| (t.id, t))
            .collect();
        let results: Vec<SearchResult> = hits
            .into_iter()
            .filter_map(|hit| {
                let ticket = tickets.remove(&hit.ticket_id)?;
                let snippets = hit
                    .snippets
                    .into_iter()
                    .filter(|(field, _)| *field != "internal" || search.internal)
                    .filter_map(|(field, marked)| {
                        let (text, highlights) = parse_marked(&marked)?;
                        Some(Snippet {
                            field,
                            text,
                            highlights,
                        })
                    })
                    .collect();
                Some(SearchResult {
                    ticket,
                    snippets,
                    score: hit.score,
                })
            })
            .collect();
        let next = if more {
            paging::encode(&SearchPageToken {
                q: digest,
                o: offset + limit,
            })
        } else {
            String::new()
        };
        Ok((results, next))
    }
}
