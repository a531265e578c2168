//! The stage cache for file artifacts (installed-root records, initramfs,
//! disk images; the trees themselves live in the object store): entries under
//! `CACHE/stages/STAGE/KEY/`, each holding its files and an `entry.json`
//! with their sizes and sha256, written last. An entry without `entry.json`
//! (a partial write) or whose files do not match it (truncated, corrupted)
//! is removed and rebuilt, never used.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::fsutil;
use crate::fsutil::sha256_file;

mod fsck;
pub use fsck::{fsck, Report as FsckReport};

/// Damage in the cache that a build found where it reads anyway (an
/// object whose content no longer matches its checksum): the build runs
/// [`fsck`] and starts again.
#[derive(Debug, thiserror::Error)]
#[error("the cache is damaged: {0}")]
pub struct Damaged(pub String);

/// Builds a cache key: sha256 over length-prefixed parts, so that no two
/// different sequences of parts hash alike.
pub struct KeyHasher(sha2::Sha256);

impl Default for KeyHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl KeyHasher {
    /// An empty key.
    pub fn new() -> Self {
        use sha2::Digest;
        KeyHasher(sha2::Sha256::new())
    }

    /// Add one part.
    pub fn put(&mut self, part: impl AsRef<[u8]>) -> &mut Self {
        use sha2::Digest;
        let b = part.as_ref();
        self.0.update((b.len() as u64).to_le_bytes());
        self.0.update(b);
        self
    }

    /// Add every entry below `dir` in sorted order: its path relative to
    /// `base`, its mode, and its contents (files) or target (symlinks).
    pub fn put_tree(&mut self, base: &Path, dir: &Path) -> Result<&mut Self> {
        use std::os::unix::fs::MetadataExt;
        crate::fsutil::walk_sorted(dir, &mut |p, md| {
            self.put(
                p.strip_prefix(base)
                    .unwrap_or(p)
                    .to_string_lossy()
                    .as_bytes(),
            );
            self.put(md.mode().to_le_bytes());
            if md.is_file() {
                self.put(fs::read(p)?);
            } else if md.file_type().is_symlink() {
                self.put(fs::read_link(p)?.to_string_lossy().as_bytes());
            }
            Ok(())
        })?;
        Ok(self)
    }

    /// The key as hex.
    pub fn finish(self) -> String {
        use sha2::Digest;
        hex::encode(self.0.finalize())
    }
}

/// One file in an entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct FileSum {
    name: String,
    size: u64,
    sha256: String,
}

/// What `entry.json` records.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct EntryMeta {
    stage: String,
    key: String,
    created: u64,
    files: Vec<FileSum>,
}

/// One cache entry, as `cache list` shows it.
#[derive(Debug, Clone)]
pub struct EntryInfo {
    /// Kind of entry ("roots", or a stage name).
    pub kind: String,
    /// Cache key.
    pub key: String,
    /// Bytes it takes on disk.
    pub bytes: u64,
    /// Seconds since the epoch when it was last written or used.
    pub last_used: u64,
    /// Its directory.
    pub path: PathBuf,
}

/// File-artifact cache rooted at a cache directory.
pub struct StageCache {
    dir: PathBuf,
}

impl StageCache {
    /// Cache under `cache_dir/stages`.
    pub fn new(cache_dir: &Path) -> Self {
        StageCache {
            dir: cache_dir.join("stages"),
        }
    }

    fn entry(&self, stage: &str, key: &str) -> PathBuf {
        self.dir.join(stage).join(key)
    }

    /// The entry's directory if it is complete and intact; a damaged entry
    /// is deleted (and `Ok(None)` returned, so the caller rebuilds it).
    pub fn get(&self, stage: &str, key: &str) -> Result<Option<PathBuf>> {
        let e = self.entry(stage, key);
        if !e.exists() {
            return Ok(None);
        }
        let _l = fsutil::lock_file(&self.dir.join(stage).join(format!("{key}.lock")), false)?;
        match check(&e) {
            Ok(()) => {
                touch(&e);
                Ok(Some(e))
            }
            Err(why) => {
                eprintln!(
                    "    cache entry {stage}/{} is damaged ({why}); rebuilding it",
                    &key[..12.min(key.len())]
                );
                drop(_l);
                let _x =
                    fsutil::lock_file(&self.dir.join(stage).join(format!("{key}.lock")), true)?;
                fsutil::remove_tree(&e)?;
                Ok(None)
            }
        }
    }

    /// Store `files` (name in the entry, source path) under `stage/key`.
    pub fn put(&self, stage: &str, key: &str, files: &[(&str, &Path)]) -> Result<()> {
        self.put_with(stage, key, files.len(), |tmp, i| {
            let (name, src) = files[i];
            let dst = tmp.join(name);
            fsutil::copy_sparse(src, &dst).with_context(|| format!("caching {}", src.display()))?;
            Ok(FileSum {
                name: name.to_string(),
                size: fs::metadata(&dst)?.len(),
                sha256: sha256_file(&dst)?,
            })
        })
    }

    /// Store `files` (name, path, its known sha256) as second hard links
    /// (copies across file systems): for large artifacts that are also
    /// outputs. Whoever modifies the output damages the entry, which the
    /// next `get` then detects and drops.
    pub fn put_linked(&self, stage: &str, key: &str, files: &[(&str, &Path, &str)]) -> Result<()> {
        self.put_with(stage, key, files.len(), |tmp, i| {
            let (name, src, sha256) = files[i];
            fsutil::link_or_copy(src, &tmp.join(name))
                .with_context(|| format!("caching {}", src.display()))?;
            Ok(FileSum {
                name: name.to_string(),
                size: fs::metadata(src)?.len(),
                sha256: sha256.to_string(),
            })
        })
    }

    fn put_with(
        &self,
        stage: &str,
        key: &str,
        n: usize,
        mut add: impl FnMut(&Path, usize) -> Result<FileSum>,
    ) -> Result<()> {
        let sdir = self.dir.join(stage);
        fs::create_dir_all(&sdir)?;
        let _l = fsutil::lock_file(&sdir.join(format!("{key}.lock")), true)?;
        let tmp = sdir.join(format!(
            "{}{key}.{}",
            fsutil::TMP_PREFIX,
            std::process::id()
        ));
        fsutil::remove_tree(&tmp)?;
        remove_dead_writers(&sdir, key)?;
        fs::create_dir_all(&tmp)?;
        let filled = (0..n)
            .map(|i| add(&tmp, i))
            .collect::<Result<Vec<FileSum>>>()
            .and_then(|files| {
                let meta = EntryMeta {
                    stage: stage.into(),
                    key: key.into(),
                    created: now(),
                    files,
                };
                common::atomic::write(&tmp.join("entry.json"), &serde_json::to_vec_pretty(&meta)?)
            });
        if let Err(e) = filled {
            // A full cache disk: leave nothing half-written behind.
            let _ = fsutil::remove_tree(&tmp);
            let hint = full_hint(&e);
            return Err(e.context(format!(
                "storing the {stage} cache entry in {}{hint}",
                sdir.display()
            )));
        }
        crate::failpoint::hit("cache.entry-filled");
        let e = self.entry(stage, key);
        fsutil::remove_tree(&e)?;
        fs::rename(&tmp, &e)?;
        common::atomic::sync_dir(&sdir)
    }
}

/// What to say of an error that came from the cache's file system being
/// full (ENOSPC, or libostree's `min-free-space-percent` guard): a hint
/// for the context naming the cache; "" for any other error.
pub fn full_hint(e: &anyhow::Error) -> &'static str {
    let full = e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .and_then(|io| io.raw_os_error())
            == Some(libc::ENOSPC)
            || c.to_string().contains("min-free-space")
            || c.to_string().contains("No space left on device")
    });
    match full {
        true => " (its file system is full: free space there, or point --cache-dir elsewhere; the cache stays valid)",
        false => "",
    }
}

/// Remove the temporary entries of `key` whose writer is dead (a killed
/// build): they would hold their bytes until the next `cache gc`.
fn remove_dead_writers(sdir: &Path, key: &str) -> Result<()> {
    let prefix = format!("{}{key}.", fsutil::TMP_PREFIX);
    for e in fs::read_dir(sdir)?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(&prefix)
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        // SAFETY: kill(2) with signal 0 only checks that the process exists.
        let alive = unsafe { libc::kill(pid, 0) } == 0
            || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH);
        if !alive {
            fsutil::remove_tree(&e.path())?;
        }
    }
    Ok(())
}

fn check(e: &Path) -> std::result::Result<(), String> {
    let meta: EntryMeta = serde_json::from_slice(
        &fs::read(e.join("entry.json"))
            .map_err(|_| "no entry.json: an interrupted write".to_string())?,
    )
    .map_err(|e| format!("entry.json unreadable: {e}"))?;
    for f in &meta.files {
        let p = e.join(&f.name);
        let size = fs::metadata(&p)
            .map_err(|_| format!("{} is missing", f.name))?
            .len();
        if size != f.size {
            return Err(format!("{} is {size} bytes, expected {}", f.name, f.size));
        }
        let sum = sha256_file(&p).map_err(|e| e.to_string())?;
        if sum != f.sha256 {
            return Err(format!("{} does not match its checksum", f.name));
        }
    }
    Ok(())
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn touch(p: &Path) {
    let _ = fs::File::open(p.join("entry.json")).and_then(|f| f.set_modified(SystemTime::now()));
}

/// Every entry in the cache directory (installed roots and stage files),
/// and the object store as one entry.
pub fn list(cache_dir: &Path) -> Result<Vec<EntryInfo>> {
    let mut out = file_entries(cache_dir)?;
    let repo = cache_dir.join("repo");
    if repo.join("config").is_file() {
        let last_used = fs::metadata(repo.join("refs/heads"))
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        out.push(EntryInfo {
            kind: "objects".into(),
            key: "OSTree object store (installed roots, commits)".into(),
            bytes: fsutil::tree_allocated(&repo).unwrap_or(0),
            last_used,
            path: repo,
        });
    }
    out.sort_by(|a, b| (a.kind.as_str(), b.last_used).cmp(&(b.kind.as_str(), a.last_used)));
    Ok(out)
}

/// The removable entries (installed roots of the old layout and stage
/// files), without walking the object store.
fn file_entries(cache_dir: &Path) -> Result<Vec<EntryInfo>> {
    let mut out = Vec::new();
    let mut scan = |kind: &str, dir: &Path, marker: &str| -> Result<()> {
        let Ok(rd) = fs::read_dir(dir) else {
            return Ok(());
        };
        for e in rd {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            if !e.file_type()?.is_dir() || name.starts_with('.') {
                continue;
            }
            let m = fs::metadata(e.path().join(marker)).ok();
            let last_used = m
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs());
            out.push(EntryInfo {
                kind: kind.to_string(),
                key: name,
                bytes: fsutil::tree_allocated(&e.path()).unwrap_or(0),
                last_used,
                path: e.path(),
            });
        }
        Ok(())
    };
    scan("root (old layout)", &cache_dir.join("roots"), "complete")?;
    if let Ok(rd) = fs::read_dir(cache_dir.join("stages")) {
        for s in rd {
            let s = s?;
            if s.file_type()?.is_dir() {
                let kind = s.file_name().to_string_lossy().into_owned();
                scan(&kind, &s.path(), "entry.json")?;
            }
        }
    }
    Ok(out)
}

/// The default bound of stage entries' size (`--cache-max`).
pub const DEFAULT_MAX: &str = "20G";

/// Remove stage entries, those unused the longest first, until the rest
/// take at most `max_bytes` on disk. The most recently used entry always
/// stays, whatever its size: a build never loses what it just stored. The
/// object store is not counted (it is pruned by what refers to it, by
/// [`gc`]). Returns (entries removed, bytes freed).
pub fn trim(cache_dir: &Path, max_bytes: u64) -> Result<(usize, u64)> {
    let mut entries = file_entries(cache_dir)?;
    entries.sort_by_key(|e| std::cmp::Reverse(e.last_used));
    let (mut kept, mut removed, mut freed) = (0u64, 0, 0);
    for (i, e) in entries.iter().enumerate() {
        if i == 0 || kept + e.bytes <= max_bytes {
            kept += e.bytes;
            continue;
        }
        remove_entry(e)?;
        removed += 1;
        freed += e.bytes;
    }
    Ok((removed, freed))
}

/// Remove one entry, waiting for whoever reads it.
fn remove_entry(e: &EntryInfo) -> Result<()> {
    let lock = e.path.with_file_name(format!("{}.lock", e.key));
    let _l = fsutil::lock_file(&lock, true)?;
    fsutil::remove_tree(&e.path)?;
    let _ = fs::remove_file(&lock);
    Ok(())
}

/// Remove entries not used for `older_than_days` (all of them with 0), and
/// leftovers of interrupted writes. Returns (entries removed, bytes freed).
pub fn gc(cache_dir: &Path, older_than_days: u64) -> Result<(usize, u64)> {
    let cutoff = now().saturating_sub(older_than_days * 86_400);
    let mut removed = 0;
    let mut freed = 0;
    // The object store is pruned below, by what still refers to it.
    for e in file_entries(cache_dir)? {
        if older_than_days == 0 || e.last_used < cutoff {
            remove_entry(&e)?;
            removed += 1;
            freed += e.bytes;
        }
    }
    for dir in [cache_dir.join("roots")].into_iter().chain(
        fs::read_dir(cache_dir.join("stages"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path()),
    ) {
        fsutil::remove_stale_tmp(&dir)?;
    }
    let repo_path = cache_dir.join("repo");
    if repo_path.join("config").is_file() {
        let repo = crate::objects::open_or_create(&repo_path)?;
        let stages = cache_dir.join("stages");
        let heads = repo_path.join("refs/heads");
        let (refs, bytes) = crate::objects::prune(&repo, "atomicbuild", |r| {
            if let Some(key) = r.strip_prefix("atomicbuild/install/") {
                return stages.join("install").join(key).is_dir();
            }
            let used = fs::metadata(heads.join(r))
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs());
            older_than_days != 0 && used >= cutoff
        })?;
        removed += refs;
        freed += bytes;
    }
    Ok((removed, freed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_then_get_round_trips() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("initramfs.img");
        fs::write(&src, b"initramfs bytes").unwrap();
        let c = StageCache::new(&d.path().join("cache"));
        assert!(c.get("initramfs", "k1").unwrap().is_none());
        c.put("initramfs", "k1", &[("initramfs.img", &src)])
            .unwrap();
        let e = c.get("initramfs", "k1").unwrap().unwrap();
        assert_eq!(
            fs::read(e.join("initramfs.img")).unwrap(),
            b"initramfs bytes"
        );
        assert_eq!(list(&d.path().join("cache")).unwrap().len(), 1);
    }

    #[test]
    fn truncated_or_partial_entries_are_dropped_not_used() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("f");
        fs::write(&src, vec![7u8; 4096]).unwrap();
        let c = StageCache::new(&d.path().join("cache"));
        c.put("initramfs", "k", &[("f", &src)]).unwrap();
        let e = c.get("initramfs", "k").unwrap().unwrap();
        fs::OpenOptions::new()
            .write(true)
            .open(e.join("f"))
            .unwrap()
            .set_len(100)
            .unwrap();
        assert!(c.get("initramfs", "k").unwrap().is_none());
        assert!(!e.exists(), "a damaged entry is removed");

        c.put("initramfs", "k", &[("f", &src)]).unwrap();
        fs::write(e.join("f"), vec![8u8; 4096]).unwrap();
        assert!(
            c.get("initramfs", "k").unwrap().is_none(),
            "same size, other bytes"
        );

        c.put("initramfs", "k", &[("f", &src)]).unwrap();
        fs::remove_file(e.join("entry.json")).unwrap();
        assert!(
            c.get("initramfs", "k").unwrap().is_none(),
            "interrupted write"
        );
    }

    #[test]
    fn trim_keeps_the_recently_used_within_the_bound() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("f");
        fs::write(&src, vec![1u8; 64 << 10]).unwrap();
        let cd = d.path().join("cache");
        let c = StageCache::new(&cd);
        let day = std::time::Duration::from_secs(86_400);
        for (i, k) in ["old", "mid", "new"].iter().enumerate() {
            c.put("disk", k, &[("f", &src)]).unwrap();
            let when = SystemTime::now() - day * (3 - i as u32);
            fs::File::open(cd.join("stages/disk").join(k).join("entry.json"))
                .unwrap()
                .set_modified(when)
                .unwrap();
        }
        // "old" is used again: now it is the most recent.
        assert!(c.get("disk", "old").unwrap().is_some());
        let one = list(&cd).unwrap()[0].bytes;
        assert!(one >= 64 << 10, "allocated bytes counted: {one}");
        assert_eq!(trim(&cd, 2 * one).unwrap(), (1, one));
        let left: Vec<String> = list(&cd).unwrap().into_iter().map(|e| e.key).collect();
        assert_eq!(left, ["old", "new"], "the least recently used goes");
        assert_eq!(trim(&cd, 0).unwrap().0, 1, "the newest always stays");
        assert_eq!(list(&cd).unwrap()[0].key, "old");
    }

    #[test]
    fn gc_removes_everything_with_zero_days() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("f");
        fs::write(&src, b"x").unwrap();
        let cd = d.path().join("cache");
        let c = StageCache::new(&cd);
        c.put("initramfs", "a", &[("f", &src)]).unwrap();
        c.put("initramfs", "b", &[("f", &src)]).unwrap();
        assert_eq!(gc(&cd, 30).unwrap().0, 0);
        assert_eq!(gc(&cd, 0).unwrap().0, 2);
        assert!(list(&cd).unwrap().is_empty());
    }
}
