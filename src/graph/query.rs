//! Questions the CLI, the planner and the daemon ask of the graph.

use std::str::FromStr;

use super::{Graph, Node, NodeKind};
use crate::sysfs::{host_number, Hctl};
use crate::wwn::Wwn;

/// A device as a person names it on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// `host5`, `scsi_host5`, or a bare `5`.
    Host(u32),
    /// A WWPN in any accepted style: FC hosts, vHBAs, vports and remote ports.
    Wwpn(Wwn),
    /// `1:0:0:27`.
    Hctl(Hctl),
    /// `sdc` or `/dev/sdc`.
    Disk(String),
    /// A devpath (`/devices/...`) or a kernel name (`rport-1:0-0`, `target2:0:1`, `vport-1:0-0`).
    Name(String),
}

impl FromStr for Lookup {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("empty device name; try host5, a WWPN, 1:0:0:27 or sda".into());
        }
        if let Some(n) = host_number(s.strip_prefix("scsi_").unwrap_or(s)) {
            return Ok(Lookup::Host(n));
        }
        if let Ok(n) = s.parse::<u32>() {
            return Ok(Lookup::Host(n));
        }
        if let Ok(w) = Wwn::parse_any(s) {
            return Ok(Lookup::Wwpn(w));
        }
        if let Ok(h) = s.parse::<Hctl>() {
            return Ok(Lookup::Hctl(h));
        }
        let dev = s.strip_prefix("/dev/").unwrap_or(s);
        if dev.starts_with("sd") || dev.starts_with("sr") || dev.starts_with("st") {
            return Ok(Lookup::Disk(dev.to_string()));
        }
        Ok(Lookup::Name(s.to_string()))
    }
}

impl Graph {
    /// Every node a name designates (a WWPN can name a vport and its vHBA at once).
    pub fn find(&self, lookup: &Lookup) -> Vec<&Node> {
        let mut found: Vec<&Node> = match lookup {
            Lookup::Host(n) => self
                .by_host
                .get(n)
                .map(|&id| self.at(id))
                .into_iter()
                .collect(),
            Lookup::Wwpn(w) => self
                .by_wwpn
                .get(w)
                .into_iter()
                .flatten()
                .map(|&id| self.at(id))
                .collect(),
            Lookup::Hctl(h) => self.lun(*h).into_iter().collect(),
            Lookup::Disk(d) => self
                .by_disk
                .get(&self.slots, &self.hasher, d.as_str())
                .map(|id| self.at(id))
                .into_iter()
                .collect(),
            Lookup::Name(name) => match self.node(name) {
                Some(n) => vec![n],
                // Kernel names are unique per kind, so a scan is only for this rare form.
                None => self.nodes().filter(|n| n.name() == name).collect(),
            },
        };
        found.sort_by(|a, b| a.devpath.cmp(&b.devpath));
        found
    }

    pub fn host(&self, number: u32) -> Option<&Node> {
        self.by_host.get(&number).map(|&id| self.at(id))
    }

    pub fn lun(&self, hctl: Hctl) -> Option<&Node> {
        self.by_hctl
            .get(&self.slots, &self.hasher, &hctl)
            .map(|id| self.at(id))
    }

    pub fn by_wwpn(&self, wwpn: Wwn) -> Vec<&Node> {
        self.find(&Lookup::Wwpn(wwpn))
    }

    /// Hosts in host-number order.
    pub fn hosts(&self) -> Vec<&Node> {
        let mut numbers: Vec<&u32> = self.by_host.keys().collect();
        numbers.sort();
        numbers.into_iter().filter_map(|n| self.host(*n)).collect()
    }

    /// All nodes of one kind, in devpath order.
    pub fn of_kind(&self, pred: impl Fn(&NodeKind) -> bool) -> Vec<&Node> {
        let mut v: Vec<&Node> = self.nodes().filter(|n| pred(&n.kind)).collect();
        v.sort_by(|a, b| a.devpath.cmp(&b.devpath));
        v
    }

    /// The vports that have a WWPN, in devpath order, found through the WWPN
    /// index: the cost follows the number of FC ports, not the size of the graph
    /// (a vport whose WWPN is unreadable is one no plan can act on).
    pub fn vports_with_wwpn(&self) -> Vec<&Node> {
        let mut v: Vec<&Node> = self
            .by_wwpn
            .values()
            .flatten()
            .map(|&id| self.at(id))
            .filter(|n| matches!(n.kind, NodeKind::Vport(_)))
            .collect();
        v.sort_by(|a, b| a.devpath.cmp(&b.devpath));
        v
    }

    /// LUNs in H:C:T:L order.
    pub fn luns(&self) -> Vec<&Node> {
        let mut luns: Vec<(Hctl, &Node)> = self
            .by_hctl
            .ids()
            .filter_map(|id| {
                let node = self.at(id);
                match &node.kind {
                    NodeKind::Lun(l) => Some((l.address(), node)),
                    _ => None,
                }
            })
            .collect();
        luns.sort_unstable_by_key(|(h, _)| *h);
        luns.into_iter().map(|(_, n)| n).collect()
    }

    pub fn children<'a>(&'a self, node: &'a Node) -> impl Iterator<Item = &'a Node> + 'a {
        node.children.as_slice().iter().map(|&c| self.at(c))
    }

    pub fn parent<'a>(&'a self, node: &'a Node) -> Option<&'a Node> {
        node.parent.map(|p| self.at(p))
    }

    /// The nearest node at or above this one that matches.
    pub fn ancestor<'a>(
        &'a self,
        node: &'a Node,
        pred: impl Fn(&NodeKind) -> bool,
    ) -> Option<&'a Node> {
        let mut cur = Some(node);
        while let Some(n) = cur {
            if pred(&n.kind) {
                return Some(n);
            }
            cur = self.parent(n);
        }
        None
    }

    /// The SCSI host a node belongs to (itself, for a host).
    pub fn host_of<'a>(&'a self, node: &'a Node) -> Option<&'a Node> {
        self.ancestor(node, |k| matches!(k, NodeKind::Host(_)))
    }

    /// The FC remote port a target, LUN or disk is reached through.
    pub fn remote_port_of<'a>(&'a self, node: &'a Node) -> Option<&'a Node> {
        self.ancestor(node, |k| matches!(k, NodeKind::RemotePort(_)))
    }

    /// Is this host a vHBA, i.e. made by an NPIV vport?
    pub fn is_vhba(&self, host: &Node) -> bool {
        matches!(self.parent(host).map(|p| &p.kind), Some(NodeKind::Vport(_)))
    }

    /// The vport that made a vHBA.
    pub fn vport_of_vhba<'a>(&'a self, host: &'a Node) -> Option<&'a Node> {
        self.parent(host)
            .filter(|p| matches!(p.kind, NodeKind::Vport(_)))
    }

    /// The vHBA a vport made, once the kernel has added it.
    pub fn vhba_of_vport<'a>(&'a self, vport: &'a Node) -> Option<&'a Node> {
        self.children(vport)
            .find(|c| matches!(c.kind, NodeKind::Host(_)))
    }

    /// The physical host under which a vport (or vHBA) was made.
    pub fn vport_parent_host<'a>(&'a self, vport: &'a Node) -> Option<&'a Node> {
        self.parent(vport)
            .filter(|p| matches!(p.kind, NodeKind::Host(_)))
    }

    /// The disk of a LUN, when a driver bound one.
    pub fn disk_of<'a>(&'a self, lun: &'a Node) -> Option<&'a Node> {
        self.children(lun)
            .find(|c| matches!(c.kind, NodeKind::Disk(_)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{read_kind, DeviceClass};
    use super::*;
    use crate::sysfs::Sysfs;
    use crate::uevent::MAX_DEVPATH_DEPTH;

    #[test]
    fn hosts_and_luns_whose_names_give_no_number_are_never_found_by_one() {
        // Gone from sysfs (or never there, as with a forged event): each node has
        // only what its name tells, and these names tell no number.
        let sysfs = Sysfs::new("/nonexistent/sys", "/nonexistent/dev");
        let mut g = Graph::default();
        for name in ["hostX", "hostY"] {
            let devpath = format!("/devices/platform/{name}");
            let kind = read_kind(&sysfs, &devpath, DeviceClass::Host);
            g.insert(devpath, kind);
        }
        let lun = "/devices/platform/hostY/odd-lun";
        g.insert(lun.into(), read_kind(&sysfs, lun, DeviceClass::Lun));
        let real = "/devices/platform/host3";
        g.insert(real.into(), read_kind(&sysfs, real, DeviceClass::Host));
        assert_eq!(g.len(), 4);

        for name in ["4294967295", "host4294967295", "scsi_host4294967295"] {
            let lookup: Lookup = name.parse().unwrap();
            assert!(g.find(&lookup).is_empty(), "{name} selected {lookup:?}");
        }
        assert!(g.host(u32::MAX).is_none());
        let hctl = Hctl {
            host: u32::MAX,
            channel: 0,
            target: 0,
            lun: 0,
        };
        assert!(g.lun(hctl).is_none() && g.luns().is_empty());
        let hosts: Vec<&str> = g.hosts().iter().map(|h| &*h.devpath).collect();
        assert_eq!(hosts, [real]);
        // Still in the graph, found by name.
        assert_eq!(g.find(&Lookup::Name("hostX".into())).len(), 1);
    }

    #[test]
    fn the_nearest_ancestor_is_looked_for_a_bounded_number_of_levels_up() {
        let sysfs = Sysfs::new("/nonexistent/sys", "/nonexistent/dev");
        let mut g = Graph::default();
        let top = "/devices/platform/host3";
        g.insert(top.into(), read_kind(&sysfs, top, DeviceClass::Host));
        // `top` is `levels + 1` steps up from the host below it.
        let below = |levels: usize| format!("{top}{}/host4", "/a".repeat(levels));
        for (levels, found) in [
            (0, true),
            (MAX_DEVPATH_DEPTH - 1, true),
            (MAX_DEVPATH_DEPTH, false),
        ] {
            let devpath = below(levels);
            let id = g.insert(
                devpath.clone(),
                read_kind(&sysfs, &devpath, DeviceClass::Host),
            );
            let parent = g.parent(g.at(id)).map(|p| &*p.devpath);
            assert_eq!(parent == Some(top), found, "{levels} levels: {parent:?}");
        }
    }
}
