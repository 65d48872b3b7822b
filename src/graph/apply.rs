//! Keeping the graph current, one kernel event at a time.

use std::borrow::Cow;
use std::fmt;

use serde::Serialize;

use super::{
    devpath_name, event_class, read_kind, removes, DeviceClass, Devpath, Graph, NodeId, NodeKind,
    NodeRecord,
};
use crate::sysfs::{Hctl, Sysfs};
use crate::uevent::{Action, UeventRef};

/// What an event did to the graph.
///
/// Changes carry a record of the node so that a consumer can still describe a device
/// the event removed. The records are boxed: a storm fills the batch's list with
/// notices, one per LUN, and inline every one of them would be as large as the
/// largest record (280 bytes, not 88): on a large host the list alone outgrew the
/// CPU's cache that the graph's lookups need.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    Added {
        node: Box<NodeRecord>,
    },
    Removed {
        node: Box<NodeRecord>,
    },
    Updated {
        before: Box<NodeKind>,
        node: Box<NodeRecord>,
    },
    Moved {
        from: String,
        to: String,
    },
    /// Something the device reported that changes nothing in the graph but may call
    /// for action: a unit attention, a media change. It names the device and does
    /// not copy it: a storm notices thousands of LUNs, and the device is in the
    /// graph, unchanged by the notice, when the batch is planned.
    Notice {
        node: Noticed,
        notice: Notice,
    },
}

/// The device a notice came from: its devpath and its parent's, shared with the
/// graph (no allocation per event), and its SCSI address when it is a LUN.
#[derive(Clone, Debug)]
pub struct Noticed {
    at: NoticedAt,
}

/// How a [`Noticed`] names its device.
#[derive(Clone, Debug)]
enum NoticedAt {
    /// A LUN whose devpath is its parent's, a `/` and its address as the kernel
    /// prints it (every LUN below a target the graph holds): a storm's notice
    /// then touches nothing of the LUN's own devpath, whose text is a cache miss
    /// per LUN on a host of tens of thousands.
    Lun { parent: Devpath, hctl: Hctl },
    /// Any other device, or a LUN named otherwise: its devpath, shared.
    Devpath {
        devpath: Devpath,
        parent: Option<Devpath>,
        hctl: Option<Hctl>,
    },
}

impl Noticed {
    /// A LUN found by its address (`Graph::lun_by_address`): `parent` is its
    /// parent's devpath and the LUN's is `parent/H:C:T:L`.
    pub(super) fn lun(parent: Devpath, hctl: Hctl) -> Noticed {
        Noticed {
            at: NoticedAt::Lun { parent, hctl },
        }
    }

    pub(super) fn at(devpath: Devpath, parent: Option<Devpath>, hctl: Option<Hctl>) -> Noticed {
        Noticed {
            at: NoticedAt::Devpath {
                devpath,
                parent,
                hctl,
            },
        }
    }

    pub fn devpath(&self) -> Cow<'_, str> {
        match &self.at {
            NoticedAt::Devpath { devpath, .. } => Cow::Borrowed(devpath),
            NoticedAt::Lun { parent, hctl } => Cow::Owned(format!("{parent}/{hctl}")),
        }
    }

    /// The devpath of the device's parent, when it has one.
    pub fn parent(&self) -> Option<&Devpath> {
        match &self.at {
            NoticedAt::Lun { parent, .. } => Some(parent),
            NoticedAt::Devpath { parent, .. } => parent.as_ref(),
        }
    }

    pub fn name(&self) -> Cow<'_, str> {
        match &self.at {
            NoticedAt::Devpath { devpath, .. } => Cow::Borrowed(devpath_name(devpath)),
            NoticedAt::Lun { hctl, .. } => Cow::Owned(hctl.to_string()),
        }
    }

    /// The device's SCSI address, when it is a LUN.
    pub fn hctl(&self) -> Option<Hctl> {
        match &self.at {
            NoticedAt::Lun { hctl, .. } => Some(*hctl),
            NoticedAt::Devpath { hctl, .. } => *hctl,
        }
    }

    /// Tells one device from another within a batch, by the shared text of its
    /// devpath (a LUN named by its address: its parent's, and the address), not by
    /// reading it: clones of one devpath are one device, not one removed and found
    /// again in between.
    pub fn identity(&self) -> (usize, Option<Hctl>) {
        match &self.at {
            NoticedAt::Lun { parent, hctl } => (parent.addr(), Some(*hctl)),
            NoticedAt::Devpath { devpath, .. } => (devpath.addr(), None),
        }
    }
}

/// Equal when they name the same device, however each names it.
impl PartialEq for Noticed {
    fn eq(&self, other: &Self) -> bool {
        self.parent() == other.parent()
            && self.hctl() == other.hctl()
            && self.devpath() == other.devpath()
    }
}

impl Eq for Noticed {}

/// As the node records of other changes: its devpath and its parent's.
impl Serialize for Noticed {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Noticed", 2)?;
        st.serialize_field("devpath", &self.devpath())?;
        st.serialize_field("parent", &self.parent())?;
        st.end()
    }
}

impl From<NodeRecord> for Noticed {
    fn from(node: NodeRecord) -> Self {
        let hctl = match &node.kind {
            NodeKind::Lun(l) => Some(l.hctl),
            _ => None,
        };
        Noticed::at(
            Devpath::from(node.devpath.as_str()),
            node.parent.as_deref().map(Devpath::from),
            hctl,
        )
    }
}

impl Change {
    /// The devpath of the device the change is about (a move names two).
    pub fn devpath(&self) -> Option<Cow<'_, str>> {
        match self {
            Change::Added { node } | Change::Removed { node } | Change::Updated { node, .. } => {
                Some(Cow::Borrowed(&node.devpath))
            }
            Change::Notice { node, .. } => Some(node.devpath()),
            Change::Moved { .. } => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "notice", content = "reason", rename_all = "snake_case")]
pub enum Notice {
    /// `SDEV_UA=<reason>` on a scsi_device change (REPORTED_LUNS_DATA_HAS_CHANGED, ...).
    UnitAttention(UaReason),
    /// `SDEV_MEDIA_CHANGE=1`.
    MediaChange,
}

/// What a unit attention reports, as the midlayer words it in `SDEV_UA`. The
/// reasons the kernel sends are kept without a copy: a storm repeats one of them
/// on every LUN of a target, thousands of times. Any other is copied (it is at
/// most a datagram long).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct UaReason(Cow<'static, str>);

/// The `SDEV_UA` values of scsi_lib.c's `sdev_evt_send`.
const KERNEL_UA_REASONS: [&str; 7] = [
    "INQUIRY_DATA_HAS_CHANGED",
    "CAPACITY_DATA_HAS_CHANGED",
    "THIN_PROVISIONING_SOFT_THRESHOLD_REACHED",
    "MODE_PARAMETERS_CHANGED",
    "REPORTED_LUNS_DATA_HAS_CHANGED",
    "ASYMMETRIC_ACCESS_STATE_CHANGED",
    "POWER_ON_RESET_OCCURRED",
];

impl UaReason {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for UaReason {
    fn from(reason: &str) -> Self {
        UaReason(match KERNEL_UA_REASONS.iter().find(|&&k| k == reason) {
            Some(known) => Cow::Borrowed(known),
            None => Cow::Owned(reason.to_string()),
        })
    }
}

impl std::ops::Deref for UaReason {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for UaReason {
    fn eq(&self, other: &str) -> bool {
        *self.0 == *other
    }
}

impl PartialEq<&str> for UaReason {
    fn eq(&self, other: &&str) -> bool {
        *self.0 == **other
    }
}

impl fmt::Display for UaReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Graph {
    /// Applies one event and says what it changed. Events for subsystems the graph
    /// does not model (bsg, scsi_generic, workqueue, partitions...) change nothing.
    pub fn apply<'e>(&mut self, ev: impl Into<UeventRef<'e>>, sysfs: &Sysfs) -> Vec<Change> {
        let mut changes = Vec::new();
        self.apply_into(ev.into(), sysfs, &mut changes);
        changes
    }

    /// Applies one event as [`Graph::apply`] does, adding what it changed to
    /// `changes`: a batch of events fills one list. A unit attention on a LUN the
    /// graph knows costs one lookup and allocates nothing (the list aside).
    pub fn apply_into(&mut self, ev: UeventRef<'_>, sysfs: &Sysfs, changes: &mut Vec<Change>) {
        let Some((class, devpath)) = event_class(&ev) else {
            return;
        };
        // The device is the event's own, or (class devices) an ancestor of it,
        // whose devpath is a prefix of the event's.
        let class_event = devpath.len() != ev.devpath.len();
        if removes(ev.action) {
            match ev.subsystem {
                // The host itself goes with the `scsi` removal that follows.
                "scsi_host" => {}
                "fc_host" => {
                    if let Some((id, NodeKind::Host(h))) =
                        self.id(devpath).map(|id| (id, &self.at(id).kind))
                    {
                        let mut h = h.clone();
                        h.fc = None;
                        self.update(id, NodeKind::Host(h), changes);
                    }
                }
                _ => {
                    let parent = self.node(devpath).and_then(|n| n.parent);
                    changes.extend(self.remove_subtree(devpath).into_iter().map(|node| {
                        Change::Removed {
                            node: Box::new(node),
                        }
                    }));
                    if class == DeviceClass::Vport {
                        self.refresh_parent_host(parent, sysfs, changes);
                    }
                }
            }
            return;
        }
        if ev.action == Action::Move && !class_event {
            if let Some(old) = ev.devpath_old {
                self.rename(old, devpath, changes);
            }
        }
        // A LUN is found by its address first: a storm's lookups then read no
        // devpath of the graph's (see `Graph::lun_by_address`).
        let by_address = match class {
            DeviceClass::Lun => self.lun_by_address(devpath),
            _ => None,
        };
        let mut id = by_address.map(|(id, _)| id).or_else(|| self.id(devpath));
        // A unit attention on a LUN the graph knows changes none of the attributes
        // kept here (INQUIRY_DATA_HAS_CHANGED aside: vendor, model, rev), so the
        // device is not re-read: in a storm that re-read was most of the cost.
        let attributes_unchanged = class == DeviceClass::Lun
            && ev.action == Action::Change
            && ev
                .unit_attention
                .is_some_and(|ua| ua != "INQUIRY_DATA_HAS_CHANGED")
            && id.is_some();
        if !attributes_unchanged {
            let mut kind = read_kind(sysfs, devpath, class);
            if let NodeKind::Disk(disk) = &mut kind {
                disk.links = match ev.devlinks {
                    // udev's view: the links it just made.
                    Some(links) => stable_links_of(links),
                    // The kernel's view says nothing of links; keep what we knew.
                    None => match id.map(|id| &self.at(id).kind) {
                        Some(NodeKind::Disk(old)) => old.links.clone(),
                        _ => Vec::new(),
                    },
                };
            }
            match id {
                Some(id) => self.update(id, kind, changes),
                None => {
                    let added = self.insert(devpath.to_string(), kind);
                    id = Some(added);
                    changes.push(Change::Added {
                        node: Box::new(self.record_at(added)),
                    });
                }
            }
        }
        if class == DeviceClass::Vport {
            // A vport's arrival or departure changes its parent's npiv_vports_inuse,
            // which the kernel announces with no event of its own.
            let parent = id.and_then(|id| self.at(id).parent);
            self.refresh_parent_host(parent, sysfs, changes);
        }
        if class == DeviceClass::Lun && ev.action == Action::Change {
            let notice = match ev.unit_attention {
                Some(ua) => Some(Notice::UnitAttention(UaReason::from(ua))),
                None => (ev.media_change == Some("1")).then_some(Notice::MediaChange),
            };
            if let (Some(notice), Some(id)) = (notice, id) {
                changes.push(Change::Notice {
                    node: match by_address {
                        Some((_, hctl)) => self.noticed_by_address(id, hctl),
                        None => self.noticed(id),
                    },
                    notice,
                });
            }
        }
    }

    /// Re-reads one device's attributes from sysfs. For what changes with no uevent at
    /// all: an FC port's `port_state` and `fabric_name`, `npiv_vports_inuse`, a vport's
    /// `vport_state`. A device already gone from sysfs is left for its removal event.
    pub fn refresh(&mut self, devpath: &str, sysfs: &Sysfs) -> Vec<Change> {
        let mut changes = Vec::new();
        let Some(id) = self.id(devpath) else {
            return changes;
        };
        let node = self.at(id);
        if !sysfs.exists(devpath) {
            return changes;
        }
        let class = match &node.kind {
            NodeKind::Host(_) => DeviceClass::Host,
            NodeKind::Vport(_) => DeviceClass::Vport,
            NodeKind::RemotePort(_) => DeviceClass::RemotePort,
            NodeKind::Target(_) => DeviceClass::Target,
            NodeKind::Lun(_) => DeviceClass::Lun,
            NodeKind::Disk(_) => DeviceClass::Disk,
        };
        let old_links = match &node.kind {
            NodeKind::Disk(d) => Some(d.links.clone()),
            _ => None,
        };
        let mut kind = read_kind(sysfs, devpath, class);
        if let (NodeKind::Disk(d), Some(links)) = (&mut kind, old_links) {
            d.links = links;
        }
        self.update(id, kind, &mut changes);
        changes
    }

    fn update(&mut self, id: NodeId, kind: NodeKind, changes: &mut Vec<Change>) {
        if let Some(before) = self.replace_kind(id, kind) {
            changes.push(Change::Updated {
                before: Box::new(before),
                node: Box::new(self.record_at(id)),
            });
        }
    }

    fn refresh_parent_host(
        &mut self,
        parent: Option<NodeId>,
        sysfs: &Sysfs,
        changes: &mut Vec<Change>,
    ) {
        let Some(parent) = parent.and_then(|p| Some((p, self.get(p)?))) else {
            return;
        };
        if let (
            id,
            node @ super::Node {
                kind: NodeKind::Host(_),
                ..
            },
        ) = parent
        {
            let kind = read_kind(sysfs, &node.devpath.clone(), DeviceClass::Host);
            self.update(id, kind, changes);
        }
    }

    /// A `move`: the subtree keeps its attributes under a new devpath.
    fn rename(&mut self, old: &str, new: &str, changes: &mut Vec<Change>) {
        if old == new || self.id(old).is_none() {
            return;
        }
        let mut moved = self.remove_subtree(old);
        moved.reverse(); // parents first
        for node in moved {
            let path = format!("{new}{}", &node.devpath[old.len()..]);
            self.insert(path, node.kind);
        }
        changes.push(Change::Moved {
            from: old.to_string(),
            to: new.to_string(),
        });
    }
}

/// The stable links among udev's DEVLINKS: by-path, by-id and hbad's by-vhba.
pub fn stable_links_of(devlinks: &str) -> Vec<String> {
    let mut links: Vec<String> = devlinks
        .split_whitespace()
        .filter(|l| {
            crate::sysfs::STABLE_LINK_DIRS
                .iter()
                .any(|d| l.starts_with(&format!("/dev/disk/{d}/")))
        })
        .map(str::to_string)
        .collect();
    links.sort();
    links
}
