//! Finish stage: the raw image gets its checksum, becomes the disk stage's
//! cache entry and appears under its final name; after the formats stage,
//! [`record`] writes the build metadata, the lock and `SHA256SUMS` (each
//! atomically, the sums last).

use std::path::{Path, PathBuf};

use anyhow::Result;

use super::disk::Disk;
use super::{Env, Outcome};
use crate::distro::lock::Lock;
use crate::fsutil;
use crate::model::{Artifact, Metadata};
use crate::signing::Key;
use crate::sums;

/// The raw image under its final name.
pub struct Raw {
    /// Its path.
    pub path: PathBuf,
    /// What the metadata says of it.
    pub artifact: Artifact,
}

impl Outcome for Raw {}

/// The file name of `p`.
pub fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Checksum `raw_tmp`, store it in the cache when the disk stage asks,
/// and rename it to `raw_final`.
pub fn raw(env: &Env, disk: &Disk, raw_tmp: &Path, raw_final: &Path) -> Result<Raw> {
    let stage = env.progress.stage("finish");
    stage.message("checksumming the image");
    let sha256 = fsutil::sha256_file(raw_tmp)?;
    let artifact = Artifact {
        file: file_name(raw_final),
        format: "raw".into(),
        size: std::fs::metadata(raw_tmp)?.len(),
        allocated: fsutil::allocated_bytes(raw_tmp)?,
        sha256,
    };
    disk.remember(env, raw_tmp, &artifact.sha256)?;
    crate::failpoint::hit("finish.before-rename");
    common::atomic::commit_tmp(raw_tmp, raw_final)?;
    stage.finish("");
    Ok(Raw {
        path: raw_final.to_owned(),
        artifact,
    })
}

/// The files [`record`] wrote.
pub struct Recorded {
    /// `NAME-VERSION.json`.
    pub metadata: PathBuf,
    /// `NAME-VERSION.lock`.
    pub lock: PathBuf,
}

/// Write `meta` as `stem.json`, `lock` as `stem.lock`, and `SHA256SUMS` of
/// every artifact, the SBOM and both files into `out_dir`, signed with
/// `key` when there is one ([`crate::sums`]).
pub fn record(
    out_dir: &Path,
    stem: &str,
    meta: &Metadata,
    lock: &Lock,
    key: Option<&Key>,
) -> Result<Recorded> {
    let meta_path = out_dir.join(format!("{stem}.json"));
    common::atomic::write(&meta_path, &meta.to_json()?)?;
    let meta_sum = fsutil::sha256_file(&meta_path)?;
    let lock_path = out_dir.join(format!("{stem}.lock"));
    common::atomic::write(&lock_path, lock.to_toml()?.as_bytes())?;
    let lock_sum = fsutil::sha256_file(&lock_path)?;
    let mut sums: Vec<(String, String)> = meta
        .artifacts
        .iter()
        .map(|a| (a.sha256.clone(), a.file.clone()))
        .collect();
    if !meta.sbom.is_empty() {
        let sbom = out_dir.join(&meta.sbom);
        sums.push((fsutil::sha256_file(&sbom)?, meta.sbom.clone()));
    }
    sums.push((meta_sum, file_name(&meta_path)));
    sums.push((lock_sum, file_name(&lock_path)));
    crate::failpoint::hit("record.before-sums");
    sums::write(out_dir, &sums::text(&sums), key)?;
    Ok(Recorded {
        metadata: meta_path,
        lock: lock_path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_file_is_checkable_by_sha256sum() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a.raw"), b"hello").unwrap();
        let sum = fsutil::sha256_file(&d.path().join("a.raw")).unwrap();
        assert_eq!(
            sum,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        std::fs::write(
            d.path().join("SHA256SUMS"),
            sums::text(&[(sum, "a.raw".into())]),
        )
        .unwrap();
        let st = std::process::Command::new("sha256sum")
            .args(["-c", "--quiet", "SHA256SUMS"])
            .current_dir(d.path())
            .status()
            .unwrap();
        assert!(st.success());
    }
}
