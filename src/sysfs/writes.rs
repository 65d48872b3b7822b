//! The only writes hbad makes to the kernel, through one narrow seam.
//!
//! [`AttrWriter`] has two implementations: [`KernelWriter`] writes the real files, and
//! the simulator interprets the same writes with the kernel's semantics (formats,
//! errno values, new devices and their uevents). Everything above this module builds
//! exactly the text the kernel parses, so the simulator checks our formats too.

use std::fmt;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{Sysfs, VportControlDir};
use crate::wwn::{Wwn, WwnStyle};

/// Writes one value to one sysfs attribute, as a single `write(2)`.
pub trait AttrWriter: Send + Sync + fmt::Debug {
    fn write_attr(&self, path: &Path, value: &str) -> io::Result<()>;
}

/// Writes to the real sysfs.
#[derive(Debug, Default, Clone, Copy)]
pub struct KernelWriter;

impl AttrWriter for KernelWriter {
    fn write_attr(&self, path: &Path, value: &str) -> io::Result<()> {
        // Never create: a missing attribute means the driver lacks the feature, and
        // creating a regular file in its place would hide that.
        let mut file = OpenOptions::new().write(true).open(path)?;
        // sysfs store handlers see exactly one write; a short or split write would be
        // parsed as two commands.
        file.write_all(value.as_bytes())
    }
}

/// What a scan covers: the `C T L` triple written to `scsi_host/hostN/scan`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(tag = "scope", rename_all = "snake_case")]
pub enum ScanScope {
    /// `- - -`: every channel, target and LUN the host knows of.
    Host,
    /// `C T -`: every LUN of one target.
    Target { channel: u32, target: u32 },
    /// `C T L`: one LUN.
    Lun { channel: u32, target: u32, lun: u64 },
}

impl ScanScope {
    /// The exact text the kernel's `store_scan` parses.
    pub fn kernel_text(self) -> String {
        match self {
            ScanScope::Host => "- - -".to_string(),
            ScanScope::Target { channel, target } => format!("{channel} {target} -"),
            ScanScope::Lun {
                channel,
                target,
                lun,
            } => format!("{channel} {target} {lun}"),
        }
    }

    /// Does a scan of `self` cover a scan of `other` on the same host?
    pub fn covers(self, other: ScanScope) -> bool {
        match (self, other) {
            (ScanScope::Host, _) => true,
            (
                ScanScope::Target { channel, target },
                ScanScope::Target {
                    channel: c,
                    target: t,
                },
            )
            | (
                ScanScope::Target { channel, target },
                ScanScope::Lun {
                    channel: c,
                    target: t,
                    ..
                },
            ) => channel == c && target == t,
            (a, b) => a == b,
        }
    }
}

impl fmt::Display for ScanScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.kernel_text())
    }
}

/// The text `vport_create`/`vport_delete` parse: `WWPN:WWNN`, bare hex, nothing else.
pub fn vport_text(wwpn: Wwn, wwnn: Wwn) -> String {
    format!(
        "{}:{}",
        wwpn.format(WwnStyle::Bare),
        wwnn.format(WwnStyle::Bare)
    )
}

/// Paths of the writable attributes, derived from device paths the graph knows.
impl Sysfs {
    pub fn vport_create_path(&self, host_devpath: &str, dir: VportControlDir) -> PathBuf {
        self.host_class_dir(host_devpath, dir).join("vport_create")
    }

    pub fn vport_delete_path(&self, host_devpath: &str, dir: VportControlDir) -> PathBuf {
        self.host_class_dir(host_devpath, dir).join("vport_delete")
    }

    pub fn scan_path(&self, host_devpath: &str) -> PathBuf {
        self.host_class_dir(host_devpath, VportControlDir::ScsiHost)
            .join("scan")
    }

    pub fn issue_lip_path(&self, host_devpath: &str) -> PathBuf {
        self.host_class_dir(host_devpath, VportControlDir::FcHost)
            .join("issue_lip")
    }

    pub fn rescan_path(&self, lun_devpath: &str) -> PathBuf {
        self.path(lun_devpath).join("rescan")
    }

    pub fn vport_symbolic_name_path(&self, vport_devpath: &str) -> PathBuf {
        let name = super::devpath_name(vport_devpath);
        self.path(vport_devpath)
            .join("fc_vports")
            .join(name)
            .join("symbolic_name")
    }

    fn host_class_dir(&self, host_devpath: &str, dir: VportControlDir) -> PathBuf {
        let name = super::devpath_name(host_devpath);
        let class = match dir {
            VportControlDir::FcHost => "fc_host",
            VportControlDir::ScsiHost => "scsi_host",
        };
        self.path(host_devpath).join(class).join(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_what_the_kernel_parses() {
        assert_eq!(ScanScope::Host.kernel_text(), "- - -");
        assert_eq!(
            ScanScope::Target {
                channel: 0,
                target: 3
            }
            .kernel_text(),
            "0 3 -"
        );
        assert_eq!(
            ScanScope::Lun {
                channel: 0,
                target: 3,
                lun: 27
            }
            .kernel_text(),
            "0 3 27"
        );
        let p = Wwn::from_u64(0x5001_a4a0_0000_0b01);
        let n = Wwn::from_u64(0x5001_a4a0_0000_0b00);
        assert_eq!(vport_text(p, n), "5001a4a000000b01:5001a4a000000b00");
    }

    #[test]
    fn host_scope_covers_targets_and_luns() {
        let t = ScanScope::Target {
            channel: 0,
            target: 1,
        };
        assert!(ScanScope::Host.covers(t));
        assert!(t.covers(ScanScope::Lun {
            channel: 0,
            target: 1,
            lun: 4
        }));
        assert!(!t.covers(ScanScope::Target {
            channel: 0,
            target: 2
        }));
        assert!(!t.covers(ScanScope::Host));
    }
}
