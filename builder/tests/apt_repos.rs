//! Third-party apt repositories (`[[base.repos]]` on a Debian base) are
//! refused before anything is installed when their key or signature is
//! not the pinned one, each error naming the repository, and nothing
//! appears under a final name. The repository is real: built by the test
//! with dpkg-deb, apt-ftparchive and gpg (testkit::apt) and served on
//! 127.0.0.1. The accepted case (a package installed from it, its origin
//! in the lock, its unit wired) is in qemu_boot, whose image carries it.
//!
//! Needs root and dpkg-dev, gnupg, mmdebstrap (`scripts/install-deps`).

use std::path::Path;
use std::process::Command;

use testkit::apt::{kubelet_repo, AptFixture};

fn manifest(dir: &Path, repo: &str) -> std::path::PathBuf {
    let text = format!(
        "[image]\nname = \"apt-repos\"\nversion = \"1\"\n\n[base]\ndistro = \"debian\"\nrelease = \"bookworm\"\n{repo}\n\
         [packages]\ninclude = [\"linux-image-amd64\", \"systemd-sysv\", \"ostree-boot\", \"dracut\", \"kubelet\"]\n\n\
         [disk]\nsize = \"4GiB\"\n\n[ostree]\nref = \"debian/test\"\nosname = \"debian\"\n"
    );
    let p = dir.join("host.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// Build; must fail with every `expect` substring, leaving no output file.
fn refused(dir: &Path, repo: &str, expect: &[&str]) {
    let mf = manifest(dir, repo);
    let out = dir.join("out");
    let o = Command::new(env!("CARGO_BIN_EXE_atomicbuild"))
        .arg("build")
        .arg("--manifest")
        .arg(&mf)
        .arg("--output")
        .arg(&out)
        .arg("--workdir")
        .arg(dir.join("work"))
        .arg("--cache-dir")
        .arg(dir.join("cache"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    eprintln!(
        "--- refused as expected:\n{}",
        err.trim_end().lines().last().unwrap_or_default()
    );
    assert!(
        !o.status.success(),
        "the build was accepted:\n{repo}\n{err}"
    );
    for e in expect {
        assert!(err.contains(e), "expected {e:?} in:\n{err}");
    }
    let left: Vec<_> = std::fs::read_dir(&out)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "a refused build left {left:?} in {}",
        out.display()
    );
}

#[test]
fn unsigned_wrong_key_pin_mismatch_and_tampered_repositories_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let fx = kubelet_repo(&tmp.path().join("fx"), "1.34.0-1.1");
    let signed = format!("http://127.0.0.1:{}/", testkit::serve_dir(fx.repo.clone()));
    let unsigned = format!(
        "http://127.0.0.1:{}/",
        testkit::serve_dir(fx.unsigned.clone())
    );
    let (other_key, other_fpr) = &fx.other_key;
    let named = "repository \"kubernetes\"";

    // No InRelease, no Release.gpg.
    let repo = AptFixture::repo_toml(&unsigned, &fx.key, &fx.fingerprint);
    refused(tmp.path(), &repo, &[named, "is not signed", &unsigned]);

    // A key that is what the manifest pins, but did not sign the repository.
    let repo = AptFixture::repo_toml(&signed, other_key, other_fpr);
    refused(
        tmp.path(),
        &repo,
        &[named, "signed by another key than the pinned", other_fpr],
    );

    // The repository's own key, pinned to another fingerprint.
    let repo = AptFixture::repo_toml(&signed, &fx.key, other_fpr);
    refused(
        tmp.path(),
        &repo,
        &[
            named,
            &format!(
                "has fingerprint {}, not the pinned {other_fpr}",
                fx.fingerprint
            ),
        ],
    );

    // InRelease changed after signing.
    let tampered = tmp.path().join("tampered");
    std::fs::create_dir(&tampered).unwrap();
    let inrelease = std::fs::read_to_string(fx.repo.join("InRelease")).unwrap();
    std::fs::write(
        tampered.join("InRelease"),
        inrelease.replacen("Origin: atomicbuild-fixture", "Origin: somebody-else", 1),
    )
    .unwrap();
    let url = format!("http://127.0.0.1:{}/", testkit::serve_dir(tampered));
    let repo = AptFixture::repo_toml(&url, &fx.key, &fx.fingerprint);
    refused(tmp.path(), &repo, &[named, "signature is bad"]);

    // A key URL that does not exist.
    let repo = AptFixture::repo_toml(&signed, &fx.key, &fx.fingerprint).replace(
        &format!("{:?}", fx.key.display().to_string()),
        &format!("\"{signed}missing.asc\""),
    );
    refused(
        tmp.path(),
        &repo,
        &[named, "missing.asc does not exist (HTTP 404)"],
    );
}
