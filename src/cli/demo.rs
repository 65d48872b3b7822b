//! `demo`: the agent on a simulated hypervisor, from boot to new LUNs.
//!
//! The host is [`Sim::demo_host`]: a RAID controller with the boot disk and a
//! dual-port qla2xxx HBA, one port on each of two fabrics, and an array with a
//! port on each fabric. The real agent loop runs against it — the same code as
//! `hbad run`, with the simulator in place of the kernel's socket and sysfs
//! writes — while the demo plays the SAN team's part.

use std::fmt;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use tokio::sync::mpsc;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context as LayerContext, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

use super::render::render_tree;
use super::Global;
use crate::daemon::run::{forward_events, run as run_loop};
use crate::daemon::{Agent, AgentConfig, Control, LoopTimings};
use crate::graph::Graph;
use crate::policy::{Environment, Policy};
use crate::sim::demo::{ARRAY_PORT_A, ARRAY_PORT_B, FABRIC_B_WWN, HBA_A_WWPN};
use crate::sim::{Flavour, LunSpec, Sim};
use crate::wwn::{Wwn, WwnStyle};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep going after the story: the SAN presents a new LUN every few seconds
    /// until Ctrl-C.
    #[arg(long)]
    pub follow: bool,
    /// Keep the simulated host's sysfs and /dev trees in this directory (for
    /// `hbad --sysfs-root DIR/sys --dev-root DIR/dev tree` afterwards).
    #[arg(long, value_name = "DIR")]
    pub keep: Option<std::path::PathBuf>,
}

const POLICY: &str = r#"# /etc/hbad/hbad.toml on the demo host
[wwn]
seed = "hbad-demo"              # normally /etc/machine-id

[[vhba]]
name = "vm-a"
parent_wwpn = "{HBA_A}"         # the qla2xxx port on fabric A

[[vhba]]
name = "vm-b"
parent_fabric = "{FABRIC_B}"    # whichever NPIV port is on fabric B

[rescan]
debounce = "100ms"

[ownership]
state_file = {STATE}
"#;

pub fn run(_g: &Global, args: DemoArgs) -> anyhow::Result<ExitCode> {
    let _ = tracing_subscriber::registry()
        .with(AgentLines)
        .with(tracing_subscriber::filter::LevelFilter::INFO)
        .try_init();
    let _scratch;
    let dir = match &args.keep {
        // Absolute: the policy's state_file must be, and the tree is named by it.
        Some(d) => std::path::absolute(d)
            .with_context(|| format!("--keep {}: cannot make it absolute", d.display()))?,
        None => {
            _scratch = Scratch::new(&std::env::temp_dir())?;
            _scratch.0.clone()
        }
    };
    // The directory goes into the policy's text, which is UTF-8: checked before
    // anything is built in it.
    let state_file = dir.join("state/owned-vhbas.json");
    let state_file = state_file.to_str().with_context(|| {
        format!(
            "--keep {}: the path is not UTF-8, which a policy cannot name",
            dir.display()
        )
    })?;
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let sim = Sim::demo_host(&dir).context("cannot build the simulated host")?;
    let sysfs = sim.sysfs();
    let shown = Global {
        sysfs_root: sysfs.root().to_path_buf(),
        dev_root: sysfs.dev_root().to_path_buf(),
        json: false,
        policy: None,
        no_strict_perms: false,
    };

    heading("A hypervisor: a RAID controller, a dual-port qla2xxx HBA on fabrics A and B");
    print!("{}", render_tree(&Graph::load(&sysfs)));

    heading("The policy: one vHBA per fabric, parents by WWPN and by fabric, never by hostN");
    let text = POLICY
        .replace("{HBA_A}", &HBA_A_WWPN.to_string())
        .replace("{FABRIC_B}", &FABRIC_B_WWN.to_string())
        // Quoted by the toml crate: any `"` or `\` in the directory stays in the string.
        .replace(
            "{STATE}",
            &toml::Value::String(state_file.to_string()).to_string(),
        );
    print!("{text}");
    let policy = Policy::from_str(
        std::path::Path::new("/etc/hbad/hbad.toml"),
        &text,
        &Environment::fixed("hbad-demo"),
    )
    .map_err(|e| anyhow::anyhow!("the demo policy is invalid: {e}"))?;
    let wwpn = |name: &str| -> Wwn {
        policy
            .vhba(name)
            .map(|v| v.wwpn)
            .expect("the demo policy declares it")
    };
    let (vm_a, vm_b) = (wwpn("vm-a"), wwpn("vm-b"));

    heading("hbad wwn: the WWPNs to zone, known before anything is created");
    for v in &policy.vhbas {
        println!(
            "  {:<5} wwpn {}  wwnn {}",
            v.name,
            v.wwpn.format(WwnStyle::Colon),
            v.wwnn.format(WwnStyle::Colon)
        );
    }
    println!("\nThe SAN team zones them and masks LUN 27 to vm-a and LUN 28 to vm-b.");
    sim.add_lun(
        ARRAY_PORT_A,
        LunSpec::new(27, 100 << 30, "ARRAY0027").masked_to(vm_a),
    )?;
    sim.add_lun(
        ARRAY_PORT_B,
        LunSpec::new(28, 100 << 30, "ARRAY0028").masked_to(vm_b),
    )?;

    heading("hbad run (boot): the agent creates the vHBAs, they log in, their LUNs appear");
    let agent_events = sim.subscribe(Flavour::Udev);
    let agent = Agent::new(
        AgentConfig {
            sysfs: sysfs.clone(),
            status_path: Some(dir.join("run/hbad/status.json")),
        },
        Arc::new(sim.clone()),
        policy.clone(),
        Instant::now(),
    );
    let (control, looped) = start_agent(agent, agent_events)?;
    let ready = |luns: &[u64]| {
        let g = Graph::load(&sysfs);
        luns.iter().all(|n| {
            g.luns()
                .iter()
                .any(|l| matches!(&l.kind, crate::graph::NodeKind::Lun(l) if l.hctl.lun == *n))
        })
    };
    let status_path = dir.join("run/hbad/status.json");
    wait_for("the agent to be ready", Duration::from_secs(20), || {
        crate::daemon::status::Status::read(&status_path)
            .is_ok_and(|s| s.ready && s.vhbas.iter().all(|v| v.state == "active"))
            && ready(&[27, 28])
    })?;
    let_agent_log();

    heading("The SAN presents new storage: \"the LUNs are 29 and 53\"");
    let scans_before = sim.writes().len();
    sim.add_lun(
        ARRAY_PORT_A,
        LunSpec::new(29, 200 << 30, "ARRAY0029").masked_to(vm_a),
    )?;
    sim.add_lun(
        ARRAY_PORT_B,
        LunSpec::new(53, 50 << 30, "ARRAY0053").masked_to(vm_b),
    )?;
    println!("The guests' I/O on the vHBAs' LUNs meets the array's unit attention.");
    sim.io_pending();
    wait_for("LUNs 29 and 53", Duration::from_secs(20), || {
        ready(&[29, 53])
    })?;
    let_agent_log();
    println!("\nWhat hbad wrote to the kernel for them (no LIP, no wildcard scan):");
    for w in sim.writes().iter().skip(scans_before) {
        println!("  {} <- \"{}\"", shorten(&w.path), w.value.trim());
    }

    heading("hbad luns: the vHBAs' LUNs with their stable paths");
    for name in ["vm-a", "vm-b"] {
        let w = wwpn(name).to_string();
        super::inspect::luns(&shown, Some(&w))?;
    }

    heading("hbad tree, after");
    print!("{}", render_tree(&Graph::load(&sysfs)));

    if args.follow {
        heading("Following: a new LUN every 5 s; Ctrl-C to stop");
        let mut next = 100u64;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s2 = stop.clone();
        ctrlc_flag(s2)?;
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            std::thread::sleep(Duration::from_secs(5));
            let (port, vhba) = if next % 2 == 0 {
                (ARRAY_PORT_A, vm_a)
            } else {
                (ARRAY_PORT_B, vm_b)
            };
            sim.add_lun(
                port,
                LunSpec::new(next, 10 << 30, &format!("ARRAY{next:04}")).masked_to(vhba),
            )?;
            sim.io_pending();
            next += 1;
        }
    }

    let _ = control.blocking_send(Control::Stop);
    let _ = looped.join();
    let status = crate::daemon::status::Status::read(&status_path)?;
    heading("hbad status");
    print!("{}", super::daemon::render_status(&status));
    if let Some(d) = &args.keep {
        println!(
            "\nThe simulated host is kept: hbad --sysfs-root {0}/sys --dev-root {0}/dev tree",
            d.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs the agent's loop on its own thread, fed by the simulator's events.
fn start_agent(
    agent: Agent,
    events: std::sync::mpsc::Receiver<crate::uevent::Uevent>,
) -> anyhow::Result<(mpsc::Sender<Control>, std::thread::JoinHandle<()>)> {
    let (etx, erx) = mpsc::channel(65536);
    forward_events(events, etx)?;
    let (ctx, crx) = mpsc::channel(4);
    let policy = agent.policy().clone();
    let handle = std::thread::Builder::new()
        .name("agent".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a current-thread runtime builds");
            rt.block_on(run_loop(
                agent,
                erx,
                crx,
                move || Ok(policy.clone()),
                LoopTimings {
                    tick: Duration::from_millis(200),
                    stop_grace: Duration::from_secs(2),
                    ..LoopTimings::default()
                },
            ));
        })?;
    Ok((ctx, handle))
}

fn ctrlc_flag(flag: Arc<std::sync::atomic::AtomicBool>) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("ctrl-c".into())
        .spawn(move || {
            if rt.block_on(tokio::signal::ctrl_c()).is_ok() {
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        })?;
    Ok(())
}

/// The simulated host's directory, removed on the way out unless kept.
struct Scratch(std::path::PathBuf);

impl Scratch {
    /// A new directory under `tmp` with a name no one can guess, made by
    /// mkdtemp(3) (mode 0700, never an existing path): a fixed name such as
    /// `hbad-demo-<pid>` lets another user plant a directory or a symlink there
    /// first, and the demo would build its tree, and write, where they chose.
    fn new(tmp: &std::path::Path) -> anyhow::Result<Scratch> {
        let template = tmp.join("hbad-demo-XXXXXX");
        nix::unistd::mkdtemp(&template)
            .map(Scratch)
            .with_context(|| format!("cannot create a directory {}", template.display()))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> anyhow::Result<()> {
    let t = Instant::now();
    while !done() {
        if t.elapsed() > limit {
            anyhow::bail!("the demo waited {limit:?} for {what}; the agent did not get there");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Lets the agent finish logging what it just did before the next heading.
fn let_agent_log() {
    std::thread::sleep(Duration::from_millis(400));
}

fn heading(text: &str) {
    if super::ansi_for(&std::io::stdout()) {
        println!("\n\x1b[1m==> {text}\x1b[0m");
    } else {
        println!("\n==> {text}");
    }
}

/// `/tmp/x/sys/devices/.../host7/scsi_host/host7/scan` -> `scsi_host/host7/scan`.
fn shorten(path: &std::path::Path) -> String {
    let parts: Vec<String> = path
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let n = parts.len();
    parts[n.saturating_sub(3)..].join("/")
}

/// Prints the agent's records as plain lines, as `journalctl -u hbad -o cat` would.
struct AgentLines;

struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for AgentLines {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: LayerContext<'_, S>) {
        let mut m = Message(String::new());
        event.record(&mut m);
        println!("  hbad: {}", m.0);
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn the_demos_scratch_directory_is_new_private_and_not_named_by_its_pid() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (
            Scratch::new(tmp.path()).unwrap(),
            Scratch::new(tmp.path()).unwrap(),
        );
        assert_ne!(a.0, b.0);
        for s in [&a, &b] {
            let name = s.0.file_name().unwrap().to_string_lossy().into_owned();
            assert!(name.starts_with("hbad-demo-"), "{name}");
            assert!(!name.contains(&std::process::id().to_string()), "{name}");
            let meta = std::fs::symlink_metadata(&s.0).unwrap();
            assert!(meta.is_dir());
            assert_eq!(meta.permissions().mode() & 0o777, 0o700);
        }
        let gone = a.0.clone();
        drop(a);
        assert!(!gone.exists(), "removed when the demo ends");
    }
}
