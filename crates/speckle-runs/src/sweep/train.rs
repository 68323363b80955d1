//! The [`PointRunner`] that trains each point through the run layer ([`crate::run::train`]),
//! with the feedback device that each point's `[feedback]` names (opened, checked and measured
//! through `speckle-devices`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use toml::Table;

use super::point::{PointError, PointRunner};
use crate::checkpoint;
use crate::config::{CheckedRunConfig, RunConfig};
use crate::run::{self, Progress};
use speckle_dfa::AlgorithmKind;

/// Trains sweep points with the run layer. The SNR of each distinct `[feedback]` section is
/// measured once and cached.
#[derive(Default)]
pub struct TrainRunner {
    snr_cache: Mutex<HashMap<String, Option<f64>>>,
}

impl TrainRunner {
    /// A runner with an empty SNR cache.
    pub fn new() -> Self {
        Self::default()
    }
}

fn parse(config: &Table) -> Result<CheckedRunConfig, PointError> {
    Ok(RunConfig::from_table(config.clone(), "sweep point")?)
}

/// Input (classes) and output (widest hidden layer, or the sum with per-layer feedback)
/// dimensions of a run's feedback projector.
fn feedback_dims(config: &RunConfig) -> (usize, usize) {
    // Every supported data set (MNIST, Fashion-MNIST, CIFAR-10) has ten classes.
    (10, config.feedback_width())
}

impl PointRunner for TrainRunner {
    fn validate(&self, config: &Table) -> Result<(), PointError> {
        let c = parse(config)?;
        if c.training.algorithm == AlgorithmKind::Dfa {
            c.feedback.spec().check()?;
        }
        Ok(())
    }

    fn run(&self, config: &Table, run_dir: &Path, resume: bool) -> Result<(), PointError> {
        let c = parse(config)?;
        let resume = resume && checkpoint::exists(run_dir);
        if !resume && run_dir.exists() {
            // An attempt that stopped before its first checkpoint: start again.
            std::fs::remove_dir_all(run_dir).map_err(|source| PointError::Clear {
                path: run_dir.to_path_buf(),
                source,
            })?;
        }
        run::train(&c, run_dir, resume, Progress::Quiet)?;
        Ok(())
    }

    fn snr_db(&self, config: &Table) -> Result<Option<f64>, PointError> {
        let c = parse(config)?;
        if c.training.algorithm != AlgorithmKind::Dfa {
            return Ok(None);
        }
        let (i, o) = feedback_dims(&c);
        let key = format!(
            "{}|{i}|{o}",
            toml::to_string(&c.feedback).unwrap_or_default()
        );
        if let Some(v) = self
            .snr_cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(*v);
        }
        // Measured outside the lock: two workers may measure the same setting once each.
        let v = c.feedback.spec().snr_db(i, o)?;
        self.snr_cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, v);
        Ok(v)
    }
}
