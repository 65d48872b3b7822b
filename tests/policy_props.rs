//! What `hbad check` accepts, the agent runs: random policies, some sane and some
//! made of the values that break arithmetic (durations near `u64::MAX` seconds, WWNs
//! of every NAA, odd OUIs and names). Whenever the validator accepts one, an agent on
//! the simulated host starts with it, boots, ticks far into the future and reloads
//! another accepted policy, and nothing may panic.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use hbad::daemon::{Agent, AgentConfig};
use hbad::policy::{Environment, Policy};
use hbad::sim::demo::{spec as demo_spec, FABRIC_A_WWN, HBA_A_WWPN};
use hbad::sim::Sim;

/// Durations as people write them (`sane`, most of the time), and as the hostile
/// corpus does.
fn duration(sane: &'static [&'static str]) -> impl Strategy<Value = String> {
    let unit = prop::sample::select(vec!["ns", "ms", "s", "m", "h", "d", "w", "y", ""]);
    prop_oneof![
        6 => prop::sample::select(sane).prop_map(String::from),
        1 => prop::sample::select(vec![
            "0",
            "0s",
            "250ms",
            "1m",
            "90s",
            "6h",
            "7d",
            "1h 1ns",
            "18446744073709551615s",
            "584942417355y",
            "99999999999999999999999s",
            "-1s",
            "off",
            "",
        ])
        .prop_map(String::from),
        1 => (any::<u64>(), unit.clone()).prop_map(|(n, u)| format!("{n}{u}")),
        1 => (0u64..100_000, unit).prop_map(|(n, u)| format!("{n}{u}")),
    ]
}

const LINK_WAITS: &[&str] = &["0s", "1s", "90s", "1h"];
const PERIODICS: &[&str] = &["off", "1m", "6h", "7d"];
const DEBOUNCES: &[&str] = &["0s", "1ns", "250ms", "5s"];
const SCAN_TIMEOUTS: &[&str] = &["10ms", "120s", "1h"];

/// WWNs of every NAA, the placeholders drivers show, and the demo host's own ports.
fn wwn() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (1u64..u64::MAX >> 4).prop_map(|v| format!("0x5{v:015x}")),
        1 => any::<u64>().prop_map(|v| format!("0x{v:016x}")),
        1 => (0u64..16, any::<u64>())
            .prop_map(|(naa, v)| format!("{:016x}", naa << 60 | v & 0x0fff_ffff_ffff_ffff)),
        1 => prop::sample::select(vec![
            "0x0000000000000000".to_string(),
            "0xffffffffffffffff".to_string(),
            HBA_A_WWPN.to_string(),
            FABRIC_A_WWN.to_string(),
            "0x5001a4a000000b01".to_string(),
            "0x5001a4a000000b00".to_string(),
        ]),
    ]
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => (0u32..1000).prop_map(|i| format!("v{i}")),
        1 => prop::sample::select(vec!["fabric-a", "x.y", ".hidden", "a b", "", "a\\u0000"])
            .prop_map(String::from),
    ]
}

fn opt<T: std::fmt::Debug>(s: impl Strategy<Value = T>) -> impl Strategy<Value = Option<T>> {
    prop::option::weighted(0.4, s)
}

fn vhba() -> impl Strategy<Value = String> {
    (
        name(),
        opt(wwn()),
        opt(wwn()),
        prop_oneof![
            2 => Just(format!("parent_wwpn = \"{HBA_A_WWPN}\"")),
            2 => Just(format!("parent_fabric = \"{FABRIC_A_WWN}\"")),
            1 => wwn().prop_map(|w| format!("parent_wwpn = \"{w}\"")),
            1 => wwn().prop_map(|w| format!("parent_fabric = \"{w}\"")),
            2 => prop::sample::select(vec!["auto", "host0", "host4294967295", "host99999999999"])
                .prop_map(|p| format!("parent = \"{p}\"")),
        ],
        opt(duration(LINK_WAITS)),
    )
        .prop_map(|(name, wwpn, wwnn, parent, link_wait)| {
            let mut t = format!("[[vhba]]\nname = \"{name}\"\n{parent}\n");
            if let Some(w) = wwpn {
                t += &format!("wwpn = \"{w}\"\n");
            }
            if let Some(w) = wwnn {
                t += &format!("wwnn = \"{w}\"\n");
            }
            if let Some(d) = link_wait {
                t += &format!("link_wait = \"{d}\"\n");
            }
            t
        })
}

fn policy_text() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(vhba(), 0..4),
        opt(duration(PERIODICS)),
        opt(duration(DEBOUNCES)),
        opt(duration(SCAN_TIMEOUTS)),
        opt(prop::sample::select(vec![
            "001a4a",
            "0x001a4a",
            "001a4a",
            "0x001a4a",
            "00:1a:4a",
            "ffffff",
            "+1a4a0",
            "0x0x001a4a",
            "1a4a",
        ])),
        opt(prop::collection::vec(wwn(), 0..3)),
        any::<bool>(),
    )
        .prop_map(
            |(vhbas, periodic, debounce, scan_timeout, oui, wwpns, prune)| {
                let mut t = vhbas.concat();
                t += "[rescan]\n";
                for (key, value) in [
                    ("periodic", periodic),
                    ("debounce", debounce),
                    ("scan_timeout", scan_timeout),
                ] {
                    if let Some(v) = value {
                        t += &format!("{key} = \"{v}\"\n");
                    }
                }
                if let Some(list) = wwpns {
                    let quoted: Vec<String> = list.iter().map(|w| format!("\"{w}\"")).collect();
                    t += &format!("[rescan.exclude]\nwwpns = [{}]\n", quoted.join(", "));
                }
                if let Some(o) = oui {
                    t += &format!("[wwn]\noui = \"{o}\"\n");
                }
                // The state file stays in the test's directory (see `STATE`).
                t += &format!("[ownership]\nprune = {prune}\nstate_file = \"STATE\"\n");
                t
            },
        )
}

fn check(text: &str, dir: &Path) -> Option<Policy> {
    let text = text.replace("STATE", &dir.join("owned.json").display().to_string());
    Policy::from_str(
        Path::new("random.toml"),
        &text,
        &Environment::fixed("proptest-host"),
    )
    .ok()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn an_accepted_policy_starts_ticks_and_reloads_without_panicking(
        first in policy_text(),
        second in policy_text(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let Some(policy) = check(&first, dir.path()) else {
            return Ok(());
        };
        let sim = Sim::new(&dir.path().join("sys"), &demo_spec()).unwrap();
        let t0 = Instant::now();
        let mut agent = Agent::new(
            AgentConfig { sysfs: sim.sysfs(), status_path: None },
            Arc::new(sim.clone()),
            policy,
            t0,
        );
        agent.boot(t0);
        // Far past every bounded duration: link waits, periodic scans, backoffs.
        for later in [1, 3_600, 8 * 24 * 3_600, 400 * 24 * 3_600] {
            agent.tick(t0 + Duration::from_secs(later));
        }
        let reload_at = t0 + Duration::from_secs(400 * 24 * 3_600);
        match check(&second, dir.path()) {
            Some(next) => {
                prop_assert!(agent.reload(Ok(next), reload_at));
            }
            None => {
                let err = Policy::from_str(Path::new("r.toml"), &second, &Environment::fixed("h"))
                    .map(|_| ());
                if let Err(e) = err {
                    prop_assert!(!agent.reload(Err(e), reload_at));
                }
            }
        }
        agent.tick(reload_at + Duration::from_secs(8 * 24 * 3_600));
        let _ = agent.summary();
    }
}

/// The generator reaches both sides: these fixed cases are one accepted and one
/// refused policy of the kind it makes, so the property above is not vacuous.
#[test]
fn the_generator_makes_policies_check_accepts_and_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let good = format!(
        "[[vhba]]\nname = \"a\"\nparent_wwpn = \"{HBA_A_WWPN}\"\nlink_wait = \"1h\"\n[rescan]\nperiodic = \"7d\"\ndebounce = \"5s\"\n[ownership]\nprune = true\nstate_file = \"STATE\"\n"
    );
    assert!(check(&good, dir.path()).is_some());
    let bad = good.replace("\"1h\"", "\"18446744073709551615s\"");
    assert!(check(&bad, dir.path()).is_none());
}
