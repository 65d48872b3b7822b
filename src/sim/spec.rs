//! What a simulated host and its SAN are made of: plain descriptions, no behaviour.

use std::collections::BTreeSet;

use crate::sysfs::VportControlDir;
use crate::wwn::Wwn;

/// One logical unit as a storage array (or a local controller) presents it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LunSpec {
    pub lun: u64,
    pub size_bytes: u64,
    /// INQUIRY vendor (8 characters on the wire; padded here as the kernel shows it).
    pub vendor: String,
    pub model: String,
    pub rev: String,
    /// VPD page 0x80 unit serial number.
    pub serial: String,
    /// The kernel's `wwid` attribute, e.g. `naa.600140500000000000000000000000a1`.
    pub wwid: String,
    /// Initiator WWPNs this LUN is masked to (an array's host group / LIO ACL).
    /// Ignored for LUNs of local controllers, which every scan sees.
    pub initiators: BTreeSet<Wwn>,
}

impl LunSpec {
    /// A LUN of an LIO-like array: vendor `LIO-ORG`, a serial, and an NAA 6 wwid
    /// derived from the serial so that two paths to one LUN share it.
    pub fn new(lun: u64, size_bytes: u64, serial: &str) -> Self {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in serial.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        LunSpec {
            lun,
            size_bytes,
            vendor: "LIO-ORG".into(),
            model: "FILEIO".into(),
            rev: "4.0".into(),
            serial: serial.into(),
            wwid: format!("naa.6001405{:025x}", u128::from(h)),
            initiators: BTreeSet::new(),
        }
    }

    pub fn vendor_model(mut self, vendor: &str, model: &str) -> Self {
        self.vendor = vendor.into();
        self.model = model.into();
        self
    }

    /// Masks the LUN to an initiator port.
    pub fn masked_to(mut self, initiator: Wwn) -> Self {
        self.initiators.insert(initiator);
        self
    }
}

/// A Fibre Channel fabric (a switch, or a pair of zoned switches seen as one).
/// Every port logged into a fabric sees every target port on it: zoning is not
/// modelled, LUN masking is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FabricSpec {
    pub name: String,
    /// What `fc_host/hostN/fabric_name` shows once logged in.
    pub wwn: Wwn,
    /// Does the switch accept FDISC logins from NPIV ports?
    pub npiv: bool,
    /// A switched fabric's directory server (FFFFFC): every port logged in gets a
    /// remote port for it before any other. FCoE VN2VN has none.
    pub name_server: bool,
}

impl FabricSpec {
    pub fn new(name: &str, wwn: Wwn) -> Self {
        FabricSpec {
            name: name.into(),
            wwn,
            npiv: true,
            name_server: true,
        }
    }

    pub fn without_npiv(mut self) -> Self {
        self.npiv = false;
        self
    }

    /// FCoE VN2VN (point to multipoint): no switch, so no name server and no
    /// NPIV logins (libfc never sends FDISC there).
    pub fn vn2vn(mut self) -> Self {
        self.npiv = false;
        self.name_server = false;
        self
    }
}

/// A storage array's target port on a fabric.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetPortSpec {
    pub wwpn: Wwn,
    pub wwnn: Wwn,
    pub fabric: String,
    /// 24-bit FC address the fabric gave it.
    pub port_id: u32,
    pub luns: Vec<LunSpec>,
}

impl TargetPortSpec {
    pub fn new(fabric: &str, wwpn: Wwn, wwnn: Wwn, port_id: u32) -> Self {
        TargetPortSpec {
            wwpn,
            wwnn,
            fabric: fabric.into(),
            port_id,
            luns: Vec::new(),
        }
    }

    pub fn lun(mut self, lun: LunSpec) -> Self {
        self.luns.push(lun);
        self
    }
}

/// Where a host adapter sits, which decides its devpath and its by-path links.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HbaBus {
    /// A PCI function, `0000:3b:00.0`: `/devices/pci0000:00/0000:3b:00.0/hostN`.
    Pci(String),
    /// A scsi_debug-like pseudo adapter: `/devices/pseudo_0/adapterK/hostN`.
    Pseudo,
    /// A software host such as iscsi_tcp: `/devices/platform/hostN`.
    Platform,
}

/// The FC side of a physical port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FcPortSpec {
    pub wwpn: Wwn,
    pub wwnn: Wwn,
    /// The fabric it is cabled to; `None` is an unplugged port (Linkdown).
    pub fabric: Option<String>,
    pub link_up: bool,
    /// `speed` as the kernel prints it: `16 Gbit`, `32 Gbit`...
    pub speed: String,
    /// `None`: the driver cannot make vports, and `vport_create` does not exist.
    pub max_npiv_vports: Option<u32>,
    /// Where `vport_create`/`vport_delete` live: `fc_host` on current kernels,
    /// `scsi_host` on old ones.
    pub npiv_controls: VportControlDir,
    /// 24-bit FC address once logged in.
    pub port_id: u32,
}

/// A LUN of a local (non-FC) host at a fixed address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalLun {
    pub channel: u32,
    pub target: u32,
    pub spec: LunSpec,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HbaKind {
    Fc(FcPortSpec),
    /// A controller whose devices are found by probing addresses: a RAID
    /// controller's virtual drives, scsi_debug's LUNs, an iSCSI session's LUNs.
    Local {
        luns: Vec<LocalLun>,
        /// scsi_debug reports POWER_ON_RESET_OCCURRED once on every new LUN (seen).
        power_on_reset_ua: bool,
    },
    /// An iscsi_tcp session to one target: its own SCSI host, the target at
    /// `0:0` under the session, LUNs as the target presents them.
    Iscsi {
        target_iqn: String,
        /// `address:port`, as by-path names show it.
        portal: String,
        luns: Vec<LunSpec>,
    },
}

/// One host adapter (one SCSI host).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HbaSpec {
    /// The driver, which is also the host's `proc_name`: qla2xxx, lpfc, megaraid_sas...
    pub driver: String,
    pub bus: HbaBus,
    pub kind: HbaKind,
}

impl HbaSpec {
    /// An FC port on a PCI HBA, cabled to `fabric`, link up, NPIV-capable.
    pub fn fc(driver: &str, pci: &str, wwpn: Wwn, wwnn: Wwn, fabric: &str) -> Self {
        HbaSpec {
            driver: driver.into(),
            bus: HbaBus::Pci(pci.into()),
            kind: HbaKind::Fc(FcPortSpec {
                wwpn,
                wwnn,
                fabric: Some(fabric.into()),
                link_up: true,
                speed: "16 Gbit".into(),
                max_npiv_vports: Some(254),
                npiv_controls: VportControlDir::FcHost,
                port_id: 0x01_0000 | (wwpn.as_u64() & 0xffff) as u32,
            }),
        }
    }

    /// A RAID controller with local virtual drives at `0:2:N:0`, as megaraid_sas shows them.
    pub fn raid(driver: &str, pci: &str, drives: Vec<LunSpec>) -> Self {
        let luns = drives
            .into_iter()
            .enumerate()
            .map(|(i, mut spec)| {
                spec.lun = 0;
                LocalLun {
                    channel: 2,
                    target: i as u32,
                    spec,
                }
            })
            .collect();
        HbaSpec {
            driver: driver.into(),
            bus: HbaBus::Pci(pci.into()),
            kind: HbaKind::Local {
                luns,
                power_on_reset_ua: false,
            },
        }
    }

    /// A scsi_debug host: `targets` targets with `luns` LUNs each, 8 MiB each.
    pub fn scsi_debug(targets: u32, luns: u64) -> Self {
        let mut list = Vec::new();
        for t in 0..targets {
            for l in 0..luns {
                let mut spec = LunSpec::new(l, 8 << 20, &format!("{}", 6000 + t * 100 + l as u32))
                    .vendor_model("Linux", "scsi_debug");
                spec.rev = "0191".into();
                list.push(LocalLun {
                    channel: 0,
                    target: t,
                    spec,
                });
            }
        }
        HbaSpec {
            driver: "scsi_debug".into(),
            bus: HbaBus::Pseudo,
            kind: HbaKind::Local {
                luns: list,
                power_on_reset_ua: true,
            },
        }
    }

    /// An iscsi_tcp session (a software host under `/devices/platform`).
    pub fn iscsi(target_iqn: &str, portal: &str, luns: Vec<LunSpec>) -> Self {
        HbaSpec {
            driver: "iscsi_tcp".into(),
            bus: HbaBus::Platform,
            kind: HbaKind::Iscsi {
                target_iqn: target_iqn.into(),
                portal: portal.into(),
                luns,
            },
        }
    }

    pub fn max_npiv_vports(mut self, max: Option<u32>) -> Self {
        if let HbaKind::Fc(fc) = &mut self.kind {
            fc.max_npiv_vports = max;
        }
        self
    }

    /// Puts the NPIV controls where an old kernel had them.
    pub fn npiv_controls(mut self, dir: VportControlDir) -> Self {
        if let HbaKind::Fc(fc) = &mut self.kind {
            fc.npiv_controls = dir;
        }
        self
    }

    pub fn link_up(mut self, up: bool) -> Self {
        if let HbaKind::Fc(fc) = &mut self.kind {
            fc.link_up = up;
        }
        self
    }

    pub fn speed(mut self, speed: &str) -> Self {
        if let HbaKind::Fc(fc) = &mut self.kind {
            fc.speed = speed.into();
        }
        self
    }
}

/// A whole simulated machine: its adapters in probe order, and the SAN.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimSpec {
    pub hbas: Vec<HbaSpec>,
    pub fabrics: Vec<FabricSpec>,
    pub targets: Vec<TargetPortSpec>,
}

impl SimSpec {
    pub fn new() -> Self {
        SimSpec::default()
    }

    pub fn hba(mut self, hba: HbaSpec) -> Self {
        self.hbas.push(hba);
        self
    }

    pub fn fabric(mut self, fabric: FabricSpec) -> Self {
        self.fabrics.push(fabric);
        self
    }

    pub fn target(mut self, target: TargetPortSpec) -> Self {
        self.targets.push(target);
        self
    }
}
