//! The data layer's error: a problem with a data file or directory, naming it.

use std::path::{Path, PathBuf};

/// A problem with a data file or directory. The message names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// A file could not be read.
    #[error("cannot read {path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause (part of the message; not returned by `source()`, so each clause prints once).
        cause: std::io::Error,
    },
    /// A file is not in the expected format (magic number, dimensions, length, labels).
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A data set directory lacks the files of the data set.
    #[error("{message}")]
    Missing {
        /// What is missing and how to get it.
        message: String,
    },
    /// A download failed or did not match its checksum.
    #[error("{0}")]
    Fetch(String),
}

impl DataError {
    pub(crate) fn format(path: &Path, message: impl Into<String>) -> Self {
        DataError::Format {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }
    pub(crate) fn io(path: &Path, cause: std::io::Error) -> Self {
        DataError::Io {
            path: path.to_path_buf(),
            cause,
        }
    }
}
