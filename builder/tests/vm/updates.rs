//! The atomic-update scenario of the VM test: an update repository on this
//! machine (served on 127.0.0.1, which the guest reaches as 10.0.2.2),
//! versions 2, 3 and 4 of the test image built ahead, and, while the
//! provisioned guest runs on its own (nothing is sent into it), version 2
//! published (the guest pulls, reboots and keeps it), version 3 whose
//! required check fails published (the guest reboots into it, fails, GRUB
//! boots version 2 again, the agent marks 3 bad), version 4 signed by
//! another key published (refused for its signature).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::cmd::tail;

use super::{build_cmd, write_variant};

/// A static HTTP server for the repository.
pub struct Server {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Serve `dir` on 127.0.0.1.
pub fn serve(dir: &Path) -> Server {
    let port = crate::firstboot_vm::free_port();
    let child = Command::new("python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--directory",
        ])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting python3 -m http.server");
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the HTTP server did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Server { child, port }
}

/// One version of the test image, built.
pub struct Version {
    /// `[image] version`.
    pub number: u32,
    manifest: PathBuf,
    out: PathBuf,
}

/// The update repository and the versions to publish into it.
pub struct Updates {
    /// The archive repository.
    pub repo: PathBuf,
    /// Versions 2, 3 and 4.
    pub versions: Vec<Version>,
}

/// The group the guest's reboot slot is in.
const GROUP: &str = "vm-test";

/// What user data gives the agent: the repository on this machine, a short
/// poll interval, one try, and reboots coordinated through etcd (one slot;
/// first boot adds how to reach etcd).
pub fn settings(port: u16) -> String {
    format!("url = \"http://10.0.2.2:{port}/\"\npoll_interval = \"10s\"\ntries = 1\nstrategy = \"etcd-lock\"\n\n[lock]\ngroup = \"{GROUP}\"\nttl = \"10m\"\n")
}

/// Publish version 1 (the test image, `manifest` built into `out`) and build
/// versions 2 to 4 in `dir`: 2 changes a file of /usr, 3 ships a check.d
/// script that fails, 4 is signed with `foreign_key`.
pub fn prepare(
    manifest: &Path,
    out: &Path,
    work: &Path,
    dir: &Path,
    foreign_key: &Path,
) -> Updates {
    let repo = dir.join("repo");
    let t = Instant::now();
    publish(manifest, out, &repo);
    eprintln!(
        "published version 1 in {:.0}s; the whole commit in the archive repository: {} bytes",
        t.elapsed().as_secs_f64(),
        bytes_under(&repo.join("objects"))
    );
    let mut versions = Vec::new();
    for n in [2u32, 3, 4] {
        let vdir = dir.join(format!("v{n}"));
        let variant = write_variant(manifest, &vdir, |t| {
            let t = t.replace("version = \"1\"", &format!("version = \"{n}\""));
            match n {
                4 => t.replace(
                    &format!("{}", manifest.with_file_name("release.sec.asc").display()),
                    &foreign_key.display().to_string(),
                ),
                _ => t,
            }
        });
        std::fs::write(
            vdir.join("overlay/usr/share/atomicbuild-test/marker"),
            format!("v{n}\n"),
        )
        .unwrap();
        if n == 3 {
            let check = vdir.join("overlay/usr/lib/atomic-update/check.d/50-test-fails");
            std::fs::create_dir_all(check.parent().unwrap()).unwrap();
            std::fs::write(
                &check,
                "#!/bin/sh\necho 'version 3 is broken on purpose'\nexit 1\n",
            )
            .unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&check, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let vout = vdir.join("out");
        if n == 2 {
            lint_refuses_then_waives(&variant, &vout, work);
        }
        let o = build_cmd(&variant, &vout, work).output().unwrap();
        assert!(
            o.status.success(),
            "building version {n} failed:\n{}",
            tail(&String::from_utf8_lossy(&o.stderr), 30)
        );
        if n == 2 {
            let meta = std::fs::read_dir(&vout)
                .unwrap()
                .flatten()
                .map(|e| e.path())
                .find(|p| p.to_string_lossy().ends_with("-2.json"))
                .unwrap();
            let v: serde_json::Value =
                serde_json::from_slice(&std::fs::read(meta).unwrap()).unwrap();
            let w = &v["lint_waived"];
            assert!(
                w[0]["path"] == "/etc/ssl/private/shared.pem"
                    && w[0]["reason"] == "a test key, shared on purpose"
                    && w.as_array().map(|a| a.len()) == Some(1)
                    && v["setuid"].as_array().is_some_and(|a| a
                        .iter()
                        .any(|s| s["path"] == "/usr/bin/su" && s["mode"] == "4755")),
                "version 2's metadata should record the waived key and the setuid files: {w} {}",
                v["setuid"]
            );
        }
        versions.push(Version {
            number: n,
            manifest: variant,
            out: vout,
        });
    }
    Updates { repo, versions }
}

/// Version 2's overlay ships an SSH host key and a PEM private key: the
/// build fails at the image lint naming both and the waiver syntax, with
/// nothing under a final name. Then the host key goes and the PEM key is
/// waived (the waiver lands in the manifest `variant`; the build that
/// follows records it in the metadata).
fn lint_refuses_then_waives(variant: &Path, out: &Path, work: &Path) {
    let overlay = variant.with_file_name("overlay");
    let host_key = overlay.join("etc/ssh/ssh_host_ed25519_key");
    let pem = overlay.join("etc/ssl/private/shared.pem");
    for (p, text) in [
        (
            &host_key,
            "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
        ),
        (
            &pem,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        ),
    ] {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    let o = build_cmd(variant, out, work).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    let left: Vec<_> = std::fs::read_dir(out)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("-2."))
        .collect();
    assert!(
        !o.status.success()
            && err.contains("image lint: 2 findings")
            && err.contains("private-key: /etc/ssh/ssh_host_ed25519_key: an SSH host key, shipped by the overlay")
            && err.contains("private-key: /etc/ssl/private/shared.pem")
            && err.contains("[[lint.waive]]\n  rule = \"private-key\"")
            && left.is_empty(),
        "an overlay with a host key should fail the lint, leaving nothing ({left:?}):\n{}",
        tail(&err, 20)
    );
    std::fs::remove_file(&host_key).unwrap();
    let mut t = std::fs::read_to_string(variant).unwrap();
    t.push_str("\n[[lint.waive]]\nrule = \"private-key\"\nreason = \"a test key, shared on purpose\"\npaths = [\"/etc/ssl/private/shared.pem\"]\n");
    std::fs::write(variant, t).unwrap();
}

/// A copy of the repository (version 1) with version 2 published: for the
/// chroot scenario, which must not touch what the guest sees.
pub fn repo_with_version_2(u: &Updates, copy: &Path) -> PathBuf {
    let st = Command::new("cp")
        .arg("-a")
        .arg(&u.repo)
        .arg(copy)
        .status()
        .unwrap();
    assert!(st.success(), "copying the update repository failed");
    let v2 = u.versions.iter().find(|v| v.number == 2).unwrap();
    publish(&v2.manifest, &v2.out, copy);
    copy.to_owned()
}

/// The bytes of the files below `dir`.
fn bytes_under(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => bytes_under(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

/// `atomicbuild publish` of the build of `manifest` in `out` (its output
/// goes to the test's log).
fn publish(manifest: &Path, out: &Path, repo: &Path) {
    let o = Command::new(env!("CARGO_BIN_EXE_atomicbuild"))
        .arg("publish")
        .arg("--manifest")
        .arg(manifest)
        .arg("--output")
        .arg(out)
        .arg("--repo")
        .arg(repo)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success(),
        "publishing {} failed:\n{text}",
        manifest.display()
    );
    eprintln!("{}", text.trim());
}

/// Wait until the report has a line for which `found` holds (searching
/// from byte `from`); the position just past that line.
fn wait_for(
    report: &Path,
    from: usize,
    what: &str,
    limit: Duration,
    found: impl Fn(&str) -> bool,
) -> Result<usize, String> {
    let t = Instant::now();
    loop {
        let text = String::from_utf8_lossy(&std::fs::read(report).unwrap_or_default()).into_owned();
        let start = from.min(text.len());
        let new = &text[start..];
        // Go on from just past the line found: what follows it may already
        // be there.
        let mut pos = start;
        for l in new.split_inclusive('\n') {
            pos += l.len();
            if found(l.trim_end_matches('\n')) {
                eprintln!("[updates] {what} after {:.0}s", t.elapsed().as_secs_f64());
                return Ok(pos);
            }
        }
        if t.elapsed() > limit {
            return Err(format!(
                "{what}: not seen within {} s; the report's tail:\n{}",
                limit.as_secs(),
                tail(new, 40)
            ));
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

fn has(line: &str, prefix: &str, parts: &[&str]) -> bool {
    line.contains(prefix) && parts.iter().all(|p| line.contains(p))
}

/// The scenario, run while the provisioned guest runs: every failure.
pub fn scenario(u: &Updates, report: &Path, etcd: (&testkit::Pki, u16)) -> Vec<String> {
    match run_scenario(u, report, etcd) {
        Ok(()) => Vec::new(),
        Err(e) => vec![format!("updates: {e}")],
    }
}

fn run_scenario(u: &Updates, report: &Path, etcd: (&testkit::Pki, u16)) -> Result<(), String> {
    // Each step is at most a reboot and a check (about 2-4 minutes under
    // TCG); a guest that stops talking fails here, not at the suite's end.
    let limit = Duration::from_secs(8 * 60);
    let mut at = wait_for(report, 0, "the agent polls version 1", limit, |l| {
        has(l, "ABLOG", &["up to date (version 1)"])
    })?;
    let v = |n: u32| u.versions.iter().find(|v| v.number == n).unwrap();
    let t = Instant::now();
    publish(&v(2).manifest, &v(2).out, &u.repo);
    at = wait_for(report, at, "version 2 pulled", limit, |l| {
        has(l, "ABLOG", &["pulled version 2", "bytes"])
    })?;
    at = wait_for(
        report,
        at,
        "a reboot slot taken for version 2",
        limit,
        |l| has(l, "ABLOG", &["took reboot slot 0", "version 2"]),
    )?;
    at = wait_for(
        report,
        at,
        "version 2 booted with the new file and the /etc edit",
        limit,
        |l| {
            has(
                l,
                "ABBOOT",
                &["marker=v2", "etc-edit=hold", "console=ttyS0"],
            )
        },
    )?;
    at = wait_for(report, at, "version 2 marked good", limit, |l| {
        has(l, "ABLOG", &["version 2 is healthy: marked good"])
    })?;
    at = wait_for(
        report,
        at,
        "the slot released after the checks",
        limit,
        |l| {
            has(
                l,
                "ABLOG",
                &["released reboot slot 0: version 2 passed its health checks"],
            )
        },
    )?;
    // `atomic-update status` asks etcd who holds the group's slots.
    at = wait_for(
        report,
        at,
        "status: no slot held",
        Duration::from_secs(60),
        |l| has(l, "ABSTATUS", &["slots:    none held"]),
    )?;
    eprintln!(
        "[updates] publish of version 2 to marked good: {:.0}s",
        t.elapsed().as_secs_f64()
    );

    publish(&v(3).manifest, &v(3).out, &u.repo);
    at = wait_for(
        report,
        at,
        "version 3 booted by the counter's last try",
        limit,
        |l| {
            has(
                l,
                "ABBOOT",
                &["marker=v3", "boot_counter=0", "console=ttyS0"],
            )
        },
    )?;
    // GRUB found the counter at 0 and booted version 2 while version 3 was
    // still the first boot entry; the agent made 2 the default, 3 bad.
    let v3_booted = at;
    at = wait_for(report, at, "GRUB booted version 2 again", limit, |l| {
        has(l, "ABBOOT", &["marker=v2", "boot_counter=0"])
    })?;
    // Said in version 3's boot, or (when the agent rebooted before the
    // follower printed) replayed from the journal in the next boot.
    wait_for(
        report,
        v3_booted,
        "version 3's required check failed",
        Duration::from_secs(30),
        |l| {
            let failed = ["health check failed", "50-test-fails", "exit 1"];
            has(l, "ABLOG", &failed) || has(l, "ABPREV", &failed)
        },
    )?;
    at = wait_for(report, at, "the agent rolled back", limit, |l| {
        has(
            l,
            "ABLOG",
            &[
                "rolled back: GRUB booted version 2 after version 3 used its tries",
                "version 3 is marked bad",
            ],
        )
    })?;
    at = wait_for(
        report,
        at,
        "the slot released after the rollback",
        limit,
        |l| {
            has(
                l,
                "ABLOG",
                &["released reboot slot 0: rolled back from version 3 to version 2"],
            )
        },
    )?;
    at = wait_for(
        report,
        at,
        "status: version 3 bad, version 2 default",
        limit,
        |l| has(l, "ABSTATUS", &["bad:      version 3"]),
    )?;
    wait_for(report, at, "status: version 2 the default", limit, |l| {
        has(l, "ABSTATUS", &["default:  version 2"])
    })?;

    publish(&v(4).manifest, &v(4).out, &u.repo);
    at = wait_for(
        report,
        at,
        "version 4 refused for its signature",
        limit,
        |l| {
            has(l, "ABLOG", &["update failed: nothing taken"])
                && (l.contains("GPG") || l.to_lowercase().contains("signature"))
        },
    )?;
    wait_for(
        report,
        at,
        "nothing staged after the refusal",
        Duration::from_secs(60),
        |l| has(l, "ABSTATUS", &["staged:   -"]),
    )?;
    // etcd's history: the slot taken twice (versions 2 and 3), never by
    // two at once, and free now.
    let prefix = format!("/atomic-update/reboot/{GROUP}/");
    let (most, takes) = testkit::slot_history(etcd.0, etcd.1, &prefix);
    let left = testkit::etcdctl(etcd.0, etcd.1, &["get", "--prefix", &prefix, "--keys-only"])?;
    if (most, takes) != (1, 2) || !left.trim().is_empty() {
        return Err(format!(
            "etcd's history of the reboot slots: {takes} take(s), at most {most} at once (want 2, 1); held now: {left:?}"
        ));
    }
    let text = std::fs::read_to_string(report).unwrap_or_default();
    let warnings: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("ABLOG") && (l.contains("assertion") || l.contains("CRITICAL")))
        .collect();
    if !warnings.is_empty() {
        return Err(format!(
            "the agent logged GLib warnings:\n{}",
            warnings.join("\n")
        ));
    }
    Ok(())
}
