//! The inspection listings (`hbad luns`, `hbad tree`) read as they are printed,
//! without a graph of the whole host.
//!
//! A listing shows each LUN once, in an order known before any LUN is read (by
//! address for `luns`, as sysfs nests them for `tree`). So only the devices above
//! the LUNs (hosts, vports, remote ports, targets: a few hundred on the largest
//! hosts) are loaded as a graph, the [`Skeleton`]; the LUNs are then read one
//! target at a time on a few threads, each target's LUNs and disks put in a small
//! graph of their own with the devices above them ([`TargetLuns`]), which the
//! renderer reads as it reads the whole graph, and drops once printed. At most a
//! few targets' LUNs are held at once, the threads read ahead of the printing, and
//! what is printed is what the whole graph would print.
//!
//! Each target's directory is opened once and its LUNs read relative to it; a
//! LUN's disk comes from one pass over `<sysfs>/block` (whose links name the LUN
//! each disk hangs off) instead of a listing of every LUN's `block/`.
//!
//! A tree the walk cannot account for as the kernel lays it out (a LUN the SCSI
//! bus lists that is not in its target's directory, as in a partial copy of sysfs)
//! gives no skeleton: the caller loads the whole graph instead.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};

use crate::graph::{read_kind, DeviceClass, Disk, Graph, Node, NodeKind};
use crate::sysfs::{
    parent_devpath, read_lun_dir_shown, target_address, BlockIndex, BlockInfo, Detail, DeviceDir,
    EntryKind, Hctl, LunInfo, StableLinks, Sysfs,
};

/// Sets up the heap for a listing: call before any thread starts. Each buffer
/// of 128 KiB or more (the link index as it is read, the rows of `hbad luns`) is
/// mapped on its own: it grows without being copied, and goes back to the kernel
/// when freed rather than staying in the heap, where glibc would otherwise put
/// it once a larger one had been freed. On a 16,384-LUN host, `hbad luns` peaks
/// at 2 MiB less resident memory. The readers keep an arena each, as the agent's
/// cold plug does (`daemon::heap`): one shared arena serialises them.
pub fn lean_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets a parameter of glibc's allocator; no thread that
    // allocates has started yet, and a refused value leaves the default.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 << 10);
    }
}

/// The devices above the LUNs, and where each target's LUNs are.
#[derive(Debug)]
pub struct Skeleton {
    sysfs: Sysfs,
    detail: Detail,
    graph: Graph,
    /// The LUNs of each target that has any, by the target's devpath, in LUN order.
    luns: HashMap<String, Vec<Hctl>>,
    /// Each LUN's disks and their multipath maps.
    block: BlockIndex,
    /// Read on a thread of its own from the start: only the LUNs' graphs need them.
    links: Arc<Ready<StableLinks>>,
}

/// One target's LUNs and their disks, in a graph that also holds the target and
/// every device above it: what the renderer needs to show them as the whole graph
/// would.
#[derive(Debug)]
pub struct TargetLuns {
    pub graph: Graph,
    target: String,
    luns: Vec<Hctl>,
}

impl TargetLuns {
    /// The target, as its LUNs' graph holds it.
    pub fn target(&self) -> Option<&Node> {
        self.graph.node(&self.target)
    }

    /// The LUNs, in LUN order.
    pub fn luns(&self) -> impl Iterator<Item = &Node> {
        self.luns.iter().filter_map(|&h| self.graph.lun(h))
    }

    /// How many LUNs there are.
    pub fn len(&self) -> usize {
        self.luns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.luns.is_empty()
    }

    /// The `i`th LUN in LUN order.
    pub fn lun(&self, i: usize) -> Option<&Node> {
        self.graph.lun(*self.luns.get(i)?)
    }
}

impl Skeleton {
    /// Finds the hosts, vports, remote ports and targets as cold plug does and
    /// reads them; lists each target's directory for its LUNs. `None` when the
    /// LUNs the SCSI bus lists are not all where their targets are.
    pub fn load(sysfs: &Sysfs, detail: Detail) -> Option<Skeleton> {
        let links = Arc::new(Ready::default());
        {
            let (links, sysfs) = (links.clone(), sysfs.clone());
            // Not joined: a listing that falls back to the whole graph leaves it be.
            std::thread::spawn(move || links.make(|| sysfs.stable_links()));
        }
        std::thread::scope(|scope| {
            let block = scope.spawn(|| sysfs.block_index());
            let skeleton = Skeleton::load_devices(sysfs);
            let block = block
                .join()
                .unwrap_or_else(|e| std::panic::resume_unwind(e));
            let (graph, luns) = skeleton?;
            Some(Skeleton {
                sysfs: sysfs.clone(),
                detail,
                graph,
                luns,
                block,
                links,
            })
        })
    }

    /// The devices above the LUNs in a graph, and each target's LUNs.
    fn load_devices(sysfs: &Sysfs) -> Option<(Graph, HashMap<String, Vec<Hctl>>)> {
        let mut found: Vec<(usize, String, DeviceClass)> = Vec::new();
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
                found.push((depth(&devpath), devpath, class));
            }
        }
        // The bus lists every LUN: their names say where they are, so only the
        // hosts' and targets' links are read.
        let mut bus_luns: Vec<Hctl> = Vec::new();
        if let Ok(bus) = DeviceDir::open(&sysfs.path("bus/scsi/devices")) {
            let mut canonical = true;
            bus.each_entry(".", |name, _| match DeviceClass::of_name(name) {
                Some(DeviceClass::Lun) => match name.parse::<Hctl>() {
                    Ok(h) if h.to_string() == name => bus_luns.push(h),
                    _ => canonical = false,
                },
                Some(class @ (DeviceClass::Host | DeviceClass::Target)) => {
                    if let Some(devpath) = sysfs.link_devpath(&format!("bus/scsi/devices/{name}")) {
                        found.push((depth(&devpath), devpath, class));
                    }
                }
                _ => {}
            });
            if !canonical {
                return None;
            }
        }
        found.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        found.dedup_by(|a, b| a.1 == b.1);
        let mut graph = Graph::new();
        for (_, devpath, class) in &found {
            graph.insert(devpath.clone(), read_kind(sysfs, devpath, *class));
        }
        // Nothing the whole graph would hang off a LUN or a target may be in the
        // skeleton: the LUNs' graphs hold only LUNs and disks under a target.
        let below_lun_or_target = graph.nodes().any(|n| {
            graph
                .parent(n)
                .is_some_and(|p| matches!(p.kind, NodeKind::Target(_)))
                || n.devpath
                    .split('/')
                    .rev()
                    .skip(1)
                    .any(|c| c.parse::<Hctl>().is_ok())
        });
        if below_lun_or_target {
            return None;
        }

        bus_luns.sort_unstable();
        let mut luns: HashMap<String, Vec<Hctl>> = HashMap::new();
        let mut matched = 0;
        let mut addresses = HashSet::new();
        for target in graph
            .nodes()
            .filter(|n| matches!(n.kind, NodeKind::Target(_)))
        {
            let Some(address) = target_address(target.name()) else {
                continue;
            };
            if !addresses.insert(address) {
                return None;
            }
            let Ok(dir) = DeviceDir::open(&sysfs.path(&target.devpath)) else {
                continue;
            };
            let mut here = Vec::new();
            dir.each_entry(".", |name, kind| {
                if kind != EntryKind::Dir {
                    return;
                }
                let Some(h) = name.parse::<Hctl>().ok().filter(|h| h.to_string() == name) else {
                    return;
                };
                if (h.host, h.channel, h.target) == address && bus_luns.binary_search(&h).is_ok() {
                    here.push(h);
                }
            });
            matched += here.len();
            if !here.is_empty() {
                here.sort_unstable();
                luns.insert(target.devpath.to_string(), here);
            }
        }
        (matched == bus_luns.len()).then_some((graph, luns))
    }

    /// The hosts, vports, remote ports and targets.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Does this target have LUNs to read?
    pub fn has_luns(&self, target: &Node) -> bool {
        self.luns.contains_key(target.devpath.as_str())
    }

    /// The targets with LUNs in the order `hbad luns` shows LUNs: by address.
    pub fn targets_by_address(&self) -> Vec<&Node> {
        let mut targets: Vec<(Hctl, &Node)> = self
            .graph
            .nodes()
            .filter_map(|n| Some((*self.luns.get(n.devpath.as_str())?.first()?, n)))
            .collect();
        targets.sort_by_key(|&(first, _)| first);
        targets.into_iter().map(|(_, n)| n).collect()
    }

    /// Reads the LUNs of `targets` on a few threads, each target's made into what
    /// `make` makes of them there, while `body` takes them in the order of
    /// `targets` from the [`Feed`]. Targets without LUNs are left out.
    pub fn stream<T: Send, R>(
        &self,
        targets: &[&Node],
        links: DiskLinks,
        state: LunState,
        make: impl Fn(TargetLuns) -> T + Sync,
        body: impl FnOnce(&mut Feed<'_, T>) -> R,
    ) -> R {
        self.stream_read(
            targets,
            state,
            |read| {
                let links = match links {
                    DiskLinks::Read => Some(self.links.wait()),
                    DiskLinks::Later => None,
                };
                make(self.target_graph(&read.target.devpath, read.luns, links.as_deref()))
            },
            body,
        )
    }

    /// [`Skeleton::stream`] with no graph made of each target's LUNs: `make` gets
    /// them as read, and the disks no links ([`Feed::links`] has them).
    pub fn stream_read<T: Send, R>(
        &self,
        targets: &[&Node],
        state: LunState,
        make: impl Fn(TargetRead<'_>) -> T + Sync,
        body: impl FnOnce(&mut Feed<'_, T>) -> R,
    ) -> R {
        let jobs: Vec<(&Node, &[Hctl])> = targets
            .iter()
            .filter_map(|t| {
                let luns = self.luns.get(t.devpath.as_str())?;
                Some((*t, luns.as_slice()))
            })
            .collect();
        let workers = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, 4)
            .min(jobs.len().max(1));
        // Targets read but not yet taken: bounds what is held.
        let window = 2 * workers;
        let next = AtomicUsize::new(0);
        let (permits_tx, permits_rx) = mpsc::sync_channel::<()>(window);
        for _ in 0..window {
            let _ = permits_tx.send(());
        }
        let permits_rx = Mutex::new(permits_rx);
        let (done_tx, done_rx) = mpsc::channel::<(usize, T)>();
        std::thread::scope(|scope| {
            for _ in 0..workers {
                let (jobs, next, permits, done, make) =
                    (&jobs, &next, &permits_rx, done_tx.clone(), &make);
                scope.spawn(move || loop {
                    // A permit per target taken: none left once the feed is dropped.
                    if permits
                        .lock()
                        .map(|p| p.recv())
                        .map_or(true, |r| r.is_err())
                    {
                        return;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&(target, luns)) = jobs.get(i) else {
                        return;
                    };
                    let luns = self.read_target(&target.devpath, luns, state);
                    let made = make(TargetRead { target, luns });
                    if done.send((i, made)).is_err() {
                        return;
                    }
                });
            }
            drop(done_tx);
            let mut feed = Feed {
                done: done_rx,
                permits: permits_tx,
                early: BTreeMap::new(),
                next: 0,
                total: jobs.len(),
                links: &self.links,
            };
            body(&mut feed)
        })
    }

    /// Reads a target's LUNs and their disks, relative to the target's directory.
    /// A LUN already gone (its removal is on the way) is read as cold plug reads it:
    /// what its name tells.
    /// Each LUN's directory is not opened: its attributes are read through the
    /// target's, which saves an `openat` and a `close` per LUN.
    fn read_target(&self, target: &str, luns: &[Hctl], state: LunState) -> Vec<ReadLun> {
        let dir = DeviceDir::open(&self.sysfs.path(target)).ok();
        let mut name = String::new();
        luns.iter()
            .map(|&hctl| {
                name.clear();
                // Writing to a String cannot fail.
                let _ = write!(name, "{hctl}");
                let read = dir.as_ref().map(|d| {
                    let lun = d.at(&name);
                    let state = state == LunState::Read;
                    let (info, disks, read) =
                        read_lun_dir_shown(hctl, &lun, self.detail, state, &self.block);
                    // Nothing there: the directory may be gone.
                    (read || lun.exists()).then_some((info, disks))
                });
                let Some((info, disks)) = read.flatten() else {
                    let devpath = format!("{target}/{name}");
                    return ReadLun {
                        hctl,
                        kind: read_kind(&self.sysfs, &devpath, DeviceClass::Lun),
                        disks: Vec::new(),
                    };
                };
                ReadLun {
                    hctl,
                    kind: NodeKind::Lun(info.into()),
                    disks,
                }
            })
            .collect()
    }

    /// A target's LUNs in a graph of their own, under the devices above them.
    fn target_graph(
        &self,
        target: &str,
        read: Vec<ReadLun>,
        links: Option<&StableLinks>,
    ) -> TargetLuns {
        let mut graph = Graph::new();
        let mut above = Vec::new();
        let mut cur = self.graph.node(target);
        while let Some(n) = cur {
            above.push(n);
            cur = self.graph.parent(n);
        }
        for n in above.into_iter().rev() {
            graph.insert(n.devpath.to_string(), n.kind.clone());
        }
        let mut luns = Vec::with_capacity(read.len());
        for lun in read {
            let devpath = format!("{target}/{}", lun.hctl);
            graph.insert(devpath.clone(), lun.kind);
            for info in lun.disks {
                let disk = Disk {
                    links: links.map(|l| l.paths_of(&info.name)).unwrap_or_default(),
                    info,
                };
                graph.insert(
                    format!("{devpath}/block/{}", disk.info.name),
                    NodeKind::Disk(disk),
                );
            }
            luns.push(lun.hctl);
        }
        TargetLuns {
            graph,
            target: target.to_string(),
            luns,
        }
    }
}

/// Whether the disks in each [`TargetLuns`] carry their stable links.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskLinks {
    /// Read: each target waits for the links to be read.
    Read,
    /// Left empty: the caller looks them up itself ([`Feed::links`]), and the
    /// LUNs are read while the links are.
    Later,
}

/// Whether each LUN's state is read: the tree shows it, `hbad luns` does not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LunState {
    Read,
    /// Left `None`: one read fewer per LUN.
    Skip,
}

/// One target's LUNs and their disks as read, before any graph is made of them.
#[derive(Debug)]
pub struct TargetRead<'s> {
    target: &'s Node,
    luns: Vec<ReadLun>,
}

impl TargetRead<'_> {
    /// The target, as the skeleton holds it.
    pub fn target(&self) -> &Node {
        self.target
    }

    /// Each LUN in LUN order with its disks, as its target's graph would hold them
    /// (the first is the graph's [`Graph::disk_of`]).
    pub fn luns(&self) -> impl Iterator<Item = (&LunInfo, &[BlockInfo])> {
        self.luns.iter().filter_map(|l| match &l.kind {
            NodeKind::Lun(info) => Some((&**info, l.disks.as_slice())),
            _ => None,
        })
    }
}

/// A LUN as read, before it is put in its target's graph.
#[derive(Debug)]
struct ReadLun {
    hctl: Hctl,
    kind: NodeKind,
    disks: Vec<BlockInfo>,
}

/// Targets with their LUNs read, in the order asked for.
#[derive(Debug)]
pub struct Feed<'s, T> {
    done: mpsc::Receiver<(usize, T)>,
    permits: mpsc::SyncSender<()>,
    /// Targets read before those ahead of them in the order.
    early: BTreeMap<usize, T>,
    next: usize,
    total: usize,
    links: &'s Ready<StableLinks>,
}

impl<T> Iterator for Feed<'_, T> {
    type Item = T;

    /// The next target's LUNs; `None` after the last (or when a reader died, whose
    /// panic the end of [`Skeleton::stream`] raises).
    fn next(&mut self) -> Option<T> {
        if self.next >= self.total {
            return None;
        }
        loop {
            if let Some(chunk) = self.early.remove(&self.next) {
                self.next += 1;
                let _ = self.permits.try_send(());
                return Some(chunk);
            }
            let (i, chunk) = self.done.recv().ok()?;
            self.early.insert(i, chunk);
        }
    }
}

impl<T> Feed<'_, T> {
    /// The stable links of every disk, once read.
    pub fn links(&self) -> Arc<StableLinks> {
        self.links.wait()
    }
}

/// A value one thread makes and others wait for.
#[derive(Debug)]
struct Ready<T> {
    /// `Some(None)` when making it panicked.
    value: Mutex<Option<Option<Arc<T>>>>,
    set: Condvar,
}

impl<T> Default for Ready<T> {
    fn default() -> Self {
        Ready {
            value: Mutex::new(None),
            set: Condvar::new(),
        }
    }
}

impl<T> Ready<T> {
    /// Makes the value; a panic is raised again here, and in each thread waiting,
    /// so that none waits for ever.
    fn make(&self, f: impl FnOnce() -> T) {
        let made = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let mut v = self.value.lock().unwrap_or_else(|e| e.into_inner());
        match made {
            Ok(value) => {
                *v = Some(Some(Arc::new(value)));
                self.set.notify_all();
            }
            Err(panic) => {
                *v = Some(None);
                self.set.notify_all();
                drop(v);
                std::panic::resume_unwind(panic);
            }
        }
    }

    fn wait(&self) -> Arc<T> {
        let mut v = self.value.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            match &*v {
                Some(Some(value)) => return value.clone(),
                Some(None) => panic!("the thread making a value for others panicked"),
                None => v = self.set.wait(v).unwrap_or_else(|e| e.into_inner()),
            }
        }
    }
}

/// How deep a devpath is: parents are shallower than their children.
fn depth(devpath: &str) -> usize {
    devpath.bytes().filter(|&c| c == b'/').count()
}
