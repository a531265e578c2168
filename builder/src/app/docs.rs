//! `atomicbuild completions SHELL` and `atomicbuild man DIR`: generated from
//! the clap definitions, so they never drift from `--help`.

use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::cli::Cli;

/// Print the completion script for `shell`.
pub fn completions(shell: clap_complete::Shell) -> Result<()> {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "atomicbuild", &mut std::io::stdout());
    Ok(())
}

/// Write `atomicbuild.1` and a page per subcommand (nested ones as
/// `atomicbuild-upload-aws.1`) into `dir`, each file complete or absent.
pub fn man(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cmd = Cli::command();
    cmd.build();
    let mut written = Vec::new();
    page(&cmd, "atomicbuild", dir, &mut written)?;
    for w in &written {
        println!("{}", w.display());
    }
    Ok(())
}

/// Render `cmd` as page `name`.1, then its subcommands as `name-SUB`.1.
fn page(
    cmd: &clap::Command,
    name: &str,
    dir: &Path,
    written: &mut Vec<std::path::PathBuf>,
) -> Result<()> {
    let mut text = Vec::new();
    let bin = name.replace('-', " ");
    clap_mangen::Man::new(cmd.clone().bin_name(&bin))
        .title(name.to_uppercase())
        .render(&mut text)
        .with_context(|| format!("rendering the man page of {bin}"))?;
    let path = dir.join(format!("{name}.1"));
    common::atomic::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
    written.push(path);
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        page(sub, &format!("{name}-{}", sub.get_name()), dir, written)?;
    }
    Ok(())
}
