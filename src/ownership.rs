//! What hbad owns: the mark it writes on the vports it makes, and the state file
//! that records the vHBAs whose driver refused the mark.
//!
//! A leaf of the crate (it knows WWNs, files and JSON, nothing of policies, plans or
//! the kernel writes), so the planner, the executor, the CLI and the graph's
//! descriptions all read ownership from one place.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

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

/// One vHBA recorded in the state file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnedRecord {
    pub name: String,
    pub wwnn: Wwn,
    /// Why symbolic_name could not carry the mark.
    pub why: String,
}

/// The fallback ownership record: vHBAs hbad made whose driver refused the mark.
/// Keyed by WWPN (host numbers and vport names change across boots).
#[derive(Clone, Debug)]
pub struct OwnedState {
    path: PathBuf,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct OwnedFile {
    version: u32,
    vhbas: BTreeMap<Wwn, OwnedRecord>,
}

impl OwnedState {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        OwnedState { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, why: impl fmt::Display) -> StateError {
        StateError {
            path: self.path.clone(),
            why: why.to_string(),
        }
    }

    fn read(&self) -> Result<OwnedFile, StateError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| self.err(format!("not hbad's JSON ({e}); move it aside"))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(OwnedFile {
                version: 1,
                ..OwnedFile::default()
            }),
            Err(e) => Err(self.err(e)),
        }
    }

    fn write(&self, file: &OwnedFile) -> Result<(), StateError> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| self.err(e))?;
        }
        let text = serde_json::to_vec_pretty(file).map_err(|e| self.err(e))?;
        // Write aside and rename, so a crash never leaves half a file that would
        // make every vHBA look unowned.
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(&tmp, text).map_err(|e| self.err(e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| self.err(e))
    }

    pub fn get(&self, wwpn: Wwn) -> Result<Option<OwnedRecord>, StateError> {
        Ok(self.read()?.vhbas.get(&wwpn).cloned())
    }

    pub fn all(&self) -> Result<BTreeMap<Wwn, OwnedRecord>, StateError> {
        Ok(self.read()?.vhbas)
    }

    pub fn record(&self, wwpn: Wwn, rec: OwnedRecord) -> Result<(), StateError> {
        let mut file = self.read()?;
        file.version = 1;
        file.vhbas.insert(wwpn, rec);
        self.write(&file)
    }

    pub fn forget(&self, wwpn: Wwn) -> Result<(), StateError> {
        let mut file = self.read()?;
        if file.vhbas.remove(&wwpn).is_some() {
            self.write(&file)?;
        }
        Ok(())
    }
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
    use std::fs;

    use super::*;

    #[test]
    fn a_corrupt_state_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let state = OwnedState::new(dir.path().join("owned.json"));
        fs::write(state.path(), "{not json").unwrap();
        let err = state.get(Wwn::from_u64(1)).unwrap_err().to_string();
        assert!(
            err.contains("owned.json") && err.contains("move it aside"),
            "{err}"
        );
    }
}
