//! The sweep's errors: what went wrong with the sweep file, a point, the output folder or its
//! files, each a one-line message naming the file, the point or the key.

use std::fmt;
use std::path::{Path, PathBuf};

use super::point::PointError;
use crate::plot::PlotError;

/// What was being done to a file or folder when it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileOp {
    /// Reading a file.
    Read,
    /// Writing a file.
    Write,
    /// Creating a folder.
    Create,
    /// Listing a folder.
    List,
}

impl fmt::Display for FileOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileOp::Read => "read",
            FileOp::Write => "write",
            FileOp::Create => "create",
            FileOp::List => "list",
        })
    }
}

/// A JSON record of a sweep folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Record {
    /// `sweep.json`.
    Manifest,
    /// A run's `summary.json`.
    Summary,
    /// A point's `result.json`.
    Result,
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Record::Manifest => "sweep manifest",
            Record::Summary => "run summary",
            Record::Result => "point result",
        })
    }
}

impl Record {
    /// What to do about a corrupt record of this kind, as the end of a message.
    fn remedy(self) -> &'static str {
        match self {
            Record::Result => "; delete it to rerun the point",
            Record::Manifest | Record::Summary => "",
        }
    }
}

/// Why an output folder's manifest is not this sweep's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ManifestMismatch {
    /// One was run with `--quick` and the other without.
    Quick,
    /// The base run config changed.
    BaseConfig,
    /// The points differ.
    Points,
}

impl fmt::Display for ManifestMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ManifestMismatch::Quick => "one with --quick and one without",
            ManifestMismatch::BaseConfig => "the base run config changed",
            ManifestMismatch::Points => "the points differ",
        })
    }
}

/// A sweep failure, one line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SweepError {
    /// The sweep text is malformed or describes no valid sweep; the message names the line,
    /// the block or the key.
    #[error("{0}")]
    Config(String),
    /// A problem of a sweep file.
    #[error("{}: {source}", path.display())]
    InFile {
        /// The sweep file.
        path: PathBuf,
        /// The problem.
        source: Box<SweepError>,
    },
    /// A point's settings do not apply to the base config, or the runner refuses its resolved
    /// run config.
    #[error("point {index} ({settings}): {source}")]
    Point {
        /// The point's index in the sweep.
        index: usize,
        /// Its settings, `key=value, …`.
        settings: String,
        /// What is wrong.
        source: PointError,
    },
    /// Measuring the projection SNR of a finished point failed.
    #[error("projection SNR for {}: {source}", dir.display())]
    Snr {
        /// The point's run folder.
        dir: PathBuf,
        /// The cause.
        source: PointError,
    },
    /// A file or folder could not be read, written, created or listed.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: FileOp,
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A JSON record of the sweep folder is not what the sweep wrote.
    #[error("{record} {} is corrupt ({source}){}", path.display(), record.remedy())]
    Corrupt {
        /// Which record.
        record: Record,
        /// The file.
        path: PathBuf,
        /// The parser's complaint.
        source: serde_json::Error,
    },
    /// A record could not be encoded as JSON.
    #[error("cannot encode {}: {source}", path.display())]
    Encode {
        /// The file it was meant for.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
    /// The output folder holds another sweep.
    #[error("{} holds a different sweep ({why}): use another --out folder", dir.display())]
    OtherSweep {
        /// The output folder.
        dir: PathBuf,
        /// How the sweeps differ.
        why: ManifestMismatch,
    },
    /// Two folders given to merge hold different sweeps.
    #[error("{} and {} hold different sweeps", first.display(), other.display())]
    DifferentShards {
        /// The first folder.
        first: PathBuf,
        /// The folder whose sweep differs.
        other: PathBuf,
    },
    /// Merge was given no folder.
    #[error("merge needs at least one sweep folder")]
    NothingToMerge,
    /// No job or no thread per run.
    #[error("--jobs must be at least 1")]
    NoJobs,
    /// A worker's thread pool could not be started.
    #[error("cannot start a thread pool: {0}")]
    ThreadPool(#[from] rayon::ThreadPoolBuildError),
    /// A figure of the report could not be drawn.
    #[error(transparent)]
    Plot(#[from] PlotError),
}

impl SweepError {
    /// Turns an I/O error of `op` on `path` into [`SweepError::Io`].
    pub(crate) fn io(op: FileOp, path: &Path) -> impl FnOnce(std::io::Error) -> SweepError + '_ {
        move |source| SweepError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}
