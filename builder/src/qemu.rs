//! Running images in QEMU: KVM when it really works, TCG otherwise; OVMF
//! for UEFI (read-only code + a private copy of the variable store) or
//! SeaBIOS. Used by `atomicbuild boot` and by the boot tests.

use std::fs::{File, OpenOptions};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::cli::Firmware;

/// OVMF firmware code (Debian package ovmf).
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
/// OVMF variable store template.
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

const KVM_GET_API_VERSION: libc::c_ulong = 0xAE00;
const KVM_CREATE_VM: libc::c_ulong = 0xAE01;

/// Whether KVM really works here: the device node answers, and QEMU can
/// start a KVM guest with the host CPU model and keeps running (on some
/// hosts /dev/kvm opens and creates VMs, but QEMU aborts setting MSRs).
/// Probed once per process.
pub fn kvm_works() -> bool {
    static KVM: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *KVM.get_or_init(|| kvm_device_answers() && qemu_kvm_probe())
}

/// Start a memory-only KVM guest and see whether QEMU survives 3 seconds.
fn qemu_kvm_probe() -> bool {
    let child = Command::new("qemu-system-x86_64")
        .args([
            "-accel", "kvm", "-cpu", "host", "-machine", "q35", "-m", "64",
        ])
        .args([
            "-nodefaults",
            "-display",
            "none",
            "-no-reboot",
            "-monitor",
            "none",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        return false;
    };
    for _ in 0..30 {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    true
}

fn kvm_device_answers() -> bool {
    let Ok(f) = OpenOptions::new().read(true).write(true).open("/dev/kvm") else {
        return false;
    };
    // SAFETY: ioctls on an open /dev/kvm descriptor with integer arguments.
    unsafe {
        if libc::ioctl(f.as_raw_fd(), KVM_GET_API_VERSION as _, 0) != 12 {
            return false;
        }
        let vm = libc::ioctl(f.as_raw_fd(), KVM_CREATE_VM as _, 0);
        if vm < 0 {
            return false;
        }
        libc::close(vm);
    }
    true
}

/// Where the serial console goes.
pub enum Serial {
    /// This terminal, with QEMU's monitor multiplexed (Ctrl-A C).
    Stdio,
    /// Appended to a file (tests read it).
    File(PathBuf),
}

/// A virtual machine to start.
pub struct Vm {
    /// Disk image (raw).
    pub image: PathBuf,
    /// Firmware.
    pub firmware: Firmware,
    /// Memory in MiB.
    pub memory: u32,
    /// vCPUs.
    pub cpus: u32,
    /// Write guest changes to a throw-away overlay.
    pub snapshot: bool,
    /// Serial console destination.
    pub serial: Serial,
    /// Directory for the UEFI variable store copy.
    pub scratch: PathBuf,
    /// TCP ports forwarded from 127.0.0.1 on this machine into the guest
    /// (host port, guest port), through QEMU's user networking.
    pub forward: Vec<(u16, u16)>,
    /// Extra QEMU arguments (e.g. -fw_cfg).
    pub extra: Vec<String>,
}

impl Vm {
    /// The QEMU command line (the variable store copy is made here).
    pub fn command(&self) -> Result<Command> {
        let kvm = kvm_works();
        let mut c = Command::new("qemu-system-x86_64");
        c.args(["-machine", "q35", "-m", &self.memory.to_string()])
            .args(["-smp", &self.cpus.to_string()])
            // No -no-reboot: OVMF may reset once on a fresh variable store.
            .args(["-nodefaults", "-display", "none"]);
        if kvm {
            c.args(["-accel", "kvm", "-cpu", "host"]);
        } else {
            c.args(["-accel", "tcg", "-cpu", "max"]);
        }
        if self.firmware == Firmware::Uefi {
            let vars = self.scratch.join("OVMF_VARS.fd");
            std::fs::create_dir_all(&self.scratch)?;
            std::fs::copy(OVMF_VARS, &vars)
                .with_context(|| format!("copying {OVMF_VARS} (is the ovmf package installed?)"))?;
            c.arg("-drive")
                .arg(format!(
                    "if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}"
                ))
                .arg("-drive")
                .arg(format!(
                    "if=pflash,format=raw,unit=1,file={}",
                    vars.display()
                ));
        }
        let mut drive = format!(
            "file={},format={},if=virtio",
            self.image.display(),
            image_format(&self.image)
        );
        if self.snapshot {
            drive.push_str(",snapshot=on");
        }
        c.arg("-drive").arg(drive);
        let mut netdev = "user,id=n0".to_string();
        for (host, guest) in &self.forward {
            netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{host}-:{guest}"));
        }
        c.arg("-netdev")
            .arg(netdev)
            .args(["-device", "virtio-net-pci,netdev=n0"]);
        c.args(["-device", "virtio-rng-pci"]);
        match &self.serial {
            Serial::Stdio => {
                c.args(["-serial", "mon:stdio"]);
            }
            Serial::File(p) => {
                c.arg("-serial").arg(format!("file:{}", p.display()));
                c.args(["-monitor", "none"]);
            }
        }
        c.args(&self.extra);
        // QEMU goes down with atomicbuild (or the test) that started it.
        crate::cmd::die_with_parent(&mut c);
        Ok(c)
    }
}

/// The fw_cfg entry atomic-firstboot reads on `atomic.platform=qemu`.
pub const FIRSTBOOT_FW_CFG: &str = "opt/org.atomicbuild/config";

/// QEMU arguments that hand `config` to the first-boot agent.
pub fn firstboot_args(config: &Path) -> Vec<String> {
    vec![
        "-fw_cfg".into(),
        format!("name={FIRSTBOOT_FW_CFG},file={}", config.display()),
    ]
}

/// The config to pass to the agent: `given` after checking it with the
/// agent's own validator, or an empty one written into `scratch`.
fn firstboot_config(given: Option<&Path>, scratch: &Path) -> Result<PathBuf> {
    let Some(p) = given else {
        std::fs::create_dir_all(scratch)?;
        let empty = scratch.join("firstboot-empty.toml");
        std::fs::write(&empty, "version = 1\n")?;
        eprintln!("no --firstboot-config: the first-boot agent gets an empty config and provisions nothing (etcd stays off until it has a configuration)");
        return Ok(empty);
    };
    if !p.is_file() {
        anyhow::bail!("--firstboot-config {}: no such file", p.display());
    }
    match crate::stage::agent::binary() {
        Ok(agent) => {
            let o = Command::new(&agent)
                .arg("validate")
                .arg("--config")
                .arg(p)
                .output()
                .with_context(|| format!("running {} validate", agent.display()))?;
            if !o.status.success() {
                anyhow::bail!(
                    "--firstboot-config {} is not a valid first-boot config:\n{}{}",
                    p.display(),
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                );
            }
        }
        Err(e) => eprintln!("warning: not checking {}: {e:#}", p.display()),
    }
    Ok(p.to_owned())
}

/// `atomicbuild boot`: run the image with the console on this terminal.
pub fn boot_interactive(args: &crate::cli::BootArgs) -> Result<()> {
    crate::preflight::check_boot(args.firmware == Firmware::Uefi)?;
    check_image(&args.image)?;
    let scratch = std::env::temp_dir().join(format!("atomicbuild-boot-{}", std::process::id()));
    let config = firstboot_config(args.firstboot_config.as_deref(), &scratch)?;
    let vm = Vm {
        image: args.image.clone(),
        firmware: args.firmware,
        memory: args.memory,
        cpus: args.cpus,
        snapshot: args.snapshot,
        serial: Serial::Stdio,
        scratch: scratch.clone(),
        forward: args.forward.clone(),
        extra: firstboot_args(&config),
    };
    let mut c = vm.command()?;
    eprintln!(
        "booting {} with {} ({}); quit with Ctrl-A X",
        args.image.display(),
        if args.firmware == Firmware::Uefi {
            "UEFI/OVMF"
        } else {
            "BIOS/SeaBIOS"
        },
        if kvm_works() {
            "KVM"
        } else {
            "TCG software emulation: expect 2-4 minutes to a login prompt"
        }
    );
    let status = c.status().context("starting qemu-system-x86_64")?;
    let _ = std::fs::remove_dir_all(&scratch);
    if !status.success() {
        anyhow::bail!("QEMU exited with {status}");
    }
    Ok(())
}

fn check_image(p: &Path) -> Result<()> {
    let f = File::open(p).with_context(|| format!("opening the image {}", p.display()))?;
    let len = f.metadata()?.len();
    if len < 1 << 20 {
        anyhow::bail!("{} is {len} bytes; that is not a disk image", p.display());
    }
    Ok(())
}

/// QEMU's name for the format of `image`, from its extension (raw unless
/// it is one of the formats atomicbuild writes).
pub fn image_format(image: &std::path::Path) -> &'static str {
    match image.extension().and_then(|e| e.to_str()) {
        Some("qcow2") => "qcow2",
        Some("vmdk") => "vmdk",
        Some("vdi") => "vdi",
        Some("vhd") => "vpc",
        _ => "raw",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwards_and_firstboot_config_reach_the_command_line() {
        let d = tempfile::tempdir().unwrap();
        let cfg = d.path().join("user-data.toml");
        let vm = Vm {
            image: d.path().join("x.qcow2"),
            firmware: Firmware::Bios,
            memory: 512,
            cpus: 1,
            snapshot: true,
            serial: Serial::File(d.path().join("console")),
            scratch: d.path().to_owned(),
            forward: vec![(2222, 22), (12379, 2379)],
            extra: firstboot_args(&cfg),
        };
        let c = vm.command().unwrap();
        let args: Vec<String> = c
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let after = |flag: &str| {
            let i = args.iter().position(|a| a == flag).unwrap();
            args[i + 1].clone()
        };
        assert_eq!(
            after("-netdev"),
            "user,id=n0,hostfwd=tcp:127.0.0.1:2222-:22,hostfwd=tcp:127.0.0.1:12379-:2379"
        );
        assert_eq!(
            after("-fw_cfg"),
            format!("name=opt/org.atomicbuild/config,file={}", cfg.display())
        );
        assert!(after("-drive").contains("format=qcow2"));
        assert!(after("-drive").ends_with(",snapshot=on"));
    }

    #[test]
    fn an_empty_config_is_passed_when_none_is_given() {
        let d = tempfile::tempdir().unwrap();
        let p = firstboot_config(None, d.path()).unwrap();
        assert_eq!(std::fs::read_to_string(p).unwrap(), "version = 1\n");
        let err = firstboot_config(Some(&d.path().join("missing.toml")), d.path()).unwrap_err();
        assert!(format!("{err:#}").contains("no such file"));
    }
}
