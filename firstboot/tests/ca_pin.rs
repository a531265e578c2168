//! The CA pin (SHA-256 of the SubjectPublicKeyInfo DER) equals what
//! `openssl x509 -pubkey | openssl pkey -pubin -outform DER | sha256sum`
//! computes, for RSA and EC certificates, v3 and v1, PEM and DER input —
//! through the library and through `atomic-firstboot ca-hash`.

mod common;

use common::{ca, leaf, openssl, openssl_pin, run_agent, Alg};

fn check(cert: &std::path::Path) {
    let want = openssl_pin(cert);
    assert_eq!(
        firstboot::ca_hash(cert).unwrap(),
        want,
        "{}",
        cert.display()
    );
    let out = run_agent(&["ca-hash", "--cert", &cert.to_string_lossy()]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), want);
}

#[test]
fn pins_match_openssl_for_rsa_and_ec() {
    let d = tempfile::tempdir().unwrap();
    for (alg, name) in [(Alg::Rsa, "rsa"), (Alg::Ec, "ec")] {
        let c = ca(d.path(), &format!("{name}-ca"), alg);
        check(&c.crt);
        let l = leaf(d.path(), &c, &format!("{name}-leaf"), &["127.0.0.1"], alg);
        check(&l.crt);
        // DER input too.
        let der = d.path().join(format!("{name}.der"));
        openssl(
            d.path(),
            &[
                "x509",
                "-in",
                &c.crt.to_string_lossy(),
                "-outform",
                "DER",
                "-out",
                &der.to_string_lossy(),
            ],
        );
        assert_eq!(firstboot::ca_hash(&der).unwrap(), openssl_pin(&c.crt));
    }
    // Different keys, different pins.
    let a = ca(d.path(), "a", Alg::Ec);
    let b = ca(d.path(), "b", Alg::Ec);
    assert_ne!(
        firstboot::ca_hash(&a.crt).unwrap(),
        firstboot::ca_hash(&b.crt).unwrap()
    );
}

#[test]
fn v1_certificates_without_a_version_field() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    openssl(
        dir,
        &[
            "req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=v1", "-keyout", "v1.key",
            "-out", "v1.csr",
        ],
    );
    openssl(
        dir,
        &[
            "x509", "-req", "-in", "v1.csr", "-signkey", "v1.key", "-days", "1", "-out", "v1.crt",
        ],
    );
    let text = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(dir.join("v1.crt"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("Version: 1 (0x0)"),
        "openssl made no v1 certificate:\n{text}"
    );
    check(&dir.join("v1.crt"));
}

#[test]
fn ca_hash_refuses_garbage() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("junk.pem");
    std::fs::write(
        &p,
        "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let out = run_agent(&["ca-hash", "--cert", &p.to_string_lossy()]);
    assert!(!out.status.success());
    let err = common::stderr(&out);
    assert!(
        err.starts_with("atomic-firstboot: step ca-hash failed (field --cert): "),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}
