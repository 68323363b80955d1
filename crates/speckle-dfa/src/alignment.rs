//! Alignment statistics between an algorithm's feedback and the true backprop gradient.
//!
//! The measure follows the seed paper's code: per sample, the cosine between the gradient the
//! algorithm delivers at a hidden block's output and the backprop gradient there, then mean and
//! (population) standard deviation over the evaluation batch. Added: the cosine, and the angle in
//! degrees, between the flattened weight updates. [`crate::Trainer::alignment`] runs the passes;
//! this module only compares them.
//!
//! ```
//! use ndarray::Array2;
//! use speckle_dfa::{AlgorithmKind, AlgorithmSpec, ModelSpec, OptimizerSpec, Trainer};
//!
//! // Backprop is aligned with itself: cosine 1 at every hidden layer, for the signal and the
//! // weight update alike.
//! let model = ModelSpec { hidden: vec![8, 8], ..ModelSpec::default() };
//! let bp = AlgorithmSpec { kind: AlgorithmKind::Bp, ..AlgorithmSpec::default() };
//! let mut t = Trainer::new(4, 3, &model, &bp, &OptimizerSpec::default(), 6, 10, 1, None)?;
//! let x = Array2::from_shape_fn((6, 4), |(i, j)| ((i * 4 + j) as f32 * 0.37).sin());
//! let alignment = t.alignment(x.view(), &[0, 1, 2, 0, 1, 2])?;
//! assert_eq!(alignment.len(), 2);
//! for layer in &alignment {
//!     assert!((layer.cosine_mean - 1.0).abs() < 1e-6 && layer.cosine_std < 1e-6);
//!     assert!((layer.weight_cosine - 1.0).abs() < 1e-9);
//! }
//! # Ok::<(), speckle_dfa::DfaError>(())
//! ```

use crate::linalg::cosine;
use crate::model::{Capture, Feedback};
use crate::stats::{mean_std, Spread};
use serde::{Deserialize, Serialize};

/// Alignment of one hidden layer between the algorithm's signal and the true backprop gradient.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LayerAlignment {
    /// Mean over samples of the per-sample cosine at the block output.
    pub cosine_mean: f64,
    /// Population standard deviation of that cosine over samples.
    pub cosine_std: f64,
    /// Cosine between the algorithm's weight update and the BP weight gradient.
    pub weight_cosine: f64,
    /// The same as an angle in degrees.
    pub weight_angle_deg: f64,
}

/// Per hidden layer, compares the block-output signals of a BP pass (`bp`) and of the
/// algorithm's pass over the same `n` samples, row by row: `alg` holds the algorithm's signals,
/// or, where it is empty (DFA), `direct` gives them from the projection. `weight_cosines` are
/// the layers' weight-update cosines ([`crate::model::Network::weight_cosines`]).
pub(crate) fn compare(
    bp: &Capture,
    alg: &Capture,
    direct: Option<Feedback<'_>>,
    weight_cosines: &[f64],
    n: usize,
) -> Vec<LayerAlignment> {
    bp.block_out
        .iter()
        .zip(&alg.block_out)
        .zip(weight_cosines)
        .enumerate()
        .map(|(l, ((b, a), &weight_cosine))| {
            let d = b.len() / n.max(1);
            let slice = direct.and_then(|f| f.slice(l));
            let mut row = vec![0.0; if a.is_empty() { d } else { 0 }];
            let cos: Vec<f64> = b
                .chunks_exact(d.max(1))
                .enumerate()
                .map(|(r, x)| match (a.is_empty(), slice) {
                    (true, Some(slice)) => {
                        slice.row_to(r, &mut row);
                        cosine(x, &row)
                    }
                    _ => cosine(x, &a[r * d..(r + 1) * d]),
                })
                .collect();
            let (mean, std) =
                mean_std(cos.iter().copied(), Spread::Population).unwrap_or((0.0, 0.0));
            LayerAlignment {
                cosine_mean: mean,
                cosine_std: std,
                weight_cosine,
                weight_angle_deg: weight_cosine.clamp(-1.0, 1.0).acos().to_degrees(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_and_opposite_captures() {
        let bp = Capture {
            block_out: vec![vec![1.0, 2.0, 3.0, -1.0]],
            delta: Vec::new(),
        };
        let same = compare(&bp, &bp, None, &[1.0], 2);
        assert!((same[0].cosine_mean - 1.0).abs() < 1e-12);
        assert!(same[0].cosine_std < 1e-7);
        assert!(same[0].weight_angle_deg.abs() < 1e-6);
        let other = Capture {
            block_out: vec![vec![-1.0, -2.0, 1.0, 3.0]],
            delta: Vec::new(),
        };
        let r = compare(&bp, &other, None, &[0.0], 2);
        // Row cosines: −1 and 0 → mean −0.5, std 0.5.
        assert!((r[0].cosine_mean + 0.5).abs() < 1e-12);
        assert!((r[0].cosine_std - 0.5).abs() < 1e-12);
        assert!((r[0].weight_angle_deg - 90.0).abs() < 1e-9);
    }
}
