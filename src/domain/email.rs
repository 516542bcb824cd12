//! Email threading: the headers ticketd gives outbound email so that any SMTP gateway can
//! thread it, and the ways an inbound email finds its ticket again.
//!
//! Every message ticketd sends has the Message-ID `<{message id}@{domain}>`; every one of
//! a ticket's messages answers `<ticket.{ticket id}@{domain}>`, the thread's root, so mail
//! clients keep a ticket's messages together and a customer's answer names the ticket in
//! `In-Reply-To` or `References`. The reply address carries the ticket too, as a
//! plus-address: `support+t{ticket id}@example.com`.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

/// The support mailbox, such as `support@example.com`: the reply address's base and the
/// domain of every Message-ID ticketd issues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    local: String,
    domain: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an email address like support@example.com")]
pub struct MailboxError(String);

impl FromStr for Mailbox {
    type Err = MailboxError;

    fn from_str(text: &str) -> Result<Self, MailboxError> {
        let bad = || MailboxError(text.to_owned());
        let (local, domain) = text.trim().rsplit_once('@').ok_or_else(bad)?;
        let plain = |part: &str, extra: &[char]| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || extra.contains(&c))
        };
        // A plus in the mailbox itself would make the reply token ambiguous.
        if !plain(local, &['.', '_', '-']) || !plain(domain, &['.', '-']) || local.len() > 30 {
            return Err(bad());
        }
        Ok(Mailbox {
            local: local.to_owned(),
            domain: domain.to_ascii_lowercase(),
        })
    }
}

impl fmt::Display for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

/// The threading headers of one outbound email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailThreading {
    /// With angle brackets, as the header carries it.
    pub message_id: String,
    pub in_reply_to: String,
    pub references: Vec<String>,
    /// Where the customer's answer should go: the mailbox with the ticket's reply token.
    pub reply_to: String,
}

/// What an inbound email's headers or address say about its ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadRef {
    /// An outbound message ticketd sent.
    Message(Uuid),
    /// A ticket's thread root, or its reply token.
    Ticket(Uuid),
}

/// The source of the conversations email opens: one per first message, named by its
/// Message-ID.
pub const EMAIL_SOURCE: &str = "email";

const TICKET_PREFIX: &str = "ticket.";
const TOKEN_PREFIX: &str = "t";

impl Mailbox {
    /// The headers of outbound message `message_id` about ticket `ticket_id`. When the
    /// ticket began with the customer's own email (`answering`, its Message-ID), the
    /// message answers that one, so it lands in the customer's thread too.
    pub fn threading(
        &self,
        message_id: Uuid,
        ticket_id: Uuid,
        answering: Option<&str>,
    ) -> EmailThreading {
        let root = self.thread_root(ticket_id);
        let theirs = answering
            .map(|id| id.trim().trim_start_matches('<').trim_end_matches('>'))
            .filter(|id| id.contains('@') && !id.contains(char::is_whitespace))
            .map(|id| format!("<{id}>"));
        let (in_reply_to, references) = match theirs {
            Some(theirs) => (theirs.clone(), vec![theirs, root]),
            None => (root.clone(), vec![root]),
        };
        EmailThreading {
            message_id: format!("<{}@{}>", message_id.simple(), self.domain),
            in_reply_to,
            references,
            reply_to: self.reply_address(ticket_id),
        }
    }

    fn thread_root(&self, ticket_id: Uuid) -> String {
        format!("<{TICKET_PREFIX}{}@{}>", ticket_id.simple(), self.domain)
    }

    /// The mailbox plus-addressed with the ticket's reply token.
    pub fn reply_address(&self, ticket_id: Uuid) -> String {
        format!(
            "{}+{TOKEN_PREFIX}{}@{}",
            self.local,
            ticket_id.simple(),
            self.domain
        )
    }

    /// Message-IDs of ours among `ids` (the text of `In-Reply-To` or `References`), in
    /// the order given; ids of other domains are skipped.
    pub fn our_references(&self, ids: &str) -> Vec<ThreadRef> {
        ids.split(|c: char| c.is_whitespace() || c == ',')
            .filter_map(|id| {
                let id = id.trim().trim_start_matches('<').trim_end_matches('>');
                let (left, domain) = id.rsplit_once('@')?;
                if !domain.eq_ignore_ascii_case(&self.domain) {
                    return None;
                }
                match left.strip_prefix(TICKET_PREFIX) {
                    Some(ticket) => Uuid::try_parse(ticket).ok().map(ThreadRef::Ticket),
                    None => Uuid::try_parse(left).ok().map(ThreadRef::Message),
                }
            })
            .collect()
    }

    /// The ticket of a reply token in `recipient` (`support+t…@example.com`), if the
    /// address is this mailbox plus-addressed.
    pub fn reply_token(&self, recipient: &str) -> Option<Uuid> {
        let address = recipient
            .trim()
            .rsplit('<')
            .next()?
            .trim_end_matches('>')
            .trim();
        let (left, domain) = address.rsplit_once('@')?;
        let (local, tag) = left.split_once('+')?;
        if !domain.eq_ignore_ascii_case(&self.domain) || !local.eq_ignore_ascii_case(&self.local) {
            return None;
        }
        Uuid::try_parse(tag.strip_prefix(TOKEN_PREFIX)?).ok()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn mailbox() -> Mailbox {
        "support@Example.com".parse().unwrap()
    }

    #[test]
    fn mailboxes_are_plain_addresses_without_a_plus() {
        assert_eq!(mailbox().to_string(), "support@example.com");
        for bad in [
            "support",
            "@example.com",
            "support@",
            "a+b@example.com",
            "a b@x.org",
        ] {
            assert!(bad.parse::<Mailbox>().is_err(), "{bad}");
        }
    }

    #[test]
    fn references_of_other_domains_and_garbage_are_skipped() {
        let m = mailbox();
        let ticket = Uuid::now_v7();
        let text = format!(
            "<abc@gmail.com> {} <not-a-uuid@example.com>,<{}@EXAMPLE.com>",
            m.threading(Uuid::nil(), ticket, None).in_reply_to,
            Uuid::from_u128(7).simple()
        );
        assert_eq!(
            m.our_references(&text),
            vec![
                ThreadRef::Ticket(ticket),
                ThreadRef::Message(Uuid::from_u128(7))
            ]
        );
        assert_eq!(m.reply_token("other+t1234@example.com"), None);
        assert_eq!(m.reply_token("support@example.com"), None);
    }

    #[test]
    fn a_reply_to_a_customer_email_answers_it_and_keeps_the_ticket_thread() {
        let m = mailbox();
        let ticket = Uuid::from_u128(3);
        let headers = m.threading(Uuid::from_u128(1), ticket, Some("CAF=1@mail.example.com"));
        assert_eq!(headers.in_reply_to, "<CAF=1@mail.example.com>");
        assert_eq!(headers.references[0], "<CAF=1@mail.example.com>");
        assert_eq!(
            m.our_references(&headers.references.join(" ")),
            vec![ThreadRef::Ticket(ticket)]
        );
        let synthetic = m.threading(Uuid::from_u128(1), ticket, Some("sha256:abc"));
        assert!(
            synthetic.in_reply_to.starts_with("<ticket."),
            "not a Message-ID"
        );
    }

    proptest! {
        /// Whatever ticketd puts in its headers, it reads back as the same message and
        /// ticket, also from a display-name address.
        #[test]
        fn threading_headers_read_back(message in any::<u128>(), ticket in any::<u128>()) {
            let m = mailbox();
            let (message, ticket) = (Uuid::from_u128(message), Uuid::from_u128(ticket));
            let headers = m.threading(message, ticket, None);
            prop_assert_eq!(
                m.our_references(&headers.message_id),
                vec![ThreadRef::Message(message)]
            );
            prop_assert_eq!(
                m.our_references(&headers.references.join(" ")),
                vec![ThreadRef::Ticket(ticket)]
            );
            prop_assert_eq!(m.reply_token(&headers.reply_to), Some(ticket));
            let named = format!("\"Support\" <{}>", headers.reply_to);
            prop_assert_eq!(m.reply_token(&named), Some(ticket));
        }
    }
}
