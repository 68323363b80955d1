//! The feedback matrices as the layers receive them, and the pre-alignment initialization built
//! from them (`model.init = "pre-alignment"`; the definition is in [`crate::trainer`]'s
//! "Pre-alignment initialization").

use super::Trainer;
use crate::error::DfaError;
use crate::spec::AlgorithmKind;

/// Eigenvalues below this fraction of the largest count as zero in [`pinv_psd`]: the Gram
/// matrices are built in f64 from f32 entries, so a true zero comes out near 1e-16 of the
/// largest, and a real one (a C × d_i Gaussian matrix with d_i ≥ C) far above 1e-10.
const RANK_TOLERANCE: f64 = 1e-10;

/// Jacobi sweeps after which [`pinv_psd`] stops even if the off-diagonal part is not yet
/// negligible (a C × C matrix converges in well under 20).
const MAX_SWEEPS: usize = 100;

impl Trainer {
    /// Each hidden layer's DFA feedback matrix B_i exactly as the layer receives it: C × d_i,
    /// row-major, row r being the signal at the layer's output for the error e = r-th unit
    /// vector (its slice of the projection, with its scale). The signal for any error is then
    /// e·B_i. DFA only; spends one projection of the C unit vectors (device frames on an optical
    /// projector, whose matrix is measured, noise included).
    pub fn feedback_matrices(&mut self) -> Result<Vec<Vec<f32>>, DfaError> {
        let (Some(projector), Some(info)) = (self.projector.as_mut(), &self.projector_info) else {
            return Err(DfaError::Mismatch(format!(
                "feedback matrices exist for DFA with hidden layers only (this trainer runs {} \
                 with {} hidden layers)",
                self.algorithm.kind,
                self.net.hidden_count()
            )));
        };
        debug_assert_eq!(self.algorithm.kind, AlgorithmKind::Dfa);
        let c = self.net.classes;
        let width = info.output_dim;
        let mut identity = vec![0.0f32; c * c];
        for r in 0..c {
            identity[r * c + r] = 1.0;
        }
        let mut projected = vec![0.0f32; c * width];
        projector.project(&identity, c, &mut projected)?;
        Ok(self
            .net
            .hidden_widths()
            .iter()
            .zip(self.offsets.iter().zip(&self.scales))
            .map(|(&d, (&offset, &scale))| {
                projected
                    .chunks_exact(width)
                    .flat_map(|row| row[offset..offset + d].iter().map(move |&v| scale * v))
                    .collect()
            })
            .collect())
    }

    /// Replaces the weights of every layer after the first by their pre-aligned values (see the
    /// module documentation of [`crate::trainer`]).
    pub(super) fn pre_align(&mut self) -> Result<(), DfaError> {
        let feedback = self.feedback_matrices()?;
        let c = self.net.classes;
        let mut output_identity = vec![0.0f32; c * c];
        for r in 0..c {
            output_identity[r * c + r] = 1.0;
        }
        for k in 1..self.net.layers.len() {
            // The signal that reaches layer k's output for an error e: e·B_k, and e itself at the
            // output layer (its true gradient).
            let upper: &[f32] = feedback.get(k).unwrap_or(&output_identity);
            let weight = aligned_weight(&feedback[k - 1], upper, c).ok_or_else(|| {
                DfaError::Mismatch(format!(
                    "pre-alignment of layer {k}: the aligned weight is zero (the feedback matrix \
                     has no part orthogonal to the all-ones error direction)"
                ))
            })?;
            let layer = &mut self.net.layers[k];
            debug_assert_eq!(weight.len(), layer.w.value.len());
            layer.w.value = weight;
        }
        Ok(())
    }
}

/// The weight `lowerᵀ · M · upper / ‖·‖_F` (`d_lower × d_upper`, row-major f32) with
/// `M = pinv(P·upper·upperᵀ·P)` and `P = I − 11ᵀ/C`: the least-norm W with
/// `e·upper·Wᵀ = e·lower` for every error e whose entries sum to zero (softmax − onehot),
/// scaled to unit Frobenius norm. `lower` is `C × d_lower`, `upper` `C × d_upper`. `None` when
/// the weight is zero.
fn aligned_weight(lower: &[f32], upper: &[f32], classes: usize) -> Option<Vec<f32>> {
    let c = classes;
    let d_lower = lower.len() / c;
    let d_upper = upper.len() / c;
    // Centered rows: P·upper.
    let centered = center_rows(upper, c);
    // K = (P·upper)(P·upper)ᵀ = P·upper·upperᵀ·P, C × C.
    let mut gram = vec![0.0f64; c * c];
    for r in 0..c {
        for s in 0..=r {
            let (a, b) = (
                &centered[r * d_upper..(r + 1) * d_upper],
                &centered[s * d_upper..(s + 1) * d_upper],
            );
            let v: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
            gram[r * c + s] = v;
            gram[s * c + r] = v;
        }
    }
    let m = pinv_psd(&gram, c);
    // T = M·(P·upper) = M·upper (M's range is orthogonal to the ones vector), C × d_upper.
    let mut t = vec![0.0f64; c * d_upper];
    for r in 0..c {
        let t_row = &mut t[r * d_upper..(r + 1) * d_upper];
        for s in 0..c {
            let mrs = m[r * c + s];
            for (o, &u) in t_row
                .iter_mut()
                .zip(&centered[s * d_upper..(s + 1) * d_upper])
            {
                *o += mrs * u;
            }
        }
    }
    // W = lowerᵀ·T, d_lower × d_upper, each row summed in f64. Two passes, the first for the
    // norm only, so that no f64 copy of a wide layer's weight is ever held.
    let row_of = |i: usize, row: &mut [f64]| {
        row.fill(0.0);
        for r in 0..c {
            let l = f64::from(lower[r * d_lower + i]);
            for (o, &v) in row.iter_mut().zip(&t[r * d_upper..(r + 1) * d_upper]) {
                *o += l * v;
            }
        }
    };
    let mut row = vec![0.0f64; d_upper];
    let mut norm2 = 0.0f64;
    for i in 0..d_lower {
        row_of(i, &mut row);
        // One running sum over every entry in row-major order.
        norm2 = row.iter().fold(norm2, |acc, v| acc + v * v);
    }
    let norm = norm2.sqrt();
    if !(norm > 0.0 && norm.is_finite()) {
        return None;
    }
    let mut w = vec![0.0f32; d_lower * d_upper];
    for (i, w_row) in w.chunks_exact_mut(d_upper).enumerate() {
        row_of(i, &mut row);
        for (o, &v) in w_row.iter_mut().zip(&row) {
            *o = (v / norm) as f32;
        }
    }
    Some(w)
}

/// `P·a` for a `C × d` row-major matrix: each column minus its mean over the C rows, in f64.
fn center_rows(a: &[f32], c: usize) -> Vec<f64> {
    let d = a.len() / c;
    let mut mean = vec![0.0f64; d];
    for row in a.chunks_exact(d) {
        for (m, &v) in mean.iter_mut().zip(row) {
            *m += f64::from(v);
        }
    }
    for m in &mut mean {
        *m /= c as f64;
    }
    a.chunks_exact(d)
        .flat_map(|row| row.iter().zip(&mean).map(|(&v, m)| f64::from(v) - m))
        .collect()
}

/// The Moore–Penrose pseudo-inverse of a symmetric positive semi-definite `n × n` matrix
/// (row-major), from its eigendecomposition by cyclic Jacobi rotations: Σ v·vᵀ/λ over the
/// eigenpairs with λ above [`RANK_TOLERANCE`] times the largest. Sequential and deterministic.
fn pinv_psd(matrix: &[f64], n: usize) -> Vec<f64> {
    let mut a = matrix.to_vec();
    let mut v = vec![0.0f64; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    let total: f64 = a.iter().map(|x| x * x).sum();
    for _ in 0..MAX_SWEEPS {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * n + j] * a[i * n + j])
            .sum();
        if off <= total * 1e-30 {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq == 0.0 {
                    continue;
                }
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let cos = 1.0 / (t * t + 1.0).sqrt();
                let sin = t * cos;
                for k in 0..n {
                    let (akp, akq) = (a[k * n + p], a[k * n + q]);
                    a[k * n + p] = cos * akp - sin * akq;
                    a[k * n + q] = sin * akp + cos * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p * n + k], a[q * n + k]);
                    a[p * n + k] = cos * apk - sin * aqk;
                    a[q * n + k] = sin * apk + cos * aqk;
                }
                for k in 0..n {
                    let (vkp, vkq) = (v[k * n + p], v[k * n + q]);
                    v[k * n + p] = cos * vkp - sin * vkq;
                    v[k * n + q] = sin * vkp + cos * vkq;
                }
            }
        }
    }
    let largest = (0..n).map(|i| a[i * n + i]).fold(0.0f64, f64::max);
    let mut pinv = vec![0.0f64; n * n];
    for e in 0..n {
        let lambda = a[e * n + e];
        if lambda <= largest * RANK_TOLERANCE {
            continue;
        }
        for i in 0..n {
            let vi = v[i * n + e] / lambda;
            for j in 0..n {
                pinv[i * n + j] += vi * v[j * n + e];
            }
        }
    }
    pinv
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matmul(a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
        let mut out = vec![0.0; n * n];
        for i in 0..n {
            for k in 0..n {
                for j in 0..n {
                    out[i * n + j] += a[i * n + k] * b[k * n + j];
                }
            }
        }
        out
    }

    fn max_diff(a: &[f64], b: &[f64]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max)
    }

    #[test]
    fn pseudo_inverse_satisfies_the_penrose_conditions() {
        // K = A·Aᵀ with A 6 × 3: rank 3 of 6. Penrose: K·K⁺·K = K, K⁺·K·K⁺ = K⁺, both
        // symmetric (to 1e-12 relative to the entries, which are of order 1).
        let n = 6;
        let a: Vec<f64> = (0..n * 3)
            .map(|k| ((k * 37 % 11) as f64 - 5.0) / 3.0)
            .collect();
        let mut k = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                k[i * n + j] = (0..3).map(|r| a[i * 3 + r] * a[j * 3 + r]).sum();
            }
        }
        let p = pinv_psd(&k, n);
        assert!(max_diff(&matmul(&matmul(&k, &p, n), &k, n), &k) < 1e-12);
        assert!(max_diff(&matmul(&matmul(&p, &k, n), &p, n), &p) < 1e-12);
        let kp = matmul(&k, &p, n);
        let kp_t: Vec<f64> = (0..n * n).map(|x| kp[(x % n) * n + x / n]).collect();
        assert!(max_diff(&kp, &kp_t) < 1e-12);
        // A full-rank matrix: the inverse.
        let full = [4.0, 1.0, 0.5, 1.0, 3.0, 0.2, 0.5, 0.2, 2.0];
        let inv = pinv_psd(&full, 3);
        let id = matmul(&full, &inv, 3);
        assert!(max_diff(&id, &[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]) < 1e-12);
    }

    #[test]
    fn aligned_weight_solves_its_equation_for_sum_zero_errors() {
        // C = 4 classes, upper 4 × 7, lower 4 × 5: for e with Σe = 0, e·upper·Wᵀ ∝ e·lower
        // (one factor for all e: the normalization), and ‖W‖_F = 1.
        let c = 4;
        let upper: Vec<f32> = (0..c * 7)
            .map(|k| ((k * 13 % 17) as f32 - 8.0) / 5.0)
            .collect();
        let lower: Vec<f32> = (0..c * 5)
            .map(|k| ((k * 7 % 19) as f32 - 9.0) / 4.0)
            .collect();
        let w = aligned_weight(&lower, &upper, c).unwrap();
        let norm: f64 = w.iter().map(|&v| f64::from(v).powi(2)).sum();
        assert!((norm - 1.0).abs() < 1e-6);
        let mut ratio = None;
        for e in [
            [1.0f64, -1.0, 0.0, 0.0],
            [0.2, 0.3, -0.9, 0.4],
            [-0.5, 0.1, 0.1, 0.3],
        ] {
            let eu: Vec<f64> = (0..7)
                .map(|j| (0..c).map(|r| e[r] * f64::from(upper[r * 7 + j])).sum())
                .collect();
            let got: Vec<f64> = (0..5)
                .map(|i| (0..7).map(|j| eu[j] * f64::from(w[i * 7 + j])).sum())
                .collect();
            let want: Vec<f64> = (0..5)
                .map(|i| (0..c).map(|r| e[r] * f64::from(lower[r * 5 + i])).sum())
                .collect();
            let r = got[0] / want[0];
            let ratio = *ratio.get_or_insert(r);
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (g - ratio * w).abs() < 1e-6 * w.abs().max(1.0),
                    "{got:?} vs {want:?}"
                );
            }
        }
    }
}
