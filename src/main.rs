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
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    // Commands that write files remove their temporary files when interrupted (SIGINT, SIGTERM,
    // SIGHUP) and exit with 128 + the signal; the emulator stops gracefully on its own.
    if !matches!(cli.command, Command::Emulate(_)) {
        if let Err(e) = speckle::runs::atomic::install_signal_cleanup() {
            eprintln!("error: cannot install the signal handler: {e}");
            return ExitCode::FAILURE;
        }
    }
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
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line, `context: cause: root`, each clause once. Library
/// errors carry their cause in their message and return no `source()`; as a safety net, a
/// cause whose text the line already ends with is not repeated, and line breaks inside a
/// message become spaces.
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if text.is_empty() || line.ends_with(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// Help and version go to stdout as clap prints them; a usage error (bad value, missing or unknown
/// argument) becomes one `error: ...` line on stderr with clap's exit code 2.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        e.exit();
    }
    let text = e.render().to_string();
    let parts: Vec<&str> = text
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty())
        .collect();
    let message = parts.join(" ");
    eprintln!(
        "error: {}",
        message.strip_prefix("error: ").unwrap_or(&message)
    );
    ExitCode::from(2)
}
