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
/// `SimulatedOpu::new(config, input_dim, output_dim, seed)` (a later Configure that only
/// narrows the region reads a window of that device instead: [`Emulator`](speckle_serial::Emulator)). A non-zero exposure sets
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use speckle_hal::{OpticalDevice, PackedFrames};
    use speckle_serial::{memory_link, Emulator, MemoryPort, SerialDevice, SerialOptions};
    use speckle_testkit::random_frames_with_density;

    use super::*;

    /// A simulated OPU served by the emulator on one end of an in-memory link; the host's end
    /// and options for a region of `dims`.
    fn serve_sim(
        config: &DeviceConfig,
        seed: u64,
        dims: (usize, usize),
    ) -> (MemoryPort, SerialOptions, Served) {
        let (host, mut dev_end) = memory_link();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let options = sim_emulator_options(config);
        let factory = sim_factory(config.clone(), seed);
        let handle = std::thread::spawn(move || {
            let mut emulator = Emulator::new(factory, options);
            let _ = emulator.serve(&mut dev_end, &flag);
        });
        let options = SerialOptions {
            dims: Some(dims),
            response_timeout: Duration::from_secs(5),
            ..SerialOptions::default()
        };
        (host, options, Served { stop, handle })
    }

    struct Served {
        stop: Arc<AtomicBool>,
        handle: std::thread::JoinHandle<()>,
    }

    impl Served {
        fn stop(self) {
            self.stop.store(true, Ordering::Relaxed);
            self.handle.join().unwrap();
        }
    }

    /// A window over the link reads, inside it, the bits of the whole frames of the in-process
    /// simulated OPU: the emulator keeps the device it built for the region and windows it
    /// (a device rebuilt with fewer pixels would draw its last camera chunk's noise otherwise).
    #[test]
    fn a_window_over_the_link_reads_the_in_process_frames() {
        let config = DeviceConfig::preset("lighton").unwrap();
        let (i, o, p, seed) = (20, 300, 200, 5);
        let (host, options, served) = serve_sim(&config, seed, (i, o));
        let mut serial = SerialDevice::new(host, options).unwrap();
        serial.set_readout_window(Some(p)).unwrap();
        let mut local = SimulatedOpu::new(&config, i, o, seed).unwrap();
        for (k, density) in [0.05, 0.5].into_iter().enumerate() {
            let n = 24;
            let packed = random_frames_with_density(n, i, density, k as u64);
            let frames = PackedFrames::new(&packed, n, i).unwrap();
            let (mut got, mut want) = (vec![1.0; n * o], vec![0.0; n * o]);
            serial.transform(&frames, &mut got).unwrap();
            local.transform(&frames, &mut want).unwrap();
            for (g, w) in got.chunks_exact(o).zip(want.chunks_exact(o)) {
                assert_eq!(g[..p], w[..p], "density {density}");
                assert!(g[p..].iter().all(|&v| v == 0.0));
            }
        }
        drop(serial);
        served.stop();
    }

    /// The optical projector over the link sets its readout window after calibration, as over
    /// the in-process device: the same projections, bit for bit, and each frame's answer then
    /// carries only the window's values.
    #[test]
    fn a_projector_over_the_link_reads_its_window_only() {
        use speckle_hal::RandomProjector;
        use speckle_projection::{Encoding, OpticalConfig, OpticalProjector};

        let config = DeviceConfig::preset("lighton").unwrap();
        let seed = 3;
        let optical = OpticalConfig::new(10, 120).with_encoding(Encoding::Levels {
            levels: 3,
            dither: true,
        });
        let (i, o) = (
            optical.device_input_dim(),
            optical.recommended_device_output_dim(),
        );
        let (host, options, served) = serve_sim(&config, seed, (i, o));
        let serial = SerialDevice::new(host, options).unwrap();
        let mut over_link = OpticalProjector::new(serial, optical.clone()).unwrap();
        let local = SimulatedOpu::new(&config, i, o, seed).unwrap();
        let mut in_process = OpticalProjector::new(local, optical.clone()).unwrap();

        let batch = 16;
        let e: Vec<f32> = (0..batch * 10)
            .map(|k| ((k * 37 % 101) as f32 - 50.0) / 50.0)
            .collect();
        let (mut got, mut want) = (vec![0.0; batch * 120], vec![0.0; batch * 120]);
        let before = over_link.device().link_stats();
        over_link.project(&e, batch, &mut got).unwrap();
        in_process.project(&e, batch, &mut want).unwrap();
        assert_eq!(got, want);
        let frames = (batch * optical.frames_per_vector()) as u64;
        let received = over_link
            .device()
            .link_stats()
            .since(&before)
            .payload_bytes_received;
        let window = received / frames;
        assert_eq!(received % frames, 0);
        assert!(
            window > 0 && window < o as u64,
            "{window} bytes a frame of {o}"
        );
        drop(over_link);
        served.stop();
    }
}
