//! Load generation: closed-loop or Poisson arrivals, latency percentiles, throughput.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use crate::*;

/// Runs `clients` loops of `call` for `seconds`; returns calls per second and the sorted
/// latencies of the calls that succeeded.
///
/// With `per_client_rate`, each client is an open-loop arrival process: calls are scheduled
/// at exponentially distributed intervals (Poisson arrivals, as `pgbench --rate` schedules
/// them), and a call's latency counts from its scheduled start, so a server that falls
/// behind is charged for the wait too. Without it, each client calls back to back.
pub(crate) async fn load<F, Fut>(
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
    let mut arrivals = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (call, counter, latencies) = (call.clone(), counter.clone(), latencies.clone());
        let mut scheduled = per_client_rate.map(|_| {
            let (send, receive) = tokio::sync::mpsc::unbounded_channel::<Instant>();
            arrivals.push(send);
            receive
        });
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let start = match &mut scheduled {
                    Some(scheduled) => match scheduled.recv().await {
                        Some(at) => at,
                        None => break,
                    },
                    None => Instant::now(),
                };
                // Like `pgbench -T`, nothing starts after the deadline: arrivals still
                // queued then are dropped, not run late.
                if start >= deadline || Instant::now() >= deadline {
                    break;
                }
                let i = counter.fetch_add(1, Ordering::Relaxed);
                if call(i).await {
                    mine.push(start.elapsed());
                }
            }
            latencies.lock().await.extend(mine);
        }));
    }
    match per_client_rate.filter(|r| r.is_finite() && *r > 0.0) {
        Some(rate) => drop(std::thread::spawn(move || pace(arrivals, rate, deadline))),
        // No arrivals at all: the clients' channels close and they stop at once.
        None => drop(arrivals),
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

/// Hands each client its Poisson arrivals at their times, from a thread of its own.
///
/// The thread sleeps with the operating system's timer, to tens of microseconds, as
/// `pgbench --rate` does. Tokio's timer rounds every sleep up to a whole millisecond, and
/// since latency counts from the scheduled start, up to a millisecond of lateness would
/// be charged to the server on every call.
fn pace(clients: Vec<tokio::sync::mpsc::UnboundedSender<Instant>>, rate: f64, deadline: Instant) {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    // 1 - U is in (0, 1], so the logarithm is finite.
    let gap = || Duration::from_secs_f64(-(1.0 - fastrand::f64()).ln() / rate);
    let start = Instant::now();
    let mut due: BinaryHeap<_> = (0..clients.len())
        .map(|client| Reverse((start + gap(), client)))
        .collect();
    while let Some(Reverse((at, client))) = due.pop() {
        if at >= deadline {
            // Every later arrival is later still; the clients stop as their channels close.
            break;
        }
        if let Some(wait) = at.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        if clients[client].send(at).is_ok() {
            due.push(Reverse((at + gap(), client)));
        }
    }
}

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index].as_secs_f64() * 1000.0
}

/// The resident set of process `pid`, in KiB.
pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The CPU time this process has used so far, user and system (from `/proc/self/stat`,
/// whose counts are in clock ticks, `USER_HZ`: 1/100 s on Linux's x86 and arm64).
pub(crate) fn process_cpu() -> Option<Duration> {
    cpu_of("/proc/self/stat")
}

/// CPU time a process has used so far, from its `stat` file under `/proc`.
fn cpu_of(stat: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(stat).ok()?;
    // The fields after the command name (which may hold spaces) start at field 3, so
    // utime and stime, fields 14 and 15, are the 12th and 13th.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// CPU time the whole machine has spent so far outside idle and I/O wait, over all cores
/// (from the first line of `/proc/stat`, in clock ticks as [`process_cpu`] reads them):
/// with the machine otherwise quiet, the database's share is what it adds to ours.
pub(crate) fn machine_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // user, nice, system, idle, iowait, irq, softirq, steal (guest time is within user).
    let busy: u64 = [0, 1, 2, 5, 6, 7]
        .iter()
        .map(|&i| fields.get(i).copied())
        .sum::<Option<u64>>()?;
    Some(Duration::from_millis(busy * 10))
}

/// CPU time used so far by this process and, when ticketd serves from a child process,
/// by that child: (both together, the child alone).
fn bench_cpu(server: &Server) -> (Option<Duration>, Option<Duration>) {
    match server.pid {
        None => (process_cpu(), None),
        Some(pid) => {
            let child = cpu_of(&format!("/proc/{pid}/stat"));
            (process_cpu().zip(child).map(|(a, b)| a + b), child)
        }
    }
}

pub(crate) struct Row {
    pub(crate) scenario: String,
    pub(crate) value: String,
    pub(crate) baseline: String,
    pub(crate) ratio: String,
    pub(crate) target: String,
}

pub(crate) async fn create_throughput(
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

/// Closed-loop creates as [`create_throughput`] makes them: calls per second, and the
/// CPU time spent per call by the server, its clients and any watchers it holds (the
/// database's work is outside it).
pub(crate) async fn creates_with_cpu(
    server: &Server,
    clients: usize,
    seconds: u64,
) -> (f64, CpuPerCreate) {
    let (before, machine_before) = (bench_cpu(server), machine_cpu());
    let rate = create_throughput(server, clients, seconds, None).await.0;
    let (after, machine_after) = (bench_cpu(server), machine_cpu());
    let calls = rate * seconds as f64;
    let per_create = |before, after| micros_per_call(before, after, calls);
    let cpu = CpuPerCreate {
        all: per_create(before.0, after.0),
        server: per_create(before.1, after.1),
        machine: per_create(machine_before, machine_after),
    };
    (rate, cpu)
}

/// The CPU time between two readings, in µs per call (`None` if either reading failed or
/// there were no calls).
pub(crate) fn micros_per_call(
    before: Option<Duration>,
    after: Option<Duration>,
    calls: f64,
) -> Option<f64> {
    match (before, after) {
        (Some(before), Some(after)) if calls > 0.0 => {
            Some((after - before).as_secs_f64() * 1e6 / calls)
        }
        _ => None,
    }
}

/// CPU per create in µs: of server and clients together, of the server alone when it runs
/// in a process of its own, and of the machine (`None` when not known, or when `/proc`
/// cannot be read).
pub(crate) struct CpuPerCreate {
    pub(crate) all: Option<f64>,
    pub(crate) server: Option<f64>,
    /// Of the whole machine: the database's work too.
    pub(crate) machine: Option<f64>,
}

/// The median of alternating turns' results, and the results in the order measured
/// (for the row's text); NaN for none.
pub(crate) fn turns(values: &[f64]) -> (f64, String) {
    let measured: Vec<String> = values.iter().map(|v| format!("{v:.0}")).collect();
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let median = match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => sorted[n / 2],
        _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    };
    (median, measured.join(", "))
}
