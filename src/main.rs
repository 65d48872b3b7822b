//! The `hbad` command: parses the command line and hands off to `hbad::cli`.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = hbad::cli::Cli::parse();
    match hbad::cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            // One line per cause, most specific last, as zincati prints them.
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  -> {cause}");
            }
            ExitCode::from(1)
        }
    }
}
