//! A real PostgreSQL server stopped hard and started again under a create load: ticketd
//! answers UNAVAILABLE while it is gone, recovers by itself, keeps every ticket it
//! acknowledged, and a watcher that resumes from its cursor sees every one of them.
//!
//! The test runs a throwaway cluster of its own (`initdb` + `pg_ctl`), so the shared
//! server the other tests use is never stopped.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ticketd::grpc::pb;
use tokio_stream::StreamExt;
use tonic::Code;

use crate::harness::{
    Backend, TestDatabase, Tickets, all_ticket_ids, new_ticket, settings_for, start,
};
use crate::private_cluster::PrivateCluster;

/// What one writer saw: acknowledged ticket ids, and the codes of failed calls.
#[derive(Default)]
struct Outcome {
    acked: Vec<String>,
    failures: Vec<Code>,
}

async fn write_until(
    mut client: Tickets,
    writer: usize,
    stop: Arc<AtomicBool>,
    acks: Arc<AtomicUsize>,
) -> Outcome {
    let mut outcome = Outcome::default();
    let mut i = 0;
    while !stop.load(Ordering::SeqCst) {
        i += 1;
        match client
            .create_ticket(new_ticket(&format!("restart load {writer}-{i}")))
            .await
        {
            Ok(r) => {
                outcome
                    .acked
                    .push(r.into_inner().ticket.expect("ticket").id);
                acks.fetch_add(1, Ordering::SeqCst);
            }
            Err(status) => {
                outcome.failures.push(status.code());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    outcome
}

/// Follows `ticket_created` events from the start of the log, resuming from its last cursor
/// whenever the stream ends or a call fails, until `stop`; returns how often it resumed.
async fn follow_creations(
    mut client: Tickets,
    seen: Arc<Mutex<HashSet<String>>>,
    stop: Arc<AtomicBool>,
) -> usize {
    let mut cursor = 0;
    let mut resumed = 0;
    while !stop.load(Ordering::SeqCst) {
        let request = pb::WatchTicketsRequest {
            filter: "event_type = ticket_created".into(),
            after_cursor: cursor,
        };
        let mut stream = match client.watch_tickets(request).await {
            Ok(response) => response.into_inner(),
            Err(_) => {
                resumed += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        loop {
            match tokio::time::timeout(Duration::from_millis(200), stream.next()).await {
                Ok(Some(Ok(response))) => {
                    let event = response.event.expect("event");
                    assert!(event.cursor > cursor, "cursors increase across resumptions");
                    cursor = event.cursor;
                    seen.lock().unwrap().insert(event.ticket_id);
                }
                Ok(_) => {
                    resumed += 1;
                    break;
                }
                Err(_) if stop.load(Ordering::SeqCst) => return resumed,
                Err(_) => {}
            }
        }
    }
    resumed
}

async fn blocking(cluster: &Arc<PrivateCluster>, action: &'static [&'static str]) {
    let cluster = cluster.clone();
    tokio::task::spawn_blocking(move || cluster.pg_ctl(action))
        .await
        .expect("pg_ctl");
}

pub async fn a_restarted_database_is_unavailable_then_recovers_without_a_restart() {
    let cluster = Arc::new(
        tokio::task::spawn_blocking(PrivateCluster::start)
            .await
            .unwrap(),
    );
    let database = TestDatabase::create(&Backend::Postgres(cluster.url())).await;
    let mut settings = settings_for(&database);
    settings.database_acquire_timeout_seconds = 2;
    let app = start(settings, database).await;

    let stop_watching = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let watcher = tokio::spawn(follow_creations(
        app.tickets(),
        seen.clone(),
        stop_watching.clone(),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..4)
        .map(|w| tokio::spawn(write_until(app.tickets(), w, stop.clone(), acks.clone())))
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;

    // A crash-like stop: every backend is killed, in-flight transactions are lost.
    blocking(&cluster, &["-m", "immediate", "stop"]).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut probe = app.tickets();
    let down = probe
        .create_ticket(new_ticket("While the database is down"))
        .await
        .expect_err("no ticket without a database");
    assert_eq!(down.code(), Code::Unavailable, "{down:?}");

    blocking(&cluster, &["start"]).await;
    let mut recovered = false;
    for _ in 0..100 {
        if probe
            .create_ticket(new_ticket("After the restart"))
            .await
            .is_ok()
        {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(recovered, "ticketd recovers once the database is back");
    let acks_at_recovery = acks.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        acks.load(Ordering::SeqCst) > acks_at_recovery,
        "the writers' calls succeed again on the same server"
    );
    stop.store(true, Ordering::SeqCst);

    let mut acked = HashSet::new();
    let mut failures = Vec::new();
    for writer in writers {
        let outcome = writer.await.expect("writer");
        acked.extend(outcome.acked);
        failures.extend(outcome.failures);
    }
    eprintln!(
        "restart under load: {} tickets acknowledged, {} calls failed",
        acked.len(),
        failures.len()
    );
    assert!(!failures.is_empty(), "the load saw the outage");
    assert!(
        failures.iter().all(|code| *code == Code::Unavailable),
        "every failed call says UNAVAILABLE: {failures:?}"
    );
    let stored = all_ticket_ids(&mut probe).await;
    let lost: Vec<&String> = acked.difference(&stored).collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    assert!(acked.len() > 10, "the load ran ({} tickets)", acked.len());

    // The watcher, resuming from its cursor across the outage, sees every one of them.
    for _ in 0..100 {
        if seen.lock().unwrap().is_superset(&acked) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop_watching.store(true, Ordering::SeqCst);
    let resumed = watcher.await.expect("watcher");
    let missed: Vec<String> = acked.difference(&seen.lock().unwrap()).cloned().collect();
    assert!(missed.is_empty(), "the watch stream skipped: {missed:?}");
    eprintln!("the watcher resumed {resumed} times and missed nothing");
}
