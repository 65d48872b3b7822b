//! NPIV vports: create, confirm, mark as hbad's own, delete.
//!
//! A write to `vport_create` that succeeds only means the kernel made its objects;
//! the vHBA is confirmed by finding, under the parent, a vport and a new FC host
//! with exactly the WWPN/WWNN written (host numbers are never trusted). A create
//! that never shows its vHBA is rolled back with `vport_delete`, so a failed create
//! does not leave a half-made vport taking one of the parent's slots.
//!
//! Creates are idempotent: a vport with the WWPN already present is success with no
//! write, because the kernel answers a second create with a bare EINVAL.
//!
//! Ownership: hbad marks what it made with `symbolic_name = hbad:<name>`, which the
//! fabric shows too. Where the driver refuses the write (no `set_vport_symbolic_name`,
//! or a name longer than the kernel's 63 characters), ownership goes to a state file
//! instead. Deletes touch only owned vports unless forced, and never a physical port.

use std::fmt;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::errors::{explain, KernelRefusal, Op};
use crate::ownership::{
    CreateLock, IntendError, Intent, MarkSource, OwnedRecord, OwnedState, OwnerMark, StateError,
    VportMark, OWNER_PREFIX,
};
use crate::plan::HostRef;
use crate::sysfs::writes::{vport_text, AttrWriter};
use crate::sysfs::{devpath_name, host_number, parent_devpath, Sysfs, VportControlDir, VportInfo};
use crate::wwn::Wwn;

/// The kernel keeps a vport's symbolic_name in `char[FC_VPORT_SYMBOLIC_NAMELEN]`
/// (64) and answers EINVAL to anything that does not fit with its NUL.
pub const SYMBOLIC_NAME_MAX: usize = 63;

#[derive(Debug, thiserror::Error)]
pub enum VportError {
    #[error("{0}")]
    Refused(#[from] KernelRefusal),
    #[error(
        "{parent} accepted vport {wwpn} but no vHBA with that WWPN appeared within {}; {rollback}",
        humantime::format_duration(*timeout)
    )]
    NeverAppeared {
        parent: String,
        wwpn: Wwn,
        timeout: Duration,
        rollback: String,
    },
    #[error(
        "{parent} made vHBA {wwpn}, but it cannot be marked as hbad's ({why}); {rollback}, \
         so that no vHBA is left that neither hbad nor anyone else owns"
    )]
    Unmarked {
        parent: String,
        wwpn: Wwn,
        why: String,
        rollback: String,
    },
    #[error("WWPN {wwpn} is already used by {by}, which is not a vport; choose another WWPN")]
    WwpnInUse { wwpn: Wwn, by: String },
    #[error("{what} is not an NPIV vport (a physical port or another kind of host); hbad only deletes vHBAs")]
    NotAVport { what: String },
    #[error(
        "{vport} (wwpn {wwpn}) was not made by hbad: symbolic_name {shown} is no mark this \
         host's policy declares for that WWPN, and {state} does not record it; delete it \
         with `hbad destroy --force` if you are sure"
    )]
    NotOwned {
        vport: String,
        wwpn: Wwn,
        shown: String,
        state: String,
    },
    #[error("{vport}: sysfs shows no {what}; cannot name it to vport_delete")]
    Unnamed { vport: String, what: &'static str },
    #[error("{vport} is still present {} after vport_delete", humantime::format_duration(*timeout))]
    NotGone { vport: String, timeout: Duration },
    #[error("{parent} has no vport_delete (no NPIV support in the driver)")]
    NoNpiv { parent: String },
    #[error(transparent)]
    State(#[from] StateError),
    /// Another create of the WWPN holds its lock ([`CreateLock`]).
    #[error("{0}")]
    CreateUnderWay(IntendError),
}

/// symbolic_name up to a NUL hbad wrote to end it: the kernel prints it with `%s`,
/// a copy of sysfs may keep the bytes.
fn shown(symbolic_name: &str) -> &str {
    symbolic_name.split('\0').next().unwrap_or_default()
}

/// A vHBA as hbad found it: the vport device and the SCSI host it made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VhbaFound {
    pub vport: String,
    pub host: Option<HostRef>,
}

/// Waits for the kernel's objects to appear or go. The CLI polls sysfs; the daemon
/// can answer from the graph its events keep current.
pub trait VhbaWatch: Send + Sync + fmt::Debug {
    /// The vport with this WWPN/WWNN under `parent` and its vHBA host, once both exist.
    fn await_vhba(
        &self,
        parent: &HostRef,
        wwpn: Wwn,
        wwnn: Wwn,
        timeout: Duration,
    ) -> Option<VhbaFound>;
    /// Whether the vport device is gone within `timeout`.
    fn await_gone(&self, vport_devpath: &str, timeout: Duration) -> bool;
}

/// Confirms by reading sysfs at a short interval, bounded by the timeout.
#[derive(Clone, Debug)]
pub struct SysfsPoll {
    sysfs: Sysfs,
    interval: Duration,
}

impl SysfsPoll {
    pub fn new(sysfs: Sysfs, interval: Duration) -> Self {
        SysfsPoll { sysfs, interval }
    }

    fn poll<T>(&self, timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
        let deadline = super::later(Instant::now(), timeout);
        loop {
            if let Some(v) = probe() {
                return Some(v);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            thread::sleep(self.interval.min(deadline - now));
        }
    }
}

impl VhbaWatch for SysfsPoll {
    fn await_vhba(
        &self,
        parent: &HostRef,
        wwpn: Wwn,
        wwnn: Wwn,
        timeout: Duration,
    ) -> Option<VhbaFound> {
        self.poll(timeout, || {
            let found = vport_under(&self.sysfs, &parent.devpath, wwpn)?;
            let host = vhba_host_of(&self.sysfs, &found, wwpn, wwnn)?;
            Some(VhbaFound {
                vport: found,
                host: Some(host),
            })
        })
    }

    fn await_gone(&self, vport_devpath: &str, timeout: Duration) -> bool {
        self.poll(timeout, || {
            (!self.sysfs.exists(vport_devpath)).then_some(())
        })
        .is_some()
    }
}

/// The vport with this WWPN directly under a parent host.
fn vport_under(sysfs: &Sysfs, parent_devpath: &str, wwpn: Wwn) -> Option<String> {
    sysfs
        .list(parent_devpath)
        .into_iter()
        .filter(|n| n.starts_with("vport-"))
        .map(|n| format!("{parent_devpath}/{n}"))
        .find(|dp| sysfs.read_vport(dp).is_ok_and(|v| v.wwpn == Some(wwpn)))
}

/// The host a vport made, recognised by its FC names rather than its number.
fn vhba_host_of(sysfs: &Sysfs, vport_devpath: &str, wwpn: Wwn, wwnn: Wwn) -> Option<HostRef> {
    sysfs.list(vport_devpath).into_iter().find_map(|n| {
        let number = host_number(&n)?;
        let devpath = format!("{vport_devpath}/{n}");
        let fc = sysfs.read_fc_host(&devpath).ok()??;
        (fc.wwpn == Some(wwpn) && fc.wwnn == Some(wwnn)).then_some(HostRef { number, devpath })
    })
}

/// Every device in sysfs that answers to a WWPN: vports, FC hosts, remote ports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WwpnUsers {
    pub vports: Vec<String>,
    pub hosts: Vec<String>,
    pub remote_ports: Vec<String>,
}

/// The owner device of a class entry: `/devices/.../X/fc_vports/X` -> `/devices/.../X`.
fn class_owner(class_devpath: &str) -> Option<String> {
    parent_devpath(parent_devpath(class_devpath)?).map(str::to_string)
}

pub fn wwpn_users(sysfs: &Sysfs, wwpn: Wwn) -> WwpnUsers {
    let mut users = WwpnUsers::default();
    for class in sysfs.class_devpaths("fc_vports") {
        if sysfs.attr_wwn(&class, "port_name") == Some(wwpn) {
            users.vports.extend(class_owner(&class));
        }
    }
    for class in sysfs.class_devpaths("fc_host") {
        if sysfs.attr_wwn(&class, "port_name") == Some(wwpn) {
            users.hosts.extend(class_owner(&class));
        }
    }
    for class in sysfs.class_devpaths("fc_remote_ports") {
        if sysfs.attr_wwn(&class, "port_name") == Some(wwpn) {
            users.remote_ports.extend(class_owner(&class));
        }
    }
    users
}

/// The marks on every vport sysfs shows: what a lost state file is rebuilt from,
/// and the vports a stopped create's intent is settled against (a vport without
/// symbolic_name is there all the same, unmarked).
pub fn vport_marks(sysfs: &Sysfs) -> MarkSource {
    let sysfs = sysfs.clone();
    Arc::new(move || {
        sysfs
            .class_devpaths("fc_vports")
            .into_iter()
            .filter_map(|class| {
                Some(VportMark {
                    wwpn: sysfs.attr_wwn(&class, "port_name")?,
                    wwnn: sysfs.attr_wwn(&class, "node_name")?,
                    symbolic_name: sysfs.attr(&class, "symbolic_name").unwrap_or_default(),
                })
            })
            .collect()
    })
}

/// What a create asks for. The parent and control dir come from the planner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateRequest {
    pub name: String,
    pub parent: HostRef,
    pub control_dir: VportControlDir,
    pub wwpn: Wwn,
    pub wwnn: Wwn,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Created {
    #[serde(flatten)]
    pub vhba: VhbaFound,
    /// The vport was there before: nothing was written to vport_create.
    pub already_present: bool,
    pub owner: Option<OwnerMark>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Deleted {
    pub vport: String,
    pub parent: HostRef,
    pub wwpn: Wwn,
    /// The kernel said ENODEV: it was already gone.
    pub already_gone: bool,
    pub owner: Option<OwnerMark>,
}

/// Whether a delete may touch a vport hbad did not make.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeletePolicy {
    OwnedOnly,
    /// `hbad destroy --force`: any vport, but still never a physical port.
    AnyVport,
}

/// Creates and deletes vports through the [`AttrWriter`] seam.
#[derive(Debug, Clone)]
pub struct Vports {
    sysfs: Sysfs,
    writer: Arc<dyn AttrWriter>,
    watch: Arc<dyn VhbaWatch>,
    state: OwnedState,
    timeout: Duration,
}

impl Vports {
    pub fn new(
        sysfs: Sysfs,
        writer: Arc<dyn AttrWriter>,
        watch: Arc<dyn VhbaWatch>,
        state: OwnedState,
        timeout: Duration,
    ) -> Self {
        let state = state.rebuilding_from(vport_marks(&sysfs));
        Vports {
            sysfs,
            writer,
            watch,
            state,
            timeout,
        }
    }

    pub fn sysfs(&self) -> &Sysfs {
        &self.sysfs
    }

    pub fn writer(&self) -> &Arc<dyn AttrWriter> {
        &self.writer
    }

    pub fn state(&self) -> &OwnedState {
        &self.state
    }

    /// How long a new vHBA may take to appear, or a deleted one to go.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The vport holding this WWPN, if the kernel has one, with its vHBA and owner.
    /// Reported, not claimed: a vport someone else made stays theirs (the planner
    /// decides separately whether a declared one gets the mark).
    pub fn existing(&self, wwpn: Wwn) -> Result<Option<Created>, VportError> {
        let users = wwpn_users(&self.sysfs, wwpn);
        let Some(vport) = users.vports.first() else {
            return Ok(None);
        };
        let host = self.sysfs.list(vport).into_iter().find_map(|n| {
            Some(HostRef {
                number: host_number(&n)?,
                devpath: format!("{vport}/{n}"),
            })
        });
        Ok(Some(Created {
            vhba: VhbaFound {
                vport: vport.clone(),
                host,
            },
            already_present: true,
            owner: self.owner(vport)?,
        }))
    }

    /// Creates the vport unless one with its WWPN exists, confirms the vHBA, marks it.
    /// A vport already present is reported with the owner it has, and not marked.
    pub fn create(&self, req: &CreateRequest) -> Result<Created, VportError> {
        if let Some(found) = self.existing(req.wwpn)? {
            return Ok(found);
        }
        let users = wwpn_users(&self.sysfs, req.wwpn);
        if let Some(by) = users.hosts.first() {
            return Err(VportError::WwpnInUse {
                wwpn: req.wwpn,
                by: format!("host {}", devpath_name(by)),
            });
        }
        let parent_fc = self.sysfs.read_fc_host(&req.parent.devpath).ok().flatten();
        let npiv = parent_fc.as_ref().and_then(|f| f.npiv.as_ref());
        let path = self
            .sysfs
            .vport_create_path(&req.parent.devpath, req.control_dir);
        // The create's lock goes with the write into the writer's child, which a
        // SIGKILL of this process leaves in the kernel: its intent is then kept
        // until the child ends ([`crate::ownership::CreateLock`]).
        let create_lock = self.intend(req, parent_fc.as_ref().and_then(|f| f.wwpn))?;
        let intended = create_lock.is_some();
        let text = vport_text(req.wwpn, req.wwnn);
        let written = match &create_lock {
            Some(lock) => self.writer.write_attr_holding(&path, &text, lock.as_fd()),
            None => self.writer.write_attr(&path, &text),
        };
        if let Err(e) = written {
            // Only a create that left no vport is given up: the write can fail
            // after the kernel made it (the writer killed on its way out), and
            // the intent then lets the next read adopt it.
            if intended && wwpn_users(&self.sysfs, req.wwpn).vports.is_empty() {
                self.settle_intent(req.wwpn, OwnedState::abandon);
            }
            let op = Op::VportCreate {
                parent: req.parent.to_string(),
                wwpn: req.wwpn,
                wwnn: req.wwnn,
                max: npiv.and_then(|n| n.max_vports),
                inuse: npiv.and_then(|n| n.vports_inuse),
                // A remote port with the WWPN means it is taken on the fabric.
                wwpn_known: !users.remote_ports.is_empty(),
            };
            return Err(explain(&op, &e).into());
        }
        let Some(found) = self
            .watch
            .await_vhba(&req.parent, req.wwpn, req.wwnn, self.timeout)
        else {
            return Err(VportError::NeverAppeared {
                parent: req.parent.to_string(),
                wwpn: req.wwpn,
                timeout: self.timeout,
                rollback: self.roll_back(req, intended),
            });
        };
        // Marked as soon as the write has returned: the kernel adds the vport's
        // attributes before it calls the driver, and the driver makes the vHBA's
        // host before the write returns, while the fabric login (FDISC), discovery
        // and the transport's scan run on afterwards by themselves. fcoe's
        // set_vport_symbolic_name only copies the name until the port is logged in,
        // and registers it with the name server (RSPN_ID) at login. Disks that
        // still beat the mark are announced to udev again here: only after a
        // create, whose disks no VM can use yet. A vport hbad adopts keeps its
        // disks' udev state: a `change` re-runs every rule on disks running VMs
        // use (ownership and labels libvirt set are reset).
        // Unmarked and unrecorded (the driver refused the mark and the state file
        // cannot be written), the vHBA would be no one's: never pruned, refused by
        // `hbad destroy` without --force. It goes, as one that never appeared does.
        let owner = self
            .mark(&found.vport, &req.name)
            .map_err(|e| VportError::Unmarked {
                parent: req.parent.to_string(),
                wwpn: req.wwpn,
                why: e.to_string(),
                rollback: self.roll_back(req, intended),
            })?;
        if intended {
            self.settle_intent(req.wwpn, OwnedState::made);
        }
        self.announce_disks(&found.vport);
        Ok(Created {
            vhba: found,
            already_present: false,
            owner: Some(owner),
        })
    }

    /// Writes the intent of a create before its vport_create ([`Intent`]). A state
    /// file that cannot take it costs only that, as for a mark's record ([`Vports::bind`]):
    /// the create goes on, and gives no lock. Another create of the WWPN under way
    /// (its lock held) is an error: this create must not go ahead.
    fn intend(
        &self,
        req: &CreateRequest,
        parent_wwpn: Option<Wwn>,
    ) -> Result<Option<CreateLock>, VportError> {
        let intent = Intent::now(&req.name, req.wwnn, req.parent.number, parent_wwpn);
        match self.state.intend(req.wwpn, intent) {
            Ok(lock) => Ok(Some(lock)),
            Err(e @ IntendError::CreateUnderWay { .. }) => Err(VportError::CreateUnderWay(e)),
            Err(IntendError::State(e)) => {
                crate::ownership::warn(&format!(
                    "{e}; creating vport {} unrecorded: if hbad stops before marking it, \
                     it is no one's",
                    req.wwpn
                ));
                Ok(None)
            }
        }
    }

    /// Turns the intent into a record (`made`) or drops it (`abandon`). A failure
    /// leaves the intent, settled by the first read of the file once this process
    /// has ended.
    fn settle_intent(&self, wwpn: Wwn, how: fn(&OwnedState, Wwn) -> Result<(), StateError>) {
        if let Err(e) = how(&self.state, wwpn) {
            crate::ownership::warn(&format!(
                "{e}; the intent of vport {wwpn} stays, settled once this hbad has ended"
            ));
        }
    }

    /// Deletes what a create that never confirmed may have left behind. Its intent
    /// goes once sysfs shows no such vport; one still there keeps it, to be
    /// adopted as hbad's.
    fn roll_back(&self, req: &CreateRequest, intended: bool) -> String {
        let said = self.delete_for_rollback(req);
        if intended && wwpn_users(&self.sysfs, req.wwpn).vports.is_empty() {
            self.settle_intent(req.wwpn, OwnedState::abandon);
        }
        said
    }

    fn delete_for_rollback(&self, req: &CreateRequest) -> String {
        let path = self
            .sysfs
            .vport_delete_path(&req.parent.devpath, req.control_dir);
        match self
            .writer
            .write_attr(&path, &vport_text(req.wwpn, req.wwnn))
        {
            Ok(()) => "rolled back with vport_delete".to_string(),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => {
                "the kernel holds no such vport, nothing to roll back".to_string()
            }
            Err(e) => {
                let op = Op::VportDelete {
                    parent: req.parent.to_string(),
                    wwpn: req.wwpn,
                };
                format!("rolling back failed too: {}", explain(&op, &e))
            }
        }
    }

    /// Marks a vport as hbad's: symbolic_name, or the state file when refused.
    pub fn mark(&self, vport_devpath: &str, name: &str) -> Result<OwnerMark, VportError> {
        let tag = format!("{OWNER_PREFIX}{name}");
        let info = self.sysfs.read_vport(vport_devpath).ok();
        let current = info
            .as_ref()
            .and_then(|v| v.symbolic_name.as_deref())
            .map(shown);
        if current == Some(tag.as_str()) {
            self.bind(info.as_ref(), name);
            return Ok(OwnerMark::SymbolicName {
                name: name.to_string(),
            });
        }
        // Recorded before because the driver refused: do not ask it again on every
        // apply. A record adopted from a stopped create's intent never asked it.
        if let Some(wwpn) = info.as_ref().and_then(|v| v.wwpn) {
            if let Some(rec) = self
                .state
                .get(wwpn)?
                .filter(|r| r.refused() && !r.mark_pending && r.name == name)
            {
                return Ok(OwnerMark::StateFile {
                    name: rec.name,
                    path: self.state.path().to_path_buf(),
                    why: rec.why,
                });
            }
        }
        // store_fc_vport_symbolic_name memcpy()s exactly what was written and adds no
        // terminator, so a shorter name over a longer one would keep the old tail
        // ("hbad:db" over "libvirt-x1" reads "hbad:db-x1"). A NUL written with the
        // name ends it; it counts against the 63 characters.
        let value = if current.is_some_and(|c| c.len() > tag.len()) {
            format!("{tag}\0")
        } else {
            tag.clone()
        };
        let why = if value.len() > SYMBOLIC_NAME_MAX {
            format!(
                "\"{tag}\" is longer than the kernel's {SYMBOLIC_NAME_MAX} characters for symbolic_name"
            )
        } else {
            let path = self.sysfs.vport_symbolic_name_path(vport_devpath);
            let mut value = value;
            loop {
                match self.writer.write_attr(&path, &value) {
                    Ok(()) => {
                        // Believe the kernel's answer, not the write's.
                        let now = self.sysfs.read_vport(vport_devpath).ok();
                        let now = now.as_ref().and_then(|v| v.symbolic_name.as_deref());
                        let now = now.map(shown).unwrap_or("");
                        if now == tag {
                            self.bind(info.as_ref(), name);
                            return Ok(OwnerMark::SymbolicName {
                                name: name.to_string(),
                            });
                        }
                        // Bytes an earlier NUL hid (an earlier mark's) show behind a
                        // longer name: sysfs never showed them, so only the read-back
                        // tells. End the name with a NUL, once.
                        if now.starts_with(tag.as_str())
                            && !value.ends_with('\0')
                            && tag.len() < SYMBOLIC_NAME_MAX
                        {
                            value = format!("{tag}\0");
                            continue;
                        }
                        break format!("symbolic_name reads \"{now}\" after writing \"{tag}\"");
                    }
                    Err(e) => {
                        let op = Op::SymbolicName {
                            vport: devpath_name(vport_devpath).to_string(),
                        };
                        break explain(&op, &e).to_string();
                    }
                }
            }
        };
        let (Some(wwpn), Some(wwnn)) = (
            info.as_ref().and_then(|v| v.wwpn),
            info.as_ref().and_then(|v| v.wwnn),
        ) else {
            return Err(VportError::Unnamed {
                vport: vport_devpath.to_string(),
                what: "port_name/node_name",
            });
        };
        self.state.record(
            wwpn,
            OwnedRecord {
                name: name.to_string(),
                wwnn,
                why: why.clone(),
                mark_pending: false,
            },
        )?;
        Ok(OwnerMark::StateFile {
            name: name.to_string(),
            path: self.state.path().to_path_buf(),
            why,
        })
    }

    /// Sends a `change` uevent for every disk (and partition) below a vport hbad
    /// has just created and marked, as `udevadm trigger --action=change` would.
    ///
    /// udev names a vHBA's disks (`hbad udev-id`, `/dev/disk/by-vhba/`) from the
    /// mark. The mark is written as soon as the vport exists, but the kernel logs the
    /// vport in and scans it on its own: a disk whose `add` udev handled before the
    /// mark was there got no link, and nothing else makes udev look at it again
    /// (seen on a real fabric: one vHBA of two lost its link in half the runs). A
    /// disk that appears after this listing sees the mark in its own `add`, so
    /// between them every disk is named. Best effort: a disk gone meanwhile, or a
    /// kernel that refuses, costs only that disk's link, and is logged.
    ///
    /// Runs where the mark is written, on the parent's worker: each write is a
    /// kernel write like any other.
    fn announce_disks(&self, vport_devpath: &str) {
        let below = format!("{vport_devpath}/");
        for dev in self.sysfs.scsi_bus_devpaths() {
            if !dev.starts_with(&below) {
                continue;
            }
            for disk in self.sysfs.list(&format!("{dev}/block")) {
                let disk_devpath = format!("{dev}/block/{disk}");
                let partitions = self
                    .sysfs
                    .partitions_of(&disk_devpath)
                    .into_iter()
                    .map(|p| format!("{disk_devpath}/{p}"));
                for devpath in std::iter::once(disk_devpath.clone()).chain(partitions) {
                    let uevent = self.sysfs.path(&devpath).join("uevent");
                    match self.writer.write_attr(&uevent, "change") {
                        Ok(()) => {}
                        // Gone since the listing: nothing left to name.
                        Err(e)
                            if e.kind() == std::io::ErrorKind::NotFound
                                || e.raw_os_error() == Some(libc::ENODEV) => {}
                        Err(e) => tracing::warn!(
                            "{}: no change uevent after marking {}: {e}; its /dev/disk/by-vhba link may be missing until udev sees it again",
                            devpath_name(&devpath),
                            devpath_name(vport_devpath)
                        ),
                    }
                }
            }
        }
    }

    /// Records a mark hbad wrote in the state file, which binds it to this host:
    /// without the record, a vHBA the policy stops declaring would look like any
    /// vport someone named `hbad:…`, and would never be pruned. The mark itself is
    /// in place, so a state file that cannot take the record costs only that.
    fn bind(&self, info: Option<&VportInfo>, name: &str) {
        let (Some(wwpn), Some(wwnn)) = (info.and_then(|v| v.wwpn), info.and_then(|v| v.wwnn))
        else {
            return;
        };
        let rec = OwnedRecord {
            name: name.to_string(),
            wwnn,
            why: String::new(),
            mark_pending: false,
        };
        let recorded = self.state.get(wwpn).map(|r| r.as_ref() == Some(&rec));
        if let Err(e) = recorded.and_then(|same| {
            if same {
                Ok(())
            } else {
                self.state.record(wwpn, rec)
            }
        }) {
            tracing::warn!(
                hbad_reason = %e,
                "{e}; vport {wwpn} is marked \"{}\" but unrecorded: kept, never pruned, once the policy stops declaring it",
                crate::ownership::mark(name)
            );
        }
    }

    /// The vHBA name a vport shows ([`OwnedState::named`]), for naming, not deleting.
    pub fn named(&self, vport_devpath: &str) -> Option<String> {
        let info = self.sysfs.read_vport(vport_devpath).ok()?;
        self.state.named(info.symbolic_name.as_deref(), info.wwpn)
    }

    /// Who owns a vport, as far as hbad can tell: a mark bound to this host's
    /// policy or state file, or a state file record ([`crate::ownership::owned`]).
    pub fn owner(&self, vport_devpath: &str) -> Result<Option<OwnerMark>, VportError> {
        let Ok(info) = self.sysfs.read_vport(vport_devpath) else {
            return Ok(None);
        };
        Ok(self.state.owner(info.symbolic_name.as_deref(), info.wwpn)?)
    }

    /// Deletes a vport through its parent's vport_delete and waits until it is gone.
    /// `target` is a vport devpath or the devpath of the vHBA host it made.
    pub fn delete(&self, target: &str, policy: DeletePolicy) -> Result<Deleted, VportError> {
        let vport = self.vport_of(target)?;
        let info = self
            .sysfs
            .read_vport(&vport)
            .map_err(|_| VportError::NotAVport {
                what: devpath_name(target).to_string(),
            })?;
        let unnamed = |what| VportError::Unnamed {
            vport: info.name.clone(),
            what,
        };
        let wwpn = info.wwpn.ok_or_else(|| unnamed("port_name"))?;
        let wwnn = info.wwnn.ok_or_else(|| unnamed("node_name"))?;
        let owner = self.owner(&vport)?;
        if owner.is_none() && policy == DeletePolicy::OwnedOnly {
            return Err(VportError::NotOwned {
                vport: info.name.clone(),
                wwpn,
                shown: info
                    .symbolic_name
                    .map_or("empty".to_string(), |s| format!("\"{s}\"")),
                state: self.state.path().display().to_string(),
            });
        }
        let parent_devpath = parent_devpath(&vport).unwrap_or_default().to_string();
        let parent = HostRef {
            number: host_number(devpath_name(&parent_devpath)).ok_or_else(|| {
                VportError::NotAVport {
                    what: info.name.clone(),
                }
            })?,
            devpath: parent_devpath.clone(),
        };
        let control_dir = self
            .sysfs
            .read_fc_host(&parent_devpath)
            .ok()
            .flatten()
            .and_then(|f| f.npiv)
            .map(|n| n.control_dir)
            .ok_or_else(|| VportError::NoNpiv {
                parent: parent.to_string(),
            })?;
        let path = self.sysfs.vport_delete_path(&parent_devpath, control_dir);
        let mut already_gone = false;
        if let Err(e) = self.writer.write_attr(&path, &vport_text(wwpn, wwnn)) {
            if e.raw_os_error() == Some(libc::ENODEV) {
                already_gone = true;
            } else {
                let op = Op::VportDelete {
                    parent: parent.to_string(),
                    wwpn,
                };
                return Err(explain(&op, &e).into());
            }
        }
        if !already_gone && !self.watch.await_gone(&vport, self.timeout) {
            return Err(VportError::NotGone {
                vport: info.name,
                timeout: self.timeout,
            });
        }
        // Forgotten whatever the mark: a record left behind would let a later vport
        // with this WWPN and a mark of that name pass as hbad's.
        self.state.forget(wwpn)?;
        Ok(Deleted {
            vport,
            parent,
            wwpn,
            already_gone,
            owner,
        })
    }

    /// The vport behind a vport or vHBA devpath; anything else is not a vport.
    fn vport_of(&self, target: &str) -> Result<String, VportError> {
        let name = devpath_name(target);
        if name.starts_with("vport-") {
            return Ok(target.to_string());
        }
        let not = || VportError::NotAVport {
            what: name.to_string(),
        };
        if host_number(name).is_some() {
            let parent = parent_devpath(target).ok_or_else(not)?;
            if devpath_name(parent).starts_with("vport-") {
                return Ok(parent.to_string());
            }
        }
        Err(not())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::fs;
    use std::io;
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;

    use super::*;
    use crate::sim::{FabricSpec, HbaSpec, LunSpec, Sim, SimSpec, TargetPortSpec};

    pub const PARENT_WWPN: Wwn = Wwn::from_u64(0x2100_0024_ff00_0a01);
    /// The vHBA WWPN the array masks its LUN to.
    const MASKED_VHBA: Wwn = Wwn::from_u64(0x5001_a4a0_0000_0b01);
    const FABRIC_WWN: Wwn = Wwn::from_u64(0x1000_0005_1e00_0a00);

    /// The simulated kernel, with faults a real driver can show that the simulator
    /// does not: a create it accepts but never completes, a refused symbolic_name.
    /// Writes it intercepts are logged beside the simulator's own.
    #[derive(Debug)]
    pub struct Kernel {
        pub sim: Sim,
        pub lose_creates: bool,
        pub refuse_symbolic: bool,
        /// The write succeeds and changes nothing.
        pub ignore_symbolic: bool,
        lost: Mutex<Vec<(PathBuf, String)>>,
    }

    impl AttrWriter for Kernel {
        fn store(&self, path: &Path, value: &str) -> io::Result<()> {
            let file = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if self.lose_creates && file == "vport_create" {
                self.lost
                    .lock()
                    .unwrap()
                    .push((path.to_path_buf(), value.to_string()));
                return Ok(());
            }
            if file == "symbolic_name" && (self.refuse_symbolic || self.ignore_symbolic) {
                self.lost
                    .lock()
                    .unwrap()
                    .push((path.to_path_buf(), value.to_string()));
                return if self.refuse_symbolic {
                    Err(io::Error::from_raw_os_error(libc::EACCES))
                } else {
                    Ok(())
                };
            }
            // The simulator stores symbolic_name as the kernel does (memcpy over the
            // old name, no terminator added, shown up to the first NUL).
            self.sim.write_attr(path, value)
        }
    }

    impl Kernel {
        /// One qla2xxx port with two vport slots on an NPIV fabric, an array port
        /// there with LUN 0 masked to [`MASKED_VHBA`], and a scsi_debug host beside it.
        pub fn new(dir: &Path) -> Kernel {
            let spec = SimSpec::new()
                .fabric(FabricSpec::new("a", FABRIC_WWN))
                .target(
                    TargetPortSpec::new(
                        "a",
                        Wwn::from_u64(0x5000_0000_0000_0a0a),
                        Wwn::from_u64(0x5000_0000_0000_0a00),
                        0x01_0a00,
                    )
                    .lun(LunSpec::new(0, 1 << 30, "exec-lun0").masked_to(MASKED_VHBA)),
                )
                .hba(
                    HbaSpec::fc(
                        "qla2xxx",
                        "0000:3b:00.0",
                        PARENT_WWPN,
                        Wwn::from_u64(0x2000_0024_ff00_0a01),
                        "a",
                    )
                    .max_npiv_vports(Some(2)),
                )
                .hba(HbaSpec::scsi_debug(1, 2));
            Kernel {
                sim: Sim::new(dir, &spec).unwrap(),
                lose_creates: false,
                refuse_symbolic: false,
                ignore_symbolic: false,
                lost: Mutex::new(Vec::new()),
            }
        }

        pub fn sysfs(&self) -> Sysfs {
            self.sim.sysfs()
        }

        pub fn parent(&self) -> HostRef {
            let number = self.sim.host_by_wwpn(PARENT_WWPN).unwrap();
            HostRef {
                number,
                devpath: self.sim.host_devpath(number).unwrap(),
            }
        }

        /// Values written to attributes of this name, accepted or not.
        pub fn writes_to(&self, file: &str) -> Vec<String> {
            let named = |p: &Path| p.file_name().is_some_and(|n| n == file);
            let mut out: Vec<String> = self
                .lost
                .lock()
                .unwrap()
                .iter()
                .filter(|(p, _)| named(p))
                .map(|(_, v)| v.clone())
                .collect();
            out.extend(
                self.sim
                    .writes()
                    .into_iter()
                    .filter(|w| named(&w.path))
                    .map(|w| w.value),
            );
            out
        }
    }

    fn vports(k: &Arc<Kernel>, dir: &Path) -> Vports {
        let sysfs = k.sysfs();
        Vports::new(
            sysfs.clone(),
            k.clone(),
            Arc::new(SysfsPoll::new(sysfs, Duration::from_millis(5))),
            OwnedState::new(dir.join("state/owned.json")),
            Duration::from_millis(200),
        )
    }

    fn req(k: &Kernel, name: &str, wwpn: u64) -> CreateRequest {
        CreateRequest {
            name: name.into(),
            parent: k.parent(),
            control_dir: VportControlDir::FcHost,
            wwpn: Wwn::from_u64(wwpn),
            wwnn: Wwn::from_u64(0x5001_a4a0_0000_0b00),
        }
    }

    fn lab() -> (tempfile::TempDir, Arc<Kernel>) {
        let dir = tempfile::tempdir().unwrap();
        let k = Arc::new(Kernel::new(&dir.path().join("sim")));
        (dir, k)
    }

    fn with(dir: &Path, f: impl FnOnce(&mut Kernel)) -> Arc<Kernel> {
        let mut k = Kernel::new(&dir.join("sim"));
        f(&mut k);
        Arc::new(k)
    }

    #[test]
    fn create_confirms_the_vhba_by_its_wwns_and_marks_it() {
        let (dir, k) = lab();
        let v = vports(&k, dir.path());
        let c = v.create(&req(&k, "db1", 0x5001_a4a0_0000_0b01)).unwrap();
        assert!(!c.already_present);
        let parent = k.parent();
        assert_eq!(
            c.vhba.vport,
            format!("{}/vport-{}:0-0", parent.devpath, parent.number)
        );
        let host = c.vhba.host.clone().unwrap();
        let fc = k.sysfs().read_fc_host(&host.devpath).unwrap().unwrap();
        assert_eq!(fc.wwpn, Some(Wwn::from_u64(0x5001_a4a0_0000_0b01)));
        assert_eq!(
            c.owner,
            Some(OwnerMark::SymbolicName { name: "db1".into() })
        );
        assert_eq!(
            k.writes_to("vport_create"),
            ["5001a4a000000b01:5001a4a000000b00"]
        );
        let info = k.sysfs().read_vport(&c.vhba.vport).unwrap();
        assert_eq!(info.symbolic_name.as_deref(), Some("hbad:db1"));
    }

    /// The simulator logs a new vport in and scans it within the create, so its
    /// disk is there before the mark (the order that, on a real fabric, leaves
    /// udev without the mark when it first names the disk): marking announces
    /// the disk again with a `change`, and only a mark that was written does.
    #[test]
    fn a_disk_that_came_before_the_mark_is_announced_to_udev_after_it() {
        let (dir, k) = lab();
        let v = vports(&k, dir.path());
        let events = k.sim.subscribe(crate::sim::Flavour::Kernel);
        let c = v.create(&req(&k, "db1", MASKED_VHBA.as_u64())).unwrap();
        let host = c.vhba.host.unwrap().number;
        let disk_dev = |hctl: &str| k.sim.lun_devpath(hctl.parse().unwrap());
        let lun = disk_dev(&format!("{host}:0:0:0")).expect("the vHBA's LUN");
        let order: Vec<String> = k
            .sim
            .writes()
            .iter()
            .map(|w| w.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(order, ["vport_create", "symbolic_name", "uevent"]);
        assert_eq!(k.writes_to("uevent"), ["change"]);
        let evs: Vec<_> = events.try_iter().collect();
        let add = evs
            .iter()
            .position(|e| e.subsystem == "block" && e.action == crate::uevent::Action::Add)
            .expect("the disk's add");
        let change = evs
            .iter()
            .position(|e| e.subsystem == "block" && e.action == crate::uevent::Action::Change)
            .expect("the disk's change after the mark");
        assert!(add < change);
        assert!(evs[change].devpath.starts_with(&format!("{lun}/block/")));
        assert_eq!(evs[change].prop("SYNTH_UUID"), Some("0"));
        // Marked already: nothing is written, nothing announced.
        v.mark(&c.vhba.vport, "db1").unwrap();
        assert_eq!(k.writes_to("uevent").len(), 1);
        // A vHBA with no disk has nothing to announce.
        v.create(&req(&k, "db2", 0x5001_a4a0_0000_0b02)).unwrap();
        assert_eq!(k.writes_to("uevent").len(), 1);
    }

    #[test]
    fn a_mark_recorded_in_the_state_file_announces_the_disks_too() {
        let dir = tempfile::tempdir().unwrap();
        let k = with(dir.path(), |k| k.refuse_symbolic = true);
        let v = vports(&k, dir.path());
        let c = v.create(&req(&k, "db1", MASKED_VHBA.as_u64())).unwrap();
        assert!(matches!(c.owner, Some(OwnerMark::StateFile { .. })));
        assert_eq!(k.writes_to("uevent"), ["change"]);
        // Recorded: later marks neither ask the driver nor announce again.
        v.mark(&c.vhba.vport, "db1").unwrap();
        assert_eq!(k.writes_to("uevent"), ["change"]);
    }

    /// Adopting a vport (marking one hbad did not create) leaves its disks' udev
    /// state alone: a running VM may use them, and a `change` would reset what
    /// libvirt set on them.
    #[test]
    fn adopting_a_vport_sends_its_disks_no_change() {
        let (dir, k) = lab();
        let v = vports(&k, dir.path());
        let c = v.create(&req(&k, "db1", MASKED_VHBA.as_u64())).unwrap();
        assert_eq!(k.writes_to("uevent"), ["change"]);
        let mark = k.sysfs().vport_symbolic_name_path(&c.vhba.vport);
        k.write_attr(&mark, "libvirt-vhba\0").unwrap();
        let owner = v.mark(&c.vhba.vport, "db1").unwrap();
        assert!(matches!(owner, OwnerMark::SymbolicName { .. }));
        assert_eq!(k.writes_to("uevent"), ["change"], "no second change");
    }

    #[test]
    fn create_is_idempotent_without_a_second_write() {
        let (dir, k) = lab();
        let v = vports(&k, dir.path());
        let first = v.create(&req(&k, "db1", 0x5001_a4a0_0000_0b01)).unwrap();
        let again = v.create(&req(&k, "db1", 0x5001_a4a0_0000_0b01)).unwrap();
        assert!(again.already_present);
        assert_eq!(again.vhba, first.vhba);
        assert_eq!(again.owner, first.owner);
        // The kernel would have answered a second write with EINVAL.
        assert_eq!(k.writes_to("vport_create").len(), 1);
        assert_eq!(k.writes_to("symbolic_name").len(), 1);
    }

    #[test]
    fn create_that_never_appears_is_rolled_back_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let k = with(dir.path(), |k| k.lose_creates = true);
        let v = vports(&k, dir.path());
        let err = v
            .create(&req(&k, "db1", 0x5001_a4a0_0000_0b01))
            .unwrap_err();
        assert!(matches!(err, VportError::NeverAppeared { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains("no vHBA with that WWPN appeared"), "{text}");
        // The kernel holds nothing, so it answers the rollback with ENODEV.
        assert!(text.contains("nothing to roll back"), "{text}");
        assert_eq!(
            k.writes_to("vport_delete"),
            ["5001a4a000000b01:5001a4a000000b00"]
        );
    }

    /// The kernel of these tests, noting the creates under way the state file
    /// records as each vport_create reaches it.
    #[derive(Debug)]
    struct Witness {
        k: Arc<Kernel>,
        state: PathBuf,
        seen: Mutex<Vec<Vec<Wwn>>>,
    }

    impl AttrWriter for Witness {
        fn store(&self, path: &Path, value: &str) -> io::Result<()> {
            if path.ends_with("vport_create") {
                let intents = OwnedState::new(&self.state).intents().unwrap();
                self.seen
                    .lock()
                    .unwrap()
                    .push(intents.into_keys().collect());
            }
            self.k.store(path, value)
        }
    }

    #[test]
    fn a_create_is_intended_in_the_state_file_before_vport_create_and_settled_after() {
        let dir = tempfile::tempdir().unwrap();
        let k = with(dir.path(), |k| k.lose_creates = true);
        let (_sim_dir, k2) = lab();
        for (k, errno, wwpn, made) in [
            (&k2, None, 0x5001_a4a0_0000_0b01, true),
            (&k2, Some(libc::ENOSYS), 0x5001_a4a0_0000_0b02, false),
            // Accepted and never seen: rolled back, nothing there.
            (&k, None, 0x5001_a4a0_0000_0b03, false),
        ] {
            let state = dir.path().join(format!("state/{wwpn:x}.json"));
            let witness = Arc::new(Witness {
                k: k.clone(),
                state: state.clone(),
                seen: Mutex::new(Vec::new()),
            });
            let sysfs = k.sysfs();
            let v = Vports::new(
                sysfs.clone(),
                witness.clone(),
                Arc::new(SysfsPoll::new(sysfs, Duration::from_millis(5))),
                OwnedState::new(&state),
                Duration::from_millis(200),
            );
            if let Some(errno) = errno {
                k.sim.fail_next_vport_create(k.parent().number, errno);
            }
            let wwpn = Wwn::from_u64(wwpn);
            let done = v.create(&req(k, "db", wwpn.as_u64()));
            assert_eq!(done.is_ok(), made, "{done:?}");
            assert_eq!(*witness.seen.lock().unwrap(), [vec![wwpn]]);
            let state = OwnedState::new(&state);
            assert!(state.intents().unwrap().is_empty());
            assert_eq!(state.get(wwpn).unwrap().is_some(), made);
        }
    }

    /// Another process's create of the same WWPN holds its lock (its write may
    /// be in the kernel): this create is refused, with no write to vport_create
    /// and the other's intent left as it was, and goes ahead once it is free.
    #[test]
    fn a_create_of_a_wwpn_whose_create_lock_is_held_is_refused_without_a_write() {
        let (dir, k) = lab();
        let v = vports(&k, dir.path());
        let r = req(&k, "db", 0x5001_a4a0_0000_0b01);
        let other = Intent::now("db", r.wwnn, r.parent.number, None);
        let held = v.state().intend(r.wwpn, other.clone()).unwrap();
        let err = v.create(&r).unwrap_err();
        assert!(matches!(err, VportError::CreateUnderWay(_)), "{err:?}");
        let text = err.to_string();
        let lock = dir
            .path()
            .join(format!("state/owned.json.create-{}", r.wwpn));
        for part in [
            format!("another create of vport {}", r.wwpn),
            lock.display().to_string(),
            "not creating it a second time".to_string(),
            "hbad status".to_string(),
        ] {
            assert!(text.contains(&part), "{part} not in: {text}");
        }
        assert!(k.writes_to("vport_create").is_empty());
        assert_eq!(v.state().intents().unwrap()[&r.wwpn], other);
        drop(held);
        v.create(&r).unwrap();
        assert_eq!(k.writes_to("vport_create").len(), 1);
    }

    #[test]
    fn a_driver_failure_reports_the_kernels_errno() {
        // The driver fails after the fc_vports add, which the kernel then removes:
        // hbad reports the errno in words, and does not wait for a vHBA.
        let (dir, k) = lab();
        k.sim
            .fail_next_vport_create(k.parent().number, libc::ENOSYS);
        let v = vports(&k, dir.path());
        let text = v
            .create(&req(&k, "db1", 0x5001_a4a0_0000_0b01))
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("firmware") && text.contains("ENOSYS"),
            "{text}"
        );
    }

    #[test]
    fn kernel_refusals_are_explained() {
        let (dir, k) = lab();
        let v = vports(&k, dir.path());
        v.create(&req(&k, "a", 0x5001_a4a0_0000_0b01)).unwrap();
        v.create(&req(&k, "b", 0x5001_a4a0_0000_0b02)).unwrap();
        let text = v
            .create(&req(&k, "c", 0x5001_a4a0_0000_0b03))
            .unwrap_err()
            .to_string();
        let parent = k.parent();
        assert!(
            text.contains(&format!("{parent} has no free vport"))
                && text.contains("2 of 2 NPIV vports"),
            "{text}"
        );
        // NPIV controls looked for under scsi_host, where this kernel has none: ENOENT.
        let mut r = req(&k, "d", 0x5001_a4a0_0000_0b04);
        r.control_dir = VportControlDir::ScsiHost;
        let text = v.create(&r).unwrap_err().to_string();
        assert!(
            text.contains("no NPIV support") && text.contains("ENOENT"),
            "{text}"
        );
    }

    #[test]
    fn a_wwpn_held_by_a_physical_port_is_refused_without_a_write() {
        let (dir, k) = lab();
        let v = vports(&k, dir.path());
        let err = v.create(&req(&k, "x", PARENT_WWPN.as_u64())).unwrap_err();
        assert!(matches!(err, VportError::WwpnInUse { .. }), "{err}");
        assert!(k.writes_to("vport_create").is_empty());
    }

    #[test]
    fn refused_symbolic_name_falls_back_to_the_state_file() {
        let dir = tempfile::tempdir().unwrap();
        let k = with(dir.path(), |k| k.refuse_symbolic = true);
        let v = vports(&k, dir.path());
        let c = v.create(&req(&k, "db1", 0x5001_a4a0_0000_0b01)).unwrap();
        let Some(OwnerMark::StateFile { name, why, .. }) = &c.owner else {
            panic!("{:?}", c.owner)
        };
        assert_eq!(name, "db1");
        assert!(why.contains("EACCES"), "{why}");
        let wwpn = Wwn::from_u64(0x5001_a4a0_0000_0b01);
        assert_eq!(v.state().get(wwpn).unwrap().unwrap().name, "db1");
        // Marking again does not ask the driver again.
        assert_eq!(k.writes_to("symbolic_name").len(), 1);
        let again = v.mark(&c.vhba.vport, "db1").unwrap();
        assert_eq!(Some(again), c.owner);
        assert_eq!(k.writes_to("symbolic_name").len(), 1);
        // Owned by the record: delete goes ahead and forgets it.
        let d = v.delete(&c.vhba.vport, DeletePolicy::OwnedOnly).unwrap();
        assert!(!d.already_gone);
        assert_eq!(v.state().get(wwpn).unwrap(), None);
        assert!(!k.sysfs().exists(&c.vhba.vport));
    }

    /// A vport made by a create that stopped before marking it, adopted from its
    /// intent: recorded as hbad's, unmarked, the driver never asked.
    fn adopted_unmarked(k: &Kernel, v: &Vports, name: &str, wwpn: Wwn) -> String {
        let wwnn = Wwn::from_u64(0x5001_a4a0_0000_0b00);
        let create = k
            .sysfs()
            .vport_create_path(&k.parent().devpath, VportControlDir::FcHost);
        k.write_attr(&create, &vport_text(wwpn, wwnn)).unwrap();
        v.state()
            .record(
                wwpn,
                OwnedRecord {
                    name: name.into(),
                    wwnn,
                    why: "hbad stopped between vport_create and marking it".into(),
                    mark_pending: true,
                },
            )
            .unwrap();
        v.existing(wwpn).unwrap().unwrap().vhba.vport
    }

    #[test]
    fn a_vport_adopted_before_its_mark_is_marked_and_bound() {
        let (dir, k) = lab();
        let v = vports(&k, dir.path());
        let wwpn = Wwn::from_u64(0x5001_a4a0_0000_0b01);
        let vport = adopted_unmarked(&k, &v, "db1", wwpn);
        let owner = v.mark(&vport, "db1").unwrap();
        assert_eq!(owner, OwnerMark::SymbolicName { name: "db1".into() });
        assert_eq!(k.writes_to("symbolic_name"), ["hbad:db1"]);
        // The record now binds the mark hbad wrote: nothing pending, no refusal.
        let rec = v.state().get(wwpn).unwrap().unwrap();
        assert!(!rec.refused() && !rec.mark_pending, "{rec:?}");
    }

    #[test]
    fn a_vport_adopted_before_its_mark_asks_a_refusing_driver_once() {
        let dir = tempfile::tempdir().unwrap();
        let k = with(dir.path(), |k| k.refuse_symbolic = true);
        let v = vports(&k, dir.path());
        let wwpn = Wwn::from_u64(0x5001_a4a0_0000_0b01);
        let vport = adopted_unmarked(&k, &v, "db1", wwpn);
        let Ok(OwnerMark::StateFile { why, .. }) = v.mark(&vport, "db1") else {
            panic!("not recorded")
        };
        assert!(why.contains("EACCES"), "{why}");
        // The refusal replaces the adoption: it is not asked again.
        let rec = v.state().get(wwpn).unwrap().unwrap();
        assert!(rec.refused() && !rec.mark_pending, "{rec:?}");
        v.mark(&vport, "db1").unwrap();
        assert_eq!(k.writes_to("symbolic_name").len(), 1);
    }

    #[test]
    fn a_vhba_that_can_be_neither_marked_nor_recorded_is_rolled_back() {
        let dir = tempfile::tempdir().unwrap();
        let k = with(dir.path(), |k| k.refuse_symbolic = true);
        // The state file's directory cannot be made: a file stands in its way.
        std::fs::write(dir.path().join("state"), "").unwrap();
        let v = vports(&k, dir.path());
        let err = v
            .create(&req(&k, "db1", 0x5001_a4a0_0000_0b01))
            .unwrap_err();
        assert!(matches!(err, VportError::Unmarked { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("cannot be marked as hbad's")
                && text.contains("rolled back with vport_delete"),
            "{text}"
        );
        assert_eq!(
            k.writes_to("vport_delete"),
            ["5001a4a000000b01:5001a4a000000b00"]
        );
    }

    #[test]
    fn a_name_too_long_for_the_kernel_goes_to_the_state_file_unwritten() {
        let (dir, k) = lab();
        let v = vports(&k, dir.path());
        // "hbad:" + 59 = 64 characters: one more than the kernel's buffer holds.
        let long = "n".repeat(59);
        let c = v.create(&req(&k, &long, 0x5001_a4a0_0000_0b01)).unwrap();
        assert!(matches!(c.owner, Some(OwnerMark::StateFile { .. })));
        assert!(k.writes_to("symbolic_name").is_empty());
        let fits = "n".repeat(58);
        let c = v.create(&req(&k, &fits, 0x5001_a4a0_0000_0b02)).unwrap();
        assert!(matches!(c.owner, Some(OwnerMark::SymbolicName { .. })));
    }

    #[test]
    fn marking_over_a_longer_name_ends_it_with_a_nul() {
        let (dir, k) = lab();
        let v = vports(&k, dir.path());
        let c = v.create(&req(&k, "db1", 0x5001_a4a0_0000_0b01)).unwrap();
        let vport = c.vhba.vport.clone();
        let path = k.sysfs().vport_symbolic_name_path(&vport);
        // Someone named it at length; the policy then declares it as db1.
        k.write_attr(&path, "libvirt-pool-x1").unwrap();
        assert_eq!(v.owner(&vport).unwrap(), None);
        let mark = v.mark(&vport, "db1").unwrap();
        assert_eq!(mark, OwnerMark::SymbolicName { name: "db1".into() });
        // The name and a NUL to end it over the old tail.
        assert_eq!(k.writes_to("symbolic_name").last().unwrap(), "hbad:db1\0");
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "hbad:db1\n",
            "sysfs shows the name up to the NUL"
        );
        assert_eq!(v.owner(&vport).unwrap(), Some(mark));
        // A fresh vport's name is all zeroes: no NUL is needed, and none is written.
        v.create(&req(&k, "db2", 0x5001_a4a0_0000_0b02)).unwrap();
        assert_eq!(k.writes_to("symbolic_name").last().unwrap(), "hbad:db2");
    }

    #[test]
    fn a_mark_the_kernel_does_not_show_goes_to_the_state_file() {
        let dir = tempfile::tempdir().unwrap();
        let k = with(dir.path(), |k| k.ignore_symbolic = true);
        let v = vports(&k, dir.path());
        let c = v.create(&req(&k, "db1", 0x5001_a4a0_0000_0b01)).unwrap();
        let Some(OwnerMark::StateFile { why, .. }) = &c.owner else {
            panic!("{:?}", c.owner)
        };
        assert!(why.contains("after writing \"hbad:db1\""), "{why}");
    }

    #[test]
    fn delete_respects_ownership_unless_forced() {
        let (dir, k) = lab();
        let v = vports(&k, dir.path());
        let c = v.create(&req(&k, "db1", 0x5001_a4a0_0000_0b01)).unwrap();
        // An administrator renames it: no longer hbad's.
        k.write_attr(
            &k.sysfs().vport_symbolic_name_path(&c.vhba.vport),
            "made by hand",
        )
        .unwrap();
        let host = c.vhba.host.clone().unwrap();
        let err = v
            .delete(&host.devpath, DeletePolicy::OwnedOnly)
            .unwrap_err();
        assert!(matches!(err, VportError::NotOwned { .. }), "{err}");
        assert!(err.to_string().contains("--force"), "{err}");
        assert!(k.writes_to("vport_delete").is_empty());
        // Forced, named by its vHBA host: deleted through the parent's vport_delete.
        let d = v.delete(&host.devpath, DeletePolicy::AnyVport).unwrap();
        assert_eq!(d.parent, k.parent());
        assert_eq!(
            k.writes_to("vport_delete"),
            ["5001a4a000000b01:5001a4a000000b00"]
        );
        assert!(!k.sysfs().exists(&c.vhba.vport));
        assert!(!k.sysfs().exists(&host.devpath));
    }

    #[test]
    fn a_vport_named_hbad_by_hand_is_not_hbads_unless_the_policy_declares_it() {
        let (dir, k) = lab();
        let v = vports(&k, dir.path());
        // Made and named by hand (or by another tool), at a WWPN hbad never used.
        let parent = k.parent();
        let wwpn = Wwn::from_u64(0x5001_a4a0_0000_0f01);
        let wwnn = Wwn::from_u64(0x5001_a4a0_0000_0f00);
        let create = k
            .sysfs()
            .vport_create_path(&parent.devpath, VportControlDir::FcHost);
        k.write_attr(&create, &vport_text(wwpn, wwnn)).unwrap();
        let vport = format!("{}/vport-{}:0-0", parent.devpath, parent.number);
        k.write_attr(&k.sysfs().vport_symbolic_name_path(&vport), "hbad:foo")
            .unwrap();
        assert_eq!(v.owner(&vport).unwrap(), None);
        let err = v.delete(&vport, DeletePolicy::OwnedOnly).unwrap_err();
        assert!(matches!(err, VportError::NotOwned { .. }), "{err}");
        assert!(k.writes_to("vport_delete").is_empty());
        // The policy adopts that WWPN under that name: now it is hbad's.
        let adopted = Vports::new(
            k.sysfs(),
            k.clone(),
            Arc::new(SysfsPoll::new(k.sysfs(), Duration::from_millis(5))),
            OwnedState::new(dir.path().join("state/owned.json"))
                .declaring([(wwpn, "foo".to_string())]),
            Duration::from_millis(200),
        );
        assert_eq!(
            adopted.owner(&vport).unwrap(),
            Some(OwnerMark::SymbolicName { name: "foo".into() })
        );
        // A vport hbad made is recorded, so it stays hbad's (and prunable) once no
        // policy declares it; deleting it forgets the record.
        let c = v.create(&req(&k, "db1", 0x5001_a4a0_0000_0b01)).unwrap();
        let made = Wwn::from_u64(0x5001_a4a0_0000_0b01);
        assert_eq!(v.state().get(made).unwrap().unwrap().name, "db1");
        v.delete(&c.vhba.vport, DeletePolicy::OwnedOnly).unwrap();
        assert_eq!(v.state().get(made).unwrap(), None);
    }

    #[test]
    fn delete_never_touches_a_physical_port() {
        let (dir, k) = lab();
        let v = vports(&k, dir.path());
        for host in k.sim.hosts() {
            let devpath = k.sim.host_devpath(host).unwrap();
            let err = v.delete(&devpath, DeletePolicy::AnyVport).unwrap_err();
            assert!(matches!(err, VportError::NotAVport { .. }), "{err}");
        }
        assert!(k.sim.writes().is_empty());
    }
}
