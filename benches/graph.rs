//! Graph load and apply, measured on sysfs trees of growing size laid out like the
//! kernel's (scsi_debug-style hosts, targets, LUNs with disks).
//!
//! `cargo bench --bench graph` prints, for each size: devices, load time, the heap
//! the graph holds (exact, from a counting allocator) and the resident memory it
//! added, and events per second through `Graph::apply` over a few runs. The
//! per-event cost must stay flat as the device count grows; the last line says
//! how flat it was. `HBAD_BENCH_RUNS=n` sets the runs (default 3).

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::Instant;

use hbad::graph::Graph;
use hbad::sysfs::Sysfs;
use hbad::uevent::{Action, Uevent};

use common::{show_spread, spread, CountingAlloc, Memory};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Events applied per run: 2,500 LUN remove/add cycles of 4 events.
const CYCLES: u32 = 2_500;

struct Layout {
    hosts: u32,
    targets: u32,
    luns: u32,
}

fn write(path: &Path, value: &str) {
    fs::write(path, format!("{value}\n")).unwrap();
}

fn lun_devpath(h: u32, t: u32, l: u32) -> String {
    format!("/devices/pseudo_0/adapter{h}/host{h}/target{h}:0:{t}/{h}:0:{t}:{l}")
}

fn disk_name(h: u32, t: u32, l: u32) -> String {
    format!("sd{h}x{t}x{l}")
}

fn build(root: &Path, layout: &Layout) {
    let sys = root.join("sys");
    for d in ["class/scsi_host", "bus/scsi/devices"] {
        fs::create_dir_all(sys.join(d)).unwrap();
    }
    for h in 0..layout.hosts {
        let host = format!("devices/pseudo_0/adapter{h}/host{h}");
        let class = sys.join(&host).join(format!("scsi_host/host{h}"));
        fs::create_dir_all(&class).unwrap();
        write(&class.join("proc_name"), "scsi_debug");
        write(&class.join("state"), "running");
        write(&class.join("unique_id"), &h.to_string());
        symlink(
            format!("../../{host}/scsi_host/host{h}"),
            sys.join(format!("class/scsi_host/host{h}")),
        )
        .unwrap();
        symlink(
            format!("../../../{host}"),
            sys.join(format!("bus/scsi/devices/host{h}")),
        )
        .unwrap();
        for t in 0..layout.targets {
            let target = format!("{host}/target{h}:0:{t}");
            fs::create_dir_all(sys.join(&target)).unwrap();
            symlink(
                format!("../../../{target}"),
                sys.join(format!("bus/scsi/devices/target{h}:0:{t}")),
            )
            .unwrap();
            for l in 0..layout.luns {
                let lun = lun_devpath(h, t, l);
                let dir = sys.join(lun.trim_start_matches('/'));
                let disk = dir.join("block").join(disk_name(h, t, l));
                fs::create_dir_all(&disk).unwrap();
                for (k, v) in [
                    ("vendor", "Linux"),
                    ("model", "scsi_debug"),
                    ("rev", "0191"),
                    ("type", "0"),
                    ("state", "running"),
                ] {
                    write(&dir.join(k), v);
                }
                write(
                    &dir.join("wwid"),
                    &format!("naa.33333330{h:04x}{t:02x}{l:02x}"),
                );
                write(&disk.join("size"), "16384");
                write(&disk.join("dev"), "8:0");
                symlink(
                    format!("../../..{lun}"),
                    sys.join(format!("bus/scsi/devices/{h}:0:{t}:{l}")),
                )
                .unwrap();
            }
        }
    }
}

/// One LUN going away and coming back, as the kernel reports it: removal, then the
/// scsi_device add, its disk, and a unit attention.
fn cycle(h: u32, t: u32, l: u32) -> [Uevent; 4] {
    let lun = lun_devpath(h, t, l);
    let disk = format!("{lun}/block/{}", disk_name(h, t, l));
    [
        Uevent::new(Action::Remove, &lun, "scsi").with_devtype("scsi_device"),
        Uevent::new(Action::Add, &lun, "scsi").with_devtype("scsi_device"),
        Uevent::new(Action::Add, &disk, "block").with_devtype("disk"),
        Uevent::new(Action::Change, &lun, "scsi")
            .with_devtype("scsi_device")
            .with_prop("SDEV_UA", "REPORTED_LUNS_DATA_HAS_CHANGED"),
    ]
}

fn main() {
    let sizes = [
        Layout {
            hosts: 4,
            targets: 4,
            luns: 32,
        },
        Layout {
            hosts: 8,
            targets: 8,
            luns: 64,
        },
        Layout {
            hosts: 16,
            targets: 16,
            luns: 64,
        },
    ];
    let runs = common::runs(3);
    println!(
        "Graph::load and Graph::apply, {runs} runs of {} events per size \
         (events/s: min–max, median)",
        CYCLES * 4
    );
    println!(
        "{:>7} {:>7} {:>8} {:>9} {:>10} {:>9}  {:<36} {:>9}",
        "LUNs", "nodes", "load ms", "heap MiB", "B/node", "+RSS MiB", "events/s", "µs/event"
    );
    let mut per_event = Vec::new();
    for layout in &sizes {
        let dir = std::env::temp_dir().join(format!(
            "hbad-bench-{}-{}",
            std::process::id(),
            layout.hosts
        ));
        let _ = fs::remove_dir_all(&dir);
        build(&dir, layout);
        let sysfs = Sysfs::new(dir.join("sys"), dir.join("dev"));
        // The graph that is kept: its heap is exact; its RSS delta is the cost on a
        // fresh process, before the allocator has free memory to reuse.
        let before = Memory::now();
        let mut graph = Graph::load(&sysfs);
        let after = Memory::now();
        let heap = after.heap.saturating_sub(before.heap);
        let rss = after.rss_kib.saturating_sub(before.rss_kib);
        // Load time with the tree in the page cache, as sysfs always is.
        let start = Instant::now();
        drop(Graph::load(&sysfs));
        let load = start.elapsed();
        let events: Vec<Uevent> = (0..CYCLES)
            .flat_map(|i| {
                cycle(
                    i % layout.hosts,
                    (i / layout.hosts) % layout.targets,
                    i % layout.luns,
                )
            })
            .collect();
        let mut rates = Vec::new();
        for _ in 0..runs {
            let start = Instant::now();
            let mut changes = 0;
            for ev in &events {
                changes += graph.apply(ev, &sysfs).len();
            }
            let apply = start.elapsed();
            assert!(changes >= events.len(), "every event changed the graph");
            rates.push(events.len() as f64 / apply.as_secs_f64());
        }
        // Every remove/add cycle ends where it began: the graph equals the tree.
        assert_eq!(graph, Graph::load(&sysfs));
        let (_, median, _) = spread(&rates);
        per_event.push(1e6 / median);
        let luns = layout.hosts * layout.targets * layout.luns;
        println!(
            "{:>7} {:>7} {:>8.1} {:>9.1} {:>10.0} {:>9.1}  {:<36} {:>9.1}",
            luns,
            graph.len(),
            load.as_secs_f64() * 1e3,
            heap as f64 / (1024.0 * 1024.0),
            heap as f64 / graph.len() as f64,
            rss as f64 / 1024.0,
            show_spread(&rates, 0),
            1e6 / median
        );
        let _ = fs::remove_dir_all(&dir);
    }
    if let (Some(first), Some(last)) = (per_event.first(), per_event.last()) {
        println!(
            "per-event cost, largest size against smallest: x{:.2} (1.00 is flat)",
            last / first
        );
    }
}
