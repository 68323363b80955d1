//! [`FeedbackSpec`]: the device side of DFA's feedback, B·e: which projector, how the error is
//! encoded, the matrix seed and the device overrides, typed and checked once.
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serializer};
use speckle_hal::{Error, RandomProjector};
use speckle_projection::Encoding;
use toml::Table;

use crate::open::{open_projector, sim_config};
use crate::spec::{DeviceSpec, SimSource, DEFAULT_PRESET};

/// Where DFA's random projection comes from.
///
/// ```
/// use speckle_devices::FeedbackSpec;
///
/// let fb = FeedbackSpec { projector: "digital".parse()?, ..FeedbackSpec::default() };
/// fb.check()?;
/// let mut projector = fb.open(10, 32)?;
/// let e = [0.1f32, -0.9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.0];
/// let mut y = [0f32; 32];
/// projector.project(&e, 1, &mut y)?;
/// assert!(y.iter().any(|&v| v != 0.0));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct FeedbackSpec {
    /// The projector's device.
    pub projector: DeviceSpec,
    /// How signed error vectors become binary frames on an optical device.
    pub encoding: Encoding,
    /// Seed of the projection matrix (the device's seed).
    pub seed: u64,
    /// Overrides of a simulated device's config keys (`camera.bits = 6`).
    pub device: Table,
}

impl Default for FeedbackSpec {
    /// The simulated 8-bit OPU with ternary error encoding, seed 0.
    fn default() -> Self {
        Self {
            projector: DeviceSpec::Sim(SimSource::Preset(DEFAULT_PRESET.into())),
            encoding: Encoding::default(),
            seed: 0,
            device: Table::new(),
        }
    }
}

impl FeedbackSpec {
    /// Opens the projector for `input_dim` (classes) → `output_dim` (feedback width).
    pub fn open(
        &self,
        input_dim: usize,
        output_dim: usize,
    ) -> Result<Box<dyn RandomProjector + Send>, Error> {
        open_projector(
            &self.projector,
            self.encoding,
            self.device_overrides(),
            input_dim,
            output_dim,
            self.seed,
        )
    }

    /// The overrides that apply to the projector: none for `digital`, which has no device
    /// config (a sweep may cross device settings with a digital baseline; they do not apply
    /// to it).
    fn device_overrides(&self) -> &Table {
        static EMPTY: std::sync::OnceLock<Table> = std::sync::OnceLock::new();
        match self.projector {
            DeviceSpec::Digital => EMPTY.get_or_init(Table::new),
            _ => &self.device,
        }
    }

    /// Checks what can be checked without opening the device: a simulated device's config with
    /// its overrides (unknown keys and bad values are errors naming the key).
    pub fn check(&self) -> Result<(), Error> {
        match &self.projector {
            DeviceSpec::Sim(source) => sim_config(source, &self.device)
                .map(|_| ())
                .map_err(|e| Error::new(e.kind(), format!("feedback.device: {e}"))),
            _ => Ok(()),
        }
    }

    /// Projection SNR of this feedback (see [`crate::snr`]).
    pub fn snr_db(&self, input_dim: usize, output_dim: usize) -> Result<Option<f64>, Error> {
        crate::snr::projection_snr_db(self, input_dim, output_dim)
    }
}

/// Serde support for types that are strings in config files (`DeviceSpec`, `Encoding`):
/// `#[serde(with = "speckle_devices::as_string")]` writes `Display` and reads `FromStr`.
pub mod as_string {
    use super::*;

    /// Writes the value's `Display` form.
    pub fn serialize<T: fmt::Display, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(value)
    }

    /// Reads the value with `FromStr`; a parse error becomes the deserializer's error.
    pub fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
    where
        T: FromStr,
        T::Err: fmt::Display,
        D: Deserializer<'de>,
    {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}
