//! A simulated hypervisor: its host adapters, its SAN, and the kernel between them.
//!
//! hbad's demo, executor tests, daemon tests and benchmarks run against this. A
//! [`Sim`] keeps a directory shaped exactly like the parts of sysfs and `/dev` hbad
//! reads ([`Sim::sysfs`]), emits the uevents the kernel would for every change
//! ([`Sim::drain_events`], [`Sim::subscribe`]), and interprets hbad's writes with the
//! kernel's semantics through the same seam as the real writer
//! (`impl AttrWriter for Sim`). Tests against it are worth what its fidelity is
//! worth, so the behaviour follows KERNEL.md, VMLAB.md and the shared real-kernel
//! capture, which `tests/sim.rs` compares it with.
//!
//! # Use
//!
//! Describe the machine with [`SimSpec`] (or take [`Sim::demo_host`]), build it in
//! an empty directory with [`Sim::new`], read it with `Graph::load(&sim.sysfs())`,
//! hand `Arc::new(sim.clone())` to anything that takes an `AttrWriter`, and take
//! the kernel's answer from [`Sim::drain_events`] or a [`Sim::subscribe`] channel.
//! The SAN side is scripted with [`Sim::map_lun`], [`Sim::add_lun`],
//! [`Sim::resize_lun`], [`Sim::add_target_port`], [`Sim::remove_target_port`],
//! [`Sim::set_link`], [`Sim::add_hba`] / [`Sim::remove_hba`] and [`Sim::io`];
//! faults with [`Sim::set_scan_delay`], [`Sim::stall_scans`] and
//! [`Sim::fail_next_vport_create`]. The directory stays the caller's to remove.
//!
//! # Modelled
//!
//! - Layout: `devices/.../hostN/{scsi_host,fc_host}/hostN`, `vport-P:0-K/fc_vports/...`
//!   and `vport-P:0-K/hostM` for vHBAs, `rport-H:0-N/fc_remote_ports/...`,
//!   `rport-H:0-N/targetH:0:T/H:0:T:L/block/sdX`, local targets directly under the
//!   host; `class/*`, `bus/scsi/devices` and `block/` as relative symlinks;
//!   write-only attributes as empty files; udev's `disk/by-path`
//!   (`pci-<bdf>-fc-0x<target wwpn>-lun-N`, the same name for two vHBAs of one port,
//!   as upstream udev does) and `disk/by-id` (`wwn-0x…`, `scsi-3…`) links.
//! - Numbers: host numbers, sd indexes, sg and bsg minors are the lowest free (IDA),
//!   so a removed host's number is reused (host5 in the capture); vport and rport
//!   numbers count up per host and are never reused, and on a switched fabric
//!   rport-H:0-0 is the name server's (roles "Directory Server", scsi_target_id -1),
//!   the first target rport-H:0-1, as a real vport's login showed (the fabric-*
//!   scenarios, `tests/fixtures/kernel-capture/fabric/`); SCSI target ids are bound to
//!   the target's WWPN per host (tgtid_bind_type wwpn); DISKSEQ and SEQNUM count up.
//!   sdX names and major:minor are sd's (sda..sdz, sdaa; 8, 65-71, 128-135).
//! - Events, in the capture's order: host add (workqueue scsi_tmf_N, scsi host,
//!   scsi_host, workqueue scsi_wq_N and bsg fc_hostN and fc_host for FC hosts), vport
//!   create (fc_vports first, then the vHBA, then its login: the name server's
//!   remote port, each target's, its SCSI target, LUNs and disks), failed create
//!   (add then remove of fc_vports, the vport number consumed), vport delete (vHBA
//!   removes, the name server's remote port first, then fc_vports), LUN add (scsi,
//!   scsi_disk, scsi_device, scsi_generic, bsg, then bdi,
//!   block and bind once sd has probed), LUN remove (the reverse, unbind before the
//!   scsi remove, the target after its last LUN), unit attentions as `change` with
//!   SDEV_UA, resize as a block `change` with RESIZE=1. Changes of port_state,
//!   vport_state, fabric_name and npiv_vports_inuse emit nothing.
//! - Writes: `vport_create`/`vport_delete` (format, EINVAL, ENOSPC, ENOENT without
//!   NPIV, ENODEV), `scan` (`C T L`, numbers in C's base-0 syntax or `-`; FC hosts
//!   scan only Online remote ports that have a target id; never a new remote
//!   port), `issue_lip` (re-login: new target ports appear, known ones are
//!   rescanned), `device/rescan`, `device/delete`, vport `symbolic_name` and
//!   `vport_delete`, a disk's `uevent` (the event written is sent again, with
//!   SYNTH_UUID, as `udevadm trigger` makes it). Other existing attributes refuse
//!   writes with EACCES, missing ones with ENOENT. Attribute files are replaced
//!   whole: a reader sees the old value or the new one, as sysfs shows them.
//! - Fabric behaviour: a port logs in when its link is up and it is cabled to a
//!   described fabric; a vport logs in (Active) when its parent is logged in and the
//!   fabric accepts NPIV, else "No Fabric Support" or "Linkdown". Logging in creates
//!   remote ports for the fabric's target ports and scans them (the FC transport
//!   does that by itself), finding only LUNs masked to the port's WWPN. A logged-in
//!   vHBA's port_type is "NPIV VPORT" (qla2xxx, lpfc) or, for fcoe, its FDISC's
//!   answer like its parent's ("NPort (fabric via point-to-point)", seen). FCoE
//!   VN2VN ([`FabricSpec::vn2vn`]) has no name server and no NPIV.
//! - Unit attentions: mapping, unmapping or adding a LUN establishes
//!   REPORTED_LUNS_DATA_HAS_CHANGED on every LUN of each affected I_T nexus, and
//!   resizing CAPACITY_DATA_HAS_CHANGED on every path to the LUN; they are
//!   reported on the next I/O ([`Sim::io`], [`Sim::io_pending`]). After one
//!   REPORTED LUNS report, the target expects the change and further ones are not
//!   reported until the target is rescanned, as in scsi_error.c.
//! - Path loss: a target port leaving (RSCN) or a link down blocks the remote
//!   ports silently; dev_loss_tmo expiry removes their targets and LUNs and
//!   leaves the ports "Not Present" (roles unknown) in the wwpn bindings; a
//!   return reuses the same rport number and target id and rescans.
//! - iscsi_tcp sessions: `/devices/platform/hostN/sessionK/targetN:0:0/...`,
//!   iscsi_host/iscsi_session/iscsi_connection devices, session numbers counting
//!   up from 1, by-path `ip-<portal>-iscsi-<iqn>-lun-N`. Their event order is
//!   derived from scsi_transport_iscsi.c; the capture has no iSCSI.
//! - scsi_debug-like hosts (with POWER_ON_RESET_OCCURRED on every new LUN) and
//!   raising their LUN count ([`Sim::add_local_lun`]).
//!
//! # Not modelled
//!
//! Zoning (a fabric's ports all see each other), initiator ports as remote ports,
//! the dev_loss_tmo clock (it runs out when a test says so:
//! [`Sim::expire_dev_loss`]), fast_io_fail_tmo, partitions, multipath, iSCSI
//! beyond one logged-in session per host (no login errors, no connection
//! states, no recovery), the asynchronous interleaving of events across hosts
//! (the simulator emits each operation's events together), driver quirks such as
//! scsi_debug's unit attentions on removal, `scsi_mod.scan=manual`, and the
//! attributes hbad does not read.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::sysfs::{Hctl, Sysfs};
use crate::uevent::fc_event::{FcEvent, FcEventCode};
use crate::uevent::Uevent;
use crate::wwn::Wwn;

pub mod demo;
mod holding;
mod kernel;
pub mod spec;
mod tree;
mod writer;

pub use spec::{
    FabricSpec, FcPortSpec, HbaBus, HbaKind, HbaSpec, LocalLun, LunSpec, SimSpec, TargetPortSpec,
};
pub use writer::WriteRecord;

use kernel::Kernel;
use tree::Tree;

/// Which view of an event a consumer gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavour {
    /// What the kernel sends on netlink group 1.
    Kernel,
    /// A host where udev runs, as its monitor passes events on: the kernel's
    /// events plus DEVLINKS on block devices, and the `change` of the disk that
    /// udev's rules trigger after every scsi_device change (an event the kernel
    /// sends with its own SEQNUM, so a kernel-flavour stream shows a gap there).
    Udev,
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("simulator tree under {path}: {source}")]
    Tree { path: PathBuf, source: io::Error },
    #[error("no SCSI host{0} in the simulator")]
    NoHost(u32),
    #[error("host{0} is not an FC host")]
    NotFc(u32),
    #[error("host{0} is a vHBA: delete its vport or unplug its parent instead")]
    IsVhba(u32),
    #[error("fabric `{0}` is not described: add it to SimSpec::fabrics")]
    NoFabric(String),
    #[error("no target port {0} on any fabric")]
    NoTargetPort(Wwn),
    #[error("target port {0} is already on a fabric")]
    DuplicateTargetPort(Wwn),
    #[error("target port {target} has no LUN {lun}")]
    NoLun { target: Wwn, lun: u64 },
    #[error("target port {target} already has LUN {lun}")]
    DuplicateLun { target: Wwn, lun: u64 },
    #[error("no SCSI device {0}")]
    NoDevice(Hctl),
}

/// A simulated host. Cheap to clone; clones share one kernel. `Send + Sync`.
#[derive(Clone, Debug)]
pub struct Sim {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    kernel: Mutex<Kernel>,
    sysfs: Sysfs,
    writes: Mutex<Vec<WriteRecord>>,
    fc_events: Mutex<FcEventQueue>,
}

/// FC transport events the simulated drivers posted (netlink group
/// `SCSI_NL_GRP_FC_EVENTS`), kept apart from uevents as the kernel keeps them.
#[derive(Debug, Default)]
struct FcEventQueue {
    /// `fc_get_event_number()`: one counter for every host.
    next_number: u32,
    queue: Vec<FcEvent>,
    subscribers: Vec<Sender<FcEvent>>,
}

/// What a driver posts when its link goes up or down: qla2xxx, lpfc, zfcp and
/// ibmvfc post LINKUP/LINKDOWN; libfc (fcoe) only LIPRESET, from the reset a link
/// loss starts; others nothing.
fn posted_on_link(driver: &str, up: bool) -> Option<FcEventCode> {
    match driver {
        "qla2xxx" | "lpfc" | "zfcp" | "ibmvfc" if up => Some(FcEventCode::LinkUp),
        "qla2xxx" | "lpfc" | "zfcp" | "ibmvfc" => Some(FcEventCode::LinkDown),
        "fcoe" | "bnx2fc" | "qedf" if !up => Some(FcEventCode::LipReset),
        _ => None,
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Sim {
    /// Builds the machine under `dir` (which gets `sys/` and `dev/`), probing the
    /// adapters in order as at boot. Boot's events are discarded: the tree is the
    /// cold-plug state.
    pub fn new(dir: &Path, spec: &SimSpec) -> Result<Sim, SimError> {
        // A tree left by an earlier run would mix its devices with ours.
        if dir.join("sys").exists() || dir.join("dev").exists() {
            return Err(SimError::Tree {
                path: dir.to_path_buf(),
                source: io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "sys/ or dev/ already exists: give the simulator an empty directory",
                ),
            });
        }
        let tree = Tree::create(dir).map_err(|source| SimError::Tree {
            path: dir.to_path_buf(),
            source,
        })?;
        // procfs as hbad reads it before deleting a disk (what holds it): PID 1
        // with no files and no mounts (hbad looks for it to know it sees every
        // process) and hbad's own empty mount table, until a test opens or mounts
        // a disk (`holding`).
        let proc = dir.join("proc");
        std::fs::create_dir_all(proc.join("1/fd"))
            .and_then(|()| std::fs::create_dir_all(proc.join("self")))
            .and_then(|()| std::fs::write(proc.join("1/mountinfo"), ""))
            .and_then(|()| std::fs::write(proc.join("self/mountinfo"), ""))
            .map_err(|source| SimError::Tree { path: proc, source })?;
        let sysfs = Sysfs::new(tree.sys(), tree.dev());
        let mut kernel = Kernel::new(tree);
        for f in &spec.fabrics {
            kernel.fabrics.insert(f.name.clone(), f.clone());
        }
        for t in &spec.targets {
            if !kernel.fabrics.contains_key(&t.fabric) {
                return Err(SimError::NoFabric(t.fabric.clone()));
            }
            if kernel.target_port(t.wwpn).is_some() {
                return Err(SimError::DuplicateTargetPort(t.wwpn));
            }
            kernel.targets.push(t.clone());
        }
        let sim = Sim {
            shared: Arc::new(Shared {
                kernel: Mutex::new(kernel),
                sysfs,
                writes: Mutex::new(Vec::new()),
                fc_events: Mutex::default(),
            }),
        };
        for hba in &spec.hbas {
            sim.add_hba(hba)?;
        }
        sim.drain_events();
        Ok(sim)
    }

    /// The tree as hbad reads it: sysfs root and the dev root beside it.
    pub fn sysfs(&self) -> Sysfs {
        self.shared.sysfs.clone()
    }

    fn kernel(&self) -> MutexGuard<'_, Kernel> {
        lock(&self.shared.kernel)
    }

    fn tree_err(&self, source: io::Error) -> SimError {
        SimError::Tree {
            path: self.shared.sysfs.root().to_path_buf(),
            source,
        }
    }

    /// Events since the last drain, as the kernel sent them (SEQNUM increasing).
    pub fn drain_events(&self) -> Vec<Uevent> {
        self.kernel().drain(Flavour::Kernel)
    }

    /// The same queue as [`Sim::drain_events`], as udev would pass it on.
    pub fn drain_udev_events(&self) -> Vec<Uevent> {
        self.kernel().drain(Flavour::Udev)
    }

    /// Every event from now on, on a channel usable from another thread. The
    /// drain queue is not affected.
    pub fn subscribe(&self, flavour: Flavour) -> Receiver<Uevent> {
        let (tx, rx) = mpsc::channel();
        self.kernel().subscribe(flavour, tx);
        rx
    }

    /// FC transport events posted since the last drain, oldest first.
    pub fn drain_fc_events(&self) -> Vec<FcEvent> {
        std::mem::take(&mut lock(&self.shared.fc_events).queue)
    }

    /// Every FC transport event from now on, on a channel; the drain queue is not
    /// affected.
    pub fn subscribe_fc_events(&self) -> Receiver<FcEvent> {
        let (tx, rx) = mpsc::channel();
        lock(&self.shared.fc_events).subscribers.push(tx);
        rx
    }

    fn post_fc_event(&self, host: u32, code: FcEventCode) {
        let mut q = lock(&self.shared.fc_events);
        q.next_number = q.next_number.wrapping_add(1);
        let mut event = FcEvent::new(host as u16, code, q.next_number, 0);
        event.seconds = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        q.subscribers.retain(|s| s.send(event.clone()).is_ok());
        q.queue.push(event);
    }

    // ---- looking things up ----------------------------------------------------

    /// Host numbers in use, ascending.
    pub fn hosts(&self) -> Vec<u32> {
        self.kernel().hosts.keys().copied().collect()
    }

    /// The host whose FC port (physical or vHBA) has this WWPN.
    pub fn host_by_wwpn(&self, wwpn: Wwn) -> Option<u32> {
        self.kernel()
            .hosts
            .values()
            .find(|h| h.fc.as_ref().is_some_and(|f| f.wwpn == wwpn))
            .map(|h| h.no)
    }

    pub fn host_devpath(&self, host: u32) -> Option<String> {
        self.kernel().hosts.get(&host).map(|h| h.devpath.clone())
    }

    pub fn lun_devpath(&self, hctl: Hctl) -> Option<String> {
        self.kernel().lun_devpath(hctl)
    }

    /// Every SCSI device present, ascending.
    pub fn luns(&self) -> Vec<Hctl> {
        let k = self.kernel();
        let mut out = Vec::new();
        for h in k.hosts.values() {
            for ((c, t), target) in &h.targets {
                for l in target.luns.keys() {
                    out.push(Hctl {
                        host: h.no,
                        channel: *c,
                        target: *t,
                        lun: *l,
                    });
                }
            }
        }
        out
    }

    // ---- admin and SAN-side operations ----------------------------------------

    /// Hot-plugs an adapter (or probes it at boot): its host appears, an FC port
    /// logs in and the transport scans what it finds. Returns the host number.
    pub fn add_hba(&self, spec: &HbaSpec) -> Result<u32, SimError> {
        let mut k = self.kernel();
        if let HbaKind::Fc(FcPortSpec {
            fabric: Some(f), ..
        }) = &spec.kind
        {
            if !k.fabrics.contains_key(f) {
                return Err(SimError::NoFabric(f.clone()));
            }
        }
        k.add_hba(spec).map_err(|e| self.tree_err(e))
    }

    /// Hot-unplugs a physical adapter: its vports, remote ports, LUNs and host go,
    /// in the kernel's order.
    pub fn remove_hba(&self, host: u32) -> Result<(), SimError> {
        let mut k = self.kernel();
        let h = k.hosts.get(&host).ok_or(SimError::NoHost(host))?;
        if matches!(h.bus, kernel::HostBus::Vport { .. }) {
            return Err(SimError::IsVhba(host));
        }
        k.remove_host(host).map_err(|e| self.tree_err(e))
    }

    /// Link up or down on a physical FC port (cable, switch port). No uevent for
    /// the state change itself; coming up logs in and scans, as the driver does.
    pub fn set_link(&self, host: u32, up: bool) -> Result<(), SimError> {
        let mut k = self.kernel();
        let h = k.hosts.get_mut(&host).ok_or(SimError::NoHost(host))?;
        if matches!(h.bus, kernel::HostBus::Vport { .. }) {
            return Err(SimError::IsVhba(host));
        }
        let fc = h.fc.as_mut().ok_or(SimError::NotFc(host))?;
        fc.link_up = up;
        let posts = posted_on_link(&h.proc_name, up);
        let r = if up {
            k.fc_login(host)
        } else {
            k.fc_link_down(host)
        };
        drop(k);
        // The driver posts after its state is updated: a reader of the event sees
        // the new port_state in sysfs.
        if let Some(code) = posts {
            self.post_fc_event(host, code);
        }
        r.map_err(|e| self.tree_err(e))
    }

    /// A new array port appears on a fabric: every port logged in there gets a
    /// remote port and scans it.
    pub fn add_target_port(&self, spec: TargetPortSpec) -> Result<(), SimError> {
        let mut k = self.kernel();
        if !k.fabrics.contains_key(&spec.fabric) {
            return Err(SimError::NoFabric(spec.fabric));
        }
        if k.target_port(spec.wwpn).is_some() {
            return Err(SimError::DuplicateTargetPort(spec.wwpn));
        }
        let wwpn = spec.wwpn;
        k.targets.push(spec);
        k.target_port_added(wwpn).map_err(|e| self.tree_err(e))
    }

    /// An array port leaves its fabric: remote ports to it turn Blocked (no
    /// uevent); its LUNs stay until [`Sim::expire_dev_loss`], and come back
    /// with it if it returns first ([`Sim::add_target_port`] again).
    pub fn remove_target_port(&self, wwpn: Wwn) -> Result<(), SimError> {
        let mut k = self.kernel();
        let before = k.targets.len();
        k.targets.retain(|t| t.wwpn != wwpn);
        if k.targets.len() == before {
            return Err(SimError::NoTargetPort(wwpn));
        }
        k.target_port_gone(wwpn).map_err(|e| self.tree_err(e))
    }

    /// dev_loss_tmo runs out for every Blocked remote port (after a link down
    /// or a target port's departure): their LUNs and targets are removed, with
    /// events, and the ports stay "Not Present" in the bindings.
    pub fn expire_dev_loss(&self) -> Result<(), SimError> {
        self.kernel()
            .expire_dev_loss()
            .map_err(|e| self.tree_err(e))
    }

    fn target_mut(k: &mut Kernel, target: Wwn) -> Result<&mut TargetPortSpec, SimError> {
        k.targets
            .iter_mut()
            .find(|t| t.wwpn == target)
            .ok_or(SimError::NoTargetPort(target))
    }

    /// The array creates a LUN (masked to `lun.initiators`). Those initiators'
    /// paths to the port get a REPORTED LUNS unit attention; nothing is scanned.
    pub fn add_lun(&self, target: Wwn, lun: LunSpec) -> Result<(), SimError> {
        let mut k = self.kernel();
        let t = Self::target_mut(&mut k, target)?;
        if t.luns.iter().any(|l| l.lun == lun.lun) {
            return Err(SimError::DuplicateLun {
                target,
                lun: lun.lun,
            });
        }
        let initiators = lun.initiators.clone();
        t.luns.push(lun);
        for i in initiators {
            k.raise_ua_on_nexus(i, target, "REPORTED_LUNS_DATA_HAS_CHANGED");
        }
        Ok(())
    }

    /// Masks a LUN to an initiator WWPN; the initiator's paths to that target port
    /// get a REPORTED LUNS unit attention, reported on their next I/O.
    pub fn map_lun(&self, target: Wwn, lun: u64, initiator: Wwn) -> Result<(), SimError> {
        self.set_mask(target, lun, initiator, true)
    }

    /// Unmasks a LUN. The kernel keeps the device (I/O to it fails) until it is
    /// deleted; the initiator's paths get a REPORTED LUNS unit attention.
    pub fn unmap_lun(&self, target: Wwn, lun: u64, initiator: Wwn) -> Result<(), SimError> {
        self.set_mask(target, lun, initiator, false)
    }

    fn set_mask(&self, target: Wwn, lun: u64, initiator: Wwn, on: bool) -> Result<(), SimError> {
        let mut k = self.kernel();
        let t = Self::target_mut(&mut k, target)?;
        let l = t
            .luns
            .iter_mut()
            .find(|l| l.lun == lun)
            .ok_or(SimError::NoLun { target, lun })?;
        let changed = if on {
            l.initiators.insert(initiator)
        } else {
            l.initiators.remove(&initiator)
        };
        if changed {
            k.raise_ua_on_nexus(initiator, target, "REPORTED_LUNS_DATA_HAS_CHANGED");
        }
        Ok(())
    }

    /// The array grows or shrinks a volume, named by one port's LUN: every port
    /// presenting the same volume (same wwid) changes, and every path reports
    /// CAPACITY DATA HAS CHANGED on its next I/O. The kernel's size changes
    /// only on `device/rescan`.
    pub fn resize_lun(&self, target: Wwn, lun: u64, size_bytes: u64) -> Result<(), SimError> {
        let mut k = self.kernel();
        let t = Self::target_mut(&mut k, target)?;
        let wwid = t
            .luns
            .iter()
            .find(|l| l.lun == lun)
            .ok_or(SimError::NoLun { target, lun })?
            .wwid
            .clone();
        let mut paths = Vec::new();
        for t in k.targets.iter_mut() {
            for l in t.luns.iter_mut().filter(|l| l.wwid == wwid) {
                l.size_bytes = size_bytes;
                paths.push((t.wwpn, l.lun));
            }
        }
        for (t, l) in paths {
            k.raise_capacity_ua(t, l);
        }
        Ok(())
    }

    /// A local host gains a LUN (scsi_debug's `max_luns` raised): its target
    /// reports REPORTED LUNS on the next I/O; a scan adds the LUN.
    pub fn add_local_lun(&self, host: u32, lun: LocalLun) -> Result<(), SimError> {
        let mut k = self.kernel();
        let h = k.hosts.get(&host).ok_or(SimError::NoHost(host))?;
        if h.fc.is_some() {
            return Err(SimError::NotFc(host));
        }
        k.add_local_lun(host, lun);
        Ok(())
    }

    /// One I/O to a device: the unit attentions waiting there are reported
    /// (`change` events with SDEV_UA). Returns the ones reported.
    pub fn io(&self, hctl: Hctl) -> Result<Vec<String>, SimError> {
        self.kernel()
            .io(hctl)
            .map(|v| v.into_iter().map(str::to_string).collect())
            .ok_or(SimError::NoDevice(hctl))
    }

    /// One I/O to every device with a unit attention waiting, as the I/O of
    /// running guests or multipathd's path checkers would do. Returns how many
    /// attentions were reported.
    pub fn io_pending(&self) -> usize {
        let mut k = self.kernel();
        let pending: Vec<Hctl> = k
            .hosts
            .values()
            .flat_map(|h| {
                h.targets.iter().flat_map(move |((c, t), target)| {
                    target
                        .luns
                        .iter()
                        .filter(|(_, l)| !l.pending_ua.is_empty())
                        .map(move |(l, _)| Hctl {
                            host: h.no,
                            channel: *c,
                            target: *t,
                            lun: *l,
                        })
                })
            })
            .collect();
        pending
            .into_iter()
            .map(|h| k.io(h).map_or(0, |v| v.len()))
            .sum()
    }

    // ---- fault injection ------------------------------------------------------

    /// Every scan of this host takes at least `delay` (a slow target).
    pub fn set_scan_delay(&self, host: u32, delay: Duration) {
        let mut k = self.kernel();
        if delay.is_zero() {
            k.faults.scan_delay.remove(&host);
        } else {
            k.faults.scan_delay.insert(host, delay);
        }
    }

    /// Scans of this host block inside their write until the gate is released or
    /// dropped (a hung target). Scans of other hosts are not affected.
    pub fn stall_scans(&self, host: u32) -> ScanGate {
        let inner = Arc::new(ScanGateInner {
            state: Mutex::new(GateState::default()),
            cond: Condvar::new(),
        });
        self.kernel()
            .faults
            .scan_gates
            .insert(host, Arc::clone(&inner));
        ScanGate {
            host,
            inner,
            sim: self.clone(),
        }
    }

    /// The next REPORT LUNS sent on this host, through whichever LUN, answers
    /// `luns` (GOOD status) instead of what the target maps; queued answers are
    /// given one per command.
    pub fn answer_next_report_luns(&self, host: u32, luns: Vec<u64>) {
        self.kernel()
            .faults
            .report_luns_answers
            .entry(host)
            .or_default()
            .push_back(luns);
    }

    /// The next `vport_create` on this host fails in the driver with `errno`
    /// (after the fc_vports add, which is then removed, as a real driver failure).
    pub fn fail_next_vport_create(&self, host: u32, errno: i32) {
        self.kernel().faults.vport_create_errno.insert(host, errno);
    }

    /// Every write hbad made through this simulator, in order, with its result.
    pub fn writes(&self) -> Vec<WriteRecord> {
        lock(&self.shared.writes).clone()
    }
}

#[derive(Debug, Default)]
struct GateState {
    open: bool,
    waiting: usize,
}

#[derive(Debug)]
pub(crate) struct ScanGateInner {
    state: Mutex<GateState>,
    cond: Condvar,
}

impl ScanGateInner {
    /// Called by a scan: blocks while the gate is closed.
    fn pass(&self) {
        let mut st = lock(&self.state);
        st.waiting += 1;
        self.cond.notify_all();
        while !st.open {
            st = self.cond.wait(st).unwrap_or_else(PoisonError::into_inner);
        }
        st.waiting -= 1;
        self.cond.notify_all();
    }
}

/// Holds the scans of one host inside their write (see [`Sim::stall_scans`]).
/// Dropping it releases them.
#[derive(Debug)]
pub struct ScanGate {
    host: u32,
    inner: Arc<ScanGateInner>,
    sim: Sim,
}

impl ScanGate {
    pub fn host(&self) -> u32 {
        self.host
    }

    /// How many scans are blocked at the gate now.
    pub fn waiting(&self) -> usize {
        lock(&self.inner.state).waiting
    }

    /// Waits (on a condition variable, not by polling) until at least `n` scans
    /// are blocked; false when `timeout` passes first.
    pub fn wait_for_blocked(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = lock(&self.inner.state);
        while st.waiting < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            st = self
                .inner
                .cond
                .wait_timeout(st, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }

    /// Lets every blocked and future scan of the host through.
    pub fn release(self) {
        drop(self)
    }
}

impl Drop for ScanGate {
    fn drop(&mut self) {
        {
            let mut k = self.sim.kernel();
            if k.faults
                .scan_gates
                .get(&self.host)
                .is_some_and(|g| Arc::ptr_eq(g, &self.inner))
            {
                k.faults.scan_gates.remove(&self.host);
            }
        }
        lock(&self.inner.state).open = true;
        self.inner.cond.notify_all();
    }
}
