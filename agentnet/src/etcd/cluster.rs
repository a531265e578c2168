//! Membership (list, add a learner, promote, remove) and one member's own
//! status, as the first-boot agent joins a cluster and the update agent's
//! quorum guard checks the other members.

use std::time::Instant;

use anyhow::{anyhow, Context, Result};
use serde::Deserialize;
use serde_json::{json, Value};

use super::Client;
use crate::http::Url;
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

/// What one member says of itself (`/v3/maintenance/status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberStatus {
    /// etcd's version.
    pub version: String,
    /// The leader's member id as this member sees it (0: none).
    pub leader: u64,
    /// Errors the member reports (alarms such as NOSPACE).
    pub errors: Vec<String>,
}

impl Client {
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

    /// The status of the member at `endpoint` itself (not of whichever
    /// endpoint answers first).
    pub fn status_of(&self, endpoint: &Url, deadline: Instant) -> Result<MemberStatus, Attempt> {
        let one = Client::new(vec![endpoint.clone()], self.tls.clone());
        let v = one.call("/v3/maintenance/status", &json!({}), deadline)?;
        Ok(MemberStatus {
            version: v["version"].as_str().unwrap_or_default().to_string(),
            leader: match &v["leader"] {
                Value::String(s) => s.parse().unwrap_or(0),
                n => n.as_u64().unwrap_or(0),
            },
            errors: v["errors"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|e| e.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
        })
    }
}

fn parse_members(v: Value) -> Result<Members> {
    serde_json::from_value(v).context("unexpected member list from etcd")
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
