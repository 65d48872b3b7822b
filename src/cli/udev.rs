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

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use super::Global;
use crate::ownership::OwnedState;
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
    /// Take the sysfs and /dev roots from HBAD_SYSFS_ROOT and HBAD_DEV_ROOT too.
    /// Without it only --sysfs-root/--dev-root on the command line move them: udev
    /// passes its environment (the device's properties) to the programs it runs,
    /// and that must never choose what hbad reads.
    #[arg(long)]
    pub roots_from_env: bool,
}

/// The most bytes of a vHBA name udev is given: one path component.
const NAME_MAX: usize = 255;

/// What udev needs to name a vHBA's disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VhbaDisk {
    pub vhba: String,
    pub target_wwpn: Wwn,
    pub lun: u64,
}

impl VhbaDisk {
    /// udev's IMPORT{program} lines: a fixed set of keys, values that are a vHBA
    /// name reduced to [`udev_safe`], a WWN and a number. Nothing read from sysfs
    /// reaches udev unreduced, so a newline in a symbolic_name cannot add a property.
    pub fn properties(&self) -> String {
        format!(
            "HBAD_VHBA={}\nHBAD_TARGET_WWPN={}\nHBAD_LUN={}\n",
            self.vhba, self.target_wwpn, self.lun
        )
    }
}

/// A name reduced to the characters udev keeps in a device link
/// (`0-9A-Za-z#+-.:@_`, as its `replace_chars` whitelist), others replaced by `_`,
/// at most one path component long. `None` where nothing usable is left: empty, or
/// a name that would be `.`, `..` or hidden as a directory under /dev/disk/by-vhba.
pub fn udev_safe(name: &str) -> Option<String> {
    let safe: String = name
        .chars()
        .take(NAME_MAX)
        .map(|c| {
            if c.is_ascii_alphanumeric() || "#+-.:@_".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    (!safe.is_empty() && !safe.starts_with('.')).then_some(safe)
}

/// Walks a disk's (or partition's) devpath: the LUN from its H:C:T:L, the target's
/// WWPN from its remote port, and the vHBA's name from the vport above its host.
/// `None` for anything not reached through a vHBA hbad marked.
pub fn vhba_disk(sysfs: &Sysfs, state: &OwnedState, devpath: &str) -> Option<VhbaDisk> {
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
    let vport = sysfs.read_vport(&prefix(vport_at)).ok()?;
    let name = state.named(vport.symbolic_name.as_deref(), vport.wwpn)?;
    Some(VhbaDisk {
        vhba: udev_safe(&name)?,
        target_wwpn,
        lun,
    })
}

/// A root from the command line, or its default: the environment counts only
/// when asked (`--roots-from-env`). clap has already preferred the command line
/// over the environment, so the parsed value stands when the flag was given.
fn root(parsed: &Path, flag: &str, default: &str, from_env: bool) -> PathBuf {
    let given = std::env::args_os().any(|a| {
        a.to_str()
            .is_some_and(|a| a == flag || a.starts_with(&format!("{flag}=")))
    });
    if from_env || given {
        parsed.to_path_buf()
    } else {
        PathBuf::from(default)
    }
}

/// Always exits 0, printing nothing where there is nothing to import: a udev
/// program that fails (or crashes, or writes to stderr) fails the device's event
/// for nothing hbad could fix.
pub fn udev_id(g: &Global, args: UdevIdArgs) -> anyhow::Result<ExitCode> {
    // Silent even where a bug would panic: udev logs a program's stderr.
    std::panic::set_hook(Box::new(|_| {}));
    let found = std::panic::catch_unwind(|| {
        let sysfs = Sysfs::new(
            root(&g.sysfs_root, "--sysfs-root", "/sys", args.roots_from_env),
            root(&g.dev_root, "--dev-root", "/dev", args.roots_from_env),
        );
        vhba_disk(&sysfs, &OwnedState::new(&args.state_file), &args.devpath)
    });
    if let Ok(Some(disk)) = found {
        use std::io::Write;
        // A closed stdout is udev's business, not a failure of the device.
        let _ = std::io::stdout()
            .lock()
            .write_all(disk.properties().as_bytes());
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_reduced_to_what_udev_keeps_in_a_link() {
        assert_eq!(udev_safe("vm-a").as_deref(), Some("vm-a"));
        assert_eq!(
            udev_safe("vm-a\nHBAD_LUN=7").as_deref(),
            Some("vm-a_HBAD_LUN_7")
        );
        assert_eq!(udev_safe("a/../b c\té").as_deref(), Some("a_.._b_c__"));
        assert_eq!(udev_safe("$(reboot)").as_deref(), Some("__reboot_"));
        assert_eq!(udev_safe(""), None);
        assert_eq!(udev_safe("."), None);
        assert_eq!(udev_safe(".."), None);
        assert_eq!(
            udev_safe(&"x".repeat(5000)).map(|n| n.len()),
            Some(NAME_MAX)
        );
        let disk = VhbaDisk {
            vhba: udev_safe("db\r\nHBAD_VHBA=x").unwrap_or_default(),
            target_wwpn: Wwn::from_u64(0x5006_0160_3ce0_174b),
            lun: 27,
        };
        assert_eq!(
            disk.properties(),
            "HBAD_VHBA=db__HBAD_VHBA_x\nHBAD_TARGET_WWPN=0x500601603ce0174b\nHBAD_LUN=27\n"
        );
    }
}
