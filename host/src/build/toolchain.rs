//! Finding, or installing, a Rust toolchain that can compile a handler crate to wasm.
//!
//! Owns the choice between the active toolchain (with `wasm32-wasip2` or
//! `wasm32-unknown-unknown` already installed), a `rustup target add` attempt bounded
//! by a timeout, and the pinned Rust 1.97.0 toolchain that is repackaged as three PyPI
//! data wheels and installed, once, into the Sluice cache directory. It also owns the
//! environment scrubbing applied to every `rustc`/`cargo` process it starts.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use ruzstd::decoding::{FrameDecoder, StreamingDecoder};
use sha2::{Digest, Sha256};

use super::{cache, command};

/// The target whose output is already a component (Rust ≥ 1.82 links it with `wasm-component-ld`).
pub(crate) const WASIP2: &str = "wasm32-wasip2";
/// The target whose core module needs `wit-component` to become a component.
pub(crate) const UNKNOWN: &str = "wasm32-unknown-unknown";

/// Version of the repackaged toolchain on PyPI; pinned because it is a third-party build.
const PINNED_VERSION: &str = "1.97.0";

/// The three wheels holding the split `tar.zst`, in concatenation order, with their sha256.
const WHEELS: [(u8, &str); 3] = [
    (
        1,
        "d449884dec227a6e11a05f234b077173ec8577e6e721526ed8f0c938aeec9459",
    ),
    (
        2,
        "8d141cae480e2ced3a37b679a7f45f39db93f8c770459aef875a397bfadfb4b7",
    ),
    (
        3,
        "3a072ae64760773ea6b71dc8cc25c824bdc2d663b26e8dda5814bdaeb39147d7",
    ),
];

/// How long `rustup target add` may run: without network access it hangs instead of failing.
const RUSTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a `rustc` probe may run: a `rust-toolchain.toml` naming a missing toolchain
/// makes the rustup proxy try to download it, which can hang the same way.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// Variables an outer cargo (`cargo test`, `cargo run`, build scripts) sets for its
/// children. Inherited by the guest build they would pick the outer toolchain, flags or
/// jobserver, so they are removed. `CARGO_HOME` and `CARGO_TARGET_DIR` are kept on purpose.
const SCRUBBED_VARS: [&str; 16] = [
    "RUSTC",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "RUSTDOC",
    "RUSTUP_TOOLCHAIN",
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_TARGET",
    "CARGO_MAKEFLAGS",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_CRATE_NAME",
    "CARGO_TARGET_TMPDIR",
    "CARGO_RUSTC_CURRENT_DIR",
    "CARGO",
];
/// Prefixes of per-package variables set by an outer cargo.
const SCRUBBED_PREFIXES: [&str; 2] = ["CARGO_PKG_", "CARGO_BIN_"];

/// Where a toolchain comes from.
#[derive(Debug, Clone)]
enum Source {
    /// The `rustc`/`cargo` on `PATH` (usually rustup proxies), with its release version.
    Active { release: String },
    /// The pinned toolchain installed in the cache, used without rustup.
    Pinned { prefix: PathBuf },
}

/// A toolchain able to build handler crates, and the wasm target to build them for.
#[derive(Debug, Clone)]
pub(crate) struct Toolchain {
    source: Source,
    /// The `--target` to pass to cargo.
    pub(crate) target: &'static str,
}

impl Toolchain {
    /// A human description, e.g. `active rust 1.95.0 (wasm32-wasip2)`.
    pub(crate) fn describe(&self) -> String {
        match &self.source {
            Source::Active { release } => format!("active rust {release} ({})", self.target),
            Source::Pinned { .. } => format!("pinned rust {PINNED_VERSION} ({})", self.target),
        }
    }

    /// A `cargo` command for this toolchain, run in `crate_dir`, with a scrubbed environment.
    pub(crate) fn cargo(&self, crate_dir: &Path) -> Result<Command> {
        match &self.source {
            Source::Active { .. } => Ok(path_cargo(crate_dir)),
            Source::Pinned { prefix } => {
                let bin = prefix.join("bin");
                let mut cmd = scrubbed(bin.join("cargo"), crate_dir);
                // Called directly rather than through rustup: cargo must find the matching
                // rustc (RUSTC) and its helpers (PATH), not the rustup proxies.
                cmd.env("RUSTC", bin.join("rustc"));
                let path = std::env::var_os("PATH").unwrap_or_default();
                let joined = std::env::join_paths(
                    std::iter::once(bin.clone()).chain(std::env::split_paths(&path)),
                )
                .with_context(|| format!("cannot put {} first in PATH", bin.display()))?;
                cmd.env("PATH", joined);
                Ok(cmd)
            }
        }
    }
}

/// The plain `cargo` found on `PATH`, run in `crate_dir`, with a scrubbed environment.
pub(crate) fn path_cargo(crate_dir: &Path) -> Command {
    scrubbed("cargo", crate_dir)
}

/// A command for `program` in `dir`, without the variables an outer cargo leaks.
fn scrubbed(program: impl AsRef<OsStr>, dir: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.current_dir(dir);
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if SCRUBBED_VARS.contains(&key) || SCRUBBED_PREFIXES.iter().any(|p| key.starts_with(p)) {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// Picks the toolchain for `crate_dir`, installing one if needed, in this order:
/// the active toolchain's `wasm32-wasip2`, its `wasm32-unknown-unknown`, the pinned
/// toolchain already in the cache, `rustup target add wasm32-wasip2` (bounded by a
/// timeout), and finally a fresh install of the pinned toolchain.
pub(crate) fn select(crate_dir: &Path) -> Result<Toolchain> {
    let active = probe_active(crate_dir);
    if let Some(active) = &active {
        for target in [WASIP2, UNKNOWN] {
            if active.has_target(target) {
                return Ok(active.toolchain(target));
            }
        }
    }

    let prefix = cache::toolchain_prefix(&format!("rust-{PINNED_VERSION}"))?;
    if is_installed(&prefix) {
        return Ok(pinned(prefix));
    }

    if let Some(active) = &active {
        eprintln!(
            "sluice: the active Rust toolchain ({}) has no wasm target; trying `rustup target add {WASIP2}` (up to {} s)...",
            active.release,
            RUSTUP_TIMEOUT.as_secs()
        );
        match rustup_target_add(crate_dir) {
            Ok(()) => {
                if let Some(active) = probe_active(crate_dir)
                    && active.has_target(WASIP2)
                {
                    return Ok(active.toolchain(WASIP2));
                }
                eprintln!("sluice: rustup reported success but {WASIP2} is still missing");
            }
            Err(why) => eprintln!("sluice: rustup cannot add {WASIP2} here ({why})"),
        }
    }

    install_pinned(&prefix)?;
    Ok(pinned(prefix))
}

fn pinned(prefix: PathBuf) -> Toolchain {
    Toolchain {
        source: Source::Pinned { prefix },
        target: UNKNOWN,
    }
}

/// What the `rustc` on `PATH` reports about itself.
struct Active {
    release: String,
    sysroot: PathBuf,
}

impl Active {
    fn has_target(&self, target: &str) -> bool {
        self.sysroot
            .join("lib")
            .join("rustlib")
            .join(target)
            .is_dir()
    }

    fn toolchain(&self, target: &'static str) -> Toolchain {
        Toolchain {
            source: Source::Active {
                release: self.release.clone(),
            },
            target,
        }
    }
}

/// Asks the `rustc` on `PATH` (as seen from `crate_dir`, so `rust-toolchain.toml` applies)
/// for its sysroot and version; `None` when there is no usable `rustc`.
fn probe_active(crate_dir: &Path) -> Option<Active> {
    let rustc = |args: &[&str]| -> Option<String> {
        let mut cmd = scrubbed("rustc", crate_dir);
        cmd.args(args).stdout(Stdio::piped());
        match run_bounded(&mut cmd, PROBE_TIMEOUT) {
            Ok(Some((status, out))) if status.success() => Some(out),
            _ => None,
        }
    };
    let sysroot = PathBuf::from(rustc(&["--print", "sysroot"])?.trim());
    let verbose = rustc(&["-vV"])?;
    let release = verbose
        .lines()
        .find_map(|line| line.strip_prefix("release: "))
        .unwrap_or("unknown version")
        .trim()
        .to_owned();
    Some(Active { release, sysroot })
}

/// Runs `rustup target add wasm32-wasip2`, killed after [`RUSTUP_TIMEOUT`].
fn rustup_target_add(crate_dir: &Path) -> Result<()> {
    let mut cmd = scrubbed("rustup", crate_dir);
    cmd.args(["target", "add", WASIP2]).stdout(Stdio::null());
    match run_bounded(&mut cmd, RUSTUP_TIMEOUT) {
        Ok(Some((status, _))) if status.success() => Ok(()),
        Ok(Some((status, _))) => bail!("rustup failed: {status}"),
        Ok(None) => bail!("timed out after {} s", RUSTUP_TIMEOUT.as_secs()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => bail!("rustup is not installed"),
        Err(e) => Err(e).context("cannot run rustup"),
    }
}

/// Runs `cmd` (stdin and stderr detached) for at most `limit`, killing it afterwards.
/// Returns `None` on timeout, else the exit status and stdout (if the caller piped it;
/// only used for small outputs that fit in the pipe buffer).
fn run_bounded(cmd: &mut Command, limit: Duration) -> io::Result<Option<(ExitStatus, String)>> {
    cmd.stdin(Stdio::null()).stderr(Stdio::null());
    let mut child = cmd.spawn()?;
    let start = Instant::now();
    // Probes finish in milliseconds: poll often at first, then back off.
    let mut pause = Duration::from_millis(2);
    loop {
        if let Some(status) = child.try_wait()? {
            let mut out = String::new();
            if let Some(mut stdout) = child.stdout.take() {
                stdout.read_to_string(&mut out)?;
            }
            return Ok(Some((status, out)));
        }
        if start.elapsed() >= limit {
            // Ignore errors: the child may have exited in between.
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// Installs are renamed into place whole, so a complete-looking prefix is a complete one.
fn is_installed(prefix: &Path) -> bool {
    prefix.join("bin").join("rustc").is_file()
        && prefix.join("bin").join("cargo").is_file()
        && prefix.join("lib").join("rustlib").join(UNKNOWN).is_dir()
}

/// Installs the pinned toolchain at `prefix` (once; see [`cache::install_once`]).
fn install_pinned(prefix: &Path) -> Result<()> {
    if !cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        bail!(
            "no wasm target is installed and the pinned Rust {PINNED_VERSION} toolchain exists for x86_64 Linux only: \
             run `rustup target add {WASIP2}`"
        );
    }
    let what = format!("pinned Rust {PINNED_VERSION}");
    cache::install_once(prefix, &what, is_installed, |work| {
        eprintln!(
            "sluice: installing pinned Rust {PINNED_VERSION} wasm toolchain (one-time, ~900 MB) into {}...",
            prefix.display()
        );
        let wheels = work.join("wheels");
        let unpack = work.join("unpack");
        download_wheels(&wheels)?;
        let mut parts = Vec::with_capacity(WHEELS.len());
        for (n, sha256) in WHEELS {
            let wheel = wheels.join(format!(
                "arena_rust_toolchain_data{n}-{PINNED_VERSION}-py3-none-any.whl"
            ));
            verify_sha256(&wheel, sha256)?;
            parts.push((wheel, format!("arena_rust_toolchain_data{n}/part_{n}")));
        }
        eprintln!("sluice: unpacking the toolchain...");
        fs::create_dir_all(&unpack)
            .with_context(|| format!("cannot create {}", unpack.display()))?;
        unpack_parts(parts, &unpack)?;

        let unpacked = unpack.join("prefix");
        if !is_installed(&unpacked) {
            bail!(
                "the pinned toolchain archive did not contain prefix/bin/rustc, prefix/bin/cargo and the {UNKNOWN} standard library (unpacked in {})",
                unpack.display()
            );
        }
        check_rustc(&unpacked.join("bin").join("rustc"))?;
        Ok(unpacked)
    })
}

/// Downloads the three wheels with `python3 -m pip download` into `dir`.
fn download_wheels(dir: &Path) -> Result<()> {
    let missing = "download the pinned Rust toolchain from PyPI (or install a wasm target with `rustup target add wasm32-wasip2`)";
    command::require_python_pip(missing)?;

    eprintln!(
        "sluice: downloading arena-rust-toolchain-data{{1,2,3}}=={PINNED_VERSION} with pip..."
    );
    let mut cmd = Command::new("python3");
    cmd.args([
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        // The wheels are unpacked once; a second copy in pip's cache would waste ~300 MB.
        "--no-cache-dir",
        "--disable-pip-version-check",
        "--no-input",
        "--progress-bar",
        "off",
        "--quiet",
        "-d",
    ])
    .arg(dir);
    for (n, _) in WHEELS {
        cmd.arg(format!("arena-rust-toolchain-data{n}=={PINNED_VERSION}"));
    }
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .context("cannot run `python3 -m pip download`")?;
    if !output.status.success() {
        bail!(
            "`python3 -m pip download` of the pinned Rust toolchain failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// Checks a downloaded wheel against its pinned sha256: the wheels are a third-party build.
fn verify_sha256(path: &Path, expected: &str) -> Result<()> {
    let mut file = File::open(path)
        .with_context(|| format!("cannot open the downloaded wheel {}", path.display()))?;
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher).with_context(|| format!("cannot read {}", path.display()))?;
    let actual = hex::encode(hasher.finalize());
    if actual != expected {
        bail!(
            "sha256 mismatch for {}: expected {expected}, got {actual}; refusing to install it",
            path.display()
        );
    }
    Ok(())
}

/// Unpacks the `tar.zst` split over `parts` (wheel path, member name) into `dest`.
///
/// A thread inflates the zip members one after the other into a pipe while this thread
/// decodes zstd and untars from it: nothing of the ~900 MB goes through memory or disk
/// twice, and the two stages use both cores.
fn unpack_parts(parts: Vec<(PathBuf, String)>, dest: &Path) -> Result<()> {
    let (reader, mut writer) = io::pipe().context("cannot create a pipe")?;
    let producer = thread::spawn(move || -> Result<()> {
        for (wheel, member) in parts {
            let file =
                File::open(&wheel).with_context(|| format!("cannot open {}", wheel.display()))?;
            let mut zip = zip::ZipArchive::new(BufReader::new(file))
                .with_context(|| format!("{} is not a valid wheel (zip)", wheel.display()))?;
            let mut part = zip
                .by_name(&member)
                .with_context(|| format!("{} has no member {member}", wheel.display()))?;
            io::copy(&mut part, &mut writer)
                .with_context(|| format!("cannot extract {member} from {}", wheel.display()))?;
        }
        writer.flush().context("cannot flush the pipe")?;
        Ok(())
    });
    let consumed = untar(BufReader::with_capacity(1 << 20, reader), dest);
    let produced = producer
        .join()
        .map_err(|_| anyhow!("the thread extracting the toolchain parts panicked"))?;
    match (produced, consumed) {
        (Ok(()), consumed) => consumed,
        // The reader gave up first: its error is the cause, the broken pipe a consequence.
        (Err(p), Err(c)) if is_broken_pipe(&p) => Err(c),
        // The producer failed first (bad zip...): the reader then saw a truncated stream.
        (Err(p), _) => Err(p),
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// Decodes a zstd stream into a tar archive and unpacks it in `dest`, skipping macOS
/// AppleDouble files (`._*`), which the archive was made with.
fn untar<R: BufRead>(reader: R, dest: &Path) -> Result<()> {
    let decoder = ZstdFrames::new(reader)?;
    let mut archive = tar::Archive::new(decoder);
    // macOS xattrs (quarantine, provenance) are meaningless here.
    archive.set_unpack_xattrs(false);
    for entry in archive
        .entries()
        .context("cannot read the toolchain archive")?
    {
        let mut entry = entry.context("corrupt toolchain archive")?;
        let path = entry
            .path()
            .context("bad path in the toolchain archive")?
            .into_owned();
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("._"))
        {
            continue;
        }
        entry
            .unpack_in(dest)
            .with_context(|| format!("cannot unpack {} into {}", path.display(), dest.display()))?;
    }
    // Read to the end so the producer thread is not cut off by a broken pipe.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).context("corrupt toolchain archive after its end")?;
    Ok(())
}

/// A zstd decoder over every frame of a stream (`zstd -T`/`pzstd` may write several);
/// ruzstd's [`StreamingDecoder`] stops after one.
struct ZstdFrames<R: BufRead> {
    decoder: Option<StreamingDecoder<R, FrameDecoder>>,
}

impl<R: BufRead> ZstdFrames<R> {
    fn new(reader: R) -> Result<Self> {
        let decoder = StreamingDecoder::new(reader)
            .map_err(|e| anyhow!("the toolchain archive is not zstd: {e}"))?;
        Ok(Self {
            decoder: Some(decoder),
        })
    }
}

impl<R: BufRead> Read for ZstdFrames<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let Some(decoder) = self.decoder.as_mut() else {
                return Ok(0);
            };
            let n = decoder.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            let Some(finished) = self.decoder.take() else {
                return Ok(0);
            };
            let mut inner = finished.into_inner();
            if inner.fill_buf()?.is_empty() {
                return Ok(0);
            }
            self.decoder = Some(StreamingDecoder::new(inner).map_err(io::Error::other)?);
        }
    }
}

/// Runs the unpacked `rustc -vV` before it is moved into place, so a broken unpack is not cached.
fn check_rustc(rustc: &Path) -> Result<()> {
    let output = Command::new(rustc)
        .arg("-vV")
        .env_remove("RUSTUP_TOOLCHAIN")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run the unpacked {}", rustc.display()))?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success()
        || !text
            .lines()
            .any(|l| l == format!("release: {PINNED_VERSION}"))
    {
        bail!(
            "the unpacked {} does not work or is not {PINNED_VERSION} ({}): {}{}",
            rustc.display(),
            output.status,
            text,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ruzstd::encoding::{CompressionLevel, compress_to_vec};

    fn tar_with(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o755);
            header.set_cksum();
            builder
                .append_data(&mut header, path, *data)
                .expect("append");
        }
        builder.into_inner().expect("finish tar")
    }

    #[test]
    fn zstd_frames_decodes_every_frame() {
        let mut stream = compress_to_vec(&b"first "[..], CompressionLevel::Fastest);
        stream.extend(compress_to_vec(&b"second"[..], CompressionLevel::Fastest));
        let mut out = String::new();
        ZstdFrames::new(&stream[..])
            .expect("zstd")
            .read_to_string(&mut out)
            .expect("decode");
        assert_eq!(out, "first second");
    }

    #[test]
    fn untar_skips_apple_double_files() {
        let archive = tar_with(&[
            ("prefix/bin/rustc", b"#!/bin/sh\n"),
            ("prefix/bin/._rustc", b"junk"),
            ("prefix/._bin", b"junk"),
        ]);
        let compressed = compress_to_vec(&archive[..], CompressionLevel::Fastest);
        let dir = tempfile::tempdir().expect("tempdir");
        untar(&compressed[..], dir.path()).expect("untar");
        let rustc = dir.path().join("prefix/bin/rustc");
        assert!(rustc.is_file());
        assert!(!dir.path().join("prefix/bin/._rustc").exists());
        assert!(!dir.path().join("prefix/._bin").exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&rustc).expect("metadata").permissions().mode();
            assert_eq!(mode & 0o111, 0o111, "executable bit kept");
        }
    }

    #[test]
    fn unpack_parts_concatenates_zip_members_in_order() {
        let archive = tar_with(&[("prefix/bin/cargo", b"cargo!")]);
        let compressed = compress_to_vec(&archive[..], CompressionLevel::Fastest);
        let (first, second) = compressed.split_at(compressed.len() / 2);
        let dir = tempfile::tempdir().expect("tempdir");
        let mut parts = Vec::new();
        for (n, chunk) in [(1, first), (2, second)] {
            let wheel = dir.path().join(format!("w{n}.whl"));
            let mut zip = zip::ZipWriter::new(File::create(&wheel).expect("create"));
            let member = format!("pkg{n}/part_{n}");
            zip.start_file(member.as_str(), zip::write::SimpleFileOptions::default())
                .expect("start");
            zip.write_all(chunk).expect("write");
            zip.finish().expect("finish");
            parts.push((wheel, member));
        }
        let dest = dir.path().join("out");
        fs::create_dir(&dest).expect("mkdir");
        unpack_parts(parts, &dest).expect("unpack");
        assert_eq!(
            fs::read(dest.join("prefix/bin/cargo")).expect("read"),
            b"cargo!"
        );
    }

    #[test]
    fn unpack_parts_reports_a_missing_member() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wheel = dir.path().join("w.whl");
        let mut zip = zip::ZipWriter::new(File::create(&wheel).expect("create"));
        zip.start_file("other", zip::write::SimpleFileOptions::default())
            .expect("start");
        zip.finish().expect("finish");
        let err = unpack_parts(vec![(wheel, "pkg/part_1".to_owned())], dir.path())
            .expect_err("must fail");
        assert!(
            format!("{err:#}").contains("has no member pkg/part_1"),
            "{err:#}"
        );
    }

    #[test]
    fn sha256_mismatch_names_file_and_both_hashes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("x.whl");
        fs::write(&file, b"abc").expect("write");
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        verify_sha256(&file, abc).expect("matches");
        let err = verify_sha256(&file, &"0".repeat(64))
            .expect_err("must fail")
            .to_string();
        assert!(
            err.contains("x.whl") && err.contains(abc) && err.contains(&"0".repeat(64)),
            "{err}"
        );
    }
}
