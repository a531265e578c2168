//! Formats stage: every `[[output]]` of the manifest, written from the
//! finished raw image by the native writers in `crate::formats`, optionally
//! wrapped in xz or zstd. Each file appears only when complete; all of them
//! are reproducible (identifiers from the image seed, times from
//! SOURCE_DATE_EPOCH).

use std::path::Path;

use anyhow::{Context, Result};

use super::Ctx;
use crate::formats::{self, DiskFormat, OuterCompression, Qcow2Compression, WriteOptions};
use crate::manifest::{Compression, Format, Output};
use crate::output::Artifact;
use crate::{fsutil, output};

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
        ova: formats::OvaOptions {
            name: id.name.clone(),
            cpus: o.cpus,
            memory_mib: o.memory_mib,
            // The image boots with UEFI (and BIOS); ask for UEFI.
            uefi: true,
        },
    }
}

fn disk_format(f: Format) -> DiskFormat {
    match f {
        Format::Raw => DiskFormat::Raw,
        Format::Qcow2 => DiskFormat::Qcow2,
        Format::Vmdk => DiskFormat::VmdkStream,
        Format::VmdkSparse => DiskFormat::VmdkSparse,
        Format::Vdi => DiskFormat::Vdi,
        Format::Vhd => DiskFormat::VhdFixed,
        Format::VhdDynamic => DiskFormat::VhdDynamic,
        Format::Ova => DiskFormat::Ova,
    }
}

/// Write every output of the manifest from `raw` into `out_dir`.
pub fn run(ctx: &Ctx, raw: &Path, out_dir: &Path) -> Result<Vec<Artifact>> {
    let m = ctx.manifest;
    let stage = ctx.progress.stage("formats");
    let mut artifacts = Vec::new();
    let mut seed = [0u8; 32];
    hex::decode_to_slice(m.image_seed(), &mut seed).context("image seed")?;
    let id = Identity {
        name: m.name.clone(),
        seed: Some(seed),
        timestamp: ctx.source_date_epoch,
        threads: 0,
    };
    for o in &m.outputs {
        let name = o.file_name(&m.stem());
        let dest = out_dir.join(&name);
        let label = o.label();
        write_one(raw, o, &id, &dest, &mut |msg| {
            stage.message(&format!("{label}: {msg}"))
        })?;
        artifacts.push(Artifact {
            file: name,
            format: label,
            size: std::fs::metadata(&dest)?.len(),
            allocated: fsutil::allocated_bytes(&dest)?,
            sha256: output::sha256_file(&dest)?,
        });
    }
    stage.finish(
        &artifacts
            .iter()
            .map(|a| format!("{} {} MiB", a.format, a.allocated >> 20))
            .collect::<Vec<_>>()
            .join(", "),
    );
    Ok(artifacts)
}

/// Write `raw` as output `o` to `dest` (appearing only when complete),
/// reporting progress through `say`.
pub fn write_one(
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
        _ => std::path::PathBuf::from("."),
    };
    let opts = write_options(o, id);
    let outer = match (o.format, o.compression) {
        (Format::Qcow2, _) => OuterCompression::None,
        (_, Compression::Xz) => OuterCompression::Xz,
        (_, Compression::Zstd) => OuterCompression::Zstd,
        _ => OuterCompression::None,
    };
    let mut report = |done: u64, total: u64| say(&format!("{}%", done * 100 / total.max(1)));
    if outer == OuterCompression::None {
        return formats::write_image_with_progress(
            raw,
            disk_format(o.format),
            &opts,
            dest,
            &mut report,
        )
        .with_context(|| format!("writing {name}"));
    }
    // The inner file keeps its final name (VMDK descriptors name their own
    // file) in a scratch directory that the next run removes if this one
    // is killed.
    let inner_name = name.trim_end_matches(".xz").trim_end_matches(".zst");
    let scratch = dir.join(format!("{}{inner_name}.d", fsutil::TMP_PREFIX));
    std::fs::create_dir_all(&scratch)?;
    let inner = scratch.join(inner_name);
    let r =
        formats::write_image_with_progress(raw, disk_format(o.format), &opts, &inner, &mut report)
            .with_context(|| format!("writing {inner_name}"))
            .and_then(|()| {
                say("compressing");
                formats::compress_file(&inner, outer, o.level, id.threads, dest)
                    .with_context(|| format!("compressing {name}"))
            });
    fsutil::remove_tree(&scratch)?;
    r
}
