//! The `sluice` binary: see `sluice --help` and the `cli` module.

use std::process::ExitCode;

/// mimalloc instead of glibc malloc: per-thread free lists suit a host that
/// allocates and frees per message on every worker (glibc's malloc was ~15%
/// of the host's CPU under load).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    match sluice_host::cli::run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}
