//! Criterion benches of every projection backend, from 10 → 800 (DFA feedback on MNIST) up to
//! 2^20 → 2^21 (a full-size OPU, structured medium only): `cargo bench --bench backends`.
//! Filter with a group name, e.g. `cargo bench --bench backends -- structured`.
//!
//! Throughput is reported in vectors (one binary frame or one float vector each). Sample counts
//! and measurement times are small so the whole file runs in a few minutes on two cores; the
//! `speckle bench --suite` command gives the same numbers as a table.
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use speckle::devices::emulator::{sim_emulator_options, sim_factory};
use speckle::devices::{open_projector, DeviceSpec, SimSource};
use speckle::hal::{OpticalDevice, PackedFrames};
use speckle::serial::{memory_link, Emulator, SerialDevice, SerialOptions};
use speckle::sim::{DeviceConfig, SimulatedOpu, StructuredMedium};
use speckle_testkit::{random_frames, signed_vector};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

fn label(n: usize, m: usize) -> String {
    format!("{n}x{m}")
}

fn bench_device(c: &mut Criterion, group: &str, preset: &str, sizes: &[(usize, usize, usize)]) {
    let mut g = c.benchmark_group(group);
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    for &(n, m, batch) in sizes {
        let config = DeviceConfig::preset(preset).unwrap();
        let mut device = SimulatedOpu::new(&config, n, m, 1).unwrap();
        let packed = random_frames(batch, n, 2);
        let frames = PackedFrames::new(&packed, batch, n).unwrap();
        let mut out = vec![0f32; batch * m];
        g.throughput(Throughput::Elements(batch as u64));
        g.bench_function(BenchmarkId::from_parameter(label(n, m)), |b| {
            b.iter(|| device.transform(&frames, &mut out).unwrap())
        });
    }
    g.finish();
}

fn bench_projector(
    c: &mut Criterion,
    group: &str,
    dev: DeviceSpec,
    sizes: &[(usize, usize, usize)],
) {
    let mut g = c.benchmark_group(group);
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    for &(n, m, batch) in sizes {
        let mut projector =
            open_projector(&dev, Default::default(), &Default::default(), n, m, 1).unwrap();
        let x = signed_vector(batch * n, 3);
        let mut y = vec![0f32; batch * m];
        g.throughput(Throughput::Elements(batch as u64));
        g.bench_function(BenchmarkId::from_parameter(label(n, m)), |b| {
            b.iter(|| projector.project(&x, batch, &mut y).unwrap())
        });
    }
    g.finish();
}

fn digital(c: &mut Criterion) {
    bench_projector(
        c,
        "digital",
        DeviceSpec::Digital,
        &[
            (10, 800, 256),
            (1024, 8192, 256),
            (4096, 4096, 256),
            (10, 1 << 20, 16),
        ],
    );
}

fn dense_raw(c: &mut Criterion) {
    let sizes = [(10, 800, 256), (1024, 8192, 256), (4096, 4096, 256)];
    bench_device(c, "dense_ideal_raw", "ideal", &sizes);
    bench_device(c, "dense_8bit_raw", "lighton", &sizes);
}

fn dense_linear(c: &mut Criterion) {
    let ideal = DeviceSpec::Sim(SimSource::Preset("ideal".into()));
    bench_projector(
        c,
        "dense_ideal_linear",
        ideal,
        &[(10, 800, 256), (1024, 8192, 64)],
    );
}

/// The structured medium alone (complex fields), then the full structured device (8-bit
/// camera), up to 2^20 → 2^21.
fn structured(c: &mut Criterion) {
    let mut g = c.benchmark_group("structured_medium_fields");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(3));
    for (n, m, batch) in [
        (1024, 8192, 64),
        (1 << 16, 1 << 17, 4),
        (1 << 20, 1 << 21, 1),
    ] {
        let medium = StructuredMedium::new(n, m, 1).unwrap();
        let packed = random_frames(batch, n, 2);
        let frames = PackedFrames::new(&packed, batch, n).unwrap();
        let (mut re, mut im) = (vec![0f32; batch * m], vec![0f32; batch * m]);
        g.throughput(Throughput::Elements(batch as u64));
        g.bench_function(BenchmarkId::from_parameter(label(n, m)), |b| {
            b.iter(|| medium.apply_packed(&frames, &mut re, &mut im).unwrap())
        });
    }
    g.finish();
    bench_device(
        c,
        "structured_8bit_raw",
        "structured",
        &[
            (1024, 8192, 256),
            (1 << 16, 1 << 17, 4),
            (1 << 20, 1 << 21, 1),
        ],
    );
    let structured = DeviceSpec::Sim(SimSource::Preset("structured".into()));
    bench_projector(c, "structured_linear", structured, &[(10, 1 << 20, 4)]);
}

/// The serial backend against the emulator (8-bit dense simulator) over an in-memory link.
fn serial(c: &mut Criterion) {
    let mut g = c.benchmark_group("serial_emulator_raw");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    for (n, m, batch) in [(10, 800, 256), (1024, 8192, 64)] {
        let config = DeviceConfig::preset("lighton").unwrap();
        let (host, mut dev_end) = memory_link();
        let options = sim_emulator_options(&config);
        let server = std::thread::spawn(move || {
            let mut emulator = Emulator::new(sim_factory(config, 1), options);
            emulator.serve(&mut dev_end, &AtomicBool::new(false))
        });
        {
            let options = SerialOptions {
                dims: Some((n, m)),
                name: "memory link".into(),
                ..SerialOptions::default()
            };
            let mut device = SerialDevice::new(host, options).unwrap();
            let packed = random_frames(batch, n, 2);
            let frames = PackedFrames::new(&packed, batch, n).unwrap();
            let mut out = vec![0f32; batch * m];
            g.throughput(Throughput::Elements(batch as u64));
            g.bench_function(BenchmarkId::from_parameter(label(n, m)), |b| {
                b.iter(|| device.transform(&frames, &mut out).unwrap())
            });
        }
        // The host end is dropped: the emulator returns.
        let _ = server.join();
    }
    g.finish();
}

criterion_group!(
    backends,
    digital,
    dense_raw,
    dense_linear,
    structured,
    serial
);
criterion_main!(backends);
