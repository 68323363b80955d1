//! # speckle-sim
//!
//! A simulated optical processing unit (OPU): a [`SimulatedOpu`] is a
//! [`speckle_hal::OpticalDevice`] that models each stage of a LightOn-like device.
//!
//! ```
//! use speckle_hal::{pack_bits, OpticalDevice, PackedFrames};
//! use speckle_sim::{DeviceConfig, SimulatedOpu};
//!
//! // The 8-bit LightOn-like preset, 64 binary features → 128 camera pixels, seed 7.
//! let config = DeviceConfig::preset("lighton").unwrap();
//! let mut opu = SimulatedOpu::new(&config, 64, 128, 7).unwrap();
//!
//! // Two frames: the first half of the features lit, then every third feature.
//! let bits: Vec<u8> = (0..2 * 64)
//!     .map(|v| if v < 64 { (v < 32) as u8 } else { (v % 3 == 0) as u8 })
//!     .collect();
//! let mut packed = Vec::new();
//! pack_bits(&bits, 2, 64, &mut packed).unwrap();
//! let frames = PackedFrames::new(&packed, 2, 64).unwrap();
//!
//! let mut counts = vec![0f32; 2 * 128];
//! opu.transform(&frames, &mut counts).unwrap();
//! assert!(counts.iter().all(|&c| c == c.round() && (0.0..=255.0).contains(&c)));
//!
//! // The virtual clock: 2 frames of 500 µs.
//! assert_eq!(opu.counters().frames, 2);
//! assert!((opu.counters().device_time_s - 1e-3).abs() < 1e-12);
//!
//! // Replaying from frame 0 gives the same counts, noise included.
//! opu.seek_frame(0).unwrap();
//! let mut again = vec![0f32; 2 * 128];
//! opu.transform(&frames, &mut again).unwrap();
//! assert_eq!(counts, again);
//! ```
//!
//! ## The model, stage by stage
//!
//! 1. **DMD.** Input frames are binary (bit-packed, so a non-binary value cannot reach the
//!    device). Feature `i` is shown on a macro-pixel of `k` mirrors out of `M = rows · cols`;
//!    `k = floor(M / features)` by default (`dmd.macro_pixel = "auto"`) or fixed.
//! 2. **Medium.** Each mirror contributes an iid circular complex Gaussian field with Re, Im ~
//!    N(0, 1/(2M)) to each camera pixel, so a fully lit DMD gives a *unit mean intensity* and
//!    the mean intensity of a frame is its fraction of lit mirrors. A macro-pixel's field is the
//!    sum of `k` such fields: the feature-level matrix `R` (outputs × features) has iid entries
//!    with Re, Im ~ N(0, k/(2M)), `E|R_ji|² = k/M` ([`SimulatedOpu::entry_variance`]). This is
//!    exact in distribution, and `M` times cheaper than simulating mirrors. (lightonml uses
//!    Re, Im ~ N(0, 1/n) for n features instead: twice our variance when k = M/n.)
//!
//!    `R` is drawn in 32 × 32 blocks, block (j/32, i/32) from its own ChaCha8 stream, so entry
//!    (j, i) depends only on the seed, j, i and k: a larger device contains a smaller one. Each
//!    part is stored as the integer `round(128 · z)`, z ~ N(0, 1), scaled on output: sums of
//!    integers are exact in `f32` (up to about 150,000 lit features), so the transform is
//!    bit-identical whatever the GEMM kernel, blocking, batch split or thread count. The
//!    rounding (1/128 of a standard deviation) changes the variance by 5·10⁻⁶ relative.
//!
//!    Memory: the matrix is cached when `8 · outputs · features` bytes fit
//!    `medium.matrix_budget_mib`, otherwise regenerated for every batch in chunks of output rows
//!    that fit the budget (a 4096 → 65536 device runs in 256 MiB of matrix).
//! 3. **Drift** (off by default): every `drift.every_frames` = K frames,
//!    `R ← sqrt(1 − ρ)·R + sqrt(ρ)·G` with `G` a fresh matrix drawn from (seed, epoch). Frame
//!    `t` sees the matrix of epoch `floor(t / K)`; a batch crossing an epoch boundary is split
//!    there. The correlation between epochs `e` apart is `(1 − ρ)^(e/2)`. Drift needs the
//!    cached matrix (a config error otherwise). Seeking to an earlier frame redraws epoch 0 and
//!    replays the steps, so the matrix depends only on the frame index.
//! 4. **Camera**: see [`camera`] for the exact pipeline (exposure, Poisson shot noise, full
//!    well, read noise, dark offset, ADC of 1 to 16 bits). `camera.ideal = true` returns the
//!    exact float intensities `|R·x|²`. The noise of frame `t` depends only on (seed, t).
//! 5. **Clock.** Every frame costs `camera.frame_time_us` of device time
//!    ([`speckle_hal::DeviceCounters`]). [`SimulatedOpu::frame_index`] and
//!    [`SimulatedOpu::seek_frame`] let an emulator replay a request exactly.
//!
//! Reproducibility: results are bit-identical for any thread count and any batch split (tested),
//! and the random streams are the same on every machine (ChaCha8 from `rand_chacha =0.9.0`; the
//! dense matrix's Gaussians from `rand_distr =0.5.1`; the camera's xoshiro lanes, seeded from
//! ChaCha8 per frame segment, and its samplers in this crate; golden-value tests). The camera
//! uses IEEE-exact operations only, so its counts are the same whatever the CPU and its SIMD
//! level. Across machines, one caveat: the dense matrix's Gaussian sampler calls `ln`/`exp` from
//! the platform's libm in its tail, so a libm that rounds differently could change an occasional
//! matrix entry.
#![forbid(unsafe_code)]

pub mod camera;
mod config;
mod medium;
mod noise;
mod rng;

pub use config::{
    CameraConfig, ConfigError, DeviceConfig, DmdConfig, DriftConfig, MacroPixel, MediumConfig,
    MediumKind,
};

use medium::dense::{DenseMedium, DenseParams};
pub use medium::structured::StructuredMedium;
use medium::Medium;
use num_complex::Complex32;
use rayon::prelude::*;
use speckle_hal::{DeviceCounters, DeviceInfo, Error, ErrorKind, OpticalDevice, PackedFrames};

/// Most frames one [`OpticalDevice::transform`] call accepts.
pub const MAX_BATCH: usize = 1 << 16;

/// Frames processed together internally (bounds scratch memory; results do not depend on it).
const SUB_BATCH: usize = 1024;

/// A simulated OPU. See the [crate documentation](crate) for the model.
pub struct SimulatedOpu {
    config: DeviceConfig,
    input_dim: usize,
    output_dim: usize,
    seed: u64,
    macro_pixel: u64,
    /// Multiplies raw medium sums into physical fields.
    field_scale: f64,
    medium: Box<dyn Medium>,
    camera: camera::Camera,
    frame_index: u64,
    frames_shown: u64,
    /// Camera pixels read out per frame (the readout window; `output_dim` without one).
    readout: usize,
    x: Vec<f32>,
    /// What [`OpticalDevice::info`] reports, computed once.
    info: DeviceInfo,
}

impl std::fmt::Debug for SimulatedOpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulatedOpu")
            .field("name", &self.config.name)
            .field("input_dim", &self.input_dim)
            .field("output_dim", &self.output_dim)
            .field("seed", &self.seed)
            .field("macro_pixel", &self.macro_pixel)
            .field("frame_index", &self.frame_index)
            .finish_non_exhaustive()
    }
}

impl SimulatedOpu {
    /// A device of `input_dim` binary features and `output_dim` camera pixels, its matrix and
    /// noise drawn from `seed`. Errors (one line, naming the key) for an invalid config, zero
    /// or too large dimensions, features that do not fit on the DMD, or a matrix budget too
    /// small.
    pub fn new(
        config: &DeviceConfig,
        input_dim: usize,
        output_dim: usize,
        seed: u64,
    ) -> Result<Self, Error> {
        config.check()?;
        // Block indices must fit 32 bits each (see rng::block_stream).
        let max_dim = (u32::MAX as usize).min(isize::MAX as usize / 8);
        for (what, v) in [("input_dim", input_dim), ("output_dim", output_dim)] {
            if v == 0 || v > max_dim {
                return Err(Error::new(
                    ErrorKind::DimensionMismatch,
                    format!("simulated device {what} = {v}: must be in 1 ..= {max_dim}"),
                ));
            }
        }
        let macro_pixel = config.macro_pixel_for(input_dim)?;
        let medium: Box<dyn Medium> = match config.medium.kind {
            MediumKind::Structured => {
                let mut structured = StructuredMedium::new(input_dim, output_dim, seed)?
                    .with_budget_mib(config.medium.matrix_budget_mib);
                if config.drift.rate > 0.0 {
                    structured = structured.with_drift(config.drift.rate)?;
                }
                Box::new(structured)
            }
            MediumKind::Dense => Box::new(DenseMedium::new(DenseParams {
                input_dim,
                output_dim,
                seed,
                budget_mib: config.medium.matrix_budget_mib,
                drift_rate: config.drift.rate,
            })?),
        };
        let raw_var = medium.raw_entry_variance();
        let entry_variance = macro_pixel as f64 / config.mirrors() as f64;
        let camera = camera::Camera::new(&config.camera, seed);
        let info = DeviceInfo {
            kind: "simulated-opu".to_owned(),
            description: if config.description.is_empty() {
                config.name.clone()
            } else {
                format!("{}: {}", config.name, config.description)
            },
            input_dim,
            output_dim,
            bit_depth: (!camera.is_ideal()).then_some(config.camera.bits),
            frame_time_us: config.camera.frame_time_us,
            exposure_us: config.camera.exposure_us,
            max_batch: MAX_BATCH,
        };
        Ok(Self {
            config: config.clone(),
            input_dim,
            output_dim,
            seed,
            macro_pixel,
            field_scale: (entry_variance / raw_var).sqrt(),
            medium,
            camera,
            frame_index: 0,
            frames_shown: 0,
            readout: output_dim,
            x: Vec::new(),
            info,
        })
    }

    /// The configuration the device was built from.
    pub fn config(&self) -> &DeviceConfig {
        &self.config
    }

    /// The seed of the matrix and of the noise.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Mirrors per feature (`k`).
    pub fn macro_pixel(&self) -> u64 {
        self.macro_pixel
    }

    /// `E|R_ji|² = k / M` of the feature-level transmission matrix (Re and Im each carry half),
    /// with `k` mirrors per feature and `M` mirrors in all.
    pub fn entry_variance(&self) -> f64 {
        self.macro_pixel as f64 / self.config.mirrors() as f64
    }

    /// Global index of the next frame shown.
    pub fn frame_index(&self) -> u64 {
        self.frame_index
    }

    /// Makes `t` the index of the next frame, so a replay from `t` reproduces the same noise and
    /// (with drift) the same matrix. Does not change the counters. Seeking backwards with drift
    /// on redraws the matrix (time proportional to the number of drift epochs replayed).
    pub fn seek_frame(&mut self, t: u64) -> Result<(), Error> {
        self.frame_index = t;
        Ok(())
    }

    /// Drift epoch of frame `t`.
    fn epoch_of(&self, t: u64) -> u64 {
        if self.config.drift.rate > 0.0 {
            t / self.config.drift.every_frames
        } else {
            0
        }
    }

    /// Entry (output `j`, feature `i`) of the transmission matrix at the current frame's
    /// epoch; an error if out of range.
    pub fn transmission_entry(&mut self, j: usize, i: usize) -> Result<Complex32, Error> {
        if j >= self.output_dim || i >= self.input_dim {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "entry ({j}, {i}) is outside the {} × {} matrix",
                    self.output_dim, self.input_dim
                ),
            ));
        }
        self.medium.set_epoch(self.epoch_of(self.frame_index))?;
        let (re, im) = self.medium.raw_entry(j, i);
        Ok(Complex32::new(
            (f64::from(re) * self.field_scale) as f32,
            (f64::from(im) * self.field_scale) as f32,
        ))
    }

    /// Bytes of transmission matrix held now (at most `medium.matrix_budget_mib`).
    pub fn matrix_bytes(&self) -> usize {
        self.medium.matrix_bytes()
    }

    /// Unpacks frames into 0/1 floats, frame after frame.
    fn unpack(&mut self, frames: &PackedFrames<'_>) {
        let n = self.input_dim;
        self.x.clear();
        self.x.resize(frames.frames() * n, 0.0);
        let per = frames.bytes_per_frame();
        self.x
            .par_chunks_mut(n)
            .zip(frames.as_bytes().par_chunks(per))
            .for_each(|(dst, src)| {
                for (i, v) in dst.iter_mut().enumerate() {
                    *v = f32::from((src[i / 8] >> (i % 8)) & 1);
                }
            });
    }

    /// The exact complex fields `R · x` reaching the camera (before it), written as
    /// `frames × output_dim` real and imaginary parts, using the matrix of the current frame's
    /// drift epoch. Does not advance the clock and draws no noise.
    pub fn fields(
        &mut self,
        frames: &PackedFrames<'_>,
        out_re: &mut [f32],
        out_im: &mut [f32],
    ) -> Result<(), Error> {
        frames.expect_width(self.input_dim, "device")?;
        let m = self.output_dim;
        let want = frames.frames().checked_mul(m);
        if want != Some(out_re.len()) || want != Some(out_im.len()) {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "field buffers have {} and {} values, expected {} frames × {} outputs",
                    out_re.len(),
                    out_im.len(),
                    frames.frames(),
                    m
                ),
            ));
        }
        self.medium.set_epoch(self.epoch_of(self.frame_index))?;
        let scale = self.field_scale as f32;
        let sub_batch = SUB_BATCH.min(self.medium.max_sub_batch());
        for start in (0..frames.frames()).step_by(sub_batch) {
            let count = sub_batch.min(frames.frames() - start);
            self.unpack(&frames.slice(start, count));
            let re_dst = &mut out_re[start * m..(start + count) * m];
            let im_dst = &mut out_im[start * m..(start + count) * m];
            self.medium
                .transmit(&self.x, count, &mut |j0, rows, re, im| {
                    for b in 0..count {
                        for r in 0..rows {
                            re_dst[b * m + j0 + r] = re[b * rows + r] * scale;
                            im_dst[b * m + j0 + r] = im[b * rows + r] * scale;
                        }
                    }
                })?;
        }
        Ok(())
    }
}

impl OpticalDevice for SimulatedOpu {
    fn info(&self) -> DeviceInfo {
        self.info.clone()
    }

    fn transform(&mut self, input: &PackedFrames<'_>, output: &mut [f32]) -> Result<(), Error> {
        speckle_hal::check_device_buffers(&self.info, input, output)?;
        let m = self.output_dim;
        let total = input.frames();
        let mut start = 0;
        while start < total {
            let t = self.frame_index;
            let mut count = SUB_BATCH
                .min(self.medium.max_sub_batch())
                .min(total - start);
            if self.config.drift.rate > 0.0 {
                // Split at the next drift boundary.
                let k = self.config.drift.every_frames;
                let left = k - t % k;
                count = count.min(usize::try_from(left).unwrap_or(usize::MAX));
            }
            self.medium.set_epoch(self.epoch_of(t))?;
            let frames = input.slice(start, count);
            let out = &mut output[start * m..(start + count) * m];
            let s2 = (self.field_scale * self.field_scale) as f32;
            if !self.medium.intensities_packed(&frames, s2, out)? {
                self.unpack(&frames);
                self.medium.intensities(&self.x, count, s2, out)?;
            }
            self.camera.expose(t, m, self.readout, out);
            if self.readout < m {
                for frame in out.chunks_exact_mut(m) {
                    frame[self.readout..].fill(0.0);
                }
            }
            self.frame_index = t.wrapping_add(count as u64);
            self.frames_shown += count as u64;
            start += count;
        }
        Ok(())
    }

    fn counters(&self) -> DeviceCounters {
        DeviceCounters {
            frames: self.frames_shown,
            device_time_s: self.frames_shown as f64 * self.config.camera.frame_time_us * 1e-6,
        }
    }

    fn seek_frame(&mut self, index: u64) -> Result<(), Error> {
        SimulatedOpu::seek_frame(self, index)
    }

    /// The camera simulates only the pixels of the window (the medium still computes every
    /// pixel), and they read exactly what they read without it: the noise of a pixel does not
    /// depend on the pixels after it being simulated.
    fn set_readout_window(&mut self, pixels: Option<usize>) -> Result<(), Error> {
        match pixels {
            None => self.readout = self.output_dim,
            Some(p) if (1..=self.output_dim).contains(&p) => self.readout = p,
            Some(p) => {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!(
                        "readout window of {p} pixels: must be in 1 ..= {} (the device's camera pixels)",
                        self.output_dim
                    ),
                ))
            }
        }
        Ok(())
    }
}
