//! Failpoints for kill-safety tests: with `ATOMICBUILD_FAILPOINT=NAME` in
//! the environment, the build kills itself with SIGKILL (what `kill -9`, the
//! OOM killer or a power cut leave behind: no destructors, no cleanup) when
//! it reaches the point `NAME`. The next build must clean up after it and
//! produce what a clean build produces. [`POINTS`] lists every point, in
//! the order a build reaches them.

use std::sync::OnceLock;

/// Every failpoint, in build order: at least one in every stage.
pub const POINTS: &[&str] = &[
    "install.checked-out",
    "customize.overlays-applied",
    "initramfs.built",
    "shape.etc-moved",
    "lint.done",
    "commit.written",
    "deploy.pulled",
    "disk.esp-written",
    "disk.root-written",
    "cache.entry-filled",
    "finish.before-rename",
    "formats.written",
    "record.before-sums",
];

fn armed() -> Option<&'static str> {
    static ARMED: OnceLock<Option<String>> = OnceLock::new();
    ARMED
        .get_or_init(|| std::env::var("ATOMICBUILD_FAILPOINT").ok())
        .as_deref()
}

/// Kill this process if `name` is the armed failpoint.
pub fn hit(name: &str) {
    debug_assert!(POINTS.contains(&name), "unlisted failpoint {name}");
    if armed() == Some(name) {
        eprintln!("failpoint {name}: killing the build (SIGKILL)");
        // SAFETY: kill(2) on our own pid has no memory-safety preconditions.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}
