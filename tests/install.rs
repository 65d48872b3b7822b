//! `make install` as a package build runs it: staged into a DESTDIR, with the binary
//! already built (HBAD_BIN; CARGO=false proves install never builds), every file in
//! its distribution place with its mode, and the installed pieces accepted by the
//! tools that will read them (systemd-analyze, systemd-tmpfiles, groff), each skipped
//! with a reason when the tool is absent.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn make_install(destdir: &Path, extra: &[&str]) -> Output {
    let out = Command::new("make")
        .arg("-C")
        .arg(repo())
        .arg("--no-print-directory")
        .arg("install")
        .arg(format!("DESTDIR={}", destdir.display()))
        .arg(format!("HBAD_BIN={}", env!("CARGO_BIN_EXE_hbad")))
        .arg("CARGO=false")
        .args(extra)
        .env_remove("MAKEFLAGS")
        .env_remove("PREFIX")
        .output()
        .expect("make runs");
    assert!(
        out.status.success(),
        "make install failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// Where zsh looks for completions on this host's distribution: Debian's zsh has
/// vendor-completions and not site-functions in its fpath.
fn zsh_completions() -> &'static str {
    if Path::new("/etc/debian_version").exists() {
        "usr/share/zsh/vendor-completions/_hbad"
    } else {
        "usr/share/zsh/site-functions/_hbad"
    }
}

/// Every file a package of hbad holds, under PREFIX=/usr, with its mode.
fn expected_files() -> Vec<(String, u32)> {
    let mut files: Vec<(String, u32)> = [
        ("usr/bin/hbad", 0o755),
        ("usr/lib/systemd/system/hbad.service", 0o644),
        ("usr/lib/systemd/catalog/hbad.catalog", 0o644),
        ("usr/lib/udev/rules.d/60-hbad-vhba.rules", 0o644),
        ("usr/lib/tmpfiles.d/hbad.conf", 0o644),
        ("etc/hbad/hbad.toml", 0o644),
        ("usr/share/doc/hbad/README.md", 0o644),
        ("usr/share/doc/hbad/hbad.toml", 0o644),
        ("usr/share/man/man5/hbad.toml.5", 0o644),
        ("usr/share/man/man8/hbad.8", 0o644),
        ("usr/share/bash-completion/completions/hbad", 0o644),
        (zsh_completions(), 0o644),
        ("usr/share/fish/vendor_completions.d/hbad.fish", 0o644),
    ]
    .iter()
    .map(|(p, m)| (p.to_string(), *m))
    .collect();
    for entry in std::fs::read_dir(repo().join("config/examples")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        files.push((format!("usr/share/doc/hbad/examples/{name}"), 0o644));
    }
    // One page per visible subcommand: the ones an administrator reaches for.
    for sub in [
        "check", "wwn", "plan", "apply", "run", "status", "rescan", "udev-id",
    ] {
        files.push((format!("usr/share/man/man8/hbad-{sub}.8"), 0o644));
    }
    files
}

#[test]
fn make_install_puts_every_file_in_its_distribution_place() {
    let dest = tempfile::tempdir().unwrap();
    make_install(dest.path(), &[]);
    let mut missing = Vec::new();
    for (rel, want) in expected_files() {
        let path = dest.path().join(&rel);
        if !path.is_file() {
            missing.push(rel);
            continue;
        }
        assert_eq!(mode(&path), want, "{rel} mode {:o}", mode(&path));
    }
    assert!(missing.is_empty(), "not installed: {missing:?}");
    for dir in ["etc/hbad/hbad.d", "usr/lib/hbad/hbad.d"] {
        assert!(dest.path().join(dir).is_dir(), "{dir} missing");
    }
    // The installed binary is the one built, and the files are the repository's.
    assert_eq!(
        std::fs::read(dest.path().join("usr/bin/hbad")).unwrap(),
        std::fs::read(env!("CARGO_BIN_EXE_hbad")).unwrap()
    );
    for (installed, source) in [
        ("etc/hbad/hbad.toml", "config/hbad.toml"),
        (
            "usr/lib/systemd/system/hbad.service",
            "systemd/hbad.service",
        ),
        (
            "usr/lib/udev/rules.d/60-hbad-vhba.rules",
            "udev-rules/60-hbad-vhba.rules",
        ),
        (
            "usr/lib/systemd/catalog/hbad.catalog",
            "systemd/hbad.catalog",
        ),
    ] {
        assert_eq!(
            std::fs::read_to_string(dest.path().join(installed)).unwrap(),
            std::fs::read_to_string(repo().join(source)).unwrap(),
            "{installed} differs from {source} under PREFIX=/usr"
        );
    }
    let unit =
        std::fs::read_to_string(dest.path().join("usr/lib/systemd/system/hbad.service")).unwrap();
    assert!(unit.contains("\nExecStart=/usr/bin/hbad run\n"), "{unit}");
}

#[test]
fn installed_unit_passes_systemd_analyze_verify_with_the_installed_binary() {
    if !have("systemd-analyze") {
        eprintln!("skipped: systemd-analyze is not installed");
        return;
    }
    let dest = tempfile::tempdir().unwrap();
    make_install(dest.path(), &[]);
    // verify --root wants a whole OS (sysinit.target, /bin/kill) under the root, so
    // the installed unit is verified in place of the host's, its /usr/bin/hbad
    // pointed at the installed binary: a wrong BINDIR would fail here.
    let unit =
        std::fs::read_to_string(dest.path().join("usr/lib/systemd/system/hbad.service")).unwrap();
    let installed_bin = dest.path().join("usr/bin/hbad");
    let check_dir = tempfile::tempdir().unwrap();
    let path = check_dir.path().join("hbad.service");
    std::fs::write(
        &path,
        unit.replace("/usr/bin/hbad", &installed_bin.display().to_string()),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ours: Vec<&str> = stderr.lines().filter(|l| l.contains("hbad")).collect();
    assert!(out.status.success() && ours.is_empty(), "{stderr}");
}

/// A fresh install creates nothing: the installed policy passes `hbad check` (with its
/// file checks: root-owned, not writable by others) and declares no vHBA until edited.
#[test]
fn the_installed_policy_declares_nothing_until_edited() {
    let dest = tempfile::tempdir().unwrap();
    make_install(dest.path(), &[]);
    let out = Command::new(dest.path().join("usr/bin/hbad"))
        .env_remove("HBAD_POLICY")
        .env_remove("HBAD_NO_STRICT_PERMS")
        .arg("check")
        .arg(dest.path().join("etc/hbad"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains(": ok (0 vHBAs, 1 file)"), "{stdout}");
    assert!(stderr.is_empty(), "{stderr}");
}

#[test]
fn an_existing_policy_is_kept_and_everything_else_is_replaced() {
    let dest = tempfile::tempdir().unwrap();
    make_install(dest.path(), &[]);
    let policy = dest.path().join("etc/hbad/hbad.toml");
    let mine = "# the administrator's policy\n[ownership]\nprune = true\n";
    std::fs::write(&policy, mine).unwrap();
    let catalog = dest.path().join("usr/lib/systemd/catalog/hbad.catalog");
    std::fs::write(&catalog, "stale").unwrap();
    let out = make_install(dest.path(), &[]);
    assert_eq!(std::fs::read_to_string(&policy).unwrap(), mine);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("kept "),
        "install does not say it kept the policy"
    );
    assert_ne!(std::fs::read_to_string(&catalog).unwrap(), "stale");
}

#[test]
fn another_prefix_rewrites_the_paths_the_unit_and_rule_run() {
    let dest = tempfile::tempdir().unwrap();
    make_install(
        dest.path(),
        &["PREFIX=/usr/local", "UDEVRULESDIR=/etc/udev/rules.d"],
    );
    let unit = std::fs::read_to_string(
        dest.path()
            .join("usr/local/lib/systemd/system/hbad.service"),
    )
    .unwrap();
    assert!(
        unit.contains("\nExecStart=/usr/local/bin/hbad run\n"),
        "{unit}"
    );
    assert!(
        unit.contains("\nExecStartPre=/usr/local/bin/hbad check\n"),
        "{unit}"
    );
    assert!(
        unit.contains("file:///usr/local/share/doc/hbad/README.md"),
        "{unit}"
    );
    assert!(!unit.contains("/usr/bin/hbad"), "{unit}");
    let rule =
        std::fs::read_to_string(dest.path().join("etc/udev/rules.d/60-hbad-vhba.rules")).unwrap();
    assert!(
        rule.contains("IMPORT{program}=\"/usr/local/bin/hbad udev-id %p\""),
        "{rule}"
    );
    assert!(dest.path().join("usr/local/bin/hbad").is_file());
    assert!(dest.path().join("etc/hbad/hbad.toml").is_file());
}

#[test]
fn installed_tmpfiles_entry_makes_the_runtime_and_state_directories() {
    if !have("systemd-tmpfiles") {
        eprintln!("skipped: systemd-tmpfiles is not installed");
        return;
    }
    let dest = tempfile::tempdir().unwrap();
    make_install(dest.path(), &[]);
    let conf = dest.path().join("usr/lib/tmpfiles.d/hbad.conf");
    let mut cmd = Command::new("systemd-tmpfiles");
    cmd.arg(format!("--root={}", dest.path().display()))
        .arg("--create")
        .arg(&conf);
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && !is_root() {
        // root:root ownership cannot be set by an ordinary user.
        eprintln!("skipped: systemd-tmpfiles needs root here: {stderr}");
        return;
    }
    assert!(out.status.success() && stderr.is_empty(), "{stderr}");
    for dir in ["run/hbad", "run/hbad/hbad.d", "var/lib/hbad"] {
        let path: PathBuf = dest.path().join(dir);
        assert!(path.is_dir(), "{dir} not made");
        // The unit's RuntimeDirectory=/StateDirectory= mode, so the two never fight.
        assert_eq!(mode(&path), 0o755, "{dir}");
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn installed_man_pages_are_clean_roff() {
    if !have("groff") {
        eprintln!("skipped: groff is not installed");
        return;
    }
    let dest = tempfile::tempdir().unwrap();
    make_install(dest.path(), &[]);
    let mut pages: Vec<PathBuf> = Vec::new();
    for section in ["man5", "man8"] {
        for e in std::fs::read_dir(dest.path().join("usr/share/man").join(section)).unwrap() {
            pages.push(e.unwrap().path());
        }
    }
    assert!(pages.len() > 10, "{pages:?}");
    for page in pages {
        // -ww: every warning; -z: parse and format, print nothing.
        let out = Command::new("groff")
            .args(["-man", "-ww", "-z"])
            .arg(&page)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.is_empty(),
            "{}: {stderr}",
            page.display()
        );
    }
}

#[test]
fn install_refuses_a_missing_binary_instead_of_building_one() {
    let dest = tempfile::tempdir().unwrap();
    let out = Command::new("make")
        .arg("-C")
        .arg(repo())
        .arg("--no-print-directory")
        .arg("install")
        .arg(format!("DESTDIR={}", dest.path().display()))
        .arg("HBAD_BIN=/nonexistent/hbad")
        .arg("CARGO=false")
        .env_remove("MAKEFLAGS")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/hbad is missing"), "{stderr}");
    assert!(
        !dest.path().join("usr").exists(),
        "installed something anyway"
    );
}

/// The .deb holds what make install installs: cargo-deb's assets (with the unit and
/// tmpfiles entry its systemd-units support adds) against a Debian-layout install.
#[test]
fn deb_assets_are_the_files_make_install_installs() {
    let manifest: toml::Table =
        toml::from_str(&std::fs::read_to_string(repo().join("Cargo.toml")).unwrap()).unwrap();
    let deb = &manifest["package"]["metadata"]["deb"];
    let generated = tempfile::tempdir().unwrap();
    let out = Command::new("make")
        .arg("-C")
        .arg(repo())
        .arg("--no-print-directory")
        .arg("generated")
        .arg(format!("GENERATED={}", generated.path().display()))
        .arg(format!("HBAD_BIN={}", env!("CARGO_BIN_EXE_hbad")))
        .env_remove("MAKEFLAGS")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut packaged: Vec<String> = Vec::new();
    for asset in deb["assets"].as_array().unwrap() {
        let a = asset.as_array().unwrap();
        let (source, dest) = (a[0].as_str().unwrap(), a[1].as_str().unwrap());
        // The binary is the one cargo-deb builds; the generated files are made above.
        let sources: Vec<PathBuf> = if source == "target/release/hbad" {
            vec![PathBuf::from(env!("CARGO_BIN_EXE_hbad"))]
        } else if let Some(rest) = source.strip_prefix("target/generated/") {
            glob(&generated.path().join(rest))
        } else {
            glob(&repo().join(source))
        };
        assert!(!sources.is_empty(), "asset {source} matches nothing");
        for s in sources {
            let name = s.file_name().unwrap().to_string_lossy().into_owned();
            packaged.push(match dest.strip_suffix('/') {
                Some(dir) => format!("{dir}/{name}"),
                None => dest.to_string(),
            });
        }
    }
    let unit_dir = repo().join(deb["maintainer-scripts"].as_str().unwrap());
    assert!(unit_dir.join("hbad.service").is_file() && unit_dir.join("hbad.tmpfile").is_file());
    packaged.push("usr/lib/systemd/system/hbad.service".into());
    packaged.push("usr/lib/tmpfiles.d/hbad.conf".into());
    packaged.sort();

    let dest = tempfile::tempdir().unwrap();
    make_install(
        dest.path(),
        &["ZSHCOMPDIR=/usr/share/zsh/vendor-completions"],
    );
    let mut installed = Vec::new();
    walk(dest.path(), dest.path(), &mut installed);
    installed.sort();
    assert_eq!(packaged, installed);
}

/// `dir/*.ext` or a plain path: enough glob for the asset list.
fn glob(pattern: &Path) -> Vec<PathBuf> {
    let name = pattern.file_name().unwrap().to_string_lossy().into_owned();
    match name.strip_prefix('*') {
        Some(suffix) => {
            let mut found: Vec<PathBuf> = std::fs::read_dir(pattern.parent().unwrap())
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.to_string_lossy().ends_with(suffix))
                .collect();
            found.sort();
            found
        }
        None => vec![pattern.to_path_buf()]
            .into_iter()
            .filter(|p| p.is_file())
            .collect(),
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.is_dir() {
            walk(root, &path, out);
        } else {
            out.push(path.strip_prefix(root).unwrap().display().to_string());
        }
    }
}

/// make uninstall takes back every file but the administrator's policy.
#[test]
fn uninstall_removes_everything_but_the_policy() {
    let dest = tempfile::tempdir().unwrap();
    make_install(dest.path(), &[]);
    let out = Command::new("make")
        .arg("-C")
        .arg(repo())
        .arg("--no-print-directory")
        .arg("uninstall")
        .arg(format!("DESTDIR={}", dest.path().display()))
        .env_remove("MAKEFLAGS")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut left = Vec::new();
    walk(dest.path(), dest.path(), &mut left);
    assert_eq!(left, ["etc/hbad/hbad.toml"]);
}
