//! One `[[output]]` written from a finished raw image: the writer the format
//! table names, with the output's compression (inside qcow2, an outer xz or
//! zstd stream otherwise). Used by the formats stage and by `convert`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::{
    compress_file, spec::Output, write_image_with_progress, Compression, Format, OuterCompression,
    OvaOptions, Qcow2Compression, WriteOptions,
};

/// Where the identity of written files comes from.
pub struct Identity {
    /// Virtual-machine name (OVA).
    pub name: String,
    /// Seed of derived identifiers; `None` derives them from the contents.
    pub seed: Option<[u8; 32]>,
    /// Timestamp written into headers.
    pub timestamp: u64,
    /// Compression threads (0: one per core).
    pub threads: usize,
}

/// The writer settings for one output.
pub fn write_options(o: &Output, id: &Identity) -> WriteOptions {
    WriteOptions {
        qcow2_compression: match (o.format, o.compression) {
            (Format::Qcow2, Compression::Zstd) => Qcow2Compression::Zstd,
            (Format::Qcow2, Compression::Deflate) => Qcow2Compression::Deflate,
            _ => Qcow2Compression::None,
        },
        level: o.level.map(|l| l as i32),
        threads: id.threads,
        seed: id.seed,
        timestamp: id.timestamp,
        ova: OvaOptions {
            name: id.name.clone(),
            cpus: o.cpus,
            memory_mib: o.memory_mib,
            // The image boots with UEFI (and BIOS); ask for UEFI.
            uefi: true,
        },
    }
}

/// Write `raw` as output `o` to `dest` (appearing only when complete),
/// reporting progress through `say`.
pub fn write_output(
    raw: &Path,
    o: &Output,
    id: &Identity,
    dest: &Path,
    say: &mut dyn FnMut(&str),
) -> Result<()> {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .context("the destination has no file name")?;
    let dir = match dest.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let opts = write_options(o, id);
    let writer = o.format.info().disk;
    let outer = match o.format.outer(o.compression) {
        Compression::Xz => OuterCompression::Xz,
        Compression::Zstd => OuterCompression::Zstd,
        _ => OuterCompression::None,
    };
    let mut report = |done: u64, total: u64| say(&format!("{}%", done * 100 / total.max(1)));
    if outer == OuterCompression::None {
        return write_image_with_progress(raw, writer, &opts, dest, &mut report)
            .with_context(|| format!("writing {name}"));
    }
    // The inner file keeps its final name (VMDK descriptors name their own
    // file) in a scratch directory that the next run removes if this one
    // is killed.
    let inner_name = name.trim_end_matches(".xz").trim_end_matches(".zst");
    let scratch = dir.join(format!("{}{inner_name}.d", common::atomic::TMP_PREFIX));
    std::fs::create_dir_all(&scratch)?;
    let inner = scratch.join(inner_name);
    let r = write_image_with_progress(raw, writer, &opts, &inner, &mut report)
        .with_context(|| format!("writing {inner_name}"))
        .and_then(|()| {
            say("compressing");
            compress_file(&inner, outer, o.level, id.threads, dest)
                .with_context(|| format!("compressing {name}"))
        });
    crate::fsutil::remove_tree(&scratch)?;
    r
}
