//! CIFAR-10 binary batches: records of one label byte followed by 3072 pixel bytes
//! (1024 red, 1024 green, 1024 blue, row-major 32×32), 10,000 records per file.

use super::dataset::{Dataset, Splits};
use super::error::DataError;
use ndarray::Array2;
use std::path::{Path, PathBuf};

const RECORD: usize = 1 + 3072;
const CLASSES: usize = 10;

/// Reads one CIFAR-10 binary batch file: images scaled to `[0, 1]` and labels.
pub fn read_cifar_batch(path: &Path) -> Result<(Array2<f32>, Vec<u8>), DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    if bytes.is_empty() || bytes.len() % RECORD != 0 {
        return Err(DataError::format(
            path,
            format!(
                "truncated or not a CIFAR-10 binary batch: {} bytes is not a multiple of the {RECORD}-byte record",
                bytes.len()
            ),
        ));
    }
    let n = bytes.len() / RECORD;
    let mut labels = Vec::with_capacity(n);
    let mut data = Vec::with_capacity(n * (RECORD - 1));
    for (i, rec) in bytes.chunks_exact(RECORD).enumerate() {
        if usize::from(rec[0]) >= CLASSES {
            return Err(DataError::format(
                path,
                format!(
                    "label {} of record {i} is out of range (expected 0..{CLASSES})",
                    rec[0]
                ),
            ));
        }
        labels.push(rec[0]);
        data.extend(rec[1..].iter().map(|&b| f32::from(b) / 255.0));
    }
    let images = Array2::from_shape_vec((n, RECORD - 1), data)
        .map_err(|e| DataError::format(path, format!("bad shape: {e}")))?;
    Ok((images, labels))
}

fn batch_dir(dir: &Path) -> PathBuf {
    let nested = dir.join("cifar-10-batches-bin");
    if nested.join("test_batch.bin").is_file() {
        nested
    } else {
        dir.to_path_buf()
    }
}

fn read_many(paths: &[PathBuf]) -> Result<Dataset, DataError> {
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for p in paths {
        if !p.is_file() {
            return Err(DataError::Missing {
                message: format!(
                    "cifar10 file {} not found (run `speckle data fetch cifar10 --dir {}`)",
                    p.display(),
                    p.parent().unwrap_or(Path::new(".")).display()
                ),
            });
        }
        let (x, y) = read_cifar_batch(p)?;
        images.extend(x.into_raw_vec_and_offset().0);
        labels.extend(y);
    }
    let n = labels.len();
    let images =
        Array2::from_shape_vec((n, RECORD - 1), images).map_err(|e| DataError::Missing {
            message: format!("cifar10: bad shape ({e})"),
        })?;
    Ok(Dataset {
        images,
        labels,
        classes: CLASSES,
    })
}

pub(super) fn load(dir: &Path) -> Result<Splits, DataError> {
    let d = batch_dir(dir);
    let train: Vec<PathBuf> = (1..=5)
        .map(|i| d.join(format!("data_batch_{i}.bin")))
        .collect();
    Ok(Splits {
        train: read_many(&train)?,
        test: read_many(&[d.join("test_batch.bin")])?,
    })
}
