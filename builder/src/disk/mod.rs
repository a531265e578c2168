//! Disk images: a bootable GPT disk written into a sparse file with no
//! loop devices and no mounts, from a layout and a deployed sysroot.
//!
//! Layout: p1 BIOS boot (GRUB core.img), p2 EFI system partition (FAT,
//! written with `fatfs`), p3 /boot (ext4, `mke2fs -d -E offset=`), p4 root
//! (ext4, the OSTree sysroot). GRUB for UEFI and BIOS is built with
//! `grub-mkimage` and placed by this module; grub.cfg is generated from the
//! BLS entries OSTree wrote.

pub mod esp;
pub mod ext4;
pub mod grub;
pub mod partition;
pub mod slice;
pub mod spec;

use std::fs::{self, File};
use std::path::Path;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::model::{Layout, Part};
pub use spec::DiskSpec;

/// Bytes per MiB.
pub const MIB: u64 = 1 << 20;
/// Logical sector size of the image.
pub const SECTOR: u64 = 512;

/// A UUID derived from `seed` and `what`: stable for the same manifest, and
/// different for each purpose (RFC 4122 version 4 bits set).
pub fn derived_uuid(seed: &str, what: &str) -> uuid::Uuid {
    let h = Sha256::digest(format!("atomicbuild:{seed}:{what}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    uuid::Builder::from_random_bytes(b).into_uuid()
}

/// Compute the layout for a disk spec; `seed` derives every GUID.
pub fn layout(spec: &DiskSpec, seed: &str) -> Layout {
    use gpt::partition_types as t;
    let (size, esp, boot) = (spec.size, spec.esp_size, spec.boot_size);
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
            name: name.to_string(),
            offset: off,
            size: sz,
            type_guid: ty.to_string().to_uppercase(),
            guid: derived_uuid(seed, &format!("part-{name}")).to_string(),
            filesystem: fs.to_string(),
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

/// What goes into an image.
pub struct DiskInputs<'a> {
    /// The partition layout.
    pub layout: &'a Layout,
    /// The deployed sysroot: the root partition's contents; its `boot/`
    /// becomes the /boot partition (and stays as an empty mount point).
    pub sysroot: &'a Path,
    /// Scratch space (GRUB images, the /boot tree).
    pub scratch: &'a Path,
    /// Timestamp of the filesystems (SOURCE_DATE_EPOCH).
    pub epoch: u64,
}

/// Write the bootable raw image for `inputs` into `path` (synced), saying
/// what it does through `say`.
pub fn write(inputs: &DiskInputs, path: &Path, say: &dyn Fn(&str)) -> Result<()> {
    let lay = inputs.layout;
    say("generating grub.cfg from the OSTree boot entries");
    let bootsrc = inputs.sysroot.join("boot");
    let entries = common::bls::read_entries(&bootsrc)?;
    let cfg = common::grub::config_from_entries(&entries)?;
    let loader = fs::canonicalize(bootsrc.join("loader")).context("resolving boot/loader")?;
    fs::write(loader.join("grub.cfg"), cfg)?;
    // GRUB's environment block (the boot counter): GRUB can rewrite a
    // file in place but not create one.
    let env = bootsrc.join(common::grub::GRUBENV);
    fs::create_dir_all(env.parent().expect("grubenv has a directory"))?;
    fs::write(&env, common::grub::envblk(&[])?)?;
    let bootfs = inputs.scratch.join("bootfs");
    crate::fsutil::remove_tree(&bootfs)?;
    fs::rename(&bootsrc, &bootfs)?;
    fs::create_dir(&bootsrc)?;

    let root_need = crate::fsutil::tree_size(inputs.sysroot)?;
    let root_part = lay.part("root");
    if root_need + root_need / 5 + 128 * MIB > root_part.size {
        bail!(
            "the root filesystem needs about {} MiB but the root partition is {} MiB; raise disk.size in the manifest",
            (root_need + root_need / 5 + 128 * MIB) / MIB,
            root_part.size / MIB
        );
    }

    say("partitioning");
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.set_len(lay.size)?;
    partition::write_gpt(file.try_clone()?, lay)?;

    say("building GRUB");
    let grubdir = inputs.scratch.join("grub");
    fs::create_dir_all(&grubdir)?;
    let efi = grub::mkimage_efi(&grubdir)?;
    let bios = grub::mkimage_bios(&grubdir)?;

    say("writing the EFI system partition");
    esp::write(&file, lay.part("esp"), &efi, inputs.epoch)?;
    say("installing GRUB for BIOS");
    grub::install_bios(&file, lay.part("bios"), &bios)?;
    drop(file);
    crate::failpoint::hit("disk.esp-written");

    say("writing /boot (ext4)");
    ext4::write(path, lay.part("boot"), &bootfs, inputs.epoch)?;
    say("writing the root filesystem (ext4)");
    ext4::write(path, root_part, inputs.sysroot, inputs.epoch)?;
    crate::failpoint::hit("disk.root-written");

    File::open(path)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn spec(size: u64) -> DiskSpec {
        DiskSpec {
            size,
            esp_size: 64 * MIB,
            boot_size: 512 * MIB,
        }
    }

    #[test]
    fn layout_is_aligned_contiguous_and_fills_the_disk() {
        let l = layout(&spec(4 << 30), "seed");
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
        let a = layout(&spec(4 << 30), "seed");
        let b = layout(&spec(4 << 30), "seed");
        let c = layout(&spec(4 << 30), "other");
        assert_eq!(a.disk_guid, b.disk_guid);
        assert_ne!(a.disk_guid, c.disk_guid);
        let mut g: Vec<_> = a.partitions.iter().map(|p| &p.guid).collect();
        g.dedup();
        assert_eq!(g.len(), 4);
    }
}
