//! What uploads made, recorded under `uploads` in the build's metadata
//! (`NAME-VERSION.json`), whose line in `SHA256SUMS` is renewed; both files
//! are replaced atomically.

use std::path::Path;

use anyhow::Result;

use crate::model::{Metadata, UploadRecord};
use crate::signing::Key;
use crate::sums;

/// Put `records` into the metadata at `metadata` and its SHA256SUMS line
/// (signed again with `key`).
pub fn record(metadata: &Path, records: &[UploadRecord], key: Option<&Key>) -> Result<()> {
    rewrite(metadata, key, |meta| meta.uploads = Some(records.to_vec()))
}

/// Change the metadata at `metadata` by `change`, and renew its line in the
/// `SHA256SUMS` beside it (both replaced atomically; the sums signed again
/// with `key`, unsigned without). Uploads and `test`'s boot times are
/// recorded this way.
pub fn rewrite(
    metadata: &Path,
    key: Option<&Key>,
    change: impl FnOnce(&mut Metadata),
) -> Result<()> {
    let mut meta = Metadata::load(metadata)?;
    change(&mut meta);
    common::atomic::write(metadata, &meta.to_json()?)?;
    let dir = metadata.parent().unwrap_or(Path::new("."));
    let sums_path = dir.join(sums::FILE);
    let name = super::file_name(metadata);
    let sum = crate::fsutil::sha256_file(metadata)?;
    let old = std::fs::read_to_string(&sums_path).unwrap_or_default();
    let mut lines: Vec<String> = old
        .lines()
        .filter(|l| l.split_once("  ").map(|(_, f)| f) != Some(name.as_str()))
        .map(String::from)
        .collect();
    lines.push(format!("{sum}  {name}"));
    sums::write(dir, &(lines.join("\n") + "\n"), key)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The metadata of a small build, as a build writes it.
    fn metadata_json() -> String {
        serde_json::json!({
            "name": "x", "version": "1", "inputs_key": "k", "raw_identity": "i",
            "atomicbuild_version": "0.1.0",
            "manifest": {"path": "host.toml", "sha256": "s"},
            "source_date_epoch": 0,
            "ostree": {"ref": "r", "commit": "c", "osname": "debian"},
            "kernel": {"version": "6.1", "cmdline": [], "initramfs_bytes": 1},
            "packages": [],
            "disk": {"size": 1, "disk_guid": "g", "partitions": []},
            "artifacts": [{"file": "x-1.raw", "format": "raw", "size": 4, "allocated": 4, "sha256": "s"}],
            "stages": [],
            "uploads": [{"target": "old", "name": "o", "file": "f", "image_id": "i", "uploaded": false}],
        })
        .to_string()
    }

    #[test]
    fn upload_records_replace_the_metadata_and_its_checksum_line() {
        let d = tempfile::tempdir().unwrap();
        let meta = d.path().join("x-1.json");
        std::fs::write(&meta, metadata_json()).unwrap();
        std::fs::write(d.path().join("x-1.raw"), b"disk").unwrap();
        let raw_sum = crate::fsutil::sha256_file(&d.path().join("x-1.raw")).unwrap();
        std::fs::write(
            d.path().join("SHA256SUMS"),
            format!("{raw_sum}  x-1.raw\n{}  x-1.json\n", "0".repeat(64)),
        )
        .unwrap();
        let r = UploadRecord {
            target: "aws".into(),
            name: "x-1".into(),
            file: "x-1.raw".into(),
            region: Some("us-east-1".into()),
            cloud: None,
            image_id: "ami-1".into(),
            copies: [("eu-west-1".to_string(), "ami-2".to_string())].into(),
            uploaded: true,
        };
        record(&meta, &[r], None).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
        assert_eq!(v["name"], "x");
        assert_eq!(v["uploads"].as_array().unwrap().len(), 1);
        assert_eq!(v["uploads"][0]["copies"]["eu-west-1"], "ami-2");
        assert!(v["uploads"][0].get("cloud").is_none());
        let sums = std::fs::read_to_string(d.path().join("SHA256SUMS")).unwrap();
        assert_eq!(sums.lines().count(), 2, "{sums}");
        let ok = std::process::Command::new("sha256sum")
            .args(["-c", "--quiet", "SHA256SUMS"])
            .current_dir(d.path())
            .status()
            .unwrap();
        assert!(ok.success(), "{sums}");
    }
}
