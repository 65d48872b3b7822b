//! The writing commands, run as the `hbad` binary against a copy of the real kernel
//! capture's sysfs (`after/`: FCoE host1 with NPIV and vport-1:0-0/host4, scsi_debug
//! host2 and host3).
//!
//! The binary writes with the real `KernelWriter`. Where a test needs the kernel to
//! answer, the attribute is a FIFO and a thread of the test plays the kernel: it
//! reads what hbad wrote and makes (or removes) the devices, as fc_vport_create does.
//! Where a write must *block*, as a scan does in the kernel, the FIFO is filled
//! first, so hbad's write waits until the test drains it.

mod common;

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const HOST1: &str = "devices/virtual/net/vi/ctlr_1/host1";
const HOST1_WWPN: &str = "0x200002000000000b";
const TARGET_WWPN: &str = "0x200002000000000a";

struct Lab {
    dir: tempfile::TempDir,
}

impl Lab {
    /// A private copy of the capture's final sysfs and an empty policy.
    fn new() -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("cp")
            .arg("-a")
            .arg(common::kernel_capture().join("after/sys"))
            .arg(dir.path().join("sys"))
            .status()
            .unwrap();
        assert!(status.success());
        fs::create_dir_all(dir.path().join("dev")).unwrap();
        let lab = Lab { dir };
        lab.policy("");
        lab
    }

    /// A private copy of a hand-made layout (tests/fixtures/layouts/NAME).
    fn layout(name: &str) -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let src = common::fixture("layouts").join(name);
        for part in ["sys", "dev"] {
            if src.join(part).exists() {
                let ok = Command::new("cp")
                    .arg("-a")
                    .arg(src.join(part))
                    .arg(dir.path().join(part))
                    .status()
                    .unwrap();
                assert!(ok.success());
            }
        }
        fs::create_dir_all(dir.path().join("dev")).unwrap();
        let lab = Lab { dir };
        lab.policy("");
        lab
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn sys(&self, rel: &str) -> PathBuf {
        self.root().join("sys").join(rel)
    }

    /// Writes the policy, its state file kept in the lab (every command reads the
    /// one the policy names).
    fn policy(&self, text: &str) {
        let state = format!(
            "state_file = \"{}\"\n",
            self.root().join("state/owned.json").display()
        );
        let text = if text.contains("[ownership]\n") {
            text.replacen("[ownership]\n", &format!("[ownership]\n{state}"), 1)
        } else {
            format!("{text}\n[ownership]\n{state}")
        };
        fs::write(self.root().join("hbad.toml"), text).unwrap();
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_hbad"));
        c.args(args)
            .env("HBAD_SYSFS_ROOT", self.root().join("sys"))
            .env("HBAD_DEV_ROOT", self.root().join("dev"))
            .env("HBAD_POLICY", self.root().join("hbad.toml"));
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.sys(rel)).unwrap_or_default()
    }

    fn scan_file(&self, host: u32) -> PathBuf {
        self.sys(&format!("class/scsi_host/host{host}/scan"))
    }

    fn fifo(&self, path: &Path) {
        fs::remove_file(path).unwrap();
        let ok = Command::new("mkfifo").arg(path).status().unwrap();
        assert!(ok.success());
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(o), stderr(o)))
}

// ---------------------------------------------------------------------------------
// A blocking attribute: a FIFO filled up, so a write waits until the test drains it.

struct BlockingAttr {
    path: PathBuf,
    file: File,
    filled: usize,
}

impl BlockingAttr {
    fn new(lab: &Lab, path: PathBuf) -> BlockingAttr {
        lab.fifo(&path);
        // Read-write so the open neither blocks nor leaves the FIFO without a reader.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .unwrap();
        let chunk = [b'#'; 4096];
        let mut filled = 0;
        loop {
            match file.write(&chunk) {
                Ok(n) => filled += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        // /proc/PID/fd shows the resolved path, not the class symlink we came through.
        let path = fs::canonicalize(&path).unwrap();
        BlockingAttr { path, file, filled }
    }

    /// Is this process's write to the attribute under way (the file open in it)?
    fn held_by(&self, pid: u32) -> bool {
        fs::read_dir(format!("/proc/{pid}/fd"))
            .into_iter()
            .flatten()
            .filter_map(|e| fs::read_link(e.ok()?.path()).ok())
            .any(|t| t == self.path)
    }

    /// Lets the blocked write through.
    fn release(&mut self) {
        let mut buf = vec![0u8; self.filled];
        let mut got = 0;
        while got < self.filled {
            match self.file.read(&mut buf[got..]) {
                Ok(n) => got += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    thread::sleep(Duration::from_millis(1))
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    /// What was written after the filling (call once the writer is done).
    fn written(&mut self) -> String {
        let mut out = Vec::new();
        let mut buf = [0u8; 256];
        loop {
            match self.file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        String::from_utf8(out).unwrap()
    }
}

fn wait_until(deadline: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < deadline {
        if cond() {
            return true;
        }
        thread::sleep(Duration::from_millis(2));
    }
    false
}

// ---------------------------------------------------------------------------------
// rescan

#[test]
fn rescan_all_has_every_host_scanning_at_once() {
    let lab = Lab::new();
    let mut attrs: Vec<BlockingAttr> = (0..=4)
        .map(|h| BlockingAttr::new(&lab, lab.scan_file(h)))
        .collect();
    let child = lab.spawn(&["rescan", "--all", "--json", "--scan-timeout", "60s"]);
    // Every scan write blocks until released: if hbad scanned hosts one after another,
    // no more than one of them would ever be open at the same time. (hbad writes
    // from child processes, so any process but this test counts.)
    let all_at_once = wait_until(Duration::from_secs(30), || {
        attrs.iter().all(|a| !holders(a).is_empty())
    });
    for a in &mut attrs {
        a.release();
    }
    let out = child.wait_with_output().unwrap();
    assert!(all_at_once, "the five scans never ran at the same time");
    assert!(out.status.success(), "{}", stderr(&out));
    let v = json(&out);
    let scans = v["scans"].as_array().unwrap();
    assert_eq!(scans.len(), 5);
    for s in scans {
        assert_eq!(s["result"], "done", "{s}");
    }
    for a in &mut attrs {
        assert_eq!(a.written(), "- - -");
    }
    // Never a LIP unless asked.
    assert_eq!(lab.read("class/fc_host/host1/issue_lip"), "");
}

/// Measures `rescan --all` over hosts whose scans take different times. Prints the
/// numbers; run with `cargo test --test act -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement: prints timings"]
fn measure_rescan_all_with_uneven_hosts() {
    let lab = Lab::new();
    let delays_ms = [100u64, 200, 400, 800, 1600];
    let mut attrs: Vec<BlockingAttr> = (0..=4)
        .map(|h| BlockingAttr::new(&lab, lab.scan_file(h)))
        .collect();
    let child = lab.spawn(&["rescan", "--all", "--json"]);
    // Each host's scan takes its delay from the moment hbad's write reached it.
    let mut arrived: Vec<Option<Instant>> = vec![None; attrs.len()];
    let mut released = vec![false; attrs.len()];
    while released.iter().any(|r| !r) {
        for (i, a) in attrs.iter_mut().enumerate() {
            if arrived[i].is_none() && !holders(a).is_empty() {
                arrived[i] = Some(Instant::now());
            }
            if let Some(t) = arrived[i] {
                if !released[i] && t.elapsed() >= Duration::from_millis(delays_ms[i]) {
                    a.release();
                    released[i] = true;
                }
            }
        }
        thread::sleep(Duration::from_millis(1));
    }
    let out = child.wait_with_output().unwrap();
    let v = json(&out);
    for s in v["scans"].as_array().unwrap() {
        println!("host{} {} ms", s["host"]["number"], s["duration_ms"]);
    }
    println!(
        "wall {} ms; slowest host {} ms; sum of hosts {} ms",
        v["wall_ms"],
        delays_ms.iter().max().unwrap(),
        delays_ms.iter().sum::<u64>()
    );
}

/// Processes other than this test's that hold the attribute open.
fn holders(attr: &BlockingAttr) -> Vec<u32> {
    let me = std::process::id();
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me && attr.held_by(pid))
        .collect()
}

#[test]
fn a_hung_scan_is_reported_and_hbad_still_exits() {
    let lab = Lab::new();
    let mut stuck = BlockingAttr::new(&lab, lab.scan_file(2));
    let out = lab.run(&[
        "rescan",
        "host1",
        "host2",
        "--scan-timeout",
        "500ms",
        "--json",
    ]);
    // Hung is unfinished, not failed.
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let v = json(&out);
    let results: Vec<(u64, &str)> = v["scans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["host"]["number"].as_u64().unwrap(),
                s["result"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(results, [(1, "done"), (2, "hung")]);
    // hbad has exited; its writer process is still in the write, as a process
    // blocked in the kernel would be, and finishes once the "kernel" lets it.
    assert!(
        wait_until(Duration::from_secs(20), || !holders(&stuck).is_empty()),
        "no writer process left behind"
    );
    stuck.release();
    assert!(wait_until(Duration::from_secs(20), || holders(&stuck).is_empty()));
    assert_eq!(stuck.written(), "- - -");
}

#[test]
fn rescan_target_writes_only_that_targets_scan() {
    let lab = Lab::new();
    let out = lab.run(&["rescan", "--target", TARGET_WWPN]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(lab.read("class/scsi_host/host1/scan"), "0 0 -");
    for h in [0, 2, 3, 4] {
        assert_eq!(
            lab.read(&format!("class/scsi_host/host{h}/scan")),
            "",
            "host{h}"
        );
    }
    assert!(stdout(&out).contains("host1"), "{}", stdout(&out));
}

#[test]
fn rescan_lips_only_when_asked() {
    let lab = Lab::new();
    let out = lab.run(&["rescan", "host1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(lab.read("class/fc_host/host1/issue_lip"), "");
    assert_eq!(lab.read("class/scsi_host/host1/scan"), "- - -");
    let out = lab.run(&["rescan", HOST1_WWPN, "--lip"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(lab.read("class/fc_host/host1/issue_lip"), "1");
}

#[test]
fn rescan_needs_hosts_or_all() {
    let lab = Lab::new();
    let out = lab.run(&["rescan"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(stderr(&out).contains("--all"), "{}", stderr(&out));
    let out = lab.run(&["rescan", "host42"]);
    // A host that is not there is "not found", not a failed scan.
    assert_eq!(out.status.code(), Some(4));
    assert!(
        stderr(&out).contains("names no SCSI host"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_failed_scan_gives_exit_1_and_the_others_still_run() {
    let lab = Lab::new();
    // A scan attribute that is gone: the host was removed while the scan was queued.
    fs::remove_file(lab.scan_file(2)).unwrap();
    let out = lab.run(&["rescan", "host1", "host2", "host3", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let v = json(&out);
    let results: Vec<(u64, String)> = v["scans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["host"]["number"].as_u64().unwrap(),
                s["result"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        results,
        [
            (1, "done".to_string()),
            (2, "failed".to_string()),
            (3, "done".to_string())
        ]
    );
    assert_eq!(lab.read("class/scsi_host/host3/scan"), "- - -");
}

// ---------------------------------------------------------------------------------
// find-luns

#[test]
fn find_luns_says_where_each_lun_is_and_which_did_not_appear() {
    let lab = Lab::new();
    let out = lab.run(&["find-luns", "1", "27", "--json"]);
    // 27 is nowhere after every scan went through: not found.
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let v = json(&out);
    assert_eq!(v["missing"], serde_json::json!([27]));
    let found = v["found"].as_array().unwrap();
    let fc = found
        .iter()
        .find(|f| f["hctl"] == "1:0:0:1")
        .expect("LUN 1 behind the FCoE target");
    assert_eq!(fc["target_wwpn"], TARGET_WWPN);
    assert_eq!(fc["host"], "host1");
    assert_eq!(fc["dev"], "/dev/sdn");
    assert_eq!(fc["new"], false);
    // Targeted: C T L for LUNs 1 and 27 on each known target, no wildcard scans.
    assert_eq!(lab.read("class/scsi_host/host1/scan"), "0 0 27");
    assert!(found.iter().all(|f| f["lun"] == 1));
}

#[test]
fn find_luns_refuses_too_many_luns_or_a_lun_the_kernel_cannot_take_before_any_scan() {
    let lab = Lab::new();
    let before = lab.read("class/scsi_host/host1/scan");
    let many: Vec<String> = (1..=257).map(|l| l.to_string()).collect();
    let mut args = vec!["find-luns"];
    args.extend(many.iter().map(String::as_str));
    let out = lab.run(&args);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("257 LUNs given; find-luns looks for at most 256"),
        "{}",
        stderr(&out)
    );
    for (lun, says) in [
        ("18446744073709551615", "9999999999999999"),
        ("10000000000000000", "9999999999999999"),
        ("+5", "not a LUN number"),
        ("1\u{1b}[31m", "`1\\u{1b}[31m` is not a LUN number"),
    ] {
        let out = lab.run(&["find-luns", "1", lun]);
        assert_eq!(out.status.code(), Some(64), "{lun}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{lun}: {}", stderr(&out));
    }
    // Nothing was written.
    assert_eq!(lab.read("class/scsi_host/host1/scan"), before);
    let out = lab.run(&["find-luns", "9999999999999999", "--json"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
}

#[test]
fn find_luns_names_the_vhba_and_the_stable_paths() {
    // qla2xxx with three vHBAs; vport-7:0-0 (host8) is hbad's "vm-san-a".
    let lab = Lab::layout("qla2xxx-npiv");
    let out = lab.run(&["find-luns", "27", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v = json(&out);
    let found = v["found"].as_array().unwrap();
    assert_eq!(found.len(), 1, "{v}");
    let l = &found[0];
    assert_eq!(l["hctl"], "8:0:0:27");
    assert_eq!(l["vhba"], "vm-san-a");
    assert_eq!(l["target_wwpn"], "0x500601603ce0174b");
    assert_eq!(l["dev"], "/dev/sdc");
    assert!(
        l["links"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "/dev/disk/by-path/pci-0000:08:00.0-fc-0x500601603ce0174b-lun-27"),
        "{l}"
    );
}

// ---------------------------------------------------------------------------------
// create / destroy / apply, with the test playing the FC transport

/// Serves host1's vport_create and vport_delete FIFOs the way fc_vport_create and
/// fc_vport_terminate do: a new vport-1:0-K with its vHBA host, or its removal.
fn serve_npiv(lab: &Lab) {
    let root = lab.root().join("sys");
    for attr in ["vport_create", "vport_delete"] {
        let path = lab.sys(&format!("{HOST1}/fc_host/host1/{attr}"));
        lab.fifo(&path);
        let root = root.clone();
        thread::spawn(move || loop {
            let mut text = String::new();
            // Blocks until hbad opens it for writing; EOF when hbad closes it.
            File::open(&path)
                .unwrap()
                .read_to_string(&mut text)
                .unwrap();
            let (p, n) = text.trim().split_once(':').unwrap();
            if attr == "vport_create" {
                make_vport(&root, p, n);
            } else {
                remove_vport(&root, p);
            }
        });
    }
}

fn put(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

fn class_link(root: &Path, class: &str, name: &str, devpath: &str) {
    std::os::unix::fs::symlink(
        format!("../../{devpath}"),
        root.join("class").join(class).join(name),
    )
    .unwrap();
}

fn make_vport(root: &Path, wwpn: &str, wwnn: &str) {
    let k = (1..)
        .find(|k| !root.join(format!("{HOST1}/vport-1:0-{k}")).exists())
        .unwrap();
    let vname = format!("vport-1:0-{k}");
    let vport = format!("{HOST1}/{vname}");
    let class = root.join(&vport).join("fc_vports").join(&vname);
    put(&class.join("port_name"), &format!("0x{wwpn}\n"));
    put(&class.join("node_name"), &format!("0x{wwnn}\n"));
    put(&class.join("vport_state"), "Initializing\n");
    put(&class.join("symbolic_name"), "");
    class_link(
        root,
        "fc_vports",
        &vname,
        &format!("{vport}/fc_vports/{vname}"),
    );
    let m = 10 + k;
    let host = format!("{vport}/host{m}");
    let fc = root.join(&host).join(format!("fc_host/host{m}"));
    put(&fc.join("port_name"), &format!("0x{wwpn}\n"));
    put(&fc.join("node_name"), &format!("0x{wwnn}\n"));
    put(&fc.join("port_state"), "Linkdown\n");
    put(
        &root
            .join(&host)
            .join(format!("scsi_host/host{m}/proc_name")),
        "fcoe\n",
    );
    put(
        &root.join(&host).join(format!("scsi_host/host{m}/scan")),
        "",
    );
    class_link(
        root,
        "scsi_host",
        &format!("host{m}"),
        &format!("{host}/scsi_host/host{m}"),
    );
    class_link(
        root,
        "fc_host",
        &format!("host{m}"),
        &format!("{host}/fc_host/host{m}"),
    );
}

fn remove_vport(root: &Path, wwpn: &str) {
    for entry in fs::read_dir(root.join(HOST1)).unwrap() {
        let dir = entry.unwrap().path();
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("vport-") {
            continue;
        }
        let pn = fs::read_to_string(dir.join("fc_vports").join(&name).join("port_name"))
            .unwrap_or_default();
        if pn.trim() != format!("0x{wwpn}") {
            continue;
        }
        for class in ["fc_vports", "scsi_host", "fc_host"] {
            for link in fs::read_dir(root.join("class").join(class)).unwrap() {
                let link = link.unwrap().path();
                let target = fs::read_link(&link).unwrap();
                if target.to_string_lossy().contains(&format!("/{name}/")) {
                    fs::remove_file(link).unwrap();
                }
            }
        }
        fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn create_then_destroy_by_name() {
    let lab = Lab::new();
    serve_npiv(&lab);
    let out = lab.run(&[
        "create",
        "--parent",
        HOST1_WWPN,
        "--wwpn",
        "5001a4a000000c01",
        "--wwnn",
        "5001a4a000000c00",
        "--name",
        "scratch",
        "--json",
    ]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let v = json(&out);
    assert_eq!(v["result"], "created");
    assert_eq!(v["vport"], "vport-1:0-1");
    assert_eq!(v["host"], "host11");
    assert_eq!(v["owner"]["by"], "symbolic_name");
    assert_eq!(
        lab.read(&format!(
            "{HOST1}/vport-1:0-1/fc_vports/vport-1:0-1/symbolic_name"
        )),
        "hbad:scratch"
    );
    // Again: already there, nothing written.
    let again = lab.run(&[
        "create",
        "--parent",
        "host1",
        "--wwpn",
        "5001a4a000000c01",
        "--wwnn",
        "5001a4a000000c00",
        "--name",
        "scratch",
        "--json",
    ]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(json(&again)["result"], "already_present");
    assert!(!lab.sys(&format!("{HOST1}/vport-1:0-2")).exists());

    let out = lab.run(&["destroy", "scratch"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("vport-1:0-1"), "{}", stdout(&out));
    assert!(!lab.sys(&format!("{HOST1}/vport-1:0-1")).exists());
}

#[test]
fn destroy_refuses_physical_ports_and_vports_hbad_did_not_make() {
    let lab = Lab::new();
    let out = lab.run(&["destroy", "host1", "--force"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("not an NPIV vport"),
        "{}",
        stderr(&out)
    );
    // vport-1:0-0 (host4) was made by hand in the capture: empty symbolic_name.
    let out = lab.run(&["destroy", "host4"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
    assert_eq!(lab.read("class/fc_host/host1/vport_delete"), "");
}

#[test]
fn create_that_never_appears_is_rolled_back() {
    // Plain files: the write "succeeds" and no vHBA ever appears.
    let lab = Lab::new();
    let out = lab.run(&[
        "create",
        "--parent",
        HOST1_WWPN,
        "--wwpn",
        "5001a4a000000c01",
        "--wwnn",
        "5001a4a000000c00",
        "--vport-timeout",
        "100ms",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("rolled back"), "{}", stderr(&out));
    assert_eq!(
        lab.read("class/fc_host/host1/vport_create"),
        "5001a4a000000c01:5001a4a000000c00"
    );
    assert_eq!(
        lab.read("class/fc_host/host1/vport_delete"),
        "5001a4a000000c01:5001a4a000000c00"
    );
}

#[test]
fn an_old_kernel_takes_vport_writes_under_scsi_host() {
    let lab = Lab::layout("old-kernel-scsi-host-vports");
    let host3 = "devices/pci0000:00/0000:00:1c.0/0000:05:00.0/host3";
    let out = lab.run(&[
        "create",
        "--parent",
        "auto",
        "--wwpn",
        "5001a4a000000c01",
        "--wwnn",
        "5001a4a000000c00",
        "--vport-timeout",
        "50ms",
    ]);
    // Plain files make no vHBA: rolled back, through the same old-style directory.
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    for attr in ["vport_create", "vport_delete"] {
        assert_eq!(
            lab.read(&format!("{host3}/scsi_host/host3/{attr}")),
            "5001a4a000000c01:5001a4a000000c00",
            "{attr}"
        );
        assert!(!lab.sys(&format!("{host3}/fc_host/host3/{attr}")).exists());
    }
}

#[test]
fn apply_creates_declared_vhbas_and_then_there_is_nothing_to_do() {
    let lab = Lab::new();
    serve_npiv(&lab);
    lab.policy(&format!(
        r#"
[[vhba]]
name = "db"
parent_wwpn = "{HOST1_WWPN}"
wwpn = "5001a4a000000d01"
wwnn = "5001a4a000000d00"

[[vhba]]
name = "nowhere"
parent_wwpn = "0x2100000000000001"
wwpn = "5001a4a000000e01"
wwnn = "5001a4a000000e00"
"#
    ));
    // Before: apply would create "db", so the check says changes are pending.
    let check = lab.run(&["plan", "--check"]);
    assert_eq!(check.status.code(), Some(2), "{}", stderr(&check));
    let out = lab.run(&["apply", "--json"]);
    // "nowhere" has no parent: it waits, so the run is unfinished (2), not failed.
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let v = json(&out);
    let steps = v["steps"].as_array().unwrap();
    let results: Vec<(&str, &str)> = steps
        .iter()
        .map(|s| {
            (
                s["step"]["action"].as_str().unwrap(),
                s["result"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(results, [("create_vhba", "done"), ("wait", "waiting")]);
    assert_eq!(
        lab.read(&format!(
            "{HOST1}/vport-1:0-1/fc_vports/vport-1:0-1/symbolic_name"
        )),
        "hbad:db"
    );
    let plan = lab.run(&["plan", "--json"]);
    let p = json(&plan);
    let actions: Vec<&str> = p["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["wait"], "{p}");
    // Waiting changes nothing apply could do: no changes pending.
    let check = lab.run(&["plan", "--check"]);
    assert_eq!(check.status.code(), Some(0), "{}", stderr(&check));
    // Applying again writes nothing new.
    let again = lab.run(&["apply"]);
    assert_eq!(again.status.code(), Some(2));
    assert!(!lab.sys(&format!("{HOST1}/vport-1:0-2")).exists());
}

#[test]
fn plan_counts_a_vhba_recorded_in_the_state_file_as_hbads() {
    use hbad::ownership::{OwnedRecord, OwnedState};
    // A vHBA whose driver refused the mark: an empty symbolic_name, and a record.
    let lab = Lab::new();
    make_vport(
        &lab.root().join("sys"),
        "5001a4a000000d01",
        "5001a4a000000d00",
    );
    OwnedState::new(lab.root().join("state/owned.json"))
        .record(
            "5001a4a000000d01".parse().unwrap(),
            OwnedRecord {
                name: "db".into(),
                wwnn: "5001a4a000000d00".parse().unwrap(),
                why: "vport-1:0-1 does not take a symbolic_name (EACCES)".into(),
                mark_pending: false,
            },
        )
        .unwrap();
    let actions = |out: &Output| -> Vec<String> {
        assert!(out.status.success(), "{}{}", stdout(out), stderr(out));
        json(out)["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["action"].as_str().unwrap().to_string())
            .collect()
    };
    lab.policy(&format!(
        "[[vhba]]\nname = \"db\"\nparent_wwpn = \"{HOST1_WWPN}\"\n\
         wwpn = \"5001a4a000000d01\"\nwwnn = \"5001a4a000000d00\"\n"
    ));
    // Declared and recorded: nothing to mark.
    assert!(actions(&lab.run(&["plan", "--json"])).is_empty());
    // Left out of the policy: hbad's to keep, or to delete when pruning.
    lab.policy("");
    assert_eq!(actions(&lab.run(&["plan", "--json"])), ["keep"]);
    lab.policy("[ownership]\nprune = true\n");
    assert_eq!(actions(&lab.run(&["plan", "--json"])), ["delete_vhba"]);
    // A state file that is not hbad's reads as no records, with a warning: the
    // vHBA is no longer known as hbad's, so kept, not pruned. `plan` only shows:
    // the file is left as it is, for `apply` to move aside and rebuild.
    let state = lab.root().join("state/owned.json");
    let names = || {
        let mut n: Vec<String> = fs::read_dir(lab.root().join("state"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        n.sort();
        n
    };
    let before = names();
    fs::write(&state, "{not json").unwrap();
    let out = lab.run(&["plan", "--json"]);
    assert!(
        stderr(&out).contains("read as no records (left as it is"),
        "{}",
        stderr(&out)
    );
    assert!(actions(&out).is_empty());
    assert_eq!(names(), before);
    assert_eq!(fs::read_to_string(&state).unwrap(), "{not json");
    let out = lab.run(&["apply"]);
    assert!(stderr(&out).contains("moved aside"), "{}", stderr(&out));
    assert_eq!(
        names()
            .iter()
            .filter(|n| n.starts_with("owned.json.corrupt-"))
            .count(),
        1
    );
}

#[test]
fn a_forged_record_in_a_state_file_others_can_write_deletes_nothing() {
    use std::os::unix::fs::PermissionsExt;
    // A vport hbad never made, and a record someone else wrote to claim it.
    let lab = Lab::new();
    make_vport(
        &lab.root().join("sys"),
        "5001a4a000000c01",
        "5001a4a000000c00",
    );
    fs::create_dir_all(lab.root().join("state")).unwrap();
    let state = lab.root().join("state/owned.json");
    fs::write(
        &state,
        "{\"version\":1,\"vhbas\":{\"0x5001a4a000000c01\":{\"name\":\"evil\",\
         \"wwnn\":\"0x5001a4a000000c00\",\"why\":\"driver refused\"}}}",
    )
    .unwrap();
    fs::set_permissions(&state, fs::Permissions::from_mode(0o666)).unwrap();
    lab.policy("[ownership]\nprune = true\n");
    let out = lab.run(&["plan", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is writable by everyone (mode 0666)")
            && stderr(&out).contains("its records are not used"),
        "{}",
        stderr(&out)
    );
    assert!(
        json(&out)["steps"].as_array().unwrap().is_empty(),
        "{}",
        stdout(&out)
    );
    let out = lab.run(&["destroy", "vport-1:0-1", "--vport-timeout", "1s"]);
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
    assert_eq!(lab.read("class/fc_host/host1/vport_delete"), "");
    // Relaxed (a test tree), the record is taken as written.
    let out = lab.run(&["--no-strict-perms", "plan", "--json"]);
    assert_eq!(
        json(&out)["steps"][0]["action"],
        "delete_vhba",
        "{}",
        stdout(&out)
    );
}

// ---------------------------------------------------------------------------------
// The commands' logic in-process against the simulator, where LUNs really appear.

mod on_the_simulator {
    use std::sync::Arc;
    use std::time::Duration;

    use hbad::cli::act::find_luns_with;
    use hbad::exec::vport::{SysfsPoll, Vports};
    use hbad::exec::{Executor, Scanner};
    use hbad::ownership::OwnedState;
    use hbad::policy::{Environment, Policy};
    use hbad::sim::demo::{ARRAY_PORT_A, HBA_A_WWPN, RAID_PCI};
    use hbad::sim::Sim;

    fn executor(sim: &Sim, dir: &std::path::Path) -> Executor {
        let sysfs = sim.sysfs();
        let writer = Arc::new(sim.clone());
        let vports = Vports::new(
            sysfs.clone(),
            writer.clone(),
            Arc::new(SysfsPoll::new(sysfs.clone(), Duration::from_millis(5))),
            OwnedState::new(dir.join("owned.json")),
            Duration::from_secs(5),
        );
        Executor::new(vports, Scanner::new(writer, sysfs, Duration::from_secs(30)))
    }

    #[test]
    fn find_luns_finds_a_newly_mapped_lun_with_targeted_scans_only() {
        let dir = tempfile::tempdir().unwrap();
        let sim = Sim::demo_host(&dir.path().join("sim")).unwrap();
        // The array masks LUN 1 to port A; nothing has scanned for it yet.
        sim.map_lun(ARRAY_PORT_A, 1, HBA_A_WWPN).unwrap();
        let policy = Policy::from_str(
            std::path::Path::new("hbad.toml"),
            "",
            &Environment::fixed("0123456789abcdef0123456789abcdef"),
        )
        .unwrap();
        let ex = executor(&sim, dir.path());
        let r = find_luns_with(&ex, &policy, &[1, 2], false).unwrap();
        assert_eq!(r.missing, [2], "LUN 2 is masked to nobody");
        assert_eq!(r.found.len(), 1, "{:?}", r.found);
        let l = &r.found[0];
        let host_a = sim.host_by_wwpn(HBA_A_WWPN).unwrap();
        assert_eq!((l.hctl.host, l.lun), (host_a, 1));
        assert!(l.new);
        assert_eq!(l.target_wwpn, Some(ARRAY_PORT_A));
        assert!(
            l.dev.as_deref().is_some_and(|d| d.starts_with("/dev/sd")),
            "{l:?}"
        );
        assert!(
            l.links
                .iter()
                .any(|p| p.contains("fc-0x5000144000000101-lun-1")),
            "{l:?}"
        );
        // Only C T L scans, and none on the RAID controller the policy leaves out.
        let scans: Vec<(String, String)> = sim
            .writes()
            .into_iter()
            .filter(|w| w.path.ends_with("scan"))
            .map(|w| (w.path.display().to_string(), w.value))
            .collect();
        assert!(!scans.is_empty());
        assert!(
            scans
                .iter()
                .all(|(p, v)| !p.contains(RAID_PCI) && !v.contains('-')),
            "{scans:?}"
        );
    }

    #[test]
    fn apply_then_plan_is_settled_and_the_vhba_logs_in() {
        let dir = tempfile::tempdir().unwrap();
        let sim = Sim::demo_host(&dir.path().join("sim")).unwrap();
        let policy = Policy::from_str(
            std::path::Path::new("hbad.toml"),
            &format!(
                "[[vhba]]\nname = \"vm1\"\nparent_wwpn = \"{HBA_A_WWPN}\"\n\
                 wwpn = \"5001a4a000000b01\"\nwwnn = \"5001a4a000000b00\"\n"
            ),
            &Environment::fixed("0123456789abcdef0123456789abcdef"),
        )
        .unwrap();
        let ex = executor(&sim, dir.path());
        let graph = hbad::graph::Graph::load(&sim.sysfs());
        let recorded = hbad::plan::Recorded::from_records(&ex.vports.state().all().unwrap());
        let plan = hbad::plan::plan(&policy, &graph, &recorded, &[]);
        let report = ex.apply(&plan);
        assert_eq!(report.tally().done, 1, "{:#?}", report.steps);
        let graph = hbad::graph::Graph::load(&sim.sysfs());
        let recorded = hbad::plan::Recorded::from_records(&ex.vports.state().all().unwrap());
        assert!(hbad::plan::plan(&policy, &graph, &recorded, &[])
            .steps
            .is_empty());
        let vport = graph
            .by_wwpn("5001a4a000000b01".parse().unwrap())
            .into_iter()
            .find_map(|n| match &n.kind {
                hbad::graph::NodeKind::Vport(v) => Some(v.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(vport.symbolic_name.as_deref(), Some("hbad:vm1"));
        assert_eq!(vport.vport_state.as_deref(), Some("Active"));
    }
}

#[test]
fn usage_errors_and_names_that_are_not_there_have_codes_of_their_own() {
    let lab = Lab::new();
    let out = lab.run(&["rescan", "--no-such-option"]);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    let out = lab.run(&["destroy", "5001a4a0000000ff"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no device matches"),
        "{}",
        stderr(&out)
    );
    let out = lab.run(&["show", "host99"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let out = lab.run(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
}
