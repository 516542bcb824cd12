//! The `ticketd` binary: parses the command line, sets up logging and runs the app.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ticketd::app::{self, App};
use ticketd::config::Settings;

/// mimalloc rather than the system's allocator: a request and every event a stream sends
/// allocate and free many small buffers, across threads, which glibc's malloc serves
/// slower (see the README's benchmarks).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "ticketd",
    version,
    about = "Support-ticket service with a conversation bridge"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve gRPC (runs pending migrations first).
    Serve(Settings),
    /// Apply pending database migrations and exit.
    Migrate(Settings),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let json_logs = match &cli.command {
        Command::Serve(s) | Command::Migrate(s) => s.log_format == ticketd::config::LogFormat::Json,
    };
    let result = match cli.command {
        Command::Serve(settings) => serve(settings).await,
        Command::Migrate(settings) => {
            let _ = ticketd::telemetry::init(settings.log_format, None);
            app::open_store(&settings, ticketd::events::Bus::new())
                .await
                .map(|_| {
                    tracing::info!("migrations applied");
                })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let mut text = err.to_string();
            let mut source = std::error::Error::source(&err);
            while let Some(cause) = source {
                // Some errors repeat their cause in their own message already.
                let cause_text = cause.to_string();
                if !text.ends_with(&cause_text) {
                    text.push_str(": ");
                    text.push_str(&cause_text);
                }
                source = cause.source();
            }
            // Once: as a structured log line for collectors, or plainly for a person at
            // a terminal.
            if json_logs {
                tracing::error!(error = %text, "ticketd failed");
            } else {
                eprintln!("ticketd: {text}");
            }
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: Settings) -> Result<(), app::AppError> {
    let telemetry =
        ticketd::telemetry::init(settings.log_format, settings.otlp_endpoint.as_deref())?;
    let result = run(settings).await;
    // Whatever happened, the spans of it reach the collector.
    telemetry.shutdown();
    result
}

async fn run(settings: Settings) -> Result<(), app::AppError> {
    let app = App::build(settings).await?;
    // Handlers are installed before anything announces the server, so a SIGTERM that
    // follows the announcement always takes the graceful path.
    let shutdown = shutdown_signal();
    if let Some(secret) = app.bootstrap_secret() {
        println!(
            "\nNo admin API key existed, so one was created. It is shown only this once:\n\n    {secret}\n\n\
             Use it as `authorization: Bearer {secret}`.\n"
        );
    }
    if let Ok(addr) = app.local_addr() {
        println!("ticketd listening on {addr}");
    }
    app.run(shutdown).await
}

/// Installs SIGTERM and SIGINT handlers now; the future resolves on either signal.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    #[cfg(unix)]
    let interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt());
    async move {
        #[cfg(unix)]
        match (terminate, interrupt) {
            (Ok(mut terminate), Ok(mut interrupt)) => {
                tokio::select! {
                    _ = terminate.recv() => {}
                    _ = interrupt.recv() => {}
                }
            }
            (Err(err), _) | (_, Err(err)) => {
                tracing::warn!(error = %err, "cannot install signal handlers; falling back to ctrl-c");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}
