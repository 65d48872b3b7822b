//! `demo`: hbad on a simulated host.

use std::process::ExitCode;

use clap::Args;

use super::Global;

#[derive(Debug, Args)]
pub struct DemoArgs {}

pub fn run(_g: &Global, _args: DemoArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`hbad demo` is not written yet")
}
