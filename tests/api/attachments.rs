//! GetAttachment: files come back out, in chunks, to those who may read them; gateways
//! get large ones by reference.

use std::time::Duration;

use sha2::{Digest, Sha256};
use ticketd::grpc::pb;
use tokio_stream::StreamExt;
use tonic::Code;

use crate::bridge::{escalate, escalation};
use crate::harness::{Backend, Tickets, create, new_ticket, spawn_app_with};

fn file(name: &str, content: Vec<u8>) -> pb::Attachment {
    pb::Attachment {
        name: name.into(),
        content_type: "application/octet-stream".into(),
        content,
        ..Default::default()
    }
}

/// The whole file and the first message's description of it.
async fn download(
    tickets: &mut Tickets,
    ticket_id: &str,
    attachment_id: &str,
) -> Result<(Vec<u8>, pb::GetAttachmentResponse, usize), tonic::Status> {
    let mut stream = tickets
        .get_attachment(pb::GetAttachmentRequest {
            ticket_id: ticket_id.into(),
            attachment_id: attachment_id.into(),
        })
        .await?
        .into_inner();
    let mut bytes = Vec::new();
    let mut head = None;
    let mut messages = 0;
    while let Some(message) = stream.next().await {
        let message = message?;
        messages += 1;
        bytes.extend_from_slice(&message.chunk);
        if head.is_none() {
            head = Some(pb::GetAttachmentResponse {
                chunk: Vec::new(),
                ..message
            });
        }
    }
    Ok((bytes, head.expect("at least one message"), messages))
}

fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub async fn attachments_come_out_whole_to_those_who_may_read_them(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.inline_attachment_bytes = 1_000).await;
    // A transcript with a screenshot: a public entry of helpbot's conversation.
    let mut request = escalation("files-1", 1);
    request.conversation.as_mut().unwrap().transcript[0].attachments =
        vec![file("screenshot.png", vec![1, 2, 3, 4])];
    let (ticket, _) = escalate(&mut app.escalation(), request).await;
    let mut tickets = app.tickets();
    let screenshot_id = crate::harness::feed(&mut tickets, &ticket.id)
        .await
        .into_iter()
        .find_map(|e| match e.detail {
            Some(pb::activity_entry::Detail::TranscriptMessage(m)) => {
                m.attachments.first().map(|a| a.id.clone())
            }
            _ => None,
        })
        .expect("the screenshot is in the feed");

    // An agent replies with a small and a large file; the gateway gets the small one
    // inline and the large one by id and size, and fetches it whole.
    let large: Vec<u8> = (0..150_000u32).map(|i| (i % 251) as u8).collect();
    tickets
        .add_reply(pb::AddReplyRequest {
            ticket_id: ticket.id.clone(),
            body: "Files attached.".into(),
            attachments: vec![
                file("small.txt", b"hello".to_vec()),
                file("large.bin", large.clone()),
            ],
            ..Default::default()
        })
        .await
        .unwrap();
    let gateway = app.key(pb::Role::Gateway, None).await;
    let mut gw = app.escalation_as(&gateway);
    let mut outbox = gw
        .subscribe_channel(pb::SubscribeChannelRequest {
            channel: pb::Channel::Chat as i32,
            consumer_group: "chat".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let sent = tokio::time::timeout(Duration::from_secs(10), outbox.next())
        .await
        .expect("the reply goes out")
        .unwrap()
        .unwrap()
        .message
        .unwrap();
    let small = &sent.attachments[0];
    let by_reference = &sent.attachments[1];
    assert_eq!(small.content, b"hello");
    assert!(by_reference.content.is_empty());
    assert_eq!(by_reference.size_bytes, large.len() as i64);
    let mut as_gateway = app.tickets_as(&gateway);
    let (bytes, head, messages) = download(&mut as_gateway, &ticket.id, &by_reference.id)
        .await
        .unwrap();
    assert_eq!(bytes, large, "the file comes back byte for byte");
    assert_eq!(messages, 3, "in 64 KiB chunks");
    assert_eq!(
        (
            head.file_name.as_str(),
            head.content_type.as_str(),
            head.size
        ),
        ("large.bin", "application/octet-stream", large.len() as i64)
    );
    assert_eq!(head.sha256, hex_sha256(&large));

    // The gateway never received the screenshot; helpbot's bot may read it (a public
    // entry of its conversation), another bot may not, agents may.
    let denied = download(&mut as_gateway, &ticket.id, &screenshot_id)
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let helpbot = app
        .admin()
        .create_api_key(pb::CreateApiKeyRequest {
            name: "helpbot".into(),
            role: pb::Role::Bot as i32,
            sources: vec!["helpbot".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .secret;
    let (shot, _, _) = download(&mut app.tickets_as(&helpbot), &ticket.id, &screenshot_id)
        .await
        .unwrap();
    assert_eq!(shot, vec![1, 2, 3, 4]);
    let otherbot = app
        .admin()
        .create_api_key(pb::CreateApiKeyRequest {
            name: "otherbot".into(),
            role: pb::Role::Bot as i32,
            sources: vec!["otherbot".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .secret;
    let other = download(&mut app.tickets_as(&otherbot), &ticket.id, &screenshot_id)
        .await
        .unwrap_err();
    assert_eq!(
        other.code(),
        Code::NotFound,
        "another source's ticket looks absent, as in GetTicket"
    );

    // Asked for under another ticket it is not found, until that ticket absorbs this one.
    let elsewhere = create(&mut tickets, new_ticket("Another")).await;
    let missing = download(&mut tickets, &elsewhere.id, &screenshot_id)
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    tickets
        .merge_tickets(pb::MergeTicketsRequest {
            target_ticket_id: elsewhere.id.clone(),
            source_ticket_ids: vec![ticket.id.clone()],
            request_id: String::new(),
        })
        .await
        .unwrap();
    let (merged, _, _) = download(&mut tickets, &elsewhere.id, &screenshot_id)
        .await
        .unwrap();
    assert_eq!(merged, vec![1, 2, 3, 4]);
    let malformed = download(&mut tickets, "nope", &screenshot_id)
        .await
        .unwrap_err();
    assert_eq!(malformed.code(), Code::InvalidArgument);
}
