//! The structured medium: a random complex transmission matrix applied in O(n log n).
//! See [`StructuredMedium`].

use num_complex::Complex32;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use speckle_hal::{Error, ErrorKind, PackedFrames};

use super::{FieldSink, Medium};
use crate::rng::{self, Purpose};

/// Smallest padded width. Narrow inputs (10 error classes, say) are padded to this width so that
/// each output mixes enough random phases to be Gaussian.
pub const MIN_PAD: usize = 256;

/// Largest padded width accepted (2^26 features): beyond it the `f32` transform loses accuracy.
pub const MAX_PAD: usize = 1 << 26;

/// Elements per cache chunk of the Walsh–Hadamard transform (256 KiB of `f32`: fits in L2).
const WHT_CHUNK: usize = 1 << 16;

/// A point uniform on the unit circle, by rejection from the square (no trigonometry, so the
/// value is bit-identical on every platform: only IEEE-exact operations are used).
fn unit_phase(rng: &mut ChaCha8Rng) -> Complex32 {
    loop {
        let a: f64 = rng.random::<f64>() * 2.0 - 1.0;
        let b: f64 = rng.random::<f64>() * 2.0 - 1.0;
        let r2 = a * a + b * b;
        if r2 > 1e-12 && r2 <= 1.0 {
            let r = r2.sqrt();
            return Complex32::new((a / r) as f32, (b / r) as f32);
        }
    }
}

/// One standard Gaussian by the polar Box–Muller method (IEEE-exact apart from `ln`, which is
/// only used in drift steps).
fn standard_normal(rng: &mut ChaCha8Rng) -> f64 {
    loop {
        let a: f64 = rng.random::<f64>() * 2.0 - 1.0;
        let b: f64 = rng.random::<f64>() * 2.0 - 1.0;
        let r2 = a * a + b * b;
        if r2 > 1e-300 && r2 < 1.0 {
            return a * (-2.0 * libm::log(r2) / r2).sqrt();
        }
    }
}

/// `(re, im) ← (re, im) · (d_re, d_im) · scale`, elementwise.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512cd+avx512dq+avx512vl",
    "x86_64+avx2+fma",
    "x86_64+sse4.2",
    "aarch64+neon"
))]
fn multiply_diagonal(d_re: &[f32], d_im: &[f32], scale: f32, re: &mut [f32], im: &mut [f32]) {
    for (((a, b), &c), &s) in re.iter_mut().zip(im.iter_mut()).zip(d_re).zip(d_im) {
        let (c, s) = (c * scale, s * scale);
        let (x, y) = (*a, *b);
        *a = x * c - y * s;
        *b = x * s + y * c;
    }
}

/// One random phase diagonal, split into real and imaginary parts.
#[derive(Clone)]
struct Diagonal {
    re: Vec<f32>,
    im: Vec<f32>,
}

impl Diagonal {
    fn draw(key: &[u8; 32], stream: u64, n: usize) -> Self {
        let mut rng = rng::stream_rng(key, stream);
        let (re, im) = (0..n)
            .map(|_| {
                let c = unit_phase(&mut rng);
                (c.re, c.im)
            })
            .unzip();
        Self { re, im }
    }

    #[cfg(test)]
    fn get(&self, i: usize) -> Complex32 {
        Complex32::new(self.re[i], self.im[i])
    }

    /// `(re, im) ← (re, im) · d · scale`, elementwise.
    fn multiply(&self, scale: f32, re: &mut [f32], im: &mut [f32]) {
        multiply_diagonal(&self.re, &self.im, scale, re, im);
    }
}

/// The three random phase diagonals of one block.
#[derive(Clone)]
struct Block {
    d1: Diagonal,
    d2: Diagonal,
    d3: Diagonal,
}

/// A structured random complex medium of `n_in` features and `n_out` outputs: a random complex
/// transmission matrix applied in O(n log n).
///
/// A dense `m × n` complex matrix of a full-size device (n = 2^20 features, m = 2^21 pixels)
/// would take 16 TiB. This model replaces it with a product of fast transforms and random
/// diagonals, in the spirit of Fastfood and structured orthogonal random features (SORF):
///
/// ```text
/// R = [ R_0 ; R_1 ; … ]  (blocks stacked along the outputs, the last one cut to m rows)
/// R_b = s · h · D3_b · h · D2_b · h · D1_b     (restricted to the first n columns)
/// ```
///
/// * `N` = `n_pad` is the smallest power of two ≥ max(n, 256); the input is zero-padded
///   to N. `h = H / sqrt(N)` is the orthonormal Walsh–Hadamard transform (an in-house,
///   cache-blocked, addition-only butterfly network).
/// * `D1_b, D2_b, D3_b` are diagonals of independent phases uniform on the unit circle, one set
///   per block, so every block is an independent random unitary-like matrix.
/// * `s = sqrt(N · v)` where `v` is the entry variance: every entry has `E|R_ij|² = v` (each
///   column of a full block has squared norm exactly `N · v`, since `h D3 h D2 h D1` is unitary).
///   Pass the dense medium's per-feature variance (macro-pixel size k times the per-mirror
///   variance) so both media give outputs of the same scale.
///
/// Statistics (checked by the tests of this module): for a fixed input, the output fields are
/// circular complex Gaussian to the resolution of a KS test (three rounds of mixing with random
/// phases make each output a sum of N random-phase terms), raw intensities are exponential,
/// linear (interferometric) outputs are Gaussian with the same variance as with the dense medium,
/// and distinct rows are nearly orthogonal: rows of one block are exactly orthogonal over the
/// padded width and rows of distinct blocks are independent, so the normalized inner product
/// `|<R_j, R_k>| / (‖R_j‖ ‖R_k‖)` of two distinct rows has mean square ≈ 1/n, like iid rows.
///
/// Differences from the dense medium, by design:
/// * An entry depends on (seed, N, block), not only on (seed, j, i): a larger device does *not*
///   contain a smaller one.
/// * Energy is conserved within a block: `Σ_j |y_j|²` over a full block equals `N · v · ‖x‖²`
///   exactly, whereas it fluctuates for an iid matrix (a real scattering medium is lossy but also
///   close to energy-conserving).
/// * Drift is modelled as a random walk of the diagonal phases (see [`StructuredMedium::drift_to`]),
///   which keeps the entry variance and gives the same correlation `sqrt(1 − ρ)` between the
///   matrices before and after one drift step as the dense rule `R ← sqrt(1−ρ)·R + sqrt(ρ)·G`.
///
/// Memory: `3 · N · blocks` phases of 8 bytes, i.e. 24 bytes per padded output row: 48 MiB for
/// 2^20 → 2^21 ([`StructuredMedium::bytes_held`]). A call to `apply_*` holds no more than one
/// N-element scratch vector per worker thread on top (only for a last, partial block).
///
/// Determinism: every phase comes from a ChaCha8 stream derived from (seed, purpose, block);
/// every output element is computed by one fixed sequence of floating-point operations whatever
/// the batch size or thread count (rayon only decides *who* computes a (frame, block) pair).
#[derive(Clone)]
pub struct StructuredMedium {
    n_in: usize,
    n_out: usize,
    n_pad: usize,
    seed: u64,
    entry_variance: f64,
    drift_rho: f64,
    drift_step: u64,
    /// Working-memory budget of one `transmit` call (bytes): bounds the sub-batch.
    budget_bytes: usize,
    blocks: Vec<Block>,
    /// Field scratch of `transmit`: `batch × group rows`, re and im.
    scratch_re: Vec<f32>,
    scratch_im: Vec<f32>,
}

impl std::fmt::Debug for StructuredMedium {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StructuredMedium")
            .field("n_in", &self.n_in)
            .field("n_out", &self.n_out)
            .field("n_pad", &self.n_pad)
            .field("blocks", &self.blocks.len())
            .field("seed", &self.seed)
            .field("entry_variance", &self.entry_variance)
            .field("drift_step", &self.drift_step)
            .finish()
    }
}

fn invalid(message: String) -> Error {
    Error::new(ErrorKind::InvalidInput, message)
}

fn draw_blocks(seed: u64, n_pad: usize, n_blocks: usize) -> Vec<Block> {
    (0..n_blocks)
        .into_par_iter()
        .map(|b| {
            let key = rng::derive_key(seed, Purpose::Structured, b as u64);
            Block {
                d1: Diagonal::draw(&key, 1, n_pad),
                d2: Diagonal::draw(&key, 2, n_pad),
                d3: Diagonal::draw(&key, 3, n_pad),
            }
        })
        .collect()
}

/// Refuses, before drawing them, diagonals larger than the memory limit.
fn check_memory(n_in: usize, n_out: usize, n_pad: usize, n_blocks: usize) -> Result<(), Error> {
    speckle_hal::memory::Request::new(
        format!("structured medium {n_in} → {n_out}"),
        format!("its {n_blocks} blocks of three {n_pad}-entry complex diagonals"),
    )
    .times(n_blocks)
    .times(n_pad)
    .of(24)
    .check()
}

impl StructuredMedium {
    /// A medium of `n_in` features and `n_out` outputs with entry variance `E|R_ij|² = 1`.
    /// Zero dimensions and widths beyond 2^26 are errors.
    pub fn new(n_in: usize, n_out: usize, seed: u64) -> Result<Self, Error> {
        if n_in == 0 || n_out == 0 {
            return Err(invalid(format!(
                "structured medium needs at least one input and one output (got {n_in} → {n_out})"
            )));
        }
        if n_in > MAX_PAD {
            return Err(invalid(format!(
                "structured medium supports at most {MAX_PAD} inputs (got {n_in})"
            )));
        }
        let n_pad = n_in.max(MIN_PAD).next_power_of_two();
        let n_blocks = n_out.div_ceil(n_pad);
        check_memory(n_in, n_out, n_pad, n_blocks)?;
        Ok(Self {
            n_in,
            n_out,
            n_pad,
            seed,
            entry_variance: 1.0,
            drift_rho: 0.0,
            drift_step: 0,
            budget_bytes: 256 << 20,
            blocks: draw_blocks(seed, n_pad, n_blocks),
            scratch_re: Vec::new(),
            scratch_im: Vec::new(),
        })
    }

    /// Sets the entry variance `E|R_ij|²` (finite and > 0).
    pub fn with_entry_variance(mut self, variance: f64) -> Result<Self, Error> {
        if !(variance.is_finite() && variance > 0.0) {
            return Err(invalid(format!(
                "structured medium entry variance must be finite and > 0 (got {variance})"
            )));
        }
        self.entry_variance = variance;
        Ok(self)
    }

    /// Enables drift with decorrelation `rho` per step (0 ≤ rho < 1); see [`Self::drift_to`].
    pub fn with_drift(mut self, rho: f64) -> Result<Self, Error> {
        if !(rho.is_finite() && (0.0..1.0).contains(&rho)) {
            return Err(invalid(format!(
                "drift.rate = {rho}: the structured medium needs a rate in [0, 1)"
            )));
        }
        self.drift_rho = rho;
        Ok(self)
    }

    /// Sets the working-memory budget of one `transmit` call, in MiB (≥ 1): inputs and fields
    /// of a sub-batch stay within it (at least one frame is always processed).
    pub fn with_budget_mib(mut self, mib: u64) -> Self {
        self.budget_bytes = usize::try_from(mib.max(1))
            .unwrap_or(usize::MAX >> 20)
            .saturating_mul(1 << 20);
        self
    }

    /// Features (columns).
    pub fn input_dim(&self) -> usize {
        self.n_in
    }

    /// Outputs (rows).
    pub fn output_dim(&self) -> usize {
        self.n_out
    }

    /// Padded transform width N (a power of two).
    pub fn padded_dim(&self) -> usize {
        self.n_pad
    }

    /// Independent blocks stacked along the outputs, `ceil(n_out / N)`.
    pub fn block_count(&self) -> usize {
        self.blocks.len()
    }

    /// Bytes of heap memory the medium holds for its matrix (the diagonals), excluding the
    /// transient field scratch.
    pub fn bytes_held(&self) -> usize {
        Self::bytes_for(self.n_in, self.n_out)
    }

    /// Bytes a medium of these dimensions would hold for its matrix, without building it:
    /// `24 · N · ceil(n_out / N)` (three complex `f32` diagonals per block).
    pub fn bytes_for(n_in: usize, n_out: usize) -> usize {
        let n_pad = n_in.max(MIN_PAD).next_power_of_two();
        3 * 2 * std::mem::size_of::<f32>() * n_pad * n_out.div_ceil(n_pad)
    }

    /// Frames one `transmit` call should take so that its inputs (`4·n_in` bytes per frame) and
    /// field scratch (`8·N` bytes per frame) fit the budget; at least 1.
    pub fn max_sub_batch(&self) -> usize {
        (self.budget_bytes / (4 * self.n_in + 8 * self.n_pad)).max(1)
    }

    /// Complex fields `y = R·x` of bit-packed binary frames, `frames × n_out` real parts into
    /// `out_re` and imaginary parts into `out_im`.
    pub fn apply_packed(
        &self,
        frames: &PackedFrames<'_>,
        out_re: &mut [f32],
        out_im: &mut [f32],
    ) -> Result<(), Error> {
        frames.expect_width(self.n_in, "medium")?;
        self.check_out(frames.frames(), out_re.len(), out_im.len())?;
        let n = self.n_in;
        self.apply_with(
            frames.frames(),
            self.n_out,
            out_re,
            out_im,
            0,
            |f, d1, re, im| load_bits(frames.frame(f), n, d1, re, im),
        );
        Ok(())
    }

    /// Complex fields `y = R·x` of real inputs (`batch × n_in`, row-major, finite),
    /// `batch × n_out` values into `out_re` and `out_im`.
    pub fn apply_real(
        &self,
        input: &[f32],
        batch: usize,
        out_re: &mut [f32],
        out_im: &mut [f32],
    ) -> Result<(), Error> {
        if batch.checked_mul(self.n_in) != Some(input.len()) {
            return Err(invalid(format!(
                "medium input has {} values, expected batch {batch} × {} features",
                input.len(),
                self.n_in
            )));
        }
        if let Some(pos) = input.iter().position(|v| !v.is_finite()) {
            return Err(invalid(format!(
                "medium input is not finite at index {pos}"
            )));
        }
        self.check_out(batch, out_re.len(), out_im.len())?;
        self.apply_rows(input, batch, 0, self.n_out, out_re, out_im);
        Ok(())
    }

    /// Fields of outputs `j0 .. j0 + rows` (`j0` a multiple of N) of real inputs into
    /// `batch × rows` buffers.
    fn apply_rows(
        &self,
        input: &[f32],
        batch: usize,
        j0: usize,
        rows: usize,
        out_re: &mut [f32],
        out_im: &mut [f32],
    ) {
        let n = self.n_in;
        self.apply_with(
            batch,
            rows,
            out_re,
            out_im,
            j0 / self.n_pad,
            |f, d1, re, im| {
                let x = &input[f * n..(f + 1) * n];
                for (i, &xi) in x.iter().enumerate() {
                    re[i] = d1.re[i] * xi;
                    im[i] = d1.im[i] * xi;
                }
            },
        );
    }

    /// Row `j` of R (its first `n_in` entries), computed with the transposed transform in
    /// O(N log N): `R^T e_j = s · D1 h D2 h D3 h e_j`.
    pub fn row(&self, j: usize) -> Result<Vec<Complex32>, Error> {
        if j >= self.n_out {
            return Err(invalid(format!(
                "row {j} out of range for {} outputs",
                self.n_out
            )));
        }
        let (c2, c3) = self.scales();
        let block = &self.blocks[j / self.n_pad];
        let mut re = vec![0.0f32; self.n_pad];
        let mut im = vec![0.0f32; self.n_pad];
        re[j % self.n_pad] = 1.0;
        wht(&mut re);
        block.d3.multiply(c3, &mut re, &mut im);
        wht(&mut re);
        wht(&mut im);
        block.d2.multiply(c2, &mut re, &mut im);
        wht(&mut re);
        wht(&mut im);
        block.d1.multiply(1.0, &mut re, &mut im);
        Ok(re
            .iter()
            .zip(&im)
            .take(self.n_in)
            .map(|(&a, &b)| Complex32::new(a, b))
            .collect())
    }

    /// Applies drift up to step `step` (the medium's state after `step` drift epochs), moving
    /// forward incrementally or rebuilding from the seed when going back. Each step multiplies
    /// every diagonal phase by `exp(iδ)`, δ ~ N(0, σ²) with `σ² = −ln(1 − ρ) / 3`, so that the
    /// correlation `E[R'_ij conj(R_ij)] / E|R_ij|²` between successive matrices is
    /// `exp(−3σ²/2) = sqrt(1 − ρ)`, as for the dense rule. The per-step phases come from
    /// ChaCha streams keyed by (seed, step, block), so the state depends only on `step`.
    pub fn drift_to(&mut self, step: u64) -> Result<(), Error> {
        if step == self.drift_step || self.drift_rho == 0.0 {
            self.drift_step = step;
            return Ok(());
        }
        if step < self.drift_step {
            self.blocks = draw_blocks(self.seed, self.n_pad, self.blocks.len());
            self.drift_step = 0;
        }
        let sigma = (-libm::log(1.0 - self.drift_rho) / 3.0).sqrt();
        for s in self.drift_step..step {
            let key = rng::derive_key(self.seed, Purpose::StructuredDrift, s);
            self.blocks
                .par_iter_mut()
                .enumerate()
                .for_each(|(b, block)| {
                    let mut rng = rng::stream_rng(&key, b as u64);
                    for d in [&mut block.d1, &mut block.d2, &mut block.d3] {
                        for (re, im) in d.re.iter_mut().zip(d.im.iter_mut()) {
                            let delta = sigma * standard_normal(&mut rng);
                            let rot =
                                Complex32::new(libm::cos(delta) as f32, libm::sin(delta) as f32);
                            let w = Complex32::new(*re, *im) * rot;
                            // Renormalize so rounding never changes the modulus over many steps.
                            let w = w / w.norm();
                            (*re, *im) = (w.re, w.im);
                        }
                    }
                });
        }
        self.drift_step = step;
        Ok(())
    }

    fn check_out(&self, batch: usize, re: usize, im: usize) -> Result<(), Error> {
        let want = batch.checked_mul(self.n_out);
        if want != Some(re) || want != Some(im) {
            return Err(invalid(format!(
                "field buffers have {re} and {im} values, expected batch {batch} × {} outputs",
                self.n_out
            )));
        }
        Ok(())
    }

    /// Scales folded into the second and third diagonals: `1/sqrt(N)` and `sqrt(v)/sqrt(N)`.
    /// With the three unnormalized transforms (`H = sqrt(N)·h`) this gives
    /// `s · h D3 h D2 h D1` with `s = sqrt(N·v)`.
    fn scales(&self) -> (f32, f32) {
        let n = self.n_pad as f64;
        (
            (1.0 / n.sqrt()) as f32,
            (self.entry_variance.sqrt() / n.sqrt()) as f32,
        )
    }

    /// The three mixing rounds of a block after `D1`: `(re, im) ← h·D3·h·D2·h·(re, im)`, the
    /// scales folded into `D2` and `D3`, in place.
    fn mix(&self, block: &Block, re: &mut [f32], im: &mut [f32]) {
        let (c2, c3) = self.scales();
        wht(re);
        wht(im);
        block.d2.multiply(c2, re, im);
        wht(re);
        wht(im);
        block.d3.multiply(c3, re, im);
        wht(re);
        wht(im);
    }

    /// Intensities `scale·|R·x|²` of the frames into `out` (`frames × n_out`), `load(frame,
    /// d1, re, im)` writing `D1·x` of a frame into `re[..n_in]`, `im[..n_in]`: each (frame,
    /// block) is transformed in a per-thread buffer and squared into `out` while its end is
    /// still in cache (no field buffer for the whole batch).
    fn intensities_with<F>(&self, scale: f32, out: &mut [f32], load: F)
    where
        F: Fn(usize, &Diagonal, &mut [f32], &mut [f32]) + Sync,
    {
        let (n, n_pad) = (self.n_in, self.n_pad);
        let min_len = (65_536 / n_pad).max(1);
        out.par_chunks_mut(self.n_out)
            .enumerate()
            .for_each(|(f, frame_out)| {
                frame_out
                    .par_chunks_mut(n_pad)
                    .enumerate()
                    .with_min_len(min_len)
                    .for_each(|(b, out)| {
                        let block = &self.blocks[b];
                        FIELD_SCRATCH.with_borrow_mut(|scratch| {
                            scratch.resize(2 * n_pad, 0.0);
                            let (re, im) = scratch.split_at_mut(n_pad);
                            load(f, &block.d1, re, im);
                            re[n..].fill(0.0);
                            im[n..].fill(0.0);
                            self.mix(block, re, im);
                            intensities_into(out, re, im, scale);
                        });
                    });
            });
    }

    /// [`Self::intensities_with`] of frames of 0/1 values (`batch × n_in`).
    fn intensities_of(&self, input: &[f32], scale: f32, out: &mut [f32]) {
        let n = self.n_in;
        self.intensities_with(scale, out, |f, d1, re, im| {
            let x = &input[f * n..(f + 1) * n];
            for (((r, m), (&d_re, &d_im)), &xi) in re
                .iter_mut()
                .zip(im.iter_mut())
                .zip(d1.re.iter().zip(&d1.im))
                .zip(x)
            {
                *r = d_re * xi;
                *m = d_im * xi;
            }
        });
    }

    /// Runs the transform for every (frame, block) pair of the outputs
    /// `first_block · N .. first_block · N + rows`, writing `batch × rows` fields.
    /// `load(frame, d1, re, im)` writes `D1·x` into `re[..n_in]`, `im[..n_in]`; the padding
    /// is zeroed here.
    fn apply_with<F>(
        &self,
        batch: usize,
        rows: usize,
        out_re: &mut [f32],
        out_im: &mut [f32],
        first_block: usize,
        load: F,
    ) where
        F: Fn(usize, &Diagonal, &mut [f32], &mut [f32]) + Sync,
    {
        if batch == 0 || rows == 0 {
            return;
        }
        let n_pad = self.n_pad;
        let transform = |f: usize, block: &Block, re: &mut [f32], im: &mut [f32]| {
            load(f, &block.d1, re, im);
            re[self.n_in..].fill(0.0);
            im[self.n_in..].fill(0.0);
            self.mix(block, re, im);
        };
        let run_block = |f: usize, b: usize, re: &mut [f32], im: &mut [f32]| {
            let block = &self.blocks[first_block + b];
            if re.len() == n_pad {
                transform(f, block, re, im);
            } else {
                let mut buf_re = vec![0.0f32; n_pad];
                let mut buf_im = vec![0.0f32; n_pad];
                transform(f, block, &mut buf_re, &mut buf_im);
                re.copy_from_slice(&buf_re[..re.len()]);
                im.copy_from_slice(&buf_im[..im.len()]);
            }
        };
        // Small blocks are grouped so a rayon task does at least ~64k elements of work.
        let min_len = (65_536 / n_pad).max(1);
        out_re
            .par_chunks_mut(rows)
            .zip(out_im.par_chunks_mut(rows))
            .enumerate()
            .for_each(|(f, (re, im))| {
                re.par_chunks_mut(n_pad)
                    .zip(im.par_chunks_mut(n_pad))
                    .enumerate()
                    .with_min_len(min_len)
                    .for_each(|(b, (re, im))| run_block(f, b, re, im));
            });
    }
}

impl Medium for StructuredMedium {
    fn transmit(&mut self, x: &[f32], batch: usize, sink: &mut FieldSink<'_>) -> Result<(), Error> {
        debug_assert_eq!(x.len(), batch * self.n_in);
        if batch == 0 {
            return Ok(());
        }
        let n_pad = self.n_pad;
        // Rows per sink call: enough (frame, block) pairs to keep every thread busy and enough
        // elements to amortize the call, within the memory budget; whole blocks.
        let threads = rayon::current_num_threads().max(1);
        let blocks_for_threads = threads.div_ceil(batch);
        let blocks_for_size = 65_536usize.div_ceil(n_pad);
        let blocks_in_budget = (self.budget_bytes / (8 * n_pad * batch)).max(1);
        let group = blocks_for_threads
            .max(blocks_for_size)
            .min(blocks_in_budget)
            .min(self.blocks.len());
        let group_rows = group * n_pad;
        let mut re = std::mem::take(&mut self.scratch_re);
        let mut im = std::mem::take(&mut self.scratch_im);
        let mut j0 = 0;
        while j0 < self.n_out {
            let rows = group_rows.min(self.n_out - j0);
            re.resize(batch * rows, 0.0);
            im.resize(batch * rows, 0.0);
            self.apply_rows(x, batch, j0, rows, &mut re, &mut im);
            sink(j0, rows, &re, &im);
            j0 += rows;
        }
        self.scratch_re = re;
        self.scratch_im = im;
        Ok(())
    }

    fn intensities(
        &mut self,
        x: &[f32],
        batch: usize,
        scale: f32,
        out: &mut [f32],
    ) -> Result<(), Error> {
        debug_assert_eq!(x.len(), batch * self.n_in);
        debug_assert_eq!(out.len(), batch * self.n_out);
        self.intensities_of(x, scale, out);
        Ok(())
    }

    fn intensities_packed(
        &mut self,
        frames: &PackedFrames<'_>,
        scale: f32,
        out: &mut [f32],
    ) -> Result<bool, Error> {
        frames.expect_width(self.n_in, "medium")?;
        debug_assert_eq!(out.len(), frames.frames() * self.n_out);
        let n = self.n_in;
        self.intensities_with(scale, out, |f, d1, re, im| {
            load_bit_products(frames.frame(f), n, d1, re, im)
        });
        Ok(true)
    }

    fn set_epoch(&mut self, epoch: u64) -> Result<(), Error> {
        self.drift_to(epoch)
    }

    fn raw_entry(&self, j: usize, i: usize) -> (f32, f32) {
        assert!(j < self.n_out && i < self.n_in, "entry index out of range");
        let row = self.row(j).expect("row index checked above");
        (row[i].re, row[i].im)
    }

    fn raw_entry_variance(&self) -> f64 {
        self.entry_variance
    }

    fn matrix_bytes(&self) -> usize {
        self.bytes_held()
    }

    fn max_sub_batch(&self) -> usize {
        StructuredMedium::max_sub_batch(self)
    }
}

thread_local! {
    /// The fields of the block a thread transforms in [`StructuredMedium::intensities_of`].
    static FIELD_SCRATCH: std::cell::RefCell<Vec<f32>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// `D1·x` of a bit-packed frame of `n` features into `re[..n]`, `im[..n]` as products by
/// the 0/1 values (the bits of [`StructuredMedium::intensities_of`] on the unpacked frame,
/// signed zeros included), eight features a byte.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512cd+avx512dq+avx512vl",
    "x86_64+avx2+fma",
    "x86_64+sse4.2",
    "aarch64+neon"
))]
fn load_bit_products(bytes: &[u8], n: usize, d1: &Diagonal, re: &mut [f32], im: &mut [f32]) {
    let whole = n / 8 * 8;
    for ((((r, m), d_re), d_im), &byte) in re[..whole]
        .chunks_exact_mut(8)
        .zip(im[..whole].chunks_exact_mut(8))
        .zip(d1.re[..whole].chunks_exact(8))
        .zip(d1.im[..whole].chunks_exact(8))
        .zip(bytes)
    {
        for k in 0..8 {
            let xi = f32::from(byte >> k & 1);
            r[k] = d_re[k] * xi;
            m[k] = d_im[k] * xi;
        }
    }
    for i in whole..n {
        let xi = f32::from(bytes[i >> 3] >> (i & 7) & 1);
        re[i] = d1.re[i] * xi;
        im[i] = d1.im[i] * xi;
    }
}

/// `D1·x` of a bit-packed frame of `n` features into `re[..n]`, `im[..n]`, eight features a
/// byte.
fn load_bits(bytes: &[u8], n: usize, d1: &Diagonal, re: &mut [f32], im: &mut [f32]) {
    let whole = n / 8 * 8;
    for ((((r, m), d_re), d_im), &byte) in re[..whole]
        .chunks_exact_mut(8)
        .zip(im[..whole].chunks_exact_mut(8))
        .zip(d1.re[..whole].chunks_exact(8))
        .zip(d1.im[..whole].chunks_exact(8))
        .zip(bytes)
    {
        for k in 0..8 {
            let on = byte >> k & 1 == 1;
            r[k] = if on { d_re[k] } else { 0.0 };
            m[k] = if on { d_im[k] } else { 0.0 };
        }
    }
    for i in whole..n {
        let on = bytes[i >> 3] >> (i & 7) & 1 == 1;
        re[i] = if on { d1.re[i] } else { 0.0 };
        im[i] = if on { d1.im[i] } else { 0.0 };
    }
}

/// `out[i] = scale·(re[i]² + im[i]²)`, the first `out.len()` values.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512cd+avx512dq+avx512vl",
    "x86_64+avx2+fma",
    "x86_64+sse4.2",
    "aarch64+neon"
))]
fn intensities_into(out: &mut [f32], re: &[f32], im: &[f32], scale: f32) {
    for ((o, &a), &b) in out.iter_mut().zip(re).zip(im) {
        *o = (a * a + b * b) * scale;
    }
}

/// One radix-2 stage of the Walsh–Hadamard transform at half-width `h`.
#[inline(always)]
fn wht_stage(x: &mut [f32], h: usize) {
    for pair in x.chunks_exact_mut(2 * h) {
        let (a, b) = pair.split_at_mut(h);
        for (u, v) in a.iter_mut().zip(b.iter_mut()) {
            let (s, d) = (*u + *v, *u - *v);
            *u = s;
            *v = d;
        }
    }
}

/// Two radix-2 stages at half-widths `h` and `2h` fused into one radix-4 pass (one sweep over
/// memory instead of two).
#[inline(always)]
fn wht_stage4(x: &mut [f32], h: usize) {
    for quad in x.chunks_exact_mut(4 * h) {
        let (ab, cd) = quad.split_at_mut(2 * h);
        let (a, b) = ab.split_at_mut(h);
        let (c, d) = cd.split_at_mut(h);
        for (((p, q), r), s) in a
            .iter_mut()
            .zip(b.iter_mut())
            .zip(c.iter_mut())
            .zip(d.iter_mut())
        {
            let (s0, d0) = (*p + *q, *p - *q);
            let (s1, d1) = (*r + *s, *r - *s);
            *p = s0 + s1;
            *q = d0 + d1;
            *r = s0 - s1;
            *s = d0 - d1;
        }
    }
}

/// Three radix-2 stages at half-widths `h`, `2h` and `4h` fused into one radix-8 pass, in
/// stage order (the same arithmetic per element as three radix-2 passes).
#[inline(always)]
fn wht_stage8(x: &mut [f32], h: usize) {
    for group in x.chunks_exact_mut(8 * h) {
        let (lo, hi) = group.split_at_mut(4 * h);
        let (ab, cd) = lo.split_at_mut(2 * h);
        let (ef, gh) = hi.split_at_mut(2 * h);
        let (a, b) = ab.split_at_mut(h);
        let (c, d) = cd.split_at_mut(h);
        let (e, f) = ef.split_at_mut(h);
        let (g, k) = gh.split_at_mut(h);
        for i in 0..h {
            let v = [a[i], b[i], c[i], d[i], e[i], f[i], g[i], k[i]];
            // Stage h: pairs (0,1) (2,3) (4,5) (6,7).
            let v = [
                v[0] + v[1],
                v[0] - v[1],
                v[2] + v[3],
                v[2] - v[3],
                v[4] + v[5],
                v[4] - v[5],
                v[6] + v[7],
                v[6] - v[7],
            ];
            // Stage 2h: pairs (0,2) (1,3) (4,6) (5,7).
            let v = [
                v[0] + v[2],
                v[1] + v[3],
                v[0] - v[2],
                v[1] - v[3],
                v[4] + v[6],
                v[5] + v[7],
                v[4] - v[6],
                v[5] - v[7],
            ];
            // Stage 4h: pairs (0,4) (1,5) (2,6) (3,7).
            a[i] = v[0] + v[4];
            b[i] = v[1] + v[5];
            c[i] = v[2] + v[6];
            d[i] = v[3] + v[7];
            e[i] = v[0] - v[4];
            f[i] = v[1] - v[5];
            g[i] = v[2] - v[6];
            k[i] = v[3] - v[7];
        }
    }
}

/// Sign masks of the four stages of [`wht16`]: lane `k` of mask `s` is the `f32` sign bit where
/// `k & 2^s != 0` (the lanes that take a difference at half-width `2^s`), else zero.
const WHT16_SIGNS: [[u32; 16]; 4] = {
    let mut m = [[0u32; 16]; 4];
    let mut s = 0;
    while s < 4 {
        let mut k = 0;
        while k < 16 {
            if k & (1 << s) != 0 {
                m[s][k] = 0x8000_0000;
            }
            k += 1;
        }
        s += 1;
    }
    m
};

/// One radix-2 stage of half-width `h` (1, 2, 4 or 8) on a group of 16 elements, written as whole
/// lane-wise operations on the group: `v[k ^ h] + (±v[k])`, the sign flipped by `sign[k]` where
/// `k & h != 0`. Lane `k` (`k & h == 0`) gets `v[k + h] + v[k]`, the butterfly sum with its
/// (commutative) operands swapped; lane `k + h` gets `v[k] + (−v[k + h])`, which IEEE 754 rounds
/// exactly as the butterfly difference `v[k] − v[k + h]` (the same exact value, signed zeros
/// included; only the sign of a NaN may differ). So each stage is one lane permutation, one XOR
/// and one add on a vector of 16.
#[inline(always)]
fn wht16_stage(v: [f32; 16], h: usize, sign: &[u32; 16]) -> [f32; 16] {
    let mut r = [0.0f32; 16];
    for (k, r) in r.iter_mut().enumerate() {
        *r = v[k ^ h] + f32::from_bits(v[k].to_bits() ^ sign[k]);
    }
    r
}

/// The first four stages (half-widths 1, 2, 4, 8) on each group of 16 elements, in registers,
/// in stage order (the same values, bit for bit, as four radix-2 passes).
///
/// Each group is one vector (two with AVX2, four with SSE): the SLP vectorizer turns every
/// stage into a shuffle, an XOR and an add. Two opaque values keep that shape: the sign masks
/// (else LLVM folds the XORs back into subtractions and vectorizes the mix of adds and
/// subtractions badly), and the group reference (else the loop vectorizer interleaves 16 groups
/// through gathers and scatters). Neither affects the result.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512cd+avx512dq+avx512vl",
    "x86_64+avx2+fma",
    "x86_64+sse4.2",
    "aarch64+neon"
))]
fn wht16(x: &mut [f32]) {
    let signs = std::hint::black_box(WHT16_SIGNS);
    for g in x.chunks_exact_mut(16) {
        let g: &mut [f32; 16] = std::hint::black_box(g.try_into().expect("groups of 16"));
        let v = wht16_stage(*g, 1, &signs[0]);
        let v = wht16_stage(v, 2, &signs[1]);
        let v = wht16_stage(v, 4, &signs[2]);
        *g = wht16_stage(v, 8, &signs[3]);
    }
}

/// Runs stages of half-width `from, 2·from, …` below `len` (`from ≥ 16`, so that every
/// butterfly run is whole SIMD registers), three a sweep (radix 8) where possible, else two.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512cd+avx512dq+avx512vl",
    "x86_64+avx2+fma",
    "x86_64+sse4.2",
    "aarch64+neon"
))]
fn wht_stages(x: &mut [f32], from: usize, len: usize) {
    let mut h = from;
    while h < len {
        if 8 * h <= len {
            wht_stage8(x, h);
            h *= 8;
        } else if 4 * h <= len {
            wht_stage4(x, h);
            h *= 4;
        } else {
            wht_stage(x, h);
            h *= 2;
        }
    }
}

/// In-place unnormalized Walsh–Hadamard transform (`H·x`, `H·H = N·I`) of a power-of-two length
/// ≥ 16. Stages below [`WHT_CHUNK`] run chunk by chunk while the chunk sits in cache; the wide
/// stages then sweep the whole vector, up to three stages a sweep. The order of operations on
/// each element is fixed, so results are bit-reproducible.
fn wht(x: &mut [f32]) {
    let n = x.len();
    debug_assert!(n.is_power_of_two() && n >= 16);
    let chunk = WHT_CHUNK.min(n);
    for c in x.chunks_exact_mut(chunk) {
        wht16(c);
        wht_stages(c, 16, chunk);
    }
    wht_stages(x, chunk, n);
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use speckle_testkit::{ks_critical, ks_exponential, ks_normal, random_frames_with_density};

    fn zip_complex(re: &[f32], im: &[f32]) -> Vec<Complex32> {
        re.iter()
            .zip(im)
            .map(|(&a, &b)| Complex32::new(a, b))
            .collect()
    }

    fn fields(m: &StructuredMedium, packed: &[u8], frames: usize) -> Vec<Complex32> {
        let pf = PackedFrames::new(packed, frames, m.input_dim()).unwrap();
        let mut re = vec![0.0; frames * m.output_dim()];
        let mut im = vec![0.0; frames * m.output_dim()];
        m.apply_packed(&pf, &mut re, &mut im).unwrap();
        zip_complex(&re, &im)
    }

    fn fields_real(m: &StructuredMedium, x: &[f32], batch: usize) -> Vec<Complex32> {
        let mut re = vec![0.0; batch * m.output_dim()];
        let mut im = vec![0.0; batch * m.output_dim()];
        m.apply_real(x, batch, &mut re, &mut im).unwrap();
        zip_complex(&re, &im)
    }

    /// The first four stages as plain radix-2 butterflies, in stage order: the reference for
    /// [`wht16`].
    fn wht16_reference(x: &mut [f32]) {
        for g in x.chunks_exact_mut(16) {
            let mut v = [0.0f32; 16];
            v.copy_from_slice(g);
            let mut h = 1;
            while h < 16 {
                let mut i = 0;
                while i < 16 {
                    for k in i..i + h {
                        let (s, d) = (v[k] + v[k + h], v[k] - v[k + h]);
                        v[k] = s;
                        v[k + h] = d;
                    }
                    i += 2 * h;
                }
                h *= 2;
            }
            g.copy_from_slice(&v);
        }
    }

    /// Same bits as `wht16_reference`, or both NaN (IEEE leaves the sign of a NaN open).
    fn assert_same_bits(got: &[f32], want: &[f32], what: &str) {
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
                "{what}, element {i}: {g:e} ({:#010x}) vs {w:e} ({:#010x})",
                g.to_bits(),
                w.to_bits()
            );
        }
    }

    /// The vectorized first stages give the bits of the plain butterflies, for random values of
    /// mixed magnitudes (rounding in every stage) and for signed zeros, infinities, subnormals
    /// and extremes.
    #[test]
    fn wht16_matches_the_butterflies_bit_for_bit() {
        let mut rng = ChaCha8Rng::seed_from_u64(16);
        for len in [16, 32, 48, 256, 4096, WHT_CHUNK, WHT_CHUNK + 16 * 7] {
            let x: Vec<f32> = (0..len)
                .map(|_| {
                    let e = rng.random_range(-30..30);
                    (rng.random::<f32>() - 0.5) * 2f32.powi(e)
                })
                .collect();
            let mut got = x.clone();
            wht16(&mut got);
            let mut want = x;
            wht16_reference(&mut want);
            assert_same_bits(&got, &want, &format!("random, length {len}"));
        }
        let special = [
            0.0,
            -0.0,
            1.0,
            -1.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::MAX,
            f32::MIN,
            f32::MIN_POSITIVE,
            -f32::MIN_POSITIVE,
            f32::from_bits(1),
            -f32::from_bits(1),
            f32::EPSILON,
            1.0 + f32::EPSILON,
            3.0e38,
            -3.0e38,
        ];
        let x: Vec<f32> = (0..16 * 4096)
            .map(|_| special[rng.random_range(0..special.len())])
            .collect();
        let mut got = x.clone();
        wht16(&mut got);
        let mut want = x;
        wht16_reference(&mut want);
        assert_same_bits(&got, &want, "special values");
    }

    /// The fast transform equals the O(N²) definition with Sylvester's ordering,
    /// `H_jk = (−1)^popcount(j & k)`.
    #[test]
    fn wht_matches_definition() {
        let n = 64;
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let x: Vec<f32> = (0..n).map(|_| rng.random::<f32>() - 0.5).collect();
        let mut fast = x.clone();
        wht(&mut fast);
        for (j, f) in fast.iter().enumerate() {
            let want: f32 = (0..n)
                .map(|k| {
                    if (j & k).count_ones() % 2 == 0 {
                        x[k]
                    } else {
                        -x[k]
                    }
                })
                .sum();
            assert!((f - want).abs() < 1e-5, "j={j}: {f} vs {want}");
        }
        // H·H = N·I, also through the chunked path (length above WHT_CHUNK).
        let big: Vec<f32> = (0..4 * WHT_CHUNK).map(|i| (i % 7) as f32).collect();
        let mut twice = big.clone();
        wht(&mut twice);
        wht(&mut twice);
        let scale = (4 * WHT_CHUNK) as f32;
        for (a, b) in twice.iter().zip(&big) {
            assert!((a / scale - b).abs() < 1e-3);
        }
    }

    /// Intensities straight from the blocks are the bits of `|fields|²` (partial last block,
    /// and blocks above WHT_CHUNK).
    #[test]
    fn intensities_are_the_squared_fields() {
        for (n, m_out, frames) in [(1000, 5000, 3), (70_000, (1 << 17) + 100, 1)] {
            let mut m = StructuredMedium::new(n, m_out, 4).unwrap();
            let mut rng = ChaCha8Rng::seed_from_u64(5);
            let x: Vec<f32> = (0..n * frames)
                .map(|_| rng.random_bool(0.5) as u8 as f32)
                .collect();
            let y = fields_real(&m, &x, frames);
            let mut got = vec![0f32; frames * m_out];
            m.intensities(&x, frames, 0.25, &mut got).unwrap();
            let want: Vec<u32> = y
                .iter()
                .map(|c| ((c.re * c.re + c.im * c.im) * 0.25).to_bits())
                .collect();
            let got: Vec<u32> = got.iter().map(|v| v.to_bits()).collect();
            assert!(got == want, "{n} → {m_out}");
        }
    }

    /// Intensities from bit-packed frames are the bits of those from the unpacked frames
    /// (features not a multiple of 8, padding, several blocks and frames).
    #[test]
    fn packed_intensities_equal_the_unpacked_ones() {
        for (n, m_out, frames) in [(1000, 5000, 3), (70_001, (1 << 17) + 100, 2)] {
            let mut m = StructuredMedium::new(n, m_out, 6).unwrap();
            let packed = random_frames_with_density(frames, n, 0.4, 8);
            let pf = PackedFrames::new(&packed, frames, n).unwrap();
            let x: Vec<f32> = speckle_hal::unpack_bits(&pf)
                .iter()
                .map(|&b| f32::from(b))
                .collect();
            let mut want = vec![0f32; frames * m_out];
            m.intensities(&x, frames, 0.3, &mut want).unwrap();
            let mut got = vec![f32::NAN; frames * m_out];
            assert!(m.intensities_packed(&pf, 0.3, &mut got).unwrap());
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert!(bits(&got) == bits(&want), "{n} → {m_out}");
        }
    }

    /// Chunks, radix-4 and radix-8 passes and the SIMD versions only regroup the radix-2
    /// stages: the bits equal plain stage-by-stage butterflies in increasing half-width.
    #[test]
    fn wht_is_bit_identical_to_radix_2_stages() {
        for n in [16, 32, 1 << 9, 1 << 12, 4 * WHT_CHUNK] {
            let mut rng = ChaCha8Rng::seed_from_u64(n as u64);
            let x: Vec<f32> = (0..n).map(|_| rng.random::<f32>() - 0.5).collect();
            let mut fast = x.clone();
            wht(&mut fast);
            let mut plain = x;
            let mut h = 1;
            while h < n {
                for pair in plain.chunks_exact_mut(2 * h) {
                    let (a, b) = pair.split_at_mut(h);
                    for (u, v) in a.iter_mut().zip(b.iter_mut()) {
                        (*u, *v) = (*u + *v, *u - *v);
                    }
                }
                h *= 2;
            }
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert!(bits(&fast) == bits(&plain), "n {n}");
        }
    }

    #[test]
    fn golden_values() {
        // Pins ChaCha8, the key derivation, the phase sampler and the transform.
        let m = StructuredMedium::new(300, 700, 42).unwrap();
        assert_eq!((m.padded_dim(), m.block_count()), (512, 2));
        let d = m.blocks[1].d2.get(5);
        assert_eq!((d.re.to_bits(), d.im.to_bits()), GOLDEN_PHASE, "{d:?}");
        let packed = random_frames_with_density(1, 300, 0.5, 9);
        let y = fields(&m, &packed, 1);
        let got: Vec<(u32, u32)> = [0, 511, 512, 699]
            .iter()
            .map(|&j| (y[j].re.to_bits(), y[j].im.to_bits()))
            .collect();
        assert_eq!(got, GOLDEN_FIELDS, "{:?}", [y[0], y[511], y[512], y[699]]);
    }
    const GOLDEN_PHASE: (u32, u32) = (1064854124, 1048045705);
    const GOLDEN_FIELDS: [(u32, u32); 4] = [
        (1073503308, 1082754501),
        (1078165634, 1089312728),
        (1049704104, 1091906360),
        (1088210062, 1083308150),
    ];

    #[test]
    fn identical_across_thread_counts_and_batch_splits() {
        let m = StructuredMedium::new(1000, 5000, 3).unwrap();
        let packed = random_frames_with_density(6, 1000, 0.3, 4);
        let run = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| fields(&m, &packed, 6))
        };
        let one = run(1);
        assert_eq!(one, run(3));
        // Frame by frame gives the same bits as the whole batch.
        let per = 1000usize.div_ceil(8);
        for f in 0..6 {
            let alone = fields(&m, &packed[f * per..(f + 1) * per], 1);
            assert_eq!(alone, one[f * 5000..(f + 1) * 5000]);
        }
    }

    #[test]
    fn packed_real_and_rows_agree() {
        let (n, m_out) = (100, 600);
        let m = StructuredMedium::new(n, m_out, 5)
            .unwrap()
            .with_entry_variance(0.25)
            .unwrap();
        let packed = random_frames_with_density(2, n, 0.5, 6);
        let from_bits = fields(&m, &packed, 2);
        let pf = PackedFrames::new(&packed, 2, n).unwrap();
        let real: Vec<f32> = speckle_hal::unpack_bits(&pf)
            .iter()
            .map(|&b| b as f32)
            .collect();
        let from_real = fields_real(&m, &real, 2);
        assert_eq!(from_bits, from_real);
        // y_j = Σ_i R_ji x_i with the rows from the transposed transform.
        for j in [0, 1, 255, 256, 599] {
            let row = m.row(j).unwrap();
            let want: Complex32 = row.iter().zip(&real[..n]).map(|(r, &x)| r * x).sum();
            let scale = want.norm().max(1.0);
            assert!((from_real[j] - want).norm() / scale < 1e-4, "row {j}");
        }
    }

    #[test]
    fn transmit_covers_outputs_in_order_and_matches_apply() {
        let (n, m_out, batch) = (300, 1300, 3);
        let mut medium = StructuredMedium::new(n, m_out, 12)
            .unwrap()
            .with_budget_mib(1);
        let mut rng = ChaCha8Rng::seed_from_u64(13);
        let x: Vec<f32> = (0..n * batch)
            .map(|_| rng.random_bool(0.5) as u8 as f32)
            .collect();
        let want = fields_real(&medium, &x, batch);
        let mut got = vec![Complex32::new(f32::NAN, f32::NAN); batch * m_out];
        let mut next = 0;
        medium
            .transmit(&x, batch, &mut |j0, rows, re, im| {
                assert_eq!(j0, next, "ranges in order");
                next += rows;
                for b in 0..batch {
                    for r in 0..rows {
                        got[b * m_out + j0 + r] =
                            Complex32::new(re[b * rows + r], im[b * rows + r]);
                    }
                }
            })
            .unwrap();
        assert_eq!(next, m_out);
        assert_eq!(got, want);
        // A 1 MiB budget bounds the sub-batch: 4·n + 8·N bytes per frame.
        assert_eq!(medium.max_sub_batch(), (1 << 20) / (4 * 300 + 8 * 512));
    }

    #[test]
    fn entry_variance_matches_the_requested_convention() {
        // Every column of a full block has squared norm N·v, so the mean of |R_ij|² over full
        // blocks is v up to rounding; the spread across entries is that of |complex Gaussian|².
        let v = 2.0 / 512.0;
        let m = StructuredMedium::new(512, 1024, 11)
            .unwrap()
            .with_entry_variance(v)
            .unwrap();
        let mut sum = 0.0f64;
        let mut sum_sq = 0.0f64;
        let mut count = 0.0f64;
        for j in 0..1024 {
            for r in m.row(j).unwrap() {
                let p = f64::from(r.norm_sqr());
                sum += p;
                sum_sq += p * p;
                count += 1.0;
            }
        }
        let mean = sum / count;
        assert!((mean / v - 1.0).abs() < 1e-4, "mean |R|² {mean} vs {v}");
        // E|R|⁴ = 2 v² for a circular complex Gaussian.
        let fourth = sum_sq / count / (v * v);
        assert!((fourth - 2.0).abs() < 0.05, "E|R|⁴/v² = {fourth}");
    }

    /// Checks that the fields of one frame are circular complex Gaussian with
    /// `E|y|² = v·‖x‖²`, intensities exponential, and interferometric linear outputs Gaussian
    /// with variance `v·‖x‖²/2` (the dense medium's convention).
    fn check_field_statistics(n: usize, m_out: usize, seed: u64) {
        let v = 1.5;
        let medium = StructuredMedium::new(n + 64, m_out, seed)
            .unwrap()
            .with_entry_variance(v)
            .unwrap();
        // Input x on the first n features; reference pattern a on the last 64 (disjoint).
        let mut rng = ChaCha8Rng::seed_from_u64(seed + 1);
        let x: Vec<f32> = (0..n + 64)
            .map(|i| {
                if i < n {
                    rng.random_bool(0.5) as u8 as f32
                } else {
                    0.0
                }
            })
            .collect();
        let a: Vec<f32> = (0..n + 64).map(|i| (i >= n) as u8 as f32).collect();
        let norm2: f64 = x.iter().map(|&t| f64::from(t)).sum();
        let y = fields_real(&medium, &x, 1);
        let r = fields_real(&medium, &a, 1);

        let half = (v * norm2 / 2.0).sqrt();
        let re: Vec<f64> = y.iter().map(|c| f64::from(c.re) / half).collect();
        let im: Vec<f64> = y.iter().map(|c| f64::from(c.im) / half).collect();
        let crit = ks_critical(m_out);
        let ks_re = ks_normal(&re, 1.0);
        let ks_im = ks_normal(&im, 1.0);
        assert!(
            ks_re < crit && ks_im < crit,
            "KS re {ks_re} im {ks_im} crit {crit}"
        );
        // Uncorrelated real and imaginary parts with equal variance.
        let mm = m_out as f64;
        let corr = re.iter().zip(&im).map(|(a, b)| a * b).sum::<f64>() / mm;
        let var_re = re.iter().map(|a| a * a).sum::<f64>() / mm;
        let var_im = im.iter().map(|a| a * a).sum::<f64>() / mm;
        let tol = 5.0 / mm.sqrt();
        assert!(corr.abs() < tol, "corr(re, im) {corr}");
        assert!(
            (var_re - var_im).abs() < 2.0 * tol,
            "var re {var_re} im {var_im}"
        );
        // Intensities exponential with mean v·‖x‖².
        let mean_i = v * norm2;
        let intens: Vec<f64> = y.iter().map(|c| f64::from(c.norm_sqr()) / mean_i).collect();
        let ks_exp = ks_exponential(&intens, 1.0);
        assert!(ks_exp < crit, "KS exponential {ks_exp} crit {crit}");
        // Linear outputs Re(conj(r_j)·y_j)/|r_j| are N(0, v‖x‖²/2).
        let lin: Vec<f64> = y
            .iter()
            .zip(&r)
            .map(|(yj, rj)| f64::from((rj.conj() * yj).re / rj.norm()) / half)
            .collect();
        let ks_lin = ks_normal(&lin, 1.0);
        assert!(ks_lin < crit, "KS linear {ks_lin} crit {crit}");
    }

    #[test]
    fn fields_are_circular_gaussian_and_intensities_exponential() {
        check_field_statistics(4000, 16_384, 21);
        // Narrow input (DFA error vectors: 10 classes) padded to MIN_PAD.
        check_field_statistics(10, 16_384, 22);
    }

    /// `|<R_j, R_k>| / (‖R_j‖‖R_k‖)` for `pairs` row pairs: within one block and across blocks.
    /// For iid complex Gaussian rows of length n, `E|ρ|² = 1/n`; we require the mean square
    /// below 2/n and every |ρ| below 5/sqrt(n) (a tail probability ~e^{-25} per pair).
    fn check_near_orthogonal(n: usize, n_out: usize, pairs: usize, seed: u64) {
        let m = StructuredMedium::new(n, n_out, seed).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut sum_sq = 0.0;
        let mut worst: f64 = 0.0;
        for p in 0..pairs {
            let j = rng.random_range(0..n_out);
            let k = if p % 2 == 0 {
                // Same block.
                let base = j / m.padded_dim() * m.padded_dim();
                let hi = (base + m.padded_dim()).min(n_out);
                rng.random_range(base..hi)
            } else {
                rng.random_range(0..n_out)
            };
            if j == k {
                continue;
            }
            let (rj, rk) = (m.row(j).unwrap(), m.row(k).unwrap());
            let dot: num_complex::Complex64 = rj
                .iter()
                .zip(&rk)
                .map(|(a, b)| {
                    num_complex::Complex64::new(a.re.into(), a.im.into())
                        * num_complex::Complex64::new(b.re.into(), -f64::from(b.im))
                })
                .sum();
            let na: f64 = rj
                .iter()
                .map(|a| f64::from(a.norm_sqr()))
                .sum::<f64>()
                .sqrt();
            let nb: f64 = rk
                .iter()
                .map(|a| f64::from(a.norm_sqr()))
                .sum::<f64>()
                .sqrt();
            let rho = dot.norm() / (na * nb);
            sum_sq += rho * rho;
            worst = worst.max(rho);
        }
        let mean_sq = sum_sq / pairs as f64;
        let nf = n as f64;
        assert!(
            mean_sq < 2.0 / nf,
            "mean |ρ|² {mean_sq} vs 1/n = {}",
            1.0 / nf
        );
        assert!(
            worst < 5.0 / nf.sqrt(),
            "max |ρ| {worst} vs 5/sqrt(n) = {}",
            5.0 / nf.sqrt()
        );
    }

    #[test]
    fn rows_are_nearly_orthogonal() {
        check_near_orthogonal(3000, 10_000, 200, 31);
    }

    #[test]
    fn memory_is_linear_and_a_full_size_device_fits_in_one_gib() {
        let full = StructuredMedium::bytes_for(1 << 20, 1 << 21);
        assert_eq!(full, 48 << 20);
        assert!(full < 1 << 30);
        let m = StructuredMedium::new(1000, 3000, 1).unwrap();
        assert_eq!(m.bytes_held(), 24 * 1024 * 3);
        let held: usize = m
            .blocks
            .iter()
            .map(|b| {
                [&b.d1, &b.d2, &b.d3]
                    .iter()
                    .map(|d| 4 * (d.re.len() + d.im.len()))
                    .sum::<usize>()
            })
            .sum();
        assert_eq!(held, m.bytes_held());
    }

    #[test]
    fn drift_keeps_variance_and_decorrelates_as_the_dense_rule() {
        let rho = 0.2;
        let base = StructuredMedium::new(1024, 4096, 8).unwrap();
        let mut drifted = base.clone().with_drift(rho).unwrap();
        drifted.drift_to(1).unwrap();
        let (mut cross, mut p0, mut p1) = (0.0f64, 0.0f64, 0.0f64);
        for j in (0..4096).step_by(16) {
            let (a, b) = (base.row(j).unwrap(), drifted.row(j).unwrap());
            for (x, y) in a.iter().zip(&b) {
                cross += f64::from((y * x.conj()).re);
                p0 += f64::from(x.norm_sqr());
                p1 += f64::from(y.norm_sqr());
            }
        }
        let corr = cross / p0;
        assert!(
            (p1 / p0 - 1.0).abs() < 1e-4,
            "variance changed: {}",
            p1 / p0
        );
        let want = (1.0 - rho).sqrt();
        assert!((corr - want).abs() < 0.02, "correlation {corr} vs {want}");
        // Going back rebuilds the original exactly; going forward again is reproducible.
        let mut again = drifted.clone();
        again.drift_to(0).unwrap();
        assert_eq!(again.row(7).unwrap(), base.row(7).unwrap());
        again.drift_to(1).unwrap();
        assert_eq!(again.row(7).unwrap(), drifted.row(7).unwrap());
    }

    #[test]
    fn bad_parameters_and_buffers_are_errors() {
        assert!(StructuredMedium::new(0, 5, 1).is_err());
        assert!(StructuredMedium::new(5, 0, 1).is_err());
        assert!(StructuredMedium::new(MAX_PAD + 1, 5, 1).is_err());
        let m = StructuredMedium::new(10, 20, 1).unwrap();
        assert!(m.clone().with_entry_variance(f64::NAN).is_err());
        assert!(m.clone().with_drift(1.0).is_err());
        let (mut re, mut im) = (vec![0.0; 19], vec![0.0; 20]);
        assert!(m.apply_real(&[0.0; 10], 1, &mut re, &mut im).is_err());
        let mut re = vec![0.0; 20];
        assert!(m.apply_real(&[f32::NAN; 10], 1, &mut re, &mut im).is_err());
        let err = m
            .apply_packed(
                &PackedFrames::new(&[0, 0], 1, 11).unwrap(),
                &mut re,
                &mut im,
            )
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::DimensionMismatch);
        assert!(m.row(20).is_err());
    }

    /// The default-profile check at full input width: n = 2^20 features, one 2^14-output
    /// slice of fields (KS tests as above) and near-orthogonality of rows of length 2^20.
    #[test]
    fn statistics_at_full_width() {
        check_field_statistics((1 << 20) - 64, 1 << 14, 51);
        check_near_orthogonal(1 << 20, (1 << 20) + (1 << 14), 6, 52);
    }

    /// Through `SimulatedOpu`: the structured preset has the dense medium's variance
    /// convention (mean intensity `‖x‖²·k/M`), and rejects a drift rate of 1.
    #[test]
    fn simulated_opu_with_the_structured_preset() {
        use crate::MediumKind;
        use speckle_hal::OpticalDevice;
        let mut config = crate::DeviceConfig::preset("structured").unwrap();
        assert_eq!(config.medium.kind, MediumKind::Structured);
        config.camera.ideal = true;
        let (n, m) = (3000, 8192);
        let packed = random_frames_with_density(1, n, 0.5, 61);
        let pf = PackedFrames::new(&packed, 1, n).unwrap();
        let lit = speckle_hal::unpack_bits(&pf)
            .iter()
            .filter(|&&b| b == 1)
            .count() as f64;
        let mut mean = |kind: MediumKind| {
            config.medium.kind = kind;
            let mut opu = crate::SimulatedOpu::new(&config, n, m, 5).unwrap();
            let mut out = vec![0f32; m];
            opu.transform(&pf, &mut out).unwrap();
            let want = lit * opu.entry_variance();
            out.iter().map(|&v| f64::from(v)).sum::<f64>() / m as f64 / want
        };
        // Structured: exact energy conservation per full block, so the mean is 1 to rounding.
        let structured = mean(MediumKind::Structured);
        assert!(
            (structured - 1.0).abs() < 1e-3,
            "structured mean ratio {structured}"
        );
        // Dense: the mean of 8192 exponentials, within 4 standard errors.
        let dense = mean(MediumKind::Dense);
        assert!(
            (dense - 1.0).abs() < 4.0 / (m as f64).sqrt(),
            "dense mean ratio {dense}"
        );

        config.medium.kind = MediumKind::Structured;
        config.drift.rate = 1.0;
        let err = crate::SimulatedOpu::new(&config, n, m, 5).unwrap_err();
        assert!(err.to_string().contains("drift.rate"), "{err}");
    }

    /// Full size: 2^20 → 2^21 statistics of one frame, and near-orthogonality of rows at
    /// n = 2^20. About 5 s of CPU in the test profile, hence ignored by default:
    /// `cargo test -p speckle-sim --release -- --ignored full_size`.
    #[test]
    #[ignore]
    fn full_size_statistics() {
        let n = (1 << 20) - 64;
        check_field_statistics(n, 1 << 21, 41);
        check_near_orthogonal(1 << 20, 1 << 21, 40, 42);
    }
}
