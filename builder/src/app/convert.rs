//! `atomicbuild convert`: the writers a build uses, on any raw image; with
//! several `--to`, every output in one pass as the formats stage writes them.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::ValueEnum;

use crate::cli::ConvertArgs;
use crate::formats::{self, Compression, Format, Identity, Output};

/// Convert `--image` into `--output`, or into every `--to`.
pub fn run(a: &ConvertArgs) -> Result<()> {
    let mut outputs = Vec::new();
    if let (Some(format), Some(dest)) = (a.format, &a.output) {
        outputs.push((output(format, a.compression, a.level)?, dest.clone()));
    }
    for spec in &a.to {
        outputs.push(parse_to(spec, a.level).with_context(|| format!("--to {spec}"))?);
    }
    let seed = match &a.seed {
        Some(h) => {
            let mut s = [0u8; 32];
            hex::decode_to_slice(h, &mut s).context("--seed takes 64 hex digits")?;
            Some(s)
        }
        None => None,
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
    let jobs: Vec<(&Output, PathBuf)> = outputs.iter().map(|(o, d)| (o, d.clone())).collect();
    let start = std::time::Instant::now();
    let times = formats::write_outputs(&a.image, &jobs, &id, &mut |_| {})?;
    for ((o, dest), t) in jobs.iter().zip(times) {
        eprintln!(
            "wrote {} ({}) in {:.1}s ({:.1}s CPU)",
            dest.display(),
            o.label(),
            t.wall.as_secs_f64(),
            t.cpu.as_secs_f64()
        );
    }
    if jobs.len() > 1 {
        eprintln!(
            "{} outputs in {:.1}s",
            jobs.len(),
            start.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

fn output(format: Format, compression: Compression, level: Option<u32>) -> Result<Output> {
    if let Err(why) = format.check_compression(compression) {
        bail!(
            "--format {} --compression {}: {why}",
            format.name(),
            compression.name()
        );
    }
    Ok(Output {
        format,
        compression,
        level,
        cpus: 2,
        memory_mib: 2048,
    })
}

/// `FORMAT[+COMPRESSION]=FILE`.
fn parse_to(spec: &str, level: Option<u32>) -> Result<(Output, PathBuf)> {
    let (what, file) = spec
        .split_once('=')
        .context("expected FORMAT[+COMPRESSION]=FILE")?;
    let (f, c) = what.split_once('+').unwrap_or((what, "none"));
    let format = Format::from_str(f, true).map_err(|_| {
        let names: Vec<_> = formats::FORMATS.iter().map(|i| i.name).collect();
        anyhow::anyhow!("unknown format {f:?} (one of {})", names.join(", "))
    })?;
    let compression = Compression::from_str(c, true)
        .map_err(|_| anyhow::anyhow!("unknown compression {c:?} (none, xz, zstd, deflate)"))?;
    if file.is_empty() {
        bail!("no file after '='");
    }
    Ok((output(format, compression, level)?, PathBuf::from(file)))
}
