//! Commit stage: write the shaped root into the OSTree object store through
//! libostree (the `ostree` crate), with the commit timestamp taken from
//! SOURCE_DATE_EPOCH. Files still hard-linked to objects of the cached
//! installed root are taken by checksum, so only changed files are hashed.
//! Without the cache (`--no-cache`, `verify`) a private repository in the
//! work directory is used and every file is hashed.

use std::path::PathBuf;

use anyhow::Result;

use super::install::Installed;
use super::{Env, Outcome};
use crate::manifest::Manifest;
use crate::objects;

/// A commit in the object store.
pub struct Commit {
    /// The repository (bare mode).
    pub repo: PathBuf,
    /// The manifest's ref (what the deployed host follows).
    pub ref_: String,
    /// The commit checksum.
    pub checksum: String,
    /// The SELinux policy its files are labelled with, if the tree has one.
    pub selinux: Option<String>,
}

impl Outcome for Commit {}

/// The ref that keeps a build's latest commit in the shared object store.
pub fn build_ref(stem: &str) -> String {
    format!("atomicbuild/build/{stem}")
}

/// Commit `env.root()`.
pub fn run(env: &Env, m: &Manifest, installed: &Installed) -> Result<Commit> {
    let devino = installed.devino.as_ref();
    let stage = env.progress.stage("commit");
    let repo_path = env.object_store();
    let repo = objects::open_or_create(&repo_path)?;
    let ref_ = match env.use_cache {
        true => build_ref(&m.stem()),
        false => m.ostree.ref_.clone(),
    };
    stage.message(if devino.is_some() {
        "writing changed objects"
    } else {
        "writing objects"
    });
    let sepolicy = objects::sepolicy_of(&env.root())?;
    let selinux = sepolicy
        .as_ref()
        .and_then(|p| p.name())
        .map(|n| n.to_string());
    if let Some(n) = &selinux {
        stage.message(&format!(
            "labelling every file with the SELinux policy \"{n}\""
        ));
    }
    let subject = format!("{} {}", m.name, m.version);
    let checksum = objects::commit_tree(
        &repo,
        &env.root(),
        devino,
        &objects::CommitSpec {
            ref_: &ref_,
            subject: &subject,
            metadata: &[
                ("version", m.version.as_str()),
                ("atomicbuild.image", m.name.as_str()),
            ],
            timestamp: env.epoch,
            sepolicy: sepolicy.as_ref(),
        },
    )
    .map_err(|e| {
        let hint = crate::cache::full_hint(&e);
        e.context(format!(
            "committing into the object store {}{hint}",
            repo_path.display()
        ))
    })?;
    crate::failpoint::hit("commit.written");
    let labels = selinux.as_ref().map(|n| format!(", SELinux labels: {n}"));
    stage.finish(&format!(
        "{}{}",
        &checksum[..12],
        labels.unwrap_or_default()
    ));
    Ok(Commit {
        repo: repo_path,
        ref_: m.ostree.ref_.clone(),
        checksum,
        selinux,
    })
}
