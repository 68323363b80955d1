//! # speckle-devices
//!
//! The typed device layer: a [`DeviceSpec`] names a device (`sim`, `sim:PRESET`, `sim:PATH`,
//! `digital`, `serial:PATH[@BAUD]`) and is parsed once; [`open_device`] and [`open_projector`]
//! open what it names, with a simulated device's config [`overrides`] applied before the config
//! is validated; [`batch`] runs whole batches through them as `speckle transform` does;
//! [`FeedbackSpec`] is the device side of DFA's feedback; [`snr`] measures the projection SNR of
//! a simulated device; [`emulator`] serves a simulated OPU over the serial protocol.
//!
//! ```
//! use speckle_devices::{open_projector, overrides, DeviceSpec};
//! use speckle_hal::RandomProjector;
//!
//! // The simulated 8-bit OPU (SPEC `sim`) made linear, ternary encoding: 16 → 32, seed 0,
//! // with a 10-bit camera instead of the preset's 8 bits.
//! let spec: DeviceSpec = "sim".parse()?;
//! let set = overrides::parse(&["camera.bits=10".into()])?;
//! let mut projector = open_projector(&spec, "ternary".parse()?, &set, 16, 32, 0)?;
//! let x: Vec<f32> = (0..2 * 16).map(|i| (i as f32 * 0.7).sin()).collect();
//! let mut y = vec![0f32; 2 * 32];
//! projector.project(&x, 2, &mut y)?;
//! assert!(y.iter().all(|v| v.is_finite()));
//! assert_eq!(projector.info().frames_per_vector, 4.0); // 2 ternary frames × 2 (interferometry)
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod batch;
pub mod emulator;
mod feedback;
mod open;
pub mod overrides;
pub mod snr;
mod spec;

pub use feedback::{as_string, FeedbackDistribution, FeedbackSpec};
pub use open::{
    full_dims, open_device, open_projector, sim_config, sim_full_dims, SIM_DEFAULT_CAMERA_PIXELS,
};
pub use overrides::OverrideError;
pub use spec::{DeviceSpec, SimSource, SpecError, DEFAULT_PRESET, SPEC_GRAMMAR};
pub use speckle_projection::Encoding;
