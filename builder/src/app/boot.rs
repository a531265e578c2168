//! `atomicbuild boot`: an image in QEMU with the serial console on this
//! terminal, its first-boot config (checked by the agent's own validator)
//! passed through fw_cfg, ending with an error when the guest stops.

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result};

use crate::cli::BootArgs;
use crate::model::Firmware;
use crate::qemu::{accel, firstboot_args, Accel, Serial, Vm};

/// Check `given` with the agent's own validator before passing it on.
pub(super) fn check_firstboot_config(p: &Path) -> Result<()> {
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
    Ok(())
}

/// `atomicbuild boot`: run the image with the console on this terminal.
pub fn run(args: &BootArgs) -> Result<()> {
    crate::preflight::check_boot(args.firmware == Firmware::Uefi)?;
    check_image(&args.image)?;
    let scratch = std::env::temp_dir().join(format!("atomicbuild-boot-{}", std::process::id()));
    let extra = match args.firstboot_config.as_deref() {
        Some(p) => {
            check_firstboot_config(p)?;
            firstboot_args(p)
        }
        None => {
            eprintln!("no --firstboot-config: the first-boot agent finds no user data and provisions nothing (etcd stays off until it has a configuration)");
            Vec::new()
        }
    };
    let vm = Vm {
        image: args.image.clone(),
        firmware: args.firmware,
        memory: args.memory,
        cpus: args.cpus,
        snapshot: args.snapshot,
        serial: Serial::Stdio,
        scratch: scratch.clone(),
        forward: args.forward.clone(),
        devices: crate::qemu::Devices {
            disk: args.disk_bus,
            nic: args.nic,
        },
        extra,
    };
    let accel = accel()?;
    eprintln!(
        "booting {} with {} ({}); quit with Ctrl-A X",
        args.image.display(),
        if args.firmware == Firmware::Uefi {
            "UEFI/OVMF"
        } else {
            "BIOS/SeaBIOS"
        },
        match accel {
            Accel::Kvm => "KVM",
            Accel::Tcg => "TCG software emulation: expect 2-4 minutes to a login prompt",
        }
    );
    let result = vm
        .spawn(|c| {
            c.stdin(Stdio::inherit());
        })
        .and_then(|mut running| running.wait(std::time::Duration::from_secs(1)));
    let _ = std::fs::remove_dir_all(&scratch);
    let status = result?;
    if !status.success() {
        if accel == Accel::Kvm {
            // Some hosts' KVM refuses the guest before it runs (QEMU aborts
            // setting up the vCPU) rather than stopping in internal-error.
            anyhow::bail!(
                "QEMU exited with {status} under KVM: this host's KVM could not run the guest (set ATOMICBUILD_ACCEL=tcg)"
            );
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_firstboot_config_is_named() {
        let d = tempfile::tempdir().unwrap();
        let err = check_firstboot_config(&d.path().join("missing.toml")).unwrap_err();
        assert!(format!("{err:#}").contains("no such file"));
    }
}
