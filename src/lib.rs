//! hbad: a host agent that keeps NPIV vHBAs and rescans exactly the SCSI host and
//! target that reported new storage, driven by kernel events.
//!
//! The crate is layered the way data flows: [`uevent`] sources feed the [`graph`],
//! which is read from and kept current against [`sysfs`].

pub mod claim;
pub mod cli;
pub mod daemon;
pub mod exec;
pub mod files;
pub mod graph;
pub mod holders;
pub mod journal;
pub mod libvirt;
pub mod listing;
pub mod metrics;
pub mod ownership;
pub mod plan;
pub mod policy;
pub mod report_luns;
pub mod sim;
pub mod sysfs;
pub mod terminal;
pub mod uevent;
pub mod wwn;
