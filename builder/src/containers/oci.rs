//! OCI archives (a tar of an OCI image layout: `oci-layout`, `index.json`,
//! `blobs/sha256/…`) checked without unpacking: every blob's bytes match
//! its name, the index names exactly one image, and everything that image
//! refers to (platform manifests, configs, layers) is in the archive.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Read;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use sha2::{Digest, Sha256};

/// Blobs at most this big are kept to follow their references (manifests
/// and indexes are a few KiB; layers are only hashed).
const KEEP: u64 = 4 << 20;

const INDEX_TYPES: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];
const MANIFEST_TYPES: &[&str] = &[
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// What the archive holds: blob digests seen, small blobs' bytes, and the
/// two layout files.
#[derive(Default)]
struct Contents {
    blobs: BTreeSet<String>,
    kept: BTreeMap<String, Vec<u8>>,
    layout: Option<Vec<u8>>,
    index: Option<Vec<u8>>,
}

/// Check the archive at `path`; its image's digest (`sha256:HEX`).
pub fn check_archive(path: &Path) -> Result<String> {
    let c = read(path)?;
    let layout: serde_json::Value = serde_json::from_slice(
        c.layout
            .as_deref()
            .ok_or_else(|| anyhow!("no oci-layout file: not an OCI archive"))?,
    )
    .context("oci-layout is not JSON")?;
    if layout["imageLayoutVersion"].as_str().is_none() {
        bail!("oci-layout has no imageLayoutVersion");
    }
    let index: serde_json::Value = serde_json::from_slice(
        c.index
            .as_deref()
            .ok_or_else(|| anyhow!("no index.json: not an OCI archive"))?,
    )
    .context("index.json is not JSON")?;
    let manifests = index["manifests"].as_array().cloned().unwrap_or_default();
    let [top] = &manifests[..] else {
        bail!(
            "index.json names {} images; preload archives that hold one (skopeo copy … oci-archive:FILE:NAME)",
            manifests.len()
        );
    };
    let digest = top["digest"].as_str().unwrap_or_default().to_string();
    follow(&c, top, 0)?;
    Ok(digest)
}

/// Every blob `desc` refers to, recursively, is in the archive.
fn follow(c: &Contents, desc: &serde_json::Value, depth: usize) -> Result<()> {
    let digest = desc["digest"].as_str().unwrap_or_default();
    let hex = digest
        .strip_prefix("sha256:")
        .filter(|h| common::images::is_sha256_hex(h))
        .ok_or_else(|| anyhow!("bad digest {digest:?} (only sha256 is supported)"))?;
    if !c.blobs.contains(hex) {
        bail!("{digest} is referred to but not in the archive");
    }
    let media = desc["mediaType"].as_str().unwrap_or_default();
    let is_index = INDEX_TYPES.contains(&media);
    if !is_index && !MANIFEST_TYPES.contains(&media) {
        return Ok(()); // a config or a layer: present and hashed
    }
    if depth > 2 {
        bail!("indexes nested too deeply");
    }
    let bytes = c
        .kept
        .get(hex)
        .ok_or_else(|| anyhow!("{digest}: manifest larger than {KEEP} bytes"))?;
    let v: serde_json::Value =
        serde_json::from_slice(bytes).with_context(|| format!("{digest} is not JSON"))?;
    let children: Vec<serde_json::Value> = match is_index {
        true => v["manifests"].as_array().cloned().unwrap_or_default(),
        false => std::iter::once(v["config"].clone())
            .chain(v["layers"].as_array().cloned().unwrap_or_default())
            .collect(),
    };
    if children.is_empty() {
        bail!("{digest} refers to nothing");
    }
    children.iter().try_for_each(|d| follow(c, d, depth + 1))
}

/// One pass over the tar: hash every blob, keep the small ones.
fn read(path: &Path) -> Result<Contents> {
    let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut ar = tar::Archive::new(f);
    let mut c = Contents::default();
    for e in ar.entries().context("not a tar archive")? {
        let mut e = e.context("reading the tar archive")?;
        if !e.header().entry_type().is_file() {
            continue;
        }
        let name = e.path()?.to_string_lossy().into_owned();
        let name = name.trim_start_matches("./").to_string();
        let size = e.header().size()?;
        match name.as_str() {
            "oci-layout" | "index.json" => {
                let mut b = Vec::new();
                e.by_ref().take(KEEP).read_to_end(&mut b)?;
                match name.as_str() {
                    "oci-layout" => c.layout = Some(b),
                    _ => c.index = Some(b),
                }
            }
            _ => {
                let Some(hex) = name.strip_prefix("blobs/sha256/") else {
                    continue;
                };
                let (sha, kept) = hash(&mut e, size <= KEEP)?;
                if sha != hex {
                    bail!("blob {name} has sha256 {sha}: the archive is damaged");
                }
                if let Some(b) = kept {
                    c.kept.insert(sha.clone(), b);
                }
                c.blobs.insert(sha);
            }
        }
    }
    Ok(c)
}

fn hash(r: &mut impl Read, keep: bool) -> Result<(String, Option<Vec<u8>>)> {
    let mut h = Sha256::new();
    let mut kept = keep.then(Vec::new);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        if let Some(k) = kept.as_mut() {
            k.extend_from_slice(&buf[..n]);
        }
    }
    Ok((hex::encode(h.finalize()), kept))
}
