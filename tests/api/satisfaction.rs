//! Customer satisfaction: a survey token in the resolution confirmation, a rating recorded
//! by the gateway, replaced within its window, shown on the ticket, the feed and filters.

use std::time::Duration;

use ticketd::grpc::pb;
use tokio_stream::StreamExt;
use tonic::Code;

use crate::bridge::{escalate, escalation};
use crate::harness::{
    Backend, TestApp, feed, get_ticket, set_status, spawn_app_with_manual_clock, violated_fields,
};

async fn gateway_key(app: &TestApp, channels: Vec<pb::Channel>) -> String {
    app.admin()
        .create_api_key(pb::CreateApiKeyRequest {
            name: "gateway".into(),
            role: pb::Role::Gateway as i32,
            agent_id: String::new(),
            channels: channels.into_iter().map(|c| c as i32).collect(),
            sources: Vec::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .secret
}

fn rating(
    token: &str,
    ticket_id: &str,
    score: i32,
    comment: &str,
) -> pb::RecordSatisfactionRequest {
    pb::RecordSatisfactionRequest {
        survey_token: token.into(),
        ticket_id: ticket_id.into(),
        score,
        comment: comment.into(),
        request_id: String::new(),
    }
}

pub async fn customers_rate_resolved_tickets_with_the_token_they_were_sent(backend: Backend) {
    let app = spawn_app_with_manual_clock(backend).await;
    let template = app
        .template(
            "Resolved",
            pb::Channel::Chat,
            "Rate us: {{ ticket.survey_token }}",
        )
        .await;
    app.automation()
        .create_auto_response(pb::CreateAutoResponseRequest {
            auto_response: Some(pb::AutoResponse {
                kind: pb::AutoResponseKind::ResolutionConfirmation as i32,
                channel: pb::Channel::Chat as i32,
                template_id: template,
                enabled: true,
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let (ticket, _) = escalate(&mut app.escalation(), escalation("conv-csat", 1)).await;
    let mut tickets = app.tickets();
    let unresolved = app
        .escalation()
        .record_satisfaction(rating("", &ticket.id, 5, ""))
        .await
        .unwrap_err();
    assert_eq!(unresolved.code(), Code::FailedPrecondition);
    set_status(&mut tickets, &ticket.id, pb::TicketStatus::Resolved)
        .await
        .unwrap();

    let gw = gateway_key(&app, vec![pb::Channel::Chat]).await;
    let mut stream = app
        .escalation_as(&gw)
        .subscribe_channel(pb::SubscribeChannelRequest {
            channel: pb::Channel::Chat as i32,
            consumer_group: "chat".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let message = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("the confirmation goes out")
        .unwrap()
        .unwrap()
        .message
        .unwrap();
    let token = message
        .body
        .strip_prefix("Rate us: ")
        .expect("the token is in the message")
        .to_owned();
    assert!(!token.is_empty());

    let mut escalation_gw = app.escalation_as(&gw);
    let rated = escalation_gw
        .record_satisfaction(rating(&token, "", 4, "quick"))
        .await
        .unwrap()
        .into_inner()
        .ticket
        .unwrap();
    let satisfaction = rated.satisfaction.unwrap();
    assert_eq!(
        (satisfaction.score, satisfaction.comment.as_str()),
        (4, "quick")
    );

    // Again, within the window: replaced. The filter and the feed see it.
    app.clock.advance(chrono::Duration::days(2));
    escalation_gw
        .record_satisfaction(rating(&token, "", 5, "very quick"))
        .await
        .unwrap();
    let stored = get_ticket(&mut tickets, &ticket.id).await;
    assert_eq!(stored.satisfaction.unwrap().score, 5);
    let listed = tickets
        .list_tickets(pb::ListTicketsRequest {
            filter: "satisfaction >= 5".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .tickets;
    assert_eq!(listed.len(), 1);
    let ratings: Vec<pb::SatisfactionRated> = feed(&mut tickets, &ticket.id)
        .await
        .into_iter()
        .filter_map(|e| match e.detail {
            Some(pb::activity_entry::Detail::SatisfactionRated(r)) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(ratings.len(), 2);

    // Past the window, the rating stands.
    app.clock.advance(chrono::Duration::days(15));
    let late = escalation_gw
        .record_satisfaction(rating("", &ticket.id, 1, "changed my mind"))
        .await
        .unwrap_err();
    assert_eq!(late.code(), Code::FailedPrecondition);
}

pub async fn ratings_are_checked(backend: Backend) {
    let app = spawn_app_with_manual_clock(backend).await;
    let (ticket, _) = escalate(&mut app.escalation(), escalation("conv-check", 1)).await;
    set_status(&mut app.tickets(), &ticket.id, pb::TicketStatus::Resolved)
        .await
        .unwrap();
    let mut admin = app.escalation();
    let bad = admin
        .record_satisfaction(rating("", "", 9, &"x".repeat(2_001)))
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&bad),
        vec![
            "score".to_string(),
            "comment".to_string(),
            "survey_token".to_string()
        ]
    );
    let forged = admin
        .record_satisfaction(rating("AAAA", "", 3, ""))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&forged), vec!["survey_token".to_string()]);
    let sms_only = gateway_key(&app, vec![pb::Channel::Sms]).await;
    let elsewhere = app
        .escalation_as(&sms_only)
        .record_satisfaction(rating("", &ticket.id, 3, ""))
        .await
        .unwrap_err();
    assert_eq!(elsewhere.code(), Code::PermissionDenied);
    let agent = app.key(pb::Role::Agent, None).await;
    let agents = app
        .escalation_as(&agent)
        .record_satisfaction(rating("", &ticket.id, 3, ""))
        .await
        .unwrap_err();
    assert_eq!(agents.code(), Code::PermissionDenied);
    let watch = app
        .tickets()
        .watch_tickets(pb::WatchTicketsRequest {
            filter: "satisfaction > 3".into(),
            after_cursor: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(watch.code(), Code::InvalidArgument);
}
