//! Where a build works: the output directory (temporary files removed if
//! the build fails), the locked work directory, the cache directory, and
//! the metadata that records the result.

use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use anyhow::{Context, Result};

use super::inputs::{file_identity, Inputs};
use super::{BuildOptions, Built};
use crate::fsutil::{self, DirLock, TmpCleanup};
use crate::manifest::Manifest;
use crate::model::{KernelInfo, ManifestRef, Metadata, OstreeInfo};
use crate::progress::Progress;
use crate::stage::{commit::Commit, customize::Customized, disk::Disk, finish::Raw};
use crate::stage::{formats::Written, initramfs::Kernel, Env, Timings};

/// Default cache directory: `$XDG_CACHE_HOME/atomicbuild` or `~/.cache/atomicbuild`.
pub fn default_cache_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("atomicbuild");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache/atomicbuild")
}

/// The outputs already in place, when they were built from exactly these
/// inputs (and `--no-cache` was not given); says so.
pub fn up_to_date(
    o: &BuildOptions,
    m: &Manifest,
    inputs: &Inputs,
    progress: &Progress,
) -> Option<Built> {
    if o.no_cache {
        return None;
    }
    let (raw, metadata, lock) = super::inputs::up_to_date(&o.output, m, &inputs.key)?;
    progress.println(&format!(
        "up to date: {} was built from exactly these inputs and is unchanged (pass --no-cache to rebuild)",
        raw.display()
    ));
    Some(Built {
        manifest: m.clone(),
        raw,
        metadata,
        lock,
    })
}

/// The directories of one build.
pub struct Workspace<'a> {
    /// What the stages see.
    pub env: Env<'a>,
    /// The raw image while it is written.
    pub raw_tmp: PathBuf,
    /// The raw image's final name.
    pub raw_final: PathBuf,
    tmp_cleanup: TmpCleanup,
    keep_workdir: bool,
    _lock: DirLock,
}

impl<'a> Workspace<'a> {
    /// Create the output directory (removing what killed runs left) and
    /// take and empty the work directory.
    pub fn prepare(
        o: &BuildOptions,
        m: &Manifest,
        inputs: &Inputs,
        progress: &'a Progress,
    ) -> Result<Workspace<'a>> {
        let out_dir = &o.output;
        std::fs::create_dir_all(out_dir)
            .with_context(|| format!("creating the output directory {}", out_dir.display()))?;
        fsutil::remove_stale_tmp(out_dir)?;
        let tmp_cleanup = TmpCleanup::new(out_dir);
        let workdir = o
            .workdir
            .clone()
            .unwrap_or_else(|| PathBuf::from("/var/tmp/atomicbuild").join(m.stem()));
        let lock = fsutil::lock_dir(&workdir)?;
        clean_workdir(&workdir)?;
        progress.println(&format!(
            "building {} from {} (work in {})",
            m.stem(),
            o.manifest.display(),
            workdir.display()
        ));
        let raw_final = out_dir.join(format!("{}.raw", m.stem()));
        Ok(Workspace {
            env: Env {
                workdir,
                cache_dir: o.cache_dir.clone().unwrap_or_else(default_cache_dir),
                use_cache: !o.no_cache,
                progress,
                epoch: inputs.epoch,
                tools: inputs.tools.clone(),
            },
            raw_tmp: common::atomic::tmp_name(&raw_final),
            raw_final,
            tmp_cleanup,
            keep_workdir: o.keep_workdir,
            _lock: lock,
        })
    }

    /// Delete `dirs` of the work directory on another thread (unless the
    /// user keeps it); [`Workspace::finish`] waits for it.
    pub fn clean_in_background(&self, dirs: &[&str]) -> JoinHandle<Result<()>> {
        let paths: Vec<PathBuf> = match self.keep_workdir {
            true => Vec::new(),
            false => dirs.iter().map(|d| self.env.workdir.join(d)).collect(),
        };
        std::thread::spawn(move || {
            for p in paths {
                fsutil::remove_tree(&p)?;
            }
            Ok(())
        })
    }

    /// The build succeeded: keep its outputs, wait for the cleanup.
    pub fn finish(self, cleanup: JoinHandle<Result<()>>) -> Result<()> {
        self.tmp_cleanup.disarm();
        cleanup
            .join()
            .map_err(|_| anyhow::anyhow!("cleaning the work directory panicked"))?
    }
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

/// Everything the build records about itself.
#[allow(clippy::too_many_arguments)]
pub fn metadata(
    m: &Manifest,
    inputs: &Inputs,
    commit: &Commit,
    kernel: &Kernel,
    custom: &Customized,
    disk: &Disk,
    raw: &Raw,
    formats: Written,
    t: Timings,
) -> Metadata {
    let mut artifacts = vec![raw.artifact.clone()];
    artifacts.extend(formats.artifacts);
    Metadata {
        name: m.name.clone(),
        version: m.version.clone(),
        inputs_key: inputs.key.clone(),
        raw_identity: file_identity(&raw.path).unwrap_or_default(),
        atomicbuild_version: env!("CARGO_PKG_VERSION").into(),
        manifest: ManifestRef {
            path: m.path.display().to_string(),
            sha256: m.sha256.clone(),
        },
        source_date_epoch: inputs.epoch,
        ostree: OstreeInfo {
            ref_: commit.ref_.clone(),
            commit: commit.checksum.clone(),
            osname: m.ostree.osname.clone(),
        },
        kernel: KernelInfo {
            version: kernel.version.clone(),
            cmdline: disk.kargs.clone(),
            initramfs_bytes: kernel.initramfs_bytes,
        },
        packages: custom.packages.clone(),
        disk: disk.layout.clone(),
        artifacts,
        stages: t.0,
        output_times: formats.times,
        lean_savings: Vec::new(),
        uploads: None,
        boot_times: Vec::new(),
        sbom: String::new(),
        setuid: Vec::new(),
        lint_waived: Vec::new(),
    }
}
