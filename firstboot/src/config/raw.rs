//! The config file as written: every field optional, unknown fields
//! refused. [`super::validate`] turns this into the typed [`super::Config`].

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// The whole file.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub version: Option<i64>,
    pub hostname: Option<String>,
    #[serde(default)]
    pub users: Vec<RawUser>,
    #[serde(default)]
    pub files: Vec<RawFile>,
    pub units: Option<RawUnits>,
    pub etcd: Option<RawEtcd>,
    pub kubelet: Option<RawKubelet>,
    #[serde(default)]
    pub registries: Vec<RawRegistry>,
}

/// `[[registries]]`: the CA is inline PEM (`ca`) or a path (`ca_file`).
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRegistry {
    pub host: Option<String>,
    #[serde(default)]
    pub mirrors: Vec<String>,
    pub ca: Option<String>,
    pub ca_file: Option<String>,
    #[serde(default)]
    pub insecure: bool,
    pub username: Option<String>,
    pub password: Option<String>,
}

/// `[[users]]`
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUser {
    pub name: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub ssh_authorized_keys: Vec<String>,
}

/// `[[files]]`
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFile {
    pub path: Option<String>,
    pub mode: Option<RawMode>,
    pub owner: Option<String>,
    pub contents: Option<String>,
    pub url: Option<String>,
    pub sha256: Option<String>,
}

/// A file mode as written: `"0644"` or `0o644` (or decimal `420`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawMode {
    /// An integer.
    Int(i64),
    /// A string, to be read as octal.
    Str(String),
}

impl<'de> Deserialize<'de> for RawMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawMode;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an octal string such as \"0644\" or an integer such as 0o644")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawMode, E> {
                Ok(RawMode::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawMode, E> {
                Ok(RawMode::Int(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawMode, E> {
                Ok(RawMode::Str(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// `[units]`
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUnits {
    #[serde(default)]
    pub enable: Vec<String>,
    #[serde(default)]
    pub start: Vec<String>,
}

/// `[etcd]`: each certificate or key is either inline PEM (`ca`) or a path
/// (`ca_file`).
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEtcd {
    pub mode: Option<String>,
    pub name: Option<String>,
    pub peer_urls: Option<Vec<String>>,
    pub client_urls: Option<Vec<String>>,
    pub listen_peer_urls: Option<Vec<String>>,
    pub listen_client_urls: Option<Vec<String>>,
    pub heartbeat_interval_ms: Option<u32>,
    pub election_timeout_ms: Option<u32>,
    pub endpoints: Option<Vec<String>>,
    pub data_dir: Option<String>,
    pub cluster_token: Option<String>,
    pub ca: Option<String>,
    pub ca_file: Option<String>,
    pub cert: Option<String>,
    pub cert_file: Option<String>,
    pub key: Option<String>,
    pub key_file: Option<String>,
    pub server_cert: Option<String>,
    pub server_cert_file: Option<String>,
    pub server_key: Option<String>,
    pub server_key_file: Option<String>,
    pub peer_cert: Option<String>,
    pub peer_cert_file: Option<String>,
    pub peer_key: Option<String>,
    pub peer_key_file: Option<String>,
}

/// `[kubelet]`
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKubelet {
    pub api_server: Option<String>,
    pub bootstrap_token: Option<String>,
    pub ca_cert_hash: Option<String>,
    pub ca: Option<String>,
    pub ca_file: Option<String>,
}
