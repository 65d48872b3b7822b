//! The event loop: source items in batches, ticks, scan reports, reload and stop.
//!
//! One task owns the [`Agent`]; everything reaches it through channels, so a slow
//! kernel write on a scan worker never stalls events, reloads or the watchdog. The
//! watchdog is pinged from this loop and nowhere else: if the loop wedges, systemd
//! notices and restarts the agent.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{self, Instant as TokioInstant, MissedTickBehavior};

use crate::exec::ScanReport;
use crate::policy::{Policy, PolicyErrors};
use crate::uevent::SourceItem;

use super::agent::Agent;
use super::notify;

/// What the outside asks of the loop: `hbad run` maps SIGHUP and SIGTERM/SIGINT here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    Reload,
    Stop,
}

/// Timings of the loop; the debounce comes from the policy.
#[derive(Clone, Copy, Debug)]
pub struct LoopTimings {
    /// How often unannounced state is polled (port_state, vport_state, hung scans).
    pub tick: Duration,
    /// How long a stop waits for scans that are still running.
    pub stop_grace: Duration,
}

impl Default for LoopTimings {
    fn default() -> Self {
        LoopTimings {
            tick: Duration::from_secs(1),
            stop_grace: Duration::from_secs(10),
        }
    }
}

/// The agent's scan reports as a channel the loop can await. The scanner's workers
/// are threads and the loop is a task, so a small thread carries each report across.
pub fn scan_reports(agent: &Agent) -> std::io::Result<mpsc::UnboundedReceiver<ScanReport>> {
    let (tx, rx) = mpsc::unbounded_channel();
    let (std_tx, std_rx) = std::sync::mpsc::channel();
    agent.scanner().report_to(std_tx);
    std::thread::Builder::new()
        .name("scan-reports".into())
        .spawn(move || {
            for r in std_rx {
                if tx.send(r).is_err() {
                    return;
                }
            }
        })?;
    Ok(rx)
}

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

/// Runs until `Stop` (or every control sender is gone). Start-up has already
/// opened the sources and cold-plugged the agent; this does the boot reconcile,
/// says READY=1 once the boot-time vHBAs are settled, and serves events.
pub async fn run(
    mut agent: Agent,
    mut events: mpsc::Receiver<SourceItem>,
    mut reports: mpsc::UnboundedReceiver<ScanReport>,
    mut control: mpsc::Receiver<Control>,
    load_policy: impl Fn() -> Result<Policy, PolicyErrors>,
    timings: LoopTimings,
) {
    let started = std::time::Instant::now();
    agent.boot(started);
    agent.write_status();
    let mut ready = false;
    let mut batch: Vec<SourceItem> = Vec::new();
    let mut deadline: Option<TokioInstant> = None;
    let mut events_open = true;

    let mut ticker = time::interval(timings.tick);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let watchdog = notify::watchdog_interval();
    let mut watchdog_ticker = time::interval(watchdog.unwrap_or(Duration::from_secs(3600)));
    watchdog_ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);

    loop {
        // Biased, and events last: during a storm the debounce deadline, scan
        // reports, ticks and the watchdog still get their turn, and everything that
        // arrived within one debounce window is planned as one batch.
        tokio::select! {
            biased;
            c = control.recv() => match c {
                Some(Control::Reload) => {
                    notify::reloading();
                    // Events already received are handled under the old policy first.
                    if !batch.is_empty() {
                        agent.handle(std::mem::take(&mut batch), std::time::Instant::now());
                        deadline = None;
                    }
                    agent.reload(load_policy(), std::time::Instant::now());
                    agent.write_status();
                    notify::ready(&agent.summary());
                    agent.set_ready();
                    ready = true;
                }
                Some(Control::Stop) | None => break,
            },
            _ = watchdog_ticker.tick(), if watchdog.is_some() => notify::watchdog(),
            _ = time::sleep_until(deadline.unwrap_or_else(TokioInstant::now)), if deadline.is_some() => {
                deadline = None;
                agent.handle(std::mem::take(&mut batch), std::time::Instant::now());
                agent.write_status();
            },
            Some(r) = reports.recv() => {
                agent.scan_report(r);
                agent.write_status();
            },
            _ = ticker.tick() => {
                let now = std::time::Instant::now();
                agent.tick(now);
                agent.write_status();
                if !ready && agent.boot_settled(started, now) {
                    agent.set_ready();
                    agent.write_status();
                    notify::ready(&agent.summary());
                    tracing::info!("ready: {}", agent.summary());
                    ready = true;
                } else if ready {
                    notify::status(&agent.summary());
                }
            },
            item = events.recv(), if events_open => match item {
                Some(item) => {
                    batch.push(item);
                    while let Ok(i) = events.try_recv() {
                        batch.push(i);
                    }
                    if deadline.is_none() {
                        deadline = Some(TokioInstant::now() + agent.policy().rescan.debounce);
                    }
                }
                None => {
                    tracing::error!("every event source has closed; state is now kept by polling only");
                    events_open = false;
                }
            },
        }
    }

    notify::stopping();
    if !batch.is_empty() {
        agent.handle(batch, std::time::Instant::now());
    }
    // Scans are kernel writes on worker threads; give them a bounded time to end.
    // vHBAs are never deleted on the way out: they outlive agent restarts.
    let until = std::time::Instant::now() + timings.stop_grace;
    while agent.scanner().busy() > 0 && std::time::Instant::now() < until {
        time::sleep(Duration::from_millis(20)).await;
    }
    if agent.scanner().busy() > 0 {
        tracing::warn!(
            "stopping with {} scans still in the kernel",
            agent.scanner().busy()
        );
    }
    agent.write_status();
    tracing::info!("stopped");
}
