//! The Sluice cache directory, and installing build tools into it once.
//!
//! Owns where the cache is ([`cache_dir`]) and [`install_once`]: the file lock that
//! lets concurrent `sluice build`s share one install, the clean-up of interrupted
//! installs, and the rule that an install is built in a scratch directory and renamed
//! into place whole, so a prefix that looks complete is complete. The pinned Rust
//! toolchain, the componentize-py venv and the jco npm tree all go through it.

use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};

/// The Sluice cache: `$SLUICE_CACHE_DIR`, else `$XDG_CACHE_HOME/sluice`, else `$HOME/.cache/sluice`.
pub(crate) fn cache_dir() -> Result<PathBuf> {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = var("SLUICE_CACHE_DIR") {
        return Ok(dir);
    }
    if let Some(dir) = var("XDG_CACHE_HOME") {
        return Ok(dir.join("sluice"));
    }
    if let Some(home) = var("HOME") {
        return Ok(home.join(".cache").join("sluice"));
    }
    bail!("cannot locate a cache directory: set SLUICE_CACHE_DIR (or XDG_CACHE_HOME or HOME)")
}

/// `<cache>/toolchains/<name>`: where an installed tool lives.
pub(crate) fn toolchain_prefix(name: &str) -> Result<PathBuf> {
    Ok(cache_dir()?.join("toolchains").join(name))
}

/// Installs `what` at `prefix` unless it is there already, or another process
/// installed it while this one waited for the install lock.
///
/// `install` gets a fresh scratch directory beside `prefix` (removed afterwards,
/// also on failure) and returns the directory inside it to rename to `prefix`;
/// `is_installed` must accept that directory, else the install is refused. Progress
/// lines go to stderr.
pub(crate) fn install_once(
    prefix: &Path,
    what: &str,
    is_installed: impl Fn(&Path) -> bool,
    install: impl FnOnce(&Path) -> Result<PathBuf>,
) -> Result<()> {
    if is_installed(prefix) {
        return Ok(());
    }
    let parent = prefix
        .parent()
        .ok_or_else(|| anyhow!("install path {} has no parent", prefix.display()))?;
    fs::create_dir_all(parent)
        .with_context(|| format!("cannot create the cache directory {}", parent.display()))?;
    let name = prefix
        .file_name()
        .and_then(OsStr::to_str)
        .ok_or_else(|| anyhow!("install path {} has no UTF-8 file name", prefix.display()))?;

    // One installer at a time: the others wait here, then find the tool installed.
    let lock_path = parent.join(format!(".{name}.lock"));
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("cannot open the install lock {}", lock_path.display()))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            eprintln!(
                "sluice: waiting for another sluice process to finish installing {what} (lock {})...",
                lock_path.display()
            );
            lock.lock()
                .with_context(|| format!("cannot take the install lock {}", lock_path.display()))?;
        }
        Err(fs::TryLockError::Error(e)) => {
            return Err(e)
                .with_context(|| format!("cannot take the install lock {}", lock_path.display()));
        }
    }
    if is_installed(prefix) {
        eprintln!("sluice: {what} was installed by another process; reusing it");
        return Ok(());
    }

    // Holding the lock, anything left over is from an interrupted install.
    let tmp_prefix = format!(".tmp-{name}-");
    for entry in
        fs::read_dir(parent).with_context(|| format!("cannot list {}", parent.display()))?
    {
        let entry = entry.with_context(|| format!("cannot list {}", parent.display()))?;
        if entry.file_name().to_string_lossy().starts_with(&tmp_prefix) {
            remove_dir_logged(&entry.path());
        }
    }
    if prefix.exists() {
        eprintln!(
            "sluice: removing the incomplete {what} at {}",
            prefix.display()
        );
        fs::remove_dir_all(prefix).with_context(|| {
            format!(
                "cannot remove the incomplete {what} at {}",
                prefix.display()
            )
        })?;
    }

    let started = Instant::now();
    let work = TempDir::create(parent.join(format!("{tmp_prefix}{}", std::process::id())))?;
    let built = install(&work.0)?;
    if !is_installed(&built) {
        bail!(
            "installing {what} left an incomplete tree in {}",
            built.display()
        );
    }
    fs::rename(&built, prefix).with_context(|| {
        format!(
            "cannot move {what} from {} to {}",
            built.display(),
            prefix.display()
        )
    })?;
    drop(work);
    eprintln!(
        "sluice: installed {what} into {} in {:.0} s",
        prefix.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A directory removed (best effort) when dropped, so a failed install leaves nothing behind.
struct TempDir(PathBuf);

impl TempDir {
    fn create(path: PathBuf) -> Result<Self> {
        fs::create_dir_all(&path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Self(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        remove_dir_logged(&self.0);
    }
}

fn remove_dir_logged(path: &Path) {
    if let Err(e) = fs::remove_dir_all(path)
        && e.kind() != io::ErrorKind::NotFound
    {
        eprintln!("sluice: warning: cannot remove {}: {e}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn has_done(dir: &Path) -> bool {
        dir.join("done").is_file()
    }

    #[test]
    fn install_once_renames_the_scratch_result_into_place_and_cleans_up() {
        let cache = tempfile::tempdir().expect("tempdir");
        let prefix = cache.path().join("tool-1.0");
        // Left over by an interrupted install: removed under the lock.
        fs::create_dir_all(cache.path().join(".tmp-tool-1.0-1")).expect("mkdir");
        install_once(&prefix, "tool 1.0", has_done, |work| {
            let tree = work.join("tree");
            fs::create_dir_all(&tree)?;
            fs::write(tree.join("done"), b"")?;
            Ok(tree)
        })
        .expect("install");
        assert!(has_done(&prefix));
        let left: Vec<_> = fs::read_dir(cache.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".tmp-"))
            .collect();
        assert!(left.is_empty(), "{left:?}");

        // Installed: the installer is not called again.
        install_once(&prefix, "tool 1.0", has_done, |_| {
            panic!("must not install twice")
        })
        .expect("reuse");
    }

    #[test]
    fn install_once_refuses_an_incomplete_tree() {
        let cache = tempfile::tempdir().expect("tempdir");
        let prefix = cache.path().join("tool-1.0");
        let err = install_once(&prefix, "tool 1.0", has_done, |work| Ok(work.to_path_buf()))
            .expect_err("must fail");
        assert!(
            format!("{err:#}").contains("installing tool 1.0 left an incomplete tree"),
            "{err:#}"
        );
        assert!(!prefix.exists());
    }
}
