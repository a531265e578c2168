//! Reading a sparse raw image block by block: data extents come from
//! `lseek(SEEK_DATA/SEEK_HOLE)`, blocks that read as all zeros are dropped,
//! and an ordered worker pool transforms (compresses) blocks in parallel
//! while the caller reads and writes in order.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, bail, Context, Result};
use sha2::{Digest, Sha256};

use super::{Ctx, Out};

/// The unit the one-pass reader reads and hands to every writer: every
/// writer's block size divides it.
pub(super) const CHUNK: usize = 2 << 20;

/// What the one-pass reader sends each writer.
pub(super) enum Feed {
    /// Chunk `.0` (in [`CHUNK`] units) of the image, zero-filled past its
    /// end. Chunks that read as all zeros are not sent.
    Data(u64, Arc<Vec<u8>>),
    /// Every chunk has been sent.
    End,
    /// The reader stopped: the reason.
    Failed(String),
}

/// An open raw image whose size is a multiple of 512 bytes.
pub(super) struct RawImage {
    file: File,
    path: PathBuf,
    /// Size in bytes.
    pub size: u64,
    /// Where blocks come from instead of the file, in a one-pass write.
    feed: Mutex<Option<Receiver<Feed>>>,
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
            feed: Mutex::new(None),
        })
    }

    /// The same image, whose [`blocks`](Self::blocks) come from `feed`
    /// (once) instead of from the file.
    pub fn fed(&self, feed: Receiver<Feed>) -> Result<RawImage> {
        Ok(RawImage {
            file: self.file.try_clone().context("duplicating a file handle")?,
            path: self.path.clone(),
            size: self.size,
            feed: Mutex::new(Some(feed)),
        })
    }

    /// Byte ranges `[start, end)` that may hold data, in order. Falls back to
    /// the whole file where the file system cannot report holes.
    fn data_extents(&self) -> Result<Vec<(u64, u64)>> {
        crate::fsutil::data_ranges(&self.file, self.size)
            .with_context(|| format!("finding the data in {}", self.path.display()))
    }

    /// Indices of `block`-sized blocks that overlap data, as merged ranges.
    pub fn block_ranges(&self, block: u64) -> Result<Vec<(u64, u64)>> {
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
        let feed = self
            .feed
            .lock()
            .map_err(|_| anyhow!("internal error: poisoned image feed"))?
            .take();
        let src = match feed {
            Some(rx) => {
                if !CHUNK.is_multiple_of(block) {
                    bail!("internal error: block size {block} does not divide the chunk size");
                }
                Src::Feed {
                    rx: Some(rx),
                    cur: None,
                }
            }
            None => {
                let mut ranges = self.block_ranges(block as u64)?;
                ranges.reverse();
                Src::File { img: self, ranges }
            }
        };
        Ok(Blocks { block, src })
    }

    /// Number of `block`-sized blocks covering the image.
    pub fn block_count(&self, block: u64) -> u64 {
        self.size.div_ceil(block)
    }
}

/// Iterator over non-zero blocks, see [`RawImage::blocks`].
pub(super) struct Blocks<'a> {
    block: usize,
    src: Src<'a>,
}

enum Src<'a> {
    File {
        img: &'a RawImage,
        /// Remaining index ranges, last range first.
        ranges: Vec<(u64, u64)>,
    },
    Feed {
        /// `None` once the reader's end was seen.
        rx: Option<Receiver<Feed>>,
        /// The chunk being split: index, bytes, offset of the next block.
        cur: Option<(u64, Arc<Vec<u8>>, usize)>,
    },
}

impl Iterator for Blocks<'_> {
    type Item = Result<(u64, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        let block = self.block;
        match &mut self.src {
            Src::File { img, ranges } => {
                let mut buf = vec![0u8; block];
                loop {
                    let r = ranges.last_mut()?;
                    let idx = r.0;
                    r.0 += 1;
                    if r.0 >= r.1 {
                        ranges.pop();
                    }
                    if let Err(e) = img.read_block(idx, &mut buf) {
                        return Some(Err(e));
                    }
                    if !is_zero(&buf) {
                        return Some(Ok((idx, buf)));
                    }
                }
            }
            Src::Feed { rx, cur } => loop {
                let (chunk, data, at) = match cur {
                    Some(c) if c.2 < c.1.len() => c,
                    _ => match rx.as_ref()?.recv() {
                        Ok(Feed::Data(i, d)) => cur.insert((i, d, 0)),
                        Ok(Feed::End) => {
                            *rx = None;
                            return None;
                        }
                        Ok(Feed::Failed(why)) => {
                            *rx = None;
                            return Some(Err(anyhow!(why)));
                        }
                        Err(_) => {
                            *rx = None;
                            return Some(Err(anyhow!("the image reader stopped")));
                        }
                    },
                };
                let b = &data[*at..*at + block];
                let idx = *chunk * (CHUNK / block) as u64 + (*at / block) as u64;
                *at += block;
                if !is_zero(b) {
                    return Some(Ok((idx, b.to_vec())));
                }
            },
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
    // Workers charge their CPU time to the caller's output.
    let account = super::cpu::current();
    std::thread::scope(|scope| -> Result<()> {
        for _ in 0..threads {
            let (job_rx, res_tx, state, work) = (&job_rx, res_tx.clone(), &state, &work);
            let account = account.clone();
            scope.spawn(move || {
                let _charge = super::cpu::enter(account);
                worker(job_rx, res_tx, state(), work)
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

/// One worker of [`ordered_map`]: jobs in, results (`None`: it panicked)
/// out, until the jobs end or the results are not wanted any more.
fn worker<T, R, S>(
    job_rx: &Mutex<mpsc::Receiver<(u64, T)>>,
    res_tx: mpsc::Sender<(u64, Option<R>)>,
    mut st: S,
    work: &(impl Fn(&mut S, T) -> R + Sync),
) {
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
