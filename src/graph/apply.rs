//! Keeping the graph current, one kernel event at a time.

use std::sync::Arc;

use serde::Serialize;

use super::{event_class, read_kind, removes, DeviceClass, Graph, NodeId, NodeKind, NodeRecord};
use crate::sysfs::Sysfs;
use crate::uevent::{Action, Uevent};

/// What an event did to the graph.
///
/// Changes carry a record of the node so that a consumer can still describe a device
/// the event removed; they are short-lived, so their size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    Added {
        node: NodeRecord,
    },
    Removed {
        node: NodeRecord,
    },
    Updated {
        before: NodeKind,
        node: NodeRecord,
    },
    Moved {
        from: String,
        to: String,
    },
    /// Something the device reported that changes nothing in the graph but may call
    /// for action: a unit attention, a media change. The record is shared: a storm
    /// repeats notices of the same LUNs, and until the graph changes, each LUN's
    /// record is made once.
    Notice {
        node: Arc<NodeRecord>,
        notice: Notice,
    },
}

impl Change {
    pub fn node(&self) -> Option<&NodeRecord> {
        match self {
            Change::Added { node } | Change::Removed { node } | Change::Updated { node, .. } => {
                Some(node)
            }
            Change::Notice { node, .. } => Some(node),
            Change::Moved { .. } => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "notice", content = "reason", rename_all = "snake_case")]
pub enum Notice {
    /// `SDEV_UA=<reason>` on a scsi_device change (REPORTED_LUNS_DATA_HAS_CHANGED, ...).
    UnitAttention(String),
    /// `SDEV_MEDIA_CHANGE=1`.
    MediaChange,
}

impl Graph {
    /// Applies one event and says what it changed. Events for subsystems the graph
    /// does not model (bsg, scsi_generic, workqueue, partitions...) change nothing.
    pub fn apply(&mut self, ev: &Uevent, sysfs: &Sysfs) -> Vec<Change> {
        let Some((class, devpath)) = event_class(ev) else {
            return Vec::new();
        };
        let class_event = devpath != ev.devpath;
        let mut changes = Vec::new();
        if removes(ev.action) {
            match ev.subsystem.as_str() {
                // The host itself goes with the `scsi` removal that follows.
                "scsi_host" => {}
                "fc_host" => {
                    if let Some((id, NodeKind::Host(h))) =
                        self.id(devpath).map(|id| (id, &self.at(id).kind))
                    {
                        let mut h = h.clone();
                        h.fc = None;
                        self.update(id, NodeKind::Host(h), &mut changes);
                    }
                }
                _ => {
                    let parent = self.node(devpath).and_then(|n| n.parent);
                    changes.extend(
                        self.remove_subtree(devpath)
                            .into_iter()
                            .map(|node| Change::Removed { node }),
                    );
                    if class == DeviceClass::Vport {
                        self.refresh_parent_host(parent, sysfs, &mut changes);
                    }
                }
            }
            return changes;
        }
        if ev.action == Action::Move && !class_event {
            if let Some(old) = ev.prop("DEVPATH_OLD") {
                self.rename(old, devpath, &mut changes);
            }
        }
        // A unit attention on a LUN the graph knows changes none of the attributes
        // kept here (INQUIRY_DATA_HAS_CHANGED aside: vendor, model, rev), so the
        // device is not re-read: in a storm that re-read was most of the cost.
        let attributes_unchanged = class == DeviceClass::Lun
            && ev.action == Action::Change
            && ev
                .unit_attention()
                .is_some_and(|ua| ua != "INQUIRY_DATA_HAS_CHANGED")
            && self.id(devpath).is_some();
        if !attributes_unchanged {
            let mut kind = read_kind(sysfs, devpath, class);
            if let NodeKind::Disk(disk) = &mut kind {
                disk.links = match ev.prop("DEVLINKS") {
                    // udev's view: the links it just made.
                    Some(links) => stable_links_of(links),
                    // The kernel's view says nothing of links; keep what we knew.
                    None => match self.node(devpath).map(|n| &n.kind) {
                        Some(NodeKind::Disk(old)) => old.links.clone(),
                        _ => Vec::new(),
                    },
                };
            }
            match self.id(devpath) {
                Some(id) => self.update(id, kind, &mut changes),
                None => {
                    let id = self.insert(devpath.to_string(), kind);
                    changes.push(Change::Added {
                        node: self.record_at(id),
                    });
                }
            }
        }
        if class == DeviceClass::Vport {
            // A vport's arrival or departure changes its parent's npiv_vports_inuse,
            // which the kernel announces with no event of its own.
            let parent = self.node(devpath).and_then(|n| n.parent);
            self.refresh_parent_host(parent, sysfs, &mut changes);
        }
        if class == DeviceClass::Lun && ev.action == Action::Change {
            let notice = if let Some(ua) = ev.unit_attention() {
                Some(Notice::UnitAttention(ua.to_string()))
            } else {
                (ev.prop("SDEV_MEDIA_CHANGE") == Some("1")).then_some(Notice::MediaChange)
            };
            if let (Some(notice), Some(id)) = (notice, self.id(devpath)) {
                changes.push(Change::Notice {
                    node: self.shared_record(id),
                    notice,
                });
            }
        }
        changes
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
                before,
                node: self.record_at(id),
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
