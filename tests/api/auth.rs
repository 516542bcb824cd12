//! API keys and roles.

use ticketd::grpc::pb;
use tonic::Code;
use uuid::Uuid;

use crate::harness::{Backend, create, new_ticket, spawn_app, violated_fields};

pub async fn calls_without_a_valid_key_are_unauthenticated(backend: Backend) {
    let app = spawn_app(backend).await;
    let list = pb::ListTicketsRequest::default;

    let anonymous = app
        .tickets_anonymous()
        .list_tickets(list())
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);

    let unknown = app
        .tickets_as("tkd_not_a_real_key")
        .list_tickets(list())
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::Unauthenticated);

    let mut raw = tonic::Request::new(list());
    raw.metadata_mut()
        .insert("authorization", "Basic dXNlcjpwYXNz".parse().unwrap());
    let wrong_scheme = app.tickets_anonymous().list_tickets(raw).await.unwrap_err();
    assert_eq!(wrong_scheme.code(), Code::Unauthenticated);
}

pub async fn a_revoked_key_stops_working(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut admin = app.admin();
    let created = admin
        .create_api_key(pb::CreateApiKeyRequest {
            name: "temp".into(),
            role: pb::Role::Agent as i32,
            agent_id: String::new(),
            channels: vec![],
            sources: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    let key = created.api_key.unwrap();
    app.tickets_as(&created.secret)
        .list_tickets(pb::ListTicketsRequest::default())
        .await
        .unwrap();

    let revoked = admin
        .revoke_api_key(pb::RevokeApiKeyRequest { id: key.id.clone() })
        .await
        .unwrap()
        .into_inner()
        .api_key
        .unwrap();
    assert!(revoked.revoked_at.is_some());
    let err = app
        .tickets_as(&created.secret)
        .list_tickets(pb::ListTicketsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    let missing = admin
        .revoke_api_key(pb::RevokeApiKeyRequest {
            id: Uuid::new_v4().to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
}

pub async fn each_role_reaches_only_its_own_calls(backend: Backend) {
    let app = spawn_app(backend).await;
    let agent = app.key(pb::Role::Agent, Some(app.agent("Ada").await)).await;
    let bot = app.key(pb::Role::Bot, None).await;
    let gateway = app.key(pb::Role::Gateway, None).await;

    // Bots create and read tickets but do not work them.
    let mut as_bot = app.tickets_as(&bot);
    let ticket = create(&mut as_bot, new_ticket("From the bot")).await;
    let note = as_bot
        .add_note(pb::AddNoteRequest {
            ticket_id: ticket.id.clone(),
            body: "hi".into(),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(note.code(), Code::PermissionDenied);

    // Gateways have no business in TicketService.
    let listed = app
        .tickets_as(&gateway)
        .list_tickets(pb::ListTicketsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(listed.code(), Code::PermissionDenied);

    // Agents work tickets but cannot administer keys.
    app.tickets_as(&agent)
        .add_note(pb::AddNoteRequest {
            ticket_id: ticket.id.clone(),
            body: "on it".into(),
            request_id: String::new(),
        })
        .await
        .unwrap();
    for secret in [&agent, &bot, &gateway] {
        let err = app
            .admin_as(secret)
            .list_api_keys(pb::ListApiKeysRequest::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);
    }
}

pub async fn keys_are_listed_without_secrets_newest_first(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut admin = app.admin();
    for i in 0..4 {
        admin
            .create_api_key(pb::CreateApiKeyRequest {
                name: format!("key {i}"),
                role: pb::Role::Bot as i32,
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let first = admin
        .list_api_keys(pb::ListApiKeysRequest {
            page_size: 3,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let second = admin
        .list_api_keys(pb::ListApiKeysRequest {
            page_size: 3,
            page_token: first.next_page_token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let names: Vec<String> = first
        .api_keys
        .iter()
        .chain(&second.api_keys)
        .map(|k| k.name.clone())
        .collect();
    assert_eq!(names, vec!["key 3", "key 2", "key 1", "key 0", "bootstrap"]);
    assert!(second.next_page_token.is_empty());
    assert!(
        first
            .api_keys
            .iter()
            .all(|k| k.prefix.starts_with("tkd_") && k.prefix.len() == 10)
    );
}

pub async fn key_requests_are_validated(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut admin = app.admin();
    let cases = [
        (
            pb::CreateApiKeyRequest {
                name: "".into(),
                role: pb::Role::Bot as i32,
                agent_id: String::new(),
                channels: vec![],
                sources: vec![],
            },
            "name",
        ),
        (
            pb::CreateApiKeyRequest {
                name: "x".into(),
                role: 0,
                agent_id: String::new(),
                channels: vec![],
                sources: vec![],
            },
            "role",
        ),
        (
            pb::CreateApiKeyRequest {
                name: "x".into(),
                role: 99,
                agent_id: String::new(),
                channels: vec![],
                sources: vec![],
            },
            "role",
        ),
        (
            pb::CreateApiKeyRequest {
                name: "x".into(),
                role: pb::Role::Bot as i32,
                agent_id: Uuid::new_v4().to_string(),
                channels: vec![],
                sources: vec![],
            },
            "agent_id",
        ),
        (
            pb::CreateApiKeyRequest {
                name: "x".into(),
                role: pb::Role::Agent as i32,
                agent_id: "42".into(),
                channels: vec![],
                sources: vec![],
            },
            "agent_id",
        ),
    ];
    for (request, field) in cases {
        let err = admin.create_api_key(request).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert_eq!(violated_fields(&err), vec![field]);
    }
}
