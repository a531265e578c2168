//! VirtualBox VDI writer: a dynamic ("normal") image, header version 1.1,
//! 1 MiB blocks, only non-zero blocks stored. Layout: pre-header and header
//! in the first 512 bytes, the block map at 512, data blocks from the next
//! MiB boundary on. The image UUIDs are derived from the seed.

use std::fs::File;
use std::os::unix::fs::FileExt;

use anyhow::{Context, Result};

use super::{put_le32, put_le64, Ctx, Out};

const BLOCK: u64 = 1 << 20;
const SIGNATURE: u32 = 0xbeda_107f;
const VERSION_1_1: u32 = 0x0001_0001;
/// Size of the version 1.1 header that follows signature and version
/// (`VDIHEADER1PLUS`, with the logical geometry).
const HEADER_SIZE: u32 = 0x190;
const TYPE_NORMAL: u32 = 1;
const MAP_OFFSET: u64 = 512;
/// Block map entry of a block that was never written (reads as zeros).
const BLOCK_FREE: u32 = u32::MAX;

/// The 512-byte header sector.
fn header(
    disk_size: u64,
    blocks: u32,
    allocated: u32,
    data_offset: u64,
    create: uuid::Uuid,
    modify: uuid::Uuid,
) -> Vec<u8> {
    let mut h = vec![0u8; 512];
    let text = b"<<< Oracle VM VirtualBox Disk Image >>>\n";
    h[..text.len()].copy_from_slice(text);
    put_le32(&mut h, 0x40, SIGNATURE);
    put_le32(&mut h, 0x44, VERSION_1_1);
    put_le32(&mut h, 0x48, HEADER_SIZE);
    put_le32(&mut h, 0x4c, TYPE_NORMAL);
    // 0x50 flags = 0; 0x54..0x154 comment, empty.
    put_le32(&mut h, 0x154, MAP_OFFSET as u32);
    put_le32(&mut h, 0x158, data_offset as u32);
    // 0x15c legacy geometry: cylinders, heads, sectors unset; sector size.
    put_le32(&mut h, 0x168, 512);
    put_le64(&mut h, 0x170, disk_size);
    put_le32(&mut h, 0x178, BLOCK as u32);
    // 0x17c extra block data = 0.
    put_le32(&mut h, 0x180, blocks);
    put_le32(&mut h, 0x184, allocated);
    h[0x188..0x198].copy_from_slice(create.as_bytes());
    h[0x198..0x1a8].copy_from_slice(modify.as_bytes());
    // 0x1a8 linkage and 0x1b8 parent UUIDs stay zero: no parent image.
    // 0x1c8 logical geometry: unset; sector size.
    put_le32(&mut h, 0x1d4, 512);
    h
}

/// Writes the VDI image of `ctx.input` to `f`.
pub(super) fn write(ctx: &Ctx, f: &mut File, progress: &mut dyn FnMut(u64, u64)) -> Result<()> {
    let size = ctx.input.size;
    let blocks = u32::try_from(ctx.input.block_count(BLOCK)).context("image too large for VDI")?;
    let data_offset = (MAP_OFFSET + 4 * u64::from(blocks)).next_multiple_of(BLOCK);
    let mut map = vec![BLOCK_FREE; blocks as usize];
    let mut allocated = 0u32;
    let mut out = Out::new(f);
    out.skip_to(data_offset)?;
    for b in ctx.input.blocks(BLOCK as usize)? {
        let (idx, data) = b?;
        map[idx as usize] = allocated;
        allocated += 1;
        out.write(&data)?;
        progress((idx + 1) * BLOCK, size);
    }
    let mut meta = header(
        size,
        blocks,
        allocated,
        data_offset,
        ctx.derive_uuid("vdi-create"),
        ctx.derive_uuid("vdi-modify"),
    );
    meta.extend(map.iter().flat_map(|e| e.to_le_bytes()));
    let f = out.finish()?;
    // An image without data blocks still spans its map area.
    f.set_len(data_offset + u64::from(allocated) * BLOCK)
        .context("sizing VDI")?;
    f.write_all_at(&meta, 0).context("writing VDI header")?;
    progress(size, size);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_layout() {
        let u = uuid::Uuid::from_bytes([7; 16]);
        let h = header(3 << 20, 3, 2, 1 << 20, u, uuid::Uuid::nil());
        let le32 = |at: usize| u32::from_le_bytes(h[at..at + 4].try_into().unwrap());
        assert_eq!(le32(0x40), 0xbeda107f);
        assert_eq!(le32(0x44), 0x00010001);
        assert_eq!(le32(0x154), 512);
        assert_eq!(le32(0x158), 1 << 20);
        assert_eq!(le32(0x178), 1 << 20);
        assert_eq!(le32(0x180), 3);
        assert_eq!(le32(0x184), 2);
        assert_eq!(
            u64::from_le_bytes(h[0x170..0x178].try_into().unwrap()),
            3 << 20
        );
        assert_eq!(&h[0x188..0x198], &[7; 16]);
        assert!(h[0x1a8..0x1c8].iter().all(|&b| b == 0));
    }
}
