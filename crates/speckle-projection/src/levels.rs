//! Per-vector quantization grids for [`Encoding::Levels`](crate::Encoding::Levels): the exact
//! optimal K-level quantizer of a vector's entries (1-D k-means) and the grid of K entries that
//! minimizes the variance of unbiased stochastic rounding.
//!
//! Both are layered dynamic programs over the sorted entries, `best_t[j] = min_{i<j}
//! best_{t−1}[i] + cost(i, j)`, whose costs satisfy the quadrangle inequality
//! (`cost(a, c) + cost(b, d) ≤ cost(a, d) + cost(b, c)` for `a ≤ b ≤ c ≤ d`), so the best `i`
//! never decreases with `j` and each layer is solved by divide and conquer in `O(n log n)`:
//! `O(K · n · log n)` in all after the sort, which keeps million-entry vectors affordable.

/// Prefix sums of the sorted values and of their squares (`f64`), for `O(1)` segment costs.
struct Prefix {
    sum: Vec<f64>,
    squares: Vec<f64>,
}

impl Prefix {
    fn new(sorted: &[f64]) -> Self {
        let mut sum = Vec::with_capacity(sorted.len() + 1);
        let mut squares = Vec::with_capacity(sorted.len() + 1);
        let (mut s, mut q) = (0.0f64, 0.0f64);
        sum.push(0.0);
        squares.push(0.0);
        for &v in sorted {
            s += v;
            q += v * v;
            sum.push(s);
            squares.push(q);
        }
        Self { sum, squares }
    }

    /// Sum and sum of squares of `sorted[i..j]`.
    fn range(&self, i: usize, j: usize) -> (f64, f64) {
        (self.sum[j] - self.sum[i], self.squares[j] - self.squares[i])
    }
}

/// One layer of the dynamic program: `next[j] = min_{i ∈ [lo_i, j)} prev[i] + cost(i, j)` for
/// every `j` in `js`, with the smallest minimizing `i` recorded in `arg[j]`. Divide and
/// conquer: the best `i` of the middle `j` bounds the search on either side.
struct Layer<'a, C: Fn(usize, usize) -> f64> {
    prev: &'a [f64],
    cost: &'a C,
    next: &'a mut [f64],
    arg: &'a mut [usize],
}

impl<C: Fn(usize, usize) -> f64> Layer<'_, C> {
    /// Solves `j ∈ [j_lo, j_hi]` knowing that their best `i` lies in `[i_lo, i_hi]`.
    fn solve(&mut self, j_lo: usize, j_hi: usize, i_lo: usize, i_hi: usize) {
        // Explicit stack instead of recursion: depth stays O(log n) either way, but a loop
        // cannot overflow the stack of a small thread.
        let mut stack = vec![(j_lo, j_hi, i_lo, i_hi)];
        while let Some((j_lo, j_hi, i_lo, i_hi)) = stack.pop() {
            if j_lo > j_hi {
                continue;
            }
            let j = j_lo + (j_hi - j_lo) / 2;
            let (mut best, mut best_i) = (f64::INFINITY, i_lo);
            for i in i_lo..=i_hi.min(j - 1) {
                let v = self.prev[i] + (self.cost)(i, j);
                if v < best {
                    best = v;
                    best_i = i;
                }
            }
            self.next[j] = best;
            self.arg[j] = best_i;
            if j > j_lo {
                stack.push((j_lo, j - 1, i_lo, best_i));
            }
            stack.push((j + 1, j_hi, best_i, i_hi));
        }
    }
}

/// The least-cost path `0 = p_0 < p_1 < … < p_layers = end` over positions `0 .. width`, the
/// cost being `Σ cost(p_{t−1}, p_t)`; returns `p_0 ..= p_layers`. The first layer starts at 0
/// (`O(width)`), each middle layer is solved for every position by divide and conquer
/// (`O(width · log width)`), and the last only for `end` (`O(width)`): for three levels a
/// single divide-and-conquer pass, none for a three-level dither grid.
fn best_path<C: Fn(usize, usize) -> f64>(
    width: usize,
    layers: usize,
    end: usize,
    cost: &C,
) -> Vec<usize> {
    let mut path = vec![end; layers + 1];
    path[0] = 0;
    if layers <= 1 {
        return path;
    }
    // Layer 1: from position 0 to each j ≥ 1.
    let mut prev: Vec<f64> = (0..width)
        .map(|j| if j == 0 { f64::INFINITY } else { cost(0, j) })
        .collect();
    let mut next = vec![f64::INFINITY; width];
    // Middle layers t = 2 .. layers − 1, each position j ≥ t; their best predecessors.
    let middle = layers - 2;
    let mut args = vec![0usize; middle * width];
    for t in 2..layers {
        next.fill(f64::INFINITY);
        if t < width {
            Layer {
                prev: &prev,
                cost,
                next: &mut next,
                arg: &mut args[(t - 2) * width..(t - 1) * width],
            }
            .solve(t, width - 1, t - 1, width - 2);
        }
        std::mem::swap(&mut prev, &mut next);
    }
    // Last layer: only `end`.
    let (mut best, mut j) = (f64::INFINITY, layers - 1);
    for (i, &p) in prev.iter().enumerate().take(end).skip(layers - 1) {
        let v = p + cost(i, end);
        if v < best {
            best = v;
            j = i;
        }
    }
    path[layers - 1] = j;
    for t in (2..layers).rev() {
        j = args[(t - 2) * width + j];
        path[t - 1] = j;
    }
    path
}

/// The optimal quantizer of `sorted` (ascending, finite) with at most `k ≥ 1` levels: the
/// partition into `min(k, n)` contiguous clusters with the least total squared distance to
/// their means. Returns the start of each cluster in `sorted` (the first is 0), ascending.
pub(crate) fn kmeans_clusters(sorted: &[f64], k: usize) -> Vec<usize> {
    let n = sorted.len();
    let k = k.min(n).max(1);
    if n == 0 {
        return vec![0];
    }
    let prefix = Prefix::new(sorted);
    // Squared distances of sorted[i..j] to their mean.
    let sse = |i: usize, j: usize| {
        let (s, q) = prefix.range(i, j);
        (q - s * s / (j - i) as f64).max(0.0)
    };
    // Positions are counts of covered entries, 0 ..= n; cluster t covers path[t] .. path[t+1].
    let mut path = best_path(n + 1, k, n, &sse);
    path.pop();
    path
}

/// The grid of at most `k ≥ 2` entries of `sorted` (ascending, finite), the first and last
/// included, that minimizes the total variance of unbiased stochastic rounding of every entry
/// onto its two neighbouring grid values, `Σ (x − lo)(hi − x)`. Returns the grid's positions in
/// `sorted`, ascending. With `n ≤ k` entries every entry is on the grid.
///
/// Grid values may be taken at the entries without loss: for the entries between two grid
/// values the variance is linear in each of them, so an optimum lies at an entry.
pub(crate) fn dither_grid(sorted: &[f64], k: usize) -> Vec<usize> {
    let n = sorted.len();
    if n <= k.max(2) {
        return (0..n).collect();
    }
    let prefix = Prefix::new(sorted);
    // Σ_{a<m<b} (x_m − x_a)(x_b − x_m) = −Σx² + (x_a + x_b)·Σx − x_a·x_b·count.
    let variance = |a: usize, b: usize| {
        if b <= a + 1 {
            return 0.0;
        }
        let (s, q) = prefix.range(a + 1, b);
        let (lo, hi) = (sorted[a], sorted[b]);
        (-q + (lo + hi) * s - lo * hi * (b - a - 1) as f64).max(0.0)
    };
    // Positions are entries; the grid runs from the smallest (0) to the largest (n − 1).
    best_path(n, k - 1, n - 1, &variance)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Plain O(k n²) dynamic program, the reference for the divide and conquer.
    fn brute(first: &[f64], layers: usize, cost: impl Fn(usize, usize) -> f64) -> Vec<f64> {
        let mut prev = first.to_vec();
        for _ in 0..layers {
            let mut next = vec![f64::INFINITY; prev.len()];
            for (j, nj) in next.iter_mut().enumerate() {
                for (i, p) in prev.iter().enumerate().take(j) {
                    *nj = nj.min(p + cost(i, j));
                }
            }
            prev = next;
        }
        prev
    }

    fn sse(x: &[f64]) -> f64 {
        let m = x.iter().sum::<f64>() / x.len() as f64;
        x.iter().map(|v| (v - m) * (v - m)).sum()
    }

    fn random_sorted(rng: &mut ChaCha8Rng, n: usize) -> Vec<f64> {
        // Coarse values so that ties are common.
        let mut x: Vec<f64> = (0..n)
            .map(|_| f64::from(rng.random_range(-20i32..20)) / 8.0)
            .collect();
        x.sort_by(f64::total_cmp);
        x
    }

    #[test]
    fn kmeans_matches_the_plain_dynamic_program() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for trial in 0..200 {
            let n = 1 + trial % 23;
            let k = 1 + trial % 6;
            let x = random_sorted(&mut rng, n);
            let starts = kmeans_clusters(&x, k);
            assert_eq!(starts.len(), k.min(n));
            assert_eq!(starts[0], 0);
            assert!(starts.windows(2).all(|w| w[0] < w[1]));
            let mut bounds = starts.clone();
            bounds.push(n);
            let got: f64 = bounds.windows(2).map(|w| sse(&x[w[0]..w[1]])).sum();
            let mut first = vec![f64::INFINITY; n + 1];
            first[0] = 0.0;
            let want = brute(&first, k.min(n), |i, j| sse(&x[i..j]))[n];
            assert!((got - want).abs() < 1e-9, "n={n} k={k}: {got} vs {want}");
        }
    }

    #[test]
    fn dither_grid_matches_the_plain_dynamic_program() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let variance = |x: &[f64], a: usize, b: usize| -> f64 {
            x[a + 1..b].iter().map(|v| (v - x[a]) * (x[b] - v)).sum()
        };
        for trial in 0..200 {
            let n = 1 + trial % 23;
            let k = 2 + trial % 5;
            let x = random_sorted(&mut rng, n);
            let grid = dither_grid(&x, k);
            assert_eq!(grid.len(), k.min(n));
            assert_eq!(grid[0], 0);
            assert_eq!(*grid.last().unwrap(), n - 1);
            assert!(grid.windows(2).all(|w| w[0] < w[1]));
            if n <= k {
                continue;
            }
            let got: f64 = grid.windows(2).map(|w| variance(&x, w[0], w[1])).sum();
            let mut first = vec![f64::INFINITY; n];
            first[0] = 0.0;
            let want = brute(&first, k - 1, |a, b| variance(&x, a, b))[n - 1];
            assert!((got - want).abs() < 1e-9, "n={n} k={k}: {got} vs {want}");
        }
    }
}
