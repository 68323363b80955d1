//! Checkpoints of a run on disk: the trainer state (weights, optimizer moments, RNG positions)
//! plus the run's own state (epochs done, metrics so far, the resolved config, the projector's
//! identity, time and device counters spent so far).
//!
//! Layout: `DIR/checkpoint/run.json` and `DIR/checkpoint/trainer.state`. A checkpoint is
//! written into a temporary directory next to it and swapped in by renames, so a crash leaves
//! either the previous checkpoint or the new one, never a mixture.
//!
//! ```
//! use speckle_dfa::{AlgorithmKind, AlgorithmSpec, ModelSpec, OptimizerSpec, Trainer};
//! use speckle_runs::checkpoint::{load_trainer_state, save_trainer_state};
//!
//! let model = ModelSpec { hidden: vec![8], ..ModelSpec::default() };
//! let bp = AlgorithmSpec { kind: AlgorithmKind::Bp, ..AlgorithmSpec::default() };
//! let trainer = Trainer::new(6, 3, &model, &bp, &OptimizerSpec::default(), 4, 10, 1, None)?;
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("trainer.state");
//! save_trainer_state(&trainer.state_view(), &path)?;
//! assert_eq!(load_trainer_state(&path)?, trainer.state());
//! // A damaged file is a one-line error naming it.
//! std::fs::write(&path, b"not a trainer state")?;
//! let e = load_trainer_state(&path).unwrap_err().to_string();
//! assert!(e.contains("trainer.state") && e.contains("bad magic"), "{e}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::atomic::{write_atomic, write_atomic_with};
use crate::metrics::EpochMetrics;
use serde::{Deserialize, Serialize};
use speckle_dfa::{DfaError, StateMeta, Trainer, TrainerState, TrainerStateView};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Version of the `run.json` format.
pub const RUN_STATE_VERSION: u32 = 1;

/// The run's part of a checkpoint (`run.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    /// Format version ([`RUN_STATE_VERSION`]).
    pub version: u32,
    /// Epochs completed.
    pub epochs_done: usize,
    /// One row per completed epoch.
    pub metrics: Vec<EpochMetrics>,
    /// The resolved configuration ([`crate::config::RunConfig::to_toml`]).
    pub config_toml: String,
    /// Identity of the feedback projector (`None` for BP and FA).
    pub projector_identity: Option<String>,
    /// Wall time spent so far, seconds.
    pub wall_s: f64,
    /// Training-step time spent so far, seconds.
    pub train_s: f64,
    /// Device frames spent so far.
    pub device_frames: u64,
    /// Device time spent so far, seconds.
    pub device_time_s: f64,
}

/// A checkpoint problem.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// Reading or writing a file failed.
    #[error("{path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause (part of the message; not returned by `source()`, so each clause prints once).
        cause: std::io::Error,
    },
    /// A checkpoint file is corrupt or of another version.
    #[error("{path}: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The directory holds no checkpoint.
    #[error("{0} holds no checkpoint (nothing to resume)")]
    Missing(PathBuf),
    /// The trainer state does not fit the run's trainer.
    #[error("trainer state: {0}")]
    Trainer(speckle_dfa::DfaError),
}

// By hand rather than `#[from]`, which would also make the trainer's error the `source()` of a
// message that already contains it.
impl From<speckle_dfa::DfaError> for CheckpointError {
    fn from(e: speckle_dfa::DfaError) -> Self {
        CheckpointError::Trainer(e)
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |cause| CheckpointError::Io {
        path: path.to_path_buf(),
        cause,
    }
}

/// Directory of the checkpoint inside a run directory.
pub fn checkpoint_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("checkpoint")
}

fn old_dir(run_dir: &Path) -> PathBuf {
    run_dir.join(".checkpoint.old")
}

/// Saves a checkpoint into `run_dir/checkpoint`, replacing the previous one atomically.
/// The trainer's arrays are borrowed ([`speckle_dfa::Trainer::state_view`]), never copied.
pub fn save(
    run_dir: &Path,
    run: &RunState,
    trainer: &TrainerStateView<'_>,
) -> Result<(), CheckpointError> {
    let tmp = run_dir.join(format!(".checkpoint.tmp-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    crate::atomic::register_temp(&tmp);
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    let json = serde_json::to_vec_pretty(run).map_err(|e| CheckpointError::Corrupt {
        path: tmp.join("run.json"),
        message: e.to_string(),
    })?;
    let run_json = tmp.join("run.json");
    write_atomic(&run_json, &json).map_err(io(&run_json))?;
    save_trainer_state(trainer, &tmp.join("trainer.state"))?;
    let current = checkpoint_dir(run_dir);
    let old = old_dir(run_dir);
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(io(&old))?;
    }
    if current.exists() {
        std::fs::rename(&current, &old).map_err(io(&current))?;
    }
    std::fs::rename(&tmp, &current).map_err(io(&current))?;
    crate::atomic::unregister_temp(&tmp);
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(io(&old))?;
    }
    Ok(())
}

/// Whether `run_dir` holds a checkpoint.
pub fn exists(run_dir: &Path) -> bool {
    checkpoint_dir(run_dir).join("run.json").is_file()
        || old_dir(run_dir).join("run.json").is_file()
}

/// Loads the checkpoint of `run_dir` (the previous one if a save was interrupted mid-swap):
/// its run state, and its trainer state opened for reading.
pub fn load(run_dir: &Path) -> Result<(RunState, StateFile), CheckpointError> {
    let dir = [checkpoint_dir(run_dir), old_dir(run_dir)]
        .into_iter()
        .find(|d| d.join("run.json").is_file())
        .ok_or_else(|| CheckpointError::Missing(run_dir.to_path_buf()))?;
    let run_json = dir.join("run.json");
    let bytes = std::fs::read(&run_json).map_err(io(&run_json))?;
    let run: RunState = serde_json::from_slice(&bytes).map_err(|e| CheckpointError::Corrupt {
        path: run_json.clone(),
        message: e.to_string(),
    })?;
    if run.version != RUN_STATE_VERSION {
        return Err(CheckpointError::Corrupt {
            path: run_json,
            message: format!(
                "checkpoint format version {} (this build reads {RUN_STATE_VERSION})",
                run.version
            ),
        });
    }
    let trainer = StateFile::open(&dir.join("trainer.state"))?;
    Ok((run, trainer))
}
/// Checks that the two halves of a checkpoint agree with each other and with the run (so that
/// an edited `epochs_done` is an error, not skipped or repeated epochs): `epochs_done` is at
/// most `epochs`, `metrics` has one row per epoch done, the trainer has taken
/// `epochs_done × steps_per_epoch` optimizer steps, and both name the same projector.
pub fn check_consistent(
    run_dir: &Path,
    run: &RunState,
    trainer: &StateMeta,
    steps_per_epoch: u64,
    epochs: usize,
) -> Result<(), CheckpointError> {
    let bad = |message: String| CheckpointError::Corrupt {
        path: checkpoint_dir(run_dir).join("run.json"),
        message,
    };
    let done = run.epochs_done;
    if done > epochs {
        return Err(bad(format!(
            "epochs_done = {done} but the run has {epochs} epochs"
        )));
    }
    let numbered = run
        .metrics
        .iter()
        .enumerate()
        .all(|(i, m)| m.epoch == i + 1);
    if run.metrics.len() != done || !numbered {
        return Err(bad(format!(
            "epochs_done = {done} but metrics holds {} rows numbered {:?}; run.json is corrupt or edited",
            run.metrics.len(),
            run.metrics.iter().map(|m| m.epoch).collect::<Vec<_>>()
        )));
    }
    let want = (done as u64).checked_mul(steps_per_epoch);
    if want != Some(trainer.step) {
        return Err(bad(format!(
            "epochs_done = {done} ({} steps of {steps_per_epoch} per epoch) but trainer.state has taken {} steps; run.json and trainer.state disagree",
            want.map_or_else(|| "too many".to_string(), |w| w.to_string()),
            trainer.step
        )));
    }
    if trainer.projector_identity != run.projector_identity {
        return Err(bad(format!(
            "run.json names the projector {:?} but trainer.state {:?}",
            run.projector_identity.as_deref().unwrap_or("none"),
            trainer.projector_identity.as_deref().unwrap_or("none")
        )));
    }
    Ok(())
}

/// Calls `f` with the little-endian bytes of `values`, 64 KiB at a time.
fn for_le_chunks(
    values: &[f32],
    mut f: impl FnMut(&[u8]) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1 << 16);
    for chunk in values.chunks(1 << 14) {
        buf.clear();
        for v in chunk {
            buf.extend_from_slice(&v.to_le_bytes());
        }
        f(&buf)?;
    }
    Ok(())
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileHeader {
    meta: StateMeta,
    arrays: Vec<FileArray>,
    crc32: u32,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileArray {
    name: String,
    len: usize,
}

const CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// Magic bytes that open a trainer state file.
const STATE_MAGIC: &[u8; 8] = b"SPKDFA\x00\x01";

/// Writes a trainer state to `path` (atomically): an 8-byte magic, a little-endian u64 header
/// length, a JSON header (meta, array names and lengths, CRC-32 of the data), then the arrays
/// as raw little-endian f32.
pub fn save_trainer_state(
    state: &TrainerStateView<'_>,
    path: &Path,
) -> Result<(), CheckpointError> {
    let io = io(path);
    // The data are streamed twice (CRC, then the file) in small chunks rather than
    // gathered: a network 2^20 wide has gigabytes of state.
    let mut crc = CRC32.digest();
    for (_, a) in &state.arrays {
        for_le_chunks(a, |bytes| {
            crc.update(bytes);
            Ok(())
        })
        .map_err(|e| CheckpointError::Io {
            path: path.to_path_buf(),
            cause: e,
        })?;
    }
    let header = FileHeader {
        meta: state.meta.clone(),
        arrays: state
            .arrays
            .iter()
            .map(|(name, a)| FileArray {
                name: name.clone(),
                len: a.len(),
            })
            .collect(),
        crc32: crc.finalize(),
    };
    let json = serde_json::to_vec(&header).map_err(|e| CheckpointError::Corrupt {
        path: path.to_path_buf(),
        message: format!("cannot encode trainer state: {e}"),
    })?;
    write_atomic_with(path, |f| {
        f.write_all(STATE_MAGIC)?;
        f.write_all(&(json.len() as u64).to_le_bytes())?;
        f.write_all(&json)?;
        for (_, a) in &state.arrays {
            for_le_chunks(a, |bytes| f.write_all(bytes))?;
        }
        Ok(())
    })
    .map_err(io)
}

/// Reads a trainer state written by [`save_trainer_state`]; a truncated or corrupt file is a
/// one-line error naming it.
pub fn load_trainer_state(path: &Path) -> Result<TrainerState, CheckpointError> {
    StateFile::open(path)?.read()
}

/// A trainer state file whose header is read and whose size is checked against it; the arrays
/// are read from the file in chunks, into memory ([`StateFile::read`]) or straight into a
/// trainer ([`StateFile::read_into`]), the CRC-32 checked on the way.
#[derive(Debug)]
pub struct StateFile {
    path: PathBuf,
    header: FileHeader,
    /// Offset of the first array in the file.
    data_start: u64,
}

impl StateFile {
    /// Opens `path` and reads its header.
    pub fn open(path: &Path) -> Result<StateFile, CheckpointError> {
        use std::io::Read;
        let bad = |message: String| CheckpointError::Corrupt {
            path: path.to_path_buf(),
            message,
        };
        let mut file = std::fs::File::open(path).map_err(io(path))?;
        let len = file.metadata().map_err(io(path))?.len();
        let mut head = [0u8; 16];
        if len < 16 {
            return Err(bad("not a speckle trainer state (bad magic)".into()));
        }
        file.read_exact(&mut head).map_err(io(path))?;
        if &head[..8] != STATE_MAGIC {
            return Err(bad("not a speckle trainer state (bad magic)".into()));
        }
        let hlen = u64::from_le_bytes(head[8..16].try_into().expect("8 bytes"));
        if hlen > len - 16 {
            return Err(bad("truncated trainer state (header)".into()));
        }
        let mut json = vec![0u8; usize::try_from(hlen).expect("at most the file's length")];
        file.read_exact(&mut json).map_err(io(path))?;
        let header: FileHeader = serde_json::from_slice(&json)
            .map_err(|e| bad(format!("corrupt trainer state header ({e})")))?;
        let data = len - 16 - hlen;
        let want = header
            .arrays
            .iter()
            .try_fold(0u64, |acc, a| {
                acc.checked_add(u64::try_from(a.len).ok()?.checked_mul(4)?)
            })
            .ok_or_else(|| bad("corrupt trainer state header (sizes overflow)".into()))?;
        if data != want {
            return Err(bad(format!(
                "trainer state data is {data} bytes, the header announces {want} (truncated or corrupt)"
            )));
        }
        Ok(StateFile {
            path: path.to_path_buf(),
            header,
            data_start: 16 + hlen,
        })
    }

    /// The state's scalars and specs.
    pub fn meta(&self) -> &StateMeta {
        &self.header.meta
    }

    /// The whole state in memory.
    pub fn read(&self) -> Result<TrainerState, CheckpointError> {
        let mut arrays = Vec::with_capacity(self.header.arrays.len());
        self.stream(|a, read| {
            let mut v = vec![0.0f32; a.len];
            read(&mut v)?;
            arrays.push((a.name.clone(), v));
            Ok(())
        })?;
        Ok(TrainerState {
            meta: self.header.meta.clone(),
            arrays,
        })
    }

    /// Reads the arrays straight into `trainer`, which must have been built with the state's
    /// arguments ([`Trainer::load_state_streamed`] checks them): no second copy of the state
    /// in memory. After an error the trainer's arrays are partly overwritten: discard it.
    pub fn read_into(&self, trainer: &mut Trainer) -> Result<(), CheckpointError> {
        let layout: Vec<(String, usize)> = self
            .header
            .arrays
            .iter()
            .map(|a| (a.name.clone(), a.len))
            .collect();
        let mut failure = None;
        let mut arrays = self.header.arrays.iter();
        let mut reader = self.reader()?;
        let loaded = trainer.load_state_streamed(&self.header.meta, &layout, |dst| {
            let a = arrays.next().expect("one file array per slot");
            debug_assert_eq!(a.len, dst.len());
            reader.read_f32(dst).map_err(|e| {
                let message = e.to_string();
                failure = Some(e);
                DfaError::State(message)
            })
        });
        match (loaded, failure) {
            (Err(_), Some(e)) => return Err(e),
            (Err(e), None) => return Err(e.into()),
            (Ok(()), _) => {}
        }
        reader.finish()
    }

    /// Calls `each(array, read)` for every array in file order, where `read` fills a slice of
    /// the array's length from the file; checks the CRC at the end.
    fn stream(
        &self,
        mut each: impl FnMut(
            &FileArray,
            &mut dyn FnMut(&mut [f32]) -> Result<(), CheckpointError>,
        ) -> Result<(), CheckpointError>,
    ) -> Result<(), CheckpointError> {
        let mut reader = self.reader()?;
        for a in &self.header.arrays {
            each(a, &mut |dst| reader.read_f32(dst))?;
        }
        reader.finish()
    }

    fn reader(&self) -> Result<ArrayReader<'_>, CheckpointError> {
        use std::io::Seek;
        let mut file = std::fs::File::open(&self.path).map_err(io(&self.path))?;
        file.seek(std::io::SeekFrom::Start(self.data_start))
            .map_err(io(&self.path))?;
        Ok(ArrayReader {
            file: std::io::BufReader::with_capacity(1 << 16, file),
            crc: CRC32.digest(),
            bytes: Vec::with_capacity(1 << 16),
            state: self,
        })
    }
}

/// Reads little-endian `f32` arrays from a state file, adding their bytes to the CRC.
struct ArrayReader<'a> {
    file: std::io::BufReader<std::fs::File>,
    crc: crc::Digest<'static, u32>,
    bytes: Vec<u8>,
    state: &'a StateFile,
}

impl ArrayReader<'_> {
    fn read_f32(&mut self, dst: &mut [f32]) -> Result<(), CheckpointError> {
        use std::io::Read;
        for chunk in dst.chunks_mut(1 << 14) {
            self.bytes.resize(4 * chunk.len(), 0);
            self.file
                .read_exact(&mut self.bytes)
                .map_err(io(&self.state.path))?;
            self.crc.update(&self.bytes);
            for (v, b) in chunk.iter_mut().zip(self.bytes.chunks_exact(4)) {
                *v = f32::from_le_bytes(b.try_into().expect("4 bytes"));
            }
        }
        Ok(())
    }

    /// Checks the CRC of everything read against the header's.
    fn finish(self) -> Result<(), CheckpointError> {
        if self.crc.finalize() != self.state.header.crc32 {
            return Err(CheckpointError::Corrupt {
                path: self.state.path.clone(),
                message: "trainer state checksum mismatch (corrupt file)".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use speckle_dfa::{AlgorithmKind, AlgorithmSpec, ModelSpec, OptimizerSpec, Trainer};

    /// A state file read straight into a trainer built from its meta gives the saved state; a
    /// corrupt one is the checksum error, a trainer of another shape the trainer's error.
    #[test]
    fn state_files_read_straight_into_a_trainer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.bin");
        let model = ModelSpec {
            hidden: vec![8, 5],
            ..ModelSpec::default()
        };
        let fa = AlgorithmSpec {
            kind: AlgorithmKind::Fa,
            ..AlgorithmSpec::default()
        };
        let opt = OptimizerSpec::default();
        let mut t = Trainer::new(6, 3, &model, &fa, &opt, 4, 10, 1, None).unwrap();
        let x = ndarray::Array2::from_shape_fn((4, 6), |(i, j)| ((i * 6 + j) as f32).sin());
        t.train_batch(x.view(), &[0, 1, 2, 0]).unwrap();
        save_trainer_state(&t.state_view(), &path).unwrap();
        let file = StateFile::open(&path).unwrap();
        assert_eq!(file.meta().step, 1);
        let mut fresh = Trainer::new(6, 3, &model, &fa, &opt, 4, 10, 1, None).unwrap();
        file.read_into(&mut fresh).unwrap();
        assert_eq!(fresh.state(), t.state());

        let other = ModelSpec {
            hidden: vec![8, 6],
            ..ModelSpec::default()
        };
        let mut wrong = Trainer::new(6, 3, &other, &fa, &opt, 4, 10, 1, None).unwrap();
        let e = file.read_into(&mut wrong).unwrap_err().to_string();
        assert!(e.contains("different model"), "{e}");

        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        let e = StateFile::open(&path)
            .unwrap()
            .read_into(&mut fresh)
            .unwrap_err()
            .to_string();
        assert!(e.contains("checksum") && e.contains("s.bin"), "{e}");
    }

    #[test]
    fn corrupt_state_files_are_one_line_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.bin");
        let model = ModelSpec {
            hidden: vec![8],
            ..ModelSpec::default()
        };
        let bp = AlgorithmSpec {
            kind: AlgorithmKind::Bp,
            ..AlgorithmSpec::default()
        };
        let t = Trainer::new(6, 3, &model, &bp, &OptimizerSpec::default(), 4, 10, 1, None).unwrap();
        save_trainer_state(&t.state_view(), &path).unwrap();
        assert_eq!(load_trainer_state(&path).unwrap(), t.state());
        let bytes = std::fs::read(&path).unwrap();
        let check = |data: &[u8], want: &str| {
            std::fs::write(&path, data).unwrap();
            let e = load_trainer_state(&path).unwrap_err().to_string();
            assert!(
                e.contains(want) && e.contains("s.bin") && !e.contains('\n'),
                "{e}"
            );
        };
        check(&bytes[..bytes.len() - 3], "truncated");
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x40;
        check(&flipped, "checksum");
        check(b"hello world, not a state", "bad magic");
        let mut header = bytes.clone();
        header[20] = b'#';
        check(&header, "corrupt");
        check(&bytes[..12], "bad magic");
        let e = load_trainer_state(&dir.path().join("missing"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing"), "{e}");
    }
}
