//! Trainer tests: gradients against finite differences and hand formulas, alignment, FA,
//! determinism across thread counts, learning, exact resume and state files.
// Index loops below mirror the formulas they check.
#![allow(clippy::needless_range_loop)]

use ndarray::{Array2, ArrayView2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use speckle_hal::{DeviceCounters, Error, ProjectorInfo, RandomProjector};

use super::*;
use crate::spec::{Activation, Init, OptimizerKind, Schedule};

/// A digital projector y = x·P with a given `input_dim × output_dim` matrix.
struct MatrixProjector {
    p: Vec<f32>,
    input_dim: usize,
    output_dim: usize,
    variance: f64,
    frames: u64,
}

impl MatrixProjector {
    fn new(p: Vec<f32>, input_dim: usize, output_dim: usize, variance: f64) -> Self {
        assert_eq!(p.len(), input_dim * output_dim);
        Self {
            p,
            input_dim,
            output_dim,
            variance,
            frames: 0,
        }
    }

    fn gaussian(input_dim: usize, output_dim: usize, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let p = (0..input_dim * output_dim)
            .map(|_| rng.sample::<f32, _>(StandardNormal))
            .collect();
        Self::new(p, input_dim, output_dim, 1.0)
    }
}

impl RandomProjector for MatrixProjector {
    fn info(&self) -> ProjectorInfo {
        ProjectorInfo::new(
            format!("test-matrix:{}x{}", self.input_dim, self.output_dim),
            self.input_dim,
            self.output_dim,
            self.variance,
        )
    }
    fn project(&mut self, input: &[f32], batch: usize, output: &mut [f32]) -> Result<(), Error> {
        speckle_hal::check_projection_buffers(&self.info(), input, batch, output)?;
        for b in 0..batch {
            for j in 0..self.output_dim {
                output[b * self.output_dim + j] = (0..self.input_dim)
                    .map(|i| input[b * self.input_dim + i] * self.p[i * self.output_dim + j])
                    .sum();
            }
        }
        self.frames += batch as u64;
        Ok(())
    }
    fn counters(&self) -> DeviceCounters {
        DeviceCounters {
            frames: self.frames,
            device_time_s: 0.0,
        }
    }
}

fn random_batch(n: usize, d: usize, classes: usize, seed: u64) -> (Array2<f32>, Vec<u8>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x = Array2::from_shape_fn((n, d), |_| rng.sample::<f32, _>(StandardNormal));
    let y = (0..n).map(|_| rng.random_range(0..classes) as u8).collect();
    (x, y)
}

fn algo(kind: AlgorithmKind) -> AlgorithmSpec {
    AlgorithmSpec {
        kind,
        ..AlgorithmSpec::default()
    }
}

fn sgd(lr: f64) -> OptimizerSpec {
    OptimizerSpec {
        kind: OptimizerKind::Sgd,
        lr,
        schedule: Schedule::Constant,
        ..OptimizerSpec::default()
    }
}

fn grad<'a>(g: &'a [(String, Vec<f32>)], name: &str) -> &'a [f32] {
    &g.iter().find(|(n, _)| n == name).expect(name).1
}

fn param(t: &Trainer, name: &str) -> Vec<f32> {
    t.parameters()
        .into_iter()
        .find(|(n, _)| n == name)
        .expect(name)
        .1
        .to_vec()
}

// ---------- f64 reference forward for finite differences ----------

struct RefLayer {
    w: Vec<f64>,
    b: Vec<f64>,
    fi: usize,
    fo: usize,
    bn: Option<(Vec<f64>, Vec<f64>)>,
}

fn ref_layers(t: &Trainer) -> Vec<RefLayer> {
    let to64 = |v: Vec<f32>| v.into_iter().map(f64::from).collect::<Vec<_>>();
    t.net
        .layers
        .iter()
        .enumerate()
        .map(|(l, layer)| RefLayer {
            w: to64(param(t, &format!("layer{l}.weight"))),
            b: to64(param(t, &format!("layer{l}.bias"))),
            fi: layer.fan_in,
            fo: layer.fan_out,
            bn: layer.bn.as_ref().map(|_| {
                (
                    to64(param(t, &format!("layer{l}.bn_gamma"))),
                    to64(param(t, &format!("layer{l}.bn_beta"))),
                )
            }),
        })
        .collect()
}

fn act64(a: Activation, x: f64) -> f64 {
    match a {
        Activation::Tanh => x.tanh(),
        Activation::Relu => x.max(0.0),
        Activation::LeakyRelu(s) => {
            if x > 0.0 {
                x
            } else {
                s as f64 * x
            }
        }
        Activation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
    }
}

/// Mean cross-entropy of the batch in train mode (batch statistics), in f64.
fn ref_loss(layers: &[RefLayer], act: Activation, x: &Array2<f32>, y: &[u8]) -> f64 {
    let n = x.nrows();
    let mut h: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    for (l, layer) in layers.iter().enumerate() {
        let mut z = vec![0.0; n * layer.fo];
        for r in 0..n {
            for j in 0..layer.fo {
                let mut s = layer.b[j];
                for i in 0..layer.fi {
                    s += h[r * layer.fi + i] * layer.w[i * layer.fo + j];
                }
                z[r * layer.fo + j] = s;
            }
        }
        if l + 1 == layers.len() {
            let c = layer.fo;
            let mut loss = 0.0;
            for r in 0..n {
                let row = &z[r * c..(r + 1) * c];
                let m = row.iter().cloned().fold(f64::MIN, f64::max);
                let lse = m + row.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
                loss += lse - row[y[r] as usize];
            }
            return loss / n as f64;
        }
        if let Some((g, b)) = &layer.bn {
            for j in 0..layer.fo {
                let mean = (0..n).map(|r| z[r * layer.fo + j]).sum::<f64>() / n as f64;
                let var = (0..n)
                    .map(|r| (z[r * layer.fo + j] - mean).powi(2))
                    .sum::<f64>()
                    / n as f64;
                for r in 0..n {
                    let v = &mut z[r * layer.fo + j];
                    *v = g[j] * (*v - mean) / (var + BN_EPS_F64).sqrt() + b[j];
                }
            }
        }
        h = z.into_iter().map(|v| act64(act, v)).collect();
    }
    unreachable!()
}

const BN_EPS_F64: f64 = crate::model::BN_EPS as f64;

fn check_bp_against_finite_differences(activation: Activation, batch_norm: bool) {
    let model = ModelSpec {
        hidden: vec![4, 3],
        activation,
        batch_norm,
        ..ModelSpec::default()
    };
    let mut t = Trainer::new(
        5,
        3,
        &model,
        &algo(AlgorithmKind::Bp),
        &sgd(0.1),
        6,
        10,
        11,
        None,
    )
    .unwrap();
    if batch_norm {
        // Non-trivial γ, β.
        for l in 0..2 {
            let w = model.hidden[l];
            let g: Vec<f32> = (0..w).map(|j| 0.8 + 0.1 * j as f32).collect();
            let b: Vec<f32> = (0..w).map(|j| 0.05 * j as f32 - 0.1).collect();
            t.set_parameter(&format!("layer{l}.bn_gamma"), &g).unwrap();
            t.set_parameter(&format!("layer{l}.bn_beta"), &b).unwrap();
        }
    }
    let (x, y) = random_batch(6, 5, 3, 5);
    let grads = t.gradients(x.view(), &y).unwrap();
    let h = 1e-6;
    let mut checked = 0;
    for (name, g) in &grads {
        for k in 0..g.len() {
            let mut plus = ref_layers(&t);
            let mut minus = ref_layers(&t);
            let (l, field) = name.split_once('.').unwrap();
            let l: usize = l.trim_start_matches("layer").parse().unwrap();
            let pick = |layers: &mut Vec<RefLayer>, delta: f64| {
                let layer = &mut layers[l];
                let v = match field {
                    "weight" => &mut layer.w[k],
                    "bias" => &mut layer.b[k],
                    "bn_gamma" => &mut layer.bn.as_mut().unwrap().0[k],
                    "bn_beta" => &mut layer.bn.as_mut().unwrap().1[k],
                    _ => unreachable!(),
                };
                *v += delta;
            };
            pick(&mut plus, h);
            pick(&mut minus, -h);
            let fd = (ref_loss(&plus, activation, &x, &y) - ref_loss(&minus, activation, &x, &y))
                / (2.0 * h);
            let got = g[k] as f64;
            assert!(
                (got - fd).abs() <= 2e-5 + 2e-3 * fd.abs(),
                "{activation} bn={batch_norm} {name}[{k}]: analytic {got} vs finite difference {fd}"
            );
            checked += 1;
        }
    }
    assert!(checked > 50);
}

#[test]
fn bp_gradients_match_finite_differences_for_every_activation() {
    for act in [
        Activation::Tanh,
        Activation::Relu,
        Activation::LeakyRelu(0.1),
        Activation::Sigmoid,
    ] {
        check_bp_against_finite_differences(act, false);
    }
}

#[test]
fn bp_gradients_match_finite_differences_with_batch_norm() {
    check_bp_against_finite_differences(Activation::Tanh, true);
    check_bp_against_finite_differences(Activation::Relu, true);
}

// ---------- DFA against the formula by hand ----------

/// 2-3-3-2 tanh network, B known: checks every gradient against the seed rule computed here.
fn check_dfa_by_hand(per_layer: bool, normalization: bool, variance: f64) {
    let classes = 2;
    let out = if per_layer { 6 } else { 3 };
    let p: Vec<f32> = (0..classes * out)
        .map(|k| ((k as f32 * 0.37).sin() * 2.0).round() / 2.0 + 0.25)
        .collect();
    let proj = MatrixProjector::new(p.clone(), classes, out, variance);
    let model = ModelSpec {
        hidden: vec![3, 3],
        ..ModelSpec::default()
    };
    let alg = AlgorithmSpec {
        kind: AlgorithmKind::Dfa,
        feedback_normalization: normalization,
        per_layer_feedback: per_layer,
        ..AlgorithmSpec::default()
    };
    let mut t = Trainer::new(
        2,
        2,
        &model,
        &alg,
        &sgd(0.1),
        4,
        10,
        3,
        Some(Box::new(proj)),
    )
    .unwrap();
    let x = Array2::from_shape_vec((4, 2), vec![0.5, -1.0, 1.5, 0.2, -0.3, 0.8, 1.0, 1.0]).unwrap();
    let y = vec![0u8, 1, 1, 0];
    let g = t.gradients(x.view(), &y).unwrap();

    // Forward by hand in f64.
    let layers = ref_layers(&t);
    let n = 4;
    let mut hs: Vec<Vec<f64>> = vec![x.iter().map(|&v| v as f64).collect()];
    for (l, layer) in layers.iter().enumerate() {
        let prev = hs.last().unwrap();
        let mut z = vec![0.0; n * layer.fo];
        for r in 0..n {
            for j in 0..layer.fo {
                z[r * layer.fo + j] = layer.b[j]
                    + (0..layer.fi)
                        .map(|i| prev[r * layer.fi + i] * layer.w[i * layer.fo + j])
                        .sum::<f64>();
            }
        }
        if l < 2 {
            z.iter_mut().for_each(|v| *v = v.tanh());
        }
        hs.push(z);
    }
    let logits = &hs[3];
    let mut e = vec![0.0; n * 2];
    for r in 0..n {
        let m = logits[r * 2].max(logits[r * 2 + 1]);
        let s: f64 = (0..2).map(|j| (logits[r * 2 + j] - m).exp()).sum();
        for j in 0..2 {
            e[r * 2 + j] =
                (logits[r * 2 + j] - m).exp() / s - if y[r] as usize == j { 1.0 } else { 0.0 };
        }
    }
    // Output layer: mean-reduced true gradient.
    for i in 0..3 {
        for j in 0..2 {
            let want: f64 = (0..n).map(|r| hs[2][r * 3 + i] * e[r * 2 + j]).sum::<f64>() / n as f64;
            let got = grad(&g, "layer2.weight")[i * 2 + j] as f64;
            assert!(
                (got - want).abs() < 1e-5,
                "layer2.weight[{i},{j}] {got} vs {want}"
            );
        }
    }
    // Hidden layers: δ_i = scale·(e·B_i) ⊙ (1 − h_i²), summed over the batch (not divided by n).
    for l in 0..2 {
        let off = if per_layer { 3 * l } else { 0 };
        let norm = if normalization {
            1.0 / ((2 * 3) as f64).sqrt()
        } else {
            1.0
        };
        let scale = norm / variance.sqrt();
        let fi = layers[l].fi;
        let mut delta = vec![0.0; n * 3];
        for r in 0..n {
            for j in 0..3 {
                let be: f64 = (0..2)
                    .map(|c| e[r * 2 + c] * p[c * out + off + j] as f64)
                    .sum();
                let hv = hs[l + 1][r * 3 + j];
                delta[r * 3 + j] = scale * be * (1.0 - hv * hv);
            }
        }
        for i in 0..fi {
            for j in 0..3 {
                let want: f64 = (0..n).map(|r| hs[l][r * fi + i] * delta[r * 3 + j]).sum();
                let got = grad(&g, &format!("layer{l}.weight"))[i * 3 + j] as f64;
                assert!(
                    (got - want).abs() < 1e-5,
                    "layer{l}.weight[{i},{j}] {got} vs {want}"
                );
            }
        }
        for j in 0..3 {
            let want: f64 = (0..n).map(|r| delta[r * 3 + j]).sum();
            let got = grad(&g, &format!("layer{l}.bias"))[j] as f64;
            assert!(
                (got - want).abs() < 1e-5,
                "layer{l}.bias[{j}] {got} vs {want}"
            );
        }
    }
}

#[test]
fn dfa_gradients_equal_the_seed_rule_by_hand() {
    check_dfa_by_hand(false, true, 1.0);
    check_dfa_by_hand(false, false, 4.0);
    check_dfa_by_hand(true, true, 0.25);
}

#[test]
fn a_training_step_applies_the_optimizer_to_the_gradients() {
    // The step computes each weight gradient tile by tile where the optimizer consumes it
    // (several tiles here: 80 input rows); the result must be the optimizer applied to the
    // gradients of the same batch computed whole.
    let (x, y) = random_batch(64, 80, 10, 11);
    let opts = [
        OptimizerSpec {
            weight_decay: 0.01,
            ..sgd(0.1)
        },
        OptimizerSpec {
            lr: 0.01,
            schedule: Schedule::Constant,
            ..OptimizerSpec::default()
        },
    ];
    for kind in [AlgorithmKind::Bp, AlgorithmKind::Fa, AlgorithmKind::Dfa] {
        for opt in &opts {
            let model = ModelSpec {
                hidden: vec![48, 40],
                ..ModelSpec::default()
            };
            let mut reference = make_trainer(kind, &model, opt);
            let mut stepped = make_trainer(kind, &model, opt);
            let before = reference.state();
            let grads = reference.gradients(x.view(), &y).unwrap();
            stepped.train_batch(x.view(), &y).unwrap();
            for (name, g) in &grads {
                let w0 = &before.arrays.iter().find(|(n, _)| n == name).unwrap().1;
                let w1 = param(&stepped, name);
                for (k, ((&w0, &g), &w1)) in w0.iter().zip(g).zip(&w1).enumerate() {
                    let (w0, g) = (w0 as f64, g as f64);
                    let want = match opt.kind {
                        OptimizerKind::Sgd => w0 - opt.lr * (g + opt.weight_decay * w0),
                        // First Adam step: bias-corrected m/sqrt(v) is g/|g|.
                        OptimizerKind::Adam => w0 - opt.lr * g / (g.abs() + opt.eps),
                    };
                    assert!(
                        (w1 as f64 - want).abs() < 1e-5 * (1.0 + want.abs()),
                        "{kind} {:?} {name}[{k}]: {w1} vs {want}",
                        opt.kind
                    );
                }
            }
        }
    }
}

#[test]
fn the_masked_bottleneck_keeps_a_fixed_fraction_of_the_middle_layer_updates() {
    // 20-16-[12]-10-3, layer 2 masked to b = 3 of 12 units: a quarter of its weight, bias and
    // input-gradient entries are updated, always the same ones, for every algorithm.
    let (x, y) = random_batch(32, 20, 3, 12);
    let model = ModelSpec {
        hidden: vec![16, 12, 10],
        masked_layer: 2,
        masked_units: 3,
        ..ModelSpec::default()
    };
    for (layer, units, want) in [
        (4, 3, "model.masked_layer = 4"),
        (2, 0, "model.masked_units = 0"),
        (2, 13, "model.masked_units = 13"),
        (0, 3, "model.masked_units = 3 has no effect"),
    ] {
        let bad = ModelSpec {
            masked_layer: layer,
            masked_units: units,
            ..model.clone()
        };
        let err = bad.check().unwrap_err().to_string();
        assert!(err.contains(want) && !err.contains('\n'), "{err}");
    }
    for kind in [AlgorithmKind::Bp, AlgorithmKind::Fa, AlgorithmKind::Dfa] {
        let make = || {
            let projector: Option<Box<dyn RandomProjector + Send>> = (kind == AlgorithmKind::Dfa)
                .then(|| Box::new(MatrixProjector::gaussian(3, 16, 4)) as _);
            Trainer::new(20, 3, &model, &algo(kind), &sgd(0.1), 32, 10, 5, projector).unwrap()
        };
        let unmasked = |t: &mut Trainer, name: &str| -> Vec<bool> {
            let g = t.gradients(x.view(), &y).unwrap();
            grad(&g, name).iter().map(|&v| v != 0.0).collect()
        };
        let mut t = make();
        let w = unmasked(&mut t, "layer1.weight");
        let b = unmasked(&mut t, "layer1.bias");
        assert_eq!(w.iter().filter(|&&k| k).count(), 16 * 12 / 4, "{kind}");
        assert_eq!(b.iter().filter(|&&k| k).count(), 3, "{kind}");
        // The same entries on another batch and after steps; the layers around are unmasked.
        let (x2, y2) = random_batch(32, 20, 3, 13);
        t.train_batch(x2.view(), &y2).unwrap();
        assert_eq!(unmasked(&mut t, "layer1.weight"), w, "{kind}");
        assert!(unmasked(&mut t, "layer2.weight").iter().all(|&k| k));
        // A step leaves the masked-out weights where they were (SGD without weight decay).
        let before = param(&t, "layer1.weight");
        t.train_batch(x.view(), &y).unwrap();
        let after = param(&t, "layer1.weight");
        for ((a, b), &keep) in before.iter().zip(&after).zip(&w) {
            assert!(keep || a == b, "{kind}: a masked weight moved");
        }
        if kind == AlgorithmKind::Bp {
            // The gradient layer 2 passes down goes through its input mask: layer 1's gradient
            // lives in the kept input columns only (round(16 · 3/12) = 4 of 16 units).
            let g = t.gradients(x.view(), &y).unwrap();
            let g0 = grad(&g, "layer0.bias");
            assert_eq!(g0.iter().filter(|&&v| v != 0.0).count(), 4, "{g0:?}");
        }
    }
}

#[test]
fn dfa_hidden_updates_are_batch_sums_and_the_output_layer_a_batch_mean() {
    // Duplicating every sample doubles the hidden gradients and leaves the output layer's.
    let model = ModelSpec {
        hidden: vec![8, 6],
        ..ModelSpec::default()
    };
    let make = || {
        Trainer::new(
            5,
            3,
            &model,
            &algo(AlgorithmKind::Dfa),
            &sgd(0.1),
            8,
            10,
            9,
            Some(Box::new(MatrixProjector::gaussian(3, 8, 1))),
        )
        .unwrap()
    };
    let (x, y) = random_batch(4, 5, 3, 2);
    let x2 = ndarray::concatenate(ndarray::Axis(0), &[x.view(), x.view()]).unwrap();
    let y2: Vec<u8> = y.iter().chain(&y).copied().collect();
    let g1 = make().gradients(x.view(), &y).unwrap();
    let g2 = make().gradients(x2.view(), &y2).unwrap();
    for (name, factor) in [
        ("layer0.weight", 2.0),
        ("layer1.bias", 2.0),
        ("layer2.weight", 1.0),
        ("layer2.bias", 1.0),
    ] {
        for (a, b) in grad(&g1, name).iter().zip(grad(&g2, name)) {
            assert!(
                (a * factor - b).abs() < 1e-5 * (1.0 + b.abs()),
                "{name}: {a} vs {b}"
            );
        }
    }
}

// ---------- FA and alignment ----------

#[test]
fn fa_propagates_through_its_fixed_matrices() {
    let model = ModelSpec {
        hidden: vec![4],
        ..ModelSpec::default()
    };
    let mut t = Trainer::new(
        3,
        2,
        &model,
        &algo(AlgorithmKind::Fa),
        &sgd(0.5),
        5,
        10,
        4,
        None,
    )
    .unwrap();
    let b_before = t.fa[1].clone();
    assert_eq!(b_before.len(), 4 * 2);
    assert!(t.fa[0].is_empty());
    let (x, y) = random_batch(5, 3, 2, 8);
    // Gradient of layer 0 with W1 replaced by B1 in the chain: swap W1 ↔ B1 and run BP.
    let g_fa = t.gradients(x.view(), &y).unwrap();
    let w1 = param(&t, "layer1.weight");
    let mut bp = Trainer::new(
        3,
        2,
        &model,
        &algo(AlgorithmKind::Bp),
        &sgd(0.5),
        5,
        10,
        4,
        None,
    )
    .unwrap();
    // Same init stream, so same weights.
    assert_eq!(param(&bp, "layer0.weight"), param(&t, "layer0.weight"));
    let g_bp = bp.gradients(x.view(), &y).unwrap();
    // The last layer's gradient is the true one in both.
    assert_eq!(grad(&g_fa, "layer1.weight"), grad(&g_bp, "layer1.weight"));
    assert_ne!(grad(&g_fa, "layer0.weight"), grad(&g_bp, "layer0.weight"));
    // Manually: δ0 = (e/n · B1ᵀ) ⊙ f'(h0).
    let layers = ref_layers(&t);
    let n = 5;
    let h0: Vec<f64> = (0..n * 4)
        .map(|k| {
            let (r, j) = (k / 4, k % 4);
            ((0..3)
                .map(|i| x[[r, i]] as f64 * layers[0].w[i * 4 + j])
                .sum::<f64>()
                + layers[0].b[j])
                .tanh()
        })
        .collect();
    let mut e = vec![0.0; n * 2];
    for r in 0..n {
        let z: Vec<f64> = (0..2)
            .map(|c| {
                layers[1].b[c]
                    + (0..4)
                        .map(|j| h0[r * 4 + j] * layers[1].w[j * 2 + c])
                        .sum::<f64>()
            })
            .collect();
        let m = z[0].max(z[1]);
        let s: f64 = z.iter().map(|v| (v - m).exp()).sum();
        for c in 0..2 {
            e[r * 2 + c] =
                ((z[c] - m).exp() / s - if y[r] as usize == c { 1.0 } else { 0.0 }) / n as f64;
        }
    }
    for i in 0..3 {
        for j in 0..4 {
            let want: f64 = (0..n)
                .map(|r| {
                    let back: f64 = (0..2)
                        .map(|c| e[r * 2 + c] * b_before[j * 2 + c] as f64)
                        .sum();
                    x[[r, i]] as f64 * back * (1.0 - h0[r * 4 + j].powi(2))
                })
                .sum();
            let got = grad(&g_fa, "layer0.weight")[i * 4 + j] as f64;
            assert!((got - want).abs() < 1e-6, "[{i},{j}] {got} vs {want}");
        }
    }
    // Training changes W but never B.
    for _ in 0..3 {
        t.train_batch(x.view(), &y).unwrap();
    }
    assert_eq!(t.fa[1], b_before);
    assert_ne!(param(&t, "layer1.weight"), w1);
}

#[test]
fn bp_alignment_with_itself_is_one() {
    let model = ModelSpec {
        hidden: vec![16, 12, 12],
        batch_norm: true,
        dropout_hidden: 0.2,
        ..ModelSpec::default()
    };
    let mut t = Trainer::new(
        6,
        4,
        &model,
        &algo(AlgorithmKind::Bp),
        &OptimizerSpec::default(),
        16,
        10,
        1,
        None,
    )
    .unwrap();
    let (x, y) = random_batch(16, 6, 4, 3);
    t.train_batch(x.view(), &y).unwrap();
    let params = t.state();
    let a = t.alignment(x.view(), &y).unwrap();
    assert_eq!(a.len(), 3);
    for l in &a {
        assert!((l.cosine_mean - 1.0).abs() < 1e-6, "{l:?}");
        assert!(l.cosine_std < 1e-6, "{l:?}");
        assert!((l.weight_cosine - 1.0).abs() < 1e-6, "{l:?}");
        assert!(l.weight_angle_deg < 0.1, "{l:?}");
    }
    // Measuring changes nothing.
    assert_eq!(t.state(), params);
}

#[test]
fn dfa_alignment_is_a_cosine_and_starts_near_zero() {
    let model = ModelSpec {
        hidden: vec![64, 64],
        ..ModelSpec::default()
    };
    let mut t = Trainer::new(
        20,
        5,
        &model,
        &algo(AlgorithmKind::Dfa),
        &OptimizerSpec::default(),
        64,
        10,
        1,
        Some(Box::new(MatrixProjector::gaussian(5, 64, 2))),
    )
    .unwrap();
    let (x, y) = random_batch(64, 20, 5, 3);
    let a = t.alignment(x.view(), &y).unwrap();
    assert_eq!(a.len(), 2);
    for l in &a {
        assert!(l.cosine_mean.abs() < 0.5, "{l:?}");
        assert!((-1.0..=1.0).contains(&l.weight_cosine));
        assert!((l.weight_angle_deg - l.weight_cosine.acos().to_degrees()).abs() < 1e-9);
    }
}

// ---------- learning ----------

/// Ten Gaussian blobs in 20 dimensions.
fn blobs(n: usize, seed: u64) -> (Array2<f32>, Vec<u8>) {
    let mut centers = ChaCha8Rng::seed_from_u64(1234);
    let c: Vec<f32> = (0..10 * 20)
        .map(|_| centers.sample::<f32, _>(StandardNormal) * 1.5)
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let y: Vec<u8> = (0..n).map(|_| rng.random_range(0..10u8)).collect();
    let x = Array2::from_shape_fn((n, 20), |(r, j)| {
        c[y[r] as usize * 20 + j] + rng.sample::<f32, _>(StandardNormal)
    });
    (x, y)
}

fn train_on_blobs(kind: AlgorithmKind, model: ModelSpec) -> f64 {
    let (x, y) = blobs(2000, 1);
    let (xt, yt) = blobs(1000, 2);
    let batch = 50;
    let epochs = 5;
    let steps = (x.nrows() / batch * epochs) as u64;
    let projector: Option<Box<dyn RandomProjector + Send>> =
        (kind == AlgorithmKind::Dfa).then(|| Box::new(MatrixProjector::gaussian(10, 64, 9)) as _);
    let opt = OptimizerSpec {
        lr: 3e-3,
        ..OptimizerSpec::default()
    };
    let mut t = Trainer::new(
        20,
        10,
        &model,
        &algo(kind),
        &opt,
        batch,
        steps,
        5,
        projector,
    )
    .unwrap();
    for _ in 0..epochs {
        for s in (0..x.nrows()).step_by(batch) {
            t.train_batch(x.slice(ndarray::s![s..s + batch, ..]), &y[s..s + batch])
                .unwrap();
        }
    }
    t.evaluate(xt.view(), &yt).unwrap().accuracy
}

#[test]
fn every_algorithm_learns_separable_blobs() {
    let model = ModelSpec {
        hidden: vec![64, 64],
        ..ModelSpec::default()
    };
    for kind in [AlgorithmKind::Bp, AlgorithmKind::Fa, AlgorithmKind::Dfa] {
        let acc = train_on_blobs(kind, model.clone());
        assert!(acc > 0.9, "{kind}: test accuracy {acc}");
    }
    // DFA with Nøkland's zero init, batch norm and dropout also learns.
    let model = ModelSpec {
        hidden: vec![64, 64],
        init: Init::Zero,
        ..ModelSpec::default()
    };
    let acc = train_on_blobs(AlgorithmKind::Dfa, model);
    assert!(acc > 0.9, "dfa zero init: {acc}");
    let model = ModelSpec {
        hidden: vec![64, 64],
        batch_norm: true,
        dropout_input: 0.1,
        dropout_hidden: 0.1,
        activation: Activation::Relu,
        ..ModelSpec::default()
    };
    let acc = train_on_blobs(AlgorithmKind::Dfa, model);
    assert!(acc > 0.9, "dfa bn+dropout: {acc}");
}

// ---------- determinism and resume ----------

fn run_steps(t: &mut Trainer, x: &Array2<f32>, y: &[u8], from: usize, to: usize, batch: usize) {
    for s in from..to {
        let start = (s * batch) % (x.nrows() - batch + 1);
        t.train_batch(
            x.slice(ndarray::s![start..start + batch, ..]),
            &y[start..start + batch],
        )
        .unwrap();
    }
}

fn big_model() -> ModelSpec {
    ModelSpec {
        hidden: vec![96, 128],
        batch_norm: true,
        dropout_input: 0.1,
        dropout_hidden: 0.2,
        ..ModelSpec::default()
    }
}

fn make_trainer(kind: AlgorithmKind, model: &ModelSpec, opt: &OptimizerSpec) -> Trainer {
    let projector: Option<Box<dyn RandomProjector + Send>> =
        (kind == AlgorithmKind::Dfa).then(|| Box::new(MatrixProjector::gaussian(10, 256, 4)) as _);
    Trainer::new(80, 10, model, &algo(kind), opt, 64, 100, 21, projector).unwrap()
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    let (x, y) = random_batch(256, 80, 10, 6);
    for kind in [AlgorithmKind::Bp, AlgorithmKind::Fa, AlgorithmKind::Dfa] {
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let mut t = make_trainer(kind, &big_model(), &OptimizerSpec::default());
                run_steps(&mut t, &x, &y, 0, 4, 64);
                let a = t
                    .alignment(x.slice(ndarray::s![..64, ..]), &y[..64])
                    .unwrap();
                (t.state(), a)
            })
        };
        let (s1, a1) = run(1);
        let (s2, a2) = run(2);
        assert!(s1 == s2, "{kind}: states differ between 1 and 2 threads");
        assert_eq!(a1, a2);
    }
}

/// DFA training updates the layers concurrently (one parallel region for every layer's δ and
/// update) where the δ buffers are small, and layer by layer over the activations otherwise:
/// both give the same bits, with hidden dropout, a masked bottleneck, Adam and SGD momentum,
/// every activation, on 1, 2 and 3 threads.
#[test]
fn concurrent_dfa_updates_equal_the_layer_by_layer_pass() {
    let (x, y) = random_batch(256, 80, 10, 9);
    let plain = ModelSpec {
        hidden: vec![96, 128, 64],
        ..ModelSpec::default()
    };
    let dropout = ModelSpec {
        dropout_input: 0.1,
        dropout_hidden: 0.3,
        ..plain.clone()
    };
    let masked = ModelSpec {
        masked_layer: 2,
        masked_units: 16,
        ..plain.clone()
    };
    let momentum = OptimizerSpec {
        momentum: 0.9,
        ..sgd(0.05)
    };
    // Every activation's derivative, without dropout (the vectorized pass) and with it.
    let activations: Vec<ModelSpec> = [
        Activation::Relu,
        Activation::LeakyRelu(0.1),
        Activation::Sigmoid,
    ]
    .into_iter()
    .flat_map(|activation| {
        [&plain, &dropout].map(|base| ModelSpec {
            activation,
            ..base.clone()
        })
    })
    .collect();
    let mut cases = vec![
        (&plain, OptimizerSpec::default()),
        (&dropout, OptimizerSpec::default()),
        (&masked, momentum.clone()),
        (&plain, momentum),
    ];
    cases.extend(activations.iter().map(|m| (m, OptimizerSpec::default())));
    for (model, opt) in cases {
        let run = |threads: usize, concurrent: bool| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let mut t = make_trainer(AlgorithmKind::Dfa, model, &opt);
                if !concurrent {
                    t.net.concurrent_delta_max = 0;
                }
                run_steps(&mut t, &x, &y, 0, 5, 64);
                t.state()
            })
        };
        let layer_by_layer = run(2, false);
        for threads in [1, 2, 3] {
            assert!(
                run(threads, true) == layer_by_layer,
                "{model:?}, {threads} threads: concurrent updates differ"
            );
        }
    }
}

/// A hidden layer wide enough for the wide-layer paths: products over a long inner dimension
/// (the logits; BP's and FA's gradient into the narrow layer) in chunks of k, products in
/// column bands (BP's and FA's gradient into the wide layer), the fused update in column
/// blocks, column sums in parallel blocks, DFA's delta over the activation, evaluation on the
/// training buffers.
#[test]
fn wide_layers_do_not_depend_on_the_thread_count() {
    let width = 1 << 16;
    let (x, y) = random_batch(64, 20, 10, 8);
    let model = ModelSpec {
        hidden: vec![16, width],
        ..ModelSpec::default()
    };
    for kind in [AlgorithmKind::Dfa, AlgorithmKind::Bp, AlgorithmKind::Fa] {
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let projector: Option<Box<dyn RandomProjector + Send>> = (kind
                    == AlgorithmKind::Dfa)
                    .then(|| Box::new(MatrixProjector::gaussian(10, width, 5)) as _);
                let opt = OptimizerSpec::default();
                let mut t =
                    Trainer::new(20, 10, &model, &algo(kind), &opt, 32, 10, 3, projector).unwrap();
                run_steps(&mut t, &x, &y, 0, 2, 32);
                let a = t
                    .alignment(x.slice(ndarray::s![..32, ..]), &y[..32])
                    .unwrap();
                let e = t.evaluate(x.view(), &y).unwrap();
                (t.state(), a, e)
            })
        };
        let (s1, a1, e1) = run(1);
        let (s2, a2, e2) = run(2);
        assert!(s1 == s2, "{kind}: states differ between 1 and 2 threads");
        assert_eq!(a1, a2, "{kind}");
        assert_eq!(e1, e2, "{kind}");
        assert!(e1.loss.is_finite() && a1.iter().all(|l| l.cosine_mean.is_finite()));
    }
}

#[test]
fn restore_continues_bit_identically() {
    let (x, y) = random_batch(256, 80, 10, 7);
    for (kind, opt) in [
        (AlgorithmKind::Dfa, OptimizerSpec::default()),
        (
            AlgorithmKind::Fa,
            OptimizerSpec {
                kind: OptimizerKind::Sgd,
                lr: 0.01,
                momentum: 0.9,
                nesterov: true,
                weight_decay: 1e-4,
                ..OptimizerSpec::default()
            },
        ),
    ] {
        let mut straight = make_trainer(kind, &big_model(), &opt);
        run_steps(&mut straight, &x, &y, 0, 6, 64);

        let mut first = make_trainer(kind, &big_model(), &opt);
        run_steps(&mut first, &x, &y, 0, 3, 64);
        let loaded = first.state();
        drop(first);
        let projector: Option<Box<dyn RandomProjector + Send>> = (kind == AlgorithmKind::Dfa)
            .then(|| Box::new(MatrixProjector::gaussian(10, 256, 4)) as _);
        let mut resumed = Trainer::restore(loaded, projector).unwrap();
        assert_eq!(resumed.step(), 3);
        run_steps(&mut resumed, &x, &y, 3, 6, 64);
        let (a, b) = (straight.state(), resumed.state());
        assert_eq!(a.arrays, b.arrays, "{kind}");
        assert_eq!(a.meta.dropout_word_pos, b.meta.dropout_word_pos);
    }
}

/// A pre-aligned run resumes bit-identically, and restoring it does not pre-align again: the
/// state's weights replace the initial ones, so the restored trainer projects nothing before
/// its first step.
#[test]
fn restore_of_a_pre_aligned_run_does_not_project_before_stepping() {
    let (x, y) = random_batch(256, 80, 10, 9);
    let model = ModelSpec {
        hidden: vec![96, 128],
        init: Init::PreAlignment,
        ..ModelSpec::default()
    };
    let opt = OptimizerSpec::default();
    let fresh = make_trainer(AlgorithmKind::Dfa, &model, &opt);
    assert_eq!(
        fresh.counters().frames,
        10,
        "pre-alignment projects the C unit vectors"
    );
    let mut straight = make_trainer(AlgorithmKind::Dfa, &model, &opt);
    run_steps(&mut straight, &x, &y, 0, 4, 64);
    let mut first = make_trainer(AlgorithmKind::Dfa, &model, &opt);
    run_steps(&mut first, &x, &y, 0, 2, 64);
    let projector: Option<Box<dyn RandomProjector + Send>> =
        Some(Box::new(MatrixProjector::gaussian(10, 256, 4)));
    let mut resumed = Trainer::restore(first.state(), projector).unwrap();
    assert_eq!(resumed.counters().frames, 0);
    run_steps(&mut resumed, &x, &y, 2, 4, 64);
    assert_eq!(straight.state().arrays, resumed.state().arrays);
}

#[test]
fn restore_checks_the_projector_identity_and_shapes() {
    let t = make_trainer(AlgorithmKind::Dfa, &big_model(), &OptimizerSpec::default());
    let other = Box::new(MatrixProjector::gaussian(10, 300, 4));
    let err = Trainer::restore(t.state(), Some(other))
        .unwrap_err()
        .to_string();
    assert!(err.contains("projector"), "{err}");
    let mut bp = make_trainer(AlgorithmKind::Bp, &big_model(), &OptimizerSpec::default());
    let err = bp.load_state(t.state()).unwrap_err().to_string();
    assert!(err.contains("algorithm"), "{err}");
}

// ---------- errors ----------

#[test]
fn mismatches_are_errors() {
    let m = ModelSpec {
        hidden: vec![10, 20],
        ..ModelSpec::default()
    };
    let o = OptimizerSpec::default();
    let dfa = algo(AlgorithmKind::Dfa);
    let small = Box::new(MatrixProjector::gaussian(3, 19, 1));
    let e = Trainer::new(4, 3, &m, &dfa, &o, 8, 10, 0, Some(small)).unwrap_err();
    assert!(e.to_string().contains("needs at least 20"), "{e}");
    let per_layer = AlgorithmSpec {
        per_layer_feedback: true,
        ..dfa.clone()
    };
    let e = Trainer::new(
        4,
        3,
        &m,
        &per_layer,
        &o,
        8,
        10,
        0,
        Some(Box::new(MatrixProjector::gaussian(3, 20, 1))),
    )
    .unwrap_err();
    assert!(e.to_string().contains("needs at least 30"), "{e}");
    let e = Trainer::new(
        4,
        3,
        &m,
        &dfa,
        &o,
        8,
        10,
        0,
        Some(Box::new(MatrixProjector::gaussian(4, 30, 1))),
    )
    .unwrap_err();
    assert!(e.to_string().contains("3 classes"), "{e}");
    assert!(Trainer::new(4, 3, &m, &dfa, &o, 8, 10, 0, None).is_err());
    let e = Trainer::new(
        4,
        3,
        &m,
        &algo(AlgorithmKind::Bp),
        &o,
        8,
        10,
        0,
        Some(Box::new(MatrixProjector::gaussian(3, 30, 1))),
    )
    .unwrap_err();
    assert!(e.to_string().contains("bp uses no random projector"), "{e}");
    let bad_model = ModelSpec {
        dropout_hidden: 1.0,
        ..ModelSpec::default()
    };
    assert!(Trainer::new(
        4,
        3,
        &bad_model,
        &algo(AlgorithmKind::Bp),
        &o,
        8,
        10,
        0,
        None
    )
    .is_err());

    let mut t = Trainer::new(4, 3, &m, &algo(AlgorithmKind::Bp), &o, 8, 10, 0, None).unwrap();
    let x = Array2::<f32>::zeros((2, 4));
    let e = t.train_batch(x.view(), &[0, 3]).unwrap_err();
    assert!(e.to_string().contains("label 3"), "{e}");
    let e = t.train_batch(x.view(), &[0]).unwrap_err();
    assert!(e.to_string().contains("labels"), "{e}");
    let x5 = Array2::<f32>::zeros((2, 5));
    assert!(t.evaluate(x5.view(), &[0, 1]).is_err());
    assert!(t
        .alignment(ArrayView2::from_shape((0, 4), &[]).unwrap(), &[])
        .is_err());
}

#[test]
fn a_non_finite_loss_is_reported_as_divergence_without_touching_the_weights() {
    let m = ModelSpec {
        hidden: vec![5],
        ..ModelSpec::default()
    };
    let mut t = Trainer::new(
        4,
        3,
        &m,
        &algo(AlgorithmKind::Bp),
        &sgd(0.1),
        8,
        10,
        0,
        None,
    )
    .unwrap();
    let x = Array2::from_elem((2, 4), f32::INFINITY);
    let before = t.state();
    let e = t.train_batch(x.view(), &[0, 1]).unwrap_err();
    assert!(matches!(e, DfaError::Diverged { step: 0, .. }), "{e}");
    assert_eq!(t.state(), before);
}

#[test]
fn last_partial_and_oversized_batches_work() {
    let mut t = make_trainer(AlgorithmKind::Dfa, &big_model(), &OptimizerSpec::default());
    let (x, y) = random_batch(100, 80, 10, 1);
    let s = t
        .train_batch(x.slice(ndarray::s![..37, ..]), &y[..37])
        .unwrap();
    assert_eq!(s.count, 37);
    let s = t.train_batch(x.view(), &y).unwrap();
    assert_eq!(s.count, 100);
    assert!(t.counters().frames >= 137);
    let transposed = x.t().to_owned();
    let xt = transposed.t();
    let a = t.evaluate(xt, &y).unwrap();
    let b = t.evaluate(x.view(), &y).unwrap();
    assert_eq!(a, b);
}
