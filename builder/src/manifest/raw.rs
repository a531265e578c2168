//! The manifest exactly as written: serde structs that reject unknown keys.
//!
//! Nothing here is checked beyond types; [`super::validate`] turns a
//! [`RawManifest`] into a typed, defaults-resolved [`super::Manifest`].

// Field meanings are documented once, in README.md's manifest reference.
#![allow(missing_docs)]

use serde::Deserialize;

/// Top level of `host.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawManifest {
    pub image: RawImage,
    pub base: RawBase,
    pub packages: RawPackages,
    #[serde(default)]
    pub system: RawSystem,
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
}

/// Where an `[[upload]]` entry goes.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UploadTarget {
    /// An AMI through the EBS direct APIs.
    Aws,
    /// A Glance image.
    Openstack,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpload {
    pub target: UploadTarget,
    pub name: Option<String>,
    pub format: Option<Format>,
    // AWS
    pub region: Option<String>,
    pub profile: Option<String>,
    pub endpoint_url: Option<String>,
    pub boot_mode: Option<crate::upload::aws::BootMode>,
    pub copy_to_regions: Option<Vec<String>>,
    pub launch_permissions: Option<Vec<String>>,
    pub tags: Option<std::collections::BTreeMap<String, String>>,
    // OpenStack
    pub cloud: Option<String>,
    pub firmware: Option<crate::cli::Firmware>,
    pub os_distro: Option<String>,
    pub os_version: Option<String>,
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

/// Which distribution family builds the root.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Distro {
    /// Debian via mmdebstrap.
    Debian,
    /// Fedora via dnf (backend not yet built; manifests validate).
    Fedora,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBase {
    pub distro: Distro,
    pub release: String,
    pub mirror: Option<String>,
    pub security_mirror: Option<String>,
    pub components: Option<Vec<String>>,
    #[serde(default)]
    pub repos: Vec<RawRepo>,
}

/// An RPM repository (Fedora base).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRepo {
    pub name: String,
    pub baseurl: Option<String>,
    pub metalink: Option<String>,
    pub gpgkey: Option<String>,
    #[serde(default = "yes")]
    pub gpgcheck: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPackages {
    pub include: Vec<String>,
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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDisk {
    pub size: Option<Size>,
    pub esp_size: Option<Size>,
    pub boot_size: Option<Size>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOstree {
    #[serde(rename = "ref")]
    pub ref_: String,
    pub osname: String,
}

/// One image format to write.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// A raw disk image (GPT, BIOS + UEFI bootable); always written.
    Raw,
    /// qcow2 v3 (QEMU, OpenStack).
    Qcow2,
    /// VMDK streamOptimized (VMware, VirtualBox).
    Vmdk,
    /// VMDK monolithicSparse (VMware Workstation/Fusion, hosted).
    VmdkSparse,
    /// VirtualBox's dynamic VDI.
    Vdi,
    /// Fixed VHD, size rounded up to a whole MiB (Azure, AWS import).
    Vhd,
    /// Dynamic VHD (Hyper-V).
    VhdDynamic,
    /// OVF 1.0 appliance: descriptor + streamOptimized VMDK + manifest.
    Ova,
}

/// How an output is compressed.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Not compressed.
    None,
    /// An outer `.xz` (not for qcow2 or OVA).
    Xz,
    /// qcow2: zstd clusters; other formats: an outer `.zst`.
    Zstd,
    /// qcow2 only: deflate clusters (what `qemu-img convert -c` writes).
    Deflate,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOutput {
    pub format: Format,
    pub compression: Option<Compression>,
    pub level: Option<i64>,
    pub cpus: Option<i64>,
    pub memory: Option<Size>,
}

/// A byte size written as an integer or as a string like `"512MiB"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Size;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a size such as \"512MiB\" or \"4GiB\", or a number of bytes")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Size, E> {
                u64::try_from(v)
                    .map(Size)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Size, E> {
                Ok(Size(v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Size, E> {
                parse_size(v).map(Size).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// Parse `"512MiB"`, `"4GiB"`, `"1G"` (binary units) or plain bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || {
        format!(
            "invalid size \"{s}\": write a whole number with a unit, like \"512MiB\" or \"4GiB\""
        )
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "T" | "TiB" => 1 << 40,
        _ => return Err(bad()),
    };
    n.checked_mul(mult).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("4G"), Ok(4 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("4 gigs").is_err());
        assert!(parse_size("1.5GiB").is_err());
        assert!(parse_size("99999999999TiB").is_err());
    }
}
