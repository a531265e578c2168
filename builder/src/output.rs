//! Outputs: the build metadata JSON and SHA256SUMS, written atomically.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::disk::Layout;

/// sha256 of a file, streamed.
pub fn sha256_file(p: &Path) -> Result<String> {
    use std::io::{Seek, SeekFrom};
    let mut f = File::open(p).with_context(|| format!("opening {}", p.display()))?;
    let len = f.metadata()?.len();
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let zeros = vec![0u8; 1 << 20];
    let mut pos = 0;
    // Holes hash as zeros without being read.
    for (start, end) in crate::fsutil::data_ranges(&f, len)?
        .into_iter()
        .chain([(len, len)])
    {
        while pos < start {
            let n = (start - pos).min(zeros.len() as u64) as usize;
            h.update(&zeros[..n]);
            pos += n as u64;
        }
        f.seek(SeekFrom::Start(start))?;
        while pos < end {
            let want = (end - pos).min(buf.len() as u64) as usize;
            let n = f.read(&mut buf[..want])?;
            if n == 0 {
                anyhow::bail!("{} shrank while being hashed", p.display());
            }
            h.update(&buf[..n]);
            pos += n as u64;
        }
    }
    Ok(hex::encode(h.finalize()))
}

/// One file the build produced.
#[derive(Debug, Serialize, Clone)]
pub struct Artifact {
    /// File name inside the output directory.
    pub file: String,
    /// Image format.
    pub format: String,
    /// Apparent size in bytes.
    pub size: u64,
    /// Bytes allocated on disk (sparse images allocate less).
    pub allocated: u64,
    /// sha256 of the contents.
    pub sha256: String,
}

/// How long one stage took.
#[derive(Debug, Serialize, Clone)]
pub struct StageTime {
    /// Stage name.
    pub name: String,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Whether the stage's result came from the cache.
    pub cached: bool,
}

/// One installed package.
#[derive(Debug, Serialize, Clone)]
pub struct Package {
    /// Package name.
    pub name: String,
    /// Exact version.
    pub version: String,
    /// Architecture.
    pub arch: String,
}

/// Everything `NAME-VERSION.json` records about a build.
#[derive(Debug, Serialize)]
pub struct Metadata {
    /// Image name.
    pub name: String,
    /// Image version.
    pub version: String,
    /// Hash of every input of the build (see `pipeline::inputs_key`).
    pub inputs_key: String,
    /// device:inode:size:mtime of the raw image when it was written; a
    /// rebuild with the same inputs is skipped while this still matches.
    pub raw_identity: String,
    /// atomicbuild's own version.
    pub atomicbuild_version: String,
    /// Manifest path as given and its sha256.
    pub manifest: ManifestRef,
    /// Timestamp used for the commit and filesystems.
    pub source_date_epoch: u64,
    /// The OSTree commit.
    pub ostree: OstreeInfo,
    /// The kernel.
    pub kernel: KernelInfo,
    /// Installed packages, sorted by name.
    pub packages: Vec<Package>,
    /// Partition table.
    pub disk: Layout,
    /// Files written.
    pub artifacts: Vec<Artifact>,
    /// Stage durations in order.
    pub stages: Vec<StageTime>,
}

/// Where the manifest came from.
#[derive(Debug, Serialize)]
pub struct ManifestRef {
    /// Path as given on the command line.
    pub path: String,
    /// sha256 of its bytes.
    pub sha256: String,
}

/// OSTree facts.
#[derive(Debug, Serialize)]
pub struct OstreeInfo {
    /// Branch.
    #[serde(rename = "ref")]
    pub ref_: String,
    /// Commit checksum.
    pub commit: String,
    /// Stateroot.
    pub osname: String,
}

/// Kernel facts.
#[derive(Debug, Serialize)]
pub struct KernelInfo {
    /// `uname -r`.
    pub version: String,
    /// Full command line of the boot entry.
    pub cmdline: Vec<String>,
    /// Initramfs size in bytes.
    pub initramfs_bytes: u64,
}

/// SHA256SUMS text in the format `sha256sum -c` reads.
pub fn sha256sums(artifacts: &[(String, String)]) -> String {
    artifacts
        .iter()
        .map(|(sum, file)| format!("{sum}  {file}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_file_is_checkable_by_sha256sum() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a.raw"), b"hello").unwrap();
        let sum = sha256_file(&d.path().join("a.raw")).unwrap();
        assert_eq!(
            sum,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        std::fs::write(
            d.path().join("SHA256SUMS"),
            sha256sums(&[(sum, "a.raw".into())]),
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
