//! Entries of the activity feed that change a ticket: replies, internal notes, time.

use super::*;

impl TicketService {
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
        request_id: &str,
    ) -> ServiceResult<(Event, Ticket)> {
        let mut v = Violations::new();
        v.text("body", &body, true, MAX_BODY_CHARS);
        v.line("request_id", request_id, false, MAX_REQUEST_ID_CHARS);
        validate_attachments("attachments", &attachments, &mut v);
        v.finish()?;
        let mut body_print = Fingerprint::new()
            .part(id.as_bytes())
            .part(&body)
            .part(channel.map(Channel::as_str).unwrap_or_default());
        for a in &attachments {
            body_print = body_print
                .part(&a.name)
                .part(&a.content_type)
                .part(&a.content);
        }
        let claim = self
            .request_ids
            .claim("add_reply", principal, request_id, body_print, id);
        let conversation = self.store.conversation_of_ticket(id).await?;
        self.append(principal, id, claim, |ticket, at| {
            ensure_not_final(ticket)?;
            let channel = channel.or(ticket.channel).ok_or_else(|| {
                ServiceError::invalid(
                    "channel",
                    "is required: the ticket has no conversation to reply to",
                )
            })?;
            let event_id = Uuid::now_v7();
            let files = stored_attachments(ticket.id, event_id, &attachments, at);
            let meta = attachment_meta(&files);
            let message = outbound_message(
                ticket,
                channel,
                conversation.as_ref(),
                event_id,
                (body.clone(), meta.clone()),
                OutboundKind::Reply,
                at,
            )?;
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
                notify: Vec::new(),
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
        request_id: &str,
    ) -> ServiceResult<(Event, Ticket)> {
        let mut v = Violations::new();
        v.text("body", &body, true, MAX_BODY_CHARS);
        v.line("request_id", request_id, false, MAX_REQUEST_ID_CHARS);
        v.finish()?;
        let claim = self.request_ids.claim(
            "add_note",
            principal,
            request_id,
            Fingerprint::new().part(id.as_bytes()).part(&body),
            id,
        );
        let notify = &self.mentioned_agents(principal, &body).await?;
        self.append(principal, id, claim, |ticket, _| {
            ensure_not_merged(ticket)?;
            Ok(Entry {
                event_id: Uuid::now_v7(),
                kind: EventKind::NoteAdded,
                visibility: Visibility::Internal,
                payload: EventPayload::Note { body: body.clone() },
                attachments: Vec::new(),
                time_entry: None,
                outbound: None,
                notify: notify.clone(),
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
        request_id: &str,
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
        v.line("request_id", request_id, false, MAX_REQUEST_ID_CHARS);
        v.finish()?;
        let agent_id = match agent_id {
            Some(agent) if Some(agent) != principal.agent_id => {
                if principal.role != Role::Admin {
                    return Err(ServiceError::PermissionDenied(
                        "only an admin key may log time for another agent".into(),
                    ));
                }
                // Time is booked to someone who exists.
                self.routing.agent(agent).await.map_err(|err| match err {
                    ServiceError::NotFound(_) => {
                        ServiceError::invalid("agent_id", format!("agent {agent} does not exist"))
                    }
                    other => other,
                })?;
                Some(agent)
            }
            other => other.or(principal.agent_id),
        };
        let claim = self.request_ids.claim(
            "log_time",
            principal,
            request_id,
            Fingerprint::new()
                .part(id.as_bytes())
                .part(agent_id.map(|a| a.to_string()).unwrap_or_default())
                .part(seconds.to_le_bytes())
                .part(&note),
            id,
        );
        self.append(principal, id, claim, |ticket, at| {
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
                notify: Vec::new(),
            })
        })
        .await
    }

    /// Adds one feed entry to a ticket, bumping its version; retried on conflicts.
    /// With a claim, a retry of the request returns the entry the first one added.
    async fn append(
        &self,
        principal: &Principal,
        id: Uuid,
        claim: Option<IdempotencyClaim>,
        entry: impl Fn(&Ticket, chrono::DateTime<chrono::Utc>) -> ServiceResult<Entry>,
    ) -> ServiceResult<(Event, Ticket)> {
        // A retry after the ticket moved on (closed since, say) still gets its first result.
        if let Some(claim) = &claim
            && let Some(first) = self.store.claimed_request(claim).await?
        {
            return self.replayed_entry(first, id).await;
        }
        let entry = &entry;
        let claim = &claim;
        retry_contended(contended(id), || async move {
            let current = self.get(TicketKey::Id(id)).await?;
            let at = self.clock.now();
            let Entry {
                event_id,
                kind,
                visibility,
                payload,
                attachments,
                time_entry,
                outbound,
                notify,
            } = entry(&current, at)?;
            let mut next = current.clone();
            next.updated_at = at;
            if let Some(time) = &time_entry {
                next.time_spent_seconds += time.seconds;
            }
            let actor = principal.actor();
            let notice = match (&payload, notify.is_empty()) {
                (EventPayload::Note { body }, false) => Some(
                    crate::domain::notification::mentioned(&next, &actor, notify, body, at),
                ),
                _ => None,
            };
            let mut event = NewEvent::about(&next, kind, actor, visibility, payload, at);
            event.id = event_id;
            let queued_channel = outbound.as_ref().map(|m| m.channel);
            let queued = outbound.as_ref().map(|m| DeliveryView {
                message_id: m.id,
                status: DeliveryStatus::Queued.as_str().to_owned(),
                provider_message_id: String::new(),
                error: String::new(),
            });
            let changeset = Changeset {
                updates: vec![TicketUpdate::fields_only(next, current.version)],
                events: std::iter::once(event).chain(notice).collect(),
                time_entries: time_entry.into_iter().collect(),
                attachments,
                outbound: outbound.into_iter().collect(),
                claim: claim.clone().map(|claim| IdempotencyClaim {
                    resource_id: event_id,
                    ..claim
                }),
                ..Changeset::default()
            };
            match self.writer.commit(changeset).await {
                Ok(Committed {
                    replayed: Some(first),
                    ..
                }) => return self.replayed_entry(first, id).await,
                Ok(mut committed) => {
                    if let Some(channel) = queued_channel {
                        metrics::counter!(
                            "ticketd_outbound_messages_total",
                            "state" => "queued",
                            "channel" => channel.as_str()
                        )
                        .increment(1);
                    }
                    let event = committed
                        .events
                        .into_iter()
                        .find(|e| e.event.id == event_id)
                        .map(|mut e| {
                            e.delivery = queued;
                            e
                        });
                    let ticket = committed.tickets.pop();
                    event
                        .zip(ticket)
                        .ok_or_else(|| not_found(TicketKey::Id(id)))
                }
                // A concurrent change is Contended: read again and re-apply.
                Err(other) => Err(other.into()),
            }
        })
        .await
    }
}

impl TicketService {
    /// The entry a request id's first request added, with its ticket as it is now.
    async fn replayed_entry(
        &self,
        event_id: Uuid,
        ticket_id: Uuid,
    ) -> ServiceResult<(Event, Ticket)> {
        let event = self
            .store
            .event(event_id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("entry {event_id}")))?;
        let ticket = self.get(TicketKey::Id(ticket_id)).await?;
        Ok((event, ticket))
    }
}

impl TicketService {
    /// The agents a note mentions by email (`@sam@example.com`), but not its author.
    async fn mentioned_agents(
        &self,
        principal: &Principal,
        body: &str,
    ) -> ServiceResult<Vec<Uuid>> {
        let emails = crate::domain::notification::mentioned_emails(body);
        if emails.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self
            .store
            .agents()
            .await?
            .into_iter()
            .filter(|a| emails.contains(&a.email.to_lowercase()))
            .filter(|a| principal.agent_id != Some(a.id))
            .map(|a| a.id)
            .collect())
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
    /// Agents the entry mentions, told by a notification beside it.
    notify: Vec<Uuid>,
}

/// The outbound message that carries a public entry (`event_id`, with its body and
/// attachments) to the customer on `channel`, in the conversation the ticket came from
/// when it is on that channel.
pub(crate) fn outbound_message(
    ticket: &Ticket,
    channel: Channel,
    conversation: Option<&Conversation>,
    event_id: Uuid,
    (body, attachments): (String, Vec<AttachmentMeta>),
    kind: OutboundKind,
    at: chrono::DateTime<chrono::Utc>,
) -> ServiceResult<OutboundMessage> {
    let recipient = recipient(ticket, channel, conversation)?;
    let same_channel = conversation.filter(|c| c.channel == channel);
    Ok(OutboundMessage {
        id: Uuid::now_v7(),
        ticket_id: ticket.id,
        ticket_number: ticket.number,
        event_id,
        conversation_id: same_channel
            .map(|c| c.external_id.clone())
            .unwrap_or_default(),
        channel,
        recipient,
        subject: format!("Re: [#{}] {}", ticket.number, ticket.subject),
        body,
        attachments,
        kind,
        source: same_channel.map(|c| c.source.clone()).unwrap_or_default(),
        created_at: at,
    })
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
