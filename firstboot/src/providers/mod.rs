//! Where the config (user data) comes from: one [`Provider`] per platform,
//! picked by [`for_platform`] from the `atomic.platform=` kernel argument
//! (never guessed). Every wait — for a device, a sysfs entry or a metadata
//! service — is bounded. User data is kept in memory only: no copy of it is
//! written to disk.

mod aws;
mod file;
mod openstack;
mod qemu;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

pub use aws::Aws;
pub use file::{FileConfig, DEFAULT_PATH};
pub use openstack::{ConfigDrive, OpenStack};
pub use qemu::Qemu;

use crate::http::{self, Url};
use crate::retry::{Attempt, Retry};

/// User data larger than this is refused.
pub const MAX_USER_DATA: u64 = 4 << 20;

/// A source of user data.
pub trait Provider {
    /// What this is, for messages (`qemu fw_cfg`).
    fn describe(&self) -> String;
    /// The user data's bytes; `None` when this platform has none for this
    /// host (a normal state: the host runs unprovisioned). A source that
    /// exists but cannot be read, or a service that cannot be reached, is
    /// an error.
    fn user_data(&self) -> Result<Option<Vec<u8>>>;
}

/// Everything the providers can be told; defaults are the real locations,
/// tests point them at directories and 127.0.0.1.
#[derive(Debug, Clone)]
pub struct Options {
    /// Retry policy for metadata services.
    pub retry: Retry,
    /// How long to wait for a device or sysfs entry to appear.
    pub device_wait: Duration,
    /// QEMU's fw_cfg sysfs directory.
    pub fw_cfg_root: PathBuf,
    /// OpenStack config drive.
    pub config_drive: ConfigDrive,
    /// OpenStack metadata service base URL.
    pub openstack_url: Url,
    /// AWS instance metadata service base URL.
    pub aws_url: Url,
    /// Whether AWS IMDSv1 (no token) may be used when IMDSv2 is refused.
    pub imdsv1: bool,
    /// The `file` platform's source.
    pub file: FileConfig,
}

/// The link-local metadata address of OpenStack and AWS.
pub const METADATA_URL: &str = "http://169.254.169.254";

impl Default for Options {
    fn default() -> Self {
        let metadata = Url::parse(METADATA_URL).expect("valid constant URL");
        Options {
            retry: Retry::default(),
            device_wait: Duration::from_secs(30),
            fw_cfg_root: PathBuf::from(qemu::FW_CFG_ROOT),
            config_drive: ConfigDrive::Device(PathBuf::from(openstack::CONFIG_DRIVE_DEVICE)),
            openstack_url: metadata.clone(),
            aws_url: metadata,
            imdsv1: false,
            file: FileConfig::default(),
        }
    }
}

/// The known platforms.
pub const PLATFORMS: &[&str] = &["qemu", "openstack", "aws", "file"];

/// The provider for `platform`.
pub fn for_platform(platform: &str, o: &Options) -> Result<Box<dyn Provider>> {
    Ok(match platform {
        "qemu" => Box::new(Qemu {
            load_module: o.fw_cfg_root == Path::new(qemu::FW_CFG_ROOT),
            root: o.fw_cfg_root.clone(),
        }),
        "openstack" => Box::new(OpenStack {
            drive: o.config_drive.clone(),
            metadata: o.openstack_url.clone(),
            retry: o.retry,
            wait: o.device_wait,
        }),
        "aws" => Box::new(Aws {
            base: o.aws_url.clone(),
            imdsv1: o.imdsv1,
            retry: o.retry,
        }),
        "file" => Box::new(file::File {
            cfg: o.file.clone(),
            wait: o.device_wait,
        }),
        other => bail!(
            "unknown platform {other:?}; known platforms: {}",
            PLATFORMS.join(", ")
        ),
    })
}

/// Wait until `path` exists, polling, for at most `wait`.
pub fn wait_for(path: &Path, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    loop {
        if path.exists() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100).min(wait));
    }
}

/// Read a file, refusing more than [`MAX_USER_DATA`] bytes.
pub fn read_limited(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let f = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut out = Vec::new();
    f.take(MAX_USER_DATA + 1)
        .read_to_end(&mut out)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if out.len() as u64 > MAX_USER_DATA {
        bail!("{} is larger than {MAX_USER_DATA} bytes", path.display());
    }
    Ok(out)
}

/// A read-only mount that is undone when dropped.
pub struct Mounted {
    dir: PathBuf,
}

impl Mounted {
    /// Mount `device` read-only on `dir` (created if needed).
    pub fn new(device: &Path, dir: &Path) -> Result<Mounted> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let (dev, d) = (device.to_string_lossy(), dir.to_string_lossy());
        crate::cmd::run(&["mount", "-o", "ro", &dev, &d])?;
        Ok(Mounted {
            dir: dir.to_owned(),
        })
    }
    /// Where it is mounted.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Err(e) = crate::cmd::run(&["umount", &self.dir.to_string_lossy()]) {
            crate::log(&format!("warning: {e:#}"));
        }
    }
}

/// GET/PUT `url` with retries on connection failures, HTTP 429 and 5xx.
/// Any other status is returned with its body for the caller to judge.
pub fn fetch(
    retry: &Retry,
    what: &str,
    method: &str,
    url: &Url,
    headers: &[(&str, &str)],
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<(u16, Vec<u8>)> {
    retry.run(what, |deadline| {
        let resp =
            http::send(method, url, headers, b"", tls, deadline).map_err(|e| e.into_attempt())?;
        let status = resp.status;
        if status == 429 || status >= 500 {
            return Err(Attempt::transient(anyhow::anyhow!(
                "{} answered HTTP {status}",
                url.redacted()
            )));
        }
        let body = resp.bytes(MAX_USER_DATA).map_err(|e| e.into_attempt())?;
        Ok((status, body))
    })
}
