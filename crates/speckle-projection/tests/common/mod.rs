//! A small exact intensity-only device for the tests: a complex Gaussian transmission matrix,
//! `|R·x|²` per pixel, optionally through a noisy quantizing camera.
#![allow(dead_code)]

use num_complex::Complex64;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use speckle_hal::{
    check_device_buffers, DeviceCounters, DeviceInfo, Error, OpticalDevice, PackedFrames,
};

/// A noisy camera: counts = round(gain · I + dark + N(0, read²)), clipped to `0 ..= 2^bits − 1`.
#[derive(Debug, Clone, Copy)]
pub struct Camera {
    pub gain: f64,
    pub dark: f64,
    pub read_noise: f64,
    pub bits: u8,
}

pub struct ExactDevice {
    pub input_dim: usize,
    pub output_dim: usize,
    pub max_batch: usize,
    /// Row-major output × input, E|R_ji|² = 1.
    pub matrix: Vec<Complex64>,
    pub camera: Option<Camera>,
    pub noise_rng: ChaCha8Rng,
    pub frames: u64,
    /// `transform` calls so far.
    pub calls: u64,
}

impl ExactDevice {
    pub fn new(input_dim: usize, output_dim: usize, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let s = std::f64::consts::FRAC_1_SQRT_2;
        let matrix = (0..input_dim * output_dim)
            .map(|_| {
                let re: f64 = rng.sample(StandardNormal);
                let im: f64 = rng.sample(StandardNormal);
                Complex64::new(re * s, im * s)
            })
            .collect();
        Self {
            input_dim,
            output_dim,
            max_batch: 1024,
            matrix,
            camera: None,
            noise_rng: ChaCha8Rng::seed_from_u64(seed ^ 0x9e37_79b9),
            frames: 0,
            calls: 0,
        }
    }

    pub fn with_camera(mut self, camera: Camera) -> Self {
        self.camera = Some(camera);
        self
    }

    pub fn with_max_batch(mut self, max_batch: usize) -> Self {
        self.max_batch = max_batch;
        self
    }

    /// The exact fields R·x of a binary vector `x` (one value 0/1 per device feature).
    pub fn fields(&self, x: &[u8]) -> Vec<Complex64> {
        (0..self.output_dim)
            .map(|j| {
                x.iter()
                    .enumerate()
                    .filter(|(_, &b)| b == 1)
                    .map(|(i, _)| self.matrix[j * self.input_dim + i])
                    .sum()
            })
            .collect()
    }
}

impl OpticalDevice for ExactDevice {
    fn info(&self) -> DeviceInfo {
        DeviceInfo {
            kind: "exact-test".into(),
            description: "exact complex Gaussian test device".into(),
            input_dim: self.input_dim,
            output_dim: self.output_dim,
            bit_depth: self.camera.map(|c| c.bits),
            frame_time_us: 500.0,
            exposure_us: 400.0,
            max_batch: self.max_batch,
        }
    }

    fn transform(&mut self, input: &PackedFrames<'_>, output: &mut [f32]) -> Result<(), Error> {
        check_device_buffers(&self.info(), input, output)?;
        let mut x = vec![0u8; self.input_dim];
        for f in 0..input.frames() {
            for (i, v) in x.iter_mut().enumerate() {
                *v = input.bit(f, i) as u8;
            }
            let fields = self.fields(&x);
            let out = &mut output[f * self.output_dim..(f + 1) * self.output_dim];
            for (o, e) in out.iter_mut().zip(fields) {
                let intensity = e.norm_sqr();
                *o = match self.camera {
                    None => intensity as f32,
                    Some(c) => {
                        let noise: f64 = self.noise_rng.sample(StandardNormal);
                        let max = ((1u32 << c.bits) - 1) as f64;
                        (c.gain * intensity + c.dark + c.read_noise * noise)
                            .round()
                            .clamp(0.0, max) as f32
                    }
                };
            }
        }
        self.frames += input.frames() as u64;
        self.calls += 1;
        Ok(())
    }

    fn counters(&self) -> DeviceCounters {
        DeviceCounters {
            frames: self.frames,
            device_time_s: self.frames as f64 * 500e-6,
        }
    }
}

/// ‖a − b‖ / ‖b‖.
pub fn rel_err(a: &[f32], b: &[f64]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| (*x as f64 - y).powi(2)).sum();
    let den: f64 = b.iter().map(|y| y * y).sum();
    (num / den).sqrt()
}

/// Pearson correlation.
pub fn correlation(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let ma = a.iter().sum::<f64>() / n;
    let mb = b.iter().sum::<f64>() / n;
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    cov / (va * vb).sqrt()
}

/// The values of two projections (`batch × pixels.len()` each) on the device pixels both use,
/// paired up.
pub fn common_pixels(
    (a, pa): (&[f32], &[usize]),
    (b, pb): (&[f32], &[usize]),
    batch: usize,
) -> (Vec<f64>, Vec<f64>) {
    let (ma, mb) = (pa.len(), pb.len());
    let (mut va, mut vb) = (Vec::new(), Vec::new());
    for (jb, p) in pb.iter().enumerate() {
        if let Some(ja) = pa.iter().position(|q| q == p) {
            for r in 0..batch {
                va.push(f64::from(a[r * ma + ja]));
                vb.push(f64::from(b[r * mb + jb]));
            }
        }
    }
    (va, vb)
}
