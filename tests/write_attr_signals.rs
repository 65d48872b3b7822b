//! `hbad write-attr`, the process each kernel write of the agent and the CLI runs
//! in, is not ended half-way by SIGINT, SIGTERM, SIGHUP or SIGQUIT: Ctrl-C reaches
//! the terminal's whole process group and `systemctl kill` every process of the
//! unit, and a fatal signal inside `vport_create` is KERNEL.md's fcoe bug.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The writer, killed if the test ends before it does (it may be blocked on the
/// FIFO for ever).
struct Writer(std::process::Child);

impl Drop for Writer {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The signals /proc says the process ignores.
fn ignored(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .unwrap_or(0)
}

#[test]
fn a_writer_blocked_in_its_write_outlives_stop_signals_and_finishes_it() {
    let dir = tempfile::tempdir().unwrap();
    // A FIFO: opening it for writing blocks until a reader comes, as a
    // vport_create blocks in the kernel.
    let fifo = dir.path().join("vport_create");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let value = "5001a4a000001e01:5001a4a000001e00";
    let mut writer = Writer(
        Command::new(env!("CARGO_BIN_EXE_hbad"))
            // Writes stay below the sysfs root: here, the test's directory.
            .arg("--sysfs-root")
            .arg(dir.path())
            .arg("write-attr")
            .arg("--")
            .arg(&fifo)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let writer = &mut writer.0;
    {
        use std::io::Write;
        let mut stdin = writer.stdin.take().unwrap();
        stdin.write_all(value.as_bytes()).unwrap();
    }
    let pid = writer.id();
    let stop = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];
    let mask: u64 = stop.iter().map(|s| 1u64 << (s - 1)).sum();
    // Bounded: a writer that never ignores them fails here instead of hanging.
    let deadline = Instant::now() + Duration::from_secs(30);
    while ignored(pid) & mask != mask {
        assert!(
            Instant::now() < deadline,
            "the writer does not ignore SIGINT/SIGTERM/SIGHUP/SIGQUIT: SigIgn {:x}",
            ignored(pid)
        );
        assert!(
            writer.try_wait().unwrap().is_none(),
            "the writer ended early"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    for sig in stop {
        // SAFETY: a signal to our own child, still running (not reaped).
        assert_eq!(unsafe { libc::kill(pid as libc::pid_t, sig) }, 0);
    }
    // The "kernel" takes the write: the writer finishes it and succeeds.
    let mut got = String::new();
    std::fs::File::open(&fifo)
        .unwrap()
        .read_to_string(&mut got)
        .unwrap();
    assert_eq!(got, value);
    let status = writer.wait().unwrap();
    assert!(status.success(), "{status:?}");
}
