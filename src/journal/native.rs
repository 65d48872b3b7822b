//! journald's native protocol (<https://systemd.io/JOURNAL_NATIVE_PROTOCOL/>) over a
//! datagram socket that never blocks the thread that logs.
//!
//! Each event is one datagram of fields: `NAME=value\n`, or, for a value holding a
//! newline, `NAME\n` + its length as a little-endian u64 + the value + `\n`. A record
//! too large for a datagram (EMSGSIZE, ENOBUFS) goes as a sealed memfd passed with
//! SCM_RIGHTS, as journald's protocol describes. Every send is `MSG_DONTWAIT` on a
//! `SOCK_NONBLOCK` socket: when journald is stalled and its queue is full the send
//! fails with EAGAIN at once, and the record is dropped and counted instead of the event
//! loop waiting for journald. The next record that gets through is preceded by a
//! warning record, `n log records dropped: journald did not take them`, with the count
//! in `HBAD_LOG_DROPPED` (`journalctl -u hbad HBAD_LOG_DROPPED` finds every loss).
//!
//! A record is bounded while it is built, never after: a value stops at
//! [`MAX_VALUE`] bytes and the whole record at [`MAX_RECORD`], the cut value ending
//! with [`CUT`]. Formatting a value stops at its bound too (the writer refuses the
//! rest), so no event allocates more than the bound.
//!
//! The fields are the ones tracing-journald sent, which the catalog, the documentation
//! and tests/journal.rs rely on: `PRIORITY` (ERROR 3, WARN 4, INFO 5, DEBUG 6, TRACE 7),
//! `SYSLOG_IDENTIFIER`, `TARGET`, `CODE_FILE`, `CODE_LINE`, `MESSAGE` for the event's
//! message, and each other field under its own name upper-cased (`hbad_wwpn` becomes
//! `HBAD_WWPN`, `message_id` `MESSAGE_ID`; `.` becomes `_`, leading `_` and characters
//! journald does not take are left out). Spans are not recorded: hbad opens none.

use std::fmt::{self, Write as _};
use std::fs::File;
use std::io::{self, IoSlice, Write as _};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use nix::errno::Errno;
use nix::sys::socket::{
    sendmsg, sendto, socket, AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType, UnixAddr,
};
use rustix::fs::{MemfdFlags, SealFlags};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;

/// Where journald listens for native records.
pub const SOCKET: &str = "/run/systemd/journal/socket";
/// The most one record may hold, names and framing included. Far below what journald
/// takes through a memfd (hundreds of MiB) and above hbad's largest record, a policy
/// rejected with 100 errors naming long file names (about 520 KiB).
pub const MAX_RECORD: usize = 1 << 20;
/// The most one field's value may hold: a huge MESSAGE leaves room for the fields after.
pub const MAX_VALUE: usize = 512 << 10;
/// What ends a value cut at its bound.
pub const CUT: &str = " [cut by hbad: a value is bounded to 512 KiB, a record to 1 MiB]";
/// The longest field name journald takes.
const MAX_NAME: usize = 64;

/// The tracing layer that sends each event to journald as one record. Clones share
/// the socket and the count of dropped records: one is the subscriber's, one is kept to
/// report the count at exit.
#[derive(Clone, Debug)]
pub struct JournalLayer(Arc<Journal>);

#[derive(Debug)]
struct Journal {
    socket: OwnedFd,
    to: UnixAddr,
    identifier: &'static str,
    /// Records journald did not take that no record has reported yet.
    dropped: AtomicU64,
    /// Records journald did not take since the layer was opened: for the agent's
    /// status and metrics.
    dropped_total: AtomicU64,
}

impl JournalLayer {
    /// A layer sending to the socket at `path`, once an empty datagram (which journald
    /// discards) shows that something listens there. A listener whose queue is full
    /// (EAGAIN) is there: its records are dropped until it reads again.
    pub fn open(path: &Path, identifier: &'static str) -> io::Result<JournalLayer> {
        let to = UnixAddr::new(path)?;
        let socket = socket(
            AddressFamily::Unix,
            SockType::Datagram,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            None,
        )?;
        let layer = JournalLayer(Arc::new(Journal {
            socket,
            to,
            identifier,
            dropped: AtomicU64::new(0),
            dropped_total: AtomicU64::new(0),
        }));
        match layer.send(&[]) {
            Ok(()) | Err(Errno::EAGAIN) => Ok(layer),
            Err(e) => Err(e.into()),
        }
    }

    /// Records dropped and not reported yet.
    #[cfg(test)]
    pub fn dropped(&self) -> u64 {
        self.0.dropped.load(Ordering::Relaxed)
    }

    /// Records dropped since the layer was opened, reported or not.
    pub fn dropped_total(&self) -> u64 {
        self.0.dropped_total.load(Ordering::Relaxed)
    }

    /// Sends one record without waiting: a datagram, or a memfd when it is too large
    /// for one.
    fn send(&self, payload: &[u8]) -> Result<(), Errno> {
        let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL;
        let fd = self.0.socket.as_raw_fd();
        match sendto(fd, payload, &self.0.to, flags) {
            Ok(_) => Ok(()),
            // ENOBUFS: the kernel could not allocate a datagram that large (sd-journal
            // takes the memfd road for it too).
            Err(Errno::EMSGSIZE | Errno::ENOBUFS) => {
                let memfd = sealed_memfd(payload)
                    .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
                let fds = [memfd.as_raw_fd()];
                let no_data: [IoSlice<'_>; 0] = [];
                let rights = [ControlMessage::ScmRights(&fds)];
                sendmsg(fd, &no_data, &rights, flags, Some(&self.0.to)).map(drop)
            }
            Err(e) => Err(e),
        }
    }

    /// Sends `payload`; a failure is counted. Before it, the count of records dropped
    /// so far, when there are any and journald takes the report.
    fn deliver(&self, payload: &[u8]) {
        self.report_dropped();
        if self.send(payload).is_err() {
            self.0.dropped.fetch_add(1, Ordering::Relaxed);
            self.0.dropped_total.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Sends the warning record for the records dropped so far, if any: true when there
    /// were none or journald took it. Otherwise the count stays for the next record.
    pub fn report_dropped(&self) -> bool {
        let n = self.0.dropped.swap(0, Ordering::Relaxed);
        if n == 0 {
            return true;
        }
        if self.send(&dropped_record(self.0.identifier, n)).is_ok() {
            return true;
        }
        self.0.dropped.fetch_add(n, Ordering::Relaxed);
        false
    }
}

/// `payload` in a memfd journald may map: sealed against any change.
fn sealed_memfd(payload: &[u8]) -> io::Result<OwnedFd> {
    let fd = rustix::fs::memfd_create(
        c"hbad-journal",
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )?;
    let mut file = File::from(fd);
    file.write_all(payload)?;
    rustix::fs::fcntl_add_seals(
        &file,
        SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE | SealFlags::SEAL,
    )?;
    Ok(file.into())
}

/// The warning that `n` records were lost, itself a record like any other.
fn dropped_record(identifier: &str, n: u64) -> Vec<u8> {
    let mut r = Record::new();
    r.field("PRIORITY", priority(Level::WARN));
    r.field("SYSLOG_IDENTIFIER", identifier);
    r.field("TARGET", module_path!());
    r.field("CODE_FILE", file!());
    r.field_fmt("CODE_LINE", format_args!("{}", line!()));
    r.field_fmt(
        "MESSAGE",
        format_args!("{n} log records dropped: journald did not take them"),
    );
    r.field_fmt("HBAD_LOG_DROPPED", format_args!("{n}"));
    r.into_bytes()
}

/// tracing-journald's mapping, which the documentation's `journalctl -p` rely on.
fn priority(level: Level) -> &'static str {
    match level {
        Level::ERROR => "3",
        Level::WARN => "4",
        Level::INFO => "5",
        Level::DEBUG => "6",
        Level::TRACE => "7",
    }
}

impl<S: Subscriber> tracing_subscriber::Layer<S> for JournalLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        let mut r = Record::new();
        r.field("PRIORITY", priority(*meta.level()));
        r.field("SYSLOG_IDENTIFIER", self.0.identifier);
        r.field("TARGET", meta.target());
        if let Some(file) = meta.file() {
            r.field("CODE_FILE", file);
        }
        if let Some(line) = meta.line() {
            r.field_fmt("CODE_LINE", format_args!("{line}"));
        }
        event.record(&mut r);
        self.deliver(&r.into_bytes());
    }
}

/// One record being built, never past [`MAX_RECORD`].
#[derive(Debug, Default)]
pub struct Record {
    buf: Vec<u8>,
}

impl Record {
    pub fn new() -> Record {
        Record::default()
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    pub fn field(&mut self, name: &str, value: &str) {
        self.field_with(name, |v| v.write_str(value));
    }

    pub fn field_fmt(&mut self, name: &str, value: fmt::Arguments<'_>) {
        self.field_with(name, |v| v.write_fmt(value));
    }

    /// Appends the field `name` (as journald spells it), its value written by `write`
    /// up to its bound. A name journald would not take, or one for which the record
    /// has no room left, leaves the record as it was.
    fn field_with(&mut self, name: &str, write: impl FnOnce(&mut Value<'_>) -> fmt::Result) {
        let start = self.buf.len();
        self.buf.extend(journal_name(name));
        let name_len = self.buf.len() - start;
        // Framing: the newline after the name, the length, the final newline.
        let framing = name_len + 1 + 8 + 1;
        let left = MAX_RECORD.saturating_sub(start + framing + CUT.len());
        if name_len == 0 || name_len > MAX_NAME || self.buf[start].is_ascii_digit() || left == 0 {
            self.buf.truncate(start);
            return;
        }
        let name_end = self.buf.len();
        self.buf.push(b'\n');
        self.buf.extend_from_slice(&[0; 8]);
        let value_start = self.buf.len();
        let mut value = Value {
            buf: &mut self.buf,
            room: left.min(MAX_VALUE),
            cut: false,
        };
        // An error is the value reaching its bound (or a Debug impl failing): what was
        // written stays.
        let _ = write(&mut value);
        if value.cut {
            self.buf.extend_from_slice(CUT.as_bytes());
        }
        let len = self.buf.len() - value_start;
        if self.buf[value_start..].contains(&b'\n') {
            self.buf[name_end + 1..value_start].copy_from_slice(&(len as u64).to_le_bytes());
        } else {
            // No newline: the plain `NAME=value` form, as journalctl -o export shows it.
            self.buf[name_end] = b'=';
            self.buf.copy_within(value_start.., name_end + 1);
            self.buf.truncate(name_end + 1 + len);
        }
        self.buf.push(b'\n');
    }
}

/// A field name as journald takes it, in tracing-journald's spelling: `.` as `_`,
/// leading `_` left out (they mark the fields journald itself sets), then only ASCII
/// letters, digits and `_`, upper-cased.
fn journal_name(name: &str) -> impl Iterator<Item = u8> + '_ {
    name.bytes()
        .map(|c| if c == b'.' { b'_' } else { c })
        .skip_while(|&c| c == b'_')
        .filter(|c| c.is_ascii_alphanumeric() || *c == b'_')
        .map(|c| c.to_ascii_uppercase())
}

/// A value being written into its record, refusing what passes its room.
struct Value<'a> {
    buf: &'a mut Vec<u8>,
    room: usize,
    cut: bool,
}

impl fmt::Write for Value<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if s.len() <= self.room {
            self.buf.extend_from_slice(s.as_bytes());
            self.room -= s.len();
            return Ok(());
        }
        let mut n = self.room;
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        self.buf.extend_from_slice(&s.as_bytes()[..n]);
        self.room = 0;
        self.cut = true;
        // Stops the formatting: nothing more would be kept.
        Err(fmt::Error)
    }
}

impl Visit for Record {
    fn record_str(&mut self, field: &Field, value: &str) {
        if !field.name().starts_with("log.") {
            self.field(field.name(), value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `log.target`, `log.file`...: what tracing-log adds to a `log` crate record,
        // not hbad's fields.
        if !field.name().starts_with("log.") {
            self.field_fmt(field.name(), format_args!("{value:?}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixDatagram;
    use std::sync::mpsc;
    use std::thread;
    use std::time::Duration;

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// A guard against a logging call that blocks, never a measurement: the send
    /// returns as soon as it is done.
    const PATIENCE: Duration = Duration::from_secs(60);

    fn record(fill: impl FnOnce(&mut Record)) -> Vec<u8> {
        let mut r = Record::new();
        fill(&mut r);
        r.into_bytes()
    }

    /// The fields of a record, as journald splits it.
    fn fields(mut payload: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        while !payload.is_empty() {
            let eol = payload.iter().position(|&b| b == b'\n').expect("a line");
            let line = &payload[..eol];
            if let Some(eq) = line.iter().position(|&b| b == b'=') {
                let name = String::from_utf8(line[..eq].to_vec()).unwrap();
                out.push((name, line[eq + 1..].to_vec()));
                payload = &payload[eol + 1..];
            } else {
                let name = String::from_utf8(line.to_vec()).unwrap();
                let rest = &payload[eol + 1..];
                let len = u64::from_le_bytes(rest[..8].try_into().unwrap());
                let len = usize::try_from(len).unwrap();
                out.push((name, rest[8..8 + len].to_vec()));
                assert_eq!(rest[8 + len], b'\n', "binary value not closed");
                payload = &rest[8 + len + 1..];
            }
        }
        out
    }

    fn value(payload: &[u8], name: &str) -> String {
        let fields = fields(payload);
        let mut found = fields.iter().filter(|(n, _)| n == name);
        let (_, v) = found.next().unwrap_or_else(|| panic!("no {name}"));
        assert!(found.next().is_none(), "{name} twice");
        String::from_utf8(v.clone()).unwrap()
    }

    #[test]
    fn a_value_without_newline_is_one_line_and_one_with_is_length_prefixed() {
        let r = record(|r| {
            r.field("PRIORITY", "3");
            r.field("HBAD_REASON", "a.toml:4:8: x\na.toml:5:8: y");
            r.field("EMPTY", "");
        });
        let mut want = b"PRIORITY=3\nHBAD_REASON\n".to_vec();
        want.extend_from_slice(&27u64.to_le_bytes());
        want.extend_from_slice(b"a.toml:4:8: x\na.toml:5:8: y\nEMPTY=\n");
        assert_eq!(r, want);
    }

    #[test]
    fn field_names_are_spelled_as_tracing_journald_spelled_them() {
        let r = record(|r| {
            r.field("message", "m");
            r.field("message_id", "id");
            r.field("hbad_wwpn", "0x1");
            r.field("log.target", "t");
            r.field("__lead", "l");
            r.field("a-b", "ab");
        });
        assert_eq!(
            r,
            b"MESSAGE=m\nMESSAGE_ID=id\nHBAD_WWPN=0x1\nLOG_TARGET=t\nLEAD=l\nAB=ab\n"
        );
    }

    #[test]
    fn names_journald_would_not_take_are_left_out() {
        let long = "A".repeat(MAX_NAME + 1);
        let r = record(|r| {
            r.field("1abc", "digit first");
            r.field("-", "nothing left");
            r.field(&long, "too long");
            r.field("OK", "kept");
        });
        assert_eq!(r, b"OK=kept\n");
    }

    #[test]
    fn a_value_stops_at_its_bound_and_the_record_at_its_own() {
        let huge = "é".repeat(MAX_VALUE);
        let r = record(|r| {
            r.field("MESSAGE", &huge);
            r.field("HBAD_REASON", &huge);
            r.field("HBAD_VHBA", &huge);
            r.field("HBAD_HOST", "host1");
        });
        assert!(r.len() <= MAX_RECORD, "{} bytes", r.len());
        let message = value(&r, "MESSAGE");
        assert!(message.ends_with(CUT));
        assert!(message.len() <= MAX_VALUE + CUT.len());
        // Cut on a character boundary: still UTF-8 (value() checks), nothing but é.
        assert!(message.trim_end_matches(CUT).chars().all(|c| c == 'é'));
        assert!(value(&r, "HBAD_REASON").ends_with(CUT));
        // The record's bound leaves no room for more.
        let names: Vec<String> = fields(&r).into_iter().map(|(n, _)| n).collect();
        assert!(!names.contains(&"HBAD_HOST".to_string()), "{names:?}");
        // A formatted value stops too: what it wrote up to its bound stays, and the
        // formatting is told to stop there.
        let endless = Endless(std::cell::Cell::new(0));
        let r = record(|r| r.field_fmt("HBAD_LUN", format_args!("{endless}")));
        let lun = value(&r, "HBAD_LUN");
        assert_eq!(lun.len(), MAX_VALUE + CUT.len());
        assert_eq!(endless.0.get(), MAX_VALUE / 1024 + 1);
    }

    /// A value that writes 1 KiB pieces until its writer refuses one, counting them.
    struct Endless(std::cell::Cell<usize>);

    impl fmt::Display for Endless {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let piece = "y".repeat(1024);
            loop {
                self.0.set(self.0.get() + 1);
                f.write_str(&piece)?;
            }
        }
    }

    /// A listener in a temporary directory, and a layer sending to it.
    fn listener() -> (tempfile::TempDir, UnixDatagram, JournalLayer) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("socket");
        let sock = UnixDatagram::bind(&path).unwrap();
        let layer = JournalLayer::open(&path, "hbad").unwrap();
        let mut probe = [0u8; 16];
        assert_eq!(sock.recv(&mut probe).unwrap(), 0, "the probe is empty");
        (dir, sock, layer)
    }

    fn recv(sock: &UnixDatagram) -> Vec<u8> {
        let mut buf = vec![0u8; 2 * MAX_RECORD];
        let n = sock.recv(&mut buf).unwrap();
        buf.truncate(n);
        buf
    }

    #[test]
    fn an_event_becomes_the_record_journald_is_documented_to_hold() {
        let (_dir, sock, layer) = listener();
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!(
                message_id = "ef111ce3151541e9b70c300945904c18",
                hbad_wwpn = "0x5001a4a000000b01",
                hbad_lun = 7u64,
                hbad_reason = %"one\ntwo",
                "vHBA {} not created", "vm-a"
            );
        });
        let r = recv(&sock);
        assert_eq!(value(&r, "PRIORITY"), "3");
        assert_eq!(value(&r, "SYSLOG_IDENTIFIER"), "hbad");
        assert_eq!(value(&r, "TARGET"), module_path!());
        assert_eq!(value(&r, "CODE_FILE"), file!());
        assert!(value(&r, "CODE_LINE").parse::<u32>().is_ok());
        assert_eq!(value(&r, "MESSAGE"), "vHBA vm-a not created");
        assert_eq!(value(&r, "MESSAGE_ID"), "ef111ce3151541e9b70c300945904c18");
        assert_eq!(value(&r, "HBAD_WWPN"), "0x5001a4a000000b01");
        assert_eq!(value(&r, "HBAD_LUN"), "7");
        assert_eq!(value(&r, "HBAD_REASON"), "one\ntwo");
        assert_eq!(fields(&r).len(), 10);
    }

    #[test]
    fn a_record_larger_than_a_datagram_goes_as_a_sealed_memfd() {
        let (_dir, sock, layer) = listener();
        // Larger than the socket's send buffer: sendto says EMSGSIZE.
        let big = "x".repeat(MAX_VALUE / 2);
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(hbad_reason = %big, "{big}");
        });
        let mut data = [0u8; 16];
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let mut iov = [io::IoSliceMut::new(&mut data)];
        let msg = nix::sys::socket::recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .unwrap();
        assert_eq!(msg.bytes, 0, "a memfd comes without data");
        let fd = msg
            .cmsgs()
            .unwrap()
            .find_map(|c| match c {
                nix::sys::socket::ControlMessageOwned::ScmRights(fds) => fds.first().copied(),
                _ => None,
            })
            .expect("a descriptor");
        // SAFETY: SCM_RIGHTS gave this process a new descriptor, owned here alone.
        let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        let seals = rustix::fs::fcntl_get_seals(&fd).unwrap();
        assert!(seals.contains(SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE));
        let mut payload = Vec::new();
        let mut file = File::from(fd);
        io::Seek::rewind(&mut file).unwrap();
        io::Read::read_to_end(&mut file, &mut payload).unwrap();
        assert_eq!(value(&payload, "MESSAGE"), big);
        assert_eq!(value(&payload, "HBAD_REASON"), big);
    }

    /// journald stalled: its socket's queue full, nobody reading. Logging drops and
    /// counts instead of waiting; once journald reads again, the next record is preceded
    /// by the count.
    #[test]
    fn a_journal_that_does_not_read_makes_records_drop_not_block() {
        let (_dir, sock, layer) = listener();
        let dropped = layer.clone();
        let (done, finished) = mpsc::channel();
        let (go_on, go) = mpsc::channel::<()>();
        let counter = layer.clone();
        let logger = thread::spawn(move || {
            let subscriber = tracing_subscriber::registry().with(layer);
            tracing::subscriber::with_default(subscriber, || {
                // The queue holds net.unix.max_dgram_qlen datagrams (10 by default)
                // or the send buffer's worth: far below this bound.
                let mut sent = 0;
                while counter.dropped() == 0 && sent < 100_000 {
                    tracing::info!(hbad_n = sent, "record {sent}");
                    sent += 1;
                }
                // With the queue still full, these are lost too.
                for _ in 0..5 {
                    tracing::info!("lost");
                }
                done.send(sent).unwrap();
                // The test reads the queue empty, as journald would once it is back.
                go.recv().unwrap();
                tracing::warn!("after");
                done.send(0).unwrap();
            });
        });
        let sent = finished
            .recv_timeout(PATIENCE)
            .expect("logging blocked on a journal that does not read");
        assert!(sent < 100_000, "no record was ever dropped");
        assert_eq!(dropped.dropped(), 6);

        sock.set_nonblocking(true).unwrap();
        let mut queued = 0;
        let mut buf = vec![0u8; MAX_RECORD];
        while sock.recv(&mut buf).is_ok() {
            queued += 1;
        }
        assert_eq!(
            queued + 1,
            sent,
            "all records up to the first dropped were queued"
        );
        sock.set_nonblocking(false).unwrap();
        go_on.send(()).unwrap();
        assert_eq!(finished.recv_timeout(PATIENCE), Ok(0));
        logger.join().unwrap();

        let report = recv(&sock);
        assert_eq!(
            value(&report, "MESSAGE"),
            "6 log records dropped: journald did not take them"
        );
        assert_eq!(value(&report, "HBAD_LOG_DROPPED"), "6");
        assert_eq!(value(&report, "PRIORITY"), "4");
        assert_eq!(value(&report, "SYSLOG_IDENTIFIER"), "hbad");
        assert!(value(&report, "TARGET").starts_with("hbad"));
        assert_eq!(value(&recv(&sock), "MESSAGE"), "after");
        assert_eq!(dropped.dropped(), 0);
        // The report is not a loss, and the total does not forget the reported.
        assert_eq!(dropped.dropped_total(), 6);
    }

    #[test]
    fn no_listener_means_no_journal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("socket");
        assert!(JournalLayer::open(&path, "hbad").is_err());
        // A socket file left behind by a journald that is gone.
        drop(UnixDatagram::bind(&path).unwrap());
        assert!(JournalLayer::open(&path, "hbad").is_err());
    }
}
