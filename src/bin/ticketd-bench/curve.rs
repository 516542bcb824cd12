//! The load curve: CreateTicket and pgbench's same transaction, each offered 10 % to
//! 110 % of its own measured maximum as Poisson arrivals; p50 and p99 latency against the
//! throughput achieved, written as JSON and drawn as an SVG. Beside it, the cost of 10,000
//! idle watchers.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use crate::*;

/// Seconds each point of the curve runs.
const POINT_SECONDS: u64 = 4;

#[derive(Debug, Clone, serde::Serialize)]
struct Point {
    offered: f64,
    achieved: f64,
    p50_ms: f64,
    p99_ms: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
struct Series {
    name: String,
    maximum: f64,
    points: Vec<Point>,
}

/// pgbench at `rate` for [`POINT_SECONDS`]: what it achieved, p50 and p99.
fn pgbench_point(args: &Args, url: &str, rate: f64) -> Option<Point> {
    let latencies = pgbench_at_rate(args, url, rate, POINT_SECONDS)?;
    Some(Point {
        offered: rate,
        achieved: latencies.len() as f64 / POINT_SECONDS as f64,
        p50_ms: percentile(&latencies, 0.5),
        p99_ms: percentile(&latencies, 0.99),
    })
}

async fn ticketd_point(server: &Server, clients: usize, rate: f64) -> Point {
    let client = server.client();
    let (achieved, latencies) = load(
        clients,
        POINT_SECONDS,
        Some(rate / clients as f64),
        move |i| {
            let mut client = client.clone();
            async move { client.create_ticket(ticket(i)).await.is_ok() }
        },
    )
    .await;
    Point {
        offered: rate,
        achieved,
        p50_ms: percentile(&latencies, 0.5),
        p99_ms: percentile(&latencies, 0.99),
    }
}

/// Sweeps both, writes `target/bench/load-curve.{json,svg}`, and returns the rows.
pub(crate) async fn load_curve(args: &Args) -> Vec<Row> {
    let (name, url) = fresh_database(args).await;
    let server = start(&url).await;
    create_throughput(&server, args.clients, 2, None).await;
    let (ticketd_max, _) = create_throughput(&server, args.clients, args.seconds, None).await;
    let pgbench_max = pgbench(args, &url).unwrap_or(0.0);
    let steps: Vec<f64> = (1..=11).map(|n| f64::from(n) / 10.0).collect();
    let mut ticketd = Series {
        name: "CreateTicket (ticketd)".into(),
        maximum: ticketd_max,
        points: Vec::new(),
    };
    let mut baseline = Series {
        name: "pgbench, the same transaction".into(),
        maximum: pgbench_max,
        points: Vec::new(),
    };
    for step in &steps {
        ticketd
            .points
            .push(ticketd_point(&server, args.clients, ticketd_max * step).await);
        if pgbench_max > 0.0
            && let Some(point) = pgbench_point(args, &url, pgbench_max * step)
        {
            baseline.points.push(point);
        }
    }
    let idle = idle_watchers_cost(&server, args, 10_000).await;
    let memory = idle_stream_memory(&url, 10_000).await;
    let _ = server.app_stop.send(());
    drop_database(args, &name).await;

    let series = vec![ticketd.clone(), baseline.clone()];
    let _ = std::fs::create_dir_all("target/bench");
    let _ = std::fs::write(
        "target/bench/load-curve.json",
        serde_json::to_string_pretty(&series).unwrap_or_default(),
    );
    let _ = std::fs::write("target/bench/load-curve.svg", svg(&series));

    let at = |s: &Series, step: f64| {
        s.points
            .iter()
            .find(|p| (p.offered - s.maximum * step).abs() < 1.0)
            .map_or("-".to_owned(), |p| {
                format!(
                    "{:.0}/s: p50 {:.1} ms, p99 {:.1} ms",
                    p.achieved, p.p50_ms, p.p99_ms
                )
            })
    };
    let mut rows = vec![Row {
        scenario: "Load curve (target/bench/load-curve.svg), maximum".into(),
        value: format!("{ticketd_max:.0}/s"),
        baseline: format!("pgbench {pgbench_max:.0} tps"),
        ratio: format!("{:.2}x", ticketd_max / pgbench_max),
        target: "report".into(),
    }];
    for step in [0.5, 0.9, 1.1] {
        rows.push(Row {
            scenario: format!("Load curve at {:.0} % of each maximum", step * 100.0),
            value: at(&ticketd, step),
            baseline: format!("pgbench {}", at(&baseline, step)),
            ratio: "-".into(),
            target: "report".into(),
        });
    }
    rows.push(idle);
    rows.push(Row {
        scenario: "idle watch streams, 10000, server process alone".into(),
        value: memory.map_or("unavailable".into(), |(before, after)| {
            format!(
                "{:.1} KiB per stream",
                after.saturating_sub(before) as f64 / 10_000.0
            )
        }),
        baseline: memory.map_or("-".into(), |(before, _)| format!("RSS {before} KiB with 0")),
        ratio: "-".into(),
        target: "<= 64 KiB".into(),
    });
    rows
}

/// CreateTicket with `count` idle watchers attached (their filter names a ticket that
/// never exists), against the load without them right before and after.
async fn idle_watchers_cost(server: &Server, args: &Args, count: usize) -> Row {
    let (before, _) = create_throughput(server, args.clients, args.seconds, None).await;
    let nobody = uuid::Uuid::new_v4();
    let received = Arc::new(std::sync::atomic::AtomicU64::new(0));
    // Watchers on connections of their own, as remote clients would be, 1,000 each.
    let mut channels = Vec::new();
    for _ in 0..count.div_ceil(1000) {
        channels.push(
            tonic::transport::Channel::from_shared(format!("http://{}", server.addr))
                .expect("uri")
                .connect()
                .await
                .expect("connect"),
        );
    }
    let idle = live_watchers_on(
        server,
        &channels,
        count,
        &format!(r#"ticket_id = "{nobody}""#),
        received.clone(),
    )
    .await;
    let (with, _) = create_throughput(server, args.clients, args.seconds, None).await;
    for w in idle {
        w.abort();
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (after, _) = create_throughput(server, args.clients, args.seconds, None).await;
    let without = (before + after) / 2.0;
    Row {
        scenario: format!("CreateTicket with {count} idle watchers"),
        value: format!("{with:.0}/s"),
        baseline: format!("{without:.0}/s without ({before:.0} before, {after:.0} after)"),
        ratio: format!("{:.2}x", with / without),
        target: ">= 0.9x".into(),
    }
}

/// Latency (log scale) against throughput: p50 solid, p99 dashed, one colour per series.
fn svg(series: &[Series]) -> String {
    const W: f64 = 760.0;
    const H: f64 = 460.0;
    const LEFT: f64 = 70.0;
    const RIGHT: f64 = 20.0;
    const TOP: f64 = 40.0;
    const BOTTOM: f64 = 60.0;
    let points = series.iter().flat_map(|s| &s.points);
    let max_x = points.clone().map(|p| p.achieved).fold(1.0_f64, f64::max) * 1.05;
    let latencies = points
        .flat_map(|p| [p.p50_ms, p.p99_ms])
        .filter(|v| v.is_finite() && *v > 0.0);
    let (low, high) = latencies.fold((f64::INFINITY, 0.0_f64), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    let (low, high) = if high > 0.0 {
        (
            10f64.powf(low.log10().floor()),
            10f64.powf(high.log10().ceil()),
        )
    } else {
        (0.1, 100.0)
    };
    let x = |v: f64| LEFT + v / max_x * (W - LEFT - RIGHT);
    let y = |v: f64| {
        let v = v.clamp(low, high);
        TOP + (high.log10() - v.log10()) / (high.log10() - low.log10()) * (H - TOP - BOTTOM)
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="14">CreateTicket vs pgbench (same transaction): latency against throughput</text>"#,
        W / 2.0
    );
    // Axes, grid and labels.
    let mut decade = low;
    while decade <= high * 1.0001 {
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{decade} ms</text>"##,
            W - RIGHT,
            LEFT - 6.0,
            y(decade) + 4.0,
            y = y(decade)
        );
        decade *= 10.0;
    }
    for n in 0..=5 {
        let v = max_x * f64::from(n) / 5.0;
        let _ = writeln!(
            out,
            r##"<line x1="{x:.1}" x2="{x:.1}" y1="{TOP}" y2="{}" stroke="#eee"/><text x="{x:.1}" y="{}" text-anchor="middle">{v:.0}/s</text>"##,
            H - BOTTOM,
            H - BOTTOM + 16.0,
            x = x(v)
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">throughput achieved (offered 10 % to 110 % of each maximum)</text>"#,
        (LEFT + W - RIGHT) / 2.0,
        H - 18.0
    );
    let colours = ["#1f77b4", "#d62728"];
    for (n, s) in series.iter().enumerate() {
        let colour = colours[n % colours.len()];
        for (dash, pick) in [("", 0usize), (r#" stroke-dasharray="6 4""#, 1)] {
            let path: Vec<String> = s
                .points
                .iter()
                .map(|p| {
                    let v = if pick == 0 { p.p50_ms } else { p.p99_ms };
                    format!("{:.1},{:.1}", x(p.achieved), y(v))
                })
                .collect();
            let _ = writeln!(
                out,
                r#"<polyline fill="none" stroke="{colour}" stroke-width="2"{dash} points="{}"/>"#,
                path.join(" ")
            );
        }
        let legend_y = TOP + 14.0 + 18.0 * n as f64;
        let _ = writeln!(
            out,
            r#"<line x1="{}" x2="{}" y1="{legend_y}" y2="{legend_y}" stroke="{colour}" stroke-width="2"/><text x="{}" y="{}">{} (p50 solid, p99 dashed; max {:.0}/s)</text>"#,
            LEFT + 10.0,
            LEFT + 40.0,
            LEFT + 46.0,
            legend_y + 4.0,
            s.name,
            s.maximum
        );
    }
    out.push_str("</svg>\n");
    out
}
