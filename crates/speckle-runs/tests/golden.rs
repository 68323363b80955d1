//! Golden values of whole runs through the real feedback devices: a short DFA run on a slice of
//! the bundled MNIST, with the digital projector and with the simulated 8-bit OPU (ternary and
//! levels:3 error, and the default config's levels:3:dither), must reproduce these figures bit
//! for bit. A
//! change to the trainer, the projectors, the simulator or the run loop that changes any result
//! fails here.
use speckle_runs::{run, RunConfig};

/// (test accuracy, test loss, alignment cosine means per hidden layer, device frames).
type Outcome = (f64, f64, Vec<f64>, u64);

/// A run case: the projector SPEC and, if not the default config's, the error encoding.
type Case = (&'static str, Option<&'static str>);

fn short_run((projector, encoding): Case) -> Outcome {
    let mut sets: Vec<String> = [
        "data.train_subset=1000",
        "data.test_subset=200",
        "model.hidden=[48, 32]",
        "training.epochs=2",
        "optimizer.lr=5e-3",
        "training.batch_size=50",
        "training.alignment_batch=50",
        &format!("feedback.projector={projector}"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(encoding) = encoding {
        sets.push(format!("feedback.encoding={encoding}"));
    }
    let config = RunConfig::load(None, &sets).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = run::train(
        &config,
        &dir.path().join("run"),
        false,
        run::Progress::Quiet,
    )
    .unwrap();
    let s = out.summary;
    let cos = s.alignment.iter().map(|a| a.cosine_mean).collect();
    (s.test_accuracy, s.test_loss, cos, s.device_frames)
}

#[test]
#[ignore]
fn print_golden() {
    for case in CASES {
        println!("GOLDEN {case:?} {:?}", short_run(case));
    }
}

#[test]
fn short_dfa_runs_reproduce_their_golden_values() {
    assert_eq!(golden().len(), CASES.len());
    for (case, want) in CASES.into_iter().zip(golden()) {
        let got = short_run(case);
        let bits = |(acc, loss, cos, frames): &Outcome| {
            let mut v = vec![acc.to_bits(), loss.to_bits(), *frames];
            v.extend(cos.iter().map(|c| c.to_bits()));
            v
        };
        assert_eq!(bits(&got), bits(&want), "{case:?}: {got:?} != {want:?}");
    }
}

/// The digital projector; the simulated OPU with the ternary and levels:3 encodings; the
/// default config (the simulated OPU, levels:3:dither, whose draws come from the device seed
/// and the frame index).
const CASES: [Case; 4] = [
    ("digital", None),
    ("sim", Some("ternary")),
    ("sim", Some("levels:3")),
    ("sim", None),
];

/// Values measured with this code, in the order of [`CASES`] (`cargo test -p speckle-runs
/// --test golden print_golden -- --ignored --nocapture` prints them).
fn golden() -> Vec<Outcome> {
    vec![
        (
            0.49,
            1.733803949356079,
            vec![0.23028459806918192, 0.1696186945531004],
            0,
        ),
        (
            0.225,
            2.202673933506012,
            vec![0.019318033489502867, 0.0872375602131201],
            8528,
        ),
        (
            0.475,
            1.8047272706031798,
            vec![0.20199268585783578, 0.21156780335257472],
            8784,
        ),
        (
            0.48,
            1.8002348518371583,
            vec![0.19632070274675845, 0.20799455059491184],
            8784,
        ),
    ]
}
