//! One DFA epoch of 784-800-800-800-10 tanh at batch 128 (60,000 samples), the speed
//! target, plus the same epoch with BP for comparison. The projector is an in-bench digital
//! Gaussian matrix (10 × 800), so the figure is the host's training speed.
//!
//! `cargo bench -p speckle-dfa --bench train_epoch`; set `SPECKLE_BENCH_SAMPLES` to shorten.

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use speckle_dfa::AlgorithmKind;
use speckle_hal::{DeviceCounters, Error, ProjectorInfo, RandomProjector};
use speckle_runs::perf::bench_epoch;
use speckle_runs::RunConfig;

/// y = x·P with a fixed Gaussian P (rows of x are 10 class errors).
struct Dense {
    p: Vec<f32>,
    out: usize,
}

impl RandomProjector for Dense {
    fn info(&self) -> ProjectorInfo {
        ProjectorInfo::new("bench-gaussian", 10, self.out, 1.0)
    }
    fn project(&mut self, input: &[f32], batch: usize, output: &mut [f32]) -> Result<(), Error> {
        speckle_hal::check_projection_buffers(&self.info(), input, batch, output)?;
        for (x, y) in input
            .chunks_exact(10)
            .zip(output.chunks_exact_mut(self.out))
        {
            y.fill(0.0);
            for (xi, row) in x.iter().zip(self.p.chunks_exact(self.out)) {
                for (yj, pj) in y.iter_mut().zip(row) {
                    *yj += xi * pj;
                }
            }
        }
        Ok(())
    }
    fn counters(&self) -> DeviceCounters {
        DeviceCounters::default()
    }
}

fn projector() -> Box<dyn RandomProjector + Send> {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let p = (0..10 * 800)
        .map(|_| rng.sample::<f32, _>(rand_distr::StandardNormal))
        .collect();
    Box::new(Dense { p, out: 800 })
}

fn epoch(c: &mut Criterion) {
    let samples: usize = std::env::var("SPECKLE_BENCH_SAMPLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60_000);
    let mut group = c.benchmark_group("train_epoch");
    // An epoch takes seconds: one epoch per sample, ten samples.
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(std::time::Duration::from_millis(1));
    group.measurement_time(std::time::Duration::from_secs(1));
    for kind in [AlgorithmKind::Dfa, AlgorithmKind::Bp] {
        // MNIST-shaped data, the default model and optimizer, batch 128.
        let mut config = RunConfig::default();
        config.training.algorithm = kind;
        group.bench_function(format!("{kind}_784-800x3-10_b128"), |b| {
            b.iter_custom(|iters| {
                let mut total = std::time::Duration::ZERO;
                for _ in 0..iters {
                    let p = (kind == AlgorithmKind::Dfa).then(projector);
                    let r = bench_epoch(&config, samples, p).unwrap();
                    eprintln!(
                        "{kind}: {:.3} s, {:.0} samples/s, {:.1} GFLOP/s",
                        r.seconds, r.samples_per_s, r.gflops
                    );
                    total += std::time::Duration::from_secs_f64(r.seconds);
                }
                total
            })
        });
    }
    group.finish();
}

criterion_group!(benches, epoch);
criterion_main!(benches);
