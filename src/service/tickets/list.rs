//! Listing and counting tickets: filters, the predefined and saved views, order and
//! keyset pages.

use super::*;

/// The predefined views of `ListTickets`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketView {
    /// Active tickets assigned to the caller's agent.
    MyTickets,
    /// Active tickets nobody is assigned to.
    Unassigned,
    /// Active tickets with a running SLA clock past due.
    Overdue,
    /// Every active ticket.
    AllOpen,
}

impl TicketView {
    /// The view as a filter at `now`, ANDed with the caller's.
    pub(crate) fn filter(self, now: DateTime<Utc>) -> TicketFilter {
        let active = Expr::Or(
            [Status::Open, Status::InProgress, Status::Waiting]
                .into_iter()
                .map(|s| Expr::Cond(TicketPredicate::Status(Op::Eq, s)))
                .collect(),
        );
        let assignee = |who| Expr::Cond(TicketPredicate::Assignee(Op::Eq, who));
        match self {
            TicketView::MyTickets => Expr::And(vec![assignee(AssigneeRef::Me), active]),
            TicketView::Unassigned => Expr::And(vec![assignee(AssigneeRef::Nobody), active]),
            TicketView::AllOpen => active,
            TicketView::Overdue => Expr::And(vec![
                Expr::Cond(TicketPredicate::SlaDueAt(Op::Le, Moment::At(now))),
                active,
            ]),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct ListTicketsInput {
    pub page_size: i32,
    pub page_token: String,
    pub filter: String,
    pub order_by: String,
    pub view: Option<TicketView>,
    /// A saved or built-in view (`ViewService`); not with `view`.
    pub view_id: String,
}

#[derive(Serialize, Deserialize)]
struct TicketPageToken {
    /// Digest of the filter and order the token belongs to.
    q: String,
    /// Sort value of the last row: an integer, or a time in microseconds.
    v: i64,
    n: i64,
}

impl TicketService {
    /// The caller's filter ANDed with what the view selects, `"me"` resolved.
    pub(crate) async fn selected(
        &self,
        principal: &Principal,
        filter: &str,
        view: Option<TicketView>,
        view_id: &str,
    ) -> ServiceResult<(Option<TicketFilter>, Selection)> {
        let selection = match (view, view_id.is_empty()) {
            (view, true) => Selection {
                view,
                ..Selection::default()
            },
            (None, false) => {
                crate::service::views::selection(self.store.as_ref(), principal, view_id).await?
            }
            (Some(_), false) => {
                return Err(ServiceError::invalid(
                    "view_id",
                    "name a view_id or a predefined view, not both",
                ));
            }
        };
        let filter = TicketFilter::parse_text(filter)
            .map_err(|e| ServiceError::invalid("filter", e.to_string()))?;
        let now = self.clock.now();
        let parts: Vec<TicketFilter> = [
            selection.view.map(|view| view.filter(now)),
            selection.filter.clone(),
            filter,
        ]
        .into_iter()
        .flatten()
        .collect();
        let combined = match parts.len() {
            0 => None,
            1 => parts.into_iter().next(),
            _ => Some(Expr::And(parts)),
        };
        let combined = combined.map(|f| resolve_me(f, principal)).transpose()?;
        Ok((combined, selection))
    }

    /// How many tickets a filter, a view or both select.
    #[instrument(skip_all)]
    pub async fn count(
        &self,
        principal: &Principal,
        filter: &str,
        view_id: &str,
    ) -> ServiceResult<i64> {
        let (filter, _) = self.selected(principal, filter, None, view_id).await?;
        let query = TicketQuery {
            filter,
            sort: SortField::Number,
            descending: false,
            after: None,
            limit: 0,
            now: self.clock.now(),
            sources: principal.sources.clone(),
        };
        Ok(self.store.count_tickets(&query).await?)
    }

    /// A page of tickets, and the columns the view shows (empty: every field).
    #[instrument(skip_all, fields(filter = %input.filter))]
    pub async fn list(
        &self,
        principal: &Principal,
        input: ListTicketsInput,
    ) -> ServiceResult<(Vec<Ticket>, String, Vec<String>)> {
        let limit = paging::page_size(input.page_size, DEFAULT_PAGE_SIZE)?;
        let (filter, selection) = self
            .selected(principal, &input.filter, input.view, &input.view_id)
            .await?;
        let order_by = if input.order_by.trim().is_empty() {
            selection.order_by.clone()
        } else {
            input.order_by.clone()
        };
        let (sort, descending) = parse_order_by(&order_by)?;
        let view = format!("{:?}", input.view);
        let digest = paging::query_digest(&[&input.filter, &order_by, &view, &input.view_id]);
        let after = if input.page_token.is_empty() {
            None
        } else {
            let token: TicketPageToken = paging::decode(&input.page_token)?;
            if token.q != digest {
                return Err(ServiceError::invalid(
                    "page_token",
                    "belongs to a different filter or order_by",
                ));
            }
            let value = match sort {
                SortField::CreatedAt | SortField::UpdatedAt => {
                    let time =
                        chrono::DateTime::from_timestamp_micros(token.v).ok_or_else(|| {
                            ServiceError::invalid("page_token", "is not a token this server issued")
                        })?;
                    SortValue::Time(time)
                }
                SortField::Priority | SortField::Number => SortValue::Int(token.v),
            };
            Some(Keyset {
                value,
                number: token.n,
            })
        };
        // One extra row tells whether another page follows.
        let query = TicketQuery {
            filter,
            sort,
            descending,
            after,
            limit: limit + 1,
            now: self.clock.now(),
            // A bot key limited to some sources sees only their conversations' tickets.
            sources: principal.sources.clone(),
        };
        let mut tickets = self.store.list_tickets(&query).await?;
        // A page ends early when its tickets would outgrow the response budget; it always
        // holds at least one (a single ticket is bounded well below the budget).
        let kept = paging::fitting(&tickets, limit, self.page_bytes, |t| t.approximate_size());
        let next = if tickets.len() > kept {
            tickets.truncate(kept);
            tickets.last().map(|last| {
                let v = match sort {
                    SortField::CreatedAt => last.created_at.timestamp_micros(),
                    SortField::UpdatedAt => last.updated_at.timestamp_micros(),
                    SortField::Priority => last.priority.rank(),
                    SortField::Number => last.number,
                };
                paging::encode(&TicketPageToken {
                    q: digest,
                    v,
                    n: last.number,
                })
            })
        } else {
            None
        };
        Ok((tickets, next.unwrap_or_default(), selection.columns))
    }
}

/// Replaces `assignee_id = "me"` by the caller's agent.
fn resolve_me(filter: TicketFilter, principal: &Principal) -> ServiceResult<TicketFilter> {
    filter.try_map(&mut |p| match p {
        TicketPredicate::Assignee(op, AssigneeRef::Me) => match principal.agent_id {
            Some(agent) => Ok(TicketPredicate::Assignee(op, AssigneeRef::Agent(agent))),
            None => Err(ServiceError::invalid(
                "filter",
                "assignee_id = \"me\" needs an API key bound to an agent",
            )),
        },
        other => Ok(other),
    })
}

/// Checks an `order_by` as ListTickets reads it.
pub(crate) fn check_order_by(text: &str) -> ServiceResult<()> {
    parse_order_by(text).map(|_| ())
}

/// Parses `order_by`: a field and an optional direction.
fn parse_order_by(text: &str) -> ServiceResult<(SortField, bool)> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let bad = || {
        ServiceError::invalid(
            "order_by",
            "must be one of created_at, updated_at, priority, number, optionally followed by asc or desc",
        )
    };
    let (field, direction) = match words.as_slice() {
        [] => return Ok((SortField::CreatedAt, true)),
        [field] => (*field, None),
        [field, direction] => (*field, Some(direction.to_ascii_lowercase())),
        _ => return Err(bad()),
    };
    let field = match field {
        "created_at" => SortField::CreatedAt,
        "updated_at" => SortField::UpdatedAt,
        "priority" => SortField::Priority,
        "number" => SortField::Number,
        _ => return Err(bad()),
    };
    let descending = match direction.as_deref() {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(_) => return Err(bad()),
    };
    Ok((field, descending))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_by_defaults_to_newest_first_and_names_directions() {
        assert_eq!(parse_order_by("").unwrap(), (SortField::CreatedAt, true));
        assert_eq!(
            parse_order_by("priority desc").unwrap(),
            (SortField::Priority, true)
        );
        assert_eq!(
            parse_order_by("number").unwrap(),
            (SortField::Number, false)
        );
        assert!(parse_order_by("subject").is_err());
        assert!(parse_order_by("number sideways").is_err());
    }
}
