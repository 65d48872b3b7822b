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

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::errors::{explain, KernelRefusal, Op};
use crate::plan::HostRef;
use crate::policy::OWNER_PREFIX;
use crate::sysfs::writes::{vport_text, AttrWriter};
use crate::sysfs::{devpath_name, host_number, parent_devpath, Sysfs, VportControlDir};
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
    #[error("WWPN {wwpn} is already used by {by}, which is not a vport; choose another WWPN")]
    WwpnInUse { wwpn: Wwn, by: String },
    #[error("{what} is not an NPIV vport (a physical port or another kind of host); hbad only deletes vHBAs")]
    NotAVport { what: String },
    #[error(
        "{vport} (wwpn {wwpn}) was not made by hbad (symbolic_name {shown}, not in {state}); \
         delete it with `hbad destroy --force` if you are sure"
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
    #[error("ownership state file {}: {why}", path.display())]
    State { path: PathBuf, why: String },
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
        let deadline = Instant::now() + timeout;
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

/// One vHBA recorded in the state file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnedRecord {
    pub name: String,
    pub wwnn: Wwn,
    /// Why symbolic_name could not carry the mark.
    pub why: String,
}

/// The fallback ownership record: vHBAs hbad made whose driver refused the mark.
/// Keyed by WWPN (host numbers and vport names change across boots).
#[derive(Clone, Debug)]
pub struct OwnedState {
    path: PathBuf,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct OwnedFile {
    version: u32,
    vhbas: BTreeMap<Wwn, OwnedRecord>,
}

impl OwnedState {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        OwnedState { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, why: impl fmt::Display) -> VportError {
        VportError::State {
            path: self.path.clone(),
            why: why.to_string(),
        }
    }

    fn read(&self) -> Result<OwnedFile, VportError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| self.err(format!("not hbad's JSON ({e}); move it aside"))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(OwnedFile {
                version: 1,
                ..OwnedFile::default()
            }),
            Err(e) => Err(self.err(e)),
        }
    }

    fn write(&self, file: &OwnedFile) -> Result<(), VportError> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| self.err(e))?;
        }
        let text = serde_json::to_vec_pretty(file).map_err(|e| self.err(e))?;
        // Write aside and rename, so a crash never leaves half a file that would
        // make every vHBA look unowned.
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(&tmp, text).map_err(|e| self.err(e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| self.err(e))
    }

    pub fn get(&self, wwpn: Wwn) -> Result<Option<OwnedRecord>, VportError> {
        Ok(self.read()?.vhbas.get(&wwpn).cloned())
    }

    pub fn all(&self) -> Result<BTreeMap<Wwn, OwnedRecord>, VportError> {
        Ok(self.read()?.vhbas)
    }

    pub fn record(&self, wwpn: Wwn, rec: OwnedRecord) -> Result<(), VportError> {
        let mut file = self.read()?;
        file.version = 1;
        file.vhbas.insert(wwpn, rec);
        self.write(&file)
    }

    pub fn forget(&self, wwpn: Wwn) -> Result<(), VportError> {
        let mut file = self.read()?;
        if file.vhbas.remove(&wwpn).is_some() {
            self.write(&file)?;
        }
        Ok(())
    }
}

/// How hbad knows a vport is its own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum OwnerMark {
    /// `symbolic_name = hbad:<name>` on the vport.
    SymbolicName { name: String },
    /// The driver refused the mark; recorded in the state file.
    StateFile {
        name: String,
        path: PathBuf,
        why: String,
    },
}

impl OwnerMark {
    pub fn name(&self) -> &str {
        match self {
            OwnerMark::SymbolicName { name } | OwnerMark::StateFile { name, .. } => name,
        }
    }
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

    pub fn state(&self) -> &OwnedState {
        &self.state
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
        if let Err(e) = self
            .writer
            .write_attr(&path, &vport_text(req.wwpn, req.wwnn))
        {
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
                rollback: self.roll_back(req),
            });
        };
        let owner = self.mark(&found.vport, &req.name)?;
        Ok(Created {
            vhba: found,
            already_present: false,
            owner: Some(owner),
        })
    }

    /// Deletes what a create that never confirmed may have left behind.
    fn roll_back(&self, req: &CreateRequest) -> String {
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
        if info.as_ref().and_then(|v| v.symbolic_name.as_deref()) == Some(tag.as_str()) {
            return Ok(OwnerMark::SymbolicName {
                name: name.to_string(),
            });
        }
        let why = if tag.len() > SYMBOLIC_NAME_MAX {
            format!(
                "\"{tag}\" is longer than the kernel's {SYMBOLIC_NAME_MAX} characters for symbolic_name"
            )
        } else {
            let path = self.sysfs.vport_symbolic_name_path(vport_devpath);
            match self.writer.write_attr(&path, &tag) {
                Ok(()) => {
                    return Ok(OwnerMark::SymbolicName {
                        name: name.to_string(),
                    })
                }
                Err(e) => {
                    let op = Op::SymbolicName {
                        vport: devpath_name(vport_devpath).to_string(),
                    };
                    explain(&op, &e).to_string()
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
            },
        )?;
        Ok(OwnerMark::StateFile {
            name: name.to_string(),
            path: self.state.path.clone(),
            why,
        })
    }

    /// Who owns a vport, as far as hbad can tell.
    pub fn owner(&self, vport_devpath: &str) -> Result<Option<OwnerMark>, VportError> {
        let Ok(info) = self.sysfs.read_vport(vport_devpath) else {
            return Ok(None);
        };
        if let Some(name) = info
            .symbolic_name
            .as_deref()
            .and_then(|s| s.strip_prefix(OWNER_PREFIX))
        {
            return Ok(Some(OwnerMark::SymbolicName {
                name: name.to_string(),
            }));
        }
        let Some(wwpn) = info.wwpn else {
            return Ok(None);
        };
        Ok(self.state.get(wwpn)?.map(|r| OwnerMark::StateFile {
            name: r.name,
            path: self.state.path.clone(),
            why: r.why,
        }))
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
                state: self.state.path.display().to_string(),
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
        if matches!(owner, Some(OwnerMark::StateFile { .. })) {
            self.state.forget(wwpn)?;
        }
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
    use std::collections::HashSet;
    use std::fs;
    use std::sync::Mutex;

    use super::*;

    /// A tiny FC kernel over a temp sysfs tree: vport_create/vport_delete with the
    /// kernel's formats and errnos, symbolic_name with its length limit, scans logged.
    #[derive(Debug)]
    pub struct FakeFc {
        pub root: PathBuf,
        pub log: Mutex<Vec<(PathBuf, String)>>,
        /// Accept creates but make nothing (a driver whose vport never comes up).
        pub silent: bool,
        /// The driver has no set_vport_symbolic_name.
        pub refuse_symbolic: bool,
        next_host: Mutex<u32>,
    }

    pub const PARENT: &str = "/devices/pci0000:00/0000:00:03.0/host1";

    fn put(path: &Path, value: &str) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, value).unwrap();
    }

    fn link(root: &Path, class: &str, name: &str, target_devpath: &str) {
        let dir = root.join("class").join(class);
        fs::create_dir_all(&dir).unwrap();
        let depth = "../../";
        std::os::unix::fs::symlink(
            format!("{depth}{}", target_devpath.trim_start_matches('/')),
            dir.join(name),
        )
        .unwrap();
    }

    pub fn fc_host(root: &Path, devpath: &str, wwpn: u64, wwnn: u64, npiv: bool) {
        let name = devpath_name(devpath);
        let base = root.join(devpath.trim_start_matches('/'));
        let fc = base.join("fc_host").join(name);
        put(&base.join("scsi_host").join(name).join("scan"), "");
        put(
            &base.join("scsi_host").join(name).join("proc_name"),
            "fcoe\n",
        );
        put(&fc.join("port_name"), &format!("0x{wwpn:016x}\n"));
        put(&fc.join("node_name"), &format!("0x{wwnn:016x}\n"));
        put(&fc.join("port_state"), "Online\n");
        if npiv {
            put(&fc.join("vport_create"), "");
            put(&fc.join("vport_delete"), "");
            put(&fc.join("max_npiv_vports"), "2\n");
            put(&fc.join("npiv_vports_inuse"), "0\n");
        }
        link(
            root,
            "scsi_host",
            name,
            &format!("{devpath}/scsi_host/{name}"),
        );
        link(root, "fc_host", name, &format!("{devpath}/fc_host/{name}"));
    }

    impl FakeFc {
        pub fn new(root: &Path) -> FakeFc {
            fc_host(
                root,
                PARENT,
                0x2000_0200_0000_000b,
                0x1000_0200_0000_000b,
                true,
            );
            FakeFc {
                root: root.to_path_buf(),
                log: Mutex::new(Vec::new()),
                silent: false,
                refuse_symbolic: false,
                next_host: Mutex::new(4),
            }
        }

        pub fn sysfs(&self) -> Sysfs {
            Sysfs::new(&self.root, self.root.join("dev"))
        }

        pub fn writes_to(&self, file: &str) -> Vec<String> {
            self.log
                .lock()
                .unwrap()
                .iter()
                .filter(|(p, _)| p.file_name().is_some_and(|n| n == file))
                .map(|(_, v)| v.clone())
                .collect()
        }

        fn vports(&self, parent: &Path) -> Vec<(PathBuf, Wwn)> {
            let sysfs = self.sysfs();
            let rel = parent.strip_prefix(&self.root).unwrap();
            let dp = format!("/{}", rel.display());
            sysfs
                .list(&dp)
                .into_iter()
                .filter(|n| n.starts_with("vport-"))
                .filter_map(|n| {
                    let v = sysfs.read_vport(&format!("{dp}/{n}")).ok()?;
                    Some((parent.join(&n), v.wwpn?))
                })
                .collect()
        }

        fn parse(value: &str) -> io::Result<(Wwn, Wwn)> {
            let einval = || io::Error::from_raw_os_error(libc::EINVAL);
            let v = value.strip_suffix('\n').unwrap_or(value);
            let (p, n) = v.split_once(':').ok_or_else(einval)?;
            if p.len() != 16 || n.len() != 16 || p.starts_with("0x") {
                return Err(einval());
            }
            Ok((
                p.parse().map_err(|_| einval())?,
                n.parse().map_err(|_| einval())?,
            ))
        }

        fn create(&self, host_dir: &Path, value: &str) -> io::Result<()> {
            let (wwpn, wwnn) = Self::parse(value)?;
            let fc = host_dir.join("fc_host").join(host_dir.file_name().unwrap());
            let existing = self.vports(host_dir);
            if existing.iter().any(|(_, w)| *w == wwpn) {
                return Err(io::Error::from_raw_os_error(libc::EINVAL));
            }
            let max: usize = fs::read_to_string(fc.join("max_npiv_vports"))?
                .trim()
                .parse()
                .unwrap();
            if existing.len() >= max {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
            if self.silent {
                return Ok(());
            }
            let pname = host_dir.file_name().unwrap().to_string_lossy().into_owned();
            let p = host_number(&pname).unwrap();
            let used: HashSet<String> = existing
                .iter()
                .map(|(d, _)| d.file_name().unwrap().to_string_lossy().into_owned())
                .collect();
            let k = (0..)
                .find(|k| !used.contains(&format!("vport-{p}:0-{k}")))
                .unwrap();
            let vname = format!("vport-{p}:0-{k}");
            let parent_dp = format!("/{}", host_dir.strip_prefix(&self.root).unwrap().display());
            let vdp = format!("{parent_dp}/{vname}");
            let vclass = self
                .root
                .join(vdp.trim_start_matches('/'))
                .join("fc_vports")
                .join(&vname);
            put(&vclass.join("port_name"), &format!("{wwpn}\n"));
            put(&vclass.join("node_name"), &format!("{wwnn}\n"));
            put(&vclass.join("symbolic_name"), "\n");
            put(&vclass.join("vport_state"), "Active\n");
            link(
                &self.root,
                "fc_vports",
                &vname,
                &format!("{vdp}/fc_vports/{vname}"),
            );
            let m = {
                let mut n = self.next_host.lock().unwrap();
                *n += 1;
                *n - 1
            };
            fc_host(
                &self.root,
                &format!("{vdp}/host{m}"),
                wwpn.as_u64(),
                wwnn.as_u64(),
                false,
            );
            put(
                &fc.join("npiv_vports_inuse"),
                &format!("{}\n", existing.len() + 1),
            );
            Ok(())
        }

        fn delete(&self, host_dir: &Path, value: &str) -> io::Result<()> {
            let (wwpn, _) = Self::parse(value)?;
            let Some((dir, _)) = self.vports(host_dir).into_iter().find(|(_, w)| *w == wwpn) else {
                return Err(io::Error::from_raw_os_error(libc::ENODEV));
            };
            for class in ["fc_vports", "scsi_host", "fc_host"] {
                for entry in fs::read_dir(self.root.join("class").join(class))? {
                    let entry = entry?;
                    let target = fs::canonicalize(entry.path()).unwrap_or_default();
                    if target.starts_with(fs::canonicalize(&dir)?) {
                        fs::remove_file(entry.path())?;
                    }
                }
            }
            fs::remove_dir_all(dir)
        }
    }

    impl AttrWriter for FakeFc {
        fn write_attr(&self, path: &Path, value: &str) -> io::Result<()> {
            self.log
                .lock()
                .unwrap()
                .push((path.to_path_buf(), value.to_string()));
            if !path.exists() {
                return Err(io::Error::from_raw_os_error(libc::ENOENT));
            }
            let file = path.file_name().unwrap().to_string_lossy().into_owned();
            // .../hostN/fc_host/hostN/vport_create -> .../hostN
            let host_dir = || path.parent().unwrap().parent().unwrap().parent().unwrap();
            match file.as_str() {
                "vport_create" => self.create(host_dir(), value),
                "vport_delete" => self.delete(host_dir(), value),
                "symbolic_name" if self.refuse_symbolic => {
                    Err(io::Error::from_raw_os_error(libc::EACCES))
                }
                "symbolic_name" => {
                    if value.trim_end_matches('\n').len() > SYMBOLIC_NAME_MAX {
                        return Err(io::Error::from_raw_os_error(libc::EINVAL));
                    }
                    fs::write(path, format!("{}\n", value.trim_end_matches('\n')))
                }
                "scan" => {
                    if value.split(' ').count() == 3 {
                        Ok(())
                    } else {
                        Err(io::Error::from_raw_os_error(libc::EINVAL))
                    }
                }
                _ => Ok(()),
            }
        }
    }

    pub fn parent() -> HostRef {
        HostRef {
            number: 1,
            devpath: PARENT.into(),
        }
    }

    fn vports(k: &Arc<FakeFc>, dir: &Path) -> Vports {
        let sysfs = k.sysfs();
        Vports::new(
            sysfs.clone(),
            k.clone(),
            Arc::new(SysfsPoll::new(sysfs, Duration::from_millis(5))),
            OwnedState::new(dir.join("state/owned.json")),
            Duration::from_millis(200),
        )
    }

    fn req(name: &str, wwpn: u64) -> CreateRequest {
        CreateRequest {
            name: name.into(),
            parent: parent(),
            control_dir: VportControlDir::FcHost,
            wwpn: Wwn::from_u64(wwpn),
            wwnn: Wwn::from_u64(0x5001_a4a0_0000_0b00),
        }
    }

    #[test]
    fn create_confirms_the_vhba_by_its_wwns_and_marks_it() {
        let dir = tempfile::tempdir().unwrap();
        let k = Arc::new(FakeFc::new(dir.path()));
        let v = vports(&k, dir.path());
        let c = v.create(&req("db1", 0x5001_a4a0_0000_0b01)).unwrap();
        assert!(!c.already_present);
        assert_eq!(c.vhba.vport, format!("{PARENT}/vport-1:0-0"));
        assert_eq!(c.vhba.host.as_ref().map(|h| h.number), Some(4));
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

    #[test]
    fn create_is_idempotent_without_a_second_write() {
        let dir = tempfile::tempdir().unwrap();
        let k = Arc::new(FakeFc::new(dir.path()));
        let v = vports(&k, dir.path());
        let first = v.create(&req("db1", 0x5001_a4a0_0000_0b01)).unwrap();
        let again = v.create(&req("db1", 0x5001_a4a0_0000_0b01)).unwrap();
        assert!(again.already_present);
        assert_eq!(again.vhba, first.vhba);
        // The kernel would have answered a second write with EINVAL.
        assert_eq!(k.writes_to("vport_create").len(), 1);
        assert_eq!(k.writes_to("symbolic_name").len(), 1);
    }

    #[test]
    fn create_that_never_appears_is_rolled_back_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let mut fake = FakeFc::new(dir.path());
        fake.silent = true;
        let k = Arc::new(fake);
        let v = vports(&k, dir.path());
        let err = v.create(&req("db1", 0x5001_a4a0_0000_0b01)).unwrap_err();
        assert!(matches!(err, VportError::NeverAppeared { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains("no vHBA with that WWPN appeared"), "{text}");
        // Nothing was made, so the kernel answers the rollback with ENODEV.
        assert!(text.contains("nothing to roll back"), "{text}");
        assert_eq!(
            k.writes_to("vport_delete"),
            ["5001a4a000000b01:5001a4a000000b00"]
        );
    }

    #[test]
    fn kernel_refusals_are_explained() {
        let dir = tempfile::tempdir().unwrap();
        let k = Arc::new(FakeFc::new(dir.path()));
        let v = vports(&k, dir.path());
        v.create(&req("a", 0x5001_a4a0_0000_0b01)).unwrap();
        v.create(&req("b", 0x5001_a4a0_0000_0b02)).unwrap();
        let full = v.create(&req("c", 0x5001_a4a0_0000_0b03)).unwrap_err();
        let text = full.to_string();
        assert!(
            text.contains("host1 has no free vport") && text.contains("2 of 2 NPIV vports"),
            "{text}"
        );
        // A parent without vport_create: ENOENT, explained as no NPIV.
        let mut r = req("d", 0x5001_a4a0_0000_0b04);
        r.control_dir = VportControlDir::ScsiHost;
        let text = v.create(&r).unwrap_err().to_string();
        assert!(
            text.contains("no NPIV support") && text.contains("ENOENT"),
            "{text}"
        );
    }

    #[test]
    fn a_wwpn_held_by_a_physical_port_is_refused_without_a_write() {
        let dir = tempfile::tempdir().unwrap();
        let k = Arc::new(FakeFc::new(dir.path()));
        let v = vports(&k, dir.path());
        let err = v.create(&req("x", 0x2000_0200_0000_000b)).unwrap_err();
        assert!(matches!(err, VportError::WwpnInUse { .. }), "{err}");
        assert!(k.writes_to("vport_create").is_empty());
    }

    #[test]
    fn refused_symbolic_name_falls_back_to_the_state_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut fake = FakeFc::new(dir.path());
        fake.refuse_symbolic = true;
        let k = Arc::new(fake);
        let v = vports(&k, dir.path());
        let c = v.create(&req("db1", 0x5001_a4a0_0000_0b01)).unwrap();
        let Some(OwnerMark::StateFile { name, why, .. }) = &c.owner else {
            panic!("{:?}", c.owner)
        };
        assert_eq!(name, "db1");
        assert!(why.contains("EACCES"), "{why}");
        let wwpn = Wwn::from_u64(0x5001_a4a0_0000_0b01);
        assert_eq!(v.state().get(wwpn).unwrap().unwrap().name, "db1");
        // Owned by the record: delete goes ahead and forgets it.
        let d = v.delete(&c.vhba.vport, DeletePolicy::OwnedOnly).unwrap();
        assert!(!d.already_gone);
        assert_eq!(v.state().get(wwpn).unwrap(), None);
        assert!(!k.sysfs().exists(&c.vhba.vport));
    }

    #[test]
    fn a_name_too_long_for_the_kernel_goes_to_the_state_file_unwritten() {
        let dir = tempfile::tempdir().unwrap();
        let k = Arc::new(FakeFc::new(dir.path()));
        let v = vports(&k, dir.path());
        let long = "n".repeat(60);
        let c = v.create(&req(&long, 0x5001_a4a0_0000_0b01)).unwrap();
        assert!(matches!(c.owner, Some(OwnerMark::StateFile { .. })));
        assert!(k.writes_to("symbolic_name").is_empty());
    }

    #[test]
    fn delete_respects_ownership_unless_forced() {
        let dir = tempfile::tempdir().unwrap();
        let k = Arc::new(FakeFc::new(dir.path()));
        let v = vports(&k, dir.path());
        let c = v.create(&req("db1", 0x5001_a4a0_0000_0b01)).unwrap();
        // Someone else's: clear the mark as an administrator's own vport would have it.
        fs::write(
            k.sysfs().vport_symbolic_name_path(&c.vhba.vport),
            "made by hand\n",
        )
        .unwrap();
        let host = c.vhba.host.clone().unwrap();
        let err = v
            .delete(&host.devpath, DeletePolicy::OwnedOnly)
            .unwrap_err();
        assert!(matches!(err, VportError::NotOwned { .. }), "{err}");
        assert!(err.to_string().contains("--force"), "{err}");
        assert!(k.writes_to("vport_delete").is_empty());
        // Forced, by the vHBA's host: deleted through the parent's vport_delete.
        let d = v.delete(&host.devpath, DeletePolicy::AnyVport).unwrap();
        assert_eq!(d.parent.number, 1);
        assert_eq!(
            k.writes_to("vport_delete"),
            ["5001a4a000000b01:5001a4a000000b00"]
        );
        assert!(!k.sysfs().exists(&c.vhba.vport));
    }

    #[test]
    fn delete_never_touches_a_physical_port() {
        let dir = tempfile::tempdir().unwrap();
        let k = Arc::new(FakeFc::new(dir.path()));
        let v = vports(&k, dir.path());
        let err = v.delete(PARENT, DeletePolicy::AnyVport).unwrap_err();
        assert!(matches!(err, VportError::NotAVport { .. }), "{err}");
        assert!(k.log.lock().unwrap().is_empty());
    }

    #[test]
    fn a_corrupt_state_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let state = OwnedState::new(dir.path().join("owned.json"));
        fs::write(state.path(), "{not json").unwrap();
        let err = state.get(Wwn::from_u64(1)).unwrap_err().to_string();
        assert!(
            err.contains("owned.json") && err.contains("move it aside"),
            "{err}"
        );
    }
}
