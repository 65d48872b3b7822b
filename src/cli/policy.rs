//! `check`, `plan`, `wwn`: the policy as hbad reads it, before anything is done.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};

use super::Global;
use crate::graph::Graph;
use crate::plan::{plan, Recorded};
use crate::policy::{Policy, PolicyErrors};
use crate::sysfs::Detail;
use crate::terminal::printable;
use crate::wwn::WwnStyle;

/// Reads the policy hbad would use: `--policy`, or the installed files.
pub fn load_policy(g: &Global) -> anyhow::Result<Policy> {
    let policy = g.policy_loader().load()?;
    for w in &policy.warnings {
        eprintln!("warning: {w}");
    }
    Ok(policy)
}

#[derive(Debug, Args)]
#[command(
    after_help = "A FILE is checked alone, as `hbad --policy FILE` reads it: \
drop-ins are not merged. A DIR is checked as hbad.toml and hbad.d/ in it. To check a \
candidate main file with the drop-ins that are installed (a vHBA name or WWPN set in \
both is then found), use --with-dropins: `validate: hbad check --with-dropins %s`."
)]
pub struct CheckArgs {
    /// Policy files or directories to check; `-` reads one file from standard
    /// input; the installed policy when none.
    pub paths: Vec<PathBuf>,
    /// Check each FILE in place of the main file (/etc/hbad/hbad.toml, or hbad.toml
    /// in a --policy directory), merged with the installed drop-ins, as `hbad run`
    /// would read it once installed.
    #[arg(long, requires = "paths")]
    pub with_dropins: bool,
}

/// One thing `check` reads and validates: a loader, or standard input.
type PolicyCheck = Box<dyn Fn() -> Result<Policy, PolicyErrors>>;

/// Validates; exit 0 when every file is good. Fit for Ansible's `validate: hbad check %s`.
pub fn check(g: &Global, args: CheckArgs) -> anyhow::Result<ExitCode> {
    let stdin = Path::new("-");
    if args.paths.iter().filter(|p| p.as_path() == stdin).count() > 1 {
        anyhow::bail!("`-` (standard input) can be given once");
    }
    if args.with_dropins && args.paths.iter().any(|p| p.as_path() == stdin) {
        anyhow::bail!(
            "--with-dropins takes files: write the candidate to a file (Ansible's %s is one)"
        );
    }
    let checks: Vec<(String, PolicyCheck)> = if args.paths.is_empty() {
        let shown = g
            .policy
            .as_ref()
            .map_or("installed policy".to_string(), |p| {
                printable(&p.display().to_string()).into_owned()
            });
        let loader = g.policy_loader();
        vec![(shown, Box::new(move || loader.load()))]
    } else {
        args.paths
            .iter()
            .map(|p| {
                let shown = printable(&p.display().to_string()).into_owned();
                let check: PolicyCheck = if p == stdin {
                    Box::new(check_stdin)
                } else if args.with_dropins {
                    let loader = g.loader_with_dropins(p);
                    let file = p.clone();
                    Box::new(move || {
                        // The loader skips a missing main file; a candidate is never.
                        if std::fs::symlink_metadata(&file).is_err() {
                            return Err(PolicyErrors(vec![crate::policy::PolicyError::new(
                                crate::policy::Origin::file(&file),
                                "no such policy file",
                            )]));
                        }
                        loader.load()
                    })
                } else {
                    let loader = g.loader_for(Some(p.clone()));
                    Box::new(move || loader.load())
                };
                (shown, check)
            })
            .collect()
    };
    let mut ok = true;
    let mut report = Vec::new();
    for (shown, check) in checks {
        let result = check();
        match &result {
            Ok(p) => {
                if !g.json {
                    for w in &p.warnings {
                        eprintln!("warning: {w}");
                    }
                    println!(
                        "{shown}: ok ({} vHBA{}, {} file{})",
                        p.vhbas.len(),
                        plural(p.vhbas.len()),
                        p.files.len(),
                        plural(p.files.len())
                    );
                }
            }
            Err(errors) => {
                ok = false;
                if !g.json {
                    eprintln!("{errors}");
                    eprintln!(
                        "{shown}: rejected ({} error{})",
                        errors.0.len(),
                        plural(errors.0.len())
                    );
                }
            }
        }
        if g.json {
            report.push(serde_json::json!({
                "path": shown,
                "ok": result.is_ok(),
                "errors": result.as_ref().err().map(|e| &e.0),
                "warnings": result.as_ref().ok().map(|p| &p.warnings),
            }));
        }
    }
    if g.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `hbad check -`: one policy file's bytes from standard input, read as the loader
/// reads a file (at most 1 MiB) and checked as it checks one.
fn check_stdin() -> Result<Policy, PolicyErrors> {
    use std::io::Read;
    let name = Path::new("(standard input)");
    let refused = |message: String| {
        PolicyErrors(vec![crate::policy::PolicyError::new(
            crate::policy::Origin::file(name),
            message,
        )])
    };
    let max = crate::policy::limits::MAX_FILE_BYTES;
    let mut bytes = Vec::new();
    std::io::stdin()
        .lock()
        .take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| refused(format!("cannot read: {e}")))?;
    if bytes.len() as u64 > max {
        return Err(refused(format!(
            "more than {max} bytes; a policy file may hold at most {max} bytes (1 MiB)"
        )));
    }
    Policy::from_piped(name, &bytes, &crate::policy::Environment::from_host())
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// What hbad would do now, and why.
#[derive(Debug, Args)]
#[command(
    after_help = "Exit status: 0 with --check when nothing would change (steps that \
only wait or keep change nothing); 2 with --check when changes are pending; 1 when the \
policy or sysfs cannot be read."
)]
pub struct PlanArgs {
    /// Exit 2 when `hbad apply` would change something (for configuration management
    /// and monitoring), 0 when the host is as the policy says.
    #[arg(long)]
    pub check: bool,
}

pub fn show_plan(g: &Global, args: PlanArgs) -> anyhow::Result<ExitCode> {
    let policy = load_policy(g)?;
    let graph = load_graph(g)?;
    // Only shows: a corrupt state file reads as no records and is left for
    // `hbad apply` or the agent to move aside. Creates hbad stopped in are
    // settled against the vports present, in what is shown only.
    let state = policy
        .owned_state()
        .rebuilding_from(crate::exec::vport::vport_marks(&g.sysfs()));
    let recorded = Recorded::from_records(&state.all_read_only()?);
    let p = plan(&policy, &graph, &recorded, &[]);
    if g.json {
        println!("{}", serde_json::to_string_pretty(&p)?);
    } else if p.steps.is_empty() {
        println!(
            "nothing to do: {} vHBA{} present as declared",
            policy.vhbas.len(),
            plural(policy.vhbas.len())
        );
    } else {
        for step in &p.steps {
            println!("{step}");
        }
    }
    if args.check && p.steps.iter().any(|s| s.acts()) {
        return Ok(ExitCode::from(super::exit::UNFINISHED));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn load_graph(g: &Global) -> anyhow::Result<Graph> {
    load_graph_with(g, Detail::Full)
}

/// The graph for a view that shows only some attributes (see [`Detail`]).
pub fn load_graph_with(g: &Global, detail: Detail) -> anyhow::Result<Graph> {
    let sysfs = g.sysfs();
    let root: &Path = sysfs.root();
    std::fs::metadata(root.join("class"))
        .with_context(|| format!("cannot read {}: is sysfs mounted there?", root.display()))?;
    Ok(Graph::load_with(&sysfs, detail))
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum WwnFormat {
    /// 20:01:00:1b:32:a9:da:4e, as switches and arrays show them
    Colon,
    /// 0x2001001b32a9da4e, as sysfs shows them
    Sysfs,
    /// 2001001b32a9da4e
    Bare,
}

#[derive(Debug, Args)]
pub struct WwnArgs {
    /// How to write the WWNs.
    #[arg(long, value_enum, default_value = "colon")]
    pub format: WwnFormat,
}

/// The WWNs each declared vHBA uses on this host, before it exists: for zoning.
pub fn wwn(g: &Global, args: WwnArgs) -> anyhow::Result<ExitCode> {
    let policy = load_policy(g)?;
    let style = match args.format {
        WwnFormat::Colon => WwnStyle::Colon,
        WwnFormat::Sysfs => WwnStyle::Sysfs,
        WwnFormat::Bare => WwnStyle::Bare,
    };
    if g.json {
        let rows: Vec<_> = policy
            .vhbas
            .iter()
            .map(|v| {
                serde_json::json!({
                    "name": v.name, "wwpn": v.wwpn.format(style), "wwnn": v.wwnn.format(style),
                    "wwpn_derived": v.wwpn_derived, "wwnn_derived": v.wwnn_derived,
                    "parent": v.parent, "origin": v.origin.to_string(),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    if policy.vhbas.is_empty() {
        eprintln!("no vHBAs declared");
        return Ok(ExitCode::SUCCESS);
    }
    let name_w = policy
        .vhbas
        .iter()
        .map(|v| v.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let wwn_w = policy.vhbas[0].wwpn.format(style).len();
    println!(
        "{:name_w$}  {:wwn_w$}  {:wwn_w$}  SOURCE",
        "NAME", "WWPN", "WWNN"
    );
    for v in &policy.vhbas {
        let source = match (v.wwpn_derived, v.wwnn_derived) {
            (false, false) => "policy".to_string(),
            (true, true) => format!("derived (seed: {})", policy.wwn.seed_from),
            (false, true) => "wwpn from policy, wwnn derived".to_string(),
            (true, false) => "wwpn derived, wwnn from policy".to_string(),
        };
        println!(
            "{:name_w$}  {}  {}  {source}",
            v.name,
            v.wwpn.format(style),
            v.wwnn.format(style)
        );
    }
    Ok(ExitCode::SUCCESS)
}
