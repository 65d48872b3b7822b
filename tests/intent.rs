//! `hbad apply` killed (SIGKILL) inside its write to vport_create: the intent it
//! synced to the state file before the write makes the vport the kernel made hbad's
//! (pruned like any other once the policy drops it), and is dropped when the kernel
//! made nothing.
//!
//! Runs the hbad binary against a copy of the real kernel capture's sysfs (FCoE
//! host1 with NPIV). host1's vport_create is a FIFO filled up beforehand, so hbad's
//! write (in its `write-attr` child) stays in the "kernel" until the test lets go:
//! the test then plays the kernel that made the vport, or made nothing, and kills
//! hbad there.

mod common;

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::thread;
use std::time::{Duration, Instant};

const HOST1: &str = "devices/virtual/net/vi/ctlr_1/host1";
const HOST1_WWPN: &str = "0x200002000000000b";
const WWPN: &str = "5001a4a000000d01";
const WWNN: &str = "5001a4a000000d00";
/// The capture holds vport-1:0-0 already (made by hand); the kernel names the next.
const VPORT: &str = "vport-1:0-1";

struct Host {
    dir: tempfile::TempDir,
}

impl Host {
    fn new() -> Host {
        let dir = tempfile::tempdir().unwrap();
        let copied = Command::new("cp")
            .arg("-a")
            .arg(common::capture_sys("after"))
            .arg(dir.path().join("sys"))
            .status()
            .unwrap();
        assert!(copied.success());
        fs::create_dir_all(dir.path().join("dev")).unwrap();
        Host { dir }
    }

    fn sys(&self, rel: &str) -> PathBuf {
        self.dir.path().join("sys").join(rel)
    }

    fn state_file(&self) -> PathBuf {
        self.dir.path().join("state/owned.json")
    }

    fn state(&self) -> serde_json::Value {
        serde_json::from_slice(&fs::read(self.state_file()).unwrap()).unwrap()
    }

    /// The policy: the vHBA declared, or not, and pruning on.
    fn policy(&self, declared: bool) {
        let vhba = format!(
            "[[vhba]]\nname = \"db\"\nparent_wwpn = \"{HOST1_WWPN}\"\n\
             wwpn = \"{WWPN}\"\nwwnn = \"{WWNN}\"\n"
        );
        fs::write(
            self.dir.path().join("hbad.toml"),
            format!(
                "{}[ownership]\nprune = true\nstate_file = \"{}\"\n",
                if declared { vhba.as_str() } else { "" },
                self.state_file().display()
            ),
        )
        .unwrap();
    }

    fn hbad(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_hbad"));
        c.args(args)
            .env("HBAD_SYSFS_ROOT", self.dir.path().join("sys"))
            .env("HBAD_DEV_ROOT", self.dir.path().join("dev"))
            .env("HBAD_POLICY", self.dir.path().join("hbad.toml"));
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.hbad(args).output().unwrap()
    }

    /// `hbad apply` for the declared vHBA, once its write to vport_create (the
    /// attribute, held) is in the "kernel".
    fn apply_in_vport_create(&self) -> (PathBuf, FullFifo, Child) {
        self.policy(true);
        let attr = self.sys(&format!("{HOST1}/fc_host/host1/vport_create"));
        let held = FullFifo::new(&attr);
        let mut apply = self.hbad(&["apply"]).spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !held.in_a_write() {
            assert!(
                Instant::now() < deadline,
                "hbad never wrote to vport_create"
            );
            assert!(apply.try_wait().unwrap().is_none(), "hbad apply ended");
            thread::sleep(Duration::from_millis(10));
        }
        (attr, held, apply)
    }

    /// `hbad apply` for the declared vHBA, killed while its vport_create is in the
    /// kernel; `made`: the kernel had made the vport by then.
    fn apply_killed_in_vport_create(&self, made: bool) {
        let (attr, held, mut apply) = self.apply_in_vport_create();
        // Synced before the write began.
        let state = self.state();
        assert_eq!(
            state["creating"][format!("0x{WWPN}")]["name"],
            "db",
            "{state}"
        );
        assert_eq!(state["vhbas"], serde_json::json!({}), "{state}");
        if made {
            add_vport(&self.dir.path().join("sys"));
        }
        apply.kill().unwrap();
        apply.wait().unwrap();
        let writers = held.writers();
        // No reader left: the orphaned write-attr child gets EPIPE and ends.
        drop(held);
        fs::remove_file(&attr).unwrap();
        fs::write(&attr, "").unwrap();
        // Ended, and with it the create's lock: what reads the file next finds
        // no write of it left in the kernel.
        await_ended(&writers);
    }
}

/// A FIFO filled up, so that a write to it waits until it is drained or closed.
struct FullFifo {
    path: PathBuf,
    _file: File,
}

impl FullFifo {
    fn new(path: &Path) -> FullFifo {
        fs::remove_file(path).unwrap();
        assert!(Command::new("mkfifo").arg(path).status().unwrap().success());
        // Read-write: neither this open nor hbad's blocks.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .unwrap();
        loop {
            match file.write(&[b'#'; 4096]) {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        FullFifo {
            path: fs::canonicalize(path).unwrap(),
            _file: file,
        }
    }

    /// Whether another process has it open for writing (its write under way). Only
    /// write-only opens count: a process another test forks copies this one's
    /// read-write descriptor until it execs, and is not hbad.
    fn in_a_write(&self) -> bool {
        !self.writers().is_empty()
    }

    /// The processes with it open for writing, by their /proc directories.
    fn writers(&self) -> Vec<PathBuf> {
        let me = std::process::id().to_string();
        fs::read_dir("/proc")
            .unwrap()
            .filter_map(Result::ok)
            // Processes by number: /proc/self is this one.
            .filter(|p| {
                let name = p.file_name().to_string_lossy().into_owned();
                name != me && name.bytes().all(|b| b.is_ascii_digit())
            })
            .filter_map(|p| Some((p.path(), fs::read_dir(p.path().join("fd")).ok()?)))
            .flat_map(|(proc, fds)| fds.filter_map(Result::ok).map(move |fd| (proc.clone(), fd)))
            .filter(|(_, fd)| fs::read_link(fd.path()).is_ok_and(|t| t == self.path))
            .filter(|(proc, fd)| write_only(&proc.join("fdinfo").join(fd.file_name())))
            .map(|(proc, _)| proc)
            .collect()
    }
}

/// Waits until each process has ended: gone, or a zombie, whose files are closed
/// (an orphan waits for whoever reaps it).
fn await_ended(procs: &[PathBuf]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    for proc in procs {
        loop {
            let state = fs::read_to_string(proc.join("stat"))
                .ok()
                .and_then(|s| s.rsplit_once(')')?.1.trim_start().chars().next());
            if !matches!(state, Some(c) if c != 'Z' && c != 'X') {
                break;
            }
            assert!(Instant::now() < deadline, "{} never ended", proc.display());
            thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Whether /proc's fdinfo of a descriptor shows it open write-only.
fn write_only(fdinfo: &Path) -> bool {
    fs::read_to_string(fdinfo).is_ok_and(|text| {
        text.lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .and_then(|f| i32::from_str_radix(f.trim(), 8).ok())
            .is_some_and(|flags| flags & libc::O_ACCMODE == libc::O_WRONLY)
    })
}

fn vport_dir(sys: &Path) -> PathBuf {
    sys.join(HOST1).join(VPORT)
}

/// What fc_vport_create adds first: the vport with its names and no mark.
fn add_vport(sys: &Path) {
    let class = vport_dir(sys).join("fc_vports").join(VPORT);
    fs::create_dir_all(&class).unwrap();
    for (attr, value) in [
        ("port_name", format!("0x{WWPN}\n")),
        ("node_name", format!("0x{WWNN}\n")),
        ("vport_state", "Initializing\n".to_string()),
        ("symbolic_name", String::new()),
    ] {
        fs::write(class.join(attr), value).unwrap();
    }
    std::os::unix::fs::symlink(
        format!("../../{HOST1}/{VPORT}/fc_vports/{VPORT}"),
        sys.join("class/fc_vports").join(VPORT),
    )
    .unwrap();
}

/// Plays fc_vport_terminate for the next write to host1's vport_delete, and
/// gives back what was written.
fn serve_one_delete(sys: &Path) -> thread::JoinHandle<String> {
    let attr = sys.join(format!("{HOST1}/fc_host/host1/vport_delete"));
    fs::remove_file(&attr).unwrap();
    assert!(Command::new("mkfifo")
        .arg(&attr)
        .status()
        .unwrap()
        .success());
    let sys = sys.to_path_buf();
    thread::spawn(move || {
        let mut text = String::new();
        File::open(&attr)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        fs::remove_file(sys.join("class/fc_vports").join(VPORT)).unwrap();
        fs::remove_dir_all(vport_dir(&sys)).unwrap();
        text
    })
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn steps(o: &Output) -> Vec<String> {
    assert!(o.status.success(), "{}", stderr(o));
    let plan: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let field = |k: &str| s[k].as_str().unwrap_or_default().to_string();
            format!("{} {}", field("action"), field("vport"))
        })
        .collect()
}

#[test]
fn a_vport_made_while_hbad_was_killed_in_vport_create_is_hbads_and_pruned() {
    let host = Host::new();
    host.apply_killed_in_vport_create(true);
    // The policy drops the vHBA: hbad shows the vport as its own to prune, and
    // only shows (the file keeps the intent).
    host.policy(false);
    let before = fs::read(host.state_file()).unwrap();
    let plan = host.run(&["plan", "--json"]);
    assert_eq!(steps(&plan), [format!("delete_vhba /{HOST1}/{VPORT}")]);
    // Said as a command's warnings are, whatever logging the agent has.
    assert!(
        stderr(&plan)
            .lines()
            .any(|l| l.starts_with("warning: ownership state file")
                && l.contains("stopped before recording it; the vport is there")),
        "{}",
        stderr(&plan)
    );
    assert_eq!(fs::read(host.state_file()).unwrap(), before);

    let deleted = serve_one_delete(&host.dir.path().join("sys"));
    let out = host.run(&["apply"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(deleted.join().unwrap(), format!("{WWPN}:{WWNN}"));
    assert!(!vport_dir(&host.dir.path().join("sys")).exists());
    // Nothing left: neither the intent nor the record it became.
    let state = host.state();
    assert_eq!(state["vhbas"], serde_json::json!({}), "{state}");
    assert!(state.get("creating").is_none(), "{state}");
}

#[test]
fn an_intent_whose_vport_the_kernel_never_made_is_dropped_and_nothing_deleted() {
    let host = Host::new();
    host.apply_killed_in_vport_create(false);
    host.policy(false);
    let out = host.run(&["apply"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no such vport is there (the create did not happen or failed), so the intent is dropped"),
        "{}",
        stderr(&out)
    );
    let state = host.state();
    assert!(state.get("creating").is_none(), "{state}");
    assert_eq!(state["vhbas"], serde_json::json!({}), "{state}");
    assert_eq!(
        fs::read_to_string(host.sys(&format!("{HOST1}/fc_host/host1/vport_delete"))).unwrap(),
        ""
    );
}

fn symbolic_name(sys: &Path) -> PathBuf {
    vport_dir(sys)
        .join("fc_vports")
        .join(VPORT)
        .join("symbolic_name")
}

#[test]
fn a_declared_vport_made_while_hbad_was_killed_before_marking_it_is_marked_by_apply() {
    let host = Host::new();
    let sys = host.dir.path().join("sys");
    host.apply_killed_in_vport_create(true);
    // Still declared: adopted as hbad's, and its mark is what is left to do.
    let plan = host.run(&["plan", "--json"]);
    assert_eq!(
        steps(&plan),
        [format!("set_symbolic_name /{HOST1}/{VPORT}")]
    );
    let out = host.run(&["apply"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(fs::read_to_string(symbolic_name(&sys)).unwrap(), "hbad:db");
    // The record binds the mark hbad wrote; nothing is pending any more.
    let state = host.state();
    assert_eq!(
        state["vhbas"][format!("0x{WWPN}")],
        serde_json::json!({"name": "db", "wwnn": format!("0x{WWNN}"), "why": ""}),
        "{state}"
    );
    assert!(state.get("creating").is_none(), "{state}");
    assert_eq!(steps(&host.run(&["plan", "--json"])), Vec::<String>::new());
}

#[test]
fn a_declared_vport_whose_driver_refuses_the_mark_is_asked_once() {
    let host = Host::new();
    let sys = host.dir.path().join("sys");
    host.apply_killed_in_vport_create(true);
    // A driver without set_vport_symbolic_name: the write fails (here EISDIR).
    fs::remove_file(symbolic_name(&sys)).unwrap();
    fs::create_dir(symbolic_name(&sys)).unwrap();
    let out = host.run(&["apply"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let state = host.state();
    let record = &state["vhbas"][format!("0x{WWPN}")];
    assert_eq!(record["name"], "db", "{state}");
    assert!(record.get("mark_pending").is_none(), "{state}");
    assert!(
        record["why"].as_str().unwrap().contains("symbolic_name"),
        "{state}"
    );
    // The refusal is recorded: neither planned nor written again.
    assert_eq!(steps(&host.run(&["plan", "--json"])), Vec::<String>::new());
    let before = fs::read(host.state_file()).unwrap();
    let out = host.run(&["apply"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(fs::read(host.state_file()).unwrap(), before);
}

/// hbad killed in its vport_create while its `write-attr` child stays in the
/// kernel: a read that settles the file then (here `hbad apply`, as an agent
/// restarted at once would) finds the creator gone and no vport yet, and must
/// keep the intent, for the child still holds the create's lock. The kernel then
/// makes the vport: it is hbad's, pruned once the policy drops it.
#[test]
fn an_intent_whose_write_outlived_hbad_is_kept_until_the_kernel_made_its_vport() {
    let host = Host::new();
    let sys = host.dir.path().join("sys");
    let (attr, held, mut apply) = host.apply_in_vport_create();
    apply.kill().unwrap();
    apply.wait().unwrap();
    let writers = held.writers();
    assert!(!writers.is_empty(), "the write-attr child ended with hbad");

    // The policy drops the vHBA and another hbad reads (and writes) the file
    // while the write is still in the kernel: the intent stays.
    host.policy(false);
    let out = host.run(&["apply"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("so the intent is dropped"),
        "{}",
        stderr(&out)
    );
    let state = host.state();
    assert_eq!(
        state["creating"][format!("0x{WWPN}")]["name"],
        "db",
        "{state}"
    );
    assert!(held.in_a_write(), "the write ended before the read");

    // The kernel finishes the create: the vport is there, and the child ends.
    add_vport(&sys);
    drop(held);
    await_ended(&writers);
    fs::remove_file(&attr).unwrap();
    fs::write(&attr, "").unwrap();

    let plan = host.run(&["plan", "--json"]);
    assert_eq!(steps(&plan), [format!("delete_vhba /{HOST1}/{VPORT}")]);
    let deleted = serve_one_delete(&sys);
    let out = host.run(&["apply"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(deleted.join().unwrap(), format!("{WWPN}:{WWNN}"));
    assert!(!vport_dir(&sys).exists());
    let state = host.state();
    assert_eq!(state["vhbas"], serde_json::json!({}), "{state}");
    assert!(state.get("creating").is_none(), "{state}");
    // The create's lock file went with its intent.
    let left: Vec<String> = fs::read_dir(host.state_file().parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".create-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
