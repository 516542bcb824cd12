//! The baseline: pgbench running the same transaction against the same server.

use std::time::Duration;

use crate::*;

/// `pgbench` running `bench/create_ticket.sql` with the create load's clients for the
/// run's length, plus `extra` options.
pub(crate) fn pgbench_command(args: &Args, url: &str, extra: &[&str]) -> std::process::Command {
    let mut command = std::process::Command::new(&args.pgbench);
    command
        .args(["-n", "-c", &args.clients.to_string(), "-j", "2"])
        .args(["-T", &args.seconds.to_string(), "-M", "prepared"])
        .args(extra)
        .args(["-f", SCRIPT, url]);
    command
}

/// The transaction CreateTicket commits, found wherever the bench is started from.
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/create_ticket.sql");

/// Runs `command`; its standard output if it succeeded, else `None` with the reason on
/// standard error (the row then says "pgbench unavailable").
fn run(mut command: std::process::Command) -> Option<String> {
    match command.output() {
        Ok(output) if output.status.success() => {
            Some(String::from_utf8_lossy(&output.stdout).into_owned())
        }
        Ok(output) => {
            eprintln!(
                "pgbench failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
            None
        }
        Err(err) => {
            let program = command.get_program().to_string_lossy().into_owned();
            eprintln!("pgbench could not be started ({program}): {err}");
            None
        }
    }
}

pub(crate) fn pgbench(args: &Args, url: &str) -> Option<f64> {
    run(pgbench_command(args, url, &[]))?
        .lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse().ok())
}

/// `pgbench` running the same transaction at `rate` per second in all (Poisson arrivals,
/// latency from the scheduled start): the p50 and p99 in milliseconds.
pub(crate) fn pgbench_latency(args: &Args, url: &str, rate: f64) -> Option<(f64, f64)> {
    let latencies = pgbench_at_rate(args, url, rate, args.seconds)?;
    Some((percentile(&latencies, 0.5), percentile(&latencies, 0.99)))
}

/// `pgbench` at `rate` for `seconds`: each transaction's latency, sorted (from its log).
pub(crate) fn pgbench_at_rate(
    args: &Args,
    url: &str,
    rate: f64,
    seconds: u64,
) -> Option<Vec<Duration>> {
    let dir = std::env::temp_dir().join(format!("ticketd-bench-log-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).ok()?;
    let prefix = dir.join("tx").display().to_string();
    let rate = format!("{rate:.0}");
    let seconds = seconds.to_string();
    // The later `-T` wins over the run's length.
    let extra = ["-R", &rate, "-T", &seconds, "-l", "--log-prefix", &prefix];
    let ran = run(pgbench_command(args, url, &extra));
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
    if ran.is_none() || latencies.is_empty() {
        return None;
    }
    latencies.sort();
    Some(latencies)
}
