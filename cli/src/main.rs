//! `hubcat`: pipe events into Azure Event Hubs and read them back, look at a hub, or run
//! a local Event Hubs emulator.
#![forbid(unsafe_code)]

use std::process::ExitCode;

mod config_file;
mod demo;
mod emulator;
mod health;
mod hub;
mod info;
mod progress;
mod send;
mod spool;
mod tail;
mod ui;

use clap::{Parser, Subcommand};
use eventhubs_emulator::Fault;

#[derive(Debug, Parser)]
#[command(name = "hubcat", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the Event Hubs emulator until SIGINT or SIGTERM.
    ///
    /// When it is ready it prints its connection strings to stdout, one a line, and
    /// then logs only to stderr: the plain AMQP listener's first, then those of
    /// --tls-bind, --ws-bind and --wss-bind, in that order, each only if given. Then,
    /// as Microsoft's emulator does, it serves `GET /health` (see --health-bind) and
    /// writes `Emulator Service is Successfully Up!` to stderr.
    Emulator(emulator::EmulatorArgs),
    /// Publish newline-delimited events from stdin (each line is a body).
    ///
    /// Progress goes to stderr, and a summary at the end; the exit status is 0 only if
    /// every line was published.
    Send(send::SendArgs),
    /// Run the whole job in one process: an embedded emulator, generated events
    /// streamed through the producer, a live progress bar, and a summary checked against
    /// what the hub stored.
    Demo(demo::DemoArgs),
    /// Read events back from a hub's partitions to stdout, oldest first in each
    /// partition (partitions interleave).
    ///
    /// By default it reads every partition from its oldest retained event to the last
    /// one it held at the start, then stops; `--follow` keeps waiting for more.
    Tail(tail::TailArgs),
    /// Show the hub's properties and each partition's: sequence numbers, retained
    /// events, last offset and enqueue time.
    Info(info::InfoArgs),
}

/// An error with its causes, `outer: cause: root cause`, for one line on stderr.
pub(crate) fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

pub(crate) fn parse_fault(s: &str) -> Result<Fault, String> {
    s.parse::<Fault>().map_err(|e| e.to_string())
}

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `RUST_LOG` takes `target=level` directives (`info`, `hubcat=debug,warn`); the
    // `Targets` filter parses them without the regex engine `EnvFilter` would bring in.
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO));
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(progress::escapes()),
        )
        .with(filter)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hubcat: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async {
        match cli.command {
            Command::Emulator(args) => emulator::run(args).await,
            Command::Send(args) => send::run(args).await,
            Command::Demo(args) => demo::run(args).await,
            Command::Tail(args) => tail::run(args).await,
            Command::Info(args) => info::run(args).await,
        }
    });
    // Do not wait for blocking work left behind: a read of stdin that `hubcat send`
    // stopped on a signal stays blocked until its writer closes the pipe.
    runtime.shutdown_background();
    code
}

/// A future that resolves at SIGINT or SIGTERM (Ctrl-C elsewhere) with the signal's
/// name. The handlers are installed when this is called, so a signal that comes before
/// the future is first polled is not lost.
pub(crate) fn stop_signal() -> impl std::future::Future<Output = &'static str> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            match (interrupt, terminate) {
                (Ok(mut int), Ok(mut term)) => {
                    tokio::select! {
                        _ = int.recv() => "SIGINT",
                        _ = term.recv() => "SIGTERM",
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                    "SIGINT"
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}
