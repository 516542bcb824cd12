//! Auto-responses: automatic messages to the customer — an acknowledgement when a customer
//! opens a ticket, an after-hours notice when they write while a calendar is closed, a
//! confirmation when their ticket is resolved. One per kind and channel. They go out as
//! public entries by `auto-response` on the delivery stream as auto-responses, and never
//! count as an agent's answer.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::calendar::BusinessCalendar;
use super::delivery::OutboundMessage;
use super::event::{EventPayload, NewEvent};
use super::template::{self, ContactVars, Template, TemplateContext};
use super::ticket::{Channel, Contact, text_enum};

/// The actor name auto-responses carry (kind `system`).
pub const ACTOR: &str = "auto-response";

text_enum!(
    AutoResponseKind {
        Acknowledgement = "ACKNOWLEDGEMENT",
        AfterHours = "AFTER_HOURS",
        ResolutionConfirmation = "RESOLUTION_CONFIRMATION",
    }
);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoResponse {
    pub id: Uuid,
    pub kind: AutoResponseKind,
    pub channel: Channel,
    pub template_id: Uuid,
    /// AFTER_HOURS: the hours outside which it answers (required there).
    pub calendar_id: Option<Uuid>,
    pub enabled: bool,
    /// ACKNOWLEDGEMENT: also for tickets agents and API keys open by hand.
    pub for_agent_tickets: bool,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Whether an after-hours notice is due for a customer writing at `at`: the calendar is
/// closed, and no notice went to the ticket since it was last open (`last_sent`).
pub fn after_hours_due(
    calendar: &BusinessCalendar,
    at: DateTime<Utc>,
    last_sent: Option<DateTime<Utc>>,
) -> bool {
    if calendar.is_open(at) {
        return false;
    }
    match last_sent {
        // The same closed period if the calendar did not open in between.
        Some(sent) if sent <= at => calendar.between(sent, at) > 0,
        Some(_) => false,
        None => true,
    }
}

/// One auto-response sent, as recorded for its limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoResponseSent {
    pub ticket_id: Uuid,
    /// The contact's external id (known before a new contact is stored).
    pub contact: String,
    pub kind: AutoResponseKind,
    pub at: DateTime<Utc>,
}

/// An auto-response prepared with the change that calls for it, rendered in that change's
/// transaction once the ticket's number and stored contact are known (a new ticket gets
/// its number there).
#[derive(Debug, Clone)]
pub struct PendingReply {
    pub kind: AutoResponseKind,
    pub template: Template,
    pub context: TemplateContext,
    /// The public entry that carries it; its body is filled in when rendered.
    pub event: NewEvent,
    /// The message; recipient, subject and body are filled in when rendered.
    pub message: OutboundMessage,
    /// For chat: the conversation to answer in, if the ticket has one on chat.
    pub chat_address: String,
    /// The ticket's contact as stored (a new ticket's is known only when stored).
    pub contact: Contact,
}

impl PendingReply {
    /// The entry, message and record, for the ticket numbered `number` whose contact is
    /// `contact`; `None` when the contact cannot be reached on the channel or the template
    /// does not render (it was checked when saved, so only its budget can stop it).
    pub fn finish(
        self,
        number: i64,
        contact: &Contact,
    ) -> Option<(NewEvent, OutboundMessage, AutoResponseSent)> {
        let PendingReply {
            kind,
            template,
            mut context,
            mut event,
            mut message,
            chat_address,
            contact: _,
        } = self;
        let recipient = match message.channel {
            Channel::Email => contact.email.clone(),
            Channel::Sms => contact.phone.clone(),
            Channel::Chat if !chat_address.is_empty() => chat_address,
            Channel::Chat => contact.external_id.clone(),
        };
        if recipient.is_empty() {
            return None;
        }
        context.ticket.number = number;
        context.contact = ContactVars {
            name: contact.name.clone(),
            email: contact.email.clone(),
            phone: contact.phone.clone(),
            external_id: contact.external_id.clone(),
        };
        let rendered = template::render(&template, &context).ok()?;
        message.ticket_number = number;
        message.recipient = recipient;
        message.subject = if rendered.subject.is_empty() {
            format!("Re: [#{number}] {}", context.ticket.subject)
        } else {
            rendered.subject
        };
        message.body = rendered.body.clone();
        event.ticket_number = number;
        event.payload = EventPayload::Reply {
            body: rendered.body,
            channel: message.channel.as_str().to_owned(),
            attachments: Vec::new(),
            message_id: Some(message.id),
        };
        let sent = AutoResponseSent {
            ticket_id: message.ticket_id,
            contact: contact.external_id.clone(),
            kind,
            at: message.created_at,
        };
        Some((event, message, sent))
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn office() -> BusinessCalendar {
        let weekly: Vec<_> = ["MON", "TUE", "WED", "THU", "FRI"]
            .iter()
            .map(|d| {
                (
                    d.to_string(),
                    vec![("09:00".to_string(), "17:00".to_string())],
                )
            })
            .collect();
        BusinessCalendar::parse(
            Uuid::nil(),
            "office",
            "UTC",
            &weekly,
            Default::default(),
            Default::default(),
        )
        .unwrap()
    }

    fn at(day: u32, hour: u32) -> DateTime<Utc> {
        // 7 December 2026 is a Monday.
        Utc.with_ymd_and_hms(2026, 12, day, hour, 0, 0).unwrap()
    }

    #[test]
    fn after_hours_answers_once_per_closed_period() {
        let calendar = office();
        assert!(!after_hours_due(&calendar, at(7, 10), None), "open");
        assert!(after_hours_due(&calendar, at(7, 20), None));
        assert!(
            !after_hours_due(&calendar, at(7, 23), Some(at(7, 20))),
            "same evening"
        );
        assert!(
            !after_hours_due(&calendar, at(8, 7), Some(at(7, 20))),
            "same night, next morning before opening"
        );
        assert!(
            after_hours_due(&calendar, at(8, 18), Some(at(7, 20))),
            "the office opened in between"
        );
        assert!(
            !after_hours_due(&calendar, at(13, 12), Some(at(11, 18))),
            "a weekend is one closed period"
        );
    }
}
