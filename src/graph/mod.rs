//! The live model of the host's SCSI and Fibre Channel devices.
//!
//! Nodes are keyed by devpath and linked parent to child the way sysfs nests them:
//! host -> vport -> host (a vHBA), host -> remote port -> target -> LUN -> disk. The
//! graph is built once from sysfs ([`Graph::load`]) and then kept current by kernel
//! events ([`Graph::apply`]), each of which costs the same however many devices the
//! host has: lookups go through hash indexes, and only a removed subtree is walked.
//!
//! Nodes live in one table and refer to each other by [`NodeId`] (a `u32`); each
//! devpath is stored once ([`Devpath`], shared by the node and the lookup by
//! devpath), and the indexes hold ids. A host with tens of thousands of LUNs keeps
//! a node in 400 to 550 bytes of heap (benches/README.md), most of it the
//! attributes themselves.
//!
//! The graph never writes and never looks at the clock. It reads sysfs only to fill
//! in the attributes of the device an event names, because uevents carry names, not
//! attributes.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};

use foldhash::fast::RandomState;
use std::marker::PhantomData;
use std::sync::Arc;

use hashbrown::hash_table::{Entry, HashTable};
use serde::Serialize;

use crate::sysfs::{
    devpath_name, host_number, parent_devpath, port_address, target_address, BlockInfo, Detail,
    FcHostInfo, Hctl, LunInfo, RemotePortInfo, ScsiHostInfo, TargetInfo, VportInfo,
};
use crate::uevent::{Action, UeventRef, MAX_DEVPATH_DEPTH};
use crate::wwn::Wwn;
use by_hctl::ByHctl;

mod apply;
mod by_hctl;
pub mod describe;
mod load;
mod query;

pub(crate) use load::read_kind;

pub use apply::{Change, Notice, Noticed, UaReason};
pub use query::Lookup;

/// A SCSI host and, when it has one, its FC personality.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Host {
    pub scsi: ScsiHostInfo,
    pub fc: Option<FcHostInfo>,
}

/// A whole-disk block device and the stable names udev gave it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Disk {
    #[serde(flatten)]
    pub info: BlockInfo,
    pub links: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NodeKind {
    /// Hosts, vports, remote ports and LUNs' records are boxed: each is twice the
    /// size of a disk or more, and inline, every node of the graph (half of them
    /// disks) would be as large as the largest.
    Host(Box<Host>),
    Vport(Box<VportInfo>),
    RemotePort(Box<RemotePortInfo>),
    Target(TargetInfo),
    Lun(LunNode),
    Disk(Disk),
}

/// A LUN as the graph holds it: its record, boxed, and its address inline beside
/// it. A unit attention storm looks up tens of thousands of LUNs by address
/// ([`Graph::lun_by_address`]); with the address in the node's own slot, the lookup
/// reads the index's 4-byte entry and that slot, not the record (another cache
/// miss per event, the box being wherever cold plug allocated it).
///
/// It reads as its record ([`LunInfo`], through `Deref`), serializes as it, and
/// compares as it: the address is a copy of the record's, kept so by every way
/// of making or changing one, and `named` is the graph's ([`Graph::index`]).
#[derive(Clone, Debug)]
pub struct LunNode {
    address: Hctl,
    /// The node's devpath ends in `/H:C:T:L` as the kernel prints `address`: set
    /// when the graph files the node, false in a kind outside a graph.
    named: bool,
    info: Box<LunInfo>,
}

impl LunNode {
    /// The LUN's H:C:T:L, read from the node itself.
    pub fn address(&self) -> Hctl {
        self.address
    }

    pub fn info(&self) -> &LunInfo {
        &self.info
    }

    /// Changes the record, the inline address following it.
    pub fn edit(&mut self, change: impl FnOnce(&mut LunInfo)) {
        change(&mut self.info);
        self.address = self.info.hctl;
    }

    fn trim_to(&mut self, detail: Detail) {
        self.info.trim_to(detail);
    }
}

impl From<LunInfo> for LunNode {
    fn from(info: LunInfo) -> Self {
        Box::new(info).into()
    }
}

impl From<Box<LunInfo>> for LunNode {
    fn from(info: Box<LunInfo>) -> Self {
        LunNode {
            address: info.hctl,
            named: false,
            info,
        }
    }
}

impl std::ops::Deref for LunNode {
    type Target = LunInfo;
    fn deref(&self) -> &LunInfo {
        &self.info
    }
}

impl PartialEq for LunNode {
    fn eq(&self, other: &Self) -> bool {
        self.info == other.info
    }
}

impl Eq for LunNode {}

impl Serialize for LunNode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.info.serialize(s)
    }
}

impl NodeKind {
    pub fn label(&self) -> &'static str {
        match self {
            NodeKind::Host(_) => "host",
            NodeKind::Vport(_) => "vport",
            NodeKind::RemotePort(_) => "remote port",
            NodeKind::Target(_) => "target",
            NodeKind::Lun(_) => "LUN",
            NodeKind::Disk(_) => "disk",
        }
    }

    /// Leaves out what a graph of `detail` does not keep: an event's device is
    /// read in full.
    fn trim_to(&mut self, detail: Detail) {
        match self {
            NodeKind::Lun(l) => l.trim_to(detail),
            NodeKind::Disk(d) => d.info.trim_to(detail),
            _ => {}
        }
    }

    /// The WWPN this node answers to, for the WWPN index.
    pub fn wwpn(&self) -> Option<Wwn> {
        match self {
            NodeKind::Host(h) => h.fc.as_ref()?.wwpn,
            NodeKind::Vport(v) => v.wwpn,
            NodeKind::RemotePort(r) => r.wwpn,
            _ => None,
        }
    }
}

/// A device's path under /sys (`/devices/...`), stored once: the node, the lookup
/// by devpath and the changes that name the device share one allocation.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Devpath(Arc<str>);

impl Devpath {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Where the shared text lives: equal for clones of one devpath, different
    /// for the same text stored twice.
    pub fn addr(&self) -> usize {
        Arc::as_ptr(&self.0) as *const u8 as usize
    }
}

impl std::ops::Deref for Devpath {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for Devpath {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Devpath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl AsRef<std::path::Path> for Devpath {
    fn as_ref(&self) -> &std::path::Path {
        self.0.as_ref().as_ref()
    }
}

impl std::fmt::Display for Devpath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for Devpath {
    fn from(s: &str) -> Self {
        Devpath(Arc::from(s))
    }
}

impl From<String> for Devpath {
    fn from(s: String) -> Self {
        Devpath(Arc::from(s))
    }
}

impl From<&String> for Devpath {
    fn from(s: &String) -> Self {
        Devpath(Arc::from(s.as_str()))
    }
}

impl From<&Devpath> for Devpath {
    fn from(d: &Devpath) -> Self {
        d.clone()
    }
}

impl PartialEq<str> for Devpath {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for Devpath {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl PartialEq<String> for Devpath {
    fn eq(&self, other: &String) -> bool {
        &*self.0 == other.as_str()
    }
}

/// Where a node sits in its graph: an index into the graph's node table. Valid
/// only in the graph that gave it, and only while that node is there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(u32);

impl NodeId {
    fn index(self) -> usize {
        self.0 as usize
    }
}

/// A device in the graph. Its relations are ids into the same graph: ask the
/// graph for them ([`Graph::parent`], [`Graph::children`]). Ids mean something only
/// in their graph: to compare nodes of two graphs, compare their [`NodeRecord`]s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub devpath: Devpath,
    pub kind: NodeKind,
    parent: Option<NodeId>,
    children: Children,
}

/// A node's children, sorted by devpath. Most nodes have none, or one (a LUN its
/// disk): those are kept in the node, not in a vector of their own.
#[derive(Clone, Debug, Default)]
enum Children {
    #[default]
    None,
    One(NodeId),
    Many(Vec<NodeId>),
}

impl Children {
    fn as_slice(&self) -> &[NodeId] {
        match self {
            Children::None => &[],
            Children::One(id) => std::slice::from_ref(id),
            Children::Many(ids) => ids,
        }
    }

    fn insert(&mut self, at: usize, id: NodeId) {
        match self {
            Children::None => *self = Children::One(id),
            Children::One(first) => {
                let mut ids = vec![*first];
                ids.insert(at, id);
                *self = Children::Many(ids);
            }
            Children::Many(ids) => ids.insert(at, id),
        }
    }

    fn remove(&mut self, at: usize) {
        match self {
            Children::None => {}
            Children::One(_) => *self = Children::None,
            Children::Many(ids) => {
                ids.remove(at);
            }
        }
    }
}

impl PartialEq for Children {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Children {}

impl Node {
    pub fn name(&self) -> &str {
        devpath_name(&self.devpath)
    }
}

/// A node as it was when a change was made, with its relations by devpath: a
/// change must still describe a device its event removed from the graph.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NodeRecord {
    pub devpath: String,
    pub parent: Option<String>,
    /// Devpaths of the children, sorted.
    pub children: Vec<String>,
    pub kind: NodeKind,
}

impl NodeRecord {
    pub fn name(&self) -> &str {
        devpath_name(&self.devpath)
    }
}

/// What kind of device a devpath names, judged from its last component, as the
/// kernel names them. Used where an event lacks DEVTYPE and for resyncs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceClass {
    Host,
    Vport,
    RemotePort,
    Target,
    Lun,
    Disk,
}

impl DeviceClass {
    pub fn of_name(name: &str) -> Option<DeviceClass> {
        if host_number(name).is_some() {
            Some(DeviceClass::Host)
        } else if port_address(name, "vport-").is_some() {
            Some(DeviceClass::Vport)
        } else if port_address(name, "rport-").is_some() {
            Some(DeviceClass::RemotePort)
        } else if target_address(name).is_some() {
            Some(DeviceClass::Target)
        } else if name.parse::<Hctl>().is_ok() {
            Some(DeviceClass::Lun)
        } else {
            None
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Graph {
    /// The node table: a removed node leaves a hole that the next insert reuses.
    slots: Vec<Option<Node>>,
    free: Vec<NodeId>,
    /// Hashes the keys of the indexes by id. Seeded per graph: the devpaths come
    /// from kernel events (forged ones are refused by the sources) and from sysfs,
    /// so foldhash's per-table seed is defence enough, and it hashes a devpath at a
    /// fraction of SipHash's cost: a storm looks up every LUN it names.
    hasher: RandomState,
    by_devpath: IdIndex<ByDevpath>,
    by_host: HashMap<u32, NodeId>,
    /// A WWPN names a vport and the vHBA it made, so a few nodes at most.
    by_wwpn: HashMap<Wwn, Vec<NodeId>>,
    by_hctl: ByHctl,
    by_disk: IdIndex<ByDisk>,
    /// What the graph keeps of each LUN and disk (see [`Detail`]).
    detail: Detail,
}

/// What an [`IdIndex`] finds a node by: a key the node holds itself.
trait IndexedBy {
    type Key: ?Sized + Hash + Eq;
    /// The node's key; `None` keeps it out of the index.
    fn key(node: &Node) -> Option<&Self::Key>;
}

#[derive(Clone, Copy, Debug, Default)]
struct ByDevpath;

impl IndexedBy for ByDevpath {
    type Key = str;
    fn key(node: &Node) -> Option<&str> {
        Some(&node.devpath)
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct ByDisk;

impl IndexedBy for ByDisk {
    type Key = str;
    fn key(node: &Node) -> Option<&str> {
        match &node.kind {
            NodeKind::Disk(d) => Some(&d.info.name),
            _ => None,
        }
    }
}

/// Node ids by a key each node holds itself (its devpath, disk name).
/// The table holds the 4-byte ids alone and a lookup compares the key with the
/// node's: no key is stored twice (a devpath is a hundred bytes, and on a host of
/// tens of thousands of LUNs maps keyed by copies were a tenth of the graph).
/// Each id names a live node whose key it was filed under: a node leaves its
/// indexes before its kind changes or it goes ([`Graph::unindex`]).
#[derive(Clone, Debug, Default)]
struct IdIndex<K> {
    table: HashTable<NodeId>,
    by: PhantomData<K>,
}

impl<K: IndexedBy> IdIndex<K> {
    fn key_at(slots: &[Option<Node>], id: NodeId) -> Option<&K::Key> {
        K::key(slots.get(id.index())?.as_ref()?)
    }

    fn hash_at(slots: &[Option<Node>], hasher: &RandomState, id: NodeId) -> u64 {
        Self::key_at(slots, id).map_or(0, |k| hasher.hash_one(k))
    }

    fn get(&self, slots: &[Option<Node>], hasher: &RandomState, key: &K::Key) -> Option<NodeId> {
        self.get_hashed(slots, hasher.hash_one(key), key)
    }

    /// [`IdIndex::get`] with the key's hash already taken.
    fn get_hashed(&self, slots: &[Option<Node>], hash: u64, key: &K::Key) -> Option<NodeId> {
        self.table
            .find(hash, |&id| Self::key_at(slots, id) == Some(key))
            .copied()
    }

    /// Files `id` under its key's `hash`, no node being filed under that key.
    fn insert_new(&mut self, slots: &[Option<Node>], hasher: &RandomState, hash: u64, id: NodeId) {
        self.table
            .insert_unique(hash, id, |&other| Self::hash_at(slots, hasher, other));
    }

    /// Files `id` under its node's key, in place of any other node filed there
    /// (a disk name or H:C:T:L reused before the old device's removal is seen).
    fn insert(&mut self, slots: &[Option<Node>], hasher: &RandomState, id: NodeId) {
        let Some(key) = Self::key_at(slots, id) else {
            return;
        };
        let hash = hasher.hash_one(key);
        match self.table.entry(
            hash,
            |&other| Self::key_at(slots, other) == Some(key),
            |&other| Self::hash_at(slots, hasher, other),
        ) {
            Entry::Occupied(mut e) => *e.get_mut() = id,
            Entry::Vacant(e) => {
                e.insert(id);
            }
        }
    }

    /// Takes `id` out, if it is the node filed under its key.
    fn remove(&mut self, slots: &[Option<Node>], hasher: &RandomState, id: NodeId) {
        let hash = Self::hash_at(slots, hasher, id);
        if let Ok(e) = self.table.find_entry(hash, |&other| other == id) {
            e.remove();
        }
    }

    fn reserve(&mut self, slots: &[Option<Node>], hasher: &RandomState, more: usize) {
        self.table
            .reserve(more, |&id| Self::hash_at(slots, hasher, id));
    }

    fn len(&self) -> usize {
        self.table.len()
    }

    fn ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.table.iter().copied()
    }
}

/// Two graphs are equal when they hold the same nodes with the same attributes and
/// edges (compared by devpath: ids depend on the order of insertion); the indexes
/// follow from the nodes.
impl PartialEq for Graph {
    fn eq(&self, other: &Self) -> bool {
        let devpaths = |g: &'_ Graph, ids: &[NodeId]| -> Vec<Devpath> {
            ids.iter().map(|&c| g.at(c).devpath.clone()).collect()
        };
        self.len() == other.len()
            && self.nodes().all(|n| {
                other.node(&n.devpath).is_some_and(|o| {
                    o.kind == n.kind
                        && self.parent(n).map(|p| &p.devpath) == other.parent(o).map(|p| &p.devpath)
                        && devpaths(self, n.children.as_slice())
                            == devpaths(other, o.children.as_slice())
                })
            })
    }
}

impl Eq for Graph {}

impl Graph {
    pub fn new() -> Self {
        Graph::default()
    }

    /// What the graph keeps of each LUN and disk: what it was loaded with.
    pub fn detail(&self) -> Detail {
        self.detail
    }

    pub fn len(&self) -> usize {
        self.by_devpath.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_devpath.len() == 0
    }

    pub fn node(&self, devpath: &str) -> Option<&Node> {
        self.id(devpath).map(|id| self.at(id))
    }

    /// The id of the node at a devpath, valid until that node is removed.
    pub fn id(&self, devpath: &str) -> Option<NodeId> {
        self.by_devpath.get(&self.slots, &self.hasher, devpath)
    }

    /// The node an id names; `None` once that node was removed.
    pub fn get(&self, id: NodeId) -> Option<&Node> {
        self.slots.get(id.index())?.as_ref()
    }

    /// Every node, in no particular order.
    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.slots.iter().flatten()
    }

    /// A node by an id the graph itself holds (an index entry, a parent or child
    /// link), which always names a live node.
    fn at(&self, id: NodeId) -> &Node {
        self.slots[id.index()]
            .as_ref()
            .expect("the graph's own links name live nodes")
    }

    fn at_mut(&mut self, id: NodeId) -> &mut Node {
        self.slots[id.index()]
            .as_mut()
            .expect("the graph's own links name live nodes")
    }

    /// A node's copy for a change, with its relations by devpath.
    pub fn record(&self, node: &Node) -> NodeRecord {
        NodeRecord {
            devpath: node.devpath.to_string(),
            parent: node.parent.map(|p| self.at(p).devpath.to_string()),
            children: node
                .children
                .as_slice()
                .iter()
                .map(|&c| self.at(c).devpath.to_string())
                .collect(),
            kind: node.kind.clone(),
        }
    }

    fn record_at(&self, id: NodeId) -> NodeRecord {
        self.record(self.at(id))
    }

    /// What a notice names of a node: its devpath and its parent's, shared.
    fn noticed(&self, id: NodeId) -> Noticed {
        let node = self.at(id);
        Noticed::at(
            node.devpath.clone(),
            node.parent.map(|p| self.at(p).devpath.clone()),
            match &node.kind {
                NodeKind::Lun(l) => Some(l.address()),
                _ => None,
            },
        )
    }

    /// [`Graph::noticed`] for a LUN found by its address ([`Graph::lun_by_address`]):
    /// its parent's devpath and the address name it.
    fn noticed_by_address(&self, id: NodeId, hctl: Hctl) -> Noticed {
        match self.at(id).parent {
            Some(p) => Noticed::lun(self.at(p).devpath.clone(), hctl),
            None => self.noticed(id),
        }
    }

    /// The nearest ancestor of a devpath that is in the graph, looked for among
    /// its nearest [`MAX_DEVPATH_DEPTH`] ancestors: every ancestor of a devpath an
    /// event may carry, and a bounded cost (each step hashes a prefix) for a deeper
    /// path read from a sysfs tree, which then hangs from no node.
    fn parent_of(&self, devpath: &str) -> Option<NodeId> {
        std::iter::successors(parent_devpath(devpath), |p| parent_devpath(p))
            .take(MAX_DEVPATH_DEPTH)
            .find_map(|p| self.id(p))
    }

    /// Adds a node under its nearest ancestor in the graph, or updates it if present.
    /// Events and loads go through here; tests use it to build graphs by hand.
    pub fn insert(&mut self, devpath: String, kind: NodeKind) -> NodeId {
        self.insert_at(Devpath::from(devpath), kind)
    }

    fn insert_at(&mut self, devpath: Devpath, kind: NodeKind) -> NodeId {
        self.insert_under(devpath, kind, |graph, devpath| graph.parent_of(devpath))
    }

    /// [`Graph::insert_at`] with the node's parent found by `parent` when the
    /// node is new: cold plug knows it for a run of siblings. The devpath is
    /// hashed once, to look for the node and to file it.
    fn insert_under(
        &mut self,
        devpath: Devpath,
        mut kind: NodeKind,
        parent: impl FnOnce(&Graph, &str) -> Option<NodeId>,
    ) -> NodeId {
        if self.detail != Detail::Full {
            kind.trim_to(self.detail);
        }
        let hash = self.hasher.hash_one(devpath.as_str());
        if let Some(id) = self.by_devpath.get_hashed(&self.slots, hash, &devpath) {
            self.replace_kind(id, kind);
            return id;
        }
        let parent = parent(self, &devpath);
        let node = Node {
            devpath: devpath.clone(),
            kind,
            parent,
            children: Children::None,
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.slots[id.index()] = Some(node);
                id
            }
            None => {
                let id = NodeId(
                    u32::try_from(self.slots.len()).expect("fewer than 2^32 devices in sysfs"),
                );
                self.slots.push(Some(node));
                id
            }
        };
        if let Some(p) = parent {
            let at = self.child_position(p, &devpath);
            if let Err(at) = at {
                self.at_mut(p).children.insert(at, id);
            }
        }
        self.by_devpath
            .insert_new(&self.slots, &self.hasher, hash, id);
        self.index(id);
        id
    }

    /// Where a devpath is, or would go, among a node's sorted children.
    fn child_position(&self, parent: NodeId, devpath: &str) -> Result<usize, usize> {
        let children = self.at(parent).children.as_slice();
        // Cold plug inserts in devpath order: most children go last.
        match children.last() {
            None => return Err(0),
            Some(&last) if &*self.at(last).devpath < devpath => return Err(children.len()),
            _ => {}
        }
        children.binary_search_by(|&c| (*self.at(c).devpath).cmp(devpath))
    }

    /// Replaces a node's attributes; returns the old ones when they differ (in what
    /// the graph keeps: see [`Graph::detail`]).
    fn replace_kind(&mut self, id: NodeId, mut kind: NodeKind) -> Option<NodeKind> {
        if self.detail != Detail::Full {
            kind.trim_to(self.detail);
        }
        if self.at(id).kind == kind {
            return None;
        }
        self.unindex(id);
        let old = std::mem::replace(&mut self.at_mut(id).kind, kind);
        self.index(id);
        Some(old)
    }

    /// Removes a node and everything below it; returns them deepest first, the order
    /// in which the kernel reports removals, each as it was in the graph.
    fn remove_subtree(&mut self, devpath: &str) -> Vec<NodeRecord> {
        let Some(root) = self.id(devpath) else {
            return Vec::new();
        };
        let mut order = vec![root];
        let mut i = 0;
        while i < order.len() {
            order.extend(self.at(order[i]).children.as_slice().iter().copied());
            i += 1;
        }
        let removed: Vec<NodeRecord> = order.iter().rev().map(|&id| self.record_at(id)).collect();
        if let Some(p) = self.at(root).parent {
            if let Ok(at) = self.child_position(p, devpath) {
                self.at_mut(p).children.remove(at);
            }
        }
        for &id in order.iter().rev() {
            self.unindex(id);
            self.by_devpath.remove(&self.slots, &self.hasher, id);
            self.slots[id.index()] = None;
            self.free.push(id);
        }
        removed
    }

    fn index(&mut self, id: NodeId) {
        let kind = &self.at(id).kind;
        let (wwpn, filed) = (kind.wwpn(), Filed::of(kind));
        if let Some(w) = wwpn {
            let ids = self.by_wwpn.entry(w).or_default();
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        match filed {
            Filed::Host(n) => {
                self.by_host.insert(n, id);
            }
            Filed::Lun => {
                if let Some(Node {
                    devpath,
                    kind: NodeKind::Lun(l),
                    ..
                }) = self.slots.get_mut(id.index()).and_then(Option::as_mut)
                {
                    l.named = devpath_name(devpath).parse() == Ok(l.address);
                }
                self.by_hctl.insert(&self.slots, &self.hasher, id)
            }
            Filed::Disk => self.by_disk.insert(&self.slots, &self.hasher, id),
            Filed::Nowhere => {}
        }
    }

    fn unindex(&mut self, id: NodeId) {
        let Some(node) = self.get(id) else { return };
        let (wwpn, filed) = (node.kind.wwpn(), Filed::of(&node.kind));
        if let Some(w) = wwpn {
            if let Some(ids) = self.by_wwpn.get_mut(&w) {
                ids.retain(|&i| i != id);
                if ids.is_empty() {
                    self.by_wwpn.remove(&w);
                }
            }
        }
        // Only drop an index entry that still points here: a host number or disk name
        // can be reused by a newer device before the old one's removal is seen.
        match filed {
            Filed::Host(n) => {
                if self.by_host.get(&n) == Some(&id) {
                    self.by_host.remove(&n);
                }
            }
            Filed::Lun => self.by_hctl.remove(&self.slots, &self.hasher, id),
            Filed::Disk => self.by_disk.remove(&self.slots, &self.hasher, id),
            Filed::Nowhere => {}
        }
    }

    /// What changed between two graphs (a resync after lost events): removals deepest
    /// first, then additions parents first, then updates.
    pub fn diff(old: &Graph, new: &Graph) -> Vec<Change> {
        let depth = |p: &str| p.bytes().filter(|&c| c == b'/').count();
        let mut removed: Vec<&Node> = old
            .nodes()
            .filter(|n| new.id(&n.devpath).is_none())
            .collect();
        removed.sort_by(|a, b| {
            depth(&b.devpath)
                .cmp(&depth(&a.devpath))
                .then(a.devpath.cmp(&b.devpath))
        });
        let mut added: Vec<&Node> = new
            .nodes()
            .filter(|n| old.id(&n.devpath).is_none())
            .collect();
        added.sort_by(|a, b| {
            depth(&a.devpath)
                .cmp(&depth(&b.devpath))
                .then(a.devpath.cmp(&b.devpath))
        });
        let mut updated: Vec<(&Node, &Node)> = new
            .nodes()
            .filter_map(|n| Some((old.node(&n.devpath)?, n)))
            .filter(|(o, n)| o.kind != n.kind)
            .collect();
        updated.sort_by(|a, b| a.1.devpath.cmp(&b.1.devpath));
        removed
            .into_iter()
            .map(|n| Change::Removed {
                node: Box::new(old.record(n)),
            })
            .chain(added.into_iter().map(|n| Change::Added {
                node: Box::new(new.record(n)),
            }))
            .chain(updated.into_iter().map(|(o, n)| Change::Updated {
                before: Box::new(o.kind.clone()),
                node: Box::new(new.record(n)),
            }))
            .collect()
    }
}

/// The index a node's kind puts it in (besides the WWPN's), told apart before the
/// index changes, while the node is not borrowed.
enum Filed {
    Host(u32),
    Lun,
    Disk,
    Nowhere,
}

impl Filed {
    /// A node whose name gives no number carries [`UNNUMBERED`]: it stays out of
    /// the host and H:C:T:L indexes, so that two such nodes never share a slot and
    /// no name, policy `parent` or lookup can select one by that number
    /// ([`ByHctl`] leaves such a LUN out).
    fn of(kind: &NodeKind) -> Filed {
        match kind {
            NodeKind::Host(h) if h.scsi.number != UNNUMBERED => Filed::Host(h.scsi.number),
            NodeKind::Lun(_) => Filed::Lun,
            NodeKind::Disk(_) => Filed::Disk,
            _ => Filed::Nowhere,
        }
    }
}

/// The host number of a node whose name gives none (a forged or replayed event's
/// odd devpath, a device gone before it was read): the parsers of names never
/// give it (`crate::sysfs::host_number` stays below it), and the indexes leave
/// such nodes out.
const UNNUMBERED: u32 = u32::MAX;

/// Helpers for events: what a uevent is about, in graph terms.
fn event_class<'e>(ev: &UeventRef<'e>) -> Option<(DeviceClass, &'e str)> {
    let devpath = ev.devpath;
    let owner_of_class_dev = || parent_devpath(devpath).and_then(parent_devpath);
    match ev.subsystem {
        "scsi" => {
            let class = match ev.devtype {
                Some("scsi_host") => DeviceClass::Host,
                Some("scsi_target") => DeviceClass::Target,
                Some("scsi_device") => DeviceClass::Lun,
                _ => DeviceClass::of_name(devpath_name(devpath))?,
            };
            Some((class, devpath))
        }
        "scsi_host" | "fc_host" => Some((DeviceClass::Host, owner_of_class_dev()?)),
        "fc_vports" => Some((DeviceClass::Vport, owner_of_class_dev()?)),
        "fc_remote_ports" => Some((DeviceClass::RemotePort, owner_of_class_dev()?)),
        "block" if ev.devtype != Some("partition") => {
            // Only disks that sit on a SCSI device: `.../H:C:T:L/block/sdX`.
            let lun = owner_of_class_dev()?;
            (DeviceClass::of_name(devpath_name(lun)) == Some(DeviceClass::Lun))
                .then_some((DeviceClass::Disk, devpath))
        }
        _ => None,
    }
}

/// Is this event's action one that removes what it names?
fn removes(action: Action) -> bool {
    action == Action::Remove
}
