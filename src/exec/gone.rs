//! LUNs a target stopped reporting: named, and deleted when nothing holds them.
//!
//! After a scan that a REPORTED LUNS DATA HAS CHANGED asked for, the target is asked
//! for its LUNs (REPORT LUNS, through the writer's seam: it may block like a write)
//! and compared with the devices sysfs shows under it. What sysfs has and the target
//! no longer reports was unmapped on the array: the kernel keeps it, failing I/O
//! (or, on arrays that answer for unmapped LUNs, reading zeros) until it is deleted.
//! Runs on the host's worker, after the scan queued before it.

use std::fmt;
use std::path::Path;

use serde::Serialize;

use crate::holders::{holders, Holder};
use crate::report_luns::DeviceNode;
use crate::sysfs::writes::AttrWriter;
use crate::sysfs::{devpath_name, Hctl, Sysfs};

/// Targets are asked through at most this many of their disks: a target that
/// answers none of them will not answer the next.
const ASK_THROUGH: usize = 4;

/// A LUN sysfs has and its target no longer reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GoneLun {
    pub hctl: Hctl,
    pub devpath: String,
    pub disk: Option<String>,
    pub wwid: Option<String>,
    #[serde(flatten)]
    pub fate: Fate,
}

/// What hbad did about a gone LUN.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "fate", rename_all = "snake_case")]
pub enum Fate {
    /// Named only: the policy's `remove_gone` is off.
    Kept,
    /// Deleted through `device/delete`.
    Removed,
    /// Not deleted: something holds its disk.
    Held { holders: Vec<Holder> },
    /// The delete was refused.
    Failed { error: String },
}

impl fmt::Display for GoneLun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.hctl)?;
        if let Some(d) = &self.disk {
            write!(f, " {d}")?;
        }
        Ok(())
    }
}

impl GoneLun {
    /// `LUN 5:0:0:3 sdd gone from the array: deleted`.
    pub fn summary(&self) -> String {
        format!("LUN {self} gone from the array: {}", self.fate.describe())
    }
}

impl Fate {
    /// One word for journal fields and metric labels: `kept`, `removed`, `held`,
    /// `failed`.
    pub fn word(&self) -> &'static str {
        match self {
            Fate::Kept => "kept",
            Fate::Removed => "removed",
            Fate::Held { .. } => "held",
            Fate::Failed { .. } => "failed",
        }
    }

    /// The fate in words, after "LUN X is gone from the array".
    pub fn describe(&self) -> String {
        match self {
            Fate::Kept => "kept (remove_gone is off)".into(),
            Fate::Removed => "deleted".into(),
            Fate::Held { holders } => format!(
                "kept: {}",
                holders
                    .iter()
                    .map(Holder::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            Fate::Failed { error } => format!("not deleted: {error}"),
        }
    }
}

/// Compares what the target at `target_devpath` reports with what sysfs has under
/// it; deletes the gone LUNs that nothing holds when `remove`. An error when the
/// target could not be asked: then nothing is called gone.
pub fn find_gone(
    writer: &dyn AttrWriter,
    sysfs: &Sysfs,
    proc_root: &Path,
    target_devpath: &str,
    remove: bool,
) -> Result<Vec<GoneLun>, String> {
    let mut present: Vec<(Hctl, String)> = sysfs
        .list(target_devpath)
        .into_iter()
        .filter_map(|n| Some((n.parse::<Hctl>().ok()?, format!("{target_devpath}/{n}"))))
        .collect();
    present.sort();
    if present.is_empty() {
        return Ok(Vec::new());
    }
    let target = devpath_name(target_devpath);
    // LUN 0 first: SPC has it answer REPORT LUNS even when it maps no storage.
    let nodes: Vec<DeviceNode> = present
        .iter()
        .filter_map(|(_, d)| DeviceNode::of_lun(sysfs, d))
        .take(ASK_THROUGH)
        .collect();
    if nodes.is_empty() {
        // Tapes, enclosures, changers: no disk to lose, none to ask through.
        tracing::debug!("no LUN of {target} has a disk to send REPORT LUNS through");
        return Ok(Vec::new());
    }
    let mut errors = Vec::new();
    let mut reported = None;
    for node in &nodes {
        match writer.report_luns(node) {
            Ok(luns) => {
                reported = Some(luns);
                break;
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    let Some(reported) = reported else {
        return Err(format!(
            "{target} did not say which LUNs it has: {}",
            errors.join("; ")
        ));
    };
    let mut gone = Vec::new();
    for (hctl, devpath) in present {
        if reported.binary_search(&hctl.lun).is_ok() || is_well_known(hctl.lun) {
            continue;
        }
        let disk = sysfs.list(&format!("{devpath}/block")).into_iter().next();
        let wwid = sysfs.attr(&devpath, "wwid");
        let fate = if remove {
            remove_lun(writer, sysfs, proc_root, &devpath, disk.as_deref())
        } else {
            Fate::Kept
        };
        gone.push(GoneLun {
            hctl,
            devpath,
            disk,
            wwid,
            fate,
        });
    }
    Ok(gone)
}

/// A well-known LUN (the REPORT LUNS W-LUN, 49409 as sysfs numbers it): address
/// method 3 in the first level. SELECT REPORT 0 never lists one, so its absence
/// from the answer says nothing.
fn is_well_known(lun: u64) -> bool {
    lun & 0xc000 == 0xc000
}

/// `device/delete`, unless the disk is held. Looked at just before the write: a
/// VM may have opened the disk since the plan.
fn remove_lun(
    writer: &dyn AttrWriter,
    sysfs: &Sysfs,
    proc_root: &Path,
    devpath: &str,
    disk: Option<&str>,
) -> Fate {
    if let Some(disk) = disk {
        let held = holders(sysfs, proc_root, &format!("{devpath}/block/{disk}"));
        if !held.is_empty() {
            return Fate::Held { holders: held };
        }
    }
    let path = sysfs.path(devpath).join("delete");
    match writer.write_attr(&path, "1") {
        Ok(()) => Fate::Removed,
        // Deleted by someone else meanwhile: what was asked for is done.
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENODEV)) => Fate::Removed,
        Err(e) => Fate::Failed {
            error: format!("device/delete of {} failed: {e}", devpath_name(devpath)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::demo::{ARRAY_PORT_A, HBA_A_WWPN};
    use crate::sim::{HbaSpec, Sim, SimSpec};

    fn lun(host: u32, target: u32, lun: u64) -> Hctl {
        Hctl {
            host,
            channel: 0,
            target,
            lun,
        }
    }

    fn target_devpath(sim: &Sim, h: Hctl) -> String {
        let dev = sim.lun_devpath(h).unwrap();
        crate::sysfs::parent_devpath(&dev).unwrap().to_string()
    }

    fn find(sim: &Sim, h: Hctl, remove: bool) -> Result<Vec<GoneLun>, String> {
        let sysfs = sim.sysfs();
        find_gone(
            sim,
            &sysfs,
            &crate::holders::proc_root(&sysfs),
            &target_devpath(sim, h),
            remove,
        )
    }

    fn fates(gone: &[GoneLun]) -> Vec<(u64, &Fate)> {
        gone.iter().map(|g| (g.hctl.lun, &g.fate)).collect()
    }

    #[test]
    fn a_mounted_or_mapped_disk_is_kept_and_what_holds_it_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let sim = Sim::new(dir.path(), &SimSpec::new().hba(HbaSpec::scsi_debug(1, 4))).unwrap();
        let host = sim.hosts()[0];
        // Nothing gone: nothing named, nothing written.
        assert_eq!(find(&sim, lun(host, 0, 0), true), Ok(Vec::new()));
        sim.mount_disk(lun(host, 0, 1), "/var/lib/libvirt/images")
            .unwrap();
        let dm = sim.add_multipath_map("mpatha", &[lun(host, 0, 2)]).unwrap();
        for l in 1..4 {
            sim.remove_local_lun(lun(host, 0, l)).unwrap();
        }
        // Named only, first.
        let gone = find(&sim, lun(host, 0, 0), false).unwrap();
        assert_eq!(
            fates(&gone),
            vec![(1, &Fate::Kept), (2, &Fate::Kept), (3, &Fate::Kept)]
        );
        assert_eq!(sim.luns().len(), 4);
        let gone = find(&sim, lun(host, 0, 0), true).unwrap();
        let text: Vec<String> = gone
            .iter()
            .map(|g| format!("{g}: {}", g.fate.describe()))
            .collect();
        assert_eq!(
            text,
            vec![
                format!("{host}:0:0:1 sdb: kept: sdb is mounted on /var/lib/libvirt/images"),
                format!("{host}:0:0:2 sdc: kept: sdc is held by {dm} (mpatha)"),
                format!("{host}:0:0:3 sdd: deleted"),
            ]
        );
        assert_eq!(sim.luns().len(), 3);
    }

    #[test]
    fn well_known_luns_are_never_called_gone() {
        // 0xc101 as `scsilun_to_int` numbers it: what lsscsi shows as [H:C:T:49409].
        assert!(is_well_known(49409));
        assert!(!is_well_known(0));
        assert!(!is_well_known(16385)); // flat space LUN 1
        assert!(!is_well_known(0x0003_0002));
    }

    #[test]
    fn a_target_that_cannot_be_asked_makes_nothing_gone() {
        let dir = tempfile::tempdir().unwrap();
        let sim = Sim::demo_host(dir.path()).unwrap();
        let host = sim.host_by_wwpn(HBA_A_WWPN).unwrap();
        sim.map_lun(ARRAY_PORT_A, 1, HBA_A_WWPN).unwrap();
        sim.io(lun(host, 0, 0)).unwrap();
        let scan = sim.sysfs().path(&sim.host_devpath(host).unwrap());
        crate::sysfs::writes::AttrWriter::write_attr(
            &sim,
            &scan.join(format!("scsi_host/host{host}/scan")),
            "0 0 -",
        )
        .unwrap();
        assert!(sim.luns().contains(&lun(host, 0, 1)));
        // A writer that cannot send REPORT LUNS (the trait's default): an error,
        // and no LUN called gone or deleted.
        #[derive(Debug)]
        struct NoCommands;
        impl AttrWriter for NoCommands {
            fn store(&self, _: &Path, _: &str) -> std::io::Result<()> {
                panic!("nothing may be written")
            }
        }
        let sysfs = sim.sysfs();
        let err = find_gone(
            &NoCommands,
            &sysfs,
            &crate::holders::proc_root(&sysfs),
            &target_devpath(&sim, lun(host, 0, 1)),
            true,
        )
        .unwrap_err();
        assert!(err.contains("did not say which LUNs it has"), "{err}");
        // Unmapped: asked through LUN 0 first, which answers for the target.
        sim.unmap_lun(ARRAY_PORT_A, 1, HBA_A_WWPN).unwrap();
        let gone = find(&sim, lun(host, 0, 1), false).unwrap();
        assert_eq!(fates(&gone), vec![(1, &Fate::Kept)]);
    }
}
