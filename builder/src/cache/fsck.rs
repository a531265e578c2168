//! `atomicbuild cache fsck`: check everything in the cache and drop what
//! is damaged, so that the next build rebuilds it: stage entries (every
//! file against its recorded size and sha256), leftovers of interrupted
//! writes, the object store (`ostree fsck --delete`: corrupted objects are
//! deleted, the commits that need them dropped with their refs and with the
//! installed-root entries that point at them), and the downloaded packages
//! (each against the archive sha256 that a cached lock records).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use super::{check, file_entries, remove_entry};
use crate::distro::lock::Lock;
use crate::fsutil;
use common::cmd::Cmd;
use ostree::gio;

/// What `fsck` found and did.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// Stage entries checked.
    pub entries: usize,
    /// Stage entries dropped, with why (`stage/key: why`).
    pub entries_dropped: Vec<String>,
    /// Corrupted objects `ostree fsck` deleted.
    pub objects_deleted: usize,
    /// Commits dropped because objects they need are gone.
    pub commits_dropped: Vec<String>,
    /// Packages checked against a cached lock.
    pub packages: usize,
    /// Packages deleted (their sha256 differs from the lock's).
    pub packages_dropped: Vec<String>,
    /// Packages no cached lock names (apt checks them when it uses them).
    pub packages_unchecked: usize,
}

impl Report {
    /// Whether anything was dropped.
    pub fn damaged(&self) -> bool {
        !(self.entries_dropped.is_empty()
            && self.commits_dropped.is_empty()
            && self.packages_dropped.is_empty()
            && self.objects_deleted == 0)
    }
}

/// Check the cache at `cache_dir`, dropping what is damaged.
pub fn fsck(cache_dir: &Path) -> Result<Report> {
    let mut r = Report::default();
    for e in file_entries(cache_dir)? {
        r.entries += 1;
        if let Err(why) = check(&e.path) {
            remove_entry(&e)?;
            r.entries_dropped
                .push(format!("{}/{}: {why}", e.kind, e.key));
        }
    }
    for s in fs::read_dir(cache_dir.join("stages"))
        .into_iter()
        .flatten()
        .flatten()
    {
        fsutil::remove_stale_tmp(&s.path())?;
    }
    // Packages first: the locks of installed roots vouch for them even when
    // a root is dropped below.
    packages(cache_dir, &mut r)?;
    let repo = cache_dir.join("repo");
    if repo.join("config").is_file() {
        objects(&repo, &mut r)?;
        drop_roots_without_commit(cache_dir, &repo, &mut r)?;
    }
    Ok(r)
}

/// `ostree fsck --delete`, then every commit it marked partial dropped.
fn objects(path: &Path, r: &mut Report) -> Result<()> {
    let out = Cmd::new("ostree")
        .arg(format!("--repo={}", path.display()))
        .args(["fsck", "--delete", "--all"])
        .output_full()
        .with_context(|| format!("running ostree fsck on {}", path.display()))?;
    let said = format!("{}{}", out.stderr, out.stdout);
    if !out.status.success() && !said.contains("orrupt") {
        anyhow::bail!(
            "ostree fsck of {} failed: {}",
            path.display(),
            common::cmd::tail(&said, 10)
        );
    }
    r.objects_deleted = said.matches("Corrupted").count();
    let repo = crate::objects::open_or_create(path)?;
    let c = gio::Cancellable::NONE;
    let state = path.join("state");
    let partial: Vec<String> = fs::read_dir(&state)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.strip_suffix(".commitpartial").map(String::from)
        })
        .collect();
    if partial.is_empty() {
        return Ok(());
    }
    let refs = repo.list_refs(None, c).context("listing refs")?;
    for commit in partial {
        for (name, target) in &refs {
            if target.as_str() == commit {
                repo.set_ref_immediate(None, name, None, c)
                    .with_context(|| format!("deleting ref {name}"))?;
            }
        }
        let _ = repo.delete_object(ostree::ObjectType::Commit, &commit, c);
        let _ = repo.delete_object(ostree::ObjectType::CommitMeta, &commit, c);
        let _ = fs::remove_file(state.join(format!("{commit}.commitpartial")));
        r.commits_dropped.push(commit);
    }
    Ok(())
}

/// Installed-root entries whose commit is no longer complete.
fn drop_roots_without_commit(cache_dir: &Path, path: &Path, r: &mut Report) -> Result<()> {
    let repo = crate::objects::open_or_create(path)?;
    for e in file_entries(cache_dir)?
        .into_iter()
        .filter(|e| e.kind == "install")
    {
        let commit = fs::read_to_string(e.path.join("commit")).unwrap_or_default();
        if !crate::objects::has_complete_commit(&repo, commit.trim()) {
            remove_entry(&e)?;
            r.entries_dropped
                .push(format!("install/{}: its root's commit is damaged", e.key));
        }
    }
    Ok(())
}

/// apt's file name of a package (`:` in the version as `%3a`).
fn deb_name(name: &str, version: &str, arch: &str) -> String {
    format!("{name}_{}_{arch}.deb", version.replace(':', "%3a"))
}

/// Downloaded packages against the sha256 the cached locks record.
fn packages(cache_dir: &Path, r: &mut Report) -> Result<()> {
    let mut want: BTreeMap<String, String> = BTreeMap::new();
    for e in file_entries(cache_dir)?
        .into_iter()
        .filter(|e| e.kind == "install")
    {
        if let Ok(l) = Lock::load(&e.path.join("lock.toml")) {
            for p in l.packages {
                want.insert(deb_name(&p.name, &p.version, &p.arch), p.sha256);
            }
        }
    }
    for dir in fs::read_dir(cache_dir.join("debs"))
        .into_iter()
        .flatten()
        .flatten()
    {
        for f in fs::read_dir(dir.path()).into_iter().flatten().flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            let Some(sha) = want.get(&name) else {
                r.packages_unchecked += usize::from(name.ends_with(".deb"));
                continue;
            };
            r.packages += 1;
            if &fsutil::sha256_file(&f.path())? != sha {
                fs::remove_file(f.path())
                    .with_context(|| format!("removing {}", f.path().display()))?;
                r.packages_dropped.push(name);
            }
        }
    }
    Ok(())
}
