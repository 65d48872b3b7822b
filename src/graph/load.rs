//! Cold plug: the graph built from what sysfs shows now.
//!
//! The walk follows the kernel's own nesting, so that each device's directory is
//! opened once and relative to its parent's. `class/scsi_host`, `class/fc_vports`
//! and `class/fc_remote_ports` name the hosts, vports and remote ports, and
//! `bus/scsi/devices` the hosts and targets (a readlink each: a few per host). The
//! LUNs are found by listing each target's directory, never by resolving the bus
//! link of each of tens of thousands of LUNs (see [`ScsiBus`]), and read relative
//! to it; their disks come from one pass over `block/` ([`BlockIndex`]) and the
//! by-* links from one pass over `/dev/disk` ([`crate::sysfs::StableLinks`]), both
//! on threads of their own while the devices are read.
//!
//! The reading is spread over the machine's cores in two rounds: hosts, ports and
//! targets (listing the LUNs of each), then the LUNs in blocks of one target each.
//! The nodes are put in place parents first, in the order of a walk by depth then
//! devpath, whatever the order they were read in.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::{DeviceClass, Devpath, Disk, Graph, Host, NodeId, NodeKind, UNNUMBERED};
use crate::sysfs::{
    devpath_name, host_number, parent_devpath, read_lun_dir_with, target_address, BlockIndex,
    BlockInfo, Detail, DeviceDir, Hctl, LunInfo, RemotePortInfo, ScsiBus, ScsiHostInfo,
    StableLinks, Sysfs, TargetInfo, VportInfo,
};

/// LUNs read as one piece of work: enough to make opening their target's
/// directory once cheap, few enough to share the LUNs of one large target among
/// the cores.
const LUN_BLOCK: usize = 128;

/// Below this many pieces of work, reading stays on the calling thread.
const PARALLEL_MIN: usize = 4;

impl Graph {
    /// Cold plug: builds the graph from what sysfs shows now, every attribute read.
    pub fn load(sysfs: &Sysfs) -> Graph {
        Graph::load_with(sysfs, Detail::Full)
    }

    /// Cold plug reading only what `detail` asks for: [`Detail::Agent`] for the
    /// agent, [`Detail::Listing`] for the text views. The graph keeps its detail:
    /// what events bring later is kept to it too.
    pub fn load_with(sysfs: &Sysfs, detail: Detail) -> Graph {
        let (devices, luns, links) = std::thread::scope(|scope| {
            let links = scope.spawn(|| sysfs.stable_links());
            let index = scope.spawn(|| sysfs.block_index());
            let bus = sysfs.scsi_bus();
            let found = devices_found(sysfs, &bus);
            let (devices, targets) = read_devices(sysfs, &bus, &found);
            let index = join(index);
            let luns = read_luns(sysfs, &bus, &found, targets, detail, &index);
            (devices, luns, join(links))
        });
        // Parents first: by depth, then devpath. Each list is in that order
        // already (found in that order, LUNs in target order): one pass finds
        // that they follow each other too, and otherwise the stable sort merges
        // them in a pass.
        let lun_count: usize = luns.iter().map(|b| b.luns.len()).sum();
        let mut nodes: Vec<(usize, Devpath, NodeKind)> =
            Vec::with_capacity(devices.len() + lun_count);
        // Each LUN's disks: where they start in `disks`, and how many.
        let mut disks_of = Vec::with_capacity(lun_count);
        let mut disks: Vec<Option<(Devpath, BlockInfo)>> =
            Vec::with_capacity(luns.iter().map(|b| b.disks.len()).sum());
        for (devpath, kind) in devices {
            nodes.push((depth(&devpath), devpath, kind));
        }
        for mut block in luns {
            for lun in block.luns {
                nodes.push((
                    depth(&lun.devpath),
                    lun.devpath,
                    NodeKind::Lun(lun.info.into()),
                ));
                disks_of.push((disks.len(), lun.disks));
                disks.extend(block.disks.by_ref().take(lun.disks).map(Some));
            }
        }
        let mut graph = Graph::new();
        graph.detail = detail;
        let total = nodes.len() + disks.len();
        graph.slots.reserve_exact(total);
        graph.by_devpath.reserve(&graph.slots, &graph.hasher, total);
        graph
            .by_hctl
            .reserve(&graph.slots, &graph.hasher, lun_count);
        graph
            .by_disk
            .reserve(&graph.slots, &graph.hasher, disks.len());
        let first_lun = nodes.len() - lun_count;
        // Disks in the order of their LUNs, after every other device.
        let mut disk_order = Vec::with_capacity(lun_count);
        // The disks' stable links are put together on a thread of their own
        // meanwhile: until the disks go in, the other core would be idle.
        let mut disk_links = std::thread::scope(|scope| {
            let disk_links = scope.spawn(|| links_of_disks(&links, &disks));
            // The parent of the node put in last, for its siblings that follow:
            // the one put in just before a node with the same parent directory is
            // a sibling, never an ancestor, so the nearest ancestor is the same.
            let mut last: Option<(Devpath, Option<NodeId>)> = None;
            let mut insert = |i: usize, devpath: Devpath, kind: NodeKind| {
                let known = last
                    .take()
                    .filter(|(d, _)| parent_devpath(d) == parent_devpath(&devpath))
                    .map(|(_, p)| p);
                let mut found = None;
                graph.insert_under(devpath.clone(), kind, |graph, devpath| {
                    let parent = known.unwrap_or_else(|| graph.parent_of(devpath));
                    found = Some(parent);
                    parent
                });
                // Only a node put in now: one already there keeps its parent.
                last = found.map(|p| (devpath, p));
                if let Some(l) = i.checked_sub(first_lun) {
                    disk_order.push(l);
                }
            };
            if nodes.is_sorted_by(|a, b| order_key(a) <= order_key(b)) {
                // A tree of physical ports alone: hosts, ports, targets, LUNs,
                // each list in order and each deeper than the one before.
                for (i, (_, devpath, kind)) in nodes.into_iter().enumerate() {
                    insert(i, devpath, kind);
                }
            } else {
                let mut order: Vec<usize> = (0..nodes.len()).collect();
                order.sort_by(|&a, &b| order_key(&nodes[a]).cmp(&order_key(&nodes[b])));
                let mut slots: Vec<Option<(usize, Devpath, NodeKind)>> =
                    nodes.into_iter().map(Some).collect();
                for i in order {
                    if let Some((_, devpath, kind)) = slots[i].take() {
                        insert(i, devpath, kind);
                    }
                }
            }
            join(disk_links)
        });
        for l in disk_order {
            let (from, count) = disks_of[l];
            let of_lun = disks.get_mut(from..from + count).unwrap_or_default();
            let links = disk_links.get_mut(from..from + count).unwrap_or_default();
            for (disk, links) in of_lun.iter_mut().zip(links) {
                if let Some((devpath, info)) = disk.take() {
                    let links = std::mem::take(links);
                    graph.insert_at(devpath, NodeKind::Disk(Disk { info, links }));
                }
            }
        }
        graph
    }
}

fn join<T>(handle: std::thread::ScopedJoinHandle<'_, T>) -> T {
    handle
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// Where a node goes: parents first, by depth then devpath.
fn order_key(node: &(usize, Devpath, NodeKind)) -> (usize, &str) {
    (node.0, node.1.as_str())
}

/// The stable links of each disk (`/dev/disk/by-id/...`), in the order of
/// `disks`. Looked up in name order: one pass from one end of the links' index
/// to the other, not a search that starts afresh from its middle for each disk.
fn links_of_disks(links: &StableLinks, disks: &[Option<(Devpath, BlockInfo)>]) -> Vec<Vec<String>> {
    let name = |i: usize| disks[i].as_ref().map_or("", |(_, d)| d.name.as_str());
    let mut by_name: Vec<usize> = (0..disks.len()).collect();
    by_name.sort_unstable_by(|&a, &b| name(a).cmp(name(b)));
    let mut found = vec![Vec::new(); disks.len()];
    for i in by_name {
        found[i] = links.paths_of(name(i));
    }
    found
}

/// How deep a devpath is: parents are shallower than their children.
fn depth(devpath: &str) -> usize {
    devpath.bytes().filter(|&c| c == b'/').count()
}

/// Every host, vport, remote port and target, by depth then devpath, each once.
fn devices_found(sysfs: &Sysfs, bus: &ScsiBus) -> Vec<(String, DeviceClass)> {
    let mut found: Vec<(usize, String, DeviceClass)> = Vec::new();
    let mut push = |devpath: String, class| found.push((depth(&devpath), devpath, class));
    // A class link names the class device (`.../host3/scsi_host/host3`): its
    // owner is two levels up.
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
    for devpath in &bus.hosts {
        push(devpath.clone(), DeviceClass::Host);
    }
    for devpath in &bus.targets {
        push(devpath.clone(), DeviceClass::Target);
    }
    found.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    found.dedup_by(|a, b| a.1 == b.1);
    found.into_iter().map(|(_, d, c)| (d, c)).collect()
}

/// Runs `work` on each of `items`, spread over the machine's cores when there
/// are enough of them; the results in the order of `items`.
fn spread<T: Sync, R: Send>(items: &[T], work: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8)
        .min(items.len());
    if items.len() < PARALLEL_MIN || threads <= 1 {
        return items.iter().map(work).collect();
    }
    // Each thread takes the next item when done with one: pieces of work differ
    // (a target of 4 LUNs, a block of 128), and a fixed share would leave a core
    // idle while the other finishes.
    let next = AtomicUsize::new(0);
    let mut done: Vec<(usize, R)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        out.push((i, work(item)));
                    }
                    out
                })
            })
            .collect();
        workers.into_iter().flat_map(join).collect()
    });
    done.sort_unstable_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

/// A target's LUNs as its directory lists them (those the bus lists too).
struct TargetLuns {
    /// Index of the target in what was found.
    target: usize,
    luns: Vec<(String, Hctl)>,
}

/// Reads the hosts, ports and targets, and lists each target's LUNs.
fn read_devices(
    sysfs: &Sysfs,
    bus: &ScsiBus,
    found: &[(String, DeviceClass)],
) -> (Vec<(Devpath, NodeKind)>, Vec<TargetLuns>) {
    let read = spread(found, |(devpath, class)| {
        if *class != DeviceClass::Target {
            return (read_kind(sysfs, devpath, *class), None);
        }
        let name = devpath_name(devpath);
        let Some(addr @ (host, channel, id)) = target_address(name) else {
            return (read_kind(sysfs, devpath, *class), None);
        };
        let target = NodeKind::Target(TargetInfo {
            name: name.to_string(),
            host,
            channel,
            id,
        });
        let luns = DeviceDir::open(&sysfs.path(devpath))
            .ok()
            .map(|dir| bus.luns_in(addr, &dir));
        (target, luns)
    });
    let mut devices = Vec::with_capacity(found.len());
    let mut targets = Vec::new();
    for (i, ((devpath, _), (kind, luns))) in found.iter().zip(read).enumerate() {
        devices.push((Devpath::from(devpath.as_str()), kind));
        if let Some(luns) = luns.filter(|l| !l.is_empty()) {
            targets.push(TargetLuns { target: i, luns });
        }
    }
    (devices, targets)
}

/// A LUN read; its disks are in its block's list.
struct ReadLun {
    devpath: Devpath,
    info: Box<LunInfo>,
    /// How many of the block's disks are this LUN's (the next ones in order).
    disks: usize,
}

/// LUNs read as one piece of work, and their disks in one list: a list per LUN
/// would be an allocation per LUN kept until the graph is built, each a hole
/// among the graph's attributes once freed (see `daemon::heap`).
#[derive(Default)]
struct ReadBlock {
    luns: Vec<ReadLun>,
    disks: std::vec::IntoIter<(Devpath, BlockInfo)>,
}

/// Reads the LUNs of one block: `devpath` puts each one's devpath in a buffer,
/// `read` reads it (given that devpath) and hands over its disks. Devpaths are
/// put together in one buffer, so that only the graph's own copy of each is
/// allocated.
fn read_block<T>(
    items: &[T],
    devpath: impl Fn(&T, &mut String),
    mut read: impl FnMut(&T, &str, &mut dyn FnMut(BlockInfo)) -> LunInfo,
) -> ReadBlock {
    let mut luns = Vec::with_capacity(items.len());
    let mut disks = Vec::with_capacity(items.len());
    let (mut path, mut found) = (String::new(), Vec::new());
    for item in items {
        path.clear();
        devpath(item, &mut path);
        let info = read(item, &path, &mut |disk| found.push(disk));
        let count = found.len();
        let lun_path = path.len();
        for disk in found.drain(..) {
            path.truncate(lun_path);
            path.push_str("/block/");
            path.push_str(&disk.name);
            disks.push((Devpath::from(path.as_str()), disk));
        }
        path.truncate(lun_path);
        luns.push(ReadLun {
            devpath: Devpath::from(path.as_str()),
            info: Box::new(info),
            disks: count,
        });
    }
    ReadBlock {
        luns,
        disks: disks.into_iter(),
    }
}

/// Reads every LUN: those listed in their targets' directories in blocks spread
/// over the cores, then any the bus lists that no target directory held.
fn read_luns(
    sysfs: &Sysfs,
    bus: &ScsiBus,
    found: &[(String, DeviceClass)],
    targets: Vec<TargetLuns>,
    detail: Detail,
    index: &BlockIndex,
) -> Vec<ReadBlock> {
    let blocks: Vec<(&TargetLuns, std::ops::Range<usize>)> = targets
        .iter()
        .flat_map(|t| {
            (0..t.luns.len())
                .step_by(LUN_BLOCK)
                .map(move |from| (t, from..(from + LUN_BLOCK).min(t.luns.len())))
        })
        .collect();
    let mut read = spread(&blocks, |(t, range)| {
        let target = found[t.target].0.as_str();
        // Gone since it was listed: its LUNs get what their names tell.
        let dir = DeviceDir::open(&sysfs.path(target)).ok();
        read_block(
            &t.luns[range.clone()],
            |(name, _), path| {
                path.push_str(target);
                path.push('/');
                path.push_str(name);
            },
            |(name, hctl), _, disks| match &dir {
                // Read through the target's directory; a LUN gone since it was
                // listed reads as its address alone (see `read_lun_dir`).
                Some(dir) => read_lun_dir_with(*hctl, &dir.at(name), detail, index, disks),
                None => unread_lun(name),
            },
        )
    });
    let mut held: Vec<Hctl> = targets
        .iter()
        .flat_map(|t| t.luns.iter().map(|(_, h)| *h))
        .collect();
    held.sort_unstable();
    let stray: Vec<String> = bus
        .luns()
        .iter()
        .filter(|hctl| held.binary_search(hctl).is_err())
        .filter_map(|&hctl| bus.lun_devpath(sysfs, hctl))
        .collect();
    if !stray.is_empty() {
        read.push(read_block(
            &stray,
            |devpath, path| path.push_str(devpath),
            |_, devpath, disks| match sysfs.read_lun_and_disks(devpath, detail, index) {
                Ok((info, found)) => {
                    found.into_iter().for_each(disks);
                    info
                }
                Err(_) => unread_lun(devpath_name(devpath)),
            },
        ));
    }
    read
}

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
        DeviceClass::Lun => NodeKind::Lun(
            sysfs
                .read_lun(devpath)
                .unwrap_or_else(|_| unread_lun(name))
                .into(),
        ),
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

/// A LUN whose directory is gone: what its name tells.
pub(super) fn unread_lun(name: &str) -> LunInfo {
    LunInfo::at(name.parse().unwrap_or(Hctl {
        host: UNNUMBERED,
        channel: 0,
        target: 0,
        lun: 0,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{HbaSpec, Sim, SimSpec};

    #[test]
    fn the_agents_load_is_the_full_load_trimmed_and_a_reread_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let sim = Sim::new(dir.path(), &SimSpec::new().hba(HbaSpec::scsi_debug(2, 4))).unwrap();
        let sysfs = sim.sysfs();
        let full = Graph::load(&sysfs);
        let mut agent = Graph::load_with(&sysfs, Detail::Agent);
        assert_eq!(agent.detail(), Detail::Agent);
        assert_eq!(agent.len(), full.len());
        let (mut luns, mut disks) = (0, 0);
        for node in full.nodes() {
            let mut kind = node.kind.clone();
            kind.trim_to(Detail::Agent);
            assert_eq!(agent.node(&node.devpath).unwrap().kind, kind);
            match (&node.kind, &kind) {
                (NodeKind::Lun(f), NodeKind::Lun(a)) => {
                    luns += 1;
                    assert!(f.rev.is_some() && f.driver.is_some() && f.scsi_type.is_some());
                    assert_eq!(
                        (a.rev.as_ref(), a.driver.as_ref(), a.scsi_type),
                        (None, None, None)
                    );
                    assert!(a.vendor.is_some() && a.state.is_some());
                }
                (NodeKind::Disk(f), NodeKind::Disk(a)) => {
                    disks += 1;
                    assert!(f.info.major_minor.is_some() && a.info.major_minor.is_none());
                    assert_eq!(a.info.size_bytes, f.info.size_bytes);
                }
                _ => {}
            }
        }
        assert_eq!((luns, disks), (8, 8));
        // Events and re-reads read a device in full: the graph keeps its detail,
        // and reports no change for what it does not keep.
        let devpaths: Vec<String> = agent.nodes().map(|n| n.devpath.to_string()).collect();
        for devpath in &devpaths {
            assert_eq!(agent.refresh(devpath, &sysfs), Vec::new(), "{devpath}");
        }
        assert_eq!(
            Graph::diff(&agent, &Graph::load_with(&sysfs, agent.detail())),
            Vec::new()
        );
    }

    #[test]
    fn a_tree_without_block_loads_the_same_disks_and_maps() {
        let dir = tempfile::tempdir().unwrap();
        let sim = Sim::new(dir.path(), &SimSpec::new().hba(HbaSpec::scsi_debug(1, 3))).unwrap();
        let host = sim.hosts()[0];
        let lun = |l| Hctl {
            host,
            channel: 0,
            target: 0,
            lun: l,
        };
        sim.add_multipath_map("mpatha", &[lun(1)]).unwrap();
        let sysfs = sim.sysfs();
        let indexed = Graph::load(&sysfs);
        // A partial copy of sysfs: the device directories without `block/`.
        std::fs::rename(sysfs.path("/block"), dir.path().join("block-aside")).unwrap();
        let walked = Graph::load(&sysfs);
        assert_eq!(walked, indexed);
        let mapped = walked
            .nodes()
            .filter(|n| matches!(&n.kind, NodeKind::Disk(d) if d.info.multipath.is_some()))
            .count();
        assert_eq!(mapped, 1);
    }
}
