//! Data sets: MNIST and Fashion-MNIST (IDX files, gzipped or raw) and CIFAR-10 (binary batches),
//! loaded into `f32` matrices, plus the downloader behind `speckle data fetch`.
//!
//! Every reader checks what it reads (magic number, dimensions, counts of images against labels,
//! file length, label range) and reports a problem as a [`DataError`] naming the file.

mod cifar;
pub mod fetch;
mod idx;

use ndarray::Array2;
use serde::{Deserialize, Serialize};
use speckle_dfa::stats::{mean_std, Spread};
use std::path::{Path, PathBuf};

pub use cifar::read_cifar_batch;
pub use idx::{read_idx_images, read_idx_labels};

/// A problem with a data file or directory. The message names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
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
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Which data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum DatasetKind {
    /// Handwritten digits, 28×28 grey, 60,000 + 10,000.
    Mnist,
    /// Zalando's clothes, same format and sizes as MNIST.
    FashionMnist,
    /// 32×32 colour images of 10 classes, 50,000 + 10,000.
    Cifar10,
}

impl DatasetKind {
    /// The name used in configs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            DatasetKind::Mnist => "mnist",
            DatasetKind::FashionMnist => "fashion-mnist",
            DatasetKind::Cifar10 => "cifar10",
        }
    }

    /// Parses a name as written in configs (`mnist`, `fashion-mnist`, `cifar10`).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "mnist" => Some(DatasetKind::Mnist),
            "fashion-mnist" => Some(DatasetKind::FashionMnist),
            "cifar10" => Some(DatasetKind::Cifar10),
            _ => None,
        }
    }

    /// Features per image.
    pub fn input_dim(self) -> usize {
        match self {
            DatasetKind::Mnist | DatasetKind::FashionMnist => 28 * 28,
            DatasetKind::Cifar10 => 3 * 32 * 32,
        }
    }

    /// Number of classes (10 for all three).
    pub fn classes(self) -> usize {
        10
    }
}

/// Images and labels of one split: `images` is `n × input_dim`, values in `[0, 1]` (or
/// standardized), `labels[i] < classes`.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// One image per row.
    pub images: Array2<f32>,
    /// One label per image.
    pub labels: Vec<u8>,
    /// Number of classes.
    pub classes: usize,
}

impl Dataset {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Features per image.
    pub fn input_dim(&self) -> usize {
        self.images.ncols()
    }

    /// Keeps the first `n` images (all if `n` is larger).
    pub fn truncate(&mut self, n: usize) {
        if n < self.len() {
            self.images = self.images.slice(ndarray::s![..n, ..]).to_owned();
            self.labels.truncate(n);
        }
    }

    /// Mean and standard deviation over all pixels of all images.
    pub fn pixel_stats(&self) -> (f32, f32) {
        let pixels = self.images.iter().map(|&v| f64::from(v));
        let (mean, std) = mean_std(pixels, Spread::Population).unwrap_or((0.0, 0.0));
        (mean as f32, std.max(1e-12) as f32)
    }

    /// Applies `(x − mean) / std` to every pixel.
    pub fn standardize(&mut self, mean: f32, std: f32) {
        self.images.mapv_inplace(|v| (v - mean) / std);
    }
}

/// The training and test splits of a data set.
#[derive(Debug, Clone)]
pub struct Splits {
    /// Training split.
    pub train: Dataset,
    /// Test split.
    pub test: Dataset,
}

/// Loads both splits of a data set from `dir`, pixels scaled to `[0, 1]`.
///
/// MNIST and Fashion-MNIST: `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
/// `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`, each raw or with `.gz`.
/// CIFAR-10: `data_batch_1.bin` … `data_batch_5.bin` and `test_batch.bin`, in `dir` or in
/// `dir/cifar-10-batches-bin`.
pub fn load(kind: DatasetKind, dir: &Path) -> Result<Splits, DataError> {
    if !dir.is_dir() {
        return Err(DataError::Missing {
            message: format!(
                "{} data directory {} does not exist (run `speckle data fetch {} --dir {}`)",
                kind.name(),
                dir.display(),
                kind.name(),
                dir.display()
            ),
        });
    }
    match kind {
        DatasetKind::Mnist | DatasetKind::FashionMnist => {
            let train = load_idx_pair(kind, dir, "train")?;
            let test = load_idx_pair(kind, dir, "t10k")?;
            Ok(Splits { train, test })
        }
        DatasetKind::Cifar10 => cifar::load(dir),
    }
}

fn find_file(kind: DatasetKind, dir: &Path, stem: &str) -> Result<PathBuf, DataError> {
    for name in [format!("{stem}.gz"), stem.to_string()] {
        let p = dir.join(&name);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(DataError::Missing {
        message: format!(
            "{} file {} (or .gz) not found in {} (run `speckle data fetch {} --dir {}`)",
            kind.name(),
            stem,
            dir.display(),
            kind.name(),
            dir.display()
        ),
    })
}

fn load_idx_pair(kind: DatasetKind, dir: &Path, prefix: &str) -> Result<Dataset, DataError> {
    let images_path = find_file(kind, dir, &format!("{prefix}-images-idx3-ubyte"))?;
    let labels_path = find_file(kind, dir, &format!("{prefix}-labels-idx1-ubyte"))?;
    let images = read_idx_images(&images_path)?;
    let labels = read_idx_labels(&labels_path, kind.classes())?;
    if images.nrows() != labels.len() {
        return Err(DataError::format(
            &labels_path,
            format!(
                "holds {} labels but {} holds {} images",
                labels.len(),
                images_path.display(),
                images.nrows()
            ),
        ));
    }
    Ok(Dataset {
        images,
        labels,
        classes: kind.classes(),
    })
}

/// Reads a whole file, gunzipping it when it starts with the gzip magic bytes.
pub(crate) fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, DataError> {
    use std::io::Read;
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(bytes.len() * 4);
        flate2::read::MultiGzDecoder::new(&bytes[..])
            .read_to_end(&mut out)
            .map_err(|e| {
                DataError::format(path, format!("corrupt or truncated gzip data ({e})"))
            })?;
        Ok(out)
    } else {
        Ok(bytes)
    }
}
