//! The conversation bridge: escalation, conversation lookups, customer messages.

use std::collections::HashSet;

use prost_types::Timestamp;
use ticketd::grpc::pb;
use tonic::Code;
use uuid::Uuid;

use crate::harness::{Backend, Escalation, feed, set_status, spawn_app, violated_fields};

pub fn transcript(count: usize) -> Vec<pb::TranscriptMessage> {
    (0..count)
        .map(|i| {
            let (role, author) = if i % 2 == 0 {
                (pb::MessageRole::Customer, "Ada")
            } else {
                (pb::MessageRole::Bot, "helpbot")
            };
            pb::TranscriptMessage {
                id: format!("m{i}"),
                role: role as i32,
                author: author.into(),
                text: format!("message {i}"),
                sent_at: Some(Timestamp {
                    seconds: 1_800_000_000 + i as i64 * 30,
                    nanos: 0,
                }),
                attachments: Vec::new(),
            }
        })
        .collect()
}

pub fn escalation(conversation_id: &str, messages: usize) -> pb::EscalateConversationRequest {
    pb::EscalateConversationRequest {
        conversation: Some(pb::Conversation {
            source: "helpbot".into(),
            conversation_id: conversation_id.into(),
            channel: pb::Channel::Chat as i32,
            transcript: transcript(messages),
            summary: "Customer cannot reset their password".into(),
            intent: "account.password_reset".into(),
            metadata: [("locale".to_string(), "en-GB".to_string())].into(),
        }),
        contact: Some(pb::Contact {
            external_id: format!("crm-{conversation_id}"),
            name: "Ada Lovelace".into(),
            email: "ada@example.com".into(),
            ..Default::default()
        }),
        reason: "customer asked for a human".into(),
        ..Default::default()
    }
}

pub async fn escalate(
    client: &mut Escalation,
    request: pb::EscalateConversationRequest,
) -> (pb::Ticket, bool) {
    let response = client
        .escalate_conversation(request)
        .await
        .expect("escalate")
        .into_inner();
    (response.ticket.expect("ticket"), response.created)
}

fn transcript_of(entries: &[pb::ActivityEntry]) -> Vec<pb::TranscriptMessage> {
    entries
        .iter()
        .filter_map(|e| match &e.detail {
            Some(pb::activity_entry::Detail::TranscriptMessage(m)) => Some(m.clone()),
            _ => None,
        })
        .collect()
}

pub async fn escalation_keeps_the_whole_transcript_in_order(backend: Backend) {
    let app = spawn_app(backend).await;
    let bot = app.key(pb::Role::Bot, None).await;
    let mut client = app.escalation_as(&bot);

    let (ticket, created) = escalate(&mut client, escalation("conv-1", 20)).await;
    assert!(created);
    assert_eq!(ticket.subject, "Customer cannot reset their password");
    assert_eq!(ticket.channel(), pb::Channel::Chat);
    assert_eq!(ticket.status(), pb::TicketStatus::Open);
    assert_eq!(ticket.contact.as_ref().unwrap().external_id, "crm-conv-1");

    let entries = feed(&mut app.tickets(), &ticket.id).await;
    let kept = transcript_of(&entries);
    assert_eq!(kept.len(), 20);
    for (i, message) in kept.iter().enumerate() {
        assert_eq!(message.text, format!("message {i}"));
        let role = if i % 2 == 0 {
            pb::MessageRole::Customer
        } else {
            pb::MessageRole::Bot
        };
        assert_eq!(message.role(), role);
        assert_eq!(
            message.sent_at.unwrap().seconds,
            1_800_000_000 + i as i64 * 30
        );
    }
    let transcript_entries: Vec<&pb::ActivityEntry> = entries
        .iter()
        .filter(|e| e.r#type() == pb::EventType::TranscriptMessage)
        .collect();
    assert_eq!(
        transcript_entries[0].actor.as_ref().unwrap().kind(),
        pb::ActorKind::Customer
    );
    assert_eq!(
        transcript_entries[1].actor.as_ref().unwrap().kind(),
        pb::ActorKind::Bot
    );
    assert!(
        transcript_entries
            .iter()
            .all(|e| e.visibility() == pb::Visibility::Public)
    );

    let escalated = entries
        .iter()
        .find_map(|e| match &e.detail {
            Some(pb::activity_entry::Detail::Escalated(x)) => Some(x.clone()),
            _ => None,
        })
        .expect("the escalation is on the ticket");
    assert_eq!(escalated.reason, "customer asked for a human");
    assert_eq!(escalated.intent, "account.password_reset");
    assert_eq!(
        escalated.metadata.get("locale").map(String::as_str),
        Some("en-GB")
    );

    let found = client
        .get_conversation_ticket(pb::GetConversationTicketRequest {
            source: "helpbot".into(),
            conversation_id: "conv-1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .ticket
        .unwrap();
    assert_eq!(found.id, ticket.id);
    let missing = client
        .get_conversation_ticket(pb::GetConversationTicketRequest {
            source: "helpbot".into(),
            conversation_id: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
}

pub async fn escalating_again_returns_the_same_ticket_with_only_new_messages(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut client = app.escalation();
    let (first, _) = escalate(&mut client, escalation("conv-2", 5)).await;
    let (retry, created) = escalate(&mut client, escalation("conv-2", 5)).await;
    assert!(!created);
    assert_eq!(retry.id, first.id);
    let (more, created) = escalate(&mut client, escalation("conv-2", 8)).await;
    assert!(!created);
    assert_eq!(more.id, first.id);

    let kept = transcript_of(&feed(&mut app.tickets(), &first.id).await);
    let texts: Vec<String> = kept.iter().map(|m| m.text.clone()).collect();
    let expected: Vec<String> = (0..8).map(|i| format!("message {i}")).collect();
    assert_eq!(texts, expected, "messages are kept once each, in order");

    // A conversation stays on its channel, and "email" is the source of conversations
    // opened by email: escalations that say otherwise change nothing.
    let mut elsewhere = escalation("conv-2", 9);
    elsewhere.conversation.as_mut().unwrap().channel = pb::Channel::Sms as i32;
    let err = client.escalate_conversation(elsewhere).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&err), vec!["conversation.channel"]);
    let mut email = escalation("t1@example.com", 1);
    email.conversation.as_mut().unwrap().source = "email".into();
    let err = client.escalate_conversation(email).await.unwrap_err();
    assert_eq!(violated_fields(&err), vec!["conversation.source"]);
    assert_eq!(
        transcript_of(&feed(&mut app.tickets(), &first.id).await).len(),
        8
    );

    // Without message ids, the content identifies a message.
    let mut no_ids = escalation("conv-3", 3);
    for m in &mut no_ids.conversation.as_mut().unwrap().transcript {
        m.id.clear();
    }
    let (a, _) = escalate(&mut client, no_ids.clone()).await;
    escalate(&mut client, no_ids).await;
    assert_eq!(
        transcript_of(&feed(&mut app.tickets(), &a.id).await).len(),
        3
    );
}

pub async fn concurrent_escalations_of_one_conversation_make_one_ticket(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut handles = Vec::new();
    for _ in 0..8 {
        let mut client = app.escalation();
        handles.push(tokio::spawn(async move {
            escalate(&mut client, escalation("conv-race", 4)).await
        }));
    }
    let mut ids = HashSet::new();
    let mut created = 0;
    for handle in handles {
        let (ticket, was_created) = handle.await.unwrap();
        ids.insert(ticket.id);
        created += usize::from(was_created);
    }
    assert_eq!(ids.len(), 1);
    assert_eq!(created, 1);
    let id = ids.into_iter().next().unwrap();
    assert_eq!(transcript_of(&feed(&mut app.tickets(), &id).await).len(), 4);
}

pub async fn escalations_are_validated_and_limited(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut client = app.escalation();

    let too_many = client
        .escalate_conversation(escalation("big", 501))
        .await
        .unwrap_err();
    assert_eq!(too_many.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&too_many), vec!["conversation.transcript"]);
    assert!(too_many.message().contains("500"), "{}", too_many.message());

    let mut huge = escalation("huge", 3);
    for m in &mut huge.conversation.as_mut().unwrap().transcript {
        m.text = "x".repeat(60_000);
        m.attachments = vec![pb::Attachment {
            name: "dump.bin".into(),
            content_type: "application/octet-stream".into(),
            content: vec![1; 400_000],
            ..Default::default()
        }];
    }
    let err = client.escalate_conversation(huge).await.unwrap_err();
    assert_eq!(violated_fields(&err), vec!["conversation.transcript"]);
    assert!(err.message().contains("bytes"), "{}", err.message());

    // Malformed messages are reported first…
    let mut malformed = escalation("bad", 2);
    {
        let c = malformed.conversation.as_mut().unwrap();
        c.transcript[1].sent_at = None;
        c.transcript[0].role = 0;
    }
    let err = client.escalate_conversation(malformed).await.unwrap_err();
    let mut fields = violated_fields(&err);
    fields.sort();
    assert_eq!(
        fields,
        vec![
            "conversation.transcript[0].role",
            "conversation.transcript[1].sent_at"
        ]
    );

    // Times a Timestamp cannot hold (past the year 9999, nanos outside a second) would
    // break every answer that repeats them; they are refused.
    for (seconds, nanos) in [(253_402_300_800, 0), (0, -1), (0, 1_000_000_000)] {
        let mut out_of_range = escalation("bad-time", 2);
        out_of_range.conversation.as_mut().unwrap().transcript[1].sent_at =
            Some(Timestamp { seconds, nanos });
        let err = client
            .escalate_conversation(out_of_range)
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{seconds}.{nanos}");
        assert_eq!(
            violated_fields(&err),
            vec!["conversation.transcript[1].sent_at"]
        );
    }
    // The last moment of 9999 is a time like any other.
    let mut last = escalation("last-time", 2);
    last.conversation.as_mut().unwrap().transcript[1].sent_at = Some(Timestamp {
        seconds: 253_402_300_799,
        nanos: 999_999_999,
    });
    let (ticket, _) = escalate(&mut client, last).await;
    // …and every answer that repeats it can say it, RFC 3339 included.
    let activity = reqwest::Client::new()
        .get(format!(
            "http://{}/v1/tickets/{}/activity",
            app.addr, ticket.id
        ))
        .bearer_auth(&app.admin_secret)
        .send()
        .await
        .unwrap();
    assert_eq!(activity.status(), 200);
    let body = activity.text().await.unwrap();
    assert!(body.contains("9999-12-31T23:59:59.999999999Z"), "{body}");

    // …then every missing piece at once.
    let mut incomplete = escalation("bad", 2);
    {
        let c = incomplete.conversation.as_mut().unwrap();
        c.channel = 0;
        c.source.clear();
    }
    incomplete.contact = None;
    let err = client.escalate_conversation(incomplete).await.unwrap_err();
    let mut fields = violated_fields(&err);
    fields.sort();
    assert_eq!(
        fields,
        vec!["contact", "conversation.channel", "conversation.source"]
    );

    let listed = app
        .tickets()
        .list_tickets(pb::ListTicketsRequest::default())
        .await
        .unwrap();
    let stored: Vec<String> = listed
        .into_inner()
        .tickets
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(
        stored,
        vec![ticket.id],
        "rejected escalations store nothing"
    );
}

pub async fn only_bots_and_admins_escalate_and_only_gateways_post_messages(backend: Backend) {
    let app = spawn_app(backend).await;
    let agent = app.key(pb::Role::Agent, Some(app.agent("Ada").await)).await;
    let gateway = app.key(pb::Role::Gateway, None).await;
    let bot = app.key(pb::Role::Bot, None).await;
    for secret in [&agent, &gateway] {
        let err = app
            .escalation_as(secret)
            .escalate_conversation(escalation("roles", 1))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);
    }
    escalate(&mut app.escalation_as(&bot), escalation("roles", 1)).await;
    let err = app
        .escalation_as(&bot)
        .post_customer_message(customer_message("roles", "hello", "x1"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    app.escalation_as(&gateway)
        .post_customer_message(customer_message("roles", "hello", "x1"))
        .await
        .unwrap();
}

pub fn customer_message(
    conversation_id: &str,
    text: &str,
    external_id: &str,
) -> pb::PostCustomerMessageRequest {
    pb::PostCustomerMessageRequest {
        source: "helpbot".into(),
        conversation_id: conversation_id.into(),
        channel: pb::Channel::Chat as i32,
        sender: "ada@chat".into(),
        text: text.into(),
        external_message_id: external_id.into(),
        ..Default::default()
    }
}

pub async fn customer_messages_land_on_their_ticket_and_reopen_it(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut client = app.escalation();
    let mut tickets = app.tickets();
    let (ticket, _) = escalate(&mut client, escalation("conv-4", 2)).await;
    set_status(&mut tickets, &ticket.id, pb::TicketStatus::Waiting)
        .await
        .unwrap();

    let posted = client
        .post_customer_message(customer_message("conv-4", "Still broken!", "prov-1"))
        .await
        .unwrap()
        .into_inner();
    assert!(!posted.duplicate && !posted.follow_up);
    let after = posted.ticket.unwrap();
    assert_eq!(after.id, ticket.id);
    assert_eq!(
        after.status(),
        pb::TicketStatus::Open,
        "a waiting ticket reopens"
    );
    let entry = posted.entry.unwrap();
    assert_eq!(entry.r#type(), pb::EventType::CustomerMessage);
    assert_eq!(entry.visibility(), pb::Visibility::Public);
    assert_eq!(
        entry.actor.as_ref().unwrap().kind(),
        pb::ActorKind::Customer
    );

    let again = client
        .post_customer_message(customer_message("conv-4", "Still broken!", "prov-1"))
        .await
        .unwrap()
        .into_inner();
    assert!(again.duplicate, "a repeated provider id is a no-op");
    assert_eq!(again.entry.unwrap().id, entry.id);

    set_status(&mut tickets, &ticket.id, pb::TicketStatus::Resolved)
        .await
        .unwrap();
    let by_ticket = client
        .post_customer_message(pb::PostCustomerMessageRequest {
            source: String::new(),
            conversation_id: String::new(),
            ticket_id: ticket.id.clone(),
            ..customer_message("", "One more thing", "prov-2")
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        by_ticket.ticket.unwrap().status(),
        pb::TicketStatus::Open,
        "a resolved ticket reopens"
    );

    let messages = feed(&mut tickets, &ticket.id)
        .await
        .into_iter()
        .filter(|e| e.r#type() == pb::EventType::CustomerMessage)
        .count();
    assert_eq!(messages, 2);

    let unknown = client
        .post_customer_message(pb::PostCustomerMessageRequest {
            source: String::new(),
            conversation_id: String::new(),
            ticket_id: Uuid::now_v7().to_string(),
            ..customer_message("", "hi", "")
        })
        .await
        .unwrap_err();
    assert_eq!(
        unknown.code(),
        Code::NotFound,
        "an unknown ticket is not made up"
    );
    let nowhere = client
        .post_customer_message(pb::PostCustomerMessageRequest {
            source: String::new(),
            conversation_id: String::new(),
            ..customer_message("", "hi", "")
        })
        .await
        .unwrap_err();
    assert_eq!(nowhere.code(), Code::InvalidArgument);
}

pub async fn a_message_for_a_closed_ticket_opens_a_linked_follow_up(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut client = app.escalation();
    let mut tickets = app.tickets();
    let (closed, _) = escalate(&mut client, escalation("conv-5", 2)).await;
    set_status(&mut tickets, &closed.id, pb::TicketStatus::Closed)
        .await
        .unwrap();

    let posted = client
        .post_customer_message(customer_message("conv-5", "It broke again", "prov-9"))
        .await
        .unwrap()
        .into_inner();
    assert!(posted.follow_up);
    let follow_up = posted.ticket.unwrap();
    assert_ne!(follow_up.id, closed.id);
    assert_eq!(follow_up.follow_up_of_id, closed.id);
    assert_eq!(follow_up.status(), pb::TicketStatus::Open);
    assert_eq!(
        follow_up.contact.unwrap().external_id,
        closed.contact.unwrap().external_id
    );

    let linked = client
        .get_conversation_ticket(pb::GetConversationTicketRequest {
            source: "helpbot".into(),
            conversation_id: "conv-5".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .ticket
        .unwrap();
    assert_eq!(
        linked.id, follow_up.id,
        "the conversation moves to the follow-up"
    );

    // The bot escalating the same conversation again now finds the follow-up.
    let (again, created) = escalate(&mut client, escalation("conv-5", 3)).await;
    assert!(!created);
    assert_eq!(again.id, follow_up.id);
}

pub async fn a_message_repeated_within_one_transcript_is_kept_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut request = escalation("conv-dup", 3);
    {
        let transcript = &mut request.conversation.as_mut().unwrap().transcript;
        for m in transcript.iter_mut() {
            m.id.clear();
        }
        let copy = transcript[1].clone();
        transcript.push(copy);
    }
    let (ticket, _) = escalate(&mut app.escalation(), request).await;
    let kept = transcript_of(&feed(&mut app.tickets(), &ticket.id).await);
    let texts: Vec<String> = kept.into_iter().map(|m| m.text).collect();
    assert_eq!(texts, vec!["message 0", "message 1", "message 2"]);
}
