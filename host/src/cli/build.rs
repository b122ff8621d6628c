//! `sluice build`: compile a handler project (Rust, Python or JavaScript) into a Wasm component.

use std::path::PathBuf;

use clap::Args;

use crate::build::{BuildOptions, build_component};

/// Build a handler project into a component.
///
/// The language is told by a file in the directory, looked for in this order:
/// `Cargo.toml` (a Rust cdylib crate, built with cargo), `package.json` (a
/// JavaScript module: the package's `main`, default `index.js`, built with jco),
/// `app.py` (a Python module `app`, built with componentize-py). The toolchain a
/// language needs is installed once into the Sluice cache ($SLUICE_CACHE_DIR, else
/// ~/.cache/sluice); Python needs python3 with pip and venv, JavaScript node and npm.
/// Progress goes to stderr; the component's path alone to stdout.
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
