//! The manifest exactly as written: serde structs that reject unknown keys.
//!
//! Nothing here is checked beyond types; [`super::validate`] turns a
//! [`RawManifest`] into a typed, defaults-resolved [`super::Manifest`]. The
//! sections other modules own are theirs ([`RawBase`], [`RawDisk`],
//! [`RawOutput`], [`RawUpload`]).

// Field meanings are documented once, in README.md's manifest reference.
#![allow(missing_docs)]

use serde::Deserialize;

use crate::budgets::RawBudgets;
use crate::containers::registries::RawRegistry;
use crate::containers::RawContainerImage;
use crate::disk::spec::RawDisk;
use crate::distro::spec::RawBase;
use crate::formats::spec::RawOutput;
use crate::lint::RawLint;
use crate::signing::RawSigning;
use crate::updates::RawUpdates;
use crate::upload::spec::RawUpload;

/// Top level of `host.toml`. Sections owned by other modules (the base,
/// the disk, outputs, uploads) are parsed by their types.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawManifest {
    pub image: RawImage,
    pub base: RawBase,
    pub packages: RawPackages,
    #[serde(default)]
    pub system: RawSystem,
    #[serde(default)]
    pub kernel: RawKernel,
    #[serde(default)]
    pub units: RawUnits,
    #[serde(default)]
    pub users: Vec<RawUser>,
    #[serde(default)]
    pub disk: RawDisk,
    pub ostree: RawOstree,
    #[serde(default)]
    pub output: Vec<RawOutput>,
    #[serde(default)]
    pub firstboot: RawFirstboot,
    #[serde(default)]
    pub upload: Vec<RawUpload>,
    pub updates: Option<RawUpdates>,
    pub signing: Option<RawSigning>,
    #[serde(default)]
    pub budgets: RawBudgets,
    #[serde(default)]
    pub lint: RawLint,
    #[serde(default)]
    pub container_images: Vec<RawContainerImage>,
    #[serde(default)]
    pub registries: Vec<RawRegistry>,
}

/// Where the first-boot agent finds its configuration.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, serde::Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    /// QEMU's fw_cfg entry `opt/org.atomicbuild/config`.
    #[default]
    Qemu,
    /// OpenStack config drive, metadata service as fallback.
    Openstack,
    /// AWS instance metadata (IMDSv2).
    Aws,
    /// A file, optionally on a labelled partition.
    File,
}

impl Platform {
    /// Its name on the kernel command line (`atomic.platform=`).
    pub fn name(self) -> &'static str {
        match self {
            Platform::Qemu => "qemu",
            Platform::Openstack => "openstack",
            Platform::Aws => "aws",
            Platform::File => "file",
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFirstboot {
    pub platform: Option<Platform>,
    pub aws_imdsv1: Option<bool>,
    pub config_label: Option<String>,
    pub config_path: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawImage {
    pub name: String,
    pub version: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPackages {
    pub include: Vec<String>,
    pub docs: Option<bool>,
    pub languages: Option<Vec<String>>,
    pub leave_out: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKernel {
    pub modules: Option<crate::model::ModuleProfile>,
    pub module_compression: Option<crate::model::ModuleCompression>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSystem {
    pub hostname: Option<String>,
    #[serde(default)]
    pub overlays: Vec<String>,
    #[serde(default)]
    pub kernel_args: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUnits {
    #[serde(default)]
    pub enable: Vec<String>,
    #[serde(default)]
    pub disable: Vec<String>,
    #[serde(default)]
    pub mask: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUser {
    pub name: String,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub ssh_authorized_keys: Vec<String>,
    pub password_hash: Option<String>,
    pub shell: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOstree {
    #[serde(rename = "ref")]
    pub ref_: String,
    pub osname: String,
}
