//! The etcd step: bootstrap a single-member cluster, or join an existing
//! one as a learner and get promoted.
//!
//! Join: `member/add` (isLearner) → write etcd's config with
//! `initial-cluster` (the members from the add response plus this one) and
//! `initial-cluster-state: existing` → start etcd → `member/promote`,
//! retried while the learner catches up. Any failure after `member/add`
//! removes the learner again, stops etcd and deletes its data and config:
//! there is no partial join. A rerun finds its own member by peer URLs and
//! carries on from where it stopped.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use super::services::ServiceManager;
use crate::config::{Etcd, EtcdMode};
use crate::fsutil::{self, under, Attrs};
use crate::http::Url;
use crate::retry::{Attempt, Retry};
use crate::yaml::{list, quote};
use agentnet::etcd::{etcd_message, Client, Member};

/// etcd's config file.
pub const CONFIG_FILE: &str = super::ETCD_CONFIG_FILE;
/// Where this member's certificates and keys are written.
pub const PKI_DIR: &str = "/etc/etcd/pki";

/// The PEM material of the `[etcd]` table, loaded.
pub struct Pki {
    /// CA bundle.
    pub ca: Vec<u8>,
    /// Client certificate for talking to the cluster.
    pub client_cert: Vec<u8>,
    /// Its key.
    pub client_key: Vec<u8>,
    /// Server certificate.
    pub server_cert: Vec<u8>,
    /// Its key.
    pub server_key: Vec<u8>,
    /// Peer certificate.
    pub peer_cert: Vec<u8>,
    /// Its key.
    pub peer_key: Vec<u8>,
}

impl Pki {
    /// TLS for talking to the cluster: trust the CA, present the client cert.
    pub fn client_tls(&self) -> Result<Arc<rustls::ClientConfig>> {
        let ca = crate::tls::parse_certs(&self.ca)?;
        let chain = crate::tls::parse_certs(&self.client_cert)?;
        let key = crate::tls::parse_key(&self.client_key)?;
        crate::tls::client_config(&ca, Some((chain, key)))
    }
}

/// `scheme://host:port` of each URL (etcd compares these strings).
pub fn origins(urls: &[Url]) -> Vec<String> {
    urls.iter()
        .map(|u| {
            format!(
                "{}://{}",
                if u.https { "https" } else { "http" },
                u.authority()
            )
        })
        .collect()
}

/// The URLs this host reaches its own member at: the client listen URLs,
/// with an all-addresses listener (`0.0.0.0`, `::`) reached over loopback.
pub fn local_client_urls(e: &Etcd) -> Vec<Url> {
    e.listen_client_urls
        .iter()
        .map(|u| {
            let mut u = u.clone();
            match u.host.parse::<std::net::IpAddr>() {
                Ok(std::net::IpAddr::V4(ip)) if ip.is_unspecified() => u.host = "127.0.0.1".into(),
                Ok(std::net::IpAddr::V6(ip)) if ip.is_unspecified() => u.host = "::1".into(),
                _ => {}
            }
            u
        })
        .collect()
}

fn same_urls(a: &[String], b: &[String]) -> bool {
    let (mut a, mut b) = (a.to_vec(), b.to_vec());
    a.sort();
    b.sort();
    a == b
}

/// What etcd needs to know besides the `[etcd]` table.
struct Layout {
    conf: PathBuf,
    data: PathBuf,
    pki: PathBuf,
    owner: (u32, u32),
}

fn layout(e: &Etcd, root: &Path) -> Layout {
    Layout {
        conf: under(root, Path::new(CONFIG_FILE)),
        data: under(root, &e.data_dir),
        pki: under(root, Path::new(PKI_DIR)),
        owner: fsutil::lookup_user(root, "etcd").map_or((0, 0), |(u, g, _)| (u, g)),
    }
}

/// etcd's YAML config. Paths are as seen from this host (under `--root`).
fn render(e: &Etcd, l: &Layout, initial_cluster: &str, state: &str) -> String {
    let p = |f: &str| quote(&l.pki.join(f).to_string_lossy());
    let q = |urls: &[Url]| quote(&origins(urls).join(","));
    let mut timing = String::new();
    if let Some(ms) = e.heartbeat_interval_ms {
        timing += &format!("heartbeat-interval: {ms}\n");
    }
    if let Some(ms) = e.election_timeout_ms {
        timing += &format!("election-timeout: {ms}\n");
    }
    let tls = |cert: &str, key: &str| {
        format!(
            "  cert-file: {}\n  key-file: {}\n  trusted-ca-file: {}\n  client-cert-auth: true\n",
            p(cert),
            p(key),
            p("ca.crt")
        )
    };
    format!(
        "# Written by atomic-firstboot.\nname: {}\ndata-dir: {}\n\
         listen-peer-urls: {}\ninitial-advertise-peer-urls: {}\n\
         listen-client-urls: {}\nadvertise-client-urls: {}\n\
         initial-cluster: {}\ninitial-cluster-state: {}\ninitial-cluster-token: {}\n{timing}\
         enable-grpc-gateway: true\nlogger: \"zap\"\nlog-outputs: {}\n\
         client-transport-security:\n{}peer-transport-security:\n{}",
        quote(&e.name),
        quote(&l.data.to_string_lossy()),
        q(&e.listen_peer_urls),
        q(&e.peer_urls),
        q(&e.listen_client_urls),
        q(&e.client_urls),
        quote(initial_cluster),
        quote(state),
        quote(&e.cluster_token),
        list(&["stderr"]),
        tls("server.crt", "server.key"),
        tls("peer.crt", "peer.key"),
    )
}

/// Write the PKI files and create the data directory.
fn prepare(pki: &Pki, l: &Layout) -> Result<()> {
    let (uid, gid) = l.owner;
    let public = Attrs::root(0o644);
    let secret = Attrs {
        mode: 0o600,
        uid,
        gid,
    };
    for (name, bytes, attrs) in [
        ("ca.crt", &pki.ca, public),
        ("client.crt", &pki.client_cert, public),
        ("client.key", &pki.client_key, Attrs::root(0o600)),
        ("server.crt", &pki.server_cert, public),
        ("server.key", &pki.server_key, secret),
        ("peer.crt", &pki.peer_cert, public),
        ("peer.key", &pki.peer_key, secret),
    ] {
        fsutil::write(&l.pki.join(name), bytes, attrs)?;
    }
    fs::create_dir_all(&l.data).with_context(|| format!("cannot create {}", l.data.display()))?;
    std::os::unix::fs::chown(&l.data, Some(uid), Some(gid))?;
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&l.data, fs::Permissions::from_mode(0o700))?;
    Ok(())
}

fn has_data(l: &Layout) -> bool {
    l.data.join("member").exists()
}

/// A client for this member's own client URLs.
fn own_client(e: &Etcd, pki: &Pki) -> Result<Client> {
    Ok(Client::new(local_client_urls(e), pki.client_tls()?))
}

/// A client for the existing cluster (join mode).
pub fn cluster_client(e: &Etcd, pki: &Pki) -> Result<Client> {
    match &e.mode {
        EtcdMode::Join { endpoints } => Ok(Client::new(endpoints.clone(), pki.client_tls()?)),
        EtcdMode::Bootstrap => own_client(e, pki),
    }
}

/// Check before anything is applied that the cluster answers and trusts us.
pub fn preflight(e: &Etcd, pki: &Pki, retry: &Retry) -> Result<()> {
    if let EtcdMode::Join { .. } = e.mode {
        let c = cluster_client(e, pki)?;
        let members = retry
            .run("etcd member list", |dl| c.member_list(dl))
            .context("cannot list the cluster's members through etcd.endpoints")?;
        crate::log(&format!(
            "etcd: the cluster has {} member(s)",
            members.len()
        ));
    }
    Ok(())
}

/// Apply the `[etcd]` table.
pub fn apply(
    e: &Etcd,
    pki: &Pki,
    root: &Path,
    sm: &dyn ServiceManager,
    retry: &Retry,
) -> Result<()> {
    let l = layout(e, root);
    match &e.mode {
        EtcdMode::Bootstrap => bootstrap(e, pki, &l, sm, retry)?,
        EtcdMode::Join { .. } => join(e, pki, &l, sm, retry)?,
    }
    update_agent_settings(e, root)
}

/// Where the update agent finds how to reach etcd for its reboot slots.
pub const UPDATE_AGENT_DROPIN: &str = "/etc/atomic-update/config.d/20-etcd.toml";

/// Tell atomic-update how to reach the cluster (its `[lock]` table: this
/// member first, then the endpoints joined through), with the client
/// certificate written above and this member's name for its quorum guard.
fn update_agent_settings(e: &Etcd, root: &Path) -> Result<()> {
    let s = |v: &str| format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""));
    let mut endpoints: Vec<String> = origins(&local_client_urls(e));
    if let EtcdMode::Join { endpoints: joined } = &e.mode {
        endpoints.extend(origins(joined));
    }
    endpoints.dedup();
    let pki = |f: &str| s(&Path::new(PKI_DIR).join(f).to_string_lossy());
    let text = format!(
        "# Written by atomic-firstboot: how atomic-update reaches etcd for its reboot\n# slots (used with strategy etcd-lock).\n[lock]\nendpoints = [{}]\nmember = {}\nca_file = {}\ncert_file = {}\nkey_file = {}\n",
        endpoints.iter().map(|u| s(u)).collect::<Vec<_>>().join(", "),
        s(&e.name),
        pki("ca.crt"),
        pki("client.crt"),
        pki("client.key"),
    );
    fsutil::write(
        &under(root, Path::new(UPDATE_AGENT_DROPIN)),
        text.as_bytes(),
        Attrs::root(0o644),
    )?;
    Ok(())
}

fn start(sm: &dyn ServiceManager) -> Result<()> {
    sm.daemon_reload()?;
    sm.enable("etcd.service")?;
    sm.start("etcd.service")
}

fn bootstrap(
    e: &Etcd,
    pki: &Pki,
    l: &Layout,
    sm: &dyn ServiceManager,
    retry: &Retry,
) -> Result<()> {
    if has_data(l) && l.conf.exists() {
        crate::log("etcd: already bootstrapped; making sure it runs");
    } else {
        prepare(pki, l)?;
        let cluster: Vec<String> = origins(&e.peer_urls)
            .iter()
            .map(|u| format!("{}={u}", e.name))
            .collect();
        let yml = render(e, l, &cluster.join(","), "new");
        fsutil::write(&l.conf, yml.as_bytes(), Attrs::root(0o644))?;
    }
    start(sm)?;
    let c = own_client(e, pki)?;
    let members = retry.run("etcd to answer", |dl| c.member_list(dl))?;
    crate::log(&format!(
        "etcd: cluster up with {} member(s)",
        members.len()
    ));
    Ok(())
}

fn join(e: &Etcd, pki: &Pki, l: &Layout, sm: &dyn ServiceManager, retry: &Retry) -> Result<()> {
    let c = cluster_client(e, pki)?;
    let mine = origins(&e.peer_urls);
    let members = retry.run("etcd member list", |dl| c.member_list(dl))?;
    let existing = members
        .iter()
        .find(|m| same_urls(&m.peer_urls, &mine))
        .cloned();
    match (existing, has_data(l)) {
        (Some(m), true) => {
            crate::log(&format!(
                "etcd: already a member ({:x}); making sure it runs",
                m.id
            ));
            start(sm)?;
            if m.is_learner {
                promote(&c, m.id, retry)?;
            }
            return Ok(());
        }
        (Some(m), false) => {
            crate::log(&format!(
                "etcd: removing stale member {:x} with our peer URLs (no local data)",
                m.id
            ));
            retry.run("etcd member remove", |dl| c.remove(m.id, dl))?;
        }
        (None, true) => bail!(
            "{} holds etcd data but the cluster has no member with this host's peer URLs; \
             remove the data directory to join again",
            l.data.display()
        ),
        (None, false) => {}
    }
    prepare(pki, l)?;
    // etcd 3.4 derives a new member's ID from its peer URLs and the current
    // second: re-adding within the second after a removal (a rollback) gets
    // the removed ID, which etcd refuses as "member not found". Retry then.
    let (me, members) = retry.run("etcd member add", |dl| match c.add_learner(&mine, dl) {
        Err(Attempt::Permanent(e)) if etcd_message(&e) == Some("etcdserver: member not found") => {
            Err(Attempt::Transient(e))
        }
        r => r,
    })?;
    crate::log(&format!("etcd: added as learner {:x}", me.id));
    let rest = (|| {
        let cluster = initial_cluster(e, &me, &members)?;
        let yml = render(e, l, &cluster, "existing");
        fsutil::write(&l.conf, yml.as_bytes(), Attrs::root(0o644))?;
        start(sm)?;
        promote(&c, me.id, retry)
    })();
    if let Err(err) = rest {
        let undo = rollback(&c, me.id, l, sm);
        return Err(match undo {
            Ok(()) => err.context("joined as learner, then rolled back: the learner was removed"),
            Err(u) => err.context(format!(
                "rollback incomplete ({u:#}); remove member {:x} by hand",
                me.id
            )),
        });
    }
    crate::log(&format!("etcd: promoted {:x} to a voting member", me.id));
    Ok(())
}

/// `name=peer,...` for every member; the new member is this one.
fn initial_cluster(e: &Etcd, me: &Member, members: &[Member]) -> Result<String> {
    let mut parts = Vec::new();
    for m in members {
        let name = if m.id == me.id {
            e.name.as_str()
        } else {
            m.name.as_str()
        };
        if name.is_empty() {
            bail!("the cluster has a member that never started (peer URLs {}); refusing to join next to it", m.peer_urls.join(","));
        }
        if m.id != me.id && name == e.name {
            bail!("the cluster already has a member named {name}");
        }
        parts.extend(m.peer_urls.iter().map(|u| format!("{name}={u}")));
    }
    Ok(parts.join(","))
}

/// Promote `id`, retrying while the learner is not yet in sync.
fn promote(c: &Client, id: u64, retry: &Retry) -> Result<()> {
    let patient = Retry {
        max_attempts: retry.max_attempts.max(60),
        initial_delay: Duration::from_millis(500),
        max_delay: Duration::from_secs(3),
        ..*retry
    };
    patient.run("etcd learner promotion", |dl| match c.promote(id, dl) {
        Ok(()) => Ok(()),
        Err(Attempt::Permanent(e)) => match etcd_message(&e) {
            Some(m) if m.ends_with("in sync with leader") => Err(Attempt::Transient(e)),
            Some("etcdserver: can only promote a learner member") => Ok(()), // already voting
            _ => Err(Attempt::Permanent(e)),
        },
        Err(t) => Err(t),
    })
}

/// Undo a join: remove the learner, stop etcd, delete its data and config.
fn rollback(c: &Client, id: u64, l: &Layout, sm: &dyn ServiceManager) -> Result<()> {
    let quick = Retry {
        max_attempts: 5,
        max_total: Duration::from_secs(30),
        ..Retry::default()
    };
    let removed = quick.run("etcd member remove (rollback)", |dl| {
        match c.remove(id, dl) {
            Err(Attempt::Permanent(e))
                if etcd_message(&e) == Some("etcdserver: member not found") =>
            {
                Ok(())
            }
            r => r,
        }
    });
    let stopped = sm.stop("etcd.service");
    let _ = fs::remove_file(&l.conf);
    if l.data.exists() {
        for entry in fs::read_dir(&l.data)? {
            let p = entry?.path();
            let r = if p.is_dir() {
                fs::remove_dir_all(&p)
            } else {
                fs::remove_file(&p)
            };
            r.with_context(|| format!("cannot remove {}", p.display()))?;
        }
    }
    removed?;
    stopped.map_err(|e| anyhow!("learner removed but etcd did not stop: {e:#}"))
}

#[cfg(test)]
mod tests {
    use super::local_client_urls;

    #[test]
    fn behind_port_forwarding_this_host_reaches_itself_over_loopback() {
        let src = r#"version = 1
[etcd]
mode = "join"
name = "h2"
endpoints = ["https://10.77.0.1:2379"]
peer_urls = ["https://10.77.0.2:2380"]
client_urls = ["https://10.77.0.2:2379"]
listen_peer_urls = ["https://0.0.0.0:2380"]
listen_client_urls = ["https://0.0.0.0:2379", "https://[::]:2381"]
ca_file = "/etc/pki/ca.pem"
cert_file = "/etc/pki/client.pem"
key_file = "/etc/pki/client.key"
server_cert_file = "/etc/pki/server.pem"
server_key_file = "/etc/pki/server.key"
"#;
        let e = crate::config::parse(src, "t").unwrap().etcd.unwrap();
        let local: Vec<String> = local_client_urls(&e)
            .iter()
            .map(|u| u.authority())
            .collect();
        assert_eq!(local, ["127.0.0.1:2379", "[::1]:2381"]);
    }
}
