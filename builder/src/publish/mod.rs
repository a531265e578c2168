//! `atomicbuild publish`: the commit an image deployed, copied into an
//! archive-mode OSTree repository that any static HTTP server or bucket can
//! serve, and signed there (the image itself stays unsigned and
//! reproducible): the commit's GPG signature, a static delta from the
//! branch's previous commit, and a signed summary. A lower version than the
//! published one is refused unless forced, and so is publishing without a
//! signing key.

use std::cmp::Ordering;
use std::path::Path;

use anyhow::{bail, Context, Result};

use common::cmd::Cmd;

/// What to publish, and where.
pub struct Publish<'a> {
    /// The commit.
    pub commit: &'a str,
    /// Its version (`[image] version`).
    pub version: &'a str,
    /// The branch hosts follow.
    pub ref_: &'a str,
    /// The repository holding the commit (the build cache's object store).
    pub source: &'a Path,
    /// The archive repository to publish into (created if missing).
    pub repo: &'a Path,
    /// Publish a lower or equal version too.
    pub force: bool,
}

/// What publishing did.
#[derive(Debug)]
pub struct Published {
    /// The branch's commit before.
    pub previous: Option<(String, String)>,
    /// Size of the static delta from it, in bytes.
    pub delta_bytes: Option<u64>,
    /// False when this commit was already the published one.
    pub changed: bool,
}

fn ostree(repo: &Path) -> Cmd {
    Cmd::new("ostree").arg(format!("--repo={}", repo.display()))
}

/// The commit `ref_` points at in `repo`, and its version.
pub fn current(repo: &Path, ref_: &str) -> Result<Option<(String, String)>> {
    if !repo.join("config").is_file() {
        return Ok(None);
    }
    let Ok(commit) = ostree(repo).args(["rev-parse", ref_]).output_string() else {
        return Ok(None);
    };
    let version = ostree(repo)
        .args(["show", "--print-metadata-key=version", &commit])
        .output_string()
        .unwrap_or_default()
        .trim_matches('\'')
        .to_string();
    Ok(Some((commit, version)))
}

/// Refuse what would move hosts backwards.
pub fn check_version(p: &Publish, previous: &Option<(String, String)>) -> Result<()> {
    let Some((commit, version)) = previous else {
        return Ok(());
    };
    if commit == p.commit {
        return Ok(());
    }
    match common::version::compare(p.version, version) {
        Ordering::Greater => Ok(()),
        _ if p.force => Ok(()),
        Ordering::Equal => bail!(
            "{} already carries version {version} (commit {commit}) with other contents: raise [image] version, or pass --force",
            p.ref_
        ),
        Ordering::Less => bail!(
            "version {} is lower than the published {version} of {}: hosts never move backwards; raise [image] version, or pass --force to publish it anyway",
            p.version,
            p.ref_
        ),
    }
}

/// Publish, signing with `key`.
pub fn publish(p: &Publish, key: &crate::signing::Key) -> Result<Published> {
    let previous = current(p.repo, p.ref_)?;
    check_version(p, &previous)?;
    if previous.as_ref().is_some_and(|(c, _)| c == p.commit) {
        return Ok(Published {
            previous,
            delta_bytes: None,
            changed: false,
        });
    }
    if !p.repo.join("config").is_file() {
        std::fs::create_dir_all(p.repo)?;
        ostree(p.repo)
            .args(["init", "--mode=archive"])
            .run()
            .with_context(|| format!("creating the repository {}", p.repo.display()))?;
    }
    ostree(p.repo)
        .arg("pull-local")
        .arg(p.source)
        .arg(p.commit)
        .run()
        .with_context(|| format!("copying commit {} from {}", p.commit, p.source.display()))?;
    let homedir = format!("--gpg-homedir={}", key.home.display());
    ostree(p.repo)
        .args(["gpg-sign", &homedir, p.commit, &key.id])
        .run()
        .context("signing the commit")?;
    let mut delta_bytes = None;
    if let Some((prev, _)) = &previous {
        ostree(p.repo)
            .args(["static-delta", "generate", "--from", prev, "--to", p.commit])
            .run()
            .context("generating the static delta")?;
        delta_bytes = Some(delta_size(p.repo, prev, p.commit));
    }
    ostree(p.repo)
        .args(["refs", "--force", &format!("--create={}", p.ref_), p.commit])
        .run()
        .context("pointing the branch at the commit")?;
    ostree(p.repo)
        .args([
            "summary",
            "--update",
            &format!("--gpg-sign={}", key.id),
            &homedir,
        ])
        .run()
        .context("writing and signing the summary")?;
    Ok(Published {
        previous,
        delta_bytes,
        changed: true,
    })
}

/// Bytes of the static delta `from`→`to` in `repo` (its files on disk).
fn delta_size(repo: &Path, from: &str, to: &str) -> u64 {
    let out = ostree(repo)
        .args(["static-delta", "show", &format!("{from}-{to}")])
        .output_string()
        .unwrap_or_default();
    out.lines()
        .find_map(|l| l.trim().strip_prefix("Total Size: "))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p<'a>(version: &'a str, force: bool) -> Publish<'a> {
        Publish {
            commit: "new",
            version,
            ref_: "os/x",
            source: Path::new("/nonexistent"),
            repo: Path::new("/nonexistent"),
            force,
        }
    }

    #[test]
    fn lower_or_same_versions_are_refused_unless_forced() {
        let prev = Some(("old".to_string(), "1.2".to_string()));
        assert!(check_version(&p("1.10", false), &prev).is_ok());
        let e = check_version(&p("1.1", false), &prev)
            .unwrap_err()
            .to_string();
        assert!(e.contains("lower than the published 1.2"), "{e}");
        let e = check_version(&p("1.2", false), &prev)
            .unwrap_err()
            .to_string();
        assert!(e.contains("already carries version 1.2"), "{e}");
        assert!(check_version(&p("1.1", true), &prev).is_ok());
        assert!(check_version(&p("0", false), &None).is_ok());
    }
}
