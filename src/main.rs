//! The `darts` command. Parses the command line and hands over to the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = darts::cli::Cli::parse();
    match darts::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("darts: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
