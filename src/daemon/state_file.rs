//! The ownership state file as the agent sees it: read on a thread of its own,
//! never on the event loop.
//!
//! A read may have to wait: a corrupt file is recovered under the lock another hbad
//! (`hbad apply` beside the agent) may hold for up to its lock wait, then moved
//! aside, rewritten and synced. On the loop that would stall every event for as
//! long. So the loop only asks, and the answer comes back with the executor's
//! reports. The thread keeps the file's identity (device, inode, size, times, and
//! its directory's owner and mode) from its last read, and reads again only when
//! it changed, so an idle agent's reconciles cost a `stat`, not a parse.
//!
//! While a read is out the agent plans with the records it had: those a read-only
//! load found at start-up (which neither locks nor recovers), and none after a
//! read that failed, so that nothing is deleted on a record hbad could not read.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::mpsc;

use tokio::sync::mpsc::UnboundedSender;

use crate::exec::Report;
use crate::files;
use crate::ownership::{OwnedState, StateFileRead};

/// The loop's side: asks for reads, one at a time.
#[derive(Debug)]
pub struct StateFileReader {
    requests: mpsc::Sender<OwnedState>,
    pending: bool,
    /// Asked for while a read was out: sent when it returns (the latest wins).
    next: Option<OwnedState>,
}

impl StateFileReader {
    /// Starts the thread; its answers go to `reports` as [`Report::StateFile`].
    /// It ends when the reader is dropped.
    /// A thread that cannot start leaves every request unanswered: no records,
    /// logged once here.
    pub fn spawn(reports: UnboundedSender<Report>) -> StateFileReader {
        let (requests, rx) = mpsc::channel();
        if let Err(e) = std::thread::Builder::new()
            .name("hbad-state".into())
            .spawn(move || serve(rx, reports))
        {
            tracing::error!(
                "cannot start the thread that reads the ownership state file ({e}): \
                 vHBAs recorded there are treated as not hbad's"
            );
        }
        StateFileReader {
            requests,
            pending: false,
            next: None,
        }
    }

    /// Asks for the records of `state`: now, or when the read that is out returns.
    pub fn request(&mut self, state: OwnedState) {
        if self.pending {
            self.next = Some(state);
        } else {
            self.pending = self.requests.send(state).is_ok();
        }
    }

    /// A read returned: the next one asked for meanwhile goes out.
    pub fn returned(&mut self) {
        self.pending = false;
        if let Some(state) = self.next.take() {
            self.request(state);
        }
    }

    /// A read is out.
    pub fn pending(&self) -> bool {
        self.pending
    }
}

/// What identifies one version of the file, and whether it is to be trusted.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Stamp {
    path: PathBuf,
    /// dev, ino, size, mtime and ctime (ns): a rename, a write, a chmod or a chown.
    file: Option<(u64, u64, u64, i64, i64, i64, i64)>,
    /// The directory's owner and mode, which decide trust too.
    dir: Option<(u32, u32)>,
}

impl Stamp {
    fn of(state: &OwnedState) -> Option<Stamp> {
        let path = state.path();
        let file = match std::fs::metadata(path) {
            Ok(m) => Some((
                m.dev(),
                m.ino(),
                m.size(),
                m.mtime(),
                m.mtime_nsec(),
                m.ctime(),
                m.ctime_nsec(),
            )),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(_) => return None,
        };
        let dir = std::fs::metadata(files::directory_of(path))
            .ok()
            .map(|m| (m.uid(), m.mode()));
        Some(Stamp {
            path: path.to_path_buf(),
            file,
            dir,
        })
    }
}

fn serve(requests: mpsc::Receiver<OwnedState>, reports: UnboundedSender<Report>) {
    let mut last: Option<Stamp> = None;
    for state in requests {
        let stamp = Stamp::of(&state);
        let read = if stamp.is_some() && stamp == last {
            StateFileRead::Unchanged
        } else {
            match state.all() {
                Ok(records) => {
                    last = stamp;
                    StateFileRead::Records(records)
                }
                Err(e) => {
                    last = None;
                    StateFileRead::Failed(e.to_string())
                }
            }
        };
        if reports.send(Report::StateFile(read)).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ownership::OwnedRecord;
    use crate::wwn::Wwn;
    use std::collections::BTreeMap;
    use std::time::Duration;

    fn rec(name: &str) -> OwnedRecord {
        OwnedRecord {
            name: name.into(),
            wwnn: Wwn::from_u64(0x5001_a4a0_0000_0b00),
            why: "EACCES".into(),
        }
    }

    fn answer(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Report>) -> StateFileRead {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match rx.try_recv() {
                Ok(Report::StateFile(read)) => return read,
                Ok(_) => {}
                Err(_) => {
                    assert!(std::time::Instant::now() < deadline, "no answer");
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
    }

    #[test]
    fn the_file_is_read_again_only_when_it_changed() {
        let dir = tempfile::tempdir().unwrap();
        let state = OwnedState::new(dir.path().join("owned.json"));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut reader = StateFileReader::spawn(tx);
        reader.request(state.clone());
        assert!(reader.pending());
        // Asked again while out: sent once the first returns, not twice at once.
        reader.request(state.clone());
        assert_eq!(answer(&mut rx), StateFileRead::Records(BTreeMap::new()));
        reader.returned();
        assert!(reader.pending());
        assert_eq!(answer(&mut rx), StateFileRead::Unchanged);
        reader.returned();
        assert!(!reader.pending());

        let wwpn = Wwn::from_u64(0x5001_a4a0_0000_0b01);
        state.record(wwpn, rec("a")).unwrap();
        reader.request(state.clone());
        let StateFileRead::Records(records) = answer(&mut rx) else {
            panic!("not read again")
        };
        assert_eq!(records[&wwpn].name, "a");
        reader.returned();
        reader.request(state.clone());
        assert_eq!(answer(&mut rx), StateFileRead::Unchanged);
    }

    #[test]
    fn a_locked_corrupt_file_never_holds_the_asker() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("owned.json");
        std::fs::write(&path, "garbage").unwrap();
        // Another hbad holds the lock: recovery waits on the reader's thread.
        let lock = std::fs::File::create(dir.path().join("owned.json.lock")).unwrap();
        use std::os::fd::AsRawFd;
        // SAFETY: flock takes no pointers; the descriptor is open for the call.
        assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut reader = StateFileReader::spawn(tx);
        // The request returns while the lock is held: the asker never waits.
        reader.request(OwnedState::new(&path));
        assert!(rx.try_recv().is_err(), "answered while the lock is held");
        drop(lock);
        assert_eq!(answer(&mut rx), StateFileRead::Records(BTreeMap::new()));
    }
}
