//! `apply`, `create`, `destroy`, `rescan`, `find-luns`: the commands that write.
//!
//! Exit codes, the same for all five:
//! - 0: everything asked for is done (or was already so);
//! - 1: something failed (a kernel refusal, a bad argument, a step that failed);
//! - 2: nothing failed but something is not finished: a vHBA still waiting for its
//!   parent, a scan hung past its timeout, or a LUN that did not appear.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use serde::Serialize;

use super::policy::{load_graph, load_policy};
use super::{exit, BadArgument, Global, NotFound};
use crate::exec::apply::{millis, ApplyReport, StepOutcome};
use crate::exec::gone::GoneLun;
use crate::exec::scan::{ScanOutcome, ScanReport, Scanner, Ticket};
use crate::exec::vport::{CreateRequest, DeletePolicy, SysfsPoll, VportError, Vports};
use crate::exec::Executor;
use crate::graph::{Graph, Lookup, Node, NodeKind};
use crate::ownership::OWNER_PREFIX;
use crate::plan::{plan, takes_part, Action, HostRef, Plan, Recorded, Step};
use crate::policy::{Origin, ParentSelector, Policy, VhbaSpec};
use crate::sysfs::writes::{
    AttrWriter, ChildWriter, KernelWriter, ScanScope, WRITE_ATTR_NOT_OS, WRITE_ATTR_REFUSED,
};
use crate::sysfs::{devpath_name, port_address, Hctl};
use crate::terminal::echoed;
use crate::wwn::{derive, Wwn, WwnRole};

const EXIT_CODES: &str = "Exit status: 0 done (or already so); 1 something failed; \
2 nothing failed but something is unfinished (a vHBA waiting for its parent, a scan hung \
past its timeout); 4 what was named is not there (a device, host, or for find-luns a LUN \
that did not appear); 64 a bad command line.";

const EXIT_FAILED: u8 = exit::FAILED;
const EXIT_UNFINISHED: u8 = exit::UNFINISHED;

/// How the writing commands wait and where they keep ownership records.
#[derive(Debug, Clone, Args)]
pub struct ExecOpts {
    /// How long a new vHBA may take to appear, or a deleted one to go.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = crate::policy::limits::parse_vport_timeout_flag)]
    pub vport_timeout: Duration,
    /// After this a scan is reported hung; the policy's rescan scan_timeout when not given.
    #[arg(long, value_name = "DURATION", value_parser = crate::policy::limits::parse_scan_timeout_flag)]
    pub scan_timeout: Option<Duration>,
}

/// `hbad write-attr PATH` with the value on stdin: one write through
/// [`KernelWriter`], below `--sysfs-root`; the exit status is 0, the errno, or
/// [`WRITE_ATTR_REFUSED`], for [`ChildWriter`].
pub fn write_attr(g: &Global, path: &std::path::Path) -> ExitCode {
    use std::io::Read;
    let mut value = String::new();
    if std::io::stdin().read_to_string(&mut value).is_err() {
        return ExitCode::from(WRITE_ATTR_NOT_OS as u8);
    }
    // Ctrl-C, `systemctl kill`: never half-way through a vport_create.
    if let Err(e) = crate::exec::uninterrupted::ignore_stop_signals() {
        eprintln!("cannot ignore stop signals: {e}");
    }
    match KernelWriter::beneath(&g.sysfs_root).write_attr(path, &value) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if crate::sysfs::beneath::is_refused(&e) => {
            eprintln!("{e}");
            ExitCode::from(WRITE_ATTR_REFUSED as u8)
        }
        Err(e) => match e.raw_os_error() {
            Some(errno) if (1..WRITE_ATTR_NOT_OS).contains(&errno) => ExitCode::from(errno as u8),
            _ => ExitCode::from(WRITE_ATTR_NOT_OS as u8),
        },
    }
}

/// `hbad report-luns NODE MAJ:MIN`: the child [`ChildWriter::report_luns`] starts.
pub fn report_luns(node: &std::path::Path, dev: &str) -> ExitCode {
    let Some(node) = crate::report_luns::node_from_args(node, dev) else {
        eprintln!("`{}` is not MAJOR:MINOR", echoed(dev));
        return ExitCode::from(EXIT_FAILED);
    };
    match crate::report_luns::report_luns(&node) {
        // The parent may be gone (hbad stopped): a closed pipe is an exit status,
        // not print!'s panic.
        Ok(luns) => match write!(
            std::io::stdout().lock(),
            "{}",
            crate::report_luns::format_luns(&luns)
        ) {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::from(EXIT_FAILED),
        },
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// `hbad delete-lun DELETE NODE MAJ:MIN...`: the child
/// [`ChildWriter`]'s `delete_unclaimed` starts; one line on stdout.
pub fn delete_lun(g: &Global, delete: PathBuf, nodes: Vec<String>) -> ExitCode {
    let mut args = vec![delete.display().to_string()];
    args.extend(nodes);
    let Some(lun) = crate::claim::LunDelete::from_args(&args) else {
        eprintln!("expected DELETE followed by NODE MAJ:MIN pairs");
        return ExitCode::from(EXIT_FAILED);
    };
    match crate::claim::delete_unclaimed(&KernelWriter::beneath(&g.sysfs_root), &lun) {
        Ok(done) => match write!(std::io::stdout().lock(), "{done}") {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::from(EXIT_FAILED),
        },
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

fn executor(g: &Global, opts: &ExecOpts, policy: &Policy) -> anyhow::Result<Executor> {
    let sysfs = g.sysfs();
    let writer: Arc<dyn AttrWriter> =
        Arc::new(ChildWriter::new(&g.sysfs_root).context("cannot find the hbad executable")?);
    let vports = Vports::new(
        sysfs.clone(),
        writer.clone(),
        // The kernel makes the vHBA inside the vport_create write on the drivers
        // seen so far; the poll is for drivers that finish it on a work queue.
        Arc::new(SysfsPoll::new(sysfs.clone(), Duration::from_millis(50))),
        policy.owned_state(),
        opts.vport_timeout,
    );
    let timeout = opts.scan_timeout.unwrap_or(policy.rescan.scan_timeout);
    let scanner = Scanner::new(writer.clone(), sysfs, timeout);
    Ok(Executor::new(vports, scanner))
}

fn exit_status(failed: bool, unfinished: bool) -> ExitCode {
    if failed {
        ExitCode::from(EXIT_FAILED)
    } else if unfinished {
        ExitCode::from(EXIT_UNFINISHED)
    } else {
        ExitCode::SUCCESS
    }
}

fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

// ---------------------------------------------------------------------------------
// apply

#[derive(Debug, Args)]
#[command(after_help = EXIT_CODES)]
pub struct ApplyArgs {
    /// Delete vHBAs hbad made that the policy no longer names, whatever [ownership]
    /// prune says.
    #[arg(long)]
    pub prune: bool,
    #[command(flatten)]
    pub exec: ExecOpts,
}

/// Plans, applies, waits for every step and reports each.
pub fn apply(g: &Global, args: ApplyArgs) -> anyhow::Result<ExitCode> {
    let mut policy = load_policy(g)?;
    if args.prune {
        policy.ownership.prune = true;
    }
    let graph = load_graph(g)?;
    let ex = executor(g, &args.exec, &policy)?;
    let recorded = Recorded::from_records(&ex.vports.state().all()?);
    let p = plan(&policy, &graph, &recorded, &[]);
    let report = ex.apply(&p);
    let t = report.tally();
    if g.json {
        print_json(&serde_json::json!({ "steps": report.steps, "tally": t }))?;
    } else {
        print_apply(&report, &policy);
    }
    Ok(exit_status(t.failed > 0, t.waiting + t.hung > 0))
}

fn print_apply(report: &ApplyReport, policy: &Policy) {
    if report.steps.is_empty() {
        println!(
            "nothing to do: {} vHBA{} present as declared",
            policy.vhbas.len(),
            if policy.vhbas.len() == 1 { "" } else { "s" }
        );
        return;
    }
    for s in &report.steps {
        let (word, note) = match &s.outcome {
            StepOutcome::Done { detail } => ("done", detail.clone()),
            StepOutcome::AlreadyDone { detail } => ("present", detail.clone()),
            StepOutcome::Failed { error } => ("FAILED", error.clone()),
            StepOutcome::Waiting { reason } => ("waiting", reason.clone()),
            StepOutcome::Hung { after_ms } => (
                "HUNG",
                format!("still blocked in the kernel after {after_ms} ms"),
            ),
            StepOutcome::Kept => ("kept", String::new()),
            StepOutcome::Compared { gone } => ("done", gone_lines(gone)),
        };
        println!("{word:<8} {} ({:.1} ms)", s.step, s.duration_ms);
        if !note.is_empty() && !matches!(s.outcome, StepOutcome::Waiting { .. }) {
            println!("         {note}");
        }
    }
    let t = report.tally();
    println!(
        "{} done, {} already present, {} failed, {} waiting, {} hung, {} kept",
        t.done, t.already_done, t.failed, t.waiting, t.hung, t.kept
    );
}

/// One line per LUN a target stopped reporting, and what became of it.
fn gone_lines(gone: &[GoneLun]) -> String {
    if gone.is_empty() {
        return "no LUN is gone from the array".into();
    }
    gone.iter()
        .map(GoneLun::summary)
        .collect::<Vec<_>>()
        .join("\n         ")
}

// ---------------------------------------------------------------------------------
// create

#[derive(Debug, Args)]
#[command(after_help = EXIT_CODES)]
pub struct CreateArgs {
    /// The physical FC port: its WWPN, hostN, or `auto` (an Online NPIV port with a
    /// free vport; ties go to the lowest WWPN).
    #[arg(long, value_name = "WWPN|hostN|auto")]
    pub parent: String,
    /// The vHBA's port name, in any form (0x5001a4a..., 50:01:a4:a..., bare hex).
    #[arg(long)]
    pub wwpn: Option<Wwn>,
    /// The vHBA's node name, in any form.
    #[arg(long)]
    pub wwnn: Option<Wwn>,
    /// The vHBA's name (marks it `hbad:NAME`). WWNs not given are those a policy
    /// [[vhba]] of this name gets on this host, so they can be zoned in advance with
    /// `hbad wwn`; without a name, a random name and random WWNs.
    #[arg(long)]
    pub name: Option<String>,
    #[command(flatten)]
    pub exec: ExecOpts,
}

#[derive(Debug, Serialize)]
struct CreateOutput {
    name: String,
    wwpn: Wwn,
    wwnn: Wwn,
    wwns: &'static str,
    parent: Option<String>,
    result: &'static str,
    vport: Option<String>,
    host: Option<String>,
    owner: Option<crate::ownership::OwnerMark>,
    error: Option<String>,
}

fn parse_parent(text: &str) -> anyhow::Result<ParentSelector> {
    if text == "auto" {
        return Ok(ParentSelector::Auto);
    }
    match text.parse::<Lookup>() {
        Ok(Lookup::Host(number)) => Ok(ParentSelector::Host { number }),
        Ok(Lookup::Wwpn(wwpn)) => Ok(ParentSelector::Wwpn { wwpn, wwnn: None }),
        _ => Err(BadArgument(format!(
            "--parent `{}`: give the port's WWPN, hostN, or auto",
            echoed(text)
        ))
        .into()),
    }
}

/// vHBA names end up in symbolic_name and /dev/disk/by-vhba/<name>: the policy's rule.
fn check_name(name: &str) -> anyhow::Result<()> {
    if !crate::policy::valid_name(name) {
        return Err(BadArgument(format!(
            "--name `{}`: use up to 48 of a-z A-Z 0-9 - _ . (not starting with .)",
            echoed(name)
        ))
        .into());
    }
    Ok(())
}

/// 16 random bytes as hex, from the kernel's generator.
fn random_hex() -> anyhow::Result<String> {
    use std::io::Read;
    let mut buf = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .context("cannot read /dev/urandom for a random WWN seed")?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// A transient vHBA by hand. The parent is chosen by the planner's own rules.
pub fn create(g: &Global, args: CreateArgs) -> anyhow::Result<ExitCode> {
    let policy = load_policy(g)?;
    let selector = parse_parent(&args.parent)?;
    if let Some(n) = &args.name {
        check_name(n)?;
    }
    let declared = args.name.as_deref().and_then(|n| policy.vhba(n));
    let (name, seed, wwns) = match (&args.name, declared) {
        (Some(n), Some(_)) => (n.clone(), policy.wwn.seed.clone(), "policy"),
        (Some(n), None) if !policy.wwn.seed.is_empty() => {
            (n.clone(), policy.wwn.seed.clone(), "derived")
        }
        (Some(n), None) => (n.clone(), random_hex()?, "random"),
        (None, _) => {
            let seed = random_hex()?;
            (format!("manual-{}", &seed[..8]), seed, "random")
        }
    };
    let wwpn = args
        .wwpn
        .or(declared.map(|d| d.wwpn))
        .unwrap_or_else(|| derive(policy.wwn.oui, &seed, &name, WwnRole::Port));
    let wwnn = args
        .wwnn
        .or(declared.map(|d| d.wwnn))
        .unwrap_or_else(|| derive(policy.wwn.oui, &seed, &name, WwnRole::Node));
    if wwpn == wwnn {
        bail!("--wwpn and --wwnn are both {wwpn}: a port name and a node name must differ");
    }
    let wwns = if args.wwpn.is_some() && args.wwnn.is_some() {
        "given"
    } else {
        wwns
    };
    let graph = load_graph(g)?;
    let ex = executor(g, &args.exec, &policy)?;
    let mut out = CreateOutput {
        name: name.clone(),
        wwpn,
        wwnn,
        wwns,
        parent: None,
        result: "failed",
        vport: None,
        host: None,
        owner: None,
        error: None,
    };
    let result = create_on(&graph, &ex.vports, &policy, &name, selector, wwpn, wwnn);
    let code = match result {
        Ok((parent, created)) => {
            out.parent = parent;
            out.result = if created.already_present {
                "already_present"
            } else {
                "created"
            };
            out.vport = Some(devpath_name(&created.vhba.vport).to_string());
            out.host = created.vhba.host.as_ref().map(|h| h.to_string());
            out.owner = created.owner;
            ExitCode::SUCCESS
        }
        Err(e) => {
            out.error = Some(e.to_string());
            ExitCode::from(EXIT_FAILED)
        }
    };
    if g.json {
        print_json(&out)?;
    } else if let Some(e) = &out.error {
        eprintln!("error: cannot create vHBA {name} (wwpn {wwpn}, wwnn {wwnn}): {e}");
    } else {
        let verb = if out.result == "created" {
            "created"
        } else {
            "already present:"
        };
        println!(
            "{verb} vHBA {name}: {} ({}) on {}, wwpn {wwpn}, wwnn {wwnn} [{wwns} WWNs]",
            out.host.as_deref().unwrap_or("no host"),
            out.vport.as_deref().unwrap_or("?"),
            out.parent.as_deref().unwrap_or("its parent"),
        );
        if out.result != "created" && out.owner.is_none() {
            println!("note: it is not marked as hbad's; left as it was");
        }
    }
    Ok(code)
}

#[derive(Debug, thiserror::Error)]
enum CreateError {
    #[error("{0}")]
    Wait(String),
    #[error(transparent)]
    Vport(#[from] VportError),
}

fn create_on(
    graph: &Graph,
    vports: &Vports,
    policy: &Policy,
    name: &str,
    selector: ParentSelector,
    wwpn: Wwn,
    wwnn: Wwn,
) -> Result<(Option<String>, crate::exec::vport::Created), CreateError> {
    // The planner's own rules pick the parent (Online, NPIV, free slots, by WWPN):
    // a one-vHBA policy with this spec and nothing else.
    let spec = VhbaSpec {
        name: name.to_string(),
        wwpn,
        wwnn,
        wwpn_derived: false,
        wwnn_derived: false,
        parent: selector,
        link_wait: Duration::ZERO,
        origin: Origin::file(std::path::Path::new("(command line)")),
    };
    let one = Policy {
        vhbas: vec![spec],
        files: Vec::new(),
        warnings: Vec::new(),
        ..policy.clone()
    };
    // Only the create step is read here, and ownership does not move a parent.
    let p = plan(&one, graph, &Recorded::none(), &[]);
    for step in &p.steps {
        match &step.action {
            Action::CreateVhba {
                vhba,
                parent,
                control_dir,
                ..
            } if vhba == name => {
                let req = CreateRequest {
                    name: name.to_string(),
                    parent: parent.clone(),
                    control_dir: *control_dir,
                    wwpn,
                    wwnn,
                };
                return Ok((Some(parent.to_string()), vports.create(&req)?));
            }
            Action::Wait { vhba, reason } if vhba == name => {
                return Err(CreateError::Wait(reason.to_string()))
            }
            _ => {}
        }
    }
    // No create and no wait: a vport with this WWPN is already there.
    let existing = vports
        .existing(wwpn)?
        .ok_or_else(|| CreateError::Wait(format!("the planner had nothing to do for {wwpn}")))?;
    let parent = graph
        .node(&existing.vhba.vport)
        .and_then(|v| graph.vport_parent_host(v))
        .map(|h| h.name().to_string());
    Ok((parent, existing))
}

// ---------------------------------------------------------------------------------
// destroy

#[derive(Debug, Args)]
#[command(after_help = EXIT_CODES)]
pub struct DestroyArgs {
    /// The vHBA: hostN, its WWPN, its name (hbad:NAME), or its vport (vport-1:0-0).
    pub vhba: String,
    /// Delete it even if hbad did not make it. Physical ports are refused regardless.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub exec: ExecOpts,
}

pub fn destroy(g: &Global, args: DestroyArgs) -> anyhow::Result<ExitCode> {
    let policy = load_policy(g)?;
    let graph = load_graph(g)?;
    let ex = executor(g, &args.exec, &policy)?;
    let target = resolve_vhba(&graph, &ex.vports, &policy, &args.vhba)?;
    let how = if args.force {
        DeletePolicy::AnyVport
    } else {
        DeletePolicy::OwnedOnly
    };
    let result = ex.vports.delete(&target, how);
    if g.json {
        let v = match &result {
            Ok(d) => {
                serde_json::json!({ "result": if d.already_gone { "already_gone" } else { "deleted" }, "deleted": d })
            }
            Err(e) => {
                serde_json::json!({ "result": "failed", "target": args.vhba, "error": e.to_string() })
            }
        };
        print_json(&v)?;
    }
    match result {
        Ok(d) => {
            if !g.json {
                let what = if d.already_gone {
                    "was already gone"
                } else {
                    "deleted"
                };
                println!(
                    "{} (wwpn {}) on {} {what}",
                    devpath_name(&d.vport),
                    d.wwpn,
                    d.parent
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            if !g.json {
                eprintln!("error: {e}");
            }
            Ok(ExitCode::from(EXIT_FAILED))
        }
    }
}

/// The devpath `destroy` acts on. A name that designates nothing, or more than one
/// thing, is an error here; whether it is a vport is the executor's check.
fn resolve_vhba(
    graph: &Graph,
    vports: &Vports,
    policy: &Policy,
    text: &str,
) -> anyhow::Result<String> {
    let lookup: Lookup = text.parse().map_err(BadArgument)?;
    let found: Vec<&Node> = match &lookup {
        Lookup::Wwpn(_) => {
            // A WWPN names a vport and its vHBA at once: the vport is the thing.
            let all = graph.find(&lookup);
            let vport: Vec<&Node> = all
                .iter()
                .copied()
                .filter(|n| matches!(n.kind, NodeKind::Vport(_)))
                .collect();
            if vport.is_empty() {
                all
            } else {
                vport
            }
        }
        Lookup::Name(name) => {
            let by_kernel_name = graph.find(&lookup);
            if !by_kernel_name.is_empty() {
                by_kernel_name
            } else {
                vhba_by_name(graph, vports, policy, name)?
            }
        }
        _ => graph.find(&lookup),
    };
    match found.as_slice() {
        [] => Err(NotFound(format!(
            "no device matches `{}`; give hostN, a WWPN, a vHBA name or vport-H:C-N",
            echoed(text)
        ))
        .into()),
        [one] => Ok(one.devpath.to_string()),
        many => bail!(
            "`{}` matches {}: name one",
            echoed(text),
            many.iter().map(|n| n.name()).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// Vports a vHBA name designates: by its mark, its state-file record, or the policy.
fn vhba_by_name<'g>(
    graph: &'g Graph,
    vports: &Vports,
    policy: &Policy,
    name: &str,
) -> anyhow::Result<Vec<&'g Node>> {
    let tag = format!("{OWNER_PREFIX}{name}");
    let mut wwpns: BTreeSet<Wwn> = vports
        .state()
        .all()?
        .into_iter()
        .filter(|(_, r)| r.name == name)
        .map(|(w, _)| w)
        .collect();
    wwpns.extend(policy.vhba(name).map(|v| v.wwpn));
    Ok(graph
        .of_kind(|k| matches!(k, NodeKind::Vport(_)))
        .into_iter()
        .filter(|n| match &n.kind {
            NodeKind::Vport(v) => {
                v.symbolic_name.as_deref() == Some(tag.as_str())
                    || v.wwpn.is_some_and(|w| wwpns.contains(&w))
            }
            _ => false,
        })
        .collect())
}

// ---------------------------------------------------------------------------------
// rescan

#[derive(Debug, Args)]
#[command(after_help = EXIT_CODES)]
pub struct RescanArgs {
    /// Hosts to scan: hostN, a port's WWPN, or a vHBA name. Named hosts are scanned
    /// even when the policy's [rescan] filters leave them out.
    pub hosts: Vec<String>,
    /// Every host that takes part in rescans under the policy ([rescan] include/exclude).
    #[arg(long, conflicts_with = "hosts")]
    pub all: bool,
    /// Scan only the target with this remote-port WWPN (on the hosts that see it).
    #[arg(long, value_name = "WWPN")]
    pub target: Option<Wwn>,
    /// Issue a LIP first. Resets the link: disruptive to I/O on the whole port.
    #[arg(long)]
    pub lip: bool,
    #[command(flatten)]
    pub exec: ExecOpts,
}

#[derive(Debug, Serialize)]
struct HostResult {
    host: HostRef,
    scope: ScanScope,
    #[serde(flatten)]
    outcome: ScanOutcome,
    duration_ms: f64,
    reason: String,
}

impl HostResult {
    fn of(r: ScanReport) -> Self {
        HostResult {
            host: r.host,
            scope: r.scope,
            outcome: r.outcome,
            duration_ms: millis(r.duration),
            reason: r.reason,
        }
    }
}

fn host_ref(node: &Node) -> Option<HostRef> {
    match &node.kind {
        NodeKind::Host(h) => Some(HostRef {
            number: h.scsi.number,
            devpath: node.devpath.to_string(),
        }),
        _ => None,
    }
}

/// The one SCSI host a command-line name designates.
fn hosts_named<'g>(
    graph: &'g Graph,
    vports: &Vports,
    policy: &Policy,
    text: &str,
) -> anyhow::Result<&'g Node> {
    let lookup: Lookup = text.parse().map_err(BadArgument)?;
    let mut found: Vec<&Node> = match &lookup {
        Lookup::Name(name) => {
            let direct = graph.find(&lookup);
            if direct.is_empty() {
                vhba_by_name(graph, vports, policy, name)?
                    .into_iter()
                    .filter_map(|v| graph.vhba_of_vport(v))
                    .collect()
            } else {
                direct
            }
        }
        _ => graph.find(&lookup),
    };
    // A vport's WWPN also names its vHBA: keep the host.
    found.retain(|n| matches!(n.kind, NodeKind::Host(_)));
    match found.as_slice() {
        [one] => Ok(one),
        [] => Err(NotFound(format!(
            "`{}` names no SCSI host; give hostN, an FC port's WWPN or a vHBA name",
            echoed(text)
        ))
        .into()),
        many => bail!(
            "`{}` matches {}: name one",
            echoed(text),
            many.iter().map(|n| n.name()).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// Waits for tickets as they finish, printing each host's result on a terminal.
fn collect(tickets: Vec<(HostRef, Ticket)>, timeout: Duration, progress: bool) -> Vec<ScanReport> {
    let total = tickets.len();
    // One waiter per host: a host's scans finish in queue order, and each ticket
    // keeps its own deadline from its request, so waiting on them in turn is exact.
    let mut per_host: BTreeMap<HostRef, Vec<Ticket>> = BTreeMap::new();
    for (h, t) in tickets {
        per_host.entry(h).or_default().push(t);
    }
    let (tx, rx) = mpsc::channel();
    for (host, tickets) in per_host {
        let slot = Arc::new(std::sync::Mutex::new(tickets));
        let wait_all = {
            let (slot, tx) = (slot.clone(), tx.clone());
            move || {
                let tickets = std::mem::take(&mut *slot.lock().unwrap_or_else(|e| e.into_inner()));
                for t in tickets {
                    let _ = tx.send(t.wait(timeout));
                }
            }
        };
        let spawned = thread::Builder::new()
            .name(format!("wait-{host}"))
            .spawn(wait_all);
        if spawned.is_err() {
            // No thread: wait here instead; the results come later, not never.
            let tickets = std::mem::take(&mut *slot.lock().unwrap_or_else(|e| e.into_inner()));
            for t in tickets {
                let _ = tx.send(t.wait(timeout));
            }
        }
    }
    drop(tx);
    let mut out = Vec::with_capacity(total);
    for r in rx {
        if progress {
            eprintln!(
                "[{}/{total}] {} {:<8} {:>9.1} ms  {}",
                out.len() + 1,
                r.host,
                outcome_word(&r.outcome),
                millis(r.duration),
                r.scope
            );
        }
        out.push(r);
    }
    out.sort_by_key(|r| (r.host.number, r.scope));
    out
}

fn outcome_word(o: &ScanOutcome) -> &'static str {
    match o {
        ScanOutcome::Done => "done",
        ScanOutcome::Failed { .. } => "FAILED",
        ScanOutcome::Hung => "HUNG",
    }
}

/// What a scan changed on one host: LUNs that appeared, and LUNs that went while
/// it ran (a remote port gone past dev_loss_tmo). A LUN the array stopped
/// reporting is not among them: the kernel keeps it until it is deleted.
#[derive(Debug, Default, PartialEq, Eq, Serialize)]
struct LunChanges {
    added: Vec<String>,
    gone: Vec<String>,
}

/// By host number, for the hosts given: the LUNs in `after` and not in `before`,
/// and the reverse, each as `H:C:T:L disk`.
fn lun_changes(before: &Graph, after: &Graph, hosts: &BTreeSet<u32>) -> BTreeMap<u32, LunChanges> {
    let luns = |g: &Graph| -> BTreeMap<Hctl, String> {
        g.luns()
            .into_iter()
            .filter_map(|n| match &n.kind {
                NodeKind::Lun(l) if hosts.contains(&l.hctl.host) => {
                    let disk = g
                        .disk_of(n)
                        .map_or_else(|| "(no disk)".to_string(), |d| d.name().to_string());
                    Some((l.hctl, format!("{} {disk}", l.hctl)))
                }
                _ => None,
            })
            .collect()
    };
    let (before, after) = (luns(before), luns(after));
    let mut out: BTreeMap<u32, LunChanges> = BTreeMap::new();
    for (hctl, text) in &after {
        if !before.contains_key(hctl) {
            out.entry(hctl.host).or_default().added.push(text.clone());
        }
    }
    for (hctl, text) in &before {
        if !after.contains_key(hctl) {
            out.entry(hctl.host).or_default().gone.push(text.clone());
        }
    }
    out
}

/// A look for gone LUNs on every target the jobs scanned, on finished hosts.
fn find_gone_steps(
    graph: &Graph,
    jobs: &[(HostRef, ScanScope)],
    finished: &BTreeSet<u32>,
    remove: bool,
) -> Plan {
    let mut steps = Vec::new();
    for target in graph.of_kind(|k| matches!(k, NodeKind::Target(_))) {
        let NodeKind::Target(t) = &target.kind else {
            continue;
        };
        let scanned = jobs.iter().find(|(h, scope)| {
            h.number == t.host
                && scope.covers(ScanScope::Target {
                    channel: t.channel,
                    target: t.id,
                })
        });
        let Some((host, _)) = scanned.filter(|(h, _)| finished.contains(&h.number)) else {
            continue;
        };
        steps.push(Step {
            action: Action::FindGone {
                host: host.clone(),
                channel: t.channel,
                target: t.id,
                target_devpath: target.devpath.to_string(),
                remove,
            },
            reason: "hbad rescan".into(),
            origin: None,
        });
    }
    Plan { steps }
}

/// What one host's targets said of gone LUNs.
#[derive(Debug, Default, Serialize)]
struct HostGone {
    gone: Vec<GoneLun>,
    /// Targets that could not be asked, in words.
    errors: Vec<String>,
}

/// The gone LUNs each host's targets named; hosts with nothing to say left out.
fn gone_by_host(report: &ApplyReport) -> BTreeMap<u32, HostGone> {
    let mut out: BTreeMap<u32, HostGone> = BTreeMap::new();
    for s in &report.steps {
        let Action::FindGone {
            host,
            channel,
            target,
            ..
        } = &s.step.action
        else {
            continue;
        };
        let entry = out.entry(host.number).or_default();
        match &s.outcome {
            StepOutcome::Compared { gone } => entry.gone.extend(gone.iter().cloned()),
            StepOutcome::Failed { error } => entry.errors.push(format!(
                "cannot tell which LUNs of target {channel}:{target} are gone: {error}"
            )),
            StepOutcome::Hung { after_ms } => entry.errors.push(format!(
                "REPORT LUNS of target {channel}:{target} still blocked after {after_ms} ms"
            )),
            _ => {}
        }
    }
    out.retain(|_, g| !g.gone.is_empty() || !g.errors.is_empty());
    out
}

fn print_scans(results: &[ScanReport], wall: Duration) {
    for r in results {
        print!(
            "{:<8} {:<7} {:>10.1} ms  scan \"{}\"",
            r.host.to_string(),
            outcome_word(&r.outcome),
            millis(r.duration),
            r.scope
        );
        match &r.outcome {
            ScanOutcome::Failed { error } => println!(": {error}"),
            ScanOutcome::Hung => println!(": still blocked in the kernel; other hosts went on"),
            ScanOutcome::Done => println!(),
        }
    }
    let slowest = results.iter().map(|r| r.duration).max().unwrap_or_default();
    let hosts = results
        .iter()
        .map(|r| r.host.number)
        .collect::<BTreeSet<_>>()
        .len();
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    println!(
        "{} scan{} on {hosts} host{} in {:.1} ms (slowest {:.1} ms)",
        results.len(),
        plural(results.len()),
        plural(hosts),
        millis(wall),
        millis(slowest)
    );
}

/// Target scopes for the remote ports with this WWPN under a host.
fn target_scopes(graph: &Graph, host: &Node, wwpn: Wwn) -> Vec<ScanScope> {
    graph
        .children(host)
        .filter_map(|c| match &c.kind {
            NodeKind::RemotePort(rp) if rp.wwpn == Some(wwpn) => {
                let channel = port_address(&rp.name, "rport-").map_or(0, |(_, ch, _)| ch);
                rp.scsi_target_id
                    .map(|target| ScanScope::Target { channel, target })
            }
            _ => None,
        })
        .collect()
}

pub fn rescan(g: &Global, args: RescanArgs) -> anyhow::Result<ExitCode> {
    let policy = load_policy(g)?;
    let graph = load_graph(g)?;
    let ex = executor(g, &args.exec, &policy)?;
    let mut hosts: Vec<&Node> = if args.all {
        graph
            .hosts()
            .into_iter()
            .filter(|h| takes_part(&policy, &graph, h))
            .collect()
    } else if !args.hosts.is_empty() {
        args.hosts
            .iter()
            .map(|t| hosts_named(&graph, &ex.vports, &policy, t))
            .collect::<anyhow::Result<_>>()?
    } else if let Some(t) = args.target {
        // Only a target given: the hosts that see it.
        graph
            .hosts()
            .into_iter()
            .filter(|h| !target_scopes(&graph, h, t).is_empty())
            .collect()
    } else {
        return Err(BadArgument(
            "name the hosts to scan (hostN, WWPN, vHBA name), or give --all".into(),
        )
        .into());
    };
    hosts.sort_by_key(|h| h.devpath.clone());
    hosts.dedup_by_key(|h| h.devpath.clone());
    let mut jobs: Vec<(HostRef, ScanScope)> = Vec::new();
    for h in &hosts {
        let Some(r) = host_ref(h) else { continue };
        match args.target {
            Some(t) => jobs.extend(
                target_scopes(&graph, h, t)
                    .into_iter()
                    .map(|s| (r.clone(), s)),
            ),
            None => jobs.push((r, ScanScope::Host)),
        }
    }
    if jobs.is_empty() {
        match args.target {
            Some(t) => {
                return Err(NotFound(format!(
                    "no selected host sees a target port {t} (with a SCSI target id)"
                ))
                .into())
            }
            None => bail!("no host takes part in rescans under the policy"),
        }
    }
    let mut lip_errors = BTreeMap::new();
    if args.lip {
        for (h, _) in &jobs {
            if lip_errors.contains_key(&h.number) {
                continue;
            }
            let path = g.sysfs().issue_lip_path(&h.devpath);
            if let Err(e) = ex.vports.writer().write_attr(&path, "1") {
                lip_errors.insert(h.number, format!("issue_lip on {h}: {e}"));
            } else {
                lip_errors.insert(h.number, String::new());
            }
        }
        lip_errors.retain(|_, v| !v.is_empty());
    }
    let reason = if args.lip {
        "hbad rescan --lip"
    } else {
        "hbad rescan"
    };
    let progress = !g.json && std::io::stderr().is_terminal();
    let t0 = Instant::now();
    let tickets = jobs
        .iter()
        .map(|(h, s)| (h.clone(), ex.scanner.request(h, *s, reason)))
        .collect();
    let results = collect(tickets, ex.scanner.timeout(), progress);
    let wall = t0.elapsed();
    let failed = results
        .iter()
        .any(|r| matches!(r.outcome, ScanOutcome::Failed { .. }))
        || !lip_errors.is_empty();
    let hung = results.iter().any(|r| r.outcome == ScanOutcome::Hung);
    // What the array stopped reporting: asked of each target scanned, on the hosts
    // whose scans finished (a hung host's worker would hold the question too).
    let finished: BTreeSet<u32> = results
        .iter()
        .filter(|r| r.outcome == ScanOutcome::Done)
        .map(|r| r.host.number)
        .collect();
    let finds = find_gone_steps(&graph, &jobs, &finished, policy.rescan.remove_gone);
    let gone = gone_by_host(&ex.apply(&finds));
    // What the scans changed: sysfs read again, compared host by host.
    let scanned: BTreeSet<u32> = jobs.iter().map(|(h, _)| h.number).collect();
    let changed = load_graph(g)
        .map(|after| lun_changes(&graph, &after, &scanned))
        .unwrap_or_default();
    if g.json {
        print_json(&serde_json::json!({
            "scans": results.into_iter().map(HostResult::of).collect::<Vec<_>>(),
            "luns": changed
                .iter()
                .map(|(h, c)| (format!("host{h}"), c))
                .collect::<BTreeMap<_, _>>(),
            "gone": gone
                .iter()
                .map(|(h, g)| (format!("host{h}"), g))
                .collect::<BTreeMap<_, _>>(),
            "lip_errors": lip_errors.values().collect::<Vec<_>>(),
            "wall_ms": millis(wall),
        }))?;
    } else {
        for e in lip_errors.values() {
            eprintln!("error: {e}");
        }
        print_scans(&results, wall);
        for (host, c) in &changed {
            for lun in &c.added {
                println!("host{host}: new LUN {lun}");
            }
            for lun in &c.gone {
                println!("host{host}: LUN {lun} gone");
            }
        }
        for (host, g) in &gone {
            for lun in &g.gone {
                println!("host{host}: {}", lun.summary());
            }
            for e in &g.errors {
                println!("host{host}: {e}");
            }
        }
        if changed.is_empty() && gone.is_empty() {
            println!("no LUN appeared or went");
        }
    }
    // A hung scan's thread stays blocked in the kernel; exiting ends it for us.
    Ok(exit_status(failed, hung))
}

// ---------------------------------------------------------------------------------
// find-luns

#[derive(Debug, Args)]
#[command(after_help = EXIT_CODES)]
pub struct FindLunsArgs {
    /// LUN numbers, as the array shows them (27 28 29 53): at most 256, each below
    /// 10^16 (the 16 digits the kernel's scan attribute reads).
    #[arg(required = true, value_name = "LUN", value_parser = parse_lun)]
    pub luns: Vec<u64>,
    #[command(flatten)]
    pub exec: ExecOpts,
}

/// LUNs one `find-luns` looks for. Each is one scan write per known target of every
/// taking-part host, each write a child process; past a few hundred LUNs a host scan
/// (`hbad rescan`) finds them all at once.
pub const MAX_FIND_LUNS: usize = 256;

/// The first LUN the kernel's `scan` attribute cannot take: it reads the LUN as at
/// most 16 characters (`%16s`), and all ones would be its wildcard, a full scan.
pub const LUN_LIMIT: u64 = 10_000_000_000_000_000;

/// One LUN number on the command line: decimal digits, below [`LUN_LIMIT`].
pub fn parse_lun(text: &str) -> Result<u64, String> {
    let shown = crate::terminal::echoed(text);
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "`{shown}` is not a LUN number (decimal digits, e.g. 27)"
        ));
    }
    match text.parse::<u64>() {
        Ok(lun) if lun < LUN_LIMIT => Ok(lun),
        _ => Err(format!(
            "`{shown}` is past the largest LUN the kernel's scan attribute takes, {}",
            LUN_LIMIT - 1
        )),
    }
}

#[derive(Debug, Serialize)]
pub struct LunSighting {
    pub lun: u64,
    pub hctl: Hctl,
    pub host: String,
    pub vhba: Option<String>,
    pub target_wwpn: Option<Wwn>,
    pub dev: Option<String>,
    pub links: Vec<String>,
    /// Absent before this scan.
    pub new: bool,
}

/// What `find-luns` found.
#[derive(Debug)]
pub struct FoundLuns {
    pub found: Vec<LunSighting>,
    pub missing: Vec<u64>,
    pub scans: Vec<ScanReport>,
    pub wall: Duration,
}

/// `find-luns` with the executor given: the scans, then where each LUN is.
pub fn find_luns_with(
    ex: &Executor,
    policy: &Policy,
    luns: &[u64],
    progress: bool,
) -> anyhow::Result<FoundLuns> {
    // Refused before any scan is written, as a number the kernel would refuse is.
    if luns.len() > MAX_FIND_LUNS {
        bail!(
            "{} LUNs given; find-luns looks for at most {MAX_FIND_LUNS} at once (run it again for the rest, or `hbad rescan` the host)",
            luns.len()
        );
    }
    if let Some(lun) = luns.iter().find(|&&l| l >= LUN_LIMIT) {
        bail!(
            "LUN {lun} is past the largest the kernel's scan attribute takes, {}",
            LUN_LIMIT - 1
        );
    }
    let sysfs = ex.vports.sysfs();
    let before = Graph::load(sysfs);
    let wanted: BTreeSet<u64> = luns.iter().copied().collect();
    let mut jobs: Vec<(HostRef, ScanScope)> = Vec::new();
    for host in before.hosts() {
        if !takes_part(policy, &before, host) {
            continue;
        }
        let Some(h) = host_ref(host) else { continue };
        let targets: BTreeSet<(u32, u32)> = before
            .children(host)
            .flat_map(|c| std::iter::once(c).chain(before.children(c)))
            .filter_map(|n| match &n.kind {
                NodeKind::Target(t) => Some((t.channel, t.id)),
                _ => None,
            })
            .collect();
        if targets.is_empty() {
            jobs.push((h, ScanScope::Host));
            continue;
        }
        for (channel, target) in targets {
            for &lun in &wanted {
                jobs.push((
                    h.clone(),
                    ScanScope::Lun {
                        channel,
                        target,
                        lun,
                    },
                ));
            }
        }
    }
    if jobs.is_empty() {
        bail!("no host takes part in rescans under the policy");
    }
    let t0 = Instant::now();
    let tickets = jobs
        .iter()
        .map(|(h, s)| (h.clone(), ex.scanner.request(h, *s, "hbad find-luns")))
        .collect();
    let scans = collect(tickets, ex.scanner.timeout(), progress);
    let after = await_disks(sysfs, &before, &wanted, DISK_WAIT);
    let wall = t0.elapsed();
    let found: Vec<LunSighting> = after
        .luns()
        .into_iter()
        .filter_map(|n| sighting(&after, &before, &ex.vports, n, &wanted))
        .collect();
    let seen: BTreeSet<u64> = found.iter().map(|s| s.lun).collect();
    let missing = wanted.difference(&seen).copied().collect();
    Ok(FoundLuns {
        found,
        missing,
        scans,
        wall,
    })
}

/// How long find-luns waits for sd to attach the disks of the LUNs it found.
const DISK_WAIT: Duration = Duration::from_secs(5);

/// The graph once the new LUNs' disks are there. sd probes a new LUN asynchronously
/// after the scan write has returned (seen on the real kernel: up to all 8 of 8 new
/// LUNs had no disk yet), so a report made at once would miss their /dev nodes.
/// Only new disk-type LUNs are waited for, and never past `limit`.
fn await_disks(
    sysfs: &crate::sysfs::Sysfs,
    before: &Graph,
    wanted: &BTreeSet<u64>,
    limit: Duration,
) -> Graph {
    let deadline = Instant::now() + limit;
    loop {
        let g = Graph::load(sysfs);
        let pending = g.luns().into_iter().any(|n| {
            let NodeKind::Lun(l) = &n.kind else {
                return false;
            };
            // 0: direct access, 0xe: simplified direct access; both get an sd disk.
            wanted.contains(&l.hctl.lun)
                && matches!(l.scsi_type, Some(0) | Some(0x0e))
                && before.node(&n.devpath).is_none()
                && g.disk_of(n).is_none()
        });
        if !pending || Instant::now() >= deadline {
            return g;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Scans for the LUN numbers on every participating host, in parallel, and says
/// where each appeared. Each known target of a host gets `C T L` scans for exactly
/// these LUNs: no wildcard scan re-creates devices being removed or attaches LUNs
/// of unrelated arrays. A host with no known target gets a host scan.
pub fn find_luns(g: &Global, args: FindLunsArgs) -> anyhow::Result<ExitCode> {
    let policy = load_policy(g)?;
    load_graph(g)?;
    let ex = executor(g, &args.exec, &policy)?;
    let progress = !g.json && std::io::stderr().is_terminal();
    let FoundLuns {
        found: sightings,
        missing,
        scans,
        wall,
    } = find_luns_with(&ex, &policy, &args.luns, progress)?;
    let failed = scans
        .iter()
        .any(|r| matches!(r.outcome, ScanOutcome::Failed { .. }));
    let hung = scans.iter().any(|r| r.outcome == ScanOutcome::Hung);
    if g.json {
        print_json(&serde_json::json!({
            "found": sightings,
            "missing": missing,
            "scans": scans.into_iter().map(HostResult::of).collect::<Vec<_>>(),
            "wall_ms": millis(wall),
        }))?;
    } else {
        for s in &sightings {
            println!(
                "LUN {:<5} {:<12} {}{} target {} {}{}",
                s.lun,
                s.hctl.to_string(),
                s.host,
                s.vhba
                    .as_ref()
                    .map(|v| format!(" (vHBA {v})"))
                    .unwrap_or_default(),
                s.target_wwpn.map_or("-".to_string(), |w| w.to_string()),
                s.dev.as_deref().unwrap_or("(no disk)"),
                if s.new { "  new" } else { "" }
            );
            for l in &s.links {
                println!("          {l}");
            }
        }
        if !missing.is_empty() {
            println!(
                "not found: {}",
                missing
                    .iter()
                    .map(|l| l.to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
        let bad: Vec<&ScanReport> = scans
            .iter()
            .filter(|r| r.outcome != ScanOutcome::Done)
            .collect();
        for r in &bad {
            println!(
                "{} scan \"{}\" {}",
                r.host,
                r.scope,
                match &r.outcome {
                    ScanOutcome::Failed { error } => error.clone(),
                    _ => "hung".to_string(),
                }
            );
        }
        println!(
            "{} scan{} in {:.1} ms",
            scans.len(),
            if scans.len() == 1 { "" } else { "s" },
            millis(wall)
        );
    }
    // A hung scan may still bring the LUN: unfinished. Otherwise a LUN that is not
    // there after every scan succeeded is "not found", a failure of its own kind.
    if !failed && !hung && !missing.is_empty() {
        return Ok(ExitCode::from(exit::NOT_FOUND));
    }
    Ok(exit_status(failed, hung))
}

fn sighting(
    after: &Graph,
    before: &Graph,
    vports: &Vports,
    lun: &Node,
    wanted: &BTreeSet<u64>,
) -> Option<LunSighting> {
    let NodeKind::Lun(l) = &lun.kind else {
        return None;
    };
    if !wanted.contains(&l.hctl.lun) {
        return None;
    }
    let host = after.host_of(lun)?;
    let vhba = after.vport_of_vhba(host).and_then(|v| {
        vports
            .named(&v.devpath)
            .or_else(|| Some(v.name().to_string()))
    });
    let target_wwpn = after.remote_port_of(lun).and_then(|r| match &r.kind {
        NodeKind::RemotePort(rp) => rp.wwpn,
        _ => None,
    });
    let (dev, links) = match after.disk_of(lun).map(|d| &d.kind) {
        Some(NodeKind::Disk(d)) => (Some(format!("/dev/{}", d.info.name)), d.links.clone()),
        _ => (None, Vec::new()),
    };
    Some(LunSighting {
        lun: l.hctl.lun,
        hctl: l.hctl,
        host: host.name().to_string(),
        vhba,
        target_wwpn,
        dev,
        links,
        new: before.node(&lun.devpath).is_none(),
    })
}

#[cfg(test)]
mod lun_change_tests {
    use super::*;
    use crate::sim::{demo, Sim};

    #[test]
    fn a_scan_names_the_luns_that_appeared_and_went_per_host() {
        let dir = tempfile::tempdir().unwrap();
        let sim = Sim::demo_host(dir.path()).unwrap();
        let before = Graph::load(&sim.sysfs());
        let host = sim.host_by_wwpn(demo::HBA_A_WWPN).unwrap();
        sim.map_lun(demo::ARRAY_PORT_A, 2, demo::HBA_A_WWPN)
            .unwrap();
        let scan = sim.sysfs().path(&sim.host_devpath(host).unwrap());
        let scan = scan.join(format!("scsi_host/host{host}/scan"));
        sim.write_attr(&scan, "- - -").unwrap();
        let after = Graph::load(&sim.sysfs());
        let hosts: BTreeSet<u32> = [host].into();
        let changed = lun_changes(&before, &after, &hosts);
        assert_eq!(changed.len(), 1, "{changed:?}");
        let c = &changed[&host];
        assert_eq!(c.added.len(), 1, "{c:?}");
        assert!(c.added[0].starts_with(&format!("{host}:0:0:2 sd")), "{c:?}");
        assert!(c.gone.is_empty());
        // The other way round, the same LUN is gone; hosts not asked about are left out.
        let back = lun_changes(&after, &before, &hosts);
        assert_eq!(back[&host].gone, c.added);
        assert!(lun_changes(&before, &after, &BTreeSet::new()).is_empty());
    }

    #[test]
    fn a_rescan_asks_each_scanned_target_what_went_and_removes_it_by_policy() {
        use crate::exec::gone::Fate;
        let dir = tempfile::tempdir().unwrap();
        let sim = Sim::demo_host(&dir.path().join("sim")).unwrap();
        let a = sim.host_by_wwpn(demo::HBA_A_WWPN).unwrap();
        let b = sim.host_by_wwpn(demo::HBA_B_WWPN).unwrap();
        let sysfs = sim.sysfs();
        let ex = sim.executor(dir.path().join("owned.json"), Duration::from_secs(10));
        sim.map_lun(demo::ARRAY_PORT_A, 2, demo::HBA_A_WWPN)
            .unwrap();
        let scan = |h: u32| {
            let path = sysfs.path(&sim.host_devpath(h).unwrap());
            sim.write_attr(&path.join(format!("scsi_host/host{h}/scan")), "- - -")
                .unwrap();
        };
        scan(a);
        sim.unmap_lun(demo::ARRAY_PORT_A, 2, demo::HBA_A_WWPN)
            .unwrap();
        let graph = Graph::load(&sysfs);
        let host = |h: u32| HostRef {
            number: h,
            devpath: sim.host_devpath(h).unwrap(),
        };
        let jobs = vec![(host(a), ScanScope::Host), (host(b), ScanScope::Host)];
        // Host b's scan did not finish: its targets are not asked.
        let finished: BTreeSet<u32> = [a].into();
        let plan = find_gone_steps(&graph, &jobs, &finished, false);
        assert_eq!(plan.steps.len(), 1, "{:?}", plan.steps);
        let gone = gone_by_host(&ex.apply(&plan));
        let lun2 = Hctl {
            host: a,
            channel: 0,
            target: 0,
            lun: 2,
        };
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[&a].gone.len(), 1);
        assert_eq!(
            (gone[&a].gone[0].hctl, &gone[&a].gone[0].fate),
            (lun2, &Fate::Kept)
        );
        assert!(sim.luns().contains(&lun2));
        let plan = find_gone_steps(&graph, &jobs, &finished, true);
        let gone = gone_by_host(&ex.apply(&plan));
        assert_eq!(gone[&a].gone[0].fate, Fate::Removed);
        assert!(!sim.luns().contains(&lun2));
        // Asked again, nothing is gone any more.
        assert!(gone_by_host(&ex.apply(&find_gone_steps(
            &Graph::load(&sysfs),
            &jobs,
            &finished,
            true
        )))
        .is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_are_named_by_wwpn_host_or_auto() {
        assert_eq!(parse_parent("auto").unwrap(), ParentSelector::Auto);
        assert_eq!(
            parse_parent("host3").unwrap(),
            ParentSelector::Host { number: 3 }
        );
        assert_eq!(
            parse_parent("20:00:02:00:00:00:00:0b").unwrap(),
            ParentSelector::Wwpn {
                wwpn: Wwn::from_u64(0x2000_0200_0000_000b),
                wwnn: None
            }
        );
        let err = parse_parent("sda").unwrap_err().to_string();
        assert!(err.contains("WWPN, hostN, or auto"), "{err}");
    }

    #[test]
    fn vhba_names_follow_the_policy_rule() {
        assert!(check_name("fabric-a_1.db").is_ok());
        for bad in ["", ".hidden", "a/b", "has space", &"n".repeat(49)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn random_seeds_differ() {
        let (a, b) = (random_hex().unwrap(), random_hex().unwrap());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }
}
