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
//! 5. ADC: `count = clamp(round(v / electrons_per_count), 0, 2^bits − 1)`.
//!
//! In the Gaussian regime and more than 8 standard deviations below the full well (where step 3
//! cannot act), steps 2 to 4 draw one Gaussian of variance `λ + read_noise_e²`: the same law,
//! one random draw instead of two.
//!
//! The noise of the frame with global index `t` comes from the ChaCha8 stream `t` of the
//! camera key derived from the seed, pixel after pixel, so it does not depend on how frames are
//! batched or on threads.

use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Poisson, StandardNormal};
use rayon::prelude::*;

use crate::config::CameraConfig;
use crate::rng::{self, Purpose};

/// Below this mean (electrons) shot noise is drawn from the exact Poisson law; above it from
/// its Gaussian approximation.
pub const POISSON_EXACT_BELOW: f64 = 50.0;

/// Standard deviations between the mean and the full well beyond which the full-well clamp is
/// treated as unreachable (a Gaussian exceeds 8σ with probability 6·10⁻¹⁶).
const FAR_SIGMAS: f64 = 8.0;

#[derive(Debug, Clone)]
pub(crate) struct Camera {
    ideal: bool,
    electrons_per_intensity: f64,
    shot_noise: bool,
    read_noise_e: f64,
    dark_offset_e: f64,
    full_well_e: f64,
    counts_per_electron: f64,
    max_count: f64,
    key: [u8; 32],
}

impl Camera {
    pub(crate) fn new(c: &CameraConfig, seed: u64) -> Self {
        Self {
            ideal: c.ideal,
            electrons_per_intensity: c.photon_rate_per_us * c.exposure_us * c.quantum_efficiency,
            shot_noise: c.shot_noise,
            read_noise_e: c.read_noise_e,
            dark_offset_e: c.dark_offset_e,
            full_well_e: c.full_well_e,
            counts_per_electron: 1.0 / c.electrons_per_count,
            max_count: ((1u32 << c.bits) - 1) as f64,
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
        values
            .par_chunks_mut(pixels)
            .enumerate()
            .for_each(|(b, frame)| self.expose_frame(first_frame + b as u64, frame));
    }

    fn expose_frame(&self, frame_index: u64, frame: &mut [f32]) {
        let mut rng: ChaCha8Rng = rng::stream_rng(&self.key, frame_index);
        let read_var = self.read_noise_e * self.read_noise_e;
        for v in frame.iter_mut() {
            let lambda = f64::from(*v) * self.electrons_per_intensity;
            let volts = if self.shot_noise
                && lambda >= POISSON_EXACT_BELOW
                && lambda + FAR_SIGMAS * lambda.sqrt() <= self.full_well_e
            {
                // Gaussian regime, far from the full well (the clamp cannot act): shot and read
                // noise are one Gaussian of variance λ + σ_read², the same law as two draws,
                // at half the cost.
                let z: f64 = StandardNormal.sample(&mut rng);
                lambda + self.dark_offset_e + (lambda + read_var).sqrt() * z
            } else {
                let e = if !self.shot_noise || lambda <= 0.0 {
                    lambda
                } else if lambda < POISSON_EXACT_BELOW {
                    // λ is finite and positive here, so the constructor cannot fail.
                    Poisson::new(lambda).map_or(lambda, |p| p.sample(&mut rng))
                } else {
                    let z: f64 = StandardNormal.sample(&mut rng);
                    (lambda + lambda.sqrt() * z).round()
                };
                let mut volts = e.clamp(0.0, self.full_well_e) + self.dark_offset_e;
                if self.read_noise_e > 0.0 {
                    let z: f64 = StandardNormal.sample(&mut rng);
                    volts += self.read_noise_e * z;
                }
                volts
            };
            *v = (volts * self.counts_per_electron)
                .round()
                .clamp(0.0, self.max_count) as f32;
        }
    }
}
