//! `ticketd-bench`: measures ticketd against baselines taken in the same run, and prints
//! a table (and `target/bench/results.json`).
//!
//! It starts ticketd in process on a fresh PostgreSQL database (created on the server that
//! `--postgres` names, durable commits) and on a fresh SQLite file, drives it with the
//! generated gRPC client, and compares with `pgbench` running the same SQL transaction
//! (`bench/create_ticket.sql`) and with a no-op RPC (a health check) on the same server.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use sqlx::Connection;
use ticketd::app::App;
use ticketd::config::Settings;
use ticketd::grpc::pb::{self, ticket_service_client::TicketServiceClient};
use tokio::sync::Mutex;
use tokio_stream::StreamExt;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

#[derive(Parser)]
#[command(about = "Benchmarks ticketd against same-run baselines")]
struct Args {
    /// A PostgreSQL server on which a scratch database may be created.
    #[arg(
        long,
        env = "TICKETD_BENCH_POSTGRES",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    postgres: String,
    /// Seconds each throughput measurement runs.
    #[arg(long, default_value_t = 8)]
    seconds: u64,
    /// Concurrent clients of the create load.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// pgbench binary.
    #[arg(long, default_value = "/usr/lib/postgresql/15/bin/pgbench")]
    pgbench: String,
    /// Internal: only serve the database at this URL, print the address, and exit when
    /// standard input closes (the memory figure measures such a child on its own).
    #[arg(long, hide = true)]
    serve: Option<String>,
}

struct Server {
    app_stop: tokio::sync::oneshot::Sender<()>,
    addr: std::net::SocketAddr,
    channel: Channel,
    secret: String,
}

const SECRET: &str = "tkd_bench_admin_key_0000000000000000000000";

async fn start(url: &str) -> Server {
    start_with(url, |_| {}, None).await
}

/// A server over `url` with settings adjusted; `tls` is how clients reach it when it
/// speaks TLS.
async fn start_with(
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
    }
}

/// The `--serve` mode: ticketd alone in this process until standard input closes.
async fn serve_until_stdin_closes(url: &str) {
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

/// Resident memory of a ticketd serving `url` in a child process (this executable in
/// `--serve` mode), with no stream and then with `count` idle watch streams open: KiB.
async fn idle_stream_memory(url: &str, count: usize) -> Option<(u64, u64)> {
    use std::io::BufRead;
    /// Stops the child however this function returns.
    struct Reaped(std::process::Child);
    impl Drop for Reaped {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
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
    };
    // One call first, so that connections and caches exist in both readings.
    server.client().create_ticket(ticket(0)).await.ok()?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = rss_kib(pid)?;
    let nobody = uuid::Uuid::new_v4();
    let idle = live_watchers(
        &server,
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
    drop(child);
    Some((before, after))
}

type Client = TicketServiceClient<tonic::service::interceptor::InterceptedService<Channel, Bearer>>;

#[derive(Clone)]
struct Bearer(MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut r: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        r.metadata_mut().insert("authorization", self.0.clone());
        Ok(r)
    }
}

impl Server {
    fn client(&self) -> Client {
        TicketServiceClient::with_interceptor(
            self.channel.clone(),
            Bearer(format!("Bearer {}", self.secret).parse().unwrap()),
        )
    }
}

fn ticket(i: u64) -> pb::CreateTicketRequest {
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
fn conversation(i: u64) -> pb::EscalateConversationRequest {
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

/// Runs `clients` loops of `call` for `seconds`; returns calls per second and the sorted
/// latencies of the calls that succeeded.
///
/// With `per_client_rate`, each client is an open-loop arrival process: calls are scheduled
/// at exponentially distributed intervals (Poisson arrivals, as `pgbench --rate` schedules
/// them), and a call's latency counts from its scheduled start, so a server that falls
/// behind is charged for the wait too. Without it, each client calls back to back.
async fn load<F, Fut>(
    clients: usize,
    seconds: u64,
    per_client_rate: Option<f64>,
    call: F,
) -> (f64, Vec<Duration>)
where
    F: Fn(u64) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let counter = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (call, counter, latencies) = (call.clone(), counter.clone(), latencies.clone());
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            let mut next = Instant::now();
            loop {
                if let Some(rate) = per_client_rate {
                    // 1 - U is in (0, 1], so the logarithm is finite.
                    let gap = -(1.0 - fastrand::f64()).ln() / rate;
                    next += Duration::from_secs_f64(gap);
                    tokio::time::sleep_until(next.into()).await;
                } else {
                    next = Instant::now();
                }
                if next >= deadline {
                    break;
                }
                let i = counter.fetch_add(1, Ordering::Relaxed);
                if call(i).await {
                    mine.push(next.elapsed());
                }
            }
            latencies.lock().await.extend(mine);
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let mut all = Arc::try_unwrap(latencies)
        .map(|m| m.into_inner())
        .unwrap_or_default();
    all.sort();
    (all.len() as f64 / seconds as f64, all)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index].as_secs_f64() * 1000.0
}

/// The resident set of process `pid`, in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

struct Row {
    scenario: String,
    value: String,
    baseline: String,
    ratio: String,
    target: String,
}

async fn create_throughput(
    server: &Server,
    clients: usize,
    seconds: u64,
    rate: Option<f64>,
) -> (f64, Vec<Duration>) {
    let client = server.client();
    load(clients, seconds, rate, move |i| {
        let mut c = client.clone();
        async move { c.create_ticket(ticket(i)).await.is_ok() }
    })
    .await
}

/// A WatchTickets client that counts responses without decoding them. The bench's watchers
/// stand in for remote clients; decoding every message here would spend the two cores the
/// server is being measured on.
#[derive(Clone, Copy)]
struct CountingCodec;

struct RequestEncoder;

struct SkippingDecoder;

impl tonic::codec::Encoder for RequestEncoder {
    type Item = pb::WatchTicketsRequest;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Self::Item,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), Self::Error> {
        prost::Message::encode(&item, dst).map_err(|e| tonic::Status::internal(e.to_string()))
    }
}

impl tonic::codec::Decoder for SkippingDecoder {
    type Item = usize;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Self::Item>, Self::Error> {
        use prost::bytes::Buf;
        let length = src.remaining();
        src.advance(length);
        Ok(Some(length))
    }
}

impl tonic::codec::Codec for CountingCodec {
    type Encode = pb::WatchTicketsRequest;
    type Decode = usize;
    type Encoder = RequestEncoder;
    type Decoder = SkippingDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        RequestEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        SkippingDecoder
    }
}

/// `count` watchers that follow the log from its current end with `filter`, counting what
/// they receive into `received`.
async fn live_watchers(
    server: &Server,
    count: usize,
    filter: &str,
    received: Arc<AtomicU64>,
) -> Vec<tokio::task::JoinHandle<()>> {
    // The newest event's cursor: the activity of a ticket created just now.
    let mut client = server.client();
    let marker = client.create_ticket(ticket(0)).await.expect("create");
    let marker_id = marker.into_inner().ticket.expect("ticket").id;
    let from = client
        .list_activity(pb::ListActivityRequest {
            ticket_id: marker_id,
            ..Default::default()
        })
        .await
        .expect("activity")
        .into_inner()
        .entries
        .last()
        .map_or(0, |e| e.cursor);
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(
        "/ticketd.v1.TicketService/WatchTickets",
    );
    let bearer: MetadataValue<tonic::metadata::Ascii> =
        format!("Bearer {}", server.secret).parse().unwrap();
    let mut handles = Vec::new();
    for _ in 0..count {
        let mut grpc = tonic::client::Grpc::new(server.channel.clone());
        grpc.ready().await.expect("channel ready");
        let mut request = tonic::Request::new(pb::WatchTicketsRequest {
            filter: filter.to_owned(),
            after_cursor: from,
        });
        request
            .metadata_mut()
            .insert("authorization", bearer.clone());
        let mut stream = grpc
            .server_streaming(request, path.clone(), CountingCodec)
            .await
            .expect("watch")
            .into_inner();
        let received = received.clone();
        handles.push(tokio::spawn(async move {
            while let Some(Ok(_)) = stream.next().await {
                received.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    handles
}

/// CreateTicket throughput with `count` idle `SubscribeChannel` streams open (nothing is
/// ever queued for them), against the same load without them right before and after.
async fn idle_delivery_streams(server: &Server, args: &Args, count: usize, backend: &str) -> Row {
    // A short run first lets whatever the previous scenario left behind settle (the
    // fan-out's thousand watchers take a moment to go).
    create_throughput(server, args.clients, 2, None).await;
    let (before, _) = create_throughput(server, args.clients, args.seconds, None).await;
    let gateway = pb::escalation_service_client::EscalationServiceClient::with_interceptor(
        server.channel.clone(),
        Bearer(format!("Bearer {}", server.secret).parse().unwrap()),
    );
    let mut streams = Vec::with_capacity(count);
    for i in 0..count {
        let mut c = gateway.clone();
        let stream = c
            .subscribe_channel(pb::SubscribeChannelRequest {
                channel: pb::Channel::Sms as i32,
                // A few gateway deployments, each with several subscribers.
                consumer_group: format!("gateway-{}", i % 8),
            })
            .await
            .expect("subscribe")
            .into_inner();
        streams.push(tokio::spawn(async move {
            let mut stream = stream;
            while let Some(Ok(_)) = stream.next().await {}
        }));
    }
    let (with_streams, _) = create_throughput(server, args.clients, args.seconds, None).await;
    for s in streams {
        s.abort();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (after, _) = create_throughput(server, args.clients, args.seconds, None).await;
    let without = (before + after) / 2.0;
    Row {
        scenario: format!("CreateTicket with {count} idle SubscribeChannel streams, {backend}"),
        value: format!("{with_streams:.0}/s"),
        baseline: format!("{without:.0}/s without ({before:.0} before, {after:.0} after)"),
        ratio: format!("{:.2}x", with_streams / without),
        target: ">= 0.95x".into(),
    }
}

/// CreateTicket throughput on `with` against `without` (two servers on one database),
/// run in alternating turns (without, with, without, with, without, with, without) so a
/// drift in the machine's speed lands on both sides: (mean with, mean without, slowest
/// and fastest without run).
async fn in_turns(with: &Server, without: &Server, args: &Args) -> (f64, f64, f64, f64) {
    const ROUNDS: usize = 3;
    create_throughput(with, args.clients, 1, None).await;
    create_throughput(without, args.clients, 1, None).await;
    let mut withs = Vec::new();
    let mut withouts = Vec::new();
    for _ in 0..ROUNDS {
        withouts.push(
            create_throughput(without, args.clients, args.seconds, None)
                .await
                .0,
        );
        withs.push(
            create_throughput(with, args.clients, args.seconds, None)
                .await
                .0,
        );
    }
    withouts.push(
        create_throughput(without, args.clients, args.seconds, None)
            .await
            .0,
    );
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let low = withouts.iter().copied().fold(f64::INFINITY, f64::min);
    let high = withouts.iter().copied().fold(0.0, f64::max);
    (mean(&withs), mean(&withouts), low, high)
}

/// What per-key rate limiting costs: a server whose key limit sits above the load
/// against one with limits off.
async fn rate_limit_cost(url: &str, args: &Args) -> Row {
    let limited = start(url).await;
    let open = start_with(
        url,
        |s| {
            s.rate_limit_per_second = 0;
            s.rate_limit_bot_per_second = 0;
            s.rate_limit_gateway_per_second = 0;
        },
        None,
    )
    .await;
    let (with_limits, without, low, high) = in_turns(&limited, &open, args).await;
    let _ = limited.app_stop.send(());
    let _ = open.app_stop.send(());
    Row {
        scenario: "CreateTicket with key authentication and a rate limit above the load".into(),
        value: format!("{with_limits:.0}/s"),
        baseline: format!("{without:.0}/s, limits off (runs {low:.0} to {high:.0})"),
        ratio: format!("{:.2}x", with_limits / without),
        target: ">= 0.95x".into(),
    }
}

/// Runs `openssl` with `args` in `dir`.
fn openssl(dir: &std::path::Path, args: &[&str]) -> bool {
    std::process::Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A CA and a server certificate for localhost made with the `openssl` tool, in `dir`.
fn make_certificates(dir: &std::path::Path) -> bool {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .is_ok()
        && openssl(
            dir,
            &[
                &["req", "-x509"][..],
                &ec,
                &[
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.crt",
                    "-days",
                    "1",
                    "-subj",
                    "/CN=bench CA",
                ],
            ]
            .concat(),
        )
        && openssl(
            dir,
            &[
                &["req"][..],
                &ec,
                &[
                    "-keyout",
                    "server.key",
                    "-out",
                    "server.csr",
                    "-subj",
                    "/CN=localhost",
                ],
            ]
            .concat(),
        )
        && openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.crt",
                "-days",
                "1",
                "-extfile",
                "server.ext",
            ],
        )
}

/// What TLS costs: CreateTicket over TLS (new connections reuse none: one long-lived
/// connection, as gateways keep) against plaintext on the same database.
async fn tls_cost(url: &str, args: &Args) -> Row {
    let dir = std::env::temp_dir().join(format!("ticketd-bench-tls-{}", uuid::Uuid::new_v4()));
    let made = std::fs::create_dir_all(&dir).is_ok() && make_certificates(&dir);
    let ca = std::fs::read_to_string(dir.join("ca.crt")).unwrap_or_default();
    if !made || ca.is_empty() {
        let _ = std::fs::remove_dir_all(&dir);
        return Row {
            scenario: "CreateTicket over TLS".into(),
            value: "openssl unavailable".into(),
            baseline: "-".into(),
            ratio: "-".into(),
            target: "report".into(),
        };
    }
    let client = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(ca))
        .domain_name("localhost");
    let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
    let secure = start_with(
        url,
        |s| {
            s.tls_cert = Some(cert);
            s.tls_key = Some(key);
        },
        Some(client),
    )
    .await;
    let plain = start(url).await;
    let (over_tls, without, low, high) = in_turns(&secure, &plain, args).await;
    let _ = secure.app_stop.send(());
    let _ = plain.app_stop.send(());
    let _ = std::fs::remove_dir_all(&dir);
    Row {
        scenario: "CreateTicket over TLS (TLS 1.3, ECDSA P-256)".into(),
        value: format!("{over_tls:.0}/s"),
        baseline: format!("{without:.0}/s plaintext (runs {low:.0} to {high:.0})"),
        ratio: format!("{:.2}x", over_tls / without),
        target: "report".into(),
    }
}

/// Commit-to-receive latency: writers add notes at `rate` per second in total while
/// `count` watchers follow; each watcher measures now - event.created_at.
async fn fan_out(server: &Server, count: usize, rate: f64, seconds: u64) -> (f64, usize) {
    let mut client = server.client();
    let ticket = client
        .create_ticket(ticket(0))
        .await
        .unwrap()
        .into_inner()
        .ticket
        .unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let samples = Arc::new(Mutex::new(Vec::new()));
    let filter = format!(r#"ticket_id = "{}" AND event_type = note_added"#, ticket.id);
    let mut handles = Vec::new();
    for _ in 0..count {
        let mut c = server.client();
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
    let client = server.client();
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

/// `pgbench` running `bench/create_ticket.sql` with the create load's clients for the
/// run's length, plus `extra` options.
fn pgbench_command(args: &Args, url: &str, extra: &[&str]) -> std::process::Command {
    let mut command = std::process::Command::new(&args.pgbench);
    command
        .args(["-n", "-c", &args.clients.to_string(), "-j", "2"])
        .args(["-T", &args.seconds.to_string(), "-M", "prepared"])
        .args(extra)
        .args(["-f", "bench/create_ticket.sql", url]);
    command
}

fn pgbench(args: &Args, url: &str) -> Option<f64> {
    let output = pgbench_command(args, url, &[]).output().ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse().ok())
}

/// `pgbench` running the same transaction at `rate` per second in all (Poisson arrivals,
/// latency from the scheduled start): the p50 and p99 in milliseconds.
fn pgbench_latency(args: &Args, url: &str, rate: f64) -> Option<(f64, f64)> {
    let dir = std::env::temp_dir().join(format!("ticketd-bench-log-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).ok()?;
    let prefix = dir.join("tx").display().to_string();
    let rate = format!("{rate:.0}");
    let status = pgbench_command(args, url, &["-R", &rate, "-l", "--log-prefix", &prefix])
        .output()
        .ok()?
        .status;
    // One line per transaction: client, number, latency in microseconds, ...
    let mut latencies: Vec<Duration> = std::fs::read_dir(&dir)
        .ok()?
        .flatten()
        .filter_map(|entry| std::fs::read_to_string(entry.path()).ok())
        .flat_map(|text| {
            text.lines()
                .filter_map(|line| line.split_whitespace().nth(2)?.parse::<u64>().ok())
                .map(Duration::from_micros)
                .collect::<Vec<_>>()
        })
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    if !status.success() || latencies.is_empty() {
        return None;
    }
    latencies.sort();
    Some((percentile(&latencies, 0.5), percentile(&latencies, 0.99)))
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if let Some(url) = &args.serve {
        serve_until_stdin_closes(url).await;
        return;
    }
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mut rows = Vec::new();

    // PostgreSQL, durable commits (synchronous_commit as the server has it).
    let name = format!("ticketd_bench_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&args.postgres)
        .await
        .expect("connect to --postgres");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap();
    let base = args
        .postgres
        .rsplit_once('/')
        .map(|(b, _)| b.to_owned())
        .unwrap_or(args.postgres.clone());
    let url = format!("{base}/{name}");
    let server = start(&url).await;
    let commit_mode: String = {
        let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
        sqlx::query_scalar("SHOW synchronous_commit")
            .fetch_one(&mut c)
            .await
            .unwrap()
    };

    // Warm up, then CreateTicket throughput against pgbench running the same transaction.
    create_throughput(&server, args.clients, 2, None).await;
    let (creates, _) = create_throughput(&server, args.clients, args.seconds, None).await;
    let baseline = pgbench(&args, &url);
    rows.push(Row {
        scenario: format!("CreateTicket, {} clients, PostgreSQL", args.clients),
        value: format!("{creates:.0}/s"),
        baseline: baseline.map_or("pgbench unavailable".into(), |b| {
            format!("pgbench {b:.0} tps")
        }),
        ratio: baseline.map_or("-".into(), |b| format!("{:.2}x", creates / b)),
        target: ">= 0.6x".into(),
    });

    let half = creates / 2.0;
    let (_, latencies) = create_throughput(
        &server,
        args.clients,
        args.seconds,
        Some(half / args.clients as f64),
    )
    .await;
    let (p50, p99) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));
    let database_latency = pgbench_latency(&args, &url, half);
    rows.push(Row {
        scenario: format!("CreateTicket latency at {half:.0}/s (Poisson arrivals)"),
        value: format!("p50 {p50:.1} ms, p99 {p99:.1} ms"),
        baseline: database_latency.map_or("pgbench unavailable".into(), |(b50, b99)| {
            format!("pgbench at the same rate: p50 {b50:.1} ms, p99 {b99:.1} ms")
        }),
        ratio: database_latency.map_or("-".into(), |(b50, b99)| {
            format!("p50 {:.1}x, p99 {:.1}x", p50 / b50, p99 / b99)
        }),
        target: "p50 <= 3 ms, p99 <= 15 ms".into(),
    });

    // Escalations with a 50-message transcript at 100/s: alone first (the baseline), then
    // beside the create load at half rate.
    let escalate = |server: &Server| {
        let client = pb::escalation_service_client::EscalationServiceClient::with_interceptor(
            server.channel.clone(),
            Bearer(format!("Bearer {}", server.secret).parse().unwrap()),
        );
        load(8, args.seconds, Some(100.0 / 8.0), move |i| {
            let mut c = client.clone();
            async move { c.escalate_conversation(conversation(i)).await.is_ok() }
        })
    };
    let (_, alone) = escalate(&server).await;
    let creates_beside = {
        let server_client = server.client();
        let clients = args.clients;
        let seconds = args.seconds;
        tokio::spawn(async move {
            load(clients, seconds, Some(half / clients as f64), move |i| {
                let mut c = server_client.clone();
                async move { c.create_ticket(ticket(i)).await.is_ok() }
            })
            .await
        })
    };
    let (_, escalations) = escalate(&server).await;
    let _ = creates_beside.await;
    rows.push(Row {
        scenario: format!("EscalateConversation, 50 messages, 100/s beside {half:.0} creates/s"),
        value: format!(
            "p50 {:.1} ms, p99 {:.1} ms ({} calls)",
            percentile(&escalations, 0.5),
            percentile(&escalations, 0.99),
            escalations.len()
        ),
        baseline: format!(
            "alone: p50 {:.1} ms, p99 {:.1} ms",
            percentile(&alone, 0.5),
            percentile(&alone, 0.99)
        ),
        ratio: format!(
            "p99 {:.1}x",
            percentile(&escalations, 0.99) / percentile(&alone, 0.99)
        ),
        target: "p99 <= 50 ms".into(),
    });

    // 100 watchers, first of an agent's own tickets (attached and woken by every commit, but
    // none of the new events is theirs), then of every event. Each run's baseline is the
    // load without watchers right before and right after it, so a drift in the machine's
    // speed does not land on one side of the ratio.
    let nobody = uuid::Uuid::new_v4();
    for (label, filter) in [
        (
            "an agent's own tickets",
            format!(r#"assignee_id = "{nobody}""#),
        ),
        ("every event", String::new()),
    ] {
        let (before, _) = create_throughput(&server, args.clients, args.seconds, None).await;
        let received = Arc::new(AtomicU64::new(0));
        let watching = live_watchers(&server, 100, &filter, received.clone()).await;
        let (with_watchers, _) = create_throughput(&server, args.clients, args.seconds, None).await;
        for w in watching {
            w.abort();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (after, _) = create_throughput(&server, args.clients, args.seconds, None).await;
        let without = (before + after) / 2.0;
        rows.push(Row {
            scenario: format!("CreateTicket with 100 watchers of {label}"),
            value: format!(
                "{with_watchers:.0}/s ({} deliveries)",
                received.load(Ordering::Relaxed)
            ),
            baseline: format!("{without:.0}/s without ({before:.0} before, {after:.0} after)"),
            ratio: format!("{:.2}x", with_watchers / without),
            target: ">= 0.9x".into(),
        });
    }

    for (count, rate) in [(100usize, 500.0), (1000, 50.0)] {
        let (p99, samples) = fan_out(&server, count, rate, args.seconds.min(5)).await;
        rows.push(Row {
            scenario: format!("fan-out {count} watchers x {rate:.0} events/s"),
            value: format!("commit-to-receive p99 {p99:.1} ms ({samples} deliveries)"),
            baseline: "-".into(),
            ratio: "-".into(),
            target: "p99 <= 100 ms".into(),
        });
    }

    rows.push(idle_delivery_streams(&server, &args, 200, "PostgreSQL").await);

    const IDLE_STREAMS: usize = 1000;
    let memory = idle_stream_memory(&url, IDLE_STREAMS).await;
    rows.push(Row {
        scenario: format!("idle watch streams, {IDLE_STREAMS}, server process alone"),
        value: memory.map_or("unavailable".into(), |(before, after)| {
            format!(
                "{:.1} KiB per stream",
                after.saturating_sub(before) as f64 / IDLE_STREAMS as f64
            )
        }),
        baseline: memory.map_or("-".into(), |(before, _)| format!("RSS {before} KiB with 0")),
        ratio: "-".into(),
        target: "<= 64 KiB".into(),
    });

    let health = tonic_health::pb::health_client::HealthClient::new(server.channel.clone());
    let (checks, _) = load(args.clients, args.seconds, None, move |_| {
        let mut h = health.clone();
        async move {
            h.check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await
            .is_ok()
        }
    })
    .await;
    rows.push(Row {
        scenario: "gRPC overhead: health check".into(),
        value: format!("{checks:.0}/s"),
        baseline: format!("CreateTicket {creates:.0}/s"),
        ratio: format!("CreateTicket = {:.3}x of a no-op", creates / checks),
        target: "report".into(),
    });
    let _ = server.app_stop.send(());
    rows.push(rate_limit_cost(&url, &args).await);
    rows.push(tls_cost(&url, &args).await);

    // SQLite, the embedded default.
    let dir = std::env::temp_dir().join(format!("ticketd-bench-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let sqlite = start(&format!("sqlite://{}", dir.join("bench.db").display())).await;
    create_throughput(&sqlite, args.clients, 1, None).await;
    let (sqlite_creates, _) = create_throughput(&sqlite, args.clients, args.seconds, None).await;
    rows.push(Row {
        scenario: format!("CreateTicket, {} clients, SQLite", args.clients),
        value: format!("{sqlite_creates:.0}/s"),
        baseline: "-".into(),
        ratio: "-".into(),
        target: ">= 1000/s".into(),
    });
    rows.push(idle_delivery_streams(&sqlite, &args, 200, "SQLite").await);
    let _ = sqlite.app_stop.send(());
    let _ = std::fs::remove_dir_all(&dir);
    drop(admin);
    if let Ok(mut c) = sqlx::PgConnection::connect(&args.postgres).await {
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut c)
        .await;
    }

    println!(
        "\nticketd-bench: {cores} cores, PostgreSQL synchronous_commit={commit_mode}, {} clients, {} s per run\n",
        args.clients, args.seconds
    );
    println!("| scenario | result | baseline (same run) | ratio | target |");
    println!("|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {} |",
            r.scenario, r.value, r.baseline, r.ratio, r.target
        );
    }
    let json: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| serde_json::json!({"scenario": r.scenario, "result": r.value, "baseline": r.baseline, "ratio": r.ratio, "target": r.target}))
        .collect();
    let _ = std::fs::create_dir_all("target/bench");
    let report = serde_json::json!({"cores": cores, "synchronous_commit": commit_mode, "clients": args.clients, "seconds": args.seconds, "rows": json});
    let _ = std::fs::write(
        "target/bench/results.json",
        serde_json::to_string_pretty(&report).unwrap_or_default(),
    );
}
