//! The runner's judgement, from reports recorded in real boots
//! (`testdata/`) and changed the way a broken image would report: no boot
//! needed for a negative case.

use std::path::Path;

use super::expect::{self, FirstbootResult, FirstbootRule};
use super::judge::{self, boot_seconds};
use super::run::judge_reports;
use super::script::{script, After};
use super::*;
use crate::budgets::Budgets;
use crate::model::Firmware;
use crate::qemu::Accel;

/// The BIOS boot of `qemu-tests/001_k8s_host` without user data, as its
/// report port recorded it (CRs and all).
const RECORDED: &str = include_str!("testdata/001-bios-report.log");

fn case_001() -> Expect {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../qemu-tests/001_k8s_host");
    Case::load(&dir).unwrap().expect
}

fn failed(v: &[Verdict]) -> Vec<String> {
    v.iter()
        .filter(|v| !v.ok && !v.warning)
        .map(|v| v.rule.clone())
        .collect()
}

fn judge_text(e: &Expect, text: &str, budgets: &Budgets, accel: Accel) -> Vec<Verdict> {
    let reports = judge::parse(text);
    judge_reports(e, Firmware::Bios, budgets, Some(accel), 1, &reports).0
}

#[test]
fn the_recorded_boot_passes_every_rule_of_its_case() {
    let mut e = case_001();
    e.firstboot = Some(FirstbootRule {
        result: FirstbootResult::NoUserData,
    });
    let v = judge_text(&e, RECORDED, &Budgets::default(), Accel::Tcg);
    assert_eq!(failed(&v), Vec::<String>::new(), "{v:#?}");
    assert!(v.len() > 20, "{v:#?}");
    // Provisioned it was not, and it did not boot with UEFI.
    e.firstboot = Some(FirstbootRule {
        result: FirstbootResult::Provisioned,
    });
    let reports = judge::parse(RECORDED);
    let v = judge_reports(&e, Firmware::Uefi, &Budgets::default(), None, 1, &reports).0;
    assert_eq!(failed(&v), ["firmware", "firstboot.result"]);
}

#[test]
fn a_failed_unit_fails_its_rules() {
    let text = RECORDED
        .replace("ABCHECK unit:containerd.service| active", "ABCHECK unit:containerd.service| failed")
        .replace(
            "ABCHECK boot-time|",
            "ABCHECK failed| containerd.service loaded failed failed containerd container runtime\nABCHECK boot-time|",
        )
        .replace("ABCHECK state| running", "ABCHECK state| degraded");
    let v = judge_text(&case_001(), &text, &Budgets::default(), Accel::Tcg);
    assert_eq!(
        failed(&v),
        [
            "system.state",
            "system.failed_units",
            "units.active[containerd.service]"
        ]
    );
    let detail = &v
        .iter()
        .find(|v| v.rule == "system.failed_units")
        .unwrap()
        .detail;
    assert!(
        detail.contains("containerd.service loaded failed"),
        "{detail}"
    );
}

#[test]
fn a_writable_usr_fails_the_read_only_rule() {
    let text = RECORDED.replace("ABCHECK write:/usr| ro", "ABCHECK write:/usr| rw");
    assert_ne!(text, RECORDED);
    let v = judge_text(&case_001(), &text, &Budgets::default(), Accel::Tcg);
    assert_eq!(failed(&v), ["system.read_only[/usr]"]);
    let d = &v.iter().find(|v| !v.ok).unwrap().detail;
    assert_eq!(d, "/usr should be read-only; writing there succeeded");
}

#[test]
fn a_one_second_boot_budget_fails_under_kvm_and_warns_under_tcg() {
    let b = Budgets {
        boot_time_kvm: Some(1),
        boot_time_tcg: Some(1),
        ..Budgets::default()
    };
    let secs = boot_seconds(&judge::parse(RECORDED)[0]).unwrap();
    assert!(secs > 1.0, "{secs}");
    let kvm = judge_text(&case_001(), RECORDED, &b, Accel::Kvm);
    assert_eq!(failed(&kvm), ["budgets.boot_time_kvm"]);
    let miss = kvm.iter().find(|v| !v.ok).unwrap();
    assert!(
        miss.detail.contains("over 1s; largest contributors: "),
        "{}",
        miss.detail
    );
    let tcg = judge_text(&case_001(), RECORDED, &b, Accel::Tcg);
    assert_eq!(failed(&tcg), Vec::<String>::new());
    assert!(tcg
        .iter()
        .any(|v| v.rule == "budgets.boot_time_tcg" && v.warning));
    // A budget the boot keeps.
    let roomy = Budgets {
        boot_time_tcg: Some(3600),
        ..Budgets::default()
    };
    assert!(judge_text(&case_001(), RECORDED, &roomy, Accel::Tcg)
        .iter()
        .all(|v| v.ok));
}

#[test]
fn a_cut_off_report_and_missing_reboots_fail() {
    let cut: String = RECORDED
        .lines()
        .take_while(|l| !l.contains("ABCHECK-END"))
        .collect::<Vec<_>>()
        .join("\n");
    let v = judge_text(&case_001(), &cut, &Budgets::default(), Accel::Tcg);
    assert!(
        failed(&v).contains(&"report".to_string()),
        "{:?}",
        failed(&v)
    );
    let mut e = case_001();
    e.reboots = 1;
    let reports = judge::parse(RECORDED);
    let v = judge_reports(&e, Firmware::Bios, &Budgets::default(), None, 2, &reports).0;
    assert_eq!(failed(&v), ["reboots"]);
    // Two boots reported: the second's rules are named by their boot.
    let twice = format!(
        "{RECORDED}\n{}",
        RECORDED.replace("ABCHECK write:/usr| ro", "ABCHECK write:/usr| rw")
    );
    let v = judge_reports(
        &e,
        Firmware::Bios,
        &Budgets::default(),
        None,
        2,
        &judge::parse(&twice),
    )
    .0;
    assert_eq!(failed(&v), ["boot 2: system.read_only[/usr]"]);
}

#[test]
fn commands_files_and_network_are_judged() {
    let text = RECORDED
        .replace(
            "ABCHECK file:0:stat| 600 core:core",
            "ABCHECK file:0:stat| 644 root:root",
        )
        .replace("scope global dynamic", "scope global");
    let v = judge_text(&case_001(), &text, &Budgets::default(), Accel::Tcg);
    assert_eq!(
        failed(&v),
        [
            "file[0] /var/home/core/.ssh/authorized_keys",
            "network.dhcp"
        ]
    );
    let d = &v
        .iter()
        .find(|v| v.rule.starts_with("file[0]"))
        .unwrap()
        .detail;
    assert!(
        d.contains("mode 644, not 600; owner root:root, not core:core"),
        "{d}"
    );
    // A command's exit status and output.
    let e = expect::parse(
        "[[command]]\nrun = \"false\"\n[[command]]\nname = \"says hi\"\nrun = \"echo hi\"\nstdout_contains = \"hello\"\n[[command]]\nrun = \"exit 3\"\nexit = 3\n[[command]]\nname = \"no newline\"\nrun = \"printf 0\"\nstdout_contains = \"0no newline\"\n",
        Path::new("expect.toml"),
    )
    .unwrap();
    let r = "ABCHECK-BEGIN 1\nABCHECK cmd:0| ABEXIT=1\nABCHECK cmd:1| hi\nABCHECK cmd:1| ABEXIT=0\nABCHECK cmd:2| ABEXIT=3\nABCHECK cmd:3| 0no newlineABEXIT=0\nABCHECK-END 1\n";
    let v = judge::judge(&e, &judge::parse(r)[0], Firmware::Bios);
    let f = failed(&v);
    assert!(f.contains(&"command[0] false".to_string()), "{f:?}");
    assert!(f.contains(&"command[1] says hi".to_string()), "{f:?}");
    assert!(!f.iter().any(|r| r.starts_with("command[2]")), "{f:?}");
    assert!(!f.iter().any(|r| r.starts_with("command[3]")), "{f:?}");
}

#[test]
fn boot_time_adds_the_phases_before_userspace_to_the_target() {
    let r = judge::parse(
        "ABCHECK-BEGIN 1\nABCHECK boot-time| Startup finished in 1.5s (kernel) + 1min 2.5s (initrd) + 30s (userspace) = 1min 34s\nABCHECK boot-time| multi-user.target reached after 20.250s in userspace\nABCHECK-END 1\n",
    );
    assert_eq!(boot_seconds(&r[0]), Some(84.25));
    // The target's own activation time wins, plus firmware and loader.
    let r = judge::parse(
        "ABCHECK-BEGIN 1\nABCHECK boot-time| Startup finished in 2s (firmware) + 1s (loader) + 1.5s (kernel) + 30s (userspace) = 34.5s\nABCHECK boot-time| graphical.target reached after 29s in userspace.\nABCHECK multi-user| 30250000\nABCHECK-END 1\n",
    );
    assert_eq!(boot_seconds(&r[0]), Some(33.25));
    let r = judge::parse("ABCHECK-BEGIN 1\nABCHECK boot-time| Startup finished in 500ms (kernel) + 2s (userspace) = 2.500s\n");
    assert_eq!(boot_seconds(&r[0]), Some(2.5));
}

#[test]
fn expectations_errors_name_file_line_and_field() {
    let e = expect::parse(
        "timeout = \"5m\"\n[system]\nstate = \"runing\"\n",
        Path::new("c/expect.toml"),
    )
    .unwrap_err();
    let t = e.to_string();
    assert!(
        t.contains("c/expect.toml:3:") && t.contains("system.state"),
        "{t}"
    );
    let e = expect::parse("[[file]]\npth = \"/x\"\n", Path::new("expect.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("expect.toml:2:") && e.contains("pth"), "{e}");
    let e = expect::parse(
        "[[file]]\npath = \"/x\"\nmode = \"9\"\n[[fact]]\nname = \"a b\"\nrun = \"x\"\n[network]\nipv4 = \"10.0.2.15\"\n",
        Path::new("expect.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("expect.toml:3:") && e.contains("file[0].mode"),
        "{e}"
    );
    assert!(
        e.contains("expect.toml:5:") && e.contains("fact[0].name"),
        "{e}"
    );
    assert!(
        e.contains("expect.toml:8:") && e.contains("network.ipv4"),
        "{e}"
    );
    let case = Case::load(Path::new("/nonexistent/case"))
        .unwrap_err()
        .to_string();
    assert!(case.contains("no such directory"), "{case}");
}

#[test]
fn the_script_is_valid_sh_whatever_the_rules_quote() {
    let e = expect::parse(
        "reboots = 1\n[system]\nread_only = [\"/usr\"]\n[units]\nactive = [\"a.service\"]\n[[file]]\npath = \"/etc/it's here\"\ncontains = \"x\"\n[[command]]\nrun = \"echo 'a' \\\"b\\\" $HOME | cat\"\n[network]\ndhcp = true\n[firstboot]\nresult = \"provisioned\"\n[[fact]]\nname = \"f\"\nrun = \"echo ')'\"\n",
        Path::new("expect.toml"),
    )
    .unwrap();
    for after in [After::PowerOff, After::Hold] {
        let s = script(&e, 2, after);
        let o = std::process::Command::new("sh")
            .args(["-n", "-c", &s])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{}\n{s}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            s.contains("run 'file:0:stat' ") || s.contains("run file:0:stat "),
            "{s}"
        );
    }
    assert!(script(&e, 2, After::PowerOff).contains("-lt 2 ]; then systemctl reboot"));
}

#[test]
fn junit_validates_and_is_read_back_by_an_independent_parser() {
    let reports = judge::parse(RECORDED);
    let text = RECORDED.replace("ABCHECK write:/usr| ro", "ABCHECK write:/usr| rw");
    let b = Budgets {
        boot_time_tcg: Some(1),
        ..Budgets::default()
    };
    let (bad, bt) = judge_reports(
        &case_001(),
        Firmware::Bios,
        &b,
        Some(Accel::Tcg),
        1,
        &judge::parse(&text),
    );
    let (good, _) = judge_reports(
        &case_001(),
        Firmware::Bios,
        &Budgets::default(),
        Some(Accel::Tcg),
        1,
        &reports,
    );
    let result = |verdicts: Vec<Verdict>| CaseResult {
        case: "001 <&\"'>".into(),
        firmware: "bios".into(),
        image: "x.raw".into(),
        accel: "tcg".into(),
        passed: verdicts.iter().all(|v| v.ok || v.warning),
        seconds: 12.0,
        boot_seconds: bt.as_ref().map(|b| b.seconds),
        verdicts,
        logs: None,
    };
    let (n_bad, n_good) = (bad.len(), good.len());
    let results = [result(bad), result(good)];
    assert!(!results[0].passed && results[1].passed);
    assert!(
        results[0].summary().starts_with("FAIL 001 <&\"'> bios ("),
        "{}",
        results[0].summary()
    );
    assert!(
        results[0]
            .summary()
            .contains(": system.read_only[/usr]\n  warning: budget boot_time_tcg"),
        "{}",
        results[0].summary()
    );
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("junit.xml");
    std::fs::write(&f, junit::junit(&results)).unwrap();
    testkit::junit_valid(&f).unwrap();
    let py = "import sys, xml.etree.ElementTree as ET\nr = ET.parse(sys.argv[1]).getroot()\nfor s in r.findall('testsuite'):\n  print(s.get('name'), s.get('tests'), s.get('failures'), len(s.findall('testcase')), [c.get('name') for c in s.findall('testcase') if c.find('failure') is not None], len([c for c in s.findall('testcase') if c.find('system-out') is not None]))\n";
    let o = std::process::Command::new("python3")
        .args(["-c", py])
        .arg(&f)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        out,
        format!("001 <&\"'>.bios {n_bad} 1 {n_bad} ['system.read_only[/usr]'] 1\n001 <&\"'>.bios {n_good} 0 {n_good} [] 0\n")
    );
}

#[test]
fn a_case_may_name_its_manifest_elsewhere() {
    let d = tempfile::tempdir().unwrap();
    let case = d.path().join("case");
    std::fs::create_dir_all(&case).unwrap();
    std::fs::write(case.join("expect.toml"), "manifest = \"../m/host.toml\"\n").unwrap();
    let e = Case::load(&case).unwrap_err().to_string();
    assert!(
        e.contains("expect.toml: manifest: ") && e.contains("does not exist"),
        "{e}"
    );
    std::fs::create_dir_all(d.path().join("m")).unwrap();
    std::fs::write(d.path().join("m/host.toml"), "").unwrap();
    assert_eq!(
        Case::load(&case).unwrap().manifest,
        Some(case.join("../m/host.toml"))
    );
    // Without expect.toml: not a case.
    let e = Case::load(d.path()).unwrap_err().to_string();
    assert!(e.contains("no expect.toml"), "{e}");
}
