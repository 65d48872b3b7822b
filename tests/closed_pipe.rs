//! Every command whose reader goes away (`hbad plan | head -1`, `hbad status | grep
//! -q`, a stderr nobody reads) ends as a filter does: killed by SIGPIPE, or done
//! with one of its own exit statuses. Never a panic (exit 101).

mod common;

use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};

/// A pipe whose reader is already gone: the write end, to give a child.
fn closed_pipe() -> OwnedFd {
    let (read, write) = nix::unistd::pipe().unwrap();
    drop(read);
    write
}

/// A private copy of the capture's final sysfs (the writing commands write into
/// it), a policy with one vHBA named by host number (`check` warns about it), its
/// state file and a libvirt pool beside.
fn lab() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let ok = Command::new("cp")
        .arg("-a")
        .arg(common::kernel_capture().join("after/sys"))
        .arg(dir.path().join("sys"))
        .status()
        .unwrap();
    assert!(ok.success());
    std::fs::create_dir_all(dir.path().join("dev")).unwrap();
    std::fs::write(
        dir.path().join("hbad.toml"),
        format!(
            "[wwn]\nseed = \"pipes\"\n[ownership]\nstate_file = \"{}\"\n\
             [[vhba]]\nname = \"a\"\nparent = \"host1\"\n",
            dir.path().join("owned.json").display()
        ),
    )
    .unwrap();
    dir
}

fn hbad(root: &Path, args: &[String]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hbad"));
    c.args(args)
        .env("HBAD_SYSFS_ROOT", root.join("sys"))
        .env("HBAD_DEV_ROOT", root.join("dev"))
        .env("HBAD_POLICY", root.join("hbad.toml"))
        .env("HBAD_NO_STRICT_PERMS", "1")
        .stdin(Stdio::null());
    c
}

/// Each command line, as words; `{}` stands for the lab's directory.
const COMMANDS: &[&str] = &[
    "list",
    "tree",
    "show host1",
    "luns",
    "--json luns",
    "check {}/hbad.toml",
    "plan",
    "plan --check",
    "wwn",
    "status --status-file {}/no-status.json",
    "find-luns 0",
    "rescan --all",
    "apply",
    "import-libvirt {}/pool.xml",
    "udev-id /devices/none --state-file {}/owned.json",
    "generate completions bash",
];

fn words(line: &str, root: &Path) -> Vec<String> {
    line.split(' ')
        .map(|w| w.replace("{}", &root.display().to_string()))
        .collect()
}

/// How a command ended into a closed pipe is fine: SIGPIPE, or an exit status of
/// hbad(8)'s EXIT STATUS, and never a panic's message.
fn assert_ended_well(line: &str, status: std::process::ExitStatus, said: &[u8]) {
    let said = String::from_utf8_lossy(said);
    assert!(
        !said.contains("panicked"),
        "`hbad {line}` panicked: {status}\n{said}"
    );
    match (status.code(), status.signal()) {
        (Some(0..=4 | 64), _) => {}
        (None, Some(libc::SIGPIPE)) => {}
        _ => panic!("`hbad {line}` ended with {status}\n{said}"),
    }
}

#[test]
fn a_closed_stdout_never_panics() {
    let lab = lab();
    std::fs::copy(
        common::fixture("libvirt/fc-parent-wwn.xml"),
        lab.path().join("pool.xml"),
    )
    .unwrap();
    for line in COMMANDS {
        let out = hbad(lab.path(), &words(line, lab.path()))
            .stdout(closed_pipe())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert_ended_well(line, out.status, &out.stderr);
    }
}

#[test]
fn a_closed_stderr_never_panics() {
    let lab = lab();
    // Each says something on stderr: a warning, or the error that ends it.
    for line in [
        "check {}/hbad.toml",
        "show host99",
        "luns sdzz",
        "plan --policy {}/missing.toml",
        "status --status-file {}/no-status.json",
    ] {
        let mut child = hbad(lab.path(), &words(line, lab.path()))
            .stdout(Stdio::piped())
            .stderr(closed_pipe())
            .spawn()
            .unwrap();
        let out = std::mem::take(&mut child.stdout);
        let mut said = Vec::new();
        std::io::Read::read_to_end(&mut out.unwrap(), &mut said).unwrap();
        let status = child.wait().unwrap();
        // The panic's message went to the closed stderr: 101 says it.
        assert_ne!(status.code(), Some(101), "`hbad {line}` panicked");
        assert_ended_well(line, status, &said);
    }
}
