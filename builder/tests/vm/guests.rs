//! The test image's two boots, both judged by `atomicbuild test`'s runner
//! against `qemu-tests/001_k8s_host/expect.toml`: UEFI with user data
//! through the runner's library API, BIOS without through the nightly
//! pipeline and the command; what depends on the scenario is judged from
//! the facts the case reports ([`super::report`]).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use atomicbuild::model::Firmware;
use atomicbuild::qemu::{Devices, DiskBus, Nic};
use common::cmd::tail;

use super::report::{check_report, BootCase};

/// What the boots need of the test image's build.
#[derive(Clone, Copy)]
pub struct Built<'a> {
    pub tmp: &'a Path,
    pub manifest_path: &'a Path,
    pub m: &'a atomicbuild::manifest::Manifest,
    pub out: &'a Path,
    pub commit: &'a str,
}

/// How much the BIOS guest's disk grows before it boots.
pub const GROWN_BY: u64 = 2 << 30;

/// A qcow2 overlay of `base`, `size` bytes big.
pub fn grown_overlay(base: &Path, dir: &Path, size: u64) -> PathBuf {
    let grown = dir.join("grown.qcow2");
    let st = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
        .arg(base)
        .arg(&grown)
        .arg(size.to_string())
        .status()
        .unwrap();
    assert!(
        st.success(),
        "qemu-img create of the enlarged overlay failed"
    );
    grown
}

/// The test image's case, as `atomicbuild test` reads it.
fn case() -> atomicbuild::vmtest::Case {
    atomicbuild::vmtest::Case::load(&super::repo_root().join("qemu-tests/001_k8s_host")).unwrap()
}

/// Boot both guests at once: UEFI with user data through the runner's
/// library API (the host-side scenario runs while it holds), BIOS without
/// through the nightly pipeline and the `atomicbuild test` command; every
/// failure, with the
/// console's tail.
pub fn boot_both(
    img: Built,
    uefi: (PathBuf, crate::firstboot_vm::Guest),
    bios: PathBuf,
    pki: &crate::firstboot_vm::Pki,
    host_port: u16,
    updates: &super::updates::Updates,
) -> Vec<String> {
    std::thread::scope(|s| {
        let bios = s.spawn(move || bios_through_nightly(img, &bios));
        let mut failures = uefi_provisioned(img, uefi, pki, host_port, updates);
        failures.extend(bios.join().unwrap());
        failures
    })
}

/// The provisioned UEFI boot, held while etcd and the updates are checked
/// from this side.
fn uefi_provisioned(
    img: Built,
    (image, guest): (PathBuf, crate::firstboot_vm::Guest),
    pki: &crate::firstboot_vm::Pki,
    host_port: u16,
    updates: &super::updates::Updates,
) -> Vec<String> {
    use atomicbuild::vmtest::{expect, run, script::After};
    let scratch = img.tmp.join("vm-uefi");
    std::fs::create_dir_all(&scratch).unwrap();
    let config = scratch.join("user-data.toml");
    std::fs::write(&config, guest.config(pki, host_port)).unwrap();
    let mut expect = case().expect;
    expect.firstboot = Some(expect::FirstbootRule {
        result: expect::FirstbootResult::Provisioned,
    });
    let report = scratch.join("report.log");
    let o = run::run(
        &run::Boot {
            image: &image,
            firmware: Firmware::Uefi,
            expect: &expect,
            firstboot: Some(&config),
            scratch: &scratch,
            forward: guest.forward(),
            after: After::Hold,
            budgets: &img.m.budgets,
            memory: 2048,
            // Two: the BIOS guest (one CPU) ends after its two boots, and
            // for the rest of the updates scenario this guest runs alone
            // (under TCG 81 s to running instead of 133 s alone).
            cpus: 2,
            label: "[Uefi]".into(),
            // Other device models than the BIOS boot's: NVMe (AWS Nitro,
            // GCP) and Intel e1000e (VMware, Hyper-V legacy).
            devices: Devices {
                disk: DiskBus::Nvme,
                nic: Nic::E1000e,
            },
        },
        || {
            // While the provisioned guest runs: etcd from this side, then
            // the updates it takes by itself.
            let mut bad = guest.check_from_host(pki, host_port);
            bad.extend(super::updates::scenario(updates, &report, (pki, host_port)));
            bad
        },
    );
    let mut bad: Vec<String> = o
        .verdicts
        .iter()
        .filter(|v| !v.ok && !v.warning)
        .map(|v| format!("{}: {}", v.rule, v.detail))
        .collect();
    if let Some(r) = o.reports.first() {
        eprintln!(
            "[Uefi] boot to running: {}s (guest uptime); {} rules judged; where the time went:\n{}",
            r.fact("uptime"),
            o.verdicts.len(),
            r.fact("boot-time")
        );
        let case = BootCase {
            provisioned: Some(&guest),
            grown_by: 0,
            devices: ("nvme0n", "e1000e"),
        };
        bad.extend(check_report(r, &case, img.m, img.commit));
    }
    if bad.is_empty() {
        return bad;
    }
    vec![format!(
        "[Uefi] {} check(s) failed:\n  {}\nconsole tail:\n{}",
        bad.len(),
        bad.join("\n  "),
        tail(&atomicbuild::vmtest::run::read_log(&o.console), 40)
    )]
}

/// The plain BIOS boot on the grown disk, through the nightly pipeline
/// (`ci/nightly.sh`: build, `atomicbuild test`, diff, publish) with a copy
/// of the case that boots twice (`reboots = 1`) and has one rule broken on
/// purpose, and a boot-time budget of 1 s: the test must fail naming that
/// rule in both boots (and warn of the budget under TCG) and pass
/// everything else, JUnit validated and read back; the diff against the
/// "published" build is written; nothing is published.
fn bios_through_nightly(img: Built, image: &Path) -> Vec<String> {
    let dir = img.tmp.join("vm-bios");
    let case_dir = dir.join("001_broken");
    std::fs::create_dir_all(&case_dir).unwrap();
    let expect =
        std::fs::read_to_string(super::repo_root().join("qemu-tests/001_k8s_host/expect.toml"))
            .unwrap();
    std::fs::write(
        case_dir.join("expect.toml"),
        format!("reboots = 1\n{expect}\n[firstboot]\nresult = \"no-user-data\"\n\n[[command]]\nname = \"deliberately broken\"\nrun = \"touch /usr/.broken\"\n"),
    )
    .unwrap();
    // Without the qcow2 output (a faster build), with a boot budget.
    let manifest = super::write_variant(img.manifest_path, &dir, |t| {
        t.replace(
            "[[output]]\nformat = \"qcow2\"\ncompression = \"zstd\"\n",
            "",
        ) + "\n[budgets]\nboot_time_tcg = \"1s\"\n"
    });
    let published = dir.join("published");
    std::fs::create_dir_all(&published).unwrap();
    std::fs::copy(
        img.out.join(format!("{}.json", img.m.stem())),
        published.join("latest.json"),
    )
    .unwrap();
    let (out, repo) = (dir.join("nightly"), dir.join("repo"));
    let t = Instant::now();
    let o = Command::new(super::repo_root().join("ci/nightly.sh"))
        .env("ATOMICBUILD", env!("CARGO_BIN_EXE_atomicbuild"))
        .arg("--manifest")
        .arg(&manifest)
        .arg("--output")
        .arg(&out)
        .arg("--published")
        .arg(&published)
        .arg("--repo")
        .arg(&repo)
        .arg("--case")
        .arg(&case_dir)
        .args(["--firmware", "bios", "--test-arg", "--image", "--test-arg"])
        .arg(image)
        // SATA on AHCI and an e1000 (VirtualBox's and OVAs' models).
        .args(["--test-arg", "--disk-bus", "--test-arg", "ahci"])
        .args(["--test-arg", "--nic", "--test-arg", "e1000"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    eprintln!(
        "[Bios] ci/nightly.sh took {:.0}s:\n{}",
        t.elapsed().as_secs_f64(),
        tail(&stderr, 14)
    );
    let reports = out.join("reports");
    let json = std::fs::read(reports.join("test.json")).unwrap_or_default();
    let mut bad = super::testrun::judge_broken_run(
        o.status.code(),
        &stderr,
        &json,
        &reports.join("junit.xml"),
    );
    let diff = std::fs::read_to_string(reports.join("diff.md")).unwrap_or_default();
    if !diff.starts_with('#') || !diff.contains("qcow2") {
        bad.push(format!(
            "reports/diff.md should be the Markdown diff (the qcow2 output gone):\n{diff}"
        ));
    }
    if repo.exists() || !stderr.contains("not publishing: the test failed") {
        bad.push("a failed test must not publish".into());
    }
    let logs = reports.join("test-logs/001_broken-bios");
    let report = atomicbuild::vmtest::run::read_log(&logs.join("report.log"));
    let boots = atomicbuild::vmtest::judge::parse(&report);
    match boots.first() {
        Some(r) => {
            eprintln!(
                "[Bios] boot to running: {}s (guest uptime); where the time went:\n{}",
                r.fact("uptime"),
                r.fact("boot-time")
            );
            let case = BootCase {
                provisioned: None,
                grown_by: GROWN_BY,
                devices: ("sd", "e1000"),
            };
            bad.extend(check_report(r, &case, img.m, img.commit));
        }
        None => bad.push("no report kept".into()),
    }
    // The second boot found the root grown already.
    let again = boots
        .get(1)
        .map(|r| r.fact("growroot-log"))
        .unwrap_or_default();
    if boots.len() != 2 || !again.contains("already fills the disk") {
        bad.push(format!(
            "two boot reports expected, the second with the root grown already; {} reports, the second's growroot said: {again}",
            boots.len()
        ));
    }
    if bad.is_empty() {
        return bad;
    }
    vec![format!(
        "[Bios] {} check(s) failed:\n  {}\nnightly.sh said:\n{}\nconsole tail:\n{}",
        bad.len(),
        bad.join("\n  "),
        tail(&stderr, 40),
        tail(
            &atomicbuild::vmtest::run::read_log(&logs.join("console.log")),
            40
        )
    )]
}
