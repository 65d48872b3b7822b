//! The bounds of every value hbad computes with, checked where the value is read.
//!
//! The agent adds policy durations to `Instant`s, sleeps on them, and sizes its
//! tables by policy counts. A value accepted here must be safe there, so each bound
//! lives in one place, is used by the policy and by the command-line flags alike, and
//! is printed in the error that refuses a value beyond it.

use std::time::Duration;

/// The largest policy file read, and what the error says about it.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// Policy files read at once: the main file and the drop-ins.
pub const MAX_FILES: usize = 256;
/// All policy files together. Each file's text is held with its parsed tree (many
/// times the text) while the policy is merged, in `check`, at start and at every
/// reload: this bounds that memory whatever the number of drop-ins. 4 MiB holds the
/// largest number of vHBAs a policy may declare many times over.
pub const MAX_TOTAL_BYTES: u64 = 4 * 1024 * 1024;
/// Errors shown for one policy; the rest are counted ("... and N more").
pub const MAX_ERRORS: usize = 100;
/// vHBAs in one policy: far beyond what HBAs hold (a port offers at most a few
/// hundred vports), but bounded.
pub const MAX_VHBAS: usize = 65_536;
/// Entries in one include/exclude list.
pub const MAX_LIST: usize = 1024;
/// A `seed` is hashed, not stored per vHBA, but still read whole.
pub const MAX_SEED_BYTES: usize = 256;
/// A driver name as sysfs shows it in `proc_name`.
pub const MAX_DRIVER_BYTES: usize = 64;
/// PATH_MAX: longer paths cannot be opened.
pub const MAX_PATH_BYTES: usize = 4095;

/// A duration setting and the range hbad accepts for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DurationLimit {
    pub key: &'static str,
    pub min: Duration,
    pub max: Duration,
    /// What to write instead, when a value is out of range.
    pub hint: &'static str,
}

/// How long a vHBA waits at boot for its parent's link.
pub const LINK_WAIT: DurationLimit = DurationLimit {
    key: "link_wait",
    min: Duration::ZERO,
    max: Duration::from_secs(3600),
    hint:
        "a link that is not up after an hour is down; hbad still creates the vHBA when it comes up",
};

/// How often every taking-part host is scanned in full.
pub const PERIODIC: DurationLimit = DurationLimit {
    key: "periodic",
    min: Duration::from_secs(60),
    max: Duration::from_secs(7 * 24 * 3600),
    hint: "use between 1m and 7d, or \"off\"; events already trigger targeted scans",
};

/// How long events are gathered before one scan.
pub const DEBOUNCE: DurationLimit = DurationLimit {
    key: "debounce",
    min: Duration::ZERO,
    max: Duration::from_secs(5),
    hint: "keep it short: 100ms to 1s is usual, 5s at most",
};

/// After this a scan is reported hung.
pub const SCAN_TIMEOUT: DurationLimit = DurationLimit {
    key: "scan_timeout",
    // Not zero (every scan would be "hung" at once); short ones are for test benches.
    min: Duration::from_millis(10),
    max: Duration::from_secs(3600),
    hint: "e.g. scan_timeout = \"120s\"; a hung scan never blocks other hosts",
};

/// How long `hbad create`/`apply` wait for a new vHBA's host (command line only).
pub const VPORT_TIMEOUT: DurationLimit = DurationLimit {
    key: "vport-timeout",
    min: Duration::from_millis(10),
    max: Duration::from_secs(600),
    hint: "e.g. --vport-timeout 10s",
};

/// Every duration the policy holds, for documents and tests.
pub const POLICY_DURATIONS: &[DurationLimit] = &[LINK_WAIT, PERIODIC, DEBOUNCE, SCAN_TIMEOUT];

/// Why a duration was refused: the message and what to write instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub message: String,
    pub hint: String,
}

impl DurationLimit {
    /// Parses `text` as a duration ("250ms", "30s", "1h 30m") within this range.
    pub fn parse(&self, text: &str) -> Result<Duration, Refusal> {
        let key = self.key;
        // Shown as written, control characters escaped and cut short: the text goes
        // to a terminal.
        let shown = crate::terminal::echoed(text);
        let too_long = || Refusal {
            message: format!(
                "`{key}`: `{shown}` is more than {}, the most hbad accepts",
                humantime::format_duration(self.max)
            ),
            hint: self.hint.to_string(),
        };
        let d = match humantime::parse_duration(text.trim()) {
            Ok(d) if d > self.max => return Err(too_long()),
            Ok(d) => d,
            Err(humantime::DurationError::NumberOverflow) => return Err(too_long()),
            Err(_) => {
                return Err(Refusal {
                    message: format!("`{key}`: `{shown}` is not a duration"),
                    hint: "write a number with a unit: 250ms, 30s, 5m, 1h".to_string(),
                })
            }
        };
        if d < self.min {
            return Err(Refusal {
                message: format!(
                    "`{key}`: `{shown}` is less than {}, the least hbad accepts",
                    humantime::format_duration(self.min)
                ),
                hint: self.hint.to_string(),
            });
        }
        Ok(d)
    }
}

/// `--scan-timeout`: the policy's bounds, for clap.
pub fn parse_scan_timeout_flag(text: &str) -> Result<Duration, String> {
    flag(&SCAN_TIMEOUT, text)
}

/// `--vport-timeout`, for clap.
pub fn parse_vport_timeout_flag(text: &str) -> Result<Duration, String> {
    flag(&VPORT_TIMEOUT, text)
}

fn flag(limit: &DurationLimit, text: &str) -> Result<Duration, String> {
    limit
        .parse(text)
        .map_err(|r| format!("{} ({})", r.message, r.hint))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_duration_refuses_what_overflows_instant_arithmetic() {
        for limit in POLICY_DURATIONS.iter().chain([&VPORT_TIMEOUT]) {
            for huge in ["18446744073709551615s", "584942417355y", "1000000h"] {
                let err = limit.parse(huge).unwrap_err();
                assert!(
                    err.message
                        .contains(&humantime::format_duration(limit.max).to_string()),
                    "{}: {err:?}",
                    limit.key
                );
            }
            assert!(limit.parse("soon").is_err());
            assert_eq!(
                limit.parse(&humantime::format_duration(limit.max).to_string()),
                Ok(limit.max)
            );
        }
    }

    #[test]
    fn too_short_names_the_least_accepted() {
        let err = SCAN_TIMEOUT.parse("0s").unwrap_err();
        assert!(err.message.contains("less than 10ms"), "{err:?}");
        assert!(parse_vport_timeout_flag("0ms")
            .unwrap_err()
            .contains("10ms"));
        assert_eq!(parse_scan_timeout_flag("2m"), Ok(Duration::from_secs(120)));
    }
}
