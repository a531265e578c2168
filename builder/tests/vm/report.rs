//! The scenario-specific checks of the test image's boots: what
//! `qemu-tests/001_k8s_host/expect.toml` reports as facts and cannot judge
//! itself (whether the guest was provisioned, how far its disk grew, which
//! commit it booted). Everything else there is judged by `atomicbuild
//! test`'s own runner.

use atomicbuild::vmtest::BootReport;

use crate::firstboot_vm;

/// Collects mismatches: `expect(ok, what should hold, what was seen)`.
#[derive(Default)]
struct Mismatches(Vec<String>);

impl Mismatches {
    fn expect(&mut self, ok: bool, what: &str, got: impl Into<String>) {
        if !ok {
            self.0.push(format!("{what}; got: {:?}", got.into()));
        }
    }
}

/// How a guest was booted: with or without user data, on a disk enlarged
/// by `grown_by` bytes.
pub struct BootCase<'a> {
    pub provisioned: Option<&'a firstboot_vm::Guest>,
    pub grown_by: u64,
    /// The root disk's name without its number (`nvme0n`, `sd`) and the
    /// NIC's driver the boot's device models give.
    pub devices: (&'a str, &'a str),
}

/// Compare what the guest reported with what the manifest and the build
/// metadata say; return every mismatch.
pub fn check_report(
    r: &BootReport,
    case: &BootCase,
    m: &atomicbuild::manifest::Manifest,
    commit: &str,
) -> Vec<String> {
    let mut bad = Mismatches::default();
    check_commit(r, commit, &mut bad);
    check_root_growth(r, m, case.grown_by, &mut bad);
    match case.provisioned {
        Some(guest) => check_provisioned(r, guest, m, &mut bad),
        None => check_unprovisioned(r, m, &mut bad),
    }
    super::node::check_boot(r, case.provisioned.is_some(), &mut bad.0);
    super::containers::check_boot(r, case.provisioned.is_some(), &mut bad.0);
    check_devices_and_lean(r, case.devices, &mut bad);
    bad.0
}

/// The boot ran on the device models asked for (their drivers are in the
/// trimmed module set), and the image is lean: modules compressed, none of
/// the dropped subsystems, no documentation, man pages or translations,
/// every package's copyright file.
fn check_devices_and_lean(r: &BootReport, (disk, nic): (&str, &str), bad: &mut Mismatches) {
    let dev = r.fact("devices");
    let root_disk = dev
        .lines()
        .find_map(|l| l.strip_prefix("root-disk "))
        .unwrap_or("");
    bad.expect(
        root_disk.starts_with(disk),
        &format!("the root should be on a {disk}* disk"),
        dev.clone(),
    );
    bad.expect(
        dev.lines().any(|l| l == format!("nic {nic}")),
        &format!("the network card should be driven by {nic}"),
        dev.clone(),
    );
    let lean = r.fact("lean");
    let n = |k: &str| -> i64 {
        lean.lines()
            .find_map(|l| l.strip_prefix(&format!("{k} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(-1)
    };
    for (k, want) in [
        ("ko", 0),
        ("gpu", 0),
        ("man", 0),
        ("doc-other", 0),
        ("locale", 0),
        // packages.leave_out: containers run (the container facts) with
        // runc.v2 alone.
        ("legacy-shims", 0),
        ("shim-v2", 1),
    ] {
        bad.expect(
            n(k) == want,
            &format!("lean image: {k} should be {want}"),
            lean.clone(),
        );
    }
    bad.expect(
        n("ko-xz") > 500,
        "lean image: the modules should be .ko.xz",
        lean.clone(),
    );
    bad.expect(
        n("copyright") > 100,
        "lean image: copyright files stay",
        lean.clone(),
    );
}

/// The guest booted this build's commit.
fn check_commit(r: &BootReport, commit: &str, bad: &mut Mismatches) {
    let st = r.fact("ostree");
    bad.expect(
        st.contains(commit) && st.lines().any(|l| l.starts_with("* ")),
        &format!("ostree admin status should show the built commit {commit} as booted"),
        st,
    );
}

/// The root filesystem spans its partition, which reaches the end of the
/// disk, however much the disk grew before the boot.
fn check_root_growth(
    r: &BootReport,
    m: &atomicbuild::manifest::Manifest,
    grown_by: u64,
    bad: &mut Mismatches,
) {
    let disk: u64 = r.fact("disk-bytes").trim().parse().unwrap_or(0);
    bad.expect(
        disk == m.disk.size + grown_by,
        &format!("the disk should have {} bytes", m.disk.size + grown_by),
        disk.to_string(),
    );
    let part = atomicbuild::disk::layout(&m.disk, &m.image_seed())
        .part("root")
        .size;
    let fs: u64 = r.fact("root-size").trim().parse().unwrap_or(0);
    let log = r.fact("growroot-log");
    // ext4 reports its size less its metadata (a few per cent).
    let want = part + grown_by;
    bad.expect(
        fs <= want && fs > want / 100 * 95,
        &format!("/ should span the root partition of {want} bytes (growroot said: {log})"),
        fs.to_string(),
    );
    bad.expect(
        if grown_by > 0 {
            log.contains("grown to") && log.contains("filesystem grown")
        } else {
            log.contains("already fills the disk")
        },
        "atomic-growroot should say what it did",
        log,
    );
}

/// A guest with user data: provisioned by the agent, joined to etcd.
fn check_provisioned(
    r: &BootReport,
    guest: &firstboot_vm::Guest,
    m: &atomicbuild::manifest::Manifest,
    bad: &mut Mismatches,
) {
    let act = r.facts.get("fact:active").cloned().unwrap_or_default();
    bad.expect(
        act.len() == 5 && act.iter().all(|a| a == "active"),
        "atomic-firstboot, containerd, etcd, ssh and networkd should be active",
        act.join(","),
    );
    let stamp = r.fact("firstboot-stamp");
    bad.expect(
        stamp == "present",
        &format!(
            "atomic-firstboot should have finished (its log:\n{})",
            r.fact("firstboot-log")
        ),
        stamp,
    );
    let ec = r.fact("etcd-conf");
    bad.expect(
        ec.lines()
            .any(|l| l.starts_with("initial-cluster-state:") && l.contains("existing"))
            && ec.contains(&format!(
                "heartbeat-interval: {}",
                firstboot_vm::HEARTBEAT_MS
            )),
        "the agent should have configured etcd (existing cluster, the config's timing)",
        ec,
    );
    let el = r.fact("etcd-listen");
    bad.expect(
        // Go listens on 0.0.0.0 with a dual-stack socket: ss shows `*`.
        ["2379", "2380"].iter().all(|p| {
            el.lines()
                .any(|l| l == format!("*:{p}") || l == format!("0.0.0.0:{p}"))
        }),
        "etcd should listen on all addresses (listen_*_urls)",
        el,
    );
    let kc = r.fact("kubelet-conf");
    bad.expect(
        kc.contains("/etc/kubernetes/bootstrap-kubelet.conf 600")
            && kc.contains("/var/lib/kubelet/config.yaml"),
        "the kubelet's bootstrap kubeconfig (0600) and config should be written",
        kc,
    );
    let fb = r.fact("fb-passwd");
    let u = firstboot_vm::FB_USER;
    bad.expect(
        fb.starts_with(&format!("{u}:x:")) && fb.contains(&format!(":/home/{u}:")),
        "the first-boot config's user should exist",
        fb,
    );
    let fk = r
        .facts
        .get("fact:fb-authorized-keys")
        .cloned()
        .unwrap_or_default();
    bad.expect(
        fk == [firstboot_vm::FB_KEY],
        "the first-boot config's key should be authorized",
        fk.join("\n"),
    );
    // The first-boot config's hostname wins over the image's.
    let hn = r.fact("hostname");
    bad.expect(
        hn == guest.hostname() && hn != m.hostname,
        "hostname should be the first-boot config's",
        hn,
    );
}

/// A plain boot without user data (what VirtualBox users of the OVA get):
/// the agent says so within seconds and provisions nothing; the image's
/// own settings stay; etcd stays off; nothing failed.
fn check_unprovisioned(r: &BootReport, m: &atomicbuild::manifest::Manifest, bad: &mut Mismatches) {
    let act = r.facts.get("fact:active").cloned().unwrap_or_default();
    bad.expect(
        act == ["active", "active", "inactive", "active", "active"],
        "atomic-firstboot (finished), containerd, ssh and networkd should be active, etcd off",
        act.join(","),
    );
    let log = r.fact("firstboot-log");
    bad.expect(
        log.contains("no user data on this platform (qemu)"),
        "atomic-firstboot should say there is no user data",
        log.clone(),
    );
    let took = r.fact("firstboot-time");
    let us = |key: &str| -> Option<u64> {
        took.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .and_then(|v| v.trim().parse().ok())
    };
    let secs = match (
        us("ExecMainStartTimestampMonotonic"),
        us("ExecMainExitTimestampMonotonic"),
    ) {
        (Some(a), Some(b)) if b >= a && a > 0 => Some((b - a) as f64 / 1e6),
        _ => None,
    };
    bad.expect(
        secs.is_some_and(|s| s < 5.0),
        "atomic-firstboot should finish within a few seconds",
        format!("{secs:?} s from {took}"),
    );
    let stamp = r.fact("firstboot-stamp");
    bad.expect(
        stamp == "missing",
        "no provisioning stamp without user data",
        stamp,
    );
    let hn = r.fact("hostname");
    bad.expect(hn == m.hostname, "the image's hostname should stay", hn);
    let fb = r.fact("fb-passwd");
    bad.expect(fb.is_empty(), "no first-boot user without user data", fb);
}
