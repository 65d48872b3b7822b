//! The SCSI bus as `bus/scsi/devices` lists it, told apart by name.
//!
//! The bus directory holds a link per host, target and device (LUN): on a large
//! host, tens of thousands of links. Resolving each costs a `readlinkat` and a
//! walk of its `../../../devices/...` text; but a LUN always sits in its target's
//! directory (the kernel makes the `scsi_target` the parent of each
//! `scsi_device`), so only the hosts and targets need resolving, and the LUNs are
//! found by listing each target's directory. The bus listing still says which
//! LUNs there are: a directory under a target that the bus does not list is not
//! taken for a LUN, and a LUN the bus lists but no target directory holds (a
//! partial copy of sysfs) is resolved by its own link ([`ScsiBus::lun_devpath`]).

use std::path::Path;

use super::dir::EntryKind;
use super::{host_number, resolve_link, target_address, DeviceDir, Hctl, Sysfs};

/// What the SCSI bus lists.
#[derive(Debug, Default)]
pub struct ScsiBus {
    /// Devpaths of the hosts, in name order.
    pub hosts: Vec<String>,
    /// Devpaths of the targets, in name order.
    pub targets: Vec<String>,
    /// Every SCSI device's address, sorted.
    luns: Vec<Hctl>,
}

const BUS: &str = "bus/scsi/devices";

impl ScsiBus {
    /// Lists `bus/scsi/devices` once, resolving the links of hosts and targets.
    pub fn read(sysfs: &Sysfs) -> ScsiBus {
        let mut bus = ScsiBus::default();
        let Ok(dir) = DeviceDir::open(&sysfs.path(BUS)) else {
            return bus;
        };
        let (mut hosts, mut targets) = (Vec::new(), Vec::new());
        dir.each_entry(".", |name, kind| {
            if kind != EntryKind::Link {
                return;
            }
            if let Ok(hctl) = name.parse::<Hctl>() {
                bus.luns.push(hctl);
            } else if host_number(name).is_some() {
                hosts.push(name.to_string());
            } else if target_address(name).is_some() {
                targets.push(name.to_string());
            }
        });
        bus.luns.sort_unstable();
        hosts.sort_unstable();
        targets.sort_unstable();
        let base = Path::new(BUS);
        let resolve = |name: &String| resolve_link(base, Path::new(&dir.link(name)?));
        bus.hosts = hosts.iter().filter_map(resolve).collect();
        bus.targets = targets.iter().filter_map(resolve).collect();
        bus
    }

    /// Every SCSI device's address, sorted.
    pub fn luns(&self) -> &[Hctl] {
        &self.luns
    }

    pub fn has_lun(&self, hctl: Hctl) -> bool {
        self.luns.binary_search(&hctl).is_ok()
    }

    /// The LUNs in a target's directory (`dir`, the target `targetH:C:T`) that the
    /// bus lists, by directory name, sorted by name.
    pub fn luns_in(&self, target: (u32, u32, u32), dir: &DeviceDir) -> Vec<(String, Hctl)> {
        let mut luns = Vec::new();
        dir.each_entry(".", |name, kind| {
            if kind != EntryKind::Dir {
                return;
            }
            let Ok(hctl) = name.parse::<Hctl>() else {
                return;
            };
            if (hctl.host, hctl.channel, hctl.target) == target && self.has_lun(hctl) {
                luns.push((name.to_string(), hctl));
            }
        });
        luns.sort_unstable();
        luns
    }

    /// A LUN's devpath from its own bus link: for a LUN no target directory holds.
    pub fn lun_devpath(&self, sysfs: &Sysfs, hctl: Hctl) -> Option<String> {
        sysfs.link_devpath(&format!("{BUS}/{hctl}"))
    }
}

impl Sysfs {
    /// Lists the SCSI bus once: see [`ScsiBus`].
    pub fn scsi_bus(&self) -> ScsiBus {
        ScsiBus::read(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{HbaSpec, Sim, SimSpec};

    #[test]
    fn hosts_and_targets_resolve_and_luns_are_found_in_their_targets() {
        let dir = tempfile::tempdir().unwrap();
        let sim = Sim::new(dir.path(), &SimSpec::new().hba(HbaSpec::scsi_debug(2, 3))).unwrap();
        let sysfs = sim.sysfs();
        let bus = sysfs.scsi_bus();
        let every = sysfs.scsi_bus_devpaths();
        let named = |f: fn(&str) -> bool| -> Vec<String> {
            let mut v: Vec<String> = every
                .iter()
                .filter(|d| f(super::super::devpath_name(d)))
                .cloned()
                .collect();
            v.sort_by(|a, b| super::super::devpath_name(a).cmp(super::super::devpath_name(b)));
            v
        };
        assert_eq!(bus.hosts, named(|n| host_number(n).is_some()));
        assert_eq!(bus.targets, named(|n| target_address(n).is_some()));
        let mut found = Vec::new();
        for target in &bus.targets {
            let addr = target_address(super::super::devpath_name(target)).unwrap();
            let t = DeviceDir::open(&sysfs.path(target)).unwrap();
            for (name, hctl) in bus.luns_in(addr, &t) {
                let devpath = format!("{target}/{name}");
                assert_eq!(bus.lun_devpath(&sysfs, hctl).as_deref(), Some(&*devpath));
                found.push(devpath);
            }
        }
        found.sort();
        assert_eq!(found, named(|n| n.parse::<Hctl>().is_ok()));
        assert_eq!(found.len(), 6);
        assert_eq!(bus.luns().len(), 6);
    }
}
