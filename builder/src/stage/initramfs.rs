//! Initramfs stage: find the one installed kernel, build its initramfs once
//! with `dracut --no-hostonly --add ostree --reproducible --no-compress`
//! (for the container-host module profile only ext4, no crypt/dm; see
//! [`dracut_args`]) inside the root, compress it here with multithreaded zstd (dracut's
//! default, single-threaded `gzip -9`, took 56 of its 63 seconds), and put
//! kernel and initramfs where OSTree expects them
//! (`/usr/lib/modules/K/{vmlinuz,initramfs.img}`).

use std::fs;
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::install::Installed;
use super::{Env, Outcome};
use crate::model::{Lean, ModuleProfile};
use common::cmd::Cmd;

/// Bump when the way the initramfs is made changes.
/// v2: runs on an OSTree checkout (mtimes 0); v3: zstd-compressed here;
/// v4: the container-host module profile's initramfs (see [`dracut_args`]).
const INITRAMFS_RECIPE: &str = "dracut-v4";

/// zstd level of the initramfs: level 3 is smaller than dracut's `gzip -9`
/// (37.6 vs 39.3 MB for the default image) and takes under a second.
const INITRAMFS_ZSTD_LEVEL: i32 = 3;

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

impl Outcome for Kernel {
    fn cached(&self) -> bool {
        self.cache_hit
    }
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

/// dracut's arguments for `version`, written to `target`. With the
/// container-host module profile (a host in a VM or cloud) the initramfs
/// holds only what mounts an atomicbuild root: ext4 (the root and /boot
/// are always ext4; the ESP is not mounted before the switch to the root),
/// and no LUKS/device-mapper, NVDIMM, hibernation resume, virtiofs root or
/// FC LUN masking; the storage drivers stay (every bus a cloud or
/// hypervisor presents the disk on). The `all` profile keeps dracut's
/// generic initramfs (every file system, crypt, dm).
pub fn dracut_args(lean: &Lean, version: &str, target: &str) -> Vec<String> {
    let mut args: Vec<String> = ["--no-hostonly", "--add", "ostree"]
        .map(String::from)
        .to_vec();
    if lean.modules == ModuleProfile::ContainerHost {
        args.extend(
            [
                "--filesystems",
                "ext4",
                "--omit",
                "crypt dm nvdimm resume virtiofs lunmask",
            ]
            .map(String::from),
        );
    }
    args.extend(
        [
            "--reproducible",
            "--no-compress",
            "--force",
            "--kver",
            version,
            target,
        ]
        .map(String::from),
    );
    args
}

/// Build the initramfs (or take it from the cache) and place the kernel.
/// (The install key, part of the cache key, covers `lean`.)
pub fn run(env: &Env, installed: &Installed, lean: &Lean) -> Result<Kernel> {
    let install_key = installed.key.as_str();
    let root = env.root();
    let stage = env.progress.stage("initramfs");
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
    let img = moddir.join("initramfs.img");
    let mut cache_hit = false;
    let prebuilt = img.is_file();
    let origin = if prebuilt {
        // A kernel package that ships its own (generic, prebuilt) initramfs
        // gets it used as it is.
        " from the kernel package"
    } else {
        let key = cache_key(install_key, &root, &version)?;
        let cache = crate::cache::StageCache::new(&env.cache_dir);
        let hit = match env.use_cache {
            true => cache.get("initramfs", &key)?,
            false => None,
        };
        cache_hit = hit.is_some();
        // Never write through a file of the hard-linked checkout.
        let _ = fs::remove_file(&img);
        if let Some(entry) = hit {
            stage.message("using the cached initramfs");
            fs::copy(entry.join("initramfs.img"), &img)?;
            ", cached"
        } else {
            build(env, &root, &version, lean, &stage)?;
            cache.put("initramfs", &key, &[("initramfs.img", &img)])?;
            ""
        }
    };
    crate::failpoint::hit("initramfs.built");
    clean_boot(&root)?;
    let initramfs_bytes = fs::metadata(&img)?.len();
    // How many modules it holds (not for a kernel package's own image,
    // which may be compressed otherwise).
    let modules = match prebuilt {
        true => String::new(),
        false => members(&img).map_or(String::new(), |m| {
            let n = m.iter().filter(|n| n.contains(".ko")).count();
            format!(", {n} modules")
        }),
    };
    stage.finish(&format!(
        "kernel {version}, initramfs {} MiB{modules}{origin}",
        initramfs_bytes >> 20
    ));
    Ok(Kernel {
        cache_hit,
        version,
        initramfs_bytes,
    })
}

fn build(
    env: &Env,
    root: &Path,
    version: &str,
    lean: &Lean,
    stage: &crate::progress::StageProgress,
) -> Result<()> {
    let target = format!("/usr/lib/modules/{version}/initramfs.img");
    let mut argv = vec!["dracut".to_string()];
    argv.extend(dracut_args(lean, version, &target));
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    chroot_with_api_fs(root, &argv)
        .env("SOURCE_DATE_EPOCH", env.epoch.to_string())
        .run_streaming(|l| stage.message(l))
        .context("building the initramfs with dracut")?;
    let img = root.join(target.trim_start_matches('/'));
    stage.message("compressing the initramfs with zstd");
    compress_initramfs(&img).with_context(|| format!("compressing {}", img.display()))
}

/// One member of a newc cpio archive at `pos`: its name and where the next
/// member starts; None where no valid header is.
fn cpio_member(data: &[u8], pos: usize) -> Option<(&[u8], usize)> {
    fn hex(field: &[u8]) -> Option<usize> {
        usize::from_str_radix(std::str::from_utf8(field).ok()?, 16).ok()
    }
    let align4 = |n: usize| (n + 3) & !3;
    let h = data.get(pos..pos + 110)?;
    if &h[..6] != b"070701" {
        return None;
    }
    let (filesize, namesize) = (hex(&h[54..62])?, hex(&h[94..102])?);
    let name = data.get(pos + 110..pos + 110 + namesize)?;
    let name = name.strip_suffix(b"\0").unwrap_or(name);
    Some((name, align4(align4(pos + 110 + namesize) + filesize)))
}

/// The length of a leading uncompressed early archive (dracut's early
/// microcode cpio, recognised by its `early_cpio` member) including the zero
/// padding after it, or 0. The kernel reads such an archive uncompressed and
/// then the compressed one after it, so it must stay as it is.
fn early_cpio_len(data: &[u8]) -> usize {
    let mut pos = 0;
    let mut early = false;
    loop {
        let Some((name, next)) = cpio_member(data, pos) else {
            return 0;
        };
        early |= name == b"early_cpio";
        pos = next;
        if name == b"TRAILER!!!" {
            break;
        }
    }
    if !early {
        return 0;
    }
    pos.min(data.len())
        + data[pos.min(data.len())..]
            .iter()
            .take_while(|b| **b == 0)
            .count()
}

/// The member names of an initramfs this stage made (an early cpio, if
/// any, skipped; the main archive zstd-compressed).
pub fn members(img: &Path) -> Result<Vec<String>> {
    let data = fs::read(img).with_context(|| format!("reading {}", img.display()))?;
    let main = zstd::decode_all(&data[early_cpio_len(&data)..])
        .with_context(|| format!("decompressing {}", img.display()))?;
    let mut names = Vec::new();
    let mut pos = 0;
    while let Some((name, next)) = cpio_member(&main, pos) {
        if name == b"TRAILER!!!" {
            break;
        }
        names.push(String::from_utf8_lossy(name).into_owned());
        pos = next;
    }
    Ok(names)
}

/// Replace the uncompressed initramfs at `img` by its zstd-compressed form
/// (an early cpio stays in front, uncompressed). Multithreaded zstd gives
/// the same bytes for any number of workers ≥ 1, so the result does not
/// depend on the machine.
fn compress_initramfs(img: &Path) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let data = fs::read(img)?;
    let early = early_cpio_len(&data);
    let tmp = common::atomic::tmp_name(img);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(&data[..early])?;
    let mut enc = encoder(&mut f, zstd_workers())?;
    enc.write_all(&data[early..])?;
    enc.finish()?;
    drop(f);
    fs::rename(&tmp, img).with_context(|| format!("renaming {}", tmp.display()))
}

/// The initramfs's zstd stream: level, checksum and `workers` threads.
fn encoder<W: std::io::Write>(w: W, workers: u32) -> Result<zstd::stream::Encoder<'static, W>> {
    let mut enc = zstd::stream::Encoder::new(w, INITRAMFS_ZSTD_LEVEL)?;
    enc.multithread(workers)?;
    enc.include_checksum(true)?;
    Ok(enc)
}

fn zstd_workers() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
}

/// /boot belongs to the boot partition; the tree carries nothing there.
fn clean_boot(root: &Path) -> Result<()> {
    let boot = root.join("boot");
    if !boot.exists() {
        // Not every distribution's filesystem package makes it.
        return fs::create_dir(&boot).with_context(|| format!("creating {}", boot.display()));
    }
    for e in fs::read_dir(&boot).with_context(|| format!("reading {}", boot.display()))? {
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

    /// One newc cpio member.
    fn member(name: &str, body: &[u8]) -> Vec<u8> {
        let mut v =
            format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            1, 0o100644, 0, 0, 1, 0, body.len(), 0, 0, 0, 0, name.len() + 1, 0
        )
            .into_bytes();
        v.extend_from_slice(name.as_bytes());
        v.push(0);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v.extend_from_slice(body);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v
    }

    #[test]
    fn early_cpio_is_found_with_its_padding() {
        let mut early = member("early_cpio", b"1\n");
        early.extend(member("kernel/x86/microcode/GenuineIntel.bin", b"ucode"));
        early.extend(member("TRAILER!!!", b""));
        let early_len = early.len();
        let mut img = early.clone();
        img.extend([0u8; 512]);
        let main = member("init", b"#!/bin/sh\n");
        img.extend(&main);
        assert_eq!(early_cpio_len(&img), early_len + 512);
        // An archive without the marker is the main one: compress it all.
        assert_eq!(early_cpio_len(&main), 0);
        // Garbage or truncation: no early archive.
        assert_eq!(early_cpio_len(b"\x1f\x8b\x08"), 0);
        assert_eq!(early_cpio_len(&early[..early_len - 10]), 0);
    }

    #[test]
    fn members_lists_the_main_archive_behind_the_early_one() {
        let d = tempfile::tempdir().unwrap();
        let mut img = member("early_cpio", b"1\n");
        img.extend(member("TRAILER!!!", b""));
        for (n, c) in [("usr", &b""[..]), ("usr/lib/m/ext4.ko.xz", b"\xfd7zXZ")] {
            img.extend(member(n, c));
        }
        img.extend(member("TRAILER!!!", b""));
        let p = d.path().join("initramfs.img");
        fs::write(&p, &img).unwrap();
        compress_initramfs(&p).unwrap();
        assert_eq!(members(&p).unwrap(), ["usr", "usr/lib/m/ext4.ko.xz"]);
        // Not zstd behind the early archive: an error, not a guess.
        fs::write(&p, b"not an initramfs").unwrap();
        assert!(members(&p).is_err());
    }

    #[test]
    fn compressed_initramfs_round_trips_and_does_not_depend_on_workers() {
        let d = tempfile::tempdir().unwrap();
        let mut early = member("early_cpio", b"1\n");
        early.extend(member("TRAILER!!!", b""));
        let mut img = early.clone();
        let main: Vec<u8> = (1..=3_000_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        img.extend(&main);
        let p = d.path().join("initramfs.img");
        fs::write(&p, &img).unwrap();
        compress_initramfs(&p).unwrap();
        let out = fs::read(&p).unwrap();
        assert_eq!(&out[..early.len()], &early[..]);
        assert_eq!(
            &out[early.len()..early.len() + 4],
            &[0x28, 0xb5, 0x2f, 0xfd]
        );
        assert_eq!(zstd::decode_all(&out[early.len()..]).unwrap(), main);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // The same bytes with one worker as with several.
        let with = |workers| {
            let mut e = encoder(Vec::new(), workers).unwrap();
            std::io::Write::write_all(&mut e, &main).unwrap();
            e.finish().unwrap()
        };
        let (one, many) = (with(1), with(4));
        assert_eq!(one, many);
        assert_eq!(&out[early.len()..], &one[..]);
    }

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
    fn the_container_host_initramfs_holds_ext4_only_and_all_stays_generic() {
        let host = dracut_args(&Lean::default(), "6.1.0", "/x.img");
        let w =
            |a: &[String], flag: &str| a.iter().position(|x| x == flag).map(|i| a[i + 1].clone());
        assert_eq!(w(&host, "--filesystems").as_deref(), Some("ext4"));
        let omit = w(&host, "--omit").unwrap();
        for m in ["crypt", "dm", "resume"] {
            assert!(omit.split(' ').any(|x| x == m), "{omit}");
        }
        assert_eq!(host.last().map(String::as_str), Some("/x.img"));
        let all = Lean {
            modules: ModuleProfile::All,
            ..Lean::default()
        };
        let generic = dracut_args(&all, "6.1.0", "/x.img");
        assert!(w(&generic, "--filesystems").is_none() && w(&generic, "--omit").is_none());
        assert_eq!(w(&generic, "--add").as_deref(), Some("ostree"));
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
