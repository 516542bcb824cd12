//! Replies, internal notes, time tracking and the activity feed.

use ticketd::grpc::pb;
use tonic::Code;

use crate::harness::{Backend, create, feed, new_ticket, spawn_app, violated_fields};

fn reply(ticket_id: &str, body: &str, channel: pb::Channel) -> pb::AddReplyRequest {
    pb::AddReplyRequest {
        ticket_id: ticket_id.into(),
        body: body.into(),
        channel: channel as i32,
        attachments: Vec::new(),
        request_id: String::new(),
    }
}

pub async fn replies_are_public_and_notes_stay_internal(backend: Backend) {
    let app = spawn_app(backend).await;
    let agent = app.agent("Ada").await;
    let agent_key = app.key(pb::Role::Agent, Some(agent)).await;
    let bot_key = app.key(pb::Role::Bot, None).await;
    let mut tickets = app.tickets_as(&agent_key);
    let ticket = create(&mut tickets, new_ticket("Where is my parcel")).await;

    let replied = tickets
        .add_reply(reply(&ticket.id, "It ships tomorrow.", pb::Channel::Email))
        .await
        .unwrap()
        .into_inner();
    let entry = replied.entry.unwrap();
    assert_eq!(entry.r#type(), pb::EventType::ReplyAdded);
    assert_eq!(entry.visibility(), pb::Visibility::Public);
    let actor = entry.actor.unwrap();
    assert_eq!(actor.kind(), pb::ActorKind::Agent);
    assert_eq!(actor.id, agent.to_string());
    assert_ne!(replied.ticket.unwrap().etag, ticket.etag);

    tickets
        .add_note(pb::AddNoteRequest {
            ticket_id: ticket.id.clone(),
            body: "Warehouse says Friday, not tomorrow".into(),
            request_id: String::new(),
        })
        .await
        .unwrap();

    let staff_view = feed(&mut tickets, &ticket.id).await;
    let kinds: Vec<_> = staff_view.iter().map(|e| e.r#type()).collect();
    assert_eq!(
        kinds,
        vec![
            pb::EventType::TicketCreated,
            pb::EventType::ReplyAdded,
            pb::EventType::NoteAdded
        ]
    );
    let cursors: Vec<i64> = staff_view.iter().map(|e| e.cursor).collect();
    assert!(cursors.windows(2).all(|w| w[0] < w[1]), "{cursors:?}");
    let Some(pb::activity_entry::Detail::Note(note)) = &staff_view[2].detail else {
        panic!("note detail expected");
    };
    assert_eq!(note.body, "Warehouse says Friday, not tomorrow");
    assert_eq!(staff_view[2].visibility(), pb::Visibility::Internal);

    let mut bot = app.tickets_as(&bot_key);
    let bot_view = feed(&mut bot, &ticket.id).await;
    assert_eq!(bot_view.len(), 1, "bots see public entries only");
    assert_eq!(bot_view[0].r#type(), pb::EventType::ReplyAdded);
}

pub async fn replies_need_a_way_to_reach_the_contact(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut tickets = app.tickets();
    let ticket = create(
        &mut tickets,
        pb::CreateTicketRequest {
            contact: Some(pb::Contact {
                external_id: "crm-no-email".into(),
                phone: "+15550100".into(),
                ..Default::default()
            }),
            ..new_ticket("No email on file")
        },
    )
    .await;

    let by_email = tickets
        .add_reply(reply(&ticket.id, "Hi", pb::Channel::Email))
        .await
        .unwrap_err();
    assert_eq!(by_email.code(), Code::FailedPrecondition);
    assert!(
        by_email.message().contains("email"),
        "{}",
        by_email.message()
    );

    tickets
        .add_reply(reply(&ticket.id, "Hi", pb::Channel::Sms))
        .await
        .unwrap();

    let no_channel = tickets
        .add_reply(reply(&ticket.id, "Hi", pb::Channel::Unspecified))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&no_channel), vec!["channel"]);
    let empty = tickets
        .add_reply(reply(&ticket.id, "  ", pb::Channel::Sms))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&empty), vec!["body"]);
}

pub async fn attachments_are_kept_with_the_reply_within_limits(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut tickets = app.tickets();
    let ticket = create(&mut tickets, new_ticket("Screenshot attached")).await;
    let file = |name: &str, bytes: usize| pb::Attachment {
        name: name.into(),
        content_type: "image/png".into(),
        content: vec![7u8; bytes],
        ..Default::default()
    };

    let entry = tickets
        .add_reply(pb::AddReplyRequest {
            attachments: vec![file("a.png", 1000), file("b.png", 2500)],
            ..reply(&ticket.id, "See the marked area.", pb::Channel::Chat)
        })
        .await
        .unwrap()
        .into_inner()
        .entry
        .unwrap();
    let Some(pb::activity_entry::Detail::Reply(sent)) = entry.detail else {
        panic!("reply detail expected");
    };
    let sizes: Vec<(String, i64)> = sent
        .attachments
        .iter()
        .map(|a| (a.name.clone(), a.size_bytes))
        .collect();
    assert_eq!(sizes, vec![("a.png".into(), 1000), ("b.png".into(), 2500)]);
    assert!(
        sent.attachments
            .iter()
            .all(|a| a.content.is_empty() && !a.id.is_empty())
    );

    let too_many = tickets
        .add_reply(pb::AddReplyRequest {
            attachments: (0..21).map(|i| file(&format!("{i}.png"), 1)).collect(),
            ..reply(&ticket.id, "Many", pb::Channel::Chat)
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&too_many), vec!["attachments"]);

    let bad_name = tickets
        .add_reply(pb::AddReplyRequest {
            attachments: vec![file("../etc/passwd", 1)],
            ..reply(&ticket.id, "Sneaky", pb::Channel::Chat)
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&bad_name), vec!["attachments[0].name"]);

    let replies = feed(&mut tickets, &ticket.id)
        .await
        .into_iter()
        .filter(|e| e.r#type() == pb::EventType::ReplyAdded)
        .count();
    assert_eq!(replies, 1, "rejected replies leave no trace");
}

pub async fn logged_time_adds_up_on_the_ticket(backend: Backend) {
    let app = spawn_app(backend).await;
    let agent = app.agent("Ada").await;
    let agent_key = app.key(pb::Role::Agent, Some(agent)).await;
    let mut tickets = app.tickets_as(&agent_key);
    let ticket = create(&mut tickets, new_ticket("Long investigation")).await;
    let log = |seconds: i64, nanos: i32| pb::LogTimeRequest {
        ticket_id: ticket.id.clone(),
        duration: Some(prost_types::Duration { seconds, nanos }),
        note: "debugging".into(),
        ..Default::default()
    };

    tickets.log_time(log(1800, 0)).await.unwrap();
    let second = tickets.log_time(log(900, 0)).await.unwrap().into_inner();
    assert_eq!(second.ticket.unwrap().time_spent.unwrap().seconds, 2700);
    let Some(pb::activity_entry::Detail::TimeLogged(logged)) = second.entry.unwrap().detail else {
        panic!("time_logged detail expected");
    };
    assert_eq!(
        logged.agent_id,
        agent.to_string(),
        "defaults to the caller's agent"
    );
    assert_eq!(logged.duration.unwrap().seconds, 900);
    assert_eq!(logged.total.unwrap().seconds, 2700);

    for bad in [log(0, 0), log(-5, 0), log(25 * 3600, 0), log(10, 500)] {
        let err = tickets.log_time(bad).await.unwrap_err();
        assert_eq!(violated_fields(&err), vec!["duration"]);
    }
    let total = tickets
        .get_ticket(pb::GetTicketRequest {
            key: Some(pb::get_ticket_request::Key::Id(ticket.id.clone())),
        })
        .await
        .unwrap()
        .into_inner()
        .ticket
        .unwrap()
        .time_spent
        .unwrap()
        .seconds;
    assert_eq!(total, 2700);
}

pub async fn the_feed_pages_in_order(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut tickets = app.tickets();
    let ticket = create(&mut tickets, new_ticket("Chatty")).await;
    for i in 0..9 {
        tickets
            .add_note(pb::AddNoteRequest {
                ticket_id: ticket.id.clone(),
                body: format!("note {i}"),
                request_id: String::new(),
            })
            .await
            .unwrap();
    }
    let mut token = String::new();
    let mut all = Vec::new();
    loop {
        let page = tickets
            .list_activity(pb::ListActivityRequest {
                ticket_id: ticket.id.clone(),
                page_size: 4,
                page_token: token,
            })
            .await
            .unwrap()
            .into_inner();
        all.extend(page.entries);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(all.len(), 10);
    assert!(all.windows(2).all(|w| w[0].cursor < w[1].cursor));

    let other = create(&mut tickets, new_ticket("Other")).await;
    let first = tickets
        .list_activity(pb::ListActivityRequest {
            ticket_id: ticket.id.clone(),
            page_size: 4,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let wrong_ticket = tickets
        .list_activity(pb::ListActivityRequest {
            ticket_id: other.id,
            page_size: 4,
            page_token: first.next_page_token,
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&wrong_ticket), vec!["page_token"]);
}
