//! Disk stage: the raw disk image of a commit. Its cache key is the commit
//! and everything else the image depends on (kernel arguments, layout,
//! timestamp, tool versions); on a hit the cached image is copied (no
//! deploy at all), on a miss the commit is deployed into a fresh sysroot
//! and written by `crate::disk`, and the finished image becomes the cache
//! entry once the finish stage has its checksum.

use std::path::Path;

use anyhow::Result;

use super::commit::Commit;
use super::{deploy, Env, Outcome, Timings};
use crate::cache::{KeyHasher, StageCache};
use crate::manifest::Manifest;
use crate::model::Layout;
use crate::{disk, fsutil};

/// Bump when the way a disk is written changes.
const DISK_RECIPE: &str = "disk-v5"; // v4: grubenv, boot counter, loadenv, grub2 backend; v5: ext4 on prezeroed storage (fewer allocated blocks, same bytes)

/// The cache key of a disk image: the commit and everything else the disk
/// stage reads.
fn key(env: &Env, m: &Manifest, commit: &Commit) -> String {
    let mut h = KeyHasher::new();
    h.put(DISK_RECIPE)
        .put(env!("CARGO_PKG_VERSION"))
        .put(&commit.checksum)
        .put(m.image_seed())
        .put(deploy::kargs(m).join(" "))
        .put(serde_json::to_string(&m.updates).unwrap_or_default())
        .put(env.epoch.to_string())
        .put(&env.tools);
    h.finish()
}

/// The image written (under its temporary name).
pub struct Disk {
    /// Its partition layout.
    pub layout: Layout,
    /// The kernel command line of its boot entry.
    pub kargs: Vec<String>,
    /// Whether it came from the cache.
    pub cached: bool,
    /// The cache key to store it under once it has a checksum.
    store: Option<String>,
    /// Work trees (under the work directory) no longer needed.
    pub done_with: &'static [&'static str],
}

/// A cache hit, for the timings.
struct Hit;

impl Outcome for Hit {
    fn cached(&self) -> bool {
        true
    }
}

/// Write the image of `commit` to `raw_tmp`, timing the deploy (on a miss)
/// and the disk stage in `t`.
pub fn run(
    env: &Env,
    m: &Manifest,
    commit: &Commit,
    raw_tmp: &Path,
    t: &mut Timings,
) -> Result<Disk> {
    let key = key(env, m, commit);
    let cache = StageCache::new(&env.cache_dir);
    let entry = match env.use_cache {
        true => cache.get("disk", &key)?,
        false => None,
    };
    let layout = disk::layout(&m.disk, &m.image_seed());
    if let Some(entry) = entry {
        t.run("disk", || {
            let s = env.progress.stage("disk");
            s.message("using the cached image of this commit");
            // A copy: outputs of different builds never share an inode, so
            // booting one in place cannot change another.
            fsutil::copy_sparse(&entry.join("image.raw"), raw_tmp)?;
            s.finish("cached");
            Ok(Hit)
        })?;
        return Ok(Disk {
            layout,
            kargs: deploy::kargs(m),
            cached: true,
            store: None,
            done_with: &["root"],
        });
    }
    let deployed = t.run("deploy", || deploy::run(env, m, commit))?;
    t.run("disk", || {
        let s = env.progress.stage("disk");
        let inputs = disk::DiskInputs {
            layout: &layout,
            sysroot: &deployed.sysroot,
            scratch: &env.workdir,
            epoch: env.epoch,
        };
        disk::write(&inputs, raw_tmp, &|msg| s.message(msg))?;
        s.finish(&format!("{} MiB", layout.size / disk::MIB));
        Ok(())
    })?;
    Ok(Disk {
        layout,
        kargs: deployed.kargs,
        cached: false,
        store: env.use_cache.then_some(key),
        done_with: &["root", "sysroot", "bootfs"],
    })
}

impl Disk {
    /// Keep the image written now as its own cache entry (a second link,
    /// no copy): a later build of the same commit reuses it, and if the
    /// output is modified (booted in place), the entry's checksum no longer
    /// matches and it is rebuilt.
    pub fn remember(&self, env: &Env, raw_tmp: &Path, sha256: &str) -> Result<()> {
        if let Some(key) = &self.store {
            StageCache::new(&env.cache_dir).put_linked(
                "disk",
                key,
                &[("image.raw", raw_tmp, sha256)],
            )?;
        }
        Ok(())
    }
}
