//! QEMU: the config is passed with
//! `-fw_cfg name=opt/org.atomicbuild/config,file=CONFIG.toml` and read from
//! the `qemu_fw_cfg` driver's sysfs tree.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};

use super::{read_limited, wait_for, Provider};

/// Where the `qemu_fw_cfg` driver exposes fw_cfg entries.
pub const FW_CFG_ROOT: &str = "/sys/firmware/qemu_fw_cfg";
/// The fw_cfg entry name the config is passed under.
pub const FW_CFG_NAME: &str = "opt/org.atomicbuild/config";

/// Reads `<root>/by_name/opt/org.atomicbuild/config/raw`.
#[derive(Debug)]
pub struct Qemu {
    /// The sysfs directory (a plain directory in tests).
    pub root: PathBuf,
    /// How long to wait for the entry.
    pub wait: Duration,
    /// `modprobe qemu_fw_cfg` when the directory is missing (real sysfs only).
    pub load_module: bool,
}

impl Provider for Qemu {
    fn describe(&self) -> String {
        format!("qemu fw_cfg ({})", self.root.display())
    }

    fn user_data(&self) -> Result<Vec<u8>> {
        if !self.root.exists() && self.load_module {
            if let Err(e) = crate::cmd::run(&["modprobe", "qemu_fw_cfg"]) {
                crate::log(&format!("warning: {e:#}"));
            }
        }
        let raw = self.root.join("by_name").join(FW_CFG_NAME).join("raw");
        if !wait_for(&raw, self.wait) {
            bail!(
                "no fw_cfg entry {FW_CFG_NAME} after {}s at {} (start QEMU with -fw_cfg name={FW_CFG_NAME},file=CONFIG.toml)",
                self.wait.as_secs(),
                raw.display()
            );
        }
        read_limited(&raw)
    }
}
