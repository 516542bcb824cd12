//! UpdateTicket: field masks, etags, the status transition table.

use ticketd::grpc::pb;
use tonic::Code;
use uuid::Uuid;

use crate::harness::{
    Backend, Tickets, create, feed, new_ticket, set_status, spawn_app, violated_fields,
    without_clock_readings,
};

fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    })
}

async fn update(
    tickets: &mut Tickets,
    ticket: pb::Ticket,
    paths: &[&str],
    etag: &str,
) -> Result<pb::Ticket, tonic::Status> {
    tickets
        .update_ticket(pb::UpdateTicketRequest {
            ticket: Some(ticket),
            update_mask: mask(paths),
            etag: etag.into(),
        })
        .await
        .map(|r| r.into_inner().ticket.expect("ticket"))
}

pub async fn an_update_changes_only_the_masked_fields_and_records_old_and_new(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut tickets = app.tickets();
    let ticket = create(&mut tickets, new_ticket("Printer jams")).await;
    let agent = app.agent("Ada").await.to_string();

    let patch = pb::Ticket {
        id: ticket.id.clone(),
        subject: "Printer jams on tray 2".into(),
        description: "ignored: not in the mask".into(),
        priority: pb::Priority::High as i32,
        tags: vec!["Hardware".into()],
        assignee_id: agent.clone(),
        status: pb::TicketStatus::InProgress as i32,
        ..Default::default()
    };
    let updated = update(
        &mut tickets,
        patch,
        &["subject", "priority", "tags", "assignee_id", "status"],
        &ticket.etag,
    )
    .await
    .unwrap();

    assert_eq!(updated.subject, "Printer jams on tray 2");
    assert_eq!(updated.description, ticket.description);
    assert_eq!(updated.priority(), pb::Priority::High);
    assert_eq!(updated.tags, vec!["hardware"]);
    assert_eq!(updated.assignee_id, agent);
    assert_eq!(updated.status(), pb::TicketStatus::InProgress);
    assert_ne!(updated.etag, ticket.etag);

    let entries = feed(&mut tickets, &ticket.id).await;
    let types: Vec<pb::EventType> = entries.iter().map(|e| e.r#type()).collect();
    assert_eq!(
        types,
        vec![
            pb::EventType::TicketCreated,
            pb::EventType::StatusChanged,
            pb::EventType::Assigned,
            pb::EventType::TicketUpdated,
            pb::EventType::Notification,
        ],
        "the new assignee is told last"
    );
    let Some(pb::activity_entry::Detail::FieldsChanged(changed)) = &entries[3].detail else {
        panic!("fields_changed detail expected: {:?}", entries[3]);
    };
    let priority = changed
        .changes
        .iter()
        .find(|c| c.field == "priority")
        .unwrap();
    assert_eq!(
        (priority.old_value.as_str(), priority.new_value.as_str()),
        ("MEDIUM", "HIGH")
    );
    let Some(pb::activity_entry::Detail::FieldsChanged(status)) = &entries[1].detail else {
        panic!("status change detail expected");
    };
    assert_eq!(status.changes[0].old_value, "OPEN");
    assert_eq!(status.changes[0].new_value, "IN_PROGRESS");
    let actor = entries[1].actor.clone().unwrap();
    assert_eq!(actor.kind(), pb::ActorKind::ApiKey);
}

pub async fn a_stale_etag_is_aborted_and_changes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut tickets = app.tickets();
    let ticket = create(&mut tickets, new_ticket("Two agents")).await;
    let patch = |subject: &str| pb::Ticket {
        id: ticket.id.clone(),
        subject: subject.into(),
        ..Default::default()
    };

    let first = update(
        &mut tickets,
        patch("Agent one's edit"),
        &["subject"],
        &ticket.etag,
    )
    .await
    .unwrap();
    let second = update(
        &mut tickets,
        patch("Agent two's edit"),
        &["subject"],
        &ticket.etag,
    )
    .await
    .unwrap_err();
    assert_eq!(second.code(), Code::Aborted);
    // An etag no version ever had is the caller's mistake, not a race.
    for never in ["0", "-1", "later"] {
        let err = update(
            &mut tickets,
            patch("Agent three's edit"),
            &["subject"],
            never,
        )
        .await
        .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{never}");
        assert_eq!(crate::harness::violated_fields(&err), vec!["etag"]);
    }

    let stored = tickets
        .get_ticket(pb::GetTicketRequest {
            key: Some(pb::get_ticket_request::Key::Id(ticket.id.clone())),
        })
        .await
        .unwrap()
        .into_inner()
        .ticket
        .unwrap();
    assert_eq!(stored.subject, "Agent one's edit");
    assert_eq!(stored.etag, first.etag);

    let malformed = update(&mut tickets, patch("x"), &["subject"], "not-an-etag")
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&malformed), vec!["etag"]);
}

pub async fn concurrent_updates_without_etags_all_apply(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut tickets = app.tickets();
    let ticket = create(&mut tickets, new_ticket("Busy ticket")).await;
    let mut handles = Vec::new();
    for i in 0..4 {
        let mut client = app.tickets();
        let id = ticket.id.clone();
        handles.push(tokio::spawn(async move {
            let key = format!("field{i}");
            let patch = pb::Ticket {
                id: id.clone(),
                description: format!("written by {i}"),
                ..Default::default()
            };
            update(&mut client, patch, &["description"], "")
                .await
                .unwrap();
            client
                .add_note(pb::AddNoteRequest {
                    ticket_id: id,
                    body: key,
                    request_id: String::new(),
                })
                .await
                .unwrap();
        }));
    }
    for handle in handles {
        handle.await.unwrap();
    }
    let notes = feed(&mut tickets, &ticket.id)
        .await
        .into_iter()
        .filter(|e| e.r#type() == pb::EventType::NoteAdded)
        .count();
    assert_eq!(notes, 4);
}

pub async fn the_status_table_is_enforced(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut tickets = app.tickets();
    let ticket = create(&mut tickets, new_ticket("Lifecycle")).await;
    let id = ticket.id.as_str();

    for status in [
        pb::TicketStatus::InProgress,
        pb::TicketStatus::Waiting,
        pb::TicketStatus::Open,
        pb::TicketStatus::Resolved,
    ] {
        let t = set_status(&mut tickets, id, status).await.unwrap();
        assert_eq!(t.status(), status);
    }
    let resolved_to_waiting = set_status(&mut tickets, id, pb::TicketStatus::Waiting)
        .await
        .unwrap_err();
    assert_eq!(resolved_to_waiting.code(), Code::FailedPrecondition);

    let merged = set_status(&mut tickets, id, pb::TicketStatus::Merged)
        .await
        .unwrap_err();
    assert_eq!(merged.code(), Code::FailedPrecondition);
    assert!(merged.message().contains("MergeTickets"));

    set_status(&mut tickets, id, pb::TicketStatus::Closed)
        .await
        .unwrap();
    let reopen = set_status(&mut tickets, id, pb::TicketStatus::Open)
        .await
        .unwrap_err();
    assert_eq!(reopen.code(), Code::FailedPrecondition);
    assert!(reopen.message().contains("CLOSED"), "{}", reopen.message());
}

pub async fn closed_tickets_refuse_changes_and_replies_but_take_notes(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut tickets = app.tickets();
    let ticket = create(&mut tickets, new_ticket("Done")).await;
    set_status(&mut tickets, &ticket.id, pb::TicketStatus::Closed)
        .await
        .unwrap();

    let rename = update(
        &mut tickets,
        pb::Ticket {
            id: ticket.id.clone(),
            subject: "Renamed".into(),
            ..Default::default()
        },
        &["subject"],
        "",
    )
    .await
    .unwrap_err();
    assert_eq!(rename.code(), Code::FailedPrecondition);

    let reply = tickets
        .add_reply(pb::AddReplyRequest {
            ticket_id: ticket.id.clone(),
            body: "Hello?".into(),
            channel: pb::Channel::Chat as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(reply.code(), Code::FailedPrecondition);

    tickets
        .add_note(pb::AddNoteRequest {
            ticket_id: ticket.id.clone(),
            body: "Customer called again; see #2".into(),
            request_id: String::new(),
        })
        .await
        .unwrap();
}

pub async fn update_requests_are_validated_field_by_field(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut tickets = app.tickets();
    let ticket = create(&mut tickets, new_ticket("Validate me")).await;
    let base = || pb::Ticket {
        id: ticket.id.clone(),
        ..Default::default()
    };

    let cases: Vec<(pb::Ticket, Vec<&str>, &str)> = vec![
        (base(), vec![], "update_mask"),
        (base(), vec!["number"], "update_mask"),
        (base(), vec!["status"], "ticket.status"),
        (base(), vec!["subject"], "ticket.subject"),
        (
            pb::Ticket {
                subject: "x".repeat(251),
                ..base()
            },
            vec!["subject"],
            "ticket.subject",
        ),
        (
            pb::Ticket {
                assignee_id: "bob".into(),
                ..base()
            },
            vec!["assignee_id"],
            "ticket.assignee_id",
        ),
        (
            pb::Ticket {
                priority: 42,
                ..base()
            },
            vec!["priority"],
            "ticket.priority",
        ),
        (
            pb::Ticket {
                id: "nope".into(),
                ..base()
            },
            vec!["subject"],
            "ticket.id",
        ),
        (
            pb::Ticket {
                tags: vec!["has space".into()],
                ..base()
            },
            vec!["tags"],
            "ticket.tags[0]",
        ),
    ];
    for (patch, paths, field) in cases {
        let err = update(&mut tickets, patch, &paths, "").await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{field}: {err:?}");
        assert!(
            violated_fields(&err).contains(&field.to_string()),
            "{field}: {:?}",
            violated_fields(&err)
        );
    }
    let missing = update(
        &mut tickets,
        pb::Ticket {
            id: Uuid::new_v4().to_string(),
            subject: "x".into(),
            ..Default::default()
        },
        &["subject"],
        "",
    )
    .await
    .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);

    let unchanged = tickets
        .get_ticket(pb::GetTicketRequest {
            key: Some(pb::get_ticket_request::Key::Id(ticket.id.clone())),
        })
        .await
        .unwrap()
        .into_inner()
        .ticket
        .unwrap();
    // (The clocks' used/remaining readings move with the wall clock; everything stored
    // must be equal.)
    assert_eq!(
        without_clock_readings(unchanged),
        without_clock_readings(ticket),
        "rejected updates change nothing"
    );
}

pub async fn changing_the_contact_relinks_or_updates_it(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut tickets = app.tickets();
    let ticket = create(&mut tickets, new_ticket("Wrong customer")).await;
    let old_contact = ticket.contact.clone().unwrap();

    let corrected = update(
        &mut tickets,
        pb::Ticket {
            id: ticket.id.clone(),
            contact: Some(pb::Contact {
                external_id: old_contact.external_id.clone(),
                name: "Ada King".into(),
                ..Default::default()
            }),
            ..Default::default()
        },
        &["contact"],
        "",
    )
    .await
    .unwrap();
    let contact = corrected.contact.unwrap();
    assert_eq!(contact.id, old_contact.id);
    assert_eq!(contact.name, "Ada King");
    assert_eq!(
        contact.email, old_contact.email,
        "empty fields keep stored values"
    );

    let relinked = update(
        &mut tickets,
        pb::Ticket {
            id: ticket.id.clone(),
            contact: Some(pb::Contact {
                external_id: "crm-right-one".into(),
                name: "Charles Babbage".into(),
                ..Default::default()
            }),
            ..Default::default()
        },
        &["contact"],
        "",
    )
    .await
    .unwrap();
    let contact = relinked.contact.unwrap();
    assert_ne!(contact.id, old_contact.id);
    assert_eq!(contact.external_id, "crm-right-one");

    let changed: Vec<String> = feed(&mut tickets, &ticket.id)
        .await
        .into_iter()
        .filter_map(|e| match e.detail {
            Some(pb::activity_entry::Detail::FieldsChanged(c)) => Some(c.changes),
            _ => None,
        })
        .flatten()
        .map(|c| c.field)
        .collect();
    assert_eq!(changed, vec!["contact.name", "contact.external_id"]);
}
