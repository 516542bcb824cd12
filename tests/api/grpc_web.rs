//! gRPC-Web for browser consoles: calls over HTTP/1.1 with a real HTTP client, and CORS
//! for the origins the settings name (none by default).

use prost::Message;
use ticketd::grpc::pb;

use crate::harness::{Backend, TestApp, new_ticket, spawn_app, spawn_app_with};

const CONSOLE: &str = "https://console.example.com";

/// A gRPC-Web request body: one uncompressed message with its length prefix.
fn frame(message: &impl Message) -> Vec<u8> {
    let body = message.encode_to_vec();
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(body.len() as u32).to_be_bytes());
    framed.extend_from_slice(&body);
    framed
}

/// The frames of a gRPC-Web response body: (flag, payload); flag 0x80 is the trailers.
fn frames(mut body: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while body.len() >= 5 {
        let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
        out.push((body[0], body[5..5 + len].to_vec()));
        body = &body[5 + len..];
    }
    out
}

async fn call(
    app: &TestApp,
    method: &str,
    secret: Option<&str>,
    body: Vec<u8>,
) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(format!(
            "http://{}/ticketd.v1.TicketService/{method}",
            app.addr
        ))
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .header("origin", CONSOLE)
        .body(body);
    if let Some(secret) = secret {
        request = request.header("authorization", format!("Bearer {secret}"));
    }
    request.send().await.expect("HTTP/1.1 call")
}

/// The grpc-status of a response: in its headers (an error before any message) or in
/// its trailer frame.
fn status_of(headers: &reqwest::header::HeaderMap, frames: &[(u8, Vec<u8>)]) -> String {
    if let Some(status) = headers.get("grpc-status") {
        return status.to_str().unwrap().to_owned();
    }
    let trailers = frames
        .iter()
        .find(|(flag, _)| flag & 0x80 != 0)
        .map(|(_, t)| String::from_utf8_lossy(t).to_string())
        .expect("a trailer frame");
    trailers
        .lines()
        .find_map(|l| l.strip_prefix("grpc-status:"))
        .expect("grpc-status in the trailers")
        .trim()
        .to_owned()
}

pub async fn browsers_call_the_api_with_grpc_web(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.cors_origins = vec![CONSOLE.into()]).await;
    let created = call(
        &app,
        "CreateTicket",
        Some(&app.admin_secret),
        frame(&new_ticket("From the browser")),
    )
    .await;
    assert_eq!(created.status(), 200);
    assert_eq!(created.version(), reqwest::Version::HTTP_11);
    assert_eq!(
        created.headers()["access-control-allow-origin"],
        CONSOLE,
        "the console's origin may read the answer"
    );
    let headers = created.headers().clone();
    let body = created.bytes().await.unwrap();
    let answer = frames(&body);
    assert_eq!(status_of(&headers, &answer), "0");
    let response = pb::CreateTicketResponse::decode(answer[0].1.as_slice()).unwrap();
    let ticket = response.ticket.unwrap();
    assert_eq!(ticket.subject, "From the browser");

    // The same key, limits and errors as gRPC: no key is UNAUTHENTICATED (16), a bad
    // request INVALID_ARGUMENT (3).
    let anonymous = call(&app, "CreateTicket", None, frame(&new_ticket("x"))).await;
    let headers = anonymous.headers().clone();
    let body = anonymous.bytes().await.unwrap();
    assert_eq!(status_of(&headers, &frames(&body)), "16");
    let invalid = call(
        &app,
        "GetTicket",
        Some(&app.admin_secret),
        frame(&pb::GetTicketRequest {
            key: Some(pb::get_ticket_request::Key::Id("not-a-uuid".into())),
        }),
    )
    .await;
    let headers = invalid.headers().clone();
    let body = invalid.bytes().await.unwrap();
    assert_eq!(status_of(&headers, &frames(&body)), "3");
}

async fn preflight(app: &TestApp, origin: &str) -> reqwest::Response {
    reqwest::Client::new()
        .request(
            reqwest::Method::OPTIONS,
            format!("http://{}/ticketd.v1.TicketService/CreateTicket", app.addr),
        )
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type,x-grpc-web",
        )
        .send()
        .await
        .expect("preflight")
}

pub async fn cross_origin_calls_are_allowed_only_from_configured_origins(backend: Backend) {
    let app = spawn_app_with(backend.clone(), |s| s.cors_origins = vec![CONSOLE.into()]).await;
    let allowed = preflight(&app, CONSOLE).await;
    assert!(allowed.status().is_success(), "{:?}", allowed.status());
    assert_eq!(allowed.headers()["access-control-allow-origin"], CONSOLE);
    let allowed_headers = allowed.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    for header in ["authorization", "content-type", "x-grpc-web"] {
        assert!(allowed_headers.contains(header), "{allowed_headers}");
    }
    let other = preflight(&app, "https://evil.example").await;
    assert!(other.headers().get("access-control-allow-origin").is_none());

    // By default no origin may.
    let closed = spawn_app(backend).await;
    let refused = preflight(&closed, CONSOLE).await;
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

pub async fn a_cors_origin_that_is_not_one_stops_the_start(backend: Backend) {
    for origin in [
        "*",
        "https://console.example.com/app",
        "console.example.com",
    ] {
        let database = crate::harness::TestDatabase::create(&backend).await;
        let mut settings = crate::harness::settings_for(&database);
        settings.cors_origins = vec![origin.into()];
        let error = ticketd::app::App::build(settings)
            .await
            .err()
            .expect("the start is refused");
        assert!(
            error.to_string().contains("TICKETD_CORS_ORIGINS"),
            "{origin}: {error}"
        );
    }
}

/// A body that is not a well-formed gRPC message is the caller's mistake: INVALID_ARGUMENT,
/// not INTERNAL, and nothing is written.
pub async fn malformed_request_bodies_are_invalid_arguments(backend: Backend) {
    let app = spawn_app(backend).await;
    let whole = frame(&new_ticket("Cut short"));
    let mut compressed = whole.clone();
    compressed[0] = 1;
    for (what, body) in [
        ("cut short", whole[..whole.len() - 3].to_vec()),
        ("missing", Vec::new()),
        ("compressed without an encoding", compressed),
    ] {
        let response = call(&app, "CreateTicket", Some(&app.admin_secret), body).await;
        let headers = response.headers().clone();
        let body = response.bytes().await.unwrap();
        assert_eq!(status_of(&headers, &frames(&body)), "3", "{what}");
    }
    // gRPC-Web text that is not base64.
    let response = reqwest::Client::new()
        .post(format!(
            "http://{}/ticketd.v1.TicketService/CreateTicket",
            app.addr
        ))
        .header("content-type", "application/grpc-web-text")
        .header("authorization", format!("Bearer {}", app.admin_secret))
        .body("not base64 at all!")
        .send()
        .await
        .unwrap();
    let headers = response.headers().clone();
    let body = response.bytes().await.unwrap();
    let status = headers
        .get("grpc-status")
        .map(|s| s.to_str().unwrap().to_owned())
        .unwrap_or_else(|| String::from_utf8_lossy(&body).to_string());
    assert!(
        status == "3" || status.contains("grpc-status:3"),
        "{status} {headers:?}"
    );
    let listed = app
        .tickets()
        .list_tickets(pb::ListTicketsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.tickets.is_empty());
}
