//! The files step: inline contents written directly; downloads streamed to
//! a temporary file while hashed, and renamed into place only when the
//! SHA-256 matches. A file that already has the right bytes, mode and owner
//! is left alone (reruns download nothing).

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, bail, Result};
use sha2::{Digest, Sha256};

use crate::config::{FileEntry, FileSource};
use crate::fsutil::{self, under, Attrs};
use crate::http::{self, Url};
use crate::retry::{Attempt, Retry};

/// Write one `[[files]]` entry under `root`.
pub fn apply(f: &FileEntry, root: &Path, retry: &Retry) -> Result<()> {
    let path = under(root, &f.path);
    let attrs = Attrs {
        mode: f.mode,
        uid: f.uid,
        gid: f.gid,
    };
    match &f.source {
        FileSource::Contents(c) => {
            let changed = fsutil::write(&path, c.expose().as_bytes(), attrs)?;
            crate::log(&format!(
                "files: {}{}",
                f.path.display(),
                if changed { "" } else { " (unchanged)" }
            ));
        }
        FileSource::Url { url, sha256 } => {
            if let Ok(bytes) = fs::read(&path) {
                if Sha256::digest(&bytes).as_slice() == sha256
                    && fsutil::is_same(&path, &bytes, attrs)
                {
                    crate::log(&format!("files: {} (unchanged)", f.path.display()));
                    return Ok(());
                }
            }
            download(url, sha256, &path, attrs, retry)?;
            crate::log(&format!(
                "files: {} from {}",
                f.path.display(),
                url.redacted()
            ));
        }
    }
    Ok(())
}

fn download(url: &Url, sha256: &[u8; 32], path: &Path, attrs: Attrs, retry: &Retry) -> Result<()> {
    let tls: Option<Arc<rustls::ClientConfig>> = if url.https {
        Some(crate::tls::system_config()?)
    } else {
        None
    };
    fsutil::ensure_parent(path)?;
    let tmp = common::atomic::tmp_name(path);
    let result = retry.run(&format!("download of {}", url.redacted()), |deadline| {
        let _ = fs::remove_file(&tmp);
        let resp = http::send("GET", url, &[], b"", tls.as_ref(), deadline)
            .map_err(|e| e.into_attempt())?;
        match resp.status {
            200 => {}
            s if s == 429 || s >= 500 => return Err(Attempt::transient(anyhow!("HTTP {s}"))),
            s => {
                return Err(Attempt::permanent(anyhow!(
                    "{} answered HTTP {s}",
                    url.redacted()
                )))
            }
        }
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(Attempt::permanent)?;
        let mut hasher = Sha256::new();
        let mut body = resp.into_reader();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match body.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Attempt::transient(anyhow!("download interrupted: {e}"))),
            };
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(Attempt::permanent)?;
        }
        let got: [u8; 32] = hasher.finalize().into();
        if &got != sha256 {
            return Err(Attempt::permanent(anyhow!(
                "SHA-256 mismatch: expected {}, got {}; nothing written",
                hex::encode(sha256),
                hex::encode(got)
            )));
        }
        common::atomic::finish(&out, &tmp, path, Some(attrs)).map_err(Attempt::permanent)
    });
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Fail unless every parent of `path` under `root` is a directory or absent.
pub fn check_parents(path: &Path, root: &Path) -> Result<()> {
    let mut p = under(root, path);
    while p.pop() && p.starts_with(root) && p != root {
        if let Ok(md) = fs::metadata(&p) {
            if !md.is_dir() {
                bail!("{} exists and is not a directory", p.display());
            }
        }
    }
    Ok(())
}
