//! The agent's state and decisions, apart from the event loop that drives it.
//!
//! [`Agent`] owns the graph, the policy in force and the executor. The loop in
//! [`super::run`] hands it batches of source items, ticks, reloads and the
//! executor's reports; the agent applies events to the graph, asks the planner what
//! to do, and hands the steps to the executor, the same one `hbad apply` uses. It
//! never writes to the kernel itself: every write runs on a per-host worker and
//! comes back as a [`Report`]. Time comes in as an argument, so backoffs and the
//! boot's link waits are tested without waiting.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use crate::exec::gone::{Fate, GoneLedger, GoneLun};
use crate::exec::vport::{vport_marks, SysfsPoll, Vports};
use crate::exec::{
    later, Executor, Report, ScanOutcome, ScanReport, Scanner, StepOutcome, StepReport,
};
use crate::graph::{Change, Devpath, Graph, Node, NodeKind, Notice};
use crate::journal::MessageId;
use crate::ownership::{FileStamp, LoopRead, OwnedState};
use crate::plan::{plan, Action, HostRef, Recorded, Step, WaitReason};
use crate::policy::{Policy, PolicyErrors};
use crate::sysfs::writes::{AttrWriter, ScanScope};
use crate::sysfs::{devpath_name, Detail, Hctl, Sysfs};
use crate::uevent::fc_event::{posts_link_events, FcItem};
use crate::uevent::source::CounterSnapshot;
use crate::uevent::{Action as EventAction, Rejection, SourceItem, SourceItemRef, UeventRef};
use crate::wwn::Wwn;

use super::fleet::{self, Fleet};
use super::login::Login;
use super::status::{rfc3339, Counters, HostStatus, HungWrite, ScanStatus, Status, VhbaStatus};
use super::wake::{at_or_below, fc_nodes, Watched};

/// How long a created vport has to show up as a host before the executor rolls it
/// back, and a deleted one to go. Both waits run on the parent's worker.
pub const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the executor looks for a new vHBA in sysfs while it confirms one.
const CONFIRM_POLL: Duration = Duration::from_millis(20);
/// How soon a plan deferred on a corrupt state file is tried again.
const STATE_RETRY: Duration = Duration::from_millis(100);
/// How long plans wait for a corrupt state file to be moved aside and rebuilt
/// (on the `state-file` thread, which may wait this long for another process's
/// lock) before one is made without records (as a read that failed is): the
/// bound a CLI command waits for the same lock.
const STATE_DEFER_MAX: Duration = Duration::from_secs(10);
/// How long after a failed write of the state file (a read-only or full /var)
/// the agent first tries again, unless the file changes meanwhile; doubling with
/// each failure in a row, up to [`STATE_WRITE_RETRY_MAX`].
const STATE_WRITE_RETRY: Duration = Duration::from_secs(60);
/// The longest wait between tries of a state file that keeps failing.
const STATE_WRITE_RETRY_MAX: Duration = Duration::from_secs(16 * 60);
/// How often the loop looks whether the state file's write ended, while it runs:
/// a failure is said, and its backoff begins, within this.
const STATE_WRITE_LOOK: Duration = Duration::from_secs(1);
/// Changes held by deferred plans, at most; past it, planned without records.
const STATE_DEFER_CHANGES: usize = 65_536;
/// Retry delays after the kernel refuses a vHBA: doubling, capped.
const BACKOFF_FIRST: Duration = Duration::from_secs(2);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// What the agent knows of one policy vHBA beyond the graph.
#[derive(Clone, Debug, Default)]
struct VhbaRuntime {
    /// Seen present at least once while this agent ran: a later create is a re-create.
    seen: bool,
    /// A create is with the executor (written, or queued behind its parent's writes).
    creating: Option<Creating>,
    /// The executor made it; its uevents have not reached the graph yet.
    made: bool,
    failures: u32,
    retry_at: Option<Instant>,
    last_error: Option<String>,
    wait: Option<String>,
    /// Since when, and on which ports, the parent's link has been down.
    link_down: Option<(String, Instant)>,
    /// The present vHBA's login as last journaled ([`Agent::observe_logins`]).
    login: Option<Login>,
    /// Since when the present vHBA has not been logged in.
    login_pending: Option<Instant>,
}

#[derive(Clone, Debug)]
struct Creating {
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
    executor: Executor,
    /// Where the executor's workers send their reports, and where the loop reads them.
    reports_tx: UnboundedSender<Report>,
    reports_rx: Option<UnboundedReceiver<Report>>,
    /// Marks and deletes with the executor, by vport devpath: not asked for twice.
    vports_busy: BTreeSet<String>,
    /// SIGTERM: no new writes.
    stopping: bool,
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
    /// The `state-file` thread writes what the loop settled in the state file's
    /// records only, and recovers a corrupt file ([`Agent::write_state`]).
    state_writes: StateWrites,
    /// Since when plans wait for a corrupt state file to be recovered off the
    /// loop; when they are tried again; the changes they had. The loop never
    /// writes the file nor waits for its lock ([`Agent::reconcile`]).
    state_busy_since: Option<Instant>,
    state_retry: Option<Instant>,
    deferred: Vec<Change>,
    /// The metrics textfile and what only it shows.
    fleet: Fleet,
    /// Devices polled because they wait on a change no event announces.
    watched: Watched,
    /// FC transport events reach the agent (a source was attached).
    fc_events_attached: bool,
    /// What declared vHBAs wait for, polled too: parents (devpaths) whose link is
    /// down, and Online remote ports holding a vHBA's WWPN (they go Blocked with no
    /// uevent once the vHBA they remember is gone).
    link_waits: BTreeSet<Devpath>,
    /// The status last written, its `updated` left out: an unchanged status is
    /// not written again (the heartbeat rewrites it, [`Agent::heartbeat`]).
    status_written: Option<Status>,
    /// Something the metrics show may have changed since they were last rendered.
    metrics_stale: bool,
    /// Gone LUNs already named, with their fate: named again only when it changes.
    gone_said: GoneLedger,
    /// Events taken since the last plan ([`Agent::take`], [`Agent::plan_batch`]).
    pending: Pending,
    /// Owned vHBAs the last plan kept though the policy no longer declares them,
    /// by vport devpath, with why: said once, and again when the reason changes.
    kept: BTreeMap<String, String>,
    /// Scans that never ran because their host's worker thread could not start,
    /// by host devpath: asked again after a backoff ([`Agent::retry_scans`]).
    scan_retries: BTreeMap<String, ScanRetry>,
}

/// The agent's writes of the state file, each on a `state-file` thread of its
/// own ([`Agent::write_state`]), one at a time.
#[derive(Debug, Default)]
struct StateWrites {
    /// The write under way: its outcome comes here (the loop only looks).
    running: Option<std::sync::mpsc::Receiver<Result<(), StateWriteError>>>,
    /// When the loop looks for that outcome next ([`Agent::next_due`]).
    look_at: Option<Instant>,
    /// The last write failed: not tried again before its time, unless the file
    /// changed.
    failed: Option<StateWriteFailure>,
}

/// Why a write of the state file failed, and the file as it left it.
type StateWriteError = (String, Option<FileStamp>);

#[derive(Debug)]
struct StateWriteFailure {
    error: String,
    /// The file after the failed write: someone who writes it since (`hbad
    /// apply` once /var has room) changes it, and it is tried again at once.
    stamp: Option<FileStamp>,
    retry_at: Instant,
    backoff: Duration,
}

/// How the loop's read of the state file went ([`Agent::read_recorded`]).
#[derive(Debug)]
enum StateRead {
    /// Read: the records are those of the file, or none (unreadable).
    Read,
    /// Corrupt (why), and being moved aside and rebuilt off the loop: a plan
    /// waits for it.
    Rebuilding(String),
}

/// A scan to ask for again: its worker's thread could not start (EAGAIN).
#[derive(Debug)]
struct ScanRetry {
    host: HostRef,
    scope: ScanScope,
    reason: String,
    failures: u32,
    /// When to ask again; `None` once asked, until its report comes.
    at: Option<Instant>,
}

/// What the events of a batch did, until the batch is planned.
#[derive(Debug, Default)]
struct Pending {
    /// The list is kept from batch to batch, so a storm does not grow a new one
    /// each time; past [`Pending::KEEP`] entries it is given back.
    changes: Vec<Change>,
    /// Events were lost: the graph is read again before planning.
    resync: bool,
    /// The notices in `changes`, by record and notice: a storm repeats the same
    /// unit attention on every LUN of a target, over and over, and a repeat asks
    /// the planner for nothing the first did not, so it is not kept. The list
    /// then grows with the LUNs that reported, not with the events. Hashed as the
    /// graph hashes devpaths (foldhash): this is looked up once per event.
    noticed: HashSet<((usize, Option<Hctl>), Notice), foldhash::fast::RandomState>,
}

impl Pending {
    const KEEP: usize = 16 * 1024;
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
        // Only what the agent acts and reports on: a third fewer reads per LUN.
        let graph = Graph::load_with(&config.sysfs, Detail::Agent);
        let scanner = Scanner::new(
            writer.clone(),
            config.sysfs.clone(),
            policy.rescan.scan_timeout,
        );
        let (reports_tx, reports_rx) = unbounded_channel();
        let sink = reports_tx.clone();
        scanner.report_to(move |r| {
            let _ = sink.send(Report::Scan(r));
        });
        let vports = vports(&config.sysfs, &writer, &policy);
        let watched = Watched::of(&graph);
        let mut agent = Agent {
            next_periodic: policy.rescan.periodic.map(|p| later(now, p)),
            executor: Executor::new(vports, scanner),
            sysfs: config.sysfs,
            writer,
            policy,
            graph,
            reports_tx,
            reports_rx: Some(reports_rx),
            vports_busy: BTreeSet::new(),
            stopping: false,
            counters: Counters::default(),
            vhbas: BTreeMap::new(),
            hung_reported: BTreeSet::new(),
            last_scans: BTreeMap::new(),
            started: SystemTime::now(),
            status_path: config.status_path,
            ready: false,
            recorded: Recorded::none(),
            state_error: None,
            state_writes: StateWrites::default(),
            state_busy_since: None,
            state_retry: None,
            deferred: Vec::new(),
            fleet: Fleet::default(),
            watched,
            fc_events_attached: false,
            link_waits: BTreeSet::new(),
            status_written: None,
            metrics_stale: true,
            gone_said: GoneLedger::default(),
            pending: Pending::default(),
            kept: BTreeMap::new(),
            scan_retries: BTreeMap::new(),
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
        &self.executor.scanner
    }

    /// Where the executor's reports go: for a caller that taps the scanner's
    /// reports (a benchmark timing scans) and passes them on.
    pub fn report_sink(&self) -> UnboundedSender<Report> {
        self.reports_tx.clone()
    }

    /// The executor's reports (scans, vport steps, device rescans), for the loop.
    /// Taken once.
    pub fn take_reports(&mut self) -> Option<UnboundedReceiver<Report>> {
        self.reports_rx.take()
    }

    /// Where to keep the node_exporter textfile; `None` writes none.
    pub fn set_metrics_path(&mut self, path: Option<PathBuf>) {
        self.fleet.set_path(path);
    }

    /// FC transport events for the loop to hand to [`Agent::fc_event`].
    pub fn attach_fc_events(&mut self, rx: tokio::sync::mpsc::Receiver<FcItem>) {
        self.fc_events_attached = true;
        self.fleet.attach_fc_events(rx);
    }

    /// The FC event channel, for the loop. Taken once.
    pub fn take_fc_events(&mut self) -> Option<tokio::sync::mpsc::Receiver<FcItem>> {
        self.fleet.take_fc_events()
    }

    /// The FC event reader ended: logins are polled from now on, as without one.
    pub fn fc_events_ended(&mut self) {
        self.fc_events_attached = false;
        self.fleet.fc_events_ended();
        self.metrics_stale = true;
    }

    /// An FC transport event: a link, loop or fabric change on a host re-reads
    /// that host's port, vports and remote ports now, instead of at the next poll;
    /// a lost event re-reads every FC host.
    pub fn fc_event(&mut self, item: FcItem, now: Instant) {
        self.fc_events(std::iter::once(item), now);
    }

    /// Several FC transport events at once (a storm of RSCNs or LIPs): each
    /// host they name is re-read once, every FC host once if one was lost.
    pub fn fc_events(&mut self, items: impl IntoIterator<Item = FcItem>, now: Instant) {
        let mut hosts: Vec<Devpath> = Vec::new();
        let mut every_host = false;
        for item in items {
            self.fleet.fc.record_fc(&item);
            self.metrics_stale = true;
            match item {
                FcItem::Event(ev) if ev.code.changes_link() => {
                    let Some(host) = self.graph.host(u32::from(ev.host_no)) else {
                        tracing::debug!("FC event {ev} for a host hbad does not know");
                        continue;
                    };
                    tracing::info!(
                        hbad_host = %host.name(),
                        "FC event {ev}: re-reading {}",
                        host.name()
                    );
                    if !hosts.contains(&host.devpath) {
                        hosts.push(host.devpath.clone());
                    }
                }
                FcItem::Event(ev) => tracing::debug!("FC event {ev}"),
                FcItem::Overflow => every_host = true,
                FcItem::Rejected(r) => {
                    tracing::warn!(hbad_reason = %r, "dropped an FC transport event: {r}");
                }
            }
        }
        let changes = if every_host {
            self.refresh_fc(None)
        } else {
            let mut changes = Vec::new();
            for host in &hosts {
                changes.extend(self.refresh_fc(Some(host.as_ref())));
            }
            changes
        };
        if !changes.is_empty() {
            self.reconcile(&changes, now);
        }
    }

    /// Re-reads FC port, vport and remote port state (nothing announces it), of
    /// every FC host or of those at or below one devpath.
    fn refresh_fc(&mut self, under: Option<&str>) -> Vec<Change> {
        let polled: Vec<String> = fc_nodes(&self.graph)
            .into_iter()
            .filter(|n| under.is_none_or(|u| at_or_below(&n.devpath, u)))
            .map(|n| n.devpath.to_string())
            .collect();
        let mut changes = Vec::new();
        for devpath in polled {
            changes.extend(self.graph.refresh(&devpath, &self.sysfs));
        }
        changes
    }

    pub fn counters(&self) -> Counters {
        let s = self.executor.scanner.counters();
        Counters {
            scans: s.issued,
            merged: s.merged,
            log_records_dropped: crate::journal::records_dropped(),
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
        // Each item is dropped once taken, while its memory is still in cache.
        for item in items {
            self.take(&item);
        }
        self.plan_batch(now);
    }

    /// One item of a batch: an event is applied to the graph now, and what it
    /// changed is planned with the rest of the batch by [`Agent::plan_batch`].
    pub fn take(&mut self, item: &SourceItem) {
        match item {
            SourceItem::Event(ev) => self.take_event(ev.view()),
            SourceItem::Overflow => self.take_overflow(),
            SourceItem::Rejected(r) => self.take_rejected(r),
        }
    }

    /// One item of a batch read in place off a source's buffer (see [`Agent::take`]).
    pub fn take_ref(&mut self, item: SourceItemRef<'_>) {
        match item {
            SourceItemRef::Event(ev) => self.take_event(ev),
            SourceItemRef::Overflow => self.take_overflow(),
            SourceItemRef::Rejected(r) => self.take_rejected(&r),
        }
    }

    /// One event of a batch, read in place (see [`Agent::take`]).
    pub fn take_event(&mut self, ev: UeventRef<'_>) {
        self.counters.events += 1;
        let Some(ev) = self.as_sysfs_shows(ev) else {
            return;
        };
        let pending = &mut self.pending;
        let before = pending.changes.len();
        self.graph.apply_into(ev, &self.sysfs, &mut pending.changes);
        if pending.changes.len() == before + 1 {
            if let Some(Change::Notice { node, notice }) = pending.changes.last() {
                // A notice shares its device's devpath (or its parent's) with the
                // graph, and the list holds it: the same allocation is the same
                // device, not one removed and found again in between
                // (`Noticed::identity`).
                let key = (node.identity(), notice.clone());
                if !pending.noticed.insert(key) {
                    pending.changes.pop();
                }
            }
        }
    }

    /// A synthetic event (`udevadm trigger --action=remove`, `echo remove >
    /// .../uevent`: it carries `SYNTH_UUID`) says what its writer asked for, not
    /// what the device did: the graph follows sysfs instead. A synthetic remove of
    /// a device whose directory is still there re-reads it, as a change; any other
    /// synthetic event for a directory already gone is left to the genuine remove.
    /// A genuine event is taken as it is.
    fn as_sysfs_shows<'a>(&self, ev: UeventRef<'a>) -> Option<UeventRef<'a>> {
        if !ev.is_synthetic() {
            return Some(ev);
        }
        match (ev.action, self.sysfs.exists(ev.devpath)) {
            (EventAction::Remove, true) => {
                tracing::debug!(
                    "{ev} is synthetic (SYNTH_UUID) and {} is still in sysfs: read again, not removed",
                    ev.devpath
                );
                Some(UeventRef {
                    action: EventAction::Change,
                    ..ev
                })
            }
            (EventAction::Remove, false) => Some(ev),
            (_, true) => Some(ev),
            (_, false) => {
                tracing::debug!(
                    "{ev} is synthetic and {} is gone from sysfs: ignored",
                    ev.devpath
                );
                None
            }
        }
    }

    /// The source lost events: the batch's plan starts from sysfs read again.
    pub fn take_overflow(&mut self) {
        self.counters.overflows += 1;
        self.pending.resync = true;
    }

    /// A message a source refused.
    pub fn take_rejected(&mut self, r: &Rejection) {
        match r {
            Rejection::Malformed(e) => {
                self.counters.malformed += 1;
                tracing::debug!("dropped a malformed uevent: {e}");
            }
            r => {
                self.counters.forged += 1;
                tracing::warn!(hbad_reason = %r, "dropped a uevent: {r}");
            }
        }
    }

    /// Plans once for everything taken since the last plan.
    pub fn plan_batch(&mut self, now: Instant) {
        self.metrics_stale = true;
        let mut changes = std::mem::take(&mut self.pending.changes);
        let resync = std::mem::take(&mut self.pending.resync);
        if resync {
            changes.extend(self.resync());
        }
        self.report_new_luns(&changes);
        self.reconcile(&changes, now);
        if resync {
            // A lost REPORTED_LUNS_DATA_HAS_CHANGED is in no sysfs attribute: the
            // target will not report it again. Only a scan finds what it announced.
            self.scan_all(
                "kernel events were lost; a lost unit attention is only found by scanning",
            );
        }
        changes.clear();
        if changes.capacity() <= Pending::KEEP {
            self.pending.changes = changes;
        }
        self.pending.noticed.clear();
        self.pending.noticed.shrink_to(Pending::KEEP);
    }

    /// Lost events cannot be replayed: read sysfs again and act on the differences.
    fn resync(&mut self) -> Vec<Change> {
        let fresh = Graph::load_with(&self.sysfs, self.graph.detail());
        let changes = Graph::diff(&self.graph, &fresh);
        self.graph = fresh;
        self.watched = Watched::of(&self.graph);
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

    /// The sweep: what no uevent announces is re-read on every FC host, vport and
    /// remote port: FC port state (a parent's link coming up), vport state, remote
    /// port state (Blocked on a path loss, Online again when the array port returns,
    /// "Not Present" after dev_loss_tmo); then what [`Agent::poll`] does with time.
    /// The loop sweeps with its status heartbeat, so that a change that came with
    /// no event on a device nothing waited on is seen within one heartbeat.
    pub fn tick(&mut self, now: Instant) {
        let changes = self.refresh_fc(None);
        self.watched = Watched::of(&self.graph);
        self.after_reading(changes, now);
    }

    /// Re-reads only the devices that wait on a change no event announces (a vHBA
    /// logging in, a Blocked remote port, a parent whose link a vHBA waits for),
    /// then looks at hung writes, logins, due retries and the periodic scan. The
    /// loop polls while [`Agent::polling`] says so.
    pub fn poll(&mut self, now: Instant) {
        let polled: BTreeSet<Devpath> = self
            .watched
            .devpaths()
            .chain(&self.link_waits)
            .cloned()
            .collect();
        let mut changes = Vec::new();
        for devpath in &polled {
            changes.extend(self.graph.refresh(devpath, &self.sysfs));
            // Whatever read it last (this poll, a create's report), a device that
            // waits no more, or is gone, is not polled again.
            self.watched.recheck(&self.graph, devpath);
        }
        self.after_reading(changes, now);
    }

    /// Whether something waits on a change that only polling sees: a device
    /// [`Watched`], a parent's link, a vHBA's login, or a write in the kernel
    /// (hung once it runs past the timeout, which no report says).
    pub fn polling(&self) -> bool {
        !self.watched.is_empty()
            || !self.link_waits.is_empty()
            || self.vhbas.values().any(|rt| rt.login_pending.is_some())
            || self.executor.scanner.busy() > 0
            || self.logins_unannounced()
    }

    /// The next time the agent has something to do that no event will wake it
    /// for: a create's retry after its backoff, the periodic scan. Polling is
    /// apart ([`Agent::polling`]): the loop keeps its cadence.
    pub fn next_due(&self, now: Instant) -> Option<Instant> {
        self.vhbas
            .values()
            .filter_map(|rt| rt.retry_at)
            .chain(self.scan_retries.values().filter_map(|r| r.at))
            .filter(|t| *t > now)
            .chain(self.next_periodic)
            .chain(self.state_retry)
            .chain(self.state_writes.look_at)
            .min()
    }

    /// After a sweep or a poll: hung writes, logins, retries, the periodic scan.
    fn after_reading(&mut self, mut changes: Vec<Change>, now: Instant) {
        self.collect_state_write(now);
        self.report_hung();
        self.retry_scans(now);
        // A login that changed is read into the graph too: a vHBA that comes
        // online is scanned, and one that goes down is watched.
        for host in self.observe_logins(now) {
            let vport = self
                .graph
                .node(&host)
                .and_then(|h| self.graph.vport_of_vhba(h))
                .map(|v| v.devpath.clone());
            for devpath in std::iter::once(host).chain(vport) {
                changes.extend(self.graph.refresh(&devpath, &self.sysfs));
            }
        }
        if !changes.is_empty() {
            self.metrics_stale = true;
        }
        let retry_due = self
            .vhbas
            .values()
            .any(|v| v.retry_at.is_some_and(|t| t <= now))
            || self.state_retry.is_some_and(|t| t <= now);
        if !changes.is_empty() || retry_due {
            self.reconcile(&changes, now);
        }
        if let (Some(at), Some(every)) = (self.next_periodic, self.policy.rescan.periodic) {
            if now >= at {
                self.next_periodic = Some(later(now, every));
                self.scan_all("periodic scan");
            }
        }
    }

    /// A host-wide scan of every host taking part in rescans.
    fn scan_all(&mut self, reason: &str) {
        if self.stopping {
            return;
        }
        for host in self.graph.hosts() {
            if !crate::plan::takes_part(&self.policy, &self.graph, host) {
                continue;
            }
            if let NodeKind::Host(h) = &host.kind {
                let r = HostRef {
                    number: h.scsi.number,
                    devpath: host.devpath.to_string(),
                };
                self.executor
                    .scanner
                    .ask(&r, crate::sysfs::writes::ScanScope::Host, reason);
            }
        }
    }

    /// SIGHUP: a good policy replaces the old one and is applied; a bad one is
    /// logged and the old one stays in force.
    pub fn reload(&mut self, loaded: Result<Policy, PolicyErrors>, now: Instant) -> bool {
        self.metrics_stale = true;
        match loaded {
            Ok(policy) => {
                for w in &policy.warnings {
                    tracing::warn!("policy: {w}");
                }
                if policy.rescan.scan_timeout != self.policy.rescan.scan_timeout {
                    tracing::info!(
                        "scan_timeout changes take effect for hosts scanned from now on \
                         after a restart; running workers keep {:?}",
                        self.executor.scanner.timeout()
                    );
                }
                self.next_periodic = policy.rescan.periodic.map(|p| later(now, p));
                // The state file is the policy's: writes started from now on use
                // the new one.
                self.executor.vports = vports(&self.sysfs, &self.writer, &policy);
                self.policy = policy;
                self.sync_vhba_runtime();
                tracing::info!(
                    "policy reloaded: {} vHBAs from {} files",
                    self.policy.vhbas.len(),
                    self.policy.files.len()
                );
                self.reconcile(&[], now);
                self.fleet.tally.reloaded(true, SystemTime::now());
                true
            }
            Err(errors) => {
                self.fleet.tally.reloaded(false, SystemTime::now());
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
        if !matches!(r.outcome, ScanOutcome::Hung) {
            self.fleet.tally.scans.observe(r.duration);
        }
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
        let hung = self.executor.scanner.hung();
        self.hung_reported.retain(|h| {
            let still = hung.iter().any(|r| &r.host == h);
            if !still {
                tracing::info!(hbad_host = %h, "{h} is answering again");
            }
            still
        });
        for r in hung {
            if self.hung_reported.insert(r.host.clone()) {
                tracing::warn!(
                    message_id = %MessageId::ScanHung,
                    hbad_host = %r.host,
                    hbad_action = "write",
                    hbad_duration_ms = r.ran.as_millis() as u64,
                    "{} on {} has not returned after {} s; later writes to {} wait \
                     behind it, other hosts go on",
                    r.what,
                    r.host,
                    r.ran.as_secs(),
                    r.host
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
            // The LUN, or the target it was under if a later event of the batch
            // removed it.
            let target = self
                .graph
                .node(&node.devpath)
                .or_else(|| self.graph.node(node.parent.as_deref()?))
                .and_then(|n| self.graph.remote_port_of(n))
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
            rt.made &= !present;
        }
    }

    /// The vHBA host with this WWPN, once the kernel has added it.
    fn vhba_host(&self, wwpn: Wwn) -> Option<&Node> {
        self.graph
            .by_wwpn(wwpn)
            .into_iter()
            .find(|n| matches!(n.kind, NodeKind::Host(_)) && self.graph.is_vhba(n))
    }

    /// Re-reads the state file: `hbad create` may have recorded a vHBA since.
    /// Unreadable, it counts as empty: hbad then asks to mark what it recorded and
    /// deletes nothing it cannot show is its own. Corrupt, it is not read, and
    /// the `state-file` thread moves it aside and rebuilds it: `Rebuilding`,
    /// changing nothing, until then; once that failed, as unreadable until the
    /// write is tried again.
    fn read_recorded(&mut self, now: Instant) -> StateRead {
        self.collect_state_write(now);
        let state = self
            .policy
            .owned_state()
            .rebuilding_from(vport_marks(&self.sysfs));
        match state.read_on_loop() {
            Ok(LoopRead::Records {
                records,
                unpersisted,
            }) => {
                self.recorded = Recorded::from_records(&records);
                self.state_error = None;
                if unpersisted {
                    self.write_state(&state, now);
                }
            }
            Ok(LoopRead::Corrupt(why)) => {
                if self.write_state(&state, now) {
                    return StateRead::Rebuilding(why);
                }
                let path = state.path().display();
                let error = match &self.state_writes.failed {
                    Some(f) => format!(
                        "ownership state file {path}: {why}; not moved aside and rebuilt \
                         ({}); tried again later",
                        f.error
                    ),
                    None => format!("ownership state file {path}: {why}"),
                };
                self.state_unread(error);
            }
            Err(e) => self.state_unread(e.to_string()),
        }
        StateRead::Read
    }

    /// The state file gives no records (why): said once until the reason changes.
    fn state_unread(&mut self, text: String) {
        if self.state_error.as_deref() != Some(text.as_str()) {
            tracing::error!(
                hbad_reason = %text,
                "{text}; vHBAs recorded there are treated as not hbad's until it reads again"
            );
        }
        self.recorded = Recorded::none();
        self.state_error = Some(text);
    }

    /// Has a `state-file` thread bring the state file up to date with what the
    /// loop read ([`OwnedState::persist_settled`]): write the intents of creates
    /// that stopped, settled in the loop's records only, or move a corrupt file
    /// aside and rebuild it. The write waits for the file's lock and is synced,
    /// and the loop does neither. One at a time; after a failure, not again
    /// before [`STATE_WRITE_RETRY`] (doubling) unless the file changed since:
    /// until then each read settles in its records again. Whether a write is
    /// under way.
    fn write_state(&mut self, state: &OwnedState, now: Instant) -> bool {
        if self.state_writes.running.is_some() {
            return true;
        }
        if let Some(f) = &self.state_writes.failed {
            if now < f.retry_at && state.stamp() == f.stamp {
                return false;
            }
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let writer = state.clone();
        let spawned = std::thread::Builder::new()
            .name("state-file".into())
            .spawn(move || {
                let outcome = writer
                    .persist_settled()
                    .map_err(|e| (e.to_string(), writer.stamp()));
                // The loop may be gone (stopped): nothing to tell then.
                let _ = tx.send(outcome);
            });
        match spawned {
            Ok(_) => {
                tracing::debug!(
                    "ownership state file {}: written on the state-file thread",
                    state.path().display()
                );
                self.state_writes.running = Some(rx);
                self.state_writes.look_at = Some(later(now, STATE_WRITE_LOOK));
                true
            }
            Err(e) => {
                let error = format!(
                    "ownership state file {}: no thread to write it ({e})",
                    state.path().display()
                );
                self.state_write_failed((error, state.stamp()), now);
                false
            }
        }
    }

    /// Takes the outcome of the write on the `state-file` thread, if it ended.
    fn collect_state_write(&mut self, now: Instant) {
        let Some(running) = &self.state_writes.running else {
            return;
        };
        let outcome = match running.try_recv() {
            Ok(outcome) => outcome,
            Err(std::sync::mpsc::TryRecvError::Empty) => {
                self.state_writes.look_at = Some(later(now, STATE_WRITE_LOOK));
                return;
            }
            Err(std::sync::mpsc::TryRecvError::Disconnected) => Err((
                format!(
                    "ownership state file {}: its writer thread ended without a word",
                    self.policy.owned_state().path().display()
                ),
                None,
            )),
        };
        self.state_writes.running = None;
        self.state_writes.look_at = None;
        match outcome {
            Ok(()) => {
                if let Some(f) = self.state_writes.failed.take() {
                    tracing::info!(
                        "ownership state file {} written (it had failed: {})",
                        self.policy.owned_state().path().display(),
                        f.error
                    );
                }
            }
            Err(failed) => self.state_write_failed(failed, now),
        }
    }

    /// A write of the state file failed: tried again after a backoff, or once
    /// the file changes; said once for each error, not at each try.
    fn state_write_failed(&mut self, (error, stamp): StateWriteError, now: Instant) {
        let (backoff, said) = match self.state_writes.failed.take() {
            Some(f) => (
                f.backoff.saturating_mul(2).min(STATE_WRITE_RETRY_MAX),
                f.error == error,
            ),
            None => (STATE_WRITE_RETRY, false),
        };
        if said {
            tracing::debug!(
                hbad_reason = %error,
                "{error}; still failing; tried again in {}",
                humantime::format_duration(backoff)
            );
        } else {
            tracing::warn!(
                hbad_reason = %error,
                "{error}; what the agent settled or rebuilt is in its records only, and \
                 the file is written again in {} at most, or as soon as something else \
                 changes it",
                humantime::format_duration(backoff)
            );
        }
        self.state_writes.failed = Some(StateWriteFailure {
            error,
            stamp,
            retry_at: later(now, backoff),
            backoff,
        });
    }

    /// Plans against the graph and hands the plan to the executor.
    fn reconcile(&mut self, changes: &[Change], now: Instant) {
        self.watched.track(&self.graph, changes);
        if let StateRead::Rebuilding(why) = self.read_recorded(now) {
            // Planned without the records, a vHBA only they make hbad's would be
            // no one's (kept with prune = true, marked again): the plan waits,
            // with its changes, and is tried again shortly, never on the file.
            let since = *self.state_busy_since.get_or_insert_with(|| {
                tracing::warn!(
                    hbad_reason = %why,
                    "ownership state file {}: {why}; it is being moved aside and rebuilt \
                     from the vports' marks off the event loop: planning waits until it \
                     is, {} at most",
                    self.policy.owned_state().path().display(),
                    humantime::format_duration(STATE_DEFER_MAX)
                );
                now
            });
            if now.saturating_duration_since(since) < STATE_DEFER_MAX
                && self.deferred.len() + changes.len() <= STATE_DEFER_CHANGES
            {
                self.deferred.extend_from_slice(changes);
                self.state_retry = Some(later(now, STATE_RETRY));
                return;
            }
            if self.state_retry.is_some() {
                tracing::error!(
                    "ownership state file {}: not rebuilt within {} (another process \
                     holds its lock?); planning without its records (vHBAs recorded only \
                     there are not hbad's until it is read)",
                    self.policy.owned_state().path().display(),
                    humantime::format_duration(STATE_DEFER_MAX)
                );
            }
            self.recorded = Recorded::none();
        } else {
            self.state_busy_since = None;
        }
        self.state_retry = None;
        let changes: std::borrow::Cow<[Change]> = if self.deferred.is_empty() {
            changes.into()
        } else {
            let mut all = std::mem::take(&mut self.deferred);
            all.extend_from_slice(changes);
            all.into()
        };
        let plan = plan(&self.policy, &self.graph, &self.recorded, &changes);
        for rt in self.vhbas.values_mut() {
            rt.wait = None;
        }
        let mut link_down = BTreeSet::new();
        self.link_waits.clear();
        let mut kept = BTreeMap::new();
        for step in plan.steps {
            if let Action::Keep { vhba, vport, wwpn } = &step.action {
                if self.kept.get(vport) != Some(&step.reason) {
                    let name = vhba.as_deref().unwrap_or_else(|| devpath_name(vport));
                    tracing::info!(
                        hbad_vhba = %name,
                        hbad_wwpn = %wwpn,
                        hbad_reason = %step.reason,
                        "vHBA {name} ({wwpn}, {}) is not in the policy: {}",
                        devpath_name(vport),
                        step.reason
                    );
                }
                kept.insert(vport.clone(), step.reason.clone());
            }
            if let Action::Wait {
                reason: WaitReason::WwpnInUse { wwpn, .. },
                ..
            } = &step.action
            {
                // A vHBA deleted by hand leaves Online remote ports for its WWPN on
                // the fabric's other ports until their driver blocks them, which
                // nothing announces: without a poll, its re-creation would wait
                // for the sweep.
                for n in self.graph.by_wwpn(*wwpn) {
                    if matches!(n.kind, NodeKind::RemotePort(_)) {
                        self.link_waits.insert(n.devpath.clone());
                    }
                }
            }
            if let Action::Wait {
                vhba,
                reason: WaitReason::LinkDown { ports },
            } = &step.action
            {
                link_down.insert(vhba.clone());
                for (port, _) in ports {
                    let parent = crate::sysfs::host_number(port).and_then(|n| self.graph.host(n));
                    if let Some(parent) = parent {
                        self.link_waits.insert(parent.devpath.clone());
                    }
                }
                let ports = ports
                    .iter()
                    .map(|(p, _)| p.as_str())
                    .collect::<Vec<_>>()
                    .join(", ");
                let rt = self.vhbas.entry(vhba.clone()).or_default();
                match &rt.link_down {
                    Some((p, _)) if *p == ports => {}
                    _ => rt.link_down = Some((ports, now)),
                }
            }
            self.act(step, now);
        }
        for (name, rt) in self.vhbas.iter_mut() {
            if !link_down.contains(name) {
                rt.link_down = None;
            }
        }
        self.kept = kept;
        self.sync_vhba_runtime();
    }

    /// The executor finished a step (not a scan: [`Agent::scan_report`]).
    pub fn step_report(&mut self, r: StepReport, now: Instant) {
        let StepReport { step, outcome, .. } = r;
        match step.action {
            Action::CreateVhba {
                vhba, parent, wwpn, ..
            } => {
                let recreate = self
                    .vhbas
                    .get_mut(&vhba)
                    .and_then(|rt| rt.creating.take())
                    .is_some_and(|c| c.recreate);
                // AlreadyDone: the create found the vport there, because an earlier
                // create of ours finished after this one was planned but before the
                // graph saw its uevents. Nothing was made, so nothing is counted or
                // announced a second time.
                let made = matches!(outcome, StepOutcome::Done { .. });
                match outcome {
                    StepOutcome::Done { detail } | StepOutcome::AlreadyDone { detail } => {
                        if made {
                            let (id, verb) = if recreate {
                                (MessageId::VhbaRecreated, "recreated")
                            } else {
                                (MessageId::VhbaCreated, "created")
                            };
                            tracing::info!(
                                message_id = %id,
                                hbad_vhba = %vhba,
                                hbad_wwpn = %wwpn,
                                hbad_parent = %parent,
                                hbad_action = "create",
                                "vHBA {vhba} {verb} on {parent}, wwpn {wwpn}: {detail}"
                            );
                            self.counters.vhbas_created += 1;
                        } else {
                            tracing::debug!(
                                hbad_vhba = %vhba,
                                hbad_wwpn = %wwpn,
                                "vHBA {vhba} already present on {parent}: {detail}"
                            );
                        }
                        if let Some(rt) = self.vhbas.get_mut(&vhba) {
                            rt.seen = true;
                            rt.made |= made;
                            rt.failures = 0;
                            rt.retry_at = None;
                            rt.last_error = None;
                        }
                        // The mark went to symbolic_name or the state file, and
                        // neither sends a uevent.
                        self.read_recorded(now);
                        self.refresh_vport_of(wwpn, &parent.devpath);
                        self.sync_vhba_runtime();
                        // Planned again now, not at the next event or sweep:
                        // the plans taken while the create ran saw a vport with
                        // no mark, and left it to the create. Found already there
                        // (a create left behind by an agent that stopped, a
                        // hand-made vport), it was not marked, and is adopted
                        // now; made, but by then no longer declared (a reload
                        // came while it ran), it is pruned now if prune is on.
                        self.reconcile(&[], now);
                    }
                    StepOutcome::Failed { error } => {
                        self.fleet.tally.vport_create_failed(&error);
                        self.fail(&vhba, &parent, wwpn, error, now)
                    }
                    other => tracing::warn!(hbad_vhba = %vhba, "create of {vhba}: {other:?}"),
                }
            }
            Action::DeleteVhba {
                vhba, vport, wwpn, ..
            } => {
                self.vports_busy.remove(&vport);
                let name = vhba.unwrap_or_else(|| devpath_name(&vport).to_string());
                match outcome {
                    StepOutcome::Done { detail } | StepOutcome::AlreadyDone { detail } => {
                        tracing::info!(
                            hbad_vhba = %name,
                            hbad_wwpn = %wwpn,
                            hbad_action = "delete",
                            hbad_reason = %step.reason,
                            "deleted vHBA {name} ({wwpn}): {detail}: {}",
                            step.reason
                        )
                    }
                    StepOutcome::Failed { error } => tracing::error!(
                        hbad_vhba = %name,
                        hbad_wwpn = %wwpn,
                        hbad_action = "delete",
                        "vHBA {name} not deleted: {error}"
                    ),
                    _ => {}
                }
                self.read_recorded(now);
            }
            Action::SetSymbolicName { vhba, vport, .. } => {
                self.vports_busy.remove(&vport);
                match outcome {
                    StepOutcome::Done { detail } => {
                        tracing::info!(hbad_vhba = %vhba, "marked {detail}")
                    }
                    StepOutcome::Failed { error } => tracing::warn!(
                        hbad_vhba = %vhba,
                        "{} not marked as hbad's: {error}",
                        devpath_name(&vport)
                    ),
                    _ => {}
                }
                // symbolic_name changes with no uevent: read it back now.
                let changes = self.graph.refresh(&vport, &self.sysfs);
                self.watched.track(&self.graph, &changes);
                self.read_recorded(now);
            }
            Action::RescanDevice { hctl, .. } => match outcome {
                StepOutcome::Failed { error } => tracing::warn!(
                    hbad_action = "rescan",
                    hbad_lun = %hctl,
                    "{error}"
                ),
                StepOutcome::Done { detail } => {
                    // What the multipath map over it did, when there is one.
                    let then = detail
                        .strip_prefix(&format!("{hctl} re-read"))
                        .unwrap_or_default();
                    tracing::info!(
                        hbad_action = "rescan",
                        hbad_lun = %hctl,
                        hbad_reason = %step.reason,
                        "rescanned {hctl}: {}{then}",
                        step.reason
                    )
                }
                _ => {}
            },
            Action::FindGone {
                host,
                channel,
                target,
                target_devpath,
                ..
            } => match outcome {
                StepOutcome::Compared { gone } => {
                    let news = self.gone_said.news(&target_devpath, &gone);
                    self.fleet.tally.luns_gone_held = self.gone_said.held();
                    self.report_gone(&host, channel, target, &news)
                }
                StepOutcome::Failed { error } => tracing::warn!(
                    hbad_host = %host,
                    hbad_action = "report-luns",
                    "cannot tell which LUNs of {host} target {channel}:{target} are gone \
                     from the array: {error}"
                ),
                _ => {}
            },
            Action::Scan { .. } | Action::Wait { .. } | Action::Keep { .. } => {}
        }
    }

    /// LUNs a target stopped reporting, one record each: named, deleted, or kept
    /// with what holds them.
    fn report_gone(&mut self, host: &HostRef, channel: u32, target: u32, gone: &[&GoneLun]) {
        let through = self
            .graph
            .lun(Hctl {
                host: host.number,
                channel,
                target,
                lun: 0,
            })
            .or_else(|| gone.first().and_then(|g| self.graph.lun(g.hctl)))
            .and_then(|n| self.graph.remote_port_of(n))
            .and_then(|rp| match &rp.kind {
                NodeKind::RemotePort(r) => r.wwpn.map(|w| w.to_string()),
                _ => None,
            })
            .unwrap_or_else(|| format!("{}:{channel}:{target}", host.number));
        for g in gone {
            let disk = g.disk.as_deref().unwrap_or("none");
            let action = g.fate.word();
            self.fleet.tally.lun_gone(action);
            let holder = g.fate.holders();
            let text = format!(
                "LUN {g} is gone from the array: target {through} no longer reports it \
                 to {host}; {}",
                g.fate.describe()
            );
            macro_rules! record {
                ($level:ident) => {
                    tracing::$level!(
                        message_id = %MessageId::LunGone,
                        hbad_host = %host,
                        hbad_target = %through,
                        hbad_lun = %g.hctl,
                        hbad_disk = %disk,
                        hbad_action = action,
                        hbad_holder = %holder,
                        "{text}"
                    )
                };
            }
            // Held or refused, it stays against the policy's wish: someone must look.
            match &g.fate {
                Fate::Held { .. } | Fate::Failed { .. } => record!(warn),
                Fate::Kept | Fate::Removed => record!(info),
            }
        }
    }

    /// A report from the executor, whichever kind.
    pub fn report(&mut self, r: Report, now: Instant) {
        self.metrics_stale = true;
        match r {
            Report::Scan(r) => {
                self.follow_unstarted(&r, now);
                self.scan_report(r)
            }
            Report::Step(r) => self.step_report(r, now),
        }
    }

    /// A scan that never ran (no worker thread could start for its host) is asked
    /// for again after a backoff, merged with any other waiting for that host; a
    /// scan that ran and covers the one asked again ends the wait.
    fn follow_unstarted(&mut self, r: &ScanReport, now: Instant) {
        if !r.unstarted {
            let answered = self
                .scan_retries
                .get(&r.host.devpath)
                .is_some_and(|q| q.at.is_none() && r.scope.covers(q.scope));
            if answered {
                self.scan_retries.remove(&r.host.devpath);
            }
            return;
        }
        if self.stopping {
            return;
        }
        let retry = self
            .scan_retries
            .entry(r.host.devpath.clone())
            .or_insert_with(|| ScanRetry {
                host: r.host.clone(),
                scope: r.scope,
                reason: r.reason.clone(),
                failures: 0,
                at: None,
            });
        retry.scope = if retry.scope.covers(r.scope) {
            retry.scope
        } else if r.scope.covers(retry.scope) {
            r.scope
        } else {
            ScanScope::Host
        };
        retry.failures = retry.failures.saturating_add(1);
        let delay = backoff(retry.failures);
        retry.at = Some(later(now, delay));
        tracing::info!(
            hbad_host = %r.host,
            hbad_action = "scan",
            "scan of {} \"{}\" asked again in {} s",
            r.host,
            retry.scope,
            delay.as_secs()
        );
    }

    /// Asks again for the scans whose backoff is over.
    fn retry_scans(&mut self, now: Instant) {
        if self.stopping {
            return;
        }
        let due: Vec<(HostRef, ScanScope, String)> = self
            .scan_retries
            .values_mut()
            .filter(|q| q.at.is_some_and(|t| t <= now))
            .map(|q| {
                q.at = None;
                (q.host.clone(), q.scope, q.reason.clone())
            })
            .collect();
        for (host, scope, reason) in due {
            self.executor.scanner.ask(&host, scope, &reason);
        }
    }

    /// Reads the vport holding this WWPN again (its mark sends no uevent), and
    /// every vport under its parent that the graph knows by no WWPN. The kernel
    /// sends a vport's `add` before it makes the vport's attributes
    /// (`attribute_container_add_class_device`: `device_add`, then the files), so
    /// the event may have been read while the vport had no name at all: found by
    /// its WWPN, it would be missed, and planned as no one's (never pruned, a
    /// declared one waiting on its own WWPN) until the sweep.
    fn refresh_vport_of(&mut self, wwpn: Wwn, parent: &str) {
        let unnamed = self.graph.node(parent).into_iter().flat_map(|p| {
            self.graph
                .children(p)
                .filter(|c| matches!(&c.kind, NodeKind::Vport(v) if v.wwpn.is_none()))
        });
        let vports: BTreeSet<Devpath> = self
            .graph
            .by_wwpn(wwpn)
            .into_iter()
            .filter(|n| matches!(n.kind, NodeKind::Vport(_)))
            .chain(unnamed)
            .map(|n| n.devpath.clone())
            .collect();
        for v in vports {
            let changes = self.graph.refresh(&v, &self.sysfs);
            if changes.iter().any(|c| {
                matches!(c, Change::Updated { before, .. } if matches!(&**before, NodeKind::Vport(b) if b.wwpn.is_none()))
            }) {
                tracing::debug!(
                    "{} was read before the kernel made its attributes; read again",
                    devpath_name(&v)
                );
            }
            self.watched.track(&self.graph, &changes);
        }
    }

    fn fail(&mut self, name: &str, parent: &HostRef, wwpn: Wwn, error: String, now: Instant) {
        let rt = self.vhbas.entry(name.to_string()).or_default();
        rt.failures = rt.failures.saturating_add(1);
        let delay = backoff(rt.failures);
        rt.retry_at = Some(later(now, delay));
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

    /// Hands one step to the executor; its report comes back through the loop.
    fn start(&self, step: Step) {
        let tx = self.reports_tx.clone();
        self.executor.start(step, move |r| {
            let _ = tx.send(Report::Step(r));
        });
    }

    fn act(&mut self, step: Step, now: Instant) {
        if self.stopping && step.acts() {
            tracing::debug!("stopping: not starting {step}");
            return;
        }
        match &step.action {
            Action::CreateVhba { vhba, .. } => {
                let rt = self.vhbas.entry(vhba.clone()).or_default();
                if rt.creating.is_some() || rt.retry_at.is_some_and(|t| t > now) {
                    return;
                }
                rt.creating = Some(Creating { recreate: rt.seen });
                self.start(step);
            }
            Action::SetSymbolicName { vhba, .. }
                if self.vhbas.get(vhba).is_some_and(|rt| rt.creating.is_some()) =>
            {
                // The create marks it: its events can reach the graph first.
            }
            Action::DeleteVhba { vport, .. } | Action::SetSymbolicName { vport, .. } => {
                // OwnedOnly deletes: the executor checks ownership again against
                // sysfs and the state file, and forgets a record once it is gone.
                if self.vports_busy.insert(vport.clone()) {
                    self.start(step);
                }
            }
            Action::Scan { host, scope } => {
                self.executor.scanner.ask(host, *scope, &step.reason);
            }
            Action::RescanDevice { .. } | Action::FindGone { .. } => self.start(step),
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

    /// Start-up is done once no declared vHBA's create is still with the executor:
    /// every vHBA whose parent could take it has been tried (made, or failed with a
    /// reason). A vHBA waiting for its parent's link does not hold start-up; it is
    /// made when the link comes up, and said meanwhile ([`Agent::waits`]).
    pub fn boot_settled(&self) -> bool {
        self.vhbas
            .values()
            .all(|rt| rt.creating.is_none() && !rt.made)
    }

    /// Creates with the executor, by vHBA name, for STATUS= while start-up waits.
    pub fn creating(&self) -> Vec<String> {
        self.vhbas
            .iter()
            .filter(|(_, rt)| rt.creating.is_some() || rt.made)
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// vHBAs waiting for a parent's fabric link, in words: "waiting for fabric link
    /// of host2 for vm-a, 35 s left", or past the vHBA's `link_wait`, "degraded:
    /// fabric link of host2 down for 95 s, vm-a not created".
    pub fn waits(&self, now: Instant) -> Vec<String> {
        let mut out = Vec::new();
        for spec in &self.policy.vhbas {
            let Some((ports, since)) = self
                .vhbas
                .get(&spec.name)
                .and_then(|r| r.link_down.as_ref())
            else {
                continue;
            };
            let down = now.saturating_duration_since(*since);
            if down < spec.link_wait {
                out.push(format!(
                    "waiting for fabric link of {ports} for {}, {} s left",
                    spec.name,
                    (spec.link_wait - down).as_secs()
                ));
            } else {
                out.push(format!(
                    "degraded: fabric link of {ports} down for {} s, {} not created",
                    down.as_secs(),
                    spec.name
                ));
            }
        }
        out
    }

    /// Whether a declared vHBA is absent past its link wait (or failed): what a
    /// monitoring check calls degraded.
    pub fn degraded(&self, now: Instant) -> bool {
        self.policy.vhbas.iter().any(|spec| {
            self.login_now(spec.wwpn, &spec.name, now)
                .is_some_and(|l| l.vhba_state() == "degraded")
        }) || self.policy.vhbas.iter().any(|spec| {
            self.vhba_host(spec.wwpn).is_none()
                && self.vhbas.get(&spec.name).is_some_and(|rt| {
                    rt.last_error.is_some()
                        || rt.link_down.as_ref().is_some_and(|(_, since)| {
                            now.saturating_duration_since(*since) >= spec.link_wait
                        })
                })
        })
    }

    /// Start-up is over: READY=1 went to systemd.
    pub fn set_ready(&mut self) {
        self.ready = true;
    }

    /// SIGTERM: no new writes from now on (above all no vport_create, which a
    /// SIGKILL must never interrupt); what the workers have queued is dropped.
    /// Writes already in the kernel run to their end.
    pub fn stop(&mut self) {
        self.stopping = true;
        self.executor.scanner.close();
    }

    /// Writes in the kernel now that have not yet run past the timeout: what a
    /// stop waits for.
    pub fn unfinished(&self) -> usize {
        self.executor.scanner.unfinished()
    }

    /// Every write still in the kernel, hung or not.
    pub fn running(&self) -> Vec<crate::exec::Running> {
        self.executor.scanner.running()
    }

    /// "2/2 vHBAs active, 6 hosts watched" for systemd's STATUS=, with what is
    /// waiting or hung after it.
    pub fn summary(&self) -> String {
        self.summary_at(Instant::now())
    }

    pub fn summary_at(&self, now: Instant) -> String {
        let active = self
            .policy
            .vhbas
            .iter()
            .filter(|s| {
                self.vhba_host(s.wwpn).is_some()
                    && self
                        .login_now(s.wwpn, &s.name, now)
                        .is_none_or(Login::is_up)
            })
            .count();
        let hung = self.executor.scanner.hung();
        let mut s = format!(
            "{active}/{} vHBAs active, {} hosts watched",
            self.policy.vhbas.len(),
            self.graph.hosts().len()
        );
        if !hung.is_empty() {
            let hosts: Vec<&str> = hung.iter().map(|r| r.host.as_str()).collect();
            s.push_str(&format!(", {} hung ({})", hung.len(), hosts.join(", ")));
        }
        for w in self.waits(now) {
            s.push_str("; ");
            s.push_str(&w);
        }
        s
    }

    pub fn status(&self) -> Status {
        let now = Instant::now();
        let hung = self.executor.scanner.hung();
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
            let login = self.login_now(spec.wwpn, &spec.name, now);
            let port_state = host.and_then(|h| self.login_states(h).1);
            let (state, reason) = if host.is_some() {
                match login.filter(|l| !l.is_up()) {
                    Some(l) => (
                        l.vhba_state(),
                        Some(login_reason(
                            l,
                            vport_state.as_deref(),
                            port_state.as_deref(),
                            rt.login_pending.map(|t| now.saturating_duration_since(t)),
                        )),
                    ),
                    None => ("active", None),
                }
            } else if rt.creating.is_some() || rt.made {
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
                login: login.map(|l| l.to_string()),
                port_state,
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
            hung: hung.iter().map(|r| r.host.clone()).collect(),
            hung_writes: hung
                .into_iter()
                .map(|r| HungWrite {
                    host: r.host,
                    what: r.what,
                    seconds: r.ran.as_secs(),
                })
                .collect(),
            degraded: self.degraded(now),
            waiting: self.waits(now),
            counters: self.counters(),
        }
    }

    /// The vport's `vport_state` and the vHBA host's `port_state`, both read now
    /// (they change with no uevent; read together, they are one moment's view).
    fn login_states(&self, host: &Node) -> (Option<String>, Option<String>) {
        let vport = self.graph.vport_of_vhba(host);
        let vport_state = vport.and_then(|n| {
            self.sysfs
                .attr(
                    &format!("{}/fc_vports/{}", n.devpath, n.name()),
                    "vport_state",
                )
                .or_else(|| match &n.kind {
                    NodeKind::Vport(v) => v.vport_state.clone(),
                    _ => None,
                })
        });
        let port_state = self
            .sysfs
            .attr(
                &format!("{}/fc_host/{}", host.devpath, host.name()),
                "port_state",
            )
            .or_else(|| host_port_state(host));
        (vport_state, port_state)
    }

    /// A present vHBA's login now; `None` when it is absent or the kernel shows no
    /// vport_state.
    fn login_now(&self, wwpn: Wwn, name: &str, now: Instant) -> Option<Login> {
        let host = self.vhba_host(wwpn)?;
        let (vport_state, port_state) = self.login_states(host);
        let pending = self
            .vhbas
            .get(name)
            .and_then(|rt| rt.login_pending)
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        Login::of(vport_state.as_deref(), port_state.as_deref(), pending)
    }

    /// Follows each present vHBA's login on every tick and journals a loss
    /// (refused, link down, disabled) and the return from one. Logging in at
    /// creation is not news.
    ///
    /// Returns the hosts (devpaths) of the vHBAs whose login changed.
    fn observe_logins(&mut self, now: Instant) -> Vec<Devpath> {
        let mut seen = Vec::new();
        let mut moved = Vec::new();
        for spec in &self.policy.vhbas {
            let present = self.vhba_host(spec.wwpn).map(|host| {
                let (vport_state, port_state) = self.login_states(host);
                (host.devpath.clone(), vport_state, port_state)
            });
            seen.push((spec.name.clone(), spec.wwpn, present));
        }
        for (name, wwpn, present) in seen {
            let rt = self.vhbas.entry(name.clone()).or_default();
            let Some((devpath, vport_state, port_state)) = present else {
                rt.login = None;
                rt.login_pending = None;
                continue;
            };
            let pending = rt.login_pending.map(|t| now.saturating_duration_since(t));
            let login = Login::of(
                vport_state.as_deref(),
                port_state.as_deref(),
                pending.unwrap_or(Duration::ZERO),
            );
            if login.is_some_and(|l| !l.is_up()) {
                rt.login_pending.get_or_insert(now);
            } else {
                rt.login_pending = None;
            }
            if login == rt.login {
                continue;
            }
            let host = devpath_name(&devpath).to_string();
            moved.push(devpath);
            let was_degraded = rt.login.is_some_and(|l| l.vhba_state() == "degraded");
            rt.login = login;
            let Some(login) = login else { continue };
            let vs = vport_state.as_deref().unwrap_or("-");
            let ps = port_state.as_deref().unwrap_or("-");
            if login.vhba_state() == "degraded" {
                tracing::warn!(
                    message_id = %MessageId::VhbaLoginChanged,
                    hbad_vhba = %name,
                    hbad_wwpn = %wwpn,
                    hbad_host = %host,
                    hbad_login = %login,
                    hbad_vport_state = %vs,
                    hbad_port_state = %ps,
                    "vHBA {name} ({host}, wwpn {wwpn}) is not logged in: {}",
                    login_reason(login, Some(vs), Some(ps), pending)
                );
            } else if was_degraded && login.is_up() {
                tracing::info!(
                    message_id = %MessageId::VhbaLoginChanged,
                    hbad_vhba = %name,
                    hbad_wwpn = %wwpn,
                    hbad_host = %host,
                    hbad_login = %login,
                    hbad_vport_state = %vs,
                    hbad_port_state = %ps,
                    "vHBA {name} ({host}, wwpn {wwpn}) is logged in again: vport {vs}, host {ps}"
                );
            } else {
                tracing::debug!(hbad_vhba = %name, "login {login}: vport {vs}, host {ps}");
            }
        }
        moved
    }

    /// Whether a present vHBA's login can change with nothing to say so: no FC
    /// transport event source, or a parent whose driver posts no link events
    /// (libfc's fcoe, bnx2fc, qedf post only LIPRESET, and not on every loss).
    /// Such logins are polled (two attributes a vHBA) as long as the vHBA is there.
    fn logins_unannounced(&self) -> bool {
        self.policy.vhbas.iter().any(|spec| {
            self.vhba_host(spec.wwpn).is_some_and(|host| {
                !self.fc_events_attached
                    || !self
                        .graph
                        .vport_of_vhba(host)
                        .and_then(|v| self.graph.vport_parent_host(v))
                        .is_some_and(|p| match &p.kind {
                            NodeKind::Host(h) => {
                                h.scsi.proc_name.as_deref().is_some_and(posts_link_events)
                            }
                            _ => false,
                        })
            })
        })
    }

    /// Writes the status file when what it says changed, and the metrics textfile
    /// when something they show may have.
    pub fn write_status(&mut self) {
        self.publish(false);
    }

    /// Rewrites the status file though nothing changed: its `updated` is the
    /// proof of life `hbad status --max-age` checks.
    pub fn heartbeat(&mut self) {
        self.publish(true);
    }

    fn publish(&mut self, rewrite: bool) {
        if self.status_path.is_none() && !self.fleet.enabled() {
            return;
        }
        let status = self.status();
        let content = Status {
            updated: String::new(),
            ..status.clone()
        };
        let changed = self.status_written.as_ref() != Some(&content);
        match &self.status_path {
            Some(path) if changed || rewrite => match status.write(path) {
                Ok(()) => self.status_written = Some(content),
                Err(e) => tracing::warn!("cannot write {}: {e}", path.display()),
            },
            Some(_) => {}
            None => self.status_written = Some(content),
        }
        if self.fleet.enabled() && (changed || self.metrics_stale) {
            self.metrics_stale = false;
            let c = status.counters;
            let uevents = CounterSnapshot {
                received: c.events + c.forged + c.malformed,
                events: c.events,
                rejected_not_kernel: c.forged,
                rejected_malformed: c.malformed,
                overflows: c.overflows,
                ..Default::default()
            };
            let snap = fleet::snapshot(&self.graph, &status, &self.fleet, uevents, self.started);
            self.fleet.write(&snap);
        }
    }
}

/// How long to wait before trying again after `failures` failures in a row:
/// doubling from [`BACKOFF_FIRST`], capped at [`BACKOFF_MAX`].
fn backoff(failures: u32) -> Duration {
    BACKOFF_FIRST
        .saturating_mul(1 << failures.min(16).saturating_sub(1))
        .min(BACKOFF_MAX)
}

/// An FC host's `port_state` as the graph last read it.
fn host_port_state(host: &Node) -> Option<String> {
    match &host.kind {
        NodeKind::Host(h) => h.fc.as_ref().and_then(|fc| fc.port_state.clone()),
        _ => None,
    }
}

/// Why a vHBA that exists is not logged in, in words for `hbad status` and the journal.
fn login_reason(
    login: Login,
    vport_state: Option<&str>,
    port_state: Option<&str>,
    pending: Option<Duration>,
) -> String {
    let seen = format!(
        "vport {}, host {}{}",
        vport_state.unwrap_or("-"),
        port_state.unwrap_or("-"),
        pending.map_or(String::new(), |d| format!(" for {} s", d.as_secs()))
    );
    let what = match login {
        Login::LoggingIn => "logging in to the fabric",
        Login::Refused => "the fabric refused its login (FDISC); check zoning and the switch's NPIV settings for its WWPN",
        Login::LinkDown => "the fabric link is down",
        Login::Disabled => "the vport is disabled (vport_disable)",
        Login::LoggedIn | Login::NoFabric => "logged in",
    };
    format!("{what}: {seen}")
}

/// The executor's vports for a policy: its state file, the daemon's confirm wait.
fn vports(sysfs: &Sysfs, writer: &Arc<dyn AttrWriter>, policy: &Policy) -> Vports {
    Vports::new(
        sysfs.clone(),
        writer.clone(),
        Arc::new(SysfsPoll::new(sysfs.clone(), CONFIRM_POLL)),
        policy.owned_state(),
        CONFIRM_TIMEOUT,
    )
}
