//! Sparse files: where their data is (`SEEK_DATA`/`SEEK_HOLE`), copies
//! that keep holes and cross file systems, checksums that skip reading
//! holes, and what a file allocates.

use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

/// Bytes allocated on disk for a file (st_blocks * 512).
pub fn allocated_bytes(p: &Path) -> Result<u64> {
    Ok(fs::metadata(p)?.blocks() * 512)
}

/// The byte ranges `[start, end)` of `f` (of length `len`) that may hold
/// data, in order; the rest are holes. Falls back to one range over
/// everything where the file system cannot report holes.
pub fn data_ranges(f: &fs::File, len: u64) -> Result<Vec<(u64, u64)>> {
    use std::os::fd::AsRawFd;
    let fd = f.as_raw_fd();
    let mut out = Vec::new();
    let mut pos = 0u64;
    while pos < len {
        // SAFETY: lseek on an open descriptor; no memory is passed.
        let data = unsafe { libc::lseek(fd, pos as libc::off_t, libc::SEEK_DATA) };
        if data < 0 {
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::ENXIO) => break, // only a hole remains
                Some(libc::EINVAL) | Some(libc::EOPNOTSUPP) => return Ok(vec![(0, len)]),
                _ => return Err(e).context("seeking data"),
            }
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
        if hole < 0 {
            return Err(std::io::Error::last_os_error()).context("seeking holes");
        }
        let (start, end) = (data as u64, (hole as u64).min(len));
        if end > start {
            out.push((start, end));
        }
        pos = end.max(start + 1);
    }
    Ok(out)
}

/// sha256 of a file, streamed.
pub fn sha256_file(p: &Path) -> Result<String> {
    use std::io::{Seek, SeekFrom};
    let mut f = File::open(p).with_context(|| format!("opening {}", p.display()))?;
    let len = f.metadata()?.len();
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let zeros = vec![0u8; 1 << 20];
    let mut pos = 0;
    // Holes hash as zeros without being read.
    for (start, end) in data_ranges(&f, len)?.into_iter().chain([(len, len)]) {
        while pos < start {
            let n = (start - pos).min(zeros.len() as u64) as usize;
            h.update(&zeros[..n]);
            pos += n as u64;
        }
        f.seek(SeekFrom::Start(start))?;
        while pos < end {
            let want = (end - pos).min(buf.len() as u64) as usize;
            let n = f.read(&mut buf[..want])?;
            if n == 0 {
                anyhow::bail!("{} shrank while being hashed", p.display());
            }
            h.update(&buf[..n]);
            pos += n as u64;
        }
    }
    Ok(hex::encode(h.finalize()))
}

/// Copy `src` to a new file `dst` keeping its holes (a 4 GiB image with
/// 1 GiB of data copies 1 GiB) and its permission bits, then fsync it. The
/// data goes through `copy_file_range` (reflinks where the file system has
/// them), or through plain reads and writes where that cannot cross file
/// systems (tmpfs, NFS, another disk). On failure (a full disk) `dst` is
/// removed.
pub fn copy_sparse(src: &Path, dst: &Path) -> Result<()> {
    let r = copy_sparse_inner(src, dst);
    if r.is_err() {
        let _ = fs::remove_file(dst);
    }
    r.with_context(|| format!("copying {} to {}", src.display(), dst.display()))
}

fn copy_sparse_inner(src: &Path, dst: &Path) -> Result<()> {
    let s = fs::File::open(src).with_context(|| format!("opening {}", src.display()))?;
    let len = s.metadata()?.len();
    let d = fs::File::create(dst).with_context(|| format!("creating {}", dst.display()))?;
    d.set_len(len)?;
    d.set_permissions(s.metadata()?.permissions())?;
    let mut kernel_copy = true;
    for (start, end) in data_ranges(&s, len)? {
        let mut pos = start;
        if kernel_copy {
            match copy_range_in_kernel(&s, &d, start, end) {
                Ok(()) => continue,
                Err((done, e)) if done == start && falls_back(&e) => {
                    kernel_copy = false;
                    pos = done;
                }
                Err((_, e)) => return Err(e.into()),
            }
        }
        copy_range_by_hand(&s, &d, pos, end)?;
    }
    d.sync_all()?;
    Ok(())
}

/// Errors after which `copy_file_range` cannot work between these files
/// but plain reads and writes can.
fn falls_back(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EXDEV | libc::EOPNOTSUPP | libc::ENOSYS | libc::EINVAL)
    )
}

/// `copy_file_range` of `[start, end)` at the same offsets; on error, how
/// far it got.
fn copy_range_in_kernel(
    s: &fs::File,
    d: &fs::File,
    start: u64,
    end: u64,
) -> std::result::Result<(), (u64, std::io::Error)> {
    use std::os::fd::AsRawFd;
    let (mut off_in, mut off_out) = (start as libc::loff_t, start as libc::loff_t);
    while (off_in as u64) < end {
        let want = (end - off_in as u64).min(1 << 30) as usize;
        // SAFETY: both descriptors are open; the offsets are ours.
        let n = unsafe {
            libc::copy_file_range(
                s.as_raw_fd(),
                &mut off_in,
                d.as_raw_fd(),
                &mut off_out,
                want,
                0,
            )
        };
        if n < 0 {
            return Err((off_in as u64, std::io::Error::last_os_error()));
        }
        if n == 0 {
            return Err((
                off_in as u64,
                std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the source shrank"),
            ));
        }
    }
    Ok(())
}

/// Copy `[start, end)` with reads and writes at the same offsets.
fn copy_range_by_hand(s: &fs::File, d: &fs::File, start: u64, end: u64) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = start;
    while pos < end {
        let want = (end - pos).min(buf.len() as u64) as usize;
        let n = s.read_at(&mut buf[..want], pos)?;
        if n == 0 {
            bail!("the source shrank while being copied");
        }
        d.write_all_at(&buf[..n], pos)?;
        pos += n as u64;
    }
    Ok(())
}

/// Make `dst` a hard link of `src`, or a sparse copy across file systems.
pub fn link_or_copy(src: &Path, dst: &Path) -> Result<()> {
    let _ = fs::remove_file(dst);
    match fs::hard_link(src, dst) {
        Ok(()) => Ok(()),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EXDEV | libc::EPERM | libc::EMLINK)
            ) =>
        {
            copy_sparse(src, dst)
        }
        Err(e) => Err(e).with_context(|| format!("linking {} to {}", src.display(), dst.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_copy_keeps_holes_contents_and_mode() {
        use std::io::{Seek, SeekFrom, Write};
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        let mut f = fs::File::create(&src).unwrap();
        f.set_len(64 << 20).unwrap();
        f.seek(SeekFrom::Start(8 << 20)).unwrap();
        f.write_all(&[7u8; 100_000]).unwrap();
        f.seek(SeekFrom::Start((64 << 20) - 3)).unwrap();
        f.write_all(b"end").unwrap();
        drop(f);
        fs::set_permissions(&src, fs::Permissions::from_mode(0o600)).unwrap();
        let dst = d.path().join("dst");
        copy_sparse(&src, &dst).unwrap();
        assert_eq!(fs::read(&src).unwrap(), fs::read(&dst).unwrap());
        assert_eq!(
            fs::metadata(&dst).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(
            allocated_bytes(&dst).unwrap() < 4 << 20,
            "holes were filled"
        );
        let ranges = data_ranges(&fs::File::open(&dst).unwrap(), 64 << 20).unwrap();
        assert!(ranges.len() >= 2 && ranges[0].0 >= 4 << 20, "{ranges:?}");
        // The hole-skipping checksum equals a plain one over every byte.
        use sha2::Digest;
        assert_eq!(
            sha256_file(&dst).unwrap(),
            hex::encode(sha2::Sha256::digest(fs::read(&src).unwrap()))
        );
    }

    #[test]
    fn by_hand_copy_keeps_holes_like_the_kernel_copy() {
        use std::io::{Seek, SeekFrom, Write};
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        let mut f = fs::File::create(&src).unwrap();
        f.set_len(16 << 20).unwrap();
        f.seek(SeekFrom::Start(5 << 20)).unwrap();
        f.write_all(&[9u8; 3 << 20]).unwrap();
        drop(f);
        let s = fs::File::open(&src).unwrap();
        let dst = d.path().join("dst");
        let out = fs::File::create(&dst).unwrap();
        out.set_len(16 << 20).unwrap();
        for (a, b) in data_ranges(&s, 16 << 20).unwrap() {
            copy_range_by_hand(&s, &out, a, b).unwrap();
        }
        assert_eq!(fs::read(&src).unwrap(), fs::read(&dst).unwrap());
        assert!(allocated_bytes(&dst).unwrap() < 8 << 20);
        assert!(falls_back(&std::io::Error::from_raw_os_error(libc::EXDEV)));
        assert!(!falls_back(&std::io::Error::from_raw_os_error(
            libc::ENOSPC
        )));
    }
}
