//! The `darts` command. Parses the command line and hands over to the library.

use std::io::Write as _;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = darts::cli::Cli::parse();
    match darts::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // A closed stderr loses the message, never turns the error into a panic.
            let _ = writeln!(std::io::stderr(), "darts: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
