//! # speckle-projection
//!
//! Linear random projections `y = x · P` for Direct Feedback Alignment, behind the
//! [`RandomProjector`](speckle_hal::RandomProjector) trait:
//!
//! * [`DigitalProjector`] (alias [`GaussianProjector`]): the ideal digital projector (what GPU
//!   DFA uses), an explicit seeded matrix and a faer GEMM; N(0, 1) entries by default, or
//!   U[−1, 1) ([`EntryDistribution`]).
//! * [`OpticalProjector`]: any intensity-only [`OpticalDevice`](speckle_hal::OpticalDevice)
//!   made linear by interferometry with a fixed binary reference pattern, with signed inputs
//!   sent as binary frames through an [`Encoding`] (ternary, bit-plane or per-vector levels,
//!   deterministic or dithered).
//!
//! Both report the variance of their matrices' entries (`entry_variance`): 1 for (nearly) iid
//! N(0, 1) entries, 1/3 for the digital projector's U[−1, 1) ones.
//!
//! ```
//! use speckle_hal::{DeviceCounters, DeviceInfo, Error, OpticalDevice, PackedFrames, RandomProjector};
//! use speckle_projection::{Encoding, GaussianProjector, OpticalConfig, OpticalProjector};
//!
//! // The digital projector: 10 → 800, seed 7, one GEMM into the caller's buffer.
//! let mut digital = GaussianProjector::new(10, 800, 7)?;
//! let e = vec![0.1f32; 2 * 10]; // a batch of 2 error vectors
//! let mut y = vec![0.0f32; 2 * 800];
//! digital.project(&e, 2, &mut y)?;
//! assert_eq!(digital.info().entry_variance, 1.0);
//!
//! // A toy intensity-only device: pixel j sees |Σ_i (c_ji + i·s_ji) x_i|² for fixed c, s.
//! struct Toy { info: DeviceInfo, frames: u64 }
//! impl Toy {
//!     fn new(input_dim: usize, output_dim: usize) -> Self {
//!         let info = DeviceInfo { kind: "toy".into(), description: "doc example".into(),
//!             input_dim, output_dim, bit_depth: None,
//!             frame_time_us: 500.0, exposure_us: 400.0, max_batch: 64 };
//!         Self { info, frames: 0 }
//!     }
//! }
//! impl OpticalDevice for Toy {
//!     fn info(&self) -> DeviceInfo {
//!         self.info.clone()
//!     }
//!     fn transform(&mut self, input: &PackedFrames<'_>, out: &mut [f32]) -> Result<(), Error> {
//!         speckle_hal::check_device_buffers(&self.info, input, out)?;
//!         let (n, m) = (self.info.input_dim, self.info.output_dim);
//!         for f in 0..input.frames() {
//!             for j in 0..m {
//!                 let (mut re, mut im) = (0.0f32, 0.0f32);
//!                 for i in (0..n).filter(|&i| input.bit(f, i)) {
//!                     re += ((i * 31 + j * 17) % 13) as f32 - 6.0;
//!                     im += ((i * 7 + j * 29) % 11) as f32 - 5.0;
//!                 }
//!                 out[f * m + j] = re * re + im * im;
//!             }
//!         }
//!         self.frames += input.frames() as u64;
//!         Ok(())
//!     }
//!     fn counters(&self) -> DeviceCounters {
//!         DeviceCounters { frames: self.frames, device_time_s: self.frames as f64 * 5e-4 }
//!     }
//! }
//!
//! let config = OpticalConfig::new(10, 20).with_encoding("bitplane:4".parse()?);
//! let (dev_in, dev_out) = (config.device_input_dim(), config.recommended_device_output_dim());
//! let mut optical = OpticalProjector::new(Toy::new(dev_in, dev_out), config)?;
//! let mut z = vec![0.0f32; 2 * 20];
//! optical.project(&e, 2, &mut z)?;
//! assert_eq!(optical.info().frames_per_vector, 16.0); // 2 signs × 4 bit planes × 2 frames
//! assert!(z.iter().all(|v| v.is_finite()));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

mod digital;
mod encoding;
mod levels;
mod optical;
mod output;

pub use digital::{DigitalProjector, EntryDistribution, GaussianProjector, MAX_GAUSSIAN_ENTRIES};
pub use encoding::{
    DitherKey, Encoding, EncodingError, TernaryScale, DEFAULT_TERNARY_THRESHOLD, MAX_BITPLANE_BITS,
    MAX_LEVELS,
};
pub use optical::{
    Calibration, OpticalConfig, OpticalProjector, DEFAULT_CALIBRATION_FRAMES,
    DEFAULT_DARK_FRACTION, DEFAULT_SATURATION_FRACTION, MAX_CALIBRATION_FRAMES,
    MIN_REFERENCE_FEATURES,
};
