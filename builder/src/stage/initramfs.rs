//! Initramfs stage: find the one installed kernel, build its initramfs once
//! with `dracut --no-hostonly --add ostree --reproducible` inside the root,
//! and put kernel and initramfs where OSTree expects them
//! (`/usr/lib/modules/K/{vmlinuz,initramfs.img}`).

use std::fs;
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::Ctx;
use crate::cmd::Cmd;

/// The kernel the image boots.
pub struct Kernel {
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

/// Build the initramfs and place the kernel.
pub fn run(ctx: &Ctx) -> Result<Kernel> {
    let root = ctx.root();
    let stage = ctx.progress.stage("initramfs");
    let version = kernel_version(&root)?;
    let moddir = root.join("usr/lib/modules").join(&version);
    let vmlinuz = moddir.join("vmlinuz");
    if !vmlinuz.exists() {
        let from = root.join("boot").join(format!("vmlinuz-{version}"));
        fs::copy(&from, &vmlinuz).with_context(|| {
            format!(
                "copying the kernel {} to {}",
                from.display(),
                vmlinuz.display()
            )
        })?;
    }
    let target = format!("/usr/lib/modules/{version}/initramfs.img");
    chroot_with_api_fs(
        &root,
        &[
            "dracut",
            "--no-hostonly",
            "--add",
            "ostree",
            "--reproducible",
            "--force",
            "--kver",
            &version,
            &target,
        ],
    )
    .env("SOURCE_DATE_EPOCH", ctx.source_date_epoch.to_string())
    .run_streaming(|l| stage.message(l))
    .context("building the initramfs with dracut")?;
    // /boot belongs to the boot partition; the tree carries nothing there.
    for e in fs::read_dir(root.join("boot"))? {
        let p = e?.path();
        if p.is_dir() {
            fs::remove_dir_all(&p)?;
        } else {
            fs::remove_file(&p)?;
        }
    }
    let initramfs_bytes = fs::metadata(moddir.join("initramfs.img"))?.len();
    stage.finish(&format!(
        "kernel {version}, initramfs {} MiB",
        initramfs_bytes >> 20
    ));
    Ok(Kernel {
        version,
        initramfs_bytes,
    })
}
