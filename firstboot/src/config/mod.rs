//! The provisioning config (TOML user data): parsed strictly (unknown fields
//! refused), then validated as a whole into a typed [`Config`] before
//! anything is applied. Every problem names its field path and the line and
//! column where it is (or should be) written. Secrets (tokens, keys, file
//! contents) are held in [`Secret`], whose `Debug` never shows them, and no
//! error message quotes a value from the file.

mod checks;
mod locate;
mod raw;
mod validate;

use std::fmt;
use std::path::PathBuf;

use crate::http::Url;

pub use locate::line_col;

/// A value that must never be printed (token, key, file contents).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a value.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The value, for use (never for printing).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(<{} bytes>)", self.0.len())
    }
}

/// A validated config.
#[derive(Debug, Clone)]
pub struct Config {
    /// Static hostname.
    pub hostname: Option<String>,
    /// Users to create or update.
    pub users: Vec<User>,
    /// Files to write, in order.
    pub files: Vec<FileEntry>,
    /// Units to enable and start.
    pub units: Units,
    /// etcd membership.
    pub etcd: Option<Etcd>,
    /// kubelet TLS bootstrap.
    pub kubelet: Option<Kubelet>,
    /// Container registry settings (`[[registries]]`).
    pub registries: Vec<Registry>,
}

/// `[[registries]]`: where containerd pulls from for one registry.
#[derive(Debug, Clone)]
pub struct Registry {
    /// The settings, without the CA (read when applied) and with the
    /// login (whose `Debug` hides the password).
    pub settings: common::registries::Registry,
    /// The CA that signs the registry's and its mirrors' certificates.
    pub ca: Option<Material>,
}

/// `[[users]]`
#[derive(Debug, Clone)]
pub struct User {
    /// Login name.
    pub name: String,
    /// Supplementary groups (must exist on the host).
    pub groups: Vec<String>,
    /// OpenSSH public keys (`type base64 [comment]`).
    pub ssh_authorized_keys: Vec<String>,
}

/// `[[files]]`
#[derive(Debug, Clone)]
pub struct FileEntry {
    /// Absolute path on the host.
    pub path: PathBuf,
    /// Permission bits (at most 0o7777).
    pub mode: u32,
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
    /// Where the bytes come from.
    pub source: FileSource,
}

/// The bytes of a `[[files]]` entry.
#[derive(Debug, Clone)]
pub enum FileSource {
    /// Inline `contents`.
    Contents(Secret),
    /// Downloaded from `url`, checked against `sha256` before it is written.
    Url {
        /// Where from.
        url: Url,
        /// Expected SHA-256.
        sha256: [u8; 32],
    },
}

/// `[units]`
#[derive(Debug, Clone, Default)]
pub struct Units {
    /// `systemctl enable` each.
    pub enable: Vec<String>,
    /// `systemctl start --no-block` each.
    pub start: Vec<String>,
}

/// A certificate or key: inline PEM or a path on the host.
#[derive(Debug, Clone)]
pub struct Material {
    /// The config field it came from (`etcd.ca` or `etcd.ca_file`).
    pub field: String,
    /// The PEM itself or where it is.
    pub source: MaterialSource,
}

/// Where a [`Material`] is.
#[derive(Debug, Clone)]
pub enum MaterialSource {
    /// Inline PEM.
    Inline(Secret),
    /// An absolute path on the host (read under `--root`).
    File(PathBuf),
}

/// `[etcd]`
#[derive(Debug, Clone)]
pub struct Etcd {
    /// Bootstrap a new cluster or join an existing one.
    pub mode: EtcdMode,
    /// This member's name.
    pub name: String,
    /// This member's peer URLs, advertised to the cluster.
    pub peer_urls: Vec<Url>,
    /// This member's client URLs, advertised to clients.
    pub client_urls: Vec<Url>,
    /// Where etcd listens for peers (default: `peer_urls`); differs behind
    /// NAT or port forwarding, e.g. `https://0.0.0.0:2380`.
    pub listen_peer_urls: Vec<Url>,
    /// Where etcd listens for clients (default: `client_urls`).
    pub listen_client_urls: Vec<Url>,
    /// etcd's `heartbeat-interval` in ms (etcd's default when `None`).
    pub heartbeat_interval_ms: Option<u32>,
    /// etcd's `election-timeout` in ms (etcd's default when `None`).
    pub election_timeout_ms: Option<u32>,
    /// etcd's data directory.
    pub data_dir: PathBuf,
    /// `initial-cluster-token` for a new cluster.
    pub cluster_token: String,
    /// CA that signs every etcd certificate (server, peer and client).
    pub ca: Material,
    /// Client certificate for talking to the cluster.
    pub client_cert: Material,
    /// Its key.
    pub client_key: Material,
    /// This member's server certificate (client URLs).
    pub server_cert: Material,
    /// Its key.
    pub server_key: Material,
    /// This member's peer certificate (peer URLs; defaults to the server's).
    pub peer_cert: Material,
    /// Its key.
    pub peer_key: Material,
}

/// How this member comes to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EtcdMode {
    /// Start a new single-member cluster.
    Bootstrap,
    /// Join the cluster behind these client URLs as a learner, then promote.
    Join {
        /// Client URLs of existing members.
        endpoints: Vec<Url>,
    },
}

/// `[kubelet]`
#[derive(Debug, Clone)]
pub struct Kubelet {
    /// API server URL.
    pub api_server: Url,
    /// `[a-z0-9]{6}.[a-z0-9]{16}`
    pub bootstrap_token: Secret,
    /// SHA-256 of the cluster CA's SubjectPublicKeyInfo.
    pub ca_cert_hash: [u8; 32],
    /// The cluster CA; without it the CA is taken from the API server's
    /// TLS handshake (the certificate whose pin matches).
    pub ca: Option<Material>,
}

/// One thing wrong with a config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Field path such as `users[1].name`; `(syntax)` for TOML syntax errors.
    pub field: String,
    /// 1-based line and column.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
    /// What is wrong and how to fix it (never quotes a value).
    pub message: String,
}

/// A config that did not parse or validate.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    /// Where the config came from (a path, or `user data from qemu`).
    pub source_name: String,
    /// Every problem, in file order.
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(
                f,
                "{}:{}:{}: {}: {}",
                self.source_name, p.line, p.col, p.field, p.message
            )?;
        }
        Ok(())
    }
}

/// Replace every double-quoted value in a parser message: serde quotes the
/// offending value ("invalid type: string \"...\""), which may be a secret.
fn redact(msg: &str) -> String {
    let mut out = String::new();
    let mut parts = msg.split('"');
    if let Some(first) = parts.next() {
        out.push_str(first);
    }
    for (i, part) in parts.enumerate() {
        if i % 2 == 0 {
            out.push_str("\"…\"");
        } else {
            out.push_str(part);
        }
    }
    out.trim().to_string()
}

/// Parse and validate config text. `source_name` appears in error messages.
pub fn parse(src: &str, source_name: &str) -> Result<Config, ConfigError> {
    let de = toml::Deserializer::new(src);
    let raw: raw::RawConfig = match serde_path_to_error::deserialize(de) {
        Ok(r) => r,
        Err(e) => {
            let field = match e.path().to_string() {
                p if p == "." || p.is_empty() => "(syntax)".to_string(),
                p => p,
            };
            let (line, col) = match e.inner().span() {
                Some(s) => line_col(src, s.start),
                None => locate::position(src, &field),
            };
            return Err(ConfigError {
                source_name: source_name.to_string(),
                problems: vec![Problem {
                    field,
                    line,
                    col,
                    message: redact(e.inner().message()),
                }],
            });
        }
    };
    let (config, problems) = validate::validate(raw);
    if problems.is_empty() {
        if let Some(c) = config {
            return Ok(c);
        }
    }
    let mut problems: Vec<Problem> = problems
        .into_iter()
        .map(|(field, message)| {
            let (line, col) = locate::position(src, &field);
            Problem {
                field,
                line,
                col,
                message,
            }
        })
        .collect();
    problems.sort_by_key(|p| (p.line, p.col));
    Err(ConfigError {
        source_name: source_name.to_string(),
        problems,
    })
}

/// Parse user-data bytes (must be UTF-8).
pub fn parse_bytes(bytes: &[u8], source_name: &str) -> Result<Config, ConfigError> {
    let src = std::str::from_utf8(bytes).map_err(|e| {
        let (line, col) = line_col(
            &String::from_utf8_lossy(&bytes[..e.valid_up_to()]),
            e.valid_up_to(),
        );
        ConfigError {
            source_name: source_name.to_string(),
            problems: vec![Problem {
                field: "(syntax)".into(),
                line,
                col,
                message: "the config is not valid UTF-8".into(),
            }],
        }
    })?;
    parse(src, source_name)
}

#[cfg(test)]
mod tests;
