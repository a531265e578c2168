//! The commands: one dispatch `match` over the parsed command line, each
//! command in a few lines that call the layers below (the build pipeline,
//! `verify`, QEMU, uploads, the cache, the format writers).

mod boot;
mod build;
mod cache;
mod convert;
mod docs;
mod publish;
mod test;
mod upload;

use anyhow::Result;

use crate::cli::{Cli, Command, UploadCommand};
use crate::model::Metadata;
use crate::{diff, manifest, verify};

/// Run the parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    common::cmd::set_verbose(cli.verbose);
    match cli.command {
        None => build::run(&cli.build),
        Some(Command::Build(args)) => build::run(&args),
        Some(Command::Validate { manifest }) => validate(&manifest),
        Some(Command::Verify {
            manifest,
            lock,
            output,
            json,
        }) => verify::verify(&manifest, &lock, &output, json),
        Some(Command::Cache { action, cache_dir }) => cache::run(action, cache_dir),
        Some(Command::Convert(a)) => convert::run(&a),
        Some(Command::Boot(args)) => boot::run(&args),
        Some(Command::Upload(UploadCommand::Aws(args))) => upload::aws(&args),
        Some(Command::Upload(UploadCommand::Openstack(args))) => upload::openstack(&args),
        Some(Command::Publish(args)) => publish::run(&args),
        Some(Command::Diff {
            old,
            new,
            format,
            json,
        }) => {
            let (a, b) = (Metadata::load(&old)?, Metadata::load(&new)?);
            let format = if json { diff::DiffFormat::Json } else { format };
            print!("{}", diff::diff(&a, &b).render(format));
            Ok(())
        }
        Some(Command::Test(args)) => test::run(&args),
        Some(Command::Completions { shell }) => docs::completions(shell),
        Some(Command::Man { dir }) => docs::man(&dir),
    }
}

/// `atomicbuild validate`.
fn validate(path: &std::path::Path) -> Result<()> {
    let m = manifest::load(path)?;
    println!(
        "{}: ok ({} {}, {:?} {}, {} packages, {} users, outputs: {})",
        path.display(),
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
    Ok(())
}
