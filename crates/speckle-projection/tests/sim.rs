//! The interferometric projector on the simulated OPU (speckle-sim).

mod common;

use common::{common_pixels, correlation, rel_err};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use speckle_hal::{
    pack_bits, DeviceCounters, DeviceInfo, Error, ErrorKind, OpticalDevice, PackedFrames,
    RandomProjector,
};
use speckle_projection::{Encoding, OpticalConfig, OpticalProjector, DEFAULT_CALIBRATION_FRAMES};
use speckle_sim::{DeviceConfig, SimulatedOpu};
use speckle_testkit::{ks_normal, random_bits, signed_vector};

fn sim(preset: &str, config: &OpticalConfig, seed: u64) -> SimulatedOpu {
    let device = DeviceConfig::preset(preset).unwrap();
    SimulatedOpu::new(
        &device,
        config.device_input_dim(),
        config.recommended_device_output_dim(),
        seed,
    )
    .unwrap()
}

/// `output_scale · Re(conj(r_j) (R·x)_j) / |r_j|` on the selected pixels, from the simulator's
/// exact fields.
fn direct(proj: &mut OpticalProjector<SimulatedOpu>, x: &[u8]) -> Vec<f64> {
    let config = proj.config().clone();
    let cal = proj.calibration().clone();
    let width = config.device_input_dim();
    let mut data = vec![0u8; 2 * width];
    data[..x.len()].copy_from_slice(x);
    for off in config.reference_pattern() {
        data[width + config.input_dim + off] = 1;
    }
    let mut packed = Vec::new();
    pack_bits(&data, 2, width, &mut packed).unwrap();
    let frames = PackedFrames::new(&packed, 2, width).unwrap();
    let pixels = config.recommended_device_output_dim();
    let mut re = vec![0.0f32; 2 * pixels];
    let mut im = vec![0.0f32; 2 * pixels];
    proj.device_mut().fields(&frames, &mut re, &mut im).unwrap();
    cal.pixels
        .iter()
        .map(|&p| {
            let (sr, si) = (re[p] as f64, im[p] as f64);
            let (rr, ri) = (re[pixels + p] as f64, im[pixels + p] as f64);
            cal.output_scale * (rr * sr + ri * si) / (rr * rr + ri * ri).sqrt()
        })
        .collect()
}

#[test]
fn ideal_sim_matches_direct_formula_and_is_linear() {
    let (n, m) = (10, 200);
    let config = OpticalConfig::new(n, m);
    let mut proj = OpticalProjector::new(sim("ideal", &config, 21), config).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let batch = 6;
    let bits = random_bits(&mut rng, batch * n, 0.5);
    let mut y = vec![0.0f32; batch * m];
    proj.project_binary(&bits, batch, &mut y).unwrap();
    for b in 0..batch {
        let want = direct(&mut proj, &bits[b * n..(b + 1) * n]);
        let err = rel_err(&y[b * m..(b + 1) * m], &want);
        assert!(err <= 1e-4, "vector {b}: relative error {err}");
    }
    // Linearity on disjoint supports.
    let x1: Vec<u8> = (0..n).map(|i| (i % 3 == 0) as u8).collect();
    let x2: Vec<u8> = (0..n).map(|i| (i % 3 == 1) as u8).collect();
    let sum: Vec<u8> = x1.iter().zip(&x2).map(|(a, b)| a + b).collect();
    let mut z = vec![0.0f32; 3 * m];
    proj.project_binary(&[x1, x2, sum].concat(), 3, &mut z)
        .unwrap();
    let added: Vec<f64> = (0..m).map(|j| (z[j] + z[m + j]) as f64).collect();
    assert!(rel_err(&z[2 * m..], &added) <= 1e-4);
}

#[test]
fn ideal_sim_linear_outputs_are_standard_gaussian() {
    // 32 × 300 = 9,600 entries; KS distance to N(0, 1) ≤ 0.025 (1 % critical value for iid
    // samples: 0.017; margin for the calibration's variance estimate from 407 pixels).
    let (n, m) = (32, 300);
    let config = OpticalConfig::new(n, m);
    let mut proj = OpticalProjector::new(sim("ideal", &config, 22), config).unwrap();
    let mut eye = vec![0u8; n * n];
    for i in 0..n {
        eye[i * n + i] = 1;
    }
    let mut p = vec![0.0f32; n * m];
    proj.project_binary(&eye, n, &mut p).unwrap();
    let samples: Vec<f64> = p.iter().map(|&v| v as f64).collect();
    let d = ks_normal(&samples, 1.0);
    eprintln!("ideal sim: KS distance to N(0, 1): {d:.4}");
    assert!(d <= 0.025, "KS distance {d}");
}

#[test]
fn lighton_sim_correlates_with_ideal() {
    // DFA's shape: errors of 10 classes projected to 400 outputs, on the 8-bit LightOn-like
    // preset (shot noise, read noise, quantization) against the ideal preset with the same seed
    // (same matrix). Stated levels: correlation ≥ 0.95 with bit-plane 6, ≥ 0.9 with ternary
    // (measured against the ideal device's own ternary projection).
    let (n, m) = (10, 400);
    let batch = 32;
    let x = signed_vector(batch * n, 3);
    for (enc, level) in [("bitplane:6", 0.95), ("ternary", 0.9)] {
        let encoding: Encoding = enc.parse().unwrap();
        let config = OpticalConfig::new(n, m).with_encoding(encoding);
        let mut ideal = OpticalProjector::new(sim("ideal", &config, 23), config.clone()).unwrap();
        let mut noisy = OpticalProjector::new(sim("lighton", &config, 23), config).unwrap();
        let mut a = vec![0.0f32; batch * m];
        let mut b = vec![0.0f32; batch * m];
        ideal.project(&x, batch, &mut a).unwrap();
        noisy.project(&x, batch, &mut b).unwrap();
        // Compare on the pixels both selected (the noisy calibration may skip other pixels).
        let (va, vb) = common_pixels(
            (&a, &ideal.calibration().pixels),
            (&b, &noisy.calibration().pixels),
            batch,
        );
        assert!(
            va.len() >= batch * m * 9 / 10,
            "{enc}: too few common pixels"
        );
        let r = correlation(&va, &vb);
        eprintln!("{enc}: correlation {r:.4} over {} values", va.len());
        assert!(r >= level, "{enc}: correlation {r} < {level}");
        assert_eq!(
            noisy.counters().frames,
            2 * 64 + batch as u64 * noisy.info().frames_per_vector as u64
        );
    }
}

/// A stochastic encoding on the noisy device replays exactly from a seek (what a resumed run
/// does), does not depend on how a batch is split into calls, and depends on its seed.
#[test]
fn dithered_projection_replays_after_seek_and_ignores_batch_splits() {
    let (n, m) = (10, 64);
    let x = signed_vector(8 * n, 17);
    let (a, b) = x.split_at(4 * n);
    for enc in ["ternary:dither", "levels:3:dither", "levels:3"] {
        let mut config = OpticalConfig::new(n, m).with_encoding(enc.parse().unwrap());
        config.dither_seed = 9;
        let open = |config: &OpticalConfig| {
            OpticalProjector::new(sim("lighton", config, 31), config.clone()).unwrap()
        };
        let mut first = open(&config);
        let mut ya = vec![0.0f32; 4 * m];
        let mut yb = vec![0.0f32; 4 * m];
        first.project(a, 4, &mut ya).unwrap();
        let resume_at = first.next_frame_index();
        first.project(b, 4, &mut yb).unwrap();
        // A fresh projector (same calibration frames) positioned where the first left off.
        let mut resumed = open(&config);
        resumed.seek_frame(resume_at).unwrap();
        let mut again = vec![0.0f32; 4 * m];
        resumed.project(b, 4, &mut again).unwrap();
        assert_eq!(again, yb, "{enc}: replay after seek");
        // One call for both halves: the same values.
        let mut whole = vec![0.0f32; 8 * m];
        open(&config).project(&x, 8, &mut whole).unwrap();
        assert_eq!(
            whole,
            [ya.clone(), yb.clone()].concat(),
            "{enc}: split batch"
        );
        // Another dither seed draws other codes (a deterministic encoding ignores it).
        config.dither_seed = 10;
        let mut other = vec![0.0f32; 4 * m];
        open(&config).project(a, 4, &mut other).unwrap();
        assert_eq!(other == ya, enc == "levels:3", "{enc}: dither seed");
    }
}

/// The projector encodes vectors and decodes output rows in parallel (and the simulator works
/// in parallel): the outputs are the same bits on 1, 2 and 3 threads, for a batch large enough
/// to be split into several tasks and camera calls.
#[test]
fn optical_projection_is_bit_identical_across_thread_counts() {
    let (n, m) = (10, 96);
    let batch = 150;
    let x = signed_vector(batch * n, 23);
    for enc in ["levels:3:dither", "ternary", "bitplane:2"] {
        let mut config = OpticalConfig::new(n, m).with_encoding(enc.parse().unwrap());
        config.dither_seed = 5;
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let mut proj =
                    OpticalProjector::new(sim("lighton", &config, 41), config.clone()).unwrap();
                let mut y = vec![0.0f32; batch * m];
                proj.project(&x, batch, &mut y).unwrap();
                y
            })
        };
        let one = run(1);
        assert!(one.iter().any(|&v| v != 0.0), "{enc}: all zero");
        for threads in [2, 3] {
            assert!(
                run(threads) == one,
                "{enc}: {threads} threads differ from 1"
            );
        }
    }
}

/// Identities and device info are stored in checkpoints and `summary.json`: their text must
/// not change.
#[test]
fn identities_and_device_info_are_stable() {
    use speckle_hal::OpticalDevice;
    use speckle_projection::GaussianProjector;
    let digital = GaussianProjector::new(10, 800, 42).unwrap();
    assert_eq!(
        digital.info().identity,
        "gaussian(seed=42, in=10, out=800, entries=N(0,1), rng=chacha8-stream-per-row)"
    );
    let mut config = OpticalConfig::new(10, 40).with_encoding("bitplane:3".parse().unwrap());
    config.device_label = "seed=7".into();
    let opu = sim("lighton", &config, 7);
    let description = "lighton: LightOn-like OPU: 912x1140 DMD, dense Gaussian medium, 8-bit camera with shot and read noise";
    assert_eq!(
        opu.info(),
        speckle_hal::DeviceInfo {
            kind: "simulated-opu".into(),
            description: description.into(),
            input_dim: 26,
            output_dim: 82,
            bit_depth: Some(8),
            frame_time_us: 500.0,
            exposure_us: 400.0,
            max_batch: 65536,
        }
    );
    let optical = OpticalProjector::new(opu, config).unwrap();
    let mut want = speckle_hal::ProjectorInfo::new(
        format!("optical(device=simulated-opu [{description}] 26x82 seed=7, in=10, out=40, reference=16@seed0, encoding=bitplane:3)"),
        10,
        40,
        1.0,
    );
    want.frames_per_vector = 12.0;
    assert_eq!(optical.info(), want);
    // A stochastic encoding's identity names its dither seed; a deterministic one's does not.
    for (enc, tail) in [
        ("levels:3", "levels:3"),
        ("ternary:dither", "ternary:dither@seed4"),
    ] {
        let mut config = OpticalConfig::new(10, 40).with_encoding(enc.parse().unwrap());
        config.dither_seed = 4;
        let optical = OpticalProjector::new(sim("lighton", &config, 7), config).unwrap();
        let identity = optical.info().identity;
        assert!(
            identity.ends_with(&format!("encoding={tail})")),
            "{identity}"
        );
        // levels:3: reference and dark, then the all-ones pattern in 2 parts (10 data
        // features, 8 reference features on), each with and without the reference.
        let patterns = if enc == "levels:3" { 6 } else { 2 };
        assert_eq!(
            optical.counters().frames,
            patterns * DEFAULT_CALIBRATION_FRAMES as u64
        );
    }
}

/// A simulated OPU that records the readout windows asked of it, or refuses them.
struct Windows {
    opu: SimulatedOpu,
    refuse: bool,
    asked: Vec<Option<usize>>,
}

impl OpticalDevice for Windows {
    fn info(&self) -> DeviceInfo {
        self.opu.info()
    }
    fn transform(&mut self, input: &PackedFrames<'_>, output: &mut [f32]) -> Result<(), Error> {
        self.opu.transform(input, output)
    }
    fn counters(&self) -> DeviceCounters {
        self.opu.counters()
    }
    fn set_readout_window(&mut self, pixels: Option<usize>) -> Result<(), Error> {
        self.asked.push(pixels);
        if self.refuse {
            return Err(Error::new(ErrorKind::Unsupported, "no window"));
        }
        self.opu.set_readout_window(pixels)
    }
}

/// The projector reads the camera through a window ending at its last selected pixel, lifts
/// it to recalibrate, and projects exactly what it projects on a device without windows.
#[test]
fn the_readout_window_changes_no_projection() {
    let (n, m, batch) = (10, 800, 16);
    let config = OpticalConfig::new(n, m).with_encoding("levels:3:dither".parse().unwrap());
    let x = signed_vector(3 * batch * n, 4);
    let mut outputs = Vec::new();
    for refuse in [false, true] {
        let opu = sim("lighton", &config, 6);
        let device = Windows {
            opu,
            refuse,
            asked: Vec::new(),
        };
        let mut proj = OpticalProjector::new(device, config.clone()).unwrap();
        let mut y = vec![0.0f32; 3 * batch * m];
        proj.project(&x[..batch * n], batch, &mut y[..batch * m])
            .unwrap();
        proj.calibrate().unwrap();
        proj.project(&x[batch * n..], 2 * batch, &mut y[batch * m..])
            .unwrap();
        let last = *proj.calibration().pixels.last().unwrap();
        let pixels = config.recommended_device_output_dim();
        assert!(
            last + 1 < pixels,
            "the window saves pixels: {last} of {pixels}"
        );
        let window = Some(last + 1);
        assert_eq!(proj.device().asked, [None, window, None, window]);
        outputs.push(y);
    }
    assert!(outputs[0] == outputs[1], "the window changed a projection");
}
