//! What a build's outputs depend on: the timestamp, the host tools'
//! versions and one key over every input (manifest, overlays, lock,
//! atomicbuild and the first-boot agent themselves); and the check that the
//! outputs already in place were built from exactly these inputs.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use anyhow::{Context, Result};

use crate::cache::KeyHasher;
use crate::distro::lock::Lock;
use crate::fsutil;
use crate::manifest::Manifest;
use crate::model::Metadata;

/// Bump when a change to atomicbuild changes what a build produces.
const BUILD_RECIPE: &str = "build-v1";

/// The inputs of one build.
pub struct Inputs {
    /// SOURCE_DATE_EPOCH (or derived, see [`source_date_epoch`]).
    pub epoch: u64,
    /// Versions of the host tools whose output ends up in the image.
    pub tools: String,
    /// Hash of everything the outputs depend on.
    pub key: String,
}

impl Inputs {
    /// Gather them for `m` (built from `lock` when given).
    pub fn new(m: &Manifest, lock: Option<&Lock>) -> Result<Inputs> {
        let epoch = source_date_epoch(m)?;
        let tools = tool_versions();
        let key = inputs_key(m, lock, epoch, &tools)?;
        Ok(Inputs { epoch, tools, key })
    }
}

/// SOURCE_DATE_EPOCH if set (and valid); otherwise the newest modification
/// time among the manifest and its overlays' files, so that unchanged
/// inputs give the same timestamps (and bytes) without any setting.
pub fn source_date_epoch(m: &Manifest) -> Result<u64> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => v
            .trim()
            .parse()
            .with_context(|| format!("SOURCE_DATE_EPOCH=\"{v}\" is not a number of seconds")),
        Err(_) => {
            let mut newest = mtime_secs(&m.path)?;
            for o in &m.overlays {
                fsutil::walk_sorted(o, &mut |p, _| {
                    newest = newest.max(mtime_secs(p)?);
                    Ok(())
                })?;
            }
            Ok(newest)
        }
    }
}

fn mtime_secs(p: &Path) -> Result<u64> {
    let md = std::fs::symlink_metadata(p).with_context(|| format!("reading {}", p.display()))?;
    Ok(md
        .modified()?
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()))
}

/// A hash of everything a build's outputs depend on: the manifest, every
/// overlay file (path, mode, contents), the lock, the timestamp, the host
/// tools' versions and atomicbuild's own version.
pub fn inputs_key(m: &Manifest, lock: Option<&Lock>, epoch: u64, tools: &str) -> Result<String> {
    let mut h = KeyHasher::new();
    h.put(BUILD_RECIPE)
        .put(env!("CARGO_PKG_VERSION"))
        // Any other build of atomicbuild may write different bytes.
        .put(own_executable_hash())
        // The agents are part of every image.
        .put(
            crate::stage::agent::binary()
                .ok()
                .and_then(|p| fsutil::sha256_file(&p).ok())
                .unwrap_or_default(),
        )
        .put(
            crate::stage::agent::update_binary()
                .ok()
                .and_then(|p| fsutil::sha256_file(&p).ok())
                .unwrap_or_default(),
        )
        .put(&m.sha256)
        .put(epoch.to_string());
    if let Some(l) = lock {
        h.put(l.to_toml()?);
    }
    for o in &m.overlays {
        h.put(o.to_string_lossy().as_bytes());
        h.put_tree(o, o)?;
    }
    // Registry CAs are files beside the manifest, read when it was.
    for r in &m.registries {
        h.put(r.ca_pem.as_deref().unwrap_or_default());
    }
    h.put(tools);
    Ok(h.finish())
}

/// sha256 of the running atomicbuild executable ("" if unreadable).
fn own_executable_hash() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| fsutil::sha256_file(&p).ok())
        .unwrap_or_default()
}

/// The versions of the host tools whose output ends up in the image.
pub fn tool_versions() -> String {
    let mut v = String::new();
    for tool in [
        ["mke2fs", "-V"],
        ["grub-mkimage", "--version"],
        ["mmdebstrap", "--version"],
    ] {
        if let Ok(o) = std::process::Command::new(tool[0]).arg(tool[1]).output() {
            v.push_str(&String::from_utf8_lossy(&o.stdout));
            v.push_str(&String::from_utf8_lossy(&o.stderr));
        }
    }
    v
}

/// Identity of a file as the file system sees it (for the up-to-date check).
pub fn file_identity(p: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(p).ok()?;
    Some(format!(
        "{}:{}:{}:{}.{}",
        md.dev(),
        md.ino(),
        md.len(),
        md.mtime(),
        md.mtime_nsec()
    ))
}

/// The outputs in `out_dir` (raw image, metadata, lock), if they were built
/// from exactly these inputs and have not been touched since.
pub fn up_to_date(out_dir: &Path, m: &Manifest, key: &str) -> Option<(PathBuf, PathBuf, PathBuf)> {
    let stem = &m.stem();
    let meta_path = out_dir.join(format!("{stem}.json"));
    let meta = Metadata::load(&meta_path).ok()?;
    if meta.inputs_key != key {
        return None;
    }
    let raw = out_dir.join(format!("{stem}.raw"));
    let lock = out_dir.join(format!("{stem}.lock"));
    if meta.raw_identity != file_identity(&raw)?
        || !lock.is_file()
        || !crate::sums::present(out_dir, m.signing.is_some())
    {
        return None;
    }
    for a in &meta.artifacts {
        let size = std::fs::metadata(out_dir.join(&a.file)).ok()?.len();
        if size != a.size {
            return None;
        }
    }
    Some((raw, meta_path, lock))
}
