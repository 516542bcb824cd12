//! Email in: IngestEmail threads real messages onto tickets, sets machines' mail aside,
//! and turns bounces into failed deliveries.

use std::time::Duration;

use ticketd::grpc::pb;
use tokio_stream::StreamExt;
use tonic::Code;

use crate::harness::{Backend, Escalation, TestApp, feed, spawn_app_with, violated_fields};

const MAILBOX: &str = "help@acme.test";

async fn app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |s| {
        s.email_address = MAILBOX.parse().unwrap();
        s.max_email_bytes = 64 * 1024;
    })
    .await
}

/// A plain-text email, with extra header lines.
pub fn email(from: &str, to: &str, subject: &str, id: &str, headers: &str, body: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{id}>\r\n\
         Date: Mon, 30 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n{headers}\
         Content-Type: text/plain; charset=utf-8\r\n\r\n{body}"
    )
    .replace("\r\n", "\n")
    .replace('\n', "\r\n")
    .into_bytes()
}

pub async fn ingest(gw: &mut Escalation, raw: Vec<u8>, recipient: &str) -> pb::IngestEmailResponse {
    gw.ingest_email(pb::IngestEmailRequest {
        raw,
        recipient: recipient.into(),
        request_id: String::new(),
    })
    .await
    .expect("ingest")
    .into_inner()
}

fn customer_message(entry: &pb::ActivityEntry) -> pb::CustomerMessage {
    match &entry.detail {
        Some(pb::activity_entry::Detail::CustomerMessage(m)) => m.clone(),
        other => panic!("not a customer message: {other:?}"),
    }
}

/// The next outbound email, with its threading headers.
async fn next_email(
    stream: &mut tonic::codec::Streaming<pb::SubscribeChannelResponse>,
) -> pb::OutboundMessage {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("an email goes out")
        .unwrap()
        .unwrap()
        .message
        .unwrap()
}

pub async fn an_email_opens_a_ticket_and_answers_thread_back_by_each_rule(backend: Backend) {
    let app = app(backend).await;
    let gateway = app.key(pb::Role::Gateway, None).await;
    let mut gw = app.escalation_as(&gateway);
    let mut outbox = gw
        .subscribe_channel(pb::SubscribeChannelRequest {
            channel: pb::Channel::Email as i32,
            consumer_group: "smtp".into(),
        })
        .await
        .unwrap()
        .into_inner();

    let first = ingest(
        &mut gw,
        email(
            "Ada Lovelace <ada@example.com>",
            MAILBOX,
            "Printer on fire",
            "first@mail.example.com",
            "",
            "The printer in room 4 is on fire.\nPlease help.",
        ),
        MAILBOX,
    )
    .await;
    assert!(first.created, "{first:?}");
    assert_eq!(first.threaded_by(), pb::ThreadedBy::NewTicket);
    assert_eq!(first.ignored_reason, "");
    let ticket = first.ticket.unwrap();
    assert_eq!(
        ticket.subject, "Printer on fire",
        "an email's subject names its ticket"
    );
    assert_eq!(ticket.channel(), pb::Channel::Email);
    let contact = ticket.contact.clone().unwrap();
    assert_eq!(
        (contact.name.as_str(), contact.email.as_str()),
        ("Ada Lovelace", "ada@example.com")
    );
    let entry = customer_message(&first.entry.unwrap());
    assert_eq!(entry.email_subject, "Printer on fire");
    assert_eq!(entry.threaded_by(), pb::ThreadedBy::NewTicket);

    // The agent's reply goes out threadable.
    app.tickets()
        .add_reply(pb::AddReplyRequest {
            ticket_id: ticket.id.clone(),
            body: "The fire brigade is on its way.".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let sent = next_email(&mut outbox).await;
    let headers = sent.email.clone().unwrap();
    assert!(sent.subject.contains(&format!("[#{}]", ticket.number)));
    assert_eq!(
        headers.in_reply_to, "<first@mail.example.com>",
        "the reply answers Ada's own email, so it joins her thread"
    );
    assert_eq!(
        headers.references.len(),
        2,
        "hers, then the ticket's thread"
    );

    // Ada's answer cites the reply's Message-ID and quotes it: it lands on the ticket,
    // with only her new text visible and the whole text kept.
    let answer = ingest(
        &mut gw,
        email(
            "ada@example.com",
            MAILBOX,
            &format!("Re: {}", sent.subject),
            "answer@mail.example.com",
            &format!(
                "In-Reply-To: {}\nReferences: {} {}\n",
                headers.message_id, headers.in_reply_to, headers.message_id
            ),
            "Thank you, they are here.\n\nOn Mon, 30 Nov 2026, Support wrote:\n> The fire brigade is on its way.\n",
        ),
        MAILBOX,
    )
    .await;
    assert!(!answer.created);
    assert_eq!(answer.threaded_by(), pb::ThreadedBy::MessageId);
    assert_eq!(answer.ticket.unwrap().id, ticket.id);
    let said = customer_message(&answer.entry.unwrap());
    assert_eq!(said.text, "Thank you, they are here.");
    assert!(said.full_text.contains("> The fire brigade is on its way."));

    // Delivered twice, the same email changes nothing.
    let again = ingest(
        &mut gw,
        email(
            "ada@example.com",
            MAILBOX,
            "Re: again",
            "answer@mail.example.com",
            "",
            "Thank you, they are here.",
        ),
        MAILBOX,
    )
    .await;
    assert!(again.duplicate && !again.created);

    // A client that drops the headers still reaches the ticket through the reply
    // address, and so does a new email naming the ticket from its contact.
    let by_token = ingest(
        &mut gw,
        email(
            "ada@example.com",
            &headers.reply_to,
            "one more thing",
            "token@mail.example.com",
            "",
            "The toner is empty too.",
        ),
        &headers.reply_to,
    )
    .await;
    assert_eq!(by_token.threaded_by(), pb::ThreadedBy::ReplyToken);
    assert_eq!(by_token.ticket.unwrap().id, ticket.id);
    let by_number = ingest(
        &mut gw,
        email(
            "ADA@example.com",
            MAILBOX,
            &format!("About [#{}]", ticket.number),
            "number@mail.example.com",
            "",
            "And the paper tray.",
        ),
        MAILBOX,
    )
    .await;
    assert_eq!(by_number.threaded_by(), pb::ThreadedBy::SubjectNumber);
    assert_eq!(by_number.ticket.unwrap().id, ticket.id);

    // Someone else naming the number opens a ticket of their own.
    let stranger = ingest(
        &mut gw,
        email(
            "mallory@example.net",
            MAILBOX,
            &format!("Re: [#{}]", ticket.number),
            "mallory@mail.example.net",
            "",
            "Let me in.",
        ),
        MAILBOX,
    )
    .await;
    assert!(stranger.created);
    assert_ne!(stranger.ticket.unwrap().id, ticket.id);

    let messages = feed(&mut app.tickets(), &ticket.id)
        .await
        .into_iter()
        .filter(|e| e.r#type() == pb::EventType::CustomerMessage)
        .count();
    assert_eq!(messages, 4, "the first, the answer, by token, by number");

    // Once the ticket is closed, an answer opens its follow-up, and says so.
    let mut tickets = app.tickets();
    for status in [pb::TicketStatus::Resolved, pb::TicketStatus::Closed] {
        crate::harness::set_status(&mut tickets, &ticket.id, status)
            .await
            .unwrap();
    }
    let late = ingest(
        &mut gw,
        email(
            "ada@example.com",
            &headers.reply_to,
            "It is on fire again",
            "late@mail.example.com",
            "",
            "Again!",
        ),
        &headers.reply_to,
    )
    .await;
    assert!(late.follow_up && !late.created, "{late:?}");
    assert_ne!(late.ticket.unwrap().id, ticket.id);
}

pub async fn machines_mail_changes_nothing_and_a_bounce_fails_the_delivery(backend: Backend) {
    let app = app(backend).await;
    let gateway = app.key(pb::Role::Gateway, None).await;
    let mut gw = app.escalation_as(&gateway);
    let mut outbox = gw
        .subscribe_channel(pb::SubscribeChannelRequest {
            channel: pb::Channel::Email as i32,
            consumer_group: "smtp".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let opened = ingest(
        &mut gw,
        email(
            "bob@example.com",
            MAILBOX,
            "Refund",
            "bob-1@example.com",
            "",
            "Where is my refund?",
        ),
        MAILBOX,
    )
    .await;
    let ticket = opened.ticket.unwrap();
    let mut tickets = app.tickets();
    tickets
        .add_reply(pb::AddReplyRequest {
            ticket_id: ticket.id.clone(),
            body: "It is on its way.".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let sent = next_email(&mut outbox).await;
    let headers = sent.email.clone().unwrap();
    gw.ack_delivery(pb::AckDeliveryRequest {
        message_id: sent.message_id.clone(),
        outcome: pb::DeliveryOutcome::Delivered as i32,
        consumer_group: "smtp".into(),
        lease_id: sent.lease_id.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    let before = feed(&mut tickets, &ticket.id).await.len();

    // An out-of-office answer to the reply: nothing changes, nothing is sent.
    let away = ingest(
        &mut gw,
        email(
            "bob@example.com",
            MAILBOX,
            "Automatic reply: Re: Refund",
            "ooo@example.com",
            &format!(
                "Auto-Submitted: auto-replied\nIn-Reply-To: {}\n",
                headers.message_id
            ),
            "I am away until Monday.",
        ),
        MAILBOX,
    )
    .await;
    assert!(away.ticket.is_none() && away.entry.is_none());
    assert!(away.ignored_reason.contains("auto-replied"), "{away:?}");
    let bulk = ingest(
        &mut gw,
        email(
            "news@example.com",
            MAILBOX,
            "Our newsletter",
            "news-1@example.com",
            "Precedence: bulk\n",
            "Ten tips.",
        ),
        MAILBOX,
    )
    .await;
    assert!(bulk.ticket.is_none() && !bulk.ignored_reason.is_empty());
    assert_eq!(feed(&mut tickets, &ticket.id).await.len(), before);

    // The reply bounces: the delivery is marked failed, with the reason, in the feed.
    let bounce = format!(
        "From: Mail Delivery System <MAILER-DAEMON@mx.example.com>\r\n\
To: {MAILBOX}\r\n\
Subject: Undelivered Mail Returned to Sender\r\n\
Message-ID: <bounce-1@mx.example.com>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=\"r\"\r\n\
\r\n\
--r\r\n\
Content-Type: text/plain\r\n\
\r\n\
Mailbox full: bob@example.com\r\n\
--r\r\n\
Content-Type: message/delivery-status\r\n\
\r\n\
Final-Recipient: rfc822; bob@example.com\r\n\
Action: failed\r\n\
Status: 5.2.2\r\n\
--r\r\n\
Content-Type: text/rfc822-headers\r\n\
\r\n\
From: {MAILBOX}\r\n\
To: bob@example.com\r\n\
Message-ID: {}\r\n\
--r--\r\n",
        headers.message_id
    );
    let bounced = ingest(&mut gw, bounce.into_bytes(), MAILBOX).await;
    assert!(bounced.ticket.is_none());
    assert!(bounced.ignored_reason.contains("1 delivery"), "{bounced:?}");
    let entries = feed(&mut tickets, &ticket.id).await;
    let reply = entries
        .iter()
        .find_map(|e| match &e.detail {
            Some(pb::activity_entry::Detail::Reply(r)) => Some(r.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(reply.delivery_status(), pb::DeliveryStatus::Failed);
    assert!(reply.delivery_error.contains("Mailbox full"), "{reply:?}");
    assert!(
        entries
            .iter()
            .filter(|e| e.r#type() == pb::EventType::CustomerMessage)
            .count()
            == 1,
        "no customer message came of it"
    );

    // A report naming an SMS of ours is no email bounce: the SMS is left alone.
    let texted = gw
        .post_customer_message(pb::PostCustomerMessageRequest {
            source: "sms".into(),
            conversation_id: "+15550999".into(),
            channel: pb::Channel::Sms as i32,
            sender: "+15550999".into(),
            text: "Hello by text".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .ticket
        .unwrap();
    let sms_reply = tickets
        .add_reply(pb::AddReplyRequest {
            ticket_id: texted.id.clone(),
            body: "Hi!".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entry
        .unwrap();
    let Some(pb::activity_entry::Detail::Reply(sms)) = sms_reply.detail else {
        panic!("a reply");
    };
    let sms_id = uuid::Uuid::parse_str(&sms.message_id).unwrap().simple();
    let not_ours = format!(
        "From: MAILER-DAEMON@mx.example.com\r\nTo: {MAILBOX}\r\nSubject: failure\r\n\
         Message-ID: <bounce-2@mx.example.com>\r\n\r\nReturned: <{sms_id}@acme.test>\r\n"
    );
    let ignored = ingest(&mut gw, not_ours.into_bytes(), MAILBOX).await;
    assert!(ignored.ignored_reason.contains("0 delivery"), "{ignored:?}");
    let still = feed(&mut tickets, &texted.id)
        .await
        .into_iter()
        .find_map(|e| match e.detail {
            Some(pb::activity_entry::Detail::Reply(r)) => Some(r),
            _ => None,
        })
        .unwrap();
    assert_ne!(still.delivery_status(), pb::DeliveryStatus::Failed);
}

pub async fn emails_are_bounded_and_checked(backend: Backend) {
    let app = app(backend).await;
    let gateway = app.key(pb::Role::Gateway, None).await;
    let mut gw = app.escalation_as(&gateway);
    let huge = gw
        .ingest_email(pb::IngestEmailRequest {
            raw: email(
                "ada@example.com",
                MAILBOX,
                "big",
                "big@x",
                "",
                &"x".repeat(70 * 1024),
            ),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(huge.code(), Code::ResourceExhausted, "{huge:?}");
    let garbage = gw
        .ingest_email(pb::IngestEmailRequest {
            raw: b"this is not an email".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(garbage.code(), Code::InvalidArgument, "{garbage:?}");
    assert_eq!(violated_fields(&garbage), vec!["raw"]);
    let bot = app.key(pb::Role::Bot, None).await;
    let denied = app
        .escalation_as(&bot)
        .ingest_email(pb::IngestEmailRequest {
            raw: email("a@example.com", MAILBOX, "s", "id@x", "", "hi"),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
}

pub async fn odd_but_real_emails_are_taken_in_rather_than_refused(backend: Backend) {
    let app = app(backend).await;
    let gateway = app.key(pb::Role::Gateway, None).await;
    let mut gw = app.escalation_as(&gateway);
    // No Message-ID, delivered twice: one ticket.
    let raw = "From: printer@localhost\r\nTo: help@acme.test\r\nSubject: Toner low\r\n\r\nToner at 5%.\r\n";
    let first = ingest(&mut gw, raw.as_bytes().to_vec(), MAILBOX).await;
    assert!(first.created, "{first:?}");
    let again = ingest(&mut gw, raw.as_bytes().to_vec(), MAILBOX).await;
    assert!(again.duplicate && !again.created, "{again:?}");
    let ticket = first.ticket.unwrap();
    assert_eq!(ticket.id, again.ticket.unwrap().id);
    assert_eq!(
        ticket.contact.unwrap().email,
        "",
        "an address without a domain is not kept as the contact's"
    );

    // Twenty-five inline images, one with a path for a name: twenty are kept and the
    // message says what was left out.
    let mut mime = String::from(
        "From: ada@example.com\r\nTo: help@acme.test\r\nSubject: Photos\r\n\
         Message-ID: <photos@example.com>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
         --b\r\nContent-Type: text/plain\r\n\r\nSee the photos.\r\n",
    );
    for i in 0..25 {
        let name = if i == 0 {
            "../../etc/passwd".to_owned()
        } else {
            format!("p{i}.png")
        };
        mime.push_str(&format!(
            "--b\r\nContent-Type: image/png\r\nContent-Disposition: attachment; \
             filename=\"{name}\"\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n"
        ));
    }
    mime.push_str("--b--\r\n");
    let photos = ingest(&mut gw, mime.into_bytes(), MAILBOX).await;
    let entry = customer_message(&photos.entry.unwrap());
    assert_eq!(entry.attachments.len(), 20);
    assert!(
        entry.attachments.iter().all(|a| !a.name.contains('/')),
        "{:?}",
        entry.attachments
    );
    assert!(
        entry.text.contains("5 attachment(s) not kept"),
        "{}",
        entry.text
    );
}
