//! `atomicbuild publish`: a build's commit into an update repository.

use anyhow::{bail, Context, Result};

use crate::cli::PublishArgs;
use crate::model::Metadata;
use crate::pipeline::default_cache_dir;
use crate::{manifest, publish};

/// Publish the commit of the build in `--output`.
pub fn run(a: &PublishArgs) -> Result<()> {
    let m = manifest::load(&a.manifest)?;
    let Some(signing) = &m.signing else {
        bail!(
            "{} has no [signing] key: an unsigned update repository is refused, since hosts verify every commit (add [signing] with key_id or key_file; see README: Atomic updates)",
            m.path.display()
        );
    };
    let meta_path = a.output.join(format!("{}.json", m.stem()));
    if !meta_path.is_file() {
        bail!(
            "{} does not exist: build the image first",
            meta_path.display()
        );
    }
    let meta = Metadata::load(&meta_path)?;
    let ref_ = m
        .updates
        .as_ref()
        .map_or(m.ostree.ref_.as_str(), |u| u.ref_.as_str());
    let source = a
        .cache_dir
        .clone()
        .unwrap_or_else(default_cache_dir)
        .join("repo");
    let key = signing.key()?;
    let p = publish::Publish {
        commit: &meta.ostree.commit,
        version: &m.version,
        ref_,
        source: &source,
        repo: &a.repo,
        force: a.force,
    };
    let done = publish::publish(&p, &key)
        .with_context(|| format!("publishing {} to {}", m.stem(), a.repo.display()))?;
    if !done.changed {
        println!(
            "{ref_}: version {} ({}) is already published",
            m.version, meta.ostree.commit
        );
        return Ok(());
    }
    let from = match (&done.previous, done.delta_bytes) {
        (Some((c, v)), Some(b)) => {
            format!("; static delta from version {v} ({}): {b} bytes", &c[..12])
        }
        _ => String::new(),
    };
    println!(
        "published version {} ({}) as {ref_} in {}, signed by {}{from}",
        m.version,
        meta.ostree.commit,
        a.repo.display(),
        key.id
    );
    Ok(())
}
