//! Auto-responses: acknowledgement, after-hours notice and resolution confirmation, queued
//! with the change that calls for them, delivered as auto-responses, within their limits.

use std::time::Duration;

use chrono::{TimeZone, Utc};
use ticketd::grpc::pb;
use tokio_stream::StreamExt;
use tonic::Code;
use tonic::codec::Streaming;

use crate::bridge::{customer_message, escalate, escalation};
use crate::harness::{
    Backend, TestApp, create, feed, get_ticket, new_ticket, set_status, spawn_app, spawn_app_with,
    spawn_app_with_manual_clock, violated_fields,
};

async fn auto_response(
    app: &TestApp,
    kind: pb::AutoResponseKind,
    channel: pb::Channel,
    template_id: &str,
    calendar_id: &str,
) -> Result<pb::AutoResponse, tonic::Status> {
    app.automation()
        .create_auto_response(pb::CreateAutoResponseRequest {
            auto_response: Some(pb::AutoResponse {
                kind: kind as i32,
                channel: channel as i32,
                template_id: template_id.into(),
                calendar_id: calendar_id.into(),
                enabled: true,
                ..Default::default()
            }),
        })
        .await
        .map(|r| r.into_inner().auto_response.unwrap())
}

async fn gateway(app: &TestApp, channel: pb::Channel) -> Streaming<pb::SubscribeChannelResponse> {
    app.escalation()
        .subscribe_channel(pb::SubscribeChannelRequest {
            channel: channel as i32,
            consumer_group: "gateway".into(),
        })
        .await
        .expect("subscribe")
        .into_inner()
}

/// Every message the gateway is handed within `within`, acknowledged as delivered.
async fn drain(
    app: &TestApp,
    stream: &mut Streaming<pb::SubscribeChannelResponse>,
    within: Duration,
) -> Vec<pb::OutboundMessage> {
    let mut seen = Vec::new();
    while let Ok(Some(Ok(response))) = tokio::time::timeout(within, stream.next()).await {
        let message = response.message.unwrap();
        app.escalation()
            .ack_delivery(pb::AckDeliveryRequest {
                message_id: message.message_id.clone(),
                consumer_group: "gateway".into(),
                lease_id: message.lease_id.clone(),
                outcome: pb::DeliveryOutcome::Delivered as i32,
                ..Default::default()
            })
            .await
            .expect("ack");
        seen.push(message);
    }
    seen
}

pub async fn customers_get_an_acknowledgement_that_is_no_first_response(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = app
        .template(
            "Got it",
            pb::Channel::Chat,
            "We have your request #{{ ticket.number }}.",
        )
        .await;
    auto_response(
        &app,
        pb::AutoResponseKind::Acknowledgement,
        pb::Channel::Chat,
        &body,
        "",
    )
    .await
    .unwrap();
    let email = app
        .template(
            "Got it by email",
            pb::Channel::Email,
            "Logged as #{{ ticket.number }}.",
        )
        .await;
    auto_response(
        &app,
        pb::AutoResponseKind::Acknowledgement,
        pb::Channel::Email,
        &email,
        "",
    )
    .await
    .unwrap();
    let mut chat = gateway(&app, pb::Channel::Chat).await;
    let mut mail = gateway(&app, pb::Channel::Email).await;

    let (ticket, _) = escalate(&mut app.escalation(), escalation("conv-ack", 2)).await;
    let mut tickets = app.tickets();
    let by_hand = create(&mut tickets, new_ticket("Opened by an agent")).await;

    let messages = drain(&app, &mut chat, Duration::from_secs(2)).await;
    assert_eq!(messages.len(), 1, "one acknowledgement: {messages:?}");
    let ack = &messages[0];
    assert_eq!(ack.kind(), pb::OutboundKind::AutoResponse);
    assert_eq!(ack.ticket_id, ticket.id);
    assert_eq!(
        ack.body,
        format!("We have your request #{}.", ticket.number)
    );
    assert_eq!(ack.conversation_id, "conv-ack");
    assert!(
        drain(&app, &mut mail, Duration::from_millis(500))
            .await
            .is_empty(),
        "a ticket opened by hand is not acknowledged unless asked"
    );
    let entries = feed(&mut tickets, &ticket.id).await;
    let entry = entries
        .iter()
        .find(|e| e.r#type() == pb::EventType::ReplyAdded)
        .expect("the acknowledgement is in the feed");
    let actor = entry.actor.clone().unwrap();
    assert_eq!(
        (actor.kind(), actor.name.as_str()),
        (pb::ActorKind::System, "auto-response")
    );
    assert_eq!(entry.visibility(), pb::Visibility::Public);
    let first_response = get_ticket(&mut tickets, &ticket.id)
        .await
        .sla_clocks
        .into_iter()
        .find(|c| c.metric() == pb::SlaMetric::FirstResponse)
        .unwrap();
    assert_eq!(first_response.state(), pb::SlaClockState::Running);
    assert!(get_ticket(&mut tickets, &by_hand.id).await.etag == by_hand.etag);
}

pub async fn email_from_people_is_acknowledged_and_automatic_mail_is_not(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        s.email_address = "help@acme.test".parse().unwrap()
    })
    .await;
    let body = app
        .template(
            "Email ack",
            pb::Channel::Email,
            "We have #{{ ticket.number }}.",
        )
        .await;
    auto_response(
        &app,
        pb::AutoResponseKind::Acknowledgement,
        pb::Channel::Email,
        &body,
        "",
    )
    .await
    .unwrap();
    let mut mail = gateway(&app, pb::Channel::Email).await;
    let mut gw = app.escalation();
    let person = crate::email::ingest(
        &mut gw,
        crate::email::email(
            "ada@example.com",
            "help@acme.test",
            "Broken login",
            "p-1@example.com",
            "",
            "Help!",
        ),
        "help@acme.test",
    )
    .await;
    let ticket = person.ticket.expect("a new ticket");
    let machine = crate::email::ingest(
        &mut gw,
        crate::email::email(
            "ada@example.com",
            "help@acme.test",
            "Automatic reply: We have it",
            "ooo-1@example.com",
            "Auto-Submitted: auto-replied\n",
            "I am away.",
        ),
        "help@acme.test",
    )
    .await;
    assert!(machine.ticket.is_none(), "{machine:?}");
    let sent = drain(&app, &mut mail, Duration::from_secs(2)).await;
    assert_eq!(
        sent.len(),
        1,
        "one acknowledgement, to the person: {sent:?}"
    );
    assert_eq!(sent[0].ticket_id, ticket.id);
    assert_eq!(sent[0].recipient, "ada@example.com");
    assert_eq!(sent[0].subject, format!("Re: #{}", ticket.number));
    assert_eq!(sent[0].kind(), pb::OutboundKind::AutoResponse);
}

pub async fn after_hours_answers_once_per_closed_period(backend: Backend) {
    let app = spawn_app_with_manual_clock(backend).await;
    // Monday 7 December 2026, 20:00 UTC: the office is closed.
    app.clock
        .set(Utc.with_ymd_and_hms(2026, 12, 7, 20, 0, 0).unwrap());
    let calendar = app.office_calendar().await;
    let body = app
        .template("Closed", pb::Channel::Chat, "We are closed; back at 9.")
        .await;
    auto_response(
        &app,
        pb::AutoResponseKind::AfterHours,
        pb::Channel::Chat,
        &body,
        &calendar,
    )
    .await
    .unwrap();
    let mut chat = gateway(&app, pb::Channel::Chat).await;
    let mut escalation_client = app.escalation();
    let (ticket, _) = escalate(&mut escalation_client, escalation("conv-night", 1)).await;
    let post = |text: &str, id: &str| customer_message("conv-night", text, id);
    let night = drain(&app, &mut chat, Duration::from_secs(2)).await;
    assert_eq!(
        night.len(),
        1,
        "the ticket opened after hours is told: {night:?}"
    );
    assert_eq!(night[0].kind(), pb::OutboundKind::AutoResponse);
    assert_eq!(night[0].body, "We are closed; back at 9.");
    assert_eq!(night[0].ticket_id, ticket.id);
    app.clock.advance(chrono::Duration::hours(1));
    escalation_client
        .post_customer_message(post("still there?", "m-1"))
        .await
        .unwrap();
    assert!(
        drain(&app, &mut chat, Duration::from_millis(500))
            .await
            .is_empty(),
        "once per closed period"
    );

    // Tuesday 10:00, open: no notice. Tuesday 18:00, closed again: a new period.
    app.clock
        .set(Utc.with_ymd_and_hms(2026, 12, 8, 10, 0, 0).unwrap());
    escalation_client
        .post_customer_message(post("hello?", "m-2"))
        .await
        .unwrap();
    assert!(
        drain(&app, &mut chat, Duration::from_millis(500))
            .await
            .is_empty()
    );
    app.clock
        .set(Utc.with_ymd_and_hms(2026, 12, 8, 18, 0, 0).unwrap());
    let posted = escalation_client
        .post_customer_message(post("anyone?", "m-3"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        posted.entry.unwrap().r#type(),
        pb::EventType::CustomerMessage,
        "the call answers with the customer's message, not the notice beside it"
    );
    let evening = drain(&app, &mut chat, Duration::from_secs(2)).await;
    assert_eq!(evening.len(), 1, "one answer for the next closed period");
}

pub async fn resolution_is_confirmed_within_the_contact_limit(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.auto_responses_per_contact_hour = 1).await;
    let body = app
        .template(
            "Resolved",
            pb::Channel::Email,
            "#{{ ticket.number }} is {{ ticket.status }}.",
        )
        .await;
    auto_response(
        &app,
        pb::AutoResponseKind::ResolutionConfirmation,
        pb::Channel::Email,
        &body,
        "",
    )
    .await
    .unwrap();
    let mut mail = gateway(&app, pb::Channel::Email).await;
    let mut tickets = app.tickets();
    let contact = new_ticket("x").contact;
    let first = create(
        &mut tickets,
        pb::CreateTicketRequest {
            contact: contact.clone(),
            ..new_ticket("First")
        },
    )
    .await;
    let second = create(
        &mut tickets,
        pb::CreateTicketRequest {
            contact,
            ..new_ticket("Second")
        },
    )
    .await;
    set_status(&mut tickets, &first.id, pb::TicketStatus::Resolved)
        .await
        .unwrap();
    set_status(&mut tickets, &second.id, pb::TicketStatus::Resolved)
        .await
        .unwrap();
    let sent = drain(&app, &mut mail, Duration::from_secs(2)).await;
    assert_eq!(sent.len(), 1, "the contact's hourly cap holds: {sent:?}");
    assert_eq!(sent[0].ticket_id, first.id);
    assert_eq!(sent[0].recipient, "ada@example.com");
    assert_eq!(sent[0].subject, format!("Re: #{}", first.number));
    assert_eq!(sent[0].body, format!("#{} is RESOLVED.", first.number));
}

pub async fn auto_responses_are_checked_and_administered(backend: Backend) {
    let app = spawn_app(backend).await;
    let chat = app.template("Chat text", pb::Channel::Chat, "Hi").await;
    let err = auto_response(
        &app,
        pb::AutoResponseKind::AfterHours,
        pb::Channel::Email,
        &chat,
        "",
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&err),
        vec![
            "auto_response.template_id".to_string(),
            "auto_response.calendar_id".to_string(),
        ]
    );
    let missing = auto_response(
        &app,
        pb::AutoResponseKind::Unspecified,
        pb::Channel::Chat,
        "",
        "",
    )
    .await
    .unwrap_err();
    assert_eq!(
        violated_fields(&missing),
        vec![
            "auto_response.kind".to_string(),
            "auto_response.template_id".to_string()
        ]
    );
    let saved = auto_response(
        &app,
        pb::AutoResponseKind::Acknowledgement,
        pb::Channel::Chat,
        &chat,
        "",
    )
    .await
    .unwrap();
    let twice = auto_response(
        &app,
        pb::AutoResponseKind::Acknowledgement,
        pb::Channel::Chat,
        &chat,
        "",
    )
    .await
    .unwrap_err();
    assert_eq!(twice.code(), Code::AlreadyExists);
    let mut automation = app.automation();
    let off = automation
        .update_auto_response(pb::UpdateAutoResponseRequest {
            auto_response: Some(pb::AutoResponse {
                id: saved.id.clone(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["enabled".into()],
            }),
            etag: saved.etag.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .auto_response
        .unwrap();
    assert!(!off.enabled);
    let stale = automation
        .update_auto_response(pb::UpdateAutoResponseRequest {
            auto_response: Some(pb::AutoResponse {
                id: saved.id.clone(),
                enabled: true,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["enabled".into()],
            }),
            etag: saved.etag.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);
    // Disabled: a customer's ticket gets nothing.
    let mut stream = gateway(&app, pb::Channel::Chat).await;
    escalate(&mut app.escalation(), escalation("conv-off", 1)).await;
    assert!(
        drain(&app, &mut stream, Duration::from_millis(500))
            .await
            .is_empty()
    );
    let listed = automation
        .list_auto_responses(pb::ListAutoResponsesRequest {})
        .await
        .unwrap()
        .into_inner()
        .auto_responses;
    assert_eq!(listed, vec![off]);
    automation
        .delete_auto_response(pb::DeleteAutoResponseRequest {
            id: saved.id.clone(),
        })
        .await
        .unwrap();
    let gone = automation
        .delete_auto_response(pb::DeleteAutoResponseRequest { id: saved.id })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
}
