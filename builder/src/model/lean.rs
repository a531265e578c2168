//! What an image leaves out (`[packages] docs`/`languages`/`leave_out`,
//! `[kernel]` `modules`/`module_compression`), and what leaving it out
//! saved.

use serde::{Deserialize, Serialize};

/// The lean settings of a manifest, defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lean {
    /// Install documentation, man and info pages (copyright and licence
    /// files are always installed).
    pub docs: bool,
    /// Translations to install (`de`, `pt_BR`, ...); none by default.
    pub languages: Vec<String>,
    /// Paths (files or directories, absolute) the packages ship that the
    /// image goes without.
    pub leave_out: Vec<String>,
    /// Which kernel modules stay.
    pub modules: ModuleProfile,
    /// How the modules that stay are stored.
    pub module_compression: ModuleCompression,
}

impl Default for Lean {
    fn default() -> Self {
        Lean {
            docs: false,
            languages: Vec::new(),
            leave_out: Vec::new(),
            modules: ModuleProfile::ContainerHost,
            module_compression: ModuleCompression::Xz,
        }
    }
}

impl Lean {
    /// Everything here, as one line (part of the install stage's key).
    pub fn key(&self) -> String {
        format!(
            "docs={} languages={} leave_out={} modules={} compression={}",
            self.docs,
            self.languages.join(","),
            self.leave_out.join(":"),
            self.modules.name(),
            self.module_compression.name()
        )
    }
}

/// Kernel module profiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModuleProfile {
    /// Drop what a container host in a VM or cloud never loads: GPU,
    /// sound, media, wireless, Bluetooth, IIO, staging, comedi, Fibre
    /// Channel and iSCSI offload adapters and the like.
    ContainerHost,
    /// Keep every module the kernel package ships (bare metal; also
    /// written `metal`).
    #[serde(alias = "metal")]
    All,
}

impl ModuleProfile {
    /// Its name in manifests.
    pub fn name(self) -> &'static str {
        match self {
            ModuleProfile::ContainerHost => "container-host",
            ModuleProfile::All => "all",
        }
    }
}

/// How kernel modules are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModuleCompression {
    /// `.ko.xz` (CRC32 check, 1 MiB dictionary, as the kernel's own
    /// `modules_install` writes them, at preset 1); kmod and dracut read
    /// them.
    Xz,
    /// `.ko.zst`.
    Zstd,
    /// As the kernel package ships them.
    None,
}

impl ModuleCompression {
    /// Its name in manifests.
    pub fn name(self) -> &'static str {
        match self {
            ModuleCompression::Xz => "xz",
            ModuleCompression::Zstd => "zstd",
            ModuleCompression::None => "none",
        }
    }

    /// The file name suffix after `.ko`.
    pub fn suffix(self) -> &'static str {
        match self {
            ModuleCompression::Xz => ".xz",
            ModuleCompression::Zstd => ".zst",
            ModuleCompression::None => "",
        }
    }
}

/// What one lean setting saved in the installed root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saving {
    /// The setting, as written in the manifest (`packages.docs = false`).
    pub setting: String,
    /// What it left out or changed, in words.
    pub what: String,
    /// Files left out (or rewritten, for compression).
    pub files: u64,
    /// Bytes saved.
    pub bytes: u64,
}

impl std::fmt::Display for Saving {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} ({} files, {:.1} MiB)",
            self.setting,
            self.what,
            self.files,
            self.bytes as f64 / (1u64 << 20) as f64
        )
    }
}
