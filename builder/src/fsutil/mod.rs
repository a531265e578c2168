//! File-system helpers: safe removal of scratch trees (never following a
//! stale bind mount into the host), sorted walks, overlay copies, sparse
//! copies that cross file systems, temporary-file cleanup and directory
//! locks. Atomic writes are [`common::atomic`]'s.

use std::ffi::CString;
use std::fs::{self, File};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

mod parallel;
mod scratch;
mod sparse;

pub use common::atomic::TMP_PREFIX;
pub use parallel::fold_files;
pub use scratch::owned_tempdir;
pub use sparse::{allocated_bytes, copy_sparse, data_ranges, link_or_copy, sha256_file};

/// Remove leftovers of interrupted runs (`.atomicbuild-tmp.*`) from `dir`.
pub fn remove_stale_tmp(dir: &Path) -> Result<()> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Ok(());
    };
    for e in rd {
        let e = e?;
        if e.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
            let p = e.path();
            if e.file_type()?.is_dir() {
                remove_tree(&p)?;
            } else {
                fs::remove_file(&p).with_context(|| format!("removing stale {}", p.display()))?;
            }
        }
    }
    Ok(())
}

/// Mount points at or below `root`, deepest first.
pub fn mounts_under(root: &Path) -> Result<Vec<PathBuf>> {
    let root = root.canonicalize().unwrap_or_else(|_| root.to_owned());
    let info =
        fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    let mut out: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mountinfo)
        .map(PathBuf::from)
        .filter(|p| p.starts_with(&root))
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    out.dedup();
    Ok(out)
}

fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Remove a scratch tree. Any mount left below it by a killed run (a chroot's
/// /proc, /sys or /dev) is detached first, so removal never reaches the host.
pub fn remove_tree(path: &Path) -> Result<()> {
    if fs::symlink_metadata(path).is_err() {
        return Ok(());
    }
    for m in mounts_under(path)? {
        let c = CString::new(m.as_os_str().as_bytes())?;
        // SAFETY: plain syscall on a NUL-terminated path.
        let r = unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        if r != 0 {
            bail!(
                "{} is still mounted and cannot be detached ({}); unmount it by hand before retrying",
                m.display(),
                std::io::Error::last_os_error()
            );
        }
    }
    if !mounts_under(path)?.is_empty() {
        bail!(
            "mounts remain below {}; refusing to delete it",
            path.display()
        );
    }
    fs::remove_dir_all(path).with_context(|| format!("removing {}", path.display()))
}

/// Put `contents` at `p` as a new file (mode 0644), never writing through
/// an existing one: in a hard-linked checkout the old file is an object of
/// the cache's repository.
pub fn replace_file(p: &Path, contents: impl AsRef<[u8]>) -> Result<()> {
    match fs::remove_file(p) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing {}", p.display())),
    }
    fs::write(p, contents).with_context(|| format!("writing {}", p.display()))
}

/// Replace the tree `dir` by an exact copy of itself (owners, modes, xattrs,
/// times and its own hard links kept), so that none of its files shares an
/// inode with anything outside it any more.
pub fn unshare_tree(dir: &Path) -> Result<()> {
    if !dir.is_dir() {
        return Ok(());
    }
    let name = dir
        .file_name()
        .context("unshare_tree needs a named directory")?
        .to_string_lossy();
    let copy = dir.with_file_name(format!("{TMP_PREFIX}{name}"));
    remove_tree(&copy)?;
    common::cmd::Cmd::new("cp")
        .args(["-a", "--no-target-directory"])
        .arg(dir)
        .arg(&copy)
        .run()
        .with_context(|| format!("copying {}", dir.display()))?;
    remove_tree(dir)?;
    fs::rename(&copy, dir).with_context(|| format!("renaming {}", copy.display()))
}

/// Copy the tree `src` onto `dst` (merging into existing directories). Files
/// keep their permission bits and become root-owned; symlinks are copied as
/// links. Entries are visited in sorted order.
pub fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    fs::create_dir_all(dst).with_context(|| format!("creating {}", dst.display()))?;
    let mut entries: Vec<_> = fs::read_dir(src)
        .with_context(|| format!("reading {}", src.display()))?
        .collect::<std::io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let from = e.path();
        let to = dst.join(e.file_name());
        let md = fs::symlink_metadata(&from)?;
        let ft = md.file_type();
        if ft.is_dir() {
            if let Ok(existing) = fs::symlink_metadata(&to) {
                if existing.file_type().is_symlink() {
                    bail!("overlay directory {} would replace the symlink {} in the image; put the files under the link's target instead", from.display(), to.display());
                }
            }
            copy_tree(&from, &to)?;
            fs::set_permissions(&to, fs::Permissions::from_mode(md.mode() & 0o7777))?;
        } else if ft.is_symlink() {
            let target = fs::read_link(&from)?;
            let _ = fs::remove_file(&to);
            std::os::unix::fs::symlink(&target, &to)
                .with_context(|| format!("creating symlink {}", to.display()))?;
            lchown_root(&to)?;
        } else if ft.is_file() {
            // Replace, never write through: the target may be a hard link.
            let _ = fs::remove_file(&to);
            fs::copy(&from, &to)
                .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
            fs::set_permissions(&to, fs::Permissions::from_mode(md.mode() & 0o7777))?;
            lchown_root(&to)?;
        } else {
            bail!("{} is not a regular file, directory or symlink; overlays cannot carry device nodes, sockets or fifos", from.display());
        }
    }
    lchown_root(dst)
}

fn lchown_root(p: &Path) -> Result<()> {
    std::os::unix::fs::lchown(p, Some(0), Some(0))
        .with_context(|| format!("setting owner of {}", p.display()))
}

/// Depth-first walk below `dir` (not including it), children sorted by name;
/// directories are reported before their contents.
pub fn walk_sorted(
    dir: &Path,
    f: &mut dyn FnMut(&Path, &fs::Metadata) -> Result<()>,
) -> Result<()> {
    let mut names: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    names.sort();
    for p in names {
        let md = fs::symlink_metadata(&p)?;
        f(&p, &md)?;
        if md.is_dir() {
            walk_sorted(&p, f)?;
        }
    }
    Ok(())
}

/// Remove everything inside `d` (creating it if missing).
pub fn empty_dir(d: &Path) -> Result<()> {
    if !d.exists() {
        fs::create_dir_all(d)?;
        return Ok(());
    }
    for e in fs::read_dir(d)? {
        let p = e?.path();
        let md = fs::symlink_metadata(&p)?;
        if md.is_dir() {
            remove_tree(&p)?;
        } else {
            fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
        }
    }
    Ok(())
}

/// Removes this build's temporary files (`.atomicbuild-tmp.*`) from an
/// output directory when dropped, unless [`TmpCleanup::disarm`]ed: a build
/// that fails (a full disk, a bad input found late) leaves no multi-GiB
/// partial file behind. A SIGKILL still can; the next run removes those.
pub struct TmpCleanup {
    dir: PathBuf,
    armed: bool,
}

impl TmpCleanup {
    /// Guard `dir`.
    pub fn new(dir: &Path) -> TmpCleanup {
        TmpCleanup {
            dir: dir.to_owned(),
            armed: true,
        }
    }

    /// The build succeeded: nothing to remove.
    pub fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for TmpCleanup {
    fn drop(&mut self) {
        if self.armed {
            if let Err(e) = remove_stale_tmp(&self.dir) {
                eprintln!("warning: removing temporary files: {e:#}");
            }
        }
    }
}

/// An exclusive lock on a directory, held while the value lives.
pub struct DirLock {
    _file: File,
}

/// Open (creating) `path` and flock it with `op`; `Ok(None)` when a
/// non-blocking lock is held elsewhere.
fn flock_path(path: &Path, op: libc::c_int) -> Result<Option<DirLock>> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("opening lock {}", path.display()))?;
    // SAFETY: flock on an open descriptor.
    if unsafe { libc::flock(f.as_raw_fd(), op) } == 0 {
        return Ok(Some(DirLock { _file: f }));
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
        return Ok(None);
    }
    bail!("locking {}: {err}", path.display())
}

/// Take an exclusive, non-blocking lock on `dir/.lock`.
pub fn lock_dir(dir: &Path) -> Result<DirLock> {
    flock_path(&dir.join(".lock"), libc::LOCK_EX | libc::LOCK_NB)?.with_context(|| {
        format!(
            "another atomicbuild is using {}; wait for it or pass a different --workdir",
            dir.display()
        )
    })
}

/// A shared or exclusive lock on a file, held while the value lives; taking
/// it waits for conflicting holders (other builds using the same cache entry).
pub fn lock_file(path: &Path, exclusive: bool) -> Result<DirLock> {
    let op = if exclusive {
        libc::LOCK_EX
    } else {
        libc::LOCK_SH
    };
    flock_path(path, op)?.context("a blocking lock cannot be refused")
}

/// Sum of apparent sizes of regular files below `dir` (hard links once).
pub fn tree_size(dir: &Path) -> Result<u64> {
    tree_sum(dir, |md| md.len())
}

/// Bytes the files below `dir` take on disk (sparse holes not counted,
/// hard links once).
pub fn tree_allocated(dir: &Path) -> Result<u64> {
    tree_sum(dir, |md| md.blocks() * 512)
}

fn tree_sum(dir: &Path, size: impl Fn(&fs::Metadata) -> u64) -> Result<u64> {
    let mut seen = std::collections::HashSet::new();
    let mut total = 0u64;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let e = e?;
            let md = fs::symlink_metadata(e.path())?;
            if md.is_dir() {
                stack.push(e.path());
            } else if seen.insert((md.dev(), md.ino())) {
                total += size(&md);
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::atomic::tmp_name;

    #[test]
    fn a_failed_build_leaves_no_tmp_files() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("keep.raw"), b"final").unwrap();
        {
            let _g = TmpCleanup::new(d.path());
            fs::write(tmp_name(&d.path().join("x.raw")), b"partial").unwrap();
        }
        assert!(!tmp_name(&d.path().join("x.raw")).exists());
        assert!(d.path().join("keep.raw").exists());
        let g = TmpCleanup::new(d.path());
        fs::write(tmp_name(&d.path().join("y.raw")), b"in use").unwrap();
        g.disarm();
        assert!(tmp_name(&d.path().join("y.raw")).exists());
    }

    #[test]
    fn stale_tmp_files_are_removed_and_finals_kept() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join(".atomicbuild-tmp.x.raw"), b"partial").unwrap();
        fs::create_dir(d.path().join(".atomicbuild-tmp.dir")).unwrap();
        fs::write(d.path().join("x.raw"), b"done").unwrap();
        remove_stale_tmp(d.path()).unwrap();
        let names: Vec<_> = fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("x.raw")]);
    }

    #[test]
    fn mountinfo_escapes_decode() {
        assert_eq!(unescape_mountinfo("/a\\040b"), "/a b");
    }

    #[test]
    fn second_lock_on_same_dir_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let _l = lock_dir(d.path()).unwrap();
        let e = lock_dir(d.path()).err().unwrap();
        assert!(e.to_string().contains("another atomicbuild"));
    }
}
