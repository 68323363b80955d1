//! `speckle sweep`: run a grid of training runs (or one shard of it), and `speckle sweep merge`.
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use speckle_runs::sweep::{self, Shard, SweepConfig, SweepOptions, TrainRunner};

/// Run a sweep (a grid of training runs) or merge the outputs of its shards.
///
/// Cluster use: give every array task the same --config and --out on a shared file system (or
/// its own --out, merged afterwards) and `--shard $TASK/$COUNT`, e.g. with Slurm
/// `speckle sweep --config C --out D --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT`,
/// or with GNU parallel `parallel speckle sweep --config C --out D{} --shard {}/4 ::: 0 1 2 3`
/// followed by `speckle sweep merge D0 D1 D2 D3 --out D`.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SweepArgs {
    #[command(subcommand)]
    command: Option<SweepCommand>,
    /// The sweep file (TOML: a base run config plus [grid], [[points]] or [[groups]]).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Output folder (default: sweeps/<name>, or sweeps/<name>-quick with --quick).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Run only the points whose index % N == I.
    #[arg(long, value_name = "I/N", value_parser = parse_shard)]
    shard: Option<Shard>,
    /// Runs in parallel, each on one thread (default: the number of cores).
    #[arg(long, value_name = "J")]
    jobs: Option<usize>,
    /// Apply the sweep's [quick] section (a small, fast version for tests).
    #[arg(long)]
    quick: bool,
}

#[derive(Subcommand, Debug)]
enum SweepCommand {
    /// Combine the output folders of shards of one sweep.
    Merge(MergeArgs),
}

#[derive(Args, Debug)]
struct MergeArgs {
    /// Shard output folders.
    #[arg(required = true, value_name = "DIR")]
    dirs: Vec<PathBuf>,
    /// Folder of the merged results (default: the first DIR).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

fn parse_shard(s: &str) -> Result<Shard, String> {
    s.parse()
}

/// Runs `speckle sweep`.
pub fn run(args: SweepArgs) -> anyhow::Result<()> {
    if let Some(SweepCommand::Merge(m)) = args.command {
        let out = m.out.clone().unwrap_or_else(|| m.dirs[0].clone());
        let (found, total) = sweep::merge(&m.dirs, &out)?;
        eprintln!(
            "merged {found} of {total} points into {} (results.csv, report.md)",
            out.display()
        );
        if found < total {
            eprintln!(
                "warning: {} points are not finished in any shard",
                total - found
            );
        }
        return Ok(());
    }
    let config_path = args
        .config
        .context("--config FILE is required (or use `speckle sweep merge DIR...`)")?;
    let sweep_config = SweepConfig::load(&config_path)?;
    let jobs = match args.jobs {
        Some(0) => anyhow::bail!("--jobs must be at least 1"),
        Some(j) => j,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let out = args.out.unwrap_or_else(|| {
        let suffix = if args.quick { "-quick" } else { "" };
        PathBuf::from("sweeps").join(format!("{}{suffix}", sweep_config.name))
    });
    let mut opts = SweepOptions::new(&out);
    opts.jobs = jobs;
    opts.quick = args.quick;
    opts.shard = args.shard.unwrap_or_default();
    let runner = TrainRunner::new();
    let outcome = sweep::run_sweep(&sweep_config, &opts, &runner, &|line: &str| {
        eprintln!("{line}")
    })?;
    eprintln!(
        "sweep {}: ran {}, skipped {} finished, {} failed; results in {}",
        sweep_config.name,
        outcome.ran,
        outcome.skipped,
        outcome.failed.len(),
        out.join("results.csv").display()
    );
    for (id, msg) in &outcome.failed {
        eprintln!("warning: point {id} failed: {msg}");
    }
    Ok(())
}
