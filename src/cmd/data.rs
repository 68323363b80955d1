//! `speckle data fetch mnist|fashion-mnist|cifar10 [--dir D] [--mirror URL]`: downloads a data
//! set from its usual public mirrors and verifies every file's checksum.
use clap::{Args, Subcommand};
use speckle_runs::data::{fetch, DatasetKind};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct DataArgs {
    #[command(subcommand)]
    pub command: DataCommand,
}

#[derive(Subcommand, Debug)]
pub enum DataCommand {
    /// Download a data set and verify its checksums (files already present and valid are kept).
    Fetch(FetchArgs),
}

#[derive(Args, Debug)]
pub struct FetchArgs {
    /// mnist, fashion-mnist or cifar10.
    #[arg(value_parser = parse_dataset)]
    pub dataset: DatasetKind,
    /// Destination directory (default: data/<dataset>).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Base URL to download the files from instead of the built-in mirrors.
    #[arg(long, value_name = "URL")]
    pub mirror: Option<String>,
}

fn parse_dataset(s: &str) -> Result<DatasetKind, String> {
    DatasetKind::from_name(s)
        .ok_or_else(|| format!("unknown data set '{s}' (expected mnist, fashion-mnist or cifar10)"))
}

pub fn run(args: DataArgs) -> anyhow::Result<()> {
    match args.command {
        DataCommand::Fetch(a) => {
            let dir = a
                .dir
                .unwrap_or_else(|| PathBuf::from("data").join(a.dataset.name()));
            let plan = fetch::plan(a.dataset);
            let files = fetch::fetch(&plan, &dir, a.mirror.as_deref(), &mut |line| {
                eprintln!("{line}")
            })?;
            println!(
                "{}: {} files verified in {}",
                a.dataset.name(),
                files.len(),
                dir.display()
            );
            Ok(())
        }
    }
}
