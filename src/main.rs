//! The `hbad` command: parses the command line and hands off to `hbad::cli`.

use std::process::ExitCode;

use clap::Parser;
use hbad::cli::exit;

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
    match hbad::cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            // One line per cause, most specific last, as zincati prints them.
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  -> {cause}");
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
