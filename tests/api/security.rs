//! Safe to expose: input that cannot hurt, keys that only do their job, limits that hold.

use std::time::Duration;

use ticketd::grpc::pb;
use tokio_stream::StreamExt;
use tonic::Code;
use tonic_types::StatusExt;
use uuid::Uuid;

use crate::bridge::{customer_message, escalate, escalation};
use crate::harness::{
    Backend, TestApp, create, feed, get_ticket, new_ticket, spawn_app, spawn_app_with,
    violated_fields,
};

/// A key of `role` limited to `channels` (gateways) or `sources` (bots).
async fn scoped_key(
    app: &TestApp,
    role: pb::Role,
    channels: Vec<pb::Channel>,
    sources: Vec<&str>,
) -> String {
    app.admin()
        .create_api_key(pb::CreateApiKeyRequest {
            name: "scoped".into(),
            role: role as i32,
            agent_id: String::new(),
            channels: channels.into_iter().map(|c| c as i32).collect(),
            sources: sources.into_iter().map(str::to_owned).collect(),
        })
        .await
        .expect("create scoped key")
        .into_inner()
        .secret
}

fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    })
}

pub async fn an_escalation_retried_with_its_request_id_returns_the_first_ticket(backend: Backend) {
    let app = spawn_app(backend).await;
    let bot = app.key(pb::Role::Bot, None).await;
    let mut client = app.escalation_as(&bot);
    let request = pb::EscalateConversationRequest {
        request_id: "esc-1".into(),
        ..escalation("retried", 3)
    };

    let (first, created) = escalate(&mut client, request.clone()).await;
    assert!(created);
    let (again, created_again) = escalate(&mut client, request).await;
    assert_eq!(again.id, first.id);
    assert!(!created_again);

    // The same id for another conversation is another request.
    let other = client
        .escalate_conversation(pb::EscalateConversationRequest {
            request_id: "esc-1".into(),
            ..escalation("another", 1)
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&other), vec!["request_id"]);
}

pub async fn request_ids_belong_to_the_key_that_sent_them(backend: Backend) {
    let app = spawn_app(backend).await;
    let (a, b) = (
        app.key(pb::Role::Bot, None).await,
        app.key(pb::Role::Bot, None).await,
    );
    let request = pb::CreateTicketRequest {
        request_id: "shared-id".into(),
        ..new_ticket("Same body, two callers")
    };
    let from_a = create(&mut app.tickets_as(&a), request.clone()).await;
    let from_b = create(&mut app.tickets_as(&b), request.clone()).await;
    assert_ne!(
        from_a.id, from_b.id,
        "bot B must not receive bot A's ticket"
    );
    let retried = create(&mut app.tickets_as(&a), request).await;
    assert_eq!(retried.id, from_a.id);
}

pub async fn a_request_id_past_its_window_may_be_used_again(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut tickets = app.tickets();
    let first = pb::CreateTicketRequest {
        request_id: "daily-report".into(),
        ..new_ticket("Monday's report")
    };
    let next = pb::CreateTicketRequest {
        request_id: "daily-report".into(),
        ..new_ticket("Tuesday's report")
    };
    let monday = create(&mut tickets, first).await;
    let reused = tickets.create_ticket(next.clone()).await.unwrap_err();
    assert_eq!(
        violated_fields(&reused),
        vec!["request_id"],
        "still remembered"
    );

    // A day later (TICKETD_IDEMPOTENCY_HOURS is 24) the id is free again.
    app.execute_sql("UPDATE idempotency_keys SET created_at = '2000-01-01T00:00:00+00:00'")
        .await;
    let tuesday = create(&mut tickets, next.clone()).await;
    assert_ne!(tuesday.id, monday.id);
    let retried = create(&mut tickets, next).await;
    assert_eq!(retried.id, tuesday.id, "the new claim holds the id again");
}

pub async fn retried_replies_notes_time_and_merges_apply_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut tickets = app.tickets();
    let ticket = create(&mut tickets, new_ticket("Retry me")).await;
    let reply = pb::AddReplyRequest {
        ticket_id: ticket.id.clone(),
        body: "We are on it".into(),
        channel: pb::Channel::Email as i32,
        request_id: "reply-1".into(),
        ..Default::default()
    };
    let first = tickets.add_reply(reply.clone()).await.unwrap().into_inner();
    let second = tickets.add_reply(reply.clone()).await.unwrap().into_inner();
    assert_eq!(first.entry.unwrap().id, second.entry.unwrap().id);
    let changed = tickets
        .add_reply(pb::AddReplyRequest {
            body: "Something else".into(),
            ..reply
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&changed), vec!["request_id"]);

    let note = pb::AddNoteRequest {
        ticket_id: ticket.id.clone(),
        body: "internal".into(),
        request_id: "note-1".into(),
    };
    let n1 = tickets.add_note(note.clone()).await.unwrap().into_inner();
    let n2 = tickets.add_note(note).await.unwrap().into_inner();
    assert_eq!(n1.entry.unwrap().id, n2.entry.unwrap().id);

    let time = pb::LogTimeRequest {
        ticket_id: ticket.id.clone(),
        duration: Some(prost_types::Duration {
            seconds: 600,
            nanos: 0,
        }),
        request_id: "time-1".into(),
        ..Default::default()
    };
    tickets.log_time(time.clone()).await.unwrap();
    let again = tickets.log_time(time).await.unwrap().into_inner();
    assert_eq!(again.ticket.unwrap().time_spent.unwrap().seconds, 600);

    let entries = feed(&mut tickets, &ticket.id).await;
    let count = |t: pb::EventType| entries.iter().filter(|e| e.r#type() == t).count();
    assert_eq!(
        count(pb::EventType::ReplyAdded),
        1,
        "one reply reaches the customer"
    );
    assert_eq!(count(pb::EventType::NoteAdded), 1);
    assert_eq!(count(pb::EventType::TimeLogged), 1);

    let duplicate = create(&mut tickets, new_ticket("Duplicate")).await;
    let merge = pb::MergeTicketsRequest {
        target_ticket_id: ticket.id.clone(),
        source_ticket_ids: vec![duplicate.id.clone()],
        request_id: "merge-1".into(),
    };
    tickets.merge_tickets(merge.clone()).await.unwrap();
    let retried = tickets.merge_tickets(merge).await.unwrap().into_inner();
    assert_eq!(retried.sources[0].status(), pb::TicketStatus::Merged);
}

pub async fn control_characters_are_refused_and_line_breaks_kept_to_multi_line_text(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let mut tickets = app.tickets();
    let nul = tickets
        .create_ticket(pb::CreateTicketRequest {
            description: "before\0after".into(),
            ..new_ticket("NUL inside")
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&nul), vec!["description"]);

    let injected = tickets
        .create_ticket(new_ticket("Hello\r\nBcc: everyone@example.com"))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&injected), vec!["subject"]);

    let tag = tickets
        .create_ticket(pb::CreateTicketRequest {
            tags: vec!["bad\u{7}tag".into()],
            ..new_ticket("Bell in a tag")
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&tag), vec!["tags[0]"]);

    let multi_line = create(
        &mut tickets,
        pb::CreateTicketRequest {
            description: "line one\r\n\tline two".into(),
            ..new_ticket("Line breaks in a description")
        },
    )
    .await;
    assert_eq!(multi_line.description, "line one\r\n\tline two");

    let note = tickets
        .add_note(pb::AddNoteRequest {
            ticket_id: multi_line.id.clone(),
            body: "\u{0}".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&note), vec!["body"]);
}

pub async fn a_repeated_update_mask_path_is_refused_before_any_work(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut tickets = app.tickets();
    let ticket = create(&mut tickets, new_ticket("Masked")).await;
    let update = |paths: Vec<&str>| pb::UpdateTicketRequest {
        ticket: Some(pb::Ticket {
            id: ticket.id.clone(),
            description: "d".repeat(1_000),
            ..Default::default()
        }),
        update_mask: mask(&paths),
        etag: String::new(),
    };

    let twice = tickets
        .update_ticket(update(vec!["description", "description"]))
        .await
        .unwrap_err();
    assert_eq!(twice.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&twice), vec!["update_mask"]);

    let flood = tickets
        .update_ticket(update(vec!["custom_fields"; 12_000]))
        .await
        .unwrap_err();
    assert_eq!(flood.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&flood), vec!["update_mask"]);

    let unchanged = get_ticket(&mut tickets, &ticket.id).await;
    assert_eq!(unchanged.etag, ticket.etag, "nothing was written");
}

pub async fn conversation_metadata_stays_bounded_across_escalations(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut client = app.escalation();
    let with_metadata = |prefix: &str, entries: usize, value: &str| {
        let mut request = escalation("meta", 1);
        let conversation = request.conversation.as_mut().unwrap();
        conversation.metadata = (0..entries)
            .map(|i| (format!("{prefix}{i}"), value.to_owned()))
            .collect();
        request
    };

    let long = client
        .escalate_conversation(with_metadata("k", 1, &"v".repeat(5_000)))
        .await
        .unwrap_err();
    assert_eq!(long.code(), Code::InvalidArgument);

    escalate(&mut client, with_metadata("a", 40, "x")).await;
    let grown = client
        .escalate_conversation(with_metadata("b", 40, "x"))
        .await
        .unwrap_err();
    assert_eq!(grown.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&grown), vec!["conversation.metadata"]);
    // Re-sending known keys stays within the bound.
    escalate(&mut client, with_metadata("a", 40, "y")).await;
}

pub async fn calls_are_authenticated_and_sized_before_their_body_is_decoded(backend: Backend) {
    let app = spawn_app(backend).await;
    let oversized = || pb::GetTicketRequest {
        key: Some(pb::get_ticket_request::Key::Id("x".repeat(200_000))),
    };
    // Without a key the body is never looked at: no size or UUID complaint.
    let anonymous = app
        .tickets_anonymous()
        .get_ticket(oversized())
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);
    let unknown = app
        .tickets_as("tkd_unknown")
        .get_ticket(oversized())
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::Unauthenticated);

    // With a key, GetTicket takes small messages only: 200 KB is refused unread.
    let sized = app.tickets().get_ticket(oversized()).await.unwrap_err();
    assert_eq!(sized.code(), Code::ResourceExhausted, "{sized:?}");
    // A reply may carry attachments of megabytes.
    let mut tickets = app.tickets();
    let ticket = create(&mut tickets, new_ticket("Big attachment")).await;
    tickets
        .add_reply(pb::AddReplyRequest {
            ticket_id: ticket.id.clone(),
            body: "Logs attached".into(),
            channel: pb::Channel::Email as i32,
            attachments: vec![pb::Attachment {
                name: "logs.txt".into(),
                content_type: "text/plain".into(),
                content: vec![b'a'; 3 * 1024 * 1024],
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .expect("a large reply within its method's limit");
}

pub async fn a_key_past_its_rate_limit_is_told_when_to_retry(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.rate_limit_per_second = 5).await;
    let agent = app.key(pb::Role::Agent, Some(app.agent("Ada").await)).await;
    let mut tickets = app.tickets_as(&agent);
    let mut limited = None;
    for _ in 0..50 {
        if let Err(status) = tickets
            .list_tickets(pb::ListTicketsRequest::default())
            .await
        {
            limited = Some(status);
            break;
        }
    }
    let status = limited.expect("50 calls at once exceed 5 per second");
    assert_eq!(status.code(), Code::ResourceExhausted);
    let retry = status.get_details_retry_info().expect("RetryInfo");
    assert!(
        retry
            .retry_delay
            .is_some_and(|d| d <= Duration::from_secs(1))
    );
    let quota = status.get_details_quota_failure().expect("QuotaFailure");
    assert_eq!(quota.violations.len(), 1);
    // Another key has its own bucket.
    let other = app.key(pb::Role::Agent, Some(app.agent("Ada").await)).await;
    app.tickets_as(&other)
        .list_tickets(pb::ListTicketsRequest::default())
        .await
        .expect("another key is not limited by the first");
}

pub async fn open_streams_are_capped_per_key(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.max_streams_per_key = 2).await;
    let agent = app.key(pb::Role::Agent, Some(app.agent("Ada").await)).await;
    let mut tickets = app.tickets_as(&agent);
    let watch = || pb::WatchTicketsRequest::default();
    let first = tickets.watch_tickets(watch()).await.unwrap().into_inner();
    let _second = tickets.watch_tickets(watch()).await.unwrap().into_inner();
    let third = tickets.watch_tickets(watch()).await.unwrap_err();
    assert_eq!(third.code(), Code::ResourceExhausted);
    // Another key is not affected; closing a stream frees its place.
    app.tickets().watch_tickets(watch()).await.unwrap();
    drop(first);
    let mut reopened = None;
    for _ in 0..50 {
        match tickets.watch_tickets(watch()).await {
            Ok(stream) => {
                reopened = Some(stream);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert!(reopened.is_some(), "a closed stream gives its place back");
}

pub async fn revoking_a_key_ends_its_open_streams(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut admin = app.admin();
    let created = admin
        .create_api_key(pb::CreateApiKeyRequest {
            name: "soon revoked".into(),
            role: pb::Role::Agent as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut stream = app
        .tickets_as(&created.secret)
        .watch_tickets(pb::WatchTicketsRequest::default())
        .await
        .unwrap()
        .into_inner();
    admin
        .revoke_api_key(pb::RevokeApiKeyRequest {
            id: created.api_key.unwrap().id,
        })
        .await
        .unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stream.next().await {
                Some(Ok(_)) => continue,
                Some(Err(status)) => return Some(status),
                None => return None,
            }
        }
    })
    .await
    .expect("the stream ends within the key cache's lifetime");
    assert_eq!(ended.map(|s| s.code()), Some(Code::Unauthenticated));
}

pub async fn bots_speak_only_for_their_own_sources(backend: Backend) {
    let app = spawn_app(backend).await;
    let bot_a = scoped_key(&app, pb::Role::Bot, vec![], vec!["helpbot"]).await;
    let bot_b = scoped_key(&app, pb::Role::Bot, vec![], vec!["otherbot"]).await;
    let (ticket, _) = escalate(&mut app.escalation_as(&bot_a), escalation("a-1", 2)).await;

    let appended = app
        .escalation_as(&bot_b)
        .escalate_conversation(escalation("a-1", 4))
        .await
        .unwrap_err();
    assert_eq!(appended.code(), Code::PermissionDenied);
    let read = app
        .escalation_as(&bot_b)
        .get_conversation_ticket(pb::GetConversationTicketRequest {
            source: "helpbot".into(),
            conversation_id: "a-1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(read.code(), Code::PermissionDenied);
    let by_id = app
        .tickets_as(&bot_b)
        .get_ticket(pb::GetTicketRequest {
            key: Some(pb::get_ticket_request::Key::Id(ticket.id.clone())),
        })
        .await
        .unwrap_err();
    assert_eq!(by_id.code(), Code::NotFound);
    // Bot A still reads its own.
    get_ticket(&mut app.tickets_as(&bot_a), &ticket.id).await;

    // Lists and feeds follow the same scope; tickets of no conversation are no bot's.
    create(&mut app.tickets(), new_ticket("made by an agent")).await;
    let listed = |secret: String| {
        let mut client = app.tickets_as(&secret);
        async move {
            client
                .list_tickets(pb::ListTicketsRequest::default())
                .await
                .unwrap()
                .into_inner()
                .tickets
                .into_iter()
                .map(|t| t.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(listed(bot_a.clone()).await, vec![ticket.id.clone()]);
    assert!(listed(bot_b.clone()).await.is_empty());
    assert_eq!(listed(app.admin_secret.clone()).await.len(), 2);
    let activity = |secret: &str| {
        let mut client = app.tickets_as(secret);
        let ticket_id = ticket.id.clone();
        async move {
            client
                .list_activity(pb::ListActivityRequest {
                    ticket_id,
                    ..Default::default()
                })
                .await
        }
    };
    let feed_of_other = activity(&bot_b).await.unwrap_err();
    assert_eq!(feed_of_other.code(), Code::NotFound);
    let own_feed = activity(&bot_a).await.unwrap().into_inner().entries;
    assert!(!own_feed.is_empty());

    let misuse = app
        .admin()
        .create_api_key(pb::CreateApiKeyRequest {
            name: "agent with sources".into(),
            role: pb::Role::Agent as i32,
            sources: vec!["helpbot".into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&misuse), vec!["sources"]);
}

pub async fn bots_fill_contact_details_but_never_redirect_them(backend: Backend) {
    let app = spawn_app(backend).await;
    let bot = app.key(pb::Role::Bot, None).await;
    let mut request = new_ticket("Known customer");
    let contact = request.contact.as_mut().unwrap();
    contact.phone = String::new();
    let external_id = contact.external_id.clone();
    let first = create(&mut app.tickets(), request).await;
    assert_eq!(first.contact.as_ref().unwrap().email, "ada@example.com");

    let hijack = pb::CreateTicketRequest {
        contact: Some(pb::Contact {
            external_id: external_id.clone(),
            email: "attacker@example.net".into(),
            phone: "+15550100".into(),
            vip: Some(true),
            ..Default::default()
        }),
        ..new_ticket("Please email me elsewhere")
    };
    let by_bot = create(&mut app.tickets_as(&bot), hijack.clone()).await;
    let contact = by_bot.contact.unwrap();
    assert_eq!(contact.email, "ada@example.com", "the stored email stands");
    assert_eq!(contact.phone, "+15550100", "an empty field is filled");
    assert_ne!(contact.vip, Some(true), "a bot cannot make a contact VIP");

    // An agent may change them.
    let by_agent = create(&mut app.tickets(), hijack).await;
    assert_eq!(by_agent.contact.unwrap().email, "attacker@example.net");
}

pub async fn gateways_reach_only_conversations_on_their_channels(backend: Backend) {
    let app = spawn_app(backend).await;
    let (ticket, _) = escalate(&mut app.escalation(), escalation("chat-1", 1)).await;
    let sms_only = scoped_key(&app, pb::Role::Gateway, vec![pb::Channel::Sms], vec![]).await;
    let mut gateway = app.escalation_as(&sms_only);

    let by_conversation = gateway
        .post_customer_message(pb::PostCustomerMessageRequest {
            channel: pb::Channel::Sms as i32,
            ..customer_message("chat-1", "hello from sms", "sms-1")
        })
        .await
        .unwrap_err();
    assert_eq!(by_conversation.code(), Code::InvalidArgument);
    let by_ticket = gateway
        .post_customer_message(pb::PostCustomerMessageRequest {
            source: String::new(),
            conversation_id: String::new(),
            ticket_id: ticket.id.clone(),
            channel: pb::Channel::Sms as i32,
            ..customer_message("", "hello from sms", "sms-2")
        })
        .await
        .unwrap_err();
    assert_eq!(by_ticket.code(), Code::PermissionDenied);
    let entries = feed(&mut app.tickets(), &ticket.id).await;
    assert!(
        entries
            .iter()
            .all(|e| e.r#type() != pb::EventType::CustomerMessage),
        "nothing was posted"
    );
}

pub async fn time_for_another_agent_needs_an_admin_and_a_real_agent(backend: Backend) {
    let app = spawn_app(backend).await;
    let me = app.key(pb::Role::Agent, Some(app.agent("Ada").await)).await;
    let mut tickets = app.tickets_as(&me);
    let ticket = create(&mut tickets, new_ticket("Timesheet")).await;
    let log = |agent: String| pb::LogTimeRequest {
        ticket_id: ticket.id.clone(),
        agent_id: agent,
        duration: Some(prost_types::Duration {
            seconds: 60,
            nanos: 0,
        }),
        ..Default::default()
    };
    let for_other = tickets
        .log_time(log(Uuid::new_v4().to_string()))
        .await
        .unwrap_err();
    assert_eq!(for_other.code(), Code::PermissionDenied);
    let missing = app
        .tickets()
        .log_time(log(Uuid::new_v4().to_string()))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&missing), vec!["agent_id"]);
    tickets
        .log_time(log(String::new()))
        .await
        .expect("own time");
}

pub async fn replicas_starting_together_make_one_bootstrap_key(backend: Backend) {
    use ticketd::app::App;
    use ticketd::config::LogFormat;

    let database = crate::harness::TestDatabase::create(&backend).await;
    let unkeyed = |format: LogFormat| {
        let mut settings = crate::harness::settings_for(&database);
        settings.bootstrap_key = None;
        settings.log_format = format;
        settings
    };
    // JSON logs end up in collectors: no secret is generated to be printed there.
    let quiet = App::build(unkeyed(LogFormat::Json)).await.expect("build");
    assert_eq!(quiet.bootstrap_secret(), None);
    drop(quiet);

    let (a, b, c, d) = tokio::join!(
        App::build(unkeyed(LogFormat::Pretty)),
        App::build(unkeyed(LogFormat::Pretty)),
        App::build(unkeyed(LogFormat::Pretty)),
        App::build(unkeyed(LogFormat::Pretty)),
    );
    let replicas = [a, b, c, d];
    let secrets: Vec<String> = replicas
        .iter()
        .map(|r| r.as_ref().expect("build"))
        .filter_map(|app| app.bootstrap_secret().map(str::to_owned))
        .collect();
    assert_eq!(secrets.len(), 1, "one replica made the key: {secrets:?}");
    drop(replicas);

    let mut settings = unkeyed(LogFormat::Pretty);
    settings.bootstrap_key = Some(secrets[0].parse().expect("a generated secret is valid"));
    let app = crate::harness::start(settings, database).await;
    let keys = app
        .admin()
        .list_api_keys(pb::ListApiKeysRequest::default())
        .await
        .unwrap()
        .into_inner()
        .api_keys;
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(keys[0].role(), pb::Role::Admin);
}

pub async fn a_retried_customer_message_lands_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let gateway = app.key(pb::Role::Gateway, None).await;
    let mut gw = app.escalation_as(&gateway);
    let mut tickets = app.tickets();
    let (ticket, _) = escalate(&mut app.escalation(), escalation("conv-rid", 1)).await;
    let message = |text: &str, request_id: &str| pb::PostCustomerMessageRequest {
        request_id: request_id.into(),
        ..customer_message("conv-rid", text, "")
    };

    let first = gw
        .post_customer_message(message("Still broken", "retry-1"))
        .await
        .unwrap()
        .into_inner();
    assert!(!first.duplicate);
    let again = gw
        .post_customer_message(message("Still broken", "retry-1"))
        .await
        .unwrap()
        .into_inner();
    assert!(again.duplicate, "a retry is reported as one");
    assert_eq!(again.entry.unwrap().id, first.entry.unwrap().id);
    let landed = feed(&mut tickets, &ticket.id)
        .await
        .into_iter()
        .filter(|e| matches!(&e.detail, Some(pb::activity_entry::Detail::CustomerMessage(m)) if m.text == "Still broken"))
        .count();
    assert_eq!(landed, 1, "the message landed once");

    let reused = gw
        .post_customer_message(message("Something else", "retry-1"))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&reused), vec!["request_id"]);
    // Another key's request id is another request.
    let other = app.key(pb::Role::Gateway, None).await;
    let theirs = app
        .escalation_as(&other)
        .post_customer_message(message("Still broken", "retry-1"))
        .await
        .unwrap()
        .into_inner();
    assert!(!theirs.duplicate);

    // On a closed ticket the message opens one follow-up, however often it is retried.
    crate::harness::set_status(&mut tickets, &ticket.id, pb::TicketStatus::Closed)
        .await
        .unwrap();
    let opened = gw
        .post_customer_message(message("It broke again", "retry-2"))
        .await
        .unwrap()
        .into_inner();
    assert!(opened.follow_up);
    let follow_up = opened.ticket.unwrap();
    for _ in 0..2 {
        let retried = gw
            .post_customer_message(message("It broke again", "retry-2"))
            .await
            .unwrap()
            .into_inner();
        assert!(retried.duplicate);
        assert_eq!(retried.ticket.unwrap().id, follow_up.id);
        assert_eq!(retried.entry.unwrap().id, opened.entry.as_ref().unwrap().id);
    }
    let follow_ups = tickets
        .list_tickets(pb::ListTicketsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .tickets
        .into_iter()
        .filter(|t| t.follow_up_of_id == ticket.id)
        .count();
    assert_eq!(follow_ups, 1, "one follow-up");
}

pub async fn a_page_of_large_tickets_is_cut_short_instead_of_failing(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.max_message_bytes = 1024 * 1024).await;
    let mut tickets = app.tickets();
    // 65,536 three-byte characters: 192 KiB a ticket, 2.3 MiB for the twelve.
    let large = "€".repeat(65_536);
    let mut made = std::collections::HashSet::new();
    for i in 0..12 {
        let ticket = create(
            &mut tickets,
            pb::CreateTicketRequest {
                description: large.clone(),
                ..new_ticket(&format!("large {i}"))
            },
        )
        .await;
        made.insert(ticket.id);
    }
    let mut seen = std::collections::HashSet::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = tickets
            .list_tickets(pb::ListTicketsRequest {
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .expect("a page within the response budget")
            .into_inner();
        pages += 1;
        assert!(
            !page.tickets.is_empty(),
            "every page holds at least one ticket"
        );
        for t in page.tickets {
            assert!(seen.insert(t.id), "no ticket twice");
        }
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, made, "every ticket, over several pages");
    assert!(pages >= 3, "{pages} pages");
}

pub async fn assignees_and_queues_must_exist(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut tickets = app.tickets();
    let nobody = Uuid::now_v7().to_string();
    let made_up = tickets
        .create_ticket(pb::CreateTicketRequest {
            assignee_id: nobody.clone(),
            ..new_ticket("for nobody")
        })
        .await
        .unwrap_err();
    assert_eq!(made_up.code(), Code::NotFound, "{made_up:?}");
    let nowhere = tickets
        .create_ticket(pb::CreateTicketRequest {
            queue_id: nobody.clone(),
            ..new_ticket("for nowhere")
        })
        .await
        .unwrap_err();
    assert_eq!(nowhere.code(), Code::NotFound);

    let ticket = create(&mut tickets, new_ticket("real")).await;
    let update = |field: &str, value: &str| pb::UpdateTicketRequest {
        ticket: Some(pb::Ticket {
            id: ticket.id.clone(),
            assignee_id: if field == "assignee_id" {
                value.into()
            } else {
                String::new()
            },
            queue_id: if field == "queue_id" {
                value.into()
            } else {
                String::new()
            },
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec![field.into()],
        }),
        ..Default::default()
    };
    for field in ["assignee_id", "queue_id"] {
        let refused = tickets
            .update_ticket(update(field, &nobody))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::NotFound, "{field}: {refused:?}");
    }
    assert_eq!(
        get_ticket(&mut tickets, &ticket.id).await.etag,
        ticket.etag,
        "nothing changed"
    );
    let ada = app.agent("Ada").await.to_string();
    let assigned = tickets
        .update_ticket(update("assignee_id", &ada))
        .await
        .expect("a real agent")
        .into_inner()
        .ticket
        .unwrap();
    assert_eq!(assigned.assignee_id, ada);
    tickets
        .update_ticket(update("assignee_id", ""))
        .await
        .expect("unassigning needs no agent");

    let escalated = app
        .escalation()
        .escalate_conversation(pb::EscalateConversationRequest {
            assignee_id: nobody,
            ..escalation("conv-nobody", 1)
        })
        .await
        .unwrap_err();
    assert_eq!(escalated.code(), Code::NotFound);
}

pub async fn a_message_that_would_balloon_when_decoded_is_refused_unread(backend: Backend) {
    let app = spawn_app(backend).await;
    let bot = app.key(pb::Role::Bot, None).await;
    // Two bytes each on the wire, a whole struct each in memory.
    let mut request = escalation("balloon", 1);
    if let Some(conversation) = request.conversation.as_mut() {
        conversation.transcript = vec![pb::TranscriptMessage::default(); 1_000_000];
    }
    let refused = app
        .escalation_as(&bot)
        .escalate_conversation(request)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");

    // An ordinary escalation right after is served.
    escalate(&mut app.escalation_as(&bot), escalation("ordinary", 3)).await;
}

pub async fn a_start_that_cannot_listen_makes_no_admin_key(backend: Backend) {
    use ticketd::app::App;

    let database = crate::harness::TestDatabase::create(&backend).await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut settings = crate::harness::settings_for(&database);
    settings.bootstrap_key = None;
    settings.listen = taken.local_addr().unwrap().to_string();
    assert!(
        App::build(settings.clone()).await.is_err(),
        "the port is taken"
    );
    settings.listen = "127.0.0.1:0".into();
    let app = App::build(settings).await.expect("build");
    assert!(
        app.bootstrap_secret().is_some(),
        "the first start that serves makes the key, and shows it"
    );
}
