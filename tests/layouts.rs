//! The hand-made sysfs layouts (tests/fixtures/layouts, made by make_layouts.py)
//! loaded into typed records and the graph: drivers and kernels the capture cannot
//! show (qla2xxx NPIV on a fabric, old kernels, iSCSI, half-filled attributes).

mod common;

use hbad::graph::{Graph, Node, NodeKind};
use hbad::sysfs::{FcHostInfo, Sysfs, VportControlDir};

fn layout(name: &str) -> Sysfs {
    let dir = common::fixture("layouts").join(name);
    assert!(
        dir.join("sys/class").is_dir(),
        "{} is missing: run tests/fixtures/layouts/make_layouts.py",
        dir.display()
    );
    Sysfs::new(dir.join("sys"), dir.join("dev"))
}

fn fc(node: &Node) -> &FcHostInfo {
    match &node.kind {
        NodeKind::Host(h) => h.fc.as_ref().expect("an FC host"),
        other => panic!("{} is a {}, not a host", node.devpath, other.label()),
    }
}

fn names(nodes: Vec<&Node>) -> Vec<&str> {
    nodes.into_iter().map(Node::name).collect()
}

#[test]
fn qla2xxx_npiv_counts_are_numbers_and_controls_are_under_fc_host() {
    let sysfs = layout("qla2xxx-npiv");
    let g = Graph::load(&sysfs);
    assert_eq!(
        names(g.hosts()),
        ["host7", "host8", "host9", "host10"],
        "hosts in number order, not string order"
    );
    let h7 = g.host(7).unwrap();
    let fc7 = fc(h7);
    let npiv = fc7.npiv.as_ref().unwrap();
    assert_eq!(npiv.control_dir, VportControlDir::FcHost);
    assert_eq!(npiv.max_vports, Some(254));
    assert_eq!(npiv.vports_inuse, Some(3));
    assert_eq!(npiv.free(), Some(251));
    assert_eq!(fc7.port_state.as_deref(), Some("Online"));
    assert_eq!(fc7.fabric_name.unwrap().to_string(), "0x100050eb1a7c4e21");
    assert_eq!(fc7.wwpn.unwrap().to_string(), "0x21000024ff3affb0");
    assert!(!g.is_vhba(h7));
    // The records straight from sysfs agree with the graph.
    assert_eq!(sysfs.read_fc_host(&h7.devpath).unwrap().as_ref(), Some(fc7));
}

#[test]
fn qla2xxx_vhbas_sit_under_their_vports_with_storage_behind_one() {
    let g = Graph::load(&layout("qla2xxx-npiv"));
    let vports = g.of_kind(|k| matches!(k, NodeKind::Vport(_)));
    assert_eq!(
        names(vports.clone()),
        ["vport-7:0-0", "vport-7:0-1", "vport-7:0-2"]
    );
    for vport in &vports {
        assert_eq!(g.vport_parent_host(vport).unwrap().name(), "host7");
        let vhba = g.vhba_of_vport(vport).unwrap();
        assert!(g.is_vhba(vhba));
        // A vHBA cannot make vports itself: no NPIV controls.
        assert_eq!(fc(vhba).npiv, None);
        assert_eq!(fc(vhba).port_type.as_deref(), Some("NPIV VPORT"));
    }
    let NodeKind::Vport(v) = &vports[0].kind else {
        panic!()
    };
    assert_eq!(v.symbolic_name.as_deref(), Some("hbad:vm-san-a"));
    assert_eq!(v.vport_state.as_deref(), Some("Active"));
    assert_eq!(v.wwnn.unwrap().to_string(), "0x5001a4a000000b00");
    // An empty symbolic_name reads as none.
    let NodeKind::Vport(v1) = &vports[1].kind else {
        panic!()
    };
    assert_eq!(v1.symbolic_name, None);

    let lun = g.lun("8:0:0:27".parse().unwrap()).unwrap();
    assert_eq!(g.host_of(lun).unwrap().name(), "host8");
    let NodeKind::RemotePort(rp) = &g.remote_port_of(lun).unwrap().kind else {
        panic!()
    };
    assert_eq!(rp.wwpn.unwrap().to_string(), "0x500601603ce0174b");
    assert_eq!(rp.scsi_target_id, Some(0));
    let disk = g.disk_of(lun).unwrap();
    let NodeKind::Disk(d) = &disk.kind else {
        panic!()
    };
    assert_eq!(d.info.name, "sdc");
    assert_eq!(d.info.size_bytes, Some(104_857_600 * 512));
    assert_eq!(d.info.major_minor.as_deref(), Some("8:32"));
    assert_eq!(
        d.links,
        [
            "/dev/disk/by-id/wwn-0x600601604a103800d2a1c3e8f4e3e611",
            "/dev/disk/by-path/pci-0000:08:00.0-fc-0x500601603ce0174b-lun-27",
        ]
    );
    // The fabric name server is a remote port but not a SCSI target.
    let ns = g.find(&"rport-7:0-1".parse().unwrap());
    let NodeKind::RemotePort(ns) = &ns[0].kind else {
        panic!()
    };
    assert!(!ns.is_target());
    assert_eq!(ns.scsi_target_id, None);
    assert_eq!(ns.roles, ["Directory Server"]);
}

#[test]
fn old_kernel_vport_controls_under_scsi_host_are_found() {
    let g = Graph::load(&layout("old-kernel-scsi-host-vports"));
    let fc3 = fc(g.host(3).unwrap());
    let npiv = fc3
        .npiv
        .as_ref()
        .expect("NPIV detected from scsi_host/vport_create");
    assert_eq!(npiv.control_dir, VportControlDir::ScsiHost);
    assert_eq!(npiv.max_vports, Some(255));
    assert_eq!(npiv.vports_inuse, Some(0));
    assert_eq!(npiv.free(), Some(255));
}

#[test]
fn iscsi_lun_hangs_off_its_host_through_the_session() {
    let g = Graph::load(&layout("iscsi-tcp"));
    let h6 = g.host(6).unwrap();
    let NodeKind::Host(h) = &h6.kind else {
        panic!()
    };
    assert_eq!(h.fc, None, "iSCSI hosts have no FC side");
    assert_eq!(h.scsi.proc_name.as_deref(), Some("iscsi_tcp"));
    let lun = g.lun("6:0:0:1".parse().unwrap()).unwrap();
    // session1 is not a graph node: the target's parent is the host itself.
    let target = g.parent(lun).unwrap();
    assert_eq!(target.name(), "target6:0:0");
    assert_eq!(g.parent(target).unwrap().name(), "host6");
    assert!(g.remote_port_of(lun).is_none());
    let NodeKind::Lun(l) = &lun.kind else {
        panic!()
    };
    assert_eq!(l.vendor.as_deref(), Some("LIO-ORG"));
    assert_eq!(l.model.as_deref(), Some("IBLOCK"));
    assert_eq!(
        l.serial.as_deref(),
        Some("f3b2a1c0-d9e8-f7a6-b5c4-d3e2f1a0b9c8")
    );
    assert_eq!(l.driver.as_deref(), Some("sd"));
    let NodeKind::Disk(d) = &g.disk_of(lun).unwrap().kind else {
        panic!()
    };
    assert_eq!(d.info.size_bytes, Some(20 * 1024 * 1024 * 1024));
    assert!(d
        .links
        .iter()
        .any(|l| l.starts_with("/dev/disk/by-path/ip-192.0.2.10:3260-iscsi-")));
    assert_eq!(
        g.len(),
        4,
        "host, target, LUN, disk: {:#?}",
        g.nodes().collect::<Vec<_>>()
    );
}

#[test]
fn odd_attributes_load_as_unknowns_without_panicking() {
    let sysfs = layout("odd-attributes");
    let g = Graph::load(&sysfs);
    let h9 = g.host(9).unwrap();
    let NodeKind::Host(h) = &h9.kind else {
        panic!()
    };
    assert_eq!(h.scsi.proc_name, None, "no proc_name file");
    assert_eq!(h.scsi.unique_id, None, "empty unique_id");
    assert_eq!(h.scsi.state, None);
    let fc9 = fc(h9);
    assert_eq!(fc9.wwpn, None, "0xffffffffffffffff is no name");
    assert_eq!(fc9.wwnn, None);
    assert_eq!(fc9.fabric_name, None, "0x0 is no fabric");
    assert_eq!(fc9.port_state, None, "empty port_state");
    assert_eq!(fc9.speed, None, "absent speed");
    let npiv = fc9.npiv.as_ref().unwrap();
    assert_eq!(npiv.max_vports, None, "a non-number is unknown, not zero");
    assert_eq!(npiv.vports_inuse, None);
    assert_eq!(npiv.free(), None);

    let rports = g.of_kind(|k| matches!(k, NodeKind::RemotePort(_)));
    let NodeKind::RemotePort(r0) = &rports[0].kind else {
        panic!()
    };
    assert_eq!(r0.wwpn, None);
    assert!(r0.roles.is_empty(), "`unknown` is no role");
    assert_eq!(r0.scsi_target_id, None, "-1 is no target id");
    // A WWPN-less port stays out of the WWPN index instead of colliding there.
    assert_eq!(g.by_wwpn("0x2100001b32a9da4e".parse().unwrap()).len(), 1);

    let lun = g.lun("9:0:0:0".parse().unwrap()).unwrap();
    let NodeKind::Lun(l) = &lun.kind else {
        panic!()
    };
    assert_eq!(l.vendor, None, "non-UTF-8 vendor");
    assert_eq!(l.model, None);
    assert_eq!(l.rev, None);
    assert_eq!(l.scsi_type, None);
    assert_eq!(l.serial, None, "VPD page 0x80 cut short");
    assert_eq!(l.state.as_deref(), Some("transport-offline"));
    let NodeKind::Disk(d) = &g.disk_of(lun).unwrap().kind else {
        panic!()
    };
    assert_eq!(d.info.size_bytes, None, "absent size");
    assert!(d.links.is_empty());
}

#[test]
fn every_layout_renders_as_tree_without_losing_a_device() {
    for name in [
        "qla2xxx-npiv",
        "old-kernel-scsi-host-vports",
        "iscsi-tcp",
        "odd-attributes",
    ] {
        let g = Graph::load(&layout(name));
        let tree = hbad::cli::render::render_tree(&g);
        assert_eq!(tree.lines().count(), g.len(), "{name}:\n{tree}");
        for node in g.nodes() {
            let shown = match &node.kind {
                NodeKind::Disk(d) => format!("/dev/{}", d.info.name),
                _ => node.name().to_string(),
            };
            assert!(
                tree.contains(&shown),
                "{name}: {shown} missing from\n{tree}"
            );
        }
    }
}
