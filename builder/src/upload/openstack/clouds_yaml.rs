//! `clouds.yaml` (and its companion `secure.yaml`), the OpenStack client
//! configuration file: `clouds: NAME: {auth_type, auth: {...}, region_name,
//! interface}`. Looked up where openstacksdk looks: `$OS_CLIENT_CONFIG_FILE`,
//! `./clouds.yaml`, `~/.config/openstack/clouds.yaml`,
//! `/etc/openstack/clouds.yaml`, each also as `.yml` (the first that exists); values in
//! `secure.yaml` (same places, `$OS_CLIENT_SECURE_FILE`) win.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use yaml_rust2::{Yaml, YamlLoader};

use super::auth::{Auth, Cloud};

/// Where `NAME.yaml` is looked for, in order.
pub fn candidates(name: &str, env_var: &str) -> Vec<PathBuf> {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    let mut out = Vec::new();
    if let Some(f) = env(env_var) {
        out.push(PathBuf::from(f));
    }
    let mut dirs = vec![PathBuf::new()];
    let config = env("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| Path::new(&h).join(".config")));
    if let Some(c) = config {
        dirs.push(c.join("openstack"));
    }
    dirs.push(PathBuf::from("/etc/openstack"));
    for d in dirs {
        for ext in ["yaml", "yml"] {
            out.push(d.join(format!("{name}.{ext}")));
        }
    }
    out
}

/// A parsed file, with syntax errors at FILE:LINE:COLUMN.
fn load(p: &Path) -> Result<Yaml> {
    let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
    let docs = YamlLoader::load_from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}:{}:{}: {}",
            p.display(),
            e.marker().line(),
            e.marker().col() + 1,
            e.info()
        )
    })?;
    Ok(docs.into_iter().next().unwrap_or(Yaml::Null))
}

/// A scalar as text (YAML reads `password: 1234` as a number).
fn scalar(y: &Yaml) -> Option<String> {
    match y {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// One cloud's entry, with `secure.yaml`'s values over `clouds.yaml`'s.
struct Entry<'a> {
    file: &'a Path,
    name: &'a str,
    main: &'a Yaml,
    secure: Option<&'a Yaml>,
}

impl Entry<'_> {
    /// `auth.password` style lookups.
    fn get(&self, path: &str) -> Option<String> {
        let walk = |root: &Yaml| {
            let mut y = root;
            for k in path.split('.') {
                y = &y[k];
            }
            scalar(y).filter(|s| !s.is_empty())
        };
        self.secure.and_then(walk).or_else(|| walk(self.main))
    }

    fn need(&self, path: &str) -> Result<String> {
        self.get(path).with_context(|| {
            format!(
                "{}: cloud {:?} has no {path}",
                self.file.display(),
                self.name
            )
        })
    }

    fn cloud(&self) -> Result<Cloud> {
        let auth_type = self.get("auth_type").unwrap_or_else(|| "password".into());
        let auth = match auth_type.as_str() {
            "password" | "v3password" => {
                let project_name = self.get("auth.project_name");
                let project_id = self.get("auth.project_id");
                // `user_`/`project_domain_*`, else the shared `domain_*`.
                let domain = |of: &str| {
                    self.get(&format!("auth.{of}_domain_name"))
                        .or_else(|| self.get(&format!("auth.{of}_domain_id")))
                        .or_else(|| self.get("auth.domain_name"))
                        .or_else(|| self.get("auth.domain_id"))
                        .unwrap_or_else(|| "Default".into())
                };
                Auth::Password {
                    user: self.need("auth.username")?,
                    password: self.need("auth.password")?,
                    user_domain: domain("user"),
                    // An id names the project alone, as keystoneauth does it.
                    project_is_id: project_id.is_some(),
                    project: project_id.or(project_name).with_context(|| {
                        format!(
                            "{}: cloud {:?} has neither auth.project_name nor auth.project_id",
                            self.file.display(),
                            self.name
                        )
                    })?,
                    project_domain: domain("project"),
                }
            }
            "v3applicationcredential" | "applicationcredential" => Auth::AppCredential {
                id: self.need("auth.application_credential_id")?,
                secret: self.need("auth.application_credential_secret")?,
            },
            other => bail!(
                "{}: cloud {:?}: auth_type {other:?} is not supported (use password or v3applicationcredential)",
                self.file.display(),
                self.name
            ),
        };
        Ok(Cloud {
            auth_url: self.need("auth.auth_url")?,
            auth,
            region: self.get("region_name"),
            interface: self.get("interface").unwrap_or_else(|| "public".into()),
        })
    }
}

/// The cloud `name` from the first `clouds.yaml` found.
pub fn cloud(name: &str) -> Result<Cloud> {
    let places = candidates("clouds", "OS_CLIENT_CONFIG_FILE");
    let file = places.iter().find(|p| p.is_file()).with_context(|| {
        format!(
            "cloud {name:?} asked for, but no clouds.yaml exists (looked at {})",
            places
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })?;
    let main = load(file)?;
    let secure_file = candidates("secure", "OS_CLIENT_SECURE_FILE")
        .into_iter()
        .find(|p| p.is_file());
    let secure = secure_file.as_deref().map(load).transpose()?;
    let entry = &main["clouds"][name];
    if entry.is_badvalue() {
        let known: Vec<String> = main["clouds"]
            .as_hash()
            .map(|h| h.keys().filter_map(scalar).collect())
            .unwrap_or_default();
        bail!(
            "{}: no cloud {name:?} (clouds there: {})",
            file.display(),
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        );
    }
    Entry {
        file,
        name,
        main: entry,
        secure: secure
            .as_ref()
            .map(|s| &s["clouds"][name])
            .filter(|y| !y.is_badvalue()),
    }
    .cloud()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry_cloud(main: &str, secure: Option<&str>, name: &str) -> Result<Cloud> {
        let m = YamlLoader::load_from_str(main).unwrap().remove(0);
        let s = secure.map(|s| YamlLoader::load_from_str(s).unwrap().remove(0));
        Entry {
            file: Path::new("clouds.yaml"),
            name,
            main: &m["clouds"][name],
            secure: s.as_ref().map(|s| &s["clouds"][name]),
        }
        .cloud()
    }

    #[test]
    fn password_clouds_with_secrets_in_secure_yaml() {
        let main = "clouds:\n  lab:\n    region_name: RegionTwo\n    auth:\n      auth_url: http://k:5000/v3\n      username: demo\n      project_id: 4e12\n      user_domain_name: Users\n";
        let c = entry_cloud(
            main,
            Some("clouds:\n  lab:\n    auth:\n      password: 1234\n"),
            "lab",
        )
        .unwrap();
        assert_eq!(c.auth_url, "http://k:5000/v3");
        assert_eq!(c.region.as_deref(), Some("RegionTwo"));
        assert_eq!(c.interface, "public");
        match c.auth {
            Auth::Password {
                password,
                project,
                project_is_id,
                user_domain,
                ..
            } => {
                assert_eq!(password, "1234");
                assert_eq!((project.as_str(), project_is_id), ("4e12", true));
                assert_eq!(user_domain, "Users");
            }
            other => panic!("{other:?}"),
        }
        let e = entry_cloud(main, None, "lab").unwrap_err().to_string();
        assert!(
            e.contains("clouds.yaml: cloud \"lab\" has no auth.password"),
            "{e}"
        );
    }

    #[test]
    fn application_credentials_and_unknown_auth_types() {
        let main = "clouds:\n  ci:\n    auth_type: v3applicationcredential\n    interface: internal\n    auth: {auth_url: 'http://k:5000', application_credential_id: abc, application_credential_secret: s3}\n  tok:\n    auth_type: token\n    auth: {auth_url: 'http://k'}\n";
        let c = entry_cloud(main, None, "ci").unwrap();
        assert_eq!(c.interface, "internal");
        assert!(
            matches!(c.auth, Auth::AppCredential { ref id, ref secret } if id == "abc" && secret == "s3")
        );
        let e = entry_cloud(main, None, "tok").unwrap_err().to_string();
        assert!(e.contains("auth_type \"token\" is not supported"), "{e}");
    }
}
