//! Health, reflection, graceful shutdown and the binary itself.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use tonic_reflection::pb::v1alpha::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};
use uuid::Uuid;

use crate::harness::{Backend, TestDatabase, settings_for, spawn_app, start};

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
