//! Reads with one streaming standby against none, in the same run: a private primary
//! (`initdb`) and a standby copied from it (`pg_basebackup`), both on this machine, each
//! served by a ticketd of its own: one without `TICKETD_DATABASE_READ_URL`, one with the
//! standby in it. Measured for each: ListTickets throughput and latency, the primary's
//! CPU time per 1,000 lists, and a write followed by a read that carries its token.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ticketd::domain::consistency::TOKEN_METADATA;
use ticketd::grpc::pb;

use crate::*;

/// Tickets the lists page through.
const TICKETS: u64 = 2_000;

/// A PostgreSQL cluster of the bench's own, stopped and removed on drop.
struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
}

impl Cluster {
    fn new(bin: &Path) -> Cluster {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        Cluster {
            bin: bin.to_owned(),
            dir: std::env::temp_dir().join(format!(
                "ticketd-bench-pg-{}",
                uuid::Uuid::new_v4().simple()
            )),
            port,
        }
    }

    /// A server program; as root it runs as `postgres`, which PostgreSQL requires.
    fn run(&self, program: &str, args: &[&str]) {
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        let mut command = if root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(self.bin.join(program));
            c
        } else {
            Command::new(self.bin.join(program))
        };
        let output = command
            .args(args)
            .output()
            .expect("run a PostgreSQL program");
        assert!(
            output.status.success(),
            "{program} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn start(&self) {
        let dir = self.dir.display().to_string();
        let log = self.dir.join("server.log").display().to_string();
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={dir} -c max_connections=100",
            self.port
        );
        self.run(
            "pg_ctl",
            &["-D", &dir, "-l", &log, "-o", &options, "-w", "start"],
        );
    }

    fn primary(bin: &Path) -> Cluster {
        let cluster = Cluster::new(bin);
        let dir = cluster.dir.display().to_string();
        cluster.run(
            "initdb",
            &["-D", &dir, "-U", "postgres", "-A", "trust", "--no-sync"],
        );
        cluster.start();
        cluster
    }

    /// A standby of the primary on `primary_port`.
    fn standby_of(bin: &Path, primary_port: u16) -> Cluster {
        let cluster = Cluster::new(bin);
        let (dir, port) = (cluster.dir.display().to_string(), primary_port.to_string());
        cluster.run(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-D",
                &dir,
                "-R",
                "-X",
                "stream",
                "--checkpoint=fast",
            ],
        );
        cluster.start();
        cluster
    }

    fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// CPU seconds the server has used: the postmaster's own, its live backends', and
    /// those of the backends it has reaped.
    fn cpu_seconds(&self) -> f64 {
        let Some(postmaster) = std::fs::read_to_string(self.dir.join("postmaster.pid"))
            .ok()
            .and_then(|s| s.lines().next()?.trim().parse::<u32>().ok())
        else {
            return f64::NAN;
        };
        // Fields after the command name: state is [0], ppid [1], utime [11], stime [12],
        // cutime [13], cstime [14].
        let fields = |pid: &str| -> Option<Vec<String>> {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let after = stat.rsplit_once(')')?.1;
            Some(after.split_whitespace().map(str::to_owned).collect())
        };
        let ticks = |f: &[String], from: usize, to: usize| -> u64 {
            f[from..=to]
                .iter()
                .filter_map(|v| v.parse::<u64>().ok())
                .sum()
        };
        let mut total = fields(&postmaster.to_string()).map_or(0, |f| ticks(&f, 11, 14));
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            if let Some(f) = fields(&name)
                && f.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(postmaster)
            {
                total += ticks(&f, 11, 12);
            }
        }
        // Linux counts in USER_HZ, 100 per second everywhere it runs.
        total as f64 / 100.0
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let dir = self.dir.display().to_string();
        let _ = std::panic::catch_unwind(|| {
            self.run("pg_ctl", &["-D", &dir, "-m", "immediate", "stop"])
        });
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What one configuration measured.
struct Reads {
    per_second: f64,
    p50: f64,
    p99: f64,
    primary_cpu_per_thousand: f64,
    standby_cpu_per_thousand: f64,
    read_back_p50: f64,
    read_back_p99: f64,
}

fn list_request(token: Option<&str>) -> tonic::Request<pb::ListTicketsRequest> {
    let mut request = tonic::Request::new(pb::ListTicketsRequest {
        page_size: 50,
        filter: "status = OPEN".into(),
        order_by: "updated_at desc".into(),
        ..Default::default()
    });
    if let Some(Ok(value)) = token.map(str::parse) {
        request.metadata_mut().insert(TOKEN_METADATA, value);
    }
    request
}

async fn measure(server: &Server, primary: &Cluster, standby: &Cluster, args: &Args) -> Reads {
    let client = server.client();
    let lists = move |_| {
        let mut c = client.clone();
        async move { c.list_tickets(list_request(None)).await.is_ok() }
    };
    load(args.clients, 2, None, lists.clone()).await;
    let (primary_before, standby_before) = (primary.cpu_seconds(), standby.cpu_seconds());
    let (per_second, latencies) = load(args.clients, args.seconds, None, lists).await;
    let reads = per_second * args.seconds as f64 / 1000.0;
    let primary_cpu = (primary.cpu_seconds() - primary_before) * 1000.0 / reads;
    let standby_cpu = (standby.cpu_seconds() - standby_before) * 1000.0 / reads;
    // A caller reading back its own write: create, then list with the create's token.
    let client = server.client();
    let (_, round_trips) = load(4, args.seconds.min(5), None, move |i| {
        let mut c = client.clone();
        async move {
            let Ok(created) = c.create_ticket(ticket(i)).await else {
                return false;
            };
            let token = created
                .metadata()
                .get(TOKEN_METADATA)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            c.list_tickets(list_request(token.as_deref())).await.is_ok()
        }
    })
    .await;
    Reads {
        per_second,
        p50: percentile(&latencies, 0.5),
        p99: percentile(&latencies, 0.99),
        primary_cpu_per_thousand: primary_cpu,
        standby_cpu_per_thousand: standby_cpu,
        read_back_p50: percentile(&round_trips, 0.5),
        read_back_p99: percentile(&round_trips, 0.99),
    }
}

pub(crate) async fn standby_costs(args: &Args) -> Vec<Row> {
    let bin = Path::new(&args.pgbench)
        .parent()
        .expect("the PostgreSQL programs' directory")
        .to_owned();
    let primary = tokio::task::spawn_blocking({
        let bin = bin.clone();
        move || Cluster::primary(&bin)
    })
    .await
    .expect("a primary");
    let admin_url = primary.url("postgres");
    let mut admin = sqlx::PgConnection::connect(&admin_url)
        .await
        .expect("primary");
    sqlx::raw_sql("CREATE DATABASE ticketd")
        .execute(&mut admin)
        .await
        .expect("create");
    let url = primary.url("ticketd");
    let seeding = start(&url).await;
    let clients = args.clients.max(1);
    let writers: Vec<_> = (0..clients as u64)
        .map(|w| {
            let mut c = seeding.client();
            tokio::spawn(async move {
                for i in (w..TICKETS).step_by(clients) {
                    c.create_ticket(ticket(i)).await.expect("seed a ticket");
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("seeding");
    }
    let port = primary.port;
    let standby = tokio::task::spawn_blocking(move || Cluster::standby_of(&bin, port))
        .await
        .expect("a standby");
    let none = measure(&seeding, &primary, &standby, args).await;
    let _ = seeding.app_stop.send(());
    let read_url = standby.url("ticketd");
    let with_standby = start_with(&url, |s| s.database_read_url = vec![read_url], None).await;
    // The standby takes reads from the first replay-position check on.
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(500) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let one = measure(&with_standby, &primary, &standby, args).await;
    let _ = with_standby.app_stop.send(());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let describe = |r: &Reads| {
        format!(
            "{:.0}/s, p50 {:.1} ms, p99 {:.1} ms; CPU per 1,000 lists: primary {:.0} ms, standby {:.0} ms",
            r.per_second, r.p50, r.p99, r.primary_cpu_per_thousand, r.standby_cpu_per_thousand
        )
    };
    vec![
        Row {
            scenario: format!(
                "ListTickets (50 open tickets of {TICKETS}), {} clients, one standby",
                args.clients
            ),
            value: describe(&one),
            baseline: format!("no standby: {}", describe(&none)),
            ratio: format!("{:.2}x", one.per_second / none.per_second),
            target: "report".into(),
        },
        Row {
            scenario: "CreateTicket, then ListTickets with its consistency token, 4 clients".into(),
            value: format!(
                "p50 {:.1} ms, p99 {:.1} ms (one standby)",
                one.read_back_p50, one.read_back_p99
            ),
            baseline: format!(
                "no standby: p50 {:.1} ms, p99 {:.1} ms",
                none.read_back_p50, none.read_back_p99
            ),
            ratio: format!("{:.2}x", one.read_back_p50 / none.read_back_p50),
            target: "report".into(),
        },
    ]
}
