//! Validation of `[etcd]` and `[kubelet]`.

use super::{at, parse, problem, problems, self_signed};
use crate::config::EtcdMode;

#[test]
fn kubelet_is_checked() {
    let src = "version = 1\n[kubelet]\napi_server = \"http://10.0.0.1:6443\"\nbootstrap_token = \"ABCDEF.0123456789abcdef\"\nca_cert_hash = \"md5:abc\"\nca = \"x\"\nca_file = \"/etc/ca.pem\"\n";
    at(src, "kubelet.api_server", (3, 1), "https://");
    at(
        src,
        "kubelet.bootstrap_token",
        (4, 1),
        "[a-z0-9]{6}.[a-z0-9]{16}",
    );
    at(
        src,
        "kubelet.ca_cert_hash",
        (5, 1),
        "sha256:<64 hex digits>",
    );
    at(src, "kubelet.ca_file", (7, 1), "not both");
    let p = problems(src);
    assert!(
        p.iter().all(|p| !p.message.contains("ABCDEF")),
        "token leaked: {p:#?}"
    );
    let missing = problem("version = 1\n[kubelet]\n", "kubelet.api_server");
    assert_eq!((missing.line, missing.col), (2, 2));
    let bad_ca = "version = 1\n[kubelet]\napi_server = \"https://h:6443\"\nbootstrap_token = \"abcdef.0123456789abcdef\"\nca_cert_hash = \"sha256:0000000000000000000000000000000000000000000000000000000000000000\"\nca = \"not pem\"\n";
    at(bad_ca, "kubelet.ca", (6, 1), "no PEM certificate");
}

const ETCD_JOIN: &str = r#"version = 1
[etcd]
mode = "join"
name = "h2"
endpoints = ["https://10.77.0.1:2379"]
peer_urls = ["https://10.77.0.2:2380"]
client_urls = ["https://10.77.0.2:2379"]
ca_file = "/etc/pki/ca.pem"
cert_file = "/etc/pki/client.pem"
key_file = "/etc/pki/client.key"
server_cert_file = "/etc/pki/server.pem"
server_key_file = "/etc/pki/server.key"
"#;

#[test]
fn etcd_join_parses_with_peer_defaulting_to_server() {
    let c = parse(ETCD_JOIN, "t").unwrap();
    let e = c.etcd.unwrap();
    assert!(matches!(&e.mode, EtcdMode::Join { endpoints } if endpoints[0].port == 2379));
    assert_eq!(e.peer_cert.field, "etcd.server_cert_file");
    assert_eq!(
        e.data_dir,
        std::path::PathBuf::from("/var/lib/etcd/default")
    );
    assert_eq!(e.cluster_token, "atomic-etcd");
}

#[test]
fn etcd_is_checked() {
    let src = r#"version = 1
[etcd]
mode = "bootstrap"
name = "h=1"
endpoints = ["https://10.77.0.1:2379"]
peer_urls = ["https://node1:2380", "http://10.0.0.1:2380", "https://10.0.0.1:2380/x"]
ca = "garbage"
ca_file = "/etc/ca.pem"
cert_file = "relative.pem"
server_cert_file = "/etc/s.pem"
server_key_file = "/etc/s.key"
peer_cert_file = "/etc/p.pem"
cluster_token = "two words"
data_dir = "/usr/lib/etcd"
"#;
    at(src, "etcd.name", (4, 1), "letters, digits");
    at(
        src,
        "etcd.endpoints",
        (5, 1),
        "only used with mode = \"join\"",
    );
    at(src, "etcd.peer_urls[0]", (6, 14), "IP address");
    at(src, "etcd.peer_urls[1]", (6, 36), "https://");
    at(src, "etcd.peer_urls[2]", (6, 60), "path");
    at(src, "etcd.client_urls", (2, 2), "required");
    at(src, "etcd.ca_file", (8, 1), "not both");
    at(src, "etcd.cert_file", (9, 1), "absolute");
    at(src, "etcd.key", (2, 2), "required");
    at(src, "etcd.peer_key", (2, 2), "required");
    at(src, "etcd.cluster_token", (13, 1), "non-empty word");
    at(src, "etcd.data_dir", (14, 1), "/usr is not writable");
    at(
        "version = 1\n[etcd]\nmode = \"leader\"\n",
        "etcd.mode",
        (3, 1),
        "\"bootstrap\" or \"join\"",
    );
    at("version = 1\n[etcd]\n", "etcd.mode", (2, 2), "required");
    at(
        &ETCD_JOIN.replace("endpoints = [\"https://10.77.0.1:2379\"]\n", ""),
        "etcd.endpoints",
        (2, 2),
        "required",
    );
    at(
        &ETCD_JOIN.replace("https://10.77.0.1:2379", "http://10.77.0.1:2379"),
        "etcd.endpoints[0]",
        (5, 14),
        "https://",
    );
}

#[test]
fn etcd_inline_pem_is_parsed_and_pairs_must_match() {
    let d = tempfile::tempdir().unwrap();
    let (ca, _) = self_signed(d.path(), "ca");
    let (cert, key) = self_signed(d.path(), "client");
    let (_, other_key) = self_signed(d.path(), "other");
    let toml_str = |s: &str| format!("\"\"\"\n{s}\"\"\"");
    let base = ETCD_JOIN
        .replace(
            "ca_file = \"/etc/pki/ca.pem\"",
            &format!("ca = {}", toml_str(&ca)),
        )
        .replace(
            "cert_file = \"/etc/pki/client.pem\"",
            &format!("cert = {}", toml_str(&cert)),
        );
    let good = base.replace(
        "key_file = \"/etc/pki/client.key\"",
        &format!("key = {}", toml_str(&key)),
    );
    assert!(parse(&good, "t").is_ok(), "{:?}", parse(&good, "t").err());
    let bad = base.replace(
        "key_file = \"/etc/pki/client.key\"",
        &format!("key = {}", toml_str(&other_key)),
    );
    let p = problem(&bad, "etcd.key");
    assert!(
        p.message.contains("does not belong to the certificate"),
        "{p:?}"
    );
    assert!(!p.message.contains("PRIVATE"), "{p:?}");
    let not_key = base.replace(
        "key_file = \"/etc/pki/client.key\"",
        &format!("key = {}", toml_str(&cert)),
    );
    assert!(problem(&not_key, "etcd.key")
        .message
        .contains("no PEM private key"));
}

#[test]
fn etcd_listen_urls_and_timing() {
    // Defaults: listen where advertised, etcd's own timing.
    let e = parse(ETCD_JOIN, "t").unwrap().etcd.unwrap();
    assert_eq!(e.listen_peer_urls, e.peer_urls);
    assert_eq!(e.listen_client_urls, e.client_urls);
    assert_eq!(
        (e.heartbeat_interval_ms, e.election_timeout_ms),
        (None, None)
    );
    // Behind port forwarding: listen on all addresses, advertise the
    // forwarded address; this host reaches itself over loopback.
    let src = ETCD_JOIN.replace(
        "client_urls = [\"https://10.77.0.2:2379\"]\n",
        "client_urls = [\"https://10.77.0.2:2379\"]\nlisten_peer_urls = [\"https://0.0.0.0:2380\"]\nlisten_client_urls = [\"https://0.0.0.0:2379\", \"https://[::]:2381\"]\nheartbeat_interval_ms = 500\nelection_timeout_ms = 5000\n",
    );
    let e = parse(&src, "t").unwrap().etcd.unwrap();
    assert_eq!(e.listen_peer_urls[0].host, "0.0.0.0");
    assert_eq!(e.peer_urls[0].host, "10.77.0.2");
    assert_eq!(
        (e.heartbeat_interval_ms, e.election_timeout_ms),
        (Some(500), Some(5000))
    );
    // An all-addresses URL cannot be advertised.
    at(
        &ETCD_JOIN.replace("https://10.77.0.2:2380", "https://0.0.0.0:2380"),
        "etcd.peer_urls[0]",
        (6, 14),
        "listen_peer_urls",
    );
    at(
        &src.replace("https://0.0.0.0:2380", "http://0.0.0.0:2380"),
        "etcd.listen_peer_urls[0]",
        (8, 21),
        "https://",
    );
    // etcd's own limits, as errors before anything runs.
    for (from, to, field, pos, msg) in [
        (
            "election_timeout_ms = 5000",
            "election_timeout_ms = 2000",
            "etcd.election_timeout_ms",
            (11, 1),
            "at least 5 times",
        ),
        (
            "election_timeout_ms = 5000",
            "election_timeout_ms = 60000",
            "etcd.election_timeout_ms",
            (11, 1),
            "at most 50000",
        ),
        (
            "heartbeat_interval_ms = 500",
            "heartbeat_interval_ms = 5",
            "etcd.heartbeat_interval_ms",
            (10, 1),
            "10 to 10000",
        ),
        (
            "election_timeout_ms = 5000\n",
            "",
            "etcd.election_timeout_ms",
            (2, 2),
            "required with a heartbeat interval of 500 ms",
        ),
    ] {
        at(&src.replace(from, to), field, pos, msg);
    }
}
