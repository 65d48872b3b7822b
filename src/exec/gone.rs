//! LUNs a target stopped reporting: named, and deleted when nothing holds them.
//!
//! After a scan that a REPORTED LUNS DATA HAS CHANGED asked for, the target is asked
//! for its LUNs (REPORT LUNS, through the writer's seam: it may block like a write)
//! and compared with the devices sysfs shows under it. What sysfs has and the target
//! no longer reports was unmapped on the array: the kernel keeps it, failing I/O
//! (or, on arrays that answer for unmapped LUNs, reading zeros) until it is deleted.
//! Runs on the host's worker, after the scan queued before it.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use serde::Serialize;

use crate::claim::{Deletion, LunDelete};
use crate::holders::{holders, Holder, LunDisk};
use crate::report_luns::DeviceNode;
use crate::sysfs::writes::AttrWriter;
use crate::sysfs::{devpath_name, parse_major_minor, Hctl, Sysfs};

/// Targets are asked through at most this many of their disks: a target that
/// answers none of them will not answer the next.
const ASK_THROUGH: usize = 4;
/// How long after a first answer naming gone LUNs the target is asked again,
/// before any is deleted.
const CONFIRM_AFTER: std::time::Duration = std::time::Duration::from_secs(1);
/// Partitions of one disk named to the exclusive open (GPT allows 128).
const MAX_PARTITIONS: usize = 256;

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

/// Gone LUNs remembered at most, over all targets: past it the memory starts
/// afresh (each kept LUN is named once more), so no array can grow it for ever.
const MAX_REMEMBERED: usize = 65_536;

/// What was last said about each gone LUN still there, per target: a LUN kept
/// for weeks is named once per change of its fate, not at every change of its
/// target. Forgotten when a look at its target no longer finds it gone (deleted,
/// mapped again, or held by someone else now).
#[derive(Debug, Default)]
pub struct GoneLedger {
    said: HashMap<String, Vec<GoneLun>>,
    remembered: usize,
}

impl GoneLedger {
    /// Of `gone`, everything one look at `target_devpath` found, those to name:
    /// new ones and those whose fate changed. A removed LUN is named and
    /// forgotten.
    pub fn news<'a>(&mut self, target_devpath: &str, gone: &'a [GoneLun]) -> Vec<&'a GoneLun> {
        let before = self.said.remove(target_devpath).unwrap_or_default();
        self.remembered = self.remembered.saturating_sub(before.len());
        let news: Vec<&GoneLun> = gone.iter().filter(|g| !before.contains(g)).collect();
        let still: Vec<GoneLun> = gone
            .iter()
            .filter(|g| g.fate != Fate::Removed)
            .cloned()
            .collect();
        if self.remembered + still.len() > MAX_REMEMBERED {
            self.said.clear();
            self.remembered = 0;
        }
        if !still.is_empty() {
            self.remembered += still.len();
            self.said.insert(target_devpath.to_string(), still);
        }
        news
    }

    /// Gone LUNs still there against the policy's wish: held, or their delete
    /// failed.
    pub fn held(&self) -> usize {
        self.said
            .values()
            .flatten()
            .filter(|g| matches!(g.fate, Fate::Held { .. } | Fate::Failed { .. }))
            .count()
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
    let mut to_remove = Vec::new();
    for (hctl, devpath) in missing {
        let disk = sysfs.disk_of_lun(&devpath);
        let wwid = sysfs.attr(&devpath, "wwid");
        let fate = match &confirmed {
            None => Fate::Kept,
            // Back in the second answer: not gone after all.
            Some(Ok(again)) if again.binary_search(&hctl.lun).is_ok() => continue,
            Some(Ok(_)) => {
                to_remove.push(gone.len());
                // Decided below, for all of them at once.
                Fate::Removed
            }
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
    let luns: Vec<(&str, Option<&str>)> = to_remove
        .iter()
        .map(|&i| (gone[i].devpath.as_str(), gone[i].disk.as_deref()))
        .collect();
    let fates = remove_luns(writer, sysfs, proc_root, &luns);
    for (i, fate) in to_remove.into_iter().zip(fates) {
        gone[i].fate = fate;
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

/// `device/delete` of each of `luns` (devpath, disk) that nothing holds. Looked
/// at just before the writes (a VM may have opened a disk since the plan), mount
/// tables and `/proc` once for all of them; and each delete is written while its
/// disk is open exclusively, which the kernel refuses while it uses the disk.
fn remove_luns(
    writer: &dyn AttrWriter,
    sysfs: &Sysfs,
    proc_root: &Path,
    luns: &[(&str, Option<&str>)],
) -> Vec<Fate> {
    let with_disk: Vec<LunDisk<'_>> = luns
        .iter()
        .filter_map(|&(lun_devpath, disk)| {
            Some(LunDisk {
                lun_devpath,
                disk: disk?,
            })
        })
        .collect();
    let mut held = holders(sysfs, proc_root, &with_disk).into_iter();
    luns.iter()
        .map(|&(devpath, disk)| {
            // A tape, changer or enclosure is used through its sg node by tools
            // hbad cannot see at work between two commands: named, never deleted.
            let Some(disk) = disk else {
                return Fate::Held {
                    holders: vec![Holder::Unknown {
                        why: "it has no disk (a tape, changer or enclosure, used through its \
                              sg node); delete it by hand (device/delete) once nothing uses it"
                            .into(),
                    }],
                };
            };
            let holders = held.next().unwrap_or_default();
            if !holders.is_empty() {
                return Fate::Held { holders };
            }
            delete_unclaimed(writer, sysfs, devpath, disk)
        })
        .collect()
}

/// `device/delete` through the writer's exclusive open ([`crate::claim`]).
fn delete_unclaimed(writer: &dyn AttrWriter, sysfs: &Sysfs, devpath: &str, disk: &str) -> Fate {
    let failed = |error: String| Fate::Failed {
        error: format!("device/delete of {} failed: {error}", devpath_name(devpath)),
    };
    let Some(lun) = lun_delete(sysfs, devpath, disk) else {
        return failed(format!("{disk} has no readable dev attribute"));
    };
    match writer.delete_unclaimed(&lun) {
        Ok(Deletion::Deleted) => Fate::Removed,
        Ok(Deletion::Claimed { nodes }) => Fate::Held {
            holders: nodes.into_iter().map(|of| Holder::Claimed { of }).collect(),
        },
        // Deleted by someone else meanwhile: what was asked for is done.
        Err(_) if !sysfs.path(devpath).exists() => Fate::Removed,
        Err(e) => failed(e.to_string()),
    }
}

/// The disk's node and its partitions', numbered as sysfs has them now.
fn lun_delete(sysfs: &Sysfs, devpath: &str, disk: &str) -> Option<LunDelete> {
    let disk_devpath = format!("{devpath}/block/{disk}");
    let node = |dir: &str, name: &str| {
        Some(DeviceNode {
            lun_devpath: devpath.to_string(),
            path: sysfs.dev_root().join(name),
            dev: parse_major_minor(&sysfs.attr(dir, "dev")?)?,
        })
    };
    Some(LunDelete {
        delete: sysfs.path(devpath).join("delete"),
        disk: node(&disk_devpath, disk)?,
        partitions: sysfs
            .partitions_of(&disk_devpath)
            .into_iter()
            .take(MAX_PARTITIONS)
            .filter_map(|p| node(&format!("{disk_devpath}/{p}"), &p))
            .collect(),
    })
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

    /// A simulated scsi_debug host with one target of `luns` LUNs, and its number.
    fn one_target(luns: u64) -> (tempfile::TempDir, Sim, u32) {
        let dir = tempfile::tempdir().unwrap();
        let sim = Sim::new(
            dir.path(),
            &SimSpec::new().hba(HbaSpec::scsi_debug(1, luns)),
        )
        .unwrap();
        let host = sim.hosts()[0];
        (dir, sim, host)
    }

    /// `LUN: fate` in words.
    fn described(gone: &[GoneLun]) -> Vec<String> {
        gone.iter()
            .map(|g| format!("{}: {}", g.hctl.lun, g.fate.describe()))
            .collect()
    }

    fn fates(gone: &[GoneLun]) -> Vec<(u64, &Fate)> {
        gone.iter().map(|g| (g.hctl.lun, &g.fate)).collect()
    }

    #[test]
    fn a_mounted_or_mapped_disk_is_kept_and_what_holds_it_is_named() {
        let (_dir, sim, host) = one_target(4);
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
    fn a_disk_the_kernel_claims_is_kept_and_the_claim_named() {
        let (_dir, sim, host) = one_target(5);
        // LUN 1 an active swap area (no trace in /proc), LUN 2 open in a VM's
        // qemu, LUNs 3 and 4 free: all four looked at in one pass.
        sim.claim_disk(lun(host, 0, 1)).unwrap();
        sim.open_disk(lun(host, 0, 2), 4242, "qemu-system-x86")
            .unwrap();
        for l in 1..5 {
            sim.remove_local_lun(lun(host, 0, l)).unwrap();
        }
        let gone = find(&sim, lun(host, 0, 0), true).unwrap();
        let text = described(&gone);
        assert_eq!(
            text,
            vec![
                "1: kept: sdb is claimed by the kernel: mounted, swap, RAID/volume member or \
                 in use by another driver"
                    .to_string(),
                "2: kept: sdc is open in process 4242 (qemu-system-x86)".into(),
                "3: deleted".into(),
                "4: deleted".into(),
            ]
        );
        let left: Vec<u64> = sim.luns().iter().map(|h| h.lun).collect();
        assert_eq!(left, vec![0, 1, 2]);
        // Only the free ones were written to.
        let deletes: Vec<String> = sim
            .writes()
            .iter()
            .filter(|w| w.path.ends_with("delete"))
            .map(|w| devpath_name(&w.path.parent().unwrap().to_string_lossy()).to_string())
            .collect();
        assert_eq!(deletes, [format!("{host}:0:0:3"), format!("{host}:0:0:4")]);
    }

    #[test]
    fn an_answer_that_leaves_out_its_own_lun_or_is_not_repeated_deletes_nothing() {
        let (_dir, sim, host) = one_target(4);
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
        let (_dir, sim, host) = one_target(4);
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
        let text = described(&gone);
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
        let (_dir, sim, host) = one_target(3);
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
        let (_dir, sim, host) = one_target(3);
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

    /// LUN `lun` of target 5:0:0, gone with `fate`.
    fn gone_lun(lun: u64, fate: Fate) -> GoneLun {
        GoneLun {
            hctl: super::Hctl {
                host: 5,
                channel: 0,
                target: 0,
                lun,
            },
            devpath: format!("/devices/t/5:0:0:{lun}"),
            disk: Some("sdd".into()),
            wwid: None,
            fate,
        }
    }

    #[test]
    fn a_kept_lun_is_named_once_per_change_of_its_fate() {
        let gone = gone_lun;
        let held = |pid: u32| Fate::Held {
            holders: vec![Holder::Process {
                of: "sdd".into(),
                pid,
                command: "qemu".into(),
            }],
        };
        let luns = |v: Vec<&GoneLun>| v.iter().map(|g| g.hctl.lun).collect::<Vec<_>>();
        let mut ledger = GoneLedger::default();
        let first = [gone(1, held(7)), gone(2, Fate::Removed)];
        assert_eq!(luns(ledger.news("/t", &first)), [1, 2]);
        assert_eq!(ledger.held(), 1);
        // The target changes again: nothing new to say about LUN 1.
        let again = [gone(1, held(7))];
        assert!(ledger.news("/t", &again).is_empty());
        // Another target's look says nothing about this one's.
        assert!(ledger.news("/u", &[]).is_empty());
        assert!(ledger.news("/t", &again).is_empty());
        // Held by another process now, then deleted: each said once.
        let other = [gone(1, held(8))];
        assert_eq!(luns(ledger.news("/t", &other)), [1]);
        let removed = [gone(1, Fate::Removed)];
        assert_eq!(luns(ledger.news("/t", &removed)), [1]);
        assert_eq!((ledger.held(), ledger.remembered), (0, 0));
        // Gone again later (mapped back, then unmapped): named again.
        assert_eq!(luns(ledger.news("/t", &again)), [1]);
    }

    #[test]
    fn the_ledger_is_bounded() {
        let mut ledger = GoneLedger::default();
        let many: Vec<GoneLun> = (0..1000).map(|lun| gone_lun(lun, Fate::Kept)).collect();
        for t in 0..100 {
            assert_eq!(ledger.news(&format!("/t{t}"), &many).len(), 1000);
            assert!(ledger.remembered <= MAX_REMEMBERED);
        }
        assert!(ledger.said.values().map(Vec::len).sum::<usize>() <= MAX_REMEMBERED);
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
