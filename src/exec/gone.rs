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
/// How long after a first answer naming gone LUNs the target is asked again,
/// before any is deleted.
const CONFIRM_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

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
            Fate::Kept => "named only (remove_gone is off)".into(),
            Fate::Removed => "deleted".into(),
            Fate::Held { .. } => format!("kept: {}", self.holders()),
            Fate::Failed { error } => format!("not deleted: {error}"),
        }
    }

    /// What holds a kept disk, in words (empty for the other fates).
    pub fn holders(&self) -> String {
        match self {
            Fate::Held { holders } => holders
                .iter()
                .map(Holder::to_string)
                .collect::<Vec<_>>()
                .join("; "),
            _ => String::new(),
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
    let disks: Vec<DeviceNode> = present
        .iter()
        .filter_map(|(_, d)| DeviceNode::of_lun(sysfs, d))
        .collect();
    if disks.is_empty() {
        // Tapes, enclosures, changers: no disk to lose, none to ask through.
        tracing::debug!("no LUN of {target} has a disk to send REPORT LUNS through");
        return Ok(Vec::new());
    }
    // A command to a blocked device (its remote port Blocked) waits for the
    // unblock or dev_loss_tmo, never for its own timeout: it would hold the host's
    // worker that long, or for ever with dev_loss_tmo infinity.
    let nodes: Vec<DeviceNode> = disks
        .into_iter()
        .filter(|n| sysfs.attr(&n.lun_devpath, "state").as_deref() == Some("running"))
        .take(ASK_THROUGH)
        .collect();
    if nodes.is_empty() {
        return Err(format!(
            "{target} not asked which LUNs it has: no path to it is running (blocked \
             or offline); once it is back, `hbad rescan` asks again"
        ));
    }
    let reported =
        ask(writer, &nodes).map_err(|e| format!("{target} did not say which LUNs it has: {e}"))?;
    let missing: Vec<(Hctl, String)> = present
        .into_iter()
        .filter(|(h, d)| {
            reported.binary_search(&h.lun).is_err()
                && !is_well_known(h.lun)
                && !is_lunz(sysfs, *h, d)
        })
        .collect();
    // Deleting is for good: a second answer, a moment later, must agree. An
    // array in the middle of a host-group edit or a controller failover may
    // answer for a moment with fewer LUNs than it maps.
    let confirmed = if remove && !missing.is_empty() {
        std::thread::sleep(CONFIRM_AFTER);
        Some(ask(writer, &nodes))
    } else {
        None
    };
    let mut gone = Vec::new();
    for (hctl, devpath) in missing {
        let disk = sysfs.disk_of_lun(&devpath);
        let wwid = sysfs.attr(&devpath, "wwid");
        let fate = match &confirmed {
            None => Fate::Kept,
            // Back in the second answer: not gone after all.
            Some(Ok(again)) if again.binary_search(&hctl.lun).is_ok() => continue,
            Some(Ok(_)) => remove_lun(writer, sysfs, proc_root, &devpath, disk.as_deref()),
            Some(Err(e)) => Fate::Failed {
                error: format!("{target} did not answer again to confirm it is gone: {e}"),
            },
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

/// The LUNs the target reports, from the first of `nodes` whose answer names the
/// LUN it was sent through. An answer that leaves out its own LUN is not one to
/// act on: an empty list from an array mid-reconfiguration, a LUN 0 that answers
/// for a target mapping it nothing, or a target whose numbering (flat space,
/// `0x4001`) is not the one the kernel's sequential scan gave its devices.
fn ask(writer: &dyn AttrWriter, nodes: &[DeviceNode]) -> Result<Vec<u64>, String> {
    let mut errors = Vec::new();
    for node in nodes {
        let through = devpath_name(&node.lun_devpath);
        match writer.report_luns(node).map(|mut luns| {
            luns.sort_unstable();
            luns
        }) {
            Ok(luns) => match through.parse::<Hctl>() {
                Ok(h) if luns.binary_search(&h.lun).is_ok() => return Ok(luns),
                _ => errors.push(format!(
                    "the answer through {through} does not name {through} itself ({} LUNs)",
                    luns.len()
                )),
            },
            Err(e) => errors.push(e.to_string()),
        }
    }
    Err(errors.join("; "))
}

/// A well-known LUN (the REPORT LUNS W-LUN, 49409 as sysfs numbers it): address
/// method 3 in the first level. SELECT REPORT 0 never lists one, so its absence
/// from the answer says nothing.
fn is_well_known(lun: u64) -> bool {
    lun & 0xc000 == 0xc000
}

/// LUN 0 standing for a target that maps nothing there (EMC's LUNZ: peripheral
/// qualifier 1, no disk). The kernel probes LUN 0 on every scan and adds it back,
/// and SELECT REPORT 0 need not list it: its absence says nothing.
fn is_lunz(sysfs: &Sysfs, hctl: Hctl, devpath: &str) -> bool {
    if hctl.lun != 0 {
        return false;
    }
    let no_disk = sysfs.disk_of_lun(devpath).is_none();
    let not_connected = sysfs
        .attr_bytes(devpath, "inquiry")
        .and_then(|i| i.first().map(|b| b >> 5 != 0))
        .unwrap_or(false);
    no_disk || not_connected
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
    // A tape, changer or enclosure is used through its sg node by tools hbad
    // cannot see at work between two commands: named, never deleted.
    let Some(disk) = disk else {
        return Fate::Held {
            holders: vec![Holder::Unknown {
                why: "it has no disk (a tape, changer or enclosure, used through its sg node); \
                      delete it by hand (device/delete) once nothing uses it"
                    .into(),
            }],
        };
    };
    let held = holders(sysfs, proc_root, devpath, disk);
    if !held.is_empty() {
        return Fate::Held { holders: held };
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
    fn an_answer_that_leaves_out_its_own_lun_or_is_not_repeated_deletes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let sim = Sim::new(dir.path(), &SimSpec::new().hba(HbaSpec::scsi_debug(1, 4))).unwrap();
        let host = sim.hosts()[0];
        // GOOD and empty (a host-group edit on the array), then a flat-space
        // numbering the sequential scan did not give: neither names the LUN it
        // came through, and every LUN stays.
        sim.answer_next_report_luns(host, vec![]);
        sim.answer_next_report_luns(host, vec![0x4000, 0x4001]);
        sim.answer_next_report_luns(host, vec![]);
        sim.answer_next_report_luns(host, vec![]);
        let err = find(&sim, lun(host, 0, 0), true).unwrap_err();
        assert!(err.contains("does not name"), "{err}");
        assert_eq!(sim.luns().len(), 4);
        // A first answer without LUNs 2 and 3, a second (a moment later) without
        // 3 only: 2 was never gone, 3 is deleted.
        sim.answer_next_report_luns(host, vec![0, 1]);
        sim.answer_next_report_luns(host, vec![0, 1, 2]);
        let gone = find(&sim, lun(host, 0, 0), true).unwrap();
        assert_eq!(fates(&gone), vec![(3, &Fate::Removed)]);
        assert_eq!(sim.luns().len(), 3);
        // No second answer: named, not deleted.
        sim.remove_local_lun(lun(host, 0, 2)).unwrap();
        sim.answer_next_report_luns(host, vec![0, 1]);
        for _ in 0..ASK_THROUGH {
            sim.answer_next_report_luns(host, vec![]);
        }
        let gone = find(&sim, lun(host, 0, 0), true).unwrap();
        assert!(
            matches!(fates(&gone).as_slice(), [(2, Fate::Failed { error })] if error.contains("confirm")),
            "{gone:?}"
        );
        assert_eq!(sim.luns().len(), 3);
    }

    #[test]
    fn a_lun_without_a_disk_or_used_through_its_sg_node_is_never_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let sim = Sim::new(dir.path(), &SimSpec::new().hba(HbaSpec::scsi_debug(1, 4))).unwrap();
        let host = sim.hosts()[0];
        // A VM given LUN 1 as <hostdev type='scsi'> opens /dev/sgN; LUN 2 is a
        // tape (no disk); LUN 0 is a LUNZ (no disk, peripheral qualifier 1).
        sim.open_sg(lun(host, 0, 1), 4242, "qemu-system-x86")
            .unwrap();
        for l in [0, 2] {
            let devpath = sim.lun_devpath(lun(host, 0, l)).unwrap();
            std::fs::remove_dir_all(sim.sysfs().path(&devpath).join("block")).unwrap();
        }
        for l in [0, 1, 2] {
            sim.remove_local_lun(lun(host, 0, l)).unwrap();
        }
        let gone = find(&sim, lun(host, 0, 3), true).unwrap();
        let text: Vec<String> = gone
            .iter()
            .map(|g| format!("{}: {}", g.hctl.lun, g.fate.describe()))
            .collect();
        assert_eq!(text.len(), 2, "{text:?}");
        assert!(
            text[0].starts_with("1: kept: sg")
                && text[0].ends_with("is open in process 4242 (qemu-system-x86)"),
            "{text:?}"
        );
        assert!(
            text[1].starts_with("2: kept: cannot tell") && text[1].contains("no disk"),
            "{text:?}"
        );
        assert_eq!(sim.luns().len(), 4);
    }

    #[test]
    fn a_blocked_path_is_not_asked() {
        let dir = tempfile::tempdir().unwrap();
        let sim = Sim::new(dir.path(), &SimSpec::new().hba(HbaSpec::scsi_debug(1, 3))).unwrap();
        let host = sim.hosts()[0];
        sim.remove_local_lun(lun(host, 0, 2)).unwrap();
        let state = |l, s: &str| {
            let devpath = sim.lun_devpath(lun(host, 0, l)).unwrap();
            std::fs::write(sim.sysfs().path(&devpath).join("state"), s).unwrap();
        };
        // LUN 0 blocked (its remote port is): asked through LUN 1.
        state(0, "blocked");
        let asked = sim.writes().len();
        let gone = find(&sim, lun(host, 0, 0), false).unwrap();
        assert_eq!(fates(&gone), vec![(2, &Fate::Kept)]);
        // Every LUN blocked: not asked at all.
        for l in [1, 2] {
            state(l, "blocked");
        }
        let err = find(&sim, lun(host, 0, 0), true).unwrap_err();
        assert!(err.contains("not asked"), "{err}");
        assert_eq!(sim.writes().len(), asked);
        assert_eq!(sim.luns().len(), 3);
    }

    #[test]
    fn a_proc_that_hides_processes_deletes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let sim = Sim::new(dir.path(), &SimSpec::new().hba(HbaSpec::scsi_debug(1, 3))).unwrap();
        let host = sim.hosts()[0];
        sim.remove_local_lun(lun(host, 0, 2)).unwrap();
        sim.hide_other_processes().unwrap();
        let gone = find(&sim, lun(host, 0, 0), true).unwrap();
        let [GoneLun {
            fate: Fate::Held { holders },
            ..
        }] = gone.as_slice()
        else {
            panic!("{gone:?}")
        };
        assert!(
            holders
                .iter()
                .all(|h| h.to_string().contains("CAP_SYS_PTRACE")),
            "{holders:?}"
        );
        assert_eq!(sim.luns().len(), 3);
    }

    #[test]
    fn named_only_and_held_read_apart() {
        assert_eq!(Fate::Kept.describe(), "named only (remove_gone is off)");
        let held = Fate::Held {
            holders: vec![Holder::Unknown { why: "x".into() }],
        };
        assert!(held.describe().starts_with("kept: "));
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
