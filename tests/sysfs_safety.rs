//! sysfs trees that are not the kernel's: hbad's writes never leave the sysfs
//! root nor go through a symbolic link below it, and no read of an attribute
//! waits, whatever sits at its path (a FIFO without a writer, a device node).

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use hbad::sysfs::beneath::is_refused;
use hbad::sysfs::writes::{AttrWriter, KernelWriter, WRITE_ATTR_REFUSED};
use hbad::sysfs::{DeviceDir, Sysfs};

const HOST: &str = "devices/pci0000:00/0000:00:03.0/0000:08:00.0/host7";

/// A root holding one host's scan attribute, and a directory beside the root
/// (outside it) holding a file a bad link points at.
struct Tree {
    _dir: tempfile::TempDir,
    root: PathBuf,
    outside: PathBuf,
}

impl Tree {
    fn new() -> Tree {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("sys");
        let scsi_host = root.join(HOST).join("scsi_host/host7");
        fs::create_dir_all(&scsi_host).unwrap();
        fs::write(scsi_host.join("scan"), "").unwrap();
        let outside = dir.path().join("elsewhere");
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("precious"), "untouched\n").unwrap();
        Tree {
            root: root.clone(),
            outside,
            _dir: dir,
        }
    }

    fn host(&self) -> PathBuf {
        self.root.join(HOST)
    }

    fn precious(&self) -> String {
        fs::read_to_string(self.outside.join("precious")).unwrap()
    }

    /// `hbad write-attr` as the agent and the CLI start it: its exit status and
    /// stderr.
    fn write_attr(&self, path: &Path, value: &str) -> (Option<i32>, String) {
        let (code, _, stderr) = common::run_with_stdin(
            Command::new(env!("CARGO_BIN_EXE_hbad"))
                .arg("--sysfs-root")
                .arg(&self.root)
                .arg("write-attr")
                .arg("--")
                .arg(path)
                .env_remove("HBAD_SYSFS_ROOT"),
            value,
        );
        (code, stderr)
    }
}

#[test]
fn a_write_to_a_plain_attribute_below_the_root_goes_through() {
    let t = Tree::new();
    let scan = t.host().join("scsi_host/host7/scan");
    KernelWriter::beneath(&t.root)
        .write_attr(&scan, "- - -")
        .unwrap();
    assert_eq!(fs::read_to_string(&scan).unwrap(), "- - -");
    assert_eq!(t.write_attr(&scan, "0 1 -"), (Some(0), String::new()));
    assert_eq!(fs::read_to_string(&scan).unwrap(), "0 1 -");
    // Never created where missing: the driver lacks the attribute.
    let lip = t.host().join("scsi_host/host7/issue_lip");
    let e = KernelWriter::beneath(&t.root)
        .write_attr(&lip, "1")
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e}");
    assert!(!lip.exists());
}

/// A write to `attr` is refused, by the library and by the `write-attr` child the
/// agent writes through (a status of its own, the reason on stderr), with an
/// error that names the path and `says` why.
fn assert_refused(t: &Tree, attr: &Path, says: &str) {
    let e = KernelWriter::beneath(&t.root)
        .write_attr(attr, "- - -")
        .unwrap_err();
    assert!(is_refused(&e), "{e}");
    let text = e.to_string();
    assert!(text.starts_with(&attr.display().to_string()), "{text}");
    assert!(text.contains(says), "{text}");
    assert!(text.ends_with(": refusing to write"), "{text}");
    let (code, stderr) = t.write_attr(attr, "- - -");
    assert_eq!(code, Some(WRITE_ATTR_REFUSED), "{stderr}");
    assert!(stderr.contains(says), "{stderr}");
}

#[test]
fn an_attribute_that_links_out_of_the_root_is_refused_and_its_target_untouched() {
    let t = Tree::new();
    let attr = t.host().join("scsi_host/host7/scan");
    fs::remove_file(&attr).unwrap();
    std::os::unix::fs::symlink(t.outside.join("precious"), &attr).unwrap();
    assert_refused(&t, &attr, "leads out of the sysfs root");
    assert_eq!(t.precious(), "untouched\n");
}

#[test]
fn a_directory_on_the_way_that_links_out_of_the_root_is_refused() {
    let t = Tree::new();
    // scsi_host/ itself is a link to a directory outside, holding a `host7/scan`.
    let away = t.outside.join("host7");
    fs::create_dir_all(&away).unwrap();
    fs::write(away.join("scan"), "untouched\n").unwrap();
    let link = t.host().join("scsi_host");
    fs::remove_dir_all(&link).unwrap();
    std::os::unix::fs::symlink(&t.outside, &link).unwrap();
    let attr = t.host().join("scsi_host/host7/scan");
    assert_refused(&t, &attr, "leads out of the sysfs root");
    // A relative link out (`../..`) is the same.
    fs::remove_file(&link).unwrap();
    let ups = "../".repeat(HOST.split('/').count() + 1);
    std::os::unix::fs::symlink(format!("{ups}elsewhere"), &link).unwrap();
    assert!(attr.exists(), "the link resolves outside");
    assert_refused(&t, &attr, "leads out of the sysfs root");
    let away = fs::read_to_string(away.join("scan")).unwrap();
    assert_eq!(away, "untouched\n");
}

#[test]
fn a_link_that_stays_inside_the_root_is_refused_too_as_sysfs_has_none_there() {
    // The class directories of sysfs are links, but hbad writes through devpaths,
    // where the kernel's tree has no link: one there means the tree is not the
    // kernel's, and the write is refused rather than guessed at.
    let t = Tree::new();
    let real = t.host().join("real_scsi_host/host7");
    fs::create_dir_all(&real).unwrap();
    fs::write(real.join("scan"), "").unwrap();
    fs::remove_dir_all(t.host().join("scsi_host")).unwrap();
    std::os::unix::fs::symlink("real_scsi_host", t.host().join("scsi_host")).unwrap();
    let attr = t.host().join("scsi_host/host7/scan");
    assert_refused(&t, &attr, "goes through the symbolic link");
    assert_refused(&t, &attr, "-> real_scsi_host");
    // Through the class link a user might type: refused as well.
    let class = t.root.join("class/scsi_host");
    fs::create_dir_all(&class).unwrap();
    let target = format!("../../{HOST}/real_scsi_host/host7");
    std::os::unix::fs::symlink(target, class.join("host7")).unwrap();
    assert_refused(
        &t,
        &class.join("host7/scan"),
        "goes through the symbolic link",
    );
    assert_eq!(fs::read_to_string(real.join("scan")).unwrap(), "");
    // The same attribute by its devpath: written.
    let (code, stderr) = t.write_attr(&real.join("scan"), "- - -");
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(fs::read_to_string(real.join("scan")).unwrap(), "- - -");
}

#[test]
fn a_path_outside_the_root_is_refused_whatever_it_is() {
    let t = Tree::new();
    let precious = t.outside.join("precious");
    let (code, stderr) = t.write_attr(&precious, "1");
    assert_eq!(code, Some(WRITE_ATTR_REFUSED), "{stderr}");
    assert!(stderr.contains("is not below the sysfs root"), "{stderr}");
    let dotted = t.root.join("devices/../../elsewhere/precious");
    let (code, stderr) = t.write_attr(&dotted, "1");
    assert_eq!(code, Some(WRITE_ATTR_REFUSED), "{stderr}");
    assert!(stderr.contains("leads out of the sysfs root"), "{stderr}");
    assert_eq!(t.precious(), "untouched\n");
}

#[test]
fn a_fifo_attribute_still_takes_a_write_as_the_tests_kernel_stand_in() {
    let t = Tree::new();
    let attr = t.host().join("scsi_host/host7/scan");
    mkfifo(&attr);
    let reader = {
        let attr = attr.clone();
        // Blocks until the write opens it; EOF when the write closes it.
        thread::spawn(move || fs::read_to_string(attr).unwrap())
    };
    let (code, stderr) = t.write_attr(&attr, "0 2 5");
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(reader.join().unwrap(), "0 2 5");
}

// ---------------------------------------------------------------------------------
// Reads

/// Runs `f` on a thread and waits for it a bounded time: a read that hangs fails
/// the test instead of hanging the test run. Not a timing: the bound is minutes
/// away from what the work takes.
fn finishes<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the read never finished: it waits on an attribute")
}

fn mkfifo(path: &Path) {
    let _ = fs::remove_file(path);
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
}

/// A copy of a hand-made layout, to put FIFOs in.
fn layout_copy(name: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let ok = Command::new("cp")
        .arg("-a")
        .arg(common::fixture("layouts").join(name))
        .arg(dir.path().join("l"))
        .status()
        .unwrap();
    assert!(ok.success());
    let l = dir.path().join("l");
    (dir, l.join("sys"), l.join("dev"))
}

#[test]
fn fifos_and_devices_at_attribute_paths_read_as_absent_without_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let x = dir.path().join("devices/x");
    fs::create_dir_all(&x).unwrap();
    fs::write(x.join("vendor"), "DGC     \n").unwrap();
    fs::write(x.join("empty"), "").unwrap();
    mkfifo(&x.join("model"));
    std::os::unix::fs::symlink("/dev/null", x.join("rev")).unwrap();
    mkfifo(&x.join("vpd_pg80"));
    let root = dir.path().to_path_buf();
    let got = finishes(move || {
        let d = DeviceDir::open(&root.join("devices/x")).unwrap();
        let sysfs = Sysfs::new(&root, root.join("dev"));
        (
            ["vendor", "empty", "model", "rev"].map(|a| d.attr(a)),
            ["model", "rev"].map(|a| sysfs.attr("/devices/x", a)),
            d.attr_bytes("vpd_pg80"),
            d.here().attr("model"),
        )
    });
    assert_eq!(
        got.0,
        [Some("DGC".into()), Some(String::new()), None, None],
        "a regular empty file is an empty value; a FIFO or a device is none"
    );
    assert_eq!(got.1, [None, None]);
    assert_eq!(got.2, None);
    assert_eq!(got.3, None);
}

#[test]
fn the_listing_finishes_with_fifos_where_a_luns_attributes_should_be() {
    let (_dir, sys, dev) = layout_copy("qla2xxx-npiv");
    let lun = fs::canonicalize(sys.join("class/scsi_device/7:0:0:0/device")).unwrap();
    for attr in ["vendor", "model", "rev", "state", "vpd_pg83", "vpd_pg80"] {
        mkfifo(&lun.join(attr));
    }
    let disk = fs::read_dir(lun.join("block"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    for attr in ["size", "ro", "dev"] {
        mkfifo(&disk.join(attr));
    }
    let (s, d) = (sys.clone(), dev.clone());
    let run = finishes(move || common::hbad_in(&s, &d, &["luns", "--json"]));
    let run = run.ok();
    let luns: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let lun = luns
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["hctl"] == "7:0:0:0")
        .unwrap_or_else(|| panic!("7:0:0:0 not listed: {}", run.stdout));
    // What a FIFO stood for is not there, as a missing attribute is not.
    for key in ["vendor", "model", "rev", "size_bytes"] {
        assert!(lun.get(key).is_none_or(|v| v.is_null()), "{key}: {lun}");
    }
    // The rest of the tree is read as ever.
    assert!(run.stdout.contains("8:0:0:27"), "{}", run.stdout);
    let text = finishes(move || common::hbad_in(&sys, &dev, &["luns"])).ok();
    assert!(text.stdout.contains("7:0:0:0"), "{}", text.stdout);
}
