//! What every uevent source shares: counters the daemon reads, the receive-buffer
//! setup, and one enum the daemon's loop and `hbad watch` consume uniformly.
//!
//! Blocking consumers (threads, `hbad watch`) iterate: [`KernelSource`],
//! [`UdevEvents`] and [`ReplaySource`] are all `Iterator<Item = io::Result<SourceItem>>`.
//! The daemon's tokio loop awaits [`EventSource::next`], which covers the async kernel
//! socket, the udev channel and replay files alike.
//!
//! What `SourceItem::Overflow` promises, for every source: the events yielded before
//! it arrived before the loss; the source's queue was empty when it was yielded, so
//! the kernel is delivering again; events after it are complete until the next
//! `Overflow`. The consumer's answer is a resync from sysfs when it sees it — not
//! earlier (a resync while the socket is still congested could miss events the
//! kernel drops silently meanwhile) and not later.

use std::collections::BTreeSet;
use std::io;
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::Serialize;

use super::fc_event::{FcItem, FcRejection};
use super::kernel::{AsyncKernelSource, KernelSource};
use super::replay::{self, ReplayError};
use super::udev::UdevEvents;
use super::{parse_kernel, Rejection, SourceItem, SourceItemRef};

/// The receive buffer libudev and multipathd ask for. Storms of ~1.2k disks have
/// still overflowed it, which is why loss is reported, not assumed away.
pub const DEFAULT_RECV_BUFFER: usize = 128 * 1024 * 1024;

/// Counts of what a source has seen, shared with whoever reports status. Updated
/// with relaxed atomics: each is a monotonic tally, never used to synchronise.
#[derive(Debug, Default)]
pub struct SourceCounters {
    received: AtomicU64,
    events: AtomicU64,
    not_kernel: AtomicU64,
    not_root: AtomicU64,
    no_credentials: AtomicU64,
    malformed: AtomicU64,
    overflows: AtomicU64,
}

/// A copy of [`SourceCounters`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CounterSnapshot {
    /// Messages taken off the socket (events plus rejections; overflows are not messages).
    pub received: u64,
    /// Messages that became a [`SourceItem::Event`].
    pub events: u64,
    pub rejected_not_kernel: u64,
    pub rejected_not_root: u64,
    pub rejected_no_credentials: u64,
    pub rejected_malformed: u64,
    /// Times the socket reported lost events (ENOBUFS); each one asks for a resync.
    pub overflows: u64,
}

impl CounterSnapshot {
    pub fn rejected(&self) -> u64 {
        self.rejected_not_kernel
            + self.rejected_not_root
            + self.rejected_no_credentials
            + self.rejected_malformed
    }
}

impl SourceCounters {
    /// Tallies one item as it leaves a source.
    pub fn record(&self, item: &SourceItem) {
        self.tally(match item {
            SourceItem::Event(_) => None,
            SourceItem::Overflow => return self.tally_overflow(),
            SourceItem::Rejected(r) => Some(r),
        });
    }

    /// Tallies one item read in place, as [`SourceCounters::record`] does.
    pub fn record_ref(&self, item: &SourceItemRef<'_>) {
        self.tally(match item {
            SourceItemRef::Event(_) => None,
            SourceItemRef::Overflow => return self.tally_overflow(),
            SourceItemRef::Rejected(r) => Some(r),
        });
    }

    fn tally_overflow(&self) {
        self.overflows.fetch_add(1, Ordering::Relaxed);
    }

    /// An event (`None`) or a rejected message.
    fn tally(&self, rejected: Option<&Rejection>) {
        let counter = match rejected {
            None => &self.events,
            Some(Rejection::NotKernel(_)) => &self.not_kernel,
            Some(Rejection::NotRoot(_)) => &self.not_root,
            Some(Rejection::NoCredentials) => &self.no_credentials,
            Some(Rejection::Malformed(_)) => &self.malformed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.received.fetch_add(1, Ordering::Relaxed);
    }

    /// Tallies one item of the FC transport event source, in the same counters.
    pub fn record_fc(&self, item: &FcItem) {
        let counter = match item {
            FcItem::Overflow => {
                self.overflows.fetch_add(1, Ordering::Relaxed);
                return;
            }
            FcItem::Event(_) => &self.events,
            FcItem::Rejected(FcRejection::NotKernel(_)) => &self.not_kernel,
            FcItem::Rejected(FcRejection::Malformed(_)) => &self.malformed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.received.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> CounterSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CounterSnapshot {
            received: get(&self.received),
            events: get(&self.events),
            rejected_not_kernel: get(&self.not_kernel),
            rejected_not_root: get(&self.not_root),
            rejected_no_credentials: get(&self.no_credentials),
            rejected_malformed: get(&self.malformed),
            overflows: get(&self.overflows),
        }
    }
}

/// The receive buffer a netlink socket ended up with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct RecvBuffer {
    /// What was asked for.
    pub requested: usize,
    /// What `SO_RCVBUF` reads back: the kernel doubles the request for its own
    /// bookkeeping, and caps it at `net.core.rmem_max` unless it was forced.
    pub effective: usize,
    /// Whether `SO_RCVBUFFORCE` (CAP_NET_ADMIN) was allowed; if not, `rmem_max`
    /// (about 208 KiB by default) is the ceiling and storms will overflow it.
    pub forced: bool,
}

/// Raises a socket's receive buffer: `SO_RCVBUFFORCE` first (needs CAP_NET_ADMIN,
/// ignores `rmem_max`), then plain `SO_RCVBUF` when that is refused.
pub fn raise_recv_buffer(fd: &impl AsFd, requested: usize) -> io::Result<RecvBuffer> {
    use nix::sys::socket::{getsockopt, setsockopt, sockopt};
    // The kernel takes an int and doubles it; anything past i32::MAX / 2 is an
    // overflow there, so clamp rather than let a huge setting wrap.
    let requested = requested.min(i32::MAX as usize / 2);
    let forced = match setsockopt(fd, sockopt::RcvBufForce, &requested) {
        Ok(()) => true,
        Err(nix::errno::Errno::EPERM) => {
            setsockopt(fd, sockopt::RcvBuf, &requested).map_err(io::Error::from)?;
            false
        }
        Err(e) => return Err(e.into()),
    };
    let effective = getsockopt(fd, sockopt::RcvBuf).map_err(io::Error::from)?;
    Ok(RecvBuffer {
        requested,
        effective,
        forced,
    })
}

/// A replay file as a source: each record is classified as the kernel socket would
/// classify it (a malformed record is a `Rejected(Malformed)` item, not the end), and
/// `Overflow` markers can be placed between records to exercise resyncs.
#[derive(Debug)]
pub struct ReplaySource {
    records: std::vec::IntoIter<(usize, Vec<u8>)>,
    /// Record indices before which an `Overflow` is yielded.
    overflow_before: BTreeSet<usize>,
    next_index: usize,
    counters: Arc<SourceCounters>,
}

impl ReplaySource {
    /// Reads a whole replay file. A file whose last record runs past its end is an
    /// error here, before any item is yielded.
    pub fn open(path: &Path) -> Result<ReplaySource, ReplayError> {
        let data = replay::read_bytes(path)?;
        ReplaySource::from_bytes(&path.display().to_string(), &data)
    }

    /// Replays records already in memory; `name` is used in errors.
    pub fn from_bytes(name: &str, data: &[u8]) -> Result<ReplaySource, ReplayError> {
        Ok(ReplaySource {
            records: replay::records(name, data)?.into_iter(),
            overflow_before: BTreeSet::new(),
            next_index: 0,
            counters: Arc::default(),
        })
    }

    /// Yields `Overflow` just before each of these record indices (the number of
    /// records puts one at the end), as a socket would after dropping events there.
    pub fn with_overflow_before(mut self, indices: impl IntoIterator<Item = usize>) -> Self {
        self.overflow_before.extend(indices);
        self
    }

    pub fn counters(&self) -> Arc<SourceCounters> {
        Arc::clone(&self.counters)
    }

    fn next_item(&mut self) -> Option<SourceItem> {
        if self.overflow_before.remove(&self.next_index) {
            return Some(SourceItem::Overflow);
        }
        let (_offset, body) = self.records.next()?;
        self.next_index += 1;
        Some(match parse_kernel(&body) {
            Ok(event) => SourceItem::Event(event),
            Err(e) => SourceItem::Rejected(Rejection::Malformed(e)),
        })
    }
}

impl Iterator for ReplaySource {
    type Item = io::Result<SourceItem>;
    fn next(&mut self) -> Option<Self::Item> {
        let item = self.next_item()?;
        self.counters.record(&item);
        Some(Ok(item))
    }
}

/// Any source, for the daemon's event loop.
#[derive(Debug)]
pub enum EventSource {
    Kernel(AsyncKernelSource),
    Udev(UdevEvents),
    Replay(ReplaySource),
}

impl EventSource {
    /// The next item; `None` when the source has ended (a replay file is done, or
    /// the udev monitor thread stopped). The kernel socket never ends.
    pub async fn next(&mut self) -> Option<io::Result<SourceItem>> {
        match self {
            EventSource::Kernel(k) => Some(k.next().await),
            EventSource::Udev(u) => u.recv().await,
            EventSource::Replay(r) => r.next(),
        }
    }
}

/// Any source, for blocking consumers.
pub type BlockingSource = Box<dyn Iterator<Item = io::Result<SourceItem>> + Send>;

/// Boxes a blocking source so `hbad watch` need not care which it has.
pub fn blocking(
    source: impl Iterator<Item = io::Result<SourceItem>> + Send + 'static,
) -> BlockingSource {
    Box::new(source)
}

// The blocking sources all fit the common shape (checked when compiling).
const _: () = {
    fn fits<T: Iterator<Item = io::Result<SourceItem>> + Send>() {}
    let _ = fits::<KernelSource>;
    let _ = fits::<UdevEvents>;
    let _ = fits::<ReplaySource>;
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uevent::{Action, ParseError, Uevent};

    #[test]
    fn counters_tally_each_kind_of_item_apart() {
        let c = SourceCounters::default();
        c.record(&SourceItem::Event(Uevent::new(
            Action::Add,
            "/devices/x",
            "scsi",
        )));
        c.record(&SourceItem::Rejected(Rejection::NotKernel(42)));
        c.record(&SourceItem::Rejected(Rejection::NotKernel(43)));
        c.record(&SourceItem::Rejected(Rejection::Malformed(
            ParseError::Empty,
        )));
        c.record(&SourceItem::Overflow);
        let s = c.snapshot();
        assert_eq!(
            s,
            CounterSnapshot {
                received: 4,
                events: 1,
                rejected_not_kernel: 2,
                rejected_not_root: 0,
                rejected_no_credentials: 0,
                rejected_malformed: 1,
                overflows: 1,
            }
        );
        assert_eq!(s.rejected(), 3);
    }

    fn capture_like() -> Vec<u8> {
        let mut data = Vec::new();
        let host = Uevent::new(Action::Add, "/devices/pseudo_0/adapter0/host5", "scsi")
            .with_devtype("scsi_host");
        let ua = Uevent::new(
            Action::Change,
            "/devices/pseudo_0/adapter0/host2/target2:0:0/2:0:0:0",
            "scsi",
        )
        .with_devtype("scsi_device")
        .with_prop("SDEV_UA", "REPORTED_LUNS_DATA_HAS_CHANGED");
        replay::write_record(&mut data, &host).unwrap();
        // A record that is not a uevent (a libudev header) sits between the two.
        data.extend_from_slice(&12u32.to_le_bytes());
        data.extend_from_slice(b"libudev\0\xfe\xed\xca\xfe");
        replay::write_record(&mut data, &ua).unwrap();
        data
    }

    fn kinds(items: impl Iterator<Item = io::Result<SourceItem>>) -> Vec<String> {
        items
            .map(|i| match i.unwrap() {
                SourceItem::Event(e) => e.to_string(),
                SourceItem::Overflow => "overflow".into(),
                SourceItem::Rejected(r) => format!("rejected: {r}"),
            })
            .collect()
    }

    #[test]
    fn replay_yields_events_and_rejections_in_file_order() {
        let source = ReplaySource::from_bytes("t", &capture_like()).unwrap();
        let counters = source.counters();
        assert_eq!(
            kinds(source),
            [
                "add@/devices/pseudo_0/adapter0/host5 (scsi)",
                "rejected: malformed: a libudev message arrived on the kernel socket",
                "change@/devices/pseudo_0/adapter0/host2/target2:0:0/2:0:0:0 (scsi)",
            ]
        );
        let s = counters.snapshot();
        assert_eq!((s.events, s.rejected_malformed, s.received), (2, 1, 3));
    }

    #[test]
    fn replay_interleaves_overflow_markers_where_asked() {
        let source = ReplaySource::from_bytes("t", &capture_like())
            .unwrap()
            .with_overflow_before([0, 2, 3]);
        let got = kinds(source);
        assert_eq!(got.len(), 6);
        assert_eq!(got[0], "overflow");
        assert!(got[1].starts_with("add@"));
        assert!(got[2].starts_with("rejected"));
        assert_eq!(got[3], "overflow");
        assert!(got[4].starts_with("change@"));
        assert_eq!(got[5], "overflow");
    }

    #[test]
    fn replay_of_a_truncated_file_fails_before_yielding() {
        let data = capture_like();
        let err = ReplaySource::from_bytes("cut.bin", &data[..data.len() - 3]).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
    }
}
