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
