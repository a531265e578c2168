//! AMIs: registering one from a snapshot, finding ours again by name and
//! sha256 tag (so re-runs upload nothing), copies to other regions and
//! launch permissions.

use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::client::{xml_value, Aws};
use crate::model::BootMode;

/// What to register.
pub struct Upload<'a> {
    /// AMI name.
    pub name: &'a str,
    /// Tags on the snapshot and the image.
    pub tags: Vec<(String, String)>,
    /// Boot mode.
    pub boot_mode: BootMode,
    /// Parallel block uploads.
    pub threads: usize,
    /// How long to wait for the snapshot to complete.
    pub wait: Duration,
}

/// The RegisterImage parameters for a snapshot.
pub fn register_params(snapshot_id: &str, u: &Upload, len: u64) -> Vec<(&'static str, String)> {
    vec![
        ("Action", "RegisterImage".to_string()),
        ("Name", u.name.to_string()),
        ("Description", format!("atomicbuild image {}", u.name)),
        ("Architecture", "x86_64".into()),
        ("VirtualizationType", "hvm".into()),
        ("RootDeviceName", "/dev/xvda".into()),
        ("BlockDeviceMapping.1.DeviceName", "/dev/xvda".into()),
        ("BlockDeviceMapping.1.Ebs.SnapshotId", snapshot_id.into()),
        ("BlockDeviceMapping.1.Ebs.VolumeType", "gp3".into()),
        (
            "BlockDeviceMapping.1.Ebs.VolumeSize",
            len.div_ceil(1 << 30).to_string(),
        ),
        (
            "BlockDeviceMapping.1.Ebs.DeleteOnTermination",
            "true".into(),
        ),
        ("EnaSupport", "true".into()),
        ("BootMode", u.boot_mode.as_str().into()),
        ("ImdsSupport", "v2.0".into()),
    ]
}

pub(super) fn register(aws: &Aws, snapshot_id: &str, u: &Upload, len: u64) -> Result<String> {
    let xml = aws.ec2(&register_params(snapshot_id, u, len))?;
    let image_id = xml_value(&xml, "imageId")
        .map(String::from)
        .with_context(|| format!("RegisterImage returned no imageId: {xml}"))?;
    // Tags after registering (the checksum tag is how a re-run finds the
    // image); an image that cannot be tagged is deregistered again.
    tag_or_deregister(aws, &image_id, &u.tags, true)?;
    Ok(image_id)
}

/// Tag an image; deregister it if that fails (an untagged image would not
/// be found by a re-run and would be made twice).
fn tag_or_deregister(
    aws: &Aws,
    image_id: &str,
    tags: &[(String, String)],
    deregister: bool,
) -> Result<()> {
    let mut owned: Vec<(String, String)> = vec![("ResourceId.1".into(), image_id.to_string())];
    for (i, (k, v)) in tags.iter().enumerate() {
        owned.push((format!("Tag.{}.Key", i + 1), k.clone()));
        owned.push((format!("Tag.{}.Value", i + 1), v.clone()));
    }
    let mut params: Vec<(&str, String)> = vec![("Action", "CreateTags".into())];
    params.extend(owned.iter().map(|(k, v)| (k.as_str(), v.clone())));
    match aws.ec2(&params) {
        Ok(_) => Ok(()),
        Err(e) if deregister => {
            let _ = aws.ec2(&[
                ("Action", "DeregisterImage".into()),
                ("ImageId", image_id.to_string()),
            ]);
            Err(e.context(format!("tagging {image_id} (deregistered again)")))
        }
        Err(e) => Err(e.context(format!("tagging {image_id}"))),
    }
}

/// The tag that says which image bytes an AMI holds.
pub const SHA_TAG: &str = "atomicbuild:sha256";

/// An AMI of ours, found by name (names are unique per account and region).
#[derive(Debug, Clone)]
pub struct Found {
    /// Its id.
    pub id: String,
    /// `available`, `pending`, `failed`, ...
    pub state: String,
    /// Its `atomicbuild:sha256` tag.
    pub sha256: Option<String>,
}

/// The value of the tag `key` in a DescribeImages item.
fn tag_value<'a>(xml: &'a str, key: &str) -> Option<&'a str> {
    let at = xml.find(&format!("<key>{key}</key>"))?;
    xml_value(&xml[at..], "value")
}

/// Our AMI named `name` in this region, if there is one.
pub fn image_named(aws: &Aws, name: &str) -> Result<Option<Found>> {
    let xml = aws.ec2(&[
        ("Action", "DescribeImages".into()),
        ("Owner.1", "self".into()),
        ("Filter.1.Name", "name".into()),
        ("Filter.1.Value.1", name.to_string()),
    ])?;
    Ok(found_in(&xml))
}

/// The first image of a DescribeImages answer.
pub fn found_in(xml: &str) -> Option<Found> {
    xml_value(xml, "imageId").map(|id| Found {
        id: id.to_string(),
        state: xml_value(xml, "imageState").unwrap_or_default().to_string(),
        sha256: tag_value(xml, SHA_TAG).map(String::from),
    })
}

/// Our image named `name` if it holds these bytes; an error if the name is
/// taken by other contents (RegisterImage or CopyImage would refuse it
/// only after the whole upload).
pub fn identical_image(aws: &Aws, name: &str, sha256: &str) -> Result<Option<Found>> {
    match image_named(aws, name)? {
        Some(f) if f.sha256.as_deref() == Some(sha256) => Ok(Some(f)),
        Some(f) => bail!(
            "an AMI named {name} already exists in {} ({}, {}) with other contents: choose another name (--name, or name = in [[upload]]) or deregister it",
            aws.region,
            f.id,
            f.sha256
                .map(|s| format!("sha256 {s}"))
                .unwrap_or_else(|| "not made by atomicbuild".into())
        ),
        None => Ok(None),
    }
}

/// Wait until an image is `available` (copies take a while on AWS). A
/// timeout leaves it be: the next run finds it and waits again.
fn wait_available(aws: &Aws, image_id: &str, wait: Duration) -> Result<()> {
    let mut last = String::from("pending");
    let done = crate::upload::poll_until(wait, Duration::from_secs(5), || {
        let xml = aws.ec2(&[
            ("Action", "DescribeImages".into()),
            ("ImageId.1", image_id.to_string()),
        ]);
        // Right after CopyImage the new id may not be visible yet.
        let state = match &xml {
            Ok(x) => xml_value(x, "imageState").unwrap_or("pending"),
            Err(e) if format!("{e:#}").contains("NotFound") => "pending",
            Err(_) => return xml.map(|_| None),
        };
        match state {
            "available" => Ok(Some(())),
            s @ ("failed" | "error" | "invalid" | "deregistered") => {
                bail!("{image_id} in {} is {s}", aws.region)
            }
            s => {
                last = s.to_string();
                Ok(None)
            }
        }
    })?;
    done.with_context(|| {
        format!(
            "{image_id} in {} is still {last} after {} s; run again later to wait for it",
            aws.region,
            wait.as_secs()
        )
    })
}

/// Copy an AMI into `to`'s region (unless an identical one is there), tag
/// it and its snapshot like the source and wait until it is available.
/// Returns its id and whether it was made now. A copy that failed is
/// deregistered (and made again by the next run).
pub fn copy_image(
    from: &Aws,
    to: &Aws,
    image_id: &str,
    name: &str,
    tags: &[(String, String)],
    wait: Duration,
) -> Result<(String, bool)> {
    let sha = tags
        .iter()
        .find(|(k, _)| k == SHA_TAG)
        .map(|(_, v)| v.as_str())
        .unwrap_or_default();
    if let Some(f) = identical_image(to, name, sha)? {
        if f.state == "failed" {
            let _ = to.ec2(&[
                ("Action", "DeregisterImage".into()),
                ("ImageId", f.id.clone()),
            ]);
        } else {
            wait_available(to, &f.id, wait)?;
            return Ok((f.id, false));
        }
    }
    let mut params: Vec<(String, String)> = vec![
        ("Action".into(), "CopyImage".into()),
        ("SourceRegion".into(), from.region.clone()),
        ("SourceImageId".into(), image_id.to_string()),
        ("Name".into(), name.to_string()),
        ("Description".into(), format!("atomicbuild image {name}")),
        // One token per attempt of this call: send()'s retries reuse it.
        ("ClientToken".into(), uuid::Uuid::new_v4().to_string()),
    ];
    for (n, kind) in ["image", "snapshot"].iter().enumerate() {
        params.push((
            format!("TagSpecification.{}.ResourceType", n + 1),
            kind.to_string(),
        ));
        for (i, (k, v)) in tags.iter().enumerate() {
            params.push((
                format!("TagSpecification.{}.Tag.{}.Key", n + 1, i + 1),
                k.clone(),
            ));
            params.push((
                format!("TagSpecification.{}.Tag.{}.Value", n + 1, i + 1),
                v.clone(),
            ));
        }
    }
    let refs: Vec<(&str, String)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    let xml = to.ec2(&refs)?;
    let copy = xml_value(&xml, "imageId")
        .map(String::from)
        .with_context(|| format!("CopyImage returned no imageId: {xml}"))?;
    tag_copy(to, &copy, tags)?;
    wait_available(to, &copy, wait)?;
    Ok((copy, true))
}

/// Tag a fresh copy (once its id is visible); a copy that cannot be
/// tagged is deregistered again.
fn tag_copy(to: &Aws, copy: &str, tags: &[(String, String)]) -> Result<()> {
    // Tagged at creation where the API honours TagSpecification; tagged
    // again (idempotent) for those that do not, once the id is visible.
    let mut last = None;
    let tagged =
        crate::upload::poll_until(Duration::from_secs(10), Duration::from_secs(2), || {
            match tag_or_deregister(to, copy, tags, false) {
                Ok(()) => Ok(Some(Ok(()))),
                Err(e) if format!("{e:#}").contains("NotFound") => {
                    last = Some(e);
                    Ok(None)
                }
                Err(e) => Ok(Some(Err(e))),
            }
        })?
        .unwrap_or_else(|| {
            Err(last
                .take()
                .unwrap_or_else(|| anyhow::anyhow!("not visible")))
        });
    if let Err(e) = tagged {
        let _ = to.ec2(&[
            ("Action", "DeregisterImage".into()),
            ("ImageId", copy.to_string()),
        ]);
        return Err(e.context(format!("copy {copy} deregistered again")));
    }
    Ok(())
}

/// Who may launch an image: 12-digit account ids, or `all` (public).
pub fn launch_permission_params(accounts: &[String]) -> Vec<(String, String)> {
    accounts
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let k = if a == "all" { "Group" } else { "UserId" };
            (format!("LaunchPermission.Add.{}.{k}", i + 1), a.clone())
        })
        .collect()
}

/// Let these accounts (or `all`) launch the image.
pub fn grant_launch(aws: &Aws, image_id: &str, accounts: &[String]) -> Result<()> {
    if accounts.is_empty() {
        return Ok(());
    }
    let owned = launch_permission_params(accounts);
    let mut params: Vec<(&str, String)> = vec![
        ("Action", "ModifyImageAttribute".into()),
        ("ImageId", image_id.to_string()),
    ];
    params.extend(owned.iter().map(|(k, v)| (k.as_str(), v.clone())));
    aws.ec2(&params).with_context(|| {
        format!(
            "granting launch permissions on {image_id} in {}",
            aws.region
        )
    })?;
    Ok(())
}
