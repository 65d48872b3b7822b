//! `watch`: live, typed events as the graph sees them.
//!
//! The graph is loaded from sysfs, then every item a source yields goes through
//! [`follow`]: events are applied and the changes they make are printed, described
//! for people ([`crate::graph::describe::describe`]) or as one JSON object per line.
//! Without `--replay` the source is the kernel's uevent socket (only messages from
//! the kernel itself are taken); with it, a file of captured events.

use std::borrow::Cow;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use serde::Serialize;

use super::policy::load_graph;
use super::Global;
use crate::graph::describe::describe;
use crate::graph::{Change, Graph, NodeRecord, Notice};
use crate::sysfs::Sysfs;
use crate::uevent::kernel::{KernelOptions, KernelSource};
use crate::uevent::{replay, Action, SourceItem, Uevent};

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Read events from a replay file (4-byte little-endian length + kernel datagram
    /// per record, as in the kernel capture) instead of the kernel. A regular file
    /// of at most 256 MiB, each record at most 8192 bytes (the longest uevent the
    /// kernel sends); a FIFO or a device is refused.
    #[arg(long, value_name = "FILE")]
    pub replay: Option<PathBuf>,
    /// With --replay: read the attributes of devices the events name from this sysfs
    /// tree (a capture's after/ tree) instead of --sysfs-root, which the graph is
    /// loaded from.
    #[arg(long, value_name = "DIR", requires = "replay")]
    pub event_sysfs: Option<PathBuf>,
    /// Also print changes that say nothing new to a person (targets appearing,
    /// npiv_vports_inuse moving with a vport), as `(devpath: kind of change)`.
    #[arg(long)]
    pub all: bool,
}

/// How [`follow`] prints.
#[derive(Clone, Copy, Debug, Default)]
pub struct FollowOptions {
    pub json: bool,
    pub all: bool,
}

/// What [`follow`] saw, for the closing summary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FollowStats {
    pub events: usize,
    pub changes: usize,
    pub described: usize,
    pub rejected: usize,
    pub resyncs: usize,
}

/// One line of `hbad watch --json`.
#[derive(Debug, Serialize)]
struct ChangeLine<'a> {
    seqnum: Option<u64>,
    action: Option<Action>,
    devpath: Option<&'a str>,
    subsystem: Option<&'a str>,
    /// Why the change came without an event: `overflow` (resync after lost events).
    cause: &'static str,
    change: ChangeJson<'a>,
    description: Option<String>,
}

/// A change as `hbad watch --json` shows it: a notice with its device's record
/// as the graph holds it (the change itself only names the device).
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum ChangeJson<'a> {
    Change(&'a Change),
    Notice {
        change: &'static str,
        node: NodeRecord,
        notice: &'a Notice,
    },
}

impl<'a> ChangeJson<'a> {
    fn of(change: &'a Change, graph: &Graph) -> Self {
        match change {
            Change::Notice { node, notice } => match graph.node(&node.devpath()) {
                Some(n) => ChangeJson::Notice {
                    change: "notice",
                    node: graph.record(n),
                    notice,
                },
                None => ChangeJson::Change(change),
            },
            _ => ChangeJson::Change(change),
        }
    }
}

#[derive(Debug, Serialize)]
struct RejectedLine {
    rejected: String,
}

fn change_kind(change: &Change) -> &'static str {
    match change {
        Change::Added { .. } => "added",
        Change::Removed { .. } => "removed",
        Change::Updated { .. } => "updated",
        Change::Moved { .. } => "moved",
        Change::Notice { .. } => "notice",
    }
}

fn print_changes(
    out: &mut impl Write,
    graph: &Graph,
    event: Option<&Uevent>,
    changes: &[Change],
    opts: FollowOptions,
    stats: &mut FollowStats,
) -> io::Result<()> {
    for change in changes {
        stats.changes += 1;
        let description = describe(change, graph);
        if description.is_some() {
            stats.described += 1;
        }
        if opts.json {
            let line = ChangeLine {
                seqnum: event.and_then(|e| e.seqnum),
                action: event.map(|e| e.action),
                devpath: event.map(|e| e.devpath.as_str()),
                subsystem: event.map(|e| e.subsystem.as_str()),
                cause: if event.is_some() { "event" } else { "overflow" },
                change: ChangeJson::of(change, graph),
                description,
            };
            serde_json::to_writer(&mut *out, &line)?;
            writeln!(out)?;
            continue;
        }
        let seq = match event.and_then(|e| e.seqnum) {
            Some(s) => s.to_string(),
            None if event.is_none() => "resync".to_string(),
            None => "-".to_string(),
        };
        match description {
            Some(text) => writeln!(out, "{seq:>6}  {text}")?,
            None if opts.all => {
                let devpath = change.devpath().unwrap_or(Cow::Borrowed("-"));
                writeln!(out, "{seq:>6}  ({devpath}: {})", change_kind(change))?
            }
            None => {}
        }
    }
    Ok(())
}

/// The event loop of `hbad watch`: applies each item a source yields to the graph
/// and prints what changed, from any source: the kernel's socket or a replay file. Lost events
/// (`Overflow`) are repaired the only correct way, by reloading sysfs and printing
/// the difference; rejected messages are reported and otherwise ignored.
pub fn follow(
    graph: &mut Graph,
    sysfs: &Sysfs,
    items: impl IntoIterator<Item = SourceItem>,
    out: &mut impl Write,
    opts: FollowOptions,
) -> io::Result<FollowStats> {
    let mut stats = FollowStats::default();
    for item in items {
        match item {
            SourceItem::Event(ev) => {
                stats.events += 1;
                let changes = graph.apply(&ev, sysfs);
                print_changes(out, graph, Some(&ev), &changes, opts, &mut stats)?;
            }
            SourceItem::Overflow => {
                stats.resyncs += 1;
                let fresh = Graph::load(sysfs);
                let changes = Graph::diff(graph, &fresh);
                *graph = fresh;
                if !opts.json {
                    writeln!(
                        out,
                        "resync  events were lost; reloaded the graph from sysfs"
                    )?;
                }
                print_changes(out, graph, None, &changes, opts, &mut stats)?;
            }
            SourceItem::Rejected(why) => {
                stats.rejected += 1;
                if opts.json {
                    serde_json::to_writer(
                        &mut *out,
                        &RejectedLine {
                            rejected: why.to_string(),
                        },
                    )?;
                    writeln!(out)?;
                } else {
                    writeln!(out, "     -  ignored a message: {why}")?;
                }
            }
        }
        out.flush()?;
    }
    Ok(stats)
}

pub fn run(g: &Global, args: WatchArgs) -> anyhow::Result<ExitCode> {
    let opts = FollowOptions {
        json: g.json,
        all: args.all,
    };
    let Some(path) = args.replay else {
        // The socket before the cold plug: what happens while sysfs is read is
        // queued, not missed.
        let source = KernelSource::open(&KernelOptions::default())
            .context("cannot open the kernel uevent socket")?;
        let mut graph = load_graph(g)?;
        if !g.json {
            eprintln!(
                "watching kernel events ({} devices now); Ctrl-C to stop",
                graph.len()
            );
        }
        let items = source.map_while(|r| {
            r.map_err(|e| eprintln!("error: the kernel uevent socket failed: {e}"))
                .ok()
        });
        let sysfs = g.sysfs();
        let mut out = io::stdout().lock();
        return finish(
            follow(&mut graph, &sysfs, items, &mut out, opts),
            g.json,
            "watched",
        );
    };
    let mut graph = load_graph(g)?;
    let events =
        replay::read_file(&path).with_context(|| format!("cannot replay {}", path.display()))?;
    let sysfs = match &args.event_sysfs {
        Some(dir) => Sysfs::new(dir, &g.dev_root),
        None => g.sysfs(),
    };
    let mut out = io::stdout().lock();
    let result = follow(
        &mut graph,
        &sysfs,
        events.into_iter().map(SourceItem::Event),
        &mut out,
        opts,
    );
    finish(result, g.json, "replayed")
}

fn finish(result: io::Result<FollowStats>, json: bool, verb: &str) -> anyhow::Result<ExitCode> {
    match result {
        Ok(stats) => {
            if !json {
                eprintln!(
                    "{verb} {} events: {} changes, {} described",
                    stats.events, stats.changes, stats.described
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        // Whoever read our output stopped reading (`| head`): not an error.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(e).context("cannot write to stdout"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{Host, NodeKind};
    use crate::sysfs::{LunInfo, ScsiHostInfo, TargetInfo};
    use crate::uevent::Rejection;

    const HOST: &str = "/devices/pseudo_0/adapter0/host2";

    fn small_graph() -> Graph {
        let mut g = Graph::new();
        g.insert(
            HOST.into(),
            NodeKind::Host(Box::new(Host {
                scsi: ScsiHostInfo {
                    number: 2,
                    proc_name: Some("scsi_debug".into()),
                    unique_id: None,
                    state: None,
                },
                fc: None,
            })),
        );
        g.insert(
            format!("{HOST}/target2:0:0"),
            NodeKind::Target(TargetInfo {
                name: "target2:0:0".into(),
                host: 2,
                channel: 0,
                id: 0,
            }),
        );
        for lun in ["2:0:0:0", "2:0:0:1"] {
            g.insert(
                format!("{HOST}/target2:0:0/{lun}"),
                NodeKind::Lun(
                    LunInfo {
                        vendor: Some("Linux".into()),
                        model: Some("scsi_debug".into()),
                        scsi_type: Some(0),
                        state: Some("running".into()),
                        ..LunInfo::at(lun.parse().unwrap())
                    }
                    .into(),
                ),
            );
        }
        g
    }

    fn items() -> Vec<SourceItem> {
        let lun0 = format!("{HOST}/target2:0:0/2:0:0:0");
        let lun1 = format!("{HOST}/target2:0:0/2:0:0:1");
        let mut ua = Uevent::new(Action::Change, &lun0, "scsi")
            .with_devtype("scsi_device")
            .with_prop("SDEV_UA", "REPORTED_LUNS_DATA_HAS_CHANGED");
        ua.seqnum = Some(41);
        let mut gone = Uevent::new(Action::Remove, &lun1, "scsi").with_devtype("scsi_device");
        gone.seqnum = Some(42);
        vec![
            SourceItem::Rejected(Rejection::NotKernel(4242)),
            SourceItem::Event(ua),
            SourceItem::Event(gone),
        ]
    }

    /// A sysfs tree holding what `small_graph` says about 2:0:0:0, so re-reading it
    /// on its `change` event finds it unchanged.
    fn lun0_sysfs() -> (tempfile::TempDir, Sysfs) {
        let dir = tempfile::tempdir().unwrap();
        let lun = dir
            .path()
            .join(format!("{}/target2:0:0/2:0:0:0", &HOST[1..]));
        std::fs::create_dir_all(&lun).unwrap();
        for (attr, value) in [
            ("vendor", "Linux   \n"),
            ("model", "scsi_debug      \n"),
            ("type", "0\n"),
            ("state", "running\n"),
        ] {
            std::fs::write(lun.join(attr), value).unwrap();
        }
        let sysfs = Sysfs::new(dir.path(), "/nonexistent-hbad-dev");
        (dir, sysfs)
    }

    fn run_follow(g: &mut Graph, items: Vec<SourceItem>, json: bool) -> (String, FollowStats) {
        let (_dir, sysfs) = lun0_sysfs();
        let mut out = Vec::new();
        let opts = FollowOptions { json, all: false };
        let stats = follow(g, &sysfs, items, &mut out, opts).unwrap();
        (String::from_utf8(out).unwrap(), stats)
    }

    #[test]
    fn follow_prints_described_changes_with_seqnums() {
        let mut g = small_graph();
        let (text, stats) = run_follow(&mut g, items(), false);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "     -  ignored a message: forged: sent by portid 4242, not the kernel",
                "    41  unit attention REPORTED_LUNS_DATA_HAS_CHANGED from 2:0:0:0",
                "    42  LUN 2:0:0:1 removed",
            ]
        );
        assert_eq!(stats.rejected, 1);
        assert_eq!(stats.events, 2);
        assert!(g.lun("2:0:0:1".parse().unwrap()).is_none());
    }

    #[test]
    fn follow_json_is_one_object_per_line_with_change_and_description() {
        let mut g = small_graph();
        let (text, _) = run_follow(&mut g, items(), true);
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0]["rejected"].as_str().unwrap().contains("4242"));
        assert_eq!(lines[1]["seqnum"], 41);
        assert_eq!(lines[1]["change"]["change"], "notice");
        assert_eq!(
            lines[1]["change"]["notice"]["reason"],
            "REPORTED_LUNS_DATA_HAS_CHANGED"
        );
        assert_eq!(lines[2]["description"], "LUN 2:0:0:1 removed");
        assert_eq!(
            lines[2]["change"]["node"]["devpath"],
            format!("{HOST}/target2:0:0/2:0:0:1")
        );
    }

    #[test]
    fn overflow_resyncs_from_sysfs_and_prints_the_difference() {
        // sysfs no longer lists host2 in its classes: the resync removes it all.
        let mut g = small_graph();
        let (text, stats) = run_follow(&mut g, vec![SourceItem::Overflow], false);
        assert_eq!(stats.resyncs, 1);
        assert!(g.is_empty());
        assert!(text.starts_with("resync  events were lost"), "{text}");
        assert!(text.contains("resync  LUN 2:0:0:0 removed"), "{text}");
        assert!(text.contains("resync  host host2 removed"), "{text}");
    }
}
