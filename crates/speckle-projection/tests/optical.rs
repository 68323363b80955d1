//! The interferometric projector against an exact test device.

mod common;

use common::{common_pixels, correlation, rel_err, Camera, ExactDevice};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use speckle_hal::{ErrorKind, OpticalDevice, RandomProjector};
use speckle_projection::{DitherKey, Encoding, OpticalConfig, OpticalProjector};
use speckle_testkit::{ks_normal, random_bits, signed_vector};

const N: usize = 12;
const M: usize = 60;

fn exact(config: &OpticalConfig, seed: u64) -> ExactDevice {
    ExactDevice::new(
        config.device_input_dim(),
        config.recommended_device_output_dim(),
        seed,
    )
}

/// The ideal linear output of binary data `x`: `scale · Re(conj(r_j) (R·x)_j) / |r_j|` on the
/// selected pixels, from the device's exact fields.
fn direct(proj: &OpticalProjector<ExactDevice>, x: &[u8]) -> Vec<f64> {
    let dev = proj.device();
    let config = proj.config();
    let mut data = vec![0u8; dev.input_dim];
    data[..x.len()].copy_from_slice(x);
    let mut reference = vec![0u8; dev.input_dim];
    for off in config.reference_pattern() {
        reference[config.input_dim + off] = 1;
    }
    let s = dev.fields(&data);
    let r = dev.fields(&reference);
    let cal = proj.calibration();
    cal.pixels
        .iter()
        .map(|&p| cal.output_scale * (r[p].conj() * s[p]).re / r[p].norm())
        .collect()
}

/// `v · P` for a batch of rows `v` (`batch × N`) and the effective matrix `p` (`N × M`).
fn exact_projection(p: &[f32], v: &[f32]) -> Vec<f64> {
    let batch = v.len() / N;
    (0..batch * M)
        .map(|k| {
            let (b, j) = (k / M, k % M);
            (0..N)
                .map(|i| f64::from(v[b * N + i]) * f64::from(p[i * M + j]))
                .sum()
        })
        .collect()
}

/// The effective matrix, `input_dim × output_dim` row-major, from the unit basis vectors.
fn effective_matrix(proj: &mut OpticalProjector<ExactDevice>) -> Vec<f32> {
    proj.measure_matrix().unwrap()
}

#[test]
fn ideal_device_matches_direct_formula() {
    let config = OpticalConfig::new(N, M);
    let mut proj = OpticalProjector::new(exact(&config, 1), config).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let batch = 8;
    let bits = random_bits(&mut rng, batch * N, 0.4);
    let mut y = vec![0.0f32; batch * M];
    proj.project_binary(&bits, batch, &mut y).unwrap();
    for b in 0..batch {
        let want = direct(&proj, &bits[b * N..(b + 1) * N]);
        let err = rel_err(&y[b * M..(b + 1) * M], &want);
        assert!(err <= 1e-4, "vector {b}: relative error {err}");
    }
}

#[test]
fn linear_in_binary_inputs_with_disjoint_supports() {
    let config = OpticalConfig::new(N, M);
    let mut proj = OpticalProjector::new(exact(&config, 2), config).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    for _ in 0..5 {
        let mut x1 = vec![0u8; N];
        let mut x2 = vec![0u8; N];
        for i in 0..N {
            match rng.random_range(0..3) {
                0 => x1[i] = 1,
                1 => x2[i] = 1,
                _ => {}
            }
        }
        let sum: Vec<u8> = x1.iter().zip(&x2).map(|(a, b)| a + b).collect();
        let batch = [x1, x2, sum].concat();
        let mut y = vec![0.0f32; 3 * M];
        proj.project_binary(&batch, 3, &mut y).unwrap();
        let added: Vec<f64> = (0..M).map(|j| (y[j] + y[M + j]) as f64).collect();
        let err = rel_err(&y[2 * M..], &added);
        assert!(
            err <= 1e-4,
            "L(x1 + x2) vs L(x1) + L(x2): relative error {err}"
        );
    }
}

#[test]
fn linear_outputs_are_standard_gaussian() {
    // 48 × 400 entries of the effective matrix; KS distance to N(0, 1) ≤ 0.02 (the 1 % critical
    // value for n = 19,200 iid samples is 1.63 / sqrt(n) = 0.012; the margin covers the
    // calibration's estimate of E|R|², relative error ≈ 1/sqrt(532 pixels) ≈ 4 % on the variance).
    let (n, m) = (48, 400);
    let config = OpticalConfig::new(n, m);
    let mut proj = OpticalProjector::new(exact(&config, 3), config).unwrap();
    let p = effective_matrix(&mut proj);
    let samples: Vec<f64> = p.iter().map(|&v| v as f64).collect();
    let d = ks_normal(&samples, 1.0);
    eprintln!("KS distance of the effective matrix to N(0, 1): {d:.4}");
    assert!(d <= 0.02, "KS distance {d}");
    let var = samples.iter().map(|v| v * v).sum::<f64>() / samples.len() as f64;
    assert!((var - 1.0).abs() < 0.1, "entry variance {var}");
    assert_eq!(proj.info().entry_variance, 1.0);
    // A single linear output for a fixed x is N(0, ‖x‖²) across pixels, too.
    let ones = vec![1u8; n];
    let mut y = vec![0.0f32; m];
    proj.project_binary(&ones, 1, &mut y).unwrap();
    let y: Vec<f64> = y.iter().map(|&v| v as f64).collect();
    let d = ks_normal(&y, n as f64);
    eprintln!("KS distance of L(1) across pixels to N(0, n): {d:.4}");
    assert!(d <= 0.1, "KS distance of L(1) across pixels {d}");
}

#[test]
fn bitplane_approaches_exact_projection_and_ternary_is_its_code() {
    let config = OpticalConfig::new(N, M);
    let mut proj = OpticalProjector::new(exact(&config, 4), config.clone()).unwrap();
    let p = effective_matrix(&mut proj);
    let device = proj.into_inner();
    let batch = 4;
    let x = signed_vector(batch * N, 11);
    let exact_y = |v: &[f32]| exact_projection(&p, v);
    let want = exact_y(&x);
    let mut device = Some(device);
    let mut previous = f64::INFINITY;
    for bits in 1..=8u32 {
        let encoding = Encoding::BitPlane { bits };
        let config = config.clone().with_encoding(encoding);
        let mut proj = OpticalProjector::new(device.take().unwrap(), config).unwrap();
        assert_eq!(proj.info().frames_per_vector, 4.0 * bits as f64);
        let before = proj.counters().frames;
        let mut y = vec![0.0f32; batch * M];
        proj.project(&x, batch, &mut y).unwrap();
        assert_eq!(
            proj.counters().frames - before,
            (batch as u64) * 4 * bits as u64
        );
        // Equals the projection of the quantized vector...
        let q: Vec<f32> = x.chunks(N).flat_map(|r| encoding.quantize(r)).collect();
        let err_q = rel_err(&y, &exact_y(&q));
        assert!(err_q <= 1e-4, "p={bits}: vs quantized input {err_q}");
        // ... and approaches the exact one: error ≤ 1.2 · 2^-p (the per-entry quantization error
        // is at most max/(2(2^p − 1)), relative to entries of typical size max/2).
        let err = rel_err(&y, &want);
        eprintln!("bit-plane p={bits}: relative error {err:.5}");
        let bound = 1.2 * 0.5f64.powi(bits as i32);
        assert!(err <= bound, "p={bits}: relative error {err} > {bound}");
        assert!(
            err < previous || err < 1e-3,
            "p={bits}: {err} not below {previous}"
        );
        previous = err;
        device = Some(proj.into_inner());
    }
    // Ternary: four frames per vector, exactly the projection of its code, and within a stated
    // distance of the exact projection for uniform inputs (threshold 0.25: error ≤ 0.5).
    let encoding = Encoding::default();
    let mut proj =
        OpticalProjector::new(device.take().unwrap(), config.with_encoding(encoding)).unwrap();
    assert_eq!(proj.info().frames_per_vector, 4.0);
    let mut y = vec![0.0f32; batch * M];
    proj.project(&x, batch, &mut y).unwrap();
    let q: Vec<f32> = x.chunks(N).flat_map(|r| encoding.quantize(r)).collect();
    assert!(rel_err(&y, &exact_y(&q)) <= 1e-4);
    let err = rel_err(&y, &want);
    eprintln!("ternary: relative error {err:.4}");
    assert!(err <= 0.5, "ternary relative error {err}");
}

#[test]
fn levels_and_dithered_encodings_project_exactly_their_code() {
    // Through the exact device, each encoding's projection is the exact projection of its code
    // (`quantize_with` under the vector's key: the dither seed and the index of its first
    // device frame), the offset `c·L(1)` included through the calibrated all-ones pattern.
    // Frames: 2F calibration frames (2F more per part of the all-ones pattern with an offset),
    // then 2 per binary frame per vector.
    let mut config = OpticalConfig::new(N, M);
    config.dither_seed = 5;
    let mut proj = OpticalProjector::new(exact(&config, 4), config.clone()).unwrap();
    let p = effective_matrix(&mut proj);
    let mut device = Some(proj.into_inner());
    let batch = 6;
    let mut x = signed_vector(batch * N, 21);
    x[2 * N..3 * N].fill(0.0); // a zero row projects to exactly zero
    let calibration = config.calibration_frames as u64;
    for (enc, frames) in [
        ("levels:2", 2),
        ("levels:3", 4),
        ("levels:5", 8),
        ("levels:3:dither", 4),
        ("ternary:dither", 4),
    ] {
        let encoding: Encoding = enc.parse().unwrap();
        let before = device.as_ref().unwrap().counters().frames;
        let mut proj = OpticalProjector::new(
            device.take().unwrap(),
            config.clone().with_encoding(encoding),
        )
        .unwrap();
        let shown = proj.counters().frames - before;
        // 12 data features, 8 reference features on: the all-ones pattern in 2 parts of 6.
        let patterns = if encoding.uses_offset() { 6 } else { 2 };
        assert_eq!(shown, patterns * calibration, "{enc}: calibration frames");
        assert_eq!(shown as usize, proj.config().calibration_device_frames());
        assert_eq!(
            proj.calibration().ones_projection.len(),
            if encoding.uses_offset() { M } else { 0 }
        );
        assert_eq!(proj.info().frames_per_vector, frames as f64, "{enc}");
        let first = proj.next_frame_index();
        let mut y = vec![0.0f32; batch * M];
        proj.project(&x, batch, &mut y).unwrap();
        assert_eq!(
            proj.counters().frames - before - shown,
            (batch * frames) as u64
        );
        assert_eq!(proj.next_frame_index(), first + (batch * frames) as u64);
        let q: Vec<f32> = x
            .chunks(N)
            .enumerate()
            .flat_map(|(r, row)| {
                let key = DitherKey {
                    seed: 5,
                    stream: first + (r * frames) as u64,
                };
                encoding.quantize_with(row, key)
            })
            .collect();
        let err = rel_err(&y, &exact_projection(&p, &q));
        assert!(err <= 1e-4, "{enc}: vs its code {err}");
        assert!(y[2 * M..3 * M].iter().all(|&v| v == 0.0), "{enc}: zero row");
        device = Some(proj.into_inner());
    }
}

#[test]
fn noisy_quantized_device_correlates_with_ideal() {
    // 8-bit camera, gain 4 counts per unit intensity (mean |r|² ≈ 8, I(a) ≈ 32 counts), dark
    // offset 10, read noise 2 counts: correlation with the ideal projection ≥ 0.9.
    let config = OpticalConfig::new(N, M).with_encoding(Encoding::BitPlane { bits: 4 });
    let camera = Camera {
        gain: 4.0,
        dark: 10.0,
        read_noise: 2.0,
        bits: 8,
    };
    let mut ideal = OpticalProjector::new(exact(&config, 6), config.clone()).unwrap();
    let mut noisy = OpticalProjector::new(exact(&config, 6).with_camera(camera), config).unwrap();
    let batch = 16;
    let x = signed_vector(batch * N, 12);
    let mut a = vec![0.0f32; batch * M];
    let mut b = vec![0.0f32; batch * M];
    ideal.project(&x, batch, &mut a).unwrap();
    noisy.project(&x, batch, &mut b).unwrap();
    // Noise near the dark floor may select slightly different pixels: compare common ones.
    let (a, b) = common_pixels(
        (&a, &ideal.calibration().pixels),
        (&b, &noisy.calibration().pixels),
        batch,
    );
    assert!(a.len() >= batch * M * 9 / 10, "too few common pixels");
    let r = correlation(&a, &b);
    eprintln!("noisy 8-bit test device: correlation {r:.4}");
    assert!(r >= 0.9, "correlation {r}");
    // The dark offset is measured, not assumed.
    assert!((noisy.calibration().mean_dark - 10.0).abs() < 0.5);
}

#[test]
fn zero_rows_project_to_exact_zero_even_with_noise() {
    let camera = Camera {
        gain: 4.0,
        dark: 10.0,
        read_noise: 2.0,
        bits: 8,
    };
    for enc in [
        "ternary",
        "bitplane:3",
        "levels:3",
        "levels:4:dither",
        "ternary:dither",
    ] {
        let config = OpticalConfig::new(N, M).with_encoding(enc.parse().unwrap());
        let mut proj =
            OpticalProjector::new(exact(&config, 7).with_camera(camera), config.clone()).unwrap();
        let mut x = vec![0.0f32; 2 * N];
        x[N + 3] = -0.5;
        let mut y = vec![f32::NAN; 2 * M];
        let before = proj.counters().frames;
        proj.project(&x, 2, &mut y).unwrap();
        assert!(y[..M].iter().all(|&v| v == 0.0), "{enc}: zero row not zero");
        assert!(y[M..].iter().all(|v| v.is_finite()) && y[M..].iter().any(|&v| v != 0.0));
        // Zero rows still cost their frames: frames_per_vector is exact.
        assert_eq!(
            (proj.counters().frames - before) as f64,
            2.0 * proj.info().frames_per_vector
        );
    }
}

#[test]
fn chunking_by_max_batch_does_not_change_the_result() {
    let config = OpticalConfig::new(N, M).with_encoding(Encoding::BitPlane { bits: 2 });
    let batch = 20;
    let x = signed_vector(batch * N, 13);
    let mut results = Vec::new();
    // 8 frames per vector: 1, 3, 7 and 50 split vectors across calls.
    for max_batch in [1, 3, 7, 50, 1024] {
        let dev = exact(&config, 8).with_max_batch(max_batch);
        let mut proj = OpticalProjector::new(dev, config.clone()).unwrap();
        let mut y = vec![0.0f32; batch * M];
        let calls = proj.device().calls;
        proj.project(&x, batch, &mut y).unwrap();
        // As few device calls as max_batch allows.
        let made = proj.device().calls - calls;
        assert_eq!(
            made,
            (batch * 8).div_ceil(max_batch) as u64,
            "max_batch {max_batch}"
        );
        results.push(y);
    }
    // Identical up to f64 rounding (a pair split across calls is accumulated frame by frame).
    let reference: Vec<f64> = results[0].iter().map(|&v| f64::from(v)).collect();
    for r in &results[1..] {
        assert!(rel_err(r, &reference) <= 1e-6);
    }
}

#[test]
fn recalibration_keeps_the_matrix() {
    let config = OpticalConfig::new(N, M);
    let mut proj = OpticalProjector::new(exact(&config, 10), config).unwrap();
    let p1 = effective_matrix(&mut proj);
    let pixels = proj.calibration().pixels.clone();
    proj.calibrate().unwrap();
    assert_eq!(proj.calibration().pixels, pixels);
    assert_eq!(effective_matrix(&mut proj), p1);
}

#[test]
fn boxed_dyn_device_works() {
    let mut config = OpticalConfig::new(N, M);
    config.device_label = "seed=1".into();
    let dev: Box<dyn OpticalDevice + Send> = Box::new(exact(&config, 1));
    let mut proj = OpticalProjector::new(dev, config).unwrap();
    let mut y = vec![0.0f32; M];
    proj.project(&[0.5; N], 1, &mut y).unwrap();
    let identity = proj.info().identity;
    for part in [
        "exact-test",
        "seed=1",
        "in=12",
        "out=60",
        "encoding=ternary:0.25",
    ] {
        assert!(identity.contains(part), "{identity}");
    }
    // The projector is Send with a boxed device, so a trainer can hold it as a trait object.
    let boxed: Box<dyn RandomProjector + Send> = Box::new(proj);
    assert_eq!(boxed.info().frames_per_vector, 4.0);
    // into_inner gives the device back, with its counters.
    let config = OpticalConfig::new(N, M);
    let dev: Box<dyn OpticalDevice + Send> = Box::new(exact(&config, 1));
    let dev = OpticalProjector::new(dev, config).unwrap().into_inner();
    assert!(dev.counters().frames > 0);
}

#[test]
fn reference_pattern_is_seeded_and_half_on() {
    let config = OpticalConfig::new(10, 20);
    let pattern = config.reference_pattern();
    assert_eq!(config.reference_features, 16);
    assert_eq!(pattern.len(), 8);
    assert_eq!(pattern, config.reference_pattern());
    // Golden value: pins rand's index sampling on ChaCha8 seed 0.
    assert_eq!(pattern, GOLDEN_PATTERN);
    let mut other = config.clone();
    other.reference_seed = 1;
    assert_ne!(other.reference_pattern(), pattern);
}

const GOLDEN_PATTERN: [usize; 8] = [0, 5, 6, 7, 8, 9, 11, 14];

#[test]
fn bad_inputs_are_typed_errors() {
    let config = OpticalConfig::new(N, M);
    let mut proj = OpticalProjector::new(exact(&config, 1), config.clone()).unwrap();
    let mut y = vec![0.0f32; 2 * M];
    let e = proj.project(&[0.0; 2 * N - 1], 2, &mut y).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    let e = proj.project(&[0.0; 2 * N], 2, &mut y[1..]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    let mut x = vec![0.0f32; 2 * N];
    x[N + 2] = f32::NAN;
    let e = proj.project(&x, 2, &mut y).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    x[N + 2] = f32::INFINITY;
    assert!(proj.project(&x, 2, &mut y).is_err());
    let e = proj.project_binary(&[2; N], 1, &mut y[..M]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.to_string().contains("not binary"));
    proj.project(&[], 0, &mut []).unwrap();

    // Device too small, in features or in pixels.
    let small = ExactDevice::new(N + 3, 200, 1);
    let e = OpticalProjector::new(small, config.clone()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::DimensionMismatch);
    assert!(e.to_string().contains("input features"), "{e}");
    let small = ExactDevice::new(config.device_input_dim(), M - 1, 1);
    let e = OpticalProjector::new(small, config.clone()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::DimensionMismatch);
    // Enough pixels in count but not enough usable ones (about 5 % are dark).
    let tight = ExactDevice::new(config.device_input_dim(), M, 1);
    let mut strict = config.clone();
    strict.dark_fraction = 0.5;
    let e = OpticalProjector::new(tight, strict).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Calibration);
    assert!(!e.to_string().contains('\n'));

    // Bad configuration.
    let mut bad = config.clone();
    bad.calibration_frames = 0;
    assert_eq!(
        OpticalProjector::new(exact(&config, 1), bad)
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput
    );
    let mut bad = config.clone();
    bad.encoding = Encoding::BitPlane { bits: 0 };
    assert!(OpticalProjector::new(exact(&config, 1), bad).is_err());
    let mut bad = config.clone();
    bad.dark_fraction = f64::NAN;
    assert!(OpticalProjector::new(exact(&config, 1), bad).is_err());

    // A dark device cannot be calibrated.
    let mut dark = exact(&config, 1);
    dark.matrix.iter_mut().for_each(|v| *v = 0.0.into());
    let e = OpticalProjector::new(dark, config.clone()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Calibration);
}

#[test]
fn bright_pixels_are_skipped_on_a_quantized_camera() {
    // Gain 20: mean I(a) ≈ 160 counts, so many reference readings exceed 0.5 · 255.
    let mut config = OpticalConfig::new(N, 20);
    config.saturation_fraction = 0.5;
    let camera = Camera {
        gain: 20.0,
        dark: 0.0,
        read_noise: 0.5,
        bits: 8,
    };
    let dev = ExactDevice::new(config.device_input_dim(), 200, 14).with_camera(camera);
    let proj = OpticalProjector::new(dev, config).unwrap();
    let cal = proj.calibration();
    assert!(cal.bright_pixels > 0, "{cal:?}");
    let ceiling = 0.5 * 255.0;
    for (&c, &p) in cal.reference_intensity.iter().zip(&cal.pixels) {
        assert!(c <= ceiling + 1.0, "pixel {p}: reference {c}");
    }
}

/// An exact device whose camera returns one non-finite value: frame `frame` of its life,
/// pixel `pixel`.
struct Faulty {
    device: ExactDevice,
    frame: u64,
    pixel: usize,
    value: f32,
}

impl OpticalDevice for Faulty {
    fn info(&self) -> speckle_hal::DeviceInfo {
        self.device.info()
    }
    fn transform(
        &mut self,
        input: &speckle_hal::PackedFrames<'_>,
        output: &mut [f32],
    ) -> Result<(), speckle_hal::Error> {
        let first = self.device.counters().frames;
        self.device.transform(input, output)?;
        let m = self.device.info().output_dim;
        if let Some(t) = self.frame.checked_sub(first) {
            if t < input.frames() as u64 {
                output[t as usize * m + self.pixel] = self.value;
            }
        }
        Ok(())
    }
    fn counters(&self) -> speckle_hal::DeviceCounters {
        self.device.counters()
    }
}

/// A non-finite camera value is a device error naming the frame and the pixel, whether it
/// comes during calibration or a projection, in a selected pixel or not, in a frame of a
/// vector's code or of a frame the code leaves dark.
#[test]
fn a_non_finite_camera_value_is_a_device_error() {
    let config = OpticalConfig::new(N, M).with_encoding("levels:3:dither".parse().unwrap());
    let calibration = config.calibration_device_frames() as u64;
    let pixels = config.recommended_device_output_dim();
    let x = signed_vector(4 * N, 3);
    for (frame, pixel, value) in [
        (3, 7, f32::NAN),
        (calibration, 0, f32::INFINITY),
        (calibration + 5, pixels - 1, f32::NAN),
        (calibration + 15, 30, f32::NEG_INFINITY),
    ] {
        let device = Faulty {
            device: exact(&config, 2),
            frame,
            pixel,
            value,
        };
        // Frames are counted from the first of the device call's batch (calibration shows
        // its first frames in one call; the projection's frames come in one call).
        let shown = frame.checked_sub(calibration).unwrap_or(frame);
        let want = format!("at frame {shown}, pixel {pixel}");
        let e = match OpticalProjector::new(device, config.clone()) {
            Err(e) => e,
            Ok(mut proj) => {
                let mut y = vec![0.0f32; 4 * M];
                proj.project(&x, 4, &mut y).unwrap_err()
            }
        };
        assert_eq!(e.kind(), ErrorKind::Device, "{e}");
        assert!(e.to_string().contains("non-finite camera value"), "{e}");
        assert!(e.to_string().contains(&want), "{e}");
    }
}
