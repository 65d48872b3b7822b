//! What reaches a terminal: strings hbad did not write itself (an array's INQUIRY
//! vendor and model, a vport's symbolic name, a device name given on the command
//! line) are shown with their control characters escaped, in every text view.

use std::path::Path;
use std::process::Command;

/// A copy of the qla2xxx NPIV layout whose LUN 7:0:0:0 says its vendor is a colour
/// change and a second line, and whose vport-7:0-1 retitles the terminal.
fn hostile_layout() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new("cp")
        .arg("-a")
        .arg("tests/fixtures/layouts/qla2xxx-npiv/.")
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    let host7 = dir
        .path()
        .join("sys/devices/pci0000:00/0000:00:03.0/0000:08:00.0/host7");
    std::fs::write(
        host7.join("rport-7:0-0/target7:0:0/7:0:0:0/vendor"),
        "\u{1b}[31mEVIL\u{1b}[0m\nline2",
    )
    .unwrap();
    std::fs::write(
        host7.join("vport-7:0-1/fc_vports/vport-7:0-1/symbolic_name"),
        "hbad:x\u{1b}]0;pwned\u{7}",
    )
    .unwrap();
    dir
}

fn hbad(root: &Path, args: &[&str]) -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hbad"))
        .env_remove("HBAD_POLICY")
        .arg("--sysfs-root")
        .arg(root.join("sys"))
        .arg("--dev-root")
        .arg(root.join("dev"))
        .args(args)
        .output()
        .unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn sysfs_strings_and_command_line_values_are_shown_escaped() {
    let root = hostile_layout();
    for args in [
        &["tree"][..],
        &["list"],
        &["list", "--cap", "lun"],
        &["list", "--cap", "vport"],
        &["luns"],
        &["show", "7:0:0:0"],
        &["show", "vport-7:0-1"],
        &["luns", "1:0:0:\u{1b}[31m"],
        &["show", "\u{1b}]0;t\u{7}"],
    ] {
        let (stdout, stderr) = hbad(root.path(), args);
        for text in [&stdout, &stderr] {
            assert!(
                !text.contains('\u{1b}') && !text.contains('\u{7}'),
                "{args:?}: {text:?}"
            );
            assert!(!text.contains("\nline2"), "{args:?}: {text}");
        }
    }
    let (tree, _) = hbad(root.path(), &["tree"]);
    assert!(tree.contains("\\u{1b}[31mEVIL\\u{1b}[0m\\nline2"), "{tree}");
}
