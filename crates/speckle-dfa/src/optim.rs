//! Optimizers (SGD with momentum / Nesterov, Adam) and learning-rate schedules, with PyTorch's
//! update rules.
//!
//! Each parameter tensor is a `Param`: value, gradient and up to two moment buffers. The update
//! is one fused pass per tensor, split over rayon threads in fixed chunks (elementwise, so the
//! result does not depend on the thread count).
//!
//! ```
//! use speckle_dfa::optim::learning_rate;
//! use speckle_dfa::{OptimizerSpec, Schedule};
//!
//! let spec = OptimizerSpec { lr: 0.1, schedule: Schedule::Cosine, ..OptimizerSpec::default() };
//! assert_eq!(learning_rate(&spec, 0, 100), 0.1);
//! assert!((learning_rate(&spec, 50, 100) - 0.05).abs() < 1e-12);
//! ```

use rayon::prelude::*;

use crate::spec::{OptimizerKind, OptimizerSpec, Schedule};

/// One parameter tensor with its gradient and optimizer moments (flat, row-major).
#[derive(Debug, Clone)]
pub(crate) struct Param {
    pub value: Vec<f32>,
    /// The whole gradient, for the passes that keep it ([`StepScalars::update`], the trainer's
    /// `gradients`); empty until one of them asks ([`Param::grad_mut`]). The training step
    /// never fills it for a weight matrix: [`StepScalars::update_fused`] computes the gradient
    /// tile by tile where the update consumes it, which at a width of 2^20 spares a buffer as
    /// large as the weights.
    pub grad: Vec<f32>,
    /// SGD momentum buffer or Adam first moment (empty when unused).
    pub m1: Vec<f32>,
    /// Adam second moment (empty when unused).
    pub m2: Vec<f32>,
}

impl Param {
    pub fn new(value: Vec<f32>, spec: &OptimizerSpec) -> Self {
        let n = value.len();
        let (m1, m2) = match spec.kind {
            OptimizerKind::Sgd if spec.momentum > 0.0 => (zeros_touched(n), Vec::new()),
            OptimizerKind::Sgd => (Vec::new(), Vec::new()),
            OptimizerKind::Adam => (zeros_touched(n), zeros_touched(n)),
        };
        Self {
            value,
            grad: Vec::new(),
            m1,
            m2,
        }
    }

    /// The whole gradient buffer, allocated (zeros) on first use.
    pub fn grad_mut(&mut self) -> &mut [f32] {
        if self.grad.len() != self.value.len() {
            self.grad = zeros_touched(self.value.len());
        }
        &mut self.grad
    }
}

/// `n` zeros, written one by one so that the pages are mapped now: `vec![0.0; n]` maps them
/// lazily, and the first training step would pay a page fault (and a TLB shootdown) per 4 KiB.
pub(crate) fn zeros_touched(n: usize) -> Vec<f32> {
    let mut v = Vec::with_capacity(n);
    v.extend(std::iter::repeat_n(0.0f32, n));
    v
}

/// Values per tile of the fused gradient-and-update pass at most: 128 KiB of `f32`, so that a
/// tile's gradient, weights and two moments (512 KiB) stay in a core's L2 cache while the
/// update reads them.
const TILE_VALUES: usize = 1 << 15;
/// Rows per tile at most when the columns are cut too.
const TILE_ROWS: usize = 128;
/// Widths up to which a tile spans whole rows.
const BAND_COLS: usize = 128;

/// A block of a `rows × cols` row-major parameter: rows `row0 .. row0 + rows`, columns
/// `col0 .. col0 + cols`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Block {
    pub row0: usize,
    pub rows: usize,
    pub col0: usize,
    pub cols: usize,
}

/// How the fused pass cuts a `rows × cols` row-major parameter into tiles of at most
/// [`TILE_VALUES`]: bands of whole rows when the matrix is at most [`BAND_COLS`] wide, else
/// tiles of at most [`TILE_ROWS`] rows by as many columns as fit, in whole multiples of 16 (an
/// AVX-512 register). Neither side is ever thin: each tile's product packs its share of both
/// operands, and tiles of one row or 16 columns would pack the other operand whole every time.
/// Rows and columns are cut into near-equal parts; the tiling is fixed by the shape, never by
/// the thread count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tiling {
    rows: usize,
    cols: usize,
    /// Rows per tile (the last band may have fewer).
    tile_rows: usize,
    /// Columns per tile (the last block may have fewer).
    tile_cols: usize,
}

impl Tiling {
    /// The tiling of a `rows × cols` parameter.
    pub fn new(rows: usize, cols: usize) -> Self {
        let (rows, cols) = (rows.max(1), cols.max(1));
        // `len` cut into near-equal parts of at most `most`, each rounded up to `multiple`.
        let part = |len: usize, most: usize, multiple: usize| {
            let parts = len.div_ceil(most.max(1));
            len.div_ceil(parts).next_multiple_of(multiple).min(len)
        };
        let (tile_rows, tile_cols) = if cols <= BAND_COLS {
            (part(rows, TILE_VALUES / cols, 1), cols)
        } else {
            let tile_rows = part(rows, TILE_ROWS, 1);
            (tile_rows, part(cols, TILE_VALUES / tile_rows, 16))
        };
        Self {
            rows,
            cols,
            tile_rows,
            tile_cols,
        }
    }
}

impl Tiling {
    /// The tiles in order, as [`StepScalars::update_fused`] visits them.
    pub fn blocks(self) -> impl Iterator<Item = Block> {
        let bands = self.rows.div_ceil(self.tile_rows);
        let columns = self.cols.div_ceil(self.tile_cols);
        (0..bands * columns).map(move |t| {
            let (band, column) = (t / columns, t % columns);
            let (row0, col0) = (band * self.tile_rows, column * self.tile_cols);
            Block {
                row0,
                rows: self.tile_rows.min(self.rows - row0),
                col0,
                cols: self.tile_cols.min(self.cols - col0),
            }
        })
    }
}

/// Learning rate for 0-based step `step` of `total_steps` under the spec's schedule and warm-up.
/// Past `total_steps` the last value is kept.
pub fn learning_rate(spec: &OptimizerSpec, step: u64, total_steps: u64) -> f64 {
    let total = total_steps.max(1) as f64;
    let t = (step as f64).min(total - 1.0).max(0.0);
    let warm = (spec.warmup_fraction * total).floor();
    if t < warm {
        return spec.lr * (t + 1.0) / warm;
    }
    match spec.schedule {
        Schedule::Constant => spec.lr,
        Schedule::Cosine => {
            let span = (total - warm).max(1.0);
            0.5 * spec.lr * (1.0 + (std::f64::consts::PI * (t - warm) / span).cos())
        }
    }
}

/// Per-step scalars of the update, computed once per step in f64.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StepScalars {
    kind: OptimizerKind,
    lr: f32,
    weight_decay: f32,
    momentum: f32,
    nesterov: bool,
    /// First SGD momentum step: the buffer is set to the gradient (PyTorch).
    first: bool,
    beta1: f32,
    beta2: f32,
    /// lr / (1 − β1^t)
    adam_step: f32,
    /// 1 / sqrt(1 − β2^t)
    adam_v_scale: f32,
    eps: f32,
}

impl StepScalars {
    /// Scalars for 0-based step `step`.
    pub fn new(spec: &OptimizerSpec, step: u64, total_steps: u64) -> Self {
        let lr = learning_rate(spec, step, total_steps);
        let t = (step + 1).min(i32::MAX as u64) as i32;
        let bc1 = 1.0 - spec.beta1.powi(t);
        let bc2 = 1.0 - spec.beta2.powi(t);
        Self {
            kind: spec.kind,
            lr: lr as f32,
            weight_decay: spec.weight_decay as f32,
            momentum: spec.momentum as f32,
            nesterov: spec.nesterov,
            first: step == 0,
            beta1: spec.beta1 as f32,
            beta2: spec.beta2 as f32,
            adam_step: (lr / bc1) as f32,
            adam_v_scale: (1.0 / bc2.sqrt()) as f32,
            eps: spec.eps as f32,
        }
    }

    /// Applies the update to one parameter from its whole gradient `grad`.
    pub fn update(&self, p: &mut Param) {
        const CHUNK: usize = 1 << 14;
        let s = *self;
        let Param {
            value,
            grad,
            m1,
            m2,
        } = p;
        debug_assert_eq!(grad.len(), value.len(), "the whole gradient is computed");
        let count = value.len().div_ceil(CHUNK);
        value
            .par_chunks_mut(CHUNK)
            .zip(grad.par_chunks(CHUNK))
            .zip(chunks_or_empty(m1, CHUNK, count))
            .zip(chunks_or_empty(m2, CHUNK, count))
            .for_each(|(((w, g), m), v)| s.apply(w, g, m, v));
    }

    /// Applies the update to the `rows × cols` parameter `p` tile by tile ([`Tiling`]):
    /// `fill_grad(block, grad)` writes a tile's gradient (row-major, `block.rows ×
    /// block.cols`) into a scratch buffer of the thread just before the tile is updated, so the
    /// gradient is consumed while it is in cache and never stored whole. Tiles run in parallel;
    /// the result does not depend on the thread count as long as `fill_grad` is deterministic.
    pub fn update_fused<F>(&self, p: &mut Param, rows: usize, cols: usize, fill_grad: F)
    where
        F: Fn(Block, &mut [f32]) + Sync,
    {
        let s = *self;
        let tiling = Tiling::new(rows, cols);
        let Param { value, m1, m2, .. } = p;
        debug_assert_eq!(value.len(), rows * cols);
        // Bands of whole rows are contiguous in memory; the column blocks within a band are
        // runs of contiguous rows. Both levels run in parallel.
        let band = tiling.tile_rows * cols;
        let bands = value.len().div_ceil(band);
        let step = tiling.tile_cols;
        let blocks = cols.div_ceil(step);
        value
            .par_chunks_mut(band)
            .zip(chunks_or_empty(m1, band, bands))
            .zip(chunks_or_empty(m2, band, bands))
            .enumerate()
            .for_each(|(b, ((w, m), v))| {
                let band_rows = w.len() / cols;
                let row0 = b * tiling.tile_rows;
                if step == cols {
                    let block = Block {
                        row0,
                        rows: band_rows,
                        col0: 0,
                        cols,
                    };
                    with_scratch(w.len(), |g| {
                        fill_grad(block, g);
                        s.apply(w, g, m, v);
                    });
                    return;
                }
                column_blocks(w, band_rows, cols, step, blocks)
                    .zip(column_blocks(m, band_rows, cols, step, blocks))
                    .zip(column_blocks(v, band_rows, cols, step, blocks))
                    .enumerate()
                    .for_each(|(c, ((w, mut m), mut v))| {
                        let mut w = w.expect("the value is never empty");
                        let block = Block {
                            row0,
                            rows: band_rows,
                            col0: c * step,
                            cols: w.ncols(),
                        };
                        with_scratch(block.rows * block.cols, |g| {
                            fill_grad(block, g);
                            for (r, g) in g.chunks_exact(block.cols).enumerate() {
                                let (m_row, v_row) =
                                    (optional_row(&mut m, r), optional_row(&mut v, r));
                                s.apply(contiguous_row(w.as_mut().row_mut(r)), g, m_row, v_row);
                            }
                        });
                    });
            });
    }

    /// The update of one run of values: `w` with its gradient `g` and moments `m`, `v` (empty
    /// when the optimizer keeps none).
    fn apply(&self, w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
        match self.kind {
            OptimizerKind::Sgd if self.momentum == 0.0 => sgd_chunk(self, w, g),
            OptimizerKind::Sgd => sgd_momentum_chunk(self, w, g, m),
            OptimizerKind::Adam => adam_chunk(self, w, g, m, v),
        }
    }
}

/// Row `r` of a moment's block, or an empty slice when the optimizer keeps no such moment.
fn optional_row<'s>(mat: &'s mut Option<faer::MatMut<'_, f32>>, r: usize) -> &'s mut [f32] {
    match mat {
        Some(mat) => contiguous_row(mat.as_mut().row_mut(r)),
        None => &mut [],
    }
}

/// A row of a row-major matrix view as a slice.
fn contiguous_row<'a>(row: faer::RowMut<'a, f32>) -> &'a mut [f32] {
    row.try_as_row_major_mut()
        .expect("rows of a row-major matrix are contiguous")
        .as_slice_mut()
}

/// The `count` blocks of `step` columns of the `rows × cols` row-major matrix in `data`, or
/// `count` times `None` when `data` is empty (a moment the optimizer does not keep).
fn column_blocks(
    data: &mut [f32],
    rows: usize,
    cols: usize,
    step: usize,
    count: usize,
) -> impl IndexedParallelIterator<Item = Option<faer::MatMut<'_, f32>>> {
    if data.is_empty() {
        rayon::iter::Either::Right((0..count).into_par_iter().map(|_| None))
    } else {
        rayon::iter::Either::Left(
            faer::MatMut::from_row_major_slice_mut(data, rows, cols)
                .par_col_chunks_mut(step)
                .map(Some),
        )
    }
}

/// `count` chunks of `data`, or `count` empty slices when `data` is empty (a moment the
/// optimizer does not keep), so that it can be zipped with the value's chunks.
fn chunks_or_empty(
    data: &mut [f32],
    chunk: usize,
    count: usize,
) -> impl IndexedParallelIterator<Item = &mut [f32]> {
    if data.is_empty() {
        rayon::iter::Either::Right((0..count).into_par_iter().map(|_| <&mut [f32]>::default()))
    } else {
        rayon::iter::Either::Left(data.par_chunks_mut(chunk))
    }
}

/// Runs `f` on a scratch buffer of `len` values owned by the calling thread (its contents are
/// whatever the thread left there: `f` must overwrite what it reads).
fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    SCRATCH.with(|cell| {
        let mut buf = cell.borrow_mut();
        if buf.len() < len {
            buf.resize(len, 0.0);
        }
        f(&mut buf[..len])
    })
}

// The update kernels are compiled for several instruction sets and picked at run time
// (`simd_kernel!`): the baseline x86-64 build would run them with 4-wide SSE, and Adam's square
// root and division are the slowest operations of a training step per value. Every operation is
// an IEEE add, multiply, divide or square root (Rust never contracts to FMA), so all versions
// give bit-identical results.

simd_kernel! {
    fn sgd_chunk(s: &StepScalars, w: &mut [f32], g: &[f32]) {
        for (w, &g) in w.iter_mut().zip(g) {
            let g = g + s.weight_decay * *w;
            *w -= s.lr * g;
        }
    }
}

simd_kernel! {
    fn sgd_momentum_chunk(s: &StepScalars, w: &mut [f32], g: &[f32], buf: &mut [f32]) {
        for ((w, &g), b) in w.iter_mut().zip(g).zip(buf) {
            let g = g + s.weight_decay * *w;
            *b = if s.first { g } else { s.momentum * *b + g };
            let d = if s.nesterov { g + s.momentum * *b } else { *b };
            *w -= s.lr * d;
        }
    }
}

simd_kernel! {
    fn adam_chunk(s: &StepScalars, w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
        for (((w, &g), m), v) in w.iter_mut().zip(g).zip(m).zip(v) {
            let g = g + s.weight_decay * *w;
            *m = s.beta1 * *m + (1.0 - s.beta1) * g;
            *v = s.beta2 * *v + (1.0 - s.beta2) * g * g;
            *w -= s.adam_step * *m / (v.sqrt() * s.adam_v_scale + s.eps);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(spec: &OptimizerSpec) -> Param {
        let mut p = Param::new(vec![1.0, -2.0], spec);
        p.grad = vec![0.5, 0.25];
        p
    }

    #[test]
    fn sgd_plain_and_weight_decay() {
        let spec = OptimizerSpec {
            kind: OptimizerKind::Sgd,
            lr: 0.1,
            weight_decay: 0.01,
            schedule: Schedule::Constant,
            ..OptimizerSpec::default()
        };
        let mut p = param(&spec);
        StepScalars::new(&spec, 0, 10).update(&mut p);
        // w − lr·(g + wd·w)
        assert!((p.value[0] - (1.0 - 0.1 * (0.5 + 0.01))).abs() < 1e-7);
        assert!((p.value[1] - (-2.0 - 0.1 * (0.25 - 0.02))).abs() < 1e-7);
    }

    #[test]
    fn sgd_momentum_and_nesterov() {
        for nesterov in [false, true] {
            let spec = OptimizerSpec {
                kind: OptimizerKind::Sgd,
                lr: 0.1,
                momentum: 0.9,
                nesterov,
                schedule: Schedule::Constant,
                ..OptimizerSpec::default()
            };
            let mut p = param(&spec);
            StepScalars::new(&spec, 0, 10).update(&mut p);
            // buf = g = 0.5; step = g (+ 0.9·buf if nesterov)
            let d1 = if nesterov { 0.5 + 0.9 * 0.5 } else { 0.5 };
            let w1 = 1.0 - 0.1 * d1;
            assert!((p.value[0] - w1).abs() < 1e-7);
            p.grad = vec![1.0, 0.0];
            StepScalars::new(&spec, 1, 10).update(&mut p);
            let buf = 0.9 * 0.5 + 1.0;
            let d2 = if nesterov { 1.0 + 0.9 * buf } else { buf };
            assert!(
                (p.value[0] - (w1 - 0.1 * d2)).abs() < 1e-6,
                "nesterov {nesterov}"
            );
        }
    }

    #[test]
    fn adam_two_steps_by_hand() {
        let spec = OptimizerSpec {
            kind: OptimizerKind::Adam,
            lr: 0.01,
            schedule: Schedule::Constant,
            ..OptimizerSpec::default()
        };
        let mut p = param(&spec);
        StepScalars::new(&spec, 0, 10).update(&mut p);
        // First Adam step moves each weight by lr·g/(|g| + eps') ≈ lr·sign(g).
        let (b1, b2, eps, lr) = (0.9f64, 0.999f64, 1e-8f64, 0.01f64);
        let mut w = 1.0f64;
        let (mut m, mut v) = (0.0f64, 0.0f64);
        for (t, g) in [(1, 0.5f64), (2, -0.3)] {
            m = b1 * m + (1.0 - b1) * g;
            v = b2 * v + (1.0 - b2) * g * g;
            let mh = m / (1.0 - b1.powi(t));
            let vh = v / (1.0 - b2.powi(t));
            w -= lr * mh / (vh.sqrt() + eps);
            if t == 1 {
                assert!((p.value[0] as f64 - w).abs() < 1e-6);
                p.grad = vec![-0.3, 0.0];
                StepScalars::new(&spec, 1, 10).update(&mut p);
            }
        }
        assert!(
            (p.value[0] as f64 - w).abs() < 1e-6,
            "{} vs {w}",
            p.value[0]
        );
    }

    /// The fused pass (row bands and column blocks alike) gives exactly what the plain update
    /// gives with the whole gradient, for every optimizer.
    #[test]
    fn fused_tiles_update_exactly_as_the_whole_gradient() {
        let specs = [
            OptimizerSpec::default(),
            OptimizerSpec {
                kind: OptimizerKind::Sgd,
                momentum: 0.9,
                weight_decay: 1e-3,
                ..OptimizerSpec::default()
            },
            OptimizerSpec {
                kind: OptimizerKind::Sgd,
                ..OptimizerSpec::default()
            },
        ];
        // Tall (row bands, last one short), wide (column blocks, last one narrow) and both.
        for (rows, cols) in [(70_001, 3), (5, 40_000), (300, 1000)] {
            let n = rows * cols;
            let grad: Vec<f32> = (0..n)
                .map(|i| ((i * 7919) % 1000) as f32 * 1e-3 - 0.5)
                .collect();
            for spec in &specs {
                let value: Vec<f32> = (0..n).map(|i| (i % 97) as f32 * 0.01).collect();
                let mut whole = Param::new(value.clone(), spec);
                let mut fused = Param::new(value, spec);
                for step in 0..2 {
                    let s = StepScalars::new(spec, step, 10);
                    whole.grad_mut().copy_from_slice(&grad);
                    s.update(&mut whole);
                    s.update_fused(&mut fused, rows, cols, |b, g| {
                        for (r, g) in g.chunks_exact_mut(b.cols).enumerate() {
                            let start = (b.row0 + r) * cols + b.col0;
                            g.copy_from_slice(&grad[start..start + b.cols]);
                        }
                    });
                }
                assert!(
                    fused.grad.is_empty(),
                    "the fused pass keeps no whole gradient"
                );
                assert_eq!(whole.value, fused.value, "{rows} x {cols}, {spec:?}");
                assert_eq!(whole.m1, fused.m1);
                assert_eq!(whole.m2, fused.m2);
            }
        }
    }

    #[test]
    fn schedules() {
        let mut spec = OptimizerSpec {
            lr: 1.0,
            schedule: Schedule::Constant,
            ..OptimizerSpec::default()
        };
        assert_eq!(learning_rate(&spec, 7, 10), 1.0);
        spec.schedule = Schedule::Cosine;
        assert_eq!(learning_rate(&spec, 0, 10), 1.0);
        let want = 0.5 * (1.0 + (std::f64::consts::PI * 9.0 / 10.0).cos());
        assert!((learning_rate(&spec, 9, 10) - want).abs() < 1e-12);
        assert_eq!(learning_rate(&spec, 25, 10), learning_rate(&spec, 9, 10));
        spec.warmup_fraction = 0.2;
        assert!((learning_rate(&spec, 0, 10) - 0.5).abs() < 1e-12);
        assert!((learning_rate(&spec, 1, 10) - 1.0).abs() < 1e-12);
        assert!((learning_rate(&spec, 2, 10) - 1.0).abs() < 1e-12);
    }
}
