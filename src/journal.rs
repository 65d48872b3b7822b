//! Logging: structured records to the journal when it is there, plain stderr otherwise.
//!
//! Records that an administrator searches for carry a fixed `MESSAGE_ID`
//! (`journalctl MESSAGE_ID=...`), explained in `systemd/hbad.catalog`, and fields named
//! `HBAD_*` so that they collide with nothing journald or other programs set:
//! `journalctl HBAD_WWPN=0x5001a4a000000b01`. tracing-journald upper-cases field names;
//! its default `F_` prefix is turned off so the names are the documented ones.

use std::fmt;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Events with a fixed journal `MESSAGE_ID`. The IDs never change once released: they are
/// what alerting rules and `journalctl MESSAGE_ID=` queries match on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MessageId {
    VhbaCreated,
    VhbaCreateFailed,
    VhbaRecreated,
    NewLuns,
    ScanHung,
    EventsLostResynced,
    PolicyRejected,
    VhbaLoginChanged,
    LunGone,
}

impl MessageId {
    pub const ALL: [MessageId; 9] = [
        MessageId::VhbaCreated,
        MessageId::VhbaCreateFailed,
        MessageId::VhbaRecreated,
        MessageId::NewLuns,
        MessageId::ScanHung,
        MessageId::EventsLostResynced,
        MessageId::PolicyRejected,
        MessageId::VhbaLoginChanged,
        MessageId::LunGone,
    ];

    /// The 128-bit ID as journald spells it: 32 lower-case hex digits.
    pub const fn id(self) -> &'static str {
        match self {
            MessageId::VhbaCreated => "7c52e911e0574c0d84d40dbe28a14100",
            MessageId::VhbaCreateFailed => "ef111ce3151541e9b70c300945904c18",
            MessageId::VhbaRecreated => "a16adc189dbb4e8b80dd9f7ce159d636",
            MessageId::NewLuns => "f83970336efe42dc9e4a3117c3663455",
            MessageId::ScanHung => "6c410aa8ee1f42809a4323b84f94dc48",
            MessageId::EventsLostResynced => "e9328a5b44cf48478c3e25ffaedb0f52",
            MessageId::PolicyRejected => "c0e2ab7f22644534aedf7fec2a985380",
            MessageId::VhbaLoginChanged => "3b8f0d7a5c1e4f2a9d6b7e0c41a5f862",
            MessageId::LunGone => "d2c9836f343d4243af61c105205eeab2",
        }
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// Where records went: the daemon says so once at start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sink {
    Journal,
    Stderr,
}

/// Installs the global subscriber. The level comes from `HBAD_LOG` (tracing's
/// env-filter syntax, e.g. `debug` or `hbad=debug`), `info` when unset. With
/// `prefer_journal`, records go to journald when its socket answers; tracing-journald
/// refuses to build when it does not, and stderr takes over (a container, a test).
pub fn init(prefer_journal: bool) -> Sink {
    let filter = EnvFilter::try_from_env("HBAD_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    if prefer_journal {
        if let Ok(layer) = tracing_journald::layer() {
            let layer = layer
                .with_field_prefix(None)
                .with_syslog_identifier("hbad".to_string());
            if tracing_subscriber::registry()
                .with(filter)
                .with(layer)
                .try_init()
                .is_ok()
            {
                return Sink::Journal;
            }
            return Sink::Stderr;
        }
    }
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(crate::cli::ansi_for(&std::io::stderr()))
                .with_target(false),
        )
        .try_init();
    Sink::Stderr
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    const CATALOG: &str = include_str!("../systemd/hbad.catalog");

    #[test]
    fn message_ids_are_distinct_well_formed_and_in_the_catalog() {
        let ids: HashSet<&str> = MessageId::ALL.iter().map(|m| m.id()).collect();
        assert_eq!(ids.len(), MessageId::ALL.len());
        for id in &ids {
            assert_eq!(id.len(), 32);
            assert!(id
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
            assert!(
                CATALOG.contains(&format!("-- {id}\n")),
                "{id} has no entry in systemd/hbad.catalog"
            );
        }
        // And the catalog explains nothing hbad does not send.
        for line in CATALOG.lines().filter(|l| l.starts_with("-- ")) {
            assert!(ids.contains(&line[3..]), "catalog entry {line} is unknown");
        }
    }
}
