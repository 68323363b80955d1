//! The camera: exposure, shot noise, read noise, dark offset, full well, ADC.
//!
//! Per pixel of intensity `I` (unit intensity = mean of a fully lit DMD):
//!
//! 1. mean photoelectrons `λ = I · photon_rate_per_us · exposure_us · quantum_efficiency`;
//! 2. shot noise: `e ~ Poisson(λ)`, drawn exactly for `λ < POISSON_EXACT_BELOW` and as
//!    `round(λ + sqrt(λ)·z)` above (the approximation ignores a skewness of 1/√λ ≤ 0.14);
//!    without shot noise `e = λ`;
//! 3. full well: `e ← clamp(e, 0, full_well_e)`;
//! 4. readout: `v = e + dark_offset_e + read_noise_e · z'`;
//! 5. ADC: `count = clamp(round(v / electrons_per_count), 0, 2^bits − 1)`, halves rounded up.
//!
//! In the Gaussian regime and more than 8 standard deviations below the full well (where step 3
//! cannot act), steps 2 to 4 draw one Gaussian of variance `λ + read_noise_e²`: the same law,
//! one random draw instead of two.
//!
//! Arithmetic is `f32` (the ADC's step dwarfs its rounding). Every pixel gets one standard
//! Gaussian `z` (the read noise, or the combined noise in the Gaussian regime) from a
//! vectorized Box–Muller sampler; the pixels with `0 < λ < POISSON_EXACT_BELOW` (and the rare
//! ones in the Gaussian regime near the full well) then draw their shot noise one by one: exact
//! Poisson counts by table inversion and thinning, no transcendental function per draw (see
//! `noise.rs` in the sources).
//!
//! ## Where the noise comes from
//!
//! A frame is cut into segments of [`SEGMENT_PIXELS`] pixels. Segment `s` of the frame with
//! global index `t` seeds its generators from words `40·s .. 40·s + 40` of the ChaCha8 stream
//! `t` of the camera key derived from the seed: 32 words seed eight xoshiro128++ lanes, which
//! give every pixel its Gaussian in pixel order (two lane steps per 16 pixels), and 8 words seed
//! a xoshiro256++ generator that serves, in pixel order, the pixels that need more draws. So the
//! noise of a frame depends only on (seed, `t`), not on how frames are batched or on threads,
//! and segments run in parallel; the Gaussian of pixel `j` depends only on (seed, `t`, `j`).
//! The samplers use only IEEE-exact operations (no libm, no fused multiply-add), so the counts
//! are the same on every machine and whatever SIMD instructions the CPU offers.

use rand::RngCore;
use rayon::prelude::*;
use std::sync::OnceLock;

use crate::config::CameraConfig;
use crate::noise::{self, Lanes, PoissonTables, Xoshiro256, LANES, POISSON_TABLE_BOUND};
use crate::rng::{self, Purpose};

/// Below this mean (electrons) shot noise is drawn from the exact Poisson law; above it from
/// its Gaussian approximation.
pub const POISSON_EXACT_BELOW: f64 = POISSON_TABLE_BOUND as f64;

/// Pixels of a frame that share one set of generators (the unit of parallel work in a frame).
/// Part of the noise streams: never change it.
pub const SEGMENT_PIXELS: usize = 4096;

/// ChaCha8 words that seed one segment's generators: 32 for the lanes, 8 for the scalar one.
const SEED_WORDS: usize = 4 * LANES + 8;

/// Standard deviations between the mean and the full well beyond which the full-well clamp is
/// treated as unreachable (a Gaussian exceeds 8σ with probability 6·10⁻¹⁶).
const FAR_SIGMAS: f64 = 8.0;

/// 2^23: `(x + 2^23) − 2^23` is `x` rounded to an integer for `0 ≤ x < 2^23`.
const ROUND_SHIFT: f32 = 8_388_608.0;

/// Pixels processed together on the stack (a multiple of the 16 pixels of a Box–Muller step).
const CHUNK: usize = 256;

/// Flag: the pixel's shot noise is drawn one by one (Poisson, or Gaussian near the full well).
const SHOT: u8 = 1;
/// Flag: the pixel's Box–Muller pair needs the refined radius (first pixel of the pair).
const REFINE: u8 = 2;

/// The Poisson tables, built once per process.
fn poisson_tables() -> &'static PoissonTables {
    static TABLES: OnceLock<PoissonTables> = OnceLock::new();
    TABLES.get_or_init(PoissonTables::new)
}

/// The per-pixel constants, in the `f32` the pipeline computes in.
#[derive(Debug, Clone, Copy)]
struct Pipeline {
    electrons_per_intensity: f32,
    shot_noise: bool,
    read_noise_e: f32,
    read_var: f32,
    dark_offset_e: f32,
    full_well_e: f32,
    /// The largest `λ` with `λ + 8·sqrt(λ) ≤ full_well_e`: above it the full well is near.
    far_below: f32,
    counts_per_electron: f32,
    max_count: f32,
}

impl Pipeline {
    /// Steps 3 to 5 for a pixel whose noise is `z` alone: the Gaussian regime far from the full
    /// well (`far`), or no shot noise to draw (`e = clamp(λ, 0, full well)`).
    #[inline(always)]
    fn gaussian_count(&self, lambda: f32, z: f32) -> (f32, bool) {
        let poisson_or_well = lambda < POISSON_TABLE_BOUND || lambda > self.far_below;
        let far = self.shot_noise && !poisson_or_well;
        let needs_shot = self.shot_noise && lambda > 0.0 && poisson_or_well;
        let e = if far {
            lambda
        } else {
            lambda.max(0.0).min(self.full_well_e)
        };
        let sd = if far {
            (lambda + self.read_var).sqrt()
        } else {
            self.read_noise_e
        };
        (self.adc(e + self.dark_offset_e + sd * z), needs_shot)
    }

    /// Step 5: `clamp(round(volts / electrons_per_count), 0, max)`, halves rounded up.
    #[inline(always)]
    fn adc(&self, volts: f32) -> f32 {
        let x = (volts * self.counts_per_electron)
            .max(0.0)
            .min(self.max_count);
        // x is in [0, 2^16]: adding and removing 2^23 rounds it to an integer, halves to even
        // (IEEE), and r − x is exact; a half rounded down is moved up.
        let r = (x + ROUND_SHIFT) - ROUND_SHIFT;
        if r - x == -0.5 {
            r + 1.0
        } else {
            r
        }
    }

    /// Step 2 for a pixel that draws its shot noise, from two uniform words (and, rarely, more
    /// from `rng`): exact Poisson for `0 < λ < POISSON_EXACT_BELOW`, else (the Gaussian regime
    /// near the full well) its own Gaussian, rounded.
    #[inline(always)]
    fn shot_electrons(lambda: f32, uniforms: [u64; 2], rng: &mut Xoshiro256) -> f32 {
        if lambda < POISSON_TABLE_BOUND {
            poisson_tables().sample(lambda, uniforms, rng) as f32
        } else {
            let z_shot = noise::gaussian_from_bits(uniforms[0], rng);
            (lambda + lambda.sqrt() * z_shot).round()
        }
    }

    /// Steps 3 to 5 for a pixel with `e` photoelectrons and read noise `z`.
    #[inline(always)]
    fn shot_count(&self, e: f32, z: f32) -> f32 {
        let e = e.max(0.0).min(self.full_well_e);
        self.adc(e + self.dark_offset_e + self.read_noise_e * z)
    }
}

/// The vectorized part of one chunk: every pixel's Gaussian into `z`, its count for the
/// Gaussian regimes into `values` (the intensity saved in `lambda`), and flags for the pixels
/// the scalar pass must finish. Returns whether any pixel is flagged.
#[multiversion::multiversion(targets = "simd")]
fn gaussian_pass(
    p: &Pipeline,
    lanes: &mut Lanes,
    values: &mut [f32],
    z: &mut [f32; CHUNK],
    lambda: &mut [f32; CHUNK],
    flags: &mut [u8; CHUNK],
) -> bool {
    let mut refine = [false; LANES];
    for (zs, fs) in z
        .chunks_exact_mut(2 * LANES)
        .zip(flags.chunks_exact_mut(2 * LANES))
        .take(values.len().div_ceil(2 * LANES))
    {
        noise::gaussians16(lanes, zs, &mut refine);
        for (f, &r) in fs.iter_mut().zip(&refine) {
            *f = if r { REFINE } else { 0 };
        }
        fs[LANES..].fill(0);
    }
    let mut any = 0u8;
    for (((v, &zv), l), f) in values
        .iter_mut()
        .zip(z.iter())
        .zip(lambda.iter_mut())
        .zip(flags.iter_mut())
    {
        let lam = *v * p.electrons_per_intensity;
        *l = lam;
        let (count, needs_shot) = p.gaussian_count(lam, zv);
        *v = count;
        *f |= if needs_shot { SHOT } else { 0 };
        any |= *f;
    }
    any != 0
}

/// The counts of the pixels that drew their shot noise (`electrons`), vectorized.
#[multiversion::multiversion(targets = "simd")]
fn shot_pass(
    p: &Pipeline,
    values: &mut [f32],
    z: &[f32; CHUNK],
    electrons: &[f32; CHUNK],
    flags: &[u8; CHUNK],
) {
    for (((v, &zv), &e), &f) in values.iter_mut().zip(z).zip(electrons).zip(flags) {
        let count = p.shot_count(e, zv);
        if f & SHOT != 0 {
            *v = count;
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Camera {
    ideal: bool,
    pipeline: Pipeline,
    key: [u8; 32],
}

impl Camera {
    pub(crate) fn new(c: &CameraConfig, seed: u64) -> Self {
        let electrons_per_intensity = c.photon_rate_per_us * c.exposure_us * c.quantum_efficiency;
        // λ + 8√λ = W at √λ = −4 + sqrt(16 + W).
        let root = -FAR_SIGMAS / 2.0 + (FAR_SIGMAS * FAR_SIGMAS / 4.0 + c.full_well_e).sqrt();
        Self {
            ideal: c.ideal,
            pipeline: Pipeline {
                electrons_per_intensity: electrons_per_intensity as f32,
                shot_noise: c.shot_noise,
                read_noise_e: c.read_noise_e as f32,
                read_var: (c.read_noise_e * c.read_noise_e) as f32,
                dark_offset_e: c.dark_offset_e as f32,
                full_well_e: c.full_well_e as f32,
                far_below: (root * root) as f32,
                counts_per_electron: (1.0 / c.electrons_per_count) as f32,
                max_count: ((1u32 << c.bits) - 1) as f32,
            },
            key: rng::derive_key(seed, Purpose::Camera, 0),
        }
    }

    pub(crate) fn is_ideal(&self) -> bool {
        self.ideal
    }

    /// Turns `frames` frames of intensities (`pixels` each, frame after frame) into camera
    /// values in place; the first frame has global index `first_frame`.
    pub(crate) fn expose(&self, first_frame: u64, pixels: usize, values: &mut [f32]) {
        if self.ideal || pixels == 0 {
            return;
        }
        if pixels <= SEGMENT_PIXELS {
            // Several small frames per task.
            values
                .par_chunks_mut(pixels)
                .enumerate()
                .with_min_len((SEGMENT_PIXELS / pixels).max(1))
                .for_each(|(b, frame)| self.expose_segment(first_frame + b as u64, 0, frame));
        } else {
            values
                .par_chunks_mut(pixels)
                .enumerate()
                .for_each(|(b, frame)| self.expose_frame(first_frame + b as u64, frame));
        }
    }

    /// One frame, its segments in parallel.
    pub(crate) fn expose_frame(&self, frame_index: u64, frame: &mut [f32]) {
        frame
            .par_chunks_mut(SEGMENT_PIXELS)
            .enumerate()
            .for_each(|(s, segment)| self.expose_segment(frame_index, s as u64, segment));
    }

    /// The generators of segment `segment` of frame `frame_index` (see the module docs).
    fn generators(&self, frame_index: u64, segment: u64) -> Generators {
        let mut chacha = rng::stream_rng(&self.key, frame_index);
        chacha.set_word_pos(u128::from(segment) * SEED_WORDS as u128);
        let mut bytes = [0u8; 4 * SEED_WORDS];
        chacha.fill_bytes(&mut bytes);
        let words: [u32; SEED_WORDS] = std::array::from_fn(|i| {
            u32::from_le_bytes([
                bytes[4 * i],
                bytes[4 * i + 1],
                bytes[4 * i + 2],
                bytes[4 * i + 3],
            ])
        });
        let lanes = |at: usize| {
            Lanes::from_words(words[at..at + 4 * LANES].try_into().expect("32 lane words"))
        };
        Generators {
            gaussian: lanes(0),
            scalar: Xoshiro256::from_words(words[4 * LANES..].try_into().expect("8 scalar words")),
        }
    }

    /// Pixels `segment·SEGMENT_PIXELS ..` of frame `frame_index` (at most `SEGMENT_PIXELS`).
    fn expose_segment(&self, frame_index: u64, segment: u64, values: &mut [f32]) {
        let mut g = self.generators(frame_index, segment);
        let p = &self.pipeline;
        let mut z = [0f32; CHUNK];
        let mut lambda = [0f32; CHUNK];
        let mut flags = [0u8; CHUNK];
        let mut electrons = [0f32; CHUNK];
        for chunk in values.chunks_mut(CHUNK) {
            if !gaussian_pass(p, &mut g.gaussian, chunk, &mut z, &mut lambda, &mut flags) {
                continue;
            }
            // The scalar pass, in pixel order over the flagged pixels (eight flags a word).
            let len = chunk.len();
            for (w, word) in flags.chunks_exact(8).enumerate().take(len.div_ceil(8)) {
                let word = u64::from_le_bytes(word.try_into().expect("eight flags"));
                let mut set = (word | word >> 1) & 0x0101_0101_0101_0101;
                while set != 0 {
                    let j = 8 * w + set.trailing_zeros() as usize / 8;
                    set &= set - 1;
                    if j >= len {
                        break;
                    }
                    if flags[j] & REFINE != 0 {
                        // The pair (j, j + 8) had u ≤ 2^-24: redraw its radius from 48 bits.
                        let ratio = noise::refined_radius(g.scalar.next_u64()) / noise::radius(0);
                        for k in [j, j + LANES] {
                            z[k] *= ratio;
                            if k < len && flags[k] & SHOT == 0 {
                                chunk[k] = p.gaussian_count(lambda[k], z[k]).0;
                            }
                        }
                    }
                    if flags[j] & SHOT != 0 {
                        let pair = [g.scalar.next_u64(), g.scalar.next_u64()];
                        electrons[j] = Pipeline::shot_electrons(lambda[j], pair, &mut g.scalar);
                    }
                }
            }
            shot_pass(p, chunk, &z, &electrons, &flags);
        }
    }
}

/// One segment's generators (see the module docs).
struct Generators {
    /// Every pixel's Gaussian.
    gaussian: Lanes,
    /// The draws of the pixels that draw their shot noise, in pixel order.
    scalar: Xoshiro256,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DeviceConfig;

    fn camera(edit: impl FnOnce(&mut CameraConfig)) -> Camera {
        let mut c = DeviceConfig::preset("lighton").unwrap().camera;
        edit(&mut c);
        Camera::new(&c, 5)
    }

    #[test]
    fn adc_rounds_halves_up_and_clamps() {
        let p = camera(|c| c.electrons_per_count = 1.0).pipeline;
        for (volts, count) in [
            (-3.0, 0.0),
            (0.49, 0.0),
            (0.5, 1.0),
            (2.5, 3.0),
            (2.499_999_8, 2.0),
            (254.5, 255.0),
            (1e9, 255.0),
        ] {
            assert_eq!(p.adc(volts), count, "{volts}");
        }
    }

    #[test]
    fn far_threshold_solves_the_well_equation() {
        let p = camera(|c| c.full_well_e = 4500.0).pipeline;
        let l = f64::from(p.far_below);
        assert!((l + 8.0 * l.sqrt() - 4500.0).abs() < 1e-2, "{l}");
    }

    /// Frame t's noise depends on t alone: segments, batches and the split of a frame into
    /// segments run in any order.
    #[test]
    fn noise_is_keyed_by_frame_and_segment() {
        let cam = camera(|_| {});
        let m = 2 * SEGMENT_PIXELS + 300;
        let frames: Vec<f32> = (0..3 * m).map(|i| (i % 97) as f32 * 0.01).collect();
        let mut batch = frames.clone();
        cam.expose(10, m, &mut batch);
        for f in 0..3 {
            let mut one = frames[f * m..(f + 1) * m].to_vec();
            cam.expose(10 + f as u64, m, &mut one);
            assert_eq!(one, batch[f * m..(f + 1) * m], "frame {f}");
            // Segment by segment, last first.
            let mut parts = frames[f * m..(f + 1) * m].to_vec();
            for s in (0..3).rev() {
                let end = ((s + 1) * SEGMENT_PIXELS).min(m);
                cam.expose_segment(10 + f as u64, s as u64, &mut parts[s * SEGMENT_PIXELS..end]);
            }
            assert_eq!(parts, one, "frame {f} by segments");
        }
        // Another frame index gives other noise.
        let mut other = frames[..m].to_vec();
        cam.expose(11, m, &mut other);
        assert_ne!(other, batch[..m]);
    }
}
