//! AWS EC2: IMDSv2 — `PUT /latest/api/token` with
//! `X-aws-ec2-metadata-token-ttl-seconds`, then `GET /latest/user-data` with
//! `X-aws-ec2-metadata-token`. IMDSv1 (no token) only when explicitly
//! allowed (`atomic.aws-imdsv1=1` or `--imdsv1`).

use anyhow::{bail, Result};

use super::{fetch, Provider};
use crate::http::Url;
use crate::retry::Retry;

/// Token lifetime asked for (seconds).
const TOKEN_TTL: &str = "300";

/// The EC2 instance metadata service.
#[derive(Debug)]
pub struct Aws {
    /// Base URL (`http://169.254.169.254`).
    pub base: Url,
    /// Whether to fall back to IMDSv1 when the token request is refused.
    pub imdsv1: bool,
    /// Retry policy.
    pub retry: Retry,
}

impl Aws {
    /// An IMDSv2 token, or `None` when IMDSv2 is refused and IMDSv1 allowed.
    fn token(&self) -> Result<Option<String>> {
        let url = self.base.with_path("/latest/api/token");
        let headers = [("X-aws-ec2-metadata-token-ttl-seconds", TOKEN_TTL)];
        match fetch(&self.retry, "IMDSv2 token", "PUT", &url, &headers, None)? {
            (200, body) => {
                let t = String::from_utf8(body)
                    .unwrap_or_default()
                    .trim()
                    .to_string();
                if t.is_empty() || t.len() > 1024 || !t.bytes().all(|b| b.is_ascii_graphic()) {
                    bail!("the IMDSv2 token from {} is malformed", url.redacted());
                }
                Ok(Some(t))
            }
            (s @ (400 | 403 | 404 | 405), _) if self.imdsv1 => {
                crate::log(&format!(
                    "aws: IMDSv2 token refused (HTTP {s}); using IMDSv1 as allowed"
                ));
                Ok(None)
            }
            (s, _) => bail!(
                "the IMDSv2 token request was refused (HTTP {s}); IMDSv1 fallback is disabled \
                 (enable it with the kernel argument atomic.aws-imdsv1=1)"
            ),
        }
    }
}

impl Provider for Aws {
    fn describe(&self) -> String {
        "aws instance metadata service".into()
    }

    fn user_data(&self) -> Result<Option<Vec<u8>>> {
        let token = self.token()?;
        let url = self.base.with_path("/latest/user-data");
        let headers: Vec<(&str, &str)> = match &token {
            Some(t) => vec![("X-aws-ec2-metadata-token", t.as_str())],
            None => vec![],
        };
        match fetch(&self.retry, "aws user data", "GET", &url, &headers, None)? {
            (200, body) => Ok(Some(body)),
            (404, _) => {
                crate::log(&format!(
                    "aws: the instance has no user data ({} answered 404)",
                    url.redacted()
                ));
                Ok(None)
            }
            (401, _) => bail!("the metadata service refused the IMDSv2 token (HTTP 401)"),
            (s, _) => bail!("{} answered HTTP {s}", url.redacted()),
        }
    }
}
