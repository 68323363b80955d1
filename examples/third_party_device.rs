//! Plugging in hardware that does not speak the speckle protocol: implement `OpticalDevice` over
//! the vendor's API, then everything in speckle (linear projector, DFA trainer) runs on it.
//!
//! `acme` stands for a vendor SDK that returns 12-bit camera frames as `u16`.
//! Run: `cargo run --example third_party_device`
use speckle_hal::{
    DeviceCounters, DeviceInfo, Error, ErrorKind, OpticalDevice, PackedFrames, RandomProjector,
};
use speckle_projection::{OpticalConfig, OpticalProjector};

/// A made-up vendor SDK (deterministic fake optics so the example runs anywhere).
mod acme {
    pub struct Opu {
        pub mirrors: usize,
        pub pixels: usize,
    }
    pub fn connect(serial: &str) -> Result<Opu, String> {
        match serial {
            "ACME-0001" => Ok(Opu {
                mirrors: 256,
                pixels: 96,
            }),
            other => Err(format!("no ACME device with serial {other}")),
        }
    }
    impl Opu {
        /// Shows a mirror pattern, returns 12-bit counts of |Σ_i t_ji x_i|² (t fixed, complex).
        pub fn expose(&mut self, pattern: &[bool]) -> Vec<u16> {
            (0..self.pixels)
                .map(|j| {
                    let (mut re, mut im) = (0.0f64, 0.0f64);
                    for i in (0..self.mirrors).filter(|&i| pattern[i]) {
                        re += ((i * 31 + j * 17) % 13) as f64 - 6.0;
                        im += ((i * 7 + j * 29) % 11) as f64 - 5.0;
                    }
                    ((re * re + im * im) / 8.0).round().min(4095.0) as u16
                })
                .collect()
        }
    }
}

/// The adapter: ~30 lines between the vendor API and the `OpticalDevice` trait.
pub struct AcmeDevice {
    opu: acme::Opu,
    counters: DeviceCounters,
}

impl AcmeDevice {
    pub fn open(serial: &str) -> Result<Self, Error> {
        let opu = acme::connect(serial).map_err(|e| Error::new(ErrorKind::Link, e))?;
        Ok(Self {
            opu,
            counters: DeviceCounters::default(),
        })
    }
}

impl OpticalDevice for AcmeDevice {
    fn info(&self) -> DeviceInfo {
        DeviceInfo {
            kind: "acme".into(),
            description: "ACME OPU via vendor SDK".into(),
            input_dim: self.opu.mirrors,
            output_dim: self.opu.pixels,
            bit_depth: Some(12),
            frame_time_us: 1000.0,
            exposure_us: 800.0,
            max_batch: 1024,
        }
    }
    fn transform(&mut self, input: &PackedFrames<'_>, output: &mut [f32]) -> Result<(), Error> {
        speckle_hal::check_device_buffers(&self.info(), input, output)?; // never panic on bad input
        let mut mirrors = vec![false; self.opu.mirrors];
        for (f, out) in output.chunks_exact_mut(self.opu.pixels).enumerate() {
            for (i, m) in mirrors.iter_mut().enumerate() {
                *m = input.bit(f, i);
            }
            for (o, count) in out.iter_mut().zip(self.opu.expose(&mirrors)) {
                *o = f32::from(count);
            }
        }
        self.counters.frames += input.frames() as u64;
        self.counters.device_time_s += input.frames() as f64 * 1e-3;
        Ok(())
    }
    fn counters(&self) -> DeviceCounters {
        self.counters
    }
}

/// Opens the device, makes it a linear projector 16 → 24 and projects two signed vectors.
pub fn demo() -> Result<Vec<f32>, Error> {
    let device = AcmeDevice::open("ACME-0001")?;
    // Checks the device is big enough (data + reference features), then calibrates.
    let mut projector = OpticalProjector::new(device, OpticalConfig::new(16, 24))?;
    let x: Vec<f32> = (0..2 * 16)
        .map(|k| ((k * 7 % 5) as f32 - 2.0) / 2.0)
        .collect();
    let mut y = vec![0.0f32; 2 * 24];
    projector.project(&x, 2, &mut y)?;
    println!(
        "{} device frames per vector",
        projector.info().frames_per_vector
    );
    Ok(y)
}

fn main() -> Result<(), Error> {
    demo().map(|_| ())
}
