//! Settings as TOML drop-ins, as zincati reads them: every `*.toml` of
//! `/usr/lib/atomic-update/config.d` (the image's, written by atomicbuild
//! from `[updates]`), then `/run/atomic-update/config.d`, then
//! `/etc/atomic-update/config.d` (the administrator's, or first-boot user
//! data). A file in a later directory replaces the one of the same name in
//! an earlier one; the remaining files apply in name order, each key
//! overriding earlier ones. Unknown keys and bad values are errors naming
//! the file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

mod fleet;

pub use fleet::Strategy;

use crate::lock::LockSettings;
use crate::window::Window;

/// The drop-in directories, lowest priority first.
pub const DIRS: &[&str] = &[
    "/usr/lib/atomic-update/config.d",
    "/run/atomic-update/config.d",
    "/etc/atomic-update/config.d",
];

/// One drop-in: every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fragment {
    remote: Option<String>,
    #[serde(rename = "ref")]
    ref_: Option<String>,
    url: Option<String>,
    poll_interval: Option<Interval>,
    tries: Option<u32>,
    strategy: Option<String>,
    health_timeout: Option<Interval>,
    window: Option<fleet::WindowFrag>,
    lock: Option<fleet::LockFrag>,
}

/// A duration written as seconds or as `"30s"`, `"15m"`, `"2h"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Interval {
    Secs(u64),
    Text(String),
}

impl Interval {
    fn secs(&self) -> Result<u64> {
        match self {
            Interval::Secs(s) => Ok(*s),
            Interval::Text(t) => common::units::parse_duration(t).map_err(|e| anyhow::anyhow!(e)),
        }
    }
}

/// What updates are done with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The OSTree remote (in /ostree/repo/config).
    pub remote: String,
    /// The branch the host follows.
    pub ref_: String,
    /// The remote's URL, when it should be another than the image's.
    pub url: Option<String>,
    /// How often to look for an update.
    pub poll_interval: Duration,
    /// Boots a new deployment gets to become healthy.
    pub tries: u32,
    /// When to reboot into an update.
    pub strategy: Strategy,
    /// `[window]`: when reboots may happen.
    pub window: Option<Window>,
    /// `[lock]`: the reboot semaphore in etcd.
    pub lock: Option<LockSettings>,
    /// How long a boot may take to reach `running`.
    pub health_timeout: Duration,
    /// The files the settings came from, in the order applied.
    pub sources: Vec<PathBuf>,
}

/// The drop-ins of `dirs` (lowest priority first), in the order they apply.
pub fn dropins(dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut by_name: BTreeMap<String, PathBuf> = BTreeMap::new();
    for d in dirs {
        let Ok(rd) = std::fs::read_dir(d) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".toml") && !name.starts_with('.') {
                by_name.insert(name, e.path());
            }
        }
    }
    by_name.into_values().collect()
}

/// Read and merge the drop-ins of `dirs`.
pub fn load(dirs: &[PathBuf]) -> Result<Option<Settings>> {
    let files = dropins(dirs);
    let mut merged = Fragment::default();
    for f in &files {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        let frag: Fragment = toml::from_str(&text).map_err(|e| {
            let pos = e
                .span()
                .map(|s| {
                    let before = &text[..s.start.min(text.len())];
                    let line = before.matches('\n').count() + 1;
                    let col = before.rfind('\n').map_or(s.start, |n| s.start - n - 1) + 1;
                    format!(":{line}:{col}")
                })
                .unwrap_or_default();
            anyhow::anyhow!("{}{pos}: {}", f.display(), e.message())
        })?;
        merge(&mut merged, frag);
    }
    if files.is_empty() {
        return Ok(None);
    }
    validate(merged, files).map(Some)
}

fn merge(into: &mut Fragment, f: Fragment) {
    fleet::merge_window(&mut into.window, f.window);
    fleet::merge_lock(&mut into.lock, f.lock);
    macro_rules! take {
        ($($k:ident),*) => { $( if f.$k.is_some() { into.$k = f.$k; } )* };
    }
    take!(
        remote,
        ref_,
        url,
        poll_interval,
        tries,
        strategy,
        health_timeout
    );
}

fn validate(f: Fragment, sources: Vec<PathBuf>) -> Result<Settings> {
    let named = |k: &str| format!("{k} (from {})", show(&sources));
    let remote = f
        .remote
        .with_context(|| format!("no remote set in {}", show(&sources)))?;
    let ref_ = f
        .ref_
        .with_context(|| format!("no ref set in {}", show(&sources)))?;
    if let Some(u) = &f.url {
        if !(u.starts_with("http://") || u.starts_with("https://") || u.starts_with("file://")) {
            bail!("{}: {u:?} is not an http(s) or file URL", named("url"));
        }
    }
    let tries = f.tries.unwrap_or(3);
    if !(1..=common::grub::MAX_TRIES).contains(&tries) {
        bail!(
            "{}: {tries} is not 1 to {}",
            named("tries"),
            common::grub::MAX_TRIES
        );
    }
    let strategy = Strategy::parse(f.strategy.as_deref().unwrap_or("immediate"))
        .map_err(|e| anyhow::anyhow!("{}: {e}", named("strategy")))?;
    let from = |e: String| anyhow::anyhow!("{e} (from {})", show(&sources));
    let window = fleet::window(f.window, Path::new(crate::tz::ZONEINFO)).map_err(from)?;
    let lock = fleet::lock(f.lock).map_err(from)?;
    if strategy.window && window.is_none() {
        bail!("{}: {strategy} needs a [window] table", named("strategy"));
    }
    if strategy.lock && lock.is_none() {
        bail!("{}: {strategy} needs a [lock] table", named("strategy"));
    }
    let poll = f.poll_interval.map_or(Ok(3600), |i| i.secs())?;
    if poll < 5 {
        bail!("{}: at least 5 seconds", named("poll_interval"));
    }
    let health = f.health_timeout.map_or(Ok(600), |i| i.secs())?;
    Ok(Settings {
        remote,
        ref_,
        url: f.url,
        poll_interval: Duration::from_secs(poll),
        tries,
        strategy,
        window,
        lock,
        health_timeout: Duration::from_secs(health),
        sources,
    })
}

fn show(files: &[PathBuf]) -> String {
    files
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The default directories.
pub fn default_dirs() -> Vec<PathBuf> {
    DIRS.iter().map(PathBuf::from).collect()
}

/// Whether `p` is one of the settings' sources.
pub fn is_source(s: &Settings, p: &Path) -> bool {
    s.sources.iter().any(|x| x == p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirs(d: &Path) -> Vec<PathBuf> {
        ["usr", "run", "etc"].iter().map(|x| d.join(x)).collect()
    }

    fn put(p: PathBuf, text: &str) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn later_directories_and_names_win() {
        let d = tempfile::tempdir().unwrap();
        let ds = dirs(d.path());
        put(
            ds[0].join("00-image.toml"),
            "remote = \"atomic\"\nref = \"os/x\"\nurl = \"http://image/repo\"\npoll_interval = \"1h\"\ntries = 3\n",
        );
        put(ds[0].join("50-site.toml"), "tries = 5\n");
        // /etc replaces /usr/lib's file of the same name...
        put(ds[2].join("50-site.toml"), "tries = 2\n");
        // ...and a later name overrides earlier keys.
        put(
            ds[2].join("90-local.toml"),
            "url = \"http://local/repo\"\npoll_interval = 15\n",
        );
        let s = load(&ds).unwrap().unwrap();
        assert_eq!(s.tries, 2);
        assert_eq!(s.url.as_deref(), Some("http://local/repo"));
        assert_eq!(s.poll_interval, Duration::from_secs(15));
        assert_eq!(s.ref_, "os/x");
        assert_eq!(s.sources.len(), 3);
        assert!(is_source(&s, &ds[2].join("50-site.toml")));
        assert!(!is_source(&s, &ds[0].join("50-site.toml")));
    }

    #[test]
    fn problems_name_the_file_and_position() {
        let d = tempfile::tempdir().unwrap();
        let ds = dirs(d.path());
        put(ds[0].join("00.toml"), "remote = \"a\"\nref = \"r\"\n");
        put(ds[2].join("10.toml"), "remote = \"a\"\nfrequency = 3\n");
        let e = load(&ds).unwrap_err().to_string();
        assert!(
            e.contains("10.toml:2:1") && e.contains("unknown field"),
            "{e}"
        );
        put(ds[2].join("10.toml"), "tries = 12\n");
        let e = load(&ds).unwrap_err().to_string();
        assert!(e.contains("tries") && e.contains("1 to 9"), "{e}");
        put(ds[2].join("10.toml"), "poll_interval = \"5 minutes\"\n");
        assert!(load(&ds).is_err());
        assert!(load(&dirs(&d.path().join("none"))).unwrap().is_none());
    }
}
