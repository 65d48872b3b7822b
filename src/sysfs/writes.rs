//! The only writes hbad makes to the kernel, through one narrow seam.
//!
//! [`AttrWriter`] has two implementations: [`KernelWriter`] writes the real files, and
//! the simulator interprets the same writes with the kernel's semantics (formats,
//! errno values, new devices and their uevents). Everything above this module builds
//! exactly the text the kernel parses, so the simulator checks our formats too.

use std::cell::Cell;
use std::fmt;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{Sysfs, VportControlDir};
use crate::claim::{Deletion, LunDelete};
use crate::report_luns::DeviceNode;
use crate::wwn::{Wwn, WwnStyle};

/// Writes one value to one sysfs attribute, as a single `write(2)`.
///
/// Implementations provide [`AttrWriter::store`]; everyone calls
/// [`AttrWriter::write_attr`], which in debug builds checks that the calling thread
/// is not the event loop's: a kernel write may block for minutes, and the loop
/// must keep serving events, reloads and the watchdog meanwhile.
pub trait AttrWriter: Send + Sync + fmt::Debug {
    /// The write itself. Call [`AttrWriter::write_attr`] instead.
    fn store(&self, path: &Path, value: &str) -> io::Result<()>;

    fn write_attr(&self, path: &Path, value: &str) -> io::Result<()> {
        debug_assert!(
            !on_loop_thread(),
            "kernel write to {} on the event loop's thread",
            path.display()
        );
        self.store(path, value)
    }

    /// [`AttrWriter::store`] by whatever makes the write, holding `held` (an open
    /// file, and the lock on it) until the write returns, even past the end of
    /// this process. Here the write is this process's own, and the caller holds
    /// `held` until it returns (a process killed in a kernel write keeps its open
    /// files until the write returns); a writer that writes from a child process
    /// hands it to the child. Call [`AttrWriter::write_attr_holding`] instead.
    fn store_holding(&self, path: &Path, value: &str, held: BorrowedFd<'_>) -> io::Result<()> {
        let _ = held;
        self.store(path, value)
    }

    /// [`AttrWriter::write_attr`], the writer holding `held` until the write
    /// returns: the lock of a vport create ([`crate::ownership::CreateLock`]).
    fn write_attr_holding(&self, path: &Path, value: &str, held: BorrowedFd<'_>) -> io::Result<()> {
        debug_assert!(
            !on_loop_thread(),
            "kernel write to {} on the event loop's thread",
            path.display()
        );
        self.store_holding(path, value, held)
    }

    /// REPORT LUNS through one disk of a target ([`crate::report_luns`]): the LUNs
    /// it maps to this initiator now. Not a write, but a command to a dead target
    /// blocks as long as a scan of it, so it takes the writes' road.
    fn report_luns(&self, node: &DeviceNode) -> io::Result<Vec<u64>> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("cannot send REPORT LUNS through {node} here"),
        ))
    }

    /// `device/delete` of a LUN written while its disk is open exclusively
    /// ([`crate::claim`]), or `Claimed` when the kernel refuses that open. Not
    /// only a write: the open is an `sd` open, which can wait on the target.
    fn delete_unclaimed(&self, lun: &LunDelete) -> io::Result<Deletion> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("cannot open {} exclusively here", lun.disk),
        ))
    }
}

thread_local! {
    static LOOP_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// Marks (or unmarks) the calling thread as the event loop's: while marked, a
/// kernel write from it is a bug (a debug assertion in [`AttrWriter::write_attr`]).
pub fn set_loop_thread(on: bool) {
    LOOP_THREAD.with(|c| c.set(on));
}

pub fn on_loop_thread() -> bool {
    LOOP_THREAD.with(Cell::get)
}

/// Writes to the real sysfs, below one root: a path that leaves it, or goes
/// through a symbolic link on the way, is refused ([`super::beneath`]).
#[derive(Debug, Clone)]
pub struct KernelWriter {
    root: PathBuf,
}

impl KernelWriter {
    /// Writes below the sysfs root `root` (`/sys`, or the `--sysfs-root` given).
    pub fn beneath(root: impl Into<PathBuf>) -> Self {
        KernelWriter { root: root.into() }
    }
}

impl AttrWriter for KernelWriter {
    fn store(&self, path: &Path, value: &str) -> io::Result<()> {
        // Never create: a missing attribute means the driver lacks the feature, and
        // creating a regular file in its place would hide that.
        let mut file = super::beneath::open_for_write(&self.root, path)?;
        // sysfs store handlers see exactly one write; a short or split write would be
        // parsed as two commands.
        file.write_all(value.as_bytes())
    }

    fn report_luns(&self, node: &DeviceNode) -> io::Result<Vec<u64>> {
        crate::report_luns::report_luns(node)
    }

    fn delete_unclaimed(&self, lun: &LunDelete) -> io::Result<Deletion> {
        crate::claim::delete_unclaimed(self, lun)
    }
}

/// Writes each attribute from a short-lived child process (`hbad write-attr`).
///
/// A write the kernel does not finish (a scan stuck on a dead target waits in
/// uninterruptible sleep) cannot be cancelled, and a process cannot exit until every
/// one of its threads has returned from the kernel. With the write in a child, hbad
/// reports the host hung and exits when it must; the orphaned child finishes when
/// the kernel lets it. The cost is one process start per write: scans are merged
/// per host and target, so even a storm of unit attentions makes few of them.
#[derive(Debug)]
pub struct ChildWriter {
    exe: PathBuf,
    /// The sysfs root, given to each child as `--sysfs-root`: its writes stay below.
    root: PathBuf,
}

/// `write-attr`'s exit status for a failure that has no errno.
pub const WRITE_ATTR_NOT_OS: i32 = 255;

/// `write-attr`'s exit status for a write refused before any open: the path
/// leaves the sysfs root or goes through a link ([`super::beneath`]). No errno is
/// this large.
pub const WRITE_ATTR_REFUSED: i32 = 254;

impl ChildWriter {
    /// Writes through this very executable's `write-attr` command, below the
    /// sysfs root `root`.
    pub fn new(root: impl Into<PathBuf>) -> io::Result<Self> {
        Ok(ChildWriter {
            exe: std::env::current_exe()?,
            root: root.into(),
        })
    }

    /// This executable, told the sysfs root, running `subcommand`.
    fn child(&self, subcommand: &str) -> Command {
        let mut command = Command::new(&self.exe);
        command
            .arg("--sysfs-root")
            .arg(&self.root)
            .arg(subcommand)
            .arg("--");
        command
    }
}

impl ChildWriter {
    /// `hbad write-attr PATH`, `value` on its stdin: it may hold a NUL (a
    /// symbolic_name's end), which no command-line argument can carry.
    fn write_in_child(&self, mut command: Command, path: &Path, value: &str) -> io::Result<()> {
        command.arg(path);
        let end = run_child(
            &mut command,
            Some(value.as_bytes()),
            ChildBounds::STATUS_ONLY,
        )?;
        match end.status.code() {
            Some(0) => Ok(()),
            // Said again here in words: the child's stderr is not read.
            Some(WRITE_ATTR_REFUSED) => Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                super::beneath::refusal(&self.root, path),
            )),
            Some(errno) if errno < WRITE_ATTR_NOT_OS => Err(io::Error::from_raw_os_error(errno)),
            _ => Err(io::Error::other(format!(
                "the writer process for {} ended with {}",
                path.display(),
                end.status
            ))),
        }
    }
}

impl AttrWriter for ChildWriter {
    fn store(&self, path: &Path, value: &str) -> io::Result<()> {
        self.write_in_child(self.child("write-attr"), path, value)
    }

    /// The child inherits `held`: it outlives this process when the kernel keeps
    /// it in the write, and the lock goes only when both have ended.
    fn store_holding(&self, path: &Path, value: &str, held: BorrowedFd<'_>) -> io::Result<()> {
        use std::os::unix::process::CommandExt;
        // A copy numbered 3 or above (the same open file, and so the same lock):
        // the child's stdin, stdout and stderr are set up over 0 to 2 before the
        // hook below runs, and would replace a descriptor there (a CLI started
        // with its stdin closed).
        // SAFETY: fcntl takes no pointers and `held` is open for the call; the
        // descriptor it returns is new, so owning it here is sound.
        let copy = unsafe {
            match libc::fcntl(held.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) {
                -1 => return Err(io::Error::last_os_error()),
                fd => OwnedFd::from_raw_fd(fd),
            }
        };
        let fd = copy.as_raw_fd();
        let mut command = self.child("write-attr");
        // SAFETY: runs in the child between fork and exec, and only calls fcntl,
        // which is async-signal-safe; it changes the child's copy of the
        // descriptor (kept open across exec), not this process's, so no other
        // child started meanwhile inherits it.
        unsafe {
            command.pre_exec(move || {
                if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let written = self.write_in_child(command, path, value);
        drop(copy);
        written
    }

    /// In a child (`hbad report-luns`) for the reason writes are: a command the
    /// target never answers keeps its caller in the kernel.
    fn report_luns(&self, node: &DeviceNode) -> io::Result<Vec<u64>> {
        let mut command = self.child("report-luns");
        command.args(crate::report_luns::node_args(node));
        // 65535 LUNs of up to 20 digits: the most the command prints.
        let end = run_child(&mut command, None, ChildBounds::output(2 << 20))?;
        end.answer(crate::report_luns::parse_luns, || {
            format!("the report-luns process for {node}")
        })
    }

    /// In a child (`hbad delete-lun`): the exclusive open is an `sd` open, which
    /// can wait on the target like a command.
    fn delete_unclaimed(&self, lun: &LunDelete) -> io::Result<Deletion> {
        let mut command = self.child("delete-lun");
        command.args(lun.args());
        let end = run_child(&mut command, None, ChildBounds::output(4096))?;
        end.answer(crate::claim::parse_deletion, || {
            format!("the delete-lun process for {}", lun.disk)
        })
    }
}

/// How much of a child's output is kept, and how long it may run. hbad's own
/// children (writes, commands to targets) have no time limit: they may sit in the
/// kernel, where no signal ends them, and the host's worker reports them hung; a
/// client of another daemon (multipathd) has one and is killed past it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChildBounds {
    /// Bytes of stdout kept (0: not read at all).
    pub stdout: u64,
    /// Bytes of stderr kept (0: not read at all).
    pub stderr: u64,
    pub timeout: Option<Duration>,
}

impl ChildBounds {
    /// The exit status says it all (`hbad write-attr`).
    pub const STATUS_ONLY: ChildBounds = ChildBounds {
        stdout: 0,
        stderr: 0,
        timeout: None,
    };

    /// An answer of up to `stdout` bytes, and an error line on stderr.
    pub fn output(stdout: u64) -> ChildBounds {
        ChildBounds {
            stdout,
            stderr: 4096,
            timeout: None,
        }
    }
}

/// How a child ended and what it printed, each stream cut at its bound.
#[derive(Debug)]
pub struct ChildEnd {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl ChildEnd {
    /// Its answer, parsed from stdout, when it succeeded; its stderr (or, when it
    /// said nothing, `who` and how it ended) as the error otherwise.
    fn answer<T>(
        self,
        parse: impl FnOnce(&str) -> io::Result<T>,
        who: impl FnOnce() -> String,
    ) -> io::Result<T> {
        if self.status.success() {
            return parse(&self.stdout);
        }
        Err(io::Error::other(match self.stderr.trim() {
            "" => format!("{} ended with {}", who(), self.status),
            e => e.to_string(),
        }))
    }
}

/// Runs a child to its end: `input` on its stdin, its stdout and stderr read at
/// once (a child that fills the pipe nobody reads would wait for ever, and its
/// parent with it), each kept up to its bound and the rest read and dropped.
/// Past `bounds.timeout` the child is killed and the error is `TimedOut`. A
/// missing program is `NotFound`, as `spawn` says it.
pub fn run_child(
    command: &mut Command,
    input: Option<&[u8]>,
    bounds: ChildBounds,
) -> io::Result<ChildEnd> {
    let piped = |max: u64| {
        if max > 0 {
            Stdio::piped()
        } else {
            Stdio::null()
        }
    };
    let stdin = match input {
        Some(value) => Stdio::from(filled_pipe(value)?),
        None => Stdio::null(),
    };
    let mut child = command
        .stdin(stdin)
        .stdout(piped(bounds.stdout))
        .stderr(piped(bounds.stderr))
        .spawn()?;
    let err = spawn_reader(child.stderr.take(), bounds.stderr);
    let (status, stdout) = match bounds.timeout {
        // The calling thread reads stdout: one thread less per child, which
        // counts when many hosts hang at once (the unit's TasksMax).
        None => {
            let out = bounded(child.stdout.take(), bounds.stdout)?;
            (child.wait()?, out)
        }
        Some(timeout) => {
            let out = spawn_reader(child.stdout.take(), bounds.stdout);
            let status = wait_until(&mut child, timeout)?;
            (status, joined(out)?)
        }
    };
    let end = ChildEnd {
        status,
        stdout,
        stderr: joined(err)?,
    };
    Ok(end)
}

/// The read end of a pipe that already holds `value`, its write end closed. The
/// value is written before the child runs, while this process holds the read end:
/// a child that ends without reading can never make the write fail with EPIPE (or
/// raise SIGPIPE, which the CLI commands leave at its default). Up to PIPE_BUF,
/// which an empty pipe always takes at once; a sysfs attribute takes no more than
/// a page anyway.
fn filled_pipe(value: &[u8]) -> io::Result<std::os::fd::OwnedFd> {
    if value.len() > libc::PIPE_BUF {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "a child's input is {} bytes, more than the {} a pipe takes at once",
                value.len(),
                libc::PIPE_BUF
            ),
        ));
    }
    // Close-on-exec: a worker spawned meanwhile by another thread must not keep
    // the write end open (this child would never see the end of its input).
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    std::fs::File::from(write).write_all(value)?;
    Ok(read)
}

type Reader = Option<std::thread::JoinHandle<io::Result<String>>>;

fn spawn_reader(pipe: Option<impl Read + Send + 'static>, max: u64) -> Reader {
    let pipe = pipe?;
    Some(std::thread::spawn(move || bounded(Some(pipe), max)))
}

fn joined(reader: Reader) -> io::Result<String> {
    match reader {
        None => Ok(String::new()),
        Some(r) => r
            .join()
            .map_err(|_| io::Error::other("a child's output reader panicked"))?,
    }
}

fn bounded(pipe: Option<impl Read>, max: u64) -> io::Result<String> {
    let Some(mut pipe) = pipe else {
        return Ok(String::new());
    };
    let mut kept = Vec::new();
    (&mut pipe).take(max).read_to_end(&mut kept)?;
    io::copy(&mut pipe, &mut io::sink())?;
    Ok(String::from_utf8_lossy(&kept).into_owned())
}

/// Waits for `child` at most `timeout`; kills it past that.
fn wait_until(child: &mut Child, timeout: Duration) -> io::Result<ExitStatus> {
    let deadline = crate::exec::later(Instant::now(), timeout);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no answer within {} s", timeout.as_secs()),
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// What a scan covers: the `C T L` triple written to `scsi_host/hostN/scan`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(tag = "scope", rename_all = "snake_case")]
pub enum ScanScope {
    /// `- - -`: every channel, target and LUN the host knows of.
    Host,
    /// `C T -`: every LUN of one target.
    Target { channel: u32, target: u32 },
    /// `C T L`: one LUN.
    Lun { channel: u32, target: u32, lun: u64 },
}

impl ScanScope {
    /// The exact text the kernel's `store_scan` parses.
    pub fn kernel_text(self) -> String {
        match self {
            ScanScope::Host => "- - -".to_string(),
            ScanScope::Target { channel, target } => format!("{channel} {target} -"),
            ScanScope::Lun {
                channel,
                target,
                lun,
            } => format!("{channel} {target} {lun}"),
        }
    }

    /// Does a scan of `self` cover a scan of `other` on the same host?
    pub fn covers(self, other: ScanScope) -> bool {
        match (self, other) {
            (ScanScope::Host, _) => true,
            (
                ScanScope::Target { channel, target },
                ScanScope::Target {
                    channel: c,
                    target: t,
                },
            )
            | (
                ScanScope::Target { channel, target },
                ScanScope::Lun {
                    channel: c,
                    target: t,
                    ..
                },
            ) => channel == c && target == t,
            (a, b) => a == b,
        }
    }
}

impl fmt::Display for ScanScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.kernel_text())
    }
}

/// The text `vport_create`/`vport_delete` parse: `WWPN:WWNN`, bare hex, nothing else.
pub fn vport_text(wwpn: Wwn, wwnn: Wwn) -> String {
    format!(
        "{}:{}",
        wwpn.format(WwnStyle::Bare),
        wwnn.format(WwnStyle::Bare)
    )
}

/// Paths of the writable attributes, derived from device paths the graph knows.
impl Sysfs {
    pub fn vport_create_path(&self, host_devpath: &str, dir: VportControlDir) -> PathBuf {
        self.host_class_dir(host_devpath, dir).join("vport_create")
    }

    pub fn vport_delete_path(&self, host_devpath: &str, dir: VportControlDir) -> PathBuf {
        self.host_class_dir(host_devpath, dir).join("vport_delete")
    }

    pub fn scan_path(&self, host_devpath: &str) -> PathBuf {
        self.host_class_dir(host_devpath, VportControlDir::ScsiHost)
            .join("scan")
    }

    pub fn issue_lip_path(&self, host_devpath: &str) -> PathBuf {
        self.host_class_dir(host_devpath, VportControlDir::FcHost)
            .join("issue_lip")
    }

    pub fn rescan_path(&self, lun_devpath: &str) -> PathBuf {
        self.path(lun_devpath).join("rescan")
    }

    pub fn vport_symbolic_name_path(&self, vport_devpath: &str) -> PathBuf {
        let name = super::devpath_name(vport_devpath);
        self.path(vport_devpath)
            .join("fc_vports")
            .join(name)
            .join("symbolic_name")
    }

    fn host_class_dir(&self, host_devpath: &str, dir: VportControlDir) -> PathBuf {
        let name = super::devpath_name(host_devpath);
        let class = match dir {
            VportControlDir::FcHost => "fc_host",
            VportControlDir::ScsiHost => "scsi_host",
        };
        self.path(host_devpath).join(class).join(name)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_child_filling_stderr_while_stdout_is_read_is_not_a_deadlock() {
        // 1 MiB on stderr first: past the 64 KiB pipe, the child waits for a reader.
        let mut command = Command::new("sh");
        command.args(["-c", "head -c 1048576 /dev/zero | tr '\\0' e >&2; echo 7"]);
        let bounds = ChildBounds {
            stdout: 64,
            stderr: 16,
            timeout: None,
        };
        let end = run_child(&mut command, None, bounds).unwrap();
        assert!(end.status.success());
        assert_eq!(end.stdout, "7\n");
        assert_eq!(end.stderr, "e".repeat(16));
        // The same with a time limit: both streams read on threads.
        let bounds = ChildBounds {
            timeout: Some(Duration::from_secs(60)),
            ..bounds
        };
        let end = run_child(&mut command, None, bounds).unwrap();
        assert_eq!((end.stdout.as_str(), end.stderr.len()), ("7\n", 16));
    }

    #[test]
    fn a_child_past_its_time_limit_is_killed_and_said_so() {
        let mut command = Command::new("sleep");
        command.arg("600");
        let bounds = ChildBounds {
            timeout: Some(Duration::from_millis(100)),
            ..ChildBounds::output(64)
        };
        let err = run_child(&mut command, None, bounds).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        let err = run_child(&mut Command::new("/nonexistent/hbad"), None, bounds).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn a_failed_child_answers_with_its_stderr_or_its_status() {
        let mut command = Command::new("sh");
        command.args(["-c", "echo 3; echo 'no such disk' >&2; exit 1"]);
        let end = run_child(&mut command, None, ChildBounds::output(64)).unwrap();
        let err = end
            .answer(|o| Ok(o.to_string()), || "x".into())
            .unwrap_err();
        assert_eq!(err.to_string(), "no such disk");
        let end = run_child(
            Command::new("sh").args(["-c", "exit 3"]),
            None,
            ChildBounds::output(64),
        )
        .unwrap();
        let err = end
            .answer(|o| Ok(o.to_string()), || "the child".into())
            .unwrap_err();
        assert_eq!(err.to_string(), "the child ended with exit status: 3");
        // Its stdin is the input given, then closed.
        let end = run_child(
            &mut Command::new("cat"),
            Some(b"1 2 3"),
            ChildBounds::output(64),
        )
        .unwrap();
        assert_eq!(
            end.answer(|o| Ok(o.to_string()), || "cat".into()).unwrap(),
            "1 2 3"
        );
        // A child that ends without reading its input: waited for, its status said.
        let page = vec![b'x'; libc::PIPE_BUF];
        let end = run_child(
            Command::new("sh").args(["-c", "exit 3"]),
            Some(&page),
            ChildBounds::STATUS_ONLY,
        )
        .unwrap();
        assert_eq!(end.status.code(), Some(3));
        // More than a pipe takes at once is refused with the bound, never spawned.
        let big = vec![b'x'; 1 << 20];
        let err = run_child(
            &mut Command::new("cat"),
            Some(&big),
            ChildBounds::STATUS_ONLY,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("more than the 4096"), "{err}");
    }

    use super::*;

    #[test]
    fn formats_are_what_the_kernel_parses() {
        assert_eq!(ScanScope::Host.kernel_text(), "- - -");
        assert_eq!(
            ScanScope::Target {
                channel: 0,
                target: 3
            }
            .kernel_text(),
            "0 3 -"
        );
        assert_eq!(
            ScanScope::Lun {
                channel: 0,
                target: 3,
                lun: 27
            }
            .kernel_text(),
            "0 3 27"
        );
        let p = Wwn::from_u64(0x5001_a4a0_0000_0b01);
        let n = Wwn::from_u64(0x5001_a4a0_0000_0b00);
        assert_eq!(vport_text(p, n), "5001a4a000000b01:5001a4a000000b00");
    }

    #[test]
    #[cfg(debug_assertions)]
    fn a_write_from_the_loop_thread_is_a_bug_in_debug_builds() {
        let dir = tempfile::tempdir().unwrap();
        let attr = dir.path().join("scan");
        std::fs::write(&attr, "").unwrap();
        let path = attr.clone();
        let writer = KernelWriter::beneath(dir.path());
        let off_loop = {
            let writer = writer.clone();
            std::thread::spawn(move || writer.write_attr(&path, "- - -"))
        };
        assert!(off_loop.join().unwrap().is_ok());
        let on_loop = std::thread::spawn(move || {
            set_loop_thread(true);
            writer.write_attr(&attr, "- - -")
        });
        let err = on_loop.join().unwrap_err();
        let text = err.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(text.contains("on the event loop's thread"), "{text}");
        assert!(!on_loop_thread(), "the mark is the marked thread's only");
    }

    #[test]
    fn host_scope_covers_targets_and_luns() {
        let t = ScanScope::Target {
            channel: 0,
            target: 1,
        };
        assert!(ScanScope::Host.covers(t));
        assert!(t.covers(ScanScope::Lun {
            channel: 0,
            target: 1,
            lun: 4
        }));
        assert!(!t.covers(ScanScope::Target {
            channel: 0,
            target: 2
        }));
        assert!(!t.covers(ScanScope::Host));
    }
}
