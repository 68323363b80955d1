//! Consistent Overhead Byte Stuffing (Cheshire & Baker, 1999).
//!
//! Written here rather than taken from the `cobs` crate because that crate's current release
//! requires a newer Rust than the workspace's `rust-version`, and because the streaming
//! [`Deframer`](crate::Deframer) wants an allocation-reusing `Vec` interface. Both functions are
//! covered by property tests and by the fuzz target.

use alloc::vec::Vec;

/// Why a COBS block sequence could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CobsError {
    /// A zero byte inside an encoded frame (zero is the delimiter and never appears inside).
    ZeroByte,
    /// A block code points past the end of the frame.
    Truncated,
}

/// Largest encoded size of `len` bytes, without the delimiter.
pub const fn max_encoded_len(len: usize) -> usize {
    len + len / 254 + 1
}

/// Appends the COBS encoding of `src` to `out` (no delimiter).
///
/// Canonical form: a block code `0xFF` is followed by 254 non-zero bytes and no implied zero;
/// after the last data byte a final block is always closed, so 254 non-zero bytes encode as
/// `FF <254 bytes> 01`.
pub fn encode_into(src: &[u8], out: &mut Vec<u8>) {
    out.reserve(max_encoded_len(src.len()));
    let mut code_at = out.len();
    out.push(0);
    let mut code: u8 = 1;
    for &b in src {
        if b == 0 {
            out[code_at] = code;
            code_at = out.len();
            out.push(0);
            code = 1;
        } else {
            out.push(b);
            code += 1;
            if code == 0xFF {
                out[code_at] = code;
                code_at = out.len();
                out.push(0);
                code = 1;
            }
        }
    }
    out[code_at] = code;
}

/// Appends the decoding of the COBS frame `src` (no delimiter) to `out`.
///
/// Accepts the canonical form of [`encode_into`] and also a frame whose last block is a
/// `0xFF` block with no closing `01` block.
pub fn decode_into(src: &[u8], out: &mut Vec<u8>) -> Result<(), CobsError> {
    out.reserve(src.len());
    let mut i = 0;
    while i < src.len() {
        let code = src[i];
        if code == 0 {
            return Err(CobsError::ZeroByte);
        }
        i += 1;
        let n = usize::from(code) - 1;
        let block = src.get(i..i + n).ok_or(CobsError::Truncated)?;
        if block.contains(&0) {
            return Err(CobsError::ZeroByte);
        }
        out.extend_from_slice(block);
        i += n;
        if code != 0xFF && i < src.len() {
            out.push(0);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn enc(src: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        encode_into(src, &mut v);
        v
    }

    #[test]
    fn textbook_examples() {
        assert_eq!(enc(&[]), vec![0x01]);
        assert_eq!(enc(&[0x00]), vec![0x01, 0x01]);
        assert_eq!(enc(&[0x00, 0x00]), vec![0x01, 0x01, 0x01]);
        assert_eq!(
            enc(&[0x11, 0x22, 0x00, 0x33]),
            vec![0x03, 0x11, 0x22, 0x02, 0x33]
        );
        assert_eq!(
            enc(&[0x11, 0x00, 0x00, 0x00]),
            vec![0x02, 0x11, 0x01, 0x01, 0x01]
        );
        let run: Vec<u8> = (1..=254).collect();
        let e = enc(&run);
        assert_eq!(e.len(), 256);
        assert_eq!((e[0], e[255]), (0xFF, 0x01));
    }

    #[test]
    fn decoder_rejects_bad_blocks() {
        let mut out = Vec::new();
        assert_eq!(
            decode_into(&[0x03, 0x11], &mut out),
            Err(CobsError::Truncated)
        );
        assert_eq!(
            decode_into(&[0x02, 0x00], &mut out),
            Err(CobsError::ZeroByte)
        );
    }
}
