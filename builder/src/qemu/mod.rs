//! Running images in QEMU: KVM when it really runs guest code, TCG
//! otherwise ([`accel`]); OVMF for UEFI (read-only code + a private copy of
//! the variable store) or SeaBIOS; the run state watched over QMP
//! ([`monitor`]). Used by `atomicbuild boot` and by the boot tests.

pub mod accel;
pub mod monitor;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result};

use crate::model::Firmware;
pub use accel::{accel, Accel};
pub use monitor::Running;

/// The QEMU system emulator atomicbuild runs.
pub const QEMU: &str = "qemu-system-x86_64";

/// OVMF firmware code (Debian package ovmf).
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
/// OVMF variable store template.
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// Where the serial console goes.
pub enum Serial {
    /// This terminal, with QEMU's monitor multiplexed (Ctrl-A C).
    Stdio,
    /// Appended to a file (tests read it).
    File(PathBuf),
}

/// The controller the VM's disk hangs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum DiskBus {
    /// virtio-blk (KVM/QEMU clouds).
    #[default]
    Virtio,
    /// NVMe (AWS Nitro, GCP, Azure v6).
    Nvme,
    /// SATA on the q35 chipset's AHCI controller (VirtualBox, VMware,
    /// bare metal).
    Ahci,
}

/// The VM's network card.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Nic {
    /// virtio-net.
    #[default]
    Virtio,
    /// Intel 82574L (e1000e: Hyper-V's legacy, VMware's default).
    E1000e,
    /// Intel 82540EM (e1000: VirtualBox's and OVAs' default).
    E1000,
}

impl Nic {
    fn device(self) -> &'static str {
        match self {
            Nic::Virtio => "virtio-net-pci",
            Nic::E1000e => "e1000e",
            Nic::E1000 => "e1000",
        }
    }
}

/// The VM's device models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Devices {
    /// Disk controller.
    pub disk: DiskBus,
    /// Network card.
    pub nic: Nic,
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
    /// Disk controller and network card.
    pub devices: Devices,
    /// Extra QEMU arguments (e.g. -fw_cfg).
    pub extra: Vec<String>,
}

impl Vm {
    /// Where QEMU's monitor (QMP) listens.
    pub fn qmp_socket(&self) -> PathBuf {
        self.scratch.join("qmp.sock")
    }

    /// The QEMU command line for `accel` (the variable store copy is made
    /// here). A QMP socket in the scratch directory reports the run state;
    /// a pvpanic device reports a guest kernel panic, which pauses the VM.
    pub fn command_with(&self, accel: Accel) -> Result<Command> {
        let mut c = Command::new(QEMU);
        c.args(["-machine", "q35", "-m", &self.memory.to_string()])
            .args(["-smp", &self.cpus.to_string()])
            // No -no-reboot: OVMF may reset once on a fresh variable store.
            .args(["-nodefaults", "-display", "none"])
            .args(accel.qemu_args());
        std::fs::create_dir_all(&self.scratch)
            .with_context(|| format!("creating {}", self.scratch.display()))?;
        let _ = std::fs::remove_file(self.qmp_socket());
        c.arg("-qmp")
            .arg(format!(
                "unix:{},server=on,wait=off",
                self.qmp_socket().display()
            ))
            .args(["-device", "pvpanic", "-action", "panic=pause"]);
        if self.firmware == Firmware::Uefi {
            let vars = self.scratch.join("OVMF_VARS.fd");
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
            "file={},format={}",
            self.image.display(),
            image_format(&self.image)
        );
        if self.snapshot {
            drive.push_str(",snapshot=on");
        }
        match self.devices.disk {
            DiskBus::Virtio => c.arg("-drive").arg(format!("{drive},if=virtio")),
            DiskBus::Nvme => c
                .arg("-drive")
                .arg(format!("{drive},if=none,id=disk0"))
                .args(["-device", "nvme,drive=disk0,serial=atomicbuild0"]),
            // q35's ICH9 AHCI controller is part of the chipset (there even
            // with -nodefaults); its first port is bus ide.0.
            DiskBus::Ahci => c
                .arg("-drive")
                .arg(format!("{drive},if=none,id=disk0"))
                .args(["-device", "ide-hd,drive=disk0,bus=ide.0"]),
        };
        let mut netdev = "user,id=n0".to_string();
        for (host, guest) in &self.forward {
            netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{host}-:{guest}"));
        }
        c.arg("-netdev")
            .arg(netdev)
            .arg("-device")
            .arg(format!("{},netdev=n0", self.devices.nic.device()));
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
        common::cmd::die_with_parent(&mut c);
        Ok(c)
    }

    /// The QEMU command line with this host's accelerator.
    pub fn command(&self) -> Result<Command> {
        self.command_with(accel()?)
    }

    /// Start the VM (stdin null; stdout and stderr as `c` is set up by
    /// `adjust`) and watch it.
    pub fn spawn(&self, adjust: impl FnOnce(&mut Command)) -> Result<Running> {
        let mut c = self.command()?;
        c.stdin(Stdio::null());
        adjust(&mut c);
        let child = c.spawn().with_context(|| format!("starting {QEMU}"))?;
        Ok(Running::new(child, self.qmp_socket()))
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

/// QEMU's block driver for `image`, from its file name (the format table's;
/// raw unless it is one of the formats atomicbuild writes).
pub fn image_format(image: &std::path::Path) -> &'static str {
    let name = image.file_name().map(|n| n.to_string_lossy().into_owned());
    name.as_deref()
        .and_then(crate::formats::Format::of_file)
        .and_then(|f| f.info().qemu_driver)
        .unwrap_or("raw")
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
            devices: Devices::default(),
            extra: firstboot_args(&cfg),
        };
        let c = vm.command_with(Accel::Tcg).unwrap();
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
        assert!(after("-drive").ends_with(",snapshot=on,if=virtio"));
        assert_eq!(after("-accel"), "tcg");
        assert!(after("-qmp").starts_with(&format!("unix:{}", d.path().join("qmp.sock").display())));
        assert_eq!(after("-action"), "panic=pause");
        assert_eq!(after("-device"), "pvpanic");
        let devices = |d: Devices| -> Vec<String> {
            let vm = Vm {
                devices: d,
                ..vm_like(&vm)
            };
            let c = vm.command_with(Accel::Tcg).unwrap();
            c.get_args()
                .map(|a| a.to_string_lossy().into_owned())
                .collect()
        };
        let nvme = devices(Devices {
            disk: DiskBus::Nvme,
            nic: Nic::E1000e,
        });
        assert!(nvme
            .iter()
            .any(|a| a.ends_with(",snapshot=on,if=none,id=disk0")));
        assert!(nvme.contains(&"nvme,drive=disk0,serial=atomicbuild0".to_string()));
        assert!(nvme.contains(&"e1000e,netdev=n0".to_string()));
        let ahci = devices(Devices {
            disk: DiskBus::Ahci,
            nic: Nic::E1000,
        });
        assert!(ahci.contains(&"ide-hd,drive=disk0,bus=ide.0".to_string()));
        assert!(ahci.contains(&"e1000,netdev=n0".to_string()));
    }

    fn vm_like(v: &Vm) -> Vm {
        Vm {
            image: v.image.clone(),
            firmware: v.firmware,
            memory: v.memory,
            cpus: v.cpus,
            snapshot: v.snapshot,
            serial: Serial::Stdio,
            scratch: v.scratch.clone(),
            forward: v.forward.clone(),
            devices: v.devices,
            extra: v.extra.clone(),
        }
    }
}
