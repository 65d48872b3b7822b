//! The graph against what a real kernel did: load(before) + apply(events) == load(after).

mod common;

use hbad::graph::{Change, Graph, NodeKind, Notice};
use hbad::sysfs::Sysfs;
use hbad::uevent::replay;

fn sysfs(which: &str) -> Sysfs {
    Sysfs::new(
        common::kernel_capture().join(which).join("sys"),
        "/nonexistent-dev",
    )
}

#[test]
fn load_before_plus_events_equals_load_after() {
    let events = replay::read_file(&common::kernel_capture().join("events.bin")).unwrap();
    assert_eq!(events.len(), 200);
    let after = sysfs("after");
    let mut graph = Graph::load(&sysfs("before"));
    for ev in &events {
        graph.apply(ev, &after);
    }
    let expected = Graph::load(&after);
    if graph != expected {
        let diff = Graph::diff(&expected, &graph);
        panic!("graph after events differs from a fresh load of after/: {diff:#?}");
    }
}

#[test]
fn capture_before_has_every_device_nested() {
    let g = Graph::load(&sysfs("before"));
    // host0 (FCoE target side), host1 (FCoE initiator), host2 and host3 (scsi_debug).
    assert_eq!(
        g.hosts().iter().map(|h| h.name()).collect::<Vec<_>>(),
        ["host0", "host1", "host2", "host3"]
    );
    let h1 = g.host(1).unwrap();
    let NodeKind::Host(host) = &h1.kind else {
        panic!()
    };
    let fc = host.fc.as_ref().unwrap();
    assert_eq!(fc.wwpn.unwrap().to_string(), "0x200002000000000b");
    assert_eq!(fc.npiv.as_ref().unwrap().max_vports, Some(65535));
    assert_eq!(fc.npiv.as_ref().unwrap().vports_inuse, Some(0));
    assert_eq!(fc.port_state.as_deref(), Some("Online"));
    // 1:0:0:0 sits under rport-1:0-0 and its target, and has disk sda.
    let lun = g.lun("1:0:0:0".parse().unwrap()).unwrap();
    let rport = g.remote_port_of(lun).unwrap();
    assert_eq!(rport.name(), "rport-1:0-0");
    let NodeKind::RemotePort(rp) = &rport.kind else {
        panic!()
    };
    assert!(rp.is_target());
    assert_eq!(rp.scsi_target_id, Some(0));
    assert_eq!(g.host_of(lun).unwrap().name(), "host1");
    let disk = g.disk_of(lun).unwrap();
    assert_eq!(disk.name(), "sda");
    let NodeKind::Lun(l) = &lun.kind else {
        panic!()
    };
    assert_eq!(l.serial.as_deref(), Some("lab-rd0-serial"));
    assert_eq!(l.vendor.as_deref(), Some("LIO-ORG"));
    assert_eq!(g.luns().len(), 13);
    assert_eq!(g.of_kind(|k| matches!(k, NodeKind::Disk(_))).len(), 13);
    assert_eq!(g.of_kind(|k| matches!(k, NodeKind::Target(_))).len(), 5);
    assert_eq!(g.of_kind(|k| matches!(k, NodeKind::RemotePort(_))).len(), 2);
}

#[test]
fn capture_after_shows_the_vhba_under_its_vport() {
    let g = Graph::load(&sysfs("after"));
    let vhba = g.host(4).unwrap();
    assert!(g.is_vhba(vhba));
    let vport = g.vport_of_vhba(vhba).unwrap();
    let NodeKind::Vport(v) = &vport.kind else {
        panic!()
    };
    assert_eq!(v.wwpn.unwrap().to_string(), "0x5001a4a000000b01");
    assert_eq!(v.vport_state.as_deref(), Some("No Fabric Support"));
    assert_eq!(g.vport_parent_host(vport).unwrap().name(), "host1");
    assert_eq!(
        g.by_wwpn("50:01:a4:a0:00:00:0b:01".parse().unwrap()).len(),
        2
    );
    let NodeKind::Host(h1) = &g.host(1).unwrap().kind else {
        panic!()
    };
    assert_eq!(
        h1.fc.as_ref().unwrap().npiv.as_ref().unwrap().vports_inuse,
        Some(1)
    );
}

#[test]
fn events_report_unit_attentions_and_new_luns() {
    let events = replay::read_file(&common::kernel_capture().join("events.bin")).unwrap();
    let after = sysfs("after");
    let mut g = Graph::load(&sysfs("before"));
    let changes: Vec<Change> = events.iter().flat_map(|e| g.apply(e, &after)).collect();
    let uas: Vec<String> = changes
        .iter()
        .filter_map(|c| match c {
            Change::Notice {
                node,
                notice: Notice::UnitAttention(r),
            } if r == "REPORTED_LUNS_DATA_HAS_CHANGED" => Some(node.name().to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(uas[..3], ["1:0:0:0", "2:0:0:0", "2:0:1:0"]);
    let added_luns: Vec<String> = changes
        .iter()
        .filter_map(|c| match c {
            Change::Added { node } if matches!(node.kind, NodeKind::Lun(_)) => {
                Some(node.name().to_string())
            }
            _ => None,
        })
        .collect();
    assert!(added_luns.contains(&"1:0:0:1".to_string()));
    assert!(added_luns.contains(&"2:0:1:4".to_string()));
    // Removing host5 (scsi_debug) removes its whole subtree, deepest first.
    let removed_host = changes.iter().position(|c| matches!(c, Change::Removed { node } if node.name() == "host5" && node.devpath.contains("pseudo")));
    assert!(removed_host.is_some());
}

#[test]
fn a_unit_attention_changes_no_attribute_and_reads_nothing() {
    let mut g = Graph::load(&sysfs("before"));
    let lun = g.lun("2:0:0:0".parse().unwrap()).unwrap().clone();
    let ua = hbad::uevent::Uevent::new(hbad::uevent::Action::Change, &lun.devpath, "scsi")
        .with_devtype("scsi_device")
        .with_prop("SDEV_UA", "REPORTED_LUNS_DATA_HAS_CHANGED");
    // A tree with nothing in it: any read would find the device gone.
    let empty = Sysfs::new("/nonexistent-sys", "/nonexistent-dev");
    let changes = g.apply(&ua, &empty);
    assert_eq!(changes.len(), 1, "{changes:#?}");
    assert!(matches!(
        &changes[0],
        Change::Notice { notice: Notice::UnitAttention(r), .. } if r == "REPORTED_LUNS_DATA_HAS_CHANGED"
    ));
    assert_eq!(g.node(&lun.devpath), Some(&lun));
}
