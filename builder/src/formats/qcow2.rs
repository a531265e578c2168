//! qcow2 version 3 writer: 64 KiB clusters, 16-bit refcounts, optional
//! deflate or zstd cluster compression done in parallel.
//!
//! File layout, written front to back in one pass: cluster 0 holds the
//! header (patched last), then data clusters in guest order (compressed
//! clusters packed byte by byte, uncompressed ones cluster-aligned), then the
//! L2 tables, the L1 table, the refcount blocks and the refcount table.
//! Only non-zero guest clusters are stored; every other L2 entry is 0, which
//! reads as zeros in an image without a backing file.

use std::fs::File;
use std::os::unix::fs::FileExt;

use anyhow::{bail, Context, Result};

use super::compress::{Codec, Encoder};
use super::sparse::{batches, ordered_map};
use super::{put_be32, put_be64, Ctx, Out, Qcow2Compression};

const CLUSTER_BITS: u32 = 16;
const CLUSTER: u64 = 1 << CLUSTER_BITS;
/// L2 entries per L2 table (8-byte entries).
const L2_ENTRIES: u64 = CLUSTER / 8;
/// Refcount entries per refcount block (refcount_order 4: 16-bit entries).
const REFS_PER_BLOCK: u64 = CLUSTER / 2;
const HEADER_LEN: usize = 112;
/// L1/L2 entry flag: refcount is exactly 1.
const OFLAG_COPIED: u64 = 1 << 63;
/// L2 entry flag: compressed cluster descriptor.
const OFLAG_COMPRESSED: u64 = 1 << 62;
/// Bit where a compressed descriptor's sector count starts: 62 - (bits - 8).
const CSIZE_SHIFT: u32 = 62 - (CLUSTER_BITS - 8);
/// Incompatible feature bit 3: the header's compression_type is in use.
const INCOMPAT_COMPRESSION_TYPE: u64 = 1 << 3;

/// The L2 entry of a compressed cluster whose `len` bytes start at host
/// byte `off`: the offset itself, and the number of 512-byte sectors the data
/// occupies beyond the one containing `off`.
fn compressed_entry(off: u64, len: u64) -> u64 {
    let extra_sectors = ((off + len - 1) >> 9) - (off >> 9);
    OFLAG_COMPRESSED | (extra_sectors << CSIZE_SHIFT) | off
}

/// Number of refcount blocks and refcount table clusters needed when `used`
/// clusters exist before them (they must count themselves too).
fn refcount_layout(used: u64) -> (u64, u64) {
    let mut blocks: u64 = 1;
    loop {
        let table = (blocks * 8).div_ceil(CLUSTER);
        let need = (used + blocks + table).div_ceil(REFS_PER_BLOCK);
        if need <= blocks {
            return (blocks, table);
        }
        blocks = need;
    }
}

/// Guest-to-host mapping and host refcounts, built while data is written.
struct Tables {
    l2: Vec<Option<Box<[u64]>>>,
    refs: Vec<u16>,
}

impl Tables {
    fn set_l2(&mut self, guest_cluster: u64, entry: u64) {
        let t = self.l2[(guest_cluster / L2_ENTRIES) as usize]
            .get_or_insert_with(|| vec![0u64; L2_ENTRIES as usize].into_boxed_slice());
        t[(guest_cluster % L2_ENTRIES) as usize] = entry;
    }

    fn add_ref(&mut self, host_cluster: u64) -> Result<()> {
        let i = host_cluster as usize;
        if self.refs.len() <= i {
            self.refs.resize(i + 1, 0);
        }
        self.refs[i] = match self.refs[i].checked_add(1) {
            Some(r) => r,
            None => bail!("refcount overflow in host cluster {host_cluster}"),
        };
        Ok(())
    }

    /// Stores an uncompressed cluster at the next cluster boundary.
    fn plain(&mut self, out: &mut Out, guest: u64, data: &[u8]) -> Result<()> {
        out.pad_to(CLUSTER)?;
        self.set_l2(guest, out.pos | OFLAG_COPIED);
        self.add_ref(out.pos / CLUSTER)?;
        out.write(data)
    }

    /// Stores compressed bytes right after the previous ones.
    fn compressed(&mut self, out: &mut Out, guest: u64, data: &[u8]) -> Result<()> {
        let (off, len) = (out.pos, data.len() as u64);
        self.set_l2(guest, compressed_entry(off, len));
        for c in off / CLUSTER..=(off + len - 1) / CLUSTER {
            self.add_ref(c)?;
        }
        out.write(data)
    }
}

/// Writes the qcow2 image of `ctx.input` to `f`.
pub(super) fn write(ctx: &Ctx, f: &mut File, progress: &mut dyn FnMut(u64, u64)) -> Result<()> {
    let size = ctx.input.size;
    let l1_size = ctx.input.block_count(CLUSTER).div_ceil(L2_ENTRIES);
    let codec = match ctx.opts.qcow2_compression {
        Qcow2Compression::None => None,
        Qcow2Compression::Deflate => Some(Codec::Deflate4k(Codec::deflate_level(ctx.opts.level)?)),
        Qcow2Compression::Zstd => Some(Codec::Zstd(Codec::zstd_level(ctx.opts.level)?)),
    };
    let mut t = Tables {
        l2: vec![None; l1_size as usize],
        refs: vec![1], // cluster 0: the header
    };
    let mut out = Out::new(f);
    out.zeros(CLUSTER)?;
    write_clusters(ctx, codec, &mut t, &mut out, progress)?;
    let (l1_off, table_off, table_clusters) = write_tables(&mut t, &mut out, l1_size)?;
    let header = header(
        size,
        l1_size,
        l1_off,
        table_off,
        table_clusters,
        ctx.opts.qcow2_compression,
    );
    let f = out.finish()?;
    f.write_all_at(&header, 0).context("writing qcow2 header")?;
    progress(size, size);
    Ok(())
}

/// The data clusters, compressed on `ctx.threads` threads (in order).
fn write_clusters(
    ctx: &Ctx,
    codec: Option<Codec>,
    t: &mut Tables,
    out: &mut Out,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<()> {
    let size = ctx.input.size;
    let blocks = ctx.input.blocks(CLUSTER as usize)?;
    match codec {
        None => {
            for b in blocks {
                let (idx, data) = b?;
                t.plain(out, idx, &data)?;
                progress((idx + 1) * CLUSTER, size);
            }
        }
        Some(codec) => ordered_map(
            ctx.threads,
            batches(blocks, 16),
            || Encoder::new(codec),
            |enc, batch| -> Result<Vec<(u64, Vec<u8>, bool)>> {
                let enc = enc.as_mut().map_err(|e| anyhow::anyhow!("{e:#}"))?;
                batch
                    .into_iter()
                    .map(|(idx, data)| {
                        let c = enc.compress(&data)?;
                        Ok(if (c.len() as u64) < CLUSTER {
                            (idx, c, true)
                        } else {
                            (idx, data, false)
                        })
                    })
                    .collect()
            },
            |res| {
                for (idx, bytes, compressed) in res? {
                    if compressed {
                        t.compressed(out, idx, &bytes)?;
                    } else {
                        t.plain(out, idx, &bytes)?;
                    }
                    progress((idx + 1) * CLUSTER, size);
                }
                Ok(())
            },
        )?,
    }
    out.pad_to(CLUSTER)
}

/// L2 tables, the L1 table, refcount blocks and table: (L1 offset,
/// refcount table offset, refcount table clusters).
fn write_tables(t: &mut Tables, out: &mut Out, l1_size: u64) -> Result<(u64, u64, u64)> {
    // L2 tables, then the L1 table pointing at them.
    let meta_start = out.pos / CLUSTER;
    let mut l1 = vec![0u8; (l1_size * 8) as usize];
    for (i, table) in t.l2.iter().enumerate() {
        if let Some(table) = table {
            put_be64(&mut l1, i * 8, out.pos | OFLAG_COPIED);
            let mut b = Vec::with_capacity(CLUSTER as usize);
            for e in table.iter() {
                b.extend_from_slice(&e.to_be_bytes());
            }
            out.write(&b)?;
        }
    }
    let l1_off = out.pos;
    out.write(&l1)?;
    out.pad_to(CLUSTER)?;
    for c in meta_start..out.pos / CLUSTER {
        t.add_ref(c)?;
    }

    // Refcount blocks and table, which count themselves.
    let used = out.pos / CLUSTER;
    let (nblocks, table_clusters) = refcount_layout(used);
    for c in used..used + nblocks + table_clusters {
        t.add_ref(c)?;
    }
    t.refs.resize((nblocks * REFS_PER_BLOCK) as usize, 0);
    let mut table = vec![0u8; (table_clusters * CLUSTER) as usize];
    for (b, chunk) in t.refs.chunks(REFS_PER_BLOCK as usize).enumerate() {
        put_be64(&mut table, b * 8, out.pos);
        let bytes: Vec<u8> = chunk.iter().flat_map(|r| r.to_be_bytes()).collect();
        out.write(&bytes)?;
    }
    let table_off = out.pos;
    out.write(&table)?;
    Ok((l1_off, table_off, table_clusters))
}

/// The 112-byte version 3 header.
fn header(
    size: u64,
    l1_size: u64,
    l1_off: u64,
    refcount_table_off: u64,
    refcount_table_clusters: u64,
    compression: Qcow2Compression,
) -> Vec<u8> {
    let mut h = vec![0u8; HEADER_LEN];
    put_be32(&mut h, 0, 0x5146_49fb); // "QFI\xfb"
    put_be32(&mut h, 4, 3);
    put_be32(&mut h, 20, CLUSTER_BITS);
    put_be64(&mut h, 24, size);
    put_be32(&mut h, 36, l1_size as u32);
    put_be64(&mut h, 40, l1_off);
    put_be64(&mut h, 48, refcount_table_off);
    put_be32(&mut h, 56, refcount_table_clusters as u32);
    let zstd = compression == Qcow2Compression::Zstd;
    put_be64(&mut h, 72, if zstd { INCOMPAT_COMPRESSION_TYPE } else { 0 });
    put_be32(&mut h, 96, 4); // refcount_order: 16-bit refcounts
    put_be32(&mut h, 100, HEADER_LEN as u32);
    h[104] = u8::from(zstd); // compression_type: 0 deflate, 1 zstd
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressed_descriptor_layout() {
        // 100 bytes inside one sector: no extra sectors.
        assert_eq!(compressed_entry(0x10000, 100), OFLAG_COMPRESSED | 0x10000);
        // Ends exactly at a sector boundary.
        assert_eq!(compressed_entry(0x10000, 512), OFLAG_COMPRESSED | 0x10000);
        // Crosses into the next sector.
        assert_eq!(
            compressed_entry(0x101f0, 0x20),
            OFLAG_COMPRESSED | (1 << 54) | 0x101f0
        );
        // 3000 bytes from offset 700: sectors 1..=7, so 6 extra.
        let e = compressed_entry(700, 3000);
        assert_eq!(e & ((1 << 54) - 1), 700);
        assert_eq!((e >> 54) & 0xff, 6);
        assert_eq!(e >> 62, 1, "compressed flag set, copied flag clear");
    }

    #[test]
    fn refcount_layout_counts_itself() {
        assert_eq!(refcount_layout(10), (1, 1));
        // One block covers 32768 clusters including itself and the table.
        assert_eq!(refcount_layout(32766), (1, 1));
        assert_eq!(refcount_layout(32767), (2, 1));
        // 8192 blocks fill one table cluster exactly; one more needs two.
        let (b, t) = refcount_layout(8192 * REFS_PER_BLOCK);
        assert!(b * REFS_PER_BLOCK >= 8192 * REFS_PER_BLOCK + b + t);
        assert_eq!(t, (b * 8).div_ceil(CLUSTER));
    }

    #[test]
    fn header_fields() {
        let h = header(1 << 30, 2, 0x50000, 0x60000, 1, Qcow2Compression::Zstd);
        assert_eq!(&h[..4], b"QFI\xfb");
        assert_eq!(u32::from_be_bytes(h[4..8].try_into().unwrap()), 3);
        assert_eq!(u64::from_be_bytes(h[24..32].try_into().unwrap()), 1 << 30);
        assert_eq!(u64::from_be_bytes(h[72..80].try_into().unwrap()), 8);
        assert_eq!(u32::from_be_bytes(h[100..104].try_into().unwrap()), 112);
        assert_eq!(h[104], 1);
        let d = header(1 << 30, 2, 0, 0, 1, Qcow2Compression::Deflate);
        assert_eq!(u64::from_be_bytes(d[72..80].try_into().unwrap()), 0);
        assert_eq!(d[104], 0);
    }
}
