//! Policy files: one text, and a main file with drop-ins, as `hbad check` and the
//! daemon read them.
//!
//! Inputs come three ways: the repository's own policies (shipped examples, the good
//! and bad corpora) mutated byte by byte; policies generated from the schema with
//! values picked to sit on and past every limit (so validation, not only the TOML
//! parser, is reached); and noise. What validates must be usable by the daemon as
//! is: that is the point of "what `check` accepts, `run` runs".

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use hbad::policy::{discover, Environment, Perms, Policy, PolicyErrors, SearchPaths};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use crate::harness::{fuzz, mutated, noise, text, Bytes};

/// Policy files are small; 64 KiB is far past any real one and keeps cases quick.
const MAX_FILE: usize = 64 * 1024;

const TOKENS: &[&[u8]] = &[
    b"[[vhba]]\n",
    b"[rescan]\n",
    b"[rescan.include]\n",
    b"[wwn]\n",
    b"[ownership]\n",
    b"\n",
    b"=",
    b"\"",
    b"'",
    b"\"\"\"",
    b"[",
    b"]",
    b"{",
    b"}",
    b",",
    b"#",
    b"\\u0000",
    b"\\",
    b"0x",
    b":",
    b"s",
    b"ms",
    b"h",
    b"18446744073709551615",
    b"auto",
    b"host",
    b"name = ",
    b"link_wait = ",
    b"periodic = ",
    b"true",
    b"\xff",
    b"\t",
    b"\r\n",
    b"a.b.c.d.e.f.g = 1\n",
    b"[[[[",
];

fn env() -> Environment {
    Environment::fixed("0123456789abcdef0123456789abcdef")
}

/// Every policy in the repository: the shipped ones and the test corpora.
fn seeds() -> &'static Vec<Vec<u8>> {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut seeds =
            vec![std::fs::read(root.join("config/hbad.toml")).expect("config/hbad.toml")];
        for dir in [
            "config/examples",
            "tests/fixtures/policy/good",
            "tests/fixtures/policy/bad",
        ] {
            let mut paths: Vec<PathBuf> = std::fs::read_dir(root.join(dir))
                .expect("a policy directory")
                .map(|e| e.expect("a directory entry").path())
                .filter(|p| p.extension().is_some_and(|e| e == "toml"))
                .collect();
            paths.sort();
            seeds.extend(
                paths
                    .iter()
                    .map(|p| std::fs::read(p).expect("a policy file")),
            );
        }
        seeds.extend(EDGES.iter().map(|e| e.as_bytes().to_vec()));
        seeds
    })
}

/// Policies at the edges the daemon computes with, beside the corpora.
const EDGES: &[&str] = &[
    "[[vhba]]\nname = \"a\"\nparent = \"auto\"\nlink_wait = \"18446744073709551615s\"\n",
    "[rescan]\nperiodic = \"18446744073709551615s\"\nscan_timeout = \"584942417355y\"\n",
    "[rescan]\ndebounce = \"5s\"\nscan_timeout = \"1ns\"\nperiodic = \"60s\"\n",
    "[wwn]\noui = \"+1a4a0\"\n[[vhba]]\nname = \"b\"\nparent = \"host4294967295\"\n",
    "[[vhba]]\nname = \"z\"\nparent = \"auto\"\nwwpn = \"0x0000000000000000\"\nwwnn = \"0xffffffffffffffff\"\n",
    "[ownership]\nstate_file = \"/dev/zero\"\n",
    "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p = 1\n",
];

/// Values that sit on, just past and far past each limit, or are the wrong kind.
const DURATIONS: &[&str] = &[
    "250ms",
    "0",
    "0s",
    "1ns",
    "59s",
    "60s",
    "1m",
    "5s",
    "5001ms",
    "2m",
    "1h",
    "30d",
    "1y",
    "100y",
    "18446744073709551615s",
    "18446744073709551615ns",
    "9999999999999999h",
    "584942417355y",
    "-1s",
    "1.5s",
    "",
    " ",
    "off",
    "never",
    "5 s",
    "1s 1s",
    "1 day",
];
const WWNS: &[&str] = &[
    "0x2001001b32a9da4e",
    "0x5001a4a000000a01",
    "0x5001a4a000000a00",
    "2001001b32a9da4e",
    "20:01:00:1b:32:a9:da:4e",
    "0x0000000000000000",
    "0xffffffffffffffff",
    "0x6001a4a000000001",
    "0x4001a4a000000001",
    "0x1000000000000001",
    "0xc000000000000001",
    "0x2001001b32a9da4",
    "0x2001001b32a9da4e0",
    "0x2001001b32a9dag4",
    "2:0:1:0:1:b:3:a",
    "",
];
const NAMES: &[&str] = &[
    "a",
    "fabric-a",
    "fabric-b",
    "vhba.0",
    "_x",
    ".hidden",
    "a/b",
    "",
    " ",
    "a b",
    "a\nb",
    "\u{e9}t\u{e9}",
    "123456789012345678901234567890123456789012345678",
    "1234567890123456789012345678901234567890123456789",
];
const PARENTS: &[&str] = &[
    "auto",
    "host3",
    "scsi_host7",
    "host",
    "host-1",
    "host99999999999",
    "hostx",
    "",
    "AUTO",
];
const OUIS: &[&str] = &[
    "001a4a",
    "0x001a4a",
    "00:1a:4a",
    "+1a4a0",
    "0x0x001a4a",
    "1a4a",
    "0001a4a",
    "ffffff",
    "fffffff",
    "",
    "-01a4a",
    "00 1a4a",
];
const PATHS: &[&str] = &[
    "/var/lib/hbad/owned-vhbas.json",
    "relative.json",
    "/",
    "/dev/zero",
    "/dev/null",
    "/proc/self/mem",
    "",
    "/tmp/../etc/passwd",
    "/run/hbad/x\n.json",
];
const WORDS: &[&str] = &["target", "host", "lun", "Target", "", "all"];

#[derive(Clone, Debug)]
enum Value {
    Str(String),
    Bool(bool),
    Int(i64),
    Float(f64),
    List(Vec<Value>),
    /// Written as is: not always TOML.
    Raw(String),
}

impl Value {
    fn toml(&self) -> String {
        match self {
            Value::Str(s) => toml::Value::String(s.clone()).to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => toml::Value::Float(*f).to_string(),
            Value::List(l) => {
                let items: Vec<String> = l.iter().map(Value::toml).collect();
                format!("[{}]", items.join(", "))
            }
            Value::Raw(r) => r.clone(),
        }
    }
}

fn picked(pool: &'static [&'static str]) -> BoxedStrategy<Value> {
    proptest::sample::select(pool)
        .prop_map(|s| Value::Str(s.to_string()))
        .boxed()
}

/// A value for `key`: mostly of the kind the key takes, sometimes any kind.
fn value_for(key: &str) -> BoxedStrategy<Value> {
    let right = match key {
        "link_wait" | "periodic" | "debounce" | "scan_timeout" => picked(DURATIONS),
        "wwpn" | "wwnn" | "parent_wwpn" | "parent_wwnn" | "parent_fabric" => picked(WWNS),
        "name" => prop_oneof![
            3 => "[a-z][a-z0-9._-]{0,12}".prop_map(Value::Str),
            1 => picked(NAMES),
        ]
        .boxed(),
        "seed" => picked(NAMES),
        "parent" => prop_oneof![3 => Just(Value::Str("auto".into())), 1 => picked(PARENTS)].boxed(),
        "oui" => picked(OUIS),
        "state_file" => picked(PATHS),
        "scope" => picked(WORDS),
        "on_lun_change" | "on_capacity_change" | "on_port_online" | "lip" | "prune" => {
            any::<bool>().prop_map(Value::Bool).boxed()
        }
        "drivers" | "vhbas" => proptest::collection::vec(picked(NAMES), 0..4)
            .prop_map(Value::List)
            .boxed(),
        "fabrics" | "wwpns" => proptest::collection::vec(picked(WWNS), 0..4)
            .prop_map(Value::List)
            .boxed(),
        _ => picked(NAMES),
    };
    let wrong = prop_oneof![
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        any::<f64>().prop_map(Value::Float),
        Just(Value::List(Vec::new())),
        Just(Value::Raw("{ a = 1 }".into())),
        Just(Value::Raw("\"unterminated".into())),
        "[ -~]{0,16}".prop_map(Value::Str),
        "[ -~]{0,8}".prop_map(Value::Raw),
    ];
    prop_oneof![6 => right, 1 => wrong].boxed()
}

const TABLES: &[(&str, &[&str])] = &[
    (
        "[[vhba]]",
        &[
            "name",
            "parent",
            "wwpn",
            "wwnn",
            "parent_wwpn",
            "parent_wwnn",
            "parent_fabric",
            "link_wait",
        ],
    ),
    (
        "[rescan]",
        &[
            "on_lun_change",
            "on_capacity_change",
            "on_port_online",
            "scope",
            "periodic",
            "lip",
            "debounce",
            "scan_timeout",
        ],
    ),
    (
        "[rescan.include]",
        &["drivers", "fabrics", "wwpns", "vhbas"],
    ),
    (
        "[rescan.exclude]",
        &["drivers", "fabrics", "wwpns", "vhbas"],
    ),
    ("[wwn]", &["oui", "seed"]),
    ("[ownership]", &["prune", "state_file"]),
    ("[vhba]", &["name", "parent"]),
    ("[bogus]", &["key"]),
    ("", &["name", "periodc", "vhba"]),
];

/// How often a table has each key: a vHBA nearly always has a name and a parent, so
/// that most generated policies get past the first checks to the limits.
fn weight(header: &str, key: &str) -> f64 {
    match (header, key) {
        ("[[vhba]]", "name" | "parent") => 0.95,
        ("[bogus]" | "", _) => 0.5,
        _ => 0.3,
    }
}

/// One table: its header and each of its keys at most once.
fn table() -> impl Strategy<Value = String> {
    proptest::sample::select(TABLES).prop_flat_map(|(header, keys)| {
        let entries: Vec<BoxedStrategy<Option<String>>> = keys
            .iter()
            .map(|&k| {
                let line = value_for(k).prop_map(move |v| format!("{k} = {}", v.toml()));
                proptest::option::weighted(weight(header, k), line).boxed()
            })
            .collect();
        entries.prop_map(move |entries| {
            let mut t = format!("{header}\n");
            for e in entries.into_iter().flatten() {
                t.push_str(&e);
                t.push('\n');
            }
            t
        })
    })
}

/// A policy made from the schema.
fn generated() -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(table(), 0..8).prop_map(|tables| Bytes(tables.concat().into_bytes()))
}

fn files() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        3 => generated(),
        3 => mutated(seeds().clone(), TOKENS, MAX_FILE),
        1 => noise(TOKENS, 4096),
        1 => proptest::sample::select(EDGES).prop_map(|e| Bytes(e.as_bytes().to_vec())),
    ]
}

fn valid_name(name: &str) -> bool {
    (1..=48).contains(&name.len())
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The bounds hbad.toml(5) documents, and what the daemon does with the values: a
/// validated policy satisfies every one.
fn within_bounds(p: &Policy) -> Result<(), TestCaseError> {
    let mut names = std::collections::HashSet::new();
    let mut wwpns = std::collections::HashSet::new();
    for v in &p.vhbas {
        prop_assert!(valid_name(&v.name), "vHBA name {:?}", v.name);
        prop_assert!(names.insert(v.name.clone()), "two vHBAs named {:?}", v.name);
        prop_assert!(wwpns.insert(v.wwpn), "two vHBAs with WWPN {}", v.wwpn);
        prop_assert_ne!(v.wwpn, v.wwnn, "vHBA {:?}: wwpn = wwnn", v.name);
    }
    let r = &p.rescan;
    prop_assert!(
        r.debounce <= Duration::from_secs(5),
        "debounce {:?}",
        r.debounce
    );
    prop_assert!(!r.scan_timeout.is_zero(), "scan_timeout 0");
    if let Some(period) = r.periodic {
        prop_assert!(period >= Duration::from_secs(60), "periodic {:?}", period);
    }
    prop_assert!(p.wwn.oui <= 0xff_ffff, "oui {:#x}", p.wwn.oui);
    prop_assert!(p.ownership.state_file.is_absolute());
    // The policy is shown (`hbad check --json`, the status file) as it is.
    prop_assert!(serde_json::to_string(p).is_ok());
    Ok(())
}

/// What the daemon computes with a policy's durations must not overflow: deadlines
/// are `Instant + duration`, timestamps `SystemTime + duration`.
fn durations_usable(p: &Policy) -> Result<(), TestCaseError> {
    let r = &p.rescan;
    let mut all = vec![("debounce", r.debounce), ("scan_timeout", r.scan_timeout)];
    all.extend(r.periodic.map(|d| ("periodic", d)));
    all.extend(p.vhbas.iter().map(|v| ("link_wait", v.link_wait)));
    let now = Instant::now();
    for (key, d) in all {
        prop_assert!(
            now.checked_add(d).is_some(),
            "{} {:?} overflows an Instant",
            key,
            d
        );
        prop_assert!(
            SystemTime::now().checked_add(d).is_some(),
            "{} {:?} overflows a SystemTime",
            key,
            d
        );
    }
    Ok(())
}

/// Every error points into a file that was read, at a line and column in it.
fn errors_placed(errors: &PolicyErrors, files: &[(PathBuf, Vec<u8>)]) -> Result<(), TestCaseError> {
    prop_assert!(!errors.0.is_empty(), "rejected without an error");
    for e in &errors.0 {
        let Some((_, bytes)) = files.iter().find(|(p, _)| *e.origin.file == **p) else {
            return Err(TestCaseError::fail(format!(
                "error about an unread file: {e}"
            )));
        };
        let lines = bytes.iter().filter(|&&b| b == b'\n').count() + 1;
        prop_assert!(
            (1..=lines).contains(&e.origin.line) && e.origin.column >= 1,
            "error without a place in the file ({} lines): {}",
            lines,
            e
        );
    }
    Ok(())
}

fn check_text(bytes: &[u8]) -> Result<Result<Policy, PolicyErrors>, TestCaseError> {
    let name = Path::new("fuzz.toml");
    Ok(Policy::from_str(name, &text(bytes), &env()))
}

/// One policy text, as `hbad check -` reads it.
#[test]
fn fuzz_policy_text() {
    fuzz("policy_text", 2000, files(), |bytes| {
        if let Ok(p) = check_text(&bytes)? {
            within_bounds(&p)?;
        }
        Ok(())
    });
}

/// The checks the policy's limits add: durations the daemon can compute with, and
/// errors that name a line even for nesting and encoding problems.
#[test]
fn fuzz_policy_limits() {
    fuzz("policy_limits", 2000, files(), |bytes| {
        let name = PathBuf::from("fuzz.toml");
        match check_text(&bytes)? {
            Ok(p) => durations_usable(&p)?,
            Err(e) => errors_placed(&e, &[(name, bytes.0.clone())])?,
        }
        Ok(())
    });
}

/// The files written (path, bytes) and what loading them gave.
type Loaded = (Vec<(PathBuf, Vec<u8>)>, Result<Policy, PolicyErrors>);

/// A main file with drop-ins, found and read as the daemon finds them.
fn load_dir(files: &[Bytes]) -> Result<Loaded, TestCaseError> {
    let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
    let dropins = dir.path().join("hbad.d");
    std::fs::create_dir(&dropins).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let mut written = Vec::new();
    for (i, bytes) in files.iter().enumerate() {
        let path = if i == 0 {
            dir.path().join("hbad.toml")
        } else {
            dropins.join(format!("{i:02}-fuzz.toml"))
        };
        std::fs::write(&path, bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        written.push((path, bytes.0.clone()));
    }
    let defaults = SearchPaths::under(Path::new("/nonexistent"));
    let result = discover(Some(dir.path()), &defaults)
        .and_then(|found| Policy::load_files(&found, &env(), Perms::Strict));
    // Paths must outlive the errors that name them only as text: the tree can go.
    drop(dir);
    Ok((written, result))
}

#[test]
fn fuzz_policy_with_dropins() {
    let input = proptest::collection::vec(files(), 1..5);
    fuzz("policy_dropins", 200, input, |files| {
        let (written, result) = load_dir(&files)?;
        match result {
            Ok(p) => within_bounds(&p)?,
            Err(e) => {
                prop_assert!(!e.0.is_empty(), "rejected without an error");
                for err in &e.0 {
                    prop_assert!(
                        written.iter().any(|(p, _)| *err.origin.file == **p),
                        "error about an unread file: {}",
                        err
                    );
                }
            }
        }
        Ok(())
    });
}

/// What `fuzz_policy_limits` found first: `hbad check` accepts this, and the daemon
/// then adds the link wait to an `Instant` at boot.
#[test]
fn regression_a_link_wait_that_overflows_an_instant_is_refused() {
    let text = "[[vhba]]\nname = \"a\"\nparent = \"auto\"\nlink_wait = \"18446744073709551615s\"\n";
    if let Ok(p) = Policy::from_str(Path::new("fuzz.toml"), text, &env()) {
        panic!(
            "accepted link_wait {:?}, which Instant::now() + cannot hold",
            p.vhbas[0].link_wait
        );
    }
}
