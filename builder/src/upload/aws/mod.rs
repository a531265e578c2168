//! AWS: a raw image becomes an EBS snapshot ([`snapshot`]) and an AMI
//! ([`ami`]), copied to more regions with launch permissions; requests are
//! signed here ([`sigv4`], [`client`]) with credentials from the usual
//! places ([`creds`]). No AWS SDK.

pub mod ami;
pub mod client;
pub mod creds;
pub mod sigv4;
pub mod snapshot;

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::model::{BootMode, UploadRecord};
use sigv4::Credentials;

/// Parallel block uploads unless told otherwise.
pub const DEFAULT_THREADS: usize = 8;
/// Attempts per request unless told otherwise.
pub const DEFAULT_ATTEMPTS: u32 = 6;

/// An AWS upload, from the command line or a manifest's `[[upload]]`.
#[derive(Debug, Clone)]
pub struct AwsTarget {
    /// AMI name.
    pub name: String,
    /// Region (`None`: AWS_REGION / AWS_DEFAULT_REGION).
    pub region: Option<String>,
    /// Profile of the shared credentials file.
    pub profile: Option<String>,
    /// One endpoint for EBS and EC2 (emulators).
    pub endpoint_url: Option<String>,
    /// Extra tags.
    pub tags: Vec<(String, String)>,
    /// Firmware.
    pub boot_mode: BootMode,
    /// Regions the AMI is copied to.
    pub copy_to_regions: Vec<String>,
    /// Accounts (12 digits) or `all` that may launch it.
    pub launch_permissions: Vec<String>,
    /// Parallel block uploads.
    pub threads: usize,
    /// Attempts per request.
    pub attempts: u32,
    /// Bound for each wait (snapshot, copies).
    pub wait: Duration,
}

impl AwsTarget {
    /// The client for the main region (resolves region and credentials).
    pub fn client(&self) -> Result<client::Aws> {
        let creds = creds::aws_credentials(self.profile.as_deref())?;
        let region = self
            .region
            .clone()
            .or_else(|| std::env::var("AWS_REGION").ok())
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
            .filter(|r| !r.is_empty())
            .context("no AWS region: pass --region, set region in [[upload]] or set AWS_REGION")?;
        Ok(self.client_in(&region, creds))
    }

    fn client_in(&self, region: &str, creds: Credentials) -> client::Aws {
        let (ebs, ec2) = match &self.endpoint_url {
            Some(u) => (u.clone(), u.clone()),
            None => (
                format!("https://ebs.{region}.amazonaws.com"),
                format!("https://ec2.{region}.amazonaws.com"),
            ),
        };
        client::Aws {
            region: region.to_string(),
            ebs_endpoint: ebs,
            ec2_endpoint: ec2,
            creds,
            agent: ureq::AgentBuilder::new()
                .timeout_connect(Duration::from_secs(10))
                .timeout(Duration::from_secs(120))
                .build(),
            attempts: self.attempts,
        }
    }

    /// Upload `image` (raw) unless an identical AMI exists, copy it to the
    /// other regions, grant launch permissions. `sha256`: the image's, when
    /// the build has just recorded it (else it is computed here).
    pub fn upload(&self, image: &Path, sha256: Option<String>) -> Result<UploadRecord> {
        let client = self.client()?;
        let sha = match sha256 {
            Some(s) => s,
            None => crate::fsutil::sha256_file(image)?,
        };
        let mut tags = vec![(ami::SHA_TAG.to_string(), sha.clone())];
        tags.extend(self.tags.iter().cloned());
        // A name taken by other contents, here or in a copy region, stops
        // the upload before any block is sent.
        for region in self.copy_to_regions.iter().filter(|r| **r != client.region) {
            ami::identical_image(
                &self.client_in(region, client.creds.clone()),
                &self.name,
                &sha,
            )?;
        }
        let (image_id, uploaded) = match ami::identical_image(&client, &self.name, &sha)? {
            Some(f) => {
                eprintln!(
                    "{}: an AMI named {} with this sha256 exists in {} ({}); nothing uploaded",
                    f.id, self.name, client.region, f.state
                );
                (f.id, false)
            }
            None => {
                let u = ami::Upload {
                    name: &self.name,
                    tags: tags.clone(),
                    boot_mode: self.boot_mode,
                    threads: self.threads,
                    wait: self.wait,
                };
                let transfer = crate::progress::Transfer::new("uploading blocks");
                let progress = |done: u64, total: u64| transfer.update(done, total);
                let r = snapshot::upload(&client, image, &u, &progress)?;
                let secs = transfer.finish().as_secs_f64();
                eprintln!(
                    "{}: uploaded {} blocks ({} MiB) in {secs:.1} s, {:.1} MiB/s; snapshot {}",
                    r.image_id,
                    r.blocks_written,
                    r.bytes_sent >> 20,
                    (r.bytes_sent as f64 / 1048576.0) / secs.max(0.001),
                    r.snapshot_id
                );
                (r.image_id, true)
            }
        };
        ami::grant_launch(&client, &image_id, &self.launch_permissions)?;
        let mut copies = std::collections::BTreeMap::new();
        for region in self.copy_to_regions.iter().filter(|r| **r != client.region) {
            let to = self.client_in(region, client.creds.clone());
            let (id, made) = ami::copy_image(&client, &to, &image_id, &self.name, &tags, self.wait)
                .with_context(|| format!("copying {image_id} to {region}"))?;
            ami::grant_launch(&to, &id, &self.launch_permissions)?;
            eprintln!(
                "{id}: {} in {region}",
                if made { "copied" } else { "already copied" }
            );
            copies.insert(region.clone(), id);
        }
        Ok(UploadRecord {
            target: "aws".into(),
            name: self.name.clone(),
            file: crate::upload::file_name(image),
            region: Some(client.region.clone()),
            cloud: None,
            image_id,
            copies,
            uploaded,
        })
    }
}
