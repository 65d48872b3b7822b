//! `udev-id`: which hbad vHBA a disk is reached through, for udev's `IMPORT{program}`.
//!
//! Upstream udev names a LUN `pci-<bdf>-fc-0x<target>-lun-N` after the physical
//! port, so two vHBAs of one port that see the same target LUN get the same by-path
//! name, and one of them wins (systemd PR #2731 was never merged). hbad's rule
//! (`udev-rules/60-hbad-vhba.rules`) asks this command for the vHBA instead and links
//! `/dev/disk/by-vhba/<vhba>/<target wwpn>-lun-<N>`, unique per vHBA.
//!
//! It runs once per disk event on the vHBA's disks (the rule filters on the devpath
//! first), so it reads only the few attributes on the device's own path: no graph,
//! no policy.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use super::Global;
use crate::exec::vport::{SysfsPoll, Vports};
use crate::ownership::OwnedState;
use crate::sysfs::writes::KernelWriter;
use crate::sysfs::{port_address, Hctl, Sysfs};
use crate::wwn::Wwn;

#[derive(Debug, Args)]
pub struct UdevIdArgs {
    /// The device's devpath, as udev's %p gives it (/devices/...).
    pub devpath: String,
    /// Where hbad records ownership when a driver refuses symbolic_name.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/var/lib/hbad/owned-vhbas.json"
    )]
    pub state_file: PathBuf,
}

/// What udev needs to name a vHBA's disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VhbaDisk {
    pub vhba: String,
    pub target_wwpn: Wwn,
    pub lun: u64,
}

/// Walks a disk's (or partition's) devpath: the LUN from its H:C:T:L, the target's
/// WWPN from its remote port, and the vHBA's name from the vport above its host.
/// `None` for anything not reached through a vHBA hbad owns.
pub fn vhba_disk(sysfs: &Sysfs, vports: &Vports, devpath: &str) -> Option<VhbaDisk> {
    let parts: Vec<&str> = devpath.split('/').collect();
    let prefix = |i: usize| parts[..=i].join("/");
    let lun_at = parts.iter().rposition(|p| p.parse::<Hctl>().is_ok())?;
    let lun = parts[lun_at].parse::<Hctl>().ok()?.lun;
    let rport_at = parts[..lun_at]
        .iter()
        .rposition(|p| port_address(p, "rport-").is_some())?;
    let target_wwpn = sysfs.read_remote_port(&prefix(rport_at)).ok()?.wwpn?;
    // The host above the remote port must be a vHBA: its parent is a vport.
    let vport_at = rport_at.checked_sub(2)?;
    port_address(parts[vport_at], "vport-")?;
    // Naming, not deleting: udev runs without the policy.
    let vhba = vports.named(&prefix(vport_at))?;
    // The name becomes a directory under /dev/disk/by-vhba.
    if vhba.is_empty() || vhba.contains('/') || vhba.starts_with('.') {
        return None;
    }
    Some(VhbaDisk {
        vhba,
        target_wwpn,
        lun,
    })
}

pub fn udev_id(g: &Global, args: UdevIdArgs) -> anyhow::Result<ExitCode> {
    let sysfs = g.sysfs();
    let vports = Vports::new(
        sysfs.clone(),
        Arc::new(KernelWriter),
        Arc::new(SysfsPoll::new(sysfs.clone(), Duration::from_millis(50))),
        OwnedState::new(&args.state_file),
        Duration::ZERO,
    );
    match vhba_disk(&sysfs, &vports, &args.devpath) {
        Some(d) => {
            // udev's IMPORT{program} format: KEY=value lines.
            println!("HBAD_VHBA={}", d.vhba);
            println!("HBAD_TARGET_WWPN={}", d.target_wwpn);
            println!("HBAD_LUN={}", d.lun);
            Ok(ExitCode::SUCCESS)
        }
        // Not a disk of an hbad vHBA: nothing to import, and udev moves on.
        None => Ok(ExitCode::from(1)),
    }
}
