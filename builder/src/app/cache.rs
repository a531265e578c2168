//! `atomicbuild cache list|gc`.

use std::path::PathBuf;

use anyhow::Result;

use crate::cache;
use crate::cli::CacheAction;
use crate::pipeline::default_cache_dir;

/// List or prune the cache.
pub fn run(action: CacheAction, cache_dir: Option<PathBuf>) -> Result<()> {
    let dir = cache_dir.unwrap_or_else(default_cache_dir);
    match action {
        CacheAction::List => {
            let entries = cache::list(&dir)?;
            if entries.is_empty() {
                println!("{}: empty", dir.display());
                return Ok(());
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
            println!(
                "{} entries, {} MiB in {}",
                entries.len(),
                total >> 20,
                dir.display()
            );
        }
        CacheAction::Fsck { json } => {
            let r = cache::fsck(&dir)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                for d in r
                    .entries_dropped
                    .iter()
                    .chain(&r.commits_dropped)
                    .chain(&r.packages_dropped)
                {
                    println!("dropped {d}");
                }
                println!("{}", crate::pipeline::fsck_summary(&r));
            }
        }
        CacheAction::Gc { older_than_days } => {
            let (n, bytes) = cache::gc(&dir, older_than_days)?;
            println!("removed {n} entries, freed {} MiB", bytes >> 20);
        }
    }
    Ok(())
}
