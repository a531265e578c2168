//! A client for etcd's v3 JSON gateway (gRPC-gateway, `POST /v3/...`) over
//! TLS: the server certificate is verified against the configured CA and
//! the client authenticates with its certificate. Requests go to the
//! endpoints in order until one answers.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, Result};
use serde_json::Value;

mod cluster;
mod kv;
mod lease;

pub use cluster::{Member, MemberStatus};
pub use kv::{prefix_end, KeyValue};

use crate::http::{self, HttpError, Url};
use crate::retry::Attempt;

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
#[derive(Clone)]
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
}

/// etcd's error message inside an attempt's error, if it is one.
pub fn etcd_message(e: &anyhow::Error) -> Option<&str> {
    e.downcast_ref::<EtcdError>().map(|e| e.message.as_str())
}

/// An int64 as the gateway writes it: a decimal string, or a number;
/// absent is 0.
pub fn int(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}
