//! Container images preloaded into the image (`[[container_images]]`):
//! OCI archives, each pinned by its sha256, checked when the manifest is
//! read (the file exists, the pin is well-formed) and again when the build
//! copies it into `/usr/share/atomicbuild/images` (the bytes match the pin,
//! and every blob in the archive matches its digest). The list the host's
//! import unit reads is [`common::images`]'s.

pub mod oci;
pub mod registries;

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::model::Scope;
use common::images::{self, Preloaded};

/// `[[container_images]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // fields: README's manifest reference
pub struct RawContainerImage {
    pub name: String,
    pub archive: String,
    pub sha256: String,
    pub reference: String,
}

/// One image to preload.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ContainerImage {
    /// Its name in the manifest (file names derive from it).
    pub name: String,
    /// The OCI archive (a tar of an OCI image layout), absolute.
    pub archive: PathBuf,
    /// The archive's pinned sha256 (hex).
    pub sha256: String,
    /// What containerd will call it, e.g. `registry.k8s.io/pause:3.10.1`.
    pub reference: String,
}

/// Check `[[container_images]]` (`dir` resolves relative paths).
pub fn check(raw: Vec<RawContainerImage>, dir: &Path, p: &mut Scope) -> Vec<ContainerImage> {
    let mut out: Vec<ContainerImage> = Vec::new();
    for (i, r) in raw.into_iter().enumerate() {
        let mut s = p.scope(&format!("[{i}]"));
        let name_ok = !r.name.is_empty()
            && r.name.len() <= 64
            && r.name
                .bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_'))
            && r.name.as_bytes()[0].is_ascii_alphanumeric();
        if !name_ok {
            s.bad(
                "name",
                "use 1-64 of a-z, 0-9, - and _, starting with a letter or digit",
            );
        } else if out.iter().any(|o| o.name == r.name) {
            s.bad("name", format!("{:?} is preloaded twice", r.name));
        }
        let archive = dir.join(&r.archive);
        if !archive.is_file() {
            s.bad(
                "archive",
                format!(
                    "{} is not a file (an OCI archive: a tar of an OCI image layout, e.g. `skopeo copy docker://REF oci-archive:FILE`)",
                    archive.display()
                ),
            );
        }
        if !images::is_sha256_hex(&r.sha256) {
            s.bad(
                "sha256",
                "give the archive's sha256: 64 lower-case hex digits (sha256sum FILE)",
            );
        }
        if let Err(why) = check_reference(&r.reference) {
            s.bad("reference", why);
        } else if out.iter().any(|o| o.reference == r.reference) {
            s.bad("reference", format!("{:?} is preloaded twice", r.reference));
        }
        out.push(ContainerImage {
            name: r.name,
            archive,
            sha256: r.sha256,
            reference: r.reference,
        });
    }
    out
}

/// A reference containerd can name an image by: `[HOST[:PORT]/]PATH[:TAG]`.
fn check_reference(r: &str) -> Result<(), String> {
    if r.contains('@') {
        return Err(
            "leave the digest out: the archive's own digest is recorded and checked".into(),
        );
    }
    let ok = !r.is_empty()
        && r.len() <= 255
        && r.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/:".contains(&b))
        && !r.starts_with(['/', ':', '.', '-'])
        && !r.ends_with(['/', ':'])
        && !r.contains("//");
    match ok
        && r.rsplit('/')
            .next()
            .is_some_and(|last| last.matches(':').count() <= 1)
    {
        true => Ok(()),
        false => Err(format!(
            "{r:?} is not an image reference such as registry.k8s.io/pause:3.10.1"
        )),
    }
}

/// Copy each image's archive into `root`'s [`images::DIR`], checking it
/// against its pin, and write the list; `locate` turns an image's index
/// and field into an error that names the manifest's line. Returns the
/// list and the bytes added.
pub fn preload(
    root: &Path,
    list: &[ContainerImage],
    locate: &dyn Fn(usize, &str, String) -> anyhow::Error,
    say: &dyn Fn(&str),
) -> Result<(Vec<Preloaded>, u64)> {
    if list.is_empty() {
        return Ok((Vec::new(), 0));
    }
    if !root.join("usr/bin/containerd").exists() {
        return Err(locate(
            0,
            "name",
            "preloaded images are imported into containerd, which the image does not have: add containerd to [packages]".into(),
        ));
    }
    let dir = root.join(images::DIR);
    fs::create_dir_all(&dir)?;
    let mut out = Vec::new();
    let mut bytes = 0;
    for (i, c) in list.iter().enumerate() {
        say(&format!("container image {} ({})", c.name, c.reference));
        let file = format!("{}.oci.tar", c.name);
        let dst = dir.join(&file);
        let (sha, n) = copy_hashing(&c.archive, &dst)?;
        if sha != c.sha256 {
            let _ = fs::remove_file(&dst);
            return Err(locate(
                i,
                "sha256",
                format!(
                    "{} has sha256 {sha}, not the pinned {}; refusing it (if the archive was meant to change, pin its new sha256)",
                    c.archive.display(),
                    c.sha256
                ),
            ));
        }
        let digest = oci::check_archive(&dst)
            .map_err(|e| locate(i, "archive", format!("{}: {e:#}", c.archive.display())))?;
        bytes += n;
        out.push(Preloaded {
            name: c.name.clone(),
            file,
            sha256: sha,
            reference: c.reference.clone(),
            digest,
        });
    }
    crate::fsutil::replace_file(&root.join(images::LIST), images::render(&out))?;
    Ok((out, bytes))
}

/// Copy `src` to `dst` (mode 0644), returning the sha256 of what was read
/// and its length.
fn copy_hashing(src: &Path, dst: &Path) -> Result<(String, u64)> {
    let mut r = File::open(src).with_context(|| format!("opening {}", src.display()))?;
    let mut w = File::create(dst).with_context(|| format!("creating {}", dst.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = r
            .read(&mut buf)
            .with_context(|| format!("reading {}", src.display()))?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        w.write_all(&buf[..k])?;
        n += k as u64;
    }
    w.flush()?;
    fs::set_permissions(dst, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    if n == 0 {
        bail!("{} is empty", src.display());
    }
    Ok((hex::encode(h.finalize()), n))
}

#[cfg(test)]
mod tests;
