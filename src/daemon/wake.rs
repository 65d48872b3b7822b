//! When the agent has to look again at something no event announces.
//!
//! Most of what hbad acts on is announced: uevents for devices coming and going and
//! for unit attentions, FC transport events for link changes on drivers that post
//! them (qla2xxx, lpfc, zfcp, ibmvfc). What is not announced is state that changes
//! in place: an FC port's `port_state`, a vport's `vport_state`, a remote port going
//! Blocked and Online again (libfc posts none of these). Polling it all every second
//! wakes a quiet host ~130 times a minute for nothing, so hbad polls only the devices
//! that wait on such a change, each for as long as it waits:
//!
//! - a remote port that is not Online (Blocked after a path loss, Marginal...): its
//!   return calls for a scan of its target;
//! - a vHBA host that is not Online, or its vport that is not Active: a vHBA logging
//!   in (and, past the login wait, one refused or down, until it is back);
//! - a vport read with no name: the kernel sends its `add` before it makes its
//!   attributes, and announces them with nothing;
//! - a declared vHBA's parent whose link is down (added by the agent, which knows the
//!   waits): the vHBA is made when it comes up;
//! - a declared vHBA's login (two attributes), while it is there, when nothing would
//!   announce its loss: no FC event source, or a parent on a driver that posts no
//!   link events (libfc's fcoe, bnx2fc, qedf). On qla2xxx, lpfc, zfcp and ibmvfc the
//!   link events re-read the host and what it waits on is watched from then on.
//!
//! A remote port `Not Present` waits on nothing: the kernel adds its target again
//! (with uevents) when the port returns. A vport with `No Fabric Support` has no
//! login to wait for.
//!
//! What turns silently from healthy to waiting (a path lost on a driver that posts
//! no event) is found by the sweep the loop runs with its status heartbeat
//! ([`HEARTBEAT`]), from which on it is polled.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::graph::{Change, Devpath, Graph, Node, NodeKind};

/// How often a live agent rewrites its status file though nothing changed (its
/// `updated` is the proof of life `hbad status --max-age` checks), and re-reads
/// every FC port, vport and remote port in case one changed with no event. With
/// the unit's `WatchdogSec=60s`, the watchdog's ping comes at the same rate and
/// the two share a wake-up.
pub const HEARTBEAT: Duration = Duration::from_secs(30);

/// The devices polled because they wait on a change nothing announces, by devpath.
/// Kept from the graph's changes (work proportional to what changed), rebuilt
/// from the whole graph only by a sweep.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Watched {
    devpaths: BTreeSet<Devpath>,
}

impl Watched {
    /// Every device of the graph that waits on a change.
    pub fn of(graph: &Graph) -> Watched {
        let devpaths = fc_nodes(graph)
            .into_iter()
            .filter(|n| waits_on_change(graph, n))
            .map(|n| n.devpath.clone())
            .collect();
        Watched { devpaths }
    }

    /// Follows the graph's changes: a device that now waits is watched, one that
    /// no longer does (or is gone) is not.
    pub fn track(&mut self, graph: &Graph, changes: &[Change]) {
        for change in changes {
            let devpath = match change {
                Change::Added { node }
                | Change::Updated { node, .. }
                | Change::Removed { node } => &node.devpath,
                // A move or a notice changes no port state.
                Change::Moved { .. } | Change::Notice { .. } => continue,
            };
            self.recheck(graph, devpath);
        }
    }

    /// Watches `devpath` when its device waits on a change now, else drops it.
    pub fn recheck(&mut self, graph: &Graph, devpath: &str) {
        match graph.node(devpath) {
            Some(node) if waits_on_change(graph, node) => {
                self.devpaths.insert(node.devpath.clone());
            }
            _ => {
                self.devpaths.remove(devpath);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.devpaths.is_empty()
    }

    pub fn len(&self) -> usize {
        self.devpaths.len()
    }

    pub fn devpaths(&self) -> impl Iterator<Item = &Devpath> {
        self.devpaths.iter()
    }
}

/// Every FC host, vport and remote port: what changes with no event. Found from
/// the hosts down (a host's vports and remote ports are its children), so that a
/// sweep costs the size of the fabric, not the number of LUNs.
pub fn fc_nodes(graph: &Graph) -> Vec<&Node> {
    let mut out = Vec::new();
    for host in graph.hosts() {
        if matches!(&host.kind, NodeKind::Host(h) if h.fc.is_some()) {
            out.push(host);
        }
        out.extend(
            graph
                .children(host)
                .filter(|c| matches!(c.kind, NodeKind::Vport(_) | NodeKind::RemotePort(_))),
        );
    }
    out
}

/// Is `devpath` the device `top` or one below it (`host2` is not below `host20`)?
pub fn at_or_below(devpath: &str, top: &str) -> bool {
    devpath
        .strip_prefix(top)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Does this device wait on a change that no event announces?
pub fn waits_on_change(graph: &Graph, node: &Node) -> bool {
    match &node.kind {
        NodeKind::RemotePort(r) => {
            !matches!(r.port_state.as_deref(), Some("Online" | "Not Present"))
        }
        // No WWPN: read between the kernel's `add` and its making the attributes
        // (nothing announces them); polled until it is read whole.
        NodeKind::Vport(v) => v.wwpn.is_none() || !vport_settled(v.vport_state.as_deref()),
        NodeKind::Host(h) if graph.is_vhba(node) => {
            let online = h.fc.as_ref().and_then(|f| f.port_state.as_deref()) == Some("Online");
            let no_fabric = graph.vport_of_vhba(node).is_some_and(|v| match &v.kind {
                NodeKind::Vport(v) => v.vport_state.as_deref() == Some("No Fabric Support"),
                _ => false,
            });
            !online && !no_fabric
        }
        _ => false,
    }
}

/// A vport logged in, or with no fabric to log into; a kernel that shows no
/// `vport_state` gives nothing to wait for.
fn vport_settled(state: Option<&str>) -> bool {
    matches!(
        state.map(str::trim),
        None | Some("Active" | "No Fabric Support")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::demo::{spec, HBA_A_WWPN};
    use crate::sim::Sim;

    fn remote_ports(graph: &Graph) -> Vec<String> {
        graph
            .of_kind(|k| matches!(k, NodeKind::RemotePort(_)))
            .into_iter()
            .map(|n| n.devpath.to_string())
            .collect()
    }

    #[test]
    fn fc_nodes_are_every_fc_host_vport_and_remote_port() {
        use crate::sysfs::writes::{vport_text, AttrWriter};
        use crate::sysfs::VportControlDir;
        let dir = tempfile::tempdir().unwrap();
        let sim = Sim::new(dir.path(), &spec()).unwrap();
        let parent = sim
            .host_devpath(sim.host_by_wwpn(HBA_A_WWPN).unwrap())
            .unwrap();
        let wwpn = crate::wwn::Wwn::from_u64(0x5001_a4a0_0000_0a01);
        let wwnn = crate::wwn::Wwn::from_u64(0x5001_a4a0_0000_0a00);
        sim.write_attr(
            &sim.sysfs()
                .vport_create_path(&parent, VportControlDir::FcHost),
            &vport_text(wwpn, wwnn),
        )
        .unwrap();
        let graph = Graph::load(&sim.sysfs());
        let mut found: Vec<&str> = fc_nodes(&graph)
            .iter()
            .map(|n| n.devpath.as_str())
            .collect();
        found.sort_unstable();
        let all: Vec<&str> = graph
            .of_kind(|k| {
                matches!(k, NodeKind::Host(h) if h.fc.is_some())
                    || matches!(k, NodeKind::Vport(_) | NodeKind::RemotePort(_))
            })
            .iter()
            .map(|n| n.devpath.as_str())
            .collect();
        assert_eq!(found, all);
        assert!(found.iter().any(|d| d.contains("/vport-")), "{found:?}");
        assert!(found.iter().any(|d| d.contains("/rport-")), "{found:?}");
    }

    #[test]
    fn a_healthy_host_waits_on_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let sim = Sim::new(dir.path(), &spec()).unwrap();
        let graph = Graph::load(&sim.sysfs());
        assert!(!remote_ports(&graph).is_empty());
        assert!(Watched::of(&graph).is_empty(), "{:?}", Watched::of(&graph));
    }

    #[test]
    fn a_lost_link_is_watched_until_it_returns() {
        let dir = tempfile::tempdir().unwrap();
        let sim = Sim::new(dir.path(), &spec()).unwrap();
        let sysfs = sim.sysfs();
        let mut graph = Graph::load(&sysfs);
        let mut watched = Watched::of(&graph);
        let host = sim.host_by_wwpn(HBA_A_WWPN).unwrap();

        // The link goes: its remote ports turn Blocked with no event; a refresh
        // (the sweep's) sees it and from then on they are watched.
        sim.set_link(host, false).unwrap();
        let under = sim.host_devpath(host).unwrap();
        let ports: Vec<String> = remote_ports(&graph)
            .into_iter()
            .filter(|d| d.starts_with(&under))
            .collect();
        assert!(!ports.is_empty());
        for p in &ports {
            let changes = graph.refresh(p, &sysfs);
            watched.track(&graph, &changes);
        }
        assert_eq!(watched, Watched::of(&graph));
        assert_eq!(watched.len(), ports.len(), "{watched:?}");

        // Back: Online again, watched no more.
        sim.set_link(host, true).unwrap();
        for p in &ports {
            let changes = graph.refresh(p, &sysfs);
            watched.track(&graph, &changes);
        }
        assert!(watched.is_empty(), "{watched:?}");
    }

    #[test]
    fn below_means_below_a_path_component() {
        let h2 = "/devices/pci0000:00/host2";
        assert!(at_or_below(h2, h2));
        assert!(at_or_below(&format!("{h2}/rport-2:0-0"), h2));
        assert!(!at_or_below("/devices/pci0000:00/host20", h2));
        assert!(!at_or_below("/devices/pci0000:00", h2));
    }

    #[test]
    fn a_vport_is_settled_when_logged_in_or_without_a_fabric() {
        for s in ["Active", "No Fabric Support", " Active\n"] {
            assert!(vport_settled(Some(s)), "{s}");
        }
        assert!(vport_settled(None));
        for s in [
            "Initializing",
            "Linkdown",
            "Fabric Rejected WWN",
            "Disabled",
        ] {
            assert!(!vport_settled(Some(s)), "{s}");
        }
    }
}
