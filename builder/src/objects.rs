//! The OSTree object store: one bare repository in the cache directory
//! (`CACHE/repo`) that holds cached installed roots and every build's
//! commit, so identical files are stored and hashed once.
//!
//! A cached root is checked out with hard links into the work directory
//! and the (device, inode) → checksum pairs of that checkout are kept; when
//! the shaped root is committed, every file still linked to its object is
//! taken by checksum without being read again. Only files a stage replaced
//! (overlays, generated configuration, the initramfs) are hashed. This
//! makes one rule binding for every stage that runs after the checkout:
//! never write into an existing file; unlink it and create a new one
//! (`fsutil::replace_file`), or the repository's object changes with it.

use std::path::Path;

use anyhow::{Context, Result};
use ostree::gio;
use ostree::glib;
use ostree::prelude::*;

/// Open the bare repository at `path`, creating it if needed.
pub fn open_or_create(path: &Path) -> Result<ostree::Repo> {
    std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
    let repo = ostree::Repo::new_for_path(path);
    if path.join("config").is_file() {
        repo.open(gio::Cancellable::NONE)
    } else {
        repo.create(ostree::RepoMode::Bare, gio::Cancellable::NONE)
    }
    .with_context(|| format!("opening OSTree repository {}", path.display()))?;
    Ok(repo)
}

/// What to record in a commit.
pub struct CommitSpec<'a> {
    /// The ref to point at the commit.
    pub ref_: &'a str,
    /// Commit subject.
    pub subject: &'a str,
    /// Extra metadata (string values).
    pub metadata: &'a [(&'a str, &'a str)],
    /// Commit timestamp (seconds since the epoch).
    pub timestamp: u64,
    /// Label every file with this SELinux policy (`security.selinux`).
    pub sepolicy: Option<&'a ostree::SePolicy>,
}

/// Commit the directory `root` and point `spec.ref_` at it. With `devino`,
/// files that are hard links to objects (from [`checkout_linked`]) are
/// taken by checksum instead of being read.
pub fn commit_tree(
    repo: &ostree::Repo,
    root: &Path,
    devino: Option<&ostree::RepoDevInoCache>,
    spec: &CommitSpec,
) -> Result<String> {
    let c = gio::Cancellable::NONE;
    repo.prepare_transaction(c)
        .context("starting an OSTree transaction")?;
    let result = (|| -> Result<String> {
        let mtree = ostree::MutableTree::new();
        let modifier = ostree::RepoCommitModifier::new(ostree::RepoCommitModifierFlags::NONE, None);
        if let Some(d) = devino {
            modifier.set_devino_cache(d);
        }
        modifier.set_sepolicy(spec.sepolicy);
        repo.write_dfd_to_mtree(
            libc::AT_FDCWD,
            root.to_str().context("work directory path is not UTF-8")?,
            &mtree,
            Some(&modifier),
            c,
        )
        .with_context(|| format!("writing {} into the repository", root.display()))?;
        let tree = repo.write_mtree(&mtree, c).context("writing the tree")?;
        let tree = tree
            .downcast::<ostree::RepoFile>()
            .map_err(|_| anyhow::anyhow!("write_mtree did not return a repository file"))?;
        let meta = glib::VariantDict::new(None);
        for (k, v) in spec.metadata {
            meta.insert(k, *v);
        }
        let checksum = repo
            .write_commit_with_time(
                None,
                Some(spec.subject),
                None,
                Some(&meta.end()),
                &tree,
                spec.timestamp,
                c,
            )
            .context("writing the commit")?;
        repo.transaction_set_ref(None, spec.ref_, Some(checksum.as_str()));
        repo.commit_transaction(c)
            .context("finishing the OSTree transaction")?;
        Ok(checksum.to_string())
    })();
    if result.is_err() {
        let _ = repo.abort_transaction(c);
    }
    result
}

/// The SELinux policy of the shaped tree at `root` (its
/// `usr/etc/selinux/config` names the policy and the policy store is
/// installed), or `None` when the tree has no policy.
pub fn sepolicy_of(root: &Path) -> Result<Option<ostree::SePolicy>> {
    let config = ["usr/etc/selinux/config", "etc/selinux/config"]
        .iter()
        .map(|c| root.join(c))
        .find(|c| c.is_file());
    let Some(config) = config else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(&config)
        .with_context(|| format!("reading {}", config.display()))?;
    let setting = |key: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(key)?.strip_prefix('='))
            .map(|v| v.trim().to_string())
    };
    if setting("SELINUX").is_some_and(|v| v.eq_ignore_ascii_case("disabled")) {
        return Ok(None);
    }
    let policy = ostree::SePolicy::new(&gio::File::for_path(root), gio::Cancellable::NONE)
        .with_context(|| format!("loading the SELinux policy that {} names", config.display()))?;
    match policy.name() {
        Some(_) if !root.join("usr/bin/bwrap").exists() => anyhow::bail!(
            "the image has an SELinux policy ({}) but no /usr/bin/bwrap: ostree runs semodule through bubblewrap when it deploys an update, so every update would fail to finalize; add \"bubblewrap\" to [packages]",
            config.display()
        ),
        Some(n) if !n.is_empty() => Ok(Some(policy)),
        _ => anyhow::bail!(
            "{} names no usable policy (SELINUX={}, SELINUXTYPE={}): install the policy package, or set SELINUX=disabled",
            config.display(),
            setting("SELINUX").unwrap_or_default(),
            setting("SELINUXTYPE").unwrap_or_default()
        ),
    }
}

/// Whether `checksum` is a complete commit in `repo` (its tree and every
/// object it reaches are present).
pub fn has_complete_commit(repo: &ostree::Repo, checksum: &str) -> bool {
    match repo.load_commit(checksum) {
        Ok((_, state)) => !state.contains(ostree::RepoCommitState::PARTIAL),
        Err(_) => false,
    }
}

/// Check `commit` out into `dest` (which must not exist) with every file a
/// hard link to its object, and return the (device, inode) → checksum
/// cache for committing the tree again cheaply. Falls back to copying when
/// the cache and the work directory are on different file systems (the
/// returned cache is then simply never hit); the copies then get the
/// objects' mtime (0) too, as links have it, so that what copies mtimes
/// (dracut into the initramfs) gives the same bytes either way.
pub fn checkout_linked(
    repo: &ostree::Repo,
    commit: &str,
    dest: &Path,
) -> Result<ostree::RepoDevInoCache> {
    let cache = ostree::RepoDevInoCache::new();
    let opts = ostree::RepoCheckoutAtOptions {
        mode: ostree::RepoCheckoutMode::None,
        devino_to_csum_cache: Some(cache.clone()),
        ..Default::default()
    };
    repo.checkout_at(
        Some(&opts),
        libc::AT_FDCWD,
        dest,
        commit,
        gio::Cancellable::NONE,
    )
    .with_context(|| format!("checking out {} into {}", &commit[..12], dest.display()))?;
    let mut repo_st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat fills the zeroed struct for the repository's open fd.
    let repo_dev =
        (unsafe { libc::fstat(repo.dfd(), &mut repo_st) } == 0).then_some(repo_st.st_dev);
    let dest_dev = std::fs::metadata(dest)
        .map(|m| std::os::unix::fs::MetadataExt::dev(&m))
        .ok();
    if repo_dev.is_some() && repo_dev != dest_dev {
        zero_mtimes(dest)?;
    }
    Ok(cache)
}

/// Set the mtime of every file and symlink below `dir` to 0.
fn zero_mtimes(dir: &Path) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let zero = [libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    }; 2];
    crate::fsutil::walk_sorted(dir, &mut |p, md| {
        if md.is_dir() {
            return Ok(());
        }
        let c = std::ffi::CString::new(p.as_os_str().as_bytes())?;
        // SAFETY: a NUL-terminated path and two timespecs, as utimensat wants.
        let r = unsafe {
            libc::utimensat(
                libc::AT_FDCWD,
                c.as_ptr(),
                zero.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        if r != 0 {
            anyhow::bail!(
                "setting the mtime of {}: {}",
                p.display(),
                std::io::Error::last_os_error()
            );
        }
        Ok(())
    })
}

/// Remove every ref under `prefix` for which `keep` says no, then delete
/// the objects no ref reaches. Returns (refs removed, bytes freed).
pub fn prune(
    repo: &ostree::Repo,
    prefix: &str,
    keep: impl Fn(&str) -> bool,
) -> Result<(usize, u64)> {
    let c = gio::Cancellable::NONE;
    let refs = repo
        .list_refs(Some(prefix), c)
        .context("listing the object store's refs")?;
    let mut removed = 0;
    for (name, _) in refs {
        let full = if name.starts_with(prefix) {
            name.to_string()
        } else {
            format!("{}/{}", prefix.trim_end_matches('/'), name)
        };
        if !keep(&full) {
            repo.set_ref_immediate(None, &full, None, c)
                .with_context(|| format!("deleting ref {full}"))?;
            removed += 1;
        }
    }
    let (_, _, freed) = repo
        .prune(ostree::RepoPruneFlags::REFS_ONLY, -1, c)
        .context("pruning the object store")?;
    Ok((removed, freed))
}
