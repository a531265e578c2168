//! Formats stage: every `[[output]]` of the manifest, written from the
//! finished raw image by the native writers in `crate::formats` in one pass
//! (each data block read once, all writers at once), optionally wrapped in
//! xz or zstd. Each file appears only when complete; all of them are
//! reproducible (identifiers from the image seed, times from
//! SOURCE_DATE_EPOCH), whatever the thread count.

use std::path::Path;

use anyhow::{Context, Result};

use super::{Env, Outcome};
use crate::formats::{self, Identity};
use crate::fsutil;
use crate::manifest::Manifest;
use crate::model::{Artifact, OutputTime};

/// The files written and what each took.
pub struct Written {
    /// Each output, in manifest order.
    pub artifacts: Vec<Artifact>,
    /// What writing each took, in the same order.
    pub times: Vec<OutputTime>,
}

impl Outcome for Written {}

/// Write every output of the manifest from `raw` into `out_dir`.
pub fn run(env: &Env, m: &Manifest, raw: &Path, out_dir: &Path) -> Result<Written> {
    let stage = env.progress.stage("formats");
    let mut seed = [0u8; 32];
    hex::decode_to_slice(m.image_seed(), &mut seed).context("image seed")?;
    let id = Identity {
        name: m.name.clone(),
        seed: Some(seed),
        timestamp: env.epoch,
        threads: 0,
    };
    let outputs: Vec<_> = m
        .outputs
        .iter()
        .map(|o| (o, out_dir.join(o.file_name(&m.stem()))))
        .collect();
    let timings = formats::write_outputs(raw, &outputs, &id, &mut |msg| stage.message(msg))?;
    let mut artifacts = Vec::new();
    let mut times = Vec::new();
    for ((o, dest), t) in outputs.iter().zip(timings) {
        let file = o.file_name(&m.stem());
        artifacts.push(Artifact {
            file: file.clone(),
            format: o.label(),
            size: std::fs::metadata(dest)?.len(),
            allocated: fsutil::allocated_bytes(dest)?,
            sha256: fsutil::sha256_file(dest)?,
        });
        times.push(OutputTime {
            file,
            wall_seconds: round1(t.wall.as_secs_f64()),
            cpu_seconds: round1(t.cpu.as_secs_f64()),
        });
    }
    stage.finish(
        &artifacts
            .iter()
            .zip(&times)
            .map(|(a, t)| {
                format!(
                    "{} {} MiB {:.0}s/{:.0}s CPU",
                    a.format,
                    a.allocated >> 20,
                    t.wall_seconds,
                    t.cpu_seconds
                )
            })
            .collect::<Vec<_>>()
            .join(", "),
    );
    Ok(Written { artifacts, times })
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}
