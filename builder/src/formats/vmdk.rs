//! VMDK hosted sparse extents (VMware "Virtual Disk Format 1.1"):
//! streamOptimized (zlib-compressed grains behind grain markers, grain
//! tables written after their grains, grain directory and footer at the end:
//! what OVAs carry and VMware, VirtualBox and QEMU import) and
//! monolithicSparse (uncompressed grains, redundant grain directory).
//! Both embed the text descriptor at sector 1 and use 64 KiB grains.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::compress::{Codec, Encoder};
use super::sparse::{batches, ordered_map};
use super::{put_le32, put_le64, Ctx, Out};

const SECTOR: u64 = 512;
/// Grain size in sectors (64 KiB).
const GRAIN_SECTORS: u64 = 128;
const GRAIN: u64 = GRAIN_SECTORS * SECTOR;
/// Grain table entries per grain table (a table is 4 sectors).
const GTES: u64 = 512;
const GT_SECTORS: u64 = GTES * 4 / SECTOR;
/// Embedded descriptor: sector 1, 20 sectors reserved (as QEMU does).
const DESC_OFFSET: u64 = 1;
const DESC_SECTORS: u64 = 20;
/// gdOffset in a streamOptimized header: the real one is in the footer.
const GD_AT_END: u64 = u64::MAX;
const FLAG_NL_DETECT: u32 = 1 << 0;
const FLAG_RGD: u32 = 1 << 1;
const FLAG_COMPRESSED: u32 = 1 << 16;
const FLAG_MARKERS: u32 = 1 << 17;
const MARKER_EOS: u32 = 0;
const MARKER_GT: u32 = 1;
const MARKER_GD: u32 = 2;
const MARKER_FOOTER: u32 = 3;

/// Fields of the 512-byte sparse extent header that vary.
struct Header {
    version: u32,
    flags: u32,
    capacity: u64,
    rgd_offset: u64,
    gd_offset: u64,
    overhead: u64,
    compressed: bool,
}

impl Header {
    /// The header a streamOptimized extent starts with (its footer holds
    /// the grain directory's offset instead of [`GD_AT_END`]).
    fn stream(capacity: u64) -> Header {
        Header {
            version: 3,
            flags: FLAG_NL_DETECT | FLAG_COMPRESSED | FLAG_MARKERS,
            capacity,
            rgd_offset: 0,
            gd_offset: GD_AT_END,
            overhead: GRAIN_SECTORS,
            compressed: true,
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut h = vec![0u8; SECTOR as usize];
        h[..4].copy_from_slice(b"KDMV");
        put_le32(&mut h, 4, self.version);
        put_le32(&mut h, 8, self.flags);
        put_le64(&mut h, 12, self.capacity);
        put_le64(&mut h, 20, GRAIN_SECTORS);
        put_le64(&mut h, 28, DESC_OFFSET);
        put_le64(&mut h, 36, DESC_SECTORS);
        put_le32(&mut h, 44, GTES as u32);
        put_le64(&mut h, 48, self.rgd_offset);
        put_le64(&mut h, 56, self.gd_offset);
        put_le64(&mut h, 64, self.overhead);
        // 72: uncleanShutdown = 0; 73..77: newline detection characters.
        h[73..77].copy_from_slice(b"\n \r\n");
        h[77] = u8::from(self.compressed); // compressAlgorithm 1 = deflate
        h
    }
}

/// The embedded text descriptor, padded to its reserved sectors.
fn descriptor(cid: u32, create_type: &str, capacity: u64, file: &str) -> Result<Vec<u8>> {
    let cylinders = (capacity / (255 * 63)).clamp(1, 65535);
    let text = format!(
        "# Disk DescriptorFile\n\
         version=1\n\
         CID={cid:08x}\n\
         parentCID=ffffffff\n\
         createType=\"{create_type}\"\n\
         \n\
         # Extent description\n\
         RW {capacity} SPARSE \"{file}\"\n\
         \n\
         # The Disk Data Base\n\
         #DDB\n\
         \n\
         ddb.virtualHWVersion = \"4\"\n\
         ddb.adapterType = \"lsilogic\"\n\
         ddb.geometry.cylinders = \"{cylinders}\"\n\
         ddb.geometry.heads = \"255\"\n\
         ddb.geometry.sectors = \"63\"\n"
    );
    if file.contains(['"', '\n']) || text.len() as u64 > DESC_SECTORS * SECTOR {
        bail!("cannot describe a VMDK extent named {file:?}");
    }
    let mut b = text.into_bytes();
    b.resize((DESC_SECTORS * SECTOR) as usize, 0);
    Ok(b)
}

/// The content ID: 32 bits derived from the seed, never 0xffffffff
/// ("no parent").
fn cid(ctx: &Ctx) -> u32 {
    let d = ctx.derive("vmdk-cid");
    let c = u32::from_le_bytes([d[0], d[1], d[2], d[3]]);
    if c == u32::MAX {
        0xfffffffe
    } else {
        c
    }
}

/// A metadata marker sector: numSectors, size 0, type.
fn marker(num_sectors: u64, kind: u32) -> Vec<u8> {
    let mut m = vec![0u8; SECTOR as usize];
    put_le64(&mut m, 0, num_sectors);
    put_le32(&mut m, 12, kind);
    m
}

fn le32_table(entries: &[u32]) -> Vec<u8> {
    entries.iter().flat_map(|e| e.to_le_bytes()).collect()
}

fn sector_of(pos: u64) -> Result<u32> {
    u32::try_from(pos / SECTOR).context("VMDK sparse extents are limited to 2 TiB")
}

/// streamOptimized VMDK; `name` is the file name the descriptor refers to.
pub(super) fn write_stream(
    ctx: &Ctx,
    name: &str,
    f: &mut File,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<()> {
    let size = ctx.input.size;
    let capacity = size / SECTOR;
    let gt_count = ctx.input.block_count(GRAIN).div_ceil(GTES);
    let codec = Codec::Zlib(Codec::deflate_level(ctx.opts.level)?);
    let mut header = Header::stream(capacity);
    let mut out = Out::new(f);
    out.write(&header.bytes())?;
    out.write(&descriptor(cid(ctx), "streamOptimized", capacity, name)?)?;
    out.pad_to(GRAIN)?;

    let mut gd = vec![0u32; gt_count as usize];
    // The grain table being filled: (index, entries).
    let mut gt: Option<(u64, Vec<u32>)> = None;
    let flush_gt = |out: &mut Out, gd: &mut [u32], gt: &mut Option<(u64, Vec<u32>)>| {
        if let Some((i, entries)) = gt.take() {
            out.write(&marker(GT_SECTORS, MARKER_GT))?;
            gd[i as usize] = sector_of(out.pos)?;
            out.write(&le32_table(&entries))?;
        }
        anyhow::Ok(())
    };
    ordered_map(
        ctx.threads,
        batches(ctx.input.blocks(GRAIN as usize)?, 16),
        || Encoder::new(codec),
        |enc, batch| -> Result<Vec<(u64, Vec<u8>)>> {
            let enc = enc.as_mut().map_err(|e| anyhow::anyhow!("{e:#}"))?;
            batch
                .into_iter()
                .map(|(idx, data)| Ok((idx, enc.compress(&data)?)))
                .collect()
        },
        |res| {
            for (idx, data) in res? {
                let table = idx / GTES;
                if gt.as_ref().is_some_and(|(i, _)| *i != table) {
                    flush_gt(&mut out, &mut gd, &mut gt)?;
                }
                let (_, entries) = gt.get_or_insert_with(|| (table, vec![0; GTES as usize]));
                entries[(idx % GTES) as usize] = sector_of(out.pos)?;
                let mut m = [0u8; 12];
                put_le64(&mut m, 0, idx * GRAIN_SECTORS);
                put_le32(&mut m, 8, data.len() as u32);
                out.write(&m)?;
                out.write(&data)?;
                out.pad_to(SECTOR)?;
                progress((idx + 1) * GRAIN, size);
            }
            Ok(())
        },
    )?;
    flush_gt(&mut out, &mut gd, &mut gt)?;

    let mut gd_bytes = le32_table(&gd);
    gd_bytes.resize((gd_bytes.len() as u64).next_multiple_of(SECTOR) as usize, 0);
    out.write(&marker(gd_bytes.len() as u64 / SECTOR, MARKER_GD))?;
    header.gd_offset = out.pos / SECTOR;
    out.write(&gd_bytes)?;
    out.write(&marker(1, MARKER_FOOTER))?;
    out.write(&header.bytes())?;
    out.write(&marker(0, MARKER_EOS))?;
    out.finish()?;
    progress(size, size);
    Ok(())
}

/// Reads the streamOptimized VMDK at `path` (written by [`write_stream`]
/// for `ctx.input` under another name) with its embedded descriptor naming
/// `name` instead: the bytes [`write_stream`] writes for `name`.
pub(super) fn renamed_stream(ctx: &Ctx, path: &Path, name: &str) -> Result<Box<dyn std::io::Read>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut head = vec![0u8; SECTOR as usize];
    f.read_exact(&mut head)
        .with_context(|| format!("reading {}", path.display()))?;
    let capacity = ctx.input.size / SECTOR;
    if head != Header::stream(capacity).bytes() {
        bail!(
            "{} is not a streamOptimized VMDK of this image",
            path.display()
        );
    }
    let desc = descriptor(cid(ctx), "streamOptimized", capacity, name)?;
    f.seek(SeekFrom::Start((DESC_OFFSET + DESC_SECTORS) * SECTOR))?;
    Ok(Box::new(
        std::io::Cursor::new(head).chain(std::io::Cursor::new(desc).chain(f)),
    ))
}

/// monolithicSparse VMDK; `name` is the file name the descriptor refers to.
pub(super) fn write_sparse(
    ctx: &Ctx,
    name: &str,
    f: &mut File,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<()> {
    let size = ctx.input.size;
    let capacity = size / SECTOR;
    let grains = ctx.input.block_count(GRAIN);
    let gt_count = grains.div_ceil(GTES);
    let gd_sectors = (gt_count * 4).div_ceil(SECTOR);
    let tables = gd_sectors + gt_count * GT_SECTORS;
    let rgd_offset = DESC_OFFSET + DESC_SECTORS;
    let gd_offset = rgd_offset + tables;
    let overhead = (gd_offset + tables).next_multiple_of(GRAIN_SECTORS);
    let header = Header {
        version: 1,
        flags: FLAG_NL_DETECT | FLAG_RGD,
        capacity,
        rgd_offset,
        gd_offset,
        overhead,
        compressed: false,
    };

    let mut gtes = vec![0u32; (gt_count * GTES) as usize];
    let mut out = Out::new(f);
    out.skip_to(overhead * SECTOR)?;
    for b in ctx.input.blocks(GRAIN as usize)? {
        let (idx, data) = b?;
        gtes[idx as usize] = sector_of(out.pos)?;
        out.write(&data)?;
        progress((idx + 1) * GRAIN, size);
    }
    sector_of(out.pos)?;

    // Header, descriptor, then the redundant and the primary directory,
    // each followed by its grain tables (laid out contiguously).
    let mut meta = header.bytes();
    meta.extend(descriptor(cid(ctx), "monolithicSparse", capacity, name)?);
    for dir in [rgd_offset, gd_offset] {
        let first_gt = dir + gd_sectors;
        let gd: Vec<u32> = (0..gt_count)
            .map(|i| (first_gt + i * GT_SECTORS) as u32)
            .collect();
        meta.resize((dir * SECTOR) as usize, 0);
        meta.extend(le32_table(&gd));
        meta.resize((first_gt * SECTOR) as usize, 0);
        meta.extend(le32_table(&gtes));
    }
    let f = out.finish()?;
    f.write_all_at(&meta, 0).context("writing VMDK metadata")?;
    progress(size, size);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_layout() {
        let h = Header {
            version: 3,
            flags: FLAG_NL_DETECT | FLAG_COMPRESSED | FLAG_MARKERS,
            capacity: 2048,
            rgd_offset: 0,
            gd_offset: GD_AT_END,
            overhead: 128,
            compressed: true,
        }
        .bytes();
        assert_eq!(h.len(), 512);
        assert_eq!(&h[..4], b"KDMV");
        assert_eq!(u32::from_le_bytes(h[8..12].try_into().unwrap()), 0x30001);
        assert_eq!(u64::from_le_bytes(h[20..28].try_into().unwrap()), 128);
        assert_eq!(u32::from_le_bytes(h[44..48].try_into().unwrap()), 512);
        assert_eq!(u64::from_le_bytes(h[56..64].try_into().unwrap()), u64::MAX);
        assert_eq!(&h[73..77], b"\n \r\n");
        assert_eq!(u16::from_le_bytes(h[77..79].try_into().unwrap()), 1);
    }

    #[test]
    fn descriptor_is_parseable_and_bounded() {
        let d = descriptor(0x1234abcd, "streamOptimized", 4096, "disk.vmdk").unwrap();
        assert_eq!(d.len(), 20 * 512);
        let text = String::from_utf8_lossy(&d);
        assert!(text.contains("CID=1234abcd\n"));
        assert!(text.contains("createType=\"streamOptimized\""));
        assert!(text.contains("RW 4096 SPARSE \"disk.vmdk\"\n"));
        assert!(descriptor(1, "streamOptimized", 8, "a\"b").is_err());
    }
}
