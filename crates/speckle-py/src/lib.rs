//! # speckle-py
//!
//! The native module `speckle._speckle` of the Python package `speckle`: optical devices and
//! linear projectors opened from the command line's device SPECs and overrides, numpy arrays in
//! and out (read in place when C-contiguous, written straight into the result), the GIL released
//! while a device works, and every error a Python exception with the command line's one-line
//! message. The pure-Python layer (`python/speckle`) re-exports it and adds the
//! lightonml-compatible facade.
use std::sync::Mutex;

use pyo3::prelude::*;

mod args;
mod arrays;
mod device;
mod errors;
mod projector;

use errors::SpeckleErr;

/// Runs `f` on the open state behind `state` with the GIL released. A closed object is an
/// `InputError`; a state left poisoned by a panic in an earlier call is a `DeviceError`.
pub(crate) fn lock<S: Send, R: Send>(
    py: Python<'_>,
    state: &Mutex<Option<S>>,
    what: &'static str,
    f: impl FnOnce(&mut S) -> Result<R, SpeckleErr> + Send,
) -> Result<R, SpeckleErr> {
    py.detach(|| {
        let mut guard = state.lock().map_err(|_| {
            SpeckleErr::device(format!(
                "the {what} is unusable: an earlier call failed inside speckle"
            ))
        })?;
        let open = guard
            .as_mut()
            .ok_or_else(|| SpeckleErr::input(format!("the {what} is closed")))?;
        f(open)
    })
}

pub(crate) fn is_closed<S: Send>(py: Python<'_>, state: &Mutex<Option<S>>) -> bool {
    py.detach(|| match state.lock() {
        Ok(guard) => guard.is_none(),
        Err(poisoned) => poisoned.into_inner().is_none(),
    })
}

pub(crate) fn close<S: Send>(py: Python<'_>, state: &Mutex<Option<S>>) {
    // Dropping the device (closing a serial port) may take a moment: without the GIL.
    let taken = py.detach(|| match state.lock() {
        Ok(mut guard) => guard.take(),
        Err(poisoned) => poisoned.into_inner().take(),
    });
    py.detach(move || drop(taken));
}

/// `_dmd_shape(spec, overrides=None)`: the mirror grid of a simulated device's DMD as
/// `(cols, rows)`, lightonml's `device.input_shape`; `None` for a device without one.
#[pyfunction]
#[pyo3(signature = (spec, overrides = None))]
fn _dmd_shape(
    spec: &Bound<'_, PyAny>,
    overrides: Option<&Bound<'_, PyAny>>,
) -> PyResult<Option<(u32, u32)>> {
    let spec = args::spec(spec)?;
    let table = args::overrides(overrides)?;
    match &spec {
        speckle_devices::DeviceSpec::Sim(source) => {
            let config = speckle_devices::sim_config(source, &table)
                .map_err(|e| SpeckleErr::context(format_args!("cannot open device {spec}"), &e))?;
            Ok(Some((config.dmd.cols, config.dmd.rows)))
        }
        _ => Ok(None),
    }
}

#[pymodule]
fn _speckle(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::register(m)?;
    m.add_class::<device::Device>()?;
    m.add_class::<projector::Projector>()?;
    m.add_function(wrap_pyfunction!(device::open_device, m)?)?;
    m.add_function(wrap_pyfunction!(projector::open_projector, m)?)?;
    m.add_function(wrap_pyfunction!(_dmd_shape, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("SPEC_GRAMMAR", speckle_devices::SPEC_GRAMMAR)?;
    m.add(
        "LINEAR_CHUNK_ROWS",
        speckle_devices::batch::LINEAR_CHUNK_ROWS,
    )?;
    Ok(())
}
