//! One, two and three ticketd replicas on one PostgreSQL database: create throughput with
//! the load spread over them, the commit-to-receive latency of a watcher on another
//! replica than the writer's, and the database connections they hold.

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
    }
    rows
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
