//! The build stages, one module each. Every stage takes typed inputs and
//! returns a typed artifact; `pipeline::build` calls them in order.

pub mod agent;
pub mod commit;
pub mod customize;
pub mod deploy;
pub mod formats;
pub mod initramfs;
pub mod install;
pub mod shape;

use std::path::PathBuf;

use crate::manifest::Manifest;
use crate::progress::Progress;

/// What every stage may look at.
pub struct Ctx<'a> {
    /// The validated manifest.
    pub manifest: &'a Manifest,
    /// Scratch space for this build (wiped at start).
    pub workdir: PathBuf,
    /// Long-lived cache (downloaded packages, installed roots).
    pub cache_dir: PathBuf,
    /// Progress reporting.
    pub progress: &'a Progress,
    /// Whether stage results may be taken from the cache (`--no-cache` off).
    pub use_cache: bool,
    /// Timestamp for commits and generated files (SOURCE_DATE_EPOCH or now).
    pub source_date_epoch: u64,
}

impl Ctx<'_> {
    /// The staging root the install stage fills and later stages shape.
    pub fn root(&self) -> PathBuf {
        self.workdir.join("root")
    }

    /// The OSTree repository commits go to: the shared object store in the
    /// cache, or with the cache off a private one in the work directory.
    pub fn object_store(&self) -> PathBuf {
        match self.use_cache {
            true => self.cache_dir.join("repo"),
            false => self.workdir.join("repo"),
        }
    }
}
