//! Shared helpers for integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The real kernel capture (sysfs before/after and the uevents between), unpacked
/// once under cargo's per-target temporary directory and shared, read-only, by every
/// test binary and run (unpacking per process left 33 MB behind each time).
pub fn kernel_capture() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let archive = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/kernel-capture/kernel-capture-fcoe-scsi_debug.tar.gz");
        let size = std::fs::metadata(&archive)
            .expect("the capture archive")
            .len();
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("kernel-capture-{size}"));
        if dir.join("events.bin").exists() {
            return dir;
        }
        // Unpack beside, then rename into place: a concurrent run sees all or nothing.
        let tmp = dir.with_extension(format!("tmp{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).unwrap();
        let status = Command::new("tar")
            .arg("xzf")
            .arg(&archive)
            .arg("-C")
            .arg(&tmp)
            .status()
            .expect("run tar");
        assert!(
            status.success(),
            "tar could not unpack {}",
            archive.display()
        );
        if std::fs::rename(&tmp, &dir).is_err() {
            // Another test binary got there first.
            let _ = std::fs::remove_dir_all(&tmp);
        }
        assert!(
            dir.join("events.bin").exists(),
            "{} is incomplete",
            dir.display()
        );
        dir
    })
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// What one run of the hbad binary said.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "stderr: {}\nstdout: {}",
            self.stderr, self.stdout
        );
        self
    }
}

/// Runs the built hbad on a sysfs tree and a dev tree, with no hbad settings
/// inherited from the environment. Its output must be UTF-8.
pub fn hbad_in(sys: &Path, dev: &Path, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_hbad"))
        .arg("--sysfs-root")
        .arg(sys)
        .arg("--dev-root")
        .arg(dev)
        .args(args)
        .env_remove("HBAD_SYSFS_ROOT")
        .env_remove("HBAD_DEV_ROOT")
        .env_remove("HBAD_POLICY")
        .output()
        .expect("run hbad");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// The capture's `before/` or `after/` sysfs tree.
pub fn capture_sys(which: &str) -> PathBuf {
    kernel_capture().join(which).join("sys")
}

/// Runs `cmd` with `stdin` written to its standard input, then closed: its exit
/// code, stdout and stderr. A value hbad reads from stdin (`write-attr`, `check -`)
/// goes in whole, as a pipe from a shell would give it.
pub fn run_with_stdin(cmd: &mut Command, stdin: &str) -> (Option<i32>, String, String) {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
