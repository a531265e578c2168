//! Hostname, users, files and units applied by the binary into a temporary
//! root (`--root`, `useradd --prefix`), rerun idempotently; downloads
//! verified by SHA-256 before anything is written; failures stop before any
//! change; `--dry-run` shows the plan without secrets.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use common::{run_agent, run_config as run, stderr, Req, Resp, Server};
use sha2::{Digest, Sha256};

const BLOB: &[u8] = b"downloaded bytes, long enough to be sent in several chunks\n";

fn fresh_root(dir: &Path) -> PathBuf {
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::create_dir_all(root.join("home")).unwrap();
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/bash\n").unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\nwheel:x:10:\n").unwrap();
    std::fs::write(root.join("etc/shadow"), "root:*:19000:0:99999:7:::\n").unwrap();
    std::fs::write(root.join("etc/gshadow"), "root:*::\nwheel:*::\n").unwrap();
    root
}

fn key(kind: &str, fill: u8) -> String {
    use base64::Engine;
    let mut blob = (kind.len() as u32).to_be_bytes().to_vec();
    blob.extend(kind.as_bytes());
    blob.extend(32u32.to_be_bytes());
    blob.extend([fill; 32]);
    format!(
        "{kind} {} user@laptop",
        base64::engine::general_purpose::STANDARD.encode(blob)
    )
}

fn config(url: &str, sha: &str, groups: &str) -> String {
    format!(
        r#"version = 1
hostname = "node-7"

[[users]]
name = "core"
groups = [{groups}]
ssh_authorized_keys = ["{k1}", "{k2}"]

[[files]]
path = "/etc/motd"
contents = "TOPSECRET welcome\n"
mode = "0640"
owner = "0:10"

[[files]]
path = "/var/lib/data/blob.bin"
url = "{url}"
sha256 = "{sha}"
mode = 0o600

[units]
enable = ["kubelet.service"]
start = ["containerd.service"]
"#,
        k1 = key("ssh-ed25519", 1),
        k2 = key("ssh-ed25519", 2),
    )
}

fn blob_server() -> Server {
    Server::start(|r: &Req| match r.path.as_str() {
        "/blob.bin?token=QUERYSECRET" => Resp {
            status: 200,
            body: BLOB.to_vec(),
            chunked: true,
        },
        _ => Resp::new(404, "no"),
    })
}

#[test]
fn applies_everything_and_reruns_idempotently() {
    let d = tempfile::tempdir().unwrap();
    let root = fresh_root(d.path());
    let srv = blob_server();
    let url = format!("{}/blob.bin?token=QUERYSECRET", srv.url);
    let cfg = config(&url, &hex::encode(Sha256::digest(BLOB)), "\"wheel\"");
    let o = run(d.path(), &root, &cfg, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        !out.contains("TOPSECRET") && !out.contains("QUERYSECRET"),
        "{out}"
    );

    assert_eq!(
        std::fs::read_to_string(root.join("etc/hostname")).unwrap(),
        "node-7\n"
    );
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    let line = passwd
        .lines()
        .find(|l| l.starts_with("core:"))
        .expect("core created");
    let uid: u32 = line.split(':').nth(2).unwrap().parse().unwrap();
    assert!(std::fs::read_to_string(root.join("etc/group"))
        .unwrap()
        .contains("wheel:x:10:core"));
    let ak = root.join("home/core/.ssh/authorized_keys");
    let md = std::fs::metadata(&ak).unwrap();
    assert_eq!((md.mode() & 0o777, md.uid()), (0o600, uid));
    assert_eq!(
        std::fs::metadata(root.join("home/core/.ssh"))
            .unwrap()
            .mode()
            & 0o777,
        0o700
    );
    assert_eq!(std::fs::read_to_string(&ak).unwrap().lines().count(), 2);

    let motd = std::fs::metadata(root.join("etc/motd")).unwrap();
    assert_eq!(
        (motd.mode() & 0o7777, motd.uid(), motd.gid()),
        (0o640, 0, 10)
    );
    let blob = root.join("var/lib/data/blob.bin");
    assert_eq!(std::fs::read(&blob).unwrap(), BLOB);
    assert_eq!(std::fs::metadata(&blob).unwrap().mode() & 0o7777, 0o600);
    let units =
        std::fs::read_to_string(root.join("var/lib/atomic-firstboot/direct-units.log")).unwrap();
    assert_eq!(units, "enable kubelet.service\nstart containerd.service\n");
    assert!(root.join("var/lib/atomic-firstboot/done").exists());

    // Rerun without the stamp: nothing duplicated, nothing downloaded again.
    std::fs::remove_file(root.join("var/lib/atomic-firstboot/done")).unwrap();
    let downloads = srv.requests().len();
    let o = run(d.path(), &root, &cfg, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(srv.requests().len(), downloads, "downloaded again");
    assert_eq!(std::fs::read_to_string(&ak).unwrap().lines().count(), 2);
    assert_eq!(
        passwd,
        std::fs::read_to_string(root.join("etc/passwd")).unwrap()
    );
}

#[test]
fn a_bad_download_writes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let root = fresh_root(d.path());
    let srv = blob_server();
    let url = format!("{}/blob.bin?token=QUERYSECRET", srv.url);
    let cfg = config(&url, &"ab".repeat(32), "\"wheel\"");
    let o = run(d.path(), &root, &cfg, &[]);
    let err = stderr(&o);
    assert!(!o.status.success());
    assert!(
        err.starts_with("atomic-firstboot: step files failed (field files[1].url): "),
        "{err}"
    );
    assert!(
        err.contains("SHA-256 mismatch") && !err.contains("QUERYSECRET"),
        "{err}"
    );
    let dir = root.join("var/lib/data");
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "partial download left in {}",
        dir.display()
    );
    assert!(!root.join("var/lib/atomic-firstboot/done").exists());
    // A 404 is permanent: one request, not a retry loop.
    let before = srv.requests().len();
    let o = run(
        d.path(),
        &root,
        &config(&format!("{}/gone", srv.url), &"ab".repeat(32), "\"wheel\""),
        &[],
    );
    assert!(stderr(&o).contains("answered HTTP 404"), "{}", stderr(&o));
    assert_eq!(srv.requests().len(), before + 1);
}

#[test]
fn a_missing_group_stops_before_any_change() {
    let d = tempfile::tempdir().unwrap();
    let root = fresh_root(d.path());
    let cfg = config(
        "http://127.0.0.1:9/x",
        &"ab".repeat(32),
        "\"wheel\", \"docker\"",
    );
    let o = run(d.path(), &root, &cfg, &[]);
    let err = stderr(&o);
    assert_eq!(err, "atomic-firstboot: step preflight failed (field users[0].groups[1]): group docker does not exist on this host\n");
    assert!(!root.join("etc/hostname").exists());
    assert!(!root.join("etc/motd").exists());
}

#[test]
fn dry_run_lists_actions_without_secrets() {
    let d = tempfile::tempdir().unwrap();
    let root = fresh_root(d.path());
    let cfg = config("https://files.example/blob?token=QUERYSECRET", &"ab".repeat(32), "\"wheel\"")
        + "[kubelet]\napi_server = \"https://10.0.0.1:6443\"\nbootstrap_token = \"abcdef.0123456789abcdef\"\n\
           ca_cert_hash = \"sha256:0000000000000000000000000000000000000000000000000000000000000000\"\n";
    let f = d.path().join("c.toml");
    std::fs::write(&f, &cfg).unwrap();
    for args in [
        vec!["--dry-run", "--config", f.to_str().unwrap()],
        vec!["run", "--dry-run", "--config", f.to_str().unwrap()],
    ] {
        let o = run_agent(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        for secret in ["TOPSECRET", "QUERYSECRET", "0123456789abcdef", "AAAA"] {
            assert!(!out.contains(secret), "{secret} in:\n{out}");
        }
        let steps: Vec<&str> = out
            .lines()
            .map(|l| l.split_once(". ").unwrap().1.split(':').next().unwrap())
            .collect();
        assert_eq!(
            steps,
            [
                "preflight",
                "hostname",
                "users",
                "files",
                "files",
                "kubelet",
                "kubelet",
                "units",
                "units",
                "stamp"
            ],
            "{out}"
        );
    }
    assert!(
        !root.join("etc/hostname").exists(),
        "dry run changed something"
    );
    let o = run_agent(&["validate", "--config", f.to_str().unwrap()]);
    assert!(o.status.success());
}
