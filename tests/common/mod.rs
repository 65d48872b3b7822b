//! Shared helpers for integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The real kernel capture (sysfs before/after and the uevents between), unpacked
/// once per test binary into a temporary directory.
pub fn kernel_capture() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let archive = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/kernel-capture/kernel-capture-fcoe-scsi_debug.tar.gz");
        let dir = std::env::temp_dir().join(format!("hbad-capture-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let status = Command::new("tar")
            .arg("xzf")
            .arg(&archive)
            .arg("-C")
            .arg(&dir)
            .status()
            .expect("run tar");
        assert!(
            status.success(),
            "tar could not unpack {}",
            archive.display()
        );
        dir
    })
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}
