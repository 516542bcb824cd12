//! `ticketd-bench`: measures ticketd against baselines taken in the same run, and prints
//! a table (and `target/bench/results.json`).
//!
//! It starts ticketd in process on a fresh PostgreSQL database (created on the server that
//! `--postgres` names, durable commits) and on a fresh SQLite file, drives it with the
//! generated gRPC client, and compares with `pgbench` running the same SQL transaction
//! (`bench/create_ticket.sql`) and with a no-op RPC (a health check) on the same server.

mod automation;
mod costs;
mod curve;
mod dataset;
mod load;
mod pgbench;
mod replicas;
mod server;
mod standbys;
mod streams;
mod webhooks;

use clap::Parser;
use sqlx::Connection;
use ticketd::grpc::pb::{self};

pub(crate) use automation::*;
pub(crate) use costs::*;
pub(crate) use curve::*;
pub(crate) use dataset::*;
pub(crate) use load::*;
pub(crate) use pgbench::*;
pub(crate) use replicas::*;
pub(crate) use server::*;
pub(crate) use standbys::*;
pub(crate) use streams::*;
pub(crate) use webhooks::*;

/// The allocator the `ticketd` binary uses, so the server in this process runs as it does
/// there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Runs only the automation measurements (workflows and timers).
    #[arg(long)]
    automation_only: bool,
    /// Runs only REST against gRPC.
    #[arg(long)]
    rest_only: bool,
    /// Runs only CreateTicket against pgbench (throughput, latency at half load) and
    /// EscalateConversation beside half-load creates, five times in a row.
    #[arg(long)]
    creates_only: bool,
    /// Runs only EscalateConversation beside half-load creates, five times in a row
    /// (`--creates-only` without the create rows).
    #[arg(long)]
    escalations_only: bool,
    /// Runs only the replica measurements (1, 2 and 3 ticketd replicas on one database).
    #[arg(long)]
    replicas_only: bool,
    /// Runs only reads with one streaming standby against none (a private primary and
    /// standby, made with the PostgreSQL programs beside `--pgbench`).
    #[arg(long)]
    standbys_only: bool,
    /// Runs only the load curve (`target/bench/load-curve.svg` and `.json`) and the
    /// 10,000-idle-watcher point.
    #[arg(long)]
    curve_only: bool,
    /// Runs only CreateTicket beside 100 live watchers (of an agent's own tickets, of
    /// every event), on PostgreSQL: with ticketd in this process, then in a child process
    /// of its own (whose CPU is read apart from the clients').
    #[arg(long)]
    watchers_only: bool,
    /// Runs only webhook delivery (latency under load, backlog drain).
    #[arg(long)]
    webhooks_only: bool,
    /// Runs only the views, search and reports measurements on a generated data set.
    #[arg(long)]
    dataset_only: bool,
    /// Tickets in the generated data set.
    #[arg(long, default_value_t = 1_000_000)]
    dataset_tickets: i64,
    /// Keeps the data set's database (its URL is printed) instead of dropping it.
    #[arg(long)]
    keep_dataset: bool,
    /// Internal: only serve the database at this URL, print the address, and exit when
    /// standard input closes (the memory figure measures such a child on its own).
    #[arg(long, hide = true)]
    serve: Option<String>,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    ticketd::tls::install_crypto_provider();
    if let Some(url) = &args.serve {
        serve_until_stdin_closes(url).await;
        return;
    }
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    if args.rest_only {
        let (name, url) = fresh_database(&args).await;
        let rows = vec![rest_cost(&url, &args).await];
        drop_database(&args, &name).await;
        report(&rows, cores, "as the server has it", &args);
        return;
    }
    if args.creates_only || args.escalations_only {
        let (name, url) = fresh_database(&args).await;
        let server = start(&url).await;
        let (create_rows, half) = create_costs(&server, &args, &url).await;
        let mut rows = if args.creates_only {
            create_rows
        } else {
            Vec::new()
        };
        for run in 1..=5 {
            let mut row =
                escalation_beside_creates(&server, &args, half, ESCALATIONS_PER_SECOND).await;
            row.scenario = format!("run {run}: {}", row.scenario);
            rows.push(row);
        }
        // On a machine slower than the reference, the same share of it: the absolute
        // 100/s weighs more there (an escalation costs about four creates).
        let scaled = scaled_escalation_rate(half);
        if scaled < ESCALATIONS_PER_SECOND {
            let mut row = escalation_beside_creates(&server, &args, half, scaled).await;
            row.scenario = format!(
                "scaled to this machine (create maximum {:.0}/s against 2000/s): {}",
                2.0 * half,
                row.scenario
            );
            rows.push(row);
        }
        let _ = server.app_stop.send(());
        drop_database(&args, &name).await;
        report(&rows, cores, "as the server has it", &args);
        return;
    }
    if args.replicas_only {
        let rows = replica_costs(&args).await;
        report(&rows, cores, "as the server has it", &args);
        return;
    }
    if args.standbys_only {
        let rows = standby_costs(&args).await;
        report(&rows, cores, "as the server has it", &args);
        return;
    }
    if args.curve_only {
        let rows = load_curve(&args).await;
        report(&rows, cores, "as the server has it", &args);
        return;
    }
    if args.watchers_only {
        let (name, url) = fresh_database(&args).await;
        let server = start(&url).await;
        create_throughput(&server, args.clients, 2, None).await;
        let mut rows = watcher_costs(&server, &args).await;
        let _ = server.app_stop.send(());
        // Again with ticketd in a process of its own, whose CPU is then read apart from
        // the clients'.
        match start_apart(&url).await {
            Some(apart) => {
                create_throughput(&apart.server, args.clients, 2, None).await;
                rows.extend(watcher_costs(&apart.server, &args).await);
            }
            None => eprintln!("ticketd could not be started in a child process"),
        }
        drop_database(&args, &name).await;
        report(&rows, cores, "as the server has it", &args);
        return;
    }
    if args.webhooks_only {
        let rows = webhook_costs(&args).await;
        report(&rows, cores, "as the server has it", &args);
        return;
    }
    if args.dataset_only {
        let rows = dataset_costs(&args).await;
        report(&rows, cores, "as the server has it", &args);
        return;
    }
    if args.automation_only {
        let rows = workflow_costs(&args).await;
        report(&rows, cores, "as the server has it", &args);
        return;
    }
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

    let (create_rows, half) = create_costs(&server, &args, &url).await;
    rows.extend(create_rows);
    let creates = half * 2.0;

    rows.push(escalation_beside_creates(&server, &args, half, ESCALATIONS_PER_SECOND).await);

    rows.extend(watcher_costs(&server, &args).await);

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
    rows.push(rest_cost(&url, &args).await);
    rows.extend(workflow_costs(&args).await);
    rows.extend(dataset_costs(&args).await);

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

    report(&rows, cores, &commit_mode, &args);
}

/// Prints the table and writes `target/bench/results.json`.
fn report(rows: &[Row], cores: usize, commit_mode: &str, args: &Args) {
    println!(
        "\nticketd-bench: {cores} cores, PostgreSQL synchronous_commit={commit_mode}, {} clients, {} s per run\n",
        args.clients, args.seconds
    );
    println!("| scenario | result | baseline (same run) | ratio | target |");
    println!("|---|---|---|---|---|");
    for r in rows {
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

/// CreateTicket's throughput against pgbench running the same transaction, then its
/// latency at half that load against pgbench at the same arrival rate; returns the rows
/// and the half load.
async fn create_costs(server: &Server, args: &Args, url: &str) -> (Vec<Row>, f64) {
    create_throughput(server, args.clients, 2, None).await;
    // Three turns of each, alternating, so that a drift of the shared machine lands on
    // both sides; the medians are compared.
    let (mut creates, mut baseline, mut cpu, mut machine) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..3 {
        let (rate, cpu_per_call) = creates_with_cpu(server, args.clients, args.seconds).await;
        creates.push(rate);
        cpu.extend(cpu_per_call.all);
        machine.extend(cpu_per_call.machine);
        baseline.extend(pgbench(args, url));
    }
    let (creates, creates_runs) = turns(&creates);
    let (cpu, _) = turns(&cpu);
    let (machine, _) = turns(&machine);
    let (baseline_median, baseline_runs) = turns(&baseline);
    let baseline = (!baseline.is_empty()).then_some(baseline_median);
    let mut rows = vec![Row {
        scenario: format!("CreateTicket, {} clients, PostgreSQL", args.clients),
        value: format!(
            "{creates:.0}/s (median of {creates_runs}; {cpu:.0} µs of CPU per call in \
             server and client, {machine:.0} µs on the whole machine)"
        ),
        baseline: baseline.map_or("pgbench unavailable".into(), |b| {
            format!("pgbench {b:.0} tps (median of {baseline_runs})")
        }),
        ratio: baseline.map_or("-".into(), |b| format!("{:.2}x", creates / b)),
        target: ">= 0.8x".into(),
    }];
    let half = creates / 2.0;
    let (_, latencies) = create_throughput(
        server,
        args.clients,
        args.seconds,
        Some(half / args.clients as f64),
    )
    .await;
    let (p50, p99) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));
    let database_latency = pgbench_latency(args, url, half);
    rows.push(Row {
        scenario: format!("CreateTicket latency at {half:.0}/s (Poisson arrivals)"),
        value: format!("p50 {p50:.1} ms, p99 {p99:.1} ms"),
        baseline: database_latency.map_or("pgbench unavailable".into(), |(b50, b99)| {
            format!("pgbench at the same rate: p50 {b50:.1} ms, p99 {b99:.1} ms")
        }),
        ratio: database_latency.map_or("-".into(), |(b50, b99)| {
            format!("p50 {:.1}x, p99 {:.1}x", p50 / b50, p99 / b99)
        }),
        target: "p50 <= 1.3x, p99 <= 15 ms".into(),
    });
    (rows, half)
}
