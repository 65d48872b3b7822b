//! What hbad owns: the mark it writes on the vports it makes, and the state file
//! that records the vHBAs whose driver refused the mark.
//!
//! A leaf of the crate (it knows WWNs, files and JSON, nothing of policies, plans or
//! the kernel writes), so the planner, the executor, the CLI and the graph's
//! descriptions all read ownership from one place.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::wwn::Wwn;

/// The mark hbad puts in a vport's symbolic_name (`hbad:<name>`); the fabric shows it too.
pub const OWNER_PREFIX: &str = "hbad:";

/// The state file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("ownership state file {}: {why}", path.display())]
pub struct StateError {
    pub path: PathBuf,
    pub why: String,
}

/// The most a state file may hold. A record is about 150 bytes, so this is tens of
/// thousands of vHBAs; anything longer is not a file hbad wrote.
pub const STATE_FILE_MAX: u64 = 8 << 20;

/// How long a change to the state file waits for another hbad (the CLI beside the
/// daemon) to finish its own. Writers hold the lock for one read-modify-write.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// The name in a mark as hbad writes it, `hbad:<name>`, read as the kernel shows
/// symbolic_name (up to a NUL hbad wrote to end it). Only says what the mark
/// claims: whether the vport is hbad's is [`owned`]'s to decide.
pub fn mark_name(symbolic_name: &str) -> Option<&str> {
    let shown = symbolic_name.split('\0').next().unwrap_or_default();
    shown.strip_prefix(OWNER_PREFIX).filter(|n| !n.is_empty())
}

/// The mark hbad writes for the vHBA `name`.
pub fn mark(name: &str) -> String {
    format!("{OWNER_PREFIX}{name}")
}

/// Why hbad holds a vport to be its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owned<'a> {
    /// Marked `hbad:<name>`, and the mark is bound to this host: the policy
    /// declares that name for the vport's WWPN, or the state file records that hbad
    /// wrote it.
    Mark(&'a str),
    /// The driver refused the mark; the state file records the vHBA.
    Record(&'a OwnedRecord),
}

impl Owned<'_> {
    pub fn name(&self) -> &str {
        match self {
            Owned::Mark(name) => name,
            Owned::Record(r) => &r.name,
        }
    }
}

/// Whether a vport is hbad's. A mark alone proves nothing (anyone can write
/// `hbad:foo` to a symbolic_name, by hand or with another tool): it counts when this
/// host's policy declares the vport's WWPN under that name (`declared`) or the state
/// file records the WWPN under it (`record`). A record of a refused mark counts by
/// itself. Anything else is not hbad's and is never deleted without `--force`.
pub fn owned<'a>(
    symbolic_name: Option<&'a str>,
    declared: Option<&str>,
    record: Option<&'a OwnedRecord>,
) -> Option<Owned<'a>> {
    if let Some(name) = symbolic_name.and_then(mark_name) {
        if declared == Some(name) || record.is_some_and(|r| r.name == name) {
            return Some(Owned::Mark(name));
        }
    }
    record.filter(|r| r.refused()).map(Owned::Record)
}

/// One vHBA recorded in the state file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnedRecord {
    pub name: String,
    pub wwnn: Wwn,
    /// Why symbolic_name could not carry the mark; empty when it does, and the
    /// record then binds the mark to this host (hbad wrote it).
    #[serde(default)]
    pub why: String,
}

impl OwnedRecord {
    /// The record is the mark: the driver refused symbolic_name.
    pub fn refused(&self) -> bool {
        !self.why.is_empty()
    }
}

/// A vport's names and mark as sysfs shows them: what a state file that was lost is
/// rebuilt from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VportMark {
    pub wwpn: Wwn,
    pub wwnn: Wwn,
    pub symbolic_name: String,
}

/// Reads the marks on the vports present, for rebuilding a lost state file.
pub type MarkSource = Arc<dyn Fn() -> Vec<VportMark> + Send + Sync>;

/// The vHBAs hbad made, keyed by WWPN (host numbers and vport names change across
/// boots), and the policy's names that bind a mark to this host.
///
/// The file is changed under an exclusive lock (`<file>.lock`) by writing a
/// temporary with a unique name, syncing it, renaming it over the file and syncing
/// the directory, so two hbad processes (the CLI beside the daemon) never lose each
/// other's records and a crash leaves the old file or the new one. Readers take no
/// lock: a rename is atomic. A file that is not hbad's JSON is moved aside with a
/// warning and rebuilt from the marks on the vports; it never stops work.
#[derive(Clone)]
pub struct OwnedState {
    path: PathBuf,
    declared: Arc<BTreeMap<Wwn, String>>,
    marks: Option<MarkSource>,
}

impl fmt::Debug for OwnedState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedState")
            .field("path", &self.path)
            .field("declared", &self.declared)
            .field("marks", &self.marks.as_ref().map(|_| "MarkSource"))
            .finish()
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct OwnedFile {
    version: u32,
    vhbas: BTreeMap<Wwn, OwnedRecord>,
}

impl OwnedFile {
    fn empty() -> Self {
        OwnedFile {
            version: 1,
            ..OwnedFile::default()
        }
    }
}

/// The state file as found.
enum Loaded {
    File(OwnedFile),
    /// A regular file that is not hbad's (why): moved aside and rebuilt.
    Corrupt(String),
}

impl OwnedState {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        OwnedState {
            path: path.into(),
            declared: Arc::default(),
            marks: None,
        }
    }

    /// The policy's vHBAs (WWPN, name): a vport marked with a declared name at its
    /// declared WWPN is hbad's.
    pub fn declaring(mut self, vhbas: impl IntoIterator<Item = (Wwn, String)>) -> Self {
        self.declared = Arc::new(vhbas.into_iter().collect());
        self
    }

    /// Where a state file that was lost is rebuilt from.
    pub fn rebuilding_from(mut self, marks: MarkSource) -> Self {
        self.marks = Some(marks);
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The name the policy declares for this WWPN.
    pub fn declared(&self, wwpn: Wwn) -> Option<&str> {
        self.declared.get(&wwpn).map(String::as_str)
    }

    fn err(&self, why: impl fmt::Display) -> StateError {
        StateError {
            path: self.path.clone(),
            why: why.to_string(),
        }
    }

    /// Reads the file without waiting on anything: opened non-blocking and checked
    /// with fstat first, so a FIFO, a device or a directory is an error naming it,
    /// and read to a bound, so no file makes hbad read without end.
    fn load(&self) -> Result<Loaded, StateError> {
        let file = match fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
            .open(&self.path)
        {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(Loaded::File(OwnedFile::empty()))
            }
            Err(e) => return Err(self.err(format!("cannot open it: {e}"))),
        };
        let meta = file.metadata().map_err(|e| self.err(e))?;
        let kind = meta.file_type();
        if !kind.is_file() {
            let what = if kind.is_dir() {
                "a directory"
            } else if kind.is_fifo() {
                "a FIFO"
            } else if kind.is_char_device() || kind.is_block_device() {
                "a device"
            } else {
                "not a regular file"
            };
            return Err(self.err(format!(
                "is {what}; [ownership] state_file must name a regular file"
            )));
        }
        let too_big = || {
            Loaded::Corrupt(format!(
                "longer than the {STATE_FILE_MAX} bytes a state file can hold"
            ))
        };
        if meta.len() > STATE_FILE_MAX {
            return Ok(too_big());
        }
        let mut bytes = Vec::new();
        // The bound again: the file may grow between fstat and the read.
        file.take(STATE_FILE_MAX + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| self.err(e))?;
        if bytes.len() as u64 > STATE_FILE_MAX {
            return Ok(too_big());
        }
        Ok(match serde_json::from_slice(&bytes) {
            Ok(file) => Loaded::File(file),
            Err(e) => Loaded::Corrupt(format!("not hbad's JSON ({e})")),
        })
    }

    /// The file, recovering it (under the lock) when it is corrupt.
    fn read(&self) -> Result<OwnedFile, StateError> {
        match self.load()? {
            Loaded::File(file) => Ok(file),
            Loaded::Corrupt(_) => {
                let lock = self.lock()?;
                self.read_locked(&lock)
            }
        }
    }

    /// The file, with the lock held: a corrupt one is moved aside and rebuilt.
    fn read_locked(&self, _lock: &fs::File) -> Result<OwnedFile, StateError> {
        match self.load()? {
            Loaded::File(file) => Ok(file),
            Loaded::Corrupt(why) => self.recover(&why),
        }
    }

    /// Moves a corrupt file aside and writes what the marks on the vports still
    /// prove: vHBAs the policy declares, marked with their names. Records of vHBAs
    /// the policy no longer declares are lost with the file, so those vHBAs are
    /// kept, never pruned. Called with the lock held.
    fn recover(&self, why: &str) -> Result<OwnedFile, StateError> {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let aside = (0..100)
            .map(|n| {
                let suffix = if n == 0 {
                    String::new()
                } else {
                    format!(".{n}")
                };
                sibling(&self.path, &format!(".corrupt-{since_epoch}{suffix}"))
            })
            .find(|p| !p.exists())
            .ok_or_else(|| self.err(format!("{why}; and no free name to move it aside")))?;
        fs::rename(&self.path, &aside)
            .map_err(|e| self.err(format!("{why}; moving it aside failed: {e}")))?;
        let mut file = OwnedFile::empty();
        for m in self.marks.as_ref().map(|f| f()).unwrap_or_default() {
            let name = mark_name(&m.symbolic_name);
            if name.is_some() && name == self.declared(m.wwpn) {
                let rec = OwnedRecord {
                    name: name.unwrap_or_default().to_string(),
                    wwnn: m.wwnn,
                    why: String::new(),
                };
                file.vhbas.insert(m.wwpn, rec);
            }
        }
        let text = format!(
            "ownership state file {}: {why}; moved aside to {} and rebuilt from the marks \
             on the vports ({} vHBA{} the policy declares); vHBAs recorded only there are \
             no longer known as hbad's and are kept",
            self.path.display(),
            aside.display(),
            file.vhbas.len(),
            if file.vhbas.len() == 1 { "" } else { "s" },
        );
        // The agent logs; a CLI command sets up no logging, and its user must hear
        // of it too.
        if tracing::dispatcher::has_been_set() {
            tracing::warn!(hbad_reason = %why, "{text}");
        } else {
            eprintln!("warning: {text}");
        }
        self.write_locked(&file)?;
        Ok(file)
    }

    /// Takes the exclusive lock on `<file>.lock`, waiting a bounded time for
    /// another hbad's change to finish. Released when the returned file closes.
    fn lock(&self) -> Result<fs::File, StateError> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(|e| self.err(e))?;
        }
        let path = sibling(&self.path, ".lock");
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
            .open(&path)
            .map_err(|e| self.err(format!("lock file {}: {e}", path.display())))?;
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            // SAFETY: flock takes no pointers; the descriptor is open for the call.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                return Ok(file);
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EWOULDBLOCK) if Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(5));
                }
                Some(libc::EINTR) => {}
                Some(libc::EWOULDBLOCK) => {
                    return Err(self.err(format!(
                        "another process has held {} for more than {}",
                        path.display(),
                        humantime::format_duration(LOCK_WAIT)
                    )))
                }
                _ => return Err(self.err(format!("lock file {}: {e}", path.display()))),
            }
        }
    }

    /// Replaces the file, with the lock held: a temporary of a name no other writer
    /// uses, synced, renamed over the file, and the rename synced with the directory.
    fn write_locked(&self, file: &OwnedFile) -> Result<(), StateError> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let text = serde_json::to_vec_pretty(file).map_err(|e| self.err(e))?;
        let tmp = sibling(
            &self.path,
            &format!(
                ".{}.{}.tmp",
                std::process::id(),
                SEQ.fetch_add(1, Ordering::Relaxed)
            ),
        );
        let written = (|| {
            let mut out = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&tmp)?;
            out.write_all(&text)?;
            out.sync_all()?;
            fs::rename(&tmp, &self.path)
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(self.err(e));
        }
        let dir = self
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| self.err(format!("syncing {}: {e}", dir.display())))
    }

    /// Reads, changes and writes the file under the lock.
    fn change(&self, f: impl FnOnce(&mut OwnedFile) -> bool) -> Result<(), StateError> {
        let lock = self.lock()?;
        let mut file = self.read_locked(&lock)?;
        if f(&mut file) {
            file.version = 1;
            self.write_locked(&file)?;
        }
        Ok(())
    }

    pub fn get(&self, wwpn: Wwn) -> Result<Option<OwnedRecord>, StateError> {
        Ok(self.read()?.vhbas.get(&wwpn).cloned())
    }

    pub fn all(&self) -> Result<BTreeMap<Wwn, OwnedRecord>, StateError> {
        Ok(self.read()?.vhbas)
    }

    pub fn record(&self, wwpn: Wwn, rec: OwnedRecord) -> Result<(), StateError> {
        self.change(|file| file.vhbas.insert(wwpn, rec.clone()).as_ref() != Some(&rec))
    }

    pub fn forget(&self, wwpn: Wwn) -> Result<(), StateError> {
        self.change(|file| file.vhbas.remove(&wwpn).is_some())
    }

    /// The vHBA name a vport shows, for naming its disks (not for deleting it): its
    /// mark whoever wrote it, else the state file's record. Only reads: a state file
    /// that cannot be read names nothing and is left for the agent to recover (udev
    /// runs this for every disk, and must change nothing).
    pub fn named(&self, symbolic_name: Option<&str>, wwpn: Option<Wwn>) -> Option<String> {
        match symbolic_name.and_then(mark_name) {
            Some(name) => Some(name.to_string()),
            None => match self.load().ok()? {
                Loaded::File(mut file) => file.vhbas.remove(&wwpn?).map(|r| r.name),
                Loaded::Corrupt(_) => None,
            },
        }
    }

    /// Whose a vport is, by [`owned`], with this state file and policy.
    pub fn owner(
        &self,
        symbolic_name: Option<&str>,
        wwpn: Option<Wwn>,
    ) -> Result<Option<OwnerMark>, StateError> {
        let Some(wwpn) = wwpn else {
            return Ok(None);
        };
        let record = self.get(wwpn)?;
        Ok(
            match owned(symbolic_name, self.declared(wwpn), record.as_ref()) {
                Some(Owned::Mark(name)) => Some(OwnerMark::SymbolicName {
                    name: name.to_string(),
                }),
                Some(Owned::Record(r)) => Some(OwnerMark::StateFile {
                    name: r.name.clone(),
                    path: self.path.clone(),
                    why: r.why.clone(),
                }),
                None => None,
            },
        )
    }
}

/// `<file><suffix>` beside the state file.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// How hbad knows a vport is its own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum OwnerMark {
    /// `symbolic_name = hbad:<name>` on the vport.
    SymbolicName { name: String },
    /// The driver refused the mark; recorded in the state file.
    StateFile {
        name: String,
        path: PathBuf,
        why: String,
    },
}

impl OwnerMark {
    pub fn name(&self) -> &str {
        match self {
            OwnerMark::SymbolicName { name } | OwnerMark::StateFile { name, .. } => name,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    fn w(n: u64) -> Wwn {
        Wwn::from_u64(0x5001_a4a0_0000_0000 + n)
    }

    fn rec(name: &str, why: &str) -> OwnedRecord {
        OwnedRecord {
            name: name.into(),
            wwnn: w(0xb00),
            why: why.into(),
        }
    }

    /// Runs `f` on a thread and waits a bounded time: a read that hangs fails the
    /// test instead of the test run.
    fn within_seconds<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(Duration::from_secs(10))
            .expect("the state file read did not return")
    }

    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_mark_counts_only_when_this_hosts_policy_or_state_file_binds_it() {
        let bound = rec("db1", "");
        let refused = rec("db1", "EACCES");
        // By hand or by another tool: nothing binds it.
        assert_eq!(owned(Some("hbad:foo"), None, None), None);
        assert_eq!(owned(Some("hbad:foo"), Some("bar"), None), None);
        assert_eq!(owned(Some("hbad:"), Some(""), None), None);
        assert_eq!(owned(Some("hbad:db1"), None, Some(&rec("db2", ""))), None);
        // The policy declares the name at this WWPN, or hbad recorded writing it.
        assert_eq!(
            owned(Some("hbad:db1"), Some("db1"), None),
            Some(Owned::Mark("db1"))
        );
        assert_eq!(
            owned(Some("hbad:db1\0tail"), None, Some(&bound)),
            Some(Owned::Mark("db1"))
        );
        // A record of a written mark stops counting once the mark is gone (renamed
        // by an administrator: theirs now); one of a refused mark is the mark.
        assert_eq!(owned(Some("by hand"), None, Some(&bound)), None);
        assert_eq!(
            owned(None, None, Some(&refused)),
            Some(Owned::Record(&refused))
        );
        assert_eq!(mark_name("xhbad:a"), None);
        assert_eq!(mark(&"a".repeat(3)), "hbad:aaa");
    }

    #[test]
    fn writers_at_once_keep_every_record_and_leave_no_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/owned.json");
        let writers: Vec<_> = (0..8u64)
            .map(|t| {
                // Each writer its own handle, as two processes would have.
                let state = OwnedState::new(&path);
                thread::spawn(move || {
                    for n in 0..20 {
                        state
                            .record(w(t * 100 + n), rec(&format!("v{t}-{n}"), ""))
                            .unwrap();
                    }
                    state.forget(w(t * 100)).unwrap();
                })
            })
            .collect();
        for t in writers {
            t.join().unwrap();
        }
        let all = OwnedState::new(&path).all().unwrap();
        assert_eq!(all.len(), 8 * 19);
        for t in 0..8u64 {
            assert_eq!(all.get(&w(t * 100)), None);
            assert_eq!(all[&w(t * 100 + 19)].name, format!("v{t}-19"));
        }
        assert_eq!(
            names_in(&dir.path().join("state")),
            ["owned.json", "owned.json.lock"]
        );
    }

    #[test]
    fn a_corrupt_state_file_is_moved_aside_and_rebuilt_from_the_marks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("owned.json");
        let marks: MarkSource = Arc::new(|| {
            [(1, "hbad:a"), (2, "hbad:b"), (3, "hbad:x"), (4, "by hand")]
                .map(|(n, name)| VportMark {
                    wwpn: w(n),
                    wwnn: w(0xb00 + n),
                    symbolic_name: name.into(),
                })
                .to_vec()
        });
        let state = OwnedState::new(&path)
            .declaring([(w(1), "a".into()), (w(3), "c".into()), (w(4), "d".into())])
            .rebuilding_from(marks);
        fs::write(&path, "{not json").unwrap();
        // Only the mark the policy declares at its WWPN comes back: b is not
        // declared (someone's `hbad:b`, or a vHBA whose record is lost), x's name
        // is not c's.
        let all = state.all().unwrap();
        assert_eq!(all.keys().collect::<Vec<_>>(), [&w(1)]);
        assert_eq!(
            all[&w(1)],
            OwnedRecord {
                name: "a".into(),
                wwnn: w(0xb01),
                why: String::new()
            }
        );
        let names = names_in(dir.path());
        let aside = names
            .iter()
            .find(|n| n.starts_with("owned.json.corrupt-"))
            .unwrap_or_else(|| panic!("{names:?}"));
        assert_eq!(
            fs::read_to_string(dir.path().join(aside)).unwrap(),
            "{not json"
        );
        // Work goes on: the rebuilt file takes records.
        state.record(w(2), rec("b", "EACCES")).unwrap();
        assert_eq!(state.all().unwrap().len(), 2);

        // Longer than any state file: moved aside without being read.
        fs::File::create(&path)
            .unwrap()
            .set_len(STATE_FILE_MAX + 1)
            .unwrap();
        assert_eq!(OwnedState::new(&path).get(w(1)).unwrap(), None);
        assert!(
            names_in(dir.path())
                .iter()
                .filter(|n| n.contains(".corrupt-"))
                .count()
                == 2
        );
    }

    #[test]
    fn a_state_file_that_is_not_a_file_is_an_error_naming_it_and_never_moved() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo.json");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let zero = dir.path().join("zero.json");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        let subdir = dir.path().join("dir.json");
        fs::create_dir(&subdir).unwrap();
        let errors = within_seconds(move || {
            [fifo, zero, subdir].map(|p| {
                let state = OwnedState::new(p);
                let read = state.all().unwrap_err().to_string();
                let write = state.record(w(1), rec("a", "")).unwrap_err().to_string();
                (read, write)
            })
        });
        for ((read, write), what) in errors.iter().zip(["a FIFO", "a device", "a directory"]) {
            assert!(
                read.contains(what) && read.contains("regular file"),
                "{read}"
            );
            assert_eq!(read, write);
        }
        assert!(!names_in(dir.path()).iter().any(|n| n.contains(".corrupt-")));
    }
}
