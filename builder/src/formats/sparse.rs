//! Reading a sparse raw image block by block: data extents come from
//! `lseek(SEEK_DATA/SEEK_HOLE)`, blocks that read as all zeros are dropped,
//! and an ordered worker pool transforms (compresses) blocks in parallel
//! while the caller reads and writes in order.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Mutex};

use anyhow::{anyhow, bail, Context, Result};
use sha2::{Digest, Sha256};

use super::{Ctx, Out};

/// An open raw image whose size is a multiple of 512 bytes.
pub(super) struct RawImage {
    file: File,
    path: PathBuf,
    /// Size in bytes.
    pub size: u64,
}

impl RawImage {
    pub fn open(path: &Path) -> Result<RawImage> {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let size = file
            .metadata()
            .with_context(|| format!("reading metadata of {}", path.display()))?
            .len();
        if size == 0 || size % 512 != 0 {
            bail!(
                "{}: size {size} is not a positive multiple of 512 bytes",
                path.display()
            );
        }
        Ok(RawImage {
            file,
            path: path.to_owned(),
            size,
        })
    }

    /// Byte ranges `[start, end)` that may hold data, in order. Falls back to
    /// the whole file where the file system cannot report holes.
    fn data_extents(&self) -> Result<Vec<(u64, u64)>> {
        crate::fsutil::data_ranges(&self.file, self.size)
            .with_context(|| format!("finding the data in {}", self.path.display()))
    }

    /// Indices of `block`-sized blocks that overlap data, as merged ranges.
    fn block_ranges(&self, block: u64) -> Result<Vec<(u64, u64)>> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        for (s, e) in self.data_extents()? {
            let (a, b) = (s / block, e.div_ceil(block));
            match out.last_mut() {
                Some(last) if last.1 >= a => last.1 = last.1.max(b),
                _ => out.push((a, b)),
            }
        }
        Ok(out)
    }

    /// Reads block `idx` into `buf` (whose length is the block size),
    /// zero-filling past the end of the image.
    pub fn read_block(&self, idx: u64, buf: &mut [u8]) -> Result<()> {
        let off = idx * buf.len() as u64;
        let n = (self.size.saturating_sub(off)).min(buf.len() as u64) as usize;
        self.file
            .read_exact_at(&mut buf[..n], off)
            .with_context(|| format!("reading {} at {off}", self.path.display()))?;
        buf[n..].fill(0);
        Ok(())
    }

    /// Every non-zero `block`-sized block in order, as (index, bytes).
    pub fn blocks(&self, block: usize) -> Result<Blocks<'_>> {
        let mut ranges = self.block_ranges(block as u64)?;
        ranges.reverse();
        Ok(Blocks {
            img: self,
            block,
            ranges,
        })
    }

    /// Number of `block`-sized blocks covering the image.
    pub fn block_count(&self, block: u64) -> u64 {
        self.size.div_ceil(block)
    }
}

/// Iterator over non-zero blocks, see [`RawImage::blocks`].
pub(super) struct Blocks<'a> {
    img: &'a RawImage,
    block: usize,
    /// Remaining index ranges, last range first.
    ranges: Vec<(u64, u64)>,
}

impl Iterator for Blocks<'_> {
    type Item = Result<(u64, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut buf = vec![0u8; self.block];
        loop {
            let r = self.ranges.last_mut()?;
            let idx = r.0;
            r.0 += 1;
            if r.0 >= r.1 {
                self.ranges.pop();
            }
            if let Err(e) = self.img.read_block(idx, &mut buf) {
                return Some(Err(e));
            }
            if !is_zero(&buf) {
                return Some(Ok((idx, buf)));
            }
        }
    }
}

/// True when every byte of `b` is zero. ORs 16-byte words a KiB at a time
/// (vectorised by the compiler) and stops at the first non-zero KiB.
pub(super) fn is_zero(b: &[u8]) -> bool {
    b.chunks(1024).all(|kib| {
        let words = kib.chunks_exact(16);
        let tail = words.remainder();
        let or = words.fold(0u128, |acc, w| {
            acc | u128::from_ne_bytes(w.try_into().unwrap_or_default())
        });
        or == 0 && tail.iter().all(|&x| x == 0)
    })
}

/// A hash of the image's contents (size, and offset and bytes of every
/// non-zero 64 KiB block): the default seed for derived identifiers.
pub fn content_seed(raw: &Path) -> Result<[u8; 32]> {
    let img = RawImage::open(raw)?;
    let mut h = Sha256::new();
    h.update(img.size.to_le_bytes());
    for b in img.blocks(64 << 10)? {
        let (idx, data) = b?;
        h.update(idx.to_le_bytes());
        h.update(&data);
    }
    Ok(h.finalize().into())
}

/// Runs `work` over the items of `input` on `threads` workers (each with its
/// own state from `state`) and hands the results to `sink` in input order.
/// With one thread everything runs inline. Output never depends on the
/// thread count.
pub(super) fn ordered_map<T, R, S>(
    threads: usize,
    input: impl Iterator<Item = Result<T>>,
    state: impl Fn() -> S + Sync,
    work: impl Fn(&mut S, T) -> R + Sync,
    mut sink: impl FnMut(R) -> Result<()>,
) -> Result<()>
where
    T: Send,
    R: Send,
{
    if threads <= 1 {
        let mut st = state();
        for item in input {
            sink(work(&mut st, item?))?;
        }
        return Ok(());
    }
    let max_in_flight = threads * 4;
    let (job_tx, job_rx) = mpsc::sync_channel::<(u64, T)>(max_in_flight);
    let job_rx = Mutex::new(job_rx);
    // None reports a worker that panicked.
    let (res_tx, res_rx) = mpsc::channel::<(u64, Option<R>)>();
    std::thread::scope(|scope| -> Result<()> {
        for _ in 0..threads {
            let (job_rx, res_tx, state, work) = (&job_rx, res_tx.clone(), &state, &work);
            scope.spawn(move || {
                let mut st = state();
                loop {
                    let job = match job_rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    let Ok((seq, item)) = job else { return };
                    let r = panic::catch_unwind(AssertUnwindSafe(|| work(&mut st, item))).ok();
                    let died = r.is_none();
                    if res_tx.send((seq, r)).is_err() || died {
                        return;
                    }
                }
            });
        }
        drop(res_tx);
        let mut pending = BTreeMap::new();
        let (mut sent, mut next) = (0u64, 0u64);
        let receive = |pending: &mut BTreeMap<u64, R>| -> Result<()> {
            match res_rx.recv() {
                Ok((seq, Some(r))) => {
                    pending.insert(seq, r);
                    Ok(())
                }
                _ => Err(anyhow!("a compression worker thread died")),
            }
        };
        let mut drain = |pending: &mut BTreeMap<u64, R>, next: &mut u64| -> Result<()> {
            while let Some(r) = pending.remove(next) {
                sink(r)?;
                *next += 1;
            }
            Ok(())
        };
        for item in input {
            let item = item?;
            while sent - next >= max_in_flight as u64 {
                receive(&mut pending)?;
                drain(&mut pending, &mut next)?;
            }
            job_tx
                .send((sent, item))
                .map_err(|_| anyhow!("worker thread died"))?;
            sent += 1;
        }
        drop(job_tx);
        while next < sent {
            receive(&mut pending)?;
            drain(&mut pending, &mut next)?;
        }
        Ok(())
    })
}

/// Groups consecutive items of `it` into batches of up to `n`, so workers
/// get enough work per message.
pub(super) fn batches<T>(
    mut it: impl Iterator<Item = Result<T>>,
    n: usize,
) -> impl Iterator<Item = Result<Vec<T>>> {
    std::iter::from_fn(move || {
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            match it.next() {
                Some(Ok(x)) => v.push(x),
                Some(Err(e)) => return Some(Err(e)),
                None => break,
            }
        }
        (!v.is_empty()).then_some(Ok(v))
    })
}

/// [`super::DiskFormat::Raw`]: a sparse copy, zero blocks left as holes.
pub(super) fn write_raw(
    ctx: &Ctx,
    f: &mut std::fs::File,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<()> {
    const BLOCK: usize = 64 << 10;
    let size = ctx.input.size;
    let mut out = Out::new(f);
    for b in ctx.input.blocks(BLOCK)? {
        let (idx, data) = b?;
        let off = idx * BLOCK as u64;
        out.skip_to(off)?;
        let n = (size - off).min(BLOCK as u64) as usize;
        out.write(&data[..n])?;
        progress(off + n as u64, size);
    }
    let f = out.finish()?;
    f.set_len(size).context("setting output size")?;
    progress(size, size);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_detection() {
        let mut b = vec![0u8; 65536 + 7];
        assert!(is_zero(&b));
        for at in [0, 15, 63, 64, 4096, 65535, 65536 + 6] {
            b[at] = 1;
            assert!(!is_zero(&b), "byte {at}");
            b[at] = 0;
        }
    }

    #[test]
    fn ordered_map_keeps_order_for_any_thread_count() {
        for threads in [1, 2, 3, 8] {
            let mut got = Vec::new();
            ordered_map(
                threads,
                (0..1000u64).map(Ok),
                || 0u64,
                |calls, x| {
                    *calls += 1;
                    x * 2
                },
                |r| {
                    got.push(r);
                    Ok(())
                },
            )
            .unwrap();
            assert_eq!(got, (0..1000).map(|x| x * 2).collect::<Vec<_>>());
        }
    }
}
