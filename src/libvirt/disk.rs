//! `<disk type='block'>` snippets that hand a SAN LUN to a guest.
//!
//! The source is the LUN's most stable name, because the same XML must keep pointing
//! at the same LUN after a reboot, a rescan or a migration: `sdX` names follow probe
//! order and change. hbad's own `/dev/disk/by-vhba/<vhba>/<target>-lun-<N>` comes
//! first (it names the LUN by the vHBA the VM's storage is zoned to); then by-id, with
//! the LUN's NAA `wwn-` name before the vendor-formatted `scsi-` ones; then by-path,
//! which is stable but tied to the PCI slot and port; the bare node only as a last resort.

use std::fmt::Write as _;

use super::xml::{comment, esc};

/// What the guest sees: the LUN itself (SCSI commands pass through, for clustering
/// and persistent reservations) or a plain virtual disk on top of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskDevice {
    Lun,
    Disk,
}

impl DiskDevice {
    pub fn as_str(self) -> &'static str {
        match self {
            DiskDevice::Lun => "lun",
            DiskDevice::Disk => "disk",
        }
    }
}

fn rank(link: &str) -> u8 {
    if link.contains("/by-vhba/") {
        0
    } else if link.contains("/by-id/wwn-") {
        1
    } else if link.contains("/by-id/") {
        2
    } else if link.contains("/by-path/") {
        3
    } else {
        4
    }
}

/// The link to put in `<source dev=...>`: the most stable of `links`, else `dev_node`.
pub fn stable_source<'a>(dev_node: &'a str, links: &'a [String]) -> &'a str {
    links
        .iter()
        .filter(|l| rank(l) < 4)
        .min_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| a.cmp(b)))
        .map_or(dev_node, String::as_str)
}

/// A guest disk name for the `index`th disk, as libvirt counts them
/// (virDiskNameFromIndex): sda..sdz, sdaa..sdaz, sdba...
pub fn guest_disk_name(index: usize) -> String {
    let mut letters = Vec::new();
    let mut i = index;
    loop {
        letters.push(b'a' + (i % 26) as u8);
        if i < 26 {
            break;
        }
        i = i / 26 - 1;
    }
    letters.reverse();
    format!("sd{}", String::from_utf8_lossy(&letters))
}

/// One `<disk>` element, with a comment saying which LUN it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskSnippet {
    pub device: DiskDevice,
    pub source: String,
    /// The guest-side name suggested for `<target dev=...>`.
    pub target: String,
    /// Who the LUN is, for people: H:C:T:L, vendor, model, host node, size.
    pub about: String,
}

impl DiskSnippet {
    pub fn to_xml(&self) -> String {
        let mut x = String::new();
        let _ = writeln!(x, "<!-- {} -->", comment(&self.about));
        let _ = writeln!(x, "<disk type='block' device='{}'>", self.device.as_str());
        // cache='none': libvirt refuses to live-migrate a guest whose shared disk is
        // cached on the host, and a SAN LUN is shared by definition.
        let _ = writeln!(x, "  <driver name='qemu' type='raw' cache='none'/>");
        let _ = writeln!(x, "  <source dev='{}'/>", esc(&self.source));
        let _ = writeln!(x, "  <target dev='{}' bus='scsi'/>", esc(&self.target));
        let _ = writeln!(x, "</disk>");
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn links(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn source_prefers_by_vhba_then_wwn_then_other_ids_then_path() {
        let all = links(&[
            "/dev/disk/by-path/pci-0000:08:00.0-fc-0x500601603ce0174b-lun-27",
            "/dev/disk/by-id/scsi-SDGC_VRAID_CKM001",
            "/dev/disk/by-id/wwn-0x600601604a103800c4b0d7e7f4e3e611",
            "/dev/disk/by-vhba/fabric-a/0x500601603ce0174b-lun-27",
        ]);
        assert_eq!(
            stable_source("/dev/sdc", &all),
            "/dev/disk/by-vhba/fabric-a/0x500601603ce0174b-lun-27"
        );
        assert_eq!(
            stable_source("/dev/sdc", &all[..3]),
            "/dev/disk/by-id/wwn-0x600601604a103800c4b0d7e7f4e3e611"
        );
        assert_eq!(
            stable_source("/dev/sdc", &all[..2]),
            "/dev/disk/by-id/scsi-SDGC_VRAID_CKM001"
        );
        assert_eq!(stable_source("/dev/sdc", &all[..1]), all[0]);
        assert_eq!(stable_source("/dev/sdc", &[]), "/dev/sdc");
        // Links of unknown kinds are not more stable than the node.
        assert_eq!(
            stable_source("/dev/sdc", &links(&["/dev/disk/by-uuid/x"])),
            "/dev/sdc"
        );
    }

    #[test]
    fn guest_names_count_as_libvirt_does() {
        assert_eq!(guest_disk_name(0), "sda");
        assert_eq!(guest_disk_name(25), "sdz");
        assert_eq!(guest_disk_name(26), "sdaa");
        assert_eq!(guest_disk_name(51), "sdaz");
        assert_eq!(guest_disk_name(52), "sdba");
        assert_eq!(guest_disk_name(701), "sdzz");
        assert_eq!(guest_disk_name(702), "sdaaa");
    }

    #[test]
    fn snippet_is_a_block_disk_with_escaped_source() {
        let s = DiskSnippet {
            device: DiskDevice::Disk,
            source: "/dev/disk/by-id/scsi-S'A&B".into(),
            target: "sdb".into(),
            about: "1:0:0:27 DGC--VRAID".into(),
        };
        assert_eq!(
            s.to_xml(),
            "<!-- 1:0:0:27 DGC- -VRAID -->\n<disk type='block' device='disk'>\n  <driver name='qemu' type='raw' cache='none'/>\n  <source dev='/dev/disk/by-id/scsi-S&apos;A&amp;B'/>\n  <target dev='sdb' bus='scsi'/>\n</disk>\n"
        );
    }
}
