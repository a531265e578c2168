//! The build stages, one module each. Every stage is
//! `run(&Env, inputs) -> artifact`, owns its cache key and its cache
//! hits and misses, and reports through its progress line;
//! `pipeline::build` calls them in order and records their [`Timings`].

pub mod agent;
pub mod commit;
pub mod customize;
pub mod deploy;
pub mod disk;
pub mod finish;
pub mod formats;
pub mod initramfs;
pub mod install;
pub mod lint;
pub mod node;
pub mod policy_store;
pub mod sbom;
pub mod shape;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;

use crate::model::StageTime;
use crate::progress::Progress;

/// What every stage may look at.
pub struct Env<'a> {
    /// Scratch space for this build (wiped at start).
    pub workdir: PathBuf,
    /// Long-lived cache (downloaded packages, installed roots, initramfs
    /// images, disk images).
    pub cache_dir: PathBuf,
    /// Whether stage results may be taken from the cache (`--no-cache` off).
    pub use_cache: bool,
    /// Progress reporting.
    pub progress: &'a Progress,
    /// Timestamp for commits and generated files (SOURCE_DATE_EPOCH).
    pub epoch: u64,
    /// Versions of the host tools whose output ends up in the image.
    pub tools: String,
}

impl Env<'_> {
    /// The staging root the install stage fills and later stages shape.
    pub fn root(&self) -> PathBuf {
        self.workdir.join("root")
    }

    /// The OSTree repository commits go to: the shared object store in the
    /// cache, or with the cache off a private one in the work directory.
    pub fn object_store(&self) -> PathBuf {
        match self.use_cache {
            true => self.cache_dir.join("repo"),
            false => self.workdir.join("repo"),
        }
    }
}

/// What a stage made, as far as the timings care: whether it came from
/// the cache.
pub trait Outcome {
    /// Whether the stage's result was taken from the cache.
    fn cached(&self) -> bool {
        false
    }
}

impl Outcome for () {}

/// How long each stage took, in order, for the build metadata.
#[derive(Default)]
pub struct Timings(pub Vec<StageTime>);

impl Timings {
    /// Record a stage that took `seconds`.
    pub fn add(&mut self, name: &str, seconds: f64, cached: bool) {
        self.0.push(StageTime {
            name: name.into(),
            seconds: (seconds * 10.0).round() / 10.0,
            cached,
        });
    }

    /// Run and time one stage.
    pub fn run<T: Outcome>(&mut self, name: &str, stage: impl FnOnce() -> Result<T>) -> Result<T> {
        let t = Instant::now();
        let r = stage()?;
        self.add(name, t.elapsed().as_secs_f64(), r.cached());
        Ok(r)
    }
}
