//! HTTP beside gRPC, driven with a real HTTP client: watches as Server-Sent Events (with
//! resumption by `Last-Event-ID`), email intake as a raw message, and errors as JSON with
//! the HTTP statuses of AIP-193.

use std::time::Duration;

use ticketd::grpc::pb;

use crate::bridge::{escalate, escalation};
use crate::email::email;
use crate::harness::{Backend, TestApp, create, new_ticket, spawn_app, spawn_app_with};

fn url(app: &TestApp, path: &str) -> String {
    format!("http://{}{path}", app.addr)
}

/// One Server-Sent Event: its `id`, `event` name and `data`.
#[derive(Debug, Default, Clone)]
struct Sse {
    id: String,
    event: String,
    data: String,
}

/// Reads events off an open SSE response until `count` have come (or a few seconds
/// passed); keep-alive comments are skipped.
async fn read_events(response: &mut reqwest::Response, count: usize) -> Vec<Sse> {
    let mut events = Vec::new();
    let mut buffer = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while events.len() < count {
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .expect("events within 10 s")
            .expect("a readable stream")
            .expect("the stream stays open");
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let mut event = Sse::default();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    event.id = v.trim().into();
                } else if let Some(v) = line.strip_prefix("event:") {
                    event.event = v.trim().into();
                } else if let Some(v) = line.strip_prefix("data:") {
                    event.data.push_str(v.trim_start());
                }
            }
            if !event.data.is_empty() {
                events.push(event);
            }
        }
    }
    events
}

async fn open_watch(
    app: &TestApp,
    secret: &str,
    query: &str,
    last_event_id: Option<&str>,
) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .get(url(app, &format!("/v1/tickets:watch{query}")))
        .bearer_auth(secret)
        .header("accept", "text/event-stream");
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    request.send().await.expect("open the watch")
}

async fn json_error(response: reqwest::Response) -> (u16, serde_json::Value) {
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json_body().await;
    (status, body)
}

trait JsonBody {
    async fn json_body(self) -> serde_json::Value;
}

impl JsonBody for reqwest::Response {
    async fn json_body(self) -> serde_json::Value {
        let text = self.text().await.expect("a body");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }
}

pub async fn watches_stream_as_server_sent_events_and_resume(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut tickets = app.tickets();
    let first = create(&mut tickets, new_ticket("Seen over SSE")).await;

    let mut watch = open_watch(&app, &app.admin_secret, "?after_cursor=0", None).await;
    assert_eq!(watch.status(), 200);
    assert!(
        watch.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let events = read_events(&mut watch, 1).await;
    let entry: serde_json::Value = serde_json::from_str(&events[0].data).unwrap();
    assert_eq!(entry["event"]["type"], "EVENT_TYPE_TICKET_CREATED");
    assert_eq!(entry["event"]["ticketId"], first.id.as_str());
    // The event's id is its cursor, as the JSON says (int64 as a string).
    assert_eq!(entry["event"]["cursor"], events[0].id.as_str());
    drop(watch);

    // A reconnect with Last-Event-ID goes on after it: the next event is the next ticket.
    let second = create(&mut tickets, new_ticket("After the reconnect")).await;
    let mut resumed = open_watch(&app, &app.admin_secret, "", Some(&events[0].id)).await;
    let next = read_events(&mut resumed, 1).await;
    let entry: serde_json::Value = serde_json::from_str(&next[0].data).unwrap();
    assert_eq!(entry["event"]["ticketId"], second.id.as_str());
    // Live events follow.
    let third = create(&mut tickets, new_ticket("Live")).await;
    let live = read_events(&mut resumed, 1).await;
    let entry: serde_json::Value = serde_json::from_str(&live[0].data).unwrap();
    assert_eq!(entry["event"]["ticketId"], third.id.as_str());
    assert!(live[0].id.parse::<i64>().unwrap() > next[0].id.parse::<i64>().unwrap());
    drop(resumed);

    // The query's JSON name resumes the same way.
    let query = format!("?afterCursor={}", events[0].id);
    let mut camel = open_watch(&app, &app.admin_secret, &query, None).await;
    let next = read_events(&mut camel, 1).await;
    let entry: serde_json::Value = serde_json::from_str(&next[0].data).unwrap();
    assert_eq!(entry["event"]["ticketId"], second.id.as_str());
}

pub async fn http_errors_are_json_with_the_status_of_their_code(backend: Backend) {
    let app = spawn_app(backend).await;
    let (status, body) = json_error(
        reqwest::Client::new()
            .get(url(&app, "/v1/tickets:watch"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["status"], "UNAUTHENTICATED");

    let (status, body) = json_error(
        open_watch(
            &app,
            &app.admin_secret,
            "?filter=status%20%3D%20SIDEWAYS",
            None,
        )
        .await,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["status"], "INVALID_ARGUMENT");
    assert_eq!(
        body["error"]["details"][0]["fieldViolations"][0]["field"],
        "filter"
    );

    let (status, _) =
        json_error(open_watch(&app, &app.admin_secret, "?after_cursor=soon", None).await).await;
    assert_eq!(status, 400);
    let (status, _) =
        json_error(open_watch(&app, &app.admin_secret, "", Some("yesterday")).await).await;
    assert_eq!(status, 400);
    // A parameter the route does not know is refused, not ignored (a misspelled cursor
    // would replay from the start).
    for query in ["?after=5", "?source=helpbot"] {
        let (status, body) =
            json_error(open_watch(&app, &app.admin_secret, query, None).await).await;
        assert_eq!(status, 400, "{query}: {body}");
    }

    let bot = app.key(pb::Role::Bot, None).await;
    let (status, body) = json_error(open_watch(&app, &bot, "", None).await).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["status"], "PERMISSION_DENIED");
}

pub async fn a_rate_limited_http_caller_is_told_when_to_retry(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.rate_limit_admin_per_second = Some(1)).await;
    let client = reqwest::Client::new();
    let mut limited = None;
    for _ in 0..5 {
        let response = client
            .post(url(&app, "/v1/email"))
            .bearer_auth(&app.admin_secret)
            .body("not an email")
            .send()
            .await
            .unwrap();
        if response.status() == 429 {
            limited = Some(response);
            break;
        }
    }
    let limited = limited.expect("the fifth call within a second is over a limit of 1/s");
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    let body = limited.json_body().await;
    assert_eq!(body["error"]["status"], "RESOURCE_EXHAUSTED");
}

pub async fn conversations_stream_to_bots_over_sse(backend: Backend) {
    let app = spawn_app(backend).await;
    let bot = app.key(pb::Role::Bot, None).await;
    let mut watch = reqwest::Client::new()
        .get(url(
            &app,
            "/v1/conversations:watch?source=helpbot&channel=CHANNEL_CHAT",
        ))
        .bearer_auth(&bot)
        .send()
        .await
        .unwrap();
    assert_eq!(watch.status(), 200);
    let (ticket, _) = escalate(&mut app.escalation(), escalation("sse-1", 2)).await;
    let events = read_events(&mut watch, 1).await;
    let update: serde_json::Value = serde_json::from_str(&events[0].data).unwrap();
    assert_eq!(update["update"]["conversationId"], "sse-1");
    assert_eq!(update["update"]["ticketNumber"], ticket.number.to_string());
    assert_eq!(update["update"]["cursor"], events[0].id.as_str());

    let (status, _) = json_error(
        reqwest::Client::new()
            .get(url(&app, "/v1/conversations:watch?channel=unspecified"))
            .bearer_auth(&bot)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
}

pub async fn email_is_taken_in_over_http(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        s.email_address = "help@acme.test".parse().unwrap();
        s.max_email_bytes = 64 * 1024;
    })
    .await;
    let gateway = app.key(pb::Role::Gateway, None).await;
    let raw = email(
        "Ada <ada@example.com>",
        "help@acme.test",
        "Printer on fire",
        "m1@example.com",
        "",
        "It is smoking.",
    );
    let post = |body: Vec<u8>, key: &str| {
        reqwest::Client::new()
            .post(url(&app, "/v1/email?recipient=help%40acme.test"))
            .bearer_auth(key)
            .header("content-type", "message/rfc822")
            .header("idempotency-key", "delivery-1")
            .body(body)
            .send()
    };
    let response = post(raw.clone(), &gateway).await.unwrap();
    assert_eq!(response.status(), 200);
    let first = response.json_body().await;
    assert_eq!(first["created"], true);
    assert_eq!(first["ticket"]["subject"], "Printer on fire");
    assert_eq!(first["threadedBy"], "THREADED_BY_NEW_TICKET");
    // Delivered again with the same key: the first result.
    let again = post(raw, &gateway).await.unwrap().json_body().await;
    assert_eq!(again["ticket"]["id"], first["ticket"]["id"]);

    // Too large, and not for agents.
    let huge = email(
        "ada@example.com",
        "help@acme.test",
        "Big",
        "m2@example.com",
        "",
        &"x".repeat(100 * 1024),
    );
    let (status, body) = json_error(post(huge, &gateway).await.unwrap()).await;
    assert_eq!(status, 413);
    assert_eq!(body["error"]["status"], "RESOURCE_EXHAUSTED");
    assert_eq!(body["error"]["code"], 413);
    let agent_key = app.key(pb::Role::Agent, Some(app.agent("Ann").await)).await;
    let (status, _) = json_error(post(b"x".to_vec(), &agent_key).await.unwrap()).await;
    assert_eq!(status, 403);
}

pub async fn gateways_claim_deliveries_with_a_long_poll(backend: Backend) {
    let app = spawn_app(backend).await;
    let gateway = app.key(pb::Role::Gateway, None).await;
    let claim = |body: serde_json::Value| {
        reqwest::Client::new()
            .post(url(&app, "/v1/channels/CHANNEL_EMAIL/deliveries:claim"))
            .bearer_auth(&gateway)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    // Nothing queued: an immediate claim is empty.
    let empty = claim(serde_json::json!({})).await.unwrap();
    assert_eq!(empty.status(), 200);
    let empty = empty.json_body().await;
    assert!(empty.get("messages").is_none(), "{empty}");

    // A claim waiting for up to 10 s gets the reply queued meanwhile.
    let waiting = claim(serde_json::json!({"consumerGroup": "mail", "wait": "10s"}));
    let reply = async {
        let mut tickets = app.tickets();
        let ticket = create(&mut tickets, new_ticket("Where is my parcel?")).await;
        tickets
            .add_reply(pb::AddReplyRequest {
                ticket_id: ticket.id,
                body: "On its way.".into(),
                channel: pb::Channel::Email as i32,
                ..Default::default()
            })
            .await
            .unwrap();
    };
    let (claimed, ()) = tokio::join!(waiting, reply);
    let claimed = claimed.unwrap().json_body().await;
    let messages = claimed["messages"].as_array().expect("a message");
    assert_eq!(messages.len(), 1, "{claimed}");
    let message = &messages[0];
    assert_eq!(message["body"], "On its way.");
    assert_eq!(message["consumerGroup"], "mail");

    // Acknowledged with the ack route and the lease; then nothing is left to claim.
    let acked = reqwest::Client::new()
        .post(url(
            &app,
            &format!(
                "/v1/deliveries/{}:ack",
                message["messageId"].as_str().unwrap()
            ),
        ))
        .bearer_auth(&gateway)
        .body(
            serde_json::json!({
                "outcome": "DELIVERY_OUTCOME_DELIVERED",
                "consumerGroup": "mail",
                "leaseId": message["leaseId"]
            })
            .to_string(),
        )
        .send()
        .await
        .unwrap()
        .json_body()
        .await;
    assert_eq!(acked["status"], "DELIVERY_STATUS_DELIVERED", "{acked}");
    let after = claim(serde_json::json!({"consumerGroup": "mail"}))
        .await
        .unwrap();
    assert_eq!(after.status(), 200);
    let after = after.json_body().await;
    assert!(after.get("messages").is_none(), "{after}");

    for (body, field) in [
        (serde_json::json!({"maxMessages": 101}), "max_messages"),
        (serde_json::json!({"wait": "31s"}), "wait"),
    ] {
        let (status, error) = json_error(claim(body).await.unwrap()).await;
        assert_eq!(status, 400);
        assert_eq!(
            error["error"]["details"][0]["fieldViolations"][0]["field"],
            field
        );
    }
}

pub async fn email_up_to_its_own_limit_is_taken_over_http(backend: Backend) {
    // Larger than the 2 MiB HTTP frameworks default to, within TICKETD_MAX_EMAIL_BYTES.
    let app = spawn_app_with(backend, |s| {
        s.email_address = "help@acme.test".parse().unwrap();
        s.max_email_bytes = 4 * 1024 * 1024;
    })
    .await;
    let gateway = app.key(pb::Role::Gateway, None).await;
    let raw = email(
        "ada@example.com",
        "help@acme.test",
        "A long log",
        "big@example.com",
        "",
        &"log line\r\n".repeat(300_000),
    );
    assert!(raw.len() > 2 * 1024 * 1024);
    let response = reqwest::Client::new()
        .post(url(&app, "/v1/email?recipient=help%40acme.test"))
        .bearer_auth(&gateway)
        .body(raw)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.json_body().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ticket"]["subject"], "A long log");
}

pub async fn an_http_call_past_the_request_timeout_is_a_json_504(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.request_timeout_seconds = 3).await;
    let gateway = app.key(pb::Role::Gateway, None).await;
    // A claim waiting longer than the request may take.
    let response = reqwest::Client::new()
        .post(url(&app, "/v1/channels/CHANNEL_SMS/deliveries:claim"))
        .bearer_auth(&gateway)
        .body(serde_json::json!({"wait": "20s"}).to_string())
        .send()
        .await
        .unwrap();
    let (status, body) = json_error(response).await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["error"]["status"], "DEADLINE_EXCEEDED");
}
