//! The VM tests' scratch directory in /var/tmp (images, caches, repositories:
//! gigabytes). The shared image lives in a static, which Rust never drops, so
//! the directory is removed by an exit handler; a run that was killed leaves
//! its directory behind, and the next run removes it (and stops what still
//! runs from it: etcd, web servers, QEMU, gpg-agents).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const PREFIX: &str = "atomicbuild-qemu-test.";
const OWNER: &str = "owner.pid";

static DIR: OnceLock<PathBuf> = OnceLock::new();

extern "C" fn remove_at_exit() {
    if let Some(dir) = DIR.get() {
        remove(dir);
    }
}

/// A new scratch directory, removed when this process exits; stale ones
/// (whose owning process is gone) are removed first.
pub fn create() -> PathBuf {
    let base = Path::new("/var/tmp");
    std::fs::create_dir_all(base).unwrap();
    sweep(base);
    let dir = tempfile::Builder::new()
        .prefix(PREFIX)
        .tempdir_in(base)
        .unwrap()
        .keep();
    std::fs::write(dir.join(OWNER), std::process::id().to_string()).unwrap();
    DIR.set(dir.clone()).expect("one scratch directory per run");
    // SAFETY: registers a plain function; it only touches the OnceLock.
    unsafe { libc::atexit(remove_at_exit) };
    dir
}

fn sweep(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if !name.starts_with(PREFIX) {
            continue;
        }
        let owner = std::fs::read_to_string(e.path().join(OWNER)).unwrap_or_default();
        let alive = owner
            .trim()
            .parse::<u32>()
            .is_ok_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        if !alive {
            eprintln!(
                "removing {} (left by a run that was stopped)",
                e.path().display()
            );
            remove(&e.path());
        }
    }
}

/// Stop every process whose command line names `dir`, then remove it.
fn remove(dir: &Path) {
    let needle = dir.to_string_lossy().to_string();
    let me = std::process::id();
    if let Ok(procs) = std::fs::read_dir("/proc") {
        for p in procs.flatten() {
            let Ok(pid) = p.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let cmdline = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
            if pid != me && String::from_utf8_lossy(&cmdline).contains(&needle) {
                // SAFETY: sending a signal has no memory effects here.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
        }
    }
    // Never descend into a mount a killed build left behind.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut below: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&needle))
        .collect();
    below.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in below {
        let c = std::ffi::CString::new(m).unwrap();
        // SAFETY: a valid C string; detaching a mount below our scratch dir.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
    let _ = std::fs::remove_dir_all(dir);
}
