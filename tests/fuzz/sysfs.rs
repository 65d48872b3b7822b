//! sysfs: the names of devices (hostN, targetH:C:T, H:C:T:L, rport-/vport-H:C-N) and
//! the attribute files drivers of every vintage fill in.
//!
//! hbad has no REPORT LUNS parser of its own: the kernel runs REPORT LUNS and shows
//! the result as H:C:T:L devices, whose names and attributes are fuzzed here (the
//! simulator's REPORT LUNS model is test code, not input handling).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hbad::graph::Graph;
use hbad::sim::Sim;
use hbad::sysfs::{host_number, port_address, target_address, Hctl, Sysfs};
use hbad::uevent::udev::HBA_SUBSYSTEMS;
use hbad::uevent::{Action, Uevent};
use proptest::prelude::*;
use proptest::sample::Index;

use crate::harness::{apply, fuzz, noise, text, Edit};

const NAME_TOKENS: &[&[u8]] = &[
    b"host",
    b"target",
    b"rport-",
    b"vport-",
    b":",
    b"-",
    b"0",
    b"1",
    b"4294967295",
    b"4294967296",
    b"18446744073709551615",
    b"18446744073709551616",
    b"+1",
    b"-1",
    b" ",
    b"\n",
    b"\xc3\xa9",
    b"scsi_host",
];

/// Device names: what parses prints back as itself.
#[test]
fn fuzz_sysfs_device_names() {
    let seeds: Vec<Vec<u8>> = [
        "host12",
        "target2:0:1",
        "1:0:0:27",
        "rport-1:0-12",
        "vport-1:0-0",
        "0:0:0:18446744073709551615",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    let input = prop_oneof![
        3 => crate::harness::mutated(seeds, NAME_TOKENS, 128),
        1 => noise(NAME_TOKENS, 128),
    ]
    .prop_map(|b| text(&b));
    fuzz("sysfs_names", 3000, input, |name| {
        if let Some(n) = host_number(&name) {
            prop_assert_eq!(host_number(&format!("host{n}")), Some(n));
        }
        if let Some((h, c, t)) = target_address(&name) {
            prop_assert_eq!(
                target_address(&format!("target{h}:{c}:{t}")),
                Some((h, c, t))
            );
        }
        for prefix in ["rport-", "vport-"] {
            if let Some((h, c, n)) = port_address(&name, prefix) {
                let again = port_address(&format!("{prefix}{h}:{c}-{n}"), prefix);
                prop_assert_eq!(again, Some((h, c, n)));
            }
        }
        if let Ok(hctl) = name.parse::<Hctl>() {
            prop_assert_eq!(hctl.to_string().parse::<Hctl>(), Ok(hctl));
        }
        Ok(())
    });
}

/// The attributes hbad reads, by file name.
const READ_ATTRIBUTES: &[&str] = &[
    "port_name",
    "node_name",
    "fabric_name",
    "port_id",
    "port_state",
    "port_type",
    "speed",
    "symbolic_name",
    "max_npiv_vports",
    "npiv_vports_inuse",
    "vport_state",
    "vport_last_state",
    "vport_type",
    "roles",
    "scsi_target_id",
    "vendor",
    "model",
    "rev",
    "type",
    "state",
    "wwid",
    "vpd_pg80",
    "size",
    "ro",
    "removable",
    "dev",
    "proc_name",
    "unique_id",
];

const ATTR_TOKENS: &[&[u8]] = &[
    b"0x",
    b"\n",
    b"\0",
    b"-1",
    b"4294967295",
    b"4294967296",
    b"18446744073709551615",
    b"36028797018963968",
    b"0xffffffffffffffff",
    b"0x0",
    b"Online",
    b"FCP Target, ",
    b"unknown",
    b",",
    b" ",
    b"\xff\xfe",
    b"\x80\0\xff",
    b"hbad:",
    b"hbad:vm-a\nX=1",
];

/// Every attribute file of the tree that hbad reads, with the device directory it
/// belongs to (the devpath a uevent would name).
fn attribute_files(root: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack = vec![root.join("devices")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file()
                && READ_ATTRIBUTES.contains(&&*entry.file_name().to_string_lossy())
            {
                let dev = dir.strip_prefix(root).unwrap_or(&dir);
                out.push((path, format!("/{}", dev.display())));
            }
        }
    }
    out.sort();
    out
}

struct Tree {
    _dir: tempfile::TempDir,
    sysfs: Sysfs,
    files: Vec<(PathBuf, String)>,
}

/// Odd attribute contents on the demo host: loading the graph and applying events
/// for the device never panics, and what it reads stays what sysfs can mean.
#[test]
fn fuzz_sysfs_attributes() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let sim = Sim::demo_host(&dir.path().join("host")).expect("the demo host");
    let sysfs = sim.sysfs();
    let files = attribute_files(sysfs.root());
    assert!(
        files.len() > 50,
        "only {} attributes in the demo host",
        files.len()
    );
    let tree = Arc::new(Tree {
        _dir: dir,
        sysfs,
        files,
    });
    let edits = proptest::collection::vec(
        prop_oneof![
            3 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Edit::Set(i, b)),
            3 => (any::<Index>(), any::<Index>()).prop_map(|(i, t)| Edit::Token(i, t)),
            2 => (any::<Index>(), proptest::collection::vec(any::<u8>(), 1..8))
                .prop_map(|(i, b)| Edit::Insert(i, b)),
            1 => any::<Index>().prop_map(Edit::Cut),
        ],
        0..6,
    );
    let input = (any::<Index>(), edits, any::<bool>());
    let t = tree.clone();
    fuzz(
        "sysfs_attributes",
        150,
        input,
        move |(which, edits, whole)| {
            let (path, devpath) = &t.files[which.index(t.files.len())];
            let original = std::fs::read(path).unwrap_or_default();
            let mut bytes = apply(&original, &edits, ATTR_TOKENS, 8192);
            if whole && bytes == original {
                bytes = b"\xff\xfe\0garbage\n".to_vec();
            }
            std::fs::write(path, &bytes).expect("write the attribute");
            let outcome = std::panic::catch_unwind(|| {
                let mut graph = Graph::load(&t.sysfs);
                for subsystem in HBA_SUBSYSTEMS {
                    for action in [Action::Change, Action::Add] {
                        let _ = graph.apply(&Uevent::new(action, devpath, subsystem), &t.sysfs);
                    }
                }
                graph
            });
            // Put the file back before judging, so the next case starts from the real tree.
            std::fs::write(path, &original).expect("restore the attribute");
            let graph = match outcome {
                Ok(g) => g,
                Err(p) => std::panic::resume_unwind(p),
            };
            prop_assert!(!graph.is_empty());
            Ok(())
        },
    );
}
