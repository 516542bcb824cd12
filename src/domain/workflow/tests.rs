use std::collections::BTreeMap;

use chrono::TimeZone;

use super::*;
use crate::domain::event::{Actor, FieldChange, Visibility};
use crate::domain::filter::{snapshot_passes, ticket_passes};
use crate::domain::ticket::{Contact, Ticket, TicketType};

fn at(hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, hour, 0, 0).unwrap()
}

fn ticket() -> Ticket {
    Ticket {
        id: Uuid::from_u128(1),
        number: 1042,
        subject: "Printer on fire".into(),
        description: String::new(),
        status: Status::Open,
        priority: Priority::High,
        ticket_type: TicketType::Bug,
        tags: vec!["vip".into()],
        custom_fields: BTreeMap::new(),
        contact: Contact {
            id: Uuid::from_u128(2),
            external_id: "c-1".into(),
            name: String::new(),
            email: String::new(),
            phone: String::new(),
            vip: false,
        },
        assignee_id: None,
        queue_id: None,
        merged_into_id: None,
        channel: None,
        follow_up_of_id: None,
        conversation: None,
        tier: 1,
        required_skills: Vec::new(),
        vip_handlers_only: false,
        sla_clocks: Vec::new(),
        satisfaction: None,
        resolved_at: None,
        first_response_at: None,
        version: 3,
        time_spent_seconds: 0,
        created_at: at(9),
        updated_at: at(9),
    }
}

fn event(kind: EventKind, payload: EventPayload, actor: ActorKind) -> NewEvent {
    let mut e = NewEvent::about(
        &ticket(),
        kind,
        Actor {
            kind: actor,
            id: None,
            name: "x".into(),
        },
        Visibility::Internal,
        payload,
        at(10),
    );
    e.depth = 0;
    e
}

fn changed(kind: EventKind, field: &str, old: &str, new: &str) -> NewEvent {
    event(
        kind,
        EventPayload::FieldsChanged {
            changes: vec![FieldChange {
                field: field.into(),
                old: old.into(),
                new: new.into(),
            }],
        },
        ActorKind::Agent,
    )
}

fn reply(actor: ActorKind) -> NewEvent {
    event(
        EventKind::ReplyAdded,
        EventPayload::Reply {
            body: "hi".into(),
            channel: "EMAIL".into(),
            attachments: Vec::new(),
            message_id: None,
        },
        actor,
    )
}

#[test]
fn a_change_trigger_names_its_values_in_any_spelling() {
    let e = changed(EventKind::TicketUpdated, "priority", "HIGH", "URGENT");
    assert!(triggered_by(
        WorkflowEvent::PriorityChanged,
        "",
        "URGENT",
        &e
    ));
    assert!(triggered_by(
        WorkflowEvent::PriorityChanged,
        "",
        "priority_urgent",
        &e
    ));
    assert!(triggered_by(WorkflowEvent::PriorityChanged, "high", "", &e));
    assert!(!triggered_by(WorkflowEvent::PriorityChanged, "", "LOW", &e));
    assert!(!triggered_by(WorkflowEvent::StatusChanged, "", "", &e));
}

#[test]
fn tags_changed_matches_a_tag_added_or_removed() {
    let e = changed(EventKind::TicketUpdated, "tags", "a,b", "b,c");
    assert!(triggered_by(WorkflowEvent::TagsChanged, "", "c", &e));
    assert!(triggered_by(WorkflowEvent::TagsChanged, "a", "", &e));
    assert!(!triggered_by(WorkflowEvent::TagsChanged, "", "b", &e));
}

#[test]
fn only_a_persons_reply_is_an_agent_reply() {
    assert!(triggered_by(
        WorkflowEvent::AgentReply,
        "",
        "",
        &reply(ActorKind::Agent)
    ));
    assert!(!triggered_by(
        WorkflowEvent::AgentReply,
        "",
        "",
        &reply(ActorKind::Workflow)
    ));
    assert!(!triggered_by(
        WorkflowEvent::AgentReply,
        "",
        "",
        &reply(ActorKind::System)
    ));
}

#[test]
fn no_agent_reply_timers_arm_on_customer_messages_and_stop_at_a_human_reply() {
    let message = event(
        EventKind::CustomerMessage,
        EventPayload::Note {
            body: String::new(),
        },
        ActorKind::Customer,
    );
    assert_eq!(
        timer_move(TimerKind::NoAgentReply, None, &message),
        Some(TimerMove::Arm(at(10)))
    );
    assert_eq!(
        timer_move(TimerKind::NoAgentReply, None, &reply(ActorKind::Agent)),
        Some(TimerMove::Cancel)
    );
    assert_eq!(
        timer_move(TimerKind::NoAgentReply, None, &reply(ActorKind::Workflow)),
        None
    );
}

#[test]
fn in_status_timers_follow_the_status() {
    let mut waiting = changed(EventKind::StatusChanged, "status", "OPEN", "WAITING");
    waiting.ticket.status = Status::Waiting;
    let kind = TimerKind::InStatus;
    assert_eq!(
        timer_move(kind, Some(Status::Waiting), &waiting),
        Some(TimerMove::Arm(at(10)))
    );
    let mut open = changed(EventKind::StatusChanged, "status", "WAITING", "OPEN");
    open.ticket.status = Status::Open;
    assert_eq!(
        timer_move(kind, Some(Status::Waiting), &open),
        Some(TimerMove::Cancel)
    );
    let note = event(
        EventKind::NoteAdded,
        EventPayload::Note {
            body: String::new(),
        },
        ActorKind::Agent,
    );
    assert_eq!(timer_move(kind, Some(Status::Waiting), &note), None);
}

#[test]
fn a_closed_ticket_loses_its_timers() {
    let mut closed = changed(EventKind::StatusChanged, "status", "OPEN", "CLOSED");
    closed.ticket.status = Status::Closed;
    assert_eq!(
        timer_move(TimerKind::SinceCreated, None, &closed),
        Some(TimerMove::Cancel)
    );
}

#[test]
fn conditions_read_the_ticket_as_list_tickets_would() {
    let t = ticket();
    let passes = |text: &str| {
        let filter = TicketFilter::parse_text(text).unwrap().unwrap();
        ticket_passes(&filter, &t, at(12))
    };
    assert!(passes("priority >= HIGH AND tag = \"vip\""));
    assert!(passes("status = OPEN AND NOT tag = \"spam\""));
    assert!(passes("assignee_id = \"\""));
    assert!(!passes("priority = URGENT OR type = QUESTION"));
    assert!(passes("created_at < \"2026-03-02T10:00:00Z\""));
    assert!(!passes("sla_breached = true"));
}

#[test]
fn business_time_timers_count_only_open_hours() {
    let calendar = BusinessCalendar::always(Uuid::nil(), "24/7");
    assert_eq!(due_at(at(9), 3600, Some(&calendar)), Some(at(10)));
    assert_eq!(due_at(at(9), 7200, None), Some(at(11)));
}

#[test]
fn a_workflow_is_checked_whole() {
    let mut v = Violations::new();
    let actions = check(
        "",
        Some(&Trigger::Timer {
            timer: TimerKind::InStatus,
            after_seconds: 0,
            calendar_id: None,
            status: None,
        }),
        "assignee_id = \"me\"",
        &[
            Action::SetStatus {
                status: Status::Merged,
            },
            Action::AddTags {
                tags: vec![" Follow-Up ".into()],
            },
            Action::Notify {
                agent_ids: Vec::new(),
                queue_id: None,
                assignee: false,
            },
        ],
        &mut v,
    );
    let fields: Vec<String> = v
        .finish()
        .unwrap_err()
        .into_iter()
        .map(|f| f.field)
        .collect();
    for field in [
        "workflow.name",
        "workflow.trigger.timer.after",
        "workflow.trigger.timer.status",
        "workflow.condition",
        "workflow.actions[0].set_status.status",
        "workflow.actions[2].notify",
    ] {
        assert!(
            fields.iter().any(|f| f == field),
            "{field} missing from {fields:?}"
        );
    }
    assert_eq!(
        actions[1],
        Action::AddTags {
            tags: vec!["follow-up".into()]
        }
    );
}

#[test]
fn conditions_on_what_an_event_carries_are_read_off_the_event() {
    let mut e = changed(EventKind::TicketUpdated, "priority", "HIGH", "URGENT");
    e.ticket.priority = Priority::Urgent;
    let on_event = |text: &str| {
        let filter = TicketFilter::parse_text(text).unwrap().unwrap();
        snapshot_passes(&filter, &e)
    };
    assert_eq!(on_event("priority = URGENT AND tag = \"vip\""), Some(true));
    assert_eq!(on_event("NOT status = OPEN OR number = 7"), Some(false));
    assert_eq!(
        on_event("priority = URGENT AND created_at > \"2026-01-01T00:00:00Z\""),
        None
    );
    assert_eq!(on_event("sla_breached = true"), None);
}

#[test]
fn has_reply_is_refused_in_conditions() {
    let mut v = Violations::new();
    check(
        "x",
        Some(&Trigger::Event {
            event: WorkflowEvent::TicketCreated,
            from: String::new(),
            to: String::new(),
        }),
        "has_reply = false",
        &[Action::AddTags {
            tags: vec!["a".into()],
        }],
        &mut v,
    );
    let fields: Vec<String> = v
        .finish()
        .unwrap_err()
        .into_iter()
        .map(|f| f.field)
        .collect();
    assert_eq!(fields, vec!["workflow.condition".to_string()]);
}

#[test]
fn trigger_values_must_be_ones_the_event_can_carry() {
    let refused = |event: WorkflowEvent, from: &str, to: &str| {
        let mut v = Violations::new();
        check_change_values(event, from, to, &mut v);
        v.finish()
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|f| f.field)
            .collect::<Vec<_>>()
    };
    let none: Vec<String> = Vec::new();
    let to = vec!["workflow.trigger.event.to".to_string()];
    let from = vec!["workflow.trigger.event.from".to_string()];
    use WorkflowEvent as W;
    assert_eq!(
        refused(W::StatusChanged, "open", "TICKET_STATUS_RESOLVED"),
        none
    );
    assert_eq!(refused(W::StatusChanged, "", "BOGUS"), to);
    assert_eq!(refused(W::PriorityChanged, "PRIORITY_LOW", "urgent"), none);
    assert_eq!(refused(W::PriorityChanged, "OPEN", ""), from);
    let agent = Uuid::from_u128(7).to_string();
    assert_eq!(refused(W::Assigned, "", &agent), none);
    assert_eq!(
        refused(W::Assigned, &agent, "ann"),
        [from.clone(), to.clone()].concat()
    );
    assert_eq!(refused(W::TagsChanged, "vip", "billing"), none);
    assert_eq!(refused(W::SlaBreached, "", "METRIC_FIRST_RESPONSE"), none);
    assert_eq!(refused(W::SlaWarning, "", "resolution_time"), to);
    assert_eq!(
        refused(W::Assigned, "", &Uuid::from_u128(7).simple().to_string()),
        to,
        "assignees are compared hyphenated"
    );
    assert_eq!(refused(W::NoteAdded, "", "ignored"), none);
    assert_eq!(refused(W::TicketCreated, "  ", ""), none);
}
