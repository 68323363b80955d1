//! `speckle train`: one training run from a config file (default: DFA on MNIST through the
//! simulated 8-bit OPU), with `--set section.key=value` overrides, outputs in `--out DIR`,
//! `--resume DIR` to continue an interrupted run.
use anyhow::Context;
use clap::Args;
use speckle_runs::config::RunConfig;
use speckle_runs::run::{self, Progress, RunOptions};
use std::path::PathBuf;

use super::args::SetArgs;

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Run configuration (TOML). Default: the embedded configs/mnist-dfa-opu.toml, or the
    /// config.toml of the run given to --resume.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub set: SetArgs,
    /// Output directory (default: runs/<algorithm>-<dataset>-<UTC time>). Must be absent or empty.
    #[arg(long, value_name = "DIR", conflicts_with = "resume")]
    pub out: Option<PathBuf>,
    /// Continue the run in DIR from its last checkpoint (same configuration and projector).
    #[arg(long, value_name = "DIR")]
    pub resume: Option<PathBuf>,
    /// Stop after this many epochs in total (checkpointed, resumable), whatever the config says.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub stop_after: Option<u64>,
    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,
}

pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    let config = match (&args.resume, &args.config) {
        // Resuming with no --config: the run's own resolved config, plus any --set (which
        // must leave it unchanged, or the resume is refused).
        (Some(dir), None) => {
            let path = dir.join("config.toml");
            anyhow::ensure!(
                path.is_file(),
                "cannot resume {}: no config.toml there",
                dir.display()
            );
            RunConfig::load(Some(&path), &args.set.items)?
        }
        (_, path) => RunConfig::load(path.as_deref(), &args.set.items)?,
    };
    let (out_dir, resume) = match (&args.resume, &args.out) {
        (Some(dir), _) => (dir.clone(), true),
        (None, Some(dir)) => (dir.clone(), false),
        (None, None) => (run::default_out_dir(&config), false),
    };
    let options = RunOptions {
        resume,
        progress: if args.quiet {
            Progress::Quiet
        } else {
            Progress::Bar
        },
        stop_after_epochs: args
            .stop_after
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
    };
    if !args.quiet {
        eprintln!(
            "{} {}: {} on {}, {} epochs, outputs in {}",
            if resume { "resuming" } else { "training" },
            config.run_name(),
            config.training.algorithm,
            config.data.dataset.name(),
            config.training.epochs,
            out_dir.display()
        );
    }
    let outcome = run::train_with(&config, &out_dir, &options)
        .with_context(|| format!("run {}", out_dir.display()))?;
    let s = &outcome.summary;
    let align: Vec<String> = s
        .alignment
        .iter()
        .map(|a| format!("{:.3}±{:.3}", a.cosine_mean, a.cosine_std))
        .collect();
    if outcome.completed {
        println!(
            "test accuracy {:.2}% after {} epochs | alignment [{}] | {:.1} s, {:.0} samples/s, {:.1} GFLOP/s | {}",
            100.0 * s.test_accuracy,
            s.epochs,
            align.join(", "),
            s.wall_s,
            s.samples_per_s,
            s.gflops,
            outcome.out_dir.display()
        );
    } else {
        println!(
            "stopped after {} epochs (test accuracy {:.2}%); continue with: speckle train --resume {}",
            s.epochs,
            100.0 * s.test_accuracy,
            outcome.out_dir.display()
        );
    }
    Ok(())
}
