//! The quorum guard: a host that is an etcd member reboots only while every
//! other voting member is healthy, so updates never take a cluster below
//! its quorum (a 3-member cluster loses at most one member at a time, and
//! not while another is already down).

use std::time::{Duration, Instant};

use agentnet::etcd::Client;
use agentnet::http::Url;
use agentnet::retry::Attempt;

/// Per member: a healthy one answers at once.
const ASK: Duration = Duration::from_secs(5);

fn reason(e: Attempt) -> String {
    match e {
        Attempt::Transient(e) | Attempt::Permanent(e) => format!("{e:#}"),
    }
}

/// `Ok` when `me` is no member of the cluster, or every other voting
/// member answers with a leader and no alarm; else why not.
pub fn check(client: &Client, me: &str) -> Result<(), String> {
    let members = client
        .member_list(Instant::now() + ASK)
        .map_err(|e| format!("cannot list etcd's members: {}", reason(e)))?;
    if !members.iter().any(|m| m.name == me) {
        return Ok(());
    }
    for m in members.iter().filter(|m| m.name != me && !m.is_learner) {
        let name = if m.name.is_empty() {
            format!("{:x}", m.id)
        } else {
            m.name.clone()
        };
        let Some(url) = m.client_urls.first() else {
            return Err(format!("etcd member {name} has not started"));
        };
        let url = Url::parse(url).map_err(|e| format!("etcd member {name}: {url:?} {e}"))?;
        match client.status_of(&url, Instant::now() + ASK) {
            Err(e) => {
                return Err(format!(
                    "etcd member {name} ({}) is not healthy: {}",
                    url.authority(),
                    reason(e)
                ))
            }
            Ok(s) if s.leader == 0 => return Err(format!("etcd member {name} has no leader")),
            Ok(s) if !s.errors.is_empty() => {
                return Err(format!(
                    "etcd member {name} reports {}",
                    s.errors.join("; ")
                ))
            }
            Ok(_) => {}
        }
    }
    Ok(())
}
