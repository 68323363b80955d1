//! The ideal digital projector: an explicit random matrix (Gaussian or uniform entries) and a
//! GEMM.

use std::fmt;

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use rand::distr::Uniform;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use rayon::prelude::*;
use speckle_hal::{
    check_projection_buffers, DeviceCounters, Error, ErrorKind, ProjectorInfo, RandomProjector,
};

/// Largest matrix (entries) a [`DigitalProjector`] accepts: 2^30 entries, 4 GiB of `f32`.
pub const MAX_GAUSSIAN_ENTRIES: usize = 1 << 30;

/// Products of at most this many multiply-adds run on the calling thread.
const SEQUENTIAL_WORK: usize = 1 << 24;

/// The distribution of a [`DigitalProjector`]'s entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum EntryDistribution {
    /// N(0, 1): what GPU implementations of DFA and the seed code
    /// (lightonai/principled-dfa-training, `torch.randn`) draw. Entry variance 1.
    #[default]
    Gaussian,
    /// U[−1, 1): TinyDFA's feedback matrix (lightonai/dfa-scales-to-modern-deep-learning,
    /// `TinyDFA/tinydfa/dfa.py`: `torch.rand(C, d_max) * 2 - 1`). Entry variance 1/3.
    Uniform,
}

impl EntryDistribution {
    /// Variance of one entry: 1 (Gaussian) or 1/3 (uniform on [−1, 1)).
    pub fn variance(self) -> f64 {
        match self {
            EntryDistribution::Gaussian => 1.0,
            EntryDistribution::Uniform => 1.0 / 3.0,
        }
    }
}

impl fmt::Display for EntryDistribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EntryDistribution::Gaussian => "N(0,1)",
            EntryDistribution::Uniform => "U[-1,1)",
        })
    }
}

/// The digital projector with its default N(0, 1) entries, under the name the command line,
/// benches and examples use: `GaussianProjector::new` draws Gaussian entries.
pub type GaussianProjector = DigitalProjector;

/// The ideal digital random projector `y = x · P`, what GPU implementations of DFA use.
///
/// P is `input_dim × output_dim` with iid entries of an [`EntryDistribution`]: N(0, 1) from
/// [`DigitalProjector::new`], U[−1, 1) from [`DigitalProjector::with_entries`];
/// [`ProjectorInfo::entry_variance`] is the distribution's variance. Entry `(i, j)` is the
/// `j`-th `f32` drawn (with [`StandardNormal`], or `rand`'s `Uniform` on [−1, 1)) from
/// `ChaCha8Rng::seed_from_u64(seed)` switched to stream `i` (`set_stream(i)`): it depends on
/// `(seed, i, j)` and the distribution only, never on the dimensions, so a smaller projector
/// with the same seed is the top-left block of a bigger one, and rows can be drawn in parallel
/// with a result independent of the thread count.
///
/// [`project`](RandomProjector::project) is one faer GEMM straight into the caller's buffer; this
/// type allocates nothing per call.
#[derive(Debug, Clone)]
pub struct DigitalProjector {
    seed: u64,
    input_dim: usize,
    output_dim: usize,
    entries: EntryDistribution,
    /// Row-major `input_dim × output_dim`.
    matrix: Vec<f32>,
    /// What [`RandomProjector::info`] reports, computed once.
    info: ProjectorInfo,
    threads: usize,
    projected: u64,
}

impl DigitalProjector {
    /// Draws the `input_dim × output_dim` N(0, 1) matrix for `seed`. Both dimensions must be at
    /// least 1 and the matrix at most [`MAX_GAUSSIAN_ENTRIES`] entries.
    pub fn new(input_dim: usize, output_dim: usize, seed: u64) -> Result<Self, Error> {
        Self::with_entries(input_dim, output_dim, seed, EntryDistribution::Gaussian)
    }

    /// Draws the `input_dim × output_dim` matrix for `seed` with `entries`; the dimensions are
    /// checked as by [`DigitalProjector::new`].
    pub fn with_entries(
        input_dim: usize,
        output_dim: usize,
        seed: u64,
        entries: EntryDistribution,
    ) -> Result<Self, Error> {
        let count = Self::check_dimensions(input_dim, output_dim)?;
        let mut matrix = vec![0.0f32; count];
        matrix
            .par_chunks_mut(output_dim)
            .enumerate()
            .for_each(|(i, row)| fill_row(seed, i as u64, entries, row));
        // The identity's text is stored in checkpoints: keep the Gaussian one as it is.
        let kind = match entries {
            EntryDistribution::Gaussian => "gaussian",
            EntryDistribution::Uniform => "uniform",
        };
        let info = ProjectorInfo::new(
            format!(
                "{kind}(seed={seed}, in={input_dim}, out={output_dim}, entries={entries}, rng=chacha8-stream-per-row)"
            ),
            input_dim,
            output_dim,
            entries.variance(),
        );
        Ok(Self {
            seed,
            input_dim,
            output_dim,
            entries,
            matrix,
            info,
            threads: 0,
            projected: 0,
        })
    }

    /// Checks dimensions without drawing anything: both at least 1, the matrix at most
    /// [`MAX_GAUSSIAN_ENTRIES`] entries and within the memory limit
    /// ([`speckle_hal::memory`]). Returns the number of entries.
    pub fn check_dimensions(input_dim: usize, output_dim: usize) -> Result<usize, Error> {
        if input_dim == 0 || output_dim == 0 {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "digital projector dimensions must be at least 1, got {input_dim} → {output_dim}"
                ),
            ));
        }
        let entries = input_dim
            .checked_mul(output_dim)
            .filter(|&n| n <= MAX_GAUSSIAN_ENTRIES)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidInput,
                    format!(
                        "digital projector {input_dim} → {output_dim} exceeds {MAX_GAUSSIAN_ENTRIES} entries"
                    ),
                )
            })?;
        speckle_hal::memory::Request::new(
            format!("digital projector {input_dim} → {output_dim}"),
            "its matrix",
        )
        .times(input_dim)
        .times(output_dim)
        .of(4)
        .check()?;
        Ok(entries)
    }

    /// Sets the number of GEMM threads (0, the default, uses the whole rayon pool). The result
    /// does not depend on it.
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }

    /// The seed of the matrix.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The distribution of the matrix's entries.
    pub fn entries(&self) -> EntryDistribution {
        self.entries
    }

    /// The matrix P, row-major `input_dim × output_dim`.
    pub fn matrix(&self) -> &[f32] {
        &self.matrix
    }

    /// Vectors projected so far.
    pub fn vectors_projected(&self) -> u64 {
        self.projected
    }

    fn par(&self, batch: usize) -> Par {
        // A small product costs less than waking the thread pool: DFA's 256 × 10 × 800 took
        // 45 µs on one thread and 91 µs on two (2-core pinned Xeon, criterion). The result does
        // not depend on this.
        let work = batch
            .saturating_mul(self.input_dim)
            .saturating_mul(self.output_dim);
        if self.threads == 1 || work <= SEQUENTIAL_WORK {
            Par::Seq
        } else {
            Par::rayon(self.threads)
        }
    }
}

/// Row `row_index` of the matrix for `seed`: `row.len()` draws of `entries` from stream
/// `row_index`.
fn fill_row(seed: u64, row_index: u64, entries: EntryDistribution, row: &mut [f32]) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(row_index);
    match entries {
        EntryDistribution::Gaussian => {
            for v in row {
                *v = rng.sample(StandardNormal);
            }
        }
        EntryDistribution::Uniform => {
            let unit = Uniform::new(-1.0f32, 1.0).expect("finite, ordered bounds");
            for v in row {
                *v = rng.sample(unit);
            }
        }
    }
}

impl RandomProjector for DigitalProjector {
    fn info(&self) -> ProjectorInfo {
        self.info.clone()
    }

    fn project(&mut self, input: &[f32], batch: usize, output: &mut [f32]) -> Result<(), Error> {
        check_projection_buffers(&self.info, input, batch, output)?;
        if batch == 0 {
            return Ok(());
        }
        let x = MatRef::from_row_major_slice(input, batch, self.input_dim);
        let p = MatRef::from_row_major_slice(&self.matrix, self.input_dim, self.output_dim);
        let y = MatMut::from_row_major_slice_mut(output, batch, self.output_dim);
        matmul(y, Accum::Replace, x, p, 1.0f32, self.par(batch));
        self.projected += batch as u64;
        crate::output::check_finite(output, self.output_dim)
    }

    fn counters(&self) -> DeviceCounters {
        DeviceCounters::default()
    }

    /// The digital projector is deterministic: there is no device clock to position.
    fn seek_frame(&mut self, _index: u64) -> Result<(), Error> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_values() {
        let p = GaussianProjector::new(3, 4, 42).unwrap();
        let m = p.matrix();
        // Pinned: changing the RNG, the distribution or the stream layout breaks this test.
        let golden: [f32; 4] = GOLDEN_ROW0;
        assert_eq!(&m[..4], &golden, "row 0 = {:?}", &m[..4]);
        assert_eq!(m[2 * 4 + 3], GOLDEN_2_3, "entry (2,3) = {:?}", m[2 * 4 + 3]);
    }

    const GOLDEN_ROW0: [f32; 4] = [0.47798124, 1.3340706, -0.21086669, 0.4763469];
    const GOLDEN_2_3: f32 = -0.07581151;

    #[test]
    fn uniform_golden_values() {
        let p = DigitalProjector::with_entries(3, 4, 42, EntryDistribution::Uniform).unwrap();
        let m = p.matrix();
        // Pinned: changing the RNG, the distribution or the stream layout breaks this test.
        assert_eq!(&m[..4], &UNIFORM_ROW0, "row 0 = {:?}", &m[..4]);
        assert_eq!(
            m[2 * 4 + 3],
            UNIFORM_2_3,
            "entry (2,3) = {:?}",
            m[2 * 4 + 3]
        );
    }

    const UNIFORM_ROW0: [f32; 4] = [-0.55183864, 0.36379218, -0.7072277, 0.9005506];
    const UNIFORM_2_3: f32 = -0.4112816;

    #[test]
    fn smaller_projector_is_a_block_of_a_bigger_one() {
        let small = GaussianProjector::new(5, 7, 3).unwrap();
        let big = GaussianProjector::new(9, 20, 3).unwrap();
        for i in 0..5 {
            assert_eq!(
                small.matrix()[i * 7..i * 7 + 7],
                big.matrix()[i * 20..i * 20 + 7]
            );
        }
    }

    #[test]
    fn gemm_matches_naive_product_and_thread_count() {
        // Above the sequential threshold, so the parallel path really runs.
        let (n, m, b) = (260, 601, 131);
        assert!(n * m * b > SEQUENTIAL_WORK);
        let mut seq = GaussianProjector::new(n, m, 11).unwrap().with_threads(1);
        let mut par = seq.clone().with_threads(2);
        let x: Vec<f32> = (0..b * n)
            .map(|k| ((k * 7919) % 23) as f32 - 11.0)
            .collect();
        let mut y1 = vec![0.0; b * m];
        let mut y2 = vec![1.0; b * m];
        seq.project(&x, b, &mut y1).unwrap();
        par.project(&x, b, &mut y2).unwrap();
        assert_eq!(y1, y2, "result depends on the thread count");
        let p = seq.matrix();
        for r in 0..b {
            for j in 0..m {
                let want: f64 = (0..n)
                    .map(|i| x[r * n + i] as f64 * p[i * m + j] as f64)
                    .sum();
                let got = y1[r * m + j] as f64;
                assert!(
                    (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                    "{got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn bad_buffers_and_dims_are_errors() {
        assert_eq!(
            GaussianProjector::new(0, 3, 1).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        assert!(GaussianProjector::new(usize::MAX, 2, 1).is_err());
        let mut p = GaussianProjector::new(3, 2, 1).unwrap();
        let mut y = [0.0; 4];
        assert_eq!(
            p.project(&[0.0; 5], 2, &mut y).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            p.project(&[0.0; 6], 2, &mut y[..3]).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        let err = p
            .project(&[0.0, 1.0, f32::NAN, 0.0, 0.0, 0.0], 2, &mut y)
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.to_string().contains("not finite"));
        p.project(&[], 0, &mut []).unwrap();
    }
}
