//! Signed float vectors as weighted sums of binary frames.

use std::fmt;
use std::str::FromStr;

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::levels::{dither_grid, kmeans_clusters};

/// Default relative threshold of [`Encoding::Ternary`].
pub const DEFAULT_TERNARY_THRESHOLD: f32 = 0.25;

/// Most bits per sign of [`Encoding::BitPlane`].
pub const MAX_BITPLANE_BITS: u32 = 16;

/// Most levels of [`Encoding::Levels`] (15 binary frames, 30 device frames per vector).
pub const MAX_LEVELS: u32 = 16;

/// Which random draws a stochastic encoding ([`Encoding::is_stochastic`]) uses for one vector:
/// its uniforms come from `ChaCha8Rng::seed_from_u64(seed)` on stream `stream`, one per entry in
/// entry order, each `(next_u32() >> 8) · 2^−24` (a multiple of 2^−24 in [0, 1)).
/// [`OpticalProjector`](crate::OpticalProjector) uses its `dither_seed` and, as the stream, the
/// global index of the vector's first device frame, which a resumed run restores with
/// [`seek_frame`](speckle_hal::RandomProjector::seek_frame): the draws never depend on threads
/// or on how a batch is split. Deterministic encodings ignore the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DitherKey {
    /// Seed of the ChaCha8 generator.
    pub seed: u64,
    /// ChaCha8 stream (one per vector).
    pub stream: u64,
}

impl DitherKey {
    /// The generator of this key's draws.
    fn rng(self) -> ChaCha8Rng {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(self.stream);
        rng
    }
}

/// One uniform draw in [0, 1), a multiple of 2^−24 (see [`DitherKey`]).
fn uniform(rng: &mut ChaCha8Rng) -> f64 {
    f64::from(rng.next_u32() >> 8) * (1.0 / f64::from(1u32 << 24))
}

/// How a ternary code is scaled back to the input's magnitude.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TernaryScale {
    /// The mean magnitude of the kept entries (the least-squares scale for the kept support).
    #[default]
    MeanKept,
    /// The largest magnitude, `max |x|`.
    Max,
}

/// How a signed `f32` vector becomes binary frames for an intensity-only device.
///
/// An encoding turns a vector `x` into [`binary_frames`](Encoding::binary_frames) binary
/// vectors `b_f` with weights `w_f`, and an offset `c`, such that `x ≈ c·1 + Σ_f w_f · b_f`
/// (`1` the all-ones vector); by linearity the projection of `x` is
/// `c·L(1) + Σ_f w_f · L(b_f)`. Only [`Levels`](Encoding::Levels) uses the offset (`c = 0`
/// otherwise): an [`OpticalProjector`](crate::OpticalProjector) measures `L(1)` once per
/// calibration, so the offset costs no frame per vector. Every encoding is per vector (row):
/// scales and levels come from that row alone.
///
/// Device frames per vector are twice the binary frames (each is shown with and without the
/// reference): `ternary` and `ternary:dither` 4, `bitplane:P` 4P, `levels:K` and
/// `levels:K:dither` 2(K − 1).
///
/// String forms ([`FromStr`] and [`Display`](fmt::Display) round-trip):
/// `ternary`, `ternary:THRESH`, `ternary:THRESH:max`, `ternary:dither`, `bitplane:P`,
/// `levels:K`, `levels:K:dither`.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Encoding {
    /// Two frames: features with `x_i > threshold · max|x|` on in the positive frame, features
    /// with `x_i < −threshold · max|x|` on in the negative frame; the result is
    /// `scale · (L(pos) − L(neg))` with `scale` from [`TernaryScale`]. `threshold` is in `[0, 1)`.
    /// A zero vector keeps nothing and projects to exactly zero.
    Ternary {
        /// Relative threshold in `[0, 1)`.
        threshold: f32,
        /// Scale applied to the ternary code.
        scale: TernaryScale,
    },
    /// lightonml's `SeparatedBitPlanEncoder` with `bits` = p per sign: x is split into its
    /// positive part and its negative part, each scaled by its own maximum `m`, quantized to
    /// `q = round(|x_i| / m · (2^p − 1))`, and sent as p bit-plane frames (most significant
    /// first). Decoding sums plane i (MSB first, i = 0..p) with weight `0.5^i`, times
    /// `m · 2^(p−1) / (2^p − 1)`, which reconstructs `q / (2^p − 1) · m` exactly; positive minus
    /// negative. The error per entry is at most `m / (2 (2^p − 1))`.
    BitPlane {
        /// Bits per sign, 1 ..= [`MAX_BITPLANE_BITS`].
        bits: u32,
    },
    /// `ternary:dither`: two frames, unbiased. With `s = max|x|`, entry `i` is on (in the
    /// positive frame if `x_i > 0`, the negative one if `x_i < 0`) with probability
    /// `|x_i| / s`, from the vector's [`DitherKey`] draws; the result is `s·(L(pos) − L(neg))`,
    /// whose expectation is exactly the projection of `x` (stochastic rounding of `x_i / s` to
    /// {−1, 0, 1}). The variance of entry `i` is `|x_i|·(s − |x_i|)`: quantization errors
    /// average out over the batch sum of DFA's weight update instead of adding up.
    DitheredTernary,
    /// `levels:K` (2 ≤ K ≤ [`MAX_LEVELS`]): K levels chosen per vector, sent as K − 1 binary
    /// frames plus the offset. The entries are sorted and split into the K contiguous groups
    /// that minimize `Σ (x_i − q_i)²` with `q_i` its group's mean (the exact 1-D k-means, or
    /// Lloyd–Max quantizer of the vector's own entries, by dynamic programming in
    /// `O(K · n · log n)`). One level is the offset `c` (the one with the least `Σ_k (v_k − c)²`,
    /// so the frames' weights, and the camera noise they carry, are smallest); each other level
    /// `v` gets a frame of its entries with weight `v − c`. Levels are frames, so they need not
    /// be symmetric: an error vector `softmax − onehot` (one large negative entry, many small
    /// positive ones) keeps its shape. A vector with fewer than K distinct values is exact.
    ///
    /// With `dither`, `levels:K:dither`: the levels are K of the vector's entries, its smallest
    /// and largest included, chosen to minimize the total variance of stochastic rounding
    /// (`Σ (x_i − lo)(hi − x_i)` between neighbouring levels), and each entry is rounded to
    /// its lower level `lo` or upper level `hi` with probability `(hi − x_i) / (hi − lo)` and
    /// `(x_i − lo) / (hi − lo)` from its [`DitherKey`] draw: unbiased, like `ternary:dither`,
    /// but on a grid fitted to the vector.
    Levels {
        /// Levels per vector, 2 ..= [`MAX_LEVELS`].
        levels: u32,
        /// Unbiased stochastic rounding onto the levels instead of the optimal deterministic
        /// quantizer.
        dither: bool,
    },
}

impl Default for Encoding {
    fn default() -> Self {
        Encoding::Ternary {
            threshold: DEFAULT_TERNARY_THRESHOLD,
            scale: TernaryScale::MeanKept,
        }
    }
}

/// A malformed encoding string or out-of-range encoding parameter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodingError {
    /// The string names no encoding.
    #[error(
        "unknown encoding '{0}' (expected ternary, ternary:THRESH[:max], ternary:dither, bitplane:P or levels:K[:dither])"
    )]
    Unknown(String),
    /// A threshold that is not a number in [0, 1).
    #[error("ternary threshold '{0}' is not a number in [0, 1)")]
    Threshold(String),
    /// A scale that is neither `mean` nor `max`.
    #[error("ternary scale '{0}' is not 'mean' or 'max'")]
    Scale(String),
    /// A bit count that is not an integer in 1 ..= 16.
    #[error("bit-plane bits '{0}' is not an integer in 1..={MAX_BITPLANE_BITS}")]
    Bits(String),
    /// A level count that is not an integer in 2 ..= 16.
    #[error("levels '{0}' is not an integer in 2..={MAX_LEVELS}")]
    Levels(String),
    /// A levels option other than `dither`.
    #[error("levels option '{0}' is not 'dither'")]
    LevelsOption(String),
}

impl Encoding {
    /// Checks the parameters.
    pub fn check(&self) -> Result<(), EncodingError> {
        match *self {
            Encoding::Ternary { threshold, .. } => {
                if !(0.0..1.0).contains(&threshold) {
                    return Err(EncodingError::Threshold(threshold.to_string()));
                }
            }
            Encoding::BitPlane { bits } => {
                if !(1..=MAX_BITPLANE_BITS).contains(&bits) {
                    return Err(EncodingError::Bits(bits.to_string()));
                }
            }
            Encoding::DitheredTernary => {}
            Encoding::Levels { levels, .. } => {
                if !(2..=MAX_LEVELS).contains(&levels) {
                    return Err(EncodingError::Levels(levels.to_string()));
                }
            }
        }
        Ok(())
    }

    /// Binary frames one vector becomes (2 for ternary, 2p for bit-plane, K − 1 for K levels).
    pub fn binary_frames(&self) -> usize {
        match *self {
            Encoding::Ternary { .. } | Encoding::DitheredTernary => 2,
            Encoding::BitPlane { bits } => 2 * bits as usize,
            Encoding::Levels { levels, .. } => levels as usize - 1,
        }
    }

    /// Whether the encoding adds an offset `c·1` to its frames (see the type's documentation):
    /// the projector then measures the all-ones pattern's projection at calibration.
    pub fn uses_offset(&self) -> bool {
        matches!(self, Encoding::Levels { .. })
    }

    /// Whether the encoding draws random numbers (from a [`DitherKey`]).
    pub fn is_stochastic(&self) -> bool {
        matches!(
            self,
            Encoding::DitheredTernary | Encoding::Levels { dither: true, .. }
        )
    }

    /// Encodes one vector `x` into `binary_frames()` frames of `x.len()` values 0 or 1
    /// (`bits`, frame after frame) and their decoding weights (`weights`), and returns the
    /// offset `c` (0 unless [`uses_offset`](Self::uses_offset)). A stochastic encoding draws
    /// from `key`. `x` must be finite and the encoding checked.
    pub(crate) fn encode(
        &self,
        x: &[f32],
        key: DitherKey,
        bits: &mut [u8],
        weights: &mut [f32],
    ) -> f32 {
        let n = x.len();
        debug_assert_eq!(bits.len(), self.binary_frames() * n);
        debug_assert_eq!(weights.len(), self.binary_frames());
        bits.fill(0);
        weights.fill(0.0);
        match *self {
            Encoding::Ternary { threshold, scale } => {
                let max = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                if max == 0.0 {
                    return 0.0;
                }
                let cut = threshold * max;
                let (pos, neg) = bits.split_at_mut(n);
                let mut kept = 0usize;
                let mut sum = 0.0f64;
                for (i, &v) in x.iter().enumerate() {
                    if v > cut {
                        pos[i] = 1;
                    } else if v < -cut {
                        neg[i] = 1;
                    } else {
                        continue;
                    }
                    kept += 1;
                    sum += f64::from(v.abs());
                }
                // `max` itself is always kept (threshold < 1), so kept ≥ 1.
                let s = match scale {
                    TernaryScale::MeanKept => (sum / kept.max(1) as f64) as f32,
                    TernaryScale::Max => max,
                };
                weights[0] = s;
                weights[1] = -s;
                0.0
            }
            Encoding::DitheredTernary => {
                let max = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                if max == 0.0 {
                    return 0.0;
                }
                let mut rng = key.rng();
                let (pos, neg) = bits.split_at_mut(n);
                for (i, &v) in x.iter().enumerate() {
                    let u = uniform(&mut rng);
                    if u < f64::from(v.abs()) / f64::from(max) {
                        if v > 0.0 {
                            pos[i] = 1;
                        } else {
                            neg[i] = 1;
                        }
                    }
                }
                weights[0] = max;
                weights[1] = -max;
                0.0
            }
            Encoding::Levels { levels, dither } => {
                encode_levels(x, levels as usize, dither.then_some(key), bits, weights)
            }
            Encoding::BitPlane { bits: p } => {
                let p = p as usize;
                let levels = ((1u32 << p) - 1) as f32;
                let (pos_bits, neg_bits) = bits.split_at_mut(p * n);
                let (pos_w, neg_w) = weights.split_at_mut(p);
                for (sign, planes, w) in [(1.0f32, pos_bits, pos_w), (-1.0, neg_bits, neg_w)] {
                    let m = x.iter().fold(0.0f32, |m, &v| m.max(sign * v));
                    if m <= 0.0 {
                        continue;
                    }
                    for (i, &v) in x.iter().enumerate() {
                        let part = sign * v;
                        if part <= 0.0 {
                            continue;
                        }
                        // In [0, levels] because 0 < part ≤ m.
                        let q = (part / m * levels).round().clamp(0.0, levels) as u32;
                        for (plane, chunk) in planes.chunks_exact_mut(n).enumerate() {
                            chunk[i] = ((q >> (p - 1 - plane)) & 1) as u8;
                        }
                    }
                    let unit = m / levels;
                    for (plane, wp) in w.iter_mut().enumerate() {
                        *wp = sign * unit * (1u32 << (p - 1 - plane)) as f32;
                    }
                }
                0.0
            }
        }
    }

    /// The vector the device actually projects for `x`: `c + Σ_f w_f · b_f` over the encoded
    /// binary frames `b_f`, their weights `w_f` and the offset `c`. Useful to measure the
    /// encoding error on its own. A stochastic encoding draws from `DitherKey::default()`
    /// (seed 0, stream 0); [`quantize_with`](Self::quantize_with) takes the key.
    /// Non-finite entries of `x` give unspecified (but non-panicking) results.
    pub fn quantize(&self, x: &[f32]) -> Vec<f32> {
        self.quantize_with(x, DitherKey::default())
    }

    /// [`quantize`](Self::quantize) with a stochastic encoding's draws from `key`.
    pub fn quantize_with(&self, x: &[f32], key: DitherKey) -> Vec<f32> {
        let k = self.binary_frames();
        let n = x.len();
        let mut bits = vec![0u8; k * n];
        let mut weights = vec![0.0f32; k];
        let offset = self.encode(x, key, &mut bits, &mut weights);
        let mut out = vec![offset; n];
        for (f, w) in weights.iter().enumerate() {
            for (o, &b) in out.iter_mut().zip(&bits[f * n..(f + 1) * n]) {
                if b == 1 {
                    *o += w;
                }
            }
        }
        out
    }
}

/// Positions of `x` in ascending order of value ([`f32::total_cmp`]), ties by position: a
/// total order, so what depends on it is a function of `x` alone. Sorts `(value, position)`
/// packed in `u64` keys when positions fit 32 bits (a plain integer sort, several times faster
/// than comparing through `x`).
fn ascending_order(x: &[f32]) -> Vec<usize> {
    if u32::try_from(x.len()).is_err() {
        let mut order: Vec<usize> = (0..x.len()).collect();
        order.sort_unstable_by(|&a, &b| x[a].total_cmp(&x[b]).then(a.cmp(&b)));
        return order;
    }
    // The IEEE bits made monotone: negative values reversed, non-negative ones above them.
    let monotone = |v: f32| {
        let bits = v.to_bits();
        if bits >> 31 == 1 {
            !bits
        } else {
            bits | (1 << 31)
        }
    };
    let mut keys: Vec<u64> = x
        .iter()
        .enumerate()
        .map(|(i, &v)| (u64::from(monotone(v)) << 32) | i as u64)
        .collect();
    keys.sort_unstable();
    keys.iter()
        .map(|&k| (k & u64::from(u32::MAX)) as usize)
        .collect()
}

/// [`Encoding::Levels`] of `x` with `k` levels (deterministic when `key` is `None`, rounded
/// stochastically with its draws otherwise): fills the `k − 1` frames and weights and returns
/// the offset.
fn encode_levels(
    x: &[f32],
    k: usize,
    key: Option<DitherKey>,
    bits: &mut [u8],
    weights: &mut [f32],
) -> f32 {
    let n = x.len();
    if n == 0 {
        return 0.0;
    }
    let order = ascending_order(x);
    let sorted: Vec<f64> = order.iter().map(|&i| f64::from(x[i])).collect();
    // The level of each entry (by position in `x`) and the level values, ascending.
    let mut level = vec![0usize; n];
    let values: Vec<f64> = match key {
        None => {
            let mut bounds = kmeans_clusters(&sorted, k);
            bounds.push(n);
            bounds
                .windows(2)
                .enumerate()
                .map(|(c, w)| {
                    for &i in &order[w[0]..w[1]] {
                        level[i] = c;
                    }
                    sorted[w[0]..w[1]].iter().sum::<f64>() / (w[1] - w[0]) as f64
                })
                .collect()
        }
        Some(key) => {
            let grid = dither_grid(&sorted, k);
            let mut rng = key.rng();
            let draws: Vec<f64> = (0..n).map(|_| uniform(&mut rng)).collect();
            // Sorted position p lies between grid points t and t + 1.
            let mut t = 0;
            for (p, &i) in order.iter().enumerate() {
                while t + 1 < grid.len() && grid[t + 1] <= p {
                    t += 1;
                }
                level[i] = if p == grid[t] || t + 1 == grid.len() {
                    t
                } else {
                    let (lo, hi) = (sorted[grid[t]], sorted[grid[t + 1]]);
                    let up = if hi > lo {
                        (sorted[p] - lo) / (hi - lo)
                    } else {
                        0.0
                    };
                    if draws[i] < up {
                        t + 1
                    } else {
                        t
                    }
                };
            }
            grid.iter().map(|&p| sorted[p]).collect()
        }
    };
    // The offset level: the least total squared weight of the other levels' frames.
    let spread = |c: f64| values.iter().map(|v| (v - c) * (v - c)).sum::<f64>();
    let offset_level = (0..values.len())
        .min_by(|&a, &b| {
            spread(values[a])
                .total_cmp(&spread(values[b]))
                .then(a.cmp(&b))
        })
        .unwrap_or(0);
    let offset = values[offset_level];
    // Frame of each level: the levels other than the offset, ascending.
    let frame_of = |l: usize| if l < offset_level { l } else { l - 1 };
    for (l, &v) in values.iter().enumerate() {
        if l != offset_level {
            weights[frame_of(l)] = (v - offset) as f32;
        }
    }
    for (i, &l) in level.iter().enumerate() {
        if l != offset_level && weights[frame_of(l)] != 0.0 {
            bits[frame_of(l) * n + i] = 1;
        }
    }
    offset as f32
}

impl Encoding {
    /// The full form, every parameter written out (`ternary:0.25`, `ternary:0.1:max`,
    /// `bitplane:2`): what a projector's identity records. `Display` writes the short form
    /// users type, with `ternary` for the default ternary encoding.
    pub fn canonical(&self) -> String {
        match *self {
            Encoding::Ternary { threshold, scale } => match scale {
                TernaryScale::Max => format!("ternary:{threshold}:max"),
                TernaryScale::MeanKept => format!("ternary:{threshold}"),
            },
            Encoding::BitPlane { .. } | Encoding::DitheredTernary | Encoding::Levels { .. } => {
                self.to_string()
            }
        }
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Encoding::Ternary { threshold, scale }
                if threshold == DEFAULT_TERNARY_THRESHOLD && scale == TernaryScale::MeanKept =>
            {
                f.write_str("ternary")
            }
            Encoding::Ternary { threshold, scale } => {
                write!(f, "ternary:{threshold}")?;
                if scale == TernaryScale::Max {
                    f.write_str(":max")?;
                }
                Ok(())
            }
            Encoding::BitPlane { bits } => write!(f, "bitplane:{bits}"),
            Encoding::DitheredTernary => f.write_str("ternary:dither"),
            Encoding::Levels { levels, dither } => {
                write!(f, "levels:{levels}")?;
                if dither {
                    f.write_str(":dither")?;
                }
                Ok(())
            }
        }
    }
}

/// The parameter `text` (empty if missing) as an integer in `range`, else `error(text)`.
fn integer_in(
    text: Option<&str>,
    range: std::ops::RangeInclusive<u32>,
    error: fn(String) -> EncodingError,
) -> Result<u32, EncodingError> {
    let text = text.unwrap_or("");
    text.parse::<u32>()
        .ok()
        .filter(|v| range.contains(v))
        .ok_or_else(|| error(text.to_string()))
}

impl FromStr for Encoding {
    type Err = EncodingError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.trim().split(':');
        let name = parts.next().unwrap_or_default();
        let encoding = match name {
            "ternary" => {
                let threshold = match parts.next() {
                    Some("dither") => {
                        return match parts.next() {
                            None => Ok(Encoding::DitheredTernary),
                            Some(_) => Err(EncodingError::Unknown(s.to_string())),
                        };
                    }
                    None => DEFAULT_TERNARY_THRESHOLD,
                    Some(t) => t
                        .parse::<f32>()
                        .ok()
                        .filter(|v| (0.0..1.0).contains(v))
                        .ok_or_else(|| EncodingError::Threshold(t.to_string()))?,
                };
                let scale = match parts.next() {
                    None | Some("mean") => TernaryScale::MeanKept,
                    Some("max") => TernaryScale::Max,
                    Some(other) => return Err(EncodingError::Scale(other.to_string())),
                };
                Encoding::Ternary { threshold, scale }
            }
            "bitplane" => {
                let bits = integer_in(parts.next(), 1..=MAX_BITPLANE_BITS, EncodingError::Bits)?;
                Encoding::BitPlane { bits }
            }
            "levels" => {
                let levels = integer_in(parts.next(), 2..=MAX_LEVELS, EncodingError::Levels)?;
                let dither = match parts.next() {
                    None => false,
                    Some("dither") => true,
                    Some(other) => return Err(EncodingError::LevelsOption(other.to_string())),
                };
                Encoding::Levels { levels, dither }
            }
            _ => return Err(EncodingError::Unknown(s.to_string())),
        };
        if parts.next().is_some() {
            return Err(EncodingError::Unknown(s.to_string()));
        }
        Ok(encoding)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display_round_trip() {
        for s in [
            "ternary",
            "ternary:0.25:max",
            "ternary:0.1:max",
            "ternary:0",
            "bitplane:1",
            "bitplane:8",
            "ternary:dither",
            "levels:2",
            "levels:3",
            "levels:16",
            "levels:3:dither",
        ] {
            let e: Encoding = s.parse().unwrap();
            assert_eq!(e.to_string(), s);
            assert_eq!(e.to_string().parse::<Encoding>().unwrap(), e);
        }
        assert_eq!("ternary".parse::<Encoding>().unwrap(), Encoding::default());
        assert_eq!(
            "ternary:0.25".parse::<Encoding>().unwrap().to_string(),
            "ternary"
        );
        assert_eq!(Encoding::default().canonical(), "ternary:0.25");
        assert_eq!(
            "ternary:0.3:mean".parse::<Encoding>().unwrap(),
            Encoding::Ternary {
                threshold: 0.3,
                scale: TernaryScale::MeanKept
            }
        );
    }

    #[test]
    fn parse_errors_are_one_line() {
        for bad in [
            "",
            "binary",
            "ternary:",
            "ternary:1",
            "ternary:-0.1",
            "ternary:nan",
            "ternary:0.2:median",
            "bitplane",
            "bitplane:0",
            "bitplane:17",
            "bitplane:x",
            "bitplane:4:2",
            "ternary:dither:max",
            "ternary:dither:0.2",
            "levels",
            "levels:",
            "levels:1",
            "levels:17",
            "levels:x",
            "levels:3:nearest",
            "levels:3:dither:2",
        ] {
            let err = bad.parse::<Encoding>().unwrap_err();
            let msg = err.to_string();
            assert!(!msg.contains('\n') && !msg.is_empty(), "{bad}: {msg}");
        }
        assert!(Encoding::BitPlane { bits: 0 }.check().is_err());
        assert!(Encoding::Ternary {
            threshold: f32::NAN,
            scale: TernaryScale::Max
        }
        .check()
        .is_err());
    }

    #[test]
    fn ternary_codes_and_scale() {
        let e: Encoding = "ternary:0.5".parse().unwrap();
        let x = [1.0, -0.8, 0.4, -0.2, 0.6, 0.0];
        let mut bits = vec![0; 12];
        let mut w = vec![0.0; 2];
        e.encode(&x, DitherKey::default(), &mut bits, &mut w);
        assert_eq!(&bits[..6], &[1, 0, 0, 0, 1, 0]);
        assert_eq!(&bits[6..], &[0, 1, 0, 0, 0, 0]);
        let mean = (1.0 + 0.8 + 0.6) / 3.0;
        assert!((w[0] - mean).abs() < 1e-6 && (w[1] + mean).abs() < 1e-6);
        // A zero vector keeps nothing, with zero weights (no division by zero).
        e.encode(&[0.0; 6], DitherKey::default(), &mut bits, &mut w);
        assert!(bits.iter().all(|&b| b == 0));
        assert_eq!(w, [0.0, 0.0]);
    }

    #[test]
    fn bitplane_is_exact_on_its_grid_and_error_is_bounded() {
        // With p bits, multiples of m / (2^p − 1) are represented exactly.
        let e = Encoding::BitPlane { bits: 3 };
        let x = [7.0, 3.0, 0.0, -2.0, -7.0, 5.0];
        let q = e.quantize(&x);
        for (a, b) in x.iter().zip(&q) {
            assert!((a - b).abs() < 1e-5 * 7.0, "{x:?} → {q:?}");
        }
        let x: Vec<f32> = (0..50)
            .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
            .collect();
        let max = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let mut prev = f32::INFINITY;
        for p in 1..=10 {
            let e = Encoding::BitPlane { bits: p };
            let out = e.quantize(&x);
            let worst = x
                .iter()
                .zip(&out)
                .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
            let bound = max / (2.0 * ((1u32 << p) - 1) as f32) * (1.0 + 1e-5);
            assert!(worst <= bound, "p={p}: {worst} > {bound}");
            assert!(worst <= prev || worst <= bound);
            prev = worst;
        }
        // A zero vector gives zero weights.
        let mut bits = vec![1; 2 * 4 * 3];
        let mut w = vec![1.0; 8];
        Encoding::BitPlane { bits: 4 }.encode(&[0.0; 3], DitherKey::default(), &mut bits, &mut w);
        assert!(bits.iter().all(|&b| b == 0) && w.iter().all(|&v| v == 0.0));
    }

    /// Statistics of `draws` stochastic encodings of `x` (streams 0..draws of seed 11): the
    /// per-entry mean and sample standard deviation.
    fn draw_stats(e: Encoding, x: &[f32], draws: u64) -> (Vec<f64>, Vec<f64>) {
        let n = x.len();
        let (mut sum, mut squares) = (vec![0.0f64; n], vec![0.0f64; n]);
        for stream in 0..draws {
            let q = e.quantize_with(x, DitherKey { seed: 11, stream });
            for i in 0..n {
                sum[i] += f64::from(q[i]);
                squares[i] += f64::from(q[i]) * f64::from(q[i]);
            }
        }
        let d = draws as f64;
        let mean: Vec<f64> = sum.iter().map(|s| s / d).collect();
        let sd = (0..n)
            .map(|i| {
                ((squares[i] - d * mean[i] * mean[i]) / (d - 1.0))
                    .max(0.0)
                    .sqrt()
            })
            .collect();
        (mean, sd)
    }

    #[test]
    fn dithered_encodings_are_unbiased() {
        // An error-like vector (one large negative entry, small positive ones) and a generic
        // signed one. Over 20,000 draws each entry's mean must equal the input within 5
        // standard errors (z-test, sample standard deviation) plus float rounding; the
        // encodings draw from fixed keys, so the test is deterministic.
        let draws = 20_000u64;
        let vectors: [&[f32]; 2] = [
            &[-0.6, 0.3, 0.2, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05],
            &[0.9, -0.35, 0.1, -0.8, 0.0, 0.42, -0.05, 0.61],
        ];
        for enc in [
            "ternary:dither",
            "levels:2:dither",
            "levels:3:dither",
            "levels:4:dither",
        ] {
            let e: Encoding = enc.parse().unwrap();
            assert!(e.is_stochastic());
            for x in vectors {
                let (mean, sd) = draw_stats(e, x, draws);
                for i in 0..x.len() {
                    let tolerance = 5.0 * sd[i] / (draws as f64).sqrt() + 1e-6;
                    let bias = (mean[i] - f64::from(x[i])).abs();
                    assert!(
                        bias <= tolerance,
                        "{enc} {x:?}[{i}]: mean {} vs {}",
                        mean[i],
                        x[i]
                    );
                }
            }
        }
        // ternary:dither: the variance of entry i is |x_i| (s − |x_i|), s = max |x| (within
        // 5 % at 20,000 draws; entries with zero variance are exact).
        let x = vectors[1];
        let s = f64::from(0.9f32);
        let (_, sd) = draw_stats("ternary:dither".parse().unwrap(), x, draws);
        for (i, &v) in x.iter().enumerate() {
            let want = f64::from(v.abs()) * (s - f64::from(v.abs()));
            let got = sd[i] * sd[i];
            assert!(
                (got - want).abs() <= 0.05 * want + 1e-6,
                "[{i}]: variance {got} vs {want}"
            );
        }
    }

    #[test]
    fn dithered_draws_are_pinned_by_their_key() {
        // Golden values: the draws of ChaCha8 seed 7, stream 3 for this vector. A change to the
        // generator, the stream layout or the rounding rule changes them.
        let x = [0.5f32, -0.25, 0.125, -1.0, 0.75, 0.0];
        let key = DitherKey { seed: 7, stream: 3 };
        let ternary: Encoding = "ternary:dither".parse().unwrap();
        assert_eq!(
            ternary.quantize_with(&x, key),
            [0.0, -1.0, 0.0, -1.0, 1.0, 0.0]
        );
        // Three levels: the extremes and 0 (the grid of least rounding variance).
        let levels: Encoding = "levels:3:dither".parse().unwrap();
        assert_eq!(
            levels.quantize_with(&x, key),
            [0.75, 0.0, 0.0, -1.0, 0.75, 0.0]
        );
        // Same key, same code; the next stream draws afresh.
        assert_eq!(
            ternary.quantize_with(&x, key),
            ternary.quantize_with(&x, key)
        );
        let other: Vec<Vec<f32>> = (0..8)
            .map(|stream| ternary.quantize_with(&x, DitherKey { seed: 7, stream }))
            .collect();
        assert!(other.iter().any(|q| q != &other[0]));
        // Deterministic encodings ignore the key.
        let det: Encoding = "levels:3".parse().unwrap();
        assert_eq!(det.quantize_with(&x, key), det.quantize(&x));
    }

    #[test]
    fn levels_are_the_best_k_level_code_with_an_offset() {
        // The error vector of the analysis: one target entry, two large and seven small
        // probabilities. Three levels: {-0.6}, {0.05 ×7}, {0.3, 0.2} → 0.25; SNR 20 dB.
        let e = [-0.6f32, 0.3, 0.2, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05];
        let three: Encoding = "levels:3".parse().unwrap();
        assert_eq!(three.binary_frames(), 2);
        assert!(three.uses_offset() && !three.is_stochastic());
        let mut bits = vec![0u8; 2 * 10];
        let mut w = vec![0.0f32; 2];
        let offset = three.encode(&e, DitherKey::default(), &mut bits, &mut w);
        // The small entries' level is the offset (least squared weights); the target and the
        // two large entries get a frame each, ascending.
        assert!((offset - 0.05).abs() < 1e-6, "{offset}");
        assert_eq!(&bits[..10], &[1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&bits[10..], &[0, 1, 1, 0, 0, 0, 0, 0, 0, 0]);
        assert!(
            (w[0] + 0.65).abs() < 1e-6 && (w[1] - 0.2).abs() < 1e-6,
            "{w:?}"
        );
        let q = three.quantize(&e);
        let err: f32 = e.iter().zip(&q).map(|(a, b)| (a - b) * (a - b)).sum();
        let energy: f32 = e.iter().map(|a| a * a).sum();
        let snr = 10.0 * (energy / err).log10();
        assert!((snr - 20.07).abs() < 0.01, "{snr} dB");
        // Ternary on the same vector, same frames: about 7 dB.
        let t = Encoding::default().quantize(&e);
        let alpha = e.iter().zip(&t).map(|(a, b)| a * b).sum::<f32>()
            / t.iter().map(|b| b * b).sum::<f32>();
        let err_t: f32 = e.iter().zip(&t).map(|(a, b)| (a - alpha * b).powi(2)).sum();
        assert!((10.0 * (energy / err_t).log10() - 7.0).abs() < 0.5);

        // Exact with at most K distinct values, whatever they are; zero vector gives zeros.
        let x = [2.5f32, -1.0, 2.5, 0.25, -1.0, 0.25];
        assert_eq!(three.quantize(&x), x);
        assert_eq!(
            Encoding::Levels {
                levels: 2,
                dither: false
            }
            .quantize(&[0.0; 4]),
            [0.0; 4]
        );
        let mut w = vec![1.0f32; 2];
        let mut bits = vec![1u8; 2 * 4];
        assert_eq!(
            three.encode(&[0.0; 4], DitherKey::default(), &mut bits, &mut w),
            0.0
        );
        assert!(bits.iter().all(|&b| b == 0) && w == [0.0, 0.0]);

        // No other K-level code does better: against every grouping of the sorted entries into
        // K runs, each at its mean (brute force over cut positions, n = 9).
        let x = [0.9f32, -0.35, 0.1, -0.8, 0.0, 0.42, -0.05, 0.61, 0.33];
        let mut sorted = x.to_vec();
        sorted.sort_by(f32::total_cmp);
        let sse = |q: &[f32], v: &[f32]| -> f64 {
            q.iter().zip(v).map(|(a, b)| f64::from(a - b).powi(2)).sum()
        };
        for k in 2..=4u32 {
            let q = Encoding::Levels {
                levels: k,
                dither: false,
            }
            .quantize(&x);
            let mut distinct = q.clone();
            distinct.sort_by(f32::total_cmp);
            distinct.dedup();
            assert!(distinct.len() <= k as usize);
            let got = sse(&q, &x);
            let mut best = f64::INFINITY;
            for cuts in 0u32..(1 << 8) {
                if cuts.count_ones() != k - 1 {
                    continue;
                }
                let mut cost = 0.0;
                let mut start = 0;
                for end in 1..=9 {
                    if end == 9 || cuts & (1 << (end - 1)) != 0 {
                        let run = &sorted[start..end];
                        let mean = run.iter().sum::<f32>() / run.len() as f32;
                        cost += sse(run, &vec![mean; run.len()]);
                        start = end;
                    }
                }
                best = best.min(cost);
            }
            assert!(got <= best + 1e-6, "levels:{k}: {got} > {best}");
        }
    }
}
