//! Customer messages from gateways: each lands on its conversation's ticket exactly once,
//! reopening a waiting or resolved ticket and opening a follow-up for a closed one. A
//! message for a conversation ticketd has not seen opens its ticket (intake without a
//! bot: a new SMS, chat or email thread).

mod intake;

use super::*;
use crate::service::delivery::ensure_channel;

/// Where a customer message belongs.
#[derive(Debug, Clone)]
pub enum MessageTarget {
    Conversation { source: String, external_id: String },
    Ticket(Uuid),
}

#[derive(Debug, Clone)]
pub struct CustomerMessageInput {
    pub target: MessageTarget,
    pub channel: Option<Channel>,
    pub sender: String,
    pub text: String,
    pub attachments: Vec<AttachmentInput>,
    pub external_message_id: String,
    /// The caller's retry key; see `RequestIds`.
    pub request_id: String,
    /// Who wrote, for a conversation without a ticket yet; see
    /// [`EscalationService::intake_contact`].
    pub contact: Option<ContactInput>,
    /// For email: its subject, how it was threaded, its whole text.
    pub email: Option<crate::domain::event::EmailFacts>,
}

/// What became of a customer message.
#[derive(Debug)]
pub struct CustomerMessageOutcome {
    pub ticket: Ticket,
    pub entry: Event,
    /// A message with this `external_message_id` was stored before; nothing changed.
    pub duplicate: bool,
    /// The message was for a closed ticket and opened `ticket` as its follow-up.
    pub follow_up: bool,
    /// The message started a conversation and opened `ticket`.
    pub created: bool,
}

impl EscalationService {
    /// Adds a customer's message to its ticket, reopening it or, for a closed ticket,
    /// opening a follow-up.
    #[instrument(skip_all, fields(external_message_id = %input.external_message_id))]
    pub async fn post_customer_message(
        &self,
        principal: &Principal,
        input: CustomerMessageInput,
    ) -> ServiceResult<CustomerMessageOutcome> {
        let mut v = Violations::new();
        if input.channel.is_none() {
            v.add("channel", "is required");
        }
        v.text("text", &input.text, false, MAX_MESSAGE_CHARS);
        if input.text.trim().is_empty() && input.attachments.is_empty() {
            v.add("text", "a message needs text or attachments");
        }
        v.line("sender", &input.sender, false, MAX_NAME_CHARS);
        v.line(
            "external_message_id",
            &input.external_message_id,
            false,
            MAX_NAME_CHARS,
        );
        v.line(
            "request_id",
            &input.request_id,
            false,
            crate::service::tickets::MAX_REQUEST_ID_CHARS,
        );
        validate_attachments("attachments", &input.attachments, &mut v);
        if let MessageTarget::Conversation {
            source,
            external_id,
        } = &input.target
        {
            v.line("source", source, true, MAX_NAME_CHARS);
            v.line("conversation_id", external_id, true, MAX_NAME_CHARS);
        }
        if let Some(contact) = &input.contact {
            // Only `external_id` may be left out: intake makes one up from the address.
            ContactInput {
                external_id: "-".into(),
                ..contact.clone()
            }
            .validate("contact", &mut v);
            v.line(
                "contact.external_id",
                &contact.external_id,
                false,
                crate::domain::ticket::MAX_CONTACT_FIELD_CHARS,
            );
        }
        v.finish()?;
        let channel = input.channel.unwrap_or(Channel::Chat);
        ensure_channel(principal, channel)?;
        if let MessageTarget::Conversation { source, .. } = &input.target
            && source == crate::domain::email::EMAIL_SOURCE
            && channel != Channel::Email
        {
            return Err(ServiceError::invalid(
                "source",
                "\"email\" is the source of conversations opened by email",
            ));
        }

        let input = &input;
        retry_contended(
            ServiceError::Contended(
                "the ticket kept changing while this message applied; retry".into(),
            ),
            || async move {
                if let Some(first) = self
                    .first_result(channel, &input.external_message_id)
                    .await?
                {
                    return Ok(first);
                }
                let (conversation, ticket) = match &input.target {
                    MessageTarget::Conversation {
                        source,
                        external_id,
                    } => {
                        let Some(conversation) =
                            self.store.conversation(source, external_id).await?
                        else {
                            return self
                                .open_from_message(principal, input, channel, source, external_id)
                                .await;
                        };
                        if conversation.channel != channel {
                            return Err(ServiceError::invalid(
                                "channel",
                                format!(
                                    "conversation {source}/{external_id} is on {}, not {channel}",
                                    conversation.channel
                                ),
                            ));
                        }
                        let ticket = self.live_ticket(conversation.ticket_id).await?;
                        (Some(conversation), ticket)
                    }
                    MessageTarget::Ticket(id) => {
                        let ticket = self.live_ticket(*id).await?;
                        (self.store.conversation_of_ticket(ticket.id).await?, ticket)
                    }
                };
                // A gateway limited to some channels reaches only tickets on them, whatever
                // channel its request names; a ticket on no channel is none of them.
                let on: Vec<Channel> = (conversation.as_ref().map(|c| c.channel).into_iter())
                    .chain(ticket.channel)
                    .collect();
                if on.is_empty() && !principal.channels.is_empty() {
                    return Err(ServiceError::PermissionDenied(format!(
                        "ticket #{} is on no channel, and this key serves only some",
                        ticket.number
                    )));
                }
                for on in on {
                    ensure_channel(principal, on)?;
                }
                if ticket.status == Status::Closed {
                    self.follow_up(principal, input, channel, conversation, ticket)
                        .await
                } else {
                    self.add_to_ticket(principal, input, channel, ticket).await
                }
            },
        )
        .await
    }

    /// The stored outcome of a message id seen before.
    async fn first_result(
        &self,
        channel: Channel,
        external_message_id: &str,
    ) -> ServiceResult<Option<CustomerMessageOutcome>> {
        if external_message_id.is_empty() {
            return Ok(None);
        }
        let Some((ticket_id, event_id)) = self
            .store
            .inbound_message(channel, external_message_id)
            .await?
        else {
            return Ok(None);
        };
        let ticket = self
            .store
            .ticket(TicketKey::Id(ticket_id))
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("ticket {ticket_id}")))?;
        let entry = self
            .store
            .event(event_id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("event {event_id}")))?;
        Ok(Some(CustomerMessageOutcome {
            ticket,
            entry,
            duplicate: true,
            follow_up: false,
            created: false,
        }))
    }

    /// The result of a request replayed by its `request_id`: the message it stored.
    async fn replayed(&self, event_id: Uuid) -> ServiceResult<CustomerMessageOutcome> {
        let entry = self
            .store
            .event(event_id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("event {event_id}")))?;
        let ticket = self
            .store
            .ticket(TicketKey::Id(entry.event.ticket_id))
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("ticket {}", entry.event.ticket_id)))?;
        Ok(CustomerMessageOutcome {
            ticket,
            entry,
            duplicate: true,
            follow_up: false,
            created: false,
        })
    }

    /// A claim on the request's `request_id` for the message event `event_id`.
    fn request_claim(
        &self,
        principal: &Principal,
        input: &CustomerMessageInput,
        channel: Channel,
        event_id: Uuid,
    ) -> Option<crate::store::IdempotencyClaim> {
        let target = match &input.target {
            MessageTarget::Conversation {
                source,
                external_id,
            } => format!("{source}/{external_id}"),
            MessageTarget::Ticket(id) => id.to_string(),
        };
        let mut body = Fingerprint::new()
            .part(target)
            .part(channel.as_str())
            .part(&input.sender)
            .part(&input.text)
            .part(&input.external_message_id);
        for a in &input.attachments {
            body = body.part(&a.name).part(&a.content_type).part(&a.content);
        }
        self.request_ids.claim(
            "post_customer_message",
            principal,
            &input.request_id,
            body,
            event_id,
        )
    }

    fn customer_event(
        input: &CustomerMessageInput,
        channel: Channel,
        ticket_id: Uuid,
        event: &mut NewEvent,
        contact_name: &str,
    ) -> Vec<crate::store::NewAttachment> {
        let at = event.created_at;
        let files = stored_attachments(ticket_id, event.id, &input.attachments, at);
        event.payload = EventPayload::CustomerMessage {
            channel: channel.as_str().to_owned(),
            sender: input.sender.clone(),
            text: input.text.clone(),
            external_message_id: input.external_message_id.clone(),
            attachments: attachment_meta(&files),
            email: input.email.clone(),
        };
        event.actor = Actor {
            kind: ActorKind::Customer,
            id: None,
            name: if input.sender.is_empty() {
                contact_name.to_owned()
            } else {
                input.sender.clone()
            },
        };
        files
    }

    fn inbound_claim(
        input: &CustomerMessageInput,
        channel: Channel,
        ticket_id: Uuid,
        event_id: Uuid,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Option<InboundClaim> {
        (!input.external_message_id.is_empty()).then(|| InboundClaim {
            channel,
            external_message_id: input.external_message_id.clone(),
            ticket_id,
            event_id,
            at,
        })
    }

    async fn add_to_ticket(
        &self,
        principal: &Principal,
        input: &CustomerMessageInput,
        channel: Channel,
        ticket: Ticket,
    ) -> ServiceResult<CustomerMessageOutcome> {
        let at = self.clock.now();
        let mut next = ticket.clone();
        next.updated_at = at;
        let customer = Actor {
            kind: ActorKind::Customer,
            id: None,
            name: ticket.contact.name.clone(),
        };
        let mut events = Vec::new();
        events.extend(reopen(&ticket, &mut next, customer.clone(), at));
        let mut message = NewEvent::about(
            &next,
            EventKind::CustomerMessage,
            customer,
            Visibility::Public,
            EventPayload::Note {
                body: String::new(),
            },
            at,
        );
        let files =
            Self::customer_event(input, channel, next.id, &mut message, &ticket.contact.name);
        message.ticket.channel = Some(channel);
        let message_id = message.id;
        events.push(message);
        let changes = Changeset {
            updates: vec![TicketUpdate::fields_only(next, ticket.version)],
            events,
            attachments: files,
            inbound: Self::inbound_claim(input, channel, ticket.id, message_id, at),
            claim: self.request_claim(principal, input, channel, message_id),
            ..Changeset::default()
        };
        let ticket_id = ticket.id;
        match self.writer.commit(changes).await {
            Ok(crate::store::Committed {
                replayed: Some(event_id),
                ..
            }) => self.replayed(event_id).await,
            Ok(mut committed) => {
                // Found by id: an auto-response may follow it in the same commit.
                let entry = committed
                    .events
                    .into_iter()
                    .find(|e| e.event.id == message_id);
                let ticket = committed.tickets.pop();
                match (entry, ticket) {
                    (Some(entry), Some(ticket)) => Ok(CustomerMessageOutcome {
                        ticket,
                        entry,
                        duplicate: false,
                        follow_up: false,
                        created: false,
                    }),
                    _ => Err(ServiceError::NotFound(format!("ticket {ticket_id}"))),
                }
            }
            Err(StoreError::Conflict(_) | StoreError::DuplicateInbound(_)) => {
                Err(ServiceError::Contended("ticket changed".into()))
            }
            Err(other) => Err(other.into()),
        }
    }

    async fn follow_up(
        &self,
        principal: &Principal,
        input: &CustomerMessageInput,
        channel: Channel,
        conversation: Option<Conversation>,
        closed: Ticket,
    ) -> ServiceResult<CustomerMessageOutcome> {
        let at = self.clock.now();
        let draft = TicketDraft {
            id: Uuid::now_v7(),
            subject: headline(&format!("Re: {}", closed.subject), MAX_SUBJECT_CHARS),
            description: input.text.clone(),
            status: Status::Open,
            priority: closed.priority,
            ticket_type: closed.ticket_type,
            tags: closed.tags.clone(),
            custom_fields: Default::default(),
            contact: ContactInput {
                external_id: closed.contact.external_id.clone(),
                ..ContactInput::default()
            },
            assignee_id: closed.assignee_id,
            queue_id: closed.queue_id,
            channel: Some(channel),
            follow_up_of_id: Some(closed.id),
            conversation: conversation.as_ref().map(Conversation::link),
            tier: closed.tier,
            required_skills: closed.required_skills.clone(),
            vip_handlers_only: closed.vip_handlers_only,
            created_at: at,
        };
        let created = draft_event(
            &draft,
            EventKind::TicketCreated,
            Actor {
                kind: ActorKind::Customer,
                id: None,
                name: closed.contact.name.clone(),
            },
            Visibility::Internal,
            EventPayload::created(
                &draft.subject,
                draft.priority,
                draft.status,
                Some(closed.id),
            ),
        );
        let mut message = draft_event(
            &draft,
            EventKind::CustomerMessage,
            Actor {
                kind: ActorKind::Customer,
                id: None,
                name: String::new(),
            },
            Visibility::Public,
            EventPayload::Note {
                body: String::new(),
            },
        );
        let files =
            Self::customer_event(input, channel, draft.id, &mut message, &closed.contact.name);
        message.ticket.channel = Some(channel);
        let message_id = message.id;
        let changes = Changeset {
            events: vec![created, message],
            attachments: files,
            inbound: Self::inbound_claim(input, channel, draft.id, message_id, at),
            conversation: conversation.map(|mut c| {
                c.ticket_id = draft.id;
                ConversationWrite::Update(c, at)
            }),
            ..Changeset::default()
        };
        let claim = self.request_claim(principal, input, channel, message_id);
        match self.writer.create_ticket(draft, changes, claim).await {
            Ok(CreateOutcome::Created { ticket, committed }) => {
                tracing::info!(ticket_id = %ticket.id, follow_up_of = %closed.id, "follow-up ticket opened");
                let entry = committed
                    .events
                    .into_iter()
                    .find(|e| e.event.id == message_id)
                    .ok_or_else(|| ServiceError::NotFound("customer message".into()))?;
                Ok(CustomerMessageOutcome {
                    ticket: *ticket,
                    entry,
                    duplicate: false,
                    follow_up: true,
                    created: false,
                })
            }
            Ok(CreateOutcome::Replayed(event_id)) => self.replayed(event_id).await,
            Err(StoreError::DuplicateInbound(_)) => Err(ServiceError::Contended(
                "message stored concurrently".into(),
            )),
            Err(other) => Err(other.into()),
        }
    }
}
