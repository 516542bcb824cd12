//! Webhook delivery to a receiver in this process, 10 endpoints each taking every
//! ticket's creation: commit-to-delivery latency under a steady create load, and how fast
//! a backlog drains.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use ticketd::grpc::pb::{self, webhook_service_client::WebhookServiceClient};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::*;

const ENDPOINTS: usize = 10;
/// Creates per second while latency is measured (each is delivered to every endpoint).
const STEADY_RATE: u64 = 100;
/// Tickets waiting while the endpoints are paused, then drained.
const BACKLOG: u64 = 2_000;

type Webhooks = WebhookServiceClient<InterceptedService<Channel, Bearer>>;

/// Arrivals at the receiver: ticket id and when.
#[derive(Clone, Default)]
struct Arrivals(Arc<Mutex<Vec<(String, Instant)>>>);

#[derive(serde::Deserialize)]
struct Payload {
    data: Entry,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    ticket_id: String,
}

async fn receive(
    State(arrivals): State<Arrivals>,
    Path(_endpoint): Path<usize>,
    body: Bytes,
) -> StatusCode {
    let at = Instant::now();
    match serde_json::from_slice::<Payload>(&body) {
        Ok(payload) => {
            if let Ok(mut all) = arrivals.0.lock() {
                all.push((payload.data.ticket_id, at));
            }
            StatusCode::NO_CONTENT
        }
        Err(_) => StatusCode::BAD_REQUEST,
    }
}

impl Arrivals {
    fn len(&self) -> usize {
        self.0.lock().map(|a| a.len()).unwrap_or(0)
    }

    async fn wait_for(&self, count: usize, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while self.len() < count {
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }
}

async fn set_state(webhooks: &mut Webhooks, id: &str, state: pb::WebhookState) {
    webhooks
        .update_webhook(pb::UpdateWebhookRequest {
            webhook: Some(pb::Webhook {
                id: id.into(),
                state: state as i32,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["state".into()],
            }),
            etag: String::new(),
        })
        .await
        .expect("set a webhook's state");
}

pub(crate) async fn webhook_costs(args: &Args) -> Vec<Row> {
    let (name, url) = fresh_database(args).await;
    let server = start_with(&url, |s| s.webhook_allow_private = true, None).await;
    let arrivals = Arrivals::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let receiver_addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route("/hooks/{endpoint}", axum::routing::post(receive))
        .with_state(arrivals.clone());
    let receiver = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let mut webhooks = WebhookServiceClient::with_interceptor(
        server.channel.clone(),
        Bearer(format!("Bearer {}", server.secret).parse().unwrap()),
    );
    let mut ids = Vec::new();
    for n in 0..ENDPOINTS {
        let made = webhooks
            .create_webhook(pb::CreateWebhookRequest {
                webhook: Some(pb::Webhook {
                    url: format!("http://{receiver_addr}/hooks/{n}"),
                    event_types: vec![pb::EventType::TicketCreated as i32],
                    ..Default::default()
                }),
            })
            .await
            .expect("create a webhook");
        ids.push(made.into_inner().webhook.unwrap().id);
    }

    // Steady creates: each acknowledged create is committed; its ten deliveries are timed
    // from the acknowledgement.
    let acked: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let mut tasks = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / STEADY_RATE));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let total = STEADY_RATE * args.seconds;
    for i in 0..total {
        tick.tick().await;
        let (mut client, acked) = (server.client(), acked.clone());
        tasks.push(tokio::spawn(async move {
            if let Ok(r) = client.create_ticket(ticket(i)).await
                && let Some(t) = r.into_inner().ticket
                && let Ok(mut acked) = acked.lock()
            {
                acked.insert(t.id, Instant::now());
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let created = acked.lock().map(|a| a.len()).unwrap_or(0);
    let expected = created * ENDPOINTS;
    arrivals.wait_for(expected, Duration::from_secs(60)).await;
    let mut latencies: Vec<Duration> = {
        let acked = acked.lock().unwrap();
        let all = arrivals.0.lock().unwrap();
        all.iter()
            .filter_map(|(id, at)| acked.get(id).map(|ack| at.saturating_duration_since(*ack)))
            .collect()
    };
    latencies.sort();
    let steady_delivered = latencies.len();

    // A backlog: the endpoints paused while tickets pile up, then resumed together.
    for id in &ids {
        set_state(&mut webhooks, id, pb::WebhookState::Disabled).await;
    }
    let before = arrivals.len();
    let mut client = server.client();
    for i in 0..BACKLOG {
        client
            .create_ticket(ticket(total + i))
            .await
            .expect("create");
    }
    let started = Instant::now();
    for id in &ids {
        set_state(&mut webhooks, id, pb::WebhookState::Healthy).await;
    }
    let backlog = BACKLOG as usize * ENDPOINTS;
    let drained = arrivals
        .wait_for(before + backlog, Duration::from_secs(300))
        .await;
    let drain_rate = (arrivals.len() - before) as f64 / started.elapsed().as_secs_f64();

    receiver.abort();
    let _ = server.app_stop.send(());
    drop_database(args, &name).await;
    vec![
        Row {
            scenario: format!(
                "Webhook commit-to-delivery p99, {ENDPOINTS} endpoints, {STEADY_RATE} creates/s"
            ),
            value: format!(
                "p99 {:.1} ms (p50 {:.1} ms)",
                percentile(&latencies, 0.99),
                percentile(&latencies, 0.50)
            ),
            baseline: format!("{steady_delivered} of {expected} deliveries timed"),
            ratio: "-".into(),
            target: "p99 <= 200 ms".into(),
        },
        Row {
            scenario: format!("Webhook backlog drain, {ENDPOINTS} endpoints"),
            value: format!("{drain_rate:.0} deliveries/s"),
            baseline: if drained {
                format!("{backlog} deliveries")
            } else {
                format!("only {} of {backlog} within 300 s", arrivals.len() - before)
            },
            ratio: "-".into(),
            target: ">= 1000/s".into(),
        },
    ]
}
