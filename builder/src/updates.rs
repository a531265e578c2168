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
}

impl Updates {
    /// The agent's settings drop-in the image carries.
    pub fn settings_toml(&self) -> String {
        format!(
            "# Written by atomicbuild from [updates]; override in /etc/atomic-update/config.d/.\nremote = \"{}\"\nref = \"{}\"\npoll_interval = {}\ntries = {}\nstrategy = \"{}\"\n",
            self.remote, self.ref_, self.poll_interval_secs, self.tries, self.strategy
        )
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
    if let Err(e) = common::strategy::Strategy::parse(&strategy) {
        p.bad("strategy", e);
    }
    Updates {
        url: u.url,
        keys,
        ref_: u.ref_.unwrap_or_else(|| ostree_ref.to_string()),
        remote,
        poll_interval_secs: poll,
        tries: tries.clamp(1, 9) as u32,
        strategy,
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
