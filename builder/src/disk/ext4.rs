//! ext4 filesystems written in place into the image file with
//! `mke2fs -d DIR -E offset=BYTES`: no loop device, no mount, hard links
//! kept. UUID and hash seed come from the layout, times from
//! SOURCE_DATE_EPOCH.

use std::path::Path;

use anyhow::{Context, Result};

use crate::model::Part;
use common::cmd::Cmd;

/// mke2fs settings used instead of the host's /etc/mke2fs.conf, so the
/// filesystem does not change with the build host. The feature set is the
/// one GRUB 2.06 reads (no metadata_csum_seed) and Linux 5.10+ mounts.
const MKE2FS_CONF: &str = "[defaults]
	base_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr
	default_mntopts = acl,user_xattr
	enable_periodic_fsck = 0
	blocksize = 4096
	inode_size = 256
	inode_ratio = 16384

[fs_types]
	ext4 = {
		features = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize
	}
";

/// Write an ext4 filesystem with the contents of `dir` into `part` of `image`.
pub fn write(image: &Path, part: &Part, dir: &Path, epoch: u64) -> Result<()> {
    pin_file_times(dir)?;
    let conf = image.with_extension("mke2fs.conf");
    std::fs::write(&conf, MKE2FS_CONF)?;
    let r = mke2fs(image, part, dir, epoch, &conf);
    let _ = std::fs::remove_file(&conf);
    r
}

/// mke2fs clamps times newer than SOURCE_DATE_EPOCH but keeps older ones,
/// and a file linked from the cache's object store carries the time some
/// earlier build wrote it (OSTree pins content objects to 0, but not
/// symlinks or its own metadata objects). So every non-directory gets time
/// 0, the value OSTree already gives content objects: every build agrees on
/// it, even builds sharing objects at the same time. Directories are new in
/// every build and are clamped to SOURCE_DATE_EPOCH by mke2fs.
fn pin_file_times(dir: &Path) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    crate::fsutil::walk_sorted(dir, &mut |p, md| {
        if !md.is_dir() && (md.mtime() != 0 || md.atime() != 0) {
            let c = std::ffi::CString::new(p.as_os_str().as_bytes())?;
            let t = [libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            }; 2];
            // SAFETY: a valid C string and two timespecs.
            let r = unsafe {
                libc::utimensat(
                    libc::AT_FDCWD,
                    c.as_ptr(),
                    t.as_ptr(),
                    libc::AT_SYMLINK_NOFOLLOW,
                )
            };
            if r != 0 {
                return Err(std::io::Error::last_os_error())
                    .with_context(|| format!("setting the times of {}", p.display()));
            }
        }
        Ok(())
    })
}

/// The installed mke2fs's version (`[1, 47, 2]`), if it says.
pub fn mke2fs_version() -> Option<(String, Vec<u32>)> {
    let out = std::process::Command::new("mke2fs")
        .arg("-V")
        .output()
        .ok()?;
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    let ver = text.split_whitespace().nth(1)?.to_string();
    let nums = ver.split('.').filter_map(|p| p.parse().ok()).collect();
    Some((ver, nums))
}

/// `-E` settings for a partition of a file that [`super::write`]
/// has just created (all zeros): mke2fs from 1.47.0 on skips zeroing the
/// inode tables and the journal (and marks the tables zeroed, as zeroing
/// them does), where it would otherwise allocate them in the image file
/// as unwritten extents (140 MiB of the default image's allocated size)
/// that hold nothing.
fn extended_options(part: &Part, version: &[u32]) -> String {
    let mut e = format!(
        "offset={},hash_seed={},root_owner=0:0,lazy_itable_init=0,nodiscard",
        part.offset, part.fs_id
    );
    if version >= [1, 47, 0].as_slice() {
        e.push_str(",assume_storage_prezeroed=1");
    }
    e
}

fn mke2fs(image: &Path, part: &Part, dir: &Path, epoch: u64, conf: &Path) -> Result<()> {
    let version = mke2fs_version().map(|v| v.1).unwrap_or_default();
    Cmd::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4", "-b", "4096", "-m", "1"])
        .args(["-L", &part.name])
        .args(["-U", &part.fs_id])
        .arg("-E")
        .arg(extended_options(part, &version))
        .arg("-d")
        .arg(dir)
        .arg(image)
        .arg(format!("{}k", part.size / 1024))
        .env("E2FSPROGS_FAKE_TIME", epoch.to_string())
        // e2fsprogs >= 1.47.1 clamps every inode time to this.
        .env("SOURCE_DATE_EPOCH", epoch.to_string())
        .env("MKE2FS_DEVICE_SECTSIZE", "512")
        .env("MKE2FS_CONFIG", conf)
        .run()
        .with_context(|| format!("writing the {} filesystem", part.name))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn part(size: u64) -> Part {
        Part {
            number: 1,
            name: "root".into(),
            offset: 0,
            size,
            type_guid: String::new(),
            guid: String::new(),
            filesystem: "ext4".into(),
            fs_id: "3aaac84d-c7d5-4182-8bda-044db2b51411".into(),
        }
    }

    #[test]
    fn prezeroed_only_where_mke2fs_knows_it() {
        let p = part(1 << 30);
        assert!(extended_options(&p, &[1, 47, 2]).ends_with(",assume_storage_prezeroed=1"));
        assert!(extended_options(&p, &[1, 47, 0]).contains("assume_storage_prezeroed=1"));
        assert!(!extended_options(&p, &[1, 46, 6]).contains("prezeroed"));
        assert!(!extended_options(&p, &[]).contains("prezeroed"));
    }

    /// A fresh 256 MiB file system allocates its metadata and files, not
    /// its 16 MiB journal and 4 MiB of inode tables as zeroed extents, and
    /// e2fsck finds it clean.
    #[test]
    fn a_filesystem_in_a_fresh_file_allocates_no_zeroed_space() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        std::fs::create_dir(&src).unwrap();
        std::fs::write(src.join("a"), vec![7u8; 100_000]).unwrap();
        let img = d.path().join("fs.img");
        let size = 256 << 20;
        std::fs::File::create(&img).unwrap().set_len(size).unwrap();
        write(&img, &part(size), &src, 1_700_000_000).unwrap();
        let allocated = std::fs::metadata(&img).unwrap().blocks() * 512;
        assert!(allocated < 8 << 20, "{allocated} bytes allocated");
        let fsck = std::process::Command::new("e2fsck")
            .args(["-fn"])
            .arg(&img)
            .output()
            .unwrap();
        assert!(
            fsck.status.success(),
            "{}",
            String::from_utf8_lossy(&fsck.stdout)
        );
    }
}
