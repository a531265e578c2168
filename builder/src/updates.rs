//! The manifest's `[updates]` table: where hosts of the image look for
//! updates (an OSTree remote with GPG verification of commits and summary)
//! and how the update agent behaves. The image carries the public keys
//! (`/usr/share/atomic-update/keys/`, read by libostree through the
//! remote's `gpgkeypath`, so a published image can rotate them) and the
//! agent's settings (`/usr/lib/atomic-update/config.d/00-image.toml`); the
//! sysroot gets the remote and the deployment's origin points at it.

use std::path::PathBuf;

use serde::Deserialize;

use crate::model::Scope;

/// The remote's name unless `remote` says otherwise.
pub const DEFAULT_REMOTE: &str = "atomic";
/// Where the image keeps the trusted public keys.
pub const KEYS_DIR: &str = "/usr/share/atomic-update/keys";
/// The image's settings drop-in.
pub const SETTINGS_FILE: &str = "usr/lib/atomic-update/config.d/00-image.toml";

/// `[updates]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // fields: README's manifest reference
pub struct RawUpdates {
    pub url: String,
    pub keys: Vec<String>,
    #[serde(rename = "ref")]
    pub ref_: Option<String>,
    pub remote: Option<String>,
    pub poll_interval: Option<String>,
    pub tries: Option<i64>,
    pub strategy: Option<String>,
    pub window: Option<RawWindow>,
    pub lock: Option<RawLock>,
}

/// `[updates.window]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct RawWindow {
    pub days: Option<Vec<String>>,
    pub start: String,
    pub length: String,
    pub time_zone: Option<String>,
}

/// `[updates.lock]` as written (etcd's endpoints and certificates are the
/// host's: first boot writes them).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct RawLock {
    pub group: Option<String>,
    pub slots: Option<i64>,
    pub ttl: Option<String>,
}

/// `[updates.window]`, checked.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Window {
    /// Day names (none: every day).
    pub days: Vec<String>,
    /// "HH:MM".
    pub start: String,
    /// Seconds.
    pub length_secs: u64,
    /// UTC, +HH:MM or a tz database name.
    pub time_zone: String,
}

/// `[updates.lock]`, checked, defaults filled.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Lock {
    /// The group whose slots hosts of the image share.
    pub group: String,
    /// Hosts of the group that may reboot at once.
    pub slots: u32,
    /// The slot's lease TTL in seconds.
    pub ttl_secs: u64,
}

/// `[updates]`, checked, defaults filled.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Updates {
    /// The repository's URL (http, https or file).
    pub url: String,
    /// Armored public key files (absolute).
    pub keys: Vec<PathBuf>,
    /// The branch hosts follow (default: `[ostree] ref`).
    pub ref_: String,
    /// The remote's name.
    pub remote: String,
    /// How often hosts look, in seconds.
    pub poll_interval_secs: u64,
    /// Boots a new deployment gets to become healthy.
    pub tries: u32,
    /// When hosts reboot into an update.
    pub strategy: String,
    /// The maintenance window (strategies with `window`).
    pub window: Option<Window>,
    /// The reboot lock (strategies with `etcd-lock`).
    pub lock: Option<Lock>,
}

impl Updates {
    /// The agent's settings drop-in the image carries.
    pub fn settings_toml(&self) -> String {
        let mut t = format!(
            "# Written by atomicbuild from [updates]; override in /etc/atomic-update/config.d/.\nremote = \"{}\"\nref = \"{}\"\npoll_interval = {}\ntries = {}\nstrategy = \"{}\"\n",
            self.remote, self.ref_, self.poll_interval_secs, self.tries, self.strategy
        );
        if let Some(w) = &self.window {
            let days: Vec<String> = w.days.iter().map(|d| format!("{d:?}")).collect();
            t += &format!(
                "\n[window]\ndays = [{}]\nstart = {:?}\nlength = {}\ntime_zone = {:?}\n",
                days.join(", "),
                w.start,
                w.length_secs,
                w.time_zone
            );
        }
        if let Some(l) = &self.lock {
            t += &format!(
                "\n[lock]\ngroup = {:?}\nslots = {}\nttl = {}\n",
                l.group, l.slots, l.ttl_secs
            );
        }
        t
    }

    /// The refspec deployments follow.
    pub fn refspec(&self) -> String {
        format!("{}:{}", self.remote, self.ref_)
    }
}

fn is_word(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// Check `[updates]` (`p`: the `updates` scope); `ostree_ref` is the default
/// branch, `dir` resolves relative key paths.
pub fn check(u: RawUpdates, ostree_ref: &str, dir: &std::path::Path, p: &mut Scope) -> Updates {
    let url_ok = ["http://", "https://", "file://"]
        .iter()
        .any(|x| u.url.starts_with(x) && u.url.len() > x.len())
        && !u.url.contains(char::is_whitespace);
    if !url_ok {
        p.bad(
            "url",
            format!("\"{}\" is not an http://, https:// or file:// URL", u.url),
        );
    }
    if u.keys.is_empty() {
        p.bad("keys", "no keys: hosts verify every update's signature; list the public key files that may sign them");
    }
    let keys = check_keys(&u.keys, dir, p);
    let remote = u.remote.unwrap_or_else(|| DEFAULT_REMOTE.into());
    if !is_word(&remote) {
        p.bad(
            "remote",
            format!("\"{remote}\" is not a remote name (letters, digits, . _ -)"),
        );
    }
    let poll = match u
        .poll_interval
        .as_deref()
        .map(common::units::parse_duration)
    {
        None => 3600,
        Some(Ok(s)) if s >= 5 => s,
        Some(_) => {
            p.bad(
                "poll_interval",
                "write a duration of at least 5 seconds, like \"30s\", \"15m\" or \"6h\"",
            );
            3600
        }
    };
    let tries = u.tries.unwrap_or(3);
    if !(1..=common::grub::MAX_TRIES as i64).contains(&tries) {
        p.bad(
            "tries",
            format!("{tries}: use 1 to {}", common::grub::MAX_TRIES),
        );
    }
    let strategy = u.strategy.unwrap_or_else(|| "immediate".into());
    let (window, lock) = check_fleet(&strategy, u.window, u.lock, p);
    Updates {
        url: u.url,
        keys,
        ref_: u.ref_.unwrap_or_else(|| ostree_ref.to_string()),
        remote,
        poll_interval_secs: poll,
        tries: tries.clamp(1, 9) as u32,
        strategy,
        window,
        lock,
    }
}

/// The window and lock tables against the strategy that uses them.
fn check_fleet(
    strategy: &str,
    window: Option<RawWindow>,
    lock: Option<RawLock>,
    p: &mut Scope,
) -> (Option<Window>, Option<Lock>) {
    let st = common::strategy::Strategy::parse(strategy).unwrap_or_else(|e| {
        p.bad("strategy", e);
        common::strategy::Strategy {
            window: window.is_some(),
            lock: lock.is_some(),
        }
    });
    let window = match (st.window, window) {
        (true, None) => {
            p.bad(
                "strategy",
                format!("\"{strategy}\" needs an [updates.window] table (start, length)"),
            );
            None
        }
        (false, Some(_)) => {
            p.bad("window", format!("strategy \"{strategy}\" has no window: use \"window\" or \"window+etcd-lock\", or drop the table"));
            None
        }
        (_, w) => w.map(|w| check_window(w, &mut p.scope("window"))),
    };
    let lock = match (st.lock, lock) {
        (false, Some(_)) => {
            p.bad("lock", format!("strategy \"{strategy}\" takes no lock: use \"etcd-lock\" or \"window+etcd-lock\", or drop the table"));
            None
        }
        (true, l) => Some(check_lock(l, &mut p.scope("lock"))),
        (false, None) => None,
    };
    (window, lock)
}

fn check_window(w: RawWindow, p: &mut Scope) -> Window {
    use common::fleet;
    let days = w.days.unwrap_or_default();
    if let Err(e) = fleet::parse_days(&days) {
        p.bad("days", e);
    }
    if let Err(e) = fleet::parse_start(&w.start) {
        p.bad("start", e);
    }
    let length = common::units::parse_duration(&w.length).and_then(fleet::check_length);
    if let Err(e) = &length {
        p.bad("length", format!("{e} (write it like \"2h\" or \"90m\")"));
    }
    let time_zone = w.time_zone.unwrap_or_else(|| "UTC".into());
    if let Err(e) = fleet::parse_zone(&time_zone) {
        p.bad("time_zone", e);
    }
    Window {
        days,
        start: w.start,
        length_secs: length.unwrap_or(0),
        time_zone,
    }
}

fn check_lock(l: Option<RawLock>, p: &mut Scope) -> Lock {
    use common::fleet;
    let l = l.unwrap_or_default();
    let group = l.group.unwrap_or_else(|| "default".into());
    if let Err(e) = fleet::check_group(&group) {
        p.bad("group", e);
    }
    let slots = fleet::check_slots(l.slots.unwrap_or(1)).unwrap_or_else(|e| {
        p.bad("slots", e);
        1
    });
    let ttl = match l.ttl.as_deref().map(common::units::parse_duration) {
        None => Ok(fleet::DEFAULT_TTL_SECS),
        Some(t) => t.and_then(fleet::check_ttl),
    };
    Lock {
        group,
        slots,
        ttl_secs: ttl.unwrap_or_else(|e| {
            p.bad("ttl", e);
            fleet::DEFAULT_TTL_SECS
        }),
    }
}

/// The key files that hold armored public keys.
fn check_keys(keys: &[String], dir: &std::path::Path, p: &mut Scope) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let path = dir.join(k);
        match std::fs::read_to_string(&path) {
            Ok(t) if t.contains("-----BEGIN PGP PUBLIC KEY BLOCK-----") => found.push(path),
            Ok(_) => p.bad(
                &format!("keys[{i}]"),
                format!(
                    "{} is not an armored OpenPGP public key (gpg --export --armor KEYID)",
                    path.display()
                ),
            ),
            Err(e) => p.bad(
                &format!("keys[{i}]"),
                format!(
                    "cannot read {}: {e}; paths are relative to the manifest's directory",
                    path.display()
                ),
            ),
        }
    }
    found
}
