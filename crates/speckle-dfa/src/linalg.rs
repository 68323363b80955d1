//! Thin GEMM wrappers over faer for row-major `f32` slices, and small deterministic reductions.
//!
//! Every matrix product of the trainer views row-major buffers as faer matrices and calls
//! `faer::linalg::matmul::matmul` on one thread (`Par::Seq`) per piece: the pieces (column
//! bands of the output, tiles of a weight gradient, chunks of a long inner dimension) are fixed
//! by the shapes and run on rayon's pool, so results do not depend on the number of threads
//! (tests pin it).

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

use crate::optim::Block;

/// A row-major matrix view: `rows × cols` values of `data`, rows `cols` apart.
#[derive(Clone, Copy)]
pub(crate) struct RowMajor<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
}

impl<'a> RowMajor<'a> {
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        debug_assert_eq!(data.len(), rows * cols);
        Self { data, rows, cols }
    }
    fn view(&self, transpose: bool) -> MatRef<'a, f32> {
        let m = MatRef::from_row_major_slice(self.data, self.rows, self.cols);
        if transpose {
            m.transpose()
        } else {
            m
        }
    }
}

/// `dst (m × n, row-major) = alpha · op(a) · op(b) + (accumulate ? dst : 0)`, where `op`
/// transposes when asked. Shapes are checked by debug assertions only: callers own their buffers.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm(
    dst: &mut [f32],
    m: usize,
    n: usize,
    a: RowMajor<'_>,
    transpose_a: bool,
    b: RowMajor<'_>,
    transpose_b: bool,
    alpha: f32,
    accumulate: bool,
) {
    debug_assert_eq!(dst.len(), m * n);
    let a = a.view(transpose_a);
    let b = b.view(transpose_b);
    let k = a.ncols();
    debug_assert_eq!((a.nrows(), b.ncols()), (m, n));
    debug_assert_eq!(b.nrows(), k);
    if k >= SPLIT_K_MIN && m * n <= SPLIT_K_MAX_OUTPUT {
        // A long inner dimension and a small output (the logits of a layer 2^20 wide: 64 × 10
        // over k = 2^20): faer parallelizes over output blocks, of which there is one, and
        // synchronizes once per block of k; that took seconds. Fixed chunks of k are multiplied
        // in parallel instead, then summed in chunk order (independent of the thread count).
        let chunks = k.div_ceil(SPLIT_K_CHUNK);
        let mut partial = vec![0.0f32; chunks * m * n];
        partial
            .par_chunks_mut(m * n)
            .enumerate()
            .for_each(|(c, p)| {
                let k0 = c * SPLIT_K_CHUNK;
                let len = SPLIT_K_CHUNK.min(k - k0);
                let p = MatMut::from_row_major_slice_mut(p, m, n);
                let (a, b) = (a.subcols(k0, len), b.subrows(k0, len));
                matmul(p, Accum::Replace, a, b, alpha, Par::Seq);
            });
        if !accumulate {
            dst.fill(0.0);
        }
        for p in partial.chunks_exact(m * n) {
            add_assign(dst, p);
        }
        return;
    }
    let beta = if accumulate {
        Accum::Add
    } else {
        Accum::Replace
    };
    // Small products cost less on one thread than split: the output layer of the MNIST net
    // (128 × 800 × 10, about 10 µs) is one of them, and so is any small output (one block of
    // faer's kernels, nothing to share). Larger ones run in fixed column bands on rayon's
    // pool, which shares them out by stealing: faer's own threads wait for each other at every
    // block of k, which on a busy machine stalls the whole product on one descheduled thread.
    if m * n * k < 1 << 20 || m * n <= SPLIT_K_MAX_OUTPUT {
        let dst = MatMut::from_row_major_slice_mut(dst, m, n);
        matmul(dst, beta, a, b, alpha, Par::Seq);
    } else {
        let bands = if n >= 4096 { 8 } else { 4 };
        col_bands(dst, m, n, a, b, alpha, beta, bands, |_, _| {});
    }
}

/// Inner dimensions from this length on are split into chunks of [`SPLIT_K_CHUNK`] when the
/// output has at most [`SPLIT_K_MAX_OUTPUT`] values ([`gemm`]).
const SPLIT_K_MIN: usize = 1 << 16;
const SPLIT_K_CHUNK: usize = 1 << 14;
const SPLIT_K_MAX_OUTPUT: usize = 1 << 14;

/// One block of `alpha · aᵀ · b` into `dst` (`block.rows × block.cols`, row-major,
/// overwritten), on the calling thread: one tile of a weight gradient `inputᵀ · δ`, computed
/// where the optimizer consumes it. `a` is `k × m` and `b` is `k × n`, both row-major.
pub(crate) fn gemm_at_b_block(
    dst: &mut [f32],
    a: RowMajor<'_>,
    block: Block,
    b: RowMajor<'_>,
    alpha: f32,
) {
    debug_assert_eq!(dst.len(), block.rows * block.cols);
    debug_assert_eq!(a.rows, b.rows);
    let at = a.view(false).subcols(block.row0, block.rows).transpose();
    let b = b.view(false).subcols(block.col0, block.cols);
    let dst = MatMut::from_row_major_slice_mut(dst, block.rows, block.cols);
    matmul(dst, Accum::Replace, at, b, alpha, Par::Seq);
}

/// `dst (m × n, row-major) = a (m × k) · b (k × n)` in `bands` fixed column bands computed in
/// parallel, each on one thread, then `epilogue(row, col0)` on every row of a finished band
/// while it is in cache (`row` holds columns `col0 ..` of that row). The bands depend on the
/// shape only, so the result does not depend on the thread count.
pub(crate) fn gemm_col_bands<F>(
    dst: &mut [f32],
    m: usize,
    n: usize,
    a: RowMajor<'_>,
    b: RowMajor<'_>,
    bands: usize,
    epilogue: F,
) where
    F: Fn(&mut [f32], usize) + Sync,
{
    let (a, b) = (a.view(false), b.view(false));
    col_bands(dst, m, n, a, b, 1.0, Accum::Replace, bands, epilogue);
}

/// [`gemm_col_bands`] for any operand views, with `dst = alpha · a · b (+ dst)`.
#[allow(clippy::too_many_arguments)]
fn col_bands<F>(
    dst: &mut [f32],
    m: usize,
    n: usize,
    a: MatRef<'_, f32>,
    b: MatRef<'_, f32>,
    alpha: f32,
    beta: Accum,
    bands: usize,
    epilogue: F,
) where
    F: Fn(&mut [f32], usize) + Sync,
{
    use faer::reborrow::ReborrowMut;
    debug_assert_eq!(dst.len(), m * n);
    // Band widths in whole 16-column steps: faer's AVX-512 kernels cover 16 output columns of a
    // row-major product at a time, and a ragged band (800 / 8 = 96 + 4) wastes most of one.
    let band = n.div_ceil(bands.max(1)).next_multiple_of(16).min(n).max(1);
    MatMut::from_row_major_slice_mut(dst, m, n)
        .par_col_chunks_mut(band)
        .enumerate()
        .for_each(|(i, mut d)| {
            let col0 = i * band;
            let w = d.ncols();
            matmul(d.rb_mut(), beta, a, b.subcols(col0, w), alpha, Par::Seq);
            for r in 0..m {
                let row = d
                    .rb_mut()
                    .row_mut(r)
                    .try_as_row_major_mut()
                    .expect("a band of a row-major matrix has contiguous rows")
                    .as_slice_mut();
                epilogue(row, col0);
            }
        });
}

/// Column sums of a row-major `rows × cols` matrix into `out` (overwritten), accumulated in
/// f32 row by row in a fixed order; large matrices in parallel blocks of columns (each column's
/// sum is the same whichever block computes it).
pub(crate) fn column_sums(src: &[f32], cols: usize, out: &mut [f32]) {
    const BLOCK_COLS: usize = 1 << 12;
    debug_assert_eq!(out.len(), cols);
    if src.len() < 1 << 20 || cols <= BLOCK_COLS {
        out.fill(0.0);
        for row in src.chunks_exact(cols) {
            add_assign(out, row);
        }
        return;
    }
    let rows = src.len() / cols;
    let src = MatRef::from_row_major_slice(src, rows, cols);
    out.par_chunks_mut(BLOCK_COLS)
        .enumerate()
        .for_each(|(b, out)| {
            let col0 = b * BLOCK_COLS;
            out.fill(0.0);
            for r in 0..rows {
                let row = src
                    .row(r)
                    .subcols(col0, out.len())
                    .try_as_row_major()
                    .expect("rows of a row-major matrix are contiguous")
                    .as_slice();
                add_assign(out, row);
            }
        });
}

simd_kernel! {
    /// `out[i] += v[i]`.
    fn add_assign(out: &mut [f32], v: &[f32]) {
        for (o, v) in out.iter_mut().zip(v) {
            *o += v;
        }
    }
}

/// Dot product in f64.
pub(crate) fn dot64(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
}

/// Cosine between two vectors in f64; 0 when either is zero.
pub(crate) fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let ab = dot64(a, b);
    let aa = dot64(a, a);
    let bb = dot64(b, b);
    if aa == 0.0 || bb == 0.0 {
        0.0
    } else {
        (ab / (aa.sqrt() * bb.sqrt())).clamp(-1.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
    }

    #[test]
    fn split_inner_dimension_products_match_a_reference() {
        // 3 × 5 output over k = 2^16 + 7: split into chunks of k, the last one short.
        let (m, n, k) = (3, 5, SPLIT_K_MIN + 7);
        let (a, b) = (random(m * k, 1), random(k * n, 2));
        for accumulate in [false, true] {
            let mut dst = vec![0.5f32; m * n];
            gemm(
                &mut dst,
                m,
                n,
                RowMajor::new(&a, m, k),
                false,
                RowMajor::new(&b, k, n),
                false,
                0.25,
                accumulate,
            );
            for i in 0..m {
                for j in 0..n {
                    let exact: f64 = (0..k)
                        .map(|t| a[i * k + t] as f64 * b[t * n + j] as f64)
                        .sum::<f64>()
                        * 0.25
                        + if accumulate { 0.5 } else { 0.0 };
                    // f32 sums of 2^16 terms of size ≤ 1: errors of order 1e-3 at most.
                    let got = dst[i * n + j] as f64;
                    assert!((got - exact).abs() < 2e-3, "({i}, {j}): {got} vs {exact}");
                }
            }
        }
    }

    #[test]
    fn column_sums_in_parallel_blocks_equal_the_sequential_sums() {
        let (rows, cols) = (300, 5000);
        let src = random(rows * cols, 3);
        let mut sums = vec![0.0; cols];
        column_sums(&src, cols, &mut sums);
        for c in 0..cols {
            let mut s = 0.0f32;
            for r in 0..rows {
                s += src[r * cols + c];
            }
            assert_eq!(sums[c].to_bits(), s.to_bits(), "column {c}");
        }
    }
}
