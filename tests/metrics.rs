//! The textfile hbad writes for node_exporter is valid Prometheus exposition: a
//! parser of the format checks every rule the collector enforces, and `promtool
//! check metrics` lints it too where promtool is installed (Debian: `prometheus`).

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

use hbad::metrics::{render, FleetSnapshot, HostMetric, ReloadMetric, VhbaMetric};
use hbad::uevent::source::CounterSnapshot;

/// One sample line: metric name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s.parse().map_err(|_| format!("bad value `{s}`")),
    }
}

/// Parses `name{k="v",...} value` with the format's escapes.
fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(['{', ' '])
        .ok_or_else(|| format!("no value: `{line}`"))?;
    let name = &line[..name_end];
    if !valid_name(name) {
        return Err(format!("bad metric name `{name}`"));
    }
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices().peekable();
        loop {
            let start = chars.peek().map(|(i, _)| *i).ok_or("unterminated labels")?;
            if body[start..].starts_with('}') {
                rest = &body[start + 1..];
                break;
            }
            let eq = body[start..].find('=').ok_or("label without =")? + start;
            let key = &body[start..eq];
            if !valid_name(key) || key.starts_with("__") {
                return Err(format!("bad label name `{key}`"));
            }
            if !body[eq + 1..].starts_with('"') {
                return Err(format!("label `{key}` value not quoted"));
            }
            while chars.peek().is_some_and(|(i, _)| *i <= eq + 1) {
                chars.next();
            }
            let mut value = String::new();
            loop {
                match chars.next().ok_or("unterminated label value")?.1 {
                    '"' => break,
                    '\\' => match chars.next().ok_or("dangling escape")?.1 {
                        '\\' => value.push('\\'),
                        '"' => value.push('"'),
                        'n' => value.push('\n'),
                        c => return Err(format!("unknown escape \\{c}")),
                    },
                    '\n' => return Err("raw newline in label value".into()),
                    c => value.push(c),
                }
            }
            if labels.insert(key.to_string(), value).is_some() {
                return Err(format!("label `{key}` twice"));
            }
            if chars.peek().is_some_and(|(_, c)| *c == ',') {
                chars.next();
            }
        }
    }
    let value = rest
        .strip_prefix(' ')
        .ok_or_else(|| format!("no space before the value: `{line}`"))?;
    Ok((name.to_string(), labels, parse_value(value)?))
}

/// Checks a whole exposition; returns the samples by family.
fn check_exposition(text: &str) -> Result<BTreeMap<String, Vec<Sample>>, String> {
    if !text.ends_with('\n') {
        return Err("does not end with a newline".into());
    }
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut helps = BTreeSet::new();
    let mut families: BTreeMap<String, Vec<Sample>> = BTreeMap::new();
    let mut finished = BTreeSet::new();
    let mut current: Option<String> = None;
    let mut series = BTreeSet::new();
    for (no, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}", no + 1);
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kw, name) = (parts.next().unwrap(), parts.next().unwrap_or(""));
            let arg = parts.next().unwrap_or("");
            if current.as_deref() != Some(name) {
                if let Some(c) = current.take() {
                    finished.insert(c);
                }
                if finished.contains(name) {
                    return Err(at(format!("family {name} appears twice")));
                }
                current = Some(name.to_string());
            }
            match kw {
                "HELP" if !helps.insert(name.to_string()) => {
                    return Err(at(format!("HELP for {name} twice")))
                }
                "HELP" if arg.is_empty() => return Err(at(format!("empty HELP for {name}"))),
                "TYPE" => {
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&arg) {
                        return Err(at(format!("unknown type {arg}")));
                    }
                    if families.contains_key(name) {
                        return Err(at(format!("TYPE for {name} after its samples")));
                    }
                    if types.insert(name.to_string(), arg.to_string()).is_some() {
                        return Err(at(format!("TYPE for {name} twice")));
                    }
                }
                _ => {}
            }
            continue;
        }
        let sample = parse_sample(line).map_err(at)?;
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                let base = sample.0.strip_suffix(suffix)?;
                (types.get(base).map(String::as_str) == Some("histogram")).then_some(base)
            })
            .unwrap_or(&sample.0)
            .to_string();
        let kind = types
            .get(&family)
            .ok_or_else(|| at(format!("{family} has no TYPE")))?;
        if current.as_deref() != Some(&family) {
            return Err(at(format!("sample of {family} outside its family's block")));
        }
        if !helps.contains(&family) {
            return Err(at(format!("{family} has no HELP")));
        }
        if kind == "counter" && !family.ends_with("_total") {
            return Err(at(format!("counter {family} does not end in _total")));
        }
        if !series.insert(format!("{}{:?}", sample.0, sample.1)) {
            return Err(at(format!("duplicate series {}{:?}", sample.0, sample.1)));
        }
        families.entry(family).or_default().push(sample);
    }
    for (name, kind) in &types {
        if kind == "histogram" {
            check_histogram(name, &families[name])?;
        }
    }
    Ok(families)
}

fn check_histogram(name: &str, samples: &[Sample]) -> Result<(), String> {
    let buckets: Vec<(f64, f64)> = samples
        .iter()
        .filter(|s| s.0.ends_with("_bucket"))
        .map(|s| Ok((parse_value(s.1.get("le").ok_or("bucket without le")?)?, s.2)))
        .collect::<Result<_, String>>()?;
    let count = samples
        .iter()
        .find(|s| s.0.ends_with("_count"))
        .ok_or_else(|| format!("{name} has no _count"))?
        .2;
    samples
        .iter()
        .find(|s| s.0.ends_with("_sum"))
        .ok_or_else(|| format!("{name} has no _sum"))?;
    if buckets
        .windows(2)
        .any(|w| w[0].0 >= w[1].0 || w[0].1 > w[1].1)
    {
        return Err(format!("{name}: buckets not ascending and cumulative"));
    }
    match buckets.last() {
        Some((le, c)) if le.is_infinite() && *c == count => Ok(()),
        _ => Err(format!("{name}: last bucket is not +Inf equal to _count")),
    }
}

fn snapshot() -> FleetSnapshot {
    let mut s = FleetSnapshot {
        started: 1_765_000_000.5,
        ..Default::default()
    };
    s.vhbas.push(VhbaMetric {
        name: "fabric-a".into(),
        wwpn: "0x5001a4a000000a01".into(),
        parent: "host1".into(),
        fabric: "0x100000051e000a00".into(),
        state: "active".into(),
    });
    s.vhbas.push(VhbaMetric {
        // A name an operator could write in TOML: every character that needs escaping.
        name: "odd \"name\" \\ with\nnewline".into(),
        wwpn: "0x5001a4a000000b01".into(),
        state: "waiting".into(),
        ..Default::default()
    });
    s.hosts.push(HostMetric {
        host: "host1".into(),
        remote_ports: 2,
        luns: 3,
        hung: false,
    });
    s.hosts.push(HostMetric {
        host: "host9".into(),
        hung: true,
        ..Default::default()
    });
    s.scans_issued = 6;
    for ms in [3, 40, 40, 2000, 400_000] {
        s.scans.observe(Duration::from_millis(ms));
    }
    s.vport_create_failures.insert("EBUSY".into(), 2);
    s.sources.insert(
        "kernel".into(),
        CounterSnapshot {
            received: 10,
            events: 8,
            rejected_not_kernel: 1,
            rejected_malformed: 1,
            overflows: 1,
            ..Default::default()
        },
    );
    s.sources.insert("fc".into(), CounterSnapshot::default());
    s.sources_up.insert("fc".into(), true);
    s.log_records_dropped = 7;
    s.reloads = ReloadMetric {
        succeeded: 1,
        failed: 1,
        last_failed: true,
        last_time: Some(1_765_000_100.0),
    };
    s
}

#[test]
fn textfile_parses_as_prometheus_exposition() {
    let text = render(&snapshot());
    let families = check_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let value = |family: &str, name: &str, labels: &[(&str, &str)]| {
        families[family]
            .iter()
            .find(|s| {
                s.0 == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.1.get(*k).map(String::as_str) == Some(*v))
            })
            .unwrap_or_else(|| panic!("no {name} {labels:?} in\n{text}"))
            .2
    };
    assert_eq!(
        value("hbad_vhba_up", "hbad_vhba_up", &[("name", "fabric-a")]),
        1.0
    );
    let odd = "odd \"name\" \\ with\nnewline";
    assert_eq!(value("hbad_vhba_up", "hbad_vhba_up", &[("name", odd)]), 0.0);
    assert_eq!(
        value(
            "hbad_vhba_state",
            "hbad_vhba_state",
            &[("name", odd), ("state", "waiting")]
        ),
        1.0
    );
    assert_eq!(
        families["hbad_vhba_state"].len(),
        2 * hbad::metrics::VHBA_STATES.len(),
        "one series per state per vHBA"
    );
    assert_eq!(value("hbad_hung_hosts", "hbad_hung_hosts", &[]), 1.0);
    assert_eq!(
        value("hbad_host_luns", "hbad_host_luns", &[("host", "host1")]),
        3.0
    );
    let h = "hbad_scan_duration_seconds";
    assert_eq!(
        value(h, "hbad_scan_duration_seconds_bucket", &[("le", "0.05")]),
        3.0
    );
    assert_eq!(
        value(h, "hbad_scan_duration_seconds_bucket", &[("le", "+Inf")]),
        5.0
    );
    assert_eq!(value(h, "hbad_scan_duration_seconds_count", &[]), 5.0);
    assert_eq!(
        value(
            "hbad_vport_create_failures_total",
            "hbad_vport_create_failures_total",
            &[("errno", "EBUSY")]
        ),
        2.0
    );
    assert_eq!(
        value(
            "hbad_events_dropped_total",
            "hbad_events_dropped_total",
            &[("source", "kernel"), ("reason", "not_kernel")]
        ),
        1.0
    );
    assert_eq!(
        value(
            "hbad_log_records_dropped_total",
            "hbad_log_records_dropped_total",
            &[]
        ),
        7.0
    );
    assert_eq!(
        value(
            "hbad_event_source_up",
            "hbad_event_source_up",
            &[("source", "fc")]
        ),
        1.0
    );
    assert_eq!(
        value(
            "hbad_policy_last_reload_success",
            "hbad_policy_last_reload_success",
            &[]
        ),
        0.0
    );
}

#[test]
fn an_empty_agent_still_renders_valid_families() {
    let text = render(&FleetSnapshot::default());
    check_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
}

#[test]
fn the_checker_catches_what_the_collector_rejects() {
    let bad = [
        ("x 1\n", "no TYPE"),
        ("# HELP x h\n# TYPE x counter\nx 1\n", "_total"),
        ("# HELP x h\n# TYPE x gauge\nx{a=\"b\\q\"} 1\n", "escape"),
        ("# HELP x h\n# TYPE x gauge\nx{a=\"1\"} 1\nx{a=\"1\"} 2\n", "duplicate"),
        (
            "# HELP h h\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
            "cumulative",
        ),
        (
            "# HELP h h\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n",
            "+Inf",
        ),
        ("# HELP x h\n# TYPE x gauge\nx 1", "newline"),
    ];
    for (text, want) in bad {
        let err = check_exposition(text).unwrap_err();
        assert!(err.contains(want), "`{want}` not in `{err}` for {text:?}");
    }
}

#[test]
fn promtool_accepts_the_textfile() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hbad.prom");
    hbad::metrics::write_textfile(&path, &render(&snapshot())).unwrap();
    promtool(&["check", "metrics"], Some(&path));
}

/// Runs promtool, insisting it succeeds (it prints lint problems and exits
/// non-zero on any); false when promtool is not installed.
fn promtool(args: &[&str], stdin: Option<&std::path::Path>) -> bool {
    let mut cmd = Command::new("promtool");
    cmd.args(args);
    if let Some(path) = stdin {
        cmd.stdin(std::fs::File::open(path).unwrap());
    }
    let Ok(out) = cmd.output() else {
        println!("skipping: promtool is not installed (Debian package `prometheus`)");
        return false;
    };
    assert!(
        out.status.success(),
        "promtool {}:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    true
}

#[test]
fn promtool_accepts_the_example_alert_rules() {
    let rules = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/alerts.yml");
    if !promtool(&["check", "rules", rules], None) {
        return;
    }
    // Every metric the rules use is one hbad writes (or node_exporter's own).
    let text = std::fs::read_to_string(rules).unwrap();
    let written = render(&snapshot());
    for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if word.starts_with("hbad_") && word.len() > 5 {
            assert!(
                written.contains(&format!("# TYPE {word} ")),
                "the rules use {word}, which hbad does not write"
            );
        }
    }
}
