//! The digital projector's distributions (Gaussian and uniform) and trait-object use.

use speckle_hal::RandomProjector;
use speckle_projection::{DigitalProjector, EntryDistribution, GaussianProjector};
use speckle_testkit::ks_normal;

#[test]
fn entries_are_standard_gaussian() {
    // 64 × 500 = 32,000 entries: KS distance to N(0, 1) below 0.0091, the 1 % critical value
    // 1.63 / sqrt(n) for iid samples.
    let p = GaussianProjector::new(64, 500, 2024).unwrap();
    let samples: Vec<f64> = p.matrix().iter().map(|&v| f64::from(v)).collect();
    let d = ks_normal(&samples, 1.0);
    assert!(d < 1.63 / (samples.len() as f64).sqrt(), "KS distance {d}");
    assert_eq!(p.info().entry_variance, 1.0);
    assert_eq!(p.info().frames_per_vector, 0.0);
}

#[test]
fn projection_is_gaussian_with_variance_norm_squared() {
    // y_j = Σ_i x_i P_ij ~ N(0, ‖x‖²) across j: KS ≤ 0.04 with 2,000 outputs (1 %: 0.036).
    let mut proj: Box<dyn RandomProjector + Send> =
        Box::new(GaussianProjector::new(10, 2000, 5).unwrap());
    let x: Vec<f32> = (0..10).map(|i| (i as f32 - 4.5) / 3.0).collect();
    let norm2: f64 = x.iter().map(|&v| f64::from(v * v)).sum();
    let mut y = vec![0.0f32; 2000];
    proj.project(&x, 1, &mut y).unwrap();
    let y: Vec<f64> = y.iter().map(|&v| f64::from(v)).collect();
    let d = ks_normal(&y, norm2);
    assert!(d <= 0.04, "KS distance {d}");
    assert!(proj.info().identity.contains("seed=5"));
    assert_eq!(proj.counters().frames, 0);
}

#[test]
fn uniform_entries_fill_minus_one_to_one() {
    // 64 × 500 = 32,000 entries of U[−1, 1): mean 0 and variance 1/3, each within 5 standard
    // errors (mean: sqrt(1/3 / n) = 0.0032; variance: sqrt((1/5 − 1/9) / n) = 0.0017), every
    // entry in [−1, 1), and the KS distance to U[−1, 1) below its 1 % critical value
    // 1.63 / sqrt(n).
    let p = DigitalProjector::with_entries(64, 500, 2024, EntryDistribution::Uniform).unwrap();
    let m: Vec<f64> = p.matrix().iter().map(|&v| f64::from(v)).collect();
    let n = m.len() as f64;
    assert!(m.iter().all(|&v| (-1.0..1.0).contains(&v)));
    let mean = m.iter().sum::<f64>() / n;
    let var = m.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    assert!(mean.abs() < 5.0 * (1.0 / 3.0 / n).sqrt(), "mean {mean}");
    assert!(
        (var - 1.0 / 3.0).abs() < 5.0 * ((1.0 / 5.0 - 1.0 / 9.0) / n).sqrt(),
        "variance {var}"
    );
    let mut sorted = m.clone();
    sorted.sort_by(f64::total_cmp);
    let ks = sorted
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let cdf = (v + 1.0) / 2.0;
            (cdf - i as f64 / n)
                .abs()
                .max((cdf - (i + 1) as f64 / n).abs())
        })
        .fold(0.0, f64::max);
    assert!(ks < 1.63 / n.sqrt(), "KS distance {ks}");
    let info = p.info();
    assert_eq!(info.entry_variance, 1.0 / 3.0);
    assert!(
        info.identity.starts_with("uniform(seed=2024,"),
        "{}",
        info.identity
    );
    assert_eq!(p.entries(), EntryDistribution::Uniform);
}

#[test]
fn uniform_and_gaussian_projectors_share_the_row_streams_not_the_values() {
    // Same seed, same shape: different matrices and identities, each its own top-left block.
    let g = GaussianProjector::new(4, 6, 9).unwrap();
    let u = DigitalProjector::with_entries(4, 6, 9, EntryDistribution::Uniform).unwrap();
    assert_ne!(g.matrix(), u.matrix());
    assert_ne!(g.info().identity, u.info().identity);
    let big = DigitalProjector::with_entries(7, 11, 9, EntryDistribution::Uniform).unwrap();
    for i in 0..4 {
        assert_eq!(
            u.matrix()[i * 6..i * 6 + 6],
            big.matrix()[i * 11..i * 11 + 6]
        );
    }
}
