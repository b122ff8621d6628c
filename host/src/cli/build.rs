//! `sluice build`: compile a handler project (Rust, Python or JavaScript) into a Wasm component.

use std::path::PathBuf;

use clap::Args;

use crate::build::{BuildOptions, build_component};

/// Build a handler into a component (the help text is on `Command::Build`).
#[derive(Debug, Args)]
pub(crate) struct BuildCommand {
    /// The handler's directory: a Rust crate (Cargo.toml), a JavaScript package
    /// (package.json) or a Python app (app.py).
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// Where to write the component (default: <dir>/target/sluice/<name>.wasm).
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// Build without optimisations (Rust only).
    #[arg(long)]
    debug: bool,
}

impl BuildCommand {
    pub(crate) async fn run(self) -> anyhow::Result<()> {
        let options = BuildOptions {
            release: !self.debug,
            out: self.out,
        };
        let dir = self.dir;
        let built = tokio::task::spawn_blocking(move || build_component(&dir, &options)).await??;
        eprintln!("built with {} ({} bytes)", built.toolchain, built.size);
        // The path alone on stdout, so scripts can capture it.
        println!("{}", built.path.display());
        Ok(())
    }
}
