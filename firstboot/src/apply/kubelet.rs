//! The kubelet step: pin the cluster CA, then write the TLS-bootstrap
//! kubeconfig and the kubelet's configuration.
//!
//! The CA comes from `kubelet.ca`/`kubelet.ca_file`, or else from the API
//! server's TLS handshake (the presented certificate whose pin matches).
//! Either way it is refused unless SHA-256 of its SubjectPublicKeyInfo
//! equals `kubelet.ca_cert_hash` — the same pin `kubeadm join
//! --discovery-token-ca-cert-hash` checks. A CA taken from the handshake is
//! then used as the only trust anchor for a second handshake, which must
//! verify (the server's certificate chains to it and names the host).

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use base64::Engine;
use rustls::pki_types::CertificateDer;

use crate::config::Kubelet;
use crate::fsutil::{self, under, Attrs};
use crate::http::{self, Url};
use crate::retry::Retry;
use crate::x509;
use crate::yaml::quote;

/// The TLS-bootstrap kubeconfig.
pub const BOOTSTRAP_KUBECONFIG: &str = "/etc/kubernetes/bootstrap-kubelet.conf";
/// The kubelet's configuration.
pub const KUBELET_CONFIG: &str = "/var/lib/kubelet/config.yaml";
/// The cluster CA.
pub const CA_FILE: &str = "/etc/kubernetes/pki/ca.crt";

/// DER → PEM.
pub fn pem_encode(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

fn find_pinned<'a>(
    certs: &'a [CertificateDer<'static>],
    pin: &[u8; 32],
) -> Result<Option<&'a CertificateDer<'static>>> {
    for c in certs {
        if &x509::spki_sha256(c)? == pin {
            return Ok(Some(c));
        }
    }
    Ok(None)
}

/// The pinned CA certificate as PEM. `configured` is the PEM of
/// `kubelet.ca`, if given; otherwise the API server is asked.
pub fn resolve_ca(k: &Kubelet, configured: Option<&[u8]>, retry: &Retry) -> Result<String> {
    let want = x509::pin_string(&k.ca_cert_hash);
    if let Some(pem) = configured {
        let certs = crate::tls::parse_certs(pem).context("kubelet.ca")?;
        return match find_pinned(&certs, &k.ca_cert_hash)? {
            Some(c) => Ok(pem_encode(c)),
            None => bail!(
                "the CA certificate in kubelet.ca has pin {}, not the configured {want}; refusing it",
                x509::pin_string(&x509::spki_sha256(&certs[0])?)
            ),
        };
    }
    let url = &k.api_server;
    let chain = retry.run("API server TLS handshake", |dl| presented_chain(url, dl))?;
    let Some(ca) = find_pinned(&chain, &k.ca_cert_hash)? else {
        bail!(
            "none of the {} certificate(s) {} presented matches {want}; refusing \
             (if the server does not send its CA, give it in kubelet.ca)",
            chain.len(),
            url.authority()
        );
    };
    let tls = crate::tls::client_config(std::slice::from_ref(ca), None)?;
    retry
        .run("API server TLS verification", |dl| {
            http::connect(url, Some(&tls), dl)
                .map(drop)
                .map_err(|e| e.into_attempt())
        })
        .context("the API server's certificate does not verify against the pinned CA")?;
    Ok(pem_encode(ca))
}

/// The certificates the server at `url` presents (not trusted, only seen).
fn presented_chain(
    url: &Url,
    deadline: Instant,
) -> Result<Vec<CertificateDer<'static>>, crate::retry::Attempt> {
    let (cfg, rec) =
        crate::tls::ChainRecorder::config().map_err(crate::retry::Attempt::permanent)?;
    http::connect(url, Some(&cfg), deadline).map_err(|e| e.into_attempt())?;
    Ok(rec.chain())
}

/// The bootstrap kubeconfig.
pub fn render_kubeconfig(server: &Url, ca_pem: &str, token: &str) -> String {
    let ca_b64 = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let server = server.to_string();
    let server = server.strip_suffix('/').unwrap_or(&server);
    format!(
        "# Written by atomic-firstboot: kubelet TLS bootstrap.\n\
         apiVersion: v1\nkind: Config\n\
         clusters:\n- name: \"kubernetes\"\n  cluster:\n    server: {}\n    certificate-authority-data: {}\n\
         contexts:\n- name: \"tls-bootstrap-token-user@kubernetes\"\n  context:\n    cluster: \"kubernetes\"\n    user: \"tls-bootstrap-token-user\"\n\
         current-context: \"tls-bootstrap-token-user@kubernetes\"\n\
         users:\n- name: \"tls-bootstrap-token-user\"\n  user:\n    token: {}\n",
        quote(server),
        quote(&ca_b64),
        quote(token)
    )
}

/// The kubelet's configuration (client certificates rotated, webhook
/// authentication and authorization, the cluster CA for client certs).
pub fn render_kubelet_config(root: &Path) -> String {
    format!(
        "# Written by atomic-firstboot.\n\
         apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n\
         authentication:\n  anonymous:\n    enabled: false\n  webhook:\n    enabled: true\n  x509:\n    clientCAFile: {}\n\
         authorization:\n  mode: \"Webhook\"\n\
         cgroupDriver: \"systemd\"\nrotateCertificates: true\nserverTLSBootstrap: true\n\
         staticPodPath: {}\n",
        quote(&under(root, Path::new(CA_FILE)).to_string_lossy()),
        quote(&under(root, Path::new("/etc/kubernetes/manifests")).to_string_lossy()),
    )
}

/// Write the CA, the bootstrap kubeconfig (0600) and the kubelet config.
pub fn apply(k: &Kubelet, ca_pem: &str, root: &Path) -> Result<()> {
    let kubeconfig = render_kubeconfig(&k.api_server, ca_pem, k.bootstrap_token.expose());
    fsutil::write(
        &under(root, Path::new(CA_FILE)),
        ca_pem.as_bytes(),
        Attrs::root(0o644),
    )?;
    fsutil::write(
        &under(root, Path::new(BOOTSTRAP_KUBECONFIG)),
        kubeconfig.as_bytes(),
        Attrs::root(0o600),
    )?;
    fsutil::write(
        &under(root, Path::new(KUBELET_CONFIG)),
        render_kubelet_config(root).as_bytes(),
        Attrs::root(0o644),
    )?;
    Ok(())
}
