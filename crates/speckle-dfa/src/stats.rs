//! Summary statistics shared by the trainer's alignment measure and the layers above it (run
//! data, sweep reports): one mean and standard deviation, summed in the values' order so that
//! every caller gets the same bits for the same values.
//!
//! ```
//! use speckle_dfa::stats::{mean_std, Spread};
//!
//! let v = [1.0, 2.0, 3.0, 4.0];
//! let (mean, population) = mean_std(v.iter().copied(), Spread::Population).unwrap();
//! let (_, sample) = mean_std(v.iter().copied(), Spread::Sample).unwrap();
//! assert_eq!(mean, 2.5);
//! assert_eq!(population, 1.25f64.sqrt());
//! assert_eq!(sample, (5.0f64 / 3.0).sqrt());
//! // One value has no spread; no value has no mean.
//! assert_eq!(mean_std([7.0], Spread::Sample), Some((7.0, 0.0)));
//! assert_eq!(mean_std([0.0f64; 0], Spread::Population), None);
//! ```

/// What the standard deviation divides the sum of squared deviations by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spread {
    /// `n`: the spread of the values themselves.
    Population,
    /// `n − 1` (and 0 for a single value): the estimate from a sample of runs.
    Sample,
}

/// Mean and standard deviation of `values` (two passes, each summed in order), or `None` when
/// there are no values.
pub fn mean_std<I>(values: I, spread: Spread) -> Option<(f64, f64)>
where
    I: IntoIterator<Item = f64>,
    I::IntoIter: Clone + ExactSizeIterator,
{
    let values = values.into_iter();
    let count = values.len();
    if count == 0 {
        return None;
    }
    let n = count as f64;
    let mean = values.clone().sum::<f64>() / n;
    let squares = values.map(|x| (x - mean) * (x - mean)).sum::<f64>();
    let std = match spread {
        Spread::Population => (squares / n).sqrt(),
        Spread::Sample if count > 1 => (squares / (n - 1.0)).sqrt(),
        Spread::Sample => 0.0,
    };
    Some((mean, std))
}
