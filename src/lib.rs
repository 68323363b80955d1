//! # speckle
//!
//! Facade of the speckle workspace: Direct Feedback Alignment training whose random feedback
//! projection is computed by an optical co-processor, simulated or real. The `speckle` binary
//! (the command line) is this package's; the library re-exports the crates by layer.
//!
//! ```
//! use speckle::devices::{open_projector, DeviceSpec};
//! use speckle::hal::RandomProjector;
//!
//! // The simulated 8-bit OPU (SPEC `sim`) made linear, ternary encoding: 16 → 32, seed 0.
//! let spec: DeviceSpec = "sim".parse()?;
//! let mut projector = open_projector(&spec, "ternary".parse()?, &Default::default(), 16, 32, 0)?;
//! let x: Vec<f32> = (0..2 * 16).map(|i| (i as f32 * 0.7).sin()).collect();
//! let mut y = vec![0f32; 2 * 32];
//! projector.project(&x, 2, &mut y)?;
//! assert!(y.iter().all(|v| v.is_finite()));
//! assert_eq!(projector.info().frames_per_vector, 4.0); // 2 ternary frames × 2 (interferometry)
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
pub use speckle_devices as devices;
pub use speckle_dfa as dfa;
pub use speckle_hal as hal;
pub use speckle_projection as projection;
pub use speckle_protocol as protocol;
pub use speckle_runs as runs;
pub use speckle_serial as serial;
pub use speckle_sim as sim;
