//! Email in: a raw message from an email gateway finds its ticket (or opens one) and
//! lands as the customer's message; machines' mail is set aside, and a bounce marks the
//! delivery it returns as failed.

use super::*;
use crate::domain::email::{EMAIL_SOURCE, Mailbox, ThreadRef};
use crate::domain::event::EmailFacts;
use crate::domain::inbound_email::{self, InboundEmail, ThreadedBy, subject_number};
use crate::domain::ticket::{MAX_CONTACT_FIELD_CHARS, looks_like_email};
use crate::service::delivery::ensure_channel;
use crate::service::tickets::{
    MAX_ATTACHMENT_BYTES_TOTAL, MAX_ATTACHMENTS, valid_content_type, valid_file_name,
};

/// Longest whole text kept on an entry beside the visible part, in characters.
const MAX_FULL_TEXT_CHARS: usize = 512 * 1024;

/// How ticketd reads email.
#[derive(Debug, Clone)]
pub struct EmailSettings {
    pub mailbox: Mailbox,
    /// Largest raw message accepted, in bytes.
    pub max_bytes: usize,
}

/// What became of an ingested email.
#[derive(Debug)]
pub struct IngestOutcome {
    /// `None` when the email was set aside.
    pub message: Option<CustomerMessageOutcome>,
    pub threaded_by: Option<ThreadedBy>,
    /// Why nothing was added: a machine sent it, or it is a bounce.
    pub ignored_reason: String,
}

impl IngestOutcome {
    fn ignored(reason: String) -> Self {
        IngestOutcome {
            message: None,
            threaded_by: None,
            ignored_reason: reason,
        }
    }
}

/// The attachments of an email that can be kept: names made safe, unknown types read as
/// `application/octet-stream`, as many as fit the limits of one message. Also returns how
/// many were left out.
fn keepable(attachments: Vec<AttachmentInput>) -> (Vec<AttachmentInput>, usize) {
    let mut kept: Vec<AttachmentInput> = Vec::new();
    let mut total = 0;
    let mut left_out = 0;
    for (i, mut file) in attachments.into_iter().enumerate() {
        if !valid_file_name(&file.name) {
            let safe: String = file
                .name
                .chars()
                .map(|c| {
                    if c == '/' || c == '\\' || c.is_control() {
                        '_'
                    } else {
                        c
                    }
                })
                .take(255)
                .collect();
            file.name = match safe.trim() {
                "" | "." | ".." => format!("attachment-{}", i + 1),
                name => name.to_owned(),
            };
        }
        if !valid_content_type(&file.content_type) {
            file.content_type = "application/octet-stream".into();
        }
        if kept.len() >= MAX_ATTACHMENTS || total + file.content.len() > MAX_ATTACHMENT_BYTES_TOTAL
        {
            left_out += 1;
            continue;
        }
        total += file.content.len();
        kept.push(file);
    }
    (kept, left_out)
}

/// `text` cut to `max` characters, silently (for names and addresses).
fn at_most_chars(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// Cuts `text` to `max` characters, saying so.
fn at_most(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_owned(),
        Some((end, _)) => format!("{}\n[… cut: the message was longer]", &text[..end]),
    }
}

impl EscalationService {
    /// Takes in a raw email delivered to `recipient`.
    #[instrument(skip_all)]
    pub async fn ingest_email(
        &self,
        principal: &Principal,
        raw: &[u8],
        recipient: &str,
        request_id: &str,
    ) -> ServiceResult<IngestOutcome> {
        ensure_channel(principal, Channel::Email)?;
        if raw.len() > self.email.max_bytes {
            return Err(ServiceError::ResourceExhausted(format!(
                "raw: the email is {} bytes; the limit is {} (TICKETD_MAX_EMAIL_BYTES)",
                raw.len(),
                self.email.max_bytes
            )));
        }
        let mut v = Violations::new();
        v.line(
            "recipient",
            recipient,
            false,
            crate::domain::ticket::MAX_CONTACT_FIELD_CHARS,
        );
        v.finish()?;
        let email =
            inbound_email::parse(raw).map_err(|e| ServiceError::invalid("raw", e.to_string()))?;
        if let Some(mentioned) = &email.bounce_of {
            let marked = self.record_bounce(principal, &email, mentioned).await?;
            return Ok(IngestOutcome::ignored(format!(
                "a bounce; {marked} delivery(ies) of ours marked failed"
            )));
        }
        if let Some(sign) = &email.automatic {
            tracing::info!(from = %email.from_address, sign = %sign, "automatic email set aside");
            return Ok(IngestOutcome::ignored(format!(
                "sent by a machine ({sign})"
            )));
        }
        if self.is_own_address(&email.from_address) {
            return Ok(IngestOutcome::ignored(
                "sent from the support mailbox itself; answering it would loop".into(),
            ));
        }
        // The email's id: its Message-ID, else a digest of it or of the whole message, so a
        // gateway delivering it twice is recognised either way.
        let key = if !email.message_id.is_empty() && email.message_id.len() <= MAX_NAME_CHARS - 2 {
            email.message_id.clone()
        } else {
            use sha2::Digest;
            let basis = if email.message_id.is_empty() {
                raw
            } else {
                email.message_id.as_bytes()
            };
            format!(
                "sha256:{}",
                crate::domain::hex(&sha2::Sha256::digest(basis))
            )
        };
        let (target, rule) = self.thread(&email, recipient, &key).await?;
        let full_text = if email.full_text.trim() != email.visible_text {
            at_most(&email.full_text, MAX_FULL_TEXT_CHARS)
        } else {
            String::new()
        };
        let (attachments, left_out) = keepable(email.attachments.clone());
        let mut text = at_most(&email.visible_text, MAX_MESSAGE_CHARS - 256);
        if left_out > 0 {
            text.push_str(&format!(
                "\n\n[{left_out} attachment(s) not kept: past the limits of \
                 {MAX_ATTACHMENTS} files and {MAX_ATTACHMENT_BYTES_TOTAL} bytes]"
            ));
        }
        if text.trim().is_empty() && attachments.is_empty() {
            text = "(empty message)".into();
        }
        // A sender address the contact cannot keep (no domain dot, say) still writes in.
        let contact_email = if looks_like_email(&email.from_address) {
            email.from_address.clone()
        } else {
            String::new()
        };
        let input = CustomerMessageInput {
            target,
            channel: Some(Channel::Email),
            sender: at_most_chars(&email.from_address, MAX_NAME_CHARS),
            text,
            attachments,
            external_message_id: key,
            request_id: request_id.to_owned(),
            contact: Some(ContactInput {
                name: at_most_chars(&email.from_name, MAX_CONTACT_FIELD_CHARS),
                email: contact_email,
                ..ContactInput::default()
            }),
            email: Some(EmailFacts {
                subject: email.subject.clone(),
                threaded_by: rule.as_str().to_owned(),
                full_text,
            }),
        };
        let outcome = self.post_customer_message(principal, input).await?;
        let threaded_by = if outcome.created {
            ThreadedBy::NewTicket
        } else {
            rule
        };
        Ok(IngestOutcome {
            message: Some(outcome),
            threaded_by: Some(threaded_by),
            ignored_reason: String::new(),
        })
    }

    fn is_own_address(&self, address: &str) -> bool {
        let own = self.email.mailbox.to_string();
        address.eq_ignore_ascii_case(&own) || self.email.mailbox.reply_token(address).is_some()
    }

    /// Where an email belongs, by the first rule that finds a ticket: a Message-ID of ours
    /// in `In-Reply-To`/`References`; a reply token in the address it was delivered to
    /// (or its To/Cc); `[#number]` in the subject from that ticket's contact. Otherwise a
    /// new conversation, named by the email's Message-ID.
    async fn thread(
        &self,
        email: &InboundEmail,
        recipient: &str,
        key: &str,
    ) -> ServiceResult<(MessageTarget, ThreadedBy)> {
        let mailbox = &self.email.mailbox;
        for reference in mailbox.our_references(&email.answers.join(" ")) {
            let ticket_id = match reference {
                ThreadRef::Ticket(id) => Some(id),
                ThreadRef::Message(id) => {
                    self.store.outbound_message(id).await?.map(|m| m.ticket_id)
                }
            };
            if let Some(id) = ticket_id
                && self.store.ticket(TicketKey::Id(id)).await?.is_some()
            {
                return Ok((MessageTarget::Ticket(id), ThreadedBy::MessageId));
            }
        }
        let addresses =
            std::iter::once(recipient).chain(email.recipients.iter().map(String::as_str));
        for address in addresses {
            if let Some(id) = mailbox.reply_token(address)
                && self.store.ticket(TicketKey::Id(id)).await?.is_some()
            {
                return Ok((MessageTarget::Ticket(id), ThreadedBy::ReplyToken));
            }
        }
        if let Some(number) = subject_number(&email.subject)
            && let Some(ticket) = self.store.ticket(TicketKey::Number(number)).await?
            && self.is_contact_of(&ticket, &email.from_address).await?
        {
            return Ok((MessageTarget::Ticket(ticket.id), ThreadedBy::SubjectNumber));
        }
        Ok((
            MessageTarget::Conversation {
                source: EMAIL_SOURCE.to_owned(),
                external_id: key.to_owned(),
            },
            ThreadedBy::NewTicket,
        ))
    }

    /// Whether `address` is one of the addresses of the ticket's contact.
    async fn is_contact_of(&self, ticket: &Ticket, address: &str) -> ServiceResult<bool> {
        if address.is_empty() {
            return Ok(false);
        }
        if ticket.contact.email.eq_ignore_ascii_case(address) {
            return Ok(true);
        }
        let owner = self.store.contact_by_address(address, "").await?;
        Ok(owner.is_some_and(|c| c.id == ticket.contact.id))
    }

    /// Marks every message of ours a bounce mentions as failed; returns how many were.
    async fn record_bounce(
        &self,
        principal: &Principal,
        email: &InboundEmail,
        mentioned: &[String],
    ) -> ServiceResult<usize> {
        let reason = format!(
            "bounced: {}",
            headline(
                if email.visible_text.is_empty() {
                    &email.subject
                } else {
                    &email.visible_text
                },
                300
            )
        );
        let mut marked = 0;
        for reference in self.email.mailbox.our_references(&mentioned.join(" ")) {
            let ThreadRef::Message(id) = reference else {
                continue;
            };
            // Only email bounces: an id of another channel's message is not this report's.
            let Some(message) = self
                .store
                .outbound_message(id)
                .await?
                .filter(|m| m.channel == Channel::Email)
            else {
                continue;
            };
            let Some(ticket) = self.store.ticket(TicketKey::Id(message.ticket_id)).await? else {
                continue;
            };
            let mut receipt = NewEvent::about(
                &ticket,
                EventKind::DeliveryReceipt,
                principal.actor(),
                Visibility::Internal,
                EventPayload::DeliveryReceipt {
                    message_id: id,
                    consumer_group: "bounce".into(),
                    outcome: "FAILED".into(),
                    provider_message_id: email.message_id.clone(),
                    error: reason.clone(),
                    attempts: 0,
                },
                self.clock.now(),
            );
            receipt.ticket.channel = Some(message.channel);
            if self.store.record_bounce(id, &reason, receipt).await? {
                tracing::info!(message_id = %id, ticket_id = %ticket.id, "email bounced");
                marked += 1;
            }
        }
        Ok(marked)
    }
}
