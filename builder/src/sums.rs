//! `SHA256SUMS` beside a build's outputs (the format `sha256sum -c` reads)
//! and, with a `[signing]` key, its armored detached signature
//! `SHA256SUMS.asc`, which `gpg --verify SHA256SUMS.asc SHA256SUMS` checks.
//! The sums cover every output, the SBOM, the metadata and the lock, so
//! the signature covers them all. A stale signature is removed before the
//! sums change: the pair on disk is either matching or unsigned.

use std::path::Path;

use anyhow::Result;

use crate::signing::Key;

/// The sums' file name.
pub const FILE: &str = "SHA256SUMS";
/// The detached signature's file name.
pub const SIGNATURE: &str = "SHA256SUMS.asc";

/// `SHA256SUMS` text of (sha256, file name) pairs.
pub fn text(entries: &[(String, String)]) -> String {
    entries
        .iter()
        .map(|(sum, file)| format!("{sum}  {file}\n"))
        .collect()
}

/// Replace `dir`'s `SHA256SUMS` by `text`, signed with `key` when given.
pub fn write(dir: &Path, text: &str, key: Option<&Key>) -> Result<()> {
    let sig = dir.join(SIGNATURE);
    match std::fs::remove_file(&sig) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(anyhow::Error::new(e).context(format!("removing {}", sig.display())))
        }
        _ => {}
    }
    let sums = dir.join(FILE);
    common::atomic::write(&sums, text.as_bytes())?;
    if let Some(k) = key {
        k.detach_sign(&sums, &sig)?;
    }
    Ok(())
}

/// Whether `dir` holds sums, and a signature exactly when `signed`.
pub fn present(dir: &Path, signed: bool) -> bool {
    dir.join(FILE).is_file() && dir.join(SIGNATURE).is_file() == signed
}
