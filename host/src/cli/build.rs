//! `sluice build`: compile a handler crate into a Wasm component.

use std::path::PathBuf;

use clap::Args;

use crate::build::{BuildOptions, build_component};

/// Build a handler crate into a component.
#[derive(Debug, Args)]
pub(crate) struct BuildCommand {
    /// The handler crate (a directory with Cargo.toml).
    #[arg(default_value = ".")]
    crate_dir: PathBuf,
    /// Where to write the component (default: <crate>/target/sluice/<name>.wasm).
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// Build without optimisations.
    #[arg(long)]
    debug: bool,
}

impl BuildCommand {
    pub(crate) async fn run(self) -> anyhow::Result<()> {
        let options = BuildOptions {
            release: !self.debug,
            out: self.out,
        };
        let crate_dir = self.crate_dir;
        let built =
            tokio::task::spawn_blocking(move || build_component(&crate_dir, &options)).await??;
        eprintln!("built with {} ({} bytes)", built.toolchain, built.size);
        // The path alone on stdout, so scripts can capture it.
        println!("{}", built.path.display());
        Ok(())
    }
}
