//! The ticket, its enumerations and the status transition table.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::validation::Violations;

pub const MAX_SUBJECT_CHARS: usize = 250;
pub const MAX_DESCRIPTION_CHARS: usize = 65_536;
pub const MAX_TAGS: usize = 50;
pub const MAX_TAG_CHARS: usize = 64;
pub const MAX_CUSTOM_FIELDS: usize = 100;
pub const MAX_CUSTOM_FIELD_KEY_CHARS: usize = 64;
pub const MAX_CUSTOM_FIELD_VALUE_CHARS: usize = 4_096;
pub const MAX_CONTACT_FIELD_CHARS: usize = 320;

/// Declares a string-backed enum whose text form is what the database stores and what
/// the filter language accepts.
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Accepts the stored form in any letter case.
            pub fn parse(text: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.as_str().eq_ignore_ascii_case(text))
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::parse(&text).ok_or_else(|| {
                    serde::de::Error::custom(format!("unknown {} {text:?}", stringify!($name)))
                })
            }
        }
    };
}
pub(crate) use text_enum;

text_enum!(
    /// Where a ticket is in its life. See [`Status::can_become`].
    Status {
        Open = "OPEN",
        InProgress = "IN_PROGRESS",
        Waiting = "WAITING",
        Resolved = "RESOLVED",
        Closed = "CLOSED",
        Merged = "MERGED",
    }
);

impl Status {
    /// The transition table. Staying in the same status is always allowed (a no-op).
    ///
    /// | from \ to    | OPEN | IN_PROGRESS | WAITING | RESOLVED | CLOSED |
    /// |--------------|------|-------------|---------|----------|--------|
    /// | OPEN         |  -   |     yes     |   yes   |   yes    |  yes   |
    /// | IN_PROGRESS  | yes  |      -      |   yes   |   yes    |  yes   |
    /// | WAITING      | yes  |     yes     |    -    |   yes    |  yes   |
    /// | RESOLVED     | yes  |     yes     |   no    |    -     |  yes   |
    /// | CLOSED       |  no  |     no      |   no    |   no     |   -    |
    ///
    /// MERGED is reached only through a merge and never left; CLOSED is final.
    pub fn can_become(self, next: Status) -> bool {
        use Status::*;
        if self == next {
            return true;
        }
        !matches!(
            (self, next),
            (_, Merged) | (Closed, _) | (Merged, _) | (Resolved, Waiting)
        )
    }

    /// OPEN, IN_PROGRESS and WAITING: work is still to be done (the predefined views'
    /// "active" tickets, the backlog of reports).
    pub fn is_active(self) -> bool {
        matches!(self, Status::Open | Status::InProgress | Status::Waiting)
    }

    /// Closed and merged tickets accept no further changes to their fields.
    pub fn is_final(self) -> bool {
        matches!(self, Status::Closed | Status::Merged)
    }
}

text_enum!(
    /// Urgency, ordered from least to most urgent.
    Priority {
        Low = "LOW",
        Medium = "MEDIUM",
        High = "HIGH",
        Urgent = "URGENT",
    }
);

impl Priority {
    /// The rank stored beside the text so that SQL can compare and sort priorities.
    pub fn rank(self) -> i64 {
        match self {
            Priority::Low => 1,
            Priority::Medium => 2,
            Priority::High => 3,
            Priority::Urgent => 4,
        }
    }
}

text_enum!(
    /// What kind of request a ticket is.
    TicketType {
        Bug = "BUG",
        FeatureRequest = "FEATURE_REQUEST",
        Question = "QUESTION",
        Complaint = "COMPLAINT",
        Other = "OTHER",
    }
);

text_enum!(
    /// A way to reach the customer.
    Channel {
        Email = "EMAIL",
        Sms = "SMS",
        Chat = "CHAT",
    }
);

/// The customer a ticket is about, keyed by the CRM's external id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    pub id: Uuid,
    pub external_id: String,
    pub name: String,
    pub email: String,
    pub phone: String,
    pub vip: bool,
}

/// Contact details as a caller supplies them. Empty strings and a missing `vip` keep
/// what is already stored for that `external_id`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContactInput {
    pub external_id: String,
    pub name: String,
    pub email: String,
    pub phone: String,
    pub vip: Option<bool>,
    /// Set for callers that may not change stored details: only empty fields are
    /// filled, and `vip` applies only to a new contact.
    pub fill_only: bool,
}

impl ContactInput {
    pub fn validate(&self, field: &str, v: &mut Violations) {
        v.line(
            &format!("{field}.external_id"),
            &self.external_id,
            true,
            MAX_CONTACT_FIELD_CHARS,
        );
        for (name, value) in [
            ("name", &self.name),
            ("email", &self.email),
            ("phone", &self.phone),
        ] {
            v.line(
                &format!("{field}.{name}"),
                value,
                false,
                MAX_CONTACT_FIELD_CHARS,
            );
        }
        if !self.email.is_empty() && !looks_like_email(&self.email) {
            v.add(format!("{field}.email"), "must be an email address");
        }
    }
}

pub(crate) fn looks_like_email(text: &str) -> bool {
    match text.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty() && domain.contains('.') && !text.chars().any(char::is_whitespace)
        }
        None => false,
    }
}

/// The conversation a ticket is linked to: the bot's or gateway's thread it came from,
/// most recently linked first. Updates about the ticket go back to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationRef {
    pub source: String,
    pub external_id: String,
    pub channel: Channel,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Ticket {
    pub id: Uuid,
    pub number: i64,
    pub subject: String,
    pub description: String,
    pub status: Status,
    pub priority: Priority,
    pub ticket_type: TicketType,
    pub tags: Vec<String>,
    pub custom_fields: BTreeMap<String, String>,
    pub contact: Contact,
    pub assignee_id: Option<Uuid>,
    pub queue_id: Option<Uuid>,
    pub merged_into_id: Option<Uuid>,
    /// The channel of the conversation the ticket came from; the default for replies.
    pub channel: Option<Channel>,
    /// The closed ticket this one follows up on.
    pub follow_up_of_id: Option<Uuid>,
    /// The conversation the ticket answers, if it came from one.
    pub conversation: Option<ConversationRef>,
    /// Support tier, 1 to 3: the tier of its queue.
    pub tier: i32,
    /// Skills an agent needs to take the ticket in a skill-based queue.
    pub required_skills: Vec<String>,
    /// Only VIP handlers may take the ticket.
    pub vip_handlers_only: bool,
    /// The SLA clocks running, paused or stopped on the ticket.
    pub sla_clocks: Vec<super::sla::Clock>,
    /// The customer's latest rating.
    pub satisfaction: Option<Satisfaction>,
    /// When the ticket last became resolved (RESOLVED, CLOSED or MERGED from an active
    /// status); `None` while it is active. See [`Ticket::settle_milestones`].
    pub resolved_at: Option<DateTime<Utc>>,
    /// When a person first replied in public.
    pub first_response_at: Option<DateTime<Utc>>,
    /// Optimistic-concurrency version; the etag is derived from it.
    pub version: i64,
    pub time_spent_seconds: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Ticket {
    /// Brings the milestones reports measure in step with a change written at
    /// `updated_at`: a ticket that is done keeps the moment it first became done since it
    /// was last active (RESOLVED then CLOSED is resolved when it became RESOLVED); an
    /// active one has none, so a reopened ticket is resolved again later. `replied_at` is
    /// a person's public reply in the same change, the first of which is the first
    /// response.
    pub fn settle_milestones(&mut self, replied_at: Option<DateTime<Utc>>) {
        if self.status.is_active() {
            self.resolved_at = None;
        } else if self.resolved_at.is_none() {
            self.resolved_at = Some(self.updated_at);
        }
        if self.first_response_at.is_none() {
            self.first_response_at = replied_at;
        }
    }

    pub fn etag(&self) -> String {
        etag_for(self.version)
    }

    /// Roughly what the ticket takes in a response, in bytes: its text plus a fixed
    /// allowance per field for ids, numbers, times and framing.
    pub fn approximate_size(&self) -> usize {
        const PER_FIELD: usize = 16;
        const FIXED: usize = 512;
        let text = |s: &String| s.len() + PER_FIELD;
        FIXED
            + text(&self.subject)
            + text(&self.description)
            + self.tags.iter().map(text).sum::<usize>()
            + self
                .custom_fields
                .iter()
                .map(|(k, v)| text(k) + text(v))
                .sum::<usize>()
            + text(&self.contact.external_id)
            + text(&self.contact.name)
            + text(&self.contact.email)
            + text(&self.contact.phone)
            + self.required_skills.iter().map(text).sum::<usize>()
            + self.sla_clocks.len() * 128
    }
}

/// A customer's rating of how their ticket was handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Satisfaction {
    /// 1 (very unhappy) to 5 (very happy).
    pub score: i32,
    pub comment: String,
    pub rated_at: DateTime<Utc>,
}

/// The etag of a version: its decimal digits, with no quotes to escape in JSON or shells.
pub fn etag_for(version: i64) -> String {
    version.to_string()
}

/// Reads an etag back into the version it names; HTTP-style quoted forms are accepted.
/// Versions start at 1, so nothing below names one this server issued.
pub fn version_from_etag(etag: &str) -> Option<i64> {
    (etag.trim_start_matches("W/").trim_matches('"').parse().ok()).filter(|v: &i64| *v >= 1)
}

/// Normalises tags: trimmed, lower-cased, de-duplicated, sorted; records violations.
pub fn normalize_tags(field: &str, tags: &[String], v: &mut Violations) -> Vec<String> {
    if tags.len() > MAX_TAGS {
        v.add(field, format!("must hold at most {MAX_TAGS} tags"));
        return Vec::new();
    }
    let mut out: Vec<String> = Vec::with_capacity(tags.len());
    for (i, tag) in tags.iter().enumerate() {
        let tag = tag.trim().to_lowercase();
        if tag.is_empty() {
            v.add(format!("{field}[{i}]"), "must not be empty");
        } else if tag.chars().count() > MAX_TAG_CHARS {
            v.add(
                format!("{field}[{i}]"),
                format!("must be at most {MAX_TAG_CHARS} characters"),
            );
        } else if tag
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == ',')
        {
            v.add(
                format!("{field}[{i}]"),
                "must not contain spaces, commas or control characters",
            );
        } else {
            out.push(tag);
        }
    }
    out.sort();
    out.dedup();
    out
}

pub fn validate_custom_fields(field: &str, fields: &BTreeMap<String, String>, v: &mut Violations) {
    if fields.len() > MAX_CUSTOM_FIELDS {
        v.add(
            field,
            format!("must hold at most {MAX_CUSTOM_FIELDS} entries"),
        );
        return;
    }
    for (key, value) in fields {
        let valid_key = !key.is_empty()
            && key.len() <= MAX_CUSTOM_FIELD_KEY_CHARS
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
        if !valid_key {
            v.add(
                format!("{field}[{key:?}]"),
                format!(
                    "keys must be 1 to {MAX_CUSTOM_FIELD_KEY_CHARS} characters of letters, digits, '_', '-' or '.'"
                ),
            );
        } else {
            v.text(
                &format!("{field}[{key:?}]"),
                value,
                false,
                MAX_CUSTOM_FIELD_VALUE_CHARS,
            );
        }
    }
}

/// How a ticket is named: by id, or by its number (`#1042`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketKey {
    Id(Uuid),
    Number(i64),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_and_merged_are_final() {
        for next in Status::ALL {
            if *next != Status::Closed {
                assert!(!Status::Closed.can_become(*next), "CLOSED -> {next}");
            }
            if *next != Status::Merged {
                assert!(!Status::Merged.can_become(*next), "MERGED -> {next}");
            }
        }
    }

    #[test]
    fn merged_is_reached_only_through_merge() {
        for from in Status::ALL.iter().filter(|s| **s != Status::Merged) {
            assert!(!from.can_become(Status::Merged), "{from} -> MERGED");
        }
    }

    #[test]
    fn active_statuses_move_freely_among_themselves() {
        use Status::*;
        for from in [Open, InProgress, Waiting] {
            for to in [Open, InProgress, Waiting, Resolved, Closed] {
                assert!(from.can_become(to), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn resolved_reopens_or_closes_but_does_not_wait() {
        use Status::*;
        assert!(Resolved.can_become(Open));
        assert!(Resolved.can_become(InProgress));
        assert!(Resolved.can_become(Closed));
        assert!(!Resolved.can_become(Waiting));
    }

    #[test]
    fn staying_put_is_allowed() {
        for s in Status::ALL {
            assert!(s.can_become(*s));
        }
    }

    #[test]
    fn priorities_rank_in_urgency_order() {
        let ranks: Vec<i64> = Priority::ALL.iter().map(|p| p.rank()).collect();
        assert_eq!(ranks, vec![1, 2, 3, 4]);
    }

    #[test]
    fn tags_are_normalised_and_deduplicated() {
        let mut v = Violations::new();
        let tags = normalize_tags(
            "tags",
            &["Billing".into(), " vip ".into(), "billing".into()],
            &mut v,
        );
        assert!(v.is_empty());
        assert_eq!(tags, vec!["billing", "vip"]);
    }

    #[test]
    fn etags_round_trip() {
        assert_eq!(version_from_etag(&etag_for(7)), Some(7));
        assert_eq!(version_from_etag("W/\"3\""), Some(3));
        assert_eq!(version_from_etag("nonsense"), None);
        assert_eq!(version_from_etag("0"), None);
        assert_eq!(version_from_etag("-1"), None);
    }
}
