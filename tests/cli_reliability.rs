//! Issue 15, "no hang, no abort, no clobbered file, no silent nonsense", at the command line:
//! one test per case of the error contract in `docs/errors.md` (sizes, outputs, runs,
//! nonsense, messages). Sizes are refused before anything is allocated, so these tests allocate
//! nothing large.
mod common;

use common::{arg, entries, speckle};
use ndarray::Array2;
use ndarray_npy::write_npy;
use std::path::Path;

/// Asserts that no `: `-separated clause of an error line appears twice ("X: X").
fn each_clause_once(line: &str) {
    let body = line.strip_prefix("error: ").unwrap_or(line);
    let clauses: Vec<&str> = body.split(": ").collect();
    for (i, c) in clauses.iter().enumerate() {
        assert!(
            !clauses[i + 1..].contains(c),
            "clause {c:?} appears twice in {line:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Messages

#[test]
fn a_missing_file_is_named_once() {
    let dir = tempfile::tempdir().unwrap();
    let missing = arg(dir.path(), "missing.toml");
    let device = format!("sim:{missing}");
    let x = arg(dir.path(), "x.npy");
    write_npy(&x, &Array2::<u8>::zeros((2, 8))).unwrap();
    let y = arg(dir.path(), "y.npy");
    for args in [
        vec![
            "transform",
            "--device",
            &device,
            "--set",
            "camera.bits=8",
            "--input",
            &x,
            "--output",
            &y,
        ],
        vec![
            "transform",
            "--device",
            &device,
            "--input",
            &x,
            "--output",
            &y,
        ],
        vec!["train", "--config", &missing],
    ] {
        let line = speckle(&args).fails_with("missing.toml");
        assert_eq!(
            line.matches("No such file or directory").count(),
            1,
            "{line}"
        );
        each_clause_once(&line);
    }
}

#[cfg(target_os = "linux")]
#[test]
fn a_port_that_is_not_a_terminal_is_named_once() {
    let dir = tempfile::tempdir().unwrap();
    let x = arg(dir.path(), "x.npy");
    write_npy(&x, &Array2::<u8>::zeros((2, 8))).unwrap();
    let y = arg(dir.path(), "y.npy");
    let line = speckle([
        "transform",
        "--device",
        "serial:/dev/null",
        "--input",
        &x,
        "--output",
        &y,
    ])
    .fails_with("/dev/null");
    each_clause_once(&line);
}

#[test]
fn a_npy_header_that_does_not_parse_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.npy");
    // A header dict that stops in the middle (no closing brace).
    let mut header = b"{'descr': '|u1', 'fortran_order': False, 'shape': (2, 8), ".to_vec();
    header.resize(117, b' ');
    header.push(b'\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(&header);
    bytes.extend_from_slice(&[0u8; 16]);
    std::fs::write(&p, bytes).unwrap();
    let line = speckle([
        "transform",
        "--input",
        p.to_str().unwrap(),
        "--output",
        &arg(dir.path(), "y.npy"),
    ])
    .fails_with("bad.npy is not a valid .npy file");
    assert!(!line.contains("^---") && !line.contains(" | "), "{line}");
    assert!(line.contains("syntax error at 1:"), "{line}");
}

#[test]
fn sweep_without_config_is_a_usage_error() {
    let run = speckle(["sweep"]);
    assert_eq!(run.status.code(), Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("--config"), "{}", run.stderr);
}

#[test]
fn a_sweep_name_cannot_leave_the_sweeps_folder() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["../escape", "a/b", "..", "/abs"] {
        let config = dir.path().join("s.toml");
        std::fs::write(
            &config,
            format!("name = {name:?}\n[grid]\n\"training.seed\" = [1]\n"),
        )
        .unwrap();
        let run = speckle(["sweep", "--config", config.to_str().unwrap(), "--quick"]);
        run.fails_with("must be a plain folder name");
    }
    // What `sweeps/../escape-quick` would have been.
    assert!(!Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("escape-quick")
        .exists());
}

// ---------------------------------------------------------------------------------------------
// Sizes

#[test]
fn a_npy_header_claiming_a_trillion_values_is_refused_without_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("huge.npy");
    let mut header =
        b"{'descr': '<f4', 'fortran_order': False, 'shape': (1000000, 1000000), }".to_vec();
    header.resize(117, b' ');
    header.push(b'\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(&header);
    bytes.extend_from_slice(&[0u8; 16]);
    std::fs::write(&p, bytes).unwrap();
    let line = speckle([
        "transform",
        "--linear",
        "--device",
        "digital",
        "--input",
        p.to_str().unwrap(),
        "--output",
        &arg(dir.path(), "y.npy"),
    ])
    .fails_with("1000000000000 values");
    assert!(line.contains("3.6 TiB"), "{line}");
    assert_eq!(entries(dir.path()), ["huge.npy"]);
}

#[test]
fn an_output_dimension_beyond_memory_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let x = arg(dir.path(), "x.npy");
    write_npy(&x, &Array2::<u8>::zeros((8, 16))).unwrap();
    let y = arg(dir.path(), "y.npy");
    let line = speckle([
        "transform",
        "--input",
        &x,
        "--output",
        &y,
        "--out-dim",
        "4000000000000",
    ])
    .fails_with("--out-dim 4000000000000");
    assert!(
        line.contains("would need 116 TiB (8 × 4000000000000 × 4 bytes)"),
        "{line}"
    );
    assert!(!Path::new(&y).exists());
}

#[test]
fn a_bench_batch_beyond_memory_is_refused_at_once() {
    for mode in ["raw", "linear"] {
        let line = speckle([
            "bench",
            "--device",
            if mode == "raw" { "sim" } else { "digital" },
            "--mode",
            mode,
            "--in",
            "16",
            "--out",
            "16",
            "--batch",
            "1000000000000",
            "--seconds",
            "0",
        ])
        .fails_with("--batch 1000000000000");
        assert!(line.contains("TiB"), "{line}");
    }
}

#[test]
fn info_digital_with_absurd_dimensions_is_an_error() {
    let line = speckle([
        "info",
        "--device",
        "digital",
        "--in",
        "1000000000000",
        "--out",
        "1000000000000",
    ])
    .fails_with("1000000000000");
    assert!(line.contains("entries"), "{line}");
}

#[test]
fn a_matrix_budget_beyond_memory_is_refused_at_once() {
    let line = speckle([
        "info",
        "--device",
        "sim",
        "--set",
        "medium.matrix_budget_mib=100000000",
    ])
    .fails_with("medium.matrix_budget_mib = 100000000");
    assert!(line.contains("memory limit"), "{line}");
}

#[test]
fn a_structured_medium_beyond_memory_is_refused_at_once() {
    // 3815 blocks of 2^20 diagonals: 89 GiB, refused under a limit of 8 GiB (set, so that the
    // test never allocates on a machine that has the memory).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_speckle"))
        .args(["info", "--device", "sim:structured", "--out", "4000000000"])
        .env("SPECKLE_MEMORY_LIMIT", "8G")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("would need 89 GiB") && stderr.contains("8 GiB memory limit"),
        "{stderr}"
    );
}

#[test]
fn hidden_layers_beyond_memory_are_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let line = speckle([
        "train",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
        "--set",
        "model.hidden=[1048576, 1048576]",
    ])
    .fails_with("model.hidden");
    assert!(line.contains("4 TiB"), "{line}");
    assert!(!out.exists());
}

// ---------------------------------------------------------------------------------------------
// Outputs

/// `speckle transform --input X --output Y` (raw, through the default device).
fn transform(input: &str, output: &Path) -> common::Run {
    speckle([
        "transform",
        "--input",
        input,
        "--output",
        output.to_str().unwrap(),
    ])
}

#[test]
fn output_equal_to_the_input_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let x = arg(dir.path(), "x.npy");
    write_npy(&x, &common::binary_pattern(4, 16)).unwrap();
    let before = std::fs::read(&x).unwrap();
    speckle(["transform", "--input", &x, "--output", &x]).fails_with("input");
    // The same file under another name (a symbolic link) too.
    #[cfg(unix)]
    {
        let link = dir.path().join("link.npy");
        std::os::unix::fs::symlink(&x, &link).unwrap();
        transform(&x, &link).fails_with("input");
    }
    assert_eq!(std::fs::read(&x).unwrap(), before);
}

#[cfg(unix)]
#[test]
fn outputs_through_a_link_write_through_and_device_nodes_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let x = arg(dir.path(), "x.npy");
    write_npy(&x, &common::binary_pattern(4, 16)).unwrap();
    let real = dir.path().join("real.npy");
    std::fs::write(&real, b"old").unwrap();
    let link = dir.path().join("link.npy");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    transform(&x, &link).ok();
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_ne!(std::fs::read(&real).unwrap(), b"old");
    transform(&x, Path::new("/dev/null")).fails_with("not a regular file");
    assert!(!std::fs::metadata("/dev/null").unwrap().is_file());
}

// ---------------------------------------------------------------------------------------------
// Runs

#[cfg(target_os = "linux")]
#[test]
fn two_trainings_into_one_folder_cannot_both_proceed() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let out_arg = out.to_str().unwrap();
    let args = [
        "train",
        "--quiet",
        "--config",
        "configs/mnist-dfa.toml",
        "--out",
        out_arg,
        "--set",
        "data.train_subset=500",
        "--set",
        "data.test_subset=100",
        "--set",
        "model.hidden=[16]",
        "--set",
        "training.epochs=10000",
    ];
    let mut first = std::process::Command::new(env!("CARGO_BIN_EXE_speckle"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The first holds the lock once it has written its config.
    let started = std::time::Instant::now();
    while !out.join("config.toml").exists() {
        assert!(
            started.elapsed().as_secs() < 60,
            "the first run never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let second = speckle(args).fails_with("in use by another speckle process");
    assert!(second.contains(&format!("pid {}", first.id())), "{second}");
    speckle(["train", "--quiet", "--resume", out_arg]).fails_with("in use");
    // SIGTERM: the first stops with 143 and leaves no temporary file.
    std::process::Command::new("kill")
        .args(["-TERM", &first.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(first.wait().unwrap().code(), Some(143));
    let leftovers: Vec<String> = entries(&out)
        .into_iter()
        .filter(|n| n.starts_with(".tmp-") || n.starts_with(".checkpoint.tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

// ---------------------------------------------------------------------------------------------
// No silent nonsense

/// `speckle transform --linear` of the demo batch to 8 outputs, with one `--set`.
fn linear_demo(device: &str, set: &str, output: &str) -> common::Run {
    speckle([
        "transform",
        "--linear",
        "--device",
        device,
        "--set",
        set,
        "--input",
        "data/demo/signed-8x64.npy",
        "--out-dim",
        "8",
        "--output",
        output,
    ])
}

#[test]
fn a_calibration_that_finds_no_light_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let y = arg(dir.path(), "y.npy");
    linear_demo("sim", "camera.photon_rate_per_us=0", &y).fails_with("calibration finds no signal");
    assert!(!Path::new(&y).exists());
}

#[test]
fn finite_inputs_that_overflow_float32_are_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let x = arg(dir.path(), "x.npy");
    let mut values = common::float_pattern(4, 16);
    values.row_mut(2).fill(3e38);
    write_npy(&x, &values).unwrap();
    let y = arg(dir.path(), "y.npy");
    for device in ["digital", "sim"] {
        speckle([
            "transform",
            "--linear",
            "--device",
            device,
            "--input",
            &x,
            "--output",
            &y,
        ])
        .fails_with("row 2 of the batch overflows float32");
        assert!(!Path::new(&y).exists());
    }
}

#[test]
fn overrides_of_keys_no_device_has_are_errors_even_for_digital() {
    let dir = tempfile::tempdir().unwrap();
    let y = arg(dir.path(), "y.npy");
    linear_demo("digital", "camera.bitz=8", &y)
        .fails_with("no config keys to override (got 'camera')");
    speckle(["info", "--device", "digital", "--set", "camera.bitz=8"]).fails_with("no config keys");
    // In a run config the digital projector applies no [feedback.device] keys (a sweep may cross
    // them with a digital baseline), but a key no device has is still an error, before training.
    let out = dir.path().join("run");
    speckle([
        "train",
        "--quiet",
        "--config",
        "configs/mnist-dfa.toml",
        "--set",
        "feedback.device.camera.bitz=8",
        "--out",
        out.to_str().unwrap(),
    ])
    .fails_with("unknown field `bitz`");
    assert!(!out.exists());
}
