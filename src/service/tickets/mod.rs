//! Ticket use cases. This file: create, read, list and the activity feed; `update`,
//! `feed` (replies, notes, time) and `merge` hold the rest.

mod attachments;
mod feed;
mod merge;
mod update;

pub(crate) use attachments::{
    attachment_meta, stored_attachments, valid_content_type, valid_file_name, validate_attachments,
};
pub(crate) use feed::outbound_message;
pub use update::{TicketPatch, UPDATABLE_PATHS};

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tracing::instrument;
use uuid::Uuid;

use super::paging::{self, DEFAULT_PAGE_SIZE};
use super::request_ids::{Fingerprint, RequestIds};
use super::routing::RoutingService;
use super::sla::Writer;
use super::views::Selection;
use super::{ServiceError, ServiceResult, retry_contended};
use crate::clock::Clock;
use crate::domain::auth::{Principal, Role};
pub use crate::domain::conversation::AttachmentInput;
use crate::domain::conversation::Conversation;
use crate::domain::delivery::{DeliveryStatus, OutboundKind, OutboundMessage};
use crate::domain::event::{
    Actor, AttachmentMeta, DeliveryView, Event, EventKind, EventPayload, FieldChange, NewEvent,
    TicketSnapshot, Visibility,
};
use crate::domain::filter::{AssigneeRef, Expr, Moment, Op, TicketFilter, TicketPredicate};
use crate::domain::ticket::{
    self, Channel, Contact, ContactInput, MAX_DESCRIPTION_CHARS, MAX_SUBJECT_CHARS, Priority,
    Status, Ticket, TicketType,
};
use crate::domain::validation::{Violations, check_update_mask};
use crate::store::{
    Changeset, Committed, CreateOutcome, IdempotencyClaim, Keyset, NewAttachment, SortField,
    SortValue, Store, StoreError, TicketDraft, TicketKey, TicketQuery, TicketUpdate, TimeEntry,
};

pub const MAX_BODY_CHARS: usize = 65_536;
pub const MAX_REQUEST_ID_CHARS: usize = 128;
pub const MAX_ATTACHMENTS: usize = 20;
pub const MAX_ATTACHMENT_BYTES_TOTAL: usize = 10 * 1024 * 1024;
pub const MAX_MERGE_SOURCES: usize = 50;
/// Longest single time entry.
pub const MAX_TIME_ENTRY_SECONDS: i64 = 24 * 3600;
const DEFAULT_ACTIVITY_PAGE: i64 = 100;

#[derive(Debug, Clone, Default)]
pub struct CreateTicketInput {
    pub subject: String,
    pub description: String,
    pub priority: Option<Priority>,
    pub ticket_type: Option<TicketType>,
    pub tags: Vec<String>,
    pub custom_fields: BTreeMap<String, String>,
    pub contact: Option<ContactInput>,
    pub assignee_id: Option<Uuid>,
    pub queue_id: Option<Uuid>,
    pub request_id: String,
}

impl CreateTicketInput {
    /// A digest of everything but the request id: a retry must repeat it exactly.
    fn fingerprint(&self) -> Fingerprint {
        let contact = self
            .contact
            .as_ref()
            .map(|c| serde_json::json!([c.external_id, c.name, c.email, c.phone, c.vip]));
        let canonical = serde_json::json!({
            "subject": self.subject,
            "description": self.description,
            "priority": self.priority.map(Priority::as_str),
            "type": self.ticket_type.map(TicketType::as_str),
            "tags": self.tags,
            "custom_fields": self.custom_fields,
            "contact": contact,
            "assignee_id": self.assignee_id,
            "queue_id": self.queue_id,
        });
        Fingerprint::new().part(canonical.to_string())
    }
}

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

#[derive(Serialize, Deserialize)]
struct ActivityPageToken {
    t: Uuid,
    c: i64,
}

/// The ticket use cases.
#[derive(Clone)]
pub struct TicketService {
    store: Arc<dyn Store>,
    writer: Writer,
    routing: RoutingService,
    request_ids: RequestIds,
    /// What one `ListTickets` page may hold, in bytes.
    page_bytes: usize,
    clock: Clock,
}

impl TicketService {
    pub fn new(
        store: Arc<dyn Store>,
        writer: Writer,
        routing: RoutingService,
        request_ids: RequestIds,
        page_bytes: usize,
        clock: Clock,
    ) -> Self {
        Self {
            clock,
            store,
            writer,
            routing,
            request_ids,
            page_bytes,
        }
    }

    /// Creates an OPEN ticket; returns it and whether it is new (false on a replay).
    #[instrument(skip_all, fields(request_id = %input.request_id))]
    pub async fn create(
        &self,
        principal: &Principal,
        input: CreateTicketInput,
    ) -> ServiceResult<(Ticket, bool)> {
        let mut v = Violations::new();
        v.line("subject", &input.subject, true, MAX_SUBJECT_CHARS);
        v.text(
            "description",
            &input.description,
            false,
            MAX_DESCRIPTION_CHARS,
        );
        v.line("request_id", &input.request_id, false, MAX_REQUEST_ID_CHARS);
        let tags = ticket::normalize_tags("tags", &input.tags, &mut v);
        ticket::validate_custom_fields("custom_fields", &input.custom_fields, &mut v);
        match &input.contact {
            Some(contact) => contact.validate("contact", &mut v),
            None => v.add("contact", "is required"),
        }
        v.finish()?;

        self.routing
            .ensure_targets(input.assignee_id, input.queue_id)
            .await?;
        let at = self.clock.now();
        let mut draft = TicketDraft {
            id: Uuid::now_v7(),
            subject: input.subject.trim().to_owned(),
            description: input.description.clone(),
            status: Status::Open,
            priority: input.priority.unwrap_or(Priority::Medium),
            ticket_type: input.ticket_type.unwrap_or(TicketType::Question),
            tags,
            custom_fields: input.custom_fields.clone(),
            contact: ContactInput {
                fill_only: !principal.may_edit_contacts(),
                ..input.contact.clone().unwrap_or_default()
            },
            assignee_id: input.assignee_id,
            queue_id: input.queue_id,
            channel: None,
            follow_up_of_id: None,
            conversation: None,
            tier: 1,
            required_skills: Vec::new(),
            vip_handlers_only: false,
            created_at: at,
        };
        let plan = self
            .routing
            .plan(&mut draft, None, input.queue_id.is_some())
            .await?;
        let created = draft_event(
            &draft,
            EventKind::TicketCreated,
            principal.actor(),
            Visibility::Internal,
            EventPayload::created(&draft.subject, draft.priority, draft.status, None),
        );
        let claim = self.request_ids.claim(
            "create_ticket",
            principal,
            &input.request_id,
            input.fingerprint(),
            draft.id,
        );
        let changes = Changeset {
            events: vec![created],
            ..Changeset::default()
        };
        match self.writer.create_ticket(draft, changes, claim).await? {
            CreateOutcome::Created { ticket, .. } => {
                tracing::info!(ticket_id = %ticket.id, number = ticket.number, "ticket created");
                metrics::counter!(
                    "ticketd_tickets_created_total",
                    "channel" => "none",
                    "priority" => ticket.priority.as_str()
                )
                .increment(1);
                if ticket.queue_id.is_none() || ticket.assignee_id.is_some() {
                    return Ok((*ticket, true));
                }
                let routed = self.routing.route(ticket.id, &plan, true).await?;
                Ok((routed, true))
            }
            CreateOutcome::Replayed(id) => Ok((self.get(TicketKey::Id(id)).await?, false)),
        }
    }

    pub async fn get(&self, key: TicketKey) -> ServiceResult<Ticket> {
        self.store.ticket(key).await?.ok_or_else(|| not_found(key))
    }

    /// A ticket as the caller may see it: a bot key limited to some conversation sources
    /// sees only tickets linked to a conversation of one of them (others look absent).
    pub async fn get_as(&self, principal: &Principal, key: TicketKey) -> ServiceResult<Ticket> {
        let ticket = self.get(key).await?;
        if principal.sources.is_empty() {
            return Ok(ticket);
        }
        match self.store.conversation_of_ticket(ticket.id).await? {
            Some(c) if principal.may_speak_for(&c.source) => Ok(ticket),
            _ => Err(not_found(key)),
        }
    }

    /// The caller's filter ANDed with what the view selects, `"me"` resolved.
    async fn selected(
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
                super::views::selection(self.store.as_ref(), principal, view_id).await?
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
    /// A page of a ticket's feed, oldest first, including tickets merged into it.
    pub async fn activity(
        &self,
        principal: &Principal,
        id: Uuid,
        page_size: i32,
        page_token: &str,
    ) -> ServiceResult<(Vec<Event>, String)> {
        let limit = paging::page_size(page_size, DEFAULT_ACTIVITY_PAGE)?;
        let after = if page_token.is_empty() {
            0
        } else {
            let token: ActivityPageToken = paging::decode(page_token)?;
            if token.t != id {
                return Err(ServiceError::invalid(
                    "page_token",
                    "belongs to another ticket",
                ));
            }
            token.c
        };
        self.get_as(principal, TicketKey::Id(id)).await?;
        let mut events = self
            .store
            .activity(id, after, principal.sees_internal(), limit + 1)
            .await?;
        let next = if events.len() as i64 > limit {
            events.truncate(limit as usize);
            events
                .last()
                .map(|e| paging::encode(&ActivityPageToken { t: id, c: e.cursor }))
        } else {
            None
        };
        Ok((events, next.unwrap_or_default()))
    }
}

fn not_found(key: TicketKey) -> ServiceError {
    match key {
        TicketKey::Id(id) => ServiceError::NotFound(format!("ticket {id}")),
        TicketKey::Number(n) => ServiceError::NotFound(format!("ticket #{n}")),
    }
}

fn contended(id: Uuid) -> ServiceError {
    ServiceError::Contended(format!(
        "ticket {id} kept changing while this request applied; retry"
    ))
}

fn ensure_not_merged(ticket: &Ticket) -> ServiceResult<()> {
    match ticket.merged_into_id {
        Some(into) => Err(ServiceError::FailedPrecondition(format!(
            "ticket #{} was merged into {into}; act on that ticket instead",
            ticket.number
        ))),
        None => Ok(()),
    }
}

fn ensure_not_final(ticket: &Ticket) -> ServiceResult<()> {
    ensure_not_merged(ticket)?;
    if ticket.status == Status::Closed {
        return Err(ServiceError::FailedPrecondition(format!(
            "ticket #{} is CLOSED; closed tickets cannot change",
            ticket.number
        )));
    }
    Ok(())
}

/// An event about a ticket that is being inserted in the same transaction (the store
/// fills in its number and contact).
pub(crate) fn draft_event(
    draft: &TicketDraft,
    kind: EventKind,
    actor: Actor,
    visibility: Visibility,
    payload: EventPayload,
) -> NewEvent {
    let mut ticket = TicketSnapshot {
        status: draft.status,
        priority: draft.priority,
        ticket_type: draft.ticket_type,
        assignee_id: draft.assignee_id,
        queue_id: draft.queue_id,
        contact_id: Uuid::nil(),
        channel: draft.channel,
        tags: draft.tags.clone(),
        conversation: draft.conversation.clone(),
    };
    if let Some(channel) = payload.channel() {
        ticket.channel = Some(channel);
    }
    NewEvent {
        id: Uuid::now_v7(),
        ticket_id: draft.id,
        ticket_number: 0,
        kind,
        actor,
        visibility,
        payload,
        created_at: draft.created_at,
        ticket,
        depth: 0,
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

/// Parses `order_by`: a field and an optional direction.
/// Checks an `order_by` as ListTickets reads it.
pub(crate) fn check_order_by(text: &str) -> ServiceResult<()> {
    parse_order_by(text).map(|_| ())
}

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

    #[test]
    fn a_retry_with_the_same_body_has_the_same_fingerprint() {
        let input = CreateTicketInput {
            subject: "Printer on fire".into(),
            request_id: "a".into(),
            ..CreateTicketInput::default()
        };
        let retry = CreateTicketInput {
            request_id: "b".into(),
            ..input.clone()
        };
        let changed = CreateTicketInput {
            subject: "Printer fine".into(),
            ..input.clone()
        };
        assert_eq!(input.fingerprint().finish(), retry.fingerprint().finish());
        assert_ne!(input.fingerprint().finish(), changed.fingerprint().finish());
    }
}
