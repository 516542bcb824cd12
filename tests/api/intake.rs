//! Intake without a bot: a gateway's message for a conversation ticketd has not seen
//! opens its ticket.

use std::time::Duration;

use ticketd::grpc::pb;
use tokio_stream::StreamExt;
use tonic::Code;

use crate::bridge::{escalate, escalation};
use crate::harness::{Backend, spawn_app, violated_fields};
use crate::routing::{AgentSpec, agent, queue};

fn text_message(from: &str, text: &str, message_id: &str) -> pb::PostCustomerMessageRequest {
    pb::PostCustomerMessageRequest {
        source: "sms-gateway".into(),
        conversation_id: from.into(),
        channel: pb::Channel::Sms as i32,
        sender: from.into(),
        text: text.into(),
        external_message_id: message_id.into(),
        ..Default::default()
    }
}

pub async fn a_text_from_an_unknown_number_opens_a_routed_ticket_and_the_reply_comes_back(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let mut admin = app.admin();
    let sms_desk = queue(
        &mut admin,
        "SMS desk",
        1,
        pb::AssignmentStrategy::RoundRobin,
    )
    .await;
    agent(
        &mut admin,
        AgentSpec {
            name: "Sam",
            queues: vec![&sms_desk.id],
            ..AgentSpec::default()
        },
    )
    .await;
    admin
        .create_routing_rule(pb::CreateRoutingRuleRequest {
            rule: Some(pb::RoutingRule {
                name: "texts to the SMS desk".into(),
                position: 1,
                enabled: true,
                conditions: Some(pb::RuleConditions {
                    channels: vec![pb::Channel::Sms as i32],
                    ..Default::default()
                }),
                actions: Some(pb::RuleActions {
                    queue_id: sms_desk.id.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let gateway = app.key(pb::Role::Gateway, None).await;
    let mut gw = app.escalation_as(&gateway);
    let mut outbox = gw
        .subscribe_channel(pb::SubscribeChannelRequest {
            channel: pb::Channel::Sms as i32,
            consumer_group: "twilio".into(),
        })
        .await
        .unwrap()
        .into_inner();

    let first = gw
        .post_customer_message(text_message(
            "+15550123",
            "My order never arrived\nIt was order 1234.",
            "SM1",
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(first.created && !first.follow_up && !first.duplicate);
    let ticket = first.ticket.unwrap();
    assert_eq!(ticket.subject, "My order never arrived");
    assert_eq!(ticket.channel(), pb::Channel::Sms);
    assert_eq!(ticket.status(), pb::TicketStatus::Open);
    assert_eq!(ticket.queue_id, sms_desk.id, "routed like any new ticket");
    assert!(!ticket.assignee_id.is_empty(), "and assigned");
    assert!(!ticket.sla_clocks.is_empty(), "under SLA");
    let contact = ticket.contact.clone().unwrap();
    assert_eq!(contact.phone, "+15550123");
    assert_eq!(
        first.entry.unwrap().r#type(),
        pb::EventType::CustomerMessage
    );

    // The conversation is known now: the next text joins the ticket, and a retry of the
    // first changes nothing.
    let second = gw
        .post_customer_message(text_message("+15550123", "Any news?", "SM2"))
        .await
        .unwrap()
        .into_inner();
    assert!(!second.created);
    assert_eq!(second.ticket.unwrap().id, ticket.id);
    let again = gw
        .post_customer_message(text_message(
            "+15550123",
            "My order never arrived\nIt was order 1234.",
            "SM1",
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(again.duplicate && !again.created);

    // The agent's reply goes out to the number, saying what it is.
    app.tickets()
        .add_reply(pb::AddReplyRequest {
            ticket_id: ticket.id.clone(),
            body: "It ships today.".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let delivered = tokio::time::timeout(Duration::from_secs(10), outbox.next())
        .await
        .expect("the reply is delivered")
        .unwrap()
        .unwrap()
        .message
        .unwrap();
    assert_eq!(delivered.recipient, "+15550123");
    assert_eq!(delivered.kind(), pb::OutboundKind::Reply);
    assert_eq!(delivered.source, "sms-gateway");
    assert_eq!(delivered.conversation_id, "+15550123");
    assert_eq!(delivered.body, "It ships today.");

    // A new conversation from the same number finds the same contact.
    let other = gw
        .post_customer_message(pb::PostCustomerMessageRequest {
            conversation_id: "+15550123-2".into(),
            ..text_message("+15550123", "Another thing", "SM3")
        })
        .await
        .unwrap()
        .into_inner();
    assert!(other.created);
    let other_ticket = other.ticket.unwrap();
    assert_ne!(other_ticket.id, ticket.id);
    assert_eq!(other_ticket.contact.unwrap().id, contact.id);
}

pub async fn intake_finds_contacts_by_address_and_concurrent_first_messages_open_one_ticket(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    // Ada is known from a chatbot conversation, with her CRM id and email.
    escalate(&mut app.escalation(), escalation("chat-ada", 1)).await;
    let gateway = app.key(pb::Role::Gateway, None).await;
    let mut gw = app.escalation_as(&gateway);
    let mail = |text: &str, message_id: &str| pb::PostCustomerMessageRequest {
        source: "mail".into(),
        conversation_id: "thread-1".into(),
        channel: pb::Channel::Email as i32,
        sender: "ADA@example.com".into(),
        text: text.into(),
        external_message_id: message_id.into(),
        ..Default::default()
    };
    let (mut gw_a, mut gw_b) = (gw.clone(), gw.clone());
    let (a, b) = tokio::join!(
        gw_a.post_customer_message(mail("Invoice is wrong", "<m1@mail>")),
        gw_b.post_customer_message(mail("Also, the address", "<m2@mail>")),
    );
    let (a, b) = (a.unwrap().into_inner(), b.unwrap().into_inner());
    let (a_ticket, b_ticket) = (a.ticket.unwrap(), b.ticket.unwrap());
    assert_eq!(a_ticket.id, b_ticket.id, "one conversation, one ticket");
    assert_eq!(
        [a.created, b.created].iter().filter(|c| **c).count(),
        1,
        "exactly one message opened it"
    );
    assert_eq!(
        a_ticket.contact.unwrap().external_id,
        "crm-chat-ada",
        "the contact is found by email in any case"
    );

    // A text naming Ada's email lands on Ada, but cannot give her a new phone number to
    // send her replies to; and "email" is not a source other channels may use.
    let text = gw
        .post_customer_message(pb::PostCustomerMessageRequest {
            source: "sms".into(),
            conversation_id: "+1888".into(),
            channel: pb::Channel::Sms as i32,
            sender: "+1888".into(),
            text: "I am Ada".into(),
            contact: Some(pb::Contact {
                email: "ada@example.com".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let ada = text.ticket.unwrap().contact.unwrap();
    assert_eq!(ada.external_id, "crm-chat-ada");
    assert_eq!(ada.phone, "", "no address was added to the contact");
    let squatted = gw
        .post_customer_message(pb::PostCustomerMessageRequest {
            source: "email".into(),
            conversation_id: "m@x".into(),
            channel: pb::Channel::Chat as i32,
            text: "hi".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&squatted), vec!["source"]);

    // Without text, the subject says who wrote on which channel; a bad contact address
    // is refused by name.
    let photo = gw
        .post_customer_message(pb::PostCustomerMessageRequest {
            source: "chat-widget".into(),
            conversation_id: "w-9".into(),
            channel: pb::Channel::Chat as i32,
            sender: "Grace".into(),
            attachments: vec![pb::Attachment {
                name: "screenshot.png".into(),
                content_type: "image/png".into(),
                content: vec![1, 2, 3],
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let photo_ticket = photo.ticket.unwrap();
    assert!(photo.created);
    assert_eq!(photo_ticket.subject, "CHAT message from Grace");
    assert_eq!(photo_ticket.contact.unwrap().name, "Grace");
    let bad = gw
        .post_customer_message(pb::PostCustomerMessageRequest {
            conversation_id: "thread-2".into(),
            contact: Some(pb::Contact {
                email: "not an address".into(),
                ..Default::default()
            }),
            ..mail("Hello", "<m3@mail>")
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&bad), vec!["contact.email"]);
}
