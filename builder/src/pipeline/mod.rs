//! The build, as a flat list of stage calls ([`build`]); what it depends
//! on is in [`inputs`], where it works in [`workspace`].

pub mod inputs;
mod workspace;

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::distro::lock::Lock;
use crate::manifest::{self, Manifest};
use crate::progress::Progress;
use crate::stage::{self, Timings};
use crate::{budgets, preflight, upload};
pub use workspace::default_cache_dir;

/// What to build, and how.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The manifest.
    pub manifest: PathBuf,
    /// Where finished files go.
    pub output: PathBuf,
    /// Scratch directory [default: /var/tmp/atomicbuild/NAME-VERSION].
    pub workdir: Option<PathBuf>,
    /// Cache directory [default: [`default_cache_dir`]].
    pub cache_dir: Option<PathBuf>,
    /// Bound of the stage cache in bytes (0: none); see [`crate::cache::trim`].
    pub cache_max: u64,
    /// Keep the work directory afterwards.
    pub keep_workdir: bool,
    /// Install exactly this lock's package set.
    pub lock: Option<PathBuf>,
    /// Rebuild every stage.
    pub no_cache: bool,
    /// `--upload` follows: check the uploads' credentials first.
    pub upload: bool,
}

/// What a finished build produced.
pub struct Built {
    /// The manifest as it was read for this build.
    pub manifest: Manifest,
    /// Path of the raw image.
    pub raw: PathBuf,
    /// Path of the metadata JSON.
    pub metadata: PathBuf,
    /// Path of the package lock.
    pub lock: PathBuf,
}

/// Build the images a manifest describes, then check the build against the
/// manifest's `[budgets]`: a miss fails the build (its outputs stay, for
/// inspection and `diff`), and so does every up-to-date rerun of it.
pub fn build(o: &BuildOptions) -> Result<Built> {
    let built = match build_outputs(o) {
        Err(e) if e.chain().any(|c| c.is::<crate::cache::Damaged>()) && !o.no_cache => {
            let dir = o.cache_dir.clone().unwrap_or_else(default_cache_dir);
            eprintln!("{e:#}\nchecking the cache {} (as `atomicbuild cache fsck` does) and building again", dir.display());
            let r = crate::cache::fsck(&dir)
                .with_context(|| format!("checking the cache {}", dir.display()))?;
            eprintln!("{}", fsck_summary(&r));
            build_outputs(o)?
        }
        r => r?,
    };
    let meta = crate::model::Metadata::load(&built.metadata)?;
    let b = &built.manifest.budgets;
    let misses = budgets::check_build(b, &meta);
    if !misses.is_empty() {
        anyhow::bail!(
            "{}: {} budget{} missed (the outputs are in {} for inspection):\n  {}",
            built.manifest.path.display(),
            misses.len(),
            if misses.len() == 1 { "" } else { "s" },
            o.output.display(),
            misses
                .iter()
                .map(|m| m.to_string())
                .collect::<Vec<_>>()
                .join("\n  ")
        );
    }
    let figures = budgets::figures(b, &meta);
    if !figures.is_empty() {
        eprintln!("within budgets: {}", figures.join(", "));
    }
    Ok(built)
}

/// The build itself: every stage, or nothing when up to date.
fn build_outputs(o: &BuildOptions) -> Result<Built> {
    let m = manifest::load(&o.manifest)?;
    let lock = load_lock(&m, o)?;
    if o.upload {
        upload::preflight(&m.uploads, &m.path)?;
    }
    preflight::check_build(&m)?;
    let key = crate::signing::key_of(m.signing.as_ref())
        .with_context(|| format!("[signing] in {}", m.path.display()))?;
    let progress = Progress::new();
    let inputs = inputs::Inputs::new(&m, lock.as_ref())?;
    if let Some(b) = workspace::up_to_date(o, &m, &inputs, &progress) {
        return Ok(b);
    }
    let ws = workspace::Workspace::prepare(o, &m, &inputs, &progress)?;
    let env = &ws.env;
    let ws_cache = env.cache_dir.clone();
    let mut t = Timings::default();
    let started = std::time::Instant::now();
    let installed = t.run("install", || stage::install::run(env, &m, lock.as_ref()))?;
    let custom = t.run("customize", || stage::customize::run(env, &m))?;
    let bill = stage::sbom::in_image(env, &m, &custom, &installed.lock)?;
    let kernel = t.run("initramfs", || {
        stage::initramfs::run(env, &installed, &m.lean)
    })?;
    t.run("shape", || stage::shape::run(env))?;
    let linted = t.run("lint", || stage::lint::run(env, &m))?;
    let commit = t.run("commit", || stage::commit::run(env, &m, &installed))?;
    let disk = stage::disk::run(env, &m, &commit, &ws.raw_tmp, &mut t)?;
    let cleanup = ws.clean_in_background(disk.done_with);
    let raw = t.run("finish", || {
        stage::finish::raw(env, &disk, &ws.raw_tmp, &ws.raw_final)
    })?;
    let formats = t.run("formats", || {
        stage::formats::run(env, &m, &raw.path, &o.output)
    })?;
    let outputs: Vec<(String, String)> = std::iter::once(&raw.artifact)
        .chain(&formats.artifacts)
        .map(|a| (a.file.clone(), a.sha256.clone()))
        .collect();
    let sbom = stage::sbom::next_to_outputs(env, &m, &custom, &bill, &o.output, &outputs)?;
    let mut meta = workspace::metadata(
        &m, &inputs, &commit, &kernel, &custom, &disk, &raw, formats, t,
    );
    meta.sbom = sbom;
    meta.lean_savings = installed.savings.clone();
    meta.setuid = linted.setuid;
    meta.lint_waived = linted.waived;
    let recorded =
        stage::finish::record(&o.output, &m.stem(), &meta, &installed.lock, key.as_ref())?;
    if key.is_none() {
        progress.println(&format!(
            "note: {} has no [signing] key, so SHA256SUMS is not signed (see README: Signed outputs)",
            m.path.display()
        ));
    }
    ws.finish(cleanup)?;
    trim_cache(o, &ws_cache, &progress);
    progress.println(&format!(
        "done in {:.0}s: {} ({} MiB, {} MiB allocated), commit {}",
        started.elapsed().as_secs_f64(),
        raw.path.display(),
        raw.artifact.size >> 20,
        raw.artifact.allocated >> 20,
        &commit.checksum[..12],
    ));
    Ok(Built {
        manifest: m,
        raw: raw.path,
        metadata: recorded.metadata,
        lock: recorded.lock,
    })
}

/// One line of what [`crate::cache::fsck`] did.
pub fn fsck_summary(r: &crate::cache::FsckReport) -> String {
    format!(
        "cache fsck: {} entries checked, {} dropped; {} corrupted objects deleted, {} commits dropped; {} packages checked, {} dropped ({} not in any cached lock)",
        r.entries,
        r.entries_dropped.len(),
        r.objects_deleted,
        r.commits_dropped.len(),
        r.packages,
        r.packages_dropped.len(),
        r.packages_unchecked
    )
}

/// Keep the stage cache within `--cache-max`; a failure to is only said.
fn trim_cache(o: &BuildOptions, dir: &std::path::Path, progress: &Progress) {
    if o.cache_max == 0 {
        return;
    }
    match crate::cache::trim(dir, o.cache_max) {
        Ok((0, _)) => {}
        Ok((n, bytes)) => progress.println(&format!(
            "cache: removed {n} entries unused the longest ({} MiB) to stay within {} MiB (--cache-max)",
            bytes >> 20,
            o.cache_max >> 20
        )),
        Err(e) => progress.println(&format!("cache: could not trim {}: {e:#}", dir.display())),
    }
}

/// The lock given with `--lock`, checked against the manifest.
fn load_lock(m: &Manifest, o: &BuildOptions) -> Result<Option<Lock>> {
    let Some(p) = &o.lock else { return Ok(None) };
    let l = Lock::load(p)?;
    stage::install::check_lock(m, &l).with_context(|| format!("checking {}", p.display()))?;
    Ok(Some(l))
}
