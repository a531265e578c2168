//! What a boot reported on its serial console, and the checks of it.

use std::collections::BTreeMap;

use atomicbuild::model::Firmware;

use crate::firstboot_vm;

/// Facts a boot reported: check name → lines.
pub type Report = BTreeMap<String, Vec<String>>;

pub fn parse_report(console: &str) -> Report {
    let mut r = Report::new();
    for line in console.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(pos) = line.find("ABCHECK ") {
            let rest = &line[pos + 8..];
            if let Some((name, value)) = rest.split_once("| ") {
                r.entry(name.to_string())
                    .or_default()
                    .push(value.to_string());
            }
        }
    }
    r
}

pub fn one(r: &Report, name: &str) -> String {
    r.get(name).map(|v| v.join("\n")).unwrap_or_default()
}

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
    pub firmware: Firmware,
    pub provisioned: Option<&'a firstboot_vm::Guest>,
    pub grown_by: u64,
}

/// Compare what the guest reported with what the manifest and the build
/// metadata say; return every mismatch.
pub fn check_report(
    r: &Report,
    case: &BootCase,
    m: &atomicbuild::manifest::Manifest,
    commit: &str,
) -> Vec<String> {
    let mut bad = Mismatches::default();
    check_system(r, case.firmware, m, commit, &mut bad);
    check_root_growth(r, m, case.grown_by, &mut bad);
    match case.provisioned {
        Some(guest) => check_provisioned(r, guest, m, &mut bad),
        None => check_unprovisioned(r, m, &mut bad),
    }
    bad.0
}

/// What every boot must show: a clean, read-only OSTree system from this
/// build, the manifest's user, firmware, networking.
fn check_system(
    r: &Report,
    firmware: Firmware,
    m: &atomicbuild::manifest::Manifest,
    commit: &str,
    bad: &mut Mismatches,
) {
    let state = one(r, "state");
    bad.expect(state == "running", "system state should be running", state);
    let failed = one(r, "failed");
    bad.expect(
        failed.trim().is_empty(),
        "no unit should have failed",
        failed,
    );
    let w = one(r, "usr-write");
    bad.expect(
        w.contains("rc=") && !w.contains("WRITABLE"),
        "writing to /usr must fail",
        w,
    );
    let mo = one(r, "usr-mount");
    bad.expect(
        mo.split(',').any(|o| o == "ro"),
        "/usr must be mounted read-only",
        mo,
    );
    let st = one(r, "ostree");
    bad.expect(
        st.contains(commit) && st.lines().any(|l| l.starts_with("* ")),
        &format!("ostree admin status should show the built commit {commit} as booted"),
        st,
    );
    let ctr = one(r, "containerd");
    bad.expect(
        ctr.contains("Server:"),
        "containerd should answer `ctr version`",
        ctr,
    );
    let cmdline = one(r, "cmdline");
    for a in m
        .kernel_args
        .iter()
        .map(String::as_str)
        .chain(["root=LABEL=root", "atomic.platform=qemu"])
    {
        bad.expect(
            cmdline.split_whitespace().any(|w| w == a),
            &format!("kernel argument {a} should be on /proc/cmdline"),
            cmdline.clone(),
        );
    }
    let user = &m.users[0];
    let pw = one(r, "passwd");
    bad.expect(
        pw.starts_with(&format!("{}:x:", user.name))
            && pw.contains(&format!(":/home/{}:", user.name)),
        "the manifest's user should exist",
        pw,
    );
    let groups = one(r, "groups");
    for g in &user.groups {
        bad.expect(
            groups.split_whitespace().any(|x| x == g),
            &format!("user should be in group {g}"),
            groups.clone(),
        );
    }
    let keys = r.get("authorized-keys").cloned().unwrap_or_default();
    bad.expect(
        keys == user.ssh_authorized_keys,
        "authorized_keys should hold exactly the manifest's keys",
        keys.join("\n"),
    );
    let perm = one(r, "keys-perm");
    bad.expect(
        perm == format!("{} 600", user.name),
        "authorized_keys should be owned by the user, mode 600",
        perm,
    );
    let fw = one(r, "firmware");
    let want = if firmware == Firmware::Uefi {
        "uefi"
    } else {
        "bios"
    };
    bad.expect(
        fw == want,
        &format!("the guest should have booted with {want}"),
        fw,
    );
    let bm = one(r, "boot-mount");
    bad.expect(
        bm.contains("ext4"),
        "/boot should be the ext4 boot partition",
        bm,
    );
    let hk: u32 = one(r, "hostkeys").trim().parse().unwrap_or(0);
    bad.expect(
        hk >= 1,
        "SSH host keys should be generated on first boot",
        hk.to_string(),
    );
    // QEMU user networking hands out 10.0.2.15 over DHCP.
    let ip = one(r, "ipv4");
    bad.expect(
        ip.starts_with("10.0.2.15/"),
        "networkd should have configured the NIC by DHCP",
        ip,
    );
}

/// The root filesystem spans its partition, which reaches the end of the
/// disk, however much the disk grew before the boot.
fn check_root_growth(
    r: &Report,
    m: &atomicbuild::manifest::Manifest,
    grown_by: u64,
    bad: &mut Mismatches,
) {
    let disk: u64 = one(r, "disk-bytes").trim().parse().unwrap_or(0);
    bad.expect(
        disk == m.disk.size + grown_by,
        &format!("the disk should have {} bytes", m.disk.size + grown_by),
        disk.to_string(),
    );
    let part = atomicbuild::disk::layout(&m.disk, &m.image_seed())
        .part("root")
        .size;
    let fs: u64 = one(r, "root-size").trim().parse().unwrap_or(0);
    let log = one(r, "growroot-log");
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
    r: &Report,
    guest: &firstboot_vm::Guest,
    m: &atomicbuild::manifest::Manifest,
    bad: &mut Mismatches,
) {
    let act = r.get("active").cloned().unwrap_or_default();
    bad.expect(
        act.len() == 5 && act.iter().all(|a| a == "active"),
        "atomic-firstboot, containerd, etcd, ssh and networkd should be active",
        act.join(","),
    );
    let stamp = one(r, "firstboot-stamp");
    bad.expect(
        stamp == "present",
        &format!(
            "atomic-firstboot should have finished (its log:\n{})",
            one(r, "firstboot-log")
        ),
        stamp,
    );
    let ec = one(r, "etcd-conf");
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
    let el = one(r, "etcd-listen");
    bad.expect(
        // Go listens on 0.0.0.0 with a dual-stack socket: ss shows `*`.
        ["2379", "2380"].iter().all(|p| {
            el.lines()
                .any(|l| l == format!("*:{p}") || l == format!("0.0.0.0:{p}"))
        }),
        "etcd should listen on all addresses (listen_*_urls)",
        el,
    );
    let kc = one(r, "kubelet-conf");
    bad.expect(
        kc.contains("/etc/kubernetes/bootstrap-kubelet.conf 600")
            && kc.contains("/var/lib/kubelet/config.yaml"),
        "the kubelet's bootstrap kubeconfig (0600) and config should be written",
        kc,
    );
    let fb = one(r, "fb-passwd");
    let u = firstboot_vm::FB_USER;
    bad.expect(
        fb.starts_with(&format!("{u}:x:")) && fb.contains(&format!(":/home/{u}:")),
        "the first-boot config's user should exist",
        fb,
    );
    let fk = r.get("fb-authorized-keys").cloned().unwrap_or_default();
    bad.expect(
        fk == [firstboot_vm::FB_KEY],
        "the first-boot config's key should be authorized",
        fk.join("\n"),
    );
    // The first-boot config's hostname wins over the image's.
    let hn = one(r, "hostname");
    bad.expect(
        hn == guest.hostname() && hn != m.hostname,
        "hostname should be the first-boot config's",
        hn,
    );
}

/// A plain boot without user data (what VirtualBox users of the OVA get):
/// the agent says so within seconds and provisions nothing; the image's
/// own settings stay; etcd stays off; nothing failed.
fn check_unprovisioned(r: &Report, m: &atomicbuild::manifest::Manifest, bad: &mut Mismatches) {
    let act = r.get("active").cloned().unwrap_or_default();
    bad.expect(
        act == ["active", "active", "inactive", "active", "active"],
        "atomic-firstboot (finished), containerd, ssh and networkd should be active, etcd off",
        act.join(","),
    );
    let log = one(r, "firstboot-log");
    bad.expect(
        log.contains("no user data on this platform (qemu)"),
        "atomic-firstboot should say there is no user data",
        log.clone(),
    );
    let took = one(r, "firstboot-time");
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
    let stamp = one(r, "firstboot-stamp");
    bad.expect(
        stamp == "missing",
        "no provisioning stamp without user data",
        stamp,
    );
    let hn = one(r, "hostname");
    bad.expect(hn == m.hostname, "the image's hostname should stay", hn);
    let fb = one(r, "fb-passwd");
    bad.expect(fb.is_empty(), "no first-boot user without user data", fb);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_parser_reads_prefixed_lines_amid_noise() {
        let r = parse_report("junk\r\n[  5.1] x ABCHECK state| running\r\nABCHECK active| active\nABCHECK active| inactive\n");
        assert_eq!(one(&r, "state"), "running");
        assert_eq!(r["active"], vec!["active", "inactive"]);
    }
}
