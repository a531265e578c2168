//! `atomicbuild upload aws|openstack`: one image into one cloud, from the
//! command line.

use std::time::Duration;

use anyhow::{Context, Result};

use crate::cli::{UploadAwsArgs, UploadOpenstackArgs};
use crate::upload::{aws::AwsTarget, openstack::OpenstackTarget};

/// `upload aws`: prints the AMI id, then `REGION AMI` per copy.
pub fn aws(a: &UploadAwsArgs) -> Result<()> {
    let mut tags = Vec::new();
    for t in &a.tag {
        let (k, v) = t
            .split_once('=')
            .with_context(|| format!("--tag {t:?}: expected KEY=VALUE"))?;
        tags.push((k.to_string(), v.to_string()));
    }
    let target = AwsTarget {
        name: a.name.clone(),
        region: a.region.clone(),
        profile: a.profile.clone(),
        endpoint_url: a.endpoint_url.clone(),
        tags,
        boot_mode: a.boot_mode,
        copy_to_regions: a.copy_to_region.clone(),
        launch_permissions: a.launch_permission.clone(),
        threads: a.threads,
        attempts: a.attempts,
        wait: Duration::from_secs(a.wait_secs),
    };
    let r = target.upload(&a.image, None)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    println!("{}", r.image_id);
    for (region, id) in &r.copies {
        println!("{region} {id}");
    }
    Ok(())
}

/// `upload openstack`: prints the Glance image id.
pub fn openstack(a: &UploadOpenstackArgs) -> Result<()> {
    let target = OpenstackTarget {
        name: a.name.clone(),
        cloud: a.cloud.clone(),
        firmware: a.firmware,
        os_distro: a.os_distro.clone(),
        os_version: a.os_version.clone(),
        wait: Duration::from_secs(a.wait_secs),
    };
    let r = target.upload(&a.image)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!("{}", r.image_id);
    }
    Ok(())
}
