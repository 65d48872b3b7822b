//! The simulated kernel: SCSI midlayer, FC transport class and the drivers' parts
//! of them, over the [`Tree`] and an event queue.
//!
//! Every operation changes the state, writes the tree *before* it announces a
//! device (the kernel creates the sysfs directory before the uevent goes out) and
//! emits the uevents in the order the capture shows for the same operation.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::spec::{FabricSpec, HbaBus, HbaKind, HbaSpec, LocalLun, LunSpec, TargetPortSpec};
use super::tree::Tree;
use super::{Flavour, ScanGateInner};
use crate::sysfs::{devpath_name, parent_devpath, Hctl, VportControlDir};
use crate::uevent::{Action, Uevent};
use crate::wwn::Wwn;

/// The bsg class gets a dynamic major; 248 is what the capture's kernel gave it.
const BSG_MAJOR: u32 = 248;
const SG_MAJOR: u32 = 21;
/// The remote port state after dev_loss_tmo for a target kept in the bindings.
const NOT_PRESENT: &str = "Not Present";

pub(crate) fn errno(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

/// Lowest free number, as the kernel's IDAs hand them out (host numbers, sd
/// indexes, sg and bsg minors): a number freed by a removal is the next one used.
fn ida_alloc(used: &mut BTreeSet<u32>) -> u32 {
    let mut n = 0;
    for &u in used.iter() {
        if u != n {
            break;
        }
        n += 1;
    }
    used.insert(n);
    n
}

/// `sd_format_disk_name`: sda..sdz, sdaa...
pub(crate) fn sd_name(index: u32) -> String {
    let mut idx = i64::from(index);
    let mut out = Vec::new();
    loop {
        out.push(b'a' + (idx % 26) as u8);
        idx = idx / 26 - 1;
        if idx < 0 {
            break;
        }
    }
    out.reverse();
    format!("sd{}", String::from_utf8_lossy(&out))
}

/// sd's major:minor for a disk index: 16 minors per disk, majors 8, 65-71, 128-135.
pub(crate) fn sd_dev(index: u32) -> (u32, u32) {
    let major_idx = (index & 0xf0) >> 4;
    let major = match major_idx {
        0 => 8,
        1..=7 => 64 + major_idx,
        _ => 128 + major_idx - 8,
    };
    let minor = ((index & 0xf) << 4) | (index & 0xfff00);
    (major, minor)
}

#[derive(Debug, Clone)]
pub(crate) enum HostBus {
    Pci(String),
    Pseudo(u32),
    Platform,
    /// A vHBA: the host of vport `number` of host `parent`.
    Vport {
        parent: u32,
        number: u32,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct Vport {
    pub wwpn: Wwn,
    pub wwnn: Wwn,
    pub state: &'static str,
    pub last_state: &'static str,
    /// `fc_vport->symbolic_name`, the bytes of the kernel's buffer: zeroes at
    /// creation, shown up to the first NUL.
    pub symbolic_name: Vec<u8>,
    /// The vHBA's host number, once the driver made it.
    pub host: Option<u32>,
}

#[derive(Debug, Clone)]
pub(crate) struct Npiv {
    pub max: u32,
    pub controls: VportControlDir,
    /// `fc_host->next_vport_number`: never reused, even after a failed create.
    pub next_vport: u32,
    pub vports: BTreeMap<u32, Vport>,
}

/// What a remote port is to the host that logged in to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RportRole {
    /// An array's target port: it gets a SCSI target id and is scanned.
    Target,
    /// The fabric's name server (FFFFFC): libfc logs in to it first, and the FC
    /// transport shows it as a remote port with no SCSI target (seen: rport-H:0-0,
    /// roles "Directory Server", scsi_target_id -1, on every port of a fabric).
    DirectoryServer,
}

/// The directory server's well-known address.
const DIRECTORY_SERVER_ID: u32 = 0xff_fffc;

#[derive(Debug, Clone)]
pub(crate) struct Rport {
    pub wwpn: Wwn,
    pub wwnn: Wwn,
    pub port_id: u32,
    pub state: &'static str,
    pub role: RportRole,
    /// `scsi_target_id`: a target's, bound to its WWPN on this host; none (-1) for
    /// the directory server.
    pub target_id: Option<u32>,
    pub bsg: u32,
}

#[derive(Debug, Clone)]
pub(crate) struct Fc {
    pub wwpn: Wwn,
    pub wwnn: Wwn,
    /// Cabled to (physical ports only; a vHBA uses its parent's).
    pub fabric: Option<String>,
    pub link_up: bool,
    pub logged_in: bool,
    pub speed: String,
    pub port_id: u32,
    pub bsg: u32,
    pub npiv: Option<Npiv>,
    pub rports: BTreeMap<u32, Rport>,
    pub next_rport: u32,
    pub next_target_id: u32,
    /// tgtid_bind_type "wwpn": a target port keeps its SCSI target id on this host.
    pub bindings: BTreeMap<Wwn, u32>,
    pub symbolic_name: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Lun {
    pub spec: LunSpec,
    /// Capacity as last read (READ CAPACITY at probe or rescan).
    pub size_bytes: u64,
    pub sd: u32,
    pub sg: u32,
    pub bsg: u32,
    pub diskseq: u64,
    pub pending_ua: Vec<&'static str>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Target {
    /// SCSI midlayer: after one REPORTED LUNS DATA HAS CHANGED the target expects
    /// the LUN change and retries further ones silently until it is rescanned.
    pub expecting_lun_change: bool,
    pub luns: BTreeMap<u64, Lun>,
}

#[derive(Debug, Clone)]
pub(crate) struct Host {
    pub no: u32,
    pub devpath: String,
    pub proc_name: String,
    pub bus: HostBus,
    pub fc: Option<Fc>,
    pub targets: BTreeMap<(u32, u32), Target>,
    pub local: Vec<LocalLun>,
    pub power_on_reset_ua: bool,
    pub iscsi: Option<IscsiSession>,
}

#[derive(Debug, Clone)]
pub(crate) struct IscsiSession {
    /// `sessionK`: iscsi_session_nr counts up from 1 and is never reused.
    pub number: u32,
    pub target_iqn: String,
    pub portal: String,
    /// The host's bsg node (`bsg/iscsi_hostN`).
    pub host_bsg: u32,
}

impl Host {
    fn name(&self) -> String {
        format!("host{}", self.no)
    }
}

#[derive(Debug, Default)]
pub(crate) struct Faults {
    pub scan_delay: HashMap<u32, Duration>,
    pub scan_gates: HashMap<u32, Arc<ScanGateInner>>,
    pub vport_create_errno: HashMap<u32, i32>,
    /// Answers the next REPORT LUNS on a host give instead of the truth, oldest
    /// first (an array mid-reconfiguration).
    pub report_luns_answers: HashMap<u32, std::collections::VecDeque<Vec<u64>>>,
    /// Disks (`major:minor`) the kernel holds claimed (swap, a mount in another
    /// namespace): an exclusive open of them is refused with `EBUSY`.
    pub claimed: std::collections::BTreeSet<(u32, u32)>,
}

#[derive(Debug)]
pub(crate) struct Kernel {
    pub tree: Tree,
    pub fabrics: BTreeMap<String, FabricSpec>,
    pub targets: Vec<TargetPortSpec>,
    pub hosts: BTreeMap<u32, Host>,
    host_ids: BTreeSet<u32>,
    pseudo_ids: BTreeSet<u32>,
    sd_ids: BTreeSet<u32>,
    sg_ids: BTreeSet<u32>,
    bsg_ids: BTreeSet<u32>,
    seqnum: u64,
    diskseq: u64,
    iscsi_sessions: u32,
    queue: Vec<(Uevent, bool)>,
    subscribers: Vec<(Flavour, Sender<Uevent>)>,
    /// udev's links: (dir, name) -> disks claiming it, the newest owning it.
    dev_links: BTreeMap<(String, String), Vec<String>>,
    pub faults: Faults,
    pub scan_locks: HashMap<u32, Arc<Mutex<()>>>,
}

type IoResult<T = ()> = io::Result<T>;

impl Kernel {
    pub(crate) fn new(tree: Tree) -> Kernel {
        Kernel {
            tree,
            fabrics: BTreeMap::new(),
            targets: Vec::new(),
            hosts: BTreeMap::new(),
            host_ids: BTreeSet::new(),
            pseudo_ids: BTreeSet::new(),
            sd_ids: BTreeSet::new(),
            sg_ids: BTreeSet::new(),
            bsg_ids: BTreeSet::new(),
            seqnum: 0,
            diskseq: 0,
            iscsi_sessions: 0,
            queue: Vec::new(),
            subscribers: Vec::new(),
            dev_links: BTreeMap::new(),
            faults: Faults::default(),
            scan_locks: HashMap::new(),
        }
    }

    // ---- events -------------------------------------------------------------

    fn emit(
        &mut self,
        action: Action,
        devpath: &str,
        subsystem: &str,
        devtype: Option<&str>,
        props: &[(&str, String)],
    ) {
        self.emit_for(false, action, devpath, subsystem, devtype, props);
    }

    /// Emits an event; `udev_only` ones exist only on a host where udev runs
    /// (it writes `change` to a `uevent` file and the kernel sends that).
    fn emit_for(
        &mut self,
        udev_only: bool,
        action: Action,
        devpath: &str,
        subsystem: &str,
        devtype: Option<&str>,
        props: &[(&str, String)],
    ) {
        self.seqnum += 1;
        let mut ev = Uevent::new(action, devpath, subsystem);
        ev.devtype = devtype.map(str::to_string);
        ev.seqnum = Some(self.seqnum);
        for (k, v) in props {
            ev.props.insert((*k).to_string(), v.clone());
        }
        self.subscribers.retain(|(flavour, tx)| {
            let out = match flavour {
                Flavour::Udev => ev.clone(),
                Flavour::Kernel if udev_only => return true,
                Flavour::Kernel => kernel_view(&ev),
            };
            tx.send(out).is_ok()
        });
        self.queue.push((ev, udev_only));
    }

    pub(crate) fn drain(&mut self, flavour: Flavour) -> Vec<Uevent> {
        let evs = std::mem::take(&mut self.queue);
        match flavour {
            Flavour::Udev => evs.into_iter().map(|(ev, _)| ev).collect(),
            Flavour::Kernel => evs
                .iter()
                .filter(|(_, udev_only)| !udev_only)
                .map(|(ev, _)| kernel_view(ev))
                .collect(),
        }
    }

    pub(crate) fn subscribe(&mut self, flavour: Flavour, tx: Sender<Uevent>) {
        self.subscribers.push((flavour, tx));
    }

    fn emit_workqueue(&mut self, action: Action, name: &str) {
        self.emit(
            action,
            &format!("/devices/virtual/workqueue/{name}"),
            "workqueue",
            None,
            &[],
        );
    }

    fn bsg_props(minor: u32, name: &str) -> Vec<(&'static str, String)> {
        vec![
            ("MAJOR", BSG_MAJOR.to_string()),
            ("MINOR", minor.to_string()),
            ("DEVNAME", format!("bsg/{name}")),
        ]
    }

    // ---- SAN lookups --------------------------------------------------------

    pub(crate) fn target_port(&self, wwpn: Wwn) -> Option<&TargetPortSpec> {
        self.targets.iter().find(|t| t.wwpn == wwpn)
    }

    /// The fabric a host is logged into, if it is.
    fn login_fabric(&self, no: u32) -> Option<String> {
        let host = self.hosts.get(&no)?;
        let fc = host.fc.as_ref()?;
        match host.bus {
            HostBus::Vport { parent, .. } => {
                let fabric = self.login_fabric(parent)?;
                self.fabrics.get(&fabric)?.npiv.then_some(fabric)
            }
            _ => {
                let fabric = fc.fabric.clone()?;
                (fc.link_up && self.fabrics.contains_key(&fabric)).then_some(fabric)
            }
        }
    }

    // ---- hosts --------------------------------------------------------------

    /// Probes an adapter: a new SCSI host (and FC host), then discovery.
    pub(crate) fn add_hba(&mut self, spec: &HbaSpec) -> IoResult<u32> {
        let (parent, bus, bus_sub, bus_dev) = match &spec.bus {
            HbaBus::Pci(addr) => {
                let dev = format!("/devices/pci0000:00/{addr}");
                (
                    dev.clone(),
                    HostBus::Pci(addr.clone()),
                    Some("pci"),
                    Some(dev),
                )
            }
            HbaBus::Pseudo => {
                let k = ida_alloc(&mut self.pseudo_ids);
                let dev = format!("/devices/pseudo_0/adapter{k}");
                (dev.clone(), HostBus::Pseudo(k), Some("pseudo"), Some(dev))
            }
            HbaBus::Platform => (
                "/devices/platform".to_string(),
                HostBus::Platform,
                None,
                None,
            ),
        };
        if let (Some(sub), Some(dev)) = (bus_sub, &bus_dev) {
            self.tree.mkdir(dev)?;
            self.emit(Action::Add, dev, sub, None, &[]);
        }
        let (fc, local, por) = match &spec.kind {
            HbaKind::Fc(p) => (
                Some(Fc {
                    wwpn: p.wwpn,
                    wwnn: p.wwnn,
                    fabric: p.fabric.clone(),
                    link_up: p.link_up,
                    logged_in: false,
                    speed: p.speed.clone(),
                    port_id: p.port_id,
                    bsg: 0,
                    npiv: p.max_npiv_vports.map(|max| Npiv {
                        max,
                        controls: p.npiv_controls,
                        next_vport: 0,
                        vports: BTreeMap::new(),
                    }),
                    rports: BTreeMap::new(),
                    next_rport: 0,
                    next_target_id: 0,
                    bindings: BTreeMap::new(),
                    symbolic_name: format!("{} FW:v9.00.00 DVR:v10.02.00", spec.driver),
                }),
                Vec::new(),
                false,
            ),
            HbaKind::Local {
                luns,
                power_on_reset_ua,
            } => (None, luns.clone(), *power_on_reset_ua),
            HbaKind::Iscsi { luns, .. } => (
                None,
                luns.iter()
                    .map(|spec| LocalLun {
                        channel: 0,
                        target: 0,
                        spec: spec.clone(),
                    })
                    .collect(),
                false,
            ),
        };
        let no = self.add_host(&parent, bus, &spec.driver, fc, local, por)?;
        if let HbaKind::Iscsi {
            target_iqn, portal, ..
        } = &spec.kind
        {
            self.add_iscsi_session(no, target_iqn, portal)?;
        }
        if let (Some(sub), Some(dev)) = (bus_sub, &bus_dev) {
            self.emit(
                Action::Bind,
                dev,
                sub,
                None,
                &[("DRIVER", spec.driver.clone())],
            );
        }
        if self.hosts[&no].fc.is_some() {
            self.fc_login(no)?;
        } else {
            // scsi_scan_host at probe: a local controller's devices appear at once.
            self.scan(no, None, None, None)?;
        }
        Ok(no)
    }

    /// scsi_host_alloc + scsi_add_host (+ fc_host for FC hosts).
    fn add_host(
        &mut self,
        parent: &str,
        bus: HostBus,
        proc_name: &str,
        fc: Option<Fc>,
        local: Vec<LocalLun>,
        power_on_reset_ua: bool,
    ) -> IoResult<u32> {
        let no = ida_alloc(&mut self.host_ids);
        let devpath = format!("{parent}/host{no}");
        let mut host = Host {
            no,
            devpath: devpath.clone(),
            proc_name: proc_name.to_string(),
            bus,
            fc,
            targets: BTreeMap::new(),
            local,
            power_on_reset_ua,
            iscsi: None,
        };
        let name = host.name();
        self.tree.mkdir(&devpath)?;
        self.tree
            .link(&format!("bus/scsi/devices/{name}"), &devpath)?;
        let sh = format!("{devpath}/scsi_host/{name}");
        self.tree.mkdir(&sh)?;
        self.tree.attr(&sh, "proc_name", proc_name)?;
        self.tree.attr(&sh, "unique_id", &no.to_string())?;
        self.tree.attr(&sh, "state", "running")?;
        self.tree.attr(&sh, "active_mode", "Initiator")?;
        self.tree.attr(&sh, "supported_mode", "Initiator")?;
        self.tree.write_only(&sh, "scan")?;
        self.tree.write_only(&sh, "host_reset")?;
        self.tree.link(&format!("class/scsi_host/{name}"), &sh)?;
        self.emit_workqueue(Action::Add, &format!("scsi_tmf_{no}"));
        self.emit(Action::Add, &devpath, "scsi", Some("scsi_host"), &[]);
        self.emit(Action::Add, &sh, "scsi_host", None, &[]);
        if let Some(fc) = host.fc.as_mut() {
            // The FC transport asks for a per-host work queue; other hosts have none.
            self.emit_workqueue(Action::Add, &format!("scsi_wq_{no}"));
            fc.bsg = ida_alloc(&mut self.bsg_ids);
            let bsg_name = format!("fc_{name}");
            let bsg = format!("{devpath}/bsg/{bsg_name}");
            self.tree.mkdir(&bsg)?;
            self.tree
                .attr(&bsg, "dev", &format!("{BSG_MAJOR}:{}", fc.bsg))?;
            self.tree.link(&format!("class/bsg/{bsg_name}"), &bsg)?;
            let props = Self::bsg_props(fc.bsg, &bsg_name);
            self.emit(Action::Add, &bsg, "bsg", None, &props);
            let fch = format!("{devpath}/fc_host/{name}");
            self.tree.mkdir(&fch)?;
            self.tree.write_only(&fch, "issue_lip")?;
            if let Some(npiv) = &fc.npiv {
                let dir = match npiv.controls {
                    VportControlDir::FcHost => &fch,
                    VportControlDir::ScsiHost => &sh,
                };
                self.tree.write_only(dir, "vport_create")?;
                self.tree.write_only(dir, "vport_delete")?;
            }
            self.tree.link(&format!("class/fc_host/{name}"), &fch)?;
            self.hosts.insert(no, host);
            self.write_fc_host_attrs(no)?;
            self.emit(Action::Add, &fch, "fc_host", None, &[]);
        } else {
            self.hosts.insert(no, host);
        }
        Ok(no)
    }

    /// The iSCSI transport's part of a login: the host's iscsi_host device and
    /// bsg node, then the session and its connection. Derived from
    /// scsi_transport_iscsi.c; the capture has no iSCSI.
    fn add_iscsi_session(&mut self, no: u32, target_iqn: &str, portal: &str) -> IoResult {
        let host = self.hosts.get(&no).ok_or_else(|| errno(libc::ENODEV))?;
        let devpath = host.devpath.clone();
        let name = host.name();
        // The iSCSI transport asks for a per-host work queue, like FC's.
        self.emit_workqueue(Action::Add, &format!("scsi_wq_{no}"));
        let host_bsg = ida_alloc(&mut self.bsg_ids);
        let bsg_name = format!("iscsi_{name}");
        let bsg = format!("{devpath}/bsg/{bsg_name}");
        self.tree.mkdir(&bsg)?;
        self.tree
            .attr(&bsg, "dev", &format!("{BSG_MAJOR}:{host_bsg}"))?;
        let props = Self::bsg_props(host_bsg, &bsg_name);
        self.emit(Action::Add, &bsg, "bsg", None, &props);
        let ih = format!("{devpath}/iscsi_host/{name}");
        self.tree.mkdir(&ih)?;
        self.emit(Action::Add, &ih, "iscsi_host", None, &[]);
        self.iscsi_sessions += 1;
        let number = self.iscsi_sessions;
        let sess = format!("{devpath}/session{number}");
        let cls = format!("{sess}/iscsi_session/session{number}");
        self.tree.mkdir(&cls)?;
        self.tree.attr(&cls, "targetname", target_iqn)?;
        self.tree.attr(&cls, "state", "LOGGED_IN")?;
        self.emit(Action::Add, &cls, "iscsi_session", None, &[]);
        let conn = format!("{sess}/connection{number}:0/iscsi_connection/connection{number}:0");
        self.tree.mkdir(&conn)?;
        let (address, port) = portal.rsplit_once(':').unwrap_or((portal, "3260"));
        self.tree.attr(&conn, "persistent_address", address)?;
        self.tree.attr(&conn, "persistent_port", port)?;
        self.emit(Action::Add, &conn, "iscsi_connection", None, &[]);
        if let Some(h) = self.hosts.get_mut(&no) {
            h.iscsi = Some(IscsiSession {
                number,
                target_iqn: target_iqn.to_string(),
                portal: portal.to_string(),
                host_bsg,
            });
        }
        Ok(())
    }

    /// Logout: the session's devices, then the session, then the iSCSI host parts.
    fn remove_iscsi_session(&mut self, no: u32) -> IoResult {
        let Some(host) = self.hosts.get(&no) else {
            return Ok(());
        };
        let Some(s) = host.iscsi.clone() else {
            return Ok(());
        };
        let devpath = host.devpath.clone();
        let name = host.name();
        let sess = format!("{devpath}/session{}", s.number);
        let n = s.number;
        self.emit(
            Action::Remove,
            &format!("{sess}/connection{n}:0/iscsi_connection/connection{n}:0"),
            "iscsi_connection",
            None,
            &[],
        );
        self.emit(
            Action::Remove,
            &format!("{sess}/iscsi_session/session{n}"),
            "iscsi_session",
            None,
            &[],
        );
        self.tree.rmdir_all(&sess)?;
        let bsg_name = format!("iscsi_{name}");
        let props = Self::bsg_props(s.host_bsg, &bsg_name);
        self.emit(
            Action::Remove,
            &format!("{devpath}/bsg/{bsg_name}"),
            "bsg",
            None,
            &props,
        );
        self.bsg_ids.remove(&s.host_bsg);
        self.emit(
            Action::Remove,
            &format!("{devpath}/iscsi_host/{name}"),
            "iscsi_host",
            None,
            &[],
        );
        if let Some(h) = self.hosts.get_mut(&no) {
            h.iscsi = None;
        }
        Ok(())
    }

    /// Rewrites the FC host attributes that change without a uevent.
    fn write_fc_host_attrs(&mut self, no: u32) -> IoResult {
        let fabric_wwn = self
            .login_fabric(no)
            .and_then(|f| self.fabrics.get(&f).map(|f| f.wwn));
        let Some(host) = self.hosts.get(&no) else {
            return Ok(());
        };
        let Some(fc) = &host.fc else { return Ok(()) };
        let dir = format!("{}/fc_host/{}", host.devpath, host.name());
        let t = &self.tree;
        t.attr(&dir, "port_name", &fc.wwpn.to_string())?;
        t.attr(&dir, "node_name", &fc.wwnn.to_string())?;
        let online = fc.logged_in;
        t.attr(
            &dir,
            "fabric_name",
            &fabric_wwn
                .filter(|_| online)
                .map_or("0x0".to_string(), |w| w.to_string()),
        )?;
        t.attr(
            &dir,
            "port_id",
            &if online {
                format!("0x{:06x}", fc.port_id)
            } else {
                "0xffffffff".to_string()
            },
        )?;
        t.attr(
            &dir,
            "port_state",
            if online { "Online" } else { "Linkdown" },
        )?;
        // qla2xxx and lpfc show their vHBAs as NPIV VPORT; libfc's vHBA (fcoe)
        // shows the port type its FDISC's answer gave, as its parent does (seen).
        let port_type = match (&host.bus, online) {
            (HostBus::Vport { .. }, _) if host.proc_name != "fcoe" => "NPIV VPORT",
            (_, true) => "NPort (fabric via point-to-point)",
            (_, false) => "Unknown",
        };
        t.attr(&dir, "port_type", port_type)?;
        t.attr(&dir, "speed", if online { &fc.speed } else { "unknown" })?;
        t.attr(&dir, "symbolic_name", &fc.symbolic_name)?;
        t.attr(&dir, "tgtid_bind_type", "wwpn (World Wide Port Name)")?;
        t.attr(&dir, "dev_loss_tmo", "60")?;
        if let Some(npiv) = &fc.npiv {
            t.attr(&dir, "max_npiv_vports", &npiv.max.to_string())?;
            t.attr(&dir, "npiv_vports_inuse", &npiv.vports.len().to_string())?;
        }
        Ok(())
    }

    /// Removes a host the way scsi_remove_host and fc_remove_host do: vports
    /// first, then remote ports, then targets, then the host's own devices.
    pub(crate) fn remove_host(&mut self, no: u32) -> IoResult {
        let Some(host) = self.hosts.get(&no) else {
            return Ok(());
        };
        let vports: Vec<u32> = host
            .fc
            .as_ref()
            .and_then(|f| f.npiv.as_ref())
            .map(|n| n.vports.keys().copied().collect())
            .unwrap_or_default();
        for number in vports {
            self.delete_vport(no, number)?;
        }
        let rports: Vec<u32> = self.hosts[&no]
            .fc
            .as_ref()
            .map(|f| f.rports.keys().copied().collect())
            .unwrap_or_default();
        for r in rports {
            self.remove_rport(no, r)?;
        }
        let targets: Vec<(u32, u32)> = self.hosts[&no].targets.keys().copied().collect();
        for (c, t) in targets {
            self.remove_target(no, c, t)?;
        }
        let had_work_queue = self.hosts[&no].fc.is_some() || self.hosts[&no].iscsi.is_some();
        self.remove_iscsi_session(no)?;
        let host = self.hosts[&no].clone();
        let name = host.name();
        if let Some(fc) = &host.fc {
            let bsg_name = format!("fc_{name}");
            let bsg = format!("{}/bsg/{bsg_name}", host.devpath);
            let props = Self::bsg_props(fc.bsg, &bsg_name);
            self.emit(Action::Remove, &bsg, "bsg", None, &props);
            self.tree.unlink(&format!("class/bsg/{bsg_name}"))?;
            self.bsg_ids.remove(&fc.bsg);
            let fch = format!("{}/fc_host/{name}", host.devpath);
            self.emit(Action::Remove, &fch, "fc_host", None, &[]);
            self.tree.unlink(&format!("class/fc_host/{name}"))?;
        }
        let sh = format!("{}/scsi_host/{name}", host.devpath);
        self.emit(Action::Remove, &sh, "scsi_host", None, &[]);
        self.tree.unlink(&format!("class/scsi_host/{name}"))?;
        self.emit(
            Action::Remove,
            &host.devpath,
            "scsi",
            Some("scsi_host"),
            &[],
        );
        self.tree.unlink(&format!("bus/scsi/devices/{name}"))?;
        self.tree.rmdir_all(&host.devpath)?;
        self.emit_workqueue(Action::Remove, &format!("scsi_tmf_{no}"));
        if had_work_queue {
            self.emit_workqueue(Action::Remove, &format!("scsi_wq_{no}"));
        }
        self.hosts.remove(&no);
        self.host_ids.remove(&no);
        self.scan_locks.remove(&no);
        let bus_dev = match &host.bus {
            HostBus::Pci(addr) => Some(("pci", format!("/devices/pci0000:00/{addr}"))),
            HostBus::Pseudo(k) => {
                self.pseudo_ids.remove(k);
                Some(("pseudo", format!("/devices/pseudo_0/adapter{k}")))
            }
            _ => None,
        };
        if let Some((sub, dev)) = bus_dev {
            self.emit(Action::Unbind, &dev, sub, None, &[]);
            self.emit(Action::Remove, &dev, sub, None, &[]);
            self.tree.rmdir_all(&dev)?;
        }
        Ok(())
    }

    // ---- NPIV ---------------------------------------------------------------

    /// `fc_host/hostN/vport_create`, from the parsed WWNs on.
    pub(crate) fn create_vport(&mut self, no: u32, wwpn: Wwn, wwnn: Wwn) -> IoResult {
        let host = self.hosts.get_mut(&no).ok_or_else(|| errno(libc::ENODEV))?;
        let parent_devpath = host.devpath.clone();
        let own_wwpn = host.fc.as_ref().map(|f| f.wwpn);
        let npiv = host
            .fc
            .as_mut()
            .and_then(|f| f.npiv.as_mut())
            .ok_or_else(|| errno(libc::ENOENT))?;
        // fc_vport_setup: the count is checked before anything is made.
        if npiv.vports.len() as u32 >= npiv.max {
            return Err(errno(libc::ENOSPC));
        }
        let number = npiv.next_vport;
        npiv.next_vport += 1;
        let duplicate = own_wwpn == Some(wwpn) || npiv.vports.values().any(|v| v.wwpn == wwpn);
        let vname = format!("vport-{no}:0-{number}");
        let vdev = format!("{parent_devpath}/{vname}");
        let class = format!("{vdev}/fc_vports/{vname}");
        let vport = Vport {
            wwpn,
            wwnn,
            state: "Initializing",
            last_state: "Unknown",
            symbolic_name: Vec::new(),
            host: None,
        };
        self.tree.mkdir(&class)?;
        self.tree.write_only(&class, "vport_delete")?;
        self.tree.write_only(&class, "vport_disable")?;
        self.tree
            .link(&format!("class/fc_vports/{vname}"), &class)?;
        Self::write_vport_attrs(&self.tree, &class, &vport)?;
        // The vport device itself has no bus or class: only its fc_vports
        // transport device is announced.
        self.emit(Action::Add, &class, "fc_vports", None, &[]);
        let forced = self.faults.vport_create_errno.remove(&no);
        let failure = match forced {
            Some(code) => Some(code),
            // libfc/qla2xxx/lpfc all refuse a WWPN already on the adapter (seen: EINVAL).
            None if duplicate => Some(libc::EINVAL),
            None => None,
        };
        if let Some(code) = failure {
            self.emit(Action::Remove, &class, "fc_vports", None, &[]);
            self.tree.unlink(&format!("class/fc_vports/{vname}"))?;
            self.tree.rmdir_all(&vdev)?;
            return Err(errno(code));
        }
        if let Some(npiv) = self.npiv_mut(no) {
            npiv.vports.insert(number, vport);
        }
        self.write_fc_host_attrs(no)?;
        let parent = self.hosts[&no].clone();
        let pfc = parent.fc.as_ref().ok_or_else(|| errno(libc::ENODEV))?;
        let fc = Fc {
            wwpn,
            wwnn,
            fabric: None,
            link_up: true,
            logged_in: false,
            speed: pfc.speed.clone(),
            port_id: pfc.port_id.wrapping_add(number + 1) & 0xff_ffff,
            bsg: 0,
            npiv: None,
            rports: BTreeMap::new(),
            next_rport: 0,
            next_target_id: 0,
            bindings: BTreeMap::new(),
            symbolic_name: pfc.symbolic_name.clone(),
        };
        let vhost = self.add_host(
            &vdev,
            HostBus::Vport { parent: no, number },
            &parent.proc_name,
            Some(fc),
            Vec::new(),
            false,
        )?;
        if let Some(v) = self.npiv_mut(no).and_then(|n| n.vports.get_mut(&number)) {
            v.host = Some(vhost);
        }
        self.fc_login(vhost)
    }

    fn npiv_mut(&mut self, no: u32) -> Option<&mut Npiv> {
        self.hosts.get_mut(&no)?.fc.as_mut()?.npiv.as_mut()
    }

    fn write_vport_attrs(tree: &Tree, class: &str, v: &Vport) -> IoResult {
        tree.attr(class, "port_name", &v.wwpn.to_string())?;
        tree.attr(class, "node_name", &v.wwnn.to_string())?;
        tree.attr(class, "vport_state", v.state)?;
        tree.attr(class, "vport_last_state", v.last_state)?;
        tree.attr(class, "vport_type", "NPIV VPORT")?;
        tree.attr(class, "roles", "FCP Initiator")?;
        // show_fc_vport_symbolic_name prints the buffer with "%s\n".
        let mut shown: Vec<u8> = v
            .symbolic_name
            .split(|&b| b == 0)
            .next()
            .unwrap_or_default()
            .to_vec();
        shown.push(b'\n');
        tree.attr_bytes(class, "symbolic_name", &shown)
    }

    fn vport_class(&self, no: u32, number: u32) -> Option<String> {
        let host = self.hosts.get(&no)?;
        let vname = format!("vport-{no}:0-{number}");
        Some(format!("{}/{vname}/fc_vports/{vname}", host.devpath))
    }

    pub(crate) fn find_vport(&self, no: u32, wwpn: Wwn, wwnn: Wwn) -> Option<u32> {
        let npiv = self.hosts.get(&no)?.fc.as_ref()?.npiv.as_ref()?;
        npiv.vports
            .iter()
            .find(|(_, v)| v.wwpn == wwpn && v.wwnn == wwnn)
            .map(|(n, _)| *n)
    }

    /// fc_vport_terminate: the vHBA goes (with everything under it), then the vport.
    pub(crate) fn delete_vport(&mut self, no: u32, number: u32) -> IoResult {
        let vhost = self
            .npiv_mut(no)
            .and_then(|n| n.vports.get(&number))
            .ok_or_else(|| errno(libc::ENODEV))?
            .host;
        if let Some(vhost) = vhost {
            self.remove_host(vhost)?;
        }
        let class = self
            .vport_class(no, number)
            .ok_or_else(|| errno(libc::ENODEV))?;
        self.emit(Action::Remove, &class, "fc_vports", None, &[]);
        let vname = format!("vport-{no}:0-{number}");
        self.tree.unlink(&format!("class/fc_vports/{vname}"))?;
        let vdev = format!("{}/{vname}", self.hosts[&no].devpath);
        self.tree.rmdir_all(&vdev)?;
        if let Some(n) = self.npiv_mut(no) {
            n.vports.remove(&number);
        }
        self.write_fc_host_attrs(no)
    }

    pub(crate) fn set_vport_symbolic_name(
        &mut self,
        no: u32,
        number: u32,
        written: &[u8],
    ) -> IoResult {
        let v = self
            .npiv_mut(no)
            .and_then(|n| n.vports.get_mut(&number))
            .ok_or_else(|| errno(libc::ENODEV))?;
        super::writer::store_vport_symbolic_name(&mut v.symbolic_name, written)?;
        let v = v.clone();
        let class = self
            .vport_class(no, number)
            .ok_or_else(|| errno(libc::ENODEV))?;
        Self::write_vport_attrs(&self.tree, &class, &v)
    }

    // ---- fabric login, link state, remote ports ------------------------------

    /// Logs a port into its fabric (if it can) and discovers the target ports
    /// there; then logs in its vports. Changes of port_state and vport_state
    /// emit no uevent; new remote ports and the LUNs the FC transport's own scan
    /// finds do.
    pub(crate) fn fc_login(&mut self, no: u32) -> IoResult {
        if !self.hosts.contains_key(&no) {
            return Err(errno(libc::ENODEV));
        }
        let fabric = self.login_fabric(no);
        let is_vport = matches!(self.hosts[&no].bus, HostBus::Vport { .. });
        if is_vport {
            self.update_vport_state(no)?;
        }
        let Some(fabric) = fabric else {
            if let Some(fc) = self.hosts.get_mut(&no).and_then(|h| h.fc.as_mut()) {
                fc.logged_in = false;
            }
            return self.write_fc_host_attrs(no);
        };
        if let Some(fc) = self.hosts.get_mut(&no).and_then(|h| h.fc.as_mut()) {
            fc.logged_in = true;
        }
        self.write_fc_host_attrs(no)?;
        // libfc logs in to the name server first (PLOGI FFFFFC), then to the ports
        // its GPN_FT lists: the directory server is rport-H:0-0 of every port of a
        // switched fabric, and the first target rport-H:0-1 (seen on a vport's login:
        // fc_remote_ports and bsg of the directory server, then of the target, then
        // its SCSI target, LUNs and disks).
        let name_server = self
            .fabrics
            .get(&fabric)
            .filter(|f| f.name_server)
            .map(|f| f.wwn);
        if let Some(wwn) = name_server {
            self.rport_arrived(
                no,
                wwn,
                wwn,
                DIRECTORY_SERVER_ID,
                RportRole::DirectoryServer,
            )?;
        }
        let ports: Vec<(Wwn, Wwn, u32)> = self
            .targets
            .iter()
            .filter(|t| t.fabric == fabric)
            .map(|t| (t.wwpn, t.wwnn, t.port_id))
            .collect();
        for (wwpn, wwnn, port_id) in ports {
            self.rport_arrived(no, wwpn, wwnn, port_id, RportRole::Target)?;
        }
        let vhosts: Vec<u32> = self.hosts[&no]
            .fc
            .as_ref()
            .and_then(|f| f.npiv.as_ref())
            .map(|n| n.vports.values().filter_map(|v| v.host).collect())
            .unwrap_or_default();
        for v in vhosts {
            self.fc_login(v)?;
        }
        Ok(())
    }

    /// The state a vport's FDISC leaves it in, from its parent and the fabric.
    fn update_vport_state(&mut self, vhost: u32) -> IoResult {
        let HostBus::Vport { parent, number } = self.hosts[&vhost].bus else {
            return Ok(());
        };
        let parent_fabric = self.login_fabric(parent);
        let state = match parent_fabric {
            None => "Linkdown",
            Some(f) if self.fabrics.get(&f).is_some_and(|f| f.npiv) => "Active",
            Some(_) => "No Fabric Support",
        };
        let Some(v) = self
            .npiv_mut(parent)
            .and_then(|n| n.vports.get_mut(&number))
        else {
            return Ok(());
        };
        if v.state != state {
            // A new vport goes Linkdown before the fabric refuses its FDISC: the
            // capture shows "No Fabric Support" with last state "Linkdown".
            v.last_state = if state == "No Fabric Support" && v.state == "Initializing" {
                "Linkdown"
            } else {
                v.state
            };
            v.state = state;
        }
        let v = v.clone();
        if let Some(class) = self.vport_class(parent, number) {
            Self::write_vport_attrs(&self.tree, &class, &v)?;
        }
        Ok(())
    }

    /// Link loss: the port and its vports go Linkdown, remote ports Blocked.
    /// Nothing is removed until dev_loss_tmo, which the simulator does not run out.
    pub(crate) fn fc_link_down(&mut self, no: u32) -> IoResult {
        if !self.hosts.contains_key(&no) {
            return Err(errno(libc::ENODEV));
        }
        if let Some(fc) = self.hosts.get_mut(&no).and_then(|h| h.fc.as_mut()) {
            fc.logged_in = false;
            for r in fc.rports.values_mut().filter(|r| r.state == "Online") {
                r.state = "Blocked";
            }
        }
        self.write_fc_host_attrs(no)?;
        self.write_rport_attrs_all(no)?;
        if matches!(self.hosts[&no].bus, HostBus::Vport { .. }) {
            self.update_vport_state(no)?;
        }
        let vhosts: Vec<u32> = self.hosts[&no]
            .fc
            .as_ref()
            .and_then(|f| f.npiv.as_ref())
            .map(|n| n.vports.values().filter_map(|v| v.host).collect())
            .unwrap_or_default();
        for v in vhosts {
            self.fc_link_down(v)?;
        }
        Ok(())
    }

    fn write_rport_attrs_all(&self, no: u32) -> IoResult {
        let host = &self.hosts[&no];
        if let Some(fc) = &host.fc {
            for (n, r) in &fc.rports {
                self.write_rport_attrs(host, *n, r)?;
            }
        }
        Ok(())
    }

    fn rport_devpath(host: &Host, number: u32) -> String {
        format!("{}/rport-{}:0-{number}", host.devpath, host.no)
    }

    fn write_rport_attrs(&self, host: &Host, number: u32, r: &Rport) -> IoResult {
        let name = format!("rport-{}:0-{number}", host.no);
        let dir = format!(
            "{}/fc_remote_ports/{name}",
            Self::rport_devpath(host, number)
        );
        let t = &self.tree;
        t.attr(&dir, "port_name", &r.wwpn.to_string())?;
        t.attr(&dir, "port_state", r.state)?;
        t.attr(
            &dir,
            "scsi_target_id",
            &r.target_id.map_or("-1".to_string(), |id| id.to_string()),
        )?;
        t.attr(&dir, "dev_loss_tmo", "60")?;
        if r.state == NOT_PRESENT {
            // fc_timeout_deleted_rport keeps only what the wwpn binding needs.
            t.attr(&dir, "node_name", "0xffffffffffffffff")?;
            t.attr(&dir, "port_id", "0xffffffff")?;
            t.attr(&dir, "roles", "unknown")?;
            t.attr(&dir, "supported_classes", "unspecified")
        } else {
            t.attr(&dir, "node_name", &r.wwnn.to_string())?;
            t.attr(&dir, "port_id", &format!("0x{:06x}", r.port_id))?;
            match r.role {
                RportRole::Target => {
                    t.attr(&dir, "roles", "FCP Target")?;
                    t.attr(&dir, "supported_classes", "Class 3")
                }
                RportRole::DirectoryServer => {
                    t.attr(&dir, "roles", "Directory Server")?;
                    t.attr(&dir, "supported_classes", "unspecified")
                }
            }
        }
    }

    /// fc_remote_port_add: a known port comes back Online under its number, a new
    /// one takes the host's next rport number (never reused); a target port is
    /// scanned either way, as fc_scsi_scan_rport does.
    fn rport_arrived(
        &mut self,
        no: u32,
        wwpn: Wwn,
        wwnn: Wwn,
        port_id: u32,
        role: RportRole,
    ) -> IoResult {
        let host = self.hosts.get_mut(&no).ok_or_else(|| errno(libc::ENODEV))?;
        let fc = host.fc.as_mut().ok_or_else(|| errno(libc::ENODEV))?;
        let existing = fc
            .rports
            .iter()
            .find(|(_, r)| r.wwpn == wwpn)
            .map(|(n, _)| *n);
        let number = match existing {
            Some(n) => {
                if let Some(r) = fc.rports.get_mut(&n) {
                    r.state = "Online";
                }
                self.write_rport_attrs_all(no)?;
                n
            }
            None => {
                let number = fc.next_rport;
                fc.next_rport += 1;
                let target_id = match (role, fc.bindings.get(&wwpn)) {
                    (RportRole::DirectoryServer, _) => None,
                    (RportRole::Target, Some(id)) => Some(*id),
                    (RportRole::Target, None) => {
                        let id = fc.next_target_id;
                        fc.next_target_id += 1;
                        fc.bindings.insert(wwpn, id);
                        Some(id)
                    }
                };
                let bsg = ida_alloc(&mut self.bsg_ids);
                let r = Rport {
                    wwpn,
                    wwnn,
                    port_id,
                    state: "Online",
                    role,
                    target_id,
                    bsg,
                };
                let host = self.hosts.get_mut(&no).ok_or_else(|| errno(libc::ENODEV))?;
                if let Some(fc) = host.fc.as_mut() {
                    fc.rports.insert(number, r.clone());
                }
                let host = self.hosts[&no].clone();
                let name = format!("rport-{no}:0-{number}");
                let dev = Self::rport_devpath(&host, number);
                let class = format!("{dev}/fc_remote_ports/{name}");
                self.tree.mkdir(&class)?;
                self.write_rport_attrs(&host, number, &r)?;
                self.tree
                    .link(&format!("class/fc_remote_ports/{name}"), &class)?;
                self.emit(Action::Add, &class, "fc_remote_ports", None, &[]);
                let bsg_dev = format!("{dev}/bsg/{name}");
                self.tree.mkdir(&bsg_dev)?;
                self.tree
                    .attr(&bsg_dev, "dev", &format!("{BSG_MAJOR}:{bsg}"))?;
                self.tree.link(&format!("class/bsg/{name}"), &bsg_dev)?;
                let props = Self::bsg_props(bsg, &name);
                self.emit(Action::Add, &bsg_dev, "bsg", None, &props);
                number
            }
        };
        let target_id = self.hosts[&no]
            .fc
            .as_ref()
            .and_then(|f| f.rports[&number].target_id);
        if let Some(id) = target_id {
            self.scan_target(no, 0, id, None)?;
        }
        Ok(())
    }

    /// A target port leaves its fabric (RSCN): every remote port to it is
    /// blocked, with no uevent, until it returns or dev_loss_tmo runs out.
    pub(crate) fn target_port_gone(&mut self, wwpn: Wwn) -> IoResult {
        let hosts: Vec<u32> = self.hosts.keys().copied().collect();
        for no in hosts {
            if let Some(fc) = self.hosts.get_mut(&no).and_then(|h| h.fc.as_mut()) {
                for r in fc.rports.values_mut().filter(|r| r.wwpn == wwpn) {
                    if r.state == "Online" {
                        r.state = "Blocked";
                    }
                }
            }
            self.write_rport_attrs_all(no)?;
        }
        Ok(())
    }

    /// dev_loss_tmo runs out for every blocked remote port: its SCSI target and
    /// LUNs are removed, and the port stays as "Not Present" in the wwpn
    /// bindings, so that a return gets the same rport and target id.
    pub(crate) fn expire_dev_loss(&mut self) -> IoResult {
        let hosts: Vec<u32> = self.hosts.keys().copied().collect();
        for no in hosts {
            let blocked: Vec<(u32, Option<u32>)> = self.hosts[&no]
                .fc
                .as_ref()
                .map(|f| {
                    f.rports
                        .iter()
                        .filter(|(_, r)| r.state == "Blocked")
                        .map(|(n, r)| (*n, r.target_id))
                        .collect()
                })
                .unwrap_or_default();
            for (number, target_id) in blocked {
                if let Some(id) =
                    target_id.filter(|id| self.hosts[&no].targets.contains_key(&(0, *id)))
                {
                    self.remove_target(no, 0, id)?;
                }
                if let Some(r) = self
                    .hosts
                    .get_mut(&no)
                    .and_then(|h| h.fc.as_mut())
                    .and_then(|f| f.rports.get_mut(&number))
                {
                    r.state = NOT_PRESENT;
                }
            }
            self.write_rport_attrs_all(no)?;
        }
        Ok(())
    }

    /// fc_rport_final_delete: the SCSI target goes first, then the rport's bsg
    /// node and its fc_remote_ports device.
    fn remove_rport(&mut self, no: u32, number: u32) -> IoResult {
        let host = self.hosts[&no].clone();
        let Some(r) = host
            .fc
            .as_ref()
            .and_then(|f| f.rports.get(&number))
            .cloned()
        else {
            return Ok(());
        };
        if let Some(id) = r
            .target_id
            .filter(|id| host.targets.contains_key(&(0, *id)))
        {
            self.remove_target(no, 0, id)?;
        }
        let name = format!("rport-{no}:0-{number}");
        let dev = Self::rport_devpath(&host, number);
        let props = Self::bsg_props(r.bsg, &name);
        self.emit(
            Action::Remove,
            &format!("{dev}/bsg/{name}"),
            "bsg",
            None,
            &props,
        );
        self.tree.unlink(&format!("class/bsg/{name}"))?;
        self.bsg_ids.remove(&r.bsg);
        self.emit(
            Action::Remove,
            &format!("{dev}/fc_remote_ports/{name}"),
            "fc_remote_ports",
            None,
            &[],
        );
        self.tree.unlink(&format!("class/fc_remote_ports/{name}"))?;
        self.tree.rmdir_all(&dev)?;
        if let Some(fc) = self.hosts.get_mut(&no).and_then(|h| h.fc.as_mut()) {
            fc.rports.remove(&number);
        }
        Ok(())
    }

    /// A new target port on a fabric (RSCN): every port logged in there logs in
    /// to it and scans it.
    pub(crate) fn target_port_added(&mut self, wwpn: Wwn) -> IoResult {
        let Some(t) = self.target_port(wwpn).cloned() else {
            return Ok(());
        };
        let hosts: Vec<u32> = self.hosts.keys().copied().collect();
        for no in hosts {
            if self.hosts.contains_key(&no)
                && self.login_fabric(no).as_deref() == Some(t.fabric.as_str())
            {
                self.rport_arrived(no, t.wwpn, t.wwnn, t.port_id, RportRole::Target)?;
            }
        }
        Ok(())
    }

    // ---- scanning -----------------------------------------------------------

    /// The devpath of a target, under its remote port on FC hosts.
    fn target_devpath(host: &Host, channel: u32, id: u32) -> String {
        let name = format!("target{}:{channel}:{id}", host.no);
        let rport = host
            .fc
            .as_ref()
            .and_then(|f| f.rports.iter().find(|(_, r)| r.target_id == Some(id)));
        match (rport, &host.iscsi) {
            (Some((n, _)), _) => format!("{}/{name}", Self::rport_devpath(host, *n)),
            (None, Some(s)) => format!("{}/session{}/{name}", host.devpath, s.number),
            (None, None) => format!("{}/{name}", host.devpath),
        }
    }

    /// What REPORT LUNS / INQUIRY at (channel, id) of this host would find.
    fn visible_luns(&self, host: &Host, channel: u32, id: u32) -> Vec<LunSpec> {
        match &host.fc {
            Some(fc) => {
                let Some(r) = fc
                    .rports
                    .values()
                    .find(|r| r.target_id == Some(id) && channel == 0)
                else {
                    return Vec::new();
                };
                let Some(t) = self.target_port(r.wwpn) else {
                    return Vec::new();
                };
                t.luns
                    .iter()
                    .filter(|l| l.initiators.contains(&fc.wwpn))
                    .cloned()
                    .collect()
            }
            None => host
                .local
                .iter()
                .filter(|l| l.channel == channel && l.target == id)
                .map(|l| l.spec.clone())
                .collect(),
        }
    }

    /// `scsi_host/hostN/scan` with the wildcards resolved to `None`.
    pub(crate) fn scan(
        &mut self,
        no: u32,
        channel: Option<u32>,
        id: Option<u32>,
        lun: Option<u64>,
    ) -> IoResult {
        let host = self.hosts.get(&no).ok_or_else(|| errno(libc::ENODEV))?;
        let addrs: BTreeSet<(u32, u32)> = match &host.fc {
            // fc_user_scan: only remote ports that are Online FCP targets with a
            // target id; a scan never logs in to new ports.
            Some(fc) => fc
                .rports
                .values()
                .filter(|r| r.state == "Online")
                .filter_map(|r| Some((0, r.target_id?)))
                .collect(),
            // A local host probes its addresses: here, the ones that hold devices.
            None => host
                .local
                .iter()
                .map(|l| (l.channel, l.target))
                .chain(host.targets.keys().copied())
                .collect(),
        };
        for (c, t) in addrs {
            if channel.is_some_and(|x| x != c) || id.is_some_and(|x| x != t) {
                continue;
            }
            self.scan_target(no, c, t, lun)?;
        }
        Ok(())
    }

    /// scsi_scan_target: REPORT LUNS (or one INQUIRY) and a device for every LUN
    /// found that is not there yet. A scan never removes anything.
    fn scan_target(&mut self, no: u32, channel: u32, id: u32, lun: Option<u64>) -> IoResult {
        let host = self.hosts[&no].clone();
        let present: BTreeSet<u64> = host
            .targets
            .get(&(channel, id))
            .map(|t| t.luns.keys().copied().collect())
            .unwrap_or_default();
        if lun.is_none() {
            if let Some(t) = self
                .hosts
                .get_mut(&no)
                .and_then(|h| h.targets.get_mut(&(channel, id)))
            {
                t.expecting_lun_change = false;
            }
        }
        let mut new: Vec<LunSpec> = self
            .visible_luns(&host, channel, id)
            .into_iter()
            .filter(|l| lun.is_none_or(|x| x == l.lun) && !present.contains(&l.lun))
            .collect();
        new.sort_by_key(|l| l.lun);
        if new.is_empty() {
            return Ok(());
        }
        let tdev = Self::target_devpath(&host, channel, id);
        let tname = format!("target{no}:{channel}:{id}");
        if !host.targets.contains_key(&(channel, id)) {
            self.tree.mkdir(&tdev)?;
            self.tree
                .link(&format!("bus/scsi/devices/{tname}"), &tdev)?;
            if let Some(h) = self.hosts.get_mut(&no) {
                h.targets.insert((channel, id), Target::default());
            }
            self.emit(Action::Add, &tdev, "scsi", Some("scsi_target"), &[]);
            if host.fc.is_some() {
                let ft = format!("{tdev}/fc_transport/{tname}");
                self.tree.mkdir(&ft)?;
                self.tree
                    .link(&format!("class/fc_transport/{tname}"), &ft)?;
                self.emit(Action::Add, &ft, "fc_transport", None, &[]);
            }
        }
        // The midlayer adds each device, then sd's probe (asynchronous in the
        // kernel) registers the disks: block devices come after all the devices.
        let mut added = Vec::new();
        for spec in new {
            added.push(self.add_lun_device(no, channel, id, spec, &tdev)?);
        }
        for hctl in &added {
            let lun = self.lun(*hctl).map(|l| sd_dev(l.sd));
            if let Some((major, minor)) = lun {
                self.emit(
                    Action::Add,
                    &format!("/devices/virtual/bdi/{major}:{minor}"),
                    "bdi",
                    None,
                    &[],
                );
            }
        }
        for hctl in added {
            self.add_disk(hctl, &tdev)?;
        }
        Ok(())
    }

    pub(crate) fn lun(&self, hctl: Hctl) -> Option<&Lun> {
        self.hosts
            .get(&hctl.host)?
            .targets
            .get(&(hctl.channel, hctl.target))?
            .luns
            .get(&hctl.lun)
    }

    fn lun_mut(&mut self, hctl: Hctl) -> Option<&mut Lun> {
        self.hosts
            .get_mut(&hctl.host)?
            .targets
            .get_mut(&(hctl.channel, hctl.target))?
            .luns
            .get_mut(&hctl.lun)
    }

    pub(crate) fn lun_devpath(&self, hctl: Hctl) -> Option<String> {
        let host = self.hosts.get(&hctl.host)?;
        host.targets
            .get(&(hctl.channel, hctl.target))?
            .luns
            .get(&hctl.lun)?;
        Some(format!(
            "{}/{hctl}",
            Self::target_devpath(host, hctl.channel, hctl.target)
        ))
    }

    fn scsi_device_props(driver: bool) -> Vec<(&'static str, String)> {
        let mut p = Vec::new();
        if driver {
            p.push(("DRIVER", "sd".to_string()));
        }
        p.push(("MODALIAS", "scsi:t-0x00".to_string()));
        p
    }

    fn add_lun_device(
        &mut self,
        no: u32,
        channel: u32,
        id: u32,
        spec: LunSpec,
        tdev: &str,
    ) -> IoResult<Hctl> {
        let hctl = Hctl {
            host: no,
            channel,
            target: id,
            lun: spec.lun,
        };
        let dev = format!("{tdev}/{hctl}");
        let sg = ida_alloc(&mut self.sg_ids);
        let bsg = ida_alloc(&mut self.bsg_ids);
        let sd = ida_alloc(&mut self.sd_ids);
        let t = &self.tree;
        t.mkdir(&dev)?;
        t.attr(&dev, "vendor", &pad(&spec.vendor, 8))?;
        t.attr(&dev, "model", &pad(&spec.model, 16))?;
        t.attr(&dev, "rev", &pad(&spec.rev, 4))?;
        t.attr(&dev, "type", "0")?;
        t.attr(&dev, "state", "running")?;
        t.attr(&dev, "scsi_level", "7")?;
        t.attr(&dev, "queue_depth", "32")?;
        t.attr(&dev, "modalias", "scsi:t-0x00")?;
        t.attr(&dev, "wwid", &spec.wwid)?;
        t.attr_bytes(&dev, "vpd_pg80", &vpd_pg80(&spec.serial))?;
        t.write_only(&dev, "rescan")?;
        t.write_only(&dev, "delete")?;
        t.link(&format!("bus/scsi/devices/{hctl}"), &dev)?;
        let por = self.hosts[&no].power_on_reset_ua;
        let size = spec.size_bytes;
        if let Some(target) = self
            .hosts
            .get_mut(&no)
            .and_then(|h| h.targets.get_mut(&(channel, id)))
        {
            target.luns.insert(
                spec.lun,
                Lun {
                    spec,
                    size_bytes: size,
                    sd,
                    sg,
                    bsg,
                    diskseq: 0,
                    pending_ua: Vec::new(),
                },
            );
        }
        self.emit(
            Action::Add,
            &dev,
            "scsi",
            Some("scsi_device"),
            &Self::scsi_device_props(false),
        );
        let disk_cls = format!("{dev}/scsi_disk/{hctl}");
        self.tree.mkdir(&disk_cls)?;
        self.tree
            .link(&format!("class/scsi_disk/{hctl}"), &disk_cls)?;
        self.emit(Action::Add, &disk_cls, "scsi_disk", None, &[]);
        if por {
            self.emit(
                Action::Change,
                &dev,
                "scsi",
                Some("scsi_device"),
                &[
                    ("SDEV_UA", "POWER_ON_RESET_OCCURRED".to_string()),
                    ("DRIVER", "sd".to_string()),
                    ("MODALIAS", "scsi:t-0x00".to_string()),
                ],
            );
        }
        let dev_cls = format!("{dev}/scsi_device/{hctl}");
        self.tree.mkdir(&dev_cls)?;
        self.tree
            .link(&format!("class/scsi_device/{hctl}"), &dev_cls)?;
        self.emit(Action::Add, &dev_cls, "scsi_device", None, &[]);
        let sg_name = format!("sg{sg}");
        let sg_dev = format!("{dev}/scsi_generic/{sg_name}");
        self.tree.mkdir(&sg_dev)?;
        self.tree
            .attr(&sg_dev, "dev", &format!("{SG_MAJOR}:{sg}"))?;
        self.tree
            .link(&format!("class/scsi_generic/{sg_name}"), &sg_dev)?;
        self.emit(
            Action::Add,
            &sg_dev,
            "scsi_generic",
            None,
            &[
                ("MAJOR", SG_MAJOR.to_string()),
                ("MINOR", sg.to_string()),
                ("DEVNAME", sg_name.clone()),
            ],
        );
        let bsg_dev = format!("{dev}/bsg/{hctl}");
        self.tree.mkdir(&bsg_dev)?;
        self.tree
            .attr(&bsg_dev, "dev", &format!("{BSG_MAJOR}:{bsg}"))?;
        self.tree.link(&format!("class/bsg/{hctl}"), &bsg_dev)?;
        let props = Self::bsg_props(bsg, &hctl.to_string());
        self.emit(Action::Add, &bsg_dev, "bsg", None, &props);
        Ok(hctl)
    }

    fn block_props(lun: &Lun) -> Vec<(&'static str, String)> {
        let (major, minor) = sd_dev(lun.sd);
        vec![
            ("MAJOR", major.to_string()),
            ("MINOR", minor.to_string()),
            ("DEVNAME", sd_name(lun.sd)),
            ("DISKSEQ", lun.diskseq.to_string()),
        ]
    }

    /// sd_probe's second half: the disk, its udev links, and the driver bind.
    fn add_disk(&mut self, hctl: Hctl, tdev: &str) -> IoResult {
        self.diskseq += 1;
        let diskseq = self.diskseq;
        let Some(lun) = self.lun_mut(hctl) else {
            return Ok(());
        };
        lun.diskseq = diskseq;
        let lun = lun.clone();
        let dev = format!("{tdev}/{hctl}");
        let name = sd_name(lun.sd);
        let bdev = format!("{dev}/block/{name}");
        let (major, minor) = sd_dev(lun.sd);
        let t = &self.tree;
        t.mkdir(&bdev)?;
        t.attr(&bdev, "dev", &format!("{major}:{minor}"))?;
        t.attr(&bdev, "size", &(lun.size_bytes / 512).to_string())?;
        t.attr(&bdev, "ro", "0")?;
        t.attr(&bdev, "removable", "0")?;
        // What reading `uevent` shows (the device's own properties); writing an
        // action to it makes the kernel send that event ([`Kernel::synth_uevent`]).
        let own: Vec<String> = Self::block_props(&lun)
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        t.attr_bytes(&bdev, "uevent", format!("{}\n", own.join("\n")).as_bytes())?;
        t.link(&format!("block/{name}"), &bdev)?;
        t.link_in(&dev, "driver", "bus/scsi/drivers/sd")?;
        let links = self.udev_links(hctl, &lun);
        for (dir, link) in &links {
            self.claim_link(dir, link, &name)?;
        }
        let mut props = Self::block_props(&lun);
        props.push(("DEVLINKS", devlinks(&links)));
        self.emit(Action::Add, &bdev, "block", Some("disk"), &props);
        self.emit(
            Action::Bind,
            &dev,
            "scsi",
            Some("scsi_device"),
            &Self::scsi_device_props(true),
        );
        Ok(())
    }

    /// The stable names udev's 60-persistent-storage rules give a disk.
    fn udev_links(&self, hctl: Hctl, lun: &Lun) -> Vec<(String, String)> {
        let mut links = Vec::new();
        let Some(host) = self.hosts.get(&hctl.host) else {
            return links;
        };
        // path_id walks up to the PCI device; vports and hosts add nothing, so two
        // vHBAs of one port give the same by-path name (upstream udev, VMLAB.md).
        let mut pci = None;
        let mut cur = Some(host);
        while let Some(h) = cur {
            match &h.bus {
                HostBus::Pci(addr) => {
                    pci = Some(addr.clone());
                    break;
                }
                HostBus::Vport { parent, .. } => cur = self.hosts.get(parent),
                _ => break,
            }
        }
        if let Some(s) = &host.iscsi {
            links.push((
                "by-path".to_string(),
                format!("ip-{}-iscsi-{}-lun-{}", s.portal, s.target_iqn, hctl.lun),
            ));
        }
        if let Some(pci) = pci {
            let tail = match &host.fc {
                Some(fc) => fc
                    .rports
                    .values()
                    .find(|r| r.target_id == Some(hctl.target))
                    .map(|r| format!("fc-{}-lun-{}", r.wwpn, hctl.lun)),
                None => Some(format!(
                    "scsi-0:{}:{}:{}",
                    hctl.channel, hctl.target, hctl.lun
                )),
            };
            if let Some(tail) = tail {
                links.push(("by-path".to_string(), format!("pci-{pci}-{tail}")));
            }
        }
        if let Some(naa) = lun.spec.wwid.strip_prefix("naa.") {
            links.push(("by-id".to_string(), format!("wwn-0x{naa}")));
            links.push(("by-id".to_string(), format!("scsi-3{naa}")));
        }
        links
    }

    fn claim_link(&mut self, dir: &str, name: &str, disk: &str) -> IoResult {
        let owners = self
            .dev_links
            .entry((dir.to_string(), name.to_string()))
            .or_default();
        owners.retain(|d| d != disk);
        owners.push(disk.to_string());
        self.tree.dev_link(dir, name, disk)
    }

    /// udev drops a removed disk's claims; a link another disk still claims
    /// points to that disk again.
    fn release_links(&mut self, disk: &str) -> IoResult {
        let keys: Vec<(String, String)> = self
            .dev_links
            .iter()
            .filter(|(_, owners)| owners.iter().any(|d| d == disk))
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            let owners = self.dev_links.entry(key.clone()).or_default();
            owners.retain(|d| d != disk);
            match owners.last().cloned() {
                Some(other) => self.tree.dev_link(&key.0, &key.1, &other)?,
                None => {
                    self.dev_links.remove(&key);
                    self.tree.dev_unlink(&key.0, &key.1)?;
                }
            }
        }
        Ok(())
    }

    /// __scsi_remove_device, then the target when it was the last device.
    pub(crate) fn remove_lun(&mut self, hctl: Hctl) -> IoResult {
        let dev = self.lun_devpath(hctl).ok_or_else(|| errno(libc::ENODEV))?;
        let Some(lun) = self.lun(hctl).cloned() else {
            return Err(errno(libc::ENODEV));
        };
        let name = sd_name(lun.sd);
        let props = Self::bsg_props(lun.bsg, &hctl.to_string());
        self.emit(
            Action::Remove,
            &format!("{dev}/bsg/{hctl}"),
            "bsg",
            None,
            &props,
        );
        self.tree.unlink(&format!("class/bsg/{hctl}"))?;
        let sg_name = format!("sg{}", lun.sg);
        self.emit(
            Action::Remove,
            &format!("{dev}/scsi_generic/{sg_name}"),
            "scsi_generic",
            None,
            &[
                ("MAJOR", SG_MAJOR.to_string()),
                ("MINOR", lun.sg.to_string()),
                ("DEVNAME", sg_name.clone()),
            ],
        );
        self.tree.unlink(&format!("class/scsi_generic/{sg_name}"))?;
        self.emit(
            Action::Remove,
            &format!("{dev}/scsi_device/{hctl}"),
            "scsi_device",
            None,
            &[],
        );
        self.tree.unlink(&format!("class/scsi_device/{hctl}"))?;
        self.emit(
            Action::Remove,
            &format!("{dev}/scsi_disk/{hctl}"),
            "scsi_disk",
            None,
            &[],
        );
        self.tree.unlink(&format!("class/scsi_disk/{hctl}"))?;
        let (major, minor) = sd_dev(lun.sd);
        self.emit(
            Action::Remove,
            &format!("/devices/virtual/bdi/{major}:{minor}"),
            "bdi",
            None,
            &[],
        );
        let links = self.udev_links(hctl, &lun);
        let mut props = Self::block_props(&lun);
        props.push(("DEVLINKS", devlinks(&links)));
        self.release_links(&name)?;
        self.emit(
            Action::Remove,
            &format!("{dev}/block/{name}"),
            "block",
            Some("disk"),
            &props,
        );
        self.tree.unlink(&format!("block/{name}"))?;
        self.emit(Action::Unbind, &dev, "scsi", Some("scsi_device"), &[]);
        self.emit(
            Action::Remove,
            &dev,
            "scsi",
            Some("scsi_device"),
            &Self::scsi_device_props(false),
        );
        self.tree.unlink(&format!("bus/scsi/devices/{hctl}"))?;
        self.tree.rmdir_all(&dev)?;
        self.sd_ids.remove(&lun.sd);
        self.sg_ids.remove(&lun.sg);
        self.bsg_ids.remove(&lun.bsg);
        let empty = match self
            .hosts
            .get_mut(&hctl.host)
            .and_then(|h| h.targets.get_mut(&(hctl.channel, hctl.target)))
        {
            Some(t) => {
                t.luns.remove(&hctl.lun);
                t.luns.is_empty()
            }
            None => false,
        };
        if empty {
            self.remove_target(hctl.host, hctl.channel, hctl.target)?;
        }
        Ok(())
    }

    fn remove_target(&mut self, no: u32, channel: u32, id: u32) -> IoResult {
        let Some(host) = self.hosts.get(&no) else {
            return Ok(());
        };
        let tdev = Self::target_devpath(host, channel, id);
        let is_fc = host.fc.is_some();
        let luns: Vec<u64> = host
            .targets
            .get(&(channel, id))
            .map(|t| t.luns.keys().copied().collect())
            .unwrap_or_default();
        for lun in luns {
            // The last LUN's removal takes the target with it.
            self.remove_lun(Hctl {
                host: no,
                channel,
                target: id,
                lun,
            })?;
        }
        let Some(host) = self.hosts.get_mut(&no) else {
            return Ok(());
        };
        if host.targets.remove(&(channel, id)).is_none() {
            return Ok(());
        }
        let tname = format!("target{no}:{channel}:{id}");
        if is_fc {
            self.emit(
                Action::Remove,
                &format!("{tdev}/fc_transport/{tname}"),
                "fc_transport",
                None,
                &[],
            );
            self.tree.unlink(&format!("class/fc_transport/{tname}"))?;
        }
        self.emit(Action::Remove, &tdev, "scsi", Some("scsi_target"), &[]);
        self.tree.unlink(&format!("bus/scsi/devices/{tname}"))?;
        self.tree.rmdir_all(&tdev)
    }

    /// `device/rescan`: READ CAPACITY and INQUIRY again. A new size is announced
    /// by the block layer as a `change` with RESIZE=1; nothing else is.
    pub(crate) fn rescan_lun(&mut self, hctl: Hctl) -> IoResult {
        let dev = self.lun_devpath(hctl).ok_or_else(|| errno(libc::ENODEV))?;
        let host = self.hosts[&hctl.host].clone();
        let now = self
            .visible_luns(&host, hctl.channel, hctl.target)
            .into_iter()
            .find(|l| l.lun == hctl.lun);
        let Some(now) = now else {
            // Unmapped underneath: the device stays, its capacity unchanged.
            return Ok(());
        };
        let Some(lun) = self.lun_mut(hctl) else {
            return Err(errno(libc::ENODEV));
        };
        let resized = lun.size_bytes != now.size_bytes;
        lun.size_bytes = now.size_bytes;
        lun.pending_ua
            .retain(|ua| *ua != "CAPACITY_DATA_HAS_CHANGED");
        lun.spec = LunSpec {
            initiators: BTreeSet::new(),
            ..now
        };
        let lun = lun.clone();
        self.tree.attr(&dev, "vendor", &pad(&lun.spec.vendor, 8))?;
        self.tree.attr(&dev, "model", &pad(&lun.spec.model, 16))?;
        if resized {
            let bdev = format!("{dev}/block/{}", sd_name(lun.sd));
            self.tree
                .attr(&bdev, "size", &(lun.size_bytes / 512).to_string())?;
            let mut props = Self::block_props(&lun);
            props.push(("RESIZE", "1".to_string()));
            props.push(("DEVLINKS", devlinks(&self.udev_links(hctl, &lun))));
            self.emit(Action::Change, &bdev, "block", Some("disk"), &props);
        }
        Ok(())
    }

    /// A write to a disk's `uevent` file (`uevent_store`, `kobject_synth_uevent`):
    /// the kernel sends the event named, with the device's own properties and
    /// `SYNTH_UUID` (0 unless one is given, then `SYNTH_ARG_*` for the `KEY=VALUE`
    /// arguments after it), and changes nothing else. This is how
    /// `udevadm trigger` (and hbad after marking a vport) makes udev run its rules
    /// for a device again; on a host with udev the event comes back with the links
    /// the rules gave.
    pub(crate) fn synth_uevent(&mut self, bdev: &str, written: &str) -> IoResult {
        let SynthUevent { action, uuid, args } = parse_synth_uevent(written)?;
        let lun_dev = parent_devpath(bdev)
            .and_then(parent_devpath)
            .ok_or_else(|| errno(libc::ENOENT))?;
        let hctl: Hctl = devpath_name(lun_dev)
            .parse()
            .map_err(|_| errno(libc::ENOENT))?;
        let lun = match self.lun(hctl) {
            Some(lun)
                if self.lun_devpath(hctl).as_deref() == Some(lun_dev)
                    && sd_name(lun.sd) == devpath_name(bdev) =>
            {
                lun.clone()
            }
            // The file of a device since removed.
            _ => return Err(errno(libc::ENODEV)),
        };
        let mut props = Self::block_props(&lun);
        props.push(("SYNTH_UUID", uuid));
        let arg_keys: Vec<String> = args.iter().map(|(k, _)| format!("SYNTH_ARG_{k}")).collect();
        for ((_, v), key) in args.iter().zip(&arg_keys) {
            props.push((key.as_str(), v.clone()));
        }
        if action != Action::Remove {
            props.push(("DEVLINKS", devlinks(&self.udev_links(hctl, &lun))));
        }
        self.emit(action, bdev, "block", Some("disk"), &props);
        Ok(())
    }

    /// One command to a LUN: it reports the unit attentions waiting for it.
    pub(crate) fn io(&mut self, hctl: Hctl) -> Option<Vec<&'static str>> {
        let dev = self.lun_devpath(hctl)?;
        let target = self
            .hosts
            .get_mut(&hctl.host)?
            .targets
            .get_mut(&(hctl.channel, hctl.target))?;
        let lun = target.luns.get_mut(&hctl.lun)?;
        let pending = std::mem::take(&mut lun.pending_ua);
        let mut reported = Vec::new();
        for ua in pending {
            if ua == "REPORTED_LUNS_DATA_HAS_CHANGED" {
                if target.expecting_lun_change {
                    continue;
                }
                target.expecting_lun_change = true;
            }
            reported.push(ua);
        }
        let lun = lun.clone();
        for ua in &reported {
            self.emit(
                Action::Change,
                &dev,
                "scsi",
                Some("scsi_device"),
                &[
                    ("SDEV_UA", (*ua).to_string()),
                    ("DRIVER", "sd".to_string()),
                    ("MODALIAS", "scsi:t-0x00".to_string()),
                ],
            );
            // udev's rules answer a scsi_device change by writing `change` to the
            // disk's uevent file (VMLAB.md: seen with systemd-udevd 252).
            let mut props = Self::block_props(&lun);
            props.push(("DEVLINKS", devlinks(&self.udev_links(hctl, &lun))));
            self.emit_for(
                true,
                Action::Change,
                &format!("{dev}/block/{}", sd_name(lun.sd)),
                "block",
                Some("disk"),
                &props,
            );
        }
        Some(reported)
    }

    /// Establishes a unit attention on every LUN of every I_T nexus between an
    /// initiator port and a target port (what an array does when it changes the
    /// LUN inventory it reports to that initiator).
    pub(crate) fn raise_ua_on_nexus(&mut self, initiator: Wwn, target: Wwn, ua: &'static str) {
        for host in self.hosts.values_mut() {
            let Some(fc) = &host.fc else { continue };
            if fc.wwpn != initiator {
                continue;
            }
            let ids: Vec<u32> = fc
                .rports
                .values()
                .filter(|r| r.wwpn == target)
                .filter_map(|r| r.target_id)
                .collect();
            for id in ids {
                if let Some(t) = host.targets.get_mut(&(0, id)) {
                    for lun in t.luns.values_mut() {
                        if !lun.pending_ua.contains(&ua) {
                            lun.pending_ua.push(ua);
                        }
                    }
                }
            }
        }
    }

    /// CAPACITY DATA HAS CHANGED on every path to one LUN of a target port.
    pub(crate) fn raise_capacity_ua(&mut self, target: Wwn, lun_no: u64) {
        for host in self.hosts.values_mut() {
            let Some(fc) = &host.fc else { continue };
            let ids: Vec<u32> = fc
                .rports
                .values()
                .filter(|r| r.wwpn == target)
                .filter_map(|r| r.target_id)
                .collect();
            for id in ids {
                if let Some(lun) = host
                    .targets
                    .get_mut(&(0, id))
                    .and_then(|t| t.luns.get_mut(&lun_no))
                {
                    if !lun.pending_ua.contains(&"CAPACITY_DATA_HAS_CHANGED") {
                        lun.pending_ua.push("CAPACITY_DATA_HAS_CHANGED");
                    }
                }
            }
        }
    }

    /// A local LUN leaves REPORT LUNS (scsi_debug's max_luns lowered): the
    /// device stays, and its target reports the change on the next command.
    pub(crate) fn remove_local_lun(&mut self, hctl: Hctl) {
        let Some(host) = self.hosts.get_mut(&hctl.host) else {
            return;
        };
        host.local.retain(|l| {
            !(l.channel == hctl.channel && l.target == hctl.target && l.spec.lun == hctl.lun)
        });
        if let Some(t) = host.targets.get_mut(&(hctl.channel, hctl.target)) {
            for l in t.luns.values_mut() {
                if !l.pending_ua.contains(&"REPORTED_LUNS_DATA_HAS_CHANGED") {
                    l.pending_ua.push("REPORTED_LUNS_DATA_HAS_CHANGED");
                }
            }
        }
    }

    /// REPORT LUNS sent through one device: the LUNs the target presents to this
    /// initiator now. Sent through a LUN it no longer presents (other than LUN 0,
    /// which answers for the target), it fails as LIO's do: CHECK CONDITION,
    /// LOGICAL UNIT NOT SUPPORTED.
    pub(crate) fn report_luns(&mut self, hctl: Hctl) -> IoResult<Vec<u64>> {
        if self.lun(hctl).is_some() {
            if let Some(answer) = self
                .faults
                .report_luns_answers
                .get_mut(&hctl.host)
                .and_then(std::collections::VecDeque::pop_front)
            {
                return Ok(answer);
            }
        }
        let host = self
            .hosts
            .get(&hctl.host)
            .ok_or_else(|| errno(libc::ENODEV))?;
        if self.lun(hctl).is_none() {
            return Err(errno(libc::ENODEV));
        }
        let mut luns: Vec<u64> = self
            .visible_luns(host, hctl.channel, hctl.target)
            .iter()
            .map(|l| l.lun)
            .collect();
        luns.sort_unstable();
        if hctl.lun != 0 && !luns.contains(&hctl.lun) {
            return Err(io::Error::other(format!(
                "REPORT LUNS through {hctl} failed: SCSI status 0x02, sense key 0x5 asc/ascq 0x25/0x00"
            )));
        }
        Ok(luns)
    }

    /// A local LUN appears (scsi_debug's max_luns raised): the target reports it
    /// to the next command on its other LUNs.
    pub(crate) fn add_local_lun(&mut self, no: u32, lun: LocalLun) {
        let Some(host) = self.hosts.get_mut(&no) else {
            return;
        };
        let addr = (lun.channel, lun.target);
        host.local.retain(|l| {
            !(l.channel == lun.channel && l.target == lun.target && l.spec.lun == lun.spec.lun)
        });
        host.local.push(lun);
        if let Some(t) = host.targets.get_mut(&addr) {
            for l in t.luns.values_mut() {
                if !l.pending_ua.contains(&"REPORTED_LUNS_DATA_HAS_CHANGED") {
                    l.pending_ua.push("REPORTED_LUNS_DATA_HAS_CHANGED");
                }
            }
        }
    }
}

/// `kobject_action_type` and `kobject_synth_uevent`'s parsing of a write to a
/// `uevent` file: one trailing newline or NUL dropped, an action name, then
/// optionally a UUID and `KEY=VALUE` arguments (keys of letters, digits and `_`).
/// Anything else is EINVAL.
/// A synthetic uevent as written to a `uevent` file.
struct SynthUevent {
    action: Action,
    uuid: String,
    args: Vec<(String, String)>,
}

fn parse_synth_uevent(written: &str) -> IoResult<SynthUevent> {
    let text = written
        .strip_suffix('\n')
        .or_else(|| written.strip_suffix('\0'))
        .unwrap_or(written);
    let (word, rest) = match text.split_once(' ') {
        Some((w, r)) => (w, Some(r)),
        None => (text, None),
    };
    let action: Action = word.parse().map_err(|()| errno(libc::EINVAL))?;
    let Some(rest) = rest else {
        return Ok(SynthUevent {
            action,
            uuid: "0".to_string(),
            args: Vec::new(),
        });
    };
    let mut words = rest.split(' ');
    let uuid = words.next().unwrap_or_default();
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    let groups: Vec<&str> = uuid.split('-').collect();
    let well_formed =
        groups.len() == 5 && groups.iter().zip([8, 4, 4, 4, 12]).all(|(g, n)| hex(g, n));
    if !well_formed {
        return Err(errno(libc::EINVAL));
    }
    let mut args = Vec::new();
    for word in words {
        let (k, v) = word.split_once('=').ok_or_else(|| errno(libc::EINVAL))?;
        if k.is_empty() || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(errno(libc::EINVAL));
        }
        args.push((k.to_string(), v.to_string()));
    }
    Ok(SynthUevent {
        action,
        uuid: uuid.to_string(),
        args,
    })
}

/// What the kernel's netlink group sends: no udev additions.
fn kernel_view(ev: &Uevent) -> Uevent {
    let mut ev = ev.clone();
    ev.props.remove("DEVLINKS");
    ev
}

fn devlinks(links: &[(String, String)]) -> String {
    links
        .iter()
        .map(|(d, n)| format!("/dev/disk/{d}/{n}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// INQUIRY strings are fixed-width and space padded; sysfs shows the padding.
fn pad(s: &str, width: usize) -> String {
    let mut out: String = s.chars().take(width).collect();
    while out.len() < width {
        out.push(' ');
    }
    out
}

/// VPD page 0x80: header, then the serial.
fn vpd_pg80(serial: &str) -> Vec<u8> {
    let body = serial.as_bytes();
    let len = body.len().min(255);
    let mut page = vec![0, 0x80, 0, len as u8];
    page.extend_from_slice(&body[..len]);
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_names_and_numbers_follow_sd() {
        assert_eq!(sd_name(0), "sda");
        assert_eq!(sd_name(13), "sdn");
        assert_eq!(sd_name(25), "sdz");
        assert_eq!(sd_name(26), "sdaa");
        assert_eq!(sd_name(701), "sdzz");
        assert_eq!(sd_name(702), "sdaaa");
        // From the capture: sdn is 8:208, sdq (index 16) is 65:0, sdx 65:112.
        assert_eq!(sd_dev(13), (8, 208));
        assert_eq!(sd_dev(16), (65, 0));
        assert_eq!(sd_dev(23), (65, 112));
        assert_eq!(sd_dev(128), (128, 0));
        assert_eq!(sd_dev(256), (8, 256));
    }

    #[test]
    fn ida_hands_out_the_lowest_free_number() {
        let mut used = BTreeSet::new();
        assert_eq!(ida_alloc(&mut used), 0);
        assert_eq!(ida_alloc(&mut used), 1);
        assert_eq!(ida_alloc(&mut used), 2);
        used.remove(&1);
        assert_eq!(ida_alloc(&mut used), 1);
        assert_eq!(ida_alloc(&mut used), 3);
    }
}
