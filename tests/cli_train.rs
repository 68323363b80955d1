//! `speckle train` end to end on small MNIST subsets: outputs, --set, errors, resume.

use std::path::Path;
use std::process::{Command, Output};

fn speckle(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_speckle"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run speckle")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Small and fast: 1,000 training images, one hidden layer of 32.
const SMALL: [&str; 10] = [
    "--set",
    "data.train_subset=1000",
    "--set",
    "data.test_subset=300",
    "--set",
    "model.hidden=[32, 32]",
    "--set",
    "training.batch_size=50",
    "--set",
    "optimizer.lr=3e-3",
];

fn train(out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["train", "--quiet", "--out", out.to_str().unwrap()];
    args.extend(SMALL);
    args.extend(extra);
    speckle(&args)
}

fn summary(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap()
}

/// Trains `base` uninterrupted into `dir/full`, and into `dir/part` stopped after one epoch then
/// resumed; returns the two summaries.
fn full_and_resumed(dir: &Path, base: &[&str]) -> (serde_json::Value, serde_json::Value) {
    let full = dir.join("full");
    let o = train(&full, base);
    assert!(o.status.success(), "{}", stderr(&o));
    let part = dir.join("part");
    let mut first: Vec<&str> = base.to_vec();
    first.extend(["--stop-after", "1"]);
    let o = train(&part, &first);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!part.join("summary.json").exists());
    let o = speckle(&["train", "--quiet", "--resume", part.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    (summary(&full), summary(&part))
}

#[test]
fn default_config_through_the_simulated_opu() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("opu");
    // No --config: DFA through the simulated 8-bit OPU.
    let o = train(
        &out,
        &["--set", "training.epochs=2", "--set", "training.seed=5"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let summary = summary(&out);
    assert_eq!(summary["epochs"], 2);
    // 40 steps through ternary-encoded optical feedback: about 30 %, clearly above chance.
    assert_eq!(summary["algorithm"], "dfa");
    assert!(
        summary["test_accuracy"].as_f64().unwrap() > 0.2,
        "{summary}"
    );
    assert!(summary["device_frames"].as_u64().unwrap() > 0);
    assert_eq!(summary["alignment"].as_array().unwrap().len(), 2);
    let config = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(
        config.contains("seed = 5") && config.contains("projector = \"sim\""),
        "{config}"
    );
    for f in [
        "metrics.csv",
        "accuracy.png",
        "alignment.png",
        "checkpoint/run.json",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("test accuracy"), "{stdout}");
}

#[test]
fn the_wide_config_trains_through_the_structured_medium() {
    // configs/mnist-dfa-wide.toml (feedback width 2^20 over `sim:structured`) with the widths
    // cut to 16 and 4096 so that it runs in a second; the full size is a manual run (README).
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("wide");
    let o = speckle(&[
        "train",
        "--quiet",
        "--config",
        "configs/mnist-dfa-wide.toml",
        "--out",
        out.to_str().unwrap(),
        "--set",
        "model.hidden=[16, 4096]",
        "--set",
        "data.train_subset=512",
        "--set",
        "data.test_subset=200",
        "--set",
        "optimizer.lr=2e-3",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let summary = summary(&out);
    let projector = summary["projector"].as_str().unwrap();
    assert!(projector.contains("structured"), "{projector}");
    assert!(projector.contains("out=4096"), "{projector}");
    // Ternary error: 4 frames per sample (train and alignment), plus calibration.
    assert!(summary["device_frames"].as_u64().unwrap() >= 4 * 512);
    assert!(
        summary["test_accuracy"].as_f64().unwrap() > 0.3,
        "{summary}"
    );
}

#[test]
fn bad_configs_fail_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad_file = dir.path().join("bad.toml");
    std::fs::write(&bad_file, "[training]\nepochs = 2\nlearning_rate = 0.1\n").unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["train", "--set", "training.epoch=2"], "training.epoch"),
        (vec!["train", "--set", "optimizer.lr=-1"], "optimizer.lr"),
        (vec!["train", "--set", "feedback.projector=laser"], "laser"),
        (
            vec!["train", "--config", bad_file.to_str().unwrap()],
            "learning_rate",
        ),
        (
            vec!["train", "--config", "/nonexistent.toml"],
            "/nonexistent.toml",
        ),
        (
            vec!["train", "--resume", "/nonexistent-run"],
            "/nonexistent-run",
        ),
        (
            vec![
                "train",
                "--set",
                "data.dir=/nonexistent-data",
                "--set",
                "training.epochs=1",
            ],
            "/nonexistent-data",
        ),
    ];
    for (args, needle) in cases {
        let out = dir.path().join(format!("out-{}", needle.len()));
        let mut args = args.clone();
        args.extend(["--quiet", "--out"]);
        if !args.contains(&"--resume") {
            args.push(out.to_str().unwrap());
        } else {
            args.truncate(args.len() - 1);
        }
        let o = speckle(&args);
        let e = stderr(&o);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert_eq!(e.trim_end().lines().count(), 1, "{args:?}: {e}");
        assert!(e.contains(needle), "{args:?}: {e}");
        assert!(!e.contains("panicked"), "{e}");
    }
}

#[test]
fn resume_continues_to_the_same_result() {
    let dir = tempfile::tempdir().unwrap();
    let base = [
        "--config",
        "configs/mnist-dfa.toml",
        "--set",
        "optimizer.lr=1e-2",
        "--set",
        "training.epochs=2",
    ];
    let (a, b) = full_and_resumed(dir.path(), &base);
    let part = dir.path().join("part");
    for key in [
        "test_accuracy",
        "test_loss",
        "train_loss",
        "alignment",
        "epochs",
    ] {
        assert_eq!(a[key], b[key], "{key}");
    }
    // Resuming with a changed config is refused.
    let o = speckle(&[
        "train",
        "--quiet",
        "--resume",
        part.to_str().unwrap(),
        "--set",
        "training.seed=9",
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("differs"), "{}", stderr(&o));
}

/// Through the noisy simulated OPU a resumed run must replay the same camera noise: the
/// projector's device is positioned at the checkpointed frame index (`seek_frame`).
#[test]
fn resume_through_the_noisy_simulated_opu_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let base = [
        "--set",
        "training.epochs=2",
        "--set",
        "data.train_subset=400",
    ];
    let (a, b) = full_and_resumed(dir.path(), &base);
    for key in ["test_loss", "train_loss", "alignment"] {
        assert_eq!(a[key], b[key], "{key}");
    }
}

/// The dithered encodings draw from the device seed and each vector's first frame index, which
/// a resumed run restores with the device's frame clock: resume stays exact through them.
#[test]
fn resume_through_dithered_encodings_is_exact() {
    for encoding in ["ternary:dither", "levels:3:dither"] {
        let dir = tempfile::tempdir().unwrap();
        let set = format!("feedback.encoding={encoding}");
        let base = [
            "--set",
            "training.epochs=2",
            "--set",
            "data.train_subset=400",
            "--set",
            &set,
        ];
        let (a, b) = full_and_resumed(dir.path(), &base);
        for key in ["test_loss", "train_loss", "alignment"] {
            assert_eq!(a[key], b[key], "{encoding}: {key}");
        }
    }
}
