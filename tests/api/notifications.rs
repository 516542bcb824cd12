//! Notifications: "assigned to you" and "mentioned" reach the agent's own watch stream.

use std::time::Duration;

use ticketd::grpc::pb;
use tonic::Code;
use uuid::Uuid;

use crate::harness::{Backend, create, new_ticket, spawn_app};
use crate::routing::{AgentSpec, agent, queue};
use crate::watch::{next_event, watch};

fn notification(entry: &pb::ActivityEntry) -> pb::Notification {
    match &entry.detail {
        Some(pb::activity_entry::Detail::Notification(n)) => n.clone(),
        other => panic!("not a notification: {other:?}"),
    }
}

pub async fn agents_hear_of_assignments_and_mentions_on_their_own_stream(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut admin = app.admin();
    let desk = queue(&mut admin, "Desk", 1, pb::AssignmentStrategy::RoundRobin).await;
    let sam = agent(
        &mut admin,
        AgentSpec {
            name: "Sam",
            queues: vec![&desk.id],
            ..AgentSpec::default()
        },
    )
    .await;
    let ana = agent(
        &mut admin,
        AgentSpec {
            name: "Ana",
            ..AgentSpec::default()
        },
    )
    .await;
    let sam_key = app
        .key(pb::Role::Agent, Some(Uuid::parse_str(&sam.id).unwrap()))
        .await;
    let ana_key = app
        .key(pb::Role::Agent, Some(Uuid::parse_str(&ana.id).unwrap()))
        .await;
    let mut sam_tickets = app.tickets_as(&sam_key);
    let mut ana_tickets = app.tickets_as(&ana_key);
    let mut sams = watch(&mut sam_tickets, "recipient = \"me\"", 0).await;
    let mut anas = watch(&mut ana_tickets, "recipient = \"me\"", 0).await;
    let within = Duration::from_secs(10);

    // Routing gives Sam a ticket: he hears of it.
    let mut tickets = app.tickets();
    let routed = create(
        &mut tickets,
        pb::CreateTicketRequest {
            queue_id: desk.id.clone(),
            ..new_ticket("Router on fire")
        },
    )
    .await;
    assert_eq!(routed.assignee_id, sam.id);
    let first = next_event(&mut sams, within)
        .await
        .expect("assigned to Sam");
    assert_eq!(first.r#type(), pb::EventType::Notification);
    let told = notification(&first);
    assert_eq!(told.reason, "assigned");
    assert_eq!(told.recipient_ids, vec![sam.id.clone()]);
    assert!(
        told.text
            .contains(&format!("#{} was assigned to you", routed.number)),
        "{told:?}"
    );

    // An admin hands it to Ana, mentioning Sam in a note: each hears only their own.
    tickets
        .assign_ticket(pb::AssignTicketRequest {
            ticket_id: routed.id.clone(),
            target: Some(pb::assign_ticket_request::Target::AssigneeId(
                ana.id.clone(),
            )),
        })
        .await
        .unwrap();
    tickets
        .add_note(pb::AddNoteRequest {
            ticket_id: routed.id.clone(),
            body: format!("Ana has it now; FYI @{}", sam.email),
            request_id: String::new(),
        })
        .await
        .unwrap();
    let to_ana = notification(
        &next_event(&mut anas, within)
            .await
            .expect("assigned to Ana"),
    );
    assert_eq!(
        (to_ana.reason.as_str(), to_ana.recipient_ids.clone()),
        ("assigned", vec![ana.id.clone()])
    );
    let to_sam = notification(&next_event(&mut sams, within).await.expect("Sam mentioned"));
    assert_eq!(to_sam.reason, "mentioned");
    assert!(to_sam.text.contains("Ana has it now"), "{to_sam:?}");

    // Ana taking a ticket herself, or mentioning herself, tells nobody.
    let own = create(&mut tickets, new_ticket("Ana's own")).await;
    ana_tickets
        .assign_ticket(pb::AssignTicketRequest {
            ticket_id: own.id.clone(),
            target: Some(pb::assign_ticket_request::Target::AssigneeId(
                ana.id.clone(),
            )),
        })
        .await
        .unwrap();
    ana_tickets
        .add_note(pb::AddNoteRequest {
            ticket_id: own.id.clone(),
            body: format!("note to self @{}", ana.email),
            request_id: String::new(),
        })
        .await
        .unwrap();
    assert!(
        next_event(&mut anas, Duration::from_millis(1500))
            .await
            .is_none(),
        "no notification for her own actions"
    );

    // The feed shows notifications to agents; "me" needs a key bound to an agent.
    let feed = crate::harness::feed(&mut tickets, &routed.id).await;
    assert_eq!(
        feed.iter()
            .filter(|e| e.r#type() == pb::EventType::Notification)
            .count(),
        3
    );
    let unbound = app.key(pb::Role::Agent, None).await;
    let refused = app
        .tickets_as(&unbound)
        .watch_tickets(pb::WatchTicketsRequest {
            filter: "recipient = \"me\"".into(),
            after_cursor: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
}
