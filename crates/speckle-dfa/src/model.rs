//! The multilayer perceptron: parameters, preallocated activation buffers, and the forward and
//! backward kernels shared by backprop, feedback alignment and DFA.
//!
//! Layout: every matrix is row-major `f32`. A layer's weight is stored `fan_in × fan_out`, so the
//! forward product of a batch is `Z = H · W` and the weight gradient is `Hᵀ · δ`. A hidden block
//! is `Linear → [BatchNorm] → activation → [Dropout]`; the output layer is a Linear followed by
//! softmax cross-entropy.

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::Uniform;
use rayon::prelude::*;

use crate::linalg::dot64;
use crate::linalg::{column_sums, gemm, gemm_at_b_block, gemm_col_bands, RowMajor};
use crate::optim::{Block, Param, StepScalars, Tiling};
use crate::spec::{Activation, Init, ModelSpec, OptimizerSpec};

/// BatchNorm constants (PyTorch defaults).
pub(crate) const BN_EPS: f32 = 1e-5;
pub(crate) const BN_MOMENTUM: f32 = 0.1;

/// Rows per rayon task in elementwise passes.
const ROWS_PER_TASK: usize = 16;
/// Column bands of a hidden layer's forward product (computed in parallel, bias and activation
/// fused); fixed by the shape, never by the thread count.
const FORWARD_BANDS: usize = 4;

pub(crate) struct BatchNorm {
    pub gamma: Param,
    pub beta: Param,
    pub running_mean: Vec<f32>,
    pub running_var: Vec<f32>,
    /// Statistics of the last forward pass: batch mean and 1/sqrt(var + eps) in train mode,
    /// the running ones in eval mode.
    pub mean: Vec<f32>,
    pub inv_std: Vec<f32>,
}

pub(crate) struct Dense {
    pub fan_in: usize,
    pub fan_out: usize,
    pub w: Param,
    pub b: Param,
    pub bn: Option<BatchNorm>,
    /// Masked-update bottleneck (see [`ModelSpec::masked_layer`]).
    pub mask: Option<UpdateMask>,
}

/// Fixed 0/1 multipliers of a layer's updates: its weight gradient (`fan_in × fan_out`), bias
/// gradient (`fan_out`) and the gradient it propagates to its input (`fan_in`, per row).
pub(crate) struct UpdateMask {
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub input: Vec<f32>,
}

impl UpdateMask {
    /// Keeps `round(len · units / width)` entries (at least one) of each, chosen uniformly
    /// without replacement, weight then bias then input.
    fn draw(fan_in: usize, fan_out: usize, units: usize, rng: &mut ChaCha8Rng) -> Self {
        let mut draw = |len: usize| {
            let keep =
                ((len as f64 * units as f64 / fan_out as f64).round() as usize).clamp(1, len);
            let mut m = vec![0.0f32; len];
            for i in rand::seq::index::sample(rng, len, keep) {
                m[i] = 1.0;
            }
            m
        };
        let weight = draw(fan_in * fan_out);
        let bias = draw(fan_out);
        let input = draw(fan_in);
        Self {
            weight,
            bias,
            input,
        }
    }
}

/// `dst[i] *= mask[i]`.
fn apply_mask(dst: &mut [f32], mask: &[f32]) {
    for (d, m) in dst.iter_mut().zip(mask) {
        *d *= m;
    }
}

/// Buffers of one hidden block for up to `capacity` rows.
pub(crate) struct HiddenBuf {
    /// Normalized pre-activation x̂ (batch norm only).
    pub xhat: Vec<f32>,
    /// Activation output f(·).
    pub act: Vec<f32>,
    /// Dropout scale per element (0 or 1/(1−p)); empty without hidden dropout.
    pub mask: Vec<f32>,
    /// Block output after dropout; empty without hidden dropout (the output is `act`).
    pub out: Vec<f32>,
    /// Gradient at the block output, then (in place) at the linear output; sized by the
    /// backward passes that need it ([`sized`]). DFA training of very wide layers computes δ
    /// over `act` instead (its last reader), so that a layer 2^20 wide needs no second buffer
    /// of its size; narrower networks keep δ here ([`Network::concurrent_dfa_step`]).
    pub delta: Vec<f32>,
}

/// The first `len` values of `v`, grown with zeros when shorter.
fn sized(v: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if v.len() < len {
        v.resize(len, 0.0);
    }
    &mut v[..len]
}

/// All per-batch buffers, for up to `capacity` rows.
pub(crate) struct Buffers {
    pub capacity: usize,
    /// The input batch (after input dropout when training with it).
    pub input: Vec<f32>,
    pub input_mask: Vec<f32>,
    pub hidden: Vec<HiddenBuf>,
    pub logits: Vec<f32>,
    /// softmax − onehot, per sample (not divided by the batch size).
    pub err: Vec<f32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Dropout on, batch statistics, running statistics updated.
    Train,
    /// No dropout, running statistics.
    Eval,
}

pub(crate) struct Network {
    pub input_dim: usize,
    pub classes: usize,
    pub activation: Activation,
    pub dropout_input: f32,
    pub dropout_hidden: f32,
    /// Hidden layers then the output layer.
    pub layers: Vec<Dense>,
    /// Most δ values (all hidden layers, a batch) for which a DFA training step updates the
    /// layers concurrently ([`Network::concurrent_dfa_step`]); tests set 0 to compare with the
    /// layer-by-layer pass.
    pub concurrent_delta_max: usize,
}

fn uniform_vec(rng: &mut ChaCha8Rng, n: usize, bound: f32) -> Vec<f32> {
    if bound == 0.0 {
        return vec![0.0; n];
    }
    let dist = Uniform::new(-bound, bound).expect("finite positive bound");
    (0..n).map(|_| rng.sample(dist)).collect()
}

impl Network {
    /// Builds and initializes the network from `rng` (weights then bias, layer by layer).
    pub fn new(
        input_dim: usize,
        classes: usize,
        spec: &ModelSpec,
        opt: &OptimizerSpec,
        rng: &mut ChaCha8Rng,
    ) -> Self {
        let mut dims = vec![input_dim];
        dims.extend_from_slice(&spec.hidden);
        dims.push(classes);
        let n_layers = dims.len() - 1;
        let layers = (0..n_layers)
            .map(|l| {
                let (fan_in, fan_out) = (dims[l], dims[l + 1]);
                let (wb, bb) = match spec.init {
                    // Pre-alignment replaces the weights after the first layer later (the
                    // trainer has the feedback matrices); it starts from PyTorch's draws, as the
                    // seed code does.
                    Init::Pytorch | Init::PreAlignment => {
                        let a = 1.0 / (fan_in as f32).sqrt();
                        (a, a)
                    }
                    Init::Xavier => ((6.0 / (fan_in + fan_out) as f32).sqrt(), 0.0),
                    Init::Zero => (0.0, 0.0),
                };
                let w = uniform_vec(rng, fan_in * fan_out, wb);
                let b = uniform_vec(rng, fan_out, bb);
                let hidden = l + 1 < n_layers;
                let bn = (hidden && spec.batch_norm).then(|| BatchNorm {
                    gamma: Param::new(vec![1.0; fan_out], opt),
                    beta: Param::new(vec![0.0; fan_out], opt),
                    running_mean: vec![0.0; fan_out],
                    running_var: vec![1.0; fan_out],
                    mean: vec![0.0; fan_out],
                    inv_std: vec![1.0; fan_out],
                });
                Dense {
                    fan_in,
                    fan_out,
                    w: Param::new(w, opt),
                    b: Param::new(b, opt),
                    bn,
                    mask: None,
                }
            })
            .collect();
        Self {
            input_dim,
            classes,
            activation: spec.activation,
            dropout_input: spec.dropout_input,
            dropout_hidden: spec.dropout_hidden,
            layers,
            concurrent_delta_max: CONCURRENT_DELTA_MAX_VALUES,
        }
    }

    /// Draws the masked-update bottleneck of `spec` (nothing when `masked_layer` is 0).
    pub fn set_update_mask(&mut self, spec: &ModelSpec, rng: &mut ChaCha8Rng) {
        if spec.masked_layer == 0 {
            return;
        }
        let layer = &mut self.layers[spec.masked_layer - 1];
        layer.mask = Some(UpdateMask::draw(
            layer.fan_in,
            layer.fan_out,
            spec.masked_units,
            rng,
        ));
    }

    pub fn hidden_count(&self) -> usize {
        self.layers.len() - 1
    }

    pub fn hidden_widths(&self) -> Vec<usize> {
        self.layers[..self.hidden_count()]
            .iter()
            .map(|l| l.fan_out)
            .collect()
    }

    pub fn buffers(&self, capacity: usize) -> Buffers {
        let hidden = self.layers[..self.hidden_count()]
            .iter()
            .map(|l| {
                let n = capacity * l.fan_out;
                HiddenBuf {
                    xhat: if l.bn.is_some() {
                        vec![0.0; n]
                    } else {
                        Vec::new()
                    },
                    act: vec![0.0; n],
                    mask: if self.dropout_hidden > 0.0 {
                        vec![0.0; n]
                    } else {
                        Vec::new()
                    },
                    out: if self.dropout_hidden > 0.0 {
                        vec![0.0; n]
                    } else {
                        Vec::new()
                    },
                    delta: Vec::new(),
                }
            })
            .collect();
        Buffers {
            capacity,
            input: vec![0.0; capacity * self.input_dim],
            input_mask: if self.dropout_input > 0.0 {
                vec![0.0; capacity * self.input_dim]
            } else {
                Vec::new()
            },
            hidden,
            logits: vec![0.0; capacity * self.classes],
            err: vec![0.0; capacity * self.classes],
        }
    }

    /// Host GEMM flops of one training sample: forward and weight gradients, plus the backward
    /// propagation products when `propagate` (BP, FA).
    pub fn flops_per_sample(&self, propagate: bool) -> f64 {
        let mut f = 0.0;
        for (l, layer) in self.layers.iter().enumerate() {
            let mn = (layer.fan_in * layer.fan_out) as f64;
            f += 4.0 * mn;
            if propagate && l > 0 {
                f += 2.0 * mn;
            }
        }
        f
    }

    /// Forward pass of `n` rows already in `buf.input`. Leaves `buf.logits`.
    pub fn forward(&mut self, buf: &mut Buffers, n: usize, mode: Mode, rng: &mut ChaCha8Rng) {
        let train = mode == Mode::Train;
        if train && self.dropout_input > 0.0 {
            let len = n * self.input_dim;
            dropout(
                &mut buf.input[..len],
                &mut buf.input_mask[..len],
                self.dropout_input,
                rng,
            );
        }
        let hidden_count = self.hidden_count();
        let activation = self.activation;
        for l in 0..self.layers.len() {
            let (prev, rest) = buf.hidden.split_at_mut(l.min(hidden_count));
            let inp: &[f32] = if l == 0 {
                &buf.input[..n * self.input_dim]
            } else {
                let p = &prev[l - 1];
                let d = self.layers[l - 1].fan_out * n;
                if p.out.is_empty() {
                    &p.act[..d]
                } else {
                    &p.out[..d]
                }
            };
            let layer = &mut self.layers[l];
            let (fi, fo) = (layer.fan_in, layer.fan_out);
            let inp = RowMajor::new(inp, n, fi);
            let w = RowMajor::new(&layer.w.value, fi, fo);
            if l == hidden_count {
                let logits = &mut buf.logits[..n * fo];
                gemm(logits, n, fo, inp, false, w, false, 1.0, false);
                for row in logits.chunks_exact_mut(fo) {
                    for (v, b) in row.iter_mut().zip(&layer.b.value) {
                        *v += b;
                    }
                }
                break;
            }
            let hb = &mut rest[0];
            let act = &mut hb.act[..n * fo];
            match &mut layer.bn {
                None => {
                    // Bias and activation applied to each band of the product as it is done.
                    let bias = &layer.b.value;
                    gemm_col_bands(act, n, fo, inp, w, FORWARD_BANDS, |row, col0| {
                        activation.apply_rows_with_bias(row, &bias[col0..col0 + row.len()])
                    });
                }
                Some(bn) => {
                    gemm(act, n, fo, inp, false, w, false, 1.0, false);
                    let xhat = &mut hb.xhat[..n * fo];
                    batch_norm_forward(bn, &layer.b.value, act, xhat, n, train);
                    let (g, be) = (&bn.gamma.value, &bn.beta.value);
                    for (a_row, x_row) in act.chunks_exact_mut(fo).zip(xhat.chunks_exact(fo)) {
                        for (((a, &x), &g), &be) in a_row.iter_mut().zip(x_row).zip(g).zip(be) {
                            *a = activation.apply(g * x + be);
                        }
                    }
                }
            }
            if !hb.out.is_empty() {
                let (act, mask, out) = (
                    &hb.act[..n * fo],
                    &mut hb.mask[..n * fo],
                    &mut hb.out[..n * fo],
                );
                if train {
                    out.copy_from_slice(act);
                    dropout(out, mask, self.dropout_hidden, rng);
                } else {
                    out.copy_from_slice(act);
                }
            }
        }
    }

    /// Softmax cross-entropy of `n` rows: writes `buf.err` = softmax − onehot, returns
    /// (loss sum, correct count).
    pub fn loss(&self, buf: &mut Buffers, n: usize, labels: &[u8]) -> (f64, usize) {
        let c = self.classes;
        let mut loss = 0.0f64;
        let mut correct = 0;
        for ((z, e), &y) in buf.logits[..n * c]
            .chunks_exact(c)
            .zip(buf.err[..n * c].chunks_exact_mut(c))
            .zip(labels)
        {
            let y = y as usize;
            let mut best = 0;
            for (j, &v) in z.iter().enumerate().skip(1) {
                if v > z[best] {
                    best = j;
                }
            }
            if best == y {
                correct += 1;
            }
            let max = z[best];
            let mut sum = 0.0f32;
            for (e, &z) in e.iter_mut().zip(z) {
                *e = (z - max).exp();
                sum += *e;
            }
            let inv = 1.0 / sum;
            for e in e.iter_mut() {
                *e *= inv;
            }
            loss += (sum.ln() + max - z[y]) as f64;
            e[y] -= 1.0;
        }
        (loss, correct)
    }
}

/// Inverted dropout: keeps each value with probability 1 − p, scaled by 1/(1 − p).
/// One u32 per element from `rng`, in order.
fn dropout(values: &mut [f32], mask: &mut [f32], p: f32, rng: &mut ChaCha8Rng) {
    let threshold = ((p as f64) * 4_294_967_296.0).round().min(u32::MAX as f64) as u32;
    let scale = 1.0 / (1.0 - p);
    for (v, m) in values.iter_mut().zip(mask.iter_mut()) {
        let keep = rng.next_u32() >= threshold;
        *m = if keep { scale } else { 0.0 };
        *v *= *m;
    }
}

/// `pre` holds the linear output without bias; on return `pre` is unchanged and `xhat` holds the
/// normalized values (bias included, which train-mode statistics cancel).
fn batch_norm_forward(
    bn: &mut BatchNorm,
    bias: &[f32],
    pre: &[f32],
    xhat: &mut [f32],
    n: usize,
    train: bool,
) {
    let d = bias.len();
    if train {
        // Two passes in f32 with a fixed order; mean includes the bias.
        column_sums(pre, d, &mut bn.mean);
        let inv_n = 1.0 / n as f32;
        for (m, b) in bn.mean.iter_mut().zip(bias) {
            *m = *m * inv_n + b;
        }
        bn.inv_std.fill(0.0);
        for row in pre.chunks_exact(d) {
            for (((s, &v), &m), &b) in bn.inv_std.iter_mut().zip(row).zip(&bn.mean).zip(bias) {
                let c = v + b - m;
                *s += c * c;
            }
        }
        let unbias = if n > 1 {
            n as f32 / (n as f32 - 1.0)
        } else {
            1.0
        };
        for (((s, rm), rv), &m) in bn
            .inv_std
            .iter_mut()
            .zip(&mut bn.running_mean)
            .zip(&mut bn.running_var)
            .zip(&bn.mean)
        {
            let var = *s * inv_n;
            *rm = (1.0 - BN_MOMENTUM) * *rm + BN_MOMENTUM * m;
            *rv = (1.0 - BN_MOMENTUM) * *rv + BN_MOMENTUM * var * unbias;
            *s = 1.0 / (var + BN_EPS).sqrt();
        }
    } else {
        bn.mean.copy_from_slice(&bn.running_mean);
        for (s, &v) in bn.inv_std.iter_mut().zip(&bn.running_var) {
            *s = 1.0 / (v + BN_EPS).sqrt();
        }
    }
    for (x_row, p_row) in xhat.chunks_exact_mut(d).zip(pre.chunks_exact(d)) {
        for ((((x, &p), &b), &m), &s) in x_row
            .iter_mut()
            .zip(p_row)
            .zip(bias)
            .zip(&bn.mean)
            .zip(&bn.inv_std)
        {
            *x = (p + b - m) * s;
        }
    }
}

/// Backward through BatchNorm: `g` holds ∂L/∂y (y = γ·x̂ + β) and becomes ∂L/∂(linear output);
/// fills the γ and β gradients.
fn batch_norm_backward(bn: &mut BatchNorm, g: &mut [f32], xhat: &[f32], n: usize, train: bool) {
    let d = bn.mean.len();
    column_sums(g, d, bn.beta.grad_mut());
    let gamma_grad = bn.gamma.grad_mut();
    gamma_grad.fill(0.0);
    for (g_row, x_row) in g.chunks_exact(d).zip(xhat.chunks_exact(d)) {
        for ((s, &g), &x) in gamma_grad.iter_mut().zip(g_row).zip(x_row) {
            *s += g * x;
        }
    }
    let gamma = &bn.gamma.value;
    if train {
        // dz = γ·inv_std/n · (n·g − Σg − x̂·Σ(g·x̂))
        let inv_n = 1.0 / n as f32;
        for (g_row, x_row) in g.chunks_exact_mut(d).zip(xhat.chunks_exact(d)) {
            for (j, (g, &x)) in g_row.iter_mut().zip(x_row).enumerate() {
                let k = gamma[j] * bn.inv_std[j];
                *g = k * (*g - inv_n * (bn.beta.grad[j] + x * bn.gamma.grad[j]));
            }
        }
    } else {
        for g_row in g.chunks_exact_mut(d) {
            for (j, g) in g_row.iter_mut().enumerate() {
                *g *= gamma[j] * bn.inv_std[j];
            }
        }
    }
}

/// Most δ values (all hidden layers together) that [`Network::concurrent_dfa_step`] keeps in
/// a buffer of their own (16 MiB of `f32`): wider networks compute δ in place, layer by layer.
const CONCURRENT_DELTA_MAX_VALUES: usize = 4 << 20;

/// What the backward pass delivers at each hidden block's output.
#[derive(Clone, Copy)]
pub(crate) enum Feedback<'a> {
    /// Backprop through the weights (BP).
    Backprop,
    /// Fixed random matrices in place of the weights (FA), one per layer after the first
    /// (`matrices[l]` is used for layer `l`, shape `fan_in × fan_out`; `matrices[0]` unused).
    Fixed(&'a [Vec<f32>]),
    /// DFA: each hidden layer reads its slice of the projection `proj` (`n × stride`), scaled.
    Direct {
        proj: &'a [f32],
        stride: usize,
        offsets: &'a [usize],
        scales: &'a [f32],
    },
}

/// What a backward pass hands the alignment measure, per hidden layer.
#[derive(Default, Clone)]
pub(crate) struct Capture {
    /// Gradient at each hidden block's output (n × d_i); left empty for DFA, whose signal the
    /// projection buffer still holds ([`Feedback::Direct`]).
    pub block_out: Vec<Vec<f32>>,
    /// δ at each hidden layer's linear output (n × d_i), moved out of the buffers after the
    /// pass: the weight gradient is `inputᵀ · δ`, which [`Network::weight_cosines`] compares tile
    /// by tile (at a width of 2^20 a whole weight gradient is 512 MiB).
    pub delta: Vec<Vec<f32>>,
}

impl Network {
    /// Backward pass from `buf.err` of `n` rows, layer by layer from the output: δ at the
    /// layer's linear output and the gradient propagated to the block below (BP, FA); then
    /// * with `update`: the optimizer step, applied as soon as the layer's gradient is done
    ///   (after its weights were used to propagate further down), the weight gradient computed
    ///   tile by tile inside the update;
    /// * with `capture` (alignment): the block-output signals and the deltas, no gradients;
    /// * with neither: every gradient, kept whole in the parameters' `grad`.
    pub fn backward(
        &mut self,
        buf: &mut Buffers,
        n: usize,
        mode: Mode,
        feedback: Feedback<'_>,
        update: Option<&StepScalars>,
        mut capture: Option<&mut Capture>,
    ) {
        let train = mode == Mode::Train;
        let hidden_count = self.hidden_count();
        let activation = self.activation;
        if let Some(c) = capture.as_deref_mut() {
            c.block_out = vec![Vec::new(); hidden_count];
            c.delta = vec![Vec::new(); hidden_count];
        }
        if let (Feedback::Direct { .. }, Some(s), None) = (feedback, update, capture.as_deref()) {
            if self.concurrent_dfa_step(buf, n, train, feedback, s) {
                return;
            }
        }
        // DFA computes each δ over the block's activation, its last reader, unless the
        // activations must survive the pass (the alignment's second pass reads them).
        let in_place = matches!(feedback, Feedback::Direct { .. }) && capture.is_none();
        for l in (0..self.layers.len()).rev() {
            let (below, at) = buf.hidden.split_at_mut(l.min(hidden_count));
            // The block below: its output is this layer's input, its delta receives BP and FA.
            let (input_all, below_delta): (&[f32], Option<&mut Vec<f32>>) = if l == 0 {
                (&buf.input, None)
            } else {
                let p = &mut below[l - 1];
                let input = if p.out.is_empty() { &p.act } else { &p.out };
                (input, Some(&mut p.delta))
            };
            let layer = &mut self.layers[l];
            let (fi, fo) = (layer.fan_in, layer.fan_out);
            let inp = RowMajor::new(&input_all[..n * fi], n, fi);
            // δ at this layer's linear output, and its scale: the output layer's is the error of
            // the mean-reduced loss; hidden DFA updates are sums over the batch, and BP/FA deltas
            // are already mean-scaled.
            let (delta, alpha): (&[f32], f32) = if l == hidden_count {
                (&buf.err[..n * fo], 1.0 / n as f32)
            } else {
                let hb = &mut at[0];
                let block = BlockPass {
                    activation,
                    layer: l,
                    rows: n,
                    width: fo,
                    train,
                };
                let keep = capture.is_some();
                let block_out = block.hidden_delta(hb, layer.bn.as_mut(), feedback, in_place, keep);
                if let (Some(c), Some(block_out)) = (capture.as_deref_mut(), block_out) {
                    c.block_out[l] = block_out;
                }
                let source = if in_place { &hb.act } else { &hb.delta };
                (&source[..n * fo], 1.0)
            };
            let delta = RowMajor::new(delta, n, fo);
            // Propagate to the block below (BP, FA).
            if let (Some(back), Some(below_delta)) = (feedback.matrix(l, layer), below_delta) {
                layer.propagate(back, delta, alpha, sized(below_delta, n * fi));
            }
            match (update, capture.as_deref_mut()) {
                (Some(s), _) => layer.step(s, inp, delta, alpha),
                (None, Some(c)) if l < hidden_count => {
                    let mut d = std::mem::take(&mut at[0].delta);
                    d.truncate(n * fo);
                    c.delta[l] = d;
                }
                (None, Some(_)) => {}
                (None, None) => {
                    layer.weight_grad(inp, delta, alpha);
                    layer.bias_grad(delta, alpha);
                }
            }
        }
    }

    /// DFA training step with every layer at once: each δ depends only on the projection and
    /// the layer's own activation, so each layer's task computes its δ (into `delta`, not over
    /// `act`, which the layer above reads as its input) and then its update, and all tasks run
    /// in one parallel region instead of one pass after another: a thread that finishes a
    /// layer's tiles takes another layer's instead of waiting at a join. Each δ, tile and bias
    /// sum is computed as in the layer-by-layer pass, so the result is the same bits. Returns
    /// `false` (and does nothing) where the δ buffers would be large (very wide layers keep
    /// computing δ in place) or a layer has batch norm.
    fn concurrent_dfa_step(
        &mut self,
        buf: &mut Buffers,
        n: usize,
        train: bool,
        feedback: Feedback<'_>,
        s: &StepScalars,
    ) -> bool {
        let hidden_count = self.hidden_count();
        let delta_values: usize = self.layers[..hidden_count]
            .iter()
            .map(|l| n * l.fan_out)
            .sum();
        if delta_values > self.concurrent_delta_max || self.layers.iter().any(|l| l.bn.is_some()) {
            return false;
        }
        let activation = self.activation;
        // Each layer's δ buffer is moved out for the pass, so that a layer's task writes its δ
        // while the layer above reads the activations as its input.
        let mut deltas: Vec<Vec<f32>> = buf.hidden[..hidden_count]
            .iter_mut()
            .map(|hb| std::mem::take(&mut hb.delta))
            .collect();
        let (input, hidden, err) = (&buf.input[..], &buf.hidden[..], &buf.err[..]);
        rayon::scope(|scope| {
            let mut deltas = deltas.iter_mut();
            for (l, layer) in self.layers.iter_mut().enumerate() {
                let (fi, fo) = (layer.fan_in, layer.fan_out);
                let input_all: &[f32] = if l == 0 {
                    input
                } else {
                    let p = &hidden[l - 1];
                    if p.out.is_empty() {
                        &p.act
                    } else {
                        &p.out
                    }
                };
                let inp = RowMajor::new(&input_all[..n * fi], n, fi);
                if l == hidden_count {
                    let delta = RowMajor::new(&err[..n * fo], n, fo);
                    scope.spawn(move |_| layer.step(s, inp, delta, 1.0 / n as f32));
                    continue;
                }
                let delta = deltas.next().expect("one δ buffer per hidden layer");
                let hb = &hidden[l];
                let slice = feedback.slice(l).expect("DFA feedback");
                scope.spawn(move |_| {
                    let delta = sized(delta, n * fo);
                    let mask = if train { &hb.mask[..] } else { &[] };
                    direct_delta(activation, slice, mask, (n, fo), Some(&hb.act), delta);
                    layer.step(s, inp, RowMajor::new(delta, n, fo), 1.0);
                });
            }
        });
        for (hb, delta) in buf.hidden.iter_mut().zip(deltas) {
            hb.delta = delta;
        }
        true
    }

    /// Per hidden layer, the cosine between the weight gradients `inputᵀ · δ` of two backward
    /// passes over the forward pass in `buf` (`a[l]`, `b[l]`: their deltas, n × d_l), masked
    /// as the layer's updates are. The gradients are formed tile by tile and never stored
    /// whole; per-tile sums are added in tile order, so the result does not depend on the
    /// thread count. 0 when either gradient is zero.
    pub fn weight_cosines(
        &self,
        buf: &Buffers,
        n: usize,
        a: &[Vec<f32>],
        b: &[Vec<f32>],
    ) -> Vec<f64> {
        (0..self.hidden_count())
            .map(|l| {
                let layer = &self.layers[l];
                let (fi, fo) = (layer.fan_in, layer.fan_out);
                let input: &[f32] = if l == 0 {
                    &buf.input
                } else {
                    let p = &buf.hidden[l - 1];
                    if p.out.is_empty() {
                        &p.act
                    } else {
                        &p.out
                    }
                };
                let inp = RowMajor::new(&input[..n * fi], n, fi);
                let (da, db) = (RowMajor::new(&a[l], n, fo), RowMajor::new(&b[l], n, fo));
                let mask = layer.mask.as_ref().map(|m| &m.weight[..]);
                let sums: Vec<[f64; 3]> = Tiling::new(fi, fo)
                    .blocks()
                    .collect::<Vec<_>>()
                    .into_par_iter()
                    .map(|block| {
                        let mut ga = vec![0.0; block.rows * block.cols];
                        let mut gb = vec![0.0; block.rows * block.cols];
                        gemm_at_b_block(&mut ga, inp, block, da, 1.0);
                        gemm_at_b_block(&mut gb, inp, block, db, 1.0);
                        if let Some(mask) = mask {
                            mask_block(&mut ga, mask, fo, block);
                            mask_block(&mut gb, mask, fo, block);
                        }
                        [dot64(&ga, &gb), dot64(&ga, &ga), dot64(&gb, &gb)]
                    })
                    .collect();
                let [ab, aa, bb] = sums.iter().fold([0.0; 3], |acc, s| {
                    [acc[0] + s[0], acc[1] + s[1], acc[2] + s[2]]
                });
                if aa == 0.0 || bb == 0.0 {
                    0.0
                } else {
                    (ab / (aa.sqrt() * bb.sqrt())).clamp(-1.0, 1.0)
                }
            })
            .collect()
    }
}

/// Multiplies a gradient tile (`block.rows × block.cols`, row-major) by its part of a layer's
/// `fan_in × fan_out` weight mask.
fn mask_block(grad: &mut [f32], mask: &[f32], fan_out: usize, block: Block) {
    for (r, g) in grad.chunks_exact_mut(block.cols).enumerate() {
        apply_mask(g, &mask[(block.row0 + r) * fan_out + block.col0..]);
    }
}

impl<'a> Feedback<'a> {
    /// The matrix that carries the gradient from layer `l` (above the input layer) to the block
    /// below: the weights (BP), the fixed random matrix (FA), none (DFA: every hidden layer
    /// gets its own projection).
    fn matrix<'m>(&self, l: usize, layer: &'m Dense) -> Option<&'m [f32]>
    where
        'a: 'm,
    {
        if l == 0 {
            return None;
        }
        match *self {
            Feedback::Backprop => Some(&layer.w.value),
            Feedback::Fixed(m) => Some(&m[l]),
            Feedback::Direct { .. } => None,
        }
    }

    /// The DFA signal of hidden layer `l` (its scaled slice of the projection), or `None` for
    /// BP and FA.
    pub(crate) fn slice(&self, l: usize) -> Option<FeedbackSlice<'a>> {
        match *self {
            Feedback::Direct {
                proj,
                stride,
                offsets,
                scales,
            } => Some(FeedbackSlice {
                proj,
                stride,
                offset: offsets[l],
                scale: scales[l],
            }),
            _ => None,
        }
    }
}

/// DFA's δ = signal · f'(y) into `delta`: the layer's slice of the projection, scaled, times
/// the hidden dropout `mask` (empty without), times the activation's derivative at y, the
/// activation's output, read from `y` or, when `y` is `None`, from `delta` itself (overwritten).
fn direct_delta(
    activation: Activation,
    slice: FeedbackSlice<'_>,
    mask: &[f32],
    (n, fo): (usize, usize),
    y: Option<&[f32]>,
    delta: &mut [f32],
) {
    let (proj, stride) = (&slice.proj[..n * slice.stride], slice.stride);
    let (offset, scale) = (slice.offset, slice.scale);
    let rows = ROWS_PER_TASK * fo;
    match (y, mask.is_empty()) {
        (None, true) => delta
            .par_chunks_mut(rows)
            .zip(proj.par_chunks(ROWS_PER_TASK * stride))
            .for_each(|(d, p)| {
                activation.scaled_slice_times_derivative(d, fo, p, stride, offset, scale)
            }),
        (Some(y), true) => delta
            .par_chunks_mut(rows)
            .zip(y[..n * fo].par_chunks(rows))
            .zip(proj.par_chunks(ROWS_PER_TASK * stride))
            .for_each(|((d, y), p)| {
                activation.scaled_slice_times_derivative_of(y, d, fo, p, stride, offset, scale)
            }),
        (y, false) => {
            // Hidden dropout: ((scale · signal) · mask) · f'(y).
            for (r, (d_row, p_row)) in delta
                .chunks_exact_mut(fo)
                .zip(proj.chunks_exact(stride))
                .take(n)
                .enumerate()
            {
                let p_row = &p_row[offset..offset + fo];
                let m_row = &mask[r * fo..(r + 1) * fo];
                for (c, ((d, &p), &m)) in d_row.iter_mut().zip(p_row).zip(m_row).enumerate() {
                    let y = y.map_or(*d, |y| y[r * fo + c]);
                    *d = scale * p * m * activation.derivative_from_output(y);
                }
            }
        }
    }
}

/// What the backward pass through one hidden block needs to know.
#[derive(Clone, Copy)]
struct BlockPass {
    activation: Activation,
    /// The block's layer index.
    layer: usize,
    rows: usize,
    /// The block's width (its layer's `fan_out`).
    width: usize,
    train: bool,
}

impl BlockPass {
    /// Computes δ at the block's linear output: the gradient the algorithm delivers at the
    /// block output (DFA: the layer's slice of the projection; BP and FA: what the layer above
    /// wrote into `hb.delta`), pushed back through dropout, the activation and batch norm.
    /// δ lands in `hb.act` when `in_place` (DFA only), in `hb.delta` otherwise. Returns a copy
    /// of the block-output gradient of BP and FA when `keep_block_out` (DFA's stays in the
    /// projection).
    fn hidden_delta(
        self,
        hb: &mut HiddenBuf,
        bn: Option<&mut BatchNorm>,
        feedback: Feedback<'_>,
        in_place: bool,
        keep_block_out: bool,
    ) -> Option<Vec<f32>> {
        let (n, fo) = (self.rows, self.width);
        let len = n * fo;
        let activation = self.activation;
        let mut block_out = None;
        let delta: &mut [f32] = match feedback.slice(self.layer) {
            Some(slice) => {
                // δ = signal · f'(y) is computed over act itself, or from act into `delta`.
                let mask = if self.train { &hb.mask[..] } else { &[] };
                if in_place {
                    let delta = &mut hb.act[..len];
                    direct_delta(activation, slice, mask, (n, fo), None, delta);
                    delta
                } else {
                    let delta = sized(&mut hb.delta, len);
                    direct_delta(activation, slice, mask, (n, fo), Some(&hb.act), delta);
                    delta
                }
            }
            None => {
                // delta already holds ∂L/∂(block output), written by the layer above.
                let delta = &mut hb.delta[..len];
                if keep_block_out {
                    block_out = Some(delta.to_vec());
                }
                self.through_block_ops(delta, &hb.act, &hb.mask);
                delta
            }
        };
        if let Some(bn) = bn {
            batch_norm_backward(bn, delta, &hb.xhat[..len], n, self.train);
        }
        block_out
    }

    /// Pushes `delta` (∂L/∂block output) back through dropout and the activation.
    fn through_block_ops(self, delta: &mut [f32], act: &[f32], mask: &[f32]) {
        let len = self.rows * self.width;
        if self.train && !mask.is_empty() {
            for (d, &m) in delta.iter_mut().zip(&mask[..len]) {
                *d *= m;
            }
        }
        let fo = self.width;
        let act = &act[..len];
        let activation = self.activation;
        delta
            .par_chunks_mut(ROWS_PER_TASK * fo)
            .zip(act.par_chunks(ROWS_PER_TASK * fo))
            .for_each(|(d, a)| activation.mul_derivative(d, a));
    }
}

/// A hidden layer's DFA signal: columns `offset ..` of each row of the projection, scaled.
#[derive(Clone, Copy)]
pub(crate) struct FeedbackSlice<'a> {
    proj: &'a [f32],
    stride: usize,
    offset: usize,
    scale: f32,
}

impl FeedbackSlice<'_> {
    /// Writes row `r` of the signal into `dst` (its width).
    pub(crate) fn row_to(&self, r: usize, dst: &mut [f32]) {
        let p_row = &self.proj[r * self.stride + self.offset..][..dst.len()];
        for (d, &p) in dst.iter_mut().zip(p_row) {
            *d = self.scale * p;
        }
    }
}

impl Dense {
    /// `w.grad = alpha · inputᵀ · δ`, masked.
    fn weight_grad(&mut self, input: RowMajor<'_>, delta: RowMajor<'_>, alpha: f32) {
        let (fi, fo) = (self.fan_in, self.fan_out);
        let grad = self.w.grad_mut();
        gemm(grad, fi, fo, input, true, delta, false, alpha, false);
        if let Some(mask) = &self.mask {
            apply_mask(grad, &mask.weight);
        }
    }

    /// `b.grad = alpha · Σ_rows δ`, masked.
    fn bias_grad(&mut self, delta: RowMajor<'_>, alpha: f32) {
        let grad = self.b.grad_mut();
        column_sums(delta.data, self.fan_out, grad);
        if alpha != 1.0 {
            for g in grad.iter_mut() {
                *g *= alpha;
            }
        }
        if let Some(mask) = &self.mask {
            apply_mask(grad, &mask.bias);
        }
    }

    /// `dst = alpha · δ · backᵀ` (`back` is `fan_in × fan_out`): the gradient at the block
    /// below's output, masked per row.
    fn propagate(&self, back: &[f32], delta: RowMajor<'_>, alpha: f32, dst: &mut [f32]) {
        let (fi, fo) = (self.fan_in, self.fan_out);
        gemm(
            dst,
            delta.rows,
            fi,
            delta,
            false,
            RowMajor::new(back, fi, fo),
            true,
            alpha,
            false,
        );
        if let Some(mask) = &self.mask {
            for row in dst.chunks_exact_mut(fi) {
                apply_mask(row, &mask.input);
            }
        }
    }

    /// The optimizer step of the layer's parameters from this batch's `input` and δ: each
    /// tile of the weight gradient `alpha · inputᵀ · δ` is computed just before the tile is
    /// updated, never stored whole.
    fn step(&mut self, s: &StepScalars, input: RowMajor<'_>, delta: RowMajor<'_>, alpha: f32) {
        let (fi, fo) = (self.fan_in, self.fan_out);
        let mask = self.mask.as_ref().map(|m| &m.weight[..]);
        s.update_fused(&mut self.w, fi, fo, |block, grad| {
            gemm_at_b_block(grad, input, block, delta, alpha);
            if let Some(mask) = mask {
                mask_block(grad, mask, fo, block);
            }
        });
        self.bias_grad(delta, alpha);
        s.update(&mut self.b);
        if let Some(bn) = &mut self.bn {
            s.update(&mut bn.gamma);
            s.update(&mut bn.beta);
        }
    }
}

/// A seeded generator on its own stream: stream 0 initializes weights, 1 the FA matrices,
/// 2 dropout, 3 the masked-update bottleneck.
pub(crate) fn stream_rng(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// FA feedback matrices: `fan_in × fan_out` U(±1/sqrt(fan_in)) for every layer but the first
/// (whose slot holds an empty vector).
pub(crate) fn fa_matrices(net: &Network, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = stream_rng(seed, 1);
    net.layers
        .iter()
        .enumerate()
        .map(|(l, layer)| {
            if l == 0 {
                Vec::new()
            } else {
                uniform_vec(
                    &mut rng,
                    layer.fan_in * layer.fan_out,
                    1.0 / (layer.fan_in as f32).sqrt(),
                )
            }
        })
        .collect()
}
