//! Device SPEC strings (the CLI's `--device`) and their resolution into devices and projectors.
//!
//! Grammar:
//!
//! | SPEC | meaning |
//! |------|---------|
//! | `sim` | the simulated OPU with the LightOn-like 8-bit preset (`configs/devices/lighton.toml`) |
//! | `sim:NAME` | the simulated OPU with an embedded preset, NAME a bare word such as `ideal` or `lighton` |
//! | `sim:PATH` | the simulated OPU with a device TOML file (PATH contains `/` or `.`) |
//! | `digital` | the ideal digital Gaussian projector (linear projections only) |
//! | `serial:PATH[@BAUD]` | a device behind a serial port speaking the speckle protocol |
//!
//! ```
//! use speckle::spec::DeviceSpec;
//!
//! let spec: DeviceSpec = "serial:/dev/ttyACM0@921600".parse().unwrap();
//! assert_eq!(spec.to_string(), "serial:/dev/ttyACM0@921600");
//! assert!("sim:".parse::<DeviceSpec>().is_err());
//! ```
use speckle_hal::{Error, ErrorKind, OpticalDevice, RandomProjector};
use speckle_projection::{Encoding, GaussianProjector, OpticalConfig, OpticalProjector};
use speckle_sim::{DeviceConfig, SimulatedOpu};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Where the configuration of a simulated device comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimSource {
    /// A preset embedded in the binary, by name (`lighton`, `ideal`, ...).
    Preset(String),
    /// A device TOML file.
    File(PathBuf),
}

/// A parsed `--device` value.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeviceSpec {
    /// The simulated OPU.
    Sim(SimSource),
    /// The ideal digital Gaussian projector: linear projections only, no raw device.
    Digital,
    /// A device on a serial port.
    Serial {
        /// Path of the port, e.g. `/dev/ttyACM0` or an emulator's link.
        path: PathBuf,
        /// Baud rate, when given (`@BAUD`).
        baud: Option<u32>,
    },
}

/// Name of the preset that the bare SPEC `sim` means.
pub const DEFAULT_PRESET: &str = "lighton";

/// The SPEC grammar, for error messages and help texts.
pub const SPEC_GRAMMAR: &str = "sim, sim:PRESET, sim:PATH, digital or serial:PATH[@BAUD]";

/// Why a SPEC string could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError(String);

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SpecError {}

impl FromStr for DeviceSpec {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (head, rest) = match s.split_once(':') {
            Some((h, r)) => (h, Some(r)),
            None => (s, None),
        };
        match (head, rest) {
            ("sim", None) => Ok(DeviceSpec::Sim(SimSource::Preset(DEFAULT_PRESET.into()))),
            ("sim", Some("")) => Err(SpecError(format!(
                "device spec '{s}' lacks a preset name or config path after 'sim:'"
            ))),
            ("sim", Some(r)) => {
                let is_bare_word = r
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
                Ok(DeviceSpec::Sim(if is_bare_word {
                    SimSource::Preset(r.to_string())
                } else {
                    SimSource::File(PathBuf::from(r))
                }))
            }
            ("digital", None) => Ok(DeviceSpec::Digital),
            ("digital", Some(_)) => Err(SpecError(format!(
                "device spec '{s}': 'digital' takes no argument"
            ))),
            ("serial", None) | ("serial", Some("")) => Err(SpecError(format!(
                "device spec '{s}' lacks a port path: expected serial:PATH[@BAUD]"
            ))),
            ("serial", Some(r)) => {
                // The baud rate follows the last '@'; a path may itself contain '@' only if a
                // rate is given after it.
                let (path, baud) = match r.rsplit_once('@') {
                    Some((p, b)) => {
                        let baud: u32 = b.parse().ok().filter(|&b| b > 0).ok_or_else(|| {
                            SpecError(format!(
                                "device spec '{s}': baud rate '{b}' is not a positive integer"
                            ))
                        })?;
                        (p, Some(baud))
                    }
                    None => (r, None),
                };
                if path.is_empty() {
                    return Err(SpecError(format!(
                        "device spec '{s}' lacks a port path: expected serial:PATH[@BAUD]"
                    )));
                }
                Ok(DeviceSpec::Serial {
                    path: PathBuf::from(path),
                    baud,
                })
            }
            _ => Err(SpecError(format!(
                "unknown device spec '{s}': expected {SPEC_GRAMMAR}"
            ))),
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Sim(SimSource::Preset(p)) if p == DEFAULT_PRESET => f.write_str("sim"),
            DeviceSpec::Sim(SimSource::Preset(p)) => write!(f, "sim:{p}"),
            DeviceSpec::Sim(SimSource::File(path)) => write!(f, "sim:{}", path.display()),
            DeviceSpec::Digital => f.write_str("digital"),
            DeviceSpec::Serial { path, baud: None } => write!(f, "serial:{}", path.display()),
            DeviceSpec::Serial {
                path,
                baud: Some(b),
            } => write!(f, "serial:{}@{b}", path.display()),
        }
    }
}

/// Encoding of signed vectors when `--encoding` is not given.
pub const DEFAULT_ENCODING: &str = "ternary";

/// The configuration of a simulated device: its preset or file, with `overrides` merged into
/// the TOML tree before it is deserialized, so a misspelt override key is rejected exactly like
/// a misspelt file key.
pub fn sim_config(
    source: &SimSource,
    overrides: Option<&toml::Table>,
) -> Result<DeviceConfig, Error> {
    let (origin, text) = match source {
        SimSource::Preset(name) => match DeviceConfig::preset_toml(name) {
            Some(t) => (format!("preset {name}"), t.to_string()),
            // Let the sim crate word the error (it lists the known presets).
            None => return Err(DeviceConfig::preset(name).map(|_| ()).unwrap_err().into()),
        },
        SimSource::File(path) => match overrides {
            None => return DeviceConfig::from_path(path).map_err(Error::from),
            Some(_) => (
                path.display().to_string(),
                std::fs::read_to_string(path).map_err(|e| {
                    Error::with_source(
                        ErrorKind::Io,
                        format!("cannot read device config {}", path.display()),
                        e,
                    )
                })?,
            ),
        },
    };
    match overrides {
        None => DeviceConfig::from_toml_str(&text).map_err(Error::from),
        Some(o) => {
            let mut tree: toml::Table = match text.parse() {
                Ok(t) => t,
                // Parse again through the sim crate for its located, one-line message.
                Err(_) => {
                    return Err(DeviceConfig::from_toml_str(&text)
                        .map(|_| ())
                        .map_err(|e| Error::new(ErrorKind::InvalidInput, format!("{origin}: {e}")))
                        .unwrap_err())
                }
            };
            merge_toml(&mut tree, o);
            DeviceConfig::from_toml_value(toml::Value::Table(tree)).map_err(Error::from)
        }
    }
}

/// The largest dimensions a device accepts, as `(input_dim, output_dim)`: for a simulated device
/// the DMD's capacity (every mirror its own feature, or `mirrors / k` with a fixed macro-pixel of
/// k mirrors) and [`SIM_DEFAULT_CAMERA_PIXELS`] (a simulated camera has no fixed size); for a
/// physical device the dimensions it reports. `None` for `digital`, which has no size.
pub fn full_dims(
    spec: &DeviceSpec,
    overrides: Option<&toml::Table>,
) -> anyhow::Result<Option<(usize, usize)>> {
    match spec {
        DeviceSpec::Sim(source) => {
            let cfg = sim_config(source, overrides)?;
            let k = match cfg.dmd.macro_pixel {
                speckle_sim::MacroPixel::Mirrors(k) => k.max(1),
                _ => 1,
            };
            let features = usize::try_from(cfg.mirrors() / k)?;
            Ok(Some((features, SIM_DEFAULT_CAMERA_PIXELS)))
        }
        DeviceSpec::Digital => Ok(None),
        DeviceSpec::Serial { .. } => {
            let device = open_device(spec, 0, 0, 0, overrides)?;
            let info = device.info();
            Ok(Some((info.input_dim, info.output_dim)))
        }
    }
}

/// Camera pixels `speckle info` shows for a simulated device when `--out` is not given: a
/// 1920 × 1080 sensor, the largest LightOn camera format. The simulator itself accepts any
/// output dimension.
pub const SIM_DEFAULT_CAMERA_PIXELS: usize = 1920 * 1080;

/// Opens the raw device that `spec` names, for `input_dim` features and `output_dim` camera
/// pixels. A simulated device is built with exactly those dimensions (its medium from `seed`);
/// a physical device has its own dimensions, which the caller checks against what it needs.
/// `overrides` edit a simulated device's config (`--set`).
pub fn open_device(
    spec: &DeviceSpec,
    input_dim: usize,
    output_dim: usize,
    seed: u64,
    overrides: Option<&toml::Table>,
) -> anyhow::Result<Box<dyn OpticalDevice + Send>> {
    match spec {
        DeviceSpec::Sim(source) => {
            let cfg = sim_config(source, overrides)?;
            Ok(Box::new(SimulatedOpu::new(&cfg, input_dim, output_dim, seed)?))
        }
        DeviceSpec::Digital => anyhow::bail!(
            "digital is a linear-only projector, not a raw device: use it with --linear (transform) or --mode linear (bench)"
        ),
        DeviceSpec::Serial { path, baud } => {
            // (0, 0) asks for the device's own dimensions (see full_dims).
            let dims = (input_dim > 0 && output_dim > 0).then_some((input_dim, output_dim));
            let path = path
                .to_str()
                .ok_or_else(|| anyhow::anyhow!("serial port path {} is not UTF-8", path.display()))?;
            let baud = baud.unwrap_or(speckle_serial::DEFAULT_BAUD);
            Ok(Box::new(speckle_serial::SerialDevice::open(path, baud, dims)?))
        }
    }
}

/// Opens a linear projector `input_dim → output_dim` on `spec`: the digital Gaussian projector
/// (`encoding` ignored), or an [`OpticalProjector`] over the device (calibrated on opening), which
/// encodes signed inputs with `encoding` (`ternary`, `ternary:T`, `bitplane:P`). A simulated
/// device is opened with the data + reference features and the camera margin the projector
/// needs ([`OpticalConfig::device_input_dim`], [`OpticalConfig::recommended_device_output_dim`]).
pub fn open_projector(
    spec: &DeviceSpec,
    encoding: &str,
    overrides: Option<&toml::Table>,
    input_dim: usize,
    output_dim: usize,
    seed: u64,
) -> Result<Box<dyn RandomProjector + Send>, Error> {
    if spec == &DeviceSpec::Digital {
        return Ok(Box::new(GaussianProjector::new(
            input_dim, output_dim, seed,
        )?));
    }
    let encoding: Encoding = encoding.parse().map_err(|e| {
        Error::with_source(
            ErrorKind::InvalidInput,
            format!("bad encoding '{encoding}'"),
            e,
        )
    })?;
    let config = OpticalConfig::new(input_dim, output_dim).with_encoding(encoding);
    config.check()?;
    let device = open_device(
        spec,
        config.device_input_dim(),
        config.recommended_device_output_dim(),
        seed,
        overrides,
    )
    .map_err(|e| match e.downcast::<Error>() {
        Ok(hal) => hal,
        Err(other) => Error::new(ErrorKind::Other, format!("{other:#}")),
    })?;
    Ok(Box::new(OpticalProjector::new(device, config)?))
}

/// Parses `--set section.key=VALUE` overrides into a TOML table to merge into a config tree.
/// VALUE is read as a TOML value (`10`, `0.5`, `true`, `"text"`, `[1, 2]`); a bare word that is
/// not valid TOML is taken as a string.
pub fn parse_overrides(items: &[String]) -> Result<toml::Table, SpecError> {
    let mut table = toml::Table::new();
    for item in items {
        let (key, raw) = item.split_once('=').ok_or_else(|| {
            SpecError(format!(
                "override '{item}' is not of the form section.key=value"
            ))
        })?;
        let path: Vec<&str> = key.trim().split('.').collect();
        if path.iter().any(|p| p.is_empty()) {
            return Err(SpecError(format!("override '{item}' has an empty key")));
        }
        let raw = raw.trim();
        let value = format!("v = {raw}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(raw.to_string()));
        let mut node = &mut table;
        for part in &path[..path.len() - 1] {
            let entry = node
                .entry(part.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            node = match entry {
                toml::Value::Table(t) => t,
                _ => {
                    return Err(SpecError(format!(
                        "override '{item}': '{part}' is set both as a value and as a section"
                    )))
                }
            };
        }
        node.insert(path[path.len() - 1].to_string(), value);
    }
    Ok(table)
}

/// Merges `overrides` into `base` recursively: tables merge key by key, any other value
/// replaces the one in `base`. Keys absent from `base` are added, so that deserializing with
/// `deny_unknown_fields` rejects a misspelt override exactly as it rejects a misspelt file key.
pub fn merge_toml(base: &mut toml::Table, overrides: &toml::Table) {
    for (key, value) in overrides {
        match (base.get_mut(key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge_toml(b, o),
            _ => {
                base.insert(key.clone(), value.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<DeviceSpec, SpecError> {
        s.parse()
    }

    #[test]
    fn grammar() {
        assert_eq!(
            parse("sim").unwrap(),
            DeviceSpec::Sim(SimSource::Preset("lighton".into()))
        );
        assert_eq!(
            parse("sim:ideal").unwrap(),
            DeviceSpec::Sim(SimSource::Preset("ideal".into()))
        );
        assert_eq!(
            parse("sim:configs/devices/ideal.toml").unwrap(),
            DeviceSpec::Sim(SimSource::File("configs/devices/ideal.toml".into()))
        );
        assert_eq!(parse("digital").unwrap(), DeviceSpec::Digital);
        assert_eq!(
            parse("serial:/dev/ttyUSB0").unwrap(),
            DeviceSpec::Serial {
                path: "/dev/ttyUSB0".into(),
                baud: None
            }
        );
        assert_eq!(
            parse("serial:/tmp/a@b@115200").unwrap(),
            DeviceSpec::Serial {
                path: "/tmp/a@b".into(),
                baud: Some(115200)
            }
        );
    }

    #[test]
    fn overrides_nest_and_merge() {
        let o = parse_overrides(&[
            "camera.bits=10".into(),
            "camera.name=x y".into(),
            "seed=3".into(),
        ])
        .unwrap();
        let mut base: toml::Table = "seed = 1\n[camera]\nbits = 8\ngain = 2.0\n"
            .parse()
            .unwrap();
        merge_toml(&mut base, &o);
        assert_eq!(base["camera"]["bits"].as_integer(), Some(10));
        assert_eq!(base["camera"]["gain"].as_float(), Some(2.0));
        assert_eq!(base["camera"]["name"].as_str(), Some("x y"));
        assert_eq!(base["seed"].as_integer(), Some(3));
        assert!(parse_overrides(&["novalue".into()]).is_err());
        assert!(parse_overrides(&["a..b=1".into()]).is_err());
    }

    #[test]
    fn round_trip() {
        for s in [
            "sim",
            "sim:ideal",
            "sim:./x.toml",
            "digital",
            "serial:/dev/x",
            "serial:/dev/x@9600",
        ] {
            assert_eq!(parse(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn errors_are_one_line_and_name_the_spec() {
        for s in [
            "",
            "sims",
            "sim:",
            "digital:3",
            "serial",
            "serial:",
            "serial:/dev/x@fast",
            "serial:@9600",
            "serial:/x@0",
        ] {
            let e = parse(s).unwrap_err().to_string();
            assert!(!e.contains('\n'), "{e}");
            assert!(e.contains(&format!("'{s}'")), "{e}");
        }
    }
}
