//! Behaviour that only a shared PostgreSQL server can show: several replicas, and a
//! database that goes away and comes back.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ticketd::app::App;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tonic::Code;

use crate::harness::{
    Backend, TestDatabase, create, new_ticket, settings_for, start, start_replica,
};

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
