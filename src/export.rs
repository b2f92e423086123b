//! `emoflow export`: archived events of a time range as one Parquet file, with a progress bar;
//! `--views` adds the views over them as Parquet tables.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use emoflow_dataflow::{parse_filter_list, run_views, FilterSpec, InputData, RunOptions};
use emoflow_ingest::parquet_source::ParquetInput;
use emoflow_storage::export::{export_events, write_view_tables, ExportRequest};
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::ExportArgs;

/// One filter from `--filter`: a file holding one filter (or an array of one), or that JSON
/// itself.
fn parse_filter(arg: &str) -> anyhow::Result<FilterSpec> {
    let path = Path::new(arg);
    let text = if path.is_file() {
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the filter {}", path.display()))?
    } else if arg.trim_start().starts_with(['{', '[']) {
        arg.to_owned()
    } else {
        bail!(
            "--filter {arg:?} is neither a file nor a JSON filter (such as '{{\"emojis\":[\"🔥\"]}}')"
        );
    };
    let list = if text.trim_start().starts_with('[') {
        text
    } else {
        format!("[{text}]")
    };
    let mut filters = parse_filter_list(&list).context("in --filter")?;
    if filters.len() != 1 {
        bail!("--filter takes one filter, not {}", filters.len());
    }
    Ok(filters.remove(0).1)
}

/// Runs the export.
pub fn run(args: ExportArgs) -> anyhow::Result<()> {
    let archive = args
        .archive_dir
        .clone()
        .unwrap_or_else(|| args.data_dir.join("archive"));
    if !archive.exists() {
        bail!("there is no archive at {}", archive.display());
    }
    let filter = args.filter.as_deref().map(parse_filter).transpose()?;
    let cfg = args.view_args.config();
    cfg.validate()?;
    let req = ExportRequest {
        archive,
        from_ms: args.from.unwrap_or(i64::MIN),
        to_ms: args.to.unwrap_or(i64::MAX),
        filter,
        out: args.out.clone(),
    };
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("{bar:40} {human_pos}/{human_len} rows {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let summary = export_events(&req, |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    });
    bar.finish_and_clear();
    let summary = summary.map_err(anyhow::Error::msg)?;
    for p in &summary.problems {
        eprintln!("warning: {p}");
    }
    eprintln!(
        "exported {} events to {} ({} bytes); read {} rows in {} row groups of {} files, {} row groups skipped by their time range",
        summary.rows_exported,
        args.out.display(),
        summary.bytes,
        summary.rows_scanned,
        summary.row_groups_read,
        summary.files,
        summary.row_groups_pruned
    );
    if args.views {
        let input = ParquetInput::open(&args.out)?;
        let out = run_views(
            InputData::Parquet(Arc::new(input)),
            RunOptions {
                workers: 2,
                views: cfg,
                ..RunOptions::default()
            },
            None,
            None,
        )?;
        let state = out.state.context("the run returned no views")?;
        let written = write_view_tables(&state, &cfg, &args.out).map_err(anyhow::Error::msg)?;
        for path in written {
            eprintln!("wrote {}", path.display());
        }
    }
    Ok(())
}
