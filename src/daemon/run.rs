//! The event loop: source items in batches, ticks, executor reports, reload, stop.
//!
//! One task owns the [`Agent`]; everything reaches it through channels. The loop's
//! thread never writes to the kernel (in debug builds the writer seam asserts it)
//! and never waits for it: writes run on the executor's per-host workers and come
//! back as reports, a reload's policy is read on a thread of its own, and start-up
//! and stop are driven by timers. So a host whose writes hang never stalls events,
//! reloads or the watchdog. The watchdog is pinged from this loop and nowhere
//! else: if the loop wedges, systemd notices and restarts the agent.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::time::{self, Instant as TokioInstant};

use crate::exec::later;
use crate::policy::{Policy, PolicyErrors};
use crate::sysfs::writes::set_loop_thread;
use crate::uevent::kernel::AsyncKernelSource;
use crate::uevent::SourceItem;

use super::agent::{Agent, CONFIRM_TIMEOUT};
use super::alarm::Alarm;
use super::notify;
use super::wake::HEARTBEAT;

/// What the outside asks of the loop: `hbad run` maps SIGHUP and SIGTERM/SIGINT here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    Reload,
    Stop,
}

/// Timings of the loop; the debounce comes from the policy.
#[derive(Clone, Copy, Debug)]
pub struct LoopTimings {
    /// How often what waits on an unannounced change is polled (a parent's link,
    /// a vHBA logging in, a Blocked remote port, a write in the kernel), and
    /// start-up's progress is said. Nothing waiting, nothing is polled.
    pub tick: Duration,
    /// How often the status file is rewritten though nothing changed (the proof
    /// of life `hbad status --max-age` checks) and every FC port is re-read.
    pub heartbeat: Duration,
    /// How long a stop waits for writes still in the kernel that are not yet known
    /// to hang. Well inside the unit's TimeoutStopSec (30 s), so that systemd's
    /// SIGKILL never comes.
    pub stop_grace: Duration,
    /// The longest start-up waits for vHBA creates before READY=1, however they
    /// are doing; systemd's start timeout is extended meanwhile.
    pub boot_limit: Duration,
}

impl Default for LoopTimings {
    fn default() -> Self {
        LoopTimings {
            tick: Duration::from_secs(1),
            heartbeat: HEARTBEAT,
            stop_grace: Duration::from_secs(5),
            boot_limit: CONFIRM_TIMEOUT + Duration::from_secs(15),
        }
    }
}

/// By how much each tick of start-up pushes systemd's start timeout out.
const EXTEND_BY: Duration = Duration::from_secs(10);

/// Feeds the loop from a blocking stream of events (the simulator's subscription)
/// on a thread of its own, as a kernel source would.
pub fn forward_events(
    events: std::sync::mpsc::Receiver<crate::uevent::Uevent>,
    tx: mpsc::Sender<SourceItem>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("events".into())
        .spawn(move || {
            for ev in events {
                if tx.blocking_send(SourceItem::Event(ev)).is_err() {
                    return;
                }
            }
        })
}

type LoadPolicy = dyn Fn() -> Result<Policy, PolicyErrors> + Send + Sync;

/// Reads the policy on a thread of its own (it reads files, and a hung NFS mount
/// or a huge drop-in directory must not hold the loop); the result comes back on
/// `tx`.
fn load_off_loop(
    load: &Arc<LoadPolicy>,
    tx: &mpsc::Sender<Result<Policy, PolicyErrors>>,
) -> std::io::Result<()> {
    let (load, tx) = (load.clone(), tx.clone());
    std::thread::Builder::new()
        .name("policy".into())
        .spawn(move || {
            let _ = tx.blocking_send(load());
        })
        .map(drop)
}

/// The most FC transport events handled in one turn of the loop.
const FC_EVENT_BATCH: usize = 1024;
/// The most uevents taken in one turn of the loop: during a storm the timers,
/// reports and the debounce deadline get their turn between these.
const EVENT_BATCH: usize = 1024;

/// Runs until `Stop` (or every control sender is gone). Start-up has already
/// opened the sources and cold-plugged the agent; this does the boot reconcile,
/// says READY=1 once the boot-time vHBAs are tried, and serves events.
pub async fn run(
    agent: Agent,
    events: mpsc::Receiver<SourceItem>,
    control: mpsc::Receiver<Control>,
    load_policy: impl Fn() -> Result<Policy, PolicyErrors> + Send + Sync + 'static,
    timings: LoopTimings,
) {
    serve(agent, None, events, control, load_policy, timings).await
}

/// Runs as [`run`] does, reading the kernel's uevents off their socket in the
/// loop itself: each datagram is read in place and applied to the graph before
/// the next is read, so that no event is copied or allocated on its way (a storm
/// of unit attentions is hundreds of thousands of them). `events` brings the
/// other sources (udev's).
pub async fn run_with_kernel(
    agent: Agent,
    kernel: AsyncKernelSource,
    events: mpsc::Receiver<SourceItem>,
    control: mpsc::Receiver<Control>,
    load_policy: impl Fn() -> Result<Policy, PolicyErrors> + Send + Sync + 'static,
    timings: LoopTimings,
) {
    serve(agent, Some(kernel), events, control, load_policy, timings).await
}

async fn serve(
    mut agent: Agent,
    mut kernel: Option<AsyncKernelSource>,
    mut events: mpsc::Receiver<SourceItem>,
    mut control: mpsc::Receiver<Control>,
    load_policy: impl Fn() -> Result<Policy, PolicyErrors> + Send + Sync + 'static,
    timings: LoopTimings,
) {
    set_loop_thread(true);
    let load_policy: Arc<LoadPolicy> = Arc::new(load_policy);
    let (loaded_tx, mut loaded_rx) = mpsc::channel(1);
    let mut loading = false;
    let mut reload_again = false;
    let mut reports = agent
        .take_reports()
        .unwrap_or_else(|| mpsc::unbounded_channel().1);
    // FC transport events, where a source was attached: not debounced, since a
    // link event asks for a re-read of one host, which is cheap and wanted now.
    let mut fc_events = agent.take_fc_events();

    let started = Instant::now();
    agent.boot(started);
    agent.write_status();
    let mut ready = false;
    let mut said = String::new();
    // Events are applied to the graph as they come; the deadline is when what
    // they changed is planned, as one batch (the agent holds it meanwhile).
    let mut deadline: Option<TokioInstant> = None;
    let mut events_open = true;
    let mut alarm = Alarm::new();
    let mut timers = Timers::new(TokioInstant::now(), &timings, notify::watchdog_interval());

    loop {
        let polling = !ready || agent.polling();
        timers.poll_while(polling, TokioInstant::now());
        let agent_due = agent.next_due(Instant::now()).map(TokioInstant::from_std);
        let wake = timers.next(polling, agent_due);
        // Biased: control, then the timers (the watchdog must be pinged even while
        // FC events or reports keep arriving), and events last: during a storm the
        // debounce deadline, reports and timers still get their turn, and
        // everything that arrived within one debounce window is planned as one batch.
        tokio::select! {
            biased;
            c = control.recv() => match c {
                Some(Control::Reload) => {
                    notify::reloading();
                    if loading {
                        // The files may have changed since that read began.
                        reload_again = true;
                    } else if let Err(e) = load_off_loop(&load_policy, &loaded_tx) {
                        tracing::error!("cannot start reading the policy, the previous one stays in force: {e}");
                        notify::ready(&agent.summary());
                    } else {
                        loading = true;
                    }
                }
                Some(Control::Stop) | None => break,
            },
            _ = alarm.sleep_until(wake.into_std()) => {
                let due = timers.take_due(TokioInstant::now(), polling, agent_due);
                if due.watchdog {
                    notify::watchdog();
                }
                if due.heartbeat || due.poll || due.agent {
                    let now = Instant::now();
                    if due.heartbeat {
                        // The sweep: what changed with no event on a device
                        // nothing waited on is seen here at the latest.
                        agent.tick(now);
                    } else {
                        agent.poll(now);
                    }
                    settle(&mut agent, &mut ready, &mut said, started, now, &timings);
                    if due.heartbeat {
                        agent.heartbeat();
                    }
                }
            },
            Some(loaded) = loaded_rx.recv() => {
                loading = false;
                let now = Instant::now();
                // Events already received are handled under the old policy first.
                if deadline.take().is_some() {
                    agent.plan_batch(now);
                }
                agent.reload(loaded, now);
                agent.write_status();
                if reload_again {
                    reload_again = false;
                    loading = load_off_loop(&load_policy, &loaded_tx).is_ok();
                }
                if !loading {
                    said = agent.summary();
                    notify::ready(&said);
                    agent.set_ready();
                    ready = true;
                }
            },
            _ = time::sleep_until(deadline.unwrap_or_else(TokioInstant::now)), if deadline.is_some() => {
                deadline = None;
                let now = Instant::now();
                agent.plan_batch(now);
                settle(&mut agent, &mut ready, &mut said, started, now, &timings);
            },
            Some(r) = reports.recv() => {
                let now = Instant::now();
                agent.report(r, now);
                while let Ok(r) = reports.try_recv() {
                    agent.report(r, now);
                }
                settle(&mut agent, &mut ready, &mut said, started, now, &timings);
            },
            item = async { fc_events.as_mut()?.recv().await }, if fc_events.is_some() => match item {
                Some(item) => {
                    // A storm (RSCNs, LIPs) is taken as one batch: each host re-read
                    // once, and the loop free for the timers between batches.
                    let mut items = vec![item];
                    while items.len() < FC_EVENT_BATCH {
                        match fc_events.as_mut().map(|rx| rx.try_recv()) {
                            Some(Ok(item)) => items.push(item),
                            _ => break,
                        }
                    }
                    let now = Instant::now();
                    agent.fc_events(items, now);
                    settle(&mut agent, &mut ready, &mut said, started, now, &timings);
                }
                None => {
                    fc_events = None;
                    agent.fc_events_ended();
                    settle(&mut agent, &mut ready, &mut said, started, Instant::now(), &timings);
                }
            },
            taken = async {
                match kernel.as_mut() {
                    Some(k) => k.take_each(EVENT_BATCH, |item| agent.take_ref(item)).await,
                    None => std::future::pending().await,
                }
            }, if kernel.is_some() => match taken {
                Ok(_) => {
                    if deadline.is_none() {
                        deadline = Some(debounce_deadline(&agent));
                    }
                }
                Err(e) => {
                    tracing::error!("event source failed: {e}");
                    kernel = None;
                    if !events_open {
                        tracing::error!("every event source has closed; state is now kept by polling only");
                    }
                }
            },
            item = events.recv(), if events_open => match item {
                Some(item) => {
                    agent.take(&item);
                    let mut taken = 1;
                    while taken < EVENT_BATCH {
                        let Ok(item) = events.try_recv() else { break };
                        agent.take(&item);
                        taken += 1;
                    }
                    if deadline.is_none() {
                        deadline = Some(debounce_deadline(&agent));
                    }
                }
                None => {
                    events_open = false;
                    if kernel.is_none() {
                        tracing::error!("every event source has closed; state is now kept by polling only");
                    }
                }
            },
        }
    }

    stop(agent, deadline.is_some(), reports, timings).await;
    set_loop_thread(false);
}

/// When events taken now are planned: the policy's debounce from now.
fn debounce_deadline(agent: &Agent) -> TokioInstant {
    TokioInstant::from_std(later(Instant::now(), agent.policy().rescan.debounce))
}

/// After the agent has done something: start-up's progress until READY=1, then
/// STATUS= when the summary changed; the status file and metrics when they did.
fn settle(
    agent: &mut Agent,
    ready: &mut bool,
    said: &mut String,
    started: Instant,
    now: Instant,
    timings: &LoopTimings,
) {
    if !*ready {
        *ready = start_up(agent, started, now, timings);
    } else {
        let summary = agent.summary_at(now);
        if summary != *said {
            notify::status(&summary);
            *said = summary;
        }
    }
    agent.write_status();
}

/// Timers that land this close to a wake-up are served by it: two timers of one
/// cadence (the watchdog's ping and the heartbeat) share their wake-ups.
const SLACK: Duration = Duration::from_millis(10);

/// A timer at a fixed rate from the loop's start: a late wake-up does not push
/// the later ones back, so timers of one origin stay in step.
#[derive(Clone, Copy, Debug)]
struct Cadence {
    every: Duration,
    next: TokioInstant,
}

impl Cadence {
    fn new(origin: TokioInstant, every: Duration) -> Cadence {
        // A zero period would spin the loop.
        let every = every.max(Duration::from_millis(1));
        Cadence {
            every,
            next: TokioInstant::from_std(later(origin.into_std(), every)),
        }
    }

    fn due(&self, now: TokioInstant) -> bool {
        self.next <= now + SLACK
    }

    /// Past a due time: the next one, skipping those missed.
    fn advance(&mut self, now: TokioInstant) {
        let next = TokioInstant::from_std(later(self.next.into_std(), self.every));
        self.next = if next <= now + SLACK {
            TokioInstant::from_std(later(now.into_std(), self.every))
        } else {
            next
        };
    }
}

/// Which of the loop's timers a wake-up serves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Due {
    watchdog: bool,
    heartbeat: bool,
    poll: bool,
    /// The agent's own deadline: a retry's backoff, the periodic scan.
    agent: bool,
}

/// Every timer of the loop besides the debounce, each explicit and bounded: the
/// watchdog's ping (at half `WatchdogSec=`), the status heartbeat (aligned with
/// the ping), the poll while something waits on a change, the agent's deadlines.
/// The loop sleeps until the first of them: on a quiet, healthy host only the
/// watchdog and the heartbeat wake it, together.
#[derive(Debug)]
struct Timers {
    watchdog: Option<Cadence>,
    heartbeat: Cadence,
    poll: Cadence,
    polling: bool,
}

impl Timers {
    fn new(origin: TokioInstant, timings: &LoopTimings, watchdog: Option<Duration>) -> Timers {
        Timers {
            watchdog: watchdog.map(|w| Cadence::new(origin, w)),
            heartbeat: Cadence::new(origin, heartbeat_every(timings.heartbeat, watchdog)),
            poll: Cadence::new(origin, timings.tick),
            polling: true,
        }
    }

    /// Polling starts or stops; a poll that starts after a pause waits one period
    /// (what it waits on has just been read) rather than firing at once.
    fn poll_while(&mut self, polling: bool, now: TokioInstant) {
        if polling && !self.polling && self.poll.next <= now {
            self.poll.next = TokioInstant::from_std(later(now.into_std(), self.poll.every));
        }
        self.polling = polling;
    }

    /// When the loop next has to wake up with no event.
    fn next(&self, polling: bool, agent: Option<TokioInstant>) -> TokioInstant {
        [
            Some(self.heartbeat.next),
            self.watchdog.map(|w| w.next),
            polling.then_some(self.poll.next),
            agent,
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(self.heartbeat.next)
    }

    /// The timers due now, each moved on to its next time.
    fn take_due(&mut self, now: TokioInstant, polling: bool, agent: Option<TokioInstant>) -> Due {
        let mut due = Due {
            agent: agent.is_some_and(|t| t <= now + SLACK),
            ..Due::default()
        };
        if let Some(w) = self.watchdog.as_mut().filter(|w| w.due(now)) {
            w.advance(now);
            due.watchdog = true;
        }
        if self.heartbeat.due(now) {
            self.heartbeat.advance(now);
            due.heartbeat = true;
        }
        if polling && self.poll.due(now) || due.heartbeat {
            // A heartbeat reads everything a poll would.
            if self.poll.due(now) {
                self.poll.advance(now);
            }
            due.poll = polling;
        }
        due
    }
}

/// The heartbeat's period: `heartbeat`, rounded down to a whole number of the
/// watchdog's pings when there is one shorter, so that the two share wake-ups.
fn heartbeat_every(heartbeat: Duration, watchdog: Option<Duration>) -> Duration {
    match watchdog.filter(|w| !w.is_zero() && *w <= heartbeat) {
        Some(w) => {
            let n = heartbeat.as_nanos() / w.as_nanos();
            w.saturating_mul(u32::try_from(n).unwrap_or(u32::MAX))
        }
        None => heartbeat,
    }
}

/// Before READY=1: sends it once every boot-time vHBA has been tried (or the
/// start-up limit has passed); until then pushes systemd's start timeout out and
/// says what start-up waits for. A parent's link that is down does not hold it:
/// the vHBA is made when the link comes up, and STATUS= says so meanwhile.
fn start_up(agent: &mut Agent, started: Instant, now: Instant, timings: &LoopTimings) -> bool {
    let waited = now.saturating_duration_since(started);
    if !agent.boot_settled() && waited < timings.boot_limit {
        notify::extend_timeout(EXTEND_BY);
        notify::status(&format!(
            "starting: creating {}; {}",
            agent.creating().join(", "),
            agent.summary_at(now)
        ));
        return false;
    }
    if !agent.boot_settled() {
        tracing::warn!(
            "ready after {} s with vHBA creates still in the kernel: {}",
            waited.as_secs(),
            agent.creating().join(", ")
        );
    }
    agent.set_ready();
    agent.write_status();
    let summary = agent.summary_at(now);
    notify::ready(&summary);
    tracing::info!("ready: {summary}");
    true
}

/// SIGTERM/SIGINT: no new writes (no vport_create: a SIGKILL inside one breaks the
/// fcoe driver), a bounded wait for writes in the kernel that are not known to
/// hang, then each write still there logged with its host, what and how long.
/// Hung writes run in child processes the agent leaves behind, so it exits.
/// vHBAs are never deleted on the way out: they outlive agent restarts.
async fn stop(
    mut agent: Agent,
    pending: bool,
    mut reports: mpsc::UnboundedReceiver<crate::exec::Report>,
    timings: LoopTimings,
) {
    notify::stopping();
    agent.stop();
    if pending {
        // The graph and counters have taken the events; no step starts.
        agent.plan_batch(Instant::now());
    }
    let until = later(Instant::now(), timings.stop_grace);
    while agent.unfinished() > 0 && Instant::now() < until {
        tokio::select! {
            Some(r) = reports.recv() => agent.report(r, Instant::now()),
            _ = time::sleep(Duration::from_millis(20)) => {}
        }
    }
    while let Ok(r) = reports.try_recv() {
        agent.report(r, Instant::now());
    }
    let left = agent.running();
    for r in &left {
        tracing::warn!(
            hbad_host = %r.host,
            hbad_action = "stop",
            hbad_duration_ms = r.ran.as_millis() as u64,
            "stopping with {} on {} still in the kernel after {:.1} s; its writer \
             process is left to finish",
            r.what,
            r.host,
            r.ran.as_secs_f64()
        );
    }
    agent.write_status();
    tracing::info!(
        "stopped{}",
        if left.is_empty() {
            String::new()
        } else {
            format!(" with {} write(s) still in the kernel", left.len())
        }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timings(tick: u64, heartbeat: u64) -> LoopTimings {
        LoopTimings {
            tick: Duration::from_millis(tick),
            heartbeat: Duration::from_millis(heartbeat),
            ..LoopTimings::default()
        }
    }

    #[test]
    fn the_heartbeat_keeps_step_with_the_watchdog() {
        let s = Duration::from_secs;
        // The unit's WatchdogSec=60s: a ping every 30 s, the heartbeat with it.
        assert_eq!(heartbeat_every(s(30), Some(s(30))), s(30));
        // A faster watchdog: the heartbeat is a whole number of its pings.
        assert_eq!(heartbeat_every(s(30), Some(s(7))), s(28));
        assert_eq!(
            heartbeat_every(s(30), Some(Duration::from_millis(150))),
            s(30)
        );
        // None, or a slower one: the heartbeat's own period.
        assert_eq!(heartbeat_every(s(30), None), s(30));
        assert_eq!(heartbeat_every(s(30), Some(s(90))), s(30));
        assert_eq!(heartbeat_every(s(30), Some(Duration::ZERO)), s(30));
    }

    #[test]
    fn a_quiet_loop_wakes_only_for_the_watchdog_and_the_heartbeat_together() {
        let t0 = TokioInstant::now();
        let mut timers = Timers::new(t0, &timings(1000, 30_000), Some(Duration::from_secs(30)));
        timers.poll_while(false, t0);
        let mut wakes = Vec::new();
        let mut now = t0;
        for _ in 0..4 {
            now = timers.next(false, None);
            wakes.push(now - t0);
            let due = timers.take_due(now, false, None);
            assert!(
                due.watchdog && due.heartbeat && !due.poll && !due.agent,
                "{due:?}"
            );
        }
        let s = Duration::from_secs;
        assert_eq!(wakes, [s(30), s(60), s(90), s(120)]);
        // Something starts to wait: polls at the tick, a period after it began.
        timers.poll_while(true, now);
        assert_eq!(timers.next(true, None), now + s(1));
        // An agent deadline before any timer is the next wake-up, and only it is due.
        let retry = now + Duration::from_millis(300);
        assert_eq!(timers.next(true, Some(retry)), retry);
        let due = timers.take_due(retry, true, Some(retry));
        assert_eq!(
            due,
            Due {
                agent: true,
                ..Due::default()
            }
        );
    }

    #[test]
    fn a_late_wake_up_skips_the_missed_times_and_never_spins() {
        let t0 = TokioInstant::now();
        let mut c = Cadence::new(t0, Duration::from_secs(1));
        let late = t0 + Duration::from_millis(5500);
        assert!(c.due(late));
        c.advance(late);
        assert_eq!(c.next, late + Duration::from_secs(1));
        assert!(!c.due(late));
        // A zero period is a millisecond's.
        let z = Cadence::new(t0, Duration::ZERO);
        assert_eq!(z.next, t0 + Duration::from_millis(1));
    }
}
