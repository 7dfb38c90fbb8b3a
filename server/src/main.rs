//! `auralguard` — command-line front-end of the detector library.
//!
//! Each subcommand lives in its own module under `cli/`; this file only parses arguments, sets
//! up the allocator and logging, and maps errors to exit codes (0 ok, 1 some input failed, 2
//! usage/setup error).

mod cli;

use std::process::ExitCode;

use auralguard::large_blocks::{LargeBlockCache, DEFAULT_CAP_BYTES};
use clap::Parser;

/// Large blocks are kept for reuse so that the heap does not fragment under load (see
/// [`auralguard::large_blocks`]); everything else is the system allocator's.
#[global_allocator]
static ALLOCATOR: LargeBlockCache = LargeBlockCache::new(DEFAULT_CAP_BYTES);

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    // Before any thread allocates: arenas are handed out per thread on first use.
    let arenas = cli::malloc::cap_arenas(args.malloc_arenas);
    ALLOCATOR.set_cap((args.large_block_cache_mib as usize) << 20);
    ALLOCATOR.publish();
    cli::malloc::start_block_releaser(std::time::Duration::from_secs(1));
    cli::init_logging(args.verbose, &args.command);
    tracing::info!(
        large_block_cache_mib = args.large_block_cache_mib,
        "{arenas}"
    );
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
