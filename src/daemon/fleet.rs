//! What the agent shows the fleet's monitoring: the node_exporter textfile
//! ([`crate::metrics`]) built from its status, its graph and its tallies, and the
//! FC transport events that feed it.
//!
//! The file is rewritten only when its text changes, so a quiet agent does not
//! touch the disk; it is rendered whenever the status file is.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::SystemTime;

use tokio::sync::mpsc;

use crate::graph::{Graph, NodeKind};
use crate::metrics::{self, FleetSnapshot, HostMetric, Tally, VhbaMetric};
use crate::uevent::fc_event::FcItem;
use crate::uevent::source::{CounterSnapshot, SourceCounters};

use super::status::Status;

#[derive(Debug, Default)]
pub struct Fleet {
    pub tally: Tally,
    /// The FC transport event source's counters (zero when there is none).
    pub fc: SourceCounters,
    path: Option<PathBuf>,
    /// The text last written, to skip writes that change nothing.
    last: Mutex<Option<String>>,
    fc_events: Option<mpsc::Receiver<FcItem>>,
    /// Whether the FC event socket is bound and its reader alive.
    fc_up: bool,
}

impl Fleet {
    pub fn set_path(&mut self, path: Option<PathBuf>) {
        self.path = path;
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    pub fn enabled(&self) -> bool {
        self.path.is_some()
    }

    pub fn attach_fc_events(&mut self, rx: mpsc::Receiver<FcItem>) {
        self.fc_events = Some(rx);
        self.fc_up = true;
    }

    /// The FC event reader ended (its socket failed): no more events will come.
    pub fn fc_events_ended(&mut self) {
        self.fc_up = false;
    }

    pub fn take_fc_events(&mut self) -> Option<mpsc::Receiver<FcItem>> {
        self.fc_events.take()
    }

    /// Renders the textfile and replaces it when its text changed.
    pub fn write(&self, snapshot: &FleetSnapshot) {
        let Some(path) = &self.path else {
            return;
        };
        let text = metrics::render(snapshot);
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.as_deref() == Some(text.as_str()) {
            return;
        }
        match metrics::write_textfile(path, &text) {
            Ok(()) => *last = Some(text),
            Err(e) => tracing::warn!("cannot write the metrics file {}: {e}", path.display()),
        }
    }
}

/// The snapshot the textfile shows: vHBAs from the status, ports and LUNs per
/// host from the graph, counts from the tallies.
pub fn snapshot(
    graph: &Graph,
    status: &Status,
    fleet: &Fleet,
    uevents: CounterSnapshot,
    started: SystemTime,
) -> FleetSnapshot {
    let fabric_of = |host: &str| -> String {
        crate::sysfs::host_number(host)
            .and_then(|n| graph.host(n))
            .and_then(|h| match &h.kind {
                NodeKind::Host(h) => h.fc.as_ref()?.fabric_name,
                _ => None,
            })
            .map(|w| w.to_string())
            .unwrap_or_default()
    };
    let vhbas = status
        .vhbas
        .iter()
        .map(|v| VhbaMetric {
            name: v.name.clone(),
            wwpn: v.wwpn.clone(),
            parent: v.parent.clone().unwrap_or_default(),
            fabric: v.parent.as_deref().map(fabric_of).unwrap_or_default(),
            state: v.state.clone(),
        })
        .collect();
    let mut hosts: Vec<HostMetric> = graph
        .hosts()
        .into_iter()
        .map(|h| HostMetric {
            host: h.name().to_string(),
            hung: status.hung.iter().any(|x| x == h.name()),
            ..Default::default()
        })
        .collect();
    for node in graph.of_kind(|k| matches!(k, NodeKind::RemotePort(_) | NodeKind::Lun(_))) {
        let Some(host) = graph.host_of(node) else {
            continue;
        };
        if let Some(m) = hosts.iter_mut().find(|m| m.host == host.name()) {
            match node.kind {
                NodeKind::RemotePort(_) => m.remote_ports += 1,
                _ => m.luns += 1,
            }
        }
    }
    let mut sources = std::collections::BTreeMap::new();
    sources.insert("kernel".to_string(), uevents);
    sources.insert("fc".to_string(), fleet.fc.snapshot());
    let sources_up = std::collections::BTreeMap::from([("fc".to_string(), fleet.fc_up)]);
    FleetSnapshot {
        vhbas,
        hosts,
        scans_issued: status.counters.scans,
        scans: fleet.tally.scans.clone(),
        scans_merged: status.counters.merged,
        vport_create_failures: fleet.tally.vport_create_failures.clone(),
        luns_gone: fleet.tally.luns_gone.clone(),
        luns_gone_held: fleet.tally.luns_gone_held,
        sources,
        sources_up,
        resyncs: status.counters.resyncs,
        log_records_dropped: status.counters.log_records_dropped,
        reloads: fleet.tally.reloads,
        started: started
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64()),
    }
}
