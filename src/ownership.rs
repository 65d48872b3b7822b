//! What hbad owns: the mark it writes on the vports it makes, and the state file
//! that records the vHBAs whose driver refused the mark, and the creates under way.
//!
//! Near a leaf of the crate (it knows WWNs, files and JSON, and of policies only
//! their rule for names; nothing of plans or the kernel writes), so the planner,
//! the executor, the CLI and the graph's descriptions all read ownership from one
//! place.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::files::{self, Distrust, Opened, Perms, ReadError};
use crate::wwn::Wwn;

/// The mark hbad puts in a vport's symbolic_name (`hbad:<name>`); the fabric shows it too.
pub const OWNER_PREFIX: &str = "hbad:";

/// Why the intent of a create was not recorded ([`OwnedState::intend`]).
#[derive(Debug, thiserror::Error)]
pub enum IntendError {
    /// Another create of the WWPN holds its lock ([`CreateLock`]): under way in
    /// another process, or its write still in the kernel. A second create must
    /// not go ahead: its vport would be the other's, and recorded by neither.
    #[error(
        "another create of vport {wwpn} is under way, or its write to vport_create is \
         still in the kernel (a process holds {}); not creating it a second time: wait \
         for that create to end (`hbad status` shows the agent's creates, `hbad show \
         {wwpn}` the vport once it is there)",
        lock.display()
    )]
    CreateUnderWay { wwpn: Wwn, lock: PathBuf },
    /// The state file could not take the intent.
    #[error(transparent)]
    State(#[from] StateError),
}

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

/// The most records a state file holds, and the most creates under way it holds:
/// as many as a policy may declare vHBAs. A file with more is not one hbad wrote.
pub const ENTRIES_MAX: usize = crate::policy::limits::MAX_VHBAS;

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
    /// The driver was never asked for the mark: the vport was adopted from the
    /// intent of a create that stopped before marking it. The record stands in for
    /// the mark until hbad writes it (the planner asks for it while the policy
    /// declares the vHBA); a write the driver refuses then leaves a record of the
    /// refusal instead, which is not asked again. Written only when true, so files
    /// without such records are what an hbad without the field writes, and that
    /// hbad reads this one as a refusal.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mark_pending: bool,
}

impl OwnedRecord {
    /// The record is the mark: the driver refused symbolic_name, or was never
    /// asked ([`OwnedRecord::mark_pending`]).
    pub fn refused(&self) -> bool {
        !self.why.is_empty()
    }
}

/// A create under way, written (and synced) to the state file before hbad writes
/// to `vport_create`: the kernel makes the vport inside that write, so a SIGKILL,
/// an OOM kill or a power cut after it and before the record would otherwise leave
/// a vport that is no one's (never pruned, refused by `hbad destroy` without
/// --force). Once the vHBA is marked the intent becomes its record; a create that
/// made nothing removes it. One whose creator is gone is settled when the file is
/// next read: adopted as hbad's when sysfs shows its vport, dropped when not, and
/// left while its write may still be in the kernel ([`CreateLock`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    pub name: String,
    pub wwnn: Wwn,
    /// The parent as the create named it: its host number then (numbers change
    /// across boots) and its WWPN. For the administrator reading the file.
    pub parent_host: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_wwpn: Option<Wwn>,
    /// When the create began, in seconds since the epoch.
    pub since: u64,
    pub by: Creator,
}

impl Intent {
    /// The intent of this process to create the vport `name` now.
    pub fn now(name: &str, wwnn: Wwn, parent_host: u32, parent_wwpn: Option<Wwn>) -> Intent {
        Intent {
            name: name.to_string(),
            wwnn,
            parent_host,
            parent_wwpn,
            since: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs(),
            by: Creator::this().clone(),
        }
    }

    /// `since` as a date, or in seconds past what a date shows (year 9999: the
    /// formatter refuses it, and a file may say anything).
    fn when(&self) -> String {
        const YEAR_10000: u64 = 253_402_300_800;
        match UNIX_EPOCH.checked_add(Duration::from_secs(self.since)) {
            Some(t) if self.since < YEAR_10000 => humantime::format_rfc3339_seconds(t).to_string(),
            _ => format!("{} s after 1970", self.since),
        }
    }

    fn on(&self) -> String {
        match self.parent_wwpn {
            Some(p) => format!("host{} ({p})", self.parent_host),
            None => format!("host{}", self.parent_host),
        }
    }
}

/// The process that wrote an intent: boot, PID and start time name one process on
/// one host, whatever PIDs are reused. While it runs its create may still be in the
/// kernel, so its intent is left alone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Creator {
    /// `/proc/sys/kernel/random/boot_id`; empty where it cannot be read.
    pub boot: String,
    pub pid: u32,
    /// Clock ticks after boot (`/proc/PID/stat`, field 22).
    pub start: u64,
}

/// The lock of one create under way, on `<file>.create-<wwpn>`: taken before its
/// intent is written and held until the intent is settled, by the creating
/// process and by the `hbad write-attr` child that makes the write to
/// vport_create, which inherits it
/// ([`crate::sysfs::writes::AttrWriter::write_attr_holding`]). That child outlives
/// a creator killed with SIGKILL, and the kernel may finish the create after the
/// creator is gone: an intent of a dead creator whose vport is not there yet is
/// dropped only when nobody holds its lock, else the vport the kernel makes a
/// moment later would be no one's.
///
/// Why a lock and not a time: the child has no time limit (a write stuck in the
/// kernel cannot be ended, and may return minutes later), so no age of the intent
/// proves the create over; and why not the child's PID in the intent: it is known
/// only once the child runs, after the intent was synced, and a creator killed in
/// between would leave a child no intent names. The lock is in the child from its
/// first instruction (inherited across fork and exec), goes when the last of the
/// two ends (however: the kernel releases it), and never survives a reboot.
/// Keeping an intent too long deletes nothing; dropping it too early orphans a
/// vport, so a lock that cannot be tested counts as held.
#[derive(Debug)]
pub struct CreateLock(fs::File);

impl AsFd for CreateLock {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// A lock file, made when missing; never through a link, never waiting (a FIFO
/// planted there is not waited on), closed across exec unless handed on.
fn open_lock(path: &Path) -> io::Result<fs::File> {
    fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
}

/// `flock(op | LOCK_NB)` on `file`: whether it was taken (false: another open
/// file holds a lock that conflicts).
fn try_flock(file: &fs::File, op: libc::c_int) -> io::Result<bool> {
    loop {
        // SAFETY: flock takes no pointers; the descriptor is open for the call.
        if unsafe { libc::flock(file.as_raw_fd(), op | libc::LOCK_NB) } == 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => {}
            Some(libc::EWOULDBLOCK) => return Ok(false),
            _ => return Err(e),
        }
    }
}

/// A boot id as the kernel prints it (a UUID); an empty one is unknown.
const BOOT_ID_MAX: usize = 36;

impl Creator {
    /// This process.
    pub fn this() -> &'static Creator {
        static THIS: std::sync::OnceLock<Creator> = std::sync::OnceLock::new();
        THIS.get_or_init(|| {
            let pid = std::process::id();
            let boot = files::read_bounded(Path::new("/proc/sys/kernel/random/boot_id"), 64)
                .ok()
                .map(|b| String::from_utf8_lossy(&b).trim().to_string())
                .filter(|b| valid_boot(b))
                .unwrap_or_default();
            Creator {
                boot,
                pid,
                start: start_of(pid).unwrap_or_default(),
            }
        })
    }

    /// Whether the process still runs (on this boot). Unknown boots are gone.
    pub fn alive(&self) -> bool {
        let this = Creator::this();
        if self == this {
            return true;
        }
        !self.boot.is_empty() && self.boot == this.boot && start_of(self.pid) == Some(self.start)
    }
}

fn valid_boot(boot: &str) -> bool {
    boot.len() <= BOOT_ID_MAX && boot.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

/// A process's start time (`/proc/PID/stat` field 22), if it runs. The name in
/// field 2 may hold spaces and parentheses: fields are counted after its last `)`.
fn start_of(pid: u32) -> Option<u64> {
    let stat = files::read_bounded(Path::new(&format!("/proc/{pid}/stat")), 4096).ok()?;
    let stat = String::from_utf8_lossy(&stat);
    let (_, rest) = stat.rsplit_once(')')?;
    // rest starts at field 3 (state).
    rest.split_whitespace().nth(22 - 3)?.parse().ok()
}

/// What became of an intent whose creator is gone.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Settled {
    /// Its vport is there: now recorded as hbad's.
    Adopted {
        wwpn: Wwn,
        intent: Intent,
        record: OwnedRecord,
    },
    /// A record was written for it already: the create finished.
    Recorded { wwpn: Wwn },
    /// No vport with its names: the create never happened or failed.
    Dropped { wwpn: Wwn, intent: Intent },
}

impl Settled {
    fn wwpn(&self) -> Wwn {
        match self {
            Settled::Adopted { wwpn, .. }
            | Settled::Recorded { wwpn }
            | Settled::Dropped { wwpn, .. } => *wwpn,
        }
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
/// warning and rebuilt from the marks on the vports; it never stops work. A file
/// someone else could have written (owned by another user, or writable by group or
/// others, or in a directory that is) gives no records, with a warning, and is
/// never changed: a forged record must never make hbad delete a vHBA.
///
/// It also holds the creates under way ([`Intent`]), each synced before its
/// vport_create, so that a vport hbad was stopped in the middle of making is still
/// found to be hbad's.
#[derive(Clone)]
pub struct OwnedState {
    path: PathBuf,
    declared: Arc<BTreeMap<Wwn, String>>,
    marks: Option<MarkSource>,
    perms: Perms,
}

impl fmt::Debug for OwnedState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedState")
            .field("path", &self.path)
            .field("declared", &self.declared)
            .field("marks", &self.marks.as_ref().map(|_| "MarkSource"))
            .field("perms", &self.perms)
            .finish()
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct OwnedFile {
    version: u32,
    #[serde(deserialize_with = "unique_wwpns")]
    vhbas: BTreeMap<Wwn, OwnedRecord>,
    /// Creates under way ([`Intent`]). Absent when there are none, so the file is
    /// then byte for byte what an hbad without intents writes, and such an hbad
    /// reads one with intents too (it ignores the key).
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "unique_wwpns"
    )]
    creating: BTreeMap<Wwn, Intent>,
}

/// The only layout of the file this hbad reads and writes. `creating` was added
/// without a new version: it is optional both ways.
const VERSION: u32 = 1;

/// A map by WWPN, refusing a WWPN given twice (JSON would keep the last without a
/// word, and which of two entries stands is not for hbad to guess) and more than
/// [`ENTRIES_MAX`] entries.
fn unique_wwpns<'de, D, V>(d: D) -> Result<BTreeMap<Wwn, V>, D::Error>
where
    D: Deserializer<'de>,
    V: Deserialize<'de>,
{
    struct Unique<V>(std::marker::PhantomData<V>);
    impl<'de, V: Deserialize<'de>> Visitor<'de> for Unique<V> {
        type Value = BTreeMap<Wwn, V>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a map of WWPNs to records")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some((wwpn, entry)) = map.next_entry::<Wwn, V>()? {
                if out.insert(wwpn, entry).is_some() {
                    return Err(de::Error::custom(format_args!(
                        "WWPN {wwpn} is recorded twice"
                    )));
                }
                if out.len() > ENTRIES_MAX {
                    return Err(de::Error::custom(format_args!(
                        "more than {ENTRIES_MAX} entries in one map, the most a policy can declare"
                    )));
                }
            }
            Ok(out)
        }
    }
    d.deserialize_map(Unique(std::marker::PhantomData))
}

impl OwnedFile {
    fn empty() -> Self {
        OwnedFile {
            version: VERSION,
            ..OwnedFile::default()
        }
    }

    /// The file in `bytes`, or why it is not one hbad wrote.
    fn parse(bytes: &[u8]) -> Result<OwnedFile, String> {
        let file: OwnedFile =
            serde_json::from_slice(bytes).map_err(|e| format!("not hbad's JSON ({e})"))?;
        if file.version != VERSION {
            return Err(format!(
                "version {} (this hbad reads version {VERSION}: a newer hbad's file?)",
                file.version
            ));
        }
        // hbad records only names a policy declared: any other is not its record.
        let names = file.vhbas.iter().map(|(w, r)| ("record", w, &r.name));
        let intended = file.creating.iter().map(|(w, i)| ("intent", w, &i.name));
        if let Some((what, wwpn, name)) = names
            .chain(intended)
            .find(|(_, _, n)| !crate::policy::valid_name(n))
        {
            let shown: String = name.chars().take(64).collect();
            return Err(format!(
                "the {what} of {wwpn} names `{}`{}, which no policy can declare",
                shown.escape_debug(),
                if shown.len() < name.len() { "..." } else { "" }
            ));
        }
        if let Some((wwpn, i)) = file.creating.iter().find(|(_, i)| !valid_boot(&i.by.boot)) {
            let shown: String = i.by.boot.chars().take(BOOT_ID_MAX + 1).collect();
            return Err(format!(
                "the intent of {wwpn} gives boot `{}`, not a boot id (at most {BOOT_ID_MAX} \
                 hex digits and dashes)",
                shown.escape_debug()
            ));
        }
        Ok(file)
    }

    /// Settles the intents whose creator is gone against the vports `present`
    /// (called only then): one whose vport is there (same WWPN and WWNN) is
    /// adopted as hbad's, one with a record is done, any other is dropped unless
    /// its write is still in the kernel (`in_kernel`, [`CreateLock`]).
    /// Intents of running processes are left: their creates may be in the kernel.
    fn settle(
        &mut self,
        present: &[VportMark],
        alive: impl Fn(&Creator) -> bool,
        in_kernel: impl Fn(Wwn) -> bool,
    ) -> Vec<Settled> {
        let gone: Vec<Wwn> = self
            .creating
            .iter()
            .filter(|(_, i)| !alive(&i.by))
            .map(|(w, _)| *w)
            .collect();
        let mut out = Vec::with_capacity(gone.len());
        for wwpn in gone {
            let Some(intent) = self.creating.remove(&wwpn) else {
                continue;
            };
            if self.vhbas.contains_key(&wwpn) {
                out.push(Settled::Recorded { wwpn });
                continue;
            }
            let Some(vport) = present
                .iter()
                .find(|m| m.wwpn == wwpn && m.wwnn == intent.wwnn)
            else {
                if in_kernel(wwpn) {
                    // Its writer outlived it: the kernel may still make the vport.
                    self.creating.insert(wwpn, intent);
                } else {
                    out.push(Settled::Dropped { wwpn, intent });
                }
                continue;
            };
            // Marked before the stop: the record binds the mark, as after any
            // create. Not marked: the record stands in for the mark, as for a
            // driver that refuses it.
            let marked = mark_name(&vport.symbolic_name) == Some(intent.name.as_str());
            let why = if marked {
                String::new()
            } else {
                format!(
                    "hbad stopped between vport_create and marking it (its intent of {}); \
                     adopted from the state file",
                    intent.when()
                )
            };
            let record = OwnedRecord {
                name: intent.name.clone(),
                wwnn: intent.wwnn,
                why,
                mark_pending: !marked,
            };
            self.vhbas.insert(wwpn, record.clone());
            out.push(Settled::Adopted {
                wwpn,
                intent,
                record,
            });
        }
        out
    }
}

/// How a read may change the file ([`OwnedState::read_as`]).
#[derive(Clone, Copy)]
enum Reading<'a> {
    /// Changes nothing, and says what a read that writes would settle (`hbad plan`).
    Shown,
    /// Takes the lock, waiting at most this long, to recover a corrupt file or
    /// write what is settled; past it, settles in what is read only.
    Within(Duration),
    /// The agent's loop, which never takes a lock, never waits and never writes:
    /// a corrupt file is not read (nor recovered), and what is settled is in what
    /// is read only. The agent's `state-file` thread recovers and writes
    /// ([`OwnedState::persist_settled`]).
    OnLoop,
    /// With the lock held.
    Locked(&'a fs::File),
}

/// Whether what a read settled is in the file.
#[derive(Debug)]
enum Persisted {
    /// Written, the lock held; or nothing was settled.
    InFile,
    /// In what is read only: the read only shows.
    Shown,
    /// In what is read only: the read took no lock (the loop), or another process
    /// held it longer than the read waits.
    Unlocked,
    /// In what is read only: the write failed.
    Failed(StateError),
}

/// A file as read, what the read settled, and whether that is in the file.
struct Read {
    file: OwnedFile,
    settled: Vec<Settled>,
    persisted: Persisted,
}

impl Read {
    /// A file as read, with nothing settled.
    fn as_is(file: OwnedFile) -> Read {
        Read {
            file,
            settled: Vec::new(),
            persisted: Persisted::InFile,
        }
    }
}

/// What [`OwnedState::read_as`] gives.
enum Got {
    Read(Read),
    /// The file is corrupt (why), and this read does not recover it (the loop).
    Corrupt(String),
    /// The file is corrupt, and another process held the lock its recovery needs
    /// longer than the read waits.
    LockHeld,
}

/// What the agent's loop reads ([`OwnedState::read_on_loop`]).
#[derive(Debug, PartialEq, Eq)]
pub enum LoopRead {
    Records {
        records: BTreeMap<Wwn, OwnedRecord>,
        /// Intents of stopped creates were settled in `records` and not in the
        /// file: have a worker write them ([`OwnedState::persist_settled`]).
        unpersisted: bool,
    },
    /// The file is not hbad's (why): not read, and left for a worker to move
    /// aside and rebuild ([`OwnedState::persist_settled`]); the loop never writes.
    Corrupt(String),
}

/// A file's identity and last change as `stat` shows them: a file someone wrote
/// since (replaced, as hbad writes, or changed in place) has another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileStamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

/// The state file as found.
enum Loaded {
    File(OwnedFile),
    /// A regular file that is not hbad's (why): moved aside and rebuilt.
    Corrupt(String),
    /// Someone other than root or hbad's user could have written it (why): no
    /// records, and never changed or moved.
    Untrusted(String),
}

impl OwnedState {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        OwnedState {
            path: path.into(),
            declared: Arc::default(),
            marks: None,
            perms: Perms::Strict,
        }
    }

    /// Whether the file's owner and mode are checked (strict unless
    /// `--no-strict-perms`, as for policy files).
    pub fn perms(mut self, perms: Perms) -> Self {
        self.perms = perms;
        self
    }

    /// The policy's vHBAs (WWPN, name): a vport marked with a declared name at its
    /// declared WWPN is hbad's.
    pub fn declaring(mut self, vhbas: impl IntoIterator<Item = (Wwn, String)>) -> Self {
        self.declared = Arc::new(vhbas.into_iter().collect());
        self
    }

    /// Where a state file that was lost is rebuilt from, and what shows whether
    /// the vport of a stopped create is there ([`Intent`]). Without it, intents are
    /// left as they are.
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
    /// and read to a bound, so no file makes hbad read without end. With strict
    /// permissions, a file or directory others could have written is not trusted.
    fn load(&self) -> Result<Loaded, StateError> {
        let opened = match Opened::open(&self.path) {
            Ok(opened) => opened,
            Err(e) if e.is_not_found() => return Ok(Loaded::File(OwnedFile::empty())),
            Err(e) => return Err(self.err(e)),
        };
        let meta = opened.metadata();
        if !meta.file_type().is_file() {
            return Err(self.err(format!(
                "is {}; [ownership] state_file must name a regular file",
                files::kind(meta)
            )));
        }
        if self.perms == Perms::Strict {
            if let Some(why) = self.distrust(meta) {
                return Ok(Loaded::Untrusted(why));
            }
        }
        let bytes = match opened.read_to(STATE_FILE_MAX) {
            Ok(bytes) => bytes,
            Err(ReadError::TooBig { .. }) => {
                return Ok(Loaded::Corrupt(format!(
                    "longer than the {STATE_FILE_MAX} bytes a state file can hold"
                )))
            }
            Err(e) => return Err(self.err(e)),
        };
        Ok(match OwnedFile::parse(&bytes) {
            Ok(file) => Loaded::File(file),
            Err(why) => Loaded::Corrupt(why),
        })
    }

    /// Why the file (`meta`) or its directory is not to be trusted, naming owner
    /// and mode, if it is not.
    fn distrust(&self, meta: &fs::Metadata) -> Option<String> {
        let dir = files::directory_of(&self.path);
        let (what, why, meta) = match Distrust::of(meta) {
            Some(why) => ("it".to_string(), why, meta.clone()),
            None => {
                let dir_meta = fs::metadata(dir).ok()?;
                let why = Distrust::of_dir(&dir_meta)?;
                (format!("its directory {}", dir.display()), why, dir_meta)
            }
        };
        // Owner and mode both, whichever failed: what to fix is then plain.
        let other = match why {
            Distrust::Owner(_) => format!("mode {:04o}", meta.mode() & 0o7777),
            Distrust::Writable(_) => format!("owner uid {}", meta.uid()),
        };
        Some(format!(
            "{what} {why}, {other}: someone other than root could have written its records"
        ))
    }

    /// The file, recovering it (under the lock) when it is corrupt. One that is not
    /// to be trusted gives no records.
    fn read(&self) -> Result<OwnedFile, StateError> {
        self.read_within(LOCK_WAIT)?
            .ok_or_else(|| self.held_too_long(LOCK_WAIT))
    }

    /// [`OwnedState::read`], waiting at most `wait` for the lock a corrupt file is
    /// recovered under: `None` when another process holds it that long.
    /// Intents of stopped creates are settled under the same lock; when another
    /// process holds it that long, they are settled in what is returned only.
    fn read_within(&self, wait: Duration) -> Result<Option<OwnedFile>, StateError> {
        match self.read_as(Reading::Within(wait))? {
            Got::Read(read) => Ok(Some(self.said(read))),
            Got::LockHeld => Ok(None),
            Got::Corrupt(why) => Err(self.err(why)),
        }
    }

    /// The file read, having said what the read settled, and a write of it that
    /// failed (for commands, which the user runs and reads).
    fn said(&self, read: Read) -> OwnedFile {
        let Read {
            file,
            settled,
            persisted,
        } = read;
        match persisted {
            Persisted::InFile => self.report(&settled, true),
            Persisted::Shown => self.report(&settled, false),
            // Said by the read that writes it.
            Persisted::Unlocked => {}
            Persisted::Failed(e) => {
                // A file that cannot be written (full or read-only /var) still
                // gives its records: settled here, and in the file by the next
                // change that can write it. Failing the read would make every
                // vHBA only the records make hbad's no one's.
                warn(&format!(
                    "{e}; the creates that stopped are settled in memory only, and \
                     written with the next change to the file"
                ));
                self.report(&settled, false);
            }
        }
        file
    }

    fn warn_untrusted(&self, why: &str) {
        warn(&format!(
            "ownership state file {}: {why}; its records are not used, so no vHBA is \
             hbad's by them (chown root: and chmod go-w the file and its directory, or \
             run hbad with --no-strict-perms for a test tree)",
            self.path.display()
        ));
    }

    /// The records, changing nothing: a corrupt file or one that is not to be
    /// trusted reads as no records, with a warning, and is left for a command that
    /// writes (`hbad apply`, the agent) to move aside. For commands that only show
    /// (`hbad plan`).
    /// Intents of stopped creates are settled in what is returned, not in the file.
    pub fn all_read_only(&self) -> Result<BTreeMap<Wwn, OwnedRecord>, StateError> {
        Ok(match self.read_as(Reading::Shown)? {
            Got::Read(read) => self.said(read).vhbas,
            Got::Corrupt(_) | Got::LockHeld => BTreeMap::new(),
        })
    }

    /// The file, with the lock held: a corrupt one is moved aside and rebuilt, and
    /// the intents of stopped creates are settled and the file written.
    fn read_locked(&self, lock: &fs::File) -> Result<OwnedFile, StateError> {
        match self.read_as(Reading::Locked(lock))? {
            Got::Read(read) => Ok(self.said(read)),
            Got::Corrupt(_) | Got::LockHeld => Err(self.err("read under its lock, yet not read")),
        }
    }

    /// Every read of the file: loaded, a corrupt one recovered when `how` may
    /// take the lock, then the intents of stopped creates settled and persisted
    /// as `how` allows. Says nothing of what it settled: its caller does, knowing
    /// who reads it ([`OwnedState::said`]).
    fn read_as(&self, how: Reading<'_>) -> Result<Got, StateError> {
        let mut file = match self.load()? {
            Loaded::File(file) => file,
            Loaded::Untrusted(why) => {
                if let Reading::Locked(_) = how {
                    return Err(self.err(format!(
                        "{why}; hbad does not change it (chown root: and chmod go-w it and \
                         its directory)"
                    )));
                }
                self.warn_untrusted(&why);
                return Ok(Got::Read(Read::as_is(OwnedFile::empty())));
            }
            Loaded::Corrupt(why) => {
                return match how {
                    Reading::Locked(_) => self.recover(&why).map(|f| Got::Read(Read::as_is(f))),
                    Reading::Shown => {
                        warn(&format!(
                            "ownership state file {}: {why}; read as no records (left as it \
                             is: `hbad apply` or the agent moves it aside and rebuilds it)",
                            self.path.display()
                        ));
                        Ok(Got::Read(Read::as_is(OwnedFile::empty())))
                    }
                    Reading::OnLoop => Ok(Got::Corrupt(why)),
                    Reading::Within(wait) => match self.lock_within(wait)? {
                        Some(lock) => self.read_as(Reading::Locked(&lock)),
                        None => Ok(Got::LockHeld),
                    },
                };
            }
        };
        if !self.unsettled(&file) {
            return Ok(Got::Read(Read::as_is(file)));
        }
        let (lock, otherwise) = match how {
            Reading::Shown => (None, Persisted::Shown),
            Reading::OnLoop => (None, Persisted::Unlocked),
            Reading::Locked(lock) => (Some(lock), Persisted::InFile),
            // Settled in the file under the lock, read again under it: another
            // process may have changed it meanwhile.
            Reading::Within(wait) => match self.lock_within(wait)? {
                Some(lock) => return self.read_as(Reading::Locked(&lock)),
                None => (None, Persisted::Unlocked),
            },
        };
        let settled = self.settle(&mut file);
        let persisted = match lock {
            _ if settled.is_empty() => Persisted::InFile,
            None => otherwise,
            Some(_lock) => match self.write_locked(&file) {
                Ok(()) => {
                    for s in &settled {
                        self.remove_create_lock(s.wwpn());
                    }
                    Persisted::InFile
                }
                Err(e) => Persisted::Failed(e),
            },
        };
        Ok(Got::Read(Read {
            file,
            settled,
            persisted,
        }))
    }

    /// Moves a corrupt file aside and writes what the marks on the vports still
    /// prove: vHBAs the policy declares, marked with their names. Records of vHBAs
    /// the policy no longer declares are lost with the file, so those vHBAs are
    /// kept, never pruned. Called with the lock held.
    fn recover(&self, why: &str) -> Result<OwnedFile, StateError> {
        self.never_on_loop("moving aside and rebuilding");
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
                    mark_pending: false,
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
        warn(&text);
        self.write_locked(&file)?;
        Ok(file)
    }

    /// The agent's loop never waits for the lock, never syncs a write and never
    /// moves the file (a disk or a lock can hold it for minutes): a debug
    /// assertion, as for kernel writes ([`crate::sysfs::writes::on_loop_thread`]).
    fn never_on_loop(&self, what: &str) {
        debug_assert!(
            !crate::sysfs::writes::on_loop_thread(),
            "{what} {} on the event loop's thread",
            self.path.display()
        );
    }

    /// Takes the exclusive lock on `<file>.lock`, waiting a bounded time for
    /// another hbad's change to finish. Released when the returned file closes.
    fn lock(&self) -> Result<fs::File, StateError> {
        self.lock_within(LOCK_WAIT)?
            .ok_or_else(|| self.held_too_long(LOCK_WAIT))
    }

    fn held_too_long(&self, wait: Duration) -> StateError {
        self.err(format!(
            "another process has held {} for more than {}",
            sibling(&self.path, ".lock").display(),
            humantime::format_duration(wait)
        ))
    }

    /// The lock, or `None` when another process holds it for longer than `wait`
    /// (zero: tried once, never waited for).
    fn lock_within(&self, wait: Duration) -> Result<Option<fs::File>, StateError> {
        self.never_on_loop("taking the lock of");
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(|e| self.err(e))?;
        }
        let path = sibling(&self.path, ".lock");
        let file =
            open_lock(&path).map_err(|e| self.err(format!("lock file {}: {e}", path.display())))?;
        let deadline = Instant::now() + wait;
        loop {
            match try_flock(&file, libc::LOCK_EX) {
                Ok(true) => return Ok(Some(file)),
                Ok(false) if Instant::now() < deadline => thread::sleep(Duration::from_millis(5)),
                Ok(false) => return Ok(None),
                Err(e) => return Err(self.err(format!("lock file {}: {e}", path.display()))),
            }
        }
    }

    /// `<file>.create-<wwpn>`, the lock of the create of `wwpn` ([`CreateLock`]).
    fn create_lock_path(&self, wwpn: Wwn) -> PathBuf {
        sibling(&self.path, &format!(".create-{wwpn}"))
    }

    /// Takes the lock of the create of `wwpn`, never waiting: held, another
    /// create of that WWPN is under way, or a write of one is still in the kernel.
    /// Called with the state file's lock held, as is every removal of the file, so
    /// that a lock is never taken on a file that is being removed.
    fn lock_create(&self, wwpn: Wwn) -> Result<CreateLock, IntendError> {
        let path = self.create_lock_path(wwpn);
        let failed = |e: io::Error| {
            IntendError::State(self.err(format!("create lock {}: {e}", path.display())))
        };
        let file = open_lock(&path).map_err(failed)?;
        match try_flock(&file, libc::LOCK_EX) {
            Ok(true) => Ok(CreateLock(file)),
            Ok(false) => Err(IntendError::CreateUnderWay {
                wwpn,
                lock: path.clone(),
            }),
            Err(e) => Err(failed(e)),
        }
    }

    /// Whether a process holds the lock of the create of `wwpn`: its write may
    /// still be in the kernel. A lock that cannot be tested counts as held
    /// ([`CreateLock`]); one whose file is missing was never taken or is done.
    fn create_in_kernel(&self, wwpn: Wwn) -> bool {
        let opened = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
            .open(self.create_lock_path(wwpn));
        match opened {
            Ok(file) => !matches!(try_flock(&file, libc::LOCK_SH), Ok(true)),
            Err(e) => e.kind() != io::ErrorKind::NotFound,
        }
    }

    /// Removes the lock file of a create whose intent is gone from the file, with
    /// the state file's lock held ([`OwnedState::lock_create`]). Left behind, it
    /// is only a file: a missing one and a free one say the same.
    fn remove_create_lock(&self, wwpn: Wwn) {
        let path = self.create_lock_path(wwpn);
        if let Err(e) = fs::remove_file(&path) {
            if e.kind() != io::ErrorKind::NotFound {
                warn(&format!("create lock {}: {e}", path.display()));
            }
        }
    }

    /// Replaces the file, with the lock held ([`files::replace`]), and syncs the
    /// rename with the directory.
    fn write_locked(&self, file: &OwnedFile) -> Result<(), StateError> {
        self.never_on_loop("a synced write of");
        let text = serde_json::to_vec_pretty(file).map_err(|e| self.err(e))?;
        // Longer, the next read would take it for corrupt and move it aside.
        if text.len() as u64 > STATE_FILE_MAX {
            return Err(self.err(format!(
                "the new file would be {} bytes, longer than the {STATE_FILE_MAX} a state \
                 file can hold; left as it was",
                text.len()
            )));
        }
        files::replace(&self.path, &text, 0o644).map_err(|e| self.err(e))?;
        let dir = files::directory_of(&self.path);
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| self.err(format!("syncing {}: {e}", dir.display())))
    }

    /// Reads, changes and writes the file under the lock.
    fn change(&self, f: impl FnOnce(&mut OwnedFile) -> bool) -> Result<(), StateError> {
        self.try_change(|file| Ok(f(file)))
    }

    /// [`OwnedState::change`] where the change may be refused (why).
    fn try_change(
        &self,
        f: impl FnOnce(&mut OwnedFile) -> Result<bool, String>,
    ) -> Result<(), StateError> {
        let lock = self.lock()?;
        let mut file = self.read_locked(&lock)?;
        if f(&mut file).map_err(|why| self.err(why))? {
            file.version = VERSION;
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

    /// The records, for the agent's event loop, which never waits, takes no lock
    /// and writes nothing: the intents of stopped creates are settled in the
    /// records only, and a corrupt file is not read (nor recovered). Either is
    /// for a worker to write ([`OwnedState::persist_settled`]).
    pub fn read_on_loop(&self) -> Result<LoopRead, StateError> {
        match self.read_as(Reading::OnLoop)? {
            Got::Read(read) => Ok(LoopRead::Records {
                unpersisted: !matches!(read.persisted, Persisted::InFile),
                records: read.file.vhbas,
            }),
            Got::Corrupt(why) => Ok(LoopRead::Corrupt(why)),
            // The loop takes no lock: never so.
            Got::LockHeld => Err(self.held_too_long(Duration::ZERO)),
        }
    }

    /// Brings the file up to date with what [`OwnedState::read_on_loop`] found,
    /// waiting for the lock (a bounded time) and syncing the write: a corrupt file
    /// is moved aside and rebuilt, and the intents of stopped creates are settled
    /// in it. An error when the file could not be written, saying why; only what
    /// was written is said (the agent says a failure, once). Never on the
    /// agent's loop.
    pub fn persist_settled(&self) -> Result<(), StateError> {
        match self.read_as(Reading::Within(LOCK_WAIT))? {
            Got::Read(read) => match read.persisted {
                Persisted::InFile => {
                    self.report(&read.settled, true);
                    Ok(())
                }
                Persisted::Failed(e) => Err(e),
                Persisted::Shown | Persisted::Unlocked => Err(self.held_too_long(LOCK_WAIT)),
            },
            Got::LockHeld => Err(self.held_too_long(LOCK_WAIT)),
            Got::Corrupt(why) => Err(self.err(why)),
        }
    }

    /// The file's [`FileStamp`], `None` when it cannot be seen (missing).
    pub fn stamp(&self) -> Option<FileStamp> {
        let meta = fs::symlink_metadata(&self.path).ok()?;
        Some(FileStamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        })
    }

    pub fn record(&self, wwpn: Wwn, rec: OwnedRecord) -> Result<(), StateError> {
        self.change(|file| file.vhbas.insert(wwpn, rec.clone()).as_ref() != Some(&rec))
    }

    pub fn forget(&self, wwpn: Wwn) -> Result<(), StateError> {
        self.change(|file| file.vhbas.remove(&wwpn).is_some())
    }

    /// Records, synced, that this process is about to write `wwpn` to
    /// vport_create ([`Intent`]), and gives the create's lock, taken before the
    /// intent is written: hold it until the intent is settled, and have the write
    /// to vport_create hold it too ([`CreateLock`]). Refused beyond
    /// [`ENTRIES_MAX`] creates under way, and while another create of `wwpn`
    /// holds its lock ([`IntendError::CreateUnderWay`]: that create must not be
    /// made a second time).
    pub fn intend(&self, wwpn: Wwn, intent: Intent) -> Result<CreateLock, IntendError> {
        let mut lock = None;
        let mut under_way = None;
        let changed = self.try_change(|file| {
            if file.creating.len() >= ENTRIES_MAX && !file.creating.contains_key(&wwpn) {
                return Err(format!(
                    "{} creates are under way already, the most a state file holds \
                     ({ENTRIES_MAX}); not recording the create of {wwpn}",
                    file.creating.len()
                ));
            }
            match self.lock_create(wwpn) {
                Ok(taken) => lock = Some(taken),
                Err(e) => {
                    let why = e.to_string();
                    under_way = Some(e);
                    return Err(why);
                }
            }
            Ok(file.creating.insert(wwpn, intent.clone()).as_ref() != Some(&intent))
        });
        if let Some(e) = under_way {
            return Err(e);
        }
        changed?;
        lock.ok_or_else(|| {
            IntendError::State(self.err(format!("no lock was taken for the create of {wwpn}")))
        })
    }

    /// The create of `wwpn` succeeded and its vHBA is marked: its intent becomes
    /// its record, unless the mark's own record is there already (written by
    /// [`OwnedState::record`] when marking).
    pub fn made(&self, wwpn: Wwn) -> Result<(), StateError> {
        self.change(|file| {
            let Some(intent) = file.creating.remove(&wwpn) else {
                return false;
            };
            self.remove_create_lock(wwpn);
            file.vhbas.entry(wwpn).or_insert(OwnedRecord {
                name: intent.name,
                wwnn: intent.wwnn,
                why: String::new(),
                mark_pending: false,
            });
            true
        })
    }

    /// The create of `wwpn` made nothing (the kernel refused it, or it was rolled
    /// back): its intent goes.
    pub fn abandon(&self, wwpn: Wwn) -> Result<(), StateError> {
        self.change(|file| {
            let removed = file.creating.remove(&wwpn).is_some();
            if removed {
                self.remove_create_lock(wwpn);
            }
            removed
        })
    }

    /// The creates under way the file records, as written (nothing settled).
    pub fn intents(&self) -> Result<BTreeMap<Wwn, Intent>, StateError> {
        match self.load()? {
            Loaded::File(file) => Ok(file.creating),
            Loaded::Corrupt(_) | Loaded::Untrusted(_) => Ok(BTreeMap::new()),
        }
    }

    /// Whether `file` holds intents of creators that are gone, and sysfs can be
    /// asked which vports are there (without it nothing is settled).
    fn unsettled(&self, file: &OwnedFile) -> bool {
        self.marks.is_some() && file.creating.values().any(|i| !i.by.alive())
    }

    /// [`OwnedFile::settle`] against the vports sysfs shows now.
    fn settle(&self, file: &mut OwnedFile) -> Vec<Settled> {
        let Some(marks) = &self.marks else {
            return Vec::new();
        };
        file.settle(&marks(), Creator::alive, |wwpn| self.create_in_kernel(wwpn))
    }

    /// One line for each intent settled; `written`: in the file, not only in
    /// what was read.
    fn report(&self, settled: &[Settled], written: bool) {
        let path = self.path.display();
        let left = if written {
            ""
        } else {
            " (left in the file: `hbad apply` or the agent records it)"
        };
        for s in settled {
            match s {
                Settled::Adopted {
                    wwpn,
                    intent,
                    record,
                } => warn(&format!(
                    "ownership state file {path}: hbad began creating vport {wwpn}:{} \
                     (\"{}\") on {} at {} and stopped before recording it; the vport is \
                     there, so it is hbad's{}{left}",
                    intent.wwnn,
                    intent.name,
                    intent.on(),
                    intent.when(),
                    if record.refused() {
                        " (unmarked: the record stands in for its mark until hbad writes it)"
                    } else {
                        ""
                    }
                )),
                Settled::Recorded { wwpn } => warn(&format!(
                    "ownership state file {path}: the create of {wwpn} was recorded before \
                     hbad stopped; its intent is done{left}"
                )),
                Settled::Dropped { wwpn, intent } => warn(&format!(
                    "ownership state file {path}: hbad began creating vport {wwpn}:{} \
                     (\"{}\") on {} at {} and stopped; no such vport is there (the create \
                     did not happen or failed), so the intent is dropped{left}",
                    intent.wwnn,
                    intent.name,
                    intent.on(),
                    intent.when()
                )),
            }
        }
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
                Loaded::Corrupt(_) | Loaded::Untrusted(_) => None,
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

/// A warning, through tracing: the agent's journal or stderr, a test's
/// subscriber. A command sets up no logging, and its user must hear of it too:
/// there it is a `warning: ...` line on stderr ([`crate::journal::command_line`]).
pub(crate) fn warn(text: &str) {
    // Asked apart: an event logged inside `get_default` goes to no subscriber.
    let unheard = tracing::dispatcher::get_default(|d| d.is::<tracing::subscriber::NoSubscriber>());
    if unheard {
        tracing::dispatcher::with_default(crate::journal::command_line(), || {
            tracing::warn!("{text}")
        });
    } else {
        tracing::warn!("{text}");
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
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::files::testing::within_seconds;

    fn w(n: u64) -> Wwn {
        Wwn::from_u64(0x5001_a4a0_0000_0000 + n)
    }

    fn rec(name: &str, why: &str) -> OwnedRecord {
        OwnedRecord {
            name: name.into(),
            wwnn: w(0xb00),
            why: why.into(),
            mark_pending: false,
        }
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
                why: String::new(),
                mark_pending: false,
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
        for ((read, write), what) in
            errors
                .iter()
                .zip(["a FIFO", "a character device", "a directory"])
        {
            assert!(
                read.contains(what) && read.contains("regular file"),
                "{read}"
            );
            assert_eq!(read, write);
        }
        assert!(!names_in(dir.path()).iter().any(|n| n.contains(".corrupt-")));
    }

    fn write_file(path: &Path, vhbas: &str, version: u32) {
        fs::write(
            path,
            format!("{{\"version\":{version},\"vhbas\":{{{vhbas}}}}}"),
        )
        .unwrap();
    }

    fn entry(wwpn: u64, name: &str) -> String {
        format!(
            "\"{}\":{{\"name\":\"{name}\",\"wwnn\":\"0x5001a4a000000b00\",\"why\":\"EACCES\"}}",
            w(wwpn)
        )
    }

    #[test]
    fn a_file_hbad_did_not_write_is_not_its_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("owned.json");
        let state = OwnedState::new(&path);
        for (vhbas, version, why) in [
            (entry(1, "a"), 2, "version 2 (this hbad reads version 1"),
            (
                format!("{},{}", entry(1, "a"), entry(1, "b")),
                1,
                "is recorded twice",
            ),
            (
                format!(
                    "{},\"0x5001A4A000000001\":{{\"name\":\"b\",\"wwnn\":\"0x5001a4a000000b00\"}}",
                    entry(1, "a")
                ),
                1,
                "is recorded twice",
            ),
            (
                entry(1, "a b"),
                1,
                "names `a b`, which no policy can declare",
            ),
            (entry(1, "\\u001b[31m"), 1, "names `\\u{1b}[31m`"),
            (entry(1, &"x".repeat(10_000)), 1, "..., which no policy"),
        ] {
            write_file(&path, &vhbas, version);
            let Loaded::Corrupt(got) = state.load().unwrap() else {
                panic!("{vhbas} was read as hbad's")
            };
            assert!(got.contains(why), "{got}");
            assert!(got.len() < 300, "{got}");
        }
        write_file(&path, &entry(1, "a.b-c_9"), 1);
        assert_eq!(state.all().unwrap()[&w(1)].name, "a.b-c_9");
    }

    /// Holds `<path>.lock` as another hbad would while it changes the file.
    fn hold_lock(path: &Path) -> fs::File {
        let lock = fs::File::create(sibling(path, ".lock")).unwrap();
        // SAFETY: flock takes no pointers; the descriptor is open for the call.
        assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
        lock
    }

    /// What the agent's loop reads, as the loop's thread (marked, so that a
    /// lock, a move or a synced write there fails a debug assertion).
    fn on_loop(state: &OwnedState) -> Result<LoopRead, StateError> {
        crate::sysfs::writes::set_loop_thread(true);
        let read = state.read_on_loop();
        crate::sysfs::writes::set_loop_thread(false);
        read
    }

    fn records(read: Result<LoopRead, StateError>) -> BTreeMap<Wwn, OwnedRecord> {
        match read {
            Ok(LoopRead::Records { records, .. }) => records,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_loop_never_recovers_a_corrupt_file_and_a_worker_does() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("owned.json");
        write_file(&path, &entry(1, "a"), 1);
        let lock = hold_lock(&path);
        let state = OwnedState::new(&path);
        // A good file is read with no lock, held or not.
        assert_eq!(records(on_loop(&state))[&w(1)].name, "a");
        drop(lock);
        // Corrupt: not read, and left as it is though its lock is free: the
        // loop neither takes the lock nor moves or writes the file.
        fs::write(&path, "{not json").unwrap();
        let read = within_seconds({
            let state = state.clone();
            move || on_loop(&state).map_err(|e| e.to_string())
        });
        assert!(
            matches!(&read, Ok(LoopRead::Corrupt(why)) if why.contains("not hbad's JSON")),
            "{read:?}"
        );
        assert_eq!(names_in(dir.path()), ["owned.json", "owned.json.lock"]);
        assert_eq!(fs::read_to_string(&path).unwrap(), "{not json");
        // A worker moves it aside and rebuilds it; the loop then reads that.
        state.persist_settled().unwrap();
        assert!(names_in(dir.path()).iter().any(|n| n.contains(".corrupt-")));
        assert_eq!(
            on_loop(&state).unwrap(),
            LoopRead::Records {
                records: BTreeMap::new(),
                unpersisted: false
            }
        );
    }

    /// The loop's thread marked, recovering a corrupt file fails a debug
    /// assertion: a regression that brings the rebuild back to the loop is
    /// caught by any test that reads a corrupt file there.
    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "on the event loop's thread")]
    fn recovering_on_the_loops_thread_fails_a_debug_assertion() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("owned.json");
        fs::write(&path, "{not json").unwrap();
        crate::sysfs::writes::set_loop_thread(true);
        let _ = OwnedState::new(&path).persist_settled();
    }

    #[test]
    fn a_read_only_load_leaves_a_corrupt_file_where_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("owned.json");
        fs::write(&path, "{not json").unwrap();
        let state = OwnedState::new(&path);
        assert!(state.all_read_only().unwrap().is_empty());
        assert_eq!(names_in(dir.path()), ["owned.json"]);
        assert_eq!(fs::read_to_string(&path).unwrap(), "{not json");
        write_file(&path, &entry(1, "a"), 1);
        assert_eq!(state.all_read_only().unwrap()[&w(1)].name, "a");
    }

    #[test]
    fn a_file_others_could_write_gives_no_records_and_is_never_changed() {
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.path().join("owned.json");
        write_file(&path, &entry(1, "evil"), 1);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).unwrap();
        let state = OwnedState::new(&path);
        assert!(state.all().unwrap().is_empty());
        assert!(state.all_read_only().unwrap().is_empty());
        assert_eq!(state.named(None, Some(w(1))), None);
        let err = state.record(w(2), rec("b", "")).unwrap_err().to_string();
        assert!(
            err.contains("it is writable by everyone (mode 0666), owner uid")
                && err.contains("does not change it"),
            "{err}"
        );
        // Left as found: not moved aside, not rewritten.
        assert_eq!(names_in(dir.path()), ["owned.json", "owned.json.lock"]);
        // Trusted when the check is relaxed (a test tree).
        let relaxed = OwnedState::new(&path).perms(Perms::Relaxed);
        assert_eq!(relaxed.all().unwrap()[&w(1)].name, "evil");
        // A directory others can write taints the file in it.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(state.all().unwrap().len(), 1);
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
        assert!(state.all().unwrap().is_empty());
        if nix::unistd::geteuid().is_root() {
            fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
            std::os::unix::fs::chown(&path, Some(65534), None).unwrap();
            let err = state.forget(w(1)).unwrap_err().to_string();
            assert!(err.contains("it is owned by uid 65534"), "{err}");
        }
    }

    /// A file exactly as hbad wrote it before intents (the main branch of
    /// 2026-12-07): every later hbad must read it, and write it back alike.
    const FILE_BEFORE_INTENTS: &str = r#"{
  "version": 1,
  "vhbas": {
    "0x5001a4a000000001": {
      "name": "db1",
      "wwnn": "0x5001a4a000000b00",
      "why": ""
    },
    "0x5001a4a000000002": {
      "name": "db2",
      "wwnn": "0x5001a4a000000b00",
      "why": "vport-1:0-1 does not take a symbolic_name (EACCES)"
    }
  }
}"#;

    #[test]
    fn a_file_written_before_intents_loads_and_is_written_back_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("owned.json");
        fs::write(&path, FILE_BEFORE_INTENTS).unwrap();
        let state = OwnedState::new(&path).rebuilding_from(present(&[]));
        let all = state.all().unwrap();
        assert_eq!(all[&w(1)], rec("db1", ""));
        assert_eq!(
            all[&w(2)],
            rec("db2", "vport-1:0-1 does not take a symbolic_name (EACCES)")
        );
        assert!(state.intents().unwrap().is_empty());
        // A create that comes and goes leaves no trace of intents in the file.
        state.intend(w(3), intent("db3", gone())).unwrap();
        assert!(fs::read_to_string(&path).unwrap().contains("\"creating\""));
        state.abandon(w(3)).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), FILE_BEFORE_INTENTS);
        assert_eq!(names_in(dir.path()), ["owned.json", "owned.json.lock"]);
    }

    /// A process that ran on another boot.
    fn gone() -> Creator {
        Creator {
            boot: "00000000-0000-0000-0000-000000000000".into(),
            pid: 1,
            start: 0,
        }
    }

    fn intent(name: &str, by: Creator) -> Intent {
        Intent {
            name: name.into(),
            wwnn: w(0xb00),
            parent_host: 1,
            parent_wwpn: Some(w(0xa00)),
            since: 1_765_123_456,
            by,
        }
    }

    /// Vports sysfs shows, by WWPN and symbolic_name (WWNN 0xb00, as intents).
    fn present(vports: &[(u64, &str)]) -> MarkSource {
        let marks: Vec<VportMark> = vports
            .iter()
            .map(|(n, name)| VportMark {
                wwpn: w(*n),
                wwnn: w(0xb00),
                symbolic_name: name.to_string(),
            })
            .collect();
        Arc::new(move || marks.clone())
    }

    #[test]
    fn this_process_is_alive_and_one_of_another_boot_or_start_is_not() {
        let this = Creator::this();
        assert!(this.alive(), "{this:?}");
        assert!(!gone().alive());
        let restarted = Creator {
            start: this.start + 1,
            ..this.clone()
        };
        assert!(!restarted.alive());
        assert_eq!(start_of(u32::MAX), None);
    }

    #[test]
    fn an_intent_whose_vport_is_there_is_adopted_and_one_whose_vport_is_not_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("owned.json");
        let writer = OwnedState::new(&path);
        // Stopped after the kernel made 1 (unmarked) and 2 (marked), before it made
        // 3; 4 was recorded before the stop; 5 is this process's, under way.
        for (n, name, by) in [
            (1, "a", gone()),
            (2, "b", gone()),
            (3, "c", gone()),
            (4, "d", gone()),
            (5, "e", Creator::this().clone()),
        ] {
            writer.intend(w(n), intent(name, by)).unwrap();
        }
        writer.record(w(4), rec("d", "")).unwrap();
        let sysfs = present(&[(1, ""), (2, "hbad:b"), (4, "hbad:d"), (9, "hbad:x")]);
        let reader = OwnedState::new(&path).rebuilding_from(sysfs.clone());

        // Only shown: settled in what is read, the file left.
        let shown = reader.all_read_only().unwrap();
        let before = fs::read_to_string(&path).unwrap();
        assert_eq!(
            shown.keys().copied().collect::<Vec<_>>(),
            [w(1), w(2), w(4)]
        );
        assert_eq!(reader.intents().unwrap().len(), 5);
        // The agent's loop, while another process holds the lock: the same, and
        // the file left for a read that gets the lock.
        let lock = hold_lock(&path);
        assert_eq!(
            on_loop(&reader).unwrap(),
            LoopRead::Records {
                records: shown.clone(),
                unpersisted: true
            }
        );
        assert_eq!(fs::read_to_string(&path).unwrap(), before);
        drop(lock);

        // Read to work with: settled in the file.
        let all = reader.all().unwrap();
        assert_eq!(all, shown);
        assert_ne!(fs::read_to_string(&path).unwrap(), before);
        // Unmarked, the record is the mark; marked, the record binds it.
        assert!(all[&w(1)].refused(), "{:?}", all[&w(1)]);
        assert!(all[&w(1)].why.contains("2025-12-07T"), "{:?}", all[&w(1)]);
        let far = Intent {
            since: u64::MAX,
            ..intent("a", gone())
        };
        assert_eq!(far.when(), format!("{} s after 1970", u64::MAX));
        assert_eq!(all[&w(2)], rec("b", ""));
        assert_eq!(all[&w(4)], rec("d", ""));
        assert_eq!(
            owned(Some(""), None, all.get(&w(1))).map(|o| o.name().to_string()),
            Some("a".into())
        );
        assert_eq!(
            owned(Some("hbad:b"), None, all.get(&w(2))),
            Some(Owned::Mark("b"))
        );
        // The running create is left for its process.
        assert_eq!(
            reader
                .intents()
                .unwrap()
                .keys()
                .copied()
                .collect::<Vec<_>>(),
            [w(5)]
        );
        // A reader without sysfs settles nothing.
        writer.intend(w(6), intent("f", gone())).unwrap();
        assert_eq!(OwnedState::new(&path).intents().unwrap().len(), 2);
        assert!(!OwnedState::new(&path).all().unwrap().contains_key(&w(6)));
        assert_eq!(OwnedState::new(&path).intents().unwrap().len(), 2);
    }

    #[test]
    fn an_intent_whose_write_may_still_be_in_the_kernel_is_kept_until_its_lock_is_free() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("owned.json");
        let state = OwnedState::new(&path).rebuilding_from(present(&[]));
        // The creator is gone; its write (the child holding the lock) is not.
        let in_kernel = state.intend(w(1), intent("a", gone())).unwrap();
        let lock_file = sibling(&path, &format!(".create-{}", w(1)));
        assert!(lock_file.exists());
        assert!(state.all().unwrap().is_empty());
        assert!(state.all_read_only().unwrap().is_empty());
        assert_eq!(state.intents().unwrap().len(), 1);
        // A second create of the WWPN meanwhile is not recorded over it.
        let err = state
            .intend(w(1), intent("a", Creator::this().clone()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("another create of"), "{err}");
        assert_eq!(state.intents().unwrap()[&w(1)].by, gone());
        // The write ended and made nothing: dropped, and its lock file with it.
        drop(in_kernel);
        assert!(state.all().unwrap().is_empty());
        assert!(state.intents().unwrap().is_empty());
        assert!(!lock_file.exists());
        // A lock file that cannot be tested keeps the intent: dropping it could
        // orphan a vport, keeping it deletes nothing.
        drop(state.intend(w(2), intent("b", gone())).unwrap());
        let lock_file = sibling(&path, &format!(".create-{}", w(2)));
        fs::remove_file(&lock_file).unwrap();
        std::os::unix::fs::symlink("elsewhere", &lock_file).unwrap();
        assert!(state.all().unwrap().is_empty());
        assert_eq!(state.intents().unwrap().len(), 1);
    }

    #[test]
    fn the_loop_settles_in_its_records_only_and_a_worker_writes_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("owned.json");
        let state = OwnedState::new(&path).rebuilding_from(present(&[(1, "")]));
        drop(state.intend(w(1), intent("a", gone())).unwrap());
        let before = fs::read_to_string(&path).unwrap();
        // The lock is free, and still the loop writes nothing.
        let read = on_loop(&state).unwrap();
        assert!(
            matches!(&read, LoopRead::Records { records, unpersisted: true }
                if records[&w(1)].name == "a"),
            "{read:?}"
        );
        assert_eq!(fs::read_to_string(&path).unwrap(), before);
        state.persist_settled().unwrap();
        assert!(state.intents().unwrap().is_empty());
        let read = on_loop(&state).unwrap();
        assert!(
            matches!(&read, LoopRead::Records { records, unpersisted: false }
                if records[&w(1)].name == "a"),
            "{read:?}"
        );
        // A worker that cannot write says why, and changes nothing: here its
        // lock cannot be opened (as on a read-only /var).
        drop(state.intend(w(2), intent("b", gone())).unwrap());
        let before = fs::read_to_string(&path).unwrap();
        fs::remove_file(sibling(&path, ".lock")).unwrap();
        fs::create_dir(sibling(&path, ".lock")).unwrap();
        let err = state.persist_settled().unwrap_err().to_string();
        assert!(err.contains("lock file"), "{err}");
        assert_eq!(fs::read_to_string(&path).unwrap(), before);
    }

    #[test]
    fn a_create_that_made_nothing_clears_its_intent_and_one_that_made_its_vhba_records_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("owned.json");
        let state = OwnedState::new(&path).rebuilding_from(present(&[]));
        state
            .intend(w(1), intent("a", Creator::this().clone()))
            .unwrap();
        state
            .intend(w(2), intent("b", Creator::this().clone()))
            .unwrap();
        // Synced before the write to vport_create: another reader sees it.
        assert_eq!(
            OwnedState::new(&path).intents().unwrap()[&w(1)].by,
            *Creator::this()
        );
        state.abandon(w(1)).unwrap();
        state.made(w(2)).unwrap();
        assert!(state.intents().unwrap().is_empty());
        assert_eq!(
            state.all().unwrap().into_iter().collect::<Vec<_>>(),
            [(w(2), rec("b", ""))]
        );
        // A record the mark wrote first (a refused one) is not replaced.
        state
            .intend(w(3), intent("c", Creator::this().clone()))
            .unwrap();
        state.record(w(3), rec("c", "EACCES")).unwrap();
        state.made(w(3)).unwrap();
        assert_eq!(state.get(w(3)).unwrap(), Some(rec("c", "EACCES")));
        // Nothing to clear: no write.
        let before = fs::metadata(&path).unwrap().modified().unwrap();
        let inode = fs::metadata(&path).unwrap().ino();
        state.abandon(w(3)).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().ino(), inode);
        assert_eq!(fs::metadata(&path).unwrap().modified().unwrap(), before);
    }

    #[test]
    fn intents_are_bounded_and_checked_as_records_are() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("owned.json");
        let state = OwnedState::new(&path);
        let by = "\"by\":{\"boot\":\"\",\"pid\":1,\"start\":0}";
        let one = |n: u64, name: &str, by: &str| {
            format!(
                "\"{}\":{{\"name\":\"{name}\",\"wwnn\":\"0x5001a4a000000b00\",\
                 \"parent_host\":1,\"since\":0,{by}}}",
                w(n)
            )
        };
        for (creating, why) in [
            (
                one(1, "a b", by),
                "the intent of 0x5001a4a000000001 names `a b`",
            ),
            (
                format!("{},{}", one(1, "a", by), one(1, "b", by)),
                "is recorded twice",
            ),
            (
                one(1, "a", "\"by\":{\"boot\":\"../x\",\"pid\":1,\"start\":0}"),
                "gives boot `../x`, not a boot id",
            ),
            (one(1, "a", "\"by\":{\"pid\":1}"), "not hbad's JSON"),
        ] {
            fs::write(
                &path,
                format!("{{\"version\":1,\"vhbas\":{{}},\"creating\":{{{creating}}}}}"),
            )
            .unwrap();
            let Loaded::Corrupt(got) = state.load().unwrap() else {
                panic!("{creating} was read as hbad's")
            };
            assert!(got.contains(why), "{got}");
        }
        // One more than a policy can declare: not hbad's, the bound named.
        let many: Vec<String> = (0..=ENTRIES_MAX as u64).map(|n| one(n, "a", by)).collect();
        let text = format!(
            "{{\"version\":1,\"vhbas\":{{}},\"creating\":{{{}}}}}",
            many.join(",")
        );
        assert!((text.len() as u64) < STATE_FILE_MAX, "{}", text.len());
        let err = OwnedFile::parse(text.as_bytes()).unwrap_err();
        assert!(
            err.contains(&format!("more than {ENTRIES_MAX} entries")),
            "{err}"
        );
        // As many as it can: read, and no further create is recorded.
        fs::write(
            &path,
            format!(
                "{{\"version\":1,\"vhbas\":{{}},\"creating\":{{{}}}}}",
                many[..ENTRIES_MAX].join(",")
            ),
        )
        .unwrap();
        let err = state
            .intend(w(ENTRIES_MAX as u64 + 7), intent("z", gone()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("the most a state file holds ({ENTRIES_MAX})")),
            "{err}"
        );
    }

    #[test]
    fn a_change_that_would_make_the_file_too_long_to_read_is_refused_and_the_file_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("owned.json");
        // Readable as written (compact), and longer than the bound once hbad writes
        // it back indented: the next read would move it aside.
        let head = format!(
            "{{\"version\":1,\"vhbas\":{{\"{}\":{{\"name\":\"a\",\"wwnn\":\"{}\",\"why\":\"",
            w(1),
            w(0xb00)
        );
        let pad = STATE_FILE_MAX as usize - head.len() - 5;
        let text = format!("{head}{}\"}}}}}}", "x".repeat(pad));
        assert_eq!(text.len() as u64, STATE_FILE_MAX - 1);
        fs::write(&path, &text).unwrap();
        let state = OwnedState::new(&path);
        assert_eq!(state.all().unwrap().len(), 1);
        let err = state.record(w(2), rec("b", "")).unwrap_err().to_string();
        assert!(
            err.contains(&format!(
                "longer than the {STATE_FILE_MAX} a state file can hold"
            )),
            "{err}"
        );
        assert_eq!(fs::read_to_string(&path).unwrap(), text);
    }
}
