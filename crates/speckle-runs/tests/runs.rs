//! Runs end to end on small MNIST subsets with small widths: configs and overrides, a short
//! run beating a fixed accuracy, output files, resume equal to an uninterrupted run, divergence.

use rand_chacha::rand_core::SeedableRng;
use rand_distr::Distribution;
use speckle_dfa::AlgorithmKind;
use speckle_hal::{DeviceCounters, Error, ProjectorInfo, RandomProjector};
use speckle_runs::checkpoint;
use speckle_runs::config::{CheckedRunConfig, RunConfig, SHIPPED_CONFIGS};
use speckle_runs::run::{train_with_projector, Progress, RunError, RunOptions};
use speckle_runs::FeedbackConfig;
use std::path::Path;

/// A digital Gaussian projector for the tests (the real ones live in speckle-projection), with
/// an optional fault: after `nan_after` calls it returns NaN, like a broken device.
struct TestProjector {
    matrix: Vec<f32>,
    input_dim: usize,
    output_dim: usize,
    seed: u64,
    calls: usize,
    nan_after: Option<usize>,
    frames: u64,
}

impl RandomProjector for TestProjector {
    fn info(&self) -> ProjectorInfo {
        let mut info = ProjectorInfo::new(
            format!(
                "test-gaussian seed={} {}x{}",
                self.seed, self.input_dim, self.output_dim
            ),
            self.input_dim,
            self.output_dim,
            1.0,
        );
        info.frames_per_vector = 1.0;
        info
    }
    fn project(&mut self, input: &[f32], batch: usize, output: &mut [f32]) -> Result<(), Error> {
        speckle_hal::check_projection_buffers(&self.info(), input, batch, output)?;
        self.calls += 1;
        self.frames += batch as u64;
        let broken = self.nan_after.is_some_and(|n| self.calls > n);
        for b in 0..batch {
            for j in 0..self.output_dim {
                let mut acc = 0.0f32;
                for i in 0..self.input_dim {
                    acc += input[b * self.input_dim + i] * self.matrix[i * self.output_dim + j];
                }
                output[b * self.output_dim + j] = if broken { f32::NAN } else { acc };
            }
        }
        Ok(())
    }
    fn counters(&self) -> DeviceCounters {
        DeviceCounters {
            frames: self.frames,
            device_time_s: self.frames as f64 * 1e-4,
        }
    }
}

fn projector(
    f: &FeedbackConfig,
    input_dim: usize,
    output_dim: usize,
    nan_after: Option<usize>,
) -> Result<Box<dyn RandomProjector + Send>, Error> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(f.seed);
    let matrix = (0..input_dim * output_dim)
        .map(|_| rand_distr::StandardNormal.sample(&mut rng))
        .collect();
    Ok(Box::new(TestProjector {
        matrix,
        input_dim,
        output_dim,
        seed: f.seed,
        calls: 0,
        nan_after,
        frames: 0,
    }))
}

/// The test projector for a run of `config` (`None` for BP and FA), as the run would open its
/// own: 10 classes → the run's feedback width.
fn fake(config: &RunConfig) -> Option<Box<dyn RandomProjector + Send>> {
    fake_failing_after(config, None)
}

fn fake_failing_after(
    config: &RunConfig,
    nan_after: Option<usize>,
) -> Option<Box<dyn RandomProjector + Send>> {
    (config.training.algorithm == AlgorithmKind::Dfa)
        .then(|| projector(&config.feedback, 10, config.feedback_width(), nan_after).unwrap())
}

/// A small, fast DFA config on the bundled MNIST.
fn small(extra: &[&str]) -> CheckedRunConfig {
    let mut sets: Vec<String> = [
        "data.train_subset=2000",
        "data.test_subset=500",
        "model.hidden=[64, 64]",
        "training.epochs=2",
        "training.batch_size=64",
        "training.alignment_batch=64",
        "optimizer.lr=2e-3",
        "feedback.projector=digital", // the tests hand in their own projector
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    sets.extend(extra.iter().map(|s| s.to_string()));
    RunConfig::load(None, &sets).unwrap()
}

fn quiet() -> RunOptions {
    RunOptions {
        progress: Progress::Quiet,
        ..RunOptions::default()
    }
}

#[test]
fn shipped_configs_parse_and_match_the_targets_shape() {
    for (name, text) in SHIPPED_CONFIGS {
        let c = RunConfig::from_toml_with(text, name, &[]).unwrap();
        assert_eq!(c.model.hidden, vec![800, 800, 800], "{name}");
        assert_eq!(c.training.batch_size, 128, "{name}");
        assert!(c.training.epochs <= 30, "{name}");
        // The resolved config round-trips.
        let again = RunConfig::from_toml_with(&c.to_toml(), name, &[]).unwrap();
        assert_eq!(again, c, "{name}");
    }
    let default = RunConfig::load(None, &[]).unwrap();
    assert_eq!(default.feedback.projector.to_string(), "sim");
    assert_eq!(default.feedback.encoding.to_string(), "levels:3:dither");
}

#[test]
fn config_errors_are_one_line_and_name_the_key() {
    let cases: Vec<(String, Vec<String>, &str)> = vec![
        ("[training]\nepoch = 3\n".into(), vec![], "training.epoch"),
        (
            "[training]\nepochs = \"ten\"\n".into(),
            vec![],
            "training.epochs",
        ),
        ("[optimizer]\nlr = -1.0\n".into(), vec![], "optimizer.lr"),
        ("[modle]\nhidden = [3]\n".into(), vec![], "modle"),
        ("".into(), vec!["training.epoch=3".into()], "training.epoch"),
        (
            "".into(),
            vec!["feedback.devise.camera.bits=6".into()],
            "devise",
        ),
        (
            "".into(),
            vec!["training.epochs=0".into()],
            "training.epochs",
        ),
        ("".into(), vec!["training.epochs".into()], "training.epochs"),
        ("".into(), vec!["training..seed=1".into()], "training..seed"),
        ("".into(), vec!["training.seed.x=1".into()], "training.seed"),
        ("[training\n".into(), vec![], "line 1"),
    ];
    for (text, sets, needle) in cases {
        let err = RunConfig::from_toml_with(&text, "my.toml", &sets)
            .unwrap_err()
            .to_string();
        assert!(!err.contains('\n'), "multi-line: {err}");
        assert!(err.contains(needle), "{err:?} lacks {needle:?}");
    }
    let err = RunConfig::load(Some(Path::new("/nonexistent/run.toml")), &[]).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/run.toml"));
}

#[test]
fn overrides_set_epochs_seed_and_device_keys() {
    let c = RunConfig::load(
        None,
        &[
            "training.epochs=7".into(),
            "training.seed=42".into(),
            "feedback.encoding=bitplane:4".into(),
            "feedback.device.camera.bits=6".into(),
            "model.activation=leaky_relu:0.1".into(),
        ],
    )
    .unwrap();
    assert_eq!((c.training.epochs, c.training.seed), (7, 42));
    assert_eq!(c.feedback.encoding.to_string(), "bitplane:4");
    assert_eq!(c.feedback.device["camera"]["bits"].as_integer(), Some(6));
    // The other keys keep the file's values.
    assert_eq!(c.model.hidden, vec![800, 800, 800]);
}

#[test]
fn short_runs_with_the_other_implementations_conventions_learn() {
    // TinyDFA's uniform feedback, BioTorch's per-layer Xavier feedback and the seed code's
    // pre-alignment initialization, through the real digital projector: each learns far above
    // chance (10 %) and measures its alignment.
    for extra in [
        &["feedback.distribution=uniform"][..],
        &["feedback.distribution=xavier", "feedback.per_layer=true"][..],
        &["model.init=pre-alignment"][..],
    ] {
        let dir = tempfile::tempdir().unwrap();
        let config = small(extra);
        let projector = config.feedback.spec().open(10, config.feedback_width());
        let outcome = train_with_projector(
            &config,
            &dir.path().join("run"),
            Some(projector.unwrap()),
            &quiet(),
        )
        .unwrap();
        let s = outcome.summary;
        assert!(s.test_accuracy > 0.6, "{extra:?}: {}", s.test_accuracy);
        assert_eq!(s.alignment.len(), 2, "{extra:?}");
        assert!(s.alignment.iter().all(|a| a.cosine_mean.is_finite()));
    }
}

#[test]
fn short_run_learns_and_writes_its_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let config = small(&["optimizer.lr=1e-2"]);
    let outcome = train_with_projector(&config, &out, fake(&config), &quiet()).unwrap();
    assert!(outcome.completed);
    // 2,000 training images, 2 epochs (64 steps), 784-64-64-10 DFA: far above chance (10 %);
    // the digital projector reaches about 82 % with these settings.
    assert!(
        outcome.summary.test_accuracy > 0.6,
        "{}",
        outcome.summary.test_accuracy
    );

    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    for key in [
        "test_accuracy",
        "epochs",
        "alignment",
        "wall_s",
        "samples_per_s",
        "gflops",
        "device_frames",
        "device_time_s",
    ] {
        assert!(summary.get(key).is_some(), "summary.json lacks {key}");
    }
    assert_eq!(summary["epochs"], 2);
    let align = summary["alignment"].as_array().unwrap();
    assert_eq!(align.len(), 2);
    for a in align {
        let m = a["cosine_mean"].as_f64().unwrap();
        assert!((-1.0..=1.0).contains(&m) && a["cosine_std"].as_f64().unwrap() >= 0.0);
    }
    assert!(summary["device_frames"].as_u64().unwrap() > 0);

    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3);
    let ncols = lines[0].split(',').count();
    assert!(
        lines[0].starts_with("epoch,train_loss,train_accuracy,test_loss,test_accuracy,cos_mean_l1")
    );
    for l in &lines[1..] {
        assert_eq!(l.split(',').count(), ncols);
        assert!(l.split(',').all(|v| v.parse::<f64>().is_ok()), "{l}");
    }
    let resolved = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert_eq!(
        RunConfig::from_toml_with(&resolved, "config.toml", &[]).unwrap(),
        config
    );
    for png in ["accuracy.png", "alignment.png"] {
        let bytes = std::fs::read(out.join(png)).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{png}");
    }
    assert!(checkpoint::exists(&out));

    // A non-empty output directory is not overwritten.
    let err = train_with_projector(&config, &out, fake(&config), &quiet())
        .unwrap_err()
        .to_string();
    assert!(err.contains("not empty"), "{err}");
}

#[test]
fn resume_equals_uninterrupted() {
    let dir = tempfile::tempdir().unwrap();
    let config = small(&["training.seed=3"]);
    let full =
        train_with_projector(&config, &dir.path().join("full"), fake(&config), &quiet()).unwrap();

    let part = dir.path().join("part");
    let first = train_with_projector(
        &config,
        &part,
        fake(&config),
        &RunOptions {
            stop_after_epochs: Some(1),
            ..quiet()
        },
    )
    .unwrap();
    assert!(!first.completed);
    assert!(!part.join("summary.json").exists());
    let resumed = train_with_projector(
        &config,
        &part,
        fake(&config),
        &RunOptions {
            resume: true,
            ..quiet()
        },
    )
    .unwrap();
    assert!(resumed.completed);
    let strip = |m: &speckle_runs::metrics::EpochMetrics| {
        (
            m.epoch,
            m.train_loss,
            m.train_accuracy,
            m.test_loss,
            m.test_accuracy,
            m.alignment.clone(),
            m.device_frames,
        )
    };
    let a: Vec<_> = full.metrics.iter().map(strip).collect();
    let b: Vec<_> = resumed.metrics.iter().map(strip).collect();
    assert_eq!(a, b);
    assert_eq!(
        full.summary.test_accuracy.to_bits(),
        resumed.summary.test_accuracy.to_bits()
    );
    let (_, wa) = checkpoint::load(&dir.path().join("full")).unwrap();
    let (_, wb) = checkpoint::load(&part).unwrap();
    let (wa, wb) = (wa.read().unwrap(), wb.read().unwrap());
    assert_eq!(wa.arrays, wb.arrays, "weights differ bit for bit");

    // A different config or projector is refused.
    let other = small(&["training.seed=4"]);
    let err = train_with_projector(
        &other,
        &part,
        fake(&other),
        &RunOptions {
            resume: true,
            ..quiet()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("configuration differs"), "{err}");
    let err = train_with_projector(
        &config,
        &dir.path().join("nothing"),
        fake(&config),
        &RunOptions {
            resume: true,
            ..quiet()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("cannot resume"), "{err}");
}

#[test]
fn divergence_stops_and_keeps_the_last_good_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let config = small(&["training.epochs=3"]);
    // 2,000 samples in batches of 64: 32 steps per epoch; the device breaks in epoch 2.
    let broken = fake_failing_after(&config, Some(40));
    let err = train_with_projector(&config, &out, broken, &quiet()).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            RunError::Diverged {
                epoch: 2,
                last_good: 1,
                ..
            }
        ),
        "{msg}"
    );
    assert!(msg.contains("diverged") && !msg.contains('\n'), "{msg}");
    let (state, _) = checkpoint::load(&out).unwrap();
    assert_eq!(state.epochs_done, 1);
    assert!(state.metrics[0].test_accuracy.is_finite());

    // An absurd learning rate overflows the weights: a clear divergence error too, after the
    // first step (no checkpoint to keep yet).
    let out = dir.path().join("lr");
    let config = small(&["optimizer.kind=\"sgd\"", "optimizer.lr=1e300"]);
    match train_with_projector(&config, &out, fake(&config), &quiet()) {
        Err(RunError::Diverged { .. }) => {}
        other => panic!(
            "expected divergence, got {:?}",
            other.map(|o| o.summary.test_accuracy)
        ),
    }
}

/// An error and its causes joined by ": ", as anyhow's `{:#}` prints them.
fn chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut cause = e.source();
    while let Some(c) = cause {
        parts.push(c.to_string());
        cause = c.source();
    }
    parts.join(": ")
}

#[test]
fn error_chains_name_each_clause_once() {
    let e = RunConfig::load(Some(Path::new("/nonexistent/run.toml")), &[]).unwrap_err();
    let text = chain(&e);
    assert_eq!(
        text.matches("No such file or directory").count(),
        1,
        "{text}"
    );
    let e = RunError::from(speckle_dfa::DfaError::InvalidSpec("model.hidden".into()));
    assert_eq!(chain(&e), "trainer: invalid parameter: model.hidden");
    let e = RunError::from(checkpoint::CheckpointError::Missing("d".into()));
    assert_eq!(
        chain(&e),
        "checkpoint: d holds no checkpoint (nothing to resume)"
    );
    let hal = speckle_hal::Error::with_source(
        speckle_hal::ErrorKind::Io,
        "cannot open serial port /dev/x",
        std::io::Error::other("Not a typewriter"),
    );
    let e = speckle_dfa::DfaError::from(hal);
    assert_eq!(
        chain(&e),
        "random projector: cannot open serial port /dev/x: Not a typewriter"
    );
}

fn resume() -> RunOptions {
    RunOptions {
        resume: true,
        ..quiet()
    }
}

#[test]
fn a_second_run_into_a_folder_in_use_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    std::fs::create_dir(&out).unwrap();
    // What a `speckle train` running in `out` holds.
    let held = speckle_runs::lock::DirLock::acquire(&out).unwrap();
    let config = small(&["training.epochs=1"]);
    for options in [quiet(), resume()] {
        let err = train_with_projector(&config, &out, fake(&config), &options)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("in use by another speckle process") && !err.contains('\n'),
            "{err}"
        );
    }
    drop(held);
    train_with_projector(&config, &out, fake(&config), &quiet()).unwrap();
}

#[test]
fn a_run_killed_before_its_first_checkpoint_starts_again() {
    let dir = tempfile::tempdir().unwrap();
    let config = small(&["training.epochs=1"]);
    // What a run killed in its first epoch leaves: its config, maybe metrics, a temporary file
    // of the dead process.
    let killed = |name: &str| {
        let out = dir.path().join(name);
        std::fs::create_dir(&out).unwrap();
        std::fs::write(out.join("config.toml"), config.to_toml()).unwrap();
        std::fs::write(out.join(".tmp-999999999-0123456789abcdef-metrics.csv"), "x").unwrap();
        out
    };
    for (name, options) in [("again", quiet()), ("resumed", resume())] {
        let out = killed(name);
        let outcome = train_with_projector(&config, &out, fake(&config), &options).unwrap();
        assert!(outcome.completed, "{name}");
        assert!(out.join("summary.json").is_file());
        assert!(!out
            .join(".tmp-999999999-0123456789abcdef-metrics.csv")
            .exists());
    }
    // Resuming with another configuration is still refused; a folder with other files too.
    let out = killed("other");
    let other = small(&["training.epochs=1", "training.seed=9"]);
    let err = train_with_projector(&other, &out, fake(&other), &resume())
        .unwrap_err()
        .to_string();
    assert!(err.contains("configuration differs"), "{err}");
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    let err = train_with_projector(&config, &out, fake(&config), &quiet())
        .unwrap_err()
        .to_string();
    assert!(err.contains("not empty"), "{err}");
    assert_eq!(
        std::fs::read_to_string(out.join("notes.txt")).unwrap(),
        "mine"
    );
    assert!(!out.join(speckle_runs::lock::LOCK_FILE).exists());
}

#[test]
fn an_edited_epochs_done_is_an_error_not_skipped_epochs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let config = small(&["training.epochs=3"]);
    let stop = RunOptions {
        stop_after_epochs: Some(1),
        ..quiet()
    };
    train_with_projector(&config, &out, fake(&config), &stop).unwrap();
    let run_json = checkpoint::checkpoint_dir(&out).join("run.json");
    let text = std::fs::read_to_string(&run_json).unwrap();
    let mut value: serde_json::Value = serde_json::from_str(&text).unwrap();
    value["epochs_done"] = 2.into();
    std::fs::write(&run_json, value.to_string()).unwrap();
    let err = train_with_projector(&config, &out, fake(&config), &resume())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("epochs_done = 2") && err.contains("run.json") && !err.contains('\n'),
        "{err}"
    );
    // With the metrics edited to match, the trainer's step count still disagrees.
    let mut row = value["metrics"][0].clone();
    row["epoch"] = 2.into();
    value["metrics"].as_array_mut().unwrap().push(row);
    std::fs::write(&run_json, value.to_string()).unwrap();
    let err = train_with_projector(&config, &out, fake(&config), &resume())
        .unwrap_err()
        .to_string();
    assert!(err.contains("trainer.state has taken 32 steps"), "{err}");
}

#[test]
fn an_exploding_loss_stops_the_run_as_divergence_does() {
    let dir = tempfile::tempdir().unwrap();
    // Adam's steps are bounded by the rate: the weights reach 1e30 and the loss stays finite.
    let config = small(&["optimizer.lr=1e30"]);
    let err = train_with_projector(&config, &dir.path().join("run"), fake(&config), &quiet())
        .unwrap_err();
    assert!(matches!(err, RunError::Diverged { epoch: 1, .. }), "{err}");
}

#[test]
fn no_hidden_layers_is_a_linear_model_trained_with_bp_only() {
    for algorithm in ["dfa", "fa"] {
        let err = RunConfig::load(
            None,
            &[
                "model.hidden=[]".into(),
                format!("training.algorithm=\"{algorithm}\""),
            ],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("model.hidden = [] is a linear model"), "{err}");
    }
    let dir = tempfile::tempdir().unwrap();
    let config = small(&[
        "model.hidden=[]",
        "training.algorithm=\"bp\"",
        "training.epochs=1",
    ]);
    let outcome =
        train_with_projector(&config, &dir.path().join("linear"), None, &quiet()).unwrap();
    assert!(
        outcome.summary.test_accuracy > 0.5,
        "{}",
        outcome.summary.test_accuracy
    );
}
