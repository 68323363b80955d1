//! The other implementations' conventions as run-config options: `feedback.distribution`
//! (`uniform` as TinyDFA, `xavier` as BioTorch) and `model.init = "pre-alignment"` (the seed
//! code's PAI): parsing, what they become for the trainer and the device layer, and refused
//! combinations (a short run with each is in `runs.rs`).
use speckle_devices::FeedbackDistribution;
use speckle_dfa::{FeedbackScale, Init};
use speckle_runs::RunConfig;

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
