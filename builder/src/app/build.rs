//! `atomicbuild [build] [--upload]`: the build pipeline, then the
//! manifest's `[[upload]]` entries.

use anyhow::{Context, Result};

use crate::cli::BuildArgs;
use crate::formats::Format;
use crate::pipeline::{self, BuildOptions};
use crate::upload;

/// Build, and upload with `--upload`.
pub fn run(args: &BuildArgs) -> Result<()> {
    let manifest = args
        .manifest
        .clone()
        .context("no manifest given: pass --manifest host.toml (see manifests/ for examples)")?;
    let built = pipeline::build(&BuildOptions {
        manifest,
        output: args.output.clone(),
        workdir: args.workdir.clone(),
        cache_dir: args.cache_dir.clone(),
        cache_max: args.cache_max,
        keep_workdir: args.keep_workdir,
        lock: args.lock.clone(),
        no_cache: args.no_cache,
        upload: args.upload,
    })?;
    let m = &built.manifest;
    if !args.upload {
        if !m.uploads.is_empty() {
            eprintln!(
                "{} has {} [[upload]] entries: pass --upload to run them",
                m.path.display(),
                m.uploads.len()
            );
        }
        return Ok(());
    }
    let out_dir = &args.output;
    let file_of = |u: &upload::spec::Upload| match u.format {
        Format::Raw => Ok(built.raw.clone()),
        f => m
            .outputs
            .iter()
            .find(|o| o.format == f)
            .map(|o| out_dir.join(o.file_name(&m.stem())))
            .context("validated: the format has an output"),
    };
    let key = crate::signing::key_of(m.signing.as_ref())?;
    for r in upload::run(&m.uploads, file_of, &built.metadata, key.as_ref())? {
        let copies: String = r.copies.iter().map(|(k, v)| format!(" {k}={v}")).collect();
        println!("{} {} {}{copies}", r.target, r.name, r.image_id);
    }
    Ok(())
}
