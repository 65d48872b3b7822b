//! The daemon's plumbing: systemd notification and the status file. The event loop
//! that uses them (`hbad run`) builds on the sources, graph, planner and executor.

pub mod notify;
pub mod status;
