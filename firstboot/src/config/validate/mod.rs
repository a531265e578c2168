//! Semantic validation: [`RawConfig`] → [`Config`], collecting every
//! problem (field path + message) instead of stopping at the first.

use std::collections::HashSet;
use std::path::PathBuf;

use super::checks;
use super::raw::{RawConfig, RawFile, RawUser};
use super::{Config, FileEntry, FileSource, Material, MaterialSource, Secret, Units, User};
use crate::http::Url;

mod cluster;
mod registries;

/// The config version this agent reads.
pub const VERSION: i64 = 1;

/// What a PEM field must hold.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Pem {
    Certs,
    Key,
}

#[derive(Default)]
pub(super) struct V {
    pub(super) problems: Vec<(String, String)>,
}

impl V {
    pub(super) fn bad(&mut self, field: impl Into<String>, msg: impl Into<String>) {
        self.problems.push((field.into(), msg.into()));
    }

    fn check<T>(&mut self, field: impl Into<String>, r: Result<T, String>) -> Option<T> {
        r.map_err(|m| self.bad(field, m)).ok()
    }

    fn required<T>(&mut self, field: &str, v: Option<T>, what: &str) -> Option<T> {
        if v.is_none() {
            self.bad(field, format!("required: {what}"));
        }
        v
    }

    pub(super) fn url(&mut self, field: &str, s: &str, https_only: bool) -> Option<Url> {
        let u = self.check(field, Url::parse(s).map_err(|e| format!("not a URL: {e}")))?;
        if https_only && !u.https {
            self.bad(field, "must be an https:// URL (TLS is required)");
            return None;
        }
        Some(u)
    }

    /// A list of https URLs whose host must be an IP address (etcd listens on it).
    pub(super) fn listen_urls(
        &mut self,
        field: &str,
        urls: Option<&Vec<String>>,
    ) -> Option<Vec<Url>> {
        let urls = self.required(field, urls, "a list of https://IP:PORT URLs")?;
        if urls.is_empty() {
            self.bad(field, "needs at least one URL");
        }
        let mut out = Vec::new();
        for (i, s) in urls.iter().enumerate() {
            let f = format!("{field}[{i}]");
            if let Some(u) = self.url(&f, s, true) {
                if u.host.parse::<std::net::IpAddr>().is_err() {
                    self.bad(&f, "the host must be an IP address (etcd listens on it)");
                } else if u.path != "/" {
                    self.bad(&f, "must not have a path");
                } else {
                    out.push(u);
                }
            }
        }
        Some(out)
    }

    /// `name` (inline PEM) or `name_file` (a path): at most one, or exactly
    /// one when `required`.
    pub(super) fn material(
        &mut self,
        table: &str,
        name: &str,
        inline: Option<String>,
        file: Option<String>,
        pem: Pem,
        required: bool,
    ) -> Option<Material> {
        let (f_inline, f_file) = (format!("{table}.{name}"), format!("{table}.{name}_file"));
        match (inline, file) {
            (Some(_), Some(_)) => {
                self.bad(
                    &f_file,
                    format!("give either {name} (inline PEM) or {name}_file (a path), not both"),
                );
                None
            }
            (Some(text), None) => {
                let parsed = match pem {
                    Pem::Certs => crate::tls::parse_certs(text.as_bytes()).map(|_| ()),
                    Pem::Key => crate::tls::parse_key(text.as_bytes()).map(|_| ()),
                };
                self.check(&f_inline, parsed.map_err(|e| format!("{e:#}")))?;
                Some(Material {
                    field: f_inline,
                    source: MaterialSource::Inline(Secret::new(text)),
                })
            }
            (None, Some(path)) => {
                self.check(&f_file, checks::abs_path(&path))?;
                Some(Material {
                    field: f_file,
                    source: MaterialSource::File(PathBuf::from(path)),
                })
            }
            (None, None) => {
                if required {
                    self.bad(
                        &f_inline,
                        format!("required: inline PEM in {name}, or a path in {name}_file"),
                    );
                }
                None
            }
        }
    }

    /// When both halves of a pair are inline, the key must match the certificate.
    pub(super) fn pair_matches(&mut self, cert: &Option<Material>, key: &Option<Material>) {
        if let (Some(c), Some(k)) = (cert, key) {
            if let (MaterialSource::Inline(c_pem), MaterialSource::Inline(k_pem)) =
                (&c.source, &k.source)
            {
                if let Err(e) =
                    crate::tls::check_pair(c_pem.expose().as_bytes(), k_pem.expose().as_bytes())
                {
                    self.bad(&k.field, format!("{e:#} (in {})", c.field));
                }
            }
        }
    }

    fn file(&mut self, i: usize, f: RawFile, seen: &mut HashSet<String>) -> Option<FileEntry> {
        let field = |n: &str| format!("files[{i}].{n}");
        let path = self.required(&field("path"), f.path, "an absolute path");
        let path = path.and_then(|p| {
            self.check(field("path"), checks::writable_path(&p))?;
            if !seen.insert(p.clone()) {
                self.bad(
                    field("path"),
                    "this path is already written by an earlier [[files]] entry",
                );
            }
            Some(p)
        });
        let mode = match &f.mode {
            Some(m) => self.check(field("mode"), checks::mode(m)),
            None => Some(0o644),
        };
        let owner = match &f.owner {
            Some(o) => self.check(field("owner"), checks::owner(o)),
            None => Some((0, 0)),
        };
        let source = match (f.contents, f.url, f.sha256) {
            (Some(_), Some(_), _) => {
                self.bad(
                    field("url"),
                    "give either contents or url + sha256, not both",
                );
                None
            }
            (Some(_), None, Some(_)) => {
                self.bad(field("sha256"), "only used with url");
                None
            }
            (Some(c), None, None) => Some(FileSource::Contents(Secret::new(c))),
            (None, Some(u), sha) => {
                let url = self.url(&field("url"), &u, false);
                let sha = match sha {
                    Some(s) => self.check(field("sha256"), checks::sha256_hex(&s)),
                    None => {
                        self.bad(
                            field("sha256"),
                            "required with url: the file's SHA-256 (64 hex digits)",
                        );
                        None
                    }
                };
                Some(FileSource::Url {
                    url: url?,
                    sha256: sha?,
                })
            }
            (None, None, _) => {
                self.bad(format!("files[{i}]"), "needs contents, or url + sha256");
                None
            }
        };
        let (uid, gid) = owner?;
        Some(FileEntry {
            path: PathBuf::from(path?),
            mode: mode?,
            uid,
            gid,
            source: source?,
        })
    }
}

impl V {
    /// `[[users]]`: names (unique), groups and SSH keys.
    fn users(&mut self, raw: Vec<RawUser>) -> Vec<User> {
        let v = self;
        let mut users = Vec::new();
        let mut names = HashSet::new();
        for (i, u) in raw.into_iter().enumerate() {
            let f = |n: &str| format!("users[{i}].{n}");
            let name = v.required(&f("name"), u.name, "a login name");
            let name = name.and_then(|n| v.check(f("name"), checks::account_name(&n)).map(|_| n));
            if let Some(n) = &name {
                if !names.insert(n.clone()) {
                    v.bad(
                        f("name"),
                        "this user is already listed in an earlier [[users]] entry",
                    );
                }
            }
            for (j, g) in u.groups.iter().enumerate() {
                v.check(format!("users[{i}].groups[{j}]"), checks::account_name(g));
            }
            for (j, k) in u.ssh_authorized_keys.iter().enumerate() {
                v.check(
                    format!("users[{i}].ssh_authorized_keys[{j}]"),
                    checks::ssh_key(k),
                );
            }
            if let Some(name) = name {
                users.push(User {
                    name,
                    groups: u.groups,
                    ssh_authorized_keys: u.ssh_authorized_keys,
                });
            }
        }
        users
    }
}

/// Validate everything; the config is `Some` only when there is no problem.
pub fn validate(raw: RawConfig) -> (Option<Config>, Vec<(String, String)>) {
    let mut v = V::default();
    match raw.version {
        Some(VERSION) => {}
        Some(_) => v.bad(
            "version",
            format!("unsupported version; this agent reads version = {VERSION}"),
        ),
        None => v.bad("version", format!("required: version = {VERSION}")),
    }
    let hostname = raw
        .hostname
        .and_then(|h| v.check("hostname", checks::hostname(&h)).map(|_| h));
    let users = v.users(raw.users);
    let mut seen = HashSet::new();
    let files: Vec<_> = raw
        .files
        .into_iter()
        .enumerate()
        .filter_map(|(i, f)| v.file(i, f, &mut seen))
        .collect();
    let units = raw.units.unwrap_or_default();
    for (list, names) in [("enable", &units.enable), ("start", &units.start)] {
        for (j, u) in names.iter().enumerate() {
            v.check(format!("units.{list}[{j}]"), checks::unit_name(u));
        }
    }
    let etcd = raw.etcd.map(|e| v.etcd(e));
    let kubelet = raw.kubelet.map(|k| v.kubelet(k));
    let registries = v.registries(raw.registries);
    if matches!(etcd, Some(None)) && v.problems.is_empty() {
        v.bad("etcd", "incomplete");
    }
    if matches!(kubelet, Some(None)) && v.problems.is_empty() {
        v.bad("kubelet", "incomplete");
    }
    if !v.problems.is_empty() {
        return (None, v.problems);
    }
    let config = Config {
        hostname,
        users,
        files,
        units: Units {
            enable: units.enable,
            start: units.start,
        },
        etcd: etcd.flatten(),
        kubelet: kubelet.flatten(),
        registries,
    };
    (Some(config), v.problems)
}
