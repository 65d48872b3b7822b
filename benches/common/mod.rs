//! What the benchmark binaries share: a heap counter and the process's memory as
//! the kernel reports it.
//!
//! Resident memory alone misleads when comparing before and after: freed memory
//! stays resident in the allocator's free lists and is reused by the next
//! allocation, so an RSS delta can hide a structure entirely. The counting
//! allocator gives the exact live heap, RSS gives what the machine pays.

// Each bench binary uses its own subset of this module.
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use hbad::sim::{FabricSpec, HbaSpec, LunSpec, SimSpec, TargetPortSpec};
use hbad::wwn::Wwn;

/// The system allocator, counting the bytes currently allocated.
pub struct CountingAlloc;

static LIVE: AtomicUsize = AtomicUsize::new(0);
/// The most `LIVE` has been since the last `reset_peak_heap`.
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is forwarded unchanged to the system allocator; the counter
// is only arithmetic on the sizes the caller passed in.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as our caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as our caller's.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as our caller's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        p
    }
}

/// Bytes the program holds on the heap now (needs `CountingAlloc` installed as the
/// binary's `#[global_allocator]`).
pub fn heap_bytes() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// The most heap held since the last [`reset_peak_heap`] (or the start).
pub fn peak_heap() -> usize {
    PEAK.load(Ordering::Relaxed)
}

/// Starts a new peak from what is held now.
pub fn reset_peak_heap() {
    PEAK.store(LIVE.load(Ordering::Relaxed), Ordering::Relaxed);
}

/// The process's memory at one moment.
#[derive(Clone, Copy, Debug)]
pub struct Memory {
    /// VmRSS: resident now, KiB.
    pub rss_kib: u64,
    /// VmHWM: the most ever resident, KiB.
    pub hwm_kib: u64,
    /// Live heap bytes (from the counting allocator).
    pub heap: usize,
}

impl Memory {
    pub fn now() -> Memory {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        Memory {
            rss_kib: status_field(&status, "VmRSS:"),
            hwm_kib: status_field(&status, "VmHWM:"),
            heap: heap_bytes(),
        }
    }
}

/// A number from /proc/PID/status (`VmRSS:`, `Threads:` ...); 0 when absent.
pub fn status_field(status: &str, name: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Minimum, median and maximum of a few runs.
pub fn spread(values: &[f64]) -> (f64, f64, f64) {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    v.sort_by(f64::total_cmp);
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

/// `min–max (median m)` with the given number of decimals.
pub fn show_spread(values: &[f64], decimals: usize) -> String {
    let (lo, mid, hi) = spread(values);
    format!("{lo:.decimals$}–{hi:.decimals$} (median {mid:.decimals$})")
}

/// Runs per measurement: `HBAD_BENCH_RUNS`, default `default`.
pub fn runs(default: usize) -> usize {
    std::env::var("HBAD_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}

/// CPU time used so far by this process (`libc::CLOCK_PROCESS_CPUTIME_ID`) or this
/// thread (`libc::CLOCK_THREAD_CPUTIME_ID`): the cost of a figure, which other work
/// on a shared machine does not inflate as it does wall time.
#[allow(dead_code)] // each bench binary uses what it needs
pub fn cpu_time(clock: libc::clockid_t) -> std::time::Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec the call only writes to.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime({clock})");
    std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// The FC ports and array ports of [`fc_machine`].
const HOSTS: u64 = 8;
const TARGET_PORTS: u64 = 8;
const FABRIC: &str = "fab-bench";

/// 8 FC ports and 8 array ports on one fabric: every port sees every array port, so
/// 64 remote ports; `luns` LUNs in all, `luns / 64` behind each remote port. Each
/// volume is masked to one FC port, so every LUN has its own wwid and its own three
/// links (by-path, by-id wwn-, by-id scsi-).
pub fn fc_machine(luns: u64) -> SimSpec {
    let per_port = (luns / TARGET_PORTS).max(1);
    let initiators: Vec<Wwn> = (0..HOSTS)
        .map(|h| Wwn::from_u64(0x2100_0024_ff00_0000 | h))
        .collect();
    let mut spec = SimSpec::new().fabric(FabricSpec::new(
        FABRIC,
        Wwn::from_u64(0x1000_0005_1e00_0001),
    ));
    for t in 0..TARGET_PORTS {
        let mut port = TargetPortSpec::new(
            FABRIC,
            Wwn::from_u64(0x5000_0000_0000_a000 | t),
            Wwn::from_u64(0x5000_0000_0000_b000),
            0x01_0200 | t as u32,
        );
        for l in 0..per_port {
            let initiator = initiators[(l % HOSTS) as usize];
            port = port.lun(
                LunSpec::new(l, 100 << 30, &format!("BENCH{t:02}{l:06}")).masked_to(initiator),
            );
        }
        spec = spec.target(port);
    }
    for (h, wwpn) in initiators.iter().enumerate() {
        spec = spec.hba(HbaSpec::fc(
            "qla2xxx",
            &format!("0000:{:02x}:00.0", 0x3b + h),
            *wwpn,
            Wwn::from_u64(0x2000_0024_ff00_0000 | h as u64),
            FABRIC,
        ));
    }
    spec
}

/// A notify socket as systemd gives one to a `Type=notify` service, drained by a
/// thread that notes when READY=1 came.
pub struct Notify {
    path: std::path::PathBuf,
    ready_at: std::sync::Arc<std::sync::Mutex<Option<std::time::Instant>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Notify {
    pub fn bind(path: &std::path::Path) -> Notify {
        use std::sync::atomic::AtomicBool;
        use std::sync::{Arc, Mutex};
        let _ = std::fs::remove_file(path);
        let sock = std::os::unix::net::UnixDatagram::bind(path).expect("notify socket");
        sock.set_read_timeout(Some(std::time::Duration::from_millis(100)))
            .expect("notify timeout");
        let (ready_at, stop) = (Arc::new(Mutex::new(None)), Arc::new(AtomicBool::new(false)));
        let (r, s) = (ready_at.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !s.load(Ordering::Relaxed) {
                if let Ok(n) = sock.recv(&mut buf) {
                    let now = std::time::Instant::now();
                    if String::from_utf8_lossy(&buf[..n])
                        .lines()
                        .any(|l| l == "READY=1")
                    {
                        r.lock().unwrap().get_or_insert(now);
                    }
                }
            }
        });
        Notify {
            path: path.to_path_buf(),
            ready_at,
            stop,
        }
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Waits for READY=1 from `child`; panics with its log when it exits first or
    /// says nothing for ten minutes. Returns when READY=1 was received.
    pub fn wait_ready(
        &self,
        child: &mut std::process::Child,
        log: &std::path::Path,
    ) -> std::time::Instant {
        let start = std::time::Instant::now();
        loop {
            if let Some(at) = *self.ready_at.lock().unwrap() {
                return at;
            }
            assert!(
                start.elapsed() < std::time::Duration::from_secs(600),
                "no READY=1"
            );
            assert!(
                child.try_wait().expect("wait").is_none(),
                "hbad exited before READY=1: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }
}

impl Drop for Notify {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// `hbad run` as systemd starts it, on a simulated tree: a notify socket, a
/// policy with no vHBAs (only where hbad keeps its ownership state, `state`), no
/// journal, no udev monitor, the status and metrics files and its log (`hbad.log`)
/// in `dir`. `watchdog_usec` is `WATCHDOG_USEC` when given.
pub fn start_agent(
    hbad: &std::path::Path,
    sysfs: &hbad::sysfs::Sysfs,
    dir: &std::path::Path,
    state: &std::path::Path,
    notify: &std::path::Path,
    watchdog_usec: Option<&str>,
) -> std::process::Child {
    use std::process::{Command, Stdio};
    let policy = dir.join("hbad.toml");
    std::fs::write(
        &policy,
        format!(
            "[ownership]\nstate_file = \"{}\"\n",
            state.join("owned.json").display()
        ),
    )
    .expect("write the policy");
    let mut cmd = Command::new(hbad);
    cmd.arg("--sysfs-root")
        .arg(sysfs.root())
        .arg("--dev-root")
        .arg(sysfs.dev_root())
        .arg("--policy")
        .arg(&policy)
        .args(["run", "--no-journal", "--udev", "off", "--status-file"])
        .arg(dir.join("status.json"))
        .arg("--metrics")
        .arg(dir.join("hbad.prom"))
        .env("NOTIFY_SOCKET", notify)
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("hbad.log")).expect("log file"));
    if let Some(usec) = watchdog_usec {
        cmd.env("WATCHDOG_USEC", usec);
    }
    cmd.spawn().expect("start hbad run")
}
