//! Keystone v3: credentials from clouds.yaml or the `OS_*` variables of an
//! openrc (password or application credential), a token, the image endpoint
//! from its catalog, and a session that renews an expired token once.

use anyhow::{Context, Result};

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
    pub(super) agent: ureq::Agent,
    cloud: Cloud,
    /// Renewed when Glance says it expired (long uploads outlive tokens).
    token: std::sync::Mutex<String>,
    /// The project the token is scoped to (the images' owner).
    pub(super) project_id: Option<String>,
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

pub(super) fn http_error(what: &str, e: ureq::Error) -> anyhow::Error {
    crate::upload::http_error(e).context(what.to_string())
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

    pub(super) fn token(&self) -> String {
        self.token.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A Glance call; once more with a new token when the old one expired.
    pub(super) fn call(
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

    pub(super) fn get(&self, path: &str) -> Result<serde_json::Value> {
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

    pub(super) fn delete(&self, id: &str) -> Result<()> {
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
