//! Conversations escalated from chatbots and the transcript messages they carry.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::ticket::{Channel, ConversationRef, text_enum};
use super::validation::Violations;

/// Most transcript messages one escalation may carry.
pub const MAX_TRANSCRIPT_MESSAGES: usize = 500;
/// Most bytes of transcript text and attachments one escalation may carry.
pub const MAX_TRANSCRIPT_BYTES: usize = 1024 * 1024;
pub const MAX_MESSAGE_CHARS: usize = 65_536;
pub const MAX_NAME_CHARS: usize = 256;
pub const MAX_SUMMARY_CHARS: usize = 8_192;
pub const MAX_METADATA_ENTRIES: usize = 64;
/// Longest metadata key and value: with the entry limit, a conversation's metadata
/// stays under about 80 KiB however often it is escalated.
pub const MAX_METADATA_KEY_CHARS: usize = 128;
pub const MAX_METADATA_VALUE_CHARS: usize = 1_024;

text_enum!(
    /// Who wrote a transcript message.
    MessageRole {
        Customer = "CUSTOMER",
        Bot = "BOT",
        Agent = "AGENT",
    }
);

/// A file carried by a message, as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentInput {
    pub name: String,
    pub content_type: String,
    pub content: Vec<u8>,
}

/// One message of a conversation as the bot hands it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranscriptMessage {
    /// The bot's id for the message, if it has one; the deduplication key.
    pub id: String,
    pub role: MessageRole,
    pub author: String,
    pub text: String,
    pub sent_at: DateTime<Utc>,
    pub attachments: Vec<AttachmentInput>,
}

impl TranscriptMessage {
    /// Identifies the message across re-escalations: the bot's id when given, else a
    /// digest of role, author, time and text.
    pub fn key(&self) -> String {
        if !self.id.is_empty() {
            return format!("id:{}", self.id);
        }
        let mut hash = Sha256::new();
        for part in [
            self.role.as_str(),
            &self.author,
            &self.sent_at.to_rfc3339(),
            &self.text,
        ] {
            hash.update(part.as_bytes());
            hash.update([0u8]);
        }
        let digest = hash.finalize();
        format!("sha256:{}", super::hex(&digest))
    }

    fn size(&self) -> usize {
        self.text.len()
            + self
                .attachments
                .iter()
                .map(|a| a.content.len())
                .sum::<usize>()
    }
}

/// A conversation as escalated by a bot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationInput {
    pub source: String,
    pub external_id: String,
    pub channel: Option<Channel>,
    pub transcript: Vec<TranscriptMessage>,
    pub summary: String,
    pub intent: String,
    pub metadata: BTreeMap<String, String>,
}

/// Checks a conversation's metadata: at most [`MAX_METADATA_ENTRIES`] entries of
/// single-line keys and values within their length limits.
pub fn validate_metadata(field: &str, metadata: &BTreeMap<String, String>, v: &mut Violations) {
    if metadata.len() > MAX_METADATA_ENTRIES {
        v.add(
            field,
            format!("must hold at most {MAX_METADATA_ENTRIES} entries"),
        );
        return;
    }
    for (key, value) in metadata {
        let at = format!("{field}[{key:?}]");
        if key.trim().is_empty() {
            v.add(&at, "keys must not be blank");
        }
        v.line(&at, key, false, MAX_METADATA_KEY_CHARS);
        v.line(&at, value, false, MAX_METADATA_VALUE_CHARS);
    }
}

impl ConversationInput {
    pub fn validate(&self, field: &str, v: &mut Violations) {
        v.line(
            &format!("{field}.source"),
            &self.source,
            true,
            MAX_NAME_CHARS,
        );
        v.line(
            &format!("{field}.conversation_id"),
            &self.external_id,
            true,
            MAX_NAME_CHARS,
        );
        if self.channel.is_none() {
            v.add(format!("{field}.channel"), "is required");
        }
        v.text(
            &format!("{field}.summary"),
            &self.summary,
            false,
            MAX_SUMMARY_CHARS,
        );
        v.line(
            &format!("{field}.intent"),
            &self.intent,
            false,
            MAX_NAME_CHARS,
        );
        validate_metadata(&format!("{field}.metadata"), &self.metadata, v);
        if self.transcript.len() > MAX_TRANSCRIPT_MESSAGES {
            v.add(
                format!("{field}.transcript"),
                format!(
                    "holds {} messages; the limit is {MAX_TRANSCRIPT_MESSAGES} per call",
                    self.transcript.len()
                ),
            );
            return;
        }
        let bytes: usize = self.transcript.iter().map(TranscriptMessage::size).sum();
        if bytes > MAX_TRANSCRIPT_BYTES {
            v.add(
                format!("{field}.transcript"),
                format!("holds {bytes} bytes; the limit is {MAX_TRANSCRIPT_BYTES} per call"),
            );
        }
        for (i, message) in self.transcript.iter().enumerate() {
            let at = format!("{field}.transcript[{i}]");
            v.text(
                &format!("{at}.text"),
                &message.text,
                false,
                MAX_MESSAGE_CHARS,
            );
            v.line(
                &format!("{at}.author"),
                &message.author,
                false,
                MAX_NAME_CHARS,
            );
            v.line(&format!("{at}.id"), &message.id, false, MAX_NAME_CHARS);
            if message.text.trim().is_empty() && message.attachments.is_empty() {
                v.add(format!("{at}.text"), "a message needs text or attachments");
            }
        }
    }

    /// The first customer message, a fallback subject.
    pub fn first_customer_text(&self) -> Option<&str> {
        self.transcript
            .iter()
            .find(|m| m.role == MessageRole::Customer && !m.text.trim().is_empty())
            .map(|m| m.text.as_str())
    }
}

/// A stored conversation and the ticket it is linked to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    pub id: Uuid,
    pub source: String,
    pub external_id: String,
    pub channel: Channel,
    pub ticket_id: Uuid,
    pub summary: String,
    pub intent: String,
    pub metadata: BTreeMap<String, String>,
}

impl Conversation {
    /// The link a ticket keeps to this conversation.
    pub fn link(&self) -> ConversationRef {
        ConversationRef {
            source: self.source.clone(),
            external_id: self.external_id.clone(),
            channel: self.channel,
        }
    }
}

/// Shortens text to at most `max` characters on a word boundary, for subjects.
pub fn headline(text: &str, max: usize) -> String {
    let line = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    // A subject is one line of text: no control characters (a CR could break the email
    // headers a gateway writes it into).
    let line: String = line
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let line = line.trim();
    if line.chars().count() <= max {
        return line.to_owned();
    }
    let cut: String = line.chars().take(max.saturating_sub(1)).collect();
    let cut = match cut.rfind(' ') {
        Some(space) if space > max / 2 => cut[..space].to_owned(),
        _ => cut,
    };
    format!("{}…", cut.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headlines_hold_no_control_characters() {
        assert_eq!(headline("a\u{0}b\rc\u{1b}d", 100), "a b c d");
        assert_eq!(headline("\n\n  First line\nsecond", 100), "First line");
    }

    fn message(text: &str) -> TranscriptMessage {
        TranscriptMessage {
            id: String::new(),
            role: MessageRole::Customer,
            author: "ada".into(),
            text: text.into(),
            sent_at: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            attachments: Vec::new(),
        }
    }

    #[test]
    fn keys_prefer_the_bots_id_and_otherwise_digest_the_content() {
        let plain = message("hello");
        assert_eq!(plain.key(), message("hello").key());
        assert_ne!(plain.key(), message("hello!").key());
        let with_id = TranscriptMessage {
            id: "m-1".into(),
            ..plain
        };
        assert_eq!(with_id.key(), "id:m-1");
    }

    #[test]
    fn headlines_are_short_single_lines() {
        assert_eq!(
            headline("\n  My card was charged twice\nmore", 80),
            "My card was charged twice"
        );
        let long = "word ".repeat(40);
        let h = headline(&long, 30);
        assert!(h.chars().count() <= 30, "{h}");
        assert!(h.ends_with('…'));
    }
}
