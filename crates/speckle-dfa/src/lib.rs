//! # speckle-dfa
//!
//! Direct Feedback Alignment (and feedback alignment and backprop, the references) for
//! multi-layer perceptrons, with the random feedback projection B·e computed by any
//! [`speckle_hal::RandomProjector`]: the ideal digital Gaussian projector, the simulated
//! optical processing unit or a real device. Alignment between the delivered signal and the
//! true backprop gradient is measured once per epoch.
//!
//! Layers of the crate:
//! * [`spec`], [`trainer`]: the numerical core ([`Trainer`]: one optimizer step per batch,
//!   evaluation, alignment, exact state for checkpoints);
//! * [`data`]: MNIST, Fashion-MNIST and CIFAR-10 readers and the downloader;
//! * [`config`], [`run`], [`metrics`], [`plot`], [`checkpoint`]: a whole run from a TOML
//!   [`RunConfig`] (with `--set`-style overrides, [`apply_override`]) to `metrics.csv`,
//!   `summary.json`, PNG plots and resumable checkpoints.
//!
//! A run trains with whatever projector the caller's factory builds (the `speckle` binary
//! maps `feedback.projector` SPEC strings to devices). Backprop needs none:
//!
//! ```
//! use speckle_dfa::{run, FeedbackConfig, RunConfig};
//! use speckle_hal::{Error, RandomProjector};
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
//! let no_projector = |_: &FeedbackConfig, _: usize, _: usize| -> Result<Box<dyn RandomProjector + Send>, Error> {
//!     unreachable!("backprop uses no feedback projector")
//! };
//! let out = tempfile::tempdir()?;
//! let outcome = run::train(&config, &out.path().join("bp"), false, &no_projector, run::Progress::Quiet)?;
//! assert!(outcome.summary.test_accuracy > 0.6);
//! assert!(out.path().join("bp/summary.json").is_file());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

// runs engineer: data, config, runs
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod metrics;
pub mod plot;
pub mod run;
pub use config::{apply_override, FeedbackConfig, RunConfig};
pub use run::{train, train_with, Progress, ProjectorFactory, RunError, RunOptions, RunOutcome};

// sweeps engineer: grids of runs, shards, results and reports
pub mod sweep;

// numerics engineer: model, training algorithms, optimizers, alignment, trainer state
pub mod activation;
mod alignment;
mod linalg;
mod model;
pub mod optim;
pub mod perf;
pub mod spec;
pub mod trainer;
pub use spec::{
    Activation, AlgorithmKind, AlgorithmSpec, Init, ModelSpec, OptimizerKind, OptimizerSpec,
    Schedule,
};
pub use trainer::{
    DfaError, EvalStats, LayerAlignment, StateMeta, StepStats, Trainer, TrainerState,
};
