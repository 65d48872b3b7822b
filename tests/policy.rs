//! Policy files: the bad-file corpus with the exact errors each must give, the
//! example policies, and drop-in merging.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use hbad::policy::{discover, Environment, ParentSelector, Perms, Policy, SearchPaths};

fn env() -> Environment {
    Environment::fixed("0123456789abcdef0123456789abcdef")
}

/// Each `bad/NAME.toml` must be rejected with exactly the text in `bad/NAME.err`
/// (paths relative to the crate, as `hbad check tests/fixtures/...` prints them), and
/// every error must name the line and column of the value at fault.
#[test]
fn every_bad_policy_gives_its_exact_error() {
    let dir = Path::new("tests/fixtures/policy/bad");
    let mut cases: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 81, "the corpus shrank to {}", cases.len());
    let mut failures = Vec::new();
    let mut line_precise = 0;
    for case in &cases {
        let expected = fs::read_to_string(case.with_extension("err")).unwrap();
        match Policy::load_files(std::slice::from_ref(case), &env(), Perms::Strict) {
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
                    assert!(e.origin.line >= 1 && e.origin.column >= 1, "{e}");
                }
                line_precise += 1;
            }
        }
    }
    eprintln!(
        "{} bad policies, {line_precise} refused with file:line:col",
        cases.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn policy_dir() -> (tempfile::TempDir, SearchPaths) {
    let root = tempfile::tempdir().unwrap();
    let sp = SearchPaths::under(root.path());
    fs::create_dir_all(sp.main.parent().unwrap()).unwrap();
    fs::create_dir_all(&sp.dropin_dirs[2]).unwrap();
    (root, sp)
}

fn load(sp: &SearchPaths) -> Result<Policy, hbad::policy::PolicyErrors> {
    let files = discover(None, sp)?;
    Policy::load_files(&files, &env(), Perms::Strict)
}

#[test]
fn the_same_wwpn_in_two_drop_ins_names_both_places() {
    let (_root, sp) = policy_dir();
    fs::write(
        &sp.main,
        "[[vhba]]\nname = \"a\"\nparent = \"auto\"\nwwpn = \"0x5001a4a000000b01\"\n",
    )
    .unwrap();
    let dropin = sp.dropin_dirs[2].join("50-b.toml");
    fs::write(
        &dropin,
        "# another team's vHBA\n[[vhba]]\nname = \"b\"\nparent = \"auto\"\nwwpn = \"0x5001a4a000000b01\"\n",
    )
    .unwrap();
    let err = load(&sp).unwrap_err().to_string();
    assert!(err.contains(&format!("{}:5:8:", dropin.display())), "{err}");
    assert!(err.contains(&format!("{}:4:8", sp.main.display())), "{err}");
}

#[test]
fn a_fifo_a_directory_and_a_huge_file_in_the_policy_are_named_errors() {
    let (_root, sp) = policy_dir();
    fs::create_dir(&sp.main).unwrap();
    let fifo = sp.dropin_dirs[2].join("10-fifo.toml");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    let big = sp.dropin_dirs[2].join("20-big.toml");
    fs::write(&big, "#".repeat(2 << 20)).unwrap();
    // Returns (a FIFO without a writer would block a plain read forever).
    let err = load(&sp).unwrap_err().to_string();
    assert!(
        err.contains(&format!("{}: is a directory", sp.main.display())),
        "{err}"
    );
    assert!(
        err.contains(&format!("{}: is a FIFO", fifo.display())),
        "{err}"
    );
    assert!(err.contains("at most 1048576 bytes (1 MiB)"), "{err}");
}

#[test]
fn a_state_file_that_is_a_directory_is_refused_at_its_value() {
    let (root, sp) = policy_dir();
    let dir = root.path().join("var/lib/hbad");
    fs::create_dir_all(&dir).unwrap();
    fs::write(
        &sp.main,
        format!(
            "[ownership]\nprune = true\nstate_file = \"{}\"\n",
            dir.display()
        ),
    )
    .unwrap();
    let err = load(&sp).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("{}:3:14: ", sp.main.display())),
        "{err}"
    );
    assert!(err.contains("is a directory"), "{err}");
    let fifo = root.path().join("owned.fifo");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    fs::write(
        &sp.main,
        format!("[ownership]\nstate_file = \"{}\"\n", fifo.display()),
    )
    .unwrap();
    let err = load(&sp).unwrap_err().to_string();
    assert!(err.contains("is a FIFO"), "{err}");
}

#[test]
fn a_group_writable_drop_in_is_refused_by_check_unless_told_otherwise() {
    use std::os::unix::fs::PermissionsExt;
    let (root, sp) = policy_dir();
    fs::write(&sp.main, "").unwrap();
    let dropin = sp.dropin_dirs[2].join("50-site.toml");
    fs::write(&dropin, "[rescan]\nlip = false\n").unwrap();
    fs::set_permissions(&dropin, fs::Permissions::from_mode(0o666)).unwrap();
    let check = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_hbad"))
            .env_remove("HBAD_POLICY")
            .env_remove("HBAD_NO_STRICT_PERMS")
            .args(extra)
            .arg("check")
            .arg(root.path().join("etc/hbad"))
            .output()
            .unwrap()
    };
    let out = check(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("writable by everyone"), "{stderr}");
    let out = check(&["--no-strict-perms"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for value in ["1", "yes", "true"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_hbad"))
            .env_remove("HBAD_POLICY")
            .env("HBAD_NO_STRICT_PERMS", value)
            .arg("check")
            .arg(root.path().join("etc/hbad"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "HBAD_NO_STRICT_PERMS={value}: {stderr}"
        );
    }
}

#[test]
fn a_warning_about_an_undeclared_vhba_points_at_its_name() {
    let p = Policy::from_str(
        Path::new("w.toml"),
        "[rescan.include]\nvhbas = [\"ghost\"]\n",
        &env(),
    )
    .unwrap();
    assert_eq!(p.warnings.len(), 1);
    assert!(
        p.warnings[0].to_string().starts_with("w.toml:2:10: "),
        "{}",
        p.warnings[0]
    );
}

#[test]
fn hbad_create_refuses_wwns_no_port_can_have() {
    for (args, why) in [
        (
            vec![
                "--wwpn",
                "0x6001a4a000000b01",
                "--wwnn",
                "0x5001a4a000000b00",
            ],
            "NAA 6",
        ),
        (
            vec![
                "--wwpn",
                "0x5001a4a000000b01",
                "--wwnn",
                "0x0000000000000000",
            ],
            "all zeros",
        ),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_hbad"))
            .args(["create", "--parent", "auto"])
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        // A usage error (hbad(8), EXIT STATUS).
        assert_eq!(out.status.code(), Some(64), "{args:?}: {stderr}");
        assert!(stderr.contains(why), "{args:?}: {stderr}");
    }
}

#[test]
fn command_line_durations_are_bounded_like_the_policy() {
    for (flag, value, limit) in [
        ("--scan-timeout", "18446744073709551615s", "1h"),
        ("--vport-timeout", "99999999h", "10m"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_hbad"))
            .args(["rescan", "--all", flag, value])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        // A usage error (hbad(8), EXIT STATUS).
        assert_eq!(out.status.code(), Some(64), "{flag}: {stderr}");
        assert!(
            stderr.contains(&format!("more than {limit}, the most hbad accepts")),
            "{flag}: {stderr}"
        );
    }
}

#[test]
fn the_receive_buffer_flag_is_refused_out_of_range_not_clamped() {
    for value in [
        "0",
        "4095",
        "99999999999999999",
        "536870913",
        "+65536",
        "1M",
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_hbad"))
            .args(["run", "--recv-buffer", value])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{value}: {stderr}");
        assert!(
            stderr.contains("give 4096 (4 KiB) to 536870912 (512 MiB) bytes"),
            "{value}: {stderr}"
        );
    }
}

#[test]
fn shipped_examples_are_valid() {
    let mut checked = 0;
    for dir in ["config", "tests/fixtures/policy/good"] {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let policy = Policy::load_files(std::slice::from_ref(&path), &env(), Perms::Strict)
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
    let p = Policy::load_files(&files, &env(), Perms::Strict).unwrap();
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

#[test]
fn bytes_that_are_not_utf8_are_refused_at_their_line_without_io() {
    let err = Policy::from_bytes(
        Path::new("b.toml"),
        b"[rescan]\nlip = false\nscope = \"t\xffrget\"\n",
        &env(),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("b.toml:3:11: byte 0xff is not UTF-8 text"),
        "{err}"
    );
    let ok = Policy::from_bytes(Path::new("b.toml"), b"[rescan]\nlip = false\n", &env());
    assert!(ok.is_ok());
}

#[test]
fn drop_ins_within_the_file_bound_but_over_the_total_are_refused_before_parsing() {
    let (_root, sp) = policy_dir();
    fs::write(&sp.main, "[wwn]\nseed = \"s\"\n").unwrap();
    // Five files of 1 MiB each: every one within the per-file bound.
    for i in 0..5 {
        fs::write(
            sp.dropin_dirs[2].join(format!("{i:02}.toml")),
            "#".repeat(1 << 20),
        )
        .unwrap();
    }
    let err = load(&sp).unwrap_err();
    assert_eq!(err.0.len(), 1, "{err}");
    let text = err.to_string();
    assert!(
        text.contains("the 6 policy files hold 5242897 bytes together; hbad reads at most 4194304 bytes (4 MiB)"),
        "{text}"
    );
    // Four of them fit, exactly.
    fs::remove_file(sp.dropin_dirs[2].join("04.toml")).unwrap();
    fs::write(&sp.main, "").unwrap();
    assert_eq!(load(&sp).unwrap().files.len(), 5);
}

#[test]
fn vhba_tables_are_counted_across_files_before_any_is_validated() {
    let (_root, sp) = policy_dir();
    // 65,537 tables without a name: one error for the count, not one per table.
    let half = "[[vhba]]\n".repeat(40_000);
    fs::write(&sp.main, &half).unwrap();
    let dropin = sp.dropin_dirs[2].join("50-more.toml");
    fs::write(&dropin, "[[vhba]]\n".repeat(25_537)).unwrap();
    let err = load(&sp).unwrap_err();
    assert_eq!(err.0.len(), 1, "{}", err.0.len());
    assert_eq!(
        err.to_string().lines().next().unwrap(),
        format!(
            "{}:25537:1: more than 65536 [[vhba]] tables in the policy files",
            dropin.display()
        )
    );
}

#[test]
fn errors_stop_at_a_hundred_and_count_the_rest() {
    let text = "[wwn]\nseed = \"s\"\n".to_string()
        + &(0..250)
            .map(|i| format!("[[vhba]]\nname = \"v{i}\"\n"))
            .collect::<String>();
    let err = Policy::from_str(Path::new("many.toml"), &text, &env()).unwrap_err();
    assert_eq!(err.0.len(), 101);
    let last = err.0.last().unwrap();
    assert_eq!(last.message, "... and 150 more errors");
    // Placed where the first error not shown is.
    assert_eq!((last.origin.line, last.origin.column), (203, 1));
}

#[test]
fn values_echoed_in_errors_are_printable_and_cut_short() {
    let text = format!(
        "[[vhba]]\nname = \"\\u001b[31mX\"\n[[vhba]]\nname = \"\\u001b[31mX\"\n[rescan]\nscope = \"{}\"\n",
        "x".repeat(900_000)
    );
    let err = Policy::from_str(Path::new("esc\u{1b}]0;t\u{7}.toml"), &text, &env())
        .unwrap_err()
        .to_string();
    assert!(!err.contains('\u{1b}') && !err.contains('\u{7}'), "{err:?}");
    assert!(
        err.contains("esc\\u{1b}]0;t\\u{7}.toml:2:8: vHBA name `\\u{1b}[31mX` is not usable"),
        "{err}"
    );
    assert!(err.contains("vHBA `\\u{1b}[31mX` has no parent"), "{err}");
    assert!(err.contains("duplicate vHBA name `\\u{1b}[31mX`"), "{err}");
    assert!(
        err.contains(&format!(
            "`scope`: `{}…` is not a scan scope",
            "x".repeat(80)
        )),
        "{}",
        &err[..err.len().min(2000)]
    );
    assert!(err.len() < 2000, "{} bytes of errors", err.len());
}

#[test]
fn a_state_file_path_run_cannot_use_or_that_others_can_write_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let (root, sp) = policy_dir();
    let plain = root.path().join("plain");
    fs::write(&plain, "").unwrap();
    let open = root.path().join("open");
    fs::create_dir(&open).unwrap();
    fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
    let state_file = |path: &str| {
        fs::write(&sp.main, format!("[ownership]\nstate_file = \"{path}\"\n")).unwrap();
        let strict = load(&sp).err().map(|e| e.to_string());
        let files = discover(None, &sp).unwrap();
        let relaxed = Policy::load_files(&files, &env(), Perms::Relaxed)
            .err()
            .map(|e| e.to_string());
        (strict, relaxed)
    };
    // A file further up: the directory can never be made.
    let deep = format!("{}/x/y.json", plain.display());
    let (strict, relaxed) = state_file(&deep);
    let why = format!("{} is a regular file, not a directory", plain.display());
    assert!(strict.unwrap().contains(&why));
    assert!(relaxed.unwrap().contains(&why));
    // Spelled so that a prefix test misses them, still under /dev and /sys.
    for odd in ["//dev/x.json", "/./sys/x.json", "/proc//x.json"] {
        let (strict, _) = state_file(odd);
        let err = strict.unwrap_or_else(|| panic!("{odd} accepted"));
        assert!(err.contains("is under /dev, /proc or /sys"), "{err}");
    }
    // Whoever can write the directory can forge the records.
    let (strict, relaxed) = state_file(&format!("{}/hbad/owned.json", open.display()));
    let err = strict.unwrap();
    assert!(
        err.contains(&format!(
            "its directory {} is writable by everyone (mode 0777)",
            open.display()
        )),
        "{err}"
    );
    assert_eq!(relaxed, None);
    assert_eq!(
        state_file(&format!("{}/hbad/owned.json", root.path().display())),
        (None, None)
    );
}

#[test]
fn periodic_is_off_for_any_zero_and_for_the_words_however_spaced() {
    for off in ["0", "0s", "0m", " off", "never ", "off"] {
        let p = Policy::from_str(
            Path::new("p.toml"),
            &format!("[rescan]\nperiodic = \"{off}\"\n"),
            &env(),
        )
        .unwrap_or_else(|e| panic!("{off:?}: {e}"));
        assert_eq!(p.rescan.periodic, None, "{off:?}");
    }
    let err = Policy::from_str(
        Path::new("p.toml"),
        "[rescan]\nperiodic = \"30s\"\n",
        &env(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("less than 1m"), "{err}");
}

fn hbad_check(args: &[&std::ffi::OsStr], stdin: &str) -> (Option<i32>, String, String) {
    common::run_with_stdin(
        std::process::Command::new(env!("CARGO_BIN_EXE_hbad"))
            .env_remove("HBAD_POLICY")
            .env_remove("HBAD_NO_STRICT_PERMS")
            .args(args),
        stdin,
    )
}

#[test]
fn check_with_dropins_merges_a_candidate_main_file_with_the_installed_drop_ins() {
    let (root, sp) = policy_dir();
    let etc = sp.main.parent().unwrap();
    fs::write(
        sp.dropin_dirs[2].join("50-team.toml"),
        "[wwn]\nseed = \"s\"\n[[vhba]]\nname = \"b\"\nparent = \"auto\"\nwwpn = \"0x5001a4a000000b01\"\n",
    )
    .unwrap();
    let candidate = root.path().join("candidate.toml");
    fs::write(
        &candidate,
        "[[vhba]]\nname = \"a\"\nparent = \"auto\"\nwwpn = \"0x5001a4a000000b01\"\n",
    )
    .unwrap();
    let policy = etc.as_os_str();
    // Alone, the candidate is fine.
    let (code, stdout, stderr) = hbad_check(
        &[
            "--policy".as_ref(),
            policy,
            "check".as_ref(),
            candidate.as_os_str(),
        ],
        "",
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("ok (1 vHBA, 1 file)"), "{stdout}");
    // With the drop-ins `hbad run` would merge, its WWPN is taken.
    let (code, _, stderr) = hbad_check(
        &[
            "--policy".as_ref(),
            policy,
            "check".as_ref(),
            "--with-dropins".as_ref(),
            candidate.as_os_str(),
        ],
        "",
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("has the same WWPN 0x5001a4a000000b01 as vHBA `a`"),
        "{stderr}"
    );
    // A candidate that is not there is an error, not the drop-ins alone.
    let (code, _, stderr) = hbad_check(
        &[
            "--policy".as_ref(),
            policy,
            "check".as_ref(),
            "--with-dropins".as_ref(),
            root.path().join("missing.toml").as_os_str(),
        ],
        "",
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("missing.toml: no such policy file"),
        "{stderr}"
    );
}

#[test]
fn check_dash_reads_standard_input() {
    let (code, stdout, stderr) = hbad_check(
        &["check".as_ref(), "-".as_ref()],
        "[wwn]\nseed = \"s\"\n[[vhba]]\nname = \"a\"\nparent = \"auto\"\n",
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("-: ok (1 vHBA, 1 file)"), "{stdout}");
    let (code, _, stderr) = hbad_check(
        &["check".as_ref(), "-".as_ref()],
        "[rescan]\nscope = \"everywhere\"\n",
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("(standard input):2:9: `scope`: `everywhere` is not a scan scope"),
        "{stderr}"
    );
    let (code, _, stderr) = hbad_check(
        &["check".as_ref(), "-".as_ref()],
        &"#".repeat((1 << 20) + 1),
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("at most 1048576 bytes"), "{stderr}");
}
