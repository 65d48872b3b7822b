//! hbad's journal records, as journald receives them.
//!
//! hbad (src/journal/native.rs) sends to the fixed path /run/systemd/journal/socket.
//! These tests run the real `hbad run` in a private mount namespace in which that path
//! is a datagram socket the test owns (the test's directory is bind-mounted over
//! /run/systemd/journal, on a tmpfs when the directory does not exist on this machine),
//! decode the journal's native protocol, and check what administrators and alerting
//! rules rely on: the MESSAGE_IDs of `hbad::journal::MessageId`, fields named `HBAD_*`,
//! SYSLOG_IDENTIFIER=hbad, priorities, and the catalog's `@FIELD@`s. The namespace's
//! mounts are private and go away with hbad: the machine's /run is never touched.
//!
//! The hbad tests need root (a mount namespace, the kernel uevent socket) and are
//! skipped, saying why, without it. The decoder's own tests run everywhere.

use std::collections::BTreeSet;
use std::ffi::CString;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, IoSliceMut, Read, Seek, SeekFrom};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use hbad::journal::MessageId;
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

/// Where hbad (and sd_journal_send) send, with no way to configure it.
const JOURNAL_DIR: &str = "/run/systemd/journal";
/// host1 of the capture: FCoE initiator, NPIV-capable, link Online.
const HOST1: &str = "devices/virtual/net/vi/ctlr_1/host1";
const HOST1_WWPN: &str = "0x200002000000000b";
const VHBA_WWPN: &str = "0x5001a4a000000b01";
const VHBA_WWNN: &str = "0x5001a4a000000b00";
/// A guard against a hung hbad, never a synchronisation: every wait ends as soon as
/// the awaited record or line arrives.
const PATIENCE: Duration = Duration::from_secs(60);
/// How often a wait for a record looks whether hbad is still alive, so that an agent
/// that died says so at once instead of after PATIENCE.
const ALIVE_CHECK: Duration = Duration::from_millis(500);
/// Fields hbad's journal layer itself sets; everything else hbad sends must be `HBAD_*`.
const STANDARD_FIELDS: [&str; 7] = [
    "MESSAGE",
    "MESSAGE_ID",
    "PRIORITY",
    "SYSLOG_IDENTIFIER",
    "CODE_FILE",
    "CODE_LINE",
    "TARGET",
];
const CATALOG: &str = include_str!("../systemd/hbad.catalog");

// ---------------------------------------------------------------------------------
// The journal native protocol (https://systemd.io/JOURNAL_NATIVE_PROTOCOL/)
// ---------------------------------------------------------------------------------

/// What makes a datagram something journald would not take as one record.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
enum DecodeError {
    #[error("byte {offset}: a field name runs to the end of the datagram")]
    UnterminatedName { offset: usize },
    #[error("byte {offset}: an empty line (journald's entry separator) inside a record")]
    EmptyLine { offset: usize },
    #[error("field name {name:?} is not a journal field name")]
    BadName { name: String },
    #[error("field {name}: the 8-byte length is cut short")]
    ShortLength { name: String },
    #[error("field {name}: declares {declared} bytes, {left} are left")]
    ShortValue {
        name: String,
        declared: u64,
        left: usize,
    },
    #[error("field {name}: the binary value is not followed by a newline")]
    NoTerminator { name: String },
}

/// One journal record: its fields in the order they came, and how it came.
#[derive(Clone, Debug, Default)]
struct Record {
    fields: Vec<(String, Vec<u8>)>,
    /// Too large for a datagram: passed as a sealed memfd.
    via_memfd: bool,
}

impl Record {
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.fields
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// The one value of `name`, as text; `None` when absent. Twice is a bug: journald
    /// would keep both and `journalctl FIELD=` would match either.
    fn get(&self, name: &str) -> Option<String> {
        let mut values = self.values(name);
        let first = values.next()?;
        assert!(values.next().is_none(), "{name} twice in {self:?}");
        Some(String::from_utf8(first.to_vec()).unwrap_or_else(|e| panic!("{name}: {e}")))
    }

    fn field(&self, name: &str) -> String {
        self.get(name)
            .unwrap_or_else(|| panic!("no {name} in {}", self.show()))
    }

    fn names(&self) -> BTreeSet<&str> {
        self.fields.iter().map(|(n, _)| n.as_str()).collect()
    }

    fn message_id(&self) -> Option<String> {
        self.get("MESSAGE_ID")
    }

    /// For failure messages: the fields as journalctl -o verbose shows them.
    fn show(&self) -> String {
        let mut s = String::from("{");
        for (n, v) in &self.fields {
            let v = String::from_utf8_lossy(v);
            let v = if v.len() > 200 {
                let head: String = v.chars().take(200).collect();
                format!("{head}... ({} bytes)", v.len())
            } else {
                v.into_owned()
            };
            s.push_str(&format!("\n  {n}={v}"));
        }
        s.push_str("\n}");
        s
    }
}

/// Valid as journald's `journal_field_valid` says for fields a client may send:
/// upper-case letters, digits and `_`, not starting with a digit, at most 64 bytes;
/// a leading `_` marks the trusted fields journald adds itself and drops from clients.
fn valid_field_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name[0].is_ascii_digit()
        && name[0] != b'_'
        && name
            .iter()
            .all(|&c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_')
}

/// Decodes one native-protocol record. Each field is either `NAME=value\n` or, for
/// values that may hold a newline, `NAME\n` + 64-bit little-endian length + value +
/// `\n`. As journald does, a line holding `=` is the text form, one without is the
/// binary form's name.
fn decode(payload: &[u8]) -> Result<Record, DecodeError> {
    let mut record = Record::default();
    let mut p = 0;
    while p < payload.len() {
        let rest = &payload[p..];
        let eol = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or(DecodeError::UnterminatedName { offset: p })?;
        if eol == 0 {
            return Err(DecodeError::EmptyLine { offset: p });
        }
        let line = &rest[..eol];
        let (name, value, next) = match line.iter().position(|&b| b == b'=') {
            Some(eq) => (&line[..eq], line[eq + 1..].to_vec(), p + eol + 1),
            None => {
                let name_text = String::from_utf8_lossy(line).into_owned();
                let after = &rest[eol + 1..];
                let len: [u8; 8] =
                    after
                        .get(..8)
                        .and_then(|b| b.try_into().ok())
                        .ok_or_else(|| DecodeError::ShortLength {
                            name: name_text.clone(),
                        })?;
                let declared = u64::from_le_bytes(len);
                let data = &after[8..];
                let n = usize::try_from(declared)
                    .ok()
                    .filter(|&n| n <= data.len())
                    .ok_or(DecodeError::ShortValue {
                        name: name_text.clone(),
                        declared,
                        left: data.len(),
                    })?;
                if data.get(n) != Some(&b'\n') {
                    return Err(DecodeError::NoTerminator { name: name_text });
                }
                (line, data[..n].to_vec(), p + eol + 1 + 8 + n + 1)
            }
        };
        if !valid_field_name(name) {
            return Err(DecodeError::BadName {
                name: String::from_utf8_lossy(name).into_owned(),
            });
        }
        record
            .fields
            .push((String::from_utf8_lossy(name).into_owned(), value));
        p = next;
    }
    Ok(record)
}

/// Receives one datagram, with the memfd a large record comes in. journald takes
/// either inline data or exactly one descriptor and no data; anything else is an error.
fn receive(sock: &UnixDatagram) -> io::Result<Record> {
    // A datagram is bounded by the sender's SO_SNDBUF (wmem_max at most); larger
    // records come as a memfd, so this never truncates what hbad sends.
    let mut buf = vec![0u8; 4 << 20];
    let mut cmsg = nix::cmsg_space!([RawFd; 4]);
    let (len, truncated, fds) = {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(io::Error::from)?;
        let mut fds = Vec::new();
        for c in msg.cmsgs().map_err(io::Error::from)? {
            if let ControlMessageOwned::ScmRights(passed) = c {
                // SAFETY: SCM_RIGHTS descriptors are new and ours alone.
                fds.extend(
                    passed
                        .into_iter()
                        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                );
            }
        }
        (msg.bytes, msg.flags.contains(MsgFlags::MSG_TRUNC), fds)
    };
    let invalid = |why: String| io::Error::new(io::ErrorKind::InvalidData, why);
    if truncated {
        return Err(invalid("datagram larger than the receive buffer".into()));
    }
    let (payload, via_memfd) = match (len, fds.len()) {
        (_, 0) => (buf[..len].to_vec(), false),
        (0, 1) => {
            let fd = fds.into_iter().next().expect("one descriptor");
            // journald maps the memfd only when it can no longer change under it.
            // SAFETY: F_GET_SEALS on a descriptor we own.
            let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
            let needed = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
            if seals < 0 || seals & needed != needed {
                return Err(invalid(format!("memfd not sealed (seals {seals:#x})")));
            }
            let mut file = File::from(fd);
            // The sender's writes left the shared offset at the end.
            file.seek(SeekFrom::Start(0))?;
            let mut data = Vec::new();
            file.read_to_end(&mut data)?;
            (data, true)
        }
        (n, k) => {
            return Err(invalid(format!(
                "{n} bytes with {k} descriptors: journald takes one or the other"
            )))
        }
    };
    let mut record = decode(&payload).map_err(|e| invalid(e.to_string()))?;
    record.via_memfd = via_memfd;
    Ok(record)
}

/// The test's journald: a datagram socket and every record it received.
struct Journal {
    sock: UnixDatagram,
    records: Vec<Record>,
    /// Empty datagrams: hbad's "does journald answer" probe.
    probes: usize,
}

impl Journal {
    fn bind(dir: &Path) -> Journal {
        let sock = UnixDatagram::bind(dir.join("socket")).unwrap();
        sock.set_read_timeout(Some(ALIVE_CHECK)).unwrap();
        Journal {
            sock,
            records: Vec::new(),
            probes: 0,
        }
    }

    /// Receives until a record satisfies `want`, and returns it.
    fn wait_for(&mut self, hbad: &mut Hbad, what: &str, want: impl Fn(&Record) -> bool) -> Record {
        let until = Instant::now() + PATIENCE;
        loop {
            let trouble = match receive(&self.sock) {
                Ok(r) if r.fields.is_empty() => {
                    self.probes += 1;
                    continue;
                }
                Ok(r) => {
                    let hit = want(&r);
                    self.records.push(r);
                    if hit {
                        return self.records.last().cloned().expect("just pushed");
                    }
                    continue;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    match hbad.child.try_wait().unwrap() {
                        Some(status) => format!("hbad exited ({status})"),
                        None if Instant::now() < until => continue,
                        None => format!("nothing in {PATIENCE:?}"),
                    }
                }
                Err(e) => e.to_string(),
            };
            panic!(
                "waiting for {what}: {trouble}\nrecords so far:\n{}\nhbad's stderr:\n{}",
                self.records
                    .iter()
                    .map(Record::show)
                    .collect::<Vec<_>>()
                    .join("\n"),
                hbad.stderr()
            );
        }
    }

    /// Whatever arrived and was not read yet, without waiting.
    fn pending(&self) -> usize {
        self.sock.set_nonblocking(true).unwrap();
        let mut n = 0;
        loop {
            match receive(&self.sock) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Ok(_) => n += 1,
                Err(e) => panic!("an unreadable datagram: {e}"),
            }
        }
        self.sock.set_nonblocking(false).unwrap();
        n
    }
}

// ---------------------------------------------------------------------------------
// hbad in a private mount namespace
// ---------------------------------------------------------------------------------

/// What a child does between fork and exec to see a directory of the test at a fixed
/// path (/run/systemd/journal for hbad, /run for journald). Everything is allocated
/// before the fork: only system calls run in the child.
struct PrivateMount {
    /// Where a tmpfs goes when the target does not exist, so that its mount point can
    /// be made without creating anything in the machine's /run.
    tmpfs_at: Option<CString>,
    /// Directories to make on that tmpfs, outermost first.
    mkdirs: Vec<CString>,
    source: CString,
    target: CString,
}

impl PrivateMount {
    fn plan(source: &Path, target: &'static str) -> Result<PrivateMount, String> {
        let cstr = |p: &Path| CString::new(p.as_os_str().as_bytes()).expect("no NUL in a path");
        let target = Path::new(target);
        let mut missing = Vec::new();
        let mut at = target;
        while !at.is_dir() {
            missing.push(at);
            at = at
                .parent()
                .filter(|p| *p != Path::new("/"))
                .ok_or_else(|| "/run does not exist on this machine".to_string())?;
        }
        missing.reverse();
        Ok(PrivateMount {
            tmpfs_at: (!missing.is_empty()).then(|| cstr(at)),
            mkdirs: missing.into_iter().map(cstr).collect(),
            source: cstr(source),
            target: cstr(target),
        })
    }

    /// Runs in the forked child: a new mount namespace whose mounts do not propagate
    /// back, then the test's directory over the target.
    fn enter(&self) -> io::Result<()> {
        fn check(r: libc::c_int) -> io::Result<()> {
            if r == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        }
        let none = std::ptr::null();
        // SAFETY: plain system calls on NUL-terminated strings made before the fork.
        unsafe {
            check(libc::unshare(libc::CLONE_NEWNS))?;
            check(libc::mount(
                c"none".as_ptr(),
                c"/".as_ptr(),
                none,
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ))?;
            if let Some(at) = &self.tmpfs_at {
                check(libc::mount(
                    c"tmpfs".as_ptr(),
                    at.as_ptr(),
                    c"tmpfs".as_ptr(),
                    libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                    c"mode=0755".as_ptr().cast(),
                ))?;
                for d in &self.mkdirs {
                    check(libc::mkdir(d.as_ptr(), 0o755))?;
                }
            }
            check(libc::mount(
                self.source.as_ptr(),
                self.target.as_ptr(),
                none,
                libc::MS_BIND,
                std::ptr::null(),
            ))
        }
    }
}

/// A private copy of the capture's first sysfs, where host1's vport_create answers
/// every write with ENOSPC as the kernel does when the parent's vports are all taken
/// (it is a node of /dev/full's device), and a policy declaring one vHBA on host1.
struct Lab {
    dir: tempfile::TempDir,
}

impl Lab {
    fn new() -> Lab {
        // Only `before/sys`, straight into the lab (0.2 s): removed with it, where
        // tests/common's unpacked capture stays behind in /tmp.
        let dir = tempfile::tempdir().unwrap();
        let archive = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/kernel-capture/kernel-capture-fcoe-scsi_debug.tar.gz");
        let status = Command::new("tar")
            .arg("xzf")
            .arg(&archive)
            .arg("-C")
            .arg(dir.path())
            .arg("./before/sys")
            .status()
            .unwrap();
        assert!(
            status.success(),
            "tar could not unpack {}",
            archive.display()
        );
        fs::rename(dir.path().join("before/sys"), dir.path().join("sys")).unwrap();
        fs::create_dir_all(dir.path().join("dev")).unwrap();
        fs::create_dir_all(dir.path().join("journal")).unwrap();
        let create = dir
            .path()
            .join("sys")
            .join(HOST1)
            .join("fc_host/host1/vport_create");
        fs::remove_file(&create).unwrap();
        // A node of its own, not a link to /dev/full: hbad writes through no link.
        let full = std::os::unix::fs::MetadataExt::rdev(&fs::metadata("/dev/full").unwrap());
        nix::sys::stat::mknod(
            &create,
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o600),
            full,
        )
        .unwrap();
        let lab = Lab { dir };
        // The state file in the lab: hbad records the vHBAs it marks, and a test
        // must not write the host's /var/lib/hbad.
        lab.policy(&format!(
            "[[vhba]]\nname = \"vm-a\"\nparent_wwpn = \"{HOST1_WWPN}\"\n\
             wwpn = \"{VHBA_WWPN}\"\nwwnn = \"{VHBA_WWNN}\"\n\
             [ownership]\nstate_file = \"{}\"\n",
            lab.path("state/owned-vhbas.json").display()
        ));
        lab
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn policy(&self, text: &str) {
        fs::write(self.path("hbad.toml"), text).unwrap();
    }

    /// Starts `hbad run` with `journal_dir` over /run/systemd/journal.
    /// `Err` says why it cannot run here (the test is then skipped).
    fn spawn(&self, journal_dir: &Path, extra: &[&str]) -> Result<Hbad, String> {
        let ns = PrivateMount::plan(journal_dir, JOURNAL_DIR)?;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hbad"));
        cmd.arg("--sysfs-root")
            .arg(self.path("sys"))
            .arg("--dev-root")
            .arg(self.path("dev"))
            .arg("--policy")
            .arg(self.path("hbad.toml"))
            .arg("run")
            .arg("--status-file")
            .arg(self.path("status.json"))
            .args(["--udev", "off"])
            .args(extra)
            // Nothing of the test's own environment reaches the agent: no systemd to
            // notify, no log level but the default.
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .env_remove("HBAD_SYSFS_ROOT")
            .env_remove("HBAD_DEV_ROOT")
            .env_remove("HBAD_POLICY")
            .env("HBAD_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // SAFETY: `enter` makes system calls only; it allocates nothing.
        unsafe {
            cmd.pre_exec(move || ns.enter());
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                return Err(format!("no private mount namespace here: {e}"))
            }
            Err(e) => panic!("cannot start hbad: {e}"),
        };
        let pipe = child.stderr.take().expect("piped stderr");
        let text = Arc::new(Mutex::new(String::new()));
        let (tx, lines) = mpsc::channel();
        let sink = text.clone();
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { return };
                sink.lock().unwrap().push_str(&format!("{line}\n"));
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Ok(Hbad { child, text, lines })
    }
}

struct Hbad {
    child: Child,
    text: Arc<Mutex<String>>,
    lines: Receiver<String>,
}

impl Hbad {
    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: a signal to our own child, which has not been reaped yet.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    }

    fn stderr(&self) -> String {
        self.text.lock().unwrap().clone()
    }

    /// Reads stderr until a line contains `what`.
    fn wait_for_line(&self, what: &str) -> String {
        let until = Instant::now() + PATIENCE;
        loop {
            match self
                .lines
                .recv_timeout(until.saturating_duration_since(Instant::now()))
            {
                Ok(line) if line.contains(what) => return line,
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                    panic!("no line with {what:?} on hbad's stderr:\n{}", self.stderr())
                }
            }
        }
    }

    fn wait(&mut self) -> ExitStatus {
        self.child.wait().unwrap()
    }
}

impl Drop for Hbad {
    fn drop(&mut self) {
        // A failed assertion must not leave an agent running.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Root is needed for the namespace and for the kernel uevent socket hbad opens.
fn skip_unless_root(test: &str) -> bool {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "{test}: skipped, needs root (a private mount namespace, the kernel uevent socket)"
        );
        return true;
    }
    false
}

fn is_vhba_failure(r: &Record) -> bool {
    r.message_id().as_deref() == Some(MessageId::VhbaCreateFailed.id())
}

fn is_policy_rejected(r: &Record) -> bool {
    r.message_id().as_deref() == Some(MessageId::PolicyRejected.id())
}

/// The `@FIELD@`s the catalog entry of `id` substitutes.
fn catalog_fields(id: &str) -> BTreeSet<String> {
    let header = format!("-- {id}\n");
    let start = CATALOG.find(&header).expect("in the catalog") + header.len();
    let entry = CATALOG[start..].split("\n-- ").next().unwrap_or_default();
    entry
        .split('@')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// The bad policy of the reload: invalid WWNs on lines 4 and 5, column 8 — two errors,
/// so that HBAD_REASON spans two lines.
fn bad_policy() -> String {
    format!(
        "[[vhba]]\nname = \"vm-a\"\nparent_wwpn = \"{HOST1_WWPN}\"\n\
         wwpn = \"0x5001a4a0000zzb01\"\nwwnn = \"0x5001a4a0000zzb00\"\n"
    )
}

// ---------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------

#[test]
fn hbad_run_sends_documented_records_to_the_journal() {
    if skip_unless_root("hbad_run_sends_documented_records_to_the_journal") {
        return;
    }
    let lab = Lab::new();
    let mut journal = Journal::bind(&lab.path("journal"));
    let mut hbad = match lab.spawn(&lab.path("journal"), &[]) {
        Ok(h) => h,
        Err(why) => {
            eprintln!("hbad_run_sends_documented_records_to_the_journal: skipped, {why}");
            return;
        }
    };

    // Boot: the vHBA's vport_create answers ENOSPC. This record comes from the event
    // loop, so SIGHUP is handled from here on.
    let failed = journal.wait_for(&mut hbad, "the vHBA failure", is_vhba_failure);
    assert_eq!(failed.field("PRIORITY"), "3", "{}", failed.show());
    assert_eq!(failed.field("HBAD_VHBA"), "vm-a");
    assert_eq!(failed.field("HBAD_WWPN"), VHBA_WWPN);
    assert_eq!(failed.field("HBAD_PARENT"), "host1");
    assert_eq!(failed.field("HBAD_ACTION"), "create");
    let reason = failed.field("HBAD_REASON");
    assert!(reason.contains("host1 has no free vport"), "{reason}");
    assert!(failed.field("MESSAGE").contains(&reason));

    // Reload with a policy that does not parse: rejected, the old one stays.
    lab.policy(&bad_policy());
    hbad.signal(libc::SIGHUP);
    let rejected = journal.wait_for(&mut hbad, "the policy rejection", is_policy_rejected);
    assert_eq!(rejected.field("PRIORITY"), "3", "{}", rejected.show());
    // Each error names file:line:column; they are on lines of their own, so the
    // value went in the binary form and came out whole.
    let reason = rejected.field("HBAD_REASON");
    let file = lab.path("hbad.toml").display().to_string();
    let lines: Vec<&str> = reason.lines().collect();
    assert_eq!(lines.len(), 2, "{reason:?}");
    assert!(
        lines[0].starts_with(&format!("{file}:4:8: `wwpn`")),
        "{reason}"
    );
    assert!(
        lines[1].starts_with(&format!("{file}:5:8: `wwnn`")),
        "{reason}"
    );
    assert!(lines.iter().all(|l| l.contains("is not a WWN")), "{reason}");
    assert!(rejected.field("MESSAGE").ends_with(&reason));
    assert!(!rejected.via_memfd);

    hbad.signal(libc::SIGTERM);
    let stopped = journal.wait_for(&mut hbad, "the stop", |r| {
        r.get("MESSAGE").as_deref() == Some("stopped")
    });
    assert!(hbad.wait().success(), "{}", hbad.stderr());
    // INFO is journald's Notice (5), the mapping tracing-journald had.
    assert_eq!(stopped.field("PRIORITY"), "5");

    // What every record carries.
    assert!(journal.probes >= 1, "hbad probes the socket first");
    let started = journal
        .records
        .iter()
        .find(|r| r.field("MESSAGE").contains(" started: "))
        .expect("a start record");
    assert!(
        started.field("MESSAGE").ends_with("logging to Journal"),
        "{}",
        started.show()
    );
    for r in &journal.records {
        assert_eq!(r.field("SYSLOG_IDENTIFIER"), "hbad", "{}", r.show());
        assert!(r.field("TARGET").starts_with("hbad"), "{}", r.show());
        assert!(r.field("CODE_FILE").ends_with(".rs"), "{}", r.show());
        assert!(r.field("CODE_LINE").parse::<u32>().is_ok(), "{}", r.show());
        let priority = r.field("PRIORITY");
        // hbad logs at error, warn and info; debug is off by default.
        assert!(["3", "4", "5"].contains(&priority.as_str()), "{}", r.show());
        for name in r.names() {
            assert!(
                STANDARD_FIELDS.contains(&name) || name.starts_with("HBAD_"),
                "{name} is neither a standard field nor HBAD_*: {}",
                r.show()
            );
            assert!(!name.starts_with("F_"), "{}", r.show());
        }
        // A catalog entry substitutes its @FIELD@s from the record: each must be there.
        if let Some(id) = r.message_id() {
            let known = MessageId::ALL.iter().any(|m| m.id() == id);
            assert!(known, "MESSAGE_ID {id} is not hbad's: {}", r.show());
            for f in catalog_fields(&id) {
                assert!(r.get(&f).is_some(), "catalog {id} wants {f}: {}", r.show());
            }
        }
    }
}

#[test]
fn a_record_too_large_for_a_datagram_comes_through_a_memfd() {
    if skip_unless_root("a_record_too_large_for_a_datagram_comes_through_a_memfd") {
        return;
    }
    let lab = Lab::new();
    let mut journal = Journal::bind(&lab.path("journal"));
    let mut hbad = match lab.spawn(&lab.path("journal"), &[]) {
        Ok(h) => h,
        Err(why) => {
            eprintln!("a_record_too_large_for_a_datagram_comes_through_a_memfd: skipped, {why}");
            return;
        }
    };
    journal.wait_for(&mut hbad, "the vHBA failure", is_vhba_failure);
    // Echoed values are cut short and errors stop at 100, but file names are shown
    // whole: the policy becomes a directory of 101 drop-ins whose 250-byte names are
    // control characters (each shown as a 5-byte escape), each with a key given
    // twice (its name twice in the error). MESSAGE and HBAD_REASON hold over 250 kB
    // each, more than a datagram can (the sender's SO_SNDBUF, 208 kB by default).
    let main = fs::read_to_string(lab.path("hbad.toml")).unwrap();
    fs::remove_file(lab.path("hbad.toml")).unwrap();
    let dropins = lab.path("hbad.toml/hbad.d");
    fs::create_dir_all(&dropins).unwrap();
    fs::write(lab.path("hbad.toml/hbad.toml"), main).unwrap();
    for i in 0..101 {
        let name = format!("{i:03}{}.toml", "\u{1}".repeat(245));
        fs::write(dropins.join(name), "[rescan]\nlip = true\nlip = true\n").unwrap();
    }
    hbad.signal(libc::SIGHUP);
    let rejected = journal.wait_for(&mut hbad, "the policy rejection", is_policy_rejected);
    assert!(rejected.via_memfd, "{}", rejected.show());
    let reason = rejected.field("HBAD_REASON");
    assert!(reason.len() > 250_000, "{} bytes", reason.len());
    assert!(
        reason.ends_with(
            "... and 1 more error\n  hint: hbad shows the first 100; fix these and run hbad check again"
        ),
        "the record is whole"
    );
    assert!(rejected.field("MESSAGE").ends_with(&reason));
    assert_eq!(rejected.field("SYSLOG_IDENTIFIER"), "hbad");
    hbad.signal(libc::SIGTERM);
    journal.wait_for(&mut hbad, "the stop", |r| {
        r.get("MESSAGE").as_deref() == Some("stopped")
    });
    assert!(hbad.wait().success());
}

/// How the journal is missing, or refused.
#[derive(Clone, Copy, Debug)]
enum NoJournal {
    /// No socket at all (a container, a system without systemd).
    NoSocket,
    /// A socket nobody reads (journald stopped): sending to it is refused.
    DeadSocket,
    /// journald is there, but `hbad run --no-journal` was asked for.
    Declined,
}

/// Without journald, or with `--no-journal`, the records go to stderr, message ids and
/// fields included, and nothing reaches the journal socket.
#[test]
fn without_journald_hbad_logs_to_stderr() {
    if skip_unless_root("without_journald_hbad_logs_to_stderr") {
        return;
    }
    for case in [
        NoJournal::NoSocket,
        NoJournal::DeadSocket,
        NoJournal::Declined,
    ] {
        let lab = Lab::new();
        let mut listener = None;
        match case {
            NoJournal::NoSocket => {}
            NoJournal::DeadSocket => drop(UnixDatagram::bind(lab.path("journal/socket")).unwrap()),
            NoJournal::Declined => listener = Some(Journal::bind(&lab.path("journal"))),
        }
        let extra: &[&str] = match case {
            NoJournal::Declined => &["--no-journal"],
            _ => &[],
        };
        let mut hbad = match lab.spawn(&lab.path("journal"), extra) {
            Ok(h) => h,
            Err(why) => {
                eprintln!("without_journald_hbad_logs_to_stderr: skipped, {why}");
                return;
            }
        };
        hbad.wait_for_line("logging to Stderr");
        let failed = hbad.wait_for_line("vHBA vm-a not created on host1");
        assert!(
            failed.contains(&format!("message_id={}", MessageId::VhbaCreateFailed)),
            "{case:?}: {failed}"
        );
        assert!(failed.contains("ERROR"), "{case:?}: {failed}");
        assert!(
            failed.contains("hbad_wwpn=0x5001a4a000000b01"),
            "{case:?}: {failed}"
        );
        lab.policy(&bad_policy());
        hbad.signal(libc::SIGHUP);
        hbad.wait_for_line("policy rejected, the previous policy stays in force");
        // The message has the errors on lines of their own; the fields follow its end.
        let rejected = hbad.wait_for_line("message_id=");
        assert!(
            rejected.contains(&format!("message_id={}", MessageId::PolicyRejected)),
            "{case:?}: {rejected}"
        );
        assert!(rejected.contains("hbad_reason="), "{case:?}: {rejected}");
        hbad.signal(libc::SIGTERM);
        hbad.wait_for_line("stopped");
        assert!(hbad.wait().success(), "{case:?}: {}", hbad.stderr());
        if let Some(journal) = listener {
            // hbad has exited: anything it sent is queued by now. Not even the probe.
            assert_eq!(
                journal.pending(),
                0,
                "--no-journal still wrote to the journal"
            );
        }
    }
}

// ---------------------------------------------------------------------------------
// The machine's own systemd-journald
// ---------------------------------------------------------------------------------

/// journald's configuration for the test: nothing from or to the machine's kernel log,
/// syslog, console or terminals, and only the volatile journal under the test's /run.
const JOURNALD_CONF: &str = "[Journal]\nStorage=volatile\nReadKMsg=no\nForwardToSyslog=no\n\
                             ForwardToKMsg=no\nForwardToConsole=no\nForwardToWall=no\n";

/// A real systemd-journald whose /run is the test's directory `root/run`: its sockets,
/// its journal files and its configuration drop-in are the test's, and
/// `journalctl --root` reads them together with the catalog the test installed.
struct Journald {
    child: Child,
    root: PathBuf,
    log: PathBuf,
}

impl Journald {
    /// `Err` says why there is no journald to run here.
    fn start(lab: &Lab) -> Result<Journald, String> {
        let binary = [
            "/usr/lib/systemd/systemd-journald",
            "/lib/systemd/systemd-journald",
        ]
        .into_iter()
        .map(Path::new)
        .find(|p| p.exists())
        .ok_or("no systemd-journald on this machine")?;
        if Command::new("journalctl")
            .arg("--version")
            .output()
            .is_err()
        {
            return Err("no journalctl on this machine".into());
        }
        let root = lab.path("root");
        for d in [
            "run/systemd/journal",
            "run/systemd/journald.conf.d",
            "run/log/journal",
            "usr/lib/systemd/catalog",
            "var/lib/systemd/catalog",
        ] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        fs::write(
            root.join("run/systemd/journald.conf.d/hbad-test.conf"),
            JOURNALD_CONF,
        )
        .unwrap();
        // The catalog as the package installs it, compiled by journalctl's own parser.
        fs::write(root.join("usr/lib/systemd/catalog/hbad.catalog"), CATALOG).unwrap();
        let update = Command::new("journalctl")
            .arg("--root")
            .arg(&root)
            .arg("--update-catalog")
            .output()
            .unwrap();
        assert!(
            update.status.success(),
            "journalctl --update-catalog: {}",
            String::from_utf8_lossy(&update.stderr)
        );

        // journald says READY=1 once its sockets are bound: no guessing when it listens.
        let notify_path = lab.path("journald-notify");
        let notify = UnixDatagram::bind(&notify_path).unwrap();
        notify.set_read_timeout(Some(PATIENCE)).unwrap();
        let ns = PrivateMount::plan(&root.join("run"), "/run")?;
        let log = lab.path("journald.log");
        let mut cmd = Command::new(binary);
        cmd.env("NOTIFY_SOCKET", &notify_path)
            // Its own messages to stderr (our log file), never to /dev/kmsg.
            .env("SYSTEMD_LOG_TARGET", "console")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap());
        // SAFETY: `enter` makes system calls only; it allocates nothing.
        unsafe {
            cmd.pre_exec(move || ns.enter());
        }
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                return Err(format!("no private mount namespace here: {e}"))
            }
            Err(e) => panic!("cannot start {}: {e}", binary.display()),
        };
        let journald = Journald { child, root, log };
        let mut buf = [0u8; 4096];
        loop {
            match notify.recv(&mut buf) {
                Ok(n) if buf[..n].split(|&b| b == b'\n').any(|l| l == b"READY=1") => {
                    return Ok(journald)
                }
                Ok(_) => {}
                Err(e) => panic!("journald never said READY=1 ({e}):\n{}", journald.log()),
            }
        }
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn journalctl(&self) -> Command {
        let mut cmd = Command::new("journalctl");
        cmd.arg("--root").arg(&self.root).arg("--no-pager");
        cmd
    }

    /// Entries matching `matches`, as `journalctl -o json` gives them.
    fn query(&self, matches: &[&str]) -> Vec<serde_json::Value> {
        let out = self
            .journalctl()
            .args(["-o", "json"])
            .args(matches)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "journalctl {matches:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Follows hbad's entries as journald stores them (journalctl -f: inotify).
    fn follow(&self) -> Follow {
        let mut child = self
            .journalctl()
            .args(["-f", "-n", "all", "-o", "json", "SYSLOG_IDENTIFIER=hbad"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().expect("piped");
        let (tx, entries) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                    return;
                };
                if tx.send(v).is_err() {
                    return;
                }
            }
        });
        Follow { child, entries }
    }
}

impl Drop for Journald {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Follow {
    child: Child,
    entries: Receiver<serde_json::Value>,
}

impl Follow {
    fn wait_for(
        &self,
        hbad: &Hbad,
        journald: &Journald,
        what: &str,
        want: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let until = Instant::now() + PATIENCE;
        loop {
            match self
                .entries
                .recv_timeout(until.saturating_duration_since(Instant::now()))
            {
                Ok(e) if want(&e) => return e,
                Ok(_) => {}
                Err(e) => panic!(
                    "waiting for {what} in the journal: {e}\nhbad's stderr:\n{}\njournald:\n{}",
                    hbad.stderr(),
                    journald.log()
                ),
            }
        }
    }
}

impl Drop for Follow {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A field of a `journalctl -o json` entry: a string, or an array of bytes for values
/// journalctl does not print as text.
fn entry_field(entry: &serde_json::Value, name: &str) -> Option<String> {
    match entry.get(name)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(bytes) => {
            let bytes: Option<Vec<u8>> = bytes
                .iter()
                .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                .collect();
            bytes.map(|b| String::from_utf8_lossy(&b).into_owned())
        }
        _ => None,
    }
}

fn entry_has_id(entry: &serde_json::Value, id: MessageId) -> bool {
    entry_field(entry, "MESSAGE_ID").as_deref() == Some(id.id())
}

/// The real journald takes hbad's records whole, finds them by the fields the catalog
/// and the documentation tell administrators to query, and `journalctl -x` explains
/// them with the catalog, its @FIELD@s filled from the record.
#[test]
fn journald_stores_hbad_records_and_the_catalog_explains_them() {
    const TEST: &str = "journald_stores_hbad_records_and_the_catalog_explains_them";
    if skip_unless_root(TEST) {
        return;
    }
    let lab = Lab::new();
    let journald = match Journald::start(&lab) {
        Ok(j) => j,
        Err(why) => {
            eprintln!("{TEST}: skipped, {why}");
            return;
        }
    };
    let follow = journald.follow();
    let mut hbad = lab
        .spawn(&lab.path("root/run/systemd/journal"), &[])
        .unwrap_or_else(|why| panic!("journald ran but hbad cannot: {why}"));
    let pid = hbad.child.id().to_string();

    let failed = follow.wait_for(&hbad, &journald, "the vHBA failure", |e| {
        entry_has_id(e, MessageId::VhbaCreateFailed)
    });
    // Trusted fields, set by journald itself: hbad's process, the native protocol.
    assert_eq!(entry_field(&failed, "_PID").as_deref(), Some(pid.as_str()));
    assert_eq!(
        entry_field(&failed, "_TRANSPORT").as_deref(),
        Some("journal")
    );
    assert_eq!(entry_field(&failed, "PRIORITY").as_deref(), Some("3"));
    assert_eq!(entry_field(&failed, "HBAD_VHBA").as_deref(), Some("vm-a"));

    lab.policy(&bad_policy());
    hbad.signal(libc::SIGHUP);
    let rejected = follow.wait_for(&hbad, &journald, "the policy rejection", |e| {
        entry_has_id(e, MessageId::PolicyRejected)
    });
    let reason = entry_field(&rejected, "HBAD_REASON").expect("HBAD_REASON");
    let file = lab.path("hbad.toml").display().to_string();
    assert_eq!(reason.lines().count(), 2, "{reason:?}");
    assert!(reason.starts_with(&format!("{file}:4:8: ")), "{reason}");
    assert!(reason.contains(&format!("\n{file}:5:8: ")), "{reason}");
    hbad.signal(libc::SIGTERM);
    follow.wait_for(&hbad, &journald, "the stop", |e| {
        entry_field(e, "MESSAGE").as_deref() == Some("stopped")
    });
    assert!(hbad.wait().success(), "{}", hbad.stderr());

    // The queries the module documentation and the catalog promise.
    let by_wwpn = journald.query(&[&format!("HBAD_WWPN={VHBA_WWPN}")]);
    assert!(!by_wwpn.is_empty());
    assert!(by_wwpn
        .iter()
        .all(|e| entry_has_id(e, MessageId::VhbaCreateFailed)));
    let by_id = journald.query(&[&format!("MESSAGE_ID={}", MessageId::PolicyRejected)]);
    assert_eq!(by_id.len(), 1);
    let by_tag = journald.query(&["-t", "hbad", "-p", "err"]);
    assert!(
        by_tag.len() >= 2,
        "the failure and the rejection are errors"
    );

    // journalctl -x reads the catalog database under the machine's
    // /var/lib/systemd/catalog: it runs in a namespace where that is the test's.
    let catalog = PrivateMount::plan(
        &journald.root.join("var/lib/systemd/catalog"),
        "/var/lib/systemd/catalog",
    )
    .expect("a namespace worked for journald");
    let mut explain = journald.journalctl();
    explain.args(["-x", "-o", "short", "SYSLOG_IDENTIFIER=hbad"]);
    // SAFETY: `enter` makes system calls only; it allocates nothing.
    unsafe {
        explain.pre_exec(move || catalog.enter());
    }
    let out = explain.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("Subject: vHBA vm-a could not be created"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "The kernel refused to create the vHBA vm-a (WWPN {VHBA_WWPN}) on"
        )),
        "{text}"
    );
    assert!(
        text.contains("Subject: Policy rejected; the previous policy stays in force"),
        "{text}"
    );
    assert!(
        text.contains(&format!("the files contain errors: {file}:4:8: ")),
        "{text}"
    );
    // journalctl writes a field the record lacks as its bare name: "(HBAD_REASON)".
    assert!(
        !text.contains("HBAD_"),
        "a catalog field the record lacks:\n{text}"
    );
}

#[test]
fn the_decoder_reads_both_field_forms() {
    let mut payload = b"PRIORITY=3\nMESSAGE\n".to_vec();
    payload.extend_from_slice(&11u64.to_le_bytes());
    payload.extend_from_slice(b"two\nlines=x\n");
    payload.extend_from_slice(b"HBAD_LUN=1,2\nEMPTY=\n");
    let r = decode(&payload).unwrap();
    assert_eq!(r.field("PRIORITY"), "3");
    assert_eq!(r.field("MESSAGE"), "two\nlines=x");
    assert_eq!(r.field("HBAD_LUN"), "1,2");
    assert_eq!(r.field("EMPTY"), "");
    assert_eq!(r.fields.len(), 4);
    // A text value may hold '=': only the first splits.
    assert_eq!(decode(b"A=b=c\n").unwrap().field("A"), "b=c");
    assert!(decode(b"").unwrap().fields.is_empty());
}

#[test]
fn the_decoder_rejects_what_journald_would_not_take() {
    assert_eq!(
        decode(b"A=1\nB=2").unwrap_err(),
        DecodeError::UnterminatedName { offset: 4 }
    );
    assert_eq!(
        decode(b"A=1\n\nB=2\n").unwrap_err(),
        DecodeError::EmptyLine { offset: 4 }
    );
    for bad in ["f_x=1\n", "_PID=1\n", "1A=1\n", "A-B=1\n", "=1\n"] {
        assert!(
            matches!(decode(bad.as_bytes()), Err(DecodeError::BadName { .. })),
            "{bad:?}"
        );
    }
    let long = format!("{}=1\n", "A".repeat(65));
    assert!(matches!(
        decode(long.as_bytes()),
        Err(DecodeError::BadName { .. })
    ));
    let mut short_len = b"M\n".to_vec();
    short_len.extend_from_slice(&[5, 0, 0]);
    assert_eq!(
        decode(&short_len).unwrap_err(),
        DecodeError::ShortLength { name: "M".into() }
    );
    let mut short_value = b"M\n".to_vec();
    short_value.extend_from_slice(&10u64.to_le_bytes());
    short_value.extend_from_slice(b"abc\n");
    assert_eq!(
        decode(&short_value).unwrap_err(),
        DecodeError::ShortValue {
            name: "M".into(),
            declared: 10,
            left: 4
        }
    );
    let mut huge = b"M\n".to_vec();
    huge.extend_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(decode(&huge), Err(DecodeError::ShortValue { .. })));
    let mut unterminated = b"M\n".to_vec();
    unterminated.extend_from_slice(&3u64.to_le_bytes());
    unterminated.extend_from_slice(b"abcX");
    assert_eq!(
        decode(&unterminated).unwrap_err(),
        DecodeError::NoTerminator { name: "M".into() }
    );
}

#[test]
fn every_message_id_has_a_catalog_entry_with_fields() {
    // The catalog parser the live test relies on finds the entries' fields.
    assert_eq!(
        catalog_fields(MessageId::VhbaCreateFailed.id()),
        ["HBAD_PARENT", "HBAD_REASON", "HBAD_VHBA", "HBAD_WWPN"]
            .map(String::from)
            .into()
    );
    assert_eq!(
        catalog_fields(MessageId::PolicyRejected.id()),
        ["HBAD_REASON".to_string()].into()
    );
    assert!(catalog_fields(MessageId::EventsLostResynced.id()).is_empty());
}
