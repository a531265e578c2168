//! A client for etcd's v3 JSON gateway (gRPC-gateway, `POST /v3/...`) over
//! TLS: the server certificate is verified against the configured CA and
//! the client authenticates with its certificate. Requests go to the
//! endpoints in order until one answers.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, Context, Result};
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::http::{self, HttpError, Url};
use crate::retry::Attempt;

/// One cluster member as the gateway lists it.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct Member {
    /// Member id (uint64, sent as a decimal string).
    #[serde(rename = "ID", default, deserialize_with = "u64_string")]
    pub id: u64,
    /// Name; empty until the member has started.
    #[serde(default)]
    pub name: String,
    /// Peer URLs.
    #[serde(rename = "peerURLs", default)]
    pub peer_urls: Vec<String>,
    /// Client URLs; empty until started.
    #[serde(rename = "clientURLs", default)]
    pub client_urls: Vec<String>,
    /// Learner (non-voting)?
    #[serde(rename = "isLearner", default)]
    pub is_learner: bool,
}

fn u64_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match Value::deserialize(d)? {
        Value::String(s) => s.parse().map_err(serde::de::Error::custom),
        Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| serde::de::Error::custom("not a u64")),
        _ => Err(serde::de::Error::custom(
            "member ID is neither string nor number",
        )),
    }
}

#[derive(Deserialize)]
struct Members {
    #[serde(default)]
    members: Vec<Member>,
    member: Option<Member>,
}

/// An error answer from etcd (`{"error": ..., "code": N}`).
#[derive(Debug, thiserror::Error)]
#[error("etcd answered HTTP {status}: {message}")]
pub struct EtcdError {
    /// HTTP status.
    pub status: u16,
    /// etcd's message, such as `etcdserver: member not found`.
    pub message: String,
}

/// The gateway of one cluster.
pub struct Client {
    /// Client URLs of members, tried in order.
    pub endpoints: Vec<Url>,
    tls: Arc<rustls::ClientConfig>,
}

impl Client {
    /// A client for `endpoints` using `tls` (CA + client certificate).
    pub fn new(endpoints: Vec<Url>, tls: Arc<rustls::ClientConfig>) -> Client {
        Client { endpoints, tls }
    }

    /// POST `body` to `path` on the first endpoint that answers. Connection
    /// failures on every endpoint are transient; TLS failures and etcd's
    /// error answers are permanent (callers decide otherwise for
    /// specific etcd errors).
    pub fn call(&self, path: &str, body: &Value, deadline: Instant) -> Result<Value, Attempt> {
        let body = serde_json::to_vec(body).map_err(Attempt::permanent)?;
        let mut last: Option<HttpError> = None;
        for ep in &self.endpoints {
            let url = ep.with_path(path);
            let headers = [("Content-Type", "application/json")];
            let resp = match http::send("POST", &url, &headers, &body, Some(&self.tls), deadline) {
                Ok(r) => r,
                Err(e @ (HttpError::Connect { .. } | HttpError::Io { .. })) => {
                    last = Some(e);
                    continue;
                }
                Err(e) => return Err(e.into_attempt()),
            };
            let status = resp.status;
            let bytes = resp.bytes(16 << 20).map_err(|e| e.into_attempt())?;
            let v: Value = serde_json::from_slice(&bytes).map_err(|e| {
                Attempt::permanent(anyhow!("{} answered non-JSON ({e})", url.redacted()))
            })?;
            if status != 200 {
                let message = v["message"]
                    .as_str()
                    .or(v["error"].as_str())
                    .unwrap_or("no message");
                let err = EtcdError {
                    status,
                    message: message.to_string(),
                };
                return Err(if status >= 500 && !message.starts_with("etcdserver:") {
                    Attempt::transient(err)
                } else {
                    Attempt::permanent(err)
                });
            }
            return Ok(v);
        }
        Err(match last {
            Some(e) => e.into_attempt(),
            None => Attempt::permanent(anyhow!("no etcd endpoints")),
        })
    }

    /// All members.
    pub fn member_list(&self, deadline: Instant) -> Result<Vec<Member>, Attempt> {
        let v = self.call("/v3/cluster/member/list", &json!({}), deadline)?;
        parse_members(v)
            .map(|m| m.members)
            .map_err(Attempt::permanent)
    }

    /// Add a learner with `peer_urls`; returns it and the new member list.
    pub fn add_learner(
        &self,
        peer_urls: &[String],
        deadline: Instant,
    ) -> Result<(Member, Vec<Member>), Attempt> {
        let body = json!({ "peerURLs": peer_urls, "isLearner": true });
        let v = self.call("/v3/cluster/member/add", &body, deadline)?;
        let m = parse_members(v).map_err(Attempt::permanent)?;
        let me = m.member.ok_or_else(|| {
            Attempt::permanent(anyhow!("member/add answered without the new member"))
        })?;
        Ok((me, m.members))
    }

    /// Promote learner `id` to a voting member.
    pub fn promote(&self, id: u64, deadline: Instant) -> Result<(), Attempt> {
        self.call(
            "/v3/cluster/member/promote",
            &json!({ "ID": id.to_string() }),
            deadline,
        )
        .map(drop)
    }

    /// Remove member `id`.
    pub fn remove(&self, id: u64, deadline: Instant) -> Result<(), Attempt> {
        self.call(
            "/v3/cluster/member/remove",
            &json!({ "ID": id.to_string() }),
            deadline,
        )
        .map(drop)
    }

    /// Put `key` = `value`.
    pub fn put(&self, key: &[u8], value: &[u8], deadline: Instant) -> Result<(), Attempt> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let body = json!({ "key": b64.encode(key), "value": b64.encode(value) });
        self.call("/v3/kv/put", &body, deadline).map(drop)
    }

    /// The value of `key`, if any.
    pub fn get(&self, key: &[u8], deadline: Instant) -> Result<Option<Vec<u8>>, Attempt> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let v = self.call("/v3/kv/range", &json!({ "key": b64.encode(key) }), deadline)?;
        let Some(kv) = v["kvs"].as_array().and_then(|a| a.first()) else {
            return Ok(None);
        };
        let value = kv["value"].as_str().unwrap_or("");
        b64.decode(value)
            .map(Some)
            .context("etcd returned a value that is not base64")
            .map_err(Attempt::permanent)
    }
}

fn parse_members(v: Value) -> Result<Members> {
    serde_json::from_value(v).context("unexpected member list from etcd")
}

/// etcd's error message inside an attempt's error, if it is one.
pub fn etcd_message(e: &anyhow::Error) -> Option<&str> {
    e.downcast_ref::<EtcdError>().map(|e| e.message.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_gateway_member_lists() {
        let v: Value = serde_json::from_str(r#"{"header":{"cluster_id":"1"},"member":{"ID":"9400144196611237537","peerURLs":["https://b:2380"],"isLearner":true},"members":[{"ID":"3319814642761637952","name":"p1","peerURLs":["https://a:2380"],"clientURLs":["https://a:2379"]},{"ID":"9400144196611237537","peerURLs":["https://b:2380"],"isLearner":true}]}"#).unwrap();
        let m = parse_members(v).unwrap();
        assert_eq!(m.members.len(), 2);
        assert_eq!(m.members[0].id, 3319814642761637952);
        assert!(!m.members[0].is_learner);
        let me = m.member.unwrap();
        assert_eq!(me.id, 9400144196611237537);
        assert!(me.is_learner && me.name.is_empty());
    }
}
