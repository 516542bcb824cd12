//! Behaviour that only a shared PostgreSQL server can show: several replicas, and a
//! database that goes away and comes back.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ticketd::app::App;
use ticketd::grpc::pb;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tonic::Code;

use crate::bridge::{escalate, escalation};
use crate::harness::{
    Backend, TestDatabase, create, new_ticket, settings_for, start, start_replica,
};
use crate::watch::{collect, next_event, watch};

/// A TCP proxy in front of PostgreSQL that can cut every connection and refuse new ones.
struct FaultyProxy {
    addr: std::net::SocketAddr,
    up: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl FaultyProxy {
    async fn start(target: String) -> FaultyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = tokio::spawn({
            let (up, links) = (up.clone(), links.clone());
            async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    if !up.load(Ordering::SeqCst) {
                        continue; // dropping the socket refuses the connection
                    }
                    let target = target.clone();
                    links.lock().await.push(tokio::spawn(async move {
                        if let Ok(mut server) = TcpStream::connect(&target).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    }));
                }
            }
        });
        FaultyProxy {
            addr,
            up,
            links,
            accept,
        }
    }

    async fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for link in self.links.lock().await.drain(..) {
            link.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for FaultyProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// `url` with its `host:port` replaced by `addr`.
fn through(url: &str, addr: std::net::SocketAddr) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url[start..].find('/').map_or(url.len(), |i| start + i);
    let authority = &url[start..end];
    let userinfo = authority.rfind('@').map_or("", |at| &authority[..=at]);
    format!("{}{userinfo}{addr}{}", &url[..start], &url[end..])
}

fn host_port(url: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url[start..].find('/').map_or(url.len(), |i| start + i);
    let authority = &url[start..end];
    let host = authority
        .rfind('@')
        .map_or(authority, |at| &authority[at + 1..]);
    if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:5432")
    }
}

pub async fn a_database_outage_is_unavailable_and_heals_without_a_restart(backend: Backend) {
    let database = TestDatabase::create(&backend).await;
    let proxy = FaultyProxy::start(host_port(&database.url())).await;
    let mut settings = settings_for(&database);
    settings.database_url = through(&database.url(), proxy.addr);
    settings.database_acquire_timeout_seconds = 2;
    let app = start(settings, database).await;
    let mut tickets = app.tickets();
    let before = create(&mut tickets, new_ticket("Before the outage")).await;

    proxy.cut().await;
    let during = tickets
        .create_ticket(new_ticket("During the outage"))
        .await
        .unwrap_err();
    assert_eq!(during.code(), Code::Unavailable, "{during:?}");
    assert!(
        !during.message().to_lowercase().contains("sql"),
        "no SQL text leaks: {}",
        during.message()
    );

    proxy.restore();
    let mut healed = None;
    for _ in 0..50 {
        match tickets.create_ticket(new_ticket("After the outage")).await {
            Ok(r) => {
                healed = r.into_inner().ticket;
                break;
            }
            Err(status) => {
                assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    let after = healed.expect("the service recovers once the database is back");
    assert!(after.number > before.number);
}

pub async fn replicas_starting_together_migrate_once_and_share_numbering(backend: Backend) {
    let database = TestDatabase::create(&backend).await;
    let settings = settings_for(&database);
    // Two replicas start at once against an empty database: one migrates, the other waits.
    let (a, b) = tokio::join!(App::build(settings.clone()), App::build(settings.clone()));
    drop(a.expect("replica a starts"));
    drop(b.expect("replica b starts"));

    let replica_a = start(settings.clone(), database).await;
    let replica_b = start_replica(settings).await;
    let mut handles = Vec::new();
    for i in 0..30 {
        let mut client = if i % 2 == 0 {
            replica_a.tickets()
        } else {
            replica_b.tickets()
        };
        handles.push(tokio::spawn(async move {
            create(&mut client, new_ticket(&format!("Replica ticket {i}")))
                .await
                .number
        }));
    }
    let mut numbers = HashSet::new();
    for handle in handles {
        assert!(
            numbers.insert(handle.await.unwrap()),
            "a number was handed out twice"
        );
    }
    assert_eq!(numbers.len(), 30);
}

/// The gap test: a transaction that wrote an event and is still open holds back every
/// event committed after it, so a watcher never moves past a position it could fill.
pub async fn a_watcher_never_skips_a_transaction_still_in_flight(backend: Backend) {
    use sqlx::Connection;

    let database = TestDatabase::create(&backend).await;
    let url = database.url();
    let app = start(settings_for(&database), database).await;
    let mut tickets = app.tickets();
    let ticket = create(&mut tickets, new_ticket("Contended")).await;
    let filter = format!(r#"ticket_id = "{}""#, ticket.id);
    let mut stream = watch(&mut tickets, &filter, 0).await;
    next_event(&mut stream, Duration::from_secs(5))
        .await
        .expect("created event");

    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let mut held = conn.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO ticket_events (position, id, ticket_id, ticket_number, event_type, \
         actor_kind, actor_name, visibility, payload, created_at, ticket_status, priority, \
         ticket_type, contact_id, tags) \
         SELECT (pg_current_xact_id()::text::bigint << 20), $1, id, number, 'note_added', \
         'system', 'held', 'internal', '{\"kind\": \"note\", \"body\": \"held\"}', now(), status, \
         priority, ticket_type, contact_id, '[]' FROM tickets WHERE id = $2",
    )
    .bind(uuid::Uuid::new_v4())
    .bind(uuid::Uuid::parse_str(&ticket.id).unwrap())
    .execute(&mut *held)
    .await
    .unwrap();

    for i in 0..3 {
        tickets
            .add_note(pb::AddNoteRequest {
                ticket_id: ticket.id.clone(),
                body: format!("after {i}"),
                request_id: String::new(),
            })
            .await
            .unwrap();
    }
    assert!(
        next_event(&mut stream, Duration::from_millis(1500))
            .await
            .is_none(),
        "events committed after an open transaction wait for it"
    );

    held.commit().await.unwrap();
    let mut bodies = Vec::new();
    for _ in 0..4 {
        let event = next_event(&mut stream, Duration::from_secs(5))
            .await
            .expect("event after commit");
        if let Some(pb::activity_entry::Detail::Note(n)) = event.detail {
            bodies.push(n.body);
        }
    }
    assert_eq!(bodies, vec!["held", "after 0", "after 1", "after 2"]);
}

/// Two processes on one database act as one service; with the fallback poll set to a
/// minute, only the LISTEN/NOTIFY wake-up can deliver within the test's timeouts.
pub async fn replicas_share_deliveries_and_watches(backend: Backend) {
    let database = TestDatabase::create(&backend).await;
    let mut settings = settings_for(&database);
    settings.stream_poll_millis = 60_000;
    let a = start(settings.clone(), database).await;
    let b = start_replica(settings).await;

    let (ticket, _) = escalate(&mut a.escalation(), escalation("conv-r", 2)).await;
    let mut gateway_on_b = b
        .escalation()
        .subscribe_channel(pb::SubscribeChannelRequest {
            channel: pb::Channel::Chat as i32,
            consumer_group: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut watcher_on_b = watch(
        &mut b.tickets(),
        &format!(
            r#"ticket_id = "{}" AND event_type = reply_added"#,
            ticket.id
        ),
        0,
    )
    .await;
    // Let both streams finish their first read and go to sleep.
    tokio::time::sleep(Duration::from_millis(300)).await;

    a.tickets()
        .add_reply(pb::AddReplyRequest {
            ticket_id: ticket.id.clone(),
            body: "from replica A".into(),
            ..Default::default()
        })
        .await
        .unwrap();

    let delivered = tokio::time::timeout(Duration::from_secs(5), gateway_on_b.next())
        .await
        .expect("the gateway on B is woken by A's commit")
        .unwrap()
        .unwrap()
        .message
        .unwrap();
    assert_eq!(delivered.body, "from replica A");
    let seen = next_event(&mut watcher_on_b, Duration::from_secs(5))
        .await
        .expect("B's watcher sees A's reply");
    assert_eq!(seen.ticket_id, ticket.id);
    let ids = collect(&mut watcher_on_b, 1, Duration::from_millis(300)).await;
    assert!(ids.is_empty(), "one reply, one event");
}

pub async fn a_statement_past_its_timeout_fails_and_frees_its_connection(backend: Backend) {
    use sqlx::Connection;

    let database = TestDatabase::create(&backend).await;
    let url = database.url();
    let mut settings = settings_for(&database);
    settings.database_statement_timeout_seconds = 1;
    let app = start(settings, database).await;
    let mut tickets = app.tickets();
    create(&mut tickets, new_ticket("before")).await;

    // Another session takes the tickets table and keeps it.
    let mut blocker = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::raw_sql("BEGIN; LOCK TABLE tickets IN ACCESS EXCLUSIVE MODE")
        .execute(&mut blocker)
        .await
        .unwrap();
    let blocked = tickets
        .create_ticket(new_ticket("waits on the lock"))
        .await
        .unwrap_err();
    assert_eq!(blocked.code(), Code::DeadlineExceeded, "{blocked:?}");
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut blocker)
        .await
        .unwrap();

    // The cancelled statement left nothing behind: the pool serves the next call.
    create(&mut tickets, new_ticket("after")).await;
}

pub async fn a_watcher_finds_events_held_back_by_a_long_transaction(backend: Backend) {
    use sqlx::Connection;

    let database = TestDatabase::create(&backend).await;
    let url = database.url();
    let mut settings = settings_for(&database);
    // No fallback poll to lean on: only the wake-up and what follows it.
    settings.stream_poll_millis = 60_000;
    let app = start(settings, database).await;
    let mut tickets = app.tickets();
    let ticket = create(&mut tickets, new_ticket("watched")).await;
    let mut watcher = watch(
        &mut tickets,
        &format!(r#"ticket_id = "{}" AND event_type = note_added"#, ticket.id),
        0,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A transaction that started earlier (it holds a transaction id) and stays open for
    // well past the quick re-reads after a wake-up keeps the horizon below the note.
    let mut long = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::raw_sql("BEGIN; SELECT pg_current_xact_id()")
        .execute(&mut long)
        .await
        .unwrap();
    tickets
        .add_note(pb::AddNoteRequest {
            ticket_id: ticket.id.clone(),
            body: "behind a long transaction".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        sqlx::raw_sql("COMMIT").execute(&mut long).await.unwrap();
    });
    let seen = next_event(&mut watcher, Duration::from_secs(10))
        .await
        .expect("the note arrives once the long transaction ends");
    assert_eq!(seen.ticket_id, ticket.id);
    release.await.unwrap();
}

/// A key revoked through one replica ends its streams on another: the other's key check
/// sees the revocation once its key cache lets go of the key.
pub async fn a_key_revoked_on_one_replica_ends_its_streams_on_another(backend: Backend) {
    let database = TestDatabase::create(&backend).await;
    let settings = settings_for(&database);
    let a = start(settings.clone(), database).await;
    let b = start_replica(settings).await;
    let created = a
        .admin()
        .create_api_key(pb::CreateApiKeyRequest {
            name: "revoked elsewhere".into(),
            role: pb::Role::Agent as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut streams = Vec::new();
    for _ in 0..3 {
        streams.push(
            b.tickets_as(&created.secret)
                .watch_tickets(pb::WatchTicketsRequest::default())
                .await
                .unwrap()
                .into_inner(),
        );
    }
    // A stream of another key on the same replica lives on.
    let mut other = watch(&mut b.tickets(), "", 0).await;
    a.admin()
        .revoke_api_key(pb::RevokeApiKeyRequest {
            id: created.api_key.unwrap().id,
        })
        .await
        .unwrap();
    for mut stream in streams {
        let ended = tokio::time::timeout(Duration::from_secs(15), async {
            loop {
                match stream.next().await {
                    Some(Ok(_)) => continue,
                    Some(Err(status)) => return Some(status.code()),
                    None => return None,
                }
            }
        })
        .await
        .expect("the stream ends within the key cache's lifetime and a check");
        assert_eq!(ended, Some(Code::Unauthenticated));
    }
    let ticket = create(&mut a.tickets(), new_ticket("after the revocation")).await;
    let event = next_event(&mut other, Duration::from_secs(10))
        .await
        .expect("the other key's stream still receives events");
    assert_eq!(event.ticket_id, ticket.id);
}
