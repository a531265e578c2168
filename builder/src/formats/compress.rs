//! Compression: per-block codecs used inside formats (qcow2 clusters, VMDK
//! grains) and the outer xz / zstd stream wrapped around finished artifacts.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use zlib_rs::{Deflate, DeflateConfig, DeflateFlush, Status};

/// Default deflate level for clusters and grains: zlib's default. zlib-rs
/// at 6 is about 1% larger than QEMU's (classic zlib) output; 9 matches it.
pub(super) const DEFAULT_DEFLATE_LEVEL: i32 = 6;
/// Default zstd level for qcow2 clusters (zstd's own default).
pub(super) const DEFAULT_ZSTD_LEVEL: i32 = 3;

/// A block codec.
#[derive(Debug, Clone, Copy)]
pub(super) enum Codec {
    /// Raw deflate limited to a 4 KiB window, as qcow2 readers (QEMU
    /// inflates with `windowBits = -12`) require.
    Deflate4k(u32),
    /// zlib stream (RFC 1950), as VMDK grains are stored.
    Zlib(u32),
    /// One zstd frame with the content size, no checksum.
    Zstd(i32),
}

impl Codec {
    /// Deflate level from the user's `level`, checked.
    pub fn deflate_level(level: Option<i32>) -> Result<u32> {
        match level.unwrap_or(DEFAULT_DEFLATE_LEVEL) {
            l @ 0..=9 => Ok(l as u32),
            l => bail!("deflate level {l} is out of range 0-9"),
        }
    }

    /// zstd level from the user's `level`, checked.
    pub fn zstd_level(level: Option<i32>) -> Result<i32> {
        match level.unwrap_or(DEFAULT_ZSTD_LEVEL) {
            l @ 1..=22 => Ok(l),
            l => bail!("zstd level {l} is out of range 1-22"),
        }
    }
}

/// A reusable compressor for one worker thread.
pub(super) enum Encoder {
    /// deflate or zlib.
    Flate(Box<Deflate>),
    /// zstd.
    Zstd(zstd::bulk::Compressor<'static>),
}

impl Encoder {
    pub fn new(codec: Codec) -> Result<Encoder> {
        Ok(match codec {
            // Negative window bits: raw deflate. zlib-rs's default memLevel
            // (8) came out no larger than QEMU's 9 on real file systems.
            Codec::Deflate4k(l) => Encoder::flate(l, -12),
            Codec::Zlib(l) => Encoder::flate(l, 15),
            Codec::Zstd(l) => {
                Encoder::Zstd(zstd::bulk::Compressor::new(l).context("creating zstd compressor")?)
            }
        })
    }

    fn flate(level: u32, window_bits: i32) -> Encoder {
        Encoder::Flate(Box::new(Deflate::new_with_config(DeflateConfig {
            level: level as i32,
            window_bits,
            ..DeflateConfig::default()
        })))
    }

    /// Compresses `data` as one complete stream.
    pub fn compress(&mut self, data: &[u8]) -> Result<Vec<u8>> {
        match self {
            Encoder::Zstd(z) => z.compress(data).context("zstd compression"),
            Encoder::Flate(c) => {
                c.reset();
                // The bound guarantees one call finishes the stream.
                let mut out = vec![0u8; zlib_rs::compress_bound(data.len())];
                let st = c
                    .compress(data, &mut out, DeflateFlush::Finish)
                    .map_err(|e| anyhow!("deflate: {e:?}"))?;
                if st != Status::StreamEnd || c.total_in() != data.len() as u64 {
                    bail!("deflate did not finish within its bound");
                }
                out.truncate(c.total_out() as usize);
                Ok(out)
            }
        }
    }
}

/// Outer compression wrapped around a finished artifact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OuterCompression {
    /// Copy as is.
    #[default]
    None,
    /// xz (LZMA2, CRC64), multithreaded; level 0-9, default 6.
    Xz,
    /// zstd with a checksum, multithreaded; level 1-19, default 3.
    Zstd,
}

impl OuterCompression {
    /// Suffix appended to the artifact's name: "", ".xz" or ".zst".
    pub fn suffix(self) -> &'static str {
        match self {
            OuterCompression::None => "",
            OuterCompression::Xz => ".xz",
            OuterCompression::Zstd => ".zst",
        }
    }
}

/// Compresses `src` into `dest` (written under a temporary name, fsynced,
/// renamed). Output depends on the level but not on `threads` (0 = one per
/// core): both encoders always run in their multithreaded mode, which splits
/// the input into the same blocks whatever the worker count.
pub fn compress_file(
    src: &Path,
    kind: OuterCompression,
    level: Option<u32>,
    threads: usize,
    dest: &Path,
) -> Result<()> {
    let threads = super::thread_count(threads) as u32;
    let mut input = File::open(src).with_context(|| format!("opening {}", src.display()))?;
    super::write_atomic(dest, |f| {
        let ctx = || format!("compressing {}", src.display());
        match kind {
            OuterCompression::None => {
                std::io::copy(&mut input, f).with_context(ctx)?;
            }
            OuterCompression::Xz => {
                let level = level.unwrap_or(6);
                if level > 9 {
                    bail!("xz level {level} is out of range 0-9");
                }
                let stream = xz2::stream::MtStreamBuilder::new()
                    .threads(threads)
                    .preset(level)
                    .check(xz2::stream::Check::Crc64)
                    .encoder()
                    .context("creating xz encoder")?;
                let mut enc = xz2::write::XzEncoder::new_stream(&mut *f, stream);
                pump(&mut input, &mut enc).with_context(ctx)?;
                enc.try_finish().with_context(ctx)?;
                // liblzma's workers idle until the encoder is dropped.
                super::cpu::charge_foreign_threads();
            }
            OuterCompression::Zstd => {
                let level = level.unwrap_or(3);
                if !(1..=19).contains(&level) {
                    bail!("zstd level {level} is out of range 1-19");
                }
                let mut enc = zstd::stream::Encoder::new(&mut *f, level as i32)
                    .context("creating zstd encoder")?;
                enc.multithread(threads.max(1))
                    .context("enabling zstd threads")?;
                enc.include_checksum(true).context("zstd checksum")?;
                pump(&mut input, &mut enc).with_context(ctx)?;
                enc.do_finish().with_context(ctx)?;
                // libzstd's workers idle until the encoder is dropped.
                super::cpu::charge_foreign_threads();
            }
        }
        Ok(())
    })
}

fn pump(r: &mut impl Read, w: &mut impl Write) -> std::io::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        w.write_all(&buf[..n])?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zlib_rs::{InflateConfig, ReturnCode};

    fn sample() -> Vec<u8> {
        (0..65536u32)
            .map(|i| (i * 7 % 251) as u8 ^ (i >> 9) as u8)
            .collect()
    }

    #[test]
    fn deflate4k_decodes_with_a_4k_window() {
        let data = sample();
        let c = Encoder::new(Codec::Deflate4k(6))
            .unwrap()
            .compress(&data)
            .unwrap();
        assert!(c.len() < data.len());
        // What QEMU does: inflateInit2(-12), one call, whole output.
        let mut out = vec![0u8; data.len()];
        let (got, rc) = zlib_rs::decompress_slice(&mut out, &c, InflateConfig { window_bits: -12 });
        assert_eq!(rc, ReturnCode::Ok);
        assert_eq!(got, &data[..]);
    }

    #[test]
    fn encoder_is_reusable_and_deterministic() {
        let data = sample();
        for codec in [Codec::Deflate4k(5), Codec::Zlib(5), Codec::Zstd(3)] {
            let mut e = Encoder::new(codec).unwrap();
            let a = e.compress(&data).unwrap();
            let b = e.compress(&data).unwrap();
            let c = Encoder::new(codec).unwrap().compress(&data).unwrap();
            assert_eq!(a, b, "{codec:?}");
            assert_eq!(a, c, "{codec:?}");
        }
    }

    #[test]
    fn incompressible_data_still_completes() {
        let mut x = 0x1234_5678_u64;
        let data: Vec<u8> = (0..65536)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let c = Encoder::new(Codec::Zlib(9))
            .unwrap()
            .compress(&data)
            .unwrap();
        assert!(c.len() > data.len());
    }
}
