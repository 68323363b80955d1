//! IDX files (the MNIST and Fashion-MNIST format): a big-endian header (magic `0x0000_08NN`
//! where NN is the number of dimensions, then one u32 per dimension) followed by unsigned bytes.

use super::error::DataError;
use ndarray::Array2;
use std::path::Path;

const UBYTE: u8 = 0x08;

/// Parses an IDX header: checks the magic number and element type and returns the dimensions
/// and the offset of the data.
fn parse_header(
    path: &Path,
    bytes: &[u8],
    want_ndim: u8,
) -> Result<(Vec<usize>, usize), DataError> {
    if bytes.len() < 4 {
        return Err(DataError::format(path, "truncated IDX header"));
    }
    if bytes[0] != 0 || bytes[1] != 0 || bytes[2] != UBYTE || bytes[3] != want_ndim {
        return Err(DataError::format(
            path,
            format!(
                "bad IDX magic number 0x{:02x}{:02x}{:02x}{:02x}, expected 0x000008{:02x} (unsigned bytes, {} dimensions)",
                bytes[0], bytes[1], bytes[2], bytes[3], want_ndim, want_ndim
            ),
        ));
    }
    let ndim = usize::from(want_ndim);
    let header_len = 4 + 4 * ndim;
    if bytes.len() < header_len {
        return Err(DataError::format(path, "truncated IDX header"));
    }
    let dims: Vec<usize> = (0..ndim)
        .map(|d| {
            let o = 4 + 4 * d;
            u32::from_be_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]) as usize
        })
        .collect();
    let total = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| DataError::format(path, "IDX dimensions overflow"))?;
    let have = bytes.len() - header_len;
    if have < total {
        return Err(DataError::format(
            path,
            format!(
                "truncated: header announces {dims:?} = {total} bytes of data, file has {have}"
            ),
        ));
    }
    if have > total {
        return Err(DataError::format(
            path,
            format!("trailing bytes after the {dims:?} data"),
        ));
    }
    Ok((dims, header_len))
}

/// Reads an IDX file of `ndim` dimensions, decompressing no more than its header announces;
/// the announced size is checked against the memory limit, counting `bytes_per_value` for the
/// data and what the caller makes of it.
fn read_idx(path: &Path, ndim: u8, bytes_per_value: u64) -> Result<Vec<u8>, DataError> {
    let header_len = 4 + 4 * usize::from(ndim);
    read_maybe_gz(path, header_len, |header| {
        if header[..4] != [0, 0, UBYTE, ndim] {
            // Not an IDX file of this kind: read no data, the caller names the bad magic.
            return Ok(0);
        }
        let dims: Vec<u64> = header[4..]
            .chunks_exact(4)
            .map(|d| u64::from(u32::from_be_bytes([d[0], d[1], d[2], d[3]])))
            .collect();
        let request = dims
            .iter()
            .fold(
                speckle_hal::memory::Request::new(
                    path.display().to_string(),
                    format!("the {dims:?} values its header announces"),
                ),
                |r, &d| r.times(d),
            )
            .of(bytes_per_value);
        request
            .check()
            .map_err(|e| DataError::format(path, e.message().to_string()))?;
        // Within the memory limit, so the product fits 64 bits.
        Ok(dims.iter().product())
    })
}

/// Reads an IDX image file (3 dimensions: count × rows × columns) into a `count × (rows·cols)`
/// matrix with pixels scaled to `[0, 1]`.
pub fn read_idx_images(path: &Path) -> Result<Array2<f32>, DataError> {
    read_idx_images_shaped(path).map(|(images, _)| images)
}

/// [`read_idx_images`], with the rows and columns of one image.
pub(crate) fn read_idx_images_shaped(
    path: &Path,
) -> Result<(Array2<f32>, (usize, usize)), DataError> {
    // One byte per pixel read, four for its f32.
    let bytes = read_idx(path, 3, 5)?;
    let (dims, offset) = parse_header(path, &bytes, 3)?;
    let (n, features) = (dims[0], dims[1] * dims[2]);
    if n == 0 || features == 0 {
        return Err(DataError::format(
            path,
            format!("empty image file {dims:?}"),
        ));
    }
    let data: Vec<f32> = bytes[offset..]
        .iter()
        .map(|&b| f32::from(b) / 255.0)
        .collect();
    let images = Array2::from_shape_vec((n, features), data)
        .map_err(|e| DataError::format(path, format!("bad shape: {e}")))?;
    Ok((images, (dims[1], dims[2])))
}

/// Reads an IDX label file (1 dimension), checking that every label is below `classes`.
pub fn read_idx_labels(path: &Path, classes: usize) -> Result<Vec<u8>, DataError> {
    let bytes = read_idx(path, 1, 2)?;
    let (_, offset) = parse_header(path, &bytes, 1)?;
    let labels = bytes[offset..].to_vec();
    if let Some(i) = labels.iter().position(|&l| usize::from(l) >= classes) {
        return Err(DataError::format(
            path,
            format!(
                "label {} of item {} is out of range (expected 0..{})",
                labels[i], i, classes
            ),
        ));
    }
    Ok(labels)
}

/// Reads a file, gunzipping it when it starts with the gzip magic bytes, and never more than
/// its header announces: the first `header_len` bytes, then at most `data_len(header)` bytes
/// and one more (so that trailing data is seen). `data_len` checks the announced size (against
/// the memory limit); a 9 MB gzip bomb is not inflated to gigabytes. A header shorter than
/// `header_len` is returned as it is, for the caller to report.
fn read_maybe_gz(
    path: &Path,
    header_len: usize,
    data_len: impl FnOnce(&[u8]) -> Result<u64, DataError>,
) -> Result<Vec<u8>, DataError> {
    use std::io::{BufReader, Read};
    let mut file = BufReader::new(std::fs::File::open(path).map_err(|e| DataError::io(path, e))?);
    let mut magic = [0u8; 2];
    let n = file.read(&mut magic).map_err(|e| DataError::io(path, e))?;
    let start = std::io::Cursor::new(magic[..n].to_vec());
    let gzipped = magic[..n] == [0x1f, 0x8b];
    let mut reader: Box<dyn Read> = if gzipped {
        Box::new(flate2::read::MultiGzDecoder::new(start.chain(file)))
    } else {
        Box::new(start.chain(file))
    };
    let read_err = |e: std::io::Error| {
        if gzipped {
            DataError::format(path, format!("corrupt or truncated gzip data ({e})"))
        } else {
            DataError::io(path, e)
        }
    };
    let mut out = Vec::with_capacity(header_len);
    (&mut reader)
        .take(header_len as u64)
        .read_to_end(&mut out)
        .map_err(read_err)?;
    if out.len() < header_len {
        return Ok(out);
    }
    let want = data_len(&out)?;
    reader
        .take(want.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(read_err)?;
    Ok(out)
}
