//! WatchConversations: what bots and gateways hear about their conversations' tickets.

use std::time::Duration;

use ticketd::grpc::pb;
use tokio_stream::StreamExt;
use tonic::Code;
use tonic::codec::Streaming;
use uuid::Uuid;

use crate::bridge::{escalate, escalation};
use crate::harness::{Backend, Escalation, TestApp, set_status, spawn_app};
use crate::routing::{AgentSpec, agent, queue};

type Updates = Streaming<pb::WatchConversationsResponse>;

async fn watch(
    client: &mut Escalation,
    source: &str,
    conversation_id: &str,
    after: i64,
) -> Result<Updates, tonic::Status> {
    client
        .watch_conversations(pb::WatchConversationsRequest {
            source: source.into(),
            conversation_id: conversation_id.into(),
            after_cursor: after,
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner())
}

/// The next update, or `None` if none comes within a second.
async fn next(stream: &mut Updates) -> Option<pb::ConversationUpdate> {
    match tokio::time::timeout(Duration::from_secs(5), stream.next()).await {
        Ok(Some(Ok(response))) => response.update,
        Ok(Some(Err(status))) => panic!("watch failed: {status:?}"),
        Ok(None) | Err(_) => None,
    }
}

async fn kinds_until(
    stream: &mut Updates,
    last: pb::ConversationUpdateKind,
) -> Vec<pb::ConversationUpdate> {
    let mut seen = Vec::new();
    while let Some(update) = next(stream).await {
        let done = update.kind() == last;
        seen.push(update);
        if done {
            return seen;
        }
    }
    panic!("no {last:?} update; saw {seen:?}");
}

async fn bot_key(app: &TestApp, sources: &[&str]) -> String {
    app.admin()
        .create_api_key(pb::CreateApiKeyRequest {
            name: format!("bot for {sources:?}"),
            role: pb::Role::Bot as i32,
            sources: sources.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .secret
}

pub async fn a_bot_hears_assignment_reply_and_resolution_and_resumes_without_loss(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let mut admin = app.admin();
    let support = queue(&mut admin, "Support", 1, pb::AssignmentStrategy::RoundRobin).await;
    let ana = agent(
        &mut admin,
        AgentSpec {
            name: "Ana Agent",
            queues: vec![&support.id],
            ..AgentSpec::default()
        },
    )
    .await;
    let bot = bot_key(&app, &["helpbot"]).await;
    let mut as_bot = app.escalation_as(&bot);
    let mut updates = watch(&mut as_bot, "helpbot", "c-1", 0).await.unwrap();

    let (ticket, _) = escalate(
        &mut as_bot,
        pb::EscalateConversationRequest {
            queue_id: support.id.clone(),
            ..escalation("c-1", 3)
        },
    )
    .await;
    let opened = kinds_until(&mut updates, pb::ConversationUpdateKind::AgentAssigned).await;
    let kinds: Vec<_> = opened.iter().map(|u| u.kind()).collect();
    assert_eq!(
        kinds,
        vec![
            pb::ConversationUpdateKind::TicketOpened,
            pb::ConversationUpdateKind::AgentAssigned
        ],
        "transcript lines and the escalation itself are not updates"
    );
    assert_eq!(opened[0].ticket_number, ticket.number);
    assert_eq!(opened[0].ticket_id, ticket.id);
    assert_eq!(
        (
            opened[0].source.as_str(),
            opened[0].conversation_id.as_str()
        ),
        ("helpbot", "c-1")
    );
    assert_eq!(opened[0].channel(), pb::Channel::Chat);
    assert_eq!(opened[1].agent_name, "Ana Agent");

    // An internal note says nothing; the agent's reply arrives with its text and name.
    let ana_key = app
        .key(pb::Role::Agent, Some(Uuid::parse_str(&ana.id).unwrap()))
        .await;
    let mut as_ana = app.tickets_as(&ana_key);
    as_ana
        .add_note(pb::AddNoteRequest {
            ticket_id: ticket.id.clone(),
            body: "customer sounds upset".into(),
            request_id: String::new(),
        })
        .await
        .unwrap();
    as_ana
        .add_reply(pb::AddReplyRequest {
            ticket_id: ticket.id.clone(),
            body: "I have reset your password.".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let replied = next(&mut updates).await.expect("the reply");
    assert_eq!(replied.kind(), pb::ConversationUpdateKind::AgentReplied);
    assert_eq!(replied.body, "I have reset your password.");
    assert_eq!(replied.agent_name, "Ana Agent");
    assert!(replied.cursor > opened[1].cursor);

    // The bot disconnects; meanwhile the ticket waits, and is resolved. Resumed from the
    // last cursor it received, the bot hears both, once, in order.
    drop(updates);
    let mut tickets = app.tickets();
    set_status(&mut tickets, &ticket.id, pb::TicketStatus::Waiting)
        .await
        .unwrap();
    set_status(&mut tickets, &ticket.id, pb::TicketStatus::Resolved)
        .await
        .unwrap();
    let mut resumed = watch(&mut as_bot, "helpbot", "c-1", replied.cursor)
        .await
        .unwrap();
    let waiting = next(&mut resumed).await.expect("waiting");
    assert_eq!(
        waiting.kind(),
        pb::ConversationUpdateKind::WaitingForCustomer
    );
    let resolved = next(&mut resumed).await.expect("resolved");
    assert_eq!(resolved.kind(), pb::ConversationUpdateKind::Resolved);
    assert_eq!(resolved.status(), pb::TicketStatus::Resolved);
    assert!(resolved.cursor > waiting.cursor && waiting.cursor > replied.cursor);

    // Another conversation of the same bot is not this stream's business.
    escalate(&mut as_bot, escalation("c-2", 1)).await;
    set_status(&mut tickets, &ticket.id, pb::TicketStatus::Open)
        .await
        .unwrap();
    let reopened = next(&mut resumed).await.expect("reopened");
    assert_eq!(reopened.kind(), pb::ConversationUpdateKind::StatusChanged);
    assert_eq!(reopened.conversation_id, "c-1");
}

pub async fn keys_hear_only_their_own_sources_and_channels(backend: Backend) {
    let app = spawn_app(backend).await;
    let other = bot_key(&app, &["otherbot"]).await;
    let mut as_other = app.escalation_as(&other);

    // Asking for another bot's conversations is refused outright.
    let refused = watch(&mut as_other, "helpbot", "", 0).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");

    // Unfiltered, the key hears its own source only.
    let mut updates = watch(&mut as_other, "", "", 0).await.unwrap();
    escalate(&mut app.escalation(), escalation("c-1", 1)).await;
    let mut mine = escalation("o-1", 1);
    mine.conversation.as_mut().unwrap().source = "otherbot".into();
    escalate(&mut as_other, mine).await;
    let first = next(&mut updates).await.expect("its own update");
    assert_eq!(
        (first.source.as_str(), first.conversation_id.as_str()),
        ("otherbot", "o-1")
    );

    // A gateway limited to SMS hears nothing of chat conversations, and may not ask.
    let sms = app
        .admin()
        .create_api_key(pb::CreateApiKeyRequest {
            name: "sms gateway".into(),
            role: pb::Role::Gateway as i32,
            channels: vec![pb::Channel::Sms as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .secret;
    let mut as_sms = app.escalation_as(&sms);
    let chat = as_sms
        .watch_conversations(pb::WatchConversationsRequest {
            channel: pb::Channel::Chat as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(chat.code(), Code::PermissionDenied, "{chat:?}");
    let mut sms_updates = watch(&mut as_sms, "", "", 0).await.unwrap();
    let mut text = escalation("s-1", 1);
    text.conversation.as_mut().unwrap().channel = pb::Channel::Sms as i32;
    text.contact.as_mut().unwrap().phone = "+15550100".into();
    escalate(&mut app.escalation(), text).await;
    let first = next(&mut sms_updates).await.expect("the SMS conversation");
    assert_eq!(first.conversation_id, "s-1");
    assert_eq!(first.channel(), pb::Channel::Sms);

    // Agents have WatchTickets; this stream is for the bridge.
    let agent_key = app.key(pb::Role::Agent, None).await;
    let denied = watch(&mut app.escalation_as(&agent_key), "", "", 0)
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let negative = watch(&mut app.escalation(), "", "", -1).await.unwrap_err();
    assert_eq!(negative.code(), Code::InvalidArgument);
}

pub async fn merges_follow_ups_and_tier_escalations_are_told(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut admin = app.admin();
    queue(&mut admin, "Tier 2", 2, pb::AssignmentStrategy::Manual).await;
    let mut bridge = app.escalation();
    let mut updates = watch(&mut bridge, "helpbot", "", 0).await.unwrap();
    let (first, _) = escalate(&mut bridge, escalation("m-1", 1)).await;
    let (second, _) = escalate(&mut bridge, escalation("m-2", 1)).await;
    let mut tickets = app.tickets();

    tickets
        .escalate_ticket(pb::EscalateTicketRequest {
            ticket_id: first.id.clone(),
            reason: "needs a specialist".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    tickets
        .merge_tickets(pb::MergeTicketsRequest {
            target_ticket_id: first.id.clone(),
            source_ticket_ids: vec![second.id.clone()],
            request_id: String::new(),
        })
        .await
        .unwrap();
    set_status(&mut tickets, &first.id, pb::TicketStatus::Resolved)
        .await
        .unwrap();
    set_status(&mut tickets, &first.id, pb::TicketStatus::Closed)
        .await
        .unwrap();
    bridge
        .post_customer_message(pb::PostCustomerMessageRequest {
            source: "helpbot".into(),
            conversation_id: "m-1".into(),
            channel: pb::Channel::Chat as i32,
            text: "It broke again".into(),
            ..Default::default()
        })
        .await
        .unwrap();

    let seen = kinds_until(&mut updates, pb::ConversationUpdateKind::FollowUpOpened).await;
    let of = |id: &str| -> Vec<pb::ConversationUpdateKind> {
        seen.iter()
            .filter(|u| u.conversation_id == id)
            .map(|u| u.kind())
            .collect()
    };
    use pb::ConversationUpdateKind as K;
    assert_eq!(
        of("m-1"),
        vec![
            K::TicketOpened,
            K::TierEscalated,
            K::Resolved,
            K::Closed,
            K::FollowUpOpened
        ]
    );
    assert_eq!(of("m-2"), vec![K::TicketOpened, K::Merged]);
    let merged = seen.iter().find(|u| u.kind() == K::Merged).unwrap();
    assert_eq!(merged.ticket_id, second.id);
    assert_eq!(merged.merged_into_ticket_id, first.id);
    assert_eq!(merged.merged_into_ticket_number, first.number);
    let follow_up = seen.last().unwrap();
    assert_ne!(follow_up.ticket_id, first.id, "a new ticket");
    let cursors: Vec<i64> = seen.iter().map(|u| u.cursor).collect();
    assert!(cursors.windows(2).all(|w| w[0] < w[1]), "{cursors:?}");
}
