//! `hbad run` as systemd sees it: READY=1 with a status line, WATCHDOG=1 from the
//! event loop, RELOADING=1 ... READY=1 around a SIGHUP, STOPPING=1 and exit 0 on
//! SIGTERM — all read from a test NOTIFY_SOCKET.

mod common;

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn recv_until(sock: &UnixDatagram, want: &str, limit: Duration, seen: &mut Vec<String>) -> bool {
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            let hit = msg.lines().any(|l| l == want || l.starts_with(want));
            seen.push(msg);
            if hit {
                return true;
            }
        }
    }
    false
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} {pid}");
}

#[test]
fn run_speaks_the_notify_protocol_from_its_event_loop() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let policy = dir.path().join("hbad.toml");
    std::fs::write(&policy, "[rescan]\ndebounce = \"50ms\"\n").unwrap();
    let sys = common::kernel_capture().join("after/sys");
    let mut child = Command::new(env!("CARGO_BIN_EXE_hbad"))
        .arg("--sysfs-root")
        .arg(&sys)
        .arg("--dev-root")
        .arg(dir.path())
        .arg("--policy")
        .arg(&policy)
        .args(["run", "--no-journal", "--udev", "off", "--status-file"])
        .arg(dir.path().join("status.json"))
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "300000")
        .env_remove("WATCHDOG_PID")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut seen = Vec::new();
    let ready = recv_until(&sock, "READY=1", Duration::from_secs(20), &mut seen);
    if !ready {
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        panic!(
            "no READY=1: {seen:?}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let status = seen.concat();
    assert!(
        status.contains("STATUS=0/0 vHBAs active, 5 hosts watched"),
        "{status}"
    );
    // Half of WATCHDOG_USEC: several pings within a second.
    let mut pings = 0;
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(2) && pings < 3 {
        if recv_until(&sock, "WATCHDOG=1", Duration::from_millis(500), &mut seen) {
            pings += 1;
        }
    }
    assert!(pings >= 3, "watchdog pings: {seen:?}");

    // A reload: RELOADING=1 with the monotonic time, then READY=1 again.
    seen.clear();
    signal(pid, "HUP");
    assert!(
        recv_until(&sock, "RELOADING=1", Duration::from_secs(5), &mut seen),
        "{seen:?}"
    );
    assert!(seen.concat().contains("MONOTONIC_USEC="), "{seen:?}");
    assert!(
        recv_until(&sock, "READY=1", Duration::from_secs(5), &mut seen),
        "{seen:?}"
    );

    signal(pid, "TERM");
    assert!(
        recv_until(&sock, "STOPPING=1", Duration::from_secs(5), &mut seen),
        "{seen:?}"
    );
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("policy reloaded"), "{log}");
    assert!(log.contains("stopped"), "{log}");
}

/// A declared vHBA whose parent's link stays down for longer than any start
/// timeout: READY=1 comes at once (the wait is in STATUS=, with the time left),
/// past `link_wait` the status says degraded, and the agent keeps running: no
/// failed start, no restart. SIGTERM then ends it with 0.
#[test]
fn a_parent_link_that_stays_down_gives_ready_and_degraded_not_a_failed_start() {
    use hbad::sim::demo::{spec as demo_spec, HBA_A_WWPN};
    let dir = tempfile::tempdir().unwrap();
    let mut spec = demo_spec();
    for hba in spec.hbas.iter_mut() {
        if let hbad::sim::HbaKind::Fc(port) = &mut hba.kind {
            port.link_up = false;
        }
    }
    let sim_dir = dir.path().join("sim");
    let _sim = hbad::sim::Sim::new(&sim_dir, &spec).unwrap();
    let sock_path = dir.path().join("notify");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let policy = dir.path().join("hbad.toml");
    std::fs::write(
        &policy,
        format!(
            "[[vhba]]\nname = \"vm-a\"\nparent_wwpn = \"{HBA_A_WWPN}\"\n\
             wwpn = \"0x5001a4a000000a01\"\nwwnn = \"0x5001a4a000000a00\"\nlink_wait = \"3s\"\n\
             [ownership]\nstate_file = \"{}\"\n",
            // Its own state file: hbad records the vHBAs it marks.
            dir.path().join("state/owned-vhbas.json").display()
        ),
    )
    .unwrap();
    let status_file = dir.path().join("status.json");
    let t0 = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hbad"))
        .arg("--sysfs-root")
        .arg(sim_dir.join("sys"))
        .arg("--dev-root")
        .arg(sim_dir.join("dev"))
        .arg("--policy")
        .arg(&policy)
        .args(["run", "--no-journal", "--udev", "off", "--status-file"])
        .arg(&status_file)
        .env("NOTIFY_SOCKET", &sock_path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut seen = Vec::new();
    let ready = recv_until(&sock, "READY=1", Duration::from_secs(20), &mut seen);
    let ready_after = t0.elapsed();
    if !ready {
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        panic!(
            "no READY=1: {seen:?}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(
        ready_after < Duration::from_secs(3),
        "READY after {ready_after:?}"
    );
    let said = seen.concat();
    assert!(
        said.contains("0/1 vHBAs active") && said.contains("waiting for fabric link of host"),
        "{said}"
    );
    assert!(
        said.contains("for vm-a,") && said.contains("s left"),
        "{said}"
    );
    // Past link_wait: degraded, said in STATUS= and the status file; still running.
    assert!(
        recv_until(
            &sock,
            "STATUS=0/1 vHBAs active",
            Duration::from_secs(1),
            &mut seen
        ) || !seen.is_empty()
    );
    let mut degraded = false;
    while t0.elapsed() < Duration::from_secs(15) && !degraded {
        seen.clear();
        recv_until(&sock, "STATUS=", Duration::from_secs(2), &mut seen);
        degraded = seen.concat().contains("degraded: fabric link of host");
    }
    assert!(degraded, "{seen:?}");
    assert!(
        child.try_wait().unwrap().is_none(),
        "the agent keeps running"
    );
    // The status file is written on the same tick, just after STATUS=.
    let read = || hbad::daemon::status::Status::read(&status_file).unwrap();
    let mut status = read();
    while !status.degraded && t0.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
        status = read();
    }
    assert!(status.ready);
    assert!(status.degraded, "{status:?}");
    assert_eq!(status.vhbas[0].state, "waiting");
    signal(pid, "TERM");
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn run_on_a_sysfs_root_that_is_none_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hbad"))
        .args(["--sysfs-root", "/nonexistent", "--policy"])
        .arg(dir.path().join("none.toml"))
        .args(["run", "--no-journal", "--udev", "off", "--status-file"])
        .arg(dir.path().join("status.json"))
        .env_remove("NOTIFY_SOCKET")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/nonexistent is not a sysfs tree") && err.contains("--sysfs-root"),
        "{err}"
    );
    assert!(
        !dir.path().join("status.json").exists(),
        "never reported ready"
    );
}

#[test]
fn run_refuses_a_status_or_metrics_path_it_would_rename_over() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let sys = common::kernel_capture().join("after/sys");
    let status = dir.path().join("status.json");
    for (flag, path, rest) in [
        ("--status-file", fifo.as_path(), vec!["--no-metrics"]),
        (
            "--status-file",
            std::path::Path::new("/dev/null"),
            vec!["--no-metrics"],
        ),
        (
            "--metrics",
            fifo.as_path(),
            vec!["--status-file", status.to_str().unwrap()],
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_hbad"))
            .arg("--sysfs-root")
            .arg(&sys)
            .arg("--policy")
            .arg(dir.path().join("none.toml"))
            .args(["run", "--no-journal", "--udev", "off", flag])
            .arg(path)
            .args(rest)
            .env_remove("NOTIFY_SOCKET")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{err}");
        assert!(
            err.contains(flag) && err.contains("must be a regular file or absent"),
            "{err}"
        );
    }
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::symlink_metadata(&fifo)
        .unwrap()
        .file_type()
        .is_fifo());
    assert!(!status.exists());
}
