//! Numpy arrays in: checked for type, rank, dtype and width with the command line's wording,
//! read in place when they are C-contiguous and aligned (otherwise numpy copies them once, same
//! dtype), never cast.
use numpy::npyffi::{npy_intp, PY_ARRAY_API};
use numpy::{
    dtype, Element, PyArray2, PyArrayDescrMethods, PyArrayMethods, PyReadonlyArray2,
    PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::prelude::*;

use crate::errors::SpeckleErr;

/// What a method needs, for error messages: `transform` (binary frames) or `project` (floats).
#[derive(Clone, Copy)]
pub enum Need {
    /// 0/1 values as `uint8` or `bool`.
    Binary,
    /// `float32` values.
    Float,
}

fn shape_text(shape: &[usize]) -> String {
    format!("{shape:?}")
}

/// `x` as a 2-D numpy array with the dtype `need` asks for and `width` columns, or an
/// `InputError` naming the problem.
fn checked<'py>(
    x: &Bound<'py, PyAny>,
    need: Need,
    width: usize,
    what: &str,
) -> PyResult<Bound<'py, PyUntypedArray>> {
    let py = x.py();
    let array = x.cast::<PyUntypedArray>().map_err(|_| {
        let type_name = x
            .get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| "object".into());
        let want = match need {
            Need::Binary => "numpy.uint8 or bool",
            Need::Float => "numpy.float32",
        };
        SpeckleErr::input(format!(
            "x must be a 2-D numpy array ({want}), got {type_name}"
        ))
    })?;
    let shape = array.shape();
    if shape.len() != 2 {
        return Err(SpeckleErr::input(format!(
            "x has {} dimension(s) (shape {}); expected a 2-D array (batch × features)",
            shape.len(),
            shape_text(shape)
        ))
        .into());
    }
    let descr = array.dtype();
    let ok = match need {
        Need::Binary => {
            descr.is_equiv_to(&dtype::<u8>(py)) || descr.is_equiv_to(&dtype::<bool>(py))
        }
        Need::Float => descr.is_equiv_to(&dtype::<f32>(py)),
    };
    if !ok {
        let name = descr.str()?.to_string();
        let message = match need {
            Need::Binary => format!(
                "x has dtype {name}; {what} needs uint8 or bool values 0/1 (float32 input goes through a projector: speckle.open_projector)"
            ),
            Need::Float => format!(
                "x has dtype {name}; {what} needs float32 values (convert explicitly, e.g. x.astype(numpy.float32))"
            ),
        };
        return Err(SpeckleErr::input(message).into());
    }
    if shape[1] != width {
        return Err(SpeckleErr::input(format!(
            "x has {} features (shape {}) but the {} was opened with input_dim {width}",
            shape[1],
            shape_text(shape),
            match need {
                Need::Binary => "device",
                Need::Float => "projector",
            }
        ))
        .into());
    }
    Ok(array.clone())
}

/// A C-contiguous, aligned version of `array`: itself when it already is, else numpy's copy
/// (`ndarray.copy()`, same dtype, C order).
fn contiguous<'py>(array: Bound<'py, PyUntypedArray>) -> PyResult<Bound<'py, PyUntypedArray>> {
    if array.is_c_contiguous() && array.is_aligned() {
        return Ok(array);
    }
    Ok(array.call_method0("copy")?.cast_into::<PyUntypedArray>()?)
}

/// Binary frames: a 2-D `uint8` or `bool` array, `width` columns, viewed as `uint8` (a `bool`
/// byte other than 0 or 1 is then reported as non-binary, not read as a Rust `bool`).
pub fn binary<'py>(x: &Bound<'py, PyAny>, width: usize) -> PyResult<PyReadonlyArray2<'py, u8>> {
    let py = x.py();
    let array = checked(x, Need::Binary, width, "transform")?;
    let array = if array.dtype().is_equiv_to(&dtype::<bool>(py)) {
        array
            .call_method1("view", (dtype::<u8>(py),))?
            .cast_into::<PyUntypedArray>()?
    } else {
        array
    };
    let array = contiguous(array)?.cast_into::<PyArray2<u8>>()?;
    array
        .try_readonly()
        .map_err(|e| SpeckleErr::input(format!("x cannot be read: {e}")).into())
}

/// Float vectors: a 2-D `float32` array with `width` columns.
pub fn float<'py>(x: &Bound<'py, PyAny>, width: usize) -> PyResult<PyReadonlyArray2<'py, f32>> {
    let array = checked(x, Need::Float, width, "project")?;
    let array = contiguous(array)?.cast_into::<PyArray2<f32>>()?;
    array
        .try_readonly()
        .map_err(|e| SpeckleErr::input(format!("x cannot be read: {e}")).into())
}

/// A new C-ordered `rows × cols` array of zeros, or numpy's own error (a `MemoryError` for an
/// array too large to allocate) rather than a panic.
pub fn zeros<T: Element>(
    py: Python<'_>,
    rows: usize,
    cols: usize,
) -> PyResult<Bound<'_, PyArray2<T>>> {
    let too_large =
        |_| SpeckleErr::input(format!("an output of {rows} × {cols} values is too large"));
    let mut dims: [npy_intp; 2] = [
        npy_intp::try_from(rows).map_err(too_large)?,
        npy_intp::try_from(cols).map_err(too_large)?,
    ];
    // SAFETY: what numpy's `PyArray::zeros` does (PyArray_Zeros steals the dtype reference that
    // `into_dtype_ptr` hands over), except that a NULL result is numpy's raised error, returned
    // as such instead of a panic.
    let ptr = unsafe {
        PY_ARRAY_API.PyArray_Zeros(py, 2, dims.as_mut_ptr(), dtype::<T>(py).into_dtype_ptr(), 0)
    };
    if ptr.is_null() {
        return Err(PyErr::fetch(py));
    }
    // SAFETY: a new, owned 2-D array of dtype T.
    Ok(unsafe { Bound::from_owned_ptr(py, ptr).cast_into_unchecked() })
}

/// The first non-finite value of a row-major `rows × cols` matrix, as the command line reports
/// it (`input is not finite: NaN at row 0, column 1`).
pub fn check_finite(values: &[f32], cols: usize) -> Result<(), SpeckleErr> {
    match values.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(pos) => Err(SpeckleErr::input(format!(
            "input is not finite: {} at row {}, column {}",
            values[pos],
            pos / cols.max(1),
            pos % cols.max(1)
        ))),
    }
}
