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
//! a node in about 600 bytes, most of it the attributes themselves.
//!
//! The graph never writes and never looks at the clock. It reads sysfs only to fill
//! in the attributes of the device an event names, because uevents carry names, not
//! attributes.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;

use crate::sysfs::{
    devpath_name, host_number, parent_devpath, port_address, target_address, BlockIndex, BlockInfo,
    Detail, FcHostInfo, Hctl, LunInfo, RemotePortInfo, ScsiHostInfo, Sysfs, TargetInfo, VportInfo,
};
use crate::uevent::{Action, UeventRef, MAX_DEVPATH_DEPTH};
use crate::wwn::Wwn;

mod apply;
pub mod describe;
mod query;

pub use apply::{Change, Notice, UaReason};
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
    /// Hosts, vports, remote ports and LUNs are boxed: each is twice the size of
    /// a disk or more, and inline, every node of the graph (half of them disks)
    /// would be as large as the largest.
    Host(Box<Host>),
    Vport(Box<VportInfo>),
    RemotePort(Box<RemotePortInfo>),
    Target(TargetInfo),
    Lun(Box<LunInfo>),
    Disk(Disk),
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
    /// Sorted by the children's devpaths.
    children: Vec<NodeId>,
}

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
    by_devpath: HashMap<Devpath, NodeId>,
    by_host: HashMap<u32, NodeId>,
    /// A WWPN names a vport and the vHBA it made, so a few nodes at most.
    by_wwpn: HashMap<Wwn, Vec<NodeId>>,
    by_hctl: HashMap<Hctl, NodeId>,
    by_disk: HashMap<Box<str>, NodeId>,
    notice_records: NoticeRecords,
}

/// Records already made for notices, valid while the graph has not changed since
/// (`generation`), and never more than [`NoticeRecords::MAX`] of them.
#[derive(Clone, Debug, Default)]
struct NoticeRecords {
    /// Counts the graph's changes: a record is made again after any of them.
    generation: u64,
    made_at: u64,
    /// By node id, as the node table: a storm's lookup is an index, not a hash
    /// (only the ids in `made` hold a record; the table grows to the highest id
    /// noticed, a pointer per node).
    by_id: Vec<Option<Arc<NodeRecord>>>,
    made: Vec<NodeId>,
}

impl NoticeRecords {
    /// Enough for every LUN behind a few busy targets; a larger storm makes some
    /// records twice rather than hold one per LUN of a huge host.
    const MAX: usize = 4096;

    fn get(&self, id: NodeId) -> Option<&Arc<NodeRecord>> {
        self.by_id.get(id.index())?.as_ref()
    }

    fn put(&mut self, id: NodeId, record: Arc<NodeRecord>) {
        if self.by_id.len() <= id.index() {
            self.by_id.resize(id.index() + 1, None);
        }
        if self.by_id[id.index()].replace(record).is_none() {
            self.made.push(id);
        }
    }

    /// Drops every record, in time proportional to their number.
    fn clear(&mut self) {
        for id in self.made.drain(..) {
            self.by_id[id.index()] = None;
        }
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
                        && devpaths(self, &n.children) == devpaths(other, &o.children)
                })
            })
    }
}

impl Eq for Graph {}

impl Graph {
    pub fn new() -> Self {
        Graph::default()
    }

    /// Cold plug: builds the graph from what sysfs shows now.
    ///
    /// Devices are found through the class and bus directories, then read in
    /// parallel (each device's directory opened once, see
    /// [`crate::sysfs::DeviceDir`]) while another thread reads the by-* links, and
    /// put in place parents first.
    pub fn load(sysfs: &Sysfs) -> Graph {
        Graph::load_with(sysfs, Detail::Full)
    }

    /// Cold plug reading only what `detail` asks for: [`Detail::Listing`] for the
    /// text views, which show a few attributes of many LUNs. Such a graph is for
    /// display only: the agent and the planner use [`Graph::load`].
    pub fn load_with(sysfs: &Sysfs, detail: Detail) -> Graph {
        let mut found: Vec<(usize, String, DeviceClass)> = Vec::new();
        let mut push = |devpath: String, class| found.push((depth(&devpath), devpath, class));
        let owner = |class_devpath: String| {
            parent_devpath(&class_devpath)
                .and_then(parent_devpath)
                .map(str::to_string)
        };
        for (class_dir, class) in [
            ("scsi_host", DeviceClass::Host),
            ("fc_vports", DeviceClass::Vport),
            ("fc_remote_ports", DeviceClass::RemotePort),
        ] {
            for devpath in sysfs
                .class_devpaths(class_dir)
                .into_iter()
                .filter_map(owner)
            {
                push(devpath, class);
            }
        }
        for devpath in sysfs.scsi_bus_devpaths() {
            if let Some(class @ (DeviceClass::Target | DeviceClass::Lun | DeviceClass::Host)) =
                DeviceClass::of_name(devpath_name(&devpath))
            {
                push(devpath, class);
            }
        }
        // Parents before children, so every node finds its parent already in place.
        found.sort_by(depth_order);
        found.dedup_by(|a, b| a.1 == b.1);

        let (parts, links) = std::thread::scope(|scope| {
            let links = scope.spawn(|| sysfs.stable_links());
            let index = sysfs.block_index();
            let parts = read_all(sysfs, &found, detail, &index);
            let links = links
                .join()
                .unwrap_or_else(|e| std::panic::resume_unwind(e));
            (parts, links)
        });
        drop(found);
        let mut graph = Graph::new();
        let total = parts.iter().map(|p| p.devices.len() + p.disks.len()).sum();
        graph.slots.reserve_exact(total);
        graph.by_devpath.reserve(total);
        // Each part is in the order found (parents first) and is freed once in
        // place, so that the devices read are never held twice; disks, which
        // nothing sits under, go last.
        let mut disks = Vec::with_capacity(parts.len());
        for part in parts {
            for (devpath, kind) in part.devices {
                graph.insert_at(devpath, kind);
            }
            disks.push(part.disks);
        }
        for (devpath, mut disk) in disks.into_iter().flatten() {
            disk.links = links.paths_of(&disk.info.name);
            graph.insert_at(devpath, NodeKind::Disk(disk));
        }
        graph
    }

    pub fn len(&self) -> usize {
        self.by_devpath.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_devpath.is_empty()
    }

    pub fn node(&self, devpath: &str) -> Option<&Node> {
        self.by_devpath.get(devpath).map(|&id| self.at(id))
    }

    /// The id of the node at a devpath, valid until that node is removed.
    pub fn id(&self, devpath: &str) -> Option<NodeId> {
        self.by_devpath.get(devpath).copied()
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
                .iter()
                .map(|&c| self.at(c).devpath.to_string())
                .collect(),
            kind: node.kind.clone(),
        }
    }

    fn record_at(&self, id: NodeId) -> NodeRecord {
        self.record(self.at(id))
    }

    /// A node's record for a notice, shared with earlier notices of the node when
    /// nothing in the graph changed in between.
    fn shared_record(&mut self, id: NodeId) -> Arc<NodeRecord> {
        let cache = &mut self.notice_records;
        if cache.made_at != cache.generation || cache.made.len() >= NoticeRecords::MAX {
            cache.clear();
            cache.made_at = cache.generation;
        }
        if let Some(record) = cache.get(id) {
            return record.clone();
        }
        let record = Arc::new(self.record_at(id));
        self.notice_records.put(id, record.clone());
        record
    }

    /// Something in the graph changed: records made before may be wrong now.
    fn changed(&mut self) {
        self.notice_records.generation += 1;
    }

    /// The nearest ancestor of a devpath that is in the graph, looked for among
    /// its nearest [`MAX_DEVPATH_DEPTH`] ancestors: every ancestor of a devpath an
    /// event may carry, and a bounded cost (each step hashes a prefix) for a deeper
    /// path read from a sysfs tree, which then hangs from no node.
    fn parent_of(&self, devpath: &str) -> Option<NodeId> {
        std::iter::successors(parent_devpath(devpath), |p| parent_devpath(p))
            .take(MAX_DEVPATH_DEPTH)
            .find_map(|p| self.by_devpath.get(p).copied())
    }

    /// Adds a node under its nearest ancestor in the graph, or updates it if present.
    /// Events and loads go through here; tests use it to build graphs by hand.
    pub fn insert(&mut self, devpath: String, kind: NodeKind) -> NodeId {
        self.insert_at(Devpath::from(devpath), kind)
    }

    fn insert_at(&mut self, devpath: Devpath, kind: NodeKind) -> NodeId {
        if let Some(&id) = self.by_devpath.get(&*devpath) {
            self.replace_kind(id, kind);
            return id;
        }
        self.changed();
        let parent = self.parent_of(&devpath);
        let node = Node {
            devpath: devpath.clone(),
            kind,
            parent,
            children: Vec::new(),
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
        self.by_devpath.insert(devpath, id);
        self.index(id);
        id
    }

    /// Where a devpath is, or would go, among a node's sorted children.
    fn child_position(&self, parent: NodeId, devpath: &str) -> Result<usize, usize> {
        let children = &self.at(parent).children;
        // Cold plug inserts in devpath order: most children go last.
        match children.last() {
            None => return Err(0),
            Some(&last) if &*self.at(last).devpath < devpath => return Err(children.len()),
            _ => {}
        }
        children.binary_search_by(|&c| (*self.at(c).devpath).cmp(devpath))
    }

    /// Replaces a node's attributes; returns the old ones when they differ.
    fn replace_kind(&mut self, id: NodeId, kind: NodeKind) -> Option<NodeKind> {
        if self.at(id).kind == kind {
            return None;
        }
        self.changed();
        self.unindex(id);
        let old = std::mem::replace(&mut self.at_mut(id).kind, kind);
        self.index(id);
        Some(old)
    }

    /// Removes a node and everything below it; returns them deepest first, the order
    /// in which the kernel reports removals, each as it was in the graph.
    fn remove_subtree(&mut self, devpath: &str) -> Vec<NodeRecord> {
        let Some(&root) = self.by_devpath.get(devpath) else {
            return Vec::new();
        };
        self.changed();
        let mut order = vec![root];
        let mut i = 0;
        while i < order.len() {
            order.extend(self.at(order[i]).children.iter().copied());
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
            if let Some(node) = self.slots[id.index()].take() {
                self.by_devpath.remove(&*node.devpath);
            }
            self.free.push(id);
        }
        removed
    }

    fn index(&mut self, id: NodeId) {
        let kind = &self.at(id).kind;
        let (wwpn, key) = (kind.wwpn(), IndexKey::of(kind));
        if let Some(w) = wwpn {
            let ids = self.by_wwpn.entry(w).or_default();
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        match key {
            Some(IndexKey::Host(n)) => {
                self.by_host.insert(n, id);
            }
            Some(IndexKey::Hctl(h)) => {
                self.by_hctl.insert(h, id);
            }
            Some(IndexKey::Disk(name)) => {
                self.by_disk.insert(name, id);
            }
            None => {}
        }
    }

    fn unindex(&mut self, id: NodeId) {
        let Some(node) = self.get(id) else { return };
        let (wwpn, key) = (node.kind.wwpn(), IndexKey::of(&node.kind));
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
        match key {
            Some(IndexKey::Host(n)) => remove_if_points_to(&mut self.by_host, &n, id),
            Some(IndexKey::Hctl(h)) => remove_if_points_to(&mut self.by_hctl, &h, id),
            Some(IndexKey::Disk(name)) => remove_if_points_to(&mut self.by_disk, &name, id),
            None => {}
        }
    }

    /// What changed between two graphs (a resync after lost events): removals deepest
    /// first, then additions parents first, then updates.
    pub fn diff(old: &Graph, new: &Graph) -> Vec<Change> {
        let depth = |p: &str| p.bytes().filter(|&c| c == b'/').count();
        let mut removed: Vec<&Node> = old
            .nodes()
            .filter(|n| !new.by_devpath.contains_key(&*n.devpath))
            .collect();
        removed.sort_by(|a, b| {
            depth(&b.devpath)
                .cmp(&depth(&a.devpath))
                .then(a.devpath.cmp(&b.devpath))
        });
        let mut added: Vec<&Node> = new
            .nodes()
            .filter(|n| !old.by_devpath.contains_key(&*n.devpath))
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
                node: old.record(n),
            })
            .chain(added.into_iter().map(|n| Change::Added {
                node: new.record(n),
            }))
            .chain(updated.into_iter().map(|(o, n)| Change::Updated {
                before: o.kind.clone(),
                node: new.record(n),
            }))
            .collect()
    }
}

/// The index a node's kind puts it in (besides the WWPN's), copied out of the node
/// so that the index can change while the node is not borrowed.
enum IndexKey {
    Host(u32),
    Hctl(Hctl),
    Disk(Box<str>),
}

impl IndexKey {
    /// A node whose name gives no number carries [`UNNUMBERED`]: it stays out of
    /// the host and H:C:T:L indexes, so that two such nodes never share a slot and
    /// no name, policy `parent` or lookup can select one by that number.
    fn of(kind: &NodeKind) -> Option<IndexKey> {
        match kind {
            NodeKind::Host(h) if h.scsi.number == UNNUMBERED => None,
            NodeKind::Host(h) => Some(IndexKey::Host(h.scsi.number)),
            NodeKind::Lun(l) if l.hctl.host == UNNUMBERED => None,
            NodeKind::Lun(l) => Some(IndexKey::Hctl(l.hctl)),
            NodeKind::Disk(d) => Some(IndexKey::Disk(d.info.name.as_str().into())),
            _ => None,
        }
    }
}

fn remove_if_points_to<K: std::hash::Hash + Eq>(map: &mut HashMap<K, NodeId>, key: &K, id: NodeId) {
    if map.get(key) == Some(&id) {
        map.remove(key);
    }
}

/// How deep a devpath is: parents are shallower than their children.
fn depth(devpath: &str) -> usize {
    devpath.bytes().filter(|&c| c == b'/').count()
}

/// Shallower first, then by devpath: the order in which cold plug inserts.
fn depth_order<T>(a: &(usize, String, T), b: &(usize, String, T)) -> std::cmp::Ordering {
    a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1))
}

/// Below this many devices cold plug reads them on the calling thread.
const PARALLEL_MIN: usize = 256;

/// The devices one reader read, in the order found, and the disks of its LUNs.
/// Devpaths are made here, in the form the graph keeps, so that putting them in
/// place copies nothing.
struct ReadPart {
    devices: Vec<(Devpath, NodeKind)>,
    disks: Vec<(Devpath, Disk)>,
}

/// Reads every device found, in parts that keep the order found; spread over
/// the machine's cores for large trees (the reads are system calls, not CPU).
fn read_all(
    sysfs: &Sysfs,
    found: &[(usize, String, DeviceClass)],
    detail: Detail,
    index: &BlockIndex,
) -> Vec<ReadPart> {
    let read_some = |part: &[(usize, String, DeviceClass)]| {
        let mut out = ReadPart {
            devices: Vec::with_capacity(part.len()),
            disks: Vec::new(),
        };
        for (_, devpath, class) in part {
            if *class == DeviceClass::Lun {
                if let Ok((lun, disks)) = sysfs.read_lun_and_disks(devpath, detail, index) {
                    for info in disks {
                        let disk = Devpath::from(format!("{devpath}/block/{}", info.name));
                        out.disks.push((
                            disk,
                            Disk {
                                info,
                                links: Vec::new(),
                            },
                        ));
                    }
                    out.devices
                        .push((devpath.as_str().into(), NodeKind::Lun(Box::new(lun))));
                    continue;
                }
            }
            out.devices
                .push((devpath.as_str().into(), read_kind(sysfs, devpath, *class)));
        }
        out
    };
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8);
    if found.len() < PARALLEL_MIN || threads == 1 {
        return vec![read_some(found)];
    }
    let chunk = found.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let parts: Vec<_> = found
            .chunks(chunk)
            .map(|part| scope.spawn(move || read_some(part)))
            .collect();
        parts
            .into_iter()
            .map(|p| p.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

/// The host number of a node whose name gives none (a forged or replayed event's
/// odd devpath, a device gone before it was read): the parsers of names never
/// give it (`crate::sysfs::host_number` stays below it), and the indexes leave
/// such nodes out.
const UNNUMBERED: u32 = u32::MAX;

/// Reads one device's attributes; a device already gone from sysfs (its removal event
/// is on the way) still gets a node with what its name tells, so that the events
/// that follow find it.
pub(crate) fn read_kind(sysfs: &Sysfs, devpath: &str, class: DeviceClass) -> NodeKind {
    let name = devpath_name(devpath);
    match class {
        DeviceClass::Host => {
            let scsi = sysfs
                .read_scsi_host(devpath)
                .unwrap_or_else(|_| ScsiHostInfo {
                    number: host_number(name).unwrap_or(UNNUMBERED),
                    proc_name: None,
                    unique_id: None,
                    state: None,
                });
            let fc = sysfs.read_fc_host(devpath).ok().flatten();
            NodeKind::Host(Box::new(Host { scsi, fc }))
        }
        DeviceClass::Vport => {
            NodeKind::Vport(Box::new(sysfs.read_vport(devpath).unwrap_or_else(|_| {
                VportInfo {
                    name: name.to_string(),
                    wwpn: None,
                    wwnn: None,
                    vport_state: None,
                    vport_last_state: None,
                    vport_type: None,
                    symbolic_name: None,
                    roles: None,
                }
            })))
        }
        DeviceClass::RemotePort => {
            NodeKind::RemotePort(Box::new(sysfs.read_remote_port(devpath).unwrap_or_else(
                |_| RemotePortInfo {
                    name: name.to_string(),
                    wwpn: None,
                    wwnn: None,
                    port_id: None,
                    roles: Vec::new(),
                    port_state: None,
                    scsi_target_id: None,
                },
            )))
        }
        DeviceClass::Target => NodeKind::Target(sysfs.read_target(devpath).unwrap_or_else(|_| {
            let (host, channel, id) = target_address(name).unwrap_or((UNNUMBERED, 0, 0));
            TargetInfo {
                name: name.to_string(),
                host,
                channel,
                id,
            }
        })),
        DeviceClass::Lun => NodeKind::Lun(Box::new(sysfs.read_lun(devpath).unwrap_or_else(|_| {
            LunInfo {
                hctl: name.parse().unwrap_or(Hctl {
                    host: UNNUMBERED,
                    channel: 0,
                    target: 0,
                    lun: 0,
                }),
                vendor: None,
                model: None,
                rev: None,
                scsi_type: None,
                state: None,
                wwid: None,
                serial: None,
                driver: None,
            }
        }))),
        DeviceClass::Disk => {
            let info = sysfs.read_block(devpath).unwrap_or_else(|_| BlockInfo {
                name: name.to_string(),
                major_minor: None,
                size_bytes: None,
                read_only: None,
                removable: None,
                multipath: None,
            });
            NodeKind::Disk(Disk {
                info,
                links: Vec::new(),
            })
        }
    }
}

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
