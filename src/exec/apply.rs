//! Runs a [`Plan`]: every step on its own, every step reported.
//!
//! Steps do not depend on one another, so one failure stops nothing else: a parent
//! that refuses a vport does not keep a target from being scanned. Scans go to the
//! per-host workers first, so they run while the vport steps are written, and all
//! hosts scan in parallel; device rescans each get a thread for the same reason
//! (a write to `device/rescan` blocks while the device answers, or does not).

use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::errors::{explain, Op};
use super::scan::{ScanOutcome, Scanner, Ticket};
use super::vport::{CreateRequest, DeletePolicy, Vports};
use crate::ownership::{OwnerMark, OWNER_PREFIX};
use crate::plan::{Action, Plan, Step};
use crate::sysfs::devpath_name;
use crate::sysfs::writes::AttrWriter;

/// How one step ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum StepOutcome {
    Done {
        detail: String,
    },
    /// Nothing to write: the kernel already had it (an idempotent create).
    AlreadyDone {
        detail: String,
    },
    Failed {
        error: String,
    },
    /// A declared vHBA that cannot be made yet; the planner said why.
    Waiting {
        reason: String,
    },
    /// The write is still blocked in the kernel past the timeout.
    Hung {
        after_ms: u64,
    },
    /// An owned vHBA kept because pruning is off.
    Kept,
}

#[derive(Clone, Debug, Serialize)]
pub struct StepReport {
    pub step: Step,
    #[serde(flatten)]
    pub outcome: StepOutcome,
    pub duration_ms: f64,
}

impl StepReport {
    fn new(step: &Step, outcome: StepOutcome, duration: Duration) -> Self {
        StepReport {
            step: step.clone(),
            outcome,
            duration_ms: millis(duration),
        }
    }
}

pub(crate) fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ApplyReport {
    pub steps: Vec<StepReport>,
}

/// Step counts by outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub done: usize,
    pub already_done: usize,
    pub failed: usize,
    pub waiting: usize,
    pub hung: usize,
    pub kept: usize,
}

impl ApplyReport {
    pub fn tally(&self) -> Tally {
        let mut t = Tally::default();
        for s in &self.steps {
            match s.outcome {
                StepOutcome::Done { .. } => t.done += 1,
                StepOutcome::AlreadyDone { .. } => t.already_done += 1,
                StepOutcome::Failed { .. } => t.failed += 1,
                StepOutcome::Waiting { .. } => t.waiting += 1,
                StepOutcome::Hung { .. } => t.hung += 1,
                StepOutcome::Kept => t.kept += 1,
            }
        }
        t
    }
}

/// Everything that writes: vports, the scan workers, device rescans.
#[derive(Debug)]
pub struct Executor {
    pub vports: Vports,
    pub scanner: Scanner,
    writer: Arc<dyn AttrWriter>,
}

enum Pending {
    Now(StepOutcome, Duration),
    Scan(Ticket),
    Rescan(mpsc::Receiver<StepOutcome>, Instant),
}

impl Executor {
    pub fn new(vports: Vports, scanner: Scanner, writer: Arc<dyn AttrWriter>) -> Self {
        Executor {
            vports,
            scanner,
            writer,
        }
    }

    /// Applies every step and reports each, in plan order. Waits for scans up to
    /// the scanner's timeout; scans still running then are reported hung.
    pub fn apply(&self, plan: &Plan) -> ApplyReport {
        // Start every blocking write first, so they overlap with the vport steps.
        let mut pending: Vec<Option<Pending>> = plan
            .steps
            .iter()
            .map(|step| match &step.action {
                Action::Scan { host, scope } => Some(Pending::Scan(self.scanner.request(
                    host,
                    *scope,
                    &step.reason,
                ))),
                Action::RescanDevice { hctl, devpath } => {
                    Some(self.start_rescan(hctl.to_string(), devpath))
                }
                _ => None,
            })
            .collect();
        for (step, slot) in plan.steps.iter().zip(pending.iter_mut()) {
            if slot.is_none() {
                let t0 = Instant::now();
                let outcome = self.vport_step(step);
                *slot = Some(Pending::Now(outcome, t0.elapsed()));
            }
        }
        let timeout = self.scanner.timeout();
        let steps = plan
            .steps
            .iter()
            .zip(pending)
            .map(|(step, p)| match p {
                Some(Pending::Now(outcome, d)) => StepReport::new(step, outcome, d),
                Some(Pending::Scan(ticket)) => {
                    let r = ticket.wait(timeout);
                    let outcome = match r.outcome {
                        ScanOutcome::Done => StepOutcome::Done {
                            detail: format!("scanned {} \"{}\"", r.host, r.scope),
                        },
                        ScanOutcome::Failed { error } => StepOutcome::Failed { error },
                        ScanOutcome::Hung => StepOutcome::Hung {
                            after_ms: r.duration.as_millis() as u64,
                        },
                    };
                    StepReport::new(step, outcome, r.duration)
                }
                Some(Pending::Rescan(rx, t0)) => {
                    let left = timeout.saturating_sub(t0.elapsed());
                    let outcome = rx.recv_timeout(left).unwrap_or(StepOutcome::Hung {
                        after_ms: t0.elapsed().as_millis() as u64,
                    });
                    StepReport::new(step, outcome, t0.elapsed())
                }
                None => StepReport::new(
                    step,
                    StepOutcome::Failed {
                        error: "internal: step was never run".into(),
                    },
                    Duration::ZERO,
                ),
            })
            .collect();
        ApplyReport { steps }
    }

    /// `echo 1 > .../device/rescan` on its own thread: it blocks while the device
    /// answers, and a hung device must not hold up the report.
    fn start_rescan(&self, device: String, devpath: &str) -> Pending {
        let (tx, rx) = mpsc::channel();
        let path = self.vports.sysfs().rescan_path(devpath);
        let writer = self.writer.clone();
        let t0 = Instant::now();
        let spawned = thread::Builder::new()
            .name(format!("rescan-{device}"))
            .spawn(move || {
                let outcome = match writer.write_attr(&path, "1") {
                    Ok(()) => StepOutcome::Done {
                        detail: format!("{device} re-read"),
                    },
                    Err(e) => StepOutcome::Failed {
                        error: explain(&Op::Rescan { device }, &e).to_string(),
                    },
                };
                let _ = tx.send(outcome);
            });
        match spawned {
            Ok(_) => Pending::Rescan(rx, t0),
            Err(e) => Pending::Now(
                StepOutcome::Failed {
                    error: format!("cannot start a rescan thread: {e}"),
                },
                Duration::ZERO,
            ),
        }
    }

    fn vport_step(&self, step: &Step) -> StepOutcome {
        let failed = |e: &dyn std::fmt::Display| StepOutcome::Failed {
            error: e.to_string(),
        };
        match &step.action {
            Action::CreateVhba {
                vhba,
                parent,
                control_dir,
                wwpn,
                wwnn,
                ..
            } => {
                let req = CreateRequest {
                    name: vhba.clone(),
                    parent: parent.clone(),
                    control_dir: *control_dir,
                    wwpn: *wwpn,
                    wwnn: *wwnn,
                };
                match self.vports.create(&req) {
                    Ok(c) => {
                        let host = c
                            .vhba
                            .host
                            .as_ref()
                            .map_or("no host yet".to_string(), |h| h.to_string());
                        let detail = format!(
                            "vHBA {vhba} is {host} ({}){}",
                            devpath_name(&c.vhba.vport),
                            mark_note(c.owner.as_ref())
                        );
                        if c.already_present {
                            StepOutcome::AlreadyDone { detail }
                        } else {
                            StepOutcome::Done { detail }
                        }
                    }
                    Err(e) => failed(&e),
                }
            }
            Action::SetSymbolicName { vhba, vport, .. } => match self.vports.mark(vport, vhba) {
                Ok(mark) => StepOutcome::Done {
                    detail: format!(
                        "{} is vHBA {vhba}{}",
                        devpath_name(vport),
                        mark_note(Some(&mark))
                    ),
                },
                Err(e) => failed(&e),
            },
            Action::DeleteVhba { vport, .. } => {
                match self.vports.delete(vport, DeletePolicy::OwnedOnly) {
                    Ok(d) if d.already_gone => StepOutcome::AlreadyDone {
                        detail: format!("{} was already gone", devpath_name(vport)),
                    },
                    Ok(d) => StepOutcome::Done {
                        detail: format!("deleted {} from {}", devpath_name(&d.vport), d.parent),
                    },
                    Err(e) => failed(&e),
                }
            }
            Action::Wait { reason, .. } => StepOutcome::Waiting {
                reason: reason.to_string(),
            },
            Action::Keep { .. } => StepOutcome::Kept,
            Action::Scan { .. } | Action::RescanDevice { .. } => StepOutcome::Failed {
                error: "internal: scans are not vport steps".into(),
            },
        }
    }
}

fn mark_note(mark: Option<&OwnerMark>) -> String {
    match mark {
        Some(OwnerMark::SymbolicName { name }) => {
            format!("; marked by symbolic_name \"{OWNER_PREFIX}{name}\"")
        }
        Some(OwnerMark::StateFile { path, why, .. }) => {
            format!("; ownership recorded in {} ({why})", path.display())
        }
        None => "; not marked as hbad's".into(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::exec::vport::tests::Kernel;
    use crate::exec::vport::SysfsPoll;
    use crate::ownership::OwnedState;
    use crate::plan::{HostRef, WaitReason};
    use crate::sysfs::writes::ScanScope;
    use crate::sysfs::VportControlDir;
    use crate::wwn::Wwn;

    fn executor(k: &Arc<Kernel>, dir: &Path) -> Executor {
        let sysfs = k.sysfs();
        let vports = Vports::new(
            sysfs.clone(),
            k.clone(),
            Arc::new(SysfsPoll::new(sysfs.clone(), Duration::from_millis(5))),
            OwnedState::new(dir.join("owned.json")),
            Duration::from_millis(200),
        );
        let scanner = Scanner::new(k.clone(), sysfs, Duration::from_secs(10));
        Executor::new(vports, scanner, k.clone())
    }

    fn lab() -> (tempfile::TempDir, Arc<Kernel>) {
        let dir = tempfile::tempdir().unwrap();
        let k = Arc::new(Kernel::new(&dir.path().join("sim")));
        (dir, k)
    }

    fn step(action: Action) -> Step {
        Step {
            action,
            reason: "test".into(),
            origin: None,
        }
    }

    fn create(k: &Kernel, name: &str, wwpn: u64) -> Step {
        step(Action::CreateVhba {
            vhba: name.into(),
            parent: k.parent(),
            parent_wwpn: None,
            control_dir: VportControlDir::FcHost,
            wwpn: Wwn::from_u64(wwpn),
            wwnn: Wwn::from_u64(0x5001_a4a0_0000_0b00),
        })
    }

    fn word(o: &StepOutcome) -> &'static str {
        match o {
            StepOutcome::Done { .. } => "done",
            StepOutcome::AlreadyDone { .. } => "already_done",
            StepOutcome::Failed { .. } => "failed",
            StepOutcome::Waiting { .. } => "waiting",
            StepOutcome::Hung { .. } => "hung",
            StepOutcome::Kept => "kept",
        }
    }

    #[test]
    fn every_step_is_run_and_reported_on_its_own() {
        let (dir, k) = lab();
        let ex = executor(&k, dir.path());
        let debug_host = *k
            .sim
            .hosts()
            .iter()
            .find(|&&h| h != k.parent().number)
            .unwrap();
        let lun = *k.sim.luns().iter().find(|l| l.host == debug_host).unwrap();
        let plan = Plan {
            steps: vec![
                create(&k, "a", 0x5001_a4a0_0000_0b01),
                create(&k, "b", 0x5001_a4a0_0000_0b02),
                // The parent has 2 slots: this one is refused, the rest go on.
                create(&k, "c", 0x5001_a4a0_0000_0b03),
                step(Action::Wait {
                    vhba: "d".into(),
                    reason: WaitReason::NoParent {
                        selector: "parent_wwpn 0x2000000000000001".into(),
                    },
                }),
                step(Action::Scan {
                    host: HostRef {
                        number: debug_host,
                        devpath: k.sim.host_devpath(debug_host).unwrap(),
                    },
                    scope: ScanScope::Target {
                        channel: 0,
                        target: 0,
                    },
                }),
                step(Action::RescanDevice {
                    hctl: lun,
                    devpath: k.sim.lun_devpath(lun).unwrap(),
                }),
            ],
        };
        let report = ex.apply(&plan);
        let results: Vec<&str> = report.steps.iter().map(|s| word(&s.outcome)).collect();
        assert_eq!(
            results,
            ["done", "done", "failed", "waiting", "done", "done"],
            "{:#?}",
            report.steps
        );
        let StepOutcome::Failed { error } = &report.steps[2].outcome else {
            unreachable!()
        };
        assert!(error.contains("2 of 2 NPIV vports are in use"), "{error}");
        assert_eq!(k.writes_to("scan"), ["0 0 -"]);
        assert_eq!(k.writes_to("rescan"), ["1"]);
        let t = report.tally();
        assert_eq!((t.done, t.failed, t.waiting), (4, 1, 1));
        // Applying the same creates again writes nothing.
        let again = ex.apply(&Plan {
            steps: vec![create(&k, "a", 0x5001_a4a0_0000_0b01)],
        });
        assert_eq!(word(&again.steps[0].outcome), "already_done");
        assert_eq!(k.writes_to("vport_create").len(), 3);
    }

    #[test]
    fn a_hung_scan_is_reported_while_the_other_steps_finish() {
        let dir = tempfile::tempdir().unwrap();
        let k = Arc::new(Kernel::new(&dir.path().join("sim")));
        let sysfs = k.sysfs();
        let vports = Vports::new(
            sysfs.clone(),
            k.clone(),
            Arc::new(SysfsPoll::new(sysfs.clone(), Duration::from_millis(5))),
            OwnedState::new(dir.path().join("owned.json")),
            Duration::from_millis(200),
        );
        let ex = Executor::new(
            vports,
            Scanner::new(k.clone(), sysfs, Duration::from_millis(300)),
            k.clone(),
        );
        let parent = k.parent();
        let gate = k.sim.stall_scans(parent.number);
        let report = ex.apply(&Plan {
            steps: vec![
                step(Action::Scan {
                    host: parent,
                    scope: ScanScope::Host,
                }),
                create(&k, "a", 0x5001_a4a0_0000_0b01),
            ],
        });
        let results: Vec<&str> = report.steps.iter().map(|s| word(&s.outcome)).collect();
        assert_eq!(results, ["hung", "done"]);
        gate.release();
    }

    #[test]
    fn prune_deletes_only_what_hbad_owns() {
        let (dir, k) = lab();
        let ex = executor(&k, dir.path());
        ex.apply(&Plan {
            steps: vec![create(&k, "a", 0x5001_a4a0_0000_0b01)],
        });
        let parent = k.parent();
        let vport = format!("{}/vport-{}:0-0", parent.devpath, parent.number);
        let mark = k.sysfs().vport_symbolic_name_path(&vport);
        k.write_attr(&mark, "someone").unwrap();
        let delete = step(Action::DeleteVhba {
            vhba: Some("a".into()),
            vport: vport.clone(),
            parent: parent.clone(),
            control_dir: VportControlDir::FcHost,
            wwpn: Wwn::from_u64(0x5001_a4a0_0000_0b01),
            wwnn: Wwn::from_u64(0x5001_a4a0_0000_0b00),
        });
        let r = ex.apply(&Plan {
            steps: vec![delete.clone()],
        });
        assert_eq!(word(&r.steps[0].outcome), "failed");
        assert!(k.sysfs().exists(&vport));
        k.write_attr(&mark, "hbad:a").unwrap();
        let r = ex.apply(&Plan {
            steps: vec![delete],
        });
        assert_eq!(word(&r.steps[0].outcome), "done", "{:?}", r.steps[0]);
        assert!(!k.sysfs().exists(&vport));
    }
}
