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
            format!("{} trailing bytes after the {dims:?} data", have - total),
        ));
    }
    Ok((dims, header_len))
}

/// Reads an IDX image file (3 dimensions: count × rows × columns) into a `count × (rows·cols)`
/// matrix with pixels scaled to `[0, 1]`.
pub fn read_idx_images(path: &Path) -> Result<Array2<f32>, DataError> {
    let bytes = read_maybe_gz(path)?;
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
    Array2::from_shape_vec((n, features), data)
        .map_err(|e| DataError::format(path, format!("bad shape: {e}")))
}

/// Reads an IDX label file (1 dimension), checking that every label is below `classes`.
pub fn read_idx_labels(path: &Path, classes: usize) -> Result<Vec<u8>, DataError> {
    let bytes = read_maybe_gz(path)?;
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

/// Reads a whole file, gunzipping it when it starts with the gzip magic bytes.
fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, DataError> {
    use std::io::Read;
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(bytes.len() * 4);
        flate2::read::MultiGzDecoder::new(&bytes[..])
            .read_to_end(&mut out)
            .map_err(|e| {
                DataError::format(path, format!("corrupt or truncated gzip data ({e})"))
            })?;
        Ok(out)
    } else {
        Ok(bytes)
    }
}
