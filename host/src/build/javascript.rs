//! Building a JavaScript handler (a directory with `package.json`) into a component
//! with jco and componentize-js.
//!
//! Owns the pinned jco: an npm tree in the Sluice cache, installed once with `npm ci`
//! from the `package.json` and lockfile embedded in this binary (`jco/`), so every
//! package's version and integrity hash is fixed, and install scripts never run. Also
//! owns the `jco componentize` call, which evaluates the handler in StarlingMonkey
//! (SpiderMonkey compiled to wasm) and snapshots it into one component (~11 MB).
//!
//! The handler is the package's `main` module (default `index.js`): one ES module
//! exporting `handleEvent` and `handleMessage` and importing host capabilities from
//! `sluice:handler/<interface>@0.1.0`. It must be self-contained: componentize-js
//! cannot load other files or npm packages, so those have to be bundled first.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use super::{BuildOptions, BuiltComponent, cache, command};

/// The pinned jco, and the componentize-js it drives (jco 1.17 asks for ^0.19.3).
/// The latest jco when this was pinned (1.35.0, with componentize-js 0.22) failed on
/// Node 20 before building anything ("failed to get path metadata" reading the WIT).
const JCO_VERSION: &str = "1.17.0";
const COMPONENTIZE_JS_VERSION: &str = "0.19.3";

/// The npm project installed into the cache; its lockfile pins every package's
/// version and integrity hash (and names no registry: npm uses the configured one).
const PACKAGE_JSON: &str = include_str!("jco/package.json");
const PACKAGE_LOCK: &str = include_str!("jco/package-lock.json");

/// Written into the tree last, before it is moved into place.
const MARKER: &str = "sluice-jco-version";

/// Features of componentize-js turned off: `http` (outgoing fetch) and `fetch-event`
/// (an HTTP server export) would make the component import or export `wasi:http`,
/// which the host does not offer. Kept: stdio (`console.log` lands in the host's log),
/// clocks and random, which the host links and which cost nothing when unused.
const DISABLED_FEATURES: [&str; 2] = ["http", "fetch-event"];

/// The fields of the handler's `package.json` that matter here.
#[derive(Debug, Default, Deserialize)]
struct Package {
    name: Option<String>,
    main: Option<String>,
    #[serde(default)]
    dependencies: serde_json::Map<String, serde_json::Value>,
}

/// Builds the JavaScript handler in `dir` (which has `package.json`).
pub(super) fn build(dir: &Path, opts: &BuildOptions) -> Result<BuiltComponent> {
    let dir = fs::canonicalize(dir)
        .with_context(|| format!("cannot resolve the handler directory {}", dir.display()))?;
    let manifest = dir.join("package.json");
    let text = fs::read_to_string(&manifest)
        .with_context(|| format!("cannot read {}", manifest.display()))?;
    let package: Package = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a valid package.json", manifest.display()))?;
    let main = package.main.as_deref().unwrap_or("index.js");
    let entry = dir.join(main);
    if !entry.is_file() {
        bail!(
            "{} names the module {main} (its `main`, default index.js), but {} does not exist",
            manifest.display(),
            entry.display()
        );
    }
    if !package.dependencies.is_empty() {
        eprintln!(
            "sluice: warning: {} declares dependencies; jco componentize loads only {main}, so bundle them into it first",
            manifest.display()
        );
    }

    let jco = install()?;
    let wit = super::wit_dir()?;
    let name = package
        .name
        .as_deref()
        // `@scope/name` → `name`: the output is a file name.
        .and_then(|n| n.rsplit('/').next())
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .unwrap_or_else(|| super::dir_name(&dir));
    let out = super::output_path(opts, &dir, &name)?;
    let produced = super::scratch_out(&out)?;
    let toolchain = format!("jco {JCO_VERSION} + componentize-js {COMPONENTIZE_JS_VERSION}");
    eprintln!(
        "sluice: building the JavaScript handler {} with {toolchain}",
        entry.display()
    );

    let mut cmd = Command::new("node");
    cmd.arg(&jco)
        .arg("componentize")
        .arg(&entry)
        .arg("--wit")
        .arg(&wit)
        .args(["--world-name", super::WORLD])
        .arg("--out")
        .arg(&produced)
        .current_dir(&dir);
    for feature in DISABLED_FEATURES {
        cmd.args(["--disable", feature]);
    }
    if let Err(e) = command::run(&mut cmd) {
        // Best effort: jco may have written part of a file.
        let _ = fs::remove_file(&produced);
        return Err(e.context(format!(
            "jco could not build {} (is it one self-contained ES module exporting handleEvent and handleMessage?)",
            entry.display()
        )));
    }
    super::finish(&produced, &out, toolchain)
}

/// jco's command-line entry point, installing the npm tree first if needed.
fn install() -> Result<PathBuf> {
    let prefix = cache::toolchain_prefix(&format!("jco-{JCO_VERSION}"))?;
    let what = format!("jco {JCO_VERSION} with componentize-js {COMPONENTIZE_JS_VERSION}");
    cache::install_once(&prefix, &what, is_installed, |work| {
        let needed_for = format!("install {what} from npm for JavaScript handlers");
        command::require("node", &needed_for, "install Node.js 20 or later")?;
        command::require(npm(), &needed_for, "install npm, which comes with Node.js")?;
        eprintln!(
            "sluice: installing {what} (one-time, ~170 MB) into {}...",
            prefix.display()
        );
        let tree = work.join("jco");
        fs::create_dir_all(&tree).with_context(|| format!("cannot create {}", tree.display()))?;
        for (file, text) in [
            ("package.json", PACKAGE_JSON),
            ("package-lock.json", PACKAGE_LOCK),
        ] {
            fs::write(tree.join(file), text)
                .with_context(|| format!("cannot write {}", tree.join(file).display()))?;
        }
        let mut ci = Command::new(npm());
        // `ci` installs exactly the lockfile and checks each package's integrity hash;
        // none of these packages needs an install script, so none is run.
        ci.args([
            "ci",
            "--ignore-scripts",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
        ])
        .current_dir(&tree);
        command::run(&mut ci).with_context(|| format!("cannot {needed_for}"))?;

        // Check that it runs, and is the pinned version, before it is moved into place.
        // The version comes from jco's package.json: jco 1.17.0's `--version` says 1.16.1.
        let mut runs = Command::new("node");
        runs.arg(jco_script(&tree)).arg("--version");
        command::run(&mut runs)?;
        let installed = installed_jco_version(&tree)?;
        if installed != JCO_VERSION {
            bail!("npm installed jco {installed:?}, expected {JCO_VERSION}");
        }
        fs::write(tree.join(MARKER), JCO_VERSION)
            .with_context(|| format!("cannot write {}", tree.join(MARKER).display()))?;
        Ok(tree)
    })?;
    Ok(jco_script(&prefix))
}

/// The `version` in the installed jco's package.json.
fn installed_jco_version(tree: &Path) -> Result<String> {
    let path = tree
        .join("node_modules")
        .join("@bytecodealliance")
        .join("jco")
        .join("package.json");
    let text =
        fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let manifest: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", path.display()))?;
    Ok(manifest["version"].as_str().unwrap_or_default().to_owned())
}

fn is_installed(tree: &Path) -> bool {
    tree.join(MARKER).is_file() && jco_script(tree).is_file()
}

/// jco's CLI script, run with `node` (not through `node_modules/.bin`, which is a
/// shell shim on Windows).
fn jco_script(tree: &Path) -> PathBuf {
    tree.join("node_modules")
        .join("@bytecodealliance")
        .join("jco")
        .join("src")
        .join("jco.js")
}

fn npm() -> &'static str {
    if cfg!(windows) { "npm.cmd" } else { "npm" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_lockfile_pins_the_versions_named_here() {
        let lock: serde_json::Value = serde_json::from_str(PACKAGE_LOCK).expect("lockfile JSON");
        let packages = &lock["packages"];
        for (name, version) in [
            ("@bytecodealliance/jco", JCO_VERSION),
            ("@bytecodealliance/componentize-js", COMPONENTIZE_JS_VERSION),
        ] {
            let entry = &packages[format!("node_modules/{name}")];
            assert_eq!(entry["version"], version, "{name}");
            assert_eq!(packages[""]["dependencies"][name], version, "{name}");
        }
        let manifest: serde_json::Value = serde_json::from_str(PACKAGE_JSON).expect("package.json");
        assert_eq!(manifest["dependencies"], packages[""]["dependencies"]);
        // Every package is pinned by an integrity hash.
        let unpinned: Vec<&String> = packages
            .as_object()
            .expect("packages")
            .iter()
            .filter(|(path, entry)| !path.is_empty() && entry.get("integrity").is_none())
            .map(|(path, _)| path)
            .collect();
        assert!(unpinned.is_empty(), "{unpinned:?}");
    }
}
