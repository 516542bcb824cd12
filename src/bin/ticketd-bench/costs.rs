//! Features measured against the same server without them: rate limits and TLS.

use crate::*;

/// CreateTicket throughput on `with` against `without` (two servers on one database),
/// run in alternating turns (without, with, without, with, without, with, without) so a
/// drift in the machine's speed lands on both sides: (mean with, mean without, slowest
/// and fastest without run).
pub(crate) async fn in_turns(with: &Server, without: &Server, args: &Args) -> (f64, f64, f64, f64) {
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
pub(crate) async fn rate_limit_cost(url: &str, args: &Args) -> Row {
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
pub(crate) fn openssl(dir: &std::path::Path, args: &[&str]) -> bool {
    std::process::Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A CA and a server certificate for localhost made with the `openssl` tool, in `dir`.
pub(crate) fn make_certificates(dir: &std::path::Path) -> bool {
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
pub(crate) async fn tls_cost(url: &str, args: &Args) -> Row {
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

/// CreateTicket as REST/JSON over HTTP/1.1 (a pool of keep-alive connections, one per
/// client) against gRPC on the same server, in alternating turns.
pub(crate) async fn rest_cost(url: &str, args: &Args) -> Row {
    let server = start(url).await;
    let http = reqwest::Client::builder()
        .http1_only()
        .pool_max_idle_per_host(args.clients)
        .build()
        .expect("an HTTP client");
    let endpoint = format!("http://{}/v1/tickets", server.addr);
    let auth = format!("Bearer {}", server.secret);
    let rest_load = |seconds: u64| {
        let (http, endpoint, auth) = (http.clone(), endpoint.clone(), auth.clone());
        load(args.clients, seconds, None, move |i| {
            let (http, endpoint, auth) = (http.clone(), endpoint.clone(), auth.clone());
            async move {
                let body = serde_json::json!({
                    "subject": format!("Bench ticket {i}"),
                    "description": "created by ticketd-bench",
                    "contact": {"externalId": format!("bench-{}", i % 5000), "name": "Bench"}
                });
                http.post(&endpoint)
                    .header("authorization", &auth)
                    .header("content-type", "application/json")
                    .body(body.to_string())
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            }
        })
    };
    rest_load(1).await;
    create_throughput(&server, args.clients, 1, None).await;
    let (mut rest, mut grpc) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        grpc.push(
            create_throughput(&server, args.clients, args.seconds, None)
                .await
                .0,
        );
        rest.push(rest_load(args.seconds).await.0);
    }
    grpc.push(
        create_throughput(&server, args.clients, args.seconds, None)
            .await
            .0,
    );
    let _ = server.app_stop.send(());
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (low, high) = (
        grpc.iter().copied().fold(f64::INFINITY, f64::min),
        grpc.iter().copied().fold(0.0, f64::max),
    );
    Row {
        scenario: format!(
            "CreateTicket over REST/JSON (HTTP/1.1), {} clients",
            args.clients
        ),
        value: format!("{:.0}/s", mean(&rest)),
        baseline: format!(
            "{:.0}/s over gRPC (runs {low:.0} to {high:.0})",
            mean(&grpc)
        ),
        ratio: format!("{:.2}x", mean(&rest) / mean(&grpc)),
        target: ">= 0.8x".into(),
    }
}

/// Escalations a second the escalation target names.
pub(crate) const ESCALATIONS_PER_SECOND: f64 = 100.0;

/// The create maximum of a quiet day on the two-core machines the targets were set on.
const REFERENCE_CREATES_PER_SECOND: f64 = 2_000.0;

/// The escalation rate that loads this machine as 100/s loads the reference one: 100/s
/// scaled by the create maximum measured in this run (`2 * half`) over the reference's,
/// at most 100/s.
pub(crate) fn scaled_escalation_rate(half: f64) -> f64 {
    (ESCALATIONS_PER_SECOND * 2.0 * half / REFERENCE_CREATES_PER_SECOND).min(ESCALATIONS_PER_SECOND)
}

/// EscalateConversation with a 50-message transcript at `rate` per second: alone first
/// (the baseline), then beside the create load at `half` per second.
pub(crate) async fn escalation_beside_creates(
    server: &Server,
    args: &Args,
    half: f64,
    rate: f64,
) -> Row {
    let escalate = |server: &Server| {
        let client = pb::escalation_service_client::EscalationServiceClient::with_interceptor(
            server.channel.clone(),
            Bearer(format!("Bearer {}", server.secret).parse().unwrap()),
        );
        load(8, args.seconds, Some(rate / 8.0), move |i| {
            let mut c = client.clone();
            async move { c.escalate_conversation(conversation(i)).await.is_ok() }
        })
    };
    let (cpu_before, machine_before) = (process_cpu(), machine_cpu());
    let (_, alone) = escalate(server).await;
    let (cpu_after, machine_after) = (process_cpu(), machine_cpu());
    let per_call = |before, after| {
        micros_per_call(before, after, alone.len() as f64)
            .map_or_else(|| "-".to_owned(), |micros| format!("{micros:.0}"))
    };
    let cpu = format!(
        "{} µs of CPU per call in server and client, {} µs on the whole machine",
        per_call(cpu_before, cpu_after),
        per_call(machine_before, machine_after)
    );
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
    let (_, escalations) = escalate(server).await;
    let _ = creates_beside.await;
    Row {
        scenario: format!(
            "EscalateConversation, 50 messages, {rate:.0}/s beside {half:.0} creates/s"
        ),
        value: format!(
            "p50 {:.1} ms, p99 {:.1} ms ({} calls)",
            percentile(&escalations, 0.5),
            percentile(&escalations, 0.99),
            escalations.len()
        ),
        baseline: format!(
            "alone: p50 {:.1} ms, p99 {:.1} ms ({cpu})",
            percentile(&alone, 0.5),
            percentile(&alone, 0.99)
        ),
        ratio: format!(
            "p99 {:.1}x",
            percentile(&escalations, 0.99) / percentile(&alone, 0.99)
        ),
        target: "p99 <= 50 ms".into(),
    }
}
