//! Fleet metrics in the Prometheus text exposition format, written as a
//! node_exporter textfile.
//!
//! A host agent feeds Prometheus without a listening socket of its own: it drops a
//! `*.prom` file into the directory node_exporter's textfile collector reads
//! (Debian: `/var/lib/prometheus/node-exporter/`), replacing it atomically so the
//! collector never reads half a file. hbad renders the file from one
//! [`FleetSnapshot`] (built by the agent from its status and counters; this module
//! does no I/O except [`write_textfile`]) whenever something in it changed.
//!
//! Conventions followed (prometheus.io "Metric and label naming"): base units
//! (seconds), `_total` on counters, one series per state with value 0 or 1 for
//! enumerations, timestamps as `_timestamp_seconds` gauges, label values escaped
//! (`\\`, `\"`, `\n`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::files;
use crate::uevent::source::CounterSnapshot;

/// The directory Debian's prometheus-node-exporter reads textfiles from.
pub const NODE_EXPORTER_DIR: &str = "/var/lib/prometheus/node-exporter";
/// The file name hbad writes there.
pub const TEXTFILE_NAME: &str = "hbad.prom";

/// The states a policy vHBA can be in, as the status file names them: each gets a
/// series, 1 for the current one.
pub const VHBA_STATES: [&str; 6] = [
    "active",
    "logging_in",
    "degraded",
    "creating",
    "waiting",
    "failed",
];

/// Upper bounds of the scan duration buckets, in seconds: a targeted scan of a
/// healthy target takes milliseconds, a wildcard scan of a big fabric seconds,
/// and the default scan timeout is minutes, where a scan is declared hung.
pub const SCAN_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0, 300.0,
];

/// Where the textfile goes when nothing says: beside node_exporter's other
/// textfiles, but only when that directory exists (node_exporter installed); hbad
/// does not create it, so a host without node_exporter gets no stray file.
pub fn default_path() -> Option<PathBuf> {
    let dir = Path::new(NODE_EXPORTER_DIR);
    dir.is_dir().then(|| dir.join(TEXTFILE_NAME))
}

/// A Prometheus histogram with fixed buckets ([`SCAN_BUCKETS`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    /// Observations per bucket, not cumulative: `counts[i]` is the number with
    /// `SCAN_BUCKETS[i-1] < v <= SCAN_BUCKETS[i]`; the last slot is above every bound.
    counts: [u64; SCAN_BUCKETS.len() + 1],
    sum: f64,
}

impl Histogram {
    pub fn observe(&mut self, d: Duration) {
        let v = d.as_secs_f64();
        let i = SCAN_BUCKETS
            .iter()
            .position(|&le| v <= le)
            .unwrap_or(SCAN_BUCKETS.len());
        self.counts[i] = self.counts[i].saturating_add(1);
        self.sum += v;
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().fold(0, |a, &c| a.saturating_add(c))
    }

    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// `(le, cumulative count)` for every bound, then `+Inf` with the total.
    pub fn cumulative(&self) -> Vec<(String, u64)> {
        let mut running = 0u64;
        let mut out = Vec::with_capacity(self.counts.len());
        for (i, c) in self.counts.iter().enumerate() {
            running = running.saturating_add(*c);
            let le = SCAN_BUCKETS
                .get(i)
                .map_or_else(|| "+Inf".to_string(), |b| format_float(*b));
            out.push((le, running));
        }
        out
    }
}

/// One policy vHBA.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VhbaMetric {
    pub name: String,
    pub wwpn: String,
    /// The parent host's name (`hostN`), empty while there is none.
    pub parent: String,
    /// The fabric the parent is logged into (fabric_name), empty when unknown.
    pub fabric: String,
    /// One of [`VHBA_STATES`].
    pub state: String,
}

/// One SCSI host the agent watches.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostMetric {
    pub host: String,
    /// Remote FC ports (targets on the fabric) the host sees.
    pub remote_ports: u64,
    pub luns: u64,
    /// A scan of this host has run past the timeout.
    pub hung: bool,
}

/// Policy reloads (SIGHUP) since start.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ReloadMetric {
    pub succeeded: u64,
    pub failed: u64,
    /// Whether the last reload was rejected; false before any reload.
    pub last_failed: bool,
    /// Unix time of the last reload attempt, if any.
    pub last_time: Option<f64>,
}

/// Everything the textfile shows, at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FleetSnapshot {
    pub vhbas: Vec<VhbaMetric>,
    pub hosts: Vec<HostMetric>,
    /// Scans written to hosts' scan attributes.
    pub scans_issued: u64,
    /// Durations of the scans that finished.
    pub scans: Histogram,
    /// Scan requests merged into one already queued.
    pub scans_merged: u64,
    /// vport_create failures by errno name (`EBUSY`, `ENOSPC`...).
    pub vport_create_failures: BTreeMap<String, u64>,
    /// LUNs found gone from their array, by what became of them (`removed`,
    /// `held`, `kept`, `failed`).
    pub luns_gone: BTreeMap<String, u64>,
    /// Gone LUNs still there against the policy's wish (held, or their delete
    /// failed), as last looked at.
    pub luns_gone_held: usize,
    /// Per event source (`kernel`, `udev`, `fc`...).
    pub sources: BTreeMap<String, CounterSnapshot>,
    /// Per optional event source: whether hbad is subscribed to it now. The FC
    /// transport events are optional (no SCSI netlink, or its reader ended: link
    /// changes are then polled), and their counters alone cannot tell an idle
    /// subscription from none.
    pub sources_up: BTreeMap<String, bool>,
    pub resyncs: u64,
    /// Log records journald or stderr did not take.
    pub log_records_dropped: u64,
    pub reloads: ReloadMetric,
    /// Unix time the agent started.
    pub started: f64,
}

/// The errno named in a kernel refusal's text (`... (EBUSY): ...`, as the
/// executor words them), for the `errno` label: names are stable across
/// architectures where numbers are not. `other` when the text names none (a
/// vHBA that never appeared, a rollback).
pub fn errno_in(text: &str) -> String {
    text.match_indices("(E")
        .find_map(|(at, _)| {
            let rest = &text[at + 1..];
            let end = rest.find(')')?;
            let name = &rest[..end];
            (name.len() <= 16
                && name.len() > 1
                && name
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()))
            .then(|| name.to_string())
        })
        .unwrap_or_else(|| "other".to_string())
}

/// What the agent tallies for the textfile beyond its status: scan durations,
/// refusals by errno, reloads, and the FC event source's counters.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tally {
    pub scans: Histogram,
    pub vport_create_failures: BTreeMap<String, u64>,
    pub luns_gone: BTreeMap<String, u64>,
    pub luns_gone_held: usize,
    pub reloads: ReloadMetric,
}

impl Tally {
    /// A vport_create the kernel refused (or that never produced its host).
    pub fn vport_create_failed(&mut self, error: &str) {
        // Bounded: errno names are a fixed set, `other` takes the rest.
        let key = errno_in(error);
        let n = self.vport_create_failures.entry(key).or_insert(0);
        *n = n.saturating_add(1);
    }

    /// A LUN its target stopped reporting; `fate` is one of a fixed few words.
    pub fn lun_gone(&mut self, fate: &'static str) {
        let n = self.luns_gone.entry(fate.to_string()).or_insert(0);
        *n = n.saturating_add(1);
    }

    pub fn reloaded(&mut self, ok: bool, at: std::time::SystemTime) {
        if ok {
            self.reloads.succeeded = self.reloads.succeeded.saturating_add(1);
        } else {
            self.reloads.failed = self.reloads.failed.saturating_add(1);
        }
        self.reloads.last_failed = !ok;
        self.reloads.last_time = at
            .duration_since(std::time::UNIX_EPOCH)
            .ok()
            .map(|d| d.as_secs_f64());
    }
}

/// Escapes a label value: backslash, double quote and line feed.
pub fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A float the way Prometheus writes one: integers without a fraction, no
/// exponent, `+Inf`/`-Inf`/`NaN` spelled as the format wants.
pub fn format_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

/// Writes one metric family at a time: HELP and TYPE once, then its samples.
struct Exposition {
    out: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Into<f64>) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", format_float(value.into()));
    }

    /// A family with one unlabelled sample.
    fn single(&mut self, name: &str, kind: &str, help: &str, value: impl Into<f64>) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

/// Counts as float samples: Prometheus stores every value as a float64, so counts
/// past 2^53 lose precision there anyway.
fn n(v: u64) -> f64 {
    v as f64
}

/// Renders the snapshot as a complete textfile.
pub fn render(s: &FleetSnapshot) -> String {
    let mut e = Exposition { out: String::new() };

    e.family(
        "hbad_build_info",
        "gauge",
        "hbad's version, always 1 (join on it for the version).",
    );
    e.sample(
        "hbad_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1.0,
    );
    e.single(
        "hbad_start_time_seconds",
        "gauge",
        "Unix time the agent started.",
        s.started,
    );

    e.family(
        "hbad_vhba_up",
        "gauge",
        "Whether the policy vHBA is active (1): its SCSI host exists and is logged into the fabric, or has no fabric to log into.",
    );
    for v in &s.vhbas {
        let labels = vhba_labels(v);
        e.sample("hbad_vhba_up", &labels, f64::from(v.state == "active"));
    }
    e.family(
        "hbad_vhba_state",
        "gauge",
        "The policy vHBA's state: 1 on the series of the current state.",
    );
    for v in &s.vhbas {
        for state in VHBA_STATES {
            let mut labels = vhba_labels(v);
            labels.push(("state", state));
            e.sample("hbad_vhba_state", &labels, f64::from(v.state == state));
        }
    }

    e.family(
        "hbad_host_remote_ports",
        "gauge",
        "Remote FC ports the SCSI host sees.",
    );
    for h in &s.hosts {
        e.sample(
            "hbad_host_remote_ports",
            &[("host", &h.host)],
            n(h.remote_ports),
        );
    }
    e.family(
        "hbad_host_luns",
        "gauge",
        "LUNs (SCSI devices) on the host.",
    );
    for h in &s.hosts {
        e.sample("hbad_host_luns", &[("host", &h.host)], n(h.luns));
    }
    e.family(
        "hbad_host_hung",
        "gauge",
        "Whether a scan of the host has run past the scan timeout.",
    );
    for h in &s.hosts {
        e.sample("hbad_host_hung", &[("host", &h.host)], f64::from(h.hung));
    }
    e.single(
        "hbad_hung_hosts",
        "gauge",
        "SCSI hosts with a scan past the scan timeout.",
        n(s.hosts.iter().filter(|h| h.hung).count() as u64),
    );

    e.single(
        "hbad_scans_total",
        "counter",
        "Scans written to a host's scan attribute.",
        n(s.scans_issued),
    );
    e.single(
        "hbad_scans_merged_total",
        "counter",
        "Scan requests merged into one already queued for the same host.",
        n(s.scans_merged),
    );
    e.family(
        "hbad_scan_duration_seconds",
        "histogram",
        "Time a scan write took in the kernel.",
    );
    for (le, count) in s.scans.cumulative() {
        e.sample(
            "hbad_scan_duration_seconds_bucket",
            &[("le", &le)],
            n(count),
        );
    }
    e.sample("hbad_scan_duration_seconds_sum", &[], s.scans.sum());
    e.sample("hbad_scan_duration_seconds_count", &[], n(s.scans.count()));

    e.family(
        "hbad_vport_create_failures_total",
        "counter",
        "vport_create writes the kernel refused, by errno.",
    );
    for (errno, count) in &s.vport_create_failures {
        e.sample(
            "hbad_vport_create_failures_total",
            &[("errno", errno)],
            n(*count),
        );
    }

    e.family(
        "hbad_luns_gone_total",
        "counter",
        "LUNs a target stopped reporting (unmapped on the array), by what hbad did: removed, held (in use, kept), kept (remove_gone off), failed. A LUN counts again only when its fate changes.",
    );
    for (fate, count) in &s.luns_gone {
        e.sample("hbad_luns_gone_total", &[("fate", fate)], n(*count));
    }

    e.family(
        "hbad_luns_gone_held",
        "gauge",
        "LUNs a target stopped reporting that are still there although remove_gone is on: held (in use) or their delete failed, as last looked at.",
    );
    e.sample("hbad_luns_gone_held", &[], n(s.luns_gone_held as u64));

    e.family(
        "hbad_event_source_up",
        "gauge",
        "1 while hbad is subscribed to an optional event source (fc: NETLINK_SCSITRANSPORT FC events), 0 when it is not and polls instead.",
    );
    for (source, up) in &s.sources_up {
        e.sample(
            "hbad_event_source_up",
            &[("source", source)],
            n(u64::from(*up)),
        );
    }

    e.family(
        "hbad_events_received_total",
        "counter",
        "Messages taken off an event source's socket.",
    );
    for (source, c) in &s.sources {
        e.sample(
            "hbad_events_received_total",
            &[("source", source)],
            n(c.received),
        );
    }
    e.family(
        "hbad_events_dropped_total",
        "counter",
        "Messages rejected by an event source: forged (not the kernel, not root) or malformed.",
    );
    for (source, c) in &s.sources {
        for (reason, count) in [
            ("not_kernel", c.rejected_not_kernel),
            ("not_root", c.rejected_not_root),
            ("no_credentials", c.rejected_no_credentials),
            ("malformed", c.rejected_malformed),
        ] {
            e.sample(
                "hbad_events_dropped_total",
                &[("source", source), ("reason", reason)],
                n(count),
            );
        }
    }
    e.family(
        "hbad_events_overflows_total",
        "counter",
        "Times a source's socket reported lost events (ENOBUFS); each one causes a resync.",
    );
    for (source, c) in &s.sources {
        e.sample(
            "hbad_events_overflows_total",
            &[("source", source)],
            n(c.overflows),
        );
    }
    e.single(
        "hbad_resyncs_total",
        "counter",
        "Full re-reads of sysfs after lost events.",
        n(s.resyncs),
    );
    e.single(
        "hbad_log_records_dropped_total",
        "counter",
        "Log records dropped because journald or stderr did not take them at once (the log says how many where they were lost).",
        n(s.log_records_dropped),
    );

    e.family(
        "hbad_policy_reloads_total",
        "counter",
        "Policy reloads (SIGHUP), by result.",
    );
    e.sample(
        "hbad_policy_reloads_total",
        &[("result", "success")],
        n(s.reloads.succeeded),
    );
    e.sample(
        "hbad_policy_reloads_total",
        &[("result", "failure")],
        n(s.reloads.failed),
    );
    e.single(
        "hbad_policy_last_reload_success",
        "gauge",
        "Whether the last policy reload was accepted (1 before any reload).",
        f64::from(!s.reloads.last_failed),
    );
    if let Some(t) = s.reloads.last_time {
        e.single(
            "hbad_policy_last_reload_timestamp_seconds",
            "gauge",
            "Unix time of the last policy reload attempt.",
            t,
        );
    }
    e.out
}

fn vhba_labels(v: &VhbaMetric) -> Vec<(&'static str, &str)> {
    vec![
        ("name", v.name.as_str()),
        ("wwpn", v.wwpn.as_str()),
        ("parent", v.parent.as_str()),
        ("fabric", v.fabric.as_str()),
    ]
}

/// Replaces the textfile atomically: a hidden sibling in the same directory (so
/// the rename stays on one filesystem, and node_exporter, which reads only
/// `*.prom`, never reads it), fsynced, then renamed over the file; only a regular
/// file (or nothing) at `path` is replaced ([`files::replace`]). The directory
/// must exist: it is node_exporter's, not hbad's.
pub fn write_textfile(path: &Path, text: &str) -> io::Result<()> {
    files::replace(path, text.as_bytes(), 0o644)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_end_in_inf() {
        let mut h = Histogram::default();
        for ms in [1, 7, 7, 400, 900_000] {
            h.observe(Duration::from_millis(ms));
        }
        let c = h.cumulative();
        assert_eq!(c[0], ("0.005".to_string(), 1));
        assert_eq!(c[1], ("0.01".to_string(), 3));
        assert_eq!(c[6], ("0.5".to_string(), 4));
        assert_eq!(c.last().unwrap(), &("+Inf".to_string(), 5));
        assert!(c.windows(2).all(|w| w[0].1 <= w[1].1));
        assert_eq!(h.count(), 5);
        assert!((h.sum() - 900.415).abs() < 1e-9);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(escape_label("fabric-a"), "fabric-a");
    }

    #[test]
    fn floats_are_written_as_prometheus_reads_them() {
        assert_eq!(format_float(1.0), "1");
        assert_eq!(format_float(0.25), "0.25");
        assert_eq!(format_float(f64::INFINITY), "+Inf");
        assert_eq!(format_float(f64::NAN), "NaN");
        assert_eq!(format_float(1.7e9), "1700000000");
    }

    #[test]
    fn errno_labels_are_the_names_in_the_refusal() {
        assert_eq!(
            errno_in("vport_create refused (ENOSPC): delete unused vHBAs"),
            "ENOSPC"
        );
        assert_eq!(
            errno_in("parent host7 (Example) refused (EBUSY): retry"),
            "EBUSY"
        );
        assert_eq!(
            errno_in("no host appeared within 30 s (EVEN LONGER)"),
            "other"
        );
        assert_eq!(errno_in("(E"), "other");
        let mut t = Tally::default();
        t.vport_create_failed("x (EINVAL): y");
        t.vport_create_failed("x (EINVAL): y");
        t.vport_create_failed("rolled back");
        assert_eq!(t.vport_create_failures["EINVAL"], 2);
        assert_eq!(t.vport_create_failures["other"], 1);
        t.reloaded(false, std::time::UNIX_EPOCH + Duration::from_secs(5));
        assert_eq!((t.reloads.failed, t.reloads.last_failed), (1, true));
        assert_eq!(t.reloads.last_time, Some(5.0));
    }

    #[test]
    fn textfile_is_replaced_whole_and_leaves_no_temporary() {
        use std::fs;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hbad.prom");
        write_textfile(&path, "a 1\n").unwrap();
        write_textfile(&path, "a 2\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "a 2\n");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["hbad.prom"]);
        let missing = dir.path().join("no/such/dir/hbad.prom");
        assert!(write_textfile(&missing, "x").is_err());
    }
}
