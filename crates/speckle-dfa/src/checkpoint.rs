//! Checkpoints of a run on disk: the trainer state (weights, optimizer moments, RNG positions)
//! plus the run's own state (epochs done, metrics so far, the resolved config, the projector's
//! identity, time and device counters spent so far).
//!
//! Layout: `DIR/checkpoint/run.json` and `DIR/checkpoint/trainer.state`. A checkpoint is
//! written into a temporary directory next to it and swapped in by renames, so a crash leaves
//! either the previous checkpoint or the new one, never a mixture.

use crate::metrics::EpochMetrics;
use crate::trainer::TrainerState;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Version of the `run.json` format.
pub const RUN_STATE_VERSION: u32 = 1;

/// The run's part of a checkpoint (`run.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    /// Format version ([`RUN_STATE_VERSION`]).
    pub version: u32,
    /// Epochs completed.
    pub epochs_done: usize,
    /// One row per completed epoch.
    pub metrics: Vec<EpochMetrics>,
    /// The resolved configuration ([`crate::config::RunConfig::to_toml`]).
    pub config_toml: String,
    /// Identity of the feedback projector (`None` for BP and FA).
    pub projector_identity: Option<String>,
    /// Wall time spent so far, seconds.
    pub wall_s: f64,
    /// Training-step time spent so far, seconds.
    pub train_s: f64,
    /// Device frames spent so far.
    pub device_frames: u64,
    /// Device time spent so far, seconds.
    pub device_time_s: f64,
}

/// A checkpoint problem.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A checkpoint file is corrupt or of another version.
    #[error("{path}: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The directory holds no checkpoint.
    #[error("{0} holds no checkpoint (nothing to resume)")]
    Missing(PathBuf),
    /// The trainer could not save or load its state.
    #[error("trainer state: {0}")]
    Trainer(#[from] crate::trainer::DfaError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, synced, then
/// renamed over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Directory of the checkpoint inside a run directory.
pub fn checkpoint_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("checkpoint")
}

fn old_dir(run_dir: &Path) -> PathBuf {
    run_dir.join(".checkpoint.old")
}

/// Saves a checkpoint into `run_dir/checkpoint`, replacing the previous one atomically.
pub fn save(run_dir: &Path, run: &RunState, trainer: &TrainerState) -> Result<(), CheckpointError> {
    let tmp = run_dir.join(format!(".checkpoint.tmp-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    let json = serde_json::to_vec_pretty(run).map_err(|e| CheckpointError::Corrupt {
        path: tmp.join("run.json"),
        message: e.to_string(),
    })?;
    let run_json = tmp.join("run.json");
    write_atomic(&run_json, &json).map_err(io(&run_json))?;
    trainer.save(&tmp.join("trainer.state"))?;
    let current = checkpoint_dir(run_dir);
    let old = old_dir(run_dir);
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(io(&old))?;
    }
    if current.exists() {
        std::fs::rename(&current, &old).map_err(io(&current))?;
    }
    std::fs::rename(&tmp, &current).map_err(io(&current))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(io(&old))?;
    }
    Ok(())
}

/// Whether `run_dir` holds a checkpoint.
pub fn exists(run_dir: &Path) -> bool {
    checkpoint_dir(run_dir).join("run.json").is_file()
        || old_dir(run_dir).join("run.json").is_file()
}

/// Loads the checkpoint of `run_dir` (the previous one if a save was interrupted mid-swap).
pub fn load(run_dir: &Path) -> Result<(RunState, TrainerState), CheckpointError> {
    let dir = [checkpoint_dir(run_dir), old_dir(run_dir)]
        .into_iter()
        .find(|d| d.join("run.json").is_file())
        .ok_or_else(|| CheckpointError::Missing(run_dir.to_path_buf()))?;
    let run_json = dir.join("run.json");
    let bytes = std::fs::read(&run_json).map_err(io(&run_json))?;
    let run: RunState = serde_json::from_slice(&bytes).map_err(|e| CheckpointError::Corrupt {
        path: run_json.clone(),
        message: e.to_string(),
    })?;
    if run.version != RUN_STATE_VERSION {
        return Err(CheckpointError::Corrupt {
            path: run_json,
            message: format!(
                "checkpoint format version {} (this build reads {RUN_STATE_VERSION})",
                run.version
            ),
        });
    }
    let trainer = TrainerState::load(&dir.join("trainer.state"))?;
    Ok((run, trainer))
}
