//! Everything atomicbuild knows about each output format, in one table:
//! its name (in manifests and `--format`), the file name it gets, the writer
//! that makes it and which compressions it takes. Manifest checks, the
//! formats stage, `convert` and uploads all look formats up here.

use serde::{Deserialize, Serialize};

use super::DiskFormat;

/// One image format to write.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
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
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
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

impl Compression {
    /// `none`, `xz`, `zstd`, `deflate`.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
            Compression::Deflate => "deflate",
        }
    }

    /// The levels this compressor takes.
    pub fn levels(self) -> (i64, i64) {
        match self {
            Compression::Xz => (0, 9),
            Compression::Deflate => (1, 9),
            _ => (1, 19),
        }
    }
}

/// What atomicbuild knows about one format.
pub struct FormatInfo {
    /// The format.
    pub format: Format,
    /// Its name in manifests and on the command line.
    pub name: &'static str,
    /// The file name after `NAME-VERSION.` (before any `.xz`/`.zst`).
    pub suffix: &'static str,
    /// The writer.
    pub disk: DiskFormat,
    /// Whether compression happens inside the file (qcow2 clusters) rather
    /// than as an outer `.xz`/`.zst` stream.
    pub inner_compression: bool,
    /// The compressions it takes besides none, and why not the others.
    pub compressions: &'static [Compression],
    /// Why a compression it does not take is refused, and what to do.
    pub refusal: &'static str,
    /// QEMU's block driver for the file (`None`: not a disk QEMU boots).
    pub qemu_driver: Option<&'static str>,
}

const OUTER: &[Compression] = &[Compression::Xz, Compression::Zstd];
const OUTER_REFUSAL: &str =
    "\"deflate\" is for qcow2 clusters; use \"xz\" or \"zstd\" for other formats";

/// Every format, in the order the manifest reference lists them.
pub const FORMATS: &[FormatInfo] = &[
    FormatInfo {
        format: Format::Raw,
        name: "raw",
        suffix: "raw",
        disk: DiskFormat::Raw,
        inner_compression: false,
        compressions: &[],
        refusal: "the raw image is kept uncompressed (it is what the other formats are made from); add another output, e.g. format = \"vhd\" with compression = \"xz\"",
        qemu_driver: Some("raw"),
    },
    FormatInfo {
        format: Format::Qcow2,
        name: "qcow2",
        suffix: "qcow2",
        disk: DiskFormat::Qcow2,
        inner_compression: true,
        compressions: &[Compression::Zstd, Compression::Deflate],
        refusal: "qcow2 compresses its clusters itself: use \"zstd\" (smaller, QEMU >= 5.1) or \"deflate\" (every reader)",
        qemu_driver: Some("qcow2"),
    },
    FormatInfo {
        format: Format::Vmdk,
        name: "vmdk",
        suffix: "vmdk",
        disk: DiskFormat::VmdkStream,
        inner_compression: false,
        compressions: OUTER,
        refusal: OUTER_REFUSAL,
        qemu_driver: Some("vmdk"),
    },
    FormatInfo {
        format: Format::VmdkSparse,
        name: "vmdk-sparse",
        suffix: "sparse.vmdk",
        disk: DiskFormat::VmdkSparse,
        inner_compression: false,
        compressions: OUTER,
        refusal: OUTER_REFUSAL,
        qemu_driver: Some("vmdk"),
    },
    FormatInfo {
        format: Format::Vdi,
        name: "vdi",
        suffix: "vdi",
        disk: DiskFormat::Vdi,
        inner_compression: false,
        compressions: OUTER,
        refusal: OUTER_REFUSAL,
        qemu_driver: Some("vdi"),
    },
    FormatInfo {
        format: Format::Vhd,
        name: "vhd",
        suffix: "vhd",
        disk: DiskFormat::VhdFixed,
        inner_compression: false,
        compressions: OUTER,
        refusal: OUTER_REFUSAL,
        qemu_driver: Some("vpc"),
    },
    FormatInfo {
        format: Format::VhdDynamic,
        name: "vhd-dynamic",
        suffix: "dynamic.vhd",
        disk: DiskFormat::VhdDynamic,
        inner_compression: false,
        compressions: OUTER,
        refusal: OUTER_REFUSAL,
        qemu_driver: Some("vpc"),
    },
    FormatInfo {
        format: Format::Ova,
        name: "ova",
        suffix: "ova",
        disk: DiskFormat::Ova,
        inner_compression: false,
        compressions: &[],
        refusal: "an OVA is read as it is by VirtualBox and VMware (its disk is already compressed); remove compression",
        qemu_driver: None,
    },
];

impl Format {
    /// This format's row of [`FORMATS`].
    pub fn info(self) -> &'static FormatInfo {
        FORMATS
            .iter()
            .find(|i| i.format == self)
            .expect("every format has a row")
    }

    /// Its name, as written in manifests.
    pub fn name(self) -> &'static str {
        self.info().name
    }

    /// `Ok` when `c` fits this format, else why not.
    pub fn check_compression(self, c: Compression) -> Result<(), &'static str> {
        let i = self.info();
        match c == Compression::None || i.compressions.contains(&c) {
            true => Ok(()),
            false => Err(i.refusal),
        }
    }

    /// The outer stream `c` wraps this format in (none for qcow2, whose
    /// clusters are compressed inside).
    pub fn outer(self, c: Compression) -> Compression {
        match self.info().inner_compression {
            true => Compression::None,
            false => c,
        }
    }

    /// The file name of an output `stem.SUFFIX[.xz|.zst]`.
    pub fn file_name(self, c: Compression, stem: &str) -> String {
        let outer = match self.outer(c) {
            Compression::Xz => ".xz",
            Compression::Zstd => ".zst",
            _ => "",
        };
        format!("{stem}.{}{outer}", self.info().suffix)
    }

    /// The format a file name says (its suffix; `.raw` for anything else
    /// that is not compressed).
    pub fn of_file(name: &str) -> Option<Format> {
        FORMATS
            .iter()
            .filter(|i| name.ends_with(&format!(".{}", i.suffix)))
            .max_by_key(|i| i.suffix.len())
            .map(|i| i.format)
    }

    /// A short name such as `qcow2+zstd`.
    pub fn label(self, c: Compression) -> String {
        match c {
            Compression::None => self.name().to_string(),
            c => format!("{}+{}", self.name(), c.name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_serde_and_clap_names() {
        use clap::ValueEnum;
        for i in FORMATS {
            let json = serde_json::to_value(i.format).unwrap();
            assert_eq!(json.as_str(), Some(i.name));
            assert_eq!(i.format.to_possible_value().unwrap().get_name(), i.name);
        }
        assert_eq!(FORMATS.len(), Format::value_variants().len());
    }

    #[test]
    fn file_names_and_compressions() {
        assert_eq!(
            Format::VmdkSparse.file_name(Compression::Xz, "a-1"),
            "a-1.sparse.vmdk.xz"
        );
        assert_eq!(
            Format::Qcow2.file_name(Compression::Zstd, "a-1"),
            "a-1.qcow2"
        );
        assert_eq!(Format::Qcow2.label(Compression::Zstd), "qcow2+zstd");
        assert!(Format::Qcow2.check_compression(Compression::Xz).is_err());
        assert!(Format::Ova.check_compression(Compression::Zstd).is_err());
        assert!(Format::Vdi.check_compression(Compression::Deflate).is_err());
        assert!(Format::Vdi.check_compression(Compression::Xz).is_ok());
        assert!(Format::Raw.check_compression(Compression::None).is_ok());
        assert_eq!(Format::of_file("a-1.sparse.vmdk"), Some(Format::VmdkSparse));
        assert_eq!(Format::of_file("a-1.dynamic.vhd"), Some(Format::VhdDynamic));
        assert_eq!(Format::of_file("a-1.vhd"), Some(Format::Vhd));
        assert_eq!(Format::of_file("a-1.img"), None);
    }
}
