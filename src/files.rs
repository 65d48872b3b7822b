//! Files hbad reads or replaces at paths that others can reach or an operator can
//! mistype: policy files, the ownership state file, the status file, the metrics
//! textfile, replay captures, `/proc` of a fixture tree.
//!
//! A read opens with `O_NONBLOCK` (a FIFO returns at once instead of waiting for a
//! writer forever), checks the open file with `fstat` (what is checked is what is
//! read), refuses anything but a regular file, and reads at most a bound the caller
//! names, so `/dev/zero` or a file that keeps growing never eats memory.
//!
//! A replacement refuses a path that holds anything but a regular file (renaming
//! over `/dev/null` would replace the system's), and writes a temporary of a name
//! no other writer uses, created with `O_EXCL` and `O_NOFOLLOW` (a link planted at
//! that name in a shared directory is never followed), synced, then renamed over
//! the file: a reader sees the old file or the new one, never half of one.

use std::ffi::OsString;
use std::fs::{self, File, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Whether the owner and mode of the files hbad trusts (policy files, the
/// ownership state file) and of their directories are checked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Perms {
    /// Owned by root or the user running hbad; not writable by group or others.
    #[default]
    Strict,
    /// Anything readable (`--no-strict-perms`, `HBAD_NO_STRICT_PERMS=1`).
    Relaxed,
}

/// Why a file or directory is not to be trusted, as sshd's StrictModes judges:
/// someone other than root or the user running hbad could have written it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Distrust {
    #[error("is owned by uid {0}, not by root")]
    Owner(u32),
    #[error("is writable by {} (mode {:04o})", if .0 & 0o002 != 0 { "everyone" } else { "its group" }, .0 & 0o7777)]
    Writable(u32),
}

impl Distrust {
    /// Why `meta`'s file is not to be trusted, if it is not.
    pub fn of(meta: &Metadata) -> Option<Distrust> {
        let euid = nix::unistd::geteuid().as_raw();
        if meta.uid() != 0 && meta.uid() != euid {
            Some(Distrust::Owner(meta.uid()))
        } else if meta.mode() & 0o022 != 0 {
            Some(Distrust::Writable(meta.mode()))
        } else {
            None
        }
    }

    /// The same for a directory, where a sticky one owned by root (/tmp) lets no
    /// one replace another's file.
    pub fn of_dir(meta: &Metadata) -> Option<Distrust> {
        let sticky_root = meta.mode() & libc::S_ISVTX != 0 && meta.uid() == 0;
        if sticky_root {
            None
        } else {
            Distrust::of(meta)
        }
    }
}

/// Why a bounded read gave no bytes.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot open it: {0}")]
    Open(#[source] io::Error),
    #[error("cannot stat it: {0}")]
    Stat(#[source] io::Error),
    #[error("is {0}, not a regular file")]
    NotRegular(&'static str),
    #[error("is {len} bytes or more; hbad reads at most {max} bytes of it")]
    TooBig { len: u64, max: u64 },
    #[error("cannot read it: {0}")]
    Read(#[source] io::Error),
}

impl ReadError {
    /// There is no file at the path.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ReadError::Open(e) if e.kind() == io::ErrorKind::NotFound)
    }

    /// As an `io::Error` whose text names the path, of kind `NotFound` when there
    /// is no file.
    pub fn into_io(self, path: &Path) -> io::Error {
        let kind = match &self {
            ReadError::Open(e) | ReadError::Stat(e) | ReadError::Read(e) => e.kind(),
            ReadError::NotRegular(_) | ReadError::TooBig { .. } => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, format!("{}: {self}", path.display()))
    }
}

/// A file opened without blocking, with what `fstat` says of it.
#[derive(Debug)]
pub struct Opened {
    file: File,
    meta: Metadata,
}

impl Opened {
    /// Opens `path` for reading with `O_NONBLOCK`, and `fstat`s the open file.
    pub fn open(path: &Path) -> Result<Opened, ReadError> {
        let file = File::options()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
            .open(path)
            .map_err(ReadError::Open)?;
        let meta = file.metadata().map_err(ReadError::Stat)?;
        Ok(Opened { file, meta })
    }

    pub fn metadata(&self) -> &Metadata {
        &self.meta
    }

    /// `/dev/null` (1, 3 on Linux): how systemd's drop-in rules mask a file.
    pub fn is_dev_null(&self) -> bool {
        self.meta.file_type().is_char_device() && self.meta.rdev() == libc::makedev(1, 3)
    }

    /// The whole file, when it is a regular file of at most `max` bytes.
    pub fn read_to(self, max: u64) -> Result<Vec<u8>, ReadError> {
        if !self.meta.file_type().is_file() {
            return Err(ReadError::NotRegular(kind(&self.meta)));
        }
        if self.meta.len() > max {
            return Err(ReadError::TooBig {
                len: self.meta.len(),
                max,
            });
        }
        // The size fstat gave is a hint only (0 for /proc files, and the file may
        // grow after the fstat): the bound is kept on the read itself.
        let mut bytes = Vec::with_capacity(self.meta.len() as usize);
        self.file
            .take(max.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(ReadError::Read)?;
        if bytes.len() as u64 > max {
            return Err(ReadError::TooBig {
                len: bytes.len() as u64,
                max,
            });
        }
        Ok(bytes)
    }
}

/// The bytes of the regular file at `path`, at most `max` of them, read without
/// blocking on a FIFO or a device.
pub fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, ReadError> {
    Opened::open(path)?.read_to(max)
}

/// What a file that is not a regular file is, in words.
pub fn kind(meta: &Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_file() {
        "a regular file"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_symlink() {
        "a symbolic link"
    } else {
        "not a regular file"
    }
}

/// Why hbad must not replace what is at `path`, if it must not: only a regular
/// file, or nothing yet, may be renamed over. Checked at start-up, so a mistyped
/// `--status-file /dev/null` is refused before any work, and again at each write.
pub fn replaceable(path: &Path) -> Result<(), String> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_file() => Ok(()),
        Ok(meta) => Err(format!(
            "{} is {}; hbad replaces it whole, so it must be a regular file or absent",
            path.display(),
            kind(&meta)
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Replaces the file at `path` with `bytes`, whole or not at all: a temporary of a
/// unique hidden name beside it (same filesystem; a `*.prom` or `*.json` glob never
/// matches it), created with `O_EXCL | O_NOFOLLOW` and `mode`, synced, renamed over
/// the file. The directory is not synced: callers whose file must survive a crash
/// ([`crate::ownership`]) sync it themselves.
pub fn replace(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    replaceable(path).map_err(|why| io::Error::new(io::ErrorKind::InvalidInput, why))?;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let mut tmp_name = OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(
        ".{}.{}.tmp",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp: PathBuf = directory_of(path).join(tmp_name);
    let written = (|| {
        let mut out = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
        out.write_all(bytes)?;
        out.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// The directory a file is in: `.` for a bare name.
pub fn directory_of(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// What tests of readers share: a FIFO, and a bounded wait for a read that must
/// not block.
#[cfg(test)]
pub(crate) mod testing {
    use std::path::{Path, PathBuf};
    use std::sync::mpsc;
    use std::time::Duration;

    pub fn mkfifo(path: &Path) {
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo only reads it.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    }

    /// Runs `f` on a thread and waits a bounded time: a read that hangs fails the
    /// test instead of the test run.
    pub fn within_seconds<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(Duration::from_secs(10))
            .expect("a read did not return: it waited on a FIFO or a device")
    }

    /// The errors `read` gives for a new FIFO at `fifo` and for `/dev/zero`.
    pub fn refusals<T, E: std::fmt::Display>(
        fifo: PathBuf,
        read: impl Fn(&Path) -> Result<T, E> + Send + 'static,
    ) -> [String; 2] {
        mkfifo(&fifo);
        within_seconds(move || {
            [fifo.as_path(), Path::new("/dev/zero")].map(|p| match read(p) {
                Ok(_) => format!("{} was read", p.display()),
                Err(e) => e.to_string(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{mkfifo, refusals};
    use super::*;

    #[test]
    fn a_fifo_a_device_or_a_directory_is_named_and_never_waited_on() {
        let dir = tempfile::tempdir().unwrap();
        let errs = refusals(dir.path().join("fifo"), |p| read_bounded(p, 1 << 20));
        assert_eq!(
            errs,
            [
                "is a FIFO, not a regular file",
                "is a character device, not a regular file",
            ]
        );
        assert_eq!(
            read_bounded(dir.path(), 1).unwrap_err().to_string(),
            "is a directory, not a regular file"
        );
    }

    #[test]
    fn a_file_past_the_bound_is_refused_with_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, [b'x'; 11]).unwrap();
        let err = read_bounded(&path, 10).unwrap_err();
        assert_eq!(
            err.to_string(),
            "is 11 bytes or more; hbad reads at most 10 bytes of it"
        );
        assert_eq!(read_bounded(&path, 11).unwrap().len(), 11);
        // A file fstat calls empty (as /proc's are) is still read to the bound only.
        let err = read_bounded(Path::new("/proc/self/maps"), 8).unwrap_err();
        assert!(matches!(err, ReadError::TooBig { len: 9, max: 8 }), "{err}");
        let gone = read_bounded(&dir.path().join("none"), 1).unwrap_err();
        assert!(gone.is_not_found());
        assert_eq!(
            gone.into_io(Path::new("/x")).kind(),
            io::ErrorKind::NotFound
        );
    }

    #[test]
    fn only_a_regular_file_or_nothing_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("status.json");
        replace(&path, b"one", 0o644).unwrap();
        replace(&path, b"two", 0o644).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["status.json"]);

        let fifo = dir.path().join("fifo");
        mkfifo(&fifo);
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        for (p, what) in [
            (Path::new("/dev/null"), "a character device"),
            (fifo.as_path(), "a FIFO"),
            (link.as_path(), "a symbolic link"),
            (dir.path(), "a directory"),
        ] {
            let err = replaceable(p).unwrap_err();
            assert!(
                err.contains(what) && err.contains("must be a regular file or absent"),
                "{err}"
            );
            let err = replace(p, b"x", 0o644).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
        }
        assert!(fs::symlink_metadata("/dev/null")
            .unwrap()
            .file_type()
            .is_char_device());
        assert_eq!(fs::read(&path).unwrap(), b"two");
    }
}
