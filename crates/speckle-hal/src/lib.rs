//! # speckle-hal
//!
//! The hardware abstraction layer of speckle. It holds two traits and their types, and no
//! implementation:
//!
//! * [`OpticalDevice`]: the raw device. Bit-packed binary frames (one bit per input feature) go in,
//!   camera frames (one value per output pixel) come out, into a buffer the caller owns.
//! * [`RandomProjector`]: the linear random projection that Direct Feedback Alignment consumes.
//!   A batch of `f32` vectors (`batch × input_dim`, row-major) goes in, `batch × output_dim` comes out.
//!
//! Every method is fallible and returns [`Error`], whose [`Error::kind`] is a small
//! [`ErrorKind`]. Both traits are object safe, so the backend can be chosen at run time from a
//! configuration (`Box<dyn RandomProjector + Send>`), and both have blanket implementations for
//! `&mut T` and `Box<T>`.
//!
//! ```
//! use speckle_hal::{DeviceCounters, Error, ErrorKind, ProjectorInfo, RandomProjector};
//!
//! /// A toy projector: y = x · P with a fixed 2 × 3 matrix P, its info computed once.
//! struct Toy { p: [[f32; 3]; 2], info: ProjectorInfo, counters: DeviceCounters }
//!
//! impl RandomProjector for Toy {
//!     fn info(&self) -> ProjectorInfo {
//!         self.info.clone()
//!     }
//!     fn project(&mut self, input: &[f32], batch: usize, output: &mut [f32]) -> Result<(), Error> {
//!         speckle_hal::check_projection_buffers(&self.info, input, batch, output)?;
//!         for b in 0..batch {
//!             for j in 0..3 {
//!                 output[b * 3 + j] = (0..2).map(|i| input[b * 2 + i] * self.p[i][j]).sum();
//!             }
//!         }
//!         Ok(())
//!     }
//!     fn counters(&self) -> DeviceCounters { self.counters }
//! }
//!
//! let mut toy = Toy {
//!     p: [[1.0, 0.0, 2.0], [0.0, 1.0, -1.0]],
//!     info: ProjectorInfo::new("toy", 2, 3, 1.0),
//!     counters: DeviceCounters::default(),
//! };
//! let mut y = [0.0f32; 3];
//! toy.project(&[1.0, 2.0], 1, &mut y).unwrap();
//! assert_eq!(y, [1.0, 2.0, 0.0]);
//! // A wrong buffer size is an error, not a panic.
//! let err = toy.project(&[1.0], 1, &mut y).unwrap_err();
//! assert_eq!(err.kind(), ErrorKind::InvalidInput);
//! ```
#![forbid(unsafe_code)]

mod error;
mod frames;
pub mod memory;

pub use error::{Error, ErrorKind};
pub use frames::{pack_bits, unpack_bits, PackedFrames};

/// What a device reports about itself. Dimensions are as seen by the host: `input_dim` binary
/// features per frame (the device maps each feature onto its own group of mirrors, a macro-pixel),
/// `output_dim` camera pixels per frame.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceInfo {
    /// Short machine-readable kind, e.g. `"simulated-opu"` or `"serial"`.
    pub kind: String,
    /// Free-form description (model, firmware version, preset name).
    pub description: String,
    /// Binary input features per frame.
    pub input_dim: usize,
    /// Camera pixels per frame.
    pub output_dim: usize,
    /// ADC bit depth of the camera values, or `None` when the device returns exact float
    /// intensities (an ideal simulated camera).
    pub bit_depth: Option<u8>,
    /// Time from one frame to the next, in microseconds.
    pub frame_time_us: f64,
    /// Camera exposure per frame, in microseconds.
    pub exposure_us: f64,
    /// Most frames accepted in one [`OpticalDevice::transform`] call.
    pub max_batch: usize,
}

impl DeviceInfo {
    /// Largest value a camera pixel can take: `2^bits − 1` for a quantized camera,
    /// `f32::INFINITY` for a float camera.
    pub fn max_count(&self) -> f32 {
        match self.bit_depth {
            Some(bits) => ((1u64 << bits) - 1) as f32,
            None => f32::INFINITY,
        }
    }
}

/// Work a device (or a projector, through its device) has done since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DeviceCounters {
    /// Frames shown on the device.
    pub frames: u64,
    /// Time those frames take on the device at its frame rate, in seconds (the virtual clock
    /// of a simulated device, the measured or nominal time of a physical one).
    pub device_time_s: f64,
}

/// The raw optical device: binary frames in, camera frames out.
///
/// One call shows `input.frames()` frames, in order, and writes `frames × output_dim` camera
/// values into `output`, frame after frame. Values are integer counts in `0 ..= 2^bit_depth − 1`
/// when [`DeviceInfo::bit_depth`] is `Some`, stored in `f32` (exact for up to 24 bits), and float
/// intensities otherwise.
///
/// Implementations must validate their inputs (frame width, batch size, buffer length) and
/// return [`ErrorKind::InvalidInput`] or [`ErrorKind::DimensionMismatch`] rather than panic.
pub trait OpticalDevice {
    /// Dimensions, bit depth and timing of the device. Callers may ask often: compute it once
    /// (it does not change over the device's life) and return a clone.
    fn info(&self) -> DeviceInfo;

    /// Shows the frames and records the camera's response into `output`
    /// (`input.frames() * info().output_dim` values).
    fn transform(&mut self, input: &PackedFrames<'_>, output: &mut [f32]) -> Result<(), Error>;

    /// Frames shown and device time spent so far.
    fn counters(&self) -> DeviceCounters;

    /// Sets the global index of the next frame, so that a device whose noise (or drift) is a
    /// function of the frame index replays a stream exactly: a resumed training run, or a
    /// request retried over a link. Devices that cannot do this return
    /// [`ErrorKind::Unsupported`] (the default).
    fn seek_frame(&mut self, index: u64) -> Result<(), Error> {
        let _ = index;
        Err(Error::new(
            ErrorKind::Unsupported,
            "this device cannot seek its frame clock",
        ))
    }

    /// Reads out only the first `pixels` camera pixels of each frame (a region of interest),
    /// or every pixel again with `None`. The output keeps its layout (`output_dim` values a
    /// frame); the values of the pixels outside the window are 0, not readings. A window must
    /// not change what the pixels inside it read: the same frames give the same values there
    /// as without it. It saves readout (on a camera) or simulation (on a simulator) when a
    /// caller uses only the first pixels. `pixels` must be in `1 ..= output_dim`
    /// ([`ErrorKind::InvalidInput`] otherwise). Devices without a window return
    /// [`ErrorKind::Unsupported`] (the default), and a caller then reads the whole frame.
    fn set_readout_window(&mut self, pixels: Option<usize>) -> Result<(), Error> {
        let _ = pixels;
        Err(Error::new(
            ErrorKind::Unsupported,
            "this device cannot limit its camera readout",
        ))
    }
}

/// What a projector reports about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectorInfo {
    /// Identity of the projection: enough to tell whether two projectors compute the same
    /// matrix (kind, seed, dimensions, device preset). Stored in checkpoints.
    pub identity: String,
    /// Length of each input vector.
    pub input_dim: usize,
    /// Length of each output vector.
    pub output_dim: usize,
    /// Variance of the entries of the effective projection matrix P in `y = x · P`
    /// (`input_dim × output_dim`). Consumers rescale by `1 / sqrt(entry_variance)` to get a
    /// matrix with unit-variance entries.
    pub entry_variance: f64,
    /// Device frames one projected vector costs (0 for a digital projector).
    pub frames_per_vector: f64,
}

impl ProjectorInfo {
    /// Info for a projector with the given identity, dimensions and entry variance,
    /// costing no device frames.
    pub fn new(
        identity: impl Into<String>,
        input_dim: usize,
        output_dim: usize,
        entry_variance: f64,
    ) -> Self {
        Self {
            identity: identity.into(),
            input_dim,
            output_dim,
            entry_variance,
            frames_per_vector: 0.0,
        }
    }
}

/// A fixed linear random projection `y = x · P`, P of shape `input_dim × output_dim`.
///
/// `input` is `batch × input_dim` and `output` is `batch × output_dim`, both row-major.
/// The same projector must apply the same matrix P for its whole life (up to device noise and
/// drift): that is what makes it a *fixed* feedback matrix for DFA.
pub trait RandomProjector {
    /// Dimensions, identity and cost of the projection. Callers may ask often: compute it once
    /// (it does not change over the projector's life) and return a clone.
    fn info(&self) -> ProjectorInfo;

    /// Projects a batch into the caller's buffer.
    fn project(&mut self, input: &[f32], batch: usize, output: &mut [f32]) -> Result<(), Error>;

    /// Device frames and device time spent so far (zero for a digital projector).
    fn counters(&self) -> DeviceCounters;

    /// Positions the underlying device's frame clock at global frame `index` (see
    /// [`OpticalDevice::seek_frame`]), so a resumed run sees the same device noise as an
    /// uninterrupted one. Deterministic projectors return `Ok(())`; the default is
    /// [`ErrorKind::Unsupported`].
    fn seek_frame(&mut self, index: u64) -> Result<(), Error> {
        let _ = index;
        Err(Error::new(
            ErrorKind::Unsupported,
            "this projector cannot seek its device's frame clock",
        ))
    }
}

/// Checks the buffers of a [`RandomProjector::project`] call: lengths match the batch and the
/// dimensions, and every input is finite.
pub fn check_projection_buffers(
    info: &ProjectorInfo,
    input: &[f32],
    batch: usize,
    output: &[f32],
) -> Result<(), Error> {
    let want_in = batch.checked_mul(info.input_dim);
    if want_in != Some(input.len()) {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "projector input has {} values, expected batch {} × input_dim {}",
                input.len(),
                batch,
                info.input_dim
            ),
        ));
    }
    let want_out = batch.checked_mul(info.output_dim);
    if want_out != Some(output.len()) {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "projector output buffer has {} values, expected batch {} × output_dim {}",
                output.len(),
                batch,
                info.output_dim
            ),
        ));
    }
    if let Some(pos) = input.iter().position(|v| !v.is_finite()) {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "projector input is not finite at row {}, column {} ({})",
                pos / info.input_dim.max(1),
                pos % info.input_dim.max(1),
                input[pos]
            ),
        ));
    }
    Ok(())
}

/// Checks the buffers of an [`OpticalDevice::transform`] call against the device's info.
pub fn check_device_buffers(
    info: &DeviceInfo,
    input: &PackedFrames<'_>,
    output: &[f32],
) -> Result<(), Error> {
    input.expect_width(info.input_dim, "device")?;
    if input.frames() > info.max_batch {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "batch of {} frames exceeds the device maximum of {}",
                input.frames(),
                info.max_batch
            ),
        ));
    }
    let want = input.frames().checked_mul(info.output_dim);
    if want != Some(output.len()) {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "camera buffer has {} values, expected {} frames × {} pixels",
                output.len(),
                input.frames(),
                info.output_dim
            ),
        ));
    }
    Ok(())
}

/// Forwards every method of [`OpticalDevice`] through a pointer type (`&mut T`, `Box<T>`).
macro_rules! forward_optical_device {
    ($($pointer:ty),+) => {$(
        impl<T: OpticalDevice + ?Sized> OpticalDevice for $pointer {
            fn info(&self) -> DeviceInfo {
                (**self).info()
            }
            fn transform(
                &mut self,
                input: &PackedFrames<'_>,
                output: &mut [f32],
            ) -> Result<(), Error> {
                (**self).transform(input, output)
            }
            fn counters(&self) -> DeviceCounters {
                (**self).counters()
            }
            fn seek_frame(&mut self, index: u64) -> Result<(), Error> {
                (**self).seek_frame(index)
            }
            fn set_readout_window(&mut self, pixels: Option<usize>) -> Result<(), Error> {
                (**self).set_readout_window(pixels)
            }
        }
    )+};
}

/// Forwards every method of [`RandomProjector`] through a pointer type (`&mut T`, `Box<T>`).
macro_rules! forward_random_projector {
    ($($pointer:ty),+) => {$(
        impl<T: RandomProjector + ?Sized> RandomProjector for $pointer {
            fn info(&self) -> ProjectorInfo {
                (**self).info()
            }
            fn project(
                &mut self,
                input: &[f32],
                batch: usize,
                output: &mut [f32],
            ) -> Result<(), Error> {
                (**self).project(input, batch, output)
            }
            fn counters(&self) -> DeviceCounters {
                (**self).counters()
            }
            fn seek_frame(&mut self, index: u64) -> Result<(), Error> {
                (**self).seek_frame(index)
            }
        }
    )+};
}

forward_optical_device!(&mut T, Box<T>);
forward_random_projector!(&mut T, Box<T>);
