//! The executor: applies a plan's steps to the kernel, safely.
//!
//! This is the only part of hbad with timing and concurrency. vport writes are
//! idempotent and confirmed; every write runs on the per-host worker of the host
//! it goes to ([`scan::Scanner`]), never on the thread that asked for it.

pub mod apply;
pub mod errors;
pub mod gone;
pub mod multipath;
pub mod scan;
pub mod uninterrupted;
pub mod vport;

pub use apply::{ApplyReport, Executor, StepOutcome, StepReport, Tally};
pub use errors::{explain, KernelRefusal, Op};
pub use scan::{Running, ScanCounters, ScanOutcome, ScanReport, Scanner, Ticket};

use std::time::{Duration, Instant};

/// What the executor's workers send back: a scan's end (or its merged requests'),
/// or any other step's.
#[derive(Clone, Debug)]
pub enum Report {
    Scan(ScanReport),
    Step(StepReport),
}

/// `now + d`, never panicking: a duration too long for the clock (a timeout of
/// years, given on the command line) means "not in this agent's lifetime".
pub fn later(now: Instant, d: Duration) -> Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    now.checked_add(d)
        .or_else(|| now.checked_add(CENTURY))
        .unwrap_or(now)
}

/// Wall-clock times in reports, as RFC 3339.
pub(crate) mod serde_time {
    use std::time::SystemTime;

    pub fn serialize<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_rfc3339_millis(*t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_never_overflows_the_clock() {
        let now = Instant::now();
        assert_eq!(
            later(now, Duration::from_secs(5)),
            now + Duration::from_secs(5)
        );
        let far = later(now, Duration::MAX);
        assert!(far > now + Duration::from_secs(3600 * 24 * 365));
    }
}
