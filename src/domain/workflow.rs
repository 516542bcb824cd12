//! Workflows: a trigger (an event of the log, or a timer on the ticket), a condition in the
//! `ListTickets` filter language, and actions run in order. This module holds the pure
//! rules: what a workflow may say, which events trigger it, whether a ticket passes its
//! condition, and when its timer falls due.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::calendar::BusinessCalendar;
use super::event::{ActorKind, EventKind, EventPayload, NewEvent};
use super::filter::{AssigneeRef, Expr, TicketFilter, TicketPredicate};
use super::ticket::{self, Priority, Status, text_enum};
use super::validation::Violations;

/// Longest workflow name.
pub const MAX_NAME_CHARS: usize = 200;
/// Most actions one workflow runs.
pub const MAX_ACTIONS: usize = 20;
/// Longest condition.
pub const MAX_CONDITION_CHARS: usize = 4_096;
/// Most agents one `notify` action names.
pub const MAX_NOTIFY_AGENTS: usize = 100;
/// Longest timer delay: a year.
pub const MAX_TIMER_SECONDS: i64 = 366 * 24 * 3600;
/// Workflow changes trigger further workflows down to this depth; the next is stopped.
pub const MAX_DEPTH: u8 = 3;

text_enum!(
    /// The events a workflow can be triggered by.
    WorkflowEvent {
        TicketCreated = "TICKET_CREATED",
        StatusChanged = "STATUS_CHANGED",
        PriorityChanged = "PRIORITY_CHANGED",
        Assigned = "ASSIGNED",
        TagsChanged = "TAGS_CHANGED",
        CustomerMessage = "CUSTOMER_MESSAGE",
        AgentReply = "AGENT_REPLY",
        NoteAdded = "NOTE_ADDED",
        SlaWarning = "SLA_WARNING",
        SlaBreached = "SLA_BREACHED",
        ConversationEscalated = "CONVERSATION_ESCALATED",
    }
);

text_enum!(
    /// What a timer measures: since the last customer message (or the ticket's
    /// creation) with no agent reply; since the ticket entered a status, while it stays
    /// there; since the ticket was created.
    TimerKind {
        NoAgentReply = "NO_AGENT_REPLY",
        InStatus = "IN_STATUS",
        SinceCreated = "SINCE_CREATED",
    }
);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Trigger {
    /// `from`/`to` narrow change events: the old and new value as text (`URGENT`, a
    /// status, an agent id for ASSIGNED, a tag removed/added for TAGS_CHANGED, the metric
    /// for SLA events as `to`). Empty matches any.
    Event {
        event: WorkflowEvent,
        #[serde(default)]
        from: String,
        #[serde(default)]
        to: String,
    },
    Timer {
        timer: TimerKind,
        after_seconds: i64,
        /// Counted in this calendar's business hours; wall-clock time when absent.
        #[serde(default)]
        calendar_id: Option<Uuid>,
        /// For IN_STATUS.
        #[serde(default)]
        status: Option<Status>,
    },
}

/// Where an `assign` action sends the ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssignTo {
    Agent(Uuid),
    Queue(Uuid),
    /// Back to automatic assignment within its queue.
    Auto,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    SetPriority {
        priority: Priority,
    },
    SetStatus {
        status: Status,
    },
    AddTags {
        tags: Vec<String>,
    },
    RemoveTags {
        tags: Vec<String>,
    },
    SetCustomField {
        key: String,
        value: String,
    },
    Assign {
        to: AssignTo,
    },
    EscalateTier {
        reason: String,
    },
    AddNote {
        template_id: Uuid,
    },
    SendMessage {
        template_id: Uuid,
        /// The ticket's own channel when absent.
        #[serde(default)]
        channel: Option<ticket::Channel>,
    },
    Notify {
        agent_ids: Vec<Uuid>,
        #[serde(default)]
        queue_id: Option<Uuid>,
        #[serde(default)]
        assignee: bool,
    },
}

/// A stored workflow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workflow {
    pub id: Uuid,
    pub name: String,
    pub enabled: bool,
    /// Workflows triggered by the same event run in this order (then by name).
    pub position: i32,
    pub trigger: Trigger,
    /// A `ListTickets` filter the ticket must pass after the triggering change; empty
    /// passes every ticket.
    pub condition: String,
    pub actions: Vec<Action>,
    /// The log position up to which the workflow has seen every event (event triggers).
    pub seen_through: i64,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Workflow {
    pub fn timer(&self) -> Option<(TimerKind, i64, Option<Uuid>, Option<Status>)> {
        match &self.trigger {
            Trigger::Timer {
                timer,
                after_seconds,
                calendar_id,
                status,
            } => Some((*timer, *after_seconds, *calendar_id, *status)),
            Trigger::Event { .. } => None,
        }
    }

    /// The parsed condition (checked when the workflow was saved).
    pub fn filter(&self) -> Option<TicketFilter> {
        TicketFilter::parse_text(&self.condition).ok().flatten()
    }
}

/// Checks a workflow's parts, recording violations under `workflow.…`; returns the
/// actions with their tags normalised.
pub fn check(
    name: &str,
    trigger: Option<&Trigger>,
    condition: &str,
    actions: &[Action],
    v: &mut Violations,
) -> Vec<Action> {
    v.line("workflow.name", name, true, MAX_NAME_CHARS);
    match trigger {
        None => v.add("workflow.trigger", "is required: an event or a timer"),
        Some(Trigger::Event { from, to, .. }) => {
            v.line("workflow.trigger.event.from", from, false, 200);
            v.line("workflow.trigger.event.to", to, false, 200);
        }
        Some(Trigger::Timer {
            timer,
            after_seconds,
            status,
            ..
        }) => {
            if !(1..=MAX_TIMER_SECONDS).contains(after_seconds) {
                v.add(
                    "workflow.trigger.timer.after",
                    "must be between one second and 366 days",
                );
            }
            match (timer, status) {
                (TimerKind::InStatus, None) => {
                    v.add("workflow.trigger.timer.status", "is required for IN_STATUS")
                }
                (TimerKind::InStatus, Some(Status::Merged)) => v.add(
                    "workflow.trigger.timer.status",
                    "a merged ticket has no timers",
                ),
                (TimerKind::InStatus, Some(_)) | (_, None) => {}
                (_, Some(_)) => v.add(
                    "workflow.trigger.timer.status",
                    "is only for IN_STATUS timers",
                ),
            }
        }
    }
    v.text("workflow.condition", condition, false, MAX_CONDITION_CHARS);
    match TicketFilter::parse_text(condition) {
        Ok(Some(filter)) if names_me(&filter) => v.add(
            "workflow.condition",
            "assignee_id = \"me\" means nothing to a workflow; name the agent's id",
        ),
        Ok(Some(filter)) if names_has_reply(&filter) => v.add(
            "workflow.condition",
            "has_reply is not for workflow conditions: trigger on AGENT_REPLY, or time a \
             NO_AGENT_REPLY timer",
        ),
        Ok(_) => {}
        Err(e) => v.add("workflow.condition", e.to_string()),
    }
    if actions.is_empty() {
        v.add("workflow.actions", "must hold at least one action");
    }
    if actions.len() > MAX_ACTIONS {
        v.add(
            "workflow.actions",
            format!("must hold at most {MAX_ACTIONS} actions"),
        );
        return Vec::new();
    }
    actions
        .iter()
        .enumerate()
        .map(|(i, action)| check_action(&format!("workflow.actions[{i}]"), action, v))
        .collect()
}

fn check_action(field: &str, action: &Action, v: &mut Violations) -> Action {
    match action {
        Action::SetStatus { status } if *status == Status::Merged => {
            v.add(
                format!("{field}.set_status.status"),
                "a ticket becomes MERGED only through MergeTickets",
            );
            action.clone()
        }
        Action::AddTags { tags } | Action::RemoveTags { tags } => {
            let key = if matches!(action, Action::AddTags { .. }) {
                "add_tags"
            } else {
                "remove_tags"
            };
            let path = format!("{field}.{key}.tags");
            if tags.is_empty() {
                v.add(&path, "must name at least one tag");
            }
            let tags = ticket::normalize_tags(&path, tags, v);
            if key == "add_tags" {
                Action::AddTags { tags }
            } else {
                Action::RemoveTags { tags }
            }
        }
        Action::SetCustomField { key, value } => {
            let one = std::iter::once((key.clone(), value.clone())).collect();
            ticket::validate_custom_fields(&format!("{field}.set_custom_field"), &one, v);
            action.clone()
        }
        Action::EscalateTier { reason } => {
            v.text(
                &format!("{field}.escalate_tier.reason"),
                reason,
                false,
                2_048,
            );
            action.clone()
        }
        Action::Notify {
            agent_ids,
            queue_id,
            assignee,
        } => {
            if agent_ids.is_empty() && queue_id.is_none() && !assignee {
                v.add(
                    format!("{field}.notify"),
                    "must name agents, a queue or the assignee",
                );
            }
            if agent_ids.len() > MAX_NOTIFY_AGENTS {
                v.add(
                    format!("{field}.notify.agent_ids"),
                    format!("must hold at most {MAX_NOTIFY_AGENTS} agents"),
                );
            }
            action.clone()
        }
        _ => action.clone(),
    }
}

/// Whether a condition names what a workflow cannot read off a ticket.
fn names_has_reply(filter: &TicketFilter) -> bool {
    match filter {
        Expr::Cond(TicketPredicate::HasReply(_)) => true,
        Expr::Cond(_) => false,
        Expr::And(items) | Expr::Or(items) => items.iter().any(names_has_reply),
        Expr::Not(inner) => names_has_reply(inner),
    }
}

fn names_me(filter: &TicketFilter) -> bool {
    match filter {
        Expr::Cond(TicketPredicate::Assignee(_, AssigneeRef::Me)) => true,
        Expr::Cond(_) => false,
        Expr::And(items) | Expr::Or(items) => items.iter().any(names_me),
        Expr::Not(inner) => names_me(inner),
    }
}

/// Whether `wanted` (empty: anything) names `actual` (compared without letter case, so
/// `urgent` and `URGENT` match; enum values may carry their proto prefix).
fn names(wanted: &str, actual: &str) -> bool {
    let wanted = wanted.trim();
    wanted.is_empty() || short_name(wanted).eq_ignore_ascii_case(actual)
}

/// A trigger value without the prefix of its protobuf enum name (`PRIORITY_URGENT` is
/// `URGENT`), upper-cased.
fn short_name(wanted: &str) -> String {
    let upper = wanted.trim().to_ascii_uppercase();
    ["TICKET_STATUS_", "PRIORITY_", "METRIC_"]
        .iter()
        .find_map(|p| upper.strip_prefix(p))
        .map_or_else(|| upper.clone(), str::to_owned)
}

/// Refuses `from`/`to` values that would keep an event trigger from ever firing: a
/// status for STATUS_CHANGED, a priority for PRIORITY_CHANGED, an agent id (hyphenated,
/// as assignees are compared; `to` only) for ASSIGNED, a metric (`to` only) for the SLA
/// events. Empty always matches any; the other events ignore both. Checked when a trigger
/// is set, so that a stored workflow can still be changed otherwise (disabled, say).
pub fn check_trigger_values(trigger: Option<&Trigger>, v: &mut Violations) {
    if let Some(Trigger::Event { event, from, to }) = trigger {
        check_change_values(*event, from, to, v);
    }
}

fn check_change_values(event: WorkflowEvent, from: &str, to: &str, v: &mut Violations) {
    use WorkflowEvent as W;
    let status = |t: &str| Status::parse(&short_name(t)).is_some();
    let priority = |t: &str| Priority::parse(&short_name(t)).is_some();
    let agent = |t: &str| {
        Uuid::parse_str(t.trim()).is_ok_and(|id| id.to_string().eq_ignore_ascii_case(t.trim()))
    };
    let metric = |t: &str| super::sla::Metric::parse(&short_name(t)).is_some();
    let any = |_: &str| true;
    let none = |_: &str| false;
    type Rule<'a> = (&'a dyn Fn(&str) -> bool, &'a str);
    let (from_rule, to_rule): (Rule, Rule) = match event {
        W::StatusChanged => ((&status, "a ticket status"), (&status, "a ticket status")),
        W::PriorityChanged => ((&priority, "a priority"), (&priority, "a priority")),
        W::Assigned => ((&none, ""), (&agent, "an agent id")),
        W::SlaWarning | W::SlaBreached => ((&none, ""), (&metric, "an SLA metric")),
        // Tags are any text; the other events ignore both values.
        _ => ((&any, ""), (&any, "")),
    };
    for (field, value, (allowed, what)) in [
        ("workflow.trigger.event.from", from, from_rule),
        ("workflow.trigger.event.to", to, to_rule),
    ] {
        if value.trim().is_empty() || allowed(value) {
            continue;
        }
        if what.is_empty() {
            v.add(field, format!("must be empty for {event}"));
        } else {
            v.add(field, format!("must be empty or {what} for {event}"));
        }
    }
}

/// The value change an event records for `field`, if it changed that field.
fn change<'a>(event: &'a NewEvent, field: &str) -> Option<(&'a str, &'a str)> {
    match &event.payload {
        EventPayload::FieldsChanged { changes } => changes
            .iter()
            .find(|c| c.field == field)
            .map(|c| (c.old.as_str(), c.new.as_str())),
        _ => None,
    }
}

/// Whether a reply came from a person: automatic replies (workflows, auto-responses) do
/// not count as an agent's answer.
pub fn is_human_reply(event: &NewEvent) -> bool {
    event.kind == EventKind::ReplyAdded
        && !matches!(event.actor.kind, ActorKind::Workflow | ActorKind::System)
}

/// Whether `event` fires an event trigger for `wanted` with `from`/`to`.
pub fn triggered_by(wanted: WorkflowEvent, from: &str, to: &str, event: &NewEvent) -> bool {
    use WorkflowEvent as W;
    match wanted {
        W::TicketCreated => event.kind == EventKind::TicketCreated,
        W::StatusChanged => {
            event.kind == EventKind::StatusChanged
                && change(event, "status").is_some_and(|(o, n)| names(from, o) && names(to, n))
        }
        W::PriorityChanged => {
            event.kind == EventKind::TicketUpdated
                && change(event, "priority").is_some_and(|(o, n)| names(from, o) && names(to, n))
        }
        W::Assigned => {
            let assignee = event.ticket.assignee_id.map(|a| a.to_string());
            event.kind == EventKind::Assigned
                && assignee.is_some()
                && names(to, assignee.as_deref().unwrap_or_default())
                && from.trim().is_empty()
        }
        W::TagsChanged => {
            event.kind == EventKind::TicketUpdated
                && change(event, "tags").is_some_and(|(old, new)| {
                    let old: Vec<&str> = old.split(',').filter(|t| !t.is_empty()).collect();
                    let new: Vec<&str> = new.split(',').filter(|t| !t.is_empty()).collect();
                    let added = |t: &str| new.contains(&t) && !old.contains(&t);
                    let removed = |t: &str| old.contains(&t) && !new.contains(&t);
                    let (from, to) = (from.trim().to_lowercase(), to.trim().to_lowercase());
                    (to.is_empty() || added(&to)) && (from.is_empty() || removed(&from))
                })
        }
        W::CustomerMessage => event.kind == EventKind::CustomerMessage,
        W::AgentReply => is_human_reply(event),
        W::NoteAdded => event.kind == EventKind::NoteAdded,
        W::SlaWarning | W::SlaBreached => {
            let kind = if wanted == W::SlaWarning {
                EventKind::SlaWarning
            } else {
                EventKind::SlaBreached
            };
            event.kind == kind
                && match &event.payload {
                    EventPayload::Sla { metric, .. } => names(to, metric),
                    _ => false,
                }
        }
        W::ConversationEscalated => event.kind == EventKind::ConversationEscalated,
    }
}

/// Whether a workflow's trigger fires on `event`.
pub fn fires_on(workflow: &Workflow, event: &NewEvent) -> bool {
    match &workflow.trigger {
        Trigger::Event {
            event: wanted,
            from,
            to,
        } => triggered_by(*wanted, from, to, event),
        Trigger::Timer { .. } => false,
    }
}

/// When a timer started at `from` falls due: `after_seconds` later, in business time on
/// `calendar` when given. `None` when the calendar never opens.
pub fn due_at(
    from: DateTime<Utc>,
    after_seconds: i64,
    calendar: Option<&BusinessCalendar>,
) -> Option<DateTime<Utc>> {
    match calendar {
        Some(calendar) => calendar.add(from, after_seconds),
        None => from.checked_add_signed(chrono::TimeDelta::try_seconds(after_seconds)?),
    }
}

/// What `event` does to a workflow timer of `kind` on its ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerMove {
    /// Start (or restart) counting from this moment.
    Arm(DateTime<Utc>),
    Cancel,
}

/// How an event moves a timer of `kind` (watching `status` for IN_STATUS).
pub fn timer_move(kind: TimerKind, status: Option<Status>, event: &NewEvent) -> Option<TimerMove> {
    if matches!(event.ticket.status, Status::Closed | Status::Merged) {
        return Some(TimerMove::Cancel);
    }
    match kind {
        TimerKind::SinceCreated => {
            (event.kind == EventKind::TicketCreated).then_some(TimerMove::Arm(event.created_at))
        }
        TimerKind::NoAgentReply => match event.kind {
            EventKind::TicketCreated | EventKind::CustomerMessage => {
                Some(TimerMove::Arm(event.created_at))
            }
            _ if is_human_reply(event) => Some(TimerMove::Cancel),
            _ => None,
        },
        TimerKind::InStatus => {
            let entered =
                event.kind == EventKind::TicketCreated || change(event, "status").is_some();
            if !entered {
                return None;
            }
            if Some(event.ticket.status) == status {
                Some(TimerMove::Arm(event.created_at))
            } else {
                Some(TimerMove::Cancel)
            }
        }
    }
}

#[cfg(test)]
mod tests;
