//! Health, reflection, graceful shutdown and the binary itself.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use ticketd::app::App;
use ticketd::config::Settings;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use tonic_reflection::pb::v1alpha::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};
use uuid::Uuid;

use crate::harness::{
    Backend, TestDatabase, all_ticket_ids, settings_for, spawn_app, start, tickets_at,
};

async fn health(
    channel: tonic::transport::Channel,
    service: &str,
) -> Result<ServingStatus, tonic::Status> {
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await?;
    Ok(response.into_inner().status())
}

pub async fn health_and_reflection_answer_without_a_key(backend: Backend) {
    let app = spawn_app(backend).await;
    assert_eq!(
        health(app.channel.clone(), "").await.unwrap(),
        ServingStatus::Serving
    );
    assert_eq!(
        health(app.channel.clone(), "ticketd.v1.TicketService")
            .await
            .unwrap(),
        ServingStatus::Serving
    );

    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = ServerReflectionClient::new(app.channel.clone())
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) = responses
        .message()
        .await
        .unwrap()
        .and_then(|r| r.message_response)
    else {
        panic!("list services response expected");
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    for expected in [
        "grpc.health.v1.Health",
        "ticketd.v1.AdminService",
        "ticketd.v1.TicketService",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }
}

pub async fn shutdown_reports_not_serving_then_stops_cleanly(backend: Backend) {
    let database = TestDatabase::create(&backend).await;
    let mut settings = settings_for(&database);
    settings.shutdown_delay_seconds = 2;
    let app = start(settings, database).await;
    let channel = app.channel.clone();
    assert_eq!(
        health(channel.clone(), "").await.unwrap(),
        ServingStatus::Serving
    );

    let stopping = tokio::spawn(app.shutdown());
    let mut saw_not_serving = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if matches!(
            health(channel.clone(), "").await,
            Ok(ServingStatus::NotServing)
        ) {
            saw_not_serving = true;
            break;
        }
    }
    assert!(
        saw_not_serving,
        "health must flip to NOT_SERVING before the listener closes"
    );
    let outcome = tokio::time::timeout(Duration::from_secs(10), stopping).await;
    assert!(
        matches!(outcome, Ok(Ok(Ok(())))),
        "run() must return Ok within the grace period"
    );
}

/// The README's serve command: prints a bootstrap key once, serves, exits 0 on SIGTERM.
#[test]
fn the_binary_prints_a_bootstrap_key_once_and_exits_cleanly_on_sigterm() {
    let dir = std::env::temp_dir().join(format!("ticketd-bin-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("ticketd.db").display());

    let run = |expect_key: bool| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ticketd"))
            .args(["serve", "--listen", "127.0.0.1:0", "--database-url", &url])
            .env_remove("TICKETD_BOOTSTRAP_KEY")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ticketd");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut key = None;
        for line in lines.by_ref() {
            let line = line.unwrap();
            if line.trim_start().starts_with("tkd_") {
                key = Some(line.trim().to_owned());
            }
            if line.starts_with("ticketd listening on") {
                break;
            }
        }
        assert_eq!(key.is_some(), expect_key, "bootstrap key printed: {key:?}");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = child.wait().unwrap();
        assert!(
            exit.success(),
            "ticketd must exit 0 after SIGTERM, got {exit}"
        );
    };
    run(true);
    run(false);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Starts the real binary on a database; returns the process and its address.
pub fn spawn_binary(url: &str, key: &str) -> (std::process::Child, String) {
    spawn_binary_with(url, key, &[])
}

pub fn spawn_binary_with(url: &str, key: &str, extra: &[&str]) -> (std::process::Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ticketd"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            url,
            "--bootstrap-key",
            key,
        ])
        .args(extra)
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start ticketd");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("ticketd listening on ").map(str::to_owned))
        .expect("listening line");
    (child, addr)
}

/// `kill -9` in the middle of a create load: every acknowledged ticket is there after a
/// restart, and the event log replays them all with strictly increasing cursors.
pub async fn a_killed_server_loses_no_acknowledged_ticket(backend: Backend) {
    use ticketd::grpc::pb;
    use tokio_stream::StreamExt;

    let database = TestDatabase::create(&backend).await;
    let key = format!("tkd_kill_{}", Uuid::new_v4().simple());
    let (mut child, addr) = spawn_binary(&database.url(), &key);
    let client = tickets_at(&addr, &key).await;
    let mut writers = Vec::new();
    for w in 0..4 {
        let mut client = client.clone();
        writers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0.. {
                match client
                    .create_ticket(crate::harness::new_ticket(&format!("load {w}-{i}")))
                    .await
                {
                    Ok(r) => acked.push(r.into_inner().ticket.unwrap().id),
                    Err(_) => break,
                }
            }
            acked
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    child.kill().expect("kill -9");
    let _ = child.wait();
    let mut acked = std::collections::HashSet::new();
    for w in writers {
        acked.extend(w.await.unwrap());
    }
    assert!(acked.len() > 10, "the load ran ({} tickets)", acked.len());

    let (mut child, addr) = spawn_binary(&database.url(), &key);
    let mut client = tickets_at(&addr, &key).await;
    let stored = all_ticket_ids(&mut client).await;
    let lost: Vec<&String> = acked.difference(&stored).collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");

    let mut stream = client
        .watch_tickets(pb::WatchTicketsRequest {
            filter: "event_type = ticket_created".into(),
            after_cursor: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let mut seen = std::collections::HashSet::new();
    let mut last = 0;
    while seen.len() < stored.len() {
        let event = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("the log replays every ticket")
            .unwrap()
            .unwrap()
            .event
            .unwrap();
        assert!(event.cursor > last, "cursors increase");
        last = event.cursor;
        seen.insert(event.ticket_id);
    }
    assert_eq!(seen, stored, "no gaps in the log");
    let _ = child.kill();
    let _ = child.wait();
}

/// The peak resident memory of a process, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .expect("VmHWM in /proc/<pid>/status")
}

/// Many requests far over the size limit at once: each is refused with
/// RESOURCE_EXHAUSTED as soon as its length is known, so the server never holds them.
pub async fn oversized_requests_are_refused_without_a_memory_spike(backend: Backend) {
    use ticketd::grpc::pb;
    const LIMIT: usize = 1024 * 1024;
    const REQUESTS: usize = 16;
    const SIZE: usize = 16 * 1024 * 1024;

    let database = TestDatabase::create(&backend).await;
    let key = format!("tkd_big_{}", Uuid::new_v4().simple());
    let limit = LIMIT.to_string();
    let (mut child, addr) =
        spawn_binary_with(&database.url(), &key, &["--max-message-bytes", &limit]);
    let mut client = tickets_at(&addr, &key).await;
    client
        .create_ticket(crate::harness::new_ticket("Warm-up"))
        .await
        .expect("a normal call");
    let before = peak_rss_kib(child.id());

    let huge = "x".repeat(SIZE);
    let calls: Vec<_> = (0..REQUESTS)
        .map(|i| {
            let mut client = client.clone();
            let request = pb::CreateTicketRequest {
                description: huge.clone(),
                ..crate::harness::new_ticket(&format!("Huge {i}"))
            };
            tokio::spawn(async move { client.create_ticket(request).await })
        })
        .collect();
    for call in calls {
        let status = call.await.unwrap().expect_err("over the limit");
        assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    }
    let grown_kib = peak_rss_kib(child.id()).saturating_sub(before);
    eprintln!("peak RSS grew by {grown_kib} KiB for {REQUESTS} x {SIZE} bytes refused");
    // Holding even two of the bodies would take 32 MiB.
    assert!(
        grown_kib < 24 * 1024,
        "peak RSS grew by {grown_kib} KiB while refusing oversized requests"
    );
    client
        .create_ticket(crate::harness::new_ticket("After the flood"))
        .await
        .expect("the server still serves");
    let _ = child.kill();
    let _ = child.wait();
}

pub async fn an_unauthenticated_flood_costs_no_memory_and_keys_are_served_meanwhile(
    backend: Backend,
) {
    use ticketd::grpc::pb;
    const REQUESTS: usize = 8;
    // Transcript messages of 1,000 characters, about 15 MiB a request: decoding one
    // would take more memory than the whole allowance below.
    const MESSAGES: usize = 15_000;

    let database = TestDatabase::create(&backend).await;
    let key = format!("tkd_flood_{}", Uuid::new_v4().simple());
    let (mut child, addr) = spawn_binary_with(&database.url(), &key, &[]);
    let mut client = tickets_at(&addr, &key).await;
    client
        .create_ticket(crate::harness::new_ticket("Warm-up"))
        .await
        .expect("a normal call");
    let before = peak_rss_kib(child.id());

    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut request = crate::bridge::escalation("flood", 0);
    request.conversation.as_mut().unwrap().transcript = (0..MESSAGES)
        .map(|i| pb::TranscriptMessage {
            id: format!("m{i}"),
            role: pb::MessageRole::Customer as i32,
            text: "x".repeat(1_000),
            ..Default::default()
        })
        .collect();
    let calls: Vec<_> = (0..REQUESTS)
        .map(|_| {
            let mut anonymous =
                pb::escalation_service_client::EscalationServiceClient::new(channel.clone())
                    .max_encoding_message_size(usize::MAX);
            let request = request.clone();
            tokio::spawn(async move { anonymous.escalate_conversation(request).await })
        })
        .collect();
    // Keys are served while the flood is refused.
    for i in 0..5 {
        client
            .create_ticket(crate::harness::new_ticket(&format!("During the flood {i}")))
            .await
            .expect("an authenticated call during the flood");
    }
    for call in calls {
        let status = call.await.unwrap().expect_err("no key");
        assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    }
    let grown_kib = peak_rss_kib(child.id()).saturating_sub(before);
    eprintln!("peak RSS grew by {grown_kib} KiB for {REQUESTS} unauthenticated ~15 MiB calls");
    assert!(
        grown_kib < 32 * 1024,
        "peak RSS grew by {grown_kib} KiB while refusing unauthenticated requests"
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// A wrong PostgreSQL address fails the start within moments, naming the server and the
/// cause, instead of waiting for a pool to time out.
pub async fn an_unreachable_postgres_server_is_named_at_once() {
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut settings = Settings::with_database(format!("postgres://postgres@127.0.0.1:{port}/x"));
    settings.listen = "127.0.0.1:0".into();
    settings.database_acquire_timeout_seconds = 30;
    let started = std::time::Instant::now();
    let err = match App::build(settings).await {
        Ok(_) => panic!("started without a database"),
        Err(err) => err,
    };
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "failed at once"
    );
    let text = crate::harness::error_chain(&err);
    assert!(
        text.contains(&format!("127.0.0.1:{port}")) && text.contains("refused"),
        "{text}"
    );
}
