//! `list`, `tree`, `show`, `luns`: views of the graph loaded from sysfs.

use std::process::ExitCode;

use super::{Cap, Global};

pub fn list(_g: &Global, _cap: Option<Cap>) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`hbad list` is not written yet")
}

pub fn tree(_g: &Global) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`hbad tree` is not written yet")
}

pub fn show(_g: &Global, _device: &str) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`hbad show` is not written yet")
}

pub fn luns(_g: &Global, _filter: Option<&str>) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`hbad luns` is not written yet")
}
