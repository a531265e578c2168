//! Registry settings from user data, used by a real containerd against a
//! real registry (Debian's docker-registry with TLS from a test CA and an
//! htpasswd login, on 127.0.0.1): the agent writes
//! `/etc/containerd/certs.d` under a root, and containerd, given only that
//! directory (`--hosts-dir`, as the CRI plugin's `config_path`), pushes
//! and pulls by digest with the CA and the login, directly and through a
//! mirror; without it the same pull is refused. The password is never
//! printed, and the file that holds it is root's only.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{run_config as apply, stderr};
use testkit::containerd::Containerd;
use testkit::oci::{image, Entry};
use testkit::registry::Registry;
use testkit::{free_port, Pki};

const PASSWORD: &str = "PASSWORD-s3cret-42";

fn said(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned() + &stderr(o)
}

#[test]
fn user_data_registries_let_containerd_pull_by_digest_with_ca_login_and_mirror() {
    let tmp = tempfile::Builder::new()
        .prefix("atomicbuild-reg.")
        .tempdir_in("/var/tmp")
        .unwrap();
    let pki = Pki::new(&tmp.path().join("pki"));
    pki.issue("registry", &["127.0.0.1"]);
    let reg = Registry::start(
        &tmp.path().join("reg"),
        &pki,
        "registry",
        "tester",
        PASSWORD,
    );
    let c = Containerd::start(&tmp.path().join("ctrd"), "k8s.io");
    let host = reg.host.clone();
    let root = tmp.path().join("root");
    std::fs::create_dir_all(root.join("etc/pki")).unwrap();
    std::fs::write(root.join("etc/pki/registry-ca.crt"), pki.pem("ca.crt")).unwrap();
    // A name nothing answers to: only its mirror (the registry) can serve it.
    let alias = format!("localhost:{}", free_port());
    let cfg = format!(
        "version = 1\n\
         [[registries]]\nhost = \"{host}\"\nca = \"\"\"{ca}\"\"\"\nusername = \"tester\"\npassword = \"{PASSWORD}\"\n\
         [[registries]]\nhost = \"{alias}\"\nmirrors = [\"https://{host}\"]\n\
         ca_file = \"/etc/pki/registry-ca.crt\"\nusername = \"tester\"\npassword = \"{PASSWORD}\"\n",
        ca = pki.pem("ca.crt")
    );
    let o = apply(tmp.path(), &root, &cfg, &["--dry-run"]);
    assert!(o.status.success(), "{}", said(&o));
    assert!(
        said(&o).contains(&format!("certs.d/{host}/hosts.toml")),
        "{}",
        said(&o)
    );
    assert!(!root.join("etc/containerd").exists(), "--dry-run wrote");
    let o = apply(tmp.path(), &root, &cfg, &[]);
    assert!(o.status.success(), "{}", said(&o));
    assert!(!said(&o).contains(PASSWORD), "{}", said(&o));
    let certs = root.join("etc/containerd/certs.d");
    let hosts = certs.join(&host).join("hosts.toml");
    let mode = std::fs::metadata(&hosts).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{} holds a login", hosts.display());
    let certs = certs.to_str().unwrap();

    // Push through the same settings (the registry's own entry may push).
    let img = image(
        &[Entry::File("greeting", b"hi\n", 0o644)],
        &["/greeting"],
        "v1",
    );
    let archive = tmp.path().join("bb.oci.tar");
    img.write(&archive);
    let tagged = format!("{host}/test/bb:v1");
    let base = format!("{host}/test/bb");
    let ok = |o: std::process::Output| {
        assert!(o.status.success(), "{}", said(&o));
        said(&o)
    };
    ok(c.ctr(&[
        "images",
        "import",
        "--base-name",
        &base,
        archive.to_str().unwrap(),
    ]));
    ok(c.ctr(&["images", "push", "--hosts-dir", certs, &tagged]));
    ok(c.ctr(&["images", "rm", "--sync", &tagged]));
    let content = ok(c.ctr(&["content", "ls", "-q"]));
    assert!(!content.contains(&img.digest), "still held: {content}");

    // Without the settings the pull is refused (unknown CA, no login) ...
    let pinned = format!("{host}/test/bb@{}", img.digest);
    let o = c.ctr(&["images", "pull", &pinned]);
    assert!(!o.status.success(), "pulled without the settings");
    // ... with them it is pulled by digest, over TLS, logged in.
    let manifest_get = format!("GET /v2/test/bb/manifests/{}", img.digest);
    let before = reg.log().matches(&manifest_get).count();
    ok(c.ctr(&["images", "pull", "--hosts-dir", certs, &pinned]));
    let log = reg.log();
    assert!(log.matches(&manifest_get).count() > before, "{log}");
    assert!(c
        .images()
        .iter()
        .any(|(n, d)| *n == pinned && *d == img.digest));
    ok(c.ctr(&["images", "rm", "--sync", &pinned]));

    // The alias is pulled through its mirror.
    let via = format!("{alias}/test/bb@{}", img.digest);
    ok(c.ctr(&["images", "pull", "--hosts-dir", certs, &via]));
    let log = reg.log();
    // containerd names the image's registry to a mirror in `ns=`.
    let ns = format!("ns={}", alias.replace(':', "%3A"));
    assert!(log.contains(&ns), "no {ns} in {log}");
    assert!(c
        .images()
        .iter()
        .any(|(n, d)| *n == via && *d == img.digest));
}
