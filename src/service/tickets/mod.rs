//! Ticket use cases. This file: create, read and the activity feed; `list` (lists,
//! counts and views), `update`, `feed` (replies, notes, time) and `merge` hold the rest.

mod attachments;
mod feed;
mod list;
mod merge;
mod search;
mod update;

pub(crate) use attachments::{
    attachment_meta, stored_attachments, valid_content_type, valid_file_name, validate_attachments,
};
pub(crate) use feed::outbound_message;
pub(crate) use list::check_order_by;
pub use list::{ListTicketsInput, TicketView};
pub use search::{SearchResult, Snippet};
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

#[cfg(test)]
mod tests {
    use super::*;

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
