//! Shape stage: give the root the layout an OSTree deployment needs.
//!
//! `/etc` moves to `/usr/etc` (OSTree merges it into each deployment's
//! `/etc`); the package database moves into `/usr`; `/var` is emptied and
//! its skeleton becomes a tmpfiles.d snippet with numeric owners (OSTree
//! never touches `/var` after the first deploy); the top-level directories
//! that must be writable become symlinks into `/var`; an SELinux module
//! store moves from `/var` into `/etc` ([`super::policy_store`]).

use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::{Env, Outcome};
use crate::fsutil;

/// tmpfiles.d snippet that recreates /var's skeleton.
pub const VAR_TMPFILES: &str = "usr/lib/tmpfiles.d/atomicbuild-var.conf";
/// Where the dpkg database lives in the image.
pub const DPKG_DB: &str = "usr/lib/sysimage/dpkg";

/// Summary of what shaping did.
pub struct Shaped {
    /// Lines in the /var tmpfiles snippet.
    pub var_entries: usize,
    /// Regular files dropped from /var (caches, logs).
    pub var_files_dropped: usize,
}

impl Outcome for Shaped {}

/// Top-level directories that become links into /var or /run.
const TOPLEVEL_LINKS: &[(&str, &str, &str)] = &[
    // (name, link target, tmpfiles line for the target or "")
    ("home", "var/home", "d /var/home 0755 0 0 -"),
    ("opt", "var/opt", "d /var/opt 0755 0 0 -"),
    ("srv", "var/srv", "d /var/srv 0755 0 0 -"),
    ("mnt", "var/mnt", "d /var/mnt 0755 0 0 -"),
    ("root", "var/roothome", "d /var/roothome 0700 0 0 -"),
    ("media", "run/media", ""),
];

/// Shape `env.root()` in place.
pub fn run(env: &Env) -> Result<Shaped> {
    let root = env.root();
    let stage = env.progress.stage("shape");
    if !fsutil::mounts_under(&root)?.is_empty() {
        bail!(
            "something is still mounted below {}; refusing to reshape it",
            root.display()
        );
    }
    let mut tmpfiles = String::from(
        "# Written by atomicbuild: the /var skeleton of the image, recreated at boot.\n",
    );

    // Package database into /usr, linked back from /var.
    let dpkg = root.join("var/lib/dpkg");
    if dpkg.is_dir() {
        let dst = root.join(DPKG_DB);
        fs::create_dir_all(dst.parent().expect("has parent"))?;
        fs::rename(&dpkg, &dst).context("moving the dpkg database into /usr")?;
        writeln!(tmpfiles, "L /var/lib/dpkg - - - - ../../{DPKG_DB}")?;
    }
    let policies = super::policy_store::into_etc(&root)?;
    let dropped = var_to_tmpfiles(&root, &mut tmpfiles)?;
    toplevel_links(&root, &mut tmpfiles)?;
    usr_local(&root, &mut tmpfiles)?;

    // /etc → /usr/etc.
    let usr_etc = root.join("usr/etc");
    if usr_etc.exists() {
        bail!(
            "{} already exists; the tree was shaped twice?",
            usr_etc.display()
        );
    }
    fs::rename(root.join("etc"), &usr_etc).context("moving /etc to /usr/etc")?;
    crate::failpoint::hit("shape.etc-moved");

    // OSTree's own mount points.
    for (name, mode) in [("sysroot", 0o755), ("boot", 0o755), ("tmp", 0o1777)] {
        let p = root.join(name);
        if !p.exists() {
            fs::create_dir(&p)?;
        }
        fs::set_permissions(&p, fs::Permissions::from_mode(mode))?;
    }
    let ostree_link = root.join("ostree");
    if fs::symlink_metadata(&ostree_link).is_err() {
        std::os::unix::fs::symlink("sysroot/ostree", &ostree_link)?;
    }

    let tf = root.join(VAR_TMPFILES);
    fs::create_dir_all(tf.parent().expect("has parent"))?;
    fsutil::replace_file(&tf, &tmpfiles)?;
    let var_entries = tmpfiles.lines().filter(|l| !l.starts_with('#')).count();
    check_special_files(&root)?;
    let store = match policies.is_empty() {
        true => String::new(),
        false => format!("; SELinux module store of {} in /etc", policies.join(", ")),
    };
    stage.finish(&format!(
        "{var_entries} /var entries, {dropped} files dropped from /var{store}"
    ));
    Ok(Shaped {
        var_entries,
        var_files_dropped: dropped,
    })
}

/// /var → tmpfiles.d lines, dropping regular files (caches, logs, apt
/// lists); /var is emptied. Returns how many files were dropped.
fn var_to_tmpfiles(root: &Path, tmpfiles: &mut String) -> Result<usize> {
    let var = root.join("var");
    let mut dropped = 0;
    let mut entries = Vec::new();
    fsutil::walk_sorted(&var, &mut |p, md| {
        let rel = Path::new("/var").join(p.strip_prefix(&var).expect("below var"));
        let rel = rel.display();
        let ft = md.file_type();
        if ft.is_dir() {
            entries.push(format!(
                "d {rel} {:04o} {} {} -",
                md.mode() & 0o7777,
                md.uid(),
                md.gid()
            ));
        } else if ft.is_symlink() {
            let t = fs::read_link(p)?;
            entries.push(format!("L {rel} - - - - {}", t.display()));
        } else {
            dropped += 1;
        }
        Ok(())
    })?;
    for e in &entries {
        writeln!(tmpfiles, "{e}")?;
    }
    for e in fs::read_dir(&var)? {
        let p = e?.path();
        if fs::symlink_metadata(&p)?.is_dir() {
            fs::remove_dir_all(&p)?;
        } else {
            fs::remove_file(&p)?;
        }
    }
    Ok(dropped)
}

/// Top-level writable directories become links into /var.
fn toplevel_links(root: &Path, tmpfiles: &mut String) -> Result<()> {
    for (name, target, line) in TOPLEVEL_LINKS {
        let p = root.join(name);
        if let Ok(md) = fs::symlink_metadata(&p) {
            if md.is_dir() {
                fs::remove_dir_all(&p)?;
            } else {
                fs::remove_file(&p)?;
            }
        }
        std::os::unix::fs::symlink(target, &p)?;
        if !line.is_empty() {
            writeln!(tmpfiles, "{line}")?;
        }
    }
    Ok(())
}

/// /usr/local → /var/usrlocal, keeping its skeleton.
fn usr_local(root: &Path, tmpfiles: &mut String) -> Result<()> {
    let local = root.join("usr/local");
    writeln!(tmpfiles, "d /var/usrlocal 0755 0 0 -")?;
    if fs::symlink_metadata(&local)
        .map(|m| m.is_dir())
        .unwrap_or(false)
    {
        fsutil::walk_sorted(&local, &mut |p, md| {
            let rel = Path::new("/var/usrlocal").join(p.strip_prefix(&local).expect("below"));
            if md.is_dir() {
                writeln!(
                    tmpfiles,
                    "d {} {:04o} {} {} -",
                    rel.display(),
                    md.mode() & 0o7777,
                    md.uid(),
                    md.gid()
                )?;
            } else if md.file_type().is_symlink() {
                writeln!(
                    tmpfiles,
                    "L {} - - - - {}",
                    rel.display(),
                    fs::read_link(p)?.display()
                )?;
            }
            Ok(())
        })?;
        fs::remove_dir_all(&local)?;
    }
    if fs::symlink_metadata(&local).is_err() {
        std::os::unix::fs::symlink("../var/usrlocal", &local)?;
    }
    Ok(())
}

/// OSTree cannot commit device nodes, sockets or fifos: name the first one.
fn check_special_files(root: &Path) -> Result<()> {
    let mut bad = None;
    fsutil::walk_sorted(root, &mut |p, md| {
        let ft = md.file_type();
        if bad.is_none() && !(ft.is_dir() || ft.is_file() || ft.is_symlink()) {
            bad = Some(p.to_owned());
        }
        Ok(())
    })?;
    match bad {
        Some(p) => bail!("{} is a device node, socket or fifo, which an OSTree commit cannot hold; remove it (an overlay or package left it)", p.display()),
        None => Ok(()),
    }
}
