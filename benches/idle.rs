//! What an idle agent costs its host: `hbad run` on a healthy simulated host, with
//! nothing happening, as systemd runs it (a notify socket, `WatchdogSec=60s`).
//!
//! `cargo bench --bench idle` builds, for each size, the machine of the lsscsi
//! bench (8 FC HBAs on one fabric, 8 array ports: 64 remote ports, all Online; N
//! LUNs with their disks and links), starts `hbad run` on it, waits for READY=1
//! and a few seconds more, then watches it for `HBAD_BENCH_IDLE_SECONDS` (default
//! 60) and prints, per minute:
//!
//! - wake-ups: voluntary context switches of all its threads, from
//!   `/proc/PID/task/*/status` (a thread that sleeps and is woken switches once per
//!   wake-up), and apart the involuntary ones (preempted while running: they grow
//!   with the CPU time and the machine's load), with each thread's count;
//! - CPU: time on the CPU of all its threads (`/proc/PID/task/*/schedstat`);
//! - status file writes: how often the status file was replaced (its inode
//!   changes on each atomic rename; sampled every 50 ms, the agent never writes
//!   it more often when idle).
//!
//! The tree and the agent's status and metrics files are on tmpfs (/dev/shm) when
//! there is one, as /run/hbad is: on a disk, the fsync of each status write would
//! wait on the journal and add its own context switches. The ownership state file,
//! which hbad keeps out of /dev, is in the usual temporary directory.
//!
//! `HBAD_BENCH_LUNS=64,4096` sets the sizes (the default); `HBAD_BENCH_BASELINE=path`
//! an earlier hbad binary measured the same way on the same tree (before and after
//! a change); `HBAD_BENCH_HBAD=path` another hbad binary than this build's.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hbad::sim::Sim;

use common::{fc_machine, start_agent, Notify};

/// What `systemd/hbad.service` sets: the agent pings every 30 s.
const WATCHDOG_USEC: &str = "60000000";
/// After READY=1, before watching: the boot's scans and writes are over.
const SETTLE: Duration = Duration::from_secs(5);

/// Totals over all threads of a process at one moment, and the context switches
/// of each thread (by tid, with its name).
#[derive(Clone, Debug, Default)]
struct Sample {
    voluntary: u64,
    involuntary: u64,
    cpu_ns: u64,
    threads: BTreeMap<u64, (String, u64)>,
}

fn field(status: &str, name: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn sample(pid: u32) -> Sample {
    let mut s = Sample::default();
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return s;
    };
    for task in tasks.flatten() {
        let dir = task.path();
        if let Ok(status) = fs::read_to_string(dir.join("status")) {
            let (v, n) = (
                field(&status, "voluntary_ctxt_switches:"),
                field(&status, "nonvoluntary_ctxt_switches:"),
            );
            s.voluntary += v;
            s.involuntary += n;
            let name = status
                .lines()
                .find_map(|l| l.strip_prefix("Name:"))
                .unwrap_or("?")
                .trim()
                .to_string();
            let tid = task.file_name().to_string_lossy().parse().unwrap_or(0);
            s.threads.insert(tid, (name, v + n));
        }
        if let Ok(sched) = fs::read_to_string(dir.join("schedstat")) {
            s.cpu_ns += sched
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    s
}

/// One binary's idle figures, per minute.
struct Idle {
    /// Voluntary context switches: a thread went to sleep and was woken.
    wakeups: f64,
    /// Involuntary ones: preempted while running (grows with CPU time and load).
    preempted: f64,
    cpu_s: f64,
    writes: f64,
    /// The threads that switched, by name: how many times each, in the window.
    busiest: String,
}

fn measure(hbad: &Path, sim: &Sim, dir: &Path, state: &Path, watch: Duration) -> Idle {
    let notify = Notify::bind(&dir.join("notify"));
    let mut child = start_agent(
        hbad,
        &sim.sysfs(),
        dir,
        state,
        notify.path(),
        Some(WATCHDOG_USEC),
    );
    let pid = child.id();
    notify.wait_ready(&mut child, &dir.join("hbad.log"));
    std::thread::sleep(SETTLE);
    let status = dir.join("status.json");
    let inode = || fs::metadata(&status).map(|m| m.ino()).unwrap_or(0);
    let before = sample(pid);
    let t = Instant::now();
    let mut last = inode();
    let mut writes = 0u64;
    while t.elapsed() < watch {
        std::thread::sleep(Duration::from_millis(50));
        let now = inode();
        if now != last {
            writes += 1;
            last = now;
        }
    }
    let after = sample(pid);
    let minutes = t.elapsed().as_secs_f64() / 60.0;
    // SAFETY: kill(2) on the child's pid, which has not been waited for yet.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    let _ = child.wait();
    drop(notify);
    // By name and tid: unnamed threads carry the process's name.
    let mut by_name: BTreeMap<String, u64> = BTreeMap::new();
    for (tid, (name, n)) in &after.threads {
        let was = before.threads.get(tid).map_or(0, |(_, n)| *n);
        if *n > was {
            *by_name.entry(format!("{name}[{tid}]")).or_default() += n - was;
        }
    }
    Idle {
        wakeups: after.voluntary.saturating_sub(before.voluntary) as f64 / minutes,
        preempted: after.involuntary.saturating_sub(before.involuntary) as f64 / minutes,
        cpu_s: after.cpu_ns.saturating_sub(before.cpu_ns) as f64 / 1e9 / minutes,
        writes: writes as f64 / minutes,
        busiest: by_name
            .iter()
            .map(|(name, n)| format!("{name} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// Where the tree and the agent's files go: tmpfs when there is one, as the
/// status file's /run/hbad is. On a disk, each status write's fsync waits for the
/// journal, and those waits would be counted as wake-ups.
fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    tempfile::Builder::new()
        .prefix("hbad-idle-")
        .tempdir_in(shm)
        .or_else(|_| tempfile::tempdir())
        .expect("temporary directory")
}

fn main() {
    let sizes: Vec<u64> = std::env::var("HBAD_BENCH_LUNS")
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![64, 4096]);
    let seconds: u64 = std::env::var("HBAD_BENCH_IDLE_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60)
        .clamp(5, 3600);
    let hbad = std::env::var_os("HBAD_BENCH_HBAD")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_hbad")));
    let baseline = std::env::var_os("HBAD_BENCH_BASELINE").map(PathBuf::from);
    println!(
        "== idle `hbad run`: healthy simulated host (8 FC ports, 64 remote ports Online), \
         WatchdogSec=60s, {seconds} s watched after READY=1 + {} s ==",
        SETTLE.as_secs()
    );
    println!(
        "  {:>6}  {:<10} {:>13} {:>10} {:>10} {:>14}  switches by thread",
        "LUNs", "binary", "wake-ups/min", "preempted", "CPU s/min", "status writes"
    );
    for luns in sizes {
        let dir = scratch();
        let sim = Sim::new(dir.path(), &fc_machine(luns)).expect("simulated host");
        let mut binaries = vec![("this", hbad.clone())];
        if let Some(b) = &baseline {
            binaries.push(("baseline", b.clone()));
        }
        for (name, bin) in binaries {
            let run = dir.path().join(format!("run-{name}"));
            fs::create_dir_all(&run).expect("run directory");
            let state = tempfile::tempdir().expect("temporary directory");
            let idle = measure(&bin, &sim, &run, state.path(), Duration::from_secs(seconds));
            println!(
                "  {luns:>6}  {name:<10} {:>13.1} {:>10.1} {:>10.3} {:>14.1}  {}",
                idle.wakeups, idle.preempted, idle.cpu_s, idle.writes, idle.busiest
            );
        }
    }
    println!();
}
