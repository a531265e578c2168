//! GRUB for both firmwares, built with `grub-mkimage` and placed in Rust.
//!
//! UEFI: an x86_64-efi image with an embedded config that finds the `boot`
//! filesystem by label and loads `/loader/grub.cfg` (OSTree's grub2 layout;
//! `loader` is the symlink OSTree flips on upgrade).
//! BIOS: what `grub-bios-setup` does, done directly on the image file (it
//! refuses image files): core.img at the BIOS boot partition's first LBA,
//! its first blocklist pointed at the following sector, boot.img's kernel
//! sector pointed at core.img and its code copied into the MBR, keeping the
//! partition table.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::SECTOR;
use crate::model::Part;
use common::cmd::Cmd;

const EMBEDDED_CFG: &str = "search --no-floppy --label boot --set=root\nset prefix=($root)/grub\nconfigfile ($root)/loader/grub.cfg\n";

const COMMON_MODULES: &[&str] = &[
    "part_gpt",
    "ext2",
    "search",
    "search_label",
    "configfile",
    "normal",
    "linux",
    "echo",
    "test",
    "serial",
    "terminal",
    "gzio",
    "sleep",
    "loadenv",
];

/// Offsets in boot.img (GRUB's `boot.S`).
const BOOT_KERNEL_SECTOR: usize = 0x5c;
const BOOT_DRIVE_CHECK: usize = 0x66;
const BPB_START: usize = 0x3;
const BPB_END: usize = 0x5a;
const MBR_CODE_END: usize = 0x1b8;
/// Offset of the first blocklist's start sector in core.img's first sector
/// (GRUB's `diskboot.S`: the list sits at the end of the sector).
const DISKBOOT_FIRST_LIST_START: usize = 0x200 - 12;

fn grub_dir(platform: &str) -> PathBuf {
    PathBuf::from("/usr/lib/grub").join(platform)
}

fn mkimage(
    out_dir: &Path,
    platform: &str,
    format: &str,
    out: &str,
    extra: &[&str],
) -> Result<PathBuf> {
    let cfg = out_dir.join("embedded.cfg");
    std::fs::write(&cfg, EMBEDDED_CFG)?;
    let out = out_dir.join(out);
    Cmd::new("grub-mkimage")
        .args(["-O", format, "-p", "/grub", "-d"])
        .arg(grub_dir(platform))
        .arg("-c")
        .arg(&cfg)
        .arg("-o")
        .arg(&out)
        .args(COMMON_MODULES)
        .args(extra)
        .run()
        .with_context(|| format!("building the GRUB {platform} image"))?;
    Ok(out)
}

/// Build BOOTX64.EFI.
pub fn mkimage_efi(dir: &Path) -> Result<PathBuf> {
    mkimage(
        dir,
        "x86_64-efi",
        "x86_64-efi",
        "BOOTX64.EFI",
        &["fat", "efi_gop", "all_video"],
    )
}

/// Build the BIOS core.img.
pub fn mkimage_bios(dir: &Path) -> Result<PathBuf> {
    mkimage(dir, "i386-pc", "i386-pc", "core.img", &["biosdisk"])
}

/// Place core.img into the BIOS boot partition and boot.img into the MBR.
pub fn install_bios(file: &File, part: &Part, core_img: &Path) -> Result<()> {
    let mut core = std::fs::read(core_img)?;
    if core.len() as u64 > part.size {
        bail!(
            "GRUB core.img ({} bytes) does not fit the BIOS boot partition ({} bytes)",
            core.len(),
            part.size
        );
    }
    if core.len() < 512 {
        bail!("GRUB core.img is implausibly small ({} bytes)", core.len());
    }
    let lba = part.offset / SECTOR;
    core[DISKBOOT_FIRST_LIST_START..DISKBOOT_FIRST_LIST_START + 8]
        .copy_from_slice(&(lba + 1).to_le_bytes());
    file.write_all_at(&core, part.offset)
        .context("writing core.img")?;

    let boot_img = grub_dir("i386-pc").join("boot.img");
    let mut boot =
        std::fs::read(&boot_img).with_context(|| format!("reading {}", boot_img.display()))?;
    if boot.len() != 512 {
        bail!(
            "{} is {} bytes, expected 512",
            boot_img.display(),
            boot.len()
        );
    }
    let mut mbr = [0u8; 512];
    file.read_exact_at(&mut mbr, 0)?;
    // Keep whatever BPB the disk has, as grub-bios-setup does.
    boot[BPB_START..BPB_END].copy_from_slice(&mbr[BPB_START..BPB_END]);
    boot[BOOT_KERNEL_SECTOR..BOOT_KERNEL_SECTOR + 8].copy_from_slice(&lba.to_le_bytes());
    // A hard disk: trust the BIOS drive number less than GRUB's default.
    boot[BOOT_DRIVE_CHECK] = 0x90;
    boot[BOOT_DRIVE_CHECK + 1] = 0x90;
    mbr[..MBR_CODE_END].copy_from_slice(&boot[..MBR_CODE_END]);
    file.write_all_at(&mbr, 0)
        .context("writing the MBR boot code")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bios_install_patches_sector_pointers_and_keeps_partition_table() {
        if !grub_dir("i386-pc").join("boot.img").exists() {
            eprintln!("grub-pc-bin not installed; .ci/run installs it");
            return;
        }
        let f = tempfile::tempfile().unwrap();
        f.set_len(4 << 20).unwrap();
        let mut mbr = [0u8; 512];
        mbr[0x1be..0x1ce].copy_from_slice(&[0xEE; 16]);
        mbr[510] = 0x55;
        mbr[511] = 0xAA;
        f.write_all_at(&mbr, 0).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let core = dir.path().join("core.img");
        std::fs::write(&core, vec![0xAB; 4096]).unwrap();
        let part = Part {
            number: 1,
            name: "bios".into(),
            offset: 1 << 20,
            size: 1 << 20,
            type_guid: String::new(),
            guid: String::new(),
            filesystem: String::new(),
            fs_id: String::new(),
        };
        install_bios(&f, &part, &core).unwrap();
        let mut out = [0u8; 512];
        f.read_exact_at(&mut out, 0).unwrap();
        assert_eq!(
            u64::from_le_bytes(out[0x5c..0x64].try_into().unwrap()),
            2048
        );
        assert_eq!(&out[0x1be..0x1ce], &[0xEE; 16]);
        assert_eq!(&out[510..], &[0x55, 0xAA]);
        let mut sec = [0u8; 512];
        f.read_exact_at(&mut sec, 1 << 20).unwrap();
        assert_eq!(
            u64::from_le_bytes(sec[0x1f4..0x1fc].try_into().unwrap()),
            2049
        );
    }
}
