//! libvirt interop through the built binary: `show --xml`, `luns --libvirt-disk` and
//! `import-libvirt`, over the real kernel capture and the hand-made layouts.
//!
//! What libvirt would accept is checked by libvirt's own schemas, through
//! `virt-xml-validate` (Debian: libvirt-clients, with xmllint from libxml2-utils;
//! scripts/deps.sh installs both). Without it those checks are skipped with a printed
//! reason; the checks against sysfs still run. Expected values are read from sysfs
//! and from the fixtures, never from hbad's own graph.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use common::{capture_sys, hbad_in, Run};

fn layout(name: &str) -> (PathBuf, PathBuf) {
    let dir = common::fixture("layouts").join(name);
    (dir.join("sys"), dir.join("dev"))
}

const LAYOUTS: [&str; 4] = [
    "qla2xxx-npiv",
    "iscsi-tcp",
    "odd-attributes",
    "old-kernel-scsi-host-vports",
];

fn pool_fixture(name: &str) -> PathBuf {
    common::fixture("libvirt").join(name)
}

// --- libvirt's schemas --------------------------------------------------------------

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

/// Whether libvirt's validator can run here; says why not once per test when it cannot.
fn validator() -> bool {
    for tool in ["virt-xml-validate", "xmllint"] {
        if !on_path(tool) {
            eprintln!(
                "skipping libvirt schema checks: `{tool}` is not installed (scripts/deps.sh installs libvirt-clients and libxml2-utils)"
            );
            return false;
        }
    }
    true
}

/// Runs `virt-xml-validate FILE SCHEMA`; panics with its report when libvirt rejects.
fn assert_valid(xml: &str, schema: &str, what: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("doc.xml");
    std::fs::write(&file, xml).unwrap();
    let out = Command::new("virt-xml-validate")
        .arg(&file)
        .arg(schema)
        .output()
        .expect("run virt-xml-validate");
    assert!(
        out.status.success(),
        "libvirt's {schema} schema rejects {what}:\n{}{}\n{xml}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The smallest domain libvirt's schema takes, with these elements in <devices>.
fn domain_with(devices: &str) -> String {
    format!(
        "<domain type='kvm'>\n<name>hbad-test</name>\n<memory unit='KiB'>131072</memory>\n<os><type arch='x86_64'>hvm</type></os>\n<devices>\n<controller type='scsi' index='0' model='virtio-scsi'/>\n{devices}</devices>\n</domain>\n"
    )
}

// --- sysfs, read directly -------------------------------------------------------------

fn attr(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let t = text.trim_end_matches(['\n', '\0']).trim().to_string();
    (!t.is_empty()).then_some(t)
}

fn hosts(sys: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(sys.join("class/scsi_host"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// `0x200002000000000b` -> `200002000000000b`, as libvirt prints WWNs; `None` for
/// what drivers write when a port has no name: `0x0` (FCoE without a switch has no
/// fabric) and all ones (not filled in yet), and for text that is no WWN at all.
fn real_wwn(wwn: &str) -> Option<String> {
    match u64::from_str_radix(wwn.trim_start_matches("0x"), 16) {
        Ok(0) | Ok(u64::MAX) | Err(_) => None,
        Ok(v) => Some(format!("{v:016x}")),
    }
}

/// The text of the first `<tag>` in a document, if any.
fn element<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{tag}>"))? + start;
    Some(&xml[start..end])
}

/// Checks one host's node-device XML against what its sysfs directory says.
fn check_host_xml(sys: &Path, host: &str, xml: &str) {
    let n: u32 = host.trim_start_matches("host").parse().unwrap();
    assert_eq!(
        element(xml, "name"),
        Some(format!("scsi_host{n}").as_str()),
        "{xml}"
    );
    assert_eq!(element(xml, "host"), Some(n.to_string().as_str()), "{xml}");
    let class = sys.join("class/scsi_host").join(host);
    let device = std::fs::canonicalize(class.join("device")).unwrap_or_else(|_| {
        // Partial copies keep the class link; its target's parent's parent is the host.
        std::fs::canonicalize(&class)
            .unwrap()
            .parent()
            .unwrap()
            .parent()
            .unwrap()
            .to_path_buf()
    });
    let devpath = device
        .strip_prefix(std::fs::canonicalize(sys).unwrap())
        .unwrap();
    assert_eq!(
        element(xml, "path"),
        Some(format!("/sys/{}", devpath.display()).as_str()),
        "{xml}"
    );
    match attr(&class.join("unique_id")) {
        Some(u) => assert_eq!(element(xml, "unique_id"), Some(u.as_str()), "{xml}"),
        None => assert_eq!(element(xml, "unique_id"), None, "{xml}"),
    }
    // A vHBA's parent is the host its vport hangs on.
    let parent_dir = device.parent().unwrap();
    let parent_name = parent_dir
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    if parent_name.starts_with("vport-") {
        let hba = parent_dir
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert_eq!(
            element(xml, "parent"),
            Some(format!("scsi_{hba}").as_str()),
            "{xml}"
        );
    }
    let fc = sys.join("class/fc_host").join(host);
    let names = (
        attr(&fc.join("node_name")).and_then(|w| real_wwn(&w)),
        attr(&fc.join("port_name")).and_then(|w| real_wwn(&w)),
    );
    if let (Some(wwnn), Some(wwpn)) = names {
        assert!(xml.contains("<capability type='fc_host'>"), "{xml}");
        assert_eq!(element(xml, "wwpn"), Some(wwpn.as_str()), "{xml}");
        assert_eq!(element(xml, "wwnn"), Some(wwnn.as_str()), "{xml}");
        let fabric = attr(&fc.join("fabric_name")).and_then(|w| real_wwn(&w));
        assert_eq!(element(xml, "fabric_wwn"), fabric.as_deref(), "{xml}");
    } else {
        assert!(!xml.contains("fc_host"), "{xml}");
    }
    let npiv = fc.join("vport_create").exists() || class.join("vport_create").exists();
    let count = |name: &str| attr(&fc.join(name)).filter(|v| v.parse::<u32>().is_ok());
    let counts = (count("max_npiv_vports"), count("npiv_vports_inuse"));
    match counts {
        (Some(max), Some(used)) if npiv => {
            assert!(xml.contains("<capability type='vport_ops'>"), "{xml}");
            assert_eq!(element(xml, "max_vports"), Some(max.as_str()), "{xml}");
            assert_eq!(element(xml, "vports"), Some(used.as_str()), "{xml}");
        }
        // No vport_create, or counts that are not numbers: libvirt's schema needs both.
        _ => assert!(!xml.contains("vport_ops"), "{xml}"),
    }
}

// --- show --xml -------------------------------------------------------------------------

#[test]
fn show_xml_describes_every_capture_host_as_libvirt_does() {
    let validate = validator();
    for which in ["before", "after"] {
        let sys = capture_sys(which);
        for host in hosts(&sys) {
            let run = hbad_in(
                &sys,
                Path::new("/nonexistent-dev"),
                &["show", "--xml", &host],
            )
            .ok();
            check_host_xml(&sys, &host, &run.stdout);
            if validate {
                assert_valid(&run.stdout, "nodedev", &format!("{which}/{host}"));
            }
        }
    }
    // The FCoE initiator hangs below the veth `vi`: libvirt names it by name and MAC.
    let sys = capture_sys("after");
    let mac = attr(&sys.join("devices/virtual/net/vi/address")).unwrap();
    let xml = hbad_in(
        &sys,
        Path::new("/nonexistent-dev"),
        &["show", "--xml", "host1"],
    )
    .ok()
    .stdout;
    assert_eq!(
        element(&xml, "parent"),
        Some(format!("net_vi_{}", mac.replace(':', "_")).as_str())
    );
    // scsi_debug sits below nothing libvirt names.
    let xml = hbad_in(
        &sys,
        Path::new("/nonexistent-dev"),
        &["show", "--xml", "scsi_host2"],
    )
    .ok()
    .stdout;
    assert_eq!(element(&xml, "parent"), Some("computer"));
}

#[test]
fn show_xml_describes_every_layout_host_and_names_pci_parents() {
    let validate = validator();
    for name in LAYOUTS {
        let (sys, dev) = layout(name);
        for host in hosts(&sys) {
            let run = hbad_in(&sys, &dev, &["show", "--xml", &host]).ok();
            check_host_xml(&sys, &host, &run.stdout);
            if validate {
                assert_valid(&run.stdout, "nodedev", &format!("{name}/{host}"));
            }
        }
    }
    let (sys, dev) = layout("qla2xxx-npiv");
    // By WWPN too; the physical port's parent is its PCI function.
    let xml = hbad_in(&sys, &dev, &["show", "--xml", "21:00:00:24:ff:3a:ff:b0"])
        .ok()
        .stdout;
    assert_eq!(element(&xml, "name"), Some("scsi_host7"));
    assert_eq!(element(&xml, "parent"), Some("pci_0000_08_00_0"));
}

#[test]
fn show_xml_refuses_what_is_not_a_host_and_json() {
    let sys = capture_sys("after");
    let nodev = Path::new("/nonexistent-dev");
    let run = hbad_in(&sys, nodev, &["show", "--xml", "sda"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("`sda` is disk sda, which libvirt has no node device for"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.is_empty());
    // Nor is a remote port one.
    let run = hbad_in(&sys, nodev, &["show", "--xml", "rport-1:0-0"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("remote port rport-1:0-0"),
        "{}",
        run.stderr
    );
    let run = hbad_in(&sys, nodev, &["show", "--xml", "host99"]);
    assert_eq!(run.code, 4, "not found");
    assert!(run.stderr.contains("no device `host99`"), "{}", run.stderr);
    let run = hbad_in(&sys, nodev, &["--json", "show", "--xml", "host1"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("--json"), "{}", run.stderr);
    // Without --xml, show is as before.
    let run = hbad_in(&sys, nodev, &["--json", "show", "host1"]).ok();
    serde_json::from_str::<Value>(&run.stdout).unwrap();
}

/// Targets and LUNs as the SCSI bus lists them.
fn scsi_bus_devices(sys: &Path) -> Vec<(String, PathBuf)> {
    let bus = sys.join("bus/scsi/devices");
    let mut v: Vec<(String, PathBuf)> = std::fs::read_dir(&bus)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("target") || n.split(':').count() == 4)
        .map(|n| {
            let dir = std::fs::canonicalize(bus.join(&n)).unwrap();
            (n, dir)
        })
        .collect();
    v.sort();
    v
}

/// Checks a target's or LUN's node-device XML against its sysfs directory.
fn check_scsi_xml(sys: &Path, name: &str, dir: &Path, xml: &str) {
    let root = std::fs::canonicalize(sys).unwrap();
    let devpath = dir.strip_prefix(&root).unwrap();
    assert_eq!(
        element(xml, "path"),
        Some(format!("/sys/{}", devpath.display()).as_str()),
        "{xml}"
    );
    let underscored = name.replace(':', "_");
    if let Some(addr) = name.strip_prefix("target") {
        assert_eq!(
            element(xml, "name"),
            Some(format!("scsi_{underscored}").as_str()),
            "{xml}"
        );
        let host = addr.split(':').next().unwrap();
        assert_eq!(
            element(xml, "parent"),
            Some(format!("scsi_host{host}").as_str()),
            "{xml}"
        );
        let above = dir.parent().unwrap();
        let rport = above.file_name().unwrap().to_string_lossy().into_owned();
        let port_name = attr(&above.join("fc_remote_ports").join(&rport).join("port_name"));
        match port_name.filter(|_| rport.starts_with("rport-")) {
            Some(wwpn) => {
                assert_eq!(element(xml, "rport"), Some(rport.as_str()), "{xml}");
                assert_eq!(element(xml, "wwpn"), Some(wwpn.as_str()), "{xml}");
            }
            None => assert!(!xml.contains("fc_remote_port"), "{xml}"),
        }
    } else {
        assert_eq!(
            element(xml, "name"),
            Some(format!("scsi_{underscored}").as_str()),
            "{xml}"
        );
        let parts: Vec<&str> = name.split(':').collect();
        let target = format!("scsi_target{}_{}_{}", parts[0], parts[1], parts[2]);
        assert_eq!(element(xml, "parent"), Some(target.as_str()), "{xml}");
        for (tag, value) in ["host", "bus", "target", "lun"].iter().zip(&parts) {
            assert!(
                xml.contains(&format!("<{tag}>{value}</{tag}>")),
                "{tag}: {xml}"
            );
        }
        let driver = std::fs::read_link(dir.join("driver"))
            .ok()
            .map(|t| t.file_name().unwrap().to_string_lossy().into_owned());
        match driver {
            Some(d) => assert!(
                xml.contains(&format!("<driver>\n    <name>{d}</name>")),
                "{xml}"
            ),
            None => assert!(!xml.contains("<driver>"), "{xml}"),
        }
        if attr(&dir.join("type")).as_deref() == Some("0") {
            assert_eq!(element(xml, "type"), Some("disk"), "{xml}");
        }
    }
}

/// Every target and LUN of a tree, through `show --xml`, against sysfs and the schema.
fn check_every_scsi_device(sys: &Path, dev: &Path, validate: bool) -> usize {
    let devices = scsi_bus_devices(sys);
    for (name, dir) in &devices {
        let run = hbad_in(sys, dev, &["show", "--xml", name]).ok();
        check_scsi_xml(sys, name, dir, &run.stdout);
        if validate {
            assert_valid(&run.stdout, "nodedev", &format!("{} {name}", sys.display()));
        }
    }
    devices.len()
}

#[test]
fn show_xml_describes_every_target_and_lun_as_libvirt_does() {
    let validate = validator();
    let mut seen = check_every_scsi_device(
        &capture_sys("after"),
        Path::new("/nonexistent-dev"),
        validate,
    );
    for name in LAYOUTS {
        let (sys, dev) = layout(name);
        seen += check_every_scsi_device(&sys, &dev, validate);
    }
    assert!(seen > 20, "only {seen} targets and LUNs");
}

// --- luns --libvirt-disk ----------------------------------------------------------------

/// The source a LUN's disk should get, worked out from `luns --json` on its own.
fn expected_source(lun: &Value) -> String {
    let links: Vec<&str> = lun["links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    for dir in ["/by-vhba/", "/by-id/wwn-", "/by-id/", "/by-path/"] {
        let mut found: Vec<&&str> = links.iter().filter(|l| l.contains(dir)).collect();
        found.sort();
        if let Some(l) = found.first() {
            return l.to_string();
        }
    }
    lun["dev"].as_str().unwrap().to_string()
}

fn disks_of(xml: &str) -> Vec<&str> {
    xml.split("<disk ")
        .skip(1)
        .map(|d| &d[..d.find("</disk>").unwrap()])
        .collect()
}

fn check_disks(sys: &Path, dev: &Path, filter: &[&str], device: &str, validate: bool) -> usize {
    let mut json_args = vec!["--json", "luns"];
    json_args.extend_from_slice(filter);
    let luns: Value = serde_json::from_str(&hbad_in(sys, dev, &json_args).ok().stdout).unwrap();
    let with_disk: Vec<&Value> = luns
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| !l["dev"].is_null())
        .collect();
    let mut args = vec!["luns", "--libvirt-disk", "--device", device];
    args.extend_from_slice(filter);
    let run = hbad_in(sys, dev, &args).ok();
    let disks = disks_of(&run.stdout);
    assert_eq!(disks.len(), with_disk.len(), "{}", run.stdout);
    for (i, (disk, lun)) in disks.iter().zip(&with_disk).enumerate() {
        assert!(
            disk.starts_with(&format!("type='block' device='{device}'>")),
            "{disk}"
        );
        assert!(
            disk.contains(&format!("<source dev='{}'/>", expected_source(lun))),
            "{disk}\n{lun}"
        );
        // Guest names count as libvirt's do: sda..sdz, then sdaa...
        let letter = |n: usize| char::from(b'a' + (n % 26) as u8);
        let guest = match i {
            0..26 => format!("sd{}", letter(i)),
            _ => format!("sd{}{}", letter(i / 26 - 1), letter(i)),
        };
        assert!(
            disk.contains(&format!("<target dev='{guest}' bus='scsi'/>")),
            "{disk}"
        );
    }
    if validate && !disks.is_empty() {
        assert_valid(
            &domain_with(&run.stdout),
            "domain",
            &format!("the <disk> elements of {}", sys.display()),
        );
    }
    disks.len()
}

#[test]
fn libvirt_disks_name_each_lun_by_its_most_stable_link_and_validate_in_a_domain() {
    let validate = validator();
    let mut total = 0;
    for name in ["qla2xxx-npiv", "iscsi-tcp", "odd-attributes"] {
        let (sys, dev) = layout(name);
        for device in ["lun", "disk"] {
            total += check_disks(&sys, &dev, &[], device, validate);
        }
    }
    // The capture has no /dev: every source is the bare node.
    let sys = capture_sys("after");
    let nodev = Path::new("/nonexistent-dev");
    total += check_disks(&sys, nodev, &[], "lun", validate);
    let run = hbad_in(&sys, nodev, &["luns", "--libvirt-disk", "host1"]).ok();
    assert!(
        run.stdout.contains("<source dev='/dev/sda'/>"),
        "{}",
        run.stdout
    );
    assert!(
        !run.stdout.contains("2:0:0:0"),
        "host1's filter let in scsi_debug: {}",
        run.stdout
    );
    assert!(total > 4, "the layouts hold more disks than {total}");
}

#[test]
fn libvirt_disk_follows_the_luns_filter_and_refuses_json() {
    let (sys, dev) = layout("qla2xxx-npiv");
    let run = hbad_in(&sys, &dev, &["luns", "--libvirt-disk", "host8"]).ok();
    assert_eq!(disks_of(&run.stdout).len(), 1, "{}", run.stdout);
    assert!(run.stdout.contains("8:0:0:27"), "{}", run.stdout);
    let run = hbad_in(&sys, &dev, &["--json", "luns", "--libvirt-disk"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("--json"), "{}", run.stderr);
    // --device means nothing without --libvirt-disk.
    let run = hbad_in(&sys, &dev, &["luns", "--device", "disk"]);
    assert_eq!(run.code, 64, "a usage error: {}", run.stderr);
}

#[test]
fn paths_of_a_multipath_map_show_it_and_give_one_disk_naming_the_map() {
    use hbad::sim::demo::{HBA_A_WWPN, HBA_B_WWPN};
    use hbad::sim::Sim;
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::demo_host(dir.path()).unwrap();
    let lun0 = |wwpn| hbad::sysfs::Hctl {
        host: sim.host_by_wwpn(wwpn).unwrap(),
        channel: 0,
        target: 0,
        lun: 0,
    };
    let (a, b) = (lun0(HBA_A_WWPN), lun0(HBA_B_WWPN));
    let dm = sim.add_multipath_map("mpatha", &[a, b]).unwrap();
    let (sys, dev) = (dir.path().join("sys"), dir.path().join("dev"));
    let luns: Value =
        serde_json::from_str(&hbad_in(&sys, &dev, &["--json", "luns"]).ok().stdout).unwrap();
    let map_of = |hctl: String| {
        luns.as_array()
            .unwrap()
            .iter()
            .find(|l| l["hctl"] == hctl.as_str())
            .map(|l| l["multipath"].clone())
            .unwrap()
    };
    let map = map_of(a.to_string());
    assert_eq!(map["name"], "mpatha");
    assert_eq!(map["dm"], dm.as_str());
    let wwid = map["wwid"].as_str().unwrap().to_string();
    assert!(wwid.starts_with('3'), "{map}");
    assert_eq!(map_of(b.to_string()), map);
    // The boot disk of the RAID controller is a path of nothing.
    assert!(luns
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["multipath"].is_null()));
    // The MAP column says so in the table.
    let table = hbad_in(&sys, &dev, &["luns"]).ok().stdout;
    let col = table.lines().next().unwrap().find("MAP").unwrap();
    let row = table
        .lines()
        .find(|l| l.starts_with(&format!("{a} ")))
        .unwrap();
    assert!(row[col..].starts_with("mpatha "), "{table}");
    // One <disk> for the two paths, naming the map by its uuid link.
    let run = hbad_in(&sys, &dev, &["luns", "--libvirt-disk"]).ok();
    let source = format!("<source dev='/dev/disk/by-id/dm-uuid-mpath-{wwid}'/>");
    let disks = disks_of(&run.stdout);
    assert_eq!(
        disks.iter().filter(|d| d.contains(&source)).count(),
        1,
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains(&format!("{b} ")), "{}", run.stdout);
    assert!(
        run.stderr.contains("another path of multipath map mpatha"),
        "{}",
        run.stderr
    );
}

// --- import-libvirt -----------------------------------------------------------------

const GOOD_POOLS: [&str; 4] = [
    "fc-parent-wwn.xml",
    "fc-fabric.xml",
    "fc-managed-host-parent.xml",
    "fc-any-parent.xml",
];

fn import(files: &[&str]) -> Run {
    let paths: Vec<String> = files
        .iter()
        .map(|f| pool_fixture(f).display().to_string())
        .collect();
    let mut args = vec!["import-libvirt"];
    args.extend(paths.iter().map(String::as_str));
    hbad_in(
        Path::new("/nonexistent-sys"),
        Path::new("/nonexistent-dev"),
        &args,
    )
}

#[test]
fn the_pool_fixtures_are_pools_libvirt_accepts() {
    if !validator() {
        return;
    }
    for f in GOOD_POOLS
        .iter()
        .chain(&["refused-scsi-host.xml", "refused-logical.xml"])
    {
        let text = std::fs::read_to_string(pool_fixture(f)).unwrap();
        assert_valid(&text, "storagepool", f);
    }
}

#[test]
fn imported_pools_become_a_policy_that_hbad_check_accepts() {
    let run = import(&GOOD_POOLS).ok();
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("hbad.toml");
    std::fs::write(&policy, &run.stdout).unwrap();
    let check = hbad_in(
        Path::new("/nonexistent-sys"),
        Path::new("/nonexistent-dev"),
        &["check", policy.to_str().unwrap()],
    );
    assert_eq!(check.code, 0, "{}\n{}", check.stderr, run.stdout);
    assert!(check.stdout.contains("ok (4 vHBAs"), "{}", check.stdout);

    // Each table carries its pool's identity and parent, read back as TOML.
    let doc: toml::Table = run.stdout.parse().unwrap();
    let vhbas = doc["vhba"].as_array().unwrap();
    let get = |name: &str| {
        vhbas
            .iter()
            .find(|v| v["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("no vHBA {name} in\n{}", run.stdout))
            .as_table()
            .unwrap()
    };
    let a = get("vm-san-a");
    assert_eq!(a["wwpn"].as_str(), Some("0x5001a4a000000b01"));
    assert_eq!(a["wwnn"].as_str(), Some("0x5001a4a000000b00"));
    assert_eq!(a["parent_wwpn"].as_str(), Some("0x21000024ff3affb0"));
    assert_eq!(a["parent_wwnn"].as_str(), Some("0x20000024ff3affb0"));
    assert_eq!(
        get("vm-san-b")["parent_fabric"].as_str(),
        Some("0x100050eb1a7c4e21")
    );
    assert_eq!(get("vhbapool_host3")["parent"].as_str(), Some("host7"));
    // `backup &amp; archive`: the entity is read, then the name made fit for /dev.
    assert_eq!(get("backup---archive")["parent"].as_str(), Some("auto"));

    for warned in [
        "fc-managed-host-parent.xml:9:5: pool `vhbapool_host3`: parent `scsi_host7` is a host number",
        "pool `vhbapool_host3` is managed='yes'",
        "pool `backup & archive` becomes vHBA `backup---archive`",
    ] {
        assert!(run.stderr.contains(warned), "no `{warned}` in:\n{}", run.stderr);
    }

    // The imported vHBA is the one the qla2xxx layout already has: hbad plans nothing new for it.
    let (sys, dev) = layout("qla2xxx-npiv");
    let only_a = dir.path().join("a.toml");
    std::fs::write(&only_a, import(&["fc-parent-wwn.xml"]).ok().stdout).unwrap();
    let plan = |policy: &Path| -> Value {
        let run = hbad_in(
            &sys,
            &dev,
            &["--json", "--policy", policy.to_str().unwrap(), "plan"],
        )
        .ok();
        serde_json::from_str(&run.stdout).unwrap()
    };
    assert_eq!(plan(&only_a)["steps"], serde_json::json!([]));
    // ...whereas a WWPN no vport has yet is a vHBA to create.
    let other = dir.path().join("other.toml");
    let text = std::fs::read_to_string(&only_a).unwrap();
    std::fs::write(
        &other,
        text.replace("0x5001a4a000000b01", "0x5001a4a000000b71"),
    )
    .unwrap();
    assert_eq!(plan(&other)["steps"][0]["action"], "create_vhba");
}

#[test]
fn import_skips_pools_that_are_no_vhba_and_says_why() {
    for (file, line, what) in [
        (
            "refused-scsi-host.xml",
            4,
            "pool `local-hba` uses a scsi_host adapter",
        ),
        (
            "refused-logical.xml",
            1,
            "pool `vg_guests` is a `logical` pool",
        ),
    ] {
        let run = import(&["fc-fabric.xml", file]);
        assert_eq!(run.code, 0, "{file}: {}", run.stderr);
        assert_eq!(run.stdout, import(&["fc-fabric.xml"]).stdout);
        let at = format!("{}:{line}:", pool_fixture(file).display());
        assert!(
            run.stderr.contains(&format!("skipped: {at}")) && run.stderr.contains(what),
            "{file}: {}",
            run.stderr
        );
        // Nothing but such pools: nothing to import, said so.
        let run = import(&[file]);
        assert_eq!(run.code, 1, "{file}: {}", run.stderr);
        assert!(run.stdout.is_empty());
        assert!(
            run.stderr
                .contains("none of the 1 pool definition stands for a vHBA"),
            "{}",
            run.stderr
        );
    }
}

#[test]
fn import_refuses_what_the_policy_cannot_express_and_prints_nothing() {
    let (file, what) = (
        "refused-no-wwpn.xml",
        "pool `half-a-vhba`: the fc_host adapter has no wwpn",
    );
    let run = import(&["fc-fabric.xml", file]);
    assert_eq!(run.code, 1, "{file}: {}", run.stderr);
    assert!(run.stdout.is_empty(), "{file}: printed {}", run.stdout);
    let at = format!("{}:4:", pool_fixture(file).display());
    assert!(
        run.stderr.contains(&format!("error: {at}")),
        "{file}: {}",
        run.stderr
    );
    assert!(run.stderr.contains(what), "{file}: {}", run.stderr);
    assert!(run.stderr.contains("hint: "), "{file}: {}", run.stderr);
    assert!(
        run.stderr.contains("nothing imported: 1 pool definition "),
        "{}",
        run.stderr
    );
    let run = import(&["no-such-pool.xml"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("no-such-pool.xml: cannot read"),
        "{}",
        run.stderr
    );
    let run = import(&["fc-fabric.xml", "fc-fabric.xml"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("comes twice"), "{}", run.stderr);
}

#[test]
fn import_reads_stdin_and_writes_its_output_whole_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("hbad.d/50-pools.toml");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    std::fs::write(&out, "# kept\n").unwrap();
    let run = |files: &[&Path], stdin: &[u8]| {
        use std::io::Write;
        let mut child = Command::new(env!("CARGO_BIN_EXE_hbad"))
            .arg("import-libvirt")
            .arg("--output")
            .arg(&out)
            .args(files)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // A pipe the child may never read: its end closing is not a failure here.
        let _ = child.stdin.take().unwrap().write_all(stdin);
        let o = child.wait_with_output().unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let refused = pool_fixture("refused-no-wwpn.xml");
    let (code, err) = run(&[&pool_fixture("fc-fabric.xml"), &refused], b"");
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "# kept\n");
    // A FIFO (nothing ever writes it) and a directory are errors, not a wait.
    let fifo = dir.path().join("pool.fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let (code, err) = run(&[&fifo, dir.path()], b"");
    assert_eq!(code, Some(1));
    assert_eq!(err.matches("not a regular file").count(), 2, "{err}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "# kept\n");
    // `-` is standard input; on success the output is replaced whole.
    let xml = std::fs::read(pool_fixture("fc-fabric.xml")).unwrap();
    let (code, err) = run(&[Path::new("-")], &xml);
    assert_eq!(code, Some(0), "{err}");
    let written = std::fs::read_to_string(&out).unwrap();
    assert!(
        written.contains("[[vhba]]") && written.contains("in -\n"),
        "{written}"
    );
    assert_eq!(
        std::fs::read_dir(out.parent().unwrap()).unwrap().count(),
        1,
        "no temporary left"
    );
    // More than a pool definition may hold, on stdin: refused with the bound.
    let (code, err) = run(&[Path::new("-")], &vec![b' '; (1 << 20) + 10]);
    assert_eq!(code, Some(1));
    assert!(err.contains("more than the 1048576 bytes"), "{err}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), written);
}

#[test]
fn libvirt_disk_warns_when_two_paths_lead_to_one_lun() {
    // The qla2xxx layout, with 8:0:0:27 given 7:0:0:0's WWID: one LUN, two paths.
    let dir = tempfile::tempdir().unwrap();
    let src = common::fixture("layouts").join("qla2xxx-npiv");
    let status = Command::new("cp")
        .arg("-a")
        .arg(&src)
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    let root = dir.path().join("qla2xxx-npiv");
    let hba = "sys/devices/pci0000:00/0000:00:03.0/0000:08:00.0/host7";
    let first =
        std::fs::read_to_string(root.join(hba).join("rport-7:0-0/target7:0:0/7:0:0:0/wwid"))
            .unwrap();
    std::fs::write(
        root.join(hba)
            .join("vport-7:0-0/host8/rport-8:0-2/target8:0:0/8:0:0:27/wwid"),
        &first,
    )
    .unwrap();
    let run = hbad_in(
        &root.join("sys"),
        &root.join("dev"),
        &["luns", "--libvirt-disk"],
    )
    .ok();
    assert_eq!(disks_of(&run.stdout).len(), 2, "{}", run.stdout);
    assert!(
        run.stderr
            .contains("warning: 8:0:0:27 (/dev/sdc) is the LUN 7:0:0:0 (/dev/sdb) shows too"),
        "{}",
        run.stderr
    );
    // The layout as it is has no such LUN: no warning.
    let (sys, dev) = layout("qla2xxx-npiv");
    let run = hbad_in(&sys, &dev, &["luns", "--libvirt-disk"]).ok();
    assert!(!run.stderr.contains("warning"), "{}", run.stderr);
}

#[test]
fn show_xml_by_a_vhbas_wwpn_picks_its_host_not_its_vport() {
    // On the capture, 0x5001a4a000000b01 names vport-1:0-0 and the vHBA host4 it made.
    let sys = capture_sys("after");
    let xml = hbad_in(
        &sys,
        Path::new("/nonexistent-dev"),
        &["show", "--xml", "0x5001a4a000000b01"],
    )
    .ok()
    .stdout;
    assert_eq!(element(&xml, "name"), Some("scsi_host4"));
    assert_eq!(element(&xml, "parent"), Some("scsi_host1"));
}

#[test]
fn import_names_the_wwpn_of_a_scsi_host_parent_where_sysfs_shows_it() {
    let file = pool_fixture("fc-managed-host-parent.xml");
    let (sys, dev) = layout("qla2xxx-npiv");
    let run = hbad_in(&sys, &dev, &["import-libvirt", file.to_str().unwrap()]).ok();
    // host7 is the qla2xxx port 0x21000024ff3affb0 in this layout.
    let port = attr(&sys.join("class/fc_host/host7/port_name")).unwrap();
    assert!(
        run.stderr.contains(&format!(
            "note: host7 is the FC port {port} on this machine: parent_wwpn = \"{port}\""
        )),
        "{}",
        run.stderr
    );
    // The policy printed is the same with or without a sysfs to look at.
    let elsewhere = import(&["fc-managed-host-parent.xml"]).ok();
    assert_eq!(run.stdout, elsewhere.stdout);
    assert!(!elsewhere.stderr.contains("note:"), "{}", elsewhere.stderr);
}

#[test]
fn import_never_renames_over_a_device_or_a_fifo_given_as_output() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("out.fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    for out in [fifo.as_path(), Path::new("/dev/null")] {
        let o = Command::new(env!("CARGO_BIN_EXE_hbad"))
            .arg("import-libvirt")
            .arg(pool_fixture("fc-fabric.xml"))
            .arg("-o")
            .arg(out)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(
            err.contains("--output") && err.contains("must be a regular file or absent"),
            "{err}"
        );
    }
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::symlink_metadata(&fifo)
        .unwrap()
        .file_type()
        .is_fifo());
    assert!(std::fs::symlink_metadata("/dev/null")
        .unwrap()
        .file_type()
        .is_char_device());
}
