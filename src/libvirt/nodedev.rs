//! SCSI hosts, targets and LUNs as libvirt's node-device driver describes them
//! (`virsh nodedev-dumpxml scsi_hostN`, `scsi_target1_0_0`, `scsi_1_0_0_0`), so tools
//! that parse libvirt's XML can read hbad's view too.
//!
//! The element order is nodedev.rng's, which is strict: `name`, `path`, `parent`,
//! then `<capability type='scsi_host'>` holding `host`, `unique_id`, and the nested
//! `fc_host` and `vport_ops` capabilities. WWNs are bare hex, as libvirt prints them.

use std::fmt::Write as _;

use super::xml::esc;
use crate::graph::Host;
use crate::sysfs::Hctl;
use crate::wwn::{Wwn, WwnStyle};

/// The nearest ancestor libvirt knows as a node device: libvirt walks up sysfs from
/// the host and takes the first device it has a name for, else `computer`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeDeviceParent {
    /// A vHBA's parent is the host whose vport made it (the vport itself is no node
    /// device to libvirt); a target's is its host (nor is a remote port one).
    ScsiHost(u32),
    /// A LUN's parent: its target, by kernel name (`target1:0:0`).
    ScsiTarget(String),
    /// A PCI function, by its sysfs name (`0000:06:00.1`).
    Pci(String),
    /// A network interface (FCoE hosts hang below one), with its MAC address.
    Net { interface: String, mac: String },
    /// libvirt's root device, for hosts below nothing it names (scsi_debug's pseudo bus).
    Computer,
}

/// libvirt's device names keep letters and digits and turn everything else into `_`
/// (udevGenerateDeviceName).
fn udev_style(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

impl NodeDeviceParent {
    /// The node-device name libvirt gives this device.
    pub fn name(&self) -> String {
        match self {
            NodeDeviceParent::ScsiHost(n) => format!("scsi_host{n}"),
            NodeDeviceParent::ScsiTarget(t) => udev_style(&format!("scsi_{t}")),
            NodeDeviceParent::Pci(addr) => udev_style(&format!("pci_{addr}")),
            NodeDeviceParent::Net { interface, mac } => {
                udev_style(&format!("net_{interface}_{mac}"))
            }
            NodeDeviceParent::Computer => "computer".to_string(),
        }
    }

    /// Whether a sysfs directory name is a PCI function address, `DDDD:BB:SS.F`.
    pub fn is_pci_address(name: &str) -> bool {
        let b = name.as_bytes();
        let hex = |r: std::ops::Range<usize>| {
            b.get(r)
                .is_some_and(|s| s.iter().all(|c| c.is_ascii_hexdigit()))
        };
        b.len() == 12
            && hex(0..4)
            && b[4] == b':'
            && hex(5..7)
            && b[7] == b':'
            && hex(8..10)
            && b[10] == b'.'
            && (b'0'..=b'7').contains(&b[11])
    }
}

/// `<capability type='fc_host'>`: present only when both names are known, as
/// libvirt drops the capability when it cannot read them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FcHostCap {
    pub wwnn: Wwn,
    pub wwpn: Wwn,
    /// `None` when the port is on no fabric (the kernel shows `0x0`, e.g. FCoE VN2VN
    /// or point-to-point): libvirt would print `0`, which its own schema rejects.
    pub fabric_wwn: Option<Wwn>,
}

/// `<capability type='vport_ops'>`: an NPIV-capable port and its vport counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VportOps {
    pub max_vports: u32,
    pub vports: u32,
}

/// One `<device>` with the scsi_host capability.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScsiHostDevice {
    pub number: u32,
    /// The host's directory as the host sees it: `/sys/devices/.../hostN`.
    pub path: String,
    pub parent: NodeDeviceParent,
    pub unique_id: Option<u32>,
    pub fc: Option<FcHostCap>,
    pub vport_ops: Option<VportOps>,
}

impl ScsiHostDevice {
    /// From hbad's record of a host; `devpath` is relative to the sysfs root.
    pub fn from_host(host: &Host, devpath: &str, parent: NodeDeviceParent) -> Self {
        let fc = host.fc.as_ref();
        ScsiHostDevice {
            number: host.scsi.number,
            path: format!("/sys{devpath}"),
            parent,
            // The kernel prints an unsigned int; anything else libvirt would skip.
            unique_id: host.scsi.unique_id.as_deref().and_then(|u| u.parse().ok()),
            fc: fc.and_then(|f| {
                Some(FcHostCap {
                    wwnn: f.wwnn?,
                    wwpn: f.wwpn?,
                    fabric_wwn: f.fabric_name.filter(|w| w.as_u64() != 0),
                })
            }),
            vport_ops: fc.and_then(|f| f.npiv.as_ref()).and_then(|n| {
                Some(VportOps {
                    max_vports: n.max_vports?,
                    vports: n.vports_inuse?,
                })
            }),
        }
    }

    /// The libvirt node-device name: `scsi_hostN`.
    pub fn name(&self) -> String {
        format!("scsi_host{}", self.number)
    }

    pub fn to_xml(&self) -> String {
        let bare = |w: Wwn| w.format(WwnStyle::Bare);
        let mut x = String::new();
        // Writing to a String cannot fail.
        let _ = writeln!(x, "<device>");
        let _ = writeln!(x, "  <name>{}</name>", self.name());
        let _ = writeln!(x, "  <path>{}</path>", esc(&self.path));
        let _ = writeln!(x, "  <parent>{}</parent>", esc(&self.parent.name()));
        let _ = writeln!(x, "  <capability type='scsi_host'>");
        let _ = writeln!(x, "    <host>{}</host>", self.number);
        if let Some(u) = self.unique_id {
            let _ = writeln!(x, "    <unique_id>{u}</unique_id>");
        }
        if let Some(fc) = &self.fc {
            let _ = writeln!(x, "    <capability type='fc_host'>");
            let _ = writeln!(x, "      <wwnn>{}</wwnn>", bare(fc.wwnn));
            let _ = writeln!(x, "      <wwpn>{}</wwpn>", bare(fc.wwpn));
            if let Some(f) = fc.fabric_wwn {
                let _ = writeln!(x, "      <fabric_wwn>{}</fabric_wwn>", bare(f));
            }
            let _ = writeln!(x, "    </capability>");
        }
        if let Some(v) = &self.vport_ops {
            let _ = writeln!(x, "    <capability type='vport_ops'>");
            let _ = writeln!(x, "      <max_vports>{}</max_vports>", v.max_vports);
            let _ = writeln!(x, "      <vports>{}</vports>", v.vports);
            let _ = writeln!(x, "    </capability>");
        }
        let _ = writeln!(x, "  </capability>");
        let _ = writeln!(x, "</device>");
        x
    }
}

/// `<capability type='scsi_target'>`, with the FC remote port it sits behind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScsiTargetDevice {
    /// Kernel name, `target1:0:0`.
    pub target: String,
    pub path: String,
    pub host: u32,
    /// The remote port's kernel name and WWPN, for FC targets.
    pub remote_port: Option<(String, Wwn)>,
}

impl ScsiTargetDevice {
    /// `scsi_target1_0_0`.
    pub fn name(&self) -> String {
        udev_style(&format!("scsi_{}", self.target))
    }

    pub fn to_xml(&self) -> String {
        let mut x = String::new();
        let _ = writeln!(x, "<device>");
        let _ = writeln!(x, "  <name>{}</name>", esc(&self.name()));
        let _ = writeln!(x, "  <path>{}</path>", esc(&self.path));
        let _ = writeln!(x, "  <parent>scsi_host{}</parent>", self.host);
        let _ = writeln!(x, "  <capability type='scsi_target'>");
        let _ = writeln!(x, "    <target>{}</target>", esc(&self.target));
        if let Some((rport, wwpn)) = &self.remote_port {
            let _ = writeln!(x, "    <capability type='fc_remote_port'>");
            let _ = writeln!(x, "      <rport>{}</rport>", esc(rport));
            // Here libvirt copies sysfs's port_name as it is, 0x and all.
            let _ = writeln!(x, "      <wwpn>{wwpn}</wwpn>");
            let _ = writeln!(x, "    </capability>");
        }
        let _ = writeln!(x, "  </capability>");
        let _ = writeln!(x, "</device>");
        x
    }
}

/// libvirt's words for SCSI peripheral types (udevGetSCSIType); it prints no
/// `<type>` for the others.
pub fn libvirt_scsi_type(t: u8) -> Option<&'static str> {
    Some(match t {
        0x00 => "disk",
        0x01 => "tape",
        0x03 => "processor",
        0x04 => "worm",
        0x05 => "cdrom",
        0x06 => "scanner",
        0x07 => "mod",
        0x08 => "changer",
        0x0c => "raid",
        0x0d => "enclosure",
        _ => return None,
    })
}

/// `<capability type='scsi'>`: one LUN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScsiDevice {
    pub hctl: Hctl,
    pub path: String,
    /// The target's kernel name, `target1:0:0`.
    pub target: String,
    pub driver: Option<String>,
    pub scsi_type: Option<u8>,
}

impl ScsiDevice {
    /// `scsi_1_0_0_0`.
    pub fn name(&self) -> String {
        udev_style(&format!("scsi_{}", self.hctl))
    }

    pub fn to_xml(&self) -> String {
        let h = self.hctl;
        let mut x = String::new();
        let _ = writeln!(x, "<device>");
        let _ = writeln!(x, "  <name>{}</name>", self.name());
        let _ = writeln!(x, "  <path>{}</path>", esc(&self.path));
        let _ = writeln!(
            x,
            "  <parent>{}</parent>",
            NodeDeviceParent::ScsiTarget(self.target.clone()).name()
        );
        if let Some(d) = &self.driver {
            let _ = writeln!(x, "  <driver>\n    <name>{}</name>\n  </driver>", esc(d));
        }
        let _ = writeln!(x, "  <capability type='scsi'>");
        let _ = writeln!(x, "    <host>{}</host>", h.host);
        let _ = writeln!(x, "    <bus>{}</bus>", h.channel);
        let _ = writeln!(x, "    <target>{}</target>", h.target);
        let _ = writeln!(x, "    <lun>{}</lun>", h.lun);
        if let Some(t) = self.scsi_type.and_then(libvirt_scsi_type) {
            let _ = writeln!(x, "    <type>{t}</type>");
        }
        let _ = writeln!(x, "  </capability>");
        let _ = writeln!(x, "</device>");
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Host;
    use crate::sysfs::{FcHostInfo, Npiv, ScsiHostInfo, VportControlDir};

    fn wwn(s: &str) -> Wwn {
        Wwn::parse_any(s).unwrap()
    }

    fn fc_host(fabric: u64, npiv: Option<(u32, u32)>) -> Host {
        Host {
            scsi: ScsiHostInfo {
                number: 12,
                proc_name: Some("qla2xxx".into()),
                unique_id: Some("12".into()),
                state: Some("running".into()),
            },
            fc: Some(FcHostInfo {
                wwpn: Some(wwn("0x2001f4e9d4eb02c9")),
                wwnn: Some(wwn("0x2000f4e9d4eb02c9")),
                fabric_name: Some(Wwn::from_u64(fabric)),
                port_id: None,
                port_state: Some("Online".into()),
                port_type: None,
                speed: None,
                symbolic_name: None,
                npiv: npiv.map(|(max, used)| Npiv {
                    control_dir: VportControlDir::FcHost,
                    max_vports: Some(max),
                    vports_inuse: Some(used),
                }),
            }),
        }
    }

    #[test]
    fn npiv_fc_host_reads_as_libvirts_own_test_data() {
        // libvirt's tests/nodedevschemadata/hba_vport_ops.xml, byte for byte.
        let expected = "<device>
  <name>scsi_host12</name>
  <path>/sys/devices/pci0000:00/0000:00:03.2/0000:06:00.1/host12</path>
  <parent>pci_0000_06_00_1</parent>
  <capability type='scsi_host'>
    <host>12</host>
    <unique_id>12</unique_id>
    <capability type='fc_host'>
      <wwnn>2000f4e9d4eb02c9</wwnn>
      <wwpn>2001f4e9d4eb02c9</wwpn>
      <fabric_wwn>2001547feebe79c1</fabric_wwn>
    </capability>
    <capability type='vport_ops'>
      <max_vports>254</max_vports>
      <vports>0</vports>
    </capability>
  </capability>
</device>
";
        let dev = ScsiHostDevice::from_host(
            &fc_host(0x2001547feebe79c1, Some((254, 0))),
            "/devices/pci0000:00/0000:00:03.2/0000:06:00.1/host12",
            NodeDeviceParent::Pci("0000:06:00.1".into()),
        );
        assert_eq!(dev.to_xml(), expected);
    }

    #[test]
    fn no_fabric_and_no_npiv_leave_their_elements_out() {
        let dev = ScsiHostDevice::from_host(
            &fc_host(0, None),
            "/devices/x/host12",
            NodeDeviceParent::ScsiHost(3),
        );
        let x = dev.to_xml();
        assert!(x.contains("<parent>scsi_host3</parent>"), "{x}");
        assert!(x.contains("<wwpn>2001f4e9d4eb02c9</wwpn>"), "{x}");
        assert!(!x.contains("fabric_wwn"), "{x}");
        assert!(!x.contains("vport_ops"), "{x}");
    }

    #[test]
    fn a_plain_scsi_host_has_only_host_and_unique_id() {
        let mut host = fc_host(0, None);
        host.fc = None;
        host.scsi.unique_id = Some("not a number".into());
        let dev = ScsiHostDevice::from_host(
            &host,
            "/devices/pseudo_0/adapter0/host12",
            NodeDeviceParent::Computer,
        );
        assert_eq!(
            dev.to_xml(),
            "<device>\n  <name>scsi_host12</name>\n  <path>/sys/devices/pseudo_0/adapter0/host12</path>\n  <parent>computer</parent>\n  <capability type='scsi_host'>\n    <host>12</host>\n  </capability>\n</device>\n"
        );
    }

    #[test]
    fn parent_names_follow_libvirts_udev_naming() {
        assert_eq!(
            NodeDeviceParent::Net {
                interface: "vi".into(),
                mac: "02:00:00:00:00:0b".into()
            }
            .name(),
            "net_vi_02_00_00_00_00_0b"
        );
        assert_eq!(
            NodeDeviceParent::Pci("0000:08:00.0".into()).name(),
            "pci_0000_08_00_0"
        );
        assert!(NodeDeviceParent::is_pci_address("0000:08:00.0"));
        assert!(!NodeDeviceParent::is_pci_address("pci0000:00"));
        assert!(!NodeDeviceParent::is_pci_address("0000:08:00.8"));
        assert!(!NodeDeviceParent::is_pci_address("adapter0"));
    }

    #[test]
    fn fc_target_reads_as_libvirts_own_test_data() {
        // libvirt's tests/nodedevschemadata/scsi_target1_0_0.xml, but for the parent:
        // libvirt's file says scsi_host0, a host the target is not on.
        let t = ScsiTargetDevice {
            target: "target1:0:0".into(),
            path: "/sys/devices/css0/0.0.0000/0.0.0000/host1/rport-1:0-0/target1:0:0".into(),
            host: 1,
            remote_port: Some(("rport-1:0-0".into(), wwn("0x9d73bc45f0e21a86"))),
        };
        assert_eq!(
            t.to_xml(),
            "<device>
  <name>scsi_target1_0_0</name>
  <path>/sys/devices/css0/0.0.0000/0.0.0000/host1/rport-1:0-0/target1:0:0</path>
  <parent>scsi_host1</parent>
  <capability type='scsi_target'>
    <target>target1:0:0</target>
    <capability type='fc_remote_port'>
      <rport>rport-1:0-0</rport>
      <wwpn>0x9d73bc45f0e21a86</wwpn>
    </capability>
  </capability>
</device>
"
        );
    }

    #[test]
    fn lun_names_its_target_driver_and_type_as_libvirt_does() {
        let mut d = ScsiDevice {
            hctl: "1:0:0:27".parse().unwrap(),
            path: "/sys/devices/x/target1:0:0/1:0:0:27".into(),
            target: "target1:0:0".into(),
            driver: Some("sd".into()),
            scsi_type: Some(0),
        };
        assert_eq!(
            d.to_xml(),
            "<device>
  <name>scsi_1_0_0_27</name>
  <path>/sys/devices/x/target1:0:0/1:0:0:27</path>
  <parent>scsi_target1_0_0</parent>
  <driver>
    <name>sd</name>
  </driver>
  <capability type='scsi'>
    <host>1</host>
    <bus>0</bus>
    <target>0</target>
    <lun>27</lun>
    <type>disk</type>
  </capability>
</device>
"
        );
        d.driver = None;
        d.scsi_type = Some(0x1e);
        let x = d.to_xml();
        assert!(!x.contains("<driver>") && !x.contains("<type>"), "{x}");
        assert_eq!(libvirt_scsi_type(5), Some("cdrom"));
        assert_eq!(libvirt_scsi_type(0x0c), Some("raid"));
    }
}
