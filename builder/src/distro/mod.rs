//! Distribution backends: how a package set gets into a staging root. The
//! install stage only sees this interface; [`backend`] picks the
//! implementation for the base's distribution. Also owns the `[base]`
//! section of manifests ([`spec`]) and package locks ([`lock`]).

mod debian;
pub(crate) use debian::MERGED_USR_HOOKS;
mod fedora;
mod leave_out;
pub mod lock;
mod names;
mod repokey;
pub mod repos;
pub mod spec;

use std::path::Path;

use anyhow::Result;

use crate::model::Package;
use crate::progress::StageProgress;
use lock::Lock;
use spec::{Base, Distro};

pub use debian::sources as debian_sources;
pub use fedora::RPMDB;

/// SOURCE_DATE_EPOCH for package installation (2024-01-01T00:00:00Z): an
/// installed root is cached and shared by builds with different epochs, so
/// what maintainer scripts derive from it (shadow's last-change dates, file
/// times) must not follow the build's epoch. The image's own times (commit,
/// file systems) still do.
pub const INSTALL_EPOCH: u64 = 1_704_067_200;

/// What to install, and where.
pub struct Install<'a> {
    /// Where packages come from.
    pub base: &'a Base,
    /// The packages asked for (ignored for the set when `lock` is given).
    pub packages: &'a [String],
    /// Install exactly this set.
    pub lock: Option<&'a Lock>,
    /// The empty staging root.
    pub root: &'a Path,
    /// Scratch space for hooks and the package manager's state.
    pub scratch: &'a Path,
    /// Long-lived download cache (packages are kept between builds).
    pub downloads: &'a Path,
    /// Documentation and translations to leave out.
    pub lean: &'a crate::model::Lean,
}

/// What a distribution backend does.
pub trait Backend {
    /// Everything besides the package set that shapes an installed root
    /// (recipe version, sources, repositories): part of its cache key.
    fn key_parts(&self, base: &Base) -> Vec<String>;

    /// Install the packages (exactly the lock's when given) into the empty
    /// root, and return the lock of what was installed. Nothing of the build
    /// host (package indexes, caches) stays in the root.
    fn install(&self, req: &Install, stage: &StageProgress) -> Result<Lock>;

    /// Installed packages, sorted by name.
    fn package_list(&self, root: &Path) -> Result<Vec<Package>>;

    /// What `req.lean` left out of the packages of `lock` just installed.
    fn left_out(&self, req: &Install, lock: &Lock) -> Result<Vec<crate::model::Saving>>;
}

/// The backend for `distro`.
pub fn backend(distro: Distro) -> &'static dyn Backend {
    match distro {
        Distro::Debian => &debian::Debian,
        Distro::Fedora => &fedora::Fedora,
    }
}

/// Lines `NAME\tVERSION\tARCH\tSIZE\tSOURCE\tSOURCE-VERSION` (SIZE in
/// units of `unit` bytes) as packages, sorted by name, version and
/// architecture.
fn parse_package_list(out: &str, unit: u64) -> Vec<Package> {
    let mut v: Vec<Package> = out
        .lines()
        .filter_map(|l| {
            let mut it = l.split('\t');
            let (name, version, arch) = (it.next()?, it.next()?, it.next()?);
            let size = it.next().and_then(|s| s.trim().parse::<u64>().ok());
            let source = it.next().unwrap_or("").trim();
            let source_version = it.next().unwrap_or("").trim();
            Some(Package {
                name: name.into(),
                version: version.into(),
                arch: arch.into(),
                installed_bytes: size.unwrap_or(0) * unit,
                source: if source.is_empty() { name } else { source }.into(),
                source_version: if source_version.is_empty() {
                    version
                } else {
                    source_version
                }
                .into(),
            })
        })
        .collect();
    v.sort_by(|a, b| a.key().cmp(&b.key()));
    v
}

/// rpm's SOURCERPM (`bash-5.2.26-3.fc40.src.rpm`) as (name, version-release).
pub fn split_source_rpm(s: &str) -> Option<(String, String)> {
    let base = s
        .strip_suffix(".src.rpm")
        .or_else(|| s.strip_suffix(".nosrc.rpm"))?;
    let (rest, release) = base.rsplit_once('-')?;
    let (name, version) = rest.rsplit_once('-')?;
    Some((name.to_string(), format!("{version}-{release}")))
}

/// The installed packages of a root, whichever package database it has.
pub fn package_list(root: &Path) -> Result<Vec<Package>> {
    let distro = if root.join(RPMDB).is_dir() {
        Distro::Fedora
    } else {
        Distro::Debian
    };
    backend(distro).package_list(root)
}
