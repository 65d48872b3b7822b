//! `hbad udev-id`, which the by-vhba udev rule imports, on the simulated host.

use std::path::Path;
use std::process::Command;

use hbad::sim::demo::{ARRAY_PORT_A, HBA_A_WWPN};
use hbad::sim::Sim;
use hbad::sysfs::writes::{vport_text, AttrWriter};
use hbad::sysfs::{Hctl, VportControlDir};
use hbad::wwn::Wwn;

const VHBA: Wwn = Wwn::from_u64(0x5001_a4a0_0000_0a01);
const VHBA_NODE: Wwn = Wwn::from_u64(0x5001_a4a0_0000_0a00);

fn udev_id(sim: &Sim, devpath: &str, state: &Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hbad"))
        .arg("--sysfs-root")
        .arg(sim.sysfs().root())
        .arg("udev-id")
        .arg("--state-file")
        .arg(state)
        .arg(devpath)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The disk devpath of a LUN: `.../H:C:T:L/block/sdX`.
fn disk_of(sim: &Sim, hctl: Hctl) -> String {
    let lun = sim.lun_devpath(hctl).unwrap();
    let disk = sim.sysfs().list(&format!("{lun}/block"));
    format!("{lun}/block/{}", disk[0])
}

#[test]
fn a_disk_through_an_hbad_vhba_is_named_after_the_vhba() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("owned.json");
    // Zoned in advance, then the vHBA is created and logs in: LUN 1 is found.
    let (sim, disk, vport) = vhba_lun(dir.path());
    let parent = sim.host_by_wwpn(HBA_A_WWPN).unwrap();
    assert!(disk.contains("/vport-"), "{disk}");

    // Not marked yet: not hbad's, nothing to import (and no failure for udev).
    assert_eq!(udev_id(&sim, &disk, &state), (0, String::new()));

    sim.write_attr(&sim.sysfs().vport_symbolic_name_path(&vport), "hbad:vm-a")
        .unwrap();
    let (code, out) = udev_id(&sim, &disk, &state);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out,
        format!("HBAD_VHBA=vm-a\nHBAD_TARGET_WWPN={ARRAY_PORT_A}\nHBAD_LUN=1\n")
    );
    // A partition's devpath names the same disk.
    assert_eq!(udev_id(&sim, &format!("{disk}/sdz1"), &state).1, out);

    // The physical port's own LUN 0 is not through a vHBA.
    let physical = disk_of(
        &sim,
        Hctl {
            host: parent,
            channel: 0,
            target: 0,
            lun: 0,
        },
    );
    assert_eq!(udev_id(&sim, &physical, &state), (0, String::new()));
    // Nonsense gets no answer, never a crash.
    for junk in [
        "",
        "/",
        "/devices/../../etc",
        "not-a-path",
        "/devices/x/1:0:0:0",
    ] {
        assert_eq!(udev_id(&sim, junk, &state), (0, String::new()), "{junk}");
    }
}

/// The demo host with LUN 1 through a vHBA, and the disk's devpath and vport.
fn vhba_lun(dir: &Path) -> (Sim, String, String) {
    let sim = Sim::demo_host(&dir.join("host")).unwrap();
    sim.map_lun(ARRAY_PORT_A, 1, VHBA).unwrap();
    let parent = sim.host_by_wwpn(HBA_A_WWPN).unwrap();
    let pdev = sim.host_devpath(parent).unwrap();
    sim.write_attr(
        &sim.sysfs()
            .vport_create_path(&pdev, VportControlDir::FcHost),
        &vport_text(VHBA, VHBA_NODE),
    )
    .unwrap();
    let hctl = Hctl {
        host: sim.host_by_wwpn(VHBA).unwrap(),
        channel: 0,
        target: 0,
        lun: 1,
    };
    let disk = disk_of(&sim, hctl);
    let parts: Vec<&str> = disk.split('/').collect();
    let at = parts.iter().position(|p| p.starts_with("vport-")).unwrap();
    let vport = parts[..=at].join("/");
    (sim, disk, vport)
}

#[test]
fn a_symbolic_name_cannot_inject_udev_properties() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, disk, vport) = vhba_lun(dir.path());
    let state = dir.path().join("owned.json");
    let name = sim.sysfs().vport_symbolic_name_path(&vport);
    for (written, shown) in [
        ("hbad:vm-a\nHBAD_LUN=7", "vm-a_HBAD_LUN_7"),
        ("hbad:a b\r\x1b[2J$(reboot)", "a_b___2J__reboot_"),
        ("hbad:a/../../etc", "a_.._.._etc"),
    ] {
        sim.write_attr(&name, &format!("{written}\0")).unwrap();
        let (code, out) = udev_id(&sim, &disk, &state);
        assert_eq!(code, 0);
        assert_eq!(
            out,
            format!("HBAD_VHBA={shown}\nHBAD_TARGET_WWPN={ARRAY_PORT_A}\nHBAD_LUN=1\n"),
            "{written:?}"
        );
    }
    // Nothing left of a name: no vHBA to name, nothing printed.
    sim.write_attr(&name, "hbad:..\0").unwrap();
    assert_eq!(udev_id(&sim, &disk, &state), (0, String::new()));
}

#[test]
fn the_environment_does_not_choose_the_sysfs_udev_id_reads() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, disk, vport) = vhba_lun(dir.path());
    sim.write_attr(&sim.sysfs().vport_symbolic_name_path(&vport), "hbad:vm-a")
        .unwrap();
    let run = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_hbad"))
            .env("HBAD_SYSFS_ROOT", sim.sysfs().root())
            .env("HBAD_DEV_ROOT", sim.sysfs().dev_root())
            .arg("udev-id")
            .args(extra)
            .arg("--state-file")
            .arg(dir.path().join("owned.json"))
            .arg(&disk)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // udev's environment names a tree: ignored, /sys is read (no such disk there).
    assert_eq!(run(&[]), (Some(0), String::new(), String::new()));
    // Asked for, as a test does.
    let (code, out, _) = run(&["--roots-from-env"]);
    assert_eq!(code, Some(0));
    assert!(out.starts_with("HBAD_VHBA=vm-a\n"), "{out}");
}
