//! atomicbuild: builds immutable, OSTree-based container-host OS images from
//! one TOML manifest. See README.md for the manifest reference.
#![deny(missing_docs)]

pub mod cache;
pub mod cli;
pub mod cmd;
pub mod disk;
pub mod distro;
pub mod formats;
pub mod fsutil;
pub mod lock;
pub mod manifest;
pub mod objects;
pub mod output;
pub mod pipeline;
pub mod preflight;
pub mod progress;
pub mod qemu;
pub mod stage;
pub mod upload;
pub mod verify;

use anyhow::Result;

/// Run the parsed command line.
pub fn run(cli: cli::Cli) -> Result<()> {
    cmd::set_verbose(cli.verbose);
    match cli.command {
        None => build(&cli.build)?,
        Some(cli::Command::Build(args)) => build(&args)?,
        Some(cli::Command::Validate { manifest }) => {
            let m = manifest::load(&manifest)?;
            println!(
                "{}: ok ({} {}, {:?} {}, {} packages, {} users, outputs: {})",
                manifest.display(),
                m.name,
                m.version,
                m.base.distro,
                m.base.release,
                m.packages.len(),
                m.users.len(),
                std::iter::once("raw".to_string())
                    .chain(m.outputs.iter().map(|o| o.label()))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        Some(cli::Command::Verify {
            manifest,
            lock,
            output,
        }) => verify::verify(&manifest, &lock, &output)?,
        Some(cli::Command::Cache { action, cache_dir }) => {
            let dir = cache_dir.unwrap_or_else(pipeline::default_cache_dir);
            match action {
                cli::CacheAction::List => {
                    let entries = cache::list(&dir)?;
                    if entries.is_empty() {
                        println!("{}: empty", dir.display());
                    }
                    let mut total = 0;
                    for e in &entries {
                        total += e.bytes;
                        println!(
                            "{:<10} {}  {:>8} MiB  last used {}",
                            e.kind,
                            &e.key[..16.min(e.key.len())],
                            e.bytes >> 20,
                            e.last_used
                        );
                    }
                    if !entries.is_empty() {
                        println!(
                            "{} entries, {} MiB in {}",
                            entries.len(),
                            total >> 20,
                            dir.display()
                        );
                    }
                }
                cli::CacheAction::Gc { older_than_days } => {
                    let (n, bytes) = cache::gc(&dir, older_than_days)?;
                    println!("removed {n} entries, freed {} MiB", bytes >> 20);
                }
            }
        }
        Some(cli::Command::Convert(a)) => convert(&a)?,
        Some(cli::Command::Boot(args)) => qemu::boot_interactive(&args)?,
        Some(cli::Command::Upload(cli::UploadCommand::Aws(args))) => upload::upload_aws(&args)?,
        Some(cli::Command::Upload(cli::UploadCommand::Openstack(args))) => {
            upload::upload_openstack(&args)?
        }
    }
    Ok(())
}

/// `atomicbuild build [--upload]`.
fn build(args: &cli::BuildArgs) -> Result<()> {
    let built = pipeline::build(args)?;
    let m = &built.manifest;
    if args.upload {
        for r in upload::run_manifest(m, &built.metadata)? {
            let copies: String = r.copies.iter().map(|(k, v)| format!(" {k}={v}")).collect();
            println!("{} {} {}{copies}", r.target, r.name, r.image_id);
        }
    } else if !m.uploads.is_empty() {
        eprintln!(
            "{} has {} [[upload]] entries: pass --upload to run them",
            m.path.display(),
            m.uploads.len()
        );
    }
    Ok(())
}

/// `atomicbuild convert`.
fn convert(a: &cli::ConvertArgs) -> Result<()> {
    use anyhow::Context;
    use manifest::{Compression as C, Format as F};
    match (a.format, a.compression) {
        (F::Qcow2, C::Xz) => {
            anyhow::bail!("qcow2 compresses its clusters: use --compression zstd or deflate")
        }
        (F::Ova | F::Raw, c) if c != C::None => {
            anyhow::bail!("{:?} cannot be compressed", a.format)
        }
        (f, C::Deflate) if f != F::Qcow2 => {
            anyhow::bail!("deflate is for qcow2 only; use xz or zstd")
        }
        _ => {}
    }
    let seed = match &a.seed {
        Some(h) => {
            let mut s = [0u8; 32];
            hex::decode_to_slice(h, &mut s).context("--seed takes 64 hex digits")?;
            Some(s)
        }
        None => None,
    };
    let o = manifest::Output {
        format: a.format,
        compression: a.compression,
        level: a.level,
        cpus: 2,
        memory_mib: 2048,
    };
    let id = stage::formats::Identity {
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
    stage::formats::write_one(&a.image, &o, &id, &a.output, &mut |_| {})?;
    eprintln!(
        "wrote {} ({}) in {:.1}s",
        a.output.display(),
        o.label(),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
