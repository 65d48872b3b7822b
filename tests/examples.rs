//! The shipped policies (config/hbad.toml and config/examples/) as `hbad check`, the
//! binary, reads them: each is valid, draws no warning, and declares the vHBAs its
//! comments promise. They are installed as documentation and copied by hand, so a
//! key renamed in src/policy/ must fail here, not on a host.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// The examples and how many vHBAs each declares.
const EXAMPLES: &[(&str, usize)] = &[
    // Installed as /etc/hbad/hbad.toml: declares nothing until edited.
    ("config/hbad.toml", 0),
    ("config/examples/fabric-pair.toml", 2),
    ("config/examples/parent-by-wwpn.toml", 2),
    ("config/examples/auto-parent.toml", 1),
    ("config/examples/iscsi-rescan-only.toml", 0),
    ("config/examples/exclude-local-raid.toml", 1),
];

fn has_machine_id() -> bool {
    std::fs::read_to_string("/etc/machine-id").is_ok_and(|s| !s.trim().is_empty())
}

/// `hbad check` on one example. Without /etc/machine-id (some containers) derived WWNs
/// have no seed, so the example is checked as a policy directory whose drop-in sets one:
/// the example itself is still read and validated whole.
fn check(example: &Path, scratch: &Path) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hbad"));
    cmd.env_remove("HBAD_POLICY");
    if has_machine_id() {
        cmd.arg("check").arg(example);
    } else {
        let dir = scratch.join(example.file_stem().unwrap());
        std::fs::create_dir_all(dir.join("hbad.d")).unwrap();
        std::fs::copy(example, dir.join("hbad.toml")).unwrap();
        std::fs::write(
            dir.join("hbad.d/00-seed.toml"),
            "[wwn]\nseed = \"examples-test\"\n",
        )
        .unwrap();
        cmd.arg("check").arg(&dir);
    }
    cmd.output().unwrap()
}

#[test]
fn every_shipped_policy_passes_hbad_check_without_warnings() {
    if !has_machine_id() {
        eprintln!("no /etc/machine-id: derived WWNs are seeded by a drop-in");
    }
    let scratch = tempfile::tempdir().unwrap();
    for (rel, vhbas) in EXAMPLES {
        let out = check(&repo(rel), scratch.path());
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{rel} rejected:\n{stdout}{stderr}");
        let want = format!("ok ({vhbas} vHBA{}", if *vhbas == 1 { "" } else { "s" });
        assert!(
            stdout.contains(&want),
            "{rel}: wanted `{want}`, got {stdout}"
        );
        assert!(stderr.is_empty(), "{rel} draws warnings:\n{stderr}");
    }
}

#[test]
fn every_example_in_the_directory_is_covered() {
    let mut on_disk: Vec<String> = std::fs::read_dir(repo("config/examples"))
        .unwrap()
        .map(|e| {
            format!(
                "config/examples/{}",
                e.unwrap().file_name().to_string_lossy()
            )
        })
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = EXAMPLES
        .iter()
        .map(|(p, _)| p.to_string())
        .filter(|p| p.starts_with("config/examples/"))
        .collect();
    listed.sort();
    assert_eq!(on_disk, listed, "add new examples to EXAMPLES");
}

/// The check above can fail: the same examples with one misspelt key are rejected,
/// each naming the file and the key.
#[test]
fn a_misspelt_key_in_any_example_is_rejected() {
    let scratch = tempfile::tempdir().unwrap();
    for (rel, _) in EXAMPLES {
        let text = std::fs::read_to_string(repo(rel)).unwrap();
        let broken = scratch.path().join(Path::new(rel).file_name().unwrap());
        std::fs::write(&broken, format!("on_lun_chnage = true\n{text}")).unwrap();
        let out = check(&broken, &scratch.path().join("dirs"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{rel} with a typo accepted");
        assert!(stderr.contains("on_lun_chnage"), "{rel}: {stderr}");
    }
}

/// The installed policy's placeholders stay valid: uncommenting every table header and
/// `key = value` line gives a policy `hbad check` accepts, with the three vHBAs shown.
#[test]
fn the_installed_policy_placeholders_are_a_valid_policy_when_uncommented() {
    let text = std::fs::read_to_string(repo("config/hbad.toml")).unwrap();
    let uncommented: String = text
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest)
                if rest.starts_with('[')
                    || rest.split_once(" = ").is_some_and(|(k, _)| {
                        k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                    }) =>
            {
                rest
            }
            _ => line,
        })
        .map(|line| format!("{line}\n"))
        .collect();
    let scratch = tempfile::tempdir().unwrap();
    let edited = scratch.path().join("hbad.toml");
    std::fs::write(&edited, uncommented).unwrap();
    let out = check(&edited, &scratch.path().join("dirs"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("ok (3 vHBAs"), "{stdout}");
}
