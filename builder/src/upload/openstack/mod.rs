//! OpenStack: Keystone v3 ([`auth`], with clouds.yaml in [`clouds_yaml`])
//! and Glance v2 ([`glance`]).

pub mod auth;
pub mod clouds_yaml;
pub mod glance;

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::model::{Firmware, UploadRecord};
use auth::Cloud;

/// `name` (or `$OS_CLOUD`) from clouds.yaml, else the `OS_*` variables of
/// an openrc file.
pub fn load_cloud(name: Option<&str>) -> Result<Cloud> {
    let from_env = std::env::var("OS_CLOUD").ok().filter(|v| !v.is_empty());
    match name.map(String::from).or(from_env) {
        Some(n) => clouds_yaml::cloud(&n),
        None => Cloud::from_env().context(
            "no cloud configured: pass --cloud NAME (an entry of clouds.yaml), set OS_CLOUD, or source the cloud's openrc",
        ),
    }
}

/// An OpenStack upload.
#[derive(Debug, Clone)]
pub struct OpenstackTarget {
    /// Image name.
    pub name: String,
    /// clouds.yaml entry (`None`: $OS_CLOUD or the OS_* variables).
    pub cloud: Option<String>,
    /// `uefi` or `bios`.
    pub firmware: Firmware,
    /// os_distro property.
    pub os_distro: String,
    /// os_version property.
    pub os_version: String,
    /// Bound for the wait for `active`.
    pub wait: Duration,
}

/// Idle timeouts only: an upload may take hours, a stalled one fails.
pub fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(10))
        .timeout_read(Duration::from_secs(600))
        .timeout_write(Duration::from_secs(600))
        .build()
}

/// `raw` or `qcow2` and the virtual disk size, from the file's first
/// bytes (a qcow2 header holds the size as a big-endian u64 at offset 24);
/// compressed files and other disk formats are refused with what they are.
pub fn glance_disk(p: &Path) -> Result<(&'static str, u64)> {
    use std::io::Read;
    let mut head = [0u8; 512];
    let mut f = std::fs::File::open(p).with_context(|| format!("opening {}", p.display()))?;
    let n = f.read(&mut head)?;
    let head = &head[..n];
    let what = if head.starts_with(b"QFI\xfb") && head.len() >= 32 {
        let size = u64::from_be_bytes(head[24..32].try_into().expect("8 bytes"));
        return Ok(("qcow2", size));
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        "xz-compressed"
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        "zstd-compressed"
    } else if head.starts_with(&[0x1f, 0x8b]) {
        "gzip-compressed"
    } else if head.starts_with(b"KDMV") || head.starts_with(b"# Disk DescriptorFile") {
        "a VMDK"
    } else if head.starts_with(b"<<< ") {
        "a VDI"
    } else if head.starts_with(b"conectix") {
        "a dynamic VHD"
    } else if head.len() > 262 && &head[257..262] == b"ustar" {
        "a tar archive (an OVA?)"
    } else {
        return Ok(("raw", f.metadata()?.len()));
    };
    bail!(
        "{} is {what}: upload the .raw image or the .qcow2 output to Glance",
        p.display()
    )
}

impl OpenstackTarget {
    /// Upload `image` (raw or qcow2) unless an identical image exists.
    pub fn upload(&self, image: &Path) -> Result<UploadRecord> {
        let cloud = load_cloud(self.cloud.as_deref())?;
        let (disk_format, virtual_size) = glance_disk(image)?;
        let s = auth::Session::open(&cloud, agent())?;
        let spec = glance::ImageSpec {
            name: &self.name,
            disk_format,
            firmware: self.firmware.name(),
            min_disk_gib: virtual_size.div_ceil(1 << 30),
            min_ram_mib: 1024,
            os_distro: &self.os_distro,
            os_version: &self.os_version,
        };
        let t = std::time::Instant::now();
        let (id, uploaded) = glance::upload(&s, image, &spec, self.wait)?;
        if uploaded {
            eprintln!(
                "{id}: uploaded {} in {:.1} s; Glance's sha512 matches",
                image.display(),
                t.elapsed().as_secs_f64()
            );
        } else {
            eprintln!(
                "{id}: an active image named {} with this sha512 exists; nothing uploaded",
                self.name
            );
        }
        Ok(UploadRecord {
            target: "openstack".into(),
            name: self.name.clone(),
            file: crate::upload::file_name(image),
            region: cloud.region.clone(),
            cloud: self.cloud.clone(),
            image_id: id,
            copies: Default::default(),
            uploaded,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glance_gets_raw_or_qcow2_and_nothing_else() {
        let d = tempfile::tempdir().unwrap();
        let mut qcow2 = b"QFI\xfb\0\0\0\x03".to_vec();
        qcow2.resize(24, 0);
        qcow2.extend_from_slice(&(5u64 << 30).to_be_bytes());
        type Case<'a> = (&'a str, &'a [u8], Option<(&'a str, u64)>);
        let cases: [Case; 5] = [
            ("a.qcow2", &qcow2, Some(("qcow2", 5 << 30))),
            ("a.raw", &[0u8; 600], Some(("raw", 600))),
            ("a.raw.xz", &[0xfd, b'7', b'z', b'X', b'Z', 0, 1], None),
            ("a.raw.zst", &[0x28, 0xb5, 0x2f, 0xfd, 9], None),
            ("a.vmdk", b"KDMV\x01\0\0\0", None),
        ];
        for (name, bytes, want) in cases {
            let p = d.path().join(name);
            std::fs::write(&p, bytes).unwrap();
            match (glance_disk(&p), want) {
                (Ok(f), Some(w)) => assert_eq!(f, w, "{name}"),
                (Err(e), None) => assert!(e.to_string().contains("upload the .raw"), "{e}"),
                (r, w) => panic!("{name}: {r:?}, expected {w:?}"),
            }
        }
    }
}
