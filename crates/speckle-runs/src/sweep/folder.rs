//! The sweep's output folder: `sweep.json` (the [`Manifest`]), and for each point `point.json`
//! and `result.json` (a [`PointResult`]) next to its run's files, written atomically.
//!
//! ```
//! use speckle_runs::sweep::{PointResult, RESULT_FILE};
//!
//! let dir = tempfile::tempdir()?;
//! std::fs::write(
//!     dir.path().join("summary.json"),
//!     r#"{"test_accuracy": 0.9, "alignment": [{"cosine_mean": 0.5, "cosine_std": 0.1}]}"#,
//! )?;
//! let result = PointResult::from_summary(dir.path(), Some(20.0))?;
//! assert!(result.is_ok());
//! assert_eq!((result.test_accuracy, result.alignment), (Some(0.9), vec![(0.5, 0.1)]));
//! assert_eq!(RESULT_FILE, "result.json");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};
use speckle_devices::overrides::get_dotted;
use toml::{Table, Value};

use super::config::{SweepConfig, SweepPoint};
use super::error::{FileOp, Record, SweepError};
use super::point::PointRunner;
use crate::atomic;

/// File that marks a finished training run (written by the run layer).
pub const SUMMARY_FILE: &str = "summary.json";
/// The sweep's own record of a finished (or failed) point, next to the run's files.
pub const RESULT_FILE: &str = "result.json";
/// The point's settings, written when its run ends.
pub const POINT_FILE: &str = "point.json";
/// The sweep manifest at the top of an output folder.
pub const MANIFEST_FILE: &str = "sweep.json";

/// A point of the manifest: the point and its value in every swept column (from the point's
/// settings, else from the resolved config; absent when neither has it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestPoint {
    /// The point.
    pub point: SweepPoint,
    /// Column → value.
    pub values: BTreeMap<String, Value>,
}

/// `sweep.json`: what the folder's sweep is. Shards of one sweep have equal manifests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version.
    pub format: u32,
    /// Sweep name.
    pub name: String,
    /// Sweep description.
    pub description: String,
    /// Whether `[quick]` was applied.
    pub quick: bool,
    /// Fingerprint of the base run config.
    pub base_hash: String,
    /// Whether the sweep has groups (then results have a `group` column).
    pub grouped: bool,
    /// Label columns.
    pub labels: Vec<String>,
    /// Swept columns (labels first), in results order.
    pub columns: Vec<String>,
    /// Parameters the report plots against (`None`: all swept columns).
    pub report_params: Option<Vec<String>>,
    /// Every point of the full sweep (not only this shard's).
    pub points: Vec<ManifestPoint>,
}

impl Manifest {
    /// Builds the manifest of a sweep, resolving and validating every point's config.
    /// Returns it with the resolved configs, in point order.
    pub fn build(
        sweep: &SweepConfig,
        quick: bool,
        runner: &dyn PointRunner,
    ) -> Result<(Self, Vec<Table>), SweepError> {
        let points = sweep.expand(quick)?;
        let columns = sweep.swept_keys(&points);
        let mut configs = Vec::with_capacity(points.len());
        let mut mpoints = Vec::with_capacity(points.len());
        for p in points {
            let config = p.resolve(&sweep.base)?;
            runner
                .validate(&config)
                .map_err(|source| SweepError::Point {
                    index: p.index,
                    settings: p.describe(),
                    source,
                })?;
            let values = columns
                .iter()
                .filter_map(|c| {
                    p.get(c)
                        .or_else(|| get_dotted(&config, c))
                        .map(|v| (c.clone(), v.clone()))
                })
                .collect();
            configs.push(config);
            mpoints.push(ManifestPoint { point: p, values });
        }
        Ok((
            Self {
                format: 1,
                name: sweep.name.clone(),
                description: sweep.description.clone(),
                quick,
                base_hash: sweep.base_hash(),
                grouped: mpoints.iter().any(|p| p.point.group.is_some()),
                labels: sweep.labels.clone(),
                columns,
                report_params: sweep.report_params.clone(),
                points: mpoints,
            },
            configs,
        ))
    }

    /// Reads `DIR/sweep.json`.
    pub fn read(dir: &Path) -> Result<Self, SweepError> {
        let path = dir.join(MANIFEST_FILE);
        let text = fs::read_to_string(&path).map_err(SweepError::io(FileOp::Read, &path))?;
        serde_json::from_str(&text).map_err(|source| SweepError::Corrupt {
            record: Record::Manifest,
            path,
            source,
        })
    }
}

/// Outcome of one point in a sweep's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointResult {
    /// `ok` or `failed`.
    pub status: String,
    /// The error of a failed point.
    #[serde(default)]
    pub error: Option<String>,
    /// Final test accuracy (fraction).
    #[serde(default)]
    pub test_accuracy: Option<f64>,
    /// Final (cosine mean, cosine std) per hidden layer, input side first.
    #[serde(default)]
    pub alignment: Vec<(f64, f64)>,
    /// Projection SNR of the feedback device in dB (`None`: digital projector).
    #[serde(default)]
    pub snr_db: Option<f64>,
    /// Device frames spent by the run's feedback projector.
    #[serde(default)]
    pub device_frames: Option<u64>,
    /// Device time of those frames, seconds.
    #[serde(default)]
    pub device_time_s: Option<f64>,
    /// Wall time of the run, seconds (not in results.csv, which is deterministic).
    #[serde(default)]
    pub wall_s: Option<f64>,
}

impl PointResult {
    /// Reads the metrics of a finished run from its `summary.json`.
    pub fn from_summary(run_dir: &Path, snr_db: Option<f64>) -> Result<Self, SweepError> {
        let path = run_dir.join(SUMMARY_FILE);
        let text = fs::read_to_string(&path).map_err(SweepError::io(FileOp::Read, &path))?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|source| SweepError::Corrupt {
                record: Record::Summary,
                path: path.clone(),
                source,
            })?;
        let f = |key: &str| v.get(key).and_then(|x| x.as_f64());
        let alignment = v
            .get("alignment")
            .and_then(|a| a.as_array())
            .map(|layers| {
                layers
                    .iter()
                    .map(|l| {
                        (
                            l.get("cosine_mean")
                                .and_then(|x| x.as_f64())
                                .unwrap_or(f64::NAN),
                            l.get("cosine_std")
                                .and_then(|x| x.as_f64())
                                .unwrap_or(f64::NAN),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self {
            status: "ok".into(),
            error: None,
            test_accuracy: f("test_accuracy"),
            alignment,
            snr_db: snr_db.filter(|s| s.is_finite()),
            device_frames: v.get("device_frames").and_then(|x| x.as_u64()),
            device_time_s: f("device_time_s"),
            wall_s: f("wall_s"),
        })
    }

    pub(super) fn failed(error: String) -> Self {
        Self {
            status: "failed".into(),
            error: Some(error),
            test_accuracy: None,
            alignment: Vec::new(),
            snr_db: None,
            device_frames: None,
            device_time_s: None,
            wall_s: None,
        }
    }

    /// Whether the run finished.
    pub fn is_ok(&self) -> bool {
        self.status == "ok"
    }
}

/// Writes a file of the sweep folder atomically ([`crate::atomic`]).
pub(super) fn write_file(path: &Path, bytes: &[u8]) -> Result<(), SweepError> {
    atomic::write_atomic(path, bytes).map_err(SweepError::io(FileOp::Write, path))
}

/// Writes a record as pretty JSON, atomically.
pub(super) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), SweepError> {
    let text = serde_json::to_string_pretty(value).map_err(|source| SweepError::Encode {
        path: path.to_path_buf(),
        source,
    })?;
    write_file(path, text.as_bytes())
}

/// Reads a point's `result.json`; `None` when the point has none yet.
pub(super) fn read_result(run_dir: &Path) -> Result<Option<PointResult>, SweepError> {
    let path = run_dir.join(RESULT_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|source| SweepError::Corrupt {
                record: Record::Result,
                path,
                source,
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(SweepError::io(FileOp::Read, &path)(e)),
    }
}

/// Writes a file of the sweep folder unless it exists, atomically even when several processes
/// (shards sharing the folder) try at once ([`atomic::create_once`]); whether this call wrote
/// it.
pub(super) fn create_once(path: &Path, bytes: &[u8]) -> Result<bool, SweepError> {
    atomic::create_once(path, bytes).map_err(SweepError::io(FileOp::Write, path))
}

/// Creates a folder and its parents.
pub(super) fn mkdir(dir: &Path) -> Result<(), SweepError> {
    fs::create_dir_all(dir).map_err(SweepError::io(FileOp::Create, dir))
}

/// Hidden layers reported: the most any finished point has.
pub fn layer_count(rows: &[(ManifestPoint, PointResult)]) -> usize {
    rows.iter()
        .map(|(_, r)| r.alignment.len())
        .max()
        .unwrap_or(0)
}
