//! AWS credentials, looked for where AWS's own tools look, in their order:
//! the environment, the shared credentials file's profile, the EC2
//! instance's role (IMDSv2).

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::sigv4::Credentials;

/// Credentials from the standard places, in AWS's order: the environment,
/// the shared credentials file's profile, the EC2 instance's role.
pub fn aws_credentials(profile: Option<&str>) -> Result<Credentials> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if let (Some(a), Some(s)) = (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
        return Ok(Credentials {
            access_key: a,
            secret_key: s,
            session_token: env("AWS_SESSION_TOKEN"),
        });
    }
    // A profile named by the user must exist: falling through to the
    // instance's role would act in another account.
    let named = profile.map(String::from).or_else(|| env("AWS_PROFILE"));
    let profile = named.clone().unwrap_or_else(|| "default".into());
    let file = env("AWS_SHARED_CREDENTIALS_FILE")
        .map(std::path::PathBuf::from)
        .or_else(|| env("HOME").map(|h| Path::new(&h).join(".aws/credentials")));
    let shown = file
        .as_ref()
        .map(|f| f.display().to_string())
        .unwrap_or_else(|| "~/.aws/credentials".into());
    if let Some(file) = file.as_ref().filter(|f| f.is_file()) {
        let text = std::fs::read_to_string(file)?;
        let sec = ini_section(&text, &profile);
        if let (Some(a), Some(s)) = (
            sec.get("aws_access_key_id"),
            sec.get("aws_secret_access_key"),
        ) {
            return Ok(Credentials {
                access_key: a.clone(),
                secret_key: s.clone(),
                session_token: sec.get("aws_session_token").cloned(),
            });
        }
    }
    if named.is_some() {
        bail!("AWS profile [{profile}] has no aws_access_key_id/aws_secret_access_key in {shown}");
    }
    imds_credentials().map_err(|e| {
        anyhow::anyhow!("no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, add profile [{profile}] to ~/.aws/credentials (or pass --profile), or run on an EC2 instance with an IAM role (instance metadata: {e:#})")
    })
}

/// `key = value` lines of `[name]` in an INI text.
fn ini_section(text: &str, name: &str) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    let mut inside = false;
    for l in text.lines().map(str::trim) {
        if let Some(h) = l.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = h.trim() == name || h.trim() == format!("profile {name}");
        } else if inside {
            if let Some((k, v)) = l.split_once('=') {
                out.insert(k.trim().to_string(), v.trim().to_string());
            }
        }
    }
    out
}

/// Credentials from the instance metadata service (IMDSv2) of the EC2
/// instance this runs on: `$AWS_EC2_METADATA_SERVICE_ENDPOINT` or
/// 169.254.169.254, short timeouts, skipped when
/// `AWS_EC2_METADATA_DISABLED=true`.
pub fn imds_credentials() -> Result<Credentials> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if env("AWS_EC2_METADATA_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        bail!("AWS_EC2_METADATA_DISABLED is set");
    }
    let base =
        env("AWS_EC2_METADATA_SERVICE_ENDPOINT").unwrap_or_else(|| "http://169.254.169.254".into());
    let base = base.trim_end_matches('/');
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(1))
        .timeout(Duration::from_secs(3))
        .build();
    let token = agent
        .put(&format!("{base}/latest/api/token"))
        .set("x-aws-ec2-metadata-token-ttl-seconds", "21600")
        .call()
        .with_context(|| format!("no instance metadata service at {base}"))?
        .into_string()?;
    let get = |path: &str| -> Result<String> {
        Ok(agent
            .get(&format!(
                "{base}/latest/meta-data/iam/security-credentials/{path}"
            ))
            .set("x-aws-ec2-metadata-token", &token)
            .call()
            .with_context(|| format!("instance metadata: iam/security-credentials/{path}"))?
            .into_string()?)
    };
    let roles = get("")?;
    let role = roles
        .lines()
        .next()
        .filter(|r| !r.trim().is_empty())
        .context("this instance has no IAM role (instance metadata lists none)")?
        .trim()
        .to_string();
    let v: serde_json::Value = serde_json::from_str(&get(&role)?)
        .with_context(|| format!("instance metadata credentials of role {role}"))?;
    let field = |k: &str| {
        v[k].as_str()
            .map(String::from)
            .with_context(|| format!("instance metadata credentials of role {role} lack {k}"))
    };
    Ok(Credentials {
        access_key: field("AccessKeyId")?,
        secret_key: field("SecretAccessKey")?,
        session_token: Some(field("Token")?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_are_read_from_the_credentials_file() {
        let t = "[default]\naws_access_key_id = A\naws_secret_access_key = S\n\n[ci]\naws_access_key_id=B\naws_secret_access_key=T\naws_session_token=X\n";
        assert_eq!(ini_section(t, "default")["aws_access_key_id"], "A");
        let ci = ini_section(t, "ci");
        assert_eq!(
            (
                ci["aws_access_key_id"].as_str(),
                ci["aws_session_token"].as_str()
            ),
            ("B", "X")
        );
        assert!(ini_section(t, "none").is_empty());
    }
}
