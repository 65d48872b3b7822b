//! A volume grown on the array, seen through two ports under one multipath map: the
//! unit attention on one path re-reads every path, then multipathd resizes the map.
//!
//! The only test of this binary: it puts a fake `multipathd` first on PATH, which
//! is safe only while no other test of the process runs.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use hbad::exec::StepOutcome;
use hbad::graph::Graph;
use hbad::plan::{plan, Action, Recorded};
use hbad::policy::{Environment, Policy};
use hbad::sim::demo::{ARRAY_PORT_A, HBA_A_WWPN, HBA_B_WWPN};
use hbad::sim::Sim;
use hbad::sysfs::Hctl;

const GROWN: u64 = 1024 << 30;

#[test]
fn a_grown_volume_is_re_read_on_every_path_then_its_multipath_map_resized() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::demo_host(&dir.path().join("sim")).unwrap();
    let lun0 = |wwpn| Hctl {
        host: sim.host_by_wwpn(wwpn).unwrap(),
        channel: 0,
        target: 0,
        lun: 0,
    };
    let (a, b) = (lun0(HBA_A_WWPN), lun0(HBA_B_WWPN));
    let dm = sim.add_multipath_map("mpatha", &[a, b]).unwrap();
    let sysfs = sim.sysfs();
    let dm_dir = sysfs.path(&format!("/devices/virtual/block/{dm}"));

    // multipathd as the test sees it: what it was asked, and the paths' sizes then.
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let log = dir.path().join("multipathd.log");
    let fake = bin.join("multipathd");
    std::fs::write(
        &fake,
        format!(
            // One line per call, in one write: two paths' workers may ask at once.
            "#!/bin/sh\nsizes=$(cat {dm}/slaves/*/size | tr '\\n' ' ')\necho \"$* | $sizes\" >>{log}\necho ok\n",
            log = log.display(),
            dm = dm_dir.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = std::env::var("PATH").unwrap_or_default();
    std::env::set_var("PATH", format!("{}:{path}", bin.display()));

    let ex = sim.executor(dir.path().join("owned.json"), Duration::from_secs(10));
    let policy = Policy::from_str(Path::new("t.toml"), "", &Environment::fixed("t")).unwrap();

    let mut graph = Graph::load(&sysfs);
    let before = sysfs.block_size_bytes(&dm).unwrap();
    sim.resize_lun(ARRAY_PORT_A, 0, GROWN).unwrap();
    // The attention reaches hbad from path a only.
    sim.drain_events();
    sim.io(a).unwrap();
    let changes: Vec<_> = sim
        .drain_events()
        .iter()
        .flat_map(|ev| graph.apply(ev, &sysfs))
        .collect();
    let p = plan(&policy, &graph, &Recorded::none(), &changes);
    let rescanned: Vec<Hctl> = p
        .steps
        .iter()
        .filter_map(|s| match &s.action {
            Action::RescanDevice { hctl, .. } => Some(*hctl),
            _ => None,
        })
        .collect();
    assert_eq!(rescanned, vec![a, b], "{:#?}", p.steps);
    let report = ex.apply(&p);
    let details: Vec<String> = report
        .steps
        .iter()
        .map(|s| match &s.outcome {
            StepOutcome::Done { detail } => detail.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(
        details
            .iter()
            .any(|d| d.contains("multipath map mpatha resized to")),
        "{details:?}"
    );
    // Asked once all paths had the new size; never while they disagreed.
    let asked = std::fs::read_to_string(&log).unwrap();
    let sectors = (GROWN / 512).to_string();
    let calls: Vec<&str> = asked.lines().collect();
    assert!((1..=2).contains(&calls.len()), "{asked}");
    for call in calls {
        assert_eq!(
            call,
            format!("resize map mpatha | {sectors} {sectors} "),
            "{asked}"
        );
    }
    assert_eq!(before, 512 << 30);
    // Both paths' disks now show the new size; the graph follows their events.
    for ev in sim.drain_events() {
        graph.apply(&ev, &sysfs);
    }
    for hctl in [a, b] {
        let disk = graph.disk_of(graph.lun(hctl).unwrap()).unwrap();
        let hbad::graph::NodeKind::Disk(d) = &disk.kind else {
            panic!()
        };
        assert_eq!(d.info.size_bytes, Some(GROWN), "{hctl}");
    }
}
