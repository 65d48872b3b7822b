//! Talking to systemd: the `Type=notify-reload` protocol and the watchdog.
//!
//! Every call is a no-op outside systemd (no `NOTIFY_SOCKET`), so the daemon can be
//! run by hand or in tests without it. Failures to notify are logged, never fatal: a
//! service manager that stopped listening must not take the agent down with it.
//!
//! The calls come from the event loop, so a send never waits: `sd_notify`'s own
//! send blocks while the socket's queue is full (a service manager busy with a
//! start storm, or stalled), and the loop would stall with it, its watchdog
//! included. A message the socket cannot take now is kept, in order, and sent
//! before the next one (at the latest with the next watchdog ping); the drop is
//! logged once until a send gets through again.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use sd_notify::NotifyState;

/// Messages kept while the socket takes none: past this the oldest status-only
/// ones go (a later STATUS= says more), then the oldest of any kind.
const KEEP: usize = 16;

#[derive(Debug, Default)]
struct Backlog {
    /// Messages not yet taken by the socket, oldest first.
    queue: VecDeque<String>,
    /// A drop was logged and no send has got through since.
    said: bool,
}

static BACKLOG: Mutex<Backlog> = Mutex::new(Backlog {
    queue: VecDeque::new(),
    said: false,
});

fn message(states: &[NotifyState]) -> String {
    let mut msg = String::new();
    for s in states {
        let _ = writeln!(msg, "{s}");
    }
    msg
}

/// Where `NOTIFY_SOCKET` points: a path, or (`@name`) an abstract socket.
fn connect(socket: &std::ffi::OsStr) -> io::Result<UnixDatagram> {
    use std::os::unix::ffi::OsStrExt;
    let sock = UnixDatagram::unbound()?;
    match socket.as_bytes().strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sock.connect_addr(&addr)?;
        }
        None => sock.connect(socket)?,
    }
    Ok(sock)
}

/// One datagram, never waiting: `EAGAIN` when the socket's queue is full.
fn send_now(sock: &UnixDatagram, msg: &str) -> io::Result<()> {
    let sent = nix::sys::socket::send(
        sock.as_raw_fd(),
        msg.as_bytes(),
        nix::sys::socket::MsgFlags::MSG_DONTWAIT | nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
    )
    .map_err(io::Error::from)?;
    if sent != msg.len() {
        return Err(io::Error::new(io::ErrorKind::WriteZero, "incomplete write"));
    }
    Ok(())
}

fn is_status_only(msg: &str) -> bool {
    msg.lines().all(|l| l.starts_with("STATUS="))
}

impl Backlog {
    /// Keeps `msg` for later, within [`KEEP`].
    fn keep(&mut self, msg: String) {
        // A watchdog ping is not worth keeping: the next tick sends a fresh one.
        if msg == "WATCHDOG=1\n" {
            return;
        }
        // A status that follows a kept status replaces it.
        if is_status_only(&msg) && self.queue.back().is_some_and(|m| is_status_only(m)) {
            self.queue.pop_back();
        }
        self.queue.push_back(msg);
        while self.queue.len() > KEEP {
            let at = self
                .queue
                .iter()
                .position(|m| is_status_only(m))
                .unwrap_or(0);
            self.queue.remove(at);
        }
    }

    /// Sends what was kept, then `msg`, in order, stopping at the first the socket
    /// does not take; that one and those after it are kept.
    fn send(&mut self, msg: String) {
        let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
            return;
        };
        let sock = match connect(&socket) {
            Ok(s) => s,
            Err(e) => {
                self.dropped(&e, &msg);
                self.keep(msg);
                return;
            }
        };
        while let Some(first) = self.queue.front() {
            if let Err(e) = send_now(&sock, first) {
                self.dropped(&e, &msg);
                self.keep(msg);
                return;
            }
            self.queue.pop_front();
        }
        match send_now(&sock, &msg) {
            Ok(()) => self.through(),
            Err(e) => {
                self.dropped(&e, &msg);
                self.keep(msg);
            }
        }
    }

    fn dropped(&mut self, e: &io::Error, msg: &str) {
        if !self.said {
            self.said = true;
            tracing::warn!(
                "cannot notify the service manager now ({}): {e}; kept, sent again \
                 with the next message or watchdog ping",
                msg.trim_end().replace('\n', " ")
            );
        }
    }

    fn through(&mut self) {
        if std::mem::take(&mut self.said) {
            tracing::info!("the service manager takes notifications again");
        }
    }
}

fn send(states: &[NotifyState]) {
    BACKLOG
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .send(message(states));
}

/// Messages kept because the socket could not take them, not yet sent.
pub fn backlog() -> usize {
    BACKLOG
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .queue
        .len()
}

/// Start-up or reload is complete; `status` is the one-line summary `systemctl status`
/// shows ("2/2 vHBAs active, 6 hosts watched").
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A reload begins. systemd's notify-reload protocol wants the monotonic time with it,
/// so that it can tell this reload from an earlier one.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(e) => {
            tracing::warn!("cannot read the monotonic clock for RELOADING=1: {e}");
            send(&[NotifyState::Reloading]);
        }
    }
}

pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

/// Start-up goes on: push systemd's start timeout `by` out from now, so that a
/// slow but progressing start is not killed (and restarted) half-way.
pub fn extend_timeout(by: Duration) {
    let usec = u32::try_from(by.as_micros()).unwrap_or(u32::MAX);
    send(&[NotifyState::ExtendTimeoutUsec(usec)]);
}

/// The watchdog's ping, after what an earlier send could not deliver.
pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

/// How often to ping the watchdog: half of `WATCHDOG_USEC`, as sd_watchdog_enabled(3)
/// advises, or `None` when the unit has no `WatchdogSec=`.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled()
        .filter(|d| !d.is_zero())
        .map(|d| d / 2)
}
