//! Disk stage: a bootable GPT disk image written into a sparse file with no
//! loop devices and no mounts.
//!
//! Layout: p1 BIOS boot (GRUB core.img), p2 EFI system partition (FAT,
//! written with `fatfs`), p3 /boot (ext4, `mke2fs -d -E offset=`), p4 root
//! (ext4, the OSTree sysroot). GRUB for UEFI and BIOS is built with
//! `grub-mkimage` and placed by this module; grub.cfg is generated from the
//! BLS entries OSTree wrote.

pub mod bls;
pub mod esp;
pub mod ext4;
pub mod grub;
pub mod partition;
pub mod slice;

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::stage::deploy::Deployed;
use crate::stage::Ctx;

/// Bytes per MiB.
pub const MIB: u64 = 1 << 20;
/// Logical sector size of the image.
pub const SECTOR: u64 = 512;

/// One partition of the image.
#[derive(Debug, Clone, Serialize)]
pub struct Part {
    /// 1-based GPT index.
    pub number: u32,
    /// GPT partition name (and filesystem label).
    pub name: &'static str,
    /// Byte offset of the first sector.
    pub offset: u64,
    /// Size in bytes.
    pub size: u64,
    /// GPT type GUID.
    pub type_guid: String,
    /// GPT unique partition GUID.
    pub guid: String,
    /// Filesystem written into it ("" for raw boot code).
    pub filesystem: &'static str,
    /// Filesystem UUID or FAT volume id, when there is a filesystem.
    pub fs_id: String,
}

/// The partition layout of an image.
#[derive(Debug, Clone, Serialize)]
pub struct Layout {
    /// Whole-disk size in bytes.
    pub size: u64,
    /// GPT disk GUID.
    pub disk_guid: String,
    /// Partitions in order.
    pub partitions: Vec<Part>,
}

impl Layout {
    /// The partition called `name`.
    pub fn part(&self, name: &str) -> &Part {
        self.partitions
            .iter()
            .find(|p| p.name == name)
            .expect("layout has every partition")
    }
}

/// A UUID derived from `seed` and `what`: stable for the same manifest, and
/// different for each purpose (RFC 4122 version 4 bits set).
pub fn derived_uuid(seed: &str, what: &str) -> uuid::Uuid {
    let h = Sha256::digest(format!("atomicbuild:{seed}:{what}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    uuid::Builder::from_random_bytes(b).into_uuid()
}

/// Compute the layout for a disk spec; `seed` derives every GUID.
pub fn layout(size: u64, esp: u64, boot: u64, seed: &str) -> Layout {
    use gpt::partition_types as t;
    let bios = MIB;
    let mut off = MIB;
    let mut parts = Vec::new();
    let root_size = size - MIB - bios - esp - boot - MIB;
    for (number, name, sz, ty, fs) in [
        (1u32, "bios", bios, t::BIOS.guid, ""),
        (2, "esp", esp, t::EFI.guid, "vfat"),
        (3, "boot", boot, t::LINUX_FS.guid, "ext4"),
        (4, "root", root_size, t::LINUX_ROOT_X64.guid, "ext4"),
    ] {
        let fs_id = match fs {
            "" => String::new(),
            "vfat" => {
                let u = derived_uuid(seed, "esp-volume-id");
                let b = u.as_bytes();
                format!("{:02X}{:02X}-{:02X}{:02X}", b[0], b[1], b[2], b[3])
            }
            _ => derived_uuid(seed, &format!("fs-{name}")).to_string(),
        };
        parts.push(Part {
            number,
            name,
            offset: off,
            size: sz,
            type_guid: ty.to_string().to_uppercase(),
            guid: derived_uuid(seed, &format!("part-{name}")).to_string(),
            filesystem: fs,
            fs_id,
        });
        off += sz;
    }
    Layout {
        size,
        disk_guid: derived_uuid(seed, "disk").to_string(),
        partitions: parts,
    }
}

/// The layout of the manifest's disk.
pub fn layout_for(m: &crate::manifest::Manifest) -> Layout {
    layout(
        m.disk.size,
        m.disk.esp_size,
        m.disk.boot_size,
        &m.image_seed(),
    )
}

/// A written disk image (still under its temporary name).
pub struct DiskImage {
    /// Path of the finished, synced image file.
    pub path: PathBuf,
    /// Its layout.
    pub layout: Layout,
}

/// Write the raw image for `deployed` into `path`.
pub fn run(ctx: &Ctx, deployed: &Deployed, path: &Path) -> Result<DiskImage> {
    let m = ctx.manifest;
    let stage = ctx.progress.stage("disk");
    let lay = layout_for(m);

    // The /boot partition gets the sysroot's boot/ contents; the root
    // filesystem keeps an empty /boot as its mount point.
    stage.message("generating grub.cfg from the OSTree boot entries");
    let bootsrc = deployed.sysroot.join("boot");
    let entries = bls::read_entries(&bootsrc)?;
    let cfg = grub::config_from_entries(&entries)?;
    let loader = fs::canonicalize(bootsrc.join("loader")).context("resolving boot/loader")?;
    fs::write(loader.join("grub.cfg"), cfg)?;
    let bootfs = ctx.workdir.join("bootfs");
    crate::fsutil::remove_tree(&bootfs)?;
    fs::rename(&bootsrc, &bootfs)?;
    fs::create_dir(&bootsrc)?;

    let root_need = crate::fsutil::tree_size(&deployed.sysroot)?;
    let root_part = lay.part("root");
    if root_need + root_need / 5 + 128 * MIB > root_part.size {
        bail!(
            "the root filesystem needs about {} MiB but the root partition is {} MiB; raise disk.size in the manifest",
            (root_need + root_need / 5 + 128 * MIB) / MIB,
            root_part.size / MIB
        );
    }

    stage.message("partitioning");
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.set_len(lay.size)?;
    partition::write_gpt(file.try_clone()?, &lay)?;

    stage.message("building GRUB");
    let grubdir = ctx.workdir.join("grub");
    fs::create_dir_all(&grubdir)?;
    let efi = grub::mkimage_efi(&grubdir)?;
    let bios = grub::mkimage_bios(&grubdir)?;

    stage.message("writing the EFI system partition");
    esp::write(&file, lay.part("esp"), &efi, ctx.source_date_epoch)?;
    stage.message("installing GRUB for BIOS");
    grub::install_bios(&file, lay.part("bios"), &bios)?;
    drop(file);

    stage.message("writing /boot (ext4)");
    ext4::write(path, lay.part("boot"), &bootfs, ctx.source_date_epoch)?;
    stage.message("writing the root filesystem (ext4)");
    ext4::write(
        path,
        lay.part("root"),
        &deployed.sysroot,
        ctx.source_date_epoch,
    )?;

    File::open(path)?.sync_all()?;
    stage.finish(&format!("{} MiB", lay.size / MIB));
    Ok(DiskImage {
        path: path.to_owned(),
        layout: lay,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_aligned_contiguous_and_fills_the_disk() {
        let l = layout(4 << 30, 64 * MIB, 512 * MIB, "seed");
        assert_eq!(l.partitions[0].offset, MIB);
        for w in l.partitions.windows(2) {
            assert_eq!(w[0].offset + w[0].size, w[1].offset);
        }
        let last = l.partitions.last().unwrap();
        assert_eq!(last.offset + last.size, l.size - MIB);
        assert!(l.partitions.iter().all(|p| p.offset % MIB == 0));
    }

    #[test]
    fn guids_are_stable_per_seed_and_distinct() {
        let a = layout(4 << 30, 64 * MIB, 512 * MIB, "seed");
        let b = layout(4 << 30, 64 * MIB, 512 * MIB, "seed");
        let c = layout(4 << 30, 64 * MIB, 512 * MIB, "other");
        assert_eq!(a.disk_guid, b.disk_guid);
        assert_ne!(a.disk_guid, c.disk_guid);
        let mut g: Vec<_> = a.partitions.iter().map(|p| &p.guid).collect();
        g.dedup();
        assert_eq!(g.len(), 4);
    }
}
