//! Grow the root partition and its ext4 filesystem to the end of the disk
//! (a cloud volume, a disk resized by its user, `qemu-img resize`), on every
//! boot, online. Fedora CoreOS does the same on first boot; doing it on every
//! boot also covers a disk enlarged later.
//!
//! The root partition is the last one of the image, so it grows in place:
//! the GPT's backup header and entries move to the new end of the disk, the
//! partition's last LBA follows, the protective MBR is widened, the kernel
//! is told the new partition size (`BLKPG_RESIZE_PARTITION`, which works on
//! a partition in use), and `resize2fs` grows the mounted filesystem. Every
//! step checks whether it is needed, so a boot without new space only reads
//! two sectors and a superblock.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

const GPT_SIGNATURE: &[u8; 8] = b"EFI PART";
/// Partitions end on a 1 MiB boundary, as the builder lays them out.
const ALIGN: u64 = 1 << 20;

fn crc32(bytes: &[u8]) -> u32 {
    crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC).checksum(bytes)
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// A GPT read from a disk: its primary header and entry array.
#[derive(Debug, Clone)]
pub struct Gpt {
    sector: u64,
    header: Vec<u8>,
    entries: Vec<u8>,
}

impl Gpt {
    /// Read and check (signature, both CRCs) the primary GPT of `disk`.
    pub fn read(disk: &File, sector: u64) -> Result<Gpt> {
        let mut header = vec![0u8; sector as usize];
        disk.read_exact_at(&mut header, sector)
            .context("reading the GPT header")?;
        if &header[..8] != GPT_SIGNATURE {
            bail!("no GPT on the disk (LBA 1 has no \"EFI PART\" signature)");
        }
        let size = le32(&header, 12) as usize;
        if !(92..=sector as usize).contains(&size) {
            bail!("the GPT header size {size} is invalid");
        }
        let mut h = header[..size].to_vec();
        put32(&mut h, 16, 0);
        if crc32(&h) != le32(&header, 16) {
            bail!("the primary GPT header's checksum is wrong");
        }
        let (count, esize) = (le32(&header, 80) as usize, le32(&header, 84) as usize);
        if esize < 128 || count == 0 || count * esize > 1 << 20 {
            bail!("the GPT entry array ({count} x {esize} bytes) is invalid");
        }
        let mut entries = vec![0u8; count * esize];
        disk.read_exact_at(&mut entries, le64(&header, 72) * sector)
            .context("reading the GPT entries")?;
        if crc32(&entries) != le32(&header, 88) {
            bail!("the GPT entry array's checksum is wrong");
        }
        header.truncate(size);
        Ok(Gpt {
            sector,
            header,
            entries,
        })
    }

    fn entry_size(&self) -> usize {
        le32(&self.header, 84) as usize
    }

    fn entry_sectors(&self) -> u64 {
        (self.entries.len() as u64).div_ceil(self.sector)
    }

    /// (first LBA, last LBA) of partition `number` (1-based), if used.
    pub fn partition(&self, number: u32) -> Option<(u64, u64)> {
        let es = self.entry_size();
        let e = self
            .entries
            .get((number as usize - 1) * es..number as usize * es)?;
        if e[..16].iter().all(|&b| b == 0) {
            return None;
        }
        Some((le64(e, 32), le64(e, 40)))
    }

    /// The used partition that ends last: (number, first LBA, last LBA).
    fn last_partition(&self) -> Option<(u32, u64, u64)> {
        let n = (self.entries.len() / self.entry_size()) as u32;
        (1..=n)
            .filter_map(|i| self.partition(i).map(|(a, b)| (i, a, b)))
            .max_by_key(|&(_, _, end)| end)
    }

    /// The disk's last LBA as the GPT records it (the backup header).
    pub fn backup_lba(&self) -> u64 {
        le64(&self.header, 32)
    }

    /// Where partition `number` would end if grown on a disk of `disk_bytes`
    /// (the last usable LBA, rounded down to [`ALIGN`]).
    pub fn grown_end(&self, disk_bytes: u64) -> u64 {
        let last_lba = disk_bytes / self.sector - 1;
        let last_usable = last_lba - self.entry_sectors() - 1;
        let per = ALIGN / self.sector;
        (last_usable + 1) / per * per - 1
    }

    /// Move the backup GPT to the end of a disk of `disk_bytes` and extend
    /// partition `number` (which must be the last one) to
    /// [`Gpt::grown_end`]; write both GPTs and the protective MBR. Returns the
    /// partition's new size in bytes, or `None` when nothing changes.
    pub fn grow(&mut self, disk: &File, disk_bytes: u64, number: u32) -> Result<Option<u64>> {
        let (first, end) = self
            .partition(number)
            .with_context(|| format!("the GPT has no partition {number}"))?;
        match self.last_partition() {
            Some((n, _, _)) if n == number => {}
            Some((n, ..)) => bail!(
                "partition {number} is not the last one (partition {n} follows it); it cannot grow in place"
            ),
            None => unreachable!("partition {number} exists"),
        }
        let last_lba = disk_bytes / self.sector - 1;
        if last_lba < self.backup_lba() {
            bail!(
                "the disk ({disk_bytes} bytes) is smaller than its GPT says (last LBA {}): it was truncated",
                self.backup_lba()
            );
        }
        let new_end = self.grown_end(disk_bytes);
        if last_lba == self.backup_lba() && new_end <= end {
            return Ok(None);
        }
        let new_end = new_end.max(end);
        let es = self.entry_size();
        let at = (number as usize - 1) * es;
        put64(&mut self.entries[at..at + es], 40, new_end);
        let entries_crc = crc32(&self.entries);
        let backup_entries = last_lba - self.entry_sectors();
        let mut primary = self.header.clone();
        put64(&mut primary, 32, last_lba); // alternate LBA
        put64(&mut primary, 48, backup_entries - 1); // last usable LBA
        put32(&mut primary, 88, entries_crc);
        let mut backup = primary.clone();
        put64(&mut backup, 24, last_lba); // my LBA
        put64(&mut backup, 32, 1); // alternate LBA
        put64(&mut backup, 72, backup_entries); // entries LBA
        for h in [&mut primary, &mut backup] {
            put32(h, 16, 0);
            let c = crc32(h);
            put32(h, 16, c);
        }
        let s = self.sector;
        // Backup first: until the primary is rewritten, firmware and the
        // kernel still find the old, consistent primary.
        disk.write_all_at(&self.entries, backup_entries * s)?;
        disk.write_all_at(&backup, last_lba * s)?;
        disk.write_all_at(&self.entries, le64(&primary, 72) * s)?;
        disk.write_all_at(&primary, s)?;
        protective_mbr(disk, last_lba)?;
        disk.sync_all().context("syncing the partition table")?;
        self.header = primary;
        Ok(Some((new_end - first + 1) * s))
    }
}

/// Widen the protective MBR's 0xEE partition to cover the disk.
fn protective_mbr(disk: &File, last_lba: u64) -> Result<()> {
    let mut mbr = [0u8; 512];
    disk.read_exact_at(&mut mbr, 0)?;
    if mbr[510..512] != [0x55, 0xAA] {
        return Ok(());
    }
    for i in 0..4 {
        let e = 446 + i * 16;
        if mbr[e + 4] == 0xEE {
            let size = last_lba.min(u64::from(u32::MAX)) as u32;
            mbr[e + 12..e + 16].copy_from_slice(&size.to_le_bytes());
            disk.write_all_at(&mbr, 0)?;
        }
    }
    Ok(())
}

/// The partition holding `mountpoint`: (partition device, disk device,
/// partition number), from sysfs.
pub fn partition_of(mountpoint: &Path) -> Result<(PathBuf, PathBuf, u32)> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(mountpoint)
        .with_context(|| format!("cannot stat {}", mountpoint.display()))?
        .dev();
    let (maj, min) = (libc::major(dev), libc::minor(dev));
    let sys = PathBuf::from(format!("/sys/dev/block/{maj}:{min}"));
    let part = std::fs::read_to_string(sys.join("partition"))
        .with_context(|| {
            format!(
                "{} ({maj}:{min}) is not on a disk partition",
                mountpoint.display()
            )
        })?
        .trim()
        .parse()
        .context("reading the partition number")?;
    let real = std::fs::canonicalize(&sys)?;
    let name = |p: &Path| -> Result<PathBuf> {
        Ok(Path::new("/dev").join(p.file_name().context("sysfs path without a name")?))
    };
    let disk = real.parent().context("a partition without a disk")?;
    Ok((name(&real)?, name(disk)?, part))
}

const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;
const BLKSSZGET: libc::c_ulong = 0x1268;
const BLKPG: libc::c_ulong = 0x1269;
const BLKPG_RESIZE_PARTITION: libc::c_int = 3;

#[repr(C)]
struct BlkpgPartition {
    start: libc::c_longlong,
    length: libc::c_longlong,
    pno: libc::c_int,
    devname: [libc::c_char; 64],
    volname: [libc::c_char; 64],
}

#[repr(C)]
struct BlkpgIoctlArg {
    op: libc::c_int,
    flags: libc::c_int,
    datalen: libc::c_int,
    data: *mut libc::c_void,
}

/// Size in bytes and logical sector size of a block device or file.
pub fn device_size(f: &File) -> Result<(u64, u64)> {
    let md = f.metadata()?;
    if md.is_file() {
        return Ok((md.len(), 512));
    }
    let (mut bytes, mut sector) = (0u64, 0 as libc::c_int);
    // SAFETY: ioctls that write one integer into the pointed-to variable.
    unsafe {
        if libc::ioctl(f.as_raw_fd(), BLKGETSIZE64 as _, &mut bytes) != 0
            || libc::ioctl(f.as_raw_fd(), BLKSSZGET as _, &mut sector) != 0
        {
            return Err(std::io::Error::last_os_error()).context("reading the disk's size");
        }
    }
    Ok((bytes, sector as u64))
}

/// Tell the kernel that partition `number` of `disk` now has `length` bytes.
fn resize_in_kernel(disk: &File, number: u32, start: u64, length: u64) -> Result<()> {
    let mut p = BlkpgPartition {
        start: start as libc::c_longlong,
        length: length as libc::c_longlong,
        pno: number as libc::c_int,
        devname: [0; 64],
        volname: [0; 64],
    };
    let mut arg = BlkpgIoctlArg {
        op: BLKPG_RESIZE_PARTITION,
        flags: 0,
        datalen: std::mem::size_of::<BlkpgPartition>() as libc::c_int,
        data: &mut p as *mut BlkpgPartition as *mut libc::c_void,
    };
    // SAFETY: BLKPG with a valid argument structure that outlives the call.
    if unsafe { libc::ioctl(disk.as_raw_fd(), BLKPG as _, &mut arg) } != 0 {
        return Err(std::io::Error::last_os_error())
            .context("telling the kernel the partition's new size (BLKPG)");
    }
    Ok(())
}

/// Bytes the ext4 filesystem on `dev` spans (from its superblock).
pub fn ext4_bytes(dev: &Path) -> Result<u64> {
    let f = File::open(dev).with_context(|| format!("cannot open {}", dev.display()))?;
    let mut sb = [0u8; 1024];
    f.read_exact_at(&mut sb, 1024)?;
    if sb[56..58] != [0x53, 0xEF] {
        bail!("{} holds no ext2/3/4 filesystem", dev.display());
    }
    let blocks = u64::from(le32(&sb, 4)) | u64::from(le32(&sb, 0x150)) << 32;
    Ok(blocks << (10 + le32(&sb, 24)))
}

/// Grow the partition under `mountpoint` and its filesystem; a line saying
/// what happened.
pub fn grow(mountpoint: &Path) -> Result<String> {
    let (part_dev, disk_dev, number) = partition_of(mountpoint)?;
    let disk = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&disk_dev)
        .with_context(|| format!("cannot open {}", disk_dev.display()))?;
    let (bytes, sector) = device_size(&disk)?;
    let mut gpt = Gpt::read(&disk, sector)?;
    let (first, _) = gpt.partition(number).context("partition not in the GPT")?;
    let mut said = Vec::new();
    if let Some(len) = gpt.grow(&disk, bytes, number)? {
        resize_in_kernel(&disk, number, first * sector, len)?;
        said.push(format!("{} grown to {} MiB", part_dev.display(), len >> 20));
    }
    let part_bytes = {
        let (_, end) = gpt.partition(number).expect("checked above");
        (end - first + 1) * sector
    };
    let fs_bytes = ext4_bytes(&part_dev)?;
    if fs_bytes + ALIGN < part_bytes {
        crate::cmd::run(&["resize2fs", &part_dev.to_string_lossy()])?;
        said.push(format!(
            "its filesystem grown from {} to {} MiB",
            fs_bytes >> 20,
            ext4_bytes(&part_dev)? >> 20
        ));
    }
    Ok(if said.is_empty() {
        format!(
            "{} already fills the disk ({} MiB)",
            part_dev.display(),
            part_bytes >> 20
        )
    } else {
        said.join("; ")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_matches_the_ieee_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    fn sh(cmd: &str) -> String {
        let o = std::process::Command::new("sh")
            .args(["-c", cmd])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// A 64 MiB disk image with the builder's four partitions, the last
    /// one ending 1 MiB before the end, written by sfdisk (not by us).
    fn disk_image(p: &Path) {
        sh(&format!(
            "truncate -s 64M {0} && printf 'label: gpt\\nsize=1MiB\\nsize=4MiB\\nsize=4MiB\\nsize=53MiB\\n' | sfdisk --quiet {0}",
            p.display()
        ));
    }

    fn sfdisk_parts(p: &Path) -> Vec<(u64, u64)> {
        let j: serde_json::Value =
            serde_json::from_str(&sh(&format!("sfdisk -J {}", p.display()))).unwrap();
        j["partitiontable"]["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["start"].as_u64().unwrap(), p["size"].as_u64().unwrap()))
            .collect()
    }

    #[test]
    fn grows_the_last_partition_as_sfdisk_sees_it() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("disk.img");
        disk_image(&p);
        let before = sfdisk_parts(&p);
        let f = OpenOptions::new().read(true).write(true).open(&p).unwrap();
        let mut g = Gpt::read(&f, 512).unwrap();
        // Nothing to do on the disk as written.
        assert_eq!(g.grow(&f, 64 << 20, 4).unwrap(), None);
        f.set_len(96 << 20).unwrap();
        let len = g.grow(&f, 96 << 20, 4).unwrap().unwrap();
        assert_eq!(len, (96 - 1 - 10) << 20);
        // sfdisk finds both headers consistent and the partition grown.
        let verify = sh(&format!("sfdisk --verify {} 2>&1", p.display()));
        assert!(!verify.contains("GPT"), "{verify}");
        let after = sfdisk_parts(&p);
        assert_eq!(after[..3], before[..3]);
        assert_eq!(after[3].0, before[3].0);
        assert_eq!(after[3].1 * 512, len);
        // Idempotent, also for a fresh read.
        let mut again = Gpt::read(&f, 512).unwrap();
        assert_eq!(again.backup_lba(), (96 << 11) - 1);
        assert_eq!(again.grow(&f, 96 << 20, 4).unwrap(), None);
        // Only the last partition grows in place; a shrunk disk is refused.
        f.set_len(128 << 20).unwrap();
        let e = again.grow(&f, 128 << 20, 3).unwrap_err().to_string();
        assert!(e.contains("not the last one"), "{e}");
        let e = again.grow(&f, 80 << 20, 4).unwrap_err().to_string();
        assert!(e.contains("truncated"), "{e}");
    }

    #[test]
    fn ext4_size_comes_from_the_superblock() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("fs.img");
        sh(&format!("mke2fs -q -t ext4 -F {} 24M", p.display()));
        assert_eq!(ext4_bytes(&p).unwrap(), 24 << 20);
        let e = ext4_bytes(Path::new("/dev/null")).unwrap_err().to_string();
        assert!(!e.is_empty());
    }

    #[test]
    fn a_disk_without_gpt_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("disk");
        std::fs::write(&p, vec![0u8; 1 << 20]).unwrap();
        let e = Gpt::read(&File::open(&p).unwrap(), 512).unwrap_err();
        assert!(e.to_string().contains("no GPT"), "{e}");
    }
}
