//! The `lifeboat` command: argument parsing and output over the library crates.

mod choice;
mod cli;
mod commands;
mod context;
mod output;
mod sitestate;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    limit_heap_growth();
    let args = cli::Cli::parse();
    output::init_logging(&args.global);
    let json = args.global.json;
    match commands::run(args) {
        Ok(code) => code.into(),
        Err(error) => output::report_error(&error, json).into(),
    }
}

/// glibc raises its mmap threshold each time a large buffer is freed, after which pack-sized
/// buffers come from per-thread arenas that keep the memory; a fixed threshold returns it to
/// the system at once. Measured on a 1 GB tree: peak RSS 125 MB without, 73 MB with.
fn limit_heap_growth() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes allocator tuning; called before any thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 * 1024 * 1024);
    }
}
