//! `emoflow produce`: synthetic events to a file (Kafka comes with the live service).

use std::fs::File;
use std::io::BufWriter;

use anyhow::{bail, Context};
use emoflow_ingest::generator::{Generator, GeneratorConfig};
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::ProduceArgs;

/// Generates the events with a progress bar and a closing summary.
pub fn run(args: ProduceArgs) -> anyhow::Result<()> {
    let Some(path) = args.to_file else {
        bail!("say where the events go: --to-file FILE (producing to Kafka is not built yet)");
    };
    let file = File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
    let bar = ProgressBar::new(args.events).with_style(
        ProgressStyle::with_template("{bar:40} {human_pos}/{human_len} events {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = std::time::Instant::now();
    let mut generator = Generator::new(GeneratorConfig {
        seed: args.seed,
        users: args.users,
        step_ms: args.step as f64,
        ..GeneratorConfig::default()
    });
    generator
        .write_ndjson(args.events, BufWriter::new(file), |n| bar.set_position(n))
        .with_context(|| format!("cannot write {}", path.display()))?;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "wrote {} events to {} in {secs:.2}s ({:.0} events/s)",
        args.events,
        path.display(),
        args.events as f64 / secs.max(1e-9)
    );
    Ok(())
}
