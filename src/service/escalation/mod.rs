//! The conversation bridge's inbound side: bots escalating conversations and gateways
//! handing in customer messages. Both land on the right ticket, exactly once. This file:
//! escalation; `customer_messages` holds the gateways' side.

mod customer_messages;
mod email;

use std::sync::Arc;

use tracing::instrument;
use uuid::Uuid;

pub use customer_messages::{CustomerMessageInput, CustomerMessageOutcome, MessageTarget};
pub use email::{EmailSettings, IngestOutcome};

use super::request_ids::{Fingerprint, RequestIds};
use super::routing::RoutingService;
use super::sla::Writer;
use super::tickets::{attachment_meta, draft_event, stored_attachments, validate_attachments};
use super::{ServiceError, ServiceResult, retry_contended};
use crate::clock::Clock;
use crate::domain::auth::Principal;
use crate::domain::conversation::{
    AttachmentInput, Conversation, ConversationInput, MAX_MESSAGE_CHARS, MAX_METADATA_ENTRIES,
    MAX_NAME_CHARS, MessageRole, headline,
};
use crate::domain::event::{
    Actor, ActorKind, Event, EventKind, EventPayload, FieldChange, NewEvent, Visibility,
};
use crate::domain::ticket::{
    self, Channel, ContactInput, ConversationRef, MAX_SUBJECT_CHARS, Priority, Status, Ticket,
    TicketType,
};
use crate::domain::validation::Violations;
use crate::store::{
    Changeset, ConversationWrite, CreateOutcome, InboundClaim, Store, StoreError, TicketDraft,
    TicketKey, TicketUpdate, TranscriptWrite,
};

const MAX_REASON_CHARS: usize = 2_048;
/// How many merges deep a lookup follows `merged_into_id`.
const MAX_MERGE_HOPS: usize = 64;

#[derive(Debug, Clone)]
pub struct EscalateInput {
    pub conversation: ConversationInput,
    pub contact: Option<ContactInput>,
    pub subject: String,
    pub priority: Option<Priority>,
    pub ticket_type: Option<TicketType>,
    pub reason: String,
    pub tags: Vec<String>,
    pub assignee_id: Option<Uuid>,
    pub queue_id: Option<Uuid>,
    pub request_id: String,
}

#[derive(Clone)]
pub struct EscalationService {
    store: Arc<dyn Store>,
    writer: Writer,
    routing: RoutingService,
    request_ids: RequestIds,
    clock: Clock,
    email: EmailSettings,
}

fn transcript_actor(role: MessageRole, author: &str) -> Actor {
    let kind = match role {
        MessageRole::Customer => ActorKind::Customer,
        MessageRole::Bot => ActorKind::Bot,
        MessageRole::Agent => ActorKind::Agent,
    };
    Actor {
        kind,
        id: None,
        name: author.to_owned(),
    }
}

/// A waiting or resolved ticket that hears from its customer again is OPEN again.
fn reopen(
    ticket: &Ticket,
    next: &mut Ticket,
    actor: Actor,
    at: chrono::DateTime<chrono::Utc>,
) -> Option<NewEvent> {
    if !matches!(ticket.status, Status::Waiting | Status::Resolved) {
        return None;
    }
    next.status = Status::Open;
    Some(NewEvent::about(
        next,
        EventKind::StatusChanged,
        actor,
        Visibility::Internal,
        EventPayload::FieldsChanged {
            changes: vec![FieldChange {
                field: "status".into(),
                old: ticket.status.as_str().into(),
                new: Status::Open.as_str().into(),
            }],
        },
        at,
    ))
}

/// The transcript as writes that append only messages the conversation lacks; `event`
/// builds the feed entry about the ticket from an actor and a payload.
fn transcript_writes(
    conversation: &ConversationInput,
    conversation_id: Uuid,
    ticket_id: Uuid,
    at: chrono::DateTime<chrono::Utc>,
    event: impl Fn(Actor, EventPayload) -> NewEvent,
) -> Vec<TranscriptWrite> {
    conversation
        .transcript
        .iter()
        .map(|message| {
            let mut entry = event(
                transcript_actor(message.role, &message.author),
                EventPayload::Note {
                    body: String::new(),
                },
            );
            let files = stored_attachments(ticket_id, entry.id, &message.attachments, at);
            entry.payload = EventPayload::Transcript {
                role: message.role.as_str().to_owned(),
                author: message.author.clone(),
                text: message.text.clone(),
                sent_at: message.sent_at,
                attachments: attachment_meta(&files),
            };
            TranscriptWrite {
                conversation_id,
                key: message.key(),
                event: entry,
                attachments: files,
            }
        })
        .collect()
}

impl EscalationService {
    pub fn new(
        store: Arc<dyn Store>,
        writer: Writer,
        routing: RoutingService,
        request_ids: RequestIds,
        clock: Clock,
        email: EmailSettings,
    ) -> Self {
        Self {
            clock,
            email,
            store,
            writer,
            routing,
            request_ids,
        }
    }

    /// Turns a conversation into a ticket, or adds to the ticket it already has. Returns
    /// the ticket and whether it is new.
    #[instrument(skip_all, fields(source = %input.conversation.source, conversation_id = %input.conversation.external_id))]
    pub async fn escalate(
        &self,
        principal: &Principal,
        mut input: EscalateInput,
    ) -> ServiceResult<(Ticket, bool)> {
        let mut v = Violations::new();
        input.conversation.validate("conversation", &mut v);
        for (i, message) in input.conversation.transcript.iter().enumerate() {
            validate_attachments(
                &format!("conversation.transcript[{i}].attachments"),
                &message.attachments,
                &mut v,
            );
        }
        match &input.contact {
            Some(contact) => contact.validate("contact", &mut v),
            None => v.add("contact", "is required"),
        }
        v.line("subject", &input.subject, false, MAX_SUBJECT_CHARS);
        v.text("reason", &input.reason, false, MAX_REASON_CHARS);
        v.line(
            "request_id",
            &input.request_id,
            false,
            super::tickets::MAX_REQUEST_ID_CHARS,
        );
        let tags = ticket::normalize_tags("tags", &input.tags, &mut v);
        v.finish()?;
        ensure_source(principal, &input.conversation.source)?;
        self.routing
            .ensure_targets(input.assignee_id, input.queue_id)
            .await?;
        if let Some(contact) = &mut input.contact {
            contact.fill_only = !principal.may_edit_contacts();
        }

        let tags = &tags;
        let input = &input;
        retry_contended(
            ServiceError::Contended(
                "the conversation kept changing while this escalation applied; retry".into(),
            ),
            || async move {
                let existing = self
                    .store
                    .conversation(&input.conversation.source, &input.conversation.external_id)
                    .await?;
                let result = match existing {
                    // A new conversation may not take the source of conversations opened
                    // by email on another channel (ones stored before this rule stay
                    // usable on the channel they have).
                    None if input.conversation.source == crate::domain::email::EMAIL_SOURCE
                        && input.conversation.channel != Some(Channel::Email) =>
                    {
                        Err(ServiceError::invalid(
                            "conversation.source",
                            "\"email\" is the source of conversations opened by email",
                        ))
                    }
                    None => self.escalate_new(principal, input, tags, None).await,
                    Some(conversation)
                        if input
                            .conversation
                            .channel
                            .is_some_and(|c| c != conversation.channel) =>
                    {
                        Err(ServiceError::invalid(
                            "conversation.channel",
                            format!(
                                "conversation {}/{} is on {}",
                                conversation.source, conversation.external_id, conversation.channel
                            ),
                        ))
                    }
                    Some(conversation) => {
                        let ticket = self.live_ticket(conversation.ticket_id).await?;
                        if ticket.status == Status::Closed {
                            self.escalate_new(principal, input, tags, Some((conversation, ticket)))
                                .await
                        } else {
                            self.escalate_again(principal, input, conversation, ticket)
                                .await
                                .map(|t| (t, false))
                        }
                    }
                };
                match result {
                    Ok((ticket, false)) => {
                        metrics::counter!("ticketd_escalations_total", "outcome" => "existing")
                            .increment(1);
                        Ok((ticket, false))
                    }
                    other => other,
                }
            },
        )
        .await
    }

    /// A new ticket for the conversation; with `previous`, a follow-up of that closed
    /// ticket, and the conversation moves over to the new one.
    async fn escalate_new(
        &self,
        principal: &Principal,
        input: &EscalateInput,
        tags: &[String],
        previous: Option<(Conversation, Ticket)>,
    ) -> ServiceResult<(Ticket, bool)> {
        let conversation = &input.conversation;
        let channel = conversation.channel.unwrap_or(Channel::Chat);
        let at = self.clock.now();
        let subject = [
            input.subject.as_str(),
            conversation.summary.as_str(),
            conversation.first_customer_text().unwrap_or(""),
        ]
        .into_iter()
        .map(|text| headline(text, MAX_SUBJECT_CHARS))
        .find(|s| !s.is_empty())
        .unwrap_or_else(|| {
            format!(
                "Conversation {} from {}",
                conversation.external_id, conversation.source
            )
        });
        let mut draft = TicketDraft {
            id: Uuid::now_v7(),
            subject,
            description: conversation.summary.clone(),
            status: Status::Open,
            priority: input.priority.unwrap_or(Priority::Medium),
            ticket_type: input.ticket_type.unwrap_or(TicketType::Question),
            tags: tags.to_vec(),
            custom_fields: Default::default(),
            contact: input.contact.clone().unwrap_or_default(),
            assignee_id: input.assignee_id,
            queue_id: input.queue_id,
            channel: Some(channel),
            follow_up_of_id: previous.as_ref().map(|(_, t)| t.id),
            conversation: Some(ConversationRef {
                source: conversation.source.clone(),
                external_id: conversation.external_id.clone(),
                channel,
            }),
            tier: 1,
            required_skills: Vec::new(),
            vip_handlers_only: false,
            created_at: at,
        };
        let plan = self
            .routing
            .plan(
                &mut draft,
                Some(&conversation.source),
                input.queue_id.is_some(),
            )
            .await?;
        let record = Conversation {
            id: previous.as_ref().map_or_else(Uuid::now_v7, |(c, _)| c.id),
            source: conversation.source.clone(),
            external_id: conversation.external_id.clone(),
            channel,
            ticket_id: draft.id,
            summary: conversation.summary.clone(),
            intent: conversation.intent.clone(),
            metadata: conversation.metadata.clone(),
        };
        let created = draft_event(
            &draft,
            EventKind::TicketCreated,
            principal.actor(),
            Visibility::Internal,
            EventPayload::created(
                &draft.subject,
                draft.priority,
                draft.status,
                draft.follow_up_of_id,
            ),
        );
        let escalated = draft_event(
            &draft,
            EventKind::ConversationEscalated,
            principal.actor(),
            Visibility::Internal,
            self.escalated_payload(input),
        );
        let transcript =
            transcript_writes(conversation, record.id, draft.id, at, |actor, payload| {
                draft_event(
                    &draft,
                    EventKind::TranscriptMessage,
                    actor,
                    Visibility::Public,
                    payload,
                )
            });
        let changes = Changeset {
            events: vec![created, escalated],
            conversation: Some(if previous.is_some() {
                ConversationWrite::Update(record, at)
            } else {
                ConversationWrite::Insert(record, at)
            }),
            transcript,
            ..Changeset::default()
        };
        // A retry names the same conversation; the rest of the body (new messages, say)
        // may differ, as a re-escalation's does. A follow-up of a closed ticket is never
        // a retry of the request that opened the closed one.
        let claim = self
            .request_ids
            .claim(
                "escalate_conversation",
                principal,
                &input.request_id,
                Fingerprint::new()
                    .part(&conversation.source)
                    .part(&conversation.external_id),
                draft.id,
            )
            .filter(|_| previous.is_none());
        match self.writer.create_ticket(draft, changes, claim).await {
            Ok(CreateOutcome::Created { ticket, committed }) => {
                tracing::info!(
                    ticket_id = %ticket.id,
                    number = ticket.number,
                    messages = committed.transcript_added,
                    follow_up = previous.is_some(),
                    "conversation escalated"
                );
                metrics::counter!(
                    "ticketd_tickets_created_total",
                    "channel" => channel.as_str(),
                    "priority" => ticket.priority.as_str()
                )
                .increment(1);
                metrics::counter!("ticketd_escalations_total", "outcome" => "created").increment(1);
                if ticket.queue_id.is_none() || ticket.assignee_id.is_some() {
                    return Ok((*ticket, true));
                }
                let routed = self.routing.route(ticket.id, &plan, true).await?;
                Ok((routed, true))
            }
            Ok(CreateOutcome::Replayed(id)) => {
                let ticket = self.store.ticket(TicketKey::Id(id)).await?;
                Ok((
                    ticket.ok_or_else(|| ServiceError::NotFound(format!("ticket {id}")))?,
                    false,
                ))
            }
            Err(StoreError::ConversationExists(_)) => Err(ServiceError::Contended(
                "conversation created concurrently".into(),
            )),
            Err(other) => Err(other.into()),
        }
    }

    /// Adds the messages the ticket lacks, refreshes the conversation's context and
    /// reopens a ticket that was waiting or resolved.
    async fn escalate_again(
        &self,
        principal: &Principal,
        input: &EscalateInput,
        mut record: Conversation,
        ticket: Ticket,
    ) -> ServiceResult<Ticket> {
        let conversation = &input.conversation;
        let at = self.clock.now();
        let mut next = ticket.clone();
        next.updated_at = at;
        // The conversation may come from a ticket merged into this one: it is this
        // ticket's now, and updates go back to it.
        next.conversation = Some(record.link());
        let mut events = Vec::new();
        events.extend(reopen(&ticket, &mut next, principal.actor(), at));
        events.push(NewEvent::about(
            &next,
            EventKind::ConversationEscalated,
            principal.actor(),
            Visibility::Internal,
            self.escalated_payload(input),
            at,
        ));
        let transcript =
            transcript_writes(conversation, record.id, next.id, at, |actor, payload| {
                NewEvent::about(
                    &next,
                    EventKind::TranscriptMessage,
                    actor,
                    Visibility::Public,
                    payload,
                    at,
                )
            });
        record.ticket_id = ticket.id;
        if !conversation.summary.is_empty() {
            record.summary = conversation.summary.clone();
        }
        if !conversation.intent.is_empty() {
            record.intent = conversation.intent.clone();
        }
        let stored = record.metadata.len();
        record.metadata.extend(conversation.metadata.clone());
        if record.metadata.len() > MAX_METADATA_ENTRIES {
            // Checked on the merged map: escalating again must not grow it without bound.
            return Err(ServiceError::invalid(
                "conversation.metadata",
                format!(
                    "with the {} entries already stored it would hold {}; the limit is {MAX_METADATA_ENTRIES}",
                    stored,
                    record.metadata.len()
                ),
            ));
        }
        let changes = Changeset {
            updates: vec![TicketUpdate::fields_only(next, ticket.version)],
            events,
            conversation: Some(ConversationWrite::Update(record, at)),
            transcript,
            ..Changeset::default()
        };
        match self.writer.commit(changes).await {
            Ok(mut committed) => {
                tracing::info!(ticket_id = %ticket.id, messages = committed.transcript_added, "conversation escalated again");
                let after = committed
                    .tickets
                    .pop()
                    .ok_or_else(|| ServiceError::NotFound(format!("ticket {}", ticket.id)))?;
                Ok(self.routing.after_change(&ticket, after).await)
            }
            Err(StoreError::Conflict(_)) => Err(ServiceError::Contended("ticket changed".into())),
            Err(other) => Err(other.into()),
        }
    }

    fn escalated_payload(&self, input: &EscalateInput) -> EventPayload {
        let c = &input.conversation;
        EventPayload::Escalated {
            source: c.source.clone(),
            conversation_id: c.external_id.clone(),
            channel: c
                .channel
                .map(|ch| ch.as_str().to_owned())
                .unwrap_or_default(),
            reason: input.reason.clone(),
            intent: c.intent.clone(),
            summary: c.summary.clone(),
            metadata: c.metadata.clone(),
            messages: c.transcript.len() as i64,
        }
    }

    /// Follows merges to the ticket that is still alive.
    async fn live_ticket(&self, id: Uuid) -> ServiceResult<Ticket> {
        let mut id = id;
        for _ in 0..MAX_MERGE_HOPS {
            let ticket = self
                .store
                .ticket(TicketKey::Id(id))
                .await?
                .ok_or_else(|| ServiceError::NotFound(format!("ticket {id}")))?;
            match ticket.merged_into_id {
                Some(target) => id = target,
                None => return Ok(ticket),
            }
        }
        Err(ServiceError::FailedPrecondition(format!(
            "ticket {id} is merged more than {MAX_MERGE_HOPS} times over"
        )))
    }

    /// The live ticket of a conversation.
    pub async fn conversation_ticket(
        &self,
        principal: &Principal,
        source: &str,
        external_id: &str,
    ) -> ServiceResult<Ticket> {
        ensure_source(principal, source)?;
        let conversation = self.known_conversation(source, external_id).await?;
        self.live_ticket(conversation.ticket_id).await
    }

    /// The conversation `source`/`external_id`, or NOT_FOUND.
    async fn known_conversation(
        &self,
        source: &str,
        external_id: &str,
    ) -> ServiceResult<Conversation> {
        self.store
            .conversation(source, external_id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("conversation {source}/{external_id}")))
    }
}

/// Bot keys may be limited to some conversation sources.
fn ensure_source(principal: &Principal, source: &str) -> ServiceResult<()> {
    if principal.may_speak_for(source) {
        Ok(())
    } else {
        Err(ServiceError::PermissionDenied(format!(
            "this key may not speak for conversations of source {source:?}"
        )))
    }
}
