//! Training-speed measurement for `speckle bench train` and the criterion bench.
//!
//! ```
//! use speckle_runs::perf::bench_epoch;
//! use speckle_runs::RunConfig;
//!
//! // The BP config's model and optimizer, narrow, at batch 32, on MNIST-shaped data.
//! let config = RunConfig::load(
//!     None,
//!     &["training.algorithm=\"bp\"".into(), "model.hidden=[32]".into(), "training.batch_size=32".into()],
//! )?;
//! let r = bench_epoch(&config, 256, None)?;
//! assert_eq!(r.samples, 256);
//! assert!(r.seconds > 0.0 && r.gflops > 0.0);
//! assert!(speckle_runs::perf::gemm_peak_gflops(0.0) > 0.0);
//! assert!(speckle_runs::perf::gemm_mean_gflops(0.0) > 0.0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::time::Instant;

use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use speckle_hal::RandomProjector;

use speckle_dfa::{DfaError, Trainer};

use crate::config::RunConfig;

/// Result of [`bench_epoch`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BenchReport {
    /// Samples trained on.
    pub samples: usize,
    /// Wall time of the training loop, in seconds.
    pub seconds: f64,
    /// Samples per second.
    pub samples_per_s: f64,
    /// Host GEMM flops per sample ([`Trainer::flops_per_sample`]).
    pub flops_per_sample: f64,
    /// Achieved GFLOP/s over the whole loop.
    pub gflops: f64,
}

/// Trains one "epoch" of `samples` synthetic samples of the config's data set shape (uniform
/// [0, 1) inputs, 16 distinct batches reused in turn, random labels) with the config's model,
/// algorithm, optimizer and batch size and `projector` as the feedback, and times the loop
/// alone, with the current rayon pool.
pub fn bench_epoch(
    config: &RunConfig,
    samples: usize,
    projector: Option<Box<dyn RandomProjector + Send>>,
) -> Result<BenchReport, DfaError> {
    let input_dim = config.data.dataset.input_dim();
    let classes = config.data.dataset.classes();
    let batch_size = config.training.batch_size;
    if samples == 0 || batch_size == 0 {
        return Err(DfaError::InvalidSpec(
            "bench needs samples and batch size ≥ 1".into(),
        ));
    }
    let steps = samples.div_ceil(batch_size) as u64;
    let mut trainer = Trainer::new(
        input_dim,
        classes,
        &config.model,
        &config.algorithm_spec(),
        &config.optimizer,
        batch_size,
        steps,
        0,
        projector,
    )?;
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let pool = 16.min(steps as usize);
    let x = Array2::from_shape_fn((pool * batch_size, input_dim), |_| rng.random::<f32>());
    let classes_u8 = u8::try_from(classes)
        .map_err(|_| DfaError::Mismatch(format!("{classes} classes: at most 255 for the bench")))?;
    let y: Vec<u8> = (0..pool * batch_size)
        .map(|_| rng.random_range(0..classes_u8))
        .collect();
    let start = Instant::now();
    let mut done = 0;
    let mut k = 0;
    while done < samples {
        let n = batch_size.min(samples - done);
        let s = (k % pool) * batch_size;
        trainer.train_batch(x.slice(ndarray::s![s..s + n, ..]), &y[s..s + n])?;
        done += n;
        k += 1;
    }
    let seconds = start.elapsed().as_secs_f64();
    let fps = trainer.flops_per_sample();
    Ok(BenchReport {
        samples,
        seconds,
        samples_per_s: samples as f64 / seconds,
        flops_per_sample: fps,
        gflops: fps * samples as f64 / seconds / 1e9,
    })
}

/// The f32 GEMM rate this machine reaches right now, in GFLOP/s: the best of repeated
/// 1024 × 1024 × 1024 products (faer, the whole rayon pool) over about `seconds`. Training
/// throughput is reported against it, since a shared machine's peak moves from minute to
/// minute.
pub fn gemm_peak_gflops(seconds: f64) -> f64 {
    gemm_rates(seconds).best
}

/// The mean f32 GEMM rate over a window of about `seconds` (total flop over total time of
/// repeated 1024³ products, at least three), in GFLOP/s: measured right after a training epoch
/// of the same length, it sees the same share of a busy machine as the epoch did.
pub fn gemm_mean_gflops(seconds: f64) -> f64 {
    gemm_rates(seconds).mean
}

struct GemmRates {
    best: f64,
    mean: f64,
}

fn gemm_rates(seconds: f64) -> GemmRates {
    use faer::linalg::matmul::matmul;
    use faer::{Accum, Mat, Par};
    const N: usize = 1024;
    let a = Mat::<f32>::from_fn(N, N, |i, j| ((i * 7 + j * 3) % 17) as f32 * 0.01);
    let b = Mat::<f32>::from_fn(N, N, |i, j| ((i * 5 + j * 11) % 13) as f32 * 0.01);
    let mut c = Mat::<f32>::zeros(N, N);
    let flop = 2.0 * (N * N * N) as f64;
    let mut best = 0.0f64;
    let start = Instant::now();
    let mut runs = 0;
    while runs < 3 || start.elapsed().as_secs_f64() < seconds {
        let t = Instant::now();
        matmul(
            c.as_mut(),
            Accum::Replace,
            a.as_ref(),
            b.as_ref(),
            1.0,
            Par::rayon(0),
        );
        best = best.max(flop / t.elapsed().as_secs_f64() / 1e9);
        runs += 1;
    }
    let mean = flop * runs as f64 / start.elapsed().as_secs_f64() / 1e9;
    std::hint::black_box(&c);
    GemmRates { best, mean }
}
