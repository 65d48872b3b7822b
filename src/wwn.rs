//! World Wide Names: the 64-bit identities of Fibre Channel ports and nodes.
//!
//! Users, SAN teams and the kernel each write WWNs their own way: sysfs prints
//! `0x2001001b32a9da4e`, switch and array consoles print `20:01:00:1b:32:a9:da:4e`,
//! and `vport_create` insists on the bare `2001001b32a9da4e`. A [`Wwn`] accepts all
//! three and can be printed in each, so nothing downstream compares strings.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A 64-bit World Wide Name (port or node).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Wwn(u64);

/// The ways a WWN is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WwnStyle {
    /// `0x2001001b32a9da4e`, as sysfs prints it.
    Sysfs,
    /// `2001001b32a9da4e`, as `vport_create` wants it.
    Bare,
    /// `20:01:00:1b:32:a9:da:4e`, as switches and arrays print it.
    Colon,
}

/// Network Address Authority: the top nibble, which says how the rest is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Naa {
    /// 1: IEEE 48-bit address (`10:00:` + MAC).
    Ieee48,
    /// 2: IEEE extended (`2x:xx:` + MAC), common on HBAs.
    IeeeExtended,
    /// 3: locally assigned.
    Local,
    /// 5: IEEE registered (`5` + 24-bit OUI + 36-bit vendor value).
    IeeeRegistered,
    /// 6: IEEE registered extended (128-bit; only the first half fits here).
    IeeeRegisteredExtended,
    /// Anything else (0, 4, 7..=15): reserved or not a port name.
    Other(u8),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{input}` is not a WWN: {why}; write 16 hex digits as 0x2001001b32a9da4e, \
     2001001b32a9da4e or 20:01:00:1b:32:a9:da:4e"
)]
pub struct WwnError {
    input: String,
    why: &'static str,
}

impl Wwn {
    pub const fn from_u64(value: u64) -> Self {
        Wwn(value)
    }

    pub const fn as_u64(self) -> u64 {
        self.0
    }

    pub fn naa(self) -> Naa {
        match (self.0 >> 60) as u8 {
            1 => Naa::Ieee48,
            2 => Naa::IeeeExtended,
            3 => Naa::Local,
            5 => Naa::IeeeRegistered,
            6 => Naa::IeeeRegisteredExtended,
            other => Naa::Other(other),
        }
    }

    /// The 24-bit OUI of an NAA 5 name (`5` + OUI + 36 bits), if it is one.
    pub fn oui(self) -> Option<u32> {
        (self.naa() == Naa::IeeeRegistered).then_some(((self.0 >> 36) & 0xff_ffff) as u32)
    }

    pub fn format(self, style: WwnStyle) -> String {
        match style {
            WwnStyle::Sysfs => format!("0x{:016x}", self.0),
            WwnStyle::Bare => format!("{:016x}", self.0),
            WwnStyle::Colon => {
                let b = self.0.to_be_bytes();
                format!(
                    "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                    b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]
                )
            }
        }
    }

    /// Reads a WWN the way sysfs writes one, where drivers are less tidy than users:
    /// `0x0` (FCoE's fabric_name without a switch) and `0xffffffffffffffff` (not filled
    /// in yet) both mean "no name" and give `None`.
    pub fn from_sysfs(text: &str) -> Option<Wwn> {
        let digits = text.trim().strip_prefix("0x").unwrap_or(text.trim());
        if digits.is_empty() || digits.len() > 16 {
            return None;
        }
        match u64::from_str_radix(digits, 16) {
            Ok(0) | Ok(u64::MAX) | Err(_) => None,
            Ok(v) => Some(Wwn(v)),
        }
    }
}

impl FromStr for Wwn {
    type Err = WwnError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |why| WwnError {
            input: input.to_string(),
            why,
        };
        let s = input.trim();
        let digits: String = if s.contains(':') {
            let groups: Vec<&str> = s.split(':').collect();
            if groups.len() != 8 || groups.iter().any(|g| g.len() != 2) {
                return Err(err("colon form needs 8 groups of 2 hex digits"));
            }
            groups.concat()
        } else {
            let bare = s
                .strip_prefix("0x")
                .or_else(|| s.strip_prefix("0X"))
                .unwrap_or(s);
            bare.to_string()
        };
        if digits.len() != 16 {
            return Err(err("need exactly 16 hex digits"));
        }
        if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(err("only hex digits 0-9 and a-f are allowed"));
        }
        let value = u64::from_str_radix(&digits, 16).map_err(|_| err("not a hex number"))?;
        Ok(Wwn(value))
    }
}

impl fmt::Display for Wwn {
    /// The sysfs style: what an administrator can grep for in /sys.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:016x}", self.0)
    }
}

impl fmt::Debug for Wwn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Wwn(0x{:016x})", self.0)
    }
}

impl Serialize for Wwn {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Wwn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Which of a vHBA's two names is derived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WwnRole {
    Port,
    Node,
}

/// The OUI libvirt uses for the WWNs it generates (Red Hat's), hbad's default too.
pub const DEFAULT_OUI: u32 = 0x001a4a;

/// Derives a stable WWN for a policy vHBA that does not spell its WWNs out.
///
/// Algorithm version 1, fixed: a change would give every derived vHBA a new identity
/// and break the SAN's zoning, so any new algorithm gets a new version and an opt-in.
///
/// ```text
/// digest = SHA-256("hbad-wwn-v1" NUL seed NUL vhba-name NUL role)   role: "port" | "node"
/// wwn    = 0x5 << 60 | oui << 36 | (first 36 bits of digest)
/// ```
///
/// The seed is the host's /etc/machine-id unless the policy sets one, so the same
/// name gives different WWNs on different hosts and the same WWNs on every boot.
pub fn derive(oui: u32, seed: &str, name: &str, role: WwnRole) -> Wwn {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"hbad-wwn-v1\0");
    h.update(seed.as_bytes());
    h.update(b"\0");
    h.update(name.as_bytes());
    h.update(b"\0");
    h.update(match role {
        WwnRole::Port => b"port".as_slice(),
        WwnRole::Node => b"node".as_slice(),
    });
    let d = h.finalize();
    let first = u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]);
    let value36 = first >> 28;
    Wwn(0x5 << 60 | (u64::from(oui) & 0xff_ffff) << 36 | value36)
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: u64 = 0x2001_001b_32a9_da4e;

    #[test]
    fn parses_every_accepted_style() {
        for text in [
            "0x2001001b32a9da4e",
            "2001001b32a9da4e",
            "20:01:00:1b:32:a9:da:4e",
            "20:01:00:1B:32:A9:DA:4E",
            " 0X2001001B32A9DA4E\n",
        ] {
            assert_eq!(text.parse::<Wwn>().unwrap().as_u64(), W, "{text}");
        }
    }

    #[test]
    fn formats_round_trip_in_every_style() {
        let wwn = Wwn::from_u64(W);
        assert_eq!(wwn.format(WwnStyle::Sysfs), "0x2001001b32a9da4e");
        assert_eq!(wwn.format(WwnStyle::Bare), "2001001b32a9da4e");
        assert_eq!(wwn.format(WwnStyle::Colon), "20:01:00:1b:32:a9:da:4e");
        for style in [WwnStyle::Sysfs, WwnStyle::Bare, WwnStyle::Colon] {
            assert_eq!(wwn.format(style).parse::<Wwn>().unwrap(), wwn);
        }
    }

    #[test]
    fn rejects_malformed_names_showing_accepted_forms() {
        for bad in [
            "",
            "0x",
            "2001001b32a9da4",
            "2001001b32a9da4e0",
            "2001001b32a9da4g",
            "20:01:00:1b:32:a9:da",
            "20:01:00:1b:32:a9:da:4e:00",
            "2:001:00:1b:32:a9:da:4e",
            "0x2001001b32a9da4e:1000001b32a9da4e",
            "+001001b32a9da4e",
            "héllo",
        ] {
            let err = bad.parse::<Wwn>().unwrap_err().to_string();
            assert!(err.contains("20:01:00:1b:32:a9:da:4e"), "{bad}: {err}");
        }
    }

    #[test]
    fn naa_and_oui_come_from_the_top_bits() {
        assert_eq!(Wwn::from_u64(W).naa(), Naa::IeeeExtended);
        assert_eq!(Wwn::from_u64(0x1000_0000_c9a1_b2c3).naa(), Naa::Ieee48);
        let libvirt = Wwn::from_u64(0x5001_a4a1_2345_6789);
        assert_eq!(libvirt.naa(), Naa::IeeeRegistered);
        assert_eq!(libvirt.oui(), Some(0x001a4a));
        assert_eq!(Wwn::from_u64(W).oui(), None);
    }

    #[test]
    fn derived_names_are_stable_distinct_and_naa5() {
        let p = derive(
            DEFAULT_OUI,
            "0123456789abcdef0123456789abcdef",
            "fabric-a",
            WwnRole::Port,
        );
        // Pinned: this value must never change (zoning depends on it). It was checked
        // against the documented algorithm computed independently with Python's hashlib.
        assert_eq!(p.to_string(), "0x5001a4a196c66d46");
        assert_eq!(p.naa(), Naa::IeeeRegistered);
        assert_eq!(p.oui(), Some(DEFAULT_OUI));
        let n = derive(
            DEFAULT_OUI,
            "0123456789abcdef0123456789abcdef",
            "fabric-a",
            WwnRole::Node,
        );
        let other_name = derive(
            DEFAULT_OUI,
            "0123456789abcdef0123456789abcdef",
            "fabric-b",
            WwnRole::Port,
        );
        let other_host = derive(
            DEFAULT_OUI,
            "fedcba9876543210fedcba9876543210",
            "fabric-a",
            WwnRole::Port,
        );
        assert!(p != n && p != other_name && p != other_host);
    }

    #[test]
    fn sysfs_placeholders_read_as_no_name() {
        assert_eq!(Wwn::from_sysfs("0x0\n"), None);
        assert_eq!(Wwn::from_sysfs("0xffffffffffffffff"), None);
        assert_eq!(Wwn::from_sysfs("garbage"), None);
        assert_eq!(
            Wwn::from_sysfs("0x200002000000000b\n"),
            Some(Wwn::from_u64(0x2000_0200_0000_000b))
        );
    }
}
