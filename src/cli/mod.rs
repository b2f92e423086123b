//! The command line (docs/commands.md). Every flag can also be set through an `EMOFLOW_*`
//! environment variable.

mod args;
#[cfg(feature = "bench")]
mod bench;

use clap::{Parser, Subcommand};

pub use args::*;
#[cfg(feature = "bench")]
pub use bench::*;

/// Exact real-time analytics for reaction and activity events.
#[derive(Debug, Parser)]
#[command(name = "emoflow", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Compute every view over an NDJSON file, a Parquet file or an archive directory, and print
    /// them as one JSON document.
    Query(QueryArgs),
    /// Run the pipeline and the HTTP API over a Kafka topic (or the embedded broker).
    Serve(ServeArgs),
    /// Serve on the embedded broker with a synthetic load; prints the URL.
    Demo(DemoArgs),
    /// Send events (an NDJSON file or the generator) to a Kafka topic, or write them to a file.
    Produce(ProduceArgs),
    /// Compute the views over a range of a Kafka topic and print them as one JSON document;
    /// with `--archive`, also rebuild or complete the Parquet archive of that range.
    Replay(ReplayArgs),
    /// Write the archived events of a time range (and of a filter) as one Parquet file.
    Export(ExportArgs),
    /// Measure throughput, freshness and peak memory of the views for several process and
    /// worker counts.
    #[cfg(feature = "bench")]
    Bench(bench::BenchArgs),
    /// Measure freshness: produce at a steady rate and time each event until `/stats` counts it.
    #[cfg(feature = "bench")]
    BenchFreshness(bench::FreshnessArgs),
    /// Measure live push: many SSE subscribers over many filters against a running `serve`,
    /// while producing at a steady rate.
    #[cfg(feature = "bench")]
    BenchSubscribers(bench::SubscribersBenchArgs),
    /// One benchmark run, in a process of its own (used by `bench`).
    #[cfg(feature = "bench")]
    #[command(hide = true)]
    BenchRun(bench::BenchRunArgs),
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn every_flag_reads_its_environment_variable() {
        let cli = Cli::command();
        for cmd in cli.get_subcommands().filter(|c| !c.is_hide_set()) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if ["help", "version"].contains(&id) {
                    continue;
                }
                let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
                assert!(
                    env.as_deref().is_some_and(|e| e.starts_with("EMOFLOW_")),
                    "{} --{id} has no EMOFLOW_* variable",
                    cmd.get_name()
                );
            }
        }
    }

    /// Each command line is refused with an error containing its text.
    fn assert_refused(cases: &[(&[&str], &str)]) {
        for (args, says) in cases {
            let e = refused(args);
            assert!(e.contains(says), "{args:?}: {e}");
        }
    }

    fn refused(args: &[&str]) -> String {
        match Cli::try_parse_from(args) {
            Ok(cli) => panic!("{args:?} was accepted: {cli:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn senseless_values_get_a_clear_error() {
        let cases: &[(&[&str], &str)] = &[
            (&["emoflow", "produce", "--step", "0ms"], "at least 1ms"),
            (&["emoflow", "serve", "--workers", "0"], "from 1 to"),
            (&["emoflow", "serve", "--partitions", "0"], "from 1 to"),
            (&["emoflow", "serve", "--tick", "0ms"], "at least 1ms"),
            (
                &["emoflow", "serve", "--produce-timeout", "0s"],
                "at least 1ms",
            ),
            (
                &["emoflow", "query", "--input", "x", "--batch-lines", "0"],
                "at least 1",
            ),
            (&["emoflow", "demo", "--rate", "0"], "at least 1"),
            (&["emoflow", "demo", "--users", "0"], "at least 1"),
            (
                &["emoflow", "query", "--input", "x", "--window", "0s"],
                "at least 1ms",
            ),
            (
                &["emoflow", "query", "--input", "x", "--top-k", "0"],
                "from 1 to 1000",
            ),
        ];
        assert_refused(cases);
    }

    #[cfg(feature = "bench")]
    #[test]
    fn bench_flags_out_of_range_are_refused_with_their_range() {
        let cases: [(&[&str], &str); 4] = [
            (&["emoflow", "bench", "--runs", "0"], "from 1 to"),
            (&["emoflow", "bench", "--events", "0"], "at least 1"),
            (&["emoflow", "bench", "--events", "-1"], "at least 1"),
            (&["emoflow", "bench", "--workers", "1,0"], "from 1 to"),
        ];
        assert_refused(&cases);
    }

    #[cfg(feature = "bench")]
    #[test]
    fn environment_variables_are_read() {
        // Only this test sets these variables.
        std::env::set_var("EMOFLOW_BENCH_RUNS", "7");
        let cli = Cli::try_parse_from(["emoflow", "bench"]);
        std::env::remove_var("EMOFLOW_BENCH_RUNS");
        match cli.map(|c| c.command) {
            Ok(Command::Bench(b)) => assert_eq!(b.runs, 7),
            other => panic!("{other:?}"),
        }
    }
}
