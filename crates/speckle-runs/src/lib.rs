//! # speckle-runs
//!
//! Whole training runs around the `speckle-dfa` trainer: a TOML [`RunConfig`] (with `--set`
//! overrides), the data sets and their download, the run loop with `metrics.csv`,
//! `summary.json`, PNG plots and resumable checkpoints, sweeps of many runs, and training
//! benchmarks. The feedback projector is opened from `[feedback]` through `speckle-devices`.
//!
//! ```
//! use speckle_runs::{run, RunConfig};
//!
//! // The shipped BP config on a small slice of the bundled MNIST, with narrow layers.
//! let config = RunConfig::load(
//!     Some(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs/mnist-bp.toml"))),
//!     &[
//!         "data.train_subset=1000".into(),
//!         "data.test_subset=200".into(),
//!         "model.hidden=[32]".into(),
//!         "training.epochs=2".into(),
//!         "optimizer.lr=0.05".into(),
//!     ],
//! )?;
//! let out = tempfile::tempdir()?;
//! let outcome = run::train(&config, &out.path().join("bp"), false, run::Progress::Quiet)?;
//! assert!(outcome.summary.test_accuracy > 0.6);
//! assert!(out.path().join("bp/summary.json").is_file());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod atomic;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod lock;
pub mod metrics;
pub mod perf;
pub mod plot;
pub mod run;
pub mod sweep;
pub use config::{CheckError, CheckedRunConfig, FeedbackConfig, RunConfig};
pub use run::{
    train, train_with, train_with_projector, Progress, RunError, RunOptions, RunOutcome,
};
