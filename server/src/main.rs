//! `auralguard` — command-line front-end of the detector library.
//!
//! Each subcommand lives in its own module under `cli/`; this file only parses arguments, sets
//! up the allocator and logging, and maps errors to exit codes (0 ok, 1 some input failed, 2
//! usage/setup error).

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    // Before any thread allocates: arenas are handed out per thread on first use.
    let arenas = cli::malloc::cap_arenas(args.malloc_arenas);
    cli::init_logging(args.verbose, &args.command);
    tracing::info!("{arenas}");
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
