//! The camera's random numbers: a multi-lane generator, the Box–Muller Gaussian in `f32`, and an
//! exact Poisson sampler by table inversion and thinning.
//!
//! Everything here uses only the IEEE operations `+ − × /` and `√` (correctly rounded on every
//! CPU) and integer operations: no libm call, no fused multiply-add (Rust never contracts
//! `a * b + c`), so the same seed gives the same bits on every machine and for every SIMD width
//! the code is compiled for.

/// Lanes of the Gaussian generator: eight 32-bit generators, one AVX2 register.
pub(crate) const LANES: usize = 8;

/// Lanes of the generator of bulk uniform words: 32, four independent chains of eight, so that
/// a step is throughput-bound rather than waiting on the state's dependency chain.
pub(crate) const WIDE_LANES: usize = 32;

/// `W` xoshiro128++ generators (Blackman and Vigna, "Scrambled linear pseudorandom number
/// generators", 2018/2021) stepped together, one per lane, so that a step vectorizes. A lane
/// is never all zero.
#[derive(Clone, Debug)]
pub(crate) struct Lanes<const W: usize = LANES> {
    /// `s[i][l]`: word `i` of lane `l`'s state.
    s: [[u32; W]; 4],
}

impl<const W: usize> Lanes<W> {
    /// Lane `l` takes state words `words[4l .. 4l + 4]` (`words` holds `4W`). An all-zero lane
    /// (probability 2^-128) gets a fixed nonzero word instead, since zero is xoshiro's one fixed
    /// point.
    pub(crate) fn from_words(words: &[u32]) -> Self {
        assert_eq!(words.len(), 4 * W, "lane seed words");
        let mut s = [[0u32; W]; 4];
        for l in 0..W {
            for (i, row) in s.iter_mut().enumerate() {
                row[l] = words[4 * l + i];
            }
            if (0..4).all(|i| s[i][l] == 0) {
                s[0][l] = 0x9E37_79B9;
            }
        }
        Self { s }
    }

    /// Lanes seeded with `2W` outputs of `rng`.
    pub(crate) fn seeded_from(rng: &mut Xoshiro256) -> Self {
        let mut words = [0u32; 4 * WIDE_LANES];
        let words = &mut words[..4 * W];
        for pair in words.chunks_exact_mut(2) {
            let x = rng.next_u64();
            pair[0] = x as u32;
            pair[1] = (x >> 32) as u32;
        }
        Self::from_words(words)
    }

    /// One step of every lane: `W` 32-bit outputs.
    #[inline(always)]
    #[allow(clippy::manual_rotate)] // spelt as shifts, the rotations vectorize on every x86 level
    pub(crate) fn next(&mut self) -> [u32; W] {
        let [s0, s1, s2, s3] = &mut self.s;
        let mut out = [0u32; W];
        for l in 0..W {
            let sum = s0[l].wrapping_add(s3[l]);
            out[l] = ((sum << 7) | (sum >> 25)).wrapping_add(s0[l]);
            let t = s1[l] << 9;
            s2[l] ^= s0[l];
            s3[l] ^= s1[l];
            s1[l] ^= s2[l];
            s0[l] ^= s3[l];
            s2[l] ^= t;
            s3[l] = (s3[l] << 11) | (s3[l] >> 21);
        }
        out
    }
}

/// Fills `out` (a multiple of 16 long) with 64-bit words from `lanes`, 16 a step (lane `2i`
/// the low half of word `i` of the step, lane `2i + 1` the high half).
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512cd+avx512dq+avx512vl",
    "x86_64+avx2+fma",
    "x86_64+sse4.2",
    "aarch64+neon"
))]
pub(crate) fn fill_u64(lanes: &mut Lanes<WIDE_LANES>, out: &mut [u64]) {
    assert!(out.len() % (WIDE_LANES / 2) == 0, "{} words", out.len());
    for chunk in out.chunks_exact_mut(WIDE_LANES / 2) {
        let w = lanes.next();
        for (i, o) in chunk.iter_mut().enumerate() {
            *o = u64::from(w[2 * i]) | u64::from(w[2 * i + 1]) << 32;
        }
    }
}

/// xoshiro256++ (Blackman and Vigna), the scalar generator for the draws that only some pixels
/// need, seeded with 256 bits from ChaCha8.
#[derive(Clone, Debug)]
pub(crate) struct Xoshiro256 {
    s: [u64; 4],
}

impl Xoshiro256 {
    /// The state from eight 32-bit words, low word first; all zero (probability 2^-256) is
    /// replaced by a fixed nonzero state.
    pub(crate) fn from_words(words: &[u32; 8]) -> Self {
        let mut s = [0u64; 4];
        for (i, v) in s.iter_mut().enumerate() {
            *v = u64::from(words[2 * i]) | u64::from(words[2 * i + 1]) << 32;
        }
        if s == [0; 4] {
            s[0] = 0x9E37_79B9_7F4A_7C15;
        }
        Self { s }
    }

    /// The next 64 random bits.
    #[inline]
    pub(crate) fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let out = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        out
    }
}

/// 2^-24.
const INV_2_24: f32 = 1.0 / 16_777_216.0;
/// 2^-48.
const INV_2_48: f32 = INV_2_24 * INV_2_24;

/// `ln(x)` for a positive normal `f32`, to about one ulp: Cephes' `logf` (S. Moshier), its
/// reduction to a mantissa in [√½, √2) and its degree-9 polynomial.
#[inline(always)]
pub(crate) fn ln(x: f32) -> f32 {
    let bits = x.to_bits();
    let mut e = ((bits >> 23) as i32 - 126) as f32;
    // The mantissa as a number in [0.5, 1).
    let m = f32::from_bits((bits & 0x007f_ffff) | 0x3f00_0000);
    let small = m < std::f32::consts::FRAC_1_SQRT_2;
    if small {
        e -= 1.0;
    }
    // m − 1 for m in [√½, 1), 2m − 1 below it: exact (Sterbenz).
    let t = if small { m + m - 1.0 } else { m - 1.0 };
    let z = t * t;
    let mut y = 7.037_683_6e-2f32;
    y = y * t - 1.151_461e-1;
    y = y * t + 1.167_699_87e-1;
    y = y * t - 1.242_014_1e-1;
    y = y * t + 1.424_932_3e-1;
    y = y * t - 1.666_805_8e-1;
    y = y * t + 2.000_071_4e-1;
    y = y * t - 2.499_999_4e-1;
    y = y * t + 3.333_333e-1;
    y = y * t * z;
    y += -2.121_944_4e-4 * e;
    y += -0.5 * z;
    (t + y) + 0.693_359_4 * e
}

/// `(cos θ, sin θ)` of the angle `θ = 2π·k/2^24 − π/4` for `k < 2^24`: the top two bits of `k`
/// pick the quadrant, the other 22 an angle in [−π/4, π/4) where Cephes' `sinf`/`cosf` polynomials
/// are accurate to about one ulp; the quadrant is applied by exact swaps and negations.
#[inline(always)]
pub(crate) fn cos_sin(k: u32) -> (f32, f32) {
    let quadrant = k >> 22;
    let a =
        ((k & 0x003f_ffff) as i32 - (1 << 21)) as f32 * (std::f32::consts::FRAC_PI_2 / 4_194_304.0);
    let z = a * a;
    let s = ((-1.951_529_6e-4 * z + 8.332_161e-3) * z - 1.666_665_5e-1) * z * a + a;
    let c = ((2.443_315_7e-5 * z - 1.388_731_6e-3) * z + 4.166_664_6e-2) * z * z - 0.5 * z + 1.0;
    // θ = a + quadrant·π/2.
    let odd = quadrant & 1 == 1;
    let (c1, s1) = if odd { (-s, c) } else { (c, s) };
    if quadrant & 2 == 2 {
        (-c1, -s1)
    } else {
        (c1, s1)
    }
}

/// The Box–Muller radius `sqrt(−2 ln u)` for `u = (k + 1)·2^-24`, `k < 2^24`.
#[inline(always)]
pub(crate) fn radius(k: u32) -> f32 {
    let u = (k as i32 as f32 + 1.0) * INV_2_24;
    (-2.0 * ln(u)).sqrt()
}

/// The radius for `k = 0`, whose `u` lies in (0, 2^-24], refined with 24 more bits from
/// `bits`: `u = (k' + 1)·2^-48` with `k'` the top 24 bits, so the Gaussian tail is drawn out to
/// `sqrt(2·48·ln 2)` ≈ 8.2 standard deviations (the mass beyond is 2·10^-16).
#[inline]
pub(crate) fn refined_radius(bits: u64) -> f32 {
    let u = ((bits >> 40) as i32 as f32 + 1.0) * INV_2_48;
    (-2.0 * ln(u)).sqrt()
}

/// The Box–Muller pair `(r cos θ, r sin θ)` of a radius word and an angle word (their top 24
/// bits give `u` and `θ`); a radius word below 2^8 needs [`refined_radius`] instead.
#[inline(always)]
pub(crate) fn box_muller(radius_word: u32, angle_word: u32) -> (f32, f32) {
    let r = radius(radius_word >> 8);
    let (c, s) = cos_sin(angle_word >> 8);
    (r * c, r * s)
}

/// Sixteen standard Gaussians from two steps of `lanes`, Box–Muller: lane `l` of the first step
/// gives the radius and lane `l` of the second the angle of the pair (`z[l]`, `z[8 + l]`) =
/// (r cos θ, r sin θ). `refine[l]` is set when the radius word is below 2^8 (probability
/// 2^-24): the caller then replaces the pair's radius by [`refined_radius`]. (The camera
/// computes the same pairs a chunk at a time.)
#[cfg(test)]
pub(crate) fn gaussians16(lanes: &mut Lanes, z: &mut [f32], refine: &mut [bool]) {
    let radius_words = lanes.next();
    let angle_words = lanes.next();
    for l in 0..LANES {
        (z[l], z[LANES + l]) = box_muller(radius_words[l], angle_words[l]);
        refine[l] = radius_words[l] >> 8 == 0;
    }
}

/// One standard Gaussian from 64 random bits (the cosine half of a Box–Muller pair: 24 bits of
/// radius, 24 of angle), refined from `rng` in the radius' lowest cell.
pub(crate) fn gaussian_from_bits(bits: u64, rng: &mut Xoshiro256) -> f32 {
    let k_r = (bits >> 40) as u32;
    let r = if k_r == 0 {
        refined_radius(rng.next_u64())
    } else {
        radius(k_r)
    };
    r * cos_sin((bits >> 8) as u32 & 0x00ff_ffff).0
}

/// Poisson table bins per unit of mean: means are split as `λ = b/4 + ε`, `0 ≤ ε < 1/4`.
const BIN_PER_UNIT: f32 = 4.0;
/// Means below this are drawn by [`PoissonTables`] (the camera's `POISSON_EXACT_BELOW`).
pub(crate) const POISSON_TABLE_BOUND: f32 = 50.0;
/// Table bins: `4 · 50`.
const BINS: usize = 200;
/// `e^{-1/4}`, correctly rounded: the tables' `e^{-b/4}` are its powers (no libm).
const EXP_MINUS_QUARTER: f64 = 0.778_800_783_071_404_9;
/// Cells of each table's guide (indexed by the top 8 bits of the uniform).
const GUIDE_CELLS: usize = 256;
/// Room per table: thresholds, then `u64::MAX` pads (at least two).
const STRIDE: usize = 136;
/// 2^23: `(x + 2^23) − 2^23` is `x` rounded to an integer for `0 ≤ x < 2^23`.
pub(crate) const ROUND_SHIFT: f32 = 8_388_608.0;
/// 2^64.
const TWO_64: f64 = 18_446_744_073_709_551_616.0;

/// One bin's table: Poisson(`b/4`).
#[derive(Debug, Clone)]
struct Bin {
    /// Thresholds `T_0 ≤ T_1 ≤ … ≤ T_{len−1}`, then `u64::MAX`: a uniform `u` gives the first
    /// `k` with `u < T_k`, or `len` if none.
    thresholds: [u64; STRIDE],
    /// `guide[i]`: the first `k` with `T_k > i·2^56`.
    guide: [u8; GUIDE_CELLS],
    len: u8,
}

/// Exact Poisson sampling for means below [`POISSON_TABLE_BOUND`], without any transcendental
/// function per draw.
///
/// A mean `λ` is split as `λ = λ_b + ε` with `λ_b = b/4`, `b = ⌊4λ⌋`, and
/// `Poisson(λ) = Poisson(λ_b) + Thin(Poisson(1/4), 4ε)` (additivity of independent Poisson
/// counts, and thinning: keeping each of `Poisson(μ)` events with probability `p` gives
/// `Poisson(pμ)`). `Poisson(λ_b)` is drawn by inverting its cumulative distribution, tabulated
/// once as 64-bit thresholds with a 256-cell guide table (two comparisons per draw but in the
/// tails); the thinning reuses the uniform of the Poisson(1/4) count when that count is 1 and
/// draws one Bernoulli per event when it is 2 or more (3 % of draws). Tables are computed in
/// `f64` (relative error below 10^-13); a uniform has 64 bits, so every probability is exact to
/// about 2^-61 beyond that.
#[derive(Debug)]
pub(crate) struct PoissonTables {
    bins: Box<[Bin; BINS]>,
}

impl PoissonTables {
    /// The tables of every bin.
    pub(crate) fn new() -> Self {
        let empty = Bin {
            thresholds: [u64::MAX; STRIDE],
            guide: [0; GUIDE_CELLS],
            len: 0,
        };
        let mut bins: Box<[Bin; BINS]> = vec![empty; BINS]
            .into_boxed_slice()
            .try_into()
            .expect("BINS bins");
        let mut p0 = 1.0f64;
        for (b, bin) in bins.iter_mut().enumerate() {
            if b > 0 {
                p0 *= EXP_MINUS_QUARTER;
            }
            let table = Self::thresholds_for(b as f64 / f64::from(BIN_PER_UNIT), p0);
            assert!(table.len() + 2 <= STRIDE, "Poisson table {b} too long");
            for (i, g) in bin.guide.iter_mut().enumerate() {
                let floor = (i as u64) << 56;
                *g = table.iter().take_while(|&&t| t <= floor).count() as u8;
            }
            bin.thresholds[..table.len()].copy_from_slice(&table);
            bin.len = table.len() as u8;
        }
        Self { bins }
    }

    /// The thresholds `round(2^64·F(k))` of Poisson(`lambda`), `F` the cumulative distribution
    /// (from the survival function in the upper tail, so that small tail probabilities keep
    /// their relative accuracy), up to the last `k` whose threshold is below 2^64.
    fn thresholds_for(lambda: f64, p0: f64) -> Vec<u64> {
        if lambda == 0.0 {
            return Vec::new();
        }
        let mut pmf = vec![p0];
        let mut k = 0usize;
        // Until past the mean and far below 2^-64.
        while (k as f64) <= lambda || pmf[k] > 1e-24 {
            k += 1;
            pmf.push(pmf[k - 1] * lambda / k as f64);
        }
        let total: f64 = pmf.iter().sum();
        let mut survival = vec![0.0f64; pmf.len()];
        let mut tail = 0.0f64;
        for j in (0..pmf.len()).rev() {
            survival[j] = tail / total;
            tail += pmf[j];
        }
        let mut out = Vec::new();
        let mut cdf = 0.0f64;
        for (j, &p) in pmf.iter().enumerate() {
            cdf += p / total;
            let t = if cdf <= 0.5 {
                (cdf * TWO_64).round() as u64
            } else {
                let rest = (survival[j] * TWO_64).round();
                if rest < 1.0 {
                    break;
                }
                u64::MAX - (rest as u64 - 1)
            };
            out.push(t);
        }
        out
    }

    /// Poisson(`b/4`) by inversion of the uniform `u`, given its guide entry: two comparisons
    /// without branches (a guide cell spans at most two thresholds but in the tails, where a
    /// short loop finishes).
    #[inline(always)]
    fn invert(bin: &Bin, guide: u8, u: u64) -> u32 {
        let t = &bin.thresholds;
        // g ≤ len ≤ STRIDE − 2: the `min` only spares the bounds checks.
        let g = usize::from(guide).min(STRIDE - 2);
        let mut k = g + usize::from(u >= t[g]) + usize::from(u >= t[g + 1]);
        if u >= t[g + 1] {
            let len = usize::from(bin.len);
            while k < len && u >= t[k] {
                k += 1;
            }
            k = k.min(len);
        }
        k as u32
    }

    /// [`invert`](Self::invert) for each uniform in the table of its bin (`bins` below
    /// [`BINS`]), into `out`, in passes that vectorize; `guide` is scratch.
    fn invert_batch(&self, bins: &[u32], uniforms: &[u64], guide: &mut [u8], out: &mut [u32]) {
        let tables: &[Bin; BINS] = &self.bins;
        guide_cells(tables, bins, uniforms, guide);
        // Two comparisons from the guide cell; the rare uniforms past both (a tail, where a
        // cell spans more thresholds) finish the search one by one.
        if guided_counts(tables, bins, guide, uniforms, out) {
            for (((o, &b), &g), &u) in out.iter_mut().zip(bins).zip(&*guide).zip(uniforms) {
                let bin = &tables[(b as usize).min(BINS - 1)];
                if u >= bin.thresholds[usize::from(g).min(STRIDE - 2) + 1] {
                    *o = Self::invert(bin, g, u);
                }
            }
        }
    }

    /// Table `b`'s thresholds.
    #[cfg(test)]
    fn table(&self, b: usize) -> &[u64] {
        &self.bins[b].thresholds[..usize::from(self.bins[b].len)]
    }

    /// Poisson(`lambda[i]`) into `out[i]` for a batch of means in `(0, POISSON_TABLE_BOUND)`
    /// (at most [`POISSON_BATCH`]), from three uniform words per mean (`uniforms[i]`,
    /// `uniforms[n + i]`, `uniforms[2n + i]`: inversion, event count, thinning) and, for the 3 %
    /// of means whose Poisson(1/4) count exceeds 1, one more per extra event from `rng`, in
    /// batch order. The work runs in passes over the batch: the arithmetic ones vectorize and
    /// the table lookups of different means overlap in the memory system.
    pub(crate) fn sample_batch(
        &self,
        lambda: &[f32],
        uniforms: &[u64],
        out: &mut [u32],
        scratch: &mut PoissonScratch,
        rng: &mut Xoshiro256,
    ) {
        let n = lambda.len();
        assert!(
            n <= POISSON_BATCH && out.len() == n && uniforms.len() == 3 * n,
            "Poisson batch of {n}"
        );
        let (u_invert, rest) = uniforms.split_at(n);
        let (u_count, u_keep) = rest.split_at(n);
        let PoissonScratch {
            bins,
            keep,
            guide,
            kept,
        } = scratch;
        bins_and_keeps(lambda, &mut bins[..n], &mut keep[..n]);
        self.invert_batch(&bins[..n], u_invert, &mut guide[..n], out);
        // The Poisson(1/4) count N is at least 1 when u ≥ T_0, at least 2 when u ≥ T_1; the
        // first event is kept with probability 4ε (thinning), the others likewise from `rng`.
        let quarter = &self.bins[1];
        let (t0, t1) = (quarter.thresholds[0], quarter.thresholds[1]);
        let more = thin_first_event(u_count, u_keep, &keep[..n], t0, t1, &mut kept[..n]);
        for (o, &k) in out.iter_mut().zip(&kept[..n]) {
            *o += k;
        }
        if more {
            for i in (0..n).filter(|&i| u_count[i] >= t1) {
                let events = Self::invert(
                    quarter,
                    quarter.guide[(u_count[i] >> 56) as usize],
                    u_count[i],
                );
                for _ in 1..events {
                    out[i] += u32::from(rng.next_u64() < keep[i]);
                }
            }
        }
    }
}

/// Scratch memory of [`PoissonTables::sample_batch`].
#[derive(Debug, Clone)]
pub(crate) struct PoissonScratch {
    bins: [u32; POISSON_BATCH],
    keep: [u64; POISSON_BATCH],
    guide: [u8; POISSON_BATCH],
    kept: [u32; POISSON_BATCH],
}

impl Default for PoissonScratch {
    fn default() -> Self {
        Self {
            bins: [0; POISSON_BATCH],
            keep: [0; POISSON_BATCH],
            guide: [0; POISSON_BATCH],
            kept: [0; POISSON_BATCH],
        }
    }
}

/// Each uniform's guide entry in its mean's table (`bins` all below [`BINS`]).
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512cd+avx512dq+avx512vl",
    "x86_64+avx2+fma",
    "x86_64+sse4.2",
    "aarch64+neon"
))]
fn guide_cells(tables: &[Bin; BINS], bins: &[u32], uniforms: &[u64], guide: &mut [u8]) {
    for ((g, &b), &u) in guide.iter_mut().zip(bins).zip(uniforms) {
        // `min` only spares the bounds check (the bins are below BINS), so the loop vectorizes.
        *g = tables[(b as usize).min(BINS - 1)].guide[(u >> 56) as usize];
    }
}

/// [`PoissonTables::invert`] without its tail search: `g + [u ≥ T_g] + [u ≥ T_{g+1}]` for
/// each uniform, branch-free (gathers); returns whether any uniform reached `T_{g+1}` (its
/// count needs the search).
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512cd+avx512dq+avx512vl",
    "x86_64+avx2+fma",
    "x86_64+sse4.2",
    "aarch64+neon"
))]
fn guided_counts(
    tables: &[Bin; BINS],
    bins: &[u32],
    guide: &[u8],
    uniforms: &[u64],
    out: &mut [u32],
) -> bool {
    let mut tail = false;
    for (((o, &b), &g), &u) in out.iter_mut().zip(bins).zip(guide).zip(uniforms) {
        let t = &tables[(b as usize).min(BINS - 1)].thresholds;
        let g = usize::from(g).min(STRIDE - 2);
        let past = u >= t[g + 1];
        *o = g as u32 + u32::from(u >= t[g]) + u32::from(past);
        tail |= past;
    }
    tail
}

/// Each mean's table bin `b = ⌊4λ⌋` and its thinning probability `4λ − b` (exact in `f32`) as
/// a fraction of 2^64 (exact for any mean above 2^-38: at most 24 significant bits).
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512cd+avx512dq+avx512vl",
    "x86_64+avx2+fma",
    "x86_64+sse4.2",
    "aarch64+neon"
))]
fn bins_and_keeps(lambda: &[f32], bins: &mut [u32], keep: &mut [u64]) {
    for ((&l, b), k) in lambda.iter().zip(bins.iter_mut()).zip(keep.iter_mut()) {
        let scaled = l * BIN_PER_UNIT;
        // ⌊scaled⌋ for 0 ≤ scaled < 2^23 without a float-to-int cast (which does not
        // vectorize): adding 2^23 rounds to the nearest integer, found in the low mantissa
        // bits; one less if that rounded up.
        let shifted = scaled + ROUND_SHIFT;
        let nearest = shifted - ROUND_SHIFT;
        let up = nearest > scaled;
        let floor = if up { nearest - 1.0 } else { nearest };
        let bin = ((shifted.to_bits() & 0x007f_ffff) - u32::from(up)).min(BINS as u32 - 1);
        *b = bin;
        // ⌊frac·2^64⌋ from the bits of frac = m·2^(e − 150) (biased exponent e, 24-bit m):
        // m·2^(e − 86), by integer shifts that vectorize.
        let bits = (scaled - floor).to_bits();
        let exponent = (bits >> 23) as i32;
        let mantissa = u64::from((bits & 0x007f_ffff) | 0x0080_0000);
        let up = (exponent - 86).max(0) as u32;
        let down = (86 - exponent).max(0) as u32;
        let scaled_up = mantissa.wrapping_shl(up);
        let shifted = if down >= 64 {
            0
        } else {
            scaled_up.wrapping_shr(down)
        };
        *k = if exponent == 0 { 0 } else { shifted };
    }
}

/// Whether the first Poisson(1/4) event of each mean happened (`u_count ≥ t0`) and was kept
/// (`u_keep < keep`), into `kept`; returns whether any mean has more events (`u_count ≥ t1`).
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512cd+avx512dq+avx512vl",
    "x86_64+avx2+fma",
    "x86_64+sse4.2",
    "aarch64+neon"
))]
fn thin_first_event(
    u_count: &[u64],
    u_keep: &[u64],
    keep: &[u64],
    t0: u64,
    t1: u64,
    kept: &mut [u32],
) -> bool {
    let mut more = false;
    for (((k, &uc), &uk), &p) in kept.iter_mut().zip(u_count).zip(u_keep).zip(keep) {
        *k = u32::from(uc >= t0) & u32::from(uk < p);
        more |= uc >= t1;
    }
    more
}

/// Most means of one [`PoissonTables::sample_batch`] call.
pub(crate) const POISSON_BATCH: usize = 256;

#[cfg(test)]
mod tests {
    use super::*;
    use speckle_testkit::{ks_critical, ks_normal};

    fn xoshiro_from(seed: u32) -> Xoshiro256 {
        let words: [u32; 8] = std::array::from_fn(|i| seed.wrapping_mul(2_654_435_761) ^ i as u32);
        Xoshiro256::from_words(&words)
    }

    #[test]
    fn xoshiro_matches_the_reference_outputs() {
        // xoshiro128++ from state {1, 2, 3, 4}: the reference implementation's first outputs.
        let mut words = [0u32; 32];
        for l in 0..LANES {
            words[4 * l..4 * l + 4].copy_from_slice(&[1, 2, 3, 4]);
        }
        let mut lanes = Lanes::<LANES>::from_words(&words);
        let got: Vec<u32> = (0..4).map(|_| lanes.next()[5]).collect();
        assert_eq!(got, [641, 1_573_767, 3_222_811_527, 3_517_856_514]);
        // xoshiro256++ from state {1, 2, 3, 4}.
        let mut x = Xoshiro256::from_words(&[1, 0, 2, 0, 3, 0, 4, 0]);
        let got: Vec<u64> = (0..3).map(|_| x.next_u64()).collect();
        assert_eq!(got, [41_943_041, 58_720_359, 3_588_806_011_781_223]);
    }

    #[test]
    fn ln_and_cos_sin_are_accurate() {
        for i in 1..=100_000u32 {
            let x = i as f32 / 100_000.0;
            let want = f64::from(x).ln();
            let got = f64::from(ln(x));
            assert!(
                (got - want).abs() <= 2e-7 * want.abs().max(1e-3),
                "ln({x}) = {got} vs {want}"
            );
        }
        for k in (0..1u32 << 24).step_by(997) {
            let theta =
                std::f64::consts::TAU * f64::from(k) / 16_777_216.0 - std::f64::consts::FRAC_PI_4;
            let (c, s) = cos_sin(k);
            assert!((f64::from(c) - theta.cos()).abs() < 2e-7, "cos at {k}");
            assert!((f64::from(s) - theta.sin()).abs() < 2e-7, "sin at {k}");
        }
        assert_eq!(radius((1 << 24) - 1), 0.0);
        assert!((refined_radius(0) - (96.0f32 * std::f32::consts::LN_2).sqrt()).abs() < 1e-5);
    }

    /// KS against N(0, 1) and the first four moments, over 2^20 draws.
    #[test]
    fn box_muller_gaussians_follow_the_standard_normal_law() {
        let words: [u32; 32] = std::array::from_fn(|i| (i as u32 + 1).wrapping_mul(0x9E37_79B9));
        let mut lanes = Lanes::<LANES>::from_words(&words);
        let n = 1 << 20;
        let mut z = vec![0f32; n];
        let mut refine = [false; LANES];
        for chunk in z.chunks_exact_mut(2 * LANES) {
            gaussians16(&mut lanes, chunk, &mut refine);
        }
        let sample: Vec<f64> = z.iter().map(|&v| f64::from(v)).collect();
        let d = ks_normal(&sample, 1.0);
        assert!(d < ks_critical(n), "KS {d} vs {}", ks_critical(n));
        let moment = |p: i32| sample.iter().map(|v| v.powi(p)).sum::<f64>() / n as f64;
        // Standard errors over 2^20 draws: 0.001, 0.0014, 0.0024, 0.0094 (for 1, 2, 3, 4).
        assert!(moment(1).abs() < 0.005, "mean {}", moment(1));
        assert!((moment(2) - 1.0).abs() < 0.007, "variance {}", moment(2));
        assert!(moment(3).abs() < 0.012, "third moment {}", moment(3));
        assert!(
            (moment(4) - 3.0).abs() < 0.05,
            "fourth moment {}",
            moment(4)
        );
        // The two halves of a pair are uncorrelated.
        let corr = z
            .chunks_exact(16)
            .flat_map(|c| (0..8).map(move |l| f64::from(c[l]) * f64::from(c[8 + l])))
            .sum::<f64>()
            / (n / 2) as f64;
        assert!(corr.abs() < 0.007, "pair correlation {corr}");
        let mut rng = xoshiro_from(3);
        let scalar: Vec<f64> = (0..1 << 16)
            .map(|_| f64::from(gaussian_from_bits(rng.next_u64(), &mut rng)))
            .collect();
        let d = ks_normal(&scalar, 1.0);
        assert!(d < ks_critical(1 << 16), "scalar KS {d}");
    }

    /// The exact Poisson pmf of `lambda` at `0..len` (f64, by recurrence from e^-λ).
    fn pmf(lambda: f64, len: usize) -> Vec<f64> {
        let mut p = vec![(-lambda).exp()];
        for k in 1..len {
            p.push(p[k - 1] * lambda / k as f64);
        }
        p
    }

    #[test]
    fn tables_reproduce_the_poisson_cdf() {
        let tables = PoissonTables::new();
        for b in [1usize, 7, 40, 123, 199] {
            let lambda = b as f64 / 4.0;
            let t = tables.table(b);
            let p = pmf(lambda, t.len() + 100);
            let mut cdf = 0.0;
            for (k, &tk) in t.iter().enumerate() {
                cdf += p[k];
                assert!(
                    (tk as f64 / TWO_64 - cdf).abs() < 1e-13,
                    "λ {lambda}, k {k}: {} vs {cdf}",
                    tk as f64 / TWO_64
                );
                // Non-decreasing; increasing wherever the atom is above the 2^-64 resolution.
                if k > 0 {
                    assert!(tk >= t[k - 1], "λ {lambda}: thresholds decrease at {k}");
                    assert!(p[k] < 1e-19 || tk > t[k - 1], "λ {lambda}: atom {k} lost");
                }
            }
            // The mass beyond the table is below 2^-64.
            let tail: f64 = p[t.len() + 1..].iter().sum();
            assert!(tail < 1e-19, "λ {lambda}: tail {tail}");
            // Guides: exact inversion of the cell's smallest uniform.
            for i in 0..GUIDE_CELLS {
                let u = (i as u64) << 56;
                let k = t.iter().take_while(|&&tk| tk <= u).count();
                assert_eq!(usize::from(tables.bins[b].guide[i]), k);
            }
        }
        // Inversion at the thresholds' edges.
        let t = tables.table(40);
        let invert = |b: usize, u: u64| {
            let bin = &tables.bins[b];
            PoissonTables::invert(bin, bin.guide[(u >> 56) as usize], u)
        };
        assert_eq!(invert(40, t[9] - 1), 9);
        assert_eq!(invert(40, t[9]), 10);
        assert_eq!(invert(40, u64::MAX), t.len() as u32);
        assert_eq!(invert(0, u64::MAX), 0);
    }

    /// The batch inversion gives what the scalar one gives, for every table, in the body and
    /// in the tails (uniforms just below and at the thresholds, and near 2^64).
    #[test]
    fn batch_inversion_matches_the_scalar_one() {
        let tables = PoissonTables::new();
        let mut rng = xoshiro_from(5);
        let (mut bins, mut uniforms) = (Vec::new(), Vec::new());
        for b in 0..BINS as u32 {
            let t = tables.table(b as usize);
            for _ in 0..40 {
                bins.push(b);
                uniforms.push(rng.next_u64());
            }
            for &tk in t.iter().rev().take(12) {
                bins.extend([b, b]);
                uniforms.extend([tk.saturating_sub(1), tk]);
            }
            bins.extend([b, b]);
            uniforms.extend([u64::MAX, u64::MAX - (rng.next_u64() >> 50)]);
        }
        let mut out = vec![0u32; bins.len()];
        let mut tails = 0;
        for ((bins, uniforms), out) in bins
            .chunks(POISSON_BATCH)
            .zip(uniforms.chunks(POISSON_BATCH))
            .zip(out.chunks_mut(POISSON_BATCH))
        {
            let mut guide = [0u8; POISSON_BATCH];
            tables.invert_batch(bins, uniforms, &mut guide[..bins.len()], out);
            for ((&b, &u), &k) in bins.iter().zip(uniforms).zip(&*out) {
                let bin = &tables.bins[b as usize];
                let g = bin.guide[(u >> 56) as usize];
                assert_eq!(k, PoissonTables::invert(bin, g, u), "bin {b}, u {u:#x}");
                tails += usize::from(u >= bin.thresholds[usize::from(g) + 1]);
            }
        }
        assert!(tails > 1000, "the tails are exercised: {tails}");
    }

    #[test]
    fn thinning_probabilities_are_exact() {
        let means: Vec<f32> = (0..4000)
            .map(|i| match i % 4 {
                0 => i as f32 * 0.012_345,
                1 => 1e-9 * i as f32,
                2 => (i / 80) as f32 * 0.25,
                _ => f32::from_bits(0x3f80_0000 + i as u32 * 977) * 0.9,
            })
            .collect();
        let mut bins = vec![0u32; means.len()];
        let mut keep = vec![0u64; means.len()];
        bins_and_keeps(&means, &mut bins, &mut keep);
        for ((&l, &b), &k) in means.iter().zip(&bins).zip(&keep) {
            let scaled = l * BIN_PER_UNIT;
            assert_eq!(b, scaled.floor() as u32, "{l}");
            // f64 holds the f32 fraction times 2^64 exactly; truncation is the floor.
            let want = (f64::from(scaled - scaled.floor()) * TWO_64) as u64;
            assert_eq!(k, want, "{l}");
        }
    }

    /// For means on and between the table bins, the sampled frequencies match the Poisson pmf
    /// (chi-square over the cells with expectation ≥ 5) and the mean and variance match λ.
    #[test]
    fn poisson_samples_follow_the_law() {
        let tables = PoissonTables::new();
        let mut rng = xoshiro_from(11);
        // Batches mix the means (and their table bins), 36 of each per batch.
        const MEANS: [f32; 7] = [0.01, 0.3, 2.5, 7.13, 12.0, 29.87, 49.99];
        let batch: Vec<f32> = MEANS.iter().copied().cycle().take(252).collect();
        let mut draws = vec![0u32; batch.len()];
        let mut uniforms = vec![0u64; 3 * batch.len()];
        let mut scratch = PoissonScratch::default();
        let mut counts = vec![vec![0usize; 200]; MEANS.len()];
        let batches = 5600;
        for _ in 0..batches {
            uniforms.iter_mut().for_each(|u| *u = rng.next_u64());
            tables.sample_batch(&batch, &uniforms, &mut draws, &mut scratch, &mut rng);
            for (i, &k) in draws.iter().enumerate() {
                counts[i % MEANS.len()][k as usize] += 1;
            }
        }
        let n = batches * 36;
        for (lambda_f32, counts) in MEANS.iter().zip(&counts) {
            let lambda = f64::from(*lambda_f32);
            let sum: f64 = counts
                .iter()
                .enumerate()
                .map(|(k, &c)| (k * c) as f64)
                .sum();
            let sum_sq: f64 = counts
                .iter()
                .enumerate()
                .map(|(k, &c)| (k * k * c) as f64)
                .sum();
            let mean = sum / n as f64;
            let var = sum_sq / n as f64 - mean * mean;
            // Standard errors: sqrt(λ/n) for the mean, about λ·sqrt(2/n) for the variance.
            let se = (lambda / n as f64).sqrt();
            assert!((mean - lambda).abs() < 5.0 * se, "λ {lambda}: mean {mean}");
            assert!(
                (var / lambda - 1.0).abs()
                    < 5.0 * (2.0 / n as f64).sqrt() + 5.0 / (n as f64 * lambda).sqrt(),
                "λ {lambda}: variance {var}"
            );
            // Chi-square on cells with expected count ≥ 5 (the rest pooled into one cell).
            let p = pmf(lambda, counts.len());
            let (mut chi2, mut dof) = (0.0f64, 0usize);
            let (mut pooled_expected, mut pooled_seen) = (0.0f64, 0usize);
            for (k, &c) in counts.iter().enumerate() {
                let expected = p[k] * n as f64;
                if expected >= 5.0 {
                    chi2 += (c as f64 - expected).powi(2) / expected;
                    dof += 1;
                } else {
                    pooled_expected += expected;
                    pooled_seen += c;
                }
            }
            if pooled_expected >= 5.0 {
                chi2 += (pooled_seen as f64 - pooled_expected).powi(2) / pooled_expected;
                dof += 1;
            }
            let dof = (dof - 1) as f64;
            // The 0.999 quantile of chi-square(ν) is below ν + 4.5·sqrt(2ν) + 10 for ν ≤ 200.
            let limit = dof + 4.5 * (2.0 * dof).sqrt() + 10.0;
            assert!(
                chi2 < limit,
                "λ {lambda}: chi-square {chi2} over {dof} dof (limit {limit})"
            );
        }
    }
}
