//! One `[[output]]` written from a finished raw image: the writer the format
//! table names, with the output's compression (inside qcow2, an outer xz or
//! zstd stream otherwise). Used by the formats stage and by `convert`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::pass::{Job, Timing};
use super::{
    spec::Output, Compression, Format, OuterCompression, OvaOptions, Qcow2Compression, WriteOptions,
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
) -> Result<Timing> {
    let t = write_outputs(raw, &[(o, dest.to_owned())], id, say)?;
    t.into_iter().next().context("internal error: no timing")
}

/// Write `raw` as every output `(o, dest)` in one pass (see
/// [`super::pass`]); `say` gets a one-line summary about four times a
/// second. Returns what each output took, in order.
pub fn write_outputs(
    raw: &Path,
    outputs: &[(&Output, PathBuf)],
    id: &Identity,
    say: &mut dyn FnMut(&str),
) -> Result<Vec<Timing>> {
    let mut jobs = Vec::new();
    for (o, dest) in outputs {
        dest.file_name()
            .with_context(|| format!("{}: the destination has no file name", dest.display()))?;
        jobs.push(Job {
            label: o.label(),
            format: o.format.info().disk,
            opts: write_options(o, id),
            outer: match o.format.outer(o.compression) {
                Compression::Xz => OuterCompression::Xz,
                Compression::Zstd => OuterCompression::Zstd,
                _ => OuterCompression::None,
            },
            outer_level: o.level,
            dest: dest.clone(),
        });
    }
    super::pass::run(raw, &jobs, say)
}
