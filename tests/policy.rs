//! Policy files: the bad-file corpus with the exact errors each must give, the
//! example policies, and drop-in merging.

use std::fs;
use std::path::{Path, PathBuf};

use hbad::policy::{discover, Environment, ParentSelector, Policy, SearchPaths};

fn env() -> Environment {
    Environment::fixed("0123456789abcdef0123456789abcdef")
}

/// Each `bad/NAME.toml` must be rejected with exactly the text in `bad/NAME.err`
/// (paths relative to the crate, as `hbad check tests/fixtures/...` prints them).
#[test]
fn every_bad_policy_gives_its_exact_error() {
    let dir = Path::new("tests/fixtures/policy/bad");
    let mut cases: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 30, "the corpus shrank to {}", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let expected = fs::read_to_string(case.with_extension("err")).unwrap();
        match Policy::load_files(std::slice::from_ref(case), &env()) {
            Ok(_) => failures.push(format!("{}: accepted", case.display())),
            Err(errors) => {
                let got = format!("{errors}\n");
                if got != expected {
                    failures.push(format!(
                        "{}:\n  expected: {expected}\n  got:      {got}",
                        case.display()
                    ));
                }
                // Every error names a position in the file it came from.
                for e in &errors.0 {
                    assert_eq!(&*e.origin.file, case.as_path());
                    assert!(e.origin.line >= 1, "{e}");
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn shipped_examples_are_valid() {
    let mut checked = 0;
    for dir in ["config", "tests/fixtures/policy/good"] {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let policy = Policy::load_files(std::slice::from_ref(&path), &env())
                    .unwrap_or_else(|e| panic!("{e}"));
                assert!(
                    policy.warnings.is_empty(),
                    "{}: {:?}",
                    path.display(),
                    policy.warnings
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 2);
}

const MAIN: &str = r#"
[[vhba]]
name = "fabric-a"
parent_wwpn = "0x2100001b32a9da4e"

[[vhba]]
name = "fabric-b"
parent_fabric = "0x100000051e0d4f21"

[rescan]
debounce = "200ms"
scope = "target"
"#;

#[test]
fn drop_ins_replace_vhbas_by_name_and_merge_settings_key_by_key() {
    let root = tempfile::tempdir().unwrap();
    let sp = SearchPaths::under(root.path());
    fs::create_dir_all(sp.main.parent().unwrap()).unwrap();
    fs::create_dir_all(&sp.dropin_dirs[2]).unwrap();
    fs::write(&sp.main, MAIN).unwrap();
    fs::write(
        sp.dropin_dirs[2].join("50-site.toml"),
        "[[vhba]]\nname = \"fabric-b\"\nparent = \"auto\"\n\n[rescan]\nscope = \"host\"\n",
    )
    .unwrap();
    let files = discover(None, &sp).unwrap();
    let p = Policy::load_files(&files, &env()).unwrap();
    assert_eq!(p.vhbas.len(), 2);
    assert_eq!(p.vhba("fabric-b").unwrap().parent, ParentSelector::Auto);
    assert!(p
        .vhba("fabric-b")
        .unwrap()
        .origin
        .file
        .ends_with("50-site.toml"));
    assert_eq!(p.rescan.scope, hbad::policy::ScopeChoice::Host);
    // Untouched keys keep the main file's values.
    assert_eq!(p.rescan.debounce, std::time::Duration::from_millis(200));
}

#[test]
fn derived_wwns_are_stable_and_distinct_per_name_and_host() {
    let a = Policy::from_str(Path::new("a.toml"), MAIN, &env()).unwrap();
    let again = Policy::from_str(Path::new("a.toml"), MAIN, &env()).unwrap();
    let other_host =
        Policy::from_str(Path::new("a.toml"), MAIN, &Environment::fixed("ffff")).unwrap();
    let (fa, fb) = (a.vhba("fabric-a").unwrap(), a.vhba("fabric-b").unwrap());
    assert!(fa.wwpn_derived && fa.wwnn_derived);
    assert_eq!(fa.wwpn, again.vhba("fabric-a").unwrap().wwpn);
    assert_ne!(fa.wwpn, fb.wwpn);
    assert_ne!(fa.wwpn, fa.wwnn);
    assert_ne!(fa.wwpn, other_host.vhba("fabric-a").unwrap().wwpn);
    assert_eq!(fa.wwpn.oui(), Some(0x001a4a));
}

#[test]
fn a_parent_named_by_host_number_is_accepted_with_a_warning() {
    let p = Policy::from_str(
        Path::new("w.toml"),
        "[[vhba]]\nname = \"x\"\nparent = \"host5\"\n",
        &env(),
    )
    .unwrap();
    assert_eq!(p.vhbas[0].parent, ParentSelector::Host { number: 5 });
    assert_eq!(p.warnings.len(), 1);
    assert!(
        p.warnings[0].to_string().contains("w.toml:3:10"),
        "{}",
        p.warnings[0]
    );
    assert!(p.warnings[0]
        .to_string()
        .contains("can change at the next boot"));
}

#[test]
fn without_machine_id_or_seed_derived_wwns_are_refused() {
    let env = Environment {
        machine_id: None,
        machine_id_path: "/etc/machine-id".into(),
    };
    let err = Policy::from_str(
        Path::new("s.toml"),
        "[[vhba]]\nname = \"x\"\nparent = \"auto\"\n",
        &env,
    )
    .unwrap_err();
    assert!(err.to_string().contains("no seed"), "{err}");
    // Fully spelled-out WWNs need no seed.
    Policy::from_str(
        Path::new("s.toml"),
        "[[vhba]]\nname = \"x\"\nwwpn = \"0x5001a4a000000b01\"\nwwnn = \"0x5001a4a000000b00\"\nparent = \"auto\"\n",
        &env,
    )
    .unwrap();
}
