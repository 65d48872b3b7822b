//! The ownership state file shared by hbad processes: the agent and CLI calls beside
//! it write it at the same time, each from its own process.

use std::collections::BTreeSet;
use std::process::Command;

use hbad::ownership::{OwnedRecord, OwnedState};
use hbad::wwn::Wwn;

const WRITER: &str = "HBAD_TEST_STATE_WRITER";
const PER_WRITER: u64 = 25;

fn wwpn(n: u64) -> Wwn {
    Wwn::from_u64(0x5001_a4a0_0000_0000 + n)
}

/// One writer process: runs only when the test below starts this binary with
/// `WRITER=<state file>:<first>`, and records `PER_WRITER` vHBAs one at a time.
#[test]
fn writer_process() {
    let Ok(spec) = std::env::var(WRITER) else {
        return;
    };
    let (path, first) = spec.rsplit_once(':').expect("path:first");
    let first: u64 = first.parse().expect("a number");
    let state = OwnedState::new(path);
    for n in first..first + PER_WRITER {
        let rec = OwnedRecord {
            name: format!("v{n}"),
            wwnn: Wwn::from_u64(0x5001_a4a0_0001_0000 + n),
            why: String::new(),
            mark_pending: false,
        };
        state.record(wwpn(n), rec).expect("record");
    }
}

#[test]
fn processes_writing_at_once_keep_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state/owned-vhbas.json");
    let exe = std::env::current_exe().unwrap();
    let writers: Vec<_> = (0..4u64)
        .map(|i| {
            Command::new(&exe)
                .args(["--exact", "writer_process", "--test-threads", "1"])
                .env(WRITER, format!("{}:{}", path.display(), i * 100))
                .spawn()
                .unwrap()
        })
        .collect();
    for mut w in writers {
        assert!(w.wait().unwrap().success());
    }
    let all = OwnedState::new(&path).all().unwrap();
    let expected: BTreeSet<Wwn> = (0..4u64)
        .flat_map(|i| (i * 100..i * 100 + PER_WRITER).map(wwpn))
        .collect();
    assert_eq!(all.keys().copied().collect::<BTreeSet<_>>(), expected);
    // The lock file stays; no temporary does.
    let mut names: Vec<String> = std::fs::read_dir(dir.path().join("state"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["owned-vhbas.json", "owned-vhbas.json.lock"]);
}
