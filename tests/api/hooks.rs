//! Inbound hooks: a signed JSON POST (Standard Webhooks) becomes a ticket or a customer
//! message, once per `webhook-id`; a missing, wrong or stale signature is 401.

use serde_json::{Value, json};
use ticketd::domain::hook::sign;
use ticketd::grpc::pb;
use tonic::Code;

use crate::harness::{Backend, TestApp, spawn_app, violated_fields};

async fn make_hook(app: &TestApp, action: pb::InboundHookAction) -> pb::InboundHook {
    app.webhooks()
        .create_inbound_hook(pb::CreateInboundHookRequest {
            inbound_hook: Some(pb::InboundHook {
                name: "Web form".into(),
                action: action as i32,
                source: "webform".into(),
                ..Default::default()
            }),
        })
        .await
        .expect("create a hook")
        .into_inner()
        .inbound_hook
        .unwrap()
}

/// POSTs `body` to the hook, signed with `secret` as `id` at `timestamp` (now if None).
async fn post(
    app: &TestApp,
    hook: &pb::InboundHook,
    secret: &str,
    id: &str,
    timestamp: Option<i64>,
    body: &Value,
) -> (u16, Value) {
    let body = body.to_string();
    let at = timestamp.unwrap_or_else(|| chrono::Utc::now().timestamp());
    let signature = sign(secret, id, at, body.as_bytes()).unwrap();
    let response = reqwest::Client::new()
        .post(format!("http://{}{}", app.addr, hook.url))
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", at.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

pub async fn a_signed_post_opens_a_ticket_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let hook = make_hook(&app, pb::InboundHookAction::CreateTicket).await;
    assert!(
        hook.secret.starts_with("whsec_"),
        "the secret is shown once"
    );
    assert_eq!(hook.url, format!("/v1/hooks/{}", hook.id));
    let payload = json!({
        "subject": "Disk almost full on db-3",
        "description": "95% used",
        "priority": "PRIORITY_HIGH",
        "tags": ["monitoring"],
        "customFields": {"host": "db-3"},
        "contact": {"externalId": "ops", "name": "Monitoring"}
    });
    let (status, first) = post(&app, &hook, &hook.secret, "alert-1", None, &payload).await;
    assert_eq!(status, 200, "{first}");
    let ticket = &first["ticket"];
    assert_eq!(ticket["subject"], "Disk almost full on db-3");
    assert_eq!(ticket["priority"], "PRIORITY_HIGH");
    assert_eq!(ticket["customFields"]["host"], "db-3");

    // The same delivery again (a sender's retry): the first result.
    let (status, again) = post(&app, &hook, &hook.secret, "alert-1", None, &payload).await;
    assert_eq!(status, 200);
    assert_eq!(again["ticket"]["id"], ticket["id"]);
    let (status, other) = post(&app, &hook, &hook.secret, "alert-2", None, &payload).await;
    assert_eq!(status, 200, "{other}");
    assert!(other["ticket"]["id"].is_string(), "{other}");
    assert_ne!(other["ticket"]["id"], ticket["id"]);

    // Wrong secret, stale timestamp, no signature, unknown hook, bad payload.
    let wrong = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let (status, body) = post(&app, &hook, wrong, "alert-3", None, &payload).await;
    assert_eq!(
        (status, body["error"]["status"].as_str()),
        (401, Some("UNAUTHENTICATED"))
    );
    let stale = chrono::Utc::now().timestamp() - 600;
    let (status, _) = post(&app, &hook, &hook.secret, "alert-4", Some(stale), &payload).await;
    assert_eq!(status, 401);
    let unsigned = reqwest::Client::new()
        .post(format!("http://{}{}", app.addr, hook.url))
        .body(payload.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);
    let elsewhere = pb::InboundHook {
        url: format!("/v1/hooks/{}", uuid::Uuid::new_v4()),
        ..hook.clone()
    };
    let (status, _) = post(&app, &elsewhere, &hook.secret, "alert-5", None, &payload).await;
    assert_eq!(status, 404);
    let (status, body) = post(
        &app,
        &hook,
        &hook.secret,
        "alert-6",
        None,
        &json!({"subjekt": "typo"}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = post(&app, &hook, &hook.secret, "alert-7", None, &json!({})).await;
    assert_eq!(status, 400, "a ticket needs its fields: {body}");
}

pub async fn a_message_hook_posts_to_its_conversation(backend: Backend) {
    let app = spawn_app(backend).await;
    let hook = make_hook(&app, pb::InboundHookAction::PostCustomerMessage).await;
    let message = |text: &str| {
        json!({
            "conversationId": "form-77",
            "channel": "CHANNEL_EMAIL",
            "sender": "ada@example.com",
            "text": text,
            "contact": {"externalId": "crm-ada", "email": "ada@example.com"}
        })
    };
    let (status, first) = post(
        &app,
        &hook,
        &hook.secret,
        "m-1",
        None,
        &message("My order is late"),
    )
    .await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["created"], true);
    let (status, second) = post(
        &app,
        &hook,
        &hook.secret,
        "m-2",
        None,
        &message("Still waiting"),
    )
    .await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(
        second["ticket"]["id"], first["ticket"]["id"],
        "the same conversation"
    );
}

pub async fn hooks_are_administered_by_admins(backend: Backend) {
    let app = spawn_app(backend).await;
    let hook = make_hook(&app, pb::InboundHookAction::CreateTicket).await;
    let listed = app
        .webhooks()
        .list_inbound_hooks(pb::ListInboundHooksRequest {})
        .await
        .unwrap()
        .into_inner()
        .inbound_hooks;
    assert_eq!(listed.len(), 1);
    assert!(
        listed[0].secret.is_empty(),
        "the secret is never shown again"
    );
    let refused = app
        .webhooks()
        .create_inbound_hook(pb::CreateInboundHookRequest {
            inbound_hook: Some(pb::InboundHook::default()),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    let mut fields = violated_fields(&refused);
    fields.sort();
    assert_eq!(fields, vec!["inbound_hook.action", "inbound_hook.name"]);
    app.webhooks()
        .delete_inbound_hook(pb::DeleteInboundHookRequest {
            id: hook.id.clone(),
        })
        .await
        .unwrap();
    let (status, _) = post(&app, &hook, &hook.secret, "late", None, &json!({})).await;
    assert_eq!(status, 404, "a deleted hook takes nothing");
    let again = app
        .webhooks()
        .delete_inbound_hook(pb::DeleteInboundHookRequest {
            id: hook.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::NotFound);

    // Both changes are in the audit trail, the secret in neither.
    let entries = app
        .admin()
        .list_audit_entries(pb::ListAuditEntriesRequest {
            filter: format!(
                r#"resource = "inbound_hook" AND resource_id = "{}""#,
                hook.id
            ),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    let mut actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    actions.sort();
    assert_eq!(actions, vec!["create", "delete"]);
    let recorded = format!("{entries:?}");
    assert!(recorded.contains("Web form"));
    assert!(
        !recorded.contains(&hook.secret),
        "the secret is never recorded"
    );
}
