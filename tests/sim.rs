//! The simulator against the kernel: its trees load into the graph, its events
//! keep a graph equal to a fresh load, its event sequences match the real
//! capture's, and its writes fail the way the kernel's do.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hbad::graph::{Graph, NodeKind, NodeRecord};
use hbad::sim::{demo, Flavour, HbaSpec, LocalLun, LunSpec, Sim, SimSpec, TargetPortSpec};
use hbad::sim::{FabricSpec, ScanGate};
use hbad::sysfs::writes::{vport_text, AttrWriter};
use hbad::sysfs::{Hctl, Sysfs, VportControlDir};
use hbad::uevent::fc_event::{parse_fc_event, FcEventCode};
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
/// speed, vport_state; a remote port's node_name, port_id and roles when
/// dev_loss_tmo runs out), which the graph must re-read when it needs them.
fn comparable(g: &Graph) -> BTreeMap<String, NodeRecord> {
    g.nodes()
        .map(|n| {
            let mut n = g.record(n);
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
                // dev_loss_tmo expiry rewrites these, also without a uevent.
                NodeKind::RemotePort(r) => {
                    r.port_state = None;
                    r.wwnn = None;
                    r.port_id = None;
                    r.roles.clear();
                }
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
    // rport-1:0-0 is the fabric's name server, as on a real switched fabric.
    let rport = g.remote_port_of(lun).unwrap();
    assert_eq!(rport.name(), "rport-1:0-1");
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
    // After the name server's, rport-3:0-0, as a real vport's login shows.
    assert_eq!(g.remote_port_of(lun).unwrap().name(), "rport-3:0-1");
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
    assert_eq!(v.vport_last_state.as_deref(), Some("Linkdown"));
    assert!(g.lun(hctl("1:0:0:0")).is_none());
    // The parent's: the fabric's name server and the target port.
    assert_eq!(g.of_kind(|k| matches!(k, NodeKind::RemotePort(_))).len(), 2);
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
        .fabric(FabricSpec::new("vn2vn", wwn(0x1000_0000_0000_0001)).vn2vn())
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

    // Removing a scsi_debug host of two targets with three LUNs each (step 8), in
    // exact order. scsi_debug also raises unit attentions on the LUNs that remain
    // while others go: a driver quirk the simulator leaves out.
    let other = sim.add_hba(&HbaSpec::scsi_debug(2, 3)).unwrap();
    sim.drain_events();
    sim.remove_hba(other).unwrap();
    let got = sim.drain_events();
    let want = pick(131..200, &|e| {
        e.action != Action::Change
            && (e.devpath.contains("/adapter2")
                || e.devpath.ends_with("scsi_tmf_5")
                || (e.action == Action::Remove && e.subsystem == "bdi"))
    });
    assert_eq!(want.len(), 55);
    assert_eq!(shape(&got.iter().collect::<Vec<_>>()), shape(&want));
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
        let mut present: Vec<TargetPortSpec> = demo::spec().targets;
        let mut departed: Vec<TargetPortSpec> = Vec::new();
        for step in 0..30 {
            let op = rng.below(16);
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
                10 if rng.below(3) == 0 => {
                    let luns = (0..2)
                        .map(|l| LunSpec::new(l, 1 << 30, &format!("ISCSI{step}-{l}")))
                        .collect();
                    let h = sim
                        .add_hba(&HbaSpec::iscsi(
                            &format!("iqn.2003-01.org.linux-iscsi.nas:t{step}"),
                            "192.0.2.10:3260",
                            luns,
                        ))
                        .unwrap();
                    format!("iscsi login host{h}")
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
                            sim.host_devpath(*h).is_some_and(|d| {
                                d.starts_with("/devices/pseudo_0")
                                    || d.starts_with("/devices/platform")
                            })
                        })
                        .collect();
                    if dbg.is_empty() {
                        continue;
                    }
                    let h = dbg[rng.below(dbg.len())];
                    sim.remove_hba(h).unwrap();
                    format!("remove scsi_debug host{h}")
                }
                12 if !departed.is_empty() && rng.below(2) == 0 => {
                    let back = departed.swap_remove(rng.below(departed.len()));
                    let w = back.wwpn;
                    sim.add_target_port(back.clone()).unwrap();
                    present.push(back);
                    format!("target port {w} returns")
                }
                13 if !present.is_empty() => {
                    let gone = present.swap_remove(rng.below(present.len()));
                    sim.remove_target_port(gone.wwpn).unwrap();
                    let w = gone.wwpn;
                    departed.push(gone);
                    format!("target port {w} leaves")
                }
                15 => {
                    let fc: Vec<u32> = hosts
                        .iter()
                        .copied()
                        .filter(|h| {
                            let dev = sim.host_devpath(*h).unwrap();
                            sim.sysfs().issue_lip_path(&dev).exists()
                        })
                        .collect();
                    if fc.is_empty() {
                        continue;
                    }
                    let h = fc[rng.below(fc.len())];
                    let lip = sim.sysfs().issue_lip_path(&sim.host_devpath(h).unwrap());
                    sim.write_attr(&lip, "1").unwrap();
                    format!("issue_lip host{h}")
                }
                14 => {
                    sim.expire_dev_loss().unwrap();
                    "dev_loss_tmo runs out".to_string()
                }
                12 => {
                    let w = wwn(0x5000_1440_0000_0200 + step);
                    let fabric = [demo::FABRIC_A, demo::FABRIC_B][rng.below(2)];
                    let lun = LunSpec::new(0, 1 << 30, &format!("NEW{step}"))
                        .masked_to(demo::HBA_A_WWPN)
                        .masked_to(demo::HBA_B_WWPN)
                        .masked_to(wwn(VHBA_A));
                    let port = TargetPortSpec::new(fabric, w, w, 0x0300 + step as u32).lun(lun);
                    sim.add_target_port(port.clone()).unwrap();
                    present.push(port);
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

#[test]
fn executor_scans_through_the_simulator_and_reports_a_stalled_host_hung() {
    use hbad::exec::scan::{ScanOutcome, Scanner};
    use hbad::plan::HostRef;
    use hbad::sysfs::writes::ScanScope;
    use std::sync::Arc;

    let f = demo_sim();
    let sim = f.sim.clone();
    sim.map_lun(demo::ARRAY_PORT_A, 1, demo::HBA_A_WWPN)
        .unwrap();
    sim.map_lun(demo::ARRAY_PORT_B, 2, demo::HBA_B_WWPN)
        .unwrap();
    let gate = sim.stall_scans(1);
    let scanner = Scanner::new(
        Arc::new(sim.clone()),
        sim.sysfs(),
        Duration::from_millis(300),
    );
    let host = |n| HostRef {
        number: n,
        devpath: sim.host_devpath(n).unwrap(),
    };
    let target = ScanScope::Target {
        channel: 0,
        target: 0,
    };
    let stuck = scanner.request(&host(1), target, "unit attention");
    let fine = scanner.request(&host(2), target, "unit attention");
    // The gate never opens before the timeout: the outcome does not depend on timing.
    assert_eq!(
        stuck.wait(Duration::from_millis(300)).outcome,
        ScanOutcome::Hung
    );
    assert_eq!(
        fine.wait(Duration::from_secs(60)).outcome,
        ScanOutcome::Done
    );
    assert!(sim.lun_devpath(hctl("2:0:0:2")).is_some());
    assert!(sim.lun_devpath(hctl("1:0:0:1")).is_none());
    assert!(sim
        .writes()
        .iter()
        .any(|w| w.path.ends_with("scsi_host/host2/scan")
            && w.value == "0 0 -"
            && w.errno.is_none()));
    gate.release();
}

#[test]
fn old_kernels_npiv_controls_live_under_scsi_host() {
    let dir = tempfile::tempdir().unwrap();
    let spec = demo::spec();
    let mut spec = spec;
    spec.hbas[1] = spec.hbas[1]
        .clone()
        .npiv_controls(VportControlDir::ScsiHost);
    let sim = Sim::new(dir.path(), &spec).unwrap();
    let g = Graph::load(&sim.sysfs());
    let NodeKind::Host(h) = &g.host(1).unwrap().kind else {
        panic!()
    };
    let npiv = h.fc.as_ref().unwrap().npiv.as_ref().unwrap();
    assert_eq!(npiv.control_dir, VportControlDir::ScsiHost);
    let dev = host_devpath(&sim, 1);
    let text = vport_text(wwn(VHBA_A), wwn(VHBA_NODE));
    let fc_path = sim.sysfs().vport_create_path(&dev, VportControlDir::FcHost);
    assert_eq!(errno(sim.write_attr(&fc_path, &text)), Some(libc::ENOENT));
    let old_path = sim
        .sysfs()
        .vport_create_path(&dev, VportControlDir::ScsiHost);
    sim.write_attr(&old_path, &text).unwrap();
    assert_eq!(sim.host_by_wwpn(wwn(VHBA_A)), Some(3));
    let del = sim
        .sysfs()
        .vport_delete_path(&dev, VportControlDir::ScsiHost);
    sim.write_attr(&del, &text).unwrap();
    assert_eq!(sim.host_by_wwpn(wwn(VHBA_A)), None);
}

#[test]
fn udev_flavour_adds_the_disk_change_after_a_unit_attention() {
    let f = demo_sim();
    let sim = &f.sim;
    sim.map_lun(demo::ARRAY_PORT_A, 1, demo::HBA_A_WWPN)
        .unwrap();
    sim.io(hctl("1:0:0:0")).unwrap();
    let udev = sim.drain_udev_events();
    assert_eq!(
        seq(&udev),
        [("change", "scsi"), ("change", "block")].map(|(a, b)| (a.into(), b.into()))
    );
    assert_eq!(udev[1].prop("DEVNAME"), Some("sdb"));
    assert!(udev[1]
        .prop("DEVLINKS")
        .unwrap()
        .contains("by-path/pci-0000:3b:00.0-fc-"));
    // Without udev, the kernel sends only the scsi_device change.
    sim.map_lun(demo::ARRAY_PORT_A, 2, demo::HBA_A_WWPN)
        .unwrap();
    scan(sim, 1, "0 0 -").unwrap();
    sim.drain_events();
    sim.map_lun(demo::ARRAY_PORT_A, 1, wwn(VHBA_A)).unwrap();
    sim.unmap_lun(demo::ARRAY_PORT_A, 2, demo::HBA_A_WWPN)
        .unwrap();
    assert_eq!(
        sim.io_pending(),
        1,
        "one report per target until it is rescanned"
    );
    let kernel = sim.drain_events();
    assert_eq!(seq(&kernel), [("change".to_string(), "scsi".to_string())]);
}

#[test]
fn a_simulator_wants_an_empty_directory() {
    let dir = tempfile::tempdir().unwrap();
    let _first = Sim::demo_host(dir.path()).unwrap();
    let err = Sim::demo_host(dir.path()).unwrap_err().to_string();
    assert!(err.contains("empty directory"), "{err}");
    let bad = SimSpec::new().hba(HbaSpec::fc(
        "lpfc",
        "0000:01:00.0",
        wwn(1 << 60),
        wwn(2 << 60),
        "nowhere",
    ));
    let other = tempfile::tempdir().unwrap();
    assert!(matches!(
        Sim::new(other.path(), &bad),
        Err(hbad::sim::SimError::NoFabric(f)) if f == "nowhere"
    ));
}

#[test]
fn a_departed_target_port_blocks_then_loses_its_luns_and_returns_to_the_same_ids() {
    let f = demo_sim();
    let sim = &f.sim;
    let mut g = Graph::load(&sim.sysfs());
    let spec = demo::spec();
    let port_a = spec.targets[0].clone();
    sim.remove_target_port(demo::ARRAY_PORT_A).unwrap();
    assert!(
        sim.drain_events().is_empty(),
        "blocking a remote port is silent"
    );
    let rport = |sim: &Sim| {
        let g = Graph::load(&sim.sysfs());
        let n = g
            .find(&"rport-1:0-1".parse().unwrap())
            .pop()
            .unwrap()
            .clone();
        let NodeKind::RemotePort(r) = n.kind else {
            panic!()
        };
        r
    };
    assert_eq!(rport(sim).port_state.as_deref(), Some("Blocked"));
    assert!(
        sim.lun_devpath(hctl("1:0:0:0")).is_some(),
        "LUNs wait for dev_loss_tmo"
    );
    sim.expire_dev_loss().unwrap();
    assert!(sim.lun_devpath(hctl("1:0:0:0")).is_none());
    let r = rport(sim);
    assert_eq!(r.port_state.as_deref(), Some("Not Present"));
    assert!(!r.is_target(), "roles are unknown once not present");
    assert_eq!(r.scsi_target_id, Some(0));
    assert_graph_follows(&mut g, sim, "dev_loss expiry");
    // Port A is back: same rport, same target id, LUN rescanned by the transport.
    sim.add_target_port(port_a).unwrap();
    let r = rport(sim);
    assert_eq!(r.port_state.as_deref(), Some("Online"));
    assert!(r.is_target());
    assert!(sim.lun_devpath(hctl("1:0:0:0")).is_some());
    assert_graph_follows(&mut g, sim, "the port's return");
    assert!(Graph::load(&sim.sysfs())
        .find(&"rport-1:0-2".parse().unwrap())
        .is_empty());
}

#[test]
fn vport_symbolic_name_is_stored_and_issue_lip_finds_new_luns() {
    let f = demo_sim();
    let sim = &f.sim;
    vport_create(sim, 1, VHBA_A, VHBA_NODE).unwrap();
    let vport = format!("{}/vport-1:0-0", host_devpath(sim, 1));
    let path = sim.sysfs().vport_symbolic_name_path(&vport);
    sim.write_attr(&path, "hbad:vm-db01\n").unwrap();
    let g = Graph::load(&sim.sysfs());
    let NodeKind::Vport(v) = &g.node(&vport).unwrap().kind else {
        panic!()
    };
    assert_eq!(v.symbolic_name.as_deref(), Some("hbad:vm-db01"));
    sim.drain_events();
    // A LIP re-logs the port in: the transport rescans its targets by itself.
    sim.map_lun(demo::ARRAY_PORT_A, 2, wwn(VHBA_A)).unwrap();
    let vhba = sim.host_by_wwpn(wwn(VHBA_A)).unwrap();
    let lip = sim.sysfs().issue_lip_path(&host_devpath(sim, vhba));
    sim.write_attr(&lip, "1").unwrap();
    assert!(sim
        .lun_devpath(Hctl {
            host: vhba,
            channel: 0,
            target: 0,
            lun: 2
        })
        .is_some());
    // Non-FC hosts have no issue_lip.
    let raid_lip = sim.sysfs().issue_lip_path(&host_devpath(sim, 0));
    assert_eq!(errno(sim.write_attr(&raid_lip, "1")), Some(libc::ENOENT));
}

#[test]
fn vport_symbolic_name_follows_store_fc_vport_symbolic_name() {
    let f = demo_sim();
    let sim = &f.sim;
    vport_create(sim, 1, VHBA_A, VHBA_NODE).unwrap();
    let vport = format!("{}/vport-1:0-0", host_devpath(sim, 1));
    let path = sim.sysfs().vport_symbolic_name_path(&vport);
    let file = || std::fs::read(&path).unwrap();
    // A new vport's buffer is zeroes: an empty name.
    assert_eq!(file(), b"\n");
    // char[64] with its NUL: 63 bytes fit (a newline is not counted), 64 do not.
    assert_eq!(
        errno(sim.write_attr(&path, &"x".repeat(64))),
        Some(libc::EINVAL)
    );
    assert_eq!(file(), b"\n", "a refused name changes nothing");
    sim.write_attr(&path, &format!("{}\n", "x".repeat(63)))
        .unwrap();
    assert_eq!(file(), format!("{}\n", "x".repeat(63)).as_bytes());
    // memcpy over the old name, no terminator: the old tail shows.
    sim.write_attr(&path, "libvirt-pool-x1").unwrap();
    assert_eq!(
        file(),
        format!("libvirt-pool-x1{}\n", "x".repeat(48)).as_bytes()
    );
    // A NUL written with the name ends it: sysfs shows the string up to it, as
    // "%s" prints it, and never the NUL or the bytes behind it.
    sim.write_attr(&path, "hbad:db1\0").unwrap();
    assert_eq!(file(), b"hbad:db1\n");
    let g = Graph::load(&sim.sysfs());
    let NodeKind::Vport(v) = &g.node(&vport).unwrap().kind else {
        panic!()
    };
    assert_eq!(v.symbolic_name.as_deref(), Some("hbad:db1"));
    // The bytes behind the NUL are still in the kernel's buffer: covering the NUL
    // brings them back.
    sim.write_attr(&path, "hbad:db10").unwrap();
    assert_eq!(
        file(),
        format!("hbad:db10ool-x1{}\n", "x".repeat(48)).as_bytes()
    );
}

#[test]
fn an_iscsi_session_nests_its_target_under_the_session() {
    let f = demo_sim();
    let sim = &f.sim;
    let mut g = Graph::load(&sim.sysfs());
    let iqn = "iqn.2003-01.org.linux-iscsi.nas:vol1";
    let h = sim
        .add_hba(&HbaSpec::iscsi(
            iqn,
            "192.0.2.10:3260",
            vec![LunSpec::new(0, 8 << 30, "NAS0")],
        ))
        .unwrap();
    assert_eq!(h, 3);
    assert_eq!(
        sim.lun_devpath(hctl("3:0:0:0")).unwrap(),
        "/devices/platform/host3/session1/target3:0:0/3:0:0:0"
    );
    assert_graph_follows(&mut g, sim, "iscsi login");
    let fresh = Graph::load(&sim.sysfs());
    let lun = fresh.lun(hctl("3:0:0:0")).unwrap();
    assert_eq!(fresh.host_of(lun).unwrap().name(), "host3");
    let NodeKind::Disk(d) = &fresh.disk_of(lun).unwrap().kind else {
        panic!()
    };
    assert!(d.links.contains(&format!(
        "/dev/disk/by-path/ip-192.0.2.10:3260-iscsi-{iqn}-lun-0"
    )));
    sim.remove_hba(h).unwrap();
    let ev = sim.drain_events();
    let subs: Vec<&str> = ev.iter().map(|e| e.subsystem.as_str()).collect();
    let pos = |s: &str| subs.iter().position(|x| *x == s).unwrap();
    assert!(pos("block") < pos("iscsi_session") && pos("iscsi_session") < pos("scsi_host"));
    for e in &ev {
        g.apply(e, &sim.sysfs());
    }
    assert!(g.host(3).is_none());
    // Session numbers count up: the next login is session2.
    let h = sim
        .add_hba(&HbaSpec::iscsi(
            iqn,
            "192.0.2.10:3260",
            vec![LunSpec::new(0, 8 << 30, "NAS0")],
        ))
        .unwrap();
    assert!(sim
        .lun_devpath(Hctl {
            host: h,
            channel: 0,
            target: 0,
            lun: 0
        })
        .unwrap()
        .contains("/session2/"));
}

/// Every path under `dir` (symlinks not followed), relative, with numbers and
/// disk names normalised: `rport-N:N-N/targetN:N:N/N:N:N:N/block/sdX`.
fn shape_of_tree(dir: &std::path::Path) -> std::collections::BTreeSet<String> {
    fn norm(s: &str) -> String {
        let mut out = String::new();
        let mut chars = s.chars().peekable();
        while let Some(c) = chars.next() {
            if c.is_ascii_digit() {
                while chars.peek().is_some_and(|c| c.is_ascii_digit()) {
                    chars.next();
                }
                out.push('N');
            } else {
                out.push(c);
            }
        }
        out.split('/')
            .map(|p| {
                if p.starts_with("sd")
                    && p.len() <= 4
                    && p[2..].chars().all(|c| c.is_ascii_lowercase())
                {
                    "sdX".to_string()
                } else {
                    p.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("/")
    }
    let mut out = std::collections::BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().filter_map(|e| e.ok()) {
            let p = e.path();
            out.insert(norm(&p.strip_prefix(dir).unwrap().to_string_lossy()));
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            }
        }
    }
    out
}

#[test]
fn every_path_the_simulator_makes_exists_in_the_real_kernels_tree() {
    let (_dir, sim, target) = capture_like();
    sim.map_lun(target, 1, wwn(0x2000_0200_0000_000b)).unwrap();
    scan(&sim, 0, "- - -").unwrap();
    vport_create(&sim, 0, 0x5001_a4a0_0000_0b01, 0x5001_a4a0_0000_0b00).unwrap();
    let ours = shape_of_tree(&sim.sysfs().path(&host_devpath(&sim, 0)));
    let cap = common::kernel_capture().join("after/sys");
    let theirs = shape_of_tree(&cap.join("devices/virtual/net/vi/ctlr_1/host1"));
    assert!(ours.len() > 60, "{ours:#?}");
    let extra: Vec<&String> = ours.difference(&theirs).collect();
    assert!(
        extra.is_empty(),
        "paths the kernel does not have: {extra:#?}"
    );
    // And the attributes hbad reads, where the kernel has them, the simulator has too.
    for must in [
        "scsi_host/hostN/proc_name",
        "scsi_host/hostN/scan",
        "fc_host/hostN/port_name",
        "fc_host/hostN/port_state",
        "fc_host/hostN/vport_create",
        "fc_host/hostN/npiv_vports_inuse",
        "vport-N:N-N/fc_vports/vport-N:N-N/vport_state",
        "vport-N:N-N/hostN/fc_host/hostN/port_name",
        "rport-N:N-N/fc_remote_ports/rport-N:N-N/scsi_target_id",
        "rport-N:N-N/targetN:N:N/N:N:N:N/vpd_pgN",
        "rport-N:N-N/targetN:N:N/N:N:N:N/wwid",
        "rport-N:N-N/targetN:N:N/N:N:N:N/driver",
        "rport-N:N-N/targetN:N:N/N:N:N:N/block/sdX/size",
        "rport-N:N-N/targetN:N:N/N:N:N:N/block/sdX/dev",
    ] {
        assert!(theirs.contains(must), "capture lacks {must}");
        assert!(ours.contains(must), "simulator lacks {must}");
    }
    // The class and bus directories hold the same kinds of entries.
    for class in [
        "class/fc_host",
        "class/fc_vports",
        "class/fc_remote_ports",
        "class/scsi_host",
        "bus/scsi/devices",
        "block",
    ] {
        let names = |root: &std::path::Path| -> std::collections::BTreeSet<String> {
            shape_of_tree(&root.join(class))
                .into_iter()
                .filter(|n| !n.contains('/'))
                .collect()
        };
        let extra: Vec<String> = names(sim.sysfs().root())
            .difference(&names(&cap))
            .cloned()
            .collect();
        assert!(extra.is_empty(), "{class}: {extra:?}");
    }
}

#[test]
fn a_scsi_debug_host_has_the_real_kernels_layout() {
    let (_dir, sim, _) = capture_like();
    let h = sim.add_hba(&HbaSpec::scsi_debug(2, 3)).unwrap();
    let dev = host_devpath(&sim, h);
    assert_eq!(dev, "/devices/pseudo_0/adapter0/host1");
    let ours = shape_of_tree(&sim.sysfs().path(&dev));
    assert!(ours.contains("targetN:N:N/N:N:N:N/block/sdX/size"));
    let cap = common::kernel_capture().join("after/sys/devices/pseudo_0/adapter0/host2");
    let extra: Vec<String> = ours.difference(&shape_of_tree(&cap)).cloned().collect();
    assert!(
        extra.is_empty(),
        "paths the kernel does not have: {extra:#?}"
    );
}

#[test]
fn a_refused_vport_reads_as_the_real_one_did() {
    let (_dir, sim, _) = capture_like();
    vport_create(&sim, 0, 0x5001_a4a0_0000_0b01, 0x5001_a4a0_0000_0b00).unwrap();
    let ours = sim.sysfs().path(&format!(
        "{}/vport-0:0-0/fc_vports/vport-0:0-0",
        host_devpath(&sim, 0)
    ));
    let theirs = common::kernel_capture()
        .join("after/sys/devices/virtual/net/vi/ctlr_1/host1/vport-1:0-0/fc_vports/vport-1:0-0");
    for attr in [
        "port_name",
        "node_name",
        "vport_state",
        "vport_last_state",
        "vport_type",
        "roles",
        "symbolic_name",
    ] {
        let read = |d: &std::path::Path| std::fs::read_to_string(d.join(attr)).unwrap();
        assert_eq!(read(&ours), read(&theirs), "{attr}");
    }
    // The vHBA's port is down, with no fabric and no address, as the kernel showed.
    let vhba = sim
        .sysfs()
        .path(&format!("{}/fc_host/host1", host_devpath(&sim, 1)));
    let theirs = common::kernel_capture()
        .join("after/sys/devices/virtual/net/vi/ctlr_1/host1/vport-1:0-0/host4/fc_host/host4");
    for attr in [
        "port_name",
        "node_name",
        "port_state",
        "fabric_name",
        "port_id",
    ] {
        let read = |d: &std::path::Path| std::fs::read_to_string(d.join(attr)).unwrap();
        assert_eq!(read(&vhba), read(&theirs), "{attr}");
    }
}

#[test]
fn a_scanned_lun_reads_as_the_real_one_did() {
    let (_dir, sim, target) = capture_like();
    // The capture's LIO LUN 1: 16 MiB, this wwid.
    let mut lun = LunSpec::new(7, 16 << 20, "lab-f1-serial").masked_to(wwn(0x2000_0200_0000_000b));
    lun.wwid = "naa.6001405abf1ea0000000000000000000".into();
    sim.add_lun(target, lun).unwrap();
    scan(&sim, 0, "0 0 7").unwrap();
    let ours = sim.sysfs().path(&sim.lun_devpath(hctl("0:0:0:7")).unwrap());
    let theirs = common::kernel_capture()
        .join("after/sys/devices/virtual/net/vi/ctlr_1/host1/rport-1:0-0/target1:0:0/1:0:0:1");
    let read = |p: std::path::PathBuf| std::fs::read_to_string(p).unwrap();
    for attr in [
        "vendor",
        "model",
        "rev",
        "type",
        "state",
        "wwid",
        "queue_depth",
        "scsi_level",
        "modalias",
    ] {
        assert_eq!(read(ours.join(attr)), read(theirs.join(attr)), "{attr}");
    }
    let disk = |d: &std::path::Path| {
        std::fs::read_dir(d.join("block"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path()
    };
    for attr in ["size", "ro", "removable"] {
        assert_eq!(
            read(disk(&ours).join(attr)),
            read(disk(&theirs).join(attr)),
            "{attr}"
        );
    }
    assert_eq!(
        std::fs::read_link(ours.join("driver")).unwrap().file_name(),
        std::fs::read_link(theirs.join("driver"))
            .unwrap()
            .file_name()
    );
}

#[test]
fn link_changes_post_the_fc_events_each_driver_posts() {
    let f = demo_sim();
    let sim = &f.sim;
    let events = sim.subscribe_fc_events();
    // The demo's ports are qla2xxx: LINKDOWN then LINKUP, on that host only, with
    // the port state already updated when the event is read.
    sim.set_link(1, false).unwrap();
    let down = events.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!((down.host_no, down.code), (1, FcEventCode::LinkDown));
    let g = Graph::load(&sim.sysfs());
    let NodeKind::Host(h) = &g.host(1).unwrap().kind else {
        panic!()
    };
    assert_eq!(
        h.fc.as_ref().unwrap().port_state.as_deref(),
        Some("Linkdown")
    );
    sim.set_link(1, true).unwrap();
    let up = events.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!((up.host_no, up.code), (1, FcEventCode::LinkUp));
    assert!(up.event_num > down.event_num, "one running event number");
    // What the simulator posts is what the kernel would put on the wire.
    assert_eq!(parse_fc_event(&up.to_bytes()).unwrap(), up);
    assert_eq!(sim.drain_fc_events(), [down, up]);

    // libfc (fcoe) posts only LIPRESET, on the reset a link loss starts.
    let dir = tempfile::tempdir().unwrap();
    let spec = SimSpec::new()
        .fabric(FabricSpec::new("lab", wwn(0x1000_0005_1e00_0d00)))
        .hba(HbaSpec::fc(
            "fcoe",
            "0000:02:00.0",
            wwn(0x2000_0000_c9a0_0d01),
            wwn(0x2000_0000_c9a0_0d00),
            "lab",
        ));
    let fcoe = Sim::new(dir.path(), &spec).unwrap();
    let host = fcoe.hosts()[0];
    fcoe.set_link(host, false).unwrap();
    fcoe.set_link(host, true).unwrap();
    let posted: Vec<_> = fcoe.drain_fc_events().iter().map(|e| e.code).collect();
    assert_eq!(posted, [FcEventCode::LipReset]);
}

/// Writing an action to a disk's `uevent` file, as `udevadm trigger` and hbad after
/// marking a vport do: the kernel sends that event for the disk (SYNTH_UUID 0, or
/// the UUID given and SYNTH_ARG_* for its arguments), udev answers with the disk's
/// links, and nothing else changes. An unknown action is EINVAL; the file of a
/// disk since removed is gone.
#[test]
fn a_write_to_a_disks_uevent_file_sends_that_event_for_the_disk() {
    let f = demo_sim();
    let sim = &f.sim;
    let lun = hctl("1:0:0:0");
    let devpath = sim.lun_devpath(lun).unwrap();
    let disk = sim.sysfs().list(&format!("{devpath}/block"))[0].clone();
    let bdev = format!("{devpath}/block/{disk}");
    let uevent = sim.sysfs().path(&bdev).join("uevent");
    let shown = std::fs::read_to_string(&uevent).unwrap();
    assert!(shown.contains(&format!("DEVNAME={disk}\n")), "{shown}");
    sim.drain_events();
    let before = Graph::load(&sim.sysfs());

    sim.write_attr(&uevent, "change").unwrap();
    let udev = sim.drain_udev_events();
    assert_eq!(seq(&udev), [("change".to_string(), "block".to_string())]);
    let ev = &udev[0];
    assert_eq!(ev.devpath, bdev);
    assert_eq!(ev.devtype.as_deref(), Some("disk"));
    assert_eq!(ev.prop("DEVNAME"), Some(disk.as_str()));
    assert_eq!(ev.prop("SYNTH_UUID"), Some("0"));
    assert!(ev.prop("DEVLINKS").unwrap().contains("by-path/"), "{ev:?}");
    assert_eq!(comparable(&Graph::load(&sim.sysfs())), comparable(&before));

    // The kernel's own view carries no links; a UUID and arguments are passed on.
    sim.write_attr(
        &uevent,
        "change 8d1b9a70-3c52-4f7e-9a4e-2b6f0c1d2e3f HBAD=1\n",
    )
    .unwrap();
    let kernel = sim.drain_events();
    assert_eq!(kernel.len(), 1);
    assert_eq!(kernel[0].prop("DEVLINKS"), None);
    assert_eq!(
        kernel[0].prop("SYNTH_UUID"),
        Some("8d1b9a70-3c52-4f7e-9a4e-2b6f0c1d2e3f")
    );
    assert_eq!(kernel[0].prop("SYNTH_ARG_HBAD"), Some("1"));

    for bad in ["", "chang", "changes", "change not-a-uuid", "frob"] {
        assert_eq!(
            errno(sim.write_attr(&uevent, bad)),
            Some(libc::EINVAL),
            "{bad:?}"
        );
    }
    assert!(sim.drain_events().is_empty());

    let delete = sim.sysfs().path(&devpath).join("delete");
    sim.write_attr(&delete, "1").unwrap();
    assert_eq!(errno(sim.write_attr(&uevent, "change")), Some(libc::ENOENT));
}

/// A reader never sees an attribute the simulator is rewriting half-written, as
/// sysfs makes an attribute's text when it is read: the agent's loop reads a vport
/// while a worker's write rewrites its attributes.
#[test]
fn attributes_being_rewritten_read_as_the_old_or_the_new_value() {
    let f = demo_sim();
    let sim = f.sim.clone();
    vport_create(&sim, 1, VHBA_A, VHBA_NODE).unwrap();
    let vport = format!("{}/vport-1:0-0", host_devpath(&sim, 1));
    let name = sim.sysfs().vport_symbolic_name_path(&vport);
    let writer = {
        let sim = sim.clone();
        std::thread::spawn(move || {
            for i in 0..2000 {
                let mark = if i % 2 == 0 { "hbad:vm-a" } else { "hbad:vm-b" };
                sim.write_attr(&name, mark).unwrap();
            }
        })
    };
    let sysfs = sim.sysfs();
    let class = format!("{vport}/fc_vports/vport-1:0-0");
    let mut reads = 0;
    while !writer.is_finished() || reads == 0 {
        let wwpn = sysfs.attr_wwn(&class, "port_name");
        let shown = sysfs.attr(&class, "symbolic_name");
        assert_eq!(wwpn, Some(wwn(VHBA_A)), "read {reads}");
        assert!(
            matches!(shown.as_deref(), Some("hbad:vm-a" | "hbad:vm-b" | "")),
            "read {reads}: {shown:?}"
        );
        reads += 1;
    }
    writer.join().unwrap();
}

/// The lab's fabric as the fabric-* scenarios of the real-kernel tier build it: the
/// initiator port is host2 (hosts 0 and 1 stand for the lab's two target ENodes),
/// and the target on fabric A gives vm-a and vm-b a LUN 0 each (the lab's ACLs map
/// two disks; the simulator masks one LUN to both).
fn fabric_lab() -> (tempfile::TempDir, Sim) {
    let dir = tempfile::tempdir().unwrap();
    let fcoe = |mac: u64| {
        HbaSpec::fc(
            "fcoe",
            &format!("0000:00:{:02x}.0", mac & 0xff),
            wwn(0x2000_0000_0000_0000 | mac),
            wwn(0x1000_0000_0000_0000 | mac),
            "a",
        )
        .speed("10 Gbit")
    };
    let spec = SimSpec::new()
        .fabric(FabricSpec::new("a", wwn(0x1000_02fc_f000_000a)))
        .target(
            TargetPortSpec::new("a", wwn(FAB_TARGET), wwn(0x1000_0200_0000_010a), 0x01_0002).lun(
                LunSpec::new(0, 4 << 20, "hbadvm-fa0")
                    .masked_to(wwn(FAB_VM_A))
                    .masked_to(wwn(FAB_VM_B)),
            ),
        )
        .hba(fcoe(0x0200_0000_01f0))
        .hba(fcoe(0x0200_0000_01f1))
        .hba(fcoe(0x0200_0000_010b).max_npiv_vports(Some(65535)));
    let sim = Sim::new(dir.path(), &spec).unwrap();
    (dir, sim)
}

const FAB_TARGET: u64 = 0x2000_0200_0000_010a;
const FAB_VM_A: u64 = 0x5001_a4a0_0000_0a01;
const FAB_VM_B: u64 = 0x5001_a4a0_0000_0b01;
/// Where the lab's initiator port is (`/devices/virtual/net/fai/ctlr_2/host2`).
const FAB_PARENT: &str = "/devices/virtual/net/fai/ctlr_2/host2";

/// One event as the fabric scenarios log it (tests/vm/guest/uevent-log.sh), with
/// the parent port's devpath as `P`: (action, subsystem, devtype, devpath).
type Logged = (String, String, String, String);

/// The events of a recorded log (tests/fixtures/kernel-capture/fabric/) that the
/// kernel sent for devices below the initiator port, and the workqueues and bdis
/// of its vHBAs, from the line holding `from` up to the one holding `to`. Events
/// of the target side (tcm_fc's ports log in to the vHBAs too) and of hbad's own
/// `change` writes (SYNTH_UUID) are left out.
fn recorded(log: &str, from: &str, to: Option<&str>, keep: &[&str]) -> Vec<Logged> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/kernel-capture/fabric")
        .join(log);
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.iter().position(|l| l.contains(from)).unwrap();
    let end = to.map_or(lines.len(), |to| {
        lines.iter().position(|l| l.contains(to)).unwrap()
    });
    lines[start..end]
        .iter()
        .filter(|l| !l.contains("SYNTH_UUID"))
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let devpath = w[4];
            let ours = devpath.starts_with(&format!("{FAB_PARENT}/"))
                || keep.iter().any(|k| devpath.ends_with(k));
            ours.then(|| {
                (
                    w[1].to_string(),
                    w[2].to_string(),
                    w[3].to_string(),
                    devpath.replace(FAB_PARENT, "P"),
                )
            })
        })
        .collect()
}

/// The simulator's events in the same form, devices below `parent` only (and the
/// workqueues and bdis named in `keep`).
fn logged(events: &[Uevent], parent: &str, keep: &[&str]) -> Vec<Logged> {
    events
        .iter()
        .filter(|e| {
            e.devpath.starts_with(&format!("{parent}/"))
                || keep.iter().any(|k| e.devpath.ends_with(k))
        })
        .map(|e| {
            (
                e.action.to_string(),
                e.subsystem.clone(),
                e.devtype.clone().unwrap_or_else(|| "-".into()),
                e.devpath.replace(parent, "P"),
            )
        })
        .collect()
}

/// A vport created on a switched fabric logs in, and the kernel announces, in this
/// order: the vport, its host, the name server's remote port (rport-H:0-0, always
/// the first), the target's (rport-H:0-1), its SCSI target, LUN and disk. Recorded
/// by fabric-login on Debian's 6.1 kernel; the attributes after the login too.
#[test]
fn a_vport_login_on_a_switched_fabric_follows_the_real_kernels_order() {
    let (_dir, sim) = fabric_lab();
    assert_eq!(sim.host_by_wwpn(wwn(0x2000_0200_0000_010b)), Some(2));
    let parent = host_devpath(&sim, 2);
    sim.drain_events();
    vport_create(&sim, 2, FAB_VM_A, 0x5001_a4a0_0000_0a00).unwrap();
    let keep = ["scsi_tmf_3", "scsi_wq_3", "bdi/8:0"];
    let want = recorded(
        "login.uevents",
        "add fc_vports - /devices/virtual/net/fai/ctlr_2/host2/vport-2:0-0/",
        Some("add fc_vports - /devices/virtual/net/fai/ctlr_2/host2/vport-2:0-1/"),
        &keep,
    );
    assert_eq!(want.len(), 21, "{want:#?}");
    assert_eq!(logged(&sim.drain_events(), &parent, &keep), want);

    // What a logged-in vHBA reads as, attribute by attribute, against the recorded
    // ones (those the simulator models; names and addresses are the lab's).
    let attrs = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/kernel-capture/fabric/login.attrs"),
    )
    .unwrap();
    let seen = |key: &str| -> String {
        attrs
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("{key} not recorded"))
            .to_string()
    };
    let sysfs = sim.sysfs();
    let ours = |class: &str, name: &str, attr: &str| {
        sysfs.attr(&format!("class/{class}/{name}"), attr).unwrap()
    };
    for attr in ["vport_state", "vport_last_state", "vport_type", "roles"] {
        assert_eq!(
            ours("fc_vports", "vport-2:0-0", attr),
            seen(&format!("vport-2:0-0/{attr}")),
            "{attr}"
        );
    }
    for attr in [
        "port_state",
        "port_type",
        "fabric_name",
        "speed",
        "tgtid_bind_type",
        "dev_loss_tmo",
    ] {
        assert_eq!(
            ours("fc_host", "host3", attr),
            seen(&format!("host3/{attr}")),
            "{attr}"
        );
    }
    for (rport, attrs) in [
        (
            "rport-3:0-0",
            &[
                "roles",
                "scsi_target_id",
                "port_id",
                "port_state",
                "supported_classes",
            ][..],
        ),
        (
            "rport-3:0-1",
            &["scsi_target_id", "port_id", "port_state", "port_name"][..],
        ),
    ] {
        for attr in attrs {
            assert_eq!(
                ours("fc_remote_ports", rport, attr),
                seen(&format!("{rport}/{attr}")),
                "{rport} {attr}"
            );
        }
    }
    // The simulator's fabric has no separate switch name: its name server is named
    // after the fabric. The lab's FCF lists the target with both roles (tcm_fc).
    assert_eq!(seen("rport-3:0-1/roles"), "FCP Target, FCP Initiator");
    assert_eq!(
        ours("fc_remote_ports", "rport-3:0-1", "roles"),
        "FCP Target"
    );
}

/// A logged-in vHBA deleted by hand goes as the kernel took it down (the name
/// server's remote port first, then the target's LUNs, target and remote port, the
/// host, the vport); made again, it is the next vport number on the lowest free
/// host number, with its remote ports numbered from 0 again. Recorded by
/// fabric-recreate.
#[test]
fn a_logged_in_vhba_deleted_and_made_again_follows_the_real_kernels_order() {
    let (_dir, sim) = fabric_lab();
    let parent = host_devpath(&sim, 2);
    vport_create(&sim, 2, FAB_VM_A, 0x5001_a4a0_0000_0a00).unwrap();
    vport_create(&sim, 2, FAB_VM_B, 0x5001_a4a0_0000_0b00).unwrap();
    sim.drain_events();
    let keep = ["scsi_tmf_4", "scsi_wq_4", "bdi/8:16"];
    vport_delete(&sim, 2, FAB_VM_B, 0x5001_a4a0_0000_0b00).unwrap();
    let want = recorded(
        "recreate.uevents",
        "remove bsg - /devices/virtual/net/fai/ctlr_2/host2/vport-2:0-1/host4/rport-4:0-0/",
        Some("add fc_vports - /devices/virtual/net/fai/ctlr_2/host2/vport-2:0-2/"),
        &keep,
    );
    assert_eq!(want.len(), 21, "{want:#?}");
    assert_eq!(logged(&sim.drain_events(), &parent, &keep), want);

    vport_create(&sim, 2, FAB_VM_B, 0x5001_a4a0_0000_0b00).unwrap();
    let mut want = recorded(
        "recreate.uevents",
        "add fc_vports - /devices/virtual/net/fai/ctlr_2/host2/vport-2:0-2/",
        None,
        &keep,
    );
    let mut got = logged(&sim.drain_events(), &parent, &keep);
    assert_eq!(want.len(), 21, "{want:#?}");
    // sd registers the LUN's class devices while it probes, asynchronously: the
    // kernel gave them in another order than at the first login.
    assert_eq!(got[..11], want[..11]);
    got.sort();
    want.sort();
    assert_eq!(got, want);
}

/// A target zoned with a logged-in vHBA (RSCN) is its next remote port number,
/// scanned by the transport; out of the zone its remote port is Blocked and, when
/// dev_loss_tmo runs out, its LUN and target go while the remote port stays.
/// Recorded by fabric-zone.
#[test]
fn a_target_zoned_in_and_out_follows_the_real_kernels_order() {
    let (_dir, sim) = fabric_lab();
    vport_create(&sim, 2, FAB_VM_A, 0x5001_a4a0_0000_0a00).unwrap();
    vport_create(&sim, 2, FAB_VM_B, 0x5001_a4a0_0000_0b00).unwrap();
    let vhba = sim.host_by_wwpn(wwn(FAB_VM_A)).unwrap();
    let host = host_devpath(&sim, vhba);
    assert!(host.starts_with(&host_devpath(&sim, 2)));
    sim.drain_events();
    let second = wwn(0x2000_0200_0000_010c);
    sim.add_target_port(
        TargetPortSpec::new("a", second, wwn(0x1000_0200_0000_010c), 0x01_0003)
            .lun(LunSpec::new(0, 4 << 20, "hbadvm-fc0").masked_to(wwn(FAB_VM_A))),
    )
    .unwrap();
    let keep = ["bdi/8:32"];
    let parent = host_devpath(&sim, 2);
    // Only vm-a's host: the simulator does not zone, so every port on the fabric
    // logs in to the new target.
    let vm_a = |events: &[Uevent]| -> Vec<Logged> {
        logged(events, &parent, &keep)
            .into_iter()
            .filter(|e| e.3.starts_with("P/vport-2:0-0/") || e.3.contains("bdi"))
            .collect()
    };
    let mut got = vm_a(&sim.drain_events());
    let mut want = recorded(
        "zone.uevents",
        "add fc_remote_ports - /devices/virtual/net/fai/ctlr_2/host2/vport-2:0-0/host3/rport-3:0-2/",
        Some("remove bsg"),
        &keep,
    );
    assert_eq!(want.len(), 12, "{want:#?}");
    assert_eq!(got[..5], want[..5]);
    got.sort();
    want.sort();
    assert_eq!(got, want);

    sim.remove_target_port(second).unwrap();
    assert!(vm_a(&sim.drain_events()).is_empty(), "Blocked: no uevent");
    sim.expire_dev_loss().unwrap();
    let want = recorded("zone.uevents", "remove bsg", None, &keep);
    assert_eq!(want.len(), 10, "{want:#?}");
    assert_eq!(vm_a(&sim.drain_events()), want);
    let rport = format!("class/fc_remote_ports/rport-{vhba}:0-2");
    assert_eq!(
        sim.sysfs().attr(&rport, "port_state").as_deref(),
        Some("Not Present")
    );
}
