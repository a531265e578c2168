//! The manifest's `[disk]` table: as written, checked, and as the disk
//! writer takes it.

use serde::Deserialize;

use super::MIB;
use crate::model::{Scope, Size};

/// Minimum root filesystem the layout leaves room for.
pub const MIN_ROOT: u64 = 1 << 30;
/// GPT headers, the BIOS boot partition and alignment take this much.
pub const LAYOUT_OVERHEAD: u64 = 4 * MIB;

/// `[disk]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // fields: README's manifest reference
pub struct RawDisk {
    pub size: Option<Size>,
    pub esp_size: Option<Size>,
    pub boot_size: Option<Size>,
}

/// Disk geometry in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct DiskSpec {
    /// Whole disk.
    pub size: u64,
    /// EFI system partition.
    pub esp_size: u64,
    /// /boot partition.
    pub boot_size: u64,
}

/// Check `[disk]` (problems go to `p`, the `disk` scope); defaults filled.
pub fn check(d: RawDisk, p: &mut Scope) -> Option<DiskSpec> {
    let size = d.size.map_or(4 << 30, |s| s.0);
    let esp_size = d.esp_size.map_or(64 * MIB, |s| s.0);
    let boot_size = d.boot_size.map_or(512 * MIB, |s| s.0);
    let mut ok = true;
    for (field, v, min) in [
        (
            "size",
            size,
            MIN_ROOT + LAYOUT_OVERHEAD + 32 * MIB + 128 * MIB,
        ),
        ("esp_size", esp_size, 32 * MIB),
        ("boot_size", boot_size, 128 * MIB),
    ] {
        if v % MIB != 0 {
            p.bad(field, format!("{v} bytes is not a whole number of MiB; partitions are MiB-aligned (write e.g. \"{}MiB\")", v.div_ceil(MIB)));
            ok = false;
        } else if v < min {
            p.bad(
                field,
                format!(
                    "{} MiB is too small; the minimum is {} MiB",
                    v / MIB,
                    min / MIB
                ),
            );
            ok = false;
        }
    }
    if ok {
        let need = esp_size + boot_size + LAYOUT_OVERHEAD + MIN_ROOT;
        if need > size {
            p.bad(
                "size",
                format!(
                    "the partitions do not fit: ESP {} MiB + /boot {} MiB + {} MiB of GPT and BIOS boot + at least {} MiB of root = {} MiB, but disk.size is {} MiB; raise disk.size or shrink esp_size/boot_size",
                    esp_size / MIB, boot_size / MIB, LAYOUT_OVERHEAD / MIB, MIN_ROOT / MIB, need / MIB, size / MIB
                ),
            );
            ok = false;
        }
    }
    ok.then_some(DiskSpec {
        size,
        esp_size,
        boot_size,
    })
}
