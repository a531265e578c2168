//! Tiny OCI images made byte by byte (no registry, no Docker): one
//! uncompressed layer of the given files and links, its config, the image
//! manifest, and an OCI archive (a tar of the image layout) holding them.
//! Deterministic: the same entries give the same digests.

use std::path::Path;

use sha2::{Digest, Sha256};

/// Something in the layer.
pub enum Entry<'a> {
    /// A regular file: path, contents, mode.
    File(&'a str, &'a [u8], u32),
    /// A symbolic link: path, target.
    Link(&'a str, &'a str),
}

/// An image's archive contents, before they are written.
pub struct Image {
    /// (path in the archive, bytes): `oci-layout`, `index.json`, then the
    /// blobs (layer, config, manifest), so tests can damage them.
    pub files: Vec<(String, Vec<u8>)>,
    /// The manifest's digest, `sha256:HEX`.
    pub digest: String,
}

/// sha256 of `b`, hex.
pub fn sha256(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn header(kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

/// The layer: a tar of `entries`.
fn layer(entries: &[Entry]) -> Vec<u8> {
    let mut t = tar::Builder::new(Vec::new());
    for e in entries {
        match e {
            Entry::File(p, b, mode) => {
                let mut h = header(tar::EntryType::Regular, b.len() as u64, *mode);
                t.append_data(&mut h, p, *b).unwrap();
            }
            Entry::Link(p, target) => {
                let mut h = header(tar::EntryType::Symlink, 0, 0o777);
                t.append_link(&mut h, p, target).unwrap();
            }
        }
    }
    t.into_inner().unwrap()
}

/// An image of `entries` running `cmd`, tagged `tag` in its index.
pub fn image(entries: &[Entry], cmd: &[&str], tag: &str) -> Image {
    let layer = layer(entries);
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": cmd, "Env": ["PATH=/bin:/usr/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", sha256(&layer))]},
    })
    .to_string()
    .into_bytes();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": format!("sha256:{}", sha256(&config)), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": format!("sha256:{}", sha256(&layer)), "size": layer.len()}],
    })
    .to_string()
    .into_bytes();
    let digest = format!("sha256:{}", sha256(&manifest));
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": digest, "size": manifest.len(),
                       "annotations": {"org.opencontainers.image.ref.name": tag}}],
    })
    .to_string()
    .into_bytes();
    let mut files = vec![
        (
            "oci-layout".to_string(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ),
        ("index.json".to_string(), index),
    ];
    for b in [layer, config, manifest] {
        files.push((format!("blobs/sha256/{}", sha256(&b)), b));
    }
    Image { files, digest }
}

impl Image {
    /// Write the OCI archive to `path`; its sha256.
    pub fn write(&self, path: &Path) -> String {
        let mut t = tar::Builder::new(Vec::new());
        for (name, bytes) in &self.files {
            let mut h = header(tar::EntryType::Regular, bytes.len() as u64, 0o644);
            t.append_data(&mut h, name, &bytes[..]).unwrap();
        }
        let bytes = t.into_inner().unwrap();
        std::fs::write(path, &bytes).unwrap();
        sha256(&bytes)
    }
}

/// An image of Debian's static busybox (`/bin/busybox`, from
/// `busybox-static`) with the applets the tests run linked in `/bin`,
/// plus `/marker` holding `marker` (so that images differ by digest).
pub fn busybox(marker: &str, tag: &str) -> Image {
    let bb = std::fs::read("/bin/busybox").expect("busybox-static (scripts/install-deps)");
    let links: Vec<String> = ["sh", "echo", "wget", "cat", "ip", "grep", "timeout"]
        .iter()
        .map(|a| format!("bin/{a}"))
        .collect();
    let mut entries = vec![
        Entry::File("bin/busybox", &bb, 0o755),
        Entry::File("marker", marker.as_bytes(), 0o644),
    ];
    entries.extend(links.iter().map(|l| Entry::Link(l, "busybox")));
    image(&entries, &["/bin/sh"], tag)
}
