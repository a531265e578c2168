//! Every driver a supported platform needs, and everything Kubernetes
//! networking loads, resolves in the image's module set: host kmod's
//! `modprobe -S KVER -d ROOT --show-depends` on the image's deployment.
//! The list is fixed here, not derived from the module profile that trims
//! the set, so a profile that drops too much fails this. The initramfs
//! (the container-host profile's: ext4 only, no crypt/dm) must still hold
//! every disk driver of the list and ext4.

use std::path::Path;
use std::process::Command;

/// Platform drivers: QEMU/KVM clouds (virtio), AWS (NVMe, ENA, ixgbevf),
/// GCP (gVNIC), Azure and Hyper-V (hv_*, mlx5), VMware (vmxnet3, PVSCSI,
/// e1000e), VirtualBox and OVAs (AHCI, e1000), Xen; file systems the image
/// mounts.
const PLATFORM: &[&str] = &[
    "virtio_pci",
    "virtio_blk",
    "virtio_net",
    "virtio_scsi",
    "virtio_balloon",
    "virtio_console",
    "virtio_rng",
    "nvme",
    "ena",
    "ixgbevf",
    "ahci",
    "sd_mod",
    "e1000",
    "e1000e",
    "vmxnet3",
    "vmw_pvscsi",
    "hv_vmbus",
    "hv_netvsc",
    "hv_storvsc",
    "hv_utils",
    "mlx5_core",
    "xen_netfront",
    "xen_blkfront",
    "gve",
    "ext4",
    "vfat",
];

/// What Kubernetes networking (kube-proxy in iptables/nftables/IPVS mode,
/// flannel/Calico/Cilium overlays) and container runtimes load.
const KUBERNETES: &[&str] = &[
    "overlay",
    "br_netfilter",
    "bridge",
    "veth",
    "vxlan",
    "geneve",
    "ipip",
    "wireguard",
    "tun",
    "dummy",
    "nf_conntrack",
    "nf_nat",
    "ip_tables",
    "iptable_filter",
    "iptable_nat",
    "iptable_mangle",
    "ip6_tables",
    "ip6table_filter",
    "ip6table_nat",
    "xt_conntrack",
    "xt_MASQUERADE",
    "xt_comment",
    "xt_mark",
    "xt_multiport",
    "nf_tables",
    "nft_chain_nat",
    "nft_compat",
    "nft_ct",
    "ip_vs",
    "ip_vs_rr",
    "ip_vs_wrr",
    "ip_vs_sh",
    "ip_set",
];

/// Every module of the fixed lists that does not resolve in `root` (a
/// deployment), with modprobe's words.
pub fn check(root: &Path) -> Vec<String> {
    let kvers: Vec<String> = std::fs::read_dir(root.join("usr/lib/modules"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let [kver] = &kvers[..] else {
        return vec![format!("expected one kernel in the image, found {kvers:?}")];
    };
    let mut bad = initramfs(root, kver);
    for m in PLATFORM.iter().chain(KUBERNETES) {
        let o = Command::new("modprobe")
            .arg("-S")
            .arg(kver)
            .arg("-d")
            .arg(root)
            .args(["--show-depends", m])
            .output()
            .expect("modprobe (package kmod) runs");
        let out = String::from_utf8_lossy(&o.stdout);
        let err = String::from_utf8_lossy(&o.stderr);
        // Each line: `insmod /ROOT/usr/lib/modules/.../x.ko.xz` or `builtin x`.
        let missing: Vec<&str> = out
            .lines()
            .filter_map(|l| l.strip_prefix("insmod "))
            .map(|p| p.split_whitespace().next().unwrap_or(""))
            .filter(|p| !Path::new(p).is_file())
            .collect();
        if !o.status.success() || out.trim().is_empty() || !missing.is_empty() {
            bad.push(format!(
                "module {m} does not resolve in the image: {}{}{}",
                err.trim(),
                out.trim(),
                if missing.is_empty() {
                    String::new()
                } else {
                    format!(" (missing files {missing:?})")
                }
            ));
        }
    }
    bad
}

/// The disk drivers of [`PLATFORM`] and the root's file system, as module
/// files.
const IN_INITRAMFS: &[&str] = &[
    "virtio_blk",
    "virtio_scsi",
    "nvme",
    "ahci",
    "sd_mod",
    "vmw_pvscsi",
    "hv_storvsc",
    "xen-blkfront",
    "ext4",
];

/// What the test image's initramfs lacks or has too much of.
fn initramfs(root: &Path, kver: &str) -> Vec<String> {
    let img = root.join(format!("usr/lib/modules/{kver}/initramfs.img"));
    let names = match atomicbuild::stage::initramfs::members(&img) {
        Ok(n) => n,
        Err(e) => return vec![format!("listing the initramfs: {e:#}")],
    };
    let has = |suffix: &str| names.iter().any(|n| n.ends_with(suffix));
    let mut bad: Vec<String> = IN_INITRAMFS
        .iter()
        .filter(|m| !has(&format!("/{m}.ko.xz")))
        .map(|m| format!("the initramfs lacks the module {m}"))
        .collect();
    for unwanted in [
        "/btrfs.ko.xz",
        "/xfs.ko.xz",
        "/libcryptsetup.so.12",
        "/dmsetup",
    ] {
        if has(unwanted) {
            bad.push(format!(
                "the container-host initramfs holds {unwanted} (ext4 only, no crypt/dm)"
            ));
        }
    }
    let modules = names.iter().filter(|n| n.contains(".ko")).count();
    eprintln!("initramfs: {} members, {modules} modules", names.len());
    bad
}
