//! Optimizers (SGD with momentum / Nesterov, Adam) and learning-rate schedules, with PyTorch's
//! update rules.
//!
//! Each parameter tensor is a [`Param`]: value, gradient and up to two moment buffers. The update
//! is one fused pass per tensor, split over rayon threads in fixed chunks (elementwise, so the
//! result does not depend on the thread count).
//!
//! ```
//! use speckle_dfa::optim::learning_rate;
//! use speckle_dfa::{OptimizerSpec, Schedule};
//!
//! let spec = OptimizerSpec { lr: 0.1, schedule: Schedule::Cosine, ..OptimizerSpec::default() };
//! assert_eq!(learning_rate(&spec, 0, 100), 0.1);
//! assert!((learning_rate(&spec, 50, 100) - 0.05).abs() < 1e-12);
//! ```

use rayon::prelude::*;

use crate::spec::{OptimizerKind, OptimizerSpec, Schedule};

/// One parameter tensor with its gradient and optimizer moments (flat, row-major).
#[derive(Debug, Clone)]
pub(crate) struct Param {
    pub value: Vec<f32>,
    pub grad: Vec<f32>,
    /// SGD momentum buffer or Adam first moment (empty when unused).
    pub m1: Vec<f32>,
    /// Adam second moment (empty when unused).
    pub m2: Vec<f32>,
}

impl Param {
    pub fn new(value: Vec<f32>, spec: &OptimizerSpec) -> Self {
        let n = value.len();
        let (m1, m2) = match spec.kind {
            OptimizerKind::Sgd if spec.momentum > 0.0 => (zeros_touched(n), Vec::new()),
            OptimizerKind::Sgd => (Vec::new(), Vec::new()),
            OptimizerKind::Adam => (zeros_touched(n), zeros_touched(n)),
        };
        Self {
            value,
            grad: zeros_touched(n),
            m1,
            m2,
        }
    }
}

/// `n` zeros, written one by one so that the pages are mapped now: `vec![0.0; n]` maps them
/// lazily, and the first training step would pay a page fault (and a TLB shootdown) per 4 KiB.
pub(crate) fn zeros_touched(n: usize) -> Vec<f32> {
    let mut v = Vec::with_capacity(n);
    v.extend(std::iter::repeat_n(0.0f32, n));
    v
}

/// Learning rate for 0-based step `step` of `total_steps` under the spec's schedule and warm-up.
/// Past `total_steps` the last value is kept.
pub fn learning_rate(spec: &OptimizerSpec, step: u64, total_steps: u64) -> f64 {
    let total = total_steps.max(1) as f64;
    let t = (step as f64).min(total - 1.0).max(0.0);
    let warm = (spec.warmup_fraction * total).floor();
    if t < warm {
        return spec.lr * (t + 1.0) / warm;
    }
    match spec.schedule {
        Schedule::Constant => spec.lr,
        Schedule::Cosine => {
            let span = (total - warm).max(1.0);
            0.5 * spec.lr * (1.0 + (std::f64::consts::PI * (t - warm) / span).cos())
        }
    }
}

/// Per-step scalars of the update, computed once per step in f64.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StepScalars {
    kind: OptimizerKind,
    lr: f32,
    weight_decay: f32,
    momentum: f32,
    nesterov: bool,
    /// First SGD momentum step: the buffer is set to the gradient (PyTorch).
    first: bool,
    beta1: f32,
    beta2: f32,
    /// lr / (1 − β1^t)
    adam_step: f32,
    /// 1 / sqrt(1 − β2^t)
    adam_v_scale: f32,
    eps: f32,
}

impl StepScalars {
    /// Scalars for 0-based step `step`.
    pub fn new(spec: &OptimizerSpec, step: u64, total_steps: u64) -> Self {
        let lr = learning_rate(spec, step, total_steps);
        let t = (step + 1).min(i32::MAX as u64) as i32;
        let bc1 = 1.0 - spec.beta1.powi(t);
        let bc2 = 1.0 - spec.beta2.powi(t);
        Self {
            kind: spec.kind,
            lr: lr as f32,
            weight_decay: spec.weight_decay as f32,
            momentum: spec.momentum as f32,
            nesterov: spec.nesterov,
            first: step == 0,
            beta1: spec.beta1 as f32,
            beta2: spec.beta2 as f32,
            adam_step: (lr / bc1) as f32,
            adam_v_scale: (1.0 / bc2.sqrt()) as f32,
            eps: spec.eps as f32,
        }
    }

    /// Applies the update to one parameter from its `grad`.
    pub fn update(&self, p: &mut Param) {
        const CHUNK: usize = 1 << 14;
        self.update_tiles(p, CHUNK, |_, _| {});
    }

    /// Applies the update tile by tile: tile `t` covers values `t·tile .. (t+1)·tile`, and
    /// `fill_grad(t, grad_tile)` writes that tile's gradient just before the tile is updated,
    /// so the gradient is consumed while it is still in cache. Tiles run in parallel; the
    /// result does not depend on the thread count as long as `fill_grad` is deterministic.
    pub fn update_tiles<F>(&self, p: &mut Param, tile: usize, fill_grad: F)
    where
        F: Fn(usize, &mut [f32]) + Sync,
    {
        let s = *self;
        let tile = tile.max(1);
        match s.kind {
            OptimizerKind::Sgd if s.momentum == 0.0 => {
                p.value
                    .par_chunks_mut(tile)
                    .zip(p.grad.par_chunks_mut(tile))
                    .enumerate()
                    .for_each(|(t, (w, g))| {
                        fill_grad(t, g);
                        sgd_chunk(&s, w, g)
                    });
            }
            OptimizerKind::Sgd => {
                p.value
                    .par_chunks_mut(tile)
                    .zip(p.grad.par_chunks_mut(tile))
                    .zip(p.m1.par_chunks_mut(tile))
                    .enumerate()
                    .for_each(|(t, ((w, g), buf))| {
                        fill_grad(t, g);
                        sgd_momentum_chunk(&s, w, g, buf)
                    });
            }
            OptimizerKind::Adam => {
                p.value
                    .par_chunks_mut(tile)
                    .zip(p.grad.par_chunks_mut(tile))
                    .zip(p.m1.par_chunks_mut(tile))
                    .zip(p.m2.par_chunks_mut(tile))
                    .enumerate()
                    .for_each(|(t, (((w, g), m), v))| {
                        fill_grad(t, g);
                        adam_chunk(&s, w, g, m, v)
                    });
            }
        }
    }
}

// The update kernels are compiled for several instruction sets and picked at run time: the
// baseline x86-64 build would otherwise run them with 4-wide SSE, which made Adam 14 % of a DFA
// epoch. Every operation is an IEEE add, multiply, divide or square root (Rust never contracts
// to FMA), so all versions give bit-identical results.

#[multiversion::multiversion(targets = "simd")]
fn sgd_chunk(s: &StepScalars, w: &mut [f32], g: &[f32]) {
    for (w, &g) in w.iter_mut().zip(g) {
        let g = g + s.weight_decay * *w;
        *w -= s.lr * g;
    }
}

#[multiversion::multiversion(targets = "simd")]
fn sgd_momentum_chunk(s: &StepScalars, w: &mut [f32], g: &[f32], buf: &mut [f32]) {
    for ((w, &g), b) in w.iter_mut().zip(g).zip(buf) {
        let g = g + s.weight_decay * *w;
        *b = if s.first { g } else { s.momentum * *b + g };
        let d = if s.nesterov { g + s.momentum * *b } else { *b };
        *w -= s.lr * d;
    }
}

#[multiversion::multiversion(targets = "simd")]
fn adam_chunk(s: &StepScalars, w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
    for (((w, &g), m), v) in w.iter_mut().zip(g).zip(m).zip(v) {
        let g = g + s.weight_decay * *w;
        *m = s.beta1 * *m + (1.0 - s.beta1) * g;
        *v = s.beta2 * *v + (1.0 - s.beta2) * g * g;
        *w -= s.adam_step * *m / (v.sqrt() * s.adam_v_scale + s.eps);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(spec: &OptimizerSpec) -> Param {
        let mut p = Param::new(vec![1.0, -2.0], spec);
        p.grad = vec![0.5, 0.25];
        p
    }

    #[test]
    fn sgd_plain_and_weight_decay() {
        let spec = OptimizerSpec {
            kind: OptimizerKind::Sgd,
            lr: 0.1,
            weight_decay: 0.01,
            schedule: Schedule::Constant,
            ..OptimizerSpec::default()
        };
        let mut p = param(&spec);
        StepScalars::new(&spec, 0, 10).update(&mut p);
        // w − lr·(g + wd·w)
        assert!((p.value[0] - (1.0 - 0.1 * (0.5 + 0.01))).abs() < 1e-7);
        assert!((p.value[1] - (-2.0 - 0.1 * (0.25 - 0.02))).abs() < 1e-7);
    }

    #[test]
    fn sgd_momentum_and_nesterov() {
        for nesterov in [false, true] {
            let spec = OptimizerSpec {
                kind: OptimizerKind::Sgd,
                lr: 0.1,
                momentum: 0.9,
                nesterov,
                schedule: Schedule::Constant,
                ..OptimizerSpec::default()
            };
            let mut p = param(&spec);
            StepScalars::new(&spec, 0, 10).update(&mut p);
            // buf = g = 0.5; step = g (+ 0.9·buf if nesterov)
            let d1 = if nesterov { 0.5 + 0.9 * 0.5 } else { 0.5 };
            let w1 = 1.0 - 0.1 * d1;
            assert!((p.value[0] - w1).abs() < 1e-7);
            p.grad = vec![1.0, 0.0];
            StepScalars::new(&spec, 1, 10).update(&mut p);
            let buf = 0.9 * 0.5 + 1.0;
            let d2 = if nesterov { 1.0 + 0.9 * buf } else { buf };
            assert!(
                (p.value[0] - (w1 - 0.1 * d2)).abs() < 1e-6,
                "nesterov {nesterov}"
            );
        }
    }

    #[test]
    fn adam_two_steps_by_hand() {
        let spec = OptimizerSpec {
            kind: OptimizerKind::Adam,
            lr: 0.01,
            schedule: Schedule::Constant,
            ..OptimizerSpec::default()
        };
        let mut p = param(&spec);
        StepScalars::new(&spec, 0, 10).update(&mut p);
        // First Adam step moves each weight by lr·g/(|g| + eps') ≈ lr·sign(g).
        let (b1, b2, eps, lr) = (0.9f64, 0.999f64, 1e-8f64, 0.01f64);
        let mut w = 1.0f64;
        let (mut m, mut v) = (0.0f64, 0.0f64);
        for (t, g) in [(1, 0.5f64), (2, -0.3)] {
            m = b1 * m + (1.0 - b1) * g;
            v = b2 * v + (1.0 - b2) * g * g;
            let mh = m / (1.0 - b1.powi(t));
            let vh = v / (1.0 - b2.powi(t));
            w -= lr * mh / (vh.sqrt() + eps);
            if t == 1 {
                assert!((p.value[0] as f64 - w).abs() < 1e-6);
                p.grad = vec![-0.3, 0.0];
                StepScalars::new(&spec, 1, 10).update(&mut p);
            }
        }
        assert!(
            (p.value[0] as f64 - w).abs() < 1e-6,
            "{} vs {w}",
            p.value[0]
        );
    }

    #[test]
    fn schedules() {
        let mut spec = OptimizerSpec {
            lr: 1.0,
            schedule: Schedule::Constant,
            ..OptimizerSpec::default()
        };
        assert_eq!(learning_rate(&spec, 7, 10), 1.0);
        spec.schedule = Schedule::Cosine;
        assert_eq!(learning_rate(&spec, 0, 10), 1.0);
        let want = 0.5 * (1.0 + (std::f64::consts::PI * 9.0 / 10.0).cos());
        assert!((learning_rate(&spec, 9, 10) - want).abs() < 1e-12);
        assert_eq!(learning_rate(&spec, 25, 10), learning_rate(&spec, 9, 10));
        spec.warmup_fraction = 0.2;
        assert!((learning_rate(&spec, 0, 10) - 0.5).abs() < 1e-12);
        assert!((learning_rate(&spec, 1, 10) - 1.0).abs() < 1e-12);
        assert!((learning_rate(&spec, 2, 10) - 1.0).abs() < 1e-12);
    }
}
