//! Reads on streaming standbys (`TICKETD_DATABASE_READ_URL`): a private primary and a
//! standby copied from it with `pg_basebackup`. Lists go to the standby; a caller that
//! sends the token of its write always sees that write; a standby that stops mid-load,
//! or hangs mid-read, costs no answer; and tokens are checked on every backend.
//!
//! Which database served a list is told apart by pausing the standby's replay: a list
//! that lacks a ticket the primary already holds can only have come from the standby.
//! Which served a watch stream's catch-up, by the standby's statement log.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sqlx::Connection;
use ticketd::domain::consistency::TOKEN_METADATA;
use ticketd::grpc::pb;
use tonic::Code;

use crate::harness::{
    Backend, TestDatabase, Tickets, error_chain, new_ticket, settings_for, spawn_app, start,
    with_database,
};
use crate::private_cluster::PrivateCluster;
use crate::watch::{next_event, watch};

/// Creates a ticket; returns its id and the consistency token of the response.
async fn create_ticket(tickets: &mut Tickets, subject: &str) -> (String, Option<String>) {
    let response = tickets
        .create_ticket(new_ticket(subject))
        .await
        .expect("create");
    let token = response
        .metadata()
        .get(TOKEN_METADATA)
        .map(|v| v.to_str().expect("text").to_owned());
    (response.into_inner().ticket.expect("ticket").id, token)
}

/// The ids `ListTickets` returns, with the token given (if any).
async fn listed(
    tickets: &mut Tickets,
    token: Option<&str>,
) -> Result<HashSet<String>, tonic::Status> {
    let mut request = tonic::Request::new(pb::ListTicketsRequest {
        page_size: 500,
        ..Default::default()
    });
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert(TOKEN_METADATA, token.parse().expect("metadata"));
    }
    let response = tickets.list_tickets(request).await?;
    Ok(response
        .into_inner()
        .tickets
        .into_iter()
        .map(|t| t.id)
        .collect())
}

pub async fn consistency_tokens_are_checked_and_only_standbys_issue_them(backend: Backend) {
    if matches!(backend, Backend::Sqlite) {
        // Standbys are PostgreSQL's: naming them beside SQLite is a configuration error.
        let database = TestDatabase::create(&backend).await;
        let mut settings = settings_for(&database);
        settings.database_read_url = vec!["postgres://127.0.0.1:1/standby".into()];
        let refused = ticketd::app::App::build(settings).await;
        let message = error_chain(&refused.err().expect("refused"));
        assert!(message.contains("standbys"), "{message}");
    }
    // The list of standbys is bounded, whatever the database.
    let database = TestDatabase::create(&backend).await;
    let mut settings = settings_for(&database);
    settings.database_read_url = (0..9)
        .map(|i| format!("postgres://127.0.0.1:1/standby{i}"))
        .collect();
    let refused = ticketd::app::App::build(settings).await;
    let message = error_chain(&refused.err().expect("refused"));
    assert!(message.contains("at most 8 standbys"), "{message}");

    let app = spawn_app(backend).await;
    let mut tickets = app.tickets();
    let (id, token) = create_ticket(&mut tickets, "no standby").await;
    assert_eq!(token, None, "without standbys there is nothing to wait for");
    for valid in ["0/0", "16/B374D848", "FFFFFFFF/FFFFFFFF", ""] {
        let seen = listed(&mut tickets, Some(valid)).await.expect("list");
        assert!(seen.contains(&id), "with token {valid}");
    }
    for invalid in ["nonsense", "1/", "123456789/0", "1/2/3"] {
        let status = listed(&mut tickets, Some(invalid))
            .await
            .expect_err(invalid);
        assert_eq!(status.code(), Code::InvalidArgument, "{invalid}");
        assert!(
            status.message().contains(TOKEN_METADATA),
            "{}",
            status.message()
        );
    }
    // The same header over HTTP.
    let response = reqwest::Client::new()
        .get(format!("http://{}/v1/tickets", app.addr))
        .bearer_auth(&app.admin_secret)
        .header("Ticketd-Consistency-Token", "not/a token")
        .send()
        .await
        .expect("a response");
    assert_eq!(response.status().as_u16(), 400);
    let body = response.text().await.unwrap();
    assert!(body.contains(TOKEN_METADATA), "{body}");
}

/// Waits until the standby has replayed the ticket `id`.
async fn replayed(standby: &sqlx::PgPool, id: &str) {
    let id = uuid::Uuid::parse_str(id).expect("uuid");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (found,): (bool,) =
            sqlx::query_as("SELECT EXISTS (SELECT 1 FROM tickets WHERE id = $1)")
                .bind(id)
                .fetch_one(standby)
                .await
                .expect("query the standby");
        if found {
            return;
        }
        assert!(Instant::now() < deadline, "the standby never replayed {id}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the standby has replayed past `token`.
async fn replayed_past(standby: &sqlx::PgPool, token: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (past,): (bool,) = sqlx::query_as("SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn")
            .bind(token)
            .fetch_one(standby)
            .await
            .expect("query the standby");
        if past {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the standby never replayed {token}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until a list without a token lacks `id`, which only the paused standby can
/// answer: reads without a token reach it.
async fn served_by_the_standby(tickets: &mut Tickets, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while listed(tickets, None).await.expect("list").contains(id) {
        assert!(
            Instant::now() < deadline,
            "every list came from the primary: the standby never took reads"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How many catch-up reads of the log (`events_until`) the cluster's statement log shows.
fn catch_up_reads(cluster: &PrivateCluster) -> usize {
    std::fs::read_to_string(cluster.dir.join("server.log"))
        .expect("the standby's log")
        .lines()
        .filter(|line| line.contains("e.position <= $2"))
        .count()
}

/// The tickets whose creation a watch stream from the start of the log shows, once it
/// has shown every one of `expected` (or gone quiet).
async fn caught_up(tickets: &mut Tickets, expected: &[&String]) -> HashSet<String> {
    let mut stream = watch(tickets, "event_type = ticket_created", 0).await;
    let mut seen = HashSet::new();
    while !expected.iter().all(|id| seen.contains(*id)) {
        match next_event(&mut stream, Duration::from_secs(5)).await {
            Some(event) => seen.insert(event.ticket_id),
            None => break,
        };
    }
    seen
}

async fn pg_ctl(cluster: &Arc<PrivateCluster>, action: &'static [&'static str]) {
    let cluster = cluster.clone();
    tokio::task::spawn_blocking(move || cluster.pg_ctl(action))
        .await
        .expect("pg_ctl");
}

async fn psql(cluster: &Arc<PrivateCluster>, sql: &'static str) {
    let cluster = cluster.clone();
    tokio::task::spawn_blocking(move || cluster.psql(sql))
        .await
        .expect("psql");
}

/// Writers that create a ticket and list with its token until `stop`: every list must
/// succeed and show the writer's own ticket. Returns how many rounds they made.
async fn write_and_read_back(tickets: Tickets, stop: Arc<AtomicBool>) -> usize {
    let mut tickets = tickets;
    let mut rounds = 0;
    while !stop.load(Ordering::SeqCst) {
        let (id, token) = create_ticket(&mut tickets, "under load").await;
        let token = token.expect("a write's token");
        let seen = listed(&mut tickets, Some(&token))
            .await
            .unwrap_or_else(|status| {
                panic!("a read failed while the standby went away: {status:?}")
            });
        assert!(
            seen.contains(&id),
            "a read with the token missed its own write"
        );
        rounds += 1;
    }
    rounds
}

pub async fn reads_go_to_a_standby_and_never_miss_the_callers_writes() {
    let primary = Arc::new(
        tokio::task::spawn_blocking(PrivateCluster::start)
            .await
            .unwrap(),
    );
    let database = TestDatabase::create(&Backend::Postgres(primary.url())).await;
    let TestDatabase::Postgres { name, .. } = &database else {
        unreachable!("a PostgreSQL database")
    };
    let name = name.clone();
    let standby = Arc::new(
        tokio::task::spawn_blocking({
            let primary = primary.clone();
            // Its statement log tells which reads it served.
            move || PrivateCluster::standby_of(&primary, &["log_statement=all"])
        })
        .await
        .unwrap(),
    );
    let standby_url = with_database(&standby.url(), &name);
    let standby_db = sqlx::PgPool::connect(&standby_url).await.expect("standby");
    let mut settings = settings_for(&database);
    settings.database_read_url = vec![standby_url.clone()];
    settings.database_acquire_timeout_seconds = 2;
    let app = start(settings, database).await;
    let mut tickets = app.tickets();

    // Read-your-writes, as fast as the caller can go.
    for i in 0..30 {
        let (id, token) = create_ticket(&mut tickets, &format!("read back {i}")).await;
        let token = token.expect("a write answered with a token");
        let seen = listed(&mut tickets, Some(&token)).await.expect("list");
        assert!(seen.contains(&id), "round {i}: the write was missing");
    }

    // Replay paused: a list without a token comes from the standby and lacks the new
    // ticket; with the token, the read waits briefly, then the primary answers it.
    let (before, _) = create_ticket(&mut tickets, "replayed").await;
    replayed(&standby_db, &before).await;
    psql(&standby, "SELECT pg_wal_replay_pause()").await;
    let (unreplayed, token) = create_ticket(&mut tickets, "not replayed yet").await;
    served_by_the_standby(&mut tickets, &unreplayed).await;
    let seen = listed(&mut tickets, Some(&token.expect("token")))
        .await
        .expect("list");
    assert!(seen.contains(&unreplayed) && seen.contains(&before));

    // A token the standby has replayed is served there: it lacks a later write.
    psql(&standby, "SELECT pg_wal_replay_resume()").await;
    let (mine, token) = create_ticket(&mut tickets, "mine").await;
    let token = token.expect("token");
    replayed_past(&standby_db, &token).await;
    psql(&standby, "SELECT pg_wal_replay_pause()").await;
    let (later, _) = create_ticket(&mut tickets, "someone else's, later").await;
    let seen = listed(&mut tickets, Some(&token)).await.expect("list");
    assert!(seen.contains(&mine), "the caller's write is missing");
    assert!(
        !seen.contains(&later),
        "a caught-up standby should have served the read"
    );
    psql(&standby, "SELECT pg_wal_replay_resume()").await;

    // A watch stream catching up from before what the tailer holds reads the log on the
    // standby, once that has replayed as far as the primary was when the read began;
    // with replay paused, on the primary. Either way it misses nothing.
    let earlier = [&before, &unreplayed, &mine, &later];
    let read_there = catch_up_reads(&standby);
    let seen = caught_up(&mut tickets, &earlier).await;
    assert!(earlier.iter().all(|id| seen.contains(*id)));
    assert!(
        catch_up_reads(&standby) > read_there,
        "the catch-up was not read on the standby"
    );
    psql(&standby, "SELECT pg_wal_replay_pause()").await;
    let (paused, _) = create_ticket(&mut tickets, "while replay is paused").await;
    let read_there = catch_up_reads(&standby);
    let seen = caught_up(&mut tickets, &[&paused]).await;
    assert!(seen.contains(&paused), "the catch-up missed a write");
    assert_eq!(
        catch_up_reads(&standby),
        read_there,
        "a standby behind the primary served a catch-up"
    );
    psql(&standby, "SELECT pg_wal_replay_resume()").await;
    standby_db.close().await;

    // Over HTTP the token is a header both ways.
    let http = reqwest::Client::new();
    let created = http
        .post(format!("http://{}/v1/tickets", app.addr))
        .bearer_auth(&app.admin_secret)
        .header("content-type", "application/json")
        .body(r#"{"subject": "over REST", "contact": {"externalId": "crm-rest"}}"#)
        .send()
        .await
        .expect("a response");
    assert_eq!(created.status().as_u16(), 200);
    let token = created
        .headers()
        .get("Ticketd-Consistency-Token")
        .expect("a token header")
        .to_str()
        .unwrap()
        .to_owned();
    let body: serde_json::Value = serde_json::from_str(&created.text().await.unwrap()).unwrap();
    let id = body["ticket"]["id"].as_str().expect("an id").to_owned();
    let listed_over_http = http
        .get(format!("http://{}/v1/tickets?pageSize=500", app.addr))
        .bearer_auth(&app.admin_secret)
        .header("Ticketd-Consistency-Token", &token)
        .send()
        .await
        .expect("a response")
        .text()
        .await
        .unwrap();
    assert!(
        listed_over_http.contains(&id),
        "the REST read missed its write"
    );

    // The standby stops hard under load and comes back: no read fails or misses.
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|_| tokio::spawn(write_and_read_back(app.tickets(), stop.clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    pg_ctl(&standby, &["stop", "-m", "immediate"]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    pg_ctl(&standby, &["start"]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::SeqCst);
    let mut rounds = 0;
    for writer in writers {
        rounds += writer.await.expect("writer");
    }
    assert!(rounds > 10, "only {rounds} write-and-read rounds");

    // Back, it takes reads again.
    psql(&standby, "SELECT pg_wal_replay_pause()").await;
    let (after_restart, _) = create_ticket(&mut tickets, "after the restart").await;
    served_by_the_standby(&mut tickets, &after_restart).await;

    // The standby hangs (every process stopped, as a server cut off without a reset
    // looks) while a read is in flight on it: the read is made again on the primary once
    // the watch finds the standby silent, about a second later, instead of waiting as
    // long as the connection lives (its statement timeout runs on the hung server). The
    // read is held on the standby first by a lock the primary takes and the standby
    // replays; the primary lets go once the standby is frozen.
    psql(&standby, "SELECT pg_wal_replay_resume()").await;
    // Caught up, as the watch sees it, so the read goes to the standby.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let primary_db = sqlx::PgPool::connect(&with_database(&primary.url(), &name))
        .await
        .expect("primary");
    let mut locker = primary_db.begin().await.expect("begin");
    sqlx::query("LOCK TABLE tickets IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *locker)
        .await
        .expect("lock");
    // A commit elsewhere flushes the lock's WAL record, which the standby then replays.
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&primary_db)
        .await
        .expect("a commit");
    standby_shows(
        &standby_url,
        "SELECT count(*) FROM pg_locks \
         WHERE relation = 'tickets'::regclass AND mode = 'AccessExclusiveLock'",
        "the standby never replayed the lock",
    )
    .await;
    let reader = tokio::spawn({
        let mut tickets = app.tickets();
        async move { listed(&mut tickets, None).await }
    });
    // Nothing else there waits on a lock.
    standby_shows(
        &standby_url,
        "SELECT count(*) FROM pg_stat_activity \
         WHERE wait_event_type = 'Lock' AND backend_type = 'client backend'",
        "the read did not wait on the standby",
    )
    .await;
    let hung = Stopped::all_of(&standby);
    let frozen = Instant::now();
    locker.commit().await.expect("commit");
    let seen = tokio::time::timeout(Duration::from_secs(20), reader)
        .await
        .expect("the read is stuck on the hung standby")
        .expect("reader")
        .expect("the read failed");
    let waited = frozen.elapsed();
    assert!(seen.contains(&after_restart), "the primary did not answer");
    assert!(
        waited < Duration::from_secs(5),
        "the read waited {waited:?} on the hung standby"
    );
    drop(hung);
    primary_db.close().await;
    app.shutdown().await.expect("shutdown");
}

/// Waits until the standby at `url` answers `count` with more than zero.
async fn standby_shows(url: &str, count: &str, what: &str) {
    let mut standby = sqlx::PgConnection::connect(url).await.expect("standby");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (shown,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(count))
            .fetch_one(&mut standby)
            .await
            .expect("count");
        if shown > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    standby.close().await.expect("close");
}

/// A cluster's processes stopped (SIGSTOP) until this is dropped, however the test ends.
struct Stopped(Vec<String>);

impl Stopped {
    /// Stops the postmaster first, so that it forks nothing after its children are
    /// listed.
    fn all_of(cluster: &PrivateCluster) -> Stopped {
        // Held before anything stops, so that every way out continues what it stopped.
        let mut stopped = Stopped(cluster.processes()[..1].to_vec());
        stop(&stopped.0);
        stopped.0 = cluster.processes();
        assert!(
            stopped.0.len() > 1,
            "the standby's processes: {:?}",
            stopped.0
        );
        stop(&stopped.0);
        stopped
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        // Not checked: the postmaster, continued first, may reap a child that exited
        // meanwhile before `kill` reaches it, and a process that is gone needs nothing.
        let _ = kill("-CONT", &self.0);
    }
}

/// Stops `processes`; a process that exited but was not reaped (its postmaster is
/// stopped) takes the signal too.
fn stop(processes: &[String]) {
    let sent = kill("-STOP", processes);
    assert!(sent, "kill -STOP {processes:?}");
}

fn kill(which: &str, processes: &[String]) -> bool {
    std::process::Command::new("kill")
        .arg(which)
        .args(processes)
        .status()
        .is_ok_and(|s| s.success())
}
