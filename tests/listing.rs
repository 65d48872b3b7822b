//! `hbad luns` and `hbad tree` read as they are printed (a skeleton of the devices
//! above the LUNs, each target's LUNs read on the way) print, byte for byte, what
//! the whole graph prints, in text and JSON: on the real kernel capture, the
//! hand-made layouts and simulated hosts with vHBAs, multipath maps and local disks.
//! A tree the skeleton cannot account for falls back to the whole graph.

mod common;

use std::path::Path;

use hbad::cli::inspect::{write_luns, write_luns_streamed, write_tree_streamed};
use hbad::cli::render;
use hbad::graph::Graph;
use hbad::listing::Skeleton;
use hbad::sim::{demo, HbaSpec, LunSpec, Sim};
use hbad::sysfs::writes::{vport_text, AttrWriter};
use hbad::sysfs::{Detail, Hctl, Sysfs, VportControlDir};
use hbad::wwn::Wwn;

/// What each listing prints from the whole graph and from the skeleton; the
/// number of LUNs listed.
fn assert_streamed_as_graph(sysfs: &Sysfs, what: &str) -> usize {
    let mut luns = 0;
    for json in [false, true] {
        let detail = if json { Detail::Full } else { Detail::Listing };
        let graph = Graph::load_with(sysfs, detail);
        let skeleton = Skeleton::load(sysfs, detail)
            .unwrap_or_else(|| panic!("{what}: no skeleton for a tree the kernel could make"));
        let form = if json { "JSON" } else { "text" };

        let all = graph.luns();
        luns = all.len();
        let mut streamed = Vec::new();
        let any = write_luns_streamed(&skeleton, json, &mut streamed).unwrap();
        if all.is_empty() && !json {
            // The command says "no LUNs" on stderr for both.
            assert!(!any && streamed.is_empty(), "{what}: luns ({form})");
        } else {
            let mut whole = Vec::new();
            write_luns(&graph, &all, json, &mut whole).unwrap();
            assert_same(&whole, &streamed, &format!("{what}: luns ({form})"));
        }

        let mut whole = Vec::new();
        if json {
            render::write_json(&render::TreeStream::roots(&graph), &mut whole).unwrap();
        } else {
            render::write_tree(&graph, &mut whole).unwrap();
        }
        let mut streamed = Vec::new();
        write_tree_streamed(&skeleton, json, &mut streamed).unwrap();
        assert_same(&whole, &streamed, &format!("{what}: tree ({form})"));
    }
    luns
}

fn assert_same(whole: &[u8], streamed: &[u8], what: &str) {
    if whole != streamed {
        let (w, s) = (
            String::from_utf8_lossy(whole),
            String::from_utf8_lossy(streamed),
        );
        let line = w
            .lines()
            .zip(s.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(w.lines().count().min(s.lines().count()));
        panic!(
            "{what}: differs from line {}:\n--- whole graph\n{}\n--- streamed\n{}",
            line + 1,
            w.lines().skip(line).take(5).collect::<Vec<_>>().join("\n"),
            s.lines().skip(line).take(5).collect::<Vec<_>>().join("\n"),
        );
    }
}

#[test]
fn the_kernel_capture_lists_the_same_streamed() {
    for which in ["before", "after"] {
        let sysfs = Sysfs::new(common::capture_sys(which), "/nonexistent-dev");
        assert!(assert_streamed_as_graph(&sysfs, which) > 0);
    }
}

#[test]
fn the_hand_made_layouts_list_the_same_streamed() {
    for layout in [
        "iscsi-tcp",
        "odd-attributes",
        "old-kernel-scsi-host-vports",
        "qla2xxx-npiv",
    ] {
        let dir = common::fixture("layouts").join(layout);
        let sysfs = Sysfs::new(dir.join("sys"), dir.join("dev"));
        assert_streamed_as_graph(&sysfs, layout);
    }
}

const VHBA_WWPN: Wwn = Wwn::from_u64(0x2001_0024_ff00_0a99);
const VHBA_WWNN: Wwn = Wwn::from_u64(0x2000_0024_ff00_0a99);

/// The demo host with a vHBA hbad named, the LUNs behind it, a multipath map over
/// two paths of the datastore, and local scsi_debug and iSCSI hosts.
fn busy_host(dir: &Path) -> Sim {
    let spec = demo::spec()
        .hba(HbaSpec::scsi_debug(2, 3))
        .hba(HbaSpec::iscsi(
            "iqn.2003-01.org.example:san",
            "192.0.2.10:3260",
            vec![LunSpec::new(3, 10 << 30, "ISCSI3")],
        ));
    let sim = Sim::new(dir, &spec).unwrap();
    sim.map_lun(demo::ARRAY_PORT_A, 1, VHBA_WWPN).unwrap();
    sim.map_lun(demo::ARRAY_PORT_A, 2, VHBA_WWPN).unwrap();
    let sysfs = sim.sysfs();
    let host = sim.host_devpath(1).unwrap();
    sim.write_attr(
        &sysfs.vport_create_path(&host, VportControlDir::FcHost),
        &format!("{}\n", vport_text(VHBA_WWPN, VHBA_WWNN)),
    )
    .unwrap();
    let vport = sysfs
        .class_devpaths("fc_vports")
        .into_iter()
        .next()
        .expect("the vport made");
    sim.write_attr(&sysfs.path(&vport).join("symbolic_name"), "hbad:vm-db1\n")
        .unwrap();
    let paths: Vec<Hctl> = sysfs
        .scsi_bus_devpaths()
        .iter()
        .filter_map(|d| d.rsplit('/').next()?.parse::<Hctl>().ok())
        .filter(|h| h.lun == 0 && (h.host == 1 || h.host == 2) && h.target == 0)
        .collect();
    assert_eq!(paths.len(), 2, "the datastore on both ports: {paths:?}");
    sim.add_multipath_map("mpatha", &paths).unwrap();
    sim
}

#[test]
fn a_host_with_vhbas_multipath_and_local_disks_lists_the_same_streamed() {
    let dir = tempfile::tempdir().unwrap();
    let sim = busy_host(dir.path());
    let luns = assert_streamed_as_graph(&sim.sysfs(), "busy host");
    assert!(luns >= 10, "{luns} LUNs");
}

#[test]
fn a_lun_missing_from_its_target_directory_falls_back_to_the_whole_graph() {
    let dir = tempfile::tempdir().unwrap();
    let sim = busy_host(dir.path());
    let sysfs = sim.sysfs();
    assert!(Skeleton::load(&sysfs, Detail::Listing).is_some());
    // A partial copy: the bus still lists a LUN whose directory is gone.
    let lun = sysfs
        .scsi_bus_devpaths()
        .into_iter()
        .find(|d| d.ends_with("/1:0:0:0"))
        .unwrap();
    std::fs::remove_dir_all(sysfs.path(&lun)).unwrap();
    assert!(Skeleton::load(&sysfs, Detail::Listing).is_none());
    let run = common::hbad_in(sysfs.root(), sysfs.dev_root(), &["luns"]).ok();
    assert!(
        run.stdout.lines().any(|l| l.starts_with("1:0:0:0 ")),
        "{}",
        run.stdout
    );
}

#[test]
fn a_host_without_scsi_devices_lists_nothing_in_text_and_an_empty_array_in_json() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("sys/class")).unwrap();
    let (sys, dev) = (dir.path().join("sys"), dir.path().join("dev"));
    for view in ["tree", "luns"] {
        let text = common::hbad_in(&sys, &dev, &[view]).ok();
        assert_eq!(text.stdout, "", "{view}");
        assert!(text.stderr.starts_with("no "), "{view}: {}", text.stderr);
        let json = common::hbad_in(&sys, &dev, &["--json", view]).ok();
        assert_eq!(json.stdout, "[]\n", "{view} --json");
    }
}
