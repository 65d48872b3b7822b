//! The status file: what the daemon is doing, for `hbad status` and for monitoring.
//!
//! `/run/hbad/status.json` is replaced atomically (written beside, then renamed), so
//! a reader never sees half a document, whenever it reads.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::Path;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::files;

/// Where the daemon keeps its status unless told otherwise.
pub const DEFAULT_PATH: &str = "/run/hbad/status.json";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub pid: u32,
    /// READY=1 was sent: the boot-time vHBAs are settled.
    pub ready: bool,
    /// RFC 3339.
    pub started: String,
    pub updated: String,
    pub policy_files: Vec<String>,
    pub vhbas: Vec<VhbaStatus>,
    pub hosts: Vec<HostStatus>,
    /// How many devices of each kind the agent's graph holds, the kinds named as
    /// `hbad list --json` names them: lets a check compare the live view with a
    /// fresh read of sysfs after churn.
    #[serde(default)]
    pub devices: BTreeMap<String, u64>,
    /// Hosts with a kernel write (scan, vport_create, device rescan...) past the
    /// timeout; later writes to them wait, other hosts go on.
    pub hung: Vec<String>,
    /// Each hung write: host, what, for how long.
    #[serde(default)]
    pub hung_writes: Vec<HungWrite>,
    /// A declared vHBA is absent past its parent's link wait, or failed: the
    /// agent runs and keeps trying, but not everything declared is there.
    #[serde(default)]
    pub degraded: bool,
    /// What the agent waits for ("waiting for fabric link of host2 for vm-a, 35 s
    /// left"), as in systemd's STATUS=.
    #[serde(default)]
    pub waiting: Vec<String>,
    pub counters: Counters,
}

/// One policy vHBA: what is wanted and what is there.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VhbaStatus {
    pub name: String,
    pub wwpn: String,
    pub wwnn: String,
    /// `active` (the host exists and is logged in, or has no fabric to log into),
    /// `logging_in`, `degraded` (the host exists but lost or was refused its
    /// login), `creating`, `waiting` or `failed`; `reason` says why.
    pub state: String,
    pub reason: Option<String>,
    pub host: Option<String>,
    pub parent: Option<String>,
    /// The kernel's word for the login: Active, Linkdown, No Fabric Support...
    pub vport_state: Option<String>,
    /// The login read from vport_state and the vHBA host's port_state: `logged_in`,
    /// `no_fabric`, `logging_in`, `refused`, `link_down` or `disabled`.
    #[serde(default)]
    pub login: Option<String>,
    /// The vHBA host's `port_state`: Online, Offline, Linkdown...
    #[serde(default)]
    pub port_state: Option<String>,
    /// How the vport is known to be hbad's: `symbolic_name` or `state_file`.
    pub owner: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HungWrite {
    pub host: String,
    pub what: String,
    pub seconds: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostStatus {
    pub host: String,
    pub last_scan: Option<ScanStatus>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanStatus {
    /// RFC 3339.
    pub when: String,
    /// The `C T L` written to the host's scan attribute.
    pub scope: String,
    pub duration_ms: u64,
    /// `done`, `failed: ...` or `hung`.
    pub result: String,
    pub reason: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub events: u64,
    pub forged: u64,
    pub malformed: u64,
    pub overflows: u64,
    pub resyncs: u64,
    pub scans: u64,
    pub merged: u64,
    pub vhbas_created: u64,
    /// Log records dropped because journald or stderr did not take them at once
    /// (each loss is also said in the log once a record gets through).
    #[serde(default)]
    pub log_records_dropped: u64,
}

pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// The most a status file may hold: a status of thousands of vHBAs and hosts is a
/// few hundred KiB; anything longer is not one hbad wrote.
pub const STATUS_FILE_MAX: u64 = 4 << 20;

impl Status {
    /// Replaces the file at `path` atomically: write a sibling, fsync, rename. Only
    /// a regular file (or nothing) at `path` is replaced ([`files::replace`]).
    pub fn write(&self, path: &Path) -> io::Result<()> {
        fs::create_dir_all(files::directory_of(path))?;
        let mut text = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        text.push(b'\n');
        files::replace(path, &text, 0o644)
    }

    /// Reads a status file, without blocking on a FIFO and to [`STATUS_FILE_MAX`].
    pub fn read(path: &Path) -> io::Result<Status> {
        let text = files::read_bounded(path, STATUS_FILE_MAX).map_err(|e| e.into_io(path))?;
        serde_json::from_slice(&text).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: not an hbad status file: {e}", path.display()),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trips_through_its_file_and_replaces_it_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/hbad/status.json");
        let mut s = Status {
            pid: 42,
            vhbas: vec![VhbaStatus {
                name: "fabric-a".into(),
                state: "active".into(),
                host: Some("host7".into()),
                vport_state: Some("No Fabric Support".into()),
                ..Default::default()
            }],
            ..Default::default()
        };
        s.write(&path).unwrap();
        assert_eq!(Status::read(&path).unwrap(), s);
        s.counters.events = 10;
        s.write(&path).unwrap();
        assert_eq!(Status::read(&path).unwrap().counters.events, 10);
        // Only the file itself is left: the temporary sibling was renamed over it.
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["status.json"]);
    }

    #[test]
    fn a_file_that_is_not_a_status_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("status.json");
        fs::write(&path, "{ truncated").unwrap();
        let err = Status::read(&path).unwrap_err().to_string();
        assert!(err.contains("not an hbad status file"), "{err}");
    }

    #[test]
    fn a_fifo_or_an_endless_file_is_refused_with_the_bound_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let [fifo, zero] =
            crate::files::testing::refusals(dir.path().join("status.json"), Status::read);
        assert!(
            fifo.ends_with("status.json: is a FIFO, not a regular file"),
            "{fifo}"
        );
        assert!(zero.contains("is a character device"), "{zero}");
        let big = dir.path().join("big.json");
        fs::File::create(&big)
            .unwrap()
            .set_len(STATUS_FILE_MAX + 1)
            .unwrap();
        let err = Status::read(&big).unwrap_err().to_string();
        assert!(err.contains("at most 4194304 bytes"), "{err}");
    }

    #[test]
    fn a_device_at_the_status_path_is_never_replaced() {
        let err = Status::default()
            .write(Path::new("/dev/null"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/dev/null is a character device")
                && err.contains("regular file or absent"),
            "{err}"
        );
    }
}
