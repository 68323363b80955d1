//! The dense medium: an explicit iid circular complex Gaussian transmission matrix.
//!
//! Entries are generated in `BLOCK × BLOCK` blocks; block (output block `bj`, feature block
//! `bi`) comes from its own ChaCha8 stream, so entry (j, i) depends only on the seed, j and i.
//! Raw entries are the integers `round(QUANT · z)` (real and imaginary parts independent,
//! z ~ N(0, 1)), stored in `f32` column-major (output index fastest), so that a GEMM against
//! 0/1 inputs sums integers exactly.
//!
//! Memory policy: when `8 · outputs · features` bytes fit the budget, the whole matrix is
//! generated once and cached. Otherwise every batch regenerates it, one chunk of output rows at
//! a time, each chunk as large as the budget allows (whole blocks): same values, more time.
//! Drift needs the cached matrix.

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;
use speckle_hal::Error;

use super::{FieldSink, Medium};
use crate::config::ConfigError;
use crate::rng::{self, Purpose, BLOCK, QUANT};

/// Most `f32` values of GEMM output scratch per part (re or im) in cached mode: 16 MiB.
const SCRATCH_FLOATS: usize = 4 << 20;

/// Construction parameters.
pub(crate) struct DenseParams {
    pub input_dim: usize,
    pub output_dim: usize,
    pub seed: u64,
    pub budget_mib: u64,
    pub drift_rate: f64,
}

enum Storage {
    /// The whole matrix, `output_dim × input_dim`, column-major.
    Cached { re: Vec<f32>, im: Vec<f32> },
    /// Room for `chunk_rows × input_dim`, regenerated for every chunk of every batch.
    Streaming {
        chunk_rows: usize,
        re: Vec<f32>,
        im: Vec<f32>,
    },
}

pub(crate) struct DenseMedium {
    n: usize,
    m: usize,
    seed: u64,
    key: [u8; 32],
    /// (sqrt(1 − ρ), sqrt(ρ)) when drift is on.
    drift: Option<(f64, f64)>,
    epoch: u64,
    storage: Storage,
    out_re: Vec<f32>,
    out_im: Vec<f32>,
}

/// Visits the entries of rows `j0 .. j0 + rows` (j0 a multiple of BLOCK) of the matrix drawn
/// from `key`, with `n` columns, stored column-major with column stride `ld` in `re` / `im`
/// (row `j0` at offset 0): `f(re_slot, im_slot, drawn_re, drawn_im)`. Parallel over column
/// blocks; every entry is visited once, so the result does not depend on the thread count.
#[allow(clippy::too_many_arguments)]
fn for_each_entry(
    key: &[u8; 32],
    j0: usize,
    rows: usize,
    n: usize,
    ld: usize,
    re: &mut [f32],
    im: &mut [f32],
    f: impl Fn(&mut f32, &mut f32, f32, f32) + Sync,
) {
    debug_assert_eq!(j0 % BLOCK, 0);
    debug_assert!(re.len() >= ld * n && im.len() >= ld * n && ld >= rows);
    let re = &mut re[..ld * n];
    let im = &mut im[..ld * n];
    re.par_chunks_mut(ld * BLOCK)
        .zip(im.par_chunks_mut(ld * BLOCK))
        .enumerate()
        .for_each(|(bi, (re_cols, im_cols))| {
            let cols = (n - bi * BLOCK).min(BLOCK);
            let first_block = j0 / BLOCK;
            let last_block = (j0 + rows).div_ceil(BLOCK);
            for bj in first_block..last_block {
                let row_off = bj * BLOCK - j0;
                let block_rows = (rows - row_off).min(BLOCK);
                rng::fill_block(key, bj, bi, block_rows, cols, |jl, il, g_re, g_im| {
                    let idx = il * ld + row_off + jl;
                    f(&mut re_cols[idx], &mut im_cols[idx], g_re, g_im);
                });
            }
        });
}

impl DenseMedium {
    pub(crate) fn new(p: DenseParams) -> Result<Self, ConfigError> {
        let (n, m) = (p.input_dim, p.output_dim);
        let budget = p.budget_mib.saturating_mul(1 << 20);
        let whole = (8u64)
            .checked_mul(n as u64)
            .and_then(|b| b.checked_mul(m as u64))
            .unwrap_or(u64::MAX);
        let key = rng::derive_key(p.seed, Purpose::Medium, 0);
        let storage = if whole <= budget {
            let len = m * n;
            let mut re = vec![0f32; len];
            let mut im = vec![0f32; len];
            for_each_entry(&key, 0, m, n, m, &mut re, &mut im, |r, i, g_re, g_im| {
                *r = g_re;
                *i = g_im;
            });
            Storage::Cached { re, im }
        } else {
            if p.drift_rate > 0.0 {
                return Err(ConfigError::Invalid {
                    key: "drift.rate",
                    value: p.drift_rate.to_string(),
                    reason: format!(
                        "drift needs the whole matrix cached, but {m} outputs × {n} features need {} MiB, more than medium.matrix_budget_mib = {}",
                        whole.div_ceil(1 << 20),
                        p.budget_mib
                    ),
                });
            }
            let rows_fit = budget / (8 * n as u64);
            let chunk_rows = (rows_fit as usize / BLOCK * BLOCK).min(m.div_ceil(BLOCK) * BLOCK);
            if chunk_rows < BLOCK {
                return Err(ConfigError::Invalid {
                    key: "medium.matrix_budget_mib",
                    value: p.budget_mib.to_string(),
                    reason: format!(
                        "too small for {n} features: one block row of {BLOCK} outputs needs {} MiB",
                        (8 * BLOCK as u64 * n as u64).div_ceil(1 << 20)
                    ),
                });
            }
            Storage::Streaming {
                chunk_rows,
                re: Vec::new(),
                im: Vec::new(),
            }
        };
        let drift =
            (p.drift_rate > 0.0).then(|| ((1.0 - p.drift_rate).sqrt(), p.drift_rate.sqrt()));
        Ok(Self {
            n,
            m,
            seed: p.seed,
            key,
            drift,
            epoch: 0,
            storage,
            out_re: Vec::new(),
            out_im: Vec::new(),
        })
    }

    /// Whether the whole matrix is cached.
    #[cfg(test)]
    pub(crate) fn is_cached(&self) -> bool {
        matches!(self.storage, Storage::Cached { .. })
    }

    /// `dst = lhs · x` for one chunk of rows, into the scratch buffers, then hands them to `sink`.
    #[allow(clippy::too_many_arguments)]
    fn gemm_chunk(
        lhs_re: MatRef<'_, f32>,
        lhs_im: MatRef<'_, f32>,
        rhs: MatRef<'_, f32>,
        j0: usize,
        out_re: &mut Vec<f32>,
        out_im: &mut Vec<f32>,
        sink: &mut FieldSink<'_>,
    ) {
        let (rows, batch) = (lhs_re.nrows(), rhs.ncols());
        out_re.resize(rows * batch, 0.0);
        out_im.resize(rows * batch, 0.0);
        let par = Par::rayon(0);
        matmul(
            MatMut::from_column_major_slice_mut(&mut out_re[..rows * batch], rows, batch),
            Accum::Replace,
            lhs_re,
            rhs,
            1.0f32,
            par,
        );
        matmul(
            MatMut::from_column_major_slice_mut(&mut out_im[..rows * batch], rows, batch),
            Accum::Replace,
            lhs_im,
            rhs,
            1.0f32,
            par,
        );
        sink(j0, rows, &out_re[..rows * batch], &out_im[..rows * batch]);
    }
}

impl Medium for DenseMedium {
    fn transmit(&mut self, x: &[f32], batch: usize, sink: &mut FieldSink<'_>) -> Result<(), Error> {
        let (n, m) = (self.n, self.m);
        debug_assert_eq!(x.len(), batch * n);
        if batch == 0 {
            return Ok(());
        }
        let rhs = MatRef::from_column_major_slice(x, n, batch);
        match &mut self.storage {
            Storage::Cached { re, im } => {
                let rows_per = (SCRATCH_FLOATS / batch).clamp(1, m);
                let mut j0 = 0;
                while j0 < m {
                    let rows = rows_per.min(m - j0);
                    let len = (n - 1) * m + rows;
                    let lhs_re =
                        MatRef::from_column_major_slice_with_stride(&re[j0..j0 + len], rows, n, m);
                    let lhs_im =
                        MatRef::from_column_major_slice_with_stride(&im[j0..j0 + len], rows, n, m);
                    Self::gemm_chunk(
                        lhs_re,
                        lhs_im,
                        rhs,
                        j0,
                        &mut self.out_re,
                        &mut self.out_im,
                        sink,
                    );
                    j0 += rows;
                }
            }
            Storage::Streaming { chunk_rows, re, im } => {
                let chunk_rows = *chunk_rows;
                let mut j0 = 0;
                while j0 < m {
                    let rows = chunk_rows.min(m - j0);
                    re.resize(rows * n, 0.0);
                    im.resize(rows * n, 0.0);
                    for_each_entry(&self.key, j0, rows, n, rows, re, im, |r, i, g_re, g_im| {
                        *r = g_re;
                        *i = g_im;
                    });
                    let lhs_re = MatRef::from_column_major_slice(&re[..rows * n], rows, n);
                    let lhs_im = MatRef::from_column_major_slice(&im[..rows * n], rows, n);
                    Self::gemm_chunk(
                        lhs_re,
                        lhs_im,
                        rhs,
                        j0,
                        &mut self.out_re,
                        &mut self.out_im,
                        sink,
                    );
                    j0 += rows;
                }
            }
        }
        Ok(())
    }

    fn set_epoch(&mut self, epoch: u64) -> Result<(), Error> {
        let Some((a, b)) = self.drift else {
            return Ok(());
        };
        if epoch == self.epoch {
            return Ok(());
        }
        let Storage::Cached { re, im } = &mut self.storage else {
            // Construction refuses drift without the cached matrix.
            unreachable!("drift without a cached matrix");
        };
        let (n, m) = (self.n, self.m);
        if epoch < self.epoch {
            // Going back: redraw epoch 0 and replay the drift steps.
            for_each_entry(&self.key, 0, m, n, m, re, im, |r, i, g_re, g_im| {
                *r = g_re;
                *i = g_im;
            });
            self.epoch = 0;
        }
        for e in self.epoch + 1..=epoch {
            let g_key = rng::derive_key(self.seed, Purpose::Drift, e);
            // Rounding keeps the entries integers (exact sums); it adds a variance of 1/12 raw
            // units² per step, negligible against QUANT².
            for_each_entry(&g_key, 0, m, n, m, re, im, |r, i, g_re, g_im| {
                *r = (a * f64::from(*r) + b * f64::from(g_re)).round() as f32;
                *i = (a * f64::from(*i) + b * f64::from(g_im)).round() as f32;
            });
        }
        self.epoch = epoch;
        Ok(())
    }

    fn raw_entry(&self, j: usize, i: usize) -> (f32, f32) {
        assert!(j < self.m && i < self.n, "entry index out of range");
        match &self.storage {
            Storage::Cached { re, im } => (re[i * self.m + j], im[i * self.m + j]),
            Storage::Streaming { .. } => {
                let (bj, bi) = (j / BLOCK, i / BLOCK);
                let mut out = (0.0, 0.0);
                rng::fill_block(&self.key, bj, bi, j % BLOCK + 1, BLOCK, |jl, il, r, im| {
                    if jl == j % BLOCK && il == i % BLOCK {
                        out = (r, im);
                    }
                });
                out
            }
        }
    }

    fn raw_entry_variance(&self) -> f64 {
        2.0 * QUANT * QUANT
    }

    fn matrix_bytes(&self) -> usize {
        match &self.storage {
            Storage::Cached { re, im } => 4 * (re.len() + im.len()),
            Storage::Streaming { re, im, .. } => 4 * (re.capacity() + im.capacity()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(n: usize, m: usize, budget_mib: u64) -> DenseParams {
        DenseParams {
            input_dim: n,
            output_dim: m,
            seed: 3,
            budget_mib,
            drift_rate: 0.0,
        }
    }

    #[test]
    fn streaming_equals_cached() {
        // 100 features × 5000 outputs × 8 B = 3.8 MiB: cached with 4 MiB, streamed (32-row
        // blocks, chunks of 1 MiB) with 1 MiB.
        let (n, m) = (100, 5000);
        let mut cached = DenseMedium::new(params(n, m, 4)).unwrap();
        let mut streamed = DenseMedium::new(params(n, m, 1)).unwrap();
        assert!(cached.is_cached() && !streamed.is_cached());
        let x: Vec<f32> = (0..3 * n)
            .map(|v| ((v * 7) % 3 == 0) as u8 as f32)
            .collect();
        let collect = |med: &mut DenseMedium| {
            let mut out = vec![(0f32, 0f32); 3 * m];
            med.transmit(&x, 3, &mut |j0, rows, re, im| {
                for b in 0..3 {
                    for r in 0..rows {
                        out[b * m + j0 + r] = (re[b * rows + r], im[b * rows + r]);
                    }
                }
            })
            .unwrap();
            out
        };
        assert_eq!(collect(&mut cached), collect(&mut streamed));
        for (j, i) in [(0, 0), (4999, 99), (1234, 57)] {
            assert_eq!(cached.raw_entry(j, i), streamed.raw_entry(j, i));
        }
        assert!(streamed.matrix_bytes() <= 1 << 20);
    }

    #[test]
    fn budget_too_small_is_a_config_error() {
        let err = DenseMedium::new(params(1 << 20, 64, 1)).err().unwrap();
        assert!(
            err.to_string().contains("medium.matrix_budget_mib"),
            "{err}"
        );
        let mut p = params(4096, 4096, 1);
        p.drift_rate = 0.1;
        let err = DenseMedium::new(p).err().unwrap();
        assert!(err.to_string().contains("drift.rate"), "{err}");
    }
}
