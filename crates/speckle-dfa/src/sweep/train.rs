//! The [`PointRunner`] that trains each point through the run layer ([`crate::run::train`]).
//!
//! Everything device-specific (building the feedback projector, checking a device's config
//! keys, measuring a device's projection SNR) comes from a [`FeedbackTools`] that the caller
//! supplies, so that this crate does not depend on the device crates.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use speckle_hal::RandomProjector;
use toml::Table;

use super::PointRunner;
use crate::checkpoint;
use crate::config::{FeedbackConfig, RunConfig};
use crate::run::{self, Progress};
use crate::spec::AlgorithmKind;

/// Device-specific services a sweep needs.
pub trait FeedbackTools: Sync {
    /// Builds the feedback projector (the run layer's projector factory).
    fn open(
        &self,
        feedback: &FeedbackConfig,
        input_dim: usize,
        output_dim: usize,
    ) -> Result<Box<dyn RandomProjector + Send>, speckle_hal::Error>;

    /// Checks `[feedback]` without building anything expensive (projector SPEC, encoding and
    /// the device config with its overrides), so that a bad key fails before any run starts.
    fn check(&self, feedback: &FeedbackConfig) -> Result<(), String>;

    /// Projection SNR in dB of the device against the ideal projection of the same matrix,
    /// `None` for a digital projector.
    fn snr_db(
        &self,
        feedback: &FeedbackConfig,
        input_dim: usize,
        output_dim: usize,
    ) -> Result<Option<f64>, String>;
}

/// Trains sweep points with the run layer. The SNR of each distinct `[feedback]` section is
/// measured once and cached.
pub struct TrainRunner<'a> {
    tools: &'a dyn FeedbackTools,
    snr_cache: Mutex<HashMap<String, Option<f64>>>,
}

impl<'a> TrainRunner<'a> {
    /// A runner over the given device tools.
    pub fn new(tools: &'a dyn FeedbackTools) -> Self {
        Self {
            tools,
            snr_cache: Mutex::new(HashMap::new()),
        }
    }
}

fn parse(config: &Table) -> Result<RunConfig, String> {
    RunConfig::from_table(config.clone(), "sweep point").map_err(|e| e.to_string())
}

/// Input (classes) and output (widest hidden layer, or the sum with per-layer feedback)
/// dimensions of a run's feedback projector.
fn feedback_dims(config: &RunConfig) -> (usize, usize) {
    // Every supported data set (MNIST, Fashion-MNIST, CIFAR-10) has ten classes.
    (10, config.feedback_width())
}

impl PointRunner for TrainRunner<'_> {
    fn validate(&self, config: &Table) -> Result<(), String> {
        let c = parse(config)?;
        if c.training.algorithm == AlgorithmKind::Dfa {
            self.tools.check(&c.feedback)?;
        }
        Ok(())
    }

    fn run(&self, config: &Table, run_dir: &Path, resume: bool) -> Result<(), String> {
        let c = parse(config)?;
        let resume = resume && checkpoint::exists(run_dir);
        if !resume && run_dir.exists() {
            // An attempt that stopped before its first checkpoint: start again.
            std::fs::remove_dir_all(run_dir)
                .map_err(|e| format!("cannot clear {}: {e}", run_dir.display()))?;
        }
        let tools = self.tools;
        let factory = move |fb: &FeedbackConfig, i: usize, o: usize| tools.open(fb, i, o);
        run::train(&c, run_dir, resume, &factory, Progress::Quiet)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn snr_db(&self, config: &Table) -> Result<Option<f64>, String> {
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
        let v = self.tools.snr_db(&c.feedback, i, o)?;
        self.snr_cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, v);
        Ok(v)
    }
}
