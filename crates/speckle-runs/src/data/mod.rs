//! Data sets: MNIST and Fashion-MNIST (IDX files, gzipped or raw) and CIFAR-10 (binary batches),
//! loaded into `f32` matrices, plus the downloader behind `speckle data fetch`.
//!
//! Every reader checks what it reads (magic number, dimensions, counts of images against labels,
//! file length, label range) and reports a problem as a [`DataError`] naming the file.
//!
//! ```
//! use speckle_runs::data::{load, DatasetKind};
//! use std::path::Path;
//!
//! let bundled = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/mnist"));
//! let splits = load(DatasetKind::Mnist, bundled)?;
//! assert_eq!((splits.train.len(), splits.test.len()), (60_000, 10_000));
//! assert_eq!(splits.train.input_dim(), DatasetKind::Mnist.input_dim());
//! // A missing directory is an error that says how to get the data.
//! let e = load(DatasetKind::Cifar10, Path::new("/nonexistent")).unwrap_err();
//! assert!(e.to_string().contains("speckle data fetch"), "{e}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod cifar;
mod dataset;
mod error;
pub mod fetch;
mod idx;

use std::path::{Path, PathBuf};

pub use cifar::read_cifar_batch;
pub use dataset::{Dataset, DatasetKind, Splits};
pub use error::DataError;
pub use idx::{read_idx_images, read_idx_labels};

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

/// Rows and columns of an MNIST or Fashion-MNIST image.
const IDX_IMAGE_SHAPE: (usize, usize) = (28, 28);

fn load_idx_pair(kind: DatasetKind, dir: &Path, prefix: &str) -> Result<Dataset, DataError> {
    let images_path = find_file(kind, dir, &format!("{prefix}-images-idx3-ubyte"))?;
    let labels_path = find_file(kind, dir, &format!("{prefix}-labels-idx1-ubyte"))?;
    let (images, shape) = idx::read_idx_images_shaped(&images_path)?;
    // Checked here, before any training: a network is built for the data set's shape.
    if shape != IDX_IMAGE_SHAPE {
        return Err(DataError::format(
            &images_path,
            format!(
                "holds {} × {} images, but {} images are {} × {}",
                shape.0,
                shape.1,
                kind.name(),
                IDX_IMAGE_SHAPE.0,
                IDX_IMAGE_SHAPE.1
            ),
        ));
    }
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
