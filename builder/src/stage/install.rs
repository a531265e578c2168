//! Install stage: the manifest's packages into a fresh staging root, by the
//! distribution's backend (`crate::distro`: mmdebstrap for Debian, dnf for
//! Fedora). Installed roots are cached, keyed by a hash of everything that
//! goes into them, as commits in the object store; a hit checks the cached
//! root out with hard links (see `objects`).

use std::fs;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use super::{Env, Outcome};
use crate::cache::StageCache;
use crate::distro::lock::Lock;
use crate::fsutil;
use crate::manifest::Manifest;
use crate::model::Saving;
use crate::objects;
use crate::progress::StageProgress;

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
    /// What the lean settings saved (from the cache entry when cached).
    pub savings: Vec<Saving>,
}

impl Outcome for Installed {
    fn cached(&self) -> bool {
        self.cache_hit
    }
}

/// The object-store ref that keeps a cached installed root alive.
pub fn root_ref(key: &str) -> String {
    format!("atomicbuild/install/{key}")
}

/// The cache key of an installed root: every input that shapes it (with a
/// lock, the exact pinned set instead of the manifest's names).
pub fn cache_key(m: &Manifest, lock: Option<&Lock>) -> String {
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
    let mut h = crate::cache::KeyHasher::new();
    // v2: the saved root is labelled with its SELinux policy, if it has one.
    h.put("installed-root-v2");
    h.put(format!("{:?}", m.base.distro));
    for p in crate::distro::backend(m.base.distro).key_parts(&m.base) {
        h.put(p);
    }
    h.put(pkgs.join(","));
    h.put(m.lean.key());
    // What the container-host module profile drops is part of the recipe.
    h.put(crate::kmods::DROPPED.join(","));
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

/// Install the packages into `env.root()`, exactly the locked set if a lock
/// is given.
pub fn run(env: &Env, m: &Manifest, lock: Option<&Lock>) -> Result<Installed> {
    let key = cache_key(m, lock);
    let root = env.root();
    let stage = env.progress.stage("install");
    let cache = crate::cache::StageCache::new(&env.cache_dir);
    if let Some(hit) = cached(env, &cache, &key, &stage)? {
        crate::failpoint::hit("install.checked-out");
        stage.finish(&format!("cached root; {}", saved_summary(&hit.savings)));
        return Ok(hit);
    }
    let req = crate::distro::Install {
        base: &m.base,
        packages: &m.packages,
        lock,
        root: &root,
        scratch: &env.workdir,
        downloads: &env.cache_dir,
        lean: &m.lean,
    };
    let backend = crate::distro::backend(m.base.distro);
    let installed_lock = backend
        .install(&req, &stage)
        .with_context(|| format!("installing the {:?} packages", m.base.distro))?;
    stage.message("measuring what the lean settings left out");
    let mut savings = backend
        .left_out(&req, &installed_lock)
        .context("measuring what was left out")?;
    savings.extend(
        crate::kmods::apply(&root, &m.lean, &mut |l| stage.message(l))
            .context("trimming the kernel modules")?,
    );

    // Keep the pristine root for the next build with the same inputs: as a
    // commit in the object store, checked out again with hard links so this
    // build's commit stage already skips the unchanged files. Without the
    // cache the same happens in a private repository, so that every build
    // sees the same tree (an OSTree checkout has all mtimes 0, and dracut
    // copies mtimes into the initramfs).
    stage.message("saving the installed root to the cache");
    for d in BUILD_HOST_DIRS {
        crate::fsutil::empty_dir(&root.join(d))?;
    }
    let repo = objects::open_or_create(&env.object_store())?;
    // Labelled as the build's commit will be, so that the commit stage
    // takes the unchanged files by checksum instead of labelling them anew.
    let sepolicy = objects::sepolicy_of(&root)?;
    let commit = objects::commit_tree(
        &repo,
        &root,
        None,
        &objects::CommitSpec {
            ref_: &root_ref(&key),
            subject: "installed root",
            metadata: &[("atomicbuild.install-key", key.as_str())],
            timestamp: 0,
            sepolicy: sepolicy.as_ref(),
        },
    )
    .context("saving the installed root")?;
    if env.use_cache {
        remember(env, &cache, &key, &commit, &installed_lock, &savings)?;
    }
    stage.message("checking out the installed root");
    fsutil::remove_tree(&root)?;
    let devino = objects::checkout_linked(&repo, &commit, &root)?;
    crate::failpoint::hit("install.checked-out");
    stage.finish(&saved_summary(&savings));
    Ok(Installed {
        lock: installed_lock,
        root,
        cache_hit: false,
        key,
        devino: Some(devino),
        savings,
    })
}

/// The cached root of `key`, checked out (hard links), if the cache has a
/// complete one.
fn cached(
    env: &Env,
    cache: &StageCache,
    key: &str,
    stage: &StageProgress,
) -> Result<Option<Installed>> {
    if !env.use_cache {
        return Ok(None);
    }
    let Some(entry) = cache.get("install", key)? else {
        return Ok(None);
    };
    let repo = objects::open_or_create(&env.object_store())?;
    let commit = fs::read_to_string(entry.join("commit")).unwrap_or_default();
    // Entries from before savings were recorded have none.
    let savings: Vec<Saving> = fs::read(entry.join("savings.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    match Lock::load(&entry.join("lock.toml")) {
        Ok(l) if objects::has_complete_commit(&repo, commit.trim()) => {
            stage.message("checking out the cached root");
            let root = env.root();
            let devino = objects::checkout_linked(&repo, commit.trim(), &root)?;
            Ok(Some(Installed {
                lock: l,
                root,
                cache_hit: true,
                key: key.to_string(),
                devino: Some(devino),
                savings,
            }))
        }
        _ => {
            stage.message("the cached root is incomplete; reinstalling");
            Ok(None)
        }
    }
}

/// Record the installed root's commit and lock as the cache entry of `key`.
fn remember(
    env: &Env,
    cache: &StageCache,
    key: &str,
    commit: &str,
    lock: &Lock,
    savings: &[Saving],
) -> Result<()> {
    let tmp = env.workdir.join("install-entry");
    fs::create_dir_all(&tmp)?;
    fs::write(tmp.join("commit"), commit)?;
    fs::write(tmp.join("lock.toml"), lock.to_toml()?)?;
    fs::write(tmp.join("savings.json"), serde_json::to_vec(savings)?)?;
    cache.put(
        "install",
        key,
        &[
            ("commit", &tmp.join("commit")),
            ("lock.toml", &tmp.join("lock.toml")),
            ("savings.json", &tmp.join("savings.json")),
        ],
    )?;
    fsutil::remove_tree(&tmp)
}

/// "left out 69 MiB: ..." for the stage line.
fn saved_summary(savings: &[Saving]) -> String {
    let total: u64 = savings.iter().map(|s| s.bytes).sum();
    if total == 0 {
        return String::new();
    }
    let parts: Vec<String> = savings
        .iter()
        .filter(|s| s.bytes > 0)
        .map(|s| {
            let what = s.what.split(" (").next().unwrap_or(&s.what);
            format!("{what} {:.0} MiB", s.bytes as f64 / 1048576.0)
        })
        .collect();
    format!(
        "lean settings saved {:.0} MiB: {}",
        total as f64 / 1048576.0,
        parts.join(", ")
    )
}

/// Directories whose contents belong to the build host, never the image.
pub const BUILD_HOST_DIRS: &[&str] = &["dev", "proc", "sys", "run", "tmp"];

#[cfg(test)]
mod key_tests {
    use super::*;

    fn manifest(pkgs: &str) -> Manifest {
        let src = format!(
            "[image]\nname = \"t\"\nversion = \"1\"\n[base]\ndistro = \"debian\"\nrelease = \"bookworm\"\n[packages]\ninclude = [{pkgs}]\n[ostree]\nref = \"r\"\nosname = \"debian\"\n"
        );
        crate::manifest::parse_str(
            &src,
            std::path::Path::new("t.toml"),
            std::path::Path::new("."),
            "x".into(),
        )
        .unwrap()
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
