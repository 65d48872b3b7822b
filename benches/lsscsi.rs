//! hbad's listings next to lsscsi's, on the same simulated tree.
//!
//! `cargo bench --bench lsscsi` builds, for each size, a machine shaped like a large
//! hypervisor host with the simulator: 8 FC HBAs on one fabric, 8 array target
//! ports (64 remote ports in all), N LUNs spread over them, each LUN with its disk
//! and three `/dev/disk/by-*` links. On it, as child processes with stdout to
//! /dev/null, it times `hbad luns` against `lsscsi -y SYS` and `hbad tree` against
//! `lsscsi -t -y SYS`, records each child's peak resident memory (`wait4`'s
//! `ru_maxrss`), and in a child of its own times `Graph::load` (every attribute,
//! as `show` and JSON read) and the agent's load (`Detail::Agent`) and measures the
//! heap the graph holds per node (counting allocator). Last, it times `hbad run`
//! from its start to READY=1 on a notify socket (no vHBAs declared), the daemon's
//! cold plug and boot as systemd sees it, and prints its VmRSS then per graph node.
//!
//! The machine is shared and noisy, so every figure is the median of paired runs:
//! each run times hbad and lsscsi back to back (alternating which goes first), and
//! the ratio printed is the median of the per-run ratios.
//!
//! `HBAD_BENCH_DIR=path` where the trees are built (default /dev/shm, else the
//! temporary directory); `HBAD_BENCH_RUNS=n` sets the runs (default 5); `HBAD_BENCH_LUNS=4096,16384`
//! the sizes (default 4096,16384,65536); `HBAD_BENCH_HBAD=path` another hbad binary;
//! `HBAD_BENCH_BASELINE=path` an earlier hbad binary whose listings are timed too,
//! on the same tree and paired with lsscsi the same way (before and after a change). lsscsi is Debian's: installed with apt-get
//! when missing and running as root, else its columns are skipped with a message.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hbad::graph::Graph;
use hbad::sim::Sim;
use hbad::sysfs::{Detail, Sysfs};

use common::{fc_machine as machine, spread, start_agent, CountingAlloc, Memory, Notify};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Wall time and peak resident memory of one child process.
#[derive(Clone, Copy, Debug)]
struct Run {
    wall: Duration,
    max_rss_kib: u64,
}

/// Runs a command to completion with stdout to /dev/null (its stderr is ours).
// Reaped by wait4, which gives its resource usage where `Child::wait` would not.
#[allow(clippy::zombie_processes)]
fn run(program: &Path, args: &[&std::ffi::OsStr]) -> Run {
    let start = Instant::now();
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value of a plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our own child, not yet reaped; status and usage point to live
    // locals of the right types.
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = start.elapsed();
    assert_eq!(reaped, pid, "wait4: {}", std::io::Error::last_os_error());
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{} {args:?} failed (wait status {status})",
        program.display()
    );
    Run {
        wall,
        max_rss_kib: usage.ru_maxrss as u64,
    }
}

/// Debian's lsscsi: on PATH, or installed now when we are root.
fn lsscsi() -> Option<PathBuf> {
    let find = || {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join("lsscsi"))
                .find(|p| p.is_file())
        })
    };
    if let Some(p) = find() {
        return Some(p);
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("lsscsi is not installed and we are not root: its columns are skipped");
        return None;
    }
    println!("installing lsscsi (apt-get install -y lsscsi)");
    let ok = Command::new("apt-get")
        .args(["install", "-y", "-q", "lsscsi"])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let found = find();
    if !ok || found.is_none() {
        println!("apt-get could not install lsscsi: its columns are skipped");
    }
    found
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(values: &[f64]) -> f64 {
    spread(values).1
}

/// One figure over paired runs: hbad's runs, lsscsi's, and the per-run ratios.
fn pair(
    runs: usize,
    hbad: &mut dyn FnMut() -> Run,
    mut lsscsi: Option<&mut dyn FnMut() -> Run>,
) -> (Vec<Run>, Vec<Run>, Vec<f64>) {
    // One unmeasured run each, so both start with the tree and binary cached.
    hbad();
    if let Some(l) = lsscsi.as_mut() {
        l();
    }
    let (mut h, mut l, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs {
        let (a, b) = match lsscsi.as_mut() {
            Some(lsscsi) if i % 2 == 0 => {
                let a = hbad();
                (a, Some(lsscsi()))
            }
            Some(lsscsi) => {
                let b = lsscsi();
                (hbad(), Some(b))
            }
            None => (hbad(), None),
        };
        if let Some(b) = b {
            ratio.push(a.wall.as_secs_f64() / b.wall.as_secs_f64());
            l.push(b);
        }
        h.push(a);
    }
    (h, l, ratio)
}

fn row(figure: &str, h: &[Run], l: &[Run], ratio: &[f64]) {
    let wall = |runs: &[Run]| median(&runs.iter().map(|r| ms(r.wall)).collect::<Vec<_>>());
    let rss = |runs: &[Run]| {
        median(
            &runs
                .iter()
                .map(|r| r.max_rss_kib as f64 / 1024.0)
                .collect::<Vec<_>>(),
        )
    };
    let (lo, mid, hi) = spread(ratio);
    let lsscsi = if l.is_empty() {
        format!("{:>10} {:>8}", "-", "-")
    } else {
        format!("{:>10.1} {:>8.1}", wall(l), rss(l))
    };
    let ratio = if ratio.is_empty() {
        "-".to_string()
    } else {
        format!("{mid:.2}x ({lo:.2}–{hi:.2})")
    };
    println!(
        "  {figure:<28} {:>10.1} {:>8.1} {lsscsi}  {ratio}",
        wall(h),
        rss(h)
    );
}

/// What a re-executed copy of this binary is asked to do (`HBAD_BENCH_ROLE`).
const ROLE: &str = "HBAD_BENCH_ROLE";

/// This binary again, with a role: the tree and the in-process graph are built in
/// children so that this process stays small. A child's `ru_maxrss` starts at its
/// parent's peak (the kernel carries the old address space's high-water mark over
/// `exec`), so a parent that had built a large tree would inflate every figure.
fn role(args: &[&str]) -> String {
    let out = Command::new(std::env::current_exe().unwrap())
        .env(ROLE, args.join("\n"))
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "bench role {args:?} failed");
    String::from_utf8(out.stdout).unwrap()
}

/// Role `build DIR LUNS`: the simulator builds the tree; prints the seconds it took.
fn build(dir: &str, luns: u64) {
    let start = Instant::now();
    let sim = Sim::new(Path::new(dir), &machine(luns)).unwrap_or_else(|e| panic!("simulator: {e}"));
    drop(sim);
    println!("{}", start.elapsed().as_secs_f64());
}

/// Role `graph SYS DEV`: the graph's nodes and heap, read in full and as the agent
/// reads it, then one load time in seconds per line of input, `full` or `agent`
/// (the parent pairs each with an lsscsi run).
fn graph(sys: &str, dev: &str) {
    let sysfs = Sysfs::new(sys, dev);
    let heap_of = |detail| {
        let before = Memory::now();
        let graph = Graph::load_with(&sysfs, detail);
        (graph.len(), Memory::now().heap.saturating_sub(before.heap))
    };
    let (nodes, full) = heap_of(Detail::Full);
    let (_, agent) = heap_of(Detail::Agent);
    println!("{nodes} {full} {agent}");
    let mut line = String::new();
    use std::io::{BufRead, Write};
    let stdin = std::io::stdin();
    while stdin.lock().read_line(&mut line).is_ok_and(|n| n > 0) {
        let detail = match line.trim() {
            "agent" => Detail::Agent,
            _ => Detail::Full,
        };
        line.clear();
        let start = Instant::now();
        drop(Graph::load_with(&sysfs, detail));
        println!("{}", start.elapsed().as_secs_f64());
        let _ = std::io::stdout().flush();
    }
}

/// `hbad run` from its start to READY=1 (the daemon's cold plug and boot, as
/// systemd sees it), with its resident memory then (VmRSS) in place of a peak.
fn agent_ready(hbad: &Path, sysfs: &Sysfs, scratch: &Path) -> Run {
    let dir = tempfile::Builder::new()
        .prefix("agent-")
        .tempdir_in(scratch)
        .expect("temporary directory");
    let state = tempfile::tempdir().expect("temporary directory");
    let notify = Notify::bind(&dir.path().join("notify"));
    let start = Instant::now();
    let mut child = start_agent(hbad, sysfs, dir.path(), state.path(), notify.path(), None);
    let ready = notify.wait_ready(&mut child, &dir.path().join("hbad.log"));
    let status = fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
    // SAFETY: kill(2) on our own child, not yet waited for.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let _ = child.wait();
    Run {
        wall: ready.saturating_duration_since(start),
        max_rss_kib: common::status_field(&status, "VmRSS:"),
    }
}

fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        let args: Vec<&str> = role.lines().collect();
        match args.as_slice() {
            ["build", dir, luns] => build(dir, luns.parse().unwrap()),
            ["graph", sys, dev] => graph(sys, dev),
            other => panic!("unknown bench role {other:?}"),
        }
        return;
    }
    let runs = common::runs(5);
    let sizes: Vec<u64> = std::env::var("HBAD_BENCH_LUNS")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![4096, 16384, 65536]);
    let hbad = std::env::var_os("HBAD_BENCH_HBAD")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_hbad")));
    let baseline = std::env::var_os("HBAD_BENCH_BASELINE").map(PathBuf::from);
    let lsscsi = lsscsi();
    // tmpfs when there is one: in memory like sysfs, and quick to build and delete.
    // `HBAD_BENCH_DIR` elsewhere: a 65,536-LUN tree takes 2.6 million inodes, more
    // than a shared /dev/shm may have free.
    let base = std::env::var_os("HBAD_BENCH_DIR")
        .map(PathBuf::from)
        .or_else(|| Some(PathBuf::from("/dev/shm")).filter(|p| p.is_dir()))
        .unwrap_or_else(std::env::temp_dir);
    println!(
        "hbad against lsscsi on simulated trees (8 FC hosts, 64 remote ports, N LUNs each \
         with a disk and 3 by-* links) under {}; medians of {runs} paired runs, \
         ratio = hbad/lsscsi (median, min–max)",
        base.display()
    );
    let floor = run(Path::new("/bin/true"), &[]).max_rss_kib;
    println!(
        "peak memory (ru_maxrss) counts from this process's own peak, {:.1} MiB: /bin/true shows that",
        floor as f64 / 1024.0
    );
    for &luns in &sizes {
        let dir = base.join(format!("hbad-bench-lsscsi-{}-{luns}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let d = dir.to_string_lossy().into_owned();
        let built: f64 = role(&["build", &d, &luns.to_string()])
            .trim()
            .parse()
            .unwrap();
        let sysfs = Sysfs::new(dir.join("sys"), dir.join("dev"));
        let sys = sysfs.root().as_os_str().to_owned();
        let dev = sysfs.dev_root().as_os_str().to_owned();

        // The graph the daemon keeps, in a child that loads once per request.
        let mut graph_child = Command::new(std::env::current_exe().unwrap())
            .env(
                ROLE,
                format!(
                    "graph\n{}\n{}",
                    sysfs.root().display(),
                    sysfs.dev_root().display()
                ),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut to_graph = graph_child.stdin.take().unwrap();
        let mut from_graph = std::io::BufReader::new(graph_child.stdout.take().unwrap());
        let mut line = String::new();
        use std::io::{BufRead, Write};
        from_graph.read_line(&mut line).unwrap();
        let figures: Vec<usize> = line
            .split_whitespace()
            .map(|n| n.parse().unwrap())
            .collect();
        let (nodes, heap, agent_heap) = (figures[0], figures[1], figures[2]);
        let mut load = |detail: &str| {
            writeln!(to_graph, "{detail}").unwrap();
            line.clear();
            from_graph.read_line(&mut line).unwrap();
            Run {
                wall: Duration::from_secs_f64(line.trim().parse().unwrap()),
                max_rss_kib: 0,
            }
        };
        let per_node = |heap: usize| heap as f64 / nodes.max(1) as f64;
        println!(
            "\n{luns} LUNs: {nodes} graph nodes; heap {:.1} MiB, {:.0} B/node read in full, \
             {:.1} MiB, {:.0} B/node as the agent reads it (tree built in {built:.1} s)",
            heap as f64 / (1024.0 * 1024.0),
            per_node(heap),
            agent_heap as f64 / (1024.0 * 1024.0),
            per_node(agent_heap),
        );
        println!(
            "  {:<28} {:>10} {:>8} {:>10} {:>8}  hbad/lsscsi",
            "figure", "hbad ms", "MiB", "lsscsi ms", "MiB"
        );
        let hbad_cmd = |hbad: &PathBuf, cmd: &'static str| {
            let (hbad, sys, dev) = (hbad.clone(), sys.clone(), dev.clone());
            move || {
                run(
                    &hbad,
                    &[
                        "--sysfs-root".as_ref(),
                        &sys,
                        "--dev-root".as_ref(),
                        &dev,
                        cmd.as_ref(),
                    ],
                )
            }
        };
        let lsscsi_cmd = |transport: bool| {
            let (sys, lsscsi) = (sys.clone(), lsscsi.clone());
            move || {
                let mut args: Vec<&std::ffi::OsStr> = Vec::new();
                if transport {
                    args.push("-t".as_ref());
                }
                args.push("-y".as_ref());
                args.push(&sys);
                run(lsscsi.as_deref().unwrap_or(Path::new("lsscsi")), &args)
            }
        };
        let have = lsscsi.is_some();
        let (mut luns_l, mut tree_l) = (lsscsi_cmd(false), lsscsi_cmd(true));
        for (label, binary) in
            std::iter::once(("hbad", &hbad)).chain(baseline.iter().map(|b| ("baseline", b)))
        {
            let (mut luns_h, mut tree_h) = (hbad_cmd(binary, "luns"), hbad_cmd(binary, "tree"));
            let (h, l, r) = pair(runs, &mut luns_h, have.then_some(&mut luns_l as _));
            row(&format!("{label} luns / lsscsi -y"), &h, &l, &r);
            let (h, l, r) = pair(runs, &mut tree_h, have.then_some(&mut tree_l as _));
            row(&format!("{label} tree / lsscsi -t -y"), &h, &l, &r);
        }
        // Cold plug against lsscsi's whole run: every attribute (`show`, JSON), and
        // what the agent reads.
        let (h, l, r) = pair(runs, &mut || load("full"), have.then_some(&mut luns_l as _));
        row("Graph::load / lsscsi -y", &h, &l, &r);
        let (h, l, r) = pair(
            runs,
            &mut || load("agent"),
            have.then_some(&mut luns_l as _),
        );
        row("agent's load / lsscsi -y", &h, &l, &r);
        drop(to_graph);
        let _ = graph_child.wait();
        // The daemon's start as systemd sees it; its memory once ready.
        for (label, binary) in
            std::iter::once(("hbad", &hbad)).chain(baseline.iter().map(|b| ("baseline", b)))
        {
            let mut ready = || agent_ready(binary, &sysfs, &base);
            let (h, l, r) = pair(runs, &mut ready, have.then_some(&mut luns_l as _));
            row(&format!("{label} run -> READY=1"), &h, &l, &r);
            let rss = median(
                &h.iter()
                    .map(|r| r.max_rss_kib as f64 * 1024.0)
                    .collect::<Vec<_>>(),
            );
            println!(
                "  {:<28} VmRSS after READY=1 {:.1} MiB: {:.0} B per graph node",
                format!("{label} run"),
                rss / (1024.0 * 1024.0),
                rss / nodes.max(1) as f64
            );
        }
        let _ = fs::remove_dir_all(&dir);
    }
}
