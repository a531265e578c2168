//! Initramfs stage: find the one installed kernel, build its initramfs once
//! with `dracut --no-hostonly --add ostree --reproducible` inside the root,
//! and put kernel and initramfs where OSTree expects them
//! (`/usr/lib/modules/K/{vmlinuz,initramfs.img}`).

use std::fs;
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::Ctx;
use crate::cmd::Cmd;

/// Bump when the way the initramfs is made changes.
const INITRAMFS_RECIPE: &str = "dracut-v2"; // v2: runs on an OSTree checkout (mtimes 0)

/// Configuration that shapes the initramfs besides the installed packages:
/// dracut's and modprobe's drop-ins, wherever they came from (packages or
/// overlays). Other /etc changes (hostname, users) do not reach a
/// `--no-hostonly` initramfs.
const DRACUT_INPUTS: &[&str] = &[
    "etc/dracut.conf",
    "etc/dracut.conf.d",
    "usr/lib/dracut/dracut.conf.d",
    "etc/modprobe.d",
    "usr/lib/modprobe.d",
];

/// The cache key of the initramfs: installed root, kernel, dracut config.
pub fn cache_key(install_key: &str, root: &Path, kernel: &str) -> Result<String> {
    let mut h = crate::cache::KeyHasher::new();
    h.put(INITRAMFS_RECIPE).put(install_key).put(kernel);
    for rel in DRACUT_INPUTS {
        let p = root.join(rel);
        if p.is_dir() {
            h.put_tree(root, &p)?;
        } else if p.is_file() {
            h.put(rel).put(fs::read(&p)?);
        }
    }
    Ok(h.finish())
}

/// The kernel the image boots.
pub struct Kernel {
    /// Whether the initramfs came from the cache.
    pub cache_hit: bool,
    /// `uname -r` of the kernel.
    pub version: String,
    /// Size of the initramfs in bytes.
    pub initramfs_bytes: u64,
}

/// Mount /dev, /proc and /sys into the root inside a private mount namespace
/// (gone when the process exits, however it exits), then run the command.
const CHROOT_WITH_API_FS: &str = r#"set -e
r="$1"; shift
mount --rbind /dev "$r/dev"
mount -t proc proc "$r/proc"
mount -t sysfs sysfs "$r/sys"
mount -t tmpfs tmpfs "$r/run"
exec chroot "$r" "$@""#;

/// Run `argv` chrooted into `root` with API file systems mounted privately.
pub fn chroot_with_api_fs(root: &Path, argv: &[&str]) -> Cmd {
    Cmd::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            CHROOT_WITH_API_FS,
            "sh",
        ])
        .arg(root)
        .args(argv)
}

/// The single kernel version installed under `root`.
pub fn kernel_version(root: &Path) -> Result<String> {
    let dir = root.join("usr/lib/modules");
    let mut versions: Vec<String> = fs::read_dir(&dir)
        .with_context(|| {
            format!(
                "reading {} (is a kernel package in packages.include?)",
                dir.display()
            )
        })?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("modules.dep").is_file() || e.path().join("kernel").is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    versions.sort();
    match versions.len() {
        0 => bail!("no kernel is installed in the image; add a kernel package (linux-image-amd64) to packages.include"),
        1 => Ok(versions.remove(0)),
        _ => bail!("several kernels are installed ({}); install exactly one kernel package", versions.join(", ")),
    }
}

/// Build the initramfs (or take it from the cache) and place the kernel.
pub fn run(ctx: &Ctx, install_key: &str) -> Result<Kernel> {
    let root = ctx.root();
    let stage = ctx.progress.stage("initramfs");
    let version = kernel_version(&root)?;
    let moddir = root.join("usr/lib/modules").join(&version);
    let vmlinuz = moddir.join("vmlinuz");
    if !vmlinuz.exists() {
        let from = root.join("boot").join(format!("vmlinuz-{version}"));
        // A second link to the same file: no copy, and in a hard-linked
        // checkout the commit stage still knows its checksum.
        fs::hard_link(&from, &vmlinuz).with_context(|| {
            format!(
                "linking the kernel {} to {}",
                from.display(),
                vmlinuz.display()
            )
        })?;
    }
    let key = cache_key(install_key, &root, &version)?;
    let cache = crate::cache::StageCache::new(&ctx.cache_dir);
    let img = moddir.join("initramfs.img");
    let hit = match ctx.use_cache {
        true => cache.get("initramfs", &key)?,
        false => None,
    };
    let cache_hit = hit.is_some();
    // Never write through a file of the hard-linked checkout.
    let _ = fs::remove_file(&img);
    if let Some(entry) = hit {
        stage.message("using the cached initramfs");
        fs::copy(entry.join("initramfs.img"), &img)?;
    } else {
        build(ctx, &root, &version, &stage)?;
        cache.put("initramfs", &key, &[("initramfs.img", &img)])?;
    }
    clean_boot(&root)?;
    let initramfs_bytes = fs::metadata(&img)?.len();
    stage.finish(&format!(
        "kernel {version}, initramfs {} MiB{}",
        initramfs_bytes >> 20,
        if cache_hit { ", cached" } else { "" }
    ));
    Ok(Kernel {
        cache_hit,
        version,
        initramfs_bytes,
    })
}

fn build(
    ctx: &Ctx,
    root: &Path,
    version: &str,
    stage: &crate::progress::StageProgress,
) -> Result<()> {
    let target = format!("/usr/lib/modules/{version}/initramfs.img");
    chroot_with_api_fs(
        root,
        &[
            "dracut",
            "--no-hostonly",
            "--add",
            "ostree",
            "--reproducible",
            "--force",
            "--kver",
            version,
            &target,
        ],
    )
    .env("SOURCE_DATE_EPOCH", ctx.source_date_epoch.to_string())
    .run_streaming(|l| stage.message(l))
    .context("building the initramfs with dracut")?;
    Ok(())
}

/// /boot belongs to the boot partition; the tree carries nothing there.
fn clean_boot(root: &Path) -> Result<()> {
    for e in fs::read_dir(root.join("boot"))? {
        let p = e?.path();
        if p.is_dir() {
            fs::remove_dir_all(&p)?;
        } else {
            fs::remove_file(&p)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("etc/dracut.conf.d")).unwrap();
        fs::create_dir_all(d.path().join("etc/systemd")).unwrap();
        fs::write(
            d.path().join("etc/dracut.conf.d/10-x.conf"),
            "add_drivers+=\" virtio_blk \"\n",
        )
        .unwrap();
        fs::write(d.path().join("etc/hostname"), "a\n").unwrap();
        d
    }

    #[test]
    fn key_follows_dracut_config_and_upstream_only() {
        let d = tree();
        let k = cache_key("install-a", d.path(), "6.1.0").unwrap();
        assert_eq!(k, cache_key("install-a", d.path(), "6.1.0").unwrap());
        // Upstream (installed root) or kernel changes invalidate it.
        assert_ne!(k, cache_key("install-b", d.path(), "6.1.0").unwrap());
        assert_ne!(k, cache_key("install-a", d.path(), "6.2.0").unwrap());
        // Unrelated /etc changes (an overlay file, the hostname) do not.
        fs::write(d.path().join("etc/hostname"), "b\n").unwrap();
        fs::write(d.path().join("etc/systemd/x.conf"), "y\n").unwrap();
        assert_eq!(k, cache_key("install-a", d.path(), "6.1.0").unwrap());
        // A dracut or modprobe drop-in does.
        fs::write(
            d.path().join("etc/dracut.conf.d/10-x.conf"),
            "add_drivers+=\" nvme \"\n",
        )
        .unwrap();
        let k2 = cache_key("install-a", d.path(), "6.1.0").unwrap();
        assert_ne!(k, k2);
        fs::create_dir_all(d.path().join("etc/modprobe.d")).unwrap();
        fs::write(d.path().join("etc/modprobe.d/b.conf"), "blacklist floppy\n").unwrap();
        assert_ne!(k2, cache_key("install-a", d.path(), "6.1.0").unwrap());
    }
}
