//! `hbad status` as a health check: its exit status says healthy (0), degraded (1)
//! or not running (3), whatever the status file claims.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hbad::daemon::status::{Status, VhbaStatus};

fn status_cmd(status: &Path, proc_root: Option<&Path>, extra: &[&str]) -> common::Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hbad"));
    cmd.arg("status")
        .arg("--status-file")
        .arg(status)
        .args(extra);
    match proc_root {
        Some(p) => cmd.env("HBAD_PROC_ROOT", p),
        None => cmd.env_remove("HBAD_PROC_ROOT"),
    };
    let out = cmd.output().unwrap();
    common::Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// Starts `hbad run` on the kernel capture with an empty policy.
fn start_agent(dir: &Path) -> Child {
    let policy = dir.join("hbad.toml");
    std::fs::write(&policy, "").unwrap();
    Command::new(env!("CARGO_BIN_EXE_hbad"))
        .arg("--sysfs-root")
        .arg(common::capture_sys("after"))
        .arg("--dev-root")
        .arg(dir)
        .arg("--policy")
        .arg(&policy)
        .args(["run", "--no-journal", "--udev", "off", "--status-file"])
        .arg(dir.join("status.json"))
        .env_remove("NOTIFY_SOCKET")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn status_is_healthy_while_the_agent_runs_and_not_running_once_it_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("status.json");
    let mut agent = start_agent(dir.path());
    let deadline = Instant::now() + Duration::from_secs(30);
    while !Status::read(&path).is_ok_and(|s| s.ready && s.pid == agent.id()) {
        if Instant::now() > deadline {
            let _ = agent.kill();
            panic!("the agent wrote no ready status within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = status_cmd(&path, None, &[]).ok();
    assert!(out.stdout.contains("health: healthy"), "{}", out.stdout);
    let out = status_cmd(&path, None, &["--json"]).ok();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["health"], "healthy");
    assert_eq!(v["pid"], agent.id());

    // Killed without a chance to say so: the file stays, and lies.
    agent.kill().unwrap();
    agent.wait().unwrap();
    assert!(path.exists());
    let out = status_cmd(&path, None, &[]);
    assert_eq!(out.code, 3, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("is gone"), "{}", out.stdout);
    let out = status_cmd(&path, None, &["--json"]);
    assert_eq!(out.code, 3);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["health"], "not-running");
}

#[test]
fn a_status_naming_a_pid_that_is_not_hbad_is_stale() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("status.json");
    let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
    let status = Status {
        pid: sleeper.id(),
        started: "2026-12-06T10:00:00Z".into(),
        updated: "2026-12-06T10:00:01Z".into(),
        ..Default::default()
    };
    status.write(&path).unwrap();
    let out = status_cmd(&path, None, &[]);
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    assert_eq!(out.code, 3, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("`sleep`"), "{}", out.stdout);
}

#[test]
fn no_status_file_is_not_running() {
    let dir = tempfile::tempdir().unwrap();
    let out = status_cmd(&dir.path().join("none.json"), None, &[]);
    assert_eq!(out.code, 3);
    assert!(out.stdout.contains("no status file"), "{}", out.stdout);
    std::fs::write(dir.path().join("bad.json"), "{ half").unwrap();
    let out = status_cmd(&dir.path().join("bad.json"), None, &["--json"]);
    assert_eq!(out.code, 3);
    assert!(
        out.stdout.contains("not an hbad status file"),
        "{}",
        out.stdout
    );
}

#[test]
fn a_degraded_agent_exits_1_and_names_each_problem() {
    let dir = tempfile::tempdir().unwrap();
    // A procfs with one hbad process in it, started at the agent's recorded start.
    let proc_root = dir.path().join("proc");
    std::fs::create_dir_all(proc_root.join("4242")).unwrap();
    std::fs::write(proc_root.join("4242/comm"), "hbad\n").unwrap();
    std::fs::write(
        proc_root.join("4242/stat"),
        "4242 (hbad) S 1 4242 4242 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 0 0 0",
    )
    .unwrap();
    std::fs::write(proc_root.join("stat"), "btime 1796551200\n").unwrap();
    let path = dir.path().join("status.json");
    let status = Status {
        pid: 4242,
        ready: true,
        started: "2026-12-06T10:00:00Z".into(),
        updated: "2026-12-06T10:00:05Z".into(),
        vhbas: vec![VhbaStatus {
            name: "fabric-b".into(),
            wwpn: "0x5001a4a000000b01".into(),
            state: "waiting".into(),
            reason: Some("parent host2 is Linkdown".into()),
            ..Default::default()
        }],
        hung: vec!["host7".into()],
        ..Default::default()
    };
    status.write(&path).unwrap();
    let out = status_cmd(&path, Some(&proc_root), &[]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("health: degraded"), "{}", out.stdout);
    assert!(
        out.stdout.contains(
            "vHBA fabric-b (0x5001a4a000000b01) is missing, waiting: parent host2 is Linkdown"
        ),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("host7 hung"), "{}", out.stdout);
    // An age limit makes the same file stale: the agent stopped updating it.
    let out = status_cmd(&path, Some(&proc_root), &["--max-age", "1min"]);
    assert_eq!(out.code, 3, "{}", out.stdout);
    assert!(out.stdout.contains("last updated"), "{}", out.stdout);
}
