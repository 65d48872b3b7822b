//! A device's directory, opened once, with its attributes read relative to it.
//!
//! An attribute read by its absolute path (`/sys/devices/pci0000:00/.../host3/
//! rport-3:0-1/target3:0:0/3:0:0:7/vendor`) makes the kernel walk a dozen path
//! components each time; a LUN has eight attributes and a large host tens of
//! thousands of LUNs, so cold plug spent a quarter of its cycles in path lookup.
//! A [`DeviceDir`] is opened once per device and each attribute is opened with
//! `openat` on it: one component to look up.
//!
//! Each value is read with one `read` into a stack buffer one byte larger than the
//! bound: the kernel's show functions fill one page and kernfs hands the whole of
//! it to the first read that asks for as much, so one read sees all there is, and
//! a read that fills the buffer says the file is longer than any attribute. The
//! rules are those of [`super::Sysfs::attr`]: opened non-blocking, regular files
//! only (a FIFO or a device where an attribute should be is not one), nothing past
//! the bound. Only the type is checked differently, to keep one `openat` and one
//! `read` per attribute: not before the read, but when the read gives nothing (a
//! FIFO without a writer, opened non-blocking, reads as at its end; one with a
//! writer and nothing in it fails with `EAGAIN`, as `/dev/null` reads nothing):
//! then one `fstat` tells an empty attribute from a file that is not one, which
//! reads as absent. A FIFO that holds bytes is read as a file would be (only a
//! test's stand-in for the kernel can be one), and a device that gives more than
//! a page (`/dev/zero`) is refused by the bound.

use std::borrow::Cow;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::fcntl::{open, openat, readlinkat, AtFlags, OFlag};
use nix::sys::stat::{fstatat, Mode};
use rustix::fs::FileType;

use super::{ATTR_MAX, BIN_ATTR_MAX};

const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_CLOEXEC);

const ATTR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_NONBLOCK)
    .union(OFlag::O_NOCTTY)
    .union(OFlag::O_CLOEXEC);

/// An open device (or class) directory.
#[derive(Debug)]
pub struct DeviceDir {
    fd: OwnedFd,
}

impl DeviceDir {
    pub fn open(path: &Path) -> io::Result<DeviceDir> {
        let fd = open(path, DIR_FLAGS, Mode::empty())?;
        Ok(DeviceDir { fd })
    }

    /// A directory below this one (`scsi_host/host3`, `block`).
    pub fn sub(&self, name: &str) -> io::Result<DeviceDir> {
        let fd = openat(self.fd.as_fd(), name, DIR_FLAGS, Mode::empty())?;
        Ok(DeviceDir { fd })
    }

    /// Does this directory hold `name` (following a symlink, as `Path::exists`)?
    pub fn has(&self, name: &str) -> bool {
        fstatat(self.fd.as_fd(), name, AtFlags::empty()).is_ok()
    }

    /// Opens an attribute file; `None` when it is absent.
    fn attr_file(&self, name: &str) -> Option<File> {
        Some(File::from(
            openat(self.fd.as_fd(), name, ATTR_FLAGS, Mode::empty()).ok()?,
        ))
    }

    /// One attribute, trimmed, cut at its first NUL: [`super::Sysfs::attr`] read
    /// relative to this directory.
    pub fn attr(&self, name: &str) -> Option<String> {
        read_attr_text(&self.attr_file(name)?)
    }

    pub fn attr_parse<T: std::str::FromStr>(&self, name: &str) -> Option<T> {
        self.attr(name)?.parse().ok()
    }

    pub fn attr_wwn(&self, name: &str) -> Option<crate::wwn::Wwn> {
        crate::wwn::Wwn::from_sysfs(&self.attr(name)?)
    }

    /// A binary attribute (a VPD page), up to [`BIN_ATTR_MAX`] bytes.
    pub fn attr_bytes(&self, name: &str) -> Option<Vec<u8>> {
        let mut file = self.attr_file(name)?;
        let mut buf = [0u8; ATTR_MAX + 1];
        let n = read_once(&mut file, &mut buf)?;
        if n == 0 && !is_attr_file(&file) {
            return None;
        }
        let mut raw = buf[..n].to_vec();
        if n == buf.len() {
            // Longer than a page (a VPD page can be): the rest, up to one byte past
            // the bound, so that a longer file is refused rather than cut.
            let rest = (BIN_ATTR_MAX + 1 - n) as u64;
            file.take(rest).read_to_end(&mut raw).ok()?;
        }
        (raw.len() <= BIN_ATTR_MAX).then_some(raw)
    }

    /// The last component of what a symlink here points at (`driver` -> `sd`).
    pub fn link_name(&self, name: &str) -> Option<String> {
        let target = readlinkat(self.fd.as_fd(), name).ok()?;
        let target = Path::new(&target);
        Some(target.file_name()?.to_string_lossy().into_owned())
    }

    /// What a symlink here points at, as written in the link.
    pub fn link(&self, name: &str) -> Option<std::ffi::OsString> {
        readlinkat(self.fd.as_fd(), name).ok()
    }

    /// What a symlink here points at, read into `buf`: no allocation, for the
    /// tens of thousands of links of a large host. `None` when it is not a link or
    /// its target does not fit (a target cut short would name another device).
    pub fn link_into<'b>(&self, name: &str, buf: &'b mut [u8]) -> Option<&'b [u8]> {
        let n = rustix::fs::readlinkat_raw(self.fd.as_fd(), name, &mut *buf).ok()?;
        (n < buf.len()).then(|| &buf[..n])
    }

    /// Calls `f` with the name and type of each entry of the directory `name`
    /// below this one (`.` for this one), in the order the filesystem gives them
    /// (`.` and `..` left out; names that are not UTF-8 too: the kernel names
    /// devices in ASCII). The type comes from the directory entry, so a listing
    /// costs no `stat` per entry; only a filesystem that leaves it out
    /// (`DT_UNKNOWN`) is asked with `fstatat`.
    pub fn each_entry(&self, name: &str, mut f: impl FnMut(&str, EntryKind)) {
        let Ok(fd) = openat(self.fd.as_fd(), name, DIR_FLAGS, Mode::empty()) else {
            return;
        };
        let mut buf = [MaybeUninit::<u8>::uninit(); 8192];
        let mut dir = rustix::fs::RawDir::new(&fd, &mut buf);
        while let Some(Ok(entry)) = dir.next() {
            let Ok(entry_name) = entry.file_name().to_str() else {
                continue;
            };
            if entry_name == "." || entry_name == ".." {
                continue;
            }
            let kind = match entry.file_type() {
                FileType::Directory => EntryKind::Dir,
                FileType::Symlink => EntryKind::Link,
                FileType::RegularFile => EntryKind::File,
                FileType::Unknown => {
                    match fstatat(fd.as_fd(), entry_name, AtFlags::AT_SYMLINK_NOFOLLOW) {
                        Ok(st) => EntryKind::of_mode(st.st_mode),
                        Err(_) => continue,
                    }
                }
                _ => EntryKind::Other,
            };
            f(entry_name, kind);
        }
    }

    /// Names in the directory `name` below this one, sorted (`.` and `..` left
    /// out); empty when it is absent.
    pub fn names(&self, name: &str) -> Vec<String> {
        let Ok(fd) = openat(self.fd.as_fd(), name, DIR_FLAGS, Mode::empty()) else {
            return Vec::new();
        };
        // getdents64 straight into a buffer on the stack: a device directory holds
        // a few dozen names, and a libc DIR costs an fstat, two fcntls and a
        // rewinding lseek more per directory, for each of tens of thousands of LUNs.
        let mut buf = [MaybeUninit::<u8>::uninit(); 4096];
        let mut dir = rustix::fs::RawDir::new(&fd, &mut buf);
        let mut names = Vec::new();
        // A read error ends the listing: asking again would only fail again.
        while let Some(Ok(entry)) = dir.next() {
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.push(OsStr::from_bytes(name).to_string_lossy().into_owned());
            }
        }
        names.sort();
        names
    }
}

/// A directory below an open [`DeviceDir`] (`3:0:0:7`, `3:0:0:7/block/sdc`), read
/// through it without being opened itself: each attribute is one `openat` on the
/// open directory with a path of a few components. A LUN read this way costs the
/// open and close of its directory less, and its disk as much again: on a host of
/// tens of thousands of LUNs, a sixth of cold plug's system calls, for a path
/// lookup of two or four components in place of one.
#[derive(Clone, Debug)]
pub struct DirAt<'a> {
    dir: &'a DeviceDir,
    /// Relative to `dir`; empty for `dir` itself.
    path: Cow<'a, str>,
}

impl DeviceDir {
    /// This directory itself, as a [`DirAt`].
    pub fn here(&self) -> DirAt<'_> {
        self.at("")
    }

    /// The directory `path` below this one, not opened (see [`DirAt`]).
    pub fn at<'a>(&'a self, path: &'a str) -> DirAt<'a> {
        DirAt {
            dir: self,
            path: Cow::Borrowed(path),
        }
    }
}

impl<'a> DirAt<'a> {
    /// `name` below this directory, as a path relative to the open one.
    fn join<'n>(&self, name: &'n str) -> Cow<'n, str> {
        if self.path.is_empty() {
            Cow::Borrowed(name)
        } else {
            Cow::Owned(format!("{}/{name}", self.path))
        }
    }

    /// The directory `sub` below this one, not opened either.
    pub fn below(&self, sub: &str) -> DirAt<'a> {
        DirAt {
            dir: self.dir,
            path: Cow::Owned(self.join(sub).into_owned()),
        }
    }

    /// Is this directory there? (Its attributes read as absent when it is not.)
    pub fn exists(&self) -> bool {
        self.path.is_empty()
            || fstatat(self.dir.fd.as_fd(), &*self.path, AtFlags::empty())
                .is_ok_and(|st| EntryKind::of_mode(st.st_mode) == EntryKind::Dir)
    }

    /// Calls `f` with `name` below this directory as a path relative to the open
    /// one, put together on the stack: cold plug reads a few attributes through
    /// each of tens of thousands of LUN directories, and a path allocated for each
    /// read would be as many allocations again.
    fn with_path<R>(&self, name: &str, f: impl FnOnce(&str) -> R) -> R {
        if self.path.is_empty() {
            return f(name);
        }
        let mut buf = [0u8; 256];
        let (dir, len) = (self.path.len(), self.path.len() + 1 + name.len());
        match buf.get_mut(..len) {
            Some(out) => {
                out[..dir].copy_from_slice(self.path.as_bytes());
                out[dir] = b'/';
                out[dir + 1..].copy_from_slice(name.as_bytes());
                // Two strings and a '/' are UTF-8: the check only proves it.
                match std::str::from_utf8(out) {
                    Ok(path) => f(path),
                    Err(_) => f(&self.join(name)),
                }
            }
            None => f(&self.join(name)),
        }
    }

    /// Opens a directory below this one.
    pub fn sub(&self, name: &str) -> io::Result<DeviceDir> {
        self.with_path(name, |p| self.dir.sub(p))
    }

    pub fn attr(&self, name: &str) -> Option<String> {
        self.with_path(name, |p| self.dir.attr(p))
    }

    pub fn attr_parse<T: std::str::FromStr>(&self, name: &str) -> Option<T> {
        self.with_path(name, |p| self.dir.attr_parse(p))
    }

    pub fn attr_bytes(&self, name: &str) -> Option<Vec<u8>> {
        self.with_path(name, |p| self.dir.attr_bytes(p))
    }

    pub fn link_name(&self, name: &str) -> Option<String> {
        self.with_path(name, |p| self.dir.link_name(p))
    }

    pub fn names(&self, name: &str) -> Vec<String> {
        self.with_path(name, |p| self.dir.names(p))
    }
}

/// What a directory entry is, as its directory tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    Dir,
    Link,
    File,
    /// A FIFO, a socket, a device node: never a device directory or attribute.
    Other,
}

impl EntryKind {
    fn of_mode(mode: libc::mode_t) -> EntryKind {
        match mode & libc::S_IFMT {
            libc::S_IFDIR => EntryKind::Dir,
            libc::S_IFLNK => EntryKind::Link,
            libc::S_IFREG => EntryKind::File,
            _ => EntryKind::Other,
        }
    }
}

/// An attribute's text from its open file: one read, into a buffer that is not
/// zeroed first (a LUN's few attributes would each clear a page for a few
/// bytes: a sixth of what a listing spends outside the kernel), as
/// [`read_once`] retried only when a signal cut it short of any byte.
fn read_attr_text(file: &File) -> Option<String> {
    let mut buf = [MaybeUninit::<u8>::uninit(); ATTR_MAX + 1];
    loop {
        match rustix::io::read(file, &mut buf[..]) {
            Ok((read, _)) if read.len() > ATTR_MAX => return None,
            Ok((read, _)) if read.is_empty() && !is_attr_file(file) => return None,
            Ok((read, _)) => return super::attr_text(read),
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return None,
        }
    }
}

/// Is this open file a regular file, as every sysfs attribute is? Asked only
/// when a read gave nothing (see the module's notes).
fn is_attr_file(file: &File) -> bool {
    rustix::fs::fstat(file)
        .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::RegularFile)
}

/// One read, retried only when a signal cut it short of any byte.
fn read_once(file: &mut File, buf: &mut [u8]) -> Option<usize> {
    loop {
        match file.read(buf) {
            Ok(n) => return Some(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        }
    }
}
