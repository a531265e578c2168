//! The test image runs containers. A preloaded image (`[[container_images]]`,
//! an archive of Debian's static busybox the test makes) is imported on
//! every boot and run on the image's CNI network by both guests, the
//! registry made unreachable from the guest first; the provisioned guest
//! also pulls a second image by digest from a real registry on this machine
//! (Debian's docker-registry with TLS and an htpasswd login, reached as
//! 10.0.2.2), its CA and login given only in user data, and runs it: the
//! container's output, an HTTP fetch from a server on this machine and a
//! write to its own file system reach the serial report. No name lookups:
//! every address is 10.0.2.2. A build whose preloaded archive is not the
//! pinned one fails naming the entry.

use std::path::Path;

use atomicbuild::vmtest::judge::BootReport;
use testkit::oci::busybox;

/// What the preloaded image is called in the guest's containerd.
pub const PRELOADED_REF: &str = "atomicbuild.test/preloaded:v1";

const USER: &str = "puller";
const PASSWORD: &str = "registry-s3cret-for-the-vm";

/// The `[[container_images]]` entry for the test manifest (its archive
/// written into `dir`).
pub fn preloaded_table(dir: &Path) -> String {
    let archive = dir.join("preloaded.oci.tar");
    let sha = busybox("preloaded into the image", "v1").write(&archive);
    format!(
        "\n[[container_images]]\nname = \"preloaded\"\narchive = {:?}\nsha256 = \"{sha}\"\nreference = \"{PRELOADED_REF}\"\n",
        archive.display().to_string()
    )
}

/// The registry on this machine, holding the image the guest pulls, and
/// a web server for the container's fetch.
pub struct HostRegistry {
    registry: testkit::registry::Registry,
    /// The image's manifest digest.
    digest: String,
}

impl HostRegistry {
    /// Start it in `dir` with `pki`'s `host` certificate (valid for
    /// 10.0.2.2), push the image through a real containerd, with settings
    /// written by the code the guest's agent uses, and give `guest` the
    /// registry in its user data, and what to pull.
    pub fn start(
        dir: &Path,
        pki: &testkit::Pki,
        guest: &mut crate::firstboot_vm::Guest,
    ) -> HostRegistry {
        let registry = testkit::registry::Registry::start(dir, pki, "host", USER, PASSWORD);
        let img = busybox("pulled from the registry", "v1");
        let archive = dir.join("hello.oci.tar");
        img.write(&archive);
        let settings = common::registries::Registry {
            host: registry.host.clone(),
            mirrors: vec![],
            ca_pem: Some(pki.pem("ca.crt")),
            insecure: false,
            credentials: Some(common::registries::Credentials {
                username: USER.into(),
                password: PASSWORD.into(),
            }),
        };
        let certs = dir.join("certs.d");
        common::registries::write(&certs, &settings).unwrap();
        let c = testkit::containerd::Containerd::start(&dir.join("ctrd"), "push");
        let base = format!("{}/test/hello", registry.host);
        for args in [
            vec![
                "images",
                "import",
                "--base-name",
                &base,
                archive.to_str().unwrap(),
            ],
            vec![
                "images",
                "push",
                "--hosts-dir",
                certs.to_str().unwrap(),
                &format!("{base}:v1"),
            ],
        ] {
            let o = c.ctr(&args);
            assert!(
                o.status.success(),
                "ctr {args:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        drop(c);
        let www = dir.join("www");
        std::fs::create_dir_all(&www).unwrap();
        std::fs::write(www.join("greeting"), "served-by-the-test-host\n").unwrap();
        let port = registry.host.rsplit(':').next().unwrap();
        // The guest reaches this machine's 127.0.0.1 as 10.0.2.2.
        let host = format!("10.0.2.2:{port}");
        guest.extra = format!(
            "\n[[registries]]\nhost = \"{host}\"\nca = \"\"\"\n{}\"\"\"\nusername = \"{USER}\"\npassword = \"{PASSWORD}\"\n",
            pki.pem("ca.crt")
        );
        // What the guest's fact pulls and fetches.
        guest.files.push((
            "/etc/atomicbuild-test/container.env".into(),
            format!(
                "REF={host}/test/hello@{}\nURL=http://10.0.2.2:{}/greeting\nREGISTRY_PORT={port}\n",
                img.digest,
                testkit::serve_dir(www)
            ),
        ));
        HostRegistry {
            digest: img.digest,
            registry,
        }
    }

    /// The registry served the manifest by digest to the logged-in user.
    pub fn check_served(&self) -> Vec<String> {
        let log = self.registry.log();
        let get = format!("GET /v2/test/hello/manifests/{}", self.digest);
        let served = log
            .lines()
            .any(|l| l.contains(&get) && l.contains("\" 200 "));
        let user = log.contains(&format!("auth.user.name={USER}"));
        if served && user {
            return vec![];
        }
        vec![format!(
            "the registry should have served {get} to {USER} (served: {served}, user seen: {user}); log tail:\n{}",
            common::cmd::tail(&log, 10)
        )]
    }
}

/// What the guest reported of its containers. A preloaded run in both
/// boots; the registry's image only where user data named the registry.
pub fn check_boot(r: &BootReport, provisioned: bool, bad: &mut Vec<String>) {
    let pre = r.fact("container-preloaded");
    for want in [
        "registry unreachable: pull refused",
        "preloaded-ran-at ",
        "inet 10.88.",
        "written-by-preloaded",
    ] {
        if !pre.contains(want) {
            bad.push(format!(
                "the preloaded container should report {want:?}: {pre}"
            ));
        }
    }
    let pulled = r.fact("container-registry");
    if !provisioned {
        if !pulled.contains("no registry in user data") {
            bad.push(format!("without user data nothing is pulled: {pulled}"));
        }
        return;
    }
    for want in [
        "pulled-by-digest",
        "registry-image-ran-at ",
        "served-by-the-test-host",
        "written-by-pulled",
    ] {
        if !pulled.contains(want) {
            bad.push(format!(
                "the pulled container should report {want:?}: {pulled}"
            ));
        }
    }
    if pulled.contains(PASSWORD) || pre.contains(PASSWORD) {
        bad.push("the registry password reached the report".into());
    }
    eprintln!(
        "containers: preloaded {}; pulled {}",
        first_line_with(&pre, "preloaded-ran-at"),
        first_line_with(&pulled, "registry-image-ran-at")
    );
}

fn first_line_with<'a>(text: &'a str, needle: &str) -> &'a str {
    text.lines().find(|l| l.contains(needle)).unwrap_or("?")
}

/// A build whose preloaded archive is another than the pinned one fails
/// naming the manifest's entry and both sums, with nothing under final
/// names (a variant of the test manifest in `tmp`, sharing `work`).
pub fn build_with_a_wrong_archive(manifest: &Path, tmp: &Path, work: &Path) {
    let dir = tmp.join("bad-preload");
    let out = dir.join("out");
    std::fs::create_dir_all(&dir).unwrap();
    // Another archive under the pinned sha256 of the test's preloaded one.
    busybox("not the pinned archive", "v1").write(&dir.join("other.oci.tar"));
    let variant = super::write_variant(manifest, &dir, |t| {
        t.lines()
            .map(|l| {
                if l.starts_with("archive = ") && l.ends_with("preloaded.oci.tar\"") {
                    "archive = \"other.oci.tar\"".to_string()
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    let o = super::build_cmd(&variant, &out, work).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "a wrong archive must fail the build");
    assert!(
        stderr.contains("container_images[0].sha256")
            && stderr.contains("other.oci.tar has sha256")
            && stderr.contains("not the pinned"),
        "the error should name the entry and both sums:\n{}",
        common::cmd::tail(&stderr, 8)
    );
    let left = super::final_names(&out);
    assert!(left.is_empty(), "left under final names: {left:?}");
}
