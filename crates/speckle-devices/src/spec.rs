//! Device SPEC strings (the CLI's `--device`, a run's `feedback.projector`), parsed once into a
//! typed [`DeviceSpec`].
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
//! use speckle_devices::DeviceSpec;
//!
//! let spec: DeviceSpec = "serial:/dev/ttyACM0@921600".parse().unwrap();
//! assert_eq!(spec.to_string(), "serial:/dev/ttyACM0@921600");
//! assert!("sim:".parse::<DeviceSpec>().is_err());
//! ```
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

/// Why a SPEC string could not be parsed. Each message is one line that quotes the SPEC.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// `sim:` with nothing after the colon.
    #[error("device spec '{0}' lacks a preset name or config path after 'sim:'")]
    MissingSimSource(String),
    /// `digital:...`.
    #[error("device spec '{0}': 'digital' takes no argument")]
    DigitalArgument(String),
    /// `serial`, `serial:` or `serial:@BAUD`.
    #[error("device spec '{0}' lacks a port path: expected serial:PATH[@BAUD]")]
    MissingPort(String),
    /// A baud rate that is not a positive integer.
    #[error("device spec '{spec}': baud rate '{baud}' is not a positive integer")]
    BadBaud {
        /// The SPEC as given.
        spec: String,
        /// The text after the last `@`.
        baud: String,
    },
    /// Not one of the known forms.
    #[error("unknown device spec '{0}': expected {SPEC_GRAMMAR}")]
    Unknown(String),
}

impl FromStr for DeviceSpec {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (head, rest) = match s.split_once(':') {
            Some((h, r)) => (h, Some(r)),
            None => (s, None),
        };
        match (head, rest) {
            ("sim", None) => Ok(DeviceSpec::Sim(SimSource::Preset(DEFAULT_PRESET.into()))),
            ("sim", Some("")) => Err(SpecError::MissingSimSource(s.into())),
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
            ("digital", Some(_)) => Err(SpecError::DigitalArgument(s.into())),
            ("serial", None) | ("serial", Some("")) => Err(SpecError::MissingPort(s.into())),
            ("serial", Some(r)) => {
                // The baud rate follows the last '@'; a path may itself contain '@' only if a
                // rate is given after it.
                let (path, baud) = match r.rsplit_once('@') {
                    Some((p, b)) => {
                        let baud: u32 = b.parse().ok().filter(|&b| b > 0).ok_or_else(|| {
                            SpecError::BadBaud {
                                spec: s.into(),
                                baud: b.into(),
                            }
                        })?;
                        (p, Some(baud))
                    }
                    None => (r, None),
                };
                if path.is_empty() {
                    return Err(SpecError::MissingPort(s.into()));
                }
                Ok(DeviceSpec::Serial {
                    path: PathBuf::from(path),
                    baud,
                })
            }
            _ => Err(SpecError::Unknown(s.into())),
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

impl serde::Serialize for DeviceSpec {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for DeviceSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
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
