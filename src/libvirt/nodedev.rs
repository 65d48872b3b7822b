//! A SCSI host as libvirt's node-device driver describes it (`virsh nodedev-dumpxml
//! scsi_hostN`), so tools that parse libvirt's XML can read hbad's view too.
//!
//! The element order is nodedev.rng's, which is strict: `name`, `path`, `parent`,
//! then `<capability type='scsi_host'>` holding `host`, `unique_id`, and the nested
//! `fc_host` and `vport_ops` capabilities. WWNs are bare hex, as libvirt prints them.

use std::fmt::Write as _;

use super::xml::esc;
use crate::graph::Host;
use crate::wwn::{Wwn, WwnStyle};

/// The nearest ancestor libvirt knows as a node device: libvirt walks up sysfs from
/// the host and takes the first device it has a name for, else `computer`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeDeviceParent {
    /// A vHBA's parent is the host whose vport made it (the vport itself is no node
    /// device to libvirt).
    ScsiHost(u32),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Host;
    use crate::sysfs::{FcHostInfo, Npiv, ScsiHostInfo, VportControlDir};

    fn wwn(s: &str) -> Wwn {
        s.parse().unwrap()
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
}
