//! Ticket use cases: create, read, list, update, reply, note, log time, activity, merge.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::instrument;
use uuid::Uuid;

use super::paging::{self, DEFAULT_PAGE_SIZE};
use super::routing::RoutingService;
use super::sla::Writer;
use super::{MAX_ATTEMPTS, ServiceError, ServiceResult, back_off, now};
use crate::domain::auth::Principal;
pub use crate::domain::conversation::AttachmentInput;
use crate::domain::conversation::Conversation;
use crate::domain::delivery::{DeliveryStatus, OutboundMessage};
use crate::domain::event::{
    Actor, AttachmentMeta, DeliveryView, Event, EventKind, EventPayload, FieldChange, NewEvent,
    TicketSnapshot, Visibility,
};
use crate::domain::filter::{AssigneeRef, Expr, Op, TicketFilter, TicketPredicate};
use crate::domain::ticket::{
    self, Channel, Contact, ContactInput, MAX_DESCRIPTION_CHARS, MAX_SUBJECT_CHARS, Priority,
    Status, Ticket, TicketType,
};
use crate::domain::validation::Violations;
use crate::store::{
    Changeset, CreateOutcome, IdempotencyClaim, Keyset, NewAttachment, SortField, SortValue, Store,
    StoreError, TicketDraft, TicketKey, TicketQuery, TicketUpdate, TimeEntry,
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
    fn fingerprint(&self) -> String {
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
        let digest = Sha256::digest(canonical.to_string().as_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// New values for the fields an update names; other fields are ignored.
#[derive(Debug, Clone, Default)]
pub struct TicketPatch {
    pub subject: String,
    pub description: String,
    pub status: Option<Status>,
    pub priority: Option<Priority>,
    pub ticket_type: Option<TicketType>,
    pub tags: Vec<String>,
    pub custom_fields: BTreeMap<String, String>,
    pub contact: Option<ContactInput>,
    pub assignee_id: Option<Uuid>,
    pub queue_id: Option<Uuid>,
}

/// The paths `UpdateTicket` accepts in its `update_mask`.
pub const UPDATABLE_PATHS: &[&str] = &[
    "subject",
    "description",
    "status",
    "priority",
    "type",
    "tags",
    "custom_fields",
    "contact",
    "assignee_id",
    "queue_id",
];

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
    /// The view as a filter, ANDed with the caller's.
    fn filter(self) -> ServiceResult<TicketFilter> {
        let active = Expr::Or(
            [Status::Open, Status::InProgress, Status::Waiting]
                .into_iter()
                .map(|s| Expr::Cond(TicketPredicate::Status(Op::Eq, s)))
                .collect(),
        );
        let assignee = |who| Expr::Cond(TicketPredicate::Assignee(Op::Eq, who));
        Ok(match self {
            TicketView::MyTickets => Expr::And(vec![assignee(AssigneeRef::Me), active]),
            TicketView::Unassigned => Expr::And(vec![assignee(AssigneeRef::Nobody), active]),
            TicketView::AllOpen => active,
            TicketView::Overdue => Expr::And(vec![
                Expr::Cond(TicketPredicate::SlaDueAt(Op::Le, now())),
                active,
            ]),
        })
    }
}

#[derive(Debug, Clone, Default)]
pub struct ListTicketsInput {
    pub page_size: i32,
    pub page_token: String,
    pub filter: String,
    pub order_by: String,
    pub view: Option<TicketView>,
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
}

impl TicketService {
    pub fn new(store: Arc<dyn Store>, writer: Writer, routing: RoutingService) -> Self {
        Self {
            store,
            writer,
            routing,
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
        v.text("subject", &input.subject, true, MAX_SUBJECT_CHARS);
        v.text(
            "description",
            &input.description,
            false,
            MAX_DESCRIPTION_CHARS,
        );
        v.text("request_id", &input.request_id, false, MAX_REQUEST_ID_CHARS);
        let tags = ticket::normalize_tags("tags", &input.tags, &mut v);
        ticket::validate_custom_fields("custom_fields", &input.custom_fields, &mut v);
        match &input.contact {
            Some(contact) => contact.validate("contact", &mut v),
            None => v.add("contact", "is required"),
        }
        v.finish()?;

        if let Some(queue_id) = input.queue_id {
            self.routing.queue(queue_id).await?;
        }
        let at = now();
        let mut draft = TicketDraft {
            id: Uuid::now_v7(),
            subject: input.subject.trim().to_owned(),
            description: input.description.clone(),
            status: Status::Open,
            priority: input.priority.unwrap_or(Priority::Medium),
            ticket_type: input.ticket_type.unwrap_or(TicketType::Question),
            tags,
            custom_fields: input.custom_fields.clone(),
            contact: input.contact.clone().unwrap_or_default(),
            assignee_id: input.assignee_id,
            queue_id: input.queue_id,
            channel: None,
            follow_up_of_id: None,
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
        let claim = (!input.request_id.is_empty()).then(|| IdempotencyClaim {
            scope: "create_ticket",
            request_id: input.request_id.clone(),
            fingerprint: input.fingerprint(),
        });
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
                    return Ok((ticket, true));
                }
                let routed = self.routing.route(ticket.id, &plan, true).await?;
                Ok((routed, true))
            }
            CreateOutcome::Replayed(ticket) => Ok((ticket, false)),
        }
    }

    pub async fn get(&self, key: TicketKey) -> ServiceResult<Ticket> {
        self.store.ticket(key).await?.ok_or_else(|| not_found(key))
    }

    #[instrument(skip_all, fields(filter = %input.filter))]
    pub async fn list(
        &self,
        principal: &Principal,
        input: ListTicketsInput,
    ) -> ServiceResult<(Vec<Ticket>, String)> {
        let limit = paging::page_size(input.page_size, DEFAULT_PAGE_SIZE)?;
        let filter = TicketFilter::parse_text(&input.filter)
            .map_err(|e| ServiceError::invalid("filter", e.to_string()))?;
        let filter = match (filter, input.view.map(TicketView::filter).transpose()?) {
            (Some(f), Some(view)) => Some(Expr::And(vec![view, f])),
            (f, view) => f.or(view),
        };
        let filter = filter.map(|f| resolve_me(f, principal)).transpose()?;
        let (sort, descending) = parse_order_by(&input.order_by)?;
        let view = format!("{:?}", input.view);
        let digest = paging::query_digest(&[&input.filter, &input.order_by, &view]);
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
            now: now(),
        };
        let mut tickets = self.store.list_tickets(&query).await?;
        let next = if tickets.len() as i64 > limit {
            tickets.truncate(limit as usize);
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
        Ok((tickets, next.unwrap_or_default()))
    }

    /// Applies the fields named in `mask`. With an etag the update applies only to that
    /// version; without one it is re-applied on top of concurrent changes.
    #[instrument(skip_all, fields(ticket_id = %id))]
    pub async fn update(
        &self,
        principal: &Principal,
        id: Uuid,
        patch: TicketPatch,
        mask: Vec<String>,
        etag: Option<String>,
    ) -> ServiceResult<Ticket> {
        let mut v = Violations::new();
        if mask.is_empty() {
            v.add("update_mask", "must name at least one field");
        }
        for path in &mask {
            if !UPDATABLE_PATHS.contains(&path.as_str()) {
                v.add(
                    "update_mask",
                    format!(
                        "{path:?} cannot be updated; updatable: {}",
                        UPDATABLE_PATHS.join(", ")
                    ),
                );
            }
        }
        let names = |p: &str| mask.iter().any(|m| m == p);
        if names("subject") {
            v.text("ticket.subject", &patch.subject, true, MAX_SUBJECT_CHARS);
        }
        if names("description") {
            v.text(
                "ticket.description",
                &patch.description,
                false,
                MAX_DESCRIPTION_CHARS,
            );
        }
        let tags = if names("tags") {
            ticket::normalize_tags("ticket.tags", &patch.tags, &mut v)
        } else {
            Vec::new()
        };
        if names("custom_fields") {
            ticket::validate_custom_fields("ticket.custom_fields", &patch.custom_fields, &mut v);
        }
        for (path, missing) in [
            ("status", patch.status.is_none()),
            ("priority", patch.priority.is_none()),
            ("type", patch.ticket_type.is_none()),
            ("contact", patch.contact.is_none()),
        ] {
            if names(path) && missing {
                v.add(
                    format!("ticket.{path}"),
                    "must be set when named in update_mask",
                );
            }
        }
        if let (true, Some(contact)) = (names("contact"), &patch.contact) {
            contact.validate("ticket.contact", &mut v);
        }
        let expected = match &etag {
            Some(etag) => match ticket::version_from_etag(etag) {
                Some(version) => Some(version),
                None => {
                    v.add("etag", "is not an etag this server issued");
                    None
                }
            },
            None => None,
        };
        v.finish()?;
        if patch.status == Some(Status::Merged) && names("status") {
            return Err(ServiceError::FailedPrecondition(
                "a ticket becomes MERGED only through MergeTickets".into(),
            ));
        }

        for attempt in 0..MAX_ATTEMPTS {
            back_off(attempt).await;
            let current = self.get(TicketKey::Id(id)).await?;
            if let (Some(expected), Some(given)) = (expected, &etag)
                && expected != current.version
            {
                return Err(ServiceError::StaleEtag {
                    given: given.clone(),
                    current: current.etag(),
                });
            }
            ensure_not_final(&current)?;
            let mut next = current.clone();
            let mut changes: Vec<FieldChange> = Vec::new();
            let mut status_change = None;
            let mut assignment: Vec<FieldChange> = Vec::new();
            let mut contact = None;
            for path in &mask {
                match path.as_str() {
                    "subject" => {
                        next.subject = patch.subject.trim().to_owned();
                        push_change(&mut changes, "subject", &current.subject, &next.subject);
                    }
                    "description" => {
                        next.description = patch.description.clone();
                        push_change(
                            &mut changes,
                            "description",
                            &current.description,
                            &next.description,
                        );
                    }
                    "status" => {
                        if let Some(status) = patch.status {
                            if !current.status.can_become(status) {
                                return Err(ServiceError::FailedPrecondition(format!(
                                    "ticket #{} cannot go from {} to {}",
                                    current.number, current.status, status
                                )));
                            }
                            next.status = status;
                            let mut one = Vec::new();
                            push_change(
                                &mut one,
                                "status",
                                current.status.as_str(),
                                status.as_str(),
                            );
                            status_change = one.pop();
                        }
                    }
                    "priority" => {
                        if let Some(priority) = patch.priority {
                            next.priority = priority;
                            push_change(
                                &mut changes,
                                "priority",
                                current.priority.as_str(),
                                priority.as_str(),
                            );
                        }
                    }
                    "type" => {
                        if let Some(ticket_type) = patch.ticket_type {
                            next.ticket_type = ticket_type;
                            push_change(
                                &mut changes,
                                "type",
                                current.ticket_type.as_str(),
                                ticket_type.as_str(),
                            );
                        }
                    }
                    "tags" => {
                        next.tags = tags.clone();
                        push_change(
                            &mut changes,
                            "tags",
                            &current.tags.join(","),
                            &next.tags.join(","),
                        );
                    }
                    "custom_fields" => {
                        next.custom_fields = patch.custom_fields.clone();
                        for key in current
                            .custom_fields
                            .keys()
                            .chain(next.custom_fields.keys())
                        {
                            let old = current.custom_fields.get(key).cloned().unwrap_or_default();
                            let new = next.custom_fields.get(key).cloned().unwrap_or_default();
                            if !changes
                                .iter()
                                .any(|c| c.field == format!("custom_fields.{key}"))
                            {
                                push_change(
                                    &mut changes,
                                    &format!("custom_fields.{key}"),
                                    &old,
                                    &new,
                                );
                            }
                        }
                    }
                    "contact" => {
                        if let Some(input) = &patch.contact {
                            let before = changes.len();
                            contact_changes(&mut changes, &current.contact, input);
                            if changes.len() > before {
                                contact = Some(input.clone());
                            }
                        }
                    }
                    "assignee_id" => {
                        next.assignee_id = patch.assignee_id;
                        push_change(
                            &mut assignment,
                            "assignee_id",
                            &optional_id(current.assignee_id),
                            &optional_id(next.assignee_id),
                        );
                    }
                    "queue_id" => {
                        next.queue_id = patch.queue_id;
                        push_change(
                            &mut assignment,
                            "queue_id",
                            &optional_id(current.queue_id),
                            &optional_id(next.queue_id),
                        );
                    }
                    _ => {}
                }
            }
            if changes.is_empty() && status_change.is_none() && assignment.is_empty() {
                return Ok(current);
            }
            let at = now();
            next.updated_at = at;
            let actor = principal.actor();
            let mut events = Vec::new();
            let event = |kind, changes: Vec<FieldChange>| {
                NewEvent::about(
                    &next,
                    kind,
                    actor.clone(),
                    Visibility::Internal,
                    EventPayload::FieldsChanged { changes },
                    at,
                )
            };
            if let Some(change) = status_change {
                events.push(event(EventKind::StatusChanged, vec![change]));
            }
            if !assignment.is_empty() {
                events.push(event(EventKind::Assigned, assignment));
            }
            if !changes.is_empty() {
                events.push(event(EventKind::TicketUpdated, changes));
            }
            let tags_changed = next.tags != current.tags;
            let changeset = Changeset {
                updates: vec![TicketUpdate {
                    ticket: next,
                    expected_version: current.version,
                    contact,
                    tags_changed,
                }],
                events,
                ..Changeset::default()
            };
            match self.writer.commit(changeset).await {
                Ok(mut committed) => {
                    let after = committed
                        .tickets
                        .pop()
                        .ok_or_else(|| not_found(TicketKey::Id(id)))?;
                    self.routing.after_change(&current, &after).await;
                    return self.get(TicketKey::Id(id)).await;
                }
                Err(StoreError::Conflict(_)) if etag.is_none() => continue,
                Err(StoreError::Conflict(_)) => {
                    let latest = self.get(TicketKey::Id(id)).await?;
                    return Err(ServiceError::StaleEtag {
                        given: etag.unwrap_or_default(),
                        current: latest.etag(),
                    });
                }
                Err(other) => return Err(other.into()),
            }
        }
        Err(contended(id))
    }

    /// Adds a public reply and queues it for the channel's gateways. The channel defaults
    /// to that of the conversation the ticket came from.
    #[instrument(skip_all, fields(ticket_id = %id))]
    pub async fn add_reply(
        &self,
        principal: &Principal,
        id: Uuid,
        body: String,
        channel: Option<Channel>,
        attachments: Vec<AttachmentInput>,
    ) -> ServiceResult<(Event, Ticket)> {
        let mut v = Violations::new();
        v.text("body", &body, true, MAX_BODY_CHARS);
        validate_attachments("attachments", &attachments, &mut v);
        v.finish()?;
        let conversation = self.store.conversation_of_ticket(id).await?;
        self.append(principal, id, |ticket, at| {
            ensure_not_final(ticket)?;
            let channel = channel.or(ticket.channel).ok_or_else(|| {
                ServiceError::invalid(
                    "channel",
                    "is required: the ticket has no conversation to reply to",
                )
            })?;
            let recipient = recipient(ticket, channel, conversation.as_ref())?;
            let event_id = Uuid::now_v7();
            let files = stored_attachments(ticket.id, event_id, &attachments, at);
            let meta = attachment_meta(&files);
            let message = OutboundMessage {
                id: Uuid::now_v7(),
                ticket_id: ticket.id,
                ticket_number: ticket.number,
                event_id,
                conversation_id: conversation
                    .as_ref()
                    .filter(|c| c.channel == channel)
                    .map(|c| c.external_id.clone())
                    .unwrap_or_default(),
                channel,
                recipient,
                subject: format!("Re: [#{}] {}", ticket.number, ticket.subject),
                body: body.clone(),
                attachments: meta.clone(),
                created_at: at,
            };
            Ok(Entry {
                event_id,
                kind: EventKind::ReplyAdded,
                visibility: Visibility::Public,
                payload: EventPayload::Reply {
                    body: body.clone(),
                    channel: channel.as_str().to_owned(),
                    attachments: meta,
                    message_id: Some(message.id),
                },
                attachments: files,
                time_entry: None,
                outbound: Some(message),
            })
        })
        .await
    }

    /// Adds an internal note. Allowed on closed tickets (bookkeeping), not on merged ones.
    #[instrument(skip_all, fields(ticket_id = %id))]
    pub async fn add_note(
        &self,
        principal: &Principal,
        id: Uuid,
        body: String,
    ) -> ServiceResult<(Event, Ticket)> {
        let mut v = Violations::new();
        v.text("body", &body, true, MAX_BODY_CHARS);
        v.finish()?;
        self.append(principal, id, |ticket, _| {
            ensure_not_merged(ticket)?;
            Ok(Entry {
                event_id: Uuid::now_v7(),
                kind: EventKind::NoteAdded,
                visibility: Visibility::Internal,
                payload: EventPayload::Note { body: body.clone() },
                attachments: Vec::new(),
                time_entry: None,
                outbound: None,
            })
        })
        .await
    }

    /// Records time spent; the ticket's total grows by `seconds`.
    #[instrument(skip_all, fields(ticket_id = %id))]
    pub async fn log_time(
        &self,
        principal: &Principal,
        id: Uuid,
        agent_id: Option<Uuid>,
        seconds: i64,
        note: String,
    ) -> ServiceResult<(Event, Ticket)> {
        let mut v = Violations::new();
        if !(1..=MAX_TIME_ENTRY_SECONDS).contains(&seconds) {
            v.add(
                "duration",
                format!(
                    "must be between 1 second and {} hours",
                    MAX_TIME_ENTRY_SECONDS / 3600
                ),
            );
        }
        v.text("note", &note, false, MAX_BODY_CHARS);
        v.finish()?;
        let agent_id = agent_id.or(principal.agent_id);
        self.append(principal, id, |ticket, at| {
            ensure_not_merged(ticket)?;
            let total = ticket.time_spent_seconds + seconds;
            Ok(Entry {
                event_id: Uuid::now_v7(),
                kind: EventKind::TimeLogged,
                visibility: Visibility::Internal,
                payload: EventPayload::TimeLogged {
                    agent_id,
                    seconds,
                    note: note.clone(),
                    total_seconds: total,
                },
                attachments: Vec::new(),
                time_entry: Some(TimeEntry {
                    id: Uuid::now_v7(),
                    ticket_id: ticket.id,
                    agent_id,
                    seconds,
                    note: note.clone(),
                    created_at: at,
                }),
                outbound: None,
            })
        })
        .await
    }

    /// Adds one feed entry to a ticket, bumping its version; retried on conflicts.
    async fn append(
        &self,
        principal: &Principal,
        id: Uuid,
        entry: impl Fn(&Ticket, chrono::DateTime<chrono::Utc>) -> ServiceResult<Entry>,
    ) -> ServiceResult<(Event, Ticket)> {
        for attempt in 0..MAX_ATTEMPTS {
            back_off(attempt).await;
            let current = self.get(TicketKey::Id(id)).await?;
            let at = now();
            let Entry {
                event_id,
                kind,
                visibility,
                payload,
                attachments,
                time_entry,
                outbound,
            } = entry(&current, at)?;
            let mut next = current.clone();
            next.updated_at = at;
            if let Some(time) = &time_entry {
                next.time_spent_seconds += time.seconds;
            }
            let mut event =
                NewEvent::about(&next, kind, principal.actor(), visibility, payload, at);
            event.id = event_id;
            let queued_channel = outbound.as_ref().map(|m| m.channel);
            let queued = outbound.as_ref().map(|m| DeliveryView {
                message_id: m.id,
                status: DeliveryStatus::Queued.as_str().to_owned(),
                provider_message_id: String::new(),
                error: String::new(),
            });
            let changeset = Changeset {
                updates: vec![unchanged_tags(next, current.version)],
                events: vec![event],
                time_entries: time_entry.into_iter().collect(),
                attachments,
                outbound: outbound.into_iter().collect(),
                ..Changeset::default()
            };
            match self.writer.commit(changeset).await {
                Ok(mut committed) => {
                    if let Some(channel) = queued_channel {
                        metrics::counter!(
                            "ticketd_outbound_messages_total",
                            "state" => "queued",
                            "channel" => channel.as_str()
                        )
                        .increment(1);
                    }
                    let event = committed.events.pop().map(|mut e| {
                        e.delivery = queued;
                        e
                    });
                    let ticket = committed.tickets.pop();
                    return event
                        .zip(ticket)
                        .ok_or_else(|| not_found(TicketKey::Id(id)));
                }
                Err(StoreError::Conflict(_)) => continue,
                Err(other) => return Err(other.into()),
            }
        }
        Err(contended(id))
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
        self.get(TicketKey::Id(id)).await?;
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

    /// Merges `sources` into `target`: each source becomes MERGED and points at the target,
    /// and the target's feed shows the sources' activity from then on.
    #[instrument(skip_all, fields(target_id = %target_id, sources = source_ids.len()))]
    pub async fn merge(
        &self,
        principal: &Principal,
        target_id: Uuid,
        source_ids: Vec<Uuid>,
    ) -> ServiceResult<(Ticket, Vec<Ticket>)> {
        let mut v = Violations::new();
        if source_ids.is_empty() {
            v.add("source_ticket_ids", "must name at least one ticket");
        } else if source_ids.len() > MAX_MERGE_SOURCES {
            v.add(
                "source_ticket_ids",
                format!("must name at most {MAX_MERGE_SOURCES} tickets"),
            );
        }
        let distinct: HashSet<Uuid> = source_ids.iter().copied().collect();
        if distinct.len() != source_ids.len() {
            v.add("source_ticket_ids", "must not repeat a ticket");
        }
        v.finish()?;
        if distinct.contains(&target_id) {
            return Err(ServiceError::FailedPrecondition(
                "a ticket cannot be merged into itself".into(),
            ));
        }
        for attempt in 0..MAX_ATTEMPTS {
            back_off(attempt).await;
            let target = self.get(TicketKey::Id(target_id)).await?;
            if target.status.is_final() {
                return Err(ServiceError::FailedPrecondition(format!(
                    "target ticket #{} is {} and cannot receive a merge",
                    target.number, target.status
                )));
            }
            let mut sources = Vec::with_capacity(source_ids.len());
            for id in &source_ids {
                let source = self.get(TicketKey::Id(*id)).await?;
                match (source.status, source.merged_into_id) {
                    (Status::Merged, Some(into)) => {
                        return Err(ServiceError::FailedPrecondition(format!(
                            "ticket #{} was already merged into {into}",
                            source.number
                        )));
                    }
                    (Status::Closed, _) => {
                        return Err(ServiceError::FailedPrecondition(format!(
                            "ticket #{} is CLOSED and cannot be merged",
                            source.number
                        )));
                    }
                    _ => sources.push(source),
                }
            }
            let at = now();
            let payload = EventPayload::Merged {
                target_id,
                target_number: target.number,
                source_ids: sources.iter().map(|s| s.id).collect(),
                source_numbers: sources.iter().map(|s| s.number).collect(),
            };
            let event = |t: &Ticket| {
                NewEvent::about(
                    t,
                    EventKind::TicketsMerged,
                    principal.actor(),
                    Visibility::Internal,
                    payload.clone(),
                    at,
                )
            };
            let mut changeset = Changeset::default();
            let mut next_target = target.clone();
            next_target.updated_at = at;
            changeset.events.push(event(&next_target));
            changeset
                .updates
                .push(unchanged_tags(next_target, target.version));
            for source in &sources {
                let mut next = source.clone();
                next.status = Status::Merged;
                next.merged_into_id = Some(target_id);
                next.updated_at = at;
                changeset.events.push(event(&next));
                changeset.updates.push(unchanged_tags(next, source.version));
            }
            match self.writer.commit(changeset).await {
                Ok(committed) => {
                    for (before, after) in sources.iter().zip(committed.tickets.iter().skip(1)) {
                        self.routing.after_change(before, after).await;
                    }
                    let mut tickets = committed.tickets.into_iter();
                    let target = tickets
                        .next()
                        .ok_or_else(|| not_found(TicketKey::Id(target_id)))?;
                    return Ok((target, tickets.collect()));
                }
                Err(StoreError::Conflict(_)) => continue,
                Err(other) => return Err(other.into()),
            }
        }
        Err(contended(target_id))
    }
}

/// What `append` writes for one action.
struct Entry {
    event_id: Uuid,
    kind: EventKind,
    visibility: Visibility,
    payload: EventPayload,
    attachments: Vec<NewAttachment>,
    time_entry: Option<TimeEntry>,
    outbound: Option<OutboundMessage>,
}

fn unchanged_tags(ticket: Ticket, expected_version: i64) -> TicketUpdate {
    TicketUpdate {
        ticket,
        expected_version,
        contact: None,
        tags_changed: false,
    }
}

fn push_change(changes: &mut Vec<FieldChange>, field: &str, old: &str, new: &str) {
    if old != new {
        changes.push(FieldChange {
            field: field.to_owned(),
            old: old.to_owned(),
            new: new.to_owned(),
        });
    }
}

/// What upserting `input` would change about the ticket's contact. A different external id
/// names another contact; empty fields and an unset `vip` keep the stored values.
fn contact_changes(changes: &mut Vec<FieldChange>, current: &Contact, input: &ContactInput) {
    if input.external_id != current.external_id {
        push_change(
            changes,
            "contact.external_id",
            &current.external_id,
            &input.external_id,
        );
        return;
    }
    for (field, old, new) in [
        ("contact.name", &current.name, &input.name),
        ("contact.email", &current.email, &input.email),
        ("contact.phone", &current.phone, &input.phone),
    ] {
        if !new.is_empty() {
            push_change(changes, field, old, new);
        }
    }
    if let Some(vip) = input.vip {
        push_change(
            changes,
            "contact.vip",
            &current.vip.to_string(),
            &vip.to_string(),
        );
    }
}

fn optional_id(id: Option<Uuid>) -> String {
    id.map(|id| id.to_string()).unwrap_or_default()
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

/// Where a reply on `channel` goes: the contact's email address or phone number, or for
/// chat the conversation (else the contact's CRM id).
fn recipient(
    ticket: &Ticket,
    channel: Channel,
    conversation: Option<&Conversation>,
) -> ServiceResult<String> {
    let (address, what) = match channel {
        Channel::Email => (ticket.contact.email.clone(), "an email address"),
        Channel::Sms => (ticket.contact.phone.clone(), "a phone number"),
        Channel::Chat => (
            conversation
                .filter(|c| c.channel == Channel::Chat)
                .map(|c| c.external_id.clone())
                .unwrap_or_else(|| ticket.contact.external_id.clone()),
            "a chat",
        ),
    };
    if address.is_empty() {
        return Err(ServiceError::FailedPrecondition(format!(
            "contact {} has no {what} for a {channel} reply",
            ticket.contact.external_id
        )));
    }
    Ok(address)
}

/// Attachments as stored, tied to the event that carries them.
pub(crate) fn stored_attachments(
    ticket_id: Uuid,
    event_id: Uuid,
    files: &[AttachmentInput],
    at: chrono::DateTime<chrono::Utc>,
) -> Vec<NewAttachment> {
    files
        .iter()
        .map(|a| NewAttachment {
            id: Uuid::now_v7(),
            ticket_id,
            event_id,
            name: a.name.clone(),
            content_type: a.content_type.clone(),
            content: a.content.clone(),
            created_at: at,
        })
        .collect()
}

pub(crate) fn attachment_meta(files: &[NewAttachment]) -> Vec<AttachmentMeta> {
    files
        .iter()
        .map(|f| AttachmentMeta {
            id: f.id,
            name: f.name.clone(),
            content_type: f.content_type.clone(),
            size_bytes: f.content.len() as i64,
        })
        .collect()
}

/// Checks names, types, count and total size of the files of one message.
pub(crate) fn validate_attachments(
    field: &str,
    attachments: &[AttachmentInput],
    v: &mut Violations,
) {
    if attachments.len() > MAX_ATTACHMENTS {
        v.add(field, format!("must hold at most {MAX_ATTACHMENTS} files"));
        return;
    }
    let total: usize = attachments.iter().map(|a| a.content.len()).sum();
    if total > MAX_ATTACHMENT_BYTES_TOTAL {
        v.add(
            field,
            format!("must total at most {MAX_ATTACHMENT_BYTES_TOTAL} bytes; got {total}"),
        );
    }
    for (i, a) in attachments.iter().enumerate() {
        if a.name.trim().is_empty()
            || a.name.chars().count() > 255
            || a.name.contains(['/', '\\', '\0'])
        {
            v.add(
                format!("{field}[{i}].name"),
                "must be 1 to 255 characters without path separators",
            );
        }
        let valid_type = a.content_type.len() <= 255
            && a.content_type.split_once('/').is_some_and(|(top, sub)| {
                !top.is_empty() && !sub.is_empty() && !a.content_type.contains(char::is_whitespace)
            });
        if !valid_type {
            v.add(
                format!("{field}[{i}].content_type"),
                "must be a MIME type such as application/pdf",
            );
        }
    }
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
        assert_eq!(input.fingerprint(), retry.fingerprint());
        assert_ne!(input.fingerprint(), changed.fingerprint());
    }
}
