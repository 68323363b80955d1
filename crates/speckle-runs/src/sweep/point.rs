//! What a sweep needs from a trainer, point by point: the [`PointRunner`] trait and its
//! [`PointError`].

use std::path::{Path, PathBuf};

use speckle_devices::OverrideError;
use toml::Table;

use crate::config::ConfigError;
use crate::run::RunError;

/// Why a point could not be set up, validated, trained or measured. One line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PointError {
    /// A setting of the point does not apply to the base config.
    #[error(transparent)]
    Setting(#[from] OverrideError),
    /// The resolved run config is refused.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The point's feedback device cannot be set up or measured.
    #[error(transparent)]
    Device(#[from] speckle_hal::Error),
    /// The training run failed.
    #[error(transparent)]
    Run(#[from] RunError),
    /// The folder of an attempt that stopped before its first checkpoint could not be cleared.
    #[error("cannot clear {}: {source}", path.display())]
    Clear {
        /// The run folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The run panicked (the panic's message).
    #[error("the run panicked: {0}")]
    Panicked(String),
    /// A failure of another runner (a test fake, a trainer of one's own).
    #[error(transparent)]
    Other(Box<dyn std::error::Error + Send + Sync>),
}

/// What the sweep needs from a trainer: validation of a resolved run config, one training run,
/// and the projection SNR of the run's feedback device. [`super::TrainRunner`] implements it on
/// the run layer; tests implement it with a fake.
pub trait PointRunner: Sync {
    /// Checks a resolved run config with the run config parser.
    fn validate(&self, config: &Table) -> Result<(), PointError>;

    /// Trains one point into `run_dir`, leaving `summary.json` there when done. `run_dir` does
    /// not exist unless `resume` is true: then an earlier attempt of this point left files
    /// there; continue from its checkpoint if there is one, else start again.
    fn run(&self, config: &Table, run_dir: &Path, resume: bool) -> Result<(), PointError>;

    /// Projection SNR (dB) of the point's feedback device against the ideal projection of the
    /// same matrix, or `None` when the projector is digital.
    fn snr_db(&self, config: &Table) -> Result<Option<f64>, PointError>;
}
