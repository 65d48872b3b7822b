//! The agent against the simulated host: boot-time vHBAs, storms, desired state,
//! lost events, hung scans, reloads and stop. Time is passed in where the agent
//! takes it, so nothing here waits for a backoff or a link timeout to run out.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hbad::daemon::run::{forward_events, run as run_loop};
use hbad::daemon::{Agent, AgentConfig, Control, LoopTimings};
use hbad::exec::Report;
use hbad::graph::NodeKind;
use hbad::ownership::OwnedState;
use hbad::plan::{Action as StepAction, Recorded};
use hbad::policy::{Environment, Policy, PolicyErrors};
use hbad::sim::demo::{spec as demo_spec, ARRAY_PORT_A, ARRAY_PORT_B, HBA_A_WWPN, HBA_B_WWPN};
use hbad::sim::{Flavour, HbaSpec, Sim, SimSpec};
use hbad::sysfs::writes::{vport_text, AttrWriter};
use hbad::sysfs::{Hctl, VportControlDir};
use hbad::uevent::{Action, Rejection, SourceItem, Uevent};
use hbad::wwn::Wwn;

const VHBA_A: Wwn = Wwn::from_u64(0x5001_a4a0_0000_0a01);
const VHBA_NODE: Wwn = Wwn::from_u64(0x5001_a4a0_0000_0a00);

fn policy(text: &str) -> Policy {
    // hbad records every vHBA it marks in the state file: one that declares vHBAs
    // must keep it in the test's directory (`state_in`), never the host's
    // /var/lib/hbad.
    assert!(
        !text.contains("[[vhba]]") || text.contains("state_file"),
        "a test policy with vHBAs needs its own state file (state_in):\n{text}"
    );
    Policy::from_str(
        Path::new("test.toml"),
        text,
        &Environment::fixed("test-host"),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn vhba_policy(extra: &str) -> String {
    format!(
        r#"
[[vhba]]
name = "vm-a"
parent_wwpn = "{HBA_A_WWPN}"
wwpn = "{VHBA_A}"
wwnn = "{VHBA_NODE}"
link_wait = "60s"
{extra}
"#
    )
}

/// The policy with its ownership state file in the test's directory: hbad records
/// every vHBA it marks, and a test must not write the host's /var/lib/hbad.
fn state_in(dir: &Path, policy: &str) -> String {
    if policy.contains("state_file") {
        return policy.to_string();
    }
    let line = format!(
        "state_file = \"{}\"\n",
        dir.join("state/owned.json").display()
    );
    match policy.find("[ownership]\n") {
        Some(at) => {
            let at = at + "[ownership]\n".len();
            format!("{}{line}{}", &policy[..at], &policy[at..])
        }
        None => format!("{policy}\n[ownership]\n{line}"),
    }
}

/// A simulated host with the agent attached, driven step by step.
struct Rig {
    _dir: tempfile::TempDir,
    sim: Sim,
    events: Receiver<Uevent>,
    reports: tokio::sync::mpsc::UnboundedReceiver<Report>,
    agent: Agent,
    t0: Instant,
}

impl Rig {
    fn new(spec: SimSpec, policy_text: &str) -> Rig {
        Rig::build(
            spec,
            |_| policy_text.to_string(),
            |sim| Arc::new(sim.clone()),
        )
    }

    /// A rig whose policy may name files in its directory, and whose agent
    /// writes through `writer` (a driver that behaves unlike the simulator).
    fn build(
        spec: SimSpec,
        policy_text: impl FnOnce(&Path) -> String,
        writer: impl FnOnce(&Sim) -> Arc<dyn AttrWriter>,
    ) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let sim = Sim::new(dir.path(), &spec).unwrap();
        // Subscribe before the cold plug, as the daemon opens its socket first.
        let events = sim.subscribe(Flavour::Kernel);
        let t0 = Instant::now();
        let mut agent = Agent::new(
            AgentConfig {
                sysfs: sim.sysfs(),
                status_path: Some(dir.path().join("run/hbad/status.json")),
            },
            writer(&sim),
            policy(&state_in(dir.path(), &policy_text(dir.path()))),
            t0,
        );
        let reports = agent.take_reports().unwrap();
        Rig {
            _dir: dir,
            sim,
            events,
            reports,
            agent,
            t0,
        }
    }

    fn at(&self, secs: u64) -> Instant {
        self.t0 + Duration::from_secs(secs)
    }

    /// The executor's reports that have arrived.
    fn drain_reports(&mut self, now: Instant) -> usize {
        let mut n = 0;
        while let Ok(r) = self.reports.try_recv() {
            self.agent.report(r, now);
            n += 1;
        }
        n
    }

    /// Feeds every event the simulated kernel sent, and every executor report,
    /// until nothing more happens (writes run on worker threads and make events).
    fn settle(&mut self, now: Instant) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let items: Vec<SourceItem> = self.events.try_iter().map(SourceItem::Event).collect();
            let reported = self.drain_reports(now);
            if !items.is_empty() {
                self.agent.handle(items, now);
                continue;
            }
            if reported > 0 {
                continue;
            }
            if self.agent.scanner().busy() == 0 {
                // One more look: a write that just ended may have sent events.
                std::thread::sleep(Duration::from_millis(5));
                let late: Vec<SourceItem> = self.events.try_iter().map(SourceItem::Event).collect();
                let reported = self.drain_reports(now);
                if late.is_empty() && reported == 0 && self.agent.scanner().busy() == 0 {
                    return;
                }
                if !late.is_empty() {
                    self.agent.handle(late, now);
                }
                continue;
            }
            assert!(
                Instant::now() < deadline,
                "the simulated host never settled"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn vhba_host(&self, wwpn: Wwn) -> Option<u32> {
        self.sim.host_by_wwpn(wwpn)
    }

    fn vhba_state(&self, name: &str) -> (String, Option<String>) {
        let s = self.agent.status();
        let v = s.vhbas.iter().find(|v| v.name == name).unwrap();
        (v.state.clone(), v.reason.clone())
    }

    fn scans(&self) -> Vec<(String, String)> {
        self.sim
            .writes()
            .into_iter()
            .filter(|w| w.path.ends_with("scan"))
            .map(|w| {
                let host = w
                    .path
                    .parent()
                    .and_then(|p| p.file_name())
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                (host, w.value.trim().to_string())
            })
            .collect()
    }

    fn vport_writes(&self, attr: &str) -> usize {
        self.sim
            .writes()
            .iter()
            .filter(|w| w.path.ends_with(attr))
            .count()
    }
}

#[test]
fn boot_creates_a_vhba_whose_parent_is_online_and_marks_it() {
    let mut rig = Rig::new(demo_spec(), &vhba_policy(""));
    // The array masks LUN 1 to the vHBA's WWPN before it exists (zoned in advance).
    rig.sim.map_lun(ARRAY_PORT_A, 1, VHBA_A).unwrap();
    rig.agent.boot(rig.at(0));
    rig.settle(rig.at(0));
    let host = rig.vhba_host(VHBA_A).expect("vHBA created");
    assert_eq!(rig.vhba_state("vm-a").0, "active");
    assert!(rig.agent.boot_settled());
    let status = rig.agent.status();
    let v = &status.vhbas[0];
    assert_eq!(v.host.as_deref(), Some(format!("host{host}").as_str()));
    assert_eq!(v.vport_state.as_deref(), Some("Active"));
    assert_eq!(v.owner.as_deref(), Some("symbolic_name"));
    // The vHBA logged in, the transport scanned it and found the LUN masked to it.
    let lun = rig.agent.graph().lun(Hctl {
        host,
        channel: 0,
        target: 0,
        lun: 1,
    });
    assert!(lun.is_some(), "LUN 1 through the vHBA");
    assert_eq!(rig.vport_writes("vport_create"), 1);
    // Its disk came before the mark (the simulator scans within the create): it was
    // announced to udev again once marked, so its by-vhba link is made.
    let disk = rig
        .agent
        .graph()
        .disk_of(lun.unwrap())
        .unwrap()
        .devpath
        .clone();
    let announced: Vec<_> = rig
        .sim
        .writes()
        .into_iter()
        .filter(|w| w.path.ends_with("uevent"))
        .collect();
    assert_eq!(announced.len(), 1);
    assert_eq!(
        announced[0].path,
        rig.sim.sysfs().path(&disk).join("uevent")
    );
    assert_eq!(
        (announced[0].value.as_str(), announced[0].errno),
        ("change", None)
    );
    assert!(hbad::plan::plan(
        rig.agent.policy(),
        rig.agent.graph(),
        &Recorded::none(),
        &[]
    )
    .is_settled());
    // The status file counts the agent's devices per kind, named as `hbad list --json`
    // names them ("remote_port", "lun"); settled, they are a fresh read's.
    let fresh = hbad::graph::Graph::load(&rig.sim.sysfs());
    let mut want = std::collections::BTreeMap::new();
    for n in fresh.nodes() {
        let kind = n.kind.label().to_lowercase().replace(' ', "_");
        *want.entry(kind).or_insert(0u64) += 1;
    }
    assert_eq!(rig.agent.status().devices, want);
    assert_eq!(want.get("vport"), Some(&1));
}

#[test]
fn boot_waits_for_a_parent_link_that_comes_up_later() {
    let mut spec = demo_spec();
    for hba in spec.hbas.iter_mut() {
        if let hbad::sim::HbaKind::Fc(port) = &mut hba.kind {
            if port.wwpn == HBA_A_WWPN {
                port.link_up = false;
            }
        }
    }
    let mut rig = Rig::new(spec, &vhba_policy(""));
    rig.agent.boot(rig.at(0));
    rig.settle(rig.at(0));
    let (state, reason) = rig.vhba_state("vm-a");
    assert_eq!(state, "waiting");
    assert!(reason.unwrap().contains("parent link not Online"));
    // A link that is down does not hold READY; STATUS= says what waits.
    assert!(rig.agent.boot_settled());
    let summary = rig.agent.summary_at(rig.at(5));
    assert!(
        summary.contains("waiting for fabric link of host")
            && summary.contains("for vm-a, 55 s left"),
        "{summary}"
    );
    assert!(!rig.agent.degraded(rig.at(5)));
    // The link comes up with no uevent at all.
    let parent = rig.sim.host_by_wwpn(HBA_A_WWPN).unwrap();
    rig.sim.set_link(parent, true).unwrap();
    assert!(rig.events.try_iter().all(|e| e.subsystem != "fc_host"));
    rig.agent.tick(rig.at(6));
    rig.settle(rig.at(6));
    assert!(rig.vhba_host(VHBA_A).is_some());
    assert!(rig.agent.boot_settled());
    assert!(!rig.agent.summary_at(rig.at(6)).contains("waiting"));
}

#[test]
fn a_parent_link_that_stays_down_is_degraded_not_a_failed_start() {
    let mut spec = demo_spec();
    for hba in spec.hbas.iter_mut() {
        if let hbad::sim::HbaKind::Fc(port) = &mut hba.kind {
            port.link_up = false;
        }
    }
    let mut rig = Rig::new(spec, &vhba_policy(""));
    rig.agent.boot(rig.at(0));
    rig.settle(rig.at(0));
    assert!(rig.agent.boot_settled());
    assert!(!rig.agent.degraded(rig.at(59)));
    rig.agent.tick(rig.at(61));
    assert!(rig.agent.degraded(rig.at(61)));
    let summary = rig.agent.summary_at(rig.at(61));
    assert!(summary.starts_with("0/1 vHBAs active"), "{summary}");
    assert!(
        summary.contains("degraded: fabric link of host") && summary.contains("vm-a not created"),
        "{summary}"
    );
    assert_eq!(rig.vport_writes("vport_create"), 0);
}

#[test]
fn a_full_parent_is_reported_with_its_numbers_and_nothing_is_written() {
    let mut spec = demo_spec();
    for hba in spec.hbas.iter_mut() {
        if let hbad::sim::HbaKind::Fc(port) = &mut hba.kind {
            port.max_npiv_vports = Some(1);
        }
    }
    let mut rig = Rig::new(spec, &vhba_policy(""));
    // Someone else's vport takes the only slot.
    let parent = rig.sim.host_by_wwpn(HBA_A_WWPN).unwrap();
    let dev = rig.sim.host_devpath(parent).unwrap();
    let other = vport_text(Wwn::from_u64(0x5001_a4a0_0000_0f01), VHBA_NODE);
    rig.sim
        .write_attr(
            &rig.sim
                .sysfs()
                .vport_create_path(&dev, VportControlDir::FcHost),
            &other,
        )
        .unwrap();
    rig.settle(rig.at(0));
    rig.agent.boot(rig.at(0));
    rig.settle(rig.at(0));
    let (state, reason) = rig.vhba_state("vm-a");
    assert_eq!(state, "waiting");
    assert!(
        reason.as_deref().unwrap().contains("1 of 1 vports in use"),
        "{reason:?}"
    );
    assert_eq!(rig.vport_writes("vport_create"), 1, "only the other vport");
    assert!(rig.agent.boot_settled());
}

/// Unit attentions on LUNs of the given targets, round robin.
fn storm(luns: &[(Hctl, String)], n: usize) -> Vec<SourceItem> {
    (0..n)
        .map(|i| {
            let (_, devpath) = &luns[i % luns.len()];
            SourceItem::Event(
                Uevent::new(Action::Change, devpath, "scsi")
                    .with_devtype("scsi_device")
                    .with_prop("SDEV_UA", "REPORTED_LUNS_DATA_HAS_CHANGED"),
            )
        })
        .collect()
}

fn two_hosts_four_targets() -> SimSpec {
    SimSpec::new()
        .hba(HbaSpec::scsi_debug(2, 8))
        .hba(HbaSpec::scsi_debug(2, 8))
}

#[test]
fn a_storm_of_unit_attentions_gives_one_scan_per_target() {
    let mut rig = Rig::new(two_hosts_four_targets(), "");
    rig.agent.boot(rig.at(0));
    rig.settle(rig.at(0));
    let luns: Vec<(Hctl, String)> = rig
        .sim
        .luns()
        .into_iter()
        .map(|h| (h, rig.sim.lun_devpath(h).unwrap()))
        .collect();
    assert_eq!(luns.len(), 32);
    rig.agent.handle(storm(&luns, 10_000), rig.at(1));
    rig.settle(rig.at(1));
    let mut scans = rig.scans();
    scans.sort();
    let hosts: Vec<u32> = rig.sim.hosts();
    let want: Vec<(String, String)> = hosts
        .iter()
        .flat_map(|h| {
            ["0 0 -", "0 1 -"]
                .iter()
                .map(move |s| (format!("host{h}"), s.to_string()))
        })
        .collect();
    assert_eq!(scans, want);
    assert_eq!(rig.agent.counters().events, 10_000);
}

/// `echo VHBA_A:VHBA_NODE > <HBA A>/vport_create` (or `vport_delete`), as an
/// administrator would.
fn by_hand(rig: &Rig, control: &str) {
    let parent = rig.sim.host_by_wwpn(HBA_A_WWPN).unwrap();
    let dev = rig.sim.host_devpath(parent).unwrap();
    let path = rig
        .sim
        .sysfs()
        .vport_create_path(&dev, VportControlDir::FcHost)
        .with_file_name(control);
    rig.sim
        .write_attr(&path, &vport_text(VHBA_A, VHBA_NODE))
        .unwrap();
}

#[test]
fn a_vhba_deleted_by_someone_else_is_recreated() {
    let mut rig = Rig::new(demo_spec(), &vhba_policy(""));
    rig.agent.boot(rig.at(0));
    rig.settle(rig.at(0));
    // An administrator's echo into vport_delete.
    by_hand(&rig, "vport_delete");
    assert!(rig.vhba_host(VHBA_A).is_none());
    rig.settle(rig.at(10));
    assert!(rig.vhba_host(VHBA_A).is_some(), "recreated");
    assert_eq!(rig.agent.counters().vhbas_created, 2);
    assert_eq!(rig.vhba_state("vm-a").0, "active");
}

/// A port on the fabric still shows the vHBA's WWPN Online (what a target's port
/// remembers of a vHBA deleted by hand, until its driver blocks it): the create
/// waits. The remote port goes Blocked with no uevent; the agent's poll, not only
/// the sweep a heartbeat away, sees it and makes the vHBA.
#[test]
fn a_create_waiting_for_a_remote_port_holding_its_wwpn_is_polled() {
    let mut spec = demo_spec();
    spec = spec.target(hbad::sim::TargetPortSpec::new(
        hbad::sim::demo::FABRIC_A,
        VHBA_A,
        VHBA_NODE,
        0x0a_0a01,
    ));
    let mut rig = Rig::new(spec, &vhba_policy(""));
    rig.agent.boot(rig.at(0));
    rig.settle(rig.at(0));
    assert!(rig.vhba_host(VHBA_A).is_none());
    let (state, reason) = rig.vhba_state("vm-a");
    assert!(
        reason
            .as_deref()
            .unwrap_or("")
            .contains("already used by remote port"),
        "{state}: {reason:?}"
    );
    assert!(rig.agent.polling(), "the remote port in the way is polled");
    rig.sim.remove_target_port(VHBA_A).unwrap();
    rig.agent.poll(rig.at(1));
    rig.settle(rig.at(1));
    assert!(
        rig.vhba_host(VHBA_A).is_some(),
        "made once the port is Blocked"
    );
    assert_eq!(rig.vport_writes("vport_create"), 1);
}

#[test]
fn refusals_back_off_instead_of_hammering_the_kernel() {
    let mut rig = Rig::new(demo_spec(), &vhba_policy(""));
    let parent = rig.sim.host_by_wwpn(HBA_A_WWPN).unwrap();
    rig.sim.fail_next_vport_create(parent, libc::ENOSPC);
    rig.agent.boot(rig.at(0));
    rig.settle(rig.at(0));
    let (state, reason) = rig.vhba_state("vm-a");
    assert_eq!(state, "failed");
    assert!(reason.unwrap().contains("no free vport"));
    // Within the backoff, events and ticks do not retry.
    rig.agent.tick(rig.at(1));
    rig.settle(rig.at(1));
    assert_eq!(rig.vport_writes("vport_create"), 1);
    // After it, the next tick does, and the kernel now accepts.
    rig.agent.tick(rig.at(3));
    rig.settle(rig.at(3));
    assert_eq!(rig.vport_writes("vport_create"), 2);
    assert!(rig.vhba_host(VHBA_A).is_some());
}

#[test]
fn lost_events_are_repaired_by_a_resync_and_a_scan() {
    let mut rig = Rig::new(demo_spec(), "");
    rig.agent.boot(rig.at(0));
    rig.settle(rig.at(0));
    // The SAN maps LUN 2 to the physical port A; the unit attention is raised...
    rig.sim.map_lun(ARRAY_PORT_A, 2, HBA_A_WWPN).unwrap();
    assert!(rig.sim.io_pending() > 0);
    // ...and lost with everything else in the socket's queue.
    let lost = rig.events.try_iter().count();
    assert!(lost > 0);
    rig.agent.handle(vec![SourceItem::Overflow], rig.at(1));
    rig.settle(rig.at(1));
    let host = rig.sim.host_by_wwpn(HBA_A_WWPN).unwrap();
    let found = rig
        .agent
        .graph()
        .luns()
        .into_iter()
        .any(|n| matches!(&n.kind, NodeKind::Lun(l) if l.hctl.host == host && l.hctl.lun == 2));
    assert!(found, "LUN 2 found although its unit attention was lost");
    let c = rig.agent.counters();
    assert_eq!((c.overflows, c.resyncs), (1, 1));
    // Only hosts taking part were scanned: not the RAID controller.
    assert!(rig.scans().iter().all(|(h, _)| {
        let n: u32 = h.trim_start_matches("host").parse().unwrap();
        rig.agent
            .graph()
            .host(n)
            .is_some_and(|node| matches!(&node.kind, NodeKind::Host(h) if h.fc.is_some()))
    }));
}

#[test]
fn forged_and_malformed_items_are_dropped_and_counted() {
    let mut rig = Rig::new(demo_spec(), "");
    rig.agent.boot(rig.at(0));
    let before = rig.agent.graph().clone();
    rig.agent.handle(
        vec![
            SourceItem::Rejected(Rejection::NotKernel(4242)),
            SourceItem::Rejected(Rejection::NotRoot(1000)),
            SourceItem::Rejected(Rejection::Malformed(hbad::uevent::ParseError::Empty)),
        ],
        rig.at(1),
    );
    let c = rig.agent.counters();
    assert_eq!((c.forged, c.malformed, c.events), (2, 1, 0));
    assert_eq!(rig.agent.graph(), &before);
}

#[test]
fn a_hung_scan_is_reported_while_other_hosts_and_reloads_go_on() {
    let mut rig = Rig::new(
        two_hosts_four_targets(),
        "[rescan]\nscan_timeout = \"100ms\"\n",
    );
    rig.agent.boot(rig.at(0));
    rig.settle(rig.at(0));
    let hosts = rig.sim.hosts();
    let (stuck, fine) = (hosts[0], hosts[1]);
    let gate = rig.sim.stall_scans(stuck);
    let ua = |h: u32| {
        let hctl = Hctl {
            host: h,
            channel: 0,
            target: 0,
            lun: 0,
        };
        SourceItem::Event(
            Uevent::new(Action::Change, &rig.sim.lun_devpath(hctl).unwrap(), "scsi")
                .with_devtype("scsi_device")
                .with_prop("SDEV_UA", "REPORTED_LUNS_DATA_HAS_CHANGED"),
        )
    };
    rig.agent.handle(vec![ua(stuck), ua(fine)], rig.at(1));
    assert!(gate.wait_for_blocked(1, Duration::from_secs(5)));
    // The other host's scan completes while the first is stuck in the kernel.
    let report = rig
        .reports
        .blocking_recv()
        .expect("the healthy host's scan ends");
    let Report::Scan(report) = report else {
        panic!("{report:?}")
    };
    assert_eq!(report.host.number, fine);
    rig.agent.scan_report(report);
    std::thread::sleep(Duration::from_millis(150));
    rig.agent.tick(rig.at(2));
    let status = rig.agent.status();
    assert_eq!(status.hung, [format!("host{stuck}")]);
    let summary = rig.agent.summary();
    assert!(
        summary.contains(&format!("1 hung (host{stuck})")),
        "{summary}"
    );
    // A reload is served while the scan hangs.
    assert!(rig
        .agent
        .reload(Ok(policy("[rescan]\nscope = \"host\"\n")), rig.at(3)));
    // Later requests for the stuck host queue behind it, merged into one.
    rig.agent
        .handle(vec![ua(stuck), ua(stuck), ua(stuck)], rig.at(4));
    // Behind the stuck scan: the look for LUNs gone from that target, then the one
    // new scan; the three attentions' looks merged into the one already queued.
    assert_eq!(
        rig.agent.scanner().busy(),
        3,
        "one running, one look for gone LUNs and one scan queued"
    );
    gate.release();
    rig.settle(rig.at(5));
    assert!(rig.agent.status().hung.is_empty());
}

#[test]
fn a_bad_reload_keeps_the_policy_in_force() {
    let mut rig = Rig::new(demo_spec(), &vhba_policy(""));
    rig.agent.boot(rig.at(0));
    rig.settle(rig.at(0));
    let before = rig.agent.policy().clone();
    let bad: Result<Policy, PolicyErrors> = Policy::from_str(
        Path::new("bad.toml"),
        "[[vhba]]\nname = \"x\"\nwwpm = \"1\"\n",
        &Environment::fixed("t"),
    );
    assert!(bad.is_err());
    assert!(!rig.agent.reload(bad, rig.at(1)));
    assert_eq!(rig.agent.policy(), &before);
    assert!(rig.vhba_host(VHBA_A).is_some());
}

/// vm-a left out of the policy: kept while prune is off, deleted once it is on.
fn left_out_kept_then_pruned(rig: &mut Rig) {
    let dir = rig._dir.path().to_path_buf();
    assert!(rig.agent.reload(Ok(policy(&state_in(&dir, ""))), rig.at(1)));
    rig.settle(rig.at(1));
    assert!(rig.vhba_host(VHBA_A).is_some(), "kept: prune is off");
    let prune = state_in(&dir, "[ownership]\nprune = true\n");
    assert!(rig.agent.reload(Ok(policy(&prune)), rig.at(2)));
    rig.settle(rig.at(2));
    assert!(rig.vhba_host(VHBA_A).is_none(), "pruned: it was hbad's");
}

#[test]
fn removing_a_vhba_from_the_policy_keeps_it_unless_pruning_is_on() {
    let mut rig = Rig::new(demo_spec(), &vhba_policy(""));
    rig.agent.boot(rig.at(0));
    rig.settle(rig.at(0));
    // The same state file: its record of the mark is what still makes the vHBA
    // hbad's once no policy declares it.
    left_out_kept_then_pruned(&mut rig);
}

/// The executor's report of the first vport create, holding back every other
/// report (none changes the vport).
fn create_report(rig: &mut Rig) -> Report {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match rig.reports.try_recv() {
            Ok(Report::Step(r)) if matches!(r.step.action, StepAction::CreateVhba { .. }) => {
                return Report::Step(r)
            }
            Ok(other) => rig.agent.report(other, rig.t0),
            Err(_) => {
                assert!(Instant::now() < deadline, "no create was reported");
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
}

/// Hands the agent the events sent so far as it takes them when it reads the
/// vport's `add` at once: its fc_vports directory is there, its attributes not yet.
fn take_before_the_vport_attributes(rig: &mut Rig, now: Instant) {
    let events: Vec<Uevent> = rig.events.try_iter().collect();
    let class = events
        .iter()
        .find(|e| e.subsystem == "fc_vports" && e.action == Action::Add)
        .expect("a vport's add")
        .devpath
        .clone();
    let dir = rig.sim.sysfs().path(&class);
    let aside = rig._dir.path().join("attributes-not-yet");
    std::fs::rename(&dir, &aside).unwrap();
    std::fs::create_dir(&dir).unwrap();
    rig.agent
        .handle(events.into_iter().map(SourceItem::Event).collect(), now);
    std::fs::remove_dir(&dir).unwrap();
    std::fs::rename(&aside, &dir).unwrap();
}

/// The kernel sends a vport's fc_vports `add` before it makes the class device's
/// attributes (`attribute_container_add_class_device`: `device_add`, then the
/// files). An agent that takes the event in between holds a vport with no WWPN,
/// no node name and no symbolic_name, and nothing announces the attributes.
/// After hbad's own create, that vport is read again: once the policy stops
/// declaring it, prune = false keeps it (and says why) and prune = true deletes it.
#[test]
fn a_vport_read_before_the_kernel_made_its_attributes_is_read_again() {
    let mut rig = Rig::new(demo_spec(), &vhba_policy(""));
    rig.agent.boot(rig.at(0));
    let report = create_report(&mut rig);
    let now = rig.at(0);
    take_before_the_vport_attributes(&mut rig, now);
    rig.agent.report(report, rig.at(0));
    rig.settle(rig.at(0));
    assert!(rig.vhba_host(VHBA_A).is_some());
    let vport = rig
        .agent
        .graph()
        .by_wwpn(VHBA_A)
        .into_iter()
        .find_map(|n| match &n.kind {
            NodeKind::Vport(v) => Some(v.clone()),
            _ => None,
        })
        .expect("the vport is known by its WWPN");
    assert_eq!(vport.symbolic_name.as_deref(), Some("hbad:vm-a"));

    left_out_kept_then_pruned(&mut rig);
}

/// A vport someone else made, read before its attributes: polled until it is read
/// whole, so a policy that declares its WWPN adopts it rather than waiting for a
/// WWPN that a vport of no name seems to hold.
#[test]
fn a_vport_read_with_no_name_is_polled_until_it_has_one() {
    let mut rig = Rig::new(demo_spec(), "");
    rig.agent.boot(rig.at(0));
    rig.settle(rig.at(0));
    assert!(!rig.agent.polling());
    by_hand(&rig, "vport_create");
    let now = rig.at(1);
    take_before_the_vport_attributes(&mut rig, now);
    let named = |rig: &Rig| {
        rig.agent
            .graph()
            .by_wwpn(VHBA_A)
            .iter()
            .any(|n| matches!(n.kind, NodeKind::Vport(_)))
    };
    assert!(!named(&rig));
    assert!(rig.agent.polling(), "the vport with no name is polled");
    rig.agent.poll(rig.at(2));
    assert!(named(&rig), "read whole at the poll");
    rig.settle(rig.at(2));
    assert!(!rig.agent.polling(), "and no longer polled");
}

/// A driver without `set_vport_symbolic_name`: the attribute is read-only, and a
/// write to it is refused.
#[derive(Debug)]
struct NoSymbolicName {
    sim: Sim,
    refused: Arc<AtomicUsize>,
}

impl AttrWriter for NoSymbolicName {
    fn store(&self, path: &Path, value: &str) -> std::io::Result<()> {
        if path.ends_with("symbolic_name") {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return Err(std::io::Error::from_raw_os_error(libc::EACCES));
        }
        self.sim.write_attr(path, value)
    }
}

fn ownership(dir: &Path, prune: bool) -> String {
    format!(
        "[ownership]\nprune = {prune}\nstate_file = \"{}\"\n",
        dir.join("state/owned.json").display()
    )
}

#[test]
fn a_refused_mark_is_recorded_once_in_the_state_file_and_the_record_prunes() {
    let refused = Arc::new(AtomicUsize::new(0));
    let counter = refused.clone();
    let mut rig = Rig::build(
        demo_spec(),
        |dir| vhba_policy(&ownership(dir, false)),
        move |sim| {
            Arc::new(NoSymbolicName {
                sim: sim.clone(),
                refused: counter,
            })
        },
    );
    let state = OwnedState::new(rig._dir.path().join("state/owned.json"));
    rig.agent.boot(rig.at(0));
    rig.settle(rig.at(0));
    assert!(rig.vhba_host(VHBA_A).is_some());
    let rec = state
        .get(VHBA_A)
        .unwrap()
        .expect("recorded in the state file");
    assert_eq!(rec.name, "vm-a");
    assert_eq!(rec.wwnn, VHBA_NODE);
    assert!(rec.why.contains("EACCES"), "{}", rec.why);
    assert_eq!(
        rig.agent.status().vhbas[0].owner.as_deref(),
        Some("state_file")
    );
    // Later reconciles do not ask the driver again.
    assert!(rig.agent.reload(
        Ok(policy(&vhba_policy(&ownership(rig._dir.path(), false)))),
        rig.at(1)
    ));
    rig.agent.tick(rig.at(2));
    rig.settle(rig.at(2));
    assert_eq!(refused.load(Ordering::SeqCst), 1);
    // Left out of the policy with pruning on: the record makes it hbad's to delete,
    // and goes with it.
    assert!(rig
        .agent
        .reload(Ok(policy(&ownership(rig._dir.path(), true))), rig.at(3)));
    rig.settle(rig.at(3));
    assert!(rig.vhba_host(VHBA_A).is_none(), "pruned through its record");
    assert_eq!(state.get(VHBA_A).unwrap(), None);
}

/// Another hbad (`hbad apply`) recovering a corrupt state file holds its lock:
/// the agent's loop never waits for it, nor recovers the file itself (its
/// `state-file` thread does, once the lock is free). Its plan waits instead, and
/// is made once the file is rebuilt, with the records the recovery wrote.
#[test]
fn a_plan_waits_for_a_held_state_file_lock_and_the_loop_never_does() {
    use std::os::fd::AsRawFd;
    use std::sync::atomic::AtomicBool;
    let mut rig = Rig::new(demo_spec(), &vhba_policy(""));
    let state_dir = rig._dir.path().join("state");
    std::fs::create_dir_all(&state_dir).unwrap();
    std::fs::write(state_dir.join("owned.json"), "{not json").unwrap();
    let lock = std::fs::File::create(state_dir.join("owned.json.lock")).unwrap();
    // SAFETY: flock takes no pointers; the descriptor is open for the call.
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
    // The holder lets go after a while, or when told: a loop that waits for the
    // lock returns only after it let go.
    let released = Arc::new(AtomicBool::new(false));
    let (let_go, told) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn({
        let released = released.clone();
        move || {
            let _ = told.recv_timeout(Duration::from_secs(5));
            released.store(true, Ordering::SeqCst);
            drop(lock);
        }
    });
    rig.agent.boot(rig.at(0));
    assert!(
        !released.load(Ordering::SeqCst),
        "the boot's plan waited for the state file's lock"
    );
    rig.settle(rig.at(0));
    let retry = deferred(&rig, "planned without the records");
    // Still held: waits again, with no write.
    rig.agent.poll(retry);
    rig.settle(retry);
    assert_eq!(rig.vport_writes("vport_create"), 0);
    let_go.send(()).unwrap();
    holder.join().unwrap();
    await_rebuilt(&state_dir.join("owned.json"));
    let retry = rig.agent.next_due(retry).expect("still to be tried");
    rig.agent.poll(retry);
    rig.settle(retry);
    assert!(
        rig.vhba_host(VHBA_A).is_some(),
        "planned once the lock was free"
    );
    assert_eq!(
        moved_aside(&state_dir).len(),
        1,
        "the corrupt file was recovered"
    );
}

/// The rig's state file, written with `text`.
fn state_file(rig: &Rig, text: &str) -> std::path::PathBuf {
    let path = rig._dir.path().join("state/owned.json");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, text).unwrap();
    path
}

/// The boot's plan waits for the state file (`why` it must): no create yet, and
/// tried again shortly; when.
fn deferred(rig: &Rig, why: &str) -> Instant {
    assert_eq!(rig.vport_writes("vport_create"), 0, "{why}");
    let retry = rig
        .agent
        .next_due(rig.at(0))
        .expect("the plan is tried again");
    assert!(retry <= rig.at(1), "{:?}", retry - rig.at(0));
    retry
}

/// The state files moved aside in `dir`, corrupt.
fn moved_aside(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".corrupt-"))
        .collect()
}

/// Waits until the corrupt state file at `path` was moved aside and rebuilt
/// (by the agent's `state-file` thread): hbad's JSON is there again.
fn await_rebuilt(path: &Path) {
    await_until(|| match std::fs::read_to_string(path) {
        Ok(s) if s.contains("\"version\"") => Ok(()),
        _ => Err(format!("{} never rebuilt", path.display())),
    });
}

/// A corrupt state file whose lock is free: the agent's loop still neither
/// moves it aside nor writes it (a synced write can hang for minutes on a sick
/// disk). Its plan waits while the `state-file` thread rebuilds the file, then
/// is made, and the loop's thread never took a lock or wrote (debug assertions
/// in the state file's code, as for kernel writes).
#[test]
fn a_corrupt_state_file_is_rebuilt_off_the_loop_while_the_plan_waits() {
    let mut rig = Rig::new(demo_spec(), &vhba_policy(""));
    let path = state_file(&rig, "{not json");
    hbad::sysfs::writes::set_loop_thread(true);
    rig.agent.boot(rig.at(0));
    hbad::sysfs::writes::set_loop_thread(false);
    let retry = deferred(&rig, "planned before the file was rebuilt");
    await_rebuilt(&path);
    hbad::sysfs::writes::set_loop_thread(true);
    rig.agent.poll(retry);
    rig.settle(retry);
    hbad::sysfs::writes::set_loop_thread(false);
    assert!(rig.vhba_host(VHBA_A).is_some(), "planned once rebuilt");
    let aside = moved_aside(path.parent().unwrap());
    assert_eq!(aside.len(), 1, "{aside:?}");
    let state = std::fs::read_to_string(&path).unwrap();
    assert!(
        state.contains("vm-a"),
        "recorded in the rebuilt file: {state}"
    );
}

#[test]
fn marking_over_a_longer_symbolic_name_shows_exactly_hbads_mark() {
    let mut rig = Rig::new(demo_spec(), &vhba_policy(""));
    rig.agent.boot(rig.at(0));
    rig.settle(rig.at(0));
    let host = rig.vhba_host(VHBA_A).unwrap();
    let vhba_dev = rig.sim.host_devpath(host).unwrap();
    let vport = hbad::sysfs::parent_devpath(&vhba_dev).unwrap().to_string();
    let path = rig.sim.sysfs().vport_symbolic_name_path(&vport);
    let shown = || std::fs::read_to_string(&path).unwrap();
    assert_eq!(shown(), "hbad:vm-a\n");
    // Someone names it at length; the policy still declares it, so hbad marks it
    // again. The kernel copies a name over the old one with no terminator.
    rig.sim.write_attr(&path, "libvirt-pool-for-vm-a").unwrap();
    // symbolic_name changes with no uevent: the tick's poll finds it.
    rig.agent.tick(rig.at(5));
    rig.settle(rig.at(5));
    assert_eq!(shown(), "hbad:vm-a\n");
    assert_eq!(
        rig.agent.status().vhbas[0].owner.as_deref(),
        Some("symbolic_name")
    );
    // Settled: another tick writes nothing more.
    let writes = rig.vport_writes("symbolic_name");
    rig.agent.tick(rig.at(6));
    rig.settle(rig.at(6));
    assert_eq!(rig.vport_writes("symbolic_name"), writes);
}

#[test]
fn a_renamed_vhba_is_marked_over_bytes_an_earlier_nul_hid() {
    let mut rig = Rig::build(
        demo_spec(),
        |dir| vhba_policy(&ownership(dir, false)),
        |sim| Arc::new(sim.clone()),
    );
    let state = OwnedState::new(rig._dir.path().join("state/owned.json"));
    rig.agent.boot(rig.at(0));
    rig.settle(rig.at(0));
    let host = rig.vhba_host(VHBA_A).unwrap();
    let vhba_dev = rig.sim.host_devpath(host).unwrap();
    let vport = hbad::sysfs::parent_devpath(&vhba_dev).unwrap().to_string();
    let path = rig.sim.sysfs().vport_symbolic_name_path(&vport);
    let shown = || std::fs::read_to_string(&path).unwrap();
    rig.sim.write_attr(&path, "libvirt-x1-long-name").unwrap();
    rig.agent.tick(rig.at(1));
    rig.settle(rig.at(1));
    // Marked with a NUL: "-long-name" is still in the kernel's buffer behind it.
    assert_eq!(shown(), "hbad:vm-a\n");
    // Renamed in the policy: the longer mark covers the NUL and would show the
    // hidden bytes after it unless it ends itself.
    let renamed = vhba_policy(&ownership(rig._dir.path(), false))
        .replace("name = \"vm-a\"", "name = \"vm-abc\"");
    assert!(rig.agent.reload(Ok(policy(&renamed)), rig.at(2)));
    rig.settle(rig.at(2));
    assert_eq!(shown(), "hbad:vm-abc\n");
    assert_eq!(
        rig.agent.status().vhbas[0].owner.as_deref(),
        Some("symbolic_name")
    );
    // Recorded under its new name to bind the mark to this host; no fallback needed.
    let rec = state.get(VHBA_A).unwrap().unwrap();
    assert_eq!((rec.name.as_str(), rec.refused()), ("vm-abc", false));
}

/// The whole loop: events through a channel with the policy's debounce, a stop
/// during a stuck scan, and no vHBA deleted on the way out.
#[test]
fn the_loop_debounces_a_storm_and_stops_cleanly_during_a_scan() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = demo_spec();
    spec = spec.hba(HbaSpec::scsi_debug(2, 4));
    let sim = Sim::new(dir.path(), &spec).unwrap();
    let kernel_events = sim.subscribe(Flavour::Kernel);
    let status_path = dir.path().join("status.json");
    let agent = Agent::new(
        AgentConfig {
            sysfs: sim.sysfs(),
            status_path: Some(status_path.clone()),
        },
        Arc::new(sim.clone()),
        policy(&state_in(
            dir.path(),
            &vhba_policy("[rescan]\ndebounce = \"200ms\"\n"),
        )),
        Instant::now(),
    );
    let (etx, erx) = tokio::sync::mpsc::channel(65536);
    let (ctx, crx) = tokio::sync::mpsc::channel(4);
    // The simulated kernel's events go to the loop as a kernel source would.
    forward_events(kernel_events, etx.clone()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let sim2 = sim.clone();
    rt.block_on(async move {
        let looped = tokio::spawn(run_loop(
            agent,
            erx,
            crx,
            || Ok(policy("")),
            LoopTimings {
                tick: Duration::from_millis(50),
                stop_grace: Duration::from_millis(200),
                ..LoopTimings::default()
            },
        ));
        // Boot creates the vHBA.
        let t = Instant::now();
        while sim2.host_by_wwpn(VHBA_A).is_none() {
            assert!(t.elapsed() < Duration::from_secs(10), "vHBA never created");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The new vHBA is scanned once it is online: wait for that scan, so that
        // only the storm's scans are counted below.
        until("the new vHBA's scan", Duration::from_secs(10), || {
            sim2.writes()
                .iter()
                .any(|w| w.path.ends_with("scan") && w.value.trim() == "- - -")
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let scans_before = sim2
            .writes()
            .iter()
            .filter(|w| w.path.ends_with("scan"))
            .count();
        // A storm on the scsi_debug host's two targets, within one window.
        let local = sim2
            .luns()
            .into_iter()
            .filter(|h| sim2.lun_devpath(*h).is_some_and(|d| d.contains("pseudo")))
            .map(|h| (h, sim2.lun_devpath(h).unwrap()))
            .collect::<Vec<_>>();
        assert_eq!(local.len(), 8);
        let stuck_host = local[0].0.host;
        for item in storm(&local, 2000) {
            etx.send(item).await.unwrap();
        }
        let t = Instant::now();
        loop {
            let n = sim2
                .writes()
                .iter()
                .filter(|w| w.path.ends_with("scan"))
                .count();
            if n >= scans_before + 2 {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(10), "storm never scanned");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
        let scans: Vec<String> = sim2
            .writes()
            .iter()
            .filter(|w| w.path.ends_with("scan"))
            .skip(scans_before)
            .map(|w| w.value.trim().to_string())
            .collect();
        assert_eq!(scans.len(), 2, "one scan per target: {scans:?}");
        // A scan that hangs, then SIGTERM.
        let gate = sim2.stall_scans(stuck_host);
        etx.send(storm(&local[..1], 1).remove(0)).await.unwrap();
        assert!(tokio::task::spawn_blocking(move || {
            let ok = gate.wait_for_blocked(1, Duration::from_secs(5));
            (ok, gate)
        })
        .await
        .map(|(ok, gate)| {
            // Keep the scan stuck through the stop.
            std::mem::forget(gate);
            ok
        })
        .unwrap());
        ctx.send(Control::Stop).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), looped)
            .await
            .expect("the loop stops within its grace period")
            .unwrap();
    });
    assert!(
        sim.host_by_wwpn(VHBA_A).is_some(),
        "vHBAs outlive the agent"
    );
    assert_eq!(
        sim.writes()
            .iter()
            .filter(|w| w.path.ends_with("vport_delete"))
            .count(),
        0
    );
    let status = hbad::daemon::status::Status::read(&status_path).unwrap();
    assert_eq!(status.vhbas[0].state, "active");
    let _ = ARRAY_PORT_B;
    let _ = HBA_B_WWPN;
}

#[test]
fn a_remote_port_back_online_is_seen_by_polling_and_its_target_scanned() {
    let mut rig = Rig::new(demo_spec(), "");
    rig.agent.boot(rig.at(0));
    rig.settle(rig.at(0));
    let host = rig.sim.host_by_wwpn(HBA_A_WWPN).unwrap();
    let rport_state = |rig: &Rig| {
        rig.agent
            .graph()
            .nodes()
            .filter_map(|n| match &n.kind {
                NodeKind::RemotePort(r)
                    if r.wwpn == Some(ARRAY_PORT_A)
                        && rig.agent.graph().host_of(n).map(|h| h.name().to_string())
                            == Some(format!("host{host}")) =>
                {
                    r.port_state.clone()
                }
                _ => None,
            })
            .next()
    };
    assert_eq!(rport_state(&rig).as_deref(), Some("Online"));
    // The array port leaves the fabric: the remote port turns Blocked, with no uevent.
    let spec = demo_spec()
        .targets
        .into_iter()
        .find(|t| t.wwpn == ARRAY_PORT_A)
        .unwrap();
    rig.sim.remove_target_port(ARRAY_PORT_A).unwrap();
    rig.settle(rig.at(1));
    assert_eq!(
        rport_state(&rig).as_deref(),
        Some("Online"),
        "no event told"
    );
    rig.agent.tick(rig.at(2));
    assert_eq!(rport_state(&rig).as_deref(), Some("Blocked"));
    // It returns: the tick sees it Online again and the agent scans its target.
    let scans_before = rig.scans().len();
    rig.sim.add_target_port(spec).unwrap();
    rig.settle(rig.at(3));
    rig.agent.tick(rig.at(4));
    rig.settle(rig.at(4));
    assert_eq!(rport_state(&rig).as_deref(), Some("Online"));
    let new_scans: Vec<(String, String)> = rig.scans()[scans_before..].to_vec();
    assert!(
        new_scans.contains(&(format!("host{host}"), "0 0 -".to_string())),
        "{new_scans:?}"
    );
}

/// Polling is for what waits on a change: nothing on a healthy host; a remote port
/// from the sweep that saw it Blocked until the poll that sees it Online again.
#[test]
fn only_what_waits_on_a_change_is_polled_and_only_while_it_waits() {
    let mut rig = Rig::new(demo_spec(), "");
    rig.agent.boot(rig.at(0));
    rig.settle(rig.at(0));
    assert!(!rig.agent.polling(), "a healthy host waits on nothing");
    let host = rig.sim.host_by_wwpn(HBA_A_WWPN).unwrap();
    let spec = demo_spec()
        .targets
        .into_iter()
        .find(|t| t.wwpn == ARRAY_PORT_A)
        .unwrap();
    rig.sim.remove_target_port(ARRAY_PORT_A).unwrap();
    rig.settle(rig.at(1));
    // A poll reads only what waits, and nothing did: the silent loss is unseen.
    rig.agent.poll(rig.at(2));
    assert!(!rig.agent.polling());
    // The sweep reads every port: from now on the Blocked one is polled.
    rig.agent.tick(rig.at(3));
    assert!(rig.agent.polling());
    let scans_before = rig.scans().len();
    rig.sim.add_target_port(spec).unwrap();
    rig.settle(rig.at(4));
    rig.agent.poll(rig.at(5));
    rig.settle(rig.at(5));
    let new_scans: Vec<(String, String)> = rig.scans()[scans_before..].to_vec();
    assert!(
        new_scans.contains(&(format!("host{host}"), "0 0 -".to_string())),
        "{new_scans:?}"
    );
    assert!(!rig.agent.polling(), "Online again: nothing waits");
}

/// A logged-in vHBA's login is polled only where nothing would announce its loss:
/// with no FC event source, or on a libfc parent (fcoe posts no link events for
/// a vport's lost login); on qla2xxx with events, not at all.
#[test]
fn a_logged_in_vhba_is_polled_only_where_no_link_event_would_announce_its_loss() {
    for (driver, events, polled) in [
        ("qla2xxx", false, true),
        ("qla2xxx", true, false),
        ("fcoe", true, true),
    ] {
        let mut spec = demo_spec();
        for hba in spec.hbas.iter_mut() {
            hba.driver = driver.to_string();
        }
        let mut rig = Rig::new(spec, &vhba_policy(""));
        if events {
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            rig.agent.attach_fc_events(rx);
            std::mem::forget(tx);
        }
        rig.agent.boot(rig.at(0));
        rig.settle(rig.at(0));
        rig.agent.poll(rig.at(1));
        rig.settle(rig.at(1));
        assert_eq!(rig.vhba_state("vm-a").0, "active", "{driver}");
        assert_eq!(rig.agent.polling(), polled, "{driver}, FC events {events}");
    }
}

/// The loop on a quiet, healthy host: the status file is replaced only by the
/// heartbeat (nothing polls, nothing changes); a remote port lost with no event is
/// found by the heartbeat's sweep, polled while Blocked, and its return scanned.
#[test]
fn an_idle_loop_writes_only_its_heartbeat_and_its_sweep_finds_a_silent_path_loss() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, agent, status_path, erx) =
        status_loop_agent(dir.path(), "[rescan]\ndebounce = \"50ms\"\n");
    let (ctx, crx) = tokio::sync::mpsc::channel(4);
    let host = sim.host_by_wwpn(HBA_A_WWPN).unwrap();
    let target = demo_spec()
        .targets
        .into_iter()
        .find(|t| t.wwpn == ARRAY_PORT_A)
        .unwrap();
    let sim2 = sim.clone();
    let heartbeat = Duration::from_millis(1000);
    loop_rt().block_on(async move {
        let looped = tokio::spawn(run_loop(
            agent,
            erx,
            crx,
            || Ok(policy("")),
            LoopTimings {
                tick: Duration::from_millis(50),
                heartbeat,
                stop_grace: Duration::from_millis(200),
                ..LoopTimings::default()
            },
        ));
        let read = || hbad::daemon::status::Status::read(&status_path).ok();
        until("READY", Duration::from_secs(10), || {
            read().is_some_and(|s| s.ready)
        })
        .await;
        // Idle for three heartbeats: a 50 ms tick would have replaced the file
        // sixty times; the heartbeat replaces it about three times.
        let inode = || {
            std::fs::metadata(&status_path)
                .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
                .unwrap_or(0)
        };
        let first = read().unwrap().updated;
        let (mut last, mut replaced) = (inode(), 0);
        let t = Instant::now();
        while t.elapsed() < heartbeat * 3 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let now = inode();
            if now != last {
                replaced += 1;
                last = now;
            }
        }
        assert!((1..=6).contains(&replaced), "replaced {replaced} times");
        assert_ne!(
            read().unwrap().updated,
            first,
            "the heartbeat moved `updated`"
        );

        // The array port leaves: its remote port turns Blocked with no event.
        sim2.remove_target_port(ARRAY_PORT_A).unwrap();
        // A heartbeat later, the sweep has seen it; it is polled from then on.
        tokio::time::sleep(heartbeat * 2).await;
        let scans = |sim: &Sim| {
            sim.writes()
                .iter()
                .filter(|w| {
                    w.path.ends_with("scan")
                        && w.path.to_string_lossy().contains(&format!("host{host}/"))
                        && w.value.trim() == "0 0 -"
                })
                .count()
        };
        let before = scans(&sim2);
        sim2.add_target_port(target).unwrap();
        until(
            "the returned port's target scan",
            Duration::from_secs(5),
            || scans(&sim2) > before,
        )
        .await;
        ctx.send(Control::Stop).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), looped)
            .await
            .expect("the loop stops")
            .unwrap();
    });
}

/// The textfile's value of one sample line (`name{labels}`), as text.
fn metric<'a>(text: &'a str, series: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
}

#[test]
fn the_metrics_textfile_changes_after_a_scan_and_only_then() {
    let mut rig = Rig::new(demo_spec(), &vhba_policy(""));
    let path = rig._dir.path().join("node-exporter/hbad.prom");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    rig.agent.set_metrics_path(Some(path.clone()));
    rig.agent.boot(rig.at(0));
    rig.settle(rig.at(0));
    rig.agent.write_status();
    let before = std::fs::read_to_string(&path).unwrap();
    let vhba = format!(
        "hbad_vhba_up{{name=\"vm-a\",wwpn=\"{VHBA_A}\",parent=\"host1\",fabric=\"{}\"}}",
        hbad::sim::demo::FABRIC_A_WWN
    );
    assert_eq!(metric(&before, &vhba), Some("1"), "{before}");
    let luns_before: u64 = metric(&before, "hbad_host_luns{host=\"host1\"}")
        .unwrap()
        .parse()
        .unwrap();
    let scans_before: u64 = metric(&before, "hbad_scans_total")
        .unwrap()
        .parse()
        .unwrap();
    // Nothing changed: the file is not rewritten.
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    std::thread::sleep(Duration::from_millis(20));
    rig.agent.write_status();
    assert_eq!(std::fs::metadata(&path).unwrap().modified().unwrap(), mtime);

    // The array maps LUN 2 to port A: its unit attention makes a targeted scan.
    rig.sim.map_lun(ARRAY_PORT_A, 2, HBA_A_WWPN).unwrap();
    // The next I/O to the target's LUN 0 reports it.
    rig.sim
        .io(Hctl {
            host: 1,
            channel: 0,
            target: 0,
            lun: 0,
        })
        .unwrap();
    rig.settle(rig.at(1));
    rig.agent.write_status();
    let after = std::fs::read_to_string(&path).unwrap();
    assert_ne!(before, after);
    let luns_after: u64 = metric(&after, "hbad_host_luns{host=\"host1\"}")
        .unwrap()
        .parse()
        .unwrap();
    let scans_after: u64 = metric(&after, "hbad_scans_total").unwrap().parse().unwrap();
    assert_eq!(luns_after, luns_before + 1, "{after}");
    assert!(scans_after > scans_before, "{after}");
    let count: u64 = metric(&after, "hbad_scan_duration_seconds_count")
        .unwrap()
        .parse()
        .unwrap();
    assert!(count >= 1, "{after}");
}

/// A storm of FC events (RSCNs, LIPs on a flapping fabric) never starves the
/// loop's timers: the heartbeat, and with it the watchdog ping it shares a
/// wake-up with, still comes while the events keep arriving.
#[test]
fn an_fc_event_storm_does_not_hold_back_the_heartbeat() {
    use hbad::uevent::fc_event::{FcEvent, FcEventCode, FcItem};
    let dir = tempfile::tempdir().unwrap();
    let (_sim, mut agent, status_path, erx) = status_loop_agent(dir.path(), "");
    let (ftx, frx) = tokio::sync::mpsc::channel(64);
    agent.attach_fc_events(frx);
    let storming = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let storm = {
        let storming = storming.clone();
        std::thread::spawn(move || {
            let mut n = 0;
            while storming.load(Ordering::SeqCst) {
                n += 1;
                let ev = FcEvent::new(1, FcEventCode::Rscn, n, 0);
                if ftx.blocking_send(FcItem::Event(ev)).is_err() {
                    break;
                }
            }
        })
    };
    let (ctx, crx) = tokio::sync::mpsc::channel(4);
    let heartbeat = Duration::from_millis(300);
    loop_rt().block_on(async move {
        let looped = tokio::spawn(run_loop(
            agent,
            erx,
            crx,
            || Ok(policy("")),
            LoopTimings {
                tick: Duration::from_millis(50),
                heartbeat,
                stop_grace: Duration::from_millis(200),
                ..LoopTimings::default()
            },
        ));
        let read = || hbad::daemon::status::Status::read(&status_path).ok();
        until("READY", Duration::from_secs(10), || {
            read().is_some_and(|s| s.ready)
        })
        .await;
        let first = read().unwrap().updated;
        until(
            "a heartbeat during the storm",
            Duration::from_secs(10),
            || read().is_some_and(|s| s.updated != first),
        )
        .await;
        ctx.send(Control::Stop).await.unwrap();
        storming.store(false, Ordering::SeqCst);
        tokio::time::timeout(Duration::from_secs(5), looped)
            .await
            .expect("the stop is bounded")
            .unwrap();
    });
    storm.join().unwrap();
}

#[test]
fn an_fc_linkup_re_reads_its_host_at_once_without_waiting_for_a_poll() {
    use hbad::uevent::fc_event::{FcEvent, FcEventCode, FcItem};
    let mut rig = Rig::new(demo_spec(), "");
    rig.agent.boot(rig.at(0));
    rig.settle(rig.at(0));
    let port_state = |agent: &Agent| match &agent.graph().host(1).unwrap().kind {
        NodeKind::Host(h) => h.fc.as_ref().unwrap().port_state.clone(),
        _ => None,
    };
    let fc = rig.sim.subscribe_fc_events();
    rig.sim.set_link(1, false).unwrap();
    rig.settle(rig.at(1));
    // No uevent says so, and no tick has run: the agent still believes Online.
    assert_eq!(port_state(&rig.agent).as_deref(), Some("Online"));
    // A temperature notice for the host changes nothing hbad reads.
    rig.agent.fc_event(
        FcItem::Event(FcEvent::new(1, FcEventCode::CritTemp, 99, 0)),
        rig.at(1),
    );
    assert_eq!(port_state(&rig.agent).as_deref(), Some("Online"));
    let down = fc.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(down.code, FcEventCode::LinkDown);
    rig.agent.fc_event(FcItem::Event(down), rig.at(1));
    assert_eq!(port_state(&rig.agent).as_deref(), Some("Linkdown"));

    rig.sim.set_link(1, true).unwrap();
    let up = fc.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!((up.host_no, up.code), (1, FcEventCode::LinkUp));
    rig.agent.fc_event(FcItem::Event(up), rig.at(2));
    assert_eq!(port_state(&rig.agent).as_deref(), Some("Online"));
    // Forged items are counted in the status's metrics, not acted on.
    rig.agent.fc_event(
        FcItem::Rejected(hbad::uevent::fc_event::FcRejection::NotKernel(7)),
        rig.at(2),
    );
    assert_eq!(port_state(&rig.agent).as_deref(), Some("Online"));
}

/// The simulated kernel, seen from the writer seam: counts writes made on the
/// event loop's thread (in release builds too, where the seam's own assertion is
/// compiled out) and can hold `vport_create` inside its write, as a driver
/// waiting on its firmware does.
#[derive(Debug)]
struct Witness {
    sim: Sim,
    on_loop: AtomicUsize,
    hold_create: Duration,
    /// vport_create writes that have begun (before the hold).
    creates_begun: AtomicUsize,
}

impl Witness {
    fn new(sim: &Sim, hold_create: Duration) -> Arc<Witness> {
        Arc::new(Witness {
            sim: sim.clone(),
            on_loop: AtomicUsize::new(0),
            hold_create,
            creates_begun: AtomicUsize::new(0),
        })
    }
}

impl AttrWriter for Witness {
    fn store(&self, path: &Path, value: &str) -> std::io::Result<()> {
        if hbad::sysfs::writes::on_loop_thread() {
            self.on_loop.fetch_add(1, Ordering::SeqCst);
        }
        if path.ends_with("vport_create") {
            self.creates_begun.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(self.hold_create);
        }
        self.sim.write_attr(path, value)
    }
}

fn loop_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn count_writes(sim: &Sim, attr: &str) -> usize {
    sim.writes()
        .iter()
        .filter(|w| w.path.ends_with(attr))
        .count()
}

/// An agent on the demo host for the loop, writing its status file, with the
/// simulator's kernel events forwarded to the returned receiver.
fn status_loop_agent(
    dir: &Path,
    policy_text: &str,
) -> (
    Sim,
    Agent,
    std::path::PathBuf,
    tokio::sync::mpsc::Receiver<SourceItem>,
) {
    let sim = Sim::new(dir, &demo_spec()).unwrap();
    let events = sim.subscribe(Flavour::Kernel);
    let status_path = dir.join("status.json");
    let agent = Agent::new(
        AgentConfig {
            sysfs: sim.sysfs(),
            status_path: Some(status_path.clone()),
        },
        Arc::new(sim.clone()),
        policy(policy_text),
        Instant::now(),
    );
    let (etx, erx) = tokio::sync::mpsc::channel(1024);
    forward_events(events, etx).unwrap();
    (sim, agent, status_path, erx)
}

async fn until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let t = Instant::now();
    while !done() {
        assert!(t.elapsed() < limit, "{what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The loop's thread writes nothing to the kernel, whatever the kernel does: a
/// refused vport_create and its retry, a device re-read, a hung scan, a reload and
/// a stop while that scan hangs. In debug builds the writer seam asserts it (a
/// write from the loop's thread would panic the loop); the witness counts it in
/// any build.
#[test]
fn no_kernel_write_runs_on_the_loop_thread_under_faults() {
    let dir = tempfile::tempdir().unwrap();
    let spec = demo_spec()
        .hba(HbaSpec::scsi_debug(1, 2))
        .hba(HbaSpec::scsi_debug(1, 2));
    let sim = Sim::new(dir.path(), &spec).unwrap();
    let events = sim.subscribe(Flavour::Kernel);
    let witness = Witness::new(&sim, Duration::ZERO);
    let parent = sim.host_by_wwpn(HBA_A_WWPN).unwrap();
    sim.fail_next_vport_create(parent, libc::ENOSPC);
    let agent = Agent::new(
        AgentConfig {
            sysfs: sim.sysfs(),
            status_path: Some(dir.path().join("status.json")),
        },
        witness.clone(),
        policy(&state_in(
            dir.path(),
            &vhba_policy("[rescan]\ndebounce = \"50ms\"\nscan_timeout = \"200ms\"\n"),
        )),
        Instant::now(),
    );
    let (etx, erx) = tokio::sync::mpsc::channel(1024);
    let (ctx, crx) = tokio::sync::mpsc::channel(4);
    forward_events(events, etx.clone()).unwrap();
    let local: Vec<(Hctl, String)> = sim
        .luns()
        .into_iter()
        .filter(|h| sim.lun_devpath(*h).is_some_and(|d| d.contains("pseudo")))
        .map(|h| (h, sim.lun_devpath(h).unwrap()))
        .collect();
    let stuck = local[0].0.host;
    let gate = sim.stall_scans(stuck);
    let sim2 = sim.clone();
    loop_rt().block_on(async move {
        let looped = tokio::spawn(run_loop(
            agent,
            erx,
            crx,
            || Ok(policy(&vhba_policy(""))),
            LoopTimings {
                tick: Duration::from_millis(50),
                stop_grace: Duration::from_millis(300),
                ..LoopTimings::default()
            },
        ));
        // Refused once (ENOSPC), retried after its 2 s backoff, then made.
        until("the vHBA after its retry", Duration::from_secs(15), || {
            sim2.host_by_wwpn(VHBA_A).is_some()
        })
        .await;
        let ua = |devpath: &str, what: &str| {
            SourceItem::Event(
                Uevent::new(Action::Change, devpath, "scsi")
                    .with_devtype("scsi_device")
                    .with_prop("SDEV_UA", what),
            )
        };
        // A scan that hangs, and a device re-read on the other scsi_debug host.
        let other = local.iter().find(|(h, _)| h.host != stuck).unwrap();
        etx.send(ua(&local[0].1, "REPORTED_LUNS_DATA_HAS_CHANGED"))
            .await
            .unwrap();
        etx.send(ua(&other.1, "CAPACITY_DATA_HAS_CHANGED"))
            .await
            .unwrap();
        until("the device re-read", Duration::from_secs(10), || {
            count_writes(&sim2, "rescan") == 1
        })
        .await;
        ctx.send(Control::Reload).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let t = Instant::now();
        ctx.send(Control::Stop).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), looped)
            .await
            .expect("the loop stops within its grace")
            .expect("the loop did not panic (no write from its thread)");
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    });
    assert_eq!(count_writes(&sim, "vport_create"), 2, "refused, then made");
    assert!(
        gate.wait_for_blocked(1, Duration::from_secs(1)),
        "the scan hung"
    );
    assert_eq!(witness.on_loop.load(Ordering::SeqCst), 0);
    gate.release();
}

/// Runs the agent on the demo host with `policy_text`, vport_create held by the
/// kernel for `hold`; sends Stop once the first create is in the kernel and
/// returns how long the stop took.
fn stop_during_a_held_create(
    policy_text: &str,
    hold: Duration,
    stop_grace: Duration,
) -> (tempfile::TempDir, Sim, Arc<Witness>, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::new(dir.path(), &demo_spec()).unwrap();
    let events = sim.subscribe(Flavour::Kernel);
    let witness = Witness::new(&sim, hold);
    let agent = Agent::new(
        AgentConfig {
            sysfs: sim.sysfs(),
            status_path: Some(dir.path().join("status.json")),
        },
        witness.clone(),
        policy(&state_in(dir.path(), policy_text)),
        Instant::now(),
    );
    let (etx, erx) = tokio::sync::mpsc::channel(1024);
    let (ctx, crx) = tokio::sync::mpsc::channel(4);
    forward_events(events, etx).unwrap();
    let w = witness.clone();
    let took = loop_rt().block_on(async move {
        let looped = tokio::spawn(run_loop(
            agent,
            erx,
            crx,
            || Ok(policy("")),
            LoopTimings {
                tick: Duration::from_millis(50),
                stop_grace,
                ..LoopTimings::default()
            },
        ));
        until(
            "a vport_create in the kernel",
            Duration::from_secs(10),
            || w.creates_begun.load(Ordering::SeqCst) == 1,
        )
        .await;
        let t = Instant::now();
        ctx.send(Control::Stop).await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), looped)
            .await
            .expect("the stop is bounded")
            .unwrap();
        t.elapsed()
    });
    (dir, sim, witness, took)
}

/// SIGTERM while the kernel holds a vport_create: the stop waits for it (it is
/// not known to hang) and it ends marked as hbad's; the second declared vHBA,
/// queued behind it on the same parent, is never written.
#[test]
fn a_stop_during_a_held_vport_create_waits_for_it_and_writes_no_other() {
    let second = vhba_policy("")
        .replace("vm-a", "vm-b")
        .replace(&VHBA_A.to_string(), "0x5001a4a000000a02");
    let (_dir, sim, witness, took) = stop_during_a_held_create(
        &format!("{}{second}", vhba_policy("")),
        Duration::from_millis(800),
        Duration::from_secs(5),
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    let host = sim.host_by_wwpn(VHBA_A).expect("the held create finished");
    let vport = hbad::sysfs::parent_devpath(&sim.host_devpath(host).unwrap())
        .unwrap()
        .to_string();
    let mark = std::fs::read_to_string(sim.sysfs().vport_symbolic_name_path(&vport)).unwrap();
    assert_eq!(mark, "hbad:vm-a\n", "no half-made vHBA left unmarked");
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(
        witness.creates_begun.load(Ordering::SeqCst),
        1,
        "no vport_create after the stop"
    );
    assert_eq!(witness.on_loop.load(Ordering::SeqCst), 0);
}

/// A create the kernel holds past the stop's grace is left behind, bounded.
#[test]
fn a_stop_leaves_a_write_held_past_its_grace() {
    let (_dir, _sim, _witness, took) = stop_during_a_held_create(
        &vhba_policy(""),
        Duration::from_secs(3),
        Duration::from_millis(300),
    );
    assert!(took < Duration::from_secs(2), "{took:?}");
}

fn lun(host: u32, lun: u64) -> Hctl {
    Hctl {
        host,
        channel: 0,
        target: 0,
        lun,
    }
}

/// The `device/delete` writes the agent made, by device.
fn deletes(sim: &Sim) -> Vec<String> {
    sim.writes()
        .into_iter()
        .filter(|w| w.path.ends_with("delete") && w.errno.is_none())
        .filter_map(|w| Some(w.path.parent()?.file_name()?.to_string_lossy().into_owned()))
        .collect()
}

/// A rig on the demo host whose port A sees LUNs 1 and 2 too, with its metrics file.
fn rig_with_two_vm_luns(policy: &str) -> (Rig, std::path::PathBuf) {
    let mut rig = Rig::new(demo_spec(), policy);
    let path = rig._dir.path().join("node-exporter/hbad.prom");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    rig.agent.set_metrics_path(Some(path.clone()));
    rig.agent.boot(rig.at(0));
    rig.settle(rig.at(0));
    for l in [1, 2] {
        rig.sim.map_lun(ARRAY_PORT_A, l, HBA_A_WWPN).unwrap();
    }
    rig.sim.io(lun(1, 0)).unwrap();
    rig.settle(rig.at(1));
    assert!(rig.sim.luns().contains(&lun(1, 2)), "{:?}", rig.sim.luns());
    (rig, path)
}

#[test]
fn an_unmapped_lun_is_removed_only_when_nothing_holds_its_disk() {
    let (mut rig, metrics) = rig_with_two_vm_luns("[rescan]\nremove_gone = true\n");
    // A VM has LUN 2's disk open; then the array unmaps both.
    rig.sim
        .open_disk(lun(1, 2), 4242, "qemu-system-x86")
        .unwrap();
    for l in [1, 2] {
        rig.sim.unmap_lun(ARRAY_PORT_A, l, HBA_A_WWPN).unwrap();
    }
    rig.sim.io(lun(1, 0)).unwrap();
    rig.settle(rig.at(2));
    let luns = rig.sim.luns();
    assert!(
        !luns.contains(&lun(1, 1)),
        "free and gone: deleted {luns:?}"
    );
    assert!(luns.contains(&lun(1, 2)), "held by the VM: kept {luns:?}");
    assert_eq!(deletes(&rig.sim), vec!["1:0:0:1".to_string()]);
    // The graph followed the kernel's removal events.
    assert!(rig.agent.graph().lun(lun(1, 1)).is_none());
    rig.agent.write_status();
    let text = std::fs::read_to_string(&metrics).unwrap();
    assert_eq!(
        metric(&text, "hbad_luns_gone_total{fate=\"removed\"}"),
        Some("1"),
        "{text}"
    );
    assert_eq!(
        metric(&text, "hbad_luns_gone_total{fate=\"held\"}"),
        Some("1")
    );
    assert_eq!(metric(&text, "hbad_luns_gone_held"), Some("1"));
    // The target changes again (LUN 1 mapped back) while the VM still holds LUN 2:
    // found gone and held as before, it is not named a second time.
    rig.sim.map_lun(ARRAY_PORT_A, 1, HBA_A_WWPN).unwrap();
    rig.sim.io(lun(1, 0)).unwrap();
    rig.settle(rig.at(3));
    assert!(rig.sim.luns().contains(&lun(1, 1)), "mapped again: back");
    rig.agent.write_status();
    let text = std::fs::read_to_string(&metrics).unwrap();
    assert_eq!(
        metric(&text, "hbad_luns_gone_total{fate=\"held\"}"),
        Some("1"),
        "{text}"
    );
    assert_eq!(metric(&text, "hbad_luns_gone_held"), Some("1"));
    // The VM ends; the next change of the target's LUNs removes the disk it held.
    rig.sim.end_process(4242).unwrap();
    rig.sim.unmap_lun(ARRAY_PORT_A, 1, HBA_A_WWPN).unwrap();
    rig.sim.io(lun(1, 0)).unwrap();
    rig.settle(rig.at(4));
    let luns = rig.sim.luns();
    assert!(!luns.contains(&lun(1, 2)), "{luns:?}");
    assert_eq!(
        deletes(&rig.sim),
        vec![
            "1:0:0:1".to_string(),
            "1:0:0:1".to_string(),
            "1:0:0:2".to_string()
        ]
    );
    rig.agent.write_status();
    let text = std::fs::read_to_string(&metrics).unwrap();
    assert_eq!(metric(&text, "hbad_luns_gone_held"), Some("0"));
    // The other port's path to the datastore was never asked about or touched.
    assert!(rig.sim.luns().contains(&lun(2, 0)));
}

#[test]
fn gone_luns_are_only_named_while_remove_gone_is_off() {
    let (mut rig, metrics) = rig_with_two_vm_luns("");
    rig.sim.unmap_lun(ARRAY_PORT_A, 2, HBA_A_WWPN).unwrap();
    rig.sim.io(lun(1, 1)).unwrap();
    rig.settle(rig.at(2));
    assert!(rig.sim.luns().contains(&lun(1, 2)));
    assert!(deletes(&rig.sim).is_empty());
    rig.agent.write_status();
    let text = std::fs::read_to_string(&metrics).unwrap();
    assert_eq!(
        metric(&text, "hbad_luns_gone_total{fate=\"kept\"}"),
        Some("1"),
        "{text}"
    );
}

/// Worker threads start as `std::thread` does, or fail as clone() does under the
/// unit's `TasksMax=` (EAGAIN).
fn threads(rig: &Rig, start: bool) {
    if start {
        rig.agent.scanner().start_threads_with(|name, run| {
            std::thread::Builder::new().name(name).spawn(run).map(drop)
        });
    } else {
        rig.agent
            .scanner()
            .start_threads_with(|_, _| Err(std::io::Error::from_raw_os_error(libc::EAGAIN)));
    }
}

/// No thread for a host's worker (the unit's TasksMax reached): its writes fail
/// at once instead of waiting for ever, and are tried again after a backoff.
#[test]
fn writes_whose_worker_thread_cannot_start_fail_and_are_retried_with_backoff() {
    let mut rig = Rig::new(demo_spec(), &vhba_policy(""));
    threads(&rig, false);
    rig.agent.boot(rig.at(0));
    rig.settle(rig.at(0));
    let (state, reason) = rig.vhba_state("vm-a");
    assert_eq!(state, "failed");
    assert!(
        reason.unwrap().contains("cannot start a worker thread"),
        "the create failed, and says why"
    );
    assert!(rig.agent.boot_settled(), "start-up waits for nothing");
    assert_eq!(rig.vport_writes("vport_create"), 0);
    // A unit attention asks for a scan: it fails too, and is asked again later.
    let parent = rig.sim.host_by_wwpn(HBA_A_WWPN).unwrap();
    let lun = *rig.sim.luns().iter().find(|l| l.host == parent).unwrap();
    let devpath = rig.sim.lun_devpath(lun).unwrap();
    rig.agent.handle(storm(&[(lun, devpath)], 1), rig.at(1));
    rig.settle(rig.at(1));
    let status = rig.agent.status();
    let host = format!("host{}", lun.host);
    let last = status
        .hosts
        .iter()
        .find(|h| h.host == host)
        .and_then(|h| h.last_scan.clone())
        .unwrap_or_else(|| panic!("the failed scan is in the status: {lun} {:?}", status.hosts));
    assert!(
        last.result.contains("cannot start a worker thread"),
        "{last:?}"
    );
    assert!(rig.scans().is_empty());
    let due = rig.agent.next_due(rig.at(1)).expect("a retry is due later");
    assert!(due > rig.at(1) && due <= rig.at(3), "backoff of 2 s");
    // Threads can start again: the retries run when due, and only then.
    threads(&rig, true);
    rig.agent.poll(rig.at(1));
    rig.settle(rig.at(1));
    assert!(rig.scans().is_empty());
    assert_eq!(rig.vport_writes("vport_create"), 0);
    rig.agent.poll(rig.at(3));
    rig.settle(rig.at(3));
    assert!(rig.vhba_host(VHBA_A).is_some(), "created on the retry");
    assert!(
        rig.scans()
            .iter()
            .any(|(h, s)| *h == host && s == &format!("{} {} -", lun.channel, lun.target)),
        "{:?}",
        rig.scans()
    );
    assert_eq!(rig.agent.next_due(rig.at(3)), None);
}

/// `udevadm trigger --action=remove` on a disk, or any uevent written to a
/// device's `uevent` file (SYNTH_UUID), says nothing about the device: while its
/// sysfs directory is there the graph keeps it. A genuine remove still removes.
#[test]
fn a_synthetic_remove_of_a_device_still_in_sysfs_keeps_it_in_the_graph() {
    let mut rig = Rig::new(demo_spec(), "");
    rig.agent.boot(rig.at(0));
    rig.settle(rig.at(0));
    let parent = rig.sim.host_by_wwpn(HBA_A_WWPN).unwrap();
    let lun = *rig.sim.luns().iter().find(|l| l.host == parent).unwrap();
    let lun_devpath = rig.sim.lun_devpath(lun).unwrap();
    let disk = {
        let g = rig.agent.graph();
        g.disk_of(g.lun(lun).unwrap()).unwrap().devpath.to_string()
    };
    // The simulated kernel sends `remove` with SYNTH_UUID=0, as the real one does.
    let uevent = rig.sim.sysfs().path(&disk).join("uevent");
    rig.sim.write_attr(&uevent, "remove").unwrap();
    rig.settle(rig.at(1));
    assert!(rig.agent.graph().node(&disk).is_some(), "the disk stays");
    // The same for a LUN, with a UUID given.
    rig.agent.handle(
        vec![SourceItem::Event(
            Uevent::new(Action::Remove, &lun_devpath, "scsi")
                .with_devtype("scsi_device")
                .with_prop("SYNTH_UUID", "fb9a6cc2-5f8e-4d61-9a3a-1f0d2b6c7e10"),
        )],
        rig.at(1),
    );
    assert!(rig.agent.graph().lun(lun).is_some(), "the LUN stays");
    assert!(rig.agent.graph().node(&disk).is_some(), "and its disk");
    // A genuine remove: the LUN deleted through sysfs goes, with its disk.
    let delete = rig.sim.sysfs().path(&lun_devpath).join("delete");
    rig.sim.write_attr(&delete, "1").unwrap();
    rig.settle(rig.at(2));
    assert!(rig.agent.graph().lun(lun).is_none());
    assert!(rig.agent.graph().node(&disk).is_none());
}

/// A create the kernel finished after the agent stopped (its writer process was
/// left behind, past the stop's grace) leaves a vport with the declared WWPN that
/// nothing marked: the next start adopts it, marked and recorded, with no
/// second vport_create; here it lands after the start's cold plug, so the
/// start's own create finds it there (AlreadyDone) and marks nothing itself.
#[test]
fn a_vport_made_after_the_agent_stopped_is_adopted_at_the_next_start() {
    let mut rig = Rig::new(demo_spec(), &vhba_policy(""));
    by_hand(&rig, "vport_create");
    rig.agent.boot(rig.at(0));
    rig.settle(rig.at(0));
    let status = rig.agent.status();
    let v = &status.vhbas[0];
    assert_eq!(v.owner.as_deref(), Some("symbolic_name"), "{v:?}");
    let state = std::fs::read_to_string(rig._dir.path().join("state/owned.json")).unwrap();
    assert!(state.contains("vm-a"), "recorded: {state}");
    assert_eq!(
        rig.vport_writes("vport_create"),
        1,
        "the hand-made write only"
    );
}

/// The simulated kernel with `symbolic_name` writes held until released: a
/// create's mark comes after its vport's events, as on a slow driver.
#[derive(Debug)]
struct HeldMark {
    sim: Sim,
    held: std::sync::Mutex<bool>,
    release: std::sync::Condvar,
    begun: AtomicUsize,
}

impl HeldMark {
    fn release(&self) {
        *self.held.lock().unwrap() = false;
        self.release.notify_all();
    }
}

impl AttrWriter for HeldMark {
    fn store(&self, path: &Path, value: &str) -> std::io::Result<()> {
        if path.ends_with("symbolic_name") {
            self.begun.fetch_add(1, Ordering::SeqCst);
            let mut held = self.held.lock().unwrap();
            while *held {
                held = self.release.wait(held).unwrap();
            }
        }
        self.sim.write_attr(path, value)
    }
}

/// A reload with prune = true while the create of a vHBA it no longer declares
/// is in flight: planned then, the vport has no mark yet and is no one's; once
/// the create reports it made and marked it, it is planned again and pruned,
/// not left until the next sweep.
#[test]
fn a_vhba_whose_create_ends_after_a_pruning_reload_is_pruned_when_it_reports() {
    let mut held = None;
    let mut rig = Rig::build(
        demo_spec(),
        |_| vhba_policy(""),
        |sim| {
            let h = Arc::new(HeldMark {
                sim: sim.clone(),
                held: std::sync::Mutex::new(true),
                release: std::sync::Condvar::new(),
                begun: AtomicUsize::new(0),
            });
            held = Some(h.clone());
            h
        },
    );
    let held = held.unwrap();
    rig.agent.boot(rig.at(0));
    let deadline = Instant::now() + Duration::from_secs(20);
    while held.begun.load(Ordering::SeqCst) == 0 {
        assert!(
            Instant::now() < deadline,
            "the create never got to its mark"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    // The vport's events reach the graph before its mark.
    let items: Vec<SourceItem> = rig.events.try_iter().map(SourceItem::Event).collect();
    assert!(!items.is_empty());
    rig.agent.handle(items, rig.at(1));
    let dir = rig._dir.path().to_path_buf();
    let prune = state_in(&dir, "[ownership]\nprune = true\n");
    assert!(rig.agent.reload(Ok(policy(&prune)), rig.at(1)));
    assert!(rig.vhba_host(VHBA_A).is_some());
    held.release();
    rig.settle(rig.at(1));
    assert_eq!(rig.vport_writes("vport_delete"), 1);
    assert!(
        rig.vhba_host(VHBA_A).is_none(),
        "pruned once its create reported"
    );
}

/// The state file of an agent killed inside vm-a's vport_create after the
/// kernel made the vport, and where it is.
fn stopped_create(rig: &Rig) -> std::path::PathBuf {
    let path = state_file(rig, STOPPED_CREATE);
    by_hand(rig, "vport_create");
    path
}

/// The intent of vm-a's create by an agent of another boot.
const STOPPED_CREATE: &str = r#"{"version":1,"vhbas":{},"creating":{"0x5001a4a000000a01":{
    "name":"vm-a","wwnn":"0x5001a4a000000a00","parent_host":1,"since":1765123456,
    "by":{"boot":"00000000-0000-0000-0000-000000000000","pid":1,"start":0}}}}"#;

/// Waits (a bounded time) until `done`, which says what it waits for.
fn await_until(mut done: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while let Err(what) = done() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// An agent killed inside a vport_create leaves its intent in the state file; the
/// next agent settles it on its loop (the vport is there: hbad's) in its records
/// only, and a worker writes the file: the synced write never runs on the loop's
/// thread (a debug assertion, as for kernel writes).
#[test]
fn a_stopped_create_is_settled_on_the_loop_and_written_by_a_worker() {
    let mut rig = Rig::new(demo_spec(), &vhba_policy(""));
    let path = stopped_create(&rig);
    hbad::sysfs::writes::set_loop_thread(true);
    rig.agent.boot(rig.at(0));
    rig.settle(rig.at(0));
    hbad::sysfs::writes::set_loop_thread(false);
    let status = rig.agent.status();
    assert!(
        status.vhbas[0].owner.is_some(),
        "adopted: {:?}",
        status.vhbas[0]
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let state = std::fs::read_to_string(&path).unwrap();
        if !state.contains("creating") && state.contains("vm-a") {
            break;
        }
        assert!(Instant::now() < deadline, "never written: {state}");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        rig.vport_writes("vport_create"),
        1,
        "the hand-made write only"
    );
}

/// The log records of the thread that made it the default (the agent's loop
/// here), as the lines a formatter writes.
#[derive(Clone, Default)]
struct Logged(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Logged {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logged {
    type Writer = Logged;

    fn make_writer(&'a self) -> Logged {
        self.clone()
    }
}

impl Logged {
    /// Records the calling thread logs from now on, debug ones too, until the
    /// guard goes.
    fn on_this_thread() -> (Logged, tracing::subscriber::DefaultGuard) {
        let logged = Logged::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(logged.clone())
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .finish();
        (logged, tracing::subscriber::set_default(subscriber))
    }

    /// How many lines hold `text`.
    fn count(&self, text: &str) -> usize {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .filter(|l| l.contains(text))
            .count()
    }
}

/// Polls the agent at `secs` until its loop logged `text` `n` times: what a
/// `state-file` thread did reaches the loop when it looks.
fn await_logged(rig: &mut Rig, logged: &Logged, text: &str, n: usize, secs: u64) {
    let now = rig.at(secs);
    await_until(|| {
        if logged.count(text) >= n {
            return Ok(());
        }
        rig.agent.poll(now);
        Err(format!(
            "never logged `{text}` {n} times:\n{}",
            String::from_utf8_lossy(&logged.0.lock().unwrap())
        ))
    });
}

/// A state file hbad cannot write (a read-only or full /var; here its lock file
/// is a directory, which root cannot open for writing either), with a stopped
/// create's intent that every read settles in the loop's records only: the
/// agent tries to write it once, says why once, and tries again only after its
/// backoff (or at once when someone else changed the file), not at every read.
#[test]
fn a_state_file_that_cannot_be_written_is_tried_again_after_a_backoff_not_at_every_read() {
    let mut rig = Rig::new(demo_spec(), &vhba_policy(""));
    let path = stopped_create(&rig);
    let lock = path.with_file_name("owned.json.lock");
    std::fs::create_dir(&lock).unwrap();
    let (logged, _guard) = Logged::on_this_thread();
    let started = "written on the state-file thread";
    let warned = "what the agent settled or rebuilt is in its records only";

    rig.agent.boot(rig.at(0));
    await_logged(&mut rig, &logged, warned, 1, 0);
    assert!(logged.count("Is a directory") >= 1, "the warning says why");
    assert!(logged.count("written again in 1m at most") == 1);
    // Reads within the backoff: no write tried, nothing said again.
    for s in 1..=59 {
        rig.agent.boot(rig.at(s));
        rig.settle(rig.at(s));
    }
    assert_eq!(logged.count(started), 1);
    assert_eq!(logged.count(warned), 1);
    // Adopted all the same, from the records the loop settled.
    assert!(rig.agent.status().vhbas[0].owner.is_some());
    // Past it: tried again, failing as before: said no louder than debug, and
    // the next try doubles away.
    rig.agent.boot(rig.at(61));
    assert_eq!(logged.count(started), 2);
    await_logged(&mut rig, &logged, "still failing; tried again in 2m", 1, 61);
    assert_eq!(logged.count(warned), 1);
    rig.agent.boot(rig.at(62));
    assert_eq!(logged.count(started), 2);
    // Someone else writes the file (here: the same, anew, where it can be
    // written now): tried again at once, and written.
    std::fs::remove_dir(&lock).unwrap();
    let fresh = path.with_file_name("owned.json.new");
    std::fs::write(&fresh, STOPPED_CREATE).unwrap();
    std::fs::rename(&fresh, &path).unwrap();
    rig.agent.boot(rig.at(63));
    assert_eq!(logged.count(started), 3);
    await_logged(&mut rig, &logged, "written (it had failed", 1, 63);
    let state = std::fs::read_to_string(&path).unwrap();
    assert!(
        !state.contains("creating") && state.contains("vm-a"),
        "{state}"
    );
}

/// What the state file's code warns of on the loop goes to the agent's log (a
/// subscriber in force), never straight to stderr: here a file others could
/// have written, whose records are not used.
#[test]
fn a_state_file_warning_goes_to_the_agents_log() {
    use std::os::unix::fs::PermissionsExt;
    let mut rig = Rig::new(demo_spec(), &vhba_policy(""));
    let path = state_file(&rig, r#"{"version":1,"vhbas":{}}"#);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let (logged, _guard) = Logged::on_this_thread();
    rig.agent.boot(rig.at(0));
    assert_eq!(
        logged.count("its records are not used"),
        1,
        "{}",
        String::from_utf8_lossy(&logged.0.lock().unwrap())
    );
}

/// A corrupt state file the `state-file` thread cannot rebuild (here its lock
/// file is a directory): once that failed, the plan waits no longer and is made
/// without records, the failure said once however many reads follow.
#[test]
fn a_corrupt_state_file_that_cannot_be_rebuilt_is_planned_without_records_and_said_once() {
    let mut rig = Rig::new(demo_spec(), &vhba_policy(""));
    let path = state_file(&rig, "{not json");
    std::fs::create_dir(path.with_file_name("owned.json.lock")).unwrap();
    let (logged, _guard) = Logged::on_this_thread();
    rig.agent.boot(rig.at(0));
    let retry = deferred(&rig, "planned before the rebuild was tried");
    await_logged(&mut rig, &logged, "Is a directory", 1, 0);
    rig.agent.poll(retry);
    rig.settle(retry);
    // Planned: its create was tried (and rolled back, for its mark cannot be
    // recorded in a file that cannot be written).
    assert_eq!(
        rig.vport_writes("vport_create"),
        1,
        "planned without records"
    );
    let said = "not moved aside and rebuilt";
    for s in 1..=5 {
        rig.agent.boot(rig.at(s));
        rig.settle(rig.at(s));
    }
    assert_eq!(logged.count(said), 1);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "{not json");
}
