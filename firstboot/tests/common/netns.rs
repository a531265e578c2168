//! Two test hosts as network namespaces `abfb-h1` (10.77.0.1) and `abfb-h2`
//! (10.77.0.2) joined by a veth pair; removed with every process in them
//! at the start and when the guard drops (panics included).

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use super::stderr;

/// Namespace names.
pub const NS: [&str; 2] = ["abfb-h1", "abfb-h2"];
/// Host addresses.
pub const IP: [&str; 2] = ["10.77.0.1", "10.77.0.2"];
const VETH: [&str; 2] = ["abfb-v1", "abfb-v2"];

/// Run argv with null stdin.
pub fn sh(argv: &[&str]) -> Output {
    Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .output()
        .expect("command runs")
}

/// Run argv; panic unless it succeeds.
pub fn must(argv: &[&str]) {
    let o = sh(argv);
    assert!(o.status.success(), "{argv:?}: {}", stderr(&o));
}

/// Kill every process in our namespaces, then remove them and the veth.
fn cleanup() {
    for ns in NS {
        for _ in 0..50 {
            let pids =
                String::from_utf8_lossy(&sh(&["ip", "netns", "pids", ns]).stdout).into_owned();
            if pids.trim().is_empty() {
                break;
            }
            for pid in pids.split_whitespace() {
                let _ = sh(&["kill", "-9", pid]);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = sh(&["ip", "netns", "del", ns]);
    }
    let _ = sh(&["ip", "link", "del", VETH[0]]);
}

/// The two hosts; torn down on drop (panics included).
pub struct Hosts;

impl Hosts {
    /// Make both hosts (after removing leftovers).
    pub fn new() -> Hosts {
        cleanup();
        let guard = Hosts;
        must(&[
            "ip", "link", "add", VETH[0], "type", "veth", "peer", "name", VETH[1],
        ]);
        for i in 0..2 {
            must(&["ip", "netns", "add", NS[i]]);
            must(&["ip", "link", "set", VETH[i], "netns", NS[i]]);
            must(&[
                "ip",
                "-n",
                NS[i],
                "addr",
                "add",
                &format!("{}/24", IP[i]),
                "dev",
                VETH[i],
            ]);
            must(&["ip", "-n", NS[i], "link", "set", VETH[i], "up"]);
            must(&["ip", "-n", NS[i], "link", "set", "lo", "up"]);
        }
        guard
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        cleanup();
    }
}

/// Whether to run (false only when ATOMIC_FIRSTBOOT_SKIP_NETNS is set);
/// fails when root or a tool is missing.
pub fn preconditions() -> bool {
    if std::env::var_os("ATOMIC_FIRSTBOOT_SKIP_NETNS").is_some() {
        println!("SKIPPED: ATOMIC_FIRSTBOOT_SKIP_NETNS is set");
        return false;
    }
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test makes network namespaces: run it as root"
    );
    for tool in ["ip", "etcd", "etcdctl", "openssl"] {
        let found = sh(&["sh", "-c", &format!("command -v {tool}")])
            .status
            .success();
        assert!(
            found,
            "{tool} is missing: apt-get install iproute2 etcd-server etcd-client openssl"
        );
    }
    true
}
