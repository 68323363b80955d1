//! [`FeedbackSpec`]: the device side of DFA's feedback, B·e: which projector, the distribution
//! of its matrix, how the error is encoded, the matrix seed and the device overrides, typed and
//! checked once.
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serializer};
use speckle_hal::{Error, ErrorKind, RandomProjector};
use speckle_projection::{DigitalProjector, Encoding, EntryDistribution};
use toml::Table;

use crate::open::{open_projector, sim_config};
use crate::spec::{DeviceSpec, SimSource, DEFAULT_PRESET};

/// The distribution of DFA's feedback matrix (a run's `feedback.distribution`): `gaussian`,
/// `uniform` or `xavier`.
///
/// An optical device's matrix is physical: its linear projection has Gaussian entries, so
/// `uniform` and `xavier` need the `digital` projector ([`FeedbackSpec::check`] refuses them
/// otherwise).
///
/// ```
/// use speckle_devices::FeedbackDistribution;
///
/// let xavier: FeedbackDistribution = "xavier".parse()?;
/// assert_eq!(xavier.to_string(), "xavier");
/// assert!("normal".parse::<FeedbackDistribution>().is_err());
/// # Ok::<(), String>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum FeedbackDistribution {
    /// N(0, 1) entries: the seed code's (lightonai/principled-dfa-training), and what an
    /// optical device's linear projection provides.
    #[default]
    Gaussian,
    /// U[−1, 1) entries, TinyDFA's (`torch.rand(C, d_max) * 2 - 1`). Digital projector only.
    /// Each layer's slice is then scaled like a Gaussian one (`feedback.normalization`), so
    /// only the shape of the distribution changes.
    Uniform,
    /// BioTorch's feedback (jsalbert/biotorch, `biotorch/layers/dfa/linear.py`:
    /// `nn.init.xavier_uniform_` on each layer's C × d_i matrix, gain 1): entries U(±sqrt(6 /
    /// (C + d_i))). The digital projector draws U[−1, 1) entries and the trainer scales each
    /// layer's slice to that bound (its `FeedbackScale::Xavier`); BioTorch's matrices are
    /// independent per layer, which is `feedback.per_layer = true`. Digital projector only.
    Xavier,
}

impl FeedbackDistribution {
    /// The distribution of the projector's entries: Gaussian, or uniform for `uniform` and
    /// `xavier` (whose per-layer scale the trainer applies).
    pub fn entries(self) -> EntryDistribution {
        match self {
            FeedbackDistribution::Gaussian => EntryDistribution::Gaussian,
            FeedbackDistribution::Uniform | FeedbackDistribution::Xavier => {
                EntryDistribution::Uniform
            }
        }
    }
}

impl fmt::Display for FeedbackDistribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FeedbackDistribution::Gaussian => "gaussian",
            FeedbackDistribution::Uniform => "uniform",
            FeedbackDistribution::Xavier => "xavier",
        })
    }
}

impl FromStr for FeedbackDistribution {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "gaussian" => Ok(FeedbackDistribution::Gaussian),
            "uniform" => Ok(FeedbackDistribution::Uniform),
            "xavier" => Ok(FeedbackDistribution::Xavier),
            _ => Err(format!(
                "unknown feedback distribution {s:?} (expected gaussian, uniform or xavier)"
            )),
        }
    }
}

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
    /// The distribution of the projection matrix (anything but Gaussian needs `digital`).
    pub distribution: FeedbackDistribution,
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
            distribution: FeedbackDistribution::Gaussian,
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
        self.check_distribution()?;
        if self.projector == DeviceSpec::Digital {
            // Its overrides are not applied, but a misspelt key is still an error.
            self.check()?;
            return Ok(Box::new(DigitalProjector::with_entries(
                input_dim,
                output_dim,
                self.seed,
                self.distribution.entries(),
            )?));
        }
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
    /// its overrides (unknown keys and bad values are errors naming the key). For `digital`,
    /// which applies no overrides, they must still be valid keys and values of a simulated
    /// device (checked against the default preset): `camera.bitz = 8` is an error.
    pub fn check(&self) -> Result<(), Error> {
        self.check_distribution()?;
        match &self.projector {
            DeviceSpec::Sim(source) => sim_config(source, &self.device)
                .map(|_| ())
                .map_err(|e| Error::new(e.kind(), format!("feedback.device: {e}"))),
            DeviceSpec::Digital if !self.device.is_empty() => {
                sim_config(&SimSource::Preset(DEFAULT_PRESET.into()), &self.device)
                    .map(|_| ())
                    .map_err(|e| {
                        Error::new(
                            e.kind(),
                            format!(
                                "feedback.device (not applied to digital, but checked as keys of a simulated device): {e}"
                            ),
                        )
                    })
            }
            _ => Ok(()),
        }
    }

    /// Refuses a distribution that the projector cannot provide: only `digital` draws its
    /// matrix; a device's is physical (Gaussian). Opens nothing and reads no file (part of
    /// [`FeedbackSpec::check`]).
    pub fn check_distribution(&self) -> Result<(), Error> {
        if self.distribution == FeedbackDistribution::Gaussian
            || self.projector == DeviceSpec::Digital
        {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "feedback.distribution = \"{}\" needs feedback.projector = \"digital\": the matrix of {} is the device's own (Gaussian)",
                self.distribution, self.projector
            ),
        ))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distributions_parse_and_round_trip() {
        for s in ["gaussian", "uniform", "xavier"] {
            let d: FeedbackDistribution = s.parse().unwrap();
            assert_eq!(d.to_string(), s);
        }
        let e = "Gaussian".parse::<FeedbackDistribution>().unwrap_err();
        assert!(
            e.contains("gaussian, uniform or xavier") && !e.contains('\n'),
            "{e}"
        );
        assert_eq!(
            FeedbackDistribution::Xavier.entries(),
            EntryDistribution::Uniform
        );
    }

    #[test]
    fn digital_projector_draws_the_distribution() {
        for (distribution, variance, kind) in [
            (FeedbackDistribution::Gaussian, 1.0, "gaussian("),
            (FeedbackDistribution::Uniform, 1.0 / 3.0, "uniform("),
            (FeedbackDistribution::Xavier, 1.0 / 3.0, "uniform("),
        ] {
            let fb = FeedbackSpec {
                projector: DeviceSpec::Digital,
                distribution,
                seed: 4,
                ..FeedbackSpec::default()
            };
            fb.check().unwrap();
            let p = fb.open(10, 32).unwrap();
            let info = p.info();
            assert_eq!(info.entry_variance, variance, "{distribution}");
            assert!(info.identity.starts_with(kind), "{}", info.identity);
        }
    }

    #[test]
    fn a_device_cannot_provide_another_distribution() {
        for distribution in [FeedbackDistribution::Uniform, FeedbackDistribution::Xavier] {
            let fb = FeedbackSpec {
                distribution,
                ..FeedbackSpec::default()
            };
            let e = fb.check().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput);
            let msg = e.to_string();
            assert!(
                msg.contains(&format!("feedback.distribution = \"{distribution}\""))
                    && msg.contains("digital")
                    && !msg.contains('\n'),
                "{msg}"
            );
            assert!(fb.open(10, 32).is_err());
        }
    }
}
