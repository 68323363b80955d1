//! Link throughput: vectors per second and protocol efficiency.

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use speckle_hal::{pack_bits, Error, OpticalDevice, PackedFrames};

use crate::{
    memory_link, Emulator, EmulatorOptions, SerialDevice, SerialOptions, ToyDevice, Transport,
};

/// What [`bench_link`] measured.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkBenchReport {
    /// Frames (binary vectors) transformed.
    pub vectors: u64,
    /// Wall time, seconds.
    pub seconds: f64,
    /// `vectors / seconds`.
    pub vectors_per_s: f64,
    /// Useful bytes (packed frames out, camera values in) over all bytes on the wire.
    pub efficiency: f64,
    /// Useful bytes.
    pub payload_bytes: u64,
    /// Bytes on the wire, both directions.
    pub wire_bytes: u64,
    /// Requests sent again during the run (0 on a clean link).
    pub retransmissions: u64,
    /// Frames per request on the wire.
    pub chunk_frames: usize,
}

/// Transforms `batches` batches of `batch` random binary frames (seeded) through `device` and
/// reports throughput and protocol efficiency (payload bytes over wire bytes, both directions,
/// handshake excluded).
pub fn bench_link<T: Transport>(
    device: &mut SerialDevice<T>,
    batch: usize,
    batches: usize,
    seed: u64,
) -> Result<LinkBenchReport, Error> {
    let info = device.info();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let values: Vec<u8> = (0..batch * info.input_dim)
        .map(|_| rng.random_range(0..2u8))
        .collect();
    let mut packed = Vec::new();
    pack_bits(&values, batch, info.input_dim, &mut packed)?;
    let frames = PackedFrames::new(&packed, batch, info.input_dim)?;
    let mut out = vec![0.0f32; batch * info.output_dim];
    let before = device.link_stats();
    let start = Instant::now();
    for _ in 0..batches {
        device.transform(&frames, &mut out)?;
    }
    let seconds = start.elapsed().as_secs_f64();
    let s = device.link_stats().since(&before);
    let vectors = (batch * batches) as u64;
    Ok(LinkBenchReport {
        vectors,
        seconds,
        vectors_per_s: vectors as f64 / seconds.max(1e-12),
        efficiency: s.efficiency(),
        payload_bytes: s.payload_bytes_sent + s.payload_bytes_received,
        wire_bytes: s.wire_bytes_sent + s.wire_bytes_received,
        retransmissions: s.retransmissions,
        chunk_frames: device.chunk_frames(),
    })
}

/// [`bench_link`] over the in-memory link against an emulated [`ToyDevice`] (8-bit) of
/// `input_dim → output_dim`: the protocol's own cost, with no serial port and no simulator.
pub fn bench_in_memory(
    input_dim: usize,
    output_dim: usize,
    batch: usize,
    batches: usize,
) -> Result<LinkBenchReport, Error> {
    let (host, mut dev_end) = memory_link();
    let server = std::thread::spawn(move || {
        let factory =
            |s: &crate::DeviceSettings| Ok(ToyDevice::new(s.input_dim, s.output_dim, 1, Some(8)));
        let mut emulator = Emulator::new(factory, EmulatorOptions::default());
        emulator.serve(&mut dev_end, &AtomicBool::new(false))
    });
    let options = SerialOptions {
        dims: Some((input_dim, output_dim)),
        name: "memory link".into(),
        ..SerialOptions::default()
    };
    let result = SerialDevice::new(host, options)
        .and_then(|mut dev| bench_link(&mut dev, batch, batches, 7));
    // The host end is dropped by now: the emulator sees end of stream and returns.
    let _ = server.join();
    result
}
