//! Registry settings baked into the image (`[[registries]]`): mirrors, a
//! private registry's CA, plain HTTP only where named. Written into
//! `/etc/containerd/certs.d` by [`common::registries`], the same code the
//! first-boot agent uses for user data's. Credentials are refused here:
//! an image carries no secrets, they come from user data.

use std::path::Path;

use anyhow::Result;
use serde::Deserialize;

use crate::model::Scope;
use common::registries::{self, Registry};

/// `[[registries]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // fields: README's manifest reference
pub struct RawRegistry {
    pub host: String,
    #[serde(default)]
    pub mirrors: Vec<String>,
    pub ca: Option<String>,
    #[serde(default)]
    pub insecure: bool,
    pub username: Option<String>,
    pub password: Option<String>,
}

/// Check `[[registries]]` (`dir` resolves the CA files); each CA is read
/// here, so that the build's inputs hold its bytes.
pub fn check(raw: Vec<RawRegistry>, dir: &Path, p: &mut Scope) -> Vec<Registry> {
    let mut out: Vec<Registry> = Vec::new();
    for (i, r) in raw.into_iter().enumerate() {
        let mut s = p.scope(&format!("[{i}]"));
        if let Err(why) = registries::check_host(&r.host) {
            s.bad("host", why);
        } else if out.iter().any(|o| o.host == r.host) {
            s.bad("host", format!("{:?} has an earlier entry", r.host));
        }
        for (j, m) in r.mirrors.iter().enumerate() {
            if let Err(why) = registries::check_mirror(m, r.insecure) {
                s.bad(&format!("mirrors[{j}]"), why);
            }
        }
        if r.insecure && r.host == registries::DEFAULT_HOST {
            s.bad(
                "insecure",
                "plain HTTP must name its registry: not for _default",
            );
        }
        for (field, v) in [("username", &r.username), ("password", &r.password)] {
            if v.is_some() {
                s.bad(
                    field,
                    "credentials never go into an image: give them in first-boot user data ([[registries]] with username and password)",
                );
            }
        }
        let ca_pem = r.ca.as_ref().and_then(|c| {
            let path = dir.join(c);
            match std::fs::read_to_string(&path) {
                Ok(t) if t.contains("-----BEGIN CERTIFICATE-----") => Some(t),
                Ok(_) => {
                    s.bad("ca", format!("{} holds no PEM certificate", path.display()));
                    None
                }
                Err(e) => {
                    s.bad("ca", format!("cannot read {}: {e}", path.display()));
                    None
                }
            }
        });
        out.push(Registry {
            host: r.host,
            mirrors: r.mirrors,
            ca_pem,
            insecure: r.insecure,
            credentials: None,
        });
    }
    out
}

/// Write each registry's settings into `root`.
pub fn install(root: &Path, list: &[Registry], say: &dyn Fn(&str)) -> Result<()> {
    let certs = root.join(registries::CERTS_DIR.trim_start_matches('/'));
    for r in list {
        say(&format!("registry settings for {}", r.host));
        registries::write(&certs, r)?;
    }
    Ok(())
}
