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
    /// What each lean setting saved in the installed root.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lean_savings: Vec<super::Saving>,
    /// What writing each `[[output]]` took (written in one pass, at once).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub output_times: Vec<OutputTime>,
    /// What `--upload` made of the outputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uploads: Option<Vec<UploadRecord>>,
    /// Boot times `atomicbuild test` measured, one per firmware and
    /// accelerator (the latest of each).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub boot_times: Vec<BootTime>,
    /// The SBOM beside the outputs (SPDX 2.3 JSON); the image carries the
    /// tree's at /usr/share/atomicbuild/sbom.spdx.json.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sbom: String,
    /// The tree's setuid and setgid files (from the image lint).
    #[serde(default)]
    pub setuid: Vec<Privileged>,
    /// Image lint findings the manifest waived, with its reasons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lint_waived: Vec<Waived>,
}

/// A setuid or setgid file of the tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Privileged {
    /// Its path as on the host.
    pub path: String,
    /// Its mode, octal (`4755`).
    pub mode: String,
    /// Owner, numeric.
    pub uid: u32,
    /// Group, numeric.
    pub gid: u32,
}

/// An image lint finding a `[[lint.waive]]` covered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waived {
    /// The rule.
    pub rule: String,
    /// Where.
    pub path: String,
    /// What the rule found.
    pub detail: String,
    /// The waiver's reason.
    pub reason: String,
}

/// One boot's time to `multi-user.target`, as the guest measured it.
#[derive(Debug, Serialize, Deserialize, Clone, PartialEq)]
pub struct BootTime {
    /// `uefi` or `bios`.
    pub firmware: String,
    /// `kvm` or `tcg`.
    pub accel: String,
    /// Seconds from power-on (firmware included, when systemd knows it)
    /// to `multi-user.target`.
    pub seconds: f64,
    /// The slowest units (`systemd-analyze blame`), slowest first.
    pub slowest_units: Vec<String>,
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

/// What writing one output took in the formats stage.
#[derive(Debug, Serialize, Deserialize, Clone)]
pub struct OutputTime {
    /// File name inside the output directory.
    pub file: String,
    /// Seconds from the start of the stage until the file was complete.
    pub wall_seconds: f64,
    /// CPU seconds of every thread that worked for it (compression
    /// workers included).
    pub cpu_seconds: f64,
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
    /// The source package it was built from (dpkg's source:Package, the
    /// name of rpm's SOURCERPM); empty in metadata of older builds.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    /// That source package's version.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source_version: String,
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

/// Build metadata for tests: `packages` (name, version, KiB), a raw image
/// allocating `raw_alloc` bytes and a 400 MiB qcow2.
#[cfg(test)]
pub mod fixtures {
    use super::Metadata;

    pub fn fixture(
        version: &str,
        commit: &str,
        packages: &[(&str, &str, u64)],
        raw_alloc: u64,
    ) -> Metadata {
        let pk: Vec<serde_json::Value> = packages
            .iter()
            .map(|(n, v, k)| serde_json::json!({"name": n, "version": v, "arch": "amd64", "installed_bytes": k * 1024}))
            .collect();
        let part = |n: u32, name: &str, size: u64| serde_json::json!({"number": n, "name": name, "offset": 1048576, "size": size, "type_guid": "", "guid": "", "filesystem": "ext4", "fs_id": ""});
        serde_json::from_value(serde_json::json!({
            "name": "host", "version": version, "inputs_key": "", "raw_identity": "",
            "atomicbuild_version": "0.1.0",
            "manifest": {"path": "host.toml", "sha256": ""},
            "source_date_epoch": 1_700_000_000u64,
            "ostree": {"ref": "r", "commit": commit, "osname": "debian"},
            "kernel": {"version": "6.1.0-57-amd64", "cmdline": ["root=LABEL=root", "quiet"], "initramfs_bytes": 36_700_160u64},
            "packages": pk,
            "disk": {"size": 4u64 << 30, "disk_guid": "", "partitions": [part(3, "boot", 512 << 20), part(4, "root", 3u64 << 30)]},
            "artifacts": [
                {"file": format!("host-{version}.raw"), "format": "raw", "size": 4u64 << 30, "allocated": raw_alloc, "sha256": ""},
                {"file": format!("host-{version}.qcow2"), "format": "qcow2", "size": 400u64 << 20, "allocated": 400u64 << 20, "sha256": ""}
            ],
            "stages": []
        }))
        .unwrap()
    }
}
