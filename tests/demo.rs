//! `hbad demo`, the README's first command, tells its whole story and exits 0.

use std::process::Command;

#[test]
fn demo_creates_the_vhbas_and_finds_the_new_luns_with_stable_paths() {
    let out = Command::new(env!("CARGO_BIN_EXE_hbad"))
        .arg("demo")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "vHBA vm-a created on host1",
        "vHBA vm-b created on host2",
        "ready: 2/2 vHBAs active",
        "/dev/disk/by-path/pci-0000:3b:00.0-fc-0x5000144000000101-lun-29",
        "/dev/disk/by-path/pci-0000:3b:00.1-fc-0x5000144000000102-lun-53",
    ] {
        assert!(stdout.contains(want), "`{want}` missing from:\n{stdout}");
    }
    // The two vHBAs are made in parallel (one worker per parent), so which of
    // them the kernel numbers host3 varies; each new LUN is on a vHBA host.
    for (lun, target) in [(29, "0x5000144000000101"), (53, "0x5000144000000102")] {
        let found = stdout.lines().any(|l| {
            l.contains(&format!("new LUN {lun} on host"))
                && l.contains(&format!("via target {target}"))
                && (l.contains("host3") || l.contains("host4"))
        });
        assert!(found, "new LUN {lun} via {target} missing from:\n{stdout}");
    }
    // Only the two targets that reported new storage were scanned for it.
    let mut writes: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("What hbad wrote"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .collect();
    writes.sort();
    assert_eq!(
        writes,
        [
            "  scsi_host/host3/scan <- \"0 0 -\"",
            "  scsi_host/host4/scan <- \"0 0 -\"",
        ]
    );
}
