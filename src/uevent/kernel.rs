//! The kernel's own uevents: netlink `NETLINK_KOBJECT_UEVENT`, multicast group 1.
//!
//! What arrives here is what the kernel broadcast, before udev ran any rules: no
//! DEVLINKS or ID_* properties, but also no dependency on udevd being up, and no delay.
//!
//! Two checks make the socket safe to act on. The sender's netlink portid must be 0:
//! a userspace socket always has a nonzero portid (binding to 0 means "pick one for
//! me"), while root in the same network namespace can send to group 1 at will; not
//! checking this was CVE-2009-1185. And `ENOBUFS` is not an error to give up on but a
//! report that events were dropped: it becomes [`SourceItem::Overflow`], yielded after
//! the events still queued and only once the queue is empty again (see `receive`),
//! and the socket keeps working.
//!
//! The socket is a `netlink_sys::Socket`, never cloned: its `Drop` closes the fd, so a
//! clone would close the socket under the other copy.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::Arc;

use netlink_sys::protocols::NETLINK_KOBJECT_UEVENT;
use netlink_sys::{Socket, SocketAddr};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::source::{raise_recv_buffer, RecvBuffer, SourceCounters, DEFAULT_RECV_BUFFER};
use super::{parse_kernel, parse_kernel_ref, ParseError, Rejection, SourceItem, SourceItemRef};

/// The multicast group the kernel sends uevents to (udevd re-broadcasts on 2).
pub const KERNEL_GROUP: u32 = 1;

/// A kernel uevent is at most `UEVENT_BUFFER_SIZE` (2048) bytes of properties plus the
/// `action@devpath` header; 16 KiB leaves room for any devpath, and anything longer is
/// caught by `MSG_TRUNC` and rejected instead of parsed half.
const DATAGRAM_BUFFER: usize = 16 * 1024;

/// How to open the kernel socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelOptions {
    /// Receive buffer in bytes; forced past `rmem_max` when the process may.
    pub recv_buffer: usize,
}

impl Default for KernelOptions {
    fn default() -> Self {
        KernelOptions {
            recv_buffer: DEFAULT_RECV_BUFFER,
        }
    }
}

/// Decides what one datagram from the uevent socket is. Pure, so the checks are
/// tested without a socket.
///
/// `sender_portid` is the netlink source address; `truncated` says the datagram was
/// longer than what was read (`MSG_TRUNC`).
pub fn classify(sender_portid: u32, datagram: &[u8], truncated: bool) -> SourceItem {
    // The sender is checked first: a forged message is reported as forged whatever
    // its content, and its bytes are never parsed.
    if sender_portid != 0 {
        return SourceItem::Rejected(Rejection::NotKernel(sender_portid));
    }
    if truncated {
        return SourceItem::Rejected(Rejection::Malformed(ParseError::Truncated));
    }
    match parse_kernel(datagram) {
        Ok(event) => SourceItem::Event(event),
        Err(e) => SourceItem::Rejected(Rejection::Malformed(e)),
    }
}

/// Decides what one datagram is, as [`classify`] does, reading an event in place:
/// its fields borrow the datagram.
pub fn classify_ref(sender_portid: u32, datagram: &[u8], truncated: bool) -> SourceItemRef<'_> {
    if sender_portid != 0 {
        return SourceItemRef::Rejected(Rejection::NotKernel(sender_portid));
    }
    if truncated {
        return SourceItemRef::Rejected(Rejection::Malformed(ParseError::Truncated));
    }
    match parse_kernel_ref(datagram) {
        Ok(event) => SourceItemRef::Event(event),
        Err(e) => SourceItemRef::Rejected(Rejection::Malformed(e)),
    }
}

fn open_socket(opts: &KernelOptions) -> io::Result<(Socket, RecvBuffer)> {
    let mut socket = Socket::new(NETLINK_KOBJECT_UEVENT)?;
    // The buffer is raised before binding so no burst finds it at the default size.
    let recv_buffer = raise_recv_buffer(&socket, opts.recv_buffer)?;
    socket.bind(&SocketAddr::new(0, 1 << (KERNEL_GROUP - 1)))?;
    Ok((socket, recv_buffer))
}

/// What one netlink datagram becomes, for the sources that read kernel multicast
/// groups (uevents here, FC transport events in [`super::fc_event`]): the receive
/// loop below, with its overflow handling, is the same for both.
pub(super) trait Datagram: Sized {
    /// The item that reports lost datagrams (ENOBUFS).
    const OVERFLOW: Self;
    /// Classifies one datagram; `truncated` is `MSG_TRUNC` (it was longer than read).
    fn classify(sender_portid: u32, datagram: &[u8], truncated: bool) -> Self;
}

impl Datagram for SourceItem {
    const OVERFLOW: Self = SourceItem::Overflow;
    fn classify(sender_portid: u32, datagram: &[u8], truncated: bool) -> Self {
        classify(sender_portid, datagram, truncated)
    }
}

/// One `recvfrom` into `buf`: what `classify` makes of the datagram (sender
/// portid, the bytes read, whether it was longer), or the raw error (`ENOBUFS`
/// included).
fn receive_one<'b, R>(
    socket: &Socket,
    buf: &'b mut [u8],
    flags: libc::c_int,
    classify: impl FnOnce(u32, &'b [u8], bool) -> R,
) -> io::Result<R> {
    let capacity = buf.len();
    let mut room = &mut buf[..];
    // With MSG_TRUNC the length returned is the datagram's, even when it did not fit.
    let (len, sender) = socket.recv_from(&mut room, flags | libc::MSG_TRUNC)?;
    Ok(classify(
        sender.port_number(),
        &buf[..len.min(capacity)],
        len > capacity,
    ))
}

/// The next item, from the backlog left by an overflow or from the socket.
///
/// When the kernel cannot queue a broadcast it reports `ENOBUFS` once and marks the
/// socket congested; while congested it drops **every** further datagram for this
/// socket silently, until a receive finds the queue empty. So on `ENOBUFS` we read
/// everything already queued at once (those datagrams predate the loss and are
/// delivered first, in order), which re-arms delivery, and only then yield
/// the overflow item. A resync started on it therefore misses nothing: any later
/// loss shows up as another overflow.
pub(super) fn receive<T: Datagram>(
    socket: &Socket,
    buf: &mut [u8],
    backlog: &mut VecDeque<T>,
) -> io::Result<T> {
    if let Some(item) = backlog.pop_front() {
        return Ok(item);
    }
    match receive_one(socket, buf, 0, T::classify) {
        Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
            read_after_overflow(socket, buf, backlog);
            Ok(backlog.pop_front().unwrap_or(T::OVERFLOW))
        }
        other => other,
    }
}

/// After `ENOBUFS`: everything still queued into `backlog`, then the overflow.
fn read_after_overflow<T: Datagram>(socket: &Socket, buf: &mut [u8], backlog: &mut VecDeque<T>) {
    loop {
        match receive_one(socket, buf, libc::MSG_DONTWAIT, T::classify) {
            Ok(item) => backlog.push_back(item),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // Empty (WouldBlock) is the normal end; any other error will
            // come back on the next receive, after the overflow.
            Err(_) => break,
        }
    }
    backlog.push_back(T::OVERFLOW);
}

/// The kernel uevent socket, blocking: for threads and the CLI.
///
/// As an iterator it never ends; an `Err` means the socket itself failed, and the
/// consumer should stop.
#[derive(Debug)]
pub struct KernelSource {
    socket: Socket,
    buf: Box<[u8]>,
    /// Events read ahead after an overflow, then the `Overflow` itself.
    backlog: VecDeque<SourceItem>,
    recv_buffer: RecvBuffer,
    counters: Arc<SourceCounters>,
}

impl KernelSource {
    /// Opens and binds the socket. Open it before reading sysfs (cold plug), so an
    /// event that happens during the read is queued rather than missed.
    pub fn open(opts: &KernelOptions) -> io::Result<KernelSource> {
        let (socket, recv_buffer) = open_socket(opts)?;
        Ok(KernelSource {
            socket,
            buf: vec![0; DATAGRAM_BUFFER].into_boxed_slice(),
            backlog: VecDeque::new(),
            recv_buffer,
            counters: Arc::default(),
        })
    }

    /// Waits for the next datagram (or loss report) and classifies it.
    pub fn recv(&mut self) -> io::Result<SourceItem> {
        loop {
            match receive(&self.socket, &mut self.buf, &mut self.backlog) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
                Ok(item) => {
                    self.counters.record(&item);
                    return Ok(item);
                }
            }
        }
    }

    /// The receive buffer the socket got, for the startup log.
    pub fn recv_buffer(&self) -> RecvBuffer {
        self.recv_buffer
    }

    /// Live counters; the `Arc` can be kept by a status reporter.
    pub fn counters(&self) -> Arc<SourceCounters> {
        Arc::clone(&self.counters)
    }

    /// Moves the same socket (and its queue, and its counters) under tokio. Must be
    /// called inside a tokio runtime.
    pub fn into_async(self) -> io::Result<AsyncKernelSource> {
        // Registering outside a runtime would panic inside tokio; say so instead.
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(io::Error::other(
                "the async kernel uevent source needs a tokio runtime",
            ));
        }
        self.socket.set_non_blocking(true)?;
        // SAFETY: a netlink_sys::Socket owns its fd, always returns the same one from
        // as_raw_fd, and closes it only when dropped — which AsyncFd does last.
        let fd = unsafe { AsyncFd::register_with_interest(self.socket, Interest::READABLE) }?;
        Ok(AsyncKernelSource {
            fd,
            buf: self.buf,
            backlog: self.backlog,
            recv_buffer: self.recv_buffer,
            counters: self.counters,
        })
    }
}

impl Iterator for KernelSource {
    type Item = io::Result<SourceItem>;
    fn next(&mut self) -> Option<Self::Item> {
        Some(self.recv())
    }
}

impl AsRawFd for KernelSource {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

impl AsFd for KernelSource {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

/// The kernel uevent socket under tokio: for the daemon's event loop.
#[derive(Debug)]
pub struct AsyncKernelSource {
    fd: AsyncFd<Socket>,
    buf: Box<[u8]>,
    /// Events read ahead after an overflow, then the `Overflow` itself.
    backlog: VecDeque<SourceItem>,
    recv_buffer: RecvBuffer,
    counters: Arc<SourceCounters>,
}

impl AsyncKernelSource {
    /// Opens the socket as [`KernelSource::open`] does; call inside a tokio runtime.
    pub fn open(opts: &KernelOptions) -> io::Result<AsyncKernelSource> {
        KernelSource::open(opts)?.into_async()
    }

    /// The next datagram (or loss report), classified. Cancel-safe: a datagram is
    /// only taken off the socket inside one poll, never left half-received.
    pub async fn next(&mut self) -> io::Result<SourceItem> {
        loop {
            if let Some(item) = self.backlog.pop_front() {
                self.counters.record(&item);
                return Ok(item);
            }
            let mut guard = self.fd.readable().await?;
            let (buf, backlog) = (&mut self.buf, &mut self.backlog);
            match guard.try_io(|fd| receive(fd.get_ref(), buf, backlog)) {
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(result) => {
                    let item = result?;
                    self.counters.record(&item);
                    return Ok(item);
                }
                Err(_would_block) => continue,
            }
        }
    }

    /// Waits for the socket, then hands `take` what it holds, up to `max` items,
    /// each read in place into the source's buffer and handed over before the
    /// next is read: an event costs no allocation on its way from the kernel to
    /// the consumer. Returns how many items were handed over (at least one).
    ///
    /// Overflows keep their promise ([`super::source`]): after `ENOBUFS` the
    /// datagrams still queued are read ahead (into owned items, as [`Self::next`]
    /// does) and handed over first, then the overflow. Cancel-safe: nothing is
    /// read while waiting, and what is read is handed over in the same poll.
    pub async fn take_each(
        &mut self,
        max: usize,
        mut take: impl FnMut(SourceItemRef<'_>),
    ) -> io::Result<usize> {
        let max = max.max(1);
        loop {
            let mut n = 0;
            while n < max {
                let Some(item) = self.backlog.pop_front() else {
                    break;
                };
                self.counters.record(&item);
                take(SourceItemRef::from(&item));
                n += 1;
            }
            if n > 0 {
                return Ok(n);
            }
            let mut guard = self.fd.readable().await?;
            let (buf, backlog, counters) = (&mut self.buf, &mut self.backlog, &self.counters);
            while n < max && backlog.is_empty() {
                let read = guard.try_io(|fd| {
                    let socket = fd.get_ref();
                    match receive_one(socket, buf, 0, classify_ref) {
                        Ok(item) => {
                            counters.record_ref(&item);
                            take(item);
                            Ok(())
                        }
                        Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                            read_after_overflow(socket, buf, backlog);
                            Ok(())
                        }
                        Err(e) => Err(e),
                    }
                });
                match read {
                    Ok(Ok(())) if backlog.is_empty() => n += 1,
                    // The overflow's backlog goes out on the next turn.
                    Ok(Ok(())) => {}
                    Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                    // Items already handed over are reported first; the error
                    // comes back on the next receive.
                    Ok(Err(_)) if n > 0 => break,
                    Ok(Err(e)) => return Err(e),
                    Err(_would_block) => break,
                }
            }
            if n > 0 {
                return Ok(n);
            }
        }
    }

    pub fn recv_buffer(&self) -> RecvBuffer {
        self.recv_buffer
    }

    pub fn counters(&self) -> Arc<SourceCounters> {
        Arc::clone(&self.counters)
    }
}

impl AsRawFd for AsyncKernelSource {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.get_ref().as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uevent::{Action, Uevent};

    fn add_host() -> Uevent {
        let mut ev = Uevent::new(Action::Add, "/devices/pseudo_0/adapter0/host2", "scsi")
            .with_devtype("scsi_host");
        ev.seqnum = Some(7);
        ev
    }

    #[test]
    fn kernel_datagram_from_portid_zero_is_an_event() {
        let ev = add_host();
        assert_eq!(
            classify(0, &ev.to_kernel_bytes(), false),
            SourceItem::Event(ev)
        );
    }

    #[test]
    fn a_valid_uevent_from_a_userspace_portid_is_forged() {
        let bytes = add_host().to_kernel_bytes();
        assert_eq!(
            classify(4242, &bytes, false),
            SourceItem::Rejected(Rejection::NotKernel(4242))
        );
        // Even garbage from userspace is reported as forged, not as malformed.
        assert_eq!(
            classify(1, b"\xff", true),
            SourceItem::Rejected(Rejection::NotKernel(1))
        );
    }

    #[test]
    fn truncated_or_broken_kernel_datagrams_are_malformed() {
        let bytes = add_host().to_kernel_bytes();
        assert_eq!(
            classify(0, &bytes, true),
            SourceItem::Rejected(Rejection::Malformed(ParseError::Truncated))
        );
        assert_eq!(
            classify(0, b"", false),
            SourceItem::Rejected(Rejection::Malformed(ParseError::Empty))
        );
        assert!(matches!(
            classify(0, b"libudev\0\xfe\xed\xca\xfe", false),
            SourceItem::Rejected(Rejection::Malformed(ParseError::UdevFormat))
        ));
    }
}
