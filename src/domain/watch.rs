//! Filters of the `WatchTickets` stream: the `ListTickets` language plus `ticket_id`,
//! `event_type` and `channel`, evaluated against each event and the ticket as of it.

use uuid::Uuid;

use super::event::{EventKind, EventPayload, NewEvent};
use super::filter::{
    AssigneeRef, Comparison, Expr, FilterError, Literal, Op, TicketPredicate,
    bind_ticket_comparison, parse,
};
use super::ticket::Channel;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchPredicate {
    Ticket(TicketPredicate),
    TicketId(Op, Uuid),
    EventType(Op, EventKind),
    /// `None` is "no channel".
    Channel(Op, Option<Channel>),
    /// Notifications addressed to an agent (`"me"`: the caller's).
    Recipient(Op, AssigneeRef),
}

pub type WatchFilter = Expr<WatchPredicate>;

fn error<T>(position: usize, message: impl Into<String>) -> Result<T, FilterError> {
    Err(FilterError {
        position,
        message: message.into(),
    })
}

fn text(value: &Literal) -> String {
    match value {
        Literal::Word(s) | Literal::Text(s) => s.clone(),
        Literal::Number(n) => n.to_string(),
    }
}

fn bind(c: Comparison) -> Result<WatchPredicate, FilterError> {
    let equality = matches!(c.op, Op::Eq | Op::Ne);
    match c.field.as_str() {
        "ticket_id" | "event_type" | "channel" | "recipient" if !equality => {
            error(c.position, format!("{} supports only = and !=", c.field))
        }
        "ticket_id" => match Uuid::parse_str(&text(&c.value)) {
            Ok(id) => Ok(WatchPredicate::TicketId(c.op, id)),
            Err(_) => error(c.position, "ticket_id must be a UUID in quotes"),
        },
        "event_type" => {
            let value = text(&c.value);
            let lower = value.to_ascii_lowercase();
            let kind = EventKind::parse(lower.strip_prefix("event_type_").unwrap_or(&lower));
            match kind {
                Some(kind) => Ok(WatchPredicate::EventType(c.op, kind)),
                None => {
                    let names: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
                    error(
                        c.position,
                        format!(
                            "'{value}' is not an event type; expected one of {}",
                            names.join(", ")
                        ),
                    )
                }
            }
        }
        "channel" => {
            let value = text(&c.value);
            if value.is_empty() {
                return Ok(WatchPredicate::Channel(c.op, None));
            }
            let upper = value.to_ascii_uppercase();
            match Channel::parse(upper.strip_prefix("CHANNEL_").unwrap_or(&upper)) {
                Some(channel) => Ok(WatchPredicate::Channel(c.op, Some(channel))),
                None => error(
                    c.position,
                    format!("'{value}' is not a channel; expected EMAIL, SMS or CHAT"),
                ),
            }
        }
        "recipient" => match text(&c.value).as_str() {
            "me" => Ok(WatchPredicate::Recipient(c.op, AssigneeRef::Me)),
            other => match Uuid::parse_str(other) {
                Ok(id) => Ok(WatchPredicate::Recipient(c.op, AssigneeRef::Agent(id))),
                Err(_) => error(
                    c.position,
                    "recipient must be \"me\" or an agent id in quotes",
                ),
            },
        },
        "created_at" | "updated_at" | "sla_breached" | "sla_due_at" => error(
            c.position,
            format!("{} cannot be used in a watch filter", c.field),
        ),
        "has_reply" | "satisfaction" => {
            error(c.position, format!("{} is not in watch filters", c.field))
        }
        _ if c.field.starts_with("custom_fields.") || c.field.starts_with("contact.") => error(
            c.position,
            format!(
                "{} is not in watch filters (events carry no custom fields or contact details)",
                c.field
            ),
        ),
        _ => Ok(WatchPredicate::Ticket(bind_ticket_comparison(&c)?)),
    }
}

/// Parses and type-checks a watch filter; the blank filter is `None` (everything).
pub fn parse_watch_filter(input: &str) -> Result<Option<WatchFilter>, FilterError> {
    match parse(input)? {
        Some(expr) => Ok(Some(expr.try_map(&mut bind)?)),
        None => Ok(None),
    }
}

pub(crate) fn ticket_matches(predicate: &TicketPredicate, event: &NewEvent) -> bool {
    let t = &event.ticket;
    match predicate {
        TicketPredicate::Status(op, s) => op.compare(t.status, *s),
        TicketPredicate::Priority(op, p) => op.compare(t.priority.rank(), p.rank()),
        TicketPredicate::Type(op, ty) => op.compare(t.ticket_type, *ty),
        TicketPredicate::Assignee(op, who) => match who {
            AssigneeRef::Agent(id) => op.equals(t.assignee_id, Some(*id)),
            AssigneeRef::Nobody => op.equals(t.assignee_id, None),
            AssigneeRef::Me => false,
        },
        TicketPredicate::Queue(op, queue) => op.equals(t.queue_id, *queue),
        TicketPredicate::Contact(op, id) => op.compare(t.contact_id, *id),
        TicketPredicate::Tag(op, tag) => {
            let has = t.tags.iter().any(|x| x == tag);
            if *op == Op::Ne { !has } else { has }
        }
        TicketPredicate::Number(op, n) => op.compare(event.ticket_number, *n),
        // Rejected when binding a watch filter.
        TicketPredicate::Channel(op, channel) => op.equals(t.channel, *channel),
        TicketPredicate::Source(op, source) => op.equals(
            t.conversation.as_ref().map(|c| c.source.as_str()),
            source.as_deref(),
        ),
        TicketPredicate::CreatedAt(..)
        | TicketPredicate::CustomField(..)
        | TicketPredicate::ContactField(..)
        | TicketPredicate::ContactVip(_)
        | TicketPredicate::HasReply(_)
        | TicketPredicate::Satisfaction(..)
        | TicketPredicate::UpdatedAt(..)
        | TicketPredicate::SlaBreached(_)
        | TicketPredicate::SlaDueAt(..) => false,
    }
}

/// Whether an event passes a filter.
pub fn matches(filter: &WatchFilter, event: &NewEvent) -> bool {
    match filter {
        Expr::Cond(WatchPredicate::Ticket(p)) => ticket_matches(p, event),
        Expr::Cond(WatchPredicate::TicketId(op, id)) => op.compare(event.ticket_id, *id),
        Expr::Cond(WatchPredicate::EventType(op, kind)) => op.compare(event.kind, *kind),
        Expr::Cond(WatchPredicate::Channel(op, channel)) => {
            op.equals(event.ticket.channel, *channel)
        }
        Expr::Cond(WatchPredicate::Recipient(op, who)) => {
            let addressed = match (who, &event.payload) {
                (AssigneeRef::Agent(id), EventPayload::Notification { recipients, .. }) => {
                    recipients.contains(id)
                }
                _ => false,
            };
            if *op == Op::Ne { !addressed } else { addressed }
        }
        Expr::And(items) => items.iter().all(|e| matches(e, event)),
        Expr::Or(items) => items.iter().any(|e| matches(e, event)),
        Expr::Not(inner) => !matches(inner, event),
    }
}

/// The single ticket a filter is limited to, if it says `ticket_id = "…"` at its top
/// level; lets the store read just that ticket's events.
pub fn only_ticket(filter: &WatchFilter) -> Option<Uuid> {
    match filter {
        Expr::Cond(WatchPredicate::TicketId(Op::Eq, id)) => Some(*id),
        Expr::And(items) => items.iter().find_map(only_ticket),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::domain::event::{Actor, ActorKind, EventPayload, TicketSnapshot, Visibility};
    use crate::domain::ticket::{Priority, Status, TicketType};

    fn event(kind: EventKind, channel: Option<Channel>, assignee: Option<Uuid>) -> NewEvent {
        NewEvent {
            id: Uuid::nil(),
            ticket_id: Uuid::from_u128(7),
            ticket_number: 12,
            kind,
            actor: Actor {
                kind: ActorKind::System,
                id: None,
                name: String::new(),
            },
            visibility: Visibility::Public,
            payload: EventPayload::Note {
                body: String::new(),
            },
            created_at: Utc::now(),
            ticket: TicketSnapshot {
                status: Status::Open,
                priority: Priority::High,
                ticket_type: TicketType::Bug,
                assignee_id: assignee,
                queue_id: None,
                contact_id: Uuid::nil(),
                channel,
                tags: vec!["vip".into()],
                conversation: None,
            },
            depth: 0,
        }
    }

    fn check(filter: &str, e: &NewEvent) -> bool {
        matches(&parse_watch_filter(filter).unwrap().unwrap(), e)
    }

    #[test]
    fn event_fields_and_ticket_fields_combine() {
        let agent = Uuid::from_u128(3);
        let reply = event(EventKind::ReplyAdded, Some(Channel::Chat), Some(agent));
        assert!(check("event_type = reply_added AND channel = CHAT", &reply));
        assert!(check("event_type = EVENT_TYPE_REPLY_ADDED", &reply));
        assert!(check(
            &format!(r#"assignee_id = "{agent}" AND priority >= HIGH"#),
            &reply
        ));
        assert!(check(r#"tag = "vip" AND number = 12"#, &reply));
        assert!(!check("channel = EMAIL", &reply));
        assert!(check(
            r#"ticket_id = "00000000-0000-0000-0000-000000000007""#,
            &reply
        ));
        assert!(!check(r#"assignee_id = """#, &reply));
        assert!(check(
            r#"assignee_id != "00000000-0000-0000-0000-000000000009""#,
            &event(EventKind::NoteAdded, None, None)
        ));
    }

    #[test]
    fn watch_only_errors_are_clear() {
        for (text, expected) in [
            ("event_type = exploded", "not an event type"),
            ("channel = FAX", "not a channel"),
            (
                "created_at > \"2026-01-01T00:00:00Z\"",
                "cannot be used in a watch filter",
            ),
            ("ticket_id = \"x\"", "must be a UUID"),
            ("event_type > note_added", "supports only = and !="),
        ] {
            let err = parse_watch_filter(text).unwrap_err();
            assert!(err.message.contains(expected), "{text}: {}", err.message);
        }
    }

    #[test]
    fn a_top_level_ticket_id_narrows_the_read() {
        let id = Uuid::from_u128(7);
        let f = parse_watch_filter(&format!(
            r#"ticket_id = "{id}" AND event_type = note_added"#
        ))
        .unwrap()
        .unwrap();
        assert_eq!(only_ticket(&f), Some(id));
        let f = parse_watch_filter(&format!(r#"ticket_id = "{id}" OR channel = SMS"#))
            .unwrap()
            .unwrap();
        assert_eq!(only_ticket(&f), None);
    }
}
