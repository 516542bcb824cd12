//! ViewService: personal and shared views, the built-ins, listing and counting through a
//! view, and read masks.

use ticketd::grpc::pb;
use tonic::Code;

use crate::harness::{
    Backend, TestApp, create, new_ticket, spawn_app, spawn_app_with_manual_clock, violated_fields,
};
use crate::routing::{AgentSpec, agent};

fn view(name: &str, filter: &str, order_by: &str, columns: &[&str]) -> pb::View {
    pb::View {
        name: name.into(),
        filter: filter.into(),
        order_by: order_by.into(),
        columns: columns.iter().map(|c| c.to_string()).collect(),
        ..Default::default()
    }
}

async fn save(app: &TestApp, secret: &str, v: pb::View) -> Result<pb::View, tonic::Status> {
    app.views_as(secret)
        .create_view(pb::CreateViewRequest { view: Some(v) })
        .await
        .map(|r| r.into_inner().view.unwrap())
}

async fn listed(app: &TestApp, secret: &str, view_id: &str, mask: &[&str]) -> Vec<pb::Ticket> {
    app.tickets_as(secret)
        .list_tickets(pb::ListTicketsRequest {
            view_id: view_id.into(),
            read_mask: (!mask.is_empty()).then(|| prost_types::FieldMask {
                paths: mask.iter().map(|p| p.to_string()).collect(),
            }),
            ..Default::default()
        })
        .await
        .expect("list through a view")
        .into_inner()
        .tickets
}

pub async fn saved_views_list_count_and_show_their_columns(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut tickets = app.tickets();
    for (subject, priority, tag) in [
        ("Refund A", pb::Priority::High, "billing"),
        ("Refund B", pb::Priority::Low, "billing"),
        ("Crash", pb::Priority::High, "bug"),
    ] {
        create(
            &mut tickets,
            pb::CreateTicketRequest {
                priority: priority as i32,
                tags: vec![tag.into()],
                ..new_ticket(subject)
            },
        )
        .await;
    }
    let shared = save(
        &app,
        &app.admin_secret,
        view(
            "Billing",
            "tag = \"billing\"",
            "priority desc",
            &["subject", "priority"],
        ),
    )
    .await
    .unwrap();
    assert!(shared.shared && !shared.built_in);

    let page = listed(&app, &app.admin_secret, &shared.id, &[]).await;
    let subjects: Vec<&str> = page.iter().map(|t| t.subject.as_str()).collect();
    assert_eq!(
        subjects,
        vec!["Refund A", "Refund B"],
        "the view's filter and order"
    );
    let first = &page[0];
    assert!(!first.id.is_empty() && first.priority() == pb::Priority::High);
    assert!(
        first.status == 0 && first.contact.is_none() && first.etag.is_empty(),
        "only the view's columns (and the id): {first:?}"
    );
    let masked = listed(&app, &app.admin_secret, &shared.id, &["number"]).await;
    assert!(
        masked[0].number > 0 && masked[0].subject.is_empty(),
        "a read mask wins"
    );

    let narrowed = app
        .tickets()
        .list_tickets(pb::ListTicketsRequest {
            view_id: shared.id.clone(),
            filter: "priority = LOW".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .tickets;
    assert_eq!(narrowed.len(), 1, "an extra filter narrows the view");

    let mut client = app.tickets();
    for (view_id, filter, expected) in [
        (shared.id.as_str(), "", 2),
        ("", "priority = HIGH", 2),
        ("unassigned", "", 3),
    ] {
        let counted = client
            .count_tickets(pb::CountTicketsRequest {
                view_id: view_id.into(),
                filter: filter.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .count;
        assert_eq!(counted, expected, "view {view_id:?}, filter {filter:?}");
    }

    let views = app
        .views()
        .list_views(pb::ListViewsRequest {
            include_counts: true,
        })
        .await
        .unwrap()
        .into_inner()
        .views;
    let summary: Vec<(String, bool, i64)> = views
        .iter()
        .map(|v| (v.id.clone(), v.built_in, v.count))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("my-tickets".to_string(), true, 0),
            ("unassigned".to_string(), true, 3),
            ("overdue".to_string(), true, 0),
            ("all-open".to_string(), true, 3),
            (shared.id.clone(), false, 2),
        ]
    );
}

pub async fn agents_keep_personal_views_and_admins_shared_ones(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut admin = app.admin();
    let ann = agent(
        &mut admin,
        AgentSpec {
            name: "Ann",
            ..AgentSpec::default()
        },
    )
    .await;
    let bob = agent(
        &mut admin,
        AgentSpec {
            name: "Bob",
            ..AgentSpec::default()
        },
    )
    .await;
    let ann_key = app
        .key(pb::Role::Agent, Some(ann.id.parse().unwrap()))
        .await;
    let bob_key = app
        .key(pb::Role::Agent, Some(bob.id.parse().unwrap()))
        .await;
    let mine = save(
        &app,
        &ann_key,
        view("Mine", "assignee_id = \"me\"", "", &[]),
    )
    .await
    .unwrap();
    assert_eq!(mine.owner_agent_id, ann.id);
    assert!(!mine.shared);

    // Bob neither sees nor changes Ann's view.
    let hidden = app
        .views_as(&bob_key)
        .get_view(pb::GetViewRequest {
            id: mine.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(hidden.code(), Code::NotFound);
    let bobs: Vec<String> = app
        .views_as(&bob_key)
        .list_views(pb::ListViewsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .views
        .into_iter()
        .map(|v| v.id)
        .collect();
    assert!(!bobs.contains(&mine.id));
    let shared = save(&app, &app.admin_secret, view("Everything", "", "", &[]))
        .await
        .unwrap();
    let denied = app
        .views_as(&bob_key)
        .delete_view(pb::DeleteViewRequest {
            id: shared.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let built_in = app
        .views()
        .delete_view(pb::DeleteViewRequest {
            id: "overdue".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(built_in.code(), Code::FailedPrecondition);

    // Ann renames hers under its etag; a stale etag is aborted.
    let mut views = app.views_as(&ann_key);
    let renamed = views
        .update_view(pb::UpdateViewRequest {
            view: Some(pb::View {
                id: mine.id.clone(),
                name: "My queue".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["name".into()],
            }),
            etag: mine.etag.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .view
        .unwrap();
    assert_eq!(
        (renamed.name.as_str(), renamed.filter.as_str()),
        ("My queue", "assignee_id = \"me\"")
    );
    let stale = views
        .update_view(pb::UpdateViewRequest {
            view: Some(pb::View {
                id: mine.id.clone(),
                name: "Again".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["name".into()],
            }),
            etag: mine.etag.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);

    // "me" in a view is whoever lists it.
    let mut ann_tickets = app.tickets_as(&ann_key);
    let ticket = create(
        &mut app.tickets(),
        pb::CreateTicketRequest {
            assignee_id: ann.id.clone(),
            ..new_ticket("For Ann")
        },
    )
    .await;
    let through_view = ann_tickets
        .list_tickets(pb::ListTicketsRequest {
            view_id: mine.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .tickets;
    assert_eq!(through_view.len(), 1);
    assert_eq!(through_view[0].id, ticket.id);
    views
        .delete_view(pb::DeleteViewRequest { id: mine.id })
        .await
        .unwrap();
}

pub async fn views_and_read_masks_are_checked(backend: Backend) {
    let app = spawn_app(backend).await;
    let err = save(
        &app,
        &app.admin_secret,
        view("", "priority >> HIGH", "size", &["subject", "color"]),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&err),
        vec![
            "view.name".to_string(),
            "view.filter".to_string(),
            "view.columns[1]".to_string(),
            "view.order_by".to_string(),
        ]
    );
    let mut tickets = app.tickets();
    let bad_mask = tickets
        .list_tickets(pb::ListTicketsRequest {
            read_mask: Some(prost_types::FieldMask {
                paths: vec!["subject".into(), "secret".into()],
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&bad_mask), vec!["read_mask[1]".to_string()]);
    let both = tickets
        .list_tickets(pb::ListTicketsRequest {
            view: pb::TicketView::AllOpen as i32,
            view_id: "overdue".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&both), vec!["view_id".to_string()]);
    let unknown = tickets
        .count_tickets(pb::CountTicketsRequest {
            view_id: uuid::Uuid::now_v7().to_string(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    let gibberish = tickets
        .count_tickets(pb::CountTicketsRequest {
            view_id: "mine".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&gibberish), vec!["view_id".to_string()]);
    let bot = app.key(pb::Role::Bot, None).await;
    let denied = app
        .views_as(&bot)
        .list_views(pb::ListViewsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
}

pub async fn filters_take_times_relative_to_now_and_the_channel(backend: Backend) {
    let app = spawn_app_with_manual_clock(backend).await;
    let mut tickets = app.tickets();
    let old = create(&mut tickets, new_ticket("Last week")).await;
    app.clock.advance(chrono::Duration::days(8));
    let (chat, _) = crate::bridge::escalate(
        &mut app.escalation(),
        crate::bridge::escalation("conv-recent", 1),
    )
    .await;
    let ids = |filter: &str| {
        let mut client = app.tickets();
        let filter = filter.to_owned();
        async move {
            client
                .list_tickets(pb::ListTicketsRequest {
                    filter,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .tickets
                .into_iter()
                .map(|t| t.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(ids("created_at > \"now-7d\"").await, vec![chat.id.clone()]);
    assert_eq!(ids("created_at < \"now - 1w\"").await, vec![old.id.clone()]);
    assert_eq!(ids("channel = CHAT").await, vec![chat.id.clone()]);
    assert_eq!(ids("channel = \"\"").await, vec![old.id.clone()]);
    assert_eq!(ids("source = \"helpbot\"").await, vec![chat.id.clone()]);
    assert_eq!(ids("source = \"\"").await, vec![old.id.clone()]);
    assert!(ids("has_reply = true").await.is_empty());
    app.tickets()
        .add_reply(pb::AddReplyRequest {
            ticket_id: chat.id.clone(),
            body: "On it".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ids("has_reply = true").await, vec![chat.id.clone()]);
    assert_eq!(ids("has_reply = false").await, vec![old.id.clone()]);
    // A saved view of "the last week" moves with the clock.
    let recent = save(
        &app,
        &app.admin_secret,
        view("This week", "created_at > \"now-7d\"", "", &[]),
    )
    .await
    .unwrap();
    let count = |app: &TestApp| {
        let mut client = app.tickets();
        let id = recent.id.clone();
        async move {
            client
                .count_tickets(pb::CountTicketsRequest {
                    view_id: id,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .count
        }
    };
    assert_eq!(count(&app).await, 1);
    app.clock.advance(chrono::Duration::days(8));
    assert_eq!(count(&app).await, 0);
}

pub async fn filters_read_custom_fields_contact_details_and_has(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut tickets = app.tickets();
    let pro = create(
        &mut tickets,
        pb::CreateTicketRequest {
            custom_fields: [("plan".to_string(), "pro".to_string())].into(),
            tags: vec!["billing".into()],
            contact: Some(pb::Contact {
                external_id: "crm-vip".into(),
                email: "Vip@Example.com".into(),
                vip: Some(true),
                ..Default::default()
            }),
            ..new_ticket("Pro customer")
        },
    )
    .await;
    let free = create(
        &mut tickets,
        pb::CreateTicketRequest {
            custom_fields: [
                ("plan".to_string(), "free".to_string()),
                ("order-id".to_string(), "A-17".to_string()),
            ]
            .into(),
            ..new_ticket("Free customer")
        },
    )
    .await;
    let none = create(&mut tickets, new_ticket("No plan")).await;
    let ids = |filter: &str| {
        let mut client = app.tickets();
        let filter = filter.to_owned();
        async move {
            let mut ids: Vec<String> = client
                .list_tickets(pb::ListTicketsRequest {
                    filter,
                    order_by: "number".into(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .tickets
                .into_iter()
                .map(|t| t.id)
                .collect();
            ids.sort();
            ids
        }
    };
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    assert_eq!(
        ids("custom_fields.plan = \"pro\"").await,
        vec![pro.id.clone()]
    );
    assert_eq!(
        ids("custom_fields.order-id = \"A-17\"").await,
        vec![free.id.clone()],
        "a key with '-' is filtered on as it is written"
    );
    assert_eq!(
        ids("custom_fields.plan != \"pro\"").await,
        sorted(vec![free.id.clone(), none.id.clone()]),
        "not pro includes tickets without a plan"
    );
    assert_eq!(
        ids("contact.email = \"vip@example.COM\"").await,
        vec![pro.id.clone()]
    );
    assert_eq!(ids("contact.vip = true").await, vec![pro.id.clone()]);
    assert_eq!(ids("tags:billing").await, vec![pro.id.clone()]);
    let unknown = app
        .tickets()
        .list_tickets(pb::ListTicketsRequest {
            filter: "contact.shoe_size = 9".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&unknown), vec!["filter".to_string()]);
}
