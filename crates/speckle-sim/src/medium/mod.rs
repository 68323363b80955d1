//! Scattering media: what turns a batch of binary feature vectors into complex fields.
//!
//! A medium works in *raw units*: its entries need not have the documented variance (the dense
//! medium stores integers, see [`crate::rng::QUANT`]); [`Medium::raw_entry_variance`] says what
//! `E|entry|²` is, and the device rescales raw fields into physical ones.

pub(crate) mod dense;
pub(crate) mod structured;

use rayon::prelude::*;
use speckle_hal::{Error, PackedFrames};

/// Receives consecutive output ranges of a batch's fields: `(first_output, rows, re, im)` with
/// `re[b * rows + r]` the real part of output `first_output + r` of frame `b` (column-major
/// `rows × batch`), likewise `im`.
pub(crate) type FieldSink<'a> = dyn FnMut(usize, usize, &[f32], &[f32]) + 'a;

/// A scattering medium between the DMD and the camera.
pub(crate) trait Medium: Send {
    /// Computes the raw fields `R · x` of `batch` frames. `x` is `batch × input_dim`, frame after
    /// frame, every value 0.0 or 1.0. Results go to `sink`, output range by output range; the
    /// ranges cover `0 .. output_dim` in order.
    fn transmit(&mut self, x: &[f32], batch: usize, sink: &mut FieldSink<'_>) -> Result<(), Error>;

    /// Intensities `scale · |R·x|²` of `batch` frames into `out` (`batch × outputs`, frame
    /// after frame). The default goes through [`Medium::transmit`]; a medium may fuse the
    /// squared modulus into its last pass (the result must be the same bits).
    fn intensities(
        &mut self,
        x: &[f32],
        batch: usize,
        scale: f32,
        out: &mut [f32],
    ) -> Result<(), Error> {
        intensities_from_fields(self, x, batch, scale, out)
    }

    /// Intensities as [`Medium::intensities`] straight from bit-packed frames (no unpacked
    /// copy), the same values; `false`, computing nothing, where the medium has no such path.
    fn intensities_packed(
        &mut self,
        _frames: &PackedFrames<'_>,
        _scale: f32,
        _out: &mut [f32],
    ) -> Result<bool, Error> {
        Ok(false)
    }

    /// Puts the medium in drift epoch `epoch` (epoch 0 is the initial matrix). A medium without
    /// drift ignores it.
    fn set_epoch(&mut self, epoch: u64) -> Result<(), Error>;

    /// Raw entry (output `j`, feature `i`) at the current epoch, as (re, im).
    fn raw_entry(&self, j: usize, i: usize) -> (f32, f32);

    /// `E|raw entry|²`.
    fn raw_entry_variance(&self) -> f64;

    /// Bytes of matrix the medium holds now.
    fn matrix_bytes(&self) -> usize;

    /// Most frames one `transmit` call should take (its working memory grows with the batch).
    fn max_sub_batch(&self) -> usize {
        usize::MAX
    }
}

/// [`Medium::intensities`] through [`Medium::transmit`]: `scale · (re² + im²)` of each field.
pub(crate) fn intensities_from_fields<M: Medium + ?Sized>(
    medium: &mut M,
    x: &[f32],
    batch: usize,
    scale: f32,
    out: &mut [f32],
) -> Result<(), Error> {
    let m = out.len() / batch.max(1);
    medium.transmit(x, batch, &mut |j0, rows, re, im| {
        out.par_chunks_mut(m)
            .zip(re.par_chunks(rows).zip(im.par_chunks(rows)))
            .for_each(|(dst, (re, im))| {
                for ((d, &a), &b) in dst[j0..j0 + rows].iter_mut().zip(re).zip(im) {
                    *d = (a * a + b * b) * scale;
                }
            });
    })
}
