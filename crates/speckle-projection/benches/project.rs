//! The digital Gaussian projector: y = x · P, P fixed, at DFA's shape (10 → 800) and a large one
//! (1024 → 8192). Throughput is reported in vectors (elements); 2·N·M flop per vector.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use speckle_hal::RandomProjector;
use speckle_projection::GaussianProjector;
use std::hint::black_box;
use std::time::Duration;

fn digital(c: &mut Criterion) {
    let mut group = c.benchmark_group("gaussian_project");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for &(n, m) in &[(10usize, 800usize), (1024, 8192)] {
        let mut proj = GaussianProjector::new(n, m, 0).expect("projector");
        for &batch in &[128usize, 256] {
            let x: Vec<f32> = (0..batch * n)
                .map(|k| ((k * 7919) % 101) as f32 / 50.0 - 1.0)
                .collect();
            let mut y = vec![0.0f32; batch * m];
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_with_input(
                BenchmarkId::new(format!("{n}x{m}"), batch),
                &batch,
                |b, &batch| {
                    b.iter(|| {
                        proj.project(black_box(&x), batch, &mut y).expect("project");
                        black_box(&y);
                    })
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, digital);
criterion_main!(benches);
