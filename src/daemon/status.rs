//! The status file: what the daemon is doing, for `hbad status` and for monitoring.
//!
//! `/run/hbad/status.json` is replaced atomically (written beside, then renamed), so
//! a reader never sees half a document, whenever it reads.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

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
    /// `active` (the host exists), `waiting` or `failed`; `reason` says why.
    pub state: String,
    pub reason: Option<String>,
    pub host: Option<String>,
    pub parent: Option<String>,
    /// The kernel's word for the login: Active, Linkdown, No Fabric Support...
    pub vport_state: Option<String>,
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
}

pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

impl Status {
    /// Replaces the file at `path` atomically: write a sibling, fsync, rename.
    pub fn write(&self, path: &Path) -> io::Result<()> {
        let dir = path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir)?;
        let tmp: PathBuf = dir.join(format!(
            ".{}.tmp",
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "status".into())
        ));
        let text = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        let mut f = fs::File::create(&tmp)?;
        f.write_all(&text)?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    }

    pub fn read(path: &Path) -> io::Result<Status> {
        let text = fs::read(path)?;
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
}
