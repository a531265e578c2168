//! etcd join with a real etcd (Debian `etcd-server` 3.4, `etcd-client` for
//! etcdctl) between two hosts made of network namespaces `abfb-h1`
//! (10.77.0.1) and `abfb-h2` (10.77.0.2) joined by a veth pair.
//!
//! The agent binary runs inside each namespace (`ip netns exec`) with
//! `--service-manager direct`, so the etcd it starts is its own child in
//! that namespace. Host 1 bootstraps a cluster; host 2 is first refused in
//! several ways — each with one clear line and no member added — then
//! joins as a learner and is promoted. Needs root, `ip`, `etcd`, `etcdctl`
//! and `openssl`; every namespace and every process in it is removed at
//! the start and at the end, panics included.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::netns::{preconditions, sh, Hosts, IP, NS};
use common::{ca, leaf, openssl_pin, stderr, Alg, Cert};
use serde_json::Value;

/// The certificates of the test cluster.
struct Pki {
    ca: Cert,
    client: Cert,
    server: [Cert; 2],
    wrong_ca: Cert,
    foreign_peer: Cert,
    k8s_ca: Cert,
}

impl Pki {
    fn new(dir: &Path) -> Pki {
        let ca = ca(dir, "etcd-ca", Alg::Ec);
        let wrong_ca = common::ca(dir, "wrong-ca", Alg::Ec);
        Pki {
            client: leaf(dir, &ca, "client", &[], Alg::Ec),
            server: [
                leaf(dir, &ca, "h1", &[IP[0]], Alg::Ec),
                leaf(dir, &ca, "h2", &[IP[1]], Alg::Rsa),
            ],
            foreign_peer: leaf(dir, &wrong_ca, "h2-foreign", &[IP[1]], Alg::Ec),
            k8s_ca: common::ca(dir, "k8s-ca", Alg::Rsa),
            ca,
            wrong_ca,
        }
    }
}

fn inline(key: &str, pem: &str) -> String {
    format!("{key} = \"\"\"\n{pem}\"\"\"\n")
}

/// Host 1: bootstrap, with certificates as files under its root.
fn h1_config(p: &Pki, root: &Path) -> String {
    let put = |name: &str, from: &Path| {
        let to = root.join("etc/pki/etcd").join(name);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(from, to).unwrap();
        format!("/etc/pki/etcd/{name}")
    };
    format!(
        "version = 1\nhostname = \"h1\"\n[etcd]\nmode = \"bootstrap\"\nname = \"h1\"\n\
         peer_urls = [\"https://{ip}:2380\"]\nclient_urls = [\"https://{ip}:2379\"]\n\
         ca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\nserver_cert_file = \"{}\"\nserver_key_file = \"{}\"\n",
        put("ca.crt", &p.ca.crt),
        put("client.crt", &p.client.crt),
        put("client.key", &p.client.key),
        put("server.crt", &p.server[0].crt),
        put("server.key", &p.server[0].key),
        ip = IP[0],
    )
}

/// Host 2: join, with inline certificates, and a kubelet section.
fn h2_config(p: &Pki, endpoint: &str, ca: &Cert, peer: &Cert, pin: &str) -> String {
    let mut s = format!(
        "version = 1\nhostname = \"h2\"\n[etcd]\nmode = \"join\"\nname = \"h2\"\nendpoints = [\"{endpoint}\"]\n\
         peer_urls = [\"https://{ip}:2380\"]\nclient_urls = [\"https://{ip}:2379\"]\n",
        ip = IP[1]
    );
    s += &inline("ca", &ca.crt_pem());
    s += &inline("cert", &p.client.crt_pem());
    s += &inline("key", &p.client.key_pem());
    s += &inline("server_cert", &p.server[1].crt_pem());
    s += &inline("server_key", &p.server[1].key_pem());
    s += &inline("peer_cert", &peer.crt_pem());
    s += &inline("peer_key", &peer.key_pem());
    s += &format!("[kubelet]\napi_server = \"https://10.77.0.100:6443\"\nbootstrap_token = \"abcdef.0123456789abcdef\"\nca_cert_hash = \"{pin}\"\n");
    s += &inline("ca", &p.k8s_ca.crt_pem());
    s
}

/// Run the agent inside host `i`'s namespace.
fn agent(i: usize, dir: &Path, root: &Path, config: &str, retry_secs: u64) -> Output {
    let cfg = dir.join(format!(
        "config-{}.toml",
        root.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&cfg, config).unwrap();
    sh(&[
        "ip",
        "netns",
        "exec",
        NS[i],
        env!("CARGO_BIN_EXE_atomic-firstboot"),
        "run",
        "--config",
        &cfg.to_string_lossy(),
        "--root",
        &root.to_string_lossy(),
        "--service-manager",
        "direct",
        "--retry-secs",
        &retry_secs.to_string(),
    ])
}

/// etcdctl inside host `i` against its own client URL.
fn etcdctl(p: &Pki, i: usize, args: &[&str]) -> Output {
    let (ca, cert, key) = (
        p.ca.crt.to_string_lossy(),
        p.client.crt.to_string_lossy(),
        p.client.key.to_string_lossy(),
    );
    let ep = format!("--endpoints=https://{}:2379", IP[i]);
    let mut argv = vec![
        "ip",
        "netns",
        "exec",
        NS[i],
        "etcdctl",
        &ep,
        "--cacert",
        &ca,
        "--cert",
        &cert,
        "--key",
        &key,
        "--dial-timeout=3s",
        "--command-timeout=10s",
    ];
    argv.extend(args);
    sh(&argv)
}

/// (name, is_learner) of every member, as host 1 sees it.
fn members(p: &Pki) -> Vec<(String, bool)> {
    let o = etcdctl(p, 0, &["member", "list", "-w", "json"]);
    assert!(o.status.success(), "member list: {}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    v["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap_or("").to_string(),
                m["isLearner"].as_bool().unwrap_or(false),
            )
        })
        .collect()
}

/// A refused join: one line naming step and field, and still one member.
fn refused(p: &Pki, o: &Output, step: &str, field: &str, needle: &str) {
    let err = stderr(o);
    assert!(!o.status.success(), "should have failed: {err}");
    assert_eq!(err.lines().count(), 1, "not one line: {err}");
    let head = format!("atomic-firstboot: step {step} failed (field {field}): ");
    assert!(err.starts_with(&head), "want {head}…, got {err}");
    assert!(err.contains(needle), "want {needle:?} in {err}");
    assert!(
        !err.contains("PRIVATE KEY") && !err.contains("0123456789abcdef"),
        "secret printed: {err}"
    );
    assert_eq!(
        members(p),
        vec![("h1".to_string(), false)],
        "a member was left behind"
    );
    println!("refused as expected: {err}");
}

#[test]
fn two_hosts_bootstrap_join_and_refusals() {
    if !preconditions() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = &tmp.path().to_owned();
    // ATOMIC_FIRSTBOOT_KEEP_TMP=1 keeps configs, roots and etcd logs for a look.
    let _tmp = if std::env::var_os("ATOMIC_FIRSTBOOT_KEEP_TMP").is_some() {
        println!("keeping {}", tmp.keep().display());
        None
    } else {
        Some(tmp)
    };
    let p = Pki::new(dir);
    let pin = openssl_pin(&p.k8s_ca.crt);
    let _hosts = Hosts::new();
    let root = |name: &str| -> PathBuf { dir.join(name) };

    // Host 1 bootstraps.
    let r1 = root("h1");
    let o = agent(0, dir, &r1, &h1_config(&p, &r1), 60);
    assert!(
        o.status.success(),
        "bootstrap: {}\n{}",
        stderr(&o),
        String::from_utf8_lossy(&o.stdout)
    );
    assert_eq!(members(&p), vec![("h1".to_string(), false)]);
    assert!(r1.join("var/lib/atomic-firstboot/done").exists());

    let ep = format!("https://{}:2379", IP[0]);
    let good = h2_config(&p, &ep, &p.ca, &p.server[1], &pin);

    // Refusals, each leaving the cluster at one member.
    let o = agent(
        1,
        dir,
        &root("n-malformed"),
        &good.replace("mode = \"join\"", "mode = \"join\"\nretries = 3"),
        10,
    );
    refused(
        &p,
        &o,
        "validate",
        "etcd.retries",
        "unknown field `retries`",
    );

    let wrong_pin = openssl_pin(&p.ca.crt);
    let o = agent(
        1,
        dir,
        &root("n-pin"),
        &h2_config(&p, &ep, &p.ca, &p.server[1], &wrong_pin),
        10,
    );
    refused(&p, &o, "preflight", "kubelet.ca_cert_hash", "refusing");

    // Certificates not issued by the configured CA.
    let o = agent(
        1,
        dir,
        &root("n-ca"),
        &good.replacen(&p.ca.crt_pem(), &p.wrong_ca.crt_pem(), 1),
        10,
    );
    refused(
        &p,
        &o,
        "preflight",
        "etcd.cert",
        "not valid as a TLS client certificate",
    );

    let o = agent(
        1,
        dir,
        &root("n-peer"),
        &h2_config(&p, &ep, &p.ca, &p.foreign_peer, &pin),
        10,
    );
    refused(&p, &o, "preflight", "etcd.peer_cert", "UnknownIssuer");

    let start = Instant::now();
    let o = agent(
        1,
        dir,
        &root("n-unreachable"),
        &h2_config(
            &p,
            &format!("https://{}:2999", IP[0]),
            &p.ca,
            &p.server[1],
            &pin,
        ),
        10,
    );
    let took = start.elapsed();
    refused(
        &p,
        &o,
        "preflight",
        "etcd.endpoints",
        "gave up on etcd member list",
    );
    assert!(
        took < Duration::from_secs(60),
        "unreachable endpoint took {took:?}"
    );

    // Untrusted server: a client trusting only the wrong CA, certificates
    // otherwise consistent — the TLS handshake with host 1 must fail.
    let o = agent(
        1,
        dir,
        &root("n-untrusted"),
        &untrusted_config(&p, &ep, dir, &pin),
        10,
    );
    refused(&p, &o, "preflight", "etcd.endpoints", "UnknownIssuer");

    // Failure after member/add: the peer port is taken, etcd cannot start;
    // the learner must be removed again.
    let blocker = Command::new("ip")
        .args([
            "netns",
            "exec",
            NS[1],
            "openssl",
            "s_server",
            "-quiet",
            "-accept",
            &format!("{}:2380", IP[1]),
        ])
        .args([
            "-cert",
            &p.server[1].crt.to_string_lossy(),
            "-key",
            &p.server[1].key.to_string_lossy(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let rb = root("n-rollback");
    let o = agent(1, dir, &rb, &good, 20);
    let mut blocker = blocker;
    let _ = blocker.kill();
    let _ = blocker.wait();
    refused(
        &p,
        &o,
        "etcd",
        "etcd.endpoints",
        "rolled back: the learner was removed",
    );
    assert!(
        !rb.join("etc/etcd/etcd.conf.yml").exists(),
        "etcd config left after rollback"
    );
    assert!(
        !rb.join("var/lib/etcd/default/member").exists(),
        "etcd data left after rollback"
    );
    assert!(!rb.join("var/lib/atomic-firstboot/done").exists());

    // Host 2 joins as a learner and is promoted.
    let r2 = root("h2");
    let o = agent(1, dir, &r2, &good, 90);
    assert!(
        o.status.success(),
        "join: {}\n{}",
        stderr(&o),
        String::from_utf8_lossy(&o.stdout)
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("added as learner") && out.contains("promoted"),
        "{out}"
    );
    let mut m = members(&p);
    m.sort();
    assert_eq!(
        m,
        vec![("h1".to_string(), false), ("h2".to_string(), false)]
    );

    // Data written on one host is read on the other.
    assert!(etcdctl(&p, 0, &["put", "from-h1", "hello"])
        .status
        .success());
    assert!(etcdctl(&p, 1, &["put", "from-h2", "world"])
        .status
        .success());
    let get = |i: usize, k: &str| {
        let o = etcdctl(&p, i, &["get", k, "--print-value-only"]);
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    assert_eq!(get(1, "from-h1"), "hello");
    assert_eq!(get(0, "from-h2"), "world");
    assert!(r2.join("etc/kubernetes/bootstrap-kubelet.conf").exists());
    // atomic-update learns how to reach etcd for its reboot slots: this
    // member first, then the cluster joined through; the client key private.
    let lock = std::fs::read_to_string(r2.join("etc/atomic-update/config.d/20-etcd.toml")).unwrap();
    let mine = format!("endpoints = [\"https://{}:2379\", \"{ep}\"]", IP[1]);
    assert!(
        lock.contains("[lock]") && lock.contains(&mine) && lock.contains("member = \"h2\""),
        "{lock}"
    );
    use std::os::unix::fs::MetadataExt;
    let key = std::fs::metadata(r2.join("etc/etcd/pki/client.key")).unwrap();
    assert_eq!(key.mode() & 0o777, 0o600);

    // Rerun: stamped, nothing to do; without the stamp, idempotent.
    let o = agent(1, dir, &r2, &good, 30);
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains("already provisioned")
    );
    std::fs::remove_file(r2.join("var/lib/atomic-firstboot/done")).unwrap();
    let o = agent(1, dir, &r2, &good, 30);
    assert!(o.status.success(), "rerun: {}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("already a member"));
    assert_eq!(members(&p).len(), 2);
}

/// A config whose every certificate is consistent with the wrong CA, so
/// only the handshake with host 1 (whose server certificate is signed by the
/// real CA) can fail.
fn untrusted_config(p: &Pki, ep: &str, dir: &Path, pin: &str) -> String {
    let client = leaf(dir, &p.wrong_ca, "client-wrong", &[], Alg::Ec);
    let server = leaf(dir, &p.wrong_ca, "h2-wrong", &[IP[1]], Alg::Ec);
    let fake = Pki {
        ca: p.wrong_ca.clone(),
        client,
        server: [p.server[0].clone(), server.clone()],
        wrong_ca: p.wrong_ca.clone(),
        foreign_peer: server.clone(),
        k8s_ca: p.k8s_ca.clone(),
    };
    h2_config(&fake, ep, &p.wrong_ca, &server, pin)
}
