use clap::Args;

#[derive(Args, Debug)]
pub struct TransformArgs {}

pub fn run(_args: TransformArgs) -> anyhow::Result<()> {
    anyhow::bail!("speckle transform is not implemented yet")
}
