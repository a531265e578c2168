//! Distribution backends: how a manifest's packages get into the staging
//! root. The install stage (and everything after it) only sees this
//! interface; `backend` picks the implementation for the manifest's distro.

mod debian;
mod fedora;

use std::path::Path;

use anyhow::Result;

use crate::lock::Lock;
use crate::manifest::{Distro, Manifest};
use crate::progress::StageProgress;
use crate::stage::Ctx;

pub use debian::sources as debian_sources;
pub use fedora::RPMDB;

/// What a distribution backend does.
pub trait Backend {
    /// Everything besides the package set that shapes an installed root
    /// (recipe version, sources, repositories): part of its cache key.
    fn key_parts(&self, m: &Manifest) -> Vec<String>;

    /// Install the manifest's packages (exactly `lock`'s when given) into
    /// the empty `root`, and return the lock of what was installed. Nothing
    /// of the build host (package indexes, caches) stays in the root.
    fn install(
        &self,
        ctx: &Ctx,
        lock: Option<&Lock>,
        root: &Path,
        stage: &StageProgress,
    ) -> Result<Lock>;

    /// Installed packages as `(name, version, architecture)`, sorted.
    fn package_list(&self, root: &Path) -> Result<Vec<(String, String, String)>>;
}

/// The backend for `distro`.
pub fn backend(distro: Distro) -> &'static dyn Backend {
    match distro {
        Distro::Debian => &debian::Debian,
        Distro::Fedora => &fedora::Fedora,
    }
}

/// The installed packages of a root, whichever package database it has.
pub fn package_list(root: &Path) -> Result<Vec<(String, String, String)>> {
    let distro = if root.join(RPMDB).is_dir() {
        Distro::Fedora
    } else {
        Distro::Debian
    };
    backend(distro).package_list(root)
}
