//! ext4 filesystems written in place into the image file with
//! `mke2fs -d DIR -E offset=BYTES`: no loop device, no mount, hard links
//! kept. UUID and hash seed come from the layout, times from
//! SOURCE_DATE_EPOCH.

use std::path::Path;

use anyhow::{Context, Result};

use super::Part;
use crate::cmd::Cmd;

/// Write an ext4 filesystem with the contents of `dir` into `part` of `image`.
pub fn write(image: &Path, part: &Part, dir: &Path, epoch: u64) -> Result<()> {
    Cmd::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4", "-b", "4096", "-m", "1"])
        .args(["-L", part.name])
        .args(["-U", &part.fs_id])
        .arg("-E")
        .arg(format!(
            "offset={},hash_seed={},root_owner=0:0,lazy_itable_init=0,nodiscard",
            part.offset, part.fs_id
        ))
        .arg("-d")
        .arg(dir)
        .arg(image)
        .arg(format!("{}k", part.size / 1024))
        .env("E2FSPROGS_FAKE_TIME", epoch.to_string())
        .env("MKE2FS_DEVICE_SECTSIZE", "512")
        .run()
        .with_context(|| format!("writing the {} filesystem", part.name))?;
    Ok(())
}
