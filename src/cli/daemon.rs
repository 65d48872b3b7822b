//! `run` (the agent) and `status` (what the running agent reports).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, ValueEnum};
use tokio::sync::mpsc;

use super::policy::load_policy;
use super::render::render_table;
use super::Global;
use crate::daemon::health::{assess, read_process, Level, Verdict};
use crate::daemon::run::run_with_kernel;
use crate::daemon::status::{Status, DEFAULT_PATH};
use crate::daemon::{Agent, AgentConfig, Control, LoopTimings};
use crate::journal;
use crate::policy::limits::DurationLimit;
use crate::sysfs::writes::ChildWriter;
use crate::terminal::printable;
use crate::uevent::fc_event::{
    FcEventSource, FcItem, DEFAULT_FC_RECV_BUFFER, SCSI_NL_GRP_FC_EVENTS,
};
use crate::uevent::kernel::{AsyncKernelSource, KernelOptions};
use crate::uevent::source::EventSource;
use crate::uevent::udev::{UdevOptions, UdevSource};
use crate::uevent::SourceItem;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum UdevMode {
    /// When udevd runs (its control socket exists).
    Auto,
    On,
    Off,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Where to keep the status file that `hbad status` reads. It is replaced whole
    /// (a temporary renamed over it), so the path must hold a regular file or
    /// nothing: a device, FIFO, directory or symbolic link there stops start-up.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_PATH)]
    pub status_file: PathBuf,
    /// Log to stderr even when the journal is there.
    #[arg(long)]
    pub no_journal: bool,
    /// Also listen to udev, for the /dev/disk/by-* links of new disks. Kernel events
    /// drive every decision either way; udev only adds the links it made.
    #[arg(long, value_enum, default_value_t = UdevMode::Auto)]
    pub udev: UdevMode,
    /// The node_exporter textfile to keep (default: hbad.prom in
    /// /var/lib/prometheus/node-exporter when that directory exists). Replaced
    /// whole, so it must be a regular file or absent, as --status-file.
    #[arg(long, value_name = "FILE", conflicts_with = "no_metrics")]
    pub metrics: Option<PathBuf>,
    /// Write no metrics textfile.
    #[arg(long)]
    pub no_metrics: bool,
    /// Receive buffer of the event sockets, in bytes (forced past rmem_max as root):
    /// 4096 (4 KiB) to 536870912 (512 MiB).
    #[arg(long, value_name = "BYTES", default_value_t = KernelOptions::default().recv_buffer,
          value_parser = parse_recv_buffer)]
    pub recv_buffer: usize,
}

/// The receive buffers `--recv-buffer` may ask for. A small one overflows at the
/// first burst, which is how overflow recovery is tested (4 KiB, a page, is the
/// least); the kernel doubles the value in an int, and a buffer past 512 MiB is
/// kernel memory taken from the guests for nothing.
pub const RECV_BUFFER_RANGE: std::ops::RangeInclusive<usize> = (4 << 10)..=(512 << 20);

/// `--recv-buffer`, for clap: refused out of range with the range, never clamped.
pub fn parse_recv_buffer(text: &str) -> Result<usize, String> {
    let (min, max) = (*RECV_BUFFER_RANGE.start(), *RECV_BUFFER_RANGE.end());
    let range = format!("{min} (4 KiB) to {max} (512 MiB) bytes");
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "`{}` is not a number of bytes; give {range}",
            crate::terminal::echoed(text)
        ));
    }
    match text.parse::<usize>() {
        Ok(n) if RECV_BUFFER_RANGE.contains(&n) => Ok(n),
        _ => Err(format!("`{text}` is out of range; give {range}")),
    }
}

pub fn run(g: &Global, args: RunArgs) -> anyhow::Result<ExitCode> {
    let sink = journal::init(!args.no_journal);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(serve(g, args, sink));
    drop(runtime);
    // The last records ("stopped", the error that ended the agent) are queued for a
    // writer thread: written out before main's own error line, within a bound.
    journal::flush(journal::FLUSH_DEADLINE);
    result
}

async fn serve(g: &Global, args: RunArgs, sink: journal::Sink) -> anyhow::Result<ExitCode> {
    check_sysfs(&g.sysfs_root)?;
    // The files the agent replaces whole: a device or FIFO there (`--status-file
    // /dev/null` meant as "none") would be renamed over, so it is refused now.
    let metrics = (!args.no_metrics)
        .then(|| args.metrics.clone().or_else(crate::metrics::default_path))
        .flatten();
    for (path, flag) in [
        (Some(&args.status_file), "--status-file"),
        (metrics.as_ref(), "--metrics"),
    ] {
        if let Some(why) = path.and_then(|p| crate::files::replaceable(p).err()) {
            anyhow::bail!("{flag}: {why}; hbad did not start");
        }
    }
    // Sources first, then the cold plug: whatever happens while sysfs is read is
    // already queued on the sockets.
    let kernel = AsyncKernelSource::open(&KernelOptions {
        recv_buffer: args.recv_buffer,
    })
    .context("cannot open the kernel uevent socket (hbad run needs root)")?;
    tracing::info!(
        "kernel uevents: receive buffer {} bytes",
        kernel.recv_buffer().effective
    );
    let udev_wanted = match args.udev {
        UdevMode::On => true,
        UdevMode::Off => false,
        UdevMode::Auto => std::path::Path::new("/run/udev/control").exists(),
    };
    // The kernel's socket is read by the loop itself (in place, nothing copied per
    // event); the other sources reach it through a channel.
    let mut sources = Vec::new();
    let mut _udev_handle = None;
    if udev_wanted {
        // Only block devices: udev adds their stable links; everything else comes
        // from the kernel socket, checked to be the kernel's.
        let opts = UdevOptions {
            subsystems: vec!["block".into()],
            recv_buffer: args.recv_buffer,
            ..UdevOptions::default()
        };
        match UdevSource::spawn(opts) {
            Ok((handle, events)) => {
                _udev_handle = Some(handle);
                sources.push(EventSource::Udev(events));
            }
            Err(e) if args.udev == UdevMode::On => {
                return Err(e).context("cannot listen to udev");
            }
            Err(e) => tracing::warn!("udev events unavailable, disk links come from /dev: {e}"),
        }
    }

    let fc_events = open_fc_events();

    let policy = load_policy(g).context("the policy has errors; hbad did not start")?;
    let (events_tx, events_rx) = mpsc::channel::<SourceItem>(65536);
    for mut source in sources {
        let tx = events_tx.clone();
        tokio::spawn(async move {
            while let Some(item) = source.next().await {
                match item {
                    Ok(item) => {
                        if tx.send(item).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::error!("event source failed: {e}");
                        return;
                    }
                }
            }
        });
    }
    drop(events_tx);

    let config = AgentConfig {
        sysfs: g.sysfs(),
        status_path: Some(args.status_file.clone()),
    };
    // Every write in its own process: one the kernel holds (a scan of a dead
    // target) keeps that child, never the agent, from exiting.
    let writer = ChildWriter::new(&g.sysfs_root).context("cannot find the hbad executable")?;
    let mut agent = Agent::new(config, Arc::new(writer), policy, std::time::Instant::now());
    crate::daemon::heap::after_cold_plug();
    if metrics.is_some() {
        agent.set_metrics_path(metrics);
    }
    if let Some(rx) = fc_events {
        agent.attach_fc_events(rx);
    }
    tracing::info!(
        "hbad {} started: {} devices, {} vHBAs declared, logging to {:?}",
        env!("CARGO_PKG_VERSION"),
        agent.graph().len(),
        agent.policy().vhbas.len(),
        sink
    );

    let (control_tx, control_rx) = mpsc::channel(8);
    spawn_signals(control_tx)?;

    let loader = g.policy_loader();
    run_with_kernel(
        agent,
        kernel,
        events_rx,
        control_rx,
        move || loader.load(),
        LoopTimings::default(),
    )
    .await;
    Ok(ExitCode::SUCCESS)
}

/// FC transport events (link up/down, RSCN, LIP, FPIN) on a thread of their own,
/// or `None` when the kernel has no SCSI netlink: then polling alone sees link
/// changes, as it does for drivers that post nothing.
fn open_fc_events() -> Option<mpsc::Receiver<FcItem>> {
    let mut source = match FcEventSource::open(DEFAULT_FC_RECV_BUFFER) {
        Ok(s) => s,
        Err(e) => {
            tracing::info!("FC transport events unavailable, link changes are polled: {e}");
            return None;
        }
    };
    tracing::info!(
        "listening to FC transport events (NETLINK_SCSITRANSPORT group {SCSI_NL_GRP_FC_EVENTS})"
    );
    let (tx, rx) = mpsc::channel(1024);
    let spawned = std::thread::Builder::new()
        .name("fc-events".into())
        .spawn(move || loop {
            match source.recv() {
                Ok(item) => {
                    if tx.blocking_send(item).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::error!(
                        "FC transport event socket failed, link changes are polled: {e}"
                    );
                    return;
                }
            }
        });
    match spawned {
        Ok(_) => Some(rx),
        Err(e) => {
            tracing::warn!("cannot start the FC event reader, link changes are polled: {e}");
            None
        }
    }
}

/// A sysfs root that is not one (a typo in --sysfs-root, sysfs not mounted) would
/// give an agent that reports ready while watching nothing.
fn check_sysfs(root: &std::path::Path) -> anyhow::Result<()> {
    let class = root.join("class");
    match std::fs::read_dir(&class) {
        Ok(_) => Ok(()),
        Err(e) => anyhow::bail!(
            "{} is not a sysfs tree ({}: {e}); mount sysfs there or give the right --sysfs-root",
            root.display(),
            class.display()
        ),
    }
}

/// SIGHUP reloads (systemd's ExecReload is `kill -HUP`), SIGTERM and SIGINT stop.
fn spawn_signals(tx: mpsc::Sender<Control>) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    tokio::spawn(async move {
        loop {
            let c = tokio::select! {
                _ = hup.recv() => Control::Reload,
                _ = term.recv() => Control::Stop,
                _ = int.recv() => Control::Stop,
            };
            if tx.send(c).await.is_err() || c == Control::Stop {
                return;
            }
        }
    });
    Ok(())
}

#[derive(Debug, Args)]
#[command(
    after_help = "Exit status: 0 running and healthy; 1 running but degraded (a \
declared vHBA missing, a host hung, a parent link down: each named); 3 not running, or \
the status file is stale (its pid is gone or is not the agent that wrote it)."
)]
pub struct StatusArgs {
    /// The status file the agent writes: a regular file of at most 4 MiB (a FIFO or a
    /// device is refused, not waited on).
    #[arg(long, value_name = "FILE", default_value = DEFAULT_PATH)]
    pub status_file: PathBuf,
    /// Also call the status stale when it was last updated longer ago than this: a
    /// live agent rewrites it at least every 30 s, so from 1min.
    #[arg(long, value_name = "DURATION", value_parser = parse_max_age)]
    pub max_age: Option<std::time::Duration>,
    /// Where procfs is mounted (a fixture tree in tests).
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/proc",
        env = "HBAD_PROC_ROOT",
        hide = true
    )]
    pub proc_root: PathBuf,
}

/// `--max-age`: from twice the status heartbeat (an idle agent rewrites its status
/// only that often) to a week.
const MAX_AGE: DurationLimit = DurationLimit {
    key: "max-age",
    min: crate::daemon::wake::HEARTBEAT.saturating_mul(2),
    max: std::time::Duration::from_secs(7 * 24 * 3600),
    hint: "e.g. --max-age 10min",
};

fn parse_max_age(text: &str) -> Result<std::time::Duration, String> {
    MAX_AGE
        .parse(text)
        .map_err(|r| format!("{} ({})", r.message, r.hint))
}

/// `hbad status`: the agent's report and a verdict on it, as the exit status.
pub fn status(g: &Global, args: StatusArgs) -> anyhow::Result<ExitCode> {
    let status = match Status::read(&args.status_file) {
        Ok(s) => s,
        Err(e) => {
            // No status (or not one) means no agent to ask: LSB's "not running".
            let why = if e.kind() == std::io::ErrorKind::NotFound {
                format!(
                    "hbad is not running: no status file {} (`systemctl status hbad`)",
                    args.status_file.display()
                )
            } else {
                format!("hbad is not running, or its status cannot be read: {e}")
            };
            let verdict = Verdict {
                health: Level::NotRunning,
                problems: vec![why],
            };
            return report_status(g, None, &verdict);
        }
    };
    let process = read_process(&args.proc_root, status.pid)
        .with_context(|| format!("cannot read {}", args.proc_root.display()))?;
    let verdict = assess(
        &status,
        process.as_ref(),
        std::time::SystemTime::now(),
        args.max_age,
    );
    report_status(g, Some(&status), &verdict)
}

fn report_status(
    g: &Global,
    status: Option<&Status>,
    verdict: &Verdict,
) -> anyhow::Result<ExitCode> {
    if g.json {
        #[derive(serde::Serialize)]
        struct Report<'a> {
            #[serde(flatten)]
            verdict: &'a Verdict,
            #[serde(flatten)]
            status: Option<&'a Status>,
        }
        println!(
            "{}",
            serde_json::to_string_pretty(&Report { verdict, status })?
        );
    } else {
        if let Some(s) = status {
            print!("{}", render_status(s));
        }
        let word = match verdict.health {
            Level::Healthy => "healthy",
            Level::Degraded => "degraded",
            Level::NotRunning => "not running",
        };
        println!("\nhealth: {word}");
        for p in &verdict.problems {
            println!("  {}", printable(p));
        }
    }
    Ok(ExitCode::from(verdict.health.exit_code()))
}

/// The status for people: vHBAs, then hosts with their last scan, then counters.
pub fn render_status(s: &Status) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "hbad pid {}, up since {}, updated {}\n",
        s.pid,
        printable(&s.started),
        printable(&s.updated)
    ));
    if !s.policy_files.is_empty() {
        out.push_str(&format!(
            "policy: {}\n",
            printable(&s.policy_files.join(", "))
        ));
    }
    if s.degraded {
        out.push_str("DEGRADED: not every declared vHBA is there; the agent keeps trying\n");
    }
    for w in &s.waiting {
        out.push_str(&format!("{}\n", printable(w)));
    }
    for h in &s.hung_writes {
        out.push_str(&format!(
            "HUNG: {} on {} for {} s; later writes to {} wait, other hosts go on\n",
            printable(&h.what),
            printable(&h.host),
            h.seconds,
            printable(&h.host)
        ));
    }
    out.push('\n');
    let mut rows = Vec::new();
    for v in &s.vhbas {
        rows.push(vec![
            v.name.clone(),
            v.state.clone(),
            v.host.clone().unwrap_or_else(|| "-".into()),
            v.parent.clone().unwrap_or_else(|| "-".into()),
            v.wwpn.clone(),
            v.vport_state.clone().unwrap_or_else(|| "-".into()),
            v.login.clone().unwrap_or_else(|| "-".into()),
            v.owner.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    if s.vhbas.is_empty() {
        out.push_str("no vHBAs declared\n");
    } else {
        out.push_str(&render_table(
            &[
                "VHBA",
                "STATE",
                "HOST",
                "PARENT",
                "WWPN",
                "VPORT STATE",
                "LOGIN",
                "OWNER",
            ],
            &rows,
        ));
        for v in s.vhbas.iter().filter(|v| v.reason.is_some()) {
            out.push_str(&format!(
                "  {}: {}\n",
                printable(&v.name),
                printable(v.reason.as_deref().unwrap_or_default())
            ));
        }
    }
    out.push('\n');
    let mut rows = Vec::new();
    for h in &s.hosts {
        let hung = if s.hung.contains(&h.host) {
            " (HUNG)"
        } else {
            ""
        };
        match &h.last_scan {
            Some(sc) => rows.push(vec![
                format!("{}{hung}", h.host),
                sc.when.clone(),
                sc.scope.clone(),
                format!("{} ms", sc.duration_ms),
                sc.result.clone(),
            ]),
            None => rows.push(vec![
                format!("{}{hung}", h.host),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
            ]),
        }
    }
    out.push_str(&render_table(
        &["HOST", "LAST SCAN", "SCOPE", "TOOK", "RESULT"],
        &rows,
    ));
    let c = &s.counters;
    out.push_str(&format!(
        "\nevents {}  forged {}  malformed {}  overflows {}  resyncs {}  scans {}  merged {}  vHBAs created {}  log records dropped {}\n",
        c.events, c.forged, c.malformed, c.overflows, c.resyncs, c.scans, c.merged, c.vhbas_created,
        c.log_records_dropped
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::status::{HungWrite, VhbaStatus};

    #[test]
    fn status_file_strings_reach_the_terminal_escaped() {
        let esc = "x\u{1b}]0;pwned\u{7}\nforged line";
        let s = Status {
            started: esc.into(),
            policy_files: vec![esc.into()],
            waiting: vec![esc.into()],
            hung_writes: vec![HungWrite {
                host: esc.into(),
                what: esc.into(),
                ..HungWrite::default()
            }],
            vhbas: vec![VhbaStatus {
                name: esc.into(),
                reason: Some(esc.into()),
                ..VhbaStatus::default()
            }],
            ..Status::default()
        };
        let text = render_status(&s);
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{7}'),
            "{text:?}"
        );
        assert!(!text.contains("\nforged line"), "{text}");
        assert!(
            text.contains("x\\u{1b}]0;pwned\\u{7}\\nforged line"),
            "{text}"
        );
    }
}
