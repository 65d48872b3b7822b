//! The whole agent on the simulator: source items through the graph, the planner
//! and the scanner, and the real event loop with its debounce.
//!
//! `cargo bench --bench daemon` prints three sections:
//!
//! - memory: VmRSS, VmHWM and live heap before and after building an agent over a
//!   large simulated host (2 FC ports x 2000 LUNs, every LUN seen through both),
//!   and after a 10,000 unit-attention storm on it;
//! - throughput: events per second through `Agent::handle` (source item -> graph
//!   -> plan -> scan request) for unit-attention storms, handled as one batch
//!   (one debounce window) and one event at a time (no debouncing), and for LUN
//!   remove/add churn made by the simulated kernel (then handled, one batch per
//!   kernel operation), on a small and the large host; and the fixed cost of one
//!   batch, which grows with the graph;
//! - pipeline (only when named: `cargo bench --bench daemon -- pipeline`): a
//!   storm's datagrams to the plan on one core, per CPU second, on the small
//!   host, the large one and one of 2 x 8000 LUNs, three ways: received (copied
//!   from a queue into one reused buffer and read in place there, as `hbad run`
//!   reads its kernel socket), read in place where each datagram was built, and
//!   parsed to owned events; the section to `perf record`;
//! - the loop: a 10,000 unit-attention storm across 4 targets of 2 hosts through
//!   `hbad::daemon::run::run` on a current-thread runtime as `hbad run` builds it,
//!   with the default debounce (250 ms) and with 50 ms: scans issued (must be 4)
//!   and the time from the storm's last event to the last scan finishing.
//!
//!
//! and, only when asked (`cargo bench --bench daemon -- limits`, minutes and a few GB
//! of disk for the tree), what systemd/hbad.service's `MemoryMax=`/`TasksMax=` are
//! sized on: `hbad run`, the binary the unit starts, over 2 FC ports x 32,768 LUNs
//! (65,536 SCSI devices), its peak RSS and task count through cold plug, boot, a
//! reload and a stop; and the heap a full resync adds on the same tree.
//!
//! - hung: events per second through `Agent::handle` on 8 hosts with none hung and
//!   with one host's scans stuck in the kernel (intake must not notice).
//!
//! `HBAD_BENCH_RUNS=n` sets how many runs each figure is taken over (default 5).
//! Log records are formatted at INFO into a sink, so their cost is counted as in
//! the daemon, without the journal's socket.

mod common;

use std::path::Path;
use std::sync::mpsc::{self as std_mpsc, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use hbad::daemon::run::run as run_loop;
use hbad::daemon::status::Status;
use hbad::daemon::{Agent, AgentConfig, Control, LoopTimings};
use hbad::exec::{Report, ScanReport};
use hbad::policy::{Environment, Policy};
use hbad::sim::demo::{
    ARRAY_PORT_A, ARRAY_PORT_B, ARRAY_WWNN, FABRIC_A, FABRIC_A_WWN, FABRIC_B, FABRIC_B_WWN,
    HBA_A_PCI, HBA_A_WWNN, HBA_A_WWPN, HBA_B_PCI, HBA_B_WWNN, HBA_B_WWPN,
};
use hbad::sim::{FabricSpec, Flavour, HbaSpec, LunSpec, Sim, SimSpec, TargetPortSpec};
use hbad::sysfs::writes::AttrWriter;
use hbad::sysfs::Hctl;
use hbad::uevent::{parse_kernel, parse_kernel_ref, Action, SourceItem, Uevent};

use common::{peak_heap, reset_peak_heap, show_spread, status_field, CountingAlloc, Memory};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Unit attentions in one storm.
const STORM: usize = 10_000;
/// LUNs behind each FC port of the large host.
const LARGE_LUNS: u64 = 2000;
/// LUNs behind each FC port of the huge host (the pipeline section only).
const HUGE_LUNS: u64 = 8000;
/// Storms per run in the pipeline section: one storm is a few milliseconds of
/// CPU, too short to time alone on a shared machine.
const PIPELINE_ROUNDS: usize = 20;
/// LUN remove/add cycles per churn run.
const CHURN_CYCLES: usize = 400;
/// SCSI devices of the host the unit's limits are sized on: 2 FC ports that both
/// see the same 32,768 volumes.
const UNIT_LUNS: u64 = 65_536;
/// Empty batches per run when timing the fixed cost of one.
const EMPTY_BATCHES: usize = 1000;

fn policy(text: &str) -> Policy {
    Policy::from_str(
        Path::new("bench.toml"),
        text,
        &Environment::fixed("bench-host"),
    )
    .unwrap_or_else(|e| panic!("bench policy: {e}"))
}

/// Two scsi_debug hosts with two targets of eight LUNs each: 4 targets, 32 LUNs.
fn two_hosts_four_targets() -> SimSpec {
    SimSpec::new()
        .hba(HbaSpec::scsi_debug(2, 8))
        .hba(HbaSpec::scsi_debug(2, 8))
}

/// Two FC ports on two fabrics, an array with a port on each presenting the same
/// `luns` volumes to both: every volume is two SCSI devices and two disks.
fn large_fc_host(luns: u64) -> SimSpec {
    let volumes: Vec<LunSpec> = (0..luns)
        .map(|l| {
            LunSpec::new(l, 100 << 30, &format!("BENCH{l:05}"))
                .masked_to(HBA_A_WWPN)
                .masked_to(HBA_B_WWPN)
        })
        .collect();
    let port = |fabric, wwpn, port_id| {
        volumes.iter().cloned().fold(
            TargetPortSpec::new(fabric, wwpn, ARRAY_WWNN, port_id),
            TargetPortSpec::lun,
        )
    };
    SimSpec::new()
        .fabric(FabricSpec::new(FABRIC_A, FABRIC_A_WWN))
        .fabric(FabricSpec::new(FABRIC_B, FABRIC_B_WWN))
        .target(port(FABRIC_A, ARRAY_PORT_A, 0x01_0100))
        .target(port(FABRIC_B, ARRAY_PORT_B, 0x02_0100))
        .hba(HbaSpec::fc(
            "qla2xxx", HBA_A_PCI, HBA_A_WWPN, HBA_A_WWNN, FABRIC_A,
        ))
        .hba(HbaSpec::fc(
            "qla2xxx", HBA_B_PCI, HBA_B_WWPN, HBA_B_WWNN, FABRIC_B,
        ))
}

/// REPORTED LUNS DATA HAS CHANGED on the given LUNs, round robin, as a target
/// reports it on every LUN of the I_T nexus that does I/O.
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

fn lun_paths(sim: &Sim) -> Vec<(Hctl, String)> {
    sim.luns()
        .into_iter()
        .filter_map(|h| sim.lun_devpath(h).map(|d| (h, d)))
        .collect()
}

/// A simulated host with the agent attached, driven without the loop.
struct Host {
    _dir: tempfile::TempDir,
    sim: Sim,
    events: Receiver<Uevent>,
    reports: tokio::sync::mpsc::UnboundedReceiver<Report>,
    agent: Agent,
}

impl Host {
    fn build(spec: &SimSpec) -> (tempfile::TempDir, Sim, Receiver<Uevent>) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let sim = Sim::new(dir.path(), spec).expect("simulated host");
        // Subscribed before the cold plug, as the daemon opens its socket first.
        let events = sim.subscribe(Flavour::Kernel);
        (dir, sim, events)
    }

    fn attach(dir: tempfile::TempDir, sim: Sim, events: Receiver<Uevent>) -> Host {
        let mut agent = Agent::new(
            AgentConfig {
                sysfs: sim.sysfs(),
                status_path: None,
            },
            Arc::new(sim.clone()),
            policy(""),
            Instant::now(),
        );
        let reports = agent.take_reports().expect("reports not yet taken");
        let mut host = Host {
            _dir: dir,
            sim,
            events,
            reports,
            agent,
        };
        host.agent.boot(Instant::now());
        host.settle();
        host
    }

    fn new(spec: &SimSpec) -> Host {
        let (dir, sim, events) = Host::build(spec);
        Host::attach(dir, sim, events)
    }

    /// Feeds the agent what the simulated kernel sent and every scan report until
    /// no scan is queued or running and no event is left.
    fn settle(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            while let Ok(r) = self.reports.try_recv() {
                self.agent.report(r, Instant::now());
            }
            let items: Vec<SourceItem> = self.events.try_iter().map(SourceItem::Event).collect();
            if !items.is_empty() {
                self.agent.handle(items, Instant::now());
                continue;
            }
            if self.agent.scanner().busy() == 0 {
                // A worker marks its scan done only after the kernel write returned,
                // and the simulator sends a write's events inside it: whatever the
                // last scan found is already on the channel.
                let late: Vec<SourceItem> = self.events.try_iter().map(SourceItem::Event).collect();
                if late.is_empty() {
                    return;
                }
                self.agent.handle(late, Instant::now());
                continue;
            }
            // The reports channel is the loop's (async): look again shortly.
            std::thread::sleep(Duration::from_micros(200));
            assert!(
                Instant::now() < deadline,
                "the simulated host never settled"
            );
        }
    }

    fn issued(&self) -> u64 {
        self.agent.scanner().counters().issued
    }
}

fn kib(k: u64) -> String {
    format!("{:.1} MiB", k as f64 / 1024.0)
}

fn mib(bytes: usize) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn memory() {
    println!("== memory: agent over 2 FC ports x {LARGE_LUNS} LUNs ==");
    let m0 = Memory::now();
    let (dir, sim, events) = Host::build(&large_fc_host(LARGE_LUNS));
    let m1 = Memory::now();
    let t = Instant::now();
    let mut host = Host::attach(dir, sim, events);
    let cold_plug = t.elapsed();
    let m2 = Memory::now();
    let luns = lun_paths(&host.sim);
    let scans_before = host.issued();
    let t = Instant::now();
    host.agent.handle(storm(&luns, STORM), Instant::now());
    let handled = t.elapsed();
    host.settle();
    let m3 = Memory::now();
    let row = |stage: &str, m: &Memory| {
        println!(
            "  {stage:<36} VmRSS {:>10}  VmHWM {:>10}  heap {:>10}",
            kib(m.rss_kib),
            kib(m.hwm_kib),
            mib(m.heap)
        );
    };
    row("start", &m0);
    row("simulator built", &m1);
    row("agent cold-plugged and booted", &m2);
    row(&format!("after a {STORM} unit-attention storm"), &m3);
    println!(
        "  graph: {} nodes ({} LUNs); cold plug + boot {:.0} ms",
        host.agent.graph().len(),
        luns.len(),
        cold_plug.as_secs_f64() * 1e3
    );
    // The heap is the agent's own; VmRSS also moves with what the allocator gives
    // back of the simulator's build, so its delta can even be negative.
    println!(
        "  the agent holds {} of heap ({:.0} bytes per graph node); VmRSS moved {:+.1} MiB",
        mib(m2.heap.saturating_sub(m1.heap)),
        m2.heap.saturating_sub(m1.heap) as f64 / host.agent.graph().len() as f64,
        (m2.rss_kib as f64 - m1.rss_kib as f64) / 1024.0
    );
    println!(
        "  the storm: handled in {:.0} ms as one batch, {} scans, heap {:+.1} MiB after it",
        handled.as_secs_f64() * 1e3,
        host.issued() - scans_before,
        (m3.heap as f64 - m2.heap as f64) / (1024.0 * 1024.0)
    );
    println!();
}

/// Events per second through `Agent::handle` for a storm, in batches of `batch`.
/// Returns (events/s, scans issued).
fn storm_rate(host: &mut Host, batch: usize) -> (f64, u64) {
    let luns = lun_paths(&host.sim);
    let items = storm(&luns, STORM);
    let before = host.issued();
    let mut spent = Duration::ZERO;
    let mut items = items.into_iter().peekable();
    while items.peek().is_some() {
        let chunk: Vec<SourceItem> = items.by_ref().take(batch).collect();
        let t = Instant::now();
        host.agent.handle(chunk, Instant::now());
        spent += t.elapsed();
    }
    host.settle();
    (STORM as f64 / spent.as_secs_f64(), host.issued() - before)
}

/// CPU time this thread has used: what a figure "per core" is taken over.
fn thread_cpu() -> Duration {
    common::cpu_time(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// How the bytes of a storm become what the agent takes.
#[derive(Clone, Copy)]
enum Intake<'q> {
    /// Read in place (`parse_kernel_ref`), each event taken before the next is
    /// read: what `hbad run` does with its kernel socket.
    InPlace,
    /// Copied one by one from a queue of datagrams laid back to back into one
    /// reused receive buffer, and read in place there: how `hbad run` gets
    /// them (recvfrom into the source's buffer), with the kernel's copy counted
    /// as this thread's work. Where each datagram sits in its own heap block,
    /// scattered over a large host's heap, `InPlace` also times cache and TLB
    /// misses that the daemon's reads never see.
    Received(&'q SocketQueue),
    /// Parsed into owned events (`parse_kernel`, every property copied) and
    /// handed over as one batch: what the channel sources and `hbad watch` get.
    Owned,
}

/// A storm's datagrams back to back in one buffer, as a socket's queue hands
/// them over in order.
struct SocketQueue {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl SocketQueue {
    fn of(datagrams: &[Vec<u8>]) -> SocketQueue {
        let mut q = SocketQueue {
            bytes: Vec::new(),
            ends: Vec::new(),
        };
        for d in datagrams {
            q.bytes.extend_from_slice(d);
            q.ends.push(q.bytes.len());
        }
        q
    }

    fn datagrams(&self) -> impl Iterator<Item = &[u8]> {
        std::iter::once(0)
            .chain(self.ends.iter().copied())
            .zip(self.ends.iter().copied())
            .map(|(start, end)| &self.bytes[start..end])
    }
}

/// A storm's datagrams, as netlink delivers them.
fn storm_datagrams(host: &Host) -> Vec<Vec<u8>> {
    storm(&lun_paths(&host.sim), STORM)
        .into_iter()
        .map(|item| match item {
            SourceItem::Event(ev) => ev.to_kernel_bytes(),
            _ => unreachable!("a storm is events"),
        })
        .collect()
}

/// Events per second from the kernel's bytes to the plan: a storm's datagrams
/// parsed and taken by the agent, then planned as one batch: the whole pipeline
/// on one core, `rounds` storms in a row (the host settles between them, off the
/// clock). Returns (events per wall second, events per CPU second of this
/// thread, scans issued per storm).
fn parsed_storm_rate(
    host: &mut Host,
    datagrams: &[Vec<u8>],
    intake: Intake<'_>,
    rounds: usize,
) -> (f64, f64, u64) {
    let before = host.issued();
    let (mut spent, mut cpu) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..rounds {
        let (t, c) = (Instant::now(), thread_cpu());
        match intake {
            Intake::InPlace => {
                for d in datagrams {
                    let ev = parse_kernel_ref(d).expect("a datagram the kernel would send");
                    host.agent.take_event(ev);
                }
                host.agent.plan_batch(Instant::now());
            }
            Intake::Received(queue) => {
                let mut buf = vec![0u8; 16 * 1024];
                for d in queue.datagrams() {
                    buf[..d.len()].copy_from_slice(d);
                    let ev = parse_kernel_ref(&buf[..d.len()])
                        .expect("a datagram the kernel would send");
                    host.agent.take_event(ev);
                }
                host.agent.plan_batch(Instant::now());
            }
            Intake::Owned => {
                let items: Vec<SourceItem> = datagrams
                    .iter()
                    .map(|d| {
                        SourceItem::Event(
                            parse_kernel(d).expect("a datagram the kernel would send"),
                        )
                    })
                    .collect();
                host.agent.handle(items, Instant::now());
            }
        }
        spent += t.elapsed();
        cpu += thread_cpu() - c;
        host.settle();
    }
    let events = (datagrams.len() * rounds) as f64;
    (
        events / spent.as_secs_f64(),
        events / cpu.as_secs_f64(),
        (host.issued() - before) / rounds as u64,
    )
}

/// Events per second through `Agent::handle` for LUNs removed (`device/delete`)
/// and found again by a scan of their address. The simulated kernel makes the
/// events first; the agent then handles them as they came, one batch per kernel
/// operation. Kept apart because the simulator copies its model of a host on
/// every operation, and on the same thread that churn leaves the allocator's
/// free lists for the agent's next allocation to consolidate: interleaved, the
/// large host measured the simulator's heap, not hbad. Every cycle ends with the
/// LUN back, so the tree the agent reads is the one the events lead to.
/// Returns (events/s, events).
fn churn_rate(host: &mut Host) -> (f64, usize) {
    let luns = lun_paths(&host.sim);
    let sysfs = host.sim.sysfs();
    let mut batches: Vec<Vec<SourceItem>> = Vec::with_capacity(2 * CHURN_CYCLES);
    for i in 0..CHURN_CYCLES {
        // Spread over the hosts and targets rather than one LUN over and over.
        let (hctl, devpath) = &luns[(i * 7919) % luns.len()];
        host.sim
            .write_attr(&sysfs.path(devpath).join("delete"), "1")
            .expect("device/delete");
        batches.push(host.events.try_iter().map(SourceItem::Event).collect());
        let host_devpath = host.sim.host_devpath(hctl.host).expect("host of the LUN");
        host.sim
            .write_attr(
                &sysfs.scan_path(&host_devpath),
                &format!("{} {} {}", hctl.channel, hctl.target, hctl.lun),
            )
            .expect("scan of the removed LUN's address");
        batches.push(host.events.try_iter().map(SourceItem::Event).collect());
    }
    assert_eq!(
        lun_paths(&host.sim).len(),
        luns.len(),
        "every removed LUN was found again"
    );
    let events: usize = batches.iter().map(Vec::len).sum();
    let nodes = host.agent.graph().len();
    let t = Instant::now();
    for batch in batches {
        host.agent.handle(batch, Instant::now());
    }
    let spent = t.elapsed();
    host.settle();
    assert_eq!(host.agent.graph().len(), nodes, "the graph is whole again");
    (events as f64 / spent.as_secs_f64(), events)
}

fn throughput(name: &str, host: &mut Host, runs: usize) {
    let luns = lun_paths(&host.sim).len();
    println!(
        "-- {name}: {} graph nodes, {luns} LUNs --",
        host.agent.graph().len()
    );
    for batch in [STORM, 1] {
        let mut rates = Vec::new();
        let mut scans = Vec::new();
        for _ in 0..runs {
            let (rate, issued) = storm_rate(host, batch);
            rates.push(rate);
            scans.push(issued as f64);
        }
        let how = if batch == 1 {
            "one event per batch".to_string()
        } else {
            format!("one batch of {batch}")
        };
        println!(
            "  {STORM} unit attentions, {how:<20} {} events/s, scans issued {}",
            show_spread(&rates, 0),
            show_spread(&scans, 0)
        );
    }
    let datagrams = storm_datagrams(host);
    for (intake, how) in [
        (Intake::InPlace, "read in place"),
        (Intake::Owned, "parsed to owned events"),
    ] {
        let (mut rates, mut per_cpu, mut scans) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..runs {
            let (rate, cpu_rate, issued) = parsed_storm_rate(host, &datagrams, intake, 1);
            rates.push(rate);
            per_cpu.push(cpu_rate);
            scans.push(issued as f64);
        }
        println!(
            "  {STORM} unit attentions from datagrams, {how:<22} {} events/s, \
             {} events per CPU second, scans issued {}",
            show_spread(&rates, 0),
            show_spread(&per_cpu, 0),
            show_spread(&scans, 0)
        );
    }
    // What every batch pays however few events it holds: the plan runs over the
    // whole graph, not only over the changes.
    let mut empty = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        for _ in 0..EMPTY_BATCHES {
            host.agent.handle(Vec::new(), Instant::now());
        }
        empty.push(t.elapsed().as_secs_f64() * 1e6 / EMPTY_BATCHES as f64);
    }
    println!(
        "  an empty batch (fixed cost per batch)     {} µs",
        show_spread(&empty, 1)
    );
    let mut rates = Vec::new();
    let mut total = 0;
    for _ in 0..runs {
        let (rate, events) = churn_rate(host);
        rates.push(rate);
        total = events;
    }
    println!(
        "  LUN remove/add churn ({CHURN_CYCLES} cycles, {total} events)   {} events/s",
        show_spread(&rates, 0)
    );
}

/// One storm through the real loop.
struct LoopRun {
    scans: usize,
    /// From the storm's last event entering the channel to the last scan ending.
    settle: Duration,
    /// From the storm's last event to the first scan's write (wall clock).
    first_start: Duration,
    /// How long the storm took to send.
    send: Duration,
    events_counted: u64,
}

fn loop_storm(policy_text: &str, want_debounce: Duration) -> LoopRun {
    let dir = tempfile::tempdir().expect("temporary directory");
    let sim = Sim::new(dir.path(), &two_hosts_four_targets()).expect("simulated host");
    let kernel_events = sim.subscribe(Flavour::Kernel);
    let status_path = dir.path().join("status.json");
    let agent = Agent::new(
        AgentConfig {
            sysfs: sim.sysfs(),
            status_path: Some(status_path.clone()),
        },
        Arc::new(sim.clone()),
        policy(policy_text),
        Instant::now(),
    );
    assert_eq!(agent.policy().rescan.debounce, want_debounce);
    let luns = lun_paths(&sim);
    assert_eq!(luns.len(), 32);
    let scan_writes = |sim: &Sim| {
        sim.writes()
            .iter()
            .filter(|w| w.path.ends_with("scan"))
            .count()
    };
    let scans_before = scan_writes(&sim);

    // Scan reports reach the loop as in `hbad run`; this sink also notes when
    // each arrived.
    let (ended_tx, ended_rx) = std_mpsc::channel::<(Instant, SystemTime)>();
    let to_loop = agent.report_sink();
    agent.scanner().report_to(move |r: ScanReport| {
        let _ = ended_tx.send((Instant::now(), r.started));
        let _ = to_loop.send(Report::Scan(r));
    });
    let (etx, erx) = tokio::sync::mpsc::channel(65536);
    let (ctx, crx) = tokio::sync::mpsc::channel(4);
    let forward = etx.clone();
    std::thread::spawn(move || {
        for ev in kernel_events {
            if forward.blocking_send(SourceItem::Event(ev)).is_err() {
                return;
            }
        }
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let items = storm(&luns, STORM);
    let sim2 = sim.clone();
    let (scans, send, first_start, settle) = rt.block_on(async move {
        let looped = tokio::spawn(run_loop(
            agent,
            erx,
            crx,
            || Ok(policy("")),
            LoopTimings::default(),
        ));
        // Let the loop boot and wait in its select before the storm comes.
        tokio::task::yield_now().await;
        // The storm comes from another thread, as the kernel socket's reader
        // would deliver it.
        let sender = etx.clone();
        let (first, last) = tokio::task::spawn_blocking(move || {
            let first = Instant::now();
            for item in items {
                sender.blocking_send(item).expect("the loop takes events");
            }
            (first, (Instant::now(), SystemTime::now()))
        })
        .await
        .expect("storm sender");
        // Four targets: four scans. Stop once they have ended (or after 10 s);
        // the loop handles anything still batched and waits for its scans before
        // it returns, so a fifth scan would still be counted below.
        let (ended_rx, mut ended) = tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut ended = Vec::new();
            while ended.len() < 4 {
                let left = deadline.saturating_duration_since(Instant::now());
                match ended_rx.recv_timeout(left) {
                    Ok(t) => ended.push(t),
                    Err(_) => break,
                }
            }
            (ended_rx, ended)
        })
        .await
        .expect("report watcher");
        ctx.send(Control::Stop)
            .await
            .expect("the loop takes a stop");
        looped.await.expect("the loop ends");
        let scans = scan_writes(&sim2) - scans_before;
        // A worker counts as idle just before it sends its report: wait for the
        // reports of every scan the kernel saw.
        while ended.len() < scans {
            match ended_rx.recv_timeout(Duration::from_secs(2)) {
                Ok(t) => ended.push(t),
                Err(_) => break,
            }
        }
        let (last, last_wall) = last;
        let first_start = ended
            .iter()
            .map(|e| e.1)
            .min()
            .and_then(|s| s.duration_since(last_wall).ok());
        let last_end = ended.iter().map(|e| e.0).max().map(|t| t - last);
        (scans, last - first, first_start, last_end)
    });
    let status = Status::read(&status_path).expect("the loop wrote its status");
    LoopRun {
        scans,
        settle: settle.unwrap_or(Duration::MAX),
        first_start: first_start.unwrap_or(Duration::MAX),
        send,
        events_counted: status.counters.events,
    }
}

fn the_loop(runs: usize) {
    println!(
        "== the loop: {STORM} unit attentions across 4 targets of 2 hosts, hbad::daemon::run::run =="
    );
    for (text, debounce) in [
        ("", Duration::from_millis(250)),
        ("[rescan]\ndebounce = \"50ms\"\n", Duration::from_millis(50)),
    ] {
        let mut settle = Vec::new();
        let mut first = Vec::new();
        let mut send = Vec::new();
        let mut scans = Vec::new();
        for _ in 0..runs {
            let r = loop_storm(text, debounce);
            assert_eq!(
                r.events_counted, STORM as u64,
                "every event reached the agent"
            );
            settle.push(r.settle.as_secs_f64() * 1e3);
            first.push(r.first_start.as_secs_f64() * 1e3);
            send.push(r.send.as_secs_f64() * 1e3);
            scans.push(r.scans as f64);
        }
        println!(
            "  debounce {:>3} ms: scans issued {}; from the storm's last event: first scan \
             started {} ms, last scan done {} ms (storm sent in {} ms)",
            debounce.as_millis(),
            show_spread(&scans, 0),
            show_spread(&first, 0),
            show_spread(&settle, 0),
            show_spread(&send, 1)
        );
        assert!(
            scans.iter().all(|&s| s == 4.0),
            "a storm on 4 targets must give 4 scans, got {scans:?}"
        );
    }
}

/// One look at a process: resident now and at most, and its tasks (threads of it
/// and of every process below it: what the unit's TasksMax= counts).
#[derive(Clone, Copy, Debug, Default)]
struct Look {
    rss_kib: u64,
    hwm_kib: u64,
    tasks: u64,
}

/// Tasks of `pid` and its descendants, from /proc/PID/task/*/children.
fn tasks_below(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let mut n = status_field(&status, "Threads:");
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return n;
    };
    for task in tasks.flatten() {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
            n += tasks_below(child);
        }
    }
    n
}

fn look(pid: u32) -> Look {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    Look {
        rss_kib: status_field(&status, "VmRSS:"),
        hwm_kib: status_field(&status, "VmHWM:"),
        tasks: tasks_below(pid),
    }
}

/// Watches `pid` until `until` says stop, every 10 ms: the most tasks seen and the
/// last look (VmHWM is the kernel's own peak, so sampling cannot miss it).
fn watch(pid: u32, mut until: impl FnMut() -> bool) -> (Look, u64) {
    let mut max_tasks = 0;
    let mut last = Look::default();
    while !until() {
        let now = look(pid);
        if now.hwm_kib > 0 {
            last = now;
        }
        max_tasks = max_tasks.max(now.tasks);
        std::thread::sleep(Duration::from_millis(10));
    }
    (last, max_tasks)
}

/// `hbad run` over a simulated host of `UNIT_LUNS` LUNs: what systemd/hbad.service's
/// MemoryMax= and TasksMax= are sized on.
fn unit_limits() {
    use std::os::unix::net::UnixDatagram;
    use std::process::{Command, Stdio};

    let volumes = UNIT_LUNS / 2;
    println!(
        "== unit limits: `hbad run` over 2 FC ports x {volumes} LUNs ({UNIT_LUNS} SCSI devices) =="
    );
    let t = Instant::now();
    let (dir, sim, events) = Host::build(&large_fc_host(volumes));
    println!("  simulator built in {:.0} s", t.elapsed().as_secs_f64());
    let sysfs = sim.sysfs();
    let policy_path = dir.path().join("hbad.toml");
    std::fs::write(
        &policy_path,
        format!(
            "[ownership]\nstate_file = \"{}\"\n",
            dir.path().join("owned.json").display()
        ),
    )
    .expect("write the policy");
    let notify_path = dir.path().join("notify");
    let notify = UnixDatagram::bind(&notify_path).expect("notify socket");
    notify
        .set_read_timeout(Some(Duration::from_millis(20)))
        .expect("notify timeout");
    let mut child = Command::new(env!("CARGO_BIN_EXE_hbad"))
        .arg("--sysfs-root")
        .arg(sysfs.root())
        .arg("--dev-root")
        .arg(sysfs.dev_root())
        .arg("--policy")
        .arg(&policy_path)
        .args(["run", "--no-journal", "--udev", "off", "--status-file"])
        .arg(dir.path().join("status.json"))
        .env("NOTIFY_SOCKET", &notify_path)
        .env_remove("WATCHDOG_USEC")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start hbad run");
    let pid = child.id();
    let mut buf = [0u8; 4096];
    let mut ready = |what: &str, deadline: Duration| {
        let t = Instant::now();
        let mut got = false;
        let (seen, tasks) = watch(pid, || {
            if let Ok(n) = notify.recv(&mut buf) {
                got = String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .any(|l| l == "READY=1");
            }
            assert!(
                t.elapsed() < deadline,
                "no READY=1 {what} within {deadline:?}"
            );
            got
        });
        (t.elapsed(), seen, tasks)
    };
    let (to_ready, at_ready, tasks_boot) = ready("at start", Duration::from_secs(1800));
    // Settled for a while: periodic work, polls.
    let settle = Instant::now();
    let (steady, tasks_steady) = watch(pid, || settle.elapsed() > Duration::from_secs(5));
    // SIGHUP: the policy is loaded again (off the loop) and applied.
    // SAFETY: kill(2) on the child's pid, which has not been waited for yet.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGHUP) };
    let (to_reload, reloaded, tasks_reload) = ready("after SIGHUP", Duration::from_secs(600));
    let t = Instant::now();
    // SAFETY: as above.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    let exit = child.wait().expect("wait for hbad run");
    let stop = t.elapsed();
    let max_tasks = tasks_boot.max(tasks_steady).max(tasks_reload);
    let row = |stage: &str, l: &Look| {
        println!(
            "  {stage:<40} VmRSS {:>10}  VmHWM {:>10}  tasks {}",
            kib(l.rss_kib),
            kib(l.hwm_kib),
            l.tasks
        );
    };
    row(
        &format!("ready ({:.1} s after start)", to_ready.as_secs_f64()),
        &at_ready,
    );
    row("5 s later", &steady);
    row(
        &format!("reloaded ({:.1} s after SIGHUP)", to_reload.as_secs_f64()),
        &reloaded,
    );
    println!(
        "  most tasks seen: {max_tasks}; stopped {:.2} s after SIGTERM ({exit})",
        stop.as_secs_f64()
    );

    // A full resync (after lost events) builds a new graph beside the old one: the
    // agent's heap while it does, in this process, on the same tree.
    let t = Instant::now();
    let mut host = Host::attach(dir, sim, events);
    let nodes = host.agent.graph().len();
    let before = Memory::now();
    reset_peak_heap();
    host.agent
        .handle(vec![SourceItem::Overflow], Instant::now());
    let peak = peak_heap();
    println!(
        "  in process: graph of {nodes} nodes (cold plug + boot {:.0} s); a resync's heap \
         peak is {} over the {} held before it",
        t.elapsed().as_secs_f64(),
        mib(peak.saturating_sub(before.heap)),
        mib(before.heap)
    );
    println!();
}

/// Events per second through `Agent::handle` on 8 scsi_debug hosts (2 targets x 4
/// LUNs each) in batches of 100 unit attentions (about one debounce window of a
/// storm), with no host hung and with one host's scans stuck in the kernel: its
/// scans merge behind the stuck one, and intake must not notice.
fn hung_intake(runs: usize) {
    println!("== intake with a hung host: 8 scsi_debug hosts, {STORM} unit attentions in batches of 100 ==");
    let spec = (0..8).fold(SimSpec::new(), |s, _| s.hba(HbaSpec::scsi_debug(2, 4)));
    for hung in [false, true] {
        let mut host = Host::new(&spec);
        let gate = hung.then(|| host.sim.stall_scans(host.sim.hosts()[0]));
        let luns = lun_paths(&host.sim);
        let mut rates = Vec::new();
        for _ in 0..runs {
            let items = storm(&luns, STORM);
            let mut spent = Duration::ZERO;
            let mut items = items.into_iter().peekable();
            while items.peek().is_some() {
                let chunk: Vec<SourceItem> = items.by_ref().take(100).collect();
                let t = Instant::now();
                host.agent.handle(chunk, Instant::now());
                spent += t.elapsed();
            }
            rates.push(STORM as f64 / spent.as_secs_f64());
            // Let the healthy hosts' scans end between runs.
            let t = Instant::now();
            while host.agent.scanner().busy() > usize::from(hung) * 2
                && t.elapsed() < Duration::from_secs(30)
            {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        println!(
            "  {:<14} {} events/s, writes hung at the end: {}",
            if hung { "1 of 8 hung" } else { "none hung" },
            show_spread(&rates, 0),
            host.agent.scanner().hung().len()
        );
        drop(gate);
    }
    println!();
}

fn main() {
    // INFO records are formatted as the daemon's would be, then dropped.
    tracing_subscriber::fmt()
        .with_writer(std::io::sink)
        .with_max_level(tracing::Level::INFO)
        .init();
    let runs = common::runs(5);
    // `cargo bench --bench daemon -- loop` runs one section (cargo adds `--bench`).
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted = |section: &str| only.is_empty() || only.iter().any(|o| o == section);
    println!("hbad daemon benchmark, {runs} runs per figure (min–max, median)\n");
    // Minutes and gigabytes of tree: only when named.
    if only.iter().any(|o| o == "limits") {
        unit_limits();
    }
    // First, so that the high-water mark is this host's and not a later one's.
    if wanted("memory") {
        memory();
    }
    if wanted("throughput") {
        println!("== throughput: Agent::handle (source item -> graph -> plan -> scan request) ==");
        throughput(
            "2 scsi_debug hosts x 2 targets x 8 LUNs",
            &mut Host::new(&two_hosts_four_targets()),
            runs,
        );
        throughput(
            &format!("2 FC ports x {LARGE_LUNS} LUNs"),
            &mut Host::new(&large_fc_host(LARGE_LUNS)),
            runs,
        );
        println!();
    }
    // Datagrams to plan alone, read in place and parsed to owned events in turn
    // (paired runs), on a small host and two large ones: the per-core figure, and
    // what to `perf record`.
    if only.iter().any(|o| o == "pipeline") {
        println!(
            "== pipeline: {STORM} unit attentions from datagrams to the plan, \
             {PIPELINE_ROUNDS} storms per run, events per CPU second =="
        );
        for spec in [
            two_hosts_four_targets(),
            large_fc_host(LARGE_LUNS),
            large_fc_host(HUGE_LUNS),
        ] {
            let mut host = Host::new(&spec);
            let name = format!(
                "{} LUNs, {} nodes",
                lun_paths(&host.sim).len(),
                host.agent.graph().len()
            );
            let datagrams = storm_datagrams(&host);
            let queue = SocketQueue::of(&datagrams);
            let (mut in_place, mut owned, mut received) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..runs {
                for (intake, rates) in [
                    (Intake::Received(&queue), &mut received),
                    (Intake::InPlace, &mut in_place),
                    (Intake::Owned, &mut owned),
                ] {
                    let (_, per_cpu, scans) =
                        parsed_storm_rate(&mut host, &datagrams, intake, PIPELINE_ROUNDS);
                    assert!(scans > 0, "every storm is planned into scans");
                    rates.push(per_cpu);
                }
            }
            println!("  {name:<30} read in place {}", show_spread(&in_place, 0));
            println!("  {name:<30} owned events  {}", show_spread(&owned, 0));
            println!("  {name:<30} received      {}", show_spread(&received, 0));
        }
        println!();
    }
    if wanted("loop") {
        the_loop(runs);
    }
    if wanted("hung") {
        hung_intake(runs);
    }
}
