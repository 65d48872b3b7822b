//! libvirt interop: the XML libvirt users already have and read, built from and
//! turned into hbad's own model. Pure: nothing here reads sysfs or files; the CLI
//! (`src/cli/libvirt.rs`) gathers the inputs and prints the outputs.
//!
//! - [`nodedev`]: SCSI hosts, targets and LUNs as `virsh nodedev-dumpxml` shows them
//!   (nodedev.rng).
//! - [`disk`]: `<disk type='block'>` snippets for a domain, naming a LUN by its most
//!   stable `/dev` link.
//! - [`pool`]: `<pool type='scsi'>` definitions with an `fc_host` adapter, turned into
//!   `[[vhba]]` policy tables.

pub mod disk;
pub mod nodedev;
pub mod pool;
mod xml;

pub use disk::{guest_disk_name, stable_source, DiskDevice, DiskSnippet};
pub use nodedev::{
    FcHostCap, NodeDeviceParent, ScsiDevice, ScsiHostDevice, ScsiTargetDevice, VportOps,
};
pub use pool::{import_pools, Import, ImportError, ImportParent, PoolSource, VhbaTable};
