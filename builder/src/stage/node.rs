//! What makes the installed packages a working node, written by the
//! builder (never hand-edited files) into every image that has the part:
//! containerd's configuration for the kubelet's CRI (systemd cgroups, the
//! pause image pinned, registry hosts under `/etc/containerd/certs.d`), the
//! kubelet kept off until its bootstrap files exist (so an unprovisioned
//! host never crash-loops it), and, where an SELinux policy is installed,
//! Debian's automatic relabelling switched off (an OSTree commit carries
//! its labels; a relabel would rewrite the shared, hard-linked objects).

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::fsutil;

/// containerd's configuration in the image.
pub const CONTAINERD_CONFIG: &str = "etc/containerd/config.toml";

/// The pause (sandbox) image the CRI plugin uses: the one kubeadm 1.34
/// expects, so that a preloaded copy is found without a registry.
pub const PAUSE_IMAGE: &str = "registry.k8s.io/pause:3.10.1";

/// The kubelet's drop-in.
pub const KUBELET_DROPIN: &str =
    "usr/lib/systemd/system/kubelet.service.d/20-atomicbuild-node.conf";

const KUBELET_DROPIN_TEXT: &str = "\
# Written by atomicbuild. The kubelet starts only once its configuration and
# a kubeconfig exist (written by atomic-firstboot on first boot, or by
# kubeadm), after the container runtime: on a host without them it stays
# inactive instead of failing every few seconds.
[Unit]
After=atomic-firstboot.service containerd.service
Wants=containerd.service
ConditionPathExists=/var/lib/kubelet/config.yaml
ConditionPathExists=|/etc/kubernetes/bootstrap-kubelet.conf
ConditionPathExists=|/etc/kubernetes/kubelet.conf
";

/// The container network every container runtime on the host uses (the
/// CRI plugin, `ctr run --cni`), written when the CNI plugins are
/// installed and no overlay brings a network of its own.
pub const CNI_CONFLIST: &str = "etc/cni/net.d/10-atomicbuild-bridge.conflist";

/// Where Debian's containernetworking-plugins are (containerd looks there).
pub const CNI_PLUGINS: &str = "usr/lib/cni";

/// A bridge (`cni0`, the host its gateway) with addresses from
/// 10.88.0.0/16 and outgoing traffic masqueraded, and port mappings.
/// IP address state is kept under /var/lib/cni, the host's writable part.
pub fn cni_conflist() -> String {
    r#"{
  "cniVersion": "1.0.0",
  "name": "atomicbuild",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "10.88.0.0/16"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
"#
    .to_string()
}

/// Units Debian's policycoreutils ships that would relabel the whole file
/// system at boot.
pub const RELABEL_UNITS: &[&str] = &[
    "selinux-autorelabel-mark.service",
    "selinux-autorelabel.service",
];

/// containerd's configuration: Debian's settings (CNI plugin and config
/// directories, the opt plugin's path) plus the kubelet's needs.
pub fn containerd_config() -> String {
    format!(
        "# Written by atomicbuild: the CRI plugin set up for the kubelet (systemd\n\
         # cgroups, as the kubelet's cgroupDriver), the pause image pinned, registry\n\
         # settings read from /etc/containerd/certs.d/HOST/hosts.toml.\n\
         version = 2\n\n\
         [plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"{PAUSE_IMAGE}\"\n\n\
         [plugins.\"io.containerd.grpc.v1.cri\".cni]\n  bin_dir = \"/usr/lib/cni\"\n  conf_dir = \"/etc/cni/net.d\"\n\n\
         [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n  runtime_type = \"io.containerd.runc.v2\"\n\n\
         [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\n  SystemdCgroup = true\n\n\
         [plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/etc/containerd/certs.d\"\n\n\
         [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"/var/lib/containerd/opt\"\n"
    )
}

fn has_unit(root: &Path, unit: &str) -> bool {
    [
        "usr/lib/systemd/system",
        "lib/systemd/system",
        "etc/systemd/system",
    ]
    .iter()
    .any(|d| root.join(d).join(unit).exists())
}

/// What [`wire`] asks of systemd.
#[derive(Default, Debug)]
pub struct Units {
    /// Units to enable.
    pub enable: Vec<String>,
    /// Units to mask.
    pub mask: Vec<String>,
}

/// Write the node's wiring into `root` for the parts it has (a file that
/// one of `overlays` provides is the user's and stays).
pub fn wire(root: &Path, overlays: &[PathBuf], say: &dyn Fn(&str)) -> Result<Units> {
    let mut units = Units::default();
    let from_overlay = |rel: &str| overlays.iter().any(|o| o.join(rel).exists());
    if from_overlay(CONTAINERD_CONFIG) {
        say("containerd: the configuration an overlay provides");
    } else if root.join("usr/bin/containerd").exists() {
        say("containerd: CRI configuration");
        std::fs::create_dir_all(root.join("etc/containerd/certs.d"))?;
        fsutil::replace_file(&root.join(CONTAINERD_CONFIG), containerd_config())?;
    }
    let cni_from_overlay = overlays.iter().any(|o| {
        o.join("etc/cni/net.d")
            .read_dir()
            .is_ok_and(|mut d| d.next().is_some())
    });
    if root.join(CNI_PLUGINS).join("bridge").exists() && !cni_from_overlay {
        say("CNI: bridge network cni0 (10.88.0.0/16)");
        let p = root.join(CNI_CONFLIST);
        std::fs::create_dir_all(p.parent().expect("has parent"))?;
        fsutil::replace_file(&p, cni_conflist())?;
    }
    if has_unit(root, "kubelet.service") {
        say("kubelet: starts once its bootstrap files exist");
        let p = root.join(KUBELET_DROPIN);
        std::fs::create_dir_all(p.parent().expect("has parent"))?;
        fsutil::replace_file(&p, KUBELET_DROPIN_TEXT)?;
        units.enable.push("kubelet.service".into());
    }
    if root.join("etc/selinux/config").exists() {
        let present = RELABEL_UNITS.iter().filter(|u| has_unit(root, u));
        units.mask.extend(present.map(|u| u.to_string()));
    }
    Ok(units)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containerd_config_is_valid_toml_with_systemd_cgroups() {
        let v: toml::Value = toml::from_str(&containerd_config()).unwrap();
        let cri = &v["plugins"]["io.containerd.grpc.v1.cri"];
        assert_eq!(cri["sandbox_image"].as_str(), Some(PAUSE_IMAGE));
        let runc = &cri["containerd"]["runtimes"]["runc"];
        assert_eq!(runc["options"]["SystemdCgroup"].as_bool(), Some(true));
        assert_eq!(v["version"].as_integer(), Some(2));
    }

    #[test]
    fn wiring_follows_what_the_root_has() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        let u = wire(r, &[], &|_| {}).unwrap();
        assert!(u.enable.is_empty() && u.mask.is_empty());
        assert!(!r.join(CONTAINERD_CONFIG).exists());
        for f in [
            "usr/bin/containerd",
            "usr/lib/systemd/system/kubelet.service",
            "etc/selinux/config",
            "usr/lib/systemd/system/selinux-autorelabel-mark.service",
            "usr/lib/cni/bridge",
        ] {
            std::fs::create_dir_all(r.join(f).parent().unwrap()).unwrap();
            std::fs::write(r.join(f), "").unwrap();
        }
        let u = wire(r, &[], &|_| {}).unwrap();
        assert_eq!(u.enable, ["kubelet.service"]);
        assert_eq!(u.mask, ["selinux-autorelabel-mark.service"]);
        let dropin = std::fs::read_to_string(r.join(KUBELET_DROPIN)).unwrap();
        assert!(dropin.contains("ConditionPathExists=/var/lib/kubelet/config.yaml"));
        assert!(std::fs::read_to_string(r.join(CONTAINERD_CONFIG))
            .unwrap()
            .contains("SystemdCgroup = true"));
        let net: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(r.join(CNI_CONFLIST)).unwrap()).unwrap();
        assert_eq!(net["plugins"][0]["type"], "bridge");
        // An overlay's own network wins.
        std::fs::remove_file(r.join(CNI_CONFLIST)).unwrap();
        let ov = d.path().join("ov");
        std::fs::create_dir_all(ov.join("etc/cni/net.d")).unwrap();
        std::fs::write(ov.join("etc/cni/net.d/5-mine.conflist"), "{}").unwrap();
        wire(r, &[ov], &|_| {}).unwrap();
        assert!(!r.join(CNI_CONFLIST).exists());
    }
}
