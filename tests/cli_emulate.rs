//! `speckle emulate` end to end over a real pseudo-terminal: the serial backend gives results
//! bit-identical to the in-process simulator (raw transform, with and without link faults, and a
//! short DFA training run), `bench` measures for `--seconds` and reports the same keys as for
//! other devices plus the protocol's efficiency, SIGTERM stops the emulator and removes the
//! link even while its host does not read, and a second emulator on a live link is refused.
mod common;

use common::{binary_pattern, speckle, Run};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Emulator {
    child: Child,
    link: PathBuf,
}

impl Emulator {
    fn start(link: &Path, extra: &[&str]) -> Emulator {
        let mut args = vec!["emulate", "--link", link.to_str().unwrap(), "--seed", "7"];
        args.extend_from_slice(extra);
        let child = Command::new(env!("CARGO_BIN_EXE_speckle"))
            .args(&args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("speckle emulate starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::fs::symlink_metadata(link).is_err() {
            assert!(Instant::now() < deadline, "emulator link never appeared");
            std::thread::sleep(Duration::from_millis(20));
        }
        Emulator {
            child,
            link: link.to_path_buf(),
        }
    }

    fn spec(&self) -> String {
        format!("serial:{}", self.link.display())
    }

    /// SIGTERM, then wait: the emulator must exit within 5 s and remove its link.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(_status) = self.child.try_wait().unwrap() {
                break;
            }
            assert!(Instant::now() < deadline, "emulator ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            std::fs::symlink_metadata(&self.link).is_err(),
            "link left behind"
        );
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

fn transform(dir: &Path, device: &str, input: &Path, name: &str) -> Vec<u8> {
    let out = dir.join(name);
    let mut args = vec![
        "transform".to_string(),
        "--device".into(),
        device.into(),
        "--input".into(),
        input.to_str().unwrap().into(),
        "--output".into(),
        out.to_str().unwrap().into(),
        "--out-dim".into(),
        "100".into(),
    ];
    if device == "sim" {
        args.extend(["--seed".into(), "7".into()]);
    }
    speckle(&args).ok();
    std::fs::read(out).unwrap()
}

#[test]
fn serial_backend_against_the_emulator() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("x.npy");
    ndarray_npy::write_npy(&input, &binary_pattern(300, 64)).unwrap();
    let reference = transform(dir.path(), "sim", &input, "sim.npy");

    // Clean link: bit-identical to in-process simulation; the protocol's efficiency at batches
    // of 256 frames is at least 90 %.
    let emu = Emulator::start(&dir.path().join("opu"), &[]);
    assert_eq!(
        transform(dir.path(), &emu.spec(), &input, "serial.npy"),
        reference
    );
    let run = speckle([
        "bench",
        "--json",
        "--device",
        &emu.spec(),
        "--in",
        "1024",
        "--out",
        "1024",
        "--batch",
        "256",
        "--seconds",
        "0.5",
    ])
    .ok();
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let efficiency = v["efficiency"].as_f64().unwrap();
    assert!(efficiency >= 0.9, "protocol efficiency {efficiency}");
    assert!(v["vectors_per_s"].as_f64().unwrap() > 0.0);
    // A timed loop of at least --seconds, with the keys every other device reports.
    assert!(v["wall_s"].as_f64().unwrap() >= 0.5, "{v}");
    assert_eq!(v["kind"], "serial");
    assert_eq!(v["flop_per_vector"].as_f64(), Some(4.0 * 1024.0 * 1024.0));
    for key in [
        "setup_s",
        "device_time_s",
        "wall_over_device_time",
        "frames_per_s",
    ] {
        let x = v[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} missing in {v}"));
        assert!(x > 0.0 && x.is_finite(), "{key} = {x}");
    }
    let vectors = v["vectors"].as_u64().unwrap();
    assert_eq!(vectors, 256 * v["calls"].as_u64().unwrap());
    emu.stop();

    // A faulty link: still the same answer.
    let emu = Emulator::start(
        &dir.path().join("opu-faulty"),
        &["--faults", "drop=0.02,flip=0.02,truncate=0.02,delay=0.01"],
    );
    assert_eq!(
        transform(dir.path(), &emu.spec(), &input, "faulty.npy"),
        reference
    );
    emu.stop();

    // DFA training through the serial backend equals in-process simulation (device seed 7).
    let emu = Emulator::start(&dir.path().join("opu-train"), &[]);
    let small = [
        "--set",
        "data.train_subset=300",
        "--set",
        "data.test_subset=100",
        "--set",
        "model.hidden=[16]",
        "--set",
        "training.epochs=1",
        "--set",
        "training.batch_size=50",
        "--set",
        "feedback.seed=7",
    ];
    let summary = |device: &str, out: &Path| -> serde_json::Value {
        let mut args = vec![
            "train".to_string(),
            "--quiet".into(),
            "--out".into(),
            out.to_str().unwrap().into(),
            "--set".into(),
            format!("feedback.projector=\"{device}\""),
        ];
        args.extend(small.iter().map(|s| s.to_string()));
        speckle(&args).ok();
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap()
    };
    let serial = summary(&emu.spec(), &dir.path().join("run-serial"));
    let sim = summary("sim", &dir.path().join("run-sim"));
    for key in ["test_accuracy", "test_loss", "train_loss", "alignment"] {
        assert_eq!(serial[key], sim[key], "{key}");
    }
    emu.stop();
}

/// Runs `speckle ARGS`, killing it (and failing) if it is still running after `limit`.
fn speckle_within(args: &[&str], limit: Duration) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_speckle"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("speckle {args:?} still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    Run {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A second `speckle emulate` on a link that a running emulator serves fails at once, and
/// neither takes the link over nor removes it.
#[test]
fn a_second_emulator_on_a_live_link_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("opu");
    let emu = Emulator::start(&link, &[]);
    let target = std::fs::read_link(&link).unwrap();
    let second = speckle_within(
        &["emulate", "--link", link.to_str().unwrap()],
        Duration::from_secs(20),
    );
    second.fails_with("is in use");
    assert_eq!(std::fs::read_link(&link).unwrap(), target);
    // The first emulator still serves the link.
    let info = speckle(["info", "--json", "--device", &emu.spec()]).ok();
    assert!(info.stdout.contains("\"kind\""), "{}", info.stdout);
    emu.stop();
}

/// A host that sends requests and never reads: the emulator's answers fill the link, and
/// SIGTERM still stops it at once and removes the link.
#[test]
fn sigterm_stops_the_emulator_while_its_host_does_not_read() {
    use speckle::protocol::{encode_frame, Hello, Message};
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("opu");
    let emu = Emulator::start(&link, &[]);
    let hello = Hello {
        min_version: 1,
        max_version: 1,
        max_payload: 1 << 20,
    };
    let mut wire = Vec::new();
    encode_frame(1, &Message::Hello(hello), &mut wire);
    for seq in 2..5000 {
        encode_frame(seq, &Message::GetStatus, &mut wire);
    }
    let mut deaf_host = std::fs::OpenOptions::new().write(true).open(&link).unwrap();
    // The writer blocks too once the emulator stops reading; it fails when the link goes away.
    std::thread::spawn(move || {
        let _ = deaf_host.write_all(&wire);
    });
    std::thread::sleep(Duration::from_millis(1500));
    emu.stop();
}
