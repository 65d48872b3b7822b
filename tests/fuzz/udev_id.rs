//! `hbad udev-id`, which udev runs for every disk event (`IMPORT{program}`): whatever
//! the devpath and whatever sysfs holds, it prints only `KEY=VALUE` lines with keys
//! of its own and values without control characters, and never crashes.
//!
//! It runs as the binary udev runs, on the demo host with a vHBA hbad owns, with
//! the devpath and the attributes it reads (the vport's symbolic_name, which carries
//! the owner mark, and the remote port's WWPN) fuzzed.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use hbad::sim::demo::{ARRAY_PORT_A, HBA_A_WWPN};
use hbad::sim::Sim;
use hbad::sysfs::writes::{vport_text, AttrWriter};
use hbad::sysfs::{Hctl, VportControlDir};
use hbad::wwn::Wwn;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use crate::harness::{fuzz, mutated, noise, text, Bytes};

const VHBA: Wwn = Wwn::from_u64(0x5001_a4a0_0000_0a01);
const VHBA_NODE: Wwn = Wwn::from_u64(0x5001_a4a0_0000_0a00);

/// The keys udev-id may set.
const KEYS: &[&str] = &["HBAD_VHBA", "HBAD_TARGET_WWPN", "HBAD_LUN"];

/// A demo host with LUN 1 reached through an hbad vHBA named `vm-a`.
struct Host {
    _dir: tempfile::TempDir,
    sys: PathBuf,
    dev: PathBuf,
    state: PathBuf,
    disk: String,
    symbolic_name: PathBuf,
    rport_name: PathBuf,
}

fn host() -> Host {
    let dir = tempfile::tempdir().expect("temporary directory");
    let sim = Sim::demo_host(&dir.path().join("host")).expect("the demo host");
    sim.map_lun(ARRAY_PORT_A, 1, VHBA).expect("map LUN 1");
    let parent = sim.host_by_wwpn(HBA_A_WWPN).expect("HBA A");
    let pdev = sim.host_devpath(parent).expect("HBA A's devpath");
    sim.write_attr(
        &sim.sysfs()
            .vport_create_path(&pdev, VportControlDir::FcHost),
        &vport_text(VHBA, VHBA_NODE),
    )
    .expect("create the vHBA");
    let vhba = sim.host_by_wwpn(VHBA).expect("the vHBA's host");
    let hctl = Hctl {
        host: vhba,
        channel: 0,
        target: 0,
        lun: 1,
    };
    let lun = sim.lun_devpath(hctl).expect("LUN 1 through the vHBA");
    let disk = format!(
        "{lun}/block/{}",
        sim.sysfs().list(&format!("{lun}/block"))[0]
    );
    let parts: Vec<&str> = disk.split('/').collect();
    let at = |prefix: &str| {
        let i = parts
            .iter()
            .position(|p| p.starts_with(prefix))
            .expect("the path goes through it");
        parts[..=i].join("/")
    };
    let (vport, rport) = (at("vport-"), at("rport-"));
    let rport_name = rport.rsplit('/').next().unwrap_or_default().to_string();
    let sysfs = sim.sysfs();
    let symbolic_name = sysfs.vport_symbolic_name_path(&vport);
    sim.write_attr(&symbolic_name, "hbad:vm-a")
        .expect("mark the vHBA");
    let host = Host {
        sys: sysfs.root().to_path_buf(),
        dev: sysfs.dev_root().to_path_buf(),
        state: dir.path().join("owned.json"),
        disk,
        symbolic_name,
        rport_name: sysfs
            .path(&format!("{rport}/fc_remote_ports/{rport_name}"))
            .join("port_name"),
        _dir: dir,
    };
    assert!(host.symbolic_name.is_file() && host.rport_name.is_file());
    // The unfuzzed host gives the three lines.
    let (code, out, _) = udev_id(&host, &host.disk);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(
        out,
        format!("HBAD_VHBA=vm-a\nHBAD_TARGET_WWPN={ARRAY_PORT_A}\nHBAD_LUN=1\n")
    );
    host
}

fn udev_id(host: &Host, devpath: &str) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hbad"))
        .arg("--sysfs-root")
        .arg(&host.sys)
        .arg("--dev-root")
        .arg(&host.dev)
        .arg("udev-id")
        .arg("--state-file")
        .arg(&host.state)
        .arg(devpath)
        .env_remove("HBAD_SYSFS_ROOT")
        .env_remove("HBAD_DEV_ROOT")
        .env_remove("HBAD_POLICY")
        .output()
        .expect("run hbad udev-id");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// What udev may import: each line KEY=VALUE, a key of ours at most once, a value
/// that is not empty and holds no control character.
fn importable(code: Option<i32>, stdout: &str, stderr: &str) -> Result<(), TestCaseError> {
    prop_assert!(
        matches!(code, Some(0 | 1)),
        "exit {:?} (a udev program must not crash): {}",
        code,
        stderr
    );
    prop_assert!(!stderr.contains("panicked"), "{}", stderr);
    let mut seen = Vec::new();
    for line in stdout.lines() {
        let Some((key, value)) = line.split_once('=') else {
            return Err(TestCaseError::fail(format!("not KEY=VALUE: {line:?}")));
        };
        prop_assert!(KEYS.contains(&key), "key {:?} in {:?}", key, stdout);
        prop_assert!(!seen.contains(&key), "{} twice in {:?}", key, stdout);
        seen.push(key);
        prop_assert!(!value.is_empty(), "{} is empty", key);
        prop_assert!(
            !value.chars().any(char::is_control),
            "control character in {}={:?}",
            key,
            value
        );
    }
    prop_assert!(stdout.is_empty() || stdout.ends_with('\n'));
    Ok(())
}

const PATH_TOKENS: &[&[u8]] = &[
    b"/",
    b"//",
    b"/..",
    b"/../",
    b"/.",
    b"vport-",
    b"rport-",
    b"host",
    b"target",
    b":",
    b"-",
    b"0",
    b"1:0:0:1",
    b"4294967296",
    b"18446744073709551616",
    b"\n",
    b"block",
    b"sdz1",
    b"\xc3\xa9",
];

const WWN_TOKENS: &[&[u8]] = &[
    b"0x",
    b"\n",
    b"\0",
    b"0xffffffffffffffff",
    b"0x0",
    b"0x2001001b32a9da4e",
    b" ",
    b"g",
];

const NAME_TOKENS: &[&[u8]] = &[
    b"hbad:",
    b"\n",
    b"\r",
    b"\0",
    b"\x1b[2J",
    b"=",
    b"HBAD_LUN=7\n",
    b"/",
    b".",
    b"..",
    b" ",
    b"\t",
    b"\xc3\xa9",
    b"\x7f",
    b"$(reboot)",
    b"'",
    b"\"",
];

/// Devpaths (real ones cut and spliced, and noise) and remote-port WWPNs; the owner
/// mark stays a valid one.
#[test]
fn fuzz_udev_id_devpath_and_wwpn() {
    let host = Arc::new(host());
    let devpath = prop_oneof![
        4 => mutated(vec![host.disk.as_bytes().to_vec()], PATH_TOKENS, 4096),
        1 => noise(PATH_TOKENS, 512),
    ];
    let wwpn = prop_oneof![
        2 => Just(Bytes(format!("{ARRAY_PORT_A}\n").into_bytes())),
        1 => mutated(vec![format!("{ARRAY_PORT_A}\n").into_bytes()], WWN_TOKENS, 256),
    ];
    let h = host.clone();
    fuzz("udev_id", 40, (devpath, wwpn), move |(devpath, wwpn)| {
        std::fs::write(&h.rport_name, &wwpn).expect("write port_name");
        // What the rule passes is udev's %p, the kernel's devpath: an argument (no
        // NUL) that starts with '/' (one starting with '-' would be read as an option).
        let mut devpath = text(&devpath).replace('\0', "");
        if !devpath.starts_with('/') {
            devpath.insert(0, '/');
        }
        let (code, out, err) = udev_id(&h, &devpath);
        importable(code, &out, &err)
    });
}

/// The vport's symbolic_name, which anyone with root (or a driver) can set, fuzzed.
#[test]
fn fuzz_udev_id_symbolic_name() {
    let host = Arc::new(host());
    let name = prop_oneof![
        3 => mutated(vec![b"hbad:vm-a".to_vec(), b"hbad:vm-a\n".to_vec()], NAME_TOKENS, 256),
        1 => noise(NAME_TOKENS, 256),
    ];
    let h = host.clone();
    fuzz("udev_id_symbolic_name", 60, name, move |name| {
        std::fs::write(&h.symbolic_name, &name).expect("write symbolic_name");
        let (code, out, err) = udev_id(&h, &h.disk);
        importable(code, &out, &err)
    });
}

/// What `fuzz_udev_id_symbolic_name` found: a newline in the vport's symbolic_name
/// (anyone with root can write it) becomes a property of udev's choosing.
#[test]
fn regression_a_newline_in_symbolic_name_injects_no_property() {
    let host = host();
    std::fs::write(
        &host.symbolic_name,
        "hbad:vm-a\nHBAD_LUN=7\nSYSTEMD_WANTS=evil.service\n",
    )
    .expect("write symbolic_name");
    let (code, out, err) = udev_id(&host, &host.disk);
    if let Err(e) = importable(code, &out, &err) {
        panic!("{e}");
    }
}
