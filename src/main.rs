//! The `hbad` command: parses the command line and hands off to `hbad::cli`.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use hbad::cli::{exit, Command};

fn main() -> ExitCode {
    let cli = match hbad::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // --help and --version are not errors; a bad command line exits with
            // its own status, apart from the commands' "unfinished" (2).
            return if e.use_stderr() {
                ExitCode::from(exit::USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    if !matches!(cli.command, Command::Run(_)) {
        end_with_the_reader();
    }
    match hbad::cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            // One line per cause, most specific last, as zincati prints them. A
            // closed stderr loses the message, never the exit status.
            let mut stderr = std::io::stderr().lock();
            let _ = writeln!(stderr, "error: {err}");
            for cause in err.chain().skip(1) {
                let _ = writeln!(stderr, "  -> {cause}");
            }
            if err.chain().any(|c| c.is::<hbad::cli::NotFound>()) {
                ExitCode::from(exit::NOT_FOUND)
            } else if err.chain().any(|c| c.is::<hbad::cli::BadArgument>()) {
                ExitCode::from(exit::USAGE)
            } else {
                ExitCode::from(exit::FAILED)
            }
        }
    }
}

/// A command whose stdout or stderr reader went away (`hbad plan | head -1`,
/// `hbad status | grep -q`) ends as any filter does, by SIGPIPE, instead of
/// panicking at the next `println!` with exit 101 (Rust ignores SIGPIPE, so the
/// write returns EPIPE and `println!` panics on it). Not for `run`: the agent's
/// logging must outlive a closed stderr, and its writes to a gone reader are
/// errors it reports. The commands' only other pipe writes, a worker's stdin, are
/// made before the worker runs (`sysfs::writes::run_child`), so they never raise it.
fn end_with_the_reader() {
    // SAFETY: setting a signal's disposition to SIG_DFL installs no handler; it is
    // done before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
