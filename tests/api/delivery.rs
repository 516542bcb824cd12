//! Outbound delivery: replies stream to channel gateways, leased, redelivered, acked.

use std::collections::HashMap;
use std::time::Duration;

use ticketd::grpc::pb;
use tokio_stream::StreamExt;
use tonic::Code;
use tonic::codec::Streaming;

use crate::bridge::{escalate, escalation};
use crate::harness::{
    Backend, Escalation, Tickets, spawn_app, spawn_app_with, spawn_app_with_manual_clock,
};
use crate::harness::{create, feed, new_ticket};

async fn subscribe(
    client: &mut Escalation,
    group: &str,
) -> Streaming<pb::SubscribeChannelResponse> {
    client
        .subscribe_channel(pb::SubscribeChannelRequest {
            channel: pb::Channel::Chat as i32,
            consumer_group: group.into(),
        })
        .await
        .expect("subscribe")
        .into_inner()
}

async fn next(
    stream: &mut Streaming<pb::SubscribeChannelResponse>,
    within: Duration,
) -> Option<pb::OutboundMessage> {
    match tokio::time::timeout(within, stream.next()).await {
        Ok(Some(Ok(response))) => response.message,
        Ok(Some(Err(status))) => panic!("stream failed: {status:?}"),
        Ok(None) | Err(_) => None,
    }
}

async fn reply(tickets: &mut Tickets, ticket_id: &str, body: &str) -> pb::ActivityEntry {
    tickets
        .add_reply(pb::AddReplyRequest {
            ticket_id: ticket_id.into(),
            body: body.into(),
            ..Default::default()
        })
        .await
        .expect("reply")
        .into_inner()
        .entry
        .unwrap()
}

/// Acknowledges `message` as the subscriber it was delivered to.
async fn ack(
    client: &mut Escalation,
    message: &pb::OutboundMessage,
    outcome: pb::DeliveryOutcome,
) -> pb::DeliveryStatus {
    client
        .ack_delivery(ack_request(message, outcome))
        .await
        .expect("ack")
        .into_inner()
        .status()
}

fn ack_request(
    message: &pb::OutboundMessage,
    outcome: pb::DeliveryOutcome,
) -> pb::AckDeliveryRequest {
    pb::AckDeliveryRequest {
        message_id: message.message_id.clone(),
        outcome: outcome as i32,
        provider_message_id: format!("prov-{}", message.message_id),
        error: String::new(),
        consumer_group: message.consumer_group.clone(),
        lease_id: message.lease_id.clone(),
    }
}

pub async fn each_reply_reaches_one_subscriber_per_group(backend: Backend) {
    let app = spawn_app(backend).await;
    let gateway = app.key(pb::Role::Gateway, None).await;
    let mut gw = app.escalation_as(&gateway);
    let (ticket, _) = escalate(&mut app.escalation(), escalation("conv-d1", 2)).await;
    let mut a = subscribe(&mut gw, "chat-gw").await;
    let mut b = subscribe(&mut gw, "chat-gw").await;
    let mut audit = subscribe(&mut gw, "audit").await;

    let mut tickets = app.tickets();
    for i in 0..10 {
        reply(&mut tickets, &ticket.id, &format!("reply {i}")).await;
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut received = 0;
    while received < 10 {
        let message = tokio::select! {
            m = next(&mut a, Duration::from_secs(10)) => m,
            m = next(&mut b, Duration::from_secs(10)) => m,
        };
        let message = message.expect("every reply arrives within the group");
        assert_eq!(
            message.recipient, "conv-d1",
            "chat replies go to the conversation"
        );
        assert_eq!(message.conversation_id, "conv-d1");
        assert_eq!(message.ticket_number, ticket.number);
        assert_eq!(message.attempt, 1);
        *seen.entry(message.message_id.clone()).or_default() += 1;
        received += 1;
        assert_eq!(message.consumer_group, "chat-gw");
        ack(&mut gw, &message, pb::DeliveryOutcome::Delivered).await;
    }
    assert_eq!(seen.len(), 10, "ten distinct messages");
    assert!(
        seen.values().all(|n| *n == 1),
        "no message went to two subscribers: {seen:?}"
    );
    assert!(next(&mut a, Duration::from_millis(500)).await.is_none());
    assert!(next(&mut b, Duration::from_millis(100)).await.is_none());

    let mut audited = Vec::new();
    while let Some(message) = next(&mut audit, Duration::from_secs(5)).await {
        audited.push(message.body);
        if audited.len() == 10 {
            break;
        }
    }
    let expected: Vec<String> = (0..10).map(|i| format!("reply {i}")).collect();
    assert_eq!(
        audited, expected,
        "another group gets every message, in order"
    );
}

pub async fn an_unacknowledged_message_comes_back_after_its_lease(backend: Backend) {
    // The default lease: 30 seconds.
    let app = spawn_app_with_manual_clock(backend).await;
    let mut gw = app.escalation();
    let (ticket, _) = escalate(&mut gw, escalation("conv-d2", 1)).await;
    let mut stream = subscribe(&mut gw, "").await;
    reply(&mut app.tickets(), &ticket.id, "are you there?").await;

    let first = next(&mut stream, Duration::from_secs(5))
        .await
        .expect("delivered");
    assert_eq!(first.attempt, 1);
    assert_eq!(first.consumer_group, "default");
    app.clock.advance(chrono::Duration::seconds(29));
    assert!(
        next(&mut stream, Duration::from_millis(500))
            .await
            .is_none(),
        "not offered again while the lease holds"
    );
    app.clock.advance(chrono::Duration::seconds(1));
    let again = next(&mut stream, Duration::from_secs(5))
        .await
        .expect("redelivered after the lease");
    assert_eq!(again.message_id, first.message_id);
    assert_eq!(again.attempt, 2);
    assert_eq!(
        again.lease_id, first.lease_id,
        "the same subscriber holds it"
    );
    ack(&mut gw, &again, pb::DeliveryOutcome::Delivered).await;
    app.clock.advance(chrono::Duration::minutes(5));
    assert!(
        next(&mut stream, Duration::from_millis(1000))
            .await
            .is_none(),
        "acked messages stay acked"
    );
}

pub async fn a_dropped_stream_hands_its_messages_back_at_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut gw = app.escalation();
    let (ticket, _) = escalate(&mut gw, escalation("conv-d3", 1)).await;
    reply(
        &mut app.tickets(),
        &ticket.id,
        "queued while nobody listens",
    )
    .await;

    let mut first = subscribe(&mut gw, "g").await;
    let message = next(&mut first, Duration::from_secs(5))
        .await
        .expect("delivered");
    drop(first);

    let mut second = subscribe(&mut gw, "g").await;
    let again = next(&mut second, Duration::from_secs(5))
        .await
        .expect("redelivered well before the 30 s lease runs out");
    assert_eq!(again.message_id, message.message_id);
    assert_eq!(again.attempt, 2);
}

pub async fn acknowledgements_show_on_the_reply_and_in_the_feed(backend: Backend) {
    let app = spawn_app(backend).await;
    let gateway = app.key(pb::Role::Gateway, None).await;
    let mut gw = app.escalation_as(&gateway);
    let (ticket, _) = escalate(&mut app.escalation(), escalation("conv-d4", 1)).await;
    let mut tickets = app.tickets();
    let entry = reply(&mut tickets, &ticket.id, "Fixed it for you.").await;
    let Some(pb::activity_entry::Detail::Reply(sent)) = entry.detail else {
        panic!("reply detail expected");
    };
    assert_eq!(
        sent.channel(),
        pb::Channel::Chat,
        "replies default to the conversation's channel"
    );

    let mut stream = subscribe(&mut gw, "").await;
    let message = next(&mut stream, Duration::from_secs(5)).await.unwrap();
    assert_eq!(message.message_id, sent.message_id);
    let status = ack(&mut gw, &message, pb::DeliveryOutcome::Delivered).await;
    assert_eq!(status, pb::DeliveryStatus::Delivered);
    let repeat = ack(&mut gw, &message, pb::DeliveryOutcome::Failed).await;
    assert_eq!(
        repeat,
        pb::DeliveryStatus::Delivered,
        "the first outcome stands"
    );

    let entries = feed(&mut tickets, &ticket.id).await;
    let shown = entries
        .iter()
        .find_map(|e| match &e.detail {
            Some(pb::activity_entry::Detail::Reply(r)) => Some(r.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(shown.delivery_status(), pb::DeliveryStatus::Delivered);
    assert_eq!(
        shown.provider_message_id,
        format!("prov-{}", message.message_id)
    );
    let receipts: Vec<pb::DeliveryReceipt> = entries
        .iter()
        .filter_map(|e| match &e.detail {
            Some(pb::activity_entry::Detail::DeliveryReceipt(r)) => Some(r.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(receipts.len(), 1, "one receipt per delivery");
    assert_eq!(receipts[0].status(), pb::DeliveryStatus::Delivered);
    assert_eq!(receipts[0].attempts, 1);

    let unknown = gw
        .ack_delivery(pb::AckDeliveryRequest {
            message_id: uuid::Uuid::new_v4().to_string(),
            outcome: pb::DeliveryOutcome::Delivered as i32,
            lease_id: message.lease_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    let other_group = gw
        .ack_delivery(pb::AckDeliveryRequest {
            message_id: message.message_id.clone(),
            outcome: pb::DeliveryOutcome::Delivered as i32,
            consumer_group: "never-subscribed".into(),
            lease_id: message.lease_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(other_group.code(), Code::NotFound);
    let no_outcome = gw
        .ack_delivery(pb::AckDeliveryRequest {
            message_id: message.message_id.clone(),
            lease_id: message.lease_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        crate::harness::violated_fields(&no_outcome),
        vec!["outcome"]
    );
    let no_lease = gw
        .ack_delivery(pb::AckDeliveryRequest {
            lease_id: String::new(),
            ..ack_request(&message, pb::DeliveryOutcome::Delivered)
        })
        .await
        .unwrap_err();
    assert_eq!(crate::harness::violated_fields(&no_lease), vec!["lease_id"]);
}

pub async fn a_failed_delivery_is_reported_with_its_error(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut gw = app.escalation();
    let (ticket, _) = escalate(&mut gw, escalation("conv-d5", 1)).await;
    let mut tickets = app.tickets();
    tickets
        .add_reply(pb::AddReplyRequest {
            ticket_id: ticket.id.clone(),
            body: "Sent by email instead".into(),
            channel: pb::Channel::Email as i32,
            attachments: vec![pb::Attachment {
                name: "invoice.pdf".into(),
                content_type: "application/pdf".into(),
                content: b"%PDF-1.7".to_vec(),
                ..Default::default()
            }],
            request_id: String::new(),
        })
        .await
        .unwrap();
    let mut email = gw
        .subscribe_channel(pb::SubscribeChannelRequest {
            channel: pb::Channel::Email as i32,
            consumer_group: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let message = next(&mut email, Duration::from_secs(5)).await.unwrap();
    assert_eq!(message.recipient, "ada@example.com");
    assert_eq!(
        message.subject,
        format!("Re: [#{}] {}", ticket.number, ticket.subject)
    );
    assert_eq!(message.attachments.len(), 1);
    assert_eq!(message.attachments[0].content, b"%PDF-1.7");
    gw.ack_delivery(pb::AckDeliveryRequest {
        message_id: message.message_id.clone(),
        outcome: pb::DeliveryOutcome::Failed as i32,
        error: "mailbox full".into(),
        lease_id: message.lease_id.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    let shown = feed(&mut tickets, &ticket.id)
        .await
        .into_iter()
        .find_map(|e| match e.detail {
            Some(pb::activity_entry::Detail::Reply(r)) => Some(r),
            _ => None,
        })
        .unwrap();
    assert_eq!(shown.delivery_status(), pb::DeliveryStatus::Failed);
    assert_eq!(shown.delivery_error, "mailbox full");
}

pub async fn gateway_keys_can_be_limited_to_channels(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut admin = app.admin();
    let sms_only = admin
        .create_api_key(pb::CreateApiKeyRequest {
            name: "sms gateway".into(),
            role: pb::Role::Gateway as i32,
            channels: vec![pb::Channel::Sms as i32],
            sources: vec![],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        sms_only.api_key.unwrap().channels,
        vec![pb::Channel::Sms as i32]
    );
    let mut gw = app.escalation_as(&sms_only.secret);

    let chat = gw
        .subscribe_channel(pb::SubscribeChannelRequest {
            channel: pb::Channel::Chat as i32,
            consumer_group: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(chat.code(), Code::PermissionDenied);
    gw.subscribe_channel(pb::SubscribeChannelRequest {
        channel: pb::Channel::Sms as i32,
        consumer_group: String::new(),
    })
    .await
    .unwrap();

    let (ticket, _) = escalate(&mut app.escalation(), escalation("conv-d6", 1)).await;
    let posted = gw
        .post_customer_message(crate::bridge::customer_message("conv-d6", "hi", "sms-1"))
        .await
        .unwrap_err();
    assert_eq!(
        posted.code(),
        Code::PermissionDenied,
        "a CHAT message through an SMS key"
    );
    // A ticket on no channel (made by CreateTicket) is not an SMS key's either, though
    // the message names SMS; a key for every channel may add to it.
    let plain = create(&mut app.tickets(), new_ticket("on no channel")).await;
    let onto_plain = |channel: pb::Channel| pb::PostCustomerMessageRequest {
        ticket_id: plain.id.clone(),
        channel: channel as i32,
        sender: "Ada".into(),
        text: "about that ticket".into(),
        ..Default::default()
    };
    let refused = gw
        .post_customer_message(onto_plain(pb::Channel::Sms))
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        Code::PermissionDenied,
        "{}",
        refused.message()
    );
    app.escalation()
        .post_customer_message(onto_plain(pb::Channel::Sms))
        .await
        .unwrap();

    let mut tickets = app.tickets();
    reply(&mut tickets, &ticket.id, "chat reply").await;
    let mut any = subscribe(&mut app.escalation(), "").await;
    let message = next(&mut any, Duration::from_secs(5)).await.unwrap();
    let acked = gw
        .ack_delivery(ack_request(&message, pb::DeliveryOutcome::Delivered))
        .await
        .unwrap_err();
    assert_eq!(acked.code(), Code::PermissionDenied);

    let not_gateway = admin
        .create_api_key(pb::CreateApiKeyRequest {
            name: "bot".into(),
            role: pb::Role::Bot as i32,
            channels: vec![pb::Channel::Sms as i32],
            sources: vec![],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        crate::harness::violated_fields(&not_gateway),
        vec!["channels"]
    );
}

pub async fn only_the_lease_holder_may_acknowledge(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut gw = app.escalation();
    let (ticket, _) = escalate(&mut gw, escalation("conv-d7", 1)).await;
    let mut tickets = app.tickets();
    reply(&mut tickets, &ticket.id, "first").await;

    let mut first = subscribe(&mut gw, "g").await;
    let held = next(&mut first, Duration::from_secs(5))
        .await
        .expect("delivered");
    let stranger = gw
        .ack_delivery(pb::AckDeliveryRequest {
            lease_id: uuid::Uuid::now_v7().to_string(),
            ..ack_request(&held, pb::DeliveryOutcome::Failed)
        })
        .await
        .unwrap_err();
    assert_eq!(
        stranger.code(),
        Code::FailedPrecondition,
        "a caller that never leased the message cannot fail it"
    );

    drop(first);
    let mut second = subscribe(&mut gw, "g").await;
    let again = next(&mut second, Duration::from_secs(5))
        .await
        .expect("offered again");
    assert_eq!(again.message_id, held.message_id);
    assert_ne!(again.lease_id, held.lease_id);
    let stale = gw
        .ack_delivery(ack_request(&held, pb::DeliveryOutcome::Failed))
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::FailedPrecondition, "{stale:?}");
    assert_eq!(
        ack(&mut gw, &again, pb::DeliveryOutcome::Delivered).await,
        pb::DeliveryStatus::Delivered,
        "the holder's acknowledgement counts"
    );
    assert_eq!(
        ack(&mut gw, &held, pb::DeliveryOutcome::Failed).await,
        pb::DeliveryStatus::Delivered,
        "once finished, any repeat gets the outcome that stood"
    );

    // Queued and never leased by anyone in this group: nobody can finish it.
    reply(&mut tickets, &ticket.id, "second").await;
    let mut other = subscribe(&mut gw, "other").await;
    let queued = next(&mut other, Duration::from_secs(5)).await.unwrap();
    let never_leased = gw
        .ack_delivery(pb::AckDeliveryRequest {
            message_id: queued.message_id.clone(),
            consumer_group: "g".into(),
            ..ack_request(&queued, pb::DeliveryOutcome::Failed)
        })
        .await;
    let never_leased = never_leased.unwrap_err();
    assert_eq!(never_leased.code(), Code::FailedPrecondition);
}

pub async fn consumer_groups_are_bounded_and_idle_ones_expire(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.housekeeping_seconds = 1).await;
    let mut gw = app.escalation();
    for i in 0..64 {
        drop(subscribe(&mut gw, &format!("throwaway-{i}")).await);
    }
    let open = |group: &str| pb::SubscribeChannelRequest {
        channel: pb::Channel::Chat as i32,
        consumer_group: group.into(),
    };
    let full = gw.subscribe_channel(open("one-more")).await.unwrap_err();
    assert_eq!(full.code(), Code::ResourceExhausted, "{full:?}");
    gw.subscribe_channel(open("throwaway-3"))
        .await
        .expect("a known group may always subscribe");

    // Nobody has subscribed to the throwaway groups for a long time.
    app.execute_sql(
        "UPDATE channel_consumers SET last_seen_at = '2000-01-01T00:00:00+00:00' \
         WHERE consumer_group LIKE 'throwaway-%' AND consumer_group <> 'throwaway-3'",
    )
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match gw.subscribe_channel(open("one-more")).await {
            Ok(_) => break,
            Err(status) if status.code() == Code::ResourceExhausted => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "idle groups never expired"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(status) => panic!("subscribe failed: {status:?}"),
        }
    }

    // The expired groups left room for new ones; the group that stayed in use kept its
    // place and still gets every message.
    gw.subscribe_channel(open("and-another"))
        .await
        .expect("room for more groups");
    let (ticket, _) = escalate(&mut gw, escalation("conv-d8", 1)).await;
    let entry = reply(&mut app.tickets(), &ticket.id, "after expiry").await;
    let Some(pb::activity_entry::Detail::Reply(sent)) = entry.detail else {
        panic!("reply detail expected");
    };
    let mut kept = subscribe(&mut gw, "throwaway-3").await;
    let message = next(&mut kept, Duration::from_secs(5)).await.unwrap();
    assert_eq!(message.message_id, sent.message_id);
}

pub async fn a_delivery_made_before_the_stream_dropped_may_still_be_acknowledged(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut gw = app.escalation();
    let (ticket, _) = escalate(&mut gw, escalation("conv-d9", 1)).await;
    reply(
        &mut app.tickets(),
        &ticket.id,
        "sent just before a reconnect",
    )
    .await;
    let mut stream = subscribe(&mut gw, "g").await;
    let message = next(&mut stream, Duration::from_secs(5)).await.unwrap();
    drop(stream);
    // The stream's end hands the message back to the queue; nobody has taken it since.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        ack(&mut gw, &message, pb::DeliveryOutcome::Delivered).await,
        pb::DeliveryStatus::Delivered,
        "the gateway that sent it reports it"
    );
    let mut again = subscribe(&mut gw, "g").await;
    assert!(
        next(&mut again, Duration::from_millis(1500))
            .await
            .is_none(),
        "an acknowledged message is not offered again"
    );
}

pub async fn messages_left_by_expired_groups_are_not_sent_weeks_late(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.housekeeping_seconds = 1).await;
    let mut gw = app.escalation();
    let (ticket, _) = escalate(&mut gw, escalation("conv-d10", 1)).await;
    drop(subscribe(&mut gw, "solo").await);
    let entry = reply(&mut app.tickets(), &ticket.id, "nobody will read this").await;
    let Some(pb::activity_entry::Detail::Reply(sent)) = entry.detail else {
        panic!("reply detail expected");
    };
    // Long ago: the message, and the last time anyone subscribed as "solo".
    app.execute_sql(
        "UPDATE outbound_messages SET created_at = '2000-01-01T00:00:00+00:00'; \
         UPDATE channel_consumers SET last_seen_at = '2000-01-01T00:00:00+00:00'",
    )
    .await;
    let mut tickets = app.tickets();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let shown = feed(&mut tickets, &ticket.id)
            .await
            .into_iter()
            .find_map(|e| match e.detail {
                Some(pb::activity_entry::Detail::Reply(r)) if r.message_id == sent.message_id => {
                    Some(r)
                }
                _ => None,
            })
            .unwrap();
        if shown.delivery_status() == pb::DeliveryStatus::Failed {
            assert!(
                shown.delivery_error.contains("expired"),
                "{}",
                shown.delivery_error
            );
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never given up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut back = subscribe(&mut gw, "solo").await;
    assert!(
        next(&mut back, Duration::from_millis(1500)).await.is_none(),
        "a group that comes back is not sent what was abandoned"
    );
}

pub async fn outbound_messages_say_what_they_are_and_email_threads(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        s.email_address = "help@acme.test".parse().unwrap();
    })
    .await;
    let gateway = app.key(pb::Role::Gateway, None).await;
    let mut gw = app.escalation_as(&gateway);
    let mut by_mail = escalation("mail-1", 1);
    by_mail.conversation.as_mut().unwrap().channel = pb::Channel::Email as i32;
    let (mail_ticket, _) = escalate(&mut app.escalation(), by_mail).await;
    let (chat_ticket, _) = escalate(&mut app.escalation(), escalation("chat-1", 1)).await;
    let mut mail = gw
        .subscribe_channel(pb::SubscribeChannelRequest {
            channel: pb::Channel::Email as i32,
            consumer_group: "smtp".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut chat = subscribe(&mut gw, "chat").await;
    let mut tickets = app.tickets();
    reply(&mut tickets, &mail_ticket.id, "Your password is reset.").await;
    reply(&mut tickets, &chat_ticket.id, "Done!").await;

    let email = next(&mut mail, Duration::from_secs(10))
        .await
        .expect("the email");
    assert_eq!(email.kind(), pb::OutboundKind::Reply);
    assert_eq!(email.source, "helpbot");
    assert_eq!(email.recipient, "ada@example.com");
    assert!(
        email
            .subject
            .contains(&format!("[#{}]", mail_ticket.number)),
        "{}",
        email.subject
    );
    let headers = email.email.expect("threading headers");
    let message_id = uuid::Uuid::parse_str(&email.message_id).unwrap();
    let ticket_id = uuid::Uuid::parse_str(&mail_ticket.id).unwrap();
    assert_eq!(
        headers.message_id,
        format!("<{}@acme.test>", message_id.simple())
    );
    assert_eq!(
        headers.in_reply_to,
        format!("<ticket.{}@acme.test>", ticket_id.simple())
    );
    assert_eq!(headers.references, vec![headers.in_reply_to.clone()]);
    assert_eq!(
        headers.reply_to,
        format!("help+t{}@acme.test", ticket_id.simple())
    );

    let chat_message = next(&mut chat, Duration::from_secs(10))
        .await
        .expect("the chat message");
    assert_eq!(chat_message.kind(), pb::OutboundKind::Reply);
    assert_eq!(chat_message.source, "helpbot");
    assert_eq!(chat_message.email, None, "only email has mail headers");
}
