//! Certificates and keys named by the config: inline PEM, a file on the
//! host, or a file that an earlier `[[files]]` entry is going to write.

use std::path::Path;

use anyhow::{Context, Result};

use crate::config::{FileEntry, FileSource, Material, MaterialSource};
use crate::fsutil::under;

/// The PEM bytes of `m`. `None` when the file is downloaded by a
/// `[[files]]` entry and so cannot be read before the files step.
pub fn load(m: &Material, root: &Path, files: &[FileEntry]) -> Result<Option<Vec<u8>>> {
    match &m.source {
        MaterialSource::Inline(s) => Ok(Some(s.expose().as_bytes().to_vec())),
        MaterialSource::File(p) => {
            if let Some(f) = files.iter().find(|f| f.path == *p) {
                return Ok(match &f.source {
                    FileSource::Contents(c) => Some(c.expose().as_bytes().to_vec()),
                    FileSource::Url { .. } => None,
                });
            }
            let host = under(root, p);
            std::fs::read(&host)
                .map(Some)
                .with_context(|| format!("cannot read {}", host.display()))
        }
    }
}

/// Like [`load`], after the files step: the PEM bytes, always.
pub fn load_now(m: &Material, root: &Path) -> Result<Vec<u8>> {
    match &m.source {
        MaterialSource::Inline(s) => Ok(s.expose().as_bytes().to_vec()),
        MaterialSource::File(p) => {
            let host = under(root, p);
            std::fs::read(&host).with_context(|| format!("cannot read {}", host.display()))
        }
    }
}
