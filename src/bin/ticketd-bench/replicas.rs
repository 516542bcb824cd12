//! One, two and three ticketd replicas on one PostgreSQL database: create throughput with
//! the load spread over them, the commit-to-receive latency of watchers and of
//! conversation streams on another replica than the writer's, how evenly gateways on
//! different replicas share a channel's messages, and the database connections they hold.

use std::sync::Arc;
use std::time::Duration;

use sqlx::Connection;

use crate::*;

/// Watchers on the last replica while notes are written through the first.
const WATCHERS: usize = 100;
const NOTES_PER_SECOND: f64 = 100.0;

pub(crate) async fn replica_costs(args: &Args) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut single = None;
    for replicas in 1..=3usize {
        let (name, url) = fresh_database(args).await;
        let mut servers = Vec::new();
        for _ in 0..replicas {
            servers.push(start(&url).await);
        }
        let clients: Vec<Client> = servers.iter().map(Server::client).collect();
        let spread = |seconds: u64| {
            let clients = clients.clone();
            load(args.clients, seconds, None, move |i| {
                let mut client = clients[i as usize % clients.len()].clone();
                async move { client.create_ticket(ticket(i)).await.is_ok() }
            })
        };
        spread(2).await;
        let (creates, _) = spread(args.seconds).await;
        let (p99, samples) = fan_out_across(
            &servers[0],
            &servers[replicas - 1],
            WATCHERS,
            NOTES_PER_SECOND,
            args.seconds.min(5),
        )
        .await;
        let (update_p99, updates, shares) =
            conversation_across(&servers, args.seconds.min(5)).await;
        let connections: i64 = match sqlx::PgConnection::connect(&url).await {
            Ok(mut c) => sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database()",
            )
            .fetch_one(&mut c)
            .await
            .map(|n: i64| n - 1)
            .unwrap_or(-1),
            Err(_) => -1,
        };
        for server in servers {
            let _ = server.app_stop.send(());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop_database(args, &name).await;
        let one = *single.get_or_insert(creates);
        rows.push(Row {
            scenario: format!(
                "{replicas} replica{}: CreateTicket, {} clients spread over them",
                if replicas == 1 { "" } else { "s" },
                args.clients
            ),
            value: format!("{creates:.0}/s, {connections} database connections"),
            baseline: format!("{one:.0}/s with one replica"),
            ratio: format!("{:.2}x", creates / one),
            target: "report".into(),
        });
        rows.push(Row {
            scenario: format!(
                "{replicas} replica{}: {WATCHERS} watchers on the {} replica, {NOTES_PER_SECOND:.0} notes/s through the first",
                if replicas == 1 { "" } else { "s" },
                if replicas == 1 { "same" } else { "last" }
            ),
            value: format!("commit-to-receive p99 {p99:.1} ms ({samples} deliveries)"),
            baseline: "-".into(),
            ratio: "-".into(),
            target: "report".into(),
        });
        rows.push(Row {
            scenario: format!(
                "{replicas} replica{}: {WATCHERS} conversation streams on the {} replica, {REPLIES_PER_SECOND:.0} replies/s through the first; one gateway per replica",
                if replicas == 1 { "" } else { "s" },
                if replicas == 1 { "same" } else { "last" }
            ),
            value: format!("commit-to-receive p99 {update_p99:.1} ms ({updates} updates)"),
            baseline: format!("messages per gateway: {shares:?}"),
            ratio: "-".into(),
            target: "report".into(),
        });
    }
    rows
}

const REPLIES_PER_SECOND: f64 = 50.0;

/// A chat conversation escalated through the first replica; [`WATCHERS`] conversation
/// streams on the last; one gateway subscribed on each replica, in one consumer group,
/// acknowledging what it is handed. Replies go through the first replica at
/// [`REPLIES_PER_SECOND`] for `seconds`. Returns the streams' p99 from each update's time
/// to its arrival, how many arrived, and how many messages each gateway took.
async fn conversation_across(servers: &[Server], seconds: u64) -> (f64, usize, Vec<usize>) {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use ticketd::grpc::pb::{self, escalation_service_client::EscalationServiceClient};
    use tokio_stream::StreamExt;

    let escalation = |server: &Server| {
        EscalationServiceClient::with_interceptor(
            server.channel.clone(),
            Bearer(format!("Bearer {}", server.secret).parse().unwrap()),
        )
    };
    let request = conversation(0);
    let conversation_id = request
        .conversation
        .as_ref()
        .map(|c| c.conversation_id.clone())
        .unwrap_or_default();
    let ticket = escalation(&servers[0])
        .escalate_conversation(request)
        .await
        .expect("escalate")
        .into_inner()
        .ticket
        .expect("ticket");
    // The streams start after the escalation's own events (as a bot that just handed the
    // conversation over would), so nothing is replayed to them.
    let from = servers[0]
        .client()
        .list_activity(pb::ListActivityRequest {
            ticket_id: ticket.id.clone(),
            ..Default::default()
        })
        .await
        .expect("activity")
        .into_inner()
        .entries
        .last()
        .map_or(0, |e| e.cursor);
    let done = Arc::new(AtomicBool::new(false));
    let samples: Samples = Arc::default();
    let last = &servers[servers.len() - 1];
    let mut handles = Vec::new();
    for _ in 0..WATCHERS {
        let mut stream = escalation(last)
            .watch_conversations(pb::WatchConversationsRequest {
                source: "bench".into(),
                channel: pb::Channel::Chat as i32,
                conversation_id: conversation_id.clone(),
                after_cursor: from,
            })
            .await
            .expect("watch conversations")
            .into_inner();
        let (done, samples) = (done.clone(), samples.clone());
        handles.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            while !done.load(Ordering::Relaxed) {
                match tokio::time::timeout(Duration::from_millis(200), stream.next()).await {
                    Ok(Some(Ok(r))) => {
                        if let Some(ts) = r.update.and_then(|u| u.occurred_at) {
                            let at = chrono::DateTime::from_timestamp(ts.seconds, ts.nanos as u32)
                                .unwrap();
                            mine.push((chrono::Utc::now() - at).to_std().unwrap_or_default());
                        }
                    }
                    Ok(_) => break,
                    Err(_) => {}
                }
            }
            samples.lock().await.extend(mine);
        }));
    }
    let taken: Vec<Arc<AtomicUsize>> = servers.iter().map(|_| Arc::default()).collect();
    let mut gateways = Vec::new();
    for (server, count) in servers.iter().zip(&taken) {
        let mut client = escalation(server);
        let mut stream = client
            .subscribe_channel(pb::SubscribeChannelRequest {
                channel: pb::Channel::Chat as i32,
                consumer_group: "chat-gateway".into(),
            })
            .await
            .expect("subscribe")
            .into_inner();
        let count = count.clone();
        gateways.push(tokio::spawn(async move {
            while let Some(Ok(r)) = stream.next().await {
                let Some(message) = r.message else { continue };
                count.fetch_add(1, Ordering::Relaxed);
                let _ = client
                    .ack_delivery(pb::AckDeliveryRequest {
                        message_id: message.message_id,
                        outcome: pb::DeliveryOutcome::Delivered as i32,
                        consumer_group: "chat-gateway".into(),
                        lease_id: message.lease_id,
                        ..Default::default()
                    })
                    .await;
            }
        }));
    }
    let client = servers[0].client();
    let id = ticket.id.clone();
    load(2, seconds, Some(REPLIES_PER_SECOND / 2.0), move |i| {
        let mut c = client.clone();
        let id = id.clone();
        async move {
            c.add_reply(pb::AddReplyRequest {
                ticket_id: id,
                body: format!("reply {i}"),
                ..Default::default()
            })
            .await
            .is_ok()
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    done.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.await;
    }
    for g in gateways {
        g.abort();
    }
    let mut all = Arc::try_unwrap(samples)
        .map(|m| m.into_inner())
        .unwrap_or_default();
    all.sort();
    let shares = taken.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    (percentile(&all, 0.99), all.len(), shares)
}

/// What the watchers of [`fan_out_across`] measured.
type Samples = Arc<tokio::sync::Mutex<Vec<Duration>>>;

/// `count` watchers of one ticket's notes on `watcher`, notes added through `writer` at
/// `rate`: the p99 from each note's commit time to its arrival, in milliseconds, and how
/// many arrived.
pub(crate) async fn fan_out_across(
    writer: &Server,
    watcher: &Server,
    count: usize,
    rate: f64,
    seconds: u64,
) -> (f64, usize) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use ticketd::grpc::pb;
    use tokio_stream::StreamExt;

    let mut client = writer.client();
    let ticket = client
        .create_ticket(ticket(0))
        .await
        .unwrap()
        .into_inner()
        .ticket
        .unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let samples: Samples = Arc::default();
    let filter = format!(r#"ticket_id = "{}" AND event_type = note_added"#, ticket.id);
    let mut handles = Vec::new();
    for _ in 0..count {
        let mut c = watcher.client();
        let mut stream = c
            .watch_tickets(pb::WatchTicketsRequest {
                filter: filter.clone(),
                after_cursor: 0,
            })
            .await
            .unwrap()
            .into_inner();
        let (done, samples) = (done.clone(), samples.clone());
        handles.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            while !done.load(Ordering::Relaxed) {
                match tokio::time::timeout(Duration::from_millis(200), stream.next()).await {
                    Ok(Some(Ok(r))) => {
                        if let Some(ts) = r.event.and_then(|e| e.created_at) {
                            let sent =
                                chrono::DateTime::from_timestamp(ts.seconds, ts.nanos as u32)
                                    .unwrap();
                            mine.push((chrono::Utc::now() - sent).to_std().unwrap_or_default());
                        }
                    }
                    Ok(_) => break,
                    Err(_) => {}
                }
            }
            samples.lock().await.extend(mine);
        }));
    }
    let writers = 4usize;
    let id = ticket.id.clone();
    let client = writer.client();
    load(writers, seconds, Some(rate / writers as f64), move |i| {
        let mut c = client.clone();
        let id = id.clone();
        async move {
            c.add_note(pb::AddNoteRequest {
                ticket_id: id,
                body: format!("n{i}"),
                request_id: String::new(),
            })
            .await
            .is_ok()
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    done.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.await;
    }
    let mut all = Arc::try_unwrap(samples)
        .map(|m| m.into_inner())
        .unwrap_or_default();
    all.sort();
    (percentile(&all, 0.99), all.len())
}
