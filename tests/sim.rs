//! The simulator against the kernel: its trees load into the graph, its events
//! keep a graph equal to a fresh load, its event sequences match the real
//! capture's, and its writes fail the way the kernel's do.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use hbad::graph::{Graph, Node, NodeKind};
use hbad::sim::{demo, Flavour, HbaSpec, LocalLun, LunSpec, Sim, SimSpec, TargetPortSpec};
use hbad::sim::{FabricSpec, ScanGate};
use hbad::sysfs::writes::{vport_text, AttrWriter};
use hbad::sysfs::{Hctl, Sysfs, VportControlDir};
use hbad::uevent::{replay, Action, Uevent};
use hbad::wwn::Wwn;

fn wwn(v: u64) -> Wwn {
    Wwn::from_u64(v)
}

fn hctl(s: &str) -> Hctl {
    s.parse().unwrap()
}

fn errno(r: std::io::Result<()>) -> Option<i32> {
    r.err().and_then(|e| e.raw_os_error())
}

const VHBA_A: u64 = 0x5001_a4a0_0000_0a01;
const VHBA_NODE: u64 = 0x5001_a4a0_0000_0a00;

struct Fixture {
    _dir: tempfile::TempDir,
    sim: Sim,
}

fn demo_sim() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::demo_host(dir.path()).unwrap();
    Fixture { _dir: dir, sim }
}

fn host_devpath(sim: &Sim, host: u32) -> String {
    sim.host_devpath(host).unwrap()
}

fn vport_create(sim: &Sim, host: u32, wwpn: u64, wwnn: u64) -> std::io::Result<()> {
    let path = sim
        .sysfs()
        .vport_create_path(&host_devpath(sim, host), VportControlDir::FcHost);
    sim.write_attr(&path, &format!("{}\n", vport_text(wwn(wwpn), wwn(wwnn))))
}

fn vport_delete(sim: &Sim, host: u32, wwpn: u64, wwnn: u64) -> std::io::Result<()> {
    let path = sim
        .sysfs()
        .vport_delete_path(&host_devpath(sim, host), VportControlDir::FcHost);
    sim.write_attr(&path, &vport_text(wwn(wwpn), wwn(wwnn)))
}

fn scan(sim: &Sim, host: u32, text: &str) -> std::io::Result<()> {
    let path = sim.sysfs().scan_path(&host_devpath(sim, host));
    sim.write_attr(&path, text)
}

fn seq(events: &[Uevent]) -> Vec<(String, String)> {
    events
        .iter()
        .map(|e| (e.action.to_string(), e.subsystem.clone()))
        .collect()
}

/// Nodes by devpath, without what the kernel's events cannot carry: udev links
/// (and a link two disks claim points at one of them), and the attributes that
/// change with no uevent at all (port_state, fabric_name, port_id, port_type,
/// speed, vport_state), which the graph re-reads when it needs them.
fn comparable(g: &Graph) -> BTreeMap<String, Node> {
    g.nodes()
        .map(|n| {
            let mut n = n.clone();
            match &mut n.kind {
                NodeKind::Disk(d) => d.links.clear(),
                NodeKind::Host(h) => {
                    if let Some(fc) = &mut h.fc {
                        fc.port_state = None;
                        fc.fabric_name = None;
                        fc.port_id = None;
                        fc.port_type = None;
                        fc.speed = None;
                    }
                }
                NodeKind::Vport(v) => {
                    v.vport_state = None;
                    v.vport_last_state = None;
                }
                NodeKind::RemotePort(r) => r.port_state = None,
                _ => {}
            }
            (n.devpath.clone(), n)
        })
        .collect()
}

fn assert_graph_follows(graph: &mut Graph, sim: &Sim, what: &str) {
    let sysfs = sim.sysfs();
    for ev in sim.drain_events() {
        graph.apply(&ev, &sysfs);
    }
    let fresh = Graph::load(&sysfs);
    let got = comparable(graph);
    let want = comparable(&fresh);
    if got != want {
        let diff = Graph::diff(&fresh, graph);
        panic!("after {what}: graph from events differs from a fresh load: {diff:#?}");
    }
}

#[test]
fn demo_host_loads_with_every_device_nested() {
    let f = demo_sim();
    let g = Graph::load(&f.sim.sysfs());
    let hosts: Vec<&str> = g.hosts().iter().map(|h| h.name()).collect();
    assert_eq!(hosts, ["host0", "host1", "host2"]);
    // host0: the RAID controller's boot disk at 0:2:0:0.
    let boot = g.lun(hctl("0:2:0:0")).unwrap();
    assert_eq!(g.disk_of(boot).unwrap().name(), "sda");
    let NodeKind::Lun(l) = &boot.kind else {
        panic!()
    };
    assert_eq!(l.vendor.as_deref(), Some("AVAGO"));
    assert_eq!(l.serial.as_deref(), Some("SV00000001"));
    assert_eq!(l.driver.as_deref(), Some("sd"));
    // host1: port A logged in, NPIV-capable, sees the array port and LUN 0 only.
    let NodeKind::Host(h1) = &g.host(1).unwrap().kind else {
        panic!()
    };
    assert_eq!(h1.scsi.proc_name.as_deref(), Some("qla2xxx"));
    let fc = h1.fc.as_ref().unwrap();
    assert_eq!(fc.wwpn, Some(demo::HBA_A_WWPN));
    assert_eq!(fc.port_state.as_deref(), Some("Online"));
    assert_eq!(fc.fabric_name, Some(demo::FABRIC_A_WWN));
    assert_eq!(fc.speed.as_deref(), Some("32 Gbit"));
    let npiv = fc.npiv.as_ref().unwrap();
    assert_eq!((npiv.max_vports, npiv.vports_inuse), (Some(254), Some(0)));
    let lun = g.lun(hctl("1:0:0:0")).unwrap();
    assert!(
        g.lun(hctl("1:0:0:1")).is_none(),
        "LUN 1 is masked to nobody"
    );
    let rport = g.remote_port_of(lun).unwrap();
    assert_eq!(rport.name(), "rport-1:0-0");
    let NodeKind::RemotePort(rp) = &rport.kind else {
        panic!()
    };
    assert!(rp.is_target());
    assert_eq!(rp.wwpn, Some(demo::ARRAY_PORT_A));
    assert_eq!(rp.scsi_target_id, Some(0));
    assert_eq!(rp.port_state.as_deref(), Some("Online"));
    let disk = g.disk_of(lun).unwrap();
    assert_eq!(disk.name(), "sdb");
    let NodeKind::Disk(d) = &disk.kind else {
        panic!()
    };
    assert_eq!(d.info.major_minor.as_deref(), Some("8:16"));
    assert_eq!(d.info.size_bytes, Some(512 << 30));
    assert!(d
        .links
        .contains(&"/dev/disk/by-path/pci-0000:3b:00.0-fc-0x5000144000000101-lun-0".to_string()));
    assert_eq!(
        g.disk_of(g.lun(hctl("2:0:0:0")).unwrap()).unwrap().name(),
        "sdc"
    );
    // The class, bus and block entries are relative symlinks, as the kernel makes them.
    let link = std::fs::read_link(f.sim.sysfs().path("class/fc_host/host1")).unwrap();
    assert_eq!(
        link,
        PathBuf::from("../../devices/pci0000:00/0000:3b:00.0/host1/fc_host/host1")
    );
}

#[test]
fn vport_create_makes_a_logged_in_vhba_that_scans_its_masked_luns() {
    let f = demo_sim();
    let sim = &f.sim;
    sim.map_lun(demo::ARRAY_PORT_A, 1, wwn(VHBA_A)).unwrap();
    let mut g = Graph::load(&sim.sysfs());
    vport_create(sim, 1, VHBA_A, VHBA_NODE).unwrap();
    let events = sim.drain_events();
    let s = seq(&events);
    assert_eq!(
        s[..7],
        [
            ("add", "fc_vports"),
            ("add", "workqueue"),
            ("add", "scsi"),
            ("add", "scsi_host"),
            ("add", "workqueue"),
            ("add", "bsg"),
            ("add", "fc_host"),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    assert!(events.windows(2).all(|w| w[0].seqnum < w[1].seqnum));
    for ev in &events {
        g.apply(ev, &sim.sysfs());
    }
    let vhba = g.host(3).unwrap();
    assert!(g.is_vhba(vhba));
    let vport = g.vport_of_vhba(vhba).unwrap();
    assert_eq!(vport.name(), "vport-1:0-0");
    let NodeKind::Vport(v) = &vport.kind else {
        panic!()
    };
    assert_eq!(v.vport_state.as_deref(), Some("Active"));
    assert_eq!(v.wwpn, Some(wwn(VHBA_A)));
    // Only LUN 1, the one masked to the vHBA, through its own rport.
    let lun = g.lun(hctl("3:0:0:1")).unwrap();
    assert!(g.lun(hctl("3:0:0:0")).is_none());
    assert_eq!(g.remote_port_of(lun).unwrap().name(), "rport-3:0-0");
    assert_eq!(g.disk_of(lun).unwrap().name(), "sdd");
    let NodeKind::Host(h1) = &g.host(1).unwrap().kind else {
        panic!()
    };
    assert_eq!(
        h1.fc.as_ref().unwrap().npiv.as_ref().unwrap().vports_inuse,
        Some(1)
    );
    assert_eq!(comparable(&Graph::load(&sim.sysfs())), comparable(&g));
}

#[test]
fn vport_writes_fail_as_the_kernel_does() {
    let dir = tempfile::tempdir().unwrap();
    let spec = demo::spec().hba(
        HbaSpec::fc(
            "qla2xxx",
            "0000:5e:00.0",
            wwn(0x2100_0024_ff00_0c01),
            wwn(0x2000_0024_ff00_0c01),
            demo::FABRIC_A,
        )
        .max_npiv_vports(Some(1)),
    );
    let sim = Sim::new(dir.path(), &spec).unwrap();
    let create = sim
        .sysfs()
        .vport_create_path(&host_devpath(&sim, 1), VportControlDir::FcHost);
    for bad in [
        "garbage",
        "0x5001a4a000000a01:0x5001a4a000000a00",
        "5001a4a000000a01:5001a4a000000a00\n\n",
    ] {
        assert_eq!(
            errno(sim.write_attr(&create, bad)),
            Some(libc::EINVAL),
            "{bad:?}"
        );
    }
    assert!(
        sim.drain_events().is_empty(),
        "a malformed write changes nothing"
    );
    vport_create(&sim, 1, VHBA_A, VHBA_NODE).unwrap();
    sim.drain_events();
    // A WWPN already on the adapter: EINVAL after the fc_vports add, which is undone.
    assert_eq!(
        errno(vport_create(&sim, 1, VHBA_A, VHBA_NODE)),
        Some(libc::EINVAL)
    );
    let ev = sim.drain_events();
    assert_eq!(
        seq(&ev),
        [("add", "fc_vports"), ("remove", "fc_vports")].map(|(a, b)| (a.into(), b.into()))
    );
    assert!(ev[0].devpath.ends_with("vport-1:0-1/fc_vports/vport-1:0-1"));
    // The failed create used up vport number 1: the next one is vport-1:0-2.
    vport_create(&sim, 1, VHBA_A + 1, VHBA_NODE).unwrap();
    assert!(sim.drain_events()[0].devpath.ends_with("vport-1:0-2"));
    // The parent's own WWPN is taken too.
    assert_eq!(
        errno(vport_create(&sim, 1, demo::HBA_A_WWPN.as_u64(), VHBA_NODE)),
        Some(libc::EINVAL)
    );
    sim.drain_events();
    // max_npiv_vports reached: ENOSPC, and nothing happens.
    let host3 = 3;
    vport_create(&sim, host3, 0x5001_a4a0_0000_0c01, VHBA_NODE).unwrap();
    sim.drain_events();
    assert_eq!(
        errno(vport_create(&sim, host3, 0x5001_a4a0_0000_0c02, VHBA_NODE)),
        Some(libc::ENOSPC)
    );
    assert!(sim.drain_events().is_empty());
    // Delete of a vport that is not there: ENODEV.
    assert_eq!(
        errno(vport_delete(&sim, 1, 0x5001_a4a0_0000_0eee, VHBA_NODE)),
        Some(libc::ENODEV)
    );
    // A vHBA has no NPIV of its own: the attribute does not exist.
    let vhba = sim.host_by_wwpn(wwn(VHBA_A)).unwrap();
    assert_eq!(
        errno(vport_create(&sim, vhba, VHBA_A + 9, VHBA_NODE)),
        Some(libc::ENOENT)
    );
    // Read-only attributes refuse writes.
    let port_name = sim.sysfs().path(&format!(
        "{}/fc_host/host1/port_name",
        host_devpath(&sim, 1)
    ));
    assert_eq!(errno(sim.write_attr(&port_name, "0x1")), Some(libc::EACCES));
    // A forced driver failure comes back as that errno, with the add/remove pair.
    sim.fail_next_vport_create(1, libc::ENOSYS);
    assert_eq!(
        errno(vport_create(&sim, 1, VHBA_A + 5, VHBA_NODE)),
        Some(libc::ENOSYS)
    );
    assert_eq!(sim.drain_events().len(), 2);
    assert!(sim.writes().iter().any(|w| w.errno == Some(libc::ENOSPC)));
}

#[test]
fn vport_on_a_fabric_without_npiv_gets_no_fabric_support_and_no_rports() {
    let dir = tempfile::tempdir().unwrap();
    let spec = SimSpec::new()
        .fabric(FabricSpec::new("old", wwn(0x1000_0005_1e00_0c00)).without_npiv())
        .target(
            TargetPortSpec::new(
                "old",
                wwn(0x5000_1440_0000_0c01),
                wwn(0x5000_1440_0000_0c00),
                0x0c01,
            )
            .lun(LunSpec::new(0, 1 << 30, "OLD0").masked_to(wwn(VHBA_A))),
        )
        .hba(HbaSpec::fc(
            "lpfc",
            "0000:af:00.0",
            wwn(0x1000_0090_fa00_0c01),
            wwn(0x2000_0090_fa00_0c01),
            "old",
        ));
    let sim = Sim::new(dir.path(), &spec).unwrap();
    vport_create(&sim, 0, VHBA_A, VHBA_NODE).unwrap();
    let g = Graph::load(&sim.sysfs());
    let vport = g
        .of_kind(|k| matches!(k, NodeKind::Vport(_)))
        .into_iter()
        .next()
        .unwrap();
    let NodeKind::Vport(v) = &vport.kind else {
        panic!()
    };
    assert_eq!(v.vport_state.as_deref(), Some("No Fabric Support"));
    assert!(g.lun(hctl("1:0:0:0")).is_none());
    assert_eq!(g.of_kind(|k| matches!(k, NodeKind::RemotePort(_))).len(), 1);
}

#[test]
fn host_numbers_are_reused_lowest_first_like_the_capture() {
    // The capture: hosts 0-3, two vports make host4 and host5, deleting the
    // second frees 5, and the next scsi_debug host is host5 again.
    let dir = tempfile::tempdir().unwrap();
    let spec = demo::spec().hba(HbaSpec::scsi_debug(1, 1));
    let sim = Sim::new(dir.path(), &spec).unwrap();
    assert_eq!(sim.hosts(), [0, 1, 2, 3]);
    vport_create(&sim, 1, VHBA_A, VHBA_NODE).unwrap();
    vport_create(&sim, 1, VHBA_A + 1, VHBA_NODE).unwrap();
    assert_eq!(sim.host_by_wwpn(wwn(VHBA_A + 1)), Some(5));
    vport_delete(&sim, 1, VHBA_A + 1, VHBA_NODE).unwrap();
    let added = sim.add_hba(&HbaSpec::scsi_debug(2, 3)).unwrap();
    assert_eq!(added, 5);
    assert!(host_devpath(&sim, 5).starts_with("/devices/pseudo_0/adapter1/"));
}

fn capture_events() -> Vec<Uevent> {
    replay::read_file(&common::kernel_capture().join("events.bin")).unwrap()
}

/// A simulator shaped like the capture's initiator: one FCoE-like port whose
/// fabric gives no NPIV (no switch), one target port with LUN 0 masked to it.
fn capture_like() -> (tempfile::TempDir, Sim, Wwn) {
    let dir = tempfile::tempdir().unwrap();
    let port = wwn(0x2000_0200_0000_000b);
    let target = wwn(0x2000_0200_0000_000a);
    let spec = SimSpec::new()
        .fabric(FabricSpec::new("vn2vn", wwn(0x1000_0000_0000_0001)).without_npiv())
        .target(
            TargetPortSpec::new("vn2vn", target, wwn(0x1000_0200_0000_000a), 0x0a)
                .lun(LunSpec::new(0, 16 << 20, "lab-rd0-serial").masked_to(port))
                .lun(LunSpec::new(1, 16 << 20, "lab-f1-serial")),
        )
        .hba(
            HbaSpec::fc(
                "fcoe",
                "0000:00:04.0",
                port,
                wwn(0x1000_0200_0000_000b),
                "vn2vn",
            )
            .max_npiv_vports(Some(65535)),
        );
    let sim = Sim::new(dir.path(), &spec).unwrap();
    (dir, sim, target)
}

/// (action, subsystem, devtype, property names) of each event.
fn shape(events: &[&Uevent]) -> Vec<(String, String, Option<String>, Vec<String>)> {
    events
        .iter()
        .map(|e| {
            let mut keys: Vec<String> = e.props.keys().cloned().collect();
            keys.sort();
            (
                e.action.to_string(),
                e.subsystem.clone(),
                e.devtype.clone(),
                keys,
            )
        })
        .collect()
}

#[test]
fn event_sequences_match_the_real_kernel_capture() {
    let cap = capture_events();
    let (_dir, sim, target) = capture_like();
    let pick = |range: std::ops::Range<usize>, keep: &dyn Fn(&Uevent) -> bool| -> Vec<&Uevent> {
        cap[range].iter().filter(|e| keep(e)).collect()
    };

    // Scan adding one LUN (capture step 1: 1:0:0:1 and its bdi 8:208).
    sim.map_lun(target, 1, wwn(0x2000_0200_0000_000b)).unwrap();
    let reported = sim.io(hctl("0:0:0:0")).unwrap();
    assert_eq!(reported, ["REPORTED_LUNS_DATA_HAS_CHANGED"]);
    let ua = sim.drain_events();
    assert_eq!(shape(&ua.iter().collect::<Vec<_>>()), shape(&[&cap[0]]));
    scan(&sim, 0, "- - -").unwrap();
    let got = sim.drain_events();
    let want = pick(1..17, &|e| {
        e.devpath.contains("1:0:0:1") || e.devpath.ends_with("bdi/8:208")
    });
    assert_eq!(shape(&got.iter().collect::<Vec<_>>()), shape(&want));

    // vport create on a fabric without NPIV (step 2, first vport).
    vport_create(&sim, 0, 0x5001_a4a0_0000_0b01, 0x5001_a4a0_0000_0b00).unwrap();
    let got = sim.drain_events();
    let want = pick(6..14, &|e| {
        e.devpath.contains("vport-1:0-0") || e.devpath.ends_with("_4")
    });
    assert_eq!(shape(&got.iter().collect::<Vec<_>>()), shape(&want));
    vport_create(&sim, 0, 0x5001_a4a0_0000_0b02, 0x5001_a4a0_0000_0b00).unwrap();
    sim.drain_events();

    // Duplicate WWPN (step 3).
    assert!(vport_create(&sim, 0, 0x5001_a4a0_0000_0b01, 0x5001_a4a0_0000_0b00).is_err());
    let got = sim.drain_events();
    assert_eq!(
        shape(&got.iter().collect::<Vec<_>>()),
        shape(&pick(23..25, &|_| true))
    );

    // vport delete (step 4).
    vport_delete(&sim, 0, 0x5001_a4a0_0000_0b02, 0x5001_a4a0_0000_0b00).unwrap();
    let got = sim.drain_events();
    assert_eq!(
        shape(&got.iter().collect::<Vec<_>>()),
        shape(&pick(25..32, &|_| true))
    );

    // A scsi_debug host with two targets of three LUNs (step 5). The kernel
    // interleaves sd's asynchronous probes; compare the events as a multiset.
    let added = sim.add_hba(&HbaSpec::scsi_debug(2, 3)).unwrap();
    let got = sim.drain_events();
    let mut got_shape = shape(&got.iter().collect::<Vec<_>>());
    let mut want_shape = shape(&pick(32..93, &|_| true));
    got_shape.sort();
    want_shape.sort();
    assert_eq!(got_shape, want_shape);
    // One LUN delete (step 7's shape, on the new host).
    let lun = Hctl {
        host: added,
        channel: 0,
        target: 0,
        lun: 1,
    };
    let delete = sim
        .sysfs()
        .path(&sim.lun_devpath(lun).unwrap())
        .join("delete");
    sim.write_attr(&delete, "1").unwrap();
    let got = sim.drain_events();
    assert_eq!(
        shape(&got.iter().collect::<Vec<_>>()),
        shape(&pick(119..127, &|_| true))
    );
}

#[test]
fn unit_attentions_scans_and_wildcards_follow_the_midlayer() {
    let f = demo_sim();
    let sim = &f.sim;
    let mut g = Graph::load(&sim.sysfs());
    // A new LUN for port A on the array.
    sim.add_lun(
        demo::ARRAY_PORT_A,
        LunSpec::new(7, 1 << 30, "ARRAY0007").masked_to(demo::HBA_A_WWPN),
    )
    .unwrap();
    assert!(
        sim.drain_events().is_empty(),
        "the array tells nobody until I/O"
    );
    assert_eq!(
        sim.io(hctl("1:0:0:0")).unwrap(),
        ["REPORTED_LUNS_DATA_HAS_CHANGED"]
    );
    let ev = sim.drain_events();
    assert_eq!(ev.len(), 1);
    assert_eq!(
        ev[0].unit_attention(),
        Some("REPORTED_LUNS_DATA_HAS_CHANGED")
    );
    assert_eq!(ev[0].devtype.as_deref(), Some("scsi_device"));
    assert_graph_follows(&mut g, sim, "the unit attention");
    // The kernel does not scan by itself; a targeted scan finds the LUN.
    assert!(sim.lun_devpath(hctl("1:0:0:7")).is_none());
    scan(sim, 1, "0 0 -").unwrap();
    assert!(sim.lun_devpath(hctl("1:0:0:7")).is_some());
    assert!(
        sim.lun_devpath(hctl("2:0:0:7")).is_none(),
        "masked to port A only"
    );
    assert_graph_follows(&mut g, sim, "the scan");
    // Link down: remote ports Blocked, no events, and a wildcard scan finds nothing.
    sim.set_link(1, false).unwrap();
    assert!(sim.drain_events().is_empty());
    let g2 = Graph::load(&sim.sysfs());
    let NodeKind::Host(h) = &g2.host(1).unwrap().kind else {
        panic!()
    };
    assert_eq!(
        h.fc.as_ref().unwrap().port_state.as_deref(),
        Some("Linkdown")
    );
    sim.map_lun(demo::ARRAY_PORT_A, 1, demo::HBA_A_WWPN)
        .unwrap();
    scan(sim, 1, "- - -").unwrap();
    assert!(sim.lun_devpath(hctl("1:0:0:1")).is_none());
    // Link up: the transport rescans the returning remote port by itself.
    sim.set_link(1, true).unwrap();
    assert!(sim.lun_devpath(hctl("1:0:0:1")).is_some());
    assert_graph_follows(&mut g, sim, "link down and up");
    // Bad scan text.
    assert_eq!(errno(scan(sim, 1, "0 0")), Some(libc::EINVAL));
    assert_eq!(errno(scan(sim, 1, "x - -")), Some(libc::EINVAL));
}

#[test]
fn resize_reports_capacity_change_and_rescan_rereads_it() {
    let f = demo_sim();
    let sim = &f.sim;
    let mut g = Graph::load(&sim.sysfs());
    sim.resize_lun(demo::ARRAY_PORT_A, 0, 600 << 30).unwrap();
    assert_eq!(sim.io_pending(), 2, "both paths to the datastore report it");
    let ev = sim.drain_events();
    assert!(ev
        .iter()
        .all(|e| e.unit_attention() == Some("CAPACITY_DATA_HAS_CHANGED")));
    let dev = sim.lun_devpath(hctl("1:0:0:0")).unwrap();
    let rescan = sim.sysfs().rescan_path(&dev);
    sim.write_attr(&rescan, "1").unwrap();
    let ev = sim.drain_events();
    assert_eq!(ev.len(), 1);
    assert_eq!(
        (ev[0].action, ev[0].subsystem.as_str()),
        (Action::Change, "block")
    );
    assert_eq!(ev[0].prop("RESIZE"), Some("1"));
    for e in &ev {
        g.apply(e, &sim.sysfs());
    }
    let NodeKind::Disk(d) = &g.disk_of(g.lun(hctl("1:0:0:0")).unwrap()).unwrap().kind else {
        panic!()
    };
    assert_eq!(d.info.size_bytes, Some(600 << 30));
    // A second rescan with nothing new says nothing.
    sim.write_attr(&rescan, "1").unwrap();
    assert!(sim.drain_events().is_empty());
}

#[test]
fn stalled_scan_blocks_only_its_own_host() {
    let f = demo_sim();
    let sim = f.sim.clone();
    let gate: ScanGate = sim.stall_scans(1);
    let s2 = sim.clone();
    let stuck = std::thread::spawn(move || scan(&s2, 1, "- - -"));
    assert!(gate.wait_for_blocked(1, Duration::from_secs(30)));
    // Another host scans, and admin operations go on, while host1's scan hangs.
    scan(&sim, 2, "- - -").unwrap();
    sim.map_lun(demo::ARRAY_PORT_A, 1, demo::HBA_A_WWPN)
        .unwrap();
    assert!(!stuck.is_finished());
    gate.release();
    stuck.join().unwrap().unwrap();
    assert!(sim.lun_devpath(hctl("1:0:0:1")).is_some());
}

#[test]
fn subscribers_get_events_on_another_thread_and_udev_adds_links() {
    let f = demo_sim();
    let sim = f.sim.clone();
    let kernel = sim.subscribe(Flavour::Kernel);
    let udev = sim.subscribe(Flavour::Udev);
    let reader = std::thread::spawn(move || kernel.iter().take(8).collect::<Vec<_>>());
    sim.map_lun(demo::ARRAY_PORT_A, 2, demo::HBA_A_WWPN)
        .unwrap();
    scan(&sim, 1, "0 0 2").unwrap();
    let got = reader.join().unwrap();
    assert_eq!(got.last().unwrap().action, Action::Bind);
    let block = got.iter().find(|e| e.subsystem == "block").unwrap();
    assert_eq!(block.prop("DEVNAME"), Some("sdd"));
    assert_eq!(block.prop("DEVLINKS"), None);
    let ublock = udev.try_iter().find(|e| e.subsystem == "block").unwrap();
    let links = ublock.prop("DEVLINKS").unwrap();
    assert!(
        links.contains("/dev/disk/by-path/pci-0000:3b:00.0-fc-0x5000144000000102-lun-2")
            || links.contains("/dev/disk/by-path/pci-0000:3b:00.0-fc-0x5000144000000101-lun-2"),
        "{links}"
    );
    assert_eq!(
        std::fs::read_link(
            sim.sysfs()
                .dev_root()
                .join("disk/by-path/pci-0000:3b:00.0-fc-0x5000144000000101-lun-2")
        )
        .unwrap(),
        PathBuf::from("../../sdd")
    );
    assert_eq!(sim.drain_events().len(), 8, "the drain queue is separate");
}

/// A small deterministic generator, so a failing sequence can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn graph_from_events_equals_a_fresh_load_for_random_operation_sequences() {
    for seed in 1..=6u64 {
        let f = demo_sim();
        let sim = &f.sim;
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut g = Graph::load(&sim.sysfs());
        let vport_wwpns: Vec<u64> = (0..4).map(|i| VHBA_A + i).collect();
        let mut log = Vec::new();
        for step in 0..30 {
            let op = rng.below(13);
            let hosts = sim.hosts();
            let fc_parents: Vec<u32> = [demo::HBA_A_WWPN, demo::HBA_B_WWPN]
                .iter()
                .filter_map(|w| sim.host_by_wwpn(*w))
                .collect();
            let what = match op {
                0 if !fc_parents.is_empty() => {
                    let p = fc_parents[rng.below(fc_parents.len())];
                    let w = vport_wwpns[rng.below(vport_wwpns.len())];
                    let _ = vport_create(sim, p, w, VHBA_NODE);
                    format!("vport_create host{p} {w:x}")
                }
                1 if !fc_parents.is_empty() => {
                    let p = fc_parents[rng.below(fc_parents.len())];
                    let w = vport_wwpns[rng.below(vport_wwpns.len())];
                    let _ = vport_delete(sim, p, w, VHBA_NODE);
                    format!("vport_delete host{p} {w:x}")
                }
                2 => {
                    let port = [demo::ARRAY_PORT_A, demo::ARRAY_PORT_B][rng.below(2)];
                    let lun = rng.below(3) as u64;
                    let mut inits = vec![demo::HBA_A_WWPN, demo::HBA_B_WWPN];
                    inits.extend(vport_wwpns.iter().map(|w| wwn(*w)));
                    let i = inits[rng.below(inits.len())];
                    if rng.below(3) == 0 {
                        let _ = sim.unmap_lun(port, lun, i);
                    } else {
                        let _ = sim.map_lun(port, lun, i);
                    }
                    sim.io_pending();
                    format!("map/unmap {port} lun {lun} to {i}")
                }
                3 | 4 if !hosts.is_empty() => {
                    let h = hosts[rng.below(hosts.len())];
                    let text = ["- - -", "0 0 -", "0 - -", "0 0 1", "2 0 -"][rng.below(5)];
                    let _ = scan(sim, h, text);
                    format!("scan host{h} {text}")
                }
                5 => {
                    let luns = sim.luns();
                    if luns.is_empty() {
                        continue;
                    }
                    let l = luns[rng.below(luns.len())];
                    let dev = sim.lun_devpath(l).unwrap();
                    sim.write_attr(&sim.sysfs().path(&dev).join("delete"), "1")
                        .unwrap();
                    format!("delete {l}")
                }
                6 => {
                    let _ = sim.resize_lun(demo::ARRAY_PORT_A, 0, (600 + step) << 30);
                    sim.io_pending();
                    for l in sim.luns() {
                        let dev = sim.lun_devpath(l).unwrap();
                        sim.write_attr(&sim.sysfs().rescan_path(&dev), "1").unwrap();
                    }
                    "resize and rescan".to_string()
                }
                7 if !fc_parents.is_empty() => {
                    let p = fc_parents[rng.below(fc_parents.len())];
                    let up = rng.below(2) == 0;
                    sim.set_link(p, up).unwrap();
                    format!("link host{p} {up}")
                }
                8 if !fc_parents.is_empty() => {
                    let p = fc_parents[rng.below(fc_parents.len())];
                    sim.remove_hba(p).unwrap();
                    format!("unplug host{p}")
                }
                9 => {
                    let spec = demo::spec();
                    let fc_hbas: Vec<&HbaSpec> = spec.hbas[1..].iter().collect();
                    let hba = fc_hbas[rng.below(2)];
                    let hbad::sim::HbaKind::Fc(p) = &hba.kind else {
                        panic!()
                    };
                    if sim.host_by_wwpn(p.wwpn).is_none() {
                        sim.add_hba(hba).unwrap();
                    }
                    "plug an FC HBA".to_string()
                }
                10 => {
                    let h = sim.add_hba(&HbaSpec::scsi_debug(2, 2)).unwrap();
                    if rng.below(2) == 0 {
                        sim.add_local_lun(
                            h,
                            LocalLun {
                                channel: 0,
                                target: 1,
                                spec: LunSpec::new(5, 1 << 20, "dbg5"),
                            },
                        )
                        .unwrap();
                        sim.io_pending();
                        let _ = scan(sim, h, "- - -");
                    }
                    format!("scsi_debug host{h}")
                }
                11 => {
                    let dbg: Vec<u32> = hosts
                        .iter()
                        .copied()
                        .filter(|h| {
                            sim.host_devpath(*h)
                                .is_some_and(|d| d.starts_with("/devices/pseudo_0"))
                        })
                        .collect();
                    if dbg.is_empty() {
                        continue;
                    }
                    let h = dbg[rng.below(dbg.len())];
                    sim.remove_hba(h).unwrap();
                    format!("remove scsi_debug host{h}")
                }
                12 => {
                    let w = wwn(0x5000_1440_0000_0200 + step);
                    let fabric = [demo::FABRIC_A, demo::FABRIC_B][rng.below(2)];
                    let lun = LunSpec::new(0, 1 << 30, &format!("NEW{step}"))
                        .masked_to(demo::HBA_A_WWPN)
                        .masked_to(demo::HBA_B_WWPN)
                        .masked_to(wwn(VHBA_A));
                    sim.add_target_port(
                        TargetPortSpec::new(fabric, w, w, 0x0300 + step as u32).lun(lun),
                    )
                    .unwrap();
                    format!("new target port {w} on {fabric}")
                }
                _ => continue,
            };
            log.push(what);
            assert_graph_follows(&mut g, sim, &format!("seed {seed}: {log:#?}"));
        }
    }
}

#[test]
fn hot_unplug_removes_vports_before_the_host_and_the_pci_device_last() {
    let f = demo_sim();
    let sim = &f.sim;
    sim.map_lun(demo::ARRAY_PORT_A, 1, wwn(VHBA_A)).unwrap();
    vport_create(sim, 1, VHBA_A, VHBA_NODE).unwrap();
    sim.drain_events();
    sim.remove_hba(1).unwrap();
    let ev = sim.drain_events();
    let pos = |pred: &dyn Fn(&Uevent) -> bool| ev.iter().position(pred).unwrap();
    let vhba_gone =
        pos(&|e| e.action == Action::Remove && e.devpath.ends_with("vport-1:0-0/host3"));
    let vport_gone = pos(&|e| e.subsystem == "fc_vports");
    let host_gone = pos(&|e| {
        e.action == Action::Remove
            && e.subsystem == "scsi"
            && e.devpath.ends_with("0000:3b:00.0/host1")
    });
    let pci_gone = pos(&|e| e.action == Action::Remove && e.subsystem == "pci");
    assert!(vhba_gone < vport_gone && vport_gone < host_gone && host_gone < pci_gone);
    assert_eq!(ev.last().unwrap().subsystem, "pci");
    assert!(!sim.sysfs().path("devices/pci0000:00/0000:3b:00.0").exists());
    assert!(Graph::load(&sim.sysfs()).host(1).is_none());
    // Re-plugging gives the lowest free number: host1 again, with its LUN back.
    let spec = demo::spec();
    assert_eq!(sim.add_hba(&spec.hbas[1]).unwrap(), 1);
    assert!(sim.lun_devpath(hctl("1:0:0:0")).is_some());
    let _: &Sysfs = &sim.sysfs();
}
