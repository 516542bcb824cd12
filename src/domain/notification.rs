//! Notifications: events addressed to particular agents — the ticket was assigned to
//! them, a note mentioned them — so an agent's client following its own notifications (or
//! its own tickets) learns at once.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::event::{Actor, ActorKind, EventKind, EventPayload, NewEvent, Visibility};
use super::ticket::Ticket;

/// Most agents one note may mention.
pub const MAX_MENTIONS: usize = 20;

/// The notification that `ticket` (as changed) is now assigned to its assignee, unless
/// nobody is or the assignee did it themselves.
pub fn assigned(ticket: &Ticket, actor: &Actor, at: DateTime<Utc>) -> Option<NewEvent> {
    let agent = ticket.assignee_id?;
    if actor.kind == ActorKind::Agent && actor.id == Some(agent) {
        return None;
    }
    Some(NewEvent::about(
        ticket,
        EventKind::Notification,
        actor.clone(),
        Visibility::Internal,
        EventPayload::Notification {
            reason: "assigned".into(),
            recipients: vec![agent],
            text: format!(
                "Ticket #{} was assigned to you: {}",
                ticket.number, ticket.subject
            ),
        },
        at,
    ))
}

/// The notification to `recipients` that a note by `actor` mentioned them.
pub fn mentioned(
    ticket: &Ticket,
    actor: &Actor,
    recipients: Vec<Uuid>,
    note: &str,
    at: DateTime<Utc>,
) -> NewEvent {
    let excerpt: String = note.chars().take(200).collect();
    NewEvent::about(
        ticket,
        EventKind::Notification,
        actor.clone(),
        Visibility::Internal,
        EventPayload::Notification {
            reason: "mentioned".into(),
            recipients,
            text: format!(
                "{} mentioned you on #{}: {excerpt}",
                actor.name, ticket.number
            ),
        },
        at,
    )
}

/// The agents a note mentions, as `@` followed by their email address (`@sam@example.com`),
/// lower-cased, each once, at most [`MAX_MENTIONS`].
pub fn mentioned_emails(note: &str) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    for (at, _) in note.match_indices('@') {
        // A mention starts a word: `ada@example.com` alone is an address, not a mention.
        if note[..at]
            .chars()
            .last()
            .is_some_and(|c| !c.is_whitespace() && c != '(')
        {
            continue;
        }
        let rest = &note[at + 1..];
        let end = rest
            .find(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | ')' | '!' | '?'))
            .unwrap_or(rest.len());
        let address = rest[..end].trim_end_matches('.').to_lowercase();
        if address.contains('@') && !found.contains(&address) {
            found.push(address);
            if found.len() == MAX_MENTIONS {
                break;
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_are_addresses_after_an_at_sign_that_starts_a_word() {
        assert_eq!(
            mentioned_emails("Hi @Sam@Example.com, see (@ana@example.com). Not ada@example.com."),
            vec!["sam@example.com", "ana@example.com"]
        );
        assert_eq!(
            mentioned_emails("@sam@example.com @sam@example.com"),
            vec!["sam@example.com"]
        );
        assert!(mentioned_emails("email me @ home").is_empty());
        let many: String = (0..30).map(|i| format!("@a{i}@x.org ")).collect();
        assert_eq!(mentioned_emails(&many).len(), MAX_MENTIONS);
    }
}
