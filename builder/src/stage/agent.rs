//! The agents every image carries, built from this workspace:
//! `atomic-firstboot` (provisioning from user data, once; growing the root
//! to its disk, every boot) and `atomic-update` (signed updates with
//! automatic rollback), with their systemd units, the etcd drop-in that
//! keeps Debian's etcd from starting unconfigured, and the
//! `/usr/sbin/grub-mkconfig` through which ostree's grub2 backend has the
//! update agent write `grub.cfg`, and the hook through which `atomicbuild
//! test` runs its checks (idle unless QEMU passes a check script). With `[updates]`, the agent's settings
//! and the trusted public keys too. Where the first-boot agent looks for
//! its configuration is set by kernel arguments from `[firstboot]`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::fsutil;
use crate::updates::{Updates, KEYS_DIR, SETTINGS_FILE};

/// The agents' units, enabled in every image.
pub const UNITS: &[&str] = &[
    "atomic-firstboot.service",
    "atomic-growroot.service",
    "atomic-images.service",
    "atomic-update.service",
    "atomicbuild-test.service",
];

/// Where the agents' binaries go in the image.
pub const BINARIES: &[&str] = &["usr/libexec/atomic-firstboot", "usr/libexec/atomic-update"];

/// Every file [`install`] writes whatever the manifest (paths in the
/// image): the binaries and the units and helpers.
pub fn installed_files() -> Vec<&'static str> {
    BINARIES
        .iter()
        .copied()
        .chain(FILES.iter().map(|(p, _, _)| *p))
        .collect()
}

/// Files installed as they are: (path in the image, mode, contents).
const FILES: &[(&str, u32, &str)] = &[
    (
        "usr/lib/systemd/system/atomic-firstboot.service",
        0o644,
        include_str!("../../../firstboot/dist/atomic-firstboot.service"),
    ),
    (
        "usr/lib/systemd/system/atomic-growroot.service",
        0o644,
        include_str!("../../../firstboot/dist/atomic-growroot.service"),
    ),
    (
        "usr/lib/systemd/system/atomic-images.service",
        0o644,
        include_str!("../../../firstboot/dist/atomic-images.service"),
    ),
    (
        "usr/lib/systemd/system/etcd.service.d/10-atomic-firstboot.conf",
        0o644,
        include_str!("../../../firstboot/dist/etcd.service.d/10-atomic-firstboot.conf"),
    ),
    (
        "usr/lib/systemd/system/atomic-update.service",
        0o644,
        include_str!("../../../updater/dist/atomic-update.service"),
    ),
    (
        "usr/lib/systemd/system/atomicbuild-test.service",
        0o644,
        include_str!("../../dist/atomicbuild-test.service"),
    ),
    (
        "usr/sbin/grub-mkconfig",
        0o755,
        include_str!("../../../updater/dist/grub-mkconfig"),
    ),
];

/// An agent binary: `$ENV`, or `name` next to the running atomicbuild
/// (both are built by `cargo build` at the workspace root).
fn agent_binary(name: &str, env: &str) -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().context("locating atomicbuild itself")?;
    let p = exe.with_file_name(name);
    if !p.is_file() {
        bail!(
            "the agent {} is missing: build the whole workspace (`cargo build --release` in the repository root) or set {env}",
            p.display()
        );
    }
    Ok(p)
}

/// The first-boot agent: `$ATOMICBUILD_FIRSTBOOT` or beside atomicbuild.
pub fn binary() -> Result<PathBuf> {
    agent_binary("atomic-firstboot", "ATOMICBUILD_FIRSTBOOT")
}

/// The update agent: `$ATOMICBUILD_UPDATE` or beside atomicbuild.
pub fn update_binary() -> Result<PathBuf> {
    agent_binary("atomic-update", "ATOMICBUILD_UPDATE")
}

/// Put `write`'s file at `root/rel`, root-owned with `mode`, never writing
/// through an existing file (it may be a cached object).
fn put(root: &Path, rel: &str, mode: u32, write: &dyn Fn(&Path) -> Result<()>) -> Result<()> {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().expect("has parent"))?;
    let _ = fs::remove_file(&p);
    write(&p)?;
    fs::set_permissions(&p, fs::Permissions::from_mode(mode))?;
    std::os::unix::fs::lchown(&p, Some(0), Some(0))
        .with_context(|| format!("setting owner of {}", p.display()))
}

/// A window's tz database zone must be in the image: the agent reads it
/// there.
fn check_zone(root: &Path, zone: &str) -> Result<()> {
    if let Ok(common::fleet::ZoneSpec::Named(n)) = common::fleet::parse_zone(zone) {
        let f = root.join("usr/share/zoneinfo").join(&n);
        if !f.is_file() {
            anyhow::bail!(
                "[updates.window] time_zone \"{n}\": the image has no /usr/share/zoneinfo/{n} (install tzdata through [packages], or write the zone as UTC or +HH:MM)"
            );
        }
    }
    Ok(())
}

/// Install the agents, their units and files (and with `updates`, the
/// update settings and keys) into `root`.
pub fn install(root: &Path, updates: Option<&Updates>) -> Result<()> {
    for (rel, bin) in [(BINARIES[0], binary()?), (BINARIES[1], update_binary()?)] {
        put(root, rel, 0o755, &|p| {
            fs::copy(&bin, p)
                .map(|_| ())
                .with_context(|| format!("copying {} into the image", bin.display()))
        })?;
    }
    for (rel, mode, text) in FILES {
        put(root, rel, *mode, &|p| fsutil::replace_file(p, text))?;
    }
    let Some(u) = updates else {
        return Ok(());
    };
    if let Some(w) = &u.window {
        check_zone(root, &w.time_zone)?;
    }
    put(root, SETTINGS_FILE, 0o644, &|p| {
        fsutil::replace_file(p, u.settings_toml())
    })?;
    let keys = KEYS_DIR.trim_start_matches('/');
    for (i, k) in u.keys.iter().enumerate() {
        let text = fs::read(k).with_context(|| format!("reading {}", k.display()))?;
        put(root, &format!("{keys}/{i:02}.asc"), 0o644, &|p| {
            fsutil::replace_file(p, &text)
        })?;
    }
    Ok(())
}
