//! Statistical tests of the physical model: each fails without the stage it tests.

use speckle_hal::{OpticalDevice, PackedFrames};
use speckle_sim::{DeviceConfig, MacroPixel, SimulatedOpu};
use speckle_testkit::{ks_exponential, pack};

/// `count` frames of `width` features, feature i of frame f lit by a fixed hash.
fn pattern(frames: usize, width: usize, salt: usize) -> Vec<u8> {
    (0..frames * width)
        .map(|v| ((v.wrapping_mul(2_654_435_761) ^ salt) >> 7 & 1) as u8)
        .collect()
}

fn fields(opu: &mut SimulatedOpu, bits: &[u8], frames: usize) -> (Vec<f32>, Vec<f32>) {
    let n = opu.info().input_dim;
    let m = opu.info().output_dim;
    let packed = pack(bits, frames, n);
    let pf = PackedFrames::new(&packed, frames, n).unwrap();
    let mut re = vec![0f32; frames * m];
    let mut im = vec![0f32; frames * m];
    opu.fields(&pf, &mut re, &mut im).unwrap();
    (re, im)
}

fn transform(opu: &mut SimulatedOpu, bits: &[u8], frames: usize) -> Vec<f32> {
    let n = opu.info().input_dim;
    let m = opu.info().output_dim;
    let packed = pack(bits, frames, n);
    let pf = PackedFrames::new(&packed, frames, n).unwrap();
    let mut out = vec![0f32; frames * m];
    opu.transform(&pf, &mut out).unwrap();
    out
}

#[test]
fn ideal_intensities_are_exponential_with_mean_proportional_to_norm() {
    let config = DeviceConfig::preset("ideal").unwrap();
    let (n, m) = (64, 4000);
    let mut opu = SimulatedOpu::new(&config, n, m, 11).unwrap();
    // Three inputs with 1, 10 and 40 lit features.
    for lit in [1usize, 10, 40] {
        let bits: Vec<u8> = (0..n).map(|i| (i < lit) as u8).collect();
        let out = transform(&mut opu, &bits, 1);
        // Documented: mean intensity = ‖x‖² · E|R_ji|² = lit · k / M.
        let mean = lit as f64 * opu.entry_variance();
        let sample: Vec<f64> = out.iter().map(|&v| f64::from(v)).collect();
        let d = ks_exponential(&sample, mean);
        // KS critical value at α = 0.001 for 4000 samples: 1.95 / sqrt(4000) = 0.031.
        assert!(d < 0.031, "lit {lit}: KS distance {d} to Exp({mean})");
        // And the sample mean (relative std 1/sqrt(4000) = 1.6 %) is within 5 %.
        let got = out.iter().map(|&v| f64::from(v)).sum::<f64>() / m as f64;
        assert!(
            (got / mean - 1.0).abs() < 0.05,
            "lit {lit}: mean {got} vs {mean}"
        );
    }
}

#[test]
fn macro_pixel_scales_entry_variance() {
    let mut config = DeviceConfig::preset("ideal").unwrap();
    config.dmd.rows = 100;
    config.dmd.cols = 100;
    let (n, m) = (50, 200);
    let mut stats = Vec::new();
    for k in [1u64, 9] {
        config.dmd.macro_pixel = MacroPixel::Mirrors(k);
        let mut opu = SimulatedOpu::new(&config, n, m, 4).unwrap();
        assert_eq!(opu.macro_pixel(), k);
        assert!((opu.entry_variance() - k as f64 / 10_000.0).abs() < 1e-15);
        let mut sum = 0.0;
        let mut sum_re2 = 0.0;
        for j in 0..m {
            for i in 0..n {
                let r = opu.transmission_entry(j, i).unwrap();
                sum += f64::from(r.norm_sqr());
                sum_re2 += f64::from(r.re * r.re);
            }
        }
        let count = (m * n) as f64;
        // 10,000 entries: E|R|² estimated to ±1 % (one std); allow 5 %.
        let var = sum / count;
        assert!(
            (var / opu.entry_variance() - 1.0).abs() < 0.05,
            "k {k}: {var}"
        );
        // Circular: the real part carries half.
        assert!(
            (sum_re2 / sum - 0.5).abs() < 0.03,
            "k {k}: Re share {}",
            sum_re2 / sum
        );
        stats.push(var);
    }
    // Same seed: the k = 9 matrix is the k = 1 matrix times 3, so the ratio is 9 to rounding.
    assert!((stats[1] / stats[0] - 9.0).abs() < 1e-4, "{stats:?}");
    // Auto: floor(mirrors / features).
    config.dmd.macro_pixel = MacroPixel::Auto;
    let opu = SimulatedOpu::new(&config, 300, 8, 4).unwrap();
    assert_eq!(opu.macro_pixel(), 33);
}

#[test]
fn larger_device_contains_the_smaller_ones_matrix() {
    let mut config = DeviceConfig::preset("ideal").unwrap();
    config.dmd.macro_pixel = MacroPixel::Mirrors(4);
    let mut small = SimulatedOpu::new(&config, 40, 50, 5).unwrap();
    let mut large = SimulatedOpu::new(&config, 100, 130, 5).unwrap();
    // The large matrix regenerated per batch (budget 1 MiB < 100 × 130 × 8 B? no: force it
    // with 2000 outputs) must agree too.
    config.medium.matrix_budget_mib = 1;
    let mut streamed = SimulatedOpu::new(&config, 100, 2000, 5).unwrap();
    assert!(streamed.matrix_bytes() <= 1 << 20);
    for j in 0..50 {
        for i in 0..40 {
            let e = small.transmission_entry(j, i).unwrap();
            assert_eq!(e, large.transmission_entry(j, i).unwrap(), "({j}, {i})");
            assert_eq!(e, streamed.transmission_entry(j, i).unwrap(), "({j}, {i})");
        }
    }
    // Fields of an input padded with zero features: the first 50 outputs agree bit for bit.
    let x_small = pattern(1, 40, 3);
    let mut x_large = x_small.clone();
    x_large.resize(100, 0);
    let (re_s, im_s) = fields(&mut small, &x_small, 1);
    let (re_l, im_l) = fields(&mut large, &x_large, 1);
    let (re_t, im_t) = fields(&mut streamed, &x_large, 1);
    assert_eq!(re_s[..], re_l[..50]);
    assert_eq!(im_s[..], im_l[..50]);
    assert_eq!(re_l[..], re_t[..130]);
    assert_eq!(im_l[..], im_t[..130]);
}

#[test]
fn eight_bit_output_stays_in_range_and_saturates_at_high_exposure() {
    let mut config = DeviceConfig::preset("lighton").unwrap();
    let (n, m, frames) = (64, 512, 8);
    let bits = pattern(frames, n, 1);
    let mut opu = SimulatedOpu::new(&config, n, m, 2).unwrap();
    let out = transform(&mut opu, &bits, frames);
    assert!(out
        .iter()
        .all(|&c| c == c.round() && (0.0..=255.0).contains(&c)));
    let saturated = out.iter().filter(|&&c| c == 255.0).count() as f64 / out.len() as f64;
    // Half-lit frames at the preset exposure: documented as saturating ~0.04 % of pixels.
    assert!(saturated < 0.01, "{saturated}");
    let mean = out.iter().sum::<f32>() / out.len() as f32;
    assert!((15.0..60.0).contains(&mean), "preset mean count {mean}");

    // 100× the exposure: most pixels saturate, none exceed 255.
    config.camera.exposure_us = 40_000.0;
    config.camera.frame_time_us = 40_100.0;
    let mut opu = SimulatedOpu::new(&config, n, m, 2).unwrap();
    let out = transform(&mut opu, &bits, frames);
    assert!(out.iter().all(|&c| (0.0..=255.0).contains(&c)));
    let saturated = out.iter().filter(|&&c| c == 255.0).count() as f64 / out.len() as f64;
    // Intensities are exponential with mean ≈ 0.5: at 6400 counts per unit intensity every
    // pixel above I = 0.04 saturates, i.e. exp(−0.08) ≈ 92 % of them.
    assert!(saturated > 0.85, "{saturated}");

    // A small full well caps the photoelectrons below the ADC ceiling: 1600 e + 32 e of offset
    // read as 102 counts, ± read noise (6 e = 0.4 count).
    let mut small_well = config.clone();
    small_well.camera.full_well_e = 1600.0;
    let mut opu = SimulatedOpu::new(&small_well, n, m, 2).unwrap();
    let out = transform(&mut opu, &bits, frames);
    assert!(
        out.iter().all(|&c| c <= 104.0),
        "{:?}",
        out.iter().fold(0f32, |a, &b| a.max(b))
    );
    let at_well = out
        .iter()
        .filter(|&&c| (100.0..=104.0).contains(&c))
        .count();
    assert!(at_well as f64 > 0.85 * out.len() as f64, "{at_well}");

    // 4, 6, 10 and 12 bits with a deep well: the ceiling moves to 15, 63, 1023 and 4095.
    config.camera.full_well_e = 1e7;
    for (bits_adc, max) in [(4u8, 15.0f32), (6, 63.0), (10, 1023.0), (12, 4095.0)] {
        config.camera.bits = bits_adc;
        let mut opu = SimulatedOpu::new(&config, n, m, 2).unwrap();
        let out = transform(&mut opu, &bits, frames);
        assert!(out
            .iter()
            .all(|&c| c == c.round() && (0.0..=max).contains(&c)));
        assert!(out.contains(&max));
    }
}

/// Per-pixel mean and variance of repeated frames of one input.
fn repeated_stats(
    config: &DeviceConfig,
    x: &[u8],
    frames: usize,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let n = x.len();
    let m = 64;
    let mut opu = SimulatedOpu::new(config, n, m, 9).unwrap();
    let (re, im) = fields(&mut opu, x, 1);
    let intensity: Vec<f64> = re
        .iter()
        .zip(&im)
        .map(|(&a, &b)| f64::from(a) * f64::from(a) + f64::from(b) * f64::from(b))
        .collect();
    let bits: Vec<u8> = x.iter().copied().cycle().take(frames * n).collect();
    let out = transform(&mut opu, &bits, frames);
    let mut mean = vec![0.0; m];
    let mut var = vec![0.0; m];
    for j in 0..m {
        let s: Vec<f64> = (0..frames).map(|f| f64::from(out[f * m + j])).collect();
        mean[j] = s.iter().sum::<f64>() / frames as f64;
        var[j] = s.iter().map(|v| (v - mean[j]).powi(2)).sum::<f64>() / (frames - 1) as f64;
    }
    (intensity, mean, var)
}

#[test]
fn repeated_frame_variance_follows_the_noise_model() {
    // 12 bits, 1 electron per count: counts are electrons.
    let mut config = DeviceConfig::preset("lighton").unwrap();
    let c = &mut config.camera;
    c.bits = 12;
    c.electrons_per_count = 1.0;
    c.full_well_e = 1e6;
    c.dark_offset_e = 100.0;
    // 1000 electrons per unit intensity; intensities here are exponential with mean 0.5.
    c.photon_rate_per_us = 5.0;
    c.quantum_efficiency = 0.5;
    c.exposure_us = 400.0;
    let e_per_i = 1000.0;
    let x: Vec<u8> = (0..32).map(|i| (i % 2) as u8).collect();
    let frames = 2000;

    // No noise at all: every repeat is identical.
    config.camera.shot_noise = false;
    config.camera.read_noise_e = 0.0;
    let (intensity, mean, var) = repeated_stats(&config, &x, frames);
    assert!(var.iter().all(|&v| v == 0.0));
    for j in 0..intensity.len() {
        let want = (intensity[j] * e_per_i + 100.0).round().min(4095.0);
        assert!(
            (mean[j] - want).abs() <= 1.0,
            "pixel {j}: {} vs {want}",
            mean[j]
        );
    }

    // Shot noise: var = λ (+ 1/12 from rounding the Gaussian approximation above 50 e).
    // Then shot + read noise 20 e: var = λ + 400 + 1/12 (ADC rounding).
    for (read, extra) in [(0.0, 0.0), (20.0, 400.0 + 1.0 / 12.0)] {
        config.camera.shot_noise = true;
        config.camera.read_noise_e = read;
        let (intensity, mean, var) = repeated_stats(&config, &x, frames);
        let mut ratios = Vec::new();
        for j in 0..intensity.len() {
            let lambda = intensity[j] * e_per_i;
            if lambda + 100.0 + 5.0 * (lambda + extra).sqrt() > 4095.0 {
                continue; // would clip at the ADC ceiling
            }
            let predicted = lambda + extra;
            ratios.push(var[j] / predicted);
            // Mean: λ + dark offset, within 5 standard errors.
            let se = (predicted / frames as f64).sqrt();
            assert!(
                (mean[j] - lambda - 100.0).abs() < 5.0 * se + 0.5,
                "pixel {j}"
            );
        }
        assert!(ratios.len() > 50);
        // Each ratio has relative std sqrt(2/1999) ≈ 3.2 %: the average of > 50 is within 2 %,
        // each one within 15 % (4.7 std).
        let avg = ratios.iter().sum::<f64>() / ratios.len() as f64;
        assert!(
            (avg - 1.0).abs() < 0.02,
            "read {read}: mean variance ratio {avg}"
        );
        assert!(
            ratios.iter().all(|r| (r - 1.0).abs() < 0.15),
            "read {read}: {ratios:?}"
        );
    }
}

#[test]
fn drift_decorrelates_the_medium_as_predicted() {
    let mut config = DeviceConfig::preset("ideal").unwrap();
    config.drift.rate = 0.1;
    config.drift.every_frames = 4;
    let (n, m) = (64, 3000);
    let mut opu = SimulatedOpu::new(&config, n, m, 8).unwrap();
    let x = pattern(1, n, 5);
    let (re0, im0) = fields(&mut opu, &x, 1);
    let corr = |re: &[f32], im: &[f32]| {
        let (mut c, mut a, mut b) = (0.0, 0.0, 0.0);
        for j in 0..m {
            let (r0, i0) = (f64::from(re0[j]), f64::from(im0[j]));
            let (r1, i1) = (f64::from(re[j]), f64::from(im[j]));
            c += r0 * r1 + i0 * i1; // Re(conj(f0) · f1)
            a += r0 * r0 + i0 * i0;
            b += r1 * r1 + i1 * i1;
        }
        c / (a * b).sqrt()
    };
    for epochs in [1u64, 5, 10] {
        opu.seek_frame(4 * epochs).unwrap();
        let (re, im) = fields(&mut opu, &x, 1);
        let want = 0.9f64.powf(epochs as f64 / 2.0);
        let got = corr(&re, &im);
        // Standard error of a correlation over 3000 outputs ≤ 1/sqrt(3000) ≈ 0.018.
        assert!(
            (got - want).abs() < 0.06,
            "after {epochs} epochs: {got} vs {want}"
        );
        // Seeking inside an epoch does not change the matrix.
        opu.seek_frame(4 * epochs + 3).unwrap();
        assert_eq!(fields(&mut opu, &x, 1).0, re);
    }
    // Seeking back replays the drift exactly.
    opu.seek_frame(0).unwrap();
    assert_eq!(fields(&mut opu, &x, 1).0, re0);

    // A batch of 6 identical frames from frame 2 crosses the boundary at frame 4: frames 2, 3
    // see epoch 0, frames 4..7 epoch 1.
    opu.seek_frame(2).unwrap();
    let bits: Vec<u8> = x.iter().copied().cycle().take(6 * n).collect();
    let out = transform(&mut opu, &bits, 6);
    assert_eq!(out[..m], out[m..2 * m]);
    assert_ne!(out[m..2 * m], out[2 * m..3 * m]);
    assert_eq!(out[2 * m..3 * m], out[5 * m..6 * m]);
    assert_eq!(opu.frame_index(), 8);

    // Without drift the matrix never changes.
    config.drift.rate = 0.0;
    let mut still = SimulatedOpu::new(&config, n, m, 8).unwrap();
    still.seek_frame(400).unwrap();
    assert_eq!(fields(&mut still, &x, 1).0, re0);
}

/// The 4096 → 65536 device of issue 2 runs while holding at most 256 MiB of matrix (the whole
/// matrix would take 2 GiB): it is regenerated in chunks for every batch. Slow outside release
/// mode: `cargo test --release -p speckle-sim -- --ignored`.
#[test]
#[ignore]
fn a_4096_by_65536_device_runs_within_256_mib_of_matrix() {
    let config = DeviceConfig::preset("lighton").unwrap();
    let (n, m) = (4096, 65536);
    let mut opu = SimulatedOpu::new(&config, n, m, 1).unwrap();
    let bits = pattern(4, n, 9);
    let start = std::time::Instant::now();
    let out = transform(&mut opu, &bits, 4);
    eprintln!("4 frames of 4096 → 65536: {:?}", start.elapsed());
    assert!(opu.matrix_bytes() <= 256 << 20, "{}", opu.matrix_bytes());
    assert!(out.iter().all(|&c| (0.0..=255.0).contains(&c)));
    let mean = out.iter().map(|&c| f64::from(c)).sum::<f64>() / out.len() as f64;
    assert!((20.0..50.0).contains(&mean), "{mean}");
    // The last entry agrees with a small cached device of the same macro-pixel size.
    let mut small = SimulatedOpu::new(&config, n, 64, 1).unwrap();
    assert_eq!(
        opu.transmission_entry(63, 4095).unwrap(),
        small.transmission_entry(63, 4095).unwrap()
    );
}
