//! File writing under the provisioning root: paths in the config are
//! absolute host paths, resolved under `--root`; files are written by
//! [`common::atomic`] with their final mode and owner (temporary name,
//! fsync, rename), so a file is either absent, old, or complete.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// `abs` (an absolute host path) under `root`.
pub fn under(root: &Path, abs: &Path) -> PathBuf {
    root.join(abs.strip_prefix("/").unwrap_or(abs))
}

pub use common::atomic::Attrs;

/// Whether `path` already holds exactly `bytes` with `attrs`.
pub fn is_same(path: &Path, bytes: &[u8], attrs: Attrs) -> bool {
    let Ok(md) = fs::symlink_metadata(path) else {
        return false;
    };
    md.is_file()
        && md.mode() & 0o7777 == attrs.mode
        && md.uid() == attrs.uid
        && md.gid() == attrs.gid
        && md.len() == bytes.len() as u64
        && fs::read(path).is_ok_and(|b| b == bytes)
}

/// Create the parent directories of `path` (mode 0755 root).
pub fn ensure_parent(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    Ok(())
}

/// Write `bytes` to `path` atomically with `attrs`. Returns false when the
/// file already had exactly this content and these attributes.
pub fn write(path: &Path, bytes: &[u8], attrs: Attrs) -> Result<bool> {
    if is_same(path, bytes, attrs) {
        return Ok(false);
    }
    ensure_parent(path)?;
    common::atomic::write_with(path, bytes, attrs)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(true)
}

/// The uid and gid of `user` in `<root>/etc/passwd`, if the user exists.
pub fn lookup_user(root: &Path, user: &str) -> Option<(u32, u32, PathBuf)> {
    let passwd = fs::read_to_string(root.join("etc/passwd")).ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 7 && f[0] == user)
            .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?, PathBuf::from(f[5]))))?
    })
}

/// The members of `group` in `<root>/etc/group` (None: no such group).
pub fn group_members(root: &Path, group: &str) -> Option<Vec<String>> {
    let groups = fs::read_to_string(root.join("etc/group")).ok()?;
    groups.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 4 && f[0] == group).then(|| {
            f[3].split(',')
                .filter(|m| !m.is_empty())
                .map(str::to_string)
                .collect()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_atomically_and_idempotently() {
        let d = tempfile::tempdir().unwrap();
        let p = under(d.path(), Path::new("/etc/x/y.conf"));
        assert!(p.starts_with(d.path()));
        let a = Attrs::root(0o640);
        assert!(write(&p, b"one", a).unwrap());
        assert!(
            !write(&p, b"one", a).unwrap(),
            "same content is not rewritten"
        );
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o7777, 0o640);
        assert!(write(&p, b"two", a).unwrap());
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert!(
            write(&p, b"two", Attrs::root(0o600)).unwrap(),
            "mode change rewrites"
        );
        assert!(!common::atomic::tmp_name(&p).exists());
    }

    #[test]
    fn reads_passwd_and_group() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("etc")).unwrap();
        fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\ncore:x:1000:1001::/home/core:/bin/bash\n",
        )
        .unwrap();
        fs::write(
            d.path().join("etc/group"),
            "wheel:x:10:a,core\nempty:x:11:\n",
        )
        .unwrap();
        assert_eq!(
            lookup_user(d.path(), "core"),
            Some((1000, 1001, PathBuf::from("/home/core")))
        );
        assert_eq!(lookup_user(d.path(), "nobody"), None);
        assert_eq!(
            group_members(d.path(), "wheel"),
            Some(vec!["a".to_string(), "core".to_string()])
        );
        assert_eq!(group_members(d.path(), "empty"), Some(vec![]));
        assert_eq!(group_members(d.path(), "nope"), None);
    }
}
