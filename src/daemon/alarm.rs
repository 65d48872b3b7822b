//! The loop's sleep to its next deadline, on a timerfd.
//!
//! tokio's timer wheel reaches a deadline 30 s away in three sleeps: it wakes at the
//! start of the wheel slot that holds the deadline, moves the timer to a finer level,
//! and sleeps again, twice. On a busy agent that costs nothing; on an idle one it
//! triples the wake-ups of the only timers left (the watchdog's ping and the status
//! heartbeat). A timerfd armed at the deadline wakes the loop once, when it is due.
//! Where no timerfd can be made, tokio's sleep does the same job.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;

pub struct Alarm {
    timer: Option<AsyncFd<OwnedFd>>,
}

impl std::fmt::Debug for Alarm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Alarm")
            .field("timerfd", &self.timer.is_some())
            .finish()
    }
}

impl Alarm {
    /// A timerfd on the monotonic clock (std's `Instant`'s), or tokio's timer
    /// when the kernel gives none. Needs a tokio runtime with I/O enabled.
    pub fn new() -> Alarm {
        let timer = timerfd().and_then(|fd| {
            if tokio::runtime::Handle::try_current().is_err() {
                return Err(io::Error::other("no tokio runtime"));
            }
            // SAFETY: an OwnedFd always returns the fd it owns from as_raw_fd and
            // closes it only when dropped, which AsyncFd does last.
            unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
                .map_err(io::Error::from)
        });
        if let Err(e) = &timer {
            tracing::debug!("no timerfd, the loop sleeps on tokio's timer: {e}");
        }
        Alarm { timer: timer.ok() }
    }

    /// Returns at `deadline` (at once when it has passed). Cancel-safe: dropped
    /// before it fires, the next call arms the timer again.
    pub async fn sleep_until(&mut self, deadline: Instant) {
        let Some(timer) = &self.timer else {
            return tokio::time::sleep_until(deadline.into()).await;
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        if let Err(e) = arm(timer.get_ref(), left) {
            tracing::warn!("cannot arm the loop's timerfd, using tokio's timer: {e}");
            return tokio::time::sleep_until(deadline.into()).await;
        }
        loop {
            let Ok(mut ready) = timer.readable().await else {
                return tokio::time::sleep_until(deadline.into()).await;
            };
            // A stale readiness (an expiry of an earlier arming, read or reset
            // since) reads nothing: wait again.
            match ready.try_io(|fd| expirations(fd.get_ref())) {
                Ok(Ok(_)) => return,
                Ok(Err(e)) => {
                    tracing::warn!("cannot read the loop's timerfd, using tokio's timer: {e}");
                    return tokio::time::sleep_until(deadline.into()).await;
                }
                Err(_would_block) => continue,
            }
        }
    }
}

impl Default for Alarm {
    fn default() -> Self {
        Alarm::new()
    }
}

fn timerfd() -> io::Result<OwnedFd> {
    // SAFETY: timerfd_create has no memory arguments; a non-negative result is a
    // new descriptor that nothing else owns.
    let fd = unsafe {
        libc::timerfd_create(
            libc::CLOCK_MONOTONIC,
            libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and is owned here only.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Arms the timer `after` from now, once; this also forgets earlier expiries.
fn arm(fd: &OwnedFd, after: Duration) -> io::Result<()> {
    // Never zero: a zero it_value disarms the timer.
    let after = after.max(Duration::from_nanos(1));
    let spec = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: libc::timespec {
            tv_sec: libc::time_t::try_from(after.as_secs()).unwrap_or(libc::time_t::MAX),
            tv_nsec: libc::c_long::from(after.subsec_nanos() as i32),
        },
    };
    // SAFETY: `spec` is a valid itimerspec for the call's duration; the old value
    // is not asked for (null).
    let r = unsafe { libc::timerfd_settime(fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reads the expiry count: `WouldBlock` while the timer has not fired.
fn expirations(fd: &OwnedFd) -> io::Result<u64> {
    let mut buf = [0u8; 8];
    // SAFETY: reads at most 8 bytes into an 8-byte buffer owned here.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(u64::from_ne_bytes(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn it_sleeps_until_the_deadline_and_again_after_a_cancelled_sleep() {
        runtime().block_on(async {
            let mut alarm = Alarm::new();
            assert!(alarm.timer.is_some(), "Linux has timerfd");
            let t = Instant::now();
            alarm.sleep_until(t + Duration::from_millis(30)).await;
            assert!(t.elapsed() >= Duration::from_millis(30));
            // Cancelled before it fires (the loop's select picks another branch)...
            let cancelled = alarm.sleep_until(Instant::now() + Duration::from_millis(20));
            let _ = tokio::time::timeout(Duration::from_millis(1), cancelled).await;
            // ...its late expiry does not end the next sleep early.
            tokio::time::sleep(Duration::from_millis(40)).await;
            let t = Instant::now();
            alarm.sleep_until(t + Duration::from_millis(30)).await;
            assert!(t.elapsed() >= Duration::from_millis(30));
            // A deadline past returns at once.
            alarm.sleep_until(t).await;
        });
    }
}
