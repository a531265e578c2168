//! Leases: a key attached to one disappears when its lease expires, so a
//! holder that dies frees what it held after the lease's TTL.

use std::time::Instant;

use serde_json::json;

use super::{int, Client};
use crate::retry::Attempt;

impl Client {
    /// A new lease of `ttl_secs`; its id.
    pub fn lease_grant(&self, ttl_secs: i64, deadline: Instant) -> Result<i64, Attempt> {
        let v = self.call(
            "/v3/lease/grant",
            &json!({ "TTL": ttl_secs.to_string() }),
            deadline,
        )?;
        match int(&v["ID"]) {
            0 => Err(Attempt::permanent(anyhow::anyhow!(
                "lease/grant answered without an ID: {v}"
            ))),
            id => Ok(id),
        }
    }

    /// Renew lease `id`; the seconds it has left (0: it had expired and is
    /// gone).
    pub fn lease_keepalive(&self, id: i64, deadline: Instant) -> Result<i64, Attempt> {
        let v = self.call(
            "/v3/lease/keepalive",
            &json!({ "ID": id.to_string() }),
            deadline,
        )?;
        Ok(int(&v["result"]["TTL"]))
    }

    /// Revoke lease `id` (its keys go with it); an expired lease is fine.
    pub fn lease_revoke(&self, id: i64, deadline: Instant) -> Result<(), Attempt> {
        match self.call(
            "/v3/lease/revoke",
            &json!({ "ID": id.to_string() }),
            deadline,
        ) {
            Err(Attempt::Permanent(e))
                if super::etcd_message(&e).is_some_and(|m| m.contains("lease not found")) =>
            {
                Ok(())
            }
            r => r.map(drop),
        }
    }
}
