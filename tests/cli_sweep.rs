//! `speckle sweep` end to end on tiny MNIST runs, and its one-line errors.
use std::path::Path;
use std::process::Command;

/// `speckle`, outside any scheduler (even when the tests run inside a Slurm job).
fn speckle() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_speckle"));
    for (name, _) in std::env::vars_os() {
        let n = name.to_string_lossy();
        if n.starts_with("SLURM_") || n == "JOB_COMPLETION_INDEX" || n == "SPECKLE_SHARDS" {
            c.env_remove(&name);
        }
    }
    c
}

/// A tiny sweep: 2 camera settings × 2 seeds of a 784-32-10 DFA net on 1,000 MNIST images (2 epochs), through
/// the simulated OPU; `--quick` keeps seed 0 only.
const TINY: &str = r#"
name = "tiny"
base = "base.toml"
[grid]
"feedback.device.camera.read_noise_e" = [0.0, 200.0]
"training.seed" = [0, 1]
[[groups]]
name = "sim"
set = { "feedback.projector" = "sim" }
[[groups]]
name = "digital"
set = { "feedback.projector" = "digital" }
[quick.keep]
"training.seed" = [0]
"#;

const BASE: &str = r#"
[data]
train_subset = 1000
test_subset = 128
[model]
hidden = [32]
[training]
algorithm = "dfa"
epochs = 2
batch_size = 50
alignment_batch = 32
[optimizer]
lr = 3e-3
"#;

fn write_tiny(dir: &Path) -> std::path::PathBuf {
    std::fs::write(dir.join("base.toml"), BASE).unwrap();
    let path = dir.join("tiny.toml");
    std::fs::write(&path, TINY).unwrap();
    path
}

#[test]
fn quick_sweep_end_to_end_then_resume_and_merge() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_tiny(dir.path());
    let out = dir.path().join("out");
    let run = speckle()
        .args(["sweep", "--config"])
        .arg(&config)
        .arg("--out")
        .arg(&out)
        .args(["--quick", "--jobs", "2"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    let mut lines = csv.lines();
    let header = lines.next().unwrap();
    assert!(
        header.starts_with(
            "group,feedback.device.camera.read_noise_e,feedback.projector,test_accuracy,\
             cos_mean_l1,cos_std_l1,snr_db,device_frames,device_time_s,status,point_id"
        ),
        "{header}"
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 4, "{csv}");
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r[9], "ok", "{csv}");
        let acc: f64 = r[3].parse().unwrap();
        assert!((0.0..=1.0).contains(&acc), "{csv}");
        // Row 1 is the simulated camera drowned in 200 e⁻ of read noise (SNR below 0 dB): it
        // may stay at chance. Every other point learns.
        if i != 1 {
            assert!(acc > 0.2, "accuracy {acc} should beat chance: {csv}");
        }
    }
    // The simulated camera has an SNR that falls with read noise; the digital projector has none
    // and spends no device frames.
    let snr = |r: &Vec<&str>| r[6].parse::<f64>().unwrap();
    assert!(snr(&rows[0]) > snr(&rows[1]), "{csv}");
    assert!(rows[0][7].parse::<u64>().unwrap() > 0);
    assert_eq!((rows[2][6], rows[2][7]), ("", "0"), "{csv}");
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("Quick mode"), "{report}");
    assert!(out
        .join("figures/feedback-device-camera-read-noise-e.png")
        .exists());

    // A second run skips every finished point.
    let again = speckle()
        .args(["sweep", "--config"])
        .arg(&config)
        .arg("--out")
        .arg(&out)
        .arg("--quick")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{stderr}");
    assert!(stderr.contains("ran 0, skipped 4"), "{stderr}");

    // Merging the folder with itself into another folder reproduces the results.
    let merged = dir.path().join("merged");
    let m = speckle()
        .args(["sweep", "merge"])
        .arg(&out)
        .arg("--out")
        .arg(&merged)
        .output()
        .unwrap();
    assert!(m.status.success(), "{}", String::from_utf8_lossy(&m.stderr));
    assert_eq!(
        std::fs::read_to_string(merged.join("results.csv")).unwrap(),
        csv
    );
}

#[test]
fn bad_sweeps_fail_with_one_line_errors_before_running() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny(dir.path());
    let cases = [
        (
            TINY.replace("camera.read_noise_e", "camera.read_noize_e"),
            "read_noize_e",
        ),
        (TINY.replace("[0.0, 200.0]", "[]"), "empty list"),
        (TINY.replace("training.seed", "training.sed"), "sed"),
        (format!("{TINY}\nsurprise = 1\n"), "surprise"),
    ];
    for (text, want) in cases {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, &text).unwrap();
        let out = dir.path().join("bad-out");
        let run = speckle()
            .args(["sweep", "--config"])
            .arg(&path)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success(), "{want}: {stderr}");
        assert!(stderr.contains(want), "{want}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(!out.exists(), "nothing written for {want}");
    }
    let run = speckle()
        .args(["sweep", "--config", "x.toml", "--shard", "2/2"])
        .output()
        .unwrap();
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("I < N"));
    // --shard auto outside a scheduler, or with a bad index.
    let config = dir.path().join("tiny.toml");
    let out = dir.path().join("auto-out");
    for (env, want) in [
        (None, "neither is set"),
        (
            Some(("JOB_COMPLETION_INDEX", "4")),
            "JOB_COMPLETION_INDEX=4",
        ),
        (
            Some(("SLURM_ARRAY_TASK_ID", "one")),
            "SLURM_ARRAY_TASK_ID=\"one\"",
        ),
    ] {
        let mut c = speckle();
        c.args(["sweep", "--shard", "auto", "--shards", "4", "--config"])
            .arg(&config)
            .arg("--out")
            .arg(&out);
        if let Some((k, v)) = env {
            c.env(k, v);
        }
        let run = c.output().unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(want), "{want}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(!out.exists(), "nothing written for {want}");
    }
}

#[test]
fn failed_points_make_the_sweep_exit_1_after_writing_the_results() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("base.toml"), BASE).unwrap();
    // The second point's data folder does not exist: the config is valid, the run fails.
    let config = dir.path().join("fails.toml");
    std::fs::write(
        &config,
        r#"
name = "fails"
base = "base.toml"
[set]
"training.epochs" = 1
"data.train_subset" = 200
[[points]]
"training.seed" = 0
[[points]]
"training.seed" = 1
"data.dir" = "/nonexistent/mnist"
"#,
    )
    .unwrap();
    let out = dir.path().join("out");
    for attempt in ["first", "again"] {
        let run = speckle()
            .args(["sweep", "--jobs", "1", "--config"])
            .arg(&config)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(1), "{attempt}: {stderr}");
        let last = stderr.trim().lines().last().unwrap();
        assert!(
            last.starts_with("error: 1 of 2 points failed (") && last.ends_with("/out"),
            "{attempt}: {stderr}"
        );
        let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
        let status: Vec<&str> = csv
            .lines()
            .skip(1)
            .map(|l| l.split(',').rev().nth(1).unwrap())
            .collect();
        assert_eq!(status, ["ok", "failed"], "{attempt}: {csv}");
    }
}

/// The environment contract of deploy/kubernetes/sweep-job.yaml: pod I of the Indexed Job runs
/// `speckle sweep --shard auto` with JOB_COMPLETION_INDEX=I and SPECKLE_SHARDS = completions, all
/// into one folder; merge-job.yaml merges that folder. Every index run at once, then merged,
/// equals one local run.
#[test]
fn kubernetes_indexed_job_shards_merge_to_the_local_sweep() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes");
    let job = std::fs::read_to_string(root.join("sweep-job.yaml")).unwrap();
    let merge_job = std::fs::read_to_string(root.join("merge-job.yaml")).unwrap();
    let field = |text: &str, key: &str| -> String {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(key))
            .unwrap_or_else(|| panic!("no {key} in the template"));
        line.trim_start()[key.len()..]
            .trim()
            .trim_matches('"')
            .to_string()
    };
    assert_eq!(field(&job, "completionMode:"), "Indexed");
    let completions: usize = field(&job, "completions:").parse().unwrap();
    let after_shards = job.split("- name: SPECKLE_SHARDS").nth(1).unwrap();
    assert_eq!(field(after_shards, "value:"), completions.to_string());
    assert!(job.contains(r#""--shard", "auto""#), "{job}");
    let out_dir = job.split(r#""--out", ""#).nth(1).unwrap();
    let out_dir = &out_dir[..out_dir.find('"').unwrap()];
    assert!(
        merge_job.contains(&format!(r#""sweep", "merge", "{out_dir}""#)),
        "the merge job merges the sweep's folder {out_dir}: {merge_job}"
    );

    let dir = tempfile::tempdir().unwrap();
    let config = write_tiny(dir.path());
    let local = dir.path().join("local");
    let run = speckle()
        .args(["sweep", "--quick", "--jobs", "2", "--config"])
        .arg(&config)
        .arg("--out")
        .arg(&local)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );

    let shared = dir.path().join("shared");
    let pods: Vec<_> = (0..completions)
        .map(|i| {
            speckle()
                .args([
                    "sweep", "--quick", "--jobs", "1", "--shard", "auto", "--config",
                ])
                .arg(&config)
                .arg("--out")
                .arg(&shared)
                .env("JOB_COMPLETION_INDEX", i.to_string())
                .env("SPECKLE_SHARDS", completions.to_string())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (i, pod) in pods.into_iter().enumerate() {
        let run = pod.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(run.status.success(), "index {i}: {stderr}");
        let want = format!(
            "shard {i}/{completions} (Kubernetes completion index {i} of \
             SPECKLE_SHARDS={completions})"
        );
        assert!(stderr.contains(&want), "{want}: {stderr}");
    }
    assert!(!shared.join("results.csv").exists(), "merge writes it");
    let m = speckle()
        .args(["sweep", "merge"])
        .arg(&shared)
        .output()
        .unwrap();
    assert!(m.status.success(), "{}", String::from_utf8_lossy(&m.stderr));
    assert_eq!(
        std::fs::read_to_string(shared.join("results.csv")).unwrap(),
        std::fs::read_to_string(local.join("results.csv")).unwrap()
    );
}
