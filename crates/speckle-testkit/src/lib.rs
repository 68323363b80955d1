//! # speckle-testkit
//!
//! Helpers for speckle's tests and benches, used only as a dev-dependency (never published):
//!
//! * statistics: the Kolmogorov–Smirnov statistic [`ks_statistic`] against any CDF, its critical
//!   value [`ks_critical`], and the checks against a normal ([`ks_normal`]) and an exponential
//!   ([`ks_exponential`]) law;
//! * inputs: seeded random binary frames, unpacked ([`random_bits`]) or bit-packed
//!   ([`random_frames`], [`random_frames_with_density`]), deterministic hashed frames
//!   ([`hashed_bits`]), and signed vectors ([`signed_values`], [`signed_vector`]).
//!
//! Every random helper draws from `ChaCha8Rng` (`rand_chacha` pinned by the workspace) in a
//! documented order, so a test that moves onto these helpers keeps its exact inputs.
//!
//! ```
//! use speckle_testkit::{ks_critical, ks_normal, random_frames, signed_vector};
//!
//! // 4 bit-packed frames of 10 features (2 bytes each), the same for the same seed.
//! let frames = random_frames(4, 10, 7);
//! assert_eq!(frames.len(), 4 * 2);
//! assert_eq!(frames, random_frames(4, 10, 7));
//!
//! // Uniform values in [-1, 1) are far from N(0, 1): the KS test rejects them.
//! let x: Vec<f64> = signed_vector(2000, 3).iter().map(|&v| f64::from(v)).collect();
//! assert!(x.iter().all(|v| (-1.0..1.0).contains(v)));
//! assert!(ks_normal(&x, 1.0) > ks_critical(x.len()));
//! // Against their own law's CDF they pass.
//! let d = speckle_testkit::ks_statistic(&x, |t| ((t + 1.0) / 2.0).clamp(0.0, 1.0));
//! assert!(d < ks_critical(x.len()));
//! ```
#![forbid(unsafe_code)]

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Kolmogorov–Smirnov statistic of `samples` against the continuous CDF `cdf`: the largest
/// distance between `cdf` and the empirical CDF, `max_i max(|F(x_i) − i/n|, |(i+1)/n − F(x_i)|)`
/// over the sorted samples. 0 for no samples.
pub fn ks_statistic(samples: &[f64], cdf: impl Fn(f64) -> f64) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len() as f64;
    sorted
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            let f = cdf(x);
            (f - i as f64 / n).abs().max(((i + 1) as f64 / n - f).abs())
        })
        .fold(0.0, f64::max)
}

/// The KS critical value for `n` iid samples at significance 0.001: `1.95 / sqrt(n)`
/// (asymptotic, c(α) = 1.95).
pub fn ks_critical(n: usize) -> f64 {
    1.95 / (n as f64).sqrt()
}

/// CDF of N(0, `variance`) at `x`, `erfc(−x / sqrt(2·variance)) / 2`.
pub fn normal_cdf(x: f64, variance: f64) -> f64 {
    0.5 * libm::erfc(-x / (variance.sqrt() * std::f64::consts::SQRT_2))
}

/// CDF of the exponential law of mean `mean` at `x`, `1 − exp(−x / mean)` (0 below 0).
pub fn exponential_cdf(x: f64, mean: f64) -> f64 {
    1.0 - (-x.max(0.0) / mean).exp()
}

/// KS statistic of `samples` against N(0, `variance`).
pub fn ks_normal(samples: &[f64], variance: f64) -> f64 {
    ks_statistic(samples, |x| normal_cdf(x, variance))
}

/// KS statistic of `samples` against the exponential law of mean `mean`.
pub fn ks_exponential(samples: &[f64], mean: f64) -> f64 {
    ks_statistic(samples, |x| exponential_cdf(x, mean))
}

/// `len` values 0 or 1, each 1 with probability `density`: one `random_bool(density)` draw of
/// `rng` per value, in order.
pub fn random_bits(rng: &mut ChaCha8Rng, len: usize, density: f64) -> Vec<u8> {
    (0..len)
        .map(|_| u8::from(rng.random_bool(density)))
        .collect()
}

/// `frames × width` random features, bit-packed (the layout of
/// [`PackedFrames`](speckle_hal::PackedFrames)): one `random_range(0..2u8)` draw of
/// `ChaCha8Rng::seed_from_u64(seed)` per feature, frame after frame.
pub fn random_frames(frames: usize, width: usize, seed: u64) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let values: Vec<u8> = (0..frames * width)
        .map(|_| rng.random_range(0..2u8))
        .collect();
    pack(&values, frames, width)
}

/// `frames × width` random features, each lit with probability `density`, bit-packed:
/// [`random_bits`] from `ChaCha8Rng::seed_from_u64(seed)`, then [`pack`].
pub fn random_frames_with_density(frames: usize, width: usize, density: f64, seed: u64) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let values = random_bits(&mut rng, frames * width, density);
    pack(&values, frames, width)
}

/// `frames × width` features (0 or 1, unpacked) from a fixed multiplicative hash of the index
/// and `salt`: reproducible without any random number generator.
pub fn hashed_bits(frames: usize, width: usize, salt: usize) -> Vec<u8> {
    (0..frames * width)
        .map(|v| ((v.wrapping_mul(2_654_435_761) ^ salt) >> 7 & 1) as u8)
        .collect()
}

/// Bit-packs `frames × width` values 0 or 1 ([`speckle_hal::pack_bits`]). Panics on a value
/// other than 0 or 1 or a wrong length.
pub fn pack(values: &[u8], frames: usize, width: usize) -> Vec<u8> {
    let mut out = Vec::new();
    speckle_hal::pack_bits(values, frames, width, &mut out)
        .expect("values are frames × width bits");
    out
}

/// `len` values uniform in `[-1, 1)`: one `random_range(-1.0f32..1.0)` draw of `rng` per
/// value, in order.
pub fn signed_values(rng: &mut ChaCha8Rng, len: usize) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// `len` values uniform in `[-1, 1)` from `ChaCha8Rng::seed_from_u64(seed)` ([`signed_values`]).
pub fn signed_vector(len: usize, seed: u64) -> Vec<f32> {
    signed_values(&mut ChaCha8Rng::seed_from_u64(seed), len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ks_statistic_of_a_perfect_grid_is_half_a_step() {
        // Samples at the midpoints (i + 0.5)/n of a uniform law: distance 1/(2n) everywhere.
        let n = 100;
        let s: Vec<f64> = (0..n).rev().map(|i| (i as f64 + 0.5) / n as f64).collect();
        let d = ks_statistic(&s, |x| x.clamp(0.0, 1.0));
        assert!((d - 0.5 / n as f64).abs() < 1e-12, "{d}");
        assert_eq!(ks_statistic(&[], |x| x), 0.0);
    }

    #[test]
    fn cdfs_and_checks() {
        assert_eq!(normal_cdf(0.0, 4.0), 0.5);
        assert!((normal_cdf(1.959_963_985, 1.0) - 0.975).abs() < 1e-9);
        assert!((normal_cdf(2.0 * 1.959_963_985, 4.0) - 0.975).abs() < 1e-9);
        assert_eq!(exponential_cdf(-1.0, 2.0), 0.0);
        assert!((exponential_cdf(2.0, 2.0) - (1.0 - (-1.0f64).exp())).abs() < 1e-15);
        // Exponential samples (by inversion) pass the exponential check, not the normal one.
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let z: Vec<f64> = (0..4000)
            .map(|_| -(1.0 - rng.random::<f64>()).ln())
            .collect();
        assert!(ks_exponential(&z, 1.0) < ks_critical(z.len()));
        assert!(ks_normal(&z, 1.0) > ks_critical(z.len()));
    }

    #[test]
    fn random_inputs_are_reproducible_and_well_formed() {
        let packed = random_frames(3, 13, 5);
        assert_eq!(packed.len(), 3 * 2);
        assert!(speckle_hal::PackedFrames::new(&packed, 3, 13).is_ok());
        assert_eq!(packed, random_frames(3, 13, 5));
        assert_ne!(packed, random_frames(3, 13, 6));
        let dense = random_frames_with_density(2, 1000, 0.9, 1);
        let lit: u32 = dense.iter().map(|b| b.count_ones()).sum();
        assert!((1700..1900).contains(&lit), "{lit}");
        let bits = random_bits(&mut ChaCha8Rng::seed_from_u64(2), 50, 0.5);
        assert!(bits.iter().all(|&b| b <= 1));
        assert_eq!(hashed_bits(2, 8, 1).len(), 16);
        let v = signed_vector(100, 4);
        assert!(v.iter().all(|x| (-1.0..1.0).contains(x)));
        assert_eq!(v, signed_values(&mut ChaCha8Rng::seed_from_u64(4), 100));
    }
}
