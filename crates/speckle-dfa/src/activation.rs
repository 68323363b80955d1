//! Vectorizable activation functions and their derivatives.
//!
//! `f32::tanh` calls libm once per value, which costs more than the matrix products in a DFA
//! step of a wide tanh network. [`tanh_fast`] is Eigen's rational approximation (max error a few
//! ulp, a test pins it under 5e-7 absolute), written branch-free so that the compiler vectorizes
//! the loops that call it. Derivatives are expressed through the activation's *output* y, so the
//! backward pass needs no pre-activation buffer. The loops are compiled for several instruction
//! sets (`multiversion`) and picked at run time; all versions give bit-identical results.
//!
//! ```
//! use speckle_dfa::activation::tanh_fast;
//! assert!((tanh_fast(0.5) - 0.5f32.tanh()).abs() < 1e-6);
//! assert!(tanh_fast(100.0) <= 1.0 && tanh_fast(100.0) > 0.9999999);
//! ```

use crate::spec::Activation;

/// tanh(x) by Eigen's 13/6 rational approximation, clamped so that |x| ≥ 7.9 gives ±1.
#[inline(always)]
#[allow(clippy::excessive_precision)] // Eigen's published coefficients, kept verbatim.
pub fn tanh_fast(x: f32) -> f32 {
    const CLAMP: f32 = 7.905_311;
    const A1: f32 = 4.893_524_6e-3;
    const A3: f32 = 6.372_619e-4;
    const A5: f32 = 1.485_722_4e-5;
    const A7: f32 = 5.122_297e-8;
    const A9: f32 = -8.604_671_5e-11;
    const A11: f32 = 2.000_188e-13;
    const A13: f32 = -2.760_768_5e-16;
    const B0: f32 = 4.893_525e-3;
    const B2: f32 = 2.268_434_6e-3;
    const B4: f32 = 1.185_347e-4;
    const B6: f32 = 1.198_258_4e-6;
    let x = x.clamp(-CLAMP, CLAMP);
    let x2 = x * x;
    let p = ((((((A13 * x2 + A11) * x2 + A9) * x2 + A7) * x2 + A5) * x2 + A3) * x2 + A1) * x;
    let q = ((B6 * x2 + B4) * x2 + B2) * x2 + B0;
    (p / q).clamp(-1.0, 1.0)
}

/// The logistic sigmoid through [`tanh_fast`]: σ(x) = (1 + tanh(x/2)) / 2.
#[inline(always)]
pub fn sigmoid_fast(x: f32) -> f32 {
    0.5 + 0.5 * tanh_fast(0.5 * x)
}

/// Runs `$body` with `$d` bound to the derivative of `$activation` as a function of its output
/// y, one monomorphized closure per activation, so that kernels inline it.
macro_rules! with_derivative {
    ($activation:expr, $d:ident => $body:expr) => {
        match $activation {
            Activation::Tanh => {
                let $d = |y: f32| 1.0 - y * y;
                $body
            }
            Activation::Relu => {
                let $d = |y: f32| if y > 0.0 { 1.0 } else { 0.0 };
                $body
            }
            Activation::LeakyRelu(slope) => {
                let $d = move |y: f32| if y > 0.0 { 1.0 } else { slope };
                $body
            }
            Activation::Sigmoid => {
                let $d = |y: f32| y * (1.0 - y);
                $body
            }
        }
    };
}

impl Activation {
    /// f(x).
    #[inline(always)]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::Tanh => tanh_fast(x),
            Activation::Relu => x.max(0.0),
            Activation::LeakyRelu(s) => {
                if x > 0.0 {
                    x
                } else {
                    s * x
                }
            }
            Activation::Sigmoid => sigmoid_fast(x),
        }
    }

    /// f'(x) expressed through y = f(x).
    #[inline(always)]
    pub fn derivative_from_output(self, y: f32) -> f32 {
        with_derivative!(self, d => d(y))
    }

    /// `out[r][c] = f(out[r][c] + bias[c])` over a row-major buffer; one monomorphic loop per
    /// activation so that each vectorizes.
    pub(crate) fn apply_rows_with_bias(self, out: &mut [f32], bias: &[f32]) {
        simd_kernel! {
            fn run(out: &mut [f32], bias: &[f32], f: impl Fn(f32) -> f32) {
                for row in out.chunks_exact_mut(bias.len()) {
                    for (v, b) in row.iter_mut().zip(bias) {
                        *v = f(*v + b);
                    }
                }
            }
        }
        match self {
            Activation::Tanh => run(out, bias, tanh_fast),
            Activation::Relu => run(out, bias, |x| x.max(0.0)),
            Activation::LeakyRelu(s) => run(out, bias, move |x| if x > 0.0 { x } else { s * x }),
            Activation::Sigmoid => run(out, bias, sigmoid_fast),
        }
    }

    /// `grad[i] *= f'(x_i)` given the outputs `y`.
    pub(crate) fn mul_derivative(self, grad: &mut [f32], y: &[f32]) {
        simd_kernel! {
            fn run(grad: &mut [f32], y: &[f32], d: impl Fn(f32) -> f32) {
                for (g, &y) in grad.iter_mut().zip(y) {
                    *g *= d(y);
                }
            }
        }
        with_derivative!(self, d => run(grad, y, d))
    }

    /// `dy[r][c] = scale · src[r][off + c] · f'(dy[r][c])`: the DFA signal of one layer, read
    /// from its slice of the projection (`src` rows are `src_stride` apart) and pushed through
    /// the activation in one pass, over the buffer that holds the activation's output y
    /// (overwritten with δ).
    pub(crate) fn scaled_slice_times_derivative(
        self,
        dy: &mut [f32],
        width: usize,
        src: &[f32],
        src_stride: usize,
        offset: usize,
        scale: f32,
    ) {
        simd_kernel! {
            fn run(
                dy: &mut [f32],
                width: usize,
                src: &[f32],
                src_stride: usize,
                offset: usize,
                scale: f32,
                d: impl Fn(f32) -> f32,
            ) {
                for (g_row, s_row) in dy.chunks_exact_mut(width).zip(src.chunks_exact(src_stride)) {
                    let s_row = &s_row[offset..offset + width];
                    for (g, &s) in g_row.iter_mut().zip(s_row) {
                        *g = scale * s * d(*g);
                    }
                }
            }
        }
        with_derivative!(self, d => run(dy, width, src, src_stride, offset, scale, d))
    }

    /// [`scaled_slice_times_derivative`](Self::scaled_slice_times_derivative) reading the
    /// activation's output from `y` instead of `dy`: `dy[r][c] = scale · src[r][off + c] ·
    /// f'(y[r][c])`, the same operations, so the same bits, in one pass without a copy.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn scaled_slice_times_derivative_of(
        self,
        y: &[f32],
        dy: &mut [f32],
        width: usize,
        src: &[f32],
        src_stride: usize,
        offset: usize,
        scale: f32,
    ) {
        simd_kernel! {
            #[allow(clippy::too_many_arguments)]
            fn run(
                y: &[f32],
                dy: &mut [f32],
                width: usize,
                src: &[f32],
                src_stride: usize,
                offset: usize,
                scale: f32,
                d: impl Fn(f32) -> f32,
            ) {
                for ((g_row, y_row), s_row) in dy
                    .chunks_exact_mut(width)
                    .zip(y.chunks_exact(width))
                    .zip(src.chunks_exact(src_stride))
                {
                    let s_row = &s_row[offset..offset + width];
                    for ((g, &y), &s) in g_row.iter_mut().zip(y_row).zip(s_row) {
                        *g = scale * s * d(y);
                    }
                }
            }
        }
        with_derivative!(self, d => run(y, dy, width, src, src_stride, offset, scale, d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tanh_fast_is_accurate() {
        let mut worst = 0.0f64;
        for i in -200_000..=200_000 {
            let x = i as f32 * 1e-4;
            let err = (tanh_fast(x) as f64 - (x as f64).tanh()).abs();
            worst = worst.max(err);
        }
        assert!(worst < 5e-7, "max abs error {worst}");
        // Saturates within one ulp of ±1, never beyond.
        assert!((tanh_fast(f32::INFINITY) - 1.0).abs() <= 6e-8);
        assert!((tanh_fast(-50.0) + 1.0).abs() <= 6e-8);
        assert_eq!(tanh_fast(0.0), 0.0);
    }

    #[test]
    fn sigmoid_fast_is_accurate() {
        for i in -2000..=2000 {
            let x = i as f64 * 1e-2;
            let want = 1.0 / (1.0 + (-x).exp());
            assert!(
                (sigmoid_fast(x as f32) as f64 - want).abs() < 3e-7,
                "x = {x}"
            );
        }
    }

    #[test]
    fn derivatives_match_finite_differences() {
        for act in [
            Activation::Tanh,
            Activation::Relu,
            Activation::LeakyRelu(0.1),
            Activation::Sigmoid,
        ] {
            for &x in &[-2.0f32, -0.7, 0.3, 1.5] {
                let h = 1e-2f32;
                let fd = (act.apply(x + h) - act.apply(x - h)) / (2.0 * h);
                let d = act.derivative_from_output(act.apply(x));
                assert!((fd - d).abs() < 2e-3, "{act} at {x}: fd {fd} vs {d}");
            }
        }
    }
}
