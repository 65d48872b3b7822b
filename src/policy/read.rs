//! Reading policy files the careful way: a policy that creates SAN identities is a
//! privileged input, and a path in /etc can be anything.
//!
//! Each file is opened with `O_NONBLOCK` (so a FIFO left in `hbad.d/` returns at once
//! instead of waiting for a writer forever), checked with `fstat` on the open file (so
//! what is checked is what is read), refused unless it is a regular file, and read
//! up to [`MAX_FILE_BYTES`]. `/dev/null`, the mask of systemd's drop-in rules, reads as
//! empty. Like sshd's StrictModes, a file and every directory above it must be owned
//! by root (or by the user running hbad) and writable by no one else; `--no-strict-perms`
//! turns that last check off for test trees and copies of a policy in a home directory.

use std::collections::HashSet;
use std::fs::{File, Metadata};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::error::{Origin, PolicyError};
use super::limits::MAX_FILE_BYTES;
pub use crate::files::Perms;
use crate::files::{kind, Distrust};

/// `/dev/null`'s device number (1, 3) on Linux: a masked file.
fn is_dev_null(meta: &Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == libc::makedev(1, 3)
}

/// Reads policy files, checking each directory once.
#[derive(Debug)]
pub struct Reader {
    perms: Perms,
    checked_dirs: HashSet<PathBuf>,
}

impl Reader {
    pub fn new(perms: Perms) -> Reader {
        Reader {
            perms,
            checked_dirs: HashSet::new(),
        }
    }

    /// The bytes of one policy file, or why it cannot be one.
    pub fn read(&mut self, path: &Path) -> Result<Vec<u8>, PolicyError> {
        self.open(path)?.read(MAX_FILE_BYTES)
    }

    /// Opens one policy file and checks what it is, without reading it: the loader
    /// opens every file first, so that their sizes are summed before any is read.
    pub fn open(&mut self, path: &Path) -> Result<Opened, PolicyError> {
        let here = || Origin::file(path);
        let file = File::options()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| {
                PolicyError::new(here(), format!("cannot open: {e}"))
                    .hint("check the path and that hbad runs as root")
            })?;
        let meta = file
            .metadata()
            .map_err(|e| PolicyError::new(here(), format!("cannot stat: {e}")))?;
        if is_dev_null(&meta) {
            return Ok(Opened {
                path: path.to_path_buf(),
                file: None,
                len: 0,
            });
        }
        if !meta.file_type().is_file() {
            return Err(
                PolicyError::new(here(), format!("is {}, not a policy file", kind(&meta))).hint(
                    "policy files are regular files; mask a drop-in with a link to /dev/null",
                ),
            );
        }
        if meta.len() > MAX_FILE_BYTES {
            return Err(too_big(path, meta.len()));
        }
        if self.perms == Perms::Strict {
            check_owner_and_mode(path, &meta, "file")?;
            if let Some(dir) = path.parent() {
                self.check_dirs_up(if dir.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    dir
                })?;
            }
        }
        Ok(Opened {
            path: path.to_path_buf(),
            file: Some(file),
            len: meta.len(),
        })
    }

    /// Checks a file's directory and every directory above it up to `/`, as sshd's
    /// StrictModes does: whoever may rename any of them may put a policy of their own
    /// in its place. Both the path as given (a link's own directory can be written to)
    /// and the path with links resolved (where the file is) are walked. A root-owned
    /// sticky directory (/tmp) lets no one replace another's entry: a walk stops there.
    fn check_dirs_up(&mut self, dir: &Path) -> Result<(), PolicyError> {
        let cannot =
            |e: std::io::Error| PolicyError::new(Origin::file(dir), format!("cannot resolve: {e}"));
        let given = std::path::absolute(dir).map_err(cannot)?;
        let resolved = std::fs::canonicalize(dir).map_err(cannot)?;
        for start in [given, resolved] {
            let mut passed = Vec::new();
            for dir in start.ancestors() {
                if self.checked_dirs.contains(dir) {
                    break;
                }
                let meta = std::fs::metadata(dir).map_err(|e| {
                    PolicyError::new(Origin::file(dir), format!("cannot stat: {e}"))
                })?;
                passed.push(dir.to_path_buf());
                if meta.mode() & libc::S_ISVTX != 0 && meta.uid() == 0 {
                    break;
                }
                check_owner_and_mode(dir, &meta, "directory")?;
            }
            // Only once the whole walk passed: a directory is skipped later only when
            // everything above it was checked too.
            self.checked_dirs.extend(passed);
        }
        Ok(())
    }
}

/// A policy file opened and checked, not yet read.
#[derive(Debug)]
pub struct Opened {
    path: PathBuf,
    /// None for `/dev/null`, a masked drop-in: it reads as empty.
    file: Option<File>,
    /// The size fstat gave.
    len: u64,
}

impl Opened {
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's bytes, at most `max` of them: the file may grow between fstat and
    /// read, so more than `max` is refused, never read whole.
    pub fn read(self, max: u64) -> Result<Vec<u8>, PolicyError> {
        let Some(file) = self.file else {
            return Ok(Vec::new());
        };
        let mut bytes = Vec::with_capacity(self.len.min(max) as usize);
        file.take(max.min(MAX_FILE_BYTES) + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| PolicyError::new(Origin::file(&self.path), format!("cannot read: {e}")))?;
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(too_big(&self.path, bytes.len() as u64));
        }
        Ok(bytes)
    }
}

fn too_big(path: &Path, len: u64) -> PolicyError {
    PolicyError::new(
        Origin::file(path),
        format!(
            "is {len} bytes or more; a policy file may hold at most {MAX_FILE_BYTES} bytes (1 MiB)"
        ),
    )
    .hint("split the policy into drop-ins in hbad.d/")
}

/// A path in a message: printable, and cut short when long.
fn shown(path: &Path) -> String {
    crate::terminal::echoed(&path.display().to_string())
}

fn check_owner_and_mode(path: &Path, meta: &Metadata, what: &str) -> Result<(), PolicyError> {
    let hatch = "or run hbad with --no-strict-perms (HBAD_NO_STRICT_PERMS=1) for a test tree";
    let Some(why) = Distrust::of(meta) else {
        return Ok(());
    };
    let fix = match why {
        Distrust::Owner(_) => "chown root:",
        Distrust::Writable(_) => "chmod go-w",
    };
    Err(
        PolicyError::new(Origin::file(path), format!("the policy {what} {why}"))
            .hint(format!("{fix} {}, {hatch}", shown(path))),
    )
}

/// Why the state file the policy names cannot be one hbad keeps records in, if it
/// cannot: it must be a regular file or not exist yet, and the nearest directory
/// that exists on its path must be a directory (hbad creates the rest), which, with
/// strict permissions, only root or the user running hbad can write: whoever can
/// write there can forge the records that let hbad delete a vHBA.
pub fn state_file_refusal(path: &Path, perms: Perms) -> Option<String> {
    let shown_path = shown(path);
    match std::fs::metadata(path) {
        Ok(meta) if meta.file_type().is_file() => {}
        Ok(meta) => {
            return Some(format!(
                "state_file `{shown_path}` is {}, not a file hbad can keep records in",
                kind(&meta)
            ))
        }
        Err(e) if gone(&e) => {}
        Err(e) => return Some(format!("state_file `{shown_path}`: {e}")),
    }
    for dir in path.ancestors().skip(1) {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        match std::fs::metadata(dir) {
            Ok(meta) if meta.is_dir() => {
                let why = Distrust::of_dir(&meta).filter(|_| perms == Perms::Strict)?;
                return Some(format!(
                    "state_file `{shown_path}`: its directory {} {why}, so others could forge \
                     the records of what hbad may delete",
                    shown(dir)
                ));
            }
            Ok(meta) => {
                return Some(format!(
                    "state_file `{shown_path}`: {} is {}, not a directory",
                    shown(dir),
                    kind(&meta)
                ))
            }
            Err(e) if gone(&e) => {}
            Err(e) => return Some(format!("state_file `{shown_path}`: {}: {e}", shown(dir))),
        }
    }
    None
}

/// Nothing is there: absent, or a path through a file (walked up from).
fn gone(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn private_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        dir
    }

    #[test]
    fn a_fifo_is_a_named_error_not_a_hang() {
        let dir = private_dir();
        let fifo = dir.path().join("10-fifo.toml");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo only reads it.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        let err = Reader::new(Perms::Strict).read(&fifo).unwrap_err();
        assert!(err.to_string().contains("is a FIFO"), "{err}");
    }

    #[test]
    fn a_directory_or_a_device_is_a_named_error() {
        let dir = private_dir();
        let sub = dir.path().join("hbad.toml");
        std::fs::create_dir(&sub).unwrap();
        let err = Reader::new(Perms::Strict).read(&sub).unwrap_err();
        assert!(err.to_string().contains("is a directory"), "{err}");
        let err = Reader::new(Perms::Relaxed)
            .read(Path::new("/dev/zero"))
            .unwrap_err();
        assert!(err.to_string().contains("character device"), "{err}");
        assert_eq!(
            Reader::new(Perms::Strict).read(Path::new("/dev/null")),
            Ok(Vec::new())
        );
    }

    #[test]
    fn a_file_over_the_limit_is_refused_with_the_limit() {
        let dir = private_dir();
        let big = dir.path().join("big.toml");
        std::fs::write(&big, vec![b'#'; MAX_FILE_BYTES as usize + 1]).unwrap();
        let err = Reader::new(Perms::Strict).read(&big).unwrap_err();
        assert!(err.to_string().contains("at most 1048576 bytes"), "{err}");
        std::fs::write(&big, vec![b'#'; MAX_FILE_BYTES as usize]).unwrap();
        assert_eq!(
            Reader::new(Perms::Strict).read(&big).unwrap().len(),
            1 << 20
        );
    }

    #[test]
    fn writable_by_others_is_refused_unless_relaxed() {
        let dir = private_dir();
        let file = dir.path().join("hbad.toml");
        std::fs::write(&file, "").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o664)).unwrap();
        let err = Reader::new(Perms::Strict).read(&file).unwrap_err();
        assert!(err.to_string().contains("writable by its group"), "{err}");
        assert!(err.to_string().contains("--no-strict-perms"), "{err}");
        Reader::new(Perms::Relaxed).read(&file).unwrap();

        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = Reader::new(Perms::Strict).read(&file).unwrap_err();
        assert!(
            err.to_string()
                .contains("directory is writable by everyone"),
            "{err}"
        );
    }

    #[test]
    fn a_writable_directory_above_the_policy_is_refused() {
        let dir = private_dir();
        let etc = dir.path().join("etc");
        let dropins = etc.join("hbad/hbad.d");
        std::fs::create_dir_all(&dropins).unwrap();
        let file = dropins.join("10.toml");
        std::fs::write(&file, "").unwrap();
        Reader::new(Perms::Strict).read(&file).unwrap();
        // Anyone could rename hbad/ away and put a hbad.d of their own in its place.
        std::fs::set_permissions(&etc, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = Reader::new(Perms::Strict).read(&file).unwrap_err();
        assert_eq!(&*err.origin.file, etc.as_path(), "{err}");
        assert!(
            err.to_string()
                .contains("directory is writable by everyone"),
            "{err}"
        );
        // Every file under it is refused, not only the first one read.
        let mut reader = Reader::new(Perms::Strict);
        assert!(reader.read(&file).is_err());
        assert!(reader.read(&file).is_err());
        Reader::new(Perms::Relaxed).read(&file).unwrap();
        // A sticky directory owned by root (/tmp's kind) ends the walk, as in sshd.
        if nix::unistd::geteuid().is_root() {
            std::fs::set_permissions(&etc, std::fs::Permissions::from_mode(0o1777)).unwrap();
            Reader::new(Perms::Strict).read(&file).unwrap();
        }
    }

    #[test]
    fn a_writable_directory_holding_a_link_to_the_policy_is_refused() {
        let dir = private_dir();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::fs::write(real.join("hbad.toml"), "").unwrap();
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::os::unix::fs::symlink(&real, open.join("link")).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = Reader::new(Perms::Strict)
            .read(&open.join("link/hbad.toml"))
            .unwrap_err();
        assert_eq!(&*err.origin.file, open.as_path(), "{err}");
    }

    #[test]
    fn owned_by_another_user_is_refused() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("not root: cannot give a file away");
            return;
        }
        let dir = private_dir();
        let file = dir.path().join("hbad.toml");
        std::fs::write(&file, "").unwrap();
        std::os::unix::fs::chown(&file, Some(65534), None).unwrap();
        let err = Reader::new(Perms::Strict).read(&file).unwrap_err();
        assert!(err.to_string().contains("owned by uid 65534"), "{err}");
    }

    #[test]
    fn a_state_file_that_is_a_device_or_directory_is_named() {
        let strict = |p: &Path| state_file_refusal(p, Perms::Strict);
        assert!(strict(Path::new("/dev/zero"))
            .unwrap()
            .contains("character device"));
        let dir = private_dir();
        assert!(strict(dir.path()).unwrap().contains("directory"));
        assert_eq!(strict(&dir.path().join("owned.json")), None);
        assert_eq!(strict(&dir.path().join("new/sub/owned.json")), None);
        let file = dir.path().join("plain");
        std::fs::write(&file, "").unwrap();
        assert_eq!(strict(&file), None);
        assert!(strict(&file.join("owned.json"))
            .unwrap()
            .contains("not a directory"));
        // A file further up: the path can never be made.
        let deep = file.join("x/y.json");
        let why = strict(&deep).unwrap();
        assert!(
            why.contains(&format!(
                "{} is a regular file, not a directory",
                file.display()
            )),
            "{why}"
        );
    }

    #[test]
    fn a_state_file_directory_others_can_write_is_refused_unless_relaxed() {
        let dir = private_dir();
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        // Not there yet: the nearest directory that is decides.
        let state = open.join("hbad/owned.json");
        let why = state_file_refusal(&state, Perms::Strict).unwrap();
        assert!(
            why.contains(&format!(
                "its directory {} is writable by everyone (mode 0777)",
                open.display()
            )),
            "{why}"
        );
        assert_eq!(state_file_refusal(&state, Perms::Relaxed), None);
        // A sticky directory owned by root lets no one replace another's file.
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
        if nix::unistd::geteuid().is_root() {
            assert_eq!(state_file_refusal(&state, Perms::Strict), None);
        }
    }
}
