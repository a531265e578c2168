use std::os::unix::fs::{chown, PermissionsExt};
use std::path::{Path, PathBuf};

use super::*;
use crate::model::Problems;

fn write(root: &Path, rel: &str, text: &str, mode: u32) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
}

const DECLARED: &str = "$6$salt$declared";

/// A shaped tree (/etc in usr/etc) as a clean build leaves it.
fn clean_tree(root: &Path) {
    write(
        root,
        "usr/etc/passwd",
        "root:x:0:0::/root:/bin/bash\nadmin:x:1000:1000::/home/admin:/bin/bash\n",
        0o644,
    );
    write(
        root,
        "usr/etc/group",
        "root:x:0:\nshadow:x:42:\nadmin:x:1000:\n",
        0o644,
    );
    write(
        root,
        "usr/etc/shadow",
        &format!("root:*:1::::::\nadmin:{DECLARED}:1::::::\nnobody:!:1::::::\n"),
        0o640,
    );
    chown(root.join("usr/etc/shadow"), Some(0), Some(42)).unwrap();
    write(root, "usr/etc/gshadow", "root:*::\n", 0o000);
    write(root, "usr/etc/machine-id", "", 0o444);
    write(
        root,
        "usr/etc/ssh/ssh_host_ed25519_key.pub",
        "ssh-ed25519 AAAA",
        0o644,
    );
    write(root, "usr/bin/passwd", "#!/bin/true\n", 0o4755);
    std::fs::create_dir_all(root.join("tmp")).unwrap();
    std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
}

fn lint(root: &Path, overlays: &[PathBuf], waivers: &[Waiver]) -> Report {
    let declared = [DECLARED.to_string()];
    let t = Tree {
        root,
        etc: "usr/etc",
        overlays,
        declared_hashes: &declared,
    };
    run(&t, waivers).unwrap()
}

#[test]
fn a_clean_tree_passes_and_its_setuid_files_are_listed() {
    let d = tempfile::tempdir().unwrap();
    clean_tree(d.path());
    let r = lint(d.path(), &[], &[]);
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
    assert_eq!(
        r.setuid,
        vec![Privileged {
            path: "/usr/bin/passwd".into(),
            mode: "4755".into(),
            uid: 0,
            gid: 0
        }]
    );
}

/// Every rule broken once (and the overlay's host key twice: in the
/// overlay and in the tree, reported once).
fn broken(root: &Path, overlay: &Path) {
    clean_tree(root);
    write(
        overlay,
        "etc/ssh/ssh_host_ed25519_key",
        "-----BEGIN OPENSSH PRIVATE KEY-----\nx\n",
        0o600,
    );
    write(
        root,
        "usr/etc/ssh/ssh_host_ed25519_key",
        "-----BEGIN OPENSSH PRIVATE KEY-----\nx\n",
        0o600,
    );
    write(
        root,
        "usr/etc/ssl/private/site.pem",
        "junk\n -----BEGIN EC PRIVATE KEY-----\nx\n",
        0o600,
    );
    write(
        root,
        "usr/etc/machine-id",
        "0123456789abcdef0123456789abcdef\n",
        0o444,
    );
    write(
        root,
        "usr/etc/shadow",
        "root::1::::::\nadmin:$6$other$hash:1::::::\n",
        0o644,
    );
    write(root, "srv/drop/file", "x", 0o666);
    std::fs::set_permissions(
        root.join("srv/drop"),
        std::fs::Permissions::from_mode(0o777),
    )
    .unwrap();
    write(root, "usr/share/stray", "x", 0o644);
    chown(root.join("usr/share/stray"), Some(4242), Some(0)).unwrap();
}

#[test]
fn every_rule_finds_what_it_names() {
    let d = tempfile::tempdir().unwrap();
    let (root, overlay) = (d.path().join("root"), d.path().join("overlay"));
    broken(&root, &overlay);
    let r = lint(&root, std::slice::from_ref(&overlay), &[]);
    let got: Vec<(String, String)> = r
        .findings
        .iter()
        .map(|f| (f.rule.clone(), f.path.clone()))
        .collect();
    let want = [
        ("private-key", "/etc/ssh/ssh_host_ed25519_key"),
        ("private-key", "/etc/ssl/private/site.pem"),
        ("machine-id", "/etc/machine-id"),
        ("password-hash", "/etc/shadow"),
        ("password-hash", "/etc/shadow"),
        ("world-writable", "/srv/drop"),
        ("world-writable", "/srv/drop/file"),
        ("unknown-owner", "/usr/share/stray"),
        ("shadow-mode", "/etc/shadow"),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(got, want, "{:#?}", r.findings);
    assert!(
        r.findings[0].detail.contains("overlay"),
        "{}",
        r.findings[0].detail
    );
    assert!(r.findings[1].detail.contains("EC PRIVATE KEY"));
    assert!(r.findings[3].detail.contains("root has an empty password"));
    assert!(r.findings[4].detail.contains("admin"));
    let msg = failure(Path::new("host.toml"), &r.findings);
    assert!(
        msg.contains("9 findings") && msg.contains("[[lint.waive]]\n  rule = \"private-key\""),
        "{msg}"
    );
}

#[test]
fn root_owns_files_even_in_a_tree_without_passwd() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "usr/share/a", "x", 0o644);
    write(d.path(), "usr/share/b", "x", 0o644);
    chown(d.path().join("usr/share/b"), Some(7), Some(0)).unwrap();
    let r = lint(d.path(), &[], &[]);
    let got: Vec<&str> = r.findings.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(got, ["/usr/share/b"], "{:#?}", r.findings);
}

#[test]
fn waivers_cover_a_rule_or_some_paths_and_stale_ones_are_reported() {
    let d = tempfile::tempdir().unwrap();
    let (root, overlay) = (d.path().join("root"), d.path().join("overlay"));
    broken(&root, &overlay);
    let w = |rule: &str, paths: &[&str]| Waiver {
        rule: rule.into(),
        reason: format!("because {rule}"),
        paths: paths.iter().map(|p| p.to_string()).collect(),
    };
    let waivers = [
        w("world-writable", &[]),
        w("private-key", &["/etc/ssl/private/site.pem"]),
        w("machine-id", &["/etc/other"]),
    ];
    let r = lint(&root, &[overlay], &waivers);
    let rules: Vec<&str> = r.findings.iter().map(|f| f.rule.as_str()).collect();
    assert_eq!(
        rules,
        [
            "private-key",
            "machine-id",
            "password-hash",
            "password-hash",
            "unknown-owner",
            "shadow-mode"
        ]
    );
    assert_eq!(r.waived.len(), 3);
    assert_eq!(r.waived[0].1, "because private-key");
    assert_eq!(r.unused, vec![waivers[2].clone()]);
}

#[test]
fn waivers_need_a_known_rule_a_reason_and_absolute_paths() {
    let raw: RawLint = toml::from_str(
        "[[waive]]\nrule = \"private-keys\"\nreason = \"x\"\n[[waive]]\nrule = \"machine-id\"\nreason = \"  \"\npaths = [\"etc/machine-id\"]\n",
    )
    .unwrap();
    let mut p = Problems::new();
    let w = check(raw, &mut p.scope("lint"));
    assert_eq!(w.len(), 2);
    let v = p.into_vec();
    let fields: Vec<&str> = v.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(
        fields,
        [
            "lint.waive[0].rule",
            "lint.waive[1].reason",
            "lint.waive[1].paths[0]"
        ]
    );
    assert!(v[0].1.contains("private-key, machine-id"), "{}", v[0].1);
}
