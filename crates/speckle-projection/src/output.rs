//! The check every projector makes of its outputs before returning them.
use speckle_hal::{Error, ErrorKind};

/// Checks that `output` (rows of `output_dim` values) is finite. The inputs are finite (see
/// `check_projection_buffers`), but finite inputs near the float32 range (1e38) overflow in
/// the products and sums: that is an error naming the row, never ±inf or NaN output.
pub(crate) fn check_finite(output: &[f32], output_dim: usize) -> Result<(), Error> {
    // A branch-free scan first (it vectorizes); the position only when something is wrong.
    if output.iter().fold(true, |ok, v| ok & v.is_finite()) {
        return Ok(());
    }
    match output.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(pos) => Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "row {} of the batch overflows float32 in the projection (output {} is {}); scale the input down",
                pos / output_dim.max(1),
                pos % output_dim.max(1),
                output[pos]
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::GaussianProjector;
    use speckle_hal::RandomProjector;

    #[test]
    fn finite_inputs_that_overflow_are_an_error() {
        let mut p = GaussianProjector::new(16, 8, 0).unwrap();
        let mut y = vec![0f32; 2 * 8];
        let mut x = vec![0.5f32; 2 * 16];
        p.project(&x, 2, &mut y).unwrap();
        x[16..].fill(3e38);
        let e = p.project(&x, 2, &mut y).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(
            e.to_string()
                .contains("row 1 of the batch overflows float32"),
            "{e}"
        );
    }
}
