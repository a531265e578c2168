//! The manifest's `[[upload]]` entries: as written, checked (with every
//! rule of the target clouds that can be known before a build), and with
//! their defaults filled in.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::formats::{Format, Output};
use crate::model::{BootMode, Firmware, Scope};

/// Where an `[[upload]]` entry goes.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UploadTarget {
    /// An AMI through the EBS direct APIs.
    Aws,
    /// A Glance image.
    Openstack,
}

impl UploadTarget {
    /// `aws` or `openstack`.
    pub fn name(self) -> &'static str {
        match self {
            UploadTarget::Aws => "aws",
            UploadTarget::Openstack => "openstack",
        }
    }
}

/// One `[[upload]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // fields: README's manifest reference
pub struct RawUpload {
    pub target: UploadTarget,
    pub name: Option<String>,
    pub format: Option<Format>,
    // AWS
    pub region: Option<String>,
    pub profile: Option<String>,
    pub endpoint_url: Option<String>,
    pub boot_mode: Option<BootMode>,
    pub copy_to_regions: Option<Vec<String>>,
    pub launch_permissions: Option<Vec<String>>,
    pub tags: Option<BTreeMap<String, String>>,
    // OpenStack
    pub cloud: Option<String>,
    pub firmware: Option<Firmware>,
    pub os_distro: Option<String>,
    pub os_version: Option<String>,
}

/// One `[[upload]]` entry, defaults filled in.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Upload {
    /// Where it goes.
    pub target: UploadTarget,
    /// Image (AMI) name; default `NAME-VERSION`.
    pub name: String,
    /// Which file: the raw image or the qcow2 output.
    pub format: Format,
    /// AWS region (default: AWS_REGION).
    pub region: Option<String>,
    /// AWS credentials profile.
    pub profile: Option<String>,
    /// One endpoint for EBS and EC2 (emulators).
    pub endpoint_url: Option<String>,
    /// AMI boot mode.
    pub boot_mode: BootMode,
    /// Regions the AMI is copied to.
    pub copy_to_regions: Vec<String>,
    /// Accounts (or `all`) that may launch the AMI.
    pub launch_permissions: Vec<String>,
    /// Extra AMI and snapshot tags.
    pub tags: BTreeMap<String, String>,
    /// clouds.yaml entry (default: $OS_CLOUD or the OS_* variables).
    pub cloud: Option<String>,
    /// Glance hw_firmware_type.
    pub firmware: Firmware,
    /// Glance os_distro.
    pub os_distro: String,
    /// Glance os_version.
    pub os_version: String,
}

/// What the rest of the manifest says that uploads default to or depend on.
pub struct Context<'a> {
    /// The outputs besides the raw image.
    pub outputs: &'a [Output],
    /// `NAME-VERSION`, the default image name.
    pub stem: &'a str,
    /// The base's distribution (`debian`, `fedora`): Glance's os_distro.
    pub os_distro: &'a str,
    /// Its version as Glance's os_version expects it (`12`).
    pub os_version: Option<String>,
}

/// `us-east-1`, `eu-central-2`, `us-gov-west-1`, `ap-southeast-5`.
pub fn is_aws_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() >= 3
        && parts[0].len() == 2
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase()))
        && parts[parts.len() - 1].chars().all(|c| c.is_ascii_digit())
        && !parts[parts.len() - 1].is_empty()
}

/// Characters AWS allows in AMI names (3 to 128 of them).
fn is_ami_name(s: &str) -> bool {
    (3..=128).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "()[] ./-'@_".contains(c))
}

/// Check every `[[upload]]` (problems go to `p`, the `upload` list scope).
pub fn check(upload: Vec<RawUpload>, cx: &Context, p: &mut Scope) -> Vec<Upload> {
    let mut out: Vec<Upload> = Vec::new();
    for (i, u) in upload.into_iter().enumerate() {
        let mut p = p.scope(&format!("[{i}]"));
        let entry = check_one(u, cx, &mut p);
        // The same name in the same place (another profile or endpoint
        // may be another account).
        let place = |o: &Upload| {
            (
                o.target,
                o.region.clone(),
                o.cloud.clone(),
                o.profile.clone(),
                o.endpoint_url.clone(),
                o.name.clone(),
            )
        };
        if let Some(j) = out.iter().position(|o| place(o) == place(&entry)) {
            p.bad(
                "name",
                format!(
                    "upload[{j}] already uploads {} to the same place; remove one or rename",
                    entry.name
                ),
            );
        }
        out.push(entry);
    }
    out
}

fn check_one(u: RawUpload, cx: &Context, p: &mut Scope) -> Upload {
    check_target_keys(&u, p);
    let name = u.name.clone().unwrap_or_else(|| cx.stem.to_string());
    let format = u.format.unwrap_or(Format::Raw);
    match (u.target, format) {
        (_, Format::Raw) => {}
        (UploadTarget::Aws, _) => p.bad(
            "format",
            "AWS snapshots are written from the raw image: remove format (or set \"raw\")",
        ),
        (UploadTarget::Openstack, Format::Qcow2) => {
            if !cx.outputs.iter().any(|o| o.format == Format::Qcow2) {
                p.bad("format", "no [[output]] writes a qcow2 image: add [[output]] format = \"qcow2\", or upload the raw image");
            }
        }
        (UploadTarget::Openstack, _) => p.bad(
            "format",
            "Glance gets the raw image or the qcow2 output: use \"raw\" or \"qcow2\"",
        ),
    }
    if u.target == UploadTarget::Aws && !is_ami_name(&name) {
        // The default name comes from the image version, which may hold
        // characters AMI names do not allow.
        let (field, whose) = match u.name {
            Some(_) => ("name", ""),
            None => (
                "target",
                " (the default name, image.name-image.version): set name = to one that is",
            ),
        };
        p.bad(
            field,
            format!("\"{name}\" is not a valid AMI name{whose}: 3 to 128 letters, digits and ( ) [ ] . / - ' @ _ or spaces"),
        );
    }
    if name.is_empty() || name.len() > 255 {
        p.bad("name", "an image name needs 1 to 255 characters");
    }
    check_aws(&u, p);
    Upload {
        target: u.target,
        name,
        format,
        region: u.region,
        profile: u.profile,
        endpoint_url: u.endpoint_url,
        boot_mode: u.boot_mode.unwrap_or(BootMode::UefiPreferred),
        copy_to_regions: u.copy_to_regions.unwrap_or_default(),
        launch_permissions: u.launch_permissions.unwrap_or_default(),
        tags: u.tags.unwrap_or_default(),
        cloud: u.cloud,
        firmware: u.firmware.unwrap_or(Firmware::Uefi),
        os_distro: u.os_distro.unwrap_or_else(|| cx.os_distro.to_string()),
        os_version: u.os_version.or(cx.os_version.clone()).unwrap_or_default(),
    }
}

/// Settings of the other target are refused.
fn check_target_keys(u: &RawUpload, p: &mut Scope) {
    let (mine, theirs) = match u.target {
        UploadTarget::Aws => ("aws", "openstack"),
        UploadTarget::Openstack => ("openstack", "aws"),
    };
    let aws_only = [
        ("region", u.region.is_some()),
        ("profile", u.profile.is_some()),
        ("endpoint_url", u.endpoint_url.is_some()),
        ("boot_mode", u.boot_mode.is_some()),
        ("copy_to_regions", u.copy_to_regions.is_some()),
        ("launch_permissions", u.launch_permissions.is_some()),
        ("tags", u.tags.is_some()),
    ];
    let openstack_only = [
        ("cloud", u.cloud.is_some()),
        ("firmware", u.firmware.is_some()),
        ("os_distro", u.os_distro.is_some()),
        ("os_version", u.os_version.is_some()),
    ];
    let foreign = match u.target {
        UploadTarget::Aws => &openstack_only[..],
        UploadTarget::Openstack => &aws_only[..],
    };
    for (k, _) in foreign.iter().filter(|(_, set)| *set) {
        p.bad(
            k,
            format!("{k} is a setting of target = \"{theirs}\"; this entry uploads to {mine}: remove it"),
        );
    }
}

/// Regions, copies, accounts, tags, endpoint and names of profiles/clouds.
fn check_aws(u: &RawUpload, p: &mut Scope) {
    if let Some(r) = &u.region {
        if !is_aws_region(r) {
            p.bad(
                "region",
                format!("\"{r}\" is not an AWS region name such as \"eu-central-1\""),
            );
        }
    }
    let copies = u.copy_to_regions.as_deref().unwrap_or_default();
    for (j, r) in copies.iter().enumerate() {
        let field = format!("copy_to_regions[{j}]");
        if !is_aws_region(r) {
            p.bad(
                &field,
                format!("\"{r}\" is not an AWS region name such as \"us-west-2\""),
            );
        } else if copies[..j].contains(r) || u.region.as_ref() == Some(r) {
            p.bad(
                &field,
                format!("{r} is listed twice (or is the upload's own region): remove it"),
            );
        }
    }
    for (j, a) in u.launch_permissions.iter().flatten().enumerate() {
        if a != "all" && !(a.len() == 12 && a.chars().all(|c| c.is_ascii_digit())) {
            p.bad(
                &format!("launch_permissions[{j}]"),
                format!("\"{a}\" is neither a 12-digit AWS account id nor \"all\" (public)"),
            );
        }
    }
    for (k, v) in u.tags.iter().flatten() {
        let sha_tag = super::aws::ami::SHA_TAG;
        if k.starts_with("aws:") || k == sha_tag {
            p.bad(
                &format!("tags.{k}"),
                format!("{k} is reserved (aws: by AWS, {sha_tag} by atomicbuild)"),
            );
        } else if k.is_empty() || k.len() > 128 || v.len() > 256 {
            p.bad(
                &format!("tags.{k}"),
                "tag keys have 1 to 128 characters, values at most 256",
            );
        }
    }
    if let Some(e) = &u.endpoint_url {
        let http = ["http://", "https://"]
            .iter()
            .any(|p| e.starts_with(p) && e.len() > p.len());
        if !http || e.contains(char::is_whitespace) {
            p.bad("endpoint_url", format!("\"{e}\" is not an http(s) URL"));
        }
    }
    for (k, v) in [("cloud", &u.cloud), ("profile", &u.profile)] {
        if v.as_ref().is_some_and(|v| v.trim().is_empty()) {
            p.bad(k, format!("{k} is empty: name one or remove the key"));
        }
    }
}
