use clap::Args;

#[derive(Args, Debug)]
pub struct DataArgs {}

pub fn run(_args: DataArgs) -> anyhow::Result<()> {
    anyhow::bail!("speckle data is not implemented yet")
}
