//! Protocol throughput over the in-memory link (no serial port, toy device): vectors/s and
//! efficiency for batches of 256 frames. `cargo bench -p speckle-serial`
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn link(c: &mut Criterion) {
    let mut group = c.benchmark_group("memory_link");
    for (input_dim, output_dim) in [(1024usize, 1024usize), (4096, 256)] {
        let report = speckle_serial::bench_in_memory(input_dim, output_dim, 256, 4).unwrap();
        eprintln!(
            "{input_dim} -> {output_dim}, batch 256: efficiency {:.4} ({} payload / {} wire bytes), {} frames per request",
            report.efficiency, report.payload_bytes, report.wire_bytes, report.chunk_frames
        );
        group.throughput(Throughput::Elements(256));
        group.bench_function(format!("{input_dim}x{output_dim}_batch256"), |b| {
            b.iter(|| speckle_serial::bench_in_memory(input_dim, output_dim, 256, 1).unwrap())
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = link
}
criterion_main!(benches);
