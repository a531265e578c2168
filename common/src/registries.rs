//! Container registry settings as containerd reads them: one directory per
//! registry under `/etc/containerd/certs.d`, named after the registry as
//! image references name it (`registry.example.com`, `10.0.2.2:5000`, or
//! `_default` for every registry without its own), holding `hosts.toml`
//! (where to pull from: the mirrors in order, then the registry itself)
//! and `ca.crt` (the CA that signs their certificates).
//!
//! The builder writes the manifest's `[[registries]]` into the image;
//! `atomic-firstboot` writes user data's, which alone may carry
//! credentials (sent as an `Authorization` header to the registry and its
//! mirrors; `hosts.toml` is then readable by root only). containerd's CRI
//! plugin, and so the kubelet, reads the directory through `config_path`;
//! `ctr` through `--hosts-dir`. Plain HTTP is used only for a registry
//! marked insecure.

use std::fmt;
use std::path::Path;

use anyhow::{Context, Result};
use base64::Engine as _;

use crate::atomic::{self, Attrs};

/// The directory containerd reads, as a path on the host.
pub const CERTS_DIR: &str = "/etc/containerd/certs.d";

/// The entry for every registry without its own.
pub const DEFAULT_HOST: &str = "_default";

/// One registry's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registry {
    /// The registry as image references name it.
    pub host: String,
    /// Mirrors tried first, in order: `https://HOST[:PORT][/PATH]`
    /// (`http://` only when insecure).
    pub mirrors: Vec<String>,
    /// PEM of the CA that signs the registry's and its mirrors'
    /// certificates (the system's CAs when `None`).
    pub ca_pem: Option<String>,
    /// Plain HTTP to the registry.
    pub insecure: bool,
    /// Who to log in as (user data only).
    pub credentials: Option<Credentials>,
}

/// A registry login.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name (no `:`).
    pub username: String,
    /// Password or token.
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials({}, <password>)", self.username)
    }
}

/// Characters a host, port or URL path may hold here: nothing that needs
/// quoting in TOML or a path.
fn plain(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._:[]/~%+".contains(&b))
}

/// `HOST` or `HOST:PORT` (an IPv6 address in brackets).
fn check_authority(a: &str) -> Result<(), String> {
    if a.is_empty() {
        return Err("no host name".into());
    }
    if a.contains('/') || !plain(a) {
        return Err("a host name, IP address or [IPv6], with an optional :PORT".into());
    }
    let (name, port) = match a.rfind(':') {
        Some(i) if !a[i..].contains(']') => (&a[..i], Some(&a[i + 1..])),
        _ => (a, None),
    };
    if name.is_empty() {
        return Err("no host name before the port".into());
    }
    if let Some(p) = port {
        match p.parse::<u16>() {
            Ok(n) if n > 0 => {}
            _ => return Err("the port must be a number from 1 to 65535".into()),
        }
    }
    Ok(())
}

/// Check a registry name (`host` of an entry).
pub fn check_host(host: &str) -> Result<(), String> {
    if host == DEFAULT_HOST {
        return Ok(());
    }
    if host.contains("://") {
        return Err(
            "the registry as image references name it, without a scheme (registry.example.com:5000)"
                .into(),
        );
    }
    check_authority(host)
}

/// Check a mirror URL; `http://` only when `insecure`.
pub fn check_mirror(url: &str, insecure: bool) -> Result<(), String> {
    let rest = if let Some(r) = url.strip_prefix("https://") {
        r
    } else if let Some(r) = url.strip_prefix("http://") {
        if !insecure {
            return Err("plain http:// is used only for a registry marked insecure = true".into());
        }
        r
    } else {
        return Err("a URL: https://HOST[:PORT][/PATH]".into());
    };
    let authority = rest.split('/').next().unwrap_or(rest);
    check_authority(authority)?;
    if !plain(rest) {
        return Err("the path holds characters a URL path here may not".into());
    }
    Ok(())
}

/// Check a login.
pub fn check_credentials(c: &Credentials) -> Result<(), String> {
    if c.username.is_empty() || c.username.contains(':') || c.username.contains('\n') {
        return Err("the user name must be non-empty and hold no ':' or newline".into());
    }
    if c.password.is_empty() {
        return Err("the password must not be empty".into());
    }
    Ok(())
}

/// Where the registry itself is reached (`None` for [`DEFAULT_HOST`]).
pub fn server(r: &Registry) -> Option<String> {
    let scheme = if r.insecure { "http" } else { "https" };
    match r.host.as_str() {
        DEFAULT_HOST => None,
        "docker.io" => Some(format!("{scheme}://registry-1.docker.io")),
        h => Some(format!("{scheme}://{h}")),
    }
}

/// `hosts.toml` for `r` (its CA is `ca.crt` beside it: containerd reads a
/// relative path from the file's directory).
pub fn hosts_toml(r: &Registry) -> String {
    let mut s = String::from(
        "# Written from the registry settings (atomicbuild's manifest or first-boot\n\
         # user data): mirrors first, in order, then the registry itself.\n",
    );
    let server = server(r);
    if let Some(url) = &server {
        s.push_str(&format!("server = \"{url}\"\n"));
    }
    let auth = r.credentials.as_ref().map(|c| {
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", c.username, c.password))
    });
    let mirrors = r.mirrors.iter().map(|m| (m, "[\"pull\", \"resolve\"]"));
    let own = server
        .iter()
        .map(|m| (m, "[\"pull\", \"resolve\", \"push\"]"));
    for (url, caps) in mirrors.chain(own) {
        let url = url.trim_end_matches('/');
        s.push_str(&format!("\n[host.\"{url}\"]\n  capabilities = {caps}\n"));
        if r.ca_pem.is_some() {
            s.push_str("  ca = \"ca.crt\"\n");
        }
        if let Some(a) = &auth {
            s.push_str(&format!(
                "  [host.\"{url}\".header]\n    Authorization = \"Basic {a}\"\n"
            ));
        }
    }
    s
}

/// Write `r`'s directory under `certs_dir` (the host's [`CERTS_DIR`], or a
/// root's copy of it). Each file is written atomically; `hosts.toml` is
/// root's only (0600) when it holds credentials.
pub fn write(certs_dir: &Path, r: &Registry) -> Result<()> {
    let dir = certs_dir.join(&r.host);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let ca = dir.join("ca.crt");
    match &r.ca_pem {
        Some(pem) => atomic::write_with(&ca, pem.as_bytes(), Attrs::root(0o644))?,
        None => match std::fs::remove_file(&ca) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", ca.display())),
        },
    }
    let mode = if r.credentials.is_some() {
        0o600
    } else {
        0o644
    };
    atomic::write_with(
        &dir.join("hosts.toml"),
        hosts_toml(r).as_bytes(),
        Attrs::root(mode),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(host: &str) -> Registry {
        Registry {
            host: host.into(),
            mirrors: vec![],
            ca_pem: None,
            insecure: false,
            credentials: None,
        }
    }

    #[test]
    fn names_and_urls_are_checked() {
        for ok in [
            "docker.io",
            "10.0.2.2:5000",
            "[::1]:5000",
            "_default",
            "a-b.c",
        ] {
            assert_eq!(check_host(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "https://x",
            "x/y",
            "x:0",
            "x:99999",
            ":5000",
            "a\"b",
            "a b",
        ] {
            assert!(check_host(bad).is_err(), "{bad}");
        }
        assert!(check_mirror("https://m.example:5000/v2/x", false).is_ok());
        assert!(check_mirror("http://m.example", false).is_err());
        assert!(check_mirror("http://m.example", true).is_ok());
        assert!(check_mirror("ftp://m", true).is_err());
        assert!(check_mirror("https://m/a\"b", false).is_err());
        let c = |u: &str, p: &str| Credentials {
            username: u.into(),
            password: p.into(),
        };
        assert!(check_credentials(&c("u", "p")).is_ok());
        assert!(check_credentials(&c("u:x", "p")).is_err());
        assert!(check_credentials(&c("u", "")).is_err());
        assert!(!format!("{:?}", c("u", "hunter2")).contains("hunter2"));
    }

    #[test]
    fn hosts_toml_lists_mirrors_before_the_registry_with_ca_and_login() {
        let mut r = reg("10.0.2.2:5000");
        r.mirrors = vec!["https://m1:443/".into(), "https://m2".into()];
        r.ca_pem = Some("PEM".into());
        r.credentials = Some(Credentials {
            username: "u".into(),
            password: "p".into(),
        });
        let t = hosts_toml(&r);
        let m1 = t.find("[host.\"https://m1:443\"]").unwrap();
        let m2 = t.find("[host.\"https://m2\"]").unwrap();
        let own = t.find("[host.\"https://10.0.2.2:5000\"]").unwrap();
        assert!(m1 < m2 && m2 < own, "{t}");
        assert!(t.contains("server = \"https://10.0.2.2:5000\"\n"));
        assert_eq!(
            t.matches("Authorization = \"Basic dTpw\"").count(),
            3,
            "{t}"
        );
        assert_eq!(t.matches("ca = \"ca.crt\"").count(), 3);
        assert!(t[own..].contains("\"push\""));

        let mut d = reg("_default");
        d.mirrors = vec!["https://mirror".into()];
        let t = hosts_toml(&d);
        assert!(!t.contains("server") && !t.contains("ca =") && !t.contains("header"));
        let mut i = reg("docker.io");
        i.insecure = true;
        assert_eq!(server(&i).unwrap(), "http://registry-1.docker.io");
    }

    #[test]
    fn write_keeps_credentials_root_only_and_drops_a_stale_ca() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let mut r = reg("r:5000");
        r.ca_pem = Some("PEM".into());
        r.credentials = Some(Credentials {
            username: "u".into(),
            password: "p".into(),
        });
        write(tmp.path(), &r).unwrap();
        let d = tmp.path().join("r:5000");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&d.join("hosts.toml")), 0o600);
        assert_eq!(std::fs::read_to_string(d.join("ca.crt")).unwrap(), "PEM");
        r.ca_pem = None;
        r.credentials = None;
        write(tmp.path(), &r).unwrap();
        assert_eq!(mode(&d.join("hosts.toml")), 0o644);
        assert!(!d.join("ca.crt").exists());
        let names: Vec<_> = std::fs::read_dir(&d).unwrap().collect();
        assert_eq!(names.len(), 1, "temporary files left: {names:?}");
    }
}
