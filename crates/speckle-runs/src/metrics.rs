//! What a run records: one [`EpochMetrics`] row per epoch (written to `metrics.csv`) and a
//! [`Summary`] at the end (`summary.json`).
//!
//! ```
//! use speckle_runs::metrics::{csv_header, metrics_csv, EpochMetrics, LayerAlignment};
//!
//! let row = EpochMetrics {
//!     epoch: 1,
//!     train_loss: 0.5,
//!     train_accuracy: 0.8,
//!     test_loss: 0.4,
//!     test_accuracy: 0.85,
//!     alignment: vec![LayerAlignment { cosine_mean: 0.5, ..LayerAlignment::default() }],
//!     epoch_train_s: 1.0,
//!     wall_s: 1.5,
//!     device_frames: 0,
//!     device_time_s: 0.0,
//! };
//! let csv = metrics_csv(&[row]);
//! let mut lines = csv.lines();
//! assert_eq!(lines.next(), Some(csv_header(1).as_str()));
//! assert_eq!(
//!     lines.next(),
//!     Some("1,0.500000,0.800000,0.400000,0.850000,0.500000,0.000000,0.000000,0.0000,1.000,1.500,0,0.000000")
//! );
//! ```

use serde::{Deserialize, Serialize};

pub use speckle_dfa::LayerAlignment;

/// One row of `metrics.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean cross-entropy over the epoch's training batches.
    pub train_loss: f64,
    /// Fraction of training samples classified correctly during the epoch.
    pub train_accuracy: f64,
    /// Mean cross-entropy on the test set after the epoch.
    pub test_loss: f64,
    /// Fraction of the test set classified correctly after the epoch.
    pub test_accuracy: f64,
    /// Per hidden layer (first hidden layer first).
    pub alignment: Vec<LayerAlignment>,
    /// Wall time of this epoch's training steps (evaluation excluded), seconds.
    pub epoch_train_s: f64,
    /// Wall time since the start of the run, all epochs so far included (resumed runs add the
    /// time of the invocations before the resume), seconds.
    pub wall_s: f64,
    /// Device frames since the start of the run.
    pub device_frames: u64,
    /// Device time since the start of the run, seconds.
    pub device_time_s: f64,
}

/// Header of `metrics.csv` for a network with `hidden` hidden layers.
pub fn csv_header(hidden: usize) -> String {
    let mut cols = vec![
        "epoch".to_string(),
        "train_loss".into(),
        "train_accuracy".into(),
        "test_loss".into(),
        "test_accuracy".into(),
    ];
    for l in 1..=hidden {
        cols.push(format!("cos_mean_l{l}"));
        cols.push(format!("cos_std_l{l}"));
        cols.push(format!("weight_cos_l{l}"));
        cols.push(format!("weight_angle_deg_l{l}"));
    }
    for c in ["epoch_train_s", "wall_s", "device_frames", "device_time_s"] {
        cols.push(c.into());
    }
    cols.join(",")
}

impl EpochMetrics {
    /// This row in the column order of [`csv_header`].
    pub fn csv_row(&self) -> String {
        let mut cols = vec![
            self.epoch.to_string(),
            format!("{:.6}", self.train_loss),
            format!("{:.6}", self.train_accuracy),
            format!("{:.6}", self.test_loss),
            format!("{:.6}", self.test_accuracy),
        ];
        for a in &self.alignment {
            cols.push(format!("{:.6}", a.cosine_mean));
            cols.push(format!("{:.6}", a.cosine_std));
            cols.push(format!("{:.6}", a.weight_cosine));
            cols.push(format!("{:.4}", a.weight_angle_deg));
        }
        cols.push(format!("{:.3}", self.epoch_train_s));
        cols.push(format!("{:.3}", self.wall_s));
        cols.push(self.device_frames.to_string());
        cols.push(format!("{:.6}", self.device_time_s));
        cols.join(",")
    }
}

/// The whole `metrics.csv` text.
pub fn metrics_csv(rows: &[EpochMetrics]) -> String {
    let hidden = rows.first().map_or(0, |r| r.alignment.len());
    let mut s = csv_header(hidden);
    s.push('\n');
    for r in rows {
        s.push_str(&r.csv_row());
        s.push('\n');
    }
    s
}

/// Final alignment of one hidden layer in `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlignmentSummary {
    /// 1-based hidden layer index.
    pub layer: usize,
    /// Mean per-sample cosine at the end of training.
    pub cosine_mean: f64,
    /// Its standard deviation over the evaluation batch.
    pub cosine_std: f64,
    /// Cosine between the delivered weight update and the backprop gradient.
    pub weight_cosine: f64,
    /// That as an angle in degrees.
    pub weight_angle_deg: f64,
}

/// `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Algorithm name (`bp`, `fa`, `dfa`).
    pub algorithm: String,
    /// Data set name.
    pub dataset: String,
    /// Epochs trained.
    pub epochs: usize,
    /// Final test accuracy as a fraction.
    pub test_accuracy: f64,
    /// Final test loss.
    pub test_loss: f64,
    /// Best test accuracy over the epochs (reported, never used to pick the result).
    pub best_test_accuracy: f64,
    /// Training accuracy of the last epoch.
    pub train_accuracy: f64,
    /// Training loss of the last epoch.
    pub train_loss: f64,
    /// Final alignment per hidden layer.
    pub alignment: Vec<AlignmentSummary>,
    /// Total wall time of the run, evaluation included, seconds.
    pub wall_s: f64,
    /// Wall time of the training steps only, seconds.
    pub train_s: f64,
    /// Training samples per second of training-step time.
    pub samples_per_s: f64,
    /// Achieved GFLOP/s of the training steps (the trainer's flop count per sample).
    pub gflops: f64,
    /// Device frames spent by the feedback projector.
    pub device_frames: u64,
    /// Device time spent by the feedback projector, seconds.
    pub device_time_s: f64,
    /// Identity of the feedback projector (`none` without one).
    pub projector: String,
}
