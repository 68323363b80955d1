//! speckle's Python exceptions, made at import time with `type(name, bases, dict)` so that an
//! exception can derive from both `speckle.SpeckleError` and a builtin (`ValueError`, `OSError`,
//! `TimeoutError`), and the conversion of HAL errors into them.
use pyo3::exceptions::{PyException, PyOSError, PyTimeoutError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};
use speckle_hal::{Error, ErrorKind};

/// The exception classes, created once per interpreter.
struct Classes {
    base: Py<PyType>,
    input: Py<PyType>,
    unsupported: Py<PyType>,
    device: Py<PyType>,
    link: Py<PyType>,
    timeout: Py<PyType>,
}

static CLASSES: PyOnceLock<Classes> = PyOnceLock::new();

/// Which exception a [`SpeckleErr`] becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// `speckle.InputError` (also a `ValueError`): bad arguments and arrays.
    Input,
    /// `speckle.UnsupportedError` (also a `ValueError`): something the device cannot do.
    Unsupported,
    /// `speckle.DeviceError`: the device, its calibration or the library failed.
    Device,
    /// `speckle.LinkError` (also an `OSError`): the link or an I/O operation failed.
    Link,
    /// `speckle.LinkTimeoutError` (also a `TimeoutError`): no answer in time.
    Timeout,
}

/// An error on its way to Python: its class, the HAL error kind it came from, and the one-line
/// message that the command line prints after `error: `. Plain Rust data, so it can be made
/// while the GIL is released.
#[derive(Debug)]
pub struct SpeckleErr {
    class: Class,
    kind: String,
    message: String,
}

impl SpeckleErr {
    /// A bad argument or array (`speckle.InputError`, a `ValueError`).
    pub fn input(message: impl Into<String>) -> Self {
        Self {
            class: Class::Input,
            kind: ErrorKind::InvalidInput.to_string(),
            message: message.into(),
        }
    }

    /// Something the device cannot do (`speckle.UnsupportedError`, a `ValueError`).
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self {
            class: Class::Unsupported,
            kind: ErrorKind::Unsupported.to_string(),
            message: message.into(),
        }
    }

    /// A failure of the device or of speckle itself (`speckle.DeviceError`).
    pub fn device(message: impl Into<String>) -> Self {
        Self {
            class: Class::Device,
            kind: ErrorKind::Other.to_string(),
            message: message.into(),
        }
    }

    /// A HAL error with `context` before its message, as the command line words it
    /// (`cannot open device sim: ...`).
    pub fn context(context: impl std::fmt::Display, e: &Error) -> Self {
        let mut err = Self::from(e);
        err.message = format!("{context}: {}", err.message);
        err
    }
}

impl From<&Error> for SpeckleErr {
    fn from(e: &Error) -> Self {
        let class = match e.kind() {
            ErrorKind::InvalidInput | ErrorKind::DimensionMismatch => Class::Input,
            ErrorKind::Unsupported => Class::Unsupported,
            ErrorKind::Timeout => Class::Timeout,
            ErrorKind::Link | ErrorKind::Protocol | ErrorKind::Io => Class::Link,
            _ => Class::Device,
        };
        Self {
            class,
            kind: e.kind().to_string(),
            // The message and its source on one line, as the command line prints it.
            message: e.to_string().replace('\n', " "),
        }
    }
}

impl From<Error> for SpeckleErr {
    fn from(e: Error) -> Self {
        Self::from(&e)
    }
}

impl From<SpeckleErr> for PyErr {
    fn from(e: SpeckleErr) -> Self {
        Python::attach(|py| {
            let classes = match classes(py) {
                Ok(c) => c,
                Err(err) => return err,
            };
            let class = match e.class {
                Class::Input => &classes.input,
                Class::Unsupported => &classes.unsupported,
                Class::Device => &classes.device,
                Class::Link => &classes.link,
                Class::Timeout => &classes.timeout,
            };
            let err = PyErr::from_type(class.bind(py).clone(), e.message);
            if let Err(set) = err.value(py).setattr("kind", e.kind) {
                return set;
            }
            err
        })
    }
}

fn make_class(
    py: Python<'_>,
    name: &str,
    bases: &[Bound<'_, PyType>],
    kind: &str,
    doc: &str,
) -> PyResult<Py<PyType>> {
    let namespace = PyDict::new(py);
    namespace.set_item("__module__", "speckle")?;
    namespace.set_item("__doc__", doc)?;
    // `kind` is set on every instance raised by speckle; the class's own is a default for
    // instances raised by the Python layer or by hand.
    namespace.set_item("kind", kind)?;
    let class = py
        .get_type::<PyType>()
        .call1((name, PyTuple::new(py, bases)?, namespace))?;
    Ok(class.cast_into::<PyType>()?.unbind())
}

fn classes(py: Python<'_>) -> PyResult<&Classes> {
    CLASSES.get_or_try_init(py, || {
        let base = make_class(
            py,
            "SpeckleError",
            &[py.get_type::<PyException>()],
            "other",
            "Base class of every error speckle raises. `kind` names the device layer's error \
             kind ('invalid input', 'dimension mismatch', 'unsupported', 'calibration', \
             'timeout', 'link', 'protocol', 'device', 'I/O' or 'other').",
        )?;
        let input = make_class(
            py,
            "InputError",
            &[base.bind(py).clone(), py.get_type::<PyValueError>()],
            "invalid input",
            "A bad argument: an array of the wrong dtype, rank, width or values (non-binary, \
             NaN), a malformed device SPEC, encoding or override, a dimension the device \
             lacks. Also a ValueError.",
        )?;
        let unsupported = make_class(
            py,
            "UnsupportedError",
            &[base.bind(py).clone(), py.get_type::<PyValueError>()],
            "unsupported",
            "Something the device cannot do, such as raw frames from the linear-only digital \
             projector. Also a ValueError.",
        )?;
        let device = make_class(
            py,
            "DeviceError",
            &[base.bind(py).clone()],
            "device",
            "The device failed: a fault it reported, a failed calibration, a camera value out \
             of range.",
        )?;
        let link = make_class(
            py,
            "LinkError",
            &[base.bind(py).clone(), py.get_type::<PyOSError>()],
            "link",
            "The link to the device or an I/O operation failed: a missing or failing serial \
             port, a protocol fault, an unreadable device config. Also an OSError.",
        )?;
        let timeout = make_class(
            py,
            "LinkTimeoutError",
            &[link.bind(py).clone(), py.get_type::<PyTimeoutError>()],
            "timeout",
            "The device did not answer in time. Also a TimeoutError.",
        )?;
        Ok(Classes {
            base,
            input,
            unsupported,
            device,
            link,
            timeout,
        })
    })
}

/// Adds the exception classes to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let c = classes(py)?;
    m.add("SpeckleError", c.base.bind(py))?;
    m.add("InputError", c.input.bind(py))?;
    m.add("UnsupportedError", c.unsupported.bind(py))?;
    m.add("DeviceError", c.device.bind(py))?;
    m.add("LinkError", c.link.bind(py))?;
    m.add("LinkTimeoutError", c.timeout.bind(py))?;
    Ok(())
}
