//! The boot counter GRUB decrements (see `common::grub`): armed with the
//! number of tries when an update is staged, cleared once the new
//! deployment is marked good; at 0 GRUB boots the previous deployment.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The /boot partition's mount point on a host.
pub const BOOT: &str = "/boot";

/// The environment block under `boot`.
pub fn path(boot: &Path) -> PathBuf {
    boot.join(common::grub::GRUBENV)
}

/// The counter, if armed.
pub fn read(boot: &Path) -> Result<Option<u32>> {
    let p = path(boot);
    let block = match std::fs::read(&p) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", p.display())),
    };
    let vars = common::grub::parse_envblk(&block).with_context(|| p.display().to_string())?;
    Ok(vars
        .iter()
        .find(|(k, _)| k == "boot_counter")
        .and_then(|(_, v)| v.parse().ok()))
}

/// Arm the counter with `tries` (or clear it with `None`).
pub fn write(boot: &Path, tries: Option<u32>) -> Result<()> {
    let value = tries.map(|t| t.to_string());
    let vars: Vec<(&str, &str)> = match &value {
        Some(v) => vec![("boot_counter", v.as_str())],
        None => vec![],
    };
    let p = path(boot);
    std::fs::create_dir_all(p.parent().expect("grubenv has a directory"))?;
    common::atomic::write(&p, &common::grub::envblk(&vars)?)
        .with_context(|| format!("writing {}", p.display()))
}

/// The environment block as text, for reports.
pub fn show(boot: &Path) -> String {
    std::fs::read(path(boot))
        .ok()
        .and_then(|b| common::grub::parse_envblk(&b).ok())
        .map(|v| {
            v.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arm_read_clear() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(read(d.path()).unwrap(), None);
        write(d.path(), Some(3)).unwrap();
        assert_eq!(read(d.path()).unwrap(), Some(3));
        assert_eq!(std::fs::metadata(path(d.path())).unwrap().len(), 1024);
        assert_eq!(show(d.path()), "boot_counter=3");
        write(d.path(), None).unwrap();
        assert_eq!(read(d.path()).unwrap(), None);
    }
}
