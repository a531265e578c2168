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
        c.args([
            "-netdev",
            "user,id=n0",
            "-device",
            "virtio-net-pci,netdev=n0",
        ]);
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

/// `atomicbuild boot`: run the image with the console on this terminal.
pub fn boot_interactive(args: &crate::cli::BootArgs) -> Result<()> {
    crate::preflight::check_boot(args.firmware == Firmware::Uefi)?;
    check_image(&args.image)?;
    let scratch = std::env::temp_dir().join(format!("atomicbuild-boot-{}", std::process::id()));
    let vm = Vm {
        image: args.image.clone(),
        firmware: args.firmware,
        memory: args.memory,
        cpus: args.cpus,
        snapshot: args.snapshot,
        serial: Serial::Stdio,
        scratch: scratch.clone(),
        extra: Vec::new(),
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
