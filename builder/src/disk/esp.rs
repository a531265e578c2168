//! The EFI system partition: a FAT filesystem written with the `fatfs`
//! crate straight into the image (this kernel cannot even mount vfat),
//! holding GRUB as the removable-media loader `/EFI/BOOT/BOOTX64.EFI`.
//! Volume id and timestamps are fixed, so the bytes are reproducible.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

use super::slice::Slice;
use crate::model::Part;

/// Timestamps for every FAT entry: SOURCE_DATE_EPOCH as a calendar date.
#[derive(Debug)]
struct FixedTime(fatfs::DateTime);

impl fatfs::TimeProvider for FixedTime {
    fn get_current_date(&self) -> fatfs::Date {
        self.0.date
    }
    fn get_current_date_time(&self) -> fatfs::DateTime {
        self.0
    }
}

fn fat_time(epoch: u64) -> fatfs::DateTime {
    // FAT cannot represent dates before 1980.
    let epoch = epoch.max(315_532_800);
    let (y, m, d) = common::units::civil_from_days((epoch / 86_400) as i64);
    let s = epoch % 86_400;
    fatfs::DateTime {
        date: fatfs::Date {
            year: y.min(2107) as u16,
            month: m as u16,
            day: d as u16,
        },
        time: fatfs::Time {
            hour: (s / 3600) as u16,
            min: (s / 60 % 60) as u16,
            sec: (s % 60) as u16,
            millis: 0,
        },
    }
}

/// Format `part` as FAT and write `efi_binary` as /EFI/BOOT/BOOTX64.EFI.
pub fn write(file: &File, part: &Part, efi_binary: &Path, epoch: u64) -> Result<()> {
    let id = u32::from_str_radix(&part.fs_id.replace('-', ""), 16)?;
    let label = *b"EFI-SYSTEM ";
    fatfs::format_volume(
        Slice::new(file, part.offset, part.size),
        fatfs::FormatVolumeOptions::new()
            .volume_id(id)
            .volume_label(label),
    )
    .context("formatting the EFI system partition")?;
    let tp: &'static FixedTime = Box::leak(Box::new(FixedTime(fat_time(epoch))));
    let fs = fatfs::FileSystem::new(
        Slice::new(file, part.offset, part.size),
        fatfs::FsOptions::new()
            .time_provider(tp)
            .update_accessed_date(false),
    )
    .context("opening the new EFI system partition")?;
    let data =
        std::fs::read(efi_binary).with_context(|| format!("reading {}", efi_binary.display()))?;
    {
        let boot = fs.root_dir().create_dir("EFI")?.create_dir("BOOT")?;
        let mut f = boot.create_file("BOOTX64.EFI")?;
        f.truncate()?;
        f.write_all(&data).context("writing BOOTX64.EFI")?;
        f.flush()?;
    }
    fs.unmount().context("closing the EFI system partition")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn esp_reads_back_with_loader_and_fixed_id() {
        let dir = tempfile::tempdir().unwrap();
        let efi = dir.path().join("x.efi");
        std::fs::write(&efi, b"MZ fake loader for the FAT test").unwrap();
        let f = tempfile::tempfile().unwrap();
        let part = Part {
            number: 2,
            name: "esp".into(),
            offset: 1 << 20,
            size: 40 << 20,
            type_guid: String::new(),
            guid: String::new(),
            filesystem: "vfat".into(),
            fs_id: "1234-ABCD".into(),
        };
        f.set_len(part.offset + part.size + (1 << 20)).unwrap();
        write(&f, &part, &efi, 1_700_000_000).unwrap();
        let fs = fatfs::FileSystem::new(
            Slice::new(&f, part.offset, part.size),
            fatfs::FsOptions::new(),
        )
        .unwrap();
        assert_eq!(fs.volume_id(), 0x1234ABCD);
        let mut s = Vec::new();
        fs.root_dir()
            .open_file("EFI/BOOT/BOOTX64.EFI")
            .unwrap()
            .read_to_end(&mut s)
            .unwrap();
        assert_eq!(s, b"MZ fake loader for the FAT test");
    }
}
