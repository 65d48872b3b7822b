//! The agent's state and decisions, apart from the event loop that drives it.
//!
//! [`Agent`] owns the graph, the policy in force and the scanner. The loop in
//! [`super::run`] hands it batches of source items, ticks, reloads and scan reports;
//! the agent applies events to the graph, asks the planner what to do, and does it.
//! Time comes in as an argument, so backoffs, confirmations and the boot deadline
//! are tested without waiting.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::exec::errors::{explain, Op};
use crate::exec::vport::{DeletePolicy, SysfsPoll, Vports};
use crate::exec::{ScanOutcome, ScanReport, Scanner};
use crate::graph::{Change, Graph, Node, NodeKind};
use crate::journal::MessageId;
use crate::ownership::{OwnedState, OwnerMark};
use crate::plan::{plan, Action, HostRef, Recorded, Step};
use crate::policy::{Policy, PolicyErrors};
use crate::sysfs::writes::{vport_text, AttrWriter};
use crate::sysfs::{devpath_name, Sysfs, VportControlDir};
use crate::uevent::{Rejection, SourceItem};
use crate::wwn::Wwn;

use super::status::{rfc3339, Counters, HostStatus, ScanStatus, Status, VhbaStatus};

/// How long a created vport has to show up as a host before it is rolled back.
pub const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);
/// Retry delays after the kernel refuses a vHBA: doubling, capped.
const BACKOFF_FIRST: Duration = Duration::from_secs(2);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// How long a delete may take to show in sysfs. The kernel removes the vport inside
/// the parent's vport_delete write (store_fc_host_vport_delete runs
/// fc_vport_terminate), so the first read normally finds it gone; the bound keeps
/// a driver that finishes later from holding the loop for long.
const DELETE_TIMEOUT: Duration = Duration::from_secs(2);
const DELETE_POLL: Duration = Duration::from_millis(20);

/// What the agent knows of one policy vHBA beyond the graph.
#[derive(Clone, Debug, Default)]
struct VhbaRuntime {
    /// Seen present at least once while this agent ran: a later create is a re-create.
    seen: bool,
    /// A create was written; waiting for the host to appear.
    pending: Option<PendingCreate>,
    failures: u32,
    retry_at: Option<Instant>,
    last_error: Option<String>,
    wait: Option<String>,
}

#[derive(Clone, Debug)]
struct PendingCreate {
    deadline: Instant,
    parent: HostRef,
    control_dir: VportControlDir,
    wwpn: Wwn,
    wwnn: Wwn,
    recreate: bool,
}

/// Where the agent reads and writes.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    pub sysfs: Sysfs,
    pub status_path: Option<PathBuf>,
}

#[derive(Debug)]
pub struct Agent {
    sysfs: Sysfs,
    writer: Arc<dyn AttrWriter>,
    policy: Policy,
    graph: Graph,
    scanner: Scanner,
    counters: Counters,
    vhbas: BTreeMap<String, VhbaRuntime>,
    hung_reported: BTreeSet<String>,
    last_scans: BTreeMap<String, ScanStatus>,
    started: SystemTime,
    status_path: Option<PathBuf>,
    next_periodic: Option<Instant>,
    ready: bool,
    /// What the ownership state file held at the last reconcile.
    recorded: Recorded,
    /// The last error reading the state file, logged once until it changes.
    state_error: Option<String>,
}

impl Agent {
    /// Cold plug: reads the graph from sysfs. Open the event sources before calling
    /// this, so that nothing happening during the read is missed.
    pub fn new(
        config: AgentConfig,
        writer: Arc<dyn AttrWriter>,
        policy: Policy,
        now: Instant,
    ) -> Agent {
        let graph = Graph::load(&config.sysfs);
        let scanner = Scanner::new(
            writer.clone(),
            config.sysfs.clone(),
            policy.rescan.scan_timeout,
        );
        let mut agent = Agent {
            sysfs: config.sysfs,
            writer,
            next_periodic: policy.rescan.periodic.map(|p| now + p),
            policy,
            graph,
            scanner,
            counters: Counters::default(),
            vhbas: BTreeMap::new(),
            hung_reported: BTreeSet::new(),
            last_scans: BTreeMap::new(),
            started: SystemTime::now(),
            status_path: config.status_path,
            ready: false,
            recorded: Recorded::none(),
            state_error: None,
        };
        agent.sync_vhba_runtime();
        agent
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn scanner(&self) -> &Scanner {
        &self.scanner
    }

    pub fn counters(&self) -> Counters {
        let s = self.scanner.counters();
        Counters {
            scans: s.issued,
            merged: s.merged,
            ..self.counters
        }
    }

    /// The first reconcile after start: create what the policy declares.
    pub fn boot(&mut self, now: Instant) {
        self.reconcile(&[], now);
    }

    /// A batch of items from the sources: events update the graph, an overflow
    /// rebuilds it from sysfs; then one plan for the whole batch.
    pub fn handle(&mut self, items: Vec<SourceItem>, now: Instant) {
        let mut changes = Vec::new();
        let mut resync = false;
        for item in items {
            match item {
                SourceItem::Event(ev) => {
                    self.counters.events += 1;
                    changes.extend(self.graph.apply(&ev, &self.sysfs));
                }
                SourceItem::Overflow => {
                    self.counters.overflows += 1;
                    resync = true;
                }
                SourceItem::Rejected(Rejection::Malformed(e)) => {
                    self.counters.malformed += 1;
                    tracing::debug!("dropped a malformed uevent: {e}");
                }
                SourceItem::Rejected(r) => {
                    self.counters.forged += 1;
                    tracing::warn!(hbad_reason = %r, "dropped a uevent: {r}");
                }
            }
        }
        if resync {
            changes.extend(self.resync());
        }
        // A vHBA's creation is told before the LUNs found through it.
        self.confirm_pending(now);
        self.report_new_luns(&changes);
        self.reconcile(&changes, now);
        if resync {
            // A lost REPORTED_LUNS_DATA_HAS_CHANGED is in no sysfs attribute: the
            // target will not report it again. Only a scan finds what it announced.
            self.scan_all(
                "kernel events were lost; a lost unit attention is only found by scanning",
            );
        }
    }

    /// Lost events cannot be replayed: read sysfs again and act on the differences.
    fn resync(&mut self) -> Vec<Change> {
        let fresh = Graph::load(&self.sysfs);
        let changes = Graph::diff(&self.graph, &fresh);
        self.graph = fresh;
        self.counters.resyncs += 1;
        tracing::warn!(
            message_id = %MessageId::EventsLostResynced,
            hbad_reason = "receive buffer overflow",
            "kernel events were lost; re-read sysfs and found {} change{}",
            changes.len(),
            if changes.len() == 1 { "" } else { "s" }
        );
        changes
    }

    /// What no uevent announces is polled: FC port state (a parent's link coming up),
    /// vport state, remote port state (Blocked on a path loss, Online again when the
    /// array port returns, "Not Present" after dev_loss_tmo); also hung scans, retry
    /// times and the periodic scan.
    pub fn tick(&mut self, now: Instant) {
        let mut changes = Vec::new();
        let polled: Vec<String> = self
            .graph
            .of_kind(|k| {
                matches!(k, NodeKind::Host(h) if h.fc.is_some())
                    || matches!(k, NodeKind::Vport(_) | NodeKind::RemotePort(_))
            })
            .into_iter()
            .map(|n| n.devpath.clone())
            .collect();
        for devpath in polled {
            changes.extend(self.graph.refresh(&devpath, &self.sysfs));
        }
        self.report_hung();
        let retry_due = self
            .vhbas
            .values()
            .any(|v| v.retry_at.is_some_and(|t| t <= now) || v.pending.is_some());
        if !changes.is_empty() || retry_due {
            self.reconcile(&changes, now);
        }
        if let (Some(at), Some(every)) = (self.next_periodic, self.policy.rescan.periodic) {
            if now >= at {
                self.next_periodic = Some(now + every);
                self.scan_all("periodic scan");
            }
        }
    }

    /// A host-wide scan of every host taking part in rescans.
    fn scan_all(&mut self, reason: &str) {
        for host in self.graph.hosts() {
            if !crate::plan::takes_part(&self.policy, &self.graph, host) {
                continue;
            }
            if let NodeKind::Host(h) = &host.kind {
                let r = HostRef {
                    number: h.scsi.number,
                    devpath: host.devpath.clone(),
                };
                drop(
                    self.scanner
                        .request(&r, crate::sysfs::writes::ScanScope::Host, reason),
                );
            }
        }
    }

    /// SIGHUP: a good policy replaces the old one and is applied; a bad one is
    /// logged and the old one stays in force.
    pub fn reload(&mut self, loaded: Result<Policy, PolicyErrors>, now: Instant) -> bool {
        match loaded {
            Ok(policy) => {
                for w in &policy.warnings {
                    tracing::warn!("policy: {w}");
                }
                if policy.rescan.scan_timeout != self.policy.rescan.scan_timeout {
                    tracing::info!(
                        "scan_timeout changes take effect for hosts scanned from now on \
                         after a restart; running workers keep {:?}",
                        self.scanner.timeout()
                    );
                }
                self.next_periodic = policy.rescan.periodic.map(|p| now + p);
                self.policy = policy;
                self.sync_vhba_runtime();
                tracing::info!(
                    "policy reloaded: {} vHBAs from {} files",
                    self.policy.vhbas.len(),
                    self.policy.files.len()
                );
                self.reconcile(&[], now);
                true
            }
            Err(errors) => {
                tracing::error!(
                    message_id = %MessageId::PolicyRejected,
                    hbad_reason = %errors,
                    "policy rejected, the previous policy stays in force:\n{errors}"
                );
                false
            }
        }
    }

    /// A scan finished (or was found hung) on a worker.
    pub fn scan_report(&mut self, r: ScanReport) {
        let result = match &r.outcome {
            ScanOutcome::Done => "done".to_string(),
            ScanOutcome::Failed { error } => format!("failed: {error}"),
            ScanOutcome::Hung => "hung".to_string(),
        };
        let host = r.host.to_string();
        match &r.outcome {
            ScanOutcome::Failed { error } => tracing::warn!(
                hbad_host = %host,
                hbad_action = "scan",
                hbad_reason = %r.reason,
                hbad_duration_ms = r.duration.as_millis() as u64,
                "scan of {host} ({}) failed: {error}",
                r.scope
            ),
            _ => tracing::info!(
                hbad_host = %host,
                hbad_action = "scan",
                hbad_reason = %r.reason,
                hbad_duration_ms = r.duration.as_millis() as u64,
                "scanned {host} \"{}\" in {} ms: {}",
                r.scope,
                r.duration.as_millis(),
                r.reason
            ),
        }
        if self.hung_reported.remove(&host) {
            tracing::info!(hbad_host = %host, "{host} is answering again");
        }
        self.last_scans.insert(
            host,
            ScanStatus {
                when: rfc3339(r.started),
                scope: r.scope.to_string(),
                duration_ms: r.duration.as_millis() as u64,
                result,
                reason: r.reason,
            },
        );
    }

    fn report_hung(&mut self) {
        for (host, scope, ran) in self.scanner.hung() {
            if self.hung_reported.insert(host.clone()) {
                tracing::warn!(
                    message_id = %MessageId::ScanHung,
                    hbad_host = %host,
                    hbad_action = "scan",
                    hbad_duration_ms = ran.as_millis() as u64,
                    "scan of {host} \"{scope}\" has not returned after {} s; \
                     later scans of {host} wait behind it, other hosts go on",
                    ran.as_secs()
                );
            }
        }
    }

    fn report_new_luns(&self, changes: &[Change]) {
        // host -> target -> LUN numbers
        let mut found: BTreeMap<String, BTreeMap<String, Vec<u64>>> = BTreeMap::new();
        for c in changes {
            let Change::Added { node } = c else { continue };
            let NodeKind::Lun(l) = &node.kind else {
                continue;
            };
            let target = self
                .graph
                .remote_port_of(node)
                .and_then(|rp| match &rp.kind {
                    NodeKind::RemotePort(r) => r.wwpn.map(|w| w.to_string()),
                    _ => None,
                })
                .unwrap_or_else(|| format!("{}:{}:{}", l.hctl.host, l.hctl.channel, l.hctl.target));
            found
                .entry(format!("host{}", l.hctl.host))
                .or_default()
                .entry(target)
                .or_default()
                .push(l.hctl.lun);
        }
        for (host, targets) in found {
            for (target, mut luns) in targets {
                luns.sort_unstable();
                let list = luns
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(",");
                tracing::info!(
                    message_id = %MessageId::NewLuns,
                    hbad_host = %host,
                    hbad_target = %target,
                    hbad_lun = %list,
                    "new LUN{} {list} on {host} via target {target}",
                    if luns.len() > 1 { "s" } else { "" }
                );
            }
        }
    }

    /// Keeps a runtime record for exactly the vHBAs the policy declares.
    fn sync_vhba_runtime(&mut self) {
        let names: BTreeSet<&str> = self.policy.vhbas.iter().map(|v| v.name.as_str()).collect();
        self.vhbas.retain(|n, _| names.contains(n.as_str()));
        for spec in &self.policy.vhbas {
            let present = self.vhba_host(spec.wwpn).is_some();
            let rt = self.vhbas.entry(spec.name.clone()).or_default();
            rt.seen |= present;
        }
    }

    /// The vHBA host with this WWPN, once the kernel has added it.
    fn vhba_host(&self, wwpn: Wwn) -> Option<&Node> {
        self.graph
            .by_wwpn(wwpn)
            .into_iter()
            .find(|n| matches!(n.kind, NodeKind::Host(_)) && self.graph.is_vhba(n))
    }

    /// Marks and deletes go through the executor's [`Vports`], so the daemon writes
    /// symbolic_name and falls back to the state file exactly as `hbad apply` does.
    /// Built per use: the state file is the policy's, which a reload may change.
    fn vports(&self) -> Vports {
        Vports::new(
            self.sysfs.clone(),
            self.writer.clone(),
            Arc::new(SysfsPoll::new(self.sysfs.clone(), DELETE_POLL)),
            OwnedState::new(self.policy.ownership.state_file.clone()),
            DELETE_TIMEOUT,
        )
    }

    /// Re-reads the state file: `hbad create` may have recorded a vHBA since.
    /// Unreadable, it counts as empty: hbad then asks to mark what it recorded and
    /// deletes nothing it cannot show is its own.
    fn read_recorded(&mut self) {
        let state = OwnedState::new(self.policy.ownership.state_file.clone());
        match state.all() {
            Ok(records) => {
                self.recorded = Recorded::from_records(&records);
                self.state_error = None;
            }
            Err(e) => {
                let text = e.to_string();
                if self.state_error.as_deref() != Some(text.as_str()) {
                    tracing::error!(
                        hbad_reason = %text,
                        "{text}; vHBAs recorded there are treated as not hbad's until it reads again"
                    );
                }
                self.recorded = Recorded::none();
                self.state_error = Some(text);
            }
        }
    }

    /// Plans against the graph and acts on the plan.
    fn reconcile(&mut self, changes: &[Change], now: Instant) {
        self.confirm_pending(now);
        self.read_recorded();
        let plan = plan(&self.policy, &self.graph, &self.recorded, changes);
        for rt in self.vhbas.values_mut() {
            rt.wait = None;
        }
        // A mark may have gone to the state file, a delete taken a record out of it:
        // read it again so that status shows what is there now.
        let ownership_changed = plan.steps.iter().any(|s| {
            matches!(
                s.action,
                Action::SetSymbolicName { .. } | Action::DeleteVhba { .. }
            )
        });
        for step in plan.steps {
            self.act(step, now);
        }
        if ownership_changed {
            self.read_recorded();
        }
        self.sync_vhba_runtime();
    }

    /// Creates written earlier: confirmed when the host is in the graph, rolled back
    /// when it never came.
    fn confirm_pending(&mut self, now: Instant) {
        let names: Vec<String> = self.vhbas.keys().cloned().collect();
        for name in names {
            let Some(p) = self.vhbas.get(&name).and_then(|r| r.pending.clone()) else {
                continue;
            };
            if let Some(host) = self.vhba_host(p.wwpn).map(|h| h.name().to_string()) {
                let (id, verb) = if p.recreate {
                    (MessageId::VhbaRecreated, "recreated")
                } else {
                    (MessageId::VhbaCreated, "created")
                };
                tracing::info!(
                    message_id = %id,
                    hbad_vhba = %name,
                    hbad_wwpn = %p.wwpn,
                    hbad_parent = %p.parent,
                    hbad_host = %host,
                    hbad_action = "create",
                    "vHBA {name} {verb} on {}: {host}, wwpn {}",
                    p.parent,
                    p.wwpn
                );
                self.counters.vhbas_created += 1;
                if let Some(rt) = self.vhbas.get_mut(&name) {
                    rt.pending = None;
                    rt.seen = true;
                    rt.failures = 0;
                    rt.retry_at = None;
                    rt.last_error = None;
                }
            } else if now >= p.deadline {
                let text = vport_text(p.wwpn, p.wwnn);
                let path = self
                    .sysfs
                    .vport_delete_path(&p.parent.devpath, p.control_dir);
                let rollback = match self.writer.write_attr(&path, &text) {
                    Ok(()) => "rolled back with vport_delete".to_string(),
                    Err(e) => format!("rollback failed: {e}"),
                };
                let error = format!(
                    "the kernel accepted the vport but no host with wwpn {} appeared within {} s; {rollback}",
                    p.wwpn,
                    CONFIRM_TIMEOUT.as_secs()
                );
                self.fail(&name, &p.parent, p.wwpn, error, now);
                if let Some(rt) = self.vhbas.get_mut(&name) {
                    rt.pending = None;
                }
            }
        }
    }

    fn fail(&mut self, name: &str, parent: &HostRef, wwpn: Wwn, error: String, now: Instant) {
        let rt = self.vhbas.entry(name.to_string()).or_default();
        rt.failures += 1;
        let delay = BACKOFF_FIRST
            .saturating_mul(1 << rt.failures.min(16).saturating_sub(1))
            .min(BACKOFF_MAX);
        rt.retry_at = Some(now + delay);
        rt.last_error = Some(error.clone());
        tracing::error!(
            message_id = %MessageId::VhbaCreateFailed,
            hbad_vhba = %name,
            hbad_wwpn = %wwpn,
            hbad_parent = %parent,
            hbad_action = "create",
            hbad_reason = %error,
            "vHBA {name} not created on {parent}: {error}; retry in {} s",
            delay.as_secs()
        );
    }

    fn act(&mut self, step: Step, now: Instant) {
        match step.action {
            Action::CreateVhba {
                vhba,
                parent,
                control_dir,
                wwpn,
                wwnn,
                ..
            } => {
                let rt = self.vhbas.entry(vhba.clone()).or_default();
                if rt.pending.is_some() || rt.retry_at.is_some_and(|t| t > now) {
                    return;
                }
                let recreate = rt.seen;
                let path = self.sysfs.vport_create_path(&parent.devpath, control_dir);
                match self.writer.write_attr(&path, &vport_text(wwpn, wwnn)) {
                    Ok(()) => {
                        tracing::debug!(hbad_vhba = %vhba, "vport_create accepted {wwpn}:{wwnn} on {parent}");
                        if let Some(rt) = self.vhbas.get_mut(&vhba) {
                            rt.pending = Some(PendingCreate {
                                deadline: now + CONFIRM_TIMEOUT,
                                parent,
                                control_dir,
                                wwpn,
                                wwnn,
                                recreate,
                            });
                        }
                    }
                    Err(e) => {
                        let (max, inuse) = self.npiv_numbers(&parent.devpath);
                        let op = Op::VportCreate {
                            parent: parent.to_string(),
                            wwpn,
                            wwnn,
                            max,
                            inuse,
                            wwpn_known: !self.graph.by_wwpn(wwpn).is_empty(),
                        };
                        let msg = explain(&op, &e).to_string();
                        self.fail(&vhba, &parent, wwpn, msg, now);
                    }
                }
            }
            Action::DeleteVhba {
                vhba, vport, wwpn, ..
            } => {
                let name = vhba.unwrap_or_else(|| devpath_name(&vport).to_string());
                // OwnedOnly: the executor checks ownership again against sysfs and
                // the state file, and forgets a state-file record once it is gone.
                match self.vports().delete(&vport, DeletePolicy::OwnedOnly) {
                    Ok(d) => tracing::info!(
                        hbad_vhba = %name,
                        hbad_wwpn = %wwpn,
                        hbad_parent = %d.parent,
                        hbad_action = "delete",
                        hbad_reason = %step.reason,
                        "deleted vHBA {name} ({wwpn}) on {}{}: {}",
                        d.parent,
                        if d.already_gone { ", which was already gone" } else { "" },
                        step.reason
                    ),
                    Err(e) => tracing::error!(
                        hbad_vhba = %name,
                        hbad_wwpn = %wwpn,
                        hbad_action = "delete",
                        "vHBA {name} not deleted: {e}"
                    ),
                }
            }
            Action::SetSymbolicName { vhba, vport, .. } => {
                match self.vports().mark(&vport, &vhba) {
                    Ok(OwnerMark::SymbolicName { name }) => tracing::info!(
                        hbad_vhba = %vhba,
                        "marked {} as hbad:{name}",
                        devpath_name(&vport)
                    ),
                    Ok(OwnerMark::StateFile { path, why, .. }) => tracing::warn!(
                        hbad_vhba = %vhba,
                        hbad_reason = %why,
                        "{} cannot carry the mark ({why}); ownership recorded in {}",
                        devpath_name(&vport),
                        path.display()
                    ),
                    Err(e) => tracing::warn!(
                        hbad_vhba = %vhba,
                        "{} not marked as hbad's: {e}",
                        devpath_name(&vport)
                    ),
                }
                // symbolic_name changes with no uevent: read it back now.
                self.graph.refresh(&vport, &self.sysfs);
            }
            Action::Scan { host, scope } => {
                drop(self.scanner.request(&host, scope, &step.reason));
            }
            Action::RescanDevice { hctl, devpath } => {
                let path = self.sysfs.rescan_path(&devpath);
                if let Err(e) = self.writer.write_attr(&path, "1") {
                    let op = Op::Rescan {
                        device: hctl.to_string(),
                    };
                    tracing::warn!(hbad_action = "rescan", "{}", explain(&op, &e));
                } else {
                    tracing::info!(hbad_action = "rescan", hbad_reason = %step.reason, "rescanned {hctl}: {}", step.reason);
                }
            }
            Action::Wait { vhba, reason } => {
                let text = reason.to_string();
                let rt = self.vhbas.entry(vhba.clone()).or_default();
                if rt.wait.as_deref() != Some(text.as_str()) {
                    tracing::debug!(hbad_vhba = %vhba, "waiting: {text}");
                }
                // A parent whose link is down is re-read on every tick: port_state
                // changes send no uevent.
                rt.wait = Some(text);
            }
            Action::Keep { .. } => {}
        }
    }

    fn npiv_numbers(&self, host_devpath: &str) -> (Option<u32>, Option<u32>) {
        match self.graph.node(host_devpath).map(|n| &n.kind) {
            Some(NodeKind::Host(h)) => {
                let n = h.fc.as_ref().and_then(|f| f.npiv.as_ref());
                (n.and_then(|n| n.max_vports), n.and_then(|n| n.vports_inuse))
            }
            _ => (None, None),
        }
    }

    /// Start-up is done when every declared vHBA exists, or has failed, or is waiting
    /// for something other than its parent's link, or its link wait ran out.
    pub fn boot_settled(&self, started: Instant, now: Instant) -> bool {
        self.policy.vhbas.iter().all(|spec| {
            if self.vhba_host(spec.wwpn).is_some() {
                return true;
            }
            let Some(rt) = self.vhbas.get(&spec.name) else {
                return true;
            };
            if rt.pending.is_some() {
                return false;
            }
            if rt.last_error.is_some() {
                return true;
            }
            let link_wait = rt
                .wait
                .as_deref()
                .is_some_and(|w| w.starts_with("parent link not Online"));
            !(link_wait && now < started + spec.link_wait)
        })
    }

    /// Start-up is over: READY=1 went to systemd.
    pub fn set_ready(&mut self) {
        self.ready = true;
    }

    /// "2/2 vHBAs active, 6 hosts watched" for systemd's STATUS=.
    pub fn summary(&self) -> String {
        let active = self
            .policy
            .vhbas
            .iter()
            .filter(|s| self.vhba_host(s.wwpn).is_some())
            .count();
        let hung = self.scanner.hung().len();
        let mut s = format!(
            "{active}/{} vHBAs active, {} hosts watched",
            self.policy.vhbas.len(),
            self.graph.hosts().len()
        );
        if hung > 0 {
            s.push_str(&format!(", {hung} hung"));
        }
        s
    }

    pub fn status(&self) -> Status {
        let mut vhbas = Vec::new();
        for spec in &self.policy.vhbas {
            let rt = self.vhbas.get(&spec.name).cloned().unwrap_or_default();
            let host = self.vhba_host(spec.wwpn);
            let vport = host.and_then(|h| self.graph.vport_of_vhba(h));
            let (vport_state, owner) = match vport.map(|v| &v.kind) {
                Some(NodeKind::Vport(v)) => (
                    // vport_state changes with no uevent: read it now.
                    vport
                        .and_then(|n| {
                            self.sysfs.attr(
                                &format!("{}/fc_vports/{}", n.devpath, n.name()),
                                "vport_state",
                            )
                        })
                        .or_else(|| v.vport_state.clone()),
                    if v.symbolic_name.as_deref() == Some(spec.owner_tag().as_str()) {
                        Some("symbolic_name".to_string())
                    } else if self.recorded.name(spec.wwpn) == Some(spec.name.as_str()) {
                        Some("state_file".to_string())
                    } else {
                        None
                    },
                ),
                _ => (None, None),
            };
            let (state, reason) = if host.is_some() {
                ("active", None)
            } else if rt.pending.is_some() {
                ("creating", None)
            } else if let Some(e) = &rt.last_error {
                ("failed", Some(e.clone()))
            } else {
                ("waiting", rt.wait.clone())
            };
            vhbas.push(VhbaStatus {
                name: spec.name.clone(),
                wwpn: spec.wwpn.to_string(),
                wwnn: spec.wwnn.to_string(),
                state: state.to_string(),
                reason,
                host: host.map(|h| h.name().to_string()),
                parent: vport
                    .and_then(|v| self.graph.vport_parent_host(v))
                    .map(|p| p.name().to_string()),
                vport_state,
                owner,
            });
        }
        let mut hosts: HashMap<String, HostStatus> = HashMap::new();
        for h in self.graph.hosts() {
            hosts.insert(
                h.name().to_string(),
                HostStatus {
                    host: h.name().to_string(),
                    last_scan: self.last_scans.get(h.name()).cloned(),
                },
            );
        }
        let mut hosts: Vec<HostStatus> = hosts.into_values().collect();
        hosts.sort_by_key(|h| crate::sysfs::host_number(&h.host));
        let mut devices = BTreeMap::new();
        for n in self.graph.nodes() {
            let kind = match n.kind {
                NodeKind::Host(_) => "host",
                NodeKind::Vport(_) => "vport",
                NodeKind::RemotePort(_) => "remote_port",
                NodeKind::Target(_) => "target",
                NodeKind::Lun(_) => "lun",
                NodeKind::Disk(_) => "disk",
            };
            *devices.entry(kind.to_string()).or_insert(0) += 1;
        }
        Status {
            pid: std::process::id(),
            ready: self.ready,
            started: rfc3339(self.started),
            updated: rfc3339(SystemTime::now()),
            policy_files: self
                .policy
                .files
                .iter()
                .map(|f| f.display().to_string())
                .collect(),
            vhbas,
            hosts,
            devices,
            hung: self.scanner.hung().into_iter().map(|h| h.0).collect(),
            counters: self.counters(),
        }
    }

    pub fn write_status(&self) {
        if let Some(path) = &self.status_path {
            if let Err(e) = self.status().write(path) {
                tracing::warn!("cannot write {}: {e}", path.display());
            }
        }
    }
}
