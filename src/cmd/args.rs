//! Arguments shared by several subcommands, flattened into their clap structs.
use clap::Args;
use speckle_devices::{overrides, DeviceSpec};

/// `--set SECTION.KEY=VALUE` (repeatable): overrides of a config's keys, applied to the TOML
/// tree before it is validated, so a misspelt key is rejected like a misspelt file key.
#[derive(Args, Debug, Clone, Default)]
pub struct SetArgs {
    /// Override a config key, `section.key=value` (repeatable); VALUE is a TOML value
    /// (`10`, `0.5`, `true`, `[1, 2]`) or else plain text.
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    pub items: Vec<String>,
}

impl SetArgs {
    /// The overrides as a table, to merge into a device config.
    pub fn table(&self) -> anyhow::Result<toml::Table> {
        Ok(overrides::parse(&self.items)?)
    }
}

/// The device a command opens: `--device SPEC --seed S --set K=V...`.
#[derive(Args, Debug, Clone)]
pub struct DeviceArgs {
    /// Device SPEC: sim, sim:PRESET, sim:PATH, digital (linear projections only) or
    /// serial:PATH[@BAUD].
    #[arg(long, default_value = "sim", value_name = "SPEC")]
    pub device: DeviceSpec,
    /// Seed of the simulated medium and its noise, or of the digital Gaussian matrix.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Device config overrides (simulated devices only).
    #[command(flatten)]
    pub set: SetArgs,
}
