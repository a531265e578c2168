//! Kernel modules of the installed root, trimmed to a profile and
//! compressed, before the initramfs is built from them.
//!
//! The `container-host` profile drops the subtrees in [`DROPPED`] (what a
//! container host in a VM or cloud never loads) and then every module that
//! depends on a dropped one (from the kernel package's own `modules.dep`),
//! so nothing that stays has a missing dependency. What every supported
//! platform and Kubernetes' networking need stays; the test of that checks a
//! fixed list with `modprobe --show-depends`, independent of this table.
//! Modules that stay are compressed (`.ko.xz` with a CRC32 check and a 1 MiB
//! dictionary as the kernel's `modules_install` writes them, but at preset 1:
//! measured on Debian's 6.1 modules, 3x faster than its preset 6 for 7%
//! more bytes; or `.ko.zst`),
//! which libkmod decompresses for every loader (modprobe, udev, dracut), and
//! `depmod` is run again inside the root.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use common::cmd::Cmd;

use crate::model::{Lean, ModuleCompression, ModuleProfile, Saving};

/// Subtrees (under `/usr/lib/modules/KVER/`) the container-host profile
/// drops.
pub const DROPPED: &[&str] = &[
    "kernel/drivers/gpu/",
    "kernel/sound/",
    "kernel/drivers/media/",
    "kernel/drivers/staging/",
    "kernel/drivers/comedi/",
    "kernel/drivers/iio/",
    "kernel/drivers/net/wireless/",
    "kernel/net/wireless/",
    "kernel/net/mac80211/",
    "kernel/drivers/bluetooth/",
    "kernel/net/bluetooth/",
    "kernel/drivers/nfc/",
    "kernel/net/nfc/",
    "kernel/drivers/isdn/",
    "kernel/drivers/net/wwan/",
    "kernel/drivers/net/ieee802154/",
    "kernel/net/ieee802154/",
    "kernel/net/mac802154/",
    "kernel/drivers/firewire/",
    "kernel/drivers/pcmcia/",
    "kernel/drivers/parport/",
    "kernel/drivers/input/joystick/",
    "kernel/drivers/input/tablet/",
    "kernel/drivers/input/touchscreen/",
    // Fibre Channel, FCoE and iSCSI offload host adapters (SAN boot on
    // bare metal; iscsi_tcp, the software initiator CSI drivers use, and
    // the FC transport class hv_storvsc needs stay).
    "kernel/drivers/scsi/lpfc/",
    "kernel/drivers/scsi/qla2xxx/",
    "kernel/drivers/scsi/bfa/",
    "kernel/drivers/scsi/csiostor/",
    "kernel/drivers/scsi/elx/",
    "kernel/drivers/scsi/libfc/",
    "kernel/drivers/scsi/fcoe/",
    "kernel/drivers/scsi/qla4xxx/",
    "kernel/drivers/scsi/qedi/",
    "kernel/drivers/scsi/be2iscsi/",
    "kernel/drivers/scsi/bnx2i/",
    "kernel/drivers/scsi/cxgbi/",
];

/// Applies `lean`'s module settings to every kernel in `root`; what each
/// saved. A root without kernel modules is left alone.
pub fn apply(root: &Path, lean: &Lean, say: &mut dyn FnMut(&str)) -> Result<Vec<Saving>> {
    let mut savings = Vec::new();
    for kver in kernels(root)? {
        let dir = root.join("usr/lib/modules").join(&kver);
        if !dir.join("modules.dep").is_file() {
            depmod(root, &kver)?;
        }
        let mut changed = Vec::new();
        if lean.modules == ModuleProfile::ContainerHost {
            say(&format!(
                "dropping modules of {kver} a container host does not use"
            ));
            changed.push(trim(&dir)?);
        }
        if lean.module_compression != ModuleCompression::None {
            say(&format!("compressing the modules of {kver}"));
            changed.push(compress(&dir, lean.module_compression)?);
        }
        if changed.iter().any(|s| s.files > 0) {
            depmod(root, &kver)?;
        }
        savings.extend(changed);
    }
    Ok(savings)
}

/// Kernel versions with modules in `root`.
fn kernels(root: &Path) -> Result<Vec<String>> {
    let dir = root.join("usr/lib/modules");
    let Ok(rd) = fs::read_dir(&dir) else {
        return Ok(Vec::new());
    };
    let mut v = Vec::new();
    for e in rd {
        let e = e?;
        if e.path().join("kernel").is_dir() {
            v.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    v.sort();
    Ok(v)
}

/// Runs `depmod -a KVER` inside `root` (its own kmod).
fn depmod(root: &Path, kver: &str) -> Result<()> {
    let Some(bin) = ["usr/sbin/depmod", "sbin/depmod", "usr/bin/depmod"]
        .iter()
        .find(|p| root.join(p).exists())
    else {
        bail!("the image has kernel modules but no depmod: add kmod to [packages] include");
    };
    Cmd::new("chroot")
        .arg(root)
        .arg(format!("/{bin}"))
        .args(["-a", kver])
        .output_string()
        .with_context(|| format!("running depmod for {kver} in the image"))?;
    Ok(())
}

/// `modules.dep` of `dir`: module -> its dependencies (paths relative to
/// `dir`).
fn read_deps(dir: &Path) -> Result<BTreeMap<String, Vec<String>>> {
    let p = dir.join("modules.dep");
    let text = fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(m, deps)| {
            (
                m.to_string(),
                deps.split_whitespace().map(str::to_string).collect(),
            )
        })
        .collect())
}

/// The modules the container-host profile drops: those under [`DROPPED`]
/// and, transitively, those depending on a dropped one; and how many of
/// them were dropped for a dependency only.
fn plan(deps: &BTreeMap<String, Vec<String>>) -> (BTreeSet<String>, usize) {
    let mut dropped: BTreeSet<String> = deps
        .keys()
        .filter(|m| DROPPED.iter().any(|d| m.starts_with(d)))
        .cloned()
        .collect();
    let direct = dropped.len();
    loop {
        let more: Vec<String> = deps
            .iter()
            .filter(|(m, d)| !dropped.contains(*m) && d.iter().any(|x| dropped.contains(x)))
            .map(|(m, _)| m.clone())
            .collect();
        if more.is_empty() {
            return (dropped.clone(), dropped.len() - direct);
        }
        dropped.extend(more);
    }
}

fn trim(dir: &Path) -> Result<Saving> {
    let (dropped, for_deps) = plan(&read_deps(dir)?);
    let mut bytes = 0;
    for m in &dropped {
        let p = dir.join(m);
        bytes += fs::symlink_metadata(&p).map_or(0, |md| md.len());
        fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
    }
    remove_empty_dirs(&dir.join("kernel"))?;
    Ok(Saving {
        setting: "kernel.modules = \"container-host\"".into(),
        what: format!(
            "modules dropped (GPU, sound, media, wireless, Bluetooth, IIO, staging ...; {for_deps} only for depending on those)"
        ),
        files: dropped.len() as u64,
        bytes,
    })
}

/// Removes empty directories below `dir` (not `dir` itself).
fn remove_empty_dirs(dir: &Path) -> Result<bool> {
    let mut empty = true;
    for e in fs::read_dir(dir)? {
        let e = e?;
        let p = e.path();
        if e.file_type()?.is_dir() && remove_empty_dirs(&p)? {
            fs::remove_dir(&p)?;
        } else {
            empty = false;
        }
    }
    Ok(empty)
}

/// Every uncompressed `.ko` under `dir`.
fn modules(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for e in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let e = e?;
        let t = e.file_type()?;
        if t.is_dir() {
            modules(&e.path(), out)?;
        } else if t.is_file() && e.file_name().to_string_lossy().ends_with(".ko") {
            out.push(e.path());
        }
    }
    Ok(())
}

fn compress(dir: &Path, kind: ModuleCompression) -> Result<Saving> {
    let mut files = Vec::new();
    for sub in ["kernel", "updates", "extra"] {
        if dir.join(sub).is_dir() {
            modules(&dir.join(sub), &mut files)?;
        }
    }
    files.sort();
    let sums = crate::fsutil::fold_files(&files, |f, (before, after): &mut (u64, u64)| {
        let (b, a) = compress_one(f, kind)?;
        *before += b;
        *after += a;
        Ok(())
    })?;
    let (before, after) = sums.iter().fold((0, 0), |(b, a), (x, y)| (b + x, a + y));
    Ok(Saving {
        setting: format!("kernel.module_compression = \"{}\"", kind.name()),
        what: format!(
            "modules compressed ({} MiB to {} MiB)",
            before >> 20,
            after >> 20
        ),
        files: files.len() as u64,
        bytes: before.saturating_sub(after),
    })
}

/// `f.ko` -> `f.ko.xz` (or `.zst`); sizes before and after. (The staging
/// root is thrown away whole if the build stops, so no temporary names.)
fn compress_one(f: &Path, kind: ModuleCompression) -> Result<(u64, u64)> {
    let data = fs::read(f).with_context(|| format!("reading {}", f.display()))?;
    let packed = match kind {
        ModuleCompression::Xz => {
            let mut opts = xz2::stream::LzmaOptions::new_preset(1)?;
            opts.dict_size(1 << 20);
            let mut filters = xz2::stream::Filters::new();
            filters.lzma2(&opts);
            let stream =
                xz2::stream::Stream::new_stream_encoder(&filters, xz2::stream::Check::Crc32)?;
            let mut enc = xz2::write::XzEncoder::new_stream(Vec::new(), stream);
            enc.write_all(&data)?;
            enc.finish()?
        }
        ModuleCompression::Zstd => zstd::bulk::compress(&data, 19)?,
        ModuleCompression::None => return Ok((0, 0)),
    };
    let mut dest = f.as_os_str().to_owned();
    dest.push(kind.suffix());
    let dest = PathBuf::from(dest);
    fs::write(&dest, &packed).with_context(|| format!("writing {}", dest.display()))?;
    fs::remove_file(f).with_context(|| format!("removing {}", f.display()))?;
    Ok((data.len() as u64, packed.len() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependents_of_dropped_modules_are_dropped_too() {
        let deps: BTreeMap<String, Vec<String>> = [
            ("kernel/drivers/gpu/drm/drm.ko", vec![]),
            (
                "kernel/drivers/gpu/drm/bochs.ko",
                vec!["kernel/drivers/gpu/drm/drm.ko"],
            ),
            (
                "kernel/drivers/platform/x86/a.ko",
                vec!["kernel/drivers/gpu/drm/drm.ko"],
            ),
            (
                "kernel/drivers/platform/x86/b.ko",
                vec!["kernel/drivers/platform/x86/a.ko"],
            ),
            (
                "kernel/drivers/net/virtio_net.ko",
                vec!["kernel/net/core/failover.ko"],
            ),
            ("kernel/net/core/failover.ko", vec![]),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.into_iter().map(str::to_string).collect()))
        .collect();
        let (dropped, for_deps) = plan(&deps);
        assert_eq!(for_deps, 2);
        assert!(dropped.contains("kernel/drivers/platform/x86/b.ko"));
        assert!(!dropped.contains("kernel/drivers/net/virtio_net.ko"));
        assert_eq!(dropped.len(), 4);
    }

    #[test]
    fn modules_are_compressed_in_place_and_read_back() {
        let d = tempfile::tempdir().unwrap();
        let sub = d.path().join("kernel/net");
        fs::create_dir_all(&sub).unwrap();
        let body: Vec<u8> = (0..200_000u32).map(|i| (i % 7) as u8).collect();
        for n in ["a.ko", "b.ko"] {
            fs::write(sub.join(n), &body).unwrap();
        }
        let s = compress(d.path(), ModuleCompression::Xz).unwrap();
        assert_eq!(s.files, 2);
        assert!(!sub.join("a.ko").exists());
        let packed = fs::read(sub.join("b.ko.xz")).unwrap();
        let mut back = Vec::new();
        std::io::Read::read_to_end(&mut xz2::read::XzDecoder::new(&packed[..]), &mut back).unwrap();
        assert_eq!(back, body);
        assert_eq!(s.bytes, 2 * (body.len() as u64 - packed.len() as u64));
    }
}
