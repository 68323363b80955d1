use clap::Args;

#[derive(Args, Debug)]
pub struct EmulateArgs {}

pub fn run(_args: EmulateArgs) -> anyhow::Result<()> {
    anyhow::bail!("speckle emulate is not implemented yet")
}
