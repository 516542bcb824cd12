//! The ticketd under test: started in process (or as a child process, for figures of its
//! own), and the requests the load sends.

use std::sync::Arc;
use std::time::Duration;

use ticketd::app::App;
use ticketd::config::Settings;
use ticketd::grpc::pb::{self, ticket_service_client::TicketServiceClient};
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

use crate::*;

pub(crate) struct Server {
    pub(crate) app_stop: tokio::sync::oneshot::Sender<()>,
    pub(crate) addr: std::net::SocketAddr,
    pub(crate) channel: Channel,
    pub(crate) secret: String,
    /// The child process serving, when ticketd does not run in this one.
    pub(crate) pid: Option<u32>,
}

pub(crate) const SECRET: &str = "tkd_bench_admin_key_0000000000000000000000";

pub(crate) async fn start(url: &str) -> Server {
    start_with(url, |_| {}, None).await
}

/// A server over `url` with settings adjusted; `tls` is how clients reach it when it
/// speaks TLS.
pub(crate) async fn start_with(
    url: &str,
    adjust: impl FnOnce(&mut Settings),
    tls: Option<tonic::transport::ClientTlsConfig>,
) -> Server {
    let mut settings = Settings::with_database(url);
    settings.listen = "127.0.0.1:0".into();
    settings.bootstrap_key = Some(SECRET.parse().unwrap());
    settings.database_max_connections = 32;
    // One key drives the whole load and opens every watcher: its limits sit above it.
    settings.rate_limit_per_second = 1_000_000;
    settings.max_streams_per_key = 10_000;
    settings.max_streams = 20_000;
    settings.max_concurrent_requests = 100_000;
    // The bench's single connection stands for many clients' connections.
    settings.max_concurrent_streams_per_connection = 10_000;
    adjust(&mut settings);
    let app = App::build(settings).await.expect("start ticketd");
    let addr = app.local_addr().unwrap();
    let (app_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run(async {
        let _ = stopped.await;
    }));
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint = Channel::from_shared(format!("{scheme}://{addr}")).unwrap();
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls).expect("client TLS");
    }
    let channel = endpoint.connect().await.unwrap();
    Server {
        app_stop,
        addr,
        channel,
        secret: SECRET.into(),
        pid: None,
    }
}

/// The `--serve` mode: ticketd alone in this process until standard input closes.
pub(crate) async fn serve_until_stdin_closes(url: &str) {
    let server = start(url).await;
    println!("listening on {}", server.addr);
    let _ = tokio::task::spawn_blocking(|| {
        use std::io::Read;
        let mut sink = Vec::new();
        std::io::stdin().read_to_end(&mut sink)
    })
    .await;
    let _ = server.app_stop.send(());
}

/// A child process, stopped when this is dropped.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A ticketd serving in a child process (this executable in `--serve` mode), stopped when
/// this is dropped.
pub(crate) struct Apart {
    _child: Reaped,
    pub(crate) server: Server,
}

/// Starts ticketd over `url` in a child process; `None` if it cannot be started or reached.
pub(crate) async fn start_apart(url: &str) -> Option<Apart> {
    use std::io::BufRead;
    let mut child = Reaped(
        std::process::Command::new(std::env::current_exe().ok()?)
            .args(["--serve", url])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .ok()?,
    );
    let pid = child.0.id();
    let stdout = child.0.stdout.take()?;
    let addr = tokio::task::spawn_blocking(move || {
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find_map(|l| l.strip_prefix("listening on ").map(str::to_owned))
    })
    .await
    .ok()??;
    let channel = Channel::from_shared(format!("http://{addr}"))
        .ok()?
        .connect()
        .await
        .ok()?;
    let server = Server {
        app_stop: tokio::sync::oneshot::channel().0,
        addr: addr.parse().ok()?,
        channel,
        secret: SECRET.into(),
        pid: Some(pid),
    };
    Some(Apart {
        _child: child,
        server,
    })
}

/// Resident memory of a ticketd serving `url` in a child process, with no stream and then
/// with `count` idle watch streams open: KiB.
pub(crate) async fn idle_stream_memory(url: &str, count: usize) -> Option<(u64, u64)> {
    let apart = start_apart(url).await?;
    let server = &apart.server;
    let pid = server.pid?;
    // One call first, so that connections and caches exist in both readings.
    server.client().create_ticket(ticket(0)).await.ok()?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = rss_kib(pid)?;
    let nobody = uuid::Uuid::new_v4();
    let idle = live_watchers(
        server,
        count,
        &format!(r#"assignee_id = "{nobody}""#),
        Arc::default(),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(pid)?;
    for w in idle {
        w.abort();
    }
    Some((before, after))
}

pub(crate) type Client =
    TicketServiceClient<tonic::service::interceptor::InterceptedService<Channel, Bearer>>;

#[derive(Clone)]
pub(crate) struct Bearer(pub(crate) MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut r: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        r.metadata_mut().insert("authorization", self.0.clone());
        Ok(r)
    }
}

impl Server {
    pub(crate) fn client(&self) -> Client {
        TicketServiceClient::with_interceptor(
            self.channel.clone(),
            Bearer(format!("Bearer {}", self.secret).parse().unwrap()),
        )
    }
}

pub(crate) fn ticket(i: u64) -> pb::CreateTicketRequest {
    pb::CreateTicketRequest {
        subject: format!("Bench ticket {i}"),
        description: "created by ticketd-bench".into(),
        contact: Some(pb::Contact {
            external_id: format!("bench-{}", i % 5000),
            name: "Bench".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A conversation of 50 messages, new each time.
pub(crate) fn conversation(i: u64) -> pb::EscalateConversationRequest {
    let transcript = (0..50)
        .map(|m| pb::TranscriptMessage {
            id: format!("m{m}"),
            role: if m % 2 == 0 {
                pb::MessageRole::Customer
            } else {
                pb::MessageRole::Bot
            } as i32,
            author: "bench".into(),
            text: format!("message {m} of a benchmark conversation"),
            sent_at: Some(prost_types::Timestamp {
                seconds: 1_800_000_000 + m,
                nanos: 0,
            }),
            attachments: Vec::new(),
        })
        .collect();
    pb::EscalateConversationRequest {
        conversation: Some(pb::Conversation {
            source: "bench".into(),
            conversation_id: format!("bench-{i}-{}", uuid::Uuid::new_v4().simple()),
            channel: pb::Channel::Chat as i32,
            transcript,
            summary: "Benchmark escalation".into(),
            ..Default::default()
        }),
        contact: Some(pb::Contact {
            external_id: format!("bench-{}", i % 5000),
            ..Default::default()
        }),
        ..Default::default()
    }
}
