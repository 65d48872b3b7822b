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
pub enum WwnError {
    #[error(
        "`{input}` is not a WWN: {why}; write 16 hex digits as 0x2001001b32a9da4e, \
         2001001b32a9da4e or 20:01:00:1b:32:a9:da:4e"
    )]
    Syntax { input: String, why: &'static str },
    #[error(
        "`{input}` is not a name a port can have: {why}; a 64-bit Name_Identifier \
         starts with NAA 1, 2, 3, 5 or c-f (e.g. 0x5001a4a...; omit a vHBA's wwpn/wwnn \
         to have them derived)"
    )]
    NotAName { input: String, why: String },
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
        // `from_str_radix` alone also takes a sign (`0x+1`).
        if digits.is_empty() || digits.len() > 16 || !digits.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return None;
        }
        match u64::from_str_radix(digits, 16) {
            Ok(0) | Ok(u64::MAX) | Err(_) => None,
            Ok(v) => Some(Wwn(v)),
        }
    }
}

impl Wwn {
    /// Why no Fibre Channel port or node can have this name, if none can.
    ///
    /// A 64-bit Name_Identifier (FC-FS) starts with its NAA: 1 (IEEE 48-bit), 2 (IEEE
    /// extended), 3 (locally assigned), 5 (IEEE registered), or c-f (EUI-64 mapped).
    /// NAA 6 is the first half of a 128-bit name, and 0, 4 and 7-b are reserved: a
    /// driver handed one either refuses it with a misleading errno or logs a port into
    /// the fabric under a name no switch can zone. All zeros and all ones are what
    /// drivers show for "no name yet".
    pub fn unusable_because(self) -> Option<String> {
        match self.0 {
            0 => return Some("all zeros means \"no name\"".into()),
            u64::MAX => return Some("all ones means \"no name yet\" to drivers".into()),
            _ => {}
        }
        match self.naa() {
            Naa::Ieee48 | Naa::IeeeExtended | Naa::Local | Naa::IeeeRegistered => None,
            Naa::Other(0xc..=0xf) => None,
            Naa::IeeeRegisteredExtended => {
                Some("NAA 6 is the first half of a 128-bit name, not a 64-bit one".into())
            }
            Naa::Other(n) => Some(format!("NAA {n:x} is reserved")),
        }
    }

    /// The 16 hex digits of a WWN in any accepted style, without judging the name:
    /// for looking up a port that exists (remote ports show names of every kind),
    /// never for a name hbad will create.
    pub fn parse_any(input: &str) -> Result<Wwn, WwnError> {
        let err = |why| WwnError::Syntax {
            input: crate::terminal::echoed(input),
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

/// A WWN written by a person (policy, command line): the syntax, and a name some port
/// can have. The same rules wherever a name that may reach `vport_create` comes from.
impl FromStr for Wwn {
    type Err = WwnError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let wwn = Wwn::parse_any(input)?;
        match wwn.unusable_because() {
            Some(why) => Err(WwnError::NotAName {
                input: input.trim().to_string(),
                why,
            }),
            None => Ok(wwn),
        }
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
        // Only the syntax: what hbad itself recorded (the state file) is read back
        // as written, even a name a newer hbad would refuse to create.
        let text = String::deserialize(d)?;
        Wwn::parse_any(&text).map_err(serde::de::Error::custom)
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
    fn names_no_port_can_have_are_refused() {
        for (bad, why) in [
            ("0x0000000000000000", "all zeros"),
            ("ffffffffffffffff", "all ones"),
            ("0x0001001b32a9da4e", "NAA 0"),
            ("0x4001001b32a9da4e", "NAA 4"),
            ("0x6001001b32a9da4e", "NAA 6"),
            ("0x7001001b32a9da4e", "NAA 7"),
            ("0xb001001b32a9da4e", "NAA b"),
        ] {
            let err = bad.parse::<Wwn>().unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
            assert!(err.contains("NAA 1, 2, 3, 5 or c-f"), "{bad}: {err}");
        }
        for good in [
            "0x1000001b32a9da4e",
            "0x2001001b32a9da4e",
            "0x3001001b32a9da4e",
            "0x5001a4a000000b01",
            "0xc001001b32a9da4e",
            "0xfffffffffffffffe",
        ] {
            good.parse::<Wwn>().unwrap();
        }
    }

    #[test]
    fn recorded_names_read_back_by_syntax_alone() {
        let w: Wwn = serde_json::from_str("\"0x6001001b32a9da4e\"").unwrap();
        assert_eq!(w.as_u64(), 0x6001_001b_32a9_da4e);
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
        assert_eq!(Wwn::from_sysfs("0x+1"), None);
        assert_eq!(Wwn::from_sysfs("+200002000000000b"), None);
        assert_eq!(
            Wwn::from_sysfs("0x200002000000000b\n"),
            Some(Wwn::from_u64(0x2000_0200_0000_000b))
        );
    }
}
