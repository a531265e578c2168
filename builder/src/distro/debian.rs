//! Debian backend: `mmdebstrap --mode=root --variant=minbase` with
//! recommends off, the kernel's initramfs hooks diverted to no-op stubs (the
//! initramfs is built once, later, by the initramfs stage), downloaded .debs
//! kept in the cache between runs.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::lock::Lock;
use super::repokey::Form;
use super::spec::Base;
use super::{Backend, Install};
use crate::model::{Package, Saving};
use crate::progress::StageProgress;
use common::cmd::Cmd;

/// Bump when the way a root is installed changes (invalidates cached roots).
/// v4: fixed INSTALL_EPOCH, no apt indexes; v5: merged /usr by mmdebstrap's
/// hook (see [`MERGED_USR_HOOKS`]).
const RECIPE: &str = "debian-install-v5";

/// mmdebstrap's merged-/usr hooks: the root gets the /bin, /sbin, /lib
/// symlinks before the essential packages and the (empty) `usr-is-merged`
/// package, which satisfies init-system-helpers' `usrmerge |
/// usr-is-merged`. Without them apt takes `usrmerge`, whose conversion
/// script pulls in perl, perl-modules and libperl (47 MB installed) that
/// nothing else on a container host uses.
pub(crate) const MERGED_USR_HOOKS: &str = "/usr/share/mmdebstrap/hooks/merged-usr";

/// Runs inside the root after the essential packages are in: divert the
/// kernel's initramfs hooks to stubs that do nothing (dracut's own postinst
/// calls its hook by path, so a stub must stay in place).
const DIVERT_HOOK: &str = r#"#!/bin/sh
set -e
mkdir -p "$1/etc/kernel/postinst.d"
for h in dracut initramfs-tools; do
  chroot "$1" dpkg-divert --quiet --local --rename \
    --divert "/etc/kernel/postinst.d/$h.atomicbuild-diverted" \
    --add "/etc/kernel/postinst.d/$h"
  printf '#!/bin/sh\nexit 0\n' > "$1/etc/kernel/postinst.d/$h"
  chmod 755 "$1/etc/kernel/postinst.d/$h"
done
"#;

/// Runs after all packages are in: remove the stubs and undo the diversions.
const UNDIVERT_HOOK: &str = r#"#!/bin/sh
set -e
for h in dracut initramfs-tools; do
  rm -f "$1/etc/kernel/postinst.d/$h"
  chroot "$1" dpkg-divert --quiet --local --rename --remove "/etc/kernel/postinst.d/$h"
done
"#;

pub struct Debian;

impl Backend for Debian {
    fn key_parts(&self, b: &Base) -> Vec<String> {
        vec![
            RECIPE.to_string(),
            b.release.clone(),
            b.mirror.clone().unwrap_or_default(),
            b.security_mirror.clone().unwrap_or_default(),
            b.components.join(","),
            DIVERT_HOOK.into(),
            UNDIVERT_HOOK.into(),
        ]
        .into_iter()
        .chain(b.apt_repos.iter().map(|r| r.key_part()))
        .collect()
    }

    fn install(&self, req: &Install, stage: &StageProgress) -> Result<Lock> {
        let (base, lock, root) = (req.base, req.lock, req.root);
        let includes = match lock {
            Some(l) => l.apt_pins(),
            None => req.packages.to_vec(),
        };

        let debs = req
            .downloads
            .join("debs")
            .join(format!("debian-{}", base.release));
        fs::create_dir_all(&debs).with_context(|| format!("creating {}", debs.display()))?;
        let hooks = req.scratch.join("hooks");
        fs::create_dir_all(&hooks)?;
        let extra = extra_sources(base, req.scratch, stage)?;
        let divert = write_hook(&hooks, "divert.sh", DIVERT_HOOK)?;
        let undivert = write_hook(&hooks, "undivert.sh", UNDIVERT_HOOK)?;
        let debs_s = debs.to_string_lossy();
        let cmd = Cmd::new("unshare")
            .args(["--mount", "--propagation", "private", "--"])
            .arg("mmdebstrap")
            .args([
                "--mode=root",
                "--variant=minbase",
                "--aptopt=APT::Install-Recommends \"false\"",
                "--aptopt=Acquire::Retries \"3\"",
                "--skip=download/empty",
                "--skip=essential/unlink",
                "--skip=cleanup/apt/lists",
                "--setup-hook=mkdir -p \"$1\"/var/cache/apt/archives/",
            ])
            .arg(format!("--hook-dir={MERGED_USR_HOOKS}"))
            .args(super::leave_out::mmdebstrap_args(req.lean))
            .arg(format!("--components={}", base.components.join(",")))
            .arg(format!("--include={}", includes.join(",")))
            .arg(format!(
                "--setup-hook=sync-in {debs_s} /var/cache/apt/archives/"
            ))
            .arg(format!("--essential-hook={}", divert.display()))
            .arg(format!("--customize-hook={}", undivert.display()))
            .arg(format!(
                "--customize-hook=sync-out /var/cache/apt/archives {debs_s}"
            ))
            .arg(&base.release)
            .arg(root)
            .args(sources(base))
            .args(extra.iter().map(|(line, _, _)| line))
            .env("SOURCE_DATE_EPOCH", super::INSTALL_EPOCH.to_string());
        if let Err(e) = cmd.run_streaming(|l| stage.message(l)) {
            let text = e.to_string();
            if let Some(pkg) = missing_pinned_version(&text) {
                bail!("the lock no longer resolves: the mirror does not have {pkg} any more; build once without --lock to write a new lock ({e})");
            }
            let e = anyhow::Error::new(e).context("installing packages with mmdebstrap");
            return Err(
                match base.apt_repos.iter().find(|r| text.contains(&r.uri)) {
                    Some(r) => e.context(format!("repository \"{}\" ({}) failed", r.name, r.uri)),
                    None => e,
                },
            );
        }
        keep_keyrings(root, &extra)?;
        let origins: Vec<(String, String)> = base
            .apt_repos
            .iter()
            .map(|r| (r.uri.clone(), r.name.clone()))
            .collect();
        let installed_lock = super::lock::from_debian_root(root, &base.release, &origins)?;
        if let Some(l) = lock {
            l.check_installed(&installed_lock)
                .context("the installed packages differ from the lock")?;
        }
        // Package indexes: needed by apt only, which never runs again here.
        for d in ["var/lib/apt/lists", "var/cache/apt"] {
            crate::fsutil::empty_dir(&root.join(d))?;
        }
        Ok(installed_lock)
    }

    fn left_out(&self, req: &Install, lock: &Lock) -> Result<Vec<Saving>> {
        let debs = req
            .downloads
            .join("debs")
            .join(format!("debian-{}", req.base.release));
        super::leave_out::debian_savings(&debs, lock, req.lean)
    }

    fn package_list(&self, root: &Path) -> Result<Vec<Package>> {
        package_list(root)
    }
}

/// From apt's "Version 'V' for 'P' was not found", the `P=V` it names.
fn missing_pinned_version(err: &str) -> Option<String> {
    let i = err.find("Version '")?;
    let rest = &err[i + 9..];
    let (ver, rest) = rest.split_once("' for '")?;
    let (pkg, _) = rest.split_once("' was not found")?;
    Some(format!("{pkg}={ver}"))
}

/// The apt source lines for a Debian base.
pub fn sources(b: &Base) -> Vec<String> {
    let comps = b.components.join(" ");
    let mirror = b
        .mirror
        .as_deref()
        .unwrap_or("http://deb.debian.org/debian");
    let mut v = vec![format!("deb {mirror} {} {comps}", b.release)];
    if !matches!(b.release.as_str(), "sid" | "unstable" | "experimental") {
        v.push(format!("deb {mirror} {}-updates {comps}", b.release));
        if let Some(sec) = &b.security_mirror {
            v.push(format!("deb {sec} {}-security {comps}", b.release));
        }
    }
    v
}

/// The extra repositories' source lines, each with its pinned keyring
/// (checked against the repository's signed release file first) and the
/// path the keyring gets in the image.
fn extra_sources(
    base: &Base,
    scratch: &Path,
    stage: &StageProgress,
) -> Result<Vec<(String, PathBuf, String)>> {
    let dir = scratch.join("keys");
    let mut v = Vec::new();
    for r in &base.apt_repos {
        stage.message(&format!(
            "repository {}: checking its key and signed release file",
            r.name
        ));
        let keyring =
            super::repokey::pinned(&r.name, &r.signed_by, &r.fingerprint, &dir, Form::Keyring)?;
        super::repokey::check_release(r, &keyring, &dir)?;
        let in_image = format!("/etc/apt/keyrings/atomicbuild-{}.gpg", r.name);
        v.push((r.source_line(&keyring), keyring, in_image));
    }
    Ok(v)
}

/// Put the extra repositories' keyrings into the image and point its
/// sources.list at them (apt read them from the scratch directory).
fn keep_keyrings(root: &Path, extra: &[(String, PathBuf, String)]) -> Result<()> {
    if extra.is_empty() {
        return Ok(());
    }
    let list = root.join("etc/apt/sources.list");
    let mut text = fs::read_to_string(&list).unwrap_or_default();
    for (_, keyring, in_image) in extra {
        let dest = root.join(in_image.trim_start_matches('/'));
        fs::create_dir_all(dest.parent().expect("has parent"))?;
        crate::fsutil::replace_file(&dest, fs::read(keyring)?)?;
        text = text.replace(&keyring.display().to_string(), in_image);
    }
    crate::fsutil::replace_file(&list, text)
}

fn write_hook(dir: &Path, name: &str, body: &str) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    fs::write(&p, body)?;
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755))?;
    Ok(p)
}

/// Installed packages, sorted by name.
pub fn package_list(root: &Path) -> Result<Vec<Package>> {
    let admindir = root.join("var/lib/dpkg");
    let out = Cmd::new("dpkg-query")
        .arg(format!("--admindir={}", admindir.display()))
        .args([
            "-W",
            "-f",
            "${Package}\\t${Version}\\t${Architecture}\\t${Installed-Size}\\t${source:Package}\\t${source:Version}\\n",
        ])
        .output_string()
        .context("listing installed packages")?;
    // Installed-Size is in KiB.
    Ok(super::parse_package_list(&out, 1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apt_missing_version_is_named() {
        let e = "E: Version '1.2-3' for 'etcd-server' was not found";
        assert_eq!(
            missing_pinned_version(e).as_deref(),
            Some("etcd-server=1.2-3")
        );
        assert_eq!(missing_pinned_version("E: something else"), None);
    }
}
