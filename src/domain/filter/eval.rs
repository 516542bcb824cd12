//! Filters evaluated in memory: on a ticket as `ListTickets` would list it, or on the
//! ticket as an event saw it. (The store renders the same predicates as SQL.)

use chrono::{DateTime, Utc};

use super::{AssigneeRef, ContactField, Expr, TicketFilter, TicketPredicate};
use crate::domain::event::NewEvent;
use crate::domain::ticket::Ticket;

/// Whether a ticket passes a filter at `now`, as `ListTickets` would list it.
pub fn ticket_passes(filter: &TicketFilter, ticket: &Ticket, now: DateTime<Utc>) -> bool {
    match filter {
        Expr::Cond(p) => predicate_holds(p, ticket, now),
        Expr::And(items) => items.iter().all(|e| ticket_passes(e, ticket, now)),
        Expr::Or(items) => items.iter().any(|e| ticket_passes(e, ticket, now)),
        Expr::Not(inner) => !ticket_passes(inner, ticket, now),
    }
}

fn predicate_holds(predicate: &TicketPredicate, t: &Ticket, now: DateTime<Utc>) -> bool {
    use TicketPredicate as P;
    let running = || {
        t.sla_clocks
            .iter()
            .filter(|c| c.running_since.is_some() && !c.stopped)
    };
    match predicate {
        P::Status(op, s) => op.equals(t.status, *s),
        P::Priority(op, p) => op.compare(t.priority.rank(), p.rank()),
        P::Type(op, ty) => op.equals(t.ticket_type, *ty),
        P::Assignee(op, AssigneeRef::Agent(id)) => op.equals(t.assignee_id, Some(*id)),
        P::Assignee(op, AssigneeRef::Nobody) => op.equals(t.assignee_id, None),
        // Rejected when a workflow is saved.
        P::Assignee(_, AssigneeRef::Me) => false,
        P::Queue(op, queue) => op.equals(t.queue_id, *queue),
        P::Contact(op, id) => op.equals(t.contact.id, *id),
        P::Tag(op, tag) => op.equals(t.tags.contains(tag), true),
        P::Number(op, n) => op.compare(t.number, *n),
        P::CreatedAt(op, at) => op.compare(t.created_at, at.at(now)),
        P::UpdatedAt(op, at) => op.compare(t.updated_at, at.at(now)),
        P::Channel(op, channel) => op.equals(t.channel, *channel),
        P::CustomField(op, key, value) => op.equals(
            t.custom_fields.get(key).map(String::as_str),
            Some(value.as_str()),
        ),
        P::ContactField(op, which, value) => {
            let actual = match which {
                ContactField::Email => &t.contact.email,
                ContactField::Phone => &t.contact.phone,
                ContactField::Name => &t.contact.name,
                ContactField::ExternalId => &t.contact.external_id,
            };
            op.equals(actual.to_lowercase(), value.to_lowercase())
        }
        P::ContactVip(vip) => t.contact.vip == *vip,
        P::Source(op, source) => op.equals(
            t.conversation.as_ref().map(|c| c.source.as_str()),
            source.as_deref(),
        ),
        // Refused in workflow conditions when saved (see `check`).
        P::HasReply(_) => false,
        P::Satisfaction(op, score) => op.compare(
            t.satisfaction.as_ref().map_or(0, |s| i64::from(s.score)),
            *score,
        ),
        P::SlaBreached(wanted) => {
            let breached = t.sla_clocks.iter().any(|c| c.breached)
                || running().any(|c| c.due_at.is_some_and(|due| due <= now));
            breached == *wanted
        }
        P::SlaDueAt(op, at) => {
            running().any(|c| c.due_at.is_some_and(|due| op.compare(due, at.at(now))))
        }
    }
}

/// Whether the ticket as the event saw it (right after the change) passes the filter;
/// `None` when the filter names something an event does not carry (times, SLA state).
pub fn snapshot_passes(filter: &TicketFilter, event: &NewEvent) -> Option<bool> {
    use TicketPredicate as P;
    Some(match filter {
        Expr::Cond(
            P::CreatedAt(..)
            | P::UpdatedAt(..)
            | P::SlaBreached(_)
            | P::SlaDueAt(..)
            // An event's channel is its message's, not always the ticket's.
            | P::Channel(..)
            | P::CustomField(..)
            | P::ContactField(..)
            | P::ContactVip(_)
            | P::Source(..)
            | P::HasReply(_)
            | P::Satisfaction(..)
            | P::Assignee(_, AssigneeRef::Me),
        ) => return None,
        Expr::Cond(p) => crate::domain::watch::ticket_matches(p, event),
        Expr::And(items) => {
            let mut all = true;
            for item in items {
                all &= snapshot_passes(item, event)?;
            }
            all
        }
        Expr::Or(items) => {
            let mut any = false;
            for item in items {
                any |= snapshot_passes(item, event)?;
            }
            any
        }
        Expr::Not(inner) => !snapshot_passes(inner, event)?,
    })
}
