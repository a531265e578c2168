//! A signed apt repository made by the test, the way third-party
//! repositories such as the Kubernetes project's are laid out (a flat
//! repository: `Packages`, `Release`, `InRelease`, `Release.gpg` at its
//! top), holding a stand-in `kubelet` package: its unit and a binary that
//! checks its configuration exists and then stays up. Built with
//! `dpkg-deb`, `apt-ftparchive` and `gpg`; served from 127.0.0.1.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A fixture repository on disk.
pub struct AptFixture {
    /// The repository's top (serve this).
    pub repo: PathBuf,
    /// An unsigned copy (no InRelease, no Release.gpg).
    pub unsigned: PathBuf,
    /// The signing key's public half, armored.
    pub key: PathBuf,
    /// Its fingerprint.
    pub fingerprint: String,
    /// Another key (armored) that did not sign anything, and its fingerprint.
    pub other_key: (PathBuf, String),
}

const KUBELET: &str = r#"#!/bin/sh
# Stand-in for the kubelet (atomicbuild's tests): needs its configuration
# and a kubeconfig, as the real one does, then stays up.
for a in "$@"; do
  case "$a" in --config=*) config=${a#--config=} ;; esac
done
if [ ! -f "$config" ]; then
  echo "kubelet stand-in: no configuration at $config" >&2
  exit 1
fi
echo "kubelet stand-in: running with $config"
exec sleep infinity
"#;

const UNIT: &str = "[Unit]
Description=kubelet: The Kubernetes Node Agent (atomicbuild test stand-in)
Documentation=https://kubernetes.io/docs/
Wants=network-online.target
After=network-online.target

[Service]
ExecStart=/usr/bin/kubelet --config=/var/lib/kubelet/config.yaml --bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf --kubeconfig=/etc/kubernetes/kubelet.conf
Restart=always
RestartSec=10

[Install]
WantedBy=multi-user.target
";

fn sh(dir: &Path, script: &str) -> String {
    let o = Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .current_dir(dir)
        .env("GNUPGHOME", dir.join("gnupg"))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "apt fixture step failed:\n{script}\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn fingerprint(dir: &Path, uid: &str) -> String {
    sh(
        dir,
        &format!(
            "gpg --batch --with-colons --list-keys '{uid}' | awk -F: '/^fpr/ {{print $10; exit}}'"
        ),
    )
}

/// Build the repository in `dir` (created): version `version` of the
/// stand-in kubelet, signed by a fresh key.
pub fn kubelet_repo(dir: &Path, version: &str) -> AptFixture {
    std::fs::create_dir_all(dir.join("gnupg")).unwrap();
    let pkg = dir.join("pkg");
    for d in ["DEBIAN", "usr/bin", "usr/lib/systemd/system"] {
        std::fs::create_dir_all(pkg.join(d)).unwrap();
    }
    std::fs::write(
        pkg.join("DEBIAN/control"),
        format!(
            "Package: kubelet\nVersion: {version}\nArchitecture: amd64\nMaintainer: atomicbuild tests <tests@atomicbuild.invalid>\n\
             Section: admin\nPriority: optional\nDescription: stand-in kubelet for atomicbuild's tests\n"
        ),
    )
    .unwrap();
    std::fs::write(pkg.join("usr/bin/kubelet"), KUBELET).unwrap();
    std::fs::write(pkg.join("usr/lib/systemd/system/kubelet.service"), UNIT).unwrap();
    sh(
        dir,
        &format!(
            "chmod 700 gnupg; chmod 755 pkg/usr/bin/kubelet
             gpg --batch --passphrase '' --quick-gen-key 'atomicbuild apt fixture <apt@atomicbuild.invalid>' ed25519 sign never
             gpg --batch --passphrase '' --quick-gen-key 'atomicbuild other key <other@atomicbuild.invalid>' ed25519 sign never
             gpg --batch --armor --export apt@atomicbuild.invalid > repo-key.asc
             gpg --batch --armor --export other@atomicbuild.invalid > other-key.asc
             mkdir -p repo/pool
             dpkg-deb --root-owner-group -Zgzip -b pkg repo/pool/kubelet_{version}_amd64.deb >/dev/null
             cd repo
             apt-ftparchive packages . > Packages
             gzip -9nk Packages
             apt-ftparchive -o APT::FTPArchive::Release::Origin=atomicbuild-fixture release . > Release
             cp -r ../repo ../unsigned
             gpg --batch --local-user apt@atomicbuild.invalid --clearsign -o InRelease Release
             gpg --batch --local-user apt@atomicbuild.invalid -abs -o Release.gpg Release"
        ),
    );
    AptFixture {
        repo: dir.join("repo"),
        unsigned: dir.join("unsigned"),
        key: dir.join("repo-key.asc"),
        fingerprint: fingerprint(dir, "apt@atomicbuild.invalid"),
        other_key: (
            dir.join("other-key.asc"),
            fingerprint(dir, "other@atomicbuild.invalid"),
        ),
    }
}

impl AptFixture {
    /// `[[base.repos]]` for this repository served at `url`, with the key
    /// file `key` pinned to `fingerprint`.
    pub fn repo_toml(url: &str, key: &Path, fingerprint: &str) -> String {
        format!(
            "\n[[base.repos]]\nname = \"kubernetes\"\nuri = \"{url}\"\npath = \"/\"\narchitectures = [\"amd64\"]\nsigned_by = {:?}\nfingerprint = \"{fingerprint}\"\n",
            key.display().to_string()
        )
    }
}
