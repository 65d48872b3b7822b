//! Logging: structured records to the journal when it is there, plain stderr otherwise.
//! Neither ever makes the thread that logs (the agent's single-threaded event loop)
//! wait.
//!
//! Records that an administrator searches for carry a fixed `MESSAGE_ID`
//! (`journalctl MESSAGE_ID=...`), explained in `systemd/hbad.catalog`, and fields named
//! `HBAD_*` so that they collide with nothing journald or other programs set:
//! `journalctl HBAD_WWPN=0x5001a4a000000b01`. Field names are upper-cased, without a
//! prefix (`hbad_wwpn` is `HBAD_WWPN`), as tracing-journald wrote them before hbad sent
//! its own records.
//!
//! - The journal ([`native`]): each record is one non-blocking datagram in journald's
//!   native protocol (a sealed memfd when it is larger than a datagram), bounded to
//!   1 MiB while it is built. When journald does not take it at once (stalled, its
//!   queue full: EAGAIN), the record is dropped and counted, and the next record that
//!   gets through is preceded by a warning, `n log records dropped: journald did not
//!   take them`, with `HBAD_LOG_DROPPED=n`.
//! - stderr ([`stderr`]): records are formatted where they are logged and queued (1024
//!   records, 4 MiB) for a writer thread; when the queue is full they are dropped and
//!   counted, and the writer says `hbad: n log records dropped: stderr did not take
//!   them` where they were lost. At exit [`flush`] gives the writer a bounded time.

mod native;
mod stderr;

use std::fmt;
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use native::JournalLayer;
use stderr::{Queue, QueueWriter};

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
/// `prefer_journal`, records go to journald when its socket answers an empty datagram;
/// without an answer (no socket, nobody listening: a container, a test) stderr takes
/// over.
pub fn init(prefer_journal: bool) -> Sink {
    let filter = EnvFilter::try_from_env("HBAD_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    if prefer_journal {
        if let Ok(layer) = JournalLayer::open(Path::new(native::SOCKET), "hbad") {
            if tracing_subscriber::registry()
                .with(filter)
                .with(layer.clone())
                .try_init()
                .is_ok()
            {
                let _ = INSTALLED.set(Installed::Journal(layer));
                return Sink::Journal;
            }
            return Sink::Stderr;
        }
    }
    let ansi = crate::cli::ansi_for(&std::io::stderr());
    let queue = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .and_then(|fd| Queue::start(fd.into(), stderr::LIMITS));
    let installed = match queue {
        Ok(queue) => tracing_subscriber::registry()
            .with(filter)
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(QueueWriter(queue.clone()))
                    .with_ansi(ansi)
                    .with_target(false),
            )
            .try_init()
            .is_ok()
            .then_some(Installed::Stderr(queue)),
        // No thread for the writer (the process is out of them): stderr written where
        // the record is logged, which can block, rather than no records at all.
        Err(_) => {
            let _ = tracing_subscriber::registry()
                .with(filter)
                .with(
                    tracing_subscriber::fmt::layer()
                        .with_writer(std::io::stderr)
                        .with_ansi(ansi)
                        .with_target(false),
                )
                .try_init();
            None
        }
    };
    if let Some(installed) = installed {
        if INSTALLED.set(installed).is_ok() {
            flush_before_panic_message();
        }
    }
    Sink::Stderr
}

/// Where the warnings of a command that set up no logging go (`hbad apply`,
/// `hbad plan`: [`init`] is the agent's): one `warning: ...` line each on stderr,
/// as the commands print theirs, through tracing all the same, so that a
/// subscriber in force (the agent's, a test's) takes them instead.
pub(crate) fn command_line() -> &'static tracing::Dispatch {
    static LINES: OnceLock<tracing::Dispatch> = OnceLock::new();
    LINES.get_or_init(|| {
        tracing::Dispatch::new(
            tracing_subscriber::fmt()
                .event_format(CommandLine)
                .with_writer(std::io::stderr)
                .finish(),
        )
    })
}

/// `warning: <message>` (`error:` for errors), the message's other fields left
/// out: the lines a command's user reads ([`command_line`]).
struct CommandLine;

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for CommandLine
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut w: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> fmt::Result {
        struct Message<'a, 'w>(
            &'a mut tracing_subscriber::fmt::format::Writer<'w>,
            fmt::Result,
        );
        impl tracing::field::Visit for Message<'_, '_> {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
                if field.name() == "message" {
                    self.1 = write!(self.0, "{value:?}");
                }
            }
        }
        let label = if *event.metadata().level() == tracing::Level::ERROR {
            "error"
        } else {
            "warning"
        };
        write!(w, "{label}: ")?;
        let mut message = Message(&mut w, Ok(()));
        event.record(&mut message);
        message.1?;
        writeln!(w)
    }
}

/// A panic prints its message on stderr straight away: the records still queued,
/// the ones that tell how it came to that, are written first (within the exit
/// deadline), not lost or printed after it.
fn flush_before_panic_message() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if let Some(Installed::Stderr(queue)) = INSTALLED.get() {
            queue.flush_in_panic(FLUSH_DEADLINE);
        }
        previous(info);
    }));
}

/// What [`init`] installed, for [`flush`].
#[derive(Debug)]
enum Installed {
    Journal(JournalLayer),
    Stderr(std::sync::Arc<Queue>),
}

static INSTALLED: OnceLock<Installed> = OnceLock::new();

/// Log records dropped since [`init`] because journald or stderr did not take them
/// (each also said in the log once one gets through): for the agent's status and
/// metrics. 0 when records are written where they are logged.
pub fn records_dropped() -> u64 {
    match INSTALLED.get() {
        None => 0,
        Some(Installed::Journal(layer)) => layer.dropped_total(),
        Some(Installed::Stderr(queue)) => queue.dropped_total(),
    }
}

/// How long hbad waits at exit for its last records to be written.
pub const FLUSH_DEADLINE: Duration = Duration::from_secs(1);

/// At exit: writes out the records still queued for stderr, or reports to journald the
/// records it dropped and no later record reported, waiting at most `deadline`. True
/// when nothing was left behind.
pub fn flush(deadline: Duration) -> bool {
    match INSTALLED.get() {
        None => true,
        Some(Installed::Journal(layer)) => layer.report_dropped(),
        Some(Installed::Stderr(queue)) => queue.flush(deadline),
    }
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
