//! Real boots. Builds the image of `qemu-tests/001_k8s_host` (after first
//! killing one build in its disk stage to prove nothing partial lands under
//! a final name), then boots it once with UEFI (OVMF) and once with BIOS
//! (SeaBIOS) in QEMU, in parallel, and checks everything the test image's
//! marker unit reports on the serial console. KVM is used when it works,
//! TCG otherwise; each boot is bounded and a hung boot fails with the
//! console tail.
//!
//! The UEFI guest gets a first-boot config by fw_cfg (see `firstboot_vm`):
//! it joins an etcd that runs on this machine and gets a hostname, a user
//! with an SSH key and the kubelet's bootstrap files; etcd is then checked
//! from this side. The BIOS guest gets no config at all (a plain boot, as
//! VirtualBox users of the OVA get) on a disk enlarged by 2 GiB before the
//! boot: it must come up clean, say it has no user data, and grow its root.
//!
//! The variant builds write their outputs to a tmpfs (another file system
//! than the cache), and one of them into a tmpfs too small for it.
//!
//! Needs root, network access to Debian's archive, and the packages
//! `.ci/run` installs. One test function, so the image is built once.

mod clouds;
mod firstboot_vm;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use atomicbuild::model::Firmware;
use atomicbuild::qemu::{Serial, Vm};
use common::cmd::tail;

const BOOT_TIMEOUT: Duration = Duration::from_secs(25 * 60);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

fn final_names(out: &Path) -> Vec<String> {
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

fn build_cmd(manifest: &Path, out: &Path, work: &Path) -> Command {
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
fn object_store_is_intact() {
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
fn stage_entry<'a>(meta: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    meta["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no stage {name} in {}", meta["stages"]))
}

/// Build a variant of the test manifest in `dir` into `out` and return its
/// metadata.
fn build_variant(
    manifest: &Path,
    dir: &Path,
    out: &Path,
    work: &Path,
    edit: impl Fn(&str) -> String,
) -> serde_json::Value {
    build_variant_with(manifest, dir, out, work, edit, |_| {}).0
}

/// Write the variant's manifest (and copy the test overlay once); its path.
fn write_variant(manifest: &Path, dir: &Path, edit: impl Fn(&str) -> String) -> PathBuf {
    let src = manifest.parent().unwrap();
    let shared = src.join("../../overlays/k8s-node").canonicalize().unwrap();
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
fn build_variant_with(
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

/// `--upload` of the test image: an AMI (copied to a second region) in
/// moto and the qcow2 output in Glance (real Keystone + Glance), both ids
/// recorded in the metadata, which SHA256SUMS still checks.
fn upload_checks(
    meta: &serde_json::Value,
    out: &Path,
    stdout: &str,
    moto: &clouds::Moto,
    os: &clouds::OpenStack,
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
        let d = clouds::ec2_in(
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

/// A tmpfs mounted on a directory while the value lives: an output
/// directory on another file system than the cache.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(st.success(), "mounting a tmpfs on {}", dir.display());
        Tmpfs(dir.to_owned())
    }

    fn resize(&self, size: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(st.success());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Names in `dir` that are temporary files of a build.
fn tmp_names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(common::atomic::TMP_PREFIX))
        .collect()
}

/// A changed input redoes exactly the stages downstream of it. Every
/// variant is built with `--output` on a tmpfs (the cache stays on this
/// disk): cached disks are copied across file systems and new ones cached
/// across them, with the same bytes.
fn stage_invalidation(manifest: &Path, tmp: &Path, work: &Path, commit: &str, raw_sha: &str) {
    let dir = tmp.join("variant");
    let out = dir.join("out");
    let _tmpfs = Tmpfs::mount(&out, "8G");
    // A comment and [[upload]] entries reach no stage: every stage is
    // reused, disk included, and the image is the same bytes. The build
    // runs with --upload against moto and a real Keystone + Glance.
    let t = Instant::now();
    let moto = clouds::Moto::start(tmp);
    let os = clouds::OpenStack::start(&tmp.join("openstack"));
    eprintln!(
        "moto, keystone and glance up in {:.0}s",
        t.elapsed().as_secs_f64()
    );
    let clouds_yaml = tmp.join("clouds.yaml");
    std::fs::write(
        &clouds_yaml,
        format!(
            "clouds:\n  test:\n    region_name: RegionOne\n    auth:\n      auth_url: {}/v3\n      username: demo\n      password: {}\n      project_name: demo\n      user_domain_name: Default\n      project_domain_name: Default\n",
            os.auth_url,
            clouds::DEMO_PW
        ),
    )
    .unwrap();
    let uploads = format!(
        "\n# a comment changes nothing\n[[upload]]\ntarget = \"aws\"\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\ncopy_to_regions = [\"eu-west-1\"]\n\n[[upload]]\ntarget = \"openstack\"\nformat = \"qcow2\"\ncloud = \"test\"\n",
        moto.url()
    );
    let t = Instant::now();
    let (m, stdout) = build_variant_with(
        manifest,
        &dir,
        &out,
        work,
        |t| format!("{t}{uploads}"),
        |c| {
            c.arg("--upload")
                .env("AWS_ACCESS_KEY_ID", "testing")
                .env("AWS_SECRET_ACCESS_KEY", "testing-secret")
                .env("AWS_EC2_METADATA_DISABLED", "true")
                .env("OS_CLIENT_CONFIG_FILE", &clouds_yaml)
                .env_remove("OS_CLOUD");
        },
    );
    eprintln!(
        "cached build + uploads took {:.0}s",
        t.elapsed().as_secs_f64()
    );
    upload_checks(&m, &out, &stdout, &moto, &os);
    for s in ["install", "initramfs", "disk"] {
        assert_eq!(
            stage_entry(&m, s)["cached"],
            true,
            "comment-only change: {s} should be cached: {}",
            m["stages"]
        );
    }
    assert_eq!(
        m["ostree"]["commit"], commit,
        "a comment changed the commit"
    );
    assert_eq!(
        m["artifacts"][0]["sha256"], raw_sha,
        "a comment changed the image"
    );
    // One overlay file: the installed root and the initramfs are reused;
    // the commit and the disk are new.
    // Contents unique to this run: a change no earlier run has cached.
    std::fs::write(
        dir.join("overlay/etc/atomicbuild-variant"),
        format!("changed in {}\n", dir.display()),
    )
    .unwrap();
    let m = build_variant(manifest, &dir, &out, work, |t| t.to_string());
    for s in ["install", "initramfs"] {
        assert_eq!(
            stage_entry(&m, s)["cached"],
            true,
            "overlay change: {s} should be cached: {}",
            m["stages"]
        );
    }
    assert_eq!(
        stage_entry(&m, "disk")["cached"],
        false,
        "overlay change: the disk must be rebuilt"
    );
    assert_ne!(
        m["ostree"]["commit"], commit,
        "an overlay change must change the commit"
    );
    eprintln!("overlay-change rebuild stages: {}", m["stages"]);
    // The same inputs into a second output directory on the tmpfs: the
    // disk cached (across file systems) above is copied back, same bytes.
    let again = out.join("again");
    let m2 = build_variant(manifest, &dir, &again, work, |t| t.to_string());
    assert_eq!(stage_entry(&m2, "disk")["cached"], true, "{}", m2["stages"]);
    assert_eq!(
        m2["artifacts"][0]["sha256"], m["artifacts"][0]["sha256"],
        "the same inputs gave another image through the cross-filesystem cache"
    );
    full_output_filesystem(manifest, &dir, tmp, work);
}

/// A build into a small output file system fails clearly, leaves no
/// temporary file, and the next build with space succeeds.
fn full_output_filesystem(manifest: &Path, dir: &Path, tmp: &Path, work: &Path) {
    let out = tmp.join("full-out");
    let small = Tmpfs::mount(&out, "300M");
    // New contents: the disk is written (mke2fs) into the small file system.
    std::fs::write(
        dir.join("overlay/etc/atomicbuild-variant"),
        format!("disk full in {}\n", out.display()),
    )
    .unwrap();
    let variant = write_variant(manifest, dir, |t| t.to_string());
    let o = build_cmd(&variant, &out, work).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "a build into 300 MiB should fail");
    assert!(
        stderr.contains("No space left on device"),
        "the error should say the disk is full:\n{}",
        tail(&stderr, 20)
    );
    assert_eq!(
        tmp_names(&out),
        Vec::<String>::new(),
        "a failed build left temporary files"
    );
    assert_eq!(final_names(&out), Vec::<String>::new());
    eprintln!("disk-full build said:\n{}", tail(&stderr, 4));
    small.resize("8G");
    let m = build_variant(manifest, dir, &out, work, |t| t.to_string());
    assert!(out
        .join(m["artifacts"][0]["file"].as_str().unwrap())
        .is_file());
}

/// Start a build, SIGKILL it a moment into its disk stage, and check that
/// no file appeared under a final name.
fn interrupted_build(manifest: &Path, out: &Path, work: &Path) {
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

/// Facts a boot reported: check name → lines.
type Report = BTreeMap<String, Vec<String>>;

fn parse_report(console: &str) -> Report {
    let mut r = Report::new();
    for line in console.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(pos) = line.find("ABCHECK ") {
            let rest = &line[pos + 8..];
            if let Some((name, value)) = rest.split_once("| ") {
                r.entry(name.to_string())
                    .or_default()
                    .push(value.to_string());
            }
        }
    }
    r
}

/// The console log so far (firmware writes bytes that are not UTF-8).
fn read_console(log: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(log).unwrap_or_default()).into_owned()
}

/// Boot `image` with the first-boot `config` (if any) and the port
/// `forward`s and return (the checks report, the console, what `outside`
/// found) once the checks finished. The guest writes its report to a second
/// serial port and then waits (when its config asks it to hold) while
/// `outside` checks it from this machine, or powers off; then the VM is
/// stopped.
fn boot(
    image: &Path,
    firmware: Firmware,
    scratch: &Path,
    config: Option<&Path>,
    forward: Vec<(u16, u16)>,
    outside: impl FnOnce() -> Vec<String>,
) -> Result<(String, String, Vec<String>), String> {
    let log = scratch.join("console.log");
    let report = scratch.join("checks.log");
    let vm = Vm {
        image: image.to_owned(),
        firmware,
        memory: 2048,
        cpus: 1,
        snapshot: true,
        serial: Serial::File(log.clone()),
        scratch: scratch.to_owned(),
        forward,
        extra: [
            vec!["-serial".into(), format!("file:{}", report.display())],
            config
                .map(atomicbuild::qemu::firstboot_args)
                .unwrap_or_default(),
        ]
        .concat(),
    };
    let mut running = vm
        .spawn(|c| {
            c.stdout(Stdio::null()).stderr(Stdio::piped());
        })
        .map_err(|e| format!("{e:#}"))?;
    let start = Instant::now();
    loop {
        if read_console(&report).contains("ABCHECK-END") {
            eprintln!(
                "[{firmware:?}] guest checks done after {:.0}s",
                start.elapsed().as_secs_f64()
            );
            let found = outside();
            running.stop();
            return Ok((read_console(&report), read_console(&log), found));
        }
        let exited = match running.check() {
            Ok(st) => st,
            Err(e) => {
                return Err(format!(
                    "{e:#}\nreport so far:\n{}\nconsole tail:\n{}",
                    tail(&read_console(&report), 20),
                    tail(&read_console(&log), 60)
                ))
            }
        };
        if let Some(st) = exited {
            // The guest may have finished and powered off since the last read.
            if read_console(&report).contains("ABCHECK-END") {
                continue;
            }
            let mut err = String::new();
            if let Some(mut e) = running.child().stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut err);
            }
            return Err(format!(
                "QEMU exited ({st}) before the checks finished; QEMU said: {err}\nreport so far:\n{}\nconsole tail:\n{}",
                tail(&read_console(&report), 20),
                tail(&read_console(&log), 60)
            ));
        }
        if start.elapsed() > BOOT_TIMEOUT {
            running.stop();
            return Err(format!(
                "the boot did not finish within {}s; report so far:\n{}\nconsole tail:\n{}",
                BOOT_TIMEOUT.as_secs(),
                tail(&read_console(&report), 20),
                tail(&read_console(&log), 60)
            ));
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

fn one(r: &Report, name: &str) -> String {
    r.get(name).map(|v| v.join("\n")).unwrap_or_default()
}

/// Collects mismatches: `expect(ok, what should hold, what was seen)`.
#[derive(Default)]
struct Mismatches(Vec<String>);

impl Mismatches {
    fn expect(&mut self, ok: bool, what: &str, got: impl Into<String>) {
        if !ok {
            self.0.push(format!("{what}; got: {:?}", got.into()));
        }
    }
}

/// How a guest was booted: with or without user data, on a disk enlarged
/// by `grown_by` bytes.
struct BootCase<'a> {
    firmware: Firmware,
    provisioned: Option<&'a firstboot_vm::Guest>,
    grown_by: u64,
}

/// Compare what the guest reported with what the manifest and the build
/// metadata say; return every mismatch.
fn check_report(
    r: &Report,
    case: &BootCase,
    m: &atomicbuild::manifest::Manifest,
    commit: &str,
) -> Vec<String> {
    let mut bad = Mismatches::default();
    check_system(r, case.firmware, m, commit, &mut bad);
    check_root_growth(r, m, case.grown_by, &mut bad);
    match case.provisioned {
        Some(guest) => check_provisioned(r, guest, m, &mut bad),
        None => check_unprovisioned(r, m, &mut bad),
    }
    bad.0
}

/// What every boot must show: a clean, read-only OSTree system from this
/// build, the manifest's user, firmware, networking.
fn check_system(
    r: &Report,
    firmware: Firmware,
    m: &atomicbuild::manifest::Manifest,
    commit: &str,
    bad: &mut Mismatches,
) {
    let state = one(r, "state");
    bad.expect(state == "running", "system state should be running", state);
    let failed = one(r, "failed");
    bad.expect(
        failed.trim().is_empty(),
        "no unit should have failed",
        failed,
    );
    let w = one(r, "usr-write");
    bad.expect(
        w.contains("rc=") && !w.contains("WRITABLE"),
        "writing to /usr must fail",
        w,
    );
    let mo = one(r, "usr-mount");
    bad.expect(
        mo.split(',').any(|o| o == "ro"),
        "/usr must be mounted read-only",
        mo,
    );
    let st = one(r, "ostree");
    bad.expect(
        st.contains(commit) && st.lines().any(|l| l.starts_with("* ")),
        &format!("ostree admin status should show the built commit {commit} as booted"),
        st,
    );
    let ctr = one(r, "containerd");
    bad.expect(
        ctr.contains("Server:"),
        "containerd should answer `ctr version`",
        ctr,
    );
    let cmdline = one(r, "cmdline");
    for a in m
        .kernel_args
        .iter()
        .map(String::as_str)
        .chain(["root=LABEL=root", "atomic.platform=qemu"])
    {
        bad.expect(
            cmdline.split_whitespace().any(|w| w == a),
            &format!("kernel argument {a} should be on /proc/cmdline"),
            cmdline.clone(),
        );
    }
    let user = &m.users[0];
    let pw = one(r, "passwd");
    bad.expect(
        pw.starts_with(&format!("{}:x:", user.name))
            && pw.contains(&format!(":/home/{}:", user.name)),
        "the manifest's user should exist",
        pw,
    );
    let groups = one(r, "groups");
    for g in &user.groups {
        bad.expect(
            groups.split_whitespace().any(|x| x == g),
            &format!("user should be in group {g}"),
            groups.clone(),
        );
    }
    let keys = r.get("authorized-keys").cloned().unwrap_or_default();
    bad.expect(
        keys == user.ssh_authorized_keys,
        "authorized_keys should hold exactly the manifest's keys",
        keys.join("\n"),
    );
    let perm = one(r, "keys-perm");
    bad.expect(
        perm == format!("{} 600", user.name),
        "authorized_keys should be owned by the user, mode 600",
        perm,
    );
    let fw = one(r, "firmware");
    let want = if firmware == Firmware::Uefi {
        "uefi"
    } else {
        "bios"
    };
    bad.expect(
        fw == want,
        &format!("the guest should have booted with {want}"),
        fw,
    );
    let bm = one(r, "boot-mount");
    bad.expect(
        bm.contains("ext4"),
        "/boot should be the ext4 boot partition",
        bm,
    );
    let hk: u32 = one(r, "hostkeys").trim().parse().unwrap_or(0);
    bad.expect(
        hk >= 1,
        "SSH host keys should be generated on first boot",
        hk.to_string(),
    );
    // QEMU user networking hands out 10.0.2.15 over DHCP.
    let ip = one(r, "ipv4");
    bad.expect(
        ip.starts_with("10.0.2.15/"),
        "networkd should have configured the NIC by DHCP",
        ip,
    );
}

/// The root filesystem spans its partition, which reaches the end of the
/// disk, however much the disk grew before the boot.
fn check_root_growth(
    r: &Report,
    m: &atomicbuild::manifest::Manifest,
    grown_by: u64,
    bad: &mut Mismatches,
) {
    let disk: u64 = one(r, "disk-bytes").trim().parse().unwrap_or(0);
    bad.expect(
        disk == m.disk.size + grown_by,
        &format!("the disk should have {} bytes", m.disk.size + grown_by),
        disk.to_string(),
    );
    let part = atomicbuild::disk::layout(&m.disk, &m.image_seed())
        .part("root")
        .size;
    let fs: u64 = one(r, "root-size").trim().parse().unwrap_or(0);
    let log = one(r, "growroot-log");
    // ext4 reports its size less its metadata (a few per cent).
    let want = part + grown_by;
    bad.expect(
        fs <= want && fs > want / 100 * 95,
        &format!("/ should span the root partition of {want} bytes (growroot said: {log})"),
        fs.to_string(),
    );
    bad.expect(
        if grown_by > 0 {
            log.contains("grown to") && log.contains("filesystem grown")
        } else {
            log.contains("already fills the disk")
        },
        "atomic-growroot should say what it did",
        log,
    );
}

/// A guest with user data: provisioned by the agent, joined to etcd.
fn check_provisioned(
    r: &Report,
    guest: &firstboot_vm::Guest,
    m: &atomicbuild::manifest::Manifest,
    bad: &mut Mismatches,
) {
    let act = r.get("active").cloned().unwrap_or_default();
    bad.expect(
        act.len() == 5 && act.iter().all(|a| a == "active"),
        "atomic-firstboot, containerd, etcd, ssh and networkd should be active",
        act.join(","),
    );
    let stamp = one(r, "firstboot-stamp");
    bad.expect(
        stamp == "present",
        &format!(
            "atomic-firstboot should have finished (its log:\n{})",
            one(r, "firstboot-log")
        ),
        stamp,
    );
    let ec = one(r, "etcd-conf");
    bad.expect(
        ec.lines()
            .any(|l| l.starts_with("initial-cluster-state:") && l.contains("existing"))
            && ec.contains(&format!(
                "heartbeat-interval: {}",
                firstboot_vm::HEARTBEAT_MS
            )),
        "the agent should have configured etcd (existing cluster, the config's timing)",
        ec,
    );
    let el = one(r, "etcd-listen");
    bad.expect(
        // Go listens on 0.0.0.0 with a dual-stack socket: ss shows `*`.
        ["2379", "2380"].iter().all(|p| {
            el.lines()
                .any(|l| l == format!("*:{p}") || l == format!("0.0.0.0:{p}"))
        }),
        "etcd should listen on all addresses (listen_*_urls)",
        el,
    );
    let kc = one(r, "kubelet-conf");
    bad.expect(
        kc.contains("/etc/kubernetes/bootstrap-kubelet.conf 600")
            && kc.contains("/var/lib/kubelet/config.yaml"),
        "the kubelet's bootstrap kubeconfig (0600) and config should be written",
        kc,
    );
    let fb = one(r, "fb-passwd");
    let u = firstboot_vm::FB_USER;
    bad.expect(
        fb.starts_with(&format!("{u}:x:")) && fb.contains(&format!(":/home/{u}:")),
        "the first-boot config's user should exist",
        fb,
    );
    let fk = r.get("fb-authorized-keys").cloned().unwrap_or_default();
    bad.expect(
        fk == [firstboot_vm::FB_KEY],
        "the first-boot config's key should be authorized",
        fk.join("\n"),
    );
    // The first-boot config's hostname wins over the image's.
    let hn = one(r, "hostname");
    bad.expect(
        hn == guest.hostname() && hn != m.hostname,
        "hostname should be the first-boot config's",
        hn,
    );
}

/// A plain boot without user data (what VirtualBox users of the OVA get):
/// the agent says so within seconds and provisions nothing; the image's
/// own settings stay; etcd stays off; nothing failed.
fn check_unprovisioned(r: &Report, m: &atomicbuild::manifest::Manifest, bad: &mut Mismatches) {
    let act = r.get("active").cloned().unwrap_or_default();
    bad.expect(
        act == ["active", "active", "inactive", "active", "active"],
        "atomic-firstboot (finished), containerd, ssh and networkd should be active, etcd off",
        act.join(","),
    );
    let log = one(r, "firstboot-log");
    bad.expect(
        log.contains("no user data on this platform (qemu)"),
        "atomic-firstboot should say there is no user data",
        log.clone(),
    );
    let took = one(r, "firstboot-time");
    let us = |key: &str| -> Option<u64> {
        took.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .and_then(|v| v.trim().parse().ok())
    };
    let secs = match (
        us("ExecMainStartTimestampMonotonic"),
        us("ExecMainExitTimestampMonotonic"),
    ) {
        (Some(a), Some(b)) if b >= a && a > 0 => Some((b - a) as f64 / 1e6),
        _ => None,
    };
    bad.expect(
        secs.is_some_and(|s| s < 5.0),
        "atomic-firstboot should finish within a few seconds",
        format!("{secs:?} s from {took}"),
    );
    let stamp = one(r, "firstboot-stamp");
    bad.expect(
        stamp == "missing",
        "no provisioning stamp without user data",
        stamp,
    );
    let hn = one(r, "hostname");
    bad.expect(hn == m.hostname, "the image's hostname should stay", hn);
    let fb = one(r, "fb-passwd");
    bad.expect(fb.is_empty(), "no first-boot user without user data", fb);
}

#[test]
fn build_interrupt_rebuild_and_boot_uefi_and_bios() {
    let root = repo_root();
    let manifest_path = root.join("qemu-tests/001_k8s_host/host.toml");
    let m = atomicbuild::manifest::load(&manifest_path).unwrap();
    std::fs::create_dir_all("/var/tmp").unwrap();
    let tmp = tempfile::Builder::new()
        .prefix("atomicbuild-qemu-test.")
        .tempdir_in("/var/tmp")
        .unwrap();
    let out = tmp.path().join("out");
    let work = tmp.path().join("work");

    interrupted_build(&manifest_path, &out, &work);

    let t = Instant::now();
    let o = build_cmd(&manifest_path, &out, &work).status().unwrap();
    assert!(o.success(), "the rebuild after an interrupted build failed");
    eprintln!("rebuild took {:.0}s", t.elapsed().as_secs_f64());
    let stem = m.stem();
    assert_eq!(
        final_names(&out),
        vec![
            "SHA256SUMS".to_string(),
            format!("{stem}.json"),
            format!("{stem}.lock"),
            format!("{stem}.qcow2"),
            format!("{stem}.raw")
        ]
    );
    let sums = Command::new("sha256sum")
        .args(["-c", "--quiet", "SHA256SUMS"])
        .current_dir(&out)
        .status()
        .unwrap();
    assert!(sums.success(), "SHA256SUMS does not match the outputs");
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join(format!("{stem}.json"))).unwrap()).unwrap();
    let commit = meta["ostree"]["commit"].as_str().unwrap().to_string();
    assert_eq!(commit.len(), 64);
    assert_eq!(meta["stages"][0]["name"], "install");
    assert_eq!(
        meta["stages"][0]["cached"], true,
        "the rebuild should reuse the installed root"
    );
    assert_eq!(meta["stages"][2]["name"], "initramfs");
    assert_eq!(
        meta["stages"][2]["cached"], true,
        "the rebuild should reuse the initramfs"
    );
    assert!(
        meta["stages"][2]["seconds"].as_f64().unwrap() < 20.0,
        "a cached initramfs should not run dracut: {}",
        meta["stages"][2]
    );

    // Bit-for-bit: rebuild from the lock with no cached stages and compare.
    let lock = out.join(format!("{stem}.lock"));
    assert!(lock.is_file());
    let v = Command::new(env!("CARGO_BIN_EXE_atomicbuild"))
        .arg("verify")
        .arg("--manifest")
        .arg(&manifest_path)
        .arg("--lock")
        .arg(&lock)
        .arg("--output")
        .arg(&out)
        .output()
        .unwrap();
    let vout = String::from_utf8_lossy(&v.stdout);
    assert!(
        v.status.success() && vout.contains("identical"),
        "a rebuild from the lock is not bit-for-bit identical:\n{vout}\n{}",
        tail(&String::from_utf8_lossy(&v.stderr), 30)
    );
    eprintln!("{vout}");

    // Unchanged inputs: the second build is a no-op that says so.
    let again = build_cmd(&manifest_path, &out, &work).output().unwrap();
    let again_err = String::from_utf8_lossy(&again.stderr);
    assert!(
        again.status.success() && again_err.contains("up to date"),
        "an unchanged rebuild should be skipped:\n{again_err}"
    );
    object_store_is_intact();
    let raw_sha = meta["artifacts"][0]["sha256"].as_str().unwrap().to_string();
    stage_invalidation(&manifest_path, tmp.path(), &work, &commit, &raw_sha);

    assert!(meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "etcd-server"));
    eprintln!("stage times: {}", meta["stages"]);

    // UEFI boots the raw image, BIOS the qcow2 the native writer made from
    // it (both as throw-away snapshots), so one boot each checks both.
    let raw = out.join(format!("{stem}.raw"));
    let bios_img = out.join(format!("{stem}.qcow2"));
    let info = Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(&bios_img)
        .output()
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["format"], "qcow2");
    assert_eq!(info["format-specific"]["data"]["compression-type"], "zstd");
    assert_eq!(info["virtual-size"], m.disk.size);
    // First boot: the UEFI guest gets user data and joins an etcd here;
    // the BIOS guest gets none (a plain boot, as from the OVA in
    // VirtualBox) and boots from the qcow2 enlarged by 2 GiB, which its
    // root must grow into.
    let pki = firstboot_vm::Pki::new(&tmp.path().join("pki"));
    pki.issue("host", &["127.0.0.1", "10.0.2.2"]);
    pki.issue("client", &[]);
    let host_etcd = firstboot_vm::HostEtcd::start(&pki, tmp.path());
    let host_port = host_etcd.client_port;
    const GROWN_BY: u64 = 2 << 30;
    let grown = tmp.path().join("grown.qcow2");
    let st = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
        .arg(&bios_img)
        .arg(&grown)
        .arg((m.disk.size + GROWN_BY).to_string())
        .status()
        .unwrap();
    assert!(
        st.success(),
        "qemu-img create of the enlarged overlay failed"
    );
    let mut handles = Vec::new();
    for (fw, img, guest, grown_by) in [
        (
            Firmware::Uefi,
            raw.clone(),
            Some(firstboot_vm::Guest::new("uefi-joined")),
            0,
        ),
        (Firmware::Bios, grown.clone(), None, GROWN_BY),
    ] {
        let scratch = tmp.path().join(format!("vm-{fw:?}"));
        std::fs::create_dir_all(&scratch).unwrap();
        let config = guest.as_ref().map(|g| {
            let config = scratch.join("user-data.toml");
            std::fs::write(&config, g.config(&pki, host_port)).unwrap();
            config
        });
        let pki = pki.clone();
        handles.push(std::thread::spawn(move || {
            let forward = guest.as_ref().map(|g| g.forward()).unwrap_or_default();
            let r = boot(&img, fw, &scratch, config.as_deref(), forward, || {
                guest
                    .as_ref()
                    .map(|g| g.check_from_host(&pki, host_port))
                    .unwrap_or_default()
            });
            (fw, guest, grown_by, r)
        }));
    }
    let mut failures = Vec::new();
    for h in handles {
        let (fw, guest, grown_by, result) = h.join().unwrap();
        match result {
            Err(e) => failures.push(format!("[{fw:?}] {e}")),
            Ok((report, console, outside)) => {
                let r = parse_report(&report);
                eprintln!(
                    "[{fw:?}] boot to running: {}s (guest uptime)",
                    one(&r, "uptime")
                );
                let case = BootCase {
                    firmware: fw,
                    provisioned: guest.as_ref(),
                    grown_by,
                };
                let mut bad = check_report(&r, &case, &m, &commit);
                bad.extend(outside);
                if !bad.is_empty() {
                    failures.push(format!(
                        "[{fw:?}] {} check(s) failed:\n  {}\nconsole tail:\n{}",
                        bad.len(),
                        bad.join("\n  "),
                        tail(&console, 40)
                    ));
                }
            }
        }
    }
    if !failures.is_empty() {
        eprintln!(
            "host-side etcd log tail:\n{}",
            tail(
                &std::fs::read_to_string(&host_etcd.log).unwrap_or_default(),
                30
            )
        );
    }
    drop(host_etcd);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn report_parser_reads_prefixed_lines_amid_noise() {
    let r = parse_report("junk\r\n[  5.1] x ABCHECK state| running\r\nABCHECK active| active\nABCHECK active| inactive\n");
    assert_eq!(one(&r, "state"), "running");
    assert_eq!(r["active"], vec!["active", "inactive"]);
}
