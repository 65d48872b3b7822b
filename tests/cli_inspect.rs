//! The built `hbad` binary against the real kernel capture and the hand-made layouts:
//! list, tree, show, luns and watch, in text and JSON, and their errors.
//!
//! The JSON checks read the expected values straight from the sysfs tree, not from
//! hbad's own graph, so a mistake in the loader cannot hide here; the same check
//! can be pointed at a guest's /sys.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use common::{capture_sys, hbad_in, Run};

trait JsonOutput {
    fn json(&self) -> Value;
}

impl JsonOutput for Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }
}

/// hbad on the capture's after/ tree (no /dev there: no stable links).
fn hbad(args: &[&str]) -> Run {
    hbad_in(&capture_sys("after"), Path::new("/nonexistent-dev"), args)
}

fn hbad_layout(layout: &str, args: &[&str]) -> Run {
    let dir = common::fixture("layouts").join(layout);
    hbad_in(&dir.join("sys"), &dir.join("dev"), args)
}

// --- what sysfs itself says -------------------------------------------------------

/// A sysfs attribute as text, trimmed the way the kernel pads it.
fn attr(sys: &Path, dir: &str, name: &str) -> Option<String> {
    let bytes = std::fs::read(sys.join(dir.trim_start_matches('/')).join(name)).ok()?;
    let text = String::from_utf8(bytes).ok()?.trim().to_string();
    (!text.is_empty()).then_some(text)
}

/// The devpath a class or bus symlink points at.
fn link_devpath(sys: &Path, link: &str) -> String {
    let path = sys.join(link);
    let target = std::fs::read_link(&path).unwrap();
    let mut parts: Vec<String> = path
        .parent()
        .unwrap()
        .strip_prefix(sys)
        .unwrap()
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    for c in target.iter() {
        match c.to_str().unwrap() {
            ".." => {
                parts.pop();
            }
            other => parts.push(other.to_string()),
        }
    }
    format!("/{}", parts.join("/"))
}

fn list_dir(sys: &Path, dir: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(sys.join(dir))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Every device sysfs shows, as devpath -> kind, from the class and bus links.
fn sysfs_devices(sys: &Path) -> BTreeMap<String, &'static str> {
    let mut out = BTreeMap::new();
    let owner = |class_dev: String| {
        let p = Path::new(&class_dev);
        p.parent().unwrap().parent().unwrap().display().to_string()
    };
    for h in list_dir(sys, "class/scsi_host") {
        out.insert(
            owner(link_devpath(sys, &format!("class/scsi_host/{h}"))),
            "host",
        );
    }
    for v in list_dir(sys, "class/fc_vports") {
        out.insert(
            owner(link_devpath(sys, &format!("class/fc_vports/{v}"))),
            "vport",
        );
    }
    for r in list_dir(sys, "class/fc_remote_ports") {
        out.insert(
            owner(link_devpath(sys, &format!("class/fc_remote_ports/{r}"))),
            "remote_port",
        );
    }
    for d in list_dir(sys, "bus/scsi/devices") {
        let devpath = link_devpath(sys, &format!("bus/scsi/devices/{d}"));
        if d.starts_with("target") {
            out.insert(devpath, "target");
        } else if !d.starts_with("host") {
            for disk in list_dir(sys, &format!("{}/block", &devpath[1..])) {
                out.insert(format!("{devpath}/block/{disk}"), "disk");
            }
            out.insert(devpath, "lun");
        }
    }
    out
}

fn num(v: &Value) -> Option<u64> {
    v.as_u64()
}

fn wwn_attr(sys: &Path, dir: &str, name: &str) -> Value {
    match attr(sys, dir, name) {
        Some(w) if w != "0x0" && w != "0xffffffffffffffff" => Value::String(w),
        _ => Value::Null,
    }
}

/// Checks one JSON device against the attributes sysfs holds for it.
fn check_against_sysfs(sys: &Path, dev: &Value) {
    let devpath = dev["devpath"].as_str().unwrap();
    let name = dev["name"].as_str().unwrap();
    assert_eq!(
        devpath.rsplit('/').next().unwrap(),
        name,
        "name is the devpath's last part"
    );
    assert!(
        sys.join(&devpath[1..]).is_dir(),
        "{devpath} is not in sysfs"
    );
    match dev["kind"].as_str().unwrap() {
        "host" => {
            let sh = format!("{devpath}/scsi_host/{name}");
            assert_eq!(dev["number"].as_u64().unwrap().to_string(), name[4..]);
            assert_eq!(
                dev["proc_name"].as_str(),
                attr(sys, &sh, "proc_name").as_deref()
            );
            let fc = format!("{devpath}/fc_host/{name}");
            if sys.join(&fc[1..]).is_dir() {
                let f = &dev["fc"];
                assert_eq!(f["wwpn"], wwn_attr(sys, &fc, "port_name"), "{name} wwpn");
                assert_eq!(f["wwnn"], wwn_attr(sys, &fc, "node_name"), "{name} wwnn");
                assert_eq!(f["fabric_name"], wwn_attr(sys, &fc, "fabric_name"));
                assert_eq!(
                    f["port_state"].as_str(),
                    attr(sys, &fc, "port_state").as_deref()
                );
                let control_dir = if sys.join(&fc[1..]).join("vport_create").exists() {
                    Some("fc_host")
                } else if sys.join(&sh[1..]).join("vport_create").exists() {
                    Some("scsi_host") // old kernels
                } else {
                    None
                };
                if let Some(control_dir) = control_dir {
                    let n = &f["npiv"];
                    assert_eq!(n["control_dir"], control_dir);
                    let parse = |a| attr(sys, &fc, a).and_then(|v| v.parse::<u64>().ok());
                    assert_eq!(num(&n["max_vports"]), parse("max_npiv_vports"));
                    assert_eq!(num(&n["vports_inuse"]), parse("npiv_vports_inuse"));
                } else {
                    assert!(f["npiv"].is_null(), "{name} has no vport_create");
                }
            } else {
                assert!(dev["fc"].is_null(), "{name} is not FC");
            }
            let parent_is_vport = Path::new(devpath)
                .parent()
                .and_then(|p| p.file_name())
                .is_some_and(|p| p.to_string_lossy().starts_with("vport-"));
            assert_eq!(dev["is_vhba"], parent_is_vport, "{name} is_vhba");
        }
        "vport" => {
            let c = format!("{devpath}/fc_vports/{name}");
            assert_eq!(dev["wwpn"], wwn_attr(sys, &c, "port_name"));
            assert_eq!(dev["wwnn"], wwn_attr(sys, &c, "node_name"));
            assert_eq!(
                dev["vport_state"].as_str(),
                attr(sys, &c, "vport_state").as_deref()
            );
        }
        "remote_port" => {
            let c = format!("{devpath}/fc_remote_ports/{name}");
            assert_eq!(dev["wwpn"], wwn_attr(sys, &c, "port_name"));
            assert_eq!(
                dev["port_state"].as_str(),
                attr(sys, &c, "port_state").as_deref()
            );
            let id = attr(sys, &c, "scsi_target_id").and_then(|v| v.parse::<u64>().ok());
            assert_eq!(num(&dev["scsi_target_id"]), id);
            let roles: Vec<String> = attr(sys, &c, "roles")
                .unwrap_or_default()
                .split(',')
                .map(|r| r.trim().to_string())
                .filter(|r| !r.is_empty() && r != "unknown")
                .collect();
            assert_eq!(dev["roles"], serde_json::json!(roles));
        }
        "target" => assert!(name.starts_with("target")),
        "lun" => {
            assert_eq!(dev["hctl"], name);
            assert_eq!(
                dev["vendor"].as_str(),
                attr(sys, devpath, "vendor").as_deref()
            );
            assert_eq!(
                dev["model"].as_str(),
                attr(sys, devpath, "model").as_deref()
            );
            let disks = list_dir(sys, &format!("{}/block", &devpath[1..]));
            match disks.first() {
                Some(d) => {
                    assert_eq!(dev["dev"], format!("/dev/{d}"));
                    let sectors: u64 = attr(sys, &format!("{devpath}/block/{d}"), "size")
                        .unwrap()
                        .parse()
                        .unwrap();
                    assert_eq!(num(&dev["size_bytes"]), Some(sectors * 512));
                }
                None => assert!(dev["dev"].is_null()),
            }
        }
        "disk" => {
            let sectors: u64 = attr(sys, devpath, "size").unwrap().parse().unwrap();
            assert_eq!(num(&dev["size_bytes"]), Some(sectors * 512));
            assert_eq!(dev["dev"], format!("/dev/{name}"));
        }
        other => panic!("unknown kind {other}"),
    }
}

// --- tree -------------------------------------------------------------------------

/// Walks `tree --json`, checking each child's `parent` is the node it is nested in.
fn walk_tree<'a>(
    node: &'a Value,
    parent: Option<&str>,
    seen: &mut BTreeMap<String, (&'a str, Option<String>)>,
) {
    let devpath = node["devpath"].as_str().unwrap();
    assert_eq!(node["parent"].as_str(), parent, "parent of {devpath}");
    let previous = seen.insert(
        devpath.to_string(),
        (node["kind"].as_str().unwrap(), parent.map(str::to_string)),
    );
    assert!(previous.is_none(), "{devpath} shown twice");
    for child in node["children"].as_array().unwrap() {
        walk_tree(child, Some(devpath), seen);
    }
}

#[test]
fn tree_json_nests_every_device_of_the_capture_as_sysfs_does() {
    for which in ["before", "after"] {
        let sys = capture_sys(which);
        let tree = hbad_in(&sys, Path::new("/nonexistent-dev"), &["tree", "--json"])
            .ok()
            .json();
        let mut seen = BTreeMap::new();
        for root in tree.as_array().unwrap() {
            walk_tree(root, None, &mut seen);
        }
        let expected = sysfs_devices(&sys);
        let shown: BTreeMap<String, &str> = seen
            .iter()
            .map(|(k, (kind, _))| (k.clone(), *kind))
            .collect();
        assert_eq!(shown, expected, "{which}: devices in the tree vs sysfs");
        // Each device's parent is its nearest ancestor directory that is a device.
        for (devpath, (_, parent)) in &seen {
            let mut up = Path::new(devpath).parent();
            let nearest = loop {
                match up {
                    Some(p) if expected.contains_key(&p.display().to_string()) => {
                        break Some(p.display().to_string())
                    }
                    Some(p) => up = p.parent(),
                    None => break None,
                }
            };
            assert_eq!(parent, &nearest, "{which}: parent of {devpath}");
        }
    }
}

#[test]
fn tree_text_shows_vhba_under_its_vport_and_disks_under_luns() {
    let out = hbad(&["tree"]).ok().stdout;
    let depth_of = |needle: &str| -> usize {
        let line = out
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle} not in tree:\n{out}"));
        line.find(needle).unwrap()
    };
    assert_eq!(depth_of("host1  "), 0);
    assert!(depth_of("vport-1:0-0") > depth_of("host1  "));
    assert!(depth_of("host4") > depth_of("vport-1:0-0"));
    assert!(depth_of("target1:0:0") > depth_of("rport-1:0-0"));
    assert!(depth_of("1:0:0:1") > depth_of("target1:0:0"));
    assert!(depth_of("/dev/sdn") > depth_of("1:0:0:1"));
    let sys = capture_sys("after");
    for (devpath, _) in sysfs_devices(&sys) {
        let name = devpath.rsplit('/').next().unwrap();
        assert!(out.contains(name), "{name} missing from\n{out}");
    }
    // The host line says NPIV capacity as numbers.
    assert!(out
        .lines()
        .any(|l| l.starts_with("host1 ") && l.contains("NPIV 1/65535 in use")));
}

// --- list ---------------------------------------------------------------------------

#[test]
fn list_json_matches_sysfs_for_every_device() {
    let sys = capture_sys("after");
    let all = hbad(&["list", "--json"]).ok().json();
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), sysfs_devices(&sys).len());
    for dev in all {
        check_against_sysfs(&sys, dev);
    }
}

#[test]
fn list_filters_by_capability() {
    let names = |cap: &str| -> Vec<String> {
        hbad(&["list", "--cap", cap, "--json"])
            .ok()
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        names("scsi_host"),
        ["host0", "host1", "host2", "host3", "host4"]
    );
    assert_eq!(names("fc-host"), ["host0", "host1", "host4"]);
    assert_eq!(names("vports"), ["host0", "host1"]);
    assert_eq!(names("vhba"), ["host4"]);
    assert_eq!(names("rport"), ["rport-0:0-0", "rport-1:0-0"]);
    assert_eq!(names("target").len(), 5);
    assert_eq!(names("lun").len(), 17);
    assert_eq!(names("block").len(), 17);
    let text = hbad(&["list", "--cap", "vhba"]).ok().stdout;
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("NAME "), "{text}");
    assert!(lines[1].starts_with("host4 ") && lines[1].contains("on host1 via vport-1:0-0"));
}

// --- luns ---------------------------------------------------------------------------

#[test]
fn luns_lists_every_lun_with_its_disk_and_size() {
    let sys = capture_sys("after");
    let out = hbad(&["luns"]).ok().stdout;
    let lines: Vec<&str> = out.lines().collect();
    let header = lines[0];
    assert!(header.starts_with("H:C:T:L"), "{out}");
    let lun_names = list_dir(&sys, "class/scsi_device");
    assert_eq!(lines.len(), lun_names.len() + 1, "{out}");
    // Columns line up: every DEVICE cell starts where the header's does.
    let col = header.find("DEVICE").unwrap();
    for line in &lines[1..] {
        assert!(line[col..].starts_with("/dev/sd"), "misaligned: {line}");
    }
    let row = lines.iter().find(|l| l.starts_with("1:0:0:0 ")).unwrap();
    for cell in [
        "LIO-ORG",
        "RAMDISK-MCP",
        "32.0 MiB",
        "/dev/sda",
        "0x200002000000000a",
    ] {
        assert!(row.contains(cell), "{cell} not in {row}");
    }
    let json = hbad(&["luns", "--json"]).ok().json();
    for dev in json.as_array().unwrap() {
        assert_eq!(dev["kind"], "lun");
        check_against_sysfs(&sys, dev);
    }
}

fn hctls(run: Run) -> Vec<String> {
    run.ok()
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["hctl"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn luns_filter_by_host_by_target_wwpn_and_by_vhba() {
    let fcoe = ["1:0:0:0", "1:0:0:1"];
    assert_eq!(hctls(hbad(&["luns", "host1", "--json"])), fcoe);
    assert_eq!(hctls(hbad(&["luns", "scsi_host1", "--json"])), fcoe);
    // The target's WWPN, in the switch's style.
    assert_eq!(
        hctls(hbad(&["luns", "20:00:02:00:00:00:00:0a", "--json"])),
        fcoe
    );
    assert_eq!(hctls(hbad(&["luns", "2", "--json"])).len(), 9);
    // The vHBA never logged in: no LUNs, which is an answer, not an error.
    assert!(hctls(hbad(&["luns", "0x5001a4a000000b01", "--json"])).is_empty());
    let empty = hbad(&["luns", "host4"]).ok();
    assert!(
        empty.stderr.contains("no LUNs on host4"),
        "{}",
        empty.stderr
    );

    // On a fabric: a vport's WWPN means its vHBA's LUNs; the HBA keeps only its own.
    let vhba = hctls(hbad_layout(
        "qla2xxx-npiv",
        &["luns", "5001a4a000000b01", "--json"],
    ));
    assert_eq!(vhba, ["8:0:0:27"]);
    assert_eq!(
        hctls(hbad_layout("qla2xxx-npiv", &["luns", "host7", "--json"])),
        ["7:0:0:0"]
    );
    assert_eq!(
        hctls(hbad_layout(
            "qla2xxx-npiv",
            &["luns", "0x500601603ce0174b", "--json"]
        )),
        ["8:0:0:27"]
    );
}

#[test]
fn luns_show_stable_links_one_per_line() {
    let out = hbad_layout("qla2xxx-npiv", &["luns"]).ok().stdout;
    let lines: Vec<&str> = out.lines().collect();
    let col = lines[0].find("LINKS").unwrap();
    let links: Vec<&str> = lines[1..].iter().map(|l| &l[col..]).collect();
    assert_eq!(
        links,
        [
            "/dev/disk/by-id/wwn-0x600601604a103800c4b0d7e7f4e3e611",
            "/dev/disk/by-path/pci-0000:08:00.0-fc-0x500601683ce0174b-lun-0",
            "/dev/disk/by-id/wwn-0x600601604a103800d2a1c3e8f4e3e611",
            "/dev/disk/by-path/pci-0000:08:00.0-fc-0x500601603ce0174b-lun-27",
        ]
    );
    let json = hbad_layout("qla2xxx-npiv", &["luns", "8:0:0:27", "--json"])
        .ok()
        .json();
    assert_eq!(json[0]["vhba_name"], "vm-san-a");
    assert_eq!(json[0]["links"].as_array().unwrap().len(), 2);
}

// --- show ---------------------------------------------------------------------------

fn show(device: &str) -> Value {
    hbad(&["show", device, "--json"]).ok().json()
}

fn shown_names(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s["device"]["name"].as_str().unwrap().to_string())
        .collect()
}

fn relation<'a>(show: &'a Value, relation: &str) -> Vec<&'a str> {
    show["relations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["relation"] == relation)
        .map(|r| r["device"]["name"].as_str().unwrap())
        .collect()
}

#[test]
fn show_resolves_every_accepted_name_form() {
    let host1 = "/devices/virtual/net/vi/ctlr_1/host1";
    for form in ["host1", "scsi_host1", "1", host1] {
        assert_eq!(shown_names(&show(form)), ["host1"], "{form}");
    }
    // host1's WWPN also names host0's remote port for it (the FCoE link is a loop).
    for form in [
        "0x200002000000000b",
        "200002000000000b",
        "20:00:02:00:00:00:00:0b",
    ] {
        assert_eq!(shown_names(&show(form)), ["host1", "rport-0:0-0"], "{form}");
    }
    for (form, name) in [
        ("1:0:0:0", "1:0:0:0"),
        ("sda", "sda"),
        ("/dev/sda", "sda"),
        ("rport-1:0-0", "rport-1:0-0"),
        ("0x200002000000000a", "host0"), // host0's own port, and host1's remote port
        ("target1:0:0", "target1:0:0"),
        ("vport-1:0-0", "vport-1:0-0"),
        ("host4", "host4"),
    ] {
        assert!(
            shown_names(&show(form)).contains(&name.to_string()),
            "{form}"
        );
    }
    // One WWPN names the vport and the vHBA it made.
    assert_eq!(
        shown_names(&show("50:01:a4:a0:00:00:0b:01")),
        ["host4", "vport-1:0-0"]
    );
    assert_eq!(
        shown_names(&show("0x200002000000000a")),
        ["host0", "rport-1:0-0"]
    );
}

#[test]
fn show_gives_attributes_and_relations() {
    let sys = capture_sys("after");
    let h1 = &show("host1")[0];
    check_against_sysfs(&sys, &h1["device"]);
    assert_eq!(h1["device"]["fc"]["npiv"]["max_vports"], 65535);
    assert_eq!(h1["device"]["fc"]["npiv"]["vports_inuse"], 1);
    assert_eq!(relation(h1, "vport"), ["vport-1:0-0"]);
    assert_eq!(relation(h1, "vhba"), ["host4"]);
    assert_eq!(relation(h1, "remote_port"), ["rport-1:0-0"]);
    assert_eq!(relation(h1, "lun"), ["1:0:0:0", "1:0:0:1"]);

    let h4 = &show("host4")[0];
    assert_eq!(h4["device"]["is_vhba"], true);
    assert_eq!(h4["device"]["parent_hba"], "host1");
    assert_eq!(relation(h4, "parent_hba"), ["host1"]);
    assert_eq!(relation(h4, "vport"), ["vport-1:0-0"]);

    let lun = &show("1:0:0:0")[0];
    check_against_sysfs(&sys, &lun["device"]);
    assert_eq!(lun["device"]["serial"], "lab-rd0-serial");
    assert_eq!(relation(lun, "remote_port"), ["rport-1:0-0"]);
    assert_eq!(relation(lun, "disk"), ["sda"]);
    assert_eq!(relation(lun, "host"), ["host1"]);

    let text = hbad(&["show", "host4"]).ok().stdout;
    assert!(text.starts_with("host4 (vHBA)\n"), "{text}");
    assert!(text.contains("\nrelations\n"), "{text}");
    assert!(text
        .lines()
        .any(|l| l.trim_start().starts_with("parent hba") && l.contains("host1")));
}

#[test]
fn hand_made_layouts_list_tree_show_and_luns_without_errors() {
    for layout in [
        "qla2xxx-npiv",
        "old-kernel-scsi-host-vports",
        "iscsi-tcp",
        "odd-attributes",
    ] {
        let dir = common::fixture("layouts").join(layout);
        let sys = dir.join("sys");
        let all = hbad_layout(layout, &["list", "--json"]).ok().json();
        for dev in all.as_array().unwrap() {
            if layout != "odd-attributes" {
                check_against_sysfs(&sys, dev);
            }
            let name = dev["devpath"].as_str().unwrap();
            hbad_layout(layout, &["show", name]).ok();
        }
        hbad_layout(layout, &["tree"]).ok();
        hbad_layout(layout, &["luns"]).ok();
    }
    let old = hbad_layout("old-kernel-scsi-host-vports", &["show", "host3", "--json"])
        .ok()
        .json();
    assert_eq!(old[0]["device"]["fc"]["npiv"]["control_dir"], "scsi_host");
    let odd = hbad_layout("odd-attributes", &["show", "host9", "--json"])
        .ok()
        .json();
    assert!(odd[0]["device"]["fc"]["wwpn"].is_null());
    assert!(odd[0]["device"]["fc"]["port_state"].is_null());
}

// --- errors -------------------------------------------------------------------------

#[test]
fn missing_devices_exit_4_naming_what_was_looked_for() {
    for (args, needle) in [
        (&["show", "host9"][..], "SCSI host 9"),
        (&["show", "0x5001a4a0000000ff"], "WWPN 0x5001a4a0000000ff"),
        (&["show", "7:0:0:1"], "7:0:0:1"),
        (&["show", "sdzz"], "sdzz"),
        (&["show", "nonsense"], "nonsense"),
        (&["luns", "host42"], "SCSI host 42"),
    ] {
        let run = hbad(args);
        assert_eq!(run.code, 4, "{args:?}: {}", run.stdout);
        assert!(run.stderr.starts_with("error: "), "{}", run.stderr);
        assert!(run.stderr.contains(needle), "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains("hbad list"), "{args:?}: {}", run.stderr);
        assert!(run.stdout.is_empty());
    }
    // No name at all is a usage error, not a device that is missing.
    let run = hbad(&["show", " "]);
    assert_eq!(run.code, 64);
    assert!(run.stderr.contains("empty device name"), "{}", run.stderr);
    let run = hbad_in(Path::new("/nonexistent-sys"), Path::new("/dev"), &["tree"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("/nonexistent-sys"), "{}", run.stderr);
}

// --- watch --------------------------------------------------------------------------

#[test]
fn watch_replays_the_capture_and_describes_what_happened() {
    let events = common::kernel_capture().join("events.bin");
    let events = events.to_str().unwrap();
    let after = capture_sys("after");
    let args = [
        "watch",
        "--replay",
        events,
        "--event-sysfs",
        after.to_str().unwrap(),
    ];
    let run = hbad_in(&capture_sys("before"), Path::new("/nonexistent-dev"), &args).ok();
    let lines: Vec<&str> = run.stdout.lines().map(str::trim_start).collect();
    let position = |needle: &str| {
        lines
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("`{needle}` not in\n{}", run.stdout))
    };
    let ua = position(
        "unit attention REPORTED_LUNS_DATA_HAS_CHANGED from 1:0:0:0 (target 0x200002000000000a)",
    );
    let new_lun =
        position("new LUN 1 (1:0:0:1, LIO-ORG FILEIO) on host1 via target 0x200002000000000a");
    let vhba = position("vHBA host4 created on host1 (WWPN 0x5001a4a000000b01)");
    let gone = position("vHBA host5 removed from host1");
    let removed = position("LUN 2:0:0:1 removed");
    assert!(ua < new_lun && new_lun < vhba && vhba < gone && gone < removed);
    assert!(run.stderr.contains("replayed 200 events"), "{}", run.stderr);

    let mut json_args = args.to_vec();
    json_args.push("--json");
    let run = hbad_in(
        &capture_sys("before"),
        Path::new("/nonexistent-dev"),
        &json_args,
    )
    .ok();
    let objects: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(objects.len() >= lines.len());
    assert!(objects.iter().all(|o| o["change"]["change"].is_string()));
    assert!(
        objects.iter().any(|o| o["description"].is_null()),
        "noise is kept in JSON"
    );
    let ua = objects
        .iter()
        .find(|o| o["change"]["change"] == "notice")
        .unwrap();
    assert_eq!(ua["action"], "change");
    assert!(ua["seqnum"].is_u64());
}

#[test]
fn watch_names_a_replay_file_it_cannot_read() {
    let run = hbad(&["watch", "--replay", "/nonexistent/events.bin"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("/nonexistent/events.bin"),
        "{}",
        run.stderr
    );
}

#[test]
fn show_adds_what_systool_prints_firmware_loss_timeouts_and_statistics() {
    let dir = tempfile::tempdir().unwrap();
    let layout = common::fixture("layouts/qla2xxx-npiv");
    let ok = std::process::Command::new("cp")
        .arg("-a")
        .arg(layout.join("sys"))
        .arg(layout.join("dev"))
        .arg(dir.path())
        .status()
        .unwrap()
        .success();
    assert!(ok, "copy the layout");
    let sys = dir.path().join("sys");
    let fc = std::fs::canonicalize(sys.join("class/fc_host/host7")).unwrap();
    std::fs::create_dir_all(fc.join("statistics")).unwrap();
    std::fs::write(fc.join("statistics/link_failure_count"), "0x3\n").unwrap();
    std::fs::write(fc.join("statistics/tx_frames"), "0x1a2b\n").unwrap();
    std::fs::write(fc.join("statistics/reset_statistics"), "").unwrap();
    let scsi = std::fs::canonicalize(sys.join("class/scsi_host/host7")).unwrap();
    std::fs::write(scsi.join("fw_version"), "8.08.231 (d0d5)\n").unwrap();
    std::fs::write(scsi.join("driver_version"), "10.02.09.100-k\n").unwrap();

    let run = hbad_in(&sys, &dir.path().join("dev"), &["show", "host7"]).ok();
    for want in [
        "supported_speeds",
        "dev_loss_tmo",
        "fw_version",
        "8.08.231 (d0d5)",
        "10.02.09.100-k",
        "link_failure_count",
        "0x1a2b",
    ] {
        assert!(run.stdout.contains(want), "no {want} in\n{}", run.stdout);
    }
    assert!(!run.stdout.contains("reset_statistics"), "{}", run.stdout);
    let run = hbad_in(&sys, &dir.path().join("dev"), &["--json", "show", "host7"]).ok();
    let v: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v[0]["sysfs"]["statistics"]["tx_frames"], "0x1a2b");
    assert_eq!(v[0]["sysfs"]["firmware"]["fw_version"], "8.08.231 (d0d5)");
    let speeds = v[0]["sysfs"]["fc_host"]["supported_speeds"]
        .as_str()
        .unwrap();
    assert!(!speeds.is_empty());
}
