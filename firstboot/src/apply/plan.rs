//! `--dry-run`: the ordered list of actions a run would take, without
//! secrets (no tokens, keys, file contents or URL query strings).

use std::path::Path;

use super::{etcd, kubelet, STAMP};
use crate::config::{Config, Etcd, EtcdMode, FileSource, MaterialSource};
use crate::x509::pin_string;

/// One line per action, in the order they are applied.
pub fn plan(cfg: &Config) -> Vec<String> {
    let mut out = vec![
        "preflight: check groups, certificates, the kubelet CA pin and the etcd cluster"
            .to_string(),
    ];
    if let Some(h) = &cfg.hostname {
        out.push(format!("hostname: set to {h} (/etc/hostname)"));
    }
    for u in &cfg.users {
        let groups = if u.groups.is_empty() {
            "no extra groups".to_string()
        } else {
            format!("groups {}", u.groups.join(","))
        };
        out.push(format!(
            "users: create or update {} ({groups}), {} SSH key(s)",
            u.name,
            u.ssh_authorized_keys.len()
        ));
    }
    for f in &cfg.files {
        let what = match &f.source {
            FileSource::Contents(c) => format!("{} bytes inline", c.expose().len()),
            FileSource::Url { url, sha256 } => format!(
                "download {} (sha256 {})",
                url.redacted(),
                hex::encode(sha256)
            ),
        };
        out.push(format!(
            "files: write {} mode {:04o} owner {}:{}, {what}",
            f.path.display(),
            f.mode,
            f.uid,
            f.gid
        ));
    }
    out.extend(cfg.registries.iter().map(registry_plan));
    if let Some(e) = &cfg.etcd {
        out.extend(etcd_plan(e));
    }
    if let Some(k) = &cfg.kubelet {
        let from = match &k.ca {
            Some(m) => m.field.clone(),
            None => format!("the TLS handshake of {}", k.api_server.authority()),
        };
        out.push(format!(
            "kubelet: take the CA from {from}; refuse it unless its pin is {}",
            pin_string(&k.ca_cert_hash)
        ));
        out.push(format!(
            "kubelet: write {}, {} (0600, bootstrap token for {}) and {}",
            kubelet::CA_FILE,
            kubelet::BOOTSTRAP_KUBECONFIG,
            k.api_server.redacted(),
            kubelet::KUBELET_CONFIG
        ));
    }
    for u in &cfg.units.enable {
        out.push(format!("units: enable {u}"));
    }
    for u in &cfg.units.start {
        out.push(format!("units: start {u} (queued, not waited for)"));
    }
    out.push(format!("stamp: write {}", Path::new(STAMP).display()));
    out
}

/// The etcd steps.
fn etcd_plan(e: &Etcd) -> Vec<String> {
    let mut out = Vec::new();
    let peers = etcd::origins(&e.peer_urls).join(",");
    let src = |m: &crate::config::Material| match &m.source {
        MaterialSource::Inline(_) => format!("{} (inline)", m.field),
        MaterialSource::File(p) => format!("{} ({})", m.field, p.display()),
    };
    out.push(format!(
        "etcd: write {}/{{ca.crt,server.crt,server.key,peer.crt,peer.key}} from {}, {}, {}",
        etcd::PKI_DIR,
        src(&e.ca),
        src(&e.server_cert),
        src(&e.peer_cert)
    ));
    if e.listen_peer_urls != e.peer_urls || e.listen_client_urls != e.client_urls {
        out.push(format!(
            "etcd: listen for peers on {}, for clients on {} (advertised: {peers}; {})",
            etcd::origins(&e.listen_peer_urls).join(","),
            etcd::origins(&e.listen_client_urls).join(","),
            etcd::origins(&e.client_urls).join(",")
        ));
    }
    match &e.mode {
        EtcdMode::Bootstrap => {
            out.push(format!(
                "etcd: write {} for a new cluster: {}={peers}",
                etcd::CONFIG_FILE,
                e.name
            ));
            out.push("etcd: enable and start etcd.service; wait until it answers".into());
        }
        EtcdMode::Join { endpoints } => {
            let eps = etcd::origins(endpoints).join(",");
            out.push(format!(
                "etcd: member/add {} as learner with peer URLs {peers} via {eps}",
                e.name
            ));
            out.push(format!(
                "etcd: write {} with initial-cluster-state existing",
                etcd::CONFIG_FILE
            ));
            out.push("etcd: enable and start etcd.service".into());
            out.push(
                "etcd: member/promote until the learner is in sync (on failure: member/remove)"
                    .into(),
            );
        }
    }
    out
}

/// The registries step for one entry.
fn registry_plan(r: &crate::config::Registry) -> String {
    let s = &r.settings;
    let ca = match &r.ca {
        Some(m) => format!("CA from {}", m.field),
        None => "the system's CAs".to_string(),
    };
    let login = match &s.credentials {
        Some(_) => "with a login (file root's only)",
        None => "no login",
    };
    format!(
        "registries: write {}/{}/hosts.toml: {} mirror(s), {}, {ca}, {login}",
        common::registries::CERTS_DIR,
        s.host,
        s.mirrors.len(),
        if s.insecure { "plain HTTP" } else { "TLS" },
    )
}
