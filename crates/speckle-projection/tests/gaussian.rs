//! The digital Gaussian projector's distribution and trait-object use.

use speckle_hal::RandomProjector;
use speckle_projection::GaussianProjector;
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
