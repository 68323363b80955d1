//! Reading and writing the `.npy` arrays of `speckle transform`, with the checks the CLI promises:
//! wrong dtype, wrong rank, non-binary values, NaN or Inf, and corrupt files are one-line errors
//! naming the file and the problem; outputs are written atomically (a temporary file in the
//! target's directory, renamed into place once complete), so a failure never leaves a partial file.
//!
//! ```
//! use ndarray::array;
//! use speckle::npy::{read_binary_matrix, write_npy_atomic};
//!
//! let dir = std::env::temp_dir().join(format!("speckle-npy-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let path = dir.join("x.npy");
//! write_npy_atomic(&path, &array![[0u8, 1, 1], [1, 0, 0]]).unwrap();
//! let x = read_binary_matrix(&path).unwrap();
//! assert_eq!((x.rows, x.cols), (2, 3));
//! assert_eq!(x.values, vec![0, 1, 1, 1, 0, 0]);
//! std::fs::remove_dir_all(&dir).unwrap();
//! ```
use anyhow::{bail, Context};
use ndarray::{Array2, ArrayBase, Data, Ix2};
use ndarray_npy::{ReadNpyError, ReadNpyExt, WritableElement, WriteNpyExt};
use speckle::hal::memory;
use std::path::Path;

/// A row-major matrix of 0/1 bytes read from a uint8 or bool `.npy` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinaryMatrix {
    /// Number of rows (vectors in the batch).
    pub rows: usize,
    /// Number of columns (features).
    pub cols: usize,
    /// `rows × cols` values, each 0 or 1.
    pub values: Vec<u8>,
}

/// A row-major float32 matrix read from a `.npy` file, every value finite.
#[derive(Debug, Clone, PartialEq)]
pub struct FloatMatrix {
    /// Number of rows (vectors in the batch).
    pub rows: usize,
    /// Number of columns (features).
    pub cols: usize,
    /// `rows × cols` finite values.
    pub values: Vec<f32>,
}

/// The dtype and shape recorded in a `.npy` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpyHeader {
    /// The numpy type descriptor, e.g. `<f4`, `|u1`, `|b1`.
    pub descr: String,
    /// The shape.
    pub shape: Vec<usize>,
}

impl NpyHeader {
    /// A human name of the dtype: `float32`, `uint8`, `bool`, ... or the descriptor itself.
    pub fn dtype_name(&self) -> String {
        let d = self.descr.trim_start_matches(['<', '>', '|', '=']);
        let name = match d {
            "b1" | "?" => "bool",
            "u1" | "B" => "uint8",
            "i1" | "b" => "int8",
            "u2" => "uint16",
            "i2" => "int16",
            "u4" => "uint32",
            "i4" => "int32",
            "u8" => "uint64",
            "i8" => "int64",
            "f2" => "float16",
            "f4" => "float32",
            "f8" => "float64",
            "c8" => "complex64",
            "c16" => "complex128",
            _ => return format!("'{}'", self.descr),
        };
        name.to_string()
    }
}

fn read_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    memory::Request::new(path.display().to_string(), "reading the file")
        .times(meta.len())
        .check()?;
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// One line from a header parse error: ndarray-npy's syntax errors are a multi-line caret
/// diagram (` --> 1:119`, the header line, `^---`, `= expected value`); keep the position and
/// the reason.
fn header_error_line(e: &dyn std::fmt::Display) -> String {
    let text = e.to_string();
    if !text.contains('\n') {
        return text;
    }
    // "...: syntax error:  --> 1:119", then the diagram, then "= expected value".
    let first = text.lines().next().unwrap_or("");
    let (what, at) = match first.split_once("-->") {
        Some((what, at)) => (what, format!(" at {}", at.trim())),
        None => (first, String::new()),
    };
    let what = what.trim().trim_end_matches(':').trim_end();
    let reason = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("= "))
        .map(|r| format!(": {}", r.trim()))
        .unwrap_or_default();
    format!("{what}{at}{reason}")
}

/// The header, and the number of bytes after it.
fn parse_header(path: &Path, bytes: &[u8]) -> anyhow::Result<(NpyHeader, usize)> {
    let mut rest = bytes;
    let header = ndarray_npy::npy::header::Header::from_reader(&mut rest).map_err(|e| {
        anyhow::anyhow!(
            "{} is not a valid .npy file ({})",
            path.display(),
            header_error_line(&e)
        )
    })?;
    let descr = match header.type_descriptor.as_string() {
        Some(s) => s.clone(),
        None => bail!(
            "{} has a structured dtype ({}); expected a plain numeric array",
            path.display(),
            header.type_descriptor
        ),
    };
    Ok((
        NpyHeader {
            descr,
            shape: header.shape,
        },
        rest.len(),
    ))
}

/// Checks, before anything is allocated, that the file holds the data its header announces:
/// a header claiming 10^12 values in a small file is an error naming the size, not an attempt
/// to allocate it.
fn check_data_size(
    path: &Path,
    header: &NpyHeader,
    data_len: usize,
    item_bytes: u64,
) -> anyhow::Result<()> {
    let values = header
        .shape
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64));
    let need = values.and_then(|v| v.checked_mul(item_bytes));
    match need {
        Some(n) if n <= data_len as u64 => Ok(()),
        _ => bail!(
            "{} is not a valid .npy file: its header announces shape {:?} ({} values, {}) but the file holds {} of data (truncated or corrupt)",
            path.display(),
            header.shape,
            values.map_or_else(|| "more than 2^64".to_string(), |v| v.to_string()),
            need.map_or_else(|| "more than 16 EiB".to_string(), memory::format_bytes),
            memory::format_bytes(data_len as u64)
        ),
    }
}

fn check_rank2(path: &Path, header: &NpyHeader) -> anyhow::Result<()> {
    if header.shape.len() != 2 {
        bail!(
            "{} has {} dimension(s) (shape {:?}); expected a 2-D array (batch × features)",
            path.display(),
            header.shape.len(),
            header.shape
        );
    }
    if header.shape[1] == 0 {
        bail!(
            "{} has shape {:?}: zero features per row",
            path.display(),
            header.shape
        );
    }
    Ok(())
}

fn rephrase(path: &Path, e: ReadNpyError) -> anyhow::Error {
    let what = match e {
        ReadNpyError::MissingData => {
            "the file is truncated: fewer data bytes than its header announces".to_string()
        }
        ReadNpyError::ExtraBytes(n) => format!("{n} unexpected bytes after the array data"),
        ReadNpyError::ParseData(err) => format!("invalid data ({err})"),
        other => other.to_string(),
    };
    anyhow::anyhow!("{} is not a valid .npy file: {what}", path.display())
}

fn into_row_major<A: Clone>(a: Array2<A>) -> Vec<A> {
    if a.is_standard_layout() {
        a.into_raw_vec_and_offset().0
    } else {
        a.iter().cloned().collect()
    }
}

/// Reads a 2-D uint8 or bool `.npy` array whose values are all 0 or 1 (raw device input).
pub fn read_binary_matrix(path: &Path) -> anyhow::Result<BinaryMatrix> {
    let bytes = read_file(path)?;
    let (header, data_len) = parse_header(path, &bytes)?;
    let (rows, cols) = match header.dtype_name().as_str() {
        "uint8" | "bool" => {
            check_rank2(path, &header)?;
            check_data_size(path, &header, data_len, 1)?;
            (header.shape[0], header.shape[1])
        }
        other => bail!(
            "{} has dtype {other}; raw mode needs uint8 or bool values 0/1 (float32 input needs --linear)",
            path.display()
        ),
    };
    let values = if header.dtype_name() == "bool" {
        // ndarray-npy rejects bytes other than 0/1 in a bool array; report that as non-binary.
        match Array2::<bool>::read_npy(&bytes[..]) {
            Ok(a) => into_row_major(a).into_iter().map(u8::from).collect(),
            Err(ReadNpyError::ParseData(_)) => {
                bail!(
                    "{}: input is not binary (a bool byte other than 0 or 1)",
                    path.display()
                )
            }
            Err(e) => return Err(rephrase(path, e)),
        }
    } else {
        let a = Array2::<u8>::read_npy(&bytes[..]).map_err(|e| rephrase(path, e))?;
        into_row_major(a)
    };
    if let Some(pos) = values.iter().position(|&v| v > 1) {
        bail!(
            "{}: input is not binary: value {} at row {}, column {}",
            path.display(),
            values[pos],
            pos / cols,
            pos % cols
        );
    }
    Ok(BinaryMatrix { rows, cols, values })
}

/// Reads a 2-D float32 `.npy` array whose values are all finite (linear-mode input).
pub fn read_float_matrix(path: &Path) -> anyhow::Result<FloatMatrix> {
    let bytes = read_file(path)?;
    let (header, data_len) = parse_header(path, &bytes)?;
    match header.dtype_name().as_str() {
        "float32" => {
            check_rank2(path, &header)?;
            check_data_size(path, &header, data_len, 4)?;
        }
        other => bail!(
            "{} has dtype {other}; --linear needs float32 values",
            path.display()
        ),
    }
    let (rows, cols) = (header.shape[0], header.shape[1]);
    let a = Array2::<f32>::read_npy(&bytes[..]).map_err(|e| rephrase(path, e))?;
    let values = into_row_major(a);
    if let Some(pos) = values.iter().position(|v| !v.is_finite()) {
        bail!(
            "{}: input is not finite: {} at row {}, column {}",
            path.display(),
            values[pos],
            pos / cols,
            pos % cols
        );
    }
    Ok(FloatMatrix { rows, cols, values })
}

/// Writes `array` to `path` atomically: into a temporary file in the same directory, flushed and
/// synced, then renamed over `path`. On any error the temporary file is removed and `path` is
/// left as it was.
pub fn write_npy_atomic<A, S>(path: &Path, array: &ArrayBase<S, Ix2>) -> anyhow::Result<()>
where
    A: WritableElement,
    S: Data<Elem = A>,
{
    speckle_runs::atomic::write_atomic_with(path, |w| {
        array.write_npy(w).map_err(std::io::Error::other)
    })
    .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn dtype_names() {
        let h = |d: &str| {
            NpyHeader {
                descr: d.into(),
                shape: vec![],
            }
            .dtype_name()
        };
        assert_eq!(h("<f4"), "float32");
        assert_eq!(h(">f8"), "float64");
        assert_eq!(h("|u1"), "uint8");
        assert_eq!(h("|b1"), "bool");
        assert_eq!(h("<U3"), "'<U3'");
    }

    #[test]
    fn fortran_order_is_read_row_major() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.npy");
        let a = array![[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]];
        let f = a.t().as_standard_layout().into_owned().reversed_axes(); // Fortran layout
        assert!(!f.is_standard_layout());
        write_npy_atomic(&p, &f).unwrap();
        let m = read_float_matrix(&p).unwrap();
        assert_eq!(m.values, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    }

    #[test]
    fn errors_name_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.npy");
        write_npy_atomic(&p, &array![[0u8, 2]]).unwrap();
        let e = read_binary_matrix(&p).unwrap_err().to_string();
        assert!(e.contains("not binary: value 2 at row 0, column 1"), "{e}");
        write_npy_atomic(&p, &array![[0.0f32, f32::NAN]]).unwrap();
        let e = read_float_matrix(&p).unwrap_err().to_string();
        assert!(e.contains("not finite: NaN at row 0, column 1"), "{e}");
        let e = read_binary_matrix(&p).unwrap_err().to_string();
        assert!(e.contains("dtype float32"), "{e}");
        std::fs::write(&p, b"garbage").unwrap();
        let e = read_float_matrix(&p).unwrap_err().to_string();
        assert!(e.contains("not a valid .npy file"), "{e}");
        // No temporary file was left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }
}
