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
    let sim = Sim::demo_host(&dir.path().join("host")).unwrap();
    let state = dir.path().join("owned.json");
    // Zoned in advance, then the vHBA is created and logs in: LUN 1 is found.
    sim.map_lun(ARRAY_PORT_A, 1, VHBA).unwrap();
    let parent = sim.host_by_wwpn(HBA_A_WWPN).unwrap();
    let pdev = sim.host_devpath(parent).unwrap();
    sim.write_attr(
        &sim.sysfs()
            .vport_create_path(&pdev, VportControlDir::FcHost),
        &vport_text(VHBA, VHBA_NODE),
    )
    .unwrap();
    let vhba = sim.host_by_wwpn(VHBA).unwrap();
    let disk = disk_of(
        &sim,
        Hctl {
            host: vhba,
            channel: 0,
            target: 0,
            lun: 1,
        },
    );
    assert!(disk.contains("/vport-"), "{disk}");

    // Not marked yet: not hbad's, nothing to import.
    assert_eq!(udev_id(&sim, &disk, &state).0, 1);

    let parts: Vec<&str> = disk.split('/').collect();
    let at = parts.iter().position(|p| p.starts_with("vport-")).unwrap();
    let vport = parts[..=at].join("/");
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
    assert_eq!(udev_id(&sim, &physical, &state), (1, String::new()));
    // Nonsense gets no answer, never a crash.
    for junk in [
        "",
        "/",
        "/devices/../../etc",
        "not-a-path",
        "/devices/x/1:0:0:0",
    ] {
        assert_eq!(udev_id(&sim, junk, &state).0, 1, "{junk}");
    }
}
