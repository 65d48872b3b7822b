//! The command line: one module per subcommand family.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::sysfs::Sysfs;

pub mod act;
pub mod daemon;
pub mod demo;
pub mod details;
pub mod docs;
pub mod inspect;
pub mod libvirt;
pub mod policy;
pub mod render;
pub mod udev;
pub mod watch;

/// Exit statuses, the same for every command (hbad(8), EXIT STATUS).
pub mod exit {
    /// Done, healthy, or nothing to do.
    pub const OK: u8 = 0;
    /// An action or check failed, or hbad could not do what was asked.
    pub const FAILED: u8 = 1;
    /// Nothing failed, but something is not done yet: a vHBA waits for its parent,
    /// a scan hung past its timeout; for `plan --check`, changes are pending.
    pub const UNFINISHED: u8 = 2;
    /// `status`: the agent is not running, or its status file is stale (LSB).
    pub const NOT_RUNNING: u8 = 3;
    /// What the command line names (a device, host, vHBA or LUN) is not there.
    pub const NOT_FOUND: u8 = 4;
    /// The command line itself is wrong (sysexits.h EX_USAGE).
    pub const USAGE: u8 = 64;
}

/// A device, host, vHBA or LUN named on the command line that is not there; `hbad`
/// exits with [`exit::NOT_FOUND`] for it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotFound(pub String);

/// A command-line argument that clap accepted but hbad cannot use (a device name
/// that is no name, a missing choice between arguments); `hbad` exits with
/// [`exit::USAGE`] for it, as for clap's own errors.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadArgument(pub String);

/// Whether text for this stream may carry ANSI escapes (bold, colour): only on a
/// terminal, and never when `NO_COLOR` is set to anything but the empty string
/// (no-color.org). Logs and pipes get plain text.
pub fn ansi_for(stream: &impl std::io::IsTerminal) -> bool {
    ansi_allowed(
        stream.is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    )
}

/// [`ansi_for`]'s rule, apart from the process's environment.
pub fn ansi_allowed(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

/// What hbad(8) says under EXIT STATUS.
pub const EXIT_STATUS: &str = "\
0    done, healthy, or nothing to do.
1    an action or check failed (a kernel write refused, an invalid policy, a \
file that cannot be read); for status: running but degraded.
2    nothing failed but something is unfinished: a vHBA waiting for its parent, a \
scan hung past its timeout; for plan --check: changes are pending.
3    status only: hbad is not running, or its status file is stale.
4    what the command names (a device, host, vHBA or LUN) is not there.
64   the command line is wrong (unknown option, missing argument).";

#[derive(Debug, Parser)]
#[command(
    name = "hbad",
    version,
    about = "Keeps NPIV vHBAs and rescans exactly the SCSI host/target that reported new storage"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Args)]
pub struct Global {
    /// Where sysfs is mounted (a fixture or simulator tree in tests).
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        default_value = "/sys",
        env = "HBAD_SYSFS_ROOT"
    )]
    pub sysfs_root: PathBuf,
    /// Where /dev is (for the disk/by-* links).
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        default_value = "/dev",
        env = "HBAD_DEV_ROOT"
    )]
    pub dev_root: PathBuf,
    /// Print JSON instead of text meant for people.
    #[arg(long, global = true)]
    pub json: bool,
    /// A policy file, or a directory holding hbad.toml and hbad.d/, instead of the
    /// installed policy (/etc/hbad/hbad.toml and the hbad.d drop-ins).
    #[arg(long, global = true, value_name = "PATH", env = "HBAD_POLICY")]
    pub policy: Option<PathBuf>,
    /// Read policy files whoever owns them and whatever their mode. By default a
    /// policy file and its directory must be owned by root (or the user running hbad)
    /// and not writable by group or others, as sshd's StrictModes; this is for test
    /// trees and copies of a policy, never for /etc/hbad.
    #[arg(
        long,
        global = true,
        env = "HBAD_NO_STRICT_PERMS",
        action = clap::ArgAction::SetTrue,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub no_strict_perms: bool,
}

impl Global {
    /// How this command finds and reads the policy (`--policy`, `--no-strict-perms`).
    pub fn policy_loader(&self) -> crate::policy::Loader {
        self.loader_for(self.policy.clone())
    }

    /// The same, for a policy path given to `hbad check`.
    pub fn loader_for(&self, policy: Option<PathBuf>) -> crate::policy::Loader {
        crate::policy::Loader {
            policy,
            search: crate::policy::SearchPaths::default(),
            perms: if self.no_strict_perms {
                crate::policy::Perms::Relaxed
            } else {
                crate::policy::Perms::Strict
            },
        }
    }

    /// `hbad check --with-dropins FILE`: FILE in place of the main file, with the
    /// drop-ins this command would read (those of a `--policy` directory, none for a
    /// `--policy` file, else the installed ones).
    pub fn loader_with_dropins(&self, file: &std::path::Path) -> crate::policy::Loader {
        let installed = match &self.policy {
            Some(p) if p.is_dir() => crate::policy::SearchPaths::from_override(p),
            Some(_) => crate::policy::SearchPaths {
                main: PathBuf::new(),
                dropin_dirs: Vec::new(),
            },
            None => crate::policy::SearchPaths::default(),
        };
        crate::policy::Loader {
            search: crate::policy::SearchPaths {
                main: file.to_path_buf(),
                dropin_dirs: installed.dropin_dirs,
            },
            ..self.loader_for(None)
        }
    }

    pub fn sysfs(&self) -> Sysfs {
        Sysfs::new(&self.sysfs_root, &self.dev_root)
    }
}

const RUN_ABOUT: &str = "The agent: keep the policy's vHBAs and rescan what reports new \
storage. Run by the systemd unit (Type=notify).

Start-up: the kernel uevent socket is opened, sysfs read, the policy loaded (errors stop \
start-up), and every declared vHBA whose parent can take one is created. READY=1 is \
sent once each of those has been tried (made, or refused with a reason); while creates \
are still in the kernel the start timeout is extended (EXTEND_TIMEOUT_USEC) and STATUS= \
says which, and READY comes within 45 s whatever they do. A parent whose fabric link is \
down never holds READY: STATUS= says \"waiting for fabric link of hostN for NAME, N s \
left\", the vHBA is made when the link comes up, and past its link_wait the agent runs \
degraded (STATUS=, hbad status): never a failed start or a restart.

Every kernel write runs on a per-host worker in a child process, never on the event \
loop: a hung host costs that host only. SIGHUP reloads the policy (a bad one keeps the \
old). SIGTERM/SIGINT: no new writes, up to 5 s for writes not known to hang, then exit \
0, logging each write left in the kernel.";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Cap {
    /// Every SCSI host.
    #[value(name = "scsi_host", alias = "scsi-host")]
    ScsiHost,
    /// SCSI hosts with an FC personality.
    #[value(name = "fc_host", alias = "fc-host")]
    FcHost,
    /// FC hosts that can create vports (NPIV).
    Vports,
    /// Hosts that are NPIV vports (vHBAs).
    Vhba,
    /// FC remote ports.
    Rport,
    /// SCSI targets.
    Target,
    /// SCSI devices (LUNs).
    Lun,
    /// Disks on SCSI devices.
    Block,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List devices, optionally of one kind (like `virsh nodedev-list --cap`).
    List {
        #[arg(long, value_enum)]
        cap: Option<Cap>,
    },
    /// Show hosts, vHBAs, remote ports, targets, LUNs and disks as a tree.
    Tree,
    /// Show one device: host5, scsi_host5, a WWPN, H:C:T:L or sdX.
    Show {
        device: String,
        #[command(flatten)]
        libvirt: libvirt::ShowArgs,
    },
    /// List LUNs with their stable paths, optionally of one host or WWPN.
    Luns {
        filter: Option<String>,
        #[command(flatten)]
        libvirt: libvirt::LunsArgs,
    },
    /// Turn libvirt fc_host storage pools (pool-dumpxml) into [[vhba]] policy on stdout.
    ImportLibvirt(libvirt::ImportArgs),
    /// Validate policy files (exit 0 when valid), e.g. as Ansible's `validate: hbad check %s`.
    Check(policy::CheckArgs),
    /// Show what hbad would do now, and why.
    Plan(policy::PlanArgs),
    /// Show the WWPN/WWNN each declared vHBA uses on this host, for zoning in advance.
    Wwn(policy::WwnArgs),
    /// Follow kernel events as the graph sees them.
    Watch(watch::WatchArgs),
    /// Plan, then create/delete vHBAs and scan as the policy says; report each step.
    Apply(act::ApplyArgs),
    /// Create a transient vHBA by hand on a parent port.
    Create(act::CreateArgs),
    /// Delete a vHBA (only hbad's unless --force; never a physical port).
    Destroy(act::DestroyArgs),
    /// Scan hosts, all in parallel, with per-host results (never a LIP unless --lip).
    Rescan(act::RescanArgs),
    /// Scan for these LUN numbers and say where each appeared.
    FindLuns(act::FindLunsArgs),
    /// One sysfs write of stdin, for the commands above (exit status 0 or the errno).
    #[command(hide = true)]
    WriteAttr { path: PathBuf },
    /// REPORT LUNS through one disk node (checked to be MAJ:MIN), one LUN a line.
    #[command(hide = true)]
    ReportLuns { node: PathBuf, dev: String },
    /// `device/delete` of a LUN while its disk (NODE MAJ:MIN) is open exclusively:
    /// `deleted`, or `claimed NAME...` when the kernel has it claimed.
    #[command(hide = true)]
    DeleteLun {
        delete: PathBuf,
        #[arg(num_args = 2.., value_name = "NODE MAJ:MIN")]
        nodes: Vec<String>,
    },
    /// The agent: keep the policy's vHBAs and rescan what reports new storage (systemd unit).
    #[command(long_about = RUN_ABOUT)]
    Run(daemon::RunArgs),
    /// What the running agent reports: vHBAs, last scans, hung hosts, counters.
    Status(daemon::StatusArgs),
    /// For udev rules: the vHBA, target WWPN and LUN of a disk reached through one of
    /// hbad's vHBAs, as KEY=value lines (exit 1 for other disks).
    #[command(name = "udev-id")]
    UdevId(udev::UdevIdArgs),
    /// Run hbad on a simulated host: two NPIV HBAs, a SAN presenting new LUNs.
    Demo(demo::DemoArgs),
    /// Man pages and shell completions, for `make install` and the packages.
    #[command(hide = true)]
    Generate(docs::GenerateArgs),
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let g = &cli.global;
    match cli.command {
        Command::List { cap } => inspect::list(g, cap),
        Command::Tree => inspect::tree(g),
        Command::Show { device, libvirt: l } if l.xml => libvirt::show_xml(g, &device),
        Command::Show { device, .. } => inspect::show(g, &device),
        Command::Luns { filter, libvirt: l } if l.libvirt_disk => {
            libvirt::luns_disks(g, filter.as_deref(), &l)
        }
        Command::Luns { filter, .. } => inspect::luns(g, filter.as_deref()),
        Command::ImportLibvirt(args) => libvirt::import(g, args),
        Command::Check(args) => policy::check(g, args),
        Command::Plan(args) => policy::show_plan(g, args),
        Command::Wwn(args) => policy::wwn(g, args),
        Command::Watch(args) => watch::run(g, args),
        Command::Demo(args) => demo::run(g, args),
        Command::Run(args) => daemon::run(g, args),
        Command::UdevId(args) => udev::udev_id(g, args),
        Command::Status(args) => daemon::status(g, args),
        Command::Apply(args) => act::apply(g, args),
        Command::Create(args) => act::create(g, args),
        Command::Destroy(args) => act::destroy(g, args),
        Command::Rescan(args) => act::rescan(g, args),
        Command::FindLuns(args) => act::find_luns(g, args),
        Command::WriteAttr { path } => Ok(act::write_attr(g, &path)),
        Command::ReportLuns { node, dev } => Ok(act::report_luns(&node, &dev)),
        Command::DeleteLun { delete, nodes } => Ok(act::delete_lun(g, delete, nodes)),
        Command::Generate(args) => docs::generate(args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn ansi_only_on_a_terminal_without_no_color() {
        assert!(ansi_allowed(true, None));
        assert!(!ansi_allowed(false, None));
        assert!(!ansi_allowed(true, Some(OsStr::new("1"))));
        // An empty NO_COLOR does not count, as no-color.org says.
        assert!(ansi_allowed(true, Some(OsStr::new(""))));
    }
}
