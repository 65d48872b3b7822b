//! The directory tree the simulator keeps shaped like sysfs and `/dev`.
//!
//! Only what hbad reads is materialised, but in exactly the kernel's layout: device
//! directories nested as the kernel nests them, class and bus entries as relative
//! symlinks, attributes with the kernel's trailing newline, write-only attributes as
//! empty files (as in the shared capture).
//!
//! Every file and link is replaced in one step (made aside, then renamed over the
//! old one). sysfs makes an attribute's text when it is read, so a reader sees the
//! old value or the new one, never an empty or half-written file, and a class link
//! is never missing while it is re-pointed. Readers here run on other threads than
//! the writes (the agent's loop reads while a worker's vport_create rewrites a
//! vport's attributes): a truncate-then-write would let them read a vport with no
//! WWPN or no mark, which the kernel never shows.

use std::fs;
use std::io;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Clone)]
pub(crate) struct Tree {
    sys: PathBuf,
    dev: PathBuf,
    /// Where files and links are made before they are renamed into place: beside
    /// the trees, so no listing of a device directory ever shows them.
    aside: PathBuf,
}

/// Names for what is made aside, unique across threads and simulators.
static ASIDE: AtomicU64 = AtomicU64::new(0);

impl Tree {
    pub(crate) fn create(dir: &Path) -> io::Result<Tree> {
        let tree = Tree {
            sys: dir.join("sys"),
            dev: dir.join("dev"),
            aside: dir.join("sys.new"),
        };
        fs::create_dir_all(&tree.aside)?;
        for d in [
            "class/scsi_host",
            "class/fc_host",
            "class/fc_vports",
            "class/fc_remote_ports",
            "class/fc_transport",
            "class/scsi_device",
            "class/scsi_disk",
            "class/scsi_generic",
            "class/bsg",
            "bus/scsi/devices",
            "bus/scsi/drivers/sd",
            "block",
            "devices",
        ] {
            fs::create_dir_all(tree.sys.join(d))?;
        }
        for d in ["disk/by-path", "disk/by-id"] {
            fs::create_dir_all(tree.dev.join(d))?;
        }
        Ok(tree)
    }

    pub(crate) fn sys(&self) -> &Path {
        &self.sys
    }

    pub(crate) fn dev(&self) -> &Path {
        &self.dev
    }

    pub(crate) fn path(&self, devpath: &str) -> PathBuf {
        self.sys.join(devpath.trim_start_matches('/'))
    }

    pub(crate) fn mkdir(&self, devpath: &str) -> io::Result<()> {
        fs::create_dir_all(self.path(devpath))
    }

    /// Puts what `make` makes at a fresh path aside in place of `path`, in one step.
    fn replace(&self, path: &Path, make: impl FnOnce(&Path) -> io::Result<()>) -> io::Result<()> {
        let n = ASIDE.fetch_add(1, Ordering::Relaxed);
        let new = self.aside.join(n.to_string());
        let made = make(&new).and_then(|()| fs::rename(&new, path));
        if made.is_err() {
            let _ = fs::remove_file(&new);
        }
        made
    }

    /// A readable attribute; sysfs `show` handlers end their text with a newline.
    pub(crate) fn attr(&self, dir: &str, name: &str, value: &str) -> io::Result<()> {
        self.attr_bytes(dir, name, format!("{value}\n").as_bytes())
    }

    /// A binary attribute (VPD pages), exactly these bytes.
    pub(crate) fn attr_bytes(&self, dir: &str, name: &str, value: &[u8]) -> io::Result<()> {
        self.replace(&self.path(dir).join(name), |new| fs::write(new, value))
    }

    /// A write-only attribute: present (so opening it works) and empty.
    pub(crate) fn write_only(&self, dir: &str, name: &str) -> io::Result<()> {
        self.attr_bytes(dir, name, b"")
    }

    /// A symlink at `link` (relative to the sysfs root) to the devpath `target`,
    /// written relative as the kernel does (`../../devices/...`).
    pub(crate) fn link(&self, link: &str, target: &str) -> io::Result<()> {
        let link_path = self.sys.join(link);
        let depth = link.matches('/').count();
        let rel = format!("{}{}", "../".repeat(depth), target.trim_start_matches('/'));
        self.replace(&link_path, |new| symlink(rel, new))
    }

    /// A symlink inside a device directory to a path relative to the sysfs root.
    pub(crate) fn link_in(&self, dir: &str, name: &str, target_from_root: &str) -> io::Result<()> {
        let depth = dir.trim_start_matches('/').matches('/').count() + 1;
        let rel = format!("{}{}", "../".repeat(depth), target_from_root);
        self.replace(&self.path(dir).join(name), |new| symlink(rel, new))
    }

    pub(crate) fn unlink(&self, link: &str) -> io::Result<()> {
        match fs::remove_file(self.sys.join(link)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    pub(crate) fn rmdir_all(&self, devpath: &str) -> io::Result<()> {
        match fs::remove_dir_all(self.path(devpath)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    /// `/dev/disk/<dir>/<name>` -> `../../<disk>`, as udev makes them.
    pub(crate) fn dev_link(&self, dir: &str, name: &str, disk: &str) -> io::Result<()> {
        let path = self.dev.join("disk").join(dir).join(name);
        self.replace(&path, |new| symlink(format!("../../{disk}"), new))
    }

    pub(crate) fn dev_unlink(&self, dir: &str, name: &str) -> io::Result<()> {
        match fs::remove_file(self.dev.join("disk").join(dir).join(name)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }
}
