//! One training run from a [`RunConfig`]: data, trainer, the epoch loop, evaluation, alignment,
//! outputs (`metrics.csv`, `summary.json`, `config.toml`, PNG plots), checkpoints and resume.
//!
//! The feedback projector is opened from `[feedback]` through `speckle-devices` ([`train_with`]),
//! or handed in by the caller ([`train_with_projector`]: a device of one's own, or a test fake).
//! It is built once per run: the optical path is one matrix for the whole run, as on hardware.
//!
//! ```
//! use speckle_runs::run::{train_with, RunOptions};
//! use speckle_runs::RunConfig;
//!
//! let config = RunConfig::load(
//!     Some(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs/mnist-bp.toml"))),
//!     &[
//!         "data.train_subset=500".into(),
//!         "data.test_subset=100".into(),
//!         "model.hidden=[16]".into(),
//!         "training.epochs=2".into(),
//!     ],
//! )?;
//! let out = tempfile::tempdir()?;
//! let dir = out.path().join("run");
//! // Stop after the first epoch (its checkpoint is kept), then resume to the end.
//! let first = train_with(&config, &dir, &RunOptions { stop_after_epochs: Some(1), ..RunOptions::default() })?;
//! assert!(!first.completed && first.metrics.len() == 1);
//! let all = train_with(&config, &dir, &RunOptions { resume: true, ..RunOptions::default() })?;
//! assert!(all.completed && all.metrics.len() == 2);
//! assert!(dir.join("summary.json").is_file() && dir.join("metrics.csv").is_file());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::atomic::write_atomic;
use crate::checkpoint::{self, CheckpointError, RunState, RUN_STATE_VERSION};
use crate::config::{CheckedRunConfig, ConfigError, RunConfig};
use crate::data::{self, DataError, Dataset};
use crate::metrics::{self, AlignmentSummary, EpochMetrics, Summary};
use crate::plot::{self, PlotError};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ndarray::{s, Array2};
use rand::seq::SliceRandom;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use speckle_dfa::AlgorithmKind;
use speckle_dfa::{DfaError, Trainer};
use speckle_hal::{DeviceCounters, RandomProjector};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// How a run reports progress on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Progress {
    /// A progress bar with loss and accuracy (only when stderr is a terminal) and one line per
    /// epoch.
    Bar,
    /// One line per epoch, no bar.
    Lines,
    /// Nothing.
    Quiet,
}

/// Options of [`train_with`].
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Continue the run whose checkpoint is in the output directory.
    pub resume: bool,
    /// Progress reporting.
    pub progress: Progress,
    /// Stop (after checkpointing) once this many epochs are done in total, even if the config
    /// asks for more; the run can be resumed later. `None`: run to the end.
    pub stop_after_epochs: Option<usize>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            resume: false,
            progress: Progress::Quiet,
            stop_after_epochs: None,
        }
    }
}

/// A run failure. Messages are one line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Missing or bad data files.
    #[error(transparent)]
    Data(#[from] DataError),
    /// The feedback projector could not be built.
    #[error("feedback projector {spec}: {cause}")]
    Projector {
        /// The projector SPEC.
        spec: String,
        /// The cause (part of the message; not returned by `source()`, so each clause prints once).
        cause: speckle_hal::Error,
    },
    /// The trainer refused the configuration or failed.
    #[error("trainer: {0}")]
    Trainer(DfaError),
    /// The output directory cannot be used.
    #[error("{0}")]
    OutDir(String),
    /// Writing an output file failed.
    #[error("writing {path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause (part of the message; not returned by `source()`, so each clause prints once).
        cause: std::io::Error,
    },
    /// Saving or loading a checkpoint failed.
    #[error("checkpoint: {0}")]
    Checkpoint(CheckpointError),
    /// The checkpoint belongs to another configuration or projector.
    #[error("cannot resume {dir}: {message}")]
    ResumeMismatch {
        /// The run directory.
        dir: PathBuf,
        /// What differs.
        message: String,
    },
    /// The loss or an evaluation became NaN or infinite.
    #[error("training diverged in epoch {epoch} ({detail}); the last good checkpoint (epoch {last_good}) is kept in {dir}")]
    Diverged {
        /// 1-based epoch in which it happened.
        epoch: usize,
        /// What was not finite.
        detail: String,
        /// Epochs completed in the kept checkpoint (0: none written).
        last_good: usize,
        /// The run directory.
        dir: PathBuf,
    },
    /// Drawing a plot failed.
    #[error(transparent)]
    Plot(#[from] PlotError),
}

// By hand rather than `#[from]`, which would also make the inner error the `source()` of a
// message that already contains it (printed twice by a chain printer such as anyhow's `{:#}`).
impl From<DfaError> for RunError {
    fn from(e: DfaError) -> Self {
        RunError::Trainer(e)
    }
}

impl From<CheckpointError> for RunError {
    fn from(e: CheckpointError) -> Self {
        RunError::Checkpoint(e)
    }
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// The summary (also in `summary.json` when the run completed).
    pub summary: Summary,
    /// One row per completed epoch (also in `metrics.csv`).
    pub metrics: Vec<EpochMetrics>,
    /// False when the run stopped early at [`RunOptions::stop_after_epochs`].
    pub completed: bool,
    /// The output directory.
    pub out_dir: PathBuf,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RunError + '_ {
    move |cause| RunError::Io {
        path: path.to_path_buf(),
        cause,
    }
}

/// Loads the data of a config: subsets, then standardization with the training set's pixel
/// statistics.
pub fn load_data(config: &RunConfig) -> Result<(Dataset, Dataset), DataError> {
    let dir = config.data.resolved_dir();
    let mut splits = data::load(config.data.dataset, &dir)?;
    if let Some(n) = config.data.train_subset {
        splits.train.truncate(n);
    }
    if let Some(n) = config.data.test_subset {
        splits.test.truncate(n);
    }
    if config.data.standardize {
        let (mean, std) = splits.train.pixel_stats();
        splits.train.standardize(mean, std);
        splits.test.standardize(mean, std);
    }
    Ok((splits.train, splits.test))
}

/// The order of the training samples in `epoch` (0-based): a permutation drawn from
/// `(seed, epoch)` alone, so a resumed run sees the same order as an uninterrupted one.
pub fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    // A key distinct from the trainer's own use of `seed`.
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5348_5546_464c_4521);
    rng.set_stream(epoch as u64);
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rng);
    order
}

/// A `runs/<name>-<UTC time>` directory name that does not exist yet.
pub fn default_out_dir(config: &RunConfig) -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let base = format!("{}-{}", config.run_name(), utc_stamp(secs));
    let mut dir = Path::new("runs").join(&base);
    let mut k = 2;
    while dir.exists() {
        dir = Path::new("runs").join(format!("{base}-{k}"));
        k += 1;
    }
    dir
}

/// `YYYYmmdd-HHMMSS` in UTC for seconds since the Unix epoch.
fn utc_stamp(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Trains a run to its end (see [`train_with`]).
pub fn train(
    config: &CheckedRunConfig,
    out_dir: &Path,
    resume: bool,
    progress: Progress,
) -> Result<RunOutcome, RunError> {
    train_with(
        config,
        out_dir,
        &RunOptions {
            resume,
            progress,
            stop_after_epochs: None,
        },
    )
}

struct Reporter {
    bar: Option<ProgressBar>,
    lines: bool,
}

impl Reporter {
    fn new(progress: Progress) -> Self {
        let bar = (progress == Progress::Bar && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed}<{eta})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar
        });
        Self {
            bar,
            lines: progress != Progress::Quiet,
        }
    }
    fn start_epoch(&self, epoch: usize, epochs: usize, steps: usize) {
        if let Some(b) = &self.bar {
            b.reset();
            b.set_length(steps as u64);
            b.set_position(0);
            b.set_prefix(format!("epoch {epoch}/{epochs}"));
        }
    }
    fn step(&self, loss: f64, acc: f64) {
        if let Some(b) = &self.bar {
            b.set_message(format!("loss {loss:.4} acc {:.2}%", 100.0 * acc));
            b.inc(1);
        }
    }
    fn line(&self, s: &str) {
        if !self.lines {
            return;
        }
        match &self.bar {
            Some(b) => b.println(s),
            None => eprintln!("{s}"),
        }
    }
    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// Checks that an output directory may be used, and returns whether the run continues from
/// its checkpoint: a new run needs it absent or empty (but for what a run killed before its
/// first checkpoint leaves: [`EARLY_FILES`], its lock, temporary files); a resumed one needs a
/// checkpoint, or the `config.toml` (equal to this run's) of a run killed before its first.
fn prepare_out_dir(dir: &Path, resume: bool, config_toml: &str) -> Result<bool, RunError> {
    if resume {
        if !dir.is_dir() {
            return Err(RunError::OutDir(format!(
                "cannot resume: {} is not a directory",
                dir.display()
            )));
        }
        if checkpoint::exists(dir) {
            return Ok(true);
        }
        let config_path = dir.join("config.toml");
        let others = kept_entries(dir)?;
        if !config_path.is_file() || !others.is_empty() {
            return Err(RunError::OutDir(format!(
                "cannot resume: {} holds no checkpoint",
                dir.display()
            )));
        }
        let written = std::fs::read_to_string(&config_path).map_err(io_err(&config_path))?;
        if written != config_toml {
            return Err(RunError::ResumeMismatch {
                dir: dir.to_path_buf(),
                message: "the configuration differs from its config.toml".into(),
            });
        }
        // Killed before its first checkpoint: nothing to continue, start from scratch.
        return Ok(false);
    }
    if dir.exists() {
        let non_empty = checkpoint::exists(dir) || !kept_entries(dir)?.is_empty();
        if non_empty {
            return Err(RunError::OutDir(format!(
                "output directory {} exists and is not empty (choose another --out, or --resume it)",
                dir.display()
            )));
        }
    }
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    Ok(false)
}

/// Files a run writes before its first checkpoint: a folder that holds only these (besides
/// its lock and temporary files) has nothing to keep, and a new run may start in it.
const EARLY_FILES: [&str; 2] = ["config.toml", "metrics.csv"];

/// The entries of `dir` other than its lock, temporary files and [`EARLY_FILES`].
fn kept_entries(dir: &Path) -> Result<Vec<String>, RunError> {
    let mut kept = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let name = entry.map_err(io_err(dir))?.file_name();
        let name = name.to_string_lossy();
        if name == crate::lock::LOCK_FILE
            || crate::atomic::temp_owner(&name).is_some()
            || EARLY_FILES.contains(&name.as_ref())
        {
            continue;
        }
        kept.push(name.into_owned());
    }
    Ok(kept)
}

/// Opens a run folder: locks it for this process (a second `speckle train` into it is refused
/// at once), checks it ([`prepare_out_dir`]) and removes temporary files left by a killed run.
/// Returns the lock and whether the run continues from a checkpoint; a run killed before its
/// first checkpoint starts again from scratch, whether given as `--out` or `--resume`.
fn open_out_dir(
    dir: &Path,
    resume: bool,
    config_toml: &str,
) -> Result<(crate::lock::DirLock, bool), RunError> {
    if !dir.exists() {
        // Creates it for a new run; refuses a resume.
        prepare_out_dir(dir, resume, config_toml)?;
    }
    let lock_path = dir.join(crate::lock::LOCK_FILE);
    let lock_existed = lock_path.exists();
    let lock = crate::lock::DirLock::acquire(dir).map_err(|e| RunError::OutDir(e.to_string()))?;
    match prepare_out_dir(dir, resume, config_toml) {
        Ok(from_checkpoint) => {
            crate::atomic::remove_stale_temps(dir, std::time::Duration::ZERO);
            Ok((lock, from_checkpoint))
        }
        Err(e) => {
            // A folder that is refused keeps no lock file of ours.
            if !lock_existed {
                let _ = std::fs::remove_file(&lock_path);
            }
            Err(e)
        }
    }
}

fn add_counters(a: DeviceCounters, frames: u64, time_s: f64) -> DeviceCounters {
    DeviceCounters {
        frames: a.frames + frames,
        device_time_s: a.device_time_s + time_s,
    }
}

/// The feedback projector of a DFA run, opened from `[feedback]` for `classes` inputs and the
/// run's feedback width; `None` for BP and FA.
pub fn open_feedback(
    config: &RunConfig,
    classes: usize,
) -> Result<Option<Box<dyn RandomProjector + Send>>, RunError> {
    if config.training.algorithm != AlgorithmKind::Dfa {
        return Ok(None);
    }
    config
        .feedback
        .spec()
        .open(classes, config.feedback_width())
        .map(Some)
        .map_err(|cause| RunError::Projector {
            spec: config.feedback.projector.to_string(),
            cause,
        })
}

/// Trains a run, writing its outputs into `out_dir`, with the feedback projector that
/// `[feedback]` names (see [`train_with_projector`]).
pub fn train_with(
    config: &CheckedRunConfig,
    out_dir: &Path,
    options: &RunOptions,
) -> Result<RunOutcome, RunError> {
    let projector = open_feedback(config, config.data.dataset.classes())?;
    train_with_projector(config, out_dir, projector, options)
}

/// Trains a run, writing its outputs into `out_dir`, with `projector` as the DFA feedback
/// (`None` for BP and FA).
///
/// The folder is locked for the run (a second run into it is refused). A new run needs
/// `out_dir` absent or empty; with `options.resume` it must hold a checkpoint of the same
/// configuration and projector identity (or only the `config.toml` of a run killed before its
/// first checkpoint, which starts again), and training continues from it to the
/// same result as an uninterrupted run (bit for bit with a deterministic projector; a noisy
/// device restarts its noise stream). After every epoch the outputs and a checkpoint are
/// written. A non-finite loss or evaluation stops the run with [`RunError::Diverged`], leaving
/// the last good checkpoint in place.
pub fn train_with_projector(
    config: &CheckedRunConfig,
    out_dir: &Path,
    projector: Option<Box<dyn RandomProjector + Send>>,
    options: &RunOptions,
) -> Result<RunOutcome, RunError> {
    let started = Instant::now();
    let (train_set, test_set) = load_splits(config)?;
    let identity = projector.as_ref().map(|p| p.info().identity);
    let (_lock, from_checkpoint) = open_out_dir(out_dir, options.resume, &config.to_toml())?;
    let (state, trainer) = if from_checkpoint {
        resume(config, out_dir, projector, &identity, &train_set)?
    } else {
        start(config, out_dir, projector, &identity, &train_set)?
    };
    let data = (&train_set, &test_set);
    let mut run = Run::new(
        config,
        out_dir,
        data,
        trainer,
        state,
        options.progress,
        started,
    )?;
    let epochs = config.training.epochs;
    let stop_at = options.stop_after_epochs.unwrap_or(epochs).min(epochs);
    for epoch in run.state.epochs_done..stop_at {
        if let Err(e) = run.epoch(epoch) {
            run.reporter.finish();
            return Err(e);
        }
    }
    run.reporter.finish();
    run.finish(identity)
}

/// The data of a run ([`load_data`]), with neither split empty.
fn load_splits(config: &RunConfig) -> Result<(Dataset, Dataset), RunError> {
    let (train_set, test_set) = load_data(config)?;
    if train_set.is_empty() || test_set.is_empty() {
        return Err(RunError::Data(DataError::Missing {
            message: "the training or the test split is empty".into(),
        }));
    }
    Ok((train_set, test_set))
}

/// Picks up the run checkpointed in `out_dir`, which must be of this configuration and
/// projector, and consistent with itself and this schedule ([`checkpoint::check_consistent`]).
fn resume(
    config: &RunConfig,
    out_dir: &Path,
    projector: Option<Box<dyn RandomProjector + Send>>,
    identity: &Option<String>,
    train_set: &Dataset,
) -> Result<(RunState, Trainer), RunError> {
    let (run_state, state_file) = checkpoint::load(out_dir)?;
    let steps_per_epoch = train_set.len().div_ceil(config.training.batch_size);
    checkpoint::check_consistent(
        out_dir,
        &run_state,
        state_file.meta(),
        steps_per_epoch as u64,
        config.training.epochs,
    )?;
    let mismatch = |message: String| RunError::ResumeMismatch {
        dir: out_dir.to_path_buf(),
        message,
    };
    if run_state.config_toml != config.to_toml() {
        return Err(mismatch(
            "the configuration differs from the checkpoint's (see its config.toml)".into(),
        ));
    }
    if run_state.projector_identity != *identity {
        return Err(mismatch(format!(
            "the feedback projector is {:?} but the checkpoint was trained with {:?}",
            identity.as_deref().unwrap_or("none"),
            run_state.projector_identity.as_deref().unwrap_or("none")
        )));
    }
    // The trainer is built from the state's arguments, then its arrays are read from the file
    // straight into it: a second copy of the weights and moments would double the memory of a
    // wide network when it resumes.
    let mut trainer = Trainer::for_state(state_file.meta(), projector)?;
    state_file.read_into(&mut trainer)?;
    Ok((run_state, trainer))
}

/// Starts a new run in `out_dir`: a fresh trainer for the whole schedule, and `config.toml`.
fn start(
    config: &RunConfig,
    out_dir: &Path,
    projector: Option<Box<dyn RandomProjector + Send>>,
    identity: &Option<String>,
    train_set: &Dataset,
) -> Result<(RunState, Trainer), RunError> {
    let bs = config.training.batch_size;
    let total_steps = (config.training.epochs * train_set.len().div_ceil(bs)) as u64;
    let trainer = Trainer::new(
        train_set.input_dim(),
        train_set.classes,
        &config.model,
        &config.algorithm_spec(),
        &config.optimizer,
        bs,
        total_steps,
        config.training.seed,
        projector,
    )?;
    let config_toml = config.to_toml();
    let path = out_dir.join("config.toml");
    write_atomic(&path, config_toml.as_bytes()).map_err(io_err(&path))?;
    let run_state = RunState {
        version: RUN_STATE_VERSION,
        epochs_done: 0,
        metrics: Vec::new(),
        config_toml,
        projector_identity: identity.clone(),
        wall_s: 0.0,
        train_s: 0.0,
        device_frames: 0,
        device_time_s: 0.0,
    };
    Ok((run_state, trainer))
}

/// A run under way: its data, trainer, state and batch buffers.
struct Run<'a> {
    config: &'a RunConfig,
    out_dir: &'a Path,
    train_set: &'a Dataset,
    train_flat: &'a [f32],
    test_set: &'a Dataset,
    trainer: Trainer,
    state: RunState,
    reporter: Reporter,
    /// When this invocation started.
    started: Instant,
    /// Wall time, device frames and device time of the invocations before a resume (this
    /// invocation's projector counts from zero).
    before: (f64, u64, f64),
    batch_x: Array2<f32>,
    batch_y: Vec<u8>,
}

impl<'a> Run<'a> {
    fn new(
        config: &'a RunConfig,
        out_dir: &'a Path,
        (train_set, test_set): (&'a Dataset, &'a Dataset),
        trainer: Trainer,
        state: RunState,
        progress: Progress,
        started: Instant,
    ) -> Result<Self, RunError> {
        let bs = config.training.batch_size;
        let train_flat = train_set
            .images
            .as_slice()
            .ok_or_else(|| RunError::OutDir("training images are not contiguous".into()))?;
        Ok(Self {
            config,
            out_dir,
            train_set,
            train_flat,
            test_set,
            trainer,
            before: (state.wall_s, state.device_frames, state.device_time_s),
            state,
            reporter: Reporter::new(progress),
            started,
            batch_x: Array2::<f32>::zeros((bs, train_set.input_dim())),
            batch_y: vec![0u8; bs],
        })
    }

    fn diverged(&self, epoch: usize, detail: String) -> RunError {
        RunError::Diverged {
            epoch: epoch + 1,
            detail,
            last_good: self.state.epochs_done,
            dir: self.out_dir.to_path_buf(),
        }
    }

    /// Epoch `epoch` (0-based): training, evaluation and alignment, then its row, the
    /// metrics file and a checkpoint.
    fn epoch(&mut self, epoch: usize) -> Result<(), RunError> {
        let epochs = self.config.training.epochs;
        let (wall0, frames0, time0) = self.before;
        let t0 = Instant::now();
        let (train_loss, train_accuracy) = self.train_epoch(epoch)?;
        let epoch_train_s = t0.elapsed().as_secs_f64();
        self.state.train_s += epoch_train_s;
        let test = evaluate(&mut self.trainer, self.test_set)?;
        if !train_loss.is_finite() || !test.0.is_finite() {
            return Err(self.diverged(
                epoch,
                format!("train loss {train_loss}, test loss {}", test.0),
            ));
        }
        let n_align = self
            .config
            .training
            .alignment_batch
            .min(self.test_set.len());
        let alignment = self.trainer.alignment(
            self.test_set.images.slice(s![..n_align, ..]),
            &self.test_set.labels[..n_align],
        )?;
        let counters = add_counters(self.trainer.counters(), frames0, time0);
        let row = EpochMetrics {
            epoch: epoch + 1,
            train_loss,
            train_accuracy,
            test_loss: test.0,
            test_accuracy: test.1,
            alignment,
            epoch_train_s,
            wall_s: wall0 + self.started.elapsed().as_secs_f64(),
            device_frames: counters.frames,
            device_time_s: counters.device_time_s,
        };
        self.reporter.line(&epoch_line(&row, epochs));
        self.record(row, counters)
    }

    /// The optimizer steps of epoch `epoch` over the shuffled training set: mean loss and
    /// accuracy of its batches.
    fn train_epoch(&mut self, epoch: usize) -> Result<(f64, f64), RunError> {
        let (bs, seed) = (self.config.training.batch_size, self.config.training.seed);
        let n_train = self.train_set.len();
        let input_dim = self.train_set.input_dim();
        self.reporter
            .start_epoch(epoch + 1, self.config.training.epochs, n_train.div_ceil(bs));
        let order = epoch_order(n_train, seed, epoch);
        let (mut loss_sum, mut correct, mut count) = (0.0f64, 0usize, 0usize);
        for chunk in order.chunks(bs) {
            let b = chunk.len();
            for (row, &i) in chunk.iter().enumerate() {
                self.batch_x
                    .row_mut(row)
                    .as_slice_mut()
                    .expect("owned standard-layout row")
                    .copy_from_slice(&self.train_flat[i * input_dim..(i + 1) * input_dim]);
                self.batch_y[row] = self.train_set.labels[i];
            }
            let stats = match self
                .trainer
                .train_batch(self.batch_x.slice(s![..b, ..]), &self.batch_y[..b])
            {
                Ok(s) => s,
                Err(DfaError::Diverged { step, loss }) => {
                    return Err(self.diverged(epoch, format!("loss {loss} at step {step}")));
                }
                Err(e) => return Err(e.into()),
            };
            loss_sum += stats.loss_sum;
            correct += stats.correct;
            count += stats.count;
            self.reporter.step(
                loss_sum / count.max(1) as f64,
                correct as f64 / count.max(1) as f64,
            );
        }
        Ok((
            loss_sum / count.max(1) as f64,
            correct as f64 / count.max(1) as f64,
        ))
    }

    /// Adds an epoch's row to the state, then writes `metrics.csv` and the checkpoint.
    fn record(&mut self, row: EpochMetrics, counters: DeviceCounters) -> Result<(), RunError> {
        let epoch = row.epoch;
        self.state.metrics.push(row);
        self.state.epochs_done = epoch;
        self.state.wall_s = self.before.0 + self.started.elapsed().as_secs_f64();
        self.state.device_frames = counters.frames;
        self.state.device_time_s = counters.device_time_s;
        let csv_path = self.out_dir.join("metrics.csv");
        write_atomic(
            &csv_path,
            metrics::metrics_csv(&self.state.metrics).as_bytes(),
        )
        .map_err(io_err(&csv_path))?;
        checkpoint::save(self.out_dir, &self.state, &self.trainer.state_view())?;
        Ok(())
    }

    /// The outcome, with `summary.json` when every epoch is done and the plots.
    fn finish(self, identity: Option<String>) -> Result<RunOutcome, RunError> {
        let config = self.config;
        let summary = summarize(
            config,
            &self.state,
            self.trainer.flops_per_sample(),
            self.train_set.len(),
            identity,
        );
        let completed = self.state.epochs_done >= config.training.epochs;
        if completed {
            let path = self.out_dir.join("summary.json");
            let json = serde_json::to_string_pretty(&summary).unwrap_or_default() + "\n";
            write_atomic(&path, json.as_bytes()).map_err(io_err(&path))?;
        }
        if !self.state.metrics.is_empty() {
            let label = format!(
                "{} on {}",
                config.training.algorithm.to_string().to_uppercase(),
                config.data.dataset.name()
            );
            plot::plot_run(self.out_dir, &self.state.metrics, &label)?;
        }
        Ok(RunOutcome {
            summary,
            metrics: self.state.metrics,
            completed,
            out_dir: self.out_dir.to_path_buf(),
        })
    }
}

/// Mean loss and accuracy on a data set, in chunks (weighted by chunk size).
fn evaluate(trainer: &mut Trainer, set: &Dataset) -> Result<(f64, f64), RunError> {
    const CHUNK: usize = 1000;
    let n = set.len();
    let (mut loss, mut acc) = (0.0f64, 0.0f64);
    let mut start = 0;
    while start < n {
        let end = (start + CHUNK).min(n);
        let e = trainer.evaluate(
            set.images.slice(s![start..end, ..]),
            &set.labels[start..end],
        )?;
        let w = (end - start) as f64;
        loss += e.loss * w;
        acc += e.accuracy * w;
        start = end;
    }
    Ok((loss / n as f64, acc / n as f64))
}

fn epoch_line(r: &EpochMetrics, epochs: usize) -> String {
    let align: Vec<String> = r
        .alignment
        .iter()
        .map(|a| format!("{:.3}", a.cosine_mean))
        .collect();
    format!(
        "epoch {}/{}: train loss {:.4} acc {:.2}% | test loss {:.4} acc {:.2}% | alignment [{}] | {:.1} s",
        r.epoch,
        epochs,
        r.train_loss,
        100.0 * r.train_accuracy,
        r.test_loss,
        100.0 * r.test_accuracy,
        align.join(", "),
        r.epoch_train_s
    )
}

fn summarize(
    config: &RunConfig,
    run: &RunState,
    flops_per_sample: f64,
    n_train: usize,
    identity: Option<String>,
) -> Summary {
    let last = run.metrics.last();
    let samples = (run.epochs_done * n_train) as f64;
    let train_s = run.train_s.max(1e-9);
    Summary {
        algorithm: config.training.algorithm.to_string(),
        dataset: config.data.dataset.name().to_string(),
        epochs: run.epochs_done,
        test_accuracy: last.map_or(0.0, |r| r.test_accuracy),
        test_loss: last.map_or(f64::NAN, |r| r.test_loss),
        best_test_accuracy: run
            .metrics
            .iter()
            .map(|r| r.test_accuracy)
            .fold(0.0, f64::max),
        train_accuracy: last.map_or(0.0, |r| r.train_accuracy),
        train_loss: last.map_or(f64::NAN, |r| r.train_loss),
        alignment: last.map_or_else(Vec::new, |r| {
            r.alignment
                .iter()
                .enumerate()
                .map(|(i, a)| AlignmentSummary {
                    layer: i + 1,
                    cosine_mean: a.cosine_mean,
                    cosine_std: a.cosine_std,
                    weight_cosine: a.weight_cosine,
                    weight_angle_deg: a.weight_angle_deg,
                })
                .collect()
        }),
        wall_s: run.wall_s,
        train_s: run.train_s,
        samples_per_s: samples / train_s,
        gflops: flops_per_sample * samples / train_s / 1e9,
        device_frames: run.device_frames,
        device_time_s: run.device_time_s,
        projector: identity.unwrap_or_else(|| "none".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_stamp_known_dates() {
        assert_eq!(utc_stamp(0), "19700101-000000");
        assert_eq!(utc_stamp(951_782_400), "20000229-000000");
        assert_eq!(utc_stamp(1_798_761_599), "20261231-235959");
    }

    #[test]
    fn epoch_order_is_a_permutation_and_depends_on_epoch() {
        let a = epoch_order(1000, 3, 0);
        let b = epoch_order(1000, 3, 1);
        assert_eq!(a, epoch_order(1000, 3, 0));
        assert_ne!(a, b);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..1000).collect::<Vec<_>>());
    }
}
