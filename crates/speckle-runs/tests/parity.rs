//! The other implementations' conventions as run-config options: `feedback.distribution`
//! (`uniform` as TinyDFA, `xavier` as BioTorch) and `model.init = "pre-alignment"` (the seed
//! code's PAI): parsing, what they become for the trainer and the device layer, refused
//! combinations, and a short run with each.
use speckle_devices::FeedbackDistribution;
use speckle_dfa::{FeedbackScale, Init};
use speckle_runs::{run, RunConfig};

fn load(sets: &[&str]) -> Result<speckle_runs::config::CheckedRunConfig, String> {
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    RunConfig::load(None, &sets).map_err(|e| e.to_string())
}

#[test]
fn distributions_and_pre_alignment_parse_into_the_typed_specs() {
    let c = load(&[
        "feedback.projector=digital",
        "feedback.distribution=uniform",
    ])
    .unwrap();
    assert_eq!(
        c.feedback.spec().distribution,
        FeedbackDistribution::Uniform
    );
    assert_eq!(c.algorithm_spec().feedback_scale, FeedbackScale::Seed);
    let c = load(&[
        "feedback.projector=digital",
        "feedback.distribution=xavier",
        "feedback.per_layer=true",
        "model.init=pre-alignment",
    ])
    .unwrap();
    assert_eq!(c.feedback.spec().distribution, FeedbackDistribution::Xavier);
    assert_eq!(c.algorithm_spec().feedback_scale, FeedbackScale::Xavier);
    assert!(c.algorithm_spec().per_layer_feedback);
    assert_eq!(c.model.init, Init::PreAlignment);
    // The resolved config names both and round-trips.
    let text = c.to_toml();
    assert!(text.contains("distribution = \"xavier\""), "{text}");
    assert!(text.contains("init = \"pre-alignment\""), "{text}");
    let again = RunConfig::from_toml_with(&text, "again", &[]).unwrap();
    assert_eq!(*again, *c);
    // The default is the seed code's Gaussian.
    let c = load(&[]).unwrap();
    assert_eq!(c.feedback.distribution, FeedbackDistribution::Gaussian);
}

#[test]
fn impossible_combinations_are_one_line_errors_naming_the_keys() {
    let cases: [(&[&str], &[&str]); 5] = [
        (
            &["feedback.distribution=uniform"],
            &["feedback.distribution = \"uniform\"", "digital", "sim"],
        ),
        (
            &[
                "feedback.projector=sim:ideal",
                "feedback.distribution=xavier",
            ],
            &["feedback.distribution = \"xavier\"", "sim:ideal"],
        ),
        (
            &[
                "feedback.projector=digital",
                "feedback.distribution=xavier",
                "feedback.normalization=false",
            ],
            &[
                "feedback.distribution = \"xavier\"",
                "feedback.normalization",
            ],
        ),
        (
            &["model.init=pre-alignment", "training.algorithm=bp"],
            &["model.init = \"pre-alignment\"", "dfa", "bp"],
        ),
        (
            &["feedback.distribution=normal"],
            &["feedback.distribution", "gaussian, uniform or xavier"],
        ),
    ];
    for (sets, needles) in cases {
        let e = load(sets).unwrap_err();
        assert!(!e.contains('\n'), "{e}");
        for n in needles {
            assert!(e.contains(n), "{sets:?}: {e:?} lacks {n:?}");
        }
    }
    // A distribution is a property of DFA's feedback: BP ignores the section, as before.
    load(&["feedback.distribution=uniform", "training.algorithm=bp"]).unwrap();
}

#[test]
fn short_runs_with_each_option_learn() {
    // 1,000 MNIST images, 2 epochs, 48-32: every variant learns well above chance (10 %), and
    // pre-alignment leaves the run's own checks (finite loss, alignment measured) intact.
    for extra in [
        &["feedback.distribution=uniform"][..],
        &["feedback.distribution=xavier", "feedback.per_layer=true"][..],
        &["model.init=pre-alignment"][..],
    ] {
        let mut sets = vec![
            "data.train_subset=1000",
            "data.test_subset=200",
            "model.hidden=[48, 32]",
            "training.epochs=2",
            "optimizer.lr=5e-3",
            "training.batch_size=50",
            "training.alignment_batch=50",
            "feedback.projector=digital",
        ];
        sets.extend_from_slice(extra);
        let config = load(&sets).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let out = run::train(
            &config,
            &dir.path().join("run"),
            false,
            run::Progress::Quiet,
        )
        .unwrap();
        let s = out.summary;
        assert!(s.test_accuracy > 0.5, "{extra:?}: {}", s.test_accuracy);
        assert_eq!(s.alignment.len(), 2, "{extra:?}");
        assert!(s.alignment.iter().all(|a| a.cosine_mean.is_finite()));
    }
}
