//! Full-text search: what a ticket's searchable text is, the query language, and the
//! highlight markers snippets come back with.
//!
//! A query is words and `"quoted phrases"`, all of which must occur somewhere in the
//! ticket (stemmed: `refunds` finds `refund`); a leading `-` excludes a word or phrase.

use super::event::{EventPayload, FieldChange, NewEvent, Visibility};

/// The longest query accepted, in bytes.
pub const MAX_QUERY_BYTES: usize = 500;
/// The most words and phrases one query may hold.
pub const MAX_TERMS: usize = 16;
/// A search ranks at most this many matches, the most recent ones (as Zendesk's search
/// stops at 1,000 results): ranking every match of a word most tickets hold would read
/// them all.
pub const MAX_RESULTS: i64 = 1000;
/// Searchable text kept per ticket, in bytes: text is appended while the document holds
/// less, one change's text clipped to it, so a document stays under twice this (and
/// PostgreSQL's 1 MB `tsvector` limit).
pub const MAX_INDEXED_BYTES: i64 = 128 * 1024;

/// Wraps a highlighted stretch of a snippet as the store returns it. Control characters
/// that ticket text cannot usefully hold; any in the text itself are removed.
pub const MARK_START: char = '\u{2}';
pub const MARK_END: char = '\u{3}';

/// One word or phrase of a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    /// The words, as typed (the store's tokenizer stems and folds them).
    pub text: String,
    /// `-word`: tickets holding it are left out.
    pub excluded: bool,
}

/// A parsed query: at least one term that must occur.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchText {
    pub terms: Vec<Term>,
}

impl SearchText {
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.len() > MAX_QUERY_BYTES {
            return Err(format!("must be at most {MAX_QUERY_BYTES} bytes"));
        }
        let mut terms = Vec::new();
        let mut rest = text.trim_start();
        while !rest.is_empty() {
            let (excluded, after_sign) = match rest.strip_prefix('-') {
                Some(r) => (true, r),
                None => (false, rest),
            };
            let (raw, next) = match after_sign.strip_prefix('"') {
                Some(r) => match r.find('"') {
                    Some(end) => (&r[..end], &r[end + 1..]),
                    None => (r, ""),
                },
                None => {
                    let end = after_sign
                        .find(char::is_whitespace)
                        .unwrap_or(after_sign.len());
                    (&after_sign[..end], &after_sign[end..])
                }
            };
            // Only letters and digits make words; the rest separates them.
            let words: Vec<&str> = raw
                .split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty())
                .collect();
            if !words.is_empty() {
                terms.push(Term {
                    text: words.join(" "),
                    excluded,
                });
            }
            rest = next.trim_start();
        }
        if terms.len() > MAX_TERMS {
            return Err(format!("must hold at most {MAX_TERMS} words or phrases"));
        }
        if !terms.iter().any(|t| !t.excluded) {
            return Err("must name at least one word to look for".into());
        }
        Ok(SearchText { terms })
    }

    /// The query in SQLite FTS5 syntax: every term a quoted phrase (so no word is read
    /// as an operator), exclusions after `NOT`.
    pub fn to_fts5(&self) -> String {
        let phrase = |t: &Term| format!("\"{}\"", t.text.replace('"', "\"\""));
        let wanted: Vec<String> = self
            .terms
            .iter()
            .filter(|t| !t.excluded)
            .map(phrase)
            .collect();
        let mut query = format!("({})", wanted.join(" AND "));
        for t in self.terms.iter().filter(|t| t.excluded) {
            query = format!("({query} NOT {})", phrase(t));
        }
        query
    }
}

/// Text an event adds to its ticket's search document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexedText {
    pub subject: String,
    pub public: String,
    pub internal: String,
}

impl IndexedText {
    /// What `event` makes searchable: a new subject, a reply, a note, a customer or
    /// transcript message, an escalation's summary. (A new ticket's description is
    /// added by the store, which holds it.)
    pub fn of(event: &NewEvent) -> Option<IndexedText> {
        let text = match &event.payload {
            EventPayload::Created { subject, .. } => {
                return Some(IndexedText {
                    subject: subject.clone(),
                    ..Default::default()
                });
            }
            EventPayload::FieldsChanged { changes } => {
                let subject = changes
                    .iter()
                    .find(|c: &&FieldChange| c.field == "subject")?;
                return Some(IndexedText {
                    subject: subject.new.clone(),
                    ..Default::default()
                });
            }
            EventPayload::Reply { body, .. } | EventPayload::Note { body } => body,
            EventPayload::Transcript { text, .. } | EventPayload::CustomerMessage { text, .. } => {
                text
            }
            EventPayload::Escalated { summary, .. } => summary,
            _ => return None,
        };
        if text.is_empty() {
            return None;
        }
        // The highlight markers cannot come from the text itself.
        let text = text.replace([MARK_START, MARK_END], "");
        Some(match event.visibility {
            Visibility::Public => IndexedText {
                public: text,
                ..Default::default()
            },
            Visibility::Internal => IndexedText {
                internal: text,
                ..Default::default()
            },
        })
    }

    /// Appends `other`, one line per piece; a new subject replaces the earlier one.
    pub fn extend(&mut self, other: IndexedText) {
        let join = |into: &mut String, text: String| {
            if text.is_empty() {
                return;
            }
            if !into.is_empty() {
                into.push('\n');
            }
            into.push_str(&text);
        };
        if !other.subject.is_empty() {
            self.subject = other.subject;
        }
        join(&mut self.public, other.public);
        join(&mut self.internal, other.internal);
    }
}

/// A snippet with its highlighted stretches as `[start, end)` offsets in characters
/// (Unicode scalar values), parsed from text marked with [`MARK_START`] and
/// [`MARK_END`]. `None` if nothing in it is highlighted.
pub fn parse_marked(marked: &str) -> Option<(String, Vec<(i32, i32)>)> {
    let mut text = String::with_capacity(marked.len());
    let mut spans = Vec::new();
    let mut start = None;
    let mut chars = 0i32;
    for c in marked.chars() {
        match c {
            MARK_START => start = Some(chars),
            MARK_END => {
                if let Some(s) = start.take()
                    && s < chars
                {
                    spans.push((s, chars));
                }
            }
            c => {
                text.push(c);
                chars += 1;
            }
        }
    }
    (!spans.is_empty()).then_some((text, spans))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(q: &str) -> Vec<(String, bool)> {
        SearchText::parse(q)
            .unwrap()
            .terms
            .into_iter()
            .map(|t| (t.text, t.excluded))
            .collect()
    }

    /// A note (internal) or reply (public) with `body`.
    fn message(body: &str, visibility: Visibility) -> NewEvent {
        use crate::domain::event::{Actor, ActorKind, EventKind, TicketSnapshot};
        use crate::domain::ticket::{Priority, Status, TicketType};
        NewEvent {
            id: uuid::Uuid::nil(),
            ticket_id: uuid::Uuid::from_u128(7),
            ticket_number: 12,
            kind: EventKind::NoteAdded,
            actor: Actor {
                kind: ActorKind::System,
                id: None,
                name: String::new(),
            },
            visibility,
            payload: EventPayload::Note { body: body.into() },
            created_at: chrono::Utc::now(),
            ticket: TicketSnapshot {
                status: Status::Open,
                priority: Priority::High,
                ticket_type: TicketType::Bug,
                assignee_id: None,
                queue_id: None,
                contact_id: uuid::Uuid::nil(),
                channel: None,
                tags: Vec::new(),
                conversation: None,
            },
            depth: 0,
        }
    }

    #[test]
    fn indexed_text_never_carries_the_highlight_markers() {
        let body = format!("smoke {MARK_START}from{MARK_END} the printer{MARK_END}");
        let internal = IndexedText::of(&message(&body, Visibility::Internal)).unwrap();
        assert_eq!(internal.internal, "smoke from the printer");
        assert!(internal.public.is_empty() && internal.subject.is_empty());
        let public = IndexedText::of(&message(&body, Visibility::Public)).unwrap();
        assert_eq!(public.public, "smoke from the printer");
        // An empty body adds nothing to the index.
        assert!(IndexedText::of(&message("", Visibility::Public)).is_none());
    }

    #[test]
    fn words_phrases_and_exclusions() {
        assert_eq!(
            terms(r#"refund "credit card" -paypal -"gift card""#),
            vec![
                ("refund".into(), false),
                ("credit card".into(), false),
                ("paypal".into(), true),
                ("gift card".into(), true),
            ]
        );
        // Punctuation separates words; an unclosed quote runs to the end.
        assert_eq!(terms("e-mail"), vec![("e mail".into(), false)]);
        assert_eq!(
            terms("\"never closed"),
            vec![("never closed".into(), false)]
        );
    }

    #[test]
    fn a_query_needs_a_word_to_look_for() {
        assert!(SearchText::parse("").is_err());
        assert!(SearchText::parse("  -spam ").is_err());
        assert!(SearchText::parse("*** ?? !!").is_err());
        assert!(SearchText::parse(&"a ".repeat(MAX_TERMS + 1)).is_err());
        assert!(SearchText::parse(&"a".repeat(MAX_QUERY_BYTES + 1)).is_err());
    }

    #[test]
    fn fts5_queries_quote_every_term() {
        let q = SearchText::parse(r#"NOT OR "a b" -c"#).unwrap();
        assert_eq!(q.to_fts5(), r#"(("NOT" AND "OR" AND "a b") NOT "c")"#);
    }

    #[test]
    fn marked_snippets_become_character_spans() {
        let marked = format!("the {MARK_START}café{MARK_END} is {MARK_START}open{MARK_END}");
        let (text, spans) = parse_marked(&marked).unwrap();
        assert_eq!(text, "the café is open");
        assert_eq!(spans, vec![(4, 8), (12, 16)]);
        assert_eq!(parse_marked("nothing marked"), None);
    }
}
