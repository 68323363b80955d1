//! Raw transform throughput of the simulated OPU (issue 2 targets, batches of 256 binary
//! vectors): ideal preset ≥ 4,500 vectors/s at 1024 → 8192 and ≥ 2,500 at 4096 → 4096; the
//! 8-bit camera with shot and read noise at most 1.5× the ideal time.
//!
//! `cargo bench --bench sim_transform` (criterion reports time per batch and vectors/s).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use speckle_hal::{pack_bits, OpticalDevice, PackedFrames};
use speckle_sim::{DeviceConfig, SimulatedOpu};
use std::time::Duration;

const BATCH: usize = 256;

fn bench_transform(c: &mut Criterion) {
    let mut group = c.benchmark_group("sim_transform");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(BATCH as u64));
    for (n, m) in [(1024usize, 8192usize), (4096, 4096)] {
        // Half of the features lit, in a fixed pattern.
        let bits: Vec<u8> = (0..BATCH * n)
            .map(|v| (v.wrapping_mul(2_654_435_761) >> 9 & 1) as u8)
            .collect();
        let mut packed = Vec::new();
        pack_bits(&bits, BATCH, n, &mut packed).unwrap();
        let frames = PackedFrames::new(&packed, BATCH, n).unwrap();
        let mut out = vec![0f32; BATCH * m];
        for preset in ["ideal", "lighton"] {
            let config = DeviceConfig::preset(preset).unwrap();
            let mut opu = SimulatedOpu::new(&config, n, m, 0).unwrap();
            group.bench_function(BenchmarkId::new(preset, format!("{n}x{m}")), |b| {
                b.iter(|| opu.transform(&frames, &mut out).unwrap())
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_transform);
criterion_main!(benches);
