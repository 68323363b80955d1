//! Sweeps: many training runs over a grid of config settings, run in parallel, sharded across
//! machines, resumed after an interruption, and summarized as `results.csv` and `report.md`.
//!
//! A sweep file names a base run config and the points to run (see [`SweepConfig`]); each point
//! is one training run in `OUT/runs/<point id>/`. The training itself comes from a
//! [`PointRunner`]: the root crate's implementation trains through the run layer with the
//! projector chosen in the config; tests use a fake.
//!
//! ```
//! use speckle_runs::sweep::SweepConfig;
//!
//! let sweep = SweepConfig::parse(r#"
//!     name = "demo"
//!     [grid]
//!     "feedback.device.camera.bits" = [4, 8]
//!     "training.seed" = [0, 1, 2]
//!     [quick.keep]
//!     "training.seed" = [0]
//! "#, std::path::Path::new("."), "demo").unwrap();
//! let points = sweep.expand(false).unwrap();
//! assert_eq!(points.len(), 6);
//! // Stable ids: the same settings give the same id, whatever the order of expansion.
//! assert_eq!(points[0].id, sweep.expand(false).unwrap()[0].id);
//! assert_eq!(sweep.expand(true).unwrap().len(), 2);
//! // An empty grid is a one-line error.
//! let err = SweepConfig::parse("[grid]\n\"training.seed\" = []", std::path::Path::new("."), "x")
//!     .unwrap_err();
//! assert!(err.to_string().contains("empty list"));
//! ```

mod config;
mod error;
mod folder;
mod point;
pub mod report;
mod runner;
mod train;

#[cfg(test)]
mod tests;

pub use config::{canonical, SweepConfig, SweepPoint};
pub use error::{FileOp, ManifestMismatch, Record, SweepError};
pub use folder::{
    Manifest, ManifestPoint, PointResult, MANIFEST_FILE, POINT_FILE, RESULT_FILE, SUMMARY_FILE,
};
pub use point::{PointError, PointRunner};
pub use runner::{
    collect_results, merge, results_csv, run_sweep, write_outputs, Shard, SweepOptions,
    SweepOutcome,
};
pub use speckle_devices::overrides::get_dotted;
pub use train::TrainRunner;
