//! Bad input and limits: clear statuses, field violations, nothing lost.

use ticketd::grpc::pb;
use tonic::Code;

use crate::harness::{
    Backend, TestDatabase, create, new_ticket, settings_for, spawn_app, spawn_app_with, start,
    violated_fields,
};

pub async fn errors_repeat_only_a_bounded_part_of_huge_inputs(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut tickets = app.tickets();
    // Twenty bad keys of 2,000 characters: the error names ten, shortened, and counts the
    // rest; it fits the headers a gRPC client accepts (else the client reports its own
    // RESOURCE_EXHAUSTED instead of the server's answer).
    let mut request = new_ticket("huge keys");
    request.custom_fields = (0..20)
        .map(|i| {
            (
                format!("bad key {i} {}", "x".repeat(2_000)),
                "v".to_string(),
            )
        })
        .collect();
    let err = tickets.create_ticket(request).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());
    let fields = violated_fields(&err);
    assert_eq!(fields.len(), 10, "{fields:?}");
    assert!(
        fields
            .iter()
            .all(|f| f.len() <= 128 && f.starts_with("custom_fields["))
    );
    assert!(
        err.message().ends_with("; and 10 more"),
        "{}",
        err.message()
    );
    assert!(err.message().len() < 4_096, "{} bytes", err.message().len());

    // An unknown field of 4,090 characters in a filter.
    let err = tickets
        .list_tickets(pb::ListTicketsRequest {
            filter: format!("{} = 1", "b".repeat(4_090)),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());
    assert_eq!(violated_fields(&err), vec!["filter"]);
    assert!(err.message().len() < 1_024, "{} bytes", err.message().len());
}

pub async fn invalid_create_requests_name_every_bad_field(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut tickets = app.tickets();

    let err = tickets
        .create_ticket(pb::CreateTicketRequest {
            subject: " ".into(),
            description: "d".repeat(65_537),
            contact: Some(pb::Contact {
                external_id: "".into(),
                email: "not-an-email".into(),
                ..Default::default()
            }),
            custom_fields: [("bad key!".to_string(), "v".to_string())].into(),
            tags: vec!["".into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let mut fields = violated_fields(&err);
    fields.sort();
    assert_eq!(
        fields,
        vec![
            "contact.email",
            "contact.external_id",
            "custom_fields[\"bad key!\"]",
            "description",
            "subject",
            "tags[0]",
        ]
    );

    let wire = tickets
        .create_ticket(pb::CreateTicketRequest {
            priority: 17,
            assignee_id: "agent-7".into(),
            queue_id: "billing".into(),
            ..new_ticket("Wire-level problems")
        })
        .await
        .unwrap_err();
    let mut fields = violated_fields(&wire);
    fields.sort();
    assert_eq!(fields, vec!["assignee_id", "priority", "queue_id"]);

    let no_contact = tickets
        .create_ticket(pb::CreateTicketRequest {
            contact: None,
            ..new_ticket("Orphan")
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&no_contact), vec!["contact"]);

    let long_subject = tickets
        .create_ticket(new_ticket(&"s".repeat(251)))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&long_subject), vec!["subject"]);

    let bad_id = tickets
        .get_ticket(pb::GetTicketRequest {
            key: Some(pb::get_ticket_request::Key::Id("12345".into())),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&bad_id), vec!["id"]);

    let listed = tickets
        .list_tickets(pb::ListTicketsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.tickets.is_empty(), "rejected creates store nothing");
}

pub async fn oversized_messages_are_resource_exhausted(backend: Backend) {
    let database = TestDatabase::create(&backend).await;
    let mut settings = settings_for(&database);
    settings.max_message_bytes = 64 * 1024;
    let app = start(settings, database).await;
    let mut tickets = app.tickets();
    let ticket = create(&mut tickets, new_ticket("Big attachment")).await;

    let err = tickets
        .add_reply(pb::AddReplyRequest {
            ticket_id: ticket.id.clone(),
            body: "here you go".into(),
            channel: pb::Channel::Chat as i32,
            attachments: vec![pb::Attachment {
                name: "big.bin".into(),
                content_type: "application/octet-stream".into(),
                content: vec![0u8; 200 * 1024],
                ..Default::default()
            }],
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");

    // The server is still healthy and nothing was written.
    let entries = tickets
        .list_activity(pb::ListActivityRequest {
            ticket_id: ticket.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert_eq!(entries.len(), 1);

    // A response over the limit is refused the same way, and a smaller page gets through.
    for i in 0..4 {
        tickets
            .add_note(pb::AddNoteRequest {
                ticket_id: ticket.id.clone(),
                body: format!("{i}{}", "n".repeat(30_000)),
                request_id: String::new(),
            })
            .await
            .unwrap();
    }
    let whole = tickets
        .list_activity(pb::ListActivityRequest {
            ticket_id: ticket.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(whole.code(), Code::ResourceExhausted, "{whole:?}");
    let page = tickets
        .list_activity(pb::ListActivityRequest {
            ticket_id: ticket.id,
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.into_inner().entries.len(), 1);
}

/// Calls cancelled at random moments leave whole tickets or none: every ticket has its
/// created event and its clocks, and nothing half-written remains.
pub async fn cancelled_calls_leave_no_partial_writes(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut handles = Vec::new();
    for i in 0..40u64 {
        let mut client = app.tickets();
        handles.push(tokio::spawn(async move {
            let call = client.create_ticket(new_ticket(&format!("Maybe {i}")));
            // Give up after a few hundred microseconds to a few milliseconds.
            tokio::time::timeout(std::time::Duration::from_micros(200 + i * 100), call)
                .await
                .is_err()
        }));
    }
    let mut abandoned = 0;
    for handle in handles {
        abandoned += usize::from(handle.await.unwrap());
    }
    assert!(abandoned > 0, "no call was cancelled in flight");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;

    // A call that runs to the end after the storm: the listing below always has it.
    let mut tickets = app.tickets();
    let control = tickets
        .create_ticket(new_ticket("Control"))
        .await
        .unwrap()
        .into_inner()
        .ticket
        .unwrap();
    let listed = tickets
        .list_tickets(pb::ListTicketsRequest {
            page_size: 500,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .tickets;
    assert!(listed.iter().any(|t| t.id == control.id));
    for ticket in &listed {
        assert_eq!(ticket.sla_clocks.len(), 2, "clocks written with the ticket");
        let feed = crate::harness::feed(&mut tickets, &ticket.id).await;
        assert!(
            feed.iter()
                .any(|e| e.r#type() == pb::EventType::TicketCreated),
            "ticket {} has no created event",
            ticket.number
        );
    }
}

pub async fn a_call_past_the_request_timeout_is_deadline_exceeded(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.request_timeout_seconds = 2).await;
    let gateway = app.key(pb::Role::Gateway, None).await;
    let mut escalation = app.escalation_as(&gateway);
    // A claim waiting for messages longer than the server lets a call take.
    let claim = |wait: i64| pb::ClaimDeliveriesRequest {
        channel: pb::Channel::Sms as i32,
        wait: Some(prost_types::Duration {
            seconds: wait,
            nanos: 0,
        }),
        ..Default::default()
    };
    let err = escalation.claim_deliveries(claim(20)).await.unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert!(err.message().contains("request timeout"), "{err:?}");
    // The server is none the worse: a claim within the limit answers.
    let claimed = escalation.claim_deliveries(claim(0)).await.unwrap();
    assert!(claimed.into_inner().messages.is_empty());
}
