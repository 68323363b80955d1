//! The `speckle` command line.
use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod cmd;

#[derive(Parser)]
#[command(
    name = "speckle",
    version,
    about = "DFA training with optical random projections"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Describe a device: dimensions, bit depth, timing.
    Info(cmd::info::InfoArgs),
    /// Project a .npy batch through a device (raw camera frames, or --linear).
    Transform(cmd::transform::TransformArgs),
    /// Measure projection or training throughput.
    Bench(cmd::bench::BenchArgs),
    /// Train a network (DFA on MNIST with the simulated OPU by default).
    Train(cmd::train::TrainArgs),
    /// Download and verify data sets.
    Data(cmd::data::DataArgs),
    /// Serve a simulated OPU over a pseudo-terminal with the speckle wire protocol.
    Emulate(cmd::emulate::EmulateArgs),
    /// Run a grid of training runs and report alignment and accuracy.
    Sweep(cmd::sweep::SweepArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info(a) => cmd::info::run(a),
        Command::Transform(a) => cmd::transform::run(a),
        Command::Bench(a) => cmd::bench::run(a),
        Command::Train(a) => cmd::train::run(a),
        Command::Data(a) => cmd::data::run(a),
        Command::Emulate(a) => cmd::emulate::run(a),
        Command::Sweep(a) => cmd::sweep::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the chain of causes joined, never a backtrace.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
