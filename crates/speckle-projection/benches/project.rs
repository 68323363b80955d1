//! The digital Gaussian projector: y = x · P, P fixed, at DFA's shape (10 → 800) and a large one
//! (1024 → 8192); the optical projector on the simulated OPU at DFA's shape; and the host cost
//! of encoding one vector (`Encoding::quantize`) at 10, 1,024 and 65,536 entries. Throughput is
//! reported in vectors (elements), in entries for the encodings; 2·N·M flop per vector for the
//! digital one.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use speckle_hal::RandomProjector;
use speckle_projection::{Encoding, GaussianProjector, OpticalConfig, OpticalProjector};
use speckle_sim::{DeviceConfig, SimulatedOpu};
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
            // The same on the calling thread only, to see what the thread pool buys.
            let mut seq = proj.clone().with_threads(1);
            group.bench_with_input(
                BenchmarkId::new(format!("{n}x{m}-1thread"), batch),
                &batch,
                |b, &batch| {
                    b.iter(|| {
                        seq.project(black_box(&x), batch, &mut y).expect("project");
                        black_box(&y);
                    })
                },
            );
        }
    }
    group.finish();
}

fn optical(c: &mut Criterion) {
    let mut group = c.benchmark_group("optical_project");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    let (n, m, batch) = (10usize, 800usize, 128usize);
    let x: Vec<f32> = (0..batch * n)
        .map(|k| ((k * 7919) % 101) as f32 / 50.0 - 1.0)
        .collect();
    let mut y = vec![0.0f32; batch * m];
    for preset in ["ideal", "lighton"] {
        for encoding in [
            Encoding::default(),
            Encoding::Levels {
                levels: 3,
                dither: true,
            },
            Encoding::BitPlane { bits: 4 },
        ] {
            let config = OpticalConfig::new(n, m).with_encoding(encoding);
            let device = SimulatedOpu::new(
                &DeviceConfig::preset(preset).expect("preset"),
                config.device_input_dim(),
                config.recommended_device_output_dim(),
                0,
            )
            .expect("device");
            let mut proj = OpticalProjector::new(device, config).expect("projector");
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_function(
                BenchmarkId::new(format!("{preset}-{n}x{m}-{encoding}"), batch),
                |b| {
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

fn encoding(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for n in [10usize, 1024, 65536] {
        let x: Vec<f32> = (0..n)
            .map(|k| ((k * 7919) % 1009) as f32 / 504.0 - 1.0)
            .collect();
        for name in ["ternary", "bitplane:1", "levels:3", "levels:3:dither"] {
            let encoding: Encoding = name.parse().expect("encoding");
            group.throughput(Throughput::Elements(n as u64));
            group.bench_function(BenchmarkId::new(name, n), |b| {
                b.iter(|| black_box(encoding.quantize(black_box(&x))))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, digital, optical, encoding);
criterion_main!(benches);
