//! The executor: applies a plan's steps to the kernel, safely.
//!
//! This is the only part of hbad with timing and concurrency. vport writes are
//! idempotent and confirmed; scans go to per-host workers ([`scan::Scanner`]).

pub mod apply;
pub mod errors;
pub mod scan;
pub mod vport;

pub use apply::{ApplyReport, Executor, StepOutcome, StepReport, Tally};
pub use errors::{explain, KernelRefusal, Op};
pub use scan::{ScanCounters, ScanOutcome, ScanReport, Scanner, Ticket};

/// Wall-clock times in reports, as RFC 3339.
pub(crate) mod serde_time {
    use std::time::SystemTime;

    pub fn serialize<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_rfc3339_millis(*t))
    }
}
