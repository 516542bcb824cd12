//! Creating, reading and listing tickets.

use std::collections::HashSet;

use ticketd::grpc::pb;
use tonic::Code;
use uuid::Uuid;

use crate::harness::{
    Backend, create, get_ticket, new_ticket, spawn_app, violated_fields, without_clock_readings,
};

pub async fn creating_a_ticket_returns_it_open_with_defaults_and_a_number(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut tickets = app.tickets();

    let ticket = create(
        &mut tickets,
        pb::CreateTicketRequest {
            tags: vec!["Billing".into(), "billing".into(), " refund ".into()],
            custom_fields: [("order".to_string(), "A-17".to_string())].into(),
            ..new_ticket("Card charged twice")
        },
    )
    .await;

    assert!(Uuid::parse_str(&ticket.id).is_ok());
    assert_eq!(ticket.number, 1);
    assert_eq!(ticket.subject, "Card charged twice");
    assert_eq!(ticket.status(), pb::TicketStatus::Open);
    assert_eq!(ticket.priority(), pb::Priority::Medium);
    assert_eq!(ticket.r#type(), pb::TicketType::Question);
    assert_eq!(ticket.tags, vec!["billing", "refund"]);
    assert_eq!(
        ticket.custom_fields.get("order").map(String::as_str),
        Some("A-17")
    );
    let contact = ticket.contact.clone().unwrap();
    assert_eq!(contact.name, "Ada Lovelace");
    assert!(Uuid::parse_str(&contact.id).is_ok());
    assert!(!ticket.etag.is_empty());
    assert!(ticket.created_at.is_some() && ticket.updated_at == ticket.created_at);
    assert_eq!(ticket.assignee_id, "");

    // The response is the ticket as stored.
    let stored = get_ticket(&mut tickets, &ticket.id).await;
    assert_eq!(ticket.sla_clocks.len(), 2, "first response and resolution");
    assert_eq!(
        without_clock_readings(stored),
        without_clock_readings(ticket.clone())
    );

    let second = create(&mut tickets, new_ticket("Another")).await;
    assert_eq!(second.number, 2);
}

pub async fn ticket_numbers_stay_unique_under_concurrent_creates(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut handles = Vec::new();
    for i in 0..24 {
        let mut client = app.tickets();
        handles.push(tokio::spawn(async move {
            create(&mut client, new_ticket(&format!("Concurrent {i}")))
                .await
                .number
        }));
    }
    let mut numbers = HashSet::new();
    for handle in handles {
        assert!(
            numbers.insert(handle.await.unwrap()),
            "a number was handed out twice"
        );
    }
    assert_eq!(numbers.len(), 24);
    assert!(numbers.iter().all(|n| (1..=24).contains(n)), "{numbers:?}");
}

pub async fn a_ticket_is_found_by_id_and_by_number(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut tickets = app.tickets();
    let created = create(&mut tickets, new_ticket("Find me")).await;

    let by_id = tickets
        .get_ticket(pb::GetTicketRequest {
            key: Some(pb::get_ticket_request::Key::Id(created.id.clone())),
        })
        .await
        .unwrap()
        .into_inner()
        .ticket;
    let by_number = tickets
        .get_ticket(pb::GetTicketRequest {
            key: Some(pb::get_ticket_request::Key::Number(created.number)),
        })
        .await
        .unwrap()
        .into_inner()
        .ticket;
    // Clock readings (time used and left) move with the system clock between the calls.
    let created = without_clock_readings(created);
    assert_eq!(by_id.map(without_clock_readings), Some(created.clone()));
    assert_eq!(by_number.map(without_clock_readings), Some(created));

    let missing = tickets
        .get_ticket(pb::GetTicketRequest {
            key: Some(pb::get_ticket_request::Key::Id(Uuid::new_v4().to_string())),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let missing = tickets
        .get_ticket(pb::GetTicketRequest {
            key: Some(pb::get_ticket_request::Key::Number(999)),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    assert!(missing.message().contains("#999"));
}

pub async fn retrying_a_create_with_the_same_request_id_returns_the_first_ticket(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut tickets = app.tickets();
    let request = pb::CreateTicketRequest {
        request_id: "bot-42-escalation".into(),
        ..new_ticket("Retry me")
    };

    let first = create(&mut tickets, request.clone()).await;
    let retry = create(&mut tickets, request.clone()).await;
    assert_eq!(
        without_clock_readings(retry),
        without_clock_readings(first.clone())
    );

    let listed = tickets
        .list_tickets(pb::ListTicketsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        listed.tickets.len(),
        1,
        "a retry must not create a second ticket"
    );

    let different = tickets
        .create_ticket(pb::CreateTicketRequest {
            subject: "Something else".into(),
            ..request
        })
        .await
        .unwrap_err();
    assert_eq!(different.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&different), vec!["request_id"]);
}

pub async fn concurrent_retries_with_one_request_id_create_one_ticket(backend: Backend) {
    let app = spawn_app(backend).await;
    let request = pb::CreateTicketRequest {
        request_id: "same-everywhere".into(),
        ..new_ticket("Racing retries")
    };
    let mut handles = Vec::new();
    for _ in 0..8 {
        let mut client = app.tickets();
        let request = request.clone();
        handles.push(tokio::spawn(async move {
            create(&mut client, request).await.id
        }));
    }
    let mut ids = HashSet::new();
    for handle in handles {
        ids.insert(handle.await.unwrap());
    }
    assert_eq!(ids.len(), 1, "every retry must see the same ticket");
}

pub async fn contacts_are_upserted_by_external_id_keeping_known_details(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut tickets = app.tickets();
    let first = create(
        &mut tickets,
        pb::CreateTicketRequest {
            contact: Some(pb::Contact {
                external_id: "crm-7".into(),
                name: "Grace Hopper".into(),
                email: "grace@example.com".into(),
                vip: Some(true),
                ..Default::default()
            }),
            ..new_ticket("First")
        },
    )
    .await;
    let second = create(
        &mut tickets,
        pb::CreateTicketRequest {
            contact: Some(pb::Contact {
                external_id: "crm-7".into(),
                phone: "+15550100".into(),
                ..Default::default()
            }),
            ..new_ticket("Second")
        },
    )
    .await;

    let (a, b) = (first.contact.unwrap(), second.contact.unwrap());
    assert_eq!(a.id, b.id, "one contact per external id");
    assert_eq!(b.name, "Grace Hopper");
    assert_eq!(b.email, "grace@example.com");
    assert_eq!(b.phone, "+15550100");
    assert_eq!(b.vip, Some(true), "an unset vip keeps the stored flag");
}

async fn seed(
    app: &crate::harness::TestApp,
    tickets: &mut crate::harness::Tickets,
) -> Vec<pb::Ticket> {
    let agent = app.agent("Ada").await.to_string();
    let specs = [
        (
            "Login broken",
            pb::Priority::Urgent,
            pb::TicketType::Bug,
            vec!["auth"],
            agent.as_str(),
        ),
        (
            "Dark mode",
            pb::Priority::Low,
            pb::TicketType::FeatureRequest,
            vec!["ui"],
            "",
        ),
        (
            "Refund please",
            pb::Priority::High,
            pb::TicketType::Complaint,
            vec!["billing", "vip"],
            agent.as_str(),
        ),
        (
            "How to export",
            pb::Priority::Medium,
            pb::TicketType::Question,
            vec![],
            "",
        ),
        (
            "Invoice wrong",
            pb::Priority::High,
            pb::TicketType::Bug,
            vec!["billing"],
            "",
        ),
    ];
    let mut out = Vec::new();
    for (subject, priority, ty, tags, assignee) in specs {
        out.push(
            create(
                tickets,
                pb::CreateTicketRequest {
                    priority: priority as i32,
                    r#type: ty as i32,
                    tags: tags.into_iter().map(String::from).collect(),
                    assignee_id: assignee.into(),
                    ..new_ticket(subject)
                },
            )
            .await,
        );
    }
    out
}

async fn subjects(tickets: &mut crate::harness::Tickets, filter: &str) -> Vec<String> {
    let mut found: Vec<String> = tickets
        .list_tickets(pb::ListTicketsRequest {
            filter: filter.into(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{filter}: {e}"))
        .into_inner()
        .tickets
        .into_iter()
        .map(|t| t.subject)
        .collect();
    found.sort();
    found
}

pub async fn filters_select_tickets_by_field(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut tickets = app.tickets();
    let seeded = seed(&app, &mut tickets).await;
    let agent = seeded[0].assignee_id.clone();
    let contact = seeded[1].contact.clone().unwrap().id;

    let cases: Vec<(String, Vec<&str>)> = vec![
        (
            "priority >= HIGH".into(),
            vec!["Invoice wrong", "Login broken", "Refund please"],
        ),
        ("priority < MEDIUM".into(), vec!["Dark mode"]),
        (
            "type = BUG AND priority = HIGH".into(),
            vec!["Invoice wrong"],
        ),
        (
            r#"tag = "billing""#.into(),
            vec!["Invoice wrong", "Refund please"],
        ),
        (
            r#"tag = "billing" AND NOT tag = "vip""#.into(),
            vec!["Invoice wrong"],
        ),
        (
            format!(r#"assignee_id = "{agent}""#),
            vec!["Login broken", "Refund please"],
        ),
        (
            r#"assignee_id = """#.into(),
            vec!["Dark mode", "How to export", "Invoice wrong"],
        ),
        (format!(r#"contact_id = "{contact}""#), vec!["Dark mode"]),
        (
            "type = QUESTION OR type = FEATURE_REQUEST".into(),
            vec!["Dark mode", "How to export"],
        ),
        (
            "status = OPEN AND number <= 2".into(),
            vec!["Dark mode", "Login broken"],
        ),
        ("status = TICKET_STATUS_CLOSED".into(), vec![]),
        (
            r#"created_at >= "2000-01-01T00:00:00Z""#.into(),
            vec![
                "Dark mode",
                "How to export",
                "Invoice wrong",
                "Login broken",
                "Refund please",
            ],
        ),
    ];
    for (filter, expected) in cases {
        assert_eq!(
            subjects(&mut tickets, &filter).await,
            expected,
            "filter: {filter}"
        );
    }
}

pub async fn assignee_me_lists_the_calling_agents_tickets(backend: Backend) {
    let app = spawn_app(backend).await;
    let agent = app.agent("Ada").await;
    let agent_key = app.key(pb::Role::Agent, Some(agent)).await;
    let mut tickets = app.tickets();
    create(
        &mut tickets,
        pb::CreateTicketRequest {
            assignee_id: agent.to_string(),
            ..new_ticket("Mine")
        },
    )
    .await;
    create(&mut tickets, new_ticket("Not mine")).await;

    let mut as_agent = app.tickets_as(&agent_key);
    assert_eq!(
        subjects(&mut as_agent, r#"assignee_id = "me""#).await,
        vec!["Mine"]
    );

    // The admin key is bound to no agent, so "me" means nothing for it.
    let err = tickets
        .list_tickets(pb::ListTicketsRequest {
            filter: r#"assignee_id = "me""#.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

pub async fn pages_cover_every_ticket_exactly_once_in_order(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut tickets = app.tickets();
    seed(&app, &mut tickets).await;
    seed(&app, &mut tickets).await;

    for order_by in [
        "",
        "created_at",
        "number desc",
        "priority desc",
        "priority asc",
        "updated_at desc",
    ] {
        let mut seen = Vec::new();
        let mut token = String::new();
        let mut pages = 0;
        loop {
            let page = tickets
                .list_tickets(pb::ListTicketsRequest {
                    page_size: 3,
                    page_token: token.clone(),
                    order_by: order_by.into(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            assert!(page.tickets.len() <= 3);
            seen.extend(page.tickets);
            pages += 1;
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        assert_eq!(pages, 4, "order_by {order_by:?}: 10 tickets in pages of 3");
        let numbers: Vec<i64> = seen.iter().map(|t| t.number).collect();
        let distinct: HashSet<i64> = numbers.iter().copied().collect();
        assert_eq!(distinct.len(), 10, "order_by {order_by:?}: {numbers:?}");
        let expected: Vec<i64> = match order_by {
            "" | "number desc" | "updated_at desc" => (1..=10).rev().collect(),
            "created_at" => (1..=10).collect(),
            _ => {
                let mut by_priority = seen.clone();
                by_priority.sort_by_key(|t| (t.priority, t.number));
                if order_by == "priority desc" {
                    by_priority.reverse();
                }
                by_priority.iter().map(|t| t.number).collect()
            }
        };
        assert_eq!(numbers, expected, "order_by {order_by:?}");
    }
}

pub async fn list_arguments_are_checked(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut tickets = app.tickets();
    seed(&app, &mut tickets).await;

    let bad_filter = tickets
        .list_tickets(pb::ListTicketsRequest {
            filter: "priority >= SEVERE".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad_filter.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&bad_filter), vec!["filter"]);
    assert!(
        bad_filter
            .message()
            .contains("'SEVERE' is not a valid priority"),
        "{}",
        bad_filter.message()
    );

    let injection = tickets
        .list_tickets(pb::ListTicketsRequest {
            filter: "status = OPEN; DROP TABLE tickets".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(injection.code(), Code::InvalidArgument);

    let page = tickets
        .list_tickets(pb::ListTicketsRequest {
            page_size: 2,
            filter: "priority >= MEDIUM".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let reused = tickets
        .list_tickets(pb::ListTicketsRequest {
            page_size: 2,
            page_token: page.next_page_token,
            filter: "priority >= LOW".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&reused), vec!["page_token"]);

    for (request, field) in [
        (
            pb::ListTicketsRequest {
                page_size: 501,
                ..Default::default()
            },
            "page_size",
        ),
        (
            pb::ListTicketsRequest {
                page_size: -1,
                ..Default::default()
            },
            "page_size",
        ),
        (
            pb::ListTicketsRequest {
                page_token: "garbage".into(),
                ..Default::default()
            },
            "page_token",
        ),
        (
            pb::ListTicketsRequest {
                order_by: "subject".into(),
                ..Default::default()
            },
            "order_by",
        ),
    ] {
        let err = tickets.list_tickets(request).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert_eq!(violated_fields(&err), vec![field]);
    }

    let total = tickets
        .list_tickets(pb::ListTicketsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .tickets
        .len();
    assert_eq!(total, 5, "a rejected filter changes nothing");
}
