//! Scratch directories outside the work directory (GnuPG homes, the
//! verify command's rebuild) that a killed process cannot remove: each is
//! named after its owner's process id, and the next one made with the same
//! prefix removes those whose owner is gone.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use tempfile::TempDir;

/// A new directory `PREFIX.PID.RANDOM` in `base`, removed when dropped;
/// first removes `PREFIX.*` directories there whose process has ended.
pub fn owned_tempdir(base: &Path, prefix: &str) -> Result<TempDir> {
    sweep(base, prefix);
    tempfile::Builder::new()
        .prefix(&format!("{prefix}.{}.", std::process::id()))
        .tempdir_in(base)
        .with_context(|| format!("creating a scratch directory in {}", base.display()))
}

/// Remove what killed processes left (best effort: another user's
/// directory, or one being removed meanwhile, is not this run's concern).
fn sweep(base: &Path, prefix: &str) {
    let Ok(rd) = fs::read_dir(base) else {
        return;
    };
    let start = format!("{prefix}.");
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(&start)
            .and_then(|rest| rest.split('.').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !alive(pid) && e.file_type().is_ok_and(|t| t.is_dir()) {
            let _ = super::remove_tree(&e.path());
        }
    }
}

/// Whether process `pid` exists.
fn alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_owner_s_directory_is_swept_a_live_one_and_others_kept() {
        let base = tempfile::tempdir().unwrap();
        let b = base.path();
        // No process has the highest pid the kernel allows (2^22).
        let dead = b.join("ab-test.4194304.x1");
        let live = b.join(format!("ab-test.{}.x2", std::process::id()));
        let other = b.join("ab-testing.4194304.x3");
        let legacy = b.join("ab-test.Xy12Ab");
        for d in [&dead, &live, &other, &legacy] {
            fs::create_dir_all(d.join("private-keys-v1.d")).unwrap();
        }
        let t = owned_tempdir(b, "ab-test").unwrap();
        assert!(!dead.exists());
        assert!(live.is_dir() && other.is_dir() && legacy.is_dir());
        let name = t.path().file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with(&format!("ab-test.{}.", std::process::id())),
            "{name}"
        );
        let p = t.path().to_owned();
        drop(t);
        assert!(!p.exists());
    }
}
