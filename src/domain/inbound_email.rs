//! Reading an inbound email: who wrote, what they wrote above the quoted history, what
//! they attached, what it answers, and whether a machine sent it (an out-of-office reply,
//! a list, a bounce). MIME, encodings and character sets are the `mail-parser` crate's.

use mail_parser::{HeaderValue, MessageParser, MimeHeaders, PartType};

use super::conversation::AttachmentInput;
use super::ticket::text_enum;

text_enum!(
    /// How an inbound email found its ticket, tried in this order.
    ThreadedBy {
        MessageId = "message_id",
        ReplyToken = "reply_token",
        SubjectNumber = "subject_number",
        NewTicket = "new_ticket",
    }
);

/// Most Message-IDs or addresses read from one header kind; the rest are ignored.
const MAX_REFERENCES: usize = 50;

/// Longest subject kept, in characters (RFC 5322's line limit).
const MAX_SUBJECT_CHARS: usize = 998;

/// An email as ticketd uses it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InboundEmail {
    /// The Message-ID without angle brackets; empty if the message has none.
    pub message_id: String,
    pub from_address: String,
    pub from_name: String,
    pub subject: String,
    /// `In-Reply-To` then `References` (newest first): the messages it answers.
    pub answers: Vec<String>,
    /// The addresses it was sent to (To, then Cc).
    pub recipients: Vec<String>,
    /// The text above the quoted history: what the customer wrote now.
    pub visible_text: String,
    /// The whole text body, quoted history included (HTML converted to text).
    pub full_text: String,
    pub attachments: Vec<AttachmentInput>,
    /// Set when a machine sent it; says which sign gave it away.
    pub automatic: Option<String>,
    /// A delivery failure report (a bounce): every Message-ID it mentions, from its
    /// headers and the returned message.
    pub bounce_of: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    #[error("not an email message: no header was found")]
    Unreadable,
    #[error("the message has no From address")]
    NoSender,
}

/// Reads a raw RFC 5322 message. The caller bounds its size first.
pub fn parse(raw: &[u8]) -> Result<InboundEmail, EmailError> {
    let message = MessageParser::default()
        .parse(raw)
        .filter(|m| !m.headers().is_empty())
        .ok_or(EmailError::Unreadable)?;
    let from = message
        .from()
        .and_then(|a| a.first())
        .and_then(|a| a.address().map(|address| (address, a.name())))
        .ok_or(EmailError::NoSender)?;
    let mut answers = ids(message.in_reply_to());
    answers.extend(ids(message.references()).into_iter().rev());
    answers.truncate(MAX_REFERENCES);
    let recipients = message
        .to()
        .into_iter()
        .chain(message.cc())
        .flat_map(|a| a.iter())
        .filter_map(|a| a.address().map(str::to_owned))
        .take(MAX_REFERENCES)
        .collect();
    let full_text = message
        .body_text(0)
        .map(|t| plain_text(&t))
        .unwrap_or_default();
    let attachments = message
        .attachments()
        .filter(|part| !matches!(part.body, PartType::Multipart(_)))
        .enumerate()
        .map(|(i, part)| AttachmentInput {
            name: part
                .attachment_name()
                .map(str::to_owned)
                .unwrap_or_else(|| format!("attachment-{}", i + 1)),
            content_type: part
                .content_type()
                .map(|ct| match ct.subtype() {
                    Some(sub) => format!("{}/{}", ct.ctype(), sub),
                    None => ct.ctype().to_owned(),
                })
                .unwrap_or_else(|| "application/octet-stream".to_owned())
                .to_ascii_lowercase(),
            content: part.contents().to_vec(),
        })
        .collect();
    let from_address = one_line(from.0);
    let header = |name: &str| {
        message
            .header_raw(name)
            .map(|v| v.trim().to_ascii_lowercase())
    };
    let report = message.content_type().is_some_and(|ct| {
        ct.ctype().eq_ignore_ascii_case("multipart")
            && ct
                .subtype()
                .is_some_and(|s| s.eq_ignore_ascii_case("report"))
            && ct
                .attribute("report-type")
                .is_some_and(|t| t.eq_ignore_ascii_case("delivery-status"))
    });
    // MAILER-DAEMON only ever reports; a postmaster may be a person writing in.
    let daemon = from_address
        .split('@')
        .next()
        .is_some_and(|local| local.eq_ignore_ascii_case("mailer-daemon"));
    let bounce_of = (report || daemon).then(|| {
        let mut mentioned = answers.clone();
        for part in &message.parts {
            match &part.body {
                PartType::Message(returned) => {
                    mentioned.extend(returned.message_id().map(str::to_owned));
                }
                // Returned headers (text/rfc822-headers) and the report's text.
                PartType::Text(text) => mentioned.extend(bracketed(text)),
                _ => {}
            }
        }
        mentioned.truncate(MAX_REFERENCES);
        mentioned
    });
    let automatic = if bounce_of.is_some() {
        Some("bounce".to_owned())
    } else if let Some(value) = header("Auto-Submitted").filter(|v| !v.starts_with("no")) {
        Some(format!("Auto-Submitted: {value}"))
    } else if let Some(value) = header("Precedence")
        .filter(|v| ["bulk", "junk", "auto_reply", "list"].contains(&v.as_str()))
    {
        Some(format!("Precedence: {value}"))
    } else if header("X-Autoreply").is_some() || header("X-Autorespond").is_some() {
        Some("X-Autoreply".to_owned())
    } else {
        None
    };
    Ok(InboundEmail {
        message_id: one_line(message.message_id().unwrap_or_default()),
        from_name: one_line(from.1.unwrap_or_default()),
        from_address,
        subject: one_line(message.subject().unwrap_or_default())
            .chars()
            .take(MAX_SUBJECT_CHARS)
            .collect(),
        answers,
        recipients,
        visible_text: above_quote(&full_text),
        full_text,
        attachments,
        automatic,
        bounce_of,
    })
}

/// Header text as one trimmed line: control characters (CR, LF, NUL, escapes) become
/// spaces.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_owned()
}

/// Body text with plain line ends, and no control characters but newlines and tabs (a
/// form feed or an escape in someone's mail is dropped, not a reason to refuse it).
fn plain_text(text: &str) -> String {
    text.replace("\r\n", "\n")
        .chars()
        .filter(|c| !c.is_control() || matches!(c, '\n' | '\t'))
        .collect()
}

/// Message ids of a header that holds one or a list.
fn ids(value: &HeaderValue<'_>) -> Vec<String> {
    match value {
        HeaderValue::Text(id) => vec![id.to_string()],
        HeaderValue::TextList(ids) => ids.iter().map(|id| id.to_string()).collect(),
        _ => Vec::new(),
    }
}

/// `<…@…>` tokens in a text, without their brackets.
fn bracketed(text: &str) -> Vec<String> {
    text.split('<')
        .skip(1)
        .filter_map(|rest| rest.split_once('>').map(|(id, _)| id))
        .filter(|id| id.contains('@') && !id.contains(char::is_whitespace))
        .map(str::to_owned)
        .collect()
}

/// Whether a line opens the quoted history of a reply: `> …`, the attribution line mail
/// clients write above it ("On Mon, 1 Dec 2026, Ada wrote:", in a few languages), or an
/// Outlook-style separator.
fn opens_quote(line: &str, next: Option<&str>) -> bool {
    let line = line.trim();
    let attribution = |text: &str| {
        let lower = text.to_lowercase();
        lower.ends_with(':')
            && [" wrote", " schrieb", " a écrit", " escribió", " scrisse"]
                .iter()
                .any(|verb| lower.contains(verb))
    };
    line.starts_with('>')
        || line.starts_with("-----Original Message-----")
        || line.starts_with("-----Ursprüngliche Nachricht-----")
        || (line.starts_with("________________________________") && next.is_some())
        || ((line.starts_with("On ") || line.starts_with("Am ") || line.starts_with("Le "))
            && (attribution(line)
                || next.is_some_and(|n| attribution(&format!("{line} {}", n.trim())))))
}

/// The text above the quoted history, trimmed; the whole text when nothing is quoted or
/// nothing stands above the quote (an answer written below it, say).
pub fn above_quote(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let cut = (0..lines.len()).find(|&i| opens_quote(lines[i], lines.get(i + 1).copied()));
    let visible = match cut {
        Some(i) => lines[..i].join("\n"),
        None => return text.trim().to_owned(),
    };
    if visible.trim().is_empty() {
        text.trim().to_owned()
    } else {
        visible.trim().to_owned()
    }
}

/// The ticket number a subject names as `[#1042]`.
pub fn subject_number(subject: &str) -> Option<i64> {
    subject.match_indices("[#").find_map(|(at, _)| {
        let rest = &subject[at + 2..];
        let (digits, _) = rest.split_once(']')?;
        (!digits.is_empty() && digits.len() <= 18 && digits.bytes().all(|b| b.is_ascii_digit()))
            .then(|| digits.parse().ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests;
