//! QEMU: the config is passed with
//! `-fw_cfg name=opt/org.atomicbuild/config,file=CONFIG.toml` and read from
//! the `qemu_fw_cfg` driver's sysfs tree.

use std::path::PathBuf;

use anyhow::Result;

use super::{read_limited, Provider};

/// Where the `qemu_fw_cfg` driver exposes fw_cfg entries.
pub const FW_CFG_ROOT: &str = "/sys/firmware/qemu_fw_cfg";
/// The fw_cfg entry name the config is passed under.
pub const FW_CFG_NAME: &str = "opt/org.atomicbuild/config";

/// Reads `<root>/by_name/opt/org.atomicbuild/config/raw`.
///
/// No fw_cfg device (not QEMU: VirtualBox, bare metal) and a device without
/// the entry (QEMU started without `-fw_cfg`) both mean "no user data": the
/// driver lists every entry when it binds, so there is nothing to wait for.
#[derive(Debug)]
pub struct Qemu {
    /// The sysfs directory (a plain directory in tests).
    pub root: PathBuf,
    /// `modprobe qemu_fw_cfg` first (real sysfs only); the module binds
    /// the device before modprobe returns.
    pub load_module: bool,
}

impl Provider for Qemu {
    fn describe(&self) -> String {
        format!("qemu fw_cfg ({})", self.root.display())
    }

    fn user_data(&self) -> Result<Option<Vec<u8>>> {
        if self.load_module {
            if let Err(e) = crate::cmd::run(&["modprobe", "qemu_fw_cfg"]) {
                crate::log(&format!("warning: {e:#}"));
            }
        }
        if !self.root.is_dir() {
            crate::log(&format!(
                "qemu: no fw_cfg device ({} does not exist): not running under QEMU",
                self.root.display()
            ));
            return Ok(None);
        }
        let raw = self.root.join("by_name").join(FW_CFG_NAME).join("raw");
        if !raw.exists() {
            crate::log(&format!(
                "qemu: the fw_cfg device has no entry {FW_CFG_NAME} (pass one with -fw_cfg name={FW_CFG_NAME},file=CONFIG.toml)"
            ));
            return Ok(None);
        }
        read_limited(&raw).map(Some)
    }
}
