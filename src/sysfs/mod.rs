//! Reading the kernel's SCSI and Fibre Channel objects from sysfs.
//!
//! Every read goes through a [`Sysfs`] rooted at a directory (`/sys` on a host, a
//! fixture tree or the simulator's tree in tests), so the same code reads all three.
//! Attribute values are parsed into typed records here; an attribute that is missing
//! or unreadable gives `None` (drivers differ in what they fill in), and only a device
//! directory that is missing altogether is an error.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use serde::Serialize;

use crate::wwn::Wwn;

pub mod beneath;
mod block;
mod bus;
mod dir;
mod links;
mod multipath;
mod records;
pub mod writes;

pub use block::BlockIndex;
pub use bus::ScsiBus;
pub use dir::{DeviceDir, DirAt, EntryKind};
pub use links::{StableLink, StableLinks, STABLE_LINK_DIRS};
pub use multipath::MultipathMap;
pub use records::*;

#[derive(Debug, thiserror::Error)]
pub enum SysfsError {
    #[error("{0}: no such device in sysfs (removed, or not a {1})")]
    NotFound(PathBuf, &'static str),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: `{name}` is not a {what} name")]
    BadName {
        path: PathBuf,
        name: String,
        what: &'static str,
    },
}

/// The most a text attribute can show: the kernel's show functions print into one
/// page (`sysfs_emit` refuses to write past `PAGE_SIZE`, 4096 on every platform hbad
/// runs on).
pub const ATTR_MAX: usize = 4096;

/// The most a binary attribute hbad reads can hold: a VPD page is a 4-byte header
/// and a 16-bit page length.
pub const BIN_ATTR_MAX: usize = 4 + u16::MAX as usize;

/// An attribute's text as hbad keeps it: up to the first NUL, trimmed; `None` when
/// it is not UTF-8.
fn attr_text(raw: &[u8]) -> Option<String> {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    Some(std::str::from_utf8(&raw[..end]).ok()?.trim().to_string())
}

/// One attribute file by its path, read as [`Sysfs::attr`] reads it: for callers
/// that walk a directory of attributes themselves (`hbad show`'s details).
pub fn attr_file(path: &Path) -> Option<String> {
    attr_text(&read_bounded(path, ATTR_MAX)?)
}

/// Reads an attribute file, or `None` when it is not one: a FIFO, a device or a
/// directory where an attribute should be, or more bytes than the kernel can show.
/// Opened non-blocking and checked with fstat before any read, so a tree that is
/// not the kernel's (a fixture, a copy, a bind mount) can neither hang the reader
/// nor make it read without end (`/dev/zero`, a huge file).
fn read_bounded(path: &Path, max: usize) -> Option<Vec<u8>> {
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)
        .ok()?;
    if !file.metadata().ok()?.file_type().is_file() {
        return None;
    }
    let mut raw = Vec::new();
    // One byte past the bound tells a value at the bound from a longer one: a
    // value cut short would parse as another (a WWN, a number), so it is refused.
    file.take(max as u64 + 1).read_to_end(&mut raw).ok()?;
    (raw.len() <= max).then_some(raw)
}

/// A sysfs tree and the `/dev` tree that goes with it.
#[derive(Clone, Debug)]
pub struct Sysfs {
    root: PathBuf,
    dev_root: PathBuf,
}

impl Default for Sysfs {
    fn default() -> Self {
        Sysfs::new("/sys", "/dev")
    }
}

impl Sysfs {
    pub fn new(root: impl Into<PathBuf>, dev_root: impl Into<PathBuf>) -> Self {
        Sysfs {
            root: root.into(),
            dev_root: dev_root.into(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn dev_root(&self) -> &Path {
        &self.dev_root
    }

    /// The filesystem path of a devpath (`/devices/...`) or class path under this root.
    pub fn path(&self, devpath: &str) -> PathBuf {
        self.root.join(devpath.trim_start_matches('/'))
    }

    /// One attribute, trimmed of the kernel's trailing newline and padding.
    /// `None` when absent, unreadable (write-only, permission) or not text.
    ///
    /// Cut at the first NUL: show functions print C strings with `%s`, so the kernel
    /// never shows one, but a copy of sysfs (or a tree a test wrote) may hold the
    /// bytes behind it, as a vport's symbolic_name buffer does after a shorter name
    /// ended with a NUL was written over a longer one.
    pub fn attr(&self, dir: &str, name: &str) -> Option<String> {
        attr_file(&self.path(dir).join(name))
    }

    /// An attribute as raw bytes (VPD pages are binary).
    pub fn attr_bytes(&self, dir: &str, name: &str) -> Option<Vec<u8>> {
        read_bounded(&self.path(dir).join(name), BIN_ATTR_MAX)
    }

    pub fn attr_parse<T: std::str::FromStr>(&self, dir: &str, name: &str) -> Option<T> {
        self.attr(dir, name)?.parse().ok()
    }

    pub fn attr_wwn(&self, dir: &str, name: &str) -> Option<Wwn> {
        Wwn::from_sysfs(&self.attr(dir, name)?)
    }

    pub fn exists(&self, devpath: &str) -> bool {
        self.path(devpath).is_dir()
    }

    /// The devpath a sysfs symlink points to (`class/scsi_host/host1` ->
    /// `/devices/.../host1/scsi_host/host1`). Works for links that dangle, as they do
    /// in partial copies of sysfs.
    pub fn link_devpath(&self, link: &str) -> Option<String> {
        let link_path = self.path(link);
        let target = fs::read_link(&link_path).ok()?;
        let base = link_path.parent()?.strip_prefix(&self.root).ok()?;
        resolve_link(base, &target)
    }

    /// The last component of what a symlink points at (`driver` -> `sd`).
    pub fn link_name(&self, dir: &str, name: &str) -> Option<String> {
        let target = fs::read_link(self.path(dir).join(name)).ok()?;
        Some(target.file_name()?.to_string_lossy().into_owned())
    }

    /// Names in a directory, sorted; empty when the directory is absent.
    pub fn list(&self, dir: &str) -> Vec<String> {
        let Ok(entries) = fs::read_dir(self.path(dir)) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// The name of the first disk (`sdX`) of a LUN, from its `block/` directory.
    pub fn disk_of_lun(&self, lun_devpath: &str) -> Option<String> {
        self.list(&format!("{lun_devpath}/block"))
            .into_iter()
            .next()
    }

    /// The names of a disk's partitions (`sdX1`, ...): its subdirectories named
    /// after it that have a `partition` attribute.
    pub fn partitions_of(&self, disk_devpath: &str) -> Vec<String> {
        let disk = devpath_name(disk_devpath);
        self.list(disk_devpath)
            .into_iter()
            .filter(|p| p.starts_with(disk))
            .filter(|p| {
                self.attr(&format!("{disk_devpath}/{p}"), "partition")
                    .is_some()
            })
            .collect()
    }

    /// Devpaths of the members of a class (`scsi_host`, `fc_vports`, ...).
    pub fn class_devpaths(&self, class: &str) -> Vec<String> {
        self.link_devpaths(&format!("class/{class}"))
    }

    /// Devpaths of everything on the SCSI bus: hosts, targets and devices.
    pub fn scsi_bus_devpaths(&self) -> Vec<String> {
        self.link_devpaths("bus/scsi/devices")
    }

    /// Where the symlinks in a directory point, in name order: the directory is
    /// opened once and each link read relative to it (a bus directory of a large
    /// host holds one link per LUN).
    fn link_devpaths(&self, dir: &str) -> Vec<String> {
        let Ok(links) = DeviceDir::open(&self.path(dir)) else {
            return Vec::new();
        };
        let base = Path::new(dir.trim_start_matches('/'));
        links
            .names(".")
            .into_iter()
            .filter_map(|name| resolve_link(base, Path::new(&links.link(&name)?)))
            .collect()
    }

    /// Where a device node is shown: `/dev/sda` on the host, whatever dev root we read.
    pub fn dev_node(&self, name: &str) -> String {
        format!("/dev/{name}")
    }
}

/// The devpath a link in `base` (a directory relative to the sysfs root) names
/// with `target`, `..` resolved as the kernel would. Works for links that dangle.
fn resolve_link(base: &Path, target: &Path) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    for comp in base.join(target).components() {
        match comp {
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::RootDir => parts.clear(),
            _ => {}
        }
    }
    Some(format!("/{}", parts.join("/")))
}

/// Parent devpath: `/devices/a/b` -> `/devices/a`.
pub fn parent_devpath(devpath: &str) -> Option<&str> {
    let (parent, _) = devpath.rsplit_once('/')?;
    (!parent.is_empty()).then_some(parent)
}

/// A `dev` attribute (`8:16`) as major and minor numbers.
pub fn parse_major_minor(text: &str) -> Option<(u32, u32)> {
    let (a, b) = text.split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Last component: `/devices/a/host3` -> `host3`.
pub fn devpath_name(devpath: &str) -> &str {
    devpath.rsplit('/').next().unwrap_or(devpath)
}

/// Where the NPIV controls of an FC host live: `fc_host` on current kernels,
/// `scsi_host` on old ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VportControlDir {
    FcHost,
    ScsiHost,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &[u8])]) -> (tempfile::TempDir, Sysfs) {
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in files {
            let path = dir.path().join("devices/x").join(name);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, bytes).unwrap();
        }
        let sysfs = Sysfs::new(dir.path(), dir.path().join("dev"));
        (dir, sysfs)
    }

    #[test]
    fn attr_shows_a_value_up_to_its_first_nul_as_the_kernels_percent_s_does() {
        let (_dir, sysfs) = tree(&[
            // A shorter name ended with a NUL over a longer one: the old tail stays
            // in the buffer behind the NUL.
            ("symbolic_name", b"hbad:db1\0ool-x1\n"),
            // What follows the NUL need not even be text.
            ("binary_tail", b"ok\0\xff\xfe"),
            ("leading_nul", b"\0hidden\n"),
            ("plain", b"  Online \n"),
            ("not_text", b"\xff\xfe\n"),
        ]);
        assert_eq!(
            sysfs.attr("/devices/x", "symbolic_name").as_deref(),
            Some("hbad:db1")
        );
        assert_eq!(
            sysfs.attr("/devices/x", "binary_tail").as_deref(),
            Some("ok")
        );
        assert_eq!(sysfs.attr("/devices/x", "leading_nul").as_deref(), Some(""));
        assert_eq!(sysfs.attr("/devices/x", "plain").as_deref(), Some("Online"));
        assert_eq!(sysfs.attr("/devices/x", "not_text"), None);
        assert_eq!(sysfs.attr("/devices/x", "absent"), None);
    }

    /// Runs `f` on a thread and waits a bounded time for it: a read that hangs
    /// fails the test instead of the test run.
    fn within_seconds<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(std::time::Duration::from_secs(secs))
            .expect("the read did not return")
    }

    #[test]
    fn attributes_that_are_not_attribute_files_are_none_without_hanging() {
        let (dir, sysfs) = tree(&[("ok", b"Online\n"), ("page", &[b'a'; ATTR_MAX])]);
        let x = dir.path().join("devices/x");
        let made = std::process::Command::new("mkfifo")
            .arg(x.join("fifo"))
            .status()
            .unwrap();
        assert!(made.success());
        std::os::unix::fs::symlink("/dev/zero", x.join("zero")).unwrap();
        fs::create_dir(x.join("dir")).unwrap();
        // Sparse: a file longer than any attribute costs no disk.
        fs::File::create(x.join("huge"))
            .unwrap()
            .set_len(256 << 20)
            .unwrap();
        fs::write(x.join("page_and_one"), [b'a'; ATTR_MAX + 1]).unwrap();
        let got = within_seconds(10, move || {
            ["fifo", "zero", "dir", "huge", "page_and_one", "page", "ok"]
                .map(|name| (name, sysfs.attr("/devices/x", name).map(|v| v.len())))
        });
        assert_eq!(
            got,
            [
                ("fifo", None),
                ("zero", None),
                ("dir", None),
                ("huge", None),
                ("page_and_one", None),
                ("page", Some(ATTR_MAX)),
                ("ok", Some(6)),
            ]
        );
    }

    #[test]
    fn binary_attributes_are_bounded_too() {
        let (dir, sysfs) = tree(&[("vpd_pg80", b"\0\x80\0\x02ab")]);
        let x = dir.path().join("devices/x");
        std::os::unix::fs::symlink("/dev/zero", x.join("vpd_pg83")).unwrap();
        fs::File::create(x.join("vpd_pg00"))
            .unwrap()
            .set_len(256 << 20)
            .unwrap();
        let got = within_seconds(10, move || {
            ["vpd_pg80", "vpd_pg83", "vpd_pg00"]
                .map(|name| sysfs.attr_bytes("/devices/x", name).map(|v| v.len()))
        });
        assert_eq!(got, [Some(6), None, None]);
    }
}
