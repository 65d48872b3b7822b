//! Uevents: the kernel's datagrams (netlink group 1, replay files) and the property
//! lists libudev hands over for udev's group.
//!
//! libudev parses its own wire format (the `libudev` header, filter hashes) in C and
//! gives hbad the properties; what hbad parses of a udev event is that list, through
//! `Uevent::from_props`, so that is the udev target. A libudev-format datagram on the
//! kernel socket must be refused, which the kernel target's seeds include.

use std::sync::OnceLock;

use hbad::uevent::kernel::classify;
use hbad::uevent::replay;
use hbad::uevent::{parse_kernel, ParseError, Rejection, SourceItem, Uevent};
use proptest::prelude::*;

use crate::common;
use crate::harness::{fuzz, mutated, noise, Bytes};

/// A kernel datagram is at most 2 KiB of properties plus its header; the socket reads
/// 16 KiB and rejects longer ones as truncated.
const MAX_DATAGRAM: usize = 16 * 1024;

const TOKENS: &[&[u8]] = &[
    b"\0",
    b"=",
    b"@",
    b"/",
    b"/../",
    b"/..",
    b"ACTION=",
    b"DEVPATH=",
    b"SUBSYSTEM=",
    b"DEVTYPE=",
    b"SEQNUM=",
    b"SDEV_UA=",
    b"DEVPATH_OLD=",
    b"add",
    b"remove",
    b"change",
    b"move",
    b"bind",
    b"add@",
    b"change@/devices/",
    b"libudev\0",
    b"\xfe\xed\xca\xfe",
    b"18446744073709551616",
    b"-1",
    b"\xff",
    b"\xc3\xa9",
    b"scsi",
    b"scsi_device",
];

/// Every datagram of the real capture, plus a libudev-format one.
fn seeds() -> &'static Vec<Vec<u8>> {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let path = common::kernel_capture().join("events.bin");
        let data = std::fs::read(&path).expect("the kernel capture's events");
        let mut seeds: Vec<Vec<u8>> = replay::records("events.bin", &data)
            .expect("the capture's records")
            .into_iter()
            .map(|(_, body)| body)
            .collect();
        let mut udev = b"libudev\0\xfe\xed\xca\xfe".to_vec();
        udev.extend_from_slice(&[0; 32]);
        udev.extend_from_slice(b"ACTION=add\0DEVPATH=/devices/x\0SUBSYSTEM=block\0");
        seeds.push(udev);
        seeds
    })
}

fn datagrams() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        4 => mutated(seeds().clone(), TOKENS, MAX_DATAGRAM),
        1 => noise(TOKENS, MAX_DATAGRAM),
    ]
}

/// The fields of a datagram after its header, as the kernel lays them out.
fn fields(bytes: &[u8]) -> Vec<&[u8]> {
    let body = bytes.strip_suffix(b"\0").unwrap_or(bytes);
    body.split(|&b| b == 0).skip(1).collect()
}

fn has_field(bytes: &[u8], key: &str) -> bool {
    let prefix = format!("{key}=");
    fields(bytes)
        .iter()
        .any(|f| f.starts_with(prefix.as_bytes()))
}

/// Accepted datagrams have ACTION, DEVPATH and SUBSYSTEM, an absolute devpath without
/// `..`, a header that agrees with them, and survive being written back unchanged.
#[test]
fn fuzz_uevent_kernel_datagrams() {
    fuzz("uevent_kernel", 1500, datagrams(), |bytes| {
        let Ok(ev) = parse_kernel(&bytes) else {
            return Ok(());
        };
        for key in ["ACTION", "DEVPATH", "SUBSYSTEM"] {
            prop_assert!(has_field(&bytes, key), "accepted without {}: {:?}", key, ev);
        }
        prop_assert_eq!(bytes.last(), Some(&0), "accepted without the final NUL");
        prop_assert!(!bytes.starts_with(b"libudev\0"));
        prop_assert!(ev.devpath.starts_with('/'), "devpath {:?}", ev.devpath);
        prop_assert!(
            !ev.devpath.split('/').any(|c| c == ".."),
            "devpath climbs out of sysfs: {:?}",
            ev.devpath
        );
        let header = format!("{}@{}", ev.action, ev.devpath);
        prop_assert!(
            bytes.starts_with(header.as_bytes()),
            "header is not {}",
            header
        );
        let again = parse_kernel(&ev.to_kernel_bytes());
        prop_assert_eq!(again.as_ref(), Ok(&ev), "written back and read again");
        Ok(())
    });
}

/// A message from anyone but the kernel, or cut short, is rejected whatever it holds.
#[test]
fn fuzz_uevent_kernel_sender_checks() {
    let input = (any::<u32>(), any::<bool>(), datagrams());
    fuzz(
        "uevent_classify",
        600,
        input,
        |(portid, truncated, bytes)| {
            let item = classify(portid, &bytes, truncated);
            if portid != 0 {
                prop_assert_eq!(item, SourceItem::Rejected(Rejection::NotKernel(portid)));
            } else if truncated {
                prop_assert_eq!(
                    item,
                    SourceItem::Rejected(Rejection::Malformed(ParseError::Truncated))
                );
            } else {
                prop_assert!(!matches!(item, SourceItem::Overflow));
            }
            Ok(())
        },
    );
}

/// Replay files: lengths that run past the end or wrap, empty records, garbage.
#[test]
fn fuzz_uevent_replay_files() {
    let file = seeds().iter().take(40).fold(Vec::new(), |mut out, d| {
        out.extend_from_slice(&(d.len() as u32).to_le_bytes());
        out.extend_from_slice(d);
        out
    });
    const REPLAY_TOKENS: &[&[u8]] = &[
        b"\xff\xff\xff\xff",
        b"\0\0\0\0",
        b"\x04\0\0\0",
        b"\0\0\0\x80",
        b"\0",
        b"=",
    ];
    let input = prop_oneof![
        4 => mutated(vec![file], REPLAY_TOKENS, 64 * 1024),
        1 => noise(REPLAY_TOKENS, 4096),
    ];
    fuzz("uevent_replay", 300, input, |bytes| {
        if let Ok(events) = replay::parse_buffer("fuzz.bin", &bytes) {
            // Every record is at least its 4-byte length.
            prop_assert!(events.len() * 4 <= bytes.len());
        }
        Ok(())
    });
}

const KEYS: &[&str] = &[
    "ACTION",
    "DEVPATH",
    "SUBSYSTEM",
    "DEVTYPE",
    "SEQNUM",
    "DEVNAME",
    "DEVLINKS",
    "SDEV_UA",
    "ID_WWN",
    "USEC_INITIALIZED",
    "",
    "=",
    "A=B",
    "\u{e9}",
];

const VALUES: &[&str] = &[
    "add",
    "remove",
    "change",
    "bind",
    "eat",
    "",
    "/devices/pseudo_0/adapter0/host2",
    "/devices/../etc",
    "/..",
    "devices",
    "scsi",
    "block",
    "0",
    "18446744073709551615",
    "18446744073709551616",
    "-1",
    "disk",
    "a\nb",
    "\0",
    "REPORTED_LUNS_DATA_HAS_CHANGED",
];

fn property() -> impl Strategy<Value = (String, String)> {
    let key = prop_oneof![
        4 => proptest::sample::select(KEYS).prop_map(str::to_string),
        1 => "[A-Z_=\\x00-\\x1f\u{e9}]{0,12}",
    ];
    let value = prop_oneof![
        4 => proptest::sample::select(VALUES).prop_map(str::to_string),
        1 => any::<String>().prop_map(|s| s.chars().take(64).collect()),
    ];
    (key, value)
}

/// What libudev gives for one event: accepted only with ACTION, DEVPATH and
/// SUBSYSTEM, a known action, a sysfs devpath and a numeric SEQNUM.
#[test]
fn fuzz_uevent_udev_properties() {
    let input = proptest::collection::vec(property(), 0..24);
    fuzz("uevent_udev", 1500, input, |props| {
        let result = Uevent::from_props(props.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let Ok(ev) = result else {
            return Ok(());
        };
        for key in ["ACTION", "DEVPATH", "SUBSYSTEM"] {
            prop_assert!(
                props.iter().any(|(k, _)| k == key),
                "accepted without {}: {:?}",
                key,
                ev
            );
        }
        prop_assert!(ev.devpath.starts_with('/'));
        prop_assert!(
            !ev.devpath.split('/').any(|c| c == ".."),
            "{:?}",
            ev.devpath
        );
        // The event reads back the same as a kernel datagram, unless a property
        // holds what a datagram cannot carry (a NUL, or an `=` in a key).
        let datagram_safe = props
            .iter()
            .all(|(k, v)| !k.contains(['\0', '=']) && !k.is_empty() && !v.contains('\0'));
        if datagram_safe {
            let again = parse_kernel(&ev.to_kernel_bytes());
            prop_assert_eq!(again.as_ref(), Ok(&ev));
        }
        Ok(())
    });
}
