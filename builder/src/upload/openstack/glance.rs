//! Glance v2: create the image with its properties, stream the file while
//! hashing it, wait for `active`, and compare Glance's hash (in the
//! algorithm it names) with ours. A re-run finds an active image of the
//! same name and hash and uploads nothing; a failed upload deletes the
//! image it created.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha512};

use super::auth::{http_error, Session};

/// What the image is.
pub struct ImageSpec<'a> {
    /// Image name.
    pub name: &'a str,
    /// `raw` or `qcow2` (from the file name).
    pub disk_format: &'a str,
    /// `uefi` or `bios`.
    pub firmware: &'a str,
    /// Smallest disk that holds it, GiB.
    pub min_disk_gib: u64,
    /// Smallest sensible RAM, MiB.
    pub min_ram_mib: u64,
    /// os_distro property.
    pub os_distro: &'a str,
    /// os_version property.
    pub os_version: &'a str,
}

/// A reader that hashes what passes through it.
struct Hashing<R> {
    inner: R,
    h: Sha512,
    n: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.h.update(&buf[..n]);
        self.n += n as u64;
        Ok(n)
    }
}

/// sha512 of a file.
pub fn sha512_file(p: &Path) -> Result<String> {
    let mut r = Hashing {
        inner: File::open(p)?,
        h: Sha512::new(),
        n: 0,
    };
    std::io::copy(&mut r, &mut std::io::sink())?;
    Ok(hex::encode(r.h.finalize()))
}

/// The file's digest in the algorithm Glance names in `os_hash_algo`
/// (an operator setting; sha512 by default). `sha512` is known already.
fn digest_as(p: &Path, algo: &str, sha512: &str) -> Result<String> {
    fn hash<D: Digest + std::io::Write>(p: &Path) -> Result<String> {
        let mut d = D::new();
        std::io::copy(&mut File::open(p)?, &mut d)?;
        Ok(hex::encode(d.finalize()))
    }
    match algo {
        "sha512" => Ok(sha512.to_string()),
        "sha384" => hash::<sha2::Sha384>(p),
        "sha256" => hash::<sha2::Sha256>(p),
        other => bail!(
            "Glance hashes images with {other:?}; atomicbuild can check sha256, sha384 and sha512"
        ),
    }
}

/// Upload `image` unless an identical image exists; returns (id, uploaded).
pub fn upload(
    s: &Session,
    image: &Path,
    spec: &ImageSpec,
    wait: Duration,
) -> Result<(String, bool)> {
    let ours = sha512_file(image)?;
    // Only the project's own images (shared and public ones are not ours).
    let owner = s
        .project_id
        .as_ref()
        .map(|p| format!("&owner={p}"))
        .unwrap_or_default();
    let existing = s.get(&format!(
        "/v2/images?name={}{owner}&limit=100",
        crate::upload::aws::sigv4::uri_encode(spec.name, false)
    ))?;
    let images = existing["images"].as_array().cloned().unwrap_or_default();
    for img in images.iter().filter(|i| i["status"] == "active") {
        let algo = img["os_hash_algo"].as_str().unwrap_or("sha512");
        if img["os_hash_value"].as_str() == Some(digest_as(image, algo, &ours)?.as_str()) {
            return Ok((img["id"].as_str().unwrap_or_default().to_string(), false));
        }
    }
    // An upload that was killed leaves its image queued (or saving).
    for img in images.iter().filter(|i| i["status"] != "active") {
        eprintln!(
            "warning: image {} named {} is {} (an interrupted upload?); delete it with `openstack image delete {}`",
            img["id"].as_str().unwrap_or("?"),
            spec.name,
            img["status"].as_str().unwrap_or("?"),
            img["id"].as_str().unwrap_or("?"),
        );
    }
    let body = serde_json::json!({
        "name": spec.name,
        "disk_format": spec.disk_format,
        "container_format": "bare",
        "visibility": "private",
        "min_disk": spec.min_disk_gib,
        "min_ram": spec.min_ram_mib,
        "architecture": "x86_64",
        "hw_firmware_type": spec.firmware,
        "hw_machine_type": "q35",
        "os_distro": spec.os_distro,
        "os_version": spec.os_version,
    });
    let url = format!("{}/v2/images", s.image_url);
    let created: serde_json::Value = serde_json::from_str(
        &s.call("creating the image", |t| {
            s.agent
                .post(&url)
                .set("x-auth-token", t)
                .set("content-type", "application/json")
                .send_string(&body.to_string())
                .map_err(Box::new)
        })?
        .into_string()?,
    )?;
    let id = created["id"]
        .as_str()
        .context("Glance returned no image id")?
        .to_string();
    let r = put_and_verify(s, &id, image, &ours, wait);
    if let Err(e) = r {
        return Err(match s.delete(&id) {
            Ok(()) => e.context(format!("the image {id} was deleted again")),
            Err(d) => e.context(format!("delete the image {id} by hand ({d:#})")),
        });
    }
    Ok((id, true))
}

fn put_and_verify(s: &Session, id: &str, image: &Path, ours: &str, wait: Duration) -> Result<()> {
    let f = File::open(image)?;
    let len = f.metadata()?.len();
    let transfer = crate::progress::Transfer::new("uploading");
    let mut reader = Hashing {
        inner: crate::progress::TransferReader {
            inner: f,
            transfer: &transfer,
            done: 0,
            total: len,
        },
        h: Sha512::new(),
        n: 0,
    };
    s.agent
        .put(&format!("{}/v2/images/{id}/file", s.image_url))
        .set("x-auth-token", &s.token())
        .set("content-type", "application/octet-stream")
        .set("content-length", &len.to_string())
        .send(&mut reader)
        .map_err(|e| http_error("uploading the image data", e))?;
    let secs = transfer.finish().as_secs_f64();
    eprintln!(
        "sent {} MiB in {secs:.1} s, {:.1} MiB/s",
        len >> 20,
        len as f64 / 1048576.0 / secs.max(0.001)
    );
    let sent = hex::encode(reader.h.finalize());
    if sent != ours || reader.n != len {
        bail!("the image changed while it was uploaded");
    }
    let active = crate::upload::poll_until(wait, Duration::from_secs(1), || {
        let img = s.get(&format!("/v2/images/{id}"))?;
        match img["status"].as_str() {
            Some("active") => Ok(Some(img)),
            Some(st @ ("killed" | "deleted" | "pending_delete")) => {
                bail!("Glance marked {id} {st}")
            }
            _ => Ok(None),
        }
    })?
    .with_context(|| format!("{id} did not become active within {} s", wait.as_secs()))?;
    let theirs = active["os_hash_value"].as_str().unwrap_or_default();
    let algo = active["os_hash_algo"]
        .as_str()
        .context("Glance reports no os_hash_algo (multihash needs Glance 17, Rocky, or later)")?;
    let mine = digest_as(image, algo, ours)?;
    if theirs != mine {
        bail!("Glance's {algo} of {id} ({theirs}) is not ours ({mine})");
    }
    Ok(())
}
