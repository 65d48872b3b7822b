//! `hbad import-libvirt`: libvirt pool XML in, `[[vhba]]` policy out.
//!
//! What the import prints goes straight into /etc/hbad: it must be a policy that
//! `hbad check` accepts, with the WWNs the pools gave, and nothing in it a terminal
//! or TOML would read as a control character.

use std::path::PathBuf;
use std::sync::OnceLock;

use hbad::libvirt::{import_pools, PoolSource};
use hbad::policy::{Environment, Policy};
use proptest::prelude::*;

use crate::harness::{fuzz, mutated, noise, text, Bytes};

const MAX_FILE: usize = 64 * 1024;

const TOKENS: &[&[u8]] = &[
    b"<",
    b">",
    b"/>",
    b"</",
    b"'",
    b"\"",
    b"=",
    b"&amp;",
    b"&lt;",
    b"&#x1b;",
    b"&#10;",
    b"&#0;",
    b"&#xD800;",
    b"&bogus;",
    b"<![CDATA[",
    b"]]>",
    b"<!--",
    b"-->",
    b"<?xml ?>",
    b"<!DOCTYPE pool [<!ENTITY e 'x'>]>",
    b"&e;",
    b"<pool type='scsi'>",
    b"</pool>",
    b"<name>",
    b"</name>",
    b"<source>",
    b"</source>",
    b"<adapter type='fc_host' ",
    b"wwnn='5001a4a000000b00' ",
    b"wwpn='5001a4a000000b01' ",
    b"parent='scsi_host3' ",
    b"managed='yes' ",
    b"\n",
    b"\x1b",
    b"\0",
    b"\xff",
    b"\xc3\xa9",
];

fn seeds() -> &'static Vec<Vec<u8>> {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/libvirt");
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
            .expect("tests/fixtures/libvirt")
            .map(|e| e.expect("a directory entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "xml"))
            .collect();
        paths.sort();
        paths
            .iter()
            .map(|p| std::fs::read(p).expect("a pool file"))
            .collect()
    })
}

const ATTR_VALUES: &[&str] = &[
    "fc_host",
    "scsi_host",
    "",
    "5001a4a000000b00",
    "5001a4a000000b01",
    "0x5001a4a000000b02",
    "50:01:a4:a0:00:00:0b:03",
    "0000000000000000",
    "ffffffffffffffff",
    "21000024ff3affb0",
    "20000024ff3affb0",
    "scsi_host3",
    "host3",
    "scsi_hostx",
    "yes",
    "no",
    "maybe",
    "&#x1b;[31m",
    "a&#10;b",
    "&lt;&amp;&gt;",
    "&#x7f;",
    "\u{e9}",
];
const POOL_NAMES: &[&str] = &[
    "vm-san-a",
    "a",
    "",
    ".dot",
    "a/b",
    "a&#10;b",
    "a&#13;b",
    "esc&#x1b;[2J",
    "tab&#9;x",
    "bell&#7;",
    "del&#x7f;",
    "\u{e9}t\u{e9}",
    "&#x85;nel",
    "&#x2028;ls",
    "]] [[vhba]]",
    "\"quoted\"",
    "'",
    "x'''y\"\"\"z",
    "a-very-long-pool-name-that-goes-on-and-on-past-forty-eight-characters",
];
const ADAPTER_KEYS: &[&str] = &[
    "type",
    "wwnn",
    "wwpn",
    "parent",
    "parent_wwnn",
    "parent_wwpn",
    "parent_fabric_wwn",
    "managed",
    "name",
    "bogus",
];

const WWNNS: &[&str] = &["5001a4a000000b00", "5001a4a000000c00", "0x5001a4a000000d00"];
const WWPNS: &[&str] = &[
    "5001a4a000000b01",
    "5001a4a000000c01",
    "50:01:a4:a0:00:00:0d:01",
];

/// An attribute that is mostly there with a good value, sometimes odd or missing.
fn usual(
    key: &'static str,
    good: &'static [&'static str],
) -> impl Strategy<Value = Option<(&'static str, &'static str)>> {
    let value = prop_oneof![
        4 => proptest::sample::select(good),
        1 => proptest::sample::select(ATTR_VALUES),
    ];
    proptest::option::weighted(0.9, value.prop_map(move |v| (key, v)))
}

/// A pool definition made from what libvirt writes, with odd values and nesting.
fn generated() -> impl Strategy<Value = Bytes> {
    let extra = (
        proptest::sample::select(ADAPTER_KEYS),
        proptest::sample::select(ATTR_VALUES),
    );
    let attrs = (
        usual("type", &["fc_host"]),
        usual("wwnn", WWNNS),
        usual("wwpn", WWPNS),
        proptest::collection::vec(extra, 0..3),
    )
        .prop_map(|(t, n, p, extra)| {
            let mut all: Vec<(&str, &str)> = [t, n, p].into_iter().flatten().collect();
            for (k, v) in extra {
                if !all.iter().any(|(have, _)| *have == k) {
                    all.push((k, v));
                }
            }
            all
        });
    let kind = prop_oneof![
        6 => Just("scsi"),
        1 => proptest::sample::select(&["logical", "", "scsi' type='scsi"][..]),
    ];
    let name = prop_oneof![
        1 => "[a-z][a-z0-9-]{0,10}",
        2 => proptest::sample::select(POOL_NAMES).prop_map(str::to_string),
    ];
    (
        kind,
        name,
        attrs,
        prop_oneof![4 => Just(0usize), 1 => 1usize..40],
        any::<bool>(),
    )
        .prop_map(|(kind, name, attrs, depth, cdata)| {
            let adapter: String = attrs.iter().map(|(k, v)| format!(" {k}='{v}'")).collect();
            let name = if cdata {
                format!("<![CDATA[{name}]]>")
            } else {
                name
            };
            let open = "<x>".repeat(depth);
            let close = "</x>".repeat(depth);
            format!(
                "<pool type='{kind}'>\n  <name>{name}</name>\n  {open}<source>\n    \
                 <adapter{adapter}/>\n  </source>{close}\n</pool>\n"
            )
            .into_bytes()
        })
        .prop_map(Bytes)
}

fn pool_files() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        3 => generated(),
        3 => mutated(seeds().clone(), TOKENS, MAX_FILE),
        1 => noise(TOKENS, 4096),
    ]
}

fn sources(files: &[Bytes]) -> Vec<PoolSource> {
    files
        .iter()
        .enumerate()
        .map(|(i, bytes)| PoolSource {
            path: PathBuf::from(format!("pool-{i}.xml")),
            text: text(bytes),
        })
        .collect()
}

/// No panic; errors point inside the file they name.
#[test]
fn fuzz_libvirt_import() {
    let input = proptest::collection::vec(pool_files(), 1..4);
    fuzz("libvirt_import", 1500, input, |files| {
        let sources = sources(&files);
        match import_pools(&sources) {
            Ok(import) => {
                // Every pool is a vHBA or skipped (no vHBA in it), never lost.
                prop_assert!(import.vhbas.len() + import.skipped.len() == sources.len());
                let _ = import.to_string();
            }
            Err(errors) => {
                prop_assert!(!errors.is_empty(), "refused without a reason");
                for e in &errors {
                    let src = sources.iter().find(|s| s.path == e.file);
                    let Some(src) = src else {
                        return Err(TestCaseError::fail(format!(
                            "error about an unread file: {e}"
                        )));
                    };
                    let lines = src.text.matches('\n').count() + 1;
                    prop_assert!(
                        (1..=lines).contains(&e.line) && e.column >= 1,
                        "error outside its file ({} lines): {}",
                        lines,
                        e
                    );
                }
            }
        }
        Ok(())
    });
}

/// What the import prints is a policy `hbad check` accepts, with the pools' WWNs,
/// and holds no control character but the newline.
#[test]
fn fuzz_libvirt_import_output_is_a_valid_policy() {
    let input = proptest::collection::vec(pool_files(), 1..4);
    fuzz("libvirt_output", 800, input, |files| {
        let Ok(import) = import_pools(&sources(&files)) else {
            return Ok(());
        };
        let out = import.to_string();
        prop_assert!(
            !out.chars().any(|c| c.is_control() && c != '\n'),
            "control character in the output:\n{}",
            out
        );
        let env = Environment::fixed("0123456789abcdef0123456789abcdef");
        let policy = Policy::from_str(std::path::Path::new("imported.toml"), &out, &env);
        let policy = match policy {
            Ok(p) => p,
            Err(e) => {
                return Err(TestCaseError::fail(format!(
                    "check refuses the import: {e}\n{out}"
                )))
            }
        };
        prop_assert_eq!(policy.vhbas.len(), import.vhbas.len());
        for (v, t) in policy.vhbas.iter().zip(&import.vhbas) {
            prop_assert_eq!((&v.name, v.wwpn, v.wwnn), (&t.name, t.wwpn, t.wwnn));
        }
        Ok(())
    });
}

/// XML nested far deeper than any pool: refused with an error, never a crash (a
/// recursive drop of the element tree overflowed the stack).
#[test]
fn deeply_nested_pool_xml_is_refused_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("deep.xml");
    let depth = 200_000;
    let xml = format!(
        "<pool type='scsi'>{}{}</pool>",
        "<x>".repeat(depth),
        "</x>".repeat(depth)
    );
    std::fs::write(&file, xml).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hbad"))
        .arg("import-libvirt")
        .arg(&file)
        .output()
        .unwrap();
    // A crash has no exit code (killed by SIGSEGV/SIGABRT); 101 is a Rust panic.
    let code = out.status.code();
    assert!(
        matches!(code, Some(c) if c != 0 && c != 101),
        "import-libvirt on {depth} nested elements ended with {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What `fuzz_libvirt_import_output_is_a_valid_policy` found first: an escape
/// sequence in a pool's name reaches the policy text (in the comment naming the
/// pool), and a terminal showing the output runs it.
#[test]
fn regression_control_characters_in_a_pool_name_stay_out_of_the_policy() {
    let xml = "<pool type='scsi'>\n  <name>esc&#x1b;[2J</name>\n  <source>\n    \
               <adapter type='fc_host' wwnn='5001a4a000000b00' wwpn='5001a4a000000b01'/>\n  \
               </source>\n</pool>\n";
    let sources = [PoolSource {
        path: PathBuf::from("esc.xml"),
        text: xml.to_string(),
    }];
    if let Ok(import) = import_pools(&sources) {
        let out = import.to_string();
        assert!(!out.chars().any(|c| c.is_control() && c != '\n'), "{out:?}");
    }
}
