//! Building a Rust handler crate (a `cdylib` using `wit-bindgen` for world
//! `sluice:handler`) into a component.
//!
//! Owns checking the crate, choosing or installing a wasm-capable toolchain
//! (`toolchain`), running `cargo build` and finding its artifact, and turning that
//! artifact into a component (`componentize`).

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;

use super::toolchain::{self, Toolchain};
use super::{BuildOptions, BuiltComponent, componentize, write_atomically};

/// Builds the Rust handler crate in `crate_dir` into a Wasm component.
///
/// Uses the active toolchain's `wasm32-wasip2` or `wasm32-unknown-unknown` target when
/// installed, else tries `rustup target add wasm32-wasip2`, else installs (once, into the
/// Sluice cache) a pinned Rust toolchain from PyPI. Cargo's diagnostics go to stderr, as do
/// progress lines about toolchain installation.
pub(super) fn build(crate_dir: &Path, opts: &BuildOptions) -> Result<BuiltComponent> {
    let manifest = crate_dir.join("Cargo.toml");
    if !manifest.is_file() {
        bail!(
            "{} has no Cargo.toml: `sluice build` expects the directory of a Rust handler crate",
            crate_dir.display()
        );
    }
    let crate_dir = fs::canonicalize(crate_dir)
        .with_context(|| format!("cannot resolve the crate directory {}", crate_dir.display()))?;
    let manifest = crate_dir.join("Cargo.toml");

    // Check the crate with the cargo on PATH first, so a wrong crate fails before a
    // toolchain install. That cargo may be missing or too old for the manifest, in
    // which case the check is redone with the chosen toolchain.
    let early = match metadata(toolchain::path_cargo(&crate_dir), &manifest) {
        Ok(metadata) => {
            let package = metadata.package(&manifest)?;
            package.cdylib_name()?;
            Some(package)
        }
        Err(_) => None,
    };

    let toolchain = toolchain::select(&crate_dir)?;
    let package = match early {
        Some(package) => package,
        None => metadata(toolchain.cargo(&crate_dir)?, &manifest)?.package(&manifest)?,
    };
    let lib_name = package.cdylib_name()?.to_owned();
    eprintln!(
        "sluice: building {} with {}",
        package.name,
        toolchain.describe()
    );

    let artifact = cargo_build(&toolchain, &crate_dir, &manifest, &package, opts.release)?;
    let bytes = fs::read(&artifact)
        .with_context(|| format!("cannot read the build artifact {}", artifact.display()))?;
    let (component, encoded) = componentize::to_component(bytes)
        .with_context(|| format!("cannot make a component of {}", artifact.display()))?;

    let out = match &opts.out {
        Some(out) => out.clone(),
        None => crate_dir
            .join("target")
            .join("sluice")
            .join(format!("{lib_name}.wasm")),
    };
    write_atomically(&out, &component)?;

    let mut description = toolchain.describe();
    if encoded {
        description.push_str(", componentized");
    }
    Ok(BuiltComponent {
        path: out,
        toolchain: description,
        size: component.len() as u64,
    })
}

/// The subset of `cargo metadata` output used here.
#[derive(Debug, Deserialize)]
struct Metadata {
    packages: Vec<Package>,
}

/// A package from `cargo metadata`.
#[derive(Debug, Deserialize)]
struct Package {
    name: String,
    id: String,
    manifest_path: PathBuf,
    targets: Vec<Target>,
}

/// A build target, both in `cargo metadata` and in `compiler-artifact` messages.
#[derive(Debug, Deserialize)]
struct Target {
    name: String,
    kind: Vec<String>,
}

impl Package {
    /// The name of the crate's `cdylib` library target (which names the `.wasm` file).
    fn cdylib_name(&self) -> Result<&str> {
        self.targets
            .iter()
            .find(|t| t.kind.iter().any(|k| k == "cdylib"))
            .map(|t| t.name.as_str())
            .ok_or_else(|| {
                anyhow!(
                    "crate `{}` ({}) is not a cdylib: a handler needs `[lib] crate-type = [\"cdylib\"]` in its Cargo.toml",
                    self.name,
                    self.manifest_path.display()
                )
            })
    }
}

impl Metadata {
    /// The package whose manifest is `manifest`.
    fn package(self, manifest: &Path) -> Result<Package> {
        self.packages
            .into_iter()
            .find(|p| same_file(&p.manifest_path, manifest))
            .ok_or_else(|| {
                anyhow!(
                    "{} declares no package (a workspace root?): point `sluice build` at the handler crate itself",
                    manifest.display()
                )
            })
    }
}

/// Runs `cargo metadata --no-deps` (no dependency resolution, so no network).
fn metadata(mut cargo: Command, manifest: &Path) -> Result<Metadata> {
    let output = cargo
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--manifest-path",
        ])
        .arg(manifest)
        .stdin(Stdio::null())
        .output()
        .context("cannot run `cargo metadata`")?;
    if !output.status.success() {
        bail!(
            "`cargo metadata` failed for {} ({}):\n{}",
            manifest.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    serde_json::from_slice(&output.stdout).with_context(|| {
        format!(
            "cannot parse `cargo metadata` output for {}",
            manifest.display()
        )
    })
}

fn same_file(a: &Path, b: &Path) -> bool {
    a == b || matches!((fs::canonicalize(a), fs::canonicalize(b)), (Ok(a), Ok(b)) if a == b)
}

/// A line of `cargo build --message-format=json` output; only artifacts matter here.
#[derive(Debug, Deserialize)]
struct Message {
    reason: String,
    #[serde(default)]
    package_id: Option<String>,
    #[serde(default)]
    target: Option<Target>,
    #[serde(default)]
    filenames: Vec<PathBuf>,
}

/// Runs `cargo build` for the crate's library and returns the path of the cdylib's `.wasm`.
fn cargo_build(
    toolchain: &Toolchain,
    crate_dir: &Path,
    manifest: &Path,
    package: &Package,
    release: bool,
) -> Result<PathBuf> {
    let mut cargo = toolchain.cargo(crate_dir)?;
    cargo
        .args(["build", "--lib", "--target", toolchain.target])
        .arg("--message-format=json-render-diagnostics")
        .arg("--manifest-path")
        .arg(manifest);
    if release {
        cargo.arg("--release");
    }
    // Diagnostics are rendered on stderr, which goes straight to the user; stdout carries
    // one JSON message per line.
    cargo
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = cargo.spawn().with_context(|| {
        format!(
            "cannot run cargo ({}) for {}",
            toolchain.describe(),
            crate_dir.display()
        )
    })?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow!("cargo's stdout was not captured"))?;

    let mut wasm = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.context("cannot read cargo's output")?;
        // Anything that is not a JSON message (a build script's stray output) is ignored.
        let Ok(message) = serde_json::from_str::<Message>(&line) else {
            continue;
        };
        let is_cdylib = message
            .target
            .as_ref()
            .is_some_and(|t| t.kind.iter().any(|k| k == "cdylib"));
        if message.reason == "compiler-artifact"
            && is_cdylib
            && message.package_id.as_deref() == Some(package.id.as_str())
            && let Some(file) = message
                .filenames
                .iter()
                .find(|f| f.extension().is_some_and(|e| e == "wasm"))
        {
            wasm = Some(file.clone());
        }
    }
    let status = child.wait().context("cannot wait for cargo")?;
    if !status.success() {
        bail!("cargo build failed for {} ({status})", crate_dir.display());
    }
    wasm.ok_or_else(|| {
        anyhow!(
            "cargo build of {} succeeded but reported no .wasm file for the cdylib of `{}`",
            crate_dir.display(),
            package.name
        )
    })
}
