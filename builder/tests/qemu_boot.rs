//! Real builds and boots, as named tests over one test image: the image of
//! `qemu-tests/001_k8s_host` is built once (after one build of it was killed
//! in its disk stage), shared by every test here, and booted once with UEFI
//! (OVMF) and once with BIOS (SeaBIOS) in QEMU, in parallel, both judged by
//! `atomicbuild test`'s runner against `qemu-tests/001_k8s_host/expect.toml`
//! (the UEFI boot through its library API, the BIOS boot through the
//! command itself); what depends on the scenario is judged here from the
//! facts the case reports. KVM is used when it really runs guest code, TCG
//! otherwise; each boot is bounded and a hung or stopped guest fails with
//! the console tail.
//!
//! The UEFI guest gets a first-boot config by fw_cfg (see `firstboot_vm`):
//! it joins an etcd on this machine and gets a hostname, a user with an SSH
//! key, the kubelet's bootstrap files and a registry's CA and login (see
//! `vm::containers`); etcd is checked from this side. The BIOS guest gets no
//! config (a plain boot, as VirtualBox users of the OVA get) on a disk grown
//! by 2 GiB: it must come up clean, say it has no user data, grow its root.
//!
//! Variant builds write their outputs to a tmpfs (another file system than
//! the cache), one of them into a tmpfs too small for it. One variant is
//! killed at every failpoint, and built with a full and then a damaged
//! cache (`vm::faults`); version 2 of the update scenario first fails the
//! image lint with an overlay that ships private keys. Tests that build or
//! boot take turns (one work directory, two cores).
//!
//! Needs root, network access to Debian's archive, and the packages
//! `.ci/run` installs.

mod clouds;
mod firstboot_vm;
mod keys;
mod vm;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

use common::cmd::tail;
use vm::guests::{boot_both, grown_overlay, GROWN_BY};
use vm::turn::turn;
use vm::{build_cmd, build_variant, build_variant_with, final_names, stage_entry, Tmpfs};

/// The test image, built once for all tests.
struct Image {
    /// Holds every directory below; removed at exit (see vm::scratch).
    tmp: PathBuf,
    manifest_path: PathBuf,
    m: atomicbuild::manifest::Manifest,
    out: PathBuf,
    work: PathBuf,
    meta: serde_json::Value,
    commit: String,
    raw_sha: String,
    /// What the killed build left under final names.
    killed_left: Vec<String>,
    /// Mounts the killed build left below the work directory.
    killed_mounts: usize,
    /// A key the image does not trust (its secret key file).
    foreign_key: PathBuf,
}

fn image() -> &'static Image {
    static IMAGE: OnceLock<Result<Image, String>> = OnceLock::new();
    let built = IMAGE.get_or_init(|| {
        let _t = turn();
        std::panic::catch_unwind(build_image).map_err(|e| {
            e.downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        })
    });
    match built {
        Ok(i) => i,
        Err(e) => panic!("building the test image failed: {e}"),
    }
}

/// Kill one build in its disk stage, then build for real.
fn build_image() -> Image {
    let tmp = vm::scratch::create();
    let manifest_path = vm::node::test_manifest(&tmp.join("main"));
    let (foreign_key, _) = keys::key(&tmp, "foreign");
    let m = atomicbuild::manifest::load(&manifest_path).unwrap();
    let out = tmp.join("out");
    let work = tmp.join("work");
    vm::interrupted_build(&manifest_path, &out, &work);
    let killed_left = final_names(&out);
    let killed_mounts = atomicbuild::fsutil::mounts_under(&work).unwrap().len();
    let t = Instant::now();
    let o = build_cmd(&manifest_path, &out, &work).status().unwrap();
    assert!(o.success(), "the rebuild after an interrupted build failed");
    eprintln!("rebuild took {:.0}s", t.elapsed().as_secs_f64());
    let stem = m.stem();
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join(format!("{stem}.json"))).unwrap()).unwrap();
    let commit = meta["ostree"]["commit"].as_str().unwrap().to_string();
    let raw_sha = meta["artifacts"][0]["sha256"].as_str().unwrap().to_string();
    eprintln!("stage times: {}", meta["stages"]);
    Image {
        tmp,
        manifest_path,
        m,
        out,
        work,
        meta,
        commit,
        raw_sha,
        killed_left,
        killed_mounts,
        foreign_key,
    }
}

#[test]
fn a_killed_build_leaves_nothing_and_the_rebuild_reuses_the_cache() {
    let img = image();
    assert_eq!(
        img.killed_left,
        Vec::<String>::new(),
        "a killed build left files under final names"
    );
    assert_eq!(img.killed_mounts, 0, "a killed build left mounts behind");
    let stem = img.m.stem();
    assert_eq!(
        final_names(&img.out),
        vec![
            "SHA256SUMS".to_string(),
            "SHA256SUMS.asc".to_string(),
            format!("{stem}.json"),
            format!("{stem}.lock"),
            format!("{stem}.qcow2"),
            format!("{stem}.raw"),
            format!("{stem}.spdx.json")
        ]
    );
    let sums = Command::new("sha256sum")
        .args(["-c", "--quiet", "SHA256SUMS"])
        .current_dir(&img.out)
        .status()
        .unwrap();
    assert!(sums.success(), "SHA256SUMS does not match the outputs");
    let meta = &img.meta;
    assert_eq!(img.commit.len(), 64);
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
    assert!(meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "etcd-server"));
}

#[test]
fn the_lock_names_each_package_s_origin_and_the_commit_carries_selinux_labels() {
    let img = image();
    let lock = img.out.join(format!("{}.lock", img.m.stem()));
    let lock = atomicbuild::distro::lock::Lock::load(&lock).unwrap();
    let mut bad = vm::node::check_lock(&lock);
    bad.extend(vm::node::check_labels(&img.commit));
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn the_sbom_validates_and_matches_the_lock_and_the_images_dpkg() {
    let img = image();
    let _t = turn();
    let stem = img.m.stem();
    let outside = img.out.join(format!("{stem}.spdx.json"));
    testkit::spdx_valid(&outside).unwrap();
    let lock =
        atomicbuild::distro::lock::Lock::load(&img.out.join(format!("{stem}.lock"))).unwrap();
    let (_, dep) =
        vm::chroot::deployment(&img.out.join(format!("{stem}.raw")), &img.tmp.join("sbom"));
    let inside = dep.join(atomicbuild::sbom::IN_IMAGE);
    testkit::spdx_valid(&inside).unwrap();
    let dpkg = Command::new("dpkg-query")
        .arg(format!(
            "--admindir={}",
            dep.join("usr/lib/sysimage/dpkg").display()
        ))
        .args([
            "-W",
            "-f",
            "${db:Status-Abbrev}|${Package}|${source:Package}|${source:Version}\n",
        ])
        .output()
        .unwrap();
    let dpkg = String::from_utf8_lossy(&dpkg.stdout).into_owned();
    let bad = vm::sbom::check(&outside, &inside, &lock, &dpkg);
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// The fault tests' variant, built once as their reference (call with
/// the turn held).
fn faults_reference(img: &Image) -> &'static vm::faults::Reference {
    static R: OnceLock<vm::faults::Reference> = OnceLock::new();
    R.get_or_init(|| vm::faults::reference(&img.manifest_path, &img.tmp.join("faults"), &img.work))
}

#[test]
fn a_build_killed_at_every_failpoint_leaves_nothing_partial_and_the_next_is_identical() {
    let img = image();
    let _t = turn();
    let r = faults_reference(img);
    let bad = vm::faults::failpoints(r, &img.tmp.join("failpoints"));
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn a_full_cache_fails_clearly_and_a_damaged_one_is_rebuilt_identically() {
    let img = image();
    let _t = turn();
    let r = faults_reference(img);
    let bad = vm::faults::full_and_damaged_cache(r, &img.tmp.join("cachefaults"));
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn the_outputs_are_signed_and_gpgv_with_only_the_public_key_checks_them() {
    let img = image();
    let _t = turn();
    let public = img.tmp.join("main/release.asc");
    let bad = vm::sbom::signatures(&public, &img.out, &img.m.stem(), &img.tmp.join("signed"));
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn a_rebuild_from_the_lock_is_bit_for_bit_identical() {
    let img = image();
    let _t = turn();
    let lock = img.out.join(format!("{}.lock", img.m.stem()));
    assert!(lock.is_file());
    let v = Command::new(env!("CARGO_BIN_EXE_atomicbuild"))
        .arg("verify")
        .arg("--manifest")
        .arg(&img.manifest_path)
        .arg("--lock")
        .arg(&lock)
        .arg("--output")
        .arg(&img.out)
        .arg("--json")
        .output()
        .unwrap();
    let vout = String::from_utf8_lossy(&v.stdout);
    let verdict: serde_json::Value = serde_json::from_slice(&v.stdout).unwrap_or_default();
    assert!(
        v.status.success()
            && verdict["identical"] == true
            && verdict["commit"] == img.commit.as_str()
            && verdict["differences"] == serde_json::json!([]),
        "a rebuild from the lock is not bit-for-bit identical:\n{vout}\n{}",
        tail(&String::from_utf8_lossy(&v.stderr), 30)
    );
    eprintln!("{vout}");
}

#[test]
fn unchanged_inputs_are_up_to_date_and_the_object_store_intact() {
    let img = image();
    let _t = turn();
    let again = build_cmd(&img.manifest_path, &img.out, &img.work)
        .output()
        .unwrap();
    let again_err = String::from_utf8_lossy(&again.stderr);
    assert!(
        again.status.success() && again_err.contains("up to date"),
        "an unchanged rebuild should be skipped:\n{again_err}"
    );
    vm::object_store_is_intact();
}

/// A variant's own directory, its outputs on a tmpfs.
fn variant(name: &str) -> (PathBuf, PathBuf, Tmpfs) {
    let dir = image().tmp.join(name);
    let out = dir.join("out");
    let fs = Tmpfs::mount(&out, "8G");
    (dir, out, fs)
}

#[test]
fn a_comment_and_upload_entries_change_no_stage_and_uploads_reach_moto_and_glance() {
    let img = image();
    let _t = turn();
    let (dir, out, _fs) = variant("comment");
    let t = Instant::now();
    let tmp = &img.tmp;
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
        &img.manifest_path,
        &dir,
        &out,
        &img.work,
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
    vm::upload_checks(&m, &out, &stdout, &moto, &os);
    for s in ["install", "initramfs", "disk"] {
        assert_eq!(
            stage_entry(&m, s)["cached"],
            true,
            "comment-only change: {s} should be cached: {}",
            m["stages"]
        );
    }
    assert_eq!(
        m["ostree"]["commit"], img.commit,
        "a comment changed the commit"
    );
    // The cached disk was copied across file systems: the same bytes.
    assert_eq!(
        m["artifacts"][0]["sha256"], img.raw_sha,
        "a comment changed the image"
    );
}

#[test]
fn an_overlay_change_redoes_commit_and_disk_and_the_cache_crosses_file_systems() {
    let img = image();
    let _t = turn();
    let (dir, out, _fs) = variant("overlay");
    vm::write_variant(&img.manifest_path, &dir, |t| t.to_string());
    // Contents unique to this run: a change no earlier run has cached.
    std::fs::write(
        dir.join("overlay/etc/atomicbuild-variant"),
        format!("changed in {}\n", dir.display()),
    )
    .unwrap();
    let m = build_variant(&img.manifest_path, &dir, &out, &img.work, |t| t.to_string());
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
        m["ostree"]["commit"], img.commit,
        "an overlay change must change the commit"
    );
    eprintln!("overlay-change rebuild stages: {}", m["stages"]);
    // `atomicbuild diff` of the two builds: another commit, the same
    // packages (each with its installed size recorded), the same kernel.
    let stem = img.m.stem();
    let d = Command::new(env!("CARGO_BIN_EXE_atomicbuild"))
        .arg("diff")
        .arg(img.out.join(format!("{stem}.json")))
        .arg(out.join(format!("{stem}.json")))
        .arg("--json")
        .output()
        .unwrap();
    assert!(d.status.success(), "{}", String::from_utf8_lossy(&d.stderr));
    let d: serde_json::Value = serde_json::from_slice(&d.stdout).unwrap();
    assert_eq!(d["commit_changed"], true, "{d}");
    assert_eq!(d["packages"], serde_json::json!([]), "{d}");
    assert!(d["kernel"].is_null(), "{d}");
    let installed = d["installed_bytes"]["new"].as_u64().unwrap_or(0);
    assert!(installed > 200 << 20, "installed sizes not recorded: {d}");
    eprintln!("diff of the overlay change: {d}");
    // The same inputs into a second output directory on the tmpfs: the
    // disk cached (across file systems) above is copied back, same bytes.
    let again = out.join("again");
    let m2 = build_variant(&img.manifest_path, &dir, &again, &img.work, |t| {
        t.to_string()
    });
    assert_eq!(stage_entry(&m2, "disk")["cached"], true, "{}", m2["stages"]);
    assert_eq!(
        m2["artifacts"][0]["sha256"], m["artifacts"][0]["sha256"],
        "the same inputs gave another image through the cross-filesystem cache"
    );

    // One package more (and the overlay file changed): `diff` names it and
    // what it pulled in, with installed sizes.
    let with_jq = dir.join("with-jq");
    build_variant(&img.manifest_path, &dir, &with_jq, &img.work, |t| {
        t.replace("\"sudo\",", "\"sudo\", \"jq\",")
    });
    let d = Command::new(env!("CARGO_BIN_EXE_atomicbuild"))
        .arg("diff")
        .arg(img.out.join(format!("{stem}.json")))
        .arg(with_jq.join(format!("{stem}.json")))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&d.stdout);
    assert!(d.status.success(), "{}", String::from_utf8_lossy(&d.stderr));
    eprintln!("diff with jq added:\n{text}");
    assert!(text.contains("\n  + jq "), "{text}");
    assert!(text.contains("0 removed"), "{text}");
    assert!(!text.contains("the same OSTree commit"), "{text}");
}

#[test]
fn a_one_mib_size_budget_fails_the_build_and_every_rerun() {
    let img = image();
    let _t = turn();
    let dir = img.tmp.join("budget");
    let out = dir.join("out");
    let variant = vm::write_variant(&img.manifest_path, &dir, |t| {
        t.replace(
            "[[output]]\nformat = \"qcow2\"\ncompression = \"zstd\"\n",
            "",
        ) + "\n[budgets]\nraw_allocated = \"1MiB\"\npackages = 1000\n"
    });
    for run in ["build", "up-to-date rerun"] {
        let o = build_cmd(&variant, &out, &img.work).output().unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{run}: a 1 MiB budget must fail");
        let want = "1 budget missed";
        assert!(
            stderr.contains(want)
                && stderr.contains("budget raw_allocated missed: ")
                && stderr.contains(" MiB over 1.0 MiB; largest contributors: linux-image-"),
            "{run}: the error should name the budget, the figure and the top packages:\n{}",
            tail(&stderr, 8)
        );
        eprintln!("{run} said:\n{}", tail(&stderr, 3));
    }
    // The outputs stay for inspection, complete.
    let sums = Command::new("sha256sum")
        .args(["-c", "--quiet", "SHA256SUMS"])
        .current_dir(&out)
        .status()
        .unwrap();
    assert!(sums.success());
}

#[test]
fn a_preloaded_archive_that_is_not_its_pin_fails_the_build_naming_the_entry() {
    let (img, _t) = (image(), turn());
    vm::containers::build_with_a_wrong_archive(&img.manifest_path, &img.tmp, &img.work);
}

#[test]
fn a_full_output_file_system_fails_clearly_and_leaves_no_temporary_file() {
    let img = image();
    let _t = turn();
    let dir = img.tmp.join("full");
    let out = dir.join("out");
    let small = Tmpfs::mount(&out, "300M");
    let variant = vm::write_variant(&img.manifest_path, &dir, |t| t.to_string());
    // New contents: the disk is written (mke2fs) into the small file system.
    std::fs::write(
        dir.join("overlay/etc/atomicbuild-variant"),
        format!("disk full in {}\n", out.display()),
    )
    .unwrap();
    let o = build_cmd(&variant, &out, &img.work).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "a build into 300 MiB should fail");
    assert!(
        stderr.contains("No space left on device"),
        "the error should say the disk is full:\n{}",
        tail(&stderr, 20)
    );
    assert_eq!(
        vm::tmp_names(&out),
        Vec::<String>::new(),
        "a failed build left temporary files"
    );
    assert_eq!(final_names(&out), Vec::<String>::new());
    eprintln!("disk-full build said:\n{}", tail(&stderr, 4));
    small.resize("8G");
    let m = build_variant(&img.manifest_path, &dir, &out, &img.work, |t| t.to_string());
    assert!(out
        .join(m["artifacts"][0]["file"].as_str().unwrap())
        .is_file());
}

#[test]
fn boots_uefi_provisioned_and_bios_without_user_data_on_a_grown_disk() {
    let img = image();
    let _t = turn();
    let (m, stem, tmp) = (&img.m, img.m.stem(), &img.tmp);
    // UEFI boots the raw image, BIOS the qcow2 the native writer made from
    // it (both as throw-away snapshots), so one boot each checks both.
    let raw = img.out.join(format!("{stem}.raw"));
    let bios_img = img.out.join(format!("{stem}.qcow2"));
    let info = Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(&bios_img)
        .output()
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["format"], "qcow2");
    assert_eq!(info["format-specific"]["data"]["compression-type"], "zstd");
    assert_eq!(info["virtual-size"], m.disk.size);
    let pki = firstboot_vm::Pki::new(&tmp.join("pki"));
    pki.issue("host", &["127.0.0.1", "10.0.2.2"]);
    pki.issue("client", &[]);
    let host_etcd = firstboot_vm::HostEtcd::start(&pki, tmp);
    let grown = grown_overlay(&bios_img, tmp, m.disk.size + GROWN_BY);
    // The update repository, version 1 published, versions 2-4 built.
    let updates = vm::updates::prepare(
        &img.manifest_path,
        &img.out,
        &img.work,
        &tmp.join("updates"),
        &img.foreign_key,
    );
    let chroot_repo = vm::updates::repo_with_version_2(&updates, &tmp.join("chroot-repo"));
    let chroot_server = vm::updates::serve(&chroot_repo);
    let t = Instant::now();
    let mut failures = vm::chroot::scenario(&raw, chroot_server.port, &tmp.join("chroot"));
    eprintln!(
        "atomic-update in a chroot of the image: {:.0}s",
        t.elapsed().as_secs_f64()
    );
    drop(chroot_server);
    let server = vm::updates::serve(&updates.repo);
    let mut uefi = firstboot_vm::Guest::new("uefi-joined");
    let registry = vm::containers::HostRegistry::start(&tmp.join("registry"), &pki, &mut uefi);
    uefi.files.push((
        "/etc/atomic-update/config.d/50-test.toml".into(),
        vm::updates::settings(server.port),
    ));
    let built = vm::guests::Built {
        tmp: &img.tmp,
        manifest_path: &img.manifest_path,
        m: &img.m,
        out: &img.out,
        commit: &img.commit,
    };
    failures.extend(boot_both(
        built,
        (raw, uefi),
        grown,
        &pki,
        host_etcd.client_port,
        &updates,
    ));
    drop(server);
    failures.extend(registry.check_served());
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
