//! The directory tree the simulator keeps shaped like sysfs and `/dev`.
//!
//! Only what hbad reads is materialised, but in exactly the kernel's layout: device
//! directories nested as the kernel nests them, class and bus entries as relative
//! symlinks, attributes with the kernel's trailing newline, write-only attributes as
//! empty files (as in the shared capture).

use std::fs;
use std::io;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub(crate) struct Tree {
    sys: PathBuf,
    dev: PathBuf,
}

impl Tree {
    pub(crate) fn create(dir: &Path) -> io::Result<Tree> {
        let tree = Tree {
            sys: dir.join("sys"),
            dev: dir.join("dev"),
        };
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

    /// A readable attribute; sysfs `show` handlers end their text with a newline.
    /// Replaced whole (written beside, then renamed over): a kernel attribute is
    /// never seen half-written, and a reader on another thread (the agent reading
    /// a host while a worker's write changes it) must not see an empty one.
    pub(crate) fn attr(&self, dir: &str, name: &str, value: &str) -> io::Result<()> {
        let path = self.path(dir).join(name);
        let tmp = self.path(dir).join(format!(".{name}.new"));
        fs::write(&tmp, format!("{value}\n"))?;
        fs::rename(&tmp, &path)
    }

    /// A binary attribute (VPD pages), exactly these bytes.
    pub(crate) fn attr_bytes(&self, dir: &str, name: &str, value: &[u8]) -> io::Result<()> {
        fs::write(self.path(dir).join(name), value)
    }

    /// A write-only attribute: present (so opening it works) and empty.
    pub(crate) fn write_only(&self, dir: &str, name: &str) -> io::Result<()> {
        fs::write(self.path(dir).join(name), b"")
    }

    /// A symlink at `link` (relative to the sysfs root) to the devpath `target`,
    /// written relative as the kernel does (`../../devices/...`).
    pub(crate) fn link(&self, link: &str, target: &str) -> io::Result<()> {
        let link_path = self.sys.join(link);
        let depth = link.matches('/').count();
        let rel = format!("{}{}", "../".repeat(depth), target.trim_start_matches('/'));
        let _ = fs::remove_file(&link_path);
        symlink(rel, link_path)
    }

    /// A symlink inside a device directory to a path relative to the sysfs root.
    pub(crate) fn link_in(&self, dir: &str, name: &str, target_from_root: &str) -> io::Result<()> {
        let depth = dir.trim_start_matches('/').matches('/').count() + 1;
        let rel = format!("{}{}", "../".repeat(depth), target_from_root);
        let path = self.path(dir).join(name);
        let _ = fs::remove_file(&path);
        symlink(rel, path)
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
        let _ = fs::remove_file(&path);
        symlink(format!("../../{disk}"), path)
    }

    pub(crate) fn dev_unlink(&self, dir: &str, name: &str) -> io::Result<()> {
        match fs::remove_file(self.dev.join("disk").join(dir).join(name)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }
}
