//! The only writes hbad makes to the kernel, through one narrow seam.
//!
//! [`AttrWriter`] has two implementations: [`KernelWriter`] writes the real files, and
//! the simulator interprets the same writes with the kernel's semantics (formats,
//! errno values, new devices and their uevents). Everything above this module builds
//! exactly the text the kernel parses, so the simulator checks our formats too.

use std::cell::Cell;
use std::fmt;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{Sysfs, VportControlDir};
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

    /// REPORT LUNS through one disk of a target ([`crate::report_luns`]): the LUNs
    /// it maps to this initiator now. Not a write, but a command to a dead target
    /// blocks as long as a scan of it, so it takes the writes' road.
    fn report_luns(&self, node: &DeviceNode) -> io::Result<Vec<u64>> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("cannot send REPORT LUNS through {node} here"),
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

/// Writes to the real sysfs.
#[derive(Debug, Default, Clone, Copy)]
pub struct KernelWriter;

impl AttrWriter for KernelWriter {
    fn store(&self, path: &Path, value: &str) -> io::Result<()> {
        // Never create: a missing attribute means the driver lacks the feature, and
        // creating a regular file in its place would hide that.
        let mut file = OpenOptions::new().write(true).open(path)?;
        // sysfs store handlers see exactly one write; a short or split write would be
        // parsed as two commands.
        file.write_all(value.as_bytes())
    }

    fn report_luns(&self, node: &DeviceNode) -> io::Result<Vec<u64>> {
        crate::report_luns::report_luns(node)
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
}

/// `write-attr`'s exit status for a failure that has no errno.
pub const WRITE_ATTR_NOT_OS: i32 = 255;

impl ChildWriter {
    /// Writes through this very executable's `write-attr` command.
    pub fn new() -> io::Result<Self> {
        Ok(ChildWriter {
            exe: std::env::current_exe()?,
        })
    }
}

impl AttrWriter for ChildWriter {
    fn store(&self, path: &Path, value: &str) -> io::Result<()> {
        use std::process::{Command, Stdio};
        // The value goes on stdin: it may hold a NUL (a symbolic_name's end), which
        // no command-line argument can carry.
        let mut child = Command::new(&self.exe)
            .arg("write-attr")
            .arg("--")
            .arg(path)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(value.as_bytes())?;
        }
        let status = child.wait()?;
        match status.code() {
            Some(0) => Ok(()),
            Some(errno) if errno < WRITE_ATTR_NOT_OS => Err(io::Error::from_raw_os_error(errno)),
            _ => Err(io::Error::other(format!(
                "the writer process for {} ended with {status}",
                path.display()
            ))),
        }
    }

    /// In a child (`hbad report-luns`) for the reason writes are: a command the
    /// target never answers keeps its caller in the kernel.
    fn report_luns(&self, node: &DeviceNode) -> io::Result<Vec<u64>> {
        use std::process::{Command, Stdio};
        let mut child = Command::new(&self.exe)
            .arg("report-luns")
            .arg("--")
            .args(crate::report_luns::node_args(node))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        // 65535 LUNs of up to 20 digits: the most the command prints.
        let (out, err) = read_both(&mut child, 2 << 20, 4096)?;
        let status = child.wait()?;
        if status.success() {
            crate::report_luns::parse_luns(&out)
        } else {
            Err(io::Error::other(match err.trim() {
                "" => format!("the report-luns process for {node} ended with {status}"),
                e => e.to_string(),
            }))
        }
    }
}

/// A child's stdout and stderr, each kept up to its bound and the rest read and
/// dropped, both at once as `wait_with_output` reads them: a child that fills
/// the pipe it is not being read from would otherwise wait for ever, and its
/// parent with it.
fn read_both(
    child: &mut std::process::Child,
    out_max: u64,
    err_max: u64,
) -> io::Result<(String, String)> {
    use std::io::Read;
    fn bounded(pipe: Option<impl Read>, max: u64) -> io::Result<String> {
        let Some(mut pipe) = pipe else {
            return Ok(String::new());
        };
        let mut kept = Vec::new();
        (&mut pipe).take(max).read_to_end(&mut kept)?;
        io::copy(&mut pipe, &mut io::sink())?;
        Ok(String::from_utf8_lossy(&kept).into_owned())
    }
    let stderr = child.stderr.take();
    let err = std::thread::spawn(move || bounded(stderr, err_max));
    let out = bounded(child.stdout.take(), out_max)?;
    let err = err
        .join()
        .map_err(|_| io::Error::other("the stderr reader panicked"))??;
    Ok((out, err))
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
        use std::process::{Command, Stdio};
        // 1 MiB on stderr first: past the 64 KiB pipe, the child waits for a reader.
        let mut child = Command::new("sh")
            .args(["-c", "head -c 1048576 /dev/zero | tr '\\0' e >&2; echo 7"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (out, err) = super::read_both(&mut child, 64, 16).unwrap();
        assert!(child.wait().unwrap().success());
        assert_eq!(out, "7\n");
        assert_eq!(err, "e".repeat(16));
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
        let off_loop = std::thread::spawn(move || KernelWriter.write_attr(&path, "- - -"));
        assert!(off_loop.join().unwrap().is_ok());
        let on_loop = std::thread::spawn(move || {
            set_loop_thread(true);
            KernelWriter.write_attr(&attr, "- - -")
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
