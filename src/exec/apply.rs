//! Runs a [`Plan`]: every step on its own, every step reported.
//!
//! Steps do not depend on one another, so one failure stops nothing else: a parent
//! that refuses a vport does not keep a target from being scanned. Every write goes
//! to the worker of the host it concerns (the parent for vport steps, the LUN's
//! host for a device rescan), so all hosts work in parallel and a write that hangs
//! (a `device/rescan` blocks while the device answers, or does not) costs that
//! host only. The daemon starts the same steps one by one ([`Executor::start`]) and
//! gets their reports as messages.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::errors::{explain, Op};
use super::gone::{find_gone, GoneLun};
use super::later;
use super::multipath::{resize_after_rescan, MapResize};
use super::scan::{unstarted_error, ScanOutcome, Scanner, Ticket};
use super::vport::{CreateRequest, DeletePolicy, Vports};
use crate::ownership::{OwnerMark, OWNER_PREFIX};
use crate::plan::{Action, HostRef, Plan, Step};
use crate::sysfs::writes::vport_text;
use crate::sysfs::{devpath_name, host_number, parent_devpath};

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
    /// A target asked which LUNs it has: the ones it stopped reporting, and what
    /// became of each (empty: none gone).
    Compared {
        gone: Vec<GoneLun>,
    },
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
                StepOutcome::Done { .. } | StepOutcome::Compared { .. } => t.done += 1,
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

/// Everything that writes: vports, the per-host workers, device rescans. Shared by
/// the CLI's writing commands and the daemon: both start steps here, and every
/// write runs on the worker of the host it goes to, never on the caller's thread.
#[derive(Debug)]
pub struct Executor {
    pub vports: Vports,
    pub scanner: Scanner,
}

impl Executor {
    pub fn new(vports: Vports, scanner: Scanner) -> Self {
        Executor { vports, scanner }
    }

    /// Applies every step and reports each, in plan order. Waits for scans up to
    /// the scanner's timeout and for vport steps up to the vport timeout on top;
    /// a step still running then is reported hung (it goes on in the kernel).
    pub fn apply(&self, plan: &Plan) -> ApplyReport {
        let t0 = Instant::now();
        let (tx, rx) = mpsc::channel();
        // Scans first: they are queued before the vport steps of the same host.
        let mut tickets: Vec<Option<Ticket>> = plan
            .steps
            .iter()
            .map(|step| match &step.action {
                Action::Scan { host, scope } => {
                    Some(self.scanner.request(host, *scope, &step.reason))
                }
                _ => None,
            })
            .collect();
        for (i, step) in plan.steps.iter().enumerate() {
            if tickets[i].is_none() {
                let tx = tx.clone();
                self.start(step.clone(), move |r| {
                    let _ = tx.send((i, r));
                });
            }
        }
        drop(tx);
        let timeout = self.scanner.timeout();
        let limit = later(t0, timeout.saturating_add(self.vports.timeout()));
        let mut reports: Vec<Option<StepReport>> = vec![None; plan.steps.len()];
        let waited = plan.steps.len() - tickets.iter().filter(|t| t.is_some()).count();
        for _ in 0..waited {
            let left = limit.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok((i, r)) => reports[i] = Some(r),
                Err(_) => break,
            }
        }
        let steps = plan
            .steps
            .iter()
            .zip(tickets.iter_mut())
            .zip(reports)
            .map(|((step, ticket), report)| {
                if let Some(ticket) = ticket.take() {
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
                    return StepReport::new(step, outcome, r.duration);
                }
                report.unwrap_or_else(|| {
                    StepReport::new(
                        step,
                        StepOutcome::Hung {
                            after_ms: t0.elapsed().as_millis() as u64,
                        },
                        t0.elapsed(),
                    )
                })
            })
            .collect();
        ApplyReport { steps }
    }

    /// Starts one step that is not a scan (scans: [`Scanner::request`]) on the
    /// worker of the host it writes to; `done` gets its report there. Steps that
    /// write nothing (wait, keep) are reported at once, on the caller's thread.
    pub fn start(&self, step: Step, done: impl FnOnce(StepReport) + Send + 'static) {
        let Some((host, what)) = self.lane(&step) else {
            let outcome = self.step_outcome(&step);
            done(StepReport::new(&step, outcome, Duration::ZERO));
            return;
        };
        let vports = self.vports.clone();
        // The look or re-read already queued answers for this one: it reads what
        // the target reports when it runs, whenever it was asked for. Without this
        // a hung host's queue grew with every batch of capacity attentions.
        if matches!(
            step.action,
            Action::FindGone { .. } | Action::RescanDevice { .. }
        ) && self.scanner.is_queued(&host, &what)
        {
            let outcome = StepOutcome::AlreadyDone {
                detail: format!("the same step is already queued: {what}"),
            };
            done(StepReport::new(&step, outcome, Duration::ZERO));
            return;
        }
        let lane = host.clone();
        self.scanner.submit(&host, what, move |started| {
            let t0 = Instant::now();
            let outcome = match started {
                Ok(()) => run_step(&vports, &step),
                // Nothing was written: the step fails, and is planned again.
                Err(e) => StepOutcome::Failed {
                    error: format!("{}; nothing was written", unstarted_error(&lane, e)),
                },
            };
            done(StepReport::new(&step, outcome, t0.elapsed()));
        });
    }

    /// The host whose worker runs a step, and the write in words; `None` for
    /// steps that write nothing.
    fn lane(&self, step: &Step) -> Option<(HostRef, String)> {
        match &step.action {
            Action::CreateVhba {
                parent, wwpn, wwnn, ..
            } => Some((
                parent.clone(),
                format!("vport_create {}", vport_text(*wwpn, *wwnn)),
            )),
            Action::DeleteVhba {
                parent, wwpn, wwnn, ..
            } => Some((
                parent.clone(),
                format!("vport_delete {}", vport_text(*wwpn, *wwnn)),
            )),
            Action::SetSymbolicName { vport, .. } => {
                let parent = parent_devpath(vport)?;
                Some((
                    HostRef {
                        number: host_number(devpath_name(parent))?,
                        devpath: parent.to_string(),
                    },
                    format!("symbolic_name of {}", devpath_name(vport)),
                ))
            }
            Action::RescanDevice { hctl, devpath } => Some((
                host_above(devpath, hctl.host)?,
                format!("device/rescan of {hctl}"),
            )),
            Action::FindGone {
                host,
                channel,
                target,
                ..
            } => Some((
                host.clone(),
                format!("REPORT LUNS of target {}:{channel}:{target}", host.number),
            )),
            Action::Scan { .. } | Action::Wait { .. } | Action::Keep { .. } => None,
        }
    }

    fn step_outcome(&self, step: &Step) -> StepOutcome {
        match &step.action {
            Action::Wait { reason, .. } => StepOutcome::Waiting {
                reason: reason.to_string(),
            },
            Action::Keep { .. } => StepOutcome::Kept,
            _ => StepOutcome::Failed {
                error: format!("no SCSI host to run \"{step}\" on"),
            },
        }
    }
}

/// The devpath of host `number` above a device, from the device's own path.
fn host_above(devpath: &str, number: u32) -> Option<HostRef> {
    let mut at = devpath;
    loop {
        if host_number(devpath_name(at)) == Some(number) {
            return Some(HostRef {
                number,
                devpath: at.to_string(),
            });
        }
        at = parent_devpath(at)?;
    }
}

/// One write step, on the worker's thread.
fn run_step(vports: &Vports, step: &Step) -> StepOutcome {
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
            match vports.create(&req) {
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
        Action::SetSymbolicName { vhba, vport, .. } => match vports.mark(vport, vhba) {
            Ok(mark) => StepOutcome::Done {
                detail: format!(
                    "{} is vHBA {vhba}{}",
                    devpath_name(vport),
                    mark_note(Some(&mark))
                ),
            },
            Err(e) => failed(&e),
        },
        Action::DeleteVhba { vport, .. } => match vports.delete(vport, DeletePolicy::OwnedOnly) {
            Ok(d) if d.already_gone => StepOutcome::AlreadyDone {
                detail: format!("{} was already gone", devpath_name(vport)),
            },
            Ok(d) => StepOutcome::Done {
                detail: format!("deleted {} from {}", devpath_name(&d.vport), d.parent),
            },
            Err(e) => failed(&e),
        },
        Action::RescanDevice { hctl, devpath } => {
            let path = vports.sysfs().rescan_path(devpath);
            match vports.writer().write_attr(&path, "1") {
                Ok(()) => {
                    let map = resize_after_rescan(vports.sysfs(), devpath);
                    let said = map.describe();
                    match (map, said) {
                        (MapResize::Failed { .. } | MapResize::NoMultipathd { .. }, Some(s)) => {
                            StepOutcome::Failed {
                                error: format!("{hctl} re-read, but {s}"),
                            }
                        }
                        (_, Some(s)) => StepOutcome::Done {
                            detail: format!("{hctl} re-read; {s}"),
                        },
                        (_, None) => StepOutcome::Done {
                            detail: format!("{hctl} re-read"),
                        },
                    }
                }
                Err(e) => StepOutcome::Failed {
                    error: explain(
                        &Op::Rescan {
                            device: hctl.to_string(),
                        },
                        &e,
                    )
                    .to_string(),
                },
            }
        }
        Action::FindGone {
            target_devpath,
            remove,
            ..
        } => {
            let sysfs = vports.sysfs();
            match find_gone(
                vports.writer().as_ref(),
                sysfs,
                &crate::holders::proc_root(sysfs),
                target_devpath,
                *remove,
            ) {
                Ok(gone) => StepOutcome::Compared { gone },
                Err(error) => StepOutcome::Failed { error },
            }
        }
        Action::Wait { .. } | Action::Keep { .. } | Action::Scan { .. } => StepOutcome::Failed {
            error: "internal: not a write step".into(),
        },
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
    use std::sync::Arc;

    use super::*;
    use crate::exec::vport::tests::Kernel;
    use crate::exec::vport::SysfsPoll;
    use crate::ownership::OwnedState;
    use crate::plan::{HostRef, WaitReason};
    use crate::sysfs::writes::{AttrWriter, ScanScope};
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
        Executor::new(vports, scanner)
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
            StepOutcome::Compared { .. } => "compared",
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
            // Room for the create on a loaded machine: a create that succeeds
            // returns at once; only the hung host's steps wait the whole limit.
            Duration::from_secs(2),
        );
        let ex = Executor::new(
            vports,
            Scanner::new(k.clone(), sysfs, Duration::from_millis(300)),
        );
        let parent = k.parent();
        let other = *k.sim.hosts().iter().find(|&&h| h != parent.number).unwrap();
        let other = HostRef {
            number: other,
            devpath: k.sim.host_devpath(other).unwrap(),
        };
        let gate = k.sim.stall_scans(other.number);
        let report = ex.apply(&Plan {
            steps: vec![
                step(Action::Scan {
                    host: other.clone(),
                    scope: ScanScope::Host,
                }),
                create(&k, "a", 0x5001_a4a0_0000_0b01),
            ],
        });
        let results: Vec<&str> = report.steps.iter().map(|s| word(&s.outcome)).collect();
        assert_eq!(
            results,
            ["hung", "done"],
            "another host's hang holds nothing"
        );
        // Writes to the hung host itself queue behind its scan, and are reported
        // hung too rather than waited for.
        let rescan = Plan {
            steps: vec![step(Action::RescanDevice {
                hctl: *k
                    .sim
                    .luns()
                    .iter()
                    .find(|l| l.host == other.number)
                    .unwrap(),
                devpath: k
                    .sim
                    .lun_devpath(
                        *k.sim
                            .luns()
                            .iter()
                            .find(|l| l.host == other.number)
                            .unwrap(),
                    )
                    .unwrap(),
            })],
        };
        let report = ex.apply(&rescan);
        assert_eq!(word(&report.steps[0].outcome), "hung");
        assert_eq!(ex.scanner.hung().len(), 1, "{:?}", ex.scanner.hung());
        // The same re-read again, while the first still waits: not queued twice.
        let again = ex.apply(&rescan);
        assert_eq!(word(&again.steps[0].outcome), "already_done");
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
        // Marked again as hbad marks (a NUL ends it over the longer name).
        k.write_attr(&mark, "hbad:a\0").unwrap();
        let r = ex.apply(&Plan {
            steps: vec![delete],
        });
        assert_eq!(word(&r.steps[0].outcome), "done", "{:?}", r.steps[0]);
        assert!(!k.sysfs().exists(&vport));
    }
}
