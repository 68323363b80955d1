//! The pre-alignment initialization against its definition (the backprop signal at each hidden
//! block's output equals the DFA signal there at step 0), and the feedback matrices the trainer
//! builds from the uniform and Xavier distributions.
// Index loops below mirror the formulas they check.
#![allow(clippy::needless_range_loop)]

use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use speckle_dfa::{
    Activation, AlgorithmKind, AlgorithmSpec, FeedbackScale, Init, LayerAlignment, ModelSpec,
    OptimizerSpec, Trainer,
};
use speckle_projection::{DigitalProjector, EntryDistribution};

const INPUT: usize = 100;
const CLASSES: usize = 10;

fn batch(n: usize, seed: u64) -> (Array2<f32>, Vec<u8>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x = Array2::from_shape_fn((n, INPUT), |_| rng.random_range(-1.5f32..1.5));
    let y = (0..n).map(|_| rng.random_range(0..CLASSES as u8)).collect();
    (x, y)
}

fn dfa_trainer(
    model: &ModelSpec,
    algorithm: &AlgorithmSpec,
    entries: EntryDistribution,
) -> Trainer {
    let width = if algorithm.per_layer_feedback {
        model.hidden.iter().sum()
    } else {
        model.hidden.iter().copied().max().unwrap()
    };
    let projector = DigitalProjector::with_entries(CLASSES, width, 3, entries).unwrap();
    let o = OptimizerSpec::default();
    Trainer::new(
        INPUT,
        CLASSES,
        model,
        algorithm,
        &o,
        64,
        10,
        5,
        Some(Box::new(projector)),
    )
    .unwrap()
}

fn pre_aligned(activation: Activation, batch_norm: bool, per_layer: bool) -> Trainer {
    let model = ModelSpec {
        hidden: vec![96, 80, 64],
        activation,
        batch_norm,
        init: Init::PreAlignment,
        ..ModelSpec::default()
    };
    let algorithm = AlgorithmSpec {
        per_layer_feedback: per_layer,
        ..AlgorithmSpec::default()
    };
    dfa_trainer(&model, &algorithm, EntryDistribution::Gaussian)
}

fn step0_alignment(t: &mut Trainer) -> Vec<LayerAlignment> {
    let (x, y) = batch(64, 11);
    t.alignment(x.view(), &y).unwrap()
}

#[test]
fn the_last_hidden_layer_is_aligned_exactly_for_every_activation() {
    // The backprop signal at the last hidden output is (e/n)·W_Lᵀ = c·e·B_{L−1} for every
    // input: per-sample cosine 1 up to f32 rounding (1e-6), whatever the activation, batch norm
    // or feedback layout.
    for activation in [
        Activation::Tanh,
        Activation::Sigmoid,
        Activation::Relu,
        Activation::LeakyRelu(0.1),
    ] {
        for (batch_norm, per_layer) in [(false, false), (true, false), (false, true)] {
            let mut t = pre_aligned(activation, batch_norm, per_layer);
            let a = step0_alignment(&mut t);
            let last = a.last().unwrap();
            assert!(
                1.0 - last.cosine_mean < 1e-6 && last.cosine_std < 1e-6,
                "{activation} bn={batch_norm} per_layer={per_layer}: {last:?}"
            );
        }
    }
}

#[test]
fn lower_hidden_layers_are_aligned_where_the_block_is_nearly_linear() {
    // Below the last hidden layer the definition is exact for a block whose activation
    // derivative is the same for every unit of a sample. Pre-aligned weights keep the
    // pre-activations near the biases (PyTorch's U(±1/sqrt(fan_in)), at most 0.11 here), where
    // tanh and the sigmoid are nearly linear: measured 1 − cos ≤ 6.2e-6 at these widths (2e-8
    // at 800 units); the tolerance is 1e-4. Relu-like derivatives are 0 or 1 (or the slope) by
    // each unit's sign: measured cos ≥ 0.894 here (0.989 at 800 units); the bound is 0.8.
    for (activation, tolerance) in [
        (Activation::Tanh, 1e-4),
        (Activation::Sigmoid, 1e-4),
        (Activation::Relu, 0.2),
        (Activation::LeakyRelu(0.1), 0.2),
    ] {
        for (batch_norm, per_layer) in [(false, false), (true, false), (false, true)] {
            let mut t = pre_aligned(activation, batch_norm, per_layer);
            let a = step0_alignment(&mut t);
            for (l, layer) in a[..a.len() - 1].iter().enumerate() {
                assert!(
                    1.0 - layer.cosine_mean < tolerance,
                    "{activation} bn={batch_norm} per_layer={per_layer} layer {l}: {layer:?}"
                );
            }
        }
    }
}

#[test]
fn default_init_is_not_aligned_at_step_0() {
    // The reference point: without pre-alignment, the cosine at step 0 is far from 1.
    let model = ModelSpec {
        hidden: vec![96, 80, 64],
        ..ModelSpec::default()
    };
    let mut t = dfa_trainer(
        &model,
        &AlgorithmSpec::default(),
        EntryDistribution::Gaussian,
    );
    for layer in step0_alignment(&mut t) {
        assert!(layer.cosine_mean < 0.5, "{layer:?}");
    }
}

#[test]
fn pre_aligned_weights_follow_the_definition() {
    // Layer 0 and every bias keep PyTorch's draws (bit for bit); every later weight has unit
    // Frobenius norm; the output layer's weight is the centered B_{L−1}ᵀ, normalized:
    // W_L[i][r] ∝ B[r][i] − mean_s B[s][i] (to 1e-6).
    let mut t = pre_aligned(Activation::Tanh, false, false);
    let model = ModelSpec {
        hidden: vec![96, 80, 64],
        ..ModelSpec::default()
    };
    let reference = dfa_trainer(
        &model,
        &AlgorithmSpec::default(),
        EntryDistribution::Gaussian,
    );
    let feedback = t.feedback_matrices().unwrap();
    let got = t.parameters();
    let want = reference.parameters();
    for ((name, g), (_, w)) in got.iter().zip(&want) {
        if name == "layer0.weight" || name.ends_with(".bias") {
            assert_eq!(g, w, "{name}");
        } else {
            let norm: f64 = g.iter().map(|&v| f64::from(v).powi(2)).sum();
            assert!((norm - 1.0).abs() < 1e-5, "{name}: squared norm {norm}");
        }
    }
    let b = &feedback[2];
    let d = 64;
    let mut centered = vec![0.0f64; d * CLASSES];
    for i in 0..d {
        let mean = (0..CLASSES).map(|r| f64::from(b[r * d + i])).sum::<f64>() / CLASSES as f64;
        for r in 0..CLASSES {
            centered[i * CLASSES + r] = f64::from(b[r * d + i]) - mean;
        }
    }
    let norm = centered.iter().map(|v| v * v).sum::<f64>().sqrt();
    let w_out = &got.iter().find(|(n, _)| n == "layer3.weight").unwrap().1;
    for (g, c) in w_out.iter().zip(&centered) {
        assert!(
            (f64::from(*g) - c / norm).abs() < 1e-6,
            "{g} vs {}",
            c / norm
        );
    }
}

#[test]
fn pre_alignment_needs_dfa() {
    let model = ModelSpec {
        hidden: vec![8],
        init: Init::PreAlignment,
        ..ModelSpec::default()
    };
    for kind in [AlgorithmKind::Bp, AlgorithmKind::Fa] {
        let algorithm = AlgorithmSpec {
            kind,
            ..AlgorithmSpec::default()
        };
        let o = OptimizerSpec::default();
        let e = Trainer::new(INPUT, CLASSES, &model, &algorithm, &o, 8, 10, 0, None).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("model.init = \"pre-alignment\"")
                && msg.contains(&kind.to_string())
                && !msg.contains('\n'),
            "{msg}"
        );
    }
    let parsed: ModelSpec = toml::from_str("init = \"pre-alignment\"").unwrap();
    assert_eq!(parsed.init, Init::PreAlignment);
    assert!(toml::to_string(&parsed)
        .unwrap()
        .contains("init = \"pre-alignment\""));
}

#[test]
fn a_pre_aligned_trainer_restores_bit_identically() {
    // Restoring rebuilds the trainer (pre-aligning again) and then loads the state: training
    // continues exactly as the original.
    let mut a = pre_aligned(Activation::Tanh, false, false);
    let (x, y) = batch(64, 2);
    a.train_batch(x.view(), &y).unwrap();
    let projector = DigitalProjector::new(CLASSES, 96, 3).unwrap();
    let mut b = Trainer::restore(a.state(), Some(Box::new(projector))).unwrap();
    a.train_batch(x.view(), &y).unwrap();
    b.train_batch(x.view(), &y).unwrap();
    assert_eq!(a.state(), b.state());
}

/// Mean and population variance of `values`.
fn mean_var(values: &[f32]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let var = values
        .iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / n;
    (mean, var)
}

#[test]
fn xavier_feedback_is_biotorch_xavier_uniform_per_layer() {
    // Layer i's matrix (C × d_i) has entries U(±sqrt(6/(C + d_i))): all within the bound (to
    // f32 rounding), mean 0 and variance 2/(C + d_i) within 5 standard errors of a uniform
    // sample (n = C·d_i entries: sd of the mean bound/sqrt(3n), of the variance
    // bound²·sqrt(4/45/n)).
    let model = ModelSpec {
        hidden: vec![800, 200],
        ..ModelSpec::default()
    };
    let algorithm = AlgorithmSpec {
        per_layer_feedback: true,
        feedback_scale: FeedbackScale::Xavier,
        ..AlgorithmSpec::default()
    };
    let mut t = dfa_trainer(&model, &algorithm, EntryDistribution::Uniform);
    let feedback = t.feedback_matrices().unwrap();
    for (b, &d) in feedback.iter().zip(&model.hidden) {
        assert_eq!(b.len(), CLASSES * d);
        let bound = (6.0 / (CLASSES + d) as f64).sqrt();
        assert!(b
            .iter()
            .all(|&v| f64::from(v).abs() <= bound * (1.0 + 1e-6)));
        let (mean, var) = mean_var(b);
        let n = b.len() as f64;
        assert!(
            mean.abs() < 5.0 * bound / (3.0 * n).sqrt(),
            "d={d}: mean {mean}"
        );
        let want = 2.0 / (CLASSES + d) as f64;
        let sd = bound * bound * (4.0 / 45.0 / n).sqrt();
        assert!(
            (var - want).abs() < 5.0 * sd,
            "d={d}: variance {var} vs {want}"
        );
    }
    // Per-layer: the two matrices are different parts of the projection, not one slice.
    assert_ne!(feedback[0][..200], feedback[1][..200]);
    // Pinned: the digital projector's uniform entries times sqrt(3)·sqrt(2/(C + d_i)).
    assert_eq!(&feedback[0][..3], &XAVIER_B0[..], "{:?}", &feedback[0][..3]);
    assert_eq!(&feedback[1][..3], &XAVIER_B1[..], "{:?}", &feedback[1][..3]);
}

const XAVIER_B0: [f32; 3] = [-0.06741552, 0.021166692, 0.023917146];
const XAVIER_B1: [f32; 3] = [-0.103250295, 0.044568438, 0.045675967];

#[test]
fn uniform_feedback_is_scaled_like_the_gaussian() {
    // With the seed code's normalization, layer i's entries have variance 1/(C·d_i) whatever
    // the distribution: U[−1, 1) becomes U(±sqrt(3/(C·d_i))).
    let model = ModelSpec {
        hidden: vec![800, 200],
        ..ModelSpec::default()
    };
    let mut t = dfa_trainer(
        &model,
        &AlgorithmSpec::default(),
        EntryDistribution::Uniform,
    );
    for (b, &d) in t.feedback_matrices().unwrap().iter().zip(&model.hidden) {
        let bound = (3.0 / (CLASSES * d) as f64).sqrt();
        assert!(b
            .iter()
            .all(|&v| f64::from(v).abs() <= bound * (1.0 + 1e-6)));
        let (_, var) = mean_var(b);
        let n = b.len() as f64;
        let want = 1.0 / (CLASSES * d) as f64;
        assert!(
            (var - want).abs() < 5.0 * bound * bound * (4.0 / 45.0 / n).sqrt(),
            "d={d}: variance {var} vs {want}"
        );
    }
}

#[test]
fn xavier_scale_refuses_to_be_unnormalized() {
    let algorithm = AlgorithmSpec {
        feedback_normalization: false,
        feedback_scale: FeedbackScale::Xavier,
        ..AlgorithmSpec::default()
    };
    let msg = algorithm.check().unwrap_err().to_string();
    assert!(
        msg.contains("feedback.distribution = \"xavier\"")
            && msg.contains("feedback.normalization"),
        "{msg}"
    );
}
