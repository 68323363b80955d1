use clap::Args;

#[derive(Args, Debug)]
pub struct InfoArgs {}

pub fn run(_args: InfoArgs) -> anyhow::Result<()> {
    anyhow::bail!("speckle info is not implemented yet")
}
