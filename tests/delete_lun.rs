//! `hbad delete-lun`, the child that writes `device/delete` while it holds the
//! disk open exclusively: what it does with nodes that are not the disk, and with
//! arguments that are not its own.

use std::process::Command;

fn delete_lun(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hbad"))
        .arg("delete-lun")
        .arg("--")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_node_that_is_not_the_disk_deletes_nothing_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let delete = dir.path().join("delete");
    std::fs::write(&delete, "").unwrap();
    let delete = delete.to_str().unwrap();
    // A character device where the disk 8:48 should be, then a node that is not there.
    for (node, says) in [
        ("/dev/null", "is not the disk 8:48"),
        ("/nonexistent/sdd", "No such file"),
    ] {
        let (code, out, err) = delete_lun(&[delete, node, "8:48"]);
        assert_eq!(code, Some(1), "{out} {err}");
        assert_eq!(out, "");
        assert!(err.contains(says), "{err}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("delete")).unwrap(),
            ""
        );
    }
}

#[test]
fn arguments_other_than_node_and_number_pairs_are_refused() {
    for args in [
        &["/sys/x/delete", "/dev/sdd", "sdd"][..],
        &["/sys/x/delete", "/dev/sdd", "8:48", "/dev/sdd1"][..],
    ] {
        let (code, out, err) = delete_lun(args);
        assert_ne!(code, Some(0), "{args:?}: {out}");
        assert_eq!(out, "");
        assert!(!err.is_empty(), "{args:?}");
    }
}
