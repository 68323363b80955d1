//! The dense medium: an explicit iid circular complex Gaussian transmission matrix.
//!
//! Entries are generated in `BLOCK × BLOCK` blocks; block (output block `bj`, feature block
//! `bi`) comes from its own ChaCha8 stream, so entry (j, i) depends only on the seed, j and i.
//! Raw entries are the integers `round(QUANT · z)` (real and imaginary parts independent,
//! z ~ N(0, 1)), stored in `f32` so that a GEMM against 0/1 inputs sums integers exactly. The
//! storage is column-major and *stacked*: a matrix of `rows` outputs is held as `2·rows × n`,
//! the real parts of column i in rows `0 .. rows` and its imaginary parts in rows
//! `rows .. 2·rows`, so one GEMM computes both parts.
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

/// Up to this many features a cached matrix is applied by adding the columns of the lit
/// features instead of a GEMM: for narrow inputs (DFA error vectors: 10 classes and a reference
/// pattern) a GEMM runs far below its peak, while the column sums touch only the lit columns.
/// Both sum the same integers exactly, so the fields are bit-identical.
const COLUMN_SUM_MAX_FEATURES: usize = 64;

/// Fewest frames in a call for which the fields of the features most of them share are summed
/// once (see [`common_mask`]).
const COMMON_MIN_FRAMES: usize = 8;

/// Construction parameters.
pub(crate) struct DenseParams {
    pub input_dim: usize,
    pub output_dim: usize,
    pub seed: u64,
    pub budget_mib: u64,
    pub drift_rate: f64,
}

enum Storage {
    /// The whole matrix, stacked `2·output_dim × input_dim`, column-major.
    Cached { ri: Vec<f32> },
    /// Room for a stacked `2·chunk_rows × input_dim` chunk, regenerated for every chunk of every
    /// batch.
    Streaming { chunk_rows: usize, ri: Vec<f32> },
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
    /// GEMM output, stacked `2·rows × batch`.
    out: Vec<f32>,
    out_re: Vec<f32>,
    out_im: Vec<f32>,
    /// Intensities of the distinct patterns of a batch (column-sum path).
    unique: Vec<f32>,
    /// The fields (stacked re, im) of the features lit in at least half of a call's frames.
    common: Vec<f32>,
}

/// Visits the entries of rows `j0 .. j0 + rows` (j0 a multiple of BLOCK) of the matrix drawn
/// from `key`, with `n` columns, stored stacked and column-major in `ri` (`2·rows × n`, the
/// layout of the whole cached matrix and of a streamed chunk alike): real part of row `j0 + r`
/// of column i at `2·rows·i + r`, imaginary part at `2·rows·i + rows + r`. Calls
/// `f(re_slot, im_slot, drawn_re, drawn_im)`. Parallel over column blocks; every entry is visited
/// once, so the result does not depend on the thread count.
fn for_each_entry(
    key: &[u8; 32],
    j0: usize,
    rows: usize,
    n: usize,
    ri: &mut [f32],
    f: impl Fn(&mut f32, &mut f32, f32, f32) + Sync,
) {
    debug_assert_eq!(j0 % BLOCK, 0);
    let ld = 2 * rows;
    debug_assert!(ri.len() >= ld * n);
    let ri = &mut ri[..ld * n];
    ri.par_chunks_mut(ld * BLOCK)
        .enumerate()
        .for_each(|(bi, cols_data)| {
            let cols = (n - bi * BLOCK).min(BLOCK);
            let first_block = j0 / BLOCK;
            let last_block = (j0 + rows).div_ceil(BLOCK);
            for bj in first_block..last_block {
                let row_off = bj * BLOCK - j0;
                let block_rows = (rows - row_off).min(BLOCK);
                rng::fill_block(key, bj, bi, block_rows, cols, |jl, il, g_re, g_im| {
                    let col = &mut cols_data[il * ld..(il + 1) * ld];
                    let (re_part, im_part) = col.split_at_mut(rows);
                    let r = row_off + jl;
                    f(&mut re_part[r], &mut im_part[r], g_re, g_im);
                });
            }
        });
}

/// Most bytes of intensities of distinct patterns held for [`DenseMedium::intensities`].
const UNIQUE_SCRATCH_BYTES: usize = 64 << 20;

/// The distinct lit-feature patterns of `frames` (0/1 values, `n ≤ 64` per frame): for each
/// frame, the slot of its pattern, and for each slot, the first frame with it.
fn distinct_patterns(frames: &[f32], n: usize) -> (Vec<usize>, Vec<usize>) {
    let mut slot_of = std::collections::HashMap::new();
    let mut patterns = Vec::new();
    let slots = frames
        .chunks_exact(n)
        .enumerate()
        .map(|(b, frame)| {
            let mask = frame
                .iter()
                .enumerate()
                .fold(0u64, |mask, (i, &v)| mask | u64::from(v != 0.0) << i);
            *slot_of.entry(mask).or_insert_with(|| {
                patterns.push(b);
                patterns.len() - 1
            })
        })
        .collect();
    (slots, patterns)
}

/// Outputs of a column-sum block, held in registers.
const BLOCK_ROWS: usize = 32;

/// The features of one frame of 0/1 values that are lit, as offsets of their columns in the
/// stacked, column-major matrix (column stride `ld`), plus `j0`; at most
/// [`COLUMN_SUM_MAX_FEATURES`].
fn lit_columns(frame: &[f32], ld: usize, j0: usize) -> ([usize; COLUMN_SUM_MAX_FEATURES], usize) {
    let mut lit = [0usize; COLUMN_SUM_MAX_FEATURES];
    let mut count = 0;
    for (i, &v) in frame.iter().enumerate() {
        lit[count] = i * ld + j0;
        count += usize::from(v != 0.0);
    }
    (lit, count)
}

/// The sum of the columns at `lit` (offsets into `ri`), rows `offset + start .. + out.len()`,
/// in feature order, [`BLOCK_ROWS`] rows at a time in registers; `finish(block_start, sums)`
/// stores each block.
#[inline(always)]
fn sum_columns(
    ri: &[f32],
    lit: &[usize],
    offset: usize,
    rows: usize,
    mut finish: impl FnMut(usize, &[f32]),
) {
    let whole = rows / BLOCK_ROWS * BLOCK_ROWS;
    for start in (0..whole).step_by(BLOCK_ROWS) {
        let mut acc = [0f32; BLOCK_ROWS];
        for &col in lit {
            let column: &[f32; BLOCK_ROWS] = ri[col + offset + start..][..BLOCK_ROWS]
                .try_into()
                .expect("a whole block");
            for (a, &v) in acc.iter_mut().zip(column) {
                *a += v;
            }
        }
        finish(start, &acc);
    }
    let mut tail = [0f32; BLOCK_ROWS];
    for (r, t) in tail[..rows - whole].iter_mut().enumerate() {
        *t = lit
            .iter()
            .fold(0.0, |a, &col| a + ri[col + offset + whole + r]);
    }
    finish(whole, &tail[..rows - whole]);
}

/// Fields of outputs `j0 .. j0 + re.len()` of one frame of 0/1 values from the stacked,
/// column-major matrix `ri` (column stride `ld`, imaginary parts `ld / 2` below the real ones):
/// the sum of the lit columns, in feature order.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512cd+avx512dq+avx512vl",
    "x86_64+avx2+fma",
    "x86_64+sse4.2",
    "aarch64+neon"
))]
fn sum_lit_columns(
    ri: &[f32],
    ld: usize,
    j0: usize,
    frame: &[f32],
    re: &mut [f32],
    im: &mut [f32],
) {
    let (lit, count) = lit_columns(frame, ld, j0);
    let lit = &lit[..count];
    sum_columns(ri, lit, 0, re.len(), |start, sums| {
        re[start..start + sums.len()].copy_from_slice(sums);
    });
    sum_columns(ri, lit, ld / 2, im.len(), |start, sums| {
        im[start..start + sums.len()].copy_from_slice(sums);
    });
}

/// Intensities `scale · (re² + im²)` of one frame (all outputs) from the lit columns, the real
/// and imaginary sums of each block squared in registers: the same bits as summing the fields
/// first.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512cd+avx512dq+avx512vl",
    "x86_64+avx2+fma",
    "x86_64+sse4.2",
    "aarch64+neon"
))]
fn lit_column_intensities(ri: &[f32], ld: usize, frame: &[f32], scale: f32, out: &mut [f32]) {
    let (lit, count) = lit_columns(frame, ld, 0);
    let lit = &lit[..count];
    let rows = out.len();
    let mut block_re = [0f32; BLOCK_ROWS];
    // Real parts of a block, then its imaginary parts: both sums in the GEMM's exact integers.
    let whole = rows / BLOCK_ROWS * BLOCK_ROWS;
    for start in (0..rows).step_by(BLOCK_ROWS) {
        let len = if start < whole {
            BLOCK_ROWS
        } else {
            rows - whole
        };
        sum_columns(ri, lit, start, len, |_, sums| {
            block_re[..sums.len()].copy_from_slice(sums)
        });
        sum_columns(ri, lit, ld / 2 + start, len, |_, sums| {
            for ((o, &b), &a) in out[start..start + sums.len()]
                .iter_mut()
                .zip(sums)
                .zip(&block_re)
            {
                *o = (a * a + b * b) * scale;
            }
        });
    }
}

/// The features lit in at least half of `frames` (0/1 values, `n ≤ 64` per frame), as a mask.
/// In a DFA feedback call that is the reference pattern, shown with every other frame.
fn common_mask(frames: &[f32], n: usize) -> u64 {
    let mut counts = [0usize; COLUMN_SUM_MAX_FEATURES];
    let mut total = 0;
    for frame in frames.chunks_exact(n) {
        for (c, &v) in counts.iter_mut().zip(frame) {
            *c += usize::from(v != 0.0);
        }
        total += 1;
    }
    counts[..n].iter().enumerate().fold(0u64, |mask, (i, &c)| {
        mask | u64::from(2 * c >= total && c > 0) << i
    })
}

/// The lit-feature mask of one frame of 0/1 values (`n ≤ 64`).
fn frame_mask(frame: &[f32]) -> u64 {
    frame
        .iter()
        .enumerate()
        .fold(0u64, |mask, (i, &v)| mask | u64::from(v != 0.0) << i)
}

/// Column offsets (stride `ld`) of the features set in `mask`, in feature order.
fn mask_columns(mask: u64, ld: usize) -> ([usize; COLUMN_SUM_MAX_FEATURES], usize) {
    let mut cols = [0usize; COLUMN_SUM_MAX_FEATURES];
    let mut count = 0;
    let mut rest = mask;
    while rest != 0 {
        cols[count] = rest.trailing_zeros() as usize * ld;
        count += 1;
        rest &= rest - 1;
    }
    (cols, count)
}

/// Intensities of one frame from the fields `common` (stacked re, im: `ld` values) of a set of
/// features C: `common + Σ_{f∖C} columns − Σ_{C∖f} columns`. The entries are integers and every
/// partial sum stays far below 2^24, so this is exactly the sum of the frame's lit columns: the
/// same bits as [`lit_column_intensities`], for fewer column passes when the frame is close to C.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512cd+avx512dq+avx512vl",
    "x86_64+avx2+fma",
    "x86_64+sse4.2",
    "aarch64+neon"
))]
fn intensities_from_common(
    ri: &[f32],
    ld: usize,
    common: &[f32],
    add: &[usize],
    sub: &[usize],
    scale: f32,
    out: &mut [f32],
) {
    let rows = out.len();
    let half = ld / 2;
    // Full blocks with fixed-size arrays (the sums stay in registers), then the tail.
    let block = |offset: usize| {
        let mut acc: [f32; BLOCK_ROWS] = common[offset..offset + BLOCK_ROWS]
            .try_into()
            .expect("a whole block");
        for &col in add {
            let column: &[f32; BLOCK_ROWS] = ri[col + offset..][..BLOCK_ROWS]
                .try_into()
                .expect("a whole block");
            for (a, &v) in acc.iter_mut().zip(column) {
                *a += v;
            }
        }
        for &col in sub {
            let column: &[f32; BLOCK_ROWS] = ri[col + offset..][..BLOCK_ROWS]
                .try_into()
                .expect("a whole block");
            for (a, &v) in acc.iter_mut().zip(column) {
                *a -= v;
            }
        }
        acc
    };
    let whole = rows / BLOCK_ROWS * BLOCK_ROWS;
    for start in (0..whole).step_by(BLOCK_ROWS) {
        let re = block(start);
        let im = block(half + start);
        for ((o, &a), &b) in out[start..start + BLOCK_ROWS].iter_mut().zip(&re).zip(&im) {
            *o = (a * a + b * b) * scale;
        }
    }
    let field = |row: usize| {
        let plus = add
            .iter()
            .fold(common[row], |acc, &col| acc + ri[col + row]);
        sub.iter().fold(plus, |acc, &col| acc - ri[col + row])
    };
    for (r, o) in out.iter_mut().enumerate().skip(whole) {
        let (a, b) = (field(r), field(half + r));
        *o = (a * a + b * b) * scale;
    }
}

/// Intensities of one frame: from the common fields when that takes fewer column passes,
/// else from its lit columns (the same bits either way).
fn frame_intensities(
    ri: &[f32],
    ld: usize,
    common: Option<(u64, &[f32])>,
    frame: &[f32],
    scale: f32,
    out: &mut [f32],
) {
    if let Some((c, fields)) = common {
        let f = frame_mask(frame);
        let (add, sub) = (f & !c, c & !f);
        // One pass to copy the common fields, one per added or removed column.
        if 1 + add.count_ones() + sub.count_ones() < f.count_ones() {
            let (add_cols, na) = mask_columns(add, ld);
            let (sub_cols, ns) = mask_columns(sub, ld);
            intensities_from_common(ri, ld, fields, &add_cols[..na], &sub_cols[..ns], scale, out);
            return;
        }
    }
    lit_column_intensities(ri, ld, frame, scale, out)
}

/// Draws rows `j0 .. j0 + rows` into `ri` (see [`for_each_entry`]).
fn draw(key: &[u8; 32], j0: usize, rows: usize, n: usize, ri: &mut [f32]) {
    for_each_entry(key, j0, rows, n, ri, |r, i, g_re, g_im| {
        *r = g_re;
        *i = g_im;
    });
}

/// Refuses, before allocating it, a matrix (cached whole, or one streamed chunk of at most the
/// budget) larger than the memory limit: a budget of 10^8 MiB is a promise no machine keeps.
fn check_memory(p: &DenseParams, whole: u64, budget: u64) -> Result<(), ConfigError> {
    let (n, m) = (p.input_dim, p.output_dim);
    let request = if whole <= budget {
        speckle_hal::memory::Request::new("", format!("caching the whole {m} × {n} matrix"))
            .times(m)
            .times(n)
            .of(8)
    } else {
        let rows = (budget / (8 * n as u64).max(1)).min(m as u64);
        speckle_hal::memory::Request::new(
            "",
            format!("one streamed chunk of {rows} rows of the {m} × {n} matrix"),
        )
        .times(rows)
        .times(n)
        .of(8)
    };
    match request.excess(speckle_hal::memory::limit()) {
        None => Ok(()),
        Some(reason) => Err(ConfigError::Invalid {
            key: "medium.matrix_budget_mib",
            value: p.budget_mib.to_string(),
            reason,
        }),
    }
}

impl DenseMedium {
    pub(crate) fn new(p: DenseParams) -> Result<Self, ConfigError> {
        let (n, m) = (p.input_dim, p.output_dim);
        let budget = p.budget_mib.saturating_mul(1 << 20);
        let whole = (8u64)
            .checked_mul(n as u64)
            .and_then(|b| b.checked_mul(m as u64))
            .unwrap_or(u64::MAX);
        check_memory(&p, whole, budget)?;
        let key = rng::derive_key(p.seed, Purpose::Medium, 0);
        let storage = if whole <= budget {
            let mut ri = vec![0f32; 2 * m * n];
            draw(&key, 0, m, n, &mut ri);
            Storage::Cached { ri }
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
                ri: Vec::new(),
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
            out: Vec::new(),
            out_re: Vec::new(),
            out_im: Vec::new(),
            unique: Vec::new(),
            common: Vec::new(),
        })
    }

    /// Whether the whole matrix is cached.
    #[cfg(test)]
    pub(crate) fn is_cached(&self) -> bool {
        matches!(self.storage, Storage::Cached { .. })
    }

    /// Fields of output rows `j0 .. j0 + rows` from their stacked matrix `lhs`
    /// (`2·rows × n`): one GEMM into the stacked scratch `out`, unstacked into `out_re` /
    /// `out_im` (`rows × batch` each) for `sink`.
    #[allow(clippy::too_many_arguments)]
    fn gemm_stacked(
        lhs: MatRef<'_, f32>,
        rhs: MatRef<'_, f32>,
        j0: usize,
        out: &mut Vec<f32>,
        out_re: &mut Vec<f32>,
        out_im: &mut Vec<f32>,
        sink: &mut FieldSink<'_>,
    ) {
        let (rows2, batch) = (lhs.nrows(), rhs.ncols());
        let rows = rows2 / 2;
        out.resize(rows2 * batch, 0.0);
        matmul(
            MatMut::from_column_major_slice_mut(&mut out[..rows2 * batch], rows2, batch),
            Accum::Replace,
            lhs,
            rhs,
            1.0f32,
            Par::rayon(0),
        );
        out_re.resize(rows * batch, 0.0);
        out_im.resize(rows * batch, 0.0);
        out[..rows2 * batch]
            .par_chunks(rows2)
            .zip(out_re.par_chunks_mut(rows).zip(out_im.par_chunks_mut(rows)))
            .for_each(|(src, (re, im))| {
                re.copy_from_slice(&src[..rows]);
                im.copy_from_slice(&src[rows..]);
            });
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
            Storage::Cached { ri } if n <= COLUMN_SUM_MAX_FEATURES => {
                let rows_per = (SCRATCH_FLOATS / batch).clamp(1, m);
                let mut j0 = 0;
                while j0 < m {
                    let rows = rows_per.min(m - j0);
                    self.out_re.resize(rows * batch, 0.0);
                    self.out_im.resize(rows * batch, 0.0);
                    self.out_re[..rows * batch]
                        .par_chunks_mut(rows)
                        .zip(self.out_im[..rows * batch].par_chunks_mut(rows))
                        .zip(x.par_chunks(n))
                        .with_min_len((4096 / rows).max(1))
                        .for_each(|((re, im), frame)| {
                            sum_lit_columns(ri, 2 * m, j0, frame, re, im);
                        });
                    sink(
                        j0,
                        rows,
                        &self.out_re[..rows * batch],
                        &self.out_im[..rows * batch],
                    );
                    j0 += rows;
                }
            }
            Storage::Cached { ri } => {
                // Real and imaginary parts as two strided GEMMs straight into the sink's
                // buffers, in chunks of output rows that bound the scratch memory. (One stacked
                // GEMM plus an unstacking copy measured slower for the cached matrix.)
                let rows_per = (SCRATCH_FLOATS / batch).clamp(1, m);
                let par = Par::rayon(0);
                let mut j0 = 0;
                while j0 < m {
                    let rows = rows_per.min(m - j0);
                    let len = (n - 1) * 2 * m + rows;
                    for (part, dst) in [(0, &mut self.out_re), (m, &mut self.out_im)] {
                        let lhs = MatRef::from_column_major_slice_with_stride(
                            &ri[part + j0..part + j0 + len],
                            rows,
                            n,
                            2 * m,
                        );
                        dst.resize(rows * batch, 0.0);
                        matmul(
                            MatMut::from_column_major_slice_mut(
                                &mut dst[..rows * batch],
                                rows,
                                batch,
                            ),
                            Accum::Replace,
                            lhs,
                            rhs,
                            1.0f32,
                            par,
                        );
                    }
                    sink(
                        j0,
                        rows,
                        &self.out_re[..rows * batch],
                        &self.out_im[..rows * batch],
                    );
                    j0 += rows;
                }
            }
            Storage::Streaming { chunk_rows, ri } => {
                let chunk_rows = *chunk_rows;
                let mut j0 = 0;
                while j0 < m {
                    let rows = chunk_rows.min(m - j0);
                    ri.resize(2 * rows * n, 0.0);
                    draw(&self.key, j0, rows, n, ri);
                    let lhs = MatRef::from_column_major_slice(&ri[..2 * rows * n], 2 * rows, n);
                    Self::gemm_stacked(
                        lhs,
                        rhs,
                        j0,
                        &mut self.out,
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

    fn intensities(
        &mut self,
        x: &[f32],
        batch: usize,
        scale: f32,
        out: &mut [f32],
    ) -> Result<(), Error> {
        let (n, m) = (self.n, self.m);
        match &self.storage {
            Storage::Cached { ri } if n <= COLUMN_SUM_MAX_FEATURES => {
                let min_len = (4096 / m).max(1);
                // The fields of the features most frames share (a DFA feedback call shows the
                // reference with every other frame) are summed once; a frame close to them
                // starts from those sums.
                let c = common_mask(&x[..batch * n], n);
                // Worth it when the sums are shared by several frames.
                let common = if batch >= COMMON_MIN_FRAMES && c.count_ones() >= 2 {
                    let (cols, count) = mask_columns(c, 2 * m);
                    self.common.resize(2 * m, 0.0);
                    sum_columns(ri, &cols[..count], 0, 2 * m, |start, sums| {
                        self.common[start..start + sums.len()].copy_from_slice(sums)
                    });
                    Some((c, &self.common[..]))
                } else {
                    None
                };
                let (slots, patterns) = distinct_patterns(x, n);
                let unique_bytes = 4 * patterns.len().saturating_mul(m);
                if 2 * patterns.len() > batch || unique_bytes > UNIQUE_SCRATCH_BYTES {
                    out.par_chunks_mut(m)
                        .zip(x.par_chunks(n))
                        .with_min_len(min_len)
                        .for_each(|(dst, frame)| {
                            frame_intensities(ri, 2 * m, common, frame, scale, dst)
                        });
                    return Ok(());
                }
                // Frames that light the same features have the same intensities (DFA error
                // frames repeat: the reference alone, the dark frame, one-class errors): each
                // pattern is computed once, then copied.
                self.unique.resize(patterns.len() * m, 0.0);
                self.unique
                    .par_chunks_mut(m)
                    .zip(&patterns)
                    .with_min_len(min_len)
                    .for_each(|(dst, &b)| {
                        frame_intensities(ri, 2 * m, common, &x[b * n..(b + 1) * n], scale, dst)
                    });
                let unique = &self.unique;
                out.par_chunks_mut(m)
                    .zip(&slots)
                    .with_min_len(min_len)
                    .for_each(|(dst, &slot)| {
                        dst.copy_from_slice(&unique[slot * m..(slot + 1) * m])
                    });
                Ok(())
            }
            _ => super::intensities_from_fields(self, x, batch, scale, out),
        }
    }

    fn set_epoch(&mut self, epoch: u64) -> Result<(), Error> {
        let Some((a, b)) = self.drift else {
            return Ok(());
        };
        if epoch == self.epoch {
            return Ok(());
        }
        let Storage::Cached { ri } = &mut self.storage else {
            // Construction refuses drift without the cached matrix.
            unreachable!("drift without a cached matrix");
        };
        let (n, m) = (self.n, self.m);
        if epoch < self.epoch {
            // Going back: redraw epoch 0 and replay the drift steps.
            draw(&self.key, 0, m, n, ri);
            self.epoch = 0;
        }
        for e in self.epoch + 1..=epoch {
            let g_key = rng::derive_key(self.seed, Purpose::Drift, e);
            // Rounding keeps the entries integers (exact sums); it adds a variance of 1/12 raw
            // units² per step, negligible against QUANT².
            for_each_entry(&g_key, 0, m, n, ri, |r, i, g_re, g_im| {
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
            Storage::Cached { ri } => (ri[2 * i * self.m + j], ri[2 * i * self.m + self.m + j]),
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
            Storage::Cached { ri } => 4 * ri.len(),
            Storage::Streaming { ri, .. } => 4 * ri.capacity(),
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
        // 3 frames: all outputs in one chunk when cached; 1000 frames: several chunks.
        for batch in [3, 1000] {
            let x: Vec<f32> = (0..batch * n)
                .map(|v| ((v * 7) % 3 == 0) as u8 as f32)
                .collect();
            let collect = |med: &mut DenseMedium| {
                let mut out = vec![(0f32, 0f32); batch * m];
                med.transmit(&x, batch, &mut |j0, rows, re, im| {
                    for b in 0..batch {
                        for r in 0..rows {
                            out[b * m + j0 + r] = (re[b * rows + r], im[b * rows + r]);
                        }
                    }
                })
                .unwrap();
                out
            };
            let a = collect(&mut cached);
            assert!(a == collect(&mut streamed), "batch {batch}");
            // Spot check against the entries: output 17 of frame 2.
            let (mut re, mut im) = (0f32, 0f32);
            for i in 0..n {
                if x[2 * n + i] == 1.0 {
                    let (r, q) = cached.raw_entry(17, i);
                    re += r;
                    im += q;
                }
            }
            assert_eq!(a[2 * m + 17], (re, im), "batch {batch}");
        }
        for (j, i) in [(0, 0), (4999, 99), (1234, 57)] {
            assert_eq!(cached.raw_entry(j, i), streamed.raw_entry(j, i));
        }
        assert!(streamed.matrix_bytes() <= 1 << 20);
    }

    /// Narrow inputs take the column sums when cached and the GEMM when streamed: the same
    /// bits, an all-dark frame included.
    #[test]
    fn column_sums_equal_the_gemm() {
        let (n, m) = (40, 5000);
        let mut summed = DenseMedium::new(params(n, m, 4)).unwrap();
        let mut streamed = DenseMedium::new(params(n, m, 1)).unwrap();
        assert!(summed.is_cached() && !streamed.is_cached() && n <= COLUMN_SUM_MAX_FEATURES);
        for batch in [1, 3, 900] {
            let x: Vec<f32> = (0..batch * n)
                .map(|v| (v >= n && (v * 7) % 5 < 2) as u8 as f32)
                .collect();
            let collect = |med: &mut DenseMedium| {
                let mut out = vec![(0u32, 0u32); batch * m];
                med.transmit(&x, batch, &mut |j0, rows, re, im| {
                    for b in 0..batch {
                        for r in 0..rows {
                            out[b * m + j0 + r] =
                                (re[b * rows + r].to_bits(), im[b * rows + r].to_bits());
                        }
                    }
                })
                .unwrap();
                out
            };
            assert!(
                collect(&mut summed) == collect(&mut streamed),
                "batch {batch}"
            );
        }
    }

    /// The fused intensities of the column sums are the bits of `|GEMM fields|²`.
    #[test]
    fn column_sum_intensities_equal_the_fields() {
        let (n, m, batch) = (26, 5100, 7);
        let mut summed = DenseMedium::new(params(n, m, 4)).unwrap();
        let mut streamed = DenseMedium::new(params(n, m, 1)).unwrap();
        assert!(summed.is_cached() && !streamed.is_cached());
        let distinct: Vec<f32> = (0..batch * n)
            .map(|v| (v >= n && (v * 7) % 5 < 2) as u8 as f32)
            .collect();
        // Three patterns repeated: each computed once and copied.
        let repeated: Vec<f32> = (0..4 * batch * n).map(|v| distinct[v % (3 * n)]).collect();
        let (slots, patterns) = distinct_patterns(&repeated, n);
        assert_eq!(patterns, [0, 1, 2]);
        assert_eq!(slots[..7], [0, 1, 2, 0, 1, 2, 0]);
        for x in [distinct, repeated] {
            let frames = x.len() / n;
            let intensities = |med: &mut DenseMedium| {
                let mut out = vec![0f32; frames * m];
                med.intensities(&x, frames, 0.37, &mut out).unwrap();
                out.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            };
            assert!(
                intensities(&mut summed) == intensities(&mut streamed),
                "{frames} frames"
            );
        }
    }

    /// Frames as a DFA feedback call shows them (a data pattern with the reference, then the
    /// same pattern without it) start from the reference's summed fields: still the bits of
    /// `|GEMM fields|²`, whatever the data pattern (empty, full, overlapping the reference).
    #[test]
    fn intensities_from_the_common_features_equal_the_fields() {
        let (n, m) = (26, 5100);
        let mut summed = DenseMedium::new(params(n, m, 4)).unwrap();
        let mut streamed = DenseMedium::new(params(n, m, 1)).unwrap();
        let reference: Vec<bool> = (0..n).map(|i| i >= 10).collect();
        let mut x = Vec::new();
        for pair in 0..40usize {
            let data: Vec<bool> = (0..n)
                .map(|i| match pair {
                    0 => false,
                    1 => true,
                    _ => i < 10 && (i * 13 + pair * 7) % 5 < 2,
                })
                .collect();
            for with_reference in [true, false] {
                x.extend(
                    (0..n).map(|i| (data[i] || (with_reference && reference[i])) as u8 as f32),
                );
            }
        }
        let frames = x.len() / n;
        let common = common_mask(&x, n);
        assert_eq!(
            common,
            ((1u64 << n) - 1) & !((1 << 10) - 1),
            "the reference"
        );
        let intensities = |med: &mut DenseMedium| {
            let mut out = vec![0f32; frames * m];
            med.intensities(&x, frames, 0.37, &mut out).unwrap();
            out.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        };
        assert!(intensities(&mut summed) == intensities(&mut streamed));
        // And frame by frame against the plain column sums.
        let Storage::Cached { ri } = &summed.storage else {
            unreachable!()
        };
        let (cols, count) = mask_columns(common, 2 * m);
        let mut fields = vec![0f32; 2 * m];
        sum_columns(ri, &cols[..count], 0, 2 * m, |start, sums| {
            fields[start..start + sums.len()].copy_from_slice(sums)
        });
        for frame in x.chunks_exact(n) {
            let mut a = vec![0f32; m];
            let mut b = vec![0f32; m];
            frame_intensities(ri, 2 * m, Some((common, &fields)), frame, 0.37, &mut a);
            lit_column_intensities(ri, 2 * m, frame, 0.37, &mut b);
            assert!(a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits()));
        }
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
