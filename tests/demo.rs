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
    // The two vHBAs are created in parallel (one worker per parent), so which gets
    // host3 and which host4 is the kernel's choice, as on a real host: follow it.
    let host_of = |vhba: &str| -> String {
        let said = format!("vHBA {vhba} is ");
        stdout
            .lines()
            .filter(|l| l.contains(&format!("vHBA {vhba} created on ")))
            .find_map(|l| l.split_once(said.as_str()))
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no creation of {vhba} in:\n{stdout}"))
            .to_string()
    };
    let (host_a, host_b) = (host_of("vm-a"), host_of("vm-b"));
    assert_ne!(host_a, host_b, "{stdout}");
    let lun_29 = format!("new LUN 29 on {host_a} via target 0x5000144000000101");
    let lun_53 = format!("new LUN 53 on {host_b} via target 0x5000144000000102");
    for want in [
        "vHBA vm-a created on host1",
        "vHBA vm-b created on host2",
        "ready: 2/2 vHBAs active",
        lun_29.as_str(),
        lun_53.as_str(),
        "/dev/disk/by-path/pci-0000:3b:00.0-fc-0x5000144000000101-lun-29",
        "/dev/disk/by-path/pci-0000:3b:00.1-fc-0x5000144000000102-lun-53",
    ] {
        assert!(stdout.contains(want), "`{want}` missing from:\n{stdout}");
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

#[test]
fn demo_keeps_its_tree_in_a_relative_directory_or_one_with_quotes_in_its_name() {
    let base = tempfile::tempdir().unwrap();
    for keep in ["reldemo", "q\"x\\y"] {
        let out = Command::new(env!("CARGO_BIN_EXE_hbad"))
            .current_dir(base.path())
            .args(["demo", "--keep", keep])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "--keep {keep}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let kept = base.path().join(keep);
        assert!(kept.join("sys").is_dir(), "--keep {keep}");
        // The state file is where the policy said, under the absolute directory.
        let state_line = format!(
            "state_file = {}",
            toml::Value::String(kept.join("state/owned-vhbas.json").display().to_string())
        );
        assert!(
            stdout.contains(&state_line),
            "`{state_line}` missing:\n{stdout}"
        );
    }
}
