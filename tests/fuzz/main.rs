//! Fuzzing on the stable toolchain: every parser that reads what hbad does not
//! control (policy files with drop-ins, kernel and udev uevents, sysfs attributes,
//! libvirt pool XML, WWNs, and what `hbad udev-id` prints from sysfs) gets inputs
//! made from nothing and inputs made by mutating real ones, and must never panic,
//! hang or accept what it should refuse.
//!
//! `cargo test --test fuzz` (part of `make test`) runs a short, fixed-seed pass of
//! every target: a few hundred cases each, seconds in all. `make fuzz` runs each
//! target for longer with fresh seeds (`HBAD_FUZZ_SECONDS`, see `harness`). A
//! failure prints the smallest input proptest could shrink it to and the seed.
//!
//! Inputs are bounded (a few KiB to 64 KiB), so "never hangs" means "each input
//! finishes in well under the harness's watchdog limit", not "finishes eventually".

#[path = "../common/mod.rs"]
mod common;
mod harness;

mod libvirt;
mod policy;
mod sysfs;
mod udev_id;
mod uevent;
mod wwn;
