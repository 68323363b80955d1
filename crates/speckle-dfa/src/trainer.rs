//! The trainer: an MLP trained by backprop (BP), feedback alignment (FA) or direct feedback
//! alignment (DFA) through any [`RandomProjector`].
//!
//! # The DFA rule (the seed code's, Launay et al. 2019)
//!
//! For a batch of n samples with logits z, e = softmax(z) − onehot(label) per sample.
//! * The output layer gets its true gradient, that of the mean-reduced cross-entropy: ∂W = Hᵀ·e/n.
//! * Hidden layer i gets δ_i = (e·B_i) at its block output (after activation, after batch norm,
//!   after dropout), pushed back through the block's own dropout mask, activation derivative and
//!   batch norm, then ∂W_i = H_{i−1}ᵀ·δ_i and ∂b_i = Σ δ_i: **sums over the batch, e not divided
//!   by n** (the seed code's convention).
//! * B·e of the whole batch is **one** [`RandomProjector::project`] call per step
//!   (n × classes → n × output_dim), rescaled by 1/sqrt(entry_variance) to unit-variance entries.
//!   Shared feedback (default): layer i reads the first d_i columns. Per-layer feedback: layer i
//!   reads its own slice at offset Σ_{j<i} d_j. With `feedback_normalization` each layer's slice
//!   is further divided by sqrt(classes·d_i) (entries N(0, 1/(C·d_i)), exactly the seed code's
//!   "first d_i columns of an N(0,1)/sqrt(C·d_max) matrix rescaled by sqrt(d_max/d_i)").
//!
//! **Learning-rate scale.** Because hidden DFA updates are batch sums of an un-normalized signal
//! while the output layer's is a batch mean, with plain SGD the hidden layers effectively step
//! with a rate about n × larger (times the normalization factor 1/sqrt(C·d_i)) than the output
//! layer. We keep the seed rule and a single learning rate: with Adam the per-tensor scale cancels
//! (up to ε), which is why Adam is the default; with SGD, choose lr for the hidden layers
//! (the seed code's SGD lr 5e-4 at batch 128). A test pins the batch-sum convention.
//!
//! BP propagates the mean-reduced gradient through Wᵀ, FA through fixed matrices
//! U(±1/sqrt(fan_in)) of each weight's shape (drawn from the trainer seed, stream 1).
//!
//! **Feedback scale.** [`FeedbackScale::Xavier`] replaces the normalization by Xavier's
//! variance 2/(C + d_i): with the digital projector's U[−1, 1) entries, layer i's matrix is
//! BioTorch's U(±sqrt(6/(C + d_i))) (`nn.init.xavier_uniform_` of its C × d_i feedback weight,
//! jsalbert/biotorch `biotorch/layers/dfa/linear.py`).
//!
//! # Pre-alignment initialization
//!
//! The seed code's PAI (`DFAModel.prealignment` in lightonai/principled-dfa-training
//! `dfatools/models.py`) walks the layers from the output down and sets the weight of every
//! linear layer that follows a feedback point to `Wᵀ = G_dfaᵀ · pinv(G_bpᵀ)`, then divides it by
//! its Frobenius norm: G_dfa is the DFA signal at the layer's input (the block output below),
//! G_bp the backprop gradient at the layer's output, both on one training batch, so that the
//! backprop signal at the layer's input, `G_bp · W`, equals the DFA signal there. Biases and the
//! first layer keep PyTorch's initialization (the first layer's input is the data, which gets
//! no feedback to match).
//!
//! Here, with B_i the C × d_i feedback matrix of hidden block i as it receives it
//! ([`Trainer::feedback_matrices`]), P = I − 11ᵀ/C, and the output layer's "feedback" the
//! error itself (B_L = I, the true gradient):
//!
//! W_k = B_{k−1}ᵀ · pinv(P·B_k·B_kᵀ·P) · B_k, scaled to ‖W_k‖_F = 1 (stored fan_in × fan_out)
//!
//! for every layer k after the first: the least-norm W with e·B_k·W_kᵀ = e·B_{k−1} for every
//! error e = softmax − onehot (whose entries sum to zero). It needs no data:
//! * **The last hidden layer is covered exactly.** Its backprop signal is (e/n)·W_Lᵀ ∝
//!   e·P·B_{L−1} = e·B_{L−1}, the DFA signal, for every input: the cosine at step 0 is 1 up to
//!   rounding, whatever the activation, batch norm or widths. For this layer the formula is
//!   exactly what the seed code's batch pseudo-inverse gives (its G_bp = e/n spans the
//!   sum-zero errors, the least-norm solution is the same).
//! * **Lower hidden layers are covered for a linearized block.** The backprop signal at block
//!   i's output is (B_{i+1}-signal ⊙ f'(a_{i+1}))·W_{i+1}ᵀ; the formula makes it e·B_i when
//!   f'(a_{i+1}) is the same for all units of a sample. Pre-aligned weights have rank C − 1 and
//!   unit norm, so the pre-activations above the first layer stay near the (small) biases,
//!   where tanh and the sigmoid are nearly linear: the cosine at step 0 is 1 − 2·10⁻⁸ for tanh
//!   on MNIST at 784-800-800-800-10 (1 − 6·10⁻⁶ at 96 units, where the biases are larger). For
//!   relu-like activations f' is 0 or 1 by the sign of each pre-activation: 0.989 and 0.995 at
//!   800 units, about 0.9 at 96. The seed code's fit is not exact there either: it fits the
//!   derivatives of the network before the layer was replaced, on one training batch.
//! * **Not covered**: the first layer (its input is the data), the biases, and a masked
//!   bottleneck's input-gradient mask, which the backprop reference applies and DFA does not.
//!   A layer narrower than C − 1 units cannot carry a (C − 1)-dimensional error: its
//!   least-norm fit is partial.
//!
//! With an optical projector B_i is measured by projecting the C unit vectors, device noise
//! included, so the match holds only up to that noise.
//!
//! # Example
//! ```
//! use ndarray::Array2;
//! use speckle_dfa::{AlgorithmKind, AlgorithmSpec, ModelSpec, OptimizerSpec, Trainer};
//!
//! let model = ModelSpec { hidden: vec![16], ..ModelSpec::default() };
//! let algorithm = AlgorithmSpec { kind: AlgorithmKind::Bp, ..AlgorithmSpec::default() };
//! let mut t = Trainer::new(4, 2, &model, &algorithm, &OptimizerSpec::default(), 8, 100, 7, None)
//!     .unwrap();
//! let x = Array2::from_shape_fn((8, 4), |(i, j)| if (i % 2 == 0) == (j < 2) { 1.0 } else { 0.0 });
//! let labels: Vec<u8> = (0..8).map(|i| (i % 2) as u8).collect();
//! let stats = t.train_batch(x.view(), &labels).unwrap();
//! assert_eq!(stats.count, 8);
//! assert_eq!(t.step(), 1);
//! let eval = t.evaluate(x.view(), &labels).unwrap();
//! assert!(eval.accuracy >= 0.0 && eval.accuracy <= 1.0);
//! ```

use ndarray::ArrayView2;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use speckle_hal::{DeviceCounters, ProjectorInfo, RandomProjector};

use crate::alignment::{self, LayerAlignment};
pub use crate::error::DfaError;
use crate::model::{fa_matrices, stream_rng, Buffers, Capture, Feedback, Mode, Network};
use crate::optim::{Param, StepScalars};
use crate::spec::{AlgorithmKind, AlgorithmSpec, FeedbackScale, Init, ModelSpec, OptimizerSpec};

/// A mean cross-entropy per sample above which training has exploded (as with a learning rate
/// of 10^30, where the weights reach 10^30 and the loss stays finite but astronomical): a
/// uniform guess over 10 classes costs 2.3, and no model that learns gets near 10^4.
pub const EXPLODED_LOSS_PER_SAMPLE: f64 = 1e4;

/// Whether a batch's summed loss is NaN, infinite, or exploded.
fn loss_exploded(loss_sum: f64, batch: usize) -> bool {
    !loss_sum.is_finite() || loss_sum > EXPLODED_LOSS_PER_SAMPLE * batch as f64
}

/// What one training batch did (measured in the forward pass, before the update).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StepStats {
    /// Sum over the batch of the per-sample cross-entropy.
    pub loss_sum: f64,
    /// Correctly classified samples.
    pub correct: usize,
    /// Samples in the batch.
    pub count: usize,
}

/// Evaluation result over a data set.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct EvalStats {
    /// Mean cross-entropy.
    pub loss: f64,
    /// Fraction of correctly classified samples.
    pub accuracy: f64,
}

/// Everything needed to resume training exactly: specs, counters, RNG position, and named
/// `f32` arrays (weights, batch-norm statistics, optimizer moments).
#[derive(Debug, Clone, PartialEq)]
pub struct TrainerState {
    /// Scalars and specs.
    pub meta: StateMeta,
    /// Named arrays, in the trainer's order.
    pub arrays: Vec<(String, Vec<f32>)>,
}

impl TrainerState {
    /// The state as a view (no copies), as [`Trainer::state_view`] gives it.
    pub fn view(&self) -> TrainerStateView<'_> {
        TrainerStateView {
            meta: self.meta.clone(),
            arrays: self
                .arrays
                .iter()
                .map(|(name, a)| (name.clone(), a.as_slice()))
                .collect(),
        }
    }
}

/// A [`TrainerState`] whose arrays are borrowed from the trainer (or from an owned state).
#[derive(Debug, Clone, PartialEq)]
pub struct TrainerStateView<'a> {
    /// Scalars and specs.
    pub meta: StateMeta,
    /// Named arrays, in the trainer's order.
    pub arrays: Vec<(String, &'a [f32])>,
}

impl TrainerStateView<'_> {
    /// An owned copy.
    pub fn to_owned(&self) -> TrainerState {
        TrainerState {
            meta: self.meta.clone(),
            arrays: self
                .arrays
                .iter()
                .map(|(name, a)| (name.clone(), a.to_vec()))
                .collect(),
        }
    }
}

/// Non-array part of a [`TrainerState`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateMeta {
    /// Format version (1).
    pub version: u32,
    /// Input width.
    pub input_dim: usize,
    /// Number of classes.
    pub classes: usize,
    /// Model spec.
    pub model: ModelSpec,
    /// Algorithm spec.
    pub algorithm: AlgorithmSpec,
    /// Optimizer spec.
    pub optimizer: OptimizerSpec,
    /// Training batch size.
    pub batch_size: usize,
    /// Steps the schedule spans.
    pub total_steps: u64,
    /// Trainer seed.
    pub seed: u64,
    /// Optimizer steps taken.
    pub step: u64,
    /// Dropout RNG word position (decimal u128).
    pub dropout_word_pos: String,
    /// Projector identity (DFA), checked on restore.
    pub projector_identity: Option<String>,
    /// Projector frames counted when the state was taken (for a backend that can seek).
    pub projector_frames: u64,
}

const STATE_VERSION: u32 = 1;
const EVAL_CHUNK: usize = 1024;
const EVAL_CHUNK_VALUES: usize = 1 << 24;

/// An MLP with its training algorithm, optimizer and preallocated buffers.
pub struct Trainer {
    net: Network,
    model: ModelSpec,
    algorithm: AlgorithmSpec,
    optimizer: OptimizerSpec,
    batch_size: usize,
    total_steps: u64,
    seed: u64,
    step: u64,
    dropout_rng: ChaCha8Rng,
    train_buf: Buffers,
    eval_buf: Option<Buffers>,
    projector: Option<Box<dyn RandomProjector + Send>>,
    projector_info: Option<ProjectorInfo>,
    /// Device frames shown before this trainer's projector was built (set by a restore), so
    /// that `projector_frames` in a checkpoint is the device's global frame index.
    projector_frame_offset: u64,
    /// Projection output, `capacity × projector output_dim`.
    proj: Vec<f32>,
    /// Column offset and scale of each hidden layer's feedback slice.
    offsets: Vec<usize>,
    scales: Vec<f32>,
    /// FA matrices (empty unless FA).
    fa: Vec<Vec<f32>>,
}

impl std::fmt::Debug for Trainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer")
            .field("input_dim", &self.net.input_dim)
            .field("classes", &self.net.classes)
            .field("model", &self.model)
            .field("algorithm", &self.algorithm)
            .field("optimizer", &self.optimizer)
            .field("step", &self.step)
            .finish_non_exhaustive()
    }
}

impl Trainer {
    /// Builds a trainer with freshly initialized weights (seed stream 0), FA matrices (stream 1)
    /// dropout generator (stream 2) and masked-update bottleneck (stream 3).
    ///
    /// DFA with hidden layers needs a projector with `input_dim == classes` and `output_dim ≥
    /// max d_i` (Σ d_i with per-layer feedback); BP and FA take `None`. `total_steps` is what the
    /// learning-rate schedule spans. With `model.init = Init::PreAlignment` (DFA only) the
    /// weights after the first layer are then pre-aligned with the feedback matrices, which
    /// costs one projection of the C unit vectors (see "Pre-alignment initialization" above).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        input_dim: usize,
        classes: usize,
        model: &ModelSpec,
        algorithm: &AlgorithmSpec,
        optimizer: &OptimizerSpec,
        batch_size: usize,
        total_steps: u64,
        seed: u64,
        projector: Option<Box<dyn RandomProjector + Send>>,
    ) -> Result<Trainer, DfaError> {
        let mut trainer = Self::build(
            input_dim,
            classes,
            model,
            algorithm,
            optimizer,
            batch_size,
            total_steps,
            seed,
            projector,
        )?;
        if model.init == Init::PreAlignment {
            trainer.pre_align()?;
        }
        Ok(trainer)
    }

    /// A trainer shaped by a state's metadata, ready for its arrays
    /// ([`Trainer::load_state`], or a streamed read): the weights are initialized but not
    /// pre-aligned, since the state's arrays replace them (pre-alignment would spend a
    /// projection of the C unit vectors on weights about to be overwritten).
    pub fn for_state(
        meta: &StateMeta,
        projector: Option<Box<dyn RandomProjector + Send>>,
    ) -> Result<Trainer, DfaError> {
        Self::build(
            meta.input_dim,
            meta.classes,
            &meta.model,
            &meta.algorithm,
            &meta.optimizer,
            meta.batch_size,
            meta.total_steps,
            meta.seed,
            projector,
        )
    }

    /// [`Trainer::new`] without the pre-alignment.
    #[allow(clippy::too_many_arguments)]
    fn build(
        input_dim: usize,
        classes: usize,
        model: &ModelSpec,
        algorithm: &AlgorithmSpec,
        optimizer: &OptimizerSpec,
        batch_size: usize,
        total_steps: u64,
        seed: u64,
        projector: Option<Box<dyn RandomProjector + Send>>,
    ) -> Result<Trainer, DfaError> {
        model.check()?;
        algorithm.check()?;
        algorithm.check_model(model)?;
        optimizer.check()?;
        check_shape(input_dim, classes, batch_size)?;
        let mut rng = stream_rng(seed, 0);
        let mut net = Network::new(input_dim, classes, model, optimizer, &mut rng);
        net.set_update_mask(model, &mut stream_rng(seed, 3));
        let widths = net.hidden_widths();
        let fa = if algorithm.kind == AlgorithmKind::Fa {
            fa_matrices(&net, seed)
        } else {
            Vec::new()
        };
        let projector_info = check_projector(algorithm, classes, &widths, projector.as_deref())?;
        let (offsets, scales) = match &projector_info {
            Some(info) => feedback_slices(algorithm, classes, &widths, info),
            None => (Vec::new(), Vec::new()),
        };
        let train_buf = net.buffers(batch_size);
        let proj_width = projector_info.as_ref().map_or(0, |i| i.output_dim);
        Ok(Trainer {
            net,
            model: model.clone(),
            algorithm: algorithm.clone(),
            optimizer: optimizer.clone(),
            batch_size,
            total_steps: total_steps.max(1),
            seed,
            step: 0,
            dropout_rng: stream_rng(seed, 2),
            train_buf,
            eval_buf: None,
            projector,
            projector_info,
            projector_frame_offset: 0,
            proj: vec![0.0; batch_size * proj_width],
            offsets,
            scales,
            fa,
        })
    }

    /// Rebuilds a trainer from a state (specs, seed and arrays); DFA needs a projector with the
    /// recorded identity.
    pub fn restore(
        state: TrainerState,
        projector: Option<Box<dyn RandomProjector + Send>>,
    ) -> Result<Trainer, DfaError> {
        let mut t = Trainer::for_state(&state.meta, projector)?;
        t.load_state(state)?;
        Ok(t)
    }

    /// Loads a state taken from a trainer built with the same arguments.
    pub fn load_state(&mut self, state: TrainerState) -> Result<(), DfaError> {
        let TrainerState { meta, arrays } = state;
        let layout: Vec<(String, usize)> =
            arrays.iter().map(|(n, a)| (n.clone(), a.len())).collect();
        let mut sources = arrays.into_iter();
        self.load_state_streamed(&meta, &layout, |dst| {
            let (_, src) = sources.next().expect("one source per array");
            dst.copy_from_slice(&src);
            Ok(())
        })
    }

    /// [`Trainer::load_state`] with the arrays written by `fill`, called once per array in the
    /// order of `arrays` (names and lengths, checked against the trainer's before the first
    /// call) with the slot to overwrite: a state file can be read straight into the trainer
    /// instead of through a second copy of every array (1.5 GiB at a width of 2^20). After an
    /// error from `fill` the trainer's arrays are partly overwritten: discard it.
    pub fn load_state_streamed(
        &mut self,
        meta: &StateMeta,
        arrays: &[(String, usize)],
        mut fill: impl FnMut(&mut [f32]) -> Result<(), DfaError>,
    ) -> Result<(), DfaError> {
        let mine = self.meta();
        let m = meta;
        if m.version != STATE_VERSION {
            return Err(DfaError::State(format!(
                "trainer state version {} is not supported (expected {STATE_VERSION})",
                m.version
            )));
        }
        let differ = |what: &str| {
            DfaError::State(format!(
                "trainer state does not match this trainer: different {what}"
            ))
        };
        if (m.input_dim, m.classes) != (mine.input_dim, mine.classes) {
            return Err(differ("input or class count"));
        }
        if m.model != mine.model {
            return Err(differ("model"));
        }
        if m.algorithm != mine.algorithm {
            return Err(differ("algorithm"));
        }
        if m.optimizer != mine.optimizer {
            return Err(differ("optimizer"));
        }
        if (m.batch_size, m.total_steps) != (mine.batch_size, mine.total_steps) {
            return Err(differ("batch size or total steps"));
        }
        if m.seed != mine.seed {
            return Err(differ("seed"));
        }
        if m.projector_identity != mine.projector_identity {
            return Err(DfaError::State(format!(
                "trainer state was taken with projector {:?} but this trainer uses {:?}",
                m.projector_identity.as_deref().unwrap_or("none"),
                mine.projector_identity.as_deref().unwrap_or("none")
            )));
        }
        let word_pos: u128 = m.dropout_word_pos.parse().map_err(|_| {
            DfaError::State(format!(
                "trainer state: bad dropout RNG position {:?}",
                m.dropout_word_pos
            ))
        })?;
        let mut slots = self.array_slots_mut();
        if slots.len() != arrays.len() {
            return Err(DfaError::State(format!(
                "trainer state has {} arrays, expected {}",
                arrays.len(),
                slots.len()
            )));
        }
        for ((name, dst), (sname, len)) in slots.iter_mut().zip(arrays) {
            if name != sname || dst.len() != *len {
                return Err(DfaError::State(format!(
                    "trainer state array {sname} ({len} values) does not match {name} ({} values)",
                    dst.len()
                )));
            }
        }
        for (_, dst) in slots.iter_mut() {
            fill(dst)?;
        }
        // Put the device's frame clock where the checkpointed run left it, so a noisy device
        // replays the same noise as an uninterrupted run. The projector has already shown its
        // calibration frames (the same ones as the original run's, by determinism); a device
        // that cannot seek resumes with a fresh noise stream.
        if let Some(projector) = self.projector.as_mut() {
            let shown = projector.counters().frames;
            match projector.seek_frame(m.projector_frames) {
                Ok(()) => self.projector_frame_offset = m.projector_frames.saturating_sub(shown),
                Err(e) if e.kind() == speckle_hal::ErrorKind::Unsupported => {}
                Err(e) => {
                    return Err(DfaError::State(format!(
                        "cannot position the projector's device at frame {}: {e}",
                        m.projector_frames
                    )))
                }
            }
        }
        self.step = m.step;
        self.dropout_rng = stream_rng(self.seed, 2);
        self.dropout_rng.set_word_pos(word_pos);
        Ok(())
    }

    fn meta(&self) -> StateMeta {
        StateMeta {
            version: STATE_VERSION,
            input_dim: self.net.input_dim,
            classes: self.net.classes,
            model: self.model.clone(),
            algorithm: self.algorithm.clone(),
            optimizer: self.optimizer.clone(),
            batch_size: self.batch_size,
            total_steps: self.total_steps,
            seed: self.seed,
            step: self.step,
            dropout_word_pos: self.dropout_rng.get_word_pos().to_string(),
            projector_identity: self.projector_info.as_ref().map(|i| i.identity.clone()),
            projector_frames: self.projector_frame_offset + self.counters().frames,
        }
    }

    /// Every stateful array, named, in a fixed order.
    fn array_slots_mut(&mut self) -> Vec<(String, &mut Vec<f32>)> {
        let mut out = Vec::new();
        fn param<'a>(out: &mut Vec<(String, &'a mut Vec<f32>)>, name: String, p: &'a mut Param) {
            let Param { value, m1, m2, .. } = p;
            if !m1.is_empty() {
                out.push((format!("{name}.m1"), m1));
            }
            if !m2.is_empty() {
                out.push((format!("{name}.m2"), m2));
            }
            out.push((name, value));
        }
        for (l, layer) in self.net.layers.iter_mut().enumerate() {
            param(&mut out, format!("layer{l}.weight"), &mut layer.w);
            param(&mut out, format!("layer{l}.bias"), &mut layer.b);
            if let Some(bn) = &mut layer.bn {
                param(&mut out, format!("layer{l}.bn_gamma"), &mut bn.gamma);
                param(&mut out, format!("layer{l}.bn_beta"), &mut bn.beta);
                out.push((format!("layer{l}.bn_running_mean"), &mut bn.running_mean));
                out.push((format!("layer{l}.bn_running_var"), &mut bn.running_var));
            }
        }
        out
    }

    /// A snapshot for checkpoints (copies every array); [`Trainer::state_view`] borrows them
    /// instead.
    pub fn state(&self) -> TrainerState {
        self.state_view().to_owned()
    }

    /// The trainer's state without copying its arrays: what a checkpoint writes. At a width of
    /// 2^20 the weights and Adam moments are 1.5 GiB, which a copy would double.
    pub fn state_view(&self) -> TrainerStateView<'_> {
        let mut arrays = Vec::new();
        fn param<'a>(out: &mut Vec<(String, &'a [f32])>, name: String, p: &'a Param) {
            if !p.m1.is_empty() {
                out.push((format!("{name}.m1"), &p.m1));
            }
            if !p.m2.is_empty() {
                out.push((format!("{name}.m2"), &p.m2));
            }
            out.push((name, &p.value));
        }
        for (l, layer) in self.net.layers.iter().enumerate() {
            param(&mut arrays, format!("layer{l}.weight"), &layer.w);
            param(&mut arrays, format!("layer{l}.bias"), &layer.b);
            if let Some(bn) = &layer.bn {
                param(&mut arrays, format!("layer{l}.bn_gamma"), &bn.gamma);
                param(&mut arrays, format!("layer{l}.bn_beta"), &bn.beta);
                arrays.push((format!("layer{l}.bn_running_mean"), &bn.running_mean));
                arrays.push((format!("layer{l}.bn_running_var"), &bn.running_var));
            }
        }
        TrainerStateView {
            meta: self.meta(),
            arrays,
        }
    }

    /// Named trainable parameters (`layerL.weight` stored fan_in × fan_out row-major,
    /// `layerL.bias`, and `layerL.bn_gamma` / `layerL.bn_beta` with batch norm).
    pub fn parameters(&self) -> Vec<(String, &[f32])> {
        let mut out: Vec<(String, &[f32])> = Vec::new();
        for (l, layer) in self.net.layers.iter().enumerate() {
            out.push((format!("layer{l}.weight"), &layer.w.value));
            out.push((format!("layer{l}.bias"), &layer.b.value));
            if let Some(bn) = &layer.bn {
                out.push((format!("layer{l}.bn_gamma"), &bn.gamma.value));
                out.push((format!("layer{l}.bn_beta"), &bn.beta.value));
            }
        }
        out
    }

    fn params_mut(&mut self) -> Vec<(String, &mut Param)> {
        let mut out: Vec<(String, &mut Param)> = Vec::new();
        for (l, layer) in self.net.layers.iter_mut().enumerate() {
            out.push((format!("layer{l}.weight"), &mut layer.w));
            out.push((format!("layer{l}.bias"), &mut layer.b));
            if let Some(bn) = &mut layer.bn {
                out.push((format!("layer{l}.bn_gamma"), &mut bn.gamma));
                out.push((format!("layer{l}.bn_beta"), &mut bn.beta));
            }
        }
        out
    }

    /// Overwrites one named parameter (see [`Trainer::parameters`]).
    pub fn set_parameter(&mut self, name: &str, values: &[f32]) -> Result<(), DfaError> {
        for (n, p) in self.params_mut() {
            if n == name {
                if p.value.len() != values.len() {
                    return Err(DfaError::Mismatch(format!(
                        "parameter {name} has {} values, got {}",
                        p.value.len(),
                        values.len()
                    )));
                }
                p.value.copy_from_slice(values);
                return Ok(());
            }
        }
        Err(DfaError::Mismatch(format!("no parameter named {name}")))
    }

    /// Optimizer steps taken.
    pub fn step(&self) -> u64 {
        self.step
    }

    /// Learning rate the next step will use.
    pub fn learning_rate(&self) -> f64 {
        crate::optim::learning_rate(&self.optimizer, self.step, self.total_steps)
    }

    /// Projector frames and device time (zero without a projector).
    pub fn counters(&self) -> DeviceCounters {
        self.projector
            .as_ref()
            .map_or_else(DeviceCounters::default, |p| p.counters())
    }

    /// The projector's info (DFA only).
    pub fn projector_info(&self) -> Option<&ProjectorInfo> {
        self.projector_info.as_ref()
    }

    /// Host GEMM flops of one training sample (forward, weight gradients, and for BP/FA the
    /// backward propagation); the projection itself is not counted.
    pub fn flops_per_sample(&self) -> f64 {
        self.net
            .flops_per_sample(self.algorithm.kind != AlgorithmKind::Dfa)
    }

    fn check_batch(&self, x: &ArrayView2<f32>, labels: &[u8]) -> Result<usize, DfaError> {
        let n = x.nrows();
        if x.ncols() != self.net.input_dim {
            return Err(DfaError::Mismatch(format!(
                "input has {} features, the network takes {}",
                x.ncols(),
                self.net.input_dim
            )));
        }
        if labels.len() != n {
            return Err(DfaError::Mismatch(format!(
                "{n} input rows but {} labels",
                labels.len()
            )));
        }
        if n == 0 {
            return Err(DfaError::Mismatch("empty batch".into()));
        }
        if let Some(i) = labels.iter().position(|&y| y as usize >= self.net.classes) {
            return Err(DfaError::Mismatch(format!(
                "label {} at row {i} is out of range for {} classes",
                labels[i], self.net.classes
            )));
        }
        Ok(n)
    }

    /// One optimizer step on a batch (rows of `x`, labels in `0..classes`). Batches may be
    /// smaller than the configured size (the last one of an epoch); larger ones grow the buffers.
    ///
    /// A non-finite loss returns [`DfaError::Diverged`] before any parameter changes.
    pub fn train_batch(
        &mut self,
        x: ArrayView2<f32>,
        labels: &[u8],
    ) -> Result<StepStats, DfaError> {
        // The whole step runs on a rayon worker: every parallel pass inside it then starts
        // on this thread and shares with the others by stealing, instead of parking the caller
        // and waking the pool once per pass (tens of context switches per step otherwise).
        rayon::scope(|_| self.train_batch_in_pool(x, labels))
    }

    fn train_batch_in_pool(
        &mut self,
        x: ArrayView2<f32>,
        labels: &[u8],
    ) -> Result<StepStats, DfaError> {
        let n = self.check_batch(&x, labels)?;
        if n > self.train_buf.capacity {
            self.train_buf = self.net.buffers(n);
            let w = self.projector_info.as_ref().map_or(0, |i| i.output_dim);
            self.proj = vec![0.0; n * w];
        }
        copy_rows(&x, &mut self.train_buf.input);
        self.net
            .forward(&mut self.train_buf, n, Mode::Train, &mut self.dropout_rng);
        let (loss_sum, correct) = self.net.loss(&mut self.train_buf, n, labels);
        if loss_exploded(loss_sum, n) {
            return Err(DfaError::Diverged {
                step: self.step,
                loss: loss_sum,
            });
        }
        let scalars = StepScalars::new(&self.optimizer, self.step, self.total_steps);
        self.backward(n, Mode::Train, Some(&scalars), None)?;
        self.step += 1;
        Ok(StepStats {
            loss_sum,
            correct,
            count: n,
        })
    }

    /// Backward pass of the trainer's algorithm on the train buffers (or the eval buffers when
    /// `mode` is Eval), projecting the error first for DFA.
    fn backward(
        &mut self,
        n: usize,
        mode: Mode,
        update: Option<&StepScalars>,
        capture: Option<&mut Capture>,
    ) -> Result<(), DfaError> {
        self.backward_as(self.algorithm.kind, n, mode, update, capture)
    }

    fn backward_as(
        &mut self,
        kind: AlgorithmKind,
        n: usize,
        mode: Mode,
        update: Option<&StepScalars>,
        capture: Option<&mut Capture>,
    ) -> Result<(), DfaError> {
        let buf = pass_buffers(&self.net, &mut self.train_buf, &mut self.eval_buf, mode, n);
        let feedback = match kind {
            AlgorithmKind::Bp => Feedback::Backprop,
            AlgorithmKind::Fa => Feedback::Fixed(&self.fa),
            AlgorithmKind::Dfa => match (&mut self.projector, &self.projector_info) {
                (Some(p), Some(info)) => {
                    let c = self.net.classes;
                    let w = info.output_dim;
                    if self.proj.len() < n * w {
                        self.proj = vec![0.0; n * w];
                    }
                    p.project(&buf.err[..n * c], n, &mut self.proj[..n * w])?;
                    Feedback::Direct {
                        proj: &self.proj[..n * w],
                        stride: w,
                        offsets: &self.offsets,
                        scales: &self.scales,
                    }
                }
                // DFA without hidden layers: only the output layer, which gets its true gradient.
                _ => Feedback::Backprop,
            },
        };
        self.net.backward(buf, n, mode, feedback, update, capture);
        Ok(())
    }

    /// The gradients the trainer's algorithm would apply on this batch, without stepping:
    /// train-mode forward (so dropout draws and batch-norm running statistics advance), then the
    /// backward pass. Names as in [`Trainer::parameters`]. For tests and analyses; allocates.
    pub fn gradients(
        &mut self,
        x: ArrayView2<f32>,
        labels: &[u8],
    ) -> Result<Vec<(String, Vec<f32>)>, DfaError> {
        let n = self.check_batch(&x, labels)?;
        let buf = pass_buffers(
            &self.net,
            &mut self.train_buf,
            &mut self.eval_buf,
            Mode::Train,
            n,
        );
        copy_rows(&x, &mut buf.input);
        self.net.forward(buf, n, Mode::Train, &mut self.dropout_rng);
        self.net.loss(buf, n, labels);
        self.backward(n, Mode::Train, None, None)?;
        Ok(self
            .params_mut()
            .into_iter()
            .map(|(name, p)| (name, p.grad.clone()))
            .collect())
    }

    fn eval_forward(&mut self, x: &ArrayView2<f32>, labels: &[u8]) -> (f64, usize) {
        let n = x.nrows();
        let buf = pass_buffers(
            &self.net,
            &mut self.train_buf,
            &mut self.eval_buf,
            Mode::Eval,
            n,
        );
        copy_rows(x, &mut buf.input);
        self.net.forward(buf, n, Mode::Eval, &mut self.dropout_rng);
        self.net.loss(buf, n, labels)
    }

    /// Mean loss and accuracy in eval mode (no dropout, batch-norm running statistics),
    /// in chunks of at most 1024 rows.
    pub fn evaluate(&mut self, x: ArrayView2<f32>, labels: &[u8]) -> Result<EvalStats, DfaError> {
        rayon::scope(|_| self.evaluate_in_pool(x, labels))
    }

    fn evaluate_in_pool(
        &mut self,
        x: ArrayView2<f32>,
        labels: &[u8],
    ) -> Result<EvalStats, DfaError> {
        let n = self.check_batch(&x, labels)?;
        let (mut loss, mut correct) = (0.0, 0);
        let mut start = 0;
        // Rows per chunk: up to 1024, fewer for very wide layers so that each buffer stays
        // near 64 MiB (16 rows at a width of 2^20), or the training batch's rows when more:
        // the training buffers serve evaluation too.
        let widest = self
            .net
            .hidden_widths()
            .into_iter()
            .max()
            .unwrap_or(1)
            .max(1);
        let chunk = (EVAL_CHUNK_VALUES / widest)
            .max(self.train_buf.capacity)
            .clamp(1, EVAL_CHUNK);
        while start < n {
            let end = (start + chunk).min(n);
            let xs = x.slice(ndarray::s![start..end, ..]);
            let (l, c) = self.eval_forward(&xs, &labels[start..end]);
            loss += l;
            correct += c;
            start = end;
        }
        Ok(EvalStats {
            loss: loss / n as f64,
            accuracy: correct as f64 / n as f64,
        })
    }

    /// Per hidden layer, how well the algorithm's feedback aligns with backprop on a fixed batch,
    /// in eval mode (no dropout, running batch-norm statistics), without changing any parameter:
    /// the per-sample cosine at each hidden block's output between the algorithm's signal (DFA:
    /// B_i·e scaled as the layer receives it; FA: the FA-propagated gradient; BP: the gradient
    /// itself) and the true gradient W_{i+1}ᵀ·δ_{i+1} of a backprop pass with the same weights,
    /// mean ± population std over the batch; and the cosine (and angle) between the weight
    /// updates. A zero vector has cosine 0 with anything. DFA spends one projection of the batch.
    pub fn alignment(
        &mut self,
        x: ArrayView2<f32>,
        labels: &[u8],
    ) -> Result<Vec<LayerAlignment>, DfaError> {
        let n = self.check_batch(&x, labels)?;
        self.eval_forward(&x, labels);
        // Both backward passes only read the forward buffers. The algorithm's pass runs first
        // and hands over its deltas (and its block-output signals, except DFA's, which stay in
        // the projection buffer); the BP pass then does the same. The weight updates are
        // compared tile by tile from the deltas, never formed whole.
        let mut alg = Capture::default();
        self.backward_as(self.algorithm.kind, n, Mode::Eval, None, Some(&mut alg))?;
        let bp = if self.algorithm.kind == AlgorithmKind::Bp {
            None
        } else {
            let mut bp = Capture::default();
            self.backward_as(AlgorithmKind::Bp, n, Mode::Eval, None, Some(&mut bp))?;
            Some(bp)
        };
        let bp = bp.as_ref().unwrap_or(&alg);
        let buf = pass_buffers(
            &self.net,
            &mut self.train_buf,
            &mut self.eval_buf,
            Mode::Eval,
            n,
        );
        let weight_cosines = self.net.weight_cosines(buf, n, &bp.delta, &alg.delta);
        let direct = match (&self.projector_info, self.algorithm.kind) {
            (Some(info), AlgorithmKind::Dfa) => Some(Feedback::Direct {
                proj: &self.proj[..n * info.output_dim],
                stride: info.output_dim,
                offsets: &self.offsets,
                scales: &self.scales,
            }),
            _ => None,
        };
        Ok(alignment::compare(bp, &alg, direct, &weight_cosines, n))
    }
}

/// The buffers a pass of `n` rows runs on: training always on the training buffers (grown to
/// `n` rows when fewer); evaluation on them too when they hold `n` rows (nothing in them
/// outlives a step, and at a width of 2^20 a second set would cost hundreds of MiB), on buffers
/// of its own otherwise (a test chunk larger than the batch).
fn pass_buffers<'b>(
    net: &Network,
    train: &'b mut Buffers,
    eval: &'b mut Option<Buffers>,
    mode: Mode,
    n: usize,
) -> &'b mut Buffers {
    if mode == Mode::Train || train.capacity >= n {
        if train.capacity < n {
            *train = net.buffers(n);
        }
        return train;
    }
    if eval.as_ref().is_none_or(|b| b.capacity < n) {
        *eval = Some(net.buffers(n));
    }
    eval.as_mut().expect("just created")
}

/// Checks the shape arguments of [`Trainer::new`].
fn check_shape(input_dim: usize, classes: usize, batch_size: usize) -> Result<(), DfaError> {
    if input_dim == 0 {
        return Err(DfaError::Mismatch("input dimension is 0".into()));
    }
    if !(2..=256).contains(&classes) {
        return Err(DfaError::Mismatch(format!(
            "{classes} classes: expected 2 to 256"
        )));
    }
    if batch_size == 0 {
        return Err(DfaError::InvalidSpec("batch size must be ≥ 1".into()));
    }
    Ok(())
}

/// The info of the projector the algorithm uses (DFA with hidden layers), once checked to fit
/// the network; an error when a projector is missing or given to BP or FA.
fn check_projector(
    algorithm: &AlgorithmSpec,
    classes: usize,
    widths: &[usize],
    projector: Option<&(dyn RandomProjector + Send)>,
) -> Result<Option<ProjectorInfo>, DfaError> {
    match (algorithm.kind, projector) {
        (AlgorithmKind::Dfa, Some(p)) => {
            let info = p.info();
            check_dfa_projector(&info, algorithm, classes, widths)?;
            Ok(Some(info))
        }
        (AlgorithmKind::Dfa, None) if widths.is_empty() => Ok(None),
        (AlgorithmKind::Dfa, None) => Err(DfaError::Mismatch(
            "DFA needs a random projector for its feedback".into(),
        )),
        (kind, Some(p)) => Err(DfaError::Mismatch(format!(
            "{kind} uses no random projector, but {} was given",
            p.info().identity
        ))),
        (_, None) => Ok(None),
    }
}

/// Checks that a DFA projector takes the class errors and is wide enough for every hidden
/// layer's slice.
fn check_dfa_projector(
    info: &ProjectorInfo,
    algorithm: &AlgorithmSpec,
    classes: usize,
    widths: &[usize],
) -> Result<(), DfaError> {
    let need = if algorithm.per_layer_feedback {
        widths.iter().sum()
    } else {
        widths.iter().copied().max().unwrap_or(0)
    };
    if info.input_dim != classes {
        return Err(DfaError::Mismatch(format!(
            "projector {} takes {} inputs but the network has {} classes",
            info.identity, info.input_dim, classes
        )));
    }
    if info.output_dim < need {
        return Err(DfaError::Mismatch(format!(
            "projector {} has {} outputs but DFA needs at least {} ({})",
            info.identity,
            info.output_dim,
            need,
            if algorithm.per_layer_feedback {
                "the sum of the hidden widths"
            } else {
                "the widest hidden layer"
            }
        )));
    }
    if !(info.entry_variance.is_finite() && info.entry_variance > 0.0) {
        return Err(DfaError::Mismatch(format!(
            "projector {} reports entry variance {}",
            info.identity, info.entry_variance
        )));
    }
    Ok(())
}

/// Column offset and scale of each hidden layer's slice of the projection: unit-variance
/// entries, further divided by sqrt(classes·d_i) with feedback normalization, or scaled to
/// Xavier's variance 2/(classes + d_i); every layer starts at column 0 of a shared matrix, or at
/// Σ_{j<i} d_j with per-layer feedback.
fn feedback_slices(
    algorithm: &AlgorithmSpec,
    classes: usize,
    widths: &[usize],
    info: &ProjectorInfo,
) -> (Vec<usize>, Vec<f32>) {
    let unit = 1.0 / info.entry_variance.sqrt();
    let mut offsets = Vec::with_capacity(widths.len());
    let mut scales = Vec::with_capacity(widths.len());
    let mut off = 0;
    for &d in widths {
        offsets.push(if algorithm.per_layer_feedback { off } else { 0 });
        off += d;
        let norm = match algorithm.feedback_scale {
            FeedbackScale::Xavier => (2.0 / (classes + d) as f64).sqrt(),
            FeedbackScale::Seed if algorithm.feedback_normalization => {
                1.0 / ((classes * d) as f64).sqrt()
            }
            FeedbackScale::Seed => 1.0,
        };
        scales.push((unit * norm) as f32);
    }
    (offsets, scales)
}

/// Copies the rows of `x` (any layout) into the start of `dst`.
fn copy_rows(x: &ArrayView2<f32>, dst: &mut [f32]) {
    let d = x.ncols();
    if let Some(s) = x.as_slice() {
        dst[..s.len()].copy_from_slice(s);
    } else {
        for (row, out) in x.rows().into_iter().zip(dst.chunks_exact_mut(d)) {
            for (o, v) in out.iter_mut().zip(row) {
                *o = *v;
            }
        }
    }
}

mod prealign;
#[cfg(test)]
mod tests;
