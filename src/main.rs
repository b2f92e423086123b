//! `emoflow`: exact real-time analytics for reaction and activity events.
//!
//! This binary only parses the command line and wires the library crates together: `ingest`
//! (sources), `dataflow` (the views) and `query-api` (how users read them).

mod arg_values;
#[cfg(feature = "bench")]
mod bench;
mod cli;
mod cluster;
mod demo;
mod export;
mod produce;
mod query;
mod replay;
mod serve;
mod storage;

use clap::Parser;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    use std::io::IsTerminal as _;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: logs written to a file or a pipe stay plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("EMOFLOW_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Query(args) => query::run(args),
        cli::Command::Serve(args) => serve::run(args),
        cli::Command::Demo(args) => demo::run(args),
        cli::Command::Produce(args) => produce::run(args),
        cli::Command::Replay(args) => replay::run(args),
        cli::Command::Export(args) => export::run(args),
        #[cfg(feature = "bench")]
        cli::Command::Bench(args) => bench::run(args),
        #[cfg(feature = "bench")]
        cli::Command::BenchRun(args) => emoflow_bench::run::run_child(&args.spec),
        #[cfg(feature = "bench")]
        cli::Command::BenchFreshness(args) => bench::freshness(args),
        #[cfg(feature = "bench")]
        cli::Command::BenchSubscribers(args) => bench::subscribers(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
