//! Talking to systemd: the `Type=notify-reload` protocol and the watchdog.
//!
//! Every call is a no-op outside systemd (no `NOTIFY_SOCKET`), so the daemon can be
//! run by hand or in tests without it. Failures to notify are logged, never fatal: a
//! service manager that stopped listening must not take the agent down with it.

use std::time::Duration;

use sd_notify::NotifyState;

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!("cannot notify the service manager: {e}");
    }
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
