//! The device-mapper multipath map a disk is a path of, as sysfs shows it.
//!
//! multipathd stacks a map (`dm-N`) on every path of a volume: each path disk has
//! `holders/dm-N`, and the map has `dm/name` (what `/dev/mapper/` calls it) and
//! `dm/uuid` = `mpath-<WWID>` (what `/dev/disk/by-id/dm-uuid-mpath-<WWID>` names),
//! and `slaves/` listing its paths. LVM volumes and other dm targets have other
//! uuid prefixes (`LVM-`, `CRYPT-`) and are not maps of paths.

use serde::Serialize;

use super::{DeviceDir, Sysfs};

/// A multipath map.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MultipathMap {
    /// `dm-3`.
    pub dm: String,
    /// `mpatha`, or the WWID with `user_friendly_names no`.
    pub name: String,
    /// The WWID multipath gives the volume (`3600140...`).
    pub wwid: String,
}

impl MultipathMap {
    /// The node a VM's disk should name: the map, never one of its paths.
    pub fn mapper_path(&self) -> String {
        format!("/dev/mapper/{}", self.name)
    }

    /// udev's stable link to the map, the same on every host that sees the volume.
    pub fn by_id_path(&self) -> String {
        format!("/dev/disk/by-id/dm-uuid-mpath-{}", self.wwid)
    }

    /// A device-mapper map (`dm-N`, its `dm/` directory `attrs`) as a multipath
    /// map: `None` for other targets (LVM, crypt) and for maps whose attributes
    /// are gone.
    pub(super) fn read(attrs: &DeviceDir, dm: &str) -> Option<MultipathMap> {
        Some(MultipathMap {
            wwid: attrs.attr("uuid")?.strip_prefix("mpath-")?.to_string(),
            name: attrs.attr("name")?,
            dm: dm.to_string(),
        })
    }
}

impl Sysfs {
    /// The multipath map holding the disk `name` (`sdc`), if any.
    pub fn multipath_map_of(&self, disk: &str) -> Option<MultipathMap> {
        self.list(&format!("/block/{disk}/holders"))
            .into_iter()
            .find_map(|dm| self.multipath_map(&dm))
    }

    /// `dm` (`dm-3`) as a multipath map; `None` for other device-mapper targets.
    pub fn multipath_map(&self, dm: &str) -> Option<MultipathMap> {
        let attrs = DeviceDir::open(&self.path(&format!("/block/{dm}/dm"))).ok()?;
        MultipathMap::read(&attrs, dm)
    }

    /// The disks a map is made of (`slaves/`), with their sizes in bytes.
    pub fn multipath_paths(&self, dm: &str) -> Vec<(String, Option<u64>)> {
        self.list(&format!("/block/{dm}/slaves"))
            .into_iter()
            .map(|d| {
                let size = self
                    .attr_parse::<u64>(&format!("/block/{d}"), "size")
                    .map(|s| s.saturating_mul(512));
                (d, size)
            })
            .collect()
    }

    /// A block device's size in bytes (`/block/NAME/size`, in 512-byte sectors).
    pub fn block_size_bytes(&self, name: &str) -> Option<u64> {
        self.attr_parse::<u64>(&format!("/block/{name}"), "size")
            .map(|s| s.saturating_mul(512))
    }
}

#[cfg(test)]
mod tests {
    use crate::sim::{HbaSpec, Sim, SimSpec};
    use crate::sysfs::Hctl;

    #[test]
    fn a_path_under_a_multipath_map_names_it_and_others_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let sim = Sim::new(dir.path(), &SimSpec::new().hba(HbaSpec::scsi_debug(1, 2))).unwrap();
        let host = sim.hosts()[0];
        let lun = |l| Hctl {
            host,
            channel: 0,
            target: 0,
            lun: l,
        };
        let dm = sim.add_multipath_map("mpatha", &[lun(1)]).unwrap();
        let sysfs = sim.sysfs();
        let map = sysfs.multipath_map_of("sdb").unwrap();
        assert_eq!(map.dm, dm);
        assert_eq!(map.name, "mpatha");
        assert!(map
            .by_id_path()
            .starts_with("/dev/disk/by-id/dm-uuid-mpath-3"));
        assert_eq!(map.mapper_path(), "/dev/mapper/mpatha");
        assert_eq!(
            sysfs.multipath_paths(&dm),
            vec![("sdb".to_string(), sysfs.block_size_bytes("sdb"))]
        );
        assert_eq!(sysfs.multipath_map_of("sda"), None);
    }
}
