//! LUN nodes by SCSI address, with the address kept in the index itself.
//!
//! The other indexes of the graph keep node ids alone and compare a key with the
//! node's own (see `IdIndex`). This one keeps each LUN's H:C:T:L next to its id,
//! and whether the node's devpath ends in that address's kernel name: then a
//! unit attention names its LUN without the node's devpath being read at all
//! ([`Graph::lun_by_address`]). In a storm on a host of tens of thousands of LUNs each
//! devpath is a cache miss of its own; the address is 28 bytes in a table a
//! few hundred kilobytes long.

use std::hash::BuildHasher;

use foldhash::fast::RandomState;
use hashbrown::hash_table::{Entry, HashTable};

use super::{Graph, Node, NodeId, NodeKind, UNNUMBERED};
use crate::sysfs::{devpath_name, Hctl};

#[derive(Clone, Copy, Debug)]
struct Filed {
    hctl: Hctl,
    id: NodeId,
    /// The node's devpath ends in `/H:C:T:L` as the kernel prints it, so that a
    /// devpath with that name, its parent's devpath before it and the node's
    /// length is the node's devpath.
    named: bool,
}

/// LUN node ids by H:C:T:L, one node per address: a newer device filed under an
/// address takes the place of an older one whose removal was not seen yet. A
/// LUN whose name gives no address ([`UNNUMBERED`]) stays out.
#[derive(Clone, Debug, Default)]
pub(super) struct ByHctl {
    table: HashTable<Filed>,
}

impl ByHctl {
    /// The address a node is filed under, if it is a LUN that has one.
    fn key(node: &Node) -> Option<Hctl> {
        match &node.kind {
            NodeKind::Lun(l) if l.hctl.host != UNNUMBERED => Some(l.hctl),
            _ => None,
        }
    }

    fn find(&self, hasher: &RandomState, hctl: &Hctl) -> Option<&Filed> {
        self.table.find(hasher.hash_one(hctl), |f| f.hctl == *hctl)
    }

    pub(super) fn get(&self, hasher: &RandomState, hctl: &Hctl) -> Option<NodeId> {
        self.find(hasher, hctl).map(|f| f.id)
    }

    /// Files a node under its address, in place of any other node filed there.
    pub(super) fn insert(&mut self, hasher: &RandomState, node: &Node, id: NodeId) {
        let Some(hctl) = Self::key(node) else {
            return;
        };
        let filed = Filed {
            hctl,
            id,
            named: devpath_name(&node.devpath).parse() == Ok(hctl),
        };
        match self.table.entry(
            hasher.hash_one(hctl),
            |f| f.hctl == hctl,
            |f| hasher.hash_one(f.hctl),
        ) {
            Entry::Occupied(mut e) => *e.get_mut() = filed,
            Entry::Vacant(e) => {
                e.insert(filed);
            }
        }
    }

    /// Takes a node out, if it is the one filed under its address.
    pub(super) fn remove(&mut self, hasher: &RandomState, node: &Node, id: NodeId) {
        let Some(hctl) = Self::key(node) else {
            return;
        };
        if let Ok(e) = self
            .table
            .find_entry(hasher.hash_one(hctl), |f| f.hctl == hctl && f.id == id)
        {
            e.remove();
        }
    }

    pub(super) fn reserve(&mut self, hasher: &RandomState, more: usize) {
        self.table.reserve(more, |f| hasher.hash_one(f.hctl));
    }

    pub(super) fn ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.table.iter().map(|f| f.id)
    }
}

impl Graph {
    /// The LUN at a devpath and its address, found by the address in the
    /// devpath's name, when its devpath is its parent's, a `/` and that name.
    /// The node filed under the address is the one at the devpath when its own
    /// name is the address's (`named`), the devpath's parent directory is its
    /// parent node's devpath, and both devpaths have the same length: the node's
    /// devpath is its parent's, a `/`, then a remainder as long as the name that
    /// ends in the name. Only the node and its parent (a target, which every LUN
    /// of a storm shares) are read. `None` says nothing: look by devpath.
    pub(super) fn lun_by_address(&self, devpath: &str) -> Option<(NodeId, Hctl)> {
        let (dir, name) = devpath.rsplit_once('/')?;
        let filed = self.by_hctl.find(&self.hasher, &name.parse().ok()?)?;
        if !filed.named {
            return None;
        }
        let node = self.at(filed.id);
        let parent = self.at(node.parent?);
        (node.devpath.len() == devpath.len() && *parent.devpath == *dir)
            .then_some((filed.id, filed.hctl))
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
        NodeKind::Lun(Box::new(super::super::load::unread_lun(hctl)))
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
}
