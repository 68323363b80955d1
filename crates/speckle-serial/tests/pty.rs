//! Host and emulator over a real pseudo-terminal pair, including the cases where either side
//! stops (neither may hang: a device that freezes in the middle of a large request costs the
//! host at most its request bound, and an emulator whose host stopped reading still stops when
//! asked). `TTYPort::pair` is not thread-safe, so every case runs in sequence inside one test.
#![cfg(unix)]

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use speckle_hal::{ErrorKind, OpticalDevice, PackedFrames};
use speckle_protocol::{encode_frame, Hello, Message};
use speckle_serial::pty::PtyLink;
use speckle_serial::*;
use speckle_sim::{DeviceConfig, SimulatedOpu};
use speckle_testkit::random_frames;

fn run_batches(dev: &mut dyn OpticalDevice, sizes: &[usize], seed: u64) -> Vec<f32> {
    let info = dev.info();
    let mut all = Vec::new();
    for (k, &n) in sizes.iter().enumerate() {
        let packed = random_frames(n, info.input_dim, seed + k as u64);
        let mut out = vec![0.0; n * info.output_dim];
        dev.transform(
            &PackedFrames::new(&packed, n, info.input_dim).unwrap(),
            &mut out,
        )
        .unwrap();
        all.extend(out);
    }
    all
}

struct Server {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<EmulatorStats>,
}

impl Server {
    fn finish(self) -> EmulatorStats {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap()
    }
}

/// Serves `make()`'s emulator on a new pseudo-terminal linked at `link`; `cut` makes the
/// device vanish after that many bytes.
fn serve<D, F>(link: &Path, emulator: Emulator<D, F>, cut: Option<usize>) -> Server
where
    D: OpticalDevice + 'static,
    F: FnMut(&DeviceSettings) -> Result<D, speckle_hal::Error> + Send + 'static,
    Emulator<D, F>: Send,
{
    let mut pty = PtyLink::create(link).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let handle = std::thread::spawn(move || {
        let mut emulator = emulator;
        match cut {
            None => emulator.serve(pty.port(), &flag).unwrap(),
            Some(budget) => emulator
                .serve(&mut UnplugAfter::new(pty.port(), budget), &flag)
                .unwrap(),
        }
        emulator.stats()
        // `pty` drops here: the link disappears and the host sees a hang-up.
    });
    Server { stop, handle }
}

fn toy_emulator(
    options: EmulatorOptions,
) -> Emulator<ToyDevice, impl FnMut(&DeviceSettings) -> Result<ToyDevice, speckle_hal::Error> + Send>
{
    Emulator::new(
        |s: &DeviceSettings| Ok(ToyDevice::new(s.input_dim, s.output_dim, 11, Some(8))),
        options,
    )
}

#[test]
fn pseudo_terminal_cases_in_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("opu");
    let path = link.to_str().unwrap();

    // 1. The simulated OPU behind the emulator equals the in-process one, bit for bit.
    let config = DeviceConfig::preset("lighton").unwrap();
    let server = serve(
        &link,
        Emulator::new(
            {
                let config = config.clone();
                move |s: &DeviceSettings| SimulatedOpu::new(&config, s.input_dim, s.output_dim, 5)
            },
            EmulatorOptions {
                max_dims: (1 << 20, 1 << 21),
                ..EmulatorOptions::default()
            },
        ),
        None,
    );
    assert!(std::fs::read_link(&link).unwrap().starts_with("/dev/pts"));
    let mut remote = SerialDevice::open(path, 115_200, Some((48, 40))).unwrap();
    let mut local = SimulatedOpu::new(&config, 48, 40, 5).unwrap();
    let sizes = [1, 7, 1000, 2];
    assert_eq!(
        run_batches(&mut remote, &sizes, 1),
        run_batches(&mut local, &sizes, 1)
    );
    assert_eq!(remote.info().bit_depth, local.info().bit_depth);
    assert_eq!(remote.info().frame_time_us, local.info().frame_time_us);
    assert!(
        remote.chunk_frames() < 1000,
        "a batch of 1000 is streamed in chunks"
    );
    drop(remote);
    // A second host connection to the same emulator starts again at frame 0, like a fresh device.
    let mut remote = SerialDevice::open(path, 115_200, Some((48, 40))).unwrap();
    let mut local = SimulatedOpu::new(&config, 48, 40, 5).unwrap();
    assert_eq!(
        run_batches(&mut remote, &[3], 9),
        run_batches(&mut local, &[3], 9)
    );
    drop(remote);
    server.finish();
    assert!(
        !link.exists(),
        "the link is removed when the emulator stops"
    );

    // 2. Faults on a real pseudo-terminal: exact results.
    let faults = FaultConfig {
        reset: 0.01,
        delay_duration: Duration::from_millis(20),
        ..FaultConfig::uniform(0.01)
    };
    let server = serve(
        &link,
        toy_emulator(EmulatorOptions {
            faults,
            fault_seed: 2,
            ..EmulatorOptions::default()
        }),
        None,
    );
    let options = SerialOptions {
        dims: Some((20, 9)),
        response_timeout: Duration::from_millis(15),
        max_retries: 30,
        name: path.into(),
        ..SerialOptions::default()
    };
    let mut remote = SerialDevice::open_with(path, 115_200, options).unwrap();
    let sizes: Vec<usize> = (0..600).map(|k| 1 + k % 2).collect();
    let got = run_batches(&mut remote, &sizes, 100);
    let mut local = ToyDevice::new(20, 9, 11, Some(8));
    assert_eq!(got, run_batches(&mut local, &sizes, 100));
    drop(remote);
    let stats = server.finish();
    assert!(stats.faults.frames >= 1000, "{stats:?}");

    // 3. The device vanishes in the middle of a batch: a link error, quickly.
    let server = serve(
        &link,
        toy_emulator(EmulatorOptions {
            max_payload: 512,
            ..EmulatorOptions::default()
        }),
        Some(2000),
    );
    let mut remote = SerialDevice::open(path, 115_200, Some((16, 64))).unwrap();
    let packed = random_frames(200, 16, 3);
    let mut out = vec![0.0; 200 * 64];
    let start = Instant::now();
    let err = remote
        .transform(&PackedFrames::new(&packed, 200, 16).unwrap(), &mut out)
        .unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Link), "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    server.finish();

    // 4. Clear errors for what cannot work.
    let err = SerialDevice::open(path, 115_200, None).err().unwrap();
    assert!(err.to_string().contains("cannot open serial port"), "{err}");
    std::fs::write(&link, b"not a link").unwrap();
    let err = PtyLink::create(&link).err().unwrap();
    assert!(err.to_string().contains("already exists"), "{err}");
    std::fs::remove_file(&link).unwrap();
    let path = path.to_string();

    // A live link is not taken over (nor removed by the refused one); a dangling one, left by
    // a killed emulator, is replaced.
    let first = PtyLink::create(&link).unwrap();
    let err = PtyLink::create(&link).err().unwrap();
    assert!(err.to_string().contains("is in use"), "{err}");
    assert_eq!(std::fs::read_link(&link).unwrap(), first.device_path());
    drop(first);
    assert!(std::fs::symlink_metadata(&link).is_err(), "removed on drop");
    std::os::unix::fs::symlink("/dev/pts/999999", &link).unwrap();
    let second = PtyLink::create(&link).unwrap();
    assert_eq!(std::fs::read_link(&link).unwrap(), second.device_path());
    drop(second);

    // 5. The device freezes for 8 s after the first bytes of a 261 KB request: the host gives
    //    up at its 1.5 s request bound and says so, instead of blocking in a write until the
    //    device reads again.
    let mut pty = PtyLink::create(&link).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let server = std::thread::spawn(move || {
        let mut emulator = toy_emulator(EmulatorOptions {
            max_payload: 256 << 10,
            ..EmulatorOptions::default()
        });
        let mut port = StallAfter::new(pty.port(), 300, Duration::from_secs(8));
        emulator.serve(&mut port, &flag).unwrap();
    });
    let options = SerialOptions {
        dims: Some((8192, 8)),
        response_timeout: Duration::from_millis(300),
        per_frame_allowance: Duration::ZERO,
        request_timeout: Duration::from_millis(1500),
        name: path.clone(),
        ..SerialOptions::default()
    };
    let mut host = SerialDevice::open_with(&path, 115_200, options).unwrap();
    assert_eq!(
        host.chunk_frames(),
        255,
        "one request larger than the link's buffers"
    );
    let packed = vec![0x5A; 255 * 1024];
    let mut out = vec![0.0; 255 * 8];
    let start = Instant::now();
    let err = host
        .transform(&PackedFrames::new(&packed, 255, 8192).unwrap(), &mut out)
        .unwrap_err();
    let elapsed = start.elapsed();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("did not answer within 1.5 s (request of 255 frames)"),
        "{msg}"
    );
    assert!(msg.contains("stopped reading"), "{msg}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}: {msg}");
    assert!(host.link_stats().timeouts > 0);
    drop(host);
    // The frozen emulator still stops when asked.
    let start = Instant::now();
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );

    // 6. A host that sends requests and never reads: the emulator's answers fill the link, and
    //    it still stops within its poll interval when asked, dropping the answers it cannot
    //    write instead of blocking forever.
    let mut pty = PtyLink::create(&link).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        let mut emulator = toy_emulator(EmulatorOptions {
            write_timeout: Duration::from_millis(200),
            ..EmulatorOptions::default()
        });
        let result = emulator.serve(pty.port(), &flag);
        done.send((result.is_ok(), emulator.stats())).unwrap();
    });
    let mut wire = Vec::new();
    let hello = Hello {
        min_version: 1,
        max_version: 1,
        max_payload: 1 << 20,
    };
    encode_frame(1, &Message::Hello(hello), &mut wire);
    for seq in 2..5000 {
        encode_frame(seq, &Message::GetStatus, &mut wire);
    }
    let mut deaf_host = serialport::new(&path, 115_200).open_native().unwrap();
    // The writer may block once the emulator is stuck too: it is left behind, and fails when
    // the link goes away.
    std::thread::spawn(move || {
        let _ = deaf_host.write_all(&wire);
        std::thread::sleep(Duration::from_secs(30));
    });
    std::thread::sleep(Duration::from_millis(1500));
    let start = Instant::now();
    stop.store(true, Ordering::Relaxed);
    let (ok, stats) = finished
        .recv_timeout(Duration::from_secs(5))
        .expect("the emulator stops although its host does not read");
    assert!(ok);
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    assert!(stats.frames_unsent > 0, "{stats:?}");
}
