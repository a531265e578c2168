//! Files that appear complete or not at all: written under a temporary name
//! beside their final one (`.atomicbuild-tmp.NAME`), fsynced, renamed, and
//! the directory fsynced. A crash leaves at most a temporary file, which
//! whoever owns the directory removes on its next run.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Prefix of every temporary name.
pub const TMP_PREFIX: &str = ".atomicbuild-tmp.";

/// The temporary name under which `final_path` is written.
pub fn tmp_name(final_path: &Path) -> PathBuf {
    let name = final_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    final_path.with_file_name(format!("{TMP_PREFIX}{name}"))
}

/// fsync a directory (after a rename in it).
pub fn sync_dir(dir: &Path) -> Result<()> {
    let d = File::open(dir).with_context(|| format!("opening {} to sync it", dir.display()))?;
    d.sync_all()
        .with_context(|| format!("syncing {}", dir.display()))
}

/// Rename a finished, already-synced temp file to its final name.
pub fn commit_tmp(tmp: &Path, path: &Path) -> Result<()> {
    fs::rename(tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    sync_dir(match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    })
}

/// Owner and permission bits of a file to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attrs {
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

impl Attrs {
    /// root:root with `mode`.
    pub fn root(mode: u32) -> Attrs {
        Attrs {
            mode,
            uid: 0,
            gid: 0,
        }
    }
}

/// Write `bytes` to `path` atomically, with the process's owner and a mode
/// of 0644 (less the umask).
pub fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    write_file(path, bytes, None)
}

/// Write `bytes` to `path` atomically with exactly `attrs` (the file is
/// never readable by others before its mode is set).
pub fn write_with(path: &Path, bytes: &[u8], attrs: Attrs) -> Result<()> {
    write_file(path, bytes, Some(attrs))
}

fn write_file(path: &Path, bytes: &[u8], attrs: Option<Attrs>) -> Result<()> {
    let tmp = tmp_name(path);
    let _ = fs::remove_file(&tmp);
    let result = (|| -> Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(if attrs.is_some() { 0o600 } else { 0o644 })
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(bytes)
            .with_context(|| format!("writing {}", tmp.display()))?;
        finish(&f, &tmp, path, attrs)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Give the written temporary file `f` (at `tmp`) its owner and mode when
/// `attrs` says, fsync it and rename it over `path`.
pub fn finish(f: &File, tmp: &Path, path: &Path, attrs: Option<Attrs>) -> Result<()> {
    if let Some(a) = attrs {
        std::os::unix::fs::fchown(f, Some(a.uid), Some(a.gid))
            .with_context(|| format!("setting the owner of {}", tmp.display()))?;
        f.set_permissions(fs::Permissions::from_mode(a.mode))
            .with_context(|| format!("setting the mode of {}", tmp.display()))?;
    }
    f.sync_all()
        .with_context(|| format!("syncing {}", tmp.display()))?;
    commit_tmp(tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn atomic_write_leaves_no_tmp_and_replaces() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("SHA256SUMS");
        write(&p, b"one").unwrap();
        write(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert!(!tmp_name(&p).exists());
    }

    #[test]
    fn attrs_are_set_before_the_rename() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("key");
        write_with(&p, b"secret", Attrs::root(0o600)).unwrap();
        let md = fs::metadata(&p).unwrap();
        assert_eq!(md.mode() & 0o7777, 0o600);
        assert_eq!(fs::read(&p).unwrap(), b"secret");
        assert_eq!(tmp_name(&p).file_name().unwrap(), ".atomicbuild-tmp.key");
    }

    #[test]
    fn a_failed_write_leaves_nothing() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("no-such-dir/file");
        assert!(write(&p, b"x").is_err());
        assert!(!tmp_name(&p).exists());
    }
}
