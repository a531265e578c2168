//! Commit stage: write the shaped root into a bare OSTree repository
//! through libostree (the `ostree` crate), with the commit timestamp taken
//! from SOURCE_DATE_EPOCH, and point the manifest's ref at it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use ostree::gio;
use ostree::glib;
use ostree::prelude::*;

use super::Ctx;

/// A commit in the build's repository.
pub struct Commit {
    /// The repository (bare mode).
    pub repo: PathBuf,
    /// The ref that points at the commit.
    pub ref_: String,
    /// The commit checksum.
    pub checksum: String,
}

/// Open the repository at `path`, creating it (bare) if needed.
pub fn open_or_create_repo(path: &Path) -> Result<ostree::Repo> {
    std::fs::create_dir_all(path)?;
    let repo = ostree::Repo::new_for_path(path);
    if path.join("config").is_file() {
        repo.open(gio::Cancellable::NONE)
    } else {
        repo.create(ostree::RepoMode::Bare, gio::Cancellable::NONE)
    }
    .with_context(|| format!("opening OSTree repository {}", path.display()))?;
    Ok(repo)
}

/// Commit `ctx.root()`.
pub fn run(ctx: &Ctx) -> Result<Commit> {
    let m = ctx.manifest;
    let stage = ctx.progress.stage("commit");
    let repo_path = ctx.workdir.join("repo");
    let repo = open_or_create_repo(&repo_path)?;
    let root = ctx.root();
    let c = gio::Cancellable::NONE;

    stage.message("writing objects");
    repo.prepare_transaction(c)
        .context("starting an OSTree transaction")?;
    let result = (|| -> Result<String> {
        let mtree = ostree::MutableTree::new();
        let modifier = ostree::RepoCommitModifier::new(ostree::RepoCommitModifierFlags::NONE, None);
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
        meta.insert("version", m.version.as_str());
        meta.insert("atomicbuild.manifest-sha256", m.sha256.as_str());
        meta.insert("atomicbuild.image", m.name.as_str());
        let subject = format!("{} {}", m.name, m.version);
        let checksum = repo
            .write_commit_with_time(
                None,
                Some(&subject),
                None,
                Some(&meta.end()),
                &tree,
                ctx.source_date_epoch,
                c,
            )
            .context("writing the commit")?;
        repo.transaction_set_ref(None, &m.ostree.ref_, Some(checksum.as_str()));
        repo.commit_transaction(c)
            .context("finishing the OSTree transaction")?;
        Ok(checksum.to_string())
    })();
    let checksum = match result {
        Ok(c) => c,
        Err(e) => {
            let _ = repo.abort_transaction(c);
            return Err(e);
        }
    };
    stage.finish(&checksum[..12]);
    Ok(Commit {
        repo: repo_path,
        ref_: m.ostree.ref_.clone(),
        checksum,
    })
}
