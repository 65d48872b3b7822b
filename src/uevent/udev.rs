//! udev's processed events (netlink group 2) through libudev, on a thread of their own.
//!
//! The udev source gives what the kernel source cannot: events after udevd ran its
//! rules, with DEVLINKS (`/dev/disk/by-path/...`) and ID_* properties, for block
//! devices that are ready to open. It depends on udevd running.
//!
//! libudev objects are not `Send` and must stay on the thread that made them, so the
//! monitor lives on a dedicated thread and only owned [`Uevent`]s cross over, through
//! a bounded **tokio** mpsc channel (async `recv` for the daemon, `blocking_recv` for
//! threads). The bound is deliberate: when the consumer falls behind, the thread stops
//! reading, the socket buffer fills, and the kernel reports the loss as `ENOBUFS` —
//! which this source turns into [`SourceItem::Overflow`]. Memory never grows unbounded
//! and loss is never silent where the kernel tells us about it.
//!
//! What we rely on libudev for, and what it does (systemd 252, `device-monitor.c`):
//! - **Sender checks.** It enables `SO_PASSCRED` and drops every message without
//!   `SCM_CREDENTIALS` or whose sender uid is not 0, and kernel-group messages from a
//!   nonzero portid. Those drops are invisible to us (libudev returns "no device" with
//!   `EAGAIN`, the same as an empty queue), so they cannot be counted here; they never
//!   reach the channel.
//! - **The subsystem filter** is a BPF program on the socket (hashes in the libudev
//!   header), so unwanted subsystems are dropped by the kernel and never use buffer space.
//! - **No udevd, no events.** libudev listens on no group at all when neither
//!   `/run/udev/control` exists nor `/dev` is devtmpfs (containers): the source then
//!   starts fine and stays silent. The kernel source is the one to use there.
//!
//! Loss: tokio-udev's stream swallows errors, so it is not used. We poll the fd
//! ourselves and read `errno` after libudev returns no device: `ENOBUFS` there is the
//! kernel's loss report. As with the kernel source, `Overflow` comes after the events
//! that were still queued, once the queue has been emptied (the kernel drops
//! everything silently until then), so a resync started on it misses nothing. The receive buffer is raised on the fd (`SO_RCVBUFFORCE`,
//! as udevd does for its own socket), since libudev's default is the small system one.

use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use nix::errno::Errno;
use tokio::sync::mpsc;

use super::source::{raise_recv_buffer, RecvBuffer, SourceCounters, DEFAULT_RECV_BUFFER};
use super::{ParseError, Rejection, SourceItem, Uevent};

/// The subsystems hbad models: SCSI hosts, FC hosts, vports and remote ports, SCSI
/// devices and targets, and the block devices on them.
pub const HBA_SUBSYSTEMS: &[&str] = &[
    "scsi",
    "scsi_host",
    "fc_host",
    "fc_vports",
    "fc_remote_ports",
    "block",
];

/// How to start the udev monitor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UdevOptions {
    /// Subsystems to receive; empty means all.
    pub subsystems: Vec<String>,
    /// Receive buffer of the monitor socket, in bytes.
    pub recv_buffer: usize,
    /// Events held in the channel before the monitor thread stops reading.
    pub channel_capacity: usize,
}

impl Default for UdevOptions {
    fn default() -> Self {
        UdevOptions {
            subsystems: HBA_SUBSYSTEMS.iter().map(|s| s.to_string()).collect(),
            recv_buffer: DEFAULT_RECV_BUFFER,
            channel_capacity: 4096,
        }
    }
}

/// The running monitor thread. Dropping it stops the thread too; [`shutdown`]
/// does the same and reports how the thread ended.
///
/// [`shutdown`]: UdevSource::shutdown
#[derive(Debug)]
pub struct UdevSource {
    thread: Option<JoinHandle<io::Result<()>>>,
    /// Writing a byte (or closing it) tells the thread to stop.
    stop: Option<UnixStream>,
    counters: Arc<SourceCounters>,
    dropped_by_libudev: Arc<AtomicU64>,
    recv_buffer: RecvBuffer,
}

/// The receiving end: owned items from the monitor thread.
///
/// `None` from it means the thread has stopped. If it stopped on an error,
/// [`UdevSource::shutdown`] returns that error, and it is also the last item when
/// the channel had room for it.
#[derive(Debug)]
pub struct UdevEvents {
    rx: mpsc::Receiver<io::Result<SourceItem>>,
}

impl UdevEvents {
    /// Awaits the next item (for the daemon's loop). Named `recv`, as on the tokio
    /// channel, because `next` is the blocking `Iterator` method.
    pub async fn recv(&mut self) -> Option<io::Result<SourceItem>> {
        self.rx.recv().await
    }

    /// An item if one is waiting, without blocking: to drain a batch after `recv`.
    pub fn try_recv(&mut self) -> Option<io::Result<SourceItem>> {
        self.rx.try_recv().ok()
    }
}

/// Blocking iteration, for threads and the CLI. Must not be used from inside an
/// async task (tokio's `blocking_recv` panics there); use [`UdevEvents::recv`].
impl Iterator for UdevEvents {
    type Item = io::Result<SourceItem>;
    fn next(&mut self) -> Option<Self::Item> {
        self.rx.blocking_recv()
    }
}

impl UdevSource {
    /// Starts the monitor thread and returns once its socket is bound (so events
    /// from then on are queued), or with the error that stopped it from starting.
    pub fn spawn(opts: UdevOptions) -> io::Result<(UdevSource, UdevEvents)> {
        let (stop_tx, stop_rx) = UnixStream::pair()?;
        let (tx, rx) = mpsc::channel(opts.channel_capacity.max(1));
        let (ready_tx, ready_rx) = std_mpsc::sync_channel(1);
        let counters = Arc::new(SourceCounters::default());
        let dropped = Arc::new(AtomicU64::new(0));
        let monitor = Monitor {
            tx,
            stop: stop_rx,
            counters: Arc::clone(&counters),
            dropped: Arc::clone(&dropped),
        };
        let thread = std::thread::Builder::new()
            .name("udev-monitor".into())
            .spawn(move || monitor.run(&opts, ready_tx))?;
        let recv_buffer = match ready_rx.recv() {
            Ok(Ok(rb)) => rb,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                // The thread ended without reporting: it panicked.
                return Err(match thread.join() {
                    Ok(Err(e)) => e,
                    _ => io::Error::other("udev monitor thread died while starting"),
                });
            }
        };
        Ok((
            UdevSource {
                thread: Some(thread),
                stop: Some(stop_tx),
                counters,
                dropped_by_libudev: dropped,
                recv_buffer,
            },
            UdevEvents { rx },
        ))
    }

    pub fn counters(&self) -> Arc<SourceCounters> {
        Arc::clone(&self.counters)
    }

    /// Messages libudev refused with an error of its own (bad length or magic, not
    /// parseable). Its sender-check drops are not included: see the module docs.
    pub fn dropped_by_libudev(&self) -> u64 {
        self.dropped_by_libudev.load(Ordering::Relaxed)
    }

    pub fn recv_buffer(&self) -> RecvBuffer {
        self.recv_buffer
    }

    /// Stops the thread and waits for it. Returns the error the thread stopped on,
    /// if it stopped by itself before being asked.
    pub fn shutdown(mut self) -> io::Result<()> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> io::Result<()> {
        if let Some(mut stop) = self.stop.take() {
            // The thread may be gone already (its end of the pair closed): fine.
            let _ = stop.write_all(b"x");
        }
        match self.thread.take() {
            Some(thread) => thread
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("udev monitor thread panicked"))),
            None => Ok(()),
        }
    }
}

impl Drop for UdevSource {
    fn drop(&mut self) {
        let _ = self.stop_and_join();
    }
}

/// Everything the monitor thread owns except the libudev objects, which it makes.
struct Monitor {
    tx: mpsc::Sender<io::Result<SourceItem>>,
    stop: UnixStream,
    counters: Arc<SourceCounters>,
    dropped: Arc<AtomicU64>,
}

/// Whether the thread goes on after handing over an item.
enum Flow {
    Continue,
    Stop,
}

impl Monitor {
    fn run(
        self,
        opts: &UdevOptions,
        ready: std_mpsc::SyncSender<io::Result<RecvBuffer>>,
    ) -> io::Result<()> {
        let (socket, recv_buffer) = match open_monitor(opts) {
            Ok(ok) => ok,
            Err(e) => {
                let copy = io::Error::new(e.kind(), e.to_string());
                let _ = ready.send(Err(copy));
                return Err(e);
            }
        };
        let _ = ready.send(Ok(recv_buffer));
        let result = self.serve(&socket);
        if let Err(e) = &result {
            // Tell the consumer in-band too; it may never call shutdown().
            let _ = self
                .tx
                .try_send(Err(io::Error::new(e.kind(), e.to_string())));
        }
        result
    }

    fn serve(&self, socket: &udev::MonitorSocket) -> io::Result<()> {
        loop {
            let mut fds = [pollfd(socket.as_raw_fd()), pollfd(self.stop.as_raw_fd())];
            poll(&mut fds, None)?;
            let [sock, stop] = fds.map(|p| p.revents);
            // A byte, EOF or an error on the stop stream all mean stop.
            if stop != 0 {
                return Ok(());
            }
            if sock & libc::POLLNVAL != 0 {
                return Err(io::Error::other("udev monitor socket became invalid"));
            }
            // POLLERR on a netlink socket is a pending ENOBUFS: drain reports it.
            if sock != 0 && matches!(self.drain(socket)?, Flow::Stop) {
                return Ok(());
            }
        }
    }

    /// Reads until the socket's queue is empty.
    ///
    /// After `ENOBUFS` the kernel drops every further message to this socket, without
    /// another report, until a receive finds the queue empty. So once a loss is seen,
    /// items are held back (never waiting on the channel) until the queue is empty,
    /// then handed over followed by `Overflow`: a resync started on it misses nothing.
    fn drain(&self, socket: &udev::MonitorSocket) -> io::Result<Flow> {
        let mut held: Option<Vec<SourceItem>> = None;
        loop {
            // libudev reports why it returned no device only through errno.
            Errno::clear();
            let item = match socket.iter().next() {
                Some(event) => to_item(&event),
                None => match Errno::last() {
                    Errno::ENOBUFS => {
                        held.get_or_insert_with(Vec::new);
                        continue;
                    }
                    // libudev says EAGAIN both for an empty queue and for a message it
                    // dropped for its sender; only the socket can tell them apart.
                    Errno::EAGAIN | Errno::EINTR | Errno::UnknownErrno => {
                        if readable_now(socket.as_raw_fd())? {
                            continue;
                        }
                        break;
                    }
                    Errno::EBADF | Errno::ENOTSOCK => return Err(io::Error::from(Errno::last())),
                    _ => {
                        self.dropped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                },
            };
            match &mut held {
                Some(held) => held.push(item),
                None => {
                    if matches!(self.send(item)?, Flow::Stop) {
                        return Ok(Flow::Stop);
                    }
                }
            }
        }
        if let Some(held) = held {
            for item in held.into_iter().chain([SourceItem::Overflow]) {
                if matches!(self.send(item)?, Flow::Stop) {
                    return Ok(Flow::Stop);
                }
            }
        }
        Ok(Flow::Continue)
    }

    /// Hands one item over, waiting while the channel is full — but never past a
    /// stop request, so shutdown cannot hang behind a consumer that stopped reading.
    fn send(&self, item: SourceItem) -> io::Result<Flow> {
        self.counters.record(&item);
        let mut item = Ok(item);
        loop {
            match self.tx.try_send(item) {
                Ok(()) => return Ok(Flow::Continue),
                Err(mpsc::error::TrySendError::Closed(_)) => return Ok(Flow::Stop),
                Err(mpsc::error::TrySendError::Full(back)) => {
                    item = back;
                    // The channel has no fd to poll, so capacity is re-checked at a
                    // short interval; the stop fd still wakes us at once.
                    let mut fds = [pollfd(self.stop.as_raw_fd())];
                    if poll(&mut fds, Some(Duration::from_millis(5)))? {
                        return Ok(Flow::Stop);
                    }
                }
            }
        }
    }
}

fn open_monitor(opts: &UdevOptions) -> io::Result<(udev::MonitorSocket, RecvBuffer)> {
    let mut builder = udev::MonitorBuilder::new()?;
    for subsystem in &opts.subsystems {
        builder = builder.match_subsystem(subsystem)?;
    }
    // Raised before the socket is bound, so no burst meets the default size.
    let recv_buffer = raise_recv_buffer(&builder.as_fd(), opts.recv_buffer)?;
    Ok((builder.listen()?, recv_buffer))
}

/// Turns a libudev event into an owned item. libudev has already checked the sender.
fn to_item(event: &udev::Event) -> SourceItem {
    match to_uevent(event) {
        Ok(ev) => SourceItem::Event(ev),
        Err(e) => SourceItem::Rejected(Rejection::Malformed(e)),
    }
}

fn to_uevent(event: &udev::Event) -> Result<Uevent, ParseError> {
    let mut props = Vec::new();
    for (i, entry) in event.properties().enumerate() {
        let name = entry.name().to_str().ok_or(ParseError::NotUtf8(i))?;
        let value = entry.value().to_str().ok_or(ParseError::NotUtf8(i))?;
        props.push((name.to_string(), value.to_string()));
    }
    // libudev keeps action, devpath, subsystem and seqnum as fields too; fill in any
    // that its property list left out, so both ways of asking agree.
    let has = |key: &str, props: &[(String, String)]| props.iter().any(|(k, _)| k == key);
    let fields = [
        ("ACTION", event.action()),
        ("DEVPATH", Some(event.devpath())),
        ("SUBSYSTEM", event.subsystem()),
    ];
    for (key, value) in fields {
        if let (false, Some(value)) = (has(key, &props), value) {
            let value = value.to_str().ok_or(ParseError::NotUtf8(props.len()))?;
            props.push((key.to_string(), value.to_string()));
        }
    }
    if !has("SEQNUM", &props) && event.sequence_number() != 0 {
        props.push(("SEQNUM".into(), event.sequence_number().to_string()));
    }
    Uevent::from_props(props.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

/// `poll(2)` over `fds`, retried on EINTR; `None` waits forever. Returns whether
/// anything was ready (false on timeout).
fn poll(fds: &mut [libc::pollfd], timeout: Option<Duration>) -> io::Result<bool> {
    let timeout_ms = match timeout {
        None => -1,
        Some(t) => t.as_millis().min(i32::MAX as u128) as libc::c_int,
    };
    loop {
        // SAFETY: `fds` is a valid, exclusively borrowed slice of pollfd of the
        // length given; poll only writes their `revents`.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        if n >= 0 {
            return Ok(n > 0);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Whether a receive on `fd` would find something (a message or a pending error).
fn readable_now(fd: RawFd) -> io::Result<bool> {
    let mut fds = [pollfd(fd)];
    poll(&mut fds, Some(Duration::ZERO))?;
    Ok(fds[0].revents & (libc::POLLIN | libc::POLLERR) != 0)
}

fn pollfd(fd: RawFd) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}
