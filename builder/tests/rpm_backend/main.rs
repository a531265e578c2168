//! The Fedora (RPM) backend against RPM repositories this test builds
//! itself (Fedora's mirrors cannot be reached here): rpmbuild makes a few
//! packages (files in /usr, /etc and /var, a dependency with an epoch, a
//! %post scriptlet), a throwaway GPG key signs them and the repository
//! metadata, createrepo_c indexes them, and a small HTTP server on
//! 127.0.0.1 serves them. Then real dnf resolves and installs through the
//! install stage, the shape and commit stages make an OSTree commit, and
//! the commit's contents are checked. Negative cases: a package signed by
//! an unknown key, unsigned packages, unsigned metadata, a missing package,
//! a lock that no longer resolves, an unreachable repository.
//!
//! Needs root and Debian's rpm, createrepo-c, gnupg, dnf, python3-dnf
//! (`scripts/install-deps`).

use std::path::Path;
use std::process::Command;

use atomicbuild::progress::Progress;
use atomicbuild::stage::Env;

fn sh(dir: &Path, script: &str) {
    let o = Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .current_dir(dir)
        .env("GNUPGHOME", dir.join("gnupg"))
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "fixture step failed:\n{script}\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

mod specs;
use specs::SPECS;

/// Build the packages and four repositories under `dir/repos`:
/// `signed` (fx-base, fx-app; packages and metadata signed by the fixture
/// key), `rogue` (fx-rogue signed by another key, metadata by the fixture
/// key), `unsigned-pkgs` (metadata signed, packages not), `unsigned`
/// (nothing signed).
fn make_fixture(dir: &Path) {
    std::fs::create_dir_all(dir.join("rpmbuild/SPECS")).unwrap();
    for (name, spec) in SPECS {
        std::fs::write(dir.join(format!("rpmbuild/SPECS/{name}.spec")), spec).unwrap();
    }
    sh(
        dir,
        r#"install -d -m 700 gnupg
gpg --batch --passphrase '' --quick-gen-key 'Fixture Key <fixture@example.invalid>' rsa2048 sign never 2>/dev/null
gpg --batch --passphrase '' --quick-gen-key 'Rogue Key <rogue@example.invalid>' rsa2048 sign never 2>/dev/null
gpg --armor --export fixture@example.invalid > RPM-GPG-KEY-fixture
for s in rpmbuild/SPECS/*.spec; do
  rpmbuild -bb --quiet --define "_topdir $PWD/rpmbuild" --define "_buildhost fixture" "$s"
done
mkdir -p repos/signed repos/rogue repos/unsigned-pkgs repos/unsigned
for r in signed unsigned-pkgs unsigned; do cp rpmbuild/RPMS/noarch/fx-base-* rpmbuild/RPMS/noarch/fx-app-* repos/$r/; done
cp rpmbuild/RPMS/noarch/fx-conflict-* rpmbuild/RPMS/noarch/fx-kernel-* rpmbuild/RPMS/noarch/fx-release-* repos/signed/
cp rpmbuild/RPMS/noarch/fx-rogue-* repos/rogue/
sign() { uid=$1; shift; rpmsign --addsign --define "_gpg_name $uid" --define "__gpg /usr/bin/gpg" "$@" </dev/null >/dev/null 2>&1; }
sign fixture@example.invalid repos/signed/*.rpm
sign rogue@example.invalid repos/rogue/*.rpm
for r in signed rogue unsigned-pkgs unsigned; do createrepo_c --quiet --no-database --checksum sha256 repos/$r; done
for r in signed rogue unsigned-pkgs; do
  gpg --batch --yes --local-user fixture@example.invalid --detach-sign --armor repos/$r/repodata/repomd.xml
done
"#,
    );
}

fn manifest(
    dir: &Path,
    name: &str,
    repo_url: &str,
    packages: &str,
) -> atomicbuild::manifest::Manifest {
    manifest_pinned(dir, name, repo_url, packages, "")
}

/// The fingerprint of the fixture key (`fixture`) or the rogue one.
fn fingerprint(dir: &Path, who: &str) -> String {
    let o = Command::new("gpg")
        .args(["--batch", "--with-colons", "--list-keys"])
        .arg(format!("{who}@example.invalid"))
        .env("GNUPGHOME", dir.join("gnupg"))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let fpr = out.lines().find(|l| l.starts_with("fpr:")).unwrap();
    fpr.split(':').nth(9).unwrap().to_string()
}

/// With `fingerprint` (when not empty) pinning the repository's key.
fn manifest_pinned(
    dir: &Path,
    name: &str,
    repo_url: &str,
    packages: &str,
    fingerprint: &str,
) -> atomicbuild::manifest::Manifest {
    let key = dir.join("RPM-GPG-KEY-fixture");
    let pin = if fingerprint.is_empty() {
        String::new()
    } else {
        format!("fingerprint = \"{fingerprint}\"\n")
    };
    let text = format!(
        r#"[image]
name = "{name}"
version = "1"

[base]
distro = "fedora"
release = "41"

[[base.repos]]
name = "fixture"
baseurl = "{repo_url}"
gpgkey = "file://{}"
{pin}
[packages]
include = [{packages}]

[ostree]
ref = "fixture/{name}"
osname = "fixture"
"#,
        key.display()
    );
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(&p, text).unwrap();
    atomicbuild::manifest::load(&p).unwrap()
}

fn env<'a>(work: &Path, progress: &'a Progress) -> Env<'a> {
    std::fs::create_dir_all(work).unwrap();
    Env {
        workdir: work.to_owned(),
        cache_dir: work.join("cache"),
        progress,
        use_cache: false,
        epoch: 1_700_000_000,
        tools: String::new(),
    }
}

fn install_err(
    m: &atomicbuild::manifest::Manifest,
    work: &Path,
    lock: Option<&atomicbuild::distro::lock::Lock>,
) -> String {
    let progress = Progress::new();
    let c = env(work, &progress);
    match atomicbuild::stage::install::run(&c, m, lock) {
        Ok(_) => panic!("installing {} should have failed", m.name),
        Err(e) => {
            let e = format!("{e:#}");
            eprintln!("refused as expected: {e}");
            e
        }
    }
}

fn ostree(repo: &Path, args: &[&str]) -> String {
    let o = Command::new("ostree")
        .arg(format!("--repo={}", repo.display()))
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "ostree {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn rpm_repository_to_ostree_commit_and_refusals() {
    let tmp = tempfile::Builder::new()
        .prefix("atomicbuild-rpm-test.")
        .tempdir_in("/var/tmp")
        .unwrap();
    let dir = tmp.path();
    make_fixture(dir);
    let port = testkit::serve_dir(dir.join("repos"));
    let url = |r: &str| format!("http://127.0.0.1:{port}/{r}/");

    // Resolve, install, shape, commit (the key pinned by its fingerprint).
    let fixture_fpr = fingerprint(dir, "fixture");
    let m = manifest_pinned(dir, "fx", &url("signed"), "\"fx-app\"", &fixture_fpr);
    let progress = Progress::new();
    let work = dir.join("work-ok");
    let c = env(&work, &progress);
    let installed = atomicbuild::stage::install::run(&c, &m, None)
        .expect("installing from the signed repository");
    let names: Vec<String> = installed
        .lock
        .packages
        .iter()
        .map(|p| format!("{}={}.{}", p.name, p.version, p.arch))
        .collect();
    assert_eq!(names, ["fx-app=2:0.5-3.noarch", "fx-base=0:1.0-1.noarch"]);
    assert!(
        installed
            .lock
            .packages
            .iter()
            .all(|p| p.origin == "fixture"),
        "the lock should name the repository: {:?}",
        installed.lock.packages
    );
    for p in &installed.lock.packages {
        let file = std::fs::read_dir(dir.join("repos/signed"))
            .unwrap()
            .filter_map(|e| e.ok())
            .find(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("{}-", p.name))
            })
            .unwrap()
            .path();
        let sum = Command::new("sha256sum").arg(&file).output().unwrap();
        assert!(
            String::from_utf8_lossy(&sum.stdout).starts_with(&p.sha256),
            "the lock's sha256 of {} is not the file's",
            p.name
        );
    }
    atomicbuild::stage::shape::run(&c).expect("shaping the RPM root");
    let commit = atomicbuild::stage::commit::run(&c, &m, &installed).expect("committing");
    let repo = &commit.repo;
    let ls = ostree(repo, &["ls", "-R", &commit.checksum]);
    // `MODE UID GID SIZE PATH [-> TARGET]`
    let paths: Vec<&str> = ls
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .collect();
    for want in [
        "/usr/bin/fx",
        "/usr/share/fx-app/README",
        "/usr/etc/fx/fx.conf",
        "/usr/lib/fx/post-ran",
        "/usr/lib/sysimage/rpm/rpmdb.sqlite",
    ] {
        assert!(
            paths.contains(&want),
            "{want} missing from the commit:\n{ls}"
        );
    }
    // Lean by default: no docs or man pages (tsflags=nodocs), no
    // translations (%_install_langs); the licence file stays.
    // (In a directory named by rpm's %_docdir_fmt: fx-app-0.5 here.)
    assert!(
        paths
            .iter()
            .any(|p| p.starts_with("/usr/share/licenses/fx-app") && p.ends_with("/LICENSE")),
        "the %license file should be installed:\n{ls}"
    );
    let saved = |what: &str| {
        installed
            .savings
            .iter()
            .find(|s| s.what.starts_with(what))
            .map(|s| (s.files, s.bytes))
    };
    assert_eq!(
        saved("documentation"),
        Some((1, 14)),
        "{:?}",
        installed.savings
    );
    assert_eq!(
        saved("man and info"),
        Some((1, 12)),
        "{:?}",
        installed.savings
    );
    assert_eq!(
        saved("translations"),
        Some((1, 3)),
        "{:?}",
        installed.savings
    );
    assert!(
        !paths.iter().any(|p| p.starts_with("/usr/share/doc/")),
        "no %doc file should be installed:\n{ls}"
    );
    for gone in [
        "/usr/share/man/man1/fx-app.1",
        "/usr/share/locale/de/LC_MESSAGES/fx-app.mo",
        "/etc",
        "/var/lib/fx/state",
        "/usr/lib/sysimage/rpm/rpmdb.sqlite-wal",
        "/var/cache/dnf",
        "/var/lib/dnf",
        "/usr/etc/dnf",
    ] {
        assert!(
            !paths.contains(&gone),
            "{gone} should not be in the commit:\n{ls}"
        );
    }
    assert_eq!(
        ostree(repo, &["cat", &commit.checksum, "/usr/lib/fx/post-ran"]),
        "fx-base post ran\n",
        "the %post scriptlet should have run in the root"
    );
    let tmpfiles = ostree(
        repo,
        &[
            "cat",
            &commit.checksum,
            "/usr/lib/tmpfiles.d/atomicbuild-var.conf",
        ],
    );
    assert!(
        tmpfiles.contains("/var/lib/fx"),
        "/var should be recorded as tmpfiles:\n{tmpfiles}"
    );
    assert!(
        tmpfiles.contains("/var/lib/rpm"),
        "/var/lib/rpm should link to the rpmdb in /usr:\n{tmpfiles}"
    );
    // rpm reads the committed database where Fedora's rpm looks for it.
    let checkout = dir.join("checkout");
    ostree(
        repo,
        &[
            "checkout",
            "--user-mode",
            &commit.checksum,
            &checkout.to_string_lossy(),
        ],
    );
    let q = Command::new("rpm")
        .arg(format!("--root={}", checkout.display()))
        .args(["--dbpath=/usr/lib/sysimage/rpm", "-q", "fx-app", "fx-base"])
        .output()
        .unwrap();
    assert!(
        q.status.success(),
        "rpm -q in the commit: {}",
        String::from_utf8_lossy(&q.stdout)
    );

    // The lock builds the same set again; a lock naming a package the
    // repository does not have is refused by name.
    let work = dir.join("work-lock");
    let c2 = env(&work, &progress);
    let again = atomicbuild::stage::install::run(&c2, &m, Some(&installed.lock))
        .expect("installing from the lock");
    assert_eq!(again.lock, installed.lock);
    let mut stale = installed.lock.clone();
    stale.packages[0].version = "2:0.6-1".into();
    let e = install_err(&m, &dir.join("work-stale"), Some(&stale));
    assert!(
        e.contains("lock no longer resolves") && e.contains("fx-app-2:0.6-1.noarch"),
        "{e}"
    );

    // Refusals, each before anything is committed.
    // (manifest name, repository, packages, what the error must name)
    let refusals: &[(&str, &str, &str, &[&str])] = &[
        (
            "rogue",
            "rogue",
            "\"fx-rogue\"",
            &["signature check failed", "fx-rogue", "Key ID"],
        ),
        (
            "unsigned-pkgs",
            "unsigned-pkgs",
            "\"fx-app\"",
            &["signature check failed", "fx-base", "unsigned"],
        ),
        (
            "unsigned",
            "unsigned",
            "\"fx-app\"",
            &["repository metadata", "repomd.xml.asc"],
        ),
        (
            "missing",
            "signed",
            "\"fx-app\", \"nosuchpkg\"",
            &["no package nosuchpkg"],
        ),
        (
            "conflict",
            "signed",
            "\"fx-app\", \"fx-conflict\"",
            &["cannot be installed", "fx-conflict", "fx-base"],
        ),
    ];
    for (name, repo, packages, needles) in refusals {
        let e = install_err(
            &manifest(dir, name, &url(repo), packages),
            &dir.join(format!("w-{name}")),
            None,
        );
        assert!(needles.iter().all(|n| e.contains(n)), "{name}: {e}");
    }
    // The repository's key pinned to another fingerprint.
    let rogue = fingerprint(dir, "rogue");
    let e = install_err(
        &manifest_pinned(dir, "pinned", &url("signed"), "\"fx-app\"", &rogue),
        &dir.join("w-pinned"),
        None,
    );
    let want = format!("has fingerprint {fixture_fpr}, not the pinned {rogue}");
    assert!(
        e.contains("repository \"fixture\"") && e.contains(&want),
        "{e}"
    );
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let t = std::time::Instant::now();
    let e = install_err(
        &manifest(
            dir,
            "unreachable",
            &format!("http://127.0.0.1:{closed}/signed/"),
            "\"fx-app\"",
        ),
        &dir.join("w-x"),
        None,
    );
    assert!(
        e.contains(&format!("127.0.0.1:{closed}")) && e.contains("4 times"),
        "{e}"
    );
    assert!(
        t.elapsed().as_secs() < 120,
        "an unreachable repository took {:?}",
        t.elapsed()
    );

    // The whole build, as a user runs it: a disk image and its metadata.
    let full = manifest(
        dir,
        "fx-full",
        &url("signed"),
        "\"fx-app\", \"fx-kernel\", \"fx-release\"",
    );
    let out = dir.join("out");
    let o = Command::new(env!("CARGO_BIN_EXE_atomicbuild"))
        .arg("build")
        .arg("--manifest")
        .arg(dir.join("fx-full.toml"))
        .arg("--output")
        .arg(&out)
        .arg("--workdir")
        .arg(dir.join("work-full"))
        .arg("--cache-dir")
        .arg(dir.join("cache-full"))
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success(),
        "building the fixture image failed:\n{err}"
    );
    let stem = full.stem();
    let raw = out.join(format!("{stem}.raw"));
    assert_eq!(std::fs::metadata(&raw).unwrap().len(), full.disk.size);
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join(format!("{stem}.json"))).unwrap()).unwrap();
    let pkgs: Vec<String> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{}={}",
                p["name"].as_str().unwrap(),
                p["version"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        pkgs,
        [
            "fx-app=2:0.5-3",
            "fx-base=0:1.0-1",
            "fx-kernel=0:6.1.0-1",
            "fx-release=0:45-1"
        ],
        "{}",
        meta["packages"]
    );
    assert_eq!(meta["kernel"]["version"], "6.1.0-fx");
    // The source package of each, from rpm's SOURCERPM (fx-app's epoch is
    // not in its source rpm's name), and the SBOM with rpm purls.
    let app = &meta["packages"][0];
    assert_eq!(
        (app["source"].as_str(), app["source_version"].as_str()),
        (Some("fx-app"), Some("0.5-3")),
        "{app}"
    );
    let sbom = out.join(meta["sbom"].as_str().unwrap());
    testkit::spdx_valid(&sbom).unwrap();
    let text = std::fs::read_to_string(&sbom).unwrap();
    assert!(
        text.contains("pkg:rpm/fedora/fx-app@2%3A0.5-3?arch=noarch&distro=fedora-41")
            && text.contains("pkg:rpm/fedora/fx-app@0.5-3?arch=source&distro=fedora-41"),
        "{text}"
    );
    let lock = std::fs::read_to_string(out.join(format!("{stem}.lock"))).unwrap();
    assert!(
        lock.contains("distro = \"fedora\"") && lock.contains("version = \"2:0.5-3\""),
        "{lock}"
    );
    // The partition table the metadata describes is on the disk.
    let parted = Command::new("sfdisk")
        .arg("--json")
        .arg(&raw)
        .output()
        .unwrap();
    let table: serde_json::Value = serde_json::from_slice(&parted.stdout).unwrap();
    assert_eq!(
        table["partitiontable"]["partitions"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
}
