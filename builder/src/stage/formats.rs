//! Formats stage: every `[[output]]` of the manifest, written from the
//! finished raw image by the native writers in `crate::formats`, optionally
//! wrapped in xz or zstd. Each file appears only when complete; all of them
//! are reproducible (identifiers from the image seed, times from
//! SOURCE_DATE_EPOCH).

use std::path::Path;

use anyhow::{Context, Result};

use super::{Env, Outcome};
use crate::formats::{self, Identity};
use crate::fsutil;
use crate::manifest::Manifest;
use crate::model::Artifact;

/// The files written.
pub struct Written(pub Vec<Artifact>);

impl Outcome for Written {}

/// Write every output of the manifest from `raw` into `out_dir`.
pub fn run(env: &Env, m: &Manifest, raw: &Path, out_dir: &Path) -> Result<Written> {
    let stage = env.progress.stage("formats");
    let mut artifacts = Vec::new();
    let mut seed = [0u8; 32];
    hex::decode_to_slice(m.image_seed(), &mut seed).context("image seed")?;
    let id = Identity {
        name: m.name.clone(),
        seed: Some(seed),
        timestamp: env.epoch,
        threads: 0,
    };
    for o in &m.outputs {
        let name = o.file_name(&m.stem());
        let dest = out_dir.join(&name);
        let label = o.label();
        formats::write_output(raw, o, &id, &dest, &mut |msg| {
            stage.message(&format!("{label}: {msg}"))
        })?;
        artifacts.push(Artifact {
            file: name,
            format: label,
            size: std::fs::metadata(&dest)?.len(),
            allocated: fsutil::allocated_bytes(&dest)?,
            sha256: fsutil::sha256_file(&dest)?,
        });
    }
    stage.finish(
        &artifacts
            .iter()
            .map(|a| format!("{} {} MiB", a.format, a.allocated >> 20))
            .collect::<Vec<_>>()
            .join(", "),
    );
    Ok(Written(artifacts))
}
