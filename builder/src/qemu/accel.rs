//! Which accelerator QEMU runs guests with: KVM only when it really runs
//! guest code here, TCG otherwise, or what `ATOMICBUILD_ACCEL` forces.
//!
//! Opening `/dev/kvm` and creating a VM is not enough: on some hosts (nested
//! virtualization) QEMU starts a KVM guest and stays alive, but the guest
//! dies at its first x87 or SSE instruction ("KVM internal error ...
//! emulation failure") and QEMU sits paused with a silent console. The probe
//! therefore boots a 64 KiB firmware of its own that executes CPUID, x87 and
//! SSE instructions — what any real firmware or kernel does first — then
//! writes a byte to the serial port and exits through `isa-debug-exit`. Only
//! that exit, within a deadline, proves KVM.

use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

/// An accelerator for QEMU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualization.
    Kvm,
    /// Software emulation.
    Tcg,
}

impl Accel {
    /// QEMU's arguments for this accelerator.
    pub fn qemu_args(self) -> [&'static str; 4] {
        match self {
            Accel::Kvm => ["-accel", "kvm", "-cpu", "host"],
            Accel::Tcg => ["-accel", "tcg", "-cpu", "max"],
        }
    }

    /// For messages.
    pub fn describe(self) -> &'static str {
        match self {
            Accel::Kvm => "KVM",
            Accel::Tcg => "TCG software emulation",
        }
    }
}

/// The environment variable that forces an accelerator (`kvm` or `tcg`).
pub const ENV: &str = "ATOMICBUILD_ACCEL";

/// How long the probe guest may take to run (it needs milliseconds).
const PROBE_DEADLINE: Duration = Duration::from_secs(5);

/// The byte the probe guest writes to the serial port and to isa-debug-exit,
/// which makes QEMU exit with status `(byte << 1) | 1`.
const PROBE_BYTE: u8 = b'*';

/// The probe firmware: 64 KiB mapped below 4 GiB; the reset vector jumps
/// to code that runs CPUID, x87 (fwait; fninit) and SSE (CR4.OSFXSR, then
/// xorps), writes [`PROBE_BYTE`] to COM1 and to port 0xf4 (isa-debug-exit),
/// then halts.
pub fn probe_firmware() -> Vec<u8> {
    let mut rom = vec![0xffu8; 64 << 10];
    let code: &[u8] = &[
        0x66, 0xB8, 0x01, 0x00, 0x00, 0x00, // mov eax, 1
        0x0F, 0xA2, // cpuid
        0x9B, 0xDB, 0xE3, // fwait; fninit
        0x0F, 0x20, 0xE0, // mov eax, cr4
        0x66, 0x0D, 0x00, 0x02, 0x00, 0x00, // or eax, 0x200 (OSFXSR)
        0x0F, 0x22, 0xE0, // mov cr4, eax
        0x0F, 0x57, 0xC0, // xorps xmm0, xmm0
        0xB0, PROBE_BYTE, // mov al, '*'
        0xBA, 0xF8, 0x03, // mov dx, 0x3f8
        0xEE, // out dx, al
        0xE6, 0xF4, // out 0xf4, al
        0xF4, // hlt
        0xEB, 0xFD, // jmp hlt
    ];
    rom[0xF000..0xF000 + code.len()].copy_from_slice(code);
    // Reset vector (F000:FFF0): jmp far F000:F000.
    rom[0xFFF0..0xFFF5].copy_from_slice(&[0xEA, 0x00, 0xF0, 0x00, 0xF0]);
    rom
}

/// Run the probe guest with `qemu` and `accel_args`; `Ok` when the guest's
/// code ran, else the reason in one line.
pub fn probe(qemu: &Path, accel_args: &[&str], scratch: &Path) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("{e}");
    std::fs::create_dir_all(scratch).map_err(fail)?;
    let rom = scratch.join("accel-probe.rom");
    let serial = scratch.join("accel-probe.serial");
    let stderr = scratch.join("accel-probe.stderr");
    std::fs::write(&rom, probe_firmware()).map_err(fail)?;
    let _ = std::fs::remove_file(&serial);
    let mut c = Command::new(qemu);
    c.args(accel_args)
        .args([
            "-machine",
            "q35",
            "-m",
            "16",
            "-nodefaults",
            "-display",
            "none",
        ])
        .args(["-monitor", "none", "-no-reboot", "-bios"])
        .arg(&rom)
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).map_err(fail)?);
    common::cmd::die_with_parent(&mut c);
    let mut child = c
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", qemu.display()))?;
    let said = || {
        let text = std::fs::read_to_string(&stderr).unwrap_or_default();
        text.lines()
            .find(|l| l.contains("KVM internal error") || l.contains("error"))
            .map(|l| l.trim().to_string())
    };
    let start = Instant::now();
    let status = loop {
        if let Ok(Some(st)) = child.try_wait() {
            break Some(st);
        }
        if let Some(line) = said().filter(|l| l.contains("KVM internal error")) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "the guest stopped at its first instructions: {line}"
            ));
        }
        if start.elapsed() > PROBE_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut out = Vec::new();
    if let Ok(mut f) = std::fs::File::open(&serial) {
        let _ = f.read_to_end(&mut out);
    }
    let exit_code = (i32::from(PROBE_BYTE) << 1) | 1;
    match status {
        Some(st) if st.code() == Some(exit_code) && out == [PROBE_BYTE] => Ok(()),
        Some(st) => Err(format!(
            "QEMU exited ({st}) without the guest's signal{}",
            said().map(|l| format!(": {l}")).unwrap_or_default()
        )),
        None => Err(format!(
            "the guest gave no sign of life within {}s{}",
            PROBE_DEADLINE.as_secs(),
            said().map(|l| format!(" ({l})")).unwrap_or_default()
        )),
    }
}

const KVM_GET_API_VERSION: libc::c_ulong = 0xAE00;
const KVM_CREATE_VM: libc::c_ulong = 0xAE01;

/// Whether `/dev/kvm` opens and creates a VM (necessary, not sufficient).
pub fn kvm_device_answers() -> Result<(), String> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map_err(|e| format!("/dev/kvm: {e}"))?;
    // SAFETY: ioctls on an open /dev/kvm descriptor with integer arguments.
    unsafe {
        if libc::ioctl(f.as_raw_fd(), KVM_GET_API_VERSION as _, 0) != 12 {
            return Err("/dev/kvm answers with an unknown API version".into());
        }
        let vm = libc::ioctl(f.as_raw_fd(), KVM_CREATE_VM as _, 0);
        if vm < 0 {
            return Err(format!(
                "/dev/kvm cannot create a VM: {}",
                std::io::Error::last_os_error()
            ));
        }
        libc::close(vm);
    }
    Ok(())
}

/// The choice and, when KVM was not taken, why (one line).
#[derive(Debug, Clone)]
pub struct Choice {
    /// The accelerator to use.
    pub accel: Accel,
    /// Why (for the one line the user sees).
    pub why: String,
}

/// Decide: `forced` (the value of [`ENV`]) wins; else KVM when the device
/// answers and the probe guest ran.
pub fn choose(
    forced: Option<&str>,
    device: impl FnOnce() -> Result<(), String>,
    probe: impl FnOnce() -> Result<(), String>,
) -> Result<Choice> {
    match forced.map(str::trim) {
        Some("kvm") => {
            return Ok(Choice {
                accel: Accel::Kvm,
                why: format!("{ENV}=kvm"),
            })
        }
        Some("tcg") => {
            return Ok(Choice {
                accel: Accel::Tcg,
                why: format!("{ENV}=tcg"),
            })
        }
        Some("") | None => {}
        Some(other) => bail!("{ENV}={other:?}: expected kvm or tcg"),
    }
    if let Err(e) = device() {
        return Ok(Choice {
            accel: Accel::Tcg,
            why: format!("no usable KVM ({e})"),
        });
    }
    match probe() {
        Ok(()) => Ok(Choice {
            accel: Accel::Kvm,
            why: "a probe guest ran under KVM".into(),
        }),
        Err(e) => Ok(Choice {
            accel: Accel::Tcg,
            why: format!("KVM does not run guest code here ({e})"),
        }),
    }
}

/// The accelerator for this process's VMs, decided once; the first call
/// prints one line when it falls back to TCG.
pub fn accel() -> Result<Accel> {
    static CHOICE: std::sync::OnceLock<std::result::Result<Choice, String>> =
        std::sync::OnceLock::new();
    let c = CHOICE.get_or_init(|| {
        let scratch =
            std::env::temp_dir().join(format!("atomicbuild-probe-{}", std::process::id()));
        let forced = std::env::var(ENV).ok();
        let r = choose(forced.as_deref(), kvm_device_answers, || {
            let qemu = common::cmd::which(super::QEMU).unwrap_or_else(|| super::QEMU.into());
            probe(&qemu, &Accel::Kvm.qemu_args(), &scratch)
        });
        let _ = std::fs::remove_dir_all(&scratch);
        let c = r.map_err(|e| format!("{e:#}"))?;
        if c.accel == Accel::Tcg && forced.is_none() {
            eprintln!(
                "{}: using TCG software emulation (set {ENV}=kvm to force KVM)",
                c.why
            );
        }
        Ok(c)
    });
    match c {
        Ok(c) => Ok(c.accel),
        Err(e) => Err(anyhow::anyhow!("{e}").context("choosing QEMU's accelerator")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn fake_qemu(dir: &Path, script: &str) -> std::path::PathBuf {
        let p = dir.join("fake-qemu");
        std::fs::write(&p, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    #[test]
    fn firmware_reset_vector_jumps_to_the_code() {
        let rom = probe_firmware();
        assert_eq!(rom.len(), 65536);
        assert_eq!(&rom[0xFFF0..0xFFF5], &[0xEA, 0x00, 0xF0, 0x00, 0xF0]);
        assert_eq!(&rom[0xF000..0xF002], &[0x66, 0xB8]);
    }

    #[test]
    fn probe_runs_guest_code_under_tcg() {
        let d = tempfile::tempdir().unwrap();
        let Some(qemu) = common::cmd::which(crate::qemu::QEMU) else {
            panic!("qemu-system-x86_64 is needed (package qemu-system-x86)");
        };
        let t = Instant::now();
        probe(&qemu, &Accel::Tcg.qemu_args(), d.path()).unwrap();
        assert!(t.elapsed() < PROBE_DEADLINE);
    }

    #[test]
    fn probe_fails_fast_on_a_fake_kvm_internal_error() {
        let d = tempfile::tempdir().unwrap();
        // What QEMU does here under KVM: an error on stderr, then it sits
        // paused and alive.
        let q = fake_qemu(
            d.path(),
            "echo 'KVM internal error. Suberror: 1' >&2; echo 'emulation failure' >&2; exec sleep 60",
        );
        let t = Instant::now();
        let e = probe(&q, &Accel::Kvm.qemu_args(), d.path()).unwrap_err();
        assert!(e.contains("KVM internal error"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    }

    #[test]
    fn probe_gives_up_on_a_fake_silent_guest() {
        let d = tempfile::tempdir().unwrap();
        let q = fake_qemu(d.path(), "exec sleep 60");
        let e = probe(&q, &Accel::Kvm.qemu_args(), d.path()).unwrap_err();
        assert!(e.contains("no sign of life"), "{e}");
    }

    #[test]
    fn choice_falls_back_to_tcg_when_a_fake_kvm_cannot_run_guest_code() {
        let d = tempfile::tempdir().unwrap();
        let q = fake_qemu(
            d.path(),
            "echo 'KVM internal error. Suberror: 1' >&2; exec sleep 60",
        );
        let c = choose(
            None,
            || Ok(()),
            || probe(&q, &Accel::Kvm.qemu_args(), d.path()),
        )
        .unwrap();
        assert_eq!(c.accel, Accel::Tcg);
        assert!(c.why.contains("KVM does not run guest code"), "{}", c.why);
        let c = choose(
            None,
            || Err("/dev/kvm: No such file".into()),
            || unreachable!(),
        )
        .unwrap();
        assert_eq!(c.accel, Accel::Tcg);
        let c = choose(None, || Ok(()), || Ok(())).unwrap();
        assert_eq!(c.accel, Accel::Kvm);
    }

    #[test]
    fn the_environment_forces_a_choice() {
        let never = || -> Result<(), String> { panic!("not consulted when forced") };
        assert_eq!(choose(Some("tcg"), never, never).unwrap().accel, Accel::Tcg);
        assert_eq!(choose(Some("kvm"), never, never).unwrap().accel, Accel::Kvm);
        let e = choose(Some("hvf"), never, never).unwrap_err().to_string();
        assert!(e.contains("expected kvm or tcg"), "{e}");
    }
}
