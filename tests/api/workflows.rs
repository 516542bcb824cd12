//! AutomationService workflows: event and timer triggers, conditions, actions run after the
//! triggering commit with the workflow as actor, loop safety, dry runs, and the seed
//! examples of the product page.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use ticketd::grpc::pb;
use tokio_stream::StreamExt;
use tonic::Code;
use tonic::codec::Streaming;

use crate::bridge::{escalate, escalation};
use crate::harness::{
    Backend, TestApp, TestDatabase, create, feed, get_ticket, manual_clock, new_ticket,
    settings_for, spawn_app, spawn_app_with, spawn_app_with_manual_clock, start_replica_with_clock,
    violated_fields,
};
use crate::routing::{AgentSpec, agent, queue};
use crate::watch::{next_event, watch};

use pb::workflow_action::Action as A;

fn on_event(name: &str, event: pb::WorkflowEvent, to: &str, actions: Vec<A>) -> pb::Workflow {
    pb::Workflow {
        name: name.into(),
        enabled: true,
        trigger: Some(pb::WorkflowTrigger {
            kind: Some(pb::workflow_trigger::Kind::Event(pb::EventTrigger {
                r#type: event as i32,
                from: String::new(),
                to: to.into(),
            })),
        }),
        actions: actions
            .into_iter()
            .map(|a| pb::WorkflowAction { action: Some(a) })
            .collect(),
        ..Default::default()
    }
}

fn tags(action: fn(pb::TagsAction) -> A, tags: &[&str]) -> A {
    action(pb::TagsAction {
        tags: tags.iter().map(|t| t.to_string()).collect(),
    })
}

async fn save(app: &TestApp, w: pb::Workflow) -> Result<pb::Workflow, tonic::Status> {
    app.automation()
        .create_workflow(pb::CreateWorkflowRequest { workflow: Some(w) })
        .await
        .map(|r| r.into_inner().workflow.unwrap())
}

/// The next `workflow_applied` entry on the stream, within `within`.
async fn next_run(
    stream: &mut Streaming<pb::WatchTicketsResponse>,
    within: Duration,
) -> Option<pb::WorkflowApplied> {
    let entry = next_event(stream, within).await?;
    match entry.detail {
        Some(pb::activity_entry::Detail::WorkflowApplied(run)) => Some(run),
        other => panic!("expected a workflow run, got {other:?}"),
    }
}

fn kinds(entries: &[pb::ActivityEntry]) -> Vec<pb::EventType> {
    entries.iter().map(|e| e.r#type()).collect()
}

pub async fn a_new_ticket_notifies_the_team(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut admin = app.admin();
    let team = queue(&mut admin, "Support", 1, pb::AssignmentStrategy::Manual).await;
    let mut members = Vec::new();
    for name in ["Ann", "Bob"] {
        let a = agent(
            &mut admin,
            AgentSpec {
                name,
                queues: vec![&team.id],
                ..AgentSpec::default()
            },
        )
        .await;
        members.push(a.id);
    }
    let workflow = save(
        &app,
        on_event(
            "Tell the team",
            pb::WorkflowEvent::TicketCreated,
            "",
            vec![A::Notify(pb::NotifyAction {
                queue_id: team.id.clone(),
                ..Default::default()
            })],
        ),
    )
    .await
    .unwrap();
    let mut tickets = app.tickets();
    let mut notices = watch(&mut tickets, &format!("recipient = \"{}\"", members[1]), 0).await;
    let ticket = create(&mut tickets, new_ticket("Printer on fire")).await;

    let notice = next_event(&mut notices, Duration::from_secs(10))
        .await
        .expect("the team hears of the new ticket");
    assert_eq!(notice.ticket_id, ticket.id);
    let actor = notice.actor.clone().unwrap();
    assert_eq!(actor.kind(), pb::ActorKind::Workflow);
    assert_eq!(actor.id, workflow.id);
    let Some(pb::activity_entry::Detail::Notification(n)) = notice.detail else {
        panic!("not a notification");
    };
    assert_eq!(n.reason, "workflow");
    let mut recipients = n.recipient_ids.clone();
    recipients.sort();
    members.sort();
    assert_eq!(recipients, members);

    let entries = feed(&mut tickets, &ticket.id).await;
    let run = entries
        .iter()
        .find_map(|e| match &e.detail {
            Some(pb::activity_entry::Detail::WorkflowApplied(run)) => Some(run.clone()),
            _ => None,
        })
        .expect("the run is in the feed");
    assert_eq!(run.workflow_id, workflow.id);
    assert_eq!(run.actions, vec!["notified 2 agent(s)".to_string()]);
    assert!(run.stopped.is_empty());
}

pub async fn priority_changed_to_urgent_escalates_a_tier(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut admin = app.admin();
    let first = queue(&mut admin, "Tier 1", 1, pb::AssignmentStrategy::Manual).await;
    let second = queue(&mut admin, "Tier 2", 2, pb::AssignmentStrategy::Manual).await;
    save(
        &app,
        on_event(
            "Urgent goes up",
            pb::WorkflowEvent::PriorityChanged,
            "URGENT",
            vec![A::EscalateTier(pb::EscalateTierAction {
                reason: "urgent".into(),
            })],
        ),
    )
    .await
    .unwrap();
    let mut tickets = app.tickets();
    let mut runs = watch(&mut tickets, "event_type = workflow_applied", 0).await;
    let ticket = create(
        &mut tickets,
        pb::CreateTicketRequest {
            queue_id: first.id.clone(),
            ..new_ticket("Checkout down")
        },
    )
    .await;
    let set_priority = |priority: pb::Priority| pb::UpdateTicketRequest {
        ticket: Some(pb::Ticket {
            id: ticket.id.clone(),
            priority: priority as i32,
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["priority".into()],
        }),
        ..Default::default()
    };
    tickets
        .update_ticket(set_priority(pb::Priority::High))
        .await
        .unwrap();
    tickets
        .update_ticket(set_priority(pb::Priority::Urgent))
        .await
        .unwrap();

    let run = next_run(&mut runs, Duration::from_secs(10))
        .await
        .expect("the workflow runs on URGENT");
    assert_eq!(
        run.actions,
        vec!["escalated to tier 2 (queue Tier 2)".to_string()]
    );
    let after = get_ticket(&mut tickets, &ticket.id).await;
    assert_eq!(after.tier, 2);
    assert_eq!(after.queue_id, second.id);
    let entries = feed(&mut tickets, &ticket.id).await;
    let escalated = entries
        .iter()
        .find(|e| e.r#type() == pb::EventType::TierEscalated)
        .expect("the escalation is in the feed");
    assert_eq!(
        escalated.actor.as_ref().unwrap().kind(),
        pb::ActorKind::Workflow
    );
    assert!(
        next_run(&mut runs, Duration::from_millis(500))
            .await
            .is_none(),
        "HIGH did not fire it, and it fired once"
    );
}

/// Monday 7 December 2026 at `hour`:`minute` UTC.
fn monday(hour: u32, minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 7, hour, minute, 0).unwrap()
}

pub async fn no_agent_reply_within_24_business_hours_follows_up(backend: Backend) {
    let app = spawn_app_with_manual_clock(backend).await;
    app.clock.set(monday(8, 0));
    let calendar_id = app.office_calendar().await;
    let note = app
        .template(
            "Follow-up note",
            pb::Channel::Chat,
            "No reply to #{{ ticket.number }} yet",
        )
        .await;
    let message = app
        .template(
            "Still on it",
            pb::Channel::Chat,
            "Hi {{ contact.name }}, we have not forgotten you.",
        )
        .await;
    let workflow = pb::Workflow {
        name: "Follow up".into(),
        enabled: true,
        trigger: Some(pb::WorkflowTrigger {
            kind: Some(pb::workflow_trigger::Kind::Timer(pb::TimerTrigger {
                kind: pb::WorkflowTimerKind::NoAgentReply as i32,
                after: Some(prost_types::Duration {
                    seconds: 24 * 3600,
                    nanos: 0,
                }),
                calendar_id: calendar_id.clone(),
                ..Default::default()
            })),
        }),
        condition: "status != RESOLVED".into(),
        actions: [
            A::AddNote(pb::AddNoteAction { template_id: note }),
            tags(A::AddTags, &["follow-up"]),
            A::SendMessage(pb::SendMessageAction {
                template_id: message,
                channel: 0,
            }),
        ]
        .into_iter()
        .map(|a| pb::WorkflowAction { action: Some(a) })
        .collect(),
        ..Default::default()
    };
    save(&app, workflow).await.unwrap();
    let mut bot = app.escalation();
    let (waiting, _) = escalate(&mut bot, escalation("conv-wait", 1)).await;
    let (answered, _) = escalate(&mut bot, escalation("conv-answered", 1)).await;
    let mut tickets = app.tickets();
    tickets
        .add_reply(pb::AddReplyRequest {
            ticket_id: answered.id.clone(),
            body: "On it".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut runs = watch(&mut tickets, "event_type = workflow_applied", 0).await;

    // Business hours from 09:00: Monday, Tuesday and Wednesday make 24 at 17:00.
    app.clock
        .set(Utc.with_ymd_and_hms(2026, 12, 9, 16, 59, 0).unwrap());
    assert!(
        next_run(&mut runs, Duration::from_secs(1)).await.is_none(),
        "not due before 24 business hours"
    );
    app.clock
        .set(Utc.with_ymd_and_hms(2026, 12, 9, 17, 0, 0).unwrap());
    let run = next_run(&mut runs, Duration::from_secs(10))
        .await
        .expect("due after 24 business hours");
    assert_eq!(
        run.actions,
        vec![
            "added a note from template \"Follow-up note\"".to_string(),
            "added tags follow-up".to_string(),
            "queued a CHAT message from template \"Still on it\"".to_string(),
        ]
    );
    assert!(
        next_run(&mut runs, Duration::from_millis(500))
            .await
            .is_none(),
        "the answered ticket's timer was cancelled by the reply"
    );

    let after = get_ticket(&mut tickets, &waiting.id).await;
    assert!(after.tags.contains(&"follow-up".to_string()));
    let first_response = after
        .sla_clocks
        .iter()
        .find(|c| c.metric() == pb::SlaMetric::FirstResponse)
        .unwrap();
    assert_ne!(
        first_response.state(),
        pb::SlaClockState::Met,
        "an automatic message is no first response"
    );
    let entries = feed(&mut tickets, &waiting.id).await;
    let types = kinds(&entries);
    for kind in [
        pb::EventType::NoteAdded,
        pb::EventType::TicketUpdated,
        pb::EventType::ReplyAdded,
    ] {
        assert!(types.contains(&kind), "{kind:?} missing from {types:?}");
    }
    let mut gateway = app
        .escalation()
        .subscribe_channel(pb::SubscribeChannelRequest {
            channel: pb::Channel::Chat as i32,
            consumer_group: "chat-gw".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut seen = Vec::new();
    while let Ok(Some(Ok(delivery))) =
        tokio::time::timeout(Duration::from_secs(2), gateway.next()).await
    {
        seen.push(delivery.message.unwrap());
        if seen.len() == 2 {
            break;
        }
    }
    let automatic = seen
        .iter()
        .find(|m| m.ticket_id == waiting.id)
        .expect("the follow-up reaches the chat gateway");
    assert_eq!(automatic.kind(), pb::OutboundKind::AutoResponse);
    assert_eq!(
        automatic.body,
        "Hi Ada Lovelace, we have not forgotten you."
    );
    assert_eq!(automatic.conversation_id, "conv-wait");
}

pub async fn workflows_that_trigger_each_other_stop_at_depth_three(backend: Backend) {
    let app = spawn_app(backend).await;
    save(
        &app,
        on_event(
            "x to y",
            pb::WorkflowEvent::TagsChanged,
            "x",
            vec![tags(A::RemoveTags, &["x"]), tags(A::AddTags, &["y"])],
        ),
    )
    .await
    .unwrap();
    save(
        &app,
        on_event(
            "y to x",
            pb::WorkflowEvent::TagsChanged,
            "y",
            vec![tags(A::RemoveTags, &["y"]), tags(A::AddTags, &["x"])],
        ),
    )
    .await
    .unwrap();
    let mut tickets = app.tickets();
    let mut runs = watch(&mut tickets, "event_type = workflow_applied", 0).await;
    let ticket = create(&mut tickets, new_ticket("Ping pong")).await;
    tickets
        .update_ticket(pb::UpdateTicketRequest {
            ticket: Some(pb::Ticket {
                id: ticket.id.clone(),
                tags: vec!["x".into()],
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["tags".into()],
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut names = Vec::new();
    for _ in 0..4 {
        let run = next_run(&mut runs, Duration::from_secs(10))
            .await
            .expect("the chain runs until it is stopped");
        names.push((run.workflow_name, run.stopped.is_empty()));
    }
    assert_eq!(
        names,
        vec![
            ("x to y".to_string(), true),
            ("y to x".to_string(), true),
            ("x to y".to_string(), true),
            ("y to x".to_string(), false),
        ]
    );
    assert!(
        next_run(&mut runs, Duration::from_millis(500))
            .await
            .is_none()
    );
    assert_eq!(
        get_ticket(&mut tickets, &ticket.id).await.tags,
        vec!["y".to_string()]
    );
}

pub async fn runs_past_the_hourly_cap_of_a_ticket_are_stopped_and_recorded(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.workflow_runs_per_ticket_hour = 2).await;
    save(
        &app,
        on_event(
            "Noted",
            pb::WorkflowEvent::NoteAdded,
            "",
            vec![tags(A::AddTags, &["noted"])],
        ),
    )
    .await
    .unwrap();
    let mut tickets = app.tickets();
    let ticket = create(&mut tickets, new_ticket("Chatty")).await;
    let mut runs = watch(&mut tickets, "event_type = workflow_applied", 0).await;
    let mut stopped = Vec::new();
    for i in 0..3 {
        tickets
            .add_note(pb::AddNoteRequest {
                ticket_id: ticket.id.clone(),
                body: format!("note {i}"),
                request_id: String::new(),
            })
            .await
            .unwrap();
        let run = next_run(&mut runs, Duration::from_secs(10))
            .await
            .expect("each note fires the workflow");
        stopped.push(run.stopped);
    }
    assert!(
        stopped[0].is_empty() && stopped[1].is_empty(),
        "{stopped:?}"
    );
    assert!(
        stopped[2].contains("had 2 workflow runs in the last hour"),
        "{stopped:?}"
    );
}

pub async fn a_dry_run_tells_what_would_happen_and_changes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut tickets = app.tickets();
    let ticket = create(
        &mut tickets,
        pb::CreateTicketRequest {
            priority: pb::Priority::High as i32,
            ..new_ticket("Refund please")
        },
    )
    .await;
    let mut draft = on_event(
        "Hot",
        pb::WorkflowEvent::TicketCreated,
        "",
        vec![
            A::SetPriority(pb::SetPriorityAction {
                priority: pb::Priority::Urgent as i32,
            }),
            tags(A::AddTags, &["hot"]),
            A::SetStatus(pb::SetStatusAction {
                status: pb::TicketStatus::InProgress as i32,
            }),
        ],
    );
    draft.condition = "priority >= HIGH".into();
    let trial = app
        .automation()
        .test_workflow(pb::TestWorkflowRequest {
            source: Some(pb::test_workflow_request::Source::Workflow(draft.clone())),
            ticket_id: ticket.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(trial.matched);
    assert_eq!(
        trial.actions,
        vec![
            "priority HIGH → URGENT".to_string(),
            "added tags hot".to_string(),
            "status OPEN → IN_PROGRESS".to_string(),
        ]
    );
    draft.condition = "priority = LOW".into();
    let saved = save(&app, draft).await.unwrap();
    let trial = app
        .automation()
        .test_workflow(pb::TestWorkflowRequest {
            source: Some(pb::test_workflow_request::Source::WorkflowId(saved.id)),
            ticket_id: ticket.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!trial.matched);
    assert!(trial.actions.is_empty());
    assert!(
        trial.reason.contains("does not pass the condition"),
        "{}",
        trial.reason
    );
    let after = get_ticket(&mut tickets, &ticket.id).await;
    assert_eq!(after.etag, ticket.etag, "a dry run changes nothing");
    assert_eq!(after.priority(), pb::Priority::High);
}

pub async fn workflows_are_checked_and_administered(backend: Backend) {
    let app = spawn_app(backend).await;
    let missing = uuid::Uuid::now_v7().to_string();
    let unspecified = on_event("Nothing", pb::WorkflowEvent::Unspecified, "", Vec::new());
    assert_eq!(
        violated_fields(&save(&app, unspecified).await.unwrap_err()),
        vec!["workflow.trigger.event.type".to_string()]
    );
    // A value the event never carries would make a workflow that never runs.
    let never = on_event(
        "Never",
        pb::WorkflowEvent::StatusChanged,
        "BOGUS",
        vec![tags(A::AddTags, &["never"])],
    );
    assert_eq!(
        violated_fields(&save(&app, never).await.unwrap_err()),
        vec!["workflow.trigger.event.to".to_string()]
    );
    // An event that carries no value ignores one.
    let ignores = save(
        &app,
        on_event(
            "Ignores its value",
            pb::WorkflowEvent::NoteAdded,
            "anything",
            vec![tags(A::AddTags, &["noted"])],
        ),
    )
    .await
    .unwrap();
    app.automation()
        .delete_workflow(pb::DeleteWorkflowRequest { id: ignores.id })
        .await
        .unwrap();
    let mut bad = on_event(
        "",
        pb::WorkflowEvent::TicketCreated,
        "",
        vec![A::SetStatus(pb::SetStatusAction {
            status: pb::TicketStatus::Merged as i32,
        })],
    );
    bad.condition = "assignee_id = \"me\"".into();
    let err = save(&app, bad).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&err),
        vec![
            "workflow.name".to_string(),
            "workflow.condition".to_string(),
            "workflow.actions[0].set_status.status".to_string(),
        ]
    );
    let mut unknown_template = on_event(
        "Note it",
        pb::WorkflowEvent::NoteAdded,
        "",
        vec![A::AddNote(pb::AddNoteAction {
            template_id: missing,
        })],
    );
    unknown_template.condition = "priority >> HIGH".into();
    let err = save(&app, unknown_template.clone()).await.unwrap_err();
    assert_eq!(
        violated_fields(&err),
        vec!["workflow.condition".to_string()]
    );
    unknown_template.condition = String::new();
    let err = save(&app, unknown_template).await.unwrap_err();
    assert_eq!(
        violated_fields(&err),
        vec!["workflow.actions[0].add_note.template_id".to_string()]
    );
    let no_actions = on_event("Empty", pb::WorkflowEvent::TicketCreated, "", Vec::new());
    assert_eq!(
        violated_fields(&save(&app, no_actions).await.unwrap_err()),
        vec!["workflow.actions".to_string()]
    );

    let saved = save(
        &app,
        on_event(
            "Tag new",
            pb::WorkflowEvent::TicketCreated,
            "",
            vec![tags(A::AddTags, &["new"])],
        ),
    )
    .await
    .unwrap();
    let duplicate = save(
        &app,
        on_event(
            "Tag new",
            pb::WorkflowEvent::TicketCreated,
            "",
            vec![tags(A::AddTags, &["n"])],
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(duplicate.code(), Code::AlreadyExists);
    let mut automation = app.automation();
    let disabled = automation
        .update_workflow(pb::UpdateWorkflowRequest {
            workflow: Some(pb::Workflow {
                id: saved.id.clone(),
                enabled: false,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["enabled".into()],
            }),
            etag: saved.etag.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .workflow
        .unwrap();
    assert!(!disabled.enabled);
    assert_eq!(disabled.actions, saved.actions);
    let stale = automation
        .update_workflow(pb::UpdateWorkflowRequest {
            workflow: Some(pb::Workflow {
                id: saved.id.clone(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["enabled".into()],
            }),
            etag: saved.etag.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);
    let listed = automation
        .list_workflows(pb::ListWorkflowsRequest {})
        .await
        .unwrap()
        .into_inner()
        .workflows;
    assert_eq!(listed, vec![disabled.clone()]);

    // A disabled workflow does not run.
    let mut tickets = app.tickets();
    let ticket = create(&mut tickets, new_ticket("Quiet")).await;
    let mut runs = watch(&mut tickets, "event_type = workflow_applied", 0).await;
    assert!(
        next_run(&mut runs, Duration::from_millis(500))
            .await
            .is_none()
    );
    assert!(get_ticket(&mut tickets, &ticket.id).await.tags.is_empty());

    let agent_key = app.key(pb::Role::Agent, None).await;
    let denied = app
        .automation_as(&agent_key)
        .list_workflows(pb::ListWorkflowsRequest {})
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    automation
        .delete_workflow(pb::DeleteWorkflowRequest {
            id: saved.id.clone(),
        })
        .await
        .unwrap();
    let gone = automation
        .get_workflow(pb::GetWorkflowRequest { id: saved.id })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
}

/// A timer armed by a replica killed with `kill -9` fires once its time comes, on one of
/// the two replicas that run then.
pub async fn timers_outlive_their_replica_and_fire_once_across_two(backend: Backend) {
    let database = TestDatabase::create(&backend).await;
    let settings = settings_for(&database);
    let key = settings
        .bootstrap_key
        .as_ref()
        .map(|k| k.expose().to_owned())
        .unwrap();
    // The first replica is the real binary, on the system clock.
    let (mut child, addr) = crate::lifecycle::spawn_binary(&database.url(), &key);
    let workflow = pb::Workflow {
        name: "Waiting too long".into(),
        enabled: true,
        trigger: Some(pb::WorkflowTrigger {
            kind: Some(pb::workflow_trigger::Kind::Timer(pb::TimerTrigger {
                kind: pb::WorkflowTimerKind::InStatus as i32,
                after: Some(prost_types::Duration {
                    seconds: 3 * 24 * 3600,
                    nanos: 0,
                }),
                status: pb::TicketStatus::Waiting as i32,
                ..Default::default()
            })),
        }),
        actions: vec![pb::WorkflowAction {
            action: Some(tags(A::AddTags, &["stale"])),
        }],
        ..Default::default()
    };
    crate::harness::automation_at(&addr, &key)
        .await
        .create_workflow(pb::CreateWorkflowRequest {
            workflow: Some(workflow),
        })
        .await
        .unwrap();
    let mut tickets = crate::harness::tickets_at(&addr, &key).await;
    let ticket = create(&mut tickets, new_ticket("Waiting on the customer")).await;
    crate::harness::set_status(&mut tickets, &ticket.id, pb::TicketStatus::Waiting)
        .await
        .unwrap();
    drop(tickets);
    // The replica dies with the timer armed.
    child.kill().expect("kill -9");
    let _ = child.wait();

    // Two replicas start four days later (their clocks say so).
    let later = Utc::now() + chrono::Duration::days(4);
    let (a_clock, b_clock) = (manual_clock(), manual_clock());
    a_clock.set(later);
    b_clock.set(later);
    let a = start_replica_with_clock(settings.clone(), a_clock).await;
    let b = start_replica_with_clock(settings, b_clock).await;
    let mut runs = watch(&mut a.tickets(), "event_type = workflow_applied", 0).await;
    let run = next_run(&mut runs, Duration::from_secs(10))
        .await
        .expect("the timer fires at start-up");
    assert_eq!(run.actions, vec!["added tags stale".to_string()]);
    assert!(
        next_run(&mut runs, Duration::from_secs(2)).await.is_none(),
        "and only once across the replicas"
    );
    assert_eq!(
        get_ticket(&mut b.tickets(), &ticket.id).await.tags,
        vec!["stale".to_string()]
    );

    // Both replicas follow the log; each new ticket is answered once.
    save(
        &a,
        on_event(
            "Tag new",
            pb::WorkflowEvent::TicketCreated,
            "",
            vec![tags(A::AddTags, &["new"])],
        ),
    )
    .await
    .unwrap();
    let mut created = Vec::new();
    for (i, replica) in [&a, &b, &a, &b].into_iter().enumerate() {
        created.push(
            create(
                &mut replica.tickets(),
                new_ticket(&format!("Two replicas {i}")),
            )
            .await
            .id,
        );
    }
    let mut answered = Vec::new();
    while let Some(entry) = next_event(&mut runs, Duration::from_secs(10)).await {
        answered.push(entry.ticket_id);
        if answered.len() == created.len() {
            break;
        }
    }
    assert!(
        next_event(&mut runs, Duration::from_secs(2))
            .await
            .is_none(),
        "no event answered twice"
    );
    answered.sort();
    created.sort();
    assert_eq!(answered, created);
    drop((a, b));
    drop(database);
}
