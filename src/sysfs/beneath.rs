//! Opening an attribute for writing without leaving the sysfs root.
//!
//! hbad writes kernel attributes (`vport_create`, `scan`, `delete`, ...) by paths
//! it builds from devpaths: `<root>/devices/.../host3/fc_host/host3/vport_create`.
//! In the kernel's sysfs no component of such a path is a symbolic link: the class
//! and bus directories are links, but every path hbad writes goes through the
//! device's own directory under `devices/`. A tree that is not the kernel's (a
//! fixture, a `--sysfs-root` given by hand, a copy) may hold a link there, and a
//! write through it would land wherever the link points.
//!
//! So the write's path is opened relative to a descriptor of the sysfs root with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)` and
//! `O_NOFOLLOW | O_NOCTTY | O_CLOEXEC`: no symbolic link anywhere below the root,
//! not even one that stays inside it (the kernel's tree has none on these paths,
//! and a rule that needs no reading of link targets is the same on every kernel).
//! The root itself may be reached through links (`/sys` is never one, a test's
//! temporary directory may be). Where `openat2` is missing (`ENOSYS`: kernels
//! before 5.6, or a seccomp filter that answers `ENOSYS` or `EPERM`), the same
//! rule is kept by walking the path one directory at a time with `openat(O_NOFOLLOW
//! | O_DIRECTORY)` from the root's descriptor: as race-free, one system call per
//! component more. Mount points below the root are not refused (`RESOLVE_NO_XDEV`
//! is left out: only root mounts, and the walk could not tell a bind mount).
//!
//! The attribute need not be a regular file: tests stand in for the kernel with a
//! FIFO at an attribute's path, and a FIFO's open for writing waits for a reader as
//! a `vport_create` waits in the kernel.

use std::ffi::OsStr;
use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

const WRITE_FLAGS: OFlags = OFlags::WRONLY
    .union(OFlags::NOFOLLOW)
    .union(OFlags::NOCTTY)
    .union(OFlags::CLOEXEC);

/// A write hbad refused before opening anything: the path leaves the sysfs root,
/// or goes through a symbolic link below it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub path: PathBuf,
    pub root: PathBuf,
    pub why: String,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: refusing to write", self.path.display(), self.why)
    }
}

impl std::error::Error for Refused {}

impl Refused {
    fn error(self) -> io::Error {
        io::Error::new(io::ErrorKind::PermissionDenied, self)
    }
}

/// Is this the error of a refused write (and not one of the kernel's)?
pub fn is_refused(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<Refused>())
}

/// Opens `path`, which must lie below `root`, for writing (never creating), with
/// no symbolic link on the way from `root` nor at its end.
pub fn open_for_write(root: &Path, path: &Path) -> io::Result<File> {
    let rel = relative(root, path)?;
    // The root itself may be reached through links (a test's temporary directory).
    let root_flags = DIR_FLAGS.difference(OFlags::NOFOLLOW);
    // Its errors keep their errno: `write-attr` exits with it.
    let root_fd = retry(|| rustix::fs::open(root, root_flags, Mode::empty()))?;
    let opened = match open_resolved(&root_fd, rel) {
        Err(Errno::NOSYS) | Err(Errno::PERM) => open_walked(&root_fd, rel),
        other => other,
    };
    match opened {
        Ok(fd) => Ok(File::from(fd)),
        Err(Errno::LOOP) | Err(Errno::XDEV) => Err(refusal(root, path).error()),
        Err(e) => Err(e.into()),
    }
}

/// `path` below `root`, as plain names: anything else (`..`, a path elsewhere)
/// is refused before any open.
fn relative<'p>(root: &Path, path: &'p Path) -> io::Result<&'p Path> {
    let outside = |why: &str| Refused {
        path: path.to_path_buf(),
        root: root.to_path_buf(),
        why: format!("{why} the sysfs root {}", root.display()),
    };
    let rel = path
        .strip_prefix(root)
        .map_err(|_| outside("is not below").error())?;
    let plain = rel.components().all(|c| matches!(c, Component::Normal(_)));
    if !plain || rel.as_os_str().is_empty() {
        return Err(outside("leads out of").error());
    }
    Ok(rel)
}

fn open_resolved(root: &OwnedFd, rel: &Path) -> Result<OwnedFd, Errno> {
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    retry(|| rustix::fs::openat2(root, rel, WRITE_FLAGS, Mode::empty(), resolve))
}

/// The same rule without `openat2`: each directory opened with `O_NOFOLLOW` from
/// the one before, the attribute last (`ELOOP` wherever a link is met).
fn open_walked(root: &OwnedFd, rel: &Path) -> Result<OwnedFd, Errno> {
    let names: Vec<&OsStr> = rel.iter().collect();
    let Some((last, dirs)) = names.split_last() else {
        return Err(Errno::INVAL);
    };
    let mut dir: Option<OwnedFd> = None;
    for name in dirs {
        let at = dir.as_ref().map_or(root.as_fd(), |d| d.as_fd());
        let opened = retry(|| rustix::fs::openat(at, *name, DIR_FLAGS, Mode::empty()));
        dir = Some(opened.map_err(|e| match e {
            // `O_DIRECTORY` answers a link before `O_NOFOLLOW` does.
            Errno::NOTDIR if is_link(at, name) => Errno::LOOP,
            e => e,
        })?);
    }
    let at = dir.as_ref().map_or(root.as_fd(), |d| d.as_fd());
    retry(|| rustix::fs::openat(at, *last, WRITE_FLAGS, Mode::empty()))
}

fn is_link(at: BorrowedFd<'_>, name: &OsStr) -> bool {
    rustix::fs::statat(at, name, AtFlags::SYMLINK_NOFOLLOW)
        .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Symlink)
}

fn retry(mut f: impl FnMut() -> Result<OwnedFd, Errno>) -> Result<OwnedFd, Errno> {
    loop {
        match f() {
            Err(Errno::INTR) => continue,
            other => return other,
        }
    }
}

/// Why a write to `path` was refused, in words: the first symbolic link on the
/// way, where it points, and whether that is outside the root. Only on the
/// error path, so it may look at each component.
pub fn refusal(root: &Path, path: &Path) -> Refused {
    let refused = |why: String| Refused {
        path: path.to_path_buf(),
        root: root.to_path_buf(),
        why,
    };
    let Ok(rel) = relative(root, path) else {
        return refused(format!("is not below the sysfs root {}", root.display()));
    };
    let mut at = root.to_path_buf();
    let mut inside: Vec<&OsStr> = Vec::new();
    for name in rel.iter() {
        at.push(name);
        let Ok(target) = std::fs::read_link(&at) else {
            inside.push(name);
            continue;
        };
        let shown = format!("{} -> {}", at.display(), target.display());
        return if stays_inside(&inside, &target) {
            refused(format!(
                "goes through the symbolic link {shown} below the sysfs root {} (sysfs has none on the way to an attribute)",
                root.display()
            ))
        } else {
            refused(format!(
                "leads out of the sysfs root {} through the symbolic link {shown}",
                root.display()
            ))
        };
    }
    refused(format!(
        "cannot be opened below the sysfs root {} without following a symbolic link",
        root.display()
    ))
}

/// Does a link in the directory `base` (names below the root) pointing at
/// `target` stay below the root, `..` taken as written?
fn stays_inside(base: &[&OsStr], target: &Path) -> bool {
    let mut depth = base.len();
    for comp in target.components() {
        match comp {
            Component::Normal(_) => depth += 1,
            Component::ParentDir if depth == 0 => return false,
            Component::ParentDir => depth -= 1,
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_inside_when_their_dots_stay_below_the_root() {
        let base = [OsStr::new("devices"), OsStr::new("x")];
        assert!(stays_inside(&base, Path::new("../y/z")));
        assert!(stays_inside(&base, Path::new("../../devices")));
        assert!(!stays_inside(&base, Path::new("../../../etc")));
        assert!(!stays_inside(&base, Path::new("/sys/devices/x")));
        assert!(!stays_inside(&[], Path::new("..")));
    }

    #[test]
    fn paths_not_plainly_below_the_root_are_refused_before_any_open() {
        let root = Path::new("/nonexistent/sys");
        for path in [
            "/nonexistent/other/devices/scan",
            "/nonexistent/sys/devices/../../etc/passwd",
            "/nonexistent/sys",
        ] {
            let e = open_for_write(root, Path::new(path)).unwrap_err();
            assert!(is_refused(&e), "{path}: {e}");
            assert!(e.to_string().ends_with(": refusing to write"), "{e}");
            assert!(e.to_string().starts_with(path), "{e}");
        }
    }

    /// The walk kept for kernels without `openat2` follows the same rule, and
    /// both give `ELOOP` for a link met anywhere below the root.
    #[test]
    fn the_walk_without_openat2_refuses_what_openat2_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("devices/h/scsi_host")).unwrap();
        std::fs::write(root.join("devices/h/scsi_host/scan"), "").unwrap();
        std::os::unix::fs::symlink("../../../outside", root.join("devices/h/linked")).unwrap();
        std::os::unix::fs::symlink("h", root.join("devices/l")).unwrap();
        let root_fd = rustix::fs::open(root, DIR_FLAGS, Mode::empty()).unwrap();
        for (rel, want) in [
            ("devices/h/scsi_host/scan", None),
            ("devices/h/linked", Some(Errno::LOOP)),
            ("devices/l/scsi_host/scan", Some(Errno::LOOP)),
            ("devices/h/absent", Some(Errno::NOENT)),
            ("devices/h/scsi_host/scan/x", Some(Errno::NOTDIR)),
        ] {
            let walked = open_walked(&root_fd, Path::new(rel)).err();
            assert_eq!(walked, want, "{rel}");
            match open_resolved(&root_fd, Path::new(rel)) {
                // A kernel before 5.6 (or a filter): only the walk is there.
                Err(Errno::NOSYS) | Err(Errno::PERM) => {}
                resolved => assert_eq!(resolved.err(), want, "{rel}"),
            }
        }
        let says = refusal(root, &root.join("devices/l/scsi_host/scan")).to_string();
        assert!(says.contains("goes through the symbolic link"), "{says}");
        assert!(says.contains("devices/l -> h"), "{says}");
        let says = refusal(root, &root.join("devices/h/linked")).to_string();
        assert!(says.contains("leads out of the sysfs root"), "{says}");
    }
}
