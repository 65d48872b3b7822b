//! Whether a vHBA is logged into its fabric, from what the kernel shows of it.
//!
//! A vHBA's SCSI host exists as soon as `vport_create` returns; whether the fabric
//! took it is another matter, and no uevent says. The kernel shows it in two places,
//! both polled: the vport's `vport_state` (fc_vport_state: `Active` once FDISC was
//! accepted, `Initializing` while libfc sends FDISCs, `Fabric Rejected WWN`, `Failed`,
//! `Linkdown`...) and the vHBA host's `port_state` (`Online` only while logged in).
//! A refused FDISC leaves the vport `Initializing` and its host `Offline` while libfc
//! retries forever, so "Initializing for longer than [`LOGIN_WAIT`]" is a refusal.
//!
//! `No Fabric Support` is what a vport on a port without a fabric shows (FCoE VN2VN,
//! point-to-point): there is no FDISC to accept or refuse, the vHBA reaches its peers
//! directly and its LUNs are there. It counts as logged in: nothing is missing that
//! the fabric could give, and a monitoring check must not page on a topology.

use std::fmt;
use std::time::Duration;

/// How long a vport may stay `Initializing` (or `Unknown`) before hbad calls its login
/// refused. libfc answers an FDISC in well under a second on a healthy fabric and
/// retries a rejected one every few seconds; 10 s is past a couple of retries and
/// well past a login on a slow (emulated) host.
pub const LOGIN_WAIT: Duration = Duration::from_secs(10);

/// A vHBA's login, as `hbad status` and the journal name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Login {
    /// vport `Active`, host `Online`.
    LoggedIn,
    /// vport `No Fabric Support`: no fabric to log into (VN2VN, point-to-point).
    NoFabric,
    /// vport `Initializing` or `Unknown`, for less than [`LOGIN_WAIT`].
    LoggingIn,
    /// The fabric said no (`Fabric Rejected WWN`, `Failed`, `Error`...), or the
    /// vport has been `Initializing` for longer than [`LOGIN_WAIT`].
    Refused,
    /// vport `Linkdown`, or its host `Linkdown`/`Offline` while the vport says `Active`.
    LinkDown,
    /// vport `Disabled`: someone wrote `vport_disable`.
    Disabled,
}

impl Login {
    /// Reads the login from `vport_state` and the vHBA host's `port_state`;
    /// `pending` is how long the vport has not been logged in. `None` when the
    /// kernel shows no `vport_state`: then nothing is known to be wrong.
    pub fn of(
        vport_state: Option<&str>,
        port_state: Option<&str>,
        pending: Duration,
    ) -> Option<Login> {
        let host_down = matches!(port_state, Some("Linkdown" | "Offline"));
        let login = match vport_state?.trim() {
            "Active" if host_down => Login::LinkDown,
            "Active" => Login::LoggedIn,
            "No Fabric Support" => Login::NoFabric,
            "Linkdown" => Login::LinkDown,
            "Disabled" => Login::Disabled,
            "Initializing" | "Unknown" if port_state == Some("Linkdown") => Login::LinkDown,
            "Initializing" | "Unknown" if pending < LOGIN_WAIT => Login::LoggingIn,
            _ => Login::Refused,
        };
        Some(login)
    }

    /// Logged in, or nothing to log into: the vHBA is usable.
    pub fn is_up(self) -> bool {
        matches!(self, Login::LoggedIn | Login::NoFabric)
    }

    /// The vHBA's `state` in `hbad status` and the metrics.
    pub fn vhba_state(self) -> &'static str {
        match self {
            Login::LoggedIn | Login::NoFabric => "active",
            Login::LoggingIn => "logging_in",
            Login::Refused | Login::LinkDown | Login::Disabled => "degraded",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Login::LoggedIn => "logged_in",
            Login::NoFabric => "no_fabric",
            Login::LoggingIn => "logging_in",
            Login::Refused => "refused",
            Login::LinkDown => "link_down",
            Login::Disabled => "disabled",
        }
    }
}

impl fmt::Display for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Duration = Duration::ZERO;
    const LONG: Duration = Duration::from_secs(60);

    #[test]
    fn active_and_online_is_logged_in_and_no_fabric_counts_as_up() {
        assert_eq!(
            Login::of(Some("Active"), Some("Online"), NOW),
            Some(Login::LoggedIn)
        );
        // A sysfs without the host's port_state contradicts nothing.
        assert_eq!(Login::of(Some("Active"), None, NOW), Some(Login::LoggedIn));
        let vn2vn = Login::of(Some("No Fabric Support"), Some("Online"), LONG).unwrap();
        assert!(vn2vn.is_up());
        assert_eq!(vn2vn.vhba_state(), "active");
        assert_eq!(Login::of(None, Some("Offline"), LONG), None);
    }

    #[test]
    fn a_refused_fdisc_is_logging_in_until_the_wait_then_refused() {
        let refused = |pending| Login::of(Some("Initializing"), Some("Offline"), pending);
        assert_eq!(refused(NOW), Some(Login::LoggingIn));
        assert_eq!(refused(LOGIN_WAIT), Some(Login::Refused));
        assert_eq!(
            Login::of(Some("Fabric Rejected WWN"), Some("Offline"), NOW),
            Some(Login::Refused)
        );
        assert_eq!(Login::of(Some("Failed"), None, NOW), Some(Login::Refused));
        assert_eq!(refused(LONG).unwrap().vhba_state(), "degraded");
        assert_eq!(refused(NOW).unwrap().vhba_state(), "logging_in");
    }

    #[test]
    fn a_lost_link_is_link_down_whichever_side_shows_it() {
        assert_eq!(
            Login::of(Some("Linkdown"), Some("Online"), NOW),
            Some(Login::LinkDown)
        );
        assert_eq!(
            Login::of(Some("Active"), Some("Linkdown"), NOW),
            Some(Login::LinkDown)
        );
        assert_eq!(
            Login::of(Some("Active"), Some("Offline"), NOW),
            Some(Login::LinkDown)
        );
        assert_eq!(
            Login::of(Some("Initializing"), Some("Linkdown"), LONG),
            Some(Login::LinkDown)
        );
        assert_eq!(
            Login::of(Some("Disabled"), Some("Offline"), NOW),
            Some(Login::Disabled)
        );
        for l in [
            Login::LinkDown,
            Login::Refused,
            Login::LoggingIn,
            Login::Disabled,
        ] {
            assert!(!l.is_up(), "{l}");
        }
    }
}
