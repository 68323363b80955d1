//! `speckle emulate`: serve a simulated OPU over a pseudo-terminal with the speckle protocol.
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;

use speckle_devices::{sim_config, DeviceSpec};

use super::args::DeviceArgs;

/// `--device`, `--seed` and `--set` are the shared [`DeviceArgs`], with their help narrowed to
/// the simulated devices the emulator serves.
#[derive(Args, Debug)]
#[command(mut_arg("device", |a| a.help(
    "The simulated device to serve: sim, sim:PRESET or sim:PATH (a device TOML)"
)))]
#[command(mut_arg("seed", |a| a.help(
    "Seed of the medium and the noise (the same as `--seed` of the in-process commands)"
)))]
pub struct EmulateArgs {
    /// Path of the symlink to create to the pseudo-terminal's device end (what hosts open, as
    /// `--device serial:PATH`). Removed on exit. A link that another running emulator serves is
    /// refused; a dangling one, left by a killed emulator, is replaced.
    #[arg(long, value_name = "PATH")]
    pub link: PathBuf,
    #[command(flatten)]
    pub dev: DeviceArgs,
    /// Link faults to inject, as kind=rate pairs with rates per frame, e.g.
    /// drop=0.01,flip=0.01,truncate=0.01,delay=0.01,reset=0.001 (and delay_ms=N): drop loses
    /// 1 to 8 bytes of a frame (it arrives damaged, or glued to the next one when its delimiter
    /// is lost), flip flips 1 to 3 bits, truncate cuts it short, delay sends an answer late,
    /// reset restarts the device.
    #[arg(long, value_name = "SPEC")]
    pub faults: Option<String>,
    /// Seed of the fault stream.
    #[arg(long, default_value_t = 1)]
    pub fault_seed: u64,
}

#[cfg(unix)]
pub fn run(args: EmulateArgs) -> anyhow::Result<()> {
    use speckle_devices::emulator::{sim_emulator_options, sim_factory};
    use speckle_serial::pty::{stop_on_signals, PtyLink};
    use speckle_serial::{Emulator, FaultConfig};

    let DeviceSpec::Sim(source) = &args.dev.device else {
        bail!(
            "speckle emulate serves a simulated device: --device must be sim, sim:PRESET or sim:PATH, not '{}'",
            args.dev.device
        );
    };
    let config = sim_config(source, &args.dev.set.table()?)?;
    let faults: FaultConfig = match &args.faults {
        Some(s) => s.parse().with_context(|| format!("bad --faults '{s}'"))?,
        None => FaultConfig::none(),
    };
    let stop = stop_on_signals()?;
    let mut options = sim_emulator_options(&config);
    options.faults = faults.clone();
    options.fault_seed = args.fault_seed;
    let mut link = PtyLink::create(&args.link)?;
    eprintln!(
        "speckle emulate: serving {} (seed {}) on {} -> {}{}; stop with Ctrl-C",
        args.dev.device,
        args.dev.seed,
        link.link().display(),
        link.device_path().display(),
        if faults.is_active() {
            format!(", faults {}", args.faults.as_deref().unwrap_or(""))
        } else {
            String::new()
        },
    );
    let mut emulator = Emulator::new(sim_factory(config, args.dev.seed), options);
    let result = emulator.serve(link.port(), &stop);
    let stats = emulator.stats();
    eprintln!(
        "speckle emulate: stopped after {} frames shown, {} requests, {} damaged frames received, {} answers dropped unread, faults injected {:?}",
        stats.frames_shown, stats.frames_received, stats.bad_frames, stats.frames_unsent, stats.faults
    );
    drop(link);
    result?;
    Ok(())
}

#[cfg(not(unix))]
pub fn run(_args: EmulateArgs) -> anyhow::Result<()> {
    bail!("speckle emulate needs pseudo-terminals, which this platform lacks")
}
