//! `atomicbuild convert`: the writers a build uses, on any raw image.

use anyhow::{Context, Result};

use crate::cli::ConvertArgs;
use crate::formats::{self, Identity, Output};

/// Convert `--image` into `--output`.
pub fn run(a: &ConvertArgs) -> Result<()> {
    if let Err(why) = a.format.check_compression(a.compression) {
        anyhow::bail!(
            "--format {} --compression {}: {why}",
            a.format.name(),
            a.compression.name()
        );
    }
    let seed = match &a.seed {
        Some(h) => {
            let mut s = [0u8; 32];
            hex::decode_to_slice(h, &mut s).context("--seed takes 64 hex digits")?;
            Some(s)
        }
        None => None,
    };
    let o = Output {
        format: a.format,
        compression: a.compression,
        level: a.level,
        cpus: 2,
        memory_mib: 2048,
    };
    let id = Identity {
        name: a
            .image
            .file_stem()
            .map_or("image".into(), |s| s.to_string_lossy().into_owned()),
        seed,
        timestamp: std::env::var("SOURCE_DATE_EPOCH")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        threads: a.threads,
    };
    let t = std::time::Instant::now();
    formats::write_output(&a.image, &o, &id, &a.output, &mut |_| {})?;
    eprintln!(
        "wrote {} ({}) in {:.1}s",
        a.output.display(),
        o.label(),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
