//! `speckle sweep`: run a grid of training runs (or one shard of it), and `speckle sweep merge`.
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use speckle_runs::sweep::{self, Manifest, SweepConfig, SweepOptions, TrainRunner};

use super::scheduler::{resolve_jobs, resolve_shard, ShardArg};

/// Run a sweep (a grid of training runs) or merge the outputs of its shards.
///
/// Cluster use: give every array task the same --config and --out on a shared file system (or
/// its own --out, merged afterwards) and `--shard auto` (a Slurm job array or a Kubernetes
/// Indexed Job; templates in deploy/), or `--shard I/N`, e.g. with GNU parallel
/// `parallel speckle sweep --config C --out D{} --shard {}/4 ::: 0 1 2 3`; then
/// `speckle sweep merge D` (or `merge D0 D1 D2 D3 --out D`) writes results.csv and report.md.
/// Exits 1 when a point of the sweep (or shard) failed, after writing what finished.
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
    /// Run only the points whose index % N == I; `auto`: I and N from a Slurm job array
    /// (SLURM_ARRAY_TASK_ID, _COUNT, _MIN) or a Kubernetes Indexed Job (JOB_COMPLETION_INDEX,
    /// with N from --shards or SPECKLE_SHARDS).
    #[arg(long, value_name = "I/N|auto")]
    shard: Option<ShardArg>,
    /// Number of shards of a Kubernetes Indexed Job (its completions), with --shard auto.
    #[arg(long, value_name = "N")]
    shards: Option<usize>,
    /// Runs in parallel, each on one thread (default: SLURM_CPUS_PER_TASK when set, else the
    /// number of cores).
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
    let env = |name: &str| std::env::var(name).ok();
    let (shard, shard_from) =
        resolve_shard(args.shard, args.shards, &env).map_err(anyhow::Error::msg)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (jobs, jobs_from) = resolve_jobs(args.jobs, &env, cores).map_err(anyhow::Error::msg)?;
    let config_path = args
        .config
        .context("--config FILE is required (or use `speckle sweep merge DIR...`)")?;
    let sweep_config = SweepConfig::load(&config_path)?;
    let out = args.out.unwrap_or_else(|| {
        let suffix = if args.quick { "-quick" } else { "" };
        PathBuf::from("sweeps").join(format!("{}{suffix}", sweep_config.name))
    });
    // The shard and its points, and where they came from, for the log (printed with the sweep's
    // first line, after validation).
    let points: Vec<String> = sweep_config
        .expand(args.quick)?
        .iter()
        .filter(|p| shard.takes(p.index))
        .map(|p| format!("{} {}", p.index, p.id))
        .collect();
    let header = (shard.count > 1 || shard_from.is_some() || jobs_from.is_some()).then(|| {
        format!(
            "shard {}/{}{}: {}{}",
            shard.index,
            shard.count,
            shard_from.map_or(String::new(), |f| format!(" ({f})")),
            if shard.count > 1 {
                format!("points {}", points.join(", "))
            } else {
                format!("all {} points", points.len())
            },
            jobs_from.map_or(String::new(), |f| format!("; --jobs {jobs} ({f})")),
        )
    });
    let header = std::sync::Mutex::new(header);
    let mut opts = SweepOptions::new(&out);
    opts.jobs = jobs;
    opts.quick = args.quick;
    opts.shard = shard;
    let runner = TrainRunner::new();
    let outcome = sweep::run_sweep(&sweep_config, &opts, &runner, &|line: &str| {
        if let Some(h) = header.lock().ok().and_then(|mut h| h.take()) {
            eprintln!("{h}");
        }
        eprintln!("{line}")
    })?;
    // Every failed point of this shard: run now, or recorded by an earlier attempt.
    let manifest = Manifest::read(&out)?;
    let failed: Vec<(String, String)> = sweep::collect_results(&out, &manifest)?
        .into_iter()
        .filter(|(mp, r)| shard.takes(mp.point.index) && !r.is_ok())
        .map(|(mp, r)| (mp.point.id, r.error.unwrap_or_default()))
        .collect();
    let results = if shard.count > 1 {
        "`speckle sweep merge` of every shard's folder writes results.csv".to_string()
    } else {
        format!("results in {}", out.join("results.csv").display())
    };
    let shard_name = if shard.count > 1 {
        format!(" shard {}/{}", shard.index, shard.count)
    } else {
        String::new()
    };
    let earlier = failed.len() - outcome.failed.len().min(failed.len());
    eprintln!(
        "sweep {}{shard_name}: ran {}, skipped {} already done, {} failed{}; {results}",
        sweep_config.name,
        outcome.ran,
        outcome.skipped,
        failed.len(),
        if earlier > 0 {
            format!(" ({earlier} in an earlier attempt)")
        } else {
            String::new()
        },
    );
    for (id, msg) in &failed {
        let when = if outcome.failed.iter().any(|(f, _)| f == id) {
            ""
        } else {
            " in an earlier attempt (delete its result.json to retry)"
        };
        eprintln!("warning: point {id} failed{when}: {msg}");
    }
    if !failed.is_empty() {
        let ids: Vec<&str> = failed.iter().map(|(id, _)| id.as_str()).collect();
        anyhow::bail!(
            "{} of {} points{} failed ({}); the others' results are recorded in {}",
            failed.len(),
            outcome.selected,
            shard_name.replace(" shard", " of shard"),
            ids.join(", "),
            out.display()
        );
    }
    Ok(())
}
