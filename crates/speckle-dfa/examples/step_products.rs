//! The GEMM rate of the products one training step of the 784-800-800-800-10 network at batch
//! 128 is made of, each on one thread as the trainer runs them (`Par::Seq` per piece), against
//! the one-thread rate of a 1024³ product measured in the same run.
//!
//! ```text
//! cargo run --release -p speckle-dfa --example step_products
//! ```
//!
//! The pieces are those the trainer cuts (see `FORWARD_BANDS` in `model.rs` and `Tiling` in
//! `optim.rs`): the forward products in column bands of 208, and the weight gradients in tiles
//! of about 115 × 272 over the batch (k = 128). Each rate is the median of seven timed rounds
//! of the same product on the same operands, so the operands are in cache; in a step they come
//! from the previous product or the optimizer's pass. What the figures separate: how far the
//! products themselves are from the machine's GEMM rate, and therefore how much of a step's
//! shortfall lies elsewhere (the optimizer's pass over the weights, activations, scheduling).

use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, Par};
use std::time::Instant;

/// One product shape: `m × n` output, inner dimension `k`; `a_transposed` reads `a` as the
/// transpose of a row-major `k × m` matrix (a weight gradient `inputᵀ · δ`).
struct Shape {
    name: &'static str,
    m: usize,
    n: usize,
    k: usize,
    a_transposed: bool,
}

/// Median GFLOP/s over `rounds` rounds of `reps` products.
fn rate(s: &Shape, reps: usize, rounds: usize) -> f64 {
    let fill = |r: usize, c: usize, salt: usize| {
        Mat::<f32>::from_fn(r, c, |i, j| {
            ((i * 7 + j * 3 + salt) % 13) as f32 * 0.01 - 0.06
        })
    };
    let a = if s.a_transposed {
        fill(s.k, s.m, 1)
    } else {
        fill(s.m, s.k, 1)
    };
    let b = fill(s.k, s.n, 2);
    let mut c = Mat::<f32>::zeros(s.m, s.n);
    let mut rates: Vec<f64> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..reps {
                let a = if s.a_transposed {
                    a.as_ref().transpose()
                } else {
                    a.as_ref()
                };
                matmul(c.as_mut(), Accum::Replace, a, b.as_ref(), 1.0, Par::Seq);
            }
            let flops = 2.0 * (s.m * s.n * s.k * reps) as f64;
            flops / start.elapsed().as_secs_f64() / 1e9
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    rates[rounds / 2]
}

fn main() {
    let reference = Shape {
        name: "1024 × 1024 × 1024 (reference)",
        m: 1024,
        n: 1024,
        k: 1024,
        a_transposed: false,
    };
    let shapes = [
        Shape {
            name: "forward band, layer 1: 128 × 208 × 784",
            m: 128,
            n: 208,
            k: 784,
            a_transposed: false,
        },
        Shape {
            name: "forward band, layers 2-3: 128 × 208 × 800",
            m: 128,
            n: 208,
            k: 800,
            a_transposed: false,
        },
        Shape {
            name: "weight-gradient tile, layer 1: 112 × 272 × 128",
            m: 112,
            n: 272,
            k: 128,
            a_transposed: true,
        },
        Shape {
            name: "weight-gradient tile, layers 2-3: 115 × 272 × 128",
            m: 115,
            n: 272,
            k: 128,
            a_transposed: true,
        },
    ];
    let peak = rate(&reference, 4, 7);
    println!("{:<52} {:>8.1} GFLOP/s", reference.name, peak);
    for s in &shapes {
        let r = rate(s, 400, 7);
        println!(
            "{:<52} {:>8.1} GFLOP/s  {:>4.0} % of the reference",
            s.name,
            r,
            100.0 * r / peak
        );
    }
}
