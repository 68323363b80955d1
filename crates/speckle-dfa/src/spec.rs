//! Parameter structs of the trainer: the model, the training algorithm and the optimizer.
//!
//! They deserialize from TOML with unknown keys rejected and every field defaulted, and are
//! validated once with `check()`, whose error is one line naming the offending key.
//!
//! ```
//! use speckle_dfa::{Activation, AlgorithmKind, ModelSpec, OptimizerSpec};
//!
//! let model: ModelSpec = toml::from_str(r#"
//!     hidden = [256, 256]
//!     activation = "leaky_relu:0.1"
//!     dropout_hidden = 0.1
//! "#).unwrap();
//! assert_eq!(model.activation, Activation::LeakyRelu(0.1));
//! model.check().unwrap();
//!
//! // Unknown keys are errors.
//! assert!(toml::from_str::<OptimizerSpec>("learning_rate = 0.1").is_err());
//! // So are out-of-range values, caught by `check`.
//! let bad: OptimizerSpec = toml::from_str("lr = -1.0").unwrap();
//! assert!(bad.check().unwrap_err().to_string().contains("lr"));
//! # let _ = AlgorithmKind::Dfa;
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::DfaError;

/// Hidden-layer non-linearity.
///
/// In TOML it is a string: `"tanh"`, `"relu"`, `"sigmoid"`, `"leaky_relu"` (slope 0.01) or
/// `"leaky_relu:SLOPE"`, e.g. `"leaky_relu:0.1"`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub enum Activation {
    /// Hyperbolic tangent.
    #[default]
    Tanh,
    /// max(0, x).
    Relu,
    /// x for x > 0, slope·x otherwise.
    LeakyRelu(f32),
    /// Logistic sigmoid 1 / (1 + e^−x).
    Sigmoid,
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Activation::Tanh => f.write_str("tanh"),
            Activation::Relu => f.write_str("relu"),
            Activation::LeakyRelu(s) => write!(f, "leaky_relu:{s}"),
            Activation::Sigmoid => f.write_str("sigmoid"),
        }
    }
}

impl FromStr for Activation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "tanh" => Ok(Activation::Tanh),
            "relu" => Ok(Activation::Relu),
            "sigmoid" => Ok(Activation::Sigmoid),
            "leaky_relu" => Ok(Activation::LeakyRelu(0.01)),
            _ => {
                if let Some(slope) = s.strip_prefix("leaky_relu:") {
                    let v: f32 = slope.trim().parse().map_err(|_| {
                        format!("activation {s:?}: slope {slope:?} is not a number")
                    })?;
                    Ok(Activation::LeakyRelu(v))
                } else {
                    Err(format!(
                        "unknown activation {s:?} (expected tanh, relu, sigmoid, leaky_relu or leaky_relu:SLOPE)"
                    ))
                }
            }
        }
    }
}

impl Serialize for Activation {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Activation {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Weight initialization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Init {
    /// PyTorch's `nn.Linear` default: weights and biases U(±1/sqrt(fan_in)).
    #[default]
    Pytorch,
    /// Xavier/Glorot uniform weights U(±sqrt(6/(fan_in+fan_out))), zero biases.
    Xavier,
    /// All weights and biases zero (Nøkland's choice for tanh DFA; useless for BP and FA).
    Zero,
    /// The seed code's pre-alignment initialization (PAI), DFA only: the PyTorch default draws,
    /// then every layer after the first replaced by the unit-Frobenius-norm weight that makes
    /// the backprop signal at its input equal the DFA signal there. In TOML
    /// `"pre-alignment"`. See [`crate::trainer`]'s "Pre-alignment initialization" for the
    /// definition and what it covers.
    #[serde(rename = "pre-alignment", alias = "pre_alignment")]
    PreAlignment,
}

/// The network: hidden widths and per-block options. Input width and class count come from the
/// data set.
///
/// A hidden block is `Linear → [BatchNorm] → activation → [Dropout]`; input dropout is applied to
/// the input before the first block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSpec {
    /// Widths of the hidden layers, input side first. May be empty (a linear classifier).
    pub hidden: Vec<usize>,
    /// Hidden non-linearity.
    pub activation: Activation,
    /// Batch normalization after each hidden linear layer (PyTorch defaults: momentum 0.1,
    /// eps 1e-5, learnable scale and shift).
    pub batch_norm: bool,
    /// Dropout probability on the input, in [0, 1).
    pub dropout_input: f32,
    /// Dropout probability at the output of each hidden block, in [0, 1).
    pub dropout_hidden: f32,
    /// Weight initialization.
    pub init: Init,
    /// The seed paper code's "bottleneck of size b" without building a narrower layer: hidden
    /// layer `masked_layer` (1-based; 0, the default, masks nothing) keeps a fixed random
    /// fraction `masked_units / width` of its weight, bias and input-gradient updates; the rest
    /// are zeroed at every step (drawn once from the trainer seed, stream 3).
    pub masked_layer: usize,
    /// The b of `masked_layer`: 1 to the layer's width.
    pub masked_units: usize,
}

impl Default for ModelSpec {
    fn default() -> Self {
        Self {
            hidden: vec![800, 800, 800],
            activation: Activation::Tanh,
            batch_norm: false,
            dropout_input: 0.0,
            dropout_hidden: 0.0,
            init: Init::Pytorch,
            masked_layer: 0,
            masked_units: 0,
        }
    }
}

impl ModelSpec {
    /// Validates ranges; the error names the key.
    pub fn check(&self) -> Result<(), DfaError> {
        if let Some(i) = self.hidden.iter().position(|&w| w == 0) {
            return Err(spec_err(format!(
                "model.hidden[{i}] is 0: widths must be ≥ 1"
            )));
        }
        if let Some(i) = self.hidden.iter().position(|&w| w > 1 << 20) {
            return Err(spec_err(format!(
                "model.hidden[{i}] = {} is too large (at most {})",
                self.hidden[i],
                1 << 20
            )));
        }
        if let Activation::LeakyRelu(s) = self.activation {
            if !s.is_finite() || !(0.0..1.0).contains(&s) {
                return Err(spec_err(format!(
                    "model.activation leaky_relu slope {s} must be in [0, 1)"
                )));
            }
        }
        if self.masked_layer > self.hidden.len() {
            return Err(spec_err(format!(
                "model.masked_layer = {} but the model has {} hidden layers (1-based; 0 = none)",
                self.masked_layer,
                self.hidden.len()
            )));
        }
        if self.masked_layer == 0 && self.masked_units != 0 {
            return Err(spec_err(format!(
                "model.masked_units = {} has no effect without model.masked_layer (1-based)",
                self.masked_units
            )));
        }
        if self.masked_layer > 0 {
            let width = self.hidden[self.masked_layer - 1];
            if !(1..=width).contains(&self.masked_units) {
                return Err(spec_err(format!(
                    "model.masked_units = {} must be in 1..={width} (the width of hidden layer {})",
                    self.masked_units, self.masked_layer
                )));
            }
        }
        for (name, p) in [
            ("dropout_input", self.dropout_input),
            ("dropout_hidden", self.dropout_hidden),
        ] {
            if !p.is_finite() || !(0.0..1.0).contains(&p) {
                return Err(spec_err(format!("model.{name} = {p} must be in [0, 1)")));
            }
        }
        Ok(())
    }
}

/// Training algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AlgorithmKind {
    /// Backpropagation: the reference.
    Bp,
    /// Feedback alignment: a fixed random matrix per layer in place of Wᵀ.
    Fa,
    /// Direct feedback alignment through a `RandomProjector`.
    #[default]
    Dfa,
}

impl fmt::Display for AlgorithmKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AlgorithmKind::Bp => "bp",
            AlgorithmKind::Fa => "fa",
            AlgorithmKind::Dfa => "dfa",
        })
    }
}

/// DFA only: the scale of each hidden layer's slice of the feedback projection, applied after
/// the projector's entries are rescaled to unit variance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FeedbackScale {
    /// The seed code's: entries of variance 1/(C·d_i) with `feedback_normalization`, 1 without.
    #[default]
    Seed,
    /// Xavier/Glorot's variance 2/(C + d_i): uniform entries become BioTorch's
    /// U(±sqrt(6/(C + d_i))) (`nn.init.xavier_uniform_` of a C × d_i matrix, gain 1). It replaces
    /// `feedback_normalization`, which must keep its default (true).
    Xavier,
}

/// Training algorithm and its feedback options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlgorithmSpec {
    /// bp, fa or dfa.
    pub kind: AlgorithmKind,
    /// DFA only. True (the seed code's default): layer i's feedback entries have variance
    /// 1/(C·d_i). False: unit variance.
    pub feedback_normalization: bool,
    /// DFA only. False (the seed code): one shared C × d_max matrix, layer i takes its first d_i
    /// columns, so layers of equal width get the same signal. True: independent per-layer
    /// matrices, i.e. a projector of output dim Σd_i, layer i taking its own slice.
    pub per_layer_feedback: bool,
    /// DFA only. The scale of each layer's feedback slice: the seed code's
    /// (`feedback_normalization`) or Xavier's.
    pub feedback_scale: FeedbackScale,
}

impl Default for AlgorithmSpec {
    fn default() -> Self {
        Self {
            kind: AlgorithmKind::Dfa,
            feedback_normalization: true,
            per_layer_feedback: false,
            feedback_scale: FeedbackScale::Seed,
        }
    }
}

impl AlgorithmSpec {
    /// Validates the combination of feedback options; the error names the run-config keys.
    pub fn check(&self) -> Result<(), DfaError> {
        if self.feedback_scale == FeedbackScale::Xavier && !self.feedback_normalization {
            return Err(spec_err(
                "feedback.distribution = \"xavier\" sets each layer's feedback scale itself: \
                 feedback.normalization = false does not apply to it",
            ));
        }
        Ok(())
    }

    /// Validates what the algorithm requires of the model: the pre-alignment initialization
    /// aligns the weights with DFA's feedback matrices, which only DFA has.
    pub fn check_model(&self, model: &ModelSpec) -> Result<(), DfaError> {
        if model.init == Init::PreAlignment && self.kind != AlgorithmKind::Dfa {
            return Err(spec_err(format!(
                "model.init = \"pre-alignment\" needs training.algorithm = \"dfa\" (it aligns the \
                 weights with DFA's feedback matrix), not {}",
                self.kind
            )));
        }
        Ok(())
    }
}

/// Optimizer kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OptimizerKind {
    /// Stochastic gradient descent with optional (Nesterov) momentum, as PyTorch's `SGD`.
    Sgd,
    /// Adam with coupled L2 weight decay, as PyTorch's `Adam`.
    #[default]
    Adam,
}

/// Learning-rate schedule over the run's `total_steps`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Schedule {
    /// lr at every step (after warm-up).
    Constant,
    /// lr · (1 + cos(π·t/T))/2 for step t of T (after warm-up), as PyTorch's
    /// `CosineAnnealingLR` stepped every batch.
    #[default]
    Cosine,
}

/// Optimizer and learning-rate schedule. Weight decay applies to every parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimizerSpec {
    /// sgd or adam.
    pub kind: OptimizerKind,
    /// Base learning rate.
    pub lr: f64,
    /// SGD momentum (0 = none).
    pub momentum: f64,
    /// SGD Nesterov momentum (needs momentum > 0).
    pub nesterov: bool,
    /// L2 weight decay added to the gradient (coupled, as PyTorch's SGD and Adam).
    pub weight_decay: f64,
    /// Adam β1.
    pub beta1: f64,
    /// Adam β2.
    pub beta2: f64,
    /// Adam ε.
    pub eps: f64,
    /// Learning-rate schedule.
    pub schedule: Schedule,
    /// Fraction of the total steps spent in a linear warm-up from 0 to lr, in [0, 1).
    pub warmup_fraction: f64,
}

impl Default for OptimizerSpec {
    fn default() -> Self {
        Self {
            kind: OptimizerKind::Adam,
            lr: 5e-4,
            momentum: 0.0,
            nesterov: false,
            weight_decay: 0.0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            schedule: Schedule::Cosine,
            warmup_fraction: 0.0,
        }
    }
}

impl OptimizerSpec {
    /// Validates ranges; the error names the key.
    pub fn check(&self) -> Result<(), DfaError> {
        let finite_nonneg = |name: &str, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(spec_err(format!(
                    "optimizer.{name} = {v} must be finite and ≥ 0"
                )))
            }
        };
        finite_nonneg("lr", self.lr)?;
        finite_nonneg("weight_decay", self.weight_decay)?;
        if self.lr == 0.0 {
            return Err(spec_err(format!("optimizer.lr = {} must be > 0", self.lr)));
        }
        for (name, v) in [
            ("momentum", self.momentum),
            ("beta1", self.beta1),
            ("beta2", self.beta2),
            ("warmup_fraction", self.warmup_fraction),
        ] {
            if !v.is_finite() || !(0.0..1.0).contains(&v) {
                return Err(spec_err(format!(
                    "optimizer.{name} = {v} must be in [0, 1)"
                )));
            }
        }
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return Err(spec_err(format!(
                "optimizer.eps = {} must be > 0",
                self.eps
            )));
        }
        if self.nesterov && self.momentum == 0.0 {
            return Err(spec_err("optimizer.nesterov needs optimizer.momentum > 0"));
        }
        if self.nesterov && self.kind != OptimizerKind::Sgd {
            return Err(spec_err(
                "optimizer.nesterov applies to kind = \"sgd\" only",
            ));
        }
        Ok(())
    }
}

fn spec_err(msg: impl Into<String>) -> DfaError {
    DfaError::InvalidSpec(msg.into())
}
