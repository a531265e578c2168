//! Install stage: the manifest's packages into a fresh staging root.
//!
//! Debian: `mmdebstrap --mode=root --variant=minbase` with recommends off,
//! the kernel's initramfs hooks diverted to no-op stubs (the initramfs is
//! built once, later, by the initramfs stage), downloaded .debs kept in the
//! cache between runs. Installed roots are cached too, keyed by a hash of
//! everything that goes into them, as commits in the object store; a hit
//! checks the cached root out with hard links (see `objects`).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::Ctx;
use crate::cmd::Cmd;
use crate::fsutil;
use crate::lock::Lock;
use crate::manifest::{Distro, Manifest};
use crate::objects;

/// Bump when the way a root is installed changes (invalidates cached roots).
const INSTALL_RECIPE: &str = "debian-install-v4"; // v4: fixed INSTALL_EPOCH, no apt indexes

/// SOURCE_DATE_EPOCH for package installation (2024-01-01T00:00:00Z): an
/// installed root is cached and shared by builds with different epochs, so
/// what maintainer scripts derive from it (shadow's last-change dates, file
/// times) must not follow the build's epoch. The image's own times (commit,
/// file systems) still do.
pub const INSTALL_EPOCH: u64 = 1_704_067_200;

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

/// The installed staging root.
pub struct Installed {
    /// The exact package set that was installed.
    pub lock: Lock,
    /// Path of the root directory.
    pub root: PathBuf,
    /// Whether the tree came from the cache.
    pub cache_hit: bool,
    /// The cache key of this root.
    pub key: String,
    /// With the cache on, the root is a hard-linked checkout of the cached
    /// commit; this maps its files to their checksums (see `objects`).
    pub devino: Option<ostree::RepoDevInoCache>,
}

/// The object-store ref that keeps a cached installed root alive.
pub fn root_ref(key: &str) -> String {
    format!("atomicbuild/install/{key}")
}

/// The cache key of an installed root: every input that shapes it (with a
/// lock, the exact pinned set instead of the manifest's names).
pub fn cache_key(m: &Manifest, lock: Option<&Lock>) -> String {
    let b = &m.base;
    let mut pkgs = m.packages.clone();
    pkgs.sort();
    if let Some(l) = lock {
        pkgs.push("--lock--".into());
        pkgs.extend(
            l.packages
                .iter()
                .map(|p| format!("{}={}:{}:{}", p.name, p.version, p.arch, p.sha256)),
        );
    }
    let parts = [
        INSTALL_RECIPE.to_string(),
        format!("{:?}", b.distro),
        b.release.clone(),
        b.mirror.clone().unwrap_or_default(),
        b.security_mirror.clone().unwrap_or_default(),
        b.components.join(","),
        pkgs.join(","),
        DIVERT_HOOK.into(),
        UNDIVERT_HOOK.into(),
    ];
    let mut h = crate::cache::KeyHasher::new();
    for p in parts {
        h.put(p);
    }
    h.finish()
}

/// Check that a lock fits the manifest before any work.
pub fn check_lock(m: &Manifest, lock: &Lock) -> Result<()> {
    let distro = format!("{:?}", m.base.distro).to_lowercase();
    if lock.distro != distro || lock.release != m.base.release {
        bail!(
            "the lock is for {} {} but the manifest builds {distro} {}; use a lock written by a build of this manifest",
            lock.distro,
            lock.release,
            m.base.release
        );
    }
    for p in &m.packages {
        if !lock.packages.iter().any(|l| &l.name == p) {
            bail!("package {p} is in the manifest but not in the lock; build once without --lock to write a new lock");
        }
    }
    Ok(())
}

/// Install the packages into `ctx.root()`, exactly the locked set if a lock
/// is given.
pub fn run(ctx: &Ctx, lock: Option<&Lock>) -> Result<Installed> {
    let m = ctx.manifest;
    if m.base.distro != Distro::Debian {
        bail!("only Debian bases can be installed so far");
    }
    let key = cache_key(m, lock);
    let root = ctx.root();
    let stage = ctx.progress.stage("install");
    let cache = crate::cache::StageCache::new(&ctx.cache_dir);
    let store = ctx.object_store();
    if ctx.use_cache {
        if let Some(entry) = cache.get("install", &key)? {
            let repo = objects::open_or_create(&store)?;
            let commit = fs::read_to_string(entry.join("commit")).unwrap_or_default();
            let cached_lock = Lock::load(&entry.join("lock.toml"));
            match cached_lock {
                Ok(l) if objects::has_complete_commit(&repo, commit.trim()) => {
                    stage.message("checking out the cached root");
                    let devino = objects::checkout_linked(&repo, commit.trim(), &root)?;
                    stage.finish("cached root");
                    return Ok(Installed {
                        lock: l,
                        root,
                        cache_hit: true,
                        key,
                        devino: Some(devino),
                    });
                }
                _ => stage.message("the cached root is incomplete; reinstalling"),
            }
        }
    }
    let includes = match lock {
        Some(l) => l.apt_pins(),
        None => m.packages.clone(),
    };

    let debs = ctx
        .cache_dir
        .join("debs")
        .join(format!("debian-{}", m.base.release));
    fs::create_dir_all(&debs).with_context(|| format!("creating {}", debs.display()))?;
    let hooks = ctx.workdir.join("hooks");
    fs::create_dir_all(&hooks)?;
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
        .arg(format!("--components={}", m.base.components.join(",")))
        .arg(format!("--include={}", includes.join(",")))
        .arg(format!(
            "--setup-hook=sync-in {debs_s} /var/cache/apt/archives/"
        ))
        .arg(format!("--essential-hook={}", divert.display()))
        .arg(format!("--customize-hook={}", undivert.display()))
        .arg(format!(
            "--customize-hook=sync-out /var/cache/apt/archives {debs_s}"
        ))
        .arg(&m.base.release)
        .arg(&root)
        .args(sources(m))
        .env("SOURCE_DATE_EPOCH", INSTALL_EPOCH.to_string());
    if let Err(e) = cmd.run_streaming(|l| stage.message(l)) {
        if let Some(pkg) = missing_pinned_version(&e.to_string()) {
            bail!("the lock no longer resolves: the mirror does not have {pkg} any more; build once without --lock to write a new lock ({e})");
        }
        return Err(anyhow::Error::new(e).context("installing packages with mmdebstrap"));
    }
    let installed_lock = crate::lock::from_debian_root(&root, &m.base.release)?;
    if let Some(l) = lock {
        l.check_installed(&installed_lock)
            .context("the installed packages differ from the lock")?;
    }

    // Keep the pristine root for the next build with the same inputs: as a
    // commit in the object store, checked out again with hard links so this
    // build's commit stage already skips the unchanged files. Without the
    // cache the same happens in a private repository, so that every build
    // sees the same tree (an OSTree checkout has all mtimes 0, and dracut
    // copies mtimes into the initramfs).
    stage.message("saving the installed root to the cache");
    for d in BUILD_HOST_DIRS {
        crate::stage::customize::empty_dir(&root.join(d))?;
    }
    // Package indexes: needed by apt only, which never runs again here.
    for d in ["var/lib/apt/lists", "var/cache/apt"] {
        crate::stage::customize::empty_dir(&root.join(d))?;
    }
    let repo = objects::open_or_create(&store)?;
    let commit = objects::commit_tree(
        &repo,
        &root,
        None,
        &objects::CommitSpec {
            ref_: &root_ref(&key),
            subject: "installed root",
            metadata: &[("atomicbuild.install-key", key.as_str())],
            timestamp: 0,
        },
    )
    .context("saving the installed root")?;
    if ctx.use_cache {
        let tmp = ctx.workdir.join("install-entry");
        fs::create_dir_all(&tmp)?;
        fs::write(tmp.join("commit"), &commit)?;
        fs::write(tmp.join("lock.toml"), installed_lock.to_toml()?)?;
        cache.put(
            "install",
            &key,
            &[
                ("commit", &tmp.join("commit")),
                ("lock.toml", &tmp.join("lock.toml")),
            ],
        )?;
        fsutil::remove_tree(&tmp)?;
    }
    stage.message("checking out the installed root");
    fsutil::remove_tree(&root)?;
    let devino = objects::checkout_linked(&repo, &commit, &root)?;
    stage.finish("");
    Ok(Installed {
        lock: installed_lock,
        root,
        cache_hit: false,
        key,
        devino: Some(devino),
    })
}

/// Directories whose contents belong to the build host, never the image.
pub const BUILD_HOST_DIRS: &[&str] = &["dev", "proc", "sys", "run", "tmp"];

/// From apt's "Version 'V' for 'P' was not found", the `P=V` it names.
fn missing_pinned_version(err: &str) -> Option<String> {
    let i = err.find("Version '")?;
    let rest = &err[i + 9..];
    let (ver, rest) = rest.split_once("' for '")?;
    let (pkg, _) = rest.split_once("' was not found")?;
    Some(format!("{pkg}={ver}"))
}

/// The apt source lines for the manifest's Debian base.
pub fn sources(m: &Manifest) -> Vec<String> {
    let b = &m.base;
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

fn write_hook(dir: &Path, name: &str, body: &str) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    fs::write(&p, body)?;
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755))?;
    Ok(p)
}

/// Installed packages as `(name, version, architecture)`, sorted by name.
pub fn package_list(root: &Path) -> Result<Vec<(String, String, String)>> {
    let admindir = root.join("var/lib/dpkg");
    let out = Cmd::new("dpkg-query")
        .arg(format!("--admindir={}", admindir.display()))
        .args(["-W", "-f", "${Package}\\t${Version}\\t${Architecture}\\n"])
        .output_string()
        .context("listing installed packages")?;
    let mut v: Vec<(String, String, String)> = out
        .lines()
        .filter_map(|l| {
            let mut it = l.split('\t');
            Some((it.next()?.into(), it.next()?.into(), it.next()?.into()))
        })
        .collect();
    v.sort();
    Ok(v)
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

#[cfg(test)]
mod key_tests {
    use super::*;

    fn manifest(pkgs: &str) -> Manifest {
        let src = format!(
            "[image]\nname = \"t\"\nversion = \"1\"\n[base]\ndistro = \"debian\"\nrelease = \"bookworm\"\n[packages]\ninclude = [{pkgs}]\n[ostree]\nref = \"r\"\nosname = \"debian\"\n"
        );
        crate::manifest::parse_str(&src, Path::new("t.toml"), Path::new("."), "x".into()).unwrap()
    }

    #[test]
    fn install_key_follows_package_set_not_order_or_other_sections() {
        let base = "\"linux-image-amd64\", \"systemd-sysv\", \"ostree-boot\", \"dracut\"";
        let a = cache_key(&manifest(base), None);
        let reordered = "\"dracut\", \"linux-image-amd64\", \"systemd-sysv\", \"ostree-boot\"";
        assert_eq!(a, cache_key(&manifest(reordered), None));
        let more = format!("{base}, \"etcd-server\"");
        assert_ne!(a, cache_key(&manifest(&more), None));
        let lock = Lock {
            version: 1,
            distro: "debian".into(),
            release: "bookworm".into(),
            packages: vec![],
        };
        assert_ne!(a, cache_key(&manifest(base), Some(&lock)));
    }
}
