//! OpenPGP keys for tests, made by GnuPG in a private home.

use std::path::{Path, PathBuf};
use std::process::Command;

fn gpg(home: &Path, args: &[&str]) -> String {
    let o = Command::new("gpg")
        .arg("--homedir")
        .arg(home)
        .arg("--batch")
        .args(args)
        .output()
        .expect("running gpg (package gnupg)");
    assert!(
        o.status.success(),
        "gpg {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A new signing key `name`: its armored secret and public key files in
/// `dir` (`NAME.sec.asc`, `NAME.asc`).
pub fn key(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let home = dir.join(format!("gnupg-{name}"));
    std::fs::create_dir_all(&home).unwrap();
    let uid = format!("atomicbuild test {name}");
    gpg(
        &home,
        &[
            "--passphrase",
            "",
            "--quick-gen-key",
            &uid,
            "ed25519",
            "sign",
            "never",
        ],
    );
    let (secret, public) = (
        dir.join(format!("{name}.sec.asc")),
        dir.join(format!("{name}.asc")),
    );
    std::fs::write(
        &secret,
        gpg(&home, &["--armor", "--export-secret-keys", &uid]),
    )
    .unwrap();
    std::fs::write(&public, gpg(&home, &["--armor", "--export", &uid])).unwrap();
    (secret, public)
}

/// `gpgv` holding only the public key `public` (armored) on `dir`'s
/// `SHA256SUMS` and `SHA256SUMS.asc`: whether it accepted, what it said.
pub fn gpgv(public: &Path, dir: &Path) -> (bool, String) {
    let ring = dir.with_extension("keyring.gpg");
    let o = Command::new("gpg")
        .args(["--batch", "--yes", "--output"])
        .arg(&ring)
        .arg("--dearmor")
        .arg(public)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = Command::new("gpgv")
        .arg("--keyring")
        .arg(&ring)
        .arg(dir.join("SHA256SUMS.asc"))
        .arg(dir.join("SHA256SUMS"))
        .output()
        .expect("running gpgv (package gpgv)");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}
