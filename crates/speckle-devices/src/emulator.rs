//! The simulated OPU behind `speckle emulate`: the [`Emulator`](speckle_serial::Emulator)'s
//! options and device factory for a [`SimulatedOpu`], so that a device served over a link
//! equals the in-process one with the same dimensions and seed.
use speckle_hal::{Error, ErrorKind};
use speckle_serial::{DeviceSettings, EmulatorOptions};
use speckle_sim::{DeviceConfig, SimulatedOpu};

use crate::open::sim_full_dims;

/// Emulator options for a simulated OPU with `config`: the largest input is one feature per
/// mirror (or per fixed macro-pixel), the largest output a 1920 × 1080 sensor.
pub fn sim_emulator_options(config: &DeviceConfig) -> EmulatorOptions {
    let (max_in, max_out) = sim_full_dims(config);
    EmulatorOptions {
        default_dims: (1024.min(max_in), 1024),
        max_dims: (max_in, max_out),
        ..EmulatorOptions::default()
    }
}

/// The device factory that serves a [`SimulatedOpu`]: Configure builds
/// `SimulatedOpu::new(config, input_dim, output_dim, seed)`. A non-zero exposure sets
/// `camera.exposure_us`; a non-zero gain divides `camera.electrons_per_count`; an output offset
/// is unsupported.
pub fn sim_factory(
    config: DeviceConfig,
    seed: u64,
) -> impl FnMut(&DeviceSettings) -> Result<SimulatedOpu, Error> {
    move |s: &DeviceSettings| {
        if s.output_offset != 0 {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "the simulated camera has no output offset (use 0)",
            ));
        }
        let mut cfg = config.clone();
        if s.exposure_ns != 0 {
            cfg.camera.exposure_us = f64::from(s.exposure_ns) / 1000.0;
        }
        if s.gain != 0.0 {
            if !(s.gain.is_finite() && s.gain > 0.0) {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!("gain {} must be positive and finite", s.gain),
                ));
            }
            cfg.camera.electrons_per_count /= f64::from(s.gain);
        }
        SimulatedOpu::new(&cfg, s.input_dim, s.output_dim, seed)
    }
}
