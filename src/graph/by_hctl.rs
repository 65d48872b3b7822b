//! LUN nodes by SCSI address.
//!
//! Like the graph's other indexes ([`IdIndex`]), the table keeps node ids alone
//! and a lookup compares the address with the node's. A LUN node keeps its
//! address inline, and whether its devpath ends in that address's kernel name
//! ([`LunNode`]): then a unit attention names its LUN from the index's 4-byte
//! entry and the node's slot ([`Graph::lun_by_address`]), reading neither the
//! node's devpath text nor its boxed record. In a storm on a host of tens of
//! thousands of LUNs each of those would be a cache miss of its own per event.

use super::{Graph, IdIndex, IndexedBy, LunNode, Node, NodeId, NodeKind, UNNUMBERED};
use crate::sysfs::Hctl;

/// LUN node ids by H:C:T:L, one node per address: a newer device filed under an
/// address takes the place of an older one whose removal was not seen yet. A
/// LUN whose name gives no address ([`UNNUMBERED`]) stays out.
pub(super) type ByHctl = IdIndex<ByAddress>;

#[derive(Clone, Copy, Debug, Default)]
pub(super) struct ByAddress;

impl IndexedBy for ByAddress {
    type Key = Hctl;
    fn key(node: &Node) -> Option<&Hctl> {
        match &node.kind {
            NodeKind::Lun(l) if l.address.host != UNNUMBERED => Some(&l.address),
            _ => None,
        }
    }
}

impl Graph {
    /// The LUN at a devpath and its address, found by the address in the
    /// devpath's name, when its devpath is its parent's, a `/` and that name.
    /// The node filed under the address is the one at the devpath when its own
    /// name is the address's (`named`), the devpath's parent directory is its
    /// parent node's devpath, and both devpaths have the same length: the node's
    /// devpath is its parent's, a `/`, then a remainder as long as the name that
    /// ends in the name (names are canonical: one address, one name). Only the
    /// node and its parent (a target, which every LUN of a storm shares) are
    /// read. `None` says nothing: look by devpath.
    pub(super) fn lun_by_address(&self, devpath: &str) -> Option<(NodeId, Hctl)> {
        let (dir, name) = devpath.rsplit_once('/')?;
        let hctl: Hctl = name.parse().ok()?;
        let id = self.by_hctl.get(&self.slots, &self.hasher, &hctl)?;
        let node = self.at(id);
        let NodeKind::Lun(LunNode { named: true, .. }) = node.kind else {
            return None;
        };
        let parent = self.at(node.parent?);
        (node.devpath.len() == devpath.len() && *parent.devpath == *dir).then_some((id, hctl))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sysfs::TargetInfo;

    /// The id of the LUN at a devpath, as the events' lookup finds it.
    impl Graph {
        fn lun_id(&self, devpath: &str) -> Option<NodeId> {
            match self.lun_by_address(devpath) {
                Some((id, _)) => Some(id),
                None => self.id(devpath),
            }
        }
    }

    fn lun(hctl: &str) -> NodeKind {
        NodeKind::Lun(super::super::load::unread_lun(hctl).into())
    }

    fn target(name: &str) -> NodeKind {
        NodeKind::Target(TargetInfo {
            name: name.to_string(),
            host: 1,
            channel: 0,
            id: 0,
        })
    }

    const T: &str = "/devices/h/host1/rport-1:0-0/target1:0:0";

    #[test]
    fn a_lun_is_found_by_its_name_and_parent() {
        let mut g = Graph::new();
        g.insert(T.to_string(), target("target1:0:0"));
        let id = g.insert(format!("{T}/1:0:0:27"), lun("1:0:0:27"));
        assert_eq!(g.lun_id(&format!("{T}/1:0:0:27")), Some(id));
        // Another directory, a longer path, a name the kernel would not print.
        for other in [
            "/devices/h/host1/rport-1:0-1/target1:0:0/1:0:0:27".to_string(),
            format!("{T}/x/1:0:0:27"),
            format!("{T}/1:0:0:027"),
            format!("{T}/1:0:0:28"),
        ] {
            assert_eq!(g.lun_id(&other), None, "{other}");
        }
    }

    #[test]
    fn a_lun_whose_name_is_not_its_address_is_found_by_devpath() {
        // A graph built by hand (or a forged event's odd devpath) may give a LUN
        // a name other than its address: the devpath decides, as in Graph::id.
        let mut g = Graph::new();
        g.insert(T.to_string(), target("target1:0:0"));
        let odd = g.insert(format!("{T}/1:0:0:5"), lun("1:0:0:27"));
        assert_eq!(g.lun_id(&format!("{T}/1:0:0:27")), None);
        assert_eq!(g.lun_id(&format!("{T}/1:0:0:5")), Some(odd));
        // Below a directory the graph does not hold, the parent is further up.
        let deep = g.insert(format!("{T}/dir/1:0:0:9"), lun("1:0:0:9"));
        assert_eq!(g.lun_id(&format!("{T}/dir/1:0:0:9")), Some(deep));
        assert_eq!(g.lun_id(&format!("{T}/dor/1:0:0:9")), None);
    }

    #[test]
    fn a_newer_lun_at_an_address_takes_its_place() {
        let mut g = Graph::new();
        g.insert(T.to_string(), target("target1:0:0"));
        let old = g.insert(format!("{T}/1:0:0:1"), lun("1:0:0:1"));
        let other = "/devices/h/host1/rport-1:0-9/target1:0:0";
        g.insert(other.to_string(), target("target1:0:0"));
        let new = g.insert(format!("{other}/1:0:0:1"), lun("1:0:0:1"));
        assert_eq!(
            g.lun(Hctl {
                host: 1,
                channel: 0,
                target: 0,
                lun: 1
            })
            .map(|n| &*n.devpath),
            Some(&*format!("{other}/1:0:0:1"))
        );
        assert_eq!(g.lun_id(&format!("{other}/1:0:0:1")), Some(new));
        // The older one is still at its devpath.
        assert_eq!(g.lun_id(&format!("{T}/1:0:0:1")), Some(old));
    }

    #[test]
    fn a_lun_node_reads_compares_and_serializes_as_its_record() {
        let mut g = Graph::new();
        g.insert(T.to_string(), target("target1:0:0"));
        let id = g.insert(format!("{T}/1:0:0:27"), lun("1:0:0:27"));
        let NodeKind::Lun(filed) = &g.at(id).kind else {
            panic!("not a LUN")
        };
        // Filed, it is named; made afresh, not: equal all the same, so an event's
        // fresh read of an unchanged LUN is no change.
        assert!(filed.named);
        let fresh = lun("1:0:0:27");
        assert_eq!(g.at(id).kind, fresh);
        let NodeKind::Lun(unfiled) = &fresh else {
            panic!("not a LUN")
        };
        assert!(!unfiled.named);
        let mut record = serde_json::to_value(unfiled.info()).unwrap();
        record["type"] = "lun".into();
        assert_eq!(serde_json::to_value(&fresh).unwrap(), record);
    }

    #[test]
    fn a_lun_node_keeps_its_address_with_its_record() {
        let NodeKind::Lun(mut l) = lun("1:0:0:27") else {
            panic!("not a LUN")
        };
        l.edit(|i| i.hctl.lun = 28);
        assert_eq!((l.address().lun, l.hctl.lun), (28, 28));
        // Inline, the address makes no node of the graph larger: a disk is the
        // largest kind the graph keeps unboxed.
        assert!(std::mem::size_of::<LunNode>() <= std::mem::size_of::<super::super::Disk>());
    }
}
