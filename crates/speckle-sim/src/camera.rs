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
use crate::noise::{
    self, Lanes, PoissonScratch, PoissonTables, Xoshiro256, LANES, POISSON_TABLE_BOUND,
    ROUND_SHIFT, WIDE_LANES,
};
use crate::rng::{self, Purpose};
use std::cell::RefCell;

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

/// Pixels processed together on the stack (a multiple of the 16 pixels of a Box–Muller step).
const CHUNK: usize = 256;
// Pixel positions within a chunk are listed as bytes.
const _: () = assert!(CHUNK <= 256 && CHUNK % 16 == 0);

/// Flag: the pixel draws exact Poisson shot noise (`0 < λ < POISSON_EXACT_BELOW`).
const POISSON: u8 = 1;
/// Flag: the pixel's Box–Muller pair needs the refined radius (first pixel of the pair).
const REFINE: u8 = 2;
/// Flag: the pixel is in the Gaussian regime near the full well and draws its own shot noise.
const NEAR_WELL: u8 = 4;
// The near-well pixels are listed by the flags' bit 2.
const _: () = assert!(NEAR_WELL == 1 << 2);
/// Either kind of drawn shot noise.
const SHOT: u8 = POISSON | NEAR_WELL;

/// For each 8-bit mask, the positions of its set bits, one a byte, lowest first.
static SET_BITS: [u64; 256] = set_bit_positions();
/// For each 8-bit mask, its number of set bits.
static SET_BIT_COUNTS: [u8; 256] = set_bit_counts();

const fn set_bit_positions() -> [u64; 256] {
    let mut table = [0u64; 256];
    let mut mask = 0;
    while mask < 256 {
        let (mut bit, mut k) = (0, 0);
        while bit < 8 {
            if mask & (1 << bit) != 0 {
                table[mask] |= (bit as u64) << (8 * k);
                k += 1;
            }
            bit += 1;
        }
        mask += 1;
    }
    table
}

const fn set_bit_counts() -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut mask = 0;
    while mask < 256 {
        table[mask] = (mask as u32).count_ones() as u8;
        mask += 1;
    }
    table
}

/// The mask of the bytes of `word` whose lowest bit is set (byte `i` → bit `i`).
#[inline(always)]
fn byte_mask(word: u64) -> usize {
    ((word & 0x0101_0101_0101_0101).wrapping_mul(0x0102_0408_1020_4080) >> 56) as usize
}

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
    fn gaussian_count(&self, lambda: f32, z: f32) -> (f32, u8) {
        let low = lambda < POISSON_TABLE_BOUND;
        let near_well = !low && lambda > self.far_below;
        let far = self.shot_noise && !low && !near_well;
        let flag = self.flag(lambda);
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
        (self.adc(e + self.dark_offset_e + sd * z), flag)
    }

    /// The shot noise a pixel of mean `lambda` draws on its own: [`POISSON`], [`NEAR_WELL`]
    /// or none (0).
    #[inline(always)]
    fn flag(&self, lambda: f32) -> u8 {
        let low = lambda < POISSON_TABLE_BOUND;
        let near_well = !low && lambda > self.far_below;
        if self.shot_noise && lambda > 0.0 && low {
            POISSON
        } else if self.shot_noise && near_well {
            NEAR_WELL
        } else {
            0
        }
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

    /// Steps 3 to 5 for a pixel with `e` photoelectrons and read noise `z`.
    #[inline(always)]
    fn shot_count(&self, e: f32, z: f32) -> f32 {
        let e = e.max(0.0).min(self.full_well_e);
        self.adc(e + self.dark_offset_e + self.read_noise_e * z)
    }
}

/// The vectorized part of one chunk: every pixel's Gaussian into `z`, its count for the
/// Gaussian regimes into `values` (the intensity saved in `lambda`), and flags for the pixels
/// the scalar pass must finish. Returns the union of the flags.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512cd+avx512dq+avx512vl",
    "x86_64+avx2+fma",
    "x86_64+sse4.2",
    "aarch64+neon"
))]
fn gaussian_pass(
    p: &Pipeline,
    lanes: &mut Lanes,
    values: &mut [f32],
    z: &mut [f32; CHUNK],
    lambda: &mut [f32; CHUNK],
    flags: &mut [u8; CHUNK],
) -> u8 {
    // The lane words first (the one serial dependency), then every pair's Box–Muller
    // transform as one loop over independent elements (full vector width, no chain between
    // pairs), then the pairs' halves into pixel order.
    let groups = values.len().div_ceil(2 * LANES);
    let mut radius_words = [0u32; CHUNK / 2];
    let mut angle_words = [0u32; CHUNK / 2];
    for (r, a) in radius_words
        .chunks_exact_mut(LANES)
        .zip(angle_words.chunks_exact_mut(LANES))
        .take(groups)
    {
        r.copy_from_slice(&lanes.next());
        a.copy_from_slice(&lanes.next());
    }
    let mut cos_half = [0f32; CHUNK / 2];
    let mut sin_half = [0f32; CHUNK / 2];
    for (((c, s), &rw), &aw) in cos_half
        .iter_mut()
        .zip(sin_half.iter_mut())
        .zip(&radius_words)
        .zip(&angle_words)
    {
        (*c, *s) = noise::box_muller(rw, aw);
    }
    for (((zs, fs), (c, s)), rw) in z
        .chunks_exact_mut(2 * LANES)
        .zip(flags.chunks_exact_mut(2 * LANES))
        .zip(
            cos_half
                .chunks_exact(LANES)
                .zip(sin_half.chunks_exact(LANES)),
        )
        .zip(radius_words.chunks_exact(LANES))
        .take(groups)
    {
        zs[..LANES].copy_from_slice(c);
        zs[LANES..].copy_from_slice(s);
        for (f, &w) in fs.iter_mut().zip(rw) {
            *f = if w >> 8 == 0 { REFINE } else { 0 };
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
        let (count, flag) = p.gaussian_count(lam, zv);
        *v = count;
        *f |= flag;
        any |= *f;
    }
    any
}

/// How many of the pixels of these intensities draw exact Poisson shot noise.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512cd+avx512dq+avx512vl",
    "x86_64+avx2+fma",
    "x86_64+sse4.2",
    "aarch64+neon"
))]
fn poisson_pixels(p: &Pipeline, values: &[f32]) -> usize {
    let count: u32 = values
        .iter()
        .map(|&v| u32::from(p.flag(v * p.electrons_per_intensity) == POISSON))
        .sum();
    count as usize
}

/// The values of the listed pixels that drew Poisson shot noise: `counts` photoelectrons and
/// read noise `z`, into `values` (vectorized over the list).
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512cd+avx512dq+avx512vl",
    "x86_64+avx2+fma",
    "x86_64+sse4.2",
    "aarch64+neon"
))]
fn shot_pass(p: &Pipeline, counts: &[u32], z: &[f32], values: &mut [f32]) {
    for ((v, &count), &zv) in values.iter_mut().zip(counts).zip(z) {
        *v = p.shot_count(count as f32, zv);
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
    /// values in place; the first frame has global index `first_frame`. Only the first
    /// `read` pixels of each frame are exposed (a readout window, `read ≤ pixels`); they get
    /// exactly the values a whole-frame exposure gives them, and the others are left as they
    /// are.
    pub(crate) fn expose(&self, first_frame: u64, pixels: usize, read: usize, values: &mut [f32]) {
        if self.ideal || pixels == 0 || read == 0 {
            return;
        }
        let read = read.min(pixels);
        if pixels <= SEGMENT_PIXELS {
            // Several small frames per task.
            values
                .par_chunks_mut(pixels)
                .enumerate()
                .with_min_len((SEGMENT_PIXELS / pixels).max(1))
                .for_each(|(b, frame)| {
                    self.expose_segment(first_frame + b as u64, 0, frame, read);
                });
        } else {
            values
                .par_chunks_mut(pixels)
                .enumerate()
                .for_each(|(b, frame)| self.expose_frame(first_frame + b as u64, frame, read));
        }
    }

    /// One frame's first `read` pixels, its segments in parallel.
    pub(crate) fn expose_frame(&self, frame_index: u64, frame: &mut [f32], read: usize) {
        frame
            .par_chunks_mut(SEGMENT_PIXELS)
            .enumerate()
            .for_each(|(s, segment)| {
                let first = s * SEGMENT_PIXELS;
                if first < read {
                    self.expose_segment(frame_index, s as u64, segment, read - first);
                }
            });
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
        let lanes = |at: usize| Lanes::from_words(&words[at..at + 4 * LANES]);
        let mut scalar =
            Xoshiro256::from_words(words[4 * LANES..].try_into().expect("8 scalar words"));
        Generators {
            gaussian: lanes(0),
            shot: Lanes::seeded_from(&mut scalar),
            scalar,
        }
    }

    /// Pixels `segment·SEGMENT_PIXELS ..` of frame `frame_index` (at most `SEGMENT_PIXELS`),
    /// of which the first `read` are exposed.
    fn expose_segment(&self, frame_index: u64, segment: u64, values: &mut [f32], read: usize) {
        SCRATCH.with_borrow_mut(|scratch| {
            let mut g = self.generators(frame_index, segment);
            for (c, chunk) in values.chunks_mut(CHUNK).enumerate() {
                // Every draw for a chunk comes after those of the chunks before it: the chunks
                // past the window can be left out.
                let Some(left) = read.checked_sub(c * CHUNK).filter(|&left| left > 0) else {
                    break;
                };
                self.expose_chunk(&mut g, chunk, left, scratch);
            }
        });
    }

    /// One chunk of a segment, its first `read` pixels exposed.
    ///
    /// The draws of a chunk come in this order: every pixel's Gaussian (lane words in pixel
    /// order), the refined radii (scalar, in pixel order), three shot words for each Poisson
    /// pixel (laid out by the chunk's count of Poisson pixels), the extra thinning events
    /// (scalar, in pixel order), the near-well pixels (scalar, in pixel order). A window that
    /// ends inside the chunk must keep the draws its pixels use: it still draws the pixels'
    /// lane words and the refined radii of the pixels past it, counts their Poisson pixels for
    /// the layout of the shot words, and exposes the whole chunk when a pixel inside it is
    /// near the full well (its draws come after every Poisson pixel's).
    fn expose_chunk(
        &self,
        g: &mut Generators,
        chunk: &mut [f32],
        read: usize,
        scratch: &mut Scratch,
    ) {
        let p = &self.pipeline;
        let len = chunk.len();
        let Scratch {
            z,
            lambda,
            flags,
            z_listed,
            shot_values,
            listed,
            means,
            counts,
            uniforms,
            poisson,
            saved,
        } = scratch;
        // The pixels exposed: the window rounded up to whole Box–Muller groups, or the whole
        // chunk when one of them is near the full well (then redone from the saved state).
        let mut upto = read.next_multiple_of(2 * LANES).min(len);
        let mut any;
        if upto < len {
            let lanes = g.gaussian.clone();
            saved[..upto].copy_from_slice(&chunk[..upto]);
            any = gaussian_pass(p, &mut g.gaussian, &mut chunk[..upto], z, lambda, flags);
            if any & NEAR_WELL != 0 {
                g.gaussian = lanes;
                chunk[..upto].copy_from_slice(&saved[..upto]);
                upto = len;
                any = gaussian_pass(p, &mut g.gaussian, chunk, z, lambda, flags);
            }
        } else {
            any = gaussian_pass(p, &mut g.gaussian, chunk, z, lambda, flags);
        }
        let (inside, past) = chunk.split_at_mut(upto);
        // The pixels past the window: their refined radii and their count of Poisson pixels.
        let (mut refines_past, mut poisson_past) = (0, 0);
        for group in past.chunks(2 * LANES) {
            let radius_words = g.gaussian.next();
            g.gaussian.next();
            refines_past += radius_words
                .iter()
                .take(group.len())
                .filter(|&&w| w >> 8 == 0)
                .count();
        }
        if !past.is_empty() && any & SHOT != 0 {
            poisson_past = poisson_pixels(p, past);
        }
        // The scalar draws, in a fixed order: refined radii, then the rare shot noise.
        if any & REFINE != 0 {
            for j in (0..upto).filter(|&j| flags[j] & REFINE != 0) {
                // The pair (j, j + 8) had u ≤ 2^-24: redraw its radius from 48 bits.
                let ratio = noise::refined_radius(g.scalar.next_u64()) / noise::radius(0);
                for k in [j, j + LANES] {
                    z[k] *= ratio;
                    if k < upto && flags[k] & SHOT == 0 {
                        inside[k] = p.gaussian_count(lambda[k], z[k]).0;
                    }
                }
            }
        }
        for _ in 0..refines_past {
            g.scalar.next_u64();
        }
        if any & SHOT == 0 {
            return;
        }
        // The Poisson pixels, listed without branches (eight flags a word), drawn as one
        // batch with three uniform words each from the shot lanes.
        let mut n = 0;
        for (w, word) in flags.chunks_exact(8).enumerate().take(upto.div_ceil(8)) {
            let mask = byte_mask(u64::from_le_bytes(word.try_into().expect("eight flags")));
            let at = SET_BITS[mask] + (8 * w as u64) * 0x0101_0101_0101_0101;
            listed[n..n + 8].copy_from_slice(&at.to_le_bytes());
            n += usize::from(SET_BIT_COUNTS[mask]);
        }
        for (m, &j) in means.iter_mut().zip(&listed[..n]) {
            *m = lambda[usize::from(j)];
        }
        // The words are laid out by the chunk's whole count: the first third inverts, the
        // second counts the thinned events, the last keeps them. Pixels past the window come
        // last in each third; their words are dropped.
        let all = n + poisson_past;
        let words = &mut uniforms[..(3 * all).next_multiple_of(WIDE_LANES / 2)];
        noise::fill_u64(&mut g.shot, words);
        if poisson_past > 0 {
            words.copy_within(all..all + n, n);
            words.copy_within(2 * all..2 * all + n, 2 * n);
        }
        poisson_tables().sample_batch(
            &means[..n],
            &words[..3 * n],
            &mut counts[..n],
            poisson,
            &mut g.scalar,
        );
        // Their counts, computed on the list (gathered read noise) and scattered back.
        for (zl, &j) in z_listed.iter_mut().zip(&listed[..n]) {
            *zl = z[usize::from(j)];
        }
        shot_pass(p, &counts[..n], &z_listed[..n], &mut shot_values[..n]);
        for (&j, &v) in listed[..n].iter().zip(&shot_values[..n]) {
            inside[usize::from(j)] = v;
        }
        // Then the Gaussian-regime pixels near the full well (rare; none inside a window
        // that ends inside the chunk).
        if any & NEAR_WELL != 0 {
            // In pixel order, found eight flags a word (NEAR_WELL is bit 2 of a flag).
            for (w, word) in flags.chunks_exact(8).enumerate().take(upto.div_ceil(8)) {
                let word = u64::from_le_bytes(word.try_into().expect("eight flags"));
                let mut mask = byte_mask(word >> 2);
                while mask != 0 {
                    let j = 8 * w + mask.trailing_zeros() as usize;
                    mask &= mask - 1;
                    let lam = lambda[j];
                    let z_shot = noise::gaussian_from_bits(g.scalar.next_u64(), &mut g.scalar);
                    inside[j] = p.shot_count((lam + lam.sqrt() * z_shot).round(), z[j]);
                }
            }
        }
    }
}

/// Working memory of [`Camera::expose_segment`], one per thread.
struct Scratch {
    z: [f32; CHUNK],
    lambda: [f32; CHUNK],
    flags: [u8; CHUNK],
    /// The read noise of the listed Poisson pixels, and their values.
    z_listed: [f32; CHUNK],
    shot_values: [f32; CHUNK],
    listed: [u8; CHUNK + 8],
    means: [f32; CHUNK],
    counts: [u32; CHUNK],
    uniforms: [u64; 3 * CHUNK + WIDE_LANES],
    poisson: PoissonScratch,
    /// A chunk's intensities, kept while a window inside it is exposed.
    saved: [f32; CHUNK],
}

thread_local! {
    static SCRATCH: RefCell<Box<Scratch>> = RefCell::new(Box::new(Scratch {
        z: [0.0; CHUNK],
        lambda: [0.0; CHUNK],
        flags: [0; CHUNK],
        z_listed: [0.0; CHUNK],
        shot_values: [0.0; CHUNK],
        listed: [0; CHUNK + 8],
        means: [0.0; CHUNK],
        counts: [0; CHUNK],
        uniforms: [0; 3 * CHUNK + WIDE_LANES],
        poisson: PoissonScratch::default(),
        saved: [0.0; CHUNK],
    }));
}

/// One segment's generators (see the module docs).
struct Generators {
    /// Every pixel's Gaussian.
    gaussian: Lanes,
    /// Three uniform words per Poisson pixel, in pixel order.
    shot: Lanes<WIDE_LANES>,
    /// The rare draws: refined radii, shot noise near the full well, thinning beyond one event.
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
    fn flag_words_list_every_flagged_pixel() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..2000 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            // Flag bytes of 0 to 7, so other flags share the bytes.
            let word = x & 0x0707_0707_0707_0707;
            let want: Vec<u8> = (0..8).filter(|i| word >> (8 * i) & 1 == 1).collect();
            let mask = byte_mask(word);
            let listed = SET_BITS[mask].to_le_bytes();
            assert_eq!(usize::from(SET_BIT_COUNTS[mask]), want.len(), "{word:x}");
            assert_eq!(listed[..want.len()], want[..], "{word:x}");
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
        cam.expose(10, m, m, &mut batch);
        for f in 0..3 {
            let mut one = frames[f * m..(f + 1) * m].to_vec();
            cam.expose(10 + f as u64, m, m, &mut one);
            assert_eq!(one, batch[f * m..(f + 1) * m], "frame {f}");
            // Segment by segment, last first.
            let mut parts = frames[f * m..(f + 1) * m].to_vec();
            for s in (0..3).rev() {
                let end = ((s + 1) * SEGMENT_PIXELS).min(m);
                let part = &mut parts[s * SEGMENT_PIXELS..end];
                cam.expose_segment(10 + f as u64, s as u64, part, part.len());
            }
            assert_eq!(parts, one, "frame {f} by segments");
        }
        // Another frame index gives other noise.
        let mut other = frames[..m].to_vec();
        cam.expose(11, m, m, &mut other);
        assert_ne!(other, batch[..m]);
    }

    /// Intensities spanning every regime of the preset camera (1024 e⁻ per unit): dark,
    /// exact Poisson, Gaussian, and near the full well.
    fn mixed_intensities(len: usize, salt: u64) -> Vec<f32> {
        let mut x = salt.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                match x % 16 {
                    0 => 0.0,
                    1..=6 => (x >> 40) as f32 / (1u64 << 24) as f32 * 0.05,
                    7 => 4.2,
                    _ => (x >> 40) as f32 / (1u64 << 24) as f32 * 2.0,
                }
            })
            .collect()
    }

    /// A readout window leaves the pixels inside it exactly as a whole-frame exposure does,
    /// wherever it ends (inside a chunk, on a boundary, in a later segment).
    /// A camera that counts single electrons, so that a different draw shows in the counts.
    fn electron_counting_camera() -> Camera {
        camera(|c| {
            c.bits = 16;
            c.electrons_per_count = 1.0;
        })
    }

    #[test]
    fn a_window_reads_what_the_whole_frame_reads() {
        let cam = electron_counting_camera();
        for (m, frames) in [(1032, 48), (SEGMENT_PIXELS + 700, 3)] {
            let intensities = mixed_intensities(frames * m, m as u64);
            let mut whole = intensities.clone();
            cam.expose(7, m, m, &mut whole);
            let reads = [
                1,
                5,
                16,
                17,
                80,
                255,
                256,
                257,
                700,
                840,
                1000,
                1031,
                1032,
                m - 1,
                m,
            ];
            for read in reads.into_iter().filter(|&r| r <= m) {
                let mut windowed = intensities.clone();
                cam.expose(7, m, read, &mut windowed);
                for f in 0..frames {
                    let at = f * m;
                    assert_eq!(
                        windowed[at..at + read],
                        whole[at..at + read],
                        "frame {f} of {m} pixels, window {read}"
                    );
                }
            }
        }
    }

    /// A pixel near the full well inside a window that ends inside its chunk, Poisson pixels
    /// past it: its draw comes after theirs, so the chunk is exposed whole.
    #[test]
    fn a_window_with_a_pixel_near_the_full_well_reads_the_same() {
        let cam = electron_counting_camera();
        let m = 512;
        let mut intensities = vec![0.02f32; m];
        intensities[3] = 4.2;
        intensities[100] = 4.3;
        let mut whole = intensities.clone();
        cam.expose(3, m, m, &mut whole);
        assert!(whole[3] > whole[4] + 1000.0, "pixel 3 is bright");
        for read in [4, 16, 17, 100, 101] {
            let mut windowed = intensities.clone();
            cam.expose(3, m, read, &mut windowed);
            assert_eq!(windowed[..read], whole[..read], "window {read}");
        }
    }

    /// The first pair at or after pixel 16 of a 256-pixel chunk of segment 0 whose radius
    /// word needs the refined draw, over frames `0..frames` of `m` pixels: `(frame, pixel)`.
    fn find_refined_pair(cam: &Camera, m: usize, frames: u64) -> Option<(u64, usize)> {
        (0..frames).find_map(|t| {
            let mut g = cam.generators(t, 0);
            (0..m.div_ceil(2 * LANES)).find_map(|group| {
                let radius_words = g.gaussian.next();
                g.gaussian.next();
                let j = (0..LANES).find(|&k| radius_words[k] >> 8 == 0)? + 2 * LANES * group;
                (j % CHUNK >= 8 * 2 * LANES && j < m).then_some((t, j))
            })
        })
    }

    /// A refined radius past a window still takes its scalar draw before the window's extra
    /// Poisson events (which come from the same stream), so they read the same.
    #[test]
    fn a_window_keeps_the_draws_of_a_refined_radius_past_it() {
        let cam = electron_counting_camera();
        let m = SEGMENT_PIXELS;
        // About one pair in 2^24 needs the refined radius: 2,048 pairs a frame.
        let (t, j) = find_refined_pair(&cam, m, 40_000).expect("a refined pair");
        // Every pixel draws exact Poisson noise (λ ≈ 20.1 e⁻, thinned with probability about
        // 0.4): the window's extra events are scalar draws after the refined radius.
        let intensities = vec![20.1 / 1024.0; m];
        let mut whole = intensities.clone();
        cam.expose(t, m, m, &mut whole);
        let read = j / (2 * LANES) * (2 * LANES);
        let mut windowed = intensities.clone();
        cam.expose(t, m, read, &mut windowed);
        assert_eq!(
            windowed[..read],
            whole[..read],
            "frame {t}, refined pair at {j}"
        );
    }
}
