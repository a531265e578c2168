//! `scripts/install-deps` on fresh machines: throw-away bookworm roots made
//! with mmdebstrap, in the starting states a newcomer's machine can be in
//! (no QEMU at all; `qemu-utils` 10.0 from bookworm-backports, as the
//! machine images ship it; QEMU 7.2 from bookworm), each running the real
//! script with `--simulate` (apt resolves every package of the real install
//! with `apt-get -s` in the one transaction a real run makes; nothing is
//! installed, the Python venvs are skipped).
//!
//! Needs root, mmdebstrap and Debian's archive. This machine's own state
//! proves nothing: what was installed here by hand stays installed.

use std::path::{Path, PathBuf};
use std::process::Command;

const MIRROR: &str = "http://deb.debian.org/debian";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

/// The script under test (`ATOMICBUILD_INSTALL_DEPS` points elsewhere, to
/// show an older script failing).
fn script() -> PathBuf {
    std::env::var_os("ATOMICBUILD_INSTALL_DEPS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("scripts/install-deps"))
}

fn run(c: &mut Command) -> (bool, String) {
    let o = c.output().unwrap_or_else(|e| panic!("running {c:?}: {e}"));
    let text =
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    (o.status.success(), text)
}

fn in_root(root: &Path, shell: &str) -> (bool, String) {
    run(Command::new("chroot")
        .arg(root)
        .args(["sh", "-c", shell])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"))
}

/// A minimal bookworm root with the host's resolver.
fn fresh_root(dir: &Path) -> PathBuf {
    let root = dir.join("base");
    let (ok, text) = run(Command::new("mmdebstrap")
        .args(["--variant=minbase", "--mode=root", "--quiet"])
        .args(["--skip=cleanup/apt/lists", "bookworm"])
        .arg(&root)
        .arg(MIRROR));
    assert!(ok, "mmdebstrap failed:\n{text}");
    std::fs::copy("/etc/resolv.conf", root.join("etc/resolv.conf")).unwrap();
    root
}

/// A copy of `base` in which `setup` ran (a starting state).
fn state(base: &Path, name: &str, setup: &str) -> PathBuf {
    let root = base.with_file_name(name);
    let (ok, text) = run(Command::new("cp").arg("-a").arg(base).arg(&root));
    assert!(ok, "{text}");
    if !setup.is_empty() {
        let (ok, text) = in_root(&root, setup);
        assert!(ok, "setting up {name} failed:\n{text}");
    }
    root
}

/// Run the script with --simulate inside `root`; return (success, output).
fn simulate(root: &Path) -> (bool, String) {
    std::fs::copy(script(), root.join("install-deps")).unwrap();
    in_root(root, "sh /install-deps --simulate")
}

/// The version apt would install (or upgrade to) for `package`, from
/// `Inst NAME (VERSION ...)` or `Inst NAME [OLD] (VERSION ...)` lines.
fn inst_version(out: &str, package: &str) -> Option<String> {
    let prefix = format!("Inst {package} ");
    out.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|rest| rest.split_once('(').map(|(_, v)| v))
        .and_then(|rest| rest.split_whitespace().next())
        .map(str::to_string)
}

#[test]
fn install_deps_resolves_on_fresh_bookworm_roots() {
    std::fs::create_dir_all("/var/tmp").unwrap();
    let tmp = tempfile::Builder::new()
        .prefix("atomicbuild-install-deps.")
        .tempdir_in("/var/tmp")
        .unwrap();
    let base = fresh_root(tmp.path());
    let backports = format!("echo 'deb {MIRROR} bookworm-backports main' > /etc/apt/sources.list.d/bpo.list && apt-get update -q && ");
    // (name, setup, the QEMU major version the script must choose)
    let cases = [
        ("plain", String::new(), "1:7.2"),
        (
            "backports-qemu-utils",
            format!("{backports}apt-get install -y -q --no-install-recommends -t bookworm-backports qemu-utils"),
            "1:10.",
        ),
        (
            "bookworm-qemu-utils",
            "apt-get update -q && apt-get install -y -q --no-install-recommends qemu-utils".to_string(),
            "1:7.2",
        ),
    ];
    let mut failures = Vec::new();
    for (name, setup, qemu) in cases {
        let root = state(&base, name, &setup);
        let (ok, out) = simulate(&root);
        let tail = common::cmd::tail(&out, 25);
        if !ok {
            failures.push(format!("{name}: install-deps --simulate failed:\n{tail}"));
            continue;
        }
        if !out.contains("simulation: every package resolved") {
            failures.push(format!("{name}: the simulation did not finish:\n{tail}"));
        }
        match inst_version(&out, "qemu-system-x86") {
            Some(v) if v.starts_with(qemu) => {
                eprintln!("{name}: qemu-system-x86 {v}");
            }
            other => failures.push(format!(
                "{name}: qemu-system-x86 should come in version {qemu}*, apt would install {other:?}"
            )),
        }
        // mke2fs must clamp times to SOURCE_DATE_EPOCH (>= 1.47.1).
        match inst_version(&out, "e2fsprogs") {
            Some(v) if v.contains("bpo12") => {}
            other => failures.push(format!(
                "{name}: e2fsprogs should come from bookworm-backports, apt would install {other:?}"
            )),
        }
        for pkg in ["mmdebstrap", "ostree", "ovmf", "etcd-server", "dnf"] {
            if inst_version(&out, pkg).is_none() {
                failures.push(format!("{name}: {pkg} is not among the packages installed"));
            }
        }
        let _ = atomicbuild::fsutil::remove_tree(&root);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn inst_lines_are_read() {
    let out = "Inst qemu-system-x86 (1:10.0.2+ds-2+deb13u1~bpo12+1 Debian Backports:oldstable-backports [amd64])\nConf x (1)\n";
    assert_eq!(
        inst_version(out, "qemu-system-x86").as_deref(),
        Some("1:10.0.2+ds-2+deb13u1~bpo12+1")
    );
    assert_eq!(inst_version(out, "qemu-system"), None);
    let up =
        "Inst e2fsprogs [1.47.0-2] (1.47.2-3~bpo12+1 Debian Backports:oldstable-backports [amd64])";
    assert_eq!(
        inst_version(up, "e2fsprogs").as_deref(),
        Some("1.47.2-3~bpo12+1")
    );
}
