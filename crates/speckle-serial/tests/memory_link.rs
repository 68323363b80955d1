//! Host and emulator over the in-memory link: bit-identical results, fault recovery, and clear
//! errors for what cannot be recovered.
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use speckle_hal::{ErrorKind, OpticalDevice, PackedFrames};
use speckle_protocol::{
    decode_frame, encode_frame, encode_raw_frame, Capabilities, Deframer, ErrorCode, ErrorReport,
    Message, MessageType, ResetNotice, TransformResponse,
};
use speckle_serial::*;
use speckle_testkit::random_frames;

const SEED: u64 = 42;

fn toy_factory(
    bits: Option<u8>,
) -> impl FnMut(&DeviceSettings) -> Result<ToyDevice, speckle_hal::Error> {
    move |s: &DeviceSettings| Ok(ToyDevice::new(s.input_dim, s.output_dim, SEED, bits))
}

struct Served<T> {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<EmulatorStats>>,
    _marker: std::marker::PhantomData<T>,
}

impl<T> Served<T> {
    fn finish(mut self) -> EmulatorStats {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().unwrap().join().unwrap()
    }
}

fn serve_on<T: Transport + Send + 'static>(
    mut port: T,
    bits: Option<u8>,
    options: EmulatorOptions,
) -> Served<T> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let handle = std::thread::spawn(move || {
        let mut emulator = Emulator::new(toy_factory(bits), options);
        let _ = emulator.serve(&mut port, &flag);
        emulator.stats()
    });
    Served {
        stop,
        handle: Some(handle),
        _marker: std::marker::PhantomData,
    }
}

fn serve(bits: Option<u8>, options: EmulatorOptions) -> (MemoryPort, Served<MemoryPort>) {
    let (host, dev) = memory_link();
    (host, serve_on(dev, bits, options))
}

fn local_run(
    dims: (usize, usize),
    bits: Option<u8>,
    batches: &[Vec<u8>],
    sizes: &[usize],
) -> Vec<f32> {
    let mut dev = ToyDevice::new(dims.0, dims.1, SEED, bits);
    let mut all = Vec::new();
    for (packed, &n) in batches.iter().zip(sizes) {
        let mut out = vec![0.0; n * dims.1];
        dev.transform(&PackedFrames::new(packed, n, dims.0).unwrap(), &mut out)
            .unwrap();
        all.extend(out);
    }
    all
}

fn remote_run<T: Transport>(
    dev: &mut SerialDevice<T>,
    batches: &[Vec<u8>],
    sizes: &[usize],
) -> Vec<f32> {
    let (i, o) = (dev.info().input_dim, dev.info().output_dim);
    let mut all = Vec::new();
    for (packed, &n) in batches.iter().zip(sizes) {
        let mut out = vec![0.0; n * o];
        dev.transform(&PackedFrames::new(packed, n, i).unwrap(), &mut out)
            .unwrap();
        all.extend(out);
    }
    all
}

fn fast_options(dims: (usize, usize)) -> SerialOptions {
    SerialOptions {
        dims: Some(dims),
        response_timeout: Duration::from_millis(40),
        per_frame_allowance: Duration::ZERO,
        max_retries: 12,
        ..SerialOptions::default()
    }
}

#[test]
fn results_are_bit_identical_to_the_local_device_across_depths_and_chunking() {
    for (bits, dims, max_payload) in [
        (Some(8), (37, 11), 32 << 10),
        (Some(12), (64, 20), 200), // tiny payload: a batch is streamed in many requests
        (None, (9, 5), 32 << 10),
    ] {
        let options = EmulatorOptions {
            max_payload,
            ..EmulatorOptions::default()
        };
        let (host, served) = serve(bits, options);
        let mut dev = SerialDevice::new(host, fast_options(dims)).unwrap();
        assert_eq!(dev.info().bit_depth, bits);
        if max_payload == 200 {
            assert!(dev.chunk_frames() < 10, "chunk {}", dev.chunk_frames());
        }
        let sizes = [1, 17, 64, 3];
        let batches: Vec<_> = sizes
            .iter()
            .enumerate()
            .map(|(k, &n)| random_frames(n, dims.0, k as u64))
            .collect();
        let got = remote_run(&mut dev, &batches, &sizes);
        assert_eq!(
            got,
            local_run(dims, bits, &batches, &sizes),
            "{bits:?} {dims:?}"
        );
        assert_eq!(dev.counters().frames, 85);
        // A clean link: nothing damaged, nothing late (the emulator's power-on notice may
        // make the host repeat its Hello once, which is harmless).
        let link = dev.link_stats();
        assert_eq!((link.damaged_frames, link.timeouts), (0, 0), "{link:?}");
        let status = dev.status().unwrap();
        assert_eq!((status.state, status.frames_shown), (1, 85));
        drop(dev);
        served.finish();
    }
}

#[test]
fn garbage_on_the_line_is_skipped() {
    let (host, mut dev_end) = memory_link();
    // Noise before the emulator starts, including a partial frame and stray delimiters.
    dev_end
        .write_all(&[0x13, 0x37, 0x00, 0xFF, 0xFE, 0x00, 0x00, 0x42])
        .unwrap();
    let served = serve_on(dev_end, Some(8), EmulatorOptions::default());
    let mut dev = SerialDevice::new(host, fast_options((8, 3))).unwrap();
    let packed = random_frames(5, 8, 1);
    let got = remote_run(&mut dev, std::slice::from_ref(&packed), &[5]);
    assert_eq!(got, local_run((8, 3), Some(8), &[packed], &[5]));
    drop(dev);
    served.finish();
}

/// ≥ 10,000 frames on the link with 1 % of frames dropped, flipped, truncated, delayed and
/// device resets: zero wrong results, and it finishes (bounded time per request).
#[test]
fn ten_thousand_frames_with_one_percent_of_each_fault_give_exact_results() {
    let dims = (24, 6);
    let faults = FaultConfig {
        drop: 0.01,
        flip: 0.01,
        truncate: 0.01,
        delay: 0.01,
        reset: 0.01,
        delay_duration: Duration::from_millis(20),
    };
    let options = EmulatorOptions {
        faults,
        fault_seed: 7,
        ..EmulatorOptions::default()
    };
    let (host, served) = serve(Some(8), options);
    let mut host_options = fast_options(dims);
    host_options.response_timeout = Duration::from_millis(12);
    // Generous, still bounded: a loaded CI machine may miss a few 12 ms windows in a row.
    host_options.max_retries = 30;
    let mut dev = SerialDevice::new(host, host_options).unwrap();
    // Batches of 1 and 2 frames: one request and one response per call, so ~5,200 calls put
    // more than 10,000 frames on the wire.
    let sizes: Vec<usize> = (0..5200).map(|k| 1 + k % 2).collect();
    let batches: Vec<_> = sizes
        .iter()
        .enumerate()
        .map(|(k, &n)| random_frames(n, dims.0, k as u64))
        .collect();
    let start = Instant::now();
    let got = remote_run(&mut dev, &batches, &sizes);
    let elapsed = start.elapsed();
    let expected = local_run(dims, Some(8), &batches, &sizes);
    assert_eq!(got.len(), expected.len());
    let wrong = got.iter().zip(&expected).filter(|(a, b)| a != b).count();
    assert_eq!(wrong, 0);
    let link = dev.link_stats();
    drop(dev);
    let stats = served.finish();
    let f = stats.faults;
    eprintln!("{elapsed:?} {f:?} {link:?}");
    assert!(f.frames >= 10_000, "{f:?}");
    // Each kind really happened, about 1 % of frames (reset is drawn on received frames only).
    for n in [f.drop, f.flip, f.truncate, f.delay] {
        assert!(n as f64 > 0.005 * f.frames as f64, "{f:?}");
    }
    assert!(f.reset > 20, "{f:?}");
    assert!(
        link.retransmissions > 0 && link.resyncs > 0 && link.stale_frames > 0,
        "{link:?}"
    );
}

#[test]
fn a_disconnect_in_the_middle_of_a_batch_is_a_link_error() {
    let (host, dev_end) = memory_link();
    let options = EmulatorOptions {
        max_payload: 256,
        ..EmulatorOptions::default()
    };
    // Enough for the power-on notice, the handshake and a few responses, not for the batch.
    let served = serve_on(UnplugAfter::new(dev_end, 600), Some(8), options);
    let mut dev = SerialDevice::new(host, fast_options((16, 30))).unwrap();
    let packed = random_frames(40, 16, 3);
    let mut out = vec![0.0; 40 * 30];
    let start = Instant::now();
    let err = dev
        .transform(&PackedFrames::new(&packed, 40, 16).unwrap(), &mut out)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Link, "{err}");
    assert!(err.to_string().contains("closed"), "{err}");
    assert!(start.elapsed() < Duration::from_secs(5));
    served.finish();
}

#[test]
fn a_device_of_another_protocol_version_is_a_protocol_error() {
    let options = EmulatorOptions {
        protocol_version: 2,
        ..EmulatorOptions::default()
    };
    let (host, served) = serve(Some(8), options);
    let err = SerialDevice::new(host, fast_options((8, 8))).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Protocol, "{err}");
    assert!(err.to_string().contains("protocol version 2"), "{err}");
    served.finish();
}

#[test]
fn dimensions_that_do_not_fit_are_a_dimension_mismatch() {
    let options = EmulatorOptions {
        max_dims: (100, 50),
        ..EmulatorOptions::default()
    };
    let (host, served) = serve(Some(8), options);
    let err = SerialDevice::new(host, fast_options((200, 10)))
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::DimensionMismatch, "{err}");
    assert!(err.to_string().contains("at most 100"), "{err}");
    served.finish();

    // A frame whose response cannot fit in one payload.
    let options = EmulatorOptions {
        max_payload: 64,
        ..EmulatorOptions::default()
    };
    let (host, served) = serve(Some(8), options);
    let err = SerialDevice::new(host, fast_options((8, 1000)))
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::DimensionMismatch, "{err}");
    served.finish();

    // Frames of the wrong width never reach the link.
    let (host, served) = serve(Some(8), EmulatorOptions::default());
    let mut dev = SerialDevice::new(host, fast_options((8, 4))).unwrap();
    let err = dev
        .transform(&PackedFrames::new(&[0, 0], 1, 16).unwrap(), &mut [0.0; 4])
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DimensionMismatch);
    drop(dev);
    served.finish();
}

#[test]
fn a_silent_device_is_a_timeout_within_bounded_time() {
    let (host, _silent_end) = memory_link();
    let start = Instant::now();
    let mut options = fast_options((8, 8));
    options.response_timeout = Duration::from_millis(20);
    options.max_retries = 3;
    let err = SerialDevice::new(host, options).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(err.to_string().contains("4 attempts"), "{err}");
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[test]
fn frequent_device_resets_are_recovered_with_exact_results() {
    let faults = FaultConfig {
        reset: 0.2,
        ..FaultConfig::none()
    };
    let options = EmulatorOptions {
        faults,
        fault_seed: 3,
        ..EmulatorOptions::default()
    };
    let (host, served) = serve(Some(8), options);
    let mut dev = SerialDevice::new(host, fast_options((10, 7))).unwrap();
    let (sizes, batches) = forty_batches(10);
    let got = remote_run(&mut dev, &batches, &sizes);
    assert_eq!(got, local_run((10, 7), Some(8), &batches, &sizes));
    assert!(dev.link_stats().resyncs > 0, "{:?}", dev.link_stats());
    drop(dev);
    assert!(served.finish().faults.reset > 0);
}

#[test]
fn protocol_efficiency_is_above_90_percent_for_batches_of_256() {
    for (i, o) in [(64, 64), (128, 128), (1024, 32), (16, 512)] {
        let report = bench_in_memory(i, o, 256, 2).unwrap();
        assert_eq!(report.vectors, 512);
        assert_eq!(report.retransmissions, 0);
        assert!(report.efficiency >= 0.9, "{i} -> {o}: {report:?}");
    }
}

/// A device that freezes for longer than the host's request bound costs that bound, with an
/// error that states it; once it thaws, the same host gets exact results again (the answers to
/// the abandoned request are dropped as stale).
#[test]
fn a_stalled_device_costs_the_request_bound_and_the_link_recovers() {
    let (host, dev_end) = memory_link();
    // The power-on notice, Hello and Configure pass; the first transform request stalls it.
    let served = serve_on(
        StallAfter::new(dev_end, 100, Duration::from_millis(800)),
        Some(8),
        EmulatorOptions::default(),
    );
    let mut options = fast_options((16, 5));
    options.response_timeout = Duration::from_millis(50);
    options.max_retries = 100;
    options.request_timeout = Duration::from_millis(300);
    let mut dev = SerialDevice::new(host, options).unwrap();
    let packed = random_frames(4, 16, 1);
    let mut out = vec![0.0; 4 * 5];
    let frames = PackedFrames::new(&packed, 4, 16).unwrap();
    let start = Instant::now();
    let err = dev.transform(&frames, &mut out).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(
        err.to_string()
            .contains("did not answer within 0.3 s (request of 4 frames)"),
        "{err}"
    );
    assert!(
        start.elapsed() < Duration::from_millis(700),
        "{:?}",
        start.elapsed()
    );
    std::thread::sleep(Duration::from_millis(900));
    dev.seek_frame(0);
    dev.transform(&frames, &mut out).unwrap();
    assert_eq!(out, local_run((16, 5), Some(8), &[packed], &[4]));
    drop(dev);
    served.finish();
}

/// A device scripted by `answer`: for every intact frame the host sends, the wire bytes to send
/// back. Ends when the host closes the link.
fn scripted<F>(mut answer: F) -> (MemoryPort, JoinHandle<()>)
where
    F: FnMut(u32, Message) -> Vec<u8> + Send + 'static,
{
    use std::io::Read;
    let (host, mut dev) = memory_link();
    let handle = std::thread::spawn(move || {
        let mut deframer = Deframer::new(1 << 20);
        let mut buf = vec![0; 4096];
        loop {
            let n = match dev.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => n,
                Err(_) => continue,
            };
            let mut input = &buf[..n];
            while let Some(found) = deframer.next_frame(&mut input) {
                let Ok(frame) = found
                    .map_err(|_| ())
                    .and_then(|b| decode_frame(b).map_err(|_| ()))
                else {
                    continue;
                };
                if dev.write_all(&answer(frame.seq, frame.message)).is_err() {
                    return;
                }
            }
        }
    });
    (host, handle)
}

fn caps(dims: (u32, u32)) -> Capabilities {
    Capabilities {
        input_dim: dims.0,
        output_dim: dims.1,
        max_input_dim: 64,
        max_output_dim: 64,
        max_batch: 16,
        max_payload: 4096,
        frame_time_ns: 500_000,
        exposure_ns: 400_000,
        boot_count: 1,
        bit_depth: 8,
        firmware_version: [0, 1, 0],
        description: "scripted".into(),
    }
}

fn wire(seq: u32, message: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(seq, message, &mut out);
    out
}

/// An intact frame that no host can use: a CAPABILITIES whose bit depth is 17. The host tries
/// again like after damage, then gives up with a protocol error that names the problem.
#[test]
fn an_intact_capabilities_with_bit_depth_17_is_named_after_the_retries() {
    let hellos = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = hellos.clone();
    let (host, device) = scripted(move |seq, _| {
        count.fetch_add(1, Ordering::Relaxed);
        let mut payload = Vec::new();
        Message::Capabilities(caps((8, 4))).encode_payload(&mut payload);
        payload[36] = 17; // bit_depth
        let mut out = Vec::new();
        encode_raw_frame(1, MessageType::Capabilities as u8, seq, &payload, &mut out);
        out
    });
    let mut options = fast_options((8, 4));
    options.max_retries = 3;
    let err = SerialDevice::new(host, options).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Protocol, "{err}");
    let msg = err.to_string();
    assert!(msg.contains("after 4 attempts"), "{msg}");
    assert!(msg.contains("bit depth above 16"), "{msg}");
    assert!(!msg.contains("damaged"), "{msg}");
    assert_eq!(hellos.load(Ordering::Relaxed), 4);
    device.join().unwrap();
}

/// A TRANSFORM_RESPONSE one value short, with a correct CRC: named as such. An unusable frame
/// with another seq is stale and ignored.
#[test]
fn an_intact_but_truncated_transform_response_is_named() {
    let (host, device) = scripted(move |seq, message| match message {
        Message::Hello(_) | Message::Configure(_) => {
            wire(seq, &Message::Capabilities(caps((8, 4))))
        }
        Message::TransformRequest(r) => {
            let mut payload = r.first_frame.to_le_bytes().to_vec();
            payload.extend_from_slice(&r.frame_count.to_le_bytes());
            payload.extend_from_slice(&4u32.to_le_bytes());
            payload.extend_from_slice(&[8, 0, 0, 0]);
            payload.resize(payload.len() + 4 * r.frame_count as usize - 1, 7);
            let mut out = Vec::new();
            // A stale unusable frame first, then the unusable answer with the right seq.
            encode_raw_frame(1, 0x7E, seq.wrapping_sub(1), &[], &mut out);
            encode_raw_frame(
                1,
                MessageType::TransformResponse as u8,
                seq,
                &payload,
                &mut out,
            );
            out
        }
        other => panic!("unexpected {other:?}"),
    });
    let mut dev = SerialDevice::new(host, fast_options((8, 4))).unwrap();
    let err = dev
        .transform(&PackedFrames::new(&[1, 2], 2, 8).unwrap(), &mut [0.0; 8])
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Protocol, "{err}");
    let msg = err.to_string();
    assert!(msg.contains("value data length disagrees"), "{msg}");
    assert!(dev.link_stats().stale_frames > 0, "{:?}", dev.link_stats());
    drop(dev);
    device.join().unwrap();
}

/// PROTOCOL.md 6.4: `first_frame` counts the frames of the requests that succeeded since the
/// host opened the link, across re-handshakes; a failed request's frames are not counted.
#[test]
fn first_frame_skips_failed_requests_and_survives_re_handshakes() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let mut requests = 0;
    let (host, device) = scripted(move |seq, message| match message {
        Message::Hello(_) | Message::Configure(_) => {
            wire(seq, &Message::Capabilities(caps((8, 2))))
        }
        Message::TransformRequest(r) => {
            log.lock().unwrap().push(r.first_frame);
            requests += 1;
            match requests {
                // The first request fails on the device.
                1 => wire(
                    seq,
                    &Message::Error(ErrorReport {
                        code: ErrorCode::DEVICE_FAULT,
                        detail: 0,
                        message: "camera timeout".into(),
                    }),
                ),
                // The device restarts instead of answering the third.
                3 => wire(
                    0,
                    &Message::ResetNotice(ResetNotice {
                        boot_count: 2,
                        reason: 1,
                    }),
                ),
                _ => wire(
                    seq,
                    &Message::TransformResponse(TransformResponse {
                        first_frame: r.first_frame,
                        frame_count: r.frame_count,
                        output_dim: 2,
                        bit_depth: 8,
                        values: vec![1; 2 * r.frame_count as usize],
                    }),
                ),
            }
        }
        other => panic!("unexpected {other:?}"),
    });
    let mut dev = SerialDevice::new(host, fast_options((8, 2))).unwrap();
    let frames = PackedFrames::new(&[1, 2, 3], 3, 8).unwrap();
    let mut out = [0.0; 6];
    let err = dev.transform(&frames, &mut out).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Device, "{err}");
    dev.transform(&frames, &mut out).unwrap();
    dev.transform(&frames, &mut out).unwrap();
    dev.transform(&frames, &mut out).unwrap();
    assert_eq!(*seen.lock().unwrap(), vec![0, 0, 3, 3, 6]);
    assert_eq!(dev.link_stats().resyncs, 1);
    drop(dev);
    device.join().unwrap();
}

/// A restarted device is back at its power-on camera settings: the host sends its own again
/// with the re-configuration, so they hold for the whole run.
#[test]
fn the_hosts_camera_settings_are_sent_again_after_restarts() {
    let faults = FaultConfig {
        reset: 0.3,
        ..FaultConfig::none()
    };
    let (host, dev_end) = memory_link();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let server = std::thread::spawn(move || {
        let factory = |s: &DeviceSettings| {
            Ok(ToyDevice::new(s.input_dim, s.output_dim, SEED, Some(8))
                .with_exposure_ns(s.exposure_ns))
        };
        let options = EmulatorOptions {
            faults,
            fault_seed: 5,
            ..EmulatorOptions::default()
        };
        let mut emulator = Emulator::new(factory, options);
        let mut port = dev_end;
        let _ = emulator.serve(&mut port, &flag);
        emulator.stats()
    });
    let mut options = fast_options((12, 3));
    options.exposure_ns = 250_000;
    options.max_resyncs = 50;
    let mut dev = SerialDevice::new(host, options).unwrap();
    assert_eq!(dev.info().exposure_us, 250.0);
    let packed = random_frames(2, 12, 4);
    for _ in 0..30 {
        dev.transform(&PackedFrames::new(&packed, 2, 12).unwrap(), &mut [0.0; 6])
            .unwrap();
        assert_eq!(dev.info().exposure_us, 250.0);
    }
    assert!(dev.link_stats().resyncs > 0, "{:?}", dev.link_stats());
    drop(dev);
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
}

/// `rows` frames of `width` values, each cut to its first `pixels` values and zero past them:
/// what a readout window of `pixels` reads.
fn windowed(values: &[f32], width: usize, pixels: usize) -> Vec<f32> {
    let mut out = values.to_vec();
    for row in out.chunks_exact_mut(width) {
        row[pixels..].fill(0.0);
    }
    out
}

/// A readout window configures a smaller output region: the answers carry only its values, the
/// pixels inside read what they read before, and the emulator keeps its device (no factory
/// call) for the window and for lifting it.
#[test]
fn a_readout_window_sends_only_its_pixels_and_keeps_the_device() {
    let builds = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = builds.clone();
    let (host, dev_end) = memory_link();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let server = std::thread::spawn(move || {
        let factory = move |s: &DeviceSettings| {
            count.fetch_add(1, Ordering::Relaxed);
            Ok(ToyDevice::new(s.input_dim, s.output_dim, SEED, Some(8)))
        };
        let mut emulator = Emulator::new(factory, EmulatorOptions::default());
        let mut port = dev_end;
        let _ = emulator.serve(&mut port, &flag);
    });
    let (i, o, p) = (37, 40, 13);
    let mut dev = SerialDevice::new(host, fast_options((i, o))).unwrap();
    let sizes = [25, 3];
    let batches: Vec<_> = sizes
        .iter()
        .enumerate()
        .map(|(k, &n)| random_frames(n, i, k as u64))
        .collect();
    let whole = remote_run(&mut dev, &batches, &sizes);
    assert_eq!(whole, local_run((i, o), Some(8), &batches, &sizes));
    let built = builds.load(Ordering::Relaxed);

    dev.set_readout_window(Some(p)).unwrap();
    assert_eq!(dev.info().output_dim, o, "the output keeps its layout");
    let before = dev.link_stats();
    dev.seek_frame(0);
    let inside = remote_run(&mut dev, &batches, &sizes);
    assert_eq!(inside, windowed(&whole, o, p));
    let received = dev.link_stats().since(&before).payload_bytes_received;
    assert_eq!(received, (28 * p) as u64, "8-bit values of the window only");

    // The whole region again (`Some(o)` means the same as `None`).
    dev.set_readout_window(Some(o)).unwrap();
    dev.seek_frame(0);
    assert_eq!(remote_run(&mut dev, &batches, &sizes), whole);
    dev.set_readout_window(Some(p)).unwrap();
    dev.set_readout_window(None).unwrap();
    dev.seek_frame(0);
    assert_eq!(remote_run(&mut dev, &batches, &sizes), whole);
    assert_eq!(
        builds.load(Ordering::Relaxed),
        built,
        "a window rebuilt the device"
    );

    let before = dev.link_stats();
    for bad in [0, o + 1] {
        let err = dev.set_readout_window(Some(bad)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
        assert!(err.to_string().contains(&format!("{bad} pixels")), "{err}");
    }
    assert_eq!(dev.link_stats().wire_bytes_sent, before.wire_bytes_sent);
    drop(dev);
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
}

/// A device that restarts loses its configuration: the host configures its region and then
/// its window again, so every answer is still the window of the local device's frames.
#[test]
fn a_readout_window_survives_device_restarts() {
    let options = EmulatorOptions {
        faults: FaultConfig {
            reset: 0.2,
            ..FaultConfig::none()
        },
        fault_seed: 9,
        ..EmulatorOptions::default()
    };
    let (host, served) = serve(Some(8), options);
    let mut options = fast_options((10, 7));
    options.max_resyncs = 50;
    let mut dev = SerialDevice::new(host, options).unwrap();
    dev.set_readout_window(Some(4)).unwrap();
    let (sizes, batches) = forty_batches(10);
    let got = remote_run(&mut dev, &batches, &sizes);
    let want = local_run((10, 7), Some(8), &batches, &sizes);
    assert_eq!(got, windowed(&want, 7, 4));
    assert!(dev.link_stats().resyncs > 0, "{:?}", dev.link_stats());
    drop(dev);
    assert!(served.finish().faults.reset > 0);
}

/// A device that refuses a smaller output region: the window is `Unsupported`, named, and the
/// host goes on reading whole frames.
#[test]
fn a_device_without_output_regions_keeps_whole_frames() {
    let (host, device) = scripted(move |seq, message| match message {
        Message::Hello(_) => wire(seq, &Message::Capabilities(caps((8, 4)))),
        Message::Configure(c) if c.output_dim == 4 => {
            wire(seq, &Message::Capabilities(caps((8, 4))))
        }
        Message::Configure(_) => wire(
            seq,
            &Message::Error(ErrorReport {
                code: ErrorCode::UNSUPPORTED,
                detail: 0,
                message: "fixed output region".into(),
            }),
        ),
        Message::TransformRequest(r) => wire(
            seq,
            &Message::TransformResponse(TransformResponse {
                first_frame: r.first_frame,
                frame_count: r.frame_count,
                output_dim: 4,
                bit_depth: 8,
                values: (1..=4 * r.frame_count as u8).collect(),
            }),
        ),
        _ => Vec::new(),
    });
    let mut dev = SerialDevice::new(host, fast_options((8, 4))).unwrap();
    let err = dev.set_readout_window(Some(2)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    let msg = err.to_string();
    assert!(msg.contains("no readout window of 2 pixels"), "{msg}");
    assert!(msg.contains("fixed output region"), "{msg}");
    let mut out = [0.0; 8];
    dev.transform(&PackedFrames::new(&[1, 2], 2, 8).unwrap(), &mut out)
        .unwrap();
    assert_eq!(out, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
    drop(dev);
    device.join().unwrap();
}

/// 40 batches of 1 to 5 random frames of `width` features: their sizes and packed bits.
fn forty_batches(width: usize) -> (Vec<usize>, Vec<Vec<u8>>) {
    let sizes: Vec<usize> = (0..40).map(|k| 1 + k % 5).collect();
    let batches = sizes
        .iter()
        .enumerate()
        .map(|(k, &n)| random_frames(n, width, k as u64))
        .collect();
    (sizes, batches)
}
