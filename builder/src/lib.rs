//! atomicbuild: builds immutable, OSTree-based container-host OS images from
//! one TOML manifest. See README.md for the manifest reference.
#![deny(missing_docs)]

pub mod cli;
pub mod cmd;
pub mod disk;
pub mod fsutil;
pub mod manifest;
pub mod output;
pub mod pipeline;
pub mod preflight;
pub mod progress;
pub mod qemu;
pub mod stage;

use anyhow::Result;

/// Run the parsed command line.
pub fn run(cli: cli::Cli) -> Result<()> {
    cmd::set_verbose(cli.verbose);
    match cli.command {
        None => {
            pipeline::build(&cli.build)?;
        }
        Some(cli::Command::Build(args)) => {
            pipeline::build(&args)?;
        }
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
                m.outputs
                    .iter()
                    .map(|f| format!("{f:?}").to_lowercase())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        Some(cli::Command::Boot(args)) => qemu::boot_interactive(&args)?,
    }
    Ok(())
}
