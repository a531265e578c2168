//! `file`: the config is a file, either on a filesystem with a given label
//! (`atomic.config-label=LABEL`, mounted read-only while it is read) or on
//! the root filesystem, at `atomic.config-path=` (default
//! `/atomic-firstboot.toml`). A config left on the root filesystem is made
//! mode 0600 after it is read.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Result};

use super::{read_limited, wait_for, Mounted, Provider};

/// Default `atomic.config-path=`.
pub const DEFAULT_PATH: &str = "/atomic-firstboot.toml";
/// Where a labelled filesystem is mounted while it is read.
const MOUNT_DIR: &str = "/run/atomic-firstboot/config";

/// Where the `file` platform's config is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileConfig {
    /// Filesystem label (`/dev/disk/by-label/LABEL`), or the root filesystem.
    pub label: Option<String>,
    /// Absolute path inside that filesystem.
    pub path: PathBuf,
    /// Read the path under this directory instead of mounting (tests).
    pub dir: Option<PathBuf>,
}

impl Default for FileConfig {
    fn default() -> Self {
        FileConfig {
            label: None,
            path: PathBuf::from(DEFAULT_PATH),
            dir: None,
        }
    }
}

/// The `file` provider.
#[derive(Debug)]
pub struct File {
    /// Where the config is.
    pub cfg: FileConfig,
    /// How long to wait for the labelled device.
    pub wait: Duration,
}

fn read_under(dir: &Path, path: &Path) -> Result<Vec<u8>> {
    let rel = path.strip_prefix("/").unwrap_or(path);
    let f = dir.join(rel);
    if !f.exists() {
        bail!("no config file at {}", f.display());
    }
    read_limited(&f)
}

impl Provider for File {
    fn describe(&self) -> String {
        match &self.cfg.label {
            Some(l) => format!(
                "file {} on the filesystem labelled {l}",
                self.cfg.path.display()
            ),
            None => format!("file {}", self.cfg.path.display()),
        }
    }

    fn user_data(&self) -> Result<Option<Vec<u8>>> {
        if !self.cfg.path.is_absolute() {
            bail!("atomic.config-path must be an absolute path");
        }
        if let Some(dir) = &self.cfg.dir {
            return read_under(dir, &self.cfg.path).map(Some);
        }
        match &self.cfg.label {
            Some(label) => {
                if label.is_empty() || label.contains('/') {
                    bail!("atomic.config-label must be a filesystem label without '/'");
                }
                let dev = Path::new("/dev/disk/by-label").join(label);
                if !wait_for(&dev, self.wait) {
                    crate::log(&format!(
                        "file: no filesystem labelled {label} after {}s: no config disk is attached",
                        self.wait.as_secs()
                    ));
                    return Ok(None);
                }
                // The disk is there: now its file must be too.
                let m = Mounted::new(&dev, Path::new(MOUNT_DIR))?;
                read_under(m.dir(), &self.cfg.path).map(Some)
            }
            None => {
                if !self.cfg.path.exists() {
                    crate::log(&format!("file: there is no {}", self.cfg.path.display()));
                    return Ok(None);
                }
                let data = read_under(Path::new("/"), &self.cfg.path)?;
                let p = &self.cfg.path;
                if let Err(e) = std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600))
                {
                    crate::log(&format!(
                        "warning: cannot make {} mode 0600: {e}",
                        p.display()
                    ));
                }
                Ok(Some(data))
            }
        }
    }
}
