//! `atomicbuild boot` notices a guest that stopped and ends with an error
//! within seconds instead of waiting forever: a guest that reports a panic
//! through the pvpanic device (a boot sector of our own under SeaBIOS), and,
//! on hosts where KVM cannot run guest code (the probe says so), a guest
//! forced onto KVM with `ATOMICBUILD_ACCEL=kvm` (QEMU's internal-error).
//! `atomicbuild test` likewise fails a guest that never reports at the
//! case's timeout, and one that panics at once.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A 1 MiB raw disk whose boot sector writes 1 (panicked) to the pvpanic
/// device's port 0x505, then halts.
fn panicking_disk(path: &Path) {
    let mut img = vec![0u8; 1 << 20];
    let code = [
        0xBA, 0x05, 0x05, // mov dx, 0x505
        0xB0, 0x01, // mov al, 1
        0xEE, // out dx, al
        0xF4, // hlt
        0xEB, 0xFD, // jmp hlt
    ];
    img[..code.len()].copy_from_slice(&code);
    img[510] = 0x55;
    img[511] = 0xAA;
    std::fs::write(path, img).unwrap();
}

/// Run `atomicbuild boot` on `image`; (exit success, stderr, seconds).
fn boot(image: &Path, firmware: &str, accel: Option<&str>) -> (bool, String, f64) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_atomicbuild"));
    c.args(["boot", "--firmware", firmware, "--snapshot", "--image"])
        .arg(image)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    match accel {
        Some(a) => c.env("ATOMICBUILD_ACCEL", a),
        None => c.env_remove("ATOMICBUILD_ACCEL"),
    };
    let t = Instant::now();
    let mut child = c.spawn().unwrap();
    let mut err = String::new();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let _ = stderr.read_to_string(&mut err);
        err
    });
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if t.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("atomicbuild boot still waits after 120 s on a guest that stopped");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let err = reader.join().unwrap();
    (status.success(), err, t.elapsed().as_secs_f64())
}

#[test]
fn boot_ends_with_an_error_when_the_guest_panics() {
    let d = tempfile::tempdir().unwrap();
    let img = d.path().join("panic.raw");
    panicking_disk(&img);
    let (ok, err, secs) = boot(&img, "bios", Some("tcg"));
    eprintln!("{err}");
    assert!(!ok, "boot should fail on a panicked guest");
    assert!(err.contains("guest-panicked"), "{err}");
    assert!(secs < 30.0, "took {secs:.1}s to notice");
}

#[test]
fn forced_kvm_that_cannot_run_guest_code_ends_boot_with_an_error() {
    let d = tempfile::tempdir().unwrap();
    let img = d.path().join("panic.raw");
    panicking_disk(&img);
    // What the probe says of this host's KVM.
    let probe = atomicbuild::qemu::accel::kvm_device_answers().and_then(|()| {
        let qemu = common::cmd::which(atomicbuild::qemu::QEMU).unwrap();
        atomicbuild::qemu::accel::probe(&qemu, &atomicbuild::qemu::Accel::Kvm.qemu_args(), d.path())
    });
    match probe {
        Ok(()) => {
            eprintln!("KVM runs guest code on this host: nothing to show here");
            return;
        }
        Err(why) => eprintln!("the probe refuses KVM here: {why}"),
    }
    // Not forced: the one-line fallback, then the guest panics under TCG.
    let (ok, err, _) = boot(&img, "bios", None);
    assert!(!ok && err.contains("using TCG"), "{err}");
    // Forced onto KVM, the guest dies at once: QEMU's internal-error
    // state, or (on other KVM hosts) QEMU aborting as it sets up the vCPU;
    // either way the error says what to do.
    if atomicbuild::qemu::accel::kvm_device_answers().is_ok() {
        let (ok, err, secs) = boot(&img, "uefi", Some("kvm"));
        eprintln!("{err}");
        assert!(!ok, "boot should fail when KVM cannot run the guest");
        assert!(
            (err.contains("internal-error") || err.contains("under KVM"))
                && err.contains("ATOMICBUILD_ACCEL=tcg"),
            "{err}"
        );
        assert!(secs < 30.0, "took {secs:.1}s to notice");
    }
}

/// A 1 MiB raw disk whose boot sector halts forever (a guest that never
/// reports).
fn halting_disk(path: &Path) {
    let mut img = vec![0u8; 1 << 20];
    img[..3].copy_from_slice(&[0xF4, 0xEB, 0xFD]); // hlt; jmp hlt
    img[510] = 0x55;
    img[511] = 0xAA;
    std::fs::write(path, img).unwrap();
}

/// `atomicbuild test --image IMAGE --case CASE --firmware bios --junit`;
/// (exit code, stderr, the JUnit text).
fn test_image(image: &Path, case: &Path, dir: &Path) -> (Option<i32>, String, String) {
    let junit = dir.join("junit.xml");
    let o = Command::new(env!("CARGO_BIN_EXE_atomicbuild"))
        .args(["test", "--firmware", "bios", "--image"])
        .arg(image)
        .arg("--case")
        .arg(case)
        .arg("--junit")
        .arg(&junit)
        .arg("--output")
        .arg(dir.join("out"))
        .env("ATOMICBUILD_ACCEL", "tcg")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    eprintln!("{err}");
    (
        o.status.code(),
        err,
        std::fs::read_to_string(junit).unwrap_or_default(),
    )
}

#[test]
fn test_fails_a_guest_that_never_reports_at_the_case_timeout_and_one_that_panics() {
    let d = tempfile::tempdir().unwrap();
    let case = d.path().join("case");
    std::fs::create_dir_all(&case).unwrap();
    std::fs::write(case.join("expect.toml"), "timeout = \"3s\"\n").unwrap();
    let img = d.path().join("halt.raw");
    halting_disk(&img);
    let t = Instant::now();
    let (code, err, junit) = test_image(&img, &case, d.path());
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("boot: timeout: the guest did not report within 3s"),
        "{err}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(60),
        "the timeout was not kept"
    );
    assert!(
        junit.contains("<testcase classname=\"case.bios\" name=\"boot\""),
        "{junit}"
    );
    // The failed run's console is kept where the error says.
    let kept = d.path().join("out/test-logs/case-bios/console.log");
    assert!(
        err.contains("console and report kept in") && kept.is_file(),
        "{err}"
    );
    // A guest that panics ends the run at once, as a failed boot.
    let img = d.path().join("panic.raw");
    panicking_disk(&img);
    std::fs::write(case.join("expect.toml"), "timeout = \"5m\"\n").unwrap();
    let t = Instant::now();
    let (code, err, _) = test_image(&img, &case, d.path());
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("boot: ") && err.contains("guest-panicked"),
        "{err}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(60),
        "took {:?}",
        t.elapsed()
    );
}
