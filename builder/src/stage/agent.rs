//! The first-boot agent every image carries: `atomic-firstboot` (built from
//! this workspace's `firstboot/` crate), its systemd units (provisioning
//! once; growing the root to its disk on every boot) and the etcd drop-in that keeps Debian's etcd from starting unconfigured, installed
//! into the root and the unit enabled. Where the agent looks for its
//! configuration is set by kernel arguments from the `[firstboot]` table.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::fsutil;

const UNIT: &str = include_str!("../../../firstboot/dist/atomic-firstboot.service");
const GROWROOT_UNIT: &str = include_str!("../../../firstboot/dist/atomic-growroot.service");
/// The agent's units, enabled in every image.
pub const UNITS: &[&str] = &["atomic-firstboot.service", "atomic-growroot.service"];
const ETCD_DROPIN: &str =
    include_str!("../../../firstboot/dist/etcd.service.d/10-atomic-firstboot.conf");

/// The agent binary: `$ATOMICBUILD_FIRSTBOOT`, or `atomic-firstboot` next
/// to the running atomicbuild (both are built by `cargo build` at the
/// workspace root).
pub fn binary() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("ATOMICBUILD_FIRSTBOOT") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().context("locating atomicbuild itself")?;
    let p = exe.with_file_name("atomic-firstboot");
    if !p.is_file() {
        bail!(
            "the first-boot agent {} is missing: build the whole workspace (`cargo build --release` in the repository root) or set ATOMICBUILD_FIRSTBOOT",
            p.display()
        );
    }
    Ok(p)
}

/// Install the agent, its unit and the etcd drop-in into `root`.
pub fn install(root: &Path) -> Result<()> {
    let bin = binary()?;
    let put = |rel: &str, mode: u32, write: &dyn Fn(&Path) -> Result<()>| -> Result<()> {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().expect("has parent"))?;
        let _ = fs::remove_file(&p);
        write(&p)?;
        fs::set_permissions(&p, fs::Permissions::from_mode(mode))?;
        std::os::unix::fs::lchown(&p, Some(0), Some(0))
            .with_context(|| format!("setting owner of {}", p.display()))
    };
    put("usr/libexec/atomic-firstboot", 0o755, &|p| {
        fs::copy(&bin, p)
            .map(|_| ())
            .with_context(|| format!("copying {} into the image", bin.display()))
    })?;
    put(
        "usr/lib/systemd/system/atomic-firstboot.service",
        0o644,
        &|p| fsutil::replace_file(p, UNIT),
    )?;
    put(
        "usr/lib/systemd/system/atomic-growroot.service",
        0o644,
        &|p| fsutil::replace_file(p, GROWROOT_UNIT),
    )?;
    put(
        "usr/lib/systemd/system/etcd.service.d/10-atomic-firstboot.conf",
        0o644,
        &|p| fsutil::replace_file(p, ETCD_DROPIN),
    )?;
    Ok(())
}
