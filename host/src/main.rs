//! The `sluice` binary: see `sluice --help` and the `cli` module.

use std::process::ExitCode;

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
