//! `sluice new`: scaffold a handler crate with its `sluice.toml`.
//!
//! Owns the templates (`templates/*.tmpl`, embedded with `include_str!`),
//! the checks on the name and the target directory, and how the crate finds
//! `sluice-sdk`: a path dependency on the `guest-sdk/` of the Sluice
//! checkout it is created in (found by walking up), or of `--sdk-path`,
//! else a version dependency with a comment saying what to change.

use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};

const CARGO_TOML: &str = include_str!("templates/Cargo.toml.tmpl");
const MESSAGE_LIB: &str = include_str!("templates/message_lib.rs.tmpl");
const EVENT_LIB: &str = include_str!("templates/event_lib.rs.tmpl");
const MESSAGE_MANIFEST: &str = include_str!("templates/message_sluice.toml.tmpl");
const EVENT_MANIFEST: &str = include_str!("templates/event_sluice.toml.tmpl");
const HTTP_LIB: &str = include_str!("templates/http_lib.rs.tmpl");
const HTTP_MANIFEST: &str = include_str!("templates/http_sluice.toml.tmpl");
const README: &str = include_str!("templates/README.md.tmpl");
const GITIGNORE: &str = include_str!("templates/gitignore.tmpl");

/// Names a crate may not have: Rust keywords and the standard crates.
const RESERVED: &[&str] = &[
    "as",
    "async",
    "await",
    "break",
    "const",
    "continue",
    "crate",
    "dyn",
    "else",
    "enum",
    "extern",
    "false",
    "fn",
    "for",
    "if",
    "impl",
    "in",
    "let",
    "loop",
    "match",
    "mod",
    "move",
    "mut",
    "pub",
    "ref",
    "return",
    "self",
    "static",
    "struct",
    "super",
    "trait",
    "true",
    "type",
    "unsafe",
    "use",
    "where",
    "while",
    "abstract",
    "become",
    "box",
    "do",
    "final",
    "macro",
    "override",
    "priv",
    "try",
    "typeof",
    "unsized",
    "virtual",
    "yield",
    "gen",
    "std",
    "core",
    "alloc",
    "test",
    "proc_macro",
    "sluice_sdk",
];

/// What triggers the scaffolded handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Kind {
    /// A message handler on a queue.
    Message,
    /// An event handler on an Event Grid topic.
    Event,
    /// An HTTP handler on a route of the front door.
    Http,
}

/// Create a handler crate with its `sluice.toml`.
#[derive(Debug, Args)]
pub(crate) struct NewCommand {
    /// The handler's name: the crate's and the function's (letters, digits,
    /// `-` and `_`, starting with a letter).
    name: String,
    /// The directory to create (default: ./NAME); it must not exist or be empty.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// A message handler on a queue, an event handler on a topic, or an
    /// HTTP handler on a route (`/api/NAME`).
    #[arg(long, value_enum, default_value_t = Kind::Message)]
    kind: Kind,
    /// The `guest-sdk` directory of a Sluice checkout to depend on (default:
    /// the checkout the crate is created in, if any).
    #[arg(long)]
    sdk_path: Option<PathBuf>,
}

impl NewCommand {
    pub(crate) fn run(self) -> Result<()> {
        validate_name(&self.name)?;
        let dir = self
            .dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(&self.name));
        let scaffold = Scaffold::new(&self.name, self.kind);
        let given_sdk = match &self.sdk_path {
            Some(path) => {
                let sdk = std::fs::canonicalize(path)
                    .with_context(|| format!("--sdk-path {} does not exist", path.display()))?;
                if !is_sdk(&sdk) {
                    bail!(
                        "--sdk-path {} is not the sluice-sdk crate (the `guest-sdk` directory of a Sluice checkout)",
                        sdk.display()
                    );
                }
                Some(sdk)
            }
            None => None,
        };
        prepare_dir(&dir)?;
        let dir = std::fs::canonicalize(&dir)
            .with_context(|| format!("cannot resolve {}", dir.display()))?;
        // A checkout found around the crate moves with it: a relative path.
        // One given explicitly may not: kept absolute.
        let found_sdk = given_sdk.is_none().then(|| find_sdk(&dir)).flatten();
        let sdk_dependency = match (&given_sdk, &found_sdk) {
            (Some(sdk), _) => Some(sdk.clone()),
            (None, Some(sdk)) => Some(relative(&dir, sdk)),
            (None, None) => None,
        };
        let sdk = given_sdk.or(found_sdk);
        let files = scaffold.files(sdk_dependency.as_deref());
        for (name, text) in &files {
            let path = dir.join(name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        }
        println!(
            "created {} handler `{}` in {}",
            match self.kind {
                Kind::Message => "message",
                Kind::Event => "event",
                Kind::Http => "HTTP",
            },
            self.name,
            dir.display()
        );
        for (name, _) in &files {
            println!("  {name}");
        }
        match &sdk {
            Some(sdk) => println!("sluice-sdk: path dependency on {}", sdk.display()),
            None => println!(
                "sluice-sdk: not found in a Sluice checkout above {}; edit the dependency in \
                 Cargo.toml (or run again with --sdk-path <checkout>/guest-sdk)",
                dir.display()
            ),
        }
        println!("next:\n  cd {}\n  sluice up", dir.display());
        Ok(())
    }
}

/// The text that differs between the kinds, and the files made from it.
struct Scaffold<'a> {
    name: &'a str,
    kind: Kind,
    /// The queue (message) or topic (event) the manifest declares.
    entity: String,
    event_type: String,
}

impl<'a> Scaffold<'a> {
    fn new(name: &'a str, kind: Kind) -> Scaffold<'a> {
        let entity = match kind {
            Kind::Message => format!("{name}-inbox"),
            Kind::Event => format!("{name}-events"),
            Kind::Http => format!("/api/{name}"),
        };
        Scaffold {
            name,
            kind,
            entity,
            event_type: format!("{name}.created"),
        }
    }

    /// Every file, by path relative to the crate; `sdk` is the relative path
    /// to `guest-sdk`, when known.
    fn files(&self, sdk: Option<&Path>) -> Vec<(&'static str, String)> {
        let sdk_dependency = match sdk {
            Some(path) => format!(
                "sluice-sdk = {{ path = \"{}\" }}",
                path.display().to_string().replace('\\', "/")
            ),
            None => {
                "# sluice-sdk is not published yet: point this at the `guest-sdk` directory of a\n\
                     # Sluice checkout, e.g. { path = \"../sluice/guest-sdk\" }.\n\
                     sluice-sdk = \"0.1\""
                    .to_string()
            }
        };
        let (kind, lib, manifest, trigger_noun, try_it) = match self.kind {
            Kind::Message => (
                "message",
                MESSAGE_LIB,
                MESSAGE_MANIFEST,
                "queue",
                format!("sluice send {} --body 'hello'", self.entity),
            ),
            Kind::Event => (
                "event",
                EVENT_LIB,
                EVENT_MANIFEST,
                "topic",
                format!(
                    "sluice publish {} --type {} --subject demo/1 --data '{{\"hello\":\"world\"}}'",
                    self.entity, self.event_type
                ),
            ),
            Kind::Http => (
                "HTTP",
                HTTP_LIB,
                HTTP_MANIFEST,
                "route",
                format!(
                    "curl -X POST \"$SLUICE_URL{}\" -H \"x-functions-key: $API_KEY\" -d 'hello'",
                    self.entity
                ),
            ),
        };
        let fill = |template: &str| {
            template
                .replace("{{name}}", self.name)
                .replace("{{kind}}", kind)
                .replace("{{queue}}", &self.entity)
                .replace("{{topic}}", &self.entity)
                .replace("{{event_type}}", &self.event_type)
                .replace("{{trigger_noun}}", trigger_noun)
                .replace("{{try_it}}", &try_it)
                .replace("{{sdk_dependency}}", &sdk_dependency)
        };
        vec![
            ("Cargo.toml", fill(CARGO_TOML)),
            ("src/lib.rs", fill(lib)),
            ("sluice.toml", fill(manifest)),
            ("README.md", fill(README)),
            (".gitignore", fill(GITIGNORE)),
        ]
    }
}

/// A crate name that is also a valid function name and library name.
fn validate_name(name: &str) -> Result<()> {
    let starts_with_letter = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
    let charset = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !(starts_with_letter && charset && name.len() <= 64) {
        bail!(
            "`{name}` cannot name a handler: use up to 64 letters, digits, `-` and `_`, starting with a letter"
        );
    }
    if RESERVED.contains(&name.replace('-', "_").to_ascii_lowercase().as_str()) {
        bail!("`{name}` is reserved in Rust; choose another name");
    }
    Ok(())
}

/// Creates `dir`, or accepts it when it exists and is empty.
fn prepare_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        if !dir.is_dir() {
            bail!("{} exists and is not a directory", dir.display());
        }
        let mut entries =
            std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
        if entries.next().is_some() {
            bail!(
                "{} exists and is not empty; `sluice new` does not overwrite (choose another --dir)",
                dir.display()
            );
        }
        return Ok(());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

/// Whether `dir` is the `sluice-sdk` crate.
fn is_sdk(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("Cargo.toml"))
        .is_ok_and(|text| text.lines().any(|l| l.trim() == "name = \"sluice-sdk\""))
}

/// The `guest-sdk` of the Sluice checkout `dir` is in, if any.
fn find_sdk(dir: &Path) -> Option<PathBuf> {
    dir.ancestors()
        .map(|ancestor| ancestor.join("guest-sdk"))
        .find(|candidate| is_sdk(candidate))
}

/// `to` relative to `from` (both absolute), e.g. `../../guest-sdk`.
fn relative(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<Component<'_>> = from.components().collect();
    let to: Vec<Component<'_>> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut path = PathBuf::new();
    for _ in common..from.len() {
        path.push("..");
    }
    for component in &to[common..] {
        path.push(component.as_os_str());
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_make_a_crate_and_a_function() {
        for good in ["orders", "order-flow", "fulfil_v2", "A1"] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "1st",
            "-x",
            "has space",
            "dots.no",
            "match",
            "test",
            &"x".repeat(65),
        ] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn relative_paths_climb_then_descend() {
        assert_eq!(
            relative(
                Path::new("/repo/target/tmp/app"),
                Path::new("/repo/guest-sdk")
            ),
            Path::new("../../../guest-sdk")
        );
        assert_eq!(
            relative(
                Path::new("/repo/examples/x"),
                Path::new("/repo/examples/x/sdk")
            ),
            Path::new("sdk")
        );
    }

    #[test]
    fn templates_are_filled_in_completely() {
        for kind in [Kind::Message, Kind::Event, Kind::Http] {
            let scaffold = Scaffold::new("billing", kind);
            for sdk in [Some(Path::new("../guest-sdk")), None] {
                for (name, text) in scaffold.files(sdk) {
                    assert!(
                        !text.contains("{{"),
                        "{name} ({kind:?}) has a placeholder left:\n{text}"
                    );
                }
            }
            let files = scaffold.files(None);
            let manifest = &files
                .iter()
                .find(|(n, _)| *n == "sluice.toml")
                .expect("manifest")
                .1;
            let parsed = crate::manifest::parse(manifest, Path::new("sluice.toml"))
                .unwrap_or_else(|e| panic!("the {kind:?} scaffold's manifest: {e}"));
            assert_eq!(parsed.functions[0].name, "billing");
            assert_eq!(parsed.external_references(), vec![]);
        }
        let message = Scaffold::new("billing", Kind::Message).files(Some(Path::new("../sdk")));
        assert!(message[0].1.contains("sluice-sdk = { path = \"../sdk\" }"));
        assert!(message[1].1.contains("#[sluice_sdk::message_handler]"));
        let event = Scaffold::new("billing", Kind::Event).files(None);
        assert!(event[0].1.contains("sluice-sdk = \"0.1\""));
        assert!(event[1].1.contains("#[sluice_sdk::event_handler]"));
        let http = Scaffold::new("billing", Kind::Http).files(None);
        assert!(http[1].1.contains("#[sluice_sdk::http_handler]"));
        assert!(http[2].1.contains("route = \"billing\""));
    }

    #[test]
    fn refuses_a_non_empty_directory() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert!(
            prepare_dir(dir.path()).is_ok(),
            "an empty directory is fine"
        );
        std::fs::write(dir.path().join("keep.txt"), "mine").expect("write");
        let error = prepare_dir(dir.path()).expect_err("not empty");
        assert!(error.to_string().contains("is not empty"), "{error}");
        assert!(prepare_dir(&dir.path().join("a/b")).is_ok(), "created");
    }
}
