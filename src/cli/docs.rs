//! `hbad generate`: man pages and shell completions made from the clap definition, so
//! that `make install` and the packages need no tool besides hbad itself, and the
//! pages can never drift from the options the binary really takes.
//!
//! Man pages are one per command, as git's are: hbad(8) lists the subcommands and
//! hbad-<subcommand>(8) holds each one's options. Section 8 because hbad is an
//! administration tool and daemon. hbad.toml(5) is written by hand (man/hbad.toml.5):
//! the policy format is not in clap.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, CommandFactory, Subcommand, ValueEnum};
use clap_complete::Shell;

#[cfg(test)]
use super::exit;
use super::Cli;

#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[command(subcommand)]
    pub what: Generate,
}

#[derive(Debug, Subcommand)]
pub enum Generate {
    /// hbad.8 and one hbad-<subcommand>.8 per visible subcommand, into DIR.
    Man { dir: PathBuf },
    /// The completion script of SHELL into DIR, named as that shell looks it up
    /// (bash: hbad, zsh: _hbad, fish: hbad.fish).
    Completions {
        #[arg(value_enum)]
        shell: CompletionShell,
        dir: PathBuf,
    },
}

/// The shells distributions ship completions for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

impl CompletionShell {
    fn shell(self) -> Shell {
        match self {
            CompletionShell::Bash => Shell::Bash,
            CompletionShell::Zsh => Shell::Zsh,
            CompletionShell::Fish => Shell::Fish,
        }
    }

    /// The file name the shell's completion loader looks for. bash-completion loads
    /// `completions/<command>` on demand, without an extension.
    pub fn file_name(self) -> &'static str {
        match self {
            CompletionShell::Bash => "hbad",
            CompletionShell::Zsh => "_hbad",
            CompletionShell::Fish => "hbad.fish",
        }
    }
}

/// hbad(8)'s EXIT STATUS: the codes (the same for every command, [`super::exit`])
/// and what each command uses.
const EXIT_STATUS: &str = ".SH \"EXIT STATUS\"\n\
Every command uses the same codes:\n\
.TP\n.B 0\nDone, healthy, or nothing to do.\n\
.TP\n.B 1\nAn action or check failed: the kernel refused a write, the policy is invalid, \
a file cannot be read. For \\fBstatus\\fR: running, but degraded.\n\
.TP\n.B 2\nNothing failed, but something is unfinished: a vHBA waits for its parent's link, \
a scan hung past its timeout. For \\fBplan \\-\\-check\\fR: changes are pending.\n\
.TP\n.B 3\n\\fBstatus\\fR only: hbad is not running, or its status file is stale (its pid is \
gone, is not hbad, or is another hbad than the one that wrote it), as LSB init scripts \
and \\fBsystemctl status\\fR say it.\n\
.TP\n.B 4\nWhat the command line names is not there: a device for \\fBshow\\fR, \
\\fBluns\\fR, \\fBdestroy\\fR, a host for \\fBrescan\\fR, a LUN that did not appear \
for \\fBfind\\-luns\\fR.\n\
.TP\n.B 64\nThe command line is wrong: an unknown option, a missing or malformed argument \
(EX_USAGE of sysexits.h).\n\
.PP\n\
By command: \\fBcheck\\fR 0 valid, 1 invalid. \\fBplan\\fR 0; with \\-\\-check 2 when \
\\fBapply\\fR would change something. \\fBapply\\fR, \\fBcreate\\fR, \\fBdestroy\\fR, \
\\fBrescan\\fR 0, 1, 2 or 4. \\fBfind\\-luns\\fR 0 when every LUN is there, 4 when one \
did not appear, 2 when a scan hung (the LUN may still come), 1 when a scan failed. \
\\fBstatus\\fR 0 healthy, 1 degraded, 3 not running or stale. \\fBudev\\-id\\fR 0 for a \
disk on one of hbad's vHBAs, 1 for any other (udev's PROGRAM test). \\fBrun\\fR 0 after \
SIGTERM, 1 when it cannot start. \\fBlist\\fR, \\fBtree\\fR, \\fBshow\\fR, \\fBluns\\fR, \
\\fBwwn\\fR, \\fBimport\\-libvirt\\fR 0, 1 or 4.\n";

/// hbad(8)'s FILES.
const FILES: &str = ".SH FILES\n\
.TP\n.I /etc/hbad/hbad.toml\nThe policy: the vHBAs to keep, how to rescan (hbad.toml(5)).\n\
.TP\n.I /usr/lib/hbad/hbad.d/, /run/hbad/hbad.d/, /etc/hbad/hbad.d/\n\
Policy drop-ins (*.toml), read after the main file in file-name order; a later directory's \
file of the same name wins, a link to /dev/null masks it.\n\
.TP\n.I /run/hbad/status.json\nWhat the running agent reports; read by \\fBhbad status\\fR. \
Replaced when what it says changes, and at least every 30 s though nothing does (its \
\\fBupdated\\fR is the agent's proof of life): \\fBhbad status \\-\\-max\\-age\\fR calls \
an older file stale. A quiet agent otherwise sleeps: it polls the kernel only while \
something waits on a change no event announces (a parent's link, a vHBA logging in, \
a Blocked remote port).\n\
.TP\n.I /var/lib/hbad/owned-vhbas.json\nThe vHBAs hbad created, and its creates \
under way (the policy's [ownership] state_file), so it deletes only its own and \
loses none it was stopped in the middle of making.\n\
.TP\n.I /var/lib/prometheus/node\\-exporter/hbad.prom\nFleet metrics for node_exporter's \
textfile collector, written when that directory exists.\n";

/// hbad(8)'s EXAMPLES.
const EXAMPLES: &str = ".SH EXAMPLES\n\
Check a policy before installing it, then see what the agent would do:\n\
.PP\n.nf\n.RS\nhbad check /tmp/hbad.toml && install \\-m 644 /tmp/hbad.toml /etc/hbad/\n\
hbad plan \\-\\-check || echo \"changes pending\"\n.RE\n.fi\n\
.PP\nPrint the WWPNs to zone before the vHBAs exist:\n\
.PP\n.nf\n.RS\nhbad wwn\n.RE\n.fi\n\
.PP\nFind LUN 12 the array just mapped, and get libvirt disk XML for it:\n\
.PP\n.nf\n.RS\nhbad find\\-luns 12\nhbad luns \\-\\-libvirt\\-disk\n.RE\n.fi\n\
.PP\nA monitoring check (exit 0 healthy, 1 degraded, 3 not running):\n\
.PP\n.nf\n.RS\nhbad status \\-\\-max\\-age 10min\n.RE\n.fi\n";

/// Pages every hbad man page points to.
const SEE_ALSO: &str = ".SH \"SEE ALSO\"\n\
.BR hbad.toml (5),\n\
.BR systemd.service (5),\n\
.BR udev (7),\n\
.BR virsh (1)\n\
.PP\n\
The policy example: /usr/share/doc/hbad/examples/\n";

pub fn generate(args: GenerateArgs) -> anyhow::Result<ExitCode> {
    match args.what {
        Generate::Man { dir } => {
            let date = page_date(std::env::var("SOURCE_DATE_EPOCH").ok().as_deref())?;
            for path in write_man_pages(&dir, &date)? {
                println!("{}", path.display());
            }
        }
        Generate::Completions { shell, dir } => {
            println!("{}", write_completion(shell, &dir)?.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The date in the pages' .TH line: SOURCE_DATE_EPOCH when the build sets it (Debian
/// and RPM builds do, so packages are reproducible), else today. clap_mangen writes an
/// empty date as nothing at all, which shifts the version into the date column and
/// drops the manual's name, so there is always a date.
pub fn page_date(source_date_epoch: Option<&str>) -> anyhow::Result<String> {
    let secs = match source_date_epoch {
        Some(text) => text.trim().parse::<u64>().map_err(|_| {
            anyhow::anyhow!("SOURCE_DATE_EPOCH `{text}` is not a number of seconds")
        })?,
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    Ok(civil_date(secs / 86_400))
}

/// YYYY-MM-DD of a day count since 1970-01-01 (Howard Hinnant's civil_from_days).
fn civil_date(days: u64) -> String {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// Writes hbad.8 and hbad-<sub>.8 (hidden subcommands left out); returns the paths.
pub fn write_man_pages(dir: &Path, date: &str) -> std::io::Result<Vec<PathBuf>> {
    fs::create_dir_all(dir)?;
    let mut cmd = Cli::command().disable_help_subcommand(true);
    // Building sets each subcommand's display name to "hbad-<sub>", the page name.
    cmd.build();
    let main_sections = [EXIT_STATUS, FILES, EXAMPLES].concat();
    let mut written = vec![write_page(cmd.clone(), dir, date, &main_sections)?];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        written.push(write_page(sub.clone(), dir, date, "")?);
    }
    Ok(written)
}

fn write_page(
    cmd: clap::Command,
    dir: &Path,
    date: &str,
    sections: &str,
) -> std::io::Result<PathBuf> {
    let man = clap_mangen::Man::new(cmd)
        .section("8")
        .date(date)
        .manual("hbad manual")
        .source(format!("hbad {}", env!("CARGO_PKG_VERSION")));
    let path = dir.join(man.get_filename());
    let mut page = Vec::new();
    man.render(&mut page)?;
    page.extend_from_slice(sections.as_bytes());
    page.extend_from_slice(SEE_ALSO.as_bytes());
    let mut file = fs::File::create(&path)?;
    file.write_all(&page)?;
    Ok(path)
}

/// Writes SHELL's completion script into DIR; returns its path.
pub fn write_completion(shell: CompletionShell, dir: &Path) -> std::io::Result<PathBuf> {
    fs::create_dir_all(dir)?;
    let mut cmd = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell.shell(), &mut cmd, "hbad", &mut script);
    let path = dir.join(shell.file_name());
    fs::write(&path, script)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_page_per_visible_subcommand_in_section_8() {
        let dir = tempfile::tempdir().unwrap();
        let pages = write_man_pages(dir.path(), "2026-11-23").unwrap();
        let names: Vec<String> = pages
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names[0], "hbad.8");
        for want in [
            "hbad-check.8",
            "hbad-run.8",
            "hbad-rescan.8",
            "hbad-udev-id.8",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
        }
        // Hidden plumbing stays out of the manual.
        for hidden in ["hbad-write-attr.8", "hbad-generate.8", "hbad-help.8"] {
            assert!(!names.iter().any(|n| n == hidden), "{hidden} in {names:?}");
        }
        let main = fs::read_to_string(&pages[0]).unwrap();
        assert!(main.starts_with(".ie \\n(.g .ds Aq"), "not roff:\n{main}");
        // All five .TH fields, so man shows the version and the manual's name.
        assert!(
            main.contains(".TH hbad 8 2026-11-23 \"hbad 0.1.0\" \"hbad manual\""),
            "{main}"
        );
        assert!(
            main.contains("hbad\\-rescan(8)"),
            "no subcommand list:\n{main}"
        );
        assert!(main.contains(".BR hbad.toml (5)"), "{main}");
        for section in [".SH \"EXIT STATUS\"", ".SH FILES", ".SH EXAMPLES"] {
            assert!(main.contains(section), "hbad.8 lacks {section}");
        }
        // Every exit code hbad uses is explained there.
        for code in [
            exit::OK,
            exit::FAILED,
            exit::UNFINISHED,
            exit::NOT_RUNNING,
            exit::NOT_FOUND,
            exit::USAGE,
        ] {
            assert!(
                main.contains(&format!(".B {code}\n")),
                "code {code} undocumented"
            );
        }
        let rescan = fs::read_to_string(dir.path().join("hbad-rescan.8")).unwrap();
        assert!(
            rescan.contains("\\-\\-lip"),
            "rescan page lacks --lip:\n{rescan}"
        );
    }

    #[test]
    fn page_dates_follow_source_date_epoch() {
        assert_eq!(page_date(Some("0")).unwrap(), "1970-01-01");
        assert_eq!(page_date(Some("951782400")).unwrap(), "2000-02-29");
        assert_eq!(page_date(Some("1795392000\n")).unwrap(), "2026-11-23");
        assert_eq!(page_date(Some("4107542399")).unwrap(), "2100-02-28");
        let err = page_date(Some("yesterday")).unwrap_err().to_string();
        assert!(err.contains("SOURCE_DATE_EPOCH `yesterday`"), "{err}");
        assert_eq!(page_date(None).unwrap().len(), 10);
    }

    #[test]
    fn completions_are_named_for_each_shells_loader_and_know_the_subcommands() {
        let dir = tempfile::tempdir().unwrap();
        for shell in [
            CompletionShell::Bash,
            CompletionShell::Zsh,
            CompletionShell::Fish,
        ] {
            let path = write_completion(shell, dir.path()).unwrap();
            assert_eq!(path.file_name().unwrap(), shell.file_name());
            let text = fs::read_to_string(&path).unwrap();
            // clap_complete also completes hidden subcommands (write-attr, generate);
            // harmless, so only the visible ones are checked for.
            for sub in ["find-luns", "udev-id", "--sysfs-root"] {
                assert!(text.contains(sub), "{shell:?} lacks {sub}:\n{text}");
            }
        }
    }
}
