//! The systemd unit as systemd reads it: `systemd-analyze verify` and the offline
//! security score, when systemd-analyze is installed (skipped, and said so, otherwise).

use std::path::Path;
use std::process::Command;

fn have_systemd_analyze() -> bool {
    Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The unit with its binary paths pointed at the binary under test.
fn unit_under_test(dir: &Path) -> std::path::PathBuf {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/hbad.service"))
            .unwrap();
    let text = text.replace("/usr/bin/hbad", env!("CARGO_BIN_EXE_hbad"));
    let path = dir.join("hbad.service");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    if !have_systemd_analyze() {
        eprintln!("skipped: systemd-analyze is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_under_test(dir.path());
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Other units on the machine may draw warnings; ours must draw none.
    let ours: Vec<&str> = stderr.lines().filter(|l| l.contains("hbad")).collect();
    assert!(out.status.success() && ours.is_empty(), "{stderr}");
}

#[test]
fn unit_keeps_uevents_and_sysfs_writes_working_while_sandboxed() {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/hbad.service"))
            .unwrap();
    let directives: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    let has = |d: &str| directives.iter().any(|l| l.starts_with(d));
    // These would cut hbad off from uevents or make /sys read-only.
    for banned in ["PrivateNetwork=", "PrivateUsers=", "ProtectKernelTunables="] {
        assert!(!has(banned), "{banned} breaks hbad");
    }
    assert!(has("RestrictAddressFamilies=AF_UNIX AF_NETLINK"));
    assert!(has("ReadWritePaths=/sys"));
    if !have_systemd_analyze() {
        eprintln!("skipped the exposure score: systemd-analyze is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_under_test(dir.path());
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes"])
        .arg(&unit)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let score: f64 = stdout
        .lines()
        .find_map(|l| l.split("exposure level for hbad.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure score in:\n{stdout}"));
    // 10 is an unsandboxed root service; what hbad must keep (root, /sys, netlink)
    // costs about 3. A rise means a hardening directive was lost.
    assert!(score <= 3.5, "exposure {score} (was 3.0):\n{stdout}");
}

/// `MemoryMax=` and friends in bytes: a number with an optional K/M/G/T suffix
/// (base 1024, as systemd reads them); `None` for `infinity`, percentages and junk.
fn bytes(value: &str) -> Option<u64> {
    let (digits, unit) = match value.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => value.split_at(i),
        None => (value, ""),
    };
    let shift = match unit {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return None,
    };
    digits.parse::<u64>().ok()?.checked_mul(1 << shift)
}

/// Whatever still goes wrong (a leak, a storm, a bug that spawns threads) is bounded
/// by the unit: finite memory and task limits (sized in benches/README.md, "Unit
/// limits"), a softer MemoryHigh= below MemoryMax=, and an OOM score that makes
/// the kernel kill hbad, which restarts, before a VM.
#[test]
fn unit_bounds_memory_and_tasks_and_yields_to_vms_under_oom() {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/hbad.service"))
            .unwrap();
    let value = |key: &str| -> Option<String> {
        text.lines()
            .rev()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(|v| v.trim().to_string())
    };
    let max = value("MemoryMax").expect("MemoryMax= is set");
    let max = bytes(&max).unwrap_or_else(|| panic!("MemoryMax={max} is not a size"));
    // Below the measured peak hbad could not start on a large host; far above it
    // the limit bounds nothing.
    assert!(
        (256 << 20..=4 << 30).contains(&max),
        "MemoryMax= {max} bytes"
    );
    let high = value("MemoryHigh").expect("MemoryHigh= is set");
    let high = bytes(&high).unwrap_or_else(|| panic!("MemoryHigh={high} is not a size"));
    assert!(
        high < max,
        "MemoryHigh= must throttle before MemoryMax= kills"
    );
    let tasks = value("TasksMax").expect("TasksMax= is set");
    let tasks: u64 = tasks
        .parse()
        .unwrap_or_else(|_| panic!("TasksMax={tasks} is not a number"));
    assert!((64..=4096).contains(&tasks), "TasksMax={tasks}");
    let oom = value("OOMScoreAdjust").expect("OOMScoreAdjust= is set");
    let oom: i32 = oom.parse().unwrap();
    assert!(
        (1..=1000).contains(&oom),
        "OOMScoreAdjust={oom}: the OOM killer must prefer hbad to a VM"
    );
}
