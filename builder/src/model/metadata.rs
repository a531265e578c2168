//! `NAME-VERSION.json`: everything a build records about itself, as one
//! type that is written by the build, read back (typed; a missing field is
//! an error, never an empty string) by the next build's up-to-date check,
//! by `verify` and by `--upload`, and extended by the uploads' records.

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::Layout;

/// Everything `NAME-VERSION.json` records about a build.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Metadata {
    /// Image name.
    pub name: String,
    /// Image version.
    pub version: String,
    /// Hash of every input of the build (see `pipeline::inputs`).
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
    /// Files written; the raw image first.
    pub artifacts: Vec<Artifact>,
    /// Stage durations in order.
    pub stages: Vec<StageTime>,
    /// What `--upload` made of the outputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uploads: Option<Vec<UploadRecord>>,
}

impl Metadata {
    /// Read `path`.
    pub fn load(path: &Path) -> Result<Metadata> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{} is not build metadata of this atomicbuild",
                path.display()
            )
        })
    }

    /// The JSON text (pretty, as written).
    pub fn to_json(&self) -> Result<Vec<u8>> {
        Ok(serde_json::to_vec_pretty(self)?)
    }

    /// The artifact written to `file` (a name in the output directory).
    pub fn artifact(&self, file: &str) -> Option<&Artifact> {
        self.artifacts.iter().find(|a| a.file == file)
    }
}

/// One file the build produced.
#[derive(Debug, Serialize, Deserialize, Clone, PartialEq, Eq)]
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
#[derive(Debug, Serialize, Deserialize, Clone)]
pub struct StageTime {
    /// Stage name.
    pub name: String,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Whether the stage's result came from the cache.
    pub cached: bool,
}

/// One installed package.
#[derive(Debug, Serialize, Deserialize, Clone, PartialEq, Eq)]
pub struct Package {
    /// Package name.
    pub name: String,
    /// Exact version.
    pub version: String,
    /// Architecture.
    pub arch: String,
    /// Installed size in bytes, as the package database records it (dpkg:
    /// Installed-Size in KiB; rpm: SIZE); 0 in metadata of older builds.
    #[serde(default)]
    pub installed_bytes: u64,
}

impl Package {
    /// Sort key: name, version, architecture.
    pub fn key(&self) -> (&str, &str, &str) {
        (&self.name, &self.version, &self.arch)
    }
}

/// Where the manifest came from.
#[derive(Debug, Serialize, Deserialize, Clone)]
pub struct ManifestRef {
    /// Path as given on the command line.
    pub path: String,
    /// sha256 of its bytes.
    pub sha256: String,
}

/// OSTree facts.
#[derive(Debug, Serialize, Deserialize, Clone)]
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
#[derive(Debug, Serialize, Deserialize, Clone)]
pub struct KernelInfo {
    /// `uname -r`.
    pub version: String,
    /// Full command line of the boot entry.
    pub cmdline: Vec<String>,
    /// Initramfs size in bytes.
    pub initramfs_bytes: u64,
}

/// What one upload left in a cloud.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UploadRecord {
    /// `aws` or `openstack`.
    pub target: String,
    /// Image name.
    pub name: String,
    /// The file uploaded.
    pub file: String,
    /// AWS region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// clouds.yaml entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud: Option<String>,
    /// AMI id or Glance image id.
    pub image_id: String,
    /// AMI copies: region → AMI id.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub copies: std::collections::BTreeMap<String, String>,
    /// False when an identical image existed and nothing was sent.
    pub uploaded: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_field_is_an_error_not_an_empty_string() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.json");
        std::fs::write(&p, r#"{"name": "x", "version": "1"}"#).unwrap();
        let e = Metadata::load(&p).unwrap_err();
        assert!(format!("{e:#}").contains("missing field"), "{e:#}");
    }
}
