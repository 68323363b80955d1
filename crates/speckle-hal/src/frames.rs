use crate::{Error, ErrorKind};

/// A batch of binary frames, bit-packed: frame `f` occupies bytes
/// `f * bytes_per_frame .. (f + 1) * bytes_per_frame`, feature `j` of a frame is bit `j % 8`
/// (least significant first) of byte `j / 8`. Padding bits past `width` in the last byte of each
/// frame must be zero.
#[derive(Debug, Clone, Copy)]
pub struct PackedFrames<'a> {
    bytes: &'a [u8],
    frames: usize,
    width: usize,
}

impl<'a> PackedFrames<'a> {
    /// Wraps `bytes` as `frames` frames of `width` features, checking the length and that every
    /// padding bit is zero.
    pub fn new(bytes: &'a [u8], frames: usize, width: usize) -> Result<Self, Error> {
        let per = width.div_ceil(8);
        if frames.checked_mul(per) != Some(bytes.len()) {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "packed frames have {} bytes, expected {} frames × {} bytes ({} features)",
                    bytes.len(),
                    frames,
                    per,
                    width
                ),
            ));
        }
        if width % 8 != 0 && per > 0 {
            let mask: u8 = !((1u16 << (width % 8)) - 1) as u8;
            for f in 0..frames {
                if bytes[f * per + per - 1] & mask != 0 {
                    return Err(Error::new(
                        ErrorKind::InvalidInput,
                        format!("frame {f} has padding bits set past feature {width}"),
                    ));
                }
            }
        }
        Ok(Self {
            bytes,
            frames,
            width,
        })
    }

    /// Number of frames.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// Features per frame.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Checks that the frames are `width` features wide, as `taker` (e.g. `"device"`) takes
    /// them: [`ErrorKind::DimensionMismatch`] otherwise, with the message
    /// `frames are W features wide but the TAKER takes WIDTH`.
    pub fn expect_width(&self, width: usize, taker: &str) -> Result<(), Error> {
        if self.width == width {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::DimensionMismatch,
            format!(
                "frames are {} features wide but the {taker} takes {width}",
                self.width
            ),
        ))
    }

    /// Bytes per frame, `ceil(width / 8)`.
    pub fn bytes_per_frame(&self) -> usize {
        self.width.div_ceil(8)
    }

    /// All bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The bytes of frame `f`. Panics if `f >= frames()`.
    pub fn frame(&self, f: usize) -> &'a [u8] {
        let per = self.bytes_per_frame();
        &self.bytes[f * per..(f + 1) * per]
    }

    /// Feature `j` of frame `f`. Panics if out of range.
    pub fn bit(&self, f: usize, j: usize) -> bool {
        assert!(j < self.width, "feature index out of range");
        self.frame(f)[j / 8] >> (j % 8) & 1 == 1
    }

    /// Frames `start .. start + count` as their own batch. Panics if out of range.
    pub fn slice(&self, start: usize, count: usize) -> PackedFrames<'a> {
        let per = self.bytes_per_frame();
        PackedFrames {
            bytes: &self.bytes[start * per..(start + count) * per],
            frames: count,
            width: self.width,
        }
    }
}

/// Packs `frames × width` values, each 0 or 1, into `out` (cleared first) in the layout of
/// [`PackedFrames`]. A value other than 0 or 1 is an error naming its position.
pub fn pack_bits(
    values: &[u8],
    frames: usize,
    width: usize,
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    if frames.checked_mul(width) != Some(values.len()) {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "{} values cannot be {} frames of {} features",
                values.len(),
                frames,
                width
            ),
        ));
    }
    let per = width.div_ceil(8);
    out.clear();
    out.resize(frames * per, 0);
    for f in 0..frames {
        let row = &values[f * width..(f + 1) * width];
        let dst = &mut out[f * per..(f + 1) * per];
        for (j, &v) in row.iter().enumerate() {
            match v {
                0 => {}
                1 => dst[j / 8] |= 1 << (j % 8),
                other => {
                    return Err(Error::new(
                        ErrorKind::InvalidInput,
                        format!("input is not binary: value {other} at row {f}, column {j}"),
                    ))
                }
            }
        }
    }
    Ok(())
}

/// Unpacks frames into one byte (0 or 1) per feature, `frames × width` values.
pub fn unpack_bits(frames: &PackedFrames<'_>) -> Vec<u8> {
    let mut out = vec![0u8; frames.frames() * frames.width()];
    for f in 0..frames.frames() {
        let src = frames.frame(f);
        for j in 0..frames.width() {
            out[f * frames.width() + j] = src[j / 8] >> (j % 8) & 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_layout_is_lsb_first() {
        let mut out = Vec::new();
        pack_bits(&[1, 0, 0, 0, 0, 0, 0, 0, 0, 1], 1, 10, &mut out).unwrap();
        assert_eq!(out, vec![0b0000_0001, 0b0000_0010]);
    }

    #[test]
    fn round_trip() {
        let values: Vec<u8> = (0..3 * 13).map(|i| ((i * 7) % 3 == 0) as u8).collect();
        let mut packed = Vec::new();
        pack_bits(&values, 3, 13, &mut packed).unwrap();
        let frames = PackedFrames::new(&packed, 3, 13).unwrap();
        assert_eq!(unpack_bits(&frames), values);
        assert!(frames.bit(0, 0));
        assert_eq!(frames.slice(1, 2).frames(), 2);
        frames.expect_width(13, "device").unwrap();
        let err = frames.expect_width(12, "medium").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::DimensionMismatch);
        assert_eq!(
            err.to_string(),
            "frames are 13 features wide but the medium takes 12"
        );
    }

    #[test]
    fn non_binary_value_is_an_error() {
        let err = pack_bits(&[0, 2, 1], 1, 3, &mut Vec::new()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.to_string().contains("value 2 at row 0, column 1"));
    }

    #[test]
    fn padding_bits_and_lengths_are_checked() {
        assert!(PackedFrames::new(&[0b1000_0000], 1, 7).is_err());
        assert!(PackedFrames::new(&[0b0100_0000], 1, 7).is_ok());
        assert!(PackedFrames::new(&[0, 0], 1, 7).is_err());
        assert!(PackedFrames::new(&[], 0, 7).is_ok());
    }
}
