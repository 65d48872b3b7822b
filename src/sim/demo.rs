//! A ready-made host for `hbad demo`: two NPIV-capable FC ports on two fabrics, one
//! array with a port on each, and a local RAID controller with the boot disk.

use std::path::Path;

use super::spec::{FabricSpec, HbaSpec, LunSpec, SimSpec, TargetPortSpec};
use super::{Sim, SimError};
use crate::wwn::Wwn;

pub const FABRIC_A: &str = "fabric-a";
pub const FABRIC_B: &str = "fabric-b";
/// Switch WWNs, what `fabric_name` shows on ports logged in there.
pub const FABRIC_A_WWN: Wwn = Wwn::from_u64(0x1000_0005_1e00_0a00);
pub const FABRIC_B_WWN: Wwn = Wwn::from_u64(0x1000_0005_1e00_0b00);
/// The two ports of a dual-port qla2xxx HBA.
pub const HBA_A_WWPN: Wwn = Wwn::from_u64(0x2100_0024_ff00_0a01);
pub const HBA_A_WWNN: Wwn = Wwn::from_u64(0x2000_0024_ff00_0a01);
pub const HBA_B_WWPN: Wwn = Wwn::from_u64(0x2100_0024_ff00_0b01);
pub const HBA_B_WWNN: Wwn = Wwn::from_u64(0x2000_0024_ff00_0b01);
pub const HBA_A_PCI: &str = "0000:3b:00.0";
pub const HBA_B_PCI: &str = "0000:3b:00.1";
pub const RAID_PCI: &str = "0000:18:00.0";
/// The array's target ports, one per fabric, one node.
pub const ARRAY_WWNN: Wwn = Wwn::from_u64(0x5000_1440_0000_0100);
pub const ARRAY_PORT_A: Wwn = Wwn::from_u64(0x5000_1440_0000_0101);
pub const ARRAY_PORT_B: Wwn = Wwn::from_u64(0x5000_1440_0000_0102);

/// The demo's machine description. The array's LUN 0 (a shared datastore) is
/// masked to both physical ports; LUNs 1 and 2 exist but are masked to nobody,
/// for the demo to map to the vHBAs it creates.
pub fn spec() -> SimSpec {
    let datastore = LunSpec::new(0, 512 << 30, "ARRAY0000")
        .masked_to(HBA_A_WWPN)
        .masked_to(HBA_B_WWPN);
    let vm1 = LunSpec::new(1, 100 << 30, "ARRAY0001");
    let vm2 = LunSpec::new(2, 200 << 30, "ARRAY0002");
    let port = |fabric, wwpn, port_id| {
        TargetPortSpec::new(fabric, wwpn, ARRAY_WWNN, port_id)
            .lun(datastore.clone())
            .lun(vm1.clone())
            .lun(vm2.clone())
    };
    let boot = LunSpec::new(0, 480 << 30, "SV00000001").vendor_model("AVAGO", "MR9361-8i");
    SimSpec::new()
        .fabric(FabricSpec::new(FABRIC_A, FABRIC_A_WWN))
        .fabric(FabricSpec::new(FABRIC_B, FABRIC_B_WWN))
        .target(port(FABRIC_A, ARRAY_PORT_A, 0x01_0100))
        .target(port(FABRIC_B, ARRAY_PORT_B, 0x02_0100))
        .hba(HbaSpec::raid("megaraid_sas", RAID_PCI, vec![boot]))
        .hba(HbaSpec::fc("qla2xxx", HBA_A_PCI, HBA_A_WWPN, HBA_A_WWNN, FABRIC_A).speed("32 Gbit"))
        .hba(HbaSpec::fc("qla2xxx", HBA_B_PCI, HBA_B_WWPN, HBA_B_WWNN, FABRIC_B).speed("32 Gbit"))
}

impl Sim {
    /// The demo host, built under `dir`.
    pub fn demo_host(dir: &Path) -> Result<Sim, SimError> {
        Sim::new(dir, &spec())
    }
}
