//! VHD (Microsoft Virtual Hard Disk Image Format Specification 1.0)
//! writers: fixed (the raw disk padded to a whole MiB, as Azure requires,
//! plus a 512-byte footer) and dynamic (footer copy, dynamic header, block
//! allocation table, 2 MiB blocks each behind a sector bitmap, footer).
//!
//! The footer names the creator application `"win "` (Hyper-V): readers
//! then take the disk size from the footer's current size instead of the
//! CHS geometry, which cannot express most sizes. QEMU's `vpc` driver does
//! so for `"win "`, `"qem2"`, `"d2v "`, `"CTXS"` and `"tap\0"`.

use std::fs::File;
use std::os::unix::fs::FileExt;

use anyhow::{bail, Context, Result};

use super::{put_be16, put_be32, put_be64, Ctx, Out};

const SECTOR: u64 = 512;
const MIB: u64 = 1 << 20;
/// Dynamic VHD block size.
const BLOCK: u64 = 2 << 20;
/// Sector bitmap in front of each block: one bit per sector, sector-padded.
const BITMAP: u64 = (BLOCK / SECTOR / 8).next_multiple_of(SECTOR);
const TYPE_FIXED: u32 = 2;
const TYPE_DYNAMIC: u32 = 3;
/// Seconds from the Unix epoch to 2000-01-01 00:00:00 UTC, the VHD epoch.
const VHD_EPOCH: u64 = 946_684_800;
/// Largest disk the specification's CHS algorithm covers (~127 GiB);
/// bigger disks get this geometry and rely on the current size.
const MAX_CHS_SECTORS: u64 = 65535 * 16 * 255;

/// CHS geometry (cylinders, heads, sectors per track) for a disk of
/// `total_sectors`, per the algorithm in the VHD specification's appendix.
fn chs(total_sectors: u64) -> (u16, u8, u8) {
    let total = total_sectors.min(MAX_CHS_SECTORS);
    let (spt, heads, cth);
    if total >= 65535 * 16 * 63 {
        spt = 255;
        heads = 16;
        cth = total / spt;
    } else {
        let mut s = 17;
        let mut c = total / s;
        let mut h = c.div_ceil(1024).max(4);
        if c >= h * 1024 || h > 16 {
            s = 31;
            h = 16;
            c = total / s;
        }
        if c >= h * 1024 {
            s = 63;
            h = 16;
            c = total / s;
        }
        (spt, heads, cth) = (s, h, c);
    }
    ((cth / heads) as u16, heads as u8, spt as u8)
}

/// One's complement of the byte sum of `b` (checksum field zeroed first).
fn checksum(b: &[u8]) -> u32 {
    !b.iter().fold(0u32, |s, &x| s.wrapping_add(u32::from(x)))
}

/// The 512-byte footer.
fn footer(ctx: &Ctx, size: u64, disk_type: u32, data_offset: u64) -> Vec<u8> {
    let mut f = vec![0u8; SECTOR as usize];
    f[..8].copy_from_slice(b"conectix");
    put_be32(&mut f, 8, 2); // features: reserved bit, always set
    put_be32(&mut f, 12, 0x0001_0000); // file format version 1.0
    put_be64(&mut f, 16, data_offset);
    let stamp = ctx
        .opts
        .timestamp
        .saturating_sub(VHD_EPOCH)
        .min(u32::MAX.into());
    put_be32(&mut f, 24, stamp as u32);
    f[28..32].copy_from_slice(b"win ");
    put_be32(&mut f, 32, 0x000a_0000); // creator version 10.0
    f[36..40].copy_from_slice(b"Wi2k"); // creator host OS: Windows
    put_be64(&mut f, 40, size); // original size
    put_be64(&mut f, 48, size); // current size
    let (c, h, s) = chs(size / SECTOR);
    put_be16(&mut f, 56, c);
    f[58] = h;
    f[59] = s;
    put_be32(&mut f, 60, disk_type);
    f[68..84].copy_from_slice(ctx.derive_uuid("vhd-unique-id").as_bytes());
    let sum = checksum(&f);
    put_be32(&mut f, 64, sum);
    f
}

/// Fixed VHD: every byte of the (MiB-rounded) disk, then the footer. Zero
/// blocks are left as holes in the output file.
pub(super) fn write_fixed(
    ctx: &Ctx,
    f: &mut File,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<()> {
    let raw_size = ctx.input.size;
    let size = raw_size.next_multiple_of(MIB);
    const CHUNK: usize = 1 << 20;
    let mut out = Out::new(f);
    for b in ctx.input.blocks(CHUNK)? {
        let (idx, data) = b?;
        let off = idx * CHUNK as u64;
        out.skip_to(off)?;
        out.write(&data)?; // past the raw end the block is zero-filled
        progress((off + CHUNK as u64).min(raw_size), raw_size);
    }
    let f = out.finish()?;
    f.set_len(size).context("sizing VHD")?;
    f.write_all_at(&footer(ctx, size, TYPE_FIXED, u64::MAX), size)
        .context("writing VHD footer")?;
    progress(raw_size, raw_size);
    Ok(())
}

/// The 1024-byte dynamic disk header.
fn dynamic_header(table_offset: u64, entries: u32) -> Vec<u8> {
    let mut h = vec![0u8; 1024];
    h[..8].copy_from_slice(b"cxsparse");
    put_be64(&mut h, 8, u64::MAX); // data offset: unused
    put_be64(&mut h, 16, table_offset);
    put_be32(&mut h, 24, 0x0001_0000);
    put_be32(&mut h, 28, entries);
    put_be32(&mut h, 32, BLOCK as u32);
    let sum = checksum(&h);
    put_be32(&mut h, 36, sum);
    h
}

/// Dynamic VHD of the raw image's exact size.
pub(super) fn write_dynamic(
    ctx: &Ctx,
    f: &mut File,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<()> {
    let size = ctx.input.size;
    let entries = u32::try_from(ctx.input.block_count(BLOCK)).context("image too large")?;
    let table_offset = 3 * SECTOR;
    let data_start = table_offset + (4 * u64::from(entries)).next_multiple_of(SECTOR);
    let mut bat = vec![u32::MAX; entries as usize];
    let bitmap = vec![0xffu8; BITMAP as usize];
    let mut out = Out::new(f);
    out.skip_to(data_start)?;
    for b in ctx.input.blocks(BLOCK as usize)? {
        let (idx, data) = b?;
        let Ok(sector) = u32::try_from(out.pos / SECTOR) else {
            bail!("image too large for a dynamic VHD");
        };
        bat[idx as usize] = sector;
        out.write(&bitmap)?;
        out.write(&data)?;
        progress((idx + 1) * BLOCK, size);
    }
    let foot = footer(ctx, size, TYPE_DYNAMIC, SECTOR);
    out.write(&foot)?;
    let mut meta = foot;
    meta.extend(dynamic_header(table_offset, entries));
    meta.extend(bat.iter().flat_map(|e| e.to_be_bytes()));
    let f = out.finish()?;
    f.write_all_at(&meta, 0).context("writing VHD headers")?;
    progress(size, size);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chs_matches_the_specification() {
        // 1 GiB: too many heads at 17 and at 31 sectors per track, so 63.
        assert_eq!(chs(2 << 20), (2080, 16, 63));
        // 10 MiB: 17 sectors per track, the minimum of 4 heads.
        assert_eq!(chs(20480), (301, 4, 17));
        // 20 MiB: 2409 cylinder-heads need 3 heads, raised to 4.
        assert_eq!(chs(40960), (602, 4, 17));
        // 200 MiB: more than 16 heads at 17 spt, so 31 spt and 16 heads.
        assert_eq!(chs(409600), (825, 16, 31));
        // At and above 65535*16*63 sectors: 255 sectors per track.
        assert_eq!(chs(65535 * 16 * 63), (16191, 16, 255));
        assert_eq!(chs(u64::MAX / 1024), (65535, 16, 255));
    }

    #[test]
    fn checksum_is_ones_complement_of_byte_sum() {
        assert_eq!(checksum(&[0; 512]), u32::MAX);
        assert_eq!(checksum(&[1, 2, 3, 250]), !256);
        let h = dynamic_header(1536, 10);
        let mut z = h.clone();
        z[36..40].fill(0);
        assert_eq!(
            u32::from_be_bytes(h[36..40].try_into().unwrap()),
            checksum(&z)
        );
    }
}
