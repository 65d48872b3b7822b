//! Typed records for each kind of device, and how each is read from its directory.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use super::{
    devpath_name, BlockIndex, DeviceDir, DirAt, MultipathMap, Sysfs, SysfsError, VportControlDir,
};
use crate::wwn::Wwn;

/// A SCSI address: host, channel, target id, LUN.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hctl {
    pub host: u32,
    pub channel: u32,
    pub target: u32,
    pub lun: u64,
}

impl fmt::Display for Hctl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}:{}",
            self.host, self.channel, self.target, self.lun
        )
    }
}

impl Serialize for Hctl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl FromStr for Hctl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "`{}` is not a SCSI address: write H:C:T:L, e.g. 1:0:0:27",
                crate::terminal::echoed(s)
            )
        };
        let mut it = s.split(':');
        let mut next = || it.next().ok_or_else(bad);
        let (h, c, t, l) = (next()?, next()?, next()?, next()?);
        if it.next().is_some() {
            return Err(bad());
        }
        Ok(Hctl {
            host: host(h).ok_or_else(bad)?,
            channel: decimal(c).ok_or_else(bad)?,
            target: decimal(t).ok_or_else(bad)?,
            lun: decimal(l).ok_or_else(bad)?,
        })
    }
}

/// A number in a kernel device name: decimal digits as the kernel prints them
/// (`%d`/`%u`), no sign, no leading zero. `str::parse` alone also takes `+5` and
/// `007`, which would give a second name to one device.
fn decimal<T: FromStr>(text: &str) -> Option<T> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    canonical.then(|| text.parse().ok()).flatten()
}

/// A host number: below `u32::MAX`, which the graph keeps for a host whose name
/// gives none, so that no name can select that placeholder.
fn host(text: &str) -> Option<u32> {
    decimal(text).filter(|&n| n < u32::MAX)
}

/// `hostN` -> N.
pub fn host_number(name: &str) -> Option<u32> {
    host(name.strip_prefix("host")?)
}

/// `targetH:C:T` -> (H, C, T).
pub fn target_address(name: &str) -> Option<(u32, u32, u32)> {
    let mut it = name.strip_prefix("target")?.split(':');
    let addr = (
        host(it.next()?)?,
        decimal(it.next()?)?,
        decimal(it.next()?)?,
    );
    it.next().is_none().then_some(addr)
}

/// `rport-H:C-N` and `vport-H:C-N` -> (H, C, N).
pub fn port_address(name: &str, prefix: &str) -> Option<(u32, u32, u32)> {
    let rest = name.strip_prefix(prefix)?;
    let (hc, n) = rest.rsplit_once('-')?;
    let (h, c) = hc.split_once(':')?;
    Some((host(h)?, decimal(c)?, decimal(n)?))
}

/// A SCSI host (`scsi_host` class).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ScsiHostInfo {
    pub number: u32,
    pub proc_name: Option<String>,
    pub unique_id: Option<String>,
    pub state: Option<String>,
}

/// NPIV capability of an FC host: present only where the driver offers vport_create.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Npiv {
    pub control_dir: VportControlDir,
    pub max_vports: Option<u32>,
    pub vports_inuse: Option<u32>,
}

impl Npiv {
    /// Free vport slots, compared as numbers (libvirt compared these as strings).
    pub fn free(&self) -> Option<u32> {
        Some(self.max_vports?.saturating_sub(self.vports_inuse?))
    }
}

/// An FC host (`fc_host` class).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FcHostInfo {
    pub wwpn: Option<Wwn>,
    pub wwnn: Option<Wwn>,
    pub fabric_name: Option<Wwn>,
    pub port_id: Option<String>,
    pub port_state: Option<String>,
    pub port_type: Option<String>,
    pub speed: Option<String>,
    pub symbolic_name: Option<String>,
    pub npiv: Option<Npiv>,
}

/// An NPIV vport (`fc_vports` class).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VportInfo {
    pub name: String,
    pub wwpn: Option<Wwn>,
    pub wwnn: Option<Wwn>,
    pub vport_state: Option<String>,
    pub vport_last_state: Option<String>,
    pub vport_type: Option<String>,
    pub symbolic_name: Option<String>,
    pub roles: Option<String>,
}

/// An FC remote port (`fc_remote_ports` class).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RemotePortInfo {
    pub name: String,
    pub wwpn: Option<Wwn>,
    pub wwnn: Option<Wwn>,
    pub port_id: Option<String>,
    pub roles: Vec<String>,
    pub port_state: Option<String>,
    /// `None` for ports that are not SCSI targets (the kernel prints -1).
    pub scsi_target_id: Option<u32>,
}

impl RemotePortInfo {
    pub fn is_target(&self) -> bool {
        self.roles.iter().any(|r| r == "FCP Target")
    }
}

/// A SCSI target (`targetH:C:T`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TargetInfo {
    pub name: String,
    pub host: u32,
    pub channel: u32,
    pub id: u32,
}

/// A SCSI device, i.e. a LUN (`H:C:T:L`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LunInfo {
    pub hctl: Hctl,
    pub vendor: Option<String>,
    pub model: Option<String>,
    pub rev: Option<String>,
    /// Peripheral device type (0 disk, 5 CD-ROM, 12 RAID, 13 enclosure...).
    pub scsi_type: Option<u8>,
    pub state: Option<String>,
    pub wwid: Option<String>,
    pub serial: Option<String>,
    pub driver: Option<String>,
}

/// A whole-disk block device (`block` class, DEVTYPE=disk).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BlockInfo {
    pub name: String,
    pub major_minor: Option<String>,
    pub size_bytes: Option<u64>,
    pub read_only: Option<bool>,
    pub removable: Option<bool>,
    /// The multipath map this disk is a path of, when one holds it. As of the
    /// disk's last read: a map made later shows once the disk is read again (the
    /// CLI reads afresh; the agent looks at sysfs itself before it acts).
    /// Boxed: few disks are paths of a map, and inline it would make every disk
    /// node of the graph 64 bytes larger.
    pub multipath: Option<Box<MultipathMap>>,
}

/// How much of a LUN and its disk cold plug reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Detail {
    /// Every attribute hbad keeps: what `show` and JSON output need.
    #[default]
    Full,
    /// What the agent acts and reports on: a LUN's vendor, model and state (its
    /// journal lines), its wwid (the planner groups paths of one volume by it),
    /// its disk's size, links and multipath map. Rev, type, VPD serial, driver,
    /// dev, ro and removable are shown only by the CLI, which reads them itself:
    /// the agent never reads them, and a graph of this detail leaves them `None`
    /// in what events bring too (see [`LunInfo::trim_to`]).
    Agent,
    /// What the text listings show (`luns`, `tree`, `list`): a LUN's vendor, model,
    /// type and state and its disk's size. The rest (rev, wwid, VPD serial, driver,
    /// dev, ro, removable) stays `None`: half the reads on a host of many LUNs.
    Listing,
}

impl Detail {
    fn rev(self) -> bool {
        self == Detail::Full
    }

    fn scsi_type(self) -> bool {
        self != Detail::Agent
    }

    fn wwid(self) -> bool {
        self != Detail::Listing
    }

    /// VPD serial, driver; a disk's dev, ro and removable.
    fn rest(self) -> bool {
        self == Detail::Full
    }
}

impl LunInfo {
    /// A LUN known by its address alone, none of its attributes read.
    pub fn at(hctl: Hctl) -> LunInfo {
        LunInfo {
            hctl,
            vendor: None,
            model: None,
            rev: None,
            scsi_type: None,
            state: None,
            wwid: None,
            serial: None,
            driver: None,
        }
    }

    /// Leaves out what `detail` does not read: what a graph of that detail keeps
    /// of a LUN an event made it read in full.
    pub fn trim_to(&mut self, detail: Detail) {
        let keep = |v: &mut Option<String>, yes: bool| {
            if !yes {
                *v = None;
            }
        };
        keep(&mut self.rev, detail.rev());
        keep(&mut self.wwid, detail.wwid());
        keep(&mut self.serial, detail.rest());
        keep(&mut self.driver, detail.rest());
        if !detail.scsi_type() {
            self.scsi_type = None;
        }
    }
}

impl BlockInfo {
    /// Leaves out what `detail` does not read (see [`LunInfo::trim_to`]).
    pub fn trim_to(&mut self, detail: Detail) {
        if !detail.rest() {
            self.major_minor = None;
            self.read_only = None;
            self.removable = None;
        }
    }
}

/// SCSI peripheral device type names, as lsscsi prints them.
pub fn scsi_type_name(t: u8) -> &'static str {
    match t {
        0 => "disk",
        1 => "tape",
        4 => "worm",
        5 => "cd/dvd",
        7 => "optical",
        8 => "mediumx",
        12 => "storage",
        13 => "enclosu",
        14 => "rbc",
        0x1e => "wlun",
        _ => "other",
    }
}

fn flag(value: Option<String>) -> Option<bool> {
    match value?.as_str() {
        "0" => Some(false),
        "1" => Some(true),
        _ => None,
    }
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

/// VPD page 0x80 is a 4-byte header then the serial number, space padded.
fn vpd80_serial(page: &[u8]) -> Option<String> {
    let len = usize::from(*page.get(3)?);
    let body = page.get(4..4 + len).or_else(|| page.get(4..))?;
    let text = String::from_utf8_lossy(body);
    let serial = text.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    (!serial.is_empty()).then(|| serial.to_string())
}

impl Sysfs {
    /// Opens a device's directory: each device is opened once and its attributes
    /// read relative to it (see [`DeviceDir`]).
    fn device_dir(&self, devpath: &str, what: &'static str) -> Result<DeviceDir, SysfsError> {
        DeviceDir::open(&self.path(devpath))
            .map_err(|_| SysfsError::NotFound(self.path(devpath), what))
    }

    fn name_error(&self, devpath: &str, what: &'static str) -> SysfsError {
        SysfsError::BadName {
            path: self.path(devpath),
            name: devpath_name(devpath).to_string(),
            what,
        }
    }

    /// Reads a SCSI host from its device directory (`/devices/.../hostN`).
    pub fn read_scsi_host(&self, devpath: &str) -> Result<ScsiHostInfo, SysfsError> {
        let name = devpath_name(devpath);
        let number = host_number(name).ok_or_else(|| self.name_error(devpath, "SCSI host"))?;
        let dir = self.device_dir(devpath, "SCSI host")?;
        let class = dir.sub(&format!("scsi_host/{name}")).ok();
        let attr = |n| non_empty(class.as_ref()?.attr(n));
        Ok(ScsiHostInfo {
            number,
            proc_name: attr("proc_name"),
            unique_id: attr("unique_id"),
            state: attr("state"),
        })
    }

    /// Reads the FC side of a host; `Ok(None)` for hosts that are not FC.
    pub fn read_fc_host(&self, devpath: &str) -> Result<Option<FcHostInfo>, SysfsError> {
        let name = devpath_name(devpath);
        host_number(name).ok_or_else(|| self.name_error(devpath, "SCSI host"))?;
        let dir = self.device_dir(devpath, "SCSI host")?;
        let Ok(fc) = dir.sub(&format!("fc_host/{name}")) else {
            return Ok(None);
        };
        let control_dir = if fc.has("vport_create") {
            Some(VportControlDir::FcHost)
        } else if dir.has(&format!("scsi_host/{name}/vport_create")) {
            Some(VportControlDir::ScsiHost)
        } else {
            None
        };
        let npiv = control_dir.map(|control_dir| Npiv {
            control_dir,
            max_vports: fc.attr_parse("max_npiv_vports"),
            vports_inuse: fc.attr_parse("npiv_vports_inuse"),
        });
        // port_state first: a login sets the fabric name and port id before the
        // port turns Online, and no uevent follows, so a port read as Online here
        // is never paired with the fabric name from before its login (a vHBA seen
        // logged in is not polled again until the sweep).
        let port_state = non_empty(fc.attr("port_state"));
        Ok(Some(FcHostInfo {
            wwpn: fc.attr_wwn("port_name"),
            wwnn: fc.attr_wwn("node_name"),
            fabric_name: fc.attr_wwn("fabric_name"),
            port_id: non_empty(fc.attr("port_id")),
            port_state,
            port_type: non_empty(fc.attr("port_type")),
            speed: non_empty(fc.attr("speed")),
            symbolic_name: non_empty(fc.attr("symbolic_name")),
            npiv,
        }))
    }

    /// Reads a vport from its device directory (`/devices/.../hostP/vport-P:0-K`).
    pub fn read_vport(&self, devpath: &str) -> Result<VportInfo, SysfsError> {
        let name = devpath_name(devpath);
        port_address(name, "vport-").ok_or_else(|| self.name_error(devpath, "vport"))?;
        let dir = self.device_dir(devpath, "vport")?;
        let class = dir.sub(&format!("fc_vports/{name}")).ok();
        let attr = |n| non_empty(class.as_ref()?.attr(n));
        Ok(VportInfo {
            name: name.to_string(),
            wwpn: class.as_ref().and_then(|c| c.attr_wwn("port_name")),
            wwnn: class.as_ref().and_then(|c| c.attr_wwn("node_name")),
            vport_state: attr("vport_state"),
            vport_last_state: attr("vport_last_state"),
            vport_type: attr("vport_type"),
            symbolic_name: attr("symbolic_name"),
            roles: attr("roles"),
        })
    }

    /// Reads a remote port from its device directory (`/devices/.../rport-H:C-N`).
    pub fn read_remote_port(&self, devpath: &str) -> Result<RemotePortInfo, SysfsError> {
        let name = devpath_name(devpath);
        port_address(name, "rport-").ok_or_else(|| self.name_error(devpath, "remote port"))?;
        let dir = self.device_dir(devpath, "remote port")?;
        let class = dir.sub(&format!("fc_remote_ports/{name}")).ok();
        let class = class.as_ref();
        let roles = class
            .and_then(|c| c.attr("roles"))
            .map(|r| {
                r.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty() && s != "unknown")
                    .collect()
            })
            .unwrap_or_default();
        Ok(RemotePortInfo {
            name: name.to_string(),
            wwpn: class.and_then(|c| c.attr_wwn("port_name")),
            wwnn: class.and_then(|c| c.attr_wwn("node_name")),
            port_id: non_empty(class.and_then(|c| c.attr("port_id"))),
            roles,
            port_state: non_empty(class.and_then(|c| c.attr("port_state"))),
            scsi_target_id: class.and_then(|c| c.attr_parse("scsi_target_id")),
        })
    }

    pub fn read_target(&self, devpath: &str) -> Result<TargetInfo, SysfsError> {
        let name = devpath_name(devpath);
        let (host, channel, id) =
            target_address(name).ok_or_else(|| self.name_error(devpath, "SCSI target"))?;
        self.device_dir(devpath, "SCSI target")?;
        Ok(TargetInfo {
            name: name.to_string(),
            host,
            channel,
            id,
        })
    }

    pub fn read_lun(&self, devpath: &str) -> Result<LunInfo, SysfsError> {
        let hctl: Hctl = devpath_name(devpath)
            .parse()
            .map_err(|_| self.name_error(devpath, "SCSI device (H:C:T:L)"))?;
        let dir = self.device_dir(devpath, "SCSI device")?;
        Ok(lun_info(hctl, &dir.here(), Detail::Full, true))
    }

    /// Reads a whole-disk block device (`/devices/.../H:C:T:L/block/sdX`).
    pub fn read_block(&self, devpath: &str) -> Result<BlockInfo, SysfsError> {
        let dir = self.device_dir(devpath, "block device")?;
        let multipath = BlockIndex::default().multipath_of(devpath_name(devpath), &dir.here());
        Ok(block_info(
            devpath_name(devpath).to_string(),
            &dir.here(),
            Detail::Full,
            multipath,
        ))
    }

    /// A LUN and the whole-disk block devices under it (`block/sdX`), with one open
    /// of the LUN's directory: what cold plug reads for each LUN. `index` (read once
    /// for all LUNs, see [`BlockIndex`]) names the disks and their multipath maps.
    pub fn read_lun_and_disks(
        &self,
        devpath: &str,
        detail: Detail,
        index: &BlockIndex,
    ) -> Result<(LunInfo, Vec<BlockInfo>), SysfsError> {
        let hctl: Hctl = devpath_name(devpath)
            .parse()
            .map_err(|_| self.name_error(devpath, "SCSI device (H:C:T:L)"))?;
        let dir = self.device_dir(devpath, "SCSI device")?;
        Ok(read_lun_dir(hctl, &dir.here(), detail, index))
    }
}

/// A LUN and its disks from the LUN's directory, `dir` (opened, or read through
/// its target's: see [`DirAt`]). A LUN whose directory is gone reads as its
/// address alone, with no disk.
pub fn read_lun_dir(
    hctl: Hctl,
    dir: &DirAt,
    detail: Detail,
    index: &BlockIndex,
) -> (LunInfo, Vec<BlockInfo>) {
    let mut disks = Vec::new();
    let info = read_lun_dir_with(hctl, dir, detail, index, |disk| disks.push(disk));
    (info, disks)
}

/// [`read_lun_dir`] handing each disk to `disk` as it is read: cold plug keeps
/// the disks of many LUNs in one list, not a list of its own per LUN, and names
/// them from the index without a list of names per LUN.
pub fn read_lun_dir_with(
    hctl: Hctl,
    dir: &DirAt,
    detail: Detail,
    index: &BlockIndex,
    disk: impl FnMut(BlockInfo),
) -> LunInfo {
    read_disks(hctl, dir, detail, index, disk);
    lun_info(hctl, dir, detail, true)
}

/// [`read_lun_dir`] for a listing that does not show the LUN's state (`hbad
/// luns`): its `state` is left `None`, one read fewer per LUN. Whether anything
/// was there to read: `false` when no attribute of the LUN could be read (its
/// directory may be gone, which only the caller can tell).
pub fn read_lun_dir_shown(
    hctl: Hctl,
    dir: &DirAt,
    detail: Detail,
    state: bool,
    index: &BlockIndex,
) -> (LunInfo, Vec<BlockInfo>, bool) {
    let mut disks = Vec::new();
    read_disks(hctl, dir, detail, index, |disk| disks.push(disk));
    let info = lun_info(hctl, dir, detail, state);
    let read = info.vendor.is_some()
        || info.model.is_some()
        || info.scsi_type.is_some()
        || info.state.is_some();
    (info, disks, read)
}

/// The whole disks on a LUN whose directory is `dir`, each handed to `disk` as
/// it is read, gone ones left out.
fn read_disks(
    hctl: Hctl,
    dir: &DirAt,
    detail: Detail,
    index: &BlockIndex,
    mut disk: impl FnMut(BlockInfo),
) {
    let mut read = |name: &str| {
        let at = dir.below(&format!("block/{name}"));
        let multipath = index.multipath_of(name, &at);
        let info = block_info(name.to_string(), &at, detail, multipath);
        // Nothing read: is the disk gone (the index was read before)?
        let unread = info.size_bytes.is_none() && info.major_minor.is_none();
        if !unread || at.exists() {
            disk(info);
        }
    };
    match index.indexed_disks_of(hctl) {
        Some(names) => names.for_each(&mut read),
        None => dir.names("block").iter().for_each(|name| read(name)),
    }
}

fn lun_info(hctl: Hctl, dir: &DirAt, detail: Detail, state: bool) -> LunInfo {
    let text = |yes: bool, name| yes.then(|| non_empty(dir.attr(name))).flatten();
    LunInfo {
        hctl,
        vendor: non_empty(dir.attr("vendor")),
        model: non_empty(dir.attr("model")),
        rev: text(detail.rev(), "rev"),
        scsi_type: detail.scsi_type().then(|| dir.attr_parse("type")).flatten(),
        state: text(state, "state"),
        wwid: text(detail.wwid(), "wwid"),
        serial: detail
            .rest()
            .then(|| dir.attr_bytes("vpd_pg80").and_then(|p| vpd80_serial(&p)))
            .flatten(),
        driver: detail.rest().then(|| dir.link_name("driver")).flatten(),
    }
}

fn block_info(
    name: String,
    dir: &DirAt,
    detail: Detail,
    multipath: Option<Box<MultipathMap>>,
) -> BlockInfo {
    let full = detail.rest();
    let sectors: Option<u64> = dir.attr_parse("size");
    BlockInfo {
        name,
        major_minor: full.then(|| non_empty(dir.attr("dev"))).flatten(),
        // sysfs counts 512-byte sectors whatever the logical block size.
        size_bytes: sectors.and_then(|s| s.checked_mul(512)),
        read_only: full.then(|| flag(dir.attr("ro"))).flatten(),
        removable: full.then(|| flag(dir.attr("removable"))).flatten(),
        multipath,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_scsi_names() {
        assert_eq!(host_number("host12"), Some(12));
        assert_eq!(host_number("hostx"), None);
        assert_eq!(target_address("target2:0:1"), Some((2, 0, 1)));
        assert_eq!(target_address("target2:0"), None);
        assert_eq!(target_address("target2:0:1:4"), None);
        assert_eq!(port_address("rport-1:0-12", "rport-"), Some((1, 0, 12)));
        assert_eq!(port_address("vport-1:0-0", "vport-"), Some((1, 0, 0)));
        assert_eq!(port_address("vport-1-0", "vport-"), None);
        let hctl: Hctl = "1:0:0:27".parse().unwrap();
        assert_eq!((hctl.host, hctl.lun), (1, 27));
        assert_eq!(hctl.to_string(), "1:0:0:27");
        assert!("1:0:0".parse::<Hctl>().unwrap_err().contains("H:C:T:L"));
        assert!("1:0:0:0:0".parse::<Hctl>().is_err());
        assert!("a:0:0:0".parse::<Hctl>().is_err());
    }

    #[test]
    fn names_take_digits_only_and_hosts_stay_below_the_placeholder() {
        for name in [
            "host+5",
            "host-5",
            "host 5",
            "host05",
            "host",
            "host4294967295",
        ] {
            assert_eq!(host_number(name), None, "{name}");
        }
        assert_eq!(host_number("host0"), Some(0));
        assert_eq!(host_number("host4294967294"), Some(u32::MAX - 1));
        assert_eq!(target_address("target+2:0:1"), None);
        assert_eq!(target_address("target2:+0:1"), None);
        assert_eq!(target_address("target4294967295:0:1"), None);
        assert_eq!(port_address("rport-+1:0-12", "rport-"), None);
        assert_eq!(port_address("vport-1:0-+0", "vport-"), None);
        for hctl in [
            "+1:0:0:0",
            "1:+0:0:0",
            "1:0:0:+5",
            "1:0:0:01",
            "4294967295:0:0:0",
        ] {
            assert!(hctl.parse::<Hctl>().is_err(), "{hctl}");
        }
        let err = "1:0:0:\u{1b}[31m".parse::<Hctl>().unwrap_err();
        assert!(err.contains("\\u{1b}[31m"), "{err}");
        assert!(!err.contains('\u{1b}'), "{err}");
    }

    #[test]
    fn reads_serial_from_vpd_page_80() {
        assert_eq!(vpd80_serial(b"\0\x80\0\x046000").as_deref(), Some("6000"));
        assert_eq!(
            vpd80_serial(b"\0\x80\0\x0flab-rd0-serial\0").as_deref(),
            Some("lab-rd0-serial")
        );
        assert_eq!(vpd80_serial(b"\0\x80\0\x04    "), None);
        assert_eq!(vpd80_serial(b"\0\x80"), None);
        // A length byte past the end reads what is there instead of panicking.
        assert_eq!(vpd80_serial(b"\0\x80\0\xffabc").as_deref(), Some("abc"));
    }
}
