//! What the readers produce: a data set's kind ([`DatasetKind`]), its images and labels
//! ([`Dataset`]) and its two splits ([`Splits`]).

use ndarray::Array2;
use serde::{Deserialize, Serialize};
use speckle_dfa::stats::{mean_std, Spread};

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
