//! Graph changes as one line for people: the daemon's journal and `hbad watch`.
//!
//! A line names devices the way an administrator looks for them: LUNs by number and
//! H:C:T:L, FC ports by WWPN, vHBAs by host and by the name hbad gave them. Changes
//! that only restate what another line already says (a target appearing before its
//! LUNs, a host's `npiv_vports_inuse` moving with a vport) give `None`.
//!
//! A change may describe a device that is no longer in the graph (a removal), so
//! every line is built from the change's own copy of the node first and uses the
//! graph only to add context it can still find.

use super::{Change, Graph, Node, NodeKind, NodeRecord, Notice, Noticed};
use crate::ownership::OWNER_PREFIX;
use crate::sysfs::{devpath_name, parent_devpath, port_address, FcHostInfo, VportInfo};

/// One line for a change, or `None` when it is noise to a person.
pub fn describe(change: &Change, graph: &Graph) -> Option<String> {
    match change {
        Change::Added { node } => added(node, graph),
        Change::Removed { node } => removed(node),
        Change::Updated { before, node } => updated(before, node, graph),
        Change::Moved { from, to } => Some(format!("device {from} moved to {to}")),
        Change::Notice { node, notice } => Some(noticed(node, notice, graph)),
    }
}

/// The name hbad gave a vHBA, from the mark it leaves in the vport's symbolic_name.
pub fn vhba_name(vport: &VportInfo) -> Option<&str> {
    vport
        .symbolic_name
        .as_deref()?
        .strip_prefix(OWNER_PREFIX)
        .filter(|n| !n.is_empty())
}

/// Sizes as `lsblk` readers expect them: binary units, one decimal.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The host number a devpath sits under, read from the names in it, for devices that
/// are already gone from the graph.
fn host_name_in(devpath: &str) -> Option<&str> {
    devpath
        .rsplit('/')
        .find(|c| crate::sysfs::host_number(c).is_some())
}

/// The physical host a vport hangs off, by graph or, failing that, by its name
/// (`vport-P:0-K` is made on host P).
fn vport_parent_name(vport_devpath: &str, graph: &Graph) -> String {
    if let Some(p) = graph
        .node(vport_devpath)
        .and_then(|v| graph.vport_parent_host(v))
    {
        return p.name().to_string();
    }
    match port_address(devpath_name(vport_devpath), "vport-") {
        Some((host, _, _)) => format!("host{host}"),
        None => "its parent".to_string(),
    }
}

/// For a vHBA: its vport (from the graph, else from the change's parent devpath).
fn vport_above<'g>(host: &NodeRecord, graph: &'g Graph) -> Option<&'g Node> {
    if let Some(v) = graph
        .node(&host.devpath)
        .and_then(|h| graph.vport_of_vhba(h))
    {
        return Some(v);
    }
    let parent = host.parent.as_deref()?;
    match graph.node(parent) {
        Some(
            n @ Node {
                kind: NodeKind::Vport(_),
                ..
            },
        ) => Some(n),
        _ => None,
    }
}

fn is_vhba_path(devpath: &str) -> bool {
    parent_devpath(devpath)
        .map(devpath_name)
        .is_some_and(|p| port_address(p, "vport-").is_some())
}

fn wwpn_of(fc: Option<&FcHostInfo>) -> Option<String> {
    fc.and_then(|f| f.wwpn).map(|w| w.to_string())
}

fn added(node: &NodeRecord, graph: &Graph) -> Option<String> {
    let name = node.name();
    match &node.kind {
        NodeKind::Host(h) => {
            if is_vhba_path(&node.devpath) {
                let vport = vport_above(node, graph);
                let parent = vport
                    .as_ref()
                    .map(|v| vport_parent_name(&v.devpath, graph))
                    .or_else(|| {
                        parent_devpath(&node.devpath)
                            .and_then(|v| port_address(devpath_name(v), "vport-"))
                            .map(|(p, _, _)| format!("host{p}"))
                    })
                    .unwrap_or_else(|| "its parent".into());
                let named = vport
                    .as_ref()
                    .and_then(|v| match &v.kind {
                        NodeKind::Vport(vi) => vhba_name(vi).map(|n| format!(" as {n}")),
                        _ => None,
                    })
                    .unwrap_or_default();
                // The vport has the WWPN before the vHBA's fc_host exists.
                let wwpn = wwpn_of(h.fc.as_ref()).or_else(|| match vport.map(|v| &v.kind) {
                    Some(NodeKind::Vport(vi)) => vi.wwpn.map(|w| w.to_string()),
                    _ => None,
                });
                let wwpn = wwpn.map(|w| format!(" (WWPN {w})")).unwrap_or_default();
                Some(format!("vHBA {name} created on {parent}{named}{wwpn}"))
            } else {
                // proc_name is unknown when the host is already gone from sysfs.
                let driver = h.scsi.proc_name.as_deref();
                Some(match (wwpn_of(h.fc.as_ref()), driver) {
                    (Some(w), Some(d)) => format!("FC host {name} added ({d}, WWPN {w})"),
                    (Some(w), None) => format!("FC host {name} added (WWPN {w})"),
                    (None, Some(d)) => format!("SCSI host {name} added ({d})"),
                    (None, None) => format!("SCSI host {name} added"),
                })
            }
        }
        NodeKind::Vport(v) => {
            let parent = vport_parent_name(&node.devpath, graph);
            let wwpn = v.wwpn.map(|w| format!(" (WWPN {w})")).unwrap_or_default();
            Some(format!("vport {name} created on {parent}{wwpn}"))
        }
        NodeKind::RemotePort(r) => {
            let host = host_name_in(&node.devpath).unwrap_or("an unknown host");
            let port = r
                .wwpn
                .map(|w| w.to_string())
                .unwrap_or_else(|| name.to_string());
            let state = match r.port_state.as_deref() {
                Some("Online") => "online".to_string(),
                Some(s) => format!("appeared ({s})"),
                None => "appeared".to_string(),
            };
            let roles = if r.roles.is_empty() {
                String::new()
            } else {
                format!(" as {}", r.roles.join(", "))
            };
            Some(format!("remote port {port} {state} on {host}{roles}"))
        }
        // Its LUNs follow, each with a line that names the target.
        NodeKind::Target(_) => None,
        NodeKind::Lun(l) => {
            let host = format!("host{}", l.hctl.host);
            let what = [l.vendor.as_deref(), l.model.as_deref()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" ");
            let what = if what.is_empty() {
                format!("{}", l.hctl)
            } else {
                format!("{}, {what}", l.hctl)
            };
            let via = graph
                .node(&node.devpath)
                .map(|n| via(n, graph))
                .unwrap_or_default();
            Some(format!("new LUN {} ({what}) on {host}{via}", l.hctl.lun))
        }
        NodeKind::Disk(d) => {
            let lun = parent_devpath(&node.devpath)
                .and_then(parent_devpath)
                .map(devpath_name)
                .unwrap_or("?");
            let size = d
                .info
                .size_bytes
                .map(|b| format!(", {}", human_size(b)))
                .unwrap_or_default();
            Some(format!("disk /dev/{name} on {lun}{size}"))
        }
    }
}

/// ` via target 0x... (vHBA name)` for a LUN or target reached through FC, or
/// ` target T` for one on a parallel/iSCSI/virtual host.
fn via(node: &Node, graph: &Graph) -> String {
    let mut out = match graph.remote_port_of(node).map(|r| &r.kind) {
        Some(NodeKind::RemotePort(r)) => match r.wwpn {
            Some(w) => format!(" via target {w}"),
            None => String::new(),
        },
        _ => match &node.kind {
            NodeKind::Lun(l) => format!(" target {}", l.hctl.target),
            _ => String::new(),
        },
    };
    if let Some(host) = graph.host_of(node) {
        if let Some(NodeKind::Vport(v)) = graph.vport_of_vhba(host).map(|v| &v.kind) {
            match vhba_name(v) {
                Some(n) => out.push_str(&format!(" (vHBA {n})")),
                None => out.push_str(" (vHBA)"),
            }
        }
    }
    out
}

fn removed(node: &NodeRecord) -> Option<String> {
    let name = node.name();
    match &node.kind {
        NodeKind::Host(h) => {
            if is_vhba_path(&node.devpath) {
                let parent = parent_devpath(&node.devpath)
                    .and_then(|v| port_address(devpath_name(v), "vport-"))
                    .map(|(p, _, _)| format!("host{p}"))
                    .unwrap_or_else(|| "its parent".into());
                let wwpn = wwpn_of(h.fc.as_ref())
                    .map(|w| format!(" (WWPN {w})"))
                    .unwrap_or_default();
                Some(format!("vHBA {name} removed from {parent}{wwpn}"))
            } else {
                Some(format!("host {name} removed"))
            }
        }
        NodeKind::Vport(v) => {
            let parent = port_address(name, "vport-")
                .map(|(p, _, _)| format!("host{p}"))
                .unwrap_or_else(|| "its parent".into());
            let wwpn = v.wwpn.map(|w| format!(" (WWPN {w})")).unwrap_or_default();
            Some(format!("vport {name} removed from {parent}{wwpn}"))
        }
        NodeKind::RemotePort(r) => {
            let host = host_name_in(&node.devpath).unwrap_or("an unknown host");
            let port = r
                .wwpn
                .map(|w| w.to_string())
                .unwrap_or_else(|| name.to_string());
            Some(format!("remote port {port} gone from {host}"))
        }
        NodeKind::Target(_) => None,
        NodeKind::Lun(l) => Some(format!("LUN {} removed", l.hctl)),
        NodeKind::Disk(_) => Some(format!("disk /dev/{name} removed")),
    }
}

fn state_word(state: Option<&str>) -> String {
    match state {
        Some("Online") => "online".to_string(),
        Some(s) => s.to_string(),
        None => "in no known state".to_string(),
    }
}

fn updated(before: &NodeKind, node: &NodeRecord, graph: &Graph) -> Option<String> {
    let name = node.name();
    match (before, &node.kind) {
        (NodeKind::Host(old), NodeKind::Host(new)) => match (&old.fc, &new.fc) {
            // The fc_host class device arrives after the SCSI host it belongs to.
            (None, Some(fc)) => {
                let wwpn = fc.wwpn.map(|w| format!(", WWPN {w}")).unwrap_or_default();
                Some(format!(
                    "host {name} registered as FC host (port {}{wwpn})",
                    state_word(fc.port_state.as_deref())
                ))
            }
            (Some(o), Some(n)) if o.port_state != n.port_state && n.port_state.is_some() => {
                Some(format!(
                    "host {name} port {} (was {})",
                    state_word(n.port_state.as_deref()),
                    state_word(o.port_state.as_deref())
                ))
            }
            // Losing fc_host precedes the host's own removal; inuse counts follow vports.
            _ => None,
        },
        // A state that reads as nothing is a device going away, not a transition.
        (NodeKind::Vport(old), NodeKind::Vport(new))
            if old.vport_state != new.vport_state && new.vport_state.is_some() =>
        {
            let port = new
                .wwpn
                .map(|w| w.to_string())
                .unwrap_or_else(|| name.to_string());
            Some(format!(
                "vport {port} on {} is {} (was {})",
                vport_parent_name(&node.devpath, graph),
                new.vport_state.as_deref().unwrap_or("in no known state"),
                old.vport_state.as_deref().unwrap_or("in no known state")
            ))
        }
        (NodeKind::RemotePort(old), NodeKind::RemotePort(new)) => {
            let host = host_name_in(&node.devpath).unwrap_or("an unknown host");
            let port = new
                .wwpn
                .map(|w| w.to_string())
                .unwrap_or_else(|| name.to_string());
            if old.port_state != new.port_state && new.port_state.is_some() {
                Some(format!(
                    "remote port {port} {} on {host} (was {})",
                    state_word(new.port_state.as_deref()),
                    state_word(old.port_state.as_deref())
                ))
            } else if old.roles != new.roles || old.scsi_target_id != new.scsi_target_id {
                let id = new
                    .scsi_target_id
                    .map(|t| format!(", SCSI target id {t}"))
                    .unwrap_or_default();
                Some(format!(
                    "remote port {port} on {host} now has roles {}{id}",
                    if new.roles.is_empty() {
                        "none".to_string()
                    } else {
                        new.roles.join(", ")
                    }
                ))
            } else {
                None
            }
        }
        (NodeKind::Lun(old), NodeKind::Lun(new))
            if old.state != new.state && new.state.is_some() =>
        {
            Some(format!(
                "LUN {} is {} (was {})",
                new.hctl,
                new.state.as_deref().unwrap_or("in no known state"),
                old.state.as_deref().unwrap_or("in no known state")
            ))
        }
        (NodeKind::Disk(old), NodeKind::Disk(new)) => {
            if old.info.size_bytes != new.info.size_bytes {
                let size = |s: Option<u64>| s.map_or_else(|| "unknown".into(), human_size);
                Some(format!(
                    "disk /dev/{name} resized to {} (was {})",
                    size(new.info.size_bytes),
                    size(old.info.size_bytes)
                ))
            } else if old.links != new.links && !new.links.is_empty() {
                Some(format!("disk /dev/{name} is {}", new.links.join(", ")))
            } else {
                None
            }
        }
        _ => None,
    }
}

fn noticed(node: &Noticed, notice: &Notice, graph: &Graph) -> String {
    let name = node.name();
    let from = match graph
        .node(&node.devpath())
        .and_then(|n| graph.remote_port_of(n))
        .map(|r| &r.kind)
    {
        Some(NodeKind::RemotePort(r)) => match r.wwpn {
            Some(w) => format!("{name} (target {w})"),
            None => name.to_string(),
        },
        _ => name.to_string(),
    };
    match notice {
        Notice::UnitAttention(reason) => format!("unit attention {reason} from {from}"),
        Notice::MediaChange => format!("media change on {from}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Host;
    use crate::sysfs::{Hctl, LunInfo, RemotePortInfo, ScsiHostInfo, TargetInfo};

    const HOST: &str = "/devices/pci0000:00/0000:00:03.0/host1";

    fn host(number: u32, wwpn: Option<&str>, state: &str) -> NodeKind {
        NodeKind::Host(Box::new(Host {
            scsi: ScsiHostInfo {
                number,
                proc_name: Some("qla2xxx".into()),
                unique_id: None,
                state: Some("running".into()),
            },
            fc: Some(FcHostInfo {
                wwpn: wwpn.map(|w| w.parse().unwrap()),
                wwnn: None,
                fabric_name: None,
                port_id: None,
                port_state: Some(state.into()),
                port_type: None,
                speed: None,
                symbolic_name: None,
                npiv: None,
            }),
        }))
    }

    fn vport(symbolic: Option<&str>, state: &str) -> NodeKind {
        NodeKind::Vport(Box::new(VportInfo {
            name: "vport-1:0-0".into(),
            wwpn: Some("0x5001a4a000000b01".parse().unwrap()),
            wwnn: Some("0x5001a4a000000b00".parse().unwrap()),
            vport_state: Some(state.into()),
            vport_last_state: None,
            vport_type: Some("NPIV VPORT".into()),
            symbolic_name: symbolic.map(str::to_string),
            roles: None,
        }))
    }

    fn rport(state: &str) -> NodeKind {
        NodeKind::RemotePort(Box::new(RemotePortInfo {
            name: "rport-7:0-0".into(),
            wwpn: Some("0x500601603ce0174b".parse().unwrap()),
            wwnn: None,
            port_id: None,
            roles: vec!["FCP Target".into()],
            port_state: Some(state.into()),
            scsi_target_id: Some(0),
        }))
    }

    fn lun(hctl: &str) -> NodeKind {
        let hctl: Hctl = hctl.parse().unwrap();
        NodeKind::Lun(
            LunInfo {
                vendor: Some("DGC".into()),
                model: Some("VRAID".into()),
                scsi_type: Some(0),
                state: Some("running".into()),
                ..LunInfo::at(hctl)
            }
            .into(),
        )
    }

    /// host1 -> vport-1:0-0 (hbad's `vm-san-a`) -> host7 -> rport -> target -> LUN 27.
    fn fabric() -> (Graph, String, String) {
        let mut g = Graph::new();
        g.insert(HOST.into(), host(1, Some("0x21000024ff3affb0"), "Online"));
        let vp = format!("{HOST}/vport-1:0-0");
        g.insert(vp.clone(), vport(Some("hbad:vm-san-a"), "Active"));
        let vh = format!("{vp}/host7");
        g.insert(vh.clone(), host(7, Some("0x5001a4a000000b01"), "Online"));
        let rp = format!("{vh}/rport-7:0-0");
        g.insert(rp.clone(), rport("Online"));
        let tg = format!("{rp}/target7:0:0");
        g.insert(
            tg.clone(),
            NodeKind::Target(TargetInfo {
                name: "target7:0:0".into(),
                host: 7,
                channel: 0,
                id: 0,
            }),
        );
        let l = format!("{tg}/7:0:0:27");
        g.insert(l.clone(), lun("7:0:0:27"));
        (g, vh, l)
    }

    fn added_line(g: &Graph, devpath: &str) -> Option<String> {
        let node = g.record(g.node(devpath).unwrap());
        describe(
            &Change::Added {
                node: Box::new(node),
            },
            g,
        )
    }

    #[test]
    fn new_lun_names_target_wwpn_and_vhba() {
        let (g, _, l) = fabric();
        assert_eq!(
            added_line(&g, &l).unwrap(),
            "new LUN 27 (7:0:0:27, DGC VRAID) on host7 via target 0x500601603ce0174b (vHBA vm-san-a)"
        );
    }

    #[test]
    fn vhba_creation_names_parent_name_and_wwpn() {
        let (g, vh, _) = fabric();
        assert_eq!(
            added_line(&g, &vh).unwrap(),
            "vHBA host7 created on host1 as vm-san-a (WWPN 0x5001a4a000000b01)"
        );
    }

    #[test]
    fn vhba_without_fc_side_yet_takes_the_vport_wwpn() {
        let (mut g, vh, _) = fabric();
        let NodeKind::Host(mut h) = g.node(&vh).unwrap().kind.clone() else {
            panic!()
        };
        h.fc = None;
        g.insert(vh.clone(), NodeKind::Host(h));
        assert!(added_line(&g, &vh)
            .unwrap()
            .ends_with("(WWPN 0x5001a4a000000b01)"));
    }

    #[test]
    fn removals_are_described_without_the_graph() {
        let (g, vh, l) = fabric();
        let lun_node = g.record(g.node(&l).unwrap());
        let vhba_node = g.record(g.node(&vh).unwrap());
        let empty = Graph::new();
        assert_eq!(
            describe(
                &Change::Removed {
                    node: Box::new(lun_node)
                },
                &empty
            )
            .unwrap(),
            "LUN 7:0:0:27 removed"
        );
        assert_eq!(
            describe(
                &Change::Removed {
                    node: Box::new(vhba_node)
                },
                &empty
            )
            .unwrap(),
            "vHBA host7 removed from host1 (WWPN 0x5001a4a000000b01)"
        );
        // A target alone is noise: its LUNs' lines say it all.
        let tg = g.record(g.node(&format!("{vh}/rport-7:0-0/target7:0:0")).unwrap());
        assert_eq!(describe(&Change::Removed { node: Box::new(tg) }, &g), None);
    }

    #[test]
    fn unit_attention_names_the_target_port() {
        let (g, _, l) = fabric();
        let node = g.record(g.node(&l).unwrap());
        let change = Change::Notice {
            node: node.into(),
            notice: Notice::UnitAttention("REPORTED_LUNS_DATA_HAS_CHANGED".into()),
        };
        assert_eq!(
            describe(&change, &g).unwrap(),
            "unit attention REPORTED_LUNS_DATA_HAS_CHANGED from 7:0:0:27 (target 0x500601603ce0174b)"
        );
    }

    #[test]
    fn remote_port_state_changes_are_described() {
        let (g, vh, _) = fabric();
        let rp = g.record(g.node(&format!("{vh}/rport-7:0-0")).unwrap());
        assert_eq!(
            describe(
                &Change::Added {
                    node: Box::new(rp.clone())
                },
                &g
            )
            .unwrap(),
            "remote port 0x500601603ce0174b online on host7 as FCP Target"
        );
        let change = Change::Updated {
            before: Box::new(rp.kind.clone()),
            node: Box::new(NodeRecord {
                kind: rport("Blocked"),
                ..rp.clone()
            }),
        };
        assert_eq!(
            describe(&change, &g).unwrap(),
            "remote port 0x500601603ce0174b Blocked on host7 (was online)"
        );
    }

    #[test]
    fn vport_state_change_is_described_and_inuse_count_is_noise() {
        let (g, _, _) = fabric();
        let vp = g.record(g.node(&format!("{HOST}/vport-1:0-0")).unwrap());
        let change = Change::Updated {
            before: Box::new(vport(None, "Initializing")),
            node: Box::new(vp),
        };
        assert_eq!(
            describe(&change, &g).unwrap(),
            "vport 0x5001a4a000000b01 on host1 is Active (was Initializing)"
        );
        let h1 = g.record(g.node(HOST).unwrap());
        let NodeKind::Host(mut before) = h1.kind.clone() else {
            panic!()
        };
        before.scsi.unique_id = Some("3".into());
        let change = Change::Updated {
            before: Box::new(NodeKind::Host(before)),
            node: Box::new(h1),
        };
        assert_eq!(describe(&change, &g), None);
    }

    #[test]
    fn lun_state_reading_as_nothing_is_noise_but_a_real_change_is_not() {
        let (g, _, l) = fabric();
        let node = g.record(g.node(&l).unwrap());
        let NodeKind::Lun(mut gone) = node.kind.clone() else {
            panic!()
        };
        gone.edit(|l| l.state = None);
        let vanished = Change::Updated {
            before: Box::new(node.kind.clone()),
            node: Box::new(NodeRecord {
                kind: NodeKind::Lun(gone.clone()),
                ..node.clone()
            }),
        };
        assert_eq!(describe(&vanished, &g), None);
        gone.edit(|l| l.state = Some("offline".into()));
        let offline = Change::Updated {
            before: Box::new(node.kind.clone()),
            node: Box::new(NodeRecord {
                kind: NodeKind::Lun(gone),
                ..node
            }),
        };
        assert_eq!(
            describe(&offline, &g).unwrap(),
            "LUN 7:0:0:27 is offline (was running)"
        );
    }

    #[test]
    fn human_sizes_use_binary_units() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(33_554_432), "32.0 MiB");
        assert_eq!(human_size(1_610_612_736), "1.5 GiB");
    }
}
