//! Talking to AWS without an SDK: requests signed with SigV4 (written in
//! [`super::sigv4`]), sent over ureq with retries on throttling and 5xx,
//! EC2's Query API (XML) and the EBS direct APIs (JSON).

use std::time::Duration;

use anyhow::{Context, Result};

use super::sigv4::{self, Credentials, Scope};

/// Where and as whom to talk to AWS.
#[derive(Clone)]
pub struct Aws {
    /// Region.
    pub region: String,
    /// EBS direct API endpoint (`https://ebs.REGION.amazonaws.com`).
    pub ebs_endpoint: String,
    /// EC2 endpoint (`https://ec2.REGION.amazonaws.com`).
    pub ec2_endpoint: String,
    /// Credentials.
    pub creds: Credentials,
    /// HTTP agent.
    pub agent: ureq::Agent,
    /// Attempts per request (throttling and 5xx are retried).
    pub attempts: u32,
}

/// An HTTP failure worth retrying (throttling, 5xx, transport).
fn retryable(e: &ureq::Error) -> bool {
    match e {
        ureq::Error::Status(code, _) => *code == 429 || *code >= 500,
        ureq::Error::Transport(_) => true,
    }
}

fn amz_date() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64;
    let (days, secs) = (now.div_euclid(86_400), now.rem_euclid(86_400));
    let (y, m, d) = common::units::civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// A request about to be signed and sent.
pub(super) struct Req<'a> {
    pub(super) method: &'a str,
    pub(super) endpoint: &'a str,
    pub(super) service: &'a str,
    pub(super) path: String,
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: &'a [u8],
    /// Sign the body (false: UNSIGNED-PAYLOAD, for snapshot blocks).
    pub(super) sign_body: bool,
}

impl Aws {
    pub(super) fn send(&self, r: &Req) -> Result<String> {
        let host = r
            .endpoint
            .split("://")
            .nth(1)
            .unwrap_or(r.endpoint)
            .trim_end_matches('/')
            .to_string();
        let mut last = None;
        for attempt in 0..self.attempts.max(1) {
            let date = amz_date();
            let payload = if r.sign_body {
                sigv4::sha256_hex(r.body)
            } else {
                sigv4::UNSIGNED_PAYLOAD.to_string()
            };
            let mut headers = r.headers.clone();
            headers.push(("host".into(), host.clone()));
            headers.push(("x-amz-date".into(), date.clone()));
            headers.push(("x-amz-content-sha256".into(), payload.clone()));
            if let Some(t) = &self.creds.session_token {
                headers.push(("x-amz-security-token".into(), t.clone()));
            }
            let scope = Scope {
                amz_date: &date,
                region: &self.region,
                service: r.service,
            };
            let auth = sigv4::authorization(
                &self.creds,
                &scope,
                r.method,
                &r.path,
                "",
                &headers,
                &payload,
            );
            let url = format!("{}{}", r.endpoint.trim_end_matches('/'), r.path);
            let mut q = self.agent.request(r.method, &url);
            for (k, v) in headers.iter().filter(|(k, _)| k != "host") {
                q = q.set(k, v);
            }
            q = q.set("authorization", &auth);
            match q.send_bytes(r.body) {
                Ok(resp) => return resp.into_string().context("reading the response"),
                Err(e) if retryable(&e) && attempt + 1 < self.attempts => {
                    last = Some(crate::upload::http_error(e));
                    // Exponential backoff: 0.2 s, 0.4 s, ... at most 10 s.
                    std::thread::sleep(Duration::from_millis((200u64 << attempt).min(10_000)));
                }
                Err(e) => return Err(crate::upload::http_error(e)),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no attempt made")))
            .with_context(|| format!("after {} attempts", self.attempts))
    }

    /// An EC2 Query API call; returns the XML response.
    pub fn ec2(&self, params: &[(&str, String)]) -> Result<String> {
        let mut all: Vec<(String, String)> = vec![("Version".into(), "2016-11-15".into())];
        all.extend(params.iter().map(|(k, v)| (k.to_string(), v.clone())));
        let body = sigv4::canonical_query(&all);
        let action = params
            .iter()
            .find(|(k, _)| *k == "Action")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        self.send(&Req {
            method: "POST",
            endpoint: &self.ec2_endpoint,
            service: "ec2",
            path: "/".into(),
            headers: vec![(
                "content-type".into(),
                "application/x-www-form-urlencoded; charset=utf-8".into(),
            )],
            body: body.as_bytes(),
            sign_body: true,
        })
        .with_context(|| format!("EC2 {action}"))
    }

    pub(super) fn ebs_json(
        &self,
        path: String,
        body: &serde_json::Value,
        headers: Vec<(String, String)>,
    ) -> Result<serde_json::Value> {
        let bytes = serde_json::to_vec(body)?;
        let mut h = vec![("content-type".to_string(), "application/json".to_string())];
        h.extend(headers);
        let text = self.send(&Req {
            method: "POST",
            endpoint: &self.ebs_endpoint,
            service: "ebs",
            path,
            headers: h,
            body: &bytes,
            sign_body: true,
        })?;
        serde_json::from_str(&text).with_context(|| format!("EBS answered {text:?}"))
    }
}

/// The value of the first `<tag>...</tag>` in an XML text.
pub fn xml_value<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let i = xml.find(&open)? + open.len();
    let j = xml[i..].find(&format!("</{tag}>"))? + i;
    Some(&xml[i..j])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_values_are_found() {
        let x = "<RegisterImageResponse><requestId>r</requestId><imageId>ami-1234</imageId></RegisterImageResponse>";
        assert_eq!(xml_value(x, "imageId"), Some("ami-1234"));
        assert_eq!(xml_value(x, "status"), None);
    }
}
