//! Kernel refusals in words an administrator can act on.
//!
//! The kernel answers a write to vport_create or scan with a bare errno, and some
//! of them mislead: ENOENT is what users see for a WWN the HBA rejects, EINVAL is
//! both "malformed" and "that WWPN already exists". Each message here says what
//! most likely happened on this host and what to do about it.

use std::io;

use nix::errno::Errno;
use serde::Serialize;

use crate::wwn::Wwn;

/// What hbad was doing when the kernel refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    VportCreate {
        parent: String,
        wwpn: Wwn,
        wwnn: Wwn,
        max: Option<u32>,
        inuse: Option<u32>,
        wwpn_known: bool,
    },
    VportDelete {
        parent: String,
        wwpn: Wwn,
    },
    Scan {
        host: String,
        text: String,
    },
    Rescan {
        device: String,
    },
    SymbolicName {
        vport: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{summary} ({errno}): {advice}")]
pub struct KernelRefusal {
    pub summary: String,
    pub errno: String,
    pub advice: String,
}

pub fn errno_name(err: &io::Error) -> String {
    match err.raw_os_error() {
        Some(code) => format!("{:?}", Errno::from_raw(code)),
        None => err.kind().to_string(),
    }
}

/// Explains a failed write.
pub fn explain(op: &Op, err: &io::Error) -> KernelRefusal {
    if crate::sysfs::beneath::is_refused(err) {
        // Not the kernel's answer: hbad's own, before any open; it names the path.
        return KernelRefusal {
            summary: err.to_string(),
            errno: "refused".to_string(),
            advice: "hbad writes only below --sysfs-root and through no symbolic link, \
                     as the kernel's sysfs has none on that way; check the tree"
                .to_string(),
        };
    }
    let errno = err.raw_os_error().map(Errno::from_raw);
    let (summary, advice) = match (op, errno) {
        (Op::VportCreate { parent, wwpn, wwpn_known: true, .. }, Some(Errno::EINVAL)) => (
            format!("{parent} refused vport {wwpn}"),
            "that WWPN already exists on this adapter or fabric (the kernel log says \"already exists\"); \
             find it with `hbad show` and delete it, or give this vHBA another WWPN"
                .to_string(),
        ),
        (Op::VportCreate { parent, wwpn, wwnn, .. }, Some(Errno::EINVAL)) => (
            format!("{parent} refused vport {wwpn}:{wwnn}"),
            "the driver rejected the WWPN:WWNN pair; if the WWPN is in use elsewhere on the fabric \
             the kernel log says \"already exists\" (see `journalctl -k`)"
                .to_string(),
        ),
        (Op::VportCreate { parent, max, inuse, .. }, Some(Errno::ENOSPC)) => (
            format!("{parent} has no free vport"),
            format!(
                "{} of {} NPIV vports are in use; delete unused vHBAs or choose another parent",
                inuse.map_or("?".into(), |n| n.to_string()),
                max.map_or("?".into(), |n| n.to_string())
            ),
        ),
        (Op::VportCreate { parent, .. }, Some(Errno::ENOENT)) => (
            format!("{parent} cannot create vports"),
            "the driver has no NPIV support (no vport_create), or the HBA rejected the WWN: \
             check `hbad show` for NPIV capability and the HBA firmware's NPIV setting"
                .to_string(),
        ),
        (Op::VportCreate { parent, .. }, Some(Errno::ENOTUNIQ)) => (
            format!("{parent} refused the WWN"),
            "it overlaps a WWN already on this adapter; choose another WWPN/WWNN".to_string(),
        ),
        (Op::VportCreate { parent, .. }, Some(Errno::EOPNOTSUPP)) => (
            format!("{parent} cannot host NPIV vports here"),
            "the port is in loop topology or the fabric switch does not support NPIV; \
             enable NPIV on the switch port or use point-to-point fabric mode"
                .to_string(),
        ),
        (Op::VportCreate { parent, .. }, Some(Errno::ENOSYS)) => (
            format!("{parent}'s firmware refused the vport"),
            "the HBA is out of resources or its firmware lacks NPIV; check the firmware level".to_string(),
        ),
        (Op::VportCreate { parent, .. }, Some(Errno::ENOMEM)) => {
            (format!("{parent} ran out of memory creating the vport"), "retry later".to_string())
        }
        (Op::VportDelete { parent, wwpn }, Some(Errno::ENODEV)) => (
            format!("{parent} has no vport {wwpn}"),
            "it is already gone; nothing to do".to_string(),
        ),
        (Op::VportDelete { parent, wwpn }, Some(Errno::EBUSY)) => (
            format!("vport {wwpn} on {parent} is still being created"),
            "retry in a few seconds".to_string(),
        ),
        (Op::VportDelete { parent, wwpn }, Some(Errno::EALREADY)) => (
            format!("vport {wwpn} on {parent} is already being deleted"),
            "nothing to do".to_string(),
        ),
        (Op::Scan { host, text }, Some(Errno::EINVAL)) => (
            format!("{host} refused scan \"{text}\""),
            "the channel/target/LUN is out of this host's range".to_string(),
        ),
        (Op::Scan { host, .. }, Some(Errno::ENOENT)) => {
            (format!("{host} is gone"), "it was removed while the scan was queued".to_string())
        }
        (Op::Rescan { device }, _) => (
            format!("rescan of {device} failed"),
            "the device may be offline or removed; see `hbad show` and `journalctl -k`".to_string(),
        ),
        (Op::SymbolicName { vport }, _) => (
            format!("{vport} does not take a symbolic_name"),
            "the driver does not support it; hbad records ownership in its state file instead".to_string(),
        ),
        (op, _) => (format!("{op:?} failed"), "see `journalctl -k` for the kernel's view".to_string()),
    };
    KernelRefusal {
        summary,
        errno: errno_name(err),
        advice,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(known: bool) -> Op {
        Op::VportCreate {
            parent: "host5".into(),
            wwpn: Wwn::from_u64(0x5001_a4a0_0000_0b01),
            wwnn: Wwn::from_u64(0x5001_a4a0_0000_0b00),
            max: Some(254),
            inuse: Some(254),
            wwpn_known: known,
        }
    }

    #[test]
    fn create_errors_say_what_to_do() {
        let e = |code| io::Error::from_raw_os_error(code);
        let dup = explain(&create(true), &e(libc::EINVAL)).to_string();
        assert!(
            dup.contains("already exists") && dup.contains("EINVAL"),
            "{dup}"
        );
        let full = explain(&create(false), &e(libc::ENOSPC)).to_string();
        assert!(full.contains("254 of 254 NPIV vports are in use"), "{full}");
        let no_npiv = explain(&create(false), &e(libc::ENOENT)).to_string();
        assert!(no_npiv.contains("no NPIV support"), "{no_npiv}");
        let loop_ = explain(&create(false), &e(libc::EOPNOTSUPP)).to_string();
        assert!(loop_.contains("loop topology"), "{loop_}");
    }

    #[test]
    fn a_write_hbad_refused_is_told_as_its_own_with_the_path() {
        let root = std::path::Path::new("/nonexistent/sys");
        let path = std::path::Path::new("/etc/hbad-test/vport_create");
        let err = crate::sysfs::beneath::open_for_write(root, path).unwrap_err();
        let told = explain(&create(false), &err).to_string();
        assert!(told.starts_with("/etc/hbad-test/vport_create is not below the sysfs root /nonexistent/sys: refusing to write (refused)"), "{told}");
        assert!(!told.contains("journalctl"), "{told}");
    }
}
