//! The control language: one request per line, as a scenario writes it (and as the
//! `--init` file holds it).
//!
//!   zone NAME WWPN...     define (or replace) a zone: the ports that see each other
//!   unzone NAME           remove a zone
//!   logout WWPN           Clear Virtual Link: the fabric logs that port out
//!   link down | link up   stop advertising and answering (the FCF is lost) / resume
//!   refuse WWPN           answer that port's FLOGI/FDISC with LS_RJT
//!   accept WWPN           stop refusing it
//!   status                logins, zones, refusals
//!
//! WWPNs are 16 hex digits, with or without 0x, with or without colons.

use std::collections::BTreeSet;

use crate::fabric::Command;

/// Longest request line accepted: a zone of MAX_ZONE_MEMBERS WWPNs in any spelling fits.
pub const MAX_LINE: usize = 8192;
/// Most members one zone may have.
pub const MAX_ZONE_MEMBERS: usize = 256;

pub fn parse(line: &str) -> Result<Command, String> {
    if line.len() > MAX_LINE {
        return Err(format!("request longer than {MAX_LINE} bytes"));
    }
    let words: Vec<&str> = line.split_whitespace().collect();
    let one_wwpn = |words: &[&str]| match words {
        [w] => parse_wwpn(w),
        _ => Err("expected one WWPN".to_owned()),
    };
    match words.as_slice() {
        ["zone", name, members @ ..] => {
            if members.is_empty() {
                return Err(format!("zone {name}: no members (use unzone to remove it)"));
            }
            if members.len() > MAX_ZONE_MEMBERS {
                return Err(format!("zone {name}: more than {MAX_ZONE_MEMBERS} members"));
            }
            let members = members.iter().map(|w| parse_wwpn(w)).collect::<Result<BTreeSet<u64>, _>>()?;
            Ok(Command::Zone { name: (*name).to_owned(), members })
        }
        ["unzone", name] => Ok(Command::Unzone { name: (*name).to_owned() }),
        ["logout", rest @ ..] => Ok(Command::Logout { wwpn: one_wwpn(rest)? }),
        ["refuse", rest @ ..] => Ok(Command::Refuse { wwpn: one_wwpn(rest)? }),
        ["accept", rest @ ..] => Ok(Command::Accept { wwpn: one_wwpn(rest)? }),
        ["link", "down"] => Ok(Command::LinkDown),
        ["link", "up"] => Ok(Command::LinkUp),
        ["status"] => Ok(Command::Status),
        [] => Err("empty request".to_owned()),
        _ => Err(format!(
            "unknown request '{}': zone NAME WWPN..., unzone NAME, logout WWPN, link down|up, refuse WWPN, accept WWPN, status",
            line.trim()
        )),
    }
}

pub fn parse_wwpn(text: &str) -> Result<u64, String> {
    let digits: String = text
        .trim_start_matches("0x")
        .chars()
        .filter(|c| *c != ':')
        .collect();
    if digits.len() != 16 || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!(
            "'{text}' is not a WWPN (16 hex digits, 0x or colons allowed)"
        ));
    }
    u64::from_str_radix(&digits, 16).map_err(|e| format!("'{text}': {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse() {
        assert_eq!(
            parse("zone a 0x5001a4a000000a01 20:00:02:00:00:00:00:0a").unwrap(),
            Command::Zone {
                name: "a".into(),
                members: [0x5001_a4a0_0000_0a01, 0x2000_0200_0000_000a].into()
            }
        );
        assert_eq!(
            parse("unzone a").unwrap(),
            Command::Unzone { name: "a".into() }
        );
        assert_eq!(
            parse("logout 5001a4a000000a01").unwrap(),
            Command::Logout {
                wwpn: 0x5001_a4a0_0000_0a01
            }
        );
        assert_eq!(parse("  link down\n").unwrap(), Command::LinkDown);
        assert_eq!(parse("link up").unwrap(), Command::LinkUp);
        assert_eq!(
            parse("refuse 0x5001a4a000000a01").unwrap(),
            Command::Refuse {
                wwpn: 0x5001_a4a0_0000_0a01
            }
        );
        assert_eq!(
            parse("accept 0x5001a4a000000a01").unwrap(),
            Command::Accept {
                wwpn: 0x5001_a4a0_0000_0a01
            }
        );
        assert_eq!(parse("status").unwrap(), Command::Status);
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        for (line, want) in [
            ("", "empty"),
            ("zone a", "no members"),
            ("zone a 0x12", "not a WWPN"),
            ("logout", "one WWPN"),
            ("logout 0x5001a4a000000a01 0x5001a4a000000a02", "one WWPN"),
            ("link sideways", "unknown request"),
            ("refuse 0xg001a4a000000a01", "not a WWPN"),
        ] {
            let e = parse(line).unwrap_err();
            assert!(e.contains(want), "{line}: {e}");
        }
        assert!(parse(&"x".repeat(MAX_LINE + 1))
            .unwrap_err()
            .contains("longer than"));
        let many = (0..=MAX_ZONE_MEMBERS)
            .map(|i| format!("{i:016x}"))
            .collect::<Vec<_>>()
            .join(" ");
        assert!(parse(&format!("zone big {many}"))
            .unwrap_err()
            .contains("more than"));
    }
}
