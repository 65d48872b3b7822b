//! Per-host workers: one thread per SCSI host, hosts in parallel, carrying every
//! kernel write hbad makes to that host (scans, vport create and delete, marks,
//! device rescans), so a write hung on one host never holds up another host's.
//!
//! A write to `scsi_host/hostN/scan` is synchronous and the kernel serializes the
//! scans of one host, so a worker per host loses nothing and keeps a slow or hung
//! host from holding up the others. Each host has at most one queued scan per
//! scope: a request that a queued scan already covers merges into it, and a
//! host-wide request absorbs the queued target scans. A request is not merged into
//! the scan already running, which may have started before the new LUN was mapped.
//!
//! A write past the timeout is reported as hung. Its thread stays blocked (a sysfs
//! write cannot be cancelled; the daemon's writes run in a child process the worker
//! waits for, so the agent itself can still exit); later writes to that host wait
//! behind it, scans merged, and every other host carries on. Once closed (the
//! agent is stopping) the workers start nothing more: what is queued is dropped.
//! A host whose worker thread cannot be started (EAGAIN under the unit's
//! `TasksMax=`) has its requests answered at once as failed, never queued where
//! no thread would take them; its next request tries to start one again.

use std::collections::HashMap;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use super::errors::{explain, Op};
use crate::plan::HostRef;
use crate::sysfs::writes::{AttrWriter, ScanScope};
use crate::sysfs::Sysfs;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum ScanOutcome {
    Done,
    Failed {
        error: String,
    },
    /// Still running past the timeout; the host is reported hung.
    Hung,
}

#[derive(Clone, Debug, Serialize)]
pub struct ScanReport {
    pub host: HostRef,
    pub scope: ScanScope,
    pub reason: String,
    #[serde(with = "crate::exec::serde_time")]
    pub started: SystemTime,
    pub duration: Duration,
    pub outcome: ScanOutcome,
    /// Requests that merged into this scan besides the first.
    pub merged: u32,
    /// It never ran: no thread could be started for the host's worker (EAGAIN
    /// under the unit's `TasksMax=` or a pids limit). Worth asking again later.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub unstarted: bool,
}

/// One request's handle: its report arrives when the scan it merged into ends.
#[derive(Debug)]
pub struct Ticket {
    host: HostRef,
    scope: ScanScope,
    reason: String,
    asked: Instant,
    rx: Receiver<ScanReport>,
}

impl Ticket {
    /// Waits for the scan; after `timeout` from the request, reports it hung.
    pub fn wait(self, timeout: Duration) -> ScanReport {
        let left = timeout.saturating_sub(self.asked.elapsed());
        match self.rx.recv_timeout(left) {
            Ok(report) => report,
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => ScanReport {
                host: self.host,
                scope: self.scope,
                reason: self.reason,
                started: SystemTime::now()
                    .checked_sub(self.asked.elapsed())
                    .unwrap_or(SystemTime::UNIX_EPOCH),
                duration: self.asked.elapsed(),
                outcome: ScanOutcome::Hung,
                merged: 0,
                unstarted: false,
            },
        }
    }
}

struct Pending {
    scope: ScanScope,
    reason: String,
    /// Requests merged into this scan, the first included.
    requests: u32,
    /// Those that wait on a ticket.
    waiters: Vec<Sender<ScanReport>>,
}

/// A write other than a scan, run once in order with the host's scans. `run`
/// gets `Ok` on the worker, or the error that kept the worker from starting, on
/// the caller's thread, so that every task is answered.
struct Task {
    what: String,
    run: Box<TaskRun>,
}

type TaskRun = dyn FnOnce(Result<(), &std::io::Error>) + Send;

/// Starts a named thread running the closure: `std::thread::Builder` but for
/// tests, which make it fail as a full `TasksMax=` does ([`Scanner::start_threads_with`]).
pub type ThreadStart =
    dyn Fn(String, Box<dyn FnOnce() + Send>) -> std::io::Result<()> + Send + Sync;

fn os_thread(name: String, run: Box<dyn FnOnce() + Send>) -> std::io::Result<()> {
    thread::Builder::new().name(name).spawn(run).map(drop)
}

enum Job {
    Scan(Pending),
    Task(Task),
}

#[derive(Default)]
struct HostState {
    queue: Vec<Job>,
    /// What the worker is writing, and since when.
    running: Option<(String, Instant)>,
}

struct HostWorker {
    state: Mutex<HostState>,
    wake: Condvar,
}

/// A write still in the kernel: which host, what, for how long.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Running {
    pub host: String,
    /// `scan "0 1 -"`, `vport_create 5001...:5001...`, `device/rescan 2:0:0:1`...
    pub what: String,
    pub ran: Duration,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A worker that panicked leaves consistent data behind (plain queues); go on.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Counters for status and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ScanCounters {
    pub requested: u64,
    pub merged: u64,
    pub issued: u64,
    pub failed: u64,
}

pub struct Scanner {
    writer: Arc<dyn AttrWriter>,
    sysfs: Sysfs,
    timeout: Duration,
    workers: Mutex<HashMap<String, Arc<HostWorker>>>,
    counters: Arc<Mutex<ScanCounters>>,
    reports: Mutex<Option<ReportSink>>,
    closed: Arc<std::sync::atomic::AtomicBool>,
    start_thread: Mutex<Arc<ThreadStart>>,
    /// Hosts whose worker thread could not be started, said once until one is.
    unstarted: Mutex<std::collections::HashSet<String>>,
}

impl std::fmt::Debug for Scanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scanner")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Scanner {
    pub fn new(writer: Arc<dyn AttrWriter>, sysfs: Sysfs, timeout: Duration) -> Self {
        Scanner {
            writer,
            sysfs,
            timeout,
            workers: Mutex::new(HashMap::new()),
            counters: Arc::new(Mutex::new(ScanCounters::default())),
            reports: Mutex::new(None),
            closed: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            start_thread: Mutex::new(Arc::new(os_thread)),
            unstarted: Mutex::new(std::collections::HashSet::new()),
        }
    }

    /// Starts workers' threads with `start` from now on: tests make it fail as
    /// the kernel does under a pids limit (EAGAIN).
    pub fn start_threads_with(
        &self,
        start: impl Fn(String, Box<dyn FnOnce() + Send>) -> std::io::Result<()> + Send + Sync + 'static,
    ) {
        *lock(&self.start_thread) = Arc::new(start);
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Every finished scan is also given to `sink` (the daemon's status and
    /// journal), on the worker's thread. Set it before the first request.
    pub fn report_to(&self, sink: impl Fn(ScanReport) + Send + Sync + 'static) {
        *lock(&self.reports) = Some(Arc::new(sink));
    }

    pub fn counters(&self) -> ScanCounters {
        *lock(&self.counters)
    }

    /// Queues a scan, merging it with a queued one that covers it.
    pub fn request(&self, host: &HostRef, scope: ScanScope, reason: &str) -> Ticket {
        let (tx, rx) = mpsc::channel();
        self.queue(host, scope, reason, Some(tx));
        Ticket {
            host: host.clone(),
            scope,
            reason: reason.to_string(),
            asked: Instant::now(),
            rx,
        }
    }

    /// Queues a scan as [`Scanner::request`] does, for a caller that takes its
    /// report from the sink ([`Scanner::report_to`]) alone, as the daemon does:
    /// no channel is made for it (each is an aligned allocation, and a storm on a
    /// large host asks for a scan per target it touched).
    pub fn ask(&self, host: &HostRef, scope: ScanScope, reason: &str) {
        self.queue(host, scope, reason, None);
    }

    fn queue(
        &self,
        host: &HostRef,
        scope: ScanScope,
        reason: &str,
        tx: Option<Sender<ScanReport>>,
    ) {
        match self.worker(host) {
            Ok(worker) => self.queue_scan(&worker, scope, reason, tx),
            Err(e) => self.unstarted_scan(host, scope, reason, &e, tx),
        }
    }

    /// Queues a scan on a worker, merged as [`Scanner::request`] says.
    fn queue_scan(
        &self,
        worker: &HostWorker,
        scope: ScanScope,
        reason: &str,
        tx: Option<Sender<ScanReport>>,
    ) {
        {
            let mut st = lock(&worker.state);
            let mut c = lock(&self.counters);
            c.requested += 1;
            let covering = st.queue.iter_mut().find_map(|j| match j {
                Job::Scan(p) if p.scope.covers(scope) => Some(p),
                _ => None,
            });
            if let Some(p) = covering {
                p.waiters.extend(tx);
                p.requests = p.requests.saturating_add(1);
                c.merged += 1;
            } else {
                // A wider request absorbs the narrower ones already queued.
                let mut waiters = Vec::from_iter(tx);
                let mut requests: u32 = 1;
                let before = st.queue.len();
                st.queue.retain_mut(|j| match j {
                    Job::Scan(p) if scope.covers(p.scope) => {
                        waiters.append(&mut p.waiters);
                        requests = requests.saturating_add(p.requests);
                        false
                    }
                    _ => true,
                });
                c.merged += (before - st.queue.len()) as u64;
                st.queue.push(Job::Scan(Pending {
                    scope,
                    reason: reason.to_string(),
                    requests,
                    waiters,
                }));
            }
        }
        worker.wake.notify_one();
    }

    /// A scan that cannot run, because its host has no worker: answered at once,
    /// to the ticket and to the sink, as failed and not started.
    fn unstarted_scan(
        &self,
        host: &HostRef,
        scope: ScanScope,
        reason: &str,
        error: &std::io::Error,
        tx: Option<Sender<ScanReport>>,
    ) {
        {
            let mut c = lock(&self.counters);
            c.requested += 1;
            c.failed += 1;
        }
        let report = ScanReport {
            host: host.clone(),
            scope,
            reason: reason.to_string(),
            started: SystemTime::now(),
            duration: Duration::ZERO,
            outcome: ScanOutcome::Failed {
                error: unstarted_error(host, error),
            },
            merged: 0,
            unstarted: true,
        };
        let sink = lock(&self.reports).clone();
        if let Some(sink) = sink {
            sink(report.clone());
        }
        if let Some(tx) = tx {
            let _ = tx.send(report);
        }
    }

    /// Runs `run` on the host's worker, after what is queued there. `what` names
    /// the write in hung reports (`vport_create WWPN:WWNN`). `run` gets `Ok` there,
    /// or, when no worker thread can be started for the host, the error at once
    /// on this thread: it is answered either way.
    pub fn submit(
        &self,
        host: &HostRef,
        what: String,
        run: impl FnOnce(Result<(), &std::io::Error>) + Send + 'static,
    ) {
        let worker = match self.worker(host) {
            Ok(w) => w,
            Err(e) => {
                lock(&self.counters).failed += 1;
                run(Err(&e));
                return;
            }
        };
        lock(&worker.state).queue.push(Job::Task(Task {
            what,
            run: Box::new(run),
        }));
        worker.wake.notify_one();
    }

    /// Is a task described as `what` waiting in the host's queue, not yet started?
    pub fn is_queued(&self, host: &HostRef, what: &str) -> bool {
        let Some(worker) = lock(&self.workers).get(&host.devpath).cloned() else {
            return false;
        };
        let st = lock(&worker.state);
        st.queue
            .iter()
            .any(|j| matches!(j, Job::Task(t) if t.what == what))
    }

    /// Every write in the kernel now, with how long it has run, by host.
    pub fn running(&self) -> Vec<Running> {
        let workers = lock(&self.workers);
        let mut out: Vec<Running> = workers
            .iter()
            .filter_map(|(devpath, w)| {
                let (what, since) = lock(&w.state).running.clone()?;
                Some(Running {
                    host: crate::sysfs::devpath_name(devpath).to_string(),
                    what,
                    ran: since.elapsed(),
                })
            })
            .collect();
        out.sort_by(|a, b| a.host.cmp(&b.host));
        out
    }

    /// Writes that have run past the timeout: their hosts are reported hung.
    pub fn hung(&self) -> Vec<Running> {
        let mut out = self.running();
        out.retain(|r| r.ran > self.timeout);
        out
    }

    /// Writes running or queued, over all hosts.
    pub fn busy(&self) -> usize {
        lock(&self.workers)
            .values()
            .map(|w| {
                let st = lock(&w.state);
                st.queue.len() + usize::from(st.running.is_some())
            })
            .sum()
    }

    /// Writes running and not yet past the timeout, and queued writes that will
    /// run: what a stop waits for (not for hosts already hung).
    pub fn unfinished(&self) -> usize {
        lock(&self.workers)
            .values()
            .map(|w| {
                let st = lock(&w.state);
                match &st.running {
                    Some((_, since)) if since.elapsed() > self.timeout => 0,
                    Some(_) => 1,
                    None => st.queue.len(),
                }
            })
            .sum()
    }

    /// Stops taking work: queued writes are dropped and nothing new starts. Writes
    /// already in the kernel run to their end.
    pub fn close(&self) {
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        for w in lock(&self.workers).values() {
            lock(&w.state).queue.clear();
            w.wake.notify_one();
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The host's worker, started on first use. A thread that cannot be started
    /// (EAGAIN: the unit's `TasksMax=`, a pids limit) leaves no worker behind:
    /// the caller answers its request as failed, and the next request for the
    /// host tries again.
    fn worker(&self, host: &HostRef) -> std::io::Result<Arc<HostWorker>> {
        let mut workers = lock(&self.workers);
        if let Some(w) = workers.get(&host.devpath) {
            return Ok(w.clone());
        }
        let w = Arc::new(HostWorker {
            state: Mutex::new(HostState::default()),
            wake: Condvar::new(),
        });
        let ctx = WorkerContext {
            host: host.clone(),
            worker: w.clone(),
            writer: self.writer.clone(),
            path: self.sysfs.scan_path(&host.devpath),
            counters: self.counters.clone(),
            reports: lock(&self.reports).clone(),
            closed: self.closed.clone(),
        };
        let start = lock(&self.start_thread).clone();
        if let Err(e) = start(
            format!("scan-host{}", host.number),
            Box::new(move || ctx.run()),
        ) {
            if lock(&self.unstarted).insert(host.devpath.clone()) {
                tracing::error!(
                    hbad_host = %host,
                    hbad_reason = %e,
                    "{}; its writes fail until a thread can be started",
                    unstarted_error(host, &e)
                );
            }
            return Err(e);
        }
        if lock(&self.unstarted).remove(&host.devpath) {
            tracing::info!(hbad_host = %host, "the worker thread for {host} started");
        }
        workers.insert(host.devpath.clone(), w.clone());
        Ok(w)
    }
}

/// Why a host's write did not run when its worker's thread could not start.
pub(crate) fn unstarted_error(host: &HostRef, e: &std::io::Error) -> String {
    format!(
        "cannot start a worker thread for {host}: {e} (the unit's TasksMax= or a \
         pids limit may be reached)"
    )
}

struct WorkerContext {
    host: HostRef,
    worker: Arc<HostWorker>,
    writer: Arc<dyn AttrWriter>,
    path: std::path::PathBuf,
    counters: Arc<Mutex<ScanCounters>>,
    reports: Option<ReportSink>,
    closed: Arc<std::sync::atomic::AtomicBool>,
}

type ReportSink = Arc<dyn Fn(ScanReport) + Send + Sync>;

impl WorkerContext {
    fn run(self) {
        loop {
            let job = {
                let mut st = lock(&self.worker.state);
                while st.queue.is_empty() || self.closed.load(std::sync::atomic::Ordering::SeqCst) {
                    if self.closed.load(std::sync::atomic::Ordering::SeqCst) {
                        st.queue.clear();
                        return;
                    }
                    st = self
                        .worker
                        .wake
                        .wait(st)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                let job = st.queue.remove(0);
                let what = match &job {
                    Job::Scan(p) => format!("scan \"{}\"", p.scope),
                    Job::Task(t) => t.what.clone(),
                };
                st.running = Some((what, Instant::now()));
                job
            };
            let job = match job {
                Job::Scan(p) => p,
                Job::Task(t) => {
                    (t.run)(Ok(()));
                    lock(&self.worker.state).running = None;
                    continue;
                }
            };
            lock(&self.counters).issued += 1;
            let started = SystemTime::now();
            let t0 = Instant::now();
            let text = job.scope.kernel_text();
            let result = self.writer.write_attr(&self.path, &text);
            let duration = t0.elapsed();
            let outcome = match result {
                Ok(()) => ScanOutcome::Done,
                Err(e) => {
                    lock(&self.counters).failed += 1;
                    let op = Op::Scan {
                        host: self.host.to_string(),
                        text,
                    };
                    ScanOutcome::Failed {
                        error: explain(&op, &e).to_string(),
                    }
                }
            };
            lock(&self.worker.state).running = None;
            let report = ScanReport {
                host: self.host.clone(),
                scope: job.scope,
                reason: job.reason,
                started,
                duration,
                outcome,
                merged: job.requests.saturating_sub(1),
                unstarted: false,
            };
            if let Some(sink) = &self.reports {
                sink(report.clone());
            }
            for w in job.waiters {
                let _ = w.send(report.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    /// Records scans; hosts can be made slow or stuck.
    #[derive(Debug, Default)]
    struct FakeKernel {
        log: Mutex<Vec<(String, String)>>,
        delay: Mutex<HashMap<String, Duration>>,
        stuck: AtomicBool,
        release: (Mutex<bool>, Condvar),
        /// When set, every write waits until this many writes are in flight at once.
        together: Mutex<Option<Arc<std::sync::Barrier>>>,
    }

    impl AttrWriter for FakeKernel {
        fn store(&self, path: &Path, value: &str) -> std::io::Result<()> {
            let host = path
                .components()
                .rev()
                .nth(1)
                .unwrap()
                .as_os_str()
                .to_string_lossy()
                .into_owned();
            let delay = lock(&self.delay).get(&host).copied().unwrap_or_default();
            thread::sleep(delay);
            let barrier = lock(&self.together).clone();
            if let Some(b) = barrier {
                b.wait();
            }
            if host == "host9" && self.stuck.load(Ordering::SeqCst) {
                let (m, cv) = &self.release;
                let mut released = lock(m);
                while !*released {
                    released = cv.wait(released).unwrap();
                }
            }
            lock(&self.log).push((host, value.to_string()));
            Ok(())
        }
    }

    fn host(n: u32) -> HostRef {
        HostRef {
            number: n,
            devpath: format!("/devices/pci0000:00/host{n}"),
        }
    }

    fn release(k: &FakeKernel) {
        let (m, cv) = &k.release;
        *lock(m) = true;
        cv.notify_all();
    }

    /// Waits until the host's worker has taken a scan off its queue.
    fn wait_running(s: &Scanner, h: &HostRef) {
        let w = s.worker(h).unwrap();
        while lock(&w.state).running.is_none() {
            thread::sleep(Duration::from_millis(1));
        }
    }

    fn scanner(k: &Arc<FakeKernel>, timeout: Duration) -> Scanner {
        Scanner::new(k.clone(), Sysfs::new("/sys", "/dev"), timeout)
    }

    #[test]
    fn scan_merges_requests_for_same_target() {
        let k = Arc::new(FakeKernel::default());
        lock(&k.delay).insert("host1".into(), Duration::from_millis(100));
        let s = scanner(&k, Duration::from_secs(10));
        let t = ScanScope::Target {
            channel: 0,
            target: 2,
        };
        // The first starts running at once; the next 500 merge into one queued scan.
        let first = s.request(&host(1), t, "ua");
        wait_running(&s, &host(1));
        let tickets: Vec<Ticket> = (0..500).map(|_| s.request(&host(1), t, "ua")).collect();
        let reports: Vec<ScanReport> = tickets
            .into_iter()
            .map(|t| t.wait(Duration::from_secs(5)))
            .collect();
        assert_eq!(
            first.wait(Duration::from_secs(5)).outcome,
            ScanOutcome::Done
        );
        assert!(reports.iter().all(|r| r.outcome == ScanOutcome::Done));
        assert_eq!(reports[0].merged, 499);
        let log = lock(&k.log).clone();
        assert_eq!(log, vec![("host1".to_string(), "0 2 -".to_string()); 2]);
        assert_eq!(s.counters().issued, 2);
        assert_eq!(s.counters().merged, 499);
    }

    #[test]
    fn host_scan_absorbs_queued_target_scans() {
        let k = Arc::new(FakeKernel::default());
        lock(&k.delay).insert("host1".into(), Duration::from_millis(100));
        let s = scanner(&k, Duration::from_secs(10));
        let _busy = s.request(
            &host(1),
            ScanScope::Target {
                channel: 0,
                target: 9,
            },
            "first",
        );
        wait_running(&s, &host(1));
        let a = s.request(
            &host(1),
            ScanScope::Target {
                channel: 0,
                target: 1,
            },
            "a",
        );
        let b = s.request(
            &host(1),
            ScanScope::Target {
                channel: 0,
                target: 2,
            },
            "b",
        );
        let all = s.request(&host(1), ScanScope::Host, "all");
        for t in [a, b, all] {
            assert_eq!(t.wait(Duration::from_secs(5)).scope, ScanScope::Host);
        }
        let texts: Vec<String> = lock(&k.log).iter().map(|(_, v)| v.clone()).collect();
        assert_eq!(texts, ["0 9 -", "- - -"]);
    }

    #[test]
    fn hosts_scan_in_parallel() {
        let k = Arc::new(FakeKernel::default());
        // Each write returns only once all three hosts are writing at the same time:
        // serialized scans would never get there and would be reported hung.
        *lock(&k.together) = Some(Arc::new(std::sync::Barrier::new(3)));
        let s = scanner(&k, Duration::from_secs(20));
        let tickets: Vec<Ticket> = (1..=3)
            .map(|n| s.request(&host(n), ScanScope::Host, "all"))
            .collect();
        for t in tickets {
            assert_eq!(t.wait(s.timeout()).outcome, ScanOutcome::Done);
        }
        assert_eq!(lock(&k.log).len(), 3);
    }

    #[test]
    fn a_hung_scan_is_reported_and_others_proceed() {
        let k = Arc::new(FakeKernel::default());
        k.stuck.store(true, Ordering::SeqCst);
        let s = scanner(&k, Duration::from_millis(200));
        let stuck = s.request(&host(9), ScanScope::Host, "all");
        let other = s.request(&host(1), ScanScope::Host, "all");
        assert_eq!(
            other.wait(Duration::from_secs(5)).outcome,
            ScanOutcome::Done
        );
        let r = stuck.wait(s.timeout());
        assert_eq!(r.outcome, ScanOutcome::Hung);
        // The worker started a moment after the request (much later on a loaded
        // machine): wait, bounded, for its own clock to pass the timeout too.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while s.hung().is_empty() && std::time::Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(
            s.hung().iter().map(|h| h.host.clone()).collect::<Vec<_>>(),
            ["host9"]
        );
        // A later scan of the hung host waits behind it instead of piling up.
        let later = s.request(
            &host(9),
            ScanScope::Target {
                channel: 0,
                target: 1,
            },
            "ua",
        );
        let later2 = s.request(
            &host(9),
            ScanScope::Target {
                channel: 0,
                target: 1,
            },
            "ua",
        );
        assert_eq!(
            later2.wait(Duration::from_millis(50)).outcome,
            ScanOutcome::Hung
        );
        release(&k);
        assert_eq!(
            later.wait(Duration::from_secs(5)).outcome,
            ScanOutcome::Done
        );
        assert!(s.hung().is_empty());
        assert_eq!(s.counters().issued, 3);
    }

    #[test]
    fn a_worker_that_cannot_start_fails_its_requests_and_the_next_one_starts_it() {
        let k = Arc::new(FakeKernel::default());
        let s = scanner(&k, Duration::from_secs(10));
        let sunk = Arc::new(Mutex::new(Vec::new()));
        let to = sunk.clone();
        s.report_to(move |r| lock(&to).push(r));
        // As under the unit's TasksMax: clone() says EAGAIN.
        s.start_threads_with(|_, _| Err(std::io::Error::from_raw_os_error(libc::EAGAIN)));
        let r = s
            .request(&host(1), ScanScope::Host, "ua")
            .wait(Duration::from_secs(30));
        assert!(r.unstarted, "{r:?}");
        assert!(
            matches!(&r.outcome, ScanOutcome::Failed { error } if error.contains("cannot start a worker thread for host1")),
            "{r:?}"
        );
        assert_eq!(lock(&sunk).len(), 1, "the daemon hears of it too");
        let (tx, rx) = mpsc::channel();
        s.submit(&host(1), "vport_create x".into(), move |started| {
            let _ = tx.send(started.map_err(|e| e.raw_os_error()));
        });
        assert_eq!(
            rx.try_recv(),
            Ok(Err(Some(libc::EAGAIN))),
            "answered at once"
        );
        assert_eq!(s.busy(), 0);
        assert!(lock(&k.log).is_empty());
        // Threads can start again: the next request starts the worker and runs.
        s.start_threads_with(os_thread);
        let r = s
            .request(&host(1), ScanScope::Host, "ua")
            .wait(Duration::from_secs(30));
        assert_eq!(r.outcome, ScanOutcome::Done);
        assert!(!r.unstarted);
        assert_eq!(lock(&k.log).len(), 1);
    }
}
