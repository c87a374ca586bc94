//! The `lifeboat` command: argument parsing and output over the library crates.

mod cli;
mod commands;
mod context;
mod output;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    output::init_logging(&args.global);
    match commands::run(args) {
        Ok(code) => code.into(),
        Err(error) => output::report_error(&error).into(),
    }
}
