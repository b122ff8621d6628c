//! Building a Python handler (a directory with `app.py`) into a component with
//! componentize-py.
//!
//! Owns the pinned componentize-py: a venv in the Sluice cache, installed once from
//! PyPI with `python3 -m pip` and every wheel checked against its pinned sha256
//! (`--require-hashes`), and the `componentize` call that bundles CPython, the
//! standard library and the handler's modules into one component (~18 MB).
//!
//! The handler is the module `app`: it defines `class WitWorld(wit_world.WitWorld)`
//! with `handle_event` and `handle_message`, as the bindings componentize-py
//! generates for world `handler` expect. Other `.py` files beside `app.py` are
//! importable; third-party packages are not bundled.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::{BuildOptions, BuiltComponent, cache, command};

/// The file that marks a Python handler, and the module componentize-py loads.
pub(super) const ENTRY: &str = "app.py";
const MODULE: &str = "app";

/// The pinned componentize-py: 0.25.1 generates components that wasmtime 48 runs
/// (they import WASI 0.2.x, which the host links) for our WIT as it stands.
const VERSION: &str = "0.25.1";

/// What pip installs, with the sha256 of every platform's wheel (PyPI's own hashes,
/// recorded when the version was pinned): pip refuses anything else.
const REQUIREMENTS: &str = "\
componentize-py==0.25.1 \\
    --hash=sha256:8623cd8cab8453cb0cd8bf03f3c7103420d06f2f3d360186a280a70a1ca5e89f \\
    --hash=sha256:7b6a87c520358166843af0daa86d2312d7af4cbcbbf1e598951085cf7f2991ca \\
    --hash=sha256:a556991534cc496207a9d2ca733c4b0f17ed38ef56a8d6b5f1847fdf1225dd1b \\
    --hash=sha256:65fbc4a94df1de8acf7da50a1f5ed1711230188844e53e6332d99029be4e0afa \\
    --hash=sha256:c7fd552fb0849858b0c1e8981543ed5dff4b0cc1597a8ea0bc26a495786dc0c6
";

/// Written into the venv last, before it is moved into place.
const MARKER: &str = "sluice-componentize-py-version";

/// Runs componentize-py's entry point with the arguments that follow. Used instead of
/// the `componentize-py` script because a venv's scripts hard-code the path the venv
/// was created at, and the venv is built in a scratch directory and then renamed.
const LAUNCHER: &str = "import sys; from componentize_py import script; \
                        sys.argv[0] = 'componentize-py'; sys.exit(script())";

/// Builds the Python handler in `dir` (which has `app.py`).
pub(super) fn build(dir: &Path, opts: &BuildOptions) -> Result<BuiltComponent> {
    let dir = fs::canonicalize(dir)
        .with_context(|| format!("cannot resolve the handler directory {}", dir.display()))?;
    if !dir.join(ENTRY).is_file() {
        bail!(
            "{} has no {ENTRY}: a Python handler is the module `{MODULE}`",
            dir.display()
        );
    }
    let python = install()?;
    let wit = super::wit_dir()?;
    let out = super::output_path(opts, &dir, &super::dir_name(&dir))?;
    let produced = super::scratch_out(&out)?;
    let toolchain = format!("componentize-py {VERSION}");
    eprintln!(
        "sluice: building the Python handler {} with {toolchain}",
        dir.join(ENTRY).display()
    );

    let mut cmd = launcher(&python);
    cmd.arg("--wit-path")
        .arg(&wit)
        .args(["--world", super::WORLD, "componentize", MODULE])
        // The handler's own directory is where `app` and its sibling modules are found.
        .arg("--python-path")
        .arg(&dir)
        .arg("--output")
        .arg(&produced)
        .current_dir(&dir);
    if let Err(e) = command::run(&mut cmd) {
        // Best effort: componentize-py may have written part of a file.
        let _ = fs::remove_file(&produced);
        return Err(e.context(format!(
            "componentize-py could not build {} (is it a module defining `class WitWorld(wit_world.WitWorld)`?)",
            dir.join(ENTRY).display()
        )));
    }
    super::finish(&produced, &out, toolchain)
}

/// The venv's interpreter, installing the venv first if needed.
fn install() -> Result<PathBuf> {
    let prefix = cache::toolchain_prefix(&format!("componentize-py-{VERSION}"))?;
    let what = format!("componentize-py {VERSION}");
    cache::install_once(&prefix, &what, is_installed, |work| {
        let needed_for = format!("install {what} from PyPI for Python handlers");
        command::require_python_pip(&needed_for)?;
        eprintln!(
            "sluice: installing {what} (one-time, ~70 MB) into {}...",
            prefix.display()
        );
        let venv = work.join("venv");
        let mut create = Command::new("python3");
        create.args(["-m", "venv"]).arg(&venv);
        command::run(&mut create).with_context(|| {
            format!(
                "cannot create a Python venv to {needed_for} (on Debian/Ubuntu: install python3-venv)"
            )
        })?;

        let requirements = work.join("requirements.txt");
        fs::write(&requirements, REQUIREMENTS)
            .with_context(|| format!("cannot write {}", requirements.display()))?;
        let python = venv_python(&venv);
        let mut pip = Command::new(&python);
        pip.args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
            "--progress-bar",
            "off",
            "--only-binary=:all:",
            "--no-deps",
            "--require-hashes",
            "-r",
        ])
        .arg(&requirements);
        command::run(&mut pip).with_context(|| format!("cannot {needed_for}"))?;

        // Check that it runs, and is the pinned version, before it is moved into place.
        let mut version = launcher(&python);
        version.arg("--version");
        let output = command::run(&mut version)?;
        let printed = String::from_utf8_lossy(&output.stdout);
        if printed.trim() != format!("componentize-py {VERSION}") {
            bail!(
                "the installed componentize-py reports {:?}, expected {VERSION}",
                printed.trim()
            );
        }
        fs::write(venv.join(MARKER), VERSION)
            .with_context(|| format!("cannot write {}", venv.join(MARKER).display()))?;
        Ok(venv)
    })?;
    Ok(venv_python(&prefix))
}

/// A venv is usable when its marker is there and its interpreter still exists (it
/// links to the `python3` that created it, which may have been removed since).
fn is_installed(venv: &Path) -> bool {
    venv.join(MARKER).is_file() && venv_python(venv).is_file()
}

fn venv_python(venv: &Path) -> PathBuf {
    if cfg!(windows) {
        venv.join("Scripts").join("python.exe")
    } else {
        venv.join("bin").join("python3")
    }
}

fn launcher(python: &Path) -> Command {
    let mut cmd = Command::new(python);
    cmd.arg("-c").arg(LAUNCHER);
    // componentize-py is written in Rust: with backtraces on (as under `cargo test`) its
    // errors end in a Rust backtrace that pushes the Python traceback out of the tail.
    cmd.env("RUST_BACKTRACE", "0")
        .env("RUST_LIB_BACKTRACE", "0");
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirements_pin_the_version_with_hashes() {
        let first = REQUIREMENTS.lines().next().unwrap_or_default();
        assert_eq!(first, format!("componentize-py=={VERSION} \\"));
        let hashes = REQUIREMENTS
            .lines()
            .filter(|l| l.trim_start().starts_with("--hash=sha256:"))
            .count();
        assert_eq!(hashes, 5);
    }
}
