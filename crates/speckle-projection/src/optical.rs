//! A linear random projection from an intensity-only optical device, by interferometry with a
//! fixed binary reference pattern.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use speckle_hal::{
    check_projection_buffers, DeviceCounters, DeviceInfo, Error, ErrorKind, OpticalDevice,
    PackedFrames, ProjectorInfo, RandomProjector,
};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::encoding::{DitherKey, Encoding};

/// Default number of frames of each calibration pattern averaged by [`OpticalProjector::calibrate`].
pub const DEFAULT_CALIBRATION_FRAMES: usize = 64;
/// Most calibration frames per pattern.
pub const MAX_CALIBRATION_FRAMES: usize = 1 << 16;
/// Default dark-pixel floor, as a fraction of the mean reference intensity.
pub const DEFAULT_DARK_FRACTION: f64 = 0.05;
/// Default bright-pixel ceiling of a quantized camera, as a fraction of its largest count.
pub const DEFAULT_SATURATION_FRACTION: f64 = 0.5;
/// Smallest default reference region, in features.
pub const MIN_REFERENCE_FEATURES: usize = 16;
/// Camera values buffered per device call at most (frames × pixels), 16 MiB of `f32`.
const CAMERA_CHUNK_VALUES: usize = 1 << 22;
/// Packed frames encoded together at most, when more would save device calls.
const MAX_BLOCK_BYTES: usize = 1 << 24;
/// Frames per device call at most (bounds the packed-frame buffer).
const MAX_CHUNK_FRAMES: usize = 1 << 16;
/// Vectors per parallel task of the encoder at least (one levels code of 10 entries is about a
/// microsecond).
const ENCODE_MIN_VECTORS: usize = 16;
/// Output rows per parallel task of the decoder at least.
const DECODE_MIN_ROWS: usize = 8;
/// Camera values per parallel task of the finite-value scan.
const FINITE_SCAN_BLOCK: usize = 1 << 16;

/// Parameters of an [`OpticalProjector`]. Build with [`OpticalConfig::new`], adjust the public
/// fields, and the projector validates them with [`check`](OpticalConfig::check).
///
/// DMD layout: features `0 .. input_dim` carry the data, features
/// `input_dim .. input_dim + reference_features` the reference pattern, and any further device
/// features stay off.
#[derive(Debug, Clone, PartialEq)]
pub struct OpticalConfig {
    /// Length of the projected vectors (data features on the device).
    pub input_dim: usize,
    /// Length of the projections (camera pixels used; the device needs more, see
    /// [`recommended_device_output_dim`](OpticalConfig::recommended_device_output_dim)).
    pub output_dim: usize,
    /// How signed float vectors become binary frames.
    pub encoding: Encoding,
    /// Size of the reference region. Default `max(input_dim, 16)`, so that the reference field
    /// is about as bright as a typical data field (the interference term then uses the camera's
    /// range best).
    pub reference_features: usize,
    /// Seed of the reference pattern: exactly `ceil(reference_features / 2)` features of the
    /// region are on, drawn without replacement by `rand::seq::index::sample` from
    /// `ChaCha8Rng::seed_from_u64(reference_seed)`.
    pub reference_seed: u64,
    /// Frames of each calibration pattern (reference alone, all off) averaged, ≥ 1.
    pub calibration_frames: usize,
    /// Pixels whose reference intensity `|r_j|²` is below this fraction of the mean over all
    /// pixels are not used (dark-pixel policy, see [`OpticalProjector`]). In `[0, 1)`.
    pub dark_fraction: f64,
    /// With a quantized camera, pixels whose reference frame reads above this fraction of the
    /// largest count are not used: `I(x + a)` would saturate. In `(0, 1]`.
    pub saturation_fraction: f64,
    /// Text naming the device instance in the projector's identity, e.g. `"seed=42"` or a
    /// serial number: [`DeviceInfo`] has kind and description but no seed. Default empty.
    pub device_label: String,
    /// Seed of a stochastic encoding's draws ([`Encoding::is_stochastic`]): the vector whose
    /// first device frame has global index `t` draws from [`DitherKey`] `{ seed: dither_seed,
    /// stream: t }`, so the draws replay exactly when a resumed run seeks the frame clock.
    /// Default 0; recorded in the identity of stochastic encodings only.
    pub dither_seed: u64,
}

impl OpticalConfig {
    /// Defaults for a projector `input_dim → output_dim`: ternary encoding, a reference region
    /// of `max(input_dim, 16)` features with seed 0, 64 calibration frames, dark floor 0.05,
    /// saturation ceiling 0.5.
    pub fn new(input_dim: usize, output_dim: usize) -> Self {
        Self {
            input_dim,
            output_dim,
            encoding: Encoding::default(),
            reference_features: input_dim.max(MIN_REFERENCE_FEATURES),
            reference_seed: 0,
            calibration_frames: DEFAULT_CALIBRATION_FRAMES,
            dark_fraction: DEFAULT_DARK_FRACTION,
            saturation_fraction: DEFAULT_SATURATION_FRACTION,
            device_label: String::new(),
            dither_seed: 0,
        }
    }

    /// The same configuration with another encoding.
    pub fn with_encoding(mut self, encoding: Encoding) -> Self {
        self.encoding = encoding;
        self
    }

    /// Checks every field; the error names the field.
    pub fn check(&self) -> Result<(), Error> {
        let bad = |msg: String| Err(Error::new(ErrorKind::InvalidInput, msg));
        if self.input_dim == 0 || self.output_dim == 0 {
            return bad(format!(
                "optical projector dimensions must be at least 1, got {} → {}",
                self.input_dim, self.output_dim
            ));
        }
        if self.reference_features == 0 {
            return bad("reference_features must be at least 1".into());
        }
        if self
            .input_dim
            .checked_add(self.reference_features)
            .is_none()
        {
            return bad("input_dim + reference_features overflows".into());
        }
        if !(1..=MAX_CALIBRATION_FRAMES).contains(&self.calibration_frames) {
            return bad(format!(
                "calibration_frames {} is not in 1..={MAX_CALIBRATION_FRAMES}",
                self.calibration_frames
            ));
        }
        if !(0.0..1.0).contains(&self.dark_fraction) {
            return bad(format!(
                "dark_fraction {} is not in [0, 1)",
                self.dark_fraction
            ));
        }
        if !(self.saturation_fraction > 0.0 && self.saturation_fraction <= 1.0) {
            return bad(format!(
                "saturation_fraction {} is not in (0, 1]",
                self.saturation_fraction
            ));
        }
        self.encoding
            .check()
            .map_err(|e| Error::with_source(ErrorKind::InvalidInput, "bad encoding", e))
    }

    /// Device features the projector needs: `input_dim + reference_features`.
    pub fn device_input_dim(&self) -> usize {
        self.input_dim.saturating_add(self.reference_features)
    }

    /// Camera pixels to give the device so that calibration practically always finds
    /// `output_dim` usable ones: `ceil(1.25 · output_dim) + 32`. With the default dark floor
    /// about 5 % of pixels are dark (|r_j|² is exponential), plus saturated ones on a quantized
    /// camera; the margin covers both with room for fluctuations.
    pub fn recommended_device_output_dim(&self) -> usize {
        self.output_dim
            .saturating_add(self.output_dim.div_ceil(4))
            .saturating_add(32)
    }

    /// Frames per projected vector: 2 device frames (`I(x + a)` and `I(x)`) per binary frame
    /// of the encoding, so 4 for ternary (deterministic or dithered), 4p for bit-plane with p
    /// bits and 2(K − 1) for K levels.
    pub fn frames_per_vector(&self) -> usize {
        2 * self.encoding.binary_frames()
    }

    /// Parts in which calibration shows the all-ones data pattern of an encoding with an
    /// offset: `ceil(input_dim / |a|)`, `|a|` the reference's features on, so that no part has
    /// more data features on than the reference (its `I(1_p + a)` is about as bright as an
    /// encoded frame's, not `input_dim / |a|` times the reference, which would saturate a
    /// camera whose pixels were selected for the reference's brightness).
    pub fn ones_parts(&self) -> usize {
        self.input_dim
            .div_ceil(self.reference_features.div_ceil(2).max(1))
            .max(1)
    }

    /// Device frames one calibration shows: the reference and the dark frame
    /// `calibration_frames` times each, plus, for an encoding with an offset, each of the
    /// [`ones_parts`](Self::ones_parts) with and without the reference.
    pub fn calibration_device_frames(&self) -> usize {
        let parts = if self.encoding.uses_offset() {
            self.ones_parts()
        } else {
            0
        };
        2 * self.calibration_frames * (1 + parts)
    }

    /// The features of the reference region that are on (offsets within the region, sorted).
    pub fn reference_pattern(&self) -> Vec<usize> {
        let n = self.reference_features;
        let on = n.div_ceil(2);
        let mut rng = ChaCha8Rng::seed_from_u64(self.reference_seed);
        let mut idx = rand::seq::index::sample(&mut rng, n, on).into_vec();
        idx.sort_unstable();
        idx
    }
}

/// What [`OpticalProjector::calibrate`] measured and derived.
#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    /// Frames of each pattern averaged.
    pub frames: usize,
    /// Features on in the reference pattern, `|a|`.
    pub reference_on: usize,
    /// Mean over all device pixels of the dark level `I(0)`.
    pub mean_dark: f64,
    /// Mean over all device pixels of `|r_j|² = I_j(a) − I_j(0)`.
    pub mean_reference_intensity: f64,
    /// Estimated `E|R_ji|²` in camera units: `mean_reference_intensity / |a|`.
    pub field_variance: f64,
    /// Factor applied to `Re(conj(r_j) R_j·x) / |r_j|`, `sqrt(2 / field_variance)`, so that the
    /// projection matrix has unit-variance entries.
    pub output_scale: f64,
    /// Device pixel behind each projector output.
    pub pixels: Vec<usize>,
    /// `|r_j|²` (after the dark-floor clamp) of each projector output.
    pub reference_intensity: Vec<f64>,
    /// Pixels skipped as too dark.
    pub dark_pixels: usize,
    /// Pixels skipped as too bright (quantized camera only).
    pub bright_pixels: usize,
    /// For an encoding with an offset ([`Encoding::uses_offset`]), the projection of the
    /// all-ones data pattern, `L(1)`, per output: the sum over
    /// [`OpticalConfig::ones_parts`] disjoint parts `1_p` of `L(1_p)`, each from `I(1_p + a)`
    /// and `I(1_p)` averaged over `frames` frames; empty otherwise.
    pub ones_projection: Vec<f64>,
}

/// Turns any [`OpticalDevice`] (intensity-only, `I = |R·x|²` per pixel) into a
/// [`RandomProjector`] by interferometric linearization.
///
/// ## Principle
/// A fixed binary reference pattern `a` on its own region of the DMD gives the field
/// `r = R_ref·a`. For a binary data frame `x` on the data region,
/// `(I(x + a) − I(x) − I(a) + I(0)) / 2 = Re(conj(r) ⊙ R·x)`: linear in `x`. (`I(0)`, the dark
/// level, cancels camera offsets exactly; it is 0 on an ideal device.) Output `j` is divided by
/// `|r_j|`: `Re(conj(r_j)/|r_j| · R_ji)` is Gaussian with variance `E|R_ji|²/2` whatever `|r_j|`,
/// independent across `i` and `j` because `r` uses other features than the data. The result is
/// finally multiplied by [`Calibration::output_scale`], so the effective matrix has iid N(0, 1)
/// entries: [`ProjectorInfo::entry_variance`] is 1 (up to the calibration's estimate of
/// `E|R|²`, relative error about `1/sqrt(device pixels)`).
///
/// ## Calibration
/// [`calibrate`](Self::calibrate) (run by [`new`](Self::new)) shows the reference alone and an
/// all-off frame, `calibration_frames` times each, and averages per pixel to beat noise (for an
/// encoding with an offset, also the all-ones data pattern, in
/// [`ones_parts`](OpticalConfig::ones_parts) parts, each with and without the reference
/// `calibration_frames` times, for `L(1)`: [`OpticalConfig::calibration_device_frames`]). It
/// estimates `E|R|²` from the mean of `|r_j|²` over *all* pixels divided by `|a|` (for a binary
/// `a`, `E|r_j|² = |a|·E|R|²` under any variance convention of the device).
///
/// ## Dark pixels
/// `|r_j|²` is exponentially distributed whatever the reference size, so some pixels are always
/// nearly dark and dividing their noise by `|r_j|` would blow it up. Policy: the first
/// calibration uses only pixels with `|r_j|² ≥ dark_fraction · mean` (and, on a quantized
/// camera, a reference reading ≤ `saturation_fraction · max count`), the first `output_dim` of
/// them in pixel order. The selection depends on the reference columns only, so the selected
/// data columns stay iid Gaussian. A later [`calibrate`](Self::calibrate) keeps the selection
/// (the matrix must not change) and clamps `|r_j|²` to the dark floor. No division by zero, no
/// NaN: a device returning a non-finite value is an error.
///
/// ## Cost
/// Each binary frame of the [`Encoding`] costs two device frames, `I(x + a)` and `I(x)`:
/// [`ProjectorInfo::frames_per_vector`] is exactly `2 · encoding.binary_frames()` (4 for
/// ternary, 4p for bit-plane, 2(K − 1) for K levels), every vector, even zero ones (which
/// project to exactly 0); an encoding's offset `c·L(1)` uses the calibrated `L(1)`. All
/// frames of one call go to the device in as few `transform` calls as its `max_batch` allows.
/// Frames and device time are counted by the device ([`counters`](RandomProjector::counters)),
/// calibration included.
pub struct OpticalProjector<D: OpticalDevice> {
    device: D,
    device_info: DeviceInfo,
    /// What [`RandomProjector::info`] reports, computed once.
    info: ProjectorInfo,
    config: OpticalConfig,
    calibration: Calibration,
    /// Per output: `output_scale / (2 |r_j|)`.
    gain: Vec<f64>,
    /// Per output: `gain_j · |r_j|²`, the `I(a) − I(0)` term.
    offset: Vec<f64>,
    /// The selected pixels as runs of consecutive outputs on consecutive pixels, so that the
    /// decode reads camera values as slices (they are in pixel order, with few gaps).
    runs: Vec<PixelRun>,
    /// The reference pattern as device frame bytes (reference bits only).
    reference_bytes: Vec<u8>,
    // Scratch, grown on demand and reused across calls.
    bits: Vec<u8>,
    weights: Vec<f32>,
    packed: Vec<u8>,
    camera: Vec<f32>,
    acc: Vec<f64>,
    /// Per vector of the current block: the encoding's offset `c`.
    offsets: Vec<f32>,
    vectors: u64,
    /// Global index of the next device frame: frames shown through the projector (calibration
    /// included), or where [`RandomProjector::seek_frame`] put the device's clock.
    frame_clock: u64,
}

/// Shows the device's info, not the device itself (which need not be `Debug`).
impl<D: OpticalDevice> std::fmt::Debug for OpticalProjector<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpticalProjector")
            .field("device", &self.device_info)
            .field("config", &self.config)
            .field("calibration", &self.calibration)
            .finish_non_exhaustive()
    }
}

impl<D: OpticalDevice> OpticalProjector<D> {
    /// Wraps `device`, checks that it is big enough, and calibrates.
    pub fn new(device: D, config: OpticalConfig) -> Result<Self, Error> {
        config.check()?;
        let device_info = device.info();
        let need_in = config.device_input_dim();
        if device_info.input_dim < need_in {
            return Err(Error::new(
                ErrorKind::DimensionMismatch,
                format!(
                    "device has {} input features but the projector needs {} ({} data + {} reference)",
                    device_info.input_dim, need_in, config.input_dim, config.reference_features
                ),
            ));
        }
        if device_info.output_dim < config.output_dim {
            return Err(Error::new(
                ErrorKind::DimensionMismatch,
                format!(
                    "device has {} camera pixels but the projector needs {} outputs (recommended device outputs: {})",
                    device_info.output_dim,
                    config.output_dim,
                    config.recommended_device_output_dim()
                ),
            ));
        }
        if device_info.max_batch == 0 {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "device accepts no frames (max_batch 0)",
            ));
        }
        let bytes_per_frame = device_info.input_dim.div_ceil(8);
        let mut reference_bytes = vec![0u8; bytes_per_frame];
        for off in config.reference_pattern() {
            let f = config.input_dim + off;
            reference_bytes[f / 8] |= 1 << (f % 8);
        }
        let mut projector = Self {
            device,
            info: projector_info(&config, &device_info),
            device_info,
            calibration: Calibration {
                frames: 0,
                reference_on: 0,
                mean_dark: 0.0,
                mean_reference_intensity: 0.0,
                field_variance: 0.0,
                output_scale: 0.0,
                pixels: Vec::new(),
                reference_intensity: Vec::new(),
                dark_pixels: 0,
                bright_pixels: 0,
                ones_projection: Vec::new(),
            },
            config,
            gain: Vec::new(),
            offset: Vec::new(),
            runs: Vec::new(),
            reference_bytes,
            bits: Vec::new(),
            weights: Vec::new(),
            packed: Vec::new(),
            camera: Vec::new(),
            acc: Vec::new(),
            offsets: Vec::new(),
            vectors: 0,
            frame_clock: 0,
        };
        projector.calibrate()?;
        Ok(projector)
    }

    /// Measures `I(a)` and `I(0)` over `calibration_frames` frames each and derives the per-pixel
    /// gains and the output scale (see the type's documentation). The first call selects the
    /// pixels; later calls keep them. Call it again when the device drifts, so the reference
    /// intensities (and so the output variance) stay right.
    pub fn calibrate(&mut self) -> Result<&Calibration, Error> {
        // Calibration reads every pixel: the means over all of them, and the first selection.
        self.readout_window(None)?;
        let frames = self.config.calibration_frames;
        let pixels_all = self.device_info.output_dim;
        let Averages {
            reference: mean_ref_px,
            dark: mean_dark_px,
            signal,
        } = self.average_reference_and_dark(frames)?;
        // |r_j|² = I_j(a) − I_j(0) per pixel, and its mean over all pixels.
        let intensity: Vec<f64> = mean_ref_px
            .iter()
            .zip(&mean_dark_px)
            .map(|(a, d)| (a - d).max(0.0))
            .collect();
        let mean_intensity = intensity.iter().sum::<f64>() / pixels_all as f64;
        if !(mean_intensity > 0.0 && mean_intensity.is_finite()) {
            return Err(Error::new(
                ErrorKind::Calibration,
                format!(
                    "the reference pattern gives no light on the camera (mean I(a) − I(0) = {mean_intensity})"
                ),
            ));
        }
        signal?;
        let reference_on = self
            .reference_bytes
            .iter()
            .map(|b| b.count_ones() as usize)
            .sum::<usize>();
        let field_variance = mean_intensity / reference_on as f64;
        let output_scale = (2.0 / field_variance).sqrt();
        let floor = self.config.dark_fraction * mean_intensity;

        let (pixels, dark_pixels, bright_pixels) = if self.calibration.pixels.is_empty() {
            self.select_pixels(&intensity, &mean_ref_px, floor)?
        } else {
            (
                std::mem::take(&mut self.calibration.pixels),
                self.calibration.dark_pixels,
                self.calibration.bright_pixels,
            )
        };
        // `floor` may be 0 (dark_fraction 0): keep strictly positive to never divide by zero.
        let clamp = floor.max(mean_intensity * 1e-12);
        let reference_intensity: Vec<f64> =
            pixels.iter().map(|&p| intensity[p].max(clamp)).collect();
        self.set_gains(&reference_intensity, output_scale);
        self.calibration = Calibration {
            frames,
            reference_on,
            mean_dark: mean_dark_px.iter().sum::<f64>() / pixels_all as f64,
            mean_reference_intensity: mean_intensity,
            field_variance,
            output_scale,
            pixels,
            reference_intensity,
            dark_pixels,
            bright_pixels,
            ones_projection: Vec::new(),
        };
        if self.config.encoding.uses_offset() {
            self.calibration.ones_projection = self.measure_ones_projection(frames)?;
        }
        self.runs = pixel_runs(&self.calibration.pixels);
        // Projections read only the selected pixels, the first usable ones in pixel order:
        // the camera need read no further than the last of them.
        let last = self.calibration.pixels.iter().max().map_or(0, |&p| p);
        self.readout_window(Some(last + 1))?;
        Ok(&self.calibration)
    }

    /// Sets the device's readout window; a device without one reads whole frames.
    fn readout_window(&mut self, pixels: Option<usize>) -> Result<(), Error> {
        match self.device.set_readout_window(pixels) {
            Err(e) if e.kind() == ErrorKind::Unsupported => Ok(()),
            other => other,
        }
    }

    /// Calibration step 1: shows the reference alone, then an all-off frame, `frames` times
    /// each, and returns the mean camera value of every device pixel, `(I(a), I(0))`, with
    /// the outcome of [`check_signal`] (checked by the caller after the no-light check).
    fn average_reference_and_dark(&mut self, frames: usize) -> Result<Averages, Error> {
        let dark = vec![0u8; self.reference_bytes.len()];
        let reference = self.reference_bytes.clone();
        let PatternSums { sums, squares } = self.sum_patterns([&reference, &dark], frames)?;
        let [sum_ref, sum_dark] = sums;
        let signal = check_signal([&sum_ref, &sum_dark], [&squares[0], &squares[1]], frames);
        Ok(Averages {
            reference: mean_of(sum_ref, frames),
            dark: mean_of(sum_dark, frames),
            signal,
        })
    }

    /// Shows `patterns[0]` `frames` times, then `patterns[1]` `frames` times (each a packed
    /// device frame), one device call at a time, and sums each pattern's camera values and
    /// their squares per device pixel.
    fn sum_patterns(&mut self, patterns: [&[u8]; 2], frames: usize) -> Result<PatternSums, Error> {
        let pixels_all = self.device_info.output_dim;
        let bpf = self.reference_bytes.len();
        let total = 2 * frames;
        let mut sums = [vec![0.0f64; pixels_all], vec![0.0f64; pixels_all]];
        let mut squares = [vec![0.0f64; pixels_all], vec![0.0f64; pixels_all]];
        let chunk = self.chunk_frames();
        let mut start = 0;
        while start < total {
            let count = chunk.min(total - start);
            self.packed.clear();
            self.packed.resize(count * bpf, 0);
            for t in 0..count {
                let pattern = patterns[usize::from(start + t >= frames)];
                self.packed[t * bpf..(t + 1) * bpf].copy_from_slice(pattern);
            }
            let camera = self.show(0, count)?;
            for t in 0..count {
                let which = usize::from(start + t >= frames);
                for ((s, q), &v) in sums[which]
                    .iter_mut()
                    .zip(squares[which].iter_mut())
                    .zip(&camera[t * pixels_all..])
                {
                    let v = f64::from(v);
                    *s += v;
                    *q += v * v;
                }
            }
            start += count;
        }
        Ok(PatternSums { sums, squares })
    }

    /// Calibration step 4, for an encoding with an offset: `L(1)` per output, the projection of
    /// the all-ones data pattern, as the sum of [`ones_parts`](OpticalConfig::ones_parts)
    /// projections `L(1_p)` of disjoint runs of data features, each from `I(1_p + a)` and
    /// `I(1_p)` averaged over `frames` frames and decoded like any binary frame:
    /// `gain_j · (I(1_p + a) − I(1_p)) − offset_j`.
    fn measure_ones_projection(&mut self, frames: usize) -> Result<Vec<f64>, Error> {
        let n = self.config.input_dim;
        let parts = self.config.ones_parts();
        let mut total = vec![0.0f64; self.calibration.pixels.len()];
        for part in 0..parts {
            let mut ones = vec![0u8; self.reference_bytes.len()];
            for i in part * n / parts..(part + 1) * n / parts {
                ones[i / 8] |= 1 << (i % 8);
            }
            let with_reference: Vec<u8> = ones
                .iter()
                .zip(&self.reference_bytes)
                .map(|(o, r)| o | r)
                .collect();
            let PatternSums { sums, .. } = self.sum_patterns([&with_reference, &ones], frames)?;
            let [lit, plain] = sums.map(|s| mean_of(s, frames));
            for (t, (&p, (&gain, &offset))) in total.iter_mut().zip(
                self.calibration
                    .pixels
                    .iter()
                    .zip(self.gain.iter().zip(&self.offset)),
            ) {
                *t += gain * (lit[p] - plain[p]) - offset;
            }
        }
        Ok(total)
    }

    /// Calibration step 2, first calibration only: the first `output_dim` pixels, in pixel
    /// order, whose reference intensity `|r_j|²` reaches `floor` and, on a quantized camera,
    /// whose reference reading stays within the saturation ceiling. Returns them with the
    /// counts of pixels skipped as too dark and as too bright; too few usable pixels is an
    /// error.
    fn select_pixels(
        &self,
        intensity: &[f64],
        mean_ref_px: &[f64],
        floor: f64,
    ) -> Result<(Vec<usize>, usize, usize), Error> {
        let m = self.config.output_dim;
        let ceiling = self.device_info.max_count() as f64 * self.config.saturation_fraction;
        let mut chosen = Vec::with_capacity(m);
        let (mut dark, mut bright) = (0, 0);
        for (p, (&c, &raw)) in intensity.iter().zip(mean_ref_px).enumerate() {
            if chosen.len() == m {
                break;
            }
            if c < floor || c <= 0.0 {
                dark += 1;
            } else if raw > ceiling {
                bright += 1;
            } else {
                chosen.push(p);
            }
        }
        if chosen.len() < m {
            return Err(Error::new(
                ErrorKind::Calibration,
                format!(
                    "only {} of {} camera pixels are usable ({} too dark, {} too bright) but the projector needs {}; give the device about {} outputs",
                    chosen.len(),
                    self.device_info.output_dim,
                    dark,
                    bright,
                    m,
                    self.config.recommended_device_output_dim()
                ),
            ));
        }
        Ok((chosen, dark, bright))
    }

    /// Calibration step 3: each output's gain `output_scale / (2 |r_j|)` and offset
    /// `gain_j · |r_j|²` from the selected pixels' reference intensities.
    fn set_gains(&mut self, reference_intensity: &[f64], output_scale: f64) {
        self.gain = reference_intensity
            .iter()
            .map(|c| output_scale / (2.0 * c.sqrt()))
            .collect();
        self.offset = self
            .gain
            .iter()
            .zip(reference_intensity)
            .map(|(g, c)| g * c)
            .collect();
    }

    /// The latest calibration.
    pub fn calibration(&self) -> &Calibration {
        &self.calibration
    }

    /// The configuration.
    pub fn config(&self) -> &OpticalConfig {
        &self.config
    }

    /// The device.
    pub fn device(&self) -> &D {
        &self.device
    }

    /// The device, mutably (showing frames through it does not disturb the projector, but
    /// changing its settings may invalidate the calibration). After calibration a device with
    /// a readout window reads only up to the last selected pixel (0 past it); the projector
    /// lifts the window itself to recalibrate, and [`into_inner`](Self::into_inner) lifts it.
    pub fn device_mut(&mut self) -> &mut D {
        &mut self.device
    }

    /// Gives the device back, reading whole frames again.
    pub fn into_inner(mut self) -> D {
        // Best effort, as the signature cannot fail: a device without a window answers
        // Unsupported, and lifting a window only restores the state a device starts in.
        let _ = self.device.set_readout_window(None);
        self.device
    }

    /// Vectors projected so far (by `project` and `project_binary`).
    pub fn vectors_projected(&self) -> u64 {
        self.vectors
    }

    /// Global index of the next device frame as the projector counts it: the frames it has
    /// shown (calibration included), or where [`RandomProjector::seek_frame`] put the device's
    /// clock. A stochastic encoding keys each vector's draws by it (see
    /// [`OpticalConfig::dither_seed`]).
    pub fn next_frame_index(&self) -> u64 {
        self.frame_clock
    }

    /// The linearized projection of binary vectors, without encoding: `bits` holds
    /// `batch × input_dim` values 0 or 1; two device frames per vector. `output` gets
    /// `output_scale · Re(conj(r_j) R_j·x) / |r_j|`, the same matrix `project` applies.
    pub fn project_binary(
        &mut self,
        bits: &[u8],
        batch: usize,
        output: &mut [f32],
    ) -> Result<(), Error> {
        let n = self.config.input_dim;
        let m = self.config.output_dim;
        if batch.checked_mul(n) != Some(bits.len()) {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "binary input has {} values, expected batch {batch} × input_dim {n}",
                    bits.len()
                ),
            ));
        }
        if batch.checked_mul(m) != Some(output.len()) {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "projector output buffer has {} values, expected batch {batch} × output_dim {m}",
                    output.len()
                ),
            ));
        }
        if let Some(pos) = bits.iter().position(|&b| b > 1) {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "input is not binary: value {} at row {}, column {}",
                    bits[pos],
                    pos / n,
                    pos % n
                ),
            ));
        }
        self.bits.clear();
        self.bits.extend_from_slice(bits);
        self.weights.clear();
        self.weights.resize(batch, 1.0);
        self.offsets.clear();
        self.offsets.resize(batch, 0.0);
        self.measure(batch, 1, output)
    }

    /// Measures the effective matrix P (`input_dim × output_dim`, row-major) by projecting the
    /// unit basis vectors: `2 · input_dim` device frames, noise included. For diagnostics
    /// (e.g. weight alignment against P); DFA itself never needs P.
    pub fn measure_matrix(&mut self) -> Result<Vec<f32>, Error> {
        let n = self.config.input_dim;
        let mut eye = vec![0u8; n * n];
        for i in 0..n {
            eye[i * n + i] = 1;
        }
        let mut p = vec![0.0f32; n * self.config.output_dim];
        self.project_binary(&eye, n, &mut p)?;
        Ok(p)
    }

    /// Frames per device call: the device maximum, capped so the camera buffer stays bounded.
    fn chunk_frames(&self) -> usize {
        let cap =
            (CAMERA_CHUNK_VALUES / self.device_info.output_dim.max(1)).clamp(1, MAX_CHUNK_FRAMES);
        self.device_info.max_batch.min(cap).max(1)
    }

    /// Vectors encoded and measured together, at `frames_per_vector` frames each: a block's
    /// frames are a whole number of full device calls (`lcm(chunk, frames_per_vector)` frames)
    /// when that stays within `MAX_BLOCK_BYTES` of packed frames, so a projection takes as few
    /// calls as `max_batch` allows; otherwise as many whole vectors as fit one call.
    fn block_vectors(&self, frames_per_vector: usize) -> usize {
        let chunk = self.chunk_frames();
        let gcd = {
            let (mut a, mut b) = (chunk, frames_per_vector);
            while b != 0 {
                (a, b) = (b, a % b);
            }
            a
        };
        let lcm_vectors = chunk / gcd;
        let bytes = lcm_vectors
            .saturating_mul(frames_per_vector)
            .saturating_mul(self.reference_bytes.len());
        if bytes <= MAX_BLOCK_BYTES {
            lcm_vectors
        } else {
            (chunk / frames_per_vector).max(1)
        }
    }

    /// Shows frames `start .. start + count` of `self.packed` and returns the camera values,
    /// checked finite.
    fn show(&mut self, start: usize, count: usize) -> Result<&[f32], Error> {
        self.show_unchecked(start, count)?;
        let pixels = self.device_info.output_dim;
        let camera = &self.camera[..count * pixels];
        // A branch-free scan first (it vectorizes, in parallel blocks); the position only when
        // something is wrong.
        let all_finite = camera.par_chunks(FINITE_SCAN_BLOCK).all(all_finite);
        if !all_finite {
            return Err(non_finite_error(camera, pixels, start));
        }
        Ok(camera)
    }

    /// [`show`](Self::show) without the check that the values are finite (the caller checks).
    fn show_unchecked(&mut self, start: usize, count: usize) -> Result<(), Error> {
        let bpf = self.reference_bytes.len();
        let pixels = self.device_info.output_dim;
        let len = count * pixels;
        if self.camera.len() < len {
            self.camera.resize(len, 0.0);
        }
        let frames = PackedFrames::new(
            &self.packed[start * bpf..(start + count) * bpf],
            count,
            self.device_info.input_dim,
        )?;
        let camera = &mut self.camera[..len];
        self.device.transform(&frames, camera)?;
        self.frame_clock = self.frame_clock.wrapping_add(count as u64);
        Ok(())
    }

    /// Shows the `batch × k` binary frames in `self.bits` (with weights `self.weights`), each
    /// as `x + a` then `x`, and writes `c·L(1) + Σ_f w_f · L(b_f)` per vector into `output`
    /// (`c` from `self.offsets`).
    fn measure(&mut self, batch: usize, k: usize, output: &mut [f32]) -> Result<(), Error> {
        let n = self.config.input_dim;
        let m = self.config.output_dim;
        let bpf = self.reference_bytes.len();
        let total = batch * k * 2;
        self.packed.clear();
        self.packed.resize(total * bpf, 0);
        for (pair, data) in self.bits.chunks_exact(n.max(1)).take(batch * k).enumerate() {
            let with_ref = &mut self.packed[2 * pair * bpf..(2 * pair + 1) * bpf];
            with_ref.copy_from_slice(&self.reference_bytes);
            for (i, &b) in data.iter().enumerate() {
                with_ref[i / 8] |= b << (i % 8);
            }
            let (head, tail) = self.packed.split_at_mut((2 * pair + 1) * bpf);
            let without = &mut tail[..bpf];
            without.copy_from_slice(&head[2 * pair * bpf..]);
            for (w, r) in without.iter_mut().zip(&self.reference_bytes) {
                *w &= !r;
            }
        }
        self.acc.clear();
        self.acc.resize(batch * m, 0.0);
        let chunk = self.chunk_frames();
        let pixels_all = self.device_info.output_dim;
        let mut start = 0;
        while start < total {
            let count = chunk.min(total - start);
            self.show_unchecked(start, count)?;
            let finish_row = row_finisher(
                &self.weights,
                &self.offsets,
                &self.offset,
                &self.calibration.ones_projection,
                k,
            );
            let weights = &self.weights;
            // Vector b owns frames 2kb .. 2k(b + 1), so its output row only reads those: the
            // rows are decoded in parallel, each adding its frames in frame order as a serial
            // pass would (the same bits whatever the thread count). Each row also checks that
            // its frames' camera values are all finite, while they are in cache (the frames of
            // the rows are the frames shown, each once).
            let non_finite = AtomicBool::new(false);
            let first_row = start / (2 * k);
            let end_row = (start + count).div_ceil(2 * k);
            let camera = &self.camera[..count * pixels_all];
            let (runs, gains) = (&self.runs, &self.gain);
            let decode_row = |b: usize, row: &mut [f64]| {
                let g_end = (2 * k * (b + 1)).min(start + count);
                let mut g = (2 * k * b).max(start);
                if !all_finite(&camera[(g - start) * pixels_all..(g_end - start) * pixels_all]) {
                    non_finite.store(true, Ordering::Relaxed);
                }
                while g < g_end {
                    let t = g - start;
                    let w = f64::from(weights[g / 2]);
                    let frame = &camera[t * pixels_all..(t + 1) * pixels_all];
                    if g % 2 == 0 && t + 1 < count {
                        // Both frames of the pair in this call: one pass over I(x + a) − I(x).
                        if w != 0.0 {
                            let next = &camera[(t + 1) * pixels_all..(t + 2) * pixels_all];
                            for r in runs {
                                let (outputs, pixels) = r.ranges();
                                add_pair(
                                    w,
                                    &gains[outputs.clone()],
                                    &frame[pixels.clone()],
                                    &next[pixels],
                                    &mut row[outputs],
                                );
                            }
                        }
                        g += 2;
                        continue;
                    }
                    // A pair split across two calls (odd chunk sizes): one frame at a time.
                    if w != 0.0 {
                        let coef = if g % 2 == 0 { w } else { -w };
                        for r in runs {
                            let (outputs, pixels) = r.ranges();
                            add_one(
                                coef,
                                &gains[outputs.clone()],
                                &frame[pixels],
                                &mut row[outputs],
                            );
                        }
                    }
                    g += 1;
                }
            };
            let rows = self.acc[first_row * m..end_row * m].par_chunks_exact_mut(m.max(1));
            if count == total {
                // Every frame in one device call: each row is finished as soon as it is
                // decoded, in the same pass. (On an error the output holds some finished rows.)
                rows.zip(output.par_chunks_exact_mut(m.max(1)))
                    .enumerate()
                    .with_min_len(DECODE_MIN_ROWS)
                    .for_each(|(b, (row, out_row))| {
                        decode_row(b, row);
                        finish_row(b, row, out_row);
                    });
            } else {
                rows.enumerate()
                    .with_min_len(DECODE_MIN_ROWS)
                    .for_each(|(i, row)| decode_row(first_row + i, row));
            }
            if non_finite.into_inner() {
                return Err(non_finite_error(camera, pixels_all, start));
            }
            start += count;
        }
        if chunk < total {
            let finish_row = row_finisher(
                &self.weights,
                &self.offsets,
                &self.offset,
                &self.calibration.ones_projection,
                k,
            );
            let acc_all = &self.acc;
            output
                .par_chunks_exact_mut(m.max(1))
                .take(batch)
                .enumerate()
                .with_min_len(DECODE_MIN_ROWS)
                .for_each(|(b, out_row)| finish_row(b, &acc_all[b * m..(b + 1) * m], out_row));
        }
        self.vectors += batch as u64;
        Ok(())
    }
}

/// `c·L(1) + Σ_f w_f·L(b_f)` of vector `b` of a block (`k` binary frames each, weights
/// `weights`, encoding offsets `offsets`) from its decoded sums `acc`, into `out_row`
/// (`offset`: each output's `gain_j·|r_j|²`; `ones`: `L(1)`).
fn row_finisher<'a>(
    weights: &'a [f32],
    offsets: &'a [f32],
    offset: &'a [f64],
    ones: &'a [f64],
    k: usize,
) -> impl Fn(usize, &[f64], &mut [f32]) + Sync + 'a {
    move |b, acc, out_row| {
        let wsum: f64 = weights[b * k..(b + 1) * k]
            .iter()
            .map(|&w| f64::from(w))
            .sum();
        let shift = f64::from(offsets[b]);
        if shift == 0.0 {
            for ((o, &acc), &off) in out_row.iter_mut().zip(acc).zip(offset) {
                *o = (acc - wsum * off) as f32;
            }
        } else {
            for (((o, &acc), &off), &ones) in out_row.iter_mut().zip(acc).zip(offset).zip(ones) {
                *o = (acc - wsum * off + shift * ones) as f32;
            }
        }
    }
}

/// Whether every value is finite: a branch-free fold, which vectorizes.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512cd+avx512dq+avx512vl",
    "x86_64+avx2+fma",
    "x86_64+sse4.2",
    "aarch64+neon"
))]
fn all_finite(values: &[f32]) -> bool {
    values.iter().fold(true, |ok, v| ok & v.is_finite())
}

/// The error for camera values (frames from `start`, `pixels` each) of which one is not
/// finite, naming the first.
fn non_finite_error(camera: &[f32], pixels: usize, start: usize) -> Error {
    let pixels = pixels.max(1);
    let message = match camera.iter().position(|v| !v.is_finite()) {
        Some(pos) => format!(
            "device returned a non-finite camera value ({}) at frame {}, pixel {}",
            camera[pos],
            start + pos / pixels,
            pos % pixels
        ),
        None => "device returned a non-finite camera value".to_owned(),
    };
    Error::new(ErrorKind::Device, message)
}

/// Outputs `output .. output + len` read pixels `pixel .. pixel + len`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct PixelRun {
    output: usize,
    pixel: usize,
    len: usize,
}

impl PixelRun {
    fn ranges(&self) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
        (
            self.output..self.output + self.len,
            self.pixel..self.pixel + self.len,
        )
    }
}

/// The runs of consecutive pixels in `pixels` (in order).
fn pixel_runs(pixels: &[usize]) -> Vec<PixelRun> {
    let mut runs: Vec<PixelRun> = Vec::new();
    for (output, &pixel) in pixels.iter().enumerate() {
        match runs.last_mut() {
            Some(r) if r.pixel + r.len == pixel => r.len += 1,
            _ => runs.push(PixelRun {
                output,
                pixel,
                len: 1,
            }),
        }
    }
    runs
}

/// `acc_j += w · gain_j · (a_j − b_j)` in `f64`, the decode of a frame pair over one run.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512cd+avx512dq+avx512vl",
    "x86_64+avx2+fma",
    "x86_64+sse4.2",
    "aarch64+neon"
))]
fn add_pair(w: f64, gains: &[f64], a: &[f32], b: &[f32], acc: &mut [f64]) {
    for (((acc, &gain), &a), &b) in acc.iter_mut().zip(gains).zip(a).zip(b) {
        *acc += w * gain * (f64::from(a) - f64::from(b));
    }
}

/// `acc_j += w · gain_j · a_j` in `f64`, the decode of one frame over one run.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512cd+avx512dq+avx512vl",
    "x86_64+avx2+fma",
    "x86_64+sse4.2",
    "aarch64+neon"
))]
fn add_one(w: f64, gains: &[f64], a: &[f32], acc: &mut [f64]) {
    for ((acc, &gain), &a) in acc.iter_mut().zip(gains).zip(a) {
        *acc += w * gain * f64::from(a);
    }
}

/// Per device pixel, the sums of the camera values of two patterns and of their squares.
struct PatternSums {
    sums: [Vec<f64>; 2],
    squares: [Vec<f64>; 2],
}

/// Per-pixel means from sums over `frames` frames.
fn mean_of(sums: Vec<f64>, frames: usize) -> Vec<f64> {
    let inv = 1.0 / frames as f64;
    sums.iter().map(|s| s * inv).collect()
}

/// What calibration step 1 measures: the mean camera value of every device pixel with the
/// reference shown, `I(a)`, and with nothing shown, `I(0)`, and the outcome of [`check_signal`].
struct Averages {
    reference: Vec<f64>,
    dark: Vec<f64>,
    signal: Result<(), Error>,
}

/// Standard errors by which the reference's mean intensity must exceed zero.
const SIGNAL_SIGMAS: f64 = 5.0;

/// Checks that the reference pattern's light stands out of the camera noise. Per pixel, the
/// mean of `I(a) − I(0)` over the calibration frames has the variance `(σ²_a + σ²_0) / frames`
/// (each σ² from that pixel's frames); their mean over the pixels must exceed
/// [`SIGNAL_SIGMAS`] standard errors. Without light (a photon rate of 0) only noise remains,
/// whose clipped differences would otherwise pass for a faint signal and give noise as
/// projections. Skipped with a single calibration frame (no noise estimate).
fn check_signal(sums: [&[f64]; 2], squares: [&[f64]; 2], frames: usize) -> Result<(), Error> {
    if frames < 2 || sums[0].is_empty() {
        return Ok(());
    }
    let f = frames as f64;
    let variance = |sum: f64, sq: f64| ((sq - sum * sum / f) / (f - 1.0)).max(0.0);
    let (mut difference, mut variance_sum) = (0.0f64, 0.0f64);
    for p in 0..sums[0].len() {
        difference += (sums[0][p] - sums[1][p]) / f;
        variance_sum +=
            (variance(sums[0][p], squares[0][p]) + variance(sums[1][p], squares[1][p])) / f;
    }
    let pixels = sums[0].len() as f64;
    let mean = difference / pixels;
    let standard_error = variance_sum.sqrt() / pixels;
    if mean > SIGNAL_SIGMAS * standard_error {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::Calibration,
        format!(
            "calibration finds no signal: the reference pattern's mean intensity I(a) − I(0) = {mean:.3} counts is within the camera noise (standard error {standard_error:.3} over {frames} frames); is the light off (photon rate, exposure or quantum efficiency 0)?"
        ),
    ))
}

/// The projector's info: dimensions, cost, and an identity naming the device, its label, the
/// reference pattern and the encoding. The identity's text is stored in checkpoints: keep it.
fn projector_info(c: &OpticalConfig, device: &DeviceInfo) -> ProjectorInfo {
    let mut info = ProjectorInfo::new(
        format!(
            "optical(device={} [{}] {}x{} {}, in={}, out={}, reference={}@seed{}, encoding={})",
            device.kind,
            device.description,
            device.input_dim,
            device.output_dim,
            c.device_label,
            c.input_dim,
            c.output_dim,
            c.reference_features,
            c.reference_seed,
            encoding_identity(c)
        ),
        c.input_dim,
        c.output_dim,
        1.0,
    );
    info.frames_per_vector = c.frames_per_vector() as f64;
    info
}

/// The encoding in the projector's identity: its full form, with the dither seed for a
/// stochastic encoding (its draws are part of what the projector computes).
fn encoding_identity(c: &OpticalConfig) -> String {
    if c.encoding.is_stochastic() {
        format!("{}@seed{}", c.encoding.canonical(), c.dither_seed)
    } else {
        c.encoding.canonical()
    }
}

impl<D: OpticalDevice> RandomProjector for OpticalProjector<D> {
    fn info(&self) -> ProjectorInfo {
        self.info.clone()
    }

    fn project(&mut self, input: &[f32], batch: usize, output: &mut [f32]) -> Result<(), Error> {
        check_projection_buffers(&self.info, input, batch, output)?;
        let n = self.config.input_dim;
        let m = self.config.output_dim;
        let k = self.config.encoding.binary_frames();
        let block = self.block_vectors(2 * k);
        for (x_block, y_block) in input.chunks(block * n).zip(output.chunks_mut(block * m)) {
            let rows = x_block.len() / n;
            self.bits.clear();
            self.bits.resize(rows * k * n, 0);
            self.weights.clear();
            self.weights.resize(rows * k, 0.0);
            self.offsets.clear();
            self.offsets.resize(rows, 0.0);
            // Vector r's first device frame is the block's first plus 2k·r.
            let first_frame = self.frame_clock;
            let (encoding, dither_seed) = (&self.config.encoding, self.config.dither_seed);
            // Each vector's code depends on that vector and its frame index only, so the
            // vectors are encoded in parallel with the same result.
            x_block
                .par_chunks_exact(n)
                .zip(self.bits.par_chunks_exact_mut(k * n))
                .zip(self.weights.par_chunks_exact_mut(k))
                .zip(self.offsets.par_iter_mut())
                .enumerate()
                .with_min_len(ENCODE_MIN_VECTORS)
                .for_each(|(r, (((x, bits), w), c))| {
                    let key = DitherKey {
                        seed: dither_seed,
                        stream: first_frame.wrapping_add((2 * k * r) as u64),
                    };
                    *c = encoding.encode(x, key, bits, w);
                });
            self.measure(rows, k, y_block)?;
        }
        crate::output::check_finite(output, m)
    }

    fn counters(&self) -> DeviceCounters {
        self.device.counters()
    }

    fn seek_frame(&mut self, index: u64) -> Result<(), Error> {
        self.device.seek_frame(index)?;
        self.frame_clock = index;
        Ok(())
    }
}
