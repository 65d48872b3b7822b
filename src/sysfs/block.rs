//! The block devices of a host, read in one pass over `<sysfs>/block`.
//!
//! The kernel lists every whole disk in `/sys/block` as a link to its device
//! directory, which for a SCSI disk is `.../H:C:T:L/block/sdX`, and every
//! device-mapper map as a link to `/devices/virtual/block/dm-N`. One listing of
//! that directory and one `readlinkat` per entry give the disk of each LUN, where
//! listing each LUN's `block/` costs an open, two `getdents` and a close per LUN;
//! and the multipath maps are read once from each map's `slaves/`, `dm/uuid` and
//! `dm/name`, where asking each disk's `holders/` costs a failed open for nearly
//! every disk of a host without multipath.
//!
//! A tree without `block/` (a fixture that copies only the device directories)
//! is still read: the index then says it knows nothing, and each LUN's `block/`
//! and each disk's `holders/` are read as before ([`BlockIndex::disks_of`],
//! [`BlockIndex::multipath_of`]).

use std::collections::HashMap;

use super::dir::{DirAt, EntryKind};
use super::{DeviceDir, Hctl, MultipathMap, Sysfs};

/// Whole disks by the SCSI device they sit on, and the multipath maps over them.
#[derive(Debug, Default)]
pub struct BlockIndex {
    /// Sorted by address (a LUN has one disk; the order of several is by name).
    /// `None` when the tree has no `block/` directory.
    disks: Option<Vec<(Hctl, Box<str>)>>,
    maps: Vec<MultipathMap>,
    /// Path disk name -> its map in `maps`.
    map_of_disk: HashMap<Box<str>, usize>,
}

/// The longest link target read: sysfs device paths are far shorter than a page.
const LINK_MAX: usize = 4096;

impl BlockIndex {
    /// Reads `<sysfs>/block` once.
    pub fn read(sysfs: &Sysfs) -> BlockIndex {
        let Ok(block) = DeviceDir::open(&sysfs.path("/block")) else {
            return BlockIndex::default();
        };
        let mut disks: Vec<(Hctl, Box<str>)> = Vec::new();
        let mut dms = Vec::new();
        let mut buf = [0u8; LINK_MAX];
        block.each_entry(".", |name, kind| {
            if kind != EntryKind::Link {
                return;
            }
            if name.starts_with("dm-") {
                dms.push(name.to_string());
                return;
            }
            let Some(target) = block.link_into(name, &mut buf) else {
                return;
            };
            if let Some(hctl) = scsi_disk_address(target, name) {
                disks.push((hctl, Box::from(name)));
            }
        });
        disks.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        // Name order, as a disk's `holders/` would be read: a disk held by two maps
        // (never multipathd's doing) is given the first.
        dms.sort_unstable();
        let mut index = BlockIndex {
            disks: Some(disks),
            ..BlockIndex::default()
        };
        for dm in dms {
            let Some(map) = block
                .sub(&format!("{dm}/dm"))
                .ok()
                .and_then(|attrs| MultipathMap::read(&attrs, &dm))
            else {
                continue;
            };
            let at = index.maps.len();
            block.each_entry(&format!("{dm}/slaves"), |disk, _| {
                index.map_of_disk.entry(Box::from(disk)).or_insert(at);
            });
            index.maps.push(map);
        }
        index
    }

    /// Did the tree have a `block/` directory to index?
    pub fn is_indexed(&self) -> bool {
        self.disks.is_some()
    }

    /// The names of the whole disks on a LUN, from the index; `None` when there is
    /// no index (see [`BlockIndex::disks_of`]).
    pub fn indexed_disks_of(&self, hctl: Hctl) -> Option<impl Iterator<Item = &str> + '_> {
        let disks = self.disks.as_deref()?;
        let from = disks.partition_point(|(h, _)| *h < hctl);
        Some(
            disks[from..]
                .iter()
                .take_while(move |(h, _)| *h == hctl)
                .map(|(_, name)| &**name),
        )
    }

    /// The names of the whole disks on a LUN whose directory is `lun`: from the
    /// index, or from the LUN's `block/` when the tree has no `block/` to index.
    pub fn disks_of(&self, hctl: Hctl, lun: &DirAt) -> Vec<String> {
        match self.indexed_disks_of(hctl) {
            Some(names) => names.map(str::to_string).collect(),
            None => lun.names("block"),
        }
    }

    /// The multipath map a disk is a path of: from the maps' `slaves/`, or from
    /// the disk's `holders/` (its directory, `disk`) when the tree has no `block/`.
    pub fn multipath_of(&self, name: &str, disk: &DirAt) -> Option<Box<MultipathMap>> {
        if !self.is_indexed() {
            return holders_map(disk).map(Box::new);
        }
        self.map_of_disk
            .get(name)
            .map(|&at| Box::new(self.maps[at].clone()))
    }

    /// The multipath maps found, in `dm-N` name order.
    pub fn multipath_maps(&self) -> &[MultipathMap] {
        &self.maps
    }
}

/// The address of a SCSI disk from its `/sys/block` link
/// (`../devices/.../H:C:T:L/block/NAME`); `None` for every other block device.
fn scsi_disk_address(target: &[u8], name: &str) -> Option<Hctl> {
    let target = std::str::from_utf8(target).ok()?;
    let mut parts = target.rsplit('/');
    if parts.next()? != name || parts.next()? != "block" {
        return None;
    }
    parts.next()?.parse().ok()
}

/// The multipath map among a disk's holders (`holders/dm-N/dm/uuid` = `mpath-...`).
fn holders_map(disk: &DirAt) -> Option<MultipathMap> {
    disk.names("holders").into_iter().find_map(|dm| {
        let attrs = disk.sub(&format!("holders/{dm}/dm")).ok()?;
        MultipathMap::read(&attrs, &dm)
    })
}

impl Sysfs {
    /// Reads `block/` once: see [`BlockIndex`].
    pub fn block_index(&self) -> BlockIndex {
        BlockIndex::read(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{HbaSpec, Sim, SimSpec};

    #[test]
    fn names_scsi_disks_by_address_and_nothing_else() {
        let hctl = |s: &str| s.parse::<Hctl>().unwrap();
        assert_eq!(
            scsi_disk_address(
                b"../devices/pci0/host7/target7:0:0/7:0:0:27/block/sdc",
                "sdc"
            ),
            Some(hctl("7:0:0:27"))
        );
        // Another name at the end, no `block/`, no address: not a SCSI disk.
        assert_eq!(
            scsi_disk_address(b"../devices/x/7:0:0:27/block/sdd", "sdc"),
            None
        );
        assert_eq!(scsi_disk_address(b"../devices/x/7:0:0:27/sdc", "sdc"), None);
        assert_eq!(
            scsi_disk_address(b"../devices/virtual/block/loop0", "loop0"),
            None
        );
        assert_eq!(
            scsi_disk_address(b"../devices/pci0/nvme/nvme0/nvme0n1", "nvme0n1"),
            None
        );
    }

    #[test]
    fn index_gives_the_disks_and_maps_that_each_lun_and_disk_show() {
        let dir = tempfile::tempdir().unwrap();
        let sim = Sim::new(dir.path(), &SimSpec::new().hba(HbaSpec::scsi_debug(2, 3))).unwrap();
        let host = sim.hosts()[0];
        let lun = |t, l| Hctl {
            host,
            channel: 0,
            target: t,
            lun: l,
        };
        let dm = sim
            .add_multipath_map("mpatha", &[lun(0, 1), lun(1, 1)])
            .unwrap();
        let sysfs = sim.sysfs();
        let index = sysfs.block_index();
        assert!(index.is_indexed());
        assert_eq!(index.multipath_maps().len(), 1);
        let bare = BlockIndex::default();
        for t in 0..2 {
            for l in 0..3 {
                let devpath = sysfs
                    .scsi_bus_devpaths()
                    .into_iter()
                    .find(|d| d.ends_with(&format!("/{}", lun(t, l))))
                    .unwrap();
                let lun_dir = DeviceDir::open(&sysfs.path(&devpath)).unwrap();
                let disks = index.disks_of(lun(t, l), &lun_dir.here());
                // What the LUN's own block/ shows, which is what a tree without
                // block/ is read from.
                assert_eq!(disks, bare.disks_of(lun(t, l), &lun_dir.here()));
                assert_eq!(disks.len(), 1);
                let disk_dir = lun_dir.here().below(&format!("block/{}", disks[0]));
                let map = index.multipath_of(&disks[0], &disk_dir);
                assert_eq!(map, bare.multipath_of(&disks[0], &disk_dir));
                assert_eq!(map.as_deref(), sysfs.multipath_map_of(&disks[0]).as_ref());
                assert_eq!(map.is_some(), l == 1, "{}", lun(t, l));
                if let Some(map) = map {
                    assert_eq!(
                        (map.dm.as_str(), map.name.as_str()),
                        (dm.as_str(), "mpatha")
                    );
                }
            }
        }
    }

    #[test]
    fn a_tree_without_block_is_not_indexed() {
        let dir = tempfile::tempdir().unwrap();
        let index = Sysfs::new(dir.path(), dir.path().join("dev")).block_index();
        assert!(!index.is_indexed());
        assert!(index.indexed_disks_of("1:0:0:0".parse().unwrap()).is_none());
    }
}
