//! The SBOM ([`crate::sbom`]) of a build: the tree's inside the image
//! (written into the root before the commit), and the tree's plus the
//! output files next to the outputs (`NAME-VERSION.spdx.json`).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;

use super::customize::Customized;
use super::Env;
use crate::distro::lock::Lock;
use crate::manifest::Manifest;
use crate::sbom::{self, FileEntry};

/// What both SBOMs share: the packages' licences and archive checksums,
/// and the files that came from no package.
pub struct Bill {
    licences: BTreeMap<String, String>,
    archive_sha256: BTreeMap<(String, String), String>,
    files: Vec<FileEntry>,
}

/// The files of the overlays (the last overlay's copy of a path is in the
/// image) and the agents', as they are in `root`.
fn extra_files(m: &Manifest, root: &Path) -> Result<Vec<FileEntry>> {
    let mut paths: BTreeMap<String, &str> = BTreeMap::new();
    for o in &m.overlays {
        for e in walkdir(o)? {
            paths.insert(e, "overlay");
        }
    }
    for p in super::agent::installed_files() {
        paths.insert(p.to_string(), "atomicbuild agent");
    }
    paths
        .into_iter()
        .filter(|(p, _)| root.join(p).is_file())
        .map(|(p, what)| FileEntry::of(&root.join(&p), &format!("./{p}"), what))
        .collect()
}

/// Regular files below `dir`, as paths relative to it.
fn walkdir(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    crate::fsutil::walk_sorted(dir, &mut |p, md| {
        if md.is_file() {
            let rel = p.strip_prefix(dir).unwrap_or(p);
            out.push(rel.to_string_lossy().into_owned());
        }
        Ok(())
    })?;
    Ok(out)
}

/// Licences declared by the packages' machine-readable copyright files.
fn licences(root: &Path, c: &Customized) -> BTreeMap<String, String> {
    c.packages
        .iter()
        .filter_map(|p| {
            let f = root.join(format!("usr/share/doc/{}/copyright", p.name));
            let text = std::fs::read_to_string(f).ok()?;
            Some((p.name.clone(), sbom::debian_licence(&text)?))
        })
        .collect()
}

fn input<'a>(
    m: &'a Manifest,
    c: &'a Customized,
    b: &'a Bill,
    epoch: u64,
    outputs: &'a [(String, String)],
    v: &'a str,
) -> sbom::Input<'a> {
    sbom::Input {
        name: &m.name,
        version: &m.version,
        distro: m.base.distro.name(),
        distro_version: v,
        epoch,
        packages: &c.packages,
        archive_sha256: &b.archive_sha256,
        licences: &b.licences,
        files: &b.files,
        outputs,
    }
}

/// Write the tree's SBOM into the root; what the outputs' SBOM reuses.
pub fn in_image(env: &Env, m: &Manifest, c: &Customized, lock: &Lock) -> Result<Bill> {
    let root = env.root();
    let b = Bill {
        licences: licences(&root, c),
        archive_sha256: lock
            .packages
            .iter()
            .map(|p| ((p.name.clone(), p.arch.clone()), p.sha256.clone()))
            .collect(),
        files: extra_files(m, &root)?,
    };
    let v = m.base.os_version();
    let doc = sbom::spdx(&input(m, c, &b, env.epoch, &[], &v));
    let path = root.join(sbom::IN_IMAGE);
    std::fs::create_dir_all(path.parent().unwrap_or(&root))?;
    crate::fsutil::replace_file(&path, serde_json::to_vec_pretty(&doc)?)?;
    Ok(b)
}

/// Write `NAME-VERSION.spdx.json` into `out`: the tree's SBOM plus the
/// `outputs` (file name, sha256 as the build recorded it; not read again);
/// its file name.
pub fn next_to_outputs(
    env: &Env,
    m: &Manifest,
    c: &Customized,
    b: &Bill,
    out: &Path,
    outputs: &[(String, String)],
) -> Result<String> {
    let v = m.base.os_version();
    let doc = sbom::spdx(&input(m, c, b, env.epoch, outputs, &v));
    let name = format!("{}.spdx.json", m.stem());
    common::atomic::write(&out.join(&name), &serde_json::to_vec_pretty(&doc)?)?;
    Ok(name)
}
