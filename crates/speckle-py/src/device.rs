//! `speckle.Device`: a raw optical device, binary frames in, camera frames out.
use std::sync::Mutex;

use numpy::{PyArrayMethods, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use speckle_devices::batch::{pack_rows, transform_rows, CameraDtype, CameraSample};
use speckle_devices::{full_dims, open_device as open_hal_device, DeviceSpec};
use speckle_hal::{DeviceCounters, DeviceInfo, OpticalDevice, PackedFrames};

use crate::errors::SpeckleErr;
use crate::{args, arrays, lock};

/// What an open device holds between calls.
pub(crate) struct State {
    device: Box<dyn OpticalDevice + Send>,
    /// Bit-packed frames of the last call, reused.
    packed: Vec<u8>,
    /// Camera frames of the last device call, reused.
    camera: Vec<f32>,
}

/// A raw optical device opened from a device SPEC: binary frames in, camera frames out.
///
/// Made by `speckle.open_device`. Calls from several threads are serialised; the GIL is
/// released while the device works.
#[pyclass(frozen, module = "speckle._speckle", name = "Device")]
pub struct Device {
    state: Mutex<Option<State>>,
    spec: String,
    seed: u64,
    input_dim: usize,
    output_dim: usize,
    full: Option<(usize, usize)>,
    info: DeviceInfo,
    dtype: CameraDtype,
}

/// `open_device(spec, input_dim, output_dim, seed=0, overrides=None)`.
#[pyfunction]
#[pyo3(signature = (spec, input_dim, output_dim, seed = None, overrides = None))]
pub fn open_device(
    py: Python<'_>,
    spec: &Bound<'_, PyAny>,
    input_dim: &Bound<'_, PyAny>,
    output_dim: &Bound<'_, PyAny>,
    seed: Option<&Bound<'_, PyAny>>,
    overrides: Option<&Bound<'_, PyAny>>,
) -> PyResult<Device> {
    let spec = args::spec(spec)?;
    let input_dim = args::dimension(input_dim, "input_dim")?;
    let output_dim = args::dimension(output_dim, "output_dim")?;
    let seed = match seed {
        Some(s) => args::seed(s)?,
        None => 0,
    };
    let table = args::overrides(overrides)?;
    if spec == DeviceSpec::Digital {
        return Err(SpeckleErr::unsupported(
            "digital is a linear-only projector, not a raw device: open it with speckle.open_projector (float32 input)",
        )
        .into());
    }
    let opened = py.detach(|| -> Result<_, SpeckleErr> {
        // The full size, as `speckle info` reports it (a serial device is asked in a session
        // of its own, before the one it is opened in).
        let context = |e| SpeckleErr::context(format_args!("cannot open device {spec}"), &e);
        let full = full_dims(&spec, &table).map_err(context)?;
        let device =
            open_hal_device(&spec, input_dim, output_dim, seed, &table).map_err(context)?;
        Ok((full, device))
    });
    let (full, device) = opened?;
    let info = device.info();
    if input_dim > info.input_dim {
        return Err(SpeckleErr::input(format!(
            "input has {input_dim} features but the device takes at most {}",
            info.input_dim
        ))
        .into());
    }
    if output_dim > info.output_dim {
        return Err(SpeckleErr::input(format!(
            "output_dim {output_dim} exceeds the device's {} camera pixels",
            info.output_dim
        ))
        .into());
    }
    let dtype = CameraDtype::for_bit_depth(info.bit_depth).map_err(SpeckleErr::from)?;
    Ok(Device {
        state: Mutex::new(Some(State {
            device,
            packed: Vec::new(),
            camera: Vec::new(),
        })),
        spec: spec.to_string(),
        seed,
        input_dim,
        output_dim,
        full,
        info,
        dtype,
    })
}

impl Device {
    fn run<'py, T: CameraSample + numpy::Element>(
        &self,
        py: Python<'py>,
        x: &PyReadonlyArray2<'py, u8>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let rows = x.shape()[0];
        let out = arrays::zeros::<T>(py, rows, self.output_dim)?;
        if rows == 0 {
            return Ok(out.into_any());
        }
        {
            let mut out_rw = out.readwrite();
            let out_slice = out_rw.as_slice_mut().expect("a new array is contiguous");
            let values = x.as_slice().expect("made contiguous by arrays::binary");
            let (cols, info) = (self.input_dim, &self.info);
            lock(
                py,
                &self.state,
                "device",
                |state| -> Result<(), SpeckleErr> {
                    let State {
                        device,
                        packed,
                        camera,
                    } = state;
                    pack_rows(values, rows, cols, info.input_dim, packed)?;
                    let frames = PackedFrames::new(packed, rows, info.input_dim)?;
                    transform_rows(
                        device,
                        info,
                        &frames,
                        out_slice.len() / rows,
                        out_slice,
                        camera,
                    )?;
                    Ok(())
                },
            )?;
        }
        Ok(out.into_any())
    }
}

#[pymethods]
impl Device {
    /// Shows each row of `x` (a 2-D `uint8` or `bool` array of 0/1, batch × input_dim) on the
    /// device and returns the camera frames, batch × output_dim: `uint8` for cameras of up to
    /// 8 bits, `uint16` for 9 to 16 bits, `float32` for the ideal camera.
    fn transform<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let x = arrays::binary(x, self.input_dim)?;
        match self.dtype {
            CameraDtype::U8 => self.run::<u8>(py, &x),
            CameraDtype::U16 => self.run::<u16>(py, &x),
            CameraDtype::F32 => self.run::<f32>(py, &x),
        }
    }

    /// The device as `speckle info --json` describes it.
    #[getter]
    fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("spec", &self.spec)?;
        d.set_item("kind", &self.info.kind)?;
        d.set_item("description", &self.info.description)?;
        d.set_item("linear_only", false)?;
        d.set_item("input_dim", self.info.input_dim)?;
        d.set_item("output_dim", self.info.output_dim)?;
        d.set_item("max_input_dim", self.full.map(|f| f.0))?;
        d.set_item("max_output_dim", self.full.map(|f| f.1))?;
        d.set_item("bit_depth", self.info.bit_depth)?;
        d.set_item("frame_time_us", self.info.frame_time_us)?;
        d.set_item("exposure_us", self.info.exposure_us)?;
        d.set_item("max_batch", self.info.max_batch)?;
        d.set_item("seed", self.seed)?;
        Ok(d)
    }

    /// Features per input row.
    #[getter]
    fn input_dim(&self) -> usize {
        self.input_dim
    }

    /// Camera pixels per output row.
    #[getter]
    fn output_dim(&self) -> usize {
        self.output_dim
    }

    /// The numpy dtype name of the frames `transform` returns: `uint8`, `uint16` or `float32`.
    #[getter]
    fn dtype(&self) -> &'static str {
        match self.dtype {
            CameraDtype::U8 => "uint8",
            CameraDtype::U16 => "uint16",
            CameraDtype::F32 => "float32",
        }
    }

    /// Frames shown and the time they take on the device (seconds) since it was opened.
    #[getter]
    fn counters<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let c = lock(py, &self.state, "device", |s| Ok(s.device.counters()))?;
        counters_dict(py, c)
    }

    /// Positions the device's frame clock: the next frame shown is frame `index`, so that a
    /// simulated device (whose noise is a function of the frame index) shows frames again with
    /// the same noise, and a serial device sends `index` as the next request's first frame.
    /// Raises `UnsupportedError` for a device without a frame clock.
    fn seek_frame(&self, py: Python<'_>, index: &Bound<'_, PyAny>) -> PyResult<()> {
        let index = args::unsigned(index, "index")?;
        lock(py, &self.state, "device", |s| {
            s.device.seek_frame(index).map_err(SpeckleErr::from)
        })?;
        Ok(())
    }

    /// Reads out only the first `pixels` camera pixels of each frame (a camera's region of
    /// interest), or every pixel again with `None`. The frames keep their shape; the pixels
    /// past the window read 0, and those inside read what they read without it. `pixels` must
    /// be in `1 ..= output_dim` (`InputError`); a device without a window raises
    /// `UnsupportedError`. The simulated device then simulates fewer pixels; a serial device
    /// receives fewer bytes.
    #[pyo3(signature = (pixels))]
    fn set_readout_window(
        &self,
        py: Python<'_>,
        pixels: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let pixels = match pixels {
            Some(p) => {
                let p = args::dimension(p, "pixels")?;
                if p > self.output_dim {
                    return Err(SpeckleErr::input(format!(
                        "a readout window of {p} pixels exceeds output_dim {}",
                        self.output_dim
                    ))
                    .into());
                }
                Some(p)
            }
            None => None,
        };
        lock(py, &self.state, "device", |s| {
            s.device
                .set_readout_window(pixels)
                .map_err(SpeckleErr::from)
        })?;
        Ok(())
    }

    /// Whether `close` was called.
    #[getter]
    fn closed(&self, py: Python<'_>) -> bool {
        crate::is_closed(py, &self.state)
    }

    /// Releases the device (a serial port is closed). Later calls raise `InputError`.
    fn close(&self, py: Python<'_>) {
        crate::close(py, &self.state);
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        crate::close(py, &self.state);
        false
    }

    fn __repr__(&self) -> String {
        format!(
            "speckle.Device(spec='{}', input_dim={}, output_dim={}, seed={}, kind='{}', dtype={})",
            self.spec,
            self.input_dim,
            self.output_dim,
            self.seed,
            self.info.kind,
            self.dtype()
        )
    }
}

pub(crate) fn counters_dict(py: Python<'_>, c: DeviceCounters) -> PyResult<Bound<'_, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("frames", c.frames)?;
    d.set_item("device_time_s", c.device_time_s)?;
    Ok(d)
}
