//! `watch`: live, typed events as the graph sees them.

use std::process::ExitCode;

use clap::Args;

use super::Global;

#[derive(Debug, Args)]
pub struct WatchArgs {}

pub fn run(_g: &Global, _args: WatchArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`hbad watch` is not written yet")
}
