//! MergeTickets.

use ticketd::grpc::pb;
use tonic::Code;

use crate::harness::{
    Backend, Tickets, create, get_ticket as get, new_ticket, spawn_app, violated_fields,
};

async fn merge(
    tickets: &mut Tickets,
    target: &str,
    sources: &[&str],
) -> Result<pb::MergeTicketsResponse, tonic::Status> {
    tickets
        .merge_tickets(pb::MergeTicketsRequest {
            target_ticket_id: target.into(),
            source_ticket_ids: sources.iter().map(|s| s.to_string()).collect(),
            request_id: String::new(),
        })
        .await
        .map(|r| r.into_inner())
}

pub async fn merged_tickets_point_at_the_target_whose_feed_shows_their_activity(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut tickets = app.tickets();
    let target = create(&mut tickets, new_ticket("VPN down")).await;
    let dup1 = create(&mut tickets, new_ticket("VPN not connecting")).await;
    let dup2 = create(&mut tickets, new_ticket("Cannot reach VPN")).await;
    tickets
        .add_note(pb::AddNoteRequest {
            ticket_id: dup1.id.clone(),
            body: "duplicate's note".into(),
            request_id: String::new(),
        })
        .await
        .unwrap();

    let merged = merge(&mut tickets, &target.id, &[&dup1.id, &dup2.id])
        .await
        .unwrap();
    assert_eq!(merged.target.unwrap().status(), pb::TicketStatus::Open);
    assert_eq!(merged.sources.len(), 2);
    for source in [&dup1, &dup2] {
        let now = get(&mut tickets, &source.id).await;
        assert_eq!(now.status(), pb::TicketStatus::Merged);
        assert_eq!(now.merged_into_id, target.id, "a source says where it went");
    }

    let entries = tickets
        .list_activity(pb::ListActivityRequest {
            ticket_id: target.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert!(entries.iter().any(|e| matches!(&e.detail, Some(pb::activity_entry::Detail::Note(n)) if n.body == "duplicate's note")));
    let created_on: Vec<i64> = entries
        .iter()
        .filter(|e| e.r#type() == pb::EventType::TicketCreated)
        .map(|e| e.ticket_number)
        .collect();
    assert_eq!(created_on, vec![target.number, dup1.number, dup2.number]);
    let merge_entry = entries
        .iter()
        .find(|e| e.r#type() == pb::EventType::TicketsMerged && e.ticket_id == target.id)
        .unwrap();
    let Some(pb::activity_entry::Detail::Merged(detail)) = &merge_entry.detail else {
        panic!("merged detail expected");
    };
    assert_eq!(detail.source_ticket_numbers, vec![dup1.number, dup2.number]);

    let note_on_merged = tickets
        .add_note(pb::AddNoteRequest {
            ticket_id: dup1.id.clone(),
            body: "too late".into(),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(note_on_merged.code(), Code::FailedPrecondition);
}

pub async fn merges_that_would_lose_or_loop_tickets_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut tickets = app.tickets();
    let a = create(&mut tickets, new_ticket("A")).await;
    let b = create(&mut tickets, new_ticket("B")).await;
    let c = create(&mut tickets, new_ticket("C")).await;
    let closed = create(&mut tickets, new_ticket("Closed")).await;
    crate::harness::set_status(&mut tickets, &closed.id, pb::TicketStatus::Closed)
        .await
        .unwrap();

    let into_itself = merge(&mut tickets, &a.id, &[&a.id]).await.unwrap_err();
    assert_eq!(into_itself.code(), Code::FailedPrecondition);

    merge(&mut tickets, &b.id, &[&a.id]).await.unwrap();
    let cycle = merge(&mut tickets, &a.id, &[&b.id]).await.unwrap_err();
    assert_eq!(
        cycle.code(),
        Code::FailedPrecondition,
        "A is merged into B; B cannot go into A"
    );
    let again = merge(&mut tickets, &c.id, &[&a.id]).await.unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);
    assert!(
        again.message().contains("already merged"),
        "{}",
        again.message()
    );

    let into_closed = merge(&mut tickets, &closed.id, &[&c.id]).await.unwrap_err();
    assert_eq!(into_closed.code(), Code::FailedPrecondition);
    let from_closed = merge(&mut tickets, &c.id, &[&closed.id]).await.unwrap_err();
    assert_eq!(from_closed.code(), Code::FailedPrecondition);

    let repeated = merge(&mut tickets, &c.id, &[&b.id, &b.id])
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&repeated), vec!["source_ticket_ids"]);
    let none = merge(&mut tickets, &c.id, &[]).await.unwrap_err();
    assert_eq!(violated_fields(&none), vec!["source_ticket_ids"]);
    let bad_id = merge(&mut tickets, &c.id, &["nope"]).await.unwrap_err();
    assert_eq!(violated_fields(&bad_id), vec!["source_ticket_ids[0]"]);
    let missing = merge(&mut tickets, &c.id, &[&uuid::Uuid::new_v4().to_string()])
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);

    assert_eq!(
        get(&mut tickets, &c.id).await.status(),
        pb::TicketStatus::Open,
        "refused merges change nothing"
    );
    assert_eq!(
        get(&mut tickets, &b.id).await.status(),
        pb::TicketStatus::Open
    );
}

pub async fn merging_a_target_of_earlier_merges_carries_their_activity_along(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut tickets = app.tickets();
    let a = create(&mut tickets, new_ticket("A")).await;
    let b = create(&mut tickets, new_ticket("B")).await;
    let c = create(&mut tickets, new_ticket("C")).await;
    merge(&mut tickets, &b.id, &[&a.id]).await.unwrap();
    merge(&mut tickets, &c.id, &[&b.id]).await.unwrap();

    let numbers: std::collections::BTreeSet<i64> = tickets
        .list_activity(pb::ListActivityRequest {
            ticket_id: c.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries
        .into_iter()
        .map(|e| e.ticket_number)
        .collect();
    assert_eq!(numbers, [a.number, b.number, c.number].into());
}
