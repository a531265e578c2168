//! Keys: put, get, a prefix's keys, and the compare-and-swap transactions
//! a semaphore needs (create only if absent, delete only if unchanged).

use std::time::Instant;

use anyhow::{Context, Result};
use base64::Engine;
use serde_json::{json, Value};

use super::{int, Client};
use crate::retry::Attempt;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// One key as etcd stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: Vec<u8>,
    /// Its value.
    pub value: Vec<u8>,
    /// The revision that created it.
    pub create_revision: i64,
    /// The revision that last changed it.
    pub mod_revision: i64,
    /// The lease it is attached to (0: none).
    pub lease: i64,
}

fn decode(s: &Value) -> Result<Vec<u8>, Attempt> {
    B64.decode(s.as_str().unwrap_or(""))
        .context("etcd returned bytes that are not base64")
        .map_err(Attempt::permanent)
}

fn key_values(v: &Value) -> Result<Vec<KeyValue>, Attempt> {
    let Some(kvs) = v["kvs"].as_array() else {
        return Ok(Vec::new());
    };
    kvs.iter()
        .map(|kv| {
            Ok(KeyValue {
                key: decode(&kv["key"])?,
                value: decode(&kv["value"])?,
                create_revision: int(&kv["create_revision"]),
                mod_revision: int(&kv["mod_revision"]),
                lease: int(&kv["lease"]),
            })
        })
        .collect()
}

/// The first key after every key that starts with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0] // every key
}

impl Client {
    /// Put `key` = `value`.
    pub fn put(&self, key: &[u8], value: &[u8], deadline: Instant) -> Result<(), Attempt> {
        let body = json!({ "key": B64.encode(key), "value": B64.encode(value) });
        self.call("/v3/kv/put", &body, deadline).map(drop)
    }

    /// The value of `key`, if any.
    pub fn get(&self, key: &[u8], deadline: Instant) -> Result<Option<Vec<u8>>, Attempt> {
        let v = self.call("/v3/kv/range", &json!({ "key": B64.encode(key) }), deadline)?;
        Ok(key_values(&v)?.into_iter().next().map(|kv| kv.value))
    }

    /// Every key that starts with `prefix`, in key order.
    pub fn range_prefix(&self, prefix: &[u8], deadline: Instant) -> Result<Vec<KeyValue>, Attempt> {
        let body =
            json!({ "key": B64.encode(prefix), "range_end": B64.encode(prefix_end(prefix)) });
        key_values(&self.call("/v3/kv/range", &body, deadline)?)
    }

    /// Create `key` = `value` (attached to `lease` unless 0) if no such key
    /// exists, in one transaction. `Ok(None)`: created; `Ok(Some(kv))`: it
    /// existed, as `kv`.
    pub fn create(
        &self,
        key: &[u8],
        value: &[u8],
        lease: i64,
        deadline: Instant,
    ) -> Result<Option<KeyValue>, Attempt> {
        let k = B64.encode(key);
        let mut put = json!({ "key": k, "value": B64.encode(value) });
        if lease != 0 {
            put["lease"] = json!(lease.to_string());
        }
        let body = json!({
            "compare": [{ "key": k, "target": "CREATE", "create_revision": "0", "result": "EQUAL" }],
            "success": [{ "requestPut": put }],
            "failure": [{ "requestRange": { "key": k } }],
        });
        let v = self.call("/v3/kv/txn", &body, deadline)?;
        if v["succeeded"].as_bool() == Some(true) {
            return Ok(None);
        }
        let range = &v["responses"][0]["response_range"];
        // Gone again between the compare and the range: report it as taken
        // by nobody in particular; the caller tries again.
        Ok(Some(key_values(range)?.into_iter().next().unwrap_or(
            KeyValue {
                key: key.to_vec(),
                value: Vec::new(),
                create_revision: 0,
                mod_revision: 0,
                lease: 0,
            },
        )))
    }

    /// Delete `key` if it was last changed at `mod_revision`, in one
    /// transaction; whether it was deleted.
    pub fn delete_if_unchanged(
        &self,
        key: &[u8],
        mod_revision: i64,
        deadline: Instant,
    ) -> Result<bool, Attempt> {
        let k = B64.encode(key);
        let body = json!({
            "compare": [{ "key": k, "target": "MOD", "mod_revision": mod_revision.to_string(), "result": "EQUAL" }],
            "success": [{ "requestDeleteRange": { "key": k } }],
        });
        let v = self.call("/v3/kv/txn", &body, deadline)?;
        Ok(v["succeeded"].as_bool() == Some(true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"/a/"), b"/a0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }

    #[test]
    fn reads_the_gateways_key_values() {
        let v: Value = serde_json::from_str(r#"{"kvs":[{"key":"L3MvMA==","create_revision":"2","mod_revision":"3","version":"1","value":"aDE=","lease":"4111120354979783175"}],"count":"1"}"#).unwrap();
        let kv = &key_values(&v).unwrap()[0];
        assert_eq!(
            (kv.key.as_slice(), kv.value.as_slice()),
            (&b"/s/0"[..], &b"h1"[..])
        );
        assert_eq!(
            (kv.create_revision, kv.mod_revision, kv.lease),
            (2, 3, 4111120354979783175)
        );
        assert!(key_values(&serde_json::json!({"header": {}}))
            .unwrap()
            .is_empty());
    }
}
