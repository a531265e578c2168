//! `[[base.repos]]`: package repositories besides the base's own archive.
//! One table shape for both families, each with its own keys: RPM
//! repositories (`baseurl` or `metalink`, `gpgkey`, `gpgcheck`) for Fedora,
//! apt repositories (`uri`, `suite` + `components` or a flat `path`,
//! `architectures`, `signed_by`) for Debian. Both take `fingerprint`: the
//! OpenPGP fingerprint the repository's key must have (required for apt
//! repositories, whose key atomicbuild fetches itself; optional for RPM
//! repositories, whose `gpgkey` is then fetched and checked the same way).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::names::{is_name, is_url};
use crate::model::Scope;

/// A repository as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // fields: README's manifest reference
pub struct RawRepo {
    pub name: String,
    pub baseurl: Option<String>,
    pub metalink: Option<String>,
    pub gpgkey: Option<String>,
    pub gpgcheck: Option<bool>,
    pub uri: Option<String>,
    pub suite: Option<String>,
    pub path: Option<String>,
    pub components: Option<Vec<String>>,
    pub architectures: Option<Vec<String>>,
    pub signed_by: Option<String>,
    pub fingerprint: Option<String>,
}

/// One RPM repository.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Repo {
    /// Repository id.
    pub name: String,
    /// Base URL.
    pub baseurl: Option<String>,
    /// Metalink URL.
    pub metalink: Option<String>,
    /// GPG key URL.
    pub gpgkey: Option<String>,
    /// Whether signatures are checked.
    pub gpgcheck: bool,
    /// The fingerprint `gpgkey` must have (uppercase hex).
    pub fingerprint: Option<String>,
}

/// Where an apt repository's packages are listed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum AptDist {
    /// `dists/SUITE` with components.
    Suite {
        /// Suite or code name.
        suite: String,
        /// Components.
        components: Vec<String>,
    },
    /// A flat repository: `path` (ending in `/`) below the URI.
    Flat(String),
}

/// Where a repository's key comes from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum KeySource {
    /// An http(s):// or file:// URL.
    Url(String),
    /// A file (resolved against the manifest's directory).
    File(PathBuf),
}

impl std::fmt::Display for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::Url(u) => f.write_str(u),
            KeySource::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// One apt repository (Debian base).
#[derive(Debug, Clone, serde::Serialize)]
pub struct AptRepo {
    /// Name (the lock's `origin` of its packages).
    pub name: String,
    /// Archive URI.
    pub uri: String,
    /// Suite and components, or flat path.
    pub dist: AptDist,
    /// Architectures to use (empty: apt's default).
    pub architectures: Vec<String>,
    /// The repository's signing key.
    pub signed_by: KeySource,
    /// Its OpenPGP fingerprint (uppercase hex, no spaces).
    pub fingerprint: String,
}

impl AptRepo {
    /// The URL below which `InRelease`/`Release` are.
    pub fn release_dir(&self) -> String {
        let uri = self.uri.trim_end_matches('/');
        match &self.dist {
            AptDist::Suite { suite, .. } => format!("{uri}/dists/{suite}/"),
            AptDist::Flat(p) => {
                let p = p.trim_start_matches("./").trim_start_matches('/');
                format!("{uri}/{p}")
            }
        }
    }

    /// The apt source line, with the key at `keyring`.
    pub fn source_line(&self, keyring: &Path) -> String {
        let mut opts = format!("signed-by={}", keyring.display());
        if !self.architectures.is_empty() {
            opts.push_str(&format!(" arch={}", self.architectures.join(",")));
        }
        match &self.dist {
            AptDist::Suite { suite, components } => {
                format!("deb [{opts}] {} {suite} {}", self.uri, components.join(" "))
            }
            AptDist::Flat(p) => format!("deb [{opts}] {} {p}", self.uri),
        }
    }

    /// What identifies this repository in an installed root's cache key.
    pub fn key_part(&self) -> String {
        format!(
            "{}|{}|{:?}|{}|{}",
            self.name,
            self.uri,
            self.dist,
            self.architectures.join(","),
            self.fingerprint
        )
    }
}

/// The origin of the base's own packages in locks.
pub const BASE_ORIGIN: &str = "debian";

/// An OpenPGP fingerprint as written (spaces allowed): uppercase hex of a
/// v4 (40 digits) or v5/v6 (64 digits) key.
pub fn normalize_fingerprint(s: &str) -> Option<String> {
    let f: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    let f = f.strip_prefix("0x").unwrap_or(&f).to_ascii_uppercase();
    ((f.len() == 40 || f.len() == 64) && f.chars().all(|c| c.is_ascii_hexdigit())).then_some(f)
}

fn fingerprint(r: &RawRepo, p: &mut Scope) -> Option<String> {
    let f = r.fingerprint.as_deref()?;
    let n = normalize_fingerprint(f);
    if n.is_none() {
        p.bad("fingerprint", format!("\"{f}\" is not an OpenPGP fingerprint: give the key's full fingerprint, 40 hexadecimal digits (spaces allowed), as `gpg --show-keys KEYFILE` prints it"));
    }
    n
}

/// Keys of the other family, set where they do not apply.
fn refuse(p: &mut Scope, keys: &[(&str, bool)], why: &str) {
    for (k, set) in keys {
        if *set {
            p.bad(k, why.to_string());
        }
    }
}

fn unique_name(name: &str, i: usize, names: &mut BTreeMap<String, usize>, p: &mut Scope) {
    if !is_name(name) {
        p.bad(
            "name",
            format!("\"{name}\" is not a valid repository name (lowercase letters, digits, . _ -)"),
        );
    } else if let Some(first) = names.insert(name.to_string(), i) {
        p.bad(
            "name",
            format!("repository \"{name}\" is defined twice (also base.repos[{first}])"),
        );
    }
}

/// Check an RPM repository (`p`: its `repos[i]` scope).
pub fn check_rpm(r: RawRepo, i: usize, names: &mut BTreeMap<String, usize>, p: &mut Scope) -> Repo {
    unique_name(&r.name, i, names, p);
    refuse(
        p,
        &[
            ("uri", r.uri.is_some()),
            ("suite", r.suite.is_some()),
            ("path", r.path.is_some()),
            ("components", r.components.is_some()),
            ("architectures", r.architectures.is_some()),
            ("signed_by", r.signed_by.is_some()),
        ],
        "this key is for apt repositories (Debian base); an RPM repository takes baseurl or metalink, gpgkey, gpgcheck and fingerprint",
    );
    match (&r.baseurl, &r.metalink) {
        (None, None) => p.bad("", "a repository needs a baseurl or a metalink"),
        (Some(_), Some(_)) => p.bad("", "give either baseurl or metalink, not both"),
        _ => {}
    }
    for (k, u) in [
        ("baseurl", &r.baseurl),
        ("metalink", &r.metalink),
        ("gpgkey", &r.gpgkey),
    ] {
        if let Some(u) = u {
            if !is_url(u) {
                p.bad(
                    k,
                    format!("\"{u}\" is not an http://, https:// or file:// URL"),
                );
            }
        }
    }
    let gpgcheck = r.gpgcheck.unwrap_or(true);
    if gpgcheck && r.gpgkey.is_none() {
        p.bad("gpgkey", "gpgcheck is on but no gpgkey is given; add the key URL (or set gpgcheck = false for a trusted local repository)");
    }
    let fpr = fingerprint(&r, p);
    if fpr.is_some() && r.gpgkey.is_none() {
        p.bad(
            "fingerprint",
            "a fingerprint pins the key that gpgkey names; give gpgkey too",
        );
    }
    Repo {
        name: r.name,
        baseurl: r.baseurl,
        metalink: r.metalink,
        gpgkey: r.gpgkey,
        gpgcheck,
        fingerprint: fpr,
    }
}

fn is_word(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

fn apt_dist(r: &RawRepo, p: &mut Scope) -> AptDist {
    match (&r.suite, &r.path) {
        (Some(_), Some(_)) => {
            p.bad(
                "",
                "give either suite (with components) or path (a flat repository), not both",
            );
            AptDist::Flat(String::new())
        }
        (None, None) => {
            p.bad("", "an apt repository needs a suite (e.g. \"bookworm\") or, for a flat repository, a path (e.g. \"/\")");
            AptDist::Flat(String::new())
        }
        (None, Some(path)) => {
            if r.components.is_some() {
                p.bad(
                    "components",
                    "a flat repository (path) has no components; remove them or use suite",
                );
            }
            if !path.ends_with('/') || path.contains(char::is_whitespace) || path.contains("..") {
                p.bad("path", format!("\"{path}\" is not a flat repository path: it must end with '/' (e.g. \"/\" or \"./\"), without spaces or \"..\""));
            }
            AptDist::Flat(path.clone())
        }
        (Some(suite), None) => {
            if !is_word(suite) {
                p.bad("suite", format!("\"{suite}\" is not a valid suite name"));
            }
            let components = r.components.clone().unwrap_or_else(|| vec!["main".into()]);
            if components.is_empty() {
                p.bad(
                    "components",
                    "no components listed; give at least one (e.g. \"main\")",
                );
            }
            for (j, c) in components.iter().enumerate() {
                if !is_word(c) {
                    p.bad(
                        &format!("components[{j}]"),
                        format!("\"{c}\" is not a valid component"),
                    );
                }
            }
            AptDist::Suite {
                suite: suite.clone(),
                components,
            }
        }
    }
}

fn key_source(s: &str, dir: &Path, p: &mut Scope) -> KeySource {
    if s.contains("://") {
        if !is_url(s) {
            p.bad(
                "signed_by",
                format!("\"{s}\" is not an http://, https:// or file:// URL"),
            );
        }
        return KeySource::Url(s.to_string());
    }
    let path = dir.join(s);
    if !path.is_file() {
        p.bad("signed_by", format!("the key file \"{s}\" does not exist (looked for {}); paths are relative to the manifest's directory", path.display()));
    }
    KeySource::File(path)
}

/// Check an apt repository (`p`: its `repos[i]` scope; key files are
/// relative to `dir`).
pub fn check_apt(
    r: RawRepo,
    i: usize,
    names: &mut BTreeMap<String, usize>,
    dir: &Path,
    p: &mut Scope,
) -> AptRepo {
    unique_name(&r.name, i, names, p);
    if r.name == BASE_ORIGIN {
        p.bad(
            "name",
            format!("\"{BASE_ORIGIN}\" names the base's own archive in locks; choose another name"),
        );
    }
    refuse(
        p,
        &[
            ("baseurl", r.baseurl.is_some()),
            ("metalink", r.metalink.is_some()),
            ("gpgkey", r.gpgkey.is_some()),
            ("gpgcheck", r.gpgcheck.is_some()),
        ],
        "this key is for RPM repositories (Fedora base); an apt repository takes uri, suite and components (or path), architectures, signed_by and fingerprint, and is always signature-checked",
    );
    let uri = r.uri.clone().unwrap_or_default();
    match &r.uri {
        None => p.bad("uri", "an apt repository needs its uri (e.g. \"https://pkgs.k8s.io/core:/stable:/v1.34/deb/\")"),
        Some(u) if !is_url(u) => p.bad("uri", format!("\"{u}\" is not an http://, https:// or file:// URL")),
        _ => {}
    }
    let dist = apt_dist(&r, p);
    let architectures = r.architectures.clone().unwrap_or_default();
    for (j, a) in architectures.iter().enumerate() {
        if !is_word(a) || a.chars().any(|c| c.is_ascii_uppercase()) {
            p.bad(
                &format!("architectures[{j}]"),
                format!("\"{a}\" is not a Debian architecture name (e.g. amd64, arm64, all)"),
            );
        }
    }
    let signed_by = match &r.signed_by {
        Some(s) => key_source(s, dir, p),
        None => {
            p.bad("signed_by", "an apt repository needs the key it is signed with: a key file (relative to the manifest) or its URL, pinned by fingerprint");
            KeySource::File(PathBuf::new())
        }
    };
    let fpr = fingerprint(&r, p);
    if r.fingerprint.is_none() {
        p.bad("fingerprint", "give the OpenPGP fingerprint of the signed_by key (40 hexadecimal digits, from a source you trust): atomicbuild refuses a key that does not have it");
    }
    AptRepo {
        name: r.name,
        uri,
        dist,
        architectures,
        signed_by,
        fingerprint: fpr.unwrap_or_default(),
    }
}
