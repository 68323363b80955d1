//! `speckle.Projector`: the linear random projection `y = x·P` that DFA consumes.
use std::sync::Mutex;

use numpy::{PyArrayMethods, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use speckle_devices::batch::project_rows;
use speckle_devices::{open_projector as open_hal_projector, DeviceSpec, Encoding};
use speckle_hal::{ProjectorInfo, RandomProjector};

use crate::errors::SpeckleErr;
use crate::{args, arrays, lock};

/// A linear random projector opened from a device SPEC: float32 vectors in, `x·P` out, P of
/// (nearly) iid N(0, 1) entries up to `info["entry_variance"]`.
///
/// Made by `speckle.open_projector`. Calls from several threads are serialised; the GIL is
/// released while the projector works.
#[pyclass(frozen, module = "speckle._speckle", name = "Projector")]
pub struct Projector {
    state: Mutex<Option<Box<dyn RandomProjector + Send>>>,
    spec: String,
    seed: u64,
    encoding: Option<String>,
    info: ProjectorInfo,
}

/// `open_projector(spec, input_dim, output_dim, seed=0, encoding="ternary", overrides=None)`.
#[pyfunction]
#[pyo3(signature = (spec, input_dim, output_dim, seed = None, encoding = None, overrides = None))]
pub fn open_projector(
    py: Python<'_>,
    spec: &Bound<'_, PyAny>,
    input_dim: &Bound<'_, PyAny>,
    output_dim: &Bound<'_, PyAny>,
    seed: Option<&Bound<'_, PyAny>>,
    encoding: Option<&Bound<'_, PyAny>>,
    overrides: Option<&Bound<'_, PyAny>>,
) -> PyResult<Projector> {
    let spec = args::spec(spec)?;
    let input_dim = args::dimension(input_dim, "input_dim")?;
    let output_dim = args::dimension(output_dim, "output_dim")?;
    let seed = match seed {
        Some(s) => args::seed(s)?,
        None => 0,
    };
    let (encoding, encoding_text) = match encoding.filter(|e| !e.is_none()) {
        Some(e) => args::encoding(e)?,
        None => (Encoding::default(), "ternary".to_string()),
    };
    let table = args::overrides(overrides)?;
    let projector = py.detach(|| {
        open_hal_projector(&spec, encoding, &table, input_dim, output_dim, seed).map_err(|e| {
            SpeckleErr::context(format_args!("cannot open a linear projector on {spec}"), &e)
        })
    })?;
    let info = projector.info();
    Ok(Projector {
        state: Mutex::new(Some(projector)),
        spec: spec.to_string(),
        seed,
        // The digital projector ignores the encoding.
        encoding: (spec != DeviceSpec::Digital).then_some(encoding_text),
        info,
    })
}

#[pymethods]
impl Projector {
    /// Projects each row of `x` (a 2-D `float32` array, batch × input_dim, finite values) and
    /// returns `x·P`, a `float32` array batch × output_dim.
    fn project<'py>(&self, py: Python<'py>, x: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let x = arrays::float(x, self.info.input_dim)?;
        let rows = x.shape()[0];
        let out = arrays::zeros::<f32>(py, rows, self.info.output_dim)?;
        if rows > 0 {
            let mut out_rw = out.readwrite();
            let ys = out_rw.as_slice_mut().expect("a new array is contiguous");
            let xs = x.as_slice().expect("made contiguous by arrays::float");
            let cols = self.info.input_dim;
            lock(py, &self.state, "projector", |projector| {
                arrays::check_finite(xs, cols)?;
                project_rows(projector, xs, rows, ys)?;
                Ok(())
            })?;
        }
        Ok(out.into_any())
    }

    /// The projector: `spec`, `seed`, `encoding` (None for `digital`, which has none),
    /// `identity`, `input_dim`, `output_dim`, `entry_variance` (of P's entries) and
    /// `frames_per_vector` (device frames one projected vector costs; 0 for `digital`).
    #[getter]
    fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("spec", &self.spec)?;
        d.set_item("seed", self.seed)?;
        d.set_item("encoding", &self.encoding)?;
        d.set_item("identity", &self.info.identity)?;
        d.set_item("input_dim", self.info.input_dim)?;
        d.set_item("output_dim", self.info.output_dim)?;
        d.set_item("entry_variance", self.info.entry_variance)?;
        d.set_item("frames_per_vector", self.info.frames_per_vector)?;
        Ok(d)
    }

    /// Length of each input vector.
    #[getter]
    fn input_dim(&self) -> usize {
        self.info.input_dim
    }

    /// Length of each output vector.
    #[getter]
    fn output_dim(&self) -> usize {
        self.info.output_dim
    }

    /// Device frames shown and the time they take on the device (seconds) since the
    /// projector was opened (zero for `digital`).
    #[getter]
    fn counters<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let c = lock(py, &self.state, "projector", |p| Ok(p.counters()))?;
        crate::device::counters_dict(py, c)
    }

    /// Whether `close` was called.
    #[getter]
    fn closed(&self, py: Python<'_>) -> bool {
        crate::is_closed(py, &self.state)
    }

    /// Releases the projector and its device. Later calls raise `InputError`.
    fn close(&self, py: Python<'_>) {
        crate::close(py, &self.state);
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, PyTuple>) -> bool {
        crate::close(py, &self.state);
        false
    }

    fn __repr__(&self) -> String {
        format!(
            "speckle.Projector(spec='{}', input_dim={}, output_dim={}, seed={}, encoding={})",
            self.spec,
            self.info.input_dim,
            self.info.output_dim,
            self.seed,
            self.encoding
                .as_deref()
                .map_or("None".to_string(), |e| format!("'{e}'"))
        )
    }
}
