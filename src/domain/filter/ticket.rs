//! The ticket side of the filter language: the fields a filter may name, and the typed
//! predicates comparisons bind to.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Comparison, Expr, FilterError, Literal, Op, error, parse};
use crate::domain::ticket::{Channel, Priority, Status, TicketType};

/// Who `assignee_id` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssigneeRef {
    /// `"me"`: the agent the caller's key is bound to.
    Me,
    /// `""`: nobody.
    Nobody,
    Agent(Uuid),
}

/// A typed condition on a ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TicketPredicate {
    Status(Op, Status),
    Priority(Op, Priority),
    Type(Op, TicketType),
    Assignee(Op, AssigneeRef),
    /// `None` is "no queue".
    Queue(Op, Option<Uuid>),
    Contact(Op, Uuid),
    Tag(Op, String),
    Number(Op, i64),
    CreatedAt(Op, Moment),
    UpdatedAt(Op, Moment),
    /// Some SLA clock missed its target (`true`), or none did (`false`).
    SlaBreached(bool),
    /// Some running SLA clock is due before (`<`) or by (`<=`) this time.
    SlaDueAt(Op, Moment),
    /// The channel of the conversation the ticket came from; `None` for none.
    Channel(Op, Option<Channel>),
    /// A custom field's value (`!=` includes tickets without the field).
    CustomField(Op, String, String),
    /// A contact's detail, compared without letter case.
    ContactField(Op, ContactField, String),
    ContactVip(bool),
    /// The bot or platform of the conversation the ticket answers; `None` for none.
    Source(Op, Option<String>),
    /// A person answered in public (`true`), or nobody has yet (`false`).
    HasReply(bool),
    /// The customer's rating, 1 to 5; 0 for none yet.
    Satisfaction(Op, i64),
}

/// The contact details a filter may name (`contact.email` …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContactField {
    Email,
    Phone,
    Name,
    ExternalId,
}

impl ContactField {
    pub fn column(self) -> &'static str {
        match self {
            ContactField::Email => "c.email",
            ContactField::Phone => "c.phone",
            ContactField::Name => "c.name",
            ContactField::ExternalId => "c.external_id",
        }
    }
}

/// A time in a filter: a fixed instant, or one relative to the moment the filter is used
/// (`"now-7d"`), so a saved view of "the last week" stays the last week.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moment {
    At(DateTime<Utc>),
    /// Seconds after now (negative: before).
    FromNow(i64),
}

impl Moment {
    pub fn at(self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Moment::At(at) => at,
            Moment::FromNow(seconds) => now + chrono::TimeDelta::seconds(seconds),
        }
    }
}

/// Reads `"now"`, `"now-7d"` or `"now+2h"` (units `s`, `m`, `h`, `d`, `w`; spaces allowed),
/// or an RFC 3339 time.
fn moment(text: &str) -> Option<Moment> {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let lower = compact.to_ascii_lowercase();
    if let Some(rest) = lower.strip_prefix("now") {
        if rest.is_empty() {
            return Some(Moment::FromNow(0));
        }
        let (sign, amount) = match rest.split_at(1) {
            ("-", amount) => (-1, amount),
            ("+", amount) => (1, amount),
            _ => return None,
        };
        let unit = amount.chars().last()?;
        let count: i64 = amount[..amount.len() - 1].parse().ok()?;
        let seconds = match unit {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            'w' => 604_800,
            _ => return None,
        };
        // A year and a half either way is as far as a filter needs to look.
        let total = count.checked_mul(seconds)?;
        return (total <= 50_000_000).then_some(Moment::FromNow(sign * total));
    }
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|at| Moment::At(at.with_timezone(&Utc)))
}

/// The ticket fields a filter may name.
pub const TICKET_FIELDS: &[&str] = &[
    "status",
    "priority",
    "type",
    "assignee_id",
    "queue_id",
    "contact_id",
    "tag",
    "number",
    "created_at",
    "updated_at",
    "sla_breached",
    "sla_due_at",
    "channel",
    "tags",
    "custom_fields.<key>",
    "contact.email",
    "contact.phone",
    "contact.name",
    "contact.external_id",
    "contact.vip",
    "source",
    "has_reply",
    "satisfaction",
];

pub type TicketFilter = Expr<TicketPredicate>;

impl TicketFilter {
    /// Parses and type-checks a `ListTickets` filter.
    pub fn parse_text(input: &str) -> Result<Option<TicketFilter>, FilterError> {
        match parse(input)? {
            Some(expr) => Ok(Some(Self::bind(expr)?)),
            None => Ok(None),
        }
    }

    pub fn bind(expr: Expr<Comparison>) -> Result<TicketFilter, FilterError> {
        expr.try_map(&mut |c| bind_ticket_comparison(&c))
    }
}

/// Type-checks one comparison against the ticket fields.
pub fn bind_ticket_comparison(c: &Comparison) -> Result<TicketPredicate, FilterError> {
    let at = c.position;
    let field = c.field.as_str();
    let only_equality = |what: &str| -> Result<(), FilterError> {
        if c.op.is_equality() {
            Ok(())
        } else {
            error(at, format!("{what} supports only = and !="))
        }
    };
    let text = c.value.text();
    match field {
        "status" => {
            only_equality("status")?;
            let status = enum_value(&text, "TICKET_STATUS_", Status::parse)
                .ok_or_else(|| bad_value(at, field, &text, Status::ALL))?;
            Ok(TicketPredicate::Status(c.op, status))
        }
        "priority" => {
            let priority = enum_value(&text, "PRIORITY_", Priority::parse)
                .ok_or_else(|| bad_value(at, field, &text, Priority::ALL))?;
            Ok(TicketPredicate::Priority(c.op, priority))
        }
        "type" => {
            only_equality("type")?;
            let ticket_type = enum_value(&text, "TICKET_TYPE_", TicketType::parse)
                .ok_or_else(|| bad_value(at, field, &text, TicketType::ALL))?;
            Ok(TicketPredicate::Type(c.op, ticket_type))
        }
        "assignee_id" => {
            only_equality("assignee_id")?;
            let who = match text.as_str() {
                "me" => AssigneeRef::Me,
                "" => AssigneeRef::Nobody,
                other => AssigneeRef::Agent(uuid_value(at, field, other)?),
            };
            Ok(TicketPredicate::Assignee(c.op, who))
        }
        "queue_id" => {
            only_equality("queue_id")?;
            let queue = match text.as_str() {
                "" => None,
                other => Some(uuid_value(at, field, other)?),
            };
            Ok(TicketPredicate::Queue(c.op, queue))
        }
        "contact_id" => {
            only_equality("contact_id")?;
            Ok(TicketPredicate::Contact(
                c.op,
                uuid_value(at, field, &text)?,
            ))
        }
        "tag" | "tags" => {
            only_equality("tag")?;
            Ok(TicketPredicate::Tag(c.op, text.trim().to_lowercase()))
        }
        "number" => match c.value {
            Literal::Number(n) => Ok(TicketPredicate::Number(c.op, n)),
            _ => error(at, "number must be compared with a whole number"),
        },
        "sla_breached" => truth(c, &text).map(TicketPredicate::SlaBreached),
        "sla_due_at" => {
            if !matches!(c.op, Op::Lt | Op::Le) {
                return error(at, "sla_due_at supports only < and <=");
            }
            let instant = moment(&text).ok_or_else(|| FilterError {
                position: at,
                message:
                    "sla_due_at must be compared with an RFC 3339 time or \"now\", \"now+2h\"…"
                        .into(),
            })?;
            Ok(TicketPredicate::SlaDueAt(c.op, instant))
        }
        "created_at" | "updated_at" => {
            let instant = moment(&text).ok_or_else(|| FilterError {
                position: at,
                message: format!(
                    "{field} must be compared with an RFC 3339 time such as \"2026-01-31T09:00:00Z\" \
                     or a time relative to now such as \"now-7d\" (units s, m, h, d, w)"
                ),
            })?;
            Ok(if field == "created_at" {
                TicketPredicate::CreatedAt(c.op, instant)
            } else {
                TicketPredicate::UpdatedAt(c.op, instant)
            })
        }
        "source" => {
            only_equality("source")?;
            let source = (!text.is_empty()).then(|| text.clone());
            Ok(TicketPredicate::Source(c.op, source))
        }
        "satisfaction" => match c.value {
            Literal::Number(n) if (0..=5).contains(&n) => {
                Ok(TicketPredicate::Satisfaction(c.op, n))
            }
            _ => error(at, "satisfaction must be compared with 0 (not rated) to 5"),
        },
        "has_reply" => truth(c, &text).map(TicketPredicate::HasReply),
        "contact.vip" => truth(c, &text).map(TicketPredicate::ContactVip),
        "contact.email" | "contact.phone" | "contact.name" | "contact.external_id" => {
            only_equality(field)?;
            let which = match field {
                "contact.email" => ContactField::Email,
                "contact.phone" => ContactField::Phone,
                "contact.name" => ContactField::Name,
                _ => ContactField::ExternalId,
            };
            Ok(TicketPredicate::ContactField(c.op, which, text))
        }
        _ if field.starts_with("custom_fields.") => {
            only_equality("a custom field")?;
            let key = &field["custom_fields.".len()..];
            let valid = !key.is_empty()
                && key.len() <= crate::domain::ticket::MAX_CUSTOM_FIELD_KEY_CHARS
                && key
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-' || ch == '.');
            if !valid {
                return error(at, format!("'{key}' is not a custom field key"));
            }
            Ok(TicketPredicate::CustomField(c.op, key.to_owned(), text))
        }
        "channel" => {
            only_equality("channel")?;
            let channel = match text.as_str() {
                "" => None,
                other => Some(
                    enum_value(other, "CHANNEL_", Channel::parse)
                        .ok_or_else(|| bad_value(at, field, other, Channel::ALL))?,
                ),
            };
            Ok(TicketPredicate::Channel(c.op, channel))
        }
        _ => error(
            at,
            format!(
                "unknown field '{field}'; known fields: {}",
                TICKET_FIELDS.join(", ")
            ),
        ),
    }
}

/// Whether `field = true` (or `!= false`) holds, for the true-or-false fields.
fn truth(c: &Comparison, text: &str) -> Result<bool, FilterError> {
    let value = match text.to_ascii_lowercase().as_str() {
        "true" => true,
        "false" => false,
        _ => {
            return error(
                c.position,
                format!("{} must be compared with true or false", c.field),
            );
        }
    };
    match c.op {
        Op::Eq => Ok(value),
        Op::Ne => Ok(!value),
        _ => error(c.position, format!("{} supports only = and !=", c.field)),
    }
}

/// Accepts `OPEN`, `open` and `TICKET_STATUS_OPEN` alike.
fn enum_value<T>(text: &str, prefix: &str, parse: fn(&str) -> Option<T>) -> Option<T> {
    let upper = text.to_ascii_uppercase();
    parse(upper.strip_prefix(prefix).unwrap_or(&upper))
}

fn bad_value<T: std::fmt::Display>(at: usize, field: &str, text: &str, all: &[T]) -> FilterError {
    let names: Vec<String> = all.iter().map(ToString::to_string).collect();
    FilterError {
        position: at,
        message: format!(
            "'{text}' is not a valid {field}; expected one of {}",
            names.join(", ")
        ),
    }
}

fn uuid_value(at: usize, field: &str, text: &str) -> Result<Uuid, FilterError> {
    Uuid::parse_str(text).map_err(|_| FilterError {
        position: at,
        message: format!("{field} must be a UUID in quotes"),
    })
}
