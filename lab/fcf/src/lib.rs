//! A small FCoE Forwarder for hbad's real-kernel lab: the FC switch between the
//! guest's FCoE ports, so that NPIV vports log in to a fabric (see main.rs).
//!
//! The codecs (wire, fip, els, ct) follow the kernel's header layouts and are tested
//! against them byte for byte; fabric is the pure state machine; control parses the
//! requests a scenario sends. fc_event forges FC transport events (netlink), which
//! the vm tier sends to check that hbad believes only the kernel's.

pub mod control;
pub mod ct;
pub mod els;
pub mod fabric;
pub mod fc_event;
pub mod fip;
pub mod wire;
