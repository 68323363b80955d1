//! Run configuration: one TOML document with `[data]`, `[model]`, `[training]`, `[optimizer]`
//! and `[feedback]` sections, every key optional (defaults = the shipped `mnist-dfa-opu.toml`),
//! unknown keys rejected.
//!
//! Overrides (`--set section.key=value`) edit the TOML tree *before* it is deserialized
//! (`speckle_devices::overrides::apply`), so a misspelt override is rejected exactly like a
//! misspelt file key.
//!
//! ```
//! use speckle_devices::overrides::apply as apply_override;
//! use speckle_runs::config::RunConfig;
//!
//! let mut tree: toml::Table = "[training]\nepochs = 3\n".parse().unwrap();
//! apply_override(&mut tree, "training.seed=7").unwrap();
//! apply_override(&mut tree, "feedback.device.camera.bits=6").unwrap();
//! let config = RunConfig::from_table(tree, "example").unwrap();
//! assert_eq!((config.training.epochs, config.training.seed), (3, 7));
//!
//! let mut tree = toml::Table::new();
//! apply_override(&mut tree, "training.epoch=3").unwrap();
//! let err = RunConfig::from_table(tree, "example").unwrap_err().to_string();
//! assert!(err.contains("epoch") && !err.contains('\n'));
//! ```

use crate::data::DatasetKind;
use serde::{Deserialize, Serialize};
use speckle_devices::{
    overrides, DeviceSpec, Encoding, FeedbackDistribution, FeedbackSpec, OverrideError,
};
use speckle_dfa::{
    AlgorithmKind, AlgorithmSpec, DfaError, FeedbackScale, ModelSpec, OptimizerSpec,
};
use std::path::{Path, PathBuf};

/// The shipped configurations, embedded in the binary (`configs/*.toml` of the repository).
pub const SHIPPED_CONFIGS: [(&str, &str); 4] = [
    ("mnist-bp", include_str!("../../../configs/mnist-bp.toml")),
    ("mnist-fa", include_str!("../../../configs/mnist-fa.toml")),
    ("mnist-dfa", include_str!("../../../configs/mnist-dfa.toml")),
    (
        "mnist-dfa-opu",
        include_str!("../../../configs/mnist-dfa-opu.toml"),
    ),
];

/// The configuration `speckle train` runs with no `--config`: DFA on MNIST through the simulated
/// 8-bit OPU with the levels:3:dither error encoding (`configs/mnist-dfa-opu.toml`).
pub const DEFAULT_CONFIG_TOML: &str = SHIPPED_CONFIGS[3].1;

/// A configuration problem. The message is one line naming the key or the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A config file could not be read.
    #[error("cannot read config {path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause (part of the message; not returned by `source()`, so each clause prints once).
        cause: std::io::Error,
    },
    /// TOML syntax error.
    #[error("config {source_name}: {message}")]
    Syntax {
        /// File name or other origin.
        source_name: String,
        /// Position and message.
        message: String,
    },
    /// A key is unknown or a value has the wrong type or range.
    #[error("config {source_name}: {message}")]
    Invalid {
        /// File name or other origin.
        source_name: String,
        /// The key and what is wrong with it.
        message: String,
    },
    /// A value is out of range or values do not go together ([`RunConfig::check`]).
    #[error("config {source_name}: {source}")]
    Check {
        /// File name or other origin.
        source_name: String,
        /// The key and what is wrong with it.
        source: CheckError,
    },
    /// A malformed `--set` override.
    #[error(transparent)]
    Override(#[from] OverrideError),
}

/// What [`RunConfig::check`] finds wrong, one line naming the key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckError {
    /// A `[model]`, `[optimizer]` or `[feedback]` value the trainer refuses.
    #[error(transparent)]
    Trainer(#[from] DfaError),
    /// A count out of its range.
    #[error("{key} = {value} must be in {min}..={max}")]
    OutOfRange {
        /// The dotted key.
        key: &'static str,
        /// Its value.
        value: usize,
        /// The least value allowed.
        min: usize,
        /// The largest value allowed.
        max: usize,
    },
    /// `training.name` is not a plain word (it names the output folder).
    #[error("training.name = {0:?} must be a non-empty word of letters, digits, '-', '_' or '.'")]
    BadName(String),
    /// A data subset of 0 images.
    #[error("{key} = 0: leave it out to use the whole split")]
    EmptySubset {
        /// The dotted key.
        key: &'static str,
    },
    /// `model.hidden = []` with an algorithm that needs a hidden layer.
    #[error(
        "model.hidden = [] is a linear model, which {algorithm} would train exactly as bp \
         (its only layer gets the true gradient): use training.algorithm = \"bp\", or give \
         hidden layers"
    )]
    LinearModel {
        /// The configured algorithm (`fa` or `dfa`).
        algorithm: AlgorithmKind,
    },
    /// The network would not fit the memory limit (the message names the limit; no `source()`).
    #[error("{0}")]
    Memory(speckle_hal::Error),
    /// `[feedback]` asks for something its projector cannot provide (names the keys; no
    /// `source()`).
    #[error("{0}")]
    Feedback(speckle_hal::Error),
}

/// A [`RunConfig`] that passed [`RunConfig::check`], which is what runs take: a config is
/// checked once, where it is read ([`RunConfig::from_table`] and the loaders), and cannot be
/// changed afterwards. It reads as a `RunConfig`.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedRunConfig(RunConfig);

impl std::ops::Deref for CheckedRunConfig {
    type Target = RunConfig;
    fn deref(&self) -> &RunConfig {
        &self.0
    }
}

impl CheckedRunConfig {
    /// The config itself, to edit (and check again).
    pub fn into_inner(self) -> RunConfig {
        self.0
    }
}

/// `[data]`: which data set, where, how much of it, and its preprocessing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// `mnist`, `fashion-mnist` or `cifar10`.
    pub dataset: DatasetKind,
    /// Directory of the data files. Default: `data/<dataset>` under the current directory,
    /// else under the repository the binary was built from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// Use only the first N training images (all when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub train_subset: Option<usize>,
    /// Use only the first N test images (all when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_subset: Option<usize>,
    /// Standardize inputs with the training set's pixel mean and standard deviation.
    pub standardize: bool,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            dataset: DatasetKind::Mnist,
            dir: None,
            train_subset: None,
            test_subset: None,
            standardize: true,
        }
    }
}

impl DataConfig {
    /// The data directory: `dir` when set; otherwise `data/<dataset>` relative to the current
    /// directory if it exists, else the same path in the source tree this crate was built from
    /// (so `speckle train` works from anywhere in a checkout).
    pub fn resolved_dir(&self) -> PathBuf {
        if let Some(d) = &self.dir {
            return d.clone();
        }
        let rel = Path::new("data").join(self.dataset.name());
        if rel.is_dir() {
            return rel;
        }
        let built = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(&rel);
        if built.is_dir() {
            return built;
        }
        rel
    }
}

/// `[training]`: algorithm, length, batch, seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainingConfig {
    /// `bp`, `fa` or `dfa`.
    pub algorithm: AlgorithmKind,
    /// Passes over the training set.
    pub epochs: usize,
    /// Samples per optimizer step (the last batch of an epoch may be smaller).
    pub batch_size: usize,
    /// Seed of the weights, dropout and shuffling (not of the feedback device: see
    /// `feedback.seed`).
    pub seed: u64,
    /// Alignment is measured once per epoch on the first `alignment_batch` test images.
    pub alignment_batch: usize,
    /// Short name of the run, used for the default output directory `runs/<name>-<time>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Default for TrainingConfig {
    fn default() -> Self {
        Self {
            algorithm: AlgorithmKind::Dfa,
            epochs: 30,
            batch_size: 128,
            seed: 0,
            alignment_batch: 128,
            name: None,
        }
    }
}

/// `[feedback]`: where DFA's random projection B·e comes from, and how the trainer uses it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeedbackConfig {
    /// Projector SPEC: `digital`, `sim`, `sim:PRESET`, `sim:PATH` or `serial:PATH[@BAUD]`.
    #[serde(with = "speckle_devices::as_string")]
    pub projector: DeviceSpec,
    /// Distribution of the feedback matrix: `gaussian` (the seed code's; any projector),
    /// `uniform` (TinyDFA's U[−1, 1), then scaled like the Gaussian) or `xavier` (BioTorch's
    /// U(±sqrt(6/(C + d_i))) per layer, in place of `normalization`; set `per_layer = true` for
    /// BioTorch's independent matrices). `uniform` and `xavier` need `projector = "digital"`.
    #[serde(with = "speckle_devices::as_string")]
    pub distribution: FeedbackDistribution,
    /// Error encoding for an optical projector (device frames per error vector): `ternary`,
    /// `ternary:T`, `ternary:dither` (4), `bitplane:P` (4P), `levels:K`, `levels:K:dither`
    /// (2(K − 1)); see [`Encoding`].
    #[serde(with = "speckle_devices::as_string")]
    pub encoding: Encoding,
    /// Seed of the projection matrix (the device's seed): fixed for the whole run.
    pub seed: u64,
    /// Feedback normalization (entries of layer i's matrix with variance 1/(C·d_i)); must stay
    /// true with `distribution = "xavier"`, which sets its own scale.
    pub normalization: bool,
    /// Independent per-layer feedback matrices instead of one shared, sliced matrix.
    pub per_layer: bool,
    /// Overrides of the device preset's keys (e.g. `camera.bits = 6`), validated by the
    /// device's own config parser when the projector is built.
    #[serde(skip_serializing_if = "toml::Table::is_empty")]
    pub device: toml::Table,
}

impl Default for FeedbackConfig {
    fn default() -> Self {
        let device = FeedbackSpec::default();
        Self {
            projector: device.projector,
            distribution: device.distribution,
            encoding: device.encoding,
            seed: device.seed,
            normalization: true,
            per_layer: false,
            device: device.device,
        }
    }
}

impl FeedbackConfig {
    /// The device part: what `speckle-devices` opens.
    pub fn spec(&self) -> FeedbackSpec {
        FeedbackSpec {
            projector: self.projector.clone(),
            distribution: self.distribution,
            encoding: self.encoding,
            seed: self.seed,
            device: self.device.clone(),
        }
    }
}

/// A whole run configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// `[data]`.
    pub data: DataConfig,
    /// `[model]`: hidden widths, activation, initialization, dropout, batch norm.
    pub model: ModelSpec,
    /// `[training]`.
    pub training: TrainingConfig,
    /// `[optimizer]`: kind, learning rate and schedule.
    pub optimizer: OptimizerSpec,
    /// `[feedback]` (DFA only).
    pub feedback: FeedbackConfig,
}

/// Line and column (1-based) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// The `section.key` at a byte offset of a TOML text: the last `[header]` before the offset
/// and the key on the offset's line.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    let line = text[line_start..line_end].trim();
    let header = text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('[') && l.ends_with(']'))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    if line.starts_with('[') {
        return Some(
            line.trim_matches(|c| c == '[' || c == ']')
                .trim()
                .to_string(),
        );
    }
    let key = line.split('=').next()?.trim().trim_matches('"');
    if key.is_empty() {
        return header;
    }
    Some(match header {
        Some(h) => format!("{h}.{key}"),
        None => key.to_string(),
    })
}

/// One-line form of a toml error message.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Parses TOML text into a tree; a syntax error names the line and column.
pub fn parse_tree(text: &str, source_name: &str) -> Result<toml::Table, ConfigError> {
    text.parse::<toml::Table>().map_err(|e| {
        let at = e
            .span()
            .map(|s| {
                let (l, c) = line_col(text, s.start);
                format!("line {l}, column {c}: ")
            })
            .unwrap_or_default();
        ConfigError::Syntax {
            source_name: source_name.to_string(),
            message: format!("{at}{}", one_line(e.message())),
        }
    })
}

impl RunConfig {
    /// Output dimension of the run's DFA feedback projector: the widest hidden layer (one
    /// shared, sliced matrix) or the sum of the widths (per-layer feedback); at least 1.
    pub fn feedback_width(&self) -> usize {
        let hidden = &self.model.hidden;
        let out = if self.feedback.per_layer {
            hidden.iter().sum()
        } else {
            hidden.iter().copied().max().unwrap_or(0)
        };
        out.max(1)
    }

    /// Deserializes and checks a TOML tree. `source_name` (a file name, `default`, ...) is
    /// used in error messages, which name the offending key.
    pub fn from_table(
        tree: toml::Table,
        source_name: &str,
    ) -> Result<CheckedRunConfig, ConfigError> {
        // Re-serialize so that the deserializer reports a position, from which the key is
        // recovered (deserializing a `toml::Value` directly gives no location).
        let text = toml::to_string(&tree).map_err(|e| ConfigError::Invalid {
            source_name: source_name.to_string(),
            message: one_line(&e.to_string()),
        })?;
        let config: RunConfig = toml::from_str(&text).map_err(|e| {
            let key = e.span().and_then(|s| key_at(&text, s.start));
            let message = match key {
                Some(k) => format!("{k}: {}", one_line(e.message())),
                None => one_line(e.message()),
            };
            ConfigError::Invalid {
                source_name: source_name.to_string(),
                message,
            }
        })?;
        config.check().map_err(|source| ConfigError::Check {
            source_name: source_name.to_string(),
            source,
        })
    }

    /// Parses TOML text, applies `overrides` (`section.key=value`) and checks the result.
    pub fn from_toml_with(
        text: &str,
        source_name: &str,
        overrides: &[String],
    ) -> Result<CheckedRunConfig, ConfigError> {
        let mut tree = parse_tree(text, source_name)?;
        for o in overrides {
            overrides::apply(&mut tree, o)?;
        }
        let name = if overrides.is_empty() {
            source_name.to_string()
        } else {
            format!("{source_name} with --set overrides")
        };
        RunConfig::from_table(tree, &name)
    }

    /// Reads a config file (or the embedded default when `path` is `None`) and applies
    /// overrides.
    pub fn load(
        path: Option<&Path>,
        overrides: &[String],
    ) -> Result<CheckedRunConfig, ConfigError> {
        match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| ConfigError::Io {
                    path: p.to_path_buf(),
                    cause: e,
                })?;
                RunConfig::from_toml_with(&text, &p.display().to_string(), overrides)
            }
            None => {
                RunConfig::from_toml_with(DEFAULT_CONFIG_TOML, "default (mnist-dfa-opu)", overrides)
            }
        }
    }

    /// The complete configuration as TOML (every key, defaults included): what a run writes
    /// to `config.toml` and compares on resume.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot serialize config: {e}\n"))
    }

    /// The trainer's algorithm spec, from `training.algorithm` and `[feedback]`.
    pub fn algorithm_spec(&self) -> AlgorithmSpec {
        AlgorithmSpec {
            kind: self.training.algorithm,
            feedback_normalization: self.feedback.normalization,
            per_layer_feedback: self.feedback.per_layer,
            feedback_scale: match self.feedback.distribution {
                FeedbackDistribution::Xavier => FeedbackScale::Xavier,
                _ => FeedbackScale::Seed,
            },
        }
    }

    /// Validates ranges and combinations (linfa style: the checked config is another type,
    /// so that what takes one never checks it again); the error names the key.
    pub fn check(self) -> Result<CheckedRunConfig, CheckError> {
        self.model.check()?;
        self.optimizer.check()?;
        let algorithm = self.algorithm_spec();
        algorithm.check()?;
        algorithm.check_model(&self.model)?;
        if algorithm.kind == AlgorithmKind::Dfa {
            self.feedback
                .spec()
                .check_distribution()
                .map_err(CheckError::Feedback)?;
        }
        let t = &self.training;
        for (key, value, max) in [
            ("training.epochs", t.epochs, 100_000),
            ("training.batch_size", t.batch_size, 1 << 16),
            ("training.alignment_batch", t.alignment_batch, 1 << 16),
        ] {
            if !(1..=max).contains(&value) {
                return Err(CheckError::OutOfRange {
                    key,
                    value,
                    min: 1,
                    max,
                });
            }
        }
        if let Some(name) = &t.name {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                || name.starts_with('.')
            {
                return Err(CheckError::BadName(name.clone()));
            }
        }
        for (key, v) in [
            ("data.train_subset", self.data.train_subset),
            ("data.test_subset", self.data.test_subset),
        ] {
            if v == Some(0) {
                return Err(CheckError::EmptySubset { key });
            }
        }
        self.check_linear_model()?;
        self.check_model_memory()?;
        Ok(CheckedRunConfig(self))
    }

    /// `hidden = []` is a linear model (softmax regression on the pixels), which the true
    /// gradient trains: fine with `bp`, refused with `fa` and `dfa`, which have no hidden layer
    /// to send a random feedback to.
    fn check_linear_model(&self) -> Result<(), CheckError> {
        let algorithm = self.training.algorithm;
        if self.model.hidden.is_empty() && algorithm != AlgorithmKind::Bp {
            return Err(CheckError::LinearModel { algorithm });
        }
        Ok(())
    }

    /// Refuses, before anything is allocated, a network whose largest weight matrix, or whose
    /// weights and gradients together, exceed the memory limit ([`speckle_hal::memory`]).
    fn check_model_memory(&self) -> Result<(), CheckError> {
        let subject = format!("model.hidden = {:?}", self.model.hidden);
        let mut widths = vec![self.data.dataset.input_dim()];
        widths.extend(&self.model.hidden);
        widths.push(self.data.dataset.classes());
        let (rows, cols) = widths
            .windows(2)
            .map(|w| (w[0], w[1]))
            .max_by_key(|&(a, b)| a.saturating_mul(b))
            .unwrap_or((0, 0));
        speckle_hal::memory::Request::new(
            &subject,
            format!("its {rows} × {cols} weight matrix alone"),
        )
        .times(rows)
        .times(cols)
        .of(4)
        .check()
        .map_err(CheckError::Memory)?;
        let params = widths
            .windows(2)
            .map(|w| (w[0] as u64 + 1).saturating_mul(w[1] as u64))
            .fold(0u64, u64::saturating_add);
        speckle_hal::memory::Request::new(
            &subject,
            format!("its {params} parameters and their gradients"),
        )
        .times(params)
        .times(2u64)
        .of(4)
        .check()
        .map_err(CheckError::Memory)
    }

    /// Short default name of the run: `<algorithm>-<dataset>`, or `training.name`.
    pub fn run_name(&self) -> String {
        self.training
            .name
            .clone()
            .unwrap_or_else(|| format!("{}-{}", self.training.algorithm, self.data.dataset.name()))
    }
}
