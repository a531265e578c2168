//! `upload openstack`: Keystone v3 authentication (password or
//! application credential), the image endpoint from the token's catalog,
//! Glance v2: create, streamed upload, wait for `active`, compare Glance's
//! `os_hash_value` (sha512) with ours. A re-run finds an active image of
//! the same name and sha512 and uploads nothing; a failed upload deletes
//! the image it created.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha512};

/// How to authenticate (from `OS_*` variables).
#[derive(Clone)]
pub enum Auth {
    /// User name and password, scoped to a project.
    Password {
        /// User name.
        user: String,
        /// Password (never printed).
        password: String,
        /// The user's domain (name, or id "default").
        user_domain: String,
        /// Project to scope the token to (a name, or an id when
        /// `project_is_id`).
        project: String,
        /// `project` is an id (OS_PROJECT_ID / auth.project_id).
        project_is_id: bool,
        /// The project's domain.
        project_domain: String,
    },
    /// Application credential (carries its own scope).
    AppCredential {
        /// Its id.
        id: String,
        /// Its secret (never printed).
        secret: String,
    },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Password { user, project, .. } => {
                write!(f, "password auth for {user} in {project} (password hidden)")
            }
            Auth::AppCredential { id, .. } => {
                write!(f, "application credential {id} (secret hidden)")
            }
        }
    }
}

/// A cloud to talk to.
#[derive(Debug, Clone)]
pub struct Cloud {
    /// Keystone URL, with or without `/v3`.
    pub auth_url: String,
    /// Credentials.
    pub auth: Auth,
    /// Region of the image endpoint (any when `None`).
    pub region: Option<String>,
    /// Endpoint interface (`public` by default).
    pub interface: String,
}

impl Cloud {
    /// `--cloud NAME` (or `$OS_CLOUD`) from clouds.yaml, else the `OS_*`
    /// variables of an openrc file.
    pub fn load(name: Option<&str>) -> Result<Cloud> {
        let from_env = std::env::var("OS_CLOUD").ok().filter(|v| !v.is_empty());
        match name.map(String::from).or(from_env) {
            Some(n) => super::clouds_yaml::cloud(&n),
            None => Cloud::from_env().context(
                "no cloud configured: pass --cloud NAME (an entry of clouds.yaml), set OS_CLOUD, or source the cloud's openrc",
            ),
        }
    }

    /// From the standard `OS_*` environment variables.
    pub fn from_env() -> Result<Cloud> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let auth_url =
            env("OS_AUTH_URL").context("OS_AUTH_URL is not set (source your cloud's openrc)")?;
        let project_id = env("OS_PROJECT_ID").or_else(|| env("OS_TENANT_ID"));
        let auth = if let (Some(id), Some(secret)) = (
            env("OS_APPLICATION_CREDENTIAL_ID"),
            env("OS_APPLICATION_CREDENTIAL_SECRET"),
        ) {
            Auth::AppCredential { id, secret }
        } else {
            Auth::Password {
                user: env("OS_USERNAME").context("OS_USERNAME is not set")?,
                password: env("OS_PASSWORD").context("OS_PASSWORD is not set")?,
                user_domain: env("OS_USER_DOMAIN_NAME")
                    .or_else(|| env("OS_USER_DOMAIN_ID"))
                    .unwrap_or_else(|| "Default".into()),
                // An id names the project alone (no domain needed), as
                // keystoneauth does it.
                project_is_id: project_id.is_some(),
                project: project_id
                    .or_else(|| env("OS_PROJECT_NAME"))
                    .or_else(|| env("OS_TENANT_NAME"))
                    .context("OS_PROJECT_NAME (or OS_PROJECT_ID) is not set")?,
                project_domain: env("OS_PROJECT_DOMAIN_NAME")
                    .or_else(|| env("OS_PROJECT_DOMAIN_ID"))
                    .unwrap_or_else(|| "Default".into()),
            }
        };
        Ok(Cloud {
            auth_url,
            auth,
            region: env("OS_REGION_NAME"),
            interface: env("OS_INTERFACE").unwrap_or_else(|| "public".into()),
        })
    }
}

/// A domain given by name, or by id when it looks like one ("default" is
/// Keystone's id of the Default domain).
fn domain(d: &str) -> serde_json::Value {
    if d == "default" || (d.len() == 32 && d.chars().all(|c| c.is_ascii_hexdigit())) {
        serde_json::json!({ "id": d })
    } else {
        serde_json::json!({ "name": d })
    }
}

/// The Keystone v3 token request body.
pub fn token_request(auth: &Auth) -> serde_json::Value {
    match auth {
        Auth::Password {
            user,
            password,
            user_domain,
            project,
            project_is_id,
            project_domain,
        } => {
            let scope = if *project_is_id {
                serde_json::json!({ "id": project })
            } else {
                serde_json::json!({"name": project, "domain": domain(project_domain)})
            };
            serde_json::json!({"auth": {
                "identity": {"methods": ["password"], "password": {"user": {
                    "name": user, "domain": domain(user_domain), "password": password}}},
                "scope": {"project": scope}
            }})
        }
        Auth::AppCredential { id, secret } => serde_json::json!({"auth": {
            "identity": {"methods": ["application_credential"],
                "application_credential": {"id": id, "secret": secret}}
        }}),
    }
}

/// An authenticated session: the token and the image endpoint.
pub struct Session {
    agent: ureq::Agent,
    cloud: Cloud,
    /// Renewed when Glance says it expired (long uploads outlive tokens).
    token: std::sync::Mutex<String>,
    /// The project the token is scoped to (the images' owner).
    project_id: Option<String>,
    /// Glance's base URL (without `/v2`).
    pub image_url: String,
}

/// The image endpoint of a token's catalog.
pub fn image_endpoint(
    token: &serde_json::Value,
    interface: &str,
    region: Option<&str>,
) -> Result<String> {
    let catalog = token["token"]["catalog"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let svc = catalog
        .iter()
        .find(|s| s["type"] == "image")
        .context("the cloud's catalog has no image service (Glance)")?;
    let eps = svc["endpoints"].as_array().cloned().unwrap_or_default();
    let ep = eps
        .iter()
        .find(|e| {
            e["interface"] == interface
                && region.is_none_or(|r| e["region_id"] == r || e["region"] == r)
        })
        .with_context(|| {
            format!(
                "no {interface} image endpoint{} in the catalog",
                region
                    .map(|r| format!(" in region {r}"))
                    .unwrap_or_default()
            )
        })?;
    let url = ep["url"].as_str().context("endpoint without url")?;
    Ok(url
        .trim_end_matches('/')
        .trim_end_matches("/v2")
        .to_string())
}

fn http_error(what: &str, e: ureq::Error) -> anyhow::Error {
    super::http_error(e).context(what.to_string())
}

/// A token and the body that came with it.
fn issue_token(cloud: &Cloud, agent: &ureq::Agent) -> Result<(String, serde_json::Value)> {
    let base = cloud.auth_url.trim_end_matches('/');
    let url = if base.ends_with("/v3") {
        format!("{base}/auth/tokens")
    } else {
        format!("{base}/v3/auth/tokens")
    };
    let resp = agent
        .post(&url)
        .set("content-type", "application/json")
        .send_string(&token_request(&cloud.auth).to_string())
        .map_err(|e| match e {
            ureq::Error::Status(401, _) => anyhow::anyhow!(
                "Keystone at {base} refused the credentials ({:?}): check the user name, password, project and domains, or the application credential",
                cloud.auth
            ),
            e => http_error(&format!("authenticating at {url}"), e),
        })?;
    let token = resp
        .header("x-subject-token")
        .context("Keystone returned no X-Subject-Token")?
        .to_string();
    let body: serde_json::Value = serde_json::from_str(&resp.into_string()?)?;
    Ok((token, body))
}

impl Session {
    /// Authenticate against Keystone.
    pub fn open(cloud: &Cloud, agent: ureq::Agent) -> Result<Session> {
        let (token, body) = issue_token(cloud, &agent)?;
        let image_url = image_endpoint(&body, &cloud.interface, cloud.region.as_deref())?;
        Ok(Session {
            agent,
            cloud: cloud.clone(),
            token: std::sync::Mutex::new(token),
            project_id: body["token"]["project"]["id"].as_str().map(String::from),
            image_url,
        })
    }

    fn token(&self) -> String {
        self.token.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A Glance call; once more with a new token when the old one expired.
    fn call(
        &self,
        what: &str,
        make: impl Fn(&str) -> std::result::Result<ureq::Response, Box<ureq::Error>>,
    ) -> Result<ureq::Response> {
        match make(&self.token()) {
            Err(e) if matches!(*e, ureq::Error::Status(401, _)) => {
                let (t, _) = issue_token(&self.cloud, &self.agent)?;
                *self.token.lock().unwrap_or_else(|e| e.into_inner()) = t.clone();
                make(&t).map_err(|e| http_error(what, *e))
            }
            r => r.map_err(|e| http_error(what, *e)),
        }
    }

    fn get(&self, path: &str) -> Result<serde_json::Value> {
        let url = format!("{}{path}", self.image_url);
        let r = self.call(&format!("GET {path}"), |t| {
            self.agent
                .get(&url)
                .set("x-auth-token", t)
                .call()
                .map_err(Box::new)
        })?;
        Ok(serde_json::from_str(&r.into_string()?)?)
    }

    fn delete(&self, id: &str) -> Result<()> {
        let url = format!("{}/v2/images/{id}", self.image_url);
        self.call(&format!("deleting image {id}"), |t| {
            self.agent
                .delete(&url)
                .set("x-auth-token", t)
                .call()
                .map_err(Box::new)
        })?;
        Ok(())
    }
}

/// What the image is.
pub struct ImageSpec<'a> {
    /// Image name.
    pub name: &'a str,
    /// `raw` or `qcow2` (from the file name).
    pub disk_format: &'a str,
    /// `uefi` or `bios`.
    pub firmware: &'a str,
    /// Smallest disk that holds it, GiB.
    pub min_disk_gib: u64,
    /// Smallest sensible RAM, MiB.
    pub min_ram_mib: u64,
    /// os_distro property.
    pub os_distro: &'a str,
    /// os_version property.
    pub os_version: &'a str,
}

/// A reader that hashes what passes through it.
struct Hashing<R> {
    inner: R,
    h: Sha512,
    n: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.h.update(&buf[..n]);
        self.n += n as u64;
        Ok(n)
    }
}

/// sha512 of a file.
pub fn sha512_file(p: &Path) -> Result<String> {
    let mut r = Hashing {
        inner: File::open(p)?,
        h: Sha512::new(),
        n: 0,
    };
    std::io::copy(&mut r, &mut std::io::sink())?;
    Ok(hex::encode(r.h.finalize()))
}

/// The file's digest in the algorithm Glance names in `os_hash_algo`
/// (an operator setting; sha512 by default). `sha512` is known already.
fn digest_as(p: &Path, algo: &str, sha512: &str) -> Result<String> {
    fn hash<D: Digest + std::io::Write>(p: &Path) -> Result<String> {
        let mut d = D::new();
        std::io::copy(&mut File::open(p)?, &mut d)?;
        Ok(hex::encode(d.finalize()))
    }
    match algo {
        "sha512" => Ok(sha512.to_string()),
        "sha384" => hash::<sha2::Sha384>(p),
        "sha256" => hash::<sha2::Sha256>(p),
        other => bail!(
            "Glance hashes images with {other:?}; atomicbuild can check sha256, sha384 and sha512"
        ),
    }
}

/// Upload `image` unless an identical image exists; returns (id, uploaded).
pub fn upload(
    s: &Session,
    image: &Path,
    spec: &ImageSpec,
    wait: Duration,
) -> Result<(String, bool)> {
    let ours = sha512_file(image)?;
    // Only the project's own images (shared and public ones are not ours).
    let owner = s
        .project_id
        .as_ref()
        .map(|p| format!("&owner={p}"))
        .unwrap_or_default();
    let existing = s.get(&format!(
        "/v2/images?name={}{owner}&limit=100",
        crate::upload::sigv4::uri_encode(spec.name, false)
    ))?;
    let images = existing["images"].as_array().cloned().unwrap_or_default();
    for img in images.iter().filter(|i| i["status"] == "active") {
        let algo = img["os_hash_algo"].as_str().unwrap_or("sha512");
        if img["os_hash_value"].as_str() == Some(digest_as(image, algo, &ours)?.as_str()) {
            return Ok((img["id"].as_str().unwrap_or_default().to_string(), false));
        }
    }
    // An upload that was killed leaves its image queued (or saving).
    for img in images.iter().filter(|i| i["status"] != "active") {
        eprintln!(
            "warning: image {} named {} is {} (an interrupted upload?); delete it with `openstack image delete {}`",
            img["id"].as_str().unwrap_or("?"),
            spec.name,
            img["status"].as_str().unwrap_or("?"),
            img["id"].as_str().unwrap_or("?"),
        );
    }
    let body = serde_json::json!({
        "name": spec.name,
        "disk_format": spec.disk_format,
        "container_format": "bare",
        "visibility": "private",
        "min_disk": spec.min_disk_gib,
        "min_ram": spec.min_ram_mib,
        "architecture": "x86_64",
        "hw_firmware_type": spec.firmware,
        "hw_machine_type": "q35",
        "os_distro": spec.os_distro,
        "os_version": spec.os_version,
    });
    let url = format!("{}/v2/images", s.image_url);
    let created: serde_json::Value = serde_json::from_str(
        &s.call("creating the image", |t| {
            s.agent
                .post(&url)
                .set("x-auth-token", t)
                .set("content-type", "application/json")
                .send_string(&body.to_string())
                .map_err(Box::new)
        })?
        .into_string()?,
    )?;
    let id = created["id"]
        .as_str()
        .context("Glance returned no image id")?
        .to_string();
    let r = put_and_verify(s, &id, image, &ours, wait);
    if let Err(e) = r {
        return Err(match s.delete(&id) {
            Ok(()) => e.context(format!("the image {id} was deleted again")),
            Err(d) => e.context(format!("delete the image {id} by hand ({d:#})")),
        });
    }
    Ok((id, true))
}

fn put_and_verify(s: &Session, id: &str, image: &Path, ours: &str, wait: Duration) -> Result<()> {
    let f = File::open(image)?;
    let len = f.metadata()?.len();
    let transfer = crate::progress::Transfer::new("uploading");
    let mut reader = Hashing {
        inner: crate::progress::TransferReader {
            inner: f,
            transfer: &transfer,
            done: 0,
            total: len,
        },
        h: Sha512::new(),
        n: 0,
    };
    s.agent
        .put(&format!("{}/v2/images/{id}/file", s.image_url))
        .set("x-auth-token", &s.token())
        .set("content-type", "application/octet-stream")
        .set("content-length", &len.to_string())
        .send(&mut reader)
        .map_err(|e| http_error("uploading the image data", e))?;
    let secs = transfer.finish().as_secs_f64();
    eprintln!(
        "sent {} MiB in {secs:.1} s, {:.1} MiB/s",
        len >> 20,
        len as f64 / 1048576.0 / secs.max(0.001)
    );
    let sent = hex::encode(reader.h.finalize());
    if sent != ours || reader.n != len {
        bail!("the image changed while it was uploaded");
    }
    let t = Instant::now();
    loop {
        let img = s.get(&format!("/v2/images/{id}"))?;
        match img["status"].as_str() {
            Some("active") => {
                let theirs = img["os_hash_value"].as_str().unwrap_or_default();
                let algo = img["os_hash_algo"].as_str().context(
                    "Glance reports no os_hash_algo (multihash needs Glance 17, Rocky, or later)",
                )?;
                let mine = digest_as(image, algo, ours)?;
                if theirs != mine {
                    bail!("Glance's {algo} of {id} ({theirs}) is not ours ({mine})");
                }
                return Ok(());
            }
            Some(st @ ("killed" | "deleted" | "pending_delete")) => {
                bail!("Glance marked {id} {st}")
            }
            _ if t.elapsed() > wait => {
                bail!("{id} did not become active within {} s", wait.as_secs())
            }
            _ => std::thread::sleep(Duration::from_secs(1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_requests_and_catalogs() {
        let pw = Auth::Password {
            user: "demo".into(),
            password: "s3cret-Pw".into(),
            user_domain: "Default".into(),
            project: "demo".into(),
            project_is_id: false,
            project_domain: "default".into(),
        };
        let r = token_request(&pw);
        assert_eq!(
            r["auth"]["identity"]["password"]["user"]["domain"]["name"],
            "Default"
        );
        assert_eq!(r["auth"]["scope"]["project"]["domain"]["id"], "default");
        assert!(!format!("{pw:?}").contains("s3cret-Pw"));
        let app = Auth::AppCredential {
            id: "i".into(),
            secret: "app-s3cret".into(),
        };
        assert!(!format!("{app:?}").contains("app-s3cret"));
        let ac = token_request(&app);
        assert_eq!(
            ac["auth"]["identity"]["methods"][0],
            "application_credential"
        );
        assert!(ac["auth"].get("scope").is_none());
        let tok = serde_json::json!({"token": {"catalog": [
            {"type": "identity", "endpoints": []},
            {"type": "image", "endpoints": [
                {"interface": "internal", "region_id": "RegionOne", "url": "http://10.0.0.1:9292"},
                {"interface": "public", "region_id": "RegionOne", "url": "http://127.0.0.1:9292/v2/"}]}]}});
        assert_eq!(
            image_endpoint(&tok, "public", None).unwrap(),
            "http://127.0.0.1:9292"
        );
        assert_eq!(
            image_endpoint(&tok, "internal", Some("RegionOne")).unwrap(),
            "http://10.0.0.1:9292"
        );
        assert!(image_endpoint(&tok, "public", Some("Elsewhere")).is_err());
    }
}
