//! Native virtual-disk writers: turn a finished (sparse) raw disk image into
//! qcow2, VMDK (streamOptimized or monolithicSparse), VDI, VHD (fixed or
//! dynamic) or an OVA appliance, and wrap any artifact in an outer xz or
//! zstd stream. [`FORMATS`] is the one table of what each format is called,
//! which file it makes, which writer writes it and which compressions it
//! takes; [`spec`] holds the manifest's `[[output]]` entries and their checks.
//!
//! Every writer streams the raw image: it finds data with
//! `lseek(SEEK_DATA/SEEK_HOLE)`, skips blocks that read as all zeros, and
//! keeps only the format's block map in memory. Output goes to a temporary
//! name beside the destination (`.atomicbuild-tmp.<name>`), is fsynced and
//! then renamed, so a destination only ever appears complete.
//!
//! Output is reproducible: identical raw bytes and options give identical
//! output bytes, whatever the thread count. Identifiers (VMDK CID, VDI and
//! VHD UUIDs) are derived from [`WriteOptions::seed`], timestamps come from
//! [`WriteOptions::timestamp`].

mod compress;
mod cpu;
mod output;
mod ova;
mod pass;
mod qcow2;
mod sparse;
pub mod spec;
mod table;
mod vdi;
mod vhd;
mod vmdk;

use std::fs::{self, File};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

pub use compress::{compress_file, OuterCompression};
pub use output::{write_options, write_output, write_outputs, Identity};
pub use pass::Timing;
pub use sparse::content_seed;
pub use spec::Output;
pub use table::{Compression, Format, FormatInfo, FORMATS};

/// Output format of [`write_image`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskFormat {
    /// A sparse copy of the raw image (holes and zero blocks stay holes).
    Raw,
    /// qcow2 version 3, 64 KiB clusters, 16-bit refcounts.
    Qcow2,
    /// VMDK streamOptimized (deflate-compressed grains with markers), the
    /// variant that OVA appliances carry.
    VmdkStream,
    /// VMDK monolithicSparse (hosted sparse extent, uncompressed grains).
    VmdkSparse,
    /// VirtualBox dynamic VDI with 1 MiB blocks.
    Vdi,
    /// Fixed VHD: the raw image, padded to a whole MiB, plus a footer.
    VhdFixed,
    /// Dynamic VHD with 2 MiB blocks.
    VhdDynamic,
    /// OVF 1.0 appliance: tar of descriptor, streamOptimized VMDK, manifest.
    Ova,
}

impl DiskFormat {
    /// The usual file name extension (without the dot).
    pub fn extension(self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Qcow2 => "qcow2",
            DiskFormat::VmdkStream | DiskFormat::VmdkSparse => "vmdk",
            DiskFormat::Vdi => "vdi",
            DiskFormat::VhdFixed | DiskFormat::VhdDynamic => "vhd",
            DiskFormat::Ova => "ova",
        }
    }
}

/// How qcow2 clusters are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Qcow2Compression {
    /// Clusters are stored as they are.
    #[default]
    None,
    /// Raw deflate with a 4 KiB window (qcow2 `compression_type` 0, what
    /// `qemu-img convert -c` writes and every qcow2 reader understands).
    Deflate,
    /// zstd (qcow2 `compression_type` 1, needs QEMU >= 5.1).
    Zstd,
}

/// The virtual machine an OVA describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OvaOptions {
    /// Virtual system name; also names the files inside the archive.
    pub name: String,
    /// Number of virtual CPUs.
    pub cpus: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// Ask for UEFI firmware (honoured by VMware; VirtualBox ignores it).
    pub uefi: bool,
}

impl Default for OvaOptions {
    fn default() -> Self {
        OvaOptions {
            name: "atomicbuild".into(),
            cpus: 2,
            memory_mib: 2048,
            uefi: true,
        }
    }
}

/// Options for [`write_image`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WriteOptions {
    /// Cluster compression of [`DiskFormat::Qcow2`].
    pub qcow2_compression: Qcow2Compression,
    /// Compression level of qcow2 clusters and VMDK grains (deflate 0-9,
    /// zstd 1-22); `None` picks deflate 6 or zstd 3.
    pub level: Option<i32>,
    /// Compression threads; 0 means one per available core. Output does not
    /// depend on it.
    pub threads: usize,
    /// Seed for derived identifiers (VMDK CID, VDI and VHD UUIDs), e.g. the
    /// manifest hash. `None` hashes the raw image's contents (an extra read).
    pub seed: Option<[u8; 32]>,
    /// Seconds since the Unix epoch stamped into VHD footers and OVA tar
    /// headers (e.g. `SOURCE_DATE_EPOCH`); 0 by default.
    pub timestamp: u64,
    /// The virtual machine described by [`DiskFormat::Ova`].
    pub ova: OvaOptions,
}

/// Streams the raw image `raw` into `dest` in `format`. See
/// [`write_image_with_progress`].
pub fn write_image(raw: &Path, format: DiskFormat, opts: &WriteOptions, dest: &Path) -> Result<()> {
    write_image_with_progress(raw, format, opts, dest, &mut |_, _| {})
}

/// Streams the raw image `raw` (a file whose size is a multiple of 512
/// bytes) into `dest` in `format`, never holding the image in memory.
/// `progress(done, total)` is called with bytes of the raw image processed.
/// `dest` appears only once complete.
pub fn write_image_with_progress(
    raw: &Path,
    format: DiskFormat,
    opts: &WriteOptions,
    dest: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<()> {
    let input = sparse::RawImage::open(raw)?;
    let seed = match opts.seed {
        Some(s) => s,
        None => content_seed(raw)?,
    };
    write_from(&input, seed, format, opts, dest, progress)
}

/// [`write_image_with_progress`] from an open (possibly fed) image whose
/// identifier seed is known.
fn write_from(
    input: &sparse::RawImage,
    seed: [u8; 32],
    format: DiskFormat,
    opts: &WriteOptions,
    dest: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<()> {
    let ctx = Ctx {
        input,
        opts,
        seed,
        threads: thread_count(opts.threads),
    };
    let name = file_name(dest);
    // Writers report block ends; the last block may reach past the image.
    let progress = &mut |done: u64, total: u64| progress(done.min(total), total);
    match format {
        DiskFormat::Ova => ova::write(&ctx, dest, progress),
        _ => write_atomic(dest, |f| match format {
            DiskFormat::Raw => sparse::write_raw(&ctx, f, progress),
            DiskFormat::Qcow2 => qcow2::write(&ctx, f, progress),
            DiskFormat::VmdkStream => vmdk::write_stream(&ctx, &name, f, progress),
            DiskFormat::VmdkSparse => vmdk::write_sparse(&ctx, &name, f, progress),
            DiskFormat::Vdi => vdi::write(&ctx, f, progress),
            DiskFormat::VhdFixed => vhd::write_fixed(&ctx, f, progress),
            DiskFormat::VhdDynamic => vhd::write_dynamic(&ctx, f, progress),
            DiskFormat::Ova => unreachable!("handled above"),
        }),
    }
}

/// What every writer needs: the input, the options and derived values.
struct Ctx<'a> {
    input: &'a sparse::RawImage,
    opts: &'a WriteOptions,
    seed: [u8; 32],
    threads: usize,
}

impl Ctx<'_> {
    /// 32 bytes derived from the seed for one purpose (`label`).
    fn derive(&self, label: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.seed);
        h.update(label.as_bytes());
        h.finalize().into()
    }

    /// A version-4-shaped UUID derived from the seed (deterministic).
    fn derive_uuid(&self, label: &str) -> uuid::Uuid {
        let d = self.derive(label);
        let mut b = [0u8; 16];
        b.copy_from_slice(&d[..16]);
        uuid::Builder::from_random_bytes(b).into_uuid()
    }
}

fn thread_count(requested: usize) -> usize {
    if requested > 0 {
        requested
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "disk".into())
}

/// Runs `body` on a fresh temporary file beside `dest`, then fsyncs it and
/// renames it to `dest`. The temporary file is removed on error.
fn write_atomic(dest: &Path, body: impl FnOnce(&mut File) -> Result<()>) -> Result<()> {
    // A bare file name has an empty parent, which cannot be synced.
    let dest = &if dest.parent() == Some(Path::new("")) {
        Path::new(".").join(dest)
    } else {
        dest.to_owned()
    };
    let tmp = common::atomic::tmp_name(dest);
    let result = (|| {
        let mut f = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        body(&mut f).with_context(|| format!("writing {}", dest.display()))?;
        crate::failpoint::hit("formats.written");
        f.sync_all()
            .with_context(|| format!("syncing {}", tmp.display()))?;
        Ok(())
    })();
    match result {
        Ok(()) => common::atomic::commit_tmp(&tmp, dest),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Sequential writer over an output file that tracks its position and can
/// leave holes (skipped zeros stay unallocated on disk).
struct Out<'a> {
    w: BufWriter<&'a mut File>,
    pos: u64,
}

impl<'a> Out<'a> {
    fn new(f: &'a mut File) -> Out<'a> {
        Out {
            w: BufWriter::with_capacity(1 << 20, f),
            pos: 0,
        }
    }

    fn write(&mut self, b: &[u8]) -> Result<()> {
        self.w.write_all(b).context("writing output")?;
        self.pos += b.len() as u64;
        Ok(())
    }

    /// Writes zeros up to the next multiple of `align`.
    fn pad_to(&mut self, align: u64) -> Result<()> {
        let pad = self.pos.next_multiple_of(align) - self.pos;
        self.zeros(pad)
    }

    fn zeros(&mut self, mut n: u64) -> Result<()> {
        const Z: [u8; 4096] = [0; 4096];
        while n > 0 {
            let k = n.min(Z.len() as u64) as usize;
            self.write(&Z[..k])?;
            n -= k as u64;
        }
        Ok(())
    }

    /// Moves forward to `pos` without writing (a hole in the output).
    fn skip_to(&mut self, pos: u64) -> Result<()> {
        if pos < self.pos {
            bail!("internal error: output position moves backwards");
        }
        self.w.flush().context("writing output")?;
        self.w
            .get_mut()
            .seek(SeekFrom::Start(pos))
            .context("seeking in output")?;
        self.pos = pos;
        Ok(())
    }

    /// Flushes and hands back the file, e.g. to patch headers in place.
    fn finish(self) -> Result<&'a mut File> {
        self.w
            .into_inner()
            .map_err(|e| e.into_error())
            .context("writing output")
    }
}

/// Little- and big-endian field stores into header buffers.
fn put_le32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
fn put_le64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}
fn put_be16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}
fn put_be32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}
fn put_be64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_be_bytes());
}
