//! Plain data that several layers share, and nothing that does work: the
//! firmware kinds, the disk layout, the build metadata (written by a build,
//! read back by the next one, by `verify` and by uploads), and the collector
//! of manifest problems that every section's checks report into.
//!
//! This module depends on no other module of the crate.

mod layout;
mod lean;
pub(crate) mod metadata;
mod problems;
mod size;

pub use layout::{Layout, Part};
pub use lean::{Lean, ModuleCompression, ModuleProfile, Saving};
pub use metadata::{
    Artifact, BootTime, KernelInfo, ManifestRef, Metadata, OstreeInfo, OutputTime, Package,
    Privileged, StageTime, UploadRecord, Waived,
};
pub use problems::{Problems, Scope};
pub use size::{parse_size, Size};

/// Firmware a virtual machine or cloud image boots with.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Firmware {
    /// OVMF (UEFI), booting GRUB's BOOTX64.EFI from the ESP.
    Uefi,
    /// SeaBIOS, booting GRUB from the MBR and BIOS boot partition.
    Bios,
}

impl Firmware {
    /// `uefi` or `bios`.
    pub fn name(self) -> &'static str {
        match self {
            Firmware::Uefi => "uefi",
            Firmware::Bios => "bios",
        }
    }
}

/// The firmware an AMI boots with.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize, serde::Serialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum BootMode {
    /// UEFI only.
    Uefi,
    /// BIOS only.
    LegacyBios,
    /// UEFI where the instance type has it, BIOS otherwise.
    UefiPreferred,
}

impl BootMode {
    /// The value of RegisterImage's BootMode parameter.
    pub fn as_str(self) -> &'static str {
        match self {
            BootMode::Uefi => "uefi",
            BootMode::LegacyBios => "legacy-bios",
            BootMode::UefiPreferred => "uefi-preferred",
        }
    }
}

/// Byte offset in `src` → 1-based (line, column).
pub fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(src.len());
    let before = &src[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map_or(offset, |n| offset - n - 1) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("ab", 99), (1, 3));
    }
}
