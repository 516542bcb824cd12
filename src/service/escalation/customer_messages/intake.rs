//! Intake without a bot: the first message of a conversation ticketd has not seen opens
//! its ticket, with its contact found by address or created.

use super::*;

impl EscalationService {
    /// Opens the ticket of a conversation that starts with this message: its contact
    /// found or created, its subject the message's first line, routed and under SLA like
    /// any new ticket.
    pub(super) async fn open_from_message(
        &self,
        principal: &Principal,
        input: &CustomerMessageInput,
        channel: Channel,
        source: &str,
        external_id: &str,
    ) -> ServiceResult<CustomerMessageOutcome> {
        ensure_source(principal, source)?;
        let mut contact = self
            .intake_contact(input, channel, source, external_id)
            .await?;
        contact.fill_only = !principal.may_edit_contacts();
        let mut v = Violations::new();
        contact.validate("contact", &mut v);
        v.finish()?;
        let at = self.clock.now();
        let who = [&contact.name, &input.sender, &contact.email, &contact.phone]
            .into_iter()
            .find(|s| !s.is_empty())
            .cloned()
            .unwrap_or_else(|| "a customer".to_owned());
        // An email says what it is about; other messages by their first line.
        let email_subject = input
            .email
            .as_ref()
            .map(|e| headline(&e.subject, MAX_SUBJECT_CHARS))
            .filter(|s| !s.is_empty());
        let subject =
            match email_subject.unwrap_or_else(|| headline(&input.text, MAX_SUBJECT_CHARS)) {
                line if line.is_empty() => {
                    headline(&format!("{channel} message from {who}"), MAX_SUBJECT_CHARS)
                }
                line => line,
            };
        let link = ConversationRef {
            source: source.to_owned(),
            external_id: external_id.to_owned(),
            channel,
        };
        let mut draft = TicketDraft {
            id: Uuid::now_v7(),
            subject,
            description: input.text.clone(),
            status: Status::Open,
            priority: Priority::Medium,
            ticket_type: TicketType::Question,
            tags: Vec::new(),
            custom_fields: Default::default(),
            contact,
            assignee_id: None,
            queue_id: None,
            channel: Some(channel),
            follow_up_of_id: None,
            conversation: Some(link),
            tier: 1,
            required_skills: Vec::new(),
            vip_handlers_only: false,
            created_at: at,
        };
        let plan = self.routing.plan(&mut draft, Some(source), false).await?;
        let record = Conversation {
            id: Uuid::now_v7(),
            source: source.to_owned(),
            external_id: external_id.to_owned(),
            channel,
            ticket_id: draft.id,
            summary: String::new(),
            intent: String::new(),
            metadata: Default::default(),
        };
        let customer = Actor {
            kind: ActorKind::Customer,
            id: None,
            name: who,
        };
        let created = draft_event(
            &draft,
            EventKind::TicketCreated,
            customer.clone(),
            Visibility::Internal,
            EventPayload::created(&draft.subject, draft.priority, draft.status, None),
        );
        let mut message = draft_event(
            &draft,
            EventKind::CustomerMessage,
            customer.clone(),
            Visibility::Public,
            EventPayload::Note {
                body: String::new(),
            },
        );
        let files = Self::customer_event(input, channel, draft.id, &mut message, &customer.name);
        message.ticket.channel = Some(channel);
        let message_id = message.id;
        let changes = Changeset {
            events: vec![created, message],
            attachments: files,
            inbound: Self::inbound_claim(input, channel, draft.id, message_id, at),
            conversation: Some(ConversationWrite::Insert(record, at)),
            ..Changeset::default()
        };
        let claim = self.request_claim(principal, input, channel, message_id);
        match self.writer.create_ticket(draft, changes, claim).await {
            Ok(CreateOutcome::Created { ticket, committed }) => {
                tracing::info!(ticket_id = %ticket.id, number = ticket.number, "conversation opened by a customer message");
                metrics::counter!(
                    "ticketd_tickets_created_total",
                    "channel" => channel.as_str(),
                    "priority" => ticket.priority.as_str()
                )
                .increment(1);
                // Found by id: an acknowledgement may follow it in the same commit.
                let entry = committed
                    .events
                    .into_iter()
                    .find(|e| e.event.id == message_id)
                    .ok_or_else(|| ServiceError::NotFound("customer message".into()))?;
                let ticket = if ticket.queue_id.is_some() && ticket.assignee_id.is_none() {
                    self.routing.route(ticket.id, &plan, true).await?
                } else {
                    *ticket
                };
                Ok(CustomerMessageOutcome {
                    ticket,
                    entry,
                    duplicate: false,
                    follow_up: false,
                    created: true,
                })
            }
            Ok(CreateOutcome::Replayed(event_id)) => self.replayed(event_id).await,
            // Another message opened the conversation first: this one joins its ticket.
            Err(StoreError::ConversationExists(_) | StoreError::DuplicateInbound(_)) => Err(
                ServiceError::Contended("conversation opened concurrently".into()),
            ),
            Err(other) => Err(other.into()),
        }
    }

    /// The contact of a conversation's first message: by the external id the gateway
    /// sent; else the contact with the message's email address or phone number (the
    /// sender's address on EMAIL and SMS); else a new contact named after that address,
    /// or after the conversation when there is none.
    async fn intake_contact(
        &self,
        input: &CustomerMessageInput,
        channel: Channel,
        source: &str,
        external_id: &str,
    ) -> ServiceResult<ContactInput> {
        let given = input.contact.clone().unwrap_or_default();
        let sender = input.sender.trim();
        let email = match (given.email.is_empty(), channel) {
            (false, _) => given.email.clone(),
            (true, Channel::Email) if ticket::looks_like_email(sender) => sender.to_owned(),
            _ => String::new(),
        };
        let phone = match (given.phone.is_empty(), channel) {
            (false, _) => given.phone.clone(),
            (true, Channel::Sms) => sender.to_owned(),
            _ => String::new(),
        };
        let name = given.name.clone();
        if !given.external_id.is_empty() {
            return Ok(ContactInput {
                email,
                phone,
                ..given
            });
        }
        if let Some(found) = self.store.contact_by_address(&email, &phone).await? {
            // Found by one address, the contact gains no other: a message must not be able
            // to point a customer's replies somewhere new.
            return Ok(ContactInput {
                external_id: found.external_id,
                name,
                vip: None,
                fill_only: true,
                ..ContactInput::default()
            });
        }
        let external_id = if !email.is_empty() {
            format!("email:{}", email.to_lowercase())
        } else if !phone.is_empty() {
            format!("phone:{phone}")
        } else if channel == Channel::Email && !sender.is_empty() {
            // An address the contact cannot keep (`bob@intranet`) still names its writer.
            format!("email:{}", sender.to_lowercase())
        } else {
            format!("{source}:{external_id}")
        };
        Ok(ContactInput {
            external_id,
            name: if name.is_empty() && channel == Channel::Chat {
                sender.to_owned()
            } else {
                name
            },
            email,
            phone,
            vip: given.vip,
            fill_only: true,
        })
    }
}
