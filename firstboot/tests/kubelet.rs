//! The kubelet step through the binary: the CA pin is enforced before
//! anything is written, the files it writes parse as a kubeconfig and a
//! KubeletConfiguration, and the CA can come from the API server's TLS
//! handshake (a rustls server on 127.0.0.1) — still only if pinned and if
//! the server's certificate verifies against it.

mod common;

use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use common::{ca, leaf, openssl_pin, run_agent, stderr, Alg, Cert};
use yaml_rust2::{Yaml, YamlLoader};

const TOKEN: &str = "abcdef.0123456789abcdef";

fn config(api: &str, pin: &str, ca_pem: Option<&str>) -> String {
    let mut s = format!(
        "version = 1\nhostname = \"worker-1\"\n[kubelet]\napi_server = \"{api}\"\nbootstrap_token = \"{TOKEN}\"\nca_cert_hash = \"{pin}\"\n"
    );
    if let Some(pem) = ca_pem {
        s.push_str(&format!("ca = \"\"\"\n{pem}\"\"\"\n"));
    }
    s
}

/// Apply `cfg` under `root`; (success, stdout, stderr).
fn apply(dir: &Path, root: &Path, cfg: &str) -> (bool, String, String) {
    let f = dir.join("config.toml");
    std::fs::write(&f, cfg).unwrap();
    let out = run_agent(&[
        "run",
        "--config",
        &f.to_string_lossy(),
        "--root",
        &root.to_string_lossy(),
        "--service-manager",
        "direct",
        "--retry-secs",
        "5",
    ]);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr(&out),
    )
}

fn yaml(path: &Path) -> Yaml {
    YamlLoader::load_from_str(&std::fs::read_to_string(path).unwrap())
        .unwrap()
        .remove(0)
}

#[test]
fn writes_a_kubeconfig_that_parses_and_pins_the_ca() {
    let d = tempfile::tempdir().unwrap();
    let ca = ca(d.path(), "k8s-ca", Alg::Rsa);
    let pin = openssl_pin(&ca.crt);
    let root = d.path().join("root");
    let (ok, out, err) = apply(
        d.path(),
        &root,
        &config("https://10.0.0.1:6443", &pin, Some(&ca.crt_pem())),
    );
    assert!(ok, "{err}");
    assert!(
        !out.contains(TOKEN) && !err.contains(TOKEN),
        "token printed"
    );

    let kc_path = root.join("etc/kubernetes/bootstrap-kubelet.conf");
    assert_eq!(std::fs::metadata(&kc_path).unwrap().mode() & 0o777, 0o600);
    let kc = yaml(&kc_path);
    assert_eq!(kc["kind"].as_str(), Some("Config"));
    let cluster = &kc["clusters"][0]["cluster"];
    assert_eq!(cluster["server"].as_str(), Some("https://10.0.0.1:6443"));
    let ca_pem = base64::engine::general_purpose::STANDARD
        .decode(cluster["certificate-authority-data"].as_str().unwrap())
        .unwrap();
    let written = d.path().join("from-kubeconfig.crt");
    std::fs::write(&written, &ca_pem).unwrap();
    assert_eq!(
        openssl_pin(&written),
        pin,
        "the kubeconfig's CA is not the pinned one"
    );
    assert_eq!(kc["users"][0]["user"]["token"].as_str(), Some(TOKEN));
    assert_eq!(kc["contexts"][0]["context"]["user"], kc["users"][0]["name"]);
    assert_eq!(kc["current-context"], kc["contexts"][0]["name"]);

    let kl = yaml(&root.join("var/lib/kubelet/config.yaml"));
    assert_eq!(kl["kind"].as_str(), Some("KubeletConfiguration"));
    assert_eq!(
        kl["apiVersion"].as_str(),
        Some("kubelet.config.k8s.io/v1beta1")
    );
    let ca_file = kl["authentication"]["x509"]["clientCAFile"]
        .as_str()
        .unwrap();
    assert_eq!(std::fs::read(ca_file).unwrap(), ca_pem);
    assert!(root.join("var/lib/atomic-firstboot/done").exists());

    // Rerun: the stamp makes it a no-op; without the stamp it is idempotent.
    let (ok, out, _) = apply(
        d.path(),
        &root,
        &config("https://10.0.0.1:6443", &pin, Some(&ca.crt_pem())),
    );
    assert!(ok && out.contains("already provisioned"), "{out}");
    std::fs::remove_file(root.join("var/lib/atomic-firstboot/done")).unwrap();
    let before = std::fs::metadata(&kc_path).unwrap().ino();
    let (ok, _, err) = apply(
        d.path(),
        &root,
        &config("https://10.0.0.1:6443", &pin, Some(&ca.crt_pem())),
    );
    assert!(ok, "{err}");
    assert_eq!(
        std::fs::metadata(&kc_path).unwrap().ino(),
        before,
        "unchanged file rewritten"
    );
}

#[test]
fn a_wrong_pin_is_refused_before_anything_is_written() {
    let d = tempfile::tempdir().unwrap();
    let ca = ca(d.path(), "k8s-ca", Alg::Ec);
    let other = common::ca(d.path(), "other-ca", Alg::Ec);
    let root = d.path().join("root");
    let (ok, _, err) = apply(
        d.path(),
        &root,
        &config(
            "https://10.0.0.1:6443",
            &openssl_pin(&other.crt),
            Some(&ca.crt_pem()),
        ),
    );
    assert!(!ok);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("atomic-firstboot: step preflight failed (field kubelet.ca_cert_hash): "),
        "{err}"
    );
    assert!(err.contains("refusing"), "{err}");
    assert!(
        !root.join("etc/hostname").exists(),
        "hostname applied before the pin check"
    );
    assert!(!root.join("etc/kubernetes").exists());
    assert!(!root.join("var/lib/atomic-firstboot/done").exists());
}

/// A TLS server on 127.0.0.1 presenting `chain`, for `conns` handshakes.
fn tls_server(chain: &[&Cert], key: &Cert, conns: usize) -> (u16, std::thread::JoinHandle<()>) {
    let pem: String = chain.iter().map(|c| c.crt_pem()).collect();
    let certs = firstboot::tls::parse_certs(pem.as_bytes()).unwrap();
    let key = firstboot::tls::parse_key(key.key_pem().as_bytes()).unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(firstboot::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let cfg = Arc::new(cfg);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let t = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut served = 0;
        while served < conns && Instant::now() < deadline {
            let Ok((mut sock, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            served += 1;
            sock.set_nonblocking(false).unwrap();
            sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut conn = rustls::ServerConnection::new(cfg.clone()).unwrap();
            while conn.is_handshaking() {
                if conn.complete_io(&mut sock).is_err() {
                    break;
                }
            }
            conn.send_close_notify();
            let _ = conn.complete_io(&mut sock);
        }
    });
    (port, t)
}

#[test]
fn the_ca_can_come_from_the_tls_handshake_if_pinned() {
    let d = tempfile::tempdir().unwrap();
    let ca = ca(d.path(), "api-ca", Alg::Ec);
    let pin = openssl_pin(&ca.crt);
    let good = leaf(d.path(), &ca, "api", &["127.0.0.1"], Alg::Ec);
    let wrong_name = leaf(d.path(), &ca, "api-elsewhere", &["10.9.9.9"], Alg::Ec);

    // Leaf + CA presented: the CA is pinned, the leaf verifies against it.
    let (port, t) = tls_server(&[&good, &ca], &good, 2);
    let root = d.path().join("r1");
    let (ok, _, err) = apply(
        d.path(),
        &root,
        &config(&format!("https://127.0.0.1:{port}"), &pin, None),
    );
    t.join().unwrap();
    assert!(ok, "{err}");
    assert_eq!(
        std::fs::read_to_string(root.join("etc/kubernetes/pki/ca.crt")).unwrap(),
        ca.crt_pem().replace("\r", "")
    );

    // Only the leaf presented: nothing matches the pin.
    let (port, t) = tls_server(&[&good], &good, 1);
    let root = d.path().join("r2");
    let (ok, _, err) = apply(
        d.path(),
        &root,
        &config(&format!("https://127.0.0.1:{port}"), &pin, None),
    );
    t.join().unwrap();
    assert!(!ok);
    assert!(
        err.contains("field kubelet.ca_cert_hash") && err.contains("give it in kubelet.ca"),
        "{err}"
    );
    assert!(!root.join("etc").exists());

    // Pinned CA presented, but the leaf does not name 127.0.0.1: refused.
    let (port, t) = tls_server(&[&wrong_name, &ca], &wrong_name, 2);
    let root = d.path().join("r3");
    let (ok, _, err) = apply(
        d.path(),
        &root,
        &config(&format!("https://127.0.0.1:{port}"), &pin, None),
    );
    t.join().unwrap();
    assert!(!ok);
    assert!(
        err.contains("does not verify against the pinned CA"),
        "{err}"
    );
    assert!(!root.join("etc").exists());
}

#[test]
fn a_ca_file_may_come_from_a_files_entry() {
    let d = tempfile::tempdir().unwrap();
    let ca = ca(d.path(), "k8s-ca", Alg::Ec);
    let root = d.path().join("root");
    let cfg = format!(
        "{}ca_file = \"/etc/pki/k8s-ca.pem\"\n[[files]]\npath = \"/etc/pki/k8s-ca.pem\"\ncontents = \"\"\"\n{}\"\"\"\n",
        config("https://10.0.0.1:6443", &openssl_pin(&ca.crt), None),
        ca.crt_pem()
    );
    let (ok, _, err) = apply(d.path(), &root, &cfg);
    assert!(ok, "{err}");
    assert_eq!(
        std::fs::read_to_string(root.join("etc/kubernetes/pki/ca.crt")).unwrap(),
        ca.crt_pem()
    );
    // The same with a wrong pin is refused in preflight, before the file is written.
    let other = common::ca(d.path(), "other", Alg::Ec);
    let root = d.path().join("root2");
    let (ok, _, err) = apply(
        d.path(),
        &root,
        &cfg.replace(&openssl_pin(&ca.crt), &openssl_pin(&other.crt)),
    );
    assert!(
        !ok && err.contains("step preflight failed (field kubelet.ca_cert_hash)"),
        "{err}"
    );
    assert!(!root.join("etc/pki/k8s-ca.pem").exists());
}
