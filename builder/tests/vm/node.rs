//! The test image as a Kubernetes node: a stand-in `kubelet` from a
//! signed apt repository this test builds and serves on 127.0.0.1
//! (`[[base.repos]]`, its key pinned by fingerprint), containerd's CRI
//! configuration, and the SELinux labels its commit carries (the image
//! installs Debian's reference policy and boots with `security=selinux`).
//! What the guests report about these is judged in `report`.

use std::path::{Path, PathBuf};
use std::process::Command;

use atomicbuild::vmtest::judge::BootReport;

/// The kubelet package's version in the fixture repository.
pub const KUBELET_VERSION: &str = "1.34.0-1.1";

/// Build the fixture repository under `dir`, serve it for the rest of the
/// process, and return the `[[base.repos]]` table that uses it.
pub fn kubelet_repo(dir: &Path) -> String {
    let fx = testkit::apt::kubelet_repo(&dir.join("apt-fixture"), KUBELET_VERSION);
    let url = format!("http://127.0.0.1:{}/", testkit::serve_dir(fx.repo.clone()));
    testkit::apt::AptFixture::repo_toml(&url, &fx.key, &fx.fingerprint)
}

/// The test case's manifest with `[updates]` and `[signing]` for keys made
/// for this run (the release key signs, the image trusts it), and the
/// stand-in kubelet from the fixture repository.
pub fn test_manifest(dir: &Path) -> PathBuf {
    let case = super::repo_root().join("qemu-tests/001_k8s_host/host.toml");
    let (secret, public) = crate::keys::key(dir, "release");
    let repo = kubelet_repo(dir);
    let preloaded = super::containers::preloaded_table(dir);
    super::write_variant(&case, dir, |t| {
        let t = t.replace("\"sudo\",", "\"sudo\", \"kubelet\",");
        assert!(
            t.contains("\"kubelet\""),
            "the case's package list changed shape"
        );
        format!(
            "{t}\n[updates]\nurl = \"http://10.0.2.2:9/unused\"\nkeys = [{:?}]\npoll_interval = \"1h\"\ntries = 1\n\n[signing]\nkey_file = {:?}\n{repo}{preloaded}",
            public.display().to_string(),
            secret.display().to_string()
        )
    })
}

/// The lock names where each package came from: the kubelet from the
/// fixture repository, the rest from Debian.
pub fn check_lock(lock: &atomicbuild::distro::lock::Lock) -> Vec<String> {
    let mut bad = Vec::new();
    let origin = |name: &str| {
        lock.packages
            .iter()
            .find(|p| p.name == name)
            .map(|p| (p.version.clone(), p.origin.clone()))
    };
    let want = Some((KUBELET_VERSION.to_string(), "kubernetes".to_string()));
    if origin("kubelet") != want {
        bad.push(format!(
            "the lock should pin kubelet {want:?}, has {:?}",
            origin("kubelet")
        ));
    }
    let others: Vec<&str> = lock
        .packages
        .iter()
        .filter(|p| p.name != "kubelet" && p.origin != "debian")
        .map(|p| p.name.as_str())
        .collect();
    if !others.is_empty() {
        bad.push(format!("these should come from \"debian\": {others:?}"));
    }
    bad
}

/// `ostree ls -X` of `path` in `commit` of the shared object store.
fn xattrs(commit: &str, path: &str) -> String {
    let store = atomicbuild::pipeline::default_cache_dir().join("repo");
    let o = Command::new("ostree")
        .arg(format!("--repo={}", store.display()))
        .args(["ls", "-X", commit, path])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}

/// The commit carries the policy's labels before any boot: files under
/// /usr with their type, /usr/etc as /etc is labelled, directories too.
pub fn check_labels(commit: &str) -> Vec<String> {
    let mut bad = Vec::new();
    for (path, label) in [
        ("/usr/bin/bash", "system_u:object_r:shell_exec_t:s0"),
        ("/usr/sbin/sshd", "system_u:object_r:sshd_exec_t:s0"),
        ("/usr/lib/modules", "system_u:object_r:modules_object_t:s0"),
        ("/usr/etc/passwd", "system_u:object_r:etc_t:s0"),
    ] {
        let x = xattrs(commit, path);
        if !x.contains("security.selinux") || !x.contains(label) {
            bad.push(format!(
                "{path} should carry security.selinux {label}…: {x}"
            ));
        }
    }
    bad
}

/// The kubelet stays off without its files (no crash loop) and runs once
/// atomic-firstboot wrote them; containerd's effective configuration is
/// the builder's; SELinux is on with the commit's labels and nothing was
/// relabelled.
pub fn check_boot(r: &BootReport, provisioned: bool, bad: &mut Vec<String>) {
    let k = r.fact("kubelet");
    let ok = if provisioned {
        k.contains("ActiveState=active")
            && k.contains("kubelet stand-in: running with /var/lib/kubelet/config.yaml")
    } else {
        k.contains("ActiveState=inactive")
            && k.contains("ConditionResult=no")
            && k.contains("NRestarts=0")
    };
    if !ok {
        let want = if provisioned {
            "running with its configuration"
        } else {
            "inactive, its condition unmet, never restarted"
        };
        bad.push(format!("the kubelet should be {want}: {k}"));
    }
    let denials = r.fact("selinux-denials");
    eprintln!(
        "SELinux ({}): {} AVC denials; by process, permission and types:\n{denials}",
        if provisioned {
            "provisioned boot"
        } else {
            "plain boot"
        },
        denials.lines().next().unwrap_or("?")
    );
}
