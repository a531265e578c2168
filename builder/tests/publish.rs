//! Publishing into an update repository with real libostree and GnuPG:
//! signed commits and summaries, static deltas, downgrades and unsigned
//! publishing refused, and key rotation as hosts see it (a client repository
//! whose remote trusts the keys of a `gpgkeypath` directory, as images do):
//! old and new key both accepted while both are listed, a removed key
//! refused. And a build's `SHA256SUMS`, signed with the same key, checked
//! by `gpgv` holding only the public key.

use std::path::{Path, PathBuf};
use std::process::Command;

mod keys;

use atomicbuild::publish::{self, Publish};
use atomicbuild::signing::Signing;
use atomicbuild::sums;
use keys::key;

fn run(argv: &[&str], env: &[(&str, &Path)]) -> (bool, String) {
    let mut c = Command::new(argv[0]);
    c.args(&argv[1..]);
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", argv[0]));
    let text =
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    (o.status.success(), text)
}

fn ok(argv: &[&str]) -> String {
    let (ok, text) = run(argv, &[]);
    assert!(ok, "{}: {text}", argv.join(" "));
    text
}

/// A commit of a one-file tree with `version` in the bare repo `src`.
fn commit(src: &Path, version: &str, contents: &str) -> String {
    let tree = src.with_file_name(format!("tree-{version}"));
    std::fs::create_dir_all(tree.join("usr/share")).unwrap();
    std::fs::write(tree.join("usr/share/marker"), contents).unwrap();
    std::fs::write(tree.join("usr/share/big"), vec![7u8; 200_000]).unwrap();
    let repo = format!("--repo={}", src.display());
    let out = ok(&[
        "ostree",
        &repo,
        "commit",
        "--branch=build",
        "--no-bindings",
        "--subject=test",
        &format!("--add-metadata-string=version={version}"),
        &format!("--tree=dir={}", tree.display()),
    ]);
    out.trim().to_string()
}

/// A host-like repository trusting the keys in `keys` for remote `upd`.
fn client(dir: &Path, name: &str, archive: &Path, keys: &[&Path]) -> PathBuf {
    let repo = dir.join(format!("client-{name}"));
    let keydir = dir.join(format!("keys-{name}"));
    std::fs::create_dir_all(&keydir).unwrap();
    for (i, k) in keys.iter().enumerate() {
        std::fs::copy(k, keydir.join(format!("{i:02}.asc"))).unwrap();
    }
    let r = format!("--repo={}", repo.display());
    ok(&["ostree", &r, "init", "--mode=bare-user"]);
    ok(&[
        "ostree",
        &r,
        "remote",
        "add",
        "--set=gpg-verify=true",
        "--set=gpg-verify-summary=true",
        &format!("--set=gpgkeypath={}", keydir.display()),
        "upd",
        &format!("file://{}", archive.display()),
        "os/test",
    ]);
    repo
}

/// Pull `upd:os/test` into `repo`: the commit, or the error text.
fn pull(repo: &Path) -> Result<String, String> {
    let r = format!("--repo={}", repo.display());
    let (ok_, text) = run(&["ostree", &r, "pull", "upd", "os/test"], &[]);
    if !ok_ {
        return Err(text);
    }
    Ok(ok(&["ostree", &r, "rev-parse", "upd:os/test"])
        .trim()
        .to_string())
}

#[test]
fn publishing_signs_refuses_downgrades_and_rotates_keys() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let (a_sec, a_pub) = key(dir, "a");
    let (b_sec, b_pub) = key(dir, "b");
    let src = dir.join("src");
    ok(&[
        "ostree",
        &format!("--repo={}", src.display()),
        "init",
        "--mode=bare-user",
    ]);
    let archive = dir.join("archive");
    let (v1, v2) = (commit(&src, "1", "one"), commit(&src, "2", "two"));
    let key_a = Signing::KeyFile(a_sec).key().unwrap();
    let key_b = Signing::KeyFile(b_sec).key().unwrap();
    let publ = |commit: &str, version: &str, force: bool, key: &atomicbuild::signing::Key| {
        publish::publish(
            &Publish {
                commit,
                version,
                ref_: "os/test",
                source: &src,
                repo: &archive,
                force,
            },
            key,
        )
    };
    let first = publ(&v1, "1", false, &key_a).unwrap();
    assert!(first.changed && first.previous.is_none());
    // The commit carries A's signature in the archive.
    let shown = ok(&[
        "ostree",
        &format!("--repo={}", archive.display()),
        "show",
        &v1,
    ]);
    assert!(
        shown.contains("Found 1 signature") || shown.contains("Signature made"),
        "{shown}"
    );

    let both = client(dir, "ab", &archive, &[&a_pub, &b_pub]);
    let only_a = client(dir, "a", &archive, &[&a_pub]);
    let only_b = client(dir, "b", &archive, &[&b_pub]);
    assert_eq!(pull(&both).unwrap(), v1);
    assert_eq!(pull(&only_a).unwrap(), v1);
    // B alone does not trust what A signed.
    let e = pull(&only_b).unwrap_err();
    assert!(
        e.to_lowercase().contains("signature") || e.contains("GPG"),
        "{e}"
    );

    // Rotation: v2 is signed with B; hosts trusting both take it, a host
    // that trusts only the old key refuses it.
    let second = publ(&v2, "2", false, &key_b).unwrap();
    assert_eq!(
        second.previous.as_ref().map(|(c, _)| c.as_str()),
        Some(v1.as_str())
    );
    assert!(second.delta_bytes.unwrap() > 0, "{second:?}");
    assert_eq!(pull(&both).unwrap(), v2);
    assert_eq!(pull(&only_b).unwrap(), v2);
    let e = pull(&only_a).unwrap_err();
    assert!(
        e.to_lowercase().contains("signature") || e.contains("GPG"),
        "{e}"
    );

    // Moving backwards is refused, the same version with other contents
    // too; --force publishes anyway.
    let v1b = commit(&src, "1.5", "one and a half");
    let e = publ(&v1b, "1.5", false, &key_b).unwrap_err().to_string();
    assert!(e.contains("lower than the published 2"), "{e}");
    let e = publ(&v1b, "2", false, &key_b).unwrap_err().to_string();
    assert!(e.contains("already carries version 2"), "{e}");
    assert_eq!(
        publish::current(&archive, "os/test").unwrap().unwrap().0,
        v2,
        "a refused publish changed the branch"
    );
    // Publishing the published commit again changes nothing.
    assert!(!publ(&v2, "2", false, &key_b).unwrap().changed);
    assert!(publ(&v1b, "1.5", true, &key_b).unwrap().changed);
}

#[test]
fn publishing_without_a_signing_key_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let m = d.path().join("host.toml");
    std::fs::write(
        &m,
        "[image]\nname = \"x\"\nversion = \"1\"\n[base]\ndistro = \"debian\"\nrelease = \"bookworm\"\n[packages]\ninclude = [\"linux-image-amd64\", \"systemd-sysv\", \"ostree-boot\", \"dracut\"]\n[ostree]\nref = \"os/x\"\nosname = \"debian\"\n",
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_atomicbuild"))
        .args(["publish", "--manifest"])
        .arg(&m)
        .arg("--repo")
        .arg(d.path().join("repo"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("no [signing] key") && err.contains("unsigned"),
        "{err}"
    );
    assert!(!d.path().join("repo").exists(), "nothing may be created");
}

#[test]
fn signed_sums_verify_with_only_the_public_key_and_tampering_fails() {
    let d = tempfile::tempdir().unwrap();
    let (secret, public) = key(d.path(), "release");
    let out = d.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("x.raw"), b"image").unwrap();
    let text = sums::text(&[(
        "0cb8a0fe3c5d1d8f0e2d5ba0f5c7e1dc2b3d0b6f1ebd7c8a7f7f8e0a1a2b3c4d".into(),
        "x.raw".into(),
    )]);
    let k = Signing::KeyFile(secret).key().unwrap();
    sums::write(&out, &text, Some(&k)).unwrap();
    assert!(sums::present(&out, true) && !sums::present(&out, false));
    let (good, said) = keys::gpgv(&public, &out);
    assert!(good, "gpgv refused the signed sums: {said}");
    // One byte changed in the sums: refused.
    let mut t = std::fs::read(out.join(sums::FILE)).unwrap();
    t[0] ^= 1;
    std::fs::write(out.join(sums::FILE), t).unwrap();
    let (good, said) = keys::gpgv(&public, &out);
    assert!(!good && said.contains("BAD signature"), "{said}");
    // A foreign key's signature is no signature of ours.
    let (foreign, _) = key(d.path(), "foreign");
    let fk = Signing::KeyFile(foreign).key().unwrap();
    sums::write(&out, &text, Some(&fk)).unwrap();
    let (good, said) = keys::gpgv(&public, &out);
    assert!(!good, "gpgv accepted a foreign key's signature: {said}");
    // Rewritten without a key: the stale signature goes, the sums stay.
    sums::write(&out, &text, None).unwrap();
    assert!(sums::present(&out, false));
    assert_eq!(std::fs::read_to_string(out.join(sums::FILE)).unwrap(), text);
}
