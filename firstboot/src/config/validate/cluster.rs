//! Validation of the `[etcd]` and `[kubelet]` tables.

use std::path::PathBuf;

use super::{Pem, V};
use crate::config::checks;
use crate::config::raw::{RawEtcd, RawKubelet};
use crate::config::{Etcd, EtcdMode, Kubelet, Material, Secret};
use crate::http::Url;

impl V {
    pub(super) fn etcd(&mut self, e: RawEtcd) -> Option<Etcd> {
        let mode = self.etcd_mode(&e);
        let name = self.required("etcd.name", e.name.clone(), "this member's name");
        let name = name.and_then(|n| self.check("etcd.name", checks::etcd_name(&n)).map(|_| n));
        let urls = self.etcd_urls(&e);
        self.etcd_timing(&e);
        let data_dir = e
            .data_dir
            .clone()
            .unwrap_or_else(|| "/var/lib/etcd/default".into());
        self.check("etcd.data_dir", checks::writable_path(&data_dir));
        let token = e
            .cluster_token
            .clone()
            .unwrap_or_else(|| "atomic-etcd".into());
        if token.is_empty() || token.contains(char::is_whitespace) {
            self.bad("etcd.cluster_token", "must be a non-empty word");
        }
        let (heartbeat_interval_ms, election_timeout_ms) =
            (e.heartbeat_interval_ms, e.election_timeout_ms);
        let tls = self.etcd_tls(e);
        let [peer_urls, client_urls, listen_peer_urls, listen_client_urls] = urls;
        let [ca, client_cert, client_key, server_cert, server_key, peer_cert, peer_key] = tls?;
        Some(Etcd {
            mode: mode?,
            name: name?,
            peer_urls: peer_urls?,
            client_urls: client_urls?,
            listen_peer_urls: listen_peer_urls?,
            listen_client_urls: listen_client_urls?,
            heartbeat_interval_ms,
            election_timeout_ms,
            data_dir: PathBuf::from(data_dir),
            cluster_token: token,
            ca,
            client_cert,
            client_key,
            server_cert,
            server_key,
            peer_cert,
            peer_key,
        })
    }

    /// `mode`, with `endpoints` for a join.
    fn etcd_mode(&mut self, e: &RawEtcd) -> Option<EtcdMode> {
        match e.mode.as_deref() {
            Some("bootstrap") => {
                if e.endpoints.is_some() {
                    self.bad("etcd.endpoints", "only used with mode = \"join\"");
                }
                Some(EtcdMode::Bootstrap)
            }
            Some("join") => {
                let eps = self.required(
                    "etcd.endpoints",
                    e.endpoints.as_ref(),
                    "client URLs (https) of existing members",
                );
                eps.and_then(|eps| {
                    if eps.is_empty() {
                        self.bad("etcd.endpoints", "needs at least one URL");
                    }
                    let urls: Vec<Option<Url>> = eps
                        .iter()
                        .enumerate()
                        .map(|(i, s)| self.url(&format!("etcd.endpoints[{i}]"), s, true))
                        .collect();
                    urls.into_iter().collect::<Option<Vec<_>>>()
                })
                .map(|endpoints| EtcdMode::Join { endpoints })
            }
            Some(_) => {
                self.bad("etcd.mode", "must be \"bootstrap\" or \"join\"");
                None
            }
            None => {
                self.bad("etcd.mode", "required: \"bootstrap\" or \"join\"");
                None
            }
        }
    }

    /// Advertised and listen URLs: [peer, client, listen peer, listen client].
    fn etcd_urls(&mut self, e: &RawEtcd) -> [Option<Vec<Url>>; 4] {
        let peer_urls = self.listen_urls("etcd.peer_urls", e.peer_urls.as_ref());
        let client_urls = self.listen_urls("etcd.client_urls", e.client_urls.as_ref());
        for (field, urls) in [
            ("etcd.peer_urls", &peer_urls),
            ("etcd.client_urls", &client_urls),
        ] {
            for (i, u) in urls.iter().flatten().enumerate() {
                if u.host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_unspecified())
                {
                    self.bad(
                        format!("{field}[{i}]"),
                        "is advertised to other members and clients: name a reachable IP (listen on all addresses with listen_peer_urls / listen_client_urls)",
                    );
                }
            }
        }
        let listen_peer_urls = match &e.listen_peer_urls {
            Some(v) => self.listen_urls("etcd.listen_peer_urls", Some(v)),
            None => peer_urls.clone(),
        };
        let listen_client_urls = match &e.listen_client_urls {
            Some(v) => self.listen_urls("etcd.listen_client_urls", Some(v)),
            None => client_urls.clone(),
        };
        [peer_urls, client_urls, listen_peer_urls, listen_client_urls]
    }

    /// Heartbeat and election timeout, as etcd accepts them.
    fn etcd_timing(&mut self, e: &RawEtcd) {
        let heartbeat = e.heartbeat_interval_ms.unwrap_or(100);
        if !(10..=10_000).contains(&heartbeat) {
            self.bad("etcd.heartbeat_interval_ms", "must be 10 to 10000 (ms)");
        }
        if let Some(el) = e.election_timeout_ms {
            if el > 50_000 {
                self.bad(
                    "etcd.election_timeout_ms",
                    "must be at most 50000 (ms; etcd's limit)",
                );
            } else if el < 5 * heartbeat {
                self.bad(
                    "etcd.election_timeout_ms",
                    format!("must be at least 5 times the heartbeat interval ({heartbeat} ms), as etcd requires"),
                );
            }
        } else if e.heartbeat_interval_ms.is_some() && heartbeat * 5 > 1000 {
            self.bad(
                "etcd.election_timeout_ms",
                format!("required with a heartbeat interval of {heartbeat} ms: etcd's default 1000 ms is less than 5 heartbeats"),
            );
        }
    }

    /// The TLS material: [ca, client cert, client key, server cert, server
    /// key, peer cert, peer key] (peer defaults to server).
    fn etcd_tls(&mut self, e: RawEtcd) -> Option<[Material; 7]> {
        let ca = self.material("etcd", "ca", e.ca, e.ca_file, Pem::Certs, true);
        let cert = self.material("etcd", "cert", e.cert, e.cert_file, Pem::Certs, true);
        let key = self.material("etcd", "key", e.key, e.key_file, Pem::Key, true);
        self.pair_matches(&cert, &key);
        let s_cert = self.material(
            "etcd",
            "server_cert",
            e.server_cert,
            e.server_cert_file,
            Pem::Certs,
            true,
        );
        let s_key = self.material(
            "etcd",
            "server_key",
            e.server_key,
            e.server_key_file,
            Pem::Key,
            true,
        );
        self.pair_matches(&s_cert, &s_key);
        let has_peer = e.peer_cert.is_some()
            || e.peer_cert_file.is_some()
            || e.peer_key.is_some()
            || e.peer_key_file.is_some();
        let p_cert = self.material(
            "etcd",
            "peer_cert",
            e.peer_cert,
            e.peer_cert_file,
            Pem::Certs,
            has_peer,
        );
        let p_key = self.material(
            "etcd",
            "peer_key",
            e.peer_key,
            e.peer_key_file,
            Pem::Key,
            has_peer,
        );
        self.pair_matches(&p_cert, &p_key);
        let (p_cert, p_key) = if has_peer {
            (p_cert?, p_key?)
        } else {
            (s_cert.clone()?, s_key.clone()?)
        };
        Some([ca?, cert?, key?, s_cert?, s_key?, p_cert, p_key])
    }

    pub(super) fn kubelet(&mut self, k: RawKubelet) -> Option<Kubelet> {
        let api = self.required(
            "kubelet.api_server",
            k.api_server,
            "the API server's https URL",
        );
        let api = api.and_then(|a| self.url("kubelet.api_server", &a, true));
        let token = self.required(
            "kubelet.bootstrap_token",
            k.bootstrap_token,
            "a kubeadm bootstrap token",
        );
        let token = token.and_then(|t| {
            self.check("kubelet.bootstrap_token", checks::bootstrap_token(&t))
                .map(|_| t)
        });
        let hash = self.required(
            "kubelet.ca_cert_hash",
            k.ca_cert_hash,
            "sha256:<hex> of the cluster CA's public key",
        );
        let hash = hash.and_then(|h| self.check("kubelet.ca_cert_hash", checks::ca_cert_hash(&h)));
        let before = self.problems.len();
        let ca = self.material("kubelet", "ca", k.ca, k.ca_file, Pem::Certs, false);
        if self.problems.len() > before {
            return None;
        }
        Some(Kubelet {
            api_server: api?,
            bootstrap_token: Secret::new(token?),
            ca_cert_hash: hash?,
            ca,
        })
    }
}
