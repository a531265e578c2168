//! OpenStack: the config drive (a filesystem labelled `config-2`, file
//! `openstack/latest/user_data`) when there is one, else the metadata
//! service at `http://169.254.169.254/openstack/latest/user_data`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Result};

use super::{fetch, read_limited, wait_for, Mounted, Provider};
use crate::http::Url;
use crate::retry::Retry;

/// The config drive's block device.
pub const CONFIG_DRIVE_DEVICE: &str = "/dev/disk/by-label/config-2";
/// The same, as a FAT label (upper case).
const CONFIG_DRIVE_DEVICE_FAT: &str = "/dev/disk/by-label/CONFIG-2";
/// The user data file inside the config drive.
pub const USER_DATA: &str = "openstack/latest/user_data";
/// Where the config drive is mounted while it is read.
const MOUNT_DIR: &str = "/run/atomic-firstboot/config-2";

/// Where to look for a config drive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigDrive {
    /// A block device, waited for, mounted read-only and unmounted again.
    Device(PathBuf),
    /// An already mounted (or unpacked) drive; absent if it does not exist.
    Dir(PathBuf),
}

/// Config drive first, metadata service second.
#[derive(Debug)]
pub struct OpenStack {
    /// The config drive.
    pub drive: ConfigDrive,
    /// Metadata service base URL.
    pub metadata: Url,
    /// Retry policy for the metadata service.
    pub retry: Retry,
    /// How long to wait for the config drive device.
    pub wait: Duration,
}

impl OpenStack {
    fn from_dir(dir: &Path) -> Result<Vec<u8>> {
        let f = dir.join(USER_DATA);
        if !f.exists() {
            bail!("the config drive has no {USER_DATA}");
        }
        read_limited(&f)
    }

    /// The config drive's user data, or `None` when there is no drive.
    fn config_drive(&self) -> Result<Option<Vec<u8>>> {
        match &self.drive {
            ConfigDrive::Dir(d) if d.is_dir() => Ok(Some(Self::from_dir(d)?)),
            ConfigDrive::Dir(_) => Ok(None),
            ConfigDrive::Device(dev) => {
                if !wait_for(dev, self.wait) {
                    let fat = Path::new(CONFIG_DRIVE_DEVICE_FAT);
                    if !(dev == Path::new(CONFIG_DRIVE_DEVICE) && fat.exists()) {
                        return Ok(None);
                    }
                    let m = Mounted::new(fat, Path::new(MOUNT_DIR))?;
                    return Ok(Some(Self::from_dir(m.dir())?));
                }
                let m = Mounted::new(dev, Path::new(MOUNT_DIR))?;
                Ok(Some(Self::from_dir(m.dir())?))
            }
        }
    }
}

impl Provider for OpenStack {
    fn describe(&self) -> String {
        "openstack config drive or metadata service".into()
    }

    fn user_data(&self) -> Result<Option<Vec<u8>>> {
        if let Some(data) = self.config_drive()? {
            crate::log("openstack: user data from the config drive");
            return Ok(Some(data));
        }
        crate::log("openstack: no config drive; asking the metadata service");
        let url = self.metadata.with_path("/openstack/latest/user_data");
        match fetch(
            &self.retry,
            "openstack metadata service",
            "GET",
            &url,
            &[],
            None,
        )? {
            (200, body) => Ok(Some(body)),
            (404, _) => {
                crate::log(&format!(
                    "openstack: the instance has no user data ({} answered 404)",
                    url.redacted()
                ));
                Ok(None)
            }
            (s, _) => bail!("{} answered HTTP {s}", url.redacted()),
        }
    }
}
