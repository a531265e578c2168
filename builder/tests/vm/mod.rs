//! The VM test's harness: builds of the test image and its variants,
//! output directories on other file systems, boots and their reports.

pub mod chroot;
pub mod containers;
pub mod faults;
pub mod guests;
pub mod node;
pub mod platform;
pub mod report;
pub mod sbom;
pub mod scratch;
pub mod testrun;
pub mod turn;
pub mod updates;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::cmd::tail;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

pub fn final_names(out: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(out)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with(common::atomic::TMP_PREFIX))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

pub fn build_cmd(manifest: &Path, out: &Path, work: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_atomicbuild"));
    c.arg("build")
        .arg("--manifest")
        .arg(manifest)
        .arg("--output")
        .arg(out)
        .arg("--workdir")
        .arg(work)
        .env("SOURCE_DATE_EPOCH", "1700000000");
    c
}

/// Stages after the hard-linked checkout of the cached root must never
/// write through a file: `ostree fsck` of the shared object store proves
/// no object changed.
pub fn object_store_is_intact() {
    let store = atomicbuild::pipeline::default_cache_dir().join("repo");
    let o = Command::new("ostree")
        .arg("fsck")
        .arg(format!("--repo={}", store.display()))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "the object store is damaged (a stage wrote into a hard-linked file):\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        tail(&String::from_utf8_lossy(&o.stderr), 20)
    );
}

/// The stage entry called `name` in a build's metadata.
pub fn stage_entry<'a>(meta: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    meta["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no stage {name} in {}", meta["stages"]))
}

/// Build a variant of the test manifest in `dir` into `out` and return its
/// metadata.
pub fn build_variant(
    manifest: &Path,
    dir: &Path,
    out: &Path,
    work: &Path,
    edit: impl Fn(&str) -> String,
) -> serde_json::Value {
    build_variant_with(manifest, dir, out, work, edit, |_| {}).0
}

/// Write the variant's manifest (and copy the test overlay once); its path.
pub fn write_variant(manifest: &Path, dir: &Path, edit: impl Fn(&str) -> String) -> PathBuf {
    let src = manifest.parent().unwrap();
    let shared = repo_root().join("overlays/k8s-node");
    if !dir.join("overlay").exists() {
        std::fs::create_dir_all(dir).unwrap();
        let cp = Command::new("cp")
            .arg("-a")
            .arg(src.join("overlay"))
            .arg(dir.join("overlay"))
            .status()
            .unwrap();
        assert!(cp.success());
    }
    let text = std::fs::read_to_string(manifest).unwrap().replace(
        "\"../../overlays/k8s-node\"",
        &format!("{:?}", shared.display().to_string()),
    );
    let variant = dir.join("host.toml");
    std::fs::write(&variant, edit(&text)).unwrap();
    variant
}

/// The same, with extra arguments or environment; also returns stdout.
pub fn build_variant_with(
    manifest: &Path,
    dir: &Path,
    out: &Path,
    work: &Path,
    edit: impl Fn(&str) -> String,
    adjust: impl Fn(&mut Command),
) -> (serde_json::Value, String) {
    let variant = write_variant(manifest, dir, edit);
    let mut c = build_cmd(&variant, out, work);
    adjust(&mut c);
    let o = c.output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success(),
        "building a variant failed:\n{}",
        tail(&stderr, 30)
    );
    eprintln!("{}", tail(&stderr, 12));
    let stem = atomicbuild::manifest::load(&variant).unwrap().stem();
    let meta =
        serde_json::from_slice(&std::fs::read(out.join(format!("{stem}.json"))).unwrap()).unwrap();
    (meta, String::from_utf8_lossy(&o.stdout).into_owned())
}

pub use testkit::Tmpfs;

/// Names in `dir` that are temporary files of a build.
pub fn tmp_names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(common::atomic::TMP_PREFIX))
        .collect()
}

/// Start a build, SIGKILL it a moment into its disk stage, and check that
/// no file appeared under a final name.
pub fn interrupted_build(manifest: &Path, out: &Path, work: &Path) {
    let mut child = build_cmd(manifest, out, work)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut log = Vec::new();
    let mut killed = false;
    for line in BufReader::new(stderr).lines() {
        let line = line.unwrap();
        eprintln!("[interrupted build] {line}");
        log.push(line.clone());
        if line.starts_with("==> disk") {
            std::thread::sleep(Duration::from_secs(1));
            child.kill().unwrap();
            killed = true;
            break;
        }
    }
    let status = child.wait().unwrap();
    assert!(
        killed,
        "the build ended before its disk stage:\n{}",
        log.join("\n")
    );
    assert!(!status.success());
    assert_eq!(
        final_names(out),
        Vec::<String>::new(),
        "a killed build left files under final names"
    );
    assert!(
        atomicbuild::fsutil::mounts_under(work).unwrap().is_empty(),
        "a killed build left mounts behind"
    );
}

/// `--upload` of the test image: an AMI (copied to a second region) in
/// moto and the qcow2 output in Glance (real Keystone + Glance), both ids
/// recorded in the metadata, which SHA256SUMS still checks.
pub fn upload_checks(
    meta: &serde_json::Value,
    out: &Path,
    stdout: &str,
    moto: &crate::clouds::Moto,
    os: &crate::clouds::OpenStack,
) {
    let stem = format!(
        "{}-{}",
        meta["name"].as_str().unwrap(),
        meta["version"].as_str().unwrap()
    );
    let ups = meta["uploads"].as_array().expect("uploads in the metadata");
    assert_eq!(ups.len(), 2, "{}", meta["uploads"]);
    let ami = ups[0]["image_id"].as_str().unwrap();
    assert_eq!(
        (ups[0]["target"].as_str(), ups[0]["region"].as_str()),
        (Some("aws"), Some("us-east-1"))
    );
    let copy = ups[0]["copies"]["eu-west-1"].as_str().unwrap();
    assert!(
        ami.starts_with("ami-") && copy.starts_with("ami-"),
        "{}",
        meta["uploads"]
    );
    assert!(
        stdout.contains(&format!("aws {stem} {ami} eu-west-1={copy}")),
        "{stdout}"
    );
    let raw_sha = meta["artifacts"][0]["sha256"].as_str().unwrap();
    for (region, id) in [("us-east-1", ami), ("eu-west-1", copy)] {
        let d = crate::clouds::ec2_in(
            &moto.url(),
            region,
            &[("Action", "DescribeImages"), ("ImageId.1", id)],
        );
        assert!(
            d.contains(&format!("<name>{stem}</name>")) && d.contains(raw_sha),
            "{region}: {d}"
        );
    }
    let gid = ups[1]["image_id"].as_str().unwrap();
    assert_eq!(ups[1]["target"], "openstack");
    assert_eq!(ups[1]["file"], format!("{stem}.qcow2"));
    let img = os.glance(&os.demo_token(), &format!("/v2/images/{gid}"));
    let qcow2 = std::fs::read(out.join(format!("{stem}.qcow2"))).unwrap();
    use sha2::Digest;
    assert_eq!(img["status"], "active", "{img}");
    assert_eq!(img["disk_format"], "qcow2");
    assert_eq!(
        img["os_hash_value"],
        hex::encode(sha2::Sha512::digest(&qcow2)).as_str()
    );
    assert_eq!(img["min_disk"], 4, "{img}");
    assert_eq!(
        (img["os_distro"].as_str(), img["os_version"].as_str()),
        (Some("debian"), Some("12"))
    );
    let sums = Command::new("sha256sum")
        .args(["-c", "--quiet", "SHA256SUMS"])
        .current_dir(out)
        .status()
        .unwrap();
    assert!(
        sums.success(),
        "SHA256SUMS no longer matches after the upload record"
    );
}
