//! The device configuration: a TOML file (unknown keys are errors), validated once by
//! [`DeviceConfig::check`].

use std::fmt;
use std::path::Path;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Everything that can be wrong with a device configuration. Every message is one line and
/// names the offending key (or the line of the file).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The TOML does not parse or does not fit the schema (unknown key, wrong type).
    #[error("device config{location}: {message}")]
    Parse {
        /// ` line N (`text`)` when known, else empty.
        location: String,
        /// What is wrong.
        message: String,
    },
    /// A value is out of range or inconsistent with another.
    #[error("device config: {key} = {value}: {reason}")]
    Invalid {
        /// Dotted key, e.g. `camera.bits`.
        key: &'static str,
        /// The offending value as written.
        value: String,
        /// Why it is rejected.
        reason: String,
    },
    /// No preset of that name.
    #[error("unknown device preset `{0}` (known: {known})", known = PRESETS.iter().map(|p| p.0).collect::<Vec<_>>().join(", "))]
    UnknownPreset(String),
    /// The file could not be read.
    #[error("cannot read device config {path}: {cause}")]
    Io {
        /// The path as given.
        path: String,
        /// The cause (part of the message; not returned by `source()`, so each clause prints once).
        cause: std::io::Error,
    },
}

impl From<ConfigError> for speckle_hal::Error {
    fn from(e: ConfigError) -> Self {
        let kind = match e {
            ConfigError::Io { .. } => speckle_hal::ErrorKind::Io,
            _ => speckle_hal::ErrorKind::InvalidInput,
        };
        speckle_hal::Error::new(kind, e.to_string())
    }
}

/// The embedded presets: name and TOML source.
const PRESETS: &[(&str, &str)] = &[
    (
        "lighton",
        include_str!("../../../configs/devices/lighton.toml"),
    ),
    ("ideal", include_str!("../../../configs/devices/ideal.toml")),
    (
        "structured",
        include_str!("../../../configs/devices/structured.toml"),
    ),
];

/// A simulated device: DMD, scattering medium, drift and camera. Every key is documented,
/// with its unit, in `configs/devices/lighton.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// Short name, reported by `info()`.
    pub name: String,
    /// Free-form description.
    #[serde(default)]
    pub description: String,
    /// The micromirror array.
    pub dmd: DmdConfig,
    /// The scattering medium.
    #[serde(default)]
    pub medium: MediumConfig,
    /// Slow decorrelation of the medium (off by default).
    #[serde(default)]
    pub drift: DriftConfig,
    /// The camera.
    pub camera: CameraConfig,
}

/// The digital micromirror device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DmdConfig {
    /// Mirror rows.
    pub rows: u32,
    /// Mirror columns.
    pub cols: u32,
    /// Mirrors per feature: `"auto"` (floor(mirrors / features)) or a fixed count.
    #[serde(default)]
    pub macro_pixel: MacroPixel,
}

/// Mirrors per input feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MacroPixel {
    /// floor(total mirrors / features).
    #[default]
    Auto,
    /// A fixed number of mirrors per feature (≥ 1).
    Mirrors(u64),
}

impl Serialize for MacroPixel {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            MacroPixel::Auto => s.serialize_str("auto"),
            MacroPixel::Mirrors(k) => s.serialize_u64(*k),
        }
    }
}

impl<'de> Deserialize<'de> for MacroPixel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = MacroPixel;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"auto\" or a positive integer")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<MacroPixel, E> {
                if v == "auto" {
                    Ok(MacroPixel::Auto)
                } else {
                    Err(E::invalid_value(de::Unexpected::Str(v), &self))
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<MacroPixel, E> {
                match u64::try_from(v) {
                    Ok(k) if k >= 1 => Ok(MacroPixel::Mirrors(k)),
                    _ => Err(E::invalid_value(de::Unexpected::Signed(v), &self)),
                }
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<MacroPixel, E> {
                if v >= 1 {
                    Ok(MacroPixel::Mirrors(v))
                } else {
                    Err(E::invalid_value(de::Unexpected::Unsigned(v), &self))
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// The scattering medium.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediumConfig {
    /// The medium model, `kind = "dense"` (the default) or `"structured"` in TOML.
    #[serde(default)]
    pub kind: MediumKind,
    /// Most memory the transmission matrix may hold, in MiB. The whole matrix is cached when it
    /// fits; otherwise it is regenerated block by block for every batch.
    #[serde(default = "default_budget")]
    pub matrix_budget_mib: u64,
}

/// Why an unknown `medium.kind` is rejected.
const MEDIUM_KINDS: &str = "must be \"dense\" or \"structured\"";

/// The medium model (`medium.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MediumKind {
    /// `"dense"`: an explicit iid complex Gaussian transmission matrix.
    #[default]
    Dense,
    /// `"structured"`: Walsh–Hadamard transforms and random phases, O(n log n), for
    /// million-feature devices (see [`StructuredMedium`](crate::StructuredMedium)).
    Structured,
}

impl MediumKind {
    /// Every kind, in the order the error message lists them.
    pub const ALL: [MediumKind; 2] = [MediumKind::Dense, MediumKind::Structured];

    /// The TOML spelling: `"dense"` or `"structured"`.
    pub fn as_str(self) -> &'static str {
        match self {
            MediumKind::Dense => "dense",
            MediumKind::Structured => "structured",
        }
    }
}

impl fmt::Display for MediumKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for MediumKind {
    type Err = ConfigError;

    /// Parses `"dense"` or `"structured"`; anything else is [`ConfigError::Invalid`] naming
    /// `medium.kind`.
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        MediumKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| invalid("medium.kind", format!("{s:?}"), MEDIUM_KINDS))
    }
}

impl Serialize for MediumKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for MediumKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = MediumKind;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"dense\" or \"structured\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<MediumKind, E> {
                // One line naming the key and the choices (the TOML error adds the line).
                v.parse().map_err(|_: ConfigError| {
                    E::custom(format!("medium.kind = {v:?}: {MEDIUM_KINDS}"))
                })
            }
        }
        d.deserialize_str(V)
    }
}

fn default_budget() -> u64 {
    256
}

impl Default for MediumConfig {
    fn default() -> Self {
        Self {
            kind: MediumKind::default(),
            matrix_budget_mib: default_budget(),
        }
    }
}

/// Drift: `R ← sqrt(1 − rate)·R + sqrt(rate)·G` every `every_frames` frames.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriftConfig {
    /// ρ in [0, 1]; 0 turns drift off.
    #[serde(default)]
    pub rate: f64,
    /// K, frames between two drift steps (≥ 1).
    #[serde(default = "default_every")]
    pub every_frames: u64,
}

fn default_every() -> u64 {
    1000
}

impl Default for DriftConfig {
    fn default() -> Self {
        Self {
            rate: 0.0,
            every_frames: default_every(),
        }
    }
}

/// The camera.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    /// Exact float intensities |field|², no exposure, noise or quantization.
    #[serde(default)]
    pub ideal: bool,
    /// ADC bit depth, 1 to 16 (LightOn's cameras: 8).
    #[serde(default = "default_bits")]
    pub bits: u8,
    /// Exposure per frame, µs.
    #[serde(default = "default_exposure")]
    pub exposure_us: f64,
    /// Time from one frame to the next, µs (≥ exposure).
    #[serde(default = "default_frame_time")]
    pub frame_time_us: f64,
    /// Photons reaching a pixel per µs of exposure at unit intensity (the mean intensity of a
    /// fully lit DMD).
    #[serde(default = "default_photon_rate")]
    pub photon_rate_per_us: f64,
    /// Photoelectrons per photon, in (0, 1].
    #[serde(default = "default_qe")]
    pub quantum_efficiency: f64,
    /// Poisson photon shot noise.
    #[serde(default = "default_true")]
    pub shot_noise: bool,
    /// Gaussian read noise, standard deviation in electrons.
    #[serde(default)]
    pub read_noise_e: f64,
    /// Constant offset (black level) added before the ADC, electrons.
    #[serde(default)]
    pub dark_offset_e: f64,
    /// Full-well capacity: photoelectrons saturate here, electrons.
    #[serde(default = "default_full_well")]
    pub full_well_e: f64,
    /// ADC conversion: electrons per count (inverse gain), e⁻/count.
    #[serde(default = "default_epc")]
    pub electrons_per_count: f64,
}

fn default_bits() -> u8 {
    8
}
fn default_exposure() -> f64 {
    400.0
}
fn default_frame_time() -> f64 {
    500.0
}
fn default_photon_rate() -> f64 {
    5.12
}
fn default_qe() -> f64 {
    0.5
}
fn default_true() -> bool {
    true
}
fn default_full_well() -> f64 {
    4500.0
}
fn default_epc() -> f64 {
    16.0
}

/// One-line location of a TOML error: ` line N (`text`)`.
fn locate(src: &str, span: Option<std::ops::Range<usize>>) -> String {
    let Some(span) = span else {
        return String::new();
    };
    let start = span.start.min(src.len());
    let line_no = src[..start].matches('\n').count() + 1;
    let line_start = src[..start].rfind('\n').map_or(0, |p| p + 1);
    let line_end = src[start..].find('\n').map_or(src.len(), |p| start + p);
    let text = src[line_start..line_end].trim();
    if text.is_empty() {
        format!(" line {line_no}")
    } else {
        format!(" line {line_no} (`{text}`)")
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn invalid(key: &'static str, value: impl fmt::Display, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        value: value.to_string(),
        reason: reason.into(),
    }
}

fn finite_at_least(key: &'static str, v: f64, min: f64, strict: bool) -> Result<(), ConfigError> {
    let ok = v.is_finite() && if strict { v > min } else { v >= min };
    if ok {
        Ok(())
    } else {
        let rel = if strict { ">" } else { "≥" };
        Err(invalid(key, v, format!("must be finite and {rel} {min}")))
    }
}

impl DeviceConfig {
    /// Parses and [checks](Self::check) a TOML document.
    pub fn from_toml_str(src: &str) -> Result<Self, ConfigError> {
        let cfg: DeviceConfig = toml::from_str(src).map_err(|e| ConfigError::Parse {
            location: locate(src, e.span()),
            message: one_line(e.message()),
        })?;
        cfg.check()?;
        Ok(cfg)
    }

    /// Deserializes and [checks](Self::check) an already parsed TOML tree (after `--set`
    /// overrides were applied to it).
    pub fn from_toml_value(value: toml::Value) -> Result<Self, ConfigError> {
        // Through text, so that an error can point at the offending `key = value` line.
        if let Ok(text) = toml::to_string(&value) {
            return Self::from_toml_str(&text);
        }
        let cfg: DeviceConfig =
            value
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Parse {
                    location: String::new(),
                    message: one_line(e.message()),
                })?;
        cfg.check()?;
        Ok(cfg)
    }

    /// Reads, parses and checks a TOML file.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let src = std::fs::read_to_string(path).map_err(|cause| ConfigError::Io {
            path: path.display().to_string(),
            cause,
        })?;
        Self::from_toml_str(&src).map_err(|e| match e {
            ConfigError::Parse { location, message } => ConfigError::Parse {
                location: format!(" {}{}", path.display(), location),
                message,
            },
            other => other,
        })
    }

    /// An embedded preset: `"lighton"` (8-bit LightOn-like camera with noise; what SPEC `sim`
    /// means), `"ideal"` (exact float intensities) or `"structured"` (a 2^20-mirror DMD and
    /// the O(n log n) structured medium, for million-feature devices).
    pub fn preset(name: &str) -> Result<Self, ConfigError> {
        let src = Self::preset_toml(name).ok_or_else(|| ConfigError::UnknownPreset(name.into()))?;
        Self::from_toml_str(src)
    }

    /// The TOML source of an embedded preset, for tools that edit it before parsing.
    pub fn preset_toml(name: &str) -> Option<&'static str> {
        PRESETS.iter().find(|p| p.0 == name).map(|p| p.1)
    }

    /// Names of the embedded presets.
    pub fn preset_names() -> impl Iterator<Item = &'static str> {
        PRESETS.iter().map(|p| p.0)
    }

    /// Total mirror count, rows × cols.
    pub fn mirrors(&self) -> u64 {
        u64::from(self.dmd.rows) * u64::from(self.dmd.cols)
    }

    /// Mirrors per feature for a device of `features` inputs; an error when the features do not
    /// fit on the DMD.
    pub fn macro_pixel_for(&self, features: usize) -> Result<u64, ConfigError> {
        let mirrors = self.mirrors();
        let features_u = u64::try_from(features).unwrap_or(u64::MAX);
        let k = match self.dmd.macro_pixel {
            MacroPixel::Auto => mirrors.checked_div(features_u).unwrap_or(1),
            MacroPixel::Mirrors(k) => k,
        };
        if k == 0 || features_u.checked_mul(k).is_none_or(|m| m > mirrors) {
            return Err(invalid(
                "dmd.macro_pixel",
                match self.dmd.macro_pixel {
                    MacroPixel::Auto => "\"auto\"".to_owned(),
                    MacroPixel::Mirrors(k) => k.to_string(),
                },
                format!(
                    "{features} features × {} mirrors do not fit on the {}×{} DMD ({mirrors} mirrors)",
                    k.max(1),
                    self.dmd.rows,
                    self.dmd.cols
                ),
            ));
        }
        Ok(k)
    }

    /// Validates every value; the error names the key.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.dmd.rows == 0 {
            return Err(invalid("dmd.rows", 0, "must be ≥ 1"));
        }
        if self.dmd.cols == 0 {
            return Err(invalid("dmd.cols", 0, "must be ≥ 1"));
        }
        if self.medium.matrix_budget_mib == 0 || self.medium.matrix_budget_mib > (1 << 30) {
            return Err(invalid(
                "medium.matrix_budget_mib",
                self.medium.matrix_budget_mib,
                "must be in 1 ..= 2^30",
            ));
        }
        let rate = self.drift.rate;
        if !(rate.is_finite() && (0.0..=1.0).contains(&rate)) {
            return Err(invalid("drift.rate", rate, "must be in [0, 1]"));
        }
        if self.drift.every_frames == 0 {
            return Err(invalid("drift.every_frames", 0, "must be ≥ 1"));
        }
        let c = &self.camera;
        if !(1..=16).contains(&c.bits) {
            return Err(invalid(
                "camera.bits",
                c.bits,
                "must be 1 to 16 (what the serial protocol carries)",
            ));
        }
        finite_at_least("camera.exposure_us", c.exposure_us, 0.0, true)?;
        finite_at_least("camera.frame_time_us", c.frame_time_us, 0.0, true)?;
        if c.frame_time_us < c.exposure_us {
            return Err(invalid(
                "camera.frame_time_us",
                c.frame_time_us,
                format!("must be ≥ camera.exposure_us ({})", c.exposure_us),
            ));
        }
        finite_at_least(
            "camera.photon_rate_per_us",
            c.photon_rate_per_us,
            0.0,
            false,
        )?;
        if !(c.quantum_efficiency.is_finite()
            && c.quantum_efficiency > 0.0
            && c.quantum_efficiency <= 1.0)
        {
            return Err(invalid(
                "camera.quantum_efficiency",
                c.quantum_efficiency,
                "must be in (0, 1]",
            ));
        }
        finite_at_least("camera.read_noise_e", c.read_noise_e, 0.0, false)?;
        finite_at_least("camera.dark_offset_e", c.dark_offset_e, 0.0, false)?;
        finite_at_least("camera.full_well_e", c.full_well_e, 0.0, true)?;
        finite_at_least(
            "camera.electrons_per_count",
            c.electrons_per_count,
            0.0,
            true,
        )?;
        // Mean photoelectrons at unit intensity must stay far from f32/f64 trouble.
        let per_unit = c.photon_rate_per_us * c.exposure_us * c.quantum_efficiency;
        if !(per_unit.is_finite() && per_unit <= 1e12) {
            return Err(invalid(
                "camera.photon_rate_per_us",
                c.photon_rate_per_us,
                "photon_rate_per_us × exposure_us × quantum_efficiency must be ≤ 1e12 electrons",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_parse() {
        for name in DeviceConfig::preset_names() {
            DeviceConfig::preset(name).unwrap();
        }
        assert!(DeviceConfig::preset("lighton").unwrap().mirrors() == 912 * 1140);
        assert!(DeviceConfig::preset("ideal").unwrap().camera.ideal);
        for (name, kind) in [
            ("lighton", MediumKind::Dense),
            ("ideal", MediumKind::Dense),
            ("structured", MediumKind::Structured),
        ] {
            assert_eq!(
                DeviceConfig::preset(name).unwrap().medium.kind,
                kind,
                "{name}"
            );
        }
    }

    #[test]
    fn medium_kind_is_parsed_at_the_edge() {
        let base = DeviceConfig::preset_toml("lighton").unwrap();
        assert!(base.contains("kind = \"dense\""));
        let structured = base.replace("kind = \"dense\"", "kind = \"structured\"");
        let cfg = DeviceConfig::from_toml_str(&structured).unwrap();
        assert_eq!(cfg.medium.kind, MediumKind::Structured);
        // The same text back: serialized as the TOML string.
        let text = toml::to_string(&cfg).unwrap();
        assert!(text.contains("kind = \"structured\""), "{text}");
        assert_eq!(DeviceConfig::from_toml_str(&text).unwrap(), cfg);
        // Omitted: dense.
        let omitted = base.replace("kind = \"dense\"", "");
        let cfg = DeviceConfig::from_toml_str(&omitted).unwrap();
        assert_eq!(cfg.medium.kind, MediumKind::Dense);
        // Unknown: one line naming the key and the choices.
        for bad in ["kind = \"sparse\"", "kind = 3"] {
            let err = DeviceConfig::from_toml_str(&base.replace("kind = \"dense\"", bad))
                .unwrap_err()
                .to_string();
            assert!(!err.contains('\n'), "{err}");
            assert!(err.contains("kind"), "{err}");
            assert!(err.contains("\"dense\" or \"structured\""), "{err}");
        }
        let err =
            DeviceConfig::from_toml_str(&base.replace("kind = \"dense\"", "kind = \"sparse\""))
                .unwrap_err()
                .to_string();
        assert!(err.contains("medium.kind = \"sparse\""), "{err}");
        let err = "Dense".parse::<MediumKind>().unwrap_err().to_string();
        assert!(err.contains("medium.kind = \"Dense\""), "{err}");
        assert_eq!(
            "structured".parse::<MediumKind>().unwrap(),
            MediumKind::Structured
        );
        assert_eq!(MediumKind::Dense.to_string(), "dense");
    }

    #[test]
    fn overrides_on_a_toml_tree_are_validated_with_the_key_named() {
        let mut tree: toml::Value =
            toml::from_str(DeviceConfig::preset_toml("lighton").unwrap()).unwrap();
        tree["camera"]["bits"] = toml::Value::String("nine".into());
        let err = DeviceConfig::from_toml_value(tree.clone())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("bits = \"nine\"") && !err.contains('\n'),
            "{err}"
        );
        tree["camera"]["bits"] = toml::Value::Integer(17);
        let err = DeviceConfig::from_toml_value(tree.clone())
            .unwrap_err()
            .to_string();
        assert!(err.contains("camera.bits") && !err.contains('\n'), "{err}");
        for bits in [4, 6, 10] {
            tree["camera"]["bits"] = toml::Value::Integer(bits);
            let cfg = DeviceConfig::from_toml_value(tree.clone()).unwrap();
            assert_eq!(i64::from(cfg.camera.bits), bits);
        }
    }
}
