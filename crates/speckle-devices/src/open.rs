//! Opening what a [`DeviceSpec`] names: raw [`OpticalDevice`]s and linear
//! [`RandomProjector`]s, with a simulated device's config overrides.
use speckle_hal::{Error, ErrorKind, OpticalDevice, RandomProjector};
use speckle_projection::{Encoding, GaussianProjector, OpticalConfig, OpticalProjector};
use speckle_sim::{DeviceConfig, SimulatedOpu};
use toml::Table;

use crate::overrides;
use crate::spec::{DeviceSpec, SimSource};

/// Camera pixels of a simulated device's "full size" (`speckle info` without `--out`, the
/// emulator's largest output): a 1920 × 1080 sensor, the largest LightOn camera format. The
/// simulator itself accepts any output dimension.
pub const SIM_DEFAULT_CAMERA_PIXELS: usize = 1920 * 1080;

fn invalid(message: String) -> Error {
    Error::new(ErrorKind::InvalidInput, message)
}

/// Refuses overrides for a device that has no config to apply them to.
fn refuse_overrides(spec: &DeviceSpec, overrides: &Table) -> Result<(), Error> {
    match overrides.keys().next() {
        None => Ok(()),
        Some(key) => Err(invalid(format!(
            "device {spec} has no config keys to override (got '{key}'): overrides apply to simulated devices only"
        ))),
    }
}

/// The configuration of a simulated device: its preset or file, with `overrides` merged into
/// the TOML tree before it is deserialized, so a misspelt override key is rejected exactly like
/// a misspelt file key.
pub fn sim_config(source: &SimSource, overrides: &Table) -> Result<DeviceConfig, Error> {
    let (origin, text) = match source {
        SimSource::Preset(name) => match DeviceConfig::preset_toml(name) {
            Some(t) => (format!("preset {name}"), t.to_string()),
            // Let the sim crate word the error (it lists the known presets).
            None => return Err(DeviceConfig::preset(name).map(|_| ()).unwrap_err().into()),
        },
        SimSource::File(path) if overrides.is_empty() => {
            return DeviceConfig::from_path(path).map_err(Error::from)
        }
        SimSource::File(path) => (
            path.display().to_string(),
            std::fs::read_to_string(path).map_err(|e| {
                Error::with_source(
                    ErrorKind::Io,
                    format!("cannot read device config {}", path.display()),
                    e,
                )
            })?,
        ),
    };
    if overrides.is_empty() {
        return DeviceConfig::from_toml_str(&text).map_err(Error::from);
    }
    let mut tree: Table = match text.parse() {
        Ok(t) => t,
        // Parse again through the sim crate for its located, one-line message.
        Err(_) => {
            let e = DeviceConfig::from_toml_str(&text).err();
            return Err(invalid(format!(
                "{origin}: {}",
                e.map_or_else(|| "not a TOML table".to_string(), |e| e.to_string())
            )));
        }
    };
    overrides::merge(&mut tree, overrides);
    DeviceConfig::from_toml_value(toml::Value::Table(tree)).map_err(Error::from)
}

/// The largest dimensions a device accepts, as `(input_dim, output_dim)`: for a simulated device
/// the DMD's capacity (every mirror its own feature, or `mirrors / k` with a fixed macro-pixel of
/// k mirrors) and [`SIM_DEFAULT_CAMERA_PIXELS`]; for a physical device the dimensions it
/// reports. `None` for `digital`, which has no size.
pub fn full_dims(spec: &DeviceSpec, overrides: &Table) -> Result<Option<(usize, usize)>, Error> {
    match spec {
        DeviceSpec::Sim(source) => Ok(Some(sim_full_dims(&sim_config(source, overrides)?))),
        DeviceSpec::Digital => {
            refuse_overrides(spec, overrides)?;
            Ok(None)
        }
        DeviceSpec::Serial { .. } => {
            let device = open_device(spec, 0, 0, 0, overrides)?;
            let info = device.info();
            Ok(Some((info.input_dim, info.output_dim)))
        }
    }
}

/// The full size of a simulated device with `config` (see [`full_dims`]).
pub fn sim_full_dims(config: &DeviceConfig) -> (usize, usize) {
    let k = match config.dmd.macro_pixel {
        speckle_sim::MacroPixel::Mirrors(k) => k.max(1),
        _ => 1,
    };
    let features = usize::try_from(config.mirrors() / k).unwrap_or(usize::MAX);
    (features, SIM_DEFAULT_CAMERA_PIXELS)
}

/// Opens the raw device that `spec` names, for `input_dim` features and `output_dim` camera
/// pixels. A simulated device is built with exactly those dimensions (its medium from `seed`);
/// a physical device has its own dimensions, which the caller checks against what it needs
/// (`(0, 0)` asks a serial device for its own). `overrides` edit a simulated device's config.
pub fn open_device(
    spec: &DeviceSpec,
    input_dim: usize,
    output_dim: usize,
    seed: u64,
    overrides: &Table,
) -> Result<Box<dyn OpticalDevice + Send>, Error> {
    match spec {
        DeviceSpec::Sim(source) => {
            let config = sim_config(source, overrides)?;
            Ok(Box::new(SimulatedOpu::new(&config, input_dim, output_dim, seed)?))
        }
        DeviceSpec::Digital => Err(Error::new(
            ErrorKind::Unsupported,
            "digital is a linear-only projector, not a raw device: use it with --linear (transform) or --mode linear (bench)",
        )),
        DeviceSpec::Serial { path, baud } => {
            refuse_overrides(spec, overrides)?;
            let dims = (input_dim > 0 && output_dim > 0).then_some((input_dim, output_dim));
            let path = path
                .to_str()
                .ok_or_else(|| invalid(format!("serial port path {} is not UTF-8", path.display())))?;
            let baud = baud.unwrap_or(speckle_serial::DEFAULT_BAUD);
            Ok(Box::new(speckle_serial::SerialDevice::open(path, baud, dims)?))
        }
    }
}

/// Opens a linear projector `input_dim → output_dim` on `spec`: the digital Gaussian projector
/// (`encoding` ignored), or an [`OpticalProjector`] over the device (calibrated on opening),
/// which encodes signed inputs with `encoding` (a stochastic one draws from `seed`, see
/// [`OpticalConfig::dither_seed`]). A simulated device is opened with the data +
/// reference features and the camera margin the projector needs
/// ([`OpticalConfig::device_input_dim`], [`OpticalConfig::recommended_device_output_dim`]).
pub fn open_projector(
    spec: &DeviceSpec,
    encoding: Encoding,
    overrides: &Table,
    input_dim: usize,
    output_dim: usize,
    seed: u64,
) -> Result<Box<dyn RandomProjector + Send>, Error> {
    if spec == &DeviceSpec::Digital {
        refuse_overrides(spec, overrides)?;
        return Ok(Box::new(GaussianProjector::new(
            input_dim, output_dim, seed,
        )?));
    }
    let mut config = OpticalConfig::new(input_dim, output_dim).with_encoding(encoding);
    // One seed for the whole feedback: the device's matrix and a stochastic encoding's draws.
    config.dither_seed = seed;
    config.check()?;
    let device = open_device(
        spec,
        config.device_input_dim(),
        config.recommended_device_output_dim(),
        seed,
        overrides,
    )?;
    Ok(Box::new(OpticalProjector::new(device, config)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digital_and_serial_refuse_overrides() {
        let set = overrides::parse(&["camera.bitz=8".into()]).unwrap();
        let e = open_projector(&DeviceSpec::Digital, Encoding::default(), &set, 10, 16, 0)
            .err()
            .unwrap();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.to_string().contains("camera"), "{e}");
        assert!(full_dims(&DeviceSpec::Digital, &set).is_err());
        let serial: DeviceSpec = "serial:/nonexistent/port".parse().unwrap();
        let e = open_device(&serial, 4, 4, 0, &set).err().unwrap();
        assert!(
            e.to_string()
                .contains("overrides apply to simulated devices only"),
            "{e}"
        );
    }

    #[test]
    fn sim_overrides_are_checked_like_file_keys() {
        let spec: DeviceSpec = "sim".parse().unwrap();
        let bad = overrides::parse(&["camera.bitz=8".into()]).unwrap();
        let e = open_device(&spec, 8, 8, 0, &bad).err().unwrap();
        assert!(e.to_string().contains("bitz"), "{e}");
        let good = overrides::parse(&["camera.bits=10".into()]).unwrap();
        let device = open_device(&spec, 8, 8, 0, &good).unwrap();
        assert_eq!(device.info().bit_depth, Some(10));
    }
}
