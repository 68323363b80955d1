//! Signed float vectors as weighted sums of binary frames.

use std::fmt;
use std::str::FromStr;

/// Default relative threshold of [`Encoding::Ternary`].
pub const DEFAULT_TERNARY_THRESHOLD: f32 = 0.25;

/// Most bits per sign of [`Encoding::BitPlane`].
pub const MAX_BITPLANE_BITS: u32 = 16;

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
/// vectors `b_f` with weights `w_f` such that `x ≈ Σ_f w_f · b_f`; by linearity the projection of
/// `x` is `Σ_f w_f · L(b_f)`. Both encodings are per vector (row): scales come from that row alone.
///
/// String forms ([`FromStr`] and [`Display`](fmt::Display) round-trip):
/// `ternary`, `ternary:THRESH`, `ternary:THRESH:max`, `bitplane:P`.
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
    #[error("unknown encoding '{0}' (expected ternary, ternary:THRESH[:max] or bitplane:P)")]
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
        }
        Ok(())
    }

    /// Binary frames one vector becomes (2 for ternary, 2p for bit-plane).
    pub fn binary_frames(&self) -> usize {
        match *self {
            Encoding::Ternary { .. } => 2,
            Encoding::BitPlane { bits } => 2 * bits as usize,
        }
    }

    /// Encodes one vector `x` into `binary_frames()` frames of `x.len()` values 0 or 1
    /// (`bits`, frame after frame) and their decoding weights (`weights`). `x` must be finite
    /// and the encoding checked.
    pub(crate) fn encode(&self, x: &[f32], bits: &mut [u8], weights: &mut [f32]) {
        let n = x.len();
        debug_assert_eq!(bits.len(), self.binary_frames() * n);
        debug_assert_eq!(weights.len(), self.binary_frames());
        bits.fill(0);
        weights.fill(0.0);
        match *self {
            Encoding::Ternary { threshold, scale } => {
                let max = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                if max == 0.0 {
                    return;
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
            }
        }
    }

    /// The vector the device actually projects for `x`: `Σ_f w_f · b_f` over the encoded
    /// binary frames `b_f` and their weights `w_f`. Useful to measure the encoding error on its own.
    /// Non-finite entries of `x` give unspecified (but non-panicking) results.
    pub fn quantize(&self, x: &[f32]) -> Vec<f32> {
        let k = self.binary_frames();
        let n = x.len();
        let mut bits = vec![0u8; k * n];
        let mut weights = vec![0.0f32; k];
        self.encode(x, &mut bits, &mut weights);
        let mut out = vec![0.0f32; n];
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
            Encoding::BitPlane { bits } => format!("bitplane:{bits}"),
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
        }
    }
}

impl FromStr for Encoding {
    type Err = EncodingError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.trim().split(':');
        let name = parts.next().unwrap_or_default();
        let encoding = match name {
            "ternary" => {
                let threshold = match parts.next() {
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
                let b = parts.next().unwrap_or("");
                let bits = b
                    .parse::<u32>()
                    .ok()
                    .filter(|v| (1..=MAX_BITPLANE_BITS).contains(v))
                    .ok_or_else(|| EncodingError::Bits(b.to_string()))?;
                Encoding::BitPlane { bits }
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
        e.encode(&x, &mut bits, &mut w);
        assert_eq!(&bits[..6], &[1, 0, 0, 0, 1, 0]);
        assert_eq!(&bits[6..], &[0, 1, 0, 0, 0, 0]);
        let mean = (1.0 + 0.8 + 0.6) / 3.0;
        assert!((w[0] - mean).abs() < 1e-6 && (w[1] + mean).abs() < 1e-6);
        // A zero vector keeps nothing, with zero weights (no division by zero).
        e.encode(&[0.0; 6], &mut bits, &mut w);
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
        Encoding::BitPlane { bits: 4 }.encode(&[0.0; 3], &mut bits, &mut w);
        assert!(bits.iter().all(|&b| b == 0) && w.iter().all(|&v| v == 0.0));
    }
}
