//! The build, as a flat list of stage calls.

use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context, Result};

use crate::cli::BuildArgs;
use crate::output::{self, Artifact, Metadata, StageTime};
use crate::progress::Progress;
use crate::stage::{self, Ctx};
use crate::{disk, fsutil, manifest, preflight};

/// Default cache directory: `$XDG_CACHE_HOME/atomicbuild` or `~/.cache/atomicbuild`.
pub fn default_cache_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("atomicbuild");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache/atomicbuild")
}

/// SOURCE_DATE_EPOCH if set (and valid); otherwise the newest modification
/// time among the manifest and its overlays' files, so that unchanged
/// inputs give the same timestamps (and bytes) without any setting.
pub fn source_date_epoch(m: &manifest::Manifest) -> Result<u64> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => v
            .trim()
            .parse()
            .with_context(|| format!("SOURCE_DATE_EPOCH=\"{v}\" is not a number of seconds")),
        Err(_) => {
            let mut newest = mtime_secs(&m.path)?;
            for o in &m.overlays {
                stage::shape::walk_sorted(o, &mut |p, _| {
                    newest = newest.max(mtime_secs(p)?);
                    Ok(())
                })?;
            }
            Ok(newest)
        }
    }
}

fn mtime_secs(p: &Path) -> Result<u64> {
    let md = std::fs::symlink_metadata(p).with_context(|| format!("reading {}", p.display()))?;
    Ok(md
        .modified()?
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()))
}

/// Bump when a change to atomicbuild changes what a build produces.
const BUILD_RECIPE: &str = "build-v1";

/// A hash of everything a build's outputs depend on: the manifest, every
/// overlay file (path, mode, contents), the lock, the timestamp, the host
/// tools' versions and atomicbuild's own version.
pub fn inputs_key(
    m: &manifest::Manifest,
    lock: Option<&crate::lock::Lock>,
    epoch: u64,
    tools: &str,
) -> Result<String> {
    let mut h = crate::cache::KeyHasher::new();
    h.put(BUILD_RECIPE)
        .put(env!("CARGO_PKG_VERSION"))
        // Any other build of atomicbuild may write different bytes.
        .put(own_executable_hash())
        // The first-boot agent is part of every image.
        .put(
            stage::agent::binary()
                .ok()
                .and_then(|p| output::sha256_file(&p).ok())
                .unwrap_or_default(),
        )
        .put(&m.sha256)
        .put(epoch.to_string());
    if let Some(l) = lock {
        h.put(l.to_toml()?);
    }
    for o in &m.overlays {
        h.put(o.to_string_lossy().as_bytes());
        h.put_tree(o, o)?;
    }
    h.put(tools);
    Ok(h.finish())
}

/// sha256 of the running atomicbuild executable ("" if unreadable).
fn own_executable_hash() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| output::sha256_file(&p).ok())
        .unwrap_or_default()
}

/// The versions of the host tools whose output ends up in the image.
pub fn tool_versions() -> String {
    let mut v = String::new();
    for tool in [
        ["mke2fs", "-V"],
        ["grub-mkimage", "--version"],
        ["mmdebstrap", "--version"],
    ] {
        if let Ok(o) = std::process::Command::new(tool[0]).arg(tool[1]).output() {
            v.push_str(&String::from_utf8_lossy(&o.stdout));
            v.push_str(&String::from_utf8_lossy(&o.stderr));
        }
    }
    v
}

/// Bump when the way a disk is written changes.
const DISK_RECIPE: &str = "disk-v3";

/// The cache key of a disk image: the commit and everything else the disk
/// stage reads.
fn disk_key(m: &manifest::Manifest, commit: &str, epoch: u64, tools: &str) -> String {
    let mut h = crate::cache::KeyHasher::new();
    h.put(DISK_RECIPE)
        .put(env!("CARGO_PKG_VERSION"))
        .put(commit)
        .put(m.image_seed())
        .put(stage::deploy::kargs(m).join(" "))
        .put(epoch.to_string())
        .put(tools);
    h.finish()
}

/// Identity of a file as the file system sees it (for the up-to-date check).
fn file_identity(p: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(p).ok()?;
    Some(format!(
        "{}:{}:{}:{}.{}",
        md.dev(),
        md.ino(),
        md.len(),
        md.mtime(),
        md.mtime_nsec()
    ))
}

/// The outputs in `out_dir` if they were built from exactly these inputs and
/// have not been touched since.
fn up_to_date(out_dir: &Path, m: &manifest::Manifest, key: &str) -> Option<Built> {
    let stem = &m.stem();
    let meta_path = out_dir.join(format!("{stem}.json"));
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta_path).ok()?).ok()?;
    if meta["inputs_key"].as_str()? != key {
        return None;
    }
    let raw = out_dir.join(format!("{stem}.raw"));
    let lock = out_dir.join(format!("{stem}.lock"));
    if meta["raw_identity"].as_str()? != file_identity(&raw)?
        || !lock.is_file()
        || !out_dir.join("SHA256SUMS").is_file()
    {
        return None;
    }
    for a in meta["artifacts"].as_array()? {
        let size = std::fs::metadata(out_dir.join(a["file"].as_str()?))
            .ok()?
            .len();
        if Some(size) != a["size"].as_u64() {
            return None;
        }
    }
    Some(Built {
        manifest: m.clone(),
        raw,
        metadata: meta_path,
        lock,
    })
}

/// What a finished build produced.
pub struct Built {
    /// The manifest as it was read for this build.
    pub manifest: manifest::Manifest,
    /// Path of the raw image.
    pub raw: PathBuf,
    /// Path of the metadata JSON.
    pub metadata: PathBuf,
    /// Path of the package lock.
    pub lock: PathBuf,
}

struct Timings(Vec<StageTime>);

impl Timings {
    fn add(&mut self, name: &str, d: Duration, cached: bool) {
        self.0.push(StageTime {
            name: name.into(),
            seconds: (d.as_secs_f64() * 10.0).round() / 10.0,
            cached,
        });
    }
    fn time<T>(&mut self, name: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        self.time_cached(name, f, |_| false)
    }
    /// Time a stage whose result says whether it came from the cache.
    fn time_cached<T>(
        &mut self,
        name: &str,
        f: impl FnOnce() -> Result<T>,
        cached: impl Fn(&T) -> bool,
    ) -> Result<T> {
        let t = std::time::Instant::now();
        let r = f()?;
        self.add(name, t.elapsed(), cached(&r));
        Ok(r)
    }
}

/// Build the images a manifest describes.
pub fn build(args: &BuildArgs) -> Result<Built> {
    let manifest_path = args
        .manifest
        .clone()
        .context("no manifest given: pass --manifest host.toml (see manifests/ for examples)")?;
    let m = manifest::load(&manifest_path)?;
    let lock = match &args.lock {
        Some(p) => {
            let l = crate::lock::Lock::load(p)?;
            stage::install::check_lock(&m, &l)
                .with_context(|| format!("checking {}", p.display()))?;
            Some(l)
        }
        None => None,
    };
    if args.upload {
        crate::upload::preflight(&m)?;
    }
    preflight::check_build(&m)?;
    let progress = Progress::new();
    let epoch = source_date_epoch(&m)?;
    let tools = tool_versions();
    let key = inputs_key(&m, lock.as_ref(), epoch, &tools)?;
    if !args.no_cache {
        if let Some(b) = up_to_date(&args.output, &m, &key) {
            progress.println(&format!(
                "up to date: {} was built from exactly these inputs and is unchanged (pass --no-cache to rebuild)",
                b.raw.display()
            ));
            return Ok(b);
        }
    }

    let out_dir = args.output.clone();
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("creating the output directory {}", out_dir.display()))?;
    fsutil::remove_stale_tmp(&out_dir)?;
    let tmp_cleanup = fsutil::TmpCleanup::new(&out_dir);
    let workdir = args
        .workdir
        .clone()
        .unwrap_or_else(|| PathBuf::from("/var/tmp/atomicbuild").join(m.stem()));
    let _lock = fsutil::lock_dir(&workdir)?;
    clean_workdir(&workdir)?;
    let cache_dir = args.cache_dir.clone().unwrap_or_else(default_cache_dir);
    let ctx = Ctx {
        manifest: &m,
        workdir: workdir.clone(),
        cache_dir,
        use_cache: !args.no_cache,
        progress: &progress,
        source_date_epoch: epoch,
    };
    progress.println(&format!(
        "building {} from {} (work in {})",
        m.stem(),
        manifest_path.display(),
        workdir.display()
    ));
    let mut t = Timings(Vec::new());
    let started = std::time::Instant::now();

    let installed = t.time_cached(
        "install",
        || stage::install::run(&ctx, lock.as_ref()),
        |i| i.cache_hit,
    )?;
    let custom = t.time("customize", || stage::customize::run(&ctx))?;
    let kernel = t.time_cached(
        "initramfs",
        || stage::initramfs::run(&ctx, &installed.key),
        |k| k.cache_hit,
    )?;
    t.time("shape", || stage::shape::run(&ctx))?;
    let commit = t.time("commit", || {
        stage::commit::run(&ctx, installed.devino.as_ref())
    })?;
    let raw_final = out_dir.join(format!("{}.raw", m.stem()));
    let raw_tmp = fsutil::tmp_name(&raw_final);
    let disks = crate::cache::StageCache::new(&ctx.cache_dir);
    let dkey = disk_key(&m, &commit.checksum, epoch, &tools);
    let cached_disk = match ctx.use_cache {
        true => disks.get("disk", &dkey)?,
        false => None,
    };
    let disk_hit = cached_disk.is_some();
    let (kargs, layout, cleanup) = match cached_disk {
        Some(entry) => {
            t.time_cached(
                "disk",
                || {
                    let s = progress.stage("disk");
                    s.message("using the cached image of this commit");
                    // A copy: outputs of different builds never share an
                    // inode, so booting one in place cannot change another.
                    fsutil::copy_sparse(&entry.join("image.raw"), &raw_tmp)?;
                    s.finish("cached");
                    Ok(())
                },
                |_| true,
            )?;
            let cleanup = background_cleanup(&workdir, &["root"], args.keep_workdir);
            (stage::deploy::kargs(&m), disk::layout_for(&m), cleanup)
        }
        None => {
            let deployed = t.time("deploy", || stage::deploy::run(&ctx, &commit))?;
            let image = t.time("disk", || disk::run(&ctx, &deployed, &raw_tmp))?;
            // The trees are not needed any more: delete them while the
            // image is checksummed.
            let cleanup =
                background_cleanup(&workdir, &["root", "sysroot", "bootfs"], args.keep_workdir);
            (deployed.kargs, image.layout, cleanup)
        }
    };

    let stage_out = progress.stage("finish");
    stage_out.message("checksumming the image");
    let raw_sum = output::sha256_file(&raw_tmp)?;
    let raw_artifact = Artifact {
        file: file_name(&raw_final),
        format: "raw".into(),
        size: std::fs::metadata(&raw_tmp)?.len(),
        allocated: fsutil::allocated_bytes(&raw_tmp)?,
        sha256: raw_sum.clone(),
    };
    if ctx.use_cache && !disk_hit {
        // The image is its own cache entry (a second link, no copy): a
        // later build of the same commit reuses it, and if the output is
        // modified (booted in place), the entry's checksum no longer
        // matches and it is rebuilt.
        disks.put_linked("disk", &dkey, &[("image.raw", &raw_tmp, &raw_sum)])?;
    }
    fsutil::commit_tmp(&raw_tmp, &raw_final)?;
    let finish_d = stage_out.finish("");
    t.add("finish", finish_d, false);
    let mut artifacts = vec![raw_artifact.clone()];
    artifacts.extend(t.time("formats", || {
        stage::formats::run(&ctx, &raw_final, &out_dir)
    })?);
    let meta_final = out_dir.join(format!("{}.json", m.stem()));
    let meta = Metadata {
        name: m.name.clone(),
        version: m.version.clone(),
        inputs_key: key.clone(),
        raw_identity: file_identity(&raw_final).unwrap_or_default(),
        atomicbuild_version: env!("CARGO_PKG_VERSION").into(),
        manifest: output::ManifestRef {
            path: manifest_path.display().to_string(),
            sha256: m.sha256.clone(),
        },
        source_date_epoch: epoch,
        ostree: output::OstreeInfo {
            ref_: commit.ref_.clone(),
            commit: commit.checksum.clone(),
            osname: m.ostree.osname.clone(),
        },
        kernel: output::KernelInfo {
            version: kernel.version.clone(),
            cmdline: kargs,
            initramfs_bytes: kernel.initramfs_bytes,
        },
        packages: custom
            .packages
            .iter()
            .map(|(n, v, a)| output::Package {
                name: n.clone(),
                version: v.clone(),
                arch: a.clone(),
            })
            .collect(),
        disk: layout,
        artifacts: artifacts.clone(),
        stages: t.0.clone(),
    };
    let json = serde_json::to_vec_pretty(&meta)?;
    fsutil::write_atomic(&meta_final, &json)?;
    let meta_sum = output::sha256_file(&meta_final)?;
    let lock_final = out_dir.join(format!("{}.lock", m.stem()));
    fsutil::write_atomic(&lock_final, installed.lock.to_toml()?.as_bytes())?;
    let lock_sum = output::sha256_file(&lock_final)?;
    let mut sums: Vec<(String, String)> = artifacts
        .iter()
        .map(|a| (a.sha256.clone(), a.file.clone()))
        .collect();
    sums.push((meta_sum, file_name(&meta_final)));
    sums.push((lock_sum, file_name(&lock_final)));
    let sums = output::sha256sums(&sums);
    fsutil::write_atomic(&out_dir.join("SHA256SUMS"), sums.as_bytes())?;

    tmp_cleanup.disarm();
    cleanup
        .join()
        .map_err(|_| anyhow::anyhow!("cleaning the work directory panicked"))??;
    progress.println(&format!(
        "done in {:.0}s: {} ({} MiB, {} MiB allocated), commit {}",
        started.elapsed().as_secs_f64(),
        raw_final.display(),
        raw_artifact.size >> 20,
        raw_artifact.allocated >> 20,
        &commit.checksum[..12],
    ));
    Ok(Built {
        manifest: m,
        raw: raw_final,
        metadata: meta_final,
        lock: lock_final,
    })
}

/// Delete `dirs` of the work directory on another thread (unless the
/// user keeps it); join the handle to learn the result.
fn background_cleanup(
    workdir: &Path,
    dirs: &[&str],
    keep: bool,
) -> std::thread::JoinHandle<Result<()>> {
    let paths: Vec<PathBuf> = match keep {
        true => Vec::new(),
        false => dirs.iter().map(|d| workdir.join(d)).collect(),
    };
    std::thread::spawn(move || {
        for p in paths {
            fsutil::remove_tree(&p)?;
        }
        Ok(())
    })
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Empty the work directory (keeping its lock file), detaching any mount a
/// killed run left behind.
fn clean_workdir(workdir: &Path) -> Result<()> {
    for e in std::fs::read_dir(workdir)? {
        let e = e?;
        if e.file_name() == ".lock" {
            continue;
        }
        let p = e.path();
        if e.file_type()?.is_dir() {
            fsutil::remove_tree(&p)?;
        } else {
            std::fs::remove_file(&p)?;
        }
    }
    Ok(())
}
